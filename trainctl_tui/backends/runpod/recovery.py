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

This is RunPodProvider's capability "replaces an interrupted machine" (backends/replacing.py):
it answers whether a pod was taken and makes the replacement; the app records the
interruption, runs the detached `trainctl _recover` and moves the session (app/replace.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import posixpath
import shutil
import threading
import time
from pathlib import Path

from ...core import interruptions as records
from ...core.atomic import atomic_write_json
from ...core.errors import TrainctlError
from ...core.models import Session, Status
from ...core.placement import machine_of
from ...core.spec import NEWEST_CHECKPOINT
from ..base import ProviderError
from ..replacing import Interruption, ReplaceFailed, Replacement

STALE_SECONDS = 30.0  # a heartbeat older than this (and a gone pod) means an interruption
GONE = ("EXITED", "TERMINATED", "DEAD")
SPOT_TYPES = ("INTERRUPTABLE", "BID")
VOLUME_MOUNT = "/workspace"  # where RunPod mounts a pod's (network) volume
POD_RECORD = "runpod_pod.json"  # the session's pod as last seen running (to recreate it)
HOME_COPIES = "checkpoints-home"  # in the session folder
HOME_KEEP = 2  # newest home copies kept
UPLOAD_PREFIX = ".trainctl-upload-"  # hidden: the runner never takes it for a checkpoint
UPLOAD_RATE_FLOOR = 1 << 20  # bytes/s below which an upload is given up (resumed next time)
log = logging.getLogger("trainctl.recovery")  # the recover process writes it to recover.log
HASH_SCRIPT = ("import hashlib,sys\nh=hashlib.sha256()\nf=open(sys.argv[1],'rb')\n"
               "for b in iter(lambda:f.read(1<<20),b''):h.update(b)\nprint(h.hexdigest())")


class NoCheckpoint(TrainctlError):
    """No checkpoint survived the interruption: nothing is created."""


# -- the session's records -------------------------------------------------------------------

def interruptions(session: Session) -> list[dict]:
    """The session's interruption record (core/interruptions.py); RunPod's entries also name
    the pod ("pod"), its state and, once resumed, where ("resumed_on", "resumed_from")."""
    return records.load(session.session_dir)


def pod_record(session: Session) -> dict | None:
    """{"pod": the pod as the API showed it, "seen_at": when, "cloud_type": config's}."""
    try:
        record = json.loads((Path(session.session_dir) / POD_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pod"), dict) else None


def _remember_pod(session: Session, pod: dict, settings) -> None:
    """0600: the pod's env may hold what the user put there."""
    atomic_write_json(Path(session.session_dir) / POD_RECORD,
                      {"pod": pod, "seen_at": time.time(), "cloud_type": settings.cloud_type},
                      mode=0o600)


def _forget_pod(session: Session) -> None:
    (Path(session.session_dir) / POD_RECORD).unlink(missing_ok=True)


def _cloud():
    from .cloud import RunPodCloud

    return RunPodCloud()


# -- noticing an interruption ------------------------------------------------------------------

async def interruption(session: Session, entries: list[dict]) -> Interruption | None:
    """The session is unreachable or lost: is its pod gone too (and the heartbeat stale)? Then
    it was interrupted: the entry to record, and auto-resume when `[runpod]` allows."""
    cloud = _cloud()
    pod_id = machine_of(session)
    try:
        pod = await cloud.find_pod(pod_id)
    except ProviderError:
        return None  # RunPod did not answer either: nothing to conclude yet
    state = (pod or {}).get("desiredStatus") or "TERMINATED"
    beat = session.heartbeat
    if state not in GONE or (beat is not None and time.time() - beat < STALE_SECONDS):
        return None
    record = _pod_record_of(session, pod_id)
    known = pod or (record or {}).get("pod")
    spot = (known or {}).get("podType") in SPOT_TYPES
    why = f" ({pod['lastStatusChange']})" if pod and pod.get("lastStatusChange") else ""
    cost = _cost_so_far(record, beat)
    reason = (f"{'spot interruption' if spot else 'interrupted'}: pod {pod_id} went "
              f"{state.lower()}{why} while training"
              + (f"; cost so far ${cost:.2f}" if cost is not None else ""))
    entry = {"attempt": session.attempt or 1, "at": time.time(), "machine": pod_id,
             "pod": pod_id, "state": state, "spot": spot, "cost": cost, "reason": reason}
    changes = {"status": Status.INTERRUPTED, "ended": beat or time.time()}
    settings = cloud.settings
    if not settings.auto_resume:
        return Interruption(entry=entry, detail=reason, changes=changes)
    if len(entries) >= settings.max_resumes:
        return Interruption(entry=entry, changes=changes, detail=(
            f"{reason}; not resumed (max_resumes {settings.max_resumes} reached; "
            f"trainctl resume {session.id} once pod {pod_id} or a new one runs)"))
    doing = (f"resuming: bidding again for pod {pod_id}" if pod is not None and
             state != "TERMINATED" else f"resuming on a new pod like {pod_id}")
    return Interruption(entry=entry, detail=reason, changes=changes, resume=doing)


def _pod_record_of(session: Session, pod_id: str) -> dict | None:
    """The session's pod record when it is of `pod_id`."""
    record = pod_record(session)
    return record if record and record["pod"].get("id") == pod_id else None


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


# -- replacing the pod -------------------------------------------------------------------------

async def replace(runner, session: Session, entry: dict | None, *, reason: str, by_hand: bool,
                  scratch: bool, from_checkpoint: str | None, progress) -> Replacement:
    """Auto-resume: the same pod bids again, else a pod like it is created. By hand (the pod
    is gone): a pod like the last one, from the checkpoint that survived or from scratch. The
    pod is asked for again: the bid to beat, and whether it is still there, are today's."""
    cloud = _cloud()
    pod_id = machine_of(session)
    if by_hand:
        if from_checkpoint:
            raise TrainctlError("a pod that is gone resumes from the checkpoint that survived "
                                "(network volume or pulled home); --from is not supported here")
        record = pod_record(session)
        if record is None:
            raise TrainctlError(f"session {session.id}: trainctl does not know what pod "
                                f"{pod_id} was; launch the run again")
        old = record["pod"]
        return await recreate(runner, session, cloud, old, f"resumed by hand after pod {old['id']} "
                              "was interrupted", scratch=scratch, progress=progress)
    try:
        pod = await cloud.find_pod(pod_id)
    except ProviderError as exc:
        raise ReplaceFailed(f"{reason}; RunPod did not answer ({exc}) (trainctl resume "
                            f"{session.id} once a pod runs)") from None
    state = (pod or {}).get("desiredStatus") or "TERMINATED"
    known = pod or (_pod_record_of(session, pod_id) or {}).get("pod")
    failed: list[str] = []
    if pod is not None and state != "TERMINATED":
        try:
            log.info("bidding again for pod %s", pod_id)
            return await _bid_again(runner, session, cloud, pod, reason)
        except ProviderError as exc:
            failed.append(f"bidding again for pod {pod_id} failed: {exc}")
            log.info(failed[-1])
    spot = (entry or {}).get("spot")
    from .cloud import terminated_by_user

    if known is None:
        why = f"pod {pod_id} is gone and trainctl has no record of it to recreate"
    elif not spot:
        why = f"pod {pod_id} is an on-demand pod: it is not recreated"
    elif terminated_by_user(pod_id):
        why = f"pod {pod_id} was terminated with trainctl instance terminate"
    else:
        try:
            log.info("creating a pod like %s", pod_id)
            return await recreate(runner, session, cloud, known, reason, progress=progress)
        except NoCheckpoint as exc:
            raise ReplaceFailed(f"{reason}; " + "; ".join(failed + [str(exc)])) from None
        except TrainctlError as exc:
            why = f"recreating pod {pod_id} failed: {exc}"
    raise ReplaceFailed(f"{reason}; " + "; ".join(failed + [why]) +
                        f" (trainctl resume {session.id} once a pod runs)")


async def _bid_again(runner, session: Session, cloud, pod: dict, reason: str) -> Replacement:
    """Bid again for the same pod (its volume keeps the checkpoints) and wait for it; the run
    resumes there from the newest checkpoint. A pod that took the bid but never ran is
    stopped again."""
    pod_id = pod["id"]
    gpus = int(pod.get("gpuCount") or 1)
    bid = None
    if pod.get("podType") in SPOT_TYPES:
        # The bid that was just outbid will not do: at least the current minimum to resume.
        bid = max((pod.get("costPerHr") or 0) / gpus, pod.get("lowestBidPriceToResume") or 0)
    await cloud.start_instance(pod_id, bid=bid)
    try:
        await cloud.wait_running(pod_id)
        await runner.on_pod(pod_id).resolve(fresh=True)
    except ProviderError:
        try:
            await cloud.stop_instance(pod_id)
        except ProviderError:
            pass
        raise
    resume_from = NEWEST_CHECKPOINT if session.checkpoint_dir else None
    _forget_pod(session)  # seen again (new uptime) at the next refresh
    return Replacement(
        provider=session.provider, host=pod_id, label=f"pod {pod_id}", resume_from=resume_from,
        new_machine=False, entry_update={"resumed_on": pod_id, "resumed_from": resume_from},
        note=(f"pod {pod_id} was interrupted; resuming on pod {pod_id} from "
              + ("the newest checkpoint on its volume" if session.checkpoint_dir
                 else "scratch (no checkpoint dir)")),
        detail=f"{reason}; resumed on pod {pod_id}")


# -- 2. a new pod like the old one -------------------------------------------------------------

def recipe(old: dict, settings, record_cloud_type: str | None = None
           ) -> tuple[dict, bool, float | None]:
    """(create spec, spot, old bid per GPU) for a pod like `old` (a pod as the API shows it)."""
    from .cloud import MANAGED_ENV, pod_env, public_key

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


async def recreate(runner, session: Session, cloud, old: dict, reason: str, *,
                   scratch: bool = False,
                   progress=None) -> Replacement:
    """A new pod like `old`, with the checkpoint to resume from put there. Raises NoCheckpoint
    before creating anything when no checkpoint survived; a pod created here that cannot be
    used is terminated before the error is raised, and so it is (Replacement.discard) when the
    run cannot start there."""
    from ..remote.runner import remote_path
    record = pod_record(session)
    spec, spot, old_bid = recipe(old, cloud.settings, (record or {}).get("cloud_type"))
    source, local = ("scratch", None) if scratch else \
        _checkpoint_source(session, spec, old["id"])
    bid = None
    if spot:
        bid = max(old_bid or 0.0, await cloud.minimum_bid(spec["gpu"], spec["count"]))
    old_id = old["id"]
    if progress:
        progress(f"{reason}; creating a pod like {old_id}")
    instance = await cloud.create_pod(spec, spot=spot, bid=bid)
    new_id = instance.id
    try:
        provider = runner.on_pod(new_id)
        await provider.resolve(fresh=True)
        remote_dir = remote_path(provider.workdir, "sessions", session.id)
        if source == "upload":
            target = posixpath.join(session.cwd or ".", session.checkpoint_dir)
            await upload_checkpoint(provider.transport, provider.python, local, target)
            resume_from = posixpath.join(session.checkpoint_dir, local.name)
            whence = resume_from
        elif source == "newest":
            resume_from = NEWEST_CHECKPOINT
            whence = f"the newest checkpoint on network volume {spec['network_volume_id']}"
        else:
            resume_from, whence = None, "scratch"
        await _seed_status(provider, session, remote_dir, reason)
    except BaseException as exc:
        await _drop(cloud, new_id, exc)
        raise
    _forget_pod(session)

    async def discard(exc: BaseException) -> None:
        await _drop(cloud, new_id, exc)

    return Replacement(
        provider=f"runpod:{new_id}", host=new_id, label=f"pod {new_id}",
        resume_from=resume_from, resume_skipped=[],  # not a `trainctl resume`'s: none passed over
        note=f"pod {old_id} was interrupted; resuming on pod {new_id} from {whence}",
        detail=f"{reason}; resumed on new pod {new_id}", discard=discard,
        entry_update={"resumed_on": new_id, "resumed_from": resume_from, "bid": bid})


async def _drop(cloud, pod_id: str, exc: BaseException) -> None:
    """Terminate a pod created for a resume that failed; the error names what happened."""
    from .cloud import terminate_doc

    try:
        await cloud.api.graphql(f"terminating pod {pod_id}", terminate_doc(pod_id))
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
    from ..remote.transport import SSHError, reap, remote_command, remote_path_word, spawn

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
            proc = await spawn(transport.argv(remote_command(script)), stdin=fd)
        finally:
            os.close(fd)
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(),
                                               60 + (size - start) / UPLOAD_RATE_FLOOR)
        except asyncio.TimeoutError:
            stderr = b"timed out"
        finally:
            await reap(proc)
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


async def observe(runner, session: Session) -> None:
    """Remember the pod (once per pod) and, with pull_checkpoints, copy a new newest
    checkpoint of a spot pod home in the background. Never raises."""
    try:
        cloud = _cloud()
        settings = cloud.settings
        pod_id = machine_of(session)
        record = pod_record(session)
        if record is None or record["pod"].get("id") != pod_id:
            pod = await cloud.find_pod(pod_id)
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
        newest = await runner.newest_checkpoint(session)
        home = Path(session.session_dir) / HOME_COPIES
        if newest is None or (home / newest.name).exists():
            return
        thread = threading.Thread(
            target=lambda: asyncio.run(copy_home(runner, newest.path, home)),
            name=f"trainctl-home-copy-{session.id}", daemon=True)
        _COPIES[session.id] = thread
        thread.start()
    except (TrainctlError, OSError, ValueError, KeyError):
        pass  # housekeeping: it must never break a refresh


async def copy_home(runner, remote: str, home: Path) -> Path | None:
    """Download one checkpoint of `runner`'s pod into `home` (resumable; a folder arrives under
    NAME.part and is renamed when complete), then keep only the newest HOME_KEEP there."""
    name = remote.rstrip("/").rsplit("/", 1)[-1]
    try:
        provider = runner.on_pod(runner.pod_id)  # its own: this runs on another event loop
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
