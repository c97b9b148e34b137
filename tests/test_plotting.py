"""The chart's x labels are round numbers a reader can use (0 5 10 15, not 0 3.4 6.8)."""

from __future__ import annotations

import re

import pytest

from trainctl_tui.ui.plotting import Line, compact, nice_ticks, render


@pytest.mark.parametrize("low, high, count, whole, labels", [
    (0, 17, 7, True, ["0", "5", "10", "15"]),
    (0.125, 3, 7, False, ["0.5", "1", "1.5", "2", "2.5", "3"]),
    (1, 3, 7, True, ["1", "2", "3"]),  # steps: never 1.5
    (0, 2000, 7, True, ["0", "500", "1.0k", "1.5k", "2.0k"]),
    (250, 1_000_000, 7, True, ["200k", "400k", "600k", "800k", "1.0M"]),
    (-3, 4, 7, False, ["-2", "0", "2", "4"]),
    (5, 5, 7, True, ["5"]),
    (0, 14, 7, True, ["0", "5", "10"]),  # never a 2.5-step between whole steps
])
def test_ticks_are_round_and_inside_the_data(low, high, count, whole, labels):
    ticks = nice_ticks(low, high, count, whole=whole)
    assert [compact(t) for t in ticks] == labels
    assert len(ticks) <= count and all(low <= t <= high for t in ticks)


def test_the_chart_labels_steps_with_round_numbers():
    chart = render([Line("loss", list(range(18)), [1 / (i + 1) for i in range(18)])], 60, 12)
    bottom = chart.splitlines()[-1]
    assert re.sub(r"\x1b\[[0-9;]*m", "", bottom).split() == ["0", "5", "10", "15"]
