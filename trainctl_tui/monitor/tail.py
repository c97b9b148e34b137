"""Reading the end of a log and following it by byte offset, without loading the whole file.

`LogFollower` is the one reader: it keeps a byte offset into the file it holds open, reads only
what was appended, and turns bytes into display lines with `LineAssembler` (a `\\r` keeps the
last state of a progress bar, invalid UTF-8 becomes U+FFFD, very long lines are capped).
Truncation and rotation are detected; the follower then starts over and says so in a note.
`last_lines` and `follow` are the small synchronous helpers the CLI uses; asyncio is imported
only by the async parts (the TUI's), so `trainctl logs` starts without it.
"""

from __future__ import annotations

import codecs
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import asyncio

BLOCK = 64 * 1024
MAX_LINE_BYTES = 64 * 1024
RAW_MAX_LINE_BYTES = 16 << 20  # a raw line (every frame of a bar) for the metrics parser
# The first look at a big log reads at most this much from its end, however few lines it holds.
TAIL_WINDOW = 2 << 20
# Bytes before the offset compared on every read, to notice a file truncated and rewritten
# past our offset between two polls (copytruncate while we were not looking).
MARK_BYTES = 64
# Without watchfiles a stat() is all a poll costs, so polling fast keeps latency low.
FALLBACK_POLL_INTERVAL = 0.1
# Changes worth a poll() in the event loop; more is read in a thread so the loop stays responsive.
THREAD_POLL_BYTES = 1 << 20
# The watcher needs a moment to start; poll fast until then so nothing written meanwhile waits.
WATCH_WARMUP = 1.0

NOTE_TRUNCATED = "log truncated; following from the start"
NOTE_REWRITTEN = "log truncated and rewritten; following from the start"
NOTE_ROTATED = "log rotated (replaced by a new file); following the new file from the start"
NOTE_RECREATED = "log deleted and recreated; following the new file from the start"
NOTE_GONE = "log file moved or removed; waiting for a new one"


