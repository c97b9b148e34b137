"""A text table for the command that lists sessions, written without rich.

`trainctl sessions` runs many times a day and rich's console costs more to import than the
rest of the command. Columns are separated by two spaces like rich's box-less tables; the last
column wraps to the terminal's width; colour only on a terminal that wants it (NO_COLOR).
"""

from __future__ import annotations

import os
import unicodedata

from ..core.formatting import terminal_columns

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

GAP = "  "
MIN_LAST_WIDTH = 16
MIN_SHRUNK_WIDTH = 8
SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "magenta": "35",
       "cyan": "36"}


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: wide (East Asian) characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else
               0 if unicodedata.combining(ch) else 1 for ch in text)


def wants_colour(out: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(out, "isatty") and out.isatty()


def paint(text: str, style: str | None, colour: bool) -> str:
    codes = [SGR[word] for word in (style or "").split() if word in SGR]
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if colour and codes else text


def wrap(text: str, width: int) -> list[str]:
    """`text` cut into pieces of at most `width` cells, at spaces where it can."""
    lines: list[str] = []
    while cell_width(text) > width:
        cut = _cut_at(text, width)
        space = text.rfind(" ", 0, cut + 1)
        end = space if space > 0 else cut
        lines.append(text[:end].rstrip())
        text = text[end:].lstrip(" ")
    return [*lines, text]


def _cut_at(text: str, width: int) -> int:
    used = 0
    for index, ch in enumerate(text):
        used += cell_width(ch)
        if used > width:
            return max(index, 1)
    return len(text)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO, *,
                 styles: Sequence[Sequence[str | None]] | None = None,
                 shrink: Sequence[int] = (), width: int | None = None) -> None:
    """Write the table; `styles[r][c]` colours a cell ("bold red", "green", ...). The last
    column wraps to `width` (default: the terminal's; none when piped); where that is not
    enough, the columns in `shrink` are cut short with an ellipsis, widest first."""
    colour = wants_colour(out)
    if width is None and (colour or os.environ.get("COLUMNS")):
        width = terminal_columns()
    width = width or 1 << 30  # piped: one line per row, for grep
    widths = [max(cell_width(row[c]) for row in (headers, *rows)) for c in range(len(headers))]
    last = min(widths[-1], MIN_LAST_WIDTH)
    while sum(widths[:-1]) + len(GAP) * (len(widths) - 1) + last > width:
        widest = max(shrink, key=lambda c: widths[c], default=None)
        if widest is None or widths[widest] <= MIN_SHRUNK_WIDTH:
            break
        widths[widest] -= 1
    fixed = sum(widths[:-1]) + len(GAP) * (len(widths) - 1)
    widths[-1] = max(min(widths[-1], width - fixed), last)
    lines = [_line(headers, widths, ["bold"] * len(headers), colour)]
    for r, row in enumerate(rows):
        lines.append(_line(row, widths, styles[r] if styles else [None] * len(row), colour))
    out.write("".join(lines))


def fit(text: str, width: int) -> str:
    """`text` padded to `width` cells, or cut to it with an ellipsis."""
    used = cell_width(text)
    if used > width:
        text = text[:_cut_at(text, width - 1)] + "…"
        used = cell_width(text)
    return text + " " * (width - used)


def _line(cells: Sequence[str], widths: list[int], styles: Sequence[str | None],
          colour: bool) -> str:
    *first, last = cells
    pieces = wrap(last, widths[-1])
    prefix = GAP.join(paint(fit(cell, w), style, colour)
                      for cell, w, style in zip(first, widths, styles, strict=False))
    indent = " " * (sum(widths[:-1]) + len(GAP) * len(first))
    head = (prefix + GAP if first else "") + paint(pieces[0], styles[-1], colour)
    return "\n".join([head.rstrip(), *(indent + piece for piece in pieces[1:])]) + "\n"
