"""The compare chart's own renderer: lines land where the axes say, in the line's colour."""

from __future__ import annotations

from trainctl_tui.ui.linechart import render
from trainctl_tui.ui.plotting import Line


def columns_of(text, style: str) -> set[int]:
    """The columns of the cells drawn in `style`."""
    plain, found, row_start = text.plain, set(), {}
    start = 0
    for line in plain.split("\n"):
        row_start[start] = True
        start += len(line) + 1
    starts = sorted(row_start)
    for span in text.spans:
        if str(span.style) != style:
            continue
        begin = max(s for s in starts if s <= span.start)
        found.update(range(span.start - begin, span.end - begin))
    return found


def test_a_line_ends_under_its_last_tick_and_the_axes_are_labelled():
    short = Line("a", [0.0, 100.0, 200.0, 400.0], [1.0, 0.5, 0.4, 0.25], 39)
    long = Line("b", [0.0, 1000.0], [0.9, 0.3], 170)
    text = render([short, long], 100, 14)
    rows = text.plain.split("\n")
    assert len(rows) == 14
    axis, labels = rows[-2], rows[-1]
    tick_400 = labels.index(" 400 ") + 2  # under the label's middle character
    assert axis[tick_400] == "┬"
    assert max(columns_of(text, "color(39)")) == tick_400  # ends at 400
    assert max(columns_of(text, "color(170)")) == len(rows[0]) - 1  # the widest: to the edge
    first = rows[0].index("┤") + 1  # the plot starts right of the value axis
    assert min(columns_of(text, "color(39)")) == min(columns_of(text, "color(170)")) == first
    assert rows[0].startswith("   1┤") and all(row[first - 1] in "│┤" for row in rows[:-2])


def test_nothing_to_draw_and_a_flat_line():
    assert render([Line("a", [], [], 39)], 40, 10).plain == ""
    flat = render([Line("a", [1.0, 2.0], [5.0, 5.0], 39)], 40, 10)
    assert "5┤" in flat.plain and columns_of(flat, "color(39)")
