"""Healing multi-node runs on SSH groups (issue 16): a node lost (its runner and training
SIGKILLed) is replaced on the group's spare host; with no spare and a fixed node count, a node
failed for good, past max_resumes or with the head lost, the other nodes are stopped
gracefully and the run ends with one line naming the node and its host; --nodes MIN:MAX goes
on with fewer. Hosts a, b, c are the test sshd with a workdir each (test_ssh_nodes.py)."""

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
from sshd import sshd_server  # noqa: F401 - the fixture
from test_ssh_nodes import FIXTURES, hosts, info, launch, marks, trainer, wait_ended  # noqa: F401

from trainctl_tui.backends.remote import healing

pytestmark = pytest.mark.timeout(300)

LOST = "its runner is gone without a final status"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_marks(tmp_path: Path, *wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(marks(tmp_path).count(mark) >= wanted.count(mark) for mark in wanted):
        assert time.monotonic() < deadline, marks(tmp_path)
        time.sleep(0.3)


def node_status(workdir: Path, session_id: str, rank: int) -> dict:
    folder = workdir / "sessions" / session_id / (f"nodes/{rank}" if rank else "")
    return json.loads((folder / "status.json").read_text())


def kill_node(workdir: Path, session_id: str, rank: int, *, running: bool = True) -> None:
    """SIGKILL node `rank`'s runner and its training's process group; `running=False`: those
    still there, if any."""
    status = node_status(workdir, session_id, rank)
    assert status["state"] == "running" or not running, status
    for kill, pid in ((os.kill, status["runner_pid"]), (os.killpg, status["child_pid"])):
        if not pid:
            continue
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            if running:
                raise


def wait_detail(session_id: str, detail: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (found := info(session_id))["detail"] != detail:
        assert time.monotonic() < deadline, found
        time.sleep(0.3)
    return found


def test_a_lost_node_is_replaced_on_the_spare_host_and_the_run_finishes(hosts, tmp_path):  # noqa: F811 - the fixture
    config = tmp_path / "config.toml"  # b costs $3.60/h: its loss says what it cost
    config.write_text(config.read_text().replace("[ssh.hosts.b]\n",
                                                 "[ssh.hosts.b]\nprice_per_hour = 3.6\n"))
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--", *trainer(tmp_path, 150))
    wait_marks(tmp_path, "started 0", "started 1")
    kill_node(hosts["b"], session_id, 1)
    wait_marks(tmp_path, "started 0", "started 1", "started 1")  # again, on c
    ended = wait_ended(session_id)
    assert (ended["status"], ended["nodes"]) == ("succeeded", 2), ended
    assert node_status(hosts["c"], session_id, 1)["state"] == "succeeded"
    [loss] = ended["node_losses"]
    assert {key: loss[key] for key in ("node", "host", "new_host", "reason")} == {
        "node": 1, "host": "b", "new_host": "c",
        "reason": f"node 1 (on b) lost: {LOST}; replaced on c (1 of 3)"}
    assert 0 < loss["cost"] < 3.6 * 120 / 3600  # b's hours until it was lost
    assert loss["lost_at"] <= loss["replaced_at"] <= loss["joined_at"]
    assert loss["seconds_lost"] == pytest.approx(loss["joined_at"] - loss["lost_at"], abs=1e-3)
    log = run_cli("logs", session_id, "--node", "1", "-n", "200").stdout
    assert "done 1" in log  # the replacement's log, mirrored into nodes/1/
    remote = json.loads((Path(ended["session_dir"]) / "remote.json").read_text())
    assert [node["host"] for node in remote["nodes"]] == ["a", "c"]


def test_no_spare_host_and_a_fixed_count_stops_the_others_gracefully(hosts, tmp_path):  # noqa: F811 - the fixture
    session_id = launch("--provider", "ssh:a,b", "--cwd", str(tmp_path), "--grace-seconds", "5",
                        "--", *trainer(tmp_path, 3000))
    wait_marks(tmp_path, "started 0", "started 1")
    kill_node(hosts["b"], session_id, 1)
    ended = wait_ended(session_id)
    line = (f"node 1 (on b) lost: {LOST}; no spare host in ssh:a,b to replace it; stopped the "
            "other nodes")
    assert (ended["status"], ended["detail"]) == ("interrupted", line), ended
    assert marks(tmp_path) == ["TERM 0", "started 0", "started 1"]  # node 0 saved
    assert node_status(hosts["a"], session_id, 0)["state"] == "stopped"
    assert [loss["reason"] for loss in ended["node_losses"]] == [line]
    table = run_cli("sessions", env={"COLUMNS": "250"}).stdout
    assert line in table, table




@pytest.mark.parametrize("failing, host, other", [(1, "b", 0), (0, "a", 1)])
def test_a_node_that_failed_for_good_stops_the_others(hosts, tmp_path, failing,  # noqa: F811
                                                      host, other):
    """Node 1's training, or the head's, exits 3 while the other runs: the other would wait
    in a collective; it is stopped gracefully and the run fails saying which node."""
    script = FIXTURES / "fails_on_one_rank.py"
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--grace-seconds", "5", "--", sys.executable, "-u", str(script),
                        str(tmp_path / "marks"), str(failing))
    ended = wait_ended(session_id)
    line = f"node {failing} (on {host}) failed: exit code 3; stopped the other nodes"
    assert (ended["status"], ended["detail"]) == ("failed", line), ended
    assert marks(tmp_path) == [f"TERM {other}", "started 0", "started 1"]
    assert not (hosts["c"] / "sessions" / session_id).exists()  # failed: not replaced


def test_within_min_max_the_run_goes_on_without_a_lost_node(hosts, tmp_path):  # noqa: F811 - the fixture
    session_id = launch("--provider", "ssh:a,b", "--nodes", "1:2", "--cwd", str(tmp_path),
                        "--", *trainer(tmp_path, 150))
    wait_marks(tmp_path, "started 0", "started 1")
    kill_node(hosts["b"], session_id, 1)
    line = (f"node 1 (on b) lost: {LOST}; no spare host in ssh:a,b to replace it: going on "
            "with 1 node")
    running = wait_detail(session_id, line)
    assert running["status"] == "running"
    ended = wait_ended(session_id)
    assert ended["status"] == "succeeded", ended
    assert [loss["reason"] for loss in ended["node_losses"]] == [line]
    assert "done 0" in run_cli("logs", session_id, "-n", "200").stdout


def test_past_max_resumes_a_lost_node_ends_the_run_with_a_hint(hosts, tmp_path):  # noqa: F811 - the fixture
    with open(tmp_path / "config.toml", "a") as config:
        config.write("\n[ssh]\nmax_resumes = 1\n")
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--grace-seconds", "5", "--", *trainer(tmp_path, 3000))
    wait_marks(tmp_path, "started 0", "started 1")
    kill_node(hosts["b"], session_id, 1)
    wait_marks(tmp_path, "started 0", "started 1", "started 1")
    deadline = time.monotonic() + 30
    while node_status(hosts["c"], session_id, 1).get("state") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    kill_node(hosts["c"], session_id, 1)
    ended = wait_ended(session_id)
    line = (f"node 1 (on c) lost: {LOST}; not replaced: max_resumes 1 reached (raise [ssh] "
            f"max_resumes, or trainctl resume {session_id})")
    assert (ended["status"], ended["detail"]) == ("interrupted", line), ended
    assert [loss["reason"] for loss in ended["node_losses"]] == [
        f"node 1 (on b) lost: {LOST}; replaced on c (1 of 1)", line]
    assert marks(tmp_path).count("TERM 0") == 1


def test_a_lost_head_interrupts_the_run_and_resume_restarts_every_node(hosts, tmp_path):  # noqa: F811 - the fixture
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--grace-seconds", "5", "--", *trainer(tmp_path, 3000))
    wait_marks(tmp_path, "started 0", "started 1")
    kill_node(hosts["a"], session_id, 0)
    ended = wait_ended(session_id)
    line = (f"node 0 (on a) lost: {LOST}; stopped the other nodes (trainctl resume "
            f"{session_id} restarts every node from the newest checkpoint)")
    assert (ended["status"], ended["detail"]) == ("interrupted", line), ended
    assert marks(tmp_path) == ["TERM 1", "started 0", "started 1"]  # node 1 saved
    assert not (hosts["c"] / "sessions" / session_id).exists()
    resumed = run_cli("resume", session_id)
    assert resumed.returncode == 0, resumed.stderr
    wait_marks(tmp_path, "started 0", "started 0", "started 1", "started 1")
    assert run_cli("stop", session_id).returncode == 0
    assert wait_ended(session_id)["status"] == "stopped"


def test_torchrun_ddp_heals_a_lost_node_on_the_spare_and_the_ranks_agree(hosts, tmp_path):  # noqa: F811 - the fixture
    """A real c10d rendezvous: node 1's torchrun and worker SIGKILLed mid-run; node 0's
    agent restarts its worker, the replacement on c joins the same rendezvous, both resume
    from the newest checkpoint and end with identical parameters."""
    import torch  # noqa: F401 - the test extra has it; a missing torch fails, never skips
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    # A port of its own: test runs on this machine at once must not meet at 29400.
    endpoint = f"127.0.0.1:{free_port()}"
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--env", "OMP_NUM_THREADS=1", "--", torchrun, "--nproc-per-node", "1",
                        "--rdzv-endpoint", endpoint, str(FIXTURES / "ddp_elastic.py"),
                        str(tmp_path / "ckpt"), "150")
    deadline = time.monotonic() + 120
    while not list((tmp_path / "ckpt").glob("step_*.pt")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    kill_node(hosts["b"], session_id, 1)
    ended = wait_ended(session_id, timeout=240)
    logs = [run_cli("logs", session_id, "--node", str(rank), "-n", "400").stdout
            for rank in range(2)]
    assert ended["status"] == "succeeded", (ended, logs)
    assert [loss["new_host"] for loss in ended["node_losses"]] == ["c"]
    finals = [found for log in logs
              for found in re.findall(r"^final rank (\d)/2 step (\d+) digest (\w+)$", log, re.M)]
    assert sorted(rank for rank, _, _ in finals) == ["0", "1"], logs
    assert len({(step, digest) for _, step, digest in finals}) == 1, finals
    assert re.search(r"^resumed from step [1-9]\d*$", logs[1], re.M), logs[1]  # on c
    assert f"torchrun --nnodes 2 --rdzv-backend c10d --rdzv-id {session_id} --max-restarts 3 " \
        f"--rdzv-conf is_host=0 --nproc-per-node 1 --rdzv-endpoint {endpoint} " in logs[1]
    assert f"[trainctl] node 1 (on b) lost: {LOST}; replaced on c (1 of 3)" in logs[0]


def set_host_key(tmp_path: Path, host: str, key: str, value, more: str = "") -> None:
    """`key = value` in [ssh.hosts.HOST] of the config (a key it has), then `more`."""
    config = tmp_path / "config.toml"
    lines, section = [], None
    for line in config.read_text().splitlines():
        if line.startswith("["):
            section = line
        if section == f"[ssh.hosts.{host}]" and line.startswith(f"{key} = "):
            line = f"{key} = {json.dumps(value)}"
        lines.append(line)
    config.write_text("\n".join(lines) + "\n" + more)


def stop_answering(tmp_path: Path, host: str) -> None:
    """Host `host` of the config no longer answers ssh (its port moved to a closed one; the
    test sshd serves the others), and a host counts as lost after 2 s of that."""
    set_host_key(tmp_path, host, "port", free_port(), "[ssh]\nnode_lost_seconds = 2\n")


def test_a_node_whose_host_stops_answering_is_replaced(hosts, tmp_path):  # noqa: F811
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--grace-seconds", "5", "--", *trainer(tmp_path, 3000))
    wait_marks(tmp_path, "started 0", "started 1")
    stop_answering(tmp_path, "b")
    try:
        wait_marks(tmp_path, "started 0", "started 1", "started 1")  # on c
        found = info(session_id)
        [loss] = found["node_losses"]
        assert re.fullmatch(r"node 1 \(on b\) lost: its host stopped answering for \d+s; "
                            r"replaced on c \(1 of 3\)", loss["reason"]), loss
        assert found["status"] == "running"
        assert run_cli("stop", session_id).returncode == 0
        assert wait_ended(session_id)["status"] == "stopped"
        assert node_status(hosts["c"], session_id, 1)["state"] == "stopped"
    finally:
        kill_node(hosts["b"], session_id, 1, running=False)  # what a split leaves there


def test_a_head_whose_host_stops_answering_stops_the_others(hosts, tmp_path):  # noqa: F811
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--grace-seconds", "5", "--", *trainer(tmp_path, 3000))
    wait_marks(tmp_path, "started 0", "started 1")
    run_cli("sessions")  # the head's status, kept for when it stops answering
    stop_answering(tmp_path, "a")
    try:
        ended = wait_ended(session_id)
        assert ended["status"] == "interrupted", ended
        assert re.fullmatch(rf"node 0 \(on a\) lost: its host stopped answering for \d+s; "
                            rf"stopped the other nodes \(trainctl resume {session_id} restarts "
                            r"every node from the newest checkpoint\)", ended["detail"]), ended
        assert marks(tmp_path) == ["TERM 1", "started 0", "started 1"]
    finally:
        kill_node(hosts["a"], session_id, 0, running=False)  # what a split leaves there


def test_which_nodes_are_lost_or_failed_from_their_probes():
    from trainctl_tui.backends.remote.healing import verdicts

    nodes = [{"host": "a"}, {"host": "b", "started": 100.0}, {"host": "c", "started": 100.0},
             {"host": "d", "started": 100.0}, {"host": "e", "given_up": True}]
    answers = {"0": {"host": "a", "state": "running", "alive": True},
               "1": {"host": "b", "error": "ssh: connect to host b port 22: refused"},
               "2": {"host": "c", "state": None, "alive": False},
               "3": {"host": "old-d", "state": "running", "alive": False},  # before a move
               "4": {"host": "e", "state": "running", "alive": False}}
    assert verdicts(answers, nodes, now=130.0, lost_after=60) == []
    assert nodes[1]["unreachable_since"] == 130.0  # counted from its first silence
    found = verdicts(answers, nodes, now=190.0, lost_after=60)
    assert [(v.rank, v.host, v.kind, v.why, v.since, v.reachable) for v in found] == [
        (1, "b", "lost", "its host stopped answering for 1m00s", 130.0, False),
        (2, "c", "lost", "its runner never started", 100.0, True)]
    answers["1"] = {"host": "b", "state": "running", "alive": True}
    assert [v.rank for v in verdicts(answers, nodes, now=200.0)] == [2]
    assert "unreachable_since" not in nodes[1]  # it answers again
    answers["0"] = {"host": "a", "state": "failed", "exit_code": 3, "heartbeat": 150.0}
    head = verdicts(answers, nodes, now=200.0)[0]
    assert (head.rank, head.kind, head.why, head.since) == (0, "failed", "exit code 3", 150.0)
    answers.update({str(r): {"host": nodes[r]["host"], "state": "succeeded"} for r in (1, 2)})
    answers["3"]["host"] = "d"
    answers["3"]["state"] = "stopped"
    assert verdicts(answers, nodes, now=200.0) == []  # nobody left waits on the head


def test_a_node_lost_after_the_head_ended_is_not_replaced(tmp_path):
    """Nothing would meet a replacement once node 0 has ended: the loss is recorded, the run
    waits for it no more, and no spare is taken."""
    import asyncio
    from types import SimpleNamespace

    from trainctl_tui.backends.remote import healing

    class Nodes(healing.HealingNodes):
        def __init__(self):
            self.kept, self.started = [{"host": "a"}, {"host": "b", "started": 1.0}], []

        def nodes(self):
            return [dict(node) for node in self.kept]

        def save_nodes(self, nodes):
            self.kept = nodes

        def spare(self, used):
            return "c"

        async def start(self, rank, host):
            self.started.append(host)
            return {"host": host}

        async def stop(self, ranks):
            raise AssertionError("nothing to stop")

    group = Nodes()
    answers = {"0": {"host": "a", "state": "succeeded"},
               "1": {"host": "b", "state": "running", "alive": False, "heartbeat": 5.0}}
    session = SimpleNamespace(id="s1", session_dir=str(tmp_path))
    asyncio.run(healing.heal(group, session, answers, now=10.0))
    assert group.started == [] and group.kept[1]["given_up"] is True
    assert [e["reason"] for e in healing.replacements(str(tmp_path))] == [
        f"node 1 (on b) lost: {LOST}; not replaced: node 0 has ended (succeeded)"]


def test_a_look_at_the_nodes_before_a_resume_decides_nothing_after_it(tmp_path):
    """A refresh (the watcher's) probed the run just before `trainctl resume` launched its
    nodes again: what it saw (the killed head, a dead node) is of the last launch, so it
    stops nothing and records nothing; a look at this launch decides as before."""
    import asyncio
    from types import SimpleNamespace

    from trainctl_tui.backends.remote import healing

    class Nodes(healing.HealingNodes):
        def __init__(self, probed_started):
            self.probed_started = probed_started
            self.kept = [{"host": "a", "started": 20.0}, {"host": "b", "started": 20.0}]
            self.stopped = []

        def nodes(self):
            return [dict(node) for node in self.kept]

        def save_nodes(self, nodes):
            self.kept = nodes

        def spare(self, used):
            return None

        async def stop(self, ranks):
            self.stopped.append(ranks)

    session = SimpleNamespace(id="s1", session_dir=str(tmp_path))
    dead = {"0": {"host": "a", "state": "running", "alive": True},
            "1": {"host": "b", "state": "running", "alive": False, "heartbeat": 5.0}}
    before = Nodes(probed_started=10.0)  # the record the probes saw started at 10
    asyncio.run(healing.heal(before, session, dead, now=30.0))
    assert asyncio.run(healing.head_lost(before, session, LOST, 5.0)) is None
    assert asyncio.run(healing.head_unanswered(before, session, now=30.0)) is None
    assert (before.stopped, healing.replacements(str(tmp_path))) == ([], [])
    assert "ended_by" not in before.kept[0] and "unreachable_since" not in before.kept[0]
    now = Nodes(probed_started=20.0)
    asyncio.run(healing.heal(now, session, dead, now=30.0))
    assert now.stopped == [[0, 1]]
    assert now.kept[0]["ended_by"]["reason"] == (
        f"node 1 (on b) lost: {LOST}; nowhere to replace it; stopped the other nodes")


def test_a_watcher_leaving_as_a_resume_comes_watches_the_resumed_run(tmp_path, monkeypatch):
    """The run ended; while its watcher was leaving, `trainctl resume` found the watcher's
    lock held and started none: the watcher looks once more and watches the resumed run to
    its end. A second watcher for a watched run leaves at once."""
    import asyncio
    import fcntl
    from types import SimpleNamespace

    from trainctl_tui.app import watching
    from trainctl_tui.core.models import Status

    monkeypatch.setattr(watching, "EVERY_SECONDS", 0)
    # what the store says at each look: running, ended; resumed (seen when leaving), ended
    says = iter([Status.RUNNING, Status.RUNNING, Status.STOPPED, Status.RUNNING,
                 Status.STOPPED, Status.STOPPED])
    holders = []

    class Service:
        store = SimpleNamespace(get=lambda session_id: SimpleNamespace(
            id=session_id, session_dir=str(tmp_path), status=next(says)))

        async def refresh_session(self, session):
            holders.append(watching.watcher_pid(tmp_path))

    asyncio.run(watching.watch(Service(), "s1"))
    assert holders == [os.getpid()] * 3  # two looks at the first run, one at the resumed
    assert watching.watcher_pid(tmp_path) is None and next(says, None) is None
    fd = os.open(tmp_path / watching.LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another watcher has it
    says = iter([Status.RUNNING])
    asyncio.run(watching.watch(Service(), "s1"))
    os.close(fd)
    assert len(holders) == 3


def slow_start_on(tmp_path: Path, host: str, seconds: float) -> Path:
    """Host `host`'s runner start (`--detach`) takes `seconds` more; the returned file
    appears when one begins."""
    began = tmp_path / f"starting-on-{host}"
    wrapper = tmp_path / f"python-{host}"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *--detach*) touch {began}; sleep {seconds};; '
                       f'esac\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    set_host_key(tmp_path, host, "python", str(wrapper))
    return began


def test_a_stop_while_a_replacement_starts_stops_the_replacement_too(hosts, tmp_path):  # noqa: F811
    """The watcher is starting node 1's replacement on c (slowly) when the user stops the
    run: the stop waits for it, and every node ends, the replacement included."""
    began = slow_start_on(tmp_path, "c", 6)
    session_id = launch("--provider", "ssh:trio", "--nodes", "2", "--cwd", str(tmp_path),
                        "--grace-seconds", "5", "--", *trainer(tmp_path, 3000))
    wait_marks(tmp_path, "started 0", "started 1")
    kill_node(hosts["b"], session_id, 1)
    deadline = time.monotonic() + 90
    while not began.exists():
        assert time.monotonic() < deadline, info(session_id)
        time.sleep(0.2)
    stopped = run_cli("stop", session_id, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stderr.splitlines() == [
        "note: a node of this run is being healed (a replacement starting): stopping every "
        "node once it has started"]
    assert stopped.stdout.startswith(f"session {session_id}: stopped"), stopped.stdout
    ended = wait_ended(session_id)
    assert ended["status"] == "stopped", ended
    [loss] = ended["node_losses"]
    assert loss["reason"] == f"node 1 (on b) lost: {LOST}; replaced on c (1 of 3)"
    status = node_status(hosts["c"], session_id, 1)  # the replacement ran, and was stopped
    assert status["state"] == "stopped", status
    deadline = time.monotonic() + 15  # the runner exits just after its final status
    while any(map(alive, (status["runner_pid"], status["child_pid"]))):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def alive(pid: int) -> bool:
    """A process that runs (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class SlowNodes(healing.HealingNodes):
    """Healing's view of a two-node run on a and b (spare c) whose replacement's start
    waits for `go`."""

    def __init__(self):
        self.kept = [{"host": "a", "started": 10.0}, {"host": "b", "started": 10.0}]
        self.stopped, self.starting, self.go = [], None, None

    def nodes(self):
        return [dict(node) for node in self.kept]

    def save_nodes(self, nodes):
        self.kept = [dict(node) for node in nodes]

    def spare(self, used):
        return "c"

    async def start(self, rank, host):
        self.starting.set()
        await self.go.wait()
        return {"host": host, "started": 30.0}

    async def stop(self, ranks):
        self.stopped.append((ranks, [self.kept[rank]["host"] for rank in ranks]))


def test_a_stop_waits_for_a_replacement_starting_and_healing_decides_nothing_after(tmp_path):
    import asyncio
    from types import SimpleNamespace

    session = SimpleNamespace(id="s1", session_dir=str(tmp_path))
    dead = {"0": {"host": "a", "state": "running", "alive": True},
            "1": {"host": "b", "state": "running", "alive": False, "heartbeat": 5.0}}

    async def scenario(wait: float):
        group = SlowNodes()
        group.starting, group.go = asyncio.Event(), asyncio.Event()
        healer = asyncio.create_task(healing.heal(group, session, dead, now=20.0))
        await group.starting.wait()
        notes = []
        stop = asyncio.create_task(healing.settle_for_stop(str(tmp_path), wait=wait,
                                                           note=notes.append))
        await asyncio.sleep(0.5)
        waited = not stop.done()
        group.go.set()
        await asyncio.gather(healer, stop)
        return group, waited and notes

    group, waited = asyncio.run(scenario(wait=30))
    assert waited == ["a node of this run is being healed (a replacement starting): stopping "
                      "every node once it has started"]  # it waited for the start to end
    # recorded, for the stop to read (what b's dead runner left was stopped, as always)
    assert group.kept[1]["host"] == "c" and group.stopped == [([1], ["b"])]
    [loss] = healing.replacements(str(tmp_path))
    assert loss["reason"] == f"node 1 (on b) lost: {LOST}; replaced on c (1 of 3)"
    c_dead = {**dead, "1": {"host": "c", "state": "running", "alive": False}}
    asyncio.run(healing.heal(group, session, c_dead, now=40.0))  # after the stop: nothing
    assert group.kept[1]["host"] == "c" and len(healing.replacements(str(tmp_path))) == 1

    # A stop that could not wait (a start outlasting its wait): the replacement, once
    # started, is recorded and stopped by the healing itself.
    (tmp_path / healing.STOP_MARK).unlink()
    (tmp_path / "interruptions.json").unlink()
    group, waited = asyncio.run(scenario(wait=0))
    assert not waited
    assert group.stopped == [([1], ["b"]), ([1], ["c"])] and group.kept[1]["host"] == "c"
    assert [e["reason"] for e in healing.replacements(str(tmp_path))] == [
        f"node 1 (on b) lost: {LOST}; replaced on c (1 of 3); stopped with the run"]


def test_a_stop_of_an_earlier_launch_does_not_hold_the_healing_of_a_resumed_one(tmp_path):
    import asyncio
    from types import SimpleNamespace

    session = SimpleNamespace(id="s1", session_dir=str(tmp_path))
    asyncio.run(healing.settle_for_stop(str(tmp_path), wait=1))
    group = SlowNodes()
    assert healing.stop_asked(str(tmp_path), group.kept)  # the launch at 10.0 was stopped...
    group.kept = [{**node, "started": time.time() + 1} for node in group.kept]
    assert not healing.stop_asked(str(tmp_path), group.kept)  # ...not the resumed one

    async def look():
        group.starting, group.go = asyncio.Event(), asyncio.Event()
        group.go.set()
        await healing.heal(group, session, {
            "0": {"host": "a", "state": "running", "alive": True},
            "1": {"host": "b", "state": "running", "alive": False, "heartbeat": 5.0}},
            now=time.time() + 2)

    asyncio.run(look())
    assert group.kept[1]["host"] == "c" and group.stopped == [([1], ["b"])]
