"""The TUI on a multi-node run (issue 16): the sessions table says how many nodes, the
session screen follows rank 0's log and `o` steps through the other nodes' logs. The run's
folder is made here as a multi-node run leaves it (rank 0's train.log, node 1's mirrored to
nodes/1/); the runs themselves are tested in test_ssh_nodes.py and test_slurm_nodes.py."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from test_ui_snapshots import chart_drawn, fixed_store, make_app, table_filled  # noqa: F401
from textual.widgets import DataTable
from uihelpers import wait_until

from trainctl_tui.app.service import Service
from trainctl_tui.core import paths
from trainctl_tui.core.models import Session, Status
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.widgets.logview import LogView
from trainctl_tui.ui.widgets.node_panel import NodePanel


def two_node_session() -> str:
    service = Service()
    session = Session(id="", name="ddp", provider="ssh:trio", host="trio", command=["t"],
                      cwd="/", session_dir="", status=Status.SUCCEEDED, nodes=2,
                      created=time.time(), started=time.time() - 5, ended=time.time())

    def prepare(s: Session) -> None:
        s.session_dir = str(paths.sessions_dir() / s.id)

    service.store.insert(session, prepare=prepare)
    folder = Path(session.session_dir)
    (folder / "nodes" / "1").mkdir(parents=True)
    (folder / "train.log").write_text("rank zero\nstep 1 loss 0.5\n")
    (folder / "nodes" / "1" / "train.log").write_text("rank one\nstep 1 loss 0.7\n")
    service.close()
    return session.id


def test_the_table_counts_nodes_and_o_steps_through_their_logs():
    session_id = two_node_session()

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_until(pilot, lambda: session_id in [k.value for k in table.rows],
                             what="row")
            assert str(table.get_cell(session_id, "where")) == "2 nodes"
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            log = app.screen.query_one(LogView)
            await wait_until(pilot, lambda: "rank zero" in log.lines, what="rank 0's log")
            assert str(log.border_title).startswith("log · node 0 · ")
            await pilot.press("o")
            await wait_until(pilot, lambda: "rank one" in log.lines, what="node 1's log")
            assert "rank zero" not in log.lines
            assert str(log.border_title).startswith("log · node 1 · ")
            await pilot.press("o")  # after the last node, rank 0 again
            await wait_until(pilot, lambda: "rank zero" in log.lines, what="rank 0 again")

    asyncio.run(scenario())


NODES = {"version": 1, "at": 0.0, "nodes": [
    {"rank": 0, "host": "gpu1", "state": "running", "heartbeat_age": 2.0, "answering": True},
    {"rank": 1, "host": "gpu2", "state": "running", "heartbeat_age": 1.0, "answering": True},
    {"rank": 2, "host": "gpu3", "state": "failed", "exit_code": 1, "answering": False},
    {"rank": 3, "host": "gpu4", "state": "running", "heartbeat_age": 95.0, "answering": True},
]}


def panel_text(app) -> str:
    panel = app.screen.query_one(NodePanel)
    if not panel.display or not panel.size.height:
        return ""
    return "\n".join(strip.text for strip in panel.render_lines(panel.outer_size.region))


def test_the_nodes_panel_lists_each_node_and_marks_the_one_shown():
    session_id = two_node_session()
    service = Service()
    folder = Path(service.store.get(session_id).session_dir)
    service.close()
    (folder / "spec.json").write_text(json.dumps({"node_prices": [1.2, 0.8]}))
    (folder / "nodes.json").write_text(json.dumps({"version": 1, "at": time.time(), "nodes": [
        {"rank": 0, "host": "a", "state": "succeeded", "answering": False},
        {"rank": 1, "host": "b", "state": "failed", "exit_code": 3, "answering": False}]}))

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_until(pilot, lambda: session_id in [k.value for k in table.rows],
                             what="row")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            await wait_until(pilot, lambda: "▸0" in panel_text(app), what="the nodes panel")
            await wait_until(pilot, lambda: "exit 3" in panel_text(app), what="node 1")
            lines = [line.strip("│ ").split() for line in panel_text(app).splitlines()[2:4]]
            assert lines == [["▸0", "a", "succeeded", "-", "-", "$1.20/h"],
                             ["1", "b", "failed", "-", "-", "$0.80/h", "exit", "3"]]
            panel = app.screen.query_one(NodePanel)
            assert (panel.border_title, panel.border_subtitle) == ("2 nodes", "$2.00/h")
            await pilot.press("o")
            await wait_until(pilot, lambda: "▸1" in panel_text(app), what="node 1 marked")

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [(80, 24), (120, 35)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_nodes_panel_snapshot(fixed_store, snap_compare, size):  # noqa: F811
    """Four nodes (one failed, one silent) above the head's GPUs: the chart and the log
    keep their room."""
    from test_ui_gpus import FIXED_USAGE

    from trainctl_tui.app.nodes import NodeRow
    from trainctl_tui.monitor.usage import Usage

    usage = Usage(json.loads(json.dumps(FIXED_USAGE)))
    rows = [NodeRow(rank=raw["rank"], host=raw["host"], state=raw["state"],
                    exit_code=raw.get("exit_code"), heartbeat_age=raw.get("heartbeat_age"),
                    seen=1_790_000_300.0, answering=raw["answering"],
                    usage=usage if raw["state"] == "running" else None, price_per_hour=4.1)
            for raw in NODES["nodes"]]

    async def open_with_nodes(pilot):
        await table_filled(pilot)
        await pilot.press("down", "down", "down", "enter")  # the demo session
        await chart_drawn(pilot)
        screen = pilot.app.screen
        screen.nodes = rows
        screen.render_nodes()
        screen.query_one(NodePanel).show(rows, 0, now=1_790_000_301.0)  # a fixed clock
        await pilot.pause(0.5)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_with_nodes)
