"""Pilot tests: every key of the TUI, driven against real sessions (real runner processes)."""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, OptionList, Static
from uihelpers import (
    FIXTURES,
    launch_command,
    launch_demo,
    notifications,
    session_status,
    wait_for_status,
    wait_until,
)

from trainctl_tui.app.service import Service
from trainctl_tui.core.models import Status
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.confirm import ConfirmScreen
from trainctl_tui.ui.screens.help import HelpScreen, keys_table
from trainctl_tui.ui.screens.launch import LaunchScreen
from trainctl_tui.ui.screens.resume import ResumeScreen
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.screens.sessions import SessionsScreen
from trainctl_tui.ui.widgets.logview import LogView
from trainctl_tui.ui.widgets.plot import PlotView


async def status_of(session_id: str):
    return await asyncio.to_thread(session_status, session_id)


def run(scenario):
    asyncio.run(scenario())


def table_ids(app) -> list[str]:
    table = app.screen.query_one(DataTable)
    return [key.value for key in table.rows]


def cell(app, session_id: str, column: str) -> str:
    value = app.screen.query_one(DataTable).get_cell(session_id, column)
    return str(getattr(value, "plain", value))


def static_text(screen, selector: str) -> str:
    widget = screen.query_one(selector, Static)
    return str(getattr(widget.render(), "plain", widget.render()))


def test_sessions_table_follows_a_live_run_and_opens_its_screen():
    session_id = launch_demo()

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: session_id in table_ids(app), what="row")
            assert cell(app, session_id, "status") == "running"
            assert cell(app, session_id, "name") == "demo"
            await wait_until(pilot, lambda: cell(app, session_id, "loss") != "-",
                             what="loss in the table")
            float(cell(app, session_id, "loss"))
            await wait_until(pilot, lambda: len(cell(app, session_id, "trend").strip()) > 3,
                             what="sparkline")

            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            screen = app.screen
            log = screen.query_one(LogView)
            await wait_until(pilot, lambda: any("train loss" in line for line in log.lines),
                             what="log lines")
            plot = screen.query_one(PlotView)
            await wait_until(pilot, lambda: plot._series and len(plot._series[0][1] or ()) > 2,
                             what="loss series on the chart")
            assert [label for label, _ in plot._series] == ["loss", "val_loss"]
            await wait_until(pilot, lambda: "val_loss" in static_text(screen, "#chart-legend"))

            await pilot.press("m")
            assert static_text(screen, "#chart-legend").startswith("learning rate")
            assert [label for label, _ in plot._series] == ["lr"]

            await pilot.press("slash")
            assert screen.query_one("#search", Input).has_focus
            await pilot.press(*"val loss", "enter")
            assert log.match_line is not None
            assert "val loss" in log.lines[log.match_line]
            assert log.has_focus and not log.auto_scroll
            assert "'val loss'" in str(log.border_title)
            first = log.match_line
            await pilot.press("P")
            assert log.match_line is not None and log.match_line < first

            await pilot.press("f")
            assert log.auto_scroll
            await pilot.press("f")
            assert not log.auto_scroll

            await pilot.press("escape")
            assert isinstance(app.screen, SessionsScreen)

    run(scenario)


def test_stop_resume_kill_and_delete_from_the_keyboard(tmp_path):
    session_id = launch_demo(checkpoint_dir=tmp_path / "ckpt")

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: session_id in table_ids(app))
            await wait_until(pilot, lambda: list((tmp_path / "ckpt").glob("*.safetensors")),
                             what="a checkpoint")

            await pilot.press("d")  # refused while running
            await wait_until(pilot, lambda: any("stop it before deleting" in n
                                                for n in notifications(app)))

            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Stop demo" in static_text(app.screen, "#question")
            await pilot.press("n")  # cancel keeps it running
            await pilot.pause(0.3)
            assert (await status_of(session_id)).status is Status.RUNNING

            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            assert await wait_for_status(pilot, session_id, {"stopped"}) == "stopped"
            await wait_until(pilot, lambda: cell(app, session_id, "status") == "stopped")

            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, ResumeScreen))
            options = app.screen.query_one(OptionList)
            newest = sorted((tmp_path / "ckpt").glob("*.safetensors"))[-1]
            assert newest.name in str(options.get_option_at_index(0).prompt)
            assert "(newest)" in str(options.get_option_at_index(0).prompt)
            await pilot.press("enter")
            # the runner judges the checkpoint before it records the attempt and starts it
            await wait_until(pilot, lambda: any("as attempt 2" in n for n in notifications(app)),
                             what="resumed")
            await wait_for_status(pilot, session_id, {"running"})
            resumed = (await status_of(session_id))
            assert resumed.attempt == 2
            assert resumed.attempts[-1].resumed_from == str(newest)

            await pilot.press("K")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Kill demo" in static_text(app.screen, "#question")
            await pilot.press("y")
            await wait_for_status(pilot, session_id, {"stopped"})
            assert (await status_of(session_id)).attempts[-1].signal == 9

            await wait_until(pilot, lambda: cell(app, session_id, "status") == "stopped")
            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: session_id not in table_ids(app), what="row gone")
            assert Service().store.count() == 0
            assert list((tmp_path / "ckpt").glob("*.safetensors")), "checkpoints must be kept"

    run(scenario)


