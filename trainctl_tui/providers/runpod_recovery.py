"""Spot interruptions of sessions on RunPod pods: detected after a refresh (the pod went to
EXITED/TERMINATED while the session was active and the runner's heartbeat is stale), recorded
in the session (status interrupted, the reason on the interrupted attempt, interruptions.json
in the session folder), and with `[runpod] auto_resume` resumed: the pod bids again
(podBidResume; an on-demand pod is resumed) and the runner starts again on it from the newest
checkpoint on the pod's volume, up to `max_resumes` times."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..models import Session, Status
from .base import ProviderError

STALE_SECONDS = 30.0  # a heartbeat older than this (and a gone pod) means an interruption
GONE = ("EXITED", "TERMINATED", "DEAD")


def _log(session: Session) -> Path:
    return Path(session.session_dir) / "interruptions.json"


def interruptions(session: Session) -> list[dict]:
    try:
        return json.loads(_log(session).read_text())
    except (OSError, ValueError):
        return []


def _record(session: Session, entry: dict) -> list[dict]:
    entries = interruptions(session) + [entry]
    tmp = _log(session).with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2))
    tmp.replace(_log(session))
    return entries


def _with_reasons(session: Session) -> list | None:
    """The session's attempts with each recorded interruption's reason on its attempt."""
    entries = interruptions(session)
    if not entries or not session.attempts:
        return None
    attempts = list(session.attempts)
    changed = False
    for entry in entries:
        for attempt in attempts:
            if attempt.n == entry["attempt"] and attempt.reason != entry["reason"]:
                attempt.reason, changed = entry["reason"], True
    return attempts if changed else None


async def after_runpod_refresh(service, session: Session) -> Session:
    """The RunPod part of Service.refresh_session: interruption detection and auto-resume."""
    attempts = _with_reasons(session)
    if attempts is not None:
        service.store.update(session.id, attempts=attempts)
        session.attempts = attempts
    if session.status not in (Status.UNREACHABLE, Status.LOST):
        return session
    from .runpod import RunPodCloud

    cloud = RunPodCloud()
    pod_id = session.host or session.provider.partition(":")[2]
    try:
        pod = await cloud._pod(pod_id)
    except ProviderError:
        return session  # RunPod did not answer either: nothing to conclude yet
    state = (pod or {}).get("desiredStatus") or "TERMINATED"
    beat = session.heartbeat
    if state not in GONE or (beat is not None and time.time() - beat < STALE_SECONDS):
        return session
    why = f" ({pod['lastStatusChange']})" if pod and pod.get("lastStatusChange") else ""
    reason = f"interrupted: pod {pod_id} went {state.lower()}{why} while training"
    entries = _record(session, {"attempt": session.attempt or 1, "at": time.time(),
                                "pod": pod_id, "state": state, "reason": reason})
    settings = cloud.settings
    resumes = len(entries) - 1
    detail = reason
    if settings.auto_resume and pod is not None and resumes < settings.max_resumes:
        try:
            return await _resume(service, session, cloud, pod, reason)
        except ProviderError as exc:
            detail = f"{reason}; auto-resume failed: {exc}"
    elif settings.auto_resume:
        detail = f"{reason}; not resumed (max_resumes {settings.max_resumes} reached" \
            if pod is not None else f"{reason}; not resumed (the pod is gone"
        detail += f"; trainctl resume {session.id} after trainctl instance start {pod_id})"
    service.store.update(session.id, status=Status.INTERRUPTED, detail=detail,
                         ended=beat or time.time())
    session.status, session.detail = Status.INTERRUPTED, detail
    return await _reasons_now(service, session)


async def _reasons_now(service, session: Session) -> Session:
    attempts = _with_reasons(session)
    if attempts is not None:
        service.store.update(session.id, attempts=attempts)
        session.attempts = attempts
    return session


async def _resume(service, session: Session, cloud, pod: dict, reason: str) -> Session:
    """Bid again for the same pod (its volume keeps the checkpoints), wait for it, and start
    the runner there from the newest checkpoint."""
    from ..service import NEWEST_CHECKPOINT, atomic_write_text
    from .runpod import RunPodProvider

    pod_id = pod["id"]
    gpus = int(pod.get("gpuCount") or 1)
    bid = None
    if pod.get("podType") in ("INTERRUPTABLE", "BID"):
        # The bid that was just outbid will not do: at least the current minimum to resume.
        bid = max((pod.get("costPerHr") or 0) / gpus, pod.get("lowestBidPriceToResume") or 0)
    await cloud.start_instance(pod_id, bid=bid)
    await cloud.wait_running(pod_id)
    await RunPodProvider(pod_id).resolve(fresh=True)
    spec_path = Path(session.session_dir) / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec["resume_from"] = NEWEST_CHECKPOINT if session.checkpoint_dir else None
    atomic_write_text(spec_path, json.dumps(spec, indent=2))
    detail = f"{reason}; resumed on pod {pod_id}"
    service.store.update(session.id, status=Status.PENDING, ended=None, detail=detail)
    session.status, session.detail = Status.PENDING, detail
    await service._start_runner(session)
    return await _reasons_now(service, service.store.get(session.id))
