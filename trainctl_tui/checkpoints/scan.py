"""Find the checkpoints in a directory from names and stat(), plus a few bytes of a few files.

A checkpoint is a single file (``*.pt``, ``*.pth``, ``*.ckpt``, ``*.bin``, ``*.safetensors``,
Keras ``*.keras`` and ``*.weights.h5``/``*.h5``) or a checkpoint directory: Hugging Face
``checkpoint-500/``, Accelerate ``checkpoint_3/``, torchtune ``epoch_2/``, ``step_1000/``,
Lightning-style ``epoch=3-step=1200*`` and DeepSpeed ``global_step500/``. File contents read:
``global_step`` from a Hugging Face ``trainer_state.json``, the end record of a ``.keras`` zip
and the superblock of an HDF5 file (both are written in place, so only their bytes tell a
finished file from one still being written).

Ordering and the "still being written" rules follow the runner's ``find_newest_checkpoint`` (the
same name patterns, suffixes, step parser and unfinished-file/-directory checks are imported
from it), so what the TUI offers for resume is what the runner would pick. DeepSpeed
``global_stepN/`` dirs with files newer than ``latest`` are the one addition.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass

from ..core.errors import TrainctlError
from ..runner.checkpoint_files import (
    CHECKPOINT_DIR_RE,
    CHECKPOINT_SUFFIXES,
    UNFINISHED_SUFFIXES,
    checkpoint_step,
    unfinished_dir_reason,
    unfinished_file_reason,
)

__all__ = [
    "CheckpointDirError",
    "CheckpointEntry",
    "ScanResult",
    "changed_since_scan",
    "entry_stat",
    "newest_finished",
    "order_key",
    "scan_checkpoints",
]

DEEPSPEED_DIR_RE = re.compile(r"^global_step\d+$")
DEEPSPEED_LATEST = "latest"
HF_STATE_FILE = "trainer_state.json"
# tempfile.mkstemp()-style names ("tmpk3j_x9ab", ".tmpk3j_x9ab"): an atomic save in progress.
MKSTEMP_RE = re.compile(r"^\.?tmp[A-Za-z0-9_]{4,}$")
GLOBAL_STEP_RE = re.compile(rb'"global_step"\s*:\s*(\d+)')
# HF writes trainer_state.json with sorted keys, so global_step sits before the long log_history.
STATE_HEAD_BYTES = 64 * 1024
STATE_READ_LIMIT = 16 * 1024 * 1024  # a trainer_state.json is never read whole past this
# Pause before the second look at recently modified entries (the runner waits the same 0.2 s).
RECHECK_SECONDS = 0.2


class CheckpointDirError(TrainctlError):
    """The directory to scan is missing, not a directory, or unreadable."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


@dataclass
class CheckpointEntry:
    path: str  # absolute, symlinks in the last component not resolved
    name: str
    kind: str  # "file" | "dir"
    step: int | None
    mtime: float  # for a dir: newest mtime of the files inside
    size: int  # for a dir: total size of the files inside
    writing: bool  # still being written: never offered for resume or deletion
    note: str | None = None
    root: str = ""  # the directory that was scanned (retention refuses paths outside it)
    symlink: bool = False


class ScanResult(list):
    """The entries, oldest -> newest, plus what could not be looked at.

    `skipped` holds (path, reason) for entries skipped because of an error (permission denied,
    broken symlink, ...), so a UI can say "2 entries skipped" instead of hiding them.
    """

    def __init__(self, directory: str, entries=(), skipped=None):
        super().__init__(entries)
        self.directory = directory
        self.skipped: list[tuple[str, str]] = list(skipped or [])


def order_key(entry: CheckpointEntry) -> tuple:
    """Sort key, oldest first. Same as the runner: numbered ones after unnumbered ones, then by
    step, ties by mtime (the name only makes the order deterministic)."""
    return (entry.step is not None, entry.step or 0, entry.mtime, entry.name)


def newest_finished(entries) -> CheckpointEntry | None:
    """The newest entry that is not being written, or None."""
    for entry in sorted(entries, key=order_key, reverse=True):
        if not entry.writing:
            return entry
    return None


# --------------------------------------------------------------------------- names


def looks_like_checkpoint(name: str, is_dir: bool) -> bool:
    if is_dir:
        return bool(CHECKPOINT_DIR_RE.match(name) or DEEPSPEED_DIR_RE.match(name))
    return name.lower().endswith(CHECKPOINT_SUFFIXES)


def _strip_temp(name: str) -> str | None:
    """The name without its temp markers if it has any (`x.pt.tmp` -> `x.pt`,
    `tmp-checkpoint-5` -> `checkpoint-5`), else None."""
    base = name
    while base.lower().endswith(UNFINISHED_SUFFIXES):
        base = base[: base.rfind(".")]
    if base.startswith((".tmp", "tmp")):
        base = base[4:] if base.startswith(".tmp") else base[3:]
        base = base.lstrip("-_.")
    return None if base == name else base


