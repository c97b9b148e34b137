"""The Slurm backend's operations against the real test cluster (login = "local"): sbatch's
refusals in one line with nothing left, a queued job's place in its partition, requeues
recorded as attempts with their reason and queue time, sacct's answer, and `trainctl resume`
of a session that ran out of requeues."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
import test_slurm_backend
from conftest import run_cli
from slurm_cluster import (
    DRAINED_NODE_REASON,
    slurm_cluster,  # noqa: F401 - the session fixture
)
from test_slurm_backend import demo_trainer, job_of, wait_session

from trainctl_tui.app.service import Service
from trainctl_tui.backends.slurm.local_login import LocalLogin
from trainctl_tui.backends.slurm.queue import accounted_state, ordinal, parse_sacct_state
from trainctl_tui.core.models import Status

pytestmark = pytest.mark.timeout(240)
cluster = test_slurm_backend.cluster  # the cluster with [slurm.clusters.hpc], login = "local"


def launch_refused(*flags: str):
    result = run_cli("launch", "--provider", "slurm:hpc", *flags, "--", sys.executable, "-c",
                     "print(1)")
    assert result.returncode == 2, result.stderr
    return result.stderr.strip()


def assert_nothing_left(cluster, line: str) -> None:
    assert cluster.job_ids() == []
    assert list((cluster.shared / "sessions").iterdir()) == []
    sessions = json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
    assert [(s["status"], s["detail"]) for s in sessions] == [("failed", line)]


def test_a_time_above_the_partitions_limit_is_refused_in_slurms_words(cluster):
    line = launch_refused("--time", "45")  # debug's MaxTime is 30 minutes
    assert line == ("slurm hpc: sbatch refused the job: Batch job submission failed: "
                    "Requested time limit is invalid (missing or exceeds some limit)")
    assert_nothing_left(cluster, line)


def test_more_nodes_than_the_partition_has_are_refused_in_slurms_words(cluster, tmp_path):
    """--nodes above 1 is the multi-node runs' (refused before sbatch until then): the
    cluster's sbatch_args ask for 3 nodes of the 2-node partition `pair` instead."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + 'sbatch_args = ["--nodes=3"]\n')
    line = launch_refused("--partition", cluster.pair_partition)
    assert line == ("slurm hpc: sbatch refused the job: Batch job submission failed: Node "
                    "count specification invalid")
    assert_nothing_left(cluster, line)


def test_queued_jobs_show_their_reason_and_place_in_the_partition(cluster, tmp_path):
    blocker = cluster.sbatch(cluster.write_script("block.sh", "sleep 120\n"), "--exclusive",
                             "-p", cluster.partition)
    cluster.wait_state(blocker, {"RUNNING"})
    service = Service()
    first = asyncio.run(service.launch(demo_trainer(tmp_path, steps=10)))
    second = asyncio.run(service.launch(demo_trainer(tmp_path, steps=10)))
    jobs = [job_of(first), job_of(second)]

    def placed(n: int):
        """Queued with Slurm's reason as squeue gives it now (it moves from Priority to
        Resources as the scheduler looks again) and the job's place."""
        def check(session) -> bool:
            reason = cluster.job_state(jobs[n - 1])[1]
            return session.status is Status.PENDING and session.detail == (
                f"queued: {reason} ({ordinal(n)} in partition debug, job {jobs[n - 1]})")
        return check

    wait_session(service, first.id, placed(1))
    wait_session(service, second.id, placed(2))
    listed = json.loads(run_cli("sessions", "--json").stdout)["sessions"]
    assert re.fullmatch(rf"queued: (Priority|Resources) \(2nd in partition debug, job "
                        rf"{jobs[1]}\)", {s["id"]: s["detail"] for s in listed}[second.id])
    service.close()


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def test_sacct_is_used_when_it_answers_and_none_when_accounting_is_disabled(cluster):
    """The test cluster has no accounting: sacct exits 1 ('Slurm accounting storage is
    disabled'), which is no answer. With accounting, `sacct -n -X -P -o State -j J` prints
    one state a line (the latest run of a requeued job last), 'CANCELLED by UID' for a
    cancel."""
    job = cluster.sbatch(cluster.write_script("quick.sh", "true\n"))
    result = cluster.run("sacct", "-n", "-X", "-P", "-j", job, "-o", "State", check=False)
    assert (result.returncode, result.stderr.strip()) == (
        1, "Slurm accounting storage is disabled")
    assert asyncio.run(accounted_state(LocalLogin(), job)) is None
    assert parse_sacct_state(0, b"COMPLETED\n") == "COMPLETED"
    assert parse_sacct_state(0, b"CANCELLED by 0\n") == "CANCELLED"
    assert parse_sacct_state(0, b"REQUEUED\nOUT_OF_MEMORY\n") == "OUT_OF_MEMORY"
    assert parse_sacct_state(0, b"") is None  # no record of the job
    assert parse_sacct_state(1, b"") is None


