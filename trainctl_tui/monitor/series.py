"""Compact metric series (two `array('d')`, 16 bytes a point) and shape-preserving sampling
down to a plot's width."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

BLOCK = 1024  # Series.downsample summarises whole blocks of this many points once


class Series:
    """One named metric: x (step, or record index) and y, both `array('d')`.

    nan and inf are stored as they are; `nonfinite` counts them and `first_nonfinite()`
    says where the first one was. `min`/`max` are over finite values only.
    """

    __slots__ = ("name", "xs", "ys", "nonfinite", "_min", "_max", "_scanned", "_first_bad",
                 "_blocks")

    def __init__(self, name: str) -> None:
        self.name = name
        self.xs = array("d")
        self.ys = array("d")
        self.nonfinite = 0
        self._min = math.inf
        self._max = -math.inf
        self._scanned = 0  # min/max cover ys[:_scanned]; appends stay two array appends
        self._first_bad = -1
        self._blocks = _BlockSummary()

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)
        if y - y:  # nan - nan and inf - inf are nan; a finite y gives 0.0
            self.note_nonfinite()

    def note_nonfinite(self) -> None:
        """Count the nan/inf just appended (for callers that append to xs/ys directly)."""
        if self._first_bad < 0:
            self._first_bad = len(self.ys) - 1
        self.nonfinite += 1

    def count_nonfinite(self, start: int) -> None:
        """Count the nan/inf among points from `start` on (appended to xs/ys in bulk)."""
        added = self.ys[start:]
        if math.isfinite(sum(added)):
            return
        for at, y in enumerate(added, start):
            if y - y:  # nan or inf
                if self._first_bad < 0:
                    self._first_bad = at
                self.nonfinite += 1

    @property
    def min(self) -> float | None:
        """The smallest finite value, or None."""
        self._scan()
        return self._min if self._min <= self._max else None

    @property
    def max(self) -> float | None:
        """The largest finite value, or None."""
        self._scan()
        return self._max if self._min <= self._max else None

    def _scan(self) -> None:
        if self._scanned == len(self.ys):
            return
        chunk = self.ys[self._scanned :]
        self._scanned = len(self.ys)
        if not math.isfinite(sum(chunk)):
            chunk = [y for y in chunk if y - y == 0]
            if not chunk:
                return
        self._min = min(self._min, min(chunk))
        self._max = max(self._max, max(chunk))

    def __len__(self) -> int:
        return len(self.ys)

    @property
    def last(self) -> tuple[float, float] | None:
        if not self.ys:
            return None
        return self.xs[-1], self.ys[-1]

    def first_nonfinite(self) -> tuple[float, float] | None:
        """(x, y) of the first nan/inf value, or None."""
        if self._first_bad < 0:
            return None
        return self.xs[self._first_bad], self.ys[self._first_bad]

    def downsample(self, width: int) -> tuple[list[float], list[float]]:
        """Like `downsample(self.xs, self.ys, width)`, but whole blocks of points are
        summarised once and reused, so redrawing a 10-million-point series stays cheap."""
        n = len(self.ys)
        if width <= 1 or n < 2 * BLOCK * width:
            return downsample(self.xs, self.ys, width)
        return self._blocks.downsample(self.xs, self.ys, width)

    def summary(self) -> dict:
        last = self.last
        return {
            "count": len(self),
            "last_x": last[0] if last else None,
            "last": last[1] if last else None,
            "min": self.min,
            "max": self.max,
            "nonfinite": self.nonfinite,
        }

    def __repr__(self) -> str:
        return f"Series({self.name!r}, {len(self)} points, {self.nonfinite} non-finite)"


def first_nonfinite(series: Series) -> tuple[float, float] | None:
    """(x, y) of the first nan/inf value of `series`, or None when all values are finite."""
    return series.first_nonfinite()


# --------------------------------------------------------------------------- sampling


def downsample(xs: Sequence[float], ys: Sequence[float],
               width: int) -> tuple[list[float], list[float]]:
    """At most 2*width points that keep the shape of (xs, ys): points are cut into `width`
    runs of consecutive indexes and each run keeps its minimum and its maximum, in their
    original order (so x stays as monotonic as it was). A run holding nan or inf keeps its
    first such point, so the plot shows the gap or spike, plus its finite minimum.
    """
    n = len(ys)
    if width <= 0 or n == 0:
        return [], []
    if n <= 2 * width:
        return list(xs), list(ys)
    indexes: list[int] = []
    for bucket in range(width):
        start = n * bucket // width
        stop = n * (bucket + 1) // width
        indexes.extend(_extremes(ys, start, stop))
    return [xs[i] for i in indexes], [ys[i] for i in indexes]


def _extremes(ys, start: int, stop: int) -> tuple[int, ...]:
    """Indexes of the min and max of ys[start:stop] in order; see `downsample` for nan/inf."""
    chunk = ys[start:stop]
    if not chunk:
        return ()
    if math.isfinite(sum(chunk)):
        low, high = min(chunk), max(chunk)
        i, j = chunk.index(low), chunk.index(high)
    else:
        i, j = _extremes_with_nonfinite(chunk)
    if i == j:
        return (start + i,)
    return (start + i, start + j) if i < j else (start + j, start + i)


def _extremes_with_nonfinite(chunk) -> tuple[int, int]:
    bad = -1
    low_at = high_at = -1
    low, high = math.inf, -math.inf
    for k, y in enumerate(chunk):
        if y - y != 0:
            if bad < 0:
                bad = k
            continue
        if y < low:
            low, low_at = y, k
        if y > high:
            high, high_at = y, k
    if bad < 0:  # an overflowing sum of finite values
        return low_at, high_at
    return bad, low_at if low_at >= 0 else bad


class _BlockSummary:
    """Per whole block of BLOCK points, the two indexes `_extremes` keeps for it."""

    __slots__ = ("first", "second")

    def __init__(self) -> None:
        self.first = array("q")
        self.second = array("q")

    def update(self, ys) -> None:
        done = len(self.first)
        for block in range(done, len(ys) // BLOCK):
            start = block * BLOCK
            picked = _extremes(ys, start, start + BLOCK)
            i, j = picked[0], picked[-1]
            self.first.append(i)
            self.second.append(j)

    def downsample(self, xs, ys, width: int) -> tuple[list[float], list[float]]:
        self.update(ys)
        blocks = len(self.first)
        tail_start = blocks * BLOCK
        runs = width - 1 if tail_start < len(ys) else width
        indexes: list[int] = []
        for run in range(runs):
            start = blocks * run // runs
            stop = blocks * (run + 1) // runs
            indexes.extend(self._run_extremes(ys, start, stop))
        if tail_start < len(ys):
            indexes.extend(_extremes(ys, tail_start, len(ys)))
        return [xs[i] for i in indexes], [ys[i] for i in indexes]

    def _run_extremes(self, ys, start: int, stop: int) -> tuple[int, ...]:
        if start >= stop:
            return ()
        candidates = sorted({*self.first[start:stop], *self.second[start:stop]})
        picked = _extremes([ys[i] for i in candidates], 0, len(candidates))
        return tuple(candidates[k] for k in picked)
