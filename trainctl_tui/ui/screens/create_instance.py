"""`c` on the Instances screen: rent an EC2 instance or a RunPod pod. The same CreateRequest
and Service.create_instance as `trainctl instance create`."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ...backends.cloud import CreateRequest, Price
from ...core.errors import TrainctlError
from ..screen_work import screen_work


def gpu_choices(prices: list[Price], spot: bool) -> list[tuple[str, str]]:
    """RunPod GPU types cheapest first for the chosen market; unavailable ones last."""
    market = "spot" if spot else "on-demand"
    best: dict[str, Price] = {}
    for price in prices:
        if price.lifecycle != market or price.price_per_hour is None:
            continue
        current = best.get(price.type)
        if current is None or (price.available, -price.price_per_hour) > \
                (current.available, -(current.price_per_hour or 0)):
            best[price.type] = price
    rows = sorted(best.values(), key=lambda p: (p.available is False, p.price_per_hour))
    return [(f"{p.type}  ${p.price_per_hour:.3f}/h"
             f"{'' if p.available is not False else '  (none free)'}"
             f"{'  ' + p.detail if p.detail else ''}", p.type) for p in rows]


def fill_gpu_select(select: Select, prices: list[Price], spot: bool) -> None:
    """The GPU choices for the market ticked, keeping the chosen one where it still exists."""
    current = select.value
    choices = gpu_choices(prices, spot)
    select.set_options(choices)
    if current in [value for _, value in choices]:
        select.value = current


def price_field(text: str, what: str) -> float | None:
    """A $/h field: empty = none given, else a number > 0."""
    if not text:
        return None
    try:
        price = float(text)
    except ValueError:
        raise TrainctlError(f"{what} must be a number of dollars, not '{text}'") from None
    if price <= 0:
        raise TrainctlError(f"{what} must be > 0, got {price:g}")
    return price


def disk_size(text: str, what: str) -> int | None:
    """A disk size field: empty = the config's default, else whole GB >= 1."""
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise TrainctlError(f"{what} must be a whole number of GB (at least 1), not '{text}'")
    return int(text)


class CreateInstanceScreen(ModalScreen):
    """Dismisses with the new Instance, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "create", "Create")]

    def __init__(self) -> None:
        super().__init__()
        self.prices: list[Price] = []
        self.creating = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="launch"):
            yield Static("[b]Create a cloud machine[/b]  [dim]tab: next field · ctrl+s: create"
                         " · esc: cancel[/dim]", id="form-title")
            with Horizontal(classes="field select-field"):
                yield Label("Cloud", classes="field-label")
                yield Select([("aws (EC2)", "aws"), ("runpod", "runpod")], value="aws",
                             allow_blank=False, id="c-provider")
            with Horizontal(classes="field select-field aws-only"):
                yield Label("Template", classes="field-label")
                yield Select([("default", "")], value="", allow_blank=False, id="c-template")
            with Horizontal(classes="field aws-only"):
                yield Label("Instance type", classes="field-label")
                yield Input(placeholder="(the template's, e.g. g5.xlarge)", id="c-type")
            with Horizontal(classes="field select-field runpod-only"):
                yield Label("GPU type", classes="field-label")
                yield Select([], prompt="loading GPU types…", id="c-gpu")
            with Horizontal(classes="field runpod-only"):
                yield Label("GPU count", classes="field-label")
                yield Input("1", id="c-gpu-count", type="integer")
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
            with Horizontal(classes="field"):
                yield Label("Disk GB", classes="field-label")
                yield Input(placeholder="(config default; aws: root, runpod: /workspace)",
                            id="c-disk", type="integer")
            with Horizontal(classes="field runpod-only"):
                yield Label("Container GB", classes="field-label")
                yield Input(placeholder="(config default)", id="c-container-disk",
                            type="integer")
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                yield Input(placeholder="(trainctl-…)", id="c-name")
            yield Static("", id="launch-error")
            with Horizontal(id="buttons"):
                yield Button("Create \\[ctrl+s]", id="create", variant="primary")
                yield Button("Cancel \\[esc]", id="cancel")

    def on_mount(self) -> None:
        self.show_cloud("aws")
        self.load_choices()

    @screen_work(group="create-form")
    async def load_choices(self) -> None:
        clouds, templates = await self.app.backend.run(
            lambda service: (service.clouds(), sorted(service.config.aws.templates)))
        provider = self.query_one("#c-provider", Select)
        if clouds:
            provider.set_options([(("aws (EC2)" if c == "aws" else c), c) for c in clouds])
            provider.value = clouds[0]
        self.query_one("#c-template", Select).set_options(
            [(name, name) for name in templates] or [("default", "")])
        if "default" in templates:
            self.query_one("#c-template", Select).value = "default"

    @on(Select.Changed, "#c-provider")
    def provider_changed(self, event: Select.Changed) -> None:
        self.show_cloud(str(event.value))

    def show_cloud(self, cloud: str) -> None:
        for widget in self.query(".aws-only"):
            widget.display = cloud == "aws"
        for widget in self.query(".runpod-only"):
            widget.display = cloud == "runpod"
        if cloud == "runpod" and not self.prices:
            self.load_gpus()

    @screen_work(group="gpus", exclusive=True)
    async def load_gpus(self) -> None:
        try:
            self.prices = await self.app.backend.call("prices", "runpod")
        except TrainctlError as exc:
            self.error(str(exc))
            return
        self.refresh_gpus()

    @on(Checkbox.Changed, "#c-spot")
    def refresh_gpus(self) -> None:
        if self.prices:
            fill_gpu_select(self.query_one("#c-gpu", Select), self.prices,
                            self.query_one("#c-spot", Checkbox).value)

    def error(self, message: str) -> None:
        self.query_one("#launch-error", Static).update(f"[red]{message}[/red]")

    def request(self) -> CreateRequest:
        cloud = str(self.query_one("#c-provider", Select).value)
        value = {key: self.query_one(f"#c-{key}", Input).value.strip()
                 for key in ("type", "gpu-count", "price", "image", "name", "disk",
                             "container-disk")}
        spot = self.query_one("#c-spot", Checkbox).value
        price = price_field(value["price"], "the price")
        disk = disk_size(value["disk"], "disk")
        if cloud == "runpod":
            gpu = self.query_one("#c-gpu", Select).value
            if gpu is Select.BLANK:
                raise TrainctlError("choose a GPU type")
            count = int(value["gpu-count"] or 1)
            if count < 1:
                raise TrainctlError("GPU count must be at least 1")
            if price is not None and not spot:
                raise TrainctlError("a bid is for spot pods: tick Spot, or clear the price")
            return CreateRequest(provider="runpod", type=str(gpu), gpu_count=count, spot=spot,
                                 max_price=price, image=value["image"] or None,
                                 name=value["name"] or None, disk_gb=disk,
                                 container_disk_gb=disk_size(value["container-disk"],
                                                             "container disk"))
        template = str(self.query_one("#c-template", Select).value) or None
        return CreateRequest(provider="aws", template=template, type=value["type"] or None,
                             spot=True if spot else None, max_price=price,
                             image=value["image"] or None, name=value["name"] or None,
                             disk_gb=disk)

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
