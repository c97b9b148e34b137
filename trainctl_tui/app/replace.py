"""When a cloud takes a session's machine: noticing it, recording it, and moving the session to
a replacement, the same for every backend that declares the capability (backends/replacing.py).

After a refresh, `after_refresh` asks the backend whether the machine was taken; the
interruption goes into the one record (core/interruptions.py) and, when the backend's settings
say auto-resume, a detached `trainctl _recover` (recovery.py) takes over: `resume_detached`
asks the backend for a replacement and moves the session there. `trainctl resume` of an
interrupted session does the same in the foreground (`resume_by_hand`). The backend only
answers; the lock, the record, the session's fields and its runner are handled here."""

from __future__ import annotations

import time
from pathlib import Path

from ..backends.registry import get_provider
from ..backends.replacing import ReplaceFailed, Replacement
from ..core import interruptions
from ..core.atomic import atomic_write
from ..core.errors import TrainctlError
from ..core.models import Session, Status
from ..core.placement import machine_of
from ..core.spec import read_spec, write_spec
from . import recovery


def replaces_machines(provider) -> bool:
    return getattr(provider, "replaces_machines", False)


async def after_refresh(service, session: Session) -> Session:
    """The refresh's last step for a backend that replaces machines: keep what it needs while
    the session runs, notice an interruption, start auto-resume. Backends that hold secrets
    forget them once the session ended for good. Never raises a TrainctlError."""
    provider = get_provider(session.provider)
    session = reasons_now(service, session)
    if replaces_machines(provider) and session.status in provider.interrupted_when:
        return await _noticed(service, provider, session)
    if session.status.active:
        if replaces_machines(provider):
            await provider.observe(session)
    elif session.status is not Status.INTERRUPTED and hasattr(provider, "forget_secrets"):
        try:
            await provider.forget_secrets(session)
        except TrainctlError as exc:
            _update(service, session, detail=f"{session.detail or 'ended'}; forgetting its "
                                             f"secrets failed: {exc}")
    return session


async def _noticed(service, provider, session: Session) -> Session:
    lock = recovery.take_lock(session.session_dir)
    if lock is None:
        return session  # another refresh (the TUI, a CLI) or a recovery is on it
    try:
        current = service.store.get(session.id)
        if current is None or current.provider != session.provider or \
                current.status is not session.status:
            return current or session  # handled meanwhile
        from .costs import stopped_by_guard

        why = stopped_by_guard(session, time.time())
        if why is not None:  # its runner stopped it at a limit: no interruption, no resume
            _update(service, session, status=Status.STOPPED, detail=why,
                    ended=session.heartbeat or time.time())
            return session
        try:
            found = await provider.interruption(session,
                                                interruptions.load(session.session_dir))
        except TrainctlError as exc:
            _update(service, session, detail=f"{session.detail or 'interrupted'}; "
                                             f"auto-resume failed: {exc}")
            return session
        if found is None:
            return session
        interruptions.append(session.session_dir, found.entry)
        if found.resume:
            recovery.start(service, session, lock, found.detail, found.resume, **found.changes)
        else:
            _update(service, session, detail=found.detail, **found.changes)
        return reasons_now(service, session)
    finally:
        lock.release()  # a no-op when the recovery has it


async def resume_detached(service, session: Session, reason: str) -> None:
    """In `trainctl _recover`: the replacement for the interruption the refresh recorded, and
    the run there. What failed ends in the session's detail."""
    provider = get_provider(session.provider)
    machine = machine_of(session)
    entry = interruptions.last_of(session.session_dir, machine)
    if session.status is not Status.INTERRUPTED or entry is None or \
            not replaces_machines(provider):
        recovery.log.info("session %s is %s on %s: nothing to resume", session.id,
                          session.status, machine)
        if session.status is Status.INTERRUPTED:
            _update(service, session, detail=reason)
        return
    naming = recovery.naming_this_process(session.session_dir)
    try:
        replacement = await provider.replace(
            session, entry, reason=reason,
            progress=lambda doing: _update(service, session, detail=f"{doing} {naming}"))
        await move(service, session, replacement)
        recovery.log.info("%s", replacement.detail)
    except ReplaceFailed as exc:
        _update(service, session, detail=str(exc), status=Status.INTERRUPTED,
                ended=session.heartbeat or time.time())
    except TrainctlError as exc:
        _update(service, session, detail=f"{reason}; auto-resume failed: {exc}")
    reasons_now(service, service.store.get(session.id) or session)


async def resume_by_hand(service, session: Session, *, scratch: bool,
                         from_checkpoint: str | None) -> None:
    """`trainctl resume` of an interrupted session whose machine is gone: a replacement
    whatever auto-resume says (the user asked), in the foreground. Errors are raised."""
    provider = get_provider(session.provider)
    if not replaces_machines(provider):
        raise TrainctlError(f"session {session.id} was interrupted on {session.provider}, "
                            "which cannot replace its machine")
    entry = interruptions.last_of(session.session_dir, machine_of(session))
    replacement = await provider.replace(
        session, entry, reason=session.detail or "interrupted", by_hand=True, scratch=scratch,
        from_checkpoint=from_checkpoint,
        progress=lambda doing: _update(service, session, detail=doing))
    if replacement.entry is not None:
        interruptions.append(session.session_dir, replacement.entry)
    await move(service, session, replacement)


async def move(service, session: Session, to: Replacement) -> None:
    """The session goes on on `to`: spec.json says where to resume from, train.log says what
    happened, the session names the machine, and its runner starts there. If the runner
    cannot start, the machine is given back and the session names the old one again."""
    folder = Path(session.session_dir)
    spec = read_spec(session)  # a garbage one: one line, not a traceback
    spec["resume_from"] = to.resume_from
    if to.resume_skipped is not None:
        spec["resume_skipped"] = to.resume_skipped  # the runner records them in the attempt
    write_spec(session, spec)
    note(session, to.note)
    if to.new_machine:
        (folder / "remote.json").unlink(missing_ok=True)
        atomic_write(folder / "remote.offset", "0")  # the new machine's train.log is new
    if to.entry_update:
        interruptions.update_last(folder, **to.entry_update)
    provider, host = session.provider, session.host
    _update(service, session, detail=to.detail, provider=to.provider, host=to.host,
            status=Status.PENDING, ended=None)
    try:
        await service.start_runner(session)
    except BaseException as exc:
        if to.discard is not None:
            await to.discard(exc)
        if (to.provider, to.host) != (provider, host):  # back to the machine that was taken
            _update(service, session, provider=provider, host=host)
            note(session, f"resuming on {to.label} failed: {exc}")
        raise


def reasons_now(service, session: Session) -> Session:
    """The session with each recorded interruption's reason on its attempt."""
    attempts = with_reasons(session, session.attempts)
    if attempts is not None:
        service.store.update(session.id, attempts=attempts)
        session.attempts = attempts
    return session


def with_reasons(session: Session, attempts: list) -> list | None:
    entries = interruptions.load(session.session_dir)
    return interruptions.with_reasons(entries, attempts) if entries else None


def note(session: Session, text: str) -> None:
    """A line of trainctl's own in the session's train.log."""
    with open(Path(session.session_dir) / "train.log", "ab") as log:
        log.write(f"\n[trainctl] {text}\n".encode())


def _update(service, session: Session, **changes) -> None:
    """The session's fields, in the store and in `session`."""
    service.store.update(session.id, **changes)
    for key, value in changes.items():
        setattr(session, key, value)
