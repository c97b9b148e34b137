"""Formatting shared with `--once` (snapshot.py), so both show the same values the same way."""

from ..render.snapshot import STATUS_STYLE, format_number, format_step

number = format_number
step = format_step

__all__ = ["STATUS_STYLE", "number", "step"]
