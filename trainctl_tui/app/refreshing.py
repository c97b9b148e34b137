"""Keeping sessions up to date from their runners' status.json, and the entry point of the
detached recovery (`trainctl _recover`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..backends.base import ProviderError
from ..backends.registry import get_provider
from ..core import aio, paths
from ..core.formatting import format_duration
from ..core.models import RUNNER_STATE_TO_STATUS, Attempt, Session, Status
from ..store import StoreWriteError

# A session whose runner never wrote status.json after this long is lost.
PENDING_TIMEOUT = 60.0
# What a refresh reads. Interrupted ones too: an auto-resume of theirs may have died (cheap).
REFRESHED = [s for s in Status if s.active or s is Status.INTERRUPTED]


class Refreshing:
    """Service's refresh: each active session brought up to date from its runner's status.json;
    session folders the store lost restored; the detached recovery's entry point."""

    async def refresh_session(self, session: Session) -> Session:
        """Bring an active session up to date from its runner's status.json."""
        from . import recovery

        if recovery.running(session.session_dir) is not None:
            return session  # an auto-resume (its own process) is moving it: leave it be
        if session.status is Status.INTERRUPTED:
            return self._notice_dead_recovery(session)
        if not session.status.active:
            return session
        provider = get_provider(session.provider)
        changes: dict = {}
        attempts = None
        waiting = False  # the provider says the runner has yet to start (a queued job)
        try:
            status = await provider.read_status(session)
            if status is not None and tells_of_previous_attempt(session, status):
                # A resume is starting its runner; until that writes, the file is the last
                # attempt's end. Applying it would end the session before it starts again.
                if time.time() - (session.heartbeat or session.created) < PENDING_TIMEOUT:
                    return session
                status = None
            if status is not None:
                if provider.remote:
                    from .costs import mirror_figures

                    mirror_figures(session, status)  # progress and cost, for every view
                changes, attempts = changes_from_status(session, status)
                new_status = changes.get("status", session.status)
                if new_status.active and not await provider.runner_alive(session, status):
                    # The runner may have written its final status and exited since we read
                    # it: only a runner that died without one is lost.
                    final = await provider.read_status(session)
                    if final and not RUNNER_STATE_TO_STATUS.get(final.get("state"),
                                                                 Status.RUNNING).active:
                        # its machine's stop took the runner along: nothing more to tell
                        status = {**final, "budget_stop": None} \
                            if isinstance(final.get("budget_stop"), dict) and \
                            final["budget_stop"].get("pending") else final
                        changes, attempts = changes_from_status(session, status)
                    else:
                        changes.update(status=Status.LOST,
                                       detail=await self._lost_detail(session, status),
                                       ended=status.get("heartbeat") or time.time())
                elif new_status.active:
                    why = await aio.call_optional(provider, "unresponsive", session, status)
                    changes = self._unresponsive_changes(session, changes, why)
            else:
                problem = await aio.call_optional(provider, "status_problem", session)
                if problem:
                    changes = await self._unreadable_status_changes(session, provider, problem)
                else:  # a queue's word on a runner not started yet (queued, or ended unrun)
                    queued = await aio.call_optional(provider, "unstarted", session)
                    if queued is not None:
                        waiting = True
                        changes = {key: value for key, value in queued.items()
                                   if getattr(session, key, None) != value}
        except ProviderError as exc:
            # The host did not answer: the run may well go on there. Say so; check again later.
            status = None
            changes = {"status": Status.UNREACHABLE, "detail": str(exc)}
        if status is not None and max(session.nodes, changes.get("nodes", 1)) > 1:
            from .nodes import with_node_trouble

            changes = with_node_trouble(session, changes)  # a node failed or went silent
            placed = getattr(provider, "placed_now", None)
            name = placed(session) if placed is not None else None
            if name:  # a lost node's new machine (an instance) is in the provider string now
                from ..core.placement import Placement

                changes.update(provider=name, host=Placement.parse(name).target)
        if status is None and not changes and not waiting and \
                time.time() - (session.heartbeat or session.created) > PENDING_TIMEOUT:
            changes = {"status": Status.LOST,
                       "detail": f"runner never started (see {session.session_dir}/runner.log)"}
        if changes.get("status") in (Status.UNREACHABLE, Status.LOST, Status.INTERRUPTED):
            from .costs import stopped_by_guard

            why = stopped_by_guard(session, time.time())
            if why is not None:  # its runner stopped the run, then its machine, at a limit
                changes = {"status": Status.STOPPED, "detail": why,
                           "ended": session.heartbeat or time.time()}
        if attempts is not None and getattr(provider, "replaces_machines", False):
            from .replace import with_reasons

            # The interruptions' reasons go in the same write as the attempts.
            attempts = with_reasons(session, attempts) or attempts
        if changes or attempts is not None:
            # Only over what we read: meanwhile an auto-resume (another process) may have
            # moved the session on, and a slow read (an unreachable host) must not undo that.
            if not self._save(session, attempts=attempts, **changes,
                              expect={"status": session.status, "provider": session.provider}):
                return self.store.get(session.id) or session
            for key, value in changes.items():
                setattr(session, key, value)
            if attempts is not None:
                session.attempts = attempts
        if getattr(provider, "replaces_machines", False) or \
                ("status" in changes and hasattr(provider, "forget_secrets")):
            from .replace import after_refresh  # interruptions, auto-resume, secrets

            session = await after_refresh(self, session)
        return session

    def _notice_dead_recovery(self, session: Session) -> Session:
        """A resume (auto or trainctl resume) that was killed before it finished
        (recovery.py) says so, once."""
        from . import recovery

        marker = recovery.died(session.session_dir)
        if marker is not None:
            pid = marker.get("pid")
            if marker.get("by") == recovery.BY_RESUME:
                what = f"trainctl resume stopped before it finished (pid {pid} is gone)"
            else:
                what = (f"auto-resume stopped before it finished (recover pid {pid} is gone, "
                        f"see {marker.get('log')})")
            detail = (f"{marker.get('reason') or 'interrupted'}; {what}: "
                      f"trainctl resume {session.id}")
            self._save(session, detail=detail)
            session.detail = detail
        return session

    async def recover(self, session_id: str, lock_fd: int) -> Session | None:
        """`trainctl _recover`: the detached half of an auto-resume that a refresh started
        (recovery.py), with the lock it handed over (`lock_fd`). Frees the lock when done."""
        from . import recovery

        session = self.store.get(session_id)
        if session is None:
            return None
        lock = recovery.adopt(session.session_dir, lock_fd)
        marker = lock.marker() or {}
        reason = marker.get("reason") or "interrupted"
        recovery.log.info("session %s: %s; resuming (recover pid %s)", session.id, reason,
                          os.getpid())
        try:
            from .replace import resume_detached

            await resume_detached(self, session, reason)
        except Exception as exc:  # a bug: the session must not say "resuming" forever
            self.store.update(session_id, detail=f"{reason}; auto-resume failed: {exc!r} "
                                                 f"(see {marker.get('log')})")
            raise
        finally:
            lock.release()
        final = self.store.get(session_id)
        if final is not None:
            recovery.log.info("session %s is %s: %s", final.id, final.status, final.detail)
        return final

    @staticmethod
    def _unresponsive_changes(session: Session, changes: dict, why: str | None) -> dict:
        """A live runner without a heartbeat is shown as unresponsive, not running."""
        if why is None:
            return changes
        changes = {**changes, "status": Status.UNRESPONSIVE, "detail": why}
        return {k: v for k, v in changes.items() if getattr(session, k) != v}

    async def _unreadable_status_changes(self, session: Session, provider,
                                         problem: str) -> dict:
        """status.json exists but cannot be used: say so; lost once nothing of it is alive."""
        runners, trainings = await provider.alive_processes(session)
        what = f"status.json is unreadable: {problem}"
        if not runners and not trainings:
            return {"status": Status.LOST, "detail": f"{what}; no process of it is alive",
                    "ended": time.time()}
        alive = ", ".join([f"runner pid {p}" for p in runners] +
                          [f"training pid {p}" for p in trainings])
        return {"status": Status.UNRESPONSIVE, "detail": f"{what}; alive: {alive}"}

    async def _lost_detail(self, session: Session, status: dict) -> str:
        provider = get_provider(session.provider)
        why = await aio.call_optional(provider, "lost_detail", session, status)
        if why:
            return why
        beat = status.get("heartbeat")
        ago = f"; last heartbeat {format_duration(time.time() - beat)} ago" if beat else ""
        detail = f"runner pid {status.get('runner_pid')} is gone{ago}"
        provider = get_provider(session.provider)
        if await provider.training_alive(session, status):
            detail += (f"; training pid {status['child_pid']} still running "
                       f"(trainctl stop {session.id} ends it)")
        return detail

    async def refresh(self) -> None:
        active = self.store.list(statuses=REFRESHED)
        await aio.gather(*(self.refresh_session(s) for s in active))

    def restore_session_folders(self) -> list[str]:
        """The session folders are the record: those the store does not know (it was lost,
        truncated or replaced) are added back, running ones included. Returns their ids."""
        root = paths.sessions_dir()
        try:
            # Nothing new to look at when neither the folder nor the store changed since.
            seen = (root.stat().st_mtime_ns, self.store.count())
            if seen == self._folders_seen:
                return []
            names = {name for name in os.listdir(root) if not name.startswith(".")}
        except OSError:
            return []
        restored = []
        for name in sorted(names - self.store.ids()):
            session = session_from_folder(root / name)
            if session is None:
                continue
            try:
                if self.store.restore(session):
                    restored.append(session.id)
            except StoreWriteError as exc:
                self.unsaved = str(exc)
                return restored
        self._folders_seen = (seen[0], self.store.count())
        return restored


