"""Runs sessions on this machine: the runner is started detached and talked to by signals."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from ...core import aio
from ...core.formatting import format_duration
from ...core.models import Session
from ...core.paths import state_dir
from ...runner import processes
from ...runner import status as runner_status
from ..base import ProviderError

DETACH_TIMEOUT = 20.0
KILL_WAIT_SECONDS = 3.0  # for SIGKILLed processes to disappear before calling them survivors


class LocalProvider:
    name = "local"
    label = "this machine"
    remote = False
    price_setting = "price_per_hour in [local]"

    async def price_per_hour(self, session: Session, options: dict) -> float | None:
        """What this machine costs per hour, as [local] declares (else None)."""
        from ...config.loader import load_config

        return load_config().local.price_per_hour

    async def launch(self, session: Session) -> None:
        import asyncio  # here only: stopping and reading never need an event loop (aio.py)

        # --detach double-forks and returns once the runner wrote its first status.json,
        # so the runner is not our child: closing the CLI/TUI never touches it.
        from ...runner.bundle import runner_bundle

        # The same zipapp as on remote machines (built once per version into the state dir).
        runner = runner_bundle(state_dir() / "runner")
        process = await asyncio.create_subprocess_exec(
            *self.runner_argv(runner, session),
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

    def runner_argv(self, runner: Path, session: Session) -> list[str]:
        """How the runner starts here. A backend that runs it otherwise on this machine
        (at a lower priority, in a container) changes only this."""
        return [sys.executable, str(runner), "--detach", session.session_dir]

    async def read_status(self, session: Session) -> dict | None:
        return runner_status.read_status(session.session_dir)

    async def runner_alive(self, session: Session, status: dict) -> bool:
        return processes.pid_alive(status.get("runner_pid"), status.get("runner_start"))

    async def training_alive(self, session: Session, status: dict) -> bool:
        return processes.pid_alive(status.get("child_pid"), status.get("child_start"))

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
        # and what left the group (setsid, double fork) but carries the session's mark
        processes.signal_escaped(pgid, session.id, signal.SIGKILL if force else
                                  signal.SIGTERM)
        if force:
            return True
        deadline = time.monotonic() + session.grace_seconds
        while time.monotonic() < deadline:
            if not await self.training_alive(session, status) and \
                    not processes.marked_pids(session.id):
                return True
            await aio.sleep(0.2)
        _signal_group(pgid, signal.SIGKILL)
        processes.signal_escaped(pgid, session.id, signal.SIGKILL)
        return True

    # -- control without the runner's help: its status.json is unreadable, or it is frozen

    async def status_problem(self, session: Session) -> str | None:
        """Why status.json exists but cannot be used, or None."""
        return runner_status.read_status_checked(session.session_dir)[1]

    async def alive_processes(self, session: Session) -> tuple[list[int], list[int]]:
        """(runner pids, training pids) of the session alive now, found without status.json:
        the runner by its command line, the training and all it started by their mark."""
        return processes.runner_pids(session.session_dir), processes.marked_pids(session.id)

    async def unresponsive(self, session: Session, status: dict) -> str | None:
        """Why a live runner looks stuck (no heartbeat for a while), or None."""
        beat = status.get("heartbeat")
        age = time.time() - beat if beat else 0.0
        if age < STALE_MIN_SECONDS:
            return None
        if age < STALE_BEATS * _heartbeat_seconds(session) + STALE_MIN_SECONDS:
            return None
        pid = status.get("runner_pid")
        frozen = await self.runner_frozen(status)
        how = f" (stopped by a signal; kill -CONT {pid} resumes it)" if frozen else ""
        return f"no heartbeat for {format_duration(age)} from runner pid {pid}{how}"

    async def runner_frozen(self, status: dict) -> bool:
        pid = status.get("runner_pid")
        return bool(pid) and await self.any_frozen([pid])

    async def any_frozen(self, pids: list[int]) -> bool:
        return any(processes.process_state(pid) == "T" for pid in pids)

    async def stop_gracefully(self, session: Session, runners: list[int]) -> None:
        """SIGTERM to the runner (it owns the grace period), else to the training processes
        themselves."""
        for pid in runners or processes.marked_pids(session.id):
            _signal_quietly(pid, signal.SIGTERM)

    async def kill_all(self, session: Session, reason: str) -> list[int]:
        """SIGKILL the session's runner and training processes now and record the session as
        stopped in status.json (the runner can no longer do it). Returns the pids still alive."""
        runners, trainings = await self.alive_processes(session)
        killed_training = bool(trainings)
        for pid in trainings + runners:
            _signal_quietly(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while True:
            runners, trainings = await self.alive_processes(session)
            if not runners + trainings or time.monotonic() >= deadline:
                break
            await aio.sleep(0.05)
        survivors = trainings + runners
        status = runner_status.read_status(session.session_dir)
        if status and status.get("state") in runner_status.FINAL_STATES and not survivors:
            return []  # the runner ended the session itself and said how
        status = status or {
            # Unreadable: start again from what the store knows, attempts included.
            "version": runner_status.STATUS_VERSION, "session_id": session.id,
            "runner_pid": session.runner_pid, "attempt": session.attempt,
            "started": session.started, "attempts": [a.as_dict() for a in session.attempts]}
        status.update(state="stopped", reason=reason, ended=time.time(), child_pid=None,
                      child_start=None, stop_requested=True, survivors=survivors)
        if killed_training:
            status.update(signal=signal.SIGKILL, exit_code=None)
        for attempt in status.get("attempts") or []:
            if attempt.get("ended") is None:
                attempt.update(ended=time.time(), signal=signal.SIGKILL, reason=reason)
        try:
            runner_status.atomic_write_json(os.path.join(session.session_dir, "status.json"),
                                         status)
        except OSError:
            pass  # a full disk: the processes are gone all the same; the refresh says lost
        return survivors


STALE_MIN_SECONDS = 5.0
STALE_BEATS = 5  # heartbeats missed before a live runner is called unresponsive


def _heartbeat_seconds(session: Session) -> float:
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
        return float(spec.get("heartbeat_seconds") or 2.0)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return 2.0


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


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
