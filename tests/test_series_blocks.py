"""Redrawing millions of points: a run of whole blocks finds its extremes from each block's
smallest and largest value (C-speed slices), picking exactly the points the candidates'
long way picks; a block holding nan/inf still takes the long way. And the series knows
where its minimum is without a scan (the compare table's `min (at step)`)."""

from __future__ import annotations

import math
import random
from array import array

from trainctl_tui.monitor.series import BLOCK, Series, _BlockSummary


def long_way(xs, ys, width):
    summary = _BlockSummary()
    summary.update(ys)
    summary.low = array("d", [math.nan] * len(summary.first))  # every block as if it held nan
    summary.high = array("d", [math.nan] * len(summary.first))
    return summary.downsample(xs, ys, width)


def test_the_fast_path_picks_the_same_points_with_ties_and_nan():
    rng = random.Random(3)
    for trial in range(12):
        n = rng.randrange(BLOCK * 10, BLOCK * 300)
        # rounded values make ties, where the first point at a minimum must win
        ys = array("d", (rng.choice([rng.random(), round(rng.random(), 1)]) for _ in range(n)))
        if trial % 3 == 0:
            for _ in range(3):
                ys[rng.randrange(n)] = rng.choice([math.nan, math.inf, -math.inf])
        xs = array("d", range(n))
        summary = _BlockSummary()
        for width in (3, 17, 158):
            got_x, got_y = summary.downsample(xs, ys, width)
            want_x, want_y = long_way(xs, ys, width)
            assert got_x == want_x
            assert [repr(y) for y in got_y] == [repr(y) for y in want_y]


def test_the_index_of_the_minimum_follows_appends_and_skips_nan():
    series = Series("loss")
    assert series.min_index() is None
    for x, y in [(1, 3.0), (2, math.nan), (3, 2.0), (4, 2.0), (5, math.inf), (6, 2.5)]:
        series.append(x, y)
    assert series.min == 2.0 and series.min_index() == 2  # the first point at 2.0
    series.append(7, 1.0)
    assert series.min_index() == 6
    only_nan = Series("x")
    only_nan.append(1, math.nan)
    assert only_nan.min_index() is None and only_nan.min is None


def test_min_and_max_found_from_the_block_summaries_are_those_of_a_scan():
    """`scanned()` summarises the blocks first and takes min/max from them (a block
    holding nan/inf from its points); ties, -0.0, overflowing sums and scans between
    appends give what a scan of the points gives."""
    rng = random.Random(8)
    for trial in range(20):
        n = rng.randrange(1, BLOCK * 12)
        pool = [0.0, -0.0, 1.0, 1e308, -1e308, rng.random()]
        ys = [rng.choice(pool) if rng.random() < 0.5 else round(rng.random(), 2)
              for _ in range(n)]
        for _ in range(trial % 4):
            ys[rng.randrange(n)] = rng.choice([math.nan, math.inf, -math.inf])
        by_blocks, by_scan = Series("a"), Series("b")
        cuts = sorted(rng.sample(range(n + 1), 3)) + [n]
        done = 0
        for cut in cuts:
            for at in range(done, cut):
                by_blocks.append(at, ys[at])
                by_scan.append(at, ys[at])
            done = cut
            by_blocks.scanned()
            assert (repr(by_blocks.min), repr(by_blocks.max), by_blocks.min_index()) == (
                repr(by_scan.min), repr(by_scan.max), by_scan.min_index()), (trial, cut)
