"""A spot pod that is reclaimed (gone) or cannot bid again is recreated and the run resumed
there, through the real code path: the local GraphQL server keeps the pods and records what
each create asked for, every "pod" maps 22/tcp to the test sshd. A reclaimed pod's disk is
gone too: the tests delete the remote workdir and checkpoint dir, so whatever the new pod
resumes from really travelled there."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from child_patches import patch_everywhere
from gates import wait_recovery_done
from runpod_server import GPU_TYPES, NO_INSTANCES, runpod_server  # noqa: F401 - the fixture
from sshd import sshd_server  # noqa: F401 - the fixture
from test_cli import DEMO, wait_for

from trainctl_tui.app import recovery
from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.backends.runpod import cloud as rp
from trainctl_tui.backends.runpod import provider as pod_sessions
from trainctl_tui.backends.runpod import recovery as rr
from trainctl_tui.core.machines import CreateRequest
from trainctl_tui.core.models import Status


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def pods(sshd_server, runpod_server, tmp_path, monkeypatch, trainctl_home):  # noqa: F811
    """write(extra config lines) -> (server, remote workdir)."""
    workdir = tmp_path / "pod workspace"
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    # Also in the detached `trainctl _recover` that auto-resume starts.
    patch_everywhere(monkeypatch, rp, "POLL_SECONDS", 0.01)
    patch_everywhere(monkeypatch, rr, "STALE_SECONDS", 0.0)
    monkeypatch.setattr(pod_sessions, "_TARGETS", {})
    runpod_server.state.ssh_port = sshd_server.port

    def write(extra: str = ""):
        (tmp_path / "config.toml").write_text(
            f'[runpod]\nssh_user = "{sshd_server.user}"\n'
            f"identity_file = {json.dumps(str(sshd_server.user_key))}\n"
            f'python = "/usr/bin/python3"\nworkdir = {json.dumps(str(workdir))}\n'
            "auto_resume = true\n" + extra)
        return runpod_server, workdir

    yield write
    for thread in rr._COPIES.values():  # background home copies end with their test
        thread.join(timeout=60)
    rr._COPIES.clear()
    # The "pods" are this machine: end whatever training a test left running there.
    for status in workdir.glob("sessions/*/status.json"):
        try:
            pids = json.loads(status.read_text())
        except (OSError, ValueError):
            continue
        for pid in (pids.get("runner_pid"), pids.get("child_pid")):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass


def interrupted_for_good(session_id: str):
    """The session once it is interrupted and no auto-resume of it runs any more. No
    recovery may run before or after the read: one that ended between a read and the check
    would leave the read's in-progress detail ("... (recover pid N, ...)"), and the read's
    own refresh may start one."""
    folder = session_of(session_id).session_dir
    if recovery.running(folder) is not None:
        return None
    session = session_of(session_id)
    if session.status is Status.INTERRUPTED and recovery.running(folder) is None \
            and "(recover pid " not in (session.detail or ""):
        return session
    return None


def session_of(session_id: str):
    service = Service()
    try:
        return run(service.get(session_id))
    finally:
        service.close()


def create_pod(**request):
    return run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod", **request)))


def launch(pod_id: str, *args: str, **options):
    service = Service()
    try:
        return run(service.launch(LaunchRequest(
            command=[sys.executable, "-u", DEMO, "--steps", "100000", "--step-time", "0.02",
                     "--keep", "1000", *args], provider=f"runpod:{pod_id}", **options)))
    finally:
        service.close()


def machine_dies(workdir, session_id: str, *, disk_too: list | None = None) -> None:
    """The machine goes away: runner and training die with it (and, for a reclaimed pod,
    its disk: the remote workdir and the given folders)."""
    status = json.loads((workdir / "sessions" / session_id / "status.json").read_text())
    for pid in (status["runner_pid"], status["child_pid"]):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass
    if disk_too is not None:
        wait_for(lambda: not any(_alive(pid) for pid in (status["runner_pid"],
                                                          status["child_pid"])), timeout=10)
        for folder in [workdir, *disk_too]:
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, TypeError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def stop(session_id: str) -> None:
    service = Service()
    try:
        run(service.stop(session_id, force=True))
    finally:
        service.close()


def creates(server) -> list[str]:
    return [r["query"] for r in server.state.requests if "podRentInterruptable" in r["query"]]


def keep_home_copies(session_id: str, home, min_step: int) -> None:
    """Refresh like the TUI does (one long-lived loop) until the background copy of a
    checkpoint at or past min_step has arrived at home."""
    async def loop():
        service = Service()
        try:
            for _ in range(600):
                await service.get(session_id)
                if home.is_dir() and any(int(p.stem.split("_")[1]) >= min_step
                                         for p in home.glob("step_*.safetensors")):
                    await rr.home_copies_done(session_id)
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("no checkpoint was copied home")
        finally:
            service.close()

    run(loop())


def test_a_reclaimed_spot_pod_is_recreated_and_resumed_from_the_checkpoint_kept_home(
        pods, trainctl_home, tmp_path):
    server, workdir = pods('cloud_type = "COMMUNITY"\nimage = "example/trainer:1"\n'
                           "volume_gb = 7\ncontainer_disk_gb = 9\nmax_resumes = 1\n"
                           "pull_checkpoints = true\n")
    pod = create_pod(type="NVIDIA A40", gpu_count=2, spot=True, max_price=0.25)
    ckpt = tmp_path / "pod ckpt"
    session = launch(pod.id, "--ckpt-every", "10", checkpoint_dir=str(ckpt),
                     resume_template="--resume {checkpoint}",
                     env={"WANDB_API_KEY": "s3cret-value"})
    folder = trainctl_home / "sessions" / session.id
    home = folder / rr.HOME_COPIES
    keep_home_copies(session.id, home, min_step=20)
    kept = sorted(home.glob("step_*.safetensors"))
    assert 1 <= len(kept) <= rr.HOME_KEEP and not list(home.glob("*.part"))
    newest = kept[-1]
    assert newest.read_bytes() == (ckpt / newest.name).read_bytes()
    old_input = dict(server.state.pods[pod.id]["input"])

    machine_dies(workdir, session.id, disk_too=[ckpt])
    server.state.reclaim(pod.id)
    resumed = wait_for(lambda: (s := session_of(session.id)).attempt == 2 and
                       s.attempts[1].resumed_from and s, timeout=90)
    wait_recovery_done(folder)

    # A new pod, created exactly like the old one (GPU, count, cloud, image, disks, env, bid).
    new_id = resumed.host
    assert new_id != pod.id and resumed.provider == f"runpod:{new_id}"
    assert len(creates(server)) == 2 and server.state.count("podBidResume") == 0
    new_input = server.state.pods[new_id]["input"]
    assert new_input == old_input
    assert new_input["bidPerGpu"] == 0.25 and new_input["gpuCount"] == 2
    assert new_input["cloudType"] == "COMMUNITY" and new_input["imageName"] == "example/trainer:1"
    assert (new_input["volumeInGb"], new_input["containerDiskInGb"]) == (7, 9)
    assert "s3cret-value" not in json.dumps(new_input)  # secrets travel as at first launch:
    remote = workdir / "sessions" / session.id
    assert json.loads((remote / "secret_env.json").read_text()) == {
        "WANDB_API_KEY": "s3cret-value"}
    assert oct((remote / "secret_env.json").stat().st_mode & 0o777) == "0o600"

    # The checkpoint kept at home was uploaded into the fresh pod's checkpoint dir ...
    uploaded = ckpt / newest.name
    assert uploaded.read_bytes() == newest.read_bytes()
    assert not list(ckpt.glob(f"{rr.UPLOAD_PREFIX}*"))
    # ... and the training resumed from it.
    assert resumed.attempts[1].resumed_from == str(uploaded)
    log = (folder / "train.log").read_text()
    assert (f"[trainctl] pod {pod.id} was interrupted; resuming on pod {new_id} from "
            f"{uploaded}") in log
    wait_for(lambda: f"resumed from {uploaded} at step" in (folder / "train.log").read_text(),
             timeout=30)

    # The interruption is on the attempt and in the record, with what the old pod cost.
    first = resumed.attempts[0]
    assert first.reason.startswith(f"spot interruption: pod {pod.id} went terminated while "
                                   "training; cost so far $")
    entry = rr.interruptions(resumed)[0]
    assert (entry["pod"], entry["resumed_on"], entry["spot"]) == (pod.id, new_id, True)
    assert entry["cost"] is not None and entry["cost"] >= 0

    # max_resumes = 1: the next reclaim is recorded, and nothing else is created.
    wait_for(lambda: (workdir / "sessions" / session.id / "status.json").exists() and
             json.loads((remote / "status.json").read_text()).get("child_pid"), timeout=30)
    machine_dies(workdir, session.id, disk_too=[])
    server.state.reclaim(new_id)
    ended = wait_for(lambda: interrupted_for_good(session.id), timeout=120)
    assert "not resumed (max_resumes 1 reached" in ended.detail
    assert ended.detail.startswith(f"spot interruption: pod {new_id} went terminated")
    assert len(creates(server)) == 2
    assert [e["pod"] for e in rr.interruptions(ended)] == [pod.id, new_id]


def test_a_pod_that_cannot_bid_again_is_recreated_on_the_network_volume(
        pods, trainctl_home, tmp_path, monkeypatch):
    volume = tmp_path / "volume"
    patch_everywhere(monkeypatch, rr, "VOLUME_MOUNT", str(volume))
    server, workdir = pods('network_volume_id = "vol123"\n')
    pod = create_pod(type="NVIDIA A40", spot=True)  # bids the minimum, 0.2
    ckpt = volume / "ckpt"
    session = launch(pod.id, "--ckpt-every", "10", checkpoint_dir=str(ckpt),
                     resume_template="--resume {checkpoint}")
    wait_for(lambda: session_of(session.id).status is Status.RUNNING and
             len(list(ckpt.glob("step_*.safetensors"))) >= 2, timeout=60)
    assert rr.pod_record(session_of(session.id))["pod"]["id"] == pod.id

    machine_dies(workdir, session.id)
    newest = sorted(ckpt.glob("step_*.safetensors"))[-1]
    monkeypatch.setitem(GPU_TYPES[0], "minimumBidPrice", 0.31)  # the market moved up
    server.state.fail(f"graphql:{NO_INSTANCES}", "podBidResume")
    server.state.interrupt(pod.id)
    resumed = wait_for(lambda: (s := session_of(session.id)).attempt == 2 and
                       s.attempts[1].resumed_from and s, timeout=90)

    new_id = resumed.host
    assert new_id != pod.id and server.state.count("podBidResume") == 1
    new_input = server.state.pods[new_id]["input"]
    assert new_input["networkVolumeId"] == "vol123"
    assert new_input["bidPerGpu"] == 0.31  # the larger of the old bid (0.2) and the minimum
    # The old pod (exited, its volume) is left alone: nothing the user did not ask for.
    assert server.state.pods[pod.id]["desiredStatus"] == "EXITED"
    assert server.state.count("podTerminate") == 0
    # The runner on the new pod picked the newest checkpoint on the volume itself.
    assert resumed.attempts[1].resumed_from == str(newest)
    assert not list(ckpt.glob(f"{rr.UPLOAD_PREFIX}*"))
    assert resumed.attempts[0].reason.startswith(
        f"spot interruption: pod {pod.id} went exited (Exited by host: outbid)")
    log = (trainctl_home / "sessions" / session.id / "train.log").read_text()
    assert (f"resuming on pod {new_id} from the newest checkpoint on network volume "
            "vol123") in log
    stop(session.id)


def test_no_surviving_checkpoint_leaves_the_session_interrupted_and_creates_nothing(
        pods, trainctl_home, tmp_path):
    server, workdir = pods()
    pod = create_pod(type="NVIDIA A40", spot=True)
    ckpt = tmp_path / "pod ckpt"
    session = launch(pod.id, "--ckpt-every", "10", checkpoint_dir=str(ckpt),
                     resume_template="--resume {checkpoint}")
    wait_for(lambda: session_of(session.id).status is Status.RUNNING and
             list(ckpt.glob("step_*.safetensors")), timeout=60)

    machine_dies(workdir, session.id, disk_too=[ckpt])
    server.state.reclaim(pod.id)
    ended = wait_for(lambda: interrupted_for_good(session.id), timeout=120)
    assert f"no checkpoint survived pod {pod.id}" in ended.detail
    assert ended.detail.endswith(f"start over with trainctl resume {session.id} --scratch")
    assert "\n" not in ended.detail
    assert len(creates(server)) == 1 and server.state.count("podTerminate") == 0
    assert ended.provider == f"runpod:{pod.id}"
    assert not ckpt.exists()  # and certainly no training from scratch there

    # What the detail says to do: a pod like the gone one, training from scratch.
    from conftest import run_cli

    result = run_cli("resume", session.id, "--scratch", timeout=120)
    assert result.returncode == 0, result.stderr
    resumed = wait_for(lambda: (s := session_of(session.id)).status is Status.RUNNING
                       and s.provider != f"runpod:{pod.id}" and s, timeout=60)
    new = creates(server)[-1]
    assert len(creates(server)) == 2 and new == creates(server)[0]  # a pod like the old one
    assert resumed.attempts[-1].resumed_from is None
    log = (trainctl_home / "sessions" / session.id / "train.log").read_text()
    assert f"pod {pod.id} was interrupted; resuming on pod {resumed.host} from scratch" in log


def test_a_failed_create_leaves_the_session_interrupted_with_nothing_half_created(
        pods, trainctl_home):
    server, workdir = pods("ready_timeout = 0.5\nmax_resumes = 3\n")
    pod = create_pod(type="NVIDIA A40", spot=True)
    session = launch(pod.id)  # no checkpoint dir: a new pod would start from scratch
    wait_for(lambda: session_of(session.id).status is Status.RUNNING, timeout=60)

    machine_dies(workdir, session.id, disk_too=[])
    server.state.never_running = True  # the new pod never runs: it is terminated again
    server.state.reclaim(pod.id)
    ended = wait_for(lambda: interrupted_for_good(session.id), timeout=120)
    assert len(creates(server)) == 2
    assert "recreating pod" in ended.detail and "was not running with 22/tcp mapped" in \
        ended.detail and "was terminated" in ended.detail
    assert server.state.pods == {}  # nothing half-created is left
    assert ended.provider == f"runpod:{pod.id}"


def test_a_create_refused_for_capacity_says_so(pods, trainctl_home):
    server, workdir = pods()
    pod = create_pod(type="NVIDIA A40", spot=True)
    session = launch(pod.id)
    wait_for(lambda: session_of(session.id).status is Status.RUNNING, timeout=60)

    machine_dies(workdir, session.id, disk_too=[])
    server.state.fail(f"graphql:{NO_INSTANCES}", "podRentInterruptable")
    server.state.reclaim(pod.id)
    ended = wait_for(lambda: interrupted_for_good(session.id), timeout=120)
    assert NO_INSTANCES in ended.detail and "\n" not in ended.detail
    assert ended.detail.endswith(f"(trainctl resume {session.id} once a pod runs)")
    assert server.state.pods == {}


def test_a_pod_terminated_by_the_user_is_not_recreated(pods, trainctl_home):
    server, workdir = pods()
    pod = create_pod(type="NVIDIA A40", spot=True)
    session = launch(pod.id)
    wait_for(lambda: session_of(session.id).status is Status.RUNNING, timeout=60)

    machine_dies(workdir, session.id, disk_too=[])
    run(rp.RunPodCloud().terminate_instance(pod.id))
    ended = wait_for(lambda: interrupted_for_good(session.id), timeout=120)
    assert f"pod {pod.id} was terminated with trainctl instance terminate" in ended.detail
    assert len(creates(server)) == 1


def test_refreshes_return_while_the_new_pod_is_created_and_start_one_recovery(
        pods, trainctl_home, cli):
    server, workdir = pods()
    pod = create_pod(type="NVIDIA A40", spot=True)
    session = launch(pod.id)  # no checkpoint dir: a new pod starts from scratch
    folder = trainctl_home / "sessions" / session.id
    wait_for(lambda: session_of(session.id).status is Status.RUNNING, timeout=60)
    machine_dies(workdir, session.id, disk_too=[])
    create = server.state.hold("podRentInterruptable")
    server.state.reclaim(pod.id)

    # While another trainctl holds the lock (deciding, or resuming), a refresh starts nothing.
    other = recovery.take_lock(folder)
    assert session_of(session.id).status in (Status.LOST, Status.UNREACHABLE)
    assert rr.interruptions(session_of(session.id)) == []
    other.release()

    # Two listings at once (a TUI and a CLI, say): both return while the new pod is still
    # being created, and only one recovery starts.
    patched = {"PYTHONPATH": os.environ["PYTHONPATH"]}  # the CLIs see this test's patches
    with ThreadPoolExecutor(2) as pool:
        listings = list(pool.map(lambda _: cli("sessions", "--json", timeout=120, env=patched),
                                 range(2)))
    assert [r.returncode for r in listings] == [0, 0], [r.stderr for r in listings]
    assert create.arrived.wait(60) and not create.opened.is_set()
    running = recovery.running(folder)
    now = session_of(session.id)
    assert now.status is Status.INTERRUPTED
    reason = rr.interruptions(now)[0]["reason"]
    naming = f"(recover pid {running['pid']}, log {folder / 'recover.log'})"
    assert now.detail == f"{reason}; creating a pod like {pod.id} {naming}"
    rows = [next(r for r in json.loads(x.stdout)["sessions"] if r["id"] == session.id)
            for x in listings]
    # The listing that started it said so at once (or the recovery already said more).
    assert {f"{reason}; resuming on a new pod like {pod.id} {naming}", now.detail} & \
        {r["detail"] for r in rows}

    create.open()
    resumed = wait_for(lambda: (s := session_of(session.id)).status is Status.RUNNING and
                       s.provider != f"runpod:{pod.id}" and s, timeout=120)
    wait_recovery_done(folder)
    new_id = resumed.host
    assert len(creates(server)) == 2  # the first pod, and one replacement
    assert [e["pod"] for e in rr.interruptions(resumed)] == [pod.id]
    log = (folder / "recover.log").read_text()
    assert log.count("resuming (recover pid") == 1
    assert f"resuming (recover pid {running['pid']})" in log
    assert f"creating a pod like {pod.id}" in log and f"resumed on new pod {new_id}" in log
    assert f"session {session.id} is " in log.splitlines()[-1]
    stop(session.id)


def test_a_killed_recovery_frees_its_lock_says_so_and_trainctl_resume_takes_over(
        pods, trainctl_home, cli):
    server, workdir = pods()
    pod = create_pod(type="NVIDIA A40", spot=True)
    session = launch(pod.id)
    folder = trainctl_home / "sessions" / session.id
    wait_for(lambda: session_of(session.id).status is Status.RUNNING, timeout=60)
    machine_dies(workdir, session.id, disk_too=[])
    create = server.state.hold("podRentInterruptable")
    server.state.reclaim(pod.id)
    noticed = session_of(session.id)
    assert noticed.status is Status.INTERRUPTED and "recover pid" in noticed.detail
    assert create.arrived.wait(60)
    pid = recovery.running(folder)["pid"]

    os.kill(pid, signal.SIGKILL)  # mid-create: no cleanup can run
    wait_for(lambda: not _alive(pid), timeout=30)
    reason = rr.interruptions(noticed)[0]["reason"]
    # The lock is free once the kernel has closed its files (its last thread may exit a
    # moment after the process shows as dead): a refresh then says what happened.
    ended = wait_for(lambda: "stopped before" in (s := session_of(session.id)).detail and s,
                     timeout=30)
    assert ended.status is Status.INTERRUPTED
    assert ended.detail == (f"{reason}; auto-resume stopped before it finished (recover pid "
                            f"{pid} is gone, see {folder / 'recover.log'}): trainctl resume "
                            f"{session.id}")
    assert recovery.running(folder) is None
    assert "creating a pod like" in (folder / "recover.log").read_text()  # what it was doing

    # The next attempt is not blocked by the dead recovery's lock.
    create.open()  # the killed recovery's create goes through too: that pod is left over
    result = cli("resume", session.id, timeout=180)
    assert result.returncode == 0, result.stderr
    resumed = wait_for(lambda: (s := session_of(session.id)).status is Status.RUNNING and
                       s.provider != f"runpod:{pod.id}" and s, timeout=120)
    assert len(creates(server)) == 3 and resumed.host in server.state.pods
    stop(session.id)
