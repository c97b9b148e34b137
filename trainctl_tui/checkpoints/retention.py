"""Which checkpoints to keep, and removing the others safely.

`plan_prune` decides from plain data (scan entries, validity and metrics the caller got from
`inspect`, protected paths from the session store); it changes nothing on disk (it only resolves
symlinks to match paths), so a dry run is just printing the plan. `apply_prune` moves (or with
purge, deletes) exactly the planned entries, re-checking each one just before acting.

Never deleted: anything being written, the protected ones (a running session resumed from it),
the newest valid checkpoint, the last `keep_last` finished ones, the best one by `keep_best`,
and the target of a kept symlink (best.pt -> step_900.pt). "Last N" counts finished entries
whatever their validity. Validity missing from `validity` means "not checked": the newest
known-valid checkpoint is kept, and so is the newest unchecked one when it is newer than that,
because it may well be the newest valid one (losing the only good checkpoint is the one
unrecoverable mistake). When every entry is checked, or none is, that is exactly one "newest
valid" keep.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
from dataclasses import dataclass, field

from .scan import CheckpointEntry, changed_since_scan, order_key

__all__ = ["Decision", "PrunePlan", "PruneResult", "apply_prune", "default_mode", "plan_prune"]

# Metric names where smaller is better (besides anything containing "loss").
_MIN_TOKENS = {"ppl", "perplexity", "error", "err", "mse", "mae", "rmse", "wer", "cer"}
_PARTIAL_SUFFIX = ".trainctl-partial"


@dataclass
class Decision:
    entry: CheckpointEntry
    keep: bool
    reason: str


@dataclass
class PrunePlan:
    decisions: list[Decision]  # oldest -> newest
    directory: str | None = None  # the scanned directory; nothing outside it is touched
    keep_last: int = 1
    keep_best: str | None = None
    mode: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "no checkpoint has metric 'x'"

    @property
    def keep(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def delete(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    def summary(self) -> str:
        """One line per checkpoint (oldest first), then the totals and any notes."""
        rule = f"keep last {self.keep_last}"
        if self.keep_best:
            rule += f" + best {self.keep_best} ({self.mode})"
        lines = [f"prune {self.directory or '(no directory)'}: {rule}"]
        names = [self._display_name(d.entry) for d in self.decisions]
        width = max((len(n) for n in names), default=0)
        for decision, name in zip(self.decisions, names, strict=True):
            entry = decision.entry
            step = "-" if entry.step is None else str(entry.step)
            lines.append(
                f"{'keep' if decision.keep else 'DELETE':<6}  {step:>8}  {name:<{width}}  "
                f"{_human_size(entry.size):>9}  {decision.reason}"
            )
        freed = sum(d.entry.size for d in self.delete)
        lines.append(
            f"{len(self.keep)} kept, {len(self.delete)} to delete ({_human_size(freed)})"
        )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def _display_name(self, entry: CheckpointEntry) -> str:
        if self.directory and _inside(entry.path, self.directory):
            return _relative(entry.path, self.directory)
        return entry.path


class PruneResult(list):
    """Paths removed (moved to the trash or deleted), in order; a plain list of str.

    `skipped` holds (path, reason) for planned deletions that were not done (changed since the
    scan, now being written, an OS error); `moved_to` maps each moved path to its trash path.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[tuple[str, str]] = []
        self.moved_to: dict[str, str] = {}


# --------------------------------------------------------------------------- planning


def default_mode(metric: str) -> str:
    """'min' for losses and error-like metrics (perplexity, wer, mse, ...), else 'max'."""
    lower = metric.lower()
    tokens = set(re.split(r"[^a-z0-9]+", lower))
    return "min" if "loss" in lower or tokens & _MIN_TOKENS else "max"


def _check_args(keep_last, keep_best: str | None, mode: str | None) -> str | None:
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(
            f"keep_last must be a whole number of at least 1 (got {keep_last!r}): "
            "the newest checkpoint is always kept"
        )
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max' (got {mode!r})")
    if keep_best is None:
        return None
    if not isinstance(keep_best, str) or not keep_best.strip():
        raise ValueError("keep_best must name a metric, e.g. 'eval_loss'")
    return mode or default_mode(keep_best)


def _norm(path) -> str:
    return os.path.realpath(os.fspath(path))


def _inside(path: str, directory: str) -> bool:
    """True if `path` itself (not what a symlink at `path` points to) is strictly inside
    `directory`. Parent symlinks are resolved so `..` and symlinked folders cannot escape."""
    absolute = os.path.abspath(path)
    name = os.path.basename(absolute)
    if name in ("", ".", ".."):
        return False
    full = os.path.join(os.path.realpath(os.path.dirname(absolute)), name)
    root = os.path.realpath(directory)
    return full != root and os.path.commonpath([full, root]) == root


def _relative(path: str, directory: str) -> str:
    absolute = os.path.abspath(path)
    parent = os.path.realpath(os.path.dirname(absolute))
    full = os.path.join(parent, os.path.basename(absolute))
    return os.path.relpath(full, os.path.realpath(directory))


