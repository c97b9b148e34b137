"""Snapshot tests of every screen at 80x24 and 120x35, on a fixed store of sessions whose
logs were written by real trainers (tests/fixtures/logs). Update with --snapshot-update."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from textual.widgets import Input
from uihelpers import FIXTURES

from trainctl_tui import store as store_module
from trainctl_tui.core.models import Attempt, Session, Status
from trainctl_tui.store import Store
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.confirm import ConfirmScreen
from trainctl_tui.ui.screens.help import HelpScreen
from trainctl_tui.ui.screens.launch import LaunchScreen
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.widgets.plot import PlotView

T0 = 1_790_000_000.0
SESSIONS = [
    # name, status, log fixture, duration, attempts (exit codes), detail, signal
    ("gpt2-small", Status.SUCCEEDED, "nanogpt.log", 3725, [0], None, None),
    ("bert-finetune", Status.FAILED, "hf_trainer.log", 1260, [1, 1], None, None),
    ("mnist-keras", Status.STOPPED, "keras.log", 95, [None], "stopped by SIGTERM", 15),
    ("demo", Status.SUCCEEDED, "demo.log", 190, [0], None, None),
    ("lit-autoenc", Status.LOST, "lightning_tqdm.log", 4000, [None],
     "runner pid 4242 is gone; last heartbeat 3m ago", None),
]
SIZES = [(80, 24), (120, 35)]


@pytest.fixture
def fixed_store(trainctl_home, monkeypatch):
    ids = (f"s{i}x{i}ab" [:6] for i in itertools.count(1))
    monkeypatch.setattr(store_module, "new_session_id", lambda: next(ids))
    monkeypatch.chdir("/tmp")
    with Store(trainctl_home / "trainctl.db") as store:
        for index, (name, status, log, duration, codes, detail, signal) in enumerate(SESSIONS):
            start = T0 + index * 10_000
            folder = trainctl_home / "sessions" / name
            folder.mkdir(parents=True)
            shutil.copy(FIXTURES / log, folder / "train.log")
            session = store.insert(Session(
                id="", name=name, provider="local", command=["python", "train.py"],
                cwd="/srv/project", session_dir=str(folder), status=status,
                created=start, started=start, ended=start + duration, attempt=len(codes),
                exit_code=codes[-1], signal=signal, detail=detail, max_restarts=2))
            attempts = [Attempt(n=i + 1, started=start, ended=start + duration,
                                exit_code=code, signal=signal if code is None else None)
                        for i, code in enumerate(codes)]
            store.update(session.id, attempts=attempts)
    return trainctl_home


async def table_filled(pilot) -> None:
    app = pilot.app
    for _ in range(100):
        await pilot.pause(0.1)
        table = app.screen.query("DataTable")
        if table and table.first().row_count == len(SESSIONS):
            break
    await pilot.pause(0.3)


async def screen_shown(pilot, screen_type) -> None:
    """Wait for a screen that is pushed after a backend call (slow on a loaded machine)."""
    for _ in range(100):
        if isinstance(pilot.app.screen, screen_type) and pilot.app.focused is not None:
            break
        await pilot.pause(0.1)
    for field in pilot.app.screen.query(Input):  # a blinking cursor makes two pictures
        field.cursor_blink = False
    await pilot.pause(0.3)


async def chart_drawn(pilot) -> None:
    app = pilot.app
    for _ in range(100):
        await pilot.pause(0.1)
        if isinstance(app.screen, SessionScreen):
            plot = app.screen.query_one(PlotView)
            if any(series is not None and len(series) for _, series in plot._series):
                break
    await pilot.pause(0.8)  # the chart redraws at most twice a second


def make_app(**kwargs) -> TrainctlApp:
    return TrainctlApp(refresh_seconds=30, **kwargs)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sessions_screen(fixed_store, snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=table_filled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_session_screen(fixed_store, snap_compare, size):
    async def open_first(pilot):
        await table_filled(pilot)
        await pilot.press("down", "down", "down", "enter")  # the demo session
        await chart_drawn(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_first)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch_form(fixed_store, snap_compare, size):
    async def open_form(pilot):
        await table_filled(pilot)
        await pilot.press("n")
        await screen_shown(pilot, LaunchScreen)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_form)


def test_help(fixed_store, snap_compare):
    async def open_help(pilot):
        await table_filled(pilot)
        await pilot.press("question_mark")
        await screen_shown(pilot, HelpScreen)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=open_help)


def test_stop_confirmation(fixed_store, snap_compare):
    async def ask(pilot):
        await table_filled(pilot)
        await pilot.press("s")  # the newest row: lit-autoenc, lost, its training may live on
        await screen_shown(pilot, ConfirmScreen)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=ask)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_watch_screen(trainctl_home, snap_compare, size):
    # The header shows the log's path: keep it the same wherever the checkout lives.
    fixed = Path("/tmp/trainctl-snapshots/hf_trainer.log")
    fixed.parent.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "hf_trainer.log", fixed)
    app = make_app(watch_path=fixed)
    assert snap_compare(app, terminal_size=size, run_before=chart_drawn)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_checkpoints_screen(trainctl_home, snap_compare, size):
    import os
    import time

    from trainctl_tui.ui.screens.checkpoints import CheckpointsScreen

    # A fixed path and ages that read the same for a minute: "2h00m" ... "4h00m".
    folder = Path("/tmp/trainctl-snapshots/checkpoints")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = FIXTURES.parent / "checkpoints"
    names = ["nanogpt_ckpt.pt", "lightning.ckpt", "model.safetensors", "truncated_zip.pt",
             "evil_zip.pt"]
    now = time.time()
    for index, name in enumerate(names):
        shutil.copy(source / name, folder / name)
        os.utime(folder / name, (now - 7200 - 1800 * index, now - 7200 - 1800 * index))

    async def loaded(pilot):
        for _ in range(100):
            await pilot.pause(0.1)
            screen = pilot.app.screen
            if isinstance(screen, CheckpointsScreen) and len(screen.rows) == len(names):
                break
        await pilot.pause(0.3)

    assert snap_compare(make_app(checkpoints=str(folder)), terminal_size=size,
                        run_before=loaded)


async def compare_drawn(pilot, names=("gpt2-small", "demo"), keys=()) -> None:
    """Mark the sessions `names` with space, press C, wait for the chart and the table."""
    from textual.widgets import DataTable

    from trainctl_tui.ui.screens.compare_screen import CompareScreen

    await table_filled(pilot)
    table = pilot.app.screen.query_one(DataTable)
    shown = {row.session.name: row.session.id for row in pilot.app.screen.rows}
    order = [key.value for key in table.rows]
    for name in names:
        table.move_cursor(row=order.index(shown[name]), animate=False)
        await pilot.press("space")
    await pilot.press("C", *keys)
    for _ in range(100):
        await pilot.pause(0.1)
        screen = pilot.app.screen
        if isinstance(screen, CompareScreen) and len(screen.runs) == len(names) and all(
                len(run.monitor.shown.series.get("loss") or ()) for run in screen.runs):
            break
    await pilot.pause(0.8)  # the chart redraws at most twice a second


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(fixed_store, snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=compare_drawn)


def test_compare_screen_smoothed(fixed_store, snap_compare):
    async def smoothed(pilot):
        await compare_drawn(pilot, keys=("S", "S"))

    assert snap_compare(make_app(), terminal_size=(120, 35), run_before=smoothed)
