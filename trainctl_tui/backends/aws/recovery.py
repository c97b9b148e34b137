"""What happens after an AWS session changes status: a spot interruption with `[aws]
auto_resume` on gets a replacement instance (same template, then the fallback types/zones when
capacity fails) and a new attempt there from the newest checkpoint in S3; a session that ended
for good has its SecureString secrets deleted. Called by service.refresh_session.

The refresh only decides and records the interruption; creating the replacement and starting
the run there (minutes) happen in a detached `trainctl _recover` (recovery.py), which calls
resume_detached. Deleting the secrets (two SSM calls) stays in the refresh."""

from __future__ import annotations

import json
from pathlib import Path

from ...app import recovery
from ...core.errors import TrainctlError
from ...core.models import Session, Status

# AWS error codes after which another type or zone may still work.
CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientCapacity",
                  "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "Unsupported",
                  "InsufficientHostCapacity", "capacity-not-available", "SSMTimeout"}

log = recovery.log  # the recover process writes it to recover.log


async def after_status_change(service, session: Session) -> None:
    """Never raises: whatever fails here is said in the session's detail."""
    if not session.provider.startswith("aws:"):
        return
    try:
        if session.status is Status.INTERRUPTED:
            await maybe_resume(service, session)
        elif not session.status.active:
            from .provider import delete_secrets, has_secrets

            if has_secrets(session):
                await delete_secrets(session.id)
    except TrainctlError as exc:
        service.store.update(session.id, detail=f"{session.detail or 'interrupted'}; "
                                                f"auto-resume failed: {exc}")


async def maybe_resume(service, session: Session) -> bool:
    """Start resuming an interrupted session on a new instance, in a detached process, when
    the config allows; True if one was started. Returns at once."""
    from .provider import load_interruptions, record_interruption

    settings = service.config.aws
    if not settings.auto_resume:
        return False
    lock = recovery.take_lock(session.session_dir)
    if lock is None:
        return False  # another refresh (the TUI, a CLI) or a recovery is on it
    try:
        done = load_interruptions(session)
        old = session.host or session.provider.partition(":")[2]
        if any(item["instance"] == old for item in done):
            return False  # recorded and handled already
        await record_interruption(session, old)
        reason = session.detail or "interrupted"
        if len(done) + 1 > settings.max_resumes:
            service.store.update(session.id, detail=f"{reason}; "
                                 f"not resumed: {settings.max_resumes} interruptions already "
                                 "(raise [aws] max_resumes, or trainctl resume it)")
            return False
        recovery.start(service, session, lock, reason, "resuming on a new instance")
        return True
    finally:
        lock.release()  # a no-op when the recovery has it


async def resume_detached(service, session: Session, reason: str) -> None:
    """In `trainctl _recover`: the replacement instance and the run there, for the
    interruption maybe_resume recorded. Failures are said in the session's detail."""
    from .provider import load_interruptions

    old = session.host or session.provider.partition(":")[2]
    record = next((r for r in reversed(load_interruptions(session)) if r["instance"] == old),
                  None)
    if session.status is not Status.INTERRUPTED or record is None:
        log.info("session %s is %s on %s: nothing to resume", session.id, session.status, old)
        if session.status is Status.INTERRUPTED:
            service.store.update(session.id, detail=reason)
        return
    try:
        log.info("creating a spot instance to replace %s (%s)", old,
                 record.get("type") or "the template's type")
        instance = await create_replacement(session, record.get("type"),
                                            record.get("template"))
        log.info("instance %s runs; starting the session there", instance.id)
        await start_on(service, session, instance.id)
    except TrainctlError as exc:
        service.store.update(session.id, detail=f"{reason}; auto-resume failed: {exc}")


