"""spec.json: what to run, with defaults filled in and paths made absolute."""

from __future__ import annotations

import json
import os
import shlex

from . import budget
from .parts import owned_checkpoint, part_classes, spec_defaults

SPEC_DEFAULTS = {
    "name": None,
    "cwd": None,
    "env": {},
    "checkpoint_dir": None,
    "resume_template": None,
    "max_restarts": 3,
    "backoff_seconds": 5.0,
    "backoff_max_seconds": 300.0,
    "grace_seconds": 30.0,
    "heartbeat_seconds": 2.0,
    "resume_from": None,
    # Pickle globals off the inspector's allow-list that `trainctl resume --from PATH --trust`
    # accepted for this session (as torch's add_safe_globals does): see checkpoint_problem.
    "trusted_globals": [],
    # Checkpoints `trainctl resume` passed over (newer than the one it chose), with why: kept
    # in the first attempt's record.
    "resume_skipped": [],
    "autostop_minutes": None,
    "autostop_command": None,
    **budget.SPEC_DEFAULTS,
}

NEWEST = "newest"  # spec resume_from: the newest checkpoint in checkpoint_dir at start


class SpecError(Exception):
    """spec.json is missing or invalid; the message names the problem."""


def load_spec(session_dir: str, base_cwd: str | None = None) -> dict:
    """spec.json with defaults filled in and paths made absolute. Raises SpecError."""
    path = os.path.join(session_dir, "spec.json")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise SpecError(f"no spec.json in {session_dir}") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path} must hold a JSON object")
    defaults = {**SPEC_DEFAULTS, **spec_defaults()}  # the backends' runner parts' keys too
    spec = dict(defaults)
    spec.update({k: v for k, v in raw.items() if v is not None or k not in defaults})
    command = spec.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if not isinstance(command, list) or not command:
        raise SpecError(f"{path}: 'command' must be a non-empty list of strings")
    spec["command"] = [str(tok) for tok in command]
    spec["id"] = str(spec.get("id") or os.path.basename(os.path.abspath(session_dir)))
    base = base_cwd or os.getcwd()
    spec["cwd"] = os.path.abspath(os.path.join(base, spec["cwd"] or base))
    if spec["checkpoint_dir"]:
        spec["checkpoint_dir"] = os.path.abspath(os.path.join(spec["cwd"], spec["checkpoint_dir"]))
    # NEWEST is chosen when the runner starts, where the checkpoints are (see starting_checkpoint)
    if spec["resume_from"] and spec["resume_from"] != NEWEST and \
            not owned_checkpoint(spec["resume_from"]):  # a checkpoint in a store, not a path
        spec["resume_from"] = os.path.abspath(os.path.join(spec["cwd"], spec["resume_from"]))
    for key in ("trusted_globals", "resume_skipped"):
        if not isinstance(spec[key], list):
            raise SpecError(f"{path}: '{key}' must be a list")
    if not isinstance(spec["env"], dict):
        raise SpecError(f"{path}: 'env' must be an object")
    spec["env"] = {str(k): str(v) for k, v in spec["env"].items()}
    for key in ("backoff_seconds", "backoff_max_seconds", "grace_seconds", "heartbeat_seconds"):
        try:
            spec[key] = max(0.0, float(spec[key]))
        except (TypeError, ValueError):
            raise SpecError(f"{path}: '{key}' must be a number") from None
    try:
        spec["max_restarts"] = max(0, int(spec["max_restarts"]))
    except (TypeError, ValueError):
        raise SpecError(f"{path}: 'max_restarts' must be an integer") from None
    spec["heartbeat_seconds"] = spec["heartbeat_seconds"] or SPEC_DEFAULTS["heartbeat_seconds"]
    load_cloud_spec(spec, path)
    budget.check_spec(spec, path, SpecError)
    if spec["budget_stop_command"] is not None:
        spec["budget_stop_command"] = command_list(spec["budget_stop_command"],
                                                   "budget_stop_command", path)
    return spec


def default_autostop_command() -> list[str]:
    # sudo -n: fail at once instead of waiting for a password nobody will type.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ["shutdown", "-h", "now"]
    return ["sudo", "-n", "shutdown", "-h", "now"]


def command_list(value, key: str, path: str) -> list[str]:
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list) or not value:
        raise SpecError(f"{path}: '{key}' must be a non-empty list of strings")
    return [str(tok) for tok in value]


def load_cloud_spec(spec: dict, path: str) -> None:
    """Validate the runner parts' keys and the autostop keys in place. Raises SpecError."""
    for part in part_classes():
        part.check_spec(spec, path)
    if spec["autostop_minutes"] is not None:
        try:
            spec["autostop_minutes"] = max(0.0, float(spec["autostop_minutes"]))
        except (TypeError, ValueError):
            raise SpecError(f"{path}: 'autostop_minutes' must be a number") from None
        command = spec["autostop_command"]
        spec["autostop_command"] = (
            default_autostop_command() if command is None
            else command_list(command, "autostop_command", path)
        )


def load_secret_env(session_dir: str) -> dict[str, str]:
    """secret_env.json as {name: value}; {} if absent. Values are never logged."""
    path = os.path.join(session_dir, "secret_env.json")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        # Say which file, never what is in it.
        raise SpecError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path} must hold a JSON object")
    return {str(k): str(v) for k, v in raw.items()}
