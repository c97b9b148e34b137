"""`c` on the Instances screen: rent a machine from a cloud. The same CreateRequest and
Service.create_instance as `trainctl instance create`; the cloud's own fields come from what
its backend declares (machine_fields)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ...app.machines import check_form_request, cloud_label, cloud_names
from ...core.errors import TrainctlError
from ...core.machines import CreateRequest, Price
from ...core.options import CREATE
from ..screen_work import screen_work
from .machine_fields import (
    disk_size,
    field_widgets,
    fill_gpu_select,
    fill_request,
    options_of,
    price_field,
    show_fields_of,
)


class CreateInstanceScreen(ModalScreen):
    """Dismisses with the new Instance, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "create", "Create")]

    def __init__(self) -> None:
        super().__init__()
        self.prices: dict[str, list[Price]] = {}  # cloud -> the prices of its machine types
        self.creating = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="launch"):
            yield Static("[b]Create a cloud machine[/b]  [dim]tab: next field · ctrl+s: create"
                         " · esc: cancel[/dim]", id="form-title")
            with Horizontal(classes="field select-field"):
                yield Label("Cloud", classes="field-label")
                clouds = cloud_names()
                yield Select([(cloud_label(c), c) for c in clouds], value=clouds[0],
                             allow_blank=False, id="c-provider")
            yield from field_widgets(CREATE, "c", "")
            with Horizontal(classes="field"):
                yield Label("Spot", classes="field-label")
                yield Checkbox("spot / interruptible (cheaper; may be reclaimed)", id="c-spot")
            with Horizontal(classes="field"):
                yield Label("Max price $/h", classes="field-label")
                yield Input(placeholder="(spot: aws cap; runpod bid, else the minimum)",
                            id="c-price", type="number")
            with Horizontal(classes="field"):
                yield Label("Image / AMI", classes="field-label")
                yield Input(placeholder="(the template's / config default)", id="c-image")
            yield from field_widgets(CREATE, "c", "image")
            with Horizontal(classes="field"):
                yield Label("Disk GB", classes="field-label")
                yield Input(placeholder="(config default; aws: root, runpod: /workspace)",
                            id="c-disk", type="integer")
            yield from field_widgets(CREATE, "c", "disk")
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                yield Input(placeholder="(trainctl-…)", id="c-name")
            yield Static("", id="launch-error")
            with Horizontal(id="buttons"):
                yield Button("Create \\[ctrl+s]", id="create", variant="primary")
                yield Button("Cancel \\[esc]", id="cancel")

    def on_mount(self) -> None:
        self.show_cloud(str(self.query_one("#c-provider", Select).value))
        self.load_choices()

    @screen_work(group="create-form")
    async def load_choices(self) -> None:
        clouds = await self.app.backend.run(lambda service: service.clouds())
        provider = self.query_one("#c-provider", Select)
        if clouds:
            provider.set_options([(cloud_label(c), c) for c in clouds])
            provider.value = clouds[0]
        for cloud in cloud_names():
            for option in options_of(CREATE, cloud, select="config"):
                choices = await self.app.backend.run(
                    lambda service, cloud=cloud, key=option.key:
                    service.select_choices(cloud, key))
                select = self.query_one(f"#c-{option.field}", Select)
                select.set_options(choices)
                if "default" in [value for _, value in choices]:
                    select.value = "default"

    @on(Select.Changed, "#c-provider")
    def provider_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK:
            self.show_cloud(str(event.value))

    def show_cloud(self, cloud: str) -> None:
        show_fields_of(self, cloud)
        if options_of(CREATE, cloud, select="prices") and cloud not in self.prices:
            self.load_prices(cloud)

    @screen_work(group="gpus", exclusive=True)
    async def load_prices(self, cloud: str) -> None:
        try:
            self.prices[cloud] = await self.app.backend.call("prices", cloud)
        except TrainctlError as exc:
            self.error(str(exc))
            return
        self.refresh_gpus()

    @on(Checkbox.Changed, "#c-spot")
    def refresh_gpus(self) -> None:
        spot = self.query_one("#c-spot", Checkbox).value
        for cloud, prices in self.prices.items():
            for option in options_of(CREATE, cloud, select="prices"):
                fill_gpu_select(self.query_one(f"#c-{option.field}", Select), prices, spot)

    def error(self, message: str) -> None:
        self.query_one("#launch-error", Static).update(f"[red]{message}[/red]")

    def request(self) -> CreateRequest:
        provider = self.query_one("#c-provider", Select).value
        value = {key: self.query_one(f"#c-{key}", Input).value.strip()
                 for key in ("price", "image", "name", "disk")}
        request = CreateRequest(
            provider=str(provider), spot=True if self.query_one("#c-spot", Checkbox).value
            else None, max_price=price_field(value["price"], "the price"),
            image=value["image"] or None, name=value["name"] or None,
            disk_gb=disk_size(value["disk"], "disk"))
        fill_request(self, CREATE, "c", request)
        check_form_request(request)
        return request

    @on(Button.Pressed, "#create")
    def action_create(self) -> None:
        if self.creating:
            return
        try:
            request = self.request()
        except (TrainctlError, ValueError) as exc:
            self.error(str(exc))
            return
        self.create(request)

    @screen_work(group="create", exclusive=True)
    async def create(self, request: CreateRequest) -> None:
        self.creating = True
        self.query_one("#create", Button).disabled = True
        status = self.query_one("#launch-error", Static)
        status.update("creating…")

        def progress(line: str) -> None:
            self.app.call_from_thread(status.update, f"[dim]{line}[/dim]")

        try:
            instance = await self.app.backend.call("create_instance", request, progress)
        except TrainctlError as exc:
            self.error(str(exc))
            return
        finally:
            self.creating = False
            self.query_one("#create", Button).disabled = False
        self.dismiss(instance)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.creating:
            self.notify("still creating: it finishes (or is cleaned up) on its own; wait for it",
                        severity="warning")
            return
        self.dismiss(None)
