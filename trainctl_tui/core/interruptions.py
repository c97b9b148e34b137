"""The one record of a session's interruptions, for every backend: interruptions.json in the
session folder, a list of entries, oldest first. Every entry has

    machine   the machine that was taken (an instance id, a pod id)
    at        when trainctl noticed (epoch seconds)
    reason    the line that says what happened, e.g. "spot interruption (i-0abc, $0.42)"
    spot      whether it was a spot machine
    cost      what the machine had cost until then (USD) or None

and whatever the backend keeps about the machine to replace it (its type, template, bid...).
An entry with "attempt" puts its reason on that attempt of the session. An entry with "node" is
a node of a multi-node run lost (backends/remote/healing.py): node, host, new_host, lost_at,
replaced_at, joined_at, seconds_lost. Written atomically;
a damaged file reads as no interruptions."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_json

FILE = "interruptions.json"
COMMON = ("machine", "at", "reason", "spot", "cost")


def load(folder: str | Path) -> list[dict]:
    try:
        entries = json.loads((Path(folder) / FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    return [_with_machine(e) for e in entries if isinstance(e, dict)]


def _with_machine(entry: dict) -> dict:
    # Files written before the record was shared named the machine by backend.
    if "machine" not in entry:
        entry["machine"] = entry.get("instance") or entry.get("pod")
    return entry


def append(folder: str | Path, entry: dict) -> list[dict]:
    """Add `entry` (it must have the common keys); returns every entry."""
    missing = [key for key in COMMON if key not in entry]
    if missing:
        raise ValueError(f"an interruption entry needs {', '.join(missing)}")
    entries = load(folder) + [entry]
    atomic_write_json(Path(folder) / FILE, entries)
    return entries


def update_last(folder: str | Path, **fields) -> None:
    entries = load(folder)
    if entries:
        entries[-1].update(fields)
        atomic_write_json(Path(folder) / FILE, entries)


def last_of(folder: str | Path, machine: str) -> dict | None:
    """The newest entry of `machine`, or None."""
    return next((e for e in reversed(load(folder)) if e["machine"] == machine), None)


def with_reasons(entries: list[dict], attempts: list) -> list | None:
    """`attempts` (Attempt objects) with each entry's reason on the attempt it names, or None
    when nothing changes."""
    attempts = list(attempts)
    changed = False
    for entry in entries:
        for attempt in attempts:
            if "attempt" in entry and attempt.n == entry["attempt"] and \
                    attempt.reason != entry["reason"]:
                attempt.reason, changed = entry["reason"], True
    return attempts if changed and entries else None


NODE_LOSS_KEYS = ("node", "host", "new_host", "reason", "lost_at", "replaced_at", "joined_at",
                  "seconds_lost", "cost")
# ... and where the backend records them: an instance's old and new private IP
NODE_LOSS_EXTRA_KEYS = ("old_ip", "new_ip")


def node_losses(folder: str | Path) -> list[dict]:
    """The entries of nodes of a multi-node run that were lost, oldest first."""
    return [entry for entry in load(folder) if "node" in entry]


def node_losses_json(folder: str | Path) -> list[dict]:
    """`sessions[].node_losses` of the JSON outputs: each node lost, replaced or given up."""
    return [{**{key: entry.get(key) for key in NODE_LOSS_KEYS},
             **{key: entry[key] for key in NODE_LOSS_EXTRA_KEYS if key in entry}}
            for entry in node_losses(folder)]
