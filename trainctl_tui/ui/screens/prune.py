"""`p` on the checkpoints screen: retention rules, a preview of exactly what goes, then a
confirmation. The same plan and apply functions as `trainctl checkpoints prune`."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ...core.errors import TrainctlError
from ..screen_work import screen_work
from .confirm import ConfirmScreen


class PruneScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "apply", "Prune")]

    def __init__(self, directory: str, keep_last: int = 3):
        super().__init__()
        self.directory = directory
        self.keep_last = keep_last
        self.plan = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="prune"):
            yield Static("[b]Prune checkpoints[/b]  [dim]enter: preview · ctrl+s: prune · "
                         "esc: cancel[/dim]", id="form-title")
            with Horizontal(classes="field"):
                yield Label("Keep last", classes="field-label")
                yield Input(str(self.keep_last), id="keep-last")
            with Horizontal(classes="field"):
                yield Label("Keep best by", classes="field-label")
                yield Input(placeholder="metric, e.g. val_loss (optional)", id="keep-best")
            yield Static("", id="prune-preview")

    def on_mount(self) -> None:
        self.query_one("#keep-last", Input).focus()
        self.preview()

    @on(Input.Submitted)
    @screen_work(exclusive=True, group="preview")
    async def preview(self) -> None:
        text = self.query_one("#keep-last", Input).value.strip()
        best = self.query_one("#keep-best", Input).value.strip() or None
        out = self.query_one("#prune-preview", Static)
        if not text.isdigit() or int(text) < 1:
            self.plan = None
            out.update(f"[b red]keep last must be a whole number of 1 or more, not '{text}'[/]")
            return
        try:
            self.plan = await self.app.backend.call("plan_prune", self.directory,
                                                    keep_last=int(text), keep_best=best)
        except TrainctlError as exc:
            self.plan = None
            out.update(f"[b red]{exc}[/]")
            return
        out.update(self.plan.summary())

    @screen_work(exclusive=True, group="apply")
    async def action_apply(self) -> None:
        if self.plan is None:
            return
        if not self.plan.delete:
            self.notify("nothing to prune")
            return
        count = len(self.plan.delete)
        if not await self.app.push_screen_wait(ConfirmScreen(
                f"Move {count} checkpoint{'s' if count > 1 else ''} to the trash?",
                "As previewed; the newest valid, protected and unfinished ones stay.",
                "Prune")):
            return
        result = await self.app.backend.call("apply_prune", self.plan)
        skipped = f", {len(result.skipped)} skipped (changed since the preview)" \
            if result.skipped else ""
        plural = "" if len(result) == 1 else "s"
        self.notify(f"moved {len(result)} checkpoint{plural} to the trash{skipped}")
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
