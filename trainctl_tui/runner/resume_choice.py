"""The checkpoint to resume from: the newest *sound* one, one rule everywhere (runner
restarts, `trainctl resume`, auto-resume, the pickers).
"""

from __future__ import annotations

import importlib

from .checkpoint_files import checkpoint_candidates, still_growing

# Soundness is the inspector's verdict (checkpoints/inspect/): it reads metadata and never runs
# anything from the file. The inspector sits beside this package, in trainctl_tui as in the
# zipapp, and is imported by name at first use: the runner is a lower layer than checkpoints
# (no static import), and the CLI paths that only read status files never pay for it.
INSPECTOR = "checkpoints.inspect"
SKIPPED_RECORDED = 20  # at most this many passed-over checkpoints in an attempt's record
_inspector = None  # the module, or why it cannot be loaded


def load_inspector():
    """The checkpoint inspector module, or a string saying why there is none."""
    global _inspector
    if _inspector is None:
        _inspector = _import_inspector()
    return _inspector


def _import_inspector():
    name = __package__.rpartition(".")[0] + "." + INSPECTOR
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name is not None and name.startswith(exc.name):
            # Worded as when the inspector was a file copied beside the runner (tests read it).
            return "the checkpoint inspector (ckpt_inspect.py) is not beside the runner"
        return f"the checkpoint inspector cannot be loaded ({type(exc).__name__}: {exc})"
    except Exception as exc:  # e.g. a Python too old for it: no checkpoint is trusted
        return f"the checkpoint inspector cannot be loaded ({type(exc).__name__}: {exc})"


def checkpoint_problem(path: str, trusted_globals=()) -> str | None:
    """Why `path` must not be resumed from ("corrupt: ...", "suspicious: ...", "unknown: ..."),
    or None when it is sound."""
    inspector = load_inspector()
    if isinstance(inspector, str):
        return f"unknown: {inspector}"
    try:
        info = inspector.inspect_checkpoint(path)
        return inspector.unsound_reason(info, trusted_globals)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    except Exception as exc:  # a bug, or a Python the inspector does not know: never resume
        return f"unknown: the inspector failed on it ({type(exc).__name__}: {exc})"


def choose_checkpoint(directory: str | None, trusted_globals=()) -> tuple:
    """(newest sound checkpoint in `directory` or None, [{"path", "reason"}] of the newer ones
    passed over: still being written, corrupt, suspicious or unknown)."""
    skipped = []
    for _key, path, is_dir, stat, unfinished in checkpoint_candidates(directory):
        reason = unfinished
        if reason is None and still_growing(path, is_dir, stat):
            reason = "still being written (its size is changing)"
        if reason is None:
            reason = checkpoint_problem(path, trusted_globals)
        if reason is None:
            return path, skipped[:SKIPPED_RECORDED]
        skipped.append({"path": path, "reason": reason})
    return None, skipped[:SKIPPED_RECORDED]
