"""Small formatting helpers shared by the screens."""

from __future__ import annotations

import math

from ..models import Status

STATUS_STYLE = {
    Status.PENDING: "dim",
    Status.RUNNING: "green",
    Status.STOPPING: "yellow",
    Status.STOPPED: "yellow",
    Status.SUCCEEDED: "cyan",
    Status.FAILED: "bold red",
    Status.LOST: "bold magenta",
}


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def step(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.2f}"
