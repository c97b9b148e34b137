"""Stopping a session gracefully (SIGTERM, grace, SIGKILL) or at once, and checking that
nothing of it is left."""

from __future__ import annotations

import time

from ..backends.registry import get_provider
from ..core import aio
from ..core.errors import StopFailed, TrainctlError
from ..core.models import Session, Status

FORCE_STOP_WAIT = 5.0  # for the runner to act on a force stop before trainctl kills itself


class Stopping:
    """Service's stop and kill, through the backend; a stop that leaves something alive raises
    StopFailed naming it."""

    async def stop(self, ref: str, *, force: bool = False, wait: bool = True,
                   timeout: float | None = None, note=None) -> Session:
        """Graceful stop (SIGTERM, grace, SIGKILL), or an immediate kill with force. A stop
        that leaves anything of the session alive raises StopFailed naming it. `note(line)`:
        told what the stop waits for before it begins (a node's replacement starting)."""
        session = await self.get(ref)
        provider = get_provider(session.provider)
        # a multi-node run's healing in progress ends first; a replacement may move it
        if session.status.active and await aio.call_optional(provider, "settle_before_stop",
                                                             session, note):
            session = await self.get(session.id)
            provider = get_provider(session.provider)
        status = await provider.read_status(session)
        if session.status is Status.LOST and status:
            if await provider.kill_orphan(session, status, force=force):
                detail = (f"runner pid {status.get('runner_pid')} is gone; its training "
                          f"(pid {status.get('child_pid')}) was stopped by trainctl stop")
                self._save(session, detail=detail)
                session.detail = detail
                return await self._check_nothing_left(await self.get(session.id), provider)
        if status is None and session.status.active:  # e.g. still queued: just cancelled
            cancelled = await aio.call_optional(provider, "cancel_unstarted", session)
            if cancelled:
                self._save(session, status=Status.STOPPED, detail=cancelled, ended=time.time())
                return await self.get(session.id)
        if status is None or not session.status.active:
            return await self._stop_without_status(session, provider, force=force)
        if await aio.call_optional(provider, "runner_frozen", status):
            return await self._stop_frozen(session, provider, force=force)
        await provider.stop(session, status, force=force)
        self._save(session, status=Status.STOPPING)
        if not wait:
            return await self.get(session.id)
        limit = timeout if timeout is not None else session.grace_seconds + 15
        if force and hasattr(provider, "kill_all"):
            limit = min(limit, FORCE_STOP_WAIT)  # then trainctl kills without the runner
        session = await self._wait_for(session.id, lambda s: not s.status.active, limit)
        if session.status.active and force and hasattr(provider, "kill_all"):
            return await self._kill_all(session, provider, f"force-stopped by trainctl: the "
                                        f"runner did not stop within {limit:g}s")
        if session.status.active:
            raise StopFailed(f"session {session.id} did not stop within {limit:g}s: "
                             f"{await self._what_is_alive(session, provider, status)}; "
                             f"trainctl stop --force {session.id} kills it")
        return await self._check_nothing_left(session, provider)

    async def _wait_for(self, session_id: str, done, limit: float) -> Session:
        """The session, refreshed until `done(session)` holds or `limit` seconds passed."""
        deadline = time.monotonic() + limit
        while True:
            session = await self.get(session_id)
            if done(session) or time.monotonic() >= deadline:
                return session
            await aio.sleep(0.2)

    async def _stop_frozen(self, session: Session, provider, *, force: bool) -> Session:
        """A runner stopped by a signal cannot act on a stop: --force kills everything
        without it; a graceful stop says so at once instead of waiting for nothing."""
        if force:
            return await self._kill_all(session, provider, "force-stopped by trainctl: the "
                                        "runner was frozen (stopped by a signal)")
        status = await provider.read_status(session) or {}
        raise StopFailed(f"session {session.id} cannot stop gracefully: "
                         f"{await self._what_is_alive(session, provider, status)}; "
                         f"trainctl stop --force {session.id} kills it")

    async def _stop_without_status(self, session: Session, provider, *,
                                   force: bool) -> Session:
        """No usable status.json (unreadable, or the session has ended): what is still
        alive of the session is found and stopped all the same."""
        if not hasattr(provider, "alive_processes"):
            raise TrainctlError(f"session {session.id} is not running (status: "
                                f"{session.status})")
        runners, trainings = await provider.alive_processes(session)
        if not runners and not trainings:
            raise TrainctlError(f"session {session.id} is not running (status: "
                                f"{session.status})")
        problem = await provider.status_problem(session)
        why = f"status.json was unreadable: {problem}" if problem else \
            f"status was {session.status}"
        if not force:
            if await provider.any_frozen(runners):  # as with a readable status: --force only
                return await self._stop_frozen(session, provider, force=False)
            await provider.stop_gracefully(session, runners)
            deadline = time.monotonic() + session.grace_seconds + 15
            while time.monotonic() < deadline and any(await provider.alive_processes(session)):
                await aio.sleep(0.2)
        return await self._kill_all(session, provider, f"stopped by trainctl stop ({why})")

    async def _kill_all(self, session: Session, provider, reason: str) -> Session:
        survivors = await provider.kill_all(session, reason)
        if survivors:
            raise StopFailed(f"session {session.id}: still alive after SIGKILL: "
                             f"{describe_pids(survivors)}")
        return await self.get(session.id)

    async def _check_nothing_left(self, session: Session, provider) -> Session:
        """The session ended: anything of it still alive (it left the process group and the
        runner could not kill it) is an error that names it."""
        if not hasattr(provider, "alive_processes"):  # a remote runner: its own record
            status = await provider.read_status(session) or {}
            if status.get("survivors"):
                raise StopFailed(f"session {session.id} is {session.status}, but still alive "
                                 f"on {session.host}: pids "
                                 f"{', '.join(map(str, status['survivors']))}")
            return session
        runners, trainings = await provider.alive_processes(session)
        if trainings:
            raise StopFailed(f"session {session.id} is {session.status}, but still alive: "
                             f"{describe_pids(trainings)}")
        return session

    async def _what_is_alive(self, session: Session, provider, status: dict) -> str:
        if not hasattr(provider, "alive_processes"):
            return f"it is still {session.status}"
        runners, trainings = await provider.alive_processes(session)
        parts = [f"runner {describe_pids(runners)}"] if runners else []
        if trainings:
            parts.append(f"training {describe_pids(trainings)}")
        return "still alive: " + "; ".join(parts) if parts else f"it is still {session.status}"

    async def kill(self, ref: str) -> Session:
        """SIGKILL the training now, without the grace period."""
        return await self.stop(ref, force=True, wait=False)


def describe_pids(pids: list[int]) -> str:
    from ..runner.processes import describe_pid

    return ", ".join(f"pid {describe_pid(pid)}" for pid in pids)
