"""Runs side by side: which series they share, one row of figures per run, and the x of their
points by step or by elapsed time. Shared by `trainctl compare` and the compare screen.

Runs are aligned by step: each point keeps the step its log gave it. On the elapsed-time axis
(`ElapsedAxis`) a session's point goes where its runner saw that step reached (steps.jsonl,
monitor/step_clock.py: active time, an interruption's gap left out). Where that cannot be
had (a session from before trainctl kept the file, a log whose points are not numbered by
the steps the runner counted, a damaged file: the axis says which) its points are spread over
its elapsed time at its average pace, the first at 0 and the last at the run's elapsed
seconds, and said to be so. A log trainctl did not launch has no place on that axis.
Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import step_clock
from .metrics import MetricSet, json_number
from .series import Series

# The series offered first, in this order; then the rest by name. `epoch` is an x, not a metric.
PREFERRED = ("loss", "val_loss", "eval_loss")
NOT_METRICS = ("epoch",)


@dataclass
class RunFigures:
    """One row of the compare table."""

    label: str
    last: float | None  # the newest value
    min: float | None  # the smallest finite value
    min_step: float | None  # the step of the first point at that minimum
    steps: float | None  # the step the run reached in this series (its last point's x)
    points: int
    elapsed: float | None  # seconds, when known
    cost: float | None  # dollars, when known; never a guess

    def to_json(self) -> dict:
        return {"run": self.label, "last": json_number(self.last), "min": self.min,
                "min_step": self.min_step, "steps": self.steps, "points": self.points,
                "elapsed_seconds": self.elapsed, "cost": self.cost}


def metric_names(metric_sets: list[MetricSet]) -> list[str]:
    """Every series any of the runs has (with at least one point): the preferred ones first,
    then by name."""
    found = {name for metrics in metric_sets for name, series in metrics.series.items()
             if len(series) and name not in NOT_METRICS}
    return [name for name in PREFERRED if name in found] + sorted(found - set(PREFERRED))


def default_metric(metric_sets: list[MetricSet]) -> str:
    """Train loss when a run has it, else eval loss, else the first series there is."""
    names = metric_names(metric_sets)
    return names[0] if names else PREFERRED[0]


def figures(label: str, series: Series | None, *, elapsed: float | None = None,
            cost: float | None = None) -> RunFigures:
    if series is None or not len(series):
        return RunFigures(label, None, None, None, None, 0, elapsed, cost)
    low, where = series.min, series.min_index()
    at = series.xs[where] if where is not None else None
    return RunFigures(label, series.ys[-1], low, at, series.xs[-1], len(series), elapsed, cost)


def elapsed_xs(xs, series: Series, elapsed: float | None) -> list[float] | None:
    """`xs` (steps of `series`, e.g. sampled down) on the elapsed-time axis: seconds from the
    series' first point (see the module's doc); None when the run's elapsed time is unknown."""
    if elapsed is None or not len(series):
        return None
    first, last = series.xs[0], series.xs[-1]
    if last <= first:
        return [float(elapsed)] * len(xs)
    scale = elapsed / (last - first)
    return [(x - first) * scale for x in xs]


RUNNER = "runner"  # ElapsedAxis.source: when the runner saw each step
PACE = "average pace"  # spread over the run's elapsed time


@dataclass
class ElapsedAxis:
    """How one run's points go on the elapsed-time axis: by its runner's clock where it has
    a usable one, else at its average pace over `elapsed`, else nowhere."""

    clock: step_clock.StepClock | None
    elapsed: float | None  # the run's wall-clock seconds (the average pace's span)
    note: str | None = None  # why the runner's clock is not used
    gaps: list = field(default_factory=list)  # (active seconds, seconds without a runner)

    def place(self, xs, series: Series) -> tuple[list | None, str | None, str | None]:
        """The elapsed seconds of each of `xs` (None for a point with no place) or None (the
        run has no place on the axis); how they were had (RUNNER or PACE); and why not by
        the runner's clock (None when by it)."""
        note = self.note
        if self.clock is not None:
            placed = self.clock.place(xs)
            if 2 * placed.count(None) <= len(placed):
                return placed, RUNNER, None
            note = "its points are not numbered by the steps its runner counted"
        estimate = elapsed_xs(xs, series, self.elapsed)
        return (estimate, PACE, note) if estimate is not None else (None, None, note)


def elapsed_axis(folder, metrics: MetricSet | None, elapsed: float | None) -> ElapsedAxis:
    """The axis of a run whose runner kept its steps.jsonl in `folder` (None: a log trainctl
    did not launch) and whose wall-clock time is `elapsed`."""
    if folder is None:
        return ElapsedAxis(None, elapsed)
    try:
        clock = step_clock.load(folder)
    except step_clock.Damaged as exc:
        return ElapsedAxis(None, elapsed, f"{exc}: not used")
    if clock is None:
        return ElapsedAxis(None, elapsed, "its runner recorded no steps")
    if metrics is not None and (metrics.last_step is None or metrics.indexed_x):
        # HF Trainer's dicts are placed by epoch, others by their index: not steps.
        return ElapsedAxis(None, elapsed, "its log's points are not numbered by step",
                           clock.gaps)
    return ElapsedAxis(clock, elapsed, None, clock.gaps)


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit an elapsed-time axis reads best in, and its size in seconds."""
    if seconds >= 2 * 3600:
        return "h", 3600.0
    if seconds >= 2 * 60:
        return "min", 60.0
    return "s", 1.0
