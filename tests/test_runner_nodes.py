"""One runner per node of a multi-node run (runner/nodes.py): the node environment, the c10d
rendezvous added to torchrun, each node's own log and status, and the launch refusals. Real
runners (the shipped zipapp) and real processes; the multi-node runs on Slurm are in
test_slurm_nodes.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from runner_names import read_status, runner_zipapp

from trainctl_tui.runner.nodes import (
    Node,
    NodeCountError,
    nnodes_conflict,
    parse_node_count,
    torchrun_options,
    with_rendezvous,
)

PY = sys.executable
# Stands in for torchrun: prints the arguments it got and the node environment, as JSON.
FAKE_TORCHRUN = """\
#!{python}
import json, os, sys, time
names = ("TRAINCTL_NODE_RANK", "TRAINCTL_NUM_NODES", "TRAINCTL_NODE_IPS", "MASTER_ADDR",
         "MASTER_PORT", "TRAINCTL_SESSION_ID")
print(json.dumps({{"argv": sys.argv[1:], "env": {{n: os.environ.get(n) for n in names}}}}),
      flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
print("finished", flush=True)
"""


def fake_torchrun(tmp_path: Path) -> str:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    path = folder / "torchrun"
    path.write_text(FAKE_TORCHRUN.format(python=PY))
    path.chmod(0o755)
    return str(path)


def session_folder(tmp_path: Path, command: list[str], **spec) -> Path:
    folder = tmp_path / "session"
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps({
        "id": "s-nodes", "command": command, "cwd": str(tmp_path), "max_restarts": 0,
        "grace_seconds": 5.0, "heartbeat_seconds": 0.2, **spec}))
    return folder


def start_runner(folder: Path, *node_args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, str(runner_zipapp()), str(folder), *node_args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def printed(log: Path) -> dict:
    """The fake torchrun's JSON line in a node's train.log."""
    return json.loads(next(line for line in log.read_text().splitlines()
                           if line.startswith("{")))


# -- the command --------------------------------------------------------------------------

def test_torchrun_gets_the_c10d_rendezvous_unless_the_user_gave_it():
    assert with_rendezvous(["torchrun", "--nproc-per-node", "8", "train.py", "--lr", "1"],
                           "2", "10.0.0.1", "abc") == [
        "torchrun", "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
        "10.0.0.1:29400", "--rdzv-id", "abc", "--nproc-per-node", "8", "train.py", "--lr", "1"]
    # The user's own (either spelling, with or without '='), and the script's options untouched.
    assert with_rendezvous(["/opt/bin/torchrun", "--rdzv_backend=static", "--rdzv-endpoint",
                            "h:1", "train.py", "--rdzv-id", "mine"], "2:4", "10.0.0.1", "abc") == [
        "/opt/bin/torchrun", "--nnodes", "2:4", "--rdzv-id", "abc", "--rdzv_backend=static",
        "--rdzv-endpoint", "h:1", "train.py", "--rdzv-id", "mine"]
    assert with_rendezvous(["python3", "-u", "-m", "torch.distributed.run", "t.py"], "3", "h",
                           "s")[:5] == ["python3", "-u", "-m", "torch.distributed.run", "--nnodes"]
    # Rank 0 hosts the c10d store, the others do not; the user's --rdzv-conf, or another
    # rendezvous backend, is left alone.
    assert with_rendezvous(["torchrun", "t.py"], "2", "h", "s", rank=1)[-3:] == [
        "--rdzv-conf", "is_host=0", "t.py"]
    assert with_rendezvous(["torchrun", "t.py"], "2", "h", "s", rank=0)[-3:] == [
        "--rdzv-conf", "is_host=1", "t.py"]
    assert "--rdzv-conf" not in with_rendezvous(
        ["torchrun", "--rdzv-backend", "etcd", "t.py"], "2", "h", "s", rank=0)
    assert with_rendezvous(["torchrun", "--rdzv_conf=timeout=60", "t.py"], "2", "h", "s",
                           rank=0).count("--rdzv-conf") == 0
    # A backend that heals nodes: torchrun restarts its workers into a new round (the
    # user's own --max-restarts wins), and no node waits for a store address never written.
    assert with_rendezvous(["torchrun", "t.py"], "2", "h", "s", rank=1, restarts=3) == [
        "torchrun", "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h:29400",
        "--rdzv-id", "s", "--max-restarts", "3", "--rdzv-conf", "is_host=0", "t.py"]
    assert with_rendezvous(["torchrun", "--max_restarts=9", "t.py"], "2", "h", "s",
                           restarts=3).count("--max-restarts") == 0
    assert Node(1, ["h", "b"], restarts=3).env()["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in Node(1, ["h", "b"]).env()
    for other in (["python", "train.py", "--nnodes", "9"], ["accelerate", "launch", "t.py"],
                  ["python", "-m", "torch.distributed.launch", "t.py"]):
        assert with_rendezvous(other, "2", "h", "s") == other
    assert torchrun_options(["torchrun", "--standalone", "--nnodes=1:2", "-m", "pkg",
                             "--nnodes", "5"]) == {"--standalone": "", "--nnodes": "1:2",
                                                   "-m": ""}


def test_node_counts_and_a_disagreeing_nnodes():
    assert parse_node_count("2") == (2, 2) and parse_node_count(" 2:4") == (2, 4)
    for bad, line in (("two", "--nodes must be N or MIN:MAX, not 'two'"),
                      ("0", "--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '0'"),
                      ("4:2", "--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '4:2'")):
        with pytest.raises(NodeCountError) as err:
            parse_node_count(bad)
        assert str(err.value) == line
    assert nnodes_conflict(["torchrun", "--nnodes", "2:2", "t.py"], "2") is None
    assert nnodes_conflict(["torchrun", "--nnodes=2:4", "t.py"], "2:4") is None
    assert nnodes_conflict(["python", "t.py", "--nnodes", "7"], "2") is None
    assert nnodes_conflict(["torchrun", "--nnodes", "3", "t.py"], "2") == (
        "torchrun --nnodes 3 disagrees with --nodes 2: drop torchrun's --nnodes (trainctl adds "
        "it) or give the same count")


# -- real runners ---------------------------------------------------------------------------

def test_each_node_runs_the_command_with_its_rank_and_keeps_its_own_log_and_status(tmp_path):
    """Two runners of one session folder on this machine: rank 0 writes the session's
    train.log and status.json, rank 1 nodes/1/. Rank 0 ends first: its leftover sweep must
    not touch rank 1's training, which carries the same session mark."""
    torchrun = fake_torchrun(tmp_path)
    folder = session_folder(tmp_path, [torchrun, "--nproc-per-node", "1", "train.py"])
    args = ("--node-ips", "10.1.0.5,10.1.0.6", "--nnodes", "2")
    second = start_runner(folder, "--node-rank", "1", *args, env={"SLEEP": "3"})
    first = start_runner(folder, "--node-rank", "0", *args)
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert second.wait(timeout=60) == 0, second.stderr.read()
    for rank, log in ((0, folder / "train.log"), (1, folder / "nodes" / "1" / "train.log")):
        seen = printed(log)
        assert seen["argv"] == ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                                "10.1.0.5:29400", "--rdzv-id", "s-nodes", "--rdzv-conf",
                                f"is_host={1 if rank == 0 else 0}",
                                "--nproc-per-node", "1", "train.py"]
        assert seen["env"] == {"TRAINCTL_NODE_RANK": str(rank), "TRAINCTL_NUM_NODES": "2",
                               "TRAINCTL_NODE_IPS": "10.1.0.5,10.1.0.6",
                               "MASTER_ADDR": "10.1.0.5", "MASTER_PORT": "29500",
                               "TRAINCTL_SESSION_ID": "s-nodes"}
        assert "finished" in log.read_text()
    head, other = read_status(str(folder)), read_status(str(folder / "nodes" / "1"))
    assert (head["state"], other["state"]) == ("succeeded", "succeeded")
    assert head["node"] == {"rank": 0, "ips": ["10.1.0.5", "10.1.0.6"], "nnodes": "2"}
    assert other["node"]["rank"] == 1
    assert "finished" not in (folder / "train.log").read_text().split("{")[0]


