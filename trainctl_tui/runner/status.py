"""status.json: written atomically (temp file, fsync, rename), read back with the types of its
fields checked."""

from __future__ import annotations

import json
import os

STATUS_VERSION = 1


def atomic_write_json(path: str, obj) -> None:
    """Write JSON so readers see the old or the new file, never a half-written one."""
    tmp = f"{path}.tmp"
    data = json.dumps(obj, indent=1, sort_keys=True).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows it.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


NUMBER = (int, float)
# status.json fields trainctl relies on, with their types (None is always allowed).
STATUS_FIELD_TYPES = {
    "state": str, "reason": str, "runner_start": str, "child_start": str,
    "runner_pid": int, "child_pid": int, "attempt": int, "exit_code": int, "signal": int,
    "heartbeat": NUMBER, "started": NUMBER, "ended": NUMBER, "next_restart_at": NUMBER,
    "attempts": list, "survivors": list,
}
ATTEMPT_FIELD_TYPES = {
    "n": int, "exit_code": int, "signal": int, "started": NUMBER, "ended": NUMBER,
    "resumed_from": str, "reason": str,
}


def _field_problem(data: dict, types: dict, where: str) -> str | None:
    for name, kind in types.items():
        value = data.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{where}'{name}' is a {type(value).__name__}, not a {_kind_name(kind)}"
    return None


def _kind_name(kind) -> str:
    return "number" if kind is NUMBER else {"str": "string", "int": "whole number"}.get(
        kind.__name__, kind.__name__)


def status_problem(data) -> str | None:
    """Why a parsed status.json cannot be trusted (wrong types), or None if it can."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    problem = _field_problem(data, STATUS_FIELD_TYPES, "")
    if problem:
        return problem
    for i, attempt in enumerate(data.get("attempts") or []):
        if not isinstance(attempt, dict):
            return f"attempt {i + 1} is a {type(attempt).__name__}, not an object"
        problem = _field_problem(attempt, ATTEMPT_FIELD_TYPES, f"attempt {i + 1}: ")
        if problem:
            return problem
    if not all(isinstance(pid, int) for pid in data.get("survivors") or []):
        return "'survivors' holds something other than pids"
    return None


def read_status_checked(session_dir: str) -> tuple[dict | None, str | None]:
    """(status, None), (None, None) if there is no status.json, or (None, why it is unusable):
    empty, half-written, garbled, nested too deep, or fields of the wrong type."""
    try:
        with open(os.path.join(session_dir, "status.json"), "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    if not raw.strip():
        return None, "it is empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        return None, "it is nested too deeply"
    except ValueError as exc:
        return None, f"it is not valid JSON ({exc})"
    problem = status_problem(data)
    return (None, problem) if problem else (data, None)


def read_status(session_dir: str) -> dict | None:
    """The session's status.json as a dict, or None if missing, unreadable or invalid."""
    return read_status_checked(session_dir)[0]


FINAL_STATES = ("succeeded", "failed", "stopped", "interrupted")
