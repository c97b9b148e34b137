"""A cold parse of a big log on every core, with the result of a serial parse, bit for bit.

The log is cut at line ends into one chunk per core. This process parses the first chunk;
worker processes parse the others, each from an empty state. The parser carries state from
line to line (the last step, Keras' epoch, the last values of step-less records and of each
series, which decide what a repeat is), so a worker's first lines may be read differently
than the serial parse would read them. Each worker therefore notes its state at checkpoints
near its chunk's start. When the chunk before is done, this process parses the chunk's lines
itself up to a checkpoint where its state and the worker's agree on everything the rest of the
chunk can read (see `_agrees`), then takes the worker's points from there on. A chunk whose
state never agrees in time is parsed here in full: slower, never different.

Only for big parses (PARALLEL_MIN_BYTES): starting processes costs ~0.1 s.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Sequence

from .metrics import MetricSet, extract_range

PARALLEL_MIN_BYTES = 64 << 20  # a parse this big uses every core
NO_READS = {"x": False, "index": False}
CHECKPOINT_BYTES = 256 << 10  # a worker notes its state this often near its chunk's start
CHECKPOINTS = 32  # ... for its first 8 MB; a chunk agreeing later is parsed here in full
# This process's chunk, against a worker's: it also stitches the chunks and writes the
# index, so it takes a little less and summarises its own points while the workers finish.
FIRST_SHARE = 0.9


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _FirstSets(dict):
    """A worker's `MetricSet._previous` that also keeps the first values set for each key:
    a key absent from the worker at a checkpoint is first read there, as a repeat or not."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[tuple[str, ...], list[float]] = {}

    def __setitem__(self, key, value) -> None:
        if key not in self:
            self.first[key] = list(value)
        super().__setitem__(key, value)


# --------------------------------------------------------------------------- in a worker


def _snapshot(metrics: MetricSet, offset: int) -> dict:
    """What the rest of a chunk's parse can read of `metrics` at a line's end."""
    series = {name: (len(s), s.xs[-1], s.ys[-1]) if len(s) else (0, None, None)
              for name, s in metrics.series.items()}
    state = metrics.carried_state()
    return {"offset": offset, "lines": metrics.lines, "records": metrics.records,
            "last_step": state["last_step"], "epoch": state["epoch"],
            "previous": dict(state["previous"]), "series": series}


def parse_chunk(path: str, identity: tuple[int, int], start: int, end: int,
                patterns: Sequence[str], checkpoint_bytes: int = CHECKPOINT_BYTES,
                checkpoints: int = CHECKPOINTS) -> dict | None:
    """The parse of [start, end) of the log from an empty state, with its checkpoints;
    None when `path` is no longer the file the parent opened."""
    first_sets = _FirstSets()
    metrics = MetricSet(patterns, previous=first_sets)
    snapshots, reads = [], []  # reads[i]: what was read between snapshots i and i + 1
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if (stat.st_dev, stat.st_ino) != identity:
            return None
        at = start
        while True:
            snapshots.append(_snapshot(metrics, at))
            metrics.indexed_x, metrics.reads = False, dict(NO_READS)
            stop = end if len(snapshots) > checkpoints else _line_end(handle, at +
                                                                      checkpoint_bytes, end)
            extract_range(metrics, handle, at, stop)
            reads.append({"x": metrics.reads["x"],
                          "index": metrics.reads["index"] or metrics.indexed_x})
            at = stop
            if at >= end:
                break
    return {
        "snapshots": snapshots, "reads": _reads_after(reads), "first_sets": first_sets.first,
        "end": _snapshot(metrics, end),
        "series": [(name, s.xs.tobytes(), s.ys.tobytes()) for name, s in metrics.series.items()],
    }


def _reads_after(reads: list[dict]) -> list[dict]:
    """For each snapshot, what the worker read anywhere after it."""
    out, seen = [], NO_READS
    for read in reversed(reads):
        seen = {key: seen[key] or read[key] for key in seen}
        out.append(seen)
    return out[::-1]


def _line_end(handle, offset: int, end: int) -> int:
    """The offset just past the first newline at or after `offset`, at most `end`."""
    if offset >= end:
        return end
    handle.seek(offset)
    while offset < end:
        block = handle.read(min(1 << 16, end - offset))
        if not block:
            return end
        newline = block.find(b"\n")
        if newline >= 0:
            return min(end, offset + newline + 1)
        offset += len(block)
    return end


# --------------------------------------------------------------------------- in the parent


def chunk_bounds(handle, start: int, end: int, parts: int, first: float = 1.0) -> list[int]:
    """`parts` + 1 offsets from start to end, each just past a newline (fewer when lines
    are longer than a chunk); the first chunk `first` times the size of the others."""
    bounds = [start]
    total = first + parts - 1
    for part in range(1, parts):
        cut = _line_end(handle, start + int((end - start) * (first + part - 1) / total), end)
        if bounds[-1] < cut < end:
            bounds.append(cut)
    bounds.append(end)
    return bounds


