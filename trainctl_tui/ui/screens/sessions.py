"""Home: every session at a glance, updated live; filter with `/`."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from ...app.service import SessionOverview
from ...core.formatting import nodes_note
from ...render.progress import cost_cell, eta_cell
from ...render.snapshot import NAME_WIDTH, elapsed, outcome, visible
from ...render.sparkline import sparkline
from ..columns import ColumnLayout
from ..format import STATUS_STYLE, number, step
from ..screen_work import screen_work
from ..visibility import in_view

# (key, label, width); DETAIL takes what is left. Narrow terminals (80 columns, often over
# SSH) drop the columns that matter least.
COLUMNS = [
    ("mark", "", 1),  # space marks a session for `C` (compare)
    ("alert", "", 1), ("name", "NAME", 14), ("id", "ID", 6), ("where", "WHERE", 8),
    ("status", "STATUS", 9), ("attempt", "ATT", 3), ("step", "STEP", 7),
    ("loss", "LOSS", 7), ("trend", "TREND", 12), ("elapsed", "ELAPSED", 7),
    ("eta", "ETA", 6), ("cost", "COST", 7), ("detail", "DETAIL", 0),
]
# At 80 columns the alert's `!` shares the mark column (a marked row shows its mark; its
# name is red either way), and ETA takes the attempt's place (and a little of NAME and TREND).
LAYOUT = ColumnLayout(COLUMNS, narrow_drops={"where", "attempt", "cost", "detail", "alert"},
                      narrow_widths={"name": 10, "trend": 7}, min_rest=10)

SESSION_KEYS = [
    ("enter", "open the session (live log, loss curve, attempts)"),
    ("n", "launch a new run"),
    ("s", "stop the selected session gracefully (SIGTERM, grace, SIGKILL)"),
    ("K", "kill the selected session now (SIGKILL)"),
    ("r", "resume the selected session from a checkpoint"),
    ("c", "checkpoints: list, inspect, validate, resume from, prune"),
    ("d", "delete the selected session (refused while it runs)"),
    ("i", "instances: SSH hosts, EC2 instances and RunPod pods (cost, GPUs, shell)"),
    ("w", "watch any log: a path here, or ssh://[user@]host[:port]/path"),
    ("space", "mark / unmark the session (marks show in the first column)"),
    ("C", "compare the marked sessions: one chart, last / min / steps / elapsed / cost"),
    ("/", "filter sessions by name, id, status or provider"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit (runs keep going)"),
]


class SessionsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("n", "app.launch", "New"),
        Binding("s", "app.stop", "Stop"),
        Binding("K", "app.kill", "Kill"),
        Binding("r", "app.resume", "Resume"),
        Binding("d", "app.delete", "Delete"),
        Binding("c", "app.checkpoints", "Ckpts"),
        Binding("i", "app.instances", "Instances", show=False),
        Binding("w", "app.watch", "Watch a log", show=False),
        Binding("space", "toggle_mark", "Mark", show=False),
        Binding("C", "compare", "Compare"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]
    HELP_TITLE = "Sessions"
    HELP_KEYS = SESSION_KEYS

    def __init__(self):
        super().__init__()
        self.rows: list[SessionOverview] = []
        self.filter_text = ""
        self.marked: list[str] = []  # session ids, in the order they were marked
        self._shown: dict[tuple[str, str], object] = {}  # (row, column) -> value drawn

    def compose(self) -> ComposeResult:
        yield Static("trainctl", id="title-bar")
        yield Input(placeholder="filter: name, id, status, provider (esc clears)", id="filter")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="empty-hint")
        yield Static("", id="status-line")
        yield Footer()

    def on_resize(self) -> None:
        if LAYOUT.apply(self.query_one(DataTable), self.size.width):
            self._shown = {}
            self.apply_rows(self.rows)

    def on_mount(self) -> None:
        self.on_resize()
        self.query_one("#filter").display = False
        self.query_one(DataTable).focus()
        self.refresh_sessions()

    @property
    def selected_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    @screen_work(exclusive=True, group="refresh")
    async def refresh_sessions(self) -> None:
        """Poll the service, redraw, re-arm: polls never overlap and skip hidden screens."""
        started = time.monotonic()
        try:
            if in_view(self):
                rows = await self.app.backend.call("overview")
                self.apply_rows(rows)
                await self.app.announce_alerts(rows)
        except Exception as exc:  # a broken store or config must not kill the UI
            self.query_one("#status-line", Static).update(Text(f"refresh failed: {exc}",
                                                               style="red"))
        finally:
            # Adapt to slow hosts and links: never spend more than a third of the time polling.
            took = time.monotonic() - started
            self.set_timer(max(self.app.refresh_seconds, 3 * took), self.refresh_sessions)

    def apply_rows(self, rows: list[SessionOverview]) -> None:
        self.rows = rows
        shown = [row for row in rows if self._matches(row)]
        table = self.query_one(DataTable)
        wanted = [row.session.id for row in shown]
        current = [key.value for key in table.rows]
        now = time.time()
        if wanted != current:
            selected = self.selected_id
            table.clear()
            keys = [str(column.value) for column in table.columns]
            self._shown = {}
            for row in shown:
                cells = self._cells(row, now)
                table.add_row(*(cells[key] for key in keys), key=row.session.id)
                self._shown.update({(row.session.id, key): cells[key] for key in keys})
            if selected in wanted:
                table.move_cursor(row=wanted.index(selected), animate=False)
        else:
            # Touch only cells that changed: nothing is redrawn (or sent over a slow SSH
            # link) when a refresh finds nothing new.
            for row in shown:
                for key, value in self._cells(row, now).items():
                    if key in table.columns and self._shown.get((row.session.id, key)) != value:
                        table.update_cell(row.session.id, key, value)
                        self._shown[(row.session.id, key)] = value
        self._update_hints(rows, shown)

    def _update_hints(self, rows, shown) -> None:
        hint = self.query_one("#empty-hint", Static)
        if not rows:
            hint.update("No sessions yet. Press [b]n[/b] to launch a run, or run "
                        "[b]trainctl demo[/b] for a toy trainer.")
        elif not shown:
            hint.update(f"No session matches '{self.filter_text}' (esc clears the filter).")
        hint.display = not shown
        running = sum(1 for r in rows if r.session.status.active)
        alerts = sum(len(r.alerts) for r in rows)
        line = f"{len(rows)} session{'s' if len(rows) != 1 else ''} · {running} active"
        if alerts:
            line += f" · [b red]{alerts} alert{'s' if alerts > 1 else ''}[/]"
        if self.marked:
            line += f" · {len(self.marked)} marked (C compares)"
        if self.filter_text:
            line += f" · filter '{self.filter_text}': {len(shown)} shown"
        self.query_one("#status-line", Static).update(line)

    def _cells(self, row: SessionOverview, now: float) -> dict:
        s = row.session
        detail = "; ".join(a.message for a in row.alerts) if row.alerts else outcome(s)
        return {
            "mark": self._mark(row),
            "alert": Text("!", style="bold red") if row.alerts else Text(" "),
            "name": Text(visible(s.name, NAME_WIDTH), style="bold red" if row.alerts else ""),
            "id": s.id,
            # 8 columns: a multi-node run says how many (its place is on its screen)
            "where": nodes_note(s.nodes).lstrip(" ·") or (s.provider if not s.host else s.host),
            "status": Text(str(s.status), style=STATUS_STYLE[s.status]),
            "attempt": str(s.attempt or "-"),
            "step": step(row.step),
            "loss": number(row.last("loss")),
            "trend": Text(sparkline(row.trend("loss", 12), 12), style="cyan", overflow="crop"),
            "elapsed": elapsed(s, now),
            "eta": eta_cell(row.figures),
            "cost": cost_cell(row.figures),
            "detail": Text(visible(detail)),
        }

    def _mark(self, row: SessionOverview) -> Text:
        if row.session.id in self.marked:
            return Text("✓", style="bold magenta")
        if row.alerts and "alert" not in self.query_one(DataTable).columns:
            return Text("!", style="bold red")
        return Text(" ")

    def _matches(self, row: SessionOverview) -> bool:
        if not self.filter_text:
            return True
        s = row.session
        haystack = f"{s.name} {s.id} {s.status} {s.provider} {s.host or ''}".lower()
        return all(word in haystack for word in self.filter_text.lower().split())

    def action_toggle_mark(self) -> None:
        """k9s-style: space marks the row (or unmarks it) and moves down, to mark the next."""
        session_id = self.selected_id
        if session_id is None:
            return
        if session_id in self.marked:
            self.marked.remove(session_id)
        else:
            self.marked.append(session_id)
        self.apply_rows(self.rows)
        self.query_one(DataTable).action_cursor_down()

    def action_compare(self) -> None:
        known = {row.session.id for row in self.rows}
        self.marked = [session_id for session_id in self.marked if session_id in known]
        if len(self.marked) < 2:
            self.notify(f"mark two or more sessions with space to compare them "
                        f"({len(self.marked)} marked)", severity="warning")
            return
        self.app.open_compare(list(self.marked))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.apply_rows(self.rows)
        self.query_one(DataTable).focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.apply_rows(self.rows)

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        if not self.filter_text:
            self.query_one("#filter").display = False
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected)
    def action_open(self, event=None) -> None:
        session_id = self.selected_id
        if session_id:
            self.app.open_session(session_id)
