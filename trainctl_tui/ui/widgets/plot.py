"""A loss-curve widget: series sampled down to its width and drawn by plotext.

Redraws happen at most every `min_interval` seconds however fast data arrives, and only
when the data or the size changed. With smoothing on, each series is drawn faint and its
moving average (monitor/smoothing.py) over it in full colour.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widget import Widget

from ...monitor.metrics import Series
from ...monitor.smoothing import SmoothedSeries, next_smoothing, smoothing_label
from ..plotting import FAINT_COLORS, SERIES_COLORS, Line, render

XMap = Callable[[list[float], Series], list[float | None]]  # None: no place
# Points smoothed a redraw, all lines together (~0.05 s): millions catch up over a few redraws.
SMOOTH_BUDGET = 100_000


class PlotView(Widget):
    DEFAULT_CSS = "PlotView { height: 1fr; }"

    def __init__(self, *, min_interval: float = 0.5, fast: bool = False, **kwargs):
        """`fast`: draw with ui/linechart.py (many lines, many redraws) instead of
        plotext."""
        super().__init__(**kwargs)
        self.min_interval = min_interval
        self.fast = fast
        self._series: list[tuple[str, Series | None]] = []
        self._live: dict[str, tuple[float, float]] = {}  # label -> the unfinished line's point
        self._x_map: XMap | None = None
        self.smoothing = 0.0
        self._smoothed: dict[str, SmoothedSeries] = {}  # label -> its smoothed twin
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache: Text = Text("")
        self._last_draw = 0.0
        self._pending = False

    def set_series(self, series: list[tuple[str, Series | None]],
                   live: dict[str, tuple[float, float]] | None = None, *,
                   x_map: XMap | None = None) -> None:
        """Replace what is drawn: (label, series) per line; train and eval share one chart.
        `live` adds a last point per label: a progress bar's numbers before its line ends.
        `x_map(xs, series)` moves sampled points to another x axis (e.g. elapsed time)."""
        self._series = series
        self._live = live or {}
        self._x_map = x_map
        self._version += 1
        self._schedule()

    def set_smoothing(self, weight: float) -> None:
        if weight != self.smoothing:
            self.smoothing = weight
            self._smoothed = {}
            self._version += 1
            self._schedule()

    def use_saved_smoothing(self) -> None:
        """The smoothing the user last chose (kept in the state dir)."""
        from ...app import preferences

        self.set_smoothing(preferences.smoothing())

    def cycle_smoothing(self) -> str | None:
        """`S`: off, 0.6, 0.9, 0.99, off...; kept for next time. None, or why it could not
        be kept."""
        from ...app import preferences

        self.set_smoothing(next_smoothing(self.smoothing))
        return preferences.save_preference("smoothing", self.smoothing)

    def smoothing_text(self) -> Text:
        """For a chart's legend: the smoothing when it is on."""
        if not self.smoothing:
            return Text("")
        return Text(f"smoothed {smoothing_label(self.smoothing)}  ", style="italic")

    def _schedule(self) -> None:
        wait = self.min_interval - (time.monotonic() - self._last_draw)
        if wait <= 0:
            self.refresh()
        elif not self._pending:
            self._pending = True
            self.set_timer(wait, self._flush)

    def _catch_up(self) -> None:
        self._version += 1
        self.refresh()

    def _flush(self) -> None:
        self._pending = False
        self.refresh()

    def legend(self) -> Text:
        text = Text()
        for index, (label, series) in enumerate(self._series):
            color = SERIES_COLORS[index % len(SERIES_COLORS)]
            newest = self._newest(label, series)
            last = f" {newest:.4g}" if newest is not None else " -"
            text.append("━━ ", style=f"color({color})")
            text.append(f"{label}{last}  ")
        return text

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        if width < 20 or height < 5:
            return Text("(too small to plot)", style="dim")
        if not any(series is not None and len(series) for _, series in self._series):
            return Text("no metrics yet: the chart appears when the log prints a loss",
                        style="dim")
        key = (self._version, width, height)
        if key != self._cache_key:
            if self.fast:
                from ..linechart import render as draw

                # min and max of each cell-wide bucket: 2 points a cell, 1 a dot column
                self._cache = draw(self.lines(width), width, height)
            else:
                self._cache = Text.from_ansi(render(self.lines(width * 2), width, height))
            self._cache_key = key
            self._last_draw = time.monotonic()
        return self._cache

    def lines(self, points: int) -> list[Line]:
        """What is drawn, each series sampled down to `points`: the raw curves (faint when
        smoothed), then the smoothed ones over them."""
        raw, smooth = [], []
        budget, catching_up = SMOOTH_BUDGET, False
        for index, (label, series) in enumerate(self._series):
            color = SERIES_COLORS[index % len(SERIES_COLORS)]
            faint = FAINT_COLORS[index % len(FAINT_COLORS)]
            # Block summaries are cached: a redraw of millions of points stays cheap.
            sx, sy = series.downsample(points) if series is not None else ([], [])
            point = self._live.get(label)
            if point is not None and (not len(sx) or point[0] >= sx[-1]):
                sx, sy = [*sx, point[0]], [*sy, point[1]]
            if self._x_map is not None and series is not None:
                sx, sy = placed(self._x_map(sx, series), sy)
            if not self.smoothing or series is None or not len(series):
                raw.append(Line(label, sx, sy, color))
                continue
            raw.append(Line(label, sx, sy, faint))
            twin = self._smoothed.setdefault(label, SmoothedSeries(self.smoothing))
            behind = twin.behind(series)
            smoothed = twin.of(series, budget)
            budget = max(0, budget - behind)
            catching_up = catching_up or twin.behind(series) > 0
            mx, my = smoothed.downsample(points)
            if self._x_map is not None:
                mx, my = placed(self._x_map(mx, series), my)
            smooth.append(Line(f"{label} smoothed", mx, my, color))
        if catching_up:  # drawn as far as smoothed; the rest over the next redraws
            self.set_timer(0.05, self._catch_up)
        return raw + smooth

    def _newest(self, label: str, series: Series | None) -> float | None:
        if label in self._live:
            return self._live[label][1]
        return series.ys[-1] if series is not None and len(series) else None


def placed(xs, ys) -> tuple[list, list]:
    """The points an x map gave a place (an x of None has none: it is not drawn)."""
    if None not in xs:
        return xs, ys
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None]
    return [x for x, _ in kept], [y for _, y in kept]
