"""The session screen's nodes panel: a line per node of a multi-node run (rank, host, state,
heartbeat, GPUs, $/h, what went wrong), the node whose log is shown marked. Hidden for a
one-node run. Columns fit the width: the reason gets what is left, and below 100 columns
the GPUs lose their memory figures."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from ...render.nodes import (
    STATE_STYLE,
    beat_cell,
    gpus_cell,
    price_cell,
    state_cell,
    why_cell,
)
from ...render.progress import usd

TITLES = ("node", "host", "state", "beat", "GPUs", "$/h")
RIGHT = {3, 5}  # columns aligned right: heartbeat age, $/h
HOST_WIDTH = 14  # a longer host name is cut (the reason column needs the room)
WIDE = 100  # from this width on the GPUs column shows memory too


class NodePanel(Static):
    def on_mount(self) -> None:
        self.display = False

    def show(self, rows: list, shown: int = 0, now: float | None = None) -> None:
        """Draw `rows` (app.nodes.NodeRow), marking node `shown`; hidden when empty."""
        self.display = bool(rows)
        if not rows:
            return
        now = now or time.time()
        width = max(40, self.app.size.width - 4)  # inside the border and padding
        cells = [[f"{'▸' if row.rank == shown else ' '}{row.rank}", row.host or "?",
                  state_cell(row), beat_cell(row, now),
                  gpus_cell(row, memory=width >= WIDE), price_cell(row)] for row in rows]
        widths = [max(len(line[i]) for line in [list(TITLES), *cells]) for i in range(6)]
        widths[1] = min(widths[1], HOST_WIDTH)
        text = self._line(list(TITLES), widths)
        text.stylize("bold")
        for row, line in zip(rows, cells, strict=True):
            text.append("\n")
            state = line[2]
            style = "bold red" if state == "not answering" else STATE_STYLE.get(state, "dim")
            text.append_text(self._line(line, widths, {2: style}))
            why = why_cell(row)
            room = width - sum(widths) - 2 * len(widths)
            if why and room > 3:
                text.append("  " + (why if len(why) <= room else why[:room - 1] + "…"),
                            style="red")
        self.update(text)
        self.border_title = f"{len(rows)} nodes"
        prices = [row.price_per_hour for row in rows]
        self.border_subtitle = f"{usd(sum(prices))}/h" if None not in prices else ""

    @staticmethod
    def _line(cells: list[str], widths: list[int], styles: dict | None = None) -> Text:
        line = Text()
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            cell = cell if len(cell) <= width else cell[:width - 1] + "…"
            padded = cell.rjust(width) if i in RIGHT else cell.ljust(width)
            line.append(("  " if i else "") + padded, style=(styles or {}).get(i, ""))
        return line
