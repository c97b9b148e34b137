"""What a session's GPUs are doing, for the front ends, and the alert when a paid machine's
GPUs sit idle while its run is running.

The figures come from the session folder's usage.json (monitor/usage.py), whatever the
backend. A machine is paid when its $/h is known: the spec's `price_per_hour`, which a launch
records for rented instances and for machines whose config declares a price."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.formatting import format_duration
from ..core.models import Session, Status
from ..core.placement import machine_of
from ..monitor.usage import Usage, empty_json, usage_of


def session_usage(session: Session) -> Usage | None:
    """The latest usage of a session whose runner may still sample (None for ended ones:
    an hour-old GPU reading is no reading)."""
    if not session.status.active:
        return None
    return usage_of(session.session_dir)


def usage_json(usage: Usage | None) -> dict:
    """`gpus`, `cpu_percent`, `rss_mb` for the JSON outputs (null where unknown)."""
    return usage.to_json() if usage is not None else empty_json()


def gpu_util_by_session(service, ids: list[str]) -> dict[str, float | None]:
    """The mean GPU % each session's runner sampled last (None: unknown, or it ended)."""
    found = {}
    for session_id in ids:
        session = service.store.get(session_id)
        usage = session_usage(session) if session is not None else None
        found[session_id] = usage.util_percent if usage is not None else None
    return found


def machine_price(session: Session) -> tuple[float | None, str | None]:
    """The $/h of the machine the session runs on, if known (its spec's price_per_hour), and
    its type when the backend recorded one (spec machine_type: g5.xlarge)."""
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None, None
    if not isinstance(spec, dict):
        return None, None
    price, kind = spec.get("price_per_hour"), spec.get("machine_type")
    if isinstance(price, bool) or not isinstance(price, (int, float)) or price <= 0:
        price = None
    return (float(price) if price is not None else None,
            kind if isinstance(kind, str) and kind else None)


def machine_label(session: Session, usage: Usage, price: float,
                  machine_type: str | None = None) -> str:
    """'g5.xlarge (1x NVIDIA A10G, $1.01/h)': the machine (its type, else its id or host),
    its GPUs and what it costs."""
    where = machine_type or machine_of(session) or "this machine"
    names = [gpu["name"] for gpu in usage.gpus if gpu["name"]]
    gpus = [f"{names.count(kind)}x {kind}" for kind in sorted(set(names))]
    return f"{where} ({', '.join([*gpus, f'${price:.2f}/h'])})"


def gpu_idle_alert(session: Session, usage: Usage | None, *, price: float | None, now: float,
                   below_percent: float, after_seconds: float,
                   machine_type: str | None = None):
    """The idle-GPU alert if it holds now, else None: every GPU under `below_percent` for
    `after_seconds` while the run's current attempt is running on a machine with a price.
    Fires once per idle stretch (its key names when the stretch began): GPUs that get busy
    and then idle again alert again."""
    from ..monitor.alerts import WARNING, Alert, AlertKind

    if usage is None or price is None or session.status is not Status.RUNNING:
        return None
    attempt = session.attempts[-1] if session.attempts else None
    if attempt is None or attempt.ended is not None:
        return None  # between attempts (backoff) the GPUs are idle by design
    since = usage.idle_since(below_percent)
    if since is None:
        return None
    since = max(since, attempt.started or since)
    # As of the runner's last sample: a runner that stopped sampling proves nothing new.
    quiet = (usage.at or now) - since
    if quiet < after_seconds:
        return None
    where = machine_label(session, usage, price, machine_type)
    message = f"GPU idle for {idle_for(after_seconds)} on {where}"
    return Alert(session_id=session.id, session_name=session.name, kind=AlertKind.GPU_IDLE,
                 message=message, severity=WARNING, at=since + after_seconds,
                 attempt=session.attempt or 0, episode=f"{since:.0f}")


def idle_for(seconds: float) -> str:
    """'10 min' for whole minutes (as the setting reads), else '45s', '1m30s'."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return format_duration(seconds)
