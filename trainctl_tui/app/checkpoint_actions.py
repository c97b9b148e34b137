"""What a user does with checkpoints: list, inspect, validate, pull, prune, delete."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..backends.registry import checkpoint_store, get_provider
from ..core import paths
from ..core.errors import TrainctlError
from ..core.models import Session, Status


class CheckpointActions:
    """Service's checkpoint actions, for a session's checkpoint dir, a local folder, an SSH
    host's or S3."""

    async def checkpoint_dir(self, target: str) -> tuple[str, Session | None]:
        """A directory given as is, or the checkpoint dir of the session `target` names."""
        if checkpoint_store(target):  # checkpoints in a store (S3): the URI itself
            return target, None
        path = Path(target).expanduser()
        if path.is_dir():
            return str(path.resolve()), None
        try:
            session = await self.get(target)
        except TrainctlError:
            if os.sep in target or path.exists():
                raise TrainctlError(f"{target} is not a directory") from None
            raise TrainctlError(f"no session or directory '{target}' (see trainctl sessions)"
                                ) from None
        if not session.checkpoint_dir:
            raise TrainctlError(f"session {session.id} has no checkpoint dir (launch it with "
                                "--checkpoint-dir, or give a directory)")
        provider = get_provider(session.provider)
        if provider.remote:
            return provider.checkpoint_path(session), session
        return session.checkpoint_dir, session

    async def checkpoints(self, target: str, *, inspect: bool = True):
        """(directory, session or None, scan result, rows) for `target`."""
        from ..checkpoints.catalog import list_checkpoints

        store = checkpoint_store(target)
        if store:
            return await store.checkpoints_async(target, inspect=inspect)
        directory, session = await self.checkpoint_dir(target)
        if session is not None and get_provider(session.provider).remote:
            from ..checkpoints.scan import ScanResult

            rows = await get_provider(session.provider).list_checkpoints(session)
            return directory, session, ScanResult(directory, [r.entry for r in rows]), rows
        entries, rows = list_checkpoints(directory, inspect=inspect)
        return directory, session, entries, rows

    async def pull(self, ref: str, *, checkpoint: str | None = None, to: str | None = None,
                   progress=None, note=None) -> tuple[str, Path, int]:
        """Download a remote session's checkpoint (the newest sound one by default);
        an interrupted pull continues where it stopped. Returns (remote, local, bytes).
        `ref` may also be a checkpoint or prefix in a store, e.g. s3:// (see pull_s3)."""
        if checkpoint_store(ref):
            return await self.pull_s3(ref, to=to, progress=progress, note=note)
        session = await self.get(ref)
        if checkpoint_store(session.checkpoint_dir):
            uri = session.checkpoint_dir.rstrip("/") + "/" + (checkpoint or "")
            return await self.pull_s3(uri, to=to or f"{session.name}-{session.id}",
                                      progress=progress, note=note)
        provider = get_provider(session.provider)
        if not provider.remote:
            where = session.checkpoint_dir or "its working directory"
            raise TrainctlError(f"session {session.id} runs on this machine: its checkpoints "
                                f"are already here ({where})")
        if not session.checkpoint_dir:
            raise TrainctlError(f"session {session.id} has no checkpoint dir to pull from")
        folder = provider.checkpoint_path(session)
        rows = await provider.list_checkpoints(session)
        if checkpoint:
            row = next((r for r in rows if checkpoint in (r.entry.path, r.entry.name)), None)
            if row is None:
                raise TrainctlError(f"no checkpoint '{checkpoint}' in {folder} "
                                    f"on {session.host} (see trainctl checkpoints {session.id})")
            if row.entry.writing:
                raise TrainctlError(f"{row.entry.name} is still being written; try again soon")
        else:
            from ..checkpoints.catalog import newest_usable

            row = newest_usable(rows)
            if row is None:
                raise TrainctlError(f"no finished, sound checkpoint in {folder} "
                                    f"on {session.host} yet")
        local = Path(to or f"{session.name}-{session.id}").expanduser().resolve() / row.entry.name
        size = await provider.download(row.entry.path, local, kind=row.entry.kind,
                                       progress=progress)
        return row.entry.path, local, size

    async def pull_s3(self, uri: str, *, to: str | None = None, progress=None,
                      note=None) -> tuple[str, Path, int]:
        """A checkpoint in a store (S3: object or folder; the newest sound one under a prefix)
        into `to`, resumable; `note(text)` hears about restarts (the object changed there)."""
        import asyncio

        return await asyncio.to_thread(checkpoint_store(uri).pull, uri, to, progress=progress,
                                       note=note)

    def checkpoint_info(self, path: str, *, deep: bool = False):
        from ..checkpoints.inspect import inspect_checkpoint

        if not path.strip():  # Path("") is the current directory: never scan that by mistake
            raise TrainctlError("checkpoint info needs the path of a checkpoint (got an empty "
                                "one)")
        store = checkpoint_store(path)
        if store:  # read through ranged GETs (--deep reads it all)
            return store.inspect_uri(path, deep=deep)
        try:
            return inspect_checkpoint(Path(path).expanduser(), deep=deep)
        except FileNotFoundError:
            raise TrainctlError(f"no such checkpoint: {shorten(path)}") from None
        except OSError as exc:  # a name too long, a permission
            raise TrainctlError(f"cannot read checkpoint {shorten(path)}: "
                                f"{exc.strerror or exc}") from None

    async def validate_checkpoint(self, target: str, path: str):
        """A deep check of one checkpoint of `target` (a session or directory), done where
        the checkpoint is: here, or on the session's SSH host."""
        _, session = await self.checkpoint_dir(target)
        if session is not None and get_provider(session.provider).remote:
            return await get_provider(session.provider).inspect_checkpoint(path, deep=True)
        return self.checkpoint_info(path, deep=True)

    def protected_checkpoints(self) -> dict[str, str]:
        """Checkpoints a running session was resumed from: never pruned or deleted."""
        protected = {}
        for session in self.store.list(statuses=[s for s in Status if s.active],
                                       with_attempts=True):
            for attempt in session.attempts[-1:]:
                if attempt.resumed_from:
                    protected[attempt.resumed_from] = (
                        f"protected: session {session.id} resumed from it")
        return protected

    async def plan_prune(self, target: str, *, keep_last: int, keep_best: str | None = None,
                         mode: str | None = None):
        """What a prune would do, without touching anything."""
        from ..checkpoints.catalog import validity_and_metrics
        from ..checkpoints.retention import plan_prune

        store = checkpoint_store(target)
        if store:
            import asyncio

            return await asyncio.to_thread(
                store.plan_prune, target, keep_last=keep_last, keep_best=keep_best,
                mode=mode, protected=self.protected_checkpoints())
        directory, session, entries, rows = await self.checkpoints(target)
        if session is not None and get_provider(session.provider).remote:
            raise TrainctlError(f"pruning checkpoints on an SSH host is not supported yet; "
                                f"prune on {session.host} with trainctl there, or pull first")
        validity, metrics = validity_and_metrics(rows)
        try:
            return plan_prune(entries, keep_last=keep_last, keep_best=keep_best, mode=mode,
                              validity=validity, metrics=metrics,
                              protected=self.protected_checkpoints(), directory=directory)
        except ValueError as exc:
            raise TrainctlError(str(exc)) from None

    def apply_prune(self, plan, *, purge: bool = False):
        """Carry out a plan: to a new trash folder under the state dir, or deleted (purge)."""
        from ..checkpoints.retention import apply_prune

        store = checkpoint_store(plan.directory)
        if store:  # no trash there: purge required
            return store.apply_prune(plan, purge=purge)
        trash = None if purge else str(paths.state_dir() / "trash" /
                                       time.strftime("%Y%m%d-%H%M%S"))
        return apply_prune(plan, trash_dir=trash, purge=purge)

    async def delete_checkpoint(self, target: str, path: str, *, purge: bool = False):
        """Remove one checkpoint, unless retention would always keep it (newest valid,
        being written, protected)."""
        from ..checkpoints.retention import Decision, PrunePlan

        plan = await self.plan_prune(target, keep_last=1)
        wanted = os.path.realpath(path)
        for decision in plan.decisions:
            if os.path.realpath(decision.entry.path) != wanted:
                continue
            if decision.keep and not decision.reason.startswith("in last"):
                raise TrainctlError(f"refusing to delete {decision.entry.name}: "
                                    f"{decision.reason}")
            single = PrunePlan([Decision(decision.entry, False, "deleted by hand")],
                               directory=plan.directory)
            return self.apply_prune(single, purge=purge)
        raise TrainctlError(f"{path} is not a checkpoint in {plan.directory}")

    async def auto_prune(self, session: Session) -> list[str]:
        """Apply the session's keep_last_n once it has more finished checkpoints than that."""
        if not session.keep_last_n or not session.checkpoint_dir:
            return []
        if not Path(session.checkpoint_dir).is_dir():
            return []
        plan = await self.plan_prune(session.checkpoint_dir, keep_last=session.keep_last_n)
        return list(self.apply_prune(plan)) if plan.delete else []


def shorten(text: str, limit: int = 120) -> str:
    """A user's argument in an error: a 10,000-character path must not fill the screen."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text):,} characters)"
