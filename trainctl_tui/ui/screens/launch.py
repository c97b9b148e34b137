"""`n`: the launch form. Validated by the same function as `trainctl launch` before launching."""

from __future__ import annotations

import shlex

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ...app.costs import parse_dollars, parse_hours
from ...app.machines import check_form_request, new_machine_kind
from ...app.service import LaunchRequest
from ...core.errors import TrainctlError
from ...core.machines import CreateRequest
from ...core.options import LAUNCH
from ...core.placement import Placement
from ..screen_work import screen_work
from .machine_fields import (
    disk_size,
    field_widgets,
    fill_gpu_select,
    fill_request,
    job_options,
    options_of,
    price_field,
    show_fields_of,
    show_probed,
)

FIELDS = [
    ("command", "Command", "python train.py --lr 3e-4"),
    ("cwd", "Working dir", "(current directory)"),
    ("name", "Name", "(from the script's name)"),
    ("checkpoint_dir", "Checkpoint dir", "(config default, or none)"),
    ("resume_template", "Resume template", "--resume {checkpoint}"),
    ("max_restarts", "Max restarts", "(config default)"),
    ("budget", "Budget $", "(config default, or none)"),
    ("max_hours", "Max hours", "(config default, or none)"),
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
        self.prices: dict[str, list] = {}  # cloud -> its machine types' prices, when chosen
        self.spot = spot or {}  # provider -> whether its template rents spot by default
        # (provider, option key) -> the choices the place gave, or its error when it did not
        # answer: asked once per form.
        self.probed: dict[tuple[str, str], list[tuple[str, str]] | str] = {}

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
            # The job of a backend that takes job options (a Slurm job's nodes, time ...).
            with Vertical(id="job-fields"):
                yield from field_widgets(LAUNCH, "j", "provider", classes="job")
            # A new cloud machine for the run, where the provider creates one first.
            yield from field_widgets(LAUNCH, "m", "", classes="machine")
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
            yield from field_widgets(LAUNCH, "m", "image", classes="machine")
            with Horizontal(classes="field machine"):
                yield Label("Disk GB", classes="field-label")
                yield Input(placeholder="(config default; aws: root, runpod: /workspace)",
                            id="m-disk", type="integer")
            yield from field_widgets(LAUNCH, "m", "disk", classes="machine")
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
        """The machine fields show for providers that create one; of those declared by a
        backend, the ones of the provider's."""
        kind = new_machine_kind(provider)
        for widget in self.query(".machine"):
            widget.display = kind is not None
        self.query_one("#m-spot", Checkbox).value = self.spot.get(provider, False)
        show_fields_of(self, kind, ".machine")
        self.show_job(provider)
        if kind is not None and options_of(LAUNCH, kind, select="prices") \
                and kind not in self.prices:
            self.load_prices(kind)

    def show_job(self, provider: str) -> None:
        """The job fields of the provider's backend; a choice its place gives (a cluster's
        partitions) is asked for in the background."""
        backend = Placement.parse(provider).kind
        show_fields_of(self, backend, ".job")
        self.query_one("#job-fields").display = any(
            option.fills == "spec" for option in options_of(LAUNCH, backend))
        for option in options_of(LAUNCH, backend, select="probe"):
            answer = self.probed.get((provider, option.key))
            if answer is None:
                show_probed(self, "j", option, [("asking the cluster… (the default)", "")])
                self.ask_place(provider, option)
            else:
                self.show_answer(provider, option, answer)

    @screen_work(group="probe", exclusive=True)
    async def ask_place(self, provider: str, option) -> None:
        try:
            answer = await self.app.backend.call("probe_choices", provider, option.key)
        except TrainctlError as exc:
            answer = str(exc)
        self.probed[(provider, option.key)] = answer
        if str(self.query_one("#f-provider", Select).value) == provider:
            self.show_answer(provider, option, answer)

    def show_answer(self, provider: str, option, answer) -> None:
        """The choices in the select, or the text field and why the place did not answer."""
        show_probed(self, "j", option, answer if isinstance(answer, list) else None)
        info = self.provider_info(provider)
        if isinstance(answer, str):
            info += f"\n[red]{option.label.lower()}s unknown: {escape(answer)}[/red]"
        self.query_one("#provider-info", Static).update(info)

    @screen_work(group="gpus", exclusive=True)
    async def load_prices(self, cloud: str) -> None:
        try:
            self.prices[cloud] = await self.app.backend.call("prices", cloud)
        except TrainctlError as exc:
            self.show_error(str(exc))
            return
        self.refresh_gpus()

    @on(Checkbox.Changed, "#m-spot")
    def refresh_gpus(self) -> None:
        spot = self.query_one("#m-spot", Checkbox).value
        for cloud, prices in self.prices.items():
            for option in options_of(LAUNCH, cloud, select="prices"):
                fill_gpu_select(self.query_one(f"#m-{option.field}", Select), prices, spot)

    def machine_request(self, provider: str) -> tuple[CreateRequest | None, dict]:
        """(the machine to create for the run or None, the run settings its fields set)."""
        kind = new_machine_kind(provider)
        if kind is None:
            return None, {}
        request = CreateRequest(
            provider=kind, spot=self.query_one("#m-spot", Checkbox).value,
            max_price=price_field(self.query_one("#m-price", Input).value.strip(), "max price"),
            image=self.query_one("#m-image", Input).value.strip() or None,
            disk_gb=disk_size(self.query_one("#m-disk", Input).value.strip(), "disk"))
        run = fill_request(self, LAUNCH, "m", request)
        check_form_request(request)
        return request, run

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
        machine, run_settings = self.machine_request(provider)
        backend_options = job_options(self, LAUNCH, "j", Placement.parse(provider).kind)
        return LaunchRequest(
            command=command, cwd=values["cwd"] or None, name=values["name"] or None,
            provider=provider, machine=machine, **run_settings, backend_options=backend_options,
            checkpoint_dir=values["checkpoint_dir"] or None,
            resume_template=values["resume_template"] or None,
            max_restarts=int(restarts) if restarts else None,
            budget=parse_dollars(values["budget"] or None, "budget"),
            max_hours=parse_hours(values["max_hours"] or None, "max hours"),
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
