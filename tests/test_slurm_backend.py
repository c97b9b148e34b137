"""The Slurm backend (issue 15) against the real cluster of tests/slurm_cluster.py, reached
with login = "local": runs submitted with sbatch, watched through the runner's status.json
and Slurm's queue, stopped through the batch shell, refused in Slurm's own words."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from slurm_cluster import (
    DRAINED_NODE_REASON,
    slurm_cluster,  # noqa: F401 - the session fixture
)

from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.core.errors import TrainctlError
from trainctl_tui.core.models import Status

pytestmark = pytest.mark.timeout(180)

HOSTILE = "x'\"; touch PWNED; $(touch PWNED2) `touch PWNED3` #"
# Prints its argument and a few steps; on SIGTERM notes it in a file and exits 0.
TRAINER = """\
import signal, sys, time
marks = sys.argv[2] if len(sys.argv) > 2 else None
def note(text):
    if marks:
        with open(marks, "a") as f:
            f.write(text + "\\n")
def term(*_):
    note("TERM")
    print("saving on SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("arg", sys.argv[1], flush=True)
note("started")
for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 3):
    print(f"step {i} loss {1.0 / (i + 1):.3f}", flush=True)
    time.sleep(0.2)
print("done", flush=True)
"""


@pytest.fixture
def cluster(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811 - the session fixture
    """The shared cluster idle and empty, SLURM_CONF in the environment (as a user on a
    login node has it), and [slurm.clusters.hpc] with login = "local"."""
    slurm_cluster.wait_idle()
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf_path))
    shared = tmp_path / "shared"
    (tmp_path / "config.toml").write_text(
        f"[slurm.clusters.hpc]\nlogin = \"local\"\nworkdir = \"{shared}\"\n"
        f"partition = \"{slurm_cluster.partition}\"\ntime = \"00:05:00\"\n"
        f"signal_lead_seconds = 30\npython = \"{sys.executable}\"\n")
    slurm_cluster.shared = shared
    yield slurm_cluster
    slurm_cluster.cancel_all()
    if slurm_cluster.node_states().get(slurm_cluster.node) != "idle":
        slurm_cluster.resume_node()
    slurm_cluster.wait_idle()


def trainer(tmp_path: Path, *args: str) -> list[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    return [sys.executable, "-u", str(script), *args]


def wait_session(service: Service, session_id: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        session = asyncio.run(service.get(session_id))
        if check(session):
            return session
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session_id} is {session.status}: {session.detail}")
        time.sleep(0.3)


def job_of(session) -> str:
    return json.loads((Path(session.session_dir) / "remote.json").read_text())["job_id"]


def test_a_run_is_submitted_runs_to_the_end_and_its_log_is_mirrored(cluster, tmp_path):
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, HOSTILE), provider="slurm:hpc", name=HOSTILE,
        cwd=str(tmp_path))))
    job = job_of(session)
    assert job.isdigit() and session.host == "hpc"
    done = wait_session(service, session.id, lambda s: not s.status.active)
    assert done.status is Status.SUCCEEDED, done.detail
    log = service.log_path(done).read_text()
    assert f"arg {HOSTILE}\n" in log and "step 2 loss 0.333" in log and "done" in log
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    script = (cluster.shared / "sessions" / session.id / "job.sh").read_text()
    assert [line for line in script.splitlines() if "PWNED" in line] == [
        "#SBATCH --job-name=trainctl-x-touch-PWNED-touch-PWNED2-touch-PWNED3"]
    service.close()


def test_a_job_waiting_on_a_drained_node_is_queued_with_slurms_reason_and_a_stop_cancels_it(
        cluster, tmp_path):
    cluster.drain()
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, "x"), provider="slurm:hpc", cwd=str(tmp_path))))
    job = job_of(session)
    queued = wait_session(service, session.id, lambda s: "queued:" in (s.detail or ""))
    assert queued.status is Status.PENDING
    assert cluster.job_state(job)[0] == "PENDING"
    # Slurm's own words, as squeue prints them (one of two: slurmctld moves between them)
    assert re.fullmatch(rf"queued: {DRAINED_NODE_REASON} \(1st in partition "
                        rf"{cluster.partition}, job {job}\)", queued.detail), queued.detail
    stopped = asyncio.run(service.stop(session.id))
    assert stopped.status is Status.STOPPED
    assert stopped.detail == f"cancelled while queued (job {job})"
    cluster.wait_state(job, {"CANCELLED", None})
    assert job not in cluster.job_ids()
    service.close()


def test_a_graceful_stop_reaches_the_training_as_sigterm(cluster, tmp_path):
    marks = tmp_path / "marks"
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, "x", str(marks), "600"), provider="slurm:hpc",
        cwd=str(tmp_path), grace_seconds=10)))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and marks.exists() and "started" in marks.read_text())
    stopped = asyncio.run(service.stop(session.id))
    assert stopped.status is Status.STOPPED, stopped.detail
    assert marks.read_text().splitlines() == ["started", "TERM"]
    assert "saving on SIGTERM" in service.log_path(stopped).read_text()
    cluster.wait_state(job_of(session), {"COMPLETED", "CANCELLED", None})
    service.close()


def test_a_bad_partition_is_one_line_in_slurms_words_and_nothing_is_left_queued(cluster):
    result = run_cli("launch", "--provider", "slurm:hpc", "--partition", "nope", "--",
                     sys.executable, "-c", "print(1)")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "slurm hpc: sbatch refused the job: invalid partition specified: nope; Batch job "
        "submission failed: Invalid partition name specified")
    assert cluster.job_ids() == []
    assert list((cluster.shared / "sessions").iterdir()) == []  # nothing left on the cluster
    sessions = json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
    assert [(s["status"], s["detail"]) for s in sessions] == [
        ("failed", result.stderr.strip())]


def test_dry_run_prints_every_sbatch_line_and_submits_nothing(cluster):
    result = run_cli("launch", "--dry-run", "--provider", "slurm:hpc", "--time", "00:10:00",
                     "--nodes", "1", "--account", "proj123", "--qos", "normal",
                     "--name", HOSTILE, "--", sys.executable, "-c", "print(1)")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "#!/bin/bash"
    sbatch = [line for line in lines if line.startswith("#SBATCH")]
    shared = cluster.shared
    assert sbatch == [
        "#SBATCH --job-name=trainctl-x-touch-PWNED-touch-PWNED2-touch-PWNED3",
        f"#SBATCH --output={shared}/sessions/SESSION/slurm-%j.out",
        f"#SBATCH --error={shared}/sessions/SESSION/slurm-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --partition={cluster.partition}",
        "#SBATCH --account=proj123",
        "#SBATCH --qos=normal",
        "#SBATCH --time=00:10:00",
        "#SBATCH --signal=B:USR1@30",
        "#SBATCH --requeue",
    ]
    assert "PWNED" not in "\n".join(line for line in lines if not line.startswith("#SBATCH"))
    assert cluster.job_ids() == []
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []
    assert not shared.exists()


def test_dry_run_elsewhere_and_slurm_options_elsewhere_are_refused_in_one_line(cluster):
    local = run_cli("launch", "--dry-run", "--", sys.executable, "-c", "1")
    assert (local.returncode, local.stderr.strip()) == (2, (
        "--dry-run is not supported for --provider local (it starts the run directly; there "
        "is nothing to show)"))
    timed = run_cli("launch", "--time", "5", "--", sys.executable, "-c", "1")
    assert (timed.returncode, timed.stderr.strip()) == (
        2, "--time is for runs on slurm (--provider slurm:NAME)")


def test_a_hostile_job_option_is_refused_before_anything_is_written(cluster, tmp_path):
    service = Service()
    with pytest.raises(TrainctlError) as err:
        asyncio.run(service.dry_run(LaunchRequest(
            command=["python3", "-c", "1"], provider="slurm:hpc",
            backend_options={"partition": "debug\n#SBATCH --wrap=touch PWNED"})))
    assert str(err.value) == ("slurm: the sbatch option '--partition=debug\\n#SBATCH "
                              "--wrap=touch PWNED' may not hold spaces, quotes, '#' or control "
                              "characters")
    service.close()


def test_a_force_stop_cancels_at_once(cluster, tmp_path):
    marks = tmp_path / "marks"
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, "x", str(marks), "600"), provider="slurm:hpc",
        cwd=str(tmp_path), grace_seconds=60)))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and marks.exists() and "started" in marks.read_text())
    started = time.monotonic()
    stopped = asyncio.run(service.stop(session.id, force=True))
    assert stopped.status is Status.STOPPED, stopped.detail
    assert time.monotonic() - started < 20  # not the 60 s grace
    cluster.wait_state(job_of(session), {"COMPLETED", "CANCELLED", None})
    service.close()


def test_a_job_cancelled_by_someone_else_says_so_in_one_line(cluster, tmp_path):
    marks = tmp_path / "marks"
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, "x", str(marks), "600"), provider="slurm:hpc",
        cwd=str(tmp_path))))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and marks.exists() and "started" in marks.read_text())
    job = job_of(session)
    cluster.run("scancel", job)
    ended = wait_session(service, session.id, lambda s: not s.status.active)
    assert ended.status is Status.STOPPED
    assert ended.detail == (f"slurm hpc: job {job} was cancelled outside trainctl (scancel by "
                            "someone else, or preempted)")
    service.close()


def test_a_job_that_ends_before_its_runner_starts_is_reported(cluster, tmp_path):
    """A setup line that fails ends the job before the runner writes anything."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + "setup = [\"exit 3\"]\n")
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, "x"), provider="slurm:hpc", cwd=str(tmp_path))))
    job = job_of(session)
    ended = wait_session(service, session.id, lambda s: not s.status.active)
    assert (ended.status, ended.detail) in {
        (Status.FAILED, f"slurm hpc: job {job} ended FAILED without a final status from its "
                        "runner"),
        (Status.LOST, f"slurm hpc: job {job} is gone from the queue without a final status "
                      "from its runner (sacct has no record)")}
    service.close()


