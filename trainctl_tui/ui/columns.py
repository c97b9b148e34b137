"""Table columns that fit the terminal: at 80 columns (often ssh + tmux) the least useful
ones go and some narrow, and one column of width 0 takes whatever is left."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.widgets import DataTable

CELL_PADDING = 2


@dataclass
class ColumnLayout:
    columns: list[tuple[str, str, int]]  # (key, label, width); width 0 = takes the rest
    narrow_below: int = 110
    narrow_drops: set[str] = field(default_factory=set)
    narrow_widths: dict[str, int] = field(default_factory=dict)
    narrow_labels: dict[str, str] = field(default_factory=dict)
    min_rest: int = 6

    def fit(self, width: int) -> list[tuple[str, str, int]]:
        narrow = width < self.narrow_below
        chosen = [(key, self.narrow_labels.get(key, label) if narrow else label,
                   self.narrow_widths.get(key, w) if narrow else w)
                  for key, label, w in self.columns
                  if not (narrow and key in self.narrow_drops)]
        used = sum(w + CELL_PADDING for _, _, w in chosen if w)
        rest = max(self.min_rest, width - used - CELL_PADDING - 2)
        return [(key, label, w or rest) for key, label, w in chosen]

    def apply(self, table: DataTable, width: int) -> bool:
        """Rebuild the table's columns if they do not fit `width`; True if it did (rows gone)."""
        columns = self.fit(width)
        current = [(str(c.key.value), c.width) for c in table.columns.values()]
        if current == [(key, w) for key, _, w in columns]:
            return False
        table.clear(columns=True)
        for key, label, w in columns:
            table.add_column(label, key=key, width=w)
        return True
