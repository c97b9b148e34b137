"""`c`: a session's (or any directory's) checkpoints, what is inside each, and what to do
with them: validate, resume from, delete, prune. New checkpoints appear as they are written."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ...checkpoints.catalog import CheckpointRow
from ...core.errors import TrainctlError
from ...core.formatting import format_duration
from ...render.snapshot import CHECKPOINT_STATUS_STYLE, format_number, format_size, format_step
from ..screen_work import screen_work
from .confirm import ConfirmScreen
from .prune import PruneScreen

CHECKPOINT_KEYS = [
    ("enter / v", "validate the selected checkpoint deeply (every CRC / byte range)"),
    ("r", "resume the session from the selected checkpoint"),
    ("d", "delete the selected checkpoint (to the trash; never the newest valid one)"),
    ("p", "prune: keep the last N (and the best by a metric), with a preview"),
    ("esc", "back"),
]
RESCAN_EVERY = 5.0  # seconds; watchfiles wakes it sooner when the directory changes


class CheckpointsScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("v,enter", "validate", "Validate"),
        Binding("r", "resume_from", "Resume from"),
        Binding("d", "delete", "Delete"),
        Binding("p", "prune", "Prune"),
        Binding("question_mark", "app.help", "Help"),
    ]
    HELP_TITLE = "Checkpoints"
    HELP_KEYS = CHECKPOINT_KEYS

    def __init__(self, target: str, *, session_id: str | None = None):
        super().__init__()
        self.target = target  # a session id or a directory
        self.session_id = session_id
        self.directory = ""
        self.rows: list[CheckpointRow] = []
        self.deep: dict[str, object] = {}  # path -> CheckpointInfo from a deep validation

    @property
    def selected_id(self) -> str | None:
        return self.session_id

    def compose(self) -> ComposeResult:
        yield Static("checkpoints", id="checkpoints-header")
        table = DataTable(id="checkpoint-table", cursor_type="row", zebra_stripes=True)
        for key, label in (("step", "STEP"), ("name", "NAME"), ("size", "SIZE"),
                           ("age", "AGE"), ("status", "STATUS"), ("loss", "LOSS")):
            table.add_column(label, key=key)
        yield table
        yield Static("", id="checkpoint-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.rescan()
        self.watch_directory()

    @property
    def selected(self) -> CheckpointRow | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return next((row for row in self.rows if row.entry.path == key.value), None)

    @screen_work(exclusive=True, group="rescan")
    async def rescan(self) -> None:
        try:
            directory, session, entries, rows = await self.app.backend.call(
                "checkpoints", self.target)
        except TrainctlError as exc:
            self.query_one("#checkpoints-header", Static).update(Text(str(exc), style="red"))
            return
        except NoMatches:
            return
        self.directory = directory
        if session is not None:
            self.session_id = session.id
        self.rows = rows
        self.show_rows(session, entries.skipped)

    def show_rows(self, session, skipped) -> None:
        table = self.query_one(DataTable)
        selected = self.selected.entry.path if self.selected else None
        table.clear()
        now = time.time()
        for row in reversed(self.rows):  # newest at the top
            style = CHECKPOINT_STATUS_STYLE.get(row.status, "")
            table.add_row(format_step(row.step), row.entry.name, format_size(row.entry.size),
                          format_duration(now - row.entry.mtime), Text(row.status, style=style),
                          format_number(row.loss), key=row.entry.path)
        paths = [row.entry.path for row in reversed(self.rows)]
        if selected in paths:
            table.move_cursor(row=paths.index(selected), animate=False)
        owner = f"{session.name} ({session.id}) · " if session else ""
        bad = sum(1 for row in self.rows if row.status in ("corrupt", "suspicious", "unknown"))
        header = Text.assemble((f"{owner}", "bold"), self.directory,
                               f"  {len(self.rows)} checkpoint{'' if len(self.rows) == 1 else 's'}")
        if bad:
            header.append(f" · {bad} unusable", style="bold red")
        if skipped:
            header.append(f" · {len(skipped)} unreadable", style="yellow")
        self.query_one("#checkpoints-header", Static).update(header)
        if not self.rows:
            self.query_one("#checkpoint-detail", Static).update(
                Text("no checkpoints here yet; they appear as they are written", style="dim"))
        else:
            self.show_detail()

    @screen_work(exclusive=True, group="watch")
    async def watch_directory(self) -> None:
        """Rescan when files change (watchfiles), and every few seconds regardless."""
        import asyncio

        try:
            from watchfiles import awatch
        except ImportError:  # pragma: no cover - watchfiles is a dependency
            awatch = None
        while not self.directory:
            await asyncio.sleep(0.2)
        while True:
            if awatch is None:
                await asyncio.sleep(RESCAN_EVERY)
            else:
                try:
                    async for _ in awatch(self.directory, debounce=300,
                                          rust_timeout=int(RESCAN_EVERY * 1000),
                                          yield_on_timeout=True, recursive=False):
                        break
                except Exception:  # inotify unavailable or the dir went away: poll
                    await asyncio.sleep(RESCAN_EVERY)
            self.rescan()

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        row = self.selected
        detail = self.query_one("#checkpoint-detail", Static)
        if row is None:
            detail.update("")
            return
        detail.update(describe(row, self.deep.get(row.entry.path)))

    # -- actions ------------------------------------------------------------------------

    @screen_work(exclusive=True, group="validate")
    async def action_validate(self) -> None:
        row = self.selected
        if row is None or row.entry.writing:
            self.notify("nothing to validate here (still being written?)", severity="warning")
            return
        self.notify(f"validating {row.entry.name} (every byte)…")
        try:
            info = await self.app.backend.call("validate_checkpoint", self.target,
                                               row.entry.path)
        except TrainctlError as exc:
            self.notify(str(exc), severity="error")
            return
        self.deep[row.entry.path] = info
        self.show_detail()
        severity = "information" if info.status == "ok" else "error"
        self.notify(f"{row.entry.name}: {info.status}" + (f" ({info.reason})"
                                                          if info.reason else ""),
                    severity=severity)

    @screen_work(group="actions")
    async def action_resume_from(self) -> None:
        row = self.selected
        if row is None:
            return
        if self.session_id is None:
            self.notify("this directory belongs to no session: launch a run to resume from it",
                        severity="warning")
            return
        if not row.usable:
            self.notify(f"{row.entry.name} is {row.status}; pick another", severity="error")
            return
        if not await self.app.push_screen_wait(ConfirmScreen(
                f"Resume from {row.entry.name}?", "A new attempt of the session starts from "
                "this checkpoint.", "Resume")):
            return
        try:
            session = await self.app.backend.call("resume", self.session_id,
                                                  from_checkpoint=row.entry.path)
        except TrainctlError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"resumed {session.name} as attempt {session.attempt}")

    @screen_work(group="actions")
    async def action_delete(self) -> None:
        row = self.selected
        if row is None:
            return
        if not await self.app.push_screen_wait(ConfirmScreen(
                f"Delete {row.entry.name}?", "It is moved to trainctl's trash folder.",
                "Delete")):
            return
        try:
            await self.app.backend.call("delete_checkpoint", self.directory, row.entry.path)
        except TrainctlError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"moved {row.entry.name} to the trash")
        self.rescan()

    def action_prune(self) -> None:
        if not self.directory:
            return
        self.app.push_screen(PruneScreen(self.directory), lambda _done: self.rescan())


def describe(row: CheckpointRow, deep=None) -> Table:
    """The detail pane: status, what the checkpoint holds, its biggest tensors."""
    info = deep or row.info
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    status = row.status if deep is None else deep.status
    style = CHECKPOINT_STATUS_STYLE.get(status, "")
    reason = (info.reason if info and info.reason else row.entry.note) or ""
    checked = " (deep check)" if deep is not None else ""
    grid.add_row("status", Text(f"{status}{checked}" + (f": {reason}" if reason else ""),
                                style=style))
    grid.add_row("path", row.entry.path)
    if info is None:
        return grid
    facts = [("format", info.format), ("step", info.step), ("epoch", info.epoch),
             ("loss", format_number(info.loss) if info.loss is not None else None),
             ("best", format_number(info.best_metric) if info.best_metric is not None
              else None),
             ("params", f"{info.param_count:,}" if info.param_count else None),
             ("tensors", f"{info.tensor_count:,}" if info.tensor_count else None),
             ("dtypes", ", ".join(f"{k} ×{v}" for k, v in info.dtypes.items()) or None),
             ("keys", ", ".join(info.top_keys) or None),
             ("optimizer", "yes" if info.has_optimizer else "no")]
    for label, value in facts:
        if value is not None:
            grid.add_row(label, str(value))
    if info.metrics:
        grid.add_row("metrics", ", ".join(f"{k}={format_number(v)}"
                                          for k, v in list(info.metrics.items())[:8]))
    if info.hparams:
        grid.add_row("hparams", ", ".join(f"{k}={v}" for k, v in list(info.hparams.items())[:8]))
    for label, values in (("model", info.model_args), ("metadata", info.metadata)):
        if values:
            grid.add_row(label, ", ".join(f"{k}={v}" for k, v in list(values.items())[:8]))
    if info.unverified:
        grid.add_row(Text("not checked", style="yellow"), "; ".join(info.unverified))
    if info.dangerous_globals:
        grid.add_row(Text("would run", style="bold red"), ", ".join(info.dangerous_globals))
    if info.unknown_globals:
        grid.add_row("unknown", ", ".join(info.unknown_globals) + " (never imported)")
    if info.tensors:
        biggest = ", ".join(f"{t.name} {'×'.join(map(str, t.shape))}" for t in info.tensors[:3])
        grid.add_row("largest", biggest)
    return grid
