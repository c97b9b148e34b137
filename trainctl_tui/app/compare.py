"""`trainctl compare A B [C ...]`: the runs (sessions or logs), their metrics, and one row of
figures per run. The compare screen builds the same rows from the same functions."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.errors import TrainctlError
from ..core.models import Session
from ..monitor.compare import (
    ElapsedAxis,
    RunFigures,
    default_metric,
    elapsed_axis,
    figures,
    metric_names,
)
from ..monitor.metrics import MetricSet
from .costs import figures_of
from .log_sources import LogSource, log_source


@dataclass
class ComparedRun:
    source: LogSource
    label: str
    metrics: MetricSet
    axis: ElapsedAxis | None = None  # where its points go on the elapsed-time axis


@dataclass
class Comparison:
    metric: str
    runs: list[ComparedRun]
    rows: list[RunFigures]

    def to_json(self) -> dict:
        """Every run's figures and every point of the compared series."""
        runs = []
        for run, row in zip(self.runs, self.rows, strict=True):
            series = run.metrics.series.get(self.metric)
            session = run.source.session
            entry = {**row.to_json(), "session": session.id if session else None,
                     "log": str(run.source.path) if session else run.source.label,
                     "x": list(series.xs) if series is not None else [],
                     "y": [_json_y(y) for y in series.ys] if series is not None else []}
            entry.update(elapsed_json(run.axis, series))
            runs.append(entry)
        return {"version": 1, "metric": self.metric, "runs": runs}


def elapsed_json(axis: ElapsedAxis | None, series) -> dict:
    """A run's points on the elapsed-time axis, how they were placed, and the gaps its
    runners left (not counted)."""
    if axis is None or series is None:
        placed, source, note = None, None, axis.note if axis is not None else None
    else:
        placed, source, note = axis.place(list(series.xs), series)
    if placed is not None:  # to the millisecond, as the runner keeps its times
        placed = [round(t, 3) if t is not None else None for t in placed]
    return {"x_elapsed": placed, "elapsed_from": source, "elapsed_note": note,
            "gaps": [{"at_seconds": round(at, 3), "seconds": round(length, 3)}
                     for at, length in (axis.gaps if axis is not None else [])]}


def run_axis(source: LogSource, metrics: MetricSet | None,
             now: float | None = None) -> ElapsedAxis:
    """Where a run's points go on the elapsed-time axis: a session's by its runners'
    steps.jsonl (in its folder: a remote runner's arrives with its probes)."""
    session = source.session
    folder = session.session_dir if session is not None else None
    return elapsed_axis(folder, metrics, run_elapsed(session, now))


def axis_signature(source: LogSource):
    """What changes when a run's axis must be read again (its steps.jsonl's mtime and size)."""
    from ..monitor.step_clock import signature

    return signature(source.session.session_dir) if source.session is not None else None


def run_elapsed(session: Session | None, now: float | None = None) -> float | None:
    """Seconds the session has run (to its end, or to now while it runs); None for a log
    trainctl did not launch (nothing says when it started)."""
    if session is None or not session.started:
        return None
    return max(0.0, (session.ended or (now or time.time())) - session.started)


def run_cost(session: Session | None) -> float | None:
    """What the run cost so far (every attempt), as the runner counts it from its machine's
    price; None (shown blank, never $0) for a log or a machine without a known price."""
    return figures_of(session).cost_so_far if session is not None else None


def run_labels(sources: list[LogSource]) -> list[str]:
    """A session's name (with its id when two runs share it); a log as it was given."""
    names = [s.session.name if s.session else s.label for s in sources]
    return [f"{name} ({s.session.id})" if s.session and names.count(name) > 1 else name
            for name, s in zip(names, sources, strict=True)]


def check_metric(metric: str, metric_sets: list[MetricSet]) -> None:
    """Refuse, in one line listing what they have, a series none of the runs has."""
    names = metric_names(metric_sets)
    if metric in names:
        return
    if not names:
        raise TrainctlError("none of the runs has printed a metric yet (nothing to compare)")
    raise TrainctlError(f"no run has the series '{metric}'; they have: {', '.join(names)}")


async def compare(service, targets: list[str], metric: str | None = None, *,
                  load=None) -> Comparison:
    """The comparison of `targets` (session ids/names, log files, log URLs) on `metric`
    (default: train loss, else eval loss). `load(path, patterns)` reads a log's metrics."""
    if len(targets) < 2:
        raise TrainctlError(f"compare needs at least two runs (sessions or logs), got "
                            f"{len(targets)}")
    if load is None:
        from ..monitor.index import load_metrics as load
    sources = [await log_source(service, target) for target in targets]
    patterns = service.config.metrics.patterns
    metric_sets = [load(source.path, patterns) for source in sources]
    if metric is None:
        metric = default_metric(metric_sets)
    check_metric(metric, metric_sets)
    now = time.time()
    labels = run_labels(sources)
    runs = [ComparedRun(s, label, m, run_axis(s, m, now))
            for s, label, m in zip(sources, labels, metric_sets, strict=True)]
    rows = [figures(run.label, run.metrics.series.get(metric),
                    elapsed=run_elapsed(run.source.session, now),
                    cost=run_cost(run.source.session)) for run in runs]
    return Comparison(metric, runs, rows)


def _json_y(y: float):
    if y - y:
        return "nan" if y != y else ("inf" if y > 0 else "-inf")
    return y