def test_launch_form_validates_then_launches(tmp_path):
    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(100, 34)) as pilot:
            await pilot.press("n")
            await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            await pilot.press(*"no-such-binary-xyz --flag")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: "command not found" in static_text(
                form, "#launch-error"), what="validation error")
            assert Service().store.count() == 0

            form.query_one("#f-command", Input).value = (
                f"{sys.executable} -c \"print('step 1 loss 0.5')\"")
            form.query_one("#f-name", Input).value = "from-the-form"
            form.query_one("#f-max_restarts", Input).value = "two"
            await pilot.press("ctrl+s")
            assert "max restarts must be a whole number" in static_text(form, "#launch-error")
            form.query_one("#f-max_restarts", Input).value = "2"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen),
                             what="the new session's screen")
            (session,) = Service().store.list()
            assert session.name == "from-the-form" and session.max_restarts == 2
            assert app.screen.session_id == session.id
            log = app.screen.query_one(LogView)
            await wait_until(pilot, lambda: any("step 1 loss 0.5" in x for x in log.lines))

    run(scenario)


def test_filter_help_and_command_palette():
    alpha = launch_command(["true"], "alpha-run")
    beta = launch_command(["true"], "beta-run")

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: set(table_ids(app)) == {alpha, beta})
            await pilot.press("slash", *"alpha")
            await wait_until(pilot, lambda: table_ids(app) == [alpha])
            assert "filter 'alpha': 1 shown" in static_text(app.screen, "#status-line")
            await pilot.press("enter")
            assert app.screen.query_one(DataTable).has_focus
            await pilot.press("escape")
            await wait_until(pilot, lambda: set(table_ids(app)) == {alpha, beta})

            await pilot.press("question_mark")
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
            keys = dict(app.screen.keys)
            assert keys["n"] == "launch a new run"
            assert {"s", "K", "r", "d", "/", "q", "ctrl+p"} <= set(keys)
            assert len(keys) == len(app.screen.keys)  # each key once
            shown = Console(width=200, record=True)
            shown.print(keys_table(app.screen.keys))
            assert "ssh://[user@]host[:port]/path" in shown.export_text()  # not eaten as markup
            await pilot.press("escape")
            assert isinstance(app.screen, SessionsScreen)

            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*"stop session")
            await wait_until(pilot, lambda: "Stop session" in str(
                app.screen.query_one("CommandList").get_option_at_index(0).prompt),
                what="palette hit")
            await pilot.press("escape")

    run(scenario)


def test_watch_mode_opens_any_log_with_metrics():
    log_path = FIXTURES / "hf_trainer.log"

    async def scenario():
        app = TrainctlApp(watch_path=log_path, refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            screen = app.screen
            plot = screen.query_one(PlotView)
            await wait_until(pilot, lambda: plot._series and len(plot._series[0][1] or ()) > 5,
                             what="HF loss series")
            assert "watching" in static_text(screen, "#session-header")
            await pilot.press("s")
            await wait_until(pilot, lambda: any("has no session" in n
                                                for n in notifications(app)))
            await pilot.press("escape")
        assert app.return_code == 0

    run(scenario)


def test_alerts_mark_the_row_and_notify_once():
    bad = launch_command([sys.executable, "-c",
                          "print('step 10 loss 0.9'); print('step 20 loss nan'); "
                          "raise SystemExit(3)"], "diverging")

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: bad in table_ids(app) and
                             cell(app, bad, "alert") == "!", what="alert mark")
            await wait_until(pilot, lambda: len([n for n in notifications(app)
                                                 if "diverging" in n]) >= 2)
            seen = [n for n in notifications(app) if "diverging" in n]
            assert any("exit code 3" in n for n in seen)
            assert any("loss became nan at step 20" in n for n in seen)
            await pilot.pause(1.0)  # several refreshes later: nothing fires twice
            assert [n for n in notifications(app) if "diverging" in n] == seen
            assert "alert" in static_text(app.screen, "#status-line")

    run(scenario)


