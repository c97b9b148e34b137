"""`@screen_work`: textual's `@work` for a screen's async methods, ending quietly when the
screen closes while the method awaits (a slow scan, a host that answers late).

A closed screen leaves the app's stack at once and loses its widgets a moment later, so a
method that wakes up in between and updates a widget gets NoMatches; without this guard that
exception fails the worker and takes the whole app down. NoMatches on a screen that is still
open is a bug and still raises.
"""

from __future__ import annotations

import functools

from textual import work
from textual.css.query import NoMatches


def screen_work(**options):
    def decorate(method):
        @functools.wraps(method)
        async def guarded(screen, *args, **kwargs):
            try:
                return await method(screen, *args, **kwargs)
            except NoMatches:
                if screen.is_attached and screen in screen.app.screen_stack:
                    raise
                return None

        return work(**options)(guarded)

    return decorate