async def create_replacement(session: Session, old_type: str | None,
                             template_name: str | None = None):
    """A spot instance from the same template; on a capacity failure the template's
    fallback_types and fallback_zones are tried in turn."""
    from ..cloud import CreateRequest, get_cloud
    from .api import AWSError

    cloud = get_cloud("aws")
    template = cloud.template(template_name)
    types = [old_type or template.instance_type] + \
        [t for t in template.fallback_types if t != (old_type or template.instance_type)]
    zones: list[str | None] = [None, *template.fallback_zones]
    errors = []
    for instance_type in types:
        for zone in zones:
            request = CreateRequest(provider="aws", template=template_name, type=instance_type,
                                    spot=True, session=session.id, zone=zone,
                                    name=f"trainctl-{session.id}")
            try:
                return await cloud.create_instance(request)
            except AWSError as exc:
                if exc.code not in CAPACITY_CODES:
                    raise
                errors.append(f"{instance_type}{' in ' + zone if zone else ''}: {exc.code}")
    raise TrainctlError("no replacement instance: " + "; ".join(errors))


async def resume_on_new_instance(service, session: Session, *, scratch: bool = False,
                                 from_checkpoint: str | None = None) -> None:
    """`trainctl resume` of an interrupted session: its instance is gone, so a replacement
    is created (whatever auto_resume says: the user asked) and the run starts there."""
    from .provider import load_interruptions, record_interruption

    old = session.host or session.provider.partition(":")[2]
    last = next((r for r in load_interruptions(session) if r["instance"] == old), None)
    if last is None:  # auto_resume was off: nobody has recorded this one yet
        last = await record_interruption(session, old)
    instance = await create_replacement(session, last.get("type"), last.get("template"))
    await start_on(service, session, instance.id,
                   checkpoint=None if scratch else (from_checkpoint or AUTO))


AUTO = "auto"  # start_on: the newest finished checkpoint in S3


async def start_on(service, session: Session, instance_id: str,
                   checkpoint: str | None = AUTO) -> None:
    """A new attempt of `session` on `instance_id`, from `checkpoint` (an s3:// URI, a path
    on the instance, None for scratch, AUTO for the newest finished one in S3)."""
    from ...app.service import atomic_write_text, read_spec

    folder = Path(session.session_dir)
    spec_path = folder / "spec.json"
    spec = read_spec(session)  # a garbage one: one line, not a traceback
    skipped: list[dict] = []
    if checkpoint == AUTO:
        uri, skipped = await newest_s3_checkpoint(spec.get("s3_checkpoint_uri"),
                                                  spec.get("trusted_globals") or ())
    else:
        uri = checkpoint
    spec["resume_from"] = uri
    spec["resume_skipped"] = skipped  # the runner records them in the new attempt
    atomic_write_text(spec_path, json.dumps(spec, indent=2))
    old = session.host
    with open(folder / "train.log", "ab") as log:
        log.write(f"\n[trainctl] spot interruption on {old}; resuming on {instance_id} from "
                  f"{uri or 'scratch'}\n".encode())
    (folder / "remote.json").unlink(missing_ok=True)
    atomic_write_text(folder / "remote.offset", "0")
    provider = f"aws:{instance_id}"
    service.store.update(session.id, provider=provider, host=instance_id,
                         status=Status.PENDING, ended=None,
                         detail=f"resuming on {instance_id} after a spot interruption")
    session.provider, session.host, session.status = provider, instance_id, Status.PENDING
    session.ended = None
    await service._start_runner(session)


async def newest_s3_checkpoint(uri: str | None, trusted_globals=()
                               ) -> tuple[str | None, list[dict]]:
    """The s3:// URI of the newest sound checkpoint under `uri` (inspected through ranged
    reads, the one rule of the runner and `resume`) or None, and the newer ones passed over."""
    if not uri:
        return None, []
    import asyncio

    from ...checkpoints.catalog import choose_row
    from . import s3_checkpoints

    _, rows = await asyncio.to_thread(s3_checkpoints.list_checkpoints, uri)
    row, skipped = choose_row(rows, trusted_globals)
    return (row.entry.path if row else None), skipped
