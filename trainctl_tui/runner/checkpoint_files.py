"""Which files and folders in a checkpoint dir are checkpoints, which are finished, and
their order (by the step in the name, then mtime). Names and stat only: nothing is opened
but the end of a zip and the head of an HDF5 file.
"""

from __future__ import annotations

import os
import re
import time

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".keras", ".h5", ".hdf5")
UNFINISHED_SUFFIXES = (".tmp", ".partial", ".part", ".incomplete")
# HF Trainer checkpoint-N, Accelerate save_state checkpoint_N, step_N, torchtune epoch_N,
# DeepSpeed global_stepN, Lightning-style ...-step=N...
CHECKPOINT_DIR_RE = re.compile(
    r"^(checkpoint-\d+|checkpoint_\d+|step_\d+|epoch_\d+|global_step\d+|.*-step=\d+.*)$")
STEP_KEYWORD_RES = [
    re.compile(rf"{kw}[_\-=]?(\d+)", re.IGNORECASE)
    for kw in ("step", "iter", "checkpoint", "ckpt", "epoch")
]
LAST_NUMBER_RE = re.compile(r"(\d+)(?!.*\d)")
# Endings that are not part of the step ("x.weights.h5" would otherwise be step 5).
NAME_SUFFIX_RE = re.compile(r"(\.weights)?\.(pt|pth|ckpt|bin|safetensors|keras|h5|hdf5)$",
                            re.IGNORECASE)
