"""Whether a screen can be seen: polling and redrawing are skipped for hidden screens."""

from __future__ import annotations

from textual.screen import ModalScreen, Screen


def in_view(screen: Screen) -> bool:
    """On top, or under modals only (Screen.is_current is also true under a full screen)."""
    stack = screen.app.screen_stack
    if screen not in stack:
        return False
    return all(isinstance(s, ModalScreen) for s in stack[stack.index(screen) + 1:])
