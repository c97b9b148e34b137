"""How AWS replaces a spot instance it reclaimed (the capability of backends/replacing.py,
for AWSProvider): the interruption is noticed by the probe (the instance went with
`Server.SpotInstanceTermination`), recorded with the instance's type, template and cost, and
replaced by a spot instance from the same template (then the template's fallback types and
zones when capacity fails), where the run resumes from the newest sound checkpoint in S3."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ...core.errors import TrainctlError
from ...core.models import Session
from ...core.spec import read_spec
from ..replacing import Interruption, Replacement

# AWS error codes after which another type or zone may still work.
CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientCapacity",
                  "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "Unsupported",
                  "InsufficientHostCapacity", "capacity-not-available", "SSMTimeout"}
AUTO = "auto"  # replace(): the newest finished checkpoint in S3
LAST_STATUS = "remote_status.json"  # the last status.json seen, kept for a reclaimed instance

log = logging.getLogger("trainctl.recovery")  # the recover process writes it to recover.log


async def interruption(session: Session, instance_id: str, entries: list[dict]
                       ) -> Interruption | None:
    """The reclaimed instance, recorded once; auto-resume when `[aws] auto_resume` allows."""
    from .api import aws_settings

    if any(entry["machine"] == instance_id for entry in entries):
        return None  # recorded and handled already
    entry = await interruption_entry(session, instance_id)
    reason = session.detail or "interrupted"
    settings = aws_settings()
    if not settings.auto_resume:
        return Interruption(entry=entry, detail=session.detail)
    if len(entries) + 1 > settings.max_resumes:
        return Interruption(entry=entry, detail=(
            f"{reason}; not resumed: {settings.max_resumes} interruptions already (raise "
            "[aws] max_resumes, or trainctl resume it)"))
    return Interruption(entry=entry, detail=reason, resume="resuming on a new instance")


async def interruption_entry(session: Session, instance_id: str) -> dict:
    """The interruption record's entry: the instance, its type and template, what it cost
    until now, and the attempts it ran (its last status.json)."""
    import json

    from .api import AWSError
    from .cloud import TEMPLATE_TAG, AWSCloud

    now = time.time()
    entry: dict = {"machine": instance_id, "instance": instance_id, "at": now, "spot": True,
                   "type": None, "cost": None, "template": None, "attempts": []}
    try:
        instance = await AWSCloud().get_instance(instance_id)
        entry["type"] = instance.type
        entry["template"] = instance.extra.get("tags", {}).get(TEMPLATE_TAG)
        if instance.price_per_hour is not None and instance.launched:
            entry["cost"] = round(instance.price_per_hour * max(0.0, now - instance.launched)
                                  / 3600, 4)
    except AWSError:
        pass
    try:
        last = json.loads((Path(session.session_dir) / LAST_STATUS).read_text()) or {}
    except (OSError, ValueError):
        last = {}
    entry["attempts"] = last.get("attempts") or []
    entry["reason"] = interruption_reason(entry)
    return entry


async def replace(session: Session, instance_id: str, entry: dict | None, *, by_hand: bool,
                  scratch: bool, from_checkpoint: str | None) -> Replacement:
    """A spot instance like the reclaimed one, and the checkpoint to resume from: the newest
    sound one in S3 (or, by hand, the one named, or none for --scratch)."""
    new_entry = None
    if entry is None:  # auto_resume was off: nobody has recorded this one yet
        entry = new_entry = await interruption_entry(session, instance_id)
    log.info("creating a spot instance to replace %s (%s)", instance_id,
             entry.get("type") or "the template's type")
    instance = await create_replacement(session, entry.get("type"), entry.get("template"))
    log.info("instance %s runs; starting the session there", instance.id)
    checkpoint = (None if scratch else from_checkpoint or AUTO) if by_hand else AUTO
    skipped: list[dict] = []
    if checkpoint == AUTO:
        spec = read_spec(session)  # a garbage one: one line, not a traceback
        checkpoint, skipped = await newest_s3_checkpoint(spec.get("s3_checkpoint_uri"),
                                                         spec.get("trusted_globals") or ())
    return Replacement(
        provider=f"aws:{instance.id}", host=instance.id, label=instance.id,
        resume_from=checkpoint, resume_skipped=skipped, entry=new_entry,
        note=(f"spot interruption on {instance_id}; resuming on {instance.id} from "
              f"{checkpoint or 'scratch'}"),
        detail=f"resuming on {instance.id} after a spot interruption")


async def create_replacement(session: Session, old_type: str | None,
                             template_name: str | None = None):
    """A spot instance from the same template; on a capacity failure the template's
    fallback_types and fallback_zones are tried in turn."""
    from ...core.machines import CreateRequest
    from .api import AWSError
    from .cloud import AWSCloud

    cloud = AWSCloud()
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


def interruption_reason(record: dict) -> str:
    cost = f", ${record['cost']:.2f}" if record.get("cost") is not None else ""
    return f"spot interruption ({record['machine']}{cost})"