def temp_checkpoint(name: str, is_dir: bool) -> str | None:
    """For a temp-named checkpoint, the name it will have when finished ("" if unknown);
    None if `name` is not a checkpoint being written."""
    base = _strip_temp(name)
    if base is None:
        return None
    if base and looks_like_checkpoint(base, is_dir):
        return base
    if not is_dir and MKSTEMP_RE.match(name):
        return ""
    return None


# --------------------------------------------------------------------------- stat


def _dir_stat(path: str) -> tuple[int, float, int]:
    """(total size, newest mtime, file count) of the files under `path`; raises OSError.

    Symlinked subdirectories are not descended (os.walk's default), so nothing outside the
    checkpoint is counted twice or looped over.
    """
    total, newest, count = 0, 0.0, 0

    def fail(exc: OSError) -> None:
        raise exc

    for folder, _dirs, files in os.walk(path, onerror=fail):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            total += st.st_size
            newest = max(newest, st.st_mtime)
            count += 1
    if count == 0:
        newest = os.stat(path).st_mtime
    return total, newest, count


def entry_stat(path: str, kind: str) -> tuple[int, float]:
    """(size, mtime) the way the scan measures it; raises OSError."""
    if kind == "dir":
        size, mtime, _count = _dir_stat(path)
        return size, mtime
    st = os.stat(path)
    return st.st_size, st.st_mtime


