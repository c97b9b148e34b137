"""Formatters shared by every front end. Stdlib only, cheap to import."""

from __future__ import annotations


def format_age(seconds: float) -> str:
    """A duration as people read it: 45s, 12m05s, 3h07m, 2d04h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
