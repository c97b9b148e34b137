"""Pilot tests of the compare keys: space marks sessions, C opens the compare screen, m / x /
S / a / escape there, and S on the session screen; what is shown is checked against figures
computed by hand from the logs of test_compare_cli."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_compare_cli import RUN_A, RUN_B
from textual.widgets import DataTable, Input, Static
from uihelpers import notifications, wait_until

from trainctl_tui.core.models import Session, Status
from trainctl_tui.store import Store
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.compare_screen import CompareScreen
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.screens.sessions import SessionsScreen
from trainctl_tui.ui.screens.watch_prompt import WatchPrompt
from trainctl_tui.ui.widgets.plot import PlotView

T0 = 1_790_000_000.0
RUN_C = "step 1 loss 9.0\nstep 2 loss 8.0\n"
EXTRA = "step 50 loss 0.5\nstep 60 loss 0.25\nstep 70 loss 0.375\n"


@pytest.fixture
def three_sessions(trainctl_home):
    """Top to bottom in the table: run-a (ran 10 min), bert (1h02m05s), third."""
    ids = {}
    with Store(trainctl_home / "trainctl.db") as store:
        for index, (name, log, duration) in enumerate(
                [("third", RUN_C, 60), ("bert", RUN_B, 3725), ("run-a", RUN_A, 600)]):
            folder = trainctl_home / "sessions" / name
            folder.mkdir(parents=True)
            (folder / "train.log").write_text(log)
            start = T0 + index * 10_000
            if name == "bert":  # its runner kept when each step was reached: a pause at 200
                records = [{"runner": start}, {"t": start + 60, "step": 100, "src": "log"},
                           {"t": start + 120, "step": 200, "src": "log"},
                           {"t": start + 1800, "step": 200, "src": "log"},
                           {"t": start + 1860, "step": 300, "src": "log"},
                           {"t": start + 1920, "step": 400, "src": "log"},
                           {"end": start + 1925}]
                (folder / "steps.jsonl").write_text(
                    "".join(json.dumps(record) + "\n" for record in records))
            ids[name] = store.insert(Session(
                id="", name=name, provider="local", command=["python", "train.py"],
                cwd="/srv", session_dir=str(folder), status=Status.SUCCEEDED, created=start,
                started=start, ended=start + duration, attempt=1, exit_code=0)).id
    return ids


def text(screen, selector: str) -> str:
    return screen.query_one(selector, Static).render().plain


def rows(screen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row(key)] for key in table.rows]


def test_marks_then_compare_with_every_key(three_sessions, trainctl_home, tmp_path):
    extra = tmp_path / "other run" / "train.log"
    extra.parent.mkdir()
    extra.write_text(EXTRA)

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            sessions = app.screen
            table = sessions.query_one(DataTable)
            await wait_until(pilot, lambda: table.row_count == 3, what="rows")

            await pilot.press("C")
            assert notifications(app)[-1] == \
                "mark two or more sessions with space to compare them (0 marked)"

            await pilot.press("space")  # run-a marked, the cursor moves to bert
            assert table.get_cell(three_sessions["run-a"], "mark").plain == "✓"
            assert table.get_cell(three_sessions["bert"], "mark").plain == " "
            assert "1 marked (C compares)" in text(sessions, "#status-line")
            await pilot.press("C")
            assert notifications(app)[-1].endswith("(1 marked)")
            await pilot.press("space", "space")  # bert, then third (the last row: stays)
            await pilot.press("space")  # third again: unmarked
            marks = {name: table.get_cell(i, "mark").plain for name, i in three_sessions.items()}
            assert marks == {"run-a": "✓", "bert": "✓", "third": " "}

            await pilot.press("C")
            await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
            screen = app.screen
            await wait_until(pilot, lambda: len(rows(screen)) == 2 and rows(screen)[1][1] != "-",
                             what="the table")
            legend = text(screen, "#compare-legend")
            assert "━━ run-a" in legend and "━━ bert" in legend
            assert text(screen, "#compare-header").startswith("compare loss 1/3  x: step")
            # RUN, LAST, MIN, AT STEP, STEPS, ELAPSED, COST (unknown: blank)
            assert rows(screen) == [["━━ run-a", "1.5", "1.25", "30", "40", "10m00s", ""],
                                    ["━━ bert", "1.2", "1", "200", "400", "1h02m", ""]]
            plot = screen.query_one(PlotView)
            assert [label for label, _ in plot._series] == ["run-a", "bert"]

            # a run that goes on: its new lines reach the table and the chart
            log_a = trainctl_home / "sessions" / "run-a" / "train.log"
            with open(log_a, "a") as out:
                out.write("step 50 | loss 1.00 | lr 0.05\n")
            await wait_until(pilot, lambda: rows(screen)[0][1] == "1", what="the new point")
            assert rows(screen)[0] == ["━━ run-a", "1", "1", "50", "50", "10m00s", ""]
            assert len(plot._series[0][1]) == 5

            await pilot.press("m")  # the series the runs have: loss, val_loss, lr
            assert text(screen, "#compare-header").startswith("compare val_loss 2/3")
            assert rows(screen) == [["━━ run-a", "-", "-", "-", "-", "10m00s", ""],
                                    ["━━ bert", "1.9", "1.9", "400", "400", "1h02m", ""]]
            assert "run-a (no val_loss)" in text(screen, "#compare-legend")
            await pilot.press("m", "m")
            assert text(screen, "#compare-header").startswith("compare loss 1/3")

            await pilot.press("x")  # elapsed time
            assert "x: elapsed (min)" in text(screen, "#compare-header")
            lines = {line.label: line for line in plot.lines(200)}
            # run-a's runner kept no steps.jsonl: its steps at its average pace, marked so
            assert list(lines["run-a"].xs) == [0.0, 2.5, 5.0, 7.5, 10.0]
            assert "run-a (avg pace)" in text(screen, "#compare-legend")
            # bert's: when its runner saw each step (in minutes), the pause where it was
            assert list(lines["bert"].xs) == [1.0, 2.0, 31.0, 32.0]
            assert "bert (" not in text(screen, "#compare-legend")
            await pilot.press("x")
            assert "x: step" in text(screen, "#compare-header")

            await pilot.press("S")
            assert "smoothed 0.6" in text(screen, "#compare-header")
            assert json.loads((trainctl_home / "ui.json").read_text()) == {"smoothing": 0.6}
            lines = {line.label: line for line in plot.lines(200)}
            # 2.5, 1.75, 1.25, 1.5, 1.0 smoothed by hand: last = 0.6 last + 0.4 y, / (1 - 0.6^n)
            assert list(lines["run-a smoothed"].ys) == pytest.approx(
                [2.5, (0.6 + 0.7) / 0.64, (0.78 + 0.5) / 0.784, (0.768 + 0.6) / 0.8704,
                 (0.8208 + 0.4) / 0.92224])
            assert lines["run-a"].color != lines["run-a smoothed"].color  # the faint raw one
            await pilot.press("S", "S", "S")
            assert "smoothed" not in text(screen, "#compare-header")

            await pilot.press("a")
            await wait_until(pilot, lambda: isinstance(app.screen, WatchPrompt))
            prompt = app.screen
            prompt.query_one(Input).value = str(tmp_path / "nope.log")
            await pilot.press("enter")
            await wait_until(pilot, lambda: "no such" in text(prompt, "#watch-error"))
            assert text(prompt, "#watch-error") == f"no such log file: {tmp_path}/nope.log"
            prompt.query_one(Input).value = str(extra)
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.screen is screen and len(rows(screen)) == 3
                             and rows(screen)[2][1] != "-", what="the added log")
            # a log's path keeps its end: 32 characters in the table, 24 in the legend
            assert rows(screen)[2] == ["━━ …" + str(extra)[-31:], "0.375", "0.25", "60",
                                       "70", "", ""]
            assert "━━ …" + str(extra)[-23:] in text(screen, "#compare-legend")

            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))

    asyncio.run(scenario())


def test_s_on_the_session_screen_smooths_its_chart_and_is_kept(three_sessions, trainctl_home):
    async def open_bert(app, pilot):
        table = app.screen.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="rows")
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
        plot = app.screen.query_one(PlotView)
        await wait_until(pilot, lambda: plot._series and len(plot._series[0][1] or ()) == 4,
                         what="the chart")
        return plot

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            plot = await open_bert(app, pilot)
            assert plot.smoothing == 0.0
            await pilot.press("S", "S")
            assert plot.smoothing == 0.9
            assert "smoothed 0.9" in text(app.screen, "#chart-legend")
            smoothed = {line.label: list(line.ys) for line in plot.lines(100)}
            assert smoothed["loss smoothed"] == pytest.approx(
                [3.0, (0.3 * 0.9 + 0.1) / 0.19, (0.37 * 0.9 + 0.1) / 0.271,
                 (0.433 * 0.9 + 0.12) / 0.3439])
        app = TrainctlApp(refresh_seconds=0.2)  # the next start: the same smoothing
        async with app.run_test(size=(120, 35)) as pilot:
            plot = await open_bert(app, pilot)
            assert plot.smoothing == 0.9

    asyncio.run(scenario())
