"""`r`: pick the checkpoint to resume from (the newest sound one is selected)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...checkpoints.catalog import CheckpointRow

SCRATCH = "__scratch__"


class ResumeScreen(ModalScreen[str | None]):
    """Dismisses with a checkpoint path, SCRATCH to restart without one, or None (cancel).

    Corrupt, suspicious and unfinished checkpoints are listed, with why, but cannot be picked.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, session_name: str, rows: list[CheckpointRow]):
        super().__init__()
        self.session_name, self.rows = session_name, list(reversed(rows))  # newest first

    def compose(self) -> ComposeResult:
        options, newest_marked = [], False
        for row in self.rows:
            age = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.entry.mtime))
            step = f"step {row.step}" if row.step is not None else "step ?"
            label = f"{Path(row.entry.path).name}  {step}  {age}"
            if row.usable and not newest_marked:
                label += "  (newest)"
                newest_marked = True
            if not row.usable:
                why = row.info.reason if row.info and row.info.reason else row.entry.note
                label += f"  [{row.status}{': ' + why if why else ''}]"
            options.append(Option(label, id=row.entry.path, disabled=not row.usable))
        options.append(Option("start from scratch (no checkpoint)", id=SCRATCH))
        with Vertical(id="dialog", classes="resume"):
            yield Static(f"[b]Resume {self.session_name}[/b] from   "
                         "[dim]enter: resume · esc: cancel[/dim]")
            yield OptionList(*options, id="checkpoints")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        first = next((i for i, row in enumerate(self.rows) if row.usable), len(self.rows))
        options.highlighted = first

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
