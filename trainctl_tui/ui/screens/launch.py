"""`n`: the launch form. Validated by the same function as `trainctl launch` before launching."""

from __future__ import annotations

import shlex

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from ...errors import TrainctlError
from ...service import LaunchRequest

FIELDS = [
    ("command", "Command", "python train.py --lr 3e-4"),
    ("cwd", "Working dir", "(current directory)"),
    ("name", "Name", "(from the script's name)"),
    ("checkpoint_dir", "Checkpoint dir", "(config default, or none)"),
    ("resume_template", "Resume template", "--resume {checkpoint}"),
    ("max_restarts", "Max restarts", "(config default)"),
]


class LaunchScreen(ModalScreen[str | None]):
    """Dismisses with the new session's id, or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "launch", "Launch")]

    def __init__(self, providers: list[str], cwd: str, details: dict[str, str] | None = None):
        super().__init__()
        self.providers = providers
        self.cwd = cwd
        self.details = details or {}  # provider -> its host's settings, shown under it

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="launch"):
            yield Static("[b]Launch a run[/b]  [dim]tab: next field · ctrl+s: launch · "
                         "esc: cancel[/dim]", id="form-title")
            for key, label, placeholder in FIELDS:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield Input(placeholder=placeholder, id=f"f-{key}",
                                value=self.cwd if key == "cwd" else "")
            with Horizontal(classes="field select-field"):
                yield Label("Provider", classes="field-label")
                yield Select([(p, p) for p in self.providers], value=self.providers[0],
                             allow_blank=False, id="f-provider")
            yield Static(self.provider_info(self.providers[0]), id="provider-info")
            yield Static("", id="launch-error")
            with Horizontal(id="buttons"):
                yield Button("Launch \\[ctrl+s]", id="launch", variant="primary")
                yield Button("Cancel \\[esc]", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-command", Input).focus()

    @on(Select.Changed, "#f-provider")
    def provider_changed(self, event: Select.Changed) -> None:
        """Paths of a run on an SSH host are the host's: this machine's cwd means nothing
        there (empty = the login directory)."""
        cwd = self.query_one("#f-cwd", Input)
        remote = str(event.value).startswith("ssh:")
        if remote and cwd.value == self.cwd:
            cwd.value = ""
        elif not remote and not cwd.value:
            cwd.value = self.cwd
        cwd.placeholder = "(login directory on the host)" if remote else "(current directory)"
        self.query_one("#provider-info", Static).update(self.provider_info(str(event.value)))

    def provider_info(self, provider: str) -> str:
        return f"[dim]{self.details.get(provider, 'runs on this machine')}[/dim]"

    def request(self) -> LaunchRequest:
        """The form as a launch request; raises TrainctlError on what can be checked here."""
        values = {key: self.query_one(f"#f-{key}", Input).value.strip() for key, _, _ in FIELDS}
        try:
            command = shlex.split(values["command"])
        except ValueError as exc:
            raise TrainctlError(f"command does not parse: {exc}") from None
        restarts = values["max_restarts"]
        if restarts and not restarts.isdigit():
            raise TrainctlError(f"max restarts must be a whole number, not '{restarts}'")
        return LaunchRequest(
            command=command, cwd=values["cwd"] or None, name=values["name"] or None,
            provider=str(self.query_one("#f-provider", Select).value),
            checkpoint_dir=values["checkpoint_dir"] or None,
            resume_template=values["resume_template"] or None,
            max_restarts=int(restarts) if restarts else None,
        )

    def show_error(self, message: str) -> None:
        self.query_one("#launch-error", Static).update(f"[b red]{message}[/]")

    @on(Button.Pressed, "#launch")
    @on(Input.Submitted)
    def action_launch(self) -> None:
        try:
            request = self.request()
        except TrainctlError as exc:
            self.show_error(str(exc))
            return
        self.show_error("")
        self.query_one("#launch-error", Static).update("launching…")
        self.launch(request)

    @work(exclusive=True)
    async def launch(self, request: LaunchRequest) -> None:
        try:
            session = await self.app.backend.call("launch", request)
        except TrainctlError as exc:
            self.show_error(str(exc))
            return
        self.dismiss(session.id)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