def test_the_users_env_wins_and_a_plain_command_is_not_changed(tmp_path):
    torchrun = fake_torchrun(tmp_path)
    plain = tmp_path / "bin" / "train"
    os.link(torchrun, plain)  # the same printer under another name: no rendezvous added
    folder = session_folder(tmp_path, [str(plain), "--epochs", "1"],
                            env={"MASTER_PORT": "12345"})
    runner = start_runner(folder, "--node-rank", "0", "--node-ips", "127.0.0.1")
    assert runner.wait(timeout=60) == 0, runner.stderr.read()
    seen = printed(folder / "train.log")
    assert seen["argv"] == ["--epochs", "1"]
    assert seen["env"]["MASTER_PORT"] == "12345" and seen["env"]["TRAINCTL_NUM_NODES"] == "1"


@pytest.mark.parametrize("args, line", [
    (("--node-rank", "2", "--node-ips", "a,b"), "node rank 2 is not one of the 2 nodes"),
    (("--node-rank", "1"), "--node-rank and --node-ips go together"),
    (("--node-rank", "x", "--node-ips", "a,b"), "bad node rank 'x'"),
    (("--node-rank", "0", "--node-ips", "a,,b"), "bad node addresses 'a,,b'"),
    (("--node-rank", "0", "--node-ips", "a,b", "--nnodes", "3:1"),
     "--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '3:1'"),
    (("--node-rank", "0", "--node-ips", "a,b", "--node-restarts", "-1"),
     "bad --node-restarts '-1'"),
])
def test_a_bad_node_argument_is_one_line_and_nothing_starts(tmp_path, args, line):
    folder = session_folder(tmp_path, [PY, "-c", "open('ran', 'w')"])
    runner = start_runner(folder, *args)
    assert runner.wait(timeout=30) == 2
    assert runner.stderr.read() == f"trainctl runner: {line}\n"
    assert sorted(p.name for p in folder.iterdir()) == ["spec.json"]
    assert not (tmp_path / "ran").exists()


