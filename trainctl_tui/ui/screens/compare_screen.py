"""Marked sessions side by side: one series of every run on one chart (by step or elapsed
time, smoothed or not), and below it the table `trainctl compare` prints. Runs that are
still going are followed as the session screen follows one (monitor/session_monitor.py);
`a` adds a log trainctl did not launch."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ...app.compare import axis_signature, run_axis, run_cost, run_elapsed, run_labels
from ...app.log_sources import LogSource
from ...core.errors import TrainctlError
from ...monitor.compare import (
    PACE,
    ElapsedAxis,
    default_metric,
    figures,
    metric_names,
    time_unit,
)
from ...monitor.session_monitor import SessionMonitor
from ...render.compare import COLUMNS, cells, short_label
from ..plotting import SERIES_COLORS
from ..screen_work import screen_work
from ..visibility import in_view
from ..widgets.plot import PlotView

COMPARE_KEYS = [
    ("m", "next series the runs have: loss, val_loss, then the others by name"),
    ("x", "x axis: step / elapsed time (when its runner saw each step; else, marked, at "
          "the run's average pace)"),
    ("S", "smoothing: off, 0.6, 0.9, 0.99 (TensorBoard's moving average; kept)"),
    ("a", "add a log trainctl did not launch: a path, or ssh://[user@]host[:port]/path"),
    ("esc", "back to all sessions"),
    ("?", "this help"),
]
LABEL_WIDTH = 24  # a run's name in the legend


@dataclass
class Run:
    source: LogSource
    monitor: SessionMonitor
    label: str = ""
    axis: ElapsedAxis | None = None  # read again when its steps.jsonl changed
    axis_key: tuple | None = None  # that file's (mtime, size) when it was read


class CompareScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("m", "next_metric", "Series"),
        Binding("x", "toggle_x", "X axis"),
        Binding("S", "cycle_smoothing", "Smooth"),
        Binding("a", "add_log", "Add a log"),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit", show=False),
    ]
    HELP_TITLE = "Compare"
    HELP_KEYS = COMPARE_KEYS

    def __init__(self, session_ids: list[str]):
        super().__init__()
        self.session_ids = session_ids
        self.runs: list[Run] = []
        self.patterns: tuple[str, ...] = ()
        self.metric: str | None = None  # None: the default (train loss, else eval loss)
        self.by_time = False
        self._shown: dict[str, tuple[str, ...]] = {}  # table row -> the cells drawn

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-header")
        yield Static("", id="compare-legend")
        yield PlotView(id="compare-plot", min_interval=0.5, fast=True)
        yield DataTable(id="compare-table", cursor_type="none", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.query_one(PlotView).use_saved_smoothing()
        self.render_all()
        self.load()

    def on_unmount(self) -> None:
        for run in self.runs:
            run.monitor.close()

    @screen_work(exclusive=True, group="compare-load")
    async def load(self) -> None:
        self.patterns = tuple(await self.app.backend.run(
            lambda service: service.config.metrics.patterns))
        for session_id in self.session_ids:
            try:
                session = await self.app.backend.call("get", session_id)
            except TrainctlError as exc:  # deleted meanwhile: the others are still compared
                self.notify(str(exc), severity="warning")
                continue
            log = await self.app.backend.run(lambda service, s=session: service.log_path(s))
            self.add_run(LogSource(log, session.name, session=session))
        self.refresh_runs()

    def add_run(self, source: LogSource) -> None:
        run = Run(source, SessionMonitor(source.path, self.patterns, initial_lines=1))
        self.runs.append(run)
        for run_, label in zip(self.runs, run_labels([r.source for r in self.runs]),
                               strict=True):
            run_.label = label
        self.follow(run)
        self.render_all()

    @screen_work(group="compare-follow")
    async def follow(self, run: Run) -> None:
        """Redraw as the run's log grows (the monitor parses a long history in slices)."""
        try:
            async for update in run.monitor.updates(poll_interval=0.5):
                if update.metrics_changed:
                    self.render_all()
        except NoMatches:
            return

    @screen_work(exclusive=True, group="compare-refresh")
    async def refresh_runs(self) -> None:
        """Sessions as they are now (status, elapsed; a remote log's copy brought up to
        date), and added remote logs synced; re-armed, never overlapping."""
        try:
            if in_view(self):
                for run in list(self.runs):
                    if run.source.session is not None and run.source.session.status.active:
                        run.source.session = await self.app.backend.call(
                            "get", run.source.session.id)
                    elif run.source.mirror is not None:
                        await run.source.mirror.sync()
                    if run.axis is not None and (run.axis.clock is None
                                                 or axis_signature(run.source) != run.axis_key):
                        run.axis = None  # a live run's elapsed time, or its file, changed
                self.render_table()
                if self.by_time:
                    self.render_chart()
        except TrainctlError as exc:  # a host that stops answering: said, retried
            self.notify(str(exc), severity="warning")
        finally:
            self.set_timer(max(self.app.refresh_seconds, 2.0), self.refresh_runs)

    # -- drawing ------------------------------------------------------------------------

    def metric_sets(self):
        return [run.monitor.shown for run in self.runs]

    def current_metric(self) -> str:
        names = metric_names(self.metric_sets())
        if self.metric in names:
            return self.metric
        return default_metric(self.metric_sets())

    def render_all(self) -> None:
        self.render_chart()
        self.render_table()

    def render_chart(self) -> None:
        metric = self.current_metric()
        names = metric_names(self.metric_sets()) or [metric]
        plot = self.query_one(PlotView)
        now = time.time()
        data, live, clocks, spans = [], {}, {}, []
        for run in self.runs:
            series = run.monitor.shown.series.get(metric)
            if self.by_time:
                if run.axis is None:  # steps.jsonl read when it changed, not each frame
                    run.axis_key = axis_signature(run.source)
                    run.axis = run_axis(run.source, run.monitor.shown, now)
                # Which way it is placed, and how far it goes, from every nth point.
                sample = list(series.xs[::max(1, len(series) // 64)]) + list(series.xs[-1:]) \
                    if series is not None else []
                placed, source, _ = run.axis.place(sample, series) if series is not None \
                    else (None, None, None)
                if placed is None:
                    series = None  # no clock: keeps its colour, draws nothing
                else:
                    clocks[id(series)] = (run.axis, source)
                    spans.append(max((t for t in placed if t is not None), default=0.0))
            elif run.monitor.live and metric in run.monitor.live[1]:
                live[run.label] = (run.monitor.live[0], run.monitor.live[1][metric])
            data.append((run.label, series))
        unit, size = time_unit(max(spans, default=0.0))
        x_map = None
        if self.by_time:
            def x_map(xs, series):
                placed = clocks[id(series)][0].place(xs, series)[0] or [None] * len(xs)
                return [t / size if t is not None else None for t in placed]
        plot.set_series(data, live, x_map=x_map)
        axis = f"elapsed ({unit})" if self.by_time else "step"
        header = Text.assemble(("compare ", "bold"), (metric, "bold cyan"),
                               (f" {names.index(metric) + 1 if metric in names else 1}"
                                f"/{len(names)}", "dim"), f"  x: {axis}  ")
        header.append_text(plot.smoothing_text())
        header.append(f"  {len(self.runs)} runs", style="dim")
        self.query_one("#compare-header", Static).update(header)
        self.query_one("#compare-legend", Static).update(self.legend(metric, clocks))

    def legend(self, metric: str, clocks: dict) -> Text:
        text = Text()
        for index, run in enumerate(self.runs):
            color = SERIES_COLORS[index % len(SERIES_COLORS)]
            text.append("━━ ", style=f"color({color})")
            text.append(short_label(run.label, LABEL_WIDTH))
            series = run.monitor.shown.series.get(metric)
            if series is None or not len(series):
                text.append(f" (no {metric})", style="dim")
            elif self.by_time and id(series) not in clocks:
                text.append(" (no clock)", style="dim")
            elif self.by_time and clocks[id(series)][1] == PACE:
                text.append(" (avg pace)", style="dim")
            text.append("  ")
        if not self.runs:
            text.append("loading the runs…", style="dim")
        return text

    def render_table(self) -> None:
        table = self.query_one(DataTable)
        metric, now = self.current_metric(), time.time()
        rows = []
        for run in self.runs:
            session = run.source.session
            row = figures(run.label, run.monitor.shown.series.get(metric),
                          elapsed=run_elapsed(session, now), cost=run_cost(session))
            rows.append(cells(row))
        keys = [str(index) for index in range(len(rows))]
        if [key.value for key in table.rows] != keys:
            table.clear()
            for key, row in zip(keys, rows, strict=True):
                table.add_row(*self._styled(int(key), row), key=key)
            self._shown = dict(zip(keys, rows, strict=True))
            return
        for key, row in zip(keys, rows, strict=True):
            shown = self._shown.get(key)
            if shown == row:  # nothing redrawn (or sent over a slow link) when nothing changed
                continue
            styled = self._styled(int(key), row)
            for column, value, cell, old in zip(COLUMNS, styled, row, shown, strict=True):
                if cell != old:
                    table.update_cell(key, column, value, update_width=True)
            self._shown[key] = row

    def _styled(self, index: int, row: tuple[str, ...]) -> list:
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        name = Text.assemble(("━━ ", f"color({color})"), row[0])
        return [name, *(Text(cell, justify="right") for cell in row[1:])]

    # -- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_metric(self) -> None:
        names = metric_names(self.metric_sets())
        if not names:
            self.notify("no series yet", severity="warning")
            return
        current = self.current_metric()
        at = names.index(current) if current in names else -1
        self.metric = names[(at + 1) % len(names)]
        self.render_all()

    def action_toggle_x(self) -> None:
        self.by_time = not self.by_time
        self.render_chart()

    def action_cycle_smoothing(self) -> None:
        unsaved = self.query_one(PlotView).cycle_smoothing()
        if unsaved:
            self.notify(unsaved, severity="warning")
        self.render_chart()

    def action_add_log(self) -> None:
        from .watch_prompt import WatchPrompt

        def added(source: LogSource | None) -> None:
            if source is not None:
                self.add_run(source)
                self.notify(f"added {source.label}")

        self.app.push_screen(WatchPrompt("Add a log to the comparison", prepare=open_log),
                             added)


def open_log(service, target: str) -> LogSource:
    """`a`: the log `target` names, as `trainctl compare` reads it (a remote one copied)."""
    import asyncio

    from ...app.log_sources import log_source

    if not target:
        raise TrainctlError("give a log path or an ssh:// URL")
    return asyncio.run(log_source(service, target))
