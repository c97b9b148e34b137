"""A session's progress, ETA and cost, and the budget it runs under.

The runner keeps the figures in status.json (`progress`, `cost`: runner/budget.py); a
refresh of a session on another machine mirrors them into the session folder (FIGURES), so
every front end reads them from the folder, whatever the backend. Cost to finish is the ETA
x the price per hour of the machine the run is on; cost so far is what the runner counted,
including what earlier attempts, runners and interrupted machines cost (carried in the spec
as `spent_before` when a run starts again). No price: no cost, never a made-up $0. No total
in the log: no ETA."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..core import interruptions
from ..core.atomic import atomic_write_json
from ..core.errors import TrainctlError
from ..core.models import Record, Session, Status

FIGURES = "figures.json"


class Figures(Record):
    """What the ETA and cost columns show for one session."""

    progress: dict | None = None  # done, total, unit, source, seconds_per_step, at, attempt
    eta_seconds: float | None = None
    cost_so_far: float | None = None
    cost_to_finish: float | None = None
    price_per_hour: float | None = None
    hours: float | None = None
    budget: float | None = None
    max_hours: float | None = None
    warned: dict = {}  # "budget"/"hours" -> when the runner passed 90 %
    reached: str | None = None  # "budget reached ($25.03 of $25.00)"
    spent_before: float = 0.0

    def to_json(self) -> dict:
        return {"progress": self.progress, "eta_seconds": self.eta_seconds,
                "cost_so_far": self.cost_so_far, "cost_to_finish": self.cost_to_finish,
                "price_per_hour": self.price_per_hour, "budget": self.budget,
                "max_hours": self.max_hours, "hours": self.hours,
                "budget_reached": self.reached}


def runner_figures(session: Session) -> dict:
    """{progress, cost} as the session's runner last wrote them ({} before it did)."""
    folder = Path(session.session_dir)
    for name in (FIGURES, "status.json"):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            return {"progress": data.get("progress"), "cost": data.get("cost"),
                    "started": data.get("started")}
    return {}


def mirror_figures(session: Session, status: dict) -> None:
    """Keep a remote runner's figures in the session folder (when they changed)."""
    figures = {"progress": status.get("progress"), "cost": status.get("cost"),
               "started": status.get("started")}
    if figures["progress"] is None and figures["cost"] is None:
        return
    path = Path(session.session_dir) / FIGURES
    try:
        if json.loads(path.read_text()) == figures:
            return
    except (OSError, ValueError, RecursionError):
        pass
    try:
        atomic_write_json(path, figures, durable=False)
    except OSError:
        pass  # the figures are a view: a full disk must not break a refresh


def figures_of(session: Session, now: float | None = None) -> Figures:
    """The session's progress, ETA and cost now."""
    now = now or time.time()
    raw = runner_figures(session)
    cost = raw.get("cost") if isinstance(raw.get("cost"), dict) else {}
    progress = raw.get("progress") if isinstance(raw.get("progress"), dict) else None
    figures = Figures(progress=progress, price_per_hour=_number(cost.get("price_per_hour")),
                      cost_so_far=_number(cost.get("spent")), hours=_number(cost.get("hours")),
                      budget=_number(cost.get("budget")), max_hours=_number(cost.get("max_hours")),
                      warned=cost.get("warned") if isinstance(cost.get("warned"), dict) else {},
                      reached=cost.get("reached") if isinstance(cost.get("reached"), str)
                      else None, spent_before=_number(cost.get("spent_before")) or 0.0)
    running = session.status in (Status.RUNNING, Status.UNREACHABLE, Status.UNRESPONSIVE)
    if progress is not None and running:
        eta = _number(progress.get("eta_seconds"))
        at = _number(progress.get("at"))
        if eta is not None:
            # As of the runner's last look; time since counts down (not below zero).
            figures.eta_seconds = max(0.0, eta - max(0.0, now - at)) if at else eta
    if figures.eta_seconds is not None and figures.price_per_hour is not None:
        figures.cost_to_finish = figures.eta_seconds / 3600 * figures.price_per_hour
    return figures


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# --------------------------------------------------------------------------- limits


def parse_dollars(text, flag: str = "--budget") -> float | None:
    """A budget as given on the command line: a number of dollars above 0."""
    if text is None:
        return None
    try:
        value = float(str(text).strip().lstrip("$"))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        example = f" (e.g. {flag} 25)" if flag.startswith("--") else ""
        raise TrainctlError(f"{flag} takes dollars, a number above 0{example}, not '{text}'")
    return value


def parse_hours(text, flag: str = "--max-hours") -> float | None:
    if text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        example = f" (e.g. {flag} 12)" if flag.startswith("--") else ""
        raise TrainctlError(f"{flag} takes hours, a number above 0{example}, not '{text}'")
    return value


