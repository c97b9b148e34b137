"""Runs sessions on this machine: the runner is started detached and talked to by signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from .. import aio
from ..models import Session
from ..runner import supervisor
from .base import ProviderError

SUPERVISOR_PATH = Path(supervisor.__file__)
DETACH_TIMEOUT = 20.0


class LocalProvider:
    name = "local"
    remote = False

    async def launch(self, session: Session) -> None:
        import asyncio  # here only: stopping and reading never need an event loop (aio.py)

        # --detach double-forks and returns once the runner wrote its first status.json,
        # so the runner is not our child: closing the CLI/TUI never touches it.
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SUPERVISOR_PATH), "--detach", session.session_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), DETACH_TIMEOUT)
        except asyncio.TimeoutError:
            process.kill()
            raise ProviderError(
                f"runner for session {session.id} did not start within {DETACH_TIMEOUT:.0f}s "
                f"(see {session.session_dir}/runner.log)"
            ) from None
        if process.returncode != 0:
            message = (err or out).decode(errors="replace").strip().splitlines()
            raise ProviderError(
                f"runner for session {session.id} failed to start: "
                f"{message[-1] if message else 'exit code ' + str(process.returncode)}"
            )

    async def read_status(self, session: Session) -> dict | None:
        return supervisor.read_status(session.session_dir)

    async def runner_alive(self, session: Session, status: dict) -> bool:
        return supervisor.pid_alive(status.get("runner_pid"), status.get("runner_start"))

    async def training_alive(self, session: Session, status: dict) -> bool:
        return supervisor.pid_alive(status.get("child_pid"), status.get("child_start"))

    async def stop(self, session: Session, status: dict, *, force: bool) -> None:
        # The runner owns the grace period: SIGTERM = graceful, SIGUSR1 = kill now.
        signum = signal.SIGUSR1 if force else signal.SIGTERM
        if await self.runner_alive(session, status):
            _signal_pid(status["runner_pid"], signum)

    async def kill_orphan(self, session: Session, status: dict, *, force: bool) -> bool:
        if not await self.training_alive(session, status):
            return False
        pgid = status["child_pid"]  # the child leads its own process group
        _signal_group(pgid, signal.SIGKILL if force else signal.SIGTERM)
        if force:
            return True
        deadline = time.monotonic() + session.grace_seconds
        while time.monotonic() < deadline:
            if not await self.training_alive(session, status):
                return True
            await aio.sleep(0.2)
        _signal_group(pgid, signal.SIGKILL)
        return True


def _signal_pid(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise ProviderError(f"not allowed to signal runner pid {pid}") from None


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise ProviderError(f"not allowed to signal process group {pgid}") from None
