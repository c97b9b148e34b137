"""Each node of a multi-node run for the session screen, its alerts and its cost (issue 16).

Two SSH hosts of the test sshd (a workdir each, as separate machines have), each with a
price and its own fake nvidia-smi (the host's `python` is a wrapper that puts it first on
PATH, as a real machine's GPUs are its own): the rows say each node's host, state, heartbeat,
GPUs and $/h; the run's $/h is the sum of the nodes'; a node that fails while the head runs on,
and one whose runner dies, raise an alert naming the node and its host, and the session's
detail says it. The runner and probe parts run for real; the Slurm and price parts below are
checked on folders and configs made here."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from gpu_helpers import A10G, FAKE, FakeGpus
from sshd import sshd_server  # noqa: F401 - the fixture
from test_json_docs import DOC, check_output, read_sections

pytestmark = pytest.mark.timeout(240)

PRICES = {"a": 1.2, "b": 0.8}
# Rank 1 fails after a few steps when told to (argv[3] == "fail1"); rank 0 runs on.
TRAINER = """\
import os, sys, time
rank = os.environ.get("TRAINCTL_NODE_RANK")
with open(sys.argv[1], "a") as f:
    f.write(f"started {rank}\\n")
for i in range(int(sys.argv[2])):
    print(f"step {i}/{sys.argv[2]} loss {1.0 / (i + 1):.3f}", flush=True)
    if rank == "1" and sys.argv[3] == "fail1" and i == 3:
        print("rank 1: out of memory", flush=True)
        sys.exit(1)
    time.sleep(0.2)
