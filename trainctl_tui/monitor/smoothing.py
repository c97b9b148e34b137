"""The smoothing of every chart: the debiased exponential moving average TensorBoard uses
(its `classicSmoothing`, which W&B copies), on the whole series, before it is sampled down.

For each finite y, in order: last = last * w + (1 - w) * y, counted n; the point shown is
last / (1 - w**n). The division undoes the pull towards the initial 0, so the first point is
y itself. nan/inf pass through unchanged and do not move the average; a constant series is
shown as it is (its average would only add rounding noise). Stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .series import Series

# What `S` cycles through; 0 is off.
SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)


def next_smoothing(weight: float) -> float:
    """The step after `weight` in SMOOTHING_STEPS (a value not among them starts over)."""
    if weight not in SMOOTHING_STEPS:
        return SMOOTHING_STEPS[1]
    return SMOOTHING_STEPS[(SMOOTHING_STEPS.index(weight) + 1) % len(SMOOTHING_STEPS)]


def smoothing_label(weight: float) -> str:
    return "off" if not weight else f"{weight:g}"


def ema(ys: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing of `ys` with `weight` in [0, 1] (see the module's doc)."""
    weight = min(max(weight, 0.0), 1.0) if math.isfinite(weight) else 0.0
    ys = list(ys)
    if not ys or all(y == ys[0] for y in ys):
        return ys
    smoother = _Ema(weight)
    return smoother.extend(ys)


class _Ema:
    """The running state of `ema`, so a growing series is smoothed only where it grew."""

    __slots__ = ("weight", "last", "count", "power")

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.last = 0.0
        self.count = 0
        self.power = 1.0  # weight ** count; once it is below 1e-17, 1 - power == 1.0

    def extend(self, ys: Sequence[float]) -> list[float]:
        w, keep = self.weight, 1.0 - self.weight
        last, count, power = self.last, self.count, self.power
        out = []
        append = out.append
        for y in ys:
            if y - y:  # nan or inf: shown as is, the average goes on without it
                append(y)
                continue
            last = last * w + keep * y
            count += 1
            if power:
                power = w ** count  # as TensorBoard computes it (repeated products drift)
                if power < 1e-17:
                    power = 0.0
            append(last / (1.0 - power) if w != 1.0 else last)
        self.last, self.count, self.power = last, count, power
        return out


class SmoothedSeries:
    """A Series' smoothed twin, kept up to date as the series grows: only new points are
    smoothed, and the twin is a Series itself, so it is sampled down by the same cached
    blocks as the raw one. A series that shrank or was replaced is smoothed again.

    `of(source, budget)` smooths at most `budget` new points a call (about 0.3 s a million
    here), so a chart of millions of points catches up over a few redraws instead of
    freezing on one; `behind(source)` says how many are left."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.source: Series | None = None
        self.series = Series("smoothed")
        self._state = _Ema(weight)
        self._constant = True  # every y so far equals the first: shown as it is

    def behind(self, source: Series) -> int:
        if source is not self.source or len(source) < len(self.series):
            return len(source)
        return len(source) - len(self.series)

    def of(self, source: Series, budget: int | None = None) -> Series:
        if source is not self.source or len(source) < len(self.series):
            self.source, self.series, self._state = source, Series(source.name), _Ema(self.weight)
            self._constant = True
        done = len(self.series)
        stop = len(source) if budget is None else min(len(source), done + max(1, budget))
        if done == stop:
            return self.series
        new_ys = source.ys[done:stop]
        smoothed = self._state.extend(new_ys)
        if self._constant:
            self._constant = new_ys.count(source.ys[0]) == len(new_ys)
            if not self._constant and done:  # it stopped being constant: smooth it all again
                self.source = None
                return self.of(source, budget)
            if self._constant:
                smoothed = new_ys
        self.series.xs.extend(source.xs[done:stop])
        self.series.ys.extend(smoothed)
        self.series.count_nonfinite(done)
        return self.series
