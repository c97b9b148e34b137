"""Spot interruptions of sessions on RunPod pods.

Detected after a refresh: the pod went EXITED/TERMINATED (or is gone) while the session was
active and the runner's heartbeat is stale. Recorded in the session: status interrupted, the
reason ("spot interruption: pod X ..., cost so far $Y") on the interrupted attempt, and an
entry in interruptions.json in the session folder. With `[runpod] auto_resume`, up to
`max_resumes` times per session:

1. the same pod bids again (podBidResume; an on-demand pod is resumed) and the runner starts
   there from the newest checkpoint on its volume;
2. when the pod is gone or bidding again fails, a spot pod is recreated from what trainctl
   recorded of it while it ran (runpod_pod.json: GPU type and count, cloud type, image, disks,
   network volume, env; the bid is the larger of the old bid and today's minimum), the session
   moves to it (provider runpod:NEW) and the runner starts there from:
   a. the newest checkpoint on the network volume (the checkpoint dir is under /workspace),
      picked by the runner itself;
   b. else the newest sound checkpoint at home (<session>/checkpoints-home/, filled in the
      background with `[runpod] pull_checkpoints`, or where `trainctl pull` puts it by default,
      ./<name>-<id>), uploaded to the new pod's checkpoint dir over SSH (resumable, checked by
      SHA-256);
   c. else from scratch only when the session has no checkpoint dir; otherwise nothing is
      created and the session stays interrupted with a one-line detail saying so.
   A pod created here that cannot be used (upload or runner start failed) is terminated.

The refresh only detects and records the interruption; bidding again or recreating the pod
(minutes) happens in a detached `trainctl _recover` (..recovery), which calls resume_detached.
Meanwhile the session is interrupted, its detail naming that process and its log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
import shutil
import threading
import time
from pathlib import Path

from ...app import recovery
from ...core.errors import TrainctlError
from ...core.models import Session, Status
from ..base import ProviderError

STALE_SECONDS = 30.0  # a heartbeat older than this (and a gone pod) means an interruption
GONE = ("EXITED", "TERMINATED", "DEAD")
SPOT_TYPES = ("INTERRUPTABLE", "BID")
VOLUME_MOUNT = "/workspace"  # where RunPod mounts a pod's (network) volume
POD_RECORD = "runpod_pod.json"  # the session's pod as last seen running (to recreate it)
HOME_COPIES = "checkpoints-home"  # in the session folder
HOME_KEEP = 2  # newest home copies kept
UPLOAD_PREFIX = ".trainctl-upload-"  # hidden: the runner never takes it for a checkpoint
UPLOAD_RATE_FLOOR = 1 << 20  # bytes/s below which an upload is given up (resumed next time)
HASH_SCRIPT = ("import hashlib,sys\nh=hashlib.sha256()\nf=open(sys.argv[1],'rb')\n"
               "for b in iter(lambda:f.read(1<<20),b''):h.update(b)\nprint(h.hexdigest())")


class NoCheckpoint(TrainctlError):
    """No checkpoint survived the interruption: nothing is created."""


# -- the session's records -------------------------------------------------------------------

def _log(session: Session) -> Path:
    return Path(session.session_dir) / "interruptions.json"


def interruptions(session: Session) -> list[dict]:
    try:
        return json.loads(_log(session).read_text())
    except (OSError, ValueError):
        return []


def _write_json(path: Path, value, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=2)
    tmp.replace(path)


def _record(session: Session, entry: dict) -> list[dict]:
    entries = interruptions(session) + [entry]
    _write_json(_log(session), entries, 0o644)
    return entries


def _update_last(session: Session, **fields) -> None:
    entries = interruptions(session)
    if entries:
        entries[-1].update(fields)
        _write_json(_log(session), entries, 0o644)


def pod_record(session: Session) -> dict | None:
    """{"pod": the pod as the API showed it, "seen_at": when, "cloud_type": config's}."""
    try:
        record = json.loads((Path(session.session_dir) / POD_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pod"), dict) else None


def _remember_pod(session: Session, pod: dict, settings) -> None:
    """0600: the pod's env may hold what the user put there."""
    _write_json(Path(session.session_dir) / POD_RECORD,
                {"pod": pod, "seen_at": time.time(), "cloud_type": settings.cloud_type})


def _forget_pod(session: Session) -> None:
    (Path(session.session_dir) / POD_RECORD).unlink(missing_ok=True)


def _with_reasons(session: Session, attempts: list | None = None) -> list | None:
    """The session's attempts (or `attempts`) with each recorded interruption's reason on its
    attempt; None when nothing changes."""
    entries = interruptions(session)
    attempts = list(session.attempts if attempts is None else attempts)
    if not entries or not attempts:
        return None
    changed = False
    for entry in entries:
        for attempt in attempts:
            if attempt.n == entry["attempt"] and attempt.reason != entry["reason"]:
                attempt.reason, changed = entry["reason"], True
    return attempts if changed else None


def with_reasons(session: Session, attempts: list) -> list:
    """`attempts` as a runner's status.json lists them, with the interruption reasons trainctl
    recorded: written in one go, a reader never sees the runner's 'runner lost' instead."""
    return _with_reasons(session, attempts) or attempts


async def _reasons_now(service, session: Session) -> Session:
    attempts = _with_reasons(session)
    if attempts is not None:
        service.store.update(session.id, attempts=attempts)
        session.attempts = attempts
    return session


def _pod_id(session: Session) -> str:
    return session.host or session.provider.partition(":")[2]


def _cloud(service):
    from .provider import RunPodCloud

    return RunPodCloud(settings=service.config.runpod)


# -- the refresh hook ------------------------------------------------------------------------

async def after_runpod_refresh(service, session: Session) -> Session:
    """The RunPod part of Service.refresh_session: remembers the pod while it runs (and keeps
    home copies of checkpoints when asked), detects interruptions and auto-resumes."""
    session = await _reasons_now(service, session)
    if session.status not in (Status.UNREACHABLE, Status.LOST):
        if session.status.active:
            await _watch_pod(service, session)
        return session
    lock = recovery.take_lock(session.session_dir)
    if lock is None:
        return session  # another refresh (the TUI, a CLI) or a recovery is on it
    try:
        current = service.store.get(session.id)
        if current is None or current.provider != session.provider or \
                current.status not in (Status.UNREACHABLE, Status.LOST):
            return current or session  # handled meanwhile
        return await _on_unreachable(service, session, lock)
    finally:
        lock.release()  # a no-op when a recovery has it


async def _on_unreachable(service, session: Session, lock) -> Session:
    """Is the pod gone? Then record the interruption, and with auto_resume hand `lock` to a
    detached recovery (resume_detached)."""
    cloud = _cloud(service)
    pod_id = _pod_id(session)
    try:
        pod = await cloud._pod(pod_id)
    except ProviderError:
        return session  # RunPod did not answer either: nothing to conclude yet
    state = (pod or {}).get("desiredStatus") or "TERMINATED"
    beat = session.heartbeat
    if state not in GONE or (beat is not None and time.time() - beat < STALE_SECONDS):
        return session
    record = _pod_record_of(session, pod_id)
    known = pod or (record or {}).get("pod")
    spot = (known or {}).get("podType") in SPOT_TYPES
    why = f" ({pod['lastStatusChange']})" if pod and pod.get("lastStatusChange") else ""
    cost = _cost_so_far(record, beat)
    reason = (f"{'spot interruption' if spot else 'interrupted'}: pod {pod_id} went "
              f"{state.lower()}{why} while training"
              + (f"; cost so far ${cost:.2f}" if cost is not None else ""))
    entries = _record(session, {"attempt": session.attempt or 1, "at": time.time(),
                                "pod": pod_id, "state": state, "spot": spot, "cost": cost,
                                "reason": reason})
    settings = cloud.settings
    resumes = len(entries) - 1
    if not settings.auto_resume:
        detail = reason
    elif resumes >= settings.max_resumes:
        detail = (f"{reason}; not resumed (max_resumes {settings.max_resumes} reached; "
                  f"trainctl resume {session.id} once pod {pod_id} or a new one runs)")
    else:
        doing = (f"resuming: bidding again for pod {pod_id}" if pod is not None and
                 state != "TERMINATED" else f"resuming on a new pod like {pod_id}")
        recovery.start(service, session, lock, reason, doing, status=Status.INTERRUPTED,
                       ended=beat or time.time())
        return await _reasons_now(service, session)
    return await _stay_interrupted(service, session, detail)


async def resume_detached(service, session: Session, reason: str) -> None:
    """In `trainctl _recover`: bid again for the pod, else recreate it, and resume there;
    what failed ends in the session's detail. The pod is asked for again: the bid to beat,
    and whether it is still there, are today's."""
    cloud = _cloud(service)
    pod_id = _pod_id(session)
    entry = (interruptions(session) or [{}])[-1]
    if session.status is not Status.INTERRUPTED or entry.get("pod") != pod_id:
        recovery.log.info("session %s is %s on pod %s: nothing to resume", session.id,
                          session.status, pod_id)
        if session.status is Status.INTERRUPTED:
            service.store.update(session.id, detail=reason)
        return
    try:
        pod = await cloud._pod(pod_id)
    except ProviderError as exc:
        await _stay_interrupted(service, session, f"{reason}; RunPod did not answer ({exc}) "
                                f"(trainctl resume {session.id} once a pod runs)")
        return
    state = (pod or {}).get("desiredStatus") or "TERMINATED"
    known = pod or (_pod_record_of(session, pod_id) or {}).get("pod")
    failed: list[str] = []
    if pod is not None and state != "TERMINATED":
        try:
            recovery.log.info("bidding again for pod %s", pod_id)
            await _resume(service, session, cloud, pod, reason)
            return
        except ProviderError as exc:
            failed.append(f"bidding again for pod {pod_id} failed: {exc}")
            recovery.log.info(failed[-1])
    detail = await _replace(service, session, cloud, known, pod_id, entry.get("spot"), reason,
                            failed)
    if detail is None:
        await _reasons_now(service, service.store.get(session.id))
    else:
        await _stay_interrupted(service, session, detail)


async def _stay_interrupted(service, session: Session, detail: str) -> Session:
    service.store.update(session.id, status=Status.INTERRUPTED, detail=detail,
                         ended=session.heartbeat or time.time())
    session.status, session.detail = Status.INTERRUPTED, detail
    return await _reasons_now(service, session)


def _pod_record_of(session: Session, pod_id: str) -> dict | None:
    """The session's pod record when it is of `pod_id`."""
    record = pod_record(session)
    return record if record and record["pod"].get("id") == pod_id else None


async def _replace(service, session: Session, cloud, known: dict | None, pod_id: str,
                   spot: bool, reason: str, failed: list[str]) -> str | None:
    """Recreate the pod and resume there; None when the run goes on, else the detail."""
    from .provider import terminated_by_user

    if known is None:
        why = f"pod {pod_id} is gone and trainctl has no record of it to recreate"
    elif not spot:
        why = f"pod {pod_id} is an on-demand pod: it is not recreated"
    elif terminated_by_user(pod_id):
        why = f"pod {pod_id} was terminated with trainctl instance terminate"
    else:
        try:
            recovery.log.info("creating a pod like %s", pod_id)
            new_id = await recreate(service, session, cloud, known, reason,
                                    naming=recovery.naming_this_process(session.session_dir))
            recovery.log.info("resumed on new pod %s", new_id)
            return None
        except NoCheckpoint as exc:
            return f"{reason}; " + "; ".join(failed + [str(exc)])
        except TrainctlError as exc:
            why = f"recreating pod {pod_id} failed: {exc}"
    return f"{reason}; " + "; ".join(failed + [why]) + \
        f" (trainctl resume {session.id} once a pod runs)"


def _cost_so_far(record: dict | None, beat: float | None) -> float | None:
    """The pod's $/h times how long it ran since trainctl saw it (uptime included)."""
    if not record:
        return None
    pod = record["pod"]
    price = pod.get("costPerHr")
    uptime = (pod.get("runtime") or {}).get("uptimeInSeconds")
    if uptime is None:
        uptime = pod.get("uptimeSeconds")
    if not price or uptime is None or not record.get("seen_at"):
        return None
    started = record["seen_at"] - uptime
    end = beat or time.time()
    return round(max(0.0, end - started) / 3600 * float(price), 4)


# -- 1. the same pod bids again ---------------------------------------------------------------

async def _resume(service, session: Session, cloud, pod: dict, reason: str) -> Session:
    """Bid again for the same pod (its volume keeps the checkpoints), wait for it, and start
    the runner there from the newest checkpoint. A pod that took the bid but never ran is
    stopped again."""
    from ...app.service import NEWEST_CHECKPOINT, atomic_write_text, read_spec
    from .provider import RunPodProvider

    pod_id = pod["id"]
    gpus = int(pod.get("gpuCount") or 1)
    bid = None
    if pod.get("podType") in SPOT_TYPES:
        # The bid that was just outbid will not do: at least the current minimum to resume.
        bid = max((pod.get("costPerHr") or 0) / gpus, pod.get("lowestBidPriceToResume") or 0)
    await cloud.start_instance(pod_id, bid=bid)
    try:
        await cloud.wait_running(pod_id)
        await RunPodProvider(pod_id).resolve(fresh=True)
    except ProviderError:
        try:
            await cloud.stop_instance(pod_id)
        except ProviderError:
            pass
        raise
    spec_path = Path(session.session_dir) / "spec.json"
    spec = read_spec(session)  # a garbage one: one line, not a traceback
    spec["resume_from"] = NEWEST_CHECKPOINT if session.checkpoint_dir else None
    atomic_write_text(spec_path, json.dumps(spec, indent=2))
    _note(session, f"pod {pod_id} was interrupted; resuming on pod {pod_id} from "
                   + ("the newest checkpoint on its volume" if session.checkpoint_dir
                      else "scratch (no checkpoint dir)"))
    _forget_pod(session)  # seen again (new uptime) at the next refresh
    _update_last(session, resumed_on=pod_id, resumed_from=spec["resume_from"])
    detail = f"{reason}; resumed on pod {pod_id}"
    service.store.update(session.id, status=Status.PENDING, ended=None, detail=detail)
    session.status, session.detail = Status.PENDING, detail
    await service._start_runner(session)
    return await _reasons_now(service, service.store.get(session.id))


def _note(session: Session, text: str) -> None:
    with open(Path(session.session_dir) / "train.log", "ab") as log:
        log.write(f"\n[trainctl] {text}\n".encode())


# -- 2. a new pod like the old one -------------------------------------------------------------

def recipe(old: dict, settings, record_cloud_type: str | None = None
           ) -> tuple[dict, bool, float | None]:
    """(create spec, spot, old bid per GPU) for a pod like `old` (a pod as the API shows it)."""
    from .provider import MANAGED_ENV, pod_env, public_key

    machine = old.get("machine") or {}
    gpu = machine.get("gpuTypeId") or settings.gpu_type
    if not gpu:
        raise TrainctlError(f"runpod: the GPU type of pod {old.get('id')} is unknown "
                            "(set [runpod] gpu_type)")
    count = int(old.get("gpuCount") or settings.gpu_count)
    secure = machine.get("secureCloud")
    cloud_type = "SECURE" if secure is True else "COMMUNITY" if secure is False else \
        (record_cloud_type or settings.cloud_type)
    env = pod_env(old)
    env[MANAGED_ENV] = "1"
    key = public_key(settings.identity_file)
    if key:
        env["PUBLIC_KEY"] = key
    spot = old.get("podType") in SPOT_TYPES
    old_bid = (float(old.get("costPerHr") or 0) / count) if spot else None
    spec = {
        "name": old.get("name") or f"trainctl-{int(time.time())}",
        "image": old.get("imageName") or settings.image, "gpu": gpu, "count": count,
        "env": env, "cloud_type": cloud_type,
        "volume_gb": int(old["volumeInGb"]) if old.get("volumeInGb") is not None
        else settings.volume_gb,
        "container_disk_gb": int(old["containerDiskInGb"]) if old.get("containerDiskInGb")
        else settings.container_disk_gb,
        "network_volume_id": old.get("networkVolumeId") or settings.network_volume_id,
    }
    return spec, spot, old_bid


def _checkpoint_on_volume(session: Session, spec: dict) -> bool:
    if not spec.get("network_volume_id") or not session.checkpoint_dir:
        return False
    path = posixpath.normpath(posixpath.join(session.cwd or ".", session.checkpoint_dir))
    mount = VOLUME_MOUNT.rstrip("/")
    return path == mount or path.startswith(mount + "/")


def home_dirs(session: Session) -> list[Path]:
    """Where checkpoints of the session may be at home: the background copies, and where
    `trainctl pull ID` puts them by default (./<name>-<id>, from here)."""
    return [Path(session.session_dir) / HOME_COPIES,
            Path.cwd() / f"{session.name}-{session.id}"]


def newest_home_checkpoint(session: Session):
    """The newest sound checkpoint at home (a catalog row), or None."""
    from ...checkpoints.catalog import list_checkpoints, newest_usable

    best = None
    for folder in home_dirs(session):
        if not folder.is_dir():
            continue
        try:
            _, rows = list_checkpoints(str(folder), settle_seconds=0)
        except (TrainctlError, OSError):
            continue
        row = newest_usable(rows)
        if row is not None and (best is None or (row.step or -1, row.entry.mtime) >
                                (best.step or -1, best.entry.mtime)):
            best = row
    return best


def _checkpoint_source(session: Session, spec: dict, pod_id: str):
    """("newest", None) | ("upload", local path) | ("scratch", None); NoCheckpoint."""
    if not session.checkpoint_dir:
        return "scratch", None
    if _checkpoint_on_volume(session, spec):
        return "newest", None
    row = newest_home_checkpoint(session)
    if row is not None:
        return "upload", Path(row.entry.path)
    raise NoCheckpoint(
        f"no checkpoint survived pod {pod_id} (no network volume under {VOLUME_MOUNT}, none "
        f"at home in {home_dirs(session)[0]}); nothing was created: start over with "
        f"trainctl resume {session.id} --scratch")


async def resume_on_new_pod(service, session: Session, *, scratch: bool = False) -> str:
    """`trainctl resume` of an interrupted session whose pod is gone: a pod like the last
    one, resumed from the checkpoint that survived (or from scratch when asked)."""
    record = pod_record(session)
    if record is None:
        raise TrainctlError(f"session {session.id}: trainctl does not know what pod "
                            f"{_pod_id(session)} was; launch the run again")
    old = record["pod"]
    return await recreate(service, session, _cloud(service), old,
                          f"resumed by hand after pod {old['id']} was interrupted",
                          scratch=scratch)


async def recreate(service, session: Session, cloud, old: dict, reason: str, *,
                   scratch: bool = False, naming: str | None = None) -> str:
    """A new pod like `old`, the checkpoint to resume from put there, the session moved to
    it and its runner started. Returns the new pod's id. Raises NoCheckpoint before creating
    anything when no checkpoint survived; a pod created here that cannot be used is
    terminated before the error is raised. `naming`: the recovery process, in the detail
    while the pod is created."""
    from ...app.service import atomic_write_text, read_spec
    from .provider import RunPodProvider

    record = pod_record(session)
    spec, spot, old_bid = recipe(old, cloud.settings,
                                 (record or {}).get("cloud_type"))
    source, local = ("scratch", None) if scratch else \
        _checkpoint_source(session, spec, old["id"])
    bid = None
    if spot:
        bid = max(old_bid or 0.0, await cloud.minimum_bid(spec["gpu"], spec["count"]))
    folder = Path(session.session_dir)
    old_id = old["id"]
    service.store.update(session.id, detail=f"{reason}; creating a pod like {old_id}"
                         + (f" {naming}" if naming else ""))
    instance = await cloud.create_pod(spec, spot=spot, bid=bid)
    new_id = instance.id
    moved = False
    try:
        provider = RunPodProvider(new_id)
        await provider.resolve(fresh=True)
        from ..ssh.provider import remote_path

        remote_dir = remote_path(provider.workdir, "sessions", session.id)
        if source == "upload":
            target = posixpath.join(session.cwd or ".", session.checkpoint_dir)
            await upload_checkpoint(provider.transport, provider.python, local, target)
            resume_from = posixpath.join(session.checkpoint_dir, local.name)
            whence = resume_from
        elif source == "newest":
            from ...app.service import NEWEST_CHECKPOINT

            resume_from = NEWEST_CHECKPOINT
            whence = f"the newest checkpoint on network volume {spec['network_volume_id']}"
        else:
            resume_from, whence = None, "scratch"
        await _seed_status(provider, session, remote_dir, reason)
        spec_path = folder / "spec.json"
        run_spec = read_spec(session)
        run_spec["resume_from"] = resume_from
        run_spec["resume_skipped"] = []  # not a `trainctl resume`'s: nothing it passed over
        atomic_write_text(spec_path, json.dumps(run_spec, indent=2))
        (folder / "remote.json").unlink(missing_ok=True)
        atomic_write_text(folder / "remote.offset", "0")  # the new pod's train.log is new
        _note(session, f"pod {old_id} was interrupted; resuming on pod {new_id} from {whence}")
        _forget_pod(session)
        _update_last(session, resumed_on=new_id, resumed_from=resume_from, bid=bid)
        detail = f"{reason}; resumed on new pod {new_id}"
        service.store.update(session.id, provider=f"runpod:{new_id}", host=new_id,
                             status=Status.PENDING, ended=None, detail=detail)
        session.provider, session.host = f"runpod:{new_id}", new_id
        session.status, session.detail, session.ended = Status.PENDING, detail, None
        moved = True
        await service._start_runner(session)
    except BaseException as exc:
        await _drop(cloud, new_id, exc)
        if moved:  # back to the pod that was interrupted: the new one is gone again
            service.store.update(session.id, provider=f"runpod:{old_id}", host=old_id)
            session.provider, session.host = f"runpod:{old_id}", old_id
            _note(session, f"resuming on pod {new_id} failed: {exc}")
        raise
    return new_id


async def _drop(cloud, pod_id: str, exc: BaseException) -> None:
    """Terminate a pod created for a resume that failed; the error names what happened."""
    from .provider import _terminate_doc

    try:
        await cloud.api.graphql(f"terminating pod {pod_id}", _terminate_doc(pod_id))
    except ProviderError as failed:
        if isinstance(exc, TrainctlError):
            exc.args = (f"{exc}; terminating the new pod {pod_id} failed too ({failed}): "
                        f"trainctl instance terminate {pod_id}",)
        return
    if isinstance(exc, TrainctlError):
        exc.args = (f"{exc}; the new pod {pod_id} was terminated",)


async def _seed_status(provider, session: Session, remote_dir: str, reason: str) -> None:
    """A fresh pod has no status.json: give the new runner the attempts so far (the last one
    ended by the interruption), so it numbers the next attempt after them."""
    if await provider.transport.size(f"{remote_dir}/status.json") is not None:
        return  # on a network volume: the old runner's status is there
    attempts = [a.as_dict() for a in session.attempts]
    end = session.heartbeat or time.time()
    if attempts:
        last = attempts[-1]
        last["ended"] = last.get("ended") or end
        last["reason"] = reason
    status = {
        "version": 1, "session_id": session.id, "state": "interrupted", "runner_pid": None,
        "runner_start": None, "child_pid": None, "child_start": None, "heartbeat": end,
        "attempt": len(attempts), "max_restarts": session.max_restarts, "exit_code": None,
        "signal": None, "reason": reason, "stop_requested": False, "next_restart_at": None,
        "checkpoint": None, "started": attempts[0]["started"] if attempts else end,
        "ended": end, "attempts": attempts,
    }
    await provider.transport.run(["mkdir", "-p", remote_dir])
    await provider.transport.put(json.dumps(status).encode(), f"{remote_dir}/status.json",
                                 mode=0o644)


# -- uploads -----------------------------------------------------------------------------------

async def upload_checkpoint(transport, python: str, local: Path, remote_dir: str,
                            progress=None) -> int:
    """Put a checkpoint file or folder into `remote_dir` on the host under its own name.
    Resumable: bytes go to a hidden .trainctl-upload-NAME first, appended from what is there
    already; each file is checked by size and SHA-256 before the whole is renamed into place.
    Returns the bytes sent."""
    from ..remote.transport import remote_path_word

    name = local.name
    final = f"{remote_dir.rstrip('/')}/{name}"
    staging = f"{remote_dir.rstrip('/')}/{UPLOAD_PREFIX}{name}"
    if local.is_dir():
        files = [(path, f"{staging}/{path.relative_to(local).as_posix()}")
                 for path in sorted(local.rglob("*")) if path.is_file()]
    else:
        files = [(local, staging)]
    total = sum(path.stat().st_size for path, _ in files)
    sent = 0
    for path, remote in files:
        sent += await _upload_file(transport, python, path, remote)
        if progress:
            progress(sent, total)
    await transport.run(f"set -e; s={remote_path_word(staging)}; f={remote_path_word(final)}; "
                        'rm -rf -- "$f"; mv -f -- "$s" "$f"')
    return total


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def _upload_file(transport, python: str, local: Path, remote: str) -> int:
    from ..remote.transport import SSHError, _reap, _spawn, remote_command, remote_path_word

    size = local.stat().st_size
    have = await transport.size(remote)
    start = have if have is not None and have <= size else 0
    if start < size:
        script = (f"set -e; umask 077; p={remote_path_word(remote)}; "
                  'mkdir -p -- "$(dirname -- "$p")"; '
                  + ('cat >> "$p"' if start else 'cat > "$p"'))
        fd = os.open(local, os.O_RDONLY)
        try:
            os.lseek(fd, start, os.SEEK_SET)
            proc = await _spawn(transport.argv(remote_command(script)), stdin=fd)
        finally:
            os.close(fd)
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(),
                                               60 + (size - start) / UPLOAD_RATE_FLOOR)
        except asyncio.TimeoutError:
            stderr = b"timed out"
        finally:
            await _reap(proc)
        if proc.returncode != 0:
            line = stderr.decode(errors="replace").strip().splitlines()
            raise SSHError(f"ssh {transport.name}: upload of {local.name} stopped "
                           f"({line[-1] if line else proc.returncode}); it resumes next time")
    got = await transport.size(remote)
    if got != size:
        raise SSHError(f"ssh {transport.name}: upload of {local.name} has {got} of {size} "
                       "bytes there; it resumes next time")
    result = await transport.run([python, "-c", HASH_SCRIPT, remote], timeout=600)
    if result.stdout.decode().strip() != await asyncio.to_thread(_sha256, local):
        await transport.run(["rm", "-f", "--", remote], check=False)
        raise SSHError(f"ssh {transport.name}: upload of {local.name} arrived different "
                       "(SHA-256 mismatch); it starts over next time")
    return size


# -- while the pod runs ------------------------------------------------------------------------

# session id -> the thread copying its newest checkpoint home. A thread with its own event
# loop, not a task: a CLI's event loop ends (and would cancel a task) long before a big
# download does; a daemon thread just stops with the process and the next refresh resumes
# the download from its .part file.
_COPIES: dict[str, threading.Thread] = {}


async def _watch_pod(service, session: Session) -> None:
    """Remember the pod (once per pod) and, with pull_checkpoints, copy a new newest
    checkpoint of a spot pod home in the background. Never raises."""
    try:
        settings = service.config.runpod
        pod_id = _pod_id(session)
        record = pod_record(session)
        if record is None or record["pod"].get("id") != pod_id:
            pod = await _cloud(service)._pod(pod_id)
            if pod is None or pod.get("desiredStatus") != "RUNNING":
                return
            _remember_pod(session, pod, settings)
            record = pod_record(session)
        if not (settings.pull_checkpoints and session.checkpoint_dir and record
                and record["pod"].get("podType") in SPOT_TYPES):
            return
        spec, _, _ = recipe(record["pod"], settings, record.get("cloud_type"))
        if _checkpoint_on_volume(session, spec):
            return
        running = _COPIES.get(session.id)
        if running is not None and running.is_alive():
            return
        from ..base import get_provider

        newest = await get_provider(session.provider).newest_checkpoint(session)
        home = Path(session.session_dir) / HOME_COPIES
        if newest is None or (home / newest.name).exists():
            return
        thread = threading.Thread(
            target=lambda: asyncio.run(copy_home(pod_id, newest.path, home)),
            name=f"trainctl-home-copy-{session.id}", daemon=True)
        _COPIES[session.id] = thread
        thread.start()
    except (TrainctlError, OSError, ValueError, KeyError):
        pass  # housekeeping: it must never break a refresh


async def copy_home(pod_id: str, remote: str, home: Path) -> Path | None:
    """Download one checkpoint of the pod into `home` (resumable; a folder arrives under
    NAME.part and is renamed when complete), then keep only the newest HOME_KEEP there."""
    from .provider import RunPodProvider

    name = remote.rstrip("/").rsplit("/", 1)[-1]
    try:
        provider = RunPodProvider(pod_id)
        await provider.resolve()
        home.mkdir(parents=True, exist_ok=True)
        is_dir = (await provider.transport.run(["test", "-d", remote], check=False)
                  ).returncode == 0
        target = home / name
        if is_dir:
            partial = home / f"{name}.part"
            await provider.download(remote, partial, kind="dir")
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        else:
            await provider.download(remote, target, kind="file")
        _prune_home(home)
        return target
    except (TrainctlError, OSError):
        return None  # the next refresh tries again, from where this stopped


def _prune_home(home: Path) -> None:
    """Keep the newest HOME_KEEP copies, and the newest sound one (what a resume takes) even
    when newer copies are not sound."""
    from ...checkpoints.catalog import list_checkpoints, newest_usable
    from ...checkpoints.scan import order_key

    _, rows = list_checkpoints(str(home), settle_seconds=0)
    entries = sorted((r.entry for r in rows if not r.entry.writing), key=order_key)
    sound = newest_usable(rows)
    for entry in entries[:-HOME_KEEP]:
        if sound is not None and entry.path == sound.entry.path:
            continue
        if entry.kind == "dir":
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)


async def home_copies_done(session_id: str | None = None) -> None:
    """Wait for the background home copies (of one session) to finish (tests, shutdown)."""
    for sid, thread in list(_COPIES.items()):
        if session_id in (None, sid):
            await asyncio.to_thread(thread.join)
