"""A text sparkline that fits in a table cell."""

from __future__ import annotations

import math
from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """The last `width` values as bars; a nan/inf point shows as '!'."""
    values = list(values)[-width:]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "!" * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    chars = []
    for v in values:
        if not math.isfinite(v):
            chars.append("!")
        else:
            level = 0 if span == 0 else round((v - low) / span * (len(BARS) - 1))
            chars.append(BARS[level])
    return "".join(chars)
