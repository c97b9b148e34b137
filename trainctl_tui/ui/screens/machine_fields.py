"""The fields of a new machine on the launch and create forms that one backend or another
declares (app.machines.form_fields): drawn, shown for the chosen cloud, and read into a
CreateRequest. The fields every cloud shares (spot, price, image, disk) are the forms' own.
The same for the launch form's job fields (fills="spec": a Slurm job's nodes, time,
partition), read into the launch's backend options."""

from __future__ import annotations

from textual.containers import Horizontal
from textual.widgets import Input, Label, Select

from ...app.machines import form_fields
from ...core.errors import TrainctlError
from ...core.machines import CreateRequest, Price
from ...core.options import Option


def field_widgets(form: str, prefix: str, after: str, classes: str = ""):
    """The rows of the backend fields of `form` that follow common field `after` ("" = the
    top); each row carries a class per backend that has it ("for-NAME")."""
    for option, backends in form_fields(form):
        if option.after != after:
            continue
        kinds = " ".join(f"for-{name}" for name in backends)
        select = " select-field" if option.select else ""
        with Horizontal(classes=f"field{select} backend-field {classes} {kinds}".strip()):
            yield Label(option.label, classes="field-label")
            if option.select == "config":
                yield Select([("default", "")], value="", allow_blank=False,
                             id=f"{prefix}-{option.field}")
            elif option.select == "prices":
                yield Select([], prompt="loading GPU types…", id=f"{prefix}-{option.field}")
            elif option.select == "probe":  # asked of the place; typed when it does not answer
                yield Select([("default", "")], value="", allow_blank=False,
                             id=f"{prefix}-{option.field}")
                typed = Input(placeholder=f"type a {option.label.lower()} (empty: the default)",
                              id=f"{prefix}-{option.field}-text")
                typed.display = False
                yield typed
            else:
                yield Input(option.value, placeholder=option.placeholder,
                            id=f"{prefix}-{option.field}",
                            type={"int": "integer", "float": "number"}.get(option.type, "text"))


def show_fields_of(screen, cloud: str | None, group: str = "") -> None:
    """Show the backend fields of `cloud` only (none for None); group: only the fields of
    that class (".machine", ".job")."""
    for widget in screen.query(f".backend-field{group}"):
        widget.display = cloud is not None and widget.has_class(f"for-{cloud}")


def options_of(form: str, cloud: str, select: str | None = None) -> list[Option]:
    return [option for option, backends in form_fields(form) if cloud in backends
            and (select is None or option.select == select)]


def fill_request(screen, form: str, prefix: str, request: CreateRequest) -> dict[str, object]:
    """Put the chosen cloud's field values into `request`; returns those that set the run
    instead (fills="run", e.g. the S3 prefix), by LaunchRequest field."""
    run: dict[str, object] = {}
    for option in options_of(form, request.provider):
        widget = screen.query_one(f"#{prefix}-{option.field}")
        if isinstance(widget, Select):
            if widget.value is Select.BLANK:
                raise TrainctlError(option.required or f"choose a {option.label}")
            value = str(widget.value) or None
        else:
            value = field_value(option, widget.value.strip())
        if option.fills == "run":
            run[option.key] = value
        else:
            request.set(option.key, value)
    return run


def job_options(screen, form: str, prefix: str, backend: str) -> dict[str, object]:
    """The job fields of `backend` (fills="spec") as the launch's backend options, by key;
    a probed select that did not answer is read from its text field."""
    values: dict[str, object] = {}
    for option in options_of(form, backend):
        if option.fills != "spec":
            continue
        widget = screen.query_one(f"#{prefix}-{option.field}")
        if option.select == "probe" and not widget.display:
            widget = screen.query_one(f"#{prefix}-{option.field}-text", Input)
        if isinstance(widget, Select):
            value = str(widget.value) if widget.value is not Select.BLANK else ""
        else:
            value = field_value(option, widget.value.strip())
        if value not in (None, ""):
            values[option.key] = value
    return values


def show_probed(screen, prefix: str, option: Option, choices: list[tuple[str, str]] | None,
                ) -> None:
    """A probed select with the place's choices, or (None: it did not answer) its text
    field instead."""
    select = screen.query_one(f"#{prefix}-{option.field}", Select)
    text = screen.query_one(f"#{prefix}-{option.field}-text", Input)
    if choices is not None:
        current = select.value
        select.set_options(choices)
        if current in [value for _, value in choices]:
            select.value = current
        select.mutate_reactive(Select.value)  # the label, when the value stayed the same
    select.display = choices is not None
    text.display = choices is None


def field_value(option: Option, text: str):
    """An input's text as the option's type; empty = none given (or its initial value)."""
    text = text or option.value
    if not text:
        return None
    if option.type == "int" and option.metavar == "GB":
        return disk_size(text, option.noun or option.label)
    if option.type == "int":
        number = int(text)
        if option.minimum is not None and number < option.minimum:
            raise TrainctlError(f"{option.noun or option.label} must be at least "
                                f"{option.minimum}")
        return number
    if option.type == "float":
        return price_field(text, option.noun or option.label)
    return text


def gpu_choices(prices: list[Price], spot: bool) -> list[tuple[str, str]]:
    """GPU types cheapest first for the chosen market; unavailable ones last."""
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
