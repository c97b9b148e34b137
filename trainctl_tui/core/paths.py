"""Where trainctl keeps its state and looks for its config. Cheap to import (no pydantic)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "trainctl"


def state_dir() -> Path:
    """$TRAINCTL_HOME, else the platform's user data dir (e.g. ~/.local/share/trainctl)."""
    home = os.environ.get("TRAINCTL_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def user_config_path() -> Path:
    """$TRAINCTL_CONFIG, else the platform's user config dir's config.toml."""
    explicit = os.environ.get("TRAINCTL_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def project_config_path(cwd: Path | None = None) -> Path:
    """A project-local ./trainctl.toml overrides the user config."""
    return (cwd or Path.cwd()) / "trainctl.toml"


def sessions_dir() -> Path:
    return state_dir() / "sessions"


def db_path() -> Path:
    return state_dir() / "trainctl.db"
