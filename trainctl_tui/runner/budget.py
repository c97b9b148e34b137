"""What a run has cost and how far it is, kept in status.json, and the budget guard.

The spec says what the machine costs (`price_per_hour`, USD; None when nobody declared it)
and what the session spent before this runner started (`spent_before` USD, `hours_before`),
and the limits (`budget` USD, `max_hours`). The runner adds its own wall-clock time as it
goes, whatever the terminals do: at 90 % of a limit it says so once (status.json `budget`
`warned`, a line in the log), at the limit it stops the training gracefully (SIGTERM, so it
saves) with the reason `budget reached ($25.03 of $25.00)`, then the supervisor ends the
machine's spending (`Supervisor.stop_machine_at_limit`): a backend's runner part where it has
one (a RunPod pod through RunPod's API), else or when that failed `budget_stop_command` (set
where the runner is on a rented machine: its shutdown stops or terminates the machine, as the
machine was created to).

status.json gets:
  progress  {done, total, unit, source, seconds_per_step, eta_seconds, at, attempt}: this
            attempt's, from the log (runner/progress.py); None when the log gives no total
  cost      {price_per_hour, spent, hours, budget, max_hours, warned, reached}

Stdlib only, Python 3.7+: shipped with the runner."""

from __future__ import annotations

import os
import time

from .checkpoint_files import checkpoint_step
from .progress import LogProgress
from .step_times import StepTimes

WARN_AT = 0.9
SPEC_DEFAULTS = {
    "price_per_hour": None,
    "spent_before": 0.0,
    "hours_before": 0.0,
    "budget": None,
    "max_hours": None,
    "budget_stop_command": None,
}


def check_spec(spec: dict, path: str, error) -> None:
    """Numbers in place; `error(message)` is the exception to raise."""
    for key in ("price_per_hour", "budget", "max_hours", "spent_before", "hours_before"):
        value = spec.get(key)
        if value is None:
            continue
        try:
            spec[key] = float(value)
        except (TypeError, ValueError):
            raise error(f"{path}: '{key}' must be a number") from None
        if not spec[key] >= 0:  # nan too
            raise error(f"{path}: '{key}' must be 0 or more")
    for key in ("spent_before", "hours_before"):
        spec[key] = spec.get(key) or 0.0


def usd(value: float) -> str:
    return f"${value:,.2f}"


def hours(value: float) -> str:
    """12h, 1.5h; under six minutes in seconds (tests run on tiny limits)."""
    if value < 0.1:
        return f"{value * 3600:.0f}s"
    return f"{round(value, 2):g}h"


def nodes_price(spec: dict, node):
    """A run on several nodes costs the sum of the nodes it got (`node_prices`: each node's
    $/h as the launch priced them, as many as it may get); None when not known."""
    prices = spec.get("node_prices")
    if node is None or not isinstance(prices, list) or len(prices) < len(node.ips):
        return None
    got = prices[:len(node.ips)]
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 for p in got):
        return None
    return float(sum(got))


class Meter:
    """The supervisor's accounting: call `attempt_started` when a child starts, `update`
    before each status write; `reached` says why the run must stop (once)."""

    def __init__(self, supervisor, previous: dict) -> None:
        self.supervisor = supervisor
        spec = supervisor.spec
        self.price = nodes_price(spec, supervisor.node) or spec.get("price_per_hour")
        self.budget = spec.get("budget")
        self.max_hours = spec.get("max_hours")
        self.spent_before = spec.get("spent_before") or 0.0
        self.hours_before = spec.get("hours_before") or 0.0
        # A runner started again without trainctl (a Slurm requeue) counts on from the one
        # before it here; trainctl's resume already put that into the spec.
        before = previous.get("cost") if isinstance(previous.get("cost"), dict) else {}
        if isinstance(before.get("spent"), (int, float)):
            self.spent_before = max(self.spent_before, before["spent"])
        if isinstance(before.get("hours"), (int, float)):
            self.hours_before = max(self.hours_before, before["hours"])
        self.started = time.time()
        self.progress = None  # LogProgress of the attempt running
        self.attempt = 0
        self.ended = None  # the run's final state: the meter stops
        self.reached = None  # the reason the guard stopped the run
        self.warned = {}
        # When each step was reached, for the compare's elapsed axis (step_times.py).
        self.step_times = StepTimes(os.path.dirname(supervisor.status_path))
        supervisor.status["progress"] = None
        supervisor.status["cost"] = self.figures(self.started)

    def attempt_started(self, n: int, checkpoint) -> None:
        self.progress = LogProgress(self.supervisor.log_path, checkpoint)
        self.attempt = n
        start = 0 if not checkpoint else checkpoint_step(os.path.basename(
            str(checkpoint).rstrip("/")))
        self.step_times.attempt_started(time.time(), start)

    def runner_started(self) -> None:
        self.step_times.runner_started(self.started)

    def finish(self) -> None:
        self.update(time.time())
        self.ended = time.time()
        self.step_times.runner_ended(self.ended)

    def figures(self, now: float) -> dict:
        run_hours = self.hours_before + max(0.0, now - self.started) / 3600
        spent = None
        if self.price is not None:
            spent = self.spent_before + self.price * max(0.0, now - self.started) / 3600
        return {"price_per_hour": self.price, "spent": spent, "hours": run_hours,
                "spent_before": self.spent_before,
                "budget": self.budget, "max_hours": self.max_hours,
                "warned": dict(self.warned), "reached": self.reached}

    def update(self, now: float) -> None:
        """Bring status.json's progress and cost up to now; stop the run at a limit."""
        if self.ended is not None:
            return
        status = self.supervisor.status
        if self.progress is not None:
            found = self.progress.poll(now)
            if found is not None:
                found["attempt"] = self.attempt
                status["progress"] = found
            last = self.progress.scanner.last
            self.step_times.poll(now, self.progress.log_step(), last.source if last else "step",
                                 self.progress.log_mtime)
        figures = self.figures(now)
        self._check(figures, now)
        figures.update(warned=dict(self.warned), reached=self.reached)
        status["cost"] = figures

    def _check(self, figures: dict, now: float) -> None:
        limits = []
        if self.budget is not None and figures["spent"] is not None:
            limits.append(("budget", figures["spent"], self.budget, usd))
        if self.max_hours is not None:
            limits.append(("hours", figures["hours"], self.max_hours, hours))
        for name, used, limit, show in limits:
            label = "budget" if name == "budget" else "max hours"
            if used >= limit and self.reached is None:
                self.reached = f"{label} reached ({show(used)} of {show(limit)})"
                self.supervisor.log_line(self.reached + ": stopping the run")
                self.supervisor.request_stop(self.reached)
            elif used >= WARN_AT * limit and name not in self.warned:
                self.warned[name] = now
                share = 100 * used / limit
                self.supervisor.log_line(f"{label}: {show(used)} of {show(limit)} used "
                                         f"({share:.0f}%)")
