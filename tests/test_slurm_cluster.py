"""What the Slurm on this machine really does: the ground truth the Slurm backend is built on
(issue 15). Each test drives the private cluster of tests/slurm_cluster.py with Slurm's own
commands and asserts states, reasons, signals and counts; tests/SLURM.md sums them up."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from slurm_cluster import (  # noqa: F401 - slurm_cluster is the fixture
    CRED_EXPIRE_SECONDS,
    DRAINED_NODE_REASON,
    SlurmCluster,
    find_program,
    find_programs,
    sessions_using,
    slurm_cluster,
)

pytestmark = pytest.mark.timeout(120)

# A batch script that notes each signal it gets (with seconds since it started) and keeps
# running; `sleep & wait` lets bash run a trap at once instead of after the sleep.
TRAPPING_SCRIPT = """\
start=$(date +%s%N)
note() { echo "$1 $(( ($(date +%s%N) - start) / 1000000 ))" >> "$MARKS"; }
trap 'note USR1' USR1
trap 'note TERM' TERM
echo "started" >> "$MARKS"
while true; do sleep 0.2 & wait $!; done
"""


@pytest.fixture
def cluster(slurm_cluster):  # noqa: F811 - the session fixture
    """The shared cluster, with its node idle and its queue empty before and after."""
    slurm_cluster.wait_idle()
    yield slurm_cluster
    slurm_cluster.cancel_all()
    if slurm_cluster.node_states().get(slurm_cluster.node) != "idle":
        slurm_cluster.resume_node()
    slurm_cluster.wait_idle()


def wait_for_file_text(path: Path, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path} after {timeout}s: {text!r}")


def marks_of(path: Path) -> dict[str, int]:
    """{'USR1': ms since start, ...} from a TRAPPING_SCRIPT's marks file."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2}


def submit_trapping_job(cluster, tmp_path: Path, *options: str) -> tuple[str, Path]:
    marks = tmp_path / "marks"
    script = cluster.write_script(f"trap-{tmp_path.name}.sh", TRAPPING_SCRIPT)
    job = cluster.sbatch(script, f"--export=ALL,MARKS={marks}", "-o", str(tmp_path / "out"),
                         *options)
    cluster.wait_state(job, {"RUNNING"})
    wait_for_file_text(marks, "started", 10)
    return job, marks


def hold_the_node(cluster, tmp_path: Path) -> str:
    """A running job holding every CPU of node1."""
    script = cluster.write_script("hold.sh", "sleep 300\n")
    job = cluster.sbatch(script, "--exclusive", "-o", str(tmp_path / "hold.out"))
    cluster.wait_state(job, {"RUNNING"})
    return job


# -- running ----------------------------------------------------------------------------------

def test_a_batch_script_runs_to_the_end_with_slurms_environment(cluster, tmp_path):
    out = tmp_path / "hello.out"
    script = cluster.write_script("hello.sh", 'echo "job=$SLURM_JOB_ID node=$SLURMD_NODENAME '
                                              'partition=$SLURM_JOB_PARTITION"\nexit 0\n')
    job = cluster.sbatch(script, "-o", str(out), "-J", "hello")
    assert cluster.wait_state(job, {"COMPLETED"}) == ("COMPLETED", "None")
    assert out.read_text() == f"job={job} node={cluster.node} partition={cluster.partition}\n"


def test_a_failing_batch_script_ends_failed_with_its_exit_code(cluster, tmp_path):
    script = cluster.write_script("fail.sh", "exit 3\n")
    job = cluster.sbatch(script, "-o", str(tmp_path / "fail.out"))
    assert cluster.wait_state(job, {"FAILED"}) == ("FAILED", "NonZeroExitCode")
    shown = cluster.show_job(job)
    assert (shown["JobState"], shown["ExitCode"]) == ("FAILED", "3:0")


def test_an_ended_job_shows_only_with_state_all_then_is_purged(cluster, tmp_path):
    script = cluster.write_script("quick.sh", "true\n")
    job = cluster.sbatch(script, "-o", str(tmp_path / "quick.out"))
    cluster.wait_state(job, {"COMPLETED"})
    default = cluster.run("squeue", "-h", "-j", job, "-o", "%T", check=False)
    assert (default.returncode, default.stdout) == (0, "")  # plain squeue hides ended jobs
    assert cluster.wait_state(job, {None}, timeout=60) is None  # purged after MinJobAge
    for argv in (("squeue", "-h", "-t", "all", "-j", job), ("scontrol", "show", "job", job)):
        gone = cluster.run(*argv, check=False)
        assert gone.returncode == 1 and "Invalid job id specified" in gone.stderr, argv