def extract_in_parallel(metrics: MetricSet, handle, start: int, end: int, *,
                        parts: int | None = None, checkpoint_bytes: int = CHECKPOINT_BYTES,
                        progress: Callable[[int], None] | None = None) -> list[int] | None:
    """Feed [start, end) of the open log to `metrics` as `extract_range` would (end just past
    a newline), the chunks after the first parsed in worker processes. Returns how many bytes
    of each of those chunks were parsed here to stitch it on; None, having fed nothing, when
    the log cannot be reopened by name or this process cannot start workers."""
    path = getattr(handle, "name", None)
    if not isinstance(path, str | bytes) or not os.path.exists(path):
        return None
    stat = os.fstat(handle.fileno())
    bounds = chunk_bounds(handle, start, end, parts or core_count(), FIRST_SHARE)
    context = _context() if len(bounds) > 2 else None
    if context is None:
        return None
    from concurrent.futures import ProcessPoolExecutor

    patterns = [regex.pattern for regex in metrics.parser.patterns]
    with ProcessPoolExecutor(len(bounds) - 2, mp_context=context) as pool:
        futures = [pool.submit(parse_chunk, path, (stat.st_dev, stat.st_ino), begin, stop,
                               patterns, checkpoint_bytes)
                   for begin, stop in zip(bounds[1:-1], bounds[2:], strict=True)]
        first = bounds[1] - start
        scaled = None if progress is None else (lambda done: progress(
            min(end - start, done * (end - start) // first)))
        extract_range(metrics, handle, start, bounds[1], progress=scaled)
        for series in metrics.series.values():  # what the index will need of them, now
            series.scanned()
        stitched = [_stitch(metrics, handle, begin, stop, future.result())
                    for begin, stop, future in zip(bounds[1:-1], bounds[2:], futures,
                                                   strict=True)]
    if progress is not None:
        progress(end - start)
    return stitched


def _context():
    """fork (the workers start at once, nothing is imported again), only in a process with
    one thread: forking a threaded process can deadlock the child, and forkserver or spawn
    would import the caller's __main__ again. None: parse in this process."""
    import sys
    import threading

    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    import multiprocessing

    return multiprocessing.get_context("fork")


def _stitch(metrics: MetricSet, handle, start: int, end: int, result: dict | None) -> int:
    """Parse [start, end) here up to the first checkpoint where `metrics` agrees with the
    worker's state, then take the worker's points from there on; the bytes parsed here."""
    at = start
    for snapshot, reads in zip(result["snapshots"] if result else [],
                               result["reads"] if result else [], strict=True):
        extract_range(metrics, handle, at, snapshot["offset"])
        at = snapshot["offset"]
        if not reads["index"] and _agrees(metrics, snapshot, result, reads["x"]):
            _adopt(metrics, snapshot, result)
            return at - start
    extract_range(metrics, handle, at, end)
    return end - start


def _same(a: float | None, b: float | None) -> bool:
    """Equal, or both nan: a repeat check (`==`) reads either the same way."""
    return a == b or (a != a and b != b)


def _agrees(metrics: MetricSet, snapshot: dict, result: dict, reads_x: bool) -> bool:
    """Whether the rest of the worker's chunk reads `metrics` as it read its own state at
    `snapshot`: the last step and epoch, the last values of step-less records and the last
    point of each series (its x only if a repeated step reads it), where the worker has
    them; where it has not, whether the first record the worker added there would have been
    a repeat here (then it would not be)."""
    state = metrics.carried_state()
    if state["last_step"] != snapshot["last_step"] or state["epoch"] != snapshot["epoch"]:
        return False
    previous, seen = state["previous"], snapshot["previous"]
    if any(previous.get(key) != values for key, values in seen.items()):
        return False
    if any(key not in seen and previous.get(key) == values
           for key, values in result["first_sets"].items()):
        return False
    first_ys = {name: ys for name, _, ys in result["series"]}
    for name, (count, x, y) in snapshot["series"].items():
        mine = metrics.series.get(name)
        if mine is None:
            return False  # created there: the order of the series would differ
        if count and not (len(mine) and _same(mine.ys[-1], y)
                          and (not reads_x or _same(mine.xs[-1], x))):
            return False
    for name, mine in metrics.series.items():
        count = snapshot["series"].get(name, (0,))[0]
        ys = first_ys.get(name, b"")
        if not count and len(mine) and ys and mine.ys[-1] == array("d", ys[:8])[0]:
            return False
    return True


def _adopt(metrics: MetricSet, snapshot: dict, result: dict) -> None:
    """Append the worker's points after `snapshot` and take its state at the chunk's end."""
    for name, xs, ys in result["series"]:
        skip = 8 * snapshot["series"].get(name, (0,))[0]
        series = metrics.series_named(name)
        before = len(series.ys)
        series.xs.frombytes(memoryview(xs)[skip:])
        series.ys.frombytes(memoryview(ys)[skip:])
        series.count_nonfinite(before)
    end = result["end"]
    metrics.lines += end["lines"] - snapshot["lines"]
    metrics.records += end["records"] - snapshot["records"]
    metrics.carry_on(end["last_step"], end["epoch"], end["previous"])


def extract_log(metrics: MetricSet, handle, start: int, end: int, *,
                progress: Callable[[int], None] | None = None) -> None:
    """`extract_range`, on every core when the range is big (same result, bit for bit)."""
    if end - start < PARALLEL_MIN_BYTES or extract_in_parallel(
            metrics, handle, start, end, progress=progress) is None:
        extract_range(metrics, handle, start, end, progress=progress)
