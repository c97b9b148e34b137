"""A line chart drawn in quadrant blocks (2 x 2 dots a cell, as plotext's "hd" marker, and in
every monospace font, which braille is not) straight into a rich Text: the compare screen's
renderer, fast enough to redraw 8 runs (16 lines when smoothed) many times a
second, where plotext spends tens of microseconds on every point in Python.

Lines are drawn column by column: a segment fills, in each dot column it crosses, the run of
dots between its two ends there, so a noisy series sampled to min/max pairs costs a few
operations a cell. A cell takes the colour of the last line drawn through it (raw curves
first, smoothed ones over them). Axes: value ticks on the left, x ticks below, at round
positions (plotting.nice_ticks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.style import Style
from rich.text import Text

from .plotting import AXES_COLOR, Line, compact, nice_ticks

# A cell's dots: [column][row] -> bit; the glyph of each set of bits.
_DOTS = ((1, 4), (2, 8))
_GLYPHS = " ▘▝▀▖▌▞▛▗▚▐▜▄▙▟█"
# _RUNS[column][first][last]: the bits of rows first..last of one cell column
_RUNS = tuple(tuple(tuple(sum(_DOTS[c][r] for r in range(a, b + 1)) if b >= a else 0
                          for b in range(2)) for a in range(2)) for c in range(2))
_AXES = Style(color=f"color({AXES_COLOR})")


def render(lines: Sequence[Line], width: int, height: int) -> Text:
    """`lines` in a width x height box of cells, with axes."""
    finite = [_finite(line) for line in lines]
    xs = [x for xs_, _ in finite for x in xs_]
    ys = [y for _, ys_ in finite for y in ys_]
    if not xs:
        return Text("")
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if y_high <= y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    if x_high <= x_low:
        x_high = x_low + 1
    y_ticks = nice_ticks(y_low, y_high, max(2, min(6, height // 3)))
    y_labels = [_value_label(v) for v in y_ticks]
    margin = max(len(label) for label in y_labels) + 1
    plot_w, plot_h = max(2, width - margin - 1), max(2, height - 2)
    cols, rows = plot_w * 2, plot_h * 2
    bits = [bytearray(plot_w) for _ in range(plot_h)]
    colors = [[0] * plot_w for _ in range(plot_h)]
    sx = (cols - 1) / (x_high - x_low)
    sy = (rows - 1) / (y_high - y_low)
    for line, (line_xs, line_ys) in zip(lines, finite, strict=True):
        dots_x = [round((x - x_low) * sx) for x in line_xs]
        dots_y = [rows - 1 - round((y - y_low) * sy) for y in line_ys]
        _draw(bits, colors, dots_x, dots_y, line.color or 39)
    return _compose(bits, colors, y_ticks, y_labels, margin, (y_low, sy, rows),
                    (x_low, x_high, sx), line_whole(xs))


def line_whole(xs: list[float]) -> bool:
    return all(float(x).is_integer() for x in xs)


def _finite(line: Line) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(line.xs, line.ys, strict=False)
             if math.isfinite(x) and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _draw(bits, colors, dots_x: list[int], dots_y: list[int], color: int) -> None:
    """Each segment, column by column: the dots between where it enters and leaves it.
    (The hot loop of a redraw: `_column` is written out in it.)"""
    if not dots_x:
        return
    runs_of = _RUNS
    prev_x, prev_y = dots_x[0], dots_y[0]
    spans = []  # (dot column, top dot, bottom dot); the first point gives its own
    for x, y in zip(dots_x, dots_y, strict=True):
        if x == prev_x:
            spans.append((x, y, prev_y) if y < prev_y else (x, prev_y, y))
        else:
            step = 1 if x > prev_x else -1
            slope = (y - prev_y) / (x - prev_x)
            last_y = prev_y
            for at in range(prev_x + step, x + step, step):
                next_y = round(prev_y + slope * (at - prev_x))
                spans.append((at, next_y, last_y) if next_y < last_y else (at, last_y, next_y))
                last_y = next_y
        prev_x, prev_y = x, y
    for x, top, bottom in spans:
        cell_x, runs = x >> 1, runs_of[x & 1]
        first_cell, last_cell = top >> 1, bottom >> 1
        if first_cell == last_cell:
            bits[first_cell][cell_x] |= runs[top & 1][bottom & 1]
            colors[first_cell][cell_x] = color
            continue
        bits[first_cell][cell_x] |= runs[top & 1][1]
        colors[first_cell][cell_x] = color
        for cell_y in range(first_cell + 1, last_cell):
            bits[cell_y][cell_x] |= runs[0][1]
            colors[cell_y][cell_x] = color
        bits[last_cell][cell_x] |= runs[0][bottom & 1]
        colors[last_cell][cell_x] = color


def _compose(bits, colors, y_ticks, y_labels, margin, y_scale, x_scale, whole) -> Text:
    plot_h, plot_w = len(bits), len(bits[0])
    y_low, sy, rows = y_scale
    tick_rows = {}
    for value, label in zip(y_ticks, y_labels, strict=True):
        tick_rows.setdefault((rows - 1 - round((value - y_low) * sy)) >> 1, label)
    text = Text(no_wrap=True, overflow="crop")
    styles: dict[int, Style] = {}
    for row in range(plot_h):
        label = tick_rows.get(row)
        text.append(f"{label:>{margin - 1}}┤" if label else " " * (margin - 1) + "│", _AXES)
        line_bits, line_colors = bits[row], colors[row]
        start = 0
        while start < plot_w:
            color = line_colors[start] if line_bits[start] else 0
            end = start + 1
            while end < plot_w and (line_colors[end] if line_bits[end] else 0) == color:
                end += 1
            chunk = "".join([_GLYPHS[b] for b in line_bits[start:end]])
            if color:
                style = styles.get(color)
                if style is None:
                    style = styles[color] = Style(color=f"color({color})")
                text.append(chunk, style)
            else:
                text.append(chunk)
            start = end
        text.append("\n")
    x_low, x_high, sx = x_scale
    x_ticks = nice_ticks(x_low, x_high, max(2, min(7, plot_w // 12)), whole=whole)
    axis = ["─"] * plot_w
    labels = [" "] * (plot_w + margin + 1)  # the chart's whole width
    free = 0
    for value in x_ticks:
        cell = round((value - x_low) * sx) >> 1
        if not 0 <= cell < plot_w:
            continue
        axis[cell] = "┬"
        label = compact(value)
        at = min(max(margin + cell - len(label) // 2, free), len(labels) - len(label))
        if at >= free:
            labels[at:at + len(label)] = label
            free = at + len(label) + 1
    text.append(" " * (margin - 1) + "└" + "".join(axis) + "\n", _AXES)
    # Each label its own piece, the gaps unstyled: an SVG export places every piece at its
    # cell (a renderer may drop the leading spaces of one long piece).
    for gap, label in _pieces("".join(labels).rstrip()):
        text.append(gap)
        text.append(label, _AXES)
    return text


def _pieces(row: str) -> list[tuple[str, str]]:
    """(spaces, word) pairs of a row of labels."""
    import re

    return re.findall(r"( *)(\S+)", row)


def _value_label(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return compact(value)
    if magnitude >= 1:
        return f"{value:.3g}" if not float(value).is_integer() else f"{value:.0f}"
    return f"{value:.2g}" if magnitude >= 1e-3 else f"{value:.1e}"
