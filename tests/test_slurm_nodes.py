"""Multi-node runs on the real test cluster (tests/slurm_cluster.py): `--nodes 2` on the
partition `pair` (node1 and node2, two slurmd on this host) starts one runner per node with
srun; each runs the command with its rank, rank 0's log is the session's, every node's log
is kept; a stop reaches every node; torchrun meets through a real c10d rendezvous and a tiny
DDP training on CPU (gloo) ends with identical parameters on both nodes."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from slurm_cluster import slurm_cluster  # noqa: F401 - the session fixture

from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.core.models import Status

pytestmark = pytest.mark.timeout(240)

FIXTURES = Path(__file__).parent / "fixtures"
# Prints the node environment, a few steps; on SIGTERM notes its node in a file and exits 0.
TRAINER = """\
import os, signal, sys, time
names = ("TRAINCTL_NODE_RANK", "TRAINCTL_NUM_NODES", "TRAINCTL_NODE_IPS", "MASTER_ADDR",
         "MASTER_PORT", "SLURMD_NODENAME")
rank = os.environ.get("TRAINCTL_NODE_RANK")
def term(*_):  # slow to save: a second SIGTERM meanwhile would be noted twice
    with open(sys.argv[1], "a") as f:
        f.write(f"TERM {rank}\\n")
    print("saving on SIGTERM", flush=True)
    time.sleep(1)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print(" ".join(f"{n}={os.environ.get(n)}" for n in names), flush=True)
with open(sys.argv[1], "a") as f:
    f.write(f"started {rank}\\n")
for i in range(int(sys.argv[2])):
    print(f"step {i} loss {1.0 / (i + 1):.3f}", flush=True)
    time.sleep(0.2)
print("done", rank, flush=True)
"""


@pytest.fixture
def cluster(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811 - the session fixture
    """Both nodes idle, [slurm.clusters.hpc] on the partition that has them (login local)."""
    slurm_cluster.wait_idle(slurm_cluster.nodes)
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf_path))
    shared = tmp_path / "shared"
    (tmp_path / "config.toml").write_text(
        f"[slurm.clusters.hpc]\nlogin = \"local\"\nworkdir = \"{shared}\"\n"
        f"partition = \"{slurm_cluster.pair_partition}\"\ntime = \"00:05:00\"\n"
        f"python = \"{sys.executable}\"\n")
    slurm_cluster.shared = shared
    yield slurm_cluster
    slurm_cluster.cancel_all()
    slurm_cluster.wait_idle(slurm_cluster.nodes)


def trainer(tmp_path: Path, steps: int) -> list[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    return [sys.executable, "-u", str(script), str(tmp_path / "marks"), str(steps)]


def wait_session(service: Service, session_id: str, check, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        session = asyncio.run(service.get(session_id))
        if check(session):
            return session
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session_id} is {session.status}: {session.detail}")
        time.sleep(0.3)


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marks"
    return sorted(path.read_text().splitlines()) if path.exists() else []


def node_log(session, rank: int) -> str:
    """Node `rank`'s log as mirrored into the local session folder."""
    path = Path(session.session_dir) / ("train.log" if not rank else f"nodes/{rank}/train.log")
    return path.read_text()


def test_dry_run_shows_one_runner_per_node_started_by_srun(cluster):
    result = run_cli("launch", "--dry-run", "--provider", "slurm:hpc", "--nodes", "2:4", "--",
                     "torchrun", "--nproc-per-node", "1", "train.py")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "#SBATCH --nodes=2-4" in lines and "#SBATCH --ntasks-per-node=1" in lines
    srun = [line for line in lines if line.startswith("srun ")]
    assert srun == [
        "srun --ntasks-per-node=1 bash -c 'exec \"$0\" \"$1\" \"$2\" --node-rank "
        "\"$SLURM_NODEID\" --node-ips \"$3\" --nnodes \"$4\" --signals-from \"$2\"/node-signals' "
        f"{sys.executable} {cluster.shared}/runner/{runner_folder(cluster)}/trainctl-runner.pyz "
        "\"$trainctl_dir\" \"$node_ips\" 2:4 &"]
    assert cluster.job_ids() == [] and not cluster.shared.exists()


def runner_folder(cluster) -> str:
    from trainctl_tui.backends.remote.runner import runner_version

    return runner_version()


