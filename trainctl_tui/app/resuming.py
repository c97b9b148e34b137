"""Resuming a session from a checkpoint (on its machine, or on a replacement for one a cloud
took), and removing one."""

from __future__ import annotations

import json
import os
import posixpath
import time
from pathlib import Path

from ..backends.registry import get_provider
from ..core import aio
from ..core.errors import TrainctlError
from ..core.models import Session, Status
from ..core.spec import NEWEST_CHECKPOINT, read_spec, write_spec
from ..store import StoreWriteError


class Resuming:
    """Service's resume (on the same machine, or on a replacement for one a cloud took) and
    remove."""

    async def resume(self, ref: str, *, from_checkpoint: str | None = None,
                     scratch: bool = False, trust: bool = False, note=None,
                     budget: float | None = None, max_hours: float | None = None,
                     no_budget: bool = False) -> Session:
        """Start a new attempt of an ended session, from a checkpoint (the newest sound one by
        default, none with `scratch`). `trust` accepts the unknown pickle globals of the
        checkpoint named by `from_checkpoint` for this session from now on; `note(text)`
        hears what was trusted."""
        session = await self.get(ref)
        if trust and not from_checkpoint:
            raise TrainctlError("--trust needs --from PATH: trust is given to one checkpoint "
                                "you name, never to whichever is newest")
        if session.status.active:
            raise TrainctlError(
                f"session {session.id} is still {session.status}; stop it first "
                f"(trainctl stop {session.id})"
            )
        limits = await self.resume_limits(session, budget, max_hours, no_budget)
        # Interrupted where the machine is gone: on a replacement. Where the place stays (a
        # Slurm job out of requeues), in place like a stopped session.
        if session.status is Status.INTERRUPTED and getattr(
                get_provider(session.provider), "replaces_machines", False):
            if trust:
                raise TrainctlError(f"session {session.id} was interrupted: its machine is "
                                    "gone; --trust works where the checkpoints are (resume "
                                    "it first, or pull the checkpoint and inspect it)")
            if limits:
                write_spec(session, {**read_spec(session), **limits})
            return await self._resume_interrupted(session, from_checkpoint, scratch)
        await self._refuse_if_training_alive(session)
        skipped, trusted = [], []
        if scratch:
            checkpoint = None
        elif get_provider(session.provider).remote and not from_checkpoint:
            # The checkpoints are on the host: the runner there picks the newest at start.
            checkpoint = NEWEST_CHECKPOINT
        elif get_provider(session.provider).remote:
            checkpoint, trusted = await self._remote_named_checkpoint(session, from_checkpoint,
                                                                      trust)
        else:
            checkpoint, skipped, trusted = resolve_resume_checkpoint(session, from_checkpoint,
                                                                     trust=trust)
        spec = read_spec(session)
        spec.update(limits)
        spec["resume_from"] = checkpoint
        spec["resume_skipped"] = skipped
        if trusted:
            spec["trusted_globals"] = sorted(set(spec.get("trusted_globals") or ()) | set(trusted))
            if note:
                note(f"trusting {checkpoint}: its unknown global{'s' if len(trusted) > 1 else ''} "
                     f"{', '.join(trusted)} may run code when it is loaded; session {session.id} "
                     "accepts them in every checkpoint from now on (restarts too)")
        write_spec(session, spec)
        # The resume is this session's latest sign of life: the wait for its new runner
        # counts from now (see refresh_session), not from when the session was created.
        now = time.time()
        self.store.update(session.id, status=Status.PENDING, ended=None, detail=None,
                          heartbeat=now)
        session.status, session.heartbeat = Status.PENDING, now
        before = session.attempt or 0
        await self.start_runner(session)
        # Once its runner recorded the new attempt (it checks the checkpoint first), so what
        # is reported is what it resumed from.
        return await self._wait_for(
            session.id, lambda s: (s.attempt or 0) > before or not s.status.active, 10.0)

    async def resume_limits(self, session: Session, budget: float | None,
                            max_hours: float | None, no_budget: bool) -> dict:
        """The spec keys of new limits for the run's next attempts, checked (one the guard
        stopped needs them); written with the rest of the resume's spec."""
        from .costs import carried_spending, refuse_resume_at_limit

        refuse_resume_at_limit(session, budget, max_hours, no_budget)
        if budget is None and max_hours is None and not no_budget:
            return {}
        spent, hours = carried_spending(session)
        if budget is not None and spent is not None and budget <= spent:
            raise TrainctlError(f"--budget {budget:g} is not more than the ${spent:,.2f} "
                                f"session {session.id} has cost already")
        if max_hours is not None and max_hours <= hours:
            raise TrainctlError(f"--max-hours {max_hours:g} is not more than the "
                                f"{hours:.2f}h session {session.id} has run already")
        limits = {"budget": None, "max_hours": None} if no_budget else {}
        if budget is not None:
            from .launching import machine_prices

            spec = read_spec(session)
            price = spec.get("price_per_hour")
            if price is None:  # not known at launch: maybe declared since
                price, _ = await machine_prices(get_provider(session.provider), session,
                                                spec.get("backend_options") or {})
            if price is None:
                raise TrainctlError(f"--budget needs what session {session.id}'s machine costs "
                                    "per hour, which is not known; use --max-hours")
            limits["budget"] = budget
        if max_hours is not None:
            limits["max_hours"] = max_hours
        return limits

    async def _remote_named_checkpoint(self, session: Session, wanted: str, trust: bool
                                       ) -> tuple[str, list[str]]:
        """A checkpoint named for a remote resume, inspected on its host (one line if it is
        not sound), and the globals trusted with it."""
        path = wanted if posixpath.isabs(wanted) or not session.cwd else posixpath.join(
            session.cwd, wanted)
        info = await get_provider(session.provider).inspect_checkpoint(path)
        return path, judge_named_checkpoint(session, path, info, trust)

    async def _resume_interrupted(self, session: Session, from_checkpoint: str | None,
                                  scratch: bool) -> Session:
        """The cloud took the machine: resume on a new one like it (in the foreground: the
        user asked and watches), never next to an auto-resume of the same session."""
        from . import recovery

        lock = recovery.take_lock(session.session_dir, wait=2.0)
        if lock is None:
            marker = recovery.read_marker(session.session_dir) or {}
            if not marker.get("pid"):
                who = "by another trainctl"  # a refresh deciding whether to start one
            elif marker.get("by") == recovery.BY_RESUME:
                who = f"trainctl resume pid {marker['pid']}"
            else:
                who = f"recover pid {marker['pid']}, log {marker.get('log')}"
            raise TrainctlError(f"session {session.id} is being resumed already ({who}); "
                                "trainctl sessions shows when it is done")
        # This process resumes it now: refreshes elsewhere (a TUI) leave the session alone
        # until the runner on the new machine has started.
        lock.mark(recovery.marker_of(os.getpid(), session.detail or "interrupted",
                                     by=recovery.BY_RESUME))
        try:
            await self._resume_on_new_machine(session, from_checkpoint, scratch)
        finally:
            lock.release()
        return await self.get(session.id)

    async def _resume_on_new_machine(self, session: Session, from_checkpoint: str | None,
                                     scratch: bool) -> None:
        from .replace import resume_by_hand

        await resume_by_hand(self, session, scratch=scratch, from_checkpoint=from_checkpoint)

    async def _refuse_if_training_alive(self, session: Session) -> None:
        """A lost session's training may outlive its runner: never start a second one."""
        provider = get_provider(session.provider)
        status = await provider.read_status(session)
        if status and await provider.training_alive(session, status):
            raise TrainctlError(
                f"session {session.id}'s training pid {status['child_pid']} is still running; "
                f"stop it first (trainctl stop {session.id})"
            )

    async def remove(self, ref: str) -> Session:
        """Forget a session and delete its folder. Checkpoints outside the folder are kept."""
        session = await self.get(ref)
        if session.status.active:
            raise TrainctlError(
                f"session {session.id} is {session.status}; stop it before removing it"
            )
        from . import recovery

        marker = recovery.running(session.session_dir)
        if marker is not None:
            raise TrainctlError(f"session {session.id} is being resumed (recover pid "
                                f"{marker.get('pid', '?')}); remove it once that is done")
        await self._refuse_if_training_alive(session)
        await aio.call_optional(get_provider(session.provider), "forget_secrets", session)
        # Out of sight first: a listing meanwhile must not restore it from its folder.
        folder = Path(session.session_dir)
        doomed = folder.with_name(f".{folder.name}.removing")
        try:
            folder.rename(doomed)
        except OSError:
            doomed = folder  # already gone
        try:
            self.store.delete(session.id)
        except StoreWriteError:
            if doomed != folder:
                doomed.rename(folder)
            raise
        import shutil

        shutil.rmtree(doomed, ignore_errors=True)
        return session


