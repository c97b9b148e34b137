"""A loss-curve widget: series sampled down to its width and drawn by plotext.

Redraws happen at most every `min_interval` seconds however fast data arrives, and only
when the data or the size changed.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widget import Widget

from ...monitor.metrics import Series
from ..plotting import SERIES_COLORS, Line, render


class PlotView(Widget):
    DEFAULT_CSS = "PlotView { height: 1fr; }"

    def __init__(self, *, min_interval: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.min_interval = min_interval
        self._series: list[tuple[str, Series | None]] = []
        self._live: dict[str, tuple[float, float]] = {}  # label -> the unfinished line's point
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache: Text = Text("")
        self._last_draw = 0.0
        self._pending = False

    def set_series(self, series: list[tuple[str, Series | None]],
                   live: dict[str, tuple[float, float]] | None = None) -> None:
        """Replace what is drawn: (label, series) per line; train and eval share one chart.
        `live` adds a last point per label: a progress bar's numbers before its line ends."""
        self._series = series
        self._live = live or {}
        self._version += 1
        wait = self.min_interval - (time.monotonic() - self._last_draw)
        if wait <= 0:
            self.refresh()
        elif not self._pending:
            self._pending = True
            self.set_timer(wait, self._flush)

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
            lines = []
            for label, series in self._series:
                # Block summaries are cached: a redraw of millions of points stays cheap.
                sx, sy = series.downsample(width * 2) if series is not None else ([], [])
                point = self._live.get(label)
                if point is not None and (not len(sx) or point[0] >= sx[-1]):
                    sx, sy = [*sx, point[0]], [*sy, point[1]]
                lines.append(Line(label, sx, sy))
            self._cache = Text.from_ansi(render(lines, width, height))
            self._cache_key = key
            self._last_draw = time.monotonic()
        return self._cache

    def _newest(self, label: str, series: Series | None) -> float | None:
        if label in self._live:
            return self._live[label][1]
        return series.ys[-1] if series is not None and len(series) else None
