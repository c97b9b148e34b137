"""ETA and cost in the sessions table and the session header, and `r` on a run its budget
stopped: a real priced run on this machine, driven from the keyboard."""

from __future__ import annotations

import json
import re
import sys

from conftest import run_cli
from test_budget_runner import TRAIN
from test_ui import cell, run, static_text, table_ids
from textual.widgets import Input
from uihelpers import wait_for_status, wait_until

from trainctl_tui.app.service import Service
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.launch import LaunchScreen
from trainctl_tui.ui.screens.limit_prompt import LimitPrompt
from trainctl_tui.ui.screens.resume import ResumeScreen
from trainctl_tui.ui.screens.session import SessionScreen


def test_eta_cost_and_a_new_budget_from_the_keyboard(trainctl_home, tmp_path):
    (tmp_path / "config.toml").write_text("[defaults]\nheartbeat_seconds = 0.5\n"
                                          "[local]\nprice_per_hour = 3600\n")
    script = tmp_path / "work" / "train.py"
    script.write_text(TRAIN)
    result = run_cli("launch", "--budget", "10", "--checkpoint-dir", "ckpt", "--resume-template",
                     "--resume {checkpoint}", "--", sys.executable, str(script), "1000", "0.1")
    assert result.returncode == 0, result.stderr
    session_id = result.stdout.strip().splitlines()[-1]

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(140, 35)) as pilot:
            await wait_until(pilot, lambda: session_id in table_ids(app))
            await wait_until(pilot, lambda: re.fullmatch(r"\d+m\d\ds",
                                                         cell(app, session_id, "eta")),
                             what="an ETA")
            assert re.fullmatch(r"\$\d+\.\d\d", cell(app, session_id, "cost"))
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            await wait_until(pilot, lambda: "ETA" in static_text(app.screen, "#session-header"))
            header = static_text(app.screen, "#session-header")
            assert re.search(r"step \d+/1,000 · ETA \d+m\d\ds · \$\d+\.\d\d so far · "
                             r"\$\d+\.\d\d to finish · budget \$10\.00", header), header
            await pilot.press("escape")
            await wait_for_status(pilot, session_id, {"stopped"})
            await wait_until(pilot, lambda: cell(app, session_id, "eta") == "-")

            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, LimitPrompt)
                             and app.screen.query("#form-title"))
            assert "it was stopped, budget reached ($10." in static_text(app.screen,
                                                                          "#form-title")
            await pilot.press(*"abc", "enter")
            await wait_until(pilot, lambda: "the budget takes dollars, a number above 0"
                             in static_text(app.screen, "#limit-error"))
            app.screen.query_one(Input).value = ""
            await pilot.press(*"30", "enter")
            await wait_until(pilot, lambda: isinstance(app.screen, ResumeScreen))
            await pilot.press("enter")  # the newest sound checkpoint
            await wait_for_status(pilot, session_id, {"running"})

    run(scenario)
    spec = json.loads((trainctl_home / "sessions" / session_id / "spec.json").read_text())
    assert spec["budget"] == 30.0 and spec["spent_before"] >= 10.0
    run_cli("stop", session_id, "--force")


def test_the_launch_form_takes_a_budget_and_max_hours(trainctl_home, tmp_path):

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("n")
            await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            form.query_one("#f-command", Input).value = f"{sys.executable} -c pass"
            form.query_one("#f-budget", Input).value = "abc"
            await pilot.press("ctrl+s")
            assert static_text(form, "#launch-error") == (
                "budget takes dollars, a number above 0, not 'abc'")
            form.query_one("#f-budget", Input).value = "5"
            await pilot.press("ctrl+s")  # this machine has no price: one line, nothing stored
            await wait_until(pilot, lambda: static_text(form, "#launch-error").startswith(
                "--budget needs what this machine costs per hour"))
            assert Service().store.count() == 0
            form.query_one("#f-budget", Input).value = ""
            form.query_one("#f-max_hours", Input).value = "1.5"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            await wait_until(pilot, lambda: "python" in static_text(app.screen,
                                                                    "#session-header"))

    run(scenario)
    (session,) = Service().store.list()
    spec = json.loads((trainctl_home / "sessions" / session.id / "spec.json").read_text())
    assert spec["max_hours"] == 1.5 and spec["budget"] is None
