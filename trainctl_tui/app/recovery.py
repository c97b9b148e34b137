"""Auto-resume after a spot interruption runs in a process of its own, detached from the
refresh that noticed the interruption: creating a machine and waiting for it takes minutes,
and `trainctl --once`, `trainctl sessions` and the TUI must not wait for that. Used by
replace.py for every backend that replaces machines; the process is `trainctl _recover`.

One lock per session folder says who resumes the session: an flock on recover.lock. The
refresh that decides to resume takes it and hands it to the process it starts (the same open
file, inherited), which holds it until it ends. The kernel frees an flock when its process
dies, kill -9 included, so a dead recovery never blocks the next attempt. While a recovery
runs the file names it (pid, log, the interruption it handles): a refresh that finds the file
naming a recovery but the lock free knows that recovery died before it finished. While the
named process is alive (pid and start time), refreshes leave the session to it: between
"pending on the new machine" and the runner starting there, a refresh would misread it.

Stdlib only, no textual or rich.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

LOCK_NAME = "recover.lock"
LOG_NAME = "recover.log"
BY_RESUME = "trainctl resume"  # a marker's "by" when `trainctl resume` holds the lock


def __getattr__(name: str):
    """`recovery.log`, the recover process's logger, made on first use: refreshes import this
    module on every `trainctl sessions`, and logging costs more than the rest of it."""
    if name == "log":
        import logging

        return logging.getLogger("trainctl.recovery")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RecoveryLock:
    """A held recovery lock: an open file with an flock on it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    def marker(self) -> dict | None:
        """What the file says about the recovery that holds (or last held) the lock."""
        return _parse(os.pread(self.fd, 1 << 16, 0))

    def mark(self, marker: dict | None) -> None:
        os.ftruncate(self.fd, 0)
        if marker:
            os.pwrite(self.fd, json.dumps(marker).encode(), 0)

    def release(self) -> None:
        """Done: forget the marker and free the lock. A no-op once handed over."""
        if self.fd < 0:
            return
        self.mark(None)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.close()

    def close(self) -> None:
        """Close this process's copy only; a process that inherited the file keeps the lock."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def take_lock(folder: str | Path, wait: float = 0.0) -> RecoveryLock | None:
    """The session's recovery lock, or None while another process holds it (a recovery
    running, a refresh deciding whether to start one, a `trainctl resume`)."""
    path = Path(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return RecoveryLock(path, fd)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def read_marker(folder: str | Path) -> dict | None:
    """What recover.lock says, without touching the lock."""
    try:
        return _parse((Path(folder) / LOCK_NAME).read_bytes())
    except OSError:
        return None


def running(folder: str | Path) -> dict | None:
    """The marker of a recovery process (not this one) that is alive now, by its pid and
    start time, or None. Never touches the lock: a refresh may ask at any time."""
    marker = read_marker(folder)
    if not marker or marker.get("pid") == os.getpid():
        return None
    from ..runner.processes import pid_alive

    return marker if pid_alive(marker.get("pid"), marker.get("pid_start")) else None


def died(folder: str | Path) -> dict | None:
    """The marker of a recovery that ended without finishing (killed), now forgotten, or
    None (no recovery started, one still running, or it finished)."""
    if read_marker(folder) is None:
        return None  # the usual case: no file, or an empty one
    lock = take_lock(folder)
    if lock is None:
        return None  # still running
    try:
        return lock.marker()
    finally:
        lock.release()


def start(service, session, lock: RecoveryLock, reason: str, doing: str, **changes) -> str:
    """Hand `lock` to a detached `trainctl _recover SESSION` and say so in the session:
    detail "REASON; DOING (recover pid N, log PATH)" plus `changes`. The process waits until
    the session says so before it starts its work, so its own final detail always comes
    last. Its output is appended to recover.log in the session folder. Returns the detail."""
    import subprocess  # here only: refreshes import this module on every `trainctl sessions`
    import threading

    folder = Path(session.session_dir)
    log_path = folder / LOG_NAME
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # `-m trainctl_tui`: works without the console script on PATH. A new session: the
        # user's terminal closing (SIGHUP) or Ctrl-C in it never reaches the recovery.
        process = subprocess.Popen(
            [sys.executable, "-m", "trainctl_tui", "_recover", session.id,
             "--lock-fd", str(lock.fd)],
            stdin=subprocess.PIPE, stdout=out, stderr=out, pass_fds=(lock.fd,),
            start_new_session=True)
    finally:
        os.close(out)
    try:
        lock.mark(marker_of(process.pid, reason, log_path))
        detail = f"{reason}; {doing} {naming(process.pid, log_path)}"
        service.store.update(session.id, detail=detail, **changes)
        session.detail = detail
        for key, value in changes.items():
            setattr(session, key, value)
    finally:
        process.stdin.close()  # go
        lock.close()  # the recovery holds the lock alone from now on
    # Reap it when it ends: a long-lived TUI must not collect zombies.
    threading.Thread(target=process.wait, name="trainctl-recover-reaper", daemon=True).start()
    return detail


def marker_of(pid: int, reason: str, log_path: str | Path | None = None,
              by: str = "auto-resume") -> dict:
    """What recover.lock says while process `pid` resumes the session."""
    from ..runner.processes import process_start_token

    return {"pid": pid, "pid_start": process_start_token(pid), "by": by,
            "log": str(log_path) if log_path else None, "reason": reason,
            "started": time.time()}


def naming(pid: int, log_path: str | Path) -> str:
    """How a session's detail names the recovery that works on it."""
    return f"(recover pid {pid}, log {log_path})"


def naming_this_process(folder: str | Path) -> str:
    """In the recovery process: naming() of itself, for the details it writes on its way."""
    return naming(os.getpid(), Path(folder) / LOG_NAME)


def wait_for_go() -> None:
    """In the recovery process: until the refresh that started it said so in the session
    (it closes the pipe; so does its death)."""
    sys.stdin.buffer.read()


def adopt(folder: str | Path, fd: int) -> RecoveryLock:
    """In the recovery process: the lock the refresh handed over."""
    os.set_inheritable(fd, False)  # nothing this process starts may keep the lock alive
    return RecoveryLock(Path(folder) / LOCK_NAME, fd)


def log_to_stderr() -> None:
    """In the recovery process: what it does, with times, into recover.log."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("trainctl")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the runpod SDK puts a handler on the root logger


def _parse(data: bytes) -> dict | None:
    try:
        value = json.loads(data) if data.strip() else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
