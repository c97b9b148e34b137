"""A cache of what a log's parse found, so reopening a big log parses only what was appended.

The index holds the series, the byte offset the parse reached (always just past a newline)
and the little state the parser carries from line to line. It is a cache, never the truth:
it is used only when the log still starts with the same bytes, still holds the same bytes
just before the offset (a truncated, rotated or rewritten log does not), was made by the same
parser code with the same patterns, and its own checksum holds. Anything else, a damaged
file included, means a parse from the start. Written atomically; an index over
MAX_INDEX_BYTES is not written, and the cache folder is kept under CACHE_LIMIT_BYTES (oldest
first), so a user can delete it at any time and lose only time.

Where: beside a session's log (`.metrics-index` in the folder holding spec.json), else in
the user cache dir (`$TRAINCTL_HOME/cache/metrics`, or the platform's user cache dir).

File layout: MAGIC, an 8-byte little-endian header length, the JSON header, then for each
series its xs (unless they are, bit for bit, those of a series before it: `xs_of` names it)
and its ys, as raw `array('d')` bytes.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.atomic import atomic_write
from .metrics import MetricSet, extract_range
from .parallel import extract_log
from .series import Series

MAGIC = b"trainctl metrics index\n"
VERSION = 2
CHECK_BYTES = 64 * 1024  # hashed at the log's head and just before the offset
MAX_INDEX_BYTES = 256 << 20  # 16 M points; a bigger index is not written
MIN_LOG_BYTES = 4 << 20  # a smaller log parses in well under a second: no index for it
# An index is rewritten once this much was parsed past it: a reopen after a small append
# parses the few new megabytes instead of writing the whole index again.
REWRITE_BYTES = 32 << 20
CACHE_LIMIT_BYTES = 1 << 30
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
        metrics, start = read_index(index, handle, size, print_, patterns)
        end = _line_boundary(handle, start, size)
        def report(at: int) -> Callable[[int], None] | None:
            return None if progress is None else (lambda done: progress(at + done, size - start))

        extract_log(metrics, handle, start, end, progress=report(0))
        if end >= MIN_LOG_BYTES and end - start >= (REWRITE_BYTES if start else 1):
            write_index(index, metrics, handle.fileno(), end, print_)
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


def _log_checks(fd: int, offset: int) -> dict:
    """What must still hold for an index reaching `offset` of the log open as `fd`."""
    def digest(begin: int, end: int) -> str:
        return hashlib.sha256(os.pread(fd, end - begin, begin)).hexdigest()

    return {"offset": offset, "head": digest(0, min(CHECK_BYTES, offset)),
            "before": digest(max(0, offset - CHECK_BYTES), offset)}


# --------------------------------------------------------------------------- reading


def restore(log: Path, patterns: Sequence[str], index: Path
            ) -> tuple[MetricSet, int, tuple[int, int] | None]:
    """(metrics from the index, offset they cover, (st_dev, st_ino) of the log they were
    checked against); (empty, 0, None) when the index cannot be used."""
    try:
        with open(log, "rb") as handle:
            stat = os.fstat(handle.fileno())
            metrics, offset = read_index(index, handle, stat.st_size, fingerprint(patterns),
                                         patterns)
    except OSError:
        return MetricSet(patterns), 0, None
    return metrics, offset, (stat.st_dev, stat.st_ino)


def read_index(index: Path, handle, size: int, print_: str,
               patterns: Sequence[str]) -> tuple[MetricSet, int]:
    """(metrics restored from the index, offset they cover), or (an empty MetricSet, 0) when
    the index is missing, damaged, of another parser, or no longer matches the log."""
    try:
        header, body = _read_file(_mapped(index))
        if header["fingerprint"] != print_ or not _still_matches(header["log"], handle, size):
            raise ValueError("stale")
        return _restore(header, body, patterns), header["log"]["offset"]
    except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError,
            json.JSONDecodeError, UnicodeDecodeError):
        return MetricSet(patterns), 0


def _mapped(index: Path) -> memoryview:
    """The index file's bytes, mapped (unmapped when the last view of them goes): its
    points are copied once, into their series."""
    with open(index, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < len(MAGIC) + 8:
            raise ValueError("not an index")
        return memoryview(mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ))


def _read_file(data: memoryview) -> tuple[dict, memoryview]:
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError("not an index")
    at = len(MAGIC)
    length = int.from_bytes(data[at:at + 8], "little")
    header = json.loads(bytes(data[at + 8:at + 8 + length]))
    body = data[at + 8 + length:]
    if header.get("version") != VERSION or zlib.crc32(body) != header["body"]:
        raise ValueError("damaged")
    return header, body


def _still_matches(checks: dict, handle, size: int) -> bool:
    offset = checks["offset"]
    if not isinstance(offset, int) or not 0 < offset <= size:
        return False  # truncated below what was parsed
    return _log_checks(handle.fileno(), offset) == checks


def _restore(header: dict, body: bytes, patterns: Sequence[str]) -> MetricSet:
    metrics = MetricSet(patterns)
    state = header["state"]
    metrics.lines, metrics.records = int(state["lines"]), int(state["records"])
    metrics._last_step = state["last_step"]
    metrics._previous = {tuple(names): values for names, values in state["previous"]}
    metrics.parser._epoch = state["epoch"]
    at = 0
    restored: list[Series] = []
    for entry in header["series"]:
        series = Series(entry["name"])
        width = 8 * int(entry["count"])
        shared = entry.get("xs_of")
        if shared is None:
            series.xs.frombytes(body[at:at + width])
            at += width
        elif not (isinstance(shared, int) and 0 <= shared < len(restored)):
            raise ValueError("xs_of")
        else:
            series.xs.extend(restored[shared].xs)
        series.ys.frombytes(body[at:at + width])
        at += width
        if not len(series.xs) == len(series.ys) == entry["count"]:
            raise ValueError("short body")
        series.nonfinite, series._first_bad = int(entry["nonfinite"]), int(entry["first_bad"])
        metrics.series[series.name] = series
        restored.append(series)
    if at != len(body):
        raise ValueError("body length")
    return metrics


# --------------------------------------------------------------------------- writing


def write_index(index: Path, metrics: MetricSet, fd: int, offset: int, print_: str) -> bool:
    """Write the index of `metrics`, which covers the log open as `fd` up to `offset` (a
    line's end), atomically; False when too big or not writable (a cache may fail)."""
    points = sum(len(s) for s in metrics.series.values())
    if points * 16 > MAX_INDEX_BYTES:
        _remove(index)  # an older, smaller index would only be stale
        return False
    xs_of = _shared_xs(list(metrics.series.values()))
    body = b"".join((b"" if xs_of[at] is not None else s.xs.tobytes()) + s.ys.tobytes()
                    for at, s in enumerate(metrics.series.values()))
    header = {
        "version": VERSION, "fingerprint": print_, "log": _log_checks(fd, offset),
        "state": {"lines": metrics.lines, "records": metrics.records,
                  "last_step": metrics._last_step, "epoch": metrics.parser._epoch,
                  "previous": [[list(k), v] for k, v in metrics._previous.items()]},
        "series": [{"name": s.name, "count": len(s), "nonfinite": s.nonfinite,
                    "first_bad": s._first_bad, "xs_of": xs_of[at]}
                   for at, s in enumerate(metrics.series.values())],
        "body": zlib.crc32(body),  # damage, not tampering: a cache the user owns
    }
    encoded = json.dumps(header).encode()
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        # No fsync: a file cut short by a crash fails its checksum and is rebuilt.
        atomic_write(index, [MAGIC, len(encoded).to_bytes(8, "little"), encoded, body],
                     durable=False)
    except OSError:
        return False
    if index.parent == cache_dir():
        prune_cache(index.parent, keep=index)
    return True


def _shared_xs(series: list[Series]) -> list[int | None]:
    """For each series, the first series before it whose xs are the same bytes (the series
    of one kind of record share their steps), or None."""
    firsts: dict[bytes, int] = {}  # a digest of xs -> the first series with them
    shared: list[int | None] = []
    for at, one in enumerate(series):
        key = hashlib.sha1(one.xs).digest()
        first = firsts.setdefault(key, at)
        shared.append(first if first != at and series[first].xs.tobytes() == one.xs.tobytes()
                      else None)
    return shared


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
