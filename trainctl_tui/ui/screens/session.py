"""One session: live log (follow, scroll, search), loss curve, latest metrics, attempts.

Also opened by `trainctl watch PATH` on a log that trainctl did not launch (no session then).
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from ...app.costs import figures_of
from ...app.gpu_usage import session_usage
from ...app.nodes import node_rows
from ...core.models import Session
from ...monitor.session_monitor import SessionMonitor
from ...render.progress import figures_line
from ...render.snapshot import elapsed, outcome, where_text
from ..format import STATUS_STYLE, number, step
from ..screen_work import screen_work
from ..visibility import in_view
from ..widgets.gpu_panel import GpuPanel
from ..widgets.logview import LogView
from ..widgets.node_panel import NodePanel
from ..widgets.plot import PlotView

# Charts the `m` key cycles through; series in one group share a chart (train vs eval).
PLOT_GROUPS = [
    ("loss", ("loss", "val_loss")),
    ("learning rate", ("lr",)),
    ("grad norm", ("grad_norm",)),
    ("accuracy", ("accuracy", "val_accuracy")),
    ("throughput", ("throughput",)),
]

# Below this many rows a multi-node run's nodes panel stands in for the GPU panel.
SHORT_TERMINAL = 30

SESSION_KEYS = [
    ("s", "stop gracefully (SIGTERM, grace, SIGKILL)"),
    ("K", "kill now (SIGKILL)"),
    ("r", "resume from a checkpoint (newest by default)"),
    ("c", "checkpoints: list, inspect, validate, resume from, prune"),
    ("d", "delete the session (refused while it runs)"),
    ("i", "instances: SSH hosts, EC2 instances and RunPod pods (cost, GPUs, shell)"),
    ("m", "next chart: loss, learning rate, grad norm, accuracy, throughput, ..."),
    ("S", "smoothing: off, 0.6, 0.9, 0.99 (TensorBoard's moving average; kept)"),
    ("f", "follow the end of the log on/off"),
    ("o", "a multi-node run: the next node's log, curves and GPUs (rank 0's first)"),
    ("/", "search the log; enter: next match"),
    ("N / P", "next / previous match"),
    ("home / end", "top / bottom of the log"),
    ("esc", "back to all sessions"),
    ("?", "this help"),
]


class SessionScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("s", "app.stop", "Stop"),
        Binding("K", "app.kill", "Kill"),
        Binding("r", "app.resume", "Resume"),
        Binding("d", "app.delete", "Delete", show=False),
        Binding("c", "app.checkpoints", "Ckpts"),
        Binding("i", "app.instances", "Instances", show=False),
        Binding("m", "next_chart", "Chart"),
        Binding("S", "cycle_smoothing", "Smooth", show=False),
        Binding("f", "toggle_follow", "Follow"),
        Binding("o", "next_node", "Node", show=False),
        Binding("slash", "search", "Search"),
        Binding("N", "find(False)", "Next", show=False),
        Binding("P", "find(True)", "Prev", show=False),
        Binding("home", "log_home", show=False),
        Binding("end", "log_end", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit", show=False),
    ]
    HELP_TITLE = "Session"
    HELP_KEYS = SESSION_KEYS

    def __init__(self, *, session_id: str | None = None, log_path: Path | None = None,
                 patterns: tuple[str, ...] = (), label: str | None = None):
        super().__init__()
        self.label = label  # shown instead of the log's path (e.g. an ssh:// URL)
        self.session_id = session_id
        self.session: Session | None = None
        self.log_path = log_path
        self.patterns = patterns
        self.monitor: SessionMonitor | None = None
        self.chart_index = 0
        self.node = 0  # the node whose log is shown (a multi-node run; rank 0 is the session's)
        self.nodes: list = []  # app.nodes.NodeRow of each node, as the last refresh saw them
        self.usage = None  # monitor.usage.Usage of the session's (head's) machine
        self.query_text = ""
        self.history_progress: tuple[int, int] | None = None  # (bytes read, bytes in all)

    @property
    def selected_id(self) -> str | None:
        return self.session_id

    def compose(self) -> ComposeResult:
        yield Static("", id="session-header")
        with Horizontal(id="top"):
            with Vertical(id="chart"):
                yield Static("", id="chart-legend")
                yield PlotView(id="plot", min_interval=0.5)
            yield Static("", id="side")
        yield NodePanel(id="nodes")
        yield GpuPanel(id="gpus")
        yield LogView(id="log")
        yield Static("", id="progress")
        yield Input(placeholder="search the log (enter: next, esc: close)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search").display = False
        self.query_one("#progress").display = False
        log = self.query_one(LogView)
        log.focus()
        self.query_one(PlotView).use_saved_smoothing()
        # The title says whether the log follows, whoever changed it (f, a key, the wheel).
        self.watch(log, "auto_scroll", lambda _: self.render_log_title())
        self.start()

    @screen_work(exclusive=True, group="session-load")
    async def start(self) -> None:
        if self.session_id:
            self.session = await self.app.backend.call("get", self.session_id)
            self.log_path = Path(self.session.session_dir) / "train.log"
            self.patterns = tuple(await self.app.backend.run(
                lambda service: service.config.metrics.patterns))
        self.monitor = SessionMonitor(self.log_path, self.patterns)
        self.render_header()
        self.render_log_title()  # a multi-node run's says which node
        self.follow_log()
        if self.session_id:
            self.refresh_session()

    @screen_work(exclusive=True, group="session-refresh")
    async def refresh_session(self) -> None:
        try:
            if in_view(self):
                self.session = await self.app.backend.call("get", self.session_id)
                self.render_header()
                self.render_side()
                self.nodes, self.usage = await self.app.backend.run(
                    lambda _service, session: (node_rows(session), session_usage(session)),
                    self.session)
                self.render_nodes()
        except NoMatches:
            return
        except Exception as exc:
            self.notify(f"refresh failed: {exc}", severity="error")
        finally:
            self.set_timer(self.app.refresh_seconds, self.refresh_session)

    @screen_work(exclusive=True, group="session-log")
    async def follow_log(self) -> None:
        """Show the log as it grows; the chart fills in while a long history is parsed."""
        try:
            await self._follow_log()
        except NoMatches:  # the screen was closed while a read was in flight
            return

    async def _follow_log(self) -> None:
        log = self.query_one(LogView)
        progress = self.query_one("#progress", Static)
        async for update in self.monitor.updates(poll_interval=0.5):
            if update.reset:
                log.clear()
            if update.note:
                self.notify(update.note, severity="warning")
            if update.lines:
                log.write_lines(update.lines)
            progress.display = bool(update.partial)
            if update.partial:
                progress.update(Text(update.partial[-400:], style="dim"))
            if update.metrics_changed or update.history != self.history_progress:
                self.history_progress = update.history
                self.render_chart()
                self.render_side()

    def on_unmount(self) -> None:
        if self.monitor is not None:
            self.monitor.close()

    # -- drawing ------------------------------------------------------------------------

    def render_header(self) -> None:
        header = self.query_one("#session-header", Static)
        if self.session is None:
            size = _size(self.log_path)
            header.update(Text.assemble(("watching ", "dim"),
                                        (self.label or str(self.log_path), "bold"),
                                        (f"  {size}", "dim")))
            return
        s = self.session
        text = Text.assemble(
            (s.name, "bold"), "  ", (s.id, "dim"), "  ",
            (str(s.status), STATUS_STYLE[s.status]),
            f"  attempt {s.attempt or '-'}  ", f"elapsed {elapsed(s)}  ",
            (where_text(s), "dim"),  # 'ssh:trio · 2 nodes'; a host said once
        )
        figures = figures_line(figures_of(s))
        if figures:
            text.append(f"  {figures}", style="cyan")
        why = outcome(s)
        if why and not s.status.active or s.detail:
            text.append(f"  {why}", style="yellow")
        header.update(text)

    def available_charts(self) -> list[tuple[str, tuple[str, ...]]]:
        series = self.monitor.shown.series if self.monitor else {}
        charts = [(title, names) for title, names in PLOT_GROUPS
                  if any(name in series and len(series[name]) for name in names)]
        grouped = {name for _, names in PLOT_GROUPS for name in names}
        charts += [(name, (name,)) for name in sorted(series)
                   if name not in grouped and name not in ("epoch",) and len(series[name])]
        return charts or [PLOT_GROUPS[0]]

    def render_chart(self) -> None:
        charts = self.available_charts()
        title, names = charts[self.chart_index % len(charts)]
        series = self.monitor.shown.series
        data = [(name, series.get(name)) for name in names]
        x, values = self.monitor.live or (0.0, {})
        plot = self.query_one(PlotView)
        plot.set_series(data, {name: (x, values[name]) for name in names if name in values})
        legend = Text.assemble((title, "bold"),
                               (f" {self.chart_index % len(charts) + 1}/{len(charts)}  ", "dim"))
        legend.append_text(plot.legend())
        legend.append_text(plot.smoothing_text())
        if self.history_progress is not None:  # a long log's first parse, still going
            done, total = self.history_progress
            legend.append(f"  reading history {100 * done // max(total, 1)}%", style="yellow")
        self.query_one("#chart-legend", Static).update(legend)

    def render_side(self) -> None:
        side = Table.grid(padding=(0, 1))
        side.add_column(style="bold")
        side.add_column(justify="right")
        metrics = self.monitor.shown if self.monitor else None
        if metrics is not None:
            # A progress bar still redrawing has the newest numbers (shown in italics).
            live_x, live = self.monitor.live or (None, {})
            for name in sorted(set(metrics.series) | set(live)):
                series = metrics.series.get(name)
                if name in live:
                    value, style = live[name], "italic"
                elif series is not None and len(series):
                    value, style = series.ys[-1], ""
                else:
                    continue
                if value - value or series is not None and series.nonfinite:
                    style = "bold red"  # nan/inf now or earlier
                side.add_row(name, Text(number(value), style=style))
            last_steps = [s.xs[-1] for s in metrics.series.values() if len(s)]
            if live_x is not None:
                last_steps.append(live_x)
            if last_steps:
                side.add_row("step", step(max(last_steps)))
        if not metrics or not metrics.series and not self.monitor.live:
            side.add_row(Text("no metrics yet", style="dim"), "")
        if self.session is not None and self.session.attempts:
            side.add_row("", "")
            side.add_row(Text("attempts", style="bold underline"), "")
            for attempt in self.session.attempts[-6:]:
                side.add_row(f"#{attempt.n}", _attempt_text(attempt))
        self.query_one("#side", Static).update(side)

    def render_nodes(self) -> None:
        """The nodes panel, and the GPUs of the node whose log is shown (rank 0's at first)."""
        self.query_one(NodePanel).show(self.nodes, self.node)
        shown = next((row for row in self.nodes if row.rank == self.node), None)
        if shown is not None:  # a short terminal keeps the rows' GPU column for the log
            short = self.app.size.height < SHORT_TERMINAL
            self.query_one(GpuPanel).show(None if short else shown.usage, f"node {self.node}")
        else:
            self.query_one(GpuPanel).show(self.usage)

    # -- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.display = False
            self.query_one(LogView).focus()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.switch_to_sessions()

    def action_next_chart(self) -> None:
        self.chart_index += 1
        self.render_chart()

    def action_cycle_smoothing(self) -> None:
        unsaved = self.query_one(PlotView).cycle_smoothing()
        if unsaved:
            self.notify(unsaved, severity="warning")
        if self.monitor is not None:
            self.render_chart()

    def action_toggle_follow(self) -> None:
        log = self.query_one(LogView)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self.notify("following the log" if log.auto_scroll else "not following the log")
        self.render_log_title()

    def render_log_title(self) -> None:
        log = self.query_one(LogView)
        follow = "following" if log.auto_scroll else "paused (f follows)"
        search = f" · '{self.query_text}'" if self.query_text else ""
        node = f" · node {self.node}" if self.session and self.session.nodes > 1 else ""
        log.border_title = f"log{node} · {follow}{search}"

    def action_next_node(self) -> None:
        """Follow the next node's log (mirrored to nodes/R/), back to rank 0 after the last."""
        if self.session is None or self.session.nodes < 2:
            self.notify("this run has one node")
            return
        self.node = (self.node + 1) % self.session.nodes
        folder = Path(self.session.session_dir)
        self.log_path = folder / ("train.log" if not self.node else
                                  f"nodes/{self.node}/train.log")
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = SessionMonitor(self.log_path, self.patterns)
        self.query_one(LogView).clear()
        self.render_log_title()
        self.render_nodes()
        self.follow_log()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        log = self.query_one(LogView)
        log.set_query(self.query_text)
        log.match_line = None
        event.input.display = False
        log.focus()
        if self.query_text:
            self.action_find(True)  # the newest match first, like searching up in less
        else:
            self.render_log_title()

    def action_find(self, backwards: bool) -> None:
        log = self.query_one(LogView)
        if not self.query_text:
            self.action_search()
            return
        found = log.find(self.query_text, backwards=backwards)
        if found is None:
            self.notify(f"'{self.query_text}' not found", severity="warning")
        self.render_log_title()

    def action_log_home(self) -> None:
        log = self.query_one(LogView)
        log.auto_scroll = False
        log.scroll_home(animate=False)
        self.render_log_title()

    def action_log_end(self) -> None:
        log = self.query_one(LogView)
        log.auto_scroll = True
        log.scroll_end(animate=False)
        self.render_log_title()


def _attempt_text(attempt) -> Text:
    if attempt.ended is None:
        return Text("running", style="green")
    if attempt.signal:
        import signal

        try:
            return Text(signal.Signals(attempt.signal).name, style="yellow")
        except ValueError:
            return Text(f"signal {attempt.signal}", style="yellow")
    style = "cyan" if attempt.exit_code == 0 else "red"
    return Text(f"exit {attempt.exit_code}", style=style)


def _size(path: Path | None) -> str:
    try:
        size = os.stat(path).st_size
    except (OSError, TypeError):
        return "(not there yet)"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"

