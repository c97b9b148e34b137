"""The Slurm backend through an SSH login node (tests/slurm_login.py: a real sshd in its own
mount namespace whose sessions reach the test cluster): runs, logs, metrics, checkpoints and
stops over the login node; a login node that goes away and comes back; a workdir the compute
nodes do not see, one nobody can write, and Slurm's commands missing, each one line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from slurm_cluster import (
    DRAINED_NODE_REASON,
    slurm_cluster,  # noqa: F401 - the session fixture
)
from slurm_login import login_node  # noqa: F401 - the module fixture
from test_slurm_backend import job_of, wait_session

from trainctl_tui.app.launching import demo_script_path
from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.core.models import Status

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster(slurm_cluster, login_node, tmp_path, monkeypatch):  # noqa: F811
    """[slurm.clusters.hpc] with login = "hpc-login", an [ssh.hosts] entry for the login
    node. This process has no SLURM_CONF: only the login node reaches Slurm."""
    slurm_cluster.wait_idle()
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(login_node.config_path))
    shared = tmp_path / "shared"
    write_config(tmp_path, login_node, shared)
    slurm_cluster.shared = shared
    slurm_cluster.login = login_node
    yield slurm_cluster
    if login_node.process is None:
        login_node.start()
    slurm_cluster.cancel_all()
    slurm_cluster.wait_idle()


def write_config(tmp_path: Path, login, workdir: Path, extra: str = "") -> None:
    entry = login.host_entry()
    (tmp_path / "config.toml").write_text(
        "[ssh.hosts.hpc-login]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
        + f"\n[slurm.clusters.hpc]\nlogin = \"hpc-login\"\nworkdir = \"{workdir}\"\n"
        f"partition = \"debug\"\ntime = \"00:05:00\"\nsignal_lead_seconds = 30\n"
        f"python = \"{sys.executable}\"\n{extra}")


def demo(tmp_path: Path, name: str, steps: int) -> LaunchRequest:
    ckpt = tmp_path / f"ckpt-{name}"
    return LaunchRequest(
        command=[sys.executable, "-u", str(demo_script_path()), "--steps", str(steps),
                 "--step-time", "0.05", "--ckpt-every", "20", "--log-every", "10",
                 "--checkpoint-dir", str(ckpt)],
        provider="slurm:hpc", name=name, cwd=str(tmp_path), checkpoint_dir=str(ckpt),
        resume_template="--resume {checkpoint}", grace_seconds=20)


def test_through_the_login_node_a_run_ends_its_log_metrics_and_checkpoints_work(
        cluster, tmp_path):
    service = Service()
    session = asyncio.run(service.launch(demo(tmp_path, "short", steps=60)))
    assert session.host == "hpc" and job_of(session).isdigit()
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=90)
    assert done.status is Status.SUCCEEDED, done.detail
    service.close()

    logs = run_cli("logs", session.id, "-n", "500")
    assert logs.returncode == 0, logs.stderr
    assert "step 60: train loss" in logs.stdout and "done: step 60" in logs.stdout
    metrics = run_cli("metrics", session.id, "--json")
    assert metrics.returncode == 0, metrics.stderr
    series = json.loads(metrics.stdout)["series"]
    assert max(series["loss"]["x"]) == 60

    listed = run_cli("checkpoints", session.id, "--json")  # inspected on the login node
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["checkpoints"]
    assert [r["name"] for r in rows] == ["step_000020.safetensors", "step_000040.safetensors",
                                         "step_000060.safetensors"]
    assert {r["status"] for r in rows} == {"ok"} and rows[-1]["info"]["step"] == 60

    newest = tmp_path / "ckpt-short" / "step_000060.safetensors"
    info = asyncio.run(Service().validate_checkpoint(session.id, str(newest)))
    assert (info.status, info.step) == ("ok", 60)

    dest = tmp_path / "home copy"
    pulled = run_cli("pull", session.id, "--to", str(dest))
    assert pulled.returncode == 0, pulled.stderr
    assert (dest / newest.name).read_bytes() == newest.read_bytes()


def test_through_the_login_node_a_graceful_stop_saves_a_checkpoint(cluster, tmp_path):
    """The login node named by its ~/.ssh/config alias this time (not an [ssh.hosts] name)."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('login = "hpc-login"',
                                                 f'login = "{cluster.login.alias}"'))
    service = Service()
    session = asyncio.run(service.launch(demo(tmp_path, "long", steps=100000)))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 40/" in service.log_path(s).read_text(), timeout=90)
    stopped = run_cli("stop", session.id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"session {session.id}: stopped")
    log = service.log_path(session).read_text()
    saved = [line for line in log.splitlines() if "received SIGTERM, saved checkpoint" in line]
    assert len(saved) == 1
    checkpoint = saved[0].rsplit(" ", 1)[1]
    assert Path(checkpoint).exists()
    old_job = job_of(session)
    cluster.wait_state(old_job, {"COMPLETED", "CANCELLED", None})

    resumed = run_cli("resume", session.id, timeout=90)  # a new job, from that checkpoint
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0] == (
        f"resumed session {session.id} as attempt 2 from {checkpoint}")
    assert job_of(session) != old_job
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and f"resumed from {checkpoint}" in service.log_path(s).read_text())
    assert run_cli("stop", "--force", session.id, timeout=90).returncode == 0
    service.close()


