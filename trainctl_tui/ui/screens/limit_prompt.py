"""`r` on a run its budget guard stopped: a new budget (or max hours), or none, before the
resume; as `trainctl resume ID --budget USD | --max-hours H | --no-budget`."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...app.costs import parse_dollars, parse_hours
from ...core.errors import TrainctlError


class LimitPrompt(ModalScreen[dict | None]):
    """Dismisses with resume()'s keyword arguments ({"budget": 40.0}, {"max_hours": 12.0}
    or {"no_budget": True}), or None (cancel)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, session_name: str, reached: str):
        super().__init__()
        self.session_name, self.reached = session_name, reached
        self.hours = reached.startswith("max hours")

    def compose(self) -> ComposeResult:
        what = "max hours" if self.hours else "budget in dollars"
        with Vertical(id="dialog", classes="confirm"):
            yield Static(f"[b]Resume {self.session_name}[/b]: it was stopped, {self.reached}.\n"
                         f"New {what} [dim](empty: none) · enter: go on · esc: cancel[/dim]",
                         id="form-title")
            yield Input(placeholder="12" if self.hours else "40", id="limit")
            yield Static("", id="limit-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self) -> None:
        text = self.query_one(Input).value.strip()
        if not text:
            self.dismiss({"no_budget": True})
            return
        try:
            if self.hours:
                self.dismiss({"max_hours": parse_hours(text, "max hours")})
            else:
                self.dismiss({"budget": parse_dollars(text, "the budget")})
        except TrainctlError as exc:
            self.query_one("#limit-error", Static).update(f"[b red]{exc}[/]")

    def action_cancel(self) -> None:
        self.dismiss(None)
