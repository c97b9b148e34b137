"""Training on a RunPod "pod": the local GraphQL server maps the pod's 22/tcp to the test
sshd, so the runner really runs over SSH. Launch, follow the log, stop; a spot interruption
detected and auto-resumed from the newest checkpoint with the interruption recorded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import pytest
from child_patches import patch_everywhere
from runpod_server import runpod_server  # noqa: F401 - the fixture
from sshd import sshd_server  # noqa: F401 - the fixture
from test_cli import DEMO, wait_for

from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.backends.runpod import cloud as rp
from trainctl_tui.backends.runpod import provider as pod_sessions
from trainctl_tui.backends.runpod import recovery as runpod_recovery
from trainctl_tui.core.machines import CreateRequest
from trainctl_tui.core.models import Status


@pytest.fixture
def pod_env(sshd_server, runpod_server, tmp_path, monkeypatch):  # noqa: F811
    workdir = tmp_path / "pod workspace"
    (tmp_path / "config.toml").write_text(
        f'[runpod]\nssh_user = "{sshd_server.user}"\n'
        f"identity_file = {json.dumps(str(sshd_server.user_key))}\n"
        f'python = "/usr/bin/python3"\nworkdir = {json.dumps(str(workdir))}\n'
        "auto_resume = true\nmax_resumes = 2\n")
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    patch_everywhere(monkeypatch, rp, "POLL_SECONDS", 0.01)  # also in `trainctl _recover`
    monkeypatch.setattr(pod_sessions, "_TARGETS", {})
    runpod_server.state.ssh_port = sshd_server.port
    yield runpod_server, workdir
    # The "pod" is this machine: end whatever training a test left running there.
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


def run(coro):
    return asyncio.run(coro)


def session_of(session_id: str):
    service = Service()
    try:
        return run(service.get(session_id))
    finally:
        service.close()


def launch(pod_id: str, *command: str, **options):
    service = Service()
    try:
        return run(service.launch(LaunchRequest(command=list(command),
                                                provider=f"runpod:{pod_id}", **options)))
    finally:
        service.close()


def test_training_on_a_pod_over_ssh(pod_env, trainctl_home):
    server, workdir = pod_env
    pod = run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod",
                                                             type="NVIDIA A40")))
    session = launch(pod.id, sys.executable, "-u", DEMO, "--steps", "100000",
                     "--step-time", "0.02")
    assert (session.provider, session.host) == (f"runpod:{pod.id}", pod.id)
    log = trainctl_home / "sessions" / session.id / "train.log"
    wait_for(lambda: session_of(session.id) and b"step 30" in log.read_bytes(), timeout=60)
    assert session_of(session.id).status is Status.RUNNING
    assert (workdir / "sessions" / session.id / "train.log").exists()  # on the "pod"
    service = Service()
    try:
        stopped = run(service.stop(session.id))
    finally:
        service.close()
    assert stopped.status is Status.STOPPED


def test_an_interrupted_spot_pod_is_resumed_from_the_newest_checkpoint(pod_env, trainctl_home,
                                                                       tmp_path, monkeypatch):
    server, workdir = pod_env
    patch_everywhere(monkeypatch, runpod_recovery, "STALE_SECONDS", 0.0)
    pod = run(rp.RunPodCloud().create_instance(CreateRequest(
        provider="runpod", type="NVIDIA A40", spot=True, max_price=0.2)))
    ckpt = tmp_path / "ckpt"
    session = launch(pod.id, sys.executable, "-u", DEMO, "--steps", "100000", "--step-time",
                     "0.02", "--ckpt-every", "10", checkpoint_dir=str(ckpt),
                     resume_template="--resume {checkpoint}")
    wait_for(lambda: len(list(ckpt.glob("step_*.safetensors"))) >= 2, timeout=60)
    # The machine goes away: runner and training die with it, the pod exits.
    status = json.loads((workdir / "sessions" / session.id / "status.json").read_text())
    for pid in (status["runner_pid"], status["child_pid"]):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    newest = sorted(ckpt.glob("step_*.safetensors"))[-1]
    log = trainctl_home / "sessions" / session.id / "train.log"
    server.state.interrupt(pod.id)
    resumed = wait_for(lambda: (s := session_of(session.id)).attempt == 2 and s, timeout=60)
    first = resumed.attempts[0]
    assert first.reason.startswith(f"spot interruption: pod {pod.id} went exited (Exited by "
                                   "host: outbid) while training; cost so far $")
    assert resumed.attempts[1].resumed_from == str(newest)
    assert resumed.detail is None or "resumed on pod" in resumed.detail or \
        resumed.status is Status.RUNNING
    bids = [r["query"] for r in server.state.requests if "podBidResume" in r["query"]]
    assert len(bids) == 1 and "bidPerGpu: 0.2," in bids[0]
    assert runpod_recovery.interruptions(resumed)[0]["pod"] == pod.id
    assert f"[trainctl] pod {pod.id} was interrupted; resuming on pod {pod.id} from the " \
        "newest checkpoint on its volume" in log.read_text()
    assert server.state.count("podRentInterruptable") == 1  # bid again: no new pod
    service = Service()
    try:
        run(service.stop(session.id, force=True))
    finally:
        service.close()


def test_an_unreachable_pod_shows_its_container_log(pod_env, trainctl_home):
    """ssh to the pod stops answering while RunPod still runs it: the session is unreachable,
    says why with the container log's last line, and `trainctl logs` shows that log."""
    from conftest import run_cli
    from sshd import free_port

    server, _ = pod_env
    pod = run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod",
                                                             type="NVIDIA A40")))
    session = launch(pod.id, sys.executable, "-u", DEMO, "--steps", "100000",
                     "--step-time", "0.02")
    log = trainctl_home / "sessions" / session.id / "train.log"
    wait_for(lambda: session_of(session.id) and b"step 20" in log.read_bytes(), timeout=60)
    server.state.logs[pod.id] = ["sshd: fatal: cannot bind port 22", "container still up"]
    with server.state.lock:  # the pod's ssh port now leads nowhere
        for port in server.state.pods[pod.id]["runtime"]["ports"]:
            if port["privatePort"] == 22:
                port["publicPort"] = free_port()
    server.state.ssh_port = free_port()
    pod_sessions._TARGETS.clear()
    unreachable = wait_for(lambda: (s := session_of(session.id)).status is Status.UNREACHABLE
                           and s, timeout=90)
    assert "container still up" in unreachable.detail
    result = run_cli("logs", session.id, "-n", "5")
    assert result.returncode == 0
    # the mirrored train.log's tail first (how far it got depends on the machine's load)
    step = re.search(r"^step \d+/100000 \| train loss", result.stdout, re.M)
    assert step and step.start() < result.stdout.index("sshd: fatal"), result.stdout
    assert result.stdout.rstrip().endswith("sshd: fatal: cannot bind port 22\ncontainer still up")
    assert f"{pod.id} is not reachable over ssh; its container log" in result.stderr
