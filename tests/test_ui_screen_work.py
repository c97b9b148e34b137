"""@screen_work: a screen's worker that wakes up after the screen closed ends quietly; the
same NoMatches on a screen that is still open is a bug and still fails loudly."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import WorkerFailed

from trainctl_tui.ui.screen_work import screen_work


class Probe(Screen):
    def compose(self):
        yield Static("probe", id="x")

    @screen_work()
    async def close_then_update(self) -> str:
        self.app.pop_screen()  # leaves the stack now, loses its widgets a moment later
        await self.query_one("#x").remove()
        self.query_one("#x", Static).update("late")  # NoMatches: the screen is closing
        return "updated"

    @screen_work()
    async def update_a_missing_widget(self) -> str:
        await self.query_one("#x").remove()
        self.query_one("#x", Static).update("oops")  # a bug: the screen is still open
        return "updated"


def test_a_worker_of_a_closed_screen_ends_quietly():
    async def scenario():
        app = App()
        async with app.run_test() as pilot:
            probe = Probe()
            await app.push_screen(probe)
            worker = probe.close_then_update()
            await worker.wait()
            await pilot.pause()
            assert worker.result is None and worker.error is None
            assert probe not in app.screen_stack

    asyncio.run(scenario())


def test_a_missing_widget_on_an_open_screen_still_fails():
    async def scenario():
        app = App()
        async with app.run_test() as pilot:
            probe = Probe()
            await app.push_screen(probe)
            probe.update_a_missing_widget()
            await pilot.pause(0.2)

    with pytest.raises(WorkerFailed, match="No nodes match '#x'"):
        asyncio.run(scenario())