def test_two_nodes_run_to_the_end_each_with_its_rank_and_log(cluster, tmp_path):
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, 5), provider="slurm:hpc", cwd=str(tmp_path),
        backend_options={"nodes": 2})))
    done = wait_session(service, session.id, lambda s: not s.status.active)
    assert (done.status, done.nodes) == (Status.SUCCEEDED, 2), done.detail
    shared = cluster.shared / "sessions" / session.id
    for rank, node in ((0, "node1"), (1, "node2")):
        log = node_log(done, rank)
        assert (f"TRAINCTL_NODE_RANK={rank} TRAINCTL_NUM_NODES=2 "
                "TRAINCTL_NODE_IPS=127.0.0.1,127.0.0.1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "
                f"SLURMD_NODENAME={node}") in log
        assert f"done {rank}" in log and "step 4 loss 0.200" in log
        kept = shared / ("train.log" if not rank else f"nodes/{rank}/train.log")
        assert kept.read_text() == log  # every node's log kept on the cluster, and mirrored
        status = json.loads((kept.parent / "status.json").read_text())
        assert status["state"] == "succeeded" and status["node"]["rank"] == rank
    assert "TRAINCTL_NODE_RANK=1" not in node_log(done, 0)
    assert marks(tmp_path) == ["started 0", "started 1"]
    service.close()


def test_min_max_nodes_run_on_what_slurm_gives(cluster, tmp_path):
    """--nodes 1:2 is sbatch's --nodes=1-2 (this Slurm gives one node when it can start the
    job at once): the runners, the environment and the session count the nodes the job got,
    and torchrun would get --nnodes 1:2."""
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, 2), provider="slurm:hpc", cwd=str(tmp_path),
        backend_options={"nodes": "1:2"})))
    done = wait_session(service, session.id, lambda s: not s.status.active)
    assert done.status is Status.SUCCEEDED, done.detail
    head = json.loads((cluster.shared / "sessions" / session.id / "status.json").read_text())
    got = len(head["node"]["ips"])
    assert head["node"] == {"rank": 0, "ips": ["127.0.0.1"] * got, "nnodes": "1:2"}
    assert done.nodes == got and 1 <= got <= 2
    for rank in range(got):
        assert f"TRAINCTL_NODE_RANK={rank} TRAINCTL_NUM_NODES={got} " in node_log(done, rank)
    script = (cluster.shared / "sessions" / session.id / "job.sh").read_text()
    assert "#SBATCH --nodes=1-2" in script.splitlines()
    service.close()


def test_a_stop_reaches_every_nodes_training_and_the_run_ends_when_all_have(cluster, tmp_path):
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, 3000), provider="slurm:hpc", cwd=str(tmp_path),
        grace_seconds=10, backend_options={"nodes": "2"})))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and marks(tmp_path) == ["started 0", "started 1"])
    stopped = asyncio.run(service.stop(session.id))
    assert stopped.status is Status.STOPPED, stopped.detail
    # one SIGTERM each, from its runner (Slurm signals no training directly)
    assert marks(tmp_path) == ["TERM 0", "TERM 1", "started 0", "started 1"]
    shared = cluster.shared / "sessions" / session.id
    for folder in (shared, shared / "nodes" / "1"):
        assert json.loads((folder / "status.json").read_text())["state"] == "stopped"
        assert "saving on SIGTERM" in (folder / "train.log").read_text()
    service.close()


def test_a_force_stop_ends_every_node_at_once(cluster, tmp_path):
    """USR2 to the batch shell becomes the runners' force stop (SIGUSR1) on every node: the
    trainings are SIGKILLed without their grace (they never note a TERM), by their runner
    only (a signal from Slurm to the step would reach them directly)."""
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=trainer(tmp_path, 3000), provider="slurm:hpc", cwd=str(tmp_path),
        grace_seconds=120, backend_options={"nodes": "2"})))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and marks(tmp_path) == ["started 0", "started 1"])
    stopped = asyncio.run(service.stop(session.id, force=True))
    assert stopped.status is Status.STOPPED, stopped.detail
    shared = cluster.shared / "sessions" / session.id
    for folder in (shared, shared / "nodes" / "1"):
        status = json.loads((folder / "status.json").read_text())
        assert (status["state"], status["reason"]) == ("stopped", "force-stopped by SIGUSR1")
    assert marks(tmp_path) == ["started 0", "started 1"]
    cluster.wait_state(job_of(session), {"COMPLETED", "CANCELLED", None})
    service.close()


