"""`w`: follow any log — a local path or ssh://[user@]host[:port]/path — like `trainctl watch`."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...core.errors import TrainctlError
from ..screen_work import screen_work


class WatchPrompt(ModalScreen[tuple | None]):
    """Dismisses with (local log path, RemoteLogMirror or None, label), or None. With
    `prepare`, with what `prepare(service, target)` (in a thread) returns instead."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str = "Watch a log", prepare=None):
        super().__init__()
        self.title_text = title
        self.prepare = prepare

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="watch"):
            yield Static(f"[b]{self.title_text}[/b]  [dim]a path on this machine, or "
                         "ssh://[user@]host[:port]/path · enter: open · esc: cancel[/dim]",
                         id="form-title")
            yield Input(placeholder="/path/to/train.log or ssh://gpu-box/home/me/run/train.log",
                        id="watch-target")
            yield Static("", id="watch-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    @screen_work(exclusive=True)
    async def open_target(self) -> None:
        target = self.query_one(Input).value.strip()
        error = self.query_one("#watch-error", Static)
        error.update("opening…")
        try:
            if self.prepare is not None:
                self.dismiss(await self.app.backend.run(self.prepare, target))
                return
            result = await self.app.backend.run(lambda service: prepare_watch(service, target))
            if result[1] is not None:
                await result[1].sync()  # unreachable host or missing file: say so here
        except TrainctlError as exc:
            error.update(f"[b red]{exc}[/]")
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


def prepare_watch(service, target: str):
    """(local path to follow, a RemoteLogMirror feeding it or None, label) for `target`."""
    from pathlib import Path

    if not target:
        raise TrainctlError("give a log path or an ssh:// URL")
    if service.is_log_url(target):
        mirror = service.log_mirror(target)
        return mirror.local, mirror, target
    path = Path(target).expanduser()
    if path.is_dir():
        raise TrainctlError(f"{path} is a directory; give the log file inside it")
    if not path.exists():
        raise TrainctlError(f"no such log file: {path}")
    return path.resolve(), None, None