def _plan_directory(entries: list[CheckpointEntry], directory) -> str | None:
    if directory is not None:
        return os.path.abspath(os.fspath(directory))
    roots = {e.root for e in entries}
    if not entries:
        return None
    if len(roots) != 1 or "" in roots:
        raise ValueError(
            "the entries do not come from one scanned directory: pass directory= explicitly"
        )
    return roots.pop()


def _protected_reason(entry: CheckpointEntry, protected: dict[str, str]) -> str | None:
    """The caller's reason if `entry` is protected, or holds a protected file (a session may
    have resumed from checkpoint-500/ or from checkpoint-500/model.safetensors)."""
    real = _norm(entry.path)
    for path, reason in protected.items():
        if path == real or (entry.kind == "dir" and path.startswith(real + os.sep)):
            return reason
    return None


def _metric_value(values: dict | None, name: str) -> float | None:
    value = (values or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _pick_best(candidates: list[CheckpointEntry], values: dict[int, float], mode: str):
    """The best entry by metric; ties go to the newer one (candidates are oldest first)."""
    best = None
    for entry in candidates:
        value = values[id(entry)]
        if best is None or (value <= values[id(best)] if mode == "min"
                            else value >= values[id(best)]):
            best = entry
    return best


class _Planner:
    """Collects keep reasons per entry; one method per rule."""

    def __init__(self, entries, directory, validity, metrics, protected):
        self.entries = entries
        self.directory = directory
        self.validity = {_norm(p): bool(v) for p, v in (validity or {}).items()}
        self.metrics = {_norm(p): v for p, v in (metrics or {}).items()}
        self.protected = {_norm(p): str(r) for p, r in (protected or {}).items()}
        self.reasons: dict[int, list[str]] = {id(e): [] for e in entries}
        self.notes: list[str] = []
        self.candidates: list[CheckpointEntry] = []  # finished, inside the directory

    def valid(self, entry: CheckpointEntry) -> bool | None:
        return self.validity.get(_norm(entry.path))

    def mark(self, entry: CheckpointEntry, reason: str) -> None:
        self.reasons[id(entry)].append(reason)

    def guard(self) -> None:
        for entry in self.entries:
            if self.directory is None or not _inside(entry.path, self.directory):
                self.mark(entry, f"refused: outside {self.directory}")
                continue
            if entry.writing:
                self.mark(entry, "being written")
            reason = _protected_reason(entry, self.protected)
            if reason is not None:
                self.mark(entry, f"protected: {reason}")
            if not entry.writing:
                self.candidates.append(entry)

    def newest_valid(self) -> None:
        known = [e for e in self.candidates if self.valid(e) is True]
        newest_known = known[-1] if known else None
        if newest_known is not None:
            self.mark(newest_known, "newest valid")
        unchecked = [e for e in self.candidates if self.valid(e) is None]
        if unchecked and (newest_known is None or
                          order_key(unchecked[-1]) > order_key(newest_known)):
            self.mark(unchecked[-1], "newest valid (not checked)")

    def last_n(self, keep_last: int) -> None:
        for entry in self.candidates[-keep_last:]:
            invalid = " (invalid)" if self.valid(entry) is False else ""
            self.mark(entry, f"in last {keep_last}{invalid}")

    def best(self, metric: str, mode: str) -> None:
        values: dict[int, float] = {}
        seen: set[str] = set()
        for entry in self.candidates:
            entry_metrics = self.metrics.get(_norm(entry.path)) or {}
            seen.update(entry_metrics)
            value = _metric_value(entry_metrics, metric)
            if value is not None and self.valid(entry) is not False:
                values[id(entry)] = value
        if not values:
            known = f" (metrics seen: {', '.join(sorted(seen))})" if seen else ""
            self.notes.append(f"no checkpoint has metric '{metric}': none kept as best{known}")
            return
        best = _pick_best([e for e in self.candidates if id(e) in values], values, mode)
        self.mark(best, f"best {metric}={values[id(best)]:.4g}")

    def link_targets(self) -> None:
        """A kept symlink (e.g. best.pt -> step_900.pt) must not be left dangling."""
        by_real = {_norm(e.path): e for e in self.candidates if not e.symlink}
        for entry in self.entries:
            target = by_real.get(_norm(entry.path)) if entry.symlink else None
            if target is not None and self.reasons[id(entry)]:
                self.mark(target, f"target of kept link {entry.name}")

    def decisions(self, keep_last: int) -> list[Decision]:
        out = []
        for entry in self.entries:
            reasons = self.reasons[id(entry)]
            if reasons:
                out.append(Decision(entry, True, "; ".join(reasons)))
                continue
            invalid = "invalid, " if self.valid(entry) is False else ""
            out.append(Decision(entry, False, f"{invalid}older than the last {keep_last}"))
        return out


def plan_prune(entries, *, keep_last: int, keep_best: str | None = None,
               mode: str | None = None, validity: dict[str, bool] | None = None,
               metrics: dict[str, dict[str, float]] | None = None,
               protected: dict[str, str] | None = None, directory=None) -> PrunePlan:
    """Decide what to keep. Touches nothing on disk.

    validity: path -> inspected ok (missing = not checked, see the module doc); metrics:
    path -> {name: value}; protected: path -> why (e.g. "session abc123 resumed from it").
    `directory` defaults to the directory the entries were scanned from.
    """
    mode = _check_args(keep_last, keep_best, mode)
    ordered = sorted(entries, key=order_key)
    directory = _plan_directory(ordered, directory)
    planner = _Planner(ordered, directory, validity, metrics, protected)
    planner.guard()
    planner.newest_valid()
    planner.last_n(keep_last)
    if keep_best:
        planner.best(keep_best, mode)
    planner.link_targets()
    return PrunePlan(planner.decisions(keep_last), directory, keep_last, keep_best,
                     mode if keep_best else None, planner.notes)


# --------------------------------------------------------------------------- applying


def _remove(path: str) -> None:
    """Delete a file, a symlink (never what it points to) or a directory tree."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def _free_name(path: str) -> str:
    candidate, n = path, 1
    while os.path.lexists(candidate):
        candidate, n = f"{path}.{n}", n + 1
    return candidate


def _try_rename(src: str, dest: str) -> bool:
    """Rename when src and dest share a filesystem; False if they don't (EXDEV)."""
    try:
        os.rename(src, dest)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _copy_into_place(src: str, dest: str) -> None:
    """Copy `src` to a hidden temp name beside `dest`, then rename it to `dest`: the trash never
    holds a half-copied checkpoint under its real name, and a failed copy leaves nothing."""
    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}{_PARTIAL_SUFFIX}")
    if os.path.lexists(tmp):
        _remove(tmp)
    try:
        if os.path.islink(src):
            os.symlink(os.readlink(src), tmp)
        elif os.path.isdir(src):
            shutil.copytree(src, tmp, symlinks=True, copy_function=shutil.copy2)
        else:
            shutil.copy2(src, tmp)
        os.rename(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            _remove(tmp)
        raise


def _move_to_trash(entry: CheckpointEntry, directory: str, trash_dir: str) -> str:
    dest = _free_name(os.path.join(trash_dir, _relative(entry.path, directory)))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if _try_rename(entry.path, dest):
        return dest
    _copy_into_place(entry.path, dest)
    changed = changed_since_scan(entry)
    if changed:  # written to during the copy: keep the original, drop the copy
        _remove(dest)
        raise _Skip(f"{changed} (during the copy)")
    try:
        _remove(entry.path)
    except OSError as exc:
        raise _Skip(f"copied to {dest} but the original could not be deleted: {exc}") from None
    return dest


class _Skip(Exception):
    """A planned deletion not done, with the reason."""


def _check_targets(plan: PrunePlan, trash_dir: str | None, purge: bool) -> None:
    """Refuse the whole run before touching anything if the plan points outside its directory."""
    if not purge and not trash_dir:
        raise ValueError("trash_dir is required unless purge=True")
    targets = plan.delete
    if targets and plan.directory is None:
        raise ValueError("the plan has no directory: refusing to delete anything")
    for decision in targets:
        if not _inside(decision.entry.path, plan.directory):
            raise ValueError(
                f"refusing to touch {decision.entry.path}: outside {plan.directory}"
            )
    if trash_dir and plan.directory and (
        _inside(trash_dir, plan.directory) or _norm(trash_dir) == _norm(plan.directory)
    ):
        raise ValueError(f"the trash folder {trash_dir} must be outside {plan.directory}")


def apply_prune(plan: PrunePlan, *, trash_dir: str | None,
                purge: bool = False) -> PruneResult:
    """Remove the plan's `delete` entries: move each to `trash_dir` (keeping its path relative
    to the scanned directory), or delete it with `purge=True`. Returns the removed paths; each
    entry is re-checked just before acting and skipped (see PruneResult.skipped) if it is gone,
    changed since the scan, or now being written. Raises ValueError before acting on anything
    if the plan points outside its directory."""
    _check_targets(plan, trash_dir, purge)
    result = PruneResult()
    for decision in plan.delete:
        entry = decision.entry
        reason = "being written" if entry.writing else changed_since_scan(entry)
        if reason:
            result.skipped.append((entry.path, reason))
            continue
        try:
            if purge:
                _remove(entry.path)
            else:
                result.moved_to[entry.path] = _move_to_trash(entry, plan.directory, trash_dir)
        except _Skip as exc:
            result.skipped.append((entry.path, str(exc)))
            continue
        except OSError as exc:
            action = "delete" if purge else "move to the trash"
            result.skipped.append((entry.path, f"could not {action}: {exc}"))
            continue
        result.append(entry.path)
    return result


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
