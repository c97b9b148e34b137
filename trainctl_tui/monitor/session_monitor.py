"""One session's live log and metrics: what the session screen shows and redraws."""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .metrics import MetricSet
from .tail import LogFollower

if TYPE_CHECKING:
    import asyncio

SUMMARY_TAIL_BYTES = 2 << 20
HISTORY_SLICE = 16 << 20
_summary_cache: OrderedDict[tuple, LogSummary] = OrderedDict()
SUMMARY_CACHE_SIZE = 256
INDEX_EVERY = 60.0  # seconds between index writes of a live run
PREVIEW_AFTER = 2 * HISTORY_SLICE  # a log this big gets its end charted first
PREVIEW_BYTES = 4 << 20


@dataclass
class MonitorUpdate:
    lines: list[str] = field(default_factory=list)  # new lines for the log view
    partial: str | None = None  # a live progress bar still being redrawn
    reset: bool = False  # the log was truncated or replaced: clear the view
    note: str | None = None
    metrics_changed: bool = False
    catching_up: bool = False  # older history still being parsed into the metrics
    history: tuple[int, int] | None = None  # (bytes parsed, bytes in all) while catching up


Live = tuple[float, dict[str, float]]  # x and values of the unfinished last line


class SessionMonitor:
    """Follows a log twice: from the tail for the view, from the start for the metrics.

    The metrics start from the log's index (see `index`) when it is current, so a big log's
    chart is there at once; the index is brought up to date once the history is parsed."""

    def __init__(self, log_path: Path, patterns: Sequence[str] = (), *,
                 initial_lines: int = 2000, use_index: bool = True):
        self.log_path = Path(log_path)
        self.patterns = tuple(patterns)
        self.view = LogFollower(self.log_path, start="tail", initial_lines=initial_lines)
        self.history: LogFollower | None = None  # opened by the first parse, in a thread
        self.metrics = MetricSet(self.patterns)
        self.live: Live | None = None  # the metrics of a progress bar still redrawing
        self.index = None
        if use_index:
            from .index import index_path  # here only: summaries for --once need no index

            self.index = index_path(self.log_path)
        self._indexed = None  # what the index held when last read or written (`index.Indexed`)
        self._tried = (0, -math.inf)  # offset and time of the last index read or written
        self._expected_identity: tuple[int, int] | None = None
        self.preview: MetricSet | None = None  # the log's end, shown while its start is read

    @property
    def shown(self) -> MetricSet:
        """What the chart draws: on a big log's first open, the series of its last few
        megabytes until the history is parsed (so the newest part shows at once)."""
        return self.preview if self.preview is not None else self.metrics

    async def updates(self, *, stop: asyncio.Event | None = None,
                      poll_interval: float = 0.5) -> AsyncIterator[MonitorUpdate]:
        """Updates as the log grows: the tail at once, then new lines as watchfiles (or
        polling) reports them. A long history is parsed in slices, yielding in between, so
        the caller stays responsive while the chart fills in."""
        import asyncio  # here only: `trainctl --once` reads summaries without an event loop

        async for shown in self.view.updates(poll_interval=poll_interval, stop=stop):
            update = MonitorUpdate(lines=shown.lines, partial=shown.partial, reset=shown.reset,
                                   note=shown.note)
            if self.history is None:  # the first look: the index, or a big log's end first
                await asyncio.to_thread(self._start_history, update)
                if self.preview is not None:
                    update.catching_up, update.history = True, (0, self.history.pending_bytes)
                    yield update
                    update = MonitorUpdate()
            while True:
                await asyncio.to_thread(self._parse_history, update, HISTORY_SLICE)
                if not update.catching_up:
                    break
                yield update
                update = MonitorUpdate()
            yield update

    def _parse_history(self, update: MonitorUpdate, max_bytes: int) -> None:
        if self.history is None:
            self._start_history(update)
        parsed = self.history.poll(max_bytes=max_bytes)
        if self._expected_identity is not None:
            parsed = self._check_identity(parsed, update, max_bytes)
        if parsed.reset:
            self._start_over()
            update.metrics_changed = True
        for line in parsed.lines:
            if self.metrics.feed_line(line):
                update.metrics_changed = True
        update.catching_up = self.history.pending_bytes > 0
        if not update.catching_up and self.preview is not None:
            self.preview, update.metrics_changed = None, True
        if update.catching_up:
            update.history = (self.history.offset, self.history.offset +
                              self.history.pending_bytes)
        else:
            self._save_index()
        live = None
        if parsed.partial and not update.catching_up:
            live = self.metrics.peek_line(parsed.partial)
        if live != self.live:
            self.live = live
            update.metrics_changed = True

    def _start_history(self, update: MonitorUpdate) -> None:
        """Start from the index when it is current (checked against the file the follower
        then opens: a log replaced in between is parsed from its start)."""
        from . import index

        offset, identity = 0, None
        if self.index is not None:
            metrics, indexed, identity = index.restore(self.log_path, self.patterns, self.index)
            if indexed is not None:
                self.metrics, update.metrics_changed = metrics, True
                # what was appended since is added to it as soon as it is parsed
                self._indexed, offset = indexed, indexed.offset
                self._tried = (offset, -math.inf)
        self.history = LogFollower(self.log_path, start="beginning", raw_lines=True,
                                   offset=offset or None)
        self._expected_identity = identity if offset else None
        if not offset:
            self.preview = tail_preview(self.log_path, self.patterns)
            update.metrics_changed = self.preview is not None

    def _check_identity(self, parsed, update: MonitorUpdate, max_bytes: int):
        """The follower's first read must be of the file the index was checked against."""
        fd, expected = self.history.fileno(), self._expected_identity
        self._expected_identity = None
        if fd is not None and (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == expected:
            return parsed
        self.history.close()  # replaced in between: its start, without the index
        self.history = LogFollower(self.log_path, start="beginning", raw_lines=True)
        self._start_over()
        update.metrics_changed = True
        return self.history.poll(max_bytes=max_bytes)

    def _start_over(self) -> None:
        """Metrics from nothing (the log was truncated or replaced): the index is not theirs."""
        self.metrics, self._indexed, self._tried = MetricSet(self.patterns), None, (0, -math.inf)

    def _save_index(self) -> None:
        """Bring the index up to date once the history is parsed, when enough is new since
        it (a segment of what was added; a live run at most every INDEX_EVERY seconds)."""
        from . import index

        offset, fd = self.history.line_offset, self.history.fileno()
        done_offset, done_at = self._tried  # a failed write is not tried again at once
        if (self.index is None or fd is None or offset < index.MIN_LOG_BYTES
                or offset - done_offset < (index.SEGMENT_BYTES if done_offset else 1)
                or time.monotonic() - done_at < INDEX_EVERY):
            return
        self._indexed = index.update_index(self.index, self.metrics, fd, offset,
                                           index.fingerprint(self.patterns), self._indexed)
        self._tried = (offset, time.monotonic())

    def close(self) -> None:
        self.view.close()
        if self.history is not None:
            self.history.close()


def tail_preview(log_path: Path, patterns: Sequence[str]) -> MetricSet | None:
    """The metrics of a big log's last PREVIEW_BYTES, or None when the log is small enough to
    parse at once or the tail alone cannot place its points (an x that is a record's index
    counts from the start of the log)."""
    try:
        size = os.stat(log_path).st_size
        if size <= PREVIEW_AFTER:
            return None
        with open(log_path, "rb") as handle:
            handle.seek(size - PREVIEW_BYTES)
            data = handle.read(PREVIEW_BYTES)
    except OSError:
        return None
    lines = data.split(b"\n")[1:-1]  # whole lines only: not the cut first, not the unfinished
    preview = MetricSet(tuple(patterns))
    preview.feed_bytes(lines)
    return None if preview.indexed_x or not preview.series else preview


@dataclass
class LogSummary:
    metrics: MetricSet  # everything in the tail that was read
    attempt: MetricSet  # only what the current attempt printed (for alerts after a resume)


ATTEMPT_MARKER = "[trainctl] attempt "


def metrics_summary(log_path: Path, patterns: Sequence[str] = (),
                    tail_bytes: int = SUMMARY_TAIL_BYTES) -> LogSummary | None:
    """Metrics of the last `tail_bytes` of a log: enough for last values and a sparkline.

    Cached by (path, size, mtime), so a table of many sessions re-reads only logs that grew.
    """
    try:
        stat = os.stat(log_path)
    except OSError:
        return None
    key = (str(log_path), stat.st_size, stat.st_mtime_ns, tuple(patterns))
    cached = _summary_cache.get(key)
    if cached is not None:
        _summary_cache.move_to_end(key)
        return cached
    with open(log_path, "rb") as handle:
        start = max(0, stat.st_size - tail_bytes)
        handle.seek(start)
        data = handle.read(stat.st_size - start)
    if start:
        data = data.split(b"\n", 1)[-1]  # drop the first, cut line
    lines = data.split(b"\n")  # raw: the parser handles \r redraws and escapes itself
    marker = ATTEMPT_MARKER.encode()
    starts = [i for i, line in enumerate(lines) if line.startswith(marker)]
    metrics = MetricSet(tuple(patterns))
    metrics.feed_bytes(lines)
    attempt = metrics  # the whole tail is the current attempt unless an earlier one shows
    if starts and starts[-1] > 0:
        attempt = MetricSet(tuple(patterns))
        attempt.feed_bytes(lines[starts[-1]:])
    summary = LogSummary(metrics, attempt)
    _summary_cache[key] = summary
    while len(_summary_cache) > SUMMARY_CACHE_SIZE:
        _summary_cache.popitem(last=False)
    return summary
