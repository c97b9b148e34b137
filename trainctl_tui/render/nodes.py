"""The cells of a multi-node run's node rows (app/nodes.py's NodeRow) as text: the session
screen's nodes panel draws them; kept here, without the UI library, like the other cells."""

from __future__ import annotations

from ..core.formatting import format_duration
from .progress import usd
from .usage import gib

STATE_STYLE = {"running": "green", "starting": "green", "backoff": "yellow",
               "stopping": "yellow", "succeeded": "cyan", "stopped": "yellow",
               "failed": "bold red", "lost": "bold red", "interrupted": "magenta"}


def state_cell(row) -> str:
    """The node's state; 'not answering' over a live state its runner no longer backs."""
    problem = row.problem()
    if problem is not None and problem[0] == "node_lost":
        return "not answering"
    return row.state or "not started"


def beat_cell(row, now: float) -> str:
    """'3s' since its last heartbeat; '-' once the node ended or before it beat."""
    age = row.beat_age(now)
    return "-" if age is None else format_duration(age)


def gpus_cell(row, memory: bool = True) -> str:
    """'2 GPU 51% 21.0/45.0G' (the mean utilization, the memory summed unless not
    `memory`); 'no GPU'; '-' when its runner has sampled nothing (or the node ended)."""
    usage = row.usage
    if usage is None:
        return "-"
    if not usage.gpus:
        return "no GPU"
    util = usage.util_percent
    busy = f"{len(usage.gpus)} GPU {'?' if util is None else f'{util:.0f}%'}"
    if not memory:
        return busy
    used = [gpu["mem_used_mb"] for gpu in usage.gpus]
    total = [gpu["mem_total_mb"] for gpu in usage.gpus]
    total_memory = f"{gib(sum(used) if None not in used else None)}/" \
        f"{gib(sum(total) if None not in total else None)}G"
    return f"{busy} {total_memory}"


def price_cell(row) -> str:
    return "-" if row.price_per_hour is None else f"{usd(row.price_per_hour)}/h"


def why_cell(row) -> str:
    """What went wrong, when something did: 'exit 1', ssh's error line, 'no heartbeat ...'."""
    problem = row.problem()
    return problem[1] if problem is not None else ""
