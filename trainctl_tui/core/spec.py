"""A session's spec.json: what its runner runs (command, cwd, env names, checkpoint dir,
resume template, where to resume from). Written by trainctl, read by the runner."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_json
from .errors import TrainctlError
from .models import Session

NEWEST_CHECKPOINT = "newest"  # a spec's resume_from the runner reads as its newest sound one


def spec_path(session: Session) -> Path:
    return Path(session.session_dir) / "spec.json"


def read_spec(session: Session) -> dict:
    """The session's spec.json, or one line saying it cannot be used."""
    path = spec_path(session)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainctlError(f"session {session.id} has no spec.json ({path}); it cannot be "
                            "resumed") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise TrainctlError(f"session {session.id}'s spec.json ({path}) is unreadable "
                            f"({exc}); it cannot be resumed") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), list):
        raise TrainctlError(f"session {session.id}'s spec.json ({path}) is not a trainctl "
                            "spec (no command list); it cannot be resumed")
    return spec


def write_spec(session: Session, spec: dict) -> None:
    atomic_write_json(spec_path(session), spec)
