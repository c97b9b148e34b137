"""A cache of what a log's parse found, so reopening a big log parses only what was appended.

The index holds the series, the byte offset the parse reached (always just past a newline)
and the little state the parser carries from line to line. It is a cache, never the truth:
it is used only when the log still starts with the same bytes, still holds the same bytes
just before the offset (a truncated, rotated or rewritten log does not), was made by the same
parser code with the same patterns, and its own checksums hold. Anything else, a damaged
file included, means a parse from the start. An index over MAX_INDEX_BYTES is not written, and
the cache folder is kept under CACHE_LIMIT_BYTES (oldest first), so a user can delete it at
any time and lose only time.

What a later parse adds is appended as a segment (the points past what the index held and the
parser's state at the new offset), so bringing an index up to date costs what was appended,
not the whole index again. The whole file is written atomically (temp file, rename); a segment
is appended with one write and checks itself, so one cut short by a crash, or added by two
writers at once, fails its check and the index is rebuilt. After MAX_SEGMENTS segments the
index is written whole again.

Where: beside a session's log (`.metrics-index` in the folder holding spec.json), else in
the user cache dir (`$TRAINCTL_HOME/cache/metrics`, or the platform's user cache dir).

File layout: MAGIC, an 8-byte little-endian header length, the JSON header, then for each
series its xs (unless they are, bit for bit, those of a series before it: `xs_of` names it),
its ys, then the summaries of its whole blocks of points (`Series.block_arrays`: four arrays
of 8-byte items), as raw array bytes (`body_bytes` in all). Each series' entry also holds
its min/max, where the minimum is and its non-finite count (`Series.scanned`), so a reopened
big log's summary and its chart's first draw touch no point again. Then any segments: SEGMENT_MAGIC,
8-byte lengths of its JSON header and of its body, a 4-byte crc32 of both, the header (the
offset it starts from, the log checks at its end, the state, per series the points added, in
the order of the series), its body laid out as the first one's.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import weakref
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import atomic_write
from .metrics import MetricSet, extract_range
from .parallel import extract_log
from .series import BLOCK, Series

MAGIC = b"trainctl metrics index\n"
SEGMENT_MAGIC = b"\nsegment\n"
VERSION = 4
CHECK_BYTES = 64 * 1024  # hashed at the log's head and just before the offset
# A bigger index is not written: about 64 M points (steps shared), what a 1 GB log of dense
# `step N loss X` lines gives; the chart holds them in memory anyway.
MAX_INDEX_BYTES = 1 << 30
MIN_LOG_BYTES = 4 << 20  # a smaller log parses in well under a second: no index for it
# A segment is appended once this much was parsed past the index: a reopen after a smaller
# append parses it again rather than add a segment for a few lines.
SEGMENT_BYTES = 1 << 20
MAX_SEGMENTS = 32  # then the index is written whole again (a reopen reads one body)
CACHE_LIMIT_BYTES = 2 << 30
INDEX_NAME = ".metrics-index"
_PARSER_FILES = ("parsers.py", "metrics.py", "series.py", "index.py")


def cache_dir() -> Path:
    home = os.environ.get("TRAINCTL_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "metrics"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("trainctl", appauthor=False)) / "metrics"


def index_path(log: Path) -> Path:
    """Beside a session's log, else in the user cache dir (keyed by the log's real path)."""
    log = Path(log).resolve()
    if (log.parent / "spec.json").exists():
        return log.parent / INDEX_NAME
    key = hashlib.sha256(str(log).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache_dir() / f"{key}.index"


def fingerprint(patterns: Sequence[str]) -> str:
    """Changes with the parser's code and the user's patterns: an index of another parser
    may hold other points."""
    digest = hashlib.sha256(f"{VERSION}\0{sys.byteorder}\0".encode())  # raw doubles
    folder = Path(__file__).resolve().parent
    for name in _PARSER_FILES:
        digest.update((folder / name).read_bytes())
    for pattern in patterns:
        digest.update(b"\0" + pattern.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@dataclass
class Indexed:
    """What an index file held when it was read or written: a later parse into the same
    MetricSet appends a segment to it only while the file is still this one."""

    offset: int  # the log offset its points reach
    file: tuple[int, int, int]  # (st_dev, st_ino, st_size) of the index file
    segments: int
    lengths: dict[str, int]  # the points of each series, in the series' order
    owner: weakref.ref  # the MetricSet holding those points


def load_metrics(log: str | os.PathLike, patterns: Sequence[str] = (), *,
                 index: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> MetricSet:
    """Every metric of a log, like `extract_file`, parsing only what its index does not
    cover, then bringing the index up to date. `progress(done, total)` counts bytes parsed."""
    log = Path(log)
    index = index if index is not None else index_path(log)
    patterns = tuple(patterns)
    print_ = fingerprint(patterns)
    with open(log, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        metrics, indexed = read_index(index, handle, size, print_, patterns)
        start = indexed.offset if indexed else 0
        end = _line_boundary(handle, start, size)
        def report(at: int) -> Callable[[int], None] | None:
            return None if progress is None else (lambda done: progress(at + done, size - start))

        extract_log(metrics, handle, start, end, progress=report(0))
        if end >= MIN_LOG_BYTES and end - start >= (SEGMENT_BYTES if start else 1):
            update_index(index, metrics, handle.fileno(), end, print_, indexed)
        # an unfinished last line: parsed, not indexed (it may still change)
        extract_range(metrics, handle, end, size, progress=report(end - start))
    return metrics


def _line_boundary(handle, start: int, size: int) -> int:
    """The offset just past the last newline in [start, size), or start when none."""
    position = size
    while position > start:
        step = min(1 << 16, position - start)
        handle.seek(position - step)
        block = handle.read(step)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return position - step + newline + 1
        position -= step
    return start


def _log_checks(fd: int, offset: int, digests: dict | None = None) -> dict:
    """What must still hold for an index reaching `offset` of the log open as `fd`
    (`digests`: the hashes of ranges already hashed)."""
    digests = {} if digests is None else digests

    def digest(begin: int, end: int) -> str:
        found = digests.get((begin, end))
        if found is None:
            found = digests[begin, end] = hashlib.sha256(os.pread(fd, end - begin, begin)
                                                         ).hexdigest()
        return found

    return {"offset": offset, "head": digest(0, min(CHECK_BYTES, offset)),
            "before": digest(max(0, offset - CHECK_BYTES), offset)}


# --------------------------------------------------------------------------- reading


def restore(log: Path, patterns: Sequence[str], index: Path
            ) -> tuple[MetricSet, Indexed | None, tuple[int, int] | None]:
    """(metrics from the index, what the index held, (st_dev, st_ino) of the log they were
    checked against); (empty, None, None) when the index cannot be used."""
    try:
        with open(log, "rb") as handle:
            stat = os.fstat(handle.fileno())
            metrics, indexed = read_index(index, handle, stat.st_size, fingerprint(patterns),
                                          patterns)
    except OSError:
        return MetricSet(patterns), None, None
    return metrics, indexed, (stat.st_dev, stat.st_ino)


def read_index(index: Path, handle, size: int, print_: str,
               patterns: Sequence[str]) -> tuple[MetricSet, Indexed | None]:
    """(metrics restored from the index and its segments, what it held), or (an empty
    MetricSet, None) when the index is missing, damaged, of another parser, or no longer
    matches the log."""
    try:
        data, file = _mapped(index)
        header, body, segments = _read_file(data)
        if header["fingerprint"] != print_:
            raise ValueError("another parser")
        checks = [header["log"], *(segment["log"] for segment, _ in segments)]
        if not _still_matches(checks, handle, size):
            raise ValueError("stale")
        metrics = MetricSet(patterns)
        for part, part_body in ((header, body), *segments):
            _restore_part(metrics, part, part_body)
        return metrics, Indexed(checks[-1]["offset"], file, len(segments), _lengths(metrics),
                                weakref.ref(metrics))
    except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError,
            json.JSONDecodeError, UnicodeDecodeError):
        return MetricSet(patterns), None


def _mapped(index: Path) -> tuple[memoryview, tuple[int, int, int]]:
    """The index file's bytes, mapped (unmapped when the last view of them goes: its points
    are copied once, into their series), and the file's (st_dev, st_ino, st_size)."""
    with open(index, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if stat.st_size < len(MAGIC) + 8:
            raise ValueError("not an index")
        data = memoryview(mmap.mmap(handle.fileno(), stat.st_size, access=mmap.ACCESS_READ))
    return data, (stat.st_dev, stat.st_ino, stat.st_size)


def _read_file(data: memoryview) -> tuple[dict, memoryview, list[tuple[dict, memoryview]]]:
    """(header, body) of the index and of each of its segments, their checksums checked."""
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError("not an index")
    at = len(MAGIC)
    length = int.from_bytes(data[at:at + 8], "little")
    header = json.loads(bytes(data[at + 8:at + 8 + length]))
    if header.get("version") != VERSION:
        raise ValueError("another version")
    at += 8 + length
    body = data[at:at + header["body_bytes"]]
    if (len(body) != header["body_bytes"]
            or zlib.crc32(body, _described_crc(header["state"], header["series"]))
            != header["body"]):
        raise ValueError("damaged")
    at += len(body)
    segments, offset = [], header["log"]["offset"]
    while at < len(data):
        segment, segment_body, at = _read_segment(data, at)
        if segment["start"] != offset:
            raise ValueError("a segment of another offset")  # two writers at once
        offset = segment["log"]["offset"]
        segments.append((segment, segment_body))
    return header, body, segments


def _read_segment(data: memoryview, at: int) -> tuple[dict, memoryview, int]:
    """(header, body, where the next one starts) of the segment at `at`."""
    if data[at:at + len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
        raise ValueError("not a segment")
    at += len(SEGMENT_MAGIC)
    header_bytes, body_bytes, crc = (int.from_bytes(data[at + begin:at + end], "little")
                                     for begin, end in ((0, 8), (8, 16), (16, 20)))
    at += 20
    end = at + header_bytes + body_bytes
    if end > len(data) or zlib.crc32(data[at:end]) != crc:
        raise ValueError("damaged segment")  # cut short by a crash, or garbage
    return json.loads(bytes(data[at:at + header_bytes])), data[at + header_bytes:end], end


def _still_matches(checks: list[dict], handle, size: int) -> bool:
    digests: dict = {}
    for check in checks:
        offset = check["offset"]
        if not isinstance(offset, int) or not 0 < offset <= size:
            return False  # truncated below what was parsed
        if _log_checks(handle.fileno(), offset, digests) != check:
            return False
    return True


def _restore_part(metrics: MetricSet, part: dict, body: memoryview) -> None:
    """Append the points of the index's body or of a segment to `metrics` (its series in
    order: those `metrics` has first) and take the parser's state at its end."""
    state = part["state"]
    metrics.lines, metrics.records = int(state["lines"]), int(state["records"])
    metrics.carry_on(state["last_step"], state["epoch"],
                     {tuple(names): values for names, values in state["previous"]})
    entries = part["series"]
    if [entry["name"] for entry in entries[:len(metrics.series)]] != list(metrics.series):
        raise ValueError("series order")
    at = 0
    added_xs: list[memoryview] = []  # the xs of each entry, for `xs_of`
    for entry in entries:
        series = metrics.series_named(entry["name"])
        count = int(entry["count"])
        width = 8 * count
        shared = entry.get("xs_of")
        if shared is None:
            xs = body[at:at + width]
            at += width
        elif isinstance(shared, int) and 0 <= shared < len(added_xs):
            xs = added_xs[shared]
        else:
            raise ValueError("xs_of")
        added_xs.append(xs)
        before = len(series.ys)
        series.xs.frombytes(xs)
        series.ys.frombytes(body[at:at + width])
        at += width
        if not len(series.xs) - before == len(series.ys) - before == count >= 0:
            raise ValueError("short body")
        blocks = 8 * (len(series.ys) // BLOCK - before // BLOCK)
        series.take_scanned(entry, [body[at + k * blocks:at + (k + 1) * blocks]
                                    for k in range(4)])
        at += 4 * blocks
    if at != len(body):
        raise ValueError("body length")


def _lengths(metrics: MetricSet) -> dict[str, int]:
    return {name: len(series.ys) for name, series in metrics.series.items()}


# --------------------------------------------------------------------------- writing


def update_index(index: Path, metrics: MetricSet, fd: int, offset: int, print_: str,
                 indexed: Indexed | None) -> Indexed | None:
    """Bring the index up to `offset` (a line's end of the log open as `fd`): a segment of
    what `metrics` added since `indexed` when the file is still that one and has room, else
    the whole index again. What it then holds; None when it holds nothing."""
    if indexed is not None and indexed.owner() is metrics and indexed.offset == offset:
        return indexed
    if (indexed is not None and indexed.owner() is metrics and indexed.offset < offset
            and indexed.segments < MAX_SEGMENTS):
        appended = _append_segment(index, metrics, fd, offset, indexed)
        if appended is not None:
            return appended
    return write_index(index, metrics, fd, offset, print_)


def write_index(index: Path, metrics: MetricSet, fd: int, offset: int,
                print_: str) -> Indexed | None:
    """Write the whole index of `metrics`, which covers the log open as `fd` up to `offset`
    (a line's end), atomically. What it then holds; None when too big or not writable (a
    cache may fail)."""
    series = list(metrics.series.values())
    entries, body = _points(series, [0] * len(series))
    if sum(8 * len(part) for part in body) > MAX_INDEX_BYTES:
        _remove(index)  # an older, smaller index would only be stale
        return None
    state = _state(metrics)
    header = {
        "version": VERSION, "fingerprint": print_, "log": _log_checks(fd, offset),
        "state": state, "series": entries,  # damage, not tampering:
        "body": _crc(body, _described_crc(state, entries)),
        "body_bytes": sum(8 * len(part) for part in body),
    }
    encoded = json.dumps(header).encode()
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        # No fsync: a file cut short by a crash fails its checksum and is rebuilt.
        atomic_write(index, [MAGIC, len(encoded).to_bytes(8, "little"), encoded, *body],
                     durable=False)
        stat = os.stat(index)
    except OSError:
        return None
    if index.parent == cache_dir():
        prune_cache(index.parent, keep=index)
    return Indexed(offset, (stat.st_dev, stat.st_ino, stat.st_size), 0, _lengths(metrics),
                   weakref.ref(metrics))


def _append_segment(index: Path, metrics: MetricSet, fd: int, offset: int,
                    indexed: Indexed) -> Indexed | None:
    """Append what `metrics` added since `indexed` as one segment, with one write; None
    (nothing written) when the file is no longer the one read, or would grow too big."""
    series = list(metrics.series.values())
    starts = [indexed.lengths.get(s.name, 0) for s in series]
    if (list(metrics.series)[:len(indexed.lengths)] != list(indexed.lengths)
            or any(len(s.ys) < start for s, start in zip(series, starts, strict=True))):
        return None  # not the points the index holds and more
    entries, body = _points(series, starts)
    header = {"start": indexed.offset, "log": _log_checks(fd, offset),
              "state": _state(metrics), "series": entries}
    encoded = json.dumps(header).encode()
    length = sum(8 * len(part) for part in body)
    crc = _crc(body, zlib.crc32(encoded))
    blob = b"".join([SEGMENT_MAGIC, len(encoded).to_bytes(8, "little"),
                     length.to_bytes(8, "little"), crc.to_bytes(4, "little"), encoded, *body])
    if indexed.file[2] + len(blob) > MAX_INDEX_BYTES:
        return None
    try:
        out = os.open(index, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return None
    try:
        stat = os.fstat(out)
        if (stat.st_dev, stat.st_ino, stat.st_size) != indexed.file:
            return None  # replaced or grown by another writer: written whole again
        view = memoryview(blob)
        while view:
            view = view[os.write(out, view):]
    except OSError:
        return None  # a part written fails its checksum: the whole index is written again
    finally:
        os.close(out)
    if index.parent == cache_dir():
        prune_cache(index.parent, keep=index)
    return Indexed(offset, (stat.st_dev, stat.st_ino, stat.st_size + len(blob)),
                   indexed.segments + 1, _lengths(metrics), indexed.owner)


def _state(metrics: MetricSet) -> dict:
    state = metrics.carried_state()
    return {"lines": metrics.lines, "records": metrics.records,
            "last_step": state["last_step"], "epoch": state["epoch"],
            "previous": [[list(k), v] for k, v in state["previous"].items()]}


def _points(series: list[Series], starts: list[int]) -> tuple[list[dict], list[array]]:
    """The entries of each series' points from its start on, and the arrays of the body
    in order (written as they are: no copy of a big index)."""
    xs = [s.xs[start:] if start else s.xs for s, start in zip(series, starts, strict=True)]
    ys = [s.ys[start:] if start else s.ys for s, start in zip(series, starts, strict=True)]
    xs_of = _shared_xs(xs)
    scanned = [s.scanned() for s in series]
    body = [part for at, (s, start) in enumerate(zip(series, starts, strict=True))
            for part in ((ys[at],) if xs_of[at] is not None else (xs[at], ys[at]),
                         s.block_arrays(start // BLOCK))
            for part in part]
    entries = [{"name": s.name, "count": len(ys[at]), "xs_of": xs_of[at], **scanned[at]}
               for at, s in enumerate(series)]
    return entries, body


def _described_crc(state: dict, entries: list[dict]) -> int:
    """The checksum of what the header says of the body (its points' summaries included:
    a damaged min would be a wrong figure); JSON of them reads back to the same text."""
    return zlib.crc32(json.dumps([state, entries]).encode())


def _crc(parts: list[array], crc: int = 0) -> int:
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def _shared_xs(xs: list[array]) -> list[int | None]:
    """For each series' xs, the first before it that are the same bytes (the series of one
    kind of record share their steps), or None."""
    firsts: dict[tuple, list[int]] = {}  # (length, first x, last x) -> series with them
    shared: list[int | None] = []
    for at, one in enumerate(xs):
        key = (len(one), one[:1].tobytes(), one[-1:].tobytes())
        candidates = firsts.setdefault(key, [])
        shared.append(next((first for first in candidates if _same_bits(xs[first], one)),
                           None))
        if shared[-1] is None:
            candidates.append(at)
    return shared


def _same_bits(a: array, b: array) -> bool:
    """Whether two arrays of doubles hold the same bits (nan equals nan), compared in C
    without copying them."""
    with memoryview(a) as one, memoryview(b) as other:
        with one.cast("B").cast("Q") as left, other.cast("B").cast("Q") as right:
            return left == right


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def prune_cache(folder: Path, keep: Path | None = None,
                limit: int = CACHE_LIMIT_BYTES) -> None:
    """Delete the least recently written indexes until the folder holds at most `limit`."""
    try:
        entries = [(p.stat().st_mtime, p.stat().st_size, p) for p in folder.glob("*.index")]
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path != keep:
            _remove(path)
            total -= size
