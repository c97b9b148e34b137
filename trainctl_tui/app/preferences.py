"""What the user chose in the UI and expects to find again (the chart smoothing): a small
JSON file in the state dir, written atomically. Not config: the UI changes it, the user's
config.toml is never rewritten. A missing or damaged file means the defaults."""

from __future__ import annotations

import json

from ..core import paths
from ..core.atomic import atomic_write_json

FILE = "ui.json"
DEFAULTS = {"smoothing": 0.0}


def load_preferences() -> dict:
    try:
        saved = json.loads((paths.state_dir() / FILE).read_text())
    except (OSError, ValueError):
        return dict(DEFAULTS)
    if not isinstance(saved, dict):
        return dict(DEFAULTS)
    return {key: saved.get(key, default) if isinstance(saved.get(key), type(default))
            else default for key, default in DEFAULTS.items()}


def save_preference(key: str, value) -> str | None:
    """Keep `key`; None, or why it could not be kept (a read-only home: the UI says so)."""
    if key not in DEFAULTS:
        raise KeyError(key)
    chosen = {**load_preferences(), key: value}
    try:
        paths.state_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_json(paths.state_dir() / FILE, chosen, durable=False)
    except OSError as exc:
        return f"cannot save {FILE}: {exc.strerror or exc}"
    return None


def smoothing() -> float:
    """The chart smoothing last chosen with `S` (0: off)."""
    from ..monitor.smoothing import SMOOTHING_STEPS

    value = load_preferences()["smoothing"]
    return value if value in SMOOTHING_STEPS else 0.0
