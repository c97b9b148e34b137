"""The watcher of a run whose backend heals its nodes (a multi-node run on an SSH group): a
detached `trainctl _watch SESSION` that launch and resume start, which refreshes that session
every few seconds until it ends. Each refresh probes every node and heals a lost one
(backends/remote/healing.py), so healing needs no terminal open, only this machine up (its
ssh keys reach the hosts). If it sleeps or reboots, the next refresh (the TUI, `trainctl
sessions`) heals as well. One watcher per session: an flock on watch.lock for its life, which
also names its pid.

Stdlib only, no textual or rich."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

from ..core.models import Session

LOCK_NAME = "watch.lock"
LOG_NAME = "watch.log"
EVERY_SECONDS = 2.0


def start(session: Session) -> None:
    """A detached watcher for `session`, unless one runs already. Its output goes to
    watch.log in the session folder."""
    import threading

    folder = Path(session.session_dir)
    if watcher_pid(folder) is not None:
        return
    out = os.open(folder / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # A new session: closing the terminal (SIGHUP) or Ctrl-C in it never reaches it.
        process = subprocess.Popen([sys.executable, "-m", "trainctl_tui", "_watch", session.id],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                   start_new_session=True)
    finally:
        os.close(out)
    # Reap it when it ends: a long-lived TUI must not collect zombies.
    threading.Thread(target=process.wait, name="trainctl-watch-reaper", daemon=True).start()


def watcher_pid(folder: str | Path) -> int | None:
    """The pid of the watcher that holds the session's lock now, or None."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)  # frees a lock taken here
    return None


async def watch(service, session_id: str) -> None:
    """`trainctl _watch`: refresh the session until it is no longer active (or gone). A
    resume while this watcher was leaving found it still there and started none: having let
    go of the lock, it looks once more and watches the resumed run."""
    while True:
        session = service.store.get(session_id)
        if session is None or not session.status.active or \
                not Path(session.session_dir).is_dir() or \
                not await watch_while_active(service, session):
            return


async def watch_while_active(service, session: Session) -> bool:
    """Refresh `session` while it is active, holding the watcher's lock; False when another
    watcher has the lock."""
    fd = os.open(Path(session.session_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        while session is not None and session.status.active and \
                Path(session.session_dir).is_dir():
            await service.refresh_session(session)
            await asyncio.sleep(EVERY_SECONDS)
            session = service.store.get(session.id)
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)
    return True