def session_from_folder(folder: Path) -> Session | None:
    """A session rebuilt from its folder (spec.json, and status.json if readable), or None if
    the folder holds no usable spec.json of its own."""
    from ..runner.status import read_status

    try:
        spec = json.loads((folder / "spec.json").read_text())
        created = (folder / "spec.json").stat().st_mtime
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(spec, dict) or spec.get("id") != folder.name or not isinstance(
            spec.get("command"), list) or not isinstance(spec.get("env") or {}, dict):
        return None
    # Older folders do not say where they ran: only a local runner leaves runner.log here.
    provider = spec.get("provider") or ("local" if (folder / "runner.log").exists() else None)
    if not isinstance(provider, str):
        return None
    try:
        session = Session(
            id=folder.name, name=str(spec.get("name") or folder.name),
            provider=provider, host=spec.get("host"),
            command=[str(word) for word in spec["command"]], cwd=str(spec.get("cwd") or ""),
            session_dir=str(folder), env={str(k): str(v) for k, v in (spec.get("env") or
                                                                       {}).items()},
            checkpoint_dir=spec.get("checkpoint_dir"), resume_template=spec.get(
                "resume_template"), max_restarts=int(spec.get("max_restarts") or 0),
            grace_seconds=float(spec.get("grace_seconds") or 30.0),
            keep_last_n=spec.get("keep_last_n"), created=float(spec.get("created") or created),
            status=Status.PENDING, heartbeat=created,
        )
    except (TypeError, ValueError):
        return None
    status = read_status(str(folder))
    if status is not None:
        changes, session.attempts = changes_from_status(session, status)
        for name, value in changes.items():
            setattr(session, name, value)
    return session


