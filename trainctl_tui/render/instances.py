"""`trainctl instances`, `prices` and `gpus` as rich tables and JSON (never imports textual)."""

from __future__ import annotations

import json
import time
from typing import TextIO

from ..core.formatting import format_duration

STATE_STYLE = {
    "running": "green", "pending": "yellow", "starting": "yellow", "created": "yellow",
    "stopping": "yellow", "stopped": "dim", "exited": "dim", "shutting-down": "dim",
    "terminated": "dim", "dry-run": "cyan",
}


def format_usd(value: float | None, *, digits: int = 2) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


def instances_json(instances, errors: dict[str, str]) -> str:
    now = time.time()
    return json.dumps({"version": 1, "generated": now,
                       "instances": [i.to_json(now) for i in instances],
                       "errors": errors}, indent=2)


def render_instances(instances, errors: dict[str, str], out: TextIO, *,
                     clouds: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    if not clouds:
        console.print("no cloud set up: AWS credentials (aws configure, AWS_PROFILE or \\[aws] "
                      "in the config) or a RunPod API key (RUNPOD_API_KEY or \\[runpod] api_key)")
        return
    now = time.time()
    if instances:
        table = Table(box=None, pad_edge=False, header_style="bold")
        columns = ["CLOUD", "ID", "NAME", "TYPE", "GPUS", "MARKET", "STATE", "$/H", "UPTIME",
                   "COST", "SESSION"]
        if console.width < 110:  # 80 columns: the id says the cloud; the rest is in --json
            columns = [c for c in columns if c not in ("CLOUD", "NAME", "GPUS", "UPTIME")]
        for column in columns:
            table.add_column(column, no_wrap=True, overflow="ellipsis",
                             justify="right" if column in ("$/H", "COST", "UPTIME") else "left")
        for instance in instances:
            style = STATE_STYLE.get(instance.state, "")
            cells = {
                "CLOUD": instance.provider, "ID": instance.id, "NAME": instance.name or "-",
                "TYPE": instance.type or "-", "GPUS": instance.gpus or "-",
                "MARKET": instance.lifecycle,
                "STATE": f"[{style}]{instance.state}[/]" if style else instance.state,
                "$/H": format_usd(instance.price_per_hour, digits=3),
                "UPTIME": format_duration(instance.uptime(now)),
                "COST": format_usd(instance.cost_so_far(now)),
                "SESSION": instance.session or "-",
            }
            table.add_row(*(cells[c] for c in columns))
        console.print(table)
        billing = [i for i in instances if i.billing and i.price_per_hour is not None]
        if billing:
            rate = sum(i.price_per_hour for i in billing)
            spent = sum(i.cost_so_far(now) or 0 for i in billing)
            console.print(f"{len(billing)} billing · ${rate:,.3f}/h now · ${spent:,.2f} so far")
    elif not errors:
        console.print(f"no instances on {', '.join(clouds)}")
    for cloud, error in errors.items():
        console.print(f"[bold red]{cloud}[/]: {error}")


def render_instance(instance, out: TextIO, verb: str) -> None:
    """One line after create/start/stop/terminate."""
    from rich.console import Console

    detail = f" ({instance.detail})" if instance.detail else ""
    price = f", {format_usd(instance.price_per_hour, digits=3)}/h" \
        if instance.price_per_hour is not None else ""
    name = f" {instance.name}" if instance.name else ""
    Console(file=out, highlight=False).print(
        f"{verb} {instance.provider} {instance.id}{name}: {instance.type or '?'}, "
        f"{instance.lifecycle}, {instance.state}{price}{detail}")


def prices_json(prices) -> str:
    return json.dumps({"version": 1, "prices": [p.to_json() for p in prices]}, indent=2)


def render_prices(prices, out: TextIO, *, title: str = "") -> None:
    """Cheapest first; rows without a price last."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    if not prices:
        console.print(f"no prices{' for ' + title if title else ''}")
        return
    rows = sorted(prices, key=lambda p: (p.price_per_hour is None, p.price_per_hour or 0,
                                         p.type, p.lifecycle, p.where))
    table = Table(box=None, pad_edge=False, header_style="bold", title=title or None,
                  title_justify="left")
    columns = ["TYPE", "MARKET", "WHERE", "$/H", "AVAILABLE", "DETAIL", "SOURCE"]
    if console.width < 110:
        columns.remove("SOURCE")
    for column in columns:
        table.add_column(column, justify="right" if column == "$/H" else "left",
                         no_wrap=True, overflow="ellipsis")
    for price in rows:
        available = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[price.available]
        cells = {"TYPE": price.type, "MARKET": price.lifecycle, "WHERE": price.where or "-",
                 "$/H": format_usd(price.price_per_hour, digits=3), "AVAILABLE": available,
                 "DETAIL": price.detail or "", "SOURCE": price.source or ""}
        table.add_row(*(cells[c] for c in columns))
    console.print(table)