# A metric value in a name (Keras' "model.{epoch:02d}-{val_loss:.2f}.keras"): never the step.
DECIMAL_RE = re.compile(r"\d+\.\d+(e[-+]?\d+)?", re.IGNORECASE)
STILL_WRITING_SECONDS = 2.0
NAME_TEMP_RE = re.compile(r"(\.tmp|\.partial|\.part|\.incomplete)$", re.IGNORECASE)
ZIP_CONTAINER_SUFFIXES = (".keras",)
HDF5_CONTAINER_SUFFIXES = (".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ACCELERATE_DIR_RE = re.compile(r"^checkpoint_\d+$")
ACCELERATE_LAST_FILE_RE = re.compile(r"^random_states_\d+\.pkl$")
SHARD_RE = re.compile(r"^(.+)-(\d+)-of-(\d+)(\.[^/]+)$")


def checkpoint_step(name: str) -> int | None:
    """Step number parsed from a checkpoint name: after step/iter/checkpoint/ckpt/epoch (in that
    order of preference, so 'epoch=2-step=900' is 900), else the last whole number that is not
    part of a decimal (so 'model.03-0.41.keras' is 3), else None."""
    base = NAME_SUFFIX_RE.sub("", name)
    for pattern in STEP_KEYWORD_RES:
        match = pattern.search(base)
        if match:
            return int(match.group(1))
    match = LAST_NUMBER_RE.search(DECIMAL_RE.sub(" ", base))
    return int(match.group(1)) if match else None


def unfinished_file_reason(path: str) -> str | None:
    """Why a .keras (zip) or .h5 (HDF5) file is not a finished checkpoint yet, else None.
    Both are written in place, so a name and a stable size are not enough: a zip gets its
    end record last, and HDF5 marks a file open for writing until it is closed."""
    lower = path.lower()
    try:
        if lower.endswith(ZIP_CONTAINER_SUFFIXES):
            return _zip_unfinished(path)
        if lower.endswith(HDF5_CONTAINER_SUFFIXES):
            return _hdf5_unfinished(path)
    except OSError:
        return None  # unreadable: the inspector reports it
    return None


def _zip_unfinished(path: str) -> str | None:
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        tail_start = max(0, size - 65557)  # end record (22) + the longest comment
        fh.seek(tail_start)
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        while at >= 0 and at + 22 + int.from_bytes(tail[at + 20:at + 22], "little") != len(tail):
            at = tail.rfind(b"PK\x05\x06", 0, at)  # those 4 bytes inside data, not the record
        if at < 0:
            return "zip not finished: no end-of-central-directory record"
        cd_size = int.from_bytes(tail[at + 12:at + 16], "little")
        cd_offset = int.from_bytes(tail[at + 16:at + 20], "little")
        if cd_offset == 0xFFFFFFFF:
            return None  # zip64: its record is elsewhere; the inspector checks it
        fh.seek(cd_offset)
        if cd_offset + cd_size > tail_start + at or (cd_size and fh.read(4) != b"PK\x01\x02"):
            return "zip central directory damaged"
    return None


def _hdf5_unfinished(path: str) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(64)
        size = fh.seek(0, os.SEEK_END)
    if head[:8] != HDF5_SIGNATURE or len(head) < 48:
        return None  # not HDF5 (or too short to say): the inspector reports it
    version = head[8]
    if version in (0, 1):
        width = head[13]
        flags = int.from_bytes(head[20:24], "little")
        at = 24 + (4 if version == 1 else 0)
    elif version in (2, 3):
        width, flags, at = head[9], head[11], 12
    else:
        return None
    if width not in (2, 4, 8) or at + 3 * width > len(head):
        return None
    base = int.from_bytes(head[at:at + width], "little")
    eof = int.from_bytes(head[at + 2 * width:at + 3 * width], "little")
    if flags & 0x05:  # write access / SWMR write: set while the file is open for writing
        return "HDF5 file still open for writing (or its writer died before closing it)"
    if size < base + eof:
        return f"HDF5 file shorter than its superblock says ({size:,} of {base + eof:,} bytes)"
    return None


def unfinished_dir_reason(path: str, name: str) -> str | None:
    """Why a checkpoint directory is not finished yet (judged by names only), else None:
    Hugging Face writes trainer_state.json last, Accelerate random_states_N.pkl, and sharded
    weights (model-00001-of-00003.safetensors ...) must all be there."""
    try:
        names = os.listdir(path)
    except OSError:
        return None
    if name.startswith("checkpoint-") and "trainer_state.json" not in names:
        return "no trainer_state.json yet"
    if ACCELERATE_DIR_RE.match(name) and not any(ACCELERATE_LAST_FILE_RE.match(n)
                                                 for n in names):
        return "no random_states_*.pkl yet (Accelerate writes it last)"
    return _missing_shard(names)


def _missing_shard(names) -> str | None:
    shards = {}
    for name in names:
        match = SHARD_RE.match(name)
        if match:
            prefix, index, total, suffix = match.groups()
            shards.setdefault((prefix, total, suffix), set()).add(int(index))
    for (prefix, total, suffix), found in sorted(shards.items()):
        for index in range(1, int(total) + 1):
            if index not in found:
                return f"shard {prefix}-{index:0{len(total)}d}-of-{total}{suffix} missing"
    return None


def _dir_files_stat(path: str) -> tuple[int, float] | None:
    """(total size, newest mtime) of the files under a directory; None if it holds no file."""
    total, newest, found = 0, 0.0, False
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            found = True
            total += st.st_size
            newest = max(newest, st.st_mtime)
    return (total, newest) if found else None


def _candidate_stat(path: str, is_dir: bool) -> tuple[int, float] | None:
    if is_dir:
        return _dir_files_stat(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime


def _is_candidate(entry: os.DirEntry) -> bool | None:
    """True: a checkpoint file, False: a checkpoint directory, None: not a checkpoint."""
    name = entry.name
    if name.startswith((".", "tmp")) or name.lower().endswith(UNFINISHED_SUFFIXES):
        return None
    try:
        if entry.is_file():
            return True if name.lower().endswith(CHECKPOINT_SUFFIXES) else None
        if not entry.is_dir() or not CHECKPOINT_DIR_RE.match(name):
            return None
    except OSError:
        return None
    if unfinished_dir_reason(entry.path, name):
        return None
    return False


def _temp_named_checkpoint(entry: os.DirEntry) -> bool:
    """step_900.pt.tmp and the like: a checkpoint being saved under a temporary name."""
    lower = entry.name.lower()
    base = next((lower[:-len(s)] for s in UNFINISHED_SUFFIXES if lower.endswith(s)), None)
    return base is not None and not lower.startswith(".") and (
        base.endswith(CHECKPOINT_SUFFIXES) or bool(CHECKPOINT_DIR_RE.match(base)))


def _unfinished_reason(entry: os.DirEntry) -> str | None:
    if _temp_named_checkpoint(entry):
        return "still being written (temporary name)"
    try:
        if entry.is_dir() and CHECKPOINT_DIR_RE.match(entry.name):
            reason = unfinished_dir_reason(entry.path, entry.name)
        elif entry.is_file() and entry.name.lower().endswith(CHECKPOINT_SUFFIXES):
            reason = unfinished_file_reason(entry.path)
        else:
            return None
    except OSError:
        return None
    return f"still being written ({reason})" if reason else None


def checkpoint_candidates(directory: str | None) -> list:
    """(order key, absolute path, is_dir, (size, mtime), unfinished reason or None) of the
    checkpoint-like entries of `directory`, newest first (see list_checkpoints)."""
    if not directory or not os.path.isdir(directory):
        return []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    root = os.path.realpath(directory)
    candidates = []
    for entry in entries:
        if _leaves_folder(entry, root):
            continue  # never followed: it could point at / (and a walk of everything)
        kind = _is_candidate(entry)
        unfinished = None
        if kind is not False:  # a file, or not (yet) a checkpoint by its name
            unfinished = _unfinished_reason(entry)
            if kind is None and unfinished is None:
                continue
        is_dir = kind is False or (kind is None and _is_real_dir(entry))
        stat = _candidate_stat(entry.path, is_dir)
        if stat is None:
            continue
        step = checkpoint_step(NAME_TEMP_RE.sub("", entry.name))
        key = (step is not None, step or 0, stat[1])
        candidates.append((key, os.path.abspath(entry.path), is_dir, stat, unfinished))
    candidates.sort(key=lambda c: c[0], reverse=True)
    return candidates


def _leaves_folder(entry: os.DirEntry, root: str) -> bool:
    """A symlink to a directory outside `root` (`x.pt -> /`, `up -> ..`), or one that
    resolves nowhere (a loop). Symlinked files are followed wherever they are."""
    try:
        if not entry.is_symlink():
            return False
        target = os.path.realpath(entry.path)
        if not os.path.exists(target):
            return True
    except (OSError, ValueError):
        return True
    return os.path.isdir(target) and not target.startswith(root.rstrip(os.sep) + os.sep)


def _is_real_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def list_checkpoints(directory: str | None) -> list[tuple[str, bool, tuple[int, float]]]:
    """Complete-looking checkpoints in `directory` (not recursive), newest first, as
    (absolute path, is_dir, (size, mtime)).

    Ordered by the step (or epoch) number in the name, ties and unnumbered ones by mtime
    (numbered ones win over unnumbered ones). Unfinished ones are skipped: temp names
    (.tmp/.partial/..., hidden, tmp*), zips and HDF5 files not closed yet, and directories
    without their last file (see unfinished_dir_reason).
    """
    return [(path, is_dir, stat) for _key, path, is_dir, stat, unfinished
            in checkpoint_candidates(directory) if unfinished is None]


def still_growing(path: str, is_dir: bool, stat: tuple[int, float]) -> bool:
    """True if a recently modified checkpoint changes size within a short look."""
    if time.time() - stat[1] >= STILL_WRITING_SECONDS:
        return False
    time.sleep(0.2)
    again = _candidate_stat(path, is_dir)
    return again is None or again[0] != stat[0]


def find_newest_checkpoint(directory: str | None) -> str | None:
    """Absolute path of the newest complete checkpoint in `directory` (not recursive), or None.

    See list_checkpoints for the order; a top candidate that is still growing is passed over
    for the previous one.
    """
    candidates = list_checkpoints(directory)
    if not candidates:
        return None
    path, is_dir, stat = candidates[0]
    if still_growing(path, is_dir, stat):
        return candidates[1][0] if len(candidates) > 1 else None
    return path


def finished_checkpoints(directory: str | None) -> list[str]:
    """Every checkpoint in `directory` that is complete and no longer growing, newest first."""
    return [
        path
        for path, is_dir, stat in list_checkpoints(directory)
        if not still_growing(path, is_dir, stat)
    ]
