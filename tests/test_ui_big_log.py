"""A big log on the session screen: its tail at once, the chart filled in from the history
with a progress note, and from the metrics index at the next open."""

from __future__ import annotations

import asyncio

from textual.widgets import Static
from uihelpers import wait_until

from trainctl_tui.monitor import session_monitor
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.widgets.logview import LogView

STEPS = 600_000


def legend(screen) -> str:
    widget = screen.query_one("#chart-legend", Static)
    return str(getattr(widget.render(), "plain", widget.render()))


def open_watch(log, check) -> None:
    async def scenario():
        app = TrainctlApp(watch_path=log, refresh_seconds=0.2)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            await check(app.screen, pilot)
            await pilot.press("escape")

    asyncio.run(scenario())


def test_a_big_log_shows_its_tail_then_fills_the_chart_then_opens_from_its_index(
        trainctl_home, tmp_path, monkeypatch):
    monkeypatch.setattr(session_monitor, "HISTORY_SLICE", 256 << 10)
    monkeypatch.setattr(session_monitor, "PREVIEW_AFTER", 1 << 20)
    monkeypatch.setattr(session_monitor, "PREVIEW_BYTES", 256 << 10)
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        out.writelines(f"step {i} loss {1 / i:.6f} lr 3.0e-4\n" for i in range(1, STEPS + 1))
    last_line = f"step {STEPS} loss {1 / STEPS:.6f} lr 3.0e-4"

    async def first_open(screen, pilot):
        view = screen.query_one(LogView)
        await wait_until(pilot, lambda: "reading history" in legend(screen),
                         what="the history progress note")
        # while the history is read, the log's tail is there, and the chart's newest part
        assert any(last_line in line for line in view.lines[-3:])
        loss = screen.monitor.metrics.series.get("loss")
        assert loss is None or len(loss) < STEPS
        shown = screen.monitor.shown.series["loss"]
        assert shown.xs[-1] == STEPS and shown.ys[-1] == round(1 / STEPS, 6)
        assert 5000 < len(shown) < STEPS / 2  # the log's last 256 KiB
        await wait_until(pilot, lambda: "reading history" not in legend(screen), timeout=120,
                         what="the end of the history")
        assert len(screen.monitor.metrics.series["loss"]) == STEPS

    open_watch(log, first_open)

    async def second_open(screen, pilot):
        await wait_until(pilot, lambda: screen.monitor and screen.monitor.history
                         and "loss" in screen.monitor.metrics.series, what="the series")
        assert len(screen.monitor.metrics.series["loss"]) == STEPS  # at once, from the index
        assert screen.monitor.history.bytes_read < 1000
        assert "reading history" not in legend(screen)

    open_watch(log, second_open)