def resolve_resume_checkpoint(session: Session, explicit: str | None, *, trust: bool = False
                              ) -> tuple[str | None, list[dict], list[str]]:
    """(checkpoint, passed over, trusted globals) for a resume: the one asked for if it is
    sound (or trusted), else the newest sound one in the session's checkpoint dir and the newer
    ones passed over with why (None: start from scratch)."""
    from ..checkpoints.catalog import choose_row, list_checkpoints
    from ..checkpoints.inspect import inspect_checkpoint

    if explicit:
        path = (Path(session.cwd) / Path(explicit).expanduser()).resolve()
        if not path.exists():
            raise TrainctlError(f"checkpoint {path} does not exist")
        info = inspect_checkpoint(path)
        return str(path), [], judge_named_checkpoint(session, str(path), info, trust)
    if session.checkpoint_dir and Path(session.checkpoint_dir).is_dir():
        _, rows = list_checkpoints(session.checkpoint_dir)
        trusted = _spec_trusted_globals(session)
        row, skipped = choose_row(rows, trusted)
        return (row.entry.path if row else None), skipped, []
    return None, [], []


def _spec_trusted_globals(session: Session) -> list[str]:
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return []
    trusted = spec.get("trusted_globals") if isinstance(spec, dict) else None
    return [g for g in trusted if isinstance(g, str)] if isinstance(trusted, list) else []


def judge_named_checkpoint(session: Session, path: str, info, trust: bool) -> list[str]:
    """The globals to trust for a checkpoint the user named ([] when it is sound as it is);
    one line when it cannot be resumed from."""
    from ..checkpoints.inspect import trust_problem, unsound_reason

    trusted = _spec_trusted_globals(session)
    if unsound_reason(info, trusted) is None:
        return []
    if not trust:
        hint = "" if trust_problem(info, info.unknown_globals) else (
            f"; if you trust where it came from: trainctl resume {session.id} --from {path} "
            "--trust")
        raise TrainctlError(f"checkpoint {path} is {info.status}: {info.reason}; pick another "
                            f"(trainctl checkpoints {session.id}){hint}")
    problem = trust_problem(info, info.unknown_globals)
    if problem:
        raise TrainctlError(f"cannot trust {path}: {problem}")
    return list(info.unknown_globals)
