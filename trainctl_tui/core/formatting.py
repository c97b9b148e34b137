"""Formatters shared by every front end. Stdlib only, cheap to import."""

from __future__ import annotations

import os
import sys

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float | None, units: int = 2) -> str:
    """A duration as people read it, in its `units` largest units: 45s, 12m05s, 3h07m, 2d04h
    (with units=3: 3h07m12s). The one duration formatter of every front end; '-' for None."""
    if seconds is None:
        return "-"
    rest = max(0, int(seconds))
    parts: list[str] = []
    for suffix, size in _UNITS:
        if rest >= size or parts or size == 1:
            value, rest = divmod(rest, size)
            parts.append(f"{value:02d}{suffix}" if parts else f"{value}{suffix}")
            if len(parts) == units:
                break
    return "".join(parts)


def nodes_note(count: int | None) -> str:
    """' · 4 nodes' after where a multi-node run runs; '' for one node."""
    return f" · {count} nodes" if count and count > 1 else ""


def mask_secret(value) -> str:
    """'****abcd' for a secret of 12+ chars, '****' for a shorter one, '' when unset. `value`
    is text or a pydantic SecretStr (anything with get_secret_value)."""
    if value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if not value:
        return ""
    return "****" + value[-4:] if len(value) >= 12 else "****"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str, limit: int | None = None) -> str:
    """`text` safe to print: control characters (escape sequences, newlines, bidi overrides)
    shown as \\x1b, \\n, \\u202e ..., so a name cannot retitle or clear the terminal or
    fake a line; cut to `limit` characters with '...'."""
    import unicodedata

    shown = "".join(
        _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
        for c in str(text))
    if limit is not None and len(shown) > limit:
        shown = shown[:limit - 3] + "..."
    return shown


def terminal_columns() -> int:
    """$COLUMNS, else the terminal's width, else 80: shutil.get_terminal_size without
    importing shutil (a tenth of `trainctl sessions`)."""
    try:
        if int(os.environ["COLUMNS"]) > 0:
            return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80
