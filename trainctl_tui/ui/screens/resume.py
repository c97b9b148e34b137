"""`r`: pick the checkpoint to resume from (the newest is selected)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...service import CheckpointChoice

SCRATCH = "__scratch__"


class ResumeScreen(ModalScreen[str | None]):
    """Dismisses with a checkpoint path, SCRATCH to restart without one, or None (cancel)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, session_name: str, choices: list[CheckpointChoice]):
        super().__init__()
        self.session_name, self.choices = session_name, choices

    def compose(self) -> ComposeResult:
        options = []
        for index, choice in enumerate(self.choices):
            age = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(choice.mtime))
            step = f"step {choice.step}" if choice.step is not None else "step ?"
            newest = "  (newest)" if index == 0 else ""
            options.append(Option(f"{Path(choice.path).name}  {step}  {age}{newest}",
                                  id=choice.path))
        options.append(Option("start from scratch (no checkpoint)", id=SCRATCH))
        with Vertical(id="dialog", classes="resume"):
            yield Static(f"[b]Resume {self.session_name}[/b] from  (enter: resume, esc: cancel)")
            yield OptionList(*options, id="checkpoints")

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