def test_srun_inside_a_batch_job_starts_one_task_per_requested_task(cluster, tmp_path):
    out = tmp_path / "srun.out"
    script = cluster.write_script(
        "srun.sh", "srun -l bash -c 'echo \"task $SLURM_PROCID of $SLURM_NTASKS on "
                   "$SLURMD_NODENAME step $SLURM_STEP_ID\"'\n")
    job = cluster.sbatch(script, "--ntasks=2", "-o", str(out))
    cluster.wait_state(job, {"COMPLETED"})
    lines = sorted(out.read_text().splitlines())
    assert lines == [f"0: task 0 of 2 on {cluster.node} step 0",
                     f"1: task 1 of 2 on {cluster.node} step 0"]


def test_two_slurmd_on_one_host_run_a_two_node_job(cluster, tmp_path):
    """This build runs several slurmd on one host (`slurmd -N`), so --nodes 2 is real."""
    out = tmp_path / "pair.out"
    script = cluster.write_script(
        "pair.sh", 'echo "nodes=$SLURM_JOB_NODELIST count=$SLURM_JOB_NUM_NODES"\n'
                   "srun -l bash -c 'echo \"rank $SLURM_NODEID on $SLURMD_NODENAME\"'\n")
    job = cluster.sbatch(script, "--nodes=2", "--ntasks-per-node=1",
                         f"--partition={cluster.pair_partition}", "-o", str(out))
    cluster.wait_state(job, {"COMPLETED"})
    first, *tasks = out.read_text().splitlines()
    assert first == "nodes=node[1-2] count=2"
    assert sorted(tasks) == ["0: rank 0 on node1", "1: rank 1 on node2"]


# -- queued -----------------------------------------------------------------------------------

def test_a_job_behind_a_busy_node_waits_for_resources_the_next_for_priority(cluster, tmp_path):
    hold_the_node(cluster, tmp_path)
    script = cluster.write_script("waiting.sh", "true\n")
    first = cluster.sbatch(script, "-o", str(tmp_path / "first.out"))
    second = cluster.sbatch(script, "-o", str(tmp_path / "second.out"))
    cluster.wait_state(first, {"PENDING"})
    # a scheduling pass (sched_interval=2) or two sets the reasons
    cluster._wait_for(lambda: (cluster.job_state(first), cluster.job_state(second)) == (
        ("PENDING", "Resources"), ("PENDING", "Priority")), 30,
        lambda: f"jobs are {cluster.job_state(first)}, {cluster.job_state(second)}")


DRAINED_PARTITION_REASON = ("Nodes required for job are DOWN, DRAINED or reserved for jobs in "
                            "higher priority partitions")


def test_jobs_on_a_drained_node_wait_with_a_reason_then_run_on_resume(cluster, tmp_path):
    """A job for the partition gets a long sentence as its reason; one that names the node
    (--nodelist) gets ReqNodeNotAvail with the node. scontrol spells the same with underscores."""
    cluster.drain("maintenance by trainctl tests")
    assert cluster.node_states()[cluster.node] == "drain"
    script = cluster.write_script("drained.sh", "true\n")
    anywhere = cluster.sbatch(script, "-o", str(tmp_path / "anywhere.out"))
    named = cluster.sbatch(script, "-o", str(tmp_path / "named.out"), f"--nodelist={cluster.node}")
    time.sleep(3)  # one scheduling pass
    # slurmctld's scheduler passes give the partition's job either sentence (see
    # DRAINED_NODE_REASON); one naming the node keeps ReqNodeNotAvail with the node
    state, reason = cluster.job_state(anywhere)
    assert state == "PENDING" and re.fullmatch(DRAINED_NODE_REASON, reason), reason
    node_reason = f"ReqNodeNotAvail, UnavailableNodes:{cluster.node}"
    assert cluster.job_state(named) == ("PENDING", node_reason)
    assert cluster.show_job(anywhere)["Reason"] in (
        DRAINED_PARTITION_REASON.replace(" ", "_"), "ReqNodeNotAvail,_UnavailableNodes:"
        f"{cluster.node}")
    cluster.resume_node()
    for job in (anywhere, named):
        assert cluster.wait_state(job, {"COMPLETED"}) == ("COMPLETED", "None")