"""
TWO_A10G = [A10G, [1, "GPU-0000", "NVIDIA A10G", 5, 1024, 23028, 20.0, 30]]


@pytest.fixture
def hosts(sshd_server, tmp_path, monkeypatch):  # noqa: F811 - pytest fixture injection
    """Hosts a and b, each with a price and GPUs of its own (a: one busy A10G, b: two)."""
    lines = ["[defaults]", "usage_sample_seconds = 0.3", ""]
    gpus = {}
    for name, gpu_rows in (("a", [A10G]), ("b", TWO_A10G)):
        bin_dir = tmp_path / f"bin-{name}"
        bin_dir.mkdir()
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
        smi.chmod(0o755)
        gpus[name] = FakeGpus(bin_dir)
        gpus[name].set(*gpu_rows)
        python = bin_dir / "python"  # the host's python: its GPUs first on PATH
        python.write_text(f"#!/bin/sh\nPATH={bin_dir}:$PATH FAKE_NVIDIA_SMI_STATE="
                          f"{gpus[name].state} exec {sys.executable} \"$@\"\n")
        python.chmod(0o755)
        lines += [f"[ssh.hosts.{name}]", *(f"{key} = {json.dumps(value)}"
                                          for key, value in sshd_server.host_entry().items()),
                  f"workdir = {json.dumps(str(tmp_path / f'ws-{name}'))}",
                  f"python = {json.dumps(str(python))}", f"price_per_hour = {PRICES[name]}", ""]
    (tmp_path / "config.toml").write_text("\n".join(lines))
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    return {name: tmp_path / f"ws-{name}" for name in PRICES}


def launch(tmp_path: Path, *trainer_args: str) -> str:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    result = run_cli("launch", "--provider", "ssh:a,b", "--max-restarts", "0", "--cwd",
                     str(tmp_path), "--grace-seconds", "5", "--", sys.executable, "-u",
                     str(script), str(tmp_path / "marks"), *trainer_args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def info(session_id: str) -> dict:
    data = json.loads(run_cli("sessions", "--json", "--all").stdout)
    return next(s for s in data["sessions"] if s["id"] == session_id)


def wait_for(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def rows_of(session_id: str):
    from trainctl_tui.app.nodes import node_rows
    from trainctl_tui.app.service import Service

    service = Service()
    try:
        return node_rows(service.store.resolve(session_id))
    finally:
        service.close()


def once_alerts(session_id: str) -> list[dict]:
    data = json.loads(run_cli("--once", "--json").stdout)
    return [alert for alert in data["alerts"] if alert["session_id"] == session_id]


def stop_and_wait(session_id: str) -> dict:
    run_cli("stop", session_id)
    return wait_for(lambda: (found := info(session_id))["status"] not in (
        "running", "stopping", "pending", "unreachable") and found, "the run to end")


def test_each_node_has_a_row_with_its_host_state_gpus_and_price_and_the_run_costs_the_sum(
        hosts, tmp_path):
    session_id = launch(tmp_path, "3000", "-")

    def two_rows_with_gpus():
        info(session_id)  # a refresh: the probe writes the rows
        rows = rows_of(session_id)
        return rows if len(rows) == 2 and all(r.usage and r.usage.gpus for r in rows) \
            and all(r.state == "running" for r in rows) else None

    rows = wait_for(two_rows_with_gpus, "both nodes running with their GPUs")
    assert [(r.rank, r.host, r.state, r.price_per_hour) for r in rows] == [
        (0, "a", "running", 1.2), (1, "b", "running", 0.8)]
    assert [[g["util"] for g in r.usage.gpus] for r in rows] == [[97], [97, 5]]
    assert all(r.answering and r.heartbeat_age is not None and r.heartbeat_age < 30
               for r in rows)
    # the JSON outputs carry the same rows, in the shape docs/json.md gives them
    docs = read_sections(DOC.read_text())
    for argv, heading in ((("sessions", "--json"), "trainctl sessions --json"),
                          (("--once", "--json"), "trainctl --once --json")):
        data = check_output(docs, heading, run_cli(*argv))
        [entry] = [s for s in data["sessions"] if s["id"] == session_id]
        assert [(r["rank"], r["host"], r["price_per_hour"], r["answering"])
                for r in entry["node_rows"]] == [(0, "a", 1.2, True), (1, "b", 0.8, True)]
        assert [[g["util"] for g in r["gpus"]] for r in entry["node_rows"]] == [[97], [97, 5]]
    spec = json.loads((Path(info(session_id)["session_dir"]) / "spec.json").read_text())
    assert (spec["price_per_hour"], spec["node_prices"]) == (2.0, [1.2, 0.8])
    found = wait_for(lambda: (s := info(session_id))["cost_to_finish"] and s,
                     "the runner's figures")
    assert found["price_per_hour"] == 2.0  # the runner counts the sum of its nodes
    assert found["cost_to_finish"] == pytest.approx(found["eta_seconds"] / 3600 * 2.0, rel=0.05)
    # node 1 samples into its own folder on its host; the head's stays the session's
    remote_b = hosts["b"] / "sessions" / session_id
    assert (remote_b / "nodes" / "1" / "usage.json").exists()
    assert not (remote_b / "usage.json").exists()
    assert once_alerts(session_id) == []
    assert stop_and_wait(session_id)["status"] == "stopped"
    assert [r.state for r in rows_of(session_id)] == ["stopped", "stopped"]


def test_a_node_that_fails_while_the_head_runs_ends_the_run_naming_it(hosts, tmp_path):
    """A fixed --nodes run cannot go on without a node whose training failed for good (the
    others would wait in a collective): healing stops them and the run fails saying which
    (tests/test_ssh_healing.py has the rest); its row shows the failure."""
    session_id = launch(tmp_path, "3000", "fail1")
    ended = wait_for(lambda: (s := info(session_id))["status"] not in (
        "running", "stopping", "pending", "unreachable") and s, "the run to end")
    assert (ended["status"], ended["detail"]) == (
        "failed", "node 1 (on b) failed: exit code 1; stopped the other nodes")
    rows = rows_of(session_id)
    assert [(r.rank, r.host) for r in rows] == [(0, "a"), (1, "b")]
    assert (rows[1].state, rows[1].exit_code) == ("failed", 1)
    # the run's own failure is the alert; the node's is no longer news once the run ended
    assert [alert["kind"] for alert in once_alerts(session_id)] == ["failed"]


def test_a_node_whose_runner_dies_ends_the_run_when_there_is_no_spare(hosts, tmp_path):
    session_id = launch(tmp_path, "3000", "-")
    wait_for(lambda: (tmp_path / "marks").exists() and
             len((tmp_path / "marks").read_text().splitlines()) == 2, "both nodes started")
    node = json.loads((hosts["b"] / "sessions" / session_id / "nodes" / "1" /
                       "status.json").read_text())
    os.kill(node["runner_pid"], signal.SIGKILL)
    os.killpg(node["child_pid"], signal.SIGKILL)
    ended = wait_for(lambda: (s := info(session_id))["status"] not in (
        "running", "stopping", "pending", "unreachable") and s, "the run to end")
    assert (ended["status"], ended["detail"]) == (
        "interrupted", "node 1 (on b) lost: its runner is gone without a final status; no "
        "spare host in ssh:a,b to replace it; stopped the other nodes")


def test_a_budget_on_a_group_with_an_unpriced_host_is_refused_and_nothing_is_made(
        trainctl_home, tmp_path):
    (tmp_path / "config.toml").write_text(
        '[ssh.hosts.a]\nhost = "127.0.0.1"\nprice_per_hour = 1.2\n'
        '[ssh.hosts.b]\nhost = "127.0.0.1"\n')
    result = run_cli("launch", "--provider", "ssh:a,b", "--budget", "5", "--", "python", "t.py")
    assert (result.returncode, result.stderr.strip()) == (
        2, "--budget needs what ssh a,b costs per hour, which is not known (declare "
        "price_per_hour in [ssh.hosts.NAME]); or use --max-hours")
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []


# --------------------------------------------------------------------------- prices


def test_a_slurm_runs_price_is_per_node_summed_and_min_max_is_priced_at_its_max():
    from trainctl_tui.backends.slurm.price import job_price, node_prices
    from trainctl_tui.backends.slurm.settings import SlurmCluster

    cluster = SlurmCluster(workdir="/scratch", price_per_gpu_hour=2.0, gpus_per_node=4)
    # as the command line gives it: text (a number crashed the price before)
    assert job_price(cluster, {"nodes": "2"}) == 16.0
    assert job_price(cluster, {"nodes": "2:4"}) == 32.0
    assert node_prices(cluster, {"nodes": "2:3", "gpus_per_node": 2}) == [4.0, 4.0, 4.0]
    assert node_prices(cluster, {"nodes": "1"}) is None and node_prices(cluster, {}) is None


class Stand:
    """What the runner's Meter reads of its supervisor."""

    def __init__(self, spec: dict, node, folder):
        self.spec, self.node, self.status = spec, node, {}
        self.status_path = str(folder / "status.json")