def _hf_global_step(path: str) -> int | None:
    """global_step from a HF checkpoint dir's trainer_state.json; None if absent or unparsable.
    Raises OSError if the file cannot be read (e.g. permission denied)."""
    state = os.path.join(path, HF_STATE_FILE)
    with open(state, "rb") as fh:
        head = fh.read(STATE_HEAD_BYTES)
        match = GLOBAL_STEP_RE.search(head)
        if match:
            return int(match.group(1))
        if os.fstat(fh.fileno()).st_size > STATE_READ_LIMIT:
            return None  # the name's step will do
        fh.seek(0)
        try:
            data = json.load(fh)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            return None
    step = data.get("global_step") if isinstance(data, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


# --------------------------------------------------------------------------- scan


def _open_root(directory) -> str:
    root = os.path.abspath(os.fspath(directory))
    if not os.path.exists(root):
        raise CheckpointDirError(
            f"checkpoint directory {root} does not exist (check the path or the session's "
            "checkpoint_dir)",
            root,
        )
    if not os.path.isdir(root):
        raise CheckpointDirError(f"{root} is not a directory (give the folder that holds "
                                 "the checkpoints)", root)
    return root


def _list_dir(path: str, root: str, result: ScanResult) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as exc:
        if path == root:
            raise CheckpointDirError(
                f"cannot read checkpoint directory {root}: {exc.strerror or exc}", root
            ) from None
        result.skipped.append((path, exc.strerror or str(exc)))
        return []


def _outside(path: str, root: str) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or os.path.commonpath([real, top]) != top  # `x -> .` is no checkpoint


def _symlink_note(entry: os.DirEntry, root: str) -> str:
    target = os.readlink(entry.path)
    return f"symlink -> {target}" + (" (outside the directory)" if _outside(entry.path, root)
                                     else "")


def _build_entry(de: os.DirEntry, root: str) -> CheckpointEntry | None:
    """An entry for `de` if it is a checkpoint (finished or not); None if it is not one.
    Raises OSError when it cannot be looked at."""
    name = de.name
    is_link = de.is_symlink()
    if is_link and not os.path.exists(de.path):
        if looks_like_checkpoint(name, False) or looks_like_checkpoint(name, True):
            raise OSError(f"broken symlink -> {os.readlink(de.path)}")
        return None
    is_dir = de.is_dir()
    if not is_dir and not de.is_file():
        return None  # sockets, fifos, devices
    notes: list[str] = []
    writing = False
    final_name = temp_checkpoint(name, is_dir)
    if final_name is not None:
        writing = True
        notes.append("temporary name")
        step = checkpoint_step(final_name) if final_name else None
    elif name.startswith(".") or not looks_like_checkpoint(name, is_dir):
        return None
    else:
        step = checkpoint_step(name)
    if is_link and is_dir and _outside(de.path, root):  # e.g. `x.pt -> /`: never walked
        raise OSError(f"{_symlink_note(de, root)}: a folder outside the checkpoint dir, "
                      "not followed")
    kind = "dir" if is_dir else "file"
    if is_dir:
        size, mtime, count = _dir_stat(de.path)
        if count == 0 and not writing:
            writing = True
            notes.append("empty directory")
    else:
        st = de.stat()
        size, mtime = st.st_size, st.st_mtime
    if is_dir and final_name is None and name.startswith("checkpoint-") and os.path.isfile(
            os.path.join(de.path, HF_STATE_FILE)):
        hf_step = _hf_global_step(de.path)
        step = hf_step if hf_step is not None else step
    if final_name is None and not writing:
        unfinished = (unfinished_dir_reason(de.path, name) if is_dir
                      else unfinished_file_reason(de.path))
        if unfinished:
            writing = True
            notes.append(unfinished)
    if is_link:
        notes.append(_symlink_note(de, root))
    return CheckpointEntry(
        path=de.path, name=name, kind=kind, step=step, mtime=mtime, size=size,
        writing=writing, note="; ".join(notes) or None, root=root, symlink=is_link,
    )


def _scan_folder(folder: str, root: str, recursive: bool, result: ScanResult) -> None:
    for de in sorted(_list_dir(folder, root, result), key=lambda d: d.name):
        try:
            entry = _build_entry(de, root)
        except OSError as exc:
            result.skipped.append((de.path, exc.strerror or str(exc)))
            continue
        if entry is not None:
            result.append(entry)
        elif recursive and _plain_subdir(de):
            _scan_folder(de.path, root, recursive, result)


def _plain_subdir(de: os.DirEntry) -> bool:
    """A real (not symlinked, not hidden) subdirectory: never leave the tree, never loop."""
    try:
        return de.is_dir(follow_symlinks=False) and not de.name.startswith(".")
    except OSError:
        return False


def _mark_deepspeed_in_progress(entries: list[CheckpointEntry]) -> None:
    """DeepSpeed writes `latest` after the newest global_stepN/ is complete, so the newest such
    dir with files newer than `latest` is still being saved (judged by mtime: no reading)."""
    by_folder: dict[str, CheckpointEntry] = {}
    for entry in entries:
        if entry.kind == "dir" and not entry.writing and DEEPSPEED_DIR_RE.match(entry.name):
            folder = os.path.dirname(entry.path)
            best = by_folder.get(folder)
            if best is None or order_key(entry) > order_key(best):
                by_folder[folder] = entry
    for folder, entry in by_folder.items():
        try:
            latest_mtime = os.stat(os.path.join(folder, DEEPSPEED_LATEST)).st_mtime
        except OSError:
            continue  # no `latest` (save_latest=False): only the size check applies
        if entry.mtime > latest_mtime:
            entry.writing = True
            entry.note = _join_note(entry.note, f"newer than '{DEEPSPEED_LATEST}'")


def _join_note(note: str | None, more: str) -> str:
    return f"{note}; {more}" if note else more


def _second_look(entries: list[CheckpointEntry], settle_seconds: float,
                 result: ScanResult) -> list[CheckpointEntry]:
    """Look again at entries modified in the last `settle_seconds`: a size or mtime change
    means a writer is still at work. Entries that vanished meanwhile are dropped."""
    now = time.time()
    recent = [e for e in entries if not e.writing and now - e.mtime < settle_seconds]
    if not recent:
        return entries
    time.sleep(min(RECHECK_SECONDS, settle_seconds))
    gone: set[int] = set()
    for entry in recent:
        try:
            size, mtime = entry_stat(entry.path, entry.kind)
        except FileNotFoundError:
            gone.add(id(entry))  # renamed away (e.g. finalized under another name)
            continue
        except OSError as exc:
            result.skipped.append((entry.path, exc.strerror or str(exc)))
            gone.add(id(entry))
            continue
        if (size, mtime) != (entry.size, entry.mtime):
            entry.size, entry.mtime, entry.writing = size, mtime, True
            entry.note = _join_note(entry.note, "still growing")
    return [e for e in entries if id(e) not in gone]


def scan_checkpoints(directory, *, settle_seconds: float = 2.0,
                     recursive: bool = False) -> ScanResult:
    """Checkpoints in `directory`, oldest -> newest (a ScanResult, i.e. a list with `.skipped`).

    Only the directory's own entries are looked at unless `recursive` (then plain subfolders such
    as `run1/` are searched too; checkpoint dirs are never entered, symlinked dirs never
    followed). Raises CheckpointDirError if `directory` is missing or unreadable.
    """
    root = _open_root(directory)
    result = ScanResult(root)
    _scan_folder(root, root, recursive, result)
    _mark_deepspeed_in_progress(result)
    if settle_seconds > 0:
        result[:] = _second_look(list(result), settle_seconds, result)
    result.sort(key=order_key)
    return result


def changed_since_scan(entry: CheckpointEntry) -> str | None:
    """Why `entry` may no longer be acted on (gone, changed, now being written), else None."""
    if not os.path.lexists(entry.path):
        return "no longer exists"
    if entry.symlink != os.path.islink(entry.path):
        return "replaced since the scan"
    if entry.symlink and not os.path.exists(entry.path):
        return None  # its target is gone (maybe pruned too): removing the link loses nothing
    if entry.kind == "dir" and not os.path.isdir(entry.path):
        return "no longer a directory"
    try:
        size, mtime = entry_stat(entry.path, entry.kind)
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    if size != entry.size:
        return "size changed since the scan"
    if mtime != entry.mtime:
        return "modified since the scan"
    unfinished = (unfinished_dir_reason(entry.path, entry.name) if entry.kind == "dir"
                  else unfinished_file_reason(entry.path))
    if unfinished:
        return f"now being written ({unfinished})"
    return None
