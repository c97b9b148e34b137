"""Slurm clusters on the Instances screen (issue 15): each partition's nodes and GPUs and the
user's queue, probed for real on the cluster of tests/slurm_cluster.py (login = "local") and
refreshed like the other rows; a cluster whose login node does not answer is one row."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401 - the session fixture
from sshd import free_port
from textual.widgets import DataTable, Static
from uihelpers import notifications, wait_until

from trainctl_tui.core.clusters import ClusterInfo, Partition, QueuedJob
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens import instances
from trainctl_tui.ui.screens.cluster_rows import (
    ClusterRow,
    cluster_cells,
    describe_cluster_row,
)
from trainctl_tui.ui.screens.instances import InstancesScreen
from trainctl_tui.ui.screens.sessions import SessionsScreen

pytestmark = pytest.mark.timeout(120)


def write_config(tmp_path, *, dead_port: int | None = None) -> None:
    """[slurm.clusters.hpc] on this machine, and `gone` whose login (an [ssh.hosts] entry)
    listens on nothing (it shows as an SSH host too)."""
    port = dead_port or free_port()
    (tmp_path / "config.toml").write_text(
        f"[ssh.hosts.dead]\nhost = \"127.0.0.1\"\nport = {port}\n\n"
        f"[slurm.clusters.hpc]\nlogin = \"local\"\nworkdir = \"{tmp_path / 'shared'}\"\n"
        f"python = \"{sys.executable}\"\n\n"
        f"[slurm.clusters.gone]\nlogin = \"dead\"\nworkdir = \"/scratch/me\"\n")


@pytest.fixture
def cluster(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811 - the session fixture
    slurm_cluster.wait_idle(slurm_cluster.nodes)
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf_path))
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(tmp_path / "no_ssh_config"))
    (tmp_path / "no_ssh_config").write_text("")
    yield slurm_cluster
    slurm_cluster.cancel_all()
    for node in slurm_cluster.nodes:
        if slurm_cluster.node_states().get(node) != "idle":
            slurm_cluster.resume_node(node)


def text(screen, selector: str) -> str:
    rendered = screen.query_one(selector, Static).render()
    return str(getattr(rendered, "plain", rendered))


def cells_of(screen, key: str) -> list[str]:
    table = screen.query_one("#clusters", DataTable)
    return [str(getattr(value, "plain", value)) for value in table.get_row(key)]


def row_keys(screen) -> list[str]:
    return [key.value for key in screen.query_one("#clusters", DataTable).rows]


async def open_instances(pilot) -> InstancesScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
    await pilot.press("i")
    return await wait_until(pilot, lambda: isinstance(pilot.app.screen, InstancesScreen)
                            and pilot.app.screen, what="instances screen")


def test_partitions_and_queue_of_a_real_cluster_refreshed_like_the_other_rows(
        cluster, tmp_path, monkeypatch):
    write_config(tmp_path)
    sleep = cluster.write_script("ui-sleep.sh", "sleep 300\n")
    running = cluster.sbatch(sleep, "-p", "debug", "--exclusive", "-J", "busy-train")
    cluster.wait_state(running, {"RUNNING"})
    waiting = cluster.sbatch(sleep, "-p", "debug", "-J", "next-run")
    cluster.drain("maintenance", node="node2")
    shells = []
    monkeypatch.setattr(instances, "subprocess", types.SimpleNamespace(
        run=lambda argv: shells.append(argv) or subprocess.run(
            [*argv, "true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)))
    cpus = str(cluster.cpus)

    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        app.suspend = contextlib.nullcontext
        async with app.run_test(size=(120, 35)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: screen.probes >= 1, what="first probe")
            assert row_keys(screen) == ["gone", "hpc:debug", "hpc:pair"]
            assert cells_of(screen, "gone") == ["gone", "-", "unreachable", "-", "-", "-", "-",
                                                "-", "-", "-", "-"]
            assert cells_of(screen, "hpc:debug") == [
                "hpc", "debug*", "up", "0", "0", "1", "0", "-", f"0/{cpus}", "30:00",
                "1 running, 1 queued"]
            assert cells_of(screen, "hpc:pair") == [
                "hpc", "pair", "up", "0", "0", "1", "1", "-", f"0/{2 * cluster.cpus}",
                "infinite", "-"]
            assert "2 clusters · 1 unreachable" in text(screen, "#status-line")
            # The machines' table has the ssh host; tab moves to the clusters.
            assert "dead" in text(screen, "#instance-detail")
            await pilot.press("tab", "down")
            detail = text(screen, "#instance-detail").splitlines()
            assert detail[:3] == [
                "hpc via this machine  debug (default) up  limit 30:00",
                f"nodes: 0 idle, 0 mixed, 1 allocated, 0 down of 1 · CPUs 0 idle of {cpus}",
                "your jobs on hpc: 1 running, 1 queued"]
            assert detail[3].split()[:3] == [waiting, "next-run", "PENDING"]
            assert detail[4].split()[:3] == [running, "busy-train", "RUNNING"]

            # A shell on a cluster opens on its login node: none for this machine, ssh else.
            await pilot.press("s")
            await wait_until(pilot, lambda: any("login node is this machine" in n
                                                for n in notifications(app)), what="notice")
            assert shells == []
            await pilot.press("x")
            assert notifications(app)[-1] == "select an EC2 instance or a pod to stop"
            await pilot.press("up", "s")
            await wait_until(pilot, lambda: shells, what="ssh to the dead login node")
            assert shells[0][0] == "ssh" and shells[0][-1] == "127.0.0.1"

            # The queue empties and the node comes back: the next probe shows it.
            cluster.cancel_all()
            cluster.resume_node("node2")
            await wait_until(pilot, lambda: not screen._probing, what="probe after shell")
            probes = screen.probes
            await pilot.press("r")
            await wait_until(pilot, lambda: screen.probes > probes, what="refresh")
            assert cells_of(screen, "hpc:pair")[3:8] == ["2", "0", "0", "0", "-"]
            assert cells_of(screen, "hpc:debug")[-1] == "-"
            await pilot.press("down")
            assert text(screen, "#instance-detail").splitlines()[2] == \
                "your jobs on hpc: none"

    asyncio.run(scenario())


def test_clusters_alone_take_the_screen(cluster, tmp_path):
    (tmp_path / "config.toml").write_text(
        f"[slurm.clusters.hpc]\nlogin = \"local\"\nworkdir = \"{tmp_path / 'shared'}\"\n")

    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: screen.probes >= 1, what="first probe")
            assert not screen.query_one("#instances").display
            assert not screen.query_one("#empty-hint").display
            assert screen.query_one("#clusters", DataTable).has_focus
            assert cells_of(screen, "hpc:debug") == ["hpc", "debug*", "up", "1", "0", "0", "0",
                                                     "-", "-"]
            assert text(screen, "#status-line") == "1 cluster · r probes again"
            assert text(screen, "#instance-detail").startswith(
                "hpc via this machine  debug (default) up  limit 30:00\n"
                "nodes: 1 idle, 0 mixed, 0 allocated, 0 down of 1")

    asyncio.run(scenario())


def test_cluster_cells_with_gpus_and_a_narrow_queue():
    info = ClusterInfo("big", "slurm", login="hpc-login", user="me", partitions=[
        Partition("gpu", default=True, time_limit="2-00:00:00", nodes_idle=2, nodes_mixed=3,
                  nodes_allocated=10, nodes_down=1, gpus_total=64, gpus_used=50, gpus_free=10,
                  gpu_types={"a100": 48, "h100": 16}, cpus_idle=100, cpus_total=1024)],
        queue=[QueuedJob("41", "llama", "RUNNING", time="3:02:01", nodes=4, partition="gpu"),
               QueuedJob("42", "sweep", "PENDING", "Priority", "0:00", nodes=1,
                         partition="gpu,cpu"),
               QueuedJob("43", "old", "COMPLETING", nodes=1, partition="cpu")])
    row = ClusterRow(info, info.partitions[0])
    wide = {k: str(getattr(v, "plain", v)) for k, v in cluster_cells(row).items()}
    assert wide == {"cluster": "big", "partition": "gpu*", "state": "up", "idle": "2",
                    "mixed": "3", "allocated": "10", "down": "1", "gpus": "10/64",
                    "cpus": "100/1024", "limit": "2-00:00:00",
                    "jobs": "1 running, 1 queued"}
    assert cluster_cells(row, narrow=True)["jobs"] == "1R 1PD"
    assert cluster_cells(ClusterRow(info), narrow=True)["jobs"] == "1R 1PD 1?"
    assert describe_cluster_row(row).plain.splitlines() == [
        "big via hpc-login  gpu (default) up  limit 2-00:00:00",
        "nodes: 2 idle, 3 mixed, 10 allocated, 1 down of 16 · GPUs 10 free of 64 "
        "(48x a100, 16x h100) · CPUs 100 idle of 1024",
        "your jobs on big: 1 running, 1 queued, 1 other",
        "  41  llama  RUNNING     3:02:01  4 nodes  gpu",
        "  42  sweep  PENDING        0:00  1 node  gpu,cpu  Priority",
        "  43  old    COMPLETING           1 node  cpu"]


def test_clusters_snapshot(cluster, tmp_path, snap_compare):
    # Port 1 never listens: the refusal is the same on every run. At 80 columns the CPU
    # column (this machine's CPUs) is left out, so the picture is the same on any machine.
    write_config(tmp_path, dead_port=1)
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml").read_text().replace(str(tmp_path), "/scratch/test"))

    async def probed(pilot):
        screen = await open_instances(pilot)
        await wait_until(pilot, lambda: screen.probes >= 1, what="probe")
        await pilot.pause(0.3)

    assert snap_compare(TrainctlApp(refresh_seconds=30), terminal_size=(80, 24),
                        run_before=probed)


# -- the launch form ------------------------------------------------------------------------

def form_text(form, selector: str) -> str:
    return text(form, selector)


def test_launch_form_offers_the_clusters_partitions_and_launches_there(cluster, tmp_path):
    write_config(tmp_path)
    script = tmp_path / "train.py"
    script.write_text("import time\nprint('step 1 loss 0.5', flush=True)\ntime.sleep(60)\n")

    async def scenario():
        from textual.widgets import Input, Select

        from trainctl_tui.app.service import Service
        from trainctl_tui.ui.screens.launch import LaunchScreen

        app = TrainctlApp(refresh_seconds=5)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("n")
            form = await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen)
                                    and app.screen, what="the form")
            assert not form.query_one("#job-fields").display  # local: no job fields
            form.query_one("#f-provider", Select).value = "slurm:hpc"
            await wait_until(pilot, lambda: ("slurm:hpc", "partition") in form.probed,
                             what="sinfo's partitions")
            assert form.probed[("slurm:hpc", "partition")] == [
                ("default (debug)", ""), ("debug · 1 idle of 1 · limit 30:00", "debug"),
                ("pair · 2 idle of 2 · limit infinite", "pair")]
            assert form.query_one("#job-fields").display
            partition = form.query_one("#j-partition", Select)
            assert partition.display and not form.query_one("#j-partition-text").display
            assert partition.value == ""  # the cluster's default unless one is chosen

            form.query_one("#f-command", Input).value = f"{sys.executable} -u {script}"
            form.query_one("#f-cwd", Input).value = str(tmp_path)
            form.query_one("#j-nodes", Input).value = "0"
            await pilot.press("ctrl+s")
            assert form_text(form, "#launch-error") == (
                "--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '0'")
            assert Service().store.count() == 0 and cluster.job_ids() == []
            form.query_one("#j-nodes", Input).value = "1"
            form.query_one("#j-time", Input).value = "soon"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: "sbatch refused" in form_text(
                form, "#launch-error"), what="sbatch's refusal")
            assert form_text(form, "#launch-error") == (
                "slurm hpc: sbatch refused the job: Invalid --time specification")
            assert cluster.job_ids() == []  # the failed session is recorded, nothing queued
            assert [s.status.value for s in Service().store.list()] == ["failed"]

            form.query_one("#j-time", Input).value = "00:05:00"
            partition.value = "pair"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: not isinstance(app.screen, LaunchScreen),
                             what="the launch")
            session = next(s for s in Service().store.list() if s.status.value != "failed")
            spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
            assert spec["backend_options"] == {"nodes": "1", "time": "00:05:00",
                                               "partition": "pair"}
            (job,) = cluster.job_ids()
            shown = cluster.show_job(job)
            # NumNodes is "1-1" while the job waits, "1" once it runs.
            assert (shown["Partition"], shown["TimeLimit"], shown["NumNodes"][:1]) == (
                "pair", "00:05:00", "1")

            # A cluster whose login node does not answer: the partition is typed instead.
            await pilot.press("escape")  # from the new session's screen
            await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))
            await pilot.press("n")
            form = await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen)
                                    and app.screen, what="the form again")
            form.query_one("#f-provider", Select).value = "slurm:gone"
            await wait_until(pilot, lambda: form.query_one("#j-partition-text").display,
                             what="the partition as text")
            assert not form.query_one("#j-partition").display
            info = form_text(form, "#provider-info")
            assert "partitions unknown: the login node is unreachable: ssh dead: " in info
            form.query_one("#j-partition-text", Input).value = "gpu"
            form.query_one("#f-command", Input).value = "python train.py"
            assert form.request().backend_options == {"partition": "gpu"}
            form.query_one("#f-provider", Select).value = "slurm:hpc"  # asked once: kept
            await pilot.pause(0.2)
            assert form.query_one("#j-partition").display
            assert form.request().backend_options == {}

    asyncio.run(scenario())
