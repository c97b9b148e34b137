"""The log pane: Textual's virtualised Log, with search-term highlighting."""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.highlighter import Highlighter
from rich.text import Text
from textual import work
from textual._context import NoActiveAppError
from textual.widgets import Log

from ...monitor.metrics import strip_ansi

# Left after stripping ANSI sequences: charset switches, bells, backspaces ...
CONTROL = re.compile(r"\x1b[()][0-9A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")
ERROR_WORDS = re.compile(r"\b(Traceback|Error|ERROR|Exception|FAILED|nan|inf)\b")
TRAINCTL_LINE = "[trainctl] "


class LogHighlighter(Highlighter):
    def __init__(self):
        self.query: re.Pattern | None = None

    def highlight(self, text: Text) -> None:
        if text.plain.startswith(TRAINCTL_LINE):
            text.stylize("bold cyan")
        text.highlight_regex(ERROR_WORDS, "red")
        if self.query is not None:
            text.highlight_regex(self.query, "black on yellow")


class LogView(Log):
    """Follows the end while `auto_scroll` is on; search moves to and highlights matches.

    Following is a mode, not a position: Log on its own scrolls only when the view is
    already at the end, so a resize or a horizontal scrollbar appearing (one wide line)
    would stop it for good. Scrolling up by key or wheel pauses it; `end` (or `f`) resumes.
    """

    def __init__(self, **kwargs):
        super().__init__(highlight=True, max_lines=20_000, **kwargs)
        self.highlighter = LogHighlighter()
        self.match_line: int | None = None

    def write_lines(self, lines, scroll_end: bool | None = None):
        """Logs carry colours and cursor moves (tqdm, rich); show the text alone."""
        super().write_lines([clean_line(line) for line in lines], scroll_end)
        self._keep_following()
        return self

    def _keep_following(self) -> None:
        if self.auto_scroll and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_resize(self) -> None:
        self._keep_following()

    def _update_maximum_width(self, updates: int, size: int) -> None:
        super()._update_maximum_width(updates, size)
        self._keep_following()  # a horizontal scrollbar may have just taken the last row

    def _pause(self) -> None:
        self.auto_scroll = False

    def action_scroll_up(self) -> None:
        super().action_scroll_up()  # raises SkipAction when there is nothing to scroll
        self._pause()

    def action_page_up(self) -> None:
        super().action_page_up()  # raises SkipAction when there is nothing to scroll
        self._pause()

    def action_scroll_home(self) -> None:
        super().action_scroll_home()  # raises SkipAction when there is nothing to scroll
        self._pause()

    def action_scroll_end(self) -> None:
        self.auto_scroll = True
        super().action_scroll_end()

    def _on_mouse_scroll_up(self, event) -> None:
        super()._on_mouse_scroll_up(event)
        if self.allow_vertical_scroll:
            self._pause()

    @work(thread=True)
    def _update_size(self, updates: int, lines: list[str]) -> None:
        # Log's own version raises if the screen closes while this thread runs (the app is
        # gone by then); the width it computes no longer matters in that case.
        if not lines:
            return
        width = max(cell_len(self._process_line(line)) for line in lines)
        try:
            self.app.call_from_thread(self._update_maximum_width, updates, width)
        except NoActiveAppError:
            pass

    def set_query(self, query: str) -> None:
        self.highlighter.query = re.compile(re.escape(query), re.I) if query else None
        self._render_line_cache.clear()
        self.refresh()

    def find(self, query: str, *, backwards: bool = False) -> int | None:
        """Scroll to the next (or previous) line containing `query`; its index, or None."""
        if not query:
            return None
        needle = query.lower()
        lines = self.lines
        count = len(lines)
        if not count:
            return None
        start = self.match_line if self.match_line is not None else (
            count if backwards else int(self.scroll_y) - 1)
        order = range(start - 1, start - 1 - count, -1) if backwards else \
            range(start + 1, start + 1 + count)
        for raw in order:
            index = raw % count
            if needle in lines[index].lower():
                self.match_line = index
                self.auto_scroll = False
                self.scroll_to(y=max(0, index - self.size.height // 2), animate=False)
                return index
        return None


def clean_line(line: str) -> str:
    return CONTROL.sub("", strip_ansi(line))