# -- stopping ---------------------------------------------------------------------------------

def test_scancel_batch_signal_term_reaches_only_the_batch_shell_which_keeps_running(
        cluster, tmp_path):
    job, marks = submit_trapping_job(cluster, tmp_path)
    cluster.run("scancel", "--batch", "--signal=TERM", job)
    wait_for_file_text(marks, "TERM", 10)
    time.sleep(1)
    assert cluster.job_state(job) == ("RUNNING", "None")


def test_scancel_sends_term_to_the_batch_shell_and_ends_the_job(cluster, tmp_path):
    job, marks = submit_trapping_job(cluster, tmp_path)
    cancelled = time.monotonic()
    cluster.run("scancel", job)
    wait_for_file_text(marks, "TERM", 10)
    assert cluster.wait_state(job, {"CANCELLED"}, timeout=20) == ("CANCELLED", "None")
    # The shell ignores TERM (the trap), so it is the SIGKILL after KillWait=5 that ends it.
    assert time.monotonic() - cancelled >= 4
    assert "CANCELLED AT" in (tmp_path / "out").read_text()


def test_the_advance_signal_reaches_the_batch_shell_before_the_time_limit(cluster, tmp_path):
    """--signal=B:USR1@30 with --time=1: slurmctld looks at time limits every 30 s and sends
    the signal at the first look that finds at most lead + 30 s left, so it comes 30 to 60 s
    before the limit (man sbatch: "up to 60 seconds earlier than specified")."""
    lead, limit_s = 30, 60
    job, marks = submit_trapping_job(cluster, tmp_path, "--time=1",
                                     f"--signal=B:USR1@{lead}")
    wait_for_file_text(marks, "USR1", limit_s - lead + 5)
    arrived_s = marks_of(marks)["USR1"] / 1000
    early_by = limit_s - arrived_s
    print(f"USR1 arrived {arrived_s:.1f} s after the start, {early_by:.1f} s before the limit")
    assert lead <= early_by <= lead + 35  # 30 s between looks, 5 s for a busy machine
    assert "TERM" not in marks_of(marks)  # the advance signal is not the end
    assert cluster.job_state(job) == ("RUNNING", "None")


def test_scancel_of_an_unknown_job_is_silent_but_a_signal_to_it_is_an_error(cluster):
    """A stop that races the job's end: plain scancel says nothing and exits 0."""
    unknown = "999999"
    plain = cluster.run("scancel", unknown, check=False)
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "", "")
    signal = cluster.run("scancel", "--batch", "--signal=TERM", unknown, check=False)
    assert (signal.returncode, signal.stderr.strip()) == (
        1, f"scancel: error: Kill job error on job id {unknown}: Invalid job id specified")


# -- requeue ----------------------------------------------------------------------------------

def test_a_job_requeues_itself_and_restarts_with_slurm_restart_count(cluster, tmp_path):
    starts = tmp_path / "starts"
    script = cluster.write_script("requeue.sh", f"""\
echo "start ${{SLURM_RESTART_COUNT:-unset}} $(date +%s)" >> {starts}
if [ -z "$SLURM_RESTART_COUNT" ]; then
  scontrol requeue "$SLURM_JOB_ID"
  echo "requeue exit $?" >> {starts}
  sleep 30
  echo "not killed" >> {starts}
fi
""")
    job = cluster.sbatch(script, "--requeue", "-o", str(tmp_path / "requeue.out"),
                         "--open-mode=append")
    wait_for_file_text(starts, "requeue exit", 20)
    held = cluster.wait_state(job, {"PENDING"}, timeout=10)
    assert held == ("PENDING", "BeginTime")  # held for cred_expire seconds
    text = wait_for_file_text(starts, r"start 1 ", CRED_EXPIRE_SECONDS + 20)
    assert cluster.wait_state(job, {"COMPLETED"}) == ("COMPLETED", "None")
    lines = text.splitlines()  # a loaded machine may add lines (CI once saw 4): name them
    first, second = lines[0], next(line for line in lines if line.startswith("start 1 "))
    assert first.startswith("start unset ") and "requeue exit 0" in lines, lines
    waited = int(second.split()[2]) - int(first.split()[2])
    assert waited >= CRED_EXPIRE_SECONDS
    assert "DUE TO JOB REQUEUE" in (tmp_path / "requeue.out").read_text()


