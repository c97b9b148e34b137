"""`trainctl clusters` (issue 15): each Slurm cluster's partitions and the user's queue, read
from sinfo and squeue. The parsers against output captured from a real Slurm whose nodes
have GPUs (tests/fixtures/slurm, made by its capture.py); the command against the real
clusters of tests/slurm_cluster.py and tests/slurm_gres_cluster.py, reached with
login = "local", and against a login node that does not answer."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from slurm_cluster import slurm_cluster  # noqa: F401 - the session fixture
from slurm_gres_cluster import gres_cluster  # noqa: F401 - the module fixture
from sshd import free_port

from trainctl_tui.backends.slurm.clusters import (
    partition_choices,
    probe_script,
    read_probe,
)
from trainctl_tui.backends.slurm.sinfo import gpu_counts, node_kind, parse_sinfo
from trainctl_tui.backends.slurm.squeue import parse_squeue
from trainctl_tui.core.clusters import ClusterInfo

pytestmark = pytest.mark.timeout(120)

CAPTURED = Path(__file__).parent / "fixtures" / "slurm"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def summary(partition) -> dict:
    data = partition.to_json()
    return {"name": data["name"], "default": data["default"], "nodes": data["nodes"],
            "gpus": data["gpus"], "cpus": data["cpus"], "time_limit": data["time_limit"]}


# -- parsing what a real sinfo and squeue print ---------------------------------------------

def test_idle_gpu_nodes_from_a_real_sinfo():
    assert [summary(p) for p in parse_sinfo(captured("sinfo_idle.txt"))] == [
        {"name": "debug", "default": True, "time_limit": "30:00",
         "nodes": {"total": 1, "idle": 1, "mixed": 0, "allocated": 0, "down": 0},
         "gpus": {"total": 4, "used": 0, "free": 4, "types": {"a100": 4}},
         "cpus": {"total": 8, "idle": 8}},
        {"name": "pair", "default": False, "time_limit": "infinite",
         "nodes": {"total": 2, "idle": 2, "mixed": 0, "allocated": 0, "down": 0},
         "gpus": {"total": 8, "used": 0, "free": 8, "types": {"a100": 6, "v100": 2}},
         "cpus": {"total": 16, "idle": 16}},
    ]


def test_gpus_in_use_and_a_draining_node_from_a_real_sinfo():
    # node1: 3 of 4 A100s used (IDX:0-1,3); node2 draining with a V100 in use: its free
    # GPUs and idle CPUs do not count, its GPUs still count in the total and the used.
    assert [summary(p) for p in parse_sinfo(captured("sinfo_busy.txt"))] == [
        {"name": "debug", "default": True, "time_limit": "30:00",
         "nodes": {"total": 1, "idle": 0, "mixed": 1, "allocated": 0, "down": 0},
         "gpus": {"total": 4, "used": 3, "free": 1, "types": {"a100": 4}},
         "cpus": {"total": 8, "idle": 6}},
        {"name": "pair", "default": False, "time_limit": "infinite",
         "nodes": {"total": 2, "idle": 0, "mixed": 1, "allocated": 0, "down": 1},
         "gpus": {"total": 8, "used": 4, "free": 1, "types": {"a100": 6, "v100": 2}},
         "cpus": {"total": 16, "idle": 6}},
    ]


@pytest.mark.parametrize("gres, counts", [
    ("gpu:a100:4(S:0-1)", {"a100": 4}),
    ("gpu:a100:3(IDX:0-1,3)", {"a100": 3}),
    ("gpu:a100:0(IDX:N/A),gpu:v100:1(IDX:2)", {"a100": 0, "v100": 1}),
    ("gpu:a100:2(S:0),gpu:v100:2(S:1),mps:400(S:0-1)", {"a100": 2, "v100": 2}),
    ("gpu:4", {"": 4}),
    ("gpu:tesla:2,gpu:tesla:2", {"tesla": 4}),
    ("(null)", {}),
    ("", {}),
])
def test_gpu_counts_of_gres_fields(gres, counts):
    assert gpu_counts(gres) == counts


@pytest.mark.parametrize("state, kind", [
    ("idle", "idle"), ("idle~", "idle"), ("idle#", "idle"), ("mixed", "mixed"),
    ("allocated", "allocated"), ("completing", "allocated"), ("reserved", "allocated"),
    ("down*", "down"), ("idle*", "down"), ("drained", "down"), ("draining", "down"),
    ("allocated+drain", "down"), ("fail", "down"), ("unknown", "down"), ("inval", "down"),
])
def test_node_states_sort_into_idle_mixed_allocated_and_down(state, kind):
    assert node_kind(state) == kind


def test_the_users_queue_from_a_real_squeue():
    jobs = parse_squeue(captured("squeue.txt"))
    assert [(j.id, j.name, j.state, j.reason, j.nodes, j.partition) for j in jobs] == [
        ("5", "waits", "PENDING", "Resources", 1, "debug"),
        ("1", "train-a", "RUNNING", "", 1, "debug"),
        ("3", "sweep|lr=3e-4", "RUNNING", "", 1, "debug"),
        ("4", "eval", "RUNNING", "", 1, "pair"),
    ]
    assert jobs[3].time_limit == "365-00:00:00" and jobs[0].time == "0:00"


def test_a_failed_probe_says_which_command_and_why():
    def probe(output: str, code: int = 0) -> ClusterInfo:
        return read_probe(ClusterInfo("hpc", "slurm", "local"), output, code)

    down = probe("me\nslurm_load_partitions: Unable to contact slurm controller "
                 "(connect failure)\n@@trainctl 1\n")
    assert (down.state, down.error) == ("error", "sinfo failed (exit 1): slurm_load_partitions: "
                                        "Unable to contact slurm controller (connect failure)")
    missing = probe("me\nsh: 1: sinfo: not found\n@@trainctl 127\n")
    assert missing.error == ("sinfo not found on the login node: is Slurm installed there, "
                             "and on the PATH of a non-interactive shell?")
    queue = probe("me\n@@trainctl 0\nsqueue: error: Invalid user: me\n@@trainctl 1\n")
    assert queue.error == "squeue failed (exit 1): Invalid user: me"
    shell = probe("sh: syntax error\n", 2)
    assert shell.error == "the probe on the login node failed (exit 2): sh: syntax error"
    fine = probe("me\n" + captured("sinfo_idle.txt") + "@@trainctl 0\n"
                 + captured("squeue.txt") + "@@trainctl 0\n")
    assert fine.state == "up" and fine.user == "me" and len(fine.queue) == 4
    assert [p.name for p in fine.partitions] == ["debug", "pair"]
    assert "sinfo -h -N -O" in probe_script() and "squeue -h -o" in probe_script()


def test_partition_choices_name_the_default_and_what_is_free():
    info = ClusterInfo("hpc", "slurm", partitions=parse_sinfo(captured("sinfo_busy.txt")))
    assert partition_choices(info, None) == [
        ("default (debug)", ""),
        ("debug · 0 idle, 1 mixed of 1 · 1 GPUs free · limit 30:00", "debug"),
        ("pair · 0 idle, 1 mixed of 2 · 1 GPUs free · limit infinite", "pair")]
    assert partition_choices(info, "pair")[0] == ("default (pair)", "")


# -- the command against real clusters ------------------------------------------------------

def write_config(tmp_path: Path, **clusters: str) -> None:
    """[slurm.clusters.NAME] per keyword (its login); a login "dead" is an [ssh.hosts]
    entry on a port nothing listens on."""
    lines = [f"[ssh.hosts.dead]\nhost = \"127.0.0.1\"\nport = {free_port()}\n"]
    for name, login in clusters.items():
        lines.append(f"[slurm.clusters.{name}]\nlogin = \"{login}\"\n"
                     f"workdir = \"{tmp_path / 'shared'}\"\npython = \"{sys.executable}\"\n")
    (tmp_path / "config.toml").write_text("\n".join(lines))


def clusters_cli(cluster, *args: str, env: dict | None = None):
    return run_cli("clusters", *args, env={"SLURM_CONF": str(cluster.conf_path),
                                           "TRAINCTL_SSH_CONFIG": os.devnull, **(env or {})})


@pytest.fixture
def cluster(slurm_cluster):  # noqa: F811 - the session fixture
    slurm_cluster.wait_idle(slurm_cluster.nodes)
    yield slurm_cluster
    slurm_cluster.cancel_all()
    for node in slurm_cluster.nodes:
        if slurm_cluster.node_states().get(node) != "idle":
            slurm_cluster.resume_node(node)


def wait_reason(cluster, job: str, reason: str) -> None:
    cluster._wait_for(lambda: cluster.job_state(job) == ("PENDING", reason), 30,
                      lambda: f"job {job} is {cluster.job_state(job)}, not pending: {reason}")


def test_partitions_and_queue_of_a_busy_cluster_with_a_drained_node(cluster, tmp_path):
    write_config(tmp_path, hpc="local", gone="dead")
    sleep = cluster.write_script("clusters-sleep.sh", "sleep 300\n")
    running = cluster.sbatch(sleep, "-p", "debug", "--exclusive", "-J", "busy-train")
    cluster.wait_state(running, {"RUNNING"})
    waiting = cluster.sbatch(sleep, "-p", "debug", "-J", "waits|for node1")
    wait_reason(cluster, waiting, "Resources")
    cluster.drain("maintenance", node="node2")

    result = clusters_cli(cluster, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    gone, hpc = data["clusters"]
    assert data["version"] == 1
    assert (gone["name"], gone["state"], gone["partitions"], gone["queue"]) == (
        "gone", "unreachable", [], [])
    assert gone["error"].startswith("ssh dead: ") and "refused" in gone["error"]
    assert (hpc["name"], hpc["backend"], hpc["login"], hpc["state"], hpc["error"],
            hpc["user"]) == ("hpc", "slurm", "local", "up", None, "root")
    no_gpus = {"total": 0, "used": 0, "free": 0, "types": {}}
    cpus = cluster.cpus
    assert hpc["partitions"] == [
        {"name": "debug", "default": True, "state": "up", "time_limit": "30:00",
         "nodes": {"total": 1, "idle": 0, "mixed": 0, "allocated": 1, "down": 0},
         "gpus": no_gpus, "cpus": {"total": cpus, "idle": 0}},
        {"name": "pair", "default": False, "state": "up", "time_limit": "infinite",
         "nodes": {"total": 2, "idle": 0, "mixed": 0, "allocated": 1, "down": 1},
         "gpus": no_gpus, "cpus": {"total": 2 * cpus, "idle": 0}},
    ]
    queue = {job["id"]: job for job in hpc["queue"]}
    assert set(queue) == {running, waiting}
    assert {k: queue[waiting][k] for k in ("name", "state", "reason", "nodes", "partition",
                                           "time", "time_limit")} == {
        "name": "waits|for node1", "state": "PENDING", "reason": "Resources", "nodes": 1,
        "partition": "debug", "time": "0:00", "time_limit": "30:00"}
    assert {k: queue[running][k] for k in ("name", "state", "reason", "nodes")} == {
        "name": "busy-train", "state": "RUNNING", "reason": "", "nodes": 1}

    table = clusters_cli(cluster, env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    lines = [line.rstrip() for line in table.stdout.splitlines()]
    assert lines[0].startswith("gone via dead · unreachable: ssh dead: ")
    assert lines[1:5] == [
        "",
        "hpc via this machine · up · root: 1 running, 1 queued",
        "PARTITION  IDLE  MIX  ALLOC  DOWN  GPUS FREE  LIMIT     YOUR JOBS",
        "debug*        0    0      1     0          -  30:00     1 running, 1 queued",
    ]
    assert lines[5] == "pair          0    0      1     1          -  infinite  -"
    assert lines[6].split() == ["JOB", "NAME", "STATE", "REASON", "TIME", "NODES", "PARTITION"]
    assert lines[7].split() == [waiting, "waits|for", "node1", "PENDING", "Resources", "0:00",
                                "1", "debug"]
    assert lines[8].split()[:4] == [running, "busy-train", "RUNNING", "-"]
    assert len(lines) == 9


def test_one_cluster_by_name_and_the_exit_code_when_none_answers(cluster, tmp_path):
    write_config(tmp_path, hpc="local", gone="dead")
    only = clusters_cli(cluster, "hpc")
    assert only.returncode == 0 and only.stdout.startswith("hpc via this machine · up")
    assert "gone" not in only.stdout
    dead = clusters_cli(cluster, "gone")
    assert dead.returncode == 1 and dead.stdout.count("\n") == 1, dead.stdout
    assert dead.stdout.startswith("gone via dead · unreachable: ssh dead: ")


def test_gpus_free_per_partition_on_a_cluster_with_gpus(gres_cluster, tmp_path):  # noqa: F811
    write_config(tmp_path, gpus="local")
    sleep = gres_cluster.write_script("gpu-sleep.sh", "sleep 300\n")
    jobs = [gres_cluster.sbatch(sleep, "-c", "1", *options) for options in (
        ("-p", "debug", "--gres=gpu:a100:3"),
        ("-p", "pair", "--nodelist=node2", "--gres=gpu:v100:1"))]
    for job in jobs:
        gres_cluster.wait_state(job, {"RUNNING"})
    try:
        result = clusters_cli(gres_cluster, "--json")
        table = clusters_cli(gres_cluster, env={"COLUMNS": "120"})
    finally:
        gres_cluster.cancel_all()
    partitions = json.loads(result.stdout)["clusters"][0]["partitions"]
    assert [(p["name"], p["gpus"], p["nodes"]["mixed"]) for p in partitions] == [
        ("debug", {"total": 4, "used": 3, "free": 1, "types": {"a100": 4}}, 1),
        ("pair", {"total": 8, "used": 4, "free": 4, "types": {"a100": 6, "v100": 2}}, 2)]
    rows = [line.split() for line in table.stdout.splitlines()[1:4]]
    assert rows == [
        ["PARTITION", "IDLE", "MIX", "ALLOC", "DOWN", "GPUS", "FREE", "CPUS", "IDLE", "LIMIT",
         "YOUR", "JOBS"],
        ["debug*", "0", "1", "0", "0", "1/4", "7/8", "30:00", "1", "running"],
        ["pair", "0", "2", "0", "0", "4/8", "14/16", "infinite", "1", "running"]]


def test_no_clusters_configured_and_an_unknown_name_are_one_line_errors(tmp_path):
    result = run_cli("clusters")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("no clusters configured: add a [slurm.clusters.NAME] section to "
                             "the config (trainctl config path shows where)\n")
    write_config(tmp_path, hpc="local", gone="dead")
    result = run_cli("clusters", "hpc", "nope")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("unknown cluster 'nope' (configured: gone, hpc); add "
                             "[slurm.clusters.nope] to the config\n")


def test_slurm_missing_on_the_login_node_and_a_controller_that_does_not_answer(
        cluster, tmp_path):
    write_config(tmp_path, hpc="local")
    bare = tmp_path / "bin"  # a PATH with a shell and id, and no Slurm
    bare.mkdir()
    for program in ("sh", "id"):
        os.symlink(f"/bin/{program}" if os.path.exists(f"/bin/{program}")
                   else f"/usr/bin/{program}", bare / program)
    result = clusters_cli(cluster, env={"PATH": str(bare)})
    assert result.returncode == 1
    assert result.stdout == ("hpc via this machine · error: sinfo not found on the login node: "
                             "is Slurm installed there, and on the PATH of a non-interactive "
                             "shell?\n")
    conf = tmp_path / "slurm.conf"  # the controller's port moved: nothing answers there
    conf.write_text("\n".join(f"SlurmctldPort={free_port()}" if line.startswith(
        "SlurmctldPort=") else line for line in cluster.conf_path.read_text().splitlines()))
    result = run_cli("clusters", env={"SLURM_CONF": str(conf)})
    assert result.returncode == 1
    assert result.stdout == ("hpc via this machine · error: sinfo failed (exit 1): "
                             "slurm_load_partitions: Unable to contact slurm controller "
                             "(connect failure)\n")


@pytest.fixture
def login_node(cluster, tmp_path_factory):
    """A real sshd on 127.0.0.1 as the cluster's login node: its sessions get SLURM_CONF
    (SetEnv), as a login node's shell finds /etc/slurm/slurm.conf."""
    from sshd import SshServer, find_sshd, missing

    sshd = find_sshd()
    if sshd is None:
        missing("sshd is not installed (apt-get install openssh-server)")
    server = SshServer(tmp_path_factory.mktemp("login-sshd"), sshd)
    server.sshd_config.write_text(server.sshd_config.read_text().replace(
        "SetEnv PYENV_REHASH_TIMEOUT=1", f"SetEnv PYENV_REHASH_TIMEOUT=1 "
        f"SLURM_CONF={cluster.conf_path}"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_cluster_reached_through_an_ssh_login_node(cluster, login_node, tmp_path):
    entry = login_node.host_entry()
    (tmp_path / "config.toml").write_text(
        "[ssh.hosts.login]\n" + "".join(f"{key} = {json.dumps(value)}\n"
                                        for key, value in entry.items()) +
        f"\n[slurm.clusters.remote]\nlogin = \"login\"\nworkdir = \"{tmp_path / 'shared'}\"\n")
    sleep = cluster.write_script("ssh-sleep.sh", "sleep 300\n")
    job = cluster.sbatch(sleep, "-p", "pair", "-J", "over-ssh")
    cluster.wait_state(job, {"RUNNING"})
    result = run_cli("clusters", "--json", env={
        "TRAINCTL_SSH_CONFIG": str(login_node.config_path), "SLURM_CONF": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    (remote,) = json.loads(result.stdout)["clusters"]
    assert (remote["name"], remote["login"], remote["state"], remote["user"]) == (
        "remote", "login", "up", login_node.user)
    assert [(p["name"], p["nodes"]["mixed"] + p["nodes"]["allocated"], p["nodes"]["idle"])
            for p in remote["partitions"]] == [("debug", 1, 0), ("pair", 1, 1)]
    assert [(j["id"], j["name"], j["state"]) for j in remote["queue"]] == [
        (job, "over-ssh", "RUNNING")]