def tells_of_previous_attempt(session: Session, status: dict) -> bool:
    """A pending session (a resume starting) whose status.json still tells how the attempt
    before it ended: not news about the new one."""
    final = not RUNNER_STATE_TO_STATUS.get(status.get("state"), Status.RUNNING).active
    return (session.status is Status.PENDING and final
            and (status.get("attempt") or 0) <= (session.attempt or 0))


def changes_from_status(session: Session, status: dict) -> tuple[dict, list[Attempt]]:
    """Store fields and attempts that a runner's status.json implies for `session`."""
    state = status.get("state")
    new_status = RUNNER_STATE_TO_STATUS.get(state, session.status)
    machine_stop = status.get("budget_stop")
    if not new_status.active and isinstance(machine_stop, dict) and machine_stop.get("pending"):
        # Stopped at a limit, its machine's stop under way: how that went is still news
        # (a failed stop is said in the reason), so the session is watched until it is told.
        new_status = Status.STOPPING
    attempts = [
        Attempt(
            n=a.get("n", i + 1), started=a.get("started"), ended=a.get("ended"),
            exit_code=a.get("exit_code"), signal=a.get("signal"),
            resumed_from=a.get("resumed_from"), reason=a.get("reason"),
        )
        for i, a in enumerate(status.get("attempts") or [])
    ]
    detail = status.get("reason")
    if state == "backoff" and status.get("next_restart_at"):
        wait = max(0.0, status["next_restart_at"] - time.time())
        detail = f"restarting in {wait:.0f}s"
    changes = {
        "status": new_status,
        "attempt": status.get("attempt") or len(attempts),
        "exit_code": status.get("exit_code"),
        "signal": status.get("signal"),
        "detail": detail,
        "runner_pid": status.get("runner_pid"),
        "heartbeat": status.get("heartbeat"),
        "ended": status.get("ended") if not new_status.active else None,
    }
    node = status.get("node")
    if isinstance(node, dict) and isinstance(node.get("ips"), list):
        changes["nodes"] = len(node["ips"]) or 1  # what the run really got (MIN:MAX)
    first_start = attempts[0].started if attempts and attempts[0].started else status.get("started")
    if first_start:
        changes["started"] = first_start
    return {k: v for k, v in changes.items() if getattr(session, k) != v}, attempts