def test_the_runner_counts_the_nodes_it_got(tmp_path):
    from trainctl_tui.runner.budget import Meter
    from trainctl_tui.runner.nodes import Node

    spec = {"price_per_hour": 24.0, "node_prices": [8.0, 8.0, 8.0], "spent_before": 0.0,
            "hours_before": 0.0}
    two = Node(1, ["h0", "h1"], "2:3")  # MIN:MAX: Slurm gave two of three
    assert Meter(Stand(spec, two, tmp_path), {}).price == 16.0
    assert Meter(Stand(spec, Node(0, ["h0", "h1", "h2"]), tmp_path), {}).price == 24.0
    assert Meter(Stand({**spec, "node_prices": [8.0, None]}, two, tmp_path), {}).price == 24.0
    assert Meter(Stand(spec, None, tmp_path), {}).price == 24.0  # one node: the spec's price


def test_a_group_costs_the_sum_of_its_hosts_and_nothing_when_one_is_unknown(trainctl_home,
                                                                             tmp_path):
    import asyncio

    from trainctl_tui.app.launching import machine_prices
    from trainctl_tui.backends.ssh.provider import SSHProvider

    (tmp_path / "config.toml").write_text(
        '[ssh.hosts.a]\nhost = "127.0.0.1"\nprice_per_hour = 1.2\n'
        '[ssh.hosts.b]\nhost = "127.0.0.1"\nprice_per_hour = 0.8\n'
        '[ssh.hosts.c]\nhost = "127.0.0.1"\n'
        '[ssh.groups.trio]\nhosts = ["a", "b", "c"]\n')

    def prices(provider: str, options: dict):
        return asyncio.run(machine_prices(SSHProvider(provider), None, options))

    assert prices("a,b", {}) == (2.0, [1.2, 0.8])
    assert prices("trio", {"nodes": "2"}) == (2.0, [1.2, 0.8])
    assert prices("trio", {}) == (None, [1.2, 0.8, None])
    assert prices("a", {}) == (1.2, None)


# --------------------------------------------------------------------------- a shared folder


def test_a_slurm_heads_probe_gives_each_nodes_row_and_gpus(trainctl_home, tmp_path):
    """Slurm's nodes share the session folder: the head's probe reads node R's status and
    usage from nodes/R/; the backend keeps them as rows; a silent node is named."""
    from trainctl_tui.app.nodes import node_alerts, node_rows, with_node_trouble
    from trainctl_tui.backends.remote.node_view import keep_nodes
    from trainctl_tui.core.models import Session, Status
    from trainctl_tui.runner.cli import probe

    now = time.time()
    remote = tmp_path / "cluster" / "s1"
    node = {"rank": 0, "ips": ["cn1", "cn2", "cn3"], "nnodes": "3"}

    def write(path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))

    write(remote / "status.json", {"state": "running", "heartbeat": now, "node": node,
                                   "runner_pid": os.getpid()})
    write(remote / "nodes" / "1" / "status.json", {"state": "failed", "exit_code": 3,
                                                   "heartbeat": now - 5})
    write(remote / "nodes" / "2" / "status.json", {"state": "running", "heartbeat": now - 300})
    gpu = {"index": 0, "name": "NVIDIA A100", "util": 88, "mem_used_mb": 1000,
           "mem_total_mb": 80000, "power_w": 300, "temp_c": 60}
    write(remote / "nodes" / "2" / "usage.json", {"version": 1, "at": now, "gpus": [gpu],
                                                  "samples": [[now, 1, 2, [88], [1000]]]})
    answer = probe(str(remote))
    assert answer["heartbeat_age"] < 5
    assert answer["nodes"]["1"]["exit_code"] == 3
    assert answer["nodes"]["2"]["usage"]["gpus"][0]["util"] == 88
    answer["runner_alive"] = True
    folder = tmp_path / "local" / "s1"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"node_prices": [8.0, 8.0, 8.0]}))
    session = Session(id="s1", name="big", provider="slurm:hpc", command=["x"], cwd="/",
                      session_dir=str(folder), status=Status.RUNNING, nodes=3, attempt=1)
    keep_nodes(session, answer)
    rows = node_rows(session)
    assert [(r.rank, r.host, r.state, r.price_per_hour) for r in rows] == [
        (0, "cn1", "running", 8.0), (1, "cn2", "failed", 8.0), (2, "cn3", "running", 8.0)]
    assert [g["util"] for g in rows[2].usage.gpus] == [88] and rows[1].usage is None
    alerts = node_alerts(session, now)
    assert [a.kind.value for a in alerts] == ["node_failed", "node_lost"]
    assert alerts[0].message == "node 1 (on cn2) failed (exit 3)"
    assert re.fullmatch(r"node 2 \(on cn3\) is gone without a final status \(last heartbeat "
                        r"5m0\ds ago\)", alerts[1].message), alerts[1].message
    assert [a.key for a in alerts] == ["s1:node_failed@node1", "s1:node_lost@node2"]
    assert with_node_trouble(session, {}) == {"detail": f"{alerts[0].message}; "
                                              f"{alerts[1].message}"}
    assert node_alerts(session.replace(status=Status.UNREACHABLE), now) == []
    assert node_alerts(session.replace(status=Status.STOPPED), now) == []