def limits_for_spec(budget: float | None, max_hours: float | None, price: float | None,
                    where: str, price_setting: str | None) -> dict:
    """The spec keys of a run's limits and price; a budget without a price is refused."""
    if budget is not None and price is None:
        declare = f" (declare {price_setting})" if price_setting else ""
        raise TrainctlError(f"--budget needs what {where} costs per hour, which is not "
                            f"known{declare}; or use --max-hours")
    return {"budget": budget, "max_hours": max_hours, "price_per_hour": price}


def carried_spending(session: Session) -> tuple[float | None, float]:
    """(dollars, hours) the session's runs cost before the runner about to start: what its
    last runner counted, or what the machine it lost cost if that was more (an interrupted
    machine bills from its boot, before its runner starts)."""
    raw = runner_figures(session)
    cost = raw.get("cost") if isinstance(raw.get("cost"), dict) else {}
    spent, hours = _number(cost.get("spent")), _number(cost.get("hours")) or 0.0
    before = _number(cost.get("spent_before")) or 0.0
    started = _number(raw.get("started"))
    for entry in interruptions.load(session.session_dir):
        lost = _number(entry.get("cost"))
        if lost is not None and started is not None and (_number(entry.get("at")) or 0) >= started:
            spent = max(spent or 0.0, before + lost)
    return spent, hours


def refuse_resume_at_limit(session: Session, budget: float | None, max_hours: float | None,
                           no_budget: bool) -> None:
    """A run the guard stopped resumes only with new limits (or none)."""
    reached = figures_of(session).reached
    if not reached or no_budget:
        return
    if reached.startswith("budget") and budget is None:
        raise TrainctlError(f"session {session.id} was stopped: {reached}; resume it with a "
                            "new --budget USD, or with --no-budget")
    if reached.startswith("max hours") and max_hours is None:
        raise TrainctlError(f"session {session.id} was stopped: {reached}; resume it with a "
                            "new --max-hours H, or with --no-budget")


def stopped_by_guard(session: Session, now: float) -> str | None:
    """The session's detail when the machine it ran on went away because its runner stopped
    it at a limit (budget_stop_command), else None. Its last status may say so; if that was
    not seen, the figures of the last look, counted on to now, say whether the limit was
    passed: a machine gone after that is never taken for an interruption (resuming it would
    spend past the budget)."""
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(spec, dict) or not spec.get("budget_stop_command"):
        return None  # nothing there stops its machine
    figures = figures_of(session, now)
    if figures.reached:
        return figures.reached
    raw = runner_figures(session)
    cost = raw.get("cost") if isinstance(raw.get("cost"), dict) else {}
    progress = raw.get("progress") if isinstance(raw.get("progress"), dict) else {}
    seen = _number(progress.get("at")) or session.heartbeat
    if seen is None:
        return None
    gone_for = max(0.0, now - seen) / 3600
    spent, price = figures.cost_so_far, figures.price_per_hour
    if figures.budget is not None and spent is not None and price is not None and \
            spent + price * gone_for >= figures.budget:
        return (f"budget reached (its machine stopped itself; {_usd(spent)} of "
                f"{_usd(figures.budget)} at the last look)")
    hours = _number(cost.get("hours"))
    if figures.max_hours is not None and hours is not None and \
            hours + gone_for >= figures.max_hours:
        return (f"max hours reached (its machine stopped itself; {hours:.2f}h of "
                f"{figures.max_hours:g}h at the last look)")
    return None


# --------------------------------------------------------------------------- alerts


def budget_alerts(session: Session, figures: Figures, now: float) -> list:
    """The budget's alerts that hold now (monitor/alerts.py delivers each once): 90 % of
    the budget or of the max hours, a cost to finish that would pass the budget, and the
    stop at a limit."""
    from ..monitor.alerts import WARNING, Alert, AlertKind

    def alert(kind, message, severity=WARNING, at=None):
        return Alert(session_id=session.id, session_name=session.name, kind=kind,
                     message=message, severity=severity, at=at or now,
                     attempt=session.attempt or 0)

    found = []
    if figures.reached:
        if session.status is Status.STOPPED:
            found.append(alert(AlertKind.LIMIT, f"stopped: {figures.reached}"))
        return found
    if not session.status.active:
        return found
    spent, budget = figures.cost_so_far, figures.budget
    if "budget" in figures.warned and spent is not None and budget:
        found.append(alert(AlertKind.BUDGET, f"{_usd(spent)} of the {_usd(budget)} budget "
                           f"spent ({100 * spent / budget:.0f}%)", at=figures.warned["budget"]))
    if "hours" in figures.warned and figures.hours is not None and figures.max_hours:
        found.append(alert(AlertKind.HOURS, f"{figures.hours:.1f}h of the {figures.max_hours:g}h "
                           "limit used", at=figures.warned["hours"]))
    if budget and spent is not None and figures.cost_to_finish is not None:
        total = spent + figures.cost_to_finish
        if total > budget:
            found.append(alert(AlertKind.PROJECTED,
                               f"would cost {_usd(total)} to finish, over the {_usd(budget)} "
                               f"budget (the run stops at the budget)"))
    return found


def _usd(value: float) -> str:
    return f"${value:,.2f}"