def test_requeue_of_a_running_job_keeps_its_id_and_counts_restarts(cluster, tmp_path):
    job, marks = submit_trapping_job(cluster, tmp_path, "--requeue")
    cluster.run("scontrol", "requeue", job)
    shown = cluster.wait_state(job, {"PENDING"}, timeout=10)
    assert shown == ("PENDING", "BeginTime")
    assert cluster.show_job(job)["Restarts"] == "1"
    assert "TERM" in marks_of(marks)  # the batch shell was told before it was killed


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("options, exit_code, words", [
    (["--partition=nope"], 1, "sbatch: error: invalid partition specified: nope\n"
                               "sbatch: error: Batch job submission failed: "
                               "Invalid partition name specified"),
    (["--nodes=3", "--partition=pair"], 1,
     "sbatch: error: Batch job submission failed: Node count specification invalid"),
    (["--time=45"], 1, "sbatch: error: Batch job submission failed: "
                       "Requested time limit is invalid (missing or exceeds some limit)"),
    (["--time=soon"], 255, "sbatch: error: Invalid --time specification"),
    (["--gres=gpu:1"], 1, "sbatch: error: Invalid generic resource (gres) specification"),
], ids=["partition", "nodes", "time-above-max", "time-syntax", "gres"])
def test_sbatch_rejects_what_can_never_run_in_its_own_words(cluster, tmp_path, options,
                                                            exit_code, words):
    script = cluster.write_script("never.sh", "true\n")
    result = cluster.run("sbatch", "--parsable", *options, str(script), check=False)
    assert (result.returncode, result.stdout, result.stderr.strip()) == (exit_code, "", words)
    assert cluster.job_ids() == []


def test_without_accounting_any_account_and_qos_are_accepted(cluster, tmp_path):
    """No slurmdbd: -A and --qos are not checked, so a typo only shows on a real site."""
    script = cluster.write_script("account.sh", "true\n")
    job = cluster.sbatch(script, "--account=proj123", "--qos=normal",
                         "-o", str(tmp_path / "account.out"))
    assert cluster.wait_state(job, {"COMPLETED"}) == ("COMPLETED", "None")
    assert cluster.show_job(job)["Account"] == "proj123"


# -- accounting -------------------------------------------------------------------------------

def test_sacct_says_accounting_is_disabled(cluster):
    sacct = find_program("sacct")
    assert sacct, "slurm-wlm ships sacct"
    result = cluster.run(sacct, "-n", "-X", "-o", "JobID,State", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "Slurm accounting storage is disabled"


# -- the fixture itself -----------------------------------------------------------------------

def running(pid: int) -> bool:
    """Alive and not a zombie (orphans wait for this machine's init to reap them)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_second_cluster_runs_beside_the_first_and_stops_without_leftovers(
        slurm_cluster, tmp_path):  # noqa: F811
    """Own ports, socket and dirs: a second cluster starts while the session's runs, stop()
    leaves no daemon, slurmstepd or job process, and the same cluster starts again."""
    second = SlurmCluster(tmp_path / "second", find_programs())
    try:
        for _ in range(2):
            second.start()
            pid_file = tmp_path / "sleeper.pid"
            sleeper = second.write_script("sleeper.sh", f"echo $$ > {pid_file}\nsleep 300\n")
            job = second.sbatch(sleeper, "-o", str(tmp_path / "sleeper.out"))
            second.wait_state(job, {"RUNNING"})
            wait_for_file_text(pid_file, r"\d", 10)
            started = [process.pid for process in second.processes.values()]
            started.append(int(pid_file.read_text()))
            second.stop()
            assert not sessions_using(second.dir)
            assert not [pid for pid in started if running(pid)]
            pid_file.unlink()
    finally:
        second.stop()
    assert slurm_cluster.node_states()[slurm_cluster.node] == "idle"