def test_probe_and_stop_address_one_node(tmp_path):
    folder = session_folder(tmp_path, [PY, "-c", "import time; time.sleep(60)"],
                            grace_seconds=1.0)
    args = ("--node-ips", "127.0.0.1,127.0.0.1")
    runners = [start_runner(folder, "--node-rank", str(rank), *args) for rank in (0, 1)]
    zipapp = str(runner_zipapp())

    def probe(*node):
        out = subprocess.run([PY, zipapp, "--probe", str(folder), *node], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        return json.loads(out)

    deadline = time.monotonic() + 30
    while not all(probe(*n)["child_alive"] for n in ((), ("--node", "1"))):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert probe("--node", "1")["status"]["node"]["rank"] == 1
    stopped = subprocess.run([PY, zipapp, "--stop", str(folder), "--node", "1"],
                             capture_output=True, text=True, timeout=30)
    assert stopped.stdout == "runner signalled\n"
    assert runners[1].wait(timeout=30) == 0
    assert read_status(str(folder / "nodes" / "1"))["state"] == "stopped"
    assert runners[0].poll() is None and probe()["child_alive"]  # the other node runs on
    subprocess.run([PY, zipapp, "--stop", str(folder)], check=True, timeout=30,
                   capture_output=True)
    assert runners[0].wait(timeout=30) == 0
    assert read_status(str(folder))["state"] == "stopped"


def test_a_line_in_the_signals_file_is_a_signal_to_the_runner(tmp_path):
    """How a batch shell stops runners on other nodes (a shared folder, no signal to the
    step): TERM is graceful; the file may hold lines from before the runner started."""
    folder = session_folder(tmp_path, [PY, "-c", "import time; time.sleep(60)"])
    signals = tmp_path / "node-signals"
    signals.write_text("HUP 1\n")  # not one the runner takes: ignored
    runner = start_runner(folder, "--node-rank", "1", "--node-ips", "h0,h1", "--signals-from",
                          str(signals))
    deadline = time.monotonic() + 30
    while (read_status(str(folder / "nodes" / "1")) or {}).get("state") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with open(signals, "a") as handle:
        handle.write("TERM 2\n")
    assert runner.wait(timeout=30) == 0
    status = read_status(str(folder / "nodes" / "1"))
    assert (status["state"], status["reason"]) == ("stopped", "stopped by SIGTERM")


# -- launch refusals --------------------------------------------------------------------------

@pytest.fixture
def slurm_config(tmp_path):
    """A Slurm cluster in the config: the refusals come before anything reaches it."""
    shared = tmp_path / "shared"
    (tmp_path / "config.toml").write_text(
        f"[slurm.clusters.hpc]\nlogin = \"local\"\nworkdir = \"{shared}\"\n")
    return shared


@pytest.mark.parametrize("args, line", [
    (("--provider", "slurm:hpc", "--nodes", "2", "--", "torchrun", "--nnodes", "3", "t.py"),
     "torchrun --nnodes 3 disagrees with --nodes 2: drop torchrun's --nnodes (trainctl adds "
     "it) or give the same count"),
    (("--provider", "slurm:hpc", "--nodes", "2:4", "--", "torchrun", "--nnodes=2", "t.py"),
     "torchrun --nnodes 2 disagrees with --nodes 2:4: drop torchrun's --nnodes (trainctl adds "
     "it) or give the same count"),
    (("--provider", "slurm:hpc", "--nodes", "two", "--", "python", "t.py"),
     "--nodes must be N or MIN:MAX, not 'two'"),
    (("--nodes", "2", "--", PY, "-c", "1"),
     "--nodes is for runs on ssh or aws or slurm (--provider ssh:NAME)"),
])
def test_bad_nodes_at_launch_are_one_line_and_nothing_is_created(slurm_config, args, line):
    for dry in ((), ("--dry-run",)) if "slurm:hpc" in args else ((),):
        result = run_cli("launch", *dry, *args)
        assert (result.returncode, result.stderr.strip()) == (2, line), result.stderr
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []
    assert not slurm_config.exists()


def test_a_head_that_ended_is_held_until_every_node_has():
    from trainctl_tui.backends.remote.nodes import hold_for_nodes

    head = {"state": "succeeded", "ended": 5.0, "node": {"rank": 0, "ips": ["a", "b", "c"]}}
    answer = {"status": head, "runner_alive": False,
              "nodes": {"1": {"state": "succeeded"}, "2": {"state": "running", "age": 1.0}}}
    hold_for_nodes(answer)
    assert answer["status"]["state"] == "running" and answer["status"]["ended"] is None
    assert answer["status"]["reason"] == "node 0 succeeded; waiting for node 2"
    assert answer["runner_alive"] is True
    stopped = {"status": {**head, "state": "stopped"}, "nodes": {"1": {"state": "stopping",
                                                                       "age": 600.0}}}
    hold_for_nodes(stopped)  # node 2 never wrote a status; node 1 has stopped beating
    assert stopped["status"]["state"] == "stopping" and stopped["runner_alive"] is False
    assert stopped["status"]["reason"] == "node 0 stopped; waiting for node 1, 2"
    done = {"status": head, "nodes": {"1": {"state": "failed"}, "2": {"state": "stopped"}}}
    hold_for_nodes(done)
    assert done["status"] is head
