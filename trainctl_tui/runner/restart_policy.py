"""When and how a failed attempt is restarted: exponential backoff, resume arguments."""

from __future__ import annotations

import shlex

# Exit codes a shell uses for "cannot execute" / "not found": retrying them is pointless.
NO_RETRY_EXIT_CODES = (126, 127)


def resume_args(template: str | None, checkpoint: str | None) -> list[str]:
    """Extra arguments that make the command resume from `checkpoint`."""
    if not template or not checkpoint:
        return []
    return [tok.replace("{checkpoint}", checkpoint) for tok in shlex.split(template)]


def backoff_delay(spec: dict, restarts_done: int) -> float:
    """Exponential backoff before restart number restarts_done + 1."""
    delay = spec["backoff_seconds"] * (2 ** min(restarts_done, 60))
    return min(delay, spec["backoff_max_seconds"])