def test_a_thousand_sessions_stay_navigable(trainctl_home):
    from trainctl_tui.core.models import Session
    from trainctl_tui.store import Store

    with Store(trainctl_home / "trainctl.db") as store:
        for i in range(1000):
            store.insert(Session(id="", name=f"sweep-{i:04d}", provider="local",
                                 command=["python", "t.py"], cwd="/",
                                 session_dir=str(trainctl_home / "sessions" / f"x{i}"),
                                 status=Status.SUCCEEDED, created=1.0 + i, started=1.0 + i,
                                 ended=2.0 + i, attempt=1, exit_code=0))

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.5)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: len(table_ids(app)) == 20,
                             what="active + 20 newest rows")
            await pilot.press("end", "home", "down", "down")
            assert app.screen.query_one(DataTable).cursor_row == 2
            await pilot.press("slash", *"sweep-0999")
            await wait_until(pilot, lambda: len(table_ids(app)) == 1)

    run(scenario)


def test_checkpoints_screen_validate_delete_prune_and_resume(tmp_path):
    from trainctl_tui.ui.screens.checkpoints import CheckpointsScreen
    from trainctl_tui.ui.screens.prune import PruneScreen

    folder = tmp_path / "ckpt"
    session_id = launch_demo(steps=60, step_time=0.001, checkpoint_dir=folder)

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_for_status(pilot, session_id, {"succeeded"})
            await pilot.pause(2.2)  # the scanner treats younger files as maybe unfinished
            await wait_until(pilot, lambda: session_id in table_ids(app))
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, CheckpointsScreen))
            screen = app.screen
            await wait_until(pilot, lambda: len(screen.rows) == 3, what="3 checkpoints")
            assert [r.status for r in screen.rows] == ["ok", "ok", "ok"]
            assert screen.selected.entry.name == "step_000060.safetensors"  # newest on top

            await pilot.press("question_mark")  # the help lists this screen's keys only
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
            keys = dict(app.screen.keys)
            assert {"enter / v", "r", "d", "p", "ctrl+p"} <= set(keys) and "q" not in keys
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.screen is screen)

            await pilot.press("v")
            await wait_until(pilot, lambda: screen.selected.entry.path in screen.deep)
            assert screen.deep[screen.selected.entry.path].status == "ok"

            await pilot.press("d")  # the newest valid one is never deleted
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: any("refusing to delete step_000060" in n
                                                for n in notifications(app)))
            assert (folder / "step_000060.safetensors").exists()

            await pilot.press("p")
            await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen))
            prune = app.screen
            prune.query_one("#keep-last", Input).value = "1"
            await pilot.press("enter")
            await wait_until(pilot, lambda: prune.plan is not None and
                             prune.plan.keep_last == 1, what="preview")
            assert "2 to delete" in static_text(prune, "#prune-preview")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: isinstance(app.screen, CheckpointsScreen))
            await wait_until(pilot, lambda: len(screen.rows) == 1, what="rescan after prune")
            assert sorted(p.name for p in folder.iterdir()) == ["step_000060.safetensors"]

            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: any("as attempt 2" in n for n in notifications(app)),
                             what="resumed")
            resumed = await status_of(session_id)
            assert resumed.attempt == 2
            assert resumed.attempts[-1].resumed_from == str(folder / "step_000060.safetensors")

    run(scenario)


def test_slow_refreshes_stretch_the_cadence_and_unchanged_rows_are_not_redrawn(monkeypatch):
    """Over a slow link: polls space out, and a refresh that finds nothing new redraws no cell."""
    import time as clock

    from trainctl_tui.app.service import Service

    session_id = launch_command(["true"], "steady")
    real_overview = Service.overview
    calls: list[float] = []

    async def slow_overview(self, **kwargs):
        calls.append(clock.monotonic())
        clock.sleep(0.4)  # a slow host: each poll takes 0.4 s
        return await real_overview(self, **kwargs)

    monkeypatch.setattr(Service, "overview", slow_overview)

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.1)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: session_id in table_ids(app))
            table = app.screen.query_one(DataTable)
            updates = []
            original = table.update_cell
            monkeypatch.setattr(table, "update_cell",
                                lambda *a, **k: (updates.append(a), original(*a, **k)))
            await wait_until(pilot, lambda: len(calls) >= 4, timeout=30)
            gaps = [b - a for a, b in zip(calls[1:], calls[2:], strict=False)]
            assert min(gaps) >= 1.0  # 3 x 0.4 s, not the configured 0.1 s
            assert updates == []  # an ended session: nothing changed, so no cell is redrawn

    run(scenario)