def _size_text(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _char_boundary(data: bytes, end: int) -> int:
    """`end` moved back so data[:end] does not stop inside a UTF-8 character."""
    for _ in range(3):
        if end <= 0 or end >= len(data) or data[end] & 0xC0 != 0x80:
            break
        end -= 1
    return end


def _decode(data: bytes, final: bool = True) -> str:
    # final=False holds back an incomplete trailing character: its last bytes are on the way.
    return codecs.utf_8_decode(data, "replace", final)[0]


class LineAssembler:
    """Bytes in, display lines out. `\\n` ends a line; `\\r` starts it over and the last non-empty
    state wins (so `a\\rb\\rc\\n` is `c` and `x\\r\\n` is `x`); a line keeps at most
    `max_line_bytes` and says how much was cut; NUL bytes (sparse holes) are dropped.

    Memory stays bounded: at most two line states of `max_line_bytes` are held, however long a
    progress bar keeps redrawing without a newline."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max(1, max_line_bytes)
        self.cut_lines = 0  # lines finished with a cut, for the caller's notes
        self.clear()

    def clear(self) -> None:
        self._kept = bytearray()  # the current state of the unfinished line
        self._cut = 0  # bytes of that state dropped past max_line_bytes
        self._prev: tuple[bytes, int] | None = None  # last non-empty state before a \r

    @property
    def busy(self) -> bool:
        return bool(self._kept) or self._cut > 0 or self._prev is not None

    def feed(self, data: bytes) -> list[str]:
        """The lines `data` completes; what follows its last newline is kept for later."""
        if b"\0" in data:
            data = data.replace(b"\0", b"")
        *complete, rest = data.split(b"\n")
        lines = []
        for part in complete:
            if part.endswith(b"\r"):
                part = part[:-1]  # CRLF: this \r only ends the line
            if not self.busy and len(part) <= self.max_line_bytes and b"\r" not in part:
                lines.append(part.decode("utf-8", "replace"))  # the common case: no state
            else:
                self._add(part)
                lines.append(self._finish())
        self._add(rest)
        return lines

    def partial(self) -> str | None:
        """The unfinished line as it looks now, or None if there is none."""
        return self._render(*self._state(), final=False) if self.busy else None

    def flush(self) -> str | None:
        """Finish the unfinished line (its file ended for good), or None if there is none."""
        return self._finish() if self.busy else None

    def _add(self, part: bytes) -> None:
        if b"\r" not in part:
            self._append(part)
            return
        first, *middle, last = part.split(b"\r")
        self._append(first)
        self._carriage_return()
        for segment in reversed(middle):  # only the last non-empty redraw can matter
            if segment:
                self._append(segment)
                self._carriage_return()
                break
        self._append(last)

    def _append(self, segment: bytes) -> None:
        if not segment:
            return
        room = self.max_line_bytes - len(self._kept)
        if self._cut or room <= 0:
            self._cut += len(segment)
        elif len(segment) <= room:
            self._kept += segment
        else:
            room = _char_boundary(segment, room)
            self._kept += segment[:room]
            self._cut += len(segment) - room

    def _carriage_return(self) -> None:
        if self._kept or self._cut:
            self._prev = (bytes(self._kept), self._cut)
            self._kept, self._cut = bytearray(), 0

    def _state(self) -> tuple[bytes, int]:
        if self._kept or self._cut:
            return bytes(self._kept), self._cut
        return self._prev or (b"", 0)

    @staticmethod
    def _render(kept: bytes, cut: int, final: bool = True) -> str:
        text = _decode(kept, final)
        return f"{text} … [cut {cut} bytes]" if cut else text

    def _finish(self) -> str:
        kept, cut = self._state()
        self.cut_lines += bool(cut)
        self.clear()
        return self._render(kept, cut)


class RawLineAssembler:
    """Bytes in, whole raw lines out, `\r` redraws and escapes kept (decoded with
    surrogateescape, so encoding gives the bytes back): what the metrics parser needs to
    turn every frame of a progress bar into a point. A line keeps its last `max_line_bytes`
    from a frame boundary on, so a bar redrawing for hours without a newline stays bounded."""

    def __init__(self, max_line_bytes: int = RAW_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max(1, max_line_bytes)
        self.cut_lines = 0
        self.clear()

    def clear(self) -> None:
        self._kept = b""
        self._cut = False

    @property
    def busy(self) -> bool:
        return bool(self._kept)

    def feed(self, data: bytes) -> list[str]:
        *complete, rest = data.split(b"\n")
        lines = []
        for part in complete:
            if self._kept:
                part, self._kept = self._kept + part, b""
            lines.append(self._finish(self._bounded(part)))
        self._kept = self._bounded(self._kept + rest) if rest else self._kept
        return lines

    def partial(self) -> str | None:
        return self._kept.decode("utf-8", "surrogateescape") if self._kept else None

    def flush(self) -> str | None:
        if not self._kept:
            return None
        line, self._kept = self._kept, b""
        return self._finish(line)

    def _bounded(self, line: bytes) -> bytes:
        if len(line) <= self.max_line_bytes:
            return line
        self._cut = True
        line = line[-self.max_line_bytes:]
        frame = line.find(b"\r")
        return line[frame:] if frame >= 0 else line

    def _finish(self, line: bytes) -> str:
        self.cut_lines += self._cut
        self._cut = False
        return line.decode("utf-8", "surrogateescape")


def _scan_back(handle: BinaryIO, end: int, n: int, limit: int | None = None) -> tuple[int, int]:
    """(offset where the last `n` lines before byte `end` start, bytes read to find it).

    Reads backwards block by block; a last line without its newline counts as a line. With
    `limit`, reads at most that many bytes and starts at the first line boundary found in them
    (fewer lines), or at the limit itself when they hold no newline at all."""
    if n <= 0 or end <= 0:
        return end, 0
    floor = 0 if limit is None else max(0, end - limit)
    stop = end - 1  # a newline in the last byte ends the last line; it does not start one
    position, found, earliest = end, 0, None
    while position > floor:
        step = min(BLOCK, position - floor)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        high = min(len(block), stop - position)
        while (index := block.rfind(b"\n", 0, max(high, 0))) >= 0:
            found += 1
            if found == n:
                return position + index + 1, end - position
            earliest, high = position + index, index
    if floor == 0:
        return 0, end
    return (floor if earliest is None else earliest + 1), end - floor


def tail_offset(path: str | os.PathLike, n: int, end: int | None = None) -> int:
    """Byte offset where the last `n` lines before `end` (default: the end) start."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        return _scan_back(handle, size if end is None else min(end, size), n)[0]


def last_lines(path: Path, n: int, end: int | None = None, *,
               max_line_bytes: int = MAX_LINE_BYTES) -> list[str]:
    """The last n lines before byte `end` (default: the end of the file), progress bars
    collapsed to their last state. Reads backwards block by block, so a multi-GB log costs
    about n lines of reading."""
    if n <= 0:
        return []
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return []
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end = size if end is None else min(end, size)
        position = _scan_back(handle, end, n)[0]
        assembler = LineAssembler(max_line_bytes)
        lines: deque[str] = deque(maxlen=n)
        handle.seek(position)
        while position < end:
            data = handle.read(min(BLOCK * 16, end - position))
            if not data:
                break
            position += len(data)
            lines.extend(assembler.feed(data))
        tail = assembler.flush()
        if tail is not None:
            lines.append(tail)
    return list(lines)


@dataclass
class TailUpdate:
    lines: list[str] = field(default_factory=list)  # complete new lines, \r-collapsed, decoded
    partial: str | None = None  # the unfinished last line's latest \r state, or None
    reset: bool = False  # the file was truncated/rotated/replaced; lines start the new file
    note: str | None = None  # human text for reset/cut/removal events


class LogFollower:
    """Follows one log file by byte offset; `poll()` returns what was appended since.

    start="tail": the first poll returns the last `initial_lines` lines, read from the end
    (at most TAIL_WINDOW bytes are looked at); start="beginning": the whole file, in chunks of
    `max_bytes` per poll; start="end": only what is appended later. `offset=` starts at a byte
    position instead. A file that does not exist at the first poll is read from its start
    when it appears. An update with reset=True holds only lines of the new file: what was left
    of the old one comes in the update before.

    Not thread-safe: one consumer at a time (the UI may call poll() from a worker thread)."""

    def __init__(self, path: str | os.PathLike, *, start: str = "tail",
                 initial_lines: int = 1000, max_line_bytes: int = MAX_LINE_BYTES,
                 offset: int | None = None, raw_lines: bool = False) -> None:
        if start not in ("tail", "beginning", "end"):
            raise ValueError(f"start must be 'tail', 'beginning' or 'end', not {start!r}")
        self.path = Path(path)
        self.start = start
        self.initial_lines = initial_lines
        self.bytes_read = 0  # everything read from disk, for benchmarks and tests
        self._start_offset = offset
        # raw_lines: each line whole, with its \r frames (for metrics), not as displayed
        self._assembler = (RawLineAssembler() if raw_lines else LineAssembler(max_line_bytes))
        self._handle: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._mark = b""
        self._started = False  # the start position applies to the first look only
        self._gone_noted = False
        self._error_noted: str | None = None
        self._waker: _Waker | None = None

    @property
    def offset(self) -> int:
        """Byte offset of the next read in the file currently followed."""
        return self._offset

    @property
    def line_offset(self) -> int:
        """Offset where the unfinished line starts (raw_lines followers): all before it was
        handed out as lines."""
        return self._offset - len(getattr(self._assembler, "_kept", b""))

    def fileno(self) -> int | None:
        """The descriptor of the file followed now, or None before it is open."""
        return self._handle.fileno() if self._handle is not None else None

    @property
    def pending_bytes(self) -> int:
        """Bytes known to be waiting: call poll() again while this is not 0 (a pending
        truncation or replacement counts as at least 1, so its reset is not missed)."""
        if self._handle is None:
            try:
                return os.stat(self.path).st_size
            except OSError:
                return 0
        size = os.fstat(self._handle.fileno()).st_size
        if size != self._offset:
            return size - self._offset if size > self._offset else max(size, 1)
        try:
            stat = os.stat(self.path)
        except OSError:
            return 0
        return max(stat.st_size, 1) if (stat.st_dev, stat.st_ino) != self._identity else 0

    @property
    def wake_mode(self) -> str | None:
        """How updates() sleeps: "watchfiles", "polling", or None before it runs."""
        return self._waker.mode if self._waker else None

    def flush(self) -> str | None:
        """Finish the unfinished last line (its writer is done), or None if there is none."""
        return self._assembler.flush()

    def close(self) -> None:
        """Release the file: the follower is done (a later poll would start the file over)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, max_bytes: int = 8 << 20) -> TailUpdate:
        """What was appended since the last poll; never blocks, reads at most max_bytes."""
        update = TailUpdate()
        notes: list[str] = []
        cut_before = self._assembler.cut_lines
        budget = max(1, max_bytes)
        while budget > 0:
            if self._handle is None and not self._open(notes):
                break
            size = os.fstat(self._handle.fileno()).st_size
            if size < self._offset or (size > self._offset and self._rewritten()):
                reason = NOTE_TRUNCATED if size < self._offset else NOTE_REWRITTEN
                if not self._begin_reset(update, notes, reason):
                    break
                self._rewind()
            elif size > self._offset:
                got = self._read(min(budget, size - self._offset), update)
                if not got:
                    break  # shrank between fstat and read: the next poll sees it
                budget -= got
            else:
                reason = self._replacement(notes)
                if reason is None or not self._begin_reset(update, notes, reason):
                    break
                self.close()
        cut = self._assembler.cut_lines - cut_before
        if cut:
            limit = _size_text(self._assembler.max_line_bytes)
            notes.append(f"cut {cut} line{'s' * (cut > 1)} longer than {limit}")
        update.partial = self._assembler.partial()
        update.note = "; ".join(notes) or None
        return update

    def _open(self, notes: list[str]) -> bool:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            self._started = True
            return False
        except OSError as exc:
            message = f"cannot read {self.path}: {exc.strerror or exc}"
            if message != self._error_noted:
                notes.append(message)
                self._error_noted = message
            return False
        stat = os.fstat(handle.fileno())
        self._handle, self._identity = handle, (stat.st_dev, stat.st_ino)
        self._gone_noted, self._error_noted, self._mark = False, None, b""
        self._offset = 0 if self._started else self._first_offset(stat.st_size, notes)
        self._started = True
        if self._offset:
            self._mark = self._read_at(max(0, self._offset - MARK_BYTES), self._offset)
        return True

    def _first_offset(self, size: int, notes: list[str]) -> int:
        if self._start_offset is not None:
            return max(0, self._start_offset)
        if self.start == "beginning":
            return 0
        if self.start == "end":
            return size
        start, scanned = _scan_back(self._handle, size, self.initial_lines, TAIL_WINDOW)
        self.bytes_read += scanned
        if start > 0 and scanned >= TAIL_WINDOW and start == size - TAIL_WINDOW:
            notes.append(f"the last line is longer than {_size_text(TAIL_WINDOW)}; "
                         "showing its end")
        return start

    def _read_at(self, begin: int, end: int) -> bytes:
        self._handle.seek(begin)
        data = self._handle.read(end - begin)
        self.bytes_read += len(data)
        return data

    def _read(self, count: int, update: TailUpdate) -> int:
        data = self._read_at(self._offset, self._offset + count)
        self._offset += len(data)
        self._mark = (self._mark + data)[-MARK_BYTES:]
        update.lines.extend(self._assembler.feed(data))
        return len(data)

    def _rewritten(self) -> bool:
        """The bytes just before our offset changed: truncated, then written past us again."""
        if not self._mark:
            return False
        return self._read_at(self._offset - len(self._mark), self._offset) != self._mark

    def _replacement(self, notes: list[str]) -> str | None:
        """Why the path now names another file than the one held open, or None if it does not."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._gone_noted:  # keep reading the old file: its writer may still append
                notes.append(NOTE_GONE)
                self._gone_noted = True
            return None
        except OSError:
            return None
        if (stat.st_dev, stat.st_ino) == self._identity:
            return None
        deleted = os.fstat(self._handle.fileno()).st_nlink == 0
        return NOTE_RECREATED if deleted else NOTE_ROTATED

    def _begin_reset(self, update: TailUpdate, notes: list[str], reason: str) -> bool:
        """Mark `update` as the start of a new file, or return False if it already carries
        lines of the old one (the reset then waits for the next poll)."""
        tail = self._assembler.flush()  # the old file's unfinished line will not continue
        if tail is not None:
            update.lines.append(tail)
        if update.lines or update.reset:
            return False
        update.reset = True
        notes.append(reason)
        return True

    def _rewind(self) -> None:
        self._offset, self._mark = 0, b""
        self._assembler.clear()

    async def _poll_async(self) -> TailUpdate:
        import asyncio

        if self.pending_bytes > THREAD_POLL_BYTES:
            return await asyncio.to_thread(self.poll)
        return self.poll()

    async def updates(self, *, poll_interval: float = 0.5, stop: asyncio.Event | None = None,
                      use_watchfiles: bool = True) -> AsyncIterator[TailUpdate]:
        """Yield updates with news as they happen, until `stop` is set.

        Sleeps on watchfiles (the file's directory, filtered for the file) and re-polls at
        least every `poll_interval` anyway; polls every FALLBACK_POLL_INTERVAL (or
        poll_interval if shorter) when watchfiles is missing or fails. The file may not exist
        yet."""
        import asyncio

        if stop is None:
            stop = asyncio.Event()
        self._waker = waker = _Waker(self.path, poll_interval, use_watchfiles, stop)
        shown_partial: str | None = None
        try:
            while not stop.is_set():
                update = await self._poll_async()
                if update.lines or update.reset or update.note or update.partial != shown_partial:
                    shown_partial = update.partial
                    yield update
                    continue  # more may be waiting: poll again before sleeping
                await waker.wait()
        finally:
            await waker.close()


class _Waker:
    """Sleeps until the followed file changes, `stop` is set, or a timeout passes."""

    def __init__(self, path: Path, interval: float, use_watchfiles: bool,
                 stop: asyncio.Event) -> None:
        import asyncio

        self.path = path
        self.interval = interval
        self.mode = "watchfiles" if use_watchfiles else "polling"
        self.failure: BaseException | None = None
        self._stop = stop
        self._changed = asyncio.Event()
        self._halt = asyncio.Event()  # tells the watchfiles thread to return
        self._watch_task: asyncio.Task | None = None
        self._stop_task = asyncio.ensure_future(self._relay_stop())
        self._watch_since = 0.0

    async def _relay_stop(self) -> None:
        await self._stop.wait()
        self._changed.set()

    async def wait(self) -> None:
        import asyncio

        self._ensure_watching()
        watching = self.mode == "watchfiles" and self._watch_task is not None
        warm = time.monotonic() - self._watch_since >= WATCH_WARMUP
        timeout = self.interval if watching and warm else min(self.interval,
                                                              FALLBACK_POLL_INTERVAL)
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._changed.clear()

    def _ensure_watching(self) -> None:
        if self.mode != "watchfiles" or self._watch_task is not None:
            return
        if not self.path.parent.is_dir():
            return  # nothing to watch yet: poll until the directory exists
        self._watch_since = time.monotonic()
        self._watch_task = self._stop_task.get_loop().create_task(self._watch())

    async def _watch(self) -> None:
        import asyncio

        try:
            from watchfiles import awatch
        except ImportError as exc:
            self._fail(exc)
            return
        name = self.path.name
        try:
            async for _changes in awatch(
                self.path.parent, watch_filter=lambda _change, path: os.path.basename(path) == name,
                debounce=200, step=20, stop_event=self._halt, recursive=False,
            ):
                self._changed.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # inotify limits, unsupported filesystems, watcher bugs
            if not self._halt.is_set():
                self._fail(exc)
            return
        if not self._halt.is_set():
            self._fail(RuntimeError("watchfiles stopped watching"))

    def _fail(self, exc: BaseException) -> None:
        self.mode, self.failure = "polling", exc
        self._changed.set()  # poll now rather than after a full interval

    async def close(self) -> None:
        import asyncio

        self._halt.set()
        self._stop_task.cancel()
        tasks = [task for task in (self._watch_task, self._stop_task) if task is not None]
        if self._watch_task is not None:
            # The watcher thread notices _halt within a step; do not hang if it does not.
            done, pending = await asyncio.wait([self._watch_task], timeout=2.0)
            for task in pending:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def follow(path: Path, *, offset: int | None = None, poll: float = 0.25,
           until: Callable[[], bool] = lambda: False,
           on_note: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield complete lines appended to `path` from `offset` (default: the end) on.

    Stops when `until()` is true and nothing more is left to read, yielding an unfinished last
    line too. Truncation and rotation are followed; `on_note` hears about them."""
    follower = LogFollower(path, start="end", offset=offset)
    with follower:
        while True:
            yield from _drain(follower, on_note)
            if until():
                # Lines written just before the writer ended may have landed after that drain.
                yield from _drain(follower, on_note)
                tail = follower.flush()
                if tail is not None:
                    yield tail
                return
            time.sleep(poll)


def _drain(follower: LogFollower, on_note: Callable[[str], None] | None) -> Iterator[str]:
    """Every line available now."""
    while True:
        read_before = follower.bytes_read
        update = follower.poll()
        if update.note and on_note is not None:
            on_note(update.note)
        yield from update.lines
        progressed = follower.bytes_read != read_before  # an unreadable file must not spin
        if not (update.lines or update.reset or (progressed and follower.pending_bytes)):
            return
