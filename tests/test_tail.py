"""The log follower on real files: appends, partial lines, progress bars, bad bytes, huge lines,
truncation, rotation, a 2 GB sparse log, and the watchfiles / polling wake-ups."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from trainctl_tui.monitor import tail
from trainctl_tui.monitor.tail import LineAssembler, LogFollower, follow, last_lines

FIXTURE_LOGS = sorted((Path(__file__).parent / "fixtures" / "logs").glob("*.log"))


def append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def drain(follower: LogFollower, max_bytes: int = 8 << 20) -> list[tail.TailUpdate]:
    """Every update available now: polls until nothing is pending and nothing new came."""
    updates = []
    while True:
        update = follower.poll(max_bytes)
        updates.append(update)
        if not (update.lines or update.reset or update.note or follower.pending_bytes):
            return updates


def lines_of(updates: list[tail.TailUpdate]) -> list[str]:
    return [line for update in updates for line in update.lines]


@pytest.fixture
def log(tmp_path) -> Path:
    path = tmp_path / "train.log"
    path.write_bytes(b"")
    return path


# --- reading what was appended ---------------------------------------------------------------

def test_reads_only_what_was_appended(log):
    append(log, "one\ntwo\n")
    follower = LogFollower(log, start="beginning")
    assert follower.poll().lines == ["one", "two"]
    assert follower.poll().lines == []
    append(log, "three\n")
    update = follower.poll()
    assert update.lines == ["three"] and not update.reset and update.note is None
    assert follower.offset == log.stat().st_size and follower.pending_bytes == 0


def test_partial_line_is_completed_later(log):
    follower = LogFollower(log, start="beginning")
    append(log, "step 1 loss")
    update = follower.poll()
    assert update.lines == [] and update.partial == "step 1 loss"
    append(log, " 0.5\nstep 2")
    update = follower.poll()
    assert update.lines == ["step 1 loss 0.5"] and update.partial == "step 2"


def test_progress_bar_keeps_its_last_state(log):
    follower = LogFollower(log, start="beginning")
    append(log, "a\rb\rc\nepoch 1\n")
    assert follower.poll().lines == ["c", "epoch 1"]
    append(log, "  0%|          | 0/100\r")
    assert follower.poll().partial == "  0%|          | 0/100"
    append(log, " 50%|#####     | 50/100\r 60%|######    | 60/100")
    update = follower.poll()
    assert update.lines == [] and update.partial == " 60%|######    | 60/100"
    append(log, "\r100%|##########| 100/100\n")
    update = follower.poll()
    assert update.lines == ["100%|##########| 100/100"] and update.partial is None


def test_a_bar_read_in_tiny_pieces_ends_the_same(log):
    append(log, "x\r10%\r20%\r\r\nlast\r\n")
    follower = LogFollower(log, start="beginning")
    assert lines_of(drain(follower, max_bytes=1)) == ["20%", "last"]


def test_crlf_line_endings_are_just_newlines(log):
    follower = LogFollower(log, start="beginning")
    append(log, b"one\r\ntwo\r")
    update = follower.poll()
    assert update.lines == ["one"] and update.partial == "two"
    append(log, b"\n\r\n")
    assert follower.poll().lines == ["two", ""]


def test_invalid_utf8_is_replaced_and_the_rest_kept(log):
    append(log, b"ok \xff\xfe bad\nnext \xe2\x82\xac\n")
    assert LogFollower(log, start="beginning").poll().lines == ["ok \ufffd\ufffd bad", "next €"]


def test_a_character_split_between_reads_is_not_mangled(log):
    append(log, "héllo €\n".encode())
    follower = LogFollower(log, start="beginning")
    partials = []
    for _ in range(20):
        update = follower.poll(max_bytes=1)
        partials.append(update.partial)
        if update.lines:
            break
    assert update.lines == ["héllo €"]
    assert all("\ufffd" not in p for p in partials if p)


def test_a_1mb_line_is_capped_and_says_so(log):
    append(log, b"x" * 1_000_000 + b"\nafter\n")
    follower = LogFollower(log, start="beginning", max_line_bytes=65536)
    updates = drain(follower, max_bytes=300_000)  # the long line spans several reads
    assert lines_of(updates) == ["x" * 65536 + " … [cut 934464 bytes]", "after"]
    assert any(u.note == "cut 1 line longer than 64 KiB" for u in updates)


def test_a_long_line_is_not_cut_inside_a_character():
    assembler = LineAssembler(max_line_bytes=10)
    (line,) = assembler.feed("aaaaaaaaa€b\n".encode())  # € would end at byte 12
    assert line == "aaaaaaaaa … [cut 4 bytes]"


@pytest.mark.parametrize("log_path", FIXTURE_LOGS, ids=lambda p: p.name)
def test_real_logs_read_the_same_in_any_chunk_size(log_path):
    """Chunk boundaries never change the lines (tqdm, rich and keras logs)."""
    data = log_path.read_bytes()
    expected = []
    for raw in data.split(b"\n")[:-1]:
        states = [s for s in raw.removesuffix(b"\r").split(b"\r") if s]
        expected.append(states[-1].decode("utf-8", "replace") if states else "")
    whole = drain(LogFollower(log_path, start="beginning"))
    pieces = drain(LogFollower(log_path, start="beginning"), max_bytes=97)
    assert lines_of(whole) == lines_of(pieces) == expected
    assert whole[-1].partial == pieces[-1].partial


# --- truncation and rotation -------------------------------------------------------------------

def test_copytruncate_restarts_from_the_start_with_a_note(log):
    append(log, "old 1\nold 2\nold partial")
    follower = LogFollower(log, start="beginning")
    assert follower.poll().lines == ["old 1", "old 2"]
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, "new 1\n")
    first = follower.poll()
    assert first.lines == ["old partial"] and not first.reset  # the old file's last words
    update = follower.poll()
    assert update.reset and update.lines == ["new 1"]
    assert update.note == "log truncated; following from the start"


def test_truncated_and_rewritten_past_the_offset_is_noticed(log):
    append(log, "old\n")
    follower = LogFollower(log, start="beginning")
    assert follower.poll().lines == ["old"]
    log.write_bytes(b"new line that is longer than the old one\nsecond\n")  # same inode
    update = follower.poll()
    assert update.reset and update.lines == ["new line that is longer than the old one", "second"]
    assert "truncated" in update.note


def test_rotation_loses_no_line_of_either_file(log):
    append(log, "a1\na2\n")
    follower = LogFollower(log, start="beginning")
    seen = lines_of(drain(follower))
    append(log, "a3 written just before the rename\n")
    log.rename(log.with_name("train.log.1"))
    append(log, "b1\nb2\n")
    updates = drain(follower)
    seen += lines_of(updates)
    append(log, "b3\n")
    seen += lines_of(drain(follower))
    assert seen == ["a1", "a2", "a3 written just before the rename", "b1", "b2", "b3"]
    (reset,) = [u for u in updates if u.reset]
    assert reset.lines[0] == "b1" and "rotated" in reset.note


def test_delete_and_recreate(log):
    append(log, "first life\n")
    follower = LogFollower(log, start="beginning")
    assert follower.poll().lines == ["first life"]
    log.unlink()
    gone = follower.poll()
    assert not gone.reset and "removed" in gone.note
    assert follower.poll().note is None  # said once
    append(log, "second life\n")
    update = follower.poll()
    assert update.reset and update.lines == ["second life"]
    assert update.note == "log deleted and recreated; following the new file from the start"


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path):
    path = tmp_path / "later.log"
    follower = LogFollower(path, start="end")
    assert follower.poll() == tail.TailUpdate()
    append(path, "hello\n")
    assert follower.poll().lines == ["hello"]


# --- huge files -------------------------------------------------------------------------------

class CountingFile:
    """A file object that counts the bytes its reads return."""

    def __init__(self, handle, counter: list[int]):
        self._handle, self._counter = handle, counter

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


@pytest.fixture
def counted_reads(monkeypatch) -> list[int]:
    counter = [0]
    monkeypatch.setattr(tail, "open", lambda *a, **k: CountingFile(open(*a, **k), counter),
                        raising=False)
    return counter


@pytest.fixture
def sparse_2gb(tmp_path) -> Path:
    path = tmp_path / "huge.log"
    with open(path, "wb") as handle:
        handle.truncate(2 << 30)
        handle.seek(0, os.SEEK_END)
        handle.write(b"".join(b"step %d loss 0.%04d\n" % (i, i) for i in range(2000)))
    return path


def test_the_tail_of_a_2gb_log_reads_little(sparse_2gb, counted_reads):
    follower = LogFollower(sparse_2gb, start="tail", initial_lines=1000)
    update = follower.poll()
    assert update.lines == [f"step {i} loss 0.{i:04d}" for i in range(1000, 2000)]
    assert counted_reads[0] < 1 << 20 and follower.bytes_read == counted_reads[0]
    append(sparse_2gb, "step 2000 loss 0.2000\n")
    assert follower.poll().lines == ["step 2000 loss 0.2000"]
    assert counted_reads[0] < 1 << 20


def test_a_tail_with_few_lines_reads_at_most_the_window(sparse_2gb, counted_reads):
    update = LogFollower(sparse_2gb, start="tail", initial_lines=100_000).poll()
    assert update.lines[-1] == "step 1999 loss 0.1999"
    assert counted_reads[0] <= 2 * tail.TAIL_WINDOW + tail.MARK_BYTES


def test_a_tail_inside_one_giant_bar_line_shows_its_latest_state(log, monkeypatch):
    monkeypatch.setattr(tail, "TAIL_WINDOW", 1024)
    append(log, "header\n" + "".join(f"\r{i:5d}/99999" for i in range(5000)) + "\n")
    update = LogFollower(log, start="tail", initial_lines=10).poll()
    assert update.lines == [" 4999/99999"]
    assert update.note == "the last line is longer than 1 KiB; showing its end"


def test_last_lines_of_a_2gb_log_reads_little(sparse_2gb, counted_reads):
    assert last_lines(sparse_2gb, 3) == [f"step {i} loss 0.{i:04d}" for i in (1997, 1998, 1999)]
    assert counted_reads[0] < 1 << 20


# --- updates(): watchfiles and the polling fallback ---------------------------------------------

async def _receive(follower: LogFollower, path: Path, wanted: str, **options) -> list[str]:
    """Append `wanted` every 0.2 s until updates() delivers it; returns the lines seen."""
    stop = asyncio.Event()
    seen: list[str] = []

    async def consume() -> None:
        async for update in follower.updates(stop=stop, **options):
            seen.extend(update.lines)
            if wanted in seen:
                stop.set()

    async def write() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.2)
            path.parent.mkdir(exist_ok=True)
            append(path, wanted + "\n")

    writer = asyncio.ensure_future(write())
    try:
        await asyncio.wait_for(consume(), timeout=15)
    finally:
        stop.set()
        await writer
    return seen


def test_updates_are_woken_by_watchfiles(log, monkeypatch):
    monkeypatch.setattr(tail, "WATCH_WARMUP", 0.0)  # no fast polling: only a wake-up delivers
    append(log, "before\n")
    follower = LogFollower(log)
    seen = asyncio.run(_receive(follower, log, "appended", poll_interval=60))
    assert seen[0] == "before" and "appended" in seen
    if sys.platform == "linux":
        assert follower.wake_mode == "watchfiles"


def test_updates_poll_when_watchfiles_is_missing(log, monkeypatch):
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import fails
    follower = LogFollower(log)
    assert "appended" in asyncio.run(_receive(follower, log, "appended", poll_interval=60))
    assert follower.wake_mode == "polling"


def test_updates_poll_when_watchfiles_fails(log, monkeypatch):
    import watchfiles

    async def broken(*args, **kwargs):
        raise OSError(28, "inotify watch limit reached")
        yield  # an async generator, like the real awatch

    monkeypatch.setattr(watchfiles, "awatch", broken)
    follower = LogFollower(log)
    assert "appended" in asyncio.run(_receive(follower, log, "appended", poll_interval=60))
    assert follower.wake_mode == "polling" and isinstance(follower._waker.failure, OSError)


@pytest.mark.parametrize("where", ["missing file", "missing folder"])
def test_updates_wait_for_a_log_that_does_not_exist_yet(tmp_path, where):
    path = tmp_path / ("run" if where == "missing folder" else "") / "train.log"
    follower = LogFollower(path)
    assert "hello" in asyncio.run(_receive(follower, path, "hello", poll_interval=60))


def test_updates_report_a_live_progress_bar(log):
    async def scenario() -> list[str | None]:
        stop, partials = asyncio.Event(), []
        append(log, "10%")
        async for update in LogFollower(log).updates(stop=stop, poll_interval=0.05):
            partials.append(update.partial)
            if update.partial == "10%":
                append(log, "\r20%")
            else:
                stop.set()
        return partials

    assert asyncio.run(asyncio.wait_for(scenario(), 15)) == ["10%", "20%"]


# --- last_lines and follow, as the CLI uses them ------------------------------------------------

def test_last_lines_edges(tmp_path, log):
    assert last_lines(log, 5) == []
    assert last_lines(tmp_path / "missing.log", 5) == []
    append(log, "a\nb\nc")
    assert last_lines(log, 10) == ["a", "b", "c"]
    assert last_lines(log, 2) == ["b", "c"]
    assert last_lines(log, 0) == []
    assert last_lines(log, 1, end=4) == ["b"]
    append(log, "\n50%\r100%\n")
    assert last_lines(log, 2) == ["c", "100%"]


def test_follow_yields_new_lines_then_the_unfinished_one(log):
    append(log, "already there\n")
    done = threading.Event()

    def writer() -> None:
        for i in range(3):
            time.sleep(0.05)
            append(log, f"line {i}\n")
        append(log, "no newline")
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    lines = list(follow(log, poll=0.02, until=done.is_set))
    thread.join()
    assert lines == ["line 0", "line 1", "line 2", "no newline"]


def test_follow_from_an_offset_and_through_a_truncation(log):
    append(log, "one\ntwo\n")
    notes: list[str] = []
    stream = follow(log, offset=4, poll=0.01, until=lambda: True, on_note=notes.append)
    assert next(stream) == "two"
    log.write_bytes(b"fresh\n")
    assert list(stream) == ["fresh"]
    assert notes == ["log truncated; following from the start"]
