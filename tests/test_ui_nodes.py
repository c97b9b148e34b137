"""The TUI on a multi-node run (issue 16): the sessions table says how many nodes, the
session screen follows rank 0's log and `o` steps through the other nodes' logs. The run's
folder is made here as a multi-node run leaves it (rank 0's train.log, node 1's mirrored to
nodes/1/); the runs themselves are tested in test_ssh_nodes.py and test_slurm_nodes.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from textual.widgets import DataTable
from uihelpers import wait_until

from trainctl_tui.app.service import Service
from trainctl_tui.core import paths
from trainctl_tui.core.models import Session, Status
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.widgets.logview import LogView


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