def test_a_slurm_jobs_healing_decision_outlives_the_rows_each_probe_rewrites(trainctl_home,
                                                                            tmp_path):
    """Node 1 failed while the head ran: healing stops the job and records why. The next
    probe (the head stopped by that SIGTERM) rewrites the node rows first, as every probe
    does: the run still ends `failed` naming node 1, and the rows stay readable."""
    import asyncio

    from trainctl_tui.app.nodes import node_rows
    from trainctl_tui.backends.remote.healing import heal_shared
    from trainctl_tui.backends.remote.node_view import keep_nodes
    from trainctl_tui.backends.slurm.node_healing import SlurmNodes
    from trainctl_tui.core.models import Session, Status

    stops = []

    class Cluster:  # the provider as SlurmNodes uses it
        name = "slurm:hpc"

        async def stop(self, session, status, *, force):
            stops.append(force)

    folder = tmp_path / "s1"
    folder.mkdir()
    session = Session(id="s1", name="big", provider="slurm:hpc", command=["x"], cwd="/",
                      session_dir=str(folder), status=Status.RUNNING, nodes=2, attempt=1)
    node = {"rank": 0, "ips": ["cn1", "cn2"], "nnodes": "2"}
    now = time.time()

    def probed(head: dict, alive: bool) -> dict:
        answer = {"status": {"heartbeat": now, "node": node, **head}, "runner_alive": alive,
                  "nodes": {"1": {"state": "failed", "exit_code": 3, "heartbeat": now,
                                  "age": 1.0}}}
        keep_nodes(session, answer)  # what _probe does before healing
        asyncio.run(heal_shared(SlurmNodes(Cluster(), session, answer["status"], "77"),
                                session, answer))
        return answer["status"]

    running = probed({"state": "running"}, True)
    assert stops == [False]  # gracefully, once
    assert (running["state"], running["reason"]) == (
        "stopping", "node 1 (on cn2) failed: exit code 3; stopped the other nodes")
    ended = probed({"state": "stopped", "reason": "stopped by SIGTERM", "exit_code": 0,
                    "ended": now}, False)
    assert (ended["state"], ended["reason"]) == (
        "failed", "node 1 (on cn2) failed: exit code 3; stopped the other nodes")
    assert stops == [False]  # decided once
    assert [(row.rank, row.host, row.state) for row in node_rows(session)] == [
        (0, "cn1", "stopped"), (1, "cn2", "failed")]


def test_a_silent_host_and_a_frozen_runner_are_not_answering_and_a_waiting_node_is_no_alarm():
    from trainctl_tui.app.nodes import NodeRow

    unreachable = NodeRow(rank=1, host="b", state=None, answering=False,
                          error="ssh b: Connection refused")
    frozen = NodeRow(rank=2, host="c", state="running", heartbeat_age=95.0, answering=True)
    waiting = NodeRow(rank=3, host="d", state=None, answering=False)  # not started yet
    assert unreachable.trouble() == ("node_lost", "node 1 (on b) is not answering: ssh b: "
                                                  "Connection refused")
    assert frozen.trouble() == ("node_lost", "node 2 (on c) is not answering: no heartbeat "
                                             "for 1m35s")
    assert waiting.trouble() is None
    assert NodeRow(rank=1, state="stopped", answering=False).trouble() is None