def requeue_notes(cluster, session) -> list[tuple[str, float]]:
    text = (cluster.shared / "sessions" / session.id / "slurm-signals").read_text()
    return [(line.split()[0], float(line.split()[1])) for line in text.splitlines()]


def test_a_requeue_is_an_attempt_with_its_reason_and_the_queue_time_it_cost(
        cluster, tmp_path):
    """Slurm's warning (sent as Slurm does: `scancel --batch --signal=USR1`, see
    test_slurm_backend) saves, requeues and resumes; the first attempt says why it ended and
    how long the job then waited, in the session's JSON and its interruption record."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + "max_requeues = 2\n")
    service = Service()
    session = asyncio.run(service.launch(demo_trainer(tmp_path, steps=120)))
    job = job_of(session)
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 40/" in service.log_path(s).read_text())
    cluster.run("scancel", "--batch", "--signal=USR1", job)
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=120)
    assert done.status is Status.SUCCEEDED, done.detail
    service.close()

    notes = dict(requeue_notes(cluster, session))
    record = json.loads((Path(session.session_dir) / "interruptions.json").read_text())
    sessions = json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
    attempts = sessions[0]["attempts"]
    queued = attempts[1]["started"] - notes["REQUEUE"]
    assert len(attempts) == 2 and queued > 0
    assert record == [{
        "machine": f"job {job}", "at": notes["REQUEUE"], "reason": attempts[0]["reason"],
        "spot": False, "cost": None, "attempt": 1, "job": job, "cluster": "hpc",
        "requeue": 1, "why": "time limit", "queued_seconds": round(queued, 3)}]
    assert re.fullmatch(r"time limit: Slurm's warning, saved and requeued \(1 of 2\); "
                        r"queued (\d+s|\d+m\d+s) until it ran again", attempts[0]["reason"])
    assert attempts[1]["reason"] is None and attempts[1]["resumed_from"].startswith(
        str(tmp_path / "ckpt"))


def test_a_requeue_by_slurm_is_a_preemption_and_the_run_resumes(cluster, tmp_path):
    """`scontrol requeue` from outside, as a preemption does: TERM to the job, the job back
    in the queue, started again; the training resumes from its newest checkpoint."""
    service = Service()
    session = asyncio.run(service.launch(demo_trainer(tmp_path, steps=120)))
    job = job_of(session)
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 40/" in service.log_path(s).read_text())
    cluster.run("scontrol", "requeue", job)
    statuses, requeued_details = set(), set()

    def ended(s) -> bool:
        statuses.add(s.status)
        if s.status is Status.PENDING and "requeued" in (s.detail or ""):
            requeued_details.add(s.detail)
        return not s.status.active

    done = wait_session(service, session.id, ended, timeout=120)
    assert done.status is Status.SUCCEEDED, done.detail
    assert Status.STOPPED not in statuses
    # Slurm TERMs every process of the job (then KILL after KillWait): the training saves
    # on its SIGTERM (the runner's one SIGTERM is a graceful stop) and resumes from there.
    saved = [line for line in service.log_path(done).read_text().splitlines()
             if "received SIGTERM, saved checkpoint" in line]
    assert len(saved) == 1
    assert done.attempts[1].resumed_from == saved[0].rsplit(" ", 1)[1]
    assert requeued_details and all(
        d.startswith("requeued after a preemption (1 of 5), queued: ") for d in
        requeued_details)
    assert len(done.attempts) == 2
    assert re.fullmatch(r"preempted: requeued by Slurm \(1\); queued (\d+s|\d+m\d+s) until "
                        r"it ran again", done.attempts[0].reason)
    service.close()


def test_resume_of_a_session_out_of_requeues_resubmits_it_and_it_resumes(cluster, tmp_path):
    """max_requeues = 0: Slurm's warning leaves the session interrupted; `trainctl resume`
    submits a new job on the same cluster, in the same session folder and log, and the
    training goes on from its newest sound checkpoint to the end."""
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + "max_requeues = 0\n")
    service = Service()
    session = asyncio.run(service.launch(demo_trainer(tmp_path, steps=120)))
    old_job = job_of(session)
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 40/" in service.log_path(s).read_text())
    cluster.run("scancel", "--batch", "--signal=USR1", old_job)
    stopped = wait_session(service, session.id, lambda s: not s.status.active)
    assert stopped.status is Status.INTERRUPTED, stopped.detail
    service.close()
    newest = sorted((tmp_path / "ckpt").glob("step_*"))[-1]

    resumed = run_cli("resume", session.id, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0] == (
        f"resumed session {session.id} as attempt 2 from {newest}")
    new_job = job_of(session)
    assert new_job != old_job
    service = Service()
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=120)
    assert done.status is Status.SUCCEEDED, done.detail
    assert len(done.attempts) == 2 and done.attempts[1].resumed_from == str(newest)
    log = service.log_path(done).read_text()
    assert "received SIGTERM, saved checkpoint" in log and "done: step 120" in log
    assert f"resumed from {newest}" in log
    assert "truncated" not in log  # the same remote log, followed on
    folder = cluster.shared / "sessions" / session.id
    assert (folder / f"slurm-signals.{old_job}").exists()  # the old job's notes, aside
    assert not (folder / "slurm-signals").exists() or "NO_REQUEUE" not in (
        folder / "slurm-signals").read_text()
    service.close()


def test_requeues_are_read_from_the_batch_shells_notes():
    """A time-limit requeue (USR1, REQUEUE, START) then a preemption (TERM, START): each
    names the attempt it ended and the wait until the next attempt started."""
    from trainctl_tui.backends.slurm import requeues

    notes = requeues.parse_notes("USR1 100\nREQUEUE 104\nSTART 110\nTERM 200\nSTART 230\n"
                                 "garbled\n")
    attempts = [{"n": 1, "started": 10}, {"n": 2, "started": 112}, {"n": 3, "started": 231}]
    entries = requeues.entries("7", "hpc", notes, attempts, max_requeues=5)
    assert [(e["attempt"], e["why"], e["at"], e["queued_seconds"]) for e in entries] == [
        (1, "time limit", 104.0, 8.0), (2, "preempted", 200.0, 31.0)]
    assert [e["reason"] for e in entries] == [
        "time limit: Slurm's warning, saved and requeued (1 of 5); queued 8s until it ran "
        "again", "preempted: requeued by Slurm (2); queued 31s until it ran again"]
    # the next attempt has not started yet: nothing to record about that requeue
    assert len(requeues.entries("7", "hpc", notes, attempts[:2], max_requeues=5)) == 1
    status = requeues.with_reasons({"attempts": attempts}, entries)
    assert [a.get("reason") for a in status["attempts"]] == [
        entries[0]["reason"], entries[1]["reason"], None]


def test_the_preflights_answers_are_one_line_each():
    from trainctl_tui.backends.slurm.checks import preflight_error

    def error(answer: str, login: str = "hpc-login"):
        return preflight_error(answer, label="slurm hpc", login=login, workdir="/scratch/t")

    assert error("ok\n") is None
    assert error("missing sbatch\n") == (
        "slurm hpc: sbatch not found on the login node hpc-login: not on the PATH of a "
        "non-interactive shell; put Slurm's bin directory on that PATH (e.g. in ~/.bashrc) or "
        "set login to a node with Slurm's commands")
    assert error("unwritable mkdir: cannot create directory '/scratch/t': Permission denied\n",
                 login="local") == (
        "slurm hpc: workdir /scratch/t is not writable on this machine (Permission denied); "
        "set workdir to a folder of yours on the shared filesystem")
    assert error("Welcome to the cluster!\n") == (
        "slurm hpc: unexpected answer from the login node hpc-login: 'Welcome to the "
        "cluster!'")


def test_a_resume_that_waits_in_the_queue_says_so(cluster, tmp_path):
    """A stopped session resumed while its partition's node is drained: the new job waits,
    and `trainctl resume` says where instead of naming an attempt that has not started."""
    service = Service()
    session = asyncio.run(service.launch(demo_trainer(tmp_path, steps=1000)))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 20/" in service.log_path(s).read_text())
    assert asyncio.run(service.stop(session.id)).status is Status.STOPPED
    old_job = job_of(session)
    cluster.wait_state(old_job, {"COMPLETED", "CANCELLED", None})
    cluster.drain()
    resumed = run_cli("resume", session.id, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    new_job = job_of(session)
    said, listed_id = resumed.stdout.splitlines()
    assert re.fullmatch(rf"resumed session {session.id}: queued: {DRAINED_NODE_REASON} "
                        rf"\(1st in partition debug, job {new_job}\)", said), said
    assert listed_id == session.id
    stopped = asyncio.run(service.stop(session.id))
    assert (stopped.status, stopped.detail) == (
        Status.STOPPED, f"cancelled while queued (job {new_job})")
    service.close()
