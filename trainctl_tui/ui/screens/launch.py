"""`n`: the launch form. Validated by the same function as `trainctl launch` before launching."""

from __future__ import annotations

import shlex

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ...app.service import LaunchRequest, new_machine_kind
from ...backends.cloud import CreateRequest
from ...core.errors import TrainctlError
from ..screen_work import screen_work
from .create_instance import disk_size, fill_gpu_select, price_field

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

    def __init__(self, providers: list[str], cwd: str, details: dict[str, str] | None = None,
                 spot: dict[str, bool] | None = None):
        super().__init__()
        self.providers = providers
        self.cwd = cwd
        self.details = details or {}  # provider -> its host's settings, shown under it
        self.prices: list = []  # RunPod GPU prices, loaded when a runpod provider is chosen
        self.spot = spot or {}  # provider -> whether its template rents spot by default

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
            # A new cloud machine for the run (provider aws, aws:TEMPLATE or runpod).
            with Horizontal(classes="field machine aws-machine"):
                yield Label("Instance type", classes="field-label")
                yield Input(placeholder="(the template's, e.g. g5.xlarge)", id="m-type")
            with Horizontal(classes="field select-field machine runpod-machine"):
                yield Label("GPU type", classes="field-label")
                yield Select([], prompt="loading GPU types…", id="m-gpu")
            with Horizontal(classes="field machine"):
                yield Label("Spot", classes="field-label")
                yield Checkbox("spot / interruptible (cheaper; may be reclaimed)", id="m-spot")
            with Horizontal(classes="field machine"):
                yield Label("Max price $/h", classes="field-label")
                yield Input(placeholder="(spot: aws cap; runpod bid, else the minimum)",
                            id="m-price", type="number")
            with Horizontal(classes="field machine"):
                yield Label("Image / AMI", classes="field-label")
                yield Input(placeholder="(the template's / config default)", id="m-image")
            with Horizontal(classes="field machine aws-machine"):
                yield Label("S3 prefix", classes="field-label")
                yield Input(placeholder="(the template's; s3://bucket/prefix)", id="m-s3")
            with Horizontal(classes="field machine"):
                yield Label("Disk GB", classes="field-label")
                yield Input(placeholder="(config default; aws: root, runpod: /workspace)",
                            id="m-disk", type="integer")
            with Horizontal(classes="field machine runpod-machine"):
                yield Label("Container GB", classes="field-label")
                yield Input(placeholder="(config default)", id="m-container-disk",
                            type="integer")
            yield Static("", id="launch-error")
            with Horizontal(id="buttons"):
                yield Button("Launch \\[ctrl+s]", id="launch", variant="primary")
                yield Button("Cancel \\[esc]", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-command", Input).focus()
        self.show_machine(self.providers[0])

    @on(Select.Changed, "#f-provider")
    def provider_changed(self, event: Select.Changed) -> None:
        """Paths of a run on an SSH host are the host's: this machine's cwd means nothing
        there (empty = the login directory)."""
        cwd = self.query_one("#f-cwd", Input)
        remote = str(event.value) != "local"
        if remote and cwd.value == self.cwd:
            cwd.value = ""
        elif not remote and not cwd.value:
            cwd.value = self.cwd
        cwd.placeholder = "(login directory on the host)" if remote else "(current directory)"
        self.query_one("#provider-info", Static).update(self.provider_info(str(event.value)))
        self.show_machine(str(event.value))

    def show_machine(self, provider: str) -> None:
        """The machine fields show for providers that create one."""
        kind = new_machine_kind(provider)
        for widget in self.query(".machine"):
            widget.display = kind is not None
        self.query_one("#m-spot", Checkbox).value = self.spot.get(provider, False)
        for widget in self.query(".aws-machine"):
            widget.display = kind == "aws"
        for widget in self.query(".runpod-machine"):
            widget.display = kind == "runpod"
        if kind == "runpod" and not self.prices:
            self.load_gpus()

    @screen_work(group="gpus", exclusive=True)
    async def load_gpus(self) -> None:
        try:
            self.prices = await self.app.backend.call("prices", "runpod")
        except TrainctlError as exc:
            self.show_error(str(exc))
            return
        self.refresh_gpus()

    @on(Checkbox.Changed, "#m-spot")
    def refresh_gpus(self) -> None:
        if self.prices:
            fill_gpu_select(self.query_one("#m-gpu", Select), self.prices,
                            self.query_one("#m-spot", Checkbox).value)

    def machine_request(self, provider: str) -> CreateRequest | None:
        kind = new_machine_kind(provider)
        if kind is None:
            return None
        spot = self.query_one("#m-spot", Checkbox).value
        price = price_field(self.query_one("#m-price", Input).value.strip(), "max price")
        image = self.query_one("#m-image", Input).value.strip() or None
        disk = disk_size(self.query_one("#m-disk", Input).value.strip(), "disk")
        if kind == "runpod":
            gpu = self.query_one("#m-gpu", Select).value
            if gpu is Select.BLANK:
                raise TrainctlError("choose a GPU type for the pod")
            if price is not None and not spot:
                raise TrainctlError("a bid is for spot pods: tick Spot, or clear the price")
            container = disk_size(self.query_one("#m-container-disk", Input).value.strip(),
                                  "container disk")
            return CreateRequest(provider="runpod", type=str(gpu), spot=spot, max_price=price,
                                 image=image, disk_gb=disk, container_disk_gb=container)
        return CreateRequest(provider="aws", type=self.query_one("#m-type", Input).value.strip()
                             or None, spot=spot, max_price=price, image=image,
                             disk_gb=disk)

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
        provider = str(self.query_one("#f-provider", Select).value)
        return LaunchRequest(
            command=command, cwd=values["cwd"] or None, name=values["name"] or None,
            provider=provider, machine=self.machine_request(provider),
            s3_prefix=(self.query_one("#m-s3", Input).value.strip() or None)
            if new_machine_kind(provider) == "aws" else None,
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

    @screen_work(exclusive=True)
    async def launch(self, request: LaunchRequest) -> None:
        status = self.query_one("#launch-error", Static)

        def progress(line: str) -> None:
            self.app.call_from_thread(status.update, f"[dim]{line}[/dim]")

        try:
            session = await self.app.backend.call("launch", request, progress)
        except TrainctlError as exc:
            self.show_error(str(exc))
            return
        self.dismiss(session.id)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
