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

    __slots__ = ("name", "xs", "ys", "nonfinite", "_min", "_max", "_min_at", "_scanned",
                 "_first_bad", "_blocks")

    def __init__(self, name: str) -> None:
        self.name = name
        self.xs = array("d")
        self.ys = array("d")
        self.nonfinite = 0
        self._min = math.inf
        self._max = -math.inf
        self._min_at = -1  # where the minimum first is
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

    def min_index(self) -> int | None:
        """The index of the first point at the smallest finite value, or None."""
        self._scan()
        return self._min_at if self._min_at >= 0 else None

    def _scan(self) -> None:
        if self._scanned == len(self.ys):
            return
        start, end = self._scanned, len(self.ys)
        self._scanned = end
        blocks = self._blocks
        first = -(-start // BLOCK)  # the first whole block not yet scanned
        if len(blocks.first) > first:  # summarised already: their extremes stand for them
            self._scan_range(start, first * BLOCK)
            for block in range(first, len(blocks.first)):
                if blocks.low[block] == blocks.low[block]:
                    self._take(blocks.low[block], blocks.high[block], blocks.first[block],
                               blocks.second[block])
                else:  # a block holding nan/inf: its points
                    self._scan_range(block * BLOCK, (block + 1) * BLOCK)
            start = len(blocks.first) * BLOCK
        self._scan_range(start, end)

    def _take(self, low: float, high: float, i: int, j: int) -> None:
        """Take a block's extremes: where its minimum first is, is i or j."""
        if low < self._min:
            self._min, self._min_at = low, i if self.ys[i] == low else j
        self._max = max(self._max, high)

    def _scan_range(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        chunk = self.ys[start:stop]
        if math.isfinite(sum(chunk)):
            low, high = min(chunk), max(chunk)
            low_at = chunk.index(low)
        else:
            values = [y for y in chunk if y - y == 0]
            if not values:
                return
            low, high = min(values), max(values)
            low_at = next(k for k, y in enumerate(chunk) if y == low)
        if low < self._min:
            self._min, self._min_at = low, start + low_at
        self._max = max(self._max, high)

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

    # -- what an index keeps, so a reopened big series needs no pass over its points

    def scanned(self) -> dict:
        """min/max (with where the minimum first is), the non-finite count and the number
        of whole blocks summarised, all over every point (computed first when not yet: the
        blocks first, so min/max come from theirs)."""
        self._blocks.update(self.ys)
        self._scan()
        return {"min": self._min, "max": self._max, "min_at": self._min_at,
                "nonfinite": self.nonfinite, "first_bad": self._first_bad,
                "blocks": len(self._blocks.first)}

    def block_arrays(self, start: int) -> list[array]:
        """The summaries of whole blocks from block `start` on (after `scanned()`)."""
        return self._blocks.arrays(start)

    def take_scanned(self, scanned: dict, blocks: Sequence[memoryview]) -> None:
        """Take what `scanned()` said of these same points and the `block_arrays` from the
        blocks held so far on, as raw bytes; ValueError when they cannot be of them."""
        low, high, low_at = scanned["min"], scanned["max"], scanned["min_at"]
        nonfinite, first_bad = scanned["nonfinite"], scanned["first_bad"]
        n = len(self.ys)
        if not (isinstance(low, float) and isinstance(high, float)
                and type(low_at) is type(nonfinite) is type(first_bad) is int
                and (low_at == -1 if low > high else 0 <= low_at < n and self.ys[low_at] == low)
                and 0 <= nonfinite <= n and -1 <= first_bad < n
                and (first_bad >= 0) == (nonfinite > 0)):
            raise ValueError("summary")
        self._blocks.extend(blocks, n)
        if len(self._blocks.first) != scanned["blocks"]:
            raise ValueError("blocks")
        self._min, self._max, self._min_at, self._scanned = low, high, low_at, n
        self.nonfinite, self._first_bad = nonfinite, first_bad

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
    """Per whole block of BLOCK points, the two indexes `_extremes` keeps for it, and its
    smallest and largest value (nan for a block holding nan/inf)."""

    __slots__ = ("first", "second", "low", "high")

    def __init__(self) -> None:
        self.first = array("q")
        self.second = array("q")
        self.low = array("d")
        self.high = array("d")

    def update(self, ys) -> None:
        done = len(self.first)
        for block in range(done, len(ys) // BLOCK):
            start = block * BLOCK
            picked = _extremes(ys, start, start + BLOCK)
            i, j = picked[0], picked[-1]
            self.first.append(i)
            self.second.append(j)
            a, b = ys[i], ys[j]
            if a - a or b - b:  # the block holds nan or inf: its runs take the long way
                a = b = math.nan
            self.low.append(min(a, b))
            self.high.append(max(a, b))

    def arrays(self, start: int) -> list[array]:
        return [part[start:] for part in (self.first, self.second, self.low, self.high)]

    def extend(self, parts: Sequence[memoryview], points: int) -> None:
        """Add the raw bytes of `arrays()`, which must bring the summary to every whole
        block of `points` points."""
        added = [array(part.typecode) for part in (self.first, self.second, self.low,
                                                    self.high)]
        for one, raw in zip(added, parts, strict=True):
            one.frombytes(raw)
        count = len(added[0])
        if (any(len(one) != count for one in added)
                or len(self.first) + count != points // BLOCK
                or count and not (0 <= min(added[0]) and max(added[1]) < points)):
            raise ValueError("blocks")
        for mine, one in zip((self.first, self.second, self.low, self.high), added,
                             strict=True):
            mine.extend(one)

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
        lows = self.low[start:stop]
        if lows[0] == lows[0] and math.isfinite(sum(lows)):
            # The earliest block with the run's minimum holds its first point at it (and the
            # same for the maximum): what `_extremes` of every candidate picks, found in C.
            highs = self.high[start:stop]
            low, high = min(lows), max(highs)
            k, m = start + lows.index(low), start + highs.index(high)
            i = self.first[k] if ys[self.first[k]] == low else self.second[k]
            j = self.first[m] if ys[self.first[m]] == high else self.second[m]
            if i == j:
                return (i,)
            return (i, j) if i < j else (j, i)
        candidates = sorted({*self.first[start:stop], *self.second[start:stop]})
        picked = _extremes([ys[i] for i in candidates], 0, len(candidates))
        return tuple(candidates[k] for k in picked)
