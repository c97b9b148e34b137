"""The one place that talks to plotext (global state: call from the main thread only).

Works with plotext 6 (`plotext.figure`) and plotext 5 (module-level API). The chart is drawn
with plotext's dark theme, then its background is stripped (the widget's own shows through)
and its colours are mapped to ones that read well on dark and light terminals alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# xterm-256 colours of the 1st, 2nd, 3rd ... series; the widget's legend uses the same.
SERIES_COLORS = (39, 214, 170, 78, 203, 227, 141, 44)
# The same hues, darker: a raw curve drawn faint under its smoothed one.
FAINT_COLORS = (25, 130, 96, 29, 131, 136, 60, 30)
AXES_COLOR = 245
# plotext "dark" theme: axes colour 3, series sequence 4, 22, 54, 12, 10, 9.
_DARK_THEME_MAP = {3: AXES_COLOR, 4: 39, 22: 214, 54: 170, 12: 78, 10: 203, 9: 227}
_BACKGROUND = re.compile(r"\x1b\[48;5;\d+m")
_FOREGROUND = re.compile(r"\x1b\[38;5;(\d+)m")


@dataclass
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: int | None = None  # xterm-256; None: the next of the theme's sequence


def render(lines: list[Line], width: int, height: int) -> str:
    """An ANSI string of `lines` drawn in a width x height box (train and eval on one chart)."""
    import plotext

    lines = [_finite(line) for line in lines]
    if hasattr(plotext, "figure") and hasattr(plotext.figure, "signal"):
        text = _render_v6(plotext, lines, width, height)
    else:
        text = _render_v5(plotext, lines, width, height)
    text = _BACKGROUND.sub("", text)
    return _FOREGROUND.sub(
        lambda m: f"\x1b[38;5;{_DARK_THEME_MAP.get(int(m.group(1)), int(m.group(1)))}m", text)


def _finite(line: Line) -> Line:
    """plotext cannot place nan/inf; they are flagged elsewhere, here they are left out."""
    pairs = [(x, y) for x, y in zip(line.xs, line.ys, strict=False)
             if math.isfinite(y) and math.isfinite(x)]
    return Line(line.label, [p[0] for p in pairs], [p[1] for p in pairs], line.color)


def _render_v6(plotext, lines: list[Line], width: int, height: int) -> str:
    figure = plotext.figure
    plotext.terminal.limit(False, False)  # else the width is capped at the detected terminal
    figure.clear()
    figure.plot_size(width, height)
    figure.theme("dark")
    for line in lines:
        # An empty series still takes its colour slot, so colours match the legend.
        xs, ys = (list(line.xs), list(line.ys)) if line.xs else ([math.nan], [math.nan])
        marker = None if line.color is None else \
            plotext.marker(None, plotext.pixel(foreground=line.color))
        signal = figure.signal(xs, ys, marker=marker)
        figure.draw(signal.lines() if len(xs) > 1 else signal)
    figure.legend(active=False)
    xs = [x for line in lines for x in line.xs]
    if xs:
        whole = all(float(x).is_integer() for x in xs[-1000:])  # steps, not epochs
        positions = nice_ticks(min(xs), max(xs), max(2, min(7, width // 12)), whole=whole)
        figure.ruler("x").ticks(positions, [compact(p) for p in positions])
    text = str(figure.build())
    figure.clear()
    return text


def nice_ticks(low: float, high: float, count: int, *, whole: bool = False) -> list[float]:
    """At most `count` round positions in [low, high]: multiples of 1, 2, 2.5 or 5 times a
    power of ten (0 5 10 15, not 0 3.4 6.8 10.2); whole numbers only when `whole`."""
    if high <= low:
        return [low]
    rough = (high - low) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(rough))
    multiples = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)  # no 2.5 between steps
    step = next(m * power for m in multiples if m * power >= rough * (1 - 1e-9))
    if whole:
        step = max(1.0, step)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def compact(value: float) -> str:
    """Step labels that fit under a chart: 950, 1.2k, 15k, 2.5M."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 10 else f"{scaled:.0f}{suffix}"
    if float(value).is_integer() or magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _render_v5(plotext, lines: list[Line], width: int, height: int) -> str:
    plotext.clf()
    plotext.limitsize(False, False)
    plotext.plotsize(width, height)
    plotext.theme("dark")
    for line in lines:
        color = {} if line.color is None else {"color": line.color}
        plotext.plot(list(line.xs) or [0], list(line.ys) or [math.nan], **color)
    return plotext.build()