def test_the_log_keeps_following_through_resizes_and_wide_lines(tmp_path):
    """Following is a mode: a resize or a horizontal scrollbar appearing must not stop it
    (Log alone only scrolls when the view is already at the end); up pauses, end resumes."""
    log_path = tmp_path / "train.log"
    log_path.write_text("".join(f"step {i} loss {1 / i:.4f}\n" for i in range(1, 80)))

    def append(lines):
        with open(log_path, "a") as log:
            log.writelines(lines)

    async def scenario():
        app = TrainctlApp(watch_path=log_path, refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            log = app.screen.query_one(LogView)
            await wait_until(pilot, lambda: log.line_count >= 79, what="the log's lines")
            assert log.is_vertical_scroll_end and "log · following" in str(log.border_title)

            await pilot.resize_terminal(80, 24)
            append(["x" * 300 + " a wide line\n"] +
                   [f"step {i} loss {1 / i:.4f}\n" for i in range(80, 90)])
            await wait_until(pilot, lambda: log.line_count >= 90, what="the appended lines")
            await wait_until(pilot, lambda: log.max_scroll_x > 0, what="a horizontal scrollbar")
            await wait_until(pilot, lambda: log.is_vertical_scroll_end, what="the end in view")
            assert log.auto_scroll

            await pilot.press("up")
            assert not log.auto_scroll and "paused (f follows)" in str(log.border_title)
            append([f"step {i} loss {1 / i:.4f}\n" for i in range(90, 100)])
            await wait_until(pilot, lambda: log.line_count >= 100, what="more lines")
            assert not log.is_vertical_scroll_end  # paused: the view stays where it was

            await pilot.press("end")
            await wait_until(pilot, lambda: log.is_vertical_scroll_end, what="back at the end")
            assert log.auto_scroll and "log · following" in str(log.border_title)
            await pilot.press("escape")

    run(scenario)


def test_leaving_a_screen_while_its_work_is_in_flight_does_not_crash(tmp_path, monkeypatch):
    """esc on the checkpoints screen while a slow scan (a big dir, a slow ssh host) is still
    running: the scan's answer arrives after the screen's widgets are gone, and must end
    quietly instead of taking the whole app down."""
    import threading

    from trainctl_tui.ui.screens.checkpoints import CheckpointsScreen

    (tmp_path / "ckpt").mkdir()
    gate = threading.Event()
    scanned = threading.Event()
    original = Service.checkpoints

    async def slow_checkpoints(self, *args, **kwargs):
        await asyncio.to_thread(gate.wait, 20)
        try:
            return await original(self, *args, **kwargs)
        finally:
            scanned.set()

    monkeypatch.setattr(Service, "checkpoints", slow_checkpoints)

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))
            app.push_screen(CheckpointsScreen(str(tmp_path / "ckpt")))
            await wait_until(pilot, lambda: isinstance(app.screen, CheckpointsScreen))
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))
            gate.set()
            await wait_until(pilot, scanned.is_set, what="the late scan")
            await pilot.pause(0.5)
            assert isinstance(app.screen, SessionsScreen)
        assert app.return_code in (0, None)

    run(scenario)


def test_an_unfinished_progress_bar_shows_live_in_the_side_panel_and_the_chart(tmp_path):
    from test_live_metrics import epoch_line

    head, redraws = epoch_line()
    log_path = tmp_path / "train.log"
    log_path.write_bytes(head + b"\r".join(redraws[:30]))  # epoch 0, half way, no newline
    loss = f'{float(redraws[29].decode().rsplit("train_loss_step=", 1)[1].rstrip("] ")):.4g}'

    async def scenario():
        app = TrainctlApp(watch_path=log_path, refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            screen = app.screen
            def side() -> str:
                shown = Console(width=60, record=True)
                shown.print(screen.query_one("#side", Static).content)
                return " ".join(shown.export_text().split())

            await wait_until(pilot, lambda: f"loss {loss}" in side(),
                             what="the live loss beside the chart")
            plot = screen.query_one(PlotView)
            x, value = plot._live["loss"]
            assert value == float(loss) and 0 < x < 1  # half way through epoch 0
            assert f"loss {loss}" in static_text(screen, "#chart-legend")
            assert "no metrics yet" not in side()
            await pilot.press("escape")

    run(scenario)