def demo_trainer(tmp_path: Path, steps: int) -> LaunchRequest:
    from trainctl_tui.app.launching import demo_script_path

    return LaunchRequest(
        command=[sys.executable, "-u", str(demo_script_path()), "--steps", str(steps),
                 "--step-time", "0.1", "--ckpt-every", "20", "--log-every", "20",
                 "--checkpoint-dir", str(tmp_path / "ckpt")],
        provider="slurm:hpc", cwd=str(tmp_path), checkpoint_dir=str(tmp_path / "ckpt"),
        resume_template="--resume {checkpoint}", grace_seconds=20)


def short_time_limit(tmp_path: Path, max_requeues: int) -> None:
    """--time=1 minute, the warning 30 s before (it comes 30-60 s before: SLURM.md)."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('time = "00:05:00"', 'time = "1"')
                      + f"max_requeues = {max_requeues}\n")


def test_the_time_limit_warning_saves_requeues_and_the_run_resumes_to_the_end(
        cluster, tmp_path):
    """Slurm's warning is USR1 to the batch shell alone (--signal=B:USR1@lead); here the
    test sends it the same way (`scancel --batch --signal=USR1`, as SLURM.md shows Slurm
    does), since slurmctld's 30 s timer makes the real one land anywhere in a 30 s window.
    The training saves on SIGTERM, the job requeues itself, the second start resumes from
    that checkpoint and finishes. The real timer is the next test's."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + "max_requeues = 1\n")
    service = Service()
    session = asyncio.run(service.launch(demo_trainer(tmp_path, steps=150)))
    job = job_of(session)
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 40" in service.log_path(s).read_text())
    cluster.run("scancel", "--batch", "--signal=USR1", job)
    details = set()

    def ended(s) -> bool:
        details.add((s.status, s.detail))
        return not s.status.active

    done = wait_session(service, session.id, ended, timeout=120)
    assert done.status is Status.SUCCEEDED, done.detail
    notes = (cluster.shared / "sessions" / session.id / "slurm-signals").read_text().split()
    assert [n for n in notes if not n.isdigit()] == ["USR1", "REQUEUE", "START"]
    assert any(status is Status.PENDING and (detail or "").startswith(
        "requeued after Slurm's time-limit warning (1 of 1), ") for status, detail in details)
    assert len(done.attempts) == 2 and done.attempts[1].resumed_from.startswith(
        str(tmp_path / "ckpt"))
    assert cluster.show_job(job)["Restarts"] == "1"
    service.close()


def test_after_max_requeues_the_session_is_interrupted_with_a_hint(cluster, tmp_path):
    """The real timer: --time=1 with a 30 s lead warns within the job's first 30 s."""
    short_time_limit(tmp_path, max_requeues=0)
    service = Service()
    session = asyncio.run(service.launch(demo_trainer(tmp_path, steps=900)))
    job = job_of(session)
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=120)
    assert done.status is Status.INTERRUPTED, done.detail
    assert done.detail == (f"slurm hpc: job {job} reached its time limit after 0 "
                           f"requeue(s) (max_requeues 0); trainctl resume {session.id} "
                           "continues from its checkpoint")
    service.close()
