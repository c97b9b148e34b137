"""The chart smoothing is TensorBoard's `classicSmoothing` (tensorboard/webapp/widgets/
line_chart_v2/data_transformer.ts): last = last * w + (1 - w) * y over finite y, counted n,
shown as last / (1 - w**n); nan/inf pass through; a constant series is left as it is."""

from __future__ import annotations

import math
import random

import pytest

from trainctl_tui.monitor.series import Series
from trainctl_tui.monitor.smoothing import (
    SMOOTHING_STEPS,
    SmoothedSeries,
    ema,
    next_smoothing,
    smoothing_label,
)


def test_values_computed_by_hand_from_tensorboards_formula():
    # w = 0.6; last: 0.4, 1.04, 0.624, 1.9744; debias 1 - 0.6**n: 0.4, 0.64, 0.784, 0.8704
    assert ema([1.0, 2.0, 0.0, 4.0], 0.6) == pytest.approx(
        [1.0, 1.625, 0.624 / 0.784, 1.9744 / 0.8704], rel=1e-12)
    assert ema([1.0, 2.0, 0.0, 4.0], 0.6)[2] == pytest.approx(0.7959183673469388, rel=1e-12)
    # w = 0.9: last 0.1*10 = 1.0 (debias 0.1) -> 10; then 0.9 + 0 = 0.9 (debias 0.19)
    assert ema([10.0, 0.0], 0.9) == pytest.approx([10.0, 0.9 / 0.19], rel=1e-12)


def test_the_first_point_is_the_value_itself_and_nan_passes_through_without_counting():
    smoothed = ema([1.0, math.nan, 2.0, math.inf, 0.0], 0.6)
    assert smoothed[0] == 1.0
    assert math.isnan(smoothed[1]) and smoothed[3] == math.inf
    # nan and inf did not move the average nor count: as [1, 2, 0] alone
    assert smoothed[2] == pytest.approx(1.625) and smoothed[4] == pytest.approx(0.624 / 0.784)


def test_constant_series_off_and_edge_weights():
    assert ema([3.0, 3.0, 3.0], 0.99) == [3.0, 3.0, 3.0]  # no rounding noise (TB #786)
    assert ema([1.0, 5.0, 2.0], 0.0) == [1.0, 5.0, 2.0]
    assert ema([], 0.9) == []
    assert ema([1.0, 5.0], 1.0) == [0.0, 0.0]  # TB divides by 1 at weight 1: stuck at 0


def test_a_growing_series_is_smoothed_only_where_it_grew_and_matches_the_whole():
    rng = random.Random(7)
    source = Series("loss")
    twin = SmoothedSeries(0.9)
    values = []
    for _chunk in range(20):
        for _ in range(rng.randrange(1, 500)):
            y = rng.random() if rng.random() > 0.01 else math.nan
            source.append(len(values), y)
            values.append(y)
        smoothed = twin.of(source)
        expected = ema(values, 0.9)
        assert len(smoothed) == len(values)
        assert list(smoothed.xs) == list(source.xs)
        for got, want in zip(smoothed.ys, expected, strict=True):
            assert got == want or (math.isnan(got) and math.isnan(want))
    assert smoothed.nonfinite == source.nonfinite > 0


def test_a_series_constant_at_first_is_smoothed_from_its_start_once_it_varies():
    source, twin = Series("loss"), SmoothedSeries(0.6)
    for x in range(3):
        source.append(x, 2.0)
    assert list(twin.of(source).ys) == [2.0, 2.0, 2.0]
    source.append(3, 4.0)
    assert list(twin.of(source).ys) == ema([2.0, 2.0, 2.0, 4.0], 0.6)
    replaced = Series("loss")  # the log was truncated: a new series, smoothed anew
    replaced.append(0, 1.0)
    replaced.append(1, 2.0)
    assert list(twin.of(replaced).ys) == [1.0, 1.625]


def test_the_s_key_cycles_off_then_the_three_weights():
    assert SMOOTHING_STEPS == (0.0, 0.6, 0.9, 0.99)
    assert [next_smoothing(w) for w in SMOOTHING_STEPS] == [0.6, 0.9, 0.99, 0.0]
    assert next_smoothing(0.5) == 0.6
    assert [smoothing_label(w) for w in SMOOTHING_STEPS] == ["off", "0.6", "0.9", "0.99"]