def info(session_id: str) -> dict:
    sessions = json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
    return next(s for s in sessions if s["id"] == session_id)


def test_a_login_node_that_goes_away_is_unreachable_and_the_run_goes_on(cluster, tmp_path):
    """The job keeps running while the login node is down; trainctl says unreachable on
    every refresh meanwhile (never lost or failed) and follows the run again once it is back."""
    service = Service()
    session = asyncio.run(service.launch(demo(tmp_path, "away", steps=400)))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 20/" in service.log_path(s).read_text(), timeout=90)
    service.close()
    cluster.login.stop()
    try:
        for _ in range(3):  # each refresh tries again (after a short backoff in one process)
            down = info(session.id)
            assert down["status"] == "unreachable", down
            assert down["detail"].startswith("ssh hpc-login: ") and \
                "Connection refused" in down["detail"], down["detail"]
        assert cluster.job_state(job_of(session))[0] == "RUNNING"
    finally:
        cluster.login.start()
    service = Service()
    back = wait_session(service, session.id, lambda s: s.status is Status.RUNNING, timeout=30)
    assert back.detail is None
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=120)
    assert done.status is Status.SUCCEEDED, done.detail
    assert "done: step 400" in service.log_path(done).read_text()
    service.close()


def test_a_workdir_the_compute_nodes_do_not_see_is_one_line_with_the_fix(cluster, tmp_path):
    """The login node writes the session folder on a filesystem of its own; the job cannot
    even open its output file there and ends at once without its runner."""
    workdir = cluster.login.login_only / "trainctl"
    write_config(tmp_path, cluster.login, workdir)
    service = Service()
    session = asyncio.run(service.launch(demo(tmp_path, "unshared", steps=10)))
    job = job_of(session)
    ended = wait_session(service, session.id, lambda s: not s.status.active, timeout=60)
    assert ended.status is Status.FAILED  # FAILED, JobLaunchFailure (exit 0:53) in squeue
    assert ended.detail == (f"slurm hpc: workdir {workdir} is not visible on the compute "
                            f"node(s) (job {job} could not write there); set workdir to a "
                            "shared filesystem")
    assert job not in cluster.job_ids()
    service.close()


def test_an_unwritable_workdir_is_one_line_and_nothing_is_submitted(cluster, tmp_path):
    workdir = cluster.login.read_only / "trainctl"
    write_config(tmp_path, cluster.login, workdir)
    result = run_cli("launch", "--provider", "slurm:hpc", "--", sys.executable, "-c", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"slurm hpc: workdir {workdir} is not writable on the login node hpc-login (Read-only "
        "file system); set workdir to a folder of yours on the shared filesystem")
    assert cluster.job_ids() == []
    sessions = json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
    assert [(s["status"], s["detail"]) for s in sessions] == [
        ("failed", result.stderr.strip())]


def test_slurm_commands_missing_on_the_login_node_are_one_line_with_the_fix(
        cluster, tmp_path):
    """login = "local" on a machine whose PATH has a shell but no Slurm."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mkdir", "mktemp", "rm"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    write_config(tmp_path, cluster.login, tmp_path / "shared")
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('login = "hpc-login"', 'login = "local"'))
    result = run_cli("launch", "--provider", "slurm:hpc", "--", sys.executable, "-c", "1",
                     env={"PATH": str(bin_dir)})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "slurm hpc: sbatch, squeue, scancel, scontrol not found on this machine: not on the "
        "PATH of a non-interactive shell; put Slurm's bin directory on that PATH (e.g. in "
        "~/.bashrc) or set login to a node with Slurm's commands")
    assert not (tmp_path / "shared").exists()  # nothing written
    assert cluster.job_ids() == []
    assert os.environ.get("SLURM_CONF") is None


def test_a_queued_job_stays_queued_through_a_login_node_outage(cluster, tmp_path):
    cluster.drain()
    try:
        service = Service()
        session = asyncio.run(service.launch(demo(tmp_path, "waiting", steps=10)))
        job = job_of(session)
        wait_session(service, session.id, lambda s: (s.detail or "").startswith("queued: "))
        service.close()
        cluster.login.stop()
        try:
            for _ in range(2):
                assert info(session.id)["status"] == "unreachable"
        finally:
            cluster.login.start()
        service = Service()
        again = wait_session(service, session.id, lambda s: s.status is Status.PENDING)
        assert re.fullmatch(rf"queued: {DRAINED_NODE_REASON} \(1st in partition debug, "
                            rf"job {job}\)", again.detail), again.detail
        stopped = asyncio.run(service.stop(session.id))
        assert stopped.detail == f"cancelled while queued (job {job})"
        service.close()
    finally:
        cluster.resume_node()