def test_the_time_limit_warning_requeues_every_node_and_both_resume(cluster, tmp_path):
    """Slurm's warning (USR1 to the batch shell, sent here as Slurm does: SLURM.md) stops
    every node's training gracefully, the job requeues, and both nodes start again from
    rank 0's newest checkpoint (as DDP does: rank 0 saves, every rank loads)."""
    from trainctl_tui.app.launching import demo_script_path

    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + "max_requeues = 1\n")
    script = ('d=ckpt; [ "$TRAINCTL_NODE_RANK" = 0 ] || d=ckpt-node$TRAINCTL_NODE_RANK; '
              f'exec {sys.executable} -u {demo_script_path()} --steps 150 --step-time 0.1 '
              '--ckpt-every 20 --log-every 20 --checkpoint-dir "$d" "$@"')
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=["bash", "-c", script, "train"], provider="slurm:hpc", cwd=str(tmp_path),
        checkpoint_dir=str(tmp_path / "ckpt"), resume_template="--resume {checkpoint}",
        grace_seconds=20, backend_options={"nodes": "2"})))
    wait_session(service, session.id, lambda s: s.status is Status.RUNNING
                 and "step 40" in node_log(s, 0) and "step 40" in node_log(s, 1))
    cluster.run("scancel", "--batch", "--signal=USR1", job_of(session))
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=150)
    assert done.status is Status.SUCCEEDED, done.detail
    shared = cluster.shared / "sessions" / session.id
    for folder in (shared, shared / "nodes" / "1"):
        status = json.loads((folder / "status.json").read_text())
        assert status["state"] == "succeeded" and len(status["attempts"]) == 2
        resumed = status["attempts"][1]["resumed_from"]
        assert resumed and resumed.startswith(str(tmp_path / "ckpt") + "/")
    notes = (shared / "slurm-signals").read_text().split()
    assert [n for n in notes if not n.isdigit()] == ["USR1", "REQUEUE", "START"]
    service.close()


def job_of(session) -> str:
    return json.loads((Path(session.session_dir) / "remote.json").read_text())["job_id"]


def test_torchrun_meets_through_c10d_and_ddp_ends_with_identical_parameters(cluster, tmp_path):
    """A real torchrun on each node, the rendezvous trainctl adds (c10d on the head's
    29400, the session's id), gloo on CPU: both ranks finish with the same parameters."""
    import torch  # noqa: F401 - the test extra has it; a missing torch fails, never skips
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=[torchrun, "--nproc-per-node", "1", str(FIXTURES / "ddp_train.py"), "5"],
        provider="slurm:hpc", cwd=str(tmp_path), backend_options={"nodes": "2"},
        env={"OMP_NUM_THREADS": "1"})))
    done = wait_session(service, session.id, lambda s: not s.status.active, timeout=180)
    logs = [node_log(done, rank) for rank in (0, 1)]
    assert done.status is Status.SUCCEEDED, (done.detail, logs)
    finals = []
    for rank, log in enumerate(logs):
        # the runner's attempt line shows the command it ran; rank 0 hosts the c10d store
        assert (f"--nnodes 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29400 "
                f"--rdzv-id {session.id} --rdzv-conf is_host={1 - rank} --nproc-per-node 1"
                ) in log
        # torchrun sets the workers' own MASTER_ADDR; TRAINCTL_NODE_RANK is the runner's
        assert re.search(rf"^rank [01]/2 on node {rank} master ", log, re.M), log
        finals += re.findall(r"^final rank (\d)/2 sum (\S+) digest (\w+)$", log, re.M)
    assert sorted(rank for rank, _, _ in finals) == ["0", "1"]  # global ranks, one per node
    assert len({(total, digest) for _, total, digest in finals}) == 1, finals
    service.close()





def test_a_node_that_failed_for_good_stops_the_job_at_once(cluster, tmp_path):
    """Node 1's training exits 3 while node 0's runs on (it would wait in a collective until
    the time limit): the job is stopped gracefully at once and the run fails naming node 1."""
    script = FIXTURES / "fails_on_one_rank.py"
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(
        command=[sys.executable, "-u", str(script), str(tmp_path / "marks"), "1"],
        provider="slurm:hpc", cwd=str(tmp_path), grace_seconds=5,
        backend_options={"nodes": "2"})))
    ended = wait_session(service, session.id, lambda s: not s.status.active)
    assert ended.status is Status.FAILED, ended.detail
    assert re.fullmatch(r"node 1 \(on \S+\) failed: exit code 3; stopped the other nodes",
                        ended.detail), ended.detail
    assert marks(tmp_path) == ["TERM 0", "started 0", "started 1"]  # node 0 saved
    service.close()
