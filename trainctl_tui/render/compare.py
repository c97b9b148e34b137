"""`trainctl compare`: one row per run, the same columns as the compare screen's table."""

from __future__ import annotations

from typing import TextIO

from ..core.formatting import format_duration, visible
from .snapshot import format_number, format_step

COLUMNS = ("RUN", "LAST", "MIN", "AT STEP", "STEPS", "ELAPSED", "COST")
RUN_WIDTH = 32  # a longer run name (a log's path) keeps its end: …/run-3/train.log


def short_label(label: str, width: int = RUN_WIDTH) -> str:
    """A run's name cut to `width`, keeping its end (where a log's path differs most)."""
    label = visible(label)
    return label if len(label) <= width else "…" + label[-(width - 1):]


def cells(row) -> tuple[str, ...]:
    """A RunFigures as text, column by column (cost blank when unknown, never $0)."""
    return (short_label(row.label), format_number(row.last), format_number(row.min),
            format_step(row.min_step), format_step(row.steps),
            format_duration(row.elapsed) if row.elapsed is not None else "",
            f"${row.cost:,.2f}" if row.cost is not None else "")


def render_comparison(comparison, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title=f"{comparison.metric} · {len(comparison.rows)} runs")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "RUN" else "right",
                         no_wrap=True)
    for row in comparison.rows:
        table.add_row(*cells(row))
    console.print(table)
