"""trainctl runner: supervises one training command for one session folder.

Self-contained and stdlib only: this file is copied alone to SSH hosts, pods and EC2 instances
and run there as ``python3 supervisor.py [--detach] SESSION_DIR``. Never import trainctl_tui here.

The session folder holds ``spec.json`` (what to run), optional ``secret_env.json`` (env vars that
are never logged), ``status.json`` (written atomically by this runner at every state change and
heartbeat), ``train.log`` (the training's own stdout/stderr, appended directly by the child) and
``runner.log`` (this runner's stderr when detached).

On cloud instances (all optional spec keys; absent = none of this happens):
``spot_notice_url`` polls IMDSv2 for a spot interruption notice (SIGTERM the training, sync its
checkpoint, end ``interrupted``); ``s3_checkpoint_uri`` uploads each finished checkpoint once with
the aws CLI and a ``.trainctl-complete`` marker; an ``s3://`` ``resume_from`` is downloaded
first; ``autostop_minutes`` runs ``autostop_command`` once the machine has been idle that long.

Signals: SIGTERM/SIGINT = graceful stop (SIGTERM to the training's process group, SIGKILL after
``grace_seconds``), a second one or SIGUSR1 = force stop (SIGKILL now), SIGHUP is ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import select
import shlex
import signal
import sys
import time


class _OnFirstUse:
    """A stdlib module imported when first used. trainctl's CLI imports this file to read
    status files and check pids, and must not pay for what only the runner uses."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        module = importlib.import_module(self._name)
        globals()[self._name] = module  # later uses go straight to the module
        return getattr(module, attribute)


subprocess = _OnFirstUse("subprocess")
threading = _OnFirstUse("threading")

STATUS_VERSION = 1
LOG_PREFIX = "[trainctl] "
READY_TIMEOUT_SECONDS = 10.0

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
    # Cloud features: all off unless set (see load_cloud_spec).
    "spot_notice_url": None,
    "spot_poll_seconds": 5.0,
    "spot_safety_seconds": 20.0,
    "s3_checkpoint_uri": None,
    "s3_sync_seconds": 10.0,
    "aws_cli": "aws",
    "autostop_minutes": None,
    "autostop_command": None,
}

# Exit codes a shell uses for "cannot execute" / "not found": retrying them is pointless.
NO_RETRY_EXIT_CODES = (126, 127)
NEWEST = "newest"  # spec resume_from: the newest checkpoint in checkpoint_dir at start
LEFTOVER_WAIT_SECONDS = 2.0  # for SIGKILLed leftovers to disappear before calling them survivors


class SpecError(Exception):
    """spec.json is missing or invalid; the message names the problem."""


# --------------------------------------------------------------------------- files


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


# --------------------------------------------------------------------------- processes


def _linux_proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, starttime) from /proc/PID/stat, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # field 3 (state) and field 22 (starttime)


def _ps_field(pid: int, field: str) -> str:
    try:
        return subprocess.run(
            ["ps", "-o", f"{field}=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _ps_stat(pid: int) -> tuple[str, str] | None:
    """(state, lstart) from ps on systems without /proc; lstart exactly as ps prints it."""
    state = _ps_field(pid, "stat")
    lstart = _ps_field(pid, "lstart") if state else ""
    return (state, lstart) if lstart else None


def _proc_state_and_start(pid: int) -> tuple[str, str] | None:
    if pid is None or pid <= 0:
        return None
    if os.path.isdir("/proc/self"):
        return _linux_proc_stat(pid)
    return _ps_stat(pid)


def process_start_token(pid: int) -> str | None:
    """A token that identifies this process instance (its start time), None if no such process.

    A pid plus its token guards against pid reuse: a new process with the same pid has another
    start time. Zombies have no token: they are dead, only not reaped yet.
    """
    info = _proc_state_and_start(pid)
    if info is None or info[0].startswith("Z"):
        return None
    return info[1]


def pid_alive(pid: int | None, token: str | None) -> bool:
    """True if process `pid` exists, is not a zombie, and (if `token` is given) is the same
    process instance that `token` was taken from."""
    if not pid:
        return False
    current = process_start_token(pid)
    if current is None:
        return False
    return token is None or current == token


SESSION_ENV = "TRAINCTL_SESSION_ID"  # marks every process a session's training starts


def _proc_read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []  # no /proc (macOS): only the process group can be found


def marked_pids(session_id: str) -> list[int]:
    """Live processes whose environment carries this session's mark: the training and all
    it started, including those that left its process group (setsid, double fork) but not
    those that cleared their environment. Zombies have an empty environ and are left out."""
    mark = f"{SESSION_ENV}={session_id}".encode()
    own = os.getpid()
    return [pid for pid in _all_pids()
            if pid != own and mark in _proc_read(pid, "environ").split(b"\0")]


def runner_pids(session_dir: str) -> list[int]:
    """Live runners of this session folder (found by their command line: the runner itself
    does not carry the mark)."""
    folder = os.path.abspath(session_dir).encode()
    found = []
    for pid in _all_pids():
        args = _proc_read(pid, "cmdline").split(b"\0")
        if pid != os.getpid() and folder in args and any(
                arg.endswith(b"supervisor.py") for arg in args):
            found.append(pid)
    return found


def process_state(pid: int) -> str | None:
    """'R', 'S', 'T' (stopped, e.g. by SIGSTOP), 'D' ...; None if it is gone or a zombie."""
    info = _proc_state_and_start(pid)
    if info is None or info[0].startswith("Z"):
        return None
    return info[0][:1]


def describe_pid(pid: int) -> str:
    """'1234 (python train.py)' for messages about processes still alive."""
    words = [w.decode("utf-8", "replace") for w in _proc_read(pid, "cmdline").split(b"\0")]
    words = [os.path.basename(w) if i < 2 else w for i, w in enumerate(words) if w]
    command = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    command = command if len(command) <= 50 else command[:49] + "..."
    frozen = " stopped by a signal" if process_state(pid) == "T" else ""
    return f"{pid} ({command}){frozen}" if command else f"{pid}{frozen}"


def signal_training(pgid: int | None, session_id: str, signum: int) -> None:
    """`signum` to the training's process group and to every process it started that left
    the group (setsid, double fork, setpgid) but still carries the session's mark."""
    if pgid:
        try:
            os.killpg(pgid, signum)
        except OSError:
            pass
    signal_escaped(pgid, session_id, signum)


def signal_escaped(pgid: int | None, session_id: str, signum: int) -> None:
    """`signum` to the session's marked processes outside process group `pgid`: those in it
    got the group's signal, and a second SIGTERM can kill a training that is saving."""
    for pid in marked_pids(session_id):
        try:
            if pgid is None or os.getpgid(pid) != pgid:
                os.kill(pid, signum)
        except OSError:
            pass


def _quote_command(command: list[str]) -> str:
    # shlex.join needs Python 3.8; some hosts (Amazon Linux 2) still ship 3.7.
    return " ".join(shlex.quote(tok) for tok in command)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --------------------------------------------------------------------------- checkpoints

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


def _candidates(directory: str | None) -> list:
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
            in _candidates(directory) if unfinished is None]


def _still_growing(path: str, is_dir: bool, stat: tuple[int, float]) -> bool:
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
    if _still_growing(path, is_dir, stat):
        return candidates[1][0] if len(candidates) > 1 else None
    return path


# ---- choosing the checkpoint to resume from
# One rule everywhere (restarts here, `trainctl resume`, auto-resume, the pickers): the newest
# *sound* checkpoint. Soundness is the inspector's verdict (checkpoints/inspect.py, shipped
# beside this file as ckpt_inspect.py): it reads metadata and never runs anything from the file.

INSPECTOR_PATHS = ("ckpt_inspect.py", os.path.join("..", "checkpoints", "inspect.py"))
SKIPPED_RECORDED = 20  # at most this many passed-over checkpoints in an attempt's record
_inspector = None  # the module, or why it cannot be loaded


def load_inspector():
    """The checkpoint inspector module, or a string saying why there is none."""
    global _inspector
    if _inspector is None:
        _inspector = _import_inspector()
    return _inspector


def _import_inspector():
    here = os.path.dirname(os.path.abspath(__file__))
    for relative in INSPECTOR_PATHS:
        path = os.path.normpath(os.path.join(here, relative))
        if not os.path.isfile(path):
            continue
        try:
            spec = importlib.util.spec_from_file_location("ckpt_inspect", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["ckpt_inspect"] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            return module
        except Exception as exc:  # e.g. a Python too old for it: no checkpoint is trusted
            sys.modules.pop("ckpt_inspect", None)
            return f"the checkpoint inspector cannot be loaded ({type(exc).__name__}: {exc})"
    return "the checkpoint inspector (ckpt_inspect.py) is not beside the runner"


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
    for _key, path, is_dir, stat, unfinished in _candidates(directory):
        reason = unfinished
        if reason is None and _still_growing(path, is_dir, stat):
            reason = "still being written (its size is changing)"
        if reason is None:
            reason = checkpoint_problem(path, trusted_globals)
        if reason is None:
            return path, skipped[:SKIPPED_RECORDED]
        skipped.append({"path": path, "reason": reason})
    return None, skipped[:SKIPPED_RECORDED]


def finished_checkpoints(directory: str | None) -> list[str]:
    """Every checkpoint in `directory` that is complete and no longer growing, newest first."""
    return [
        path
        for path, is_dir, stat in list_checkpoints(directory)
        if not _still_growing(path, is_dir, stat)
    ]


# --------------------------------------------------------------------------- AWS: S3 via the CLI

# The aws CLI (not boto3): it is on every Deep Learning AMI and keeps this file stdlib only.
S3_MARKER_SUFFIX = ".trainctl-complete"
S3_TRANSFER_TIMEOUT_SECONDS = 3600.0
SYNC_BACKOFF_MAX_SECONDS = 300.0


def is_s3_uri(value) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


def s3_join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def s3_marker_uri(base: str, name: str, is_dir: bool) -> str:
    """Written after a checkpoint's data, so readers can tell complete uploads from partial."""
    if is_dir:
        return s3_join(s3_join(base, name), S3_MARKER_SUFFIX)
    return s3_join(base, name + S3_MARKER_SUFFIX)


def _one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_aws(aws_cli: list[str], args: list[str], env: dict | None = None,
            timeout: float = S3_TRANSFER_TIMEOUT_SECONDS, stdin_data: bytes | None = None):
    """Run one aws CLI command; returns None on success, else a one-line error."""
    command = list(aws_cli) + list(args)
    try:
        result = subprocess.run(
            command,
            input=stdin_data,
            stdin=None if stdin_data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=max(1.0, timeout),
        )
    except FileNotFoundError:
        return f"aws CLI not found: {aws_cli[0]} (install awscli on this machine)"
    except subprocess.TimeoutExpired:
        return f"aws {args[0]} {args[1] if len(args) > 1 else ''} timed out after {timeout:g}s"
    except OSError as exc:
        return f"cannot run {aws_cli[0]}: {exc.strerror or exc}"
    if result.returncode == 0:
        return None
    detail = _one_line(result.stderr.decode("utf-8", "replace")) or _one_line(
        result.stdout.decode("utf-8", "replace"))
    return detail or f"aws exited with code {result.returncode}"


def upload_checkpoint(aws_cli: list[str], path: str, base_uri: str, env: dict | None = None,
                      timeout: float = S3_TRANSFER_TIMEOUT_SECONDS):
    """Upload one checkpoint (file or folder) under base_uri, then its completion marker.
    Returns None on success, else a one-line error."""
    name = os.path.basename(path.rstrip("/"))
    is_dir = os.path.isdir(path)
    quiet = ["--only-show-errors"]
    if is_dir:
        error = run_aws(aws_cli, ["s3", "sync", path, s3_join(base_uri, name) + "/"] + quiet,
                        env, timeout)
    else:
        error = run_aws(aws_cli, ["s3", "cp", path, s3_join(base_uri, name)] + quiet, env, timeout)
    if error:
        return error
    marker = json.dumps({"name": name, "completed_at": time.time(), "dir": is_dir}).encode()
    return run_aws(aws_cli, ["s3", "cp", "-", s3_marker_uri(base_uri, name, is_dir)] + quiet,
                   env, timeout, stdin_data=marker)


def download_checkpoint(aws_cli: list[str], uri: str, dest_dir: str, env: dict | None = None,
                        timeout: float = S3_TRANSFER_TIMEOUT_SECONDS):
    """Download an S3 checkpoint (an object, or a prefix = folder) into dest_dir.
    Returns (local path, None) or (None, one-line error)."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not name or uri.rstrip("/") == "s3:/":
        return None, f"not a checkpoint URI: {uri}"
    local = os.path.join(dest_dir, name)
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as exc:
        return None, f"cannot create {dest_dir}: {exc.strerror or exc}"
    quiet = ["--only-show-errors"]
    file_error = None
    if not uri.endswith("/"):
        file_error = run_aws(aws_cli, ["s3", "cp", uri, local] + quiet, env, timeout)
        if file_error is None:
            return local, None
    # Not an object: maybe a folder checkpoint stored as a prefix.
    error = run_aws(aws_cli, ["s3", "sync", uri.rstrip("/") + "/", local + "/",
                              "--exclude", S3_MARKER_SUFFIX] + quiet, env, timeout)
    if error:
        return None, error
    if not os.path.isdir(local) or not os.listdir(local):
        return None, f"no such checkpoint in S3: {uri}" + (
            f" ({file_error})" if file_error and "404" not in file_error else "")
    return local, None


class CheckpointSync:
    """Uploads each finished checkpoint once, in a thread; never blocks or kills the training.

    The thread never writes status.json itself: it publishes `synced_checkpoints` and
    `last_sync` through snapshot(), which the supervisor merges into its next status write.
    """

    def __init__(self, checkpoint_dir: str, uri: str, aws_cli: list[str], env: dict,
                 interval: float, synced=(), notify=None):
        self.checkpoint_dir = checkpoint_dir
        self.uri = uri
        self.aws_cli = aws_cli
        self.env = env
        self.interval = interval
        self.notify = notify or (lambda: None)
        self.synced = [str(name) for name in synced]
        self.last_sync = None
        self.failures = 0
        self.retry_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainctl-s3-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> dict:
        with self._lock:
            return {"synced_checkpoints": list(self.synced), "last_sync": self.last_sync}

    def mark_synced(self, name: str, synced: bool) -> None:
        with self._lock:
            if synced and name not in self.synced:
                self.synced.append(name)
            elif not synced and name in self.synced:
                self.synced.remove(name)

    def is_synced(self, path: str) -> bool:
        with self._lock:
            return os.path.basename(path) in self.synced

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if time.time() >= self.retry_at:
                self.sync_pending(deadline=None)

    def sync_pending(self, deadline: float | None) -> None:
        """Upload every finished checkpoint not uploaded yet, oldest first; stop at the first
        failure (retried later with backoff) or when `deadline` has passed."""
        for path in reversed(finished_checkpoints(self.checkpoint_dir)):
            if self.is_synced(path):
                continue
            timeout = S3_TRANSFER_TIMEOUT_SECONDS
            if deadline is not None:
                timeout = deadline - time.time()
                if timeout <= 1:
                    return
            if not self.upload(path, timeout):
                return

    def upload(self, path: str, timeout: float) -> bool:
        name = os.path.basename(path)
        error = upload_checkpoint(self.aws_cli, path, self.uri, self.env, timeout)
        with self._lock:
            self.last_sync = {"name": name, "at": time.time(), "ok": error is None,
                              "error": error}
            if error is None:
                self.synced.append(name)
                self.failures = 0
                self.retry_at = 0.0
            else:
                self.failures += 1
                delay = min(self.interval * 2 ** min(self.failures, 20), SYNC_BACKOFF_MAX_SECONDS)
                self.retry_at = time.time() + delay
        if error is None:
            _log_stderr(f"synced checkpoint {name} to {s3_join(self.uri, name)}")
        else:
            _log_stderr(f"checkpoint sync of {name} failed (retrying later): {error}")
        self.notify()
        return error is None

    def final_sync(self, deadline: float | None) -> None:
        """Stop the thread (letting a running upload finish) and upload what is left, now."""
        self._stop.set()
        if self._thread.is_alive():
            wait = None if deadline is None else max(0.0, deadline - time.time())
            self._thread.join(wait)
        if self._thread.is_alive():
            return  # still uploading at the deadline: nothing more fits
        self.sync_pending(deadline)


# --------------------------------------------------------------------------- AWS: spot notices

IMDS_TIMEOUT_SECONDS = 1.5
IMDS_TOKEN_TTL_SECONDS = 21600
SPOT_DEFAULT_NOTICE_SECONDS = 120.0
SPOT_MIN_SAVE_SECONDS = 5.0


def parse_aws_time(text) -> float | None:
    """Epoch seconds from IMDS times such as '2026-11-28T16:30:00Z'; None if unparsable."""
    if not isinstance(text, str):
        return None
    import calendar  # here only: the CLI imports this module and must start fast

    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    return None


class ImdsClient:
    """IMDSv2: a session token (PUT, cached, renewed before expiry or on 401), then GETs."""

    # urllib (and the ssl it brings) only where the runner watches for spot notices: the CLI
    # imports this module to read status files and must start fast.
    def __init__(self, base_url: str, timeout: float = IMDS_TIMEOUT_SECONDS):
        import urllib.request

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = None
        self.token_expires = 0.0
        # IMDS is link-local: a proxy from the environment must never see these requests.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _token(self) -> str:
        import urllib.request

        if self.token is None or time.time() >= self.token_expires:
            request = urllib.request.Request(
                self.base_url + "/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL_SECONDS)},
            )
            with self.opener.open(request, timeout=self.timeout) as response:
                self.token = response.read().decode("ascii", "replace").strip()
            # Renew a minute early so a token never expires between two polls.
            self.token_expires = time.time() + IMDS_TOKEN_TTL_SECONDS - 60
        return self.token

    def get(self, path: str):
        """(HTTP status, body) of a metadata GET; raises OSError when IMDS is unreachable."""
        import urllib.error
        import urllib.request

        for _ in range(2):
            request = urllib.request.Request(
                self.base_url + path, headers={"X-aws-ec2-metadata-token": self._token()}
            )
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    self.token = None  # expired or revoked: fetch a new one and retry once
                    continue
                return exc.code, b""
        return 401, b""

    def spot_action(self) -> dict | None:
        """The spot instance-action notice as a dict, or None when there is none."""
        code, body = self.get("/latest/meta-data/spot/instance-action")
        if code != 200:
            return None
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("action") else None


class SpotWatcher:
    """Polls IMDS for a spot interruption notice in a thread and reports the first one.

    IMDS being slow or unreachable must never touch the training: every error is swallowed
    (logged once per outage) and the next poll tries again.
    """

    def __init__(self, base_url: str, interval: float, on_notice):
        self.client = ImdsClient(base_url)
        self.interval = interval
        self.on_notice = on_notice
        self.outage_logged = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainctl-spot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            notice = self.poll_once()
            if notice is not None:
                self.on_notice(notice)
                return
            self._stop.wait(self.interval)

    def poll_once(self) -> dict | None:
        import http.client

        try:
            notice = self.client.spot_action()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not self.outage_logged:
                self.outage_logged = True
                _log_stderr(f"instance metadata unreachable at {self.client.base_url} "
                            f"({exc}); spot notices will not be seen until it answers")
            return None
        if self.outage_logged:
            self.outage_logged = False
            _log_stderr("instance metadata reachable again")
        return notice


# --------------------------------------------------------------------------- spec


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
    spec = dict(SPEC_DEFAULTS)
    spec.update({k: v for k, v in raw.items() if v is not None or k not in SPEC_DEFAULTS})
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
    if spec["resume_from"] and spec["resume_from"] != NEWEST and not is_s3_uri(spec["resume_from"]):
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
    return spec


def default_autostop_command() -> list[str]:
    # sudo -n: fail at once instead of waiting for a password nobody will type.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ["shutdown", "-h", "now"]
    return ["sudo", "-n", "shutdown", "-h", "now"]


def _command_list(value, key: str, path: str) -> list[str]:
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list) or not value:
        raise SpecError(f"{path}: '{key}' must be a non-empty list of strings")
    return [str(tok) for tok in value]


def load_cloud_spec(spec: dict, path: str) -> None:
    """Validate the optional spot / S3 / autostop keys in place. Raises SpecError."""
    for key in ("spot_poll_seconds", "spot_safety_seconds", "s3_sync_seconds"):
        try:
            spec[key] = max(0.05, float(spec[key]))
        except (TypeError, ValueError):
            raise SpecError(f"{path}: '{key}' must be a number") from None
    uri = spec["s3_checkpoint_uri"]
    if uri is not None and not is_s3_uri(uri):
        raise SpecError(f"{path}: 's3_checkpoint_uri' must start with s3:// (got {uri!r})")
    spec["aws_cli"] = _command_list(spec["aws_cli"], "aws_cli", path)
    if spec["autostop_minutes"] is not None:
        try:
            spec["autostop_minutes"] = max(0.0, float(spec["autostop_minutes"]))
        except (TypeError, ValueError):
            raise SpecError(f"{path}: 'autostop_minutes' must be a number") from None
        command = spec["autostop_command"]
        spec["autostop_command"] = (
            default_autostop_command() if command is None
            else _command_list(command, "autostop_command", path)
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


def resume_args(template: str | None, checkpoint: str | None) -> list[str]:
    """Extra arguments that make the command resume from `checkpoint`."""
    if not template or not checkpoint:
        return []
    return [tok.replace("{checkpoint}", checkpoint) for tok in shlex.split(template)]


def backoff_delay(spec: dict, restarts_done: int) -> float:
    """Exponential backoff before restart number restarts_done + 1."""
    delay = spec["backoff_seconds"] * (2 ** min(restarts_done, 60))
    return min(delay, spec["backoff_max_seconds"])


# --------------------------------------------------------------------------- supervisor


class Supervisor:
    """Runs the spec's command until it succeeds, fails for good or is stopped."""

    def __init__(self, session_dir: str, spec: dict, secret_env: dict[str, str], on_ready=None):
        self.session_dir = session_dir
        self.spec = spec
        self.secret_env = secret_env
        self.on_ready = on_ready
        self.status_path = os.path.join(session_dir, "status.json")
        self.log_path = os.path.join(session_dir, "train.log")
        self.stop_requested = False
        self.force_stop = False
        self.stop_signal: int | None = None
        self.proc: subprocess.Popen | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._status_dirty = False
        previous = read_status(session_dir) or {}
        attempts = previous.get("attempts")
        self.status = {
            "version": STATUS_VERSION,
            "session_id": spec["id"],
            "state": "starting",
            "runner_pid": os.getpid(),
            "runner_start": process_start_token(os.getpid()),
            "child_pid": None,
            "child_start": None,
            "heartbeat": time.time(),
            "attempt": 0,
            "max_restarts": spec["max_restarts"],
            "exit_code": None,
            "signal": None,
            "reason": None,
            "stop_requested": False,
            "next_restart_at": None,
            "checkpoint": None,
            "started": time.time(),
            "ended": None,
            "survivors": [],  # pids the last attempt left alive even after SIGKILL
            "attempts": attempts if isinstance(attempts, list) else [],
        }
        for old in self.status["attempts"]:
            # The previous runner died before it could record the end of this attempt.
            if isinstance(old, dict) and old.get("ended") is None and old.get("reason") is None:
                old["reason"] = "runner lost before the attempt ended"
        self.status["attempt"] = len(self.status["attempts"])
        self.first_attempt = len(self.status["attempts"]) + 1
        self.interruption: dict | None = None  # set (once) by the spot watcher's thread
        self.spot: SpotWatcher | None = None
        self.syncer: CheckpointSync | None = None
        self._init_cloud_status(previous)

    def _init_cloud_status(self, previous: dict) -> None:
        """status.json fields of the optional cloud features, present only when enabled."""
        spec = self.spec
        if spec["spot_notice_url"]:
            self.status["interruption"] = None
        if spec["s3_checkpoint_uri"]:
            synced = previous.get("synced_checkpoints")
            same_uri = previous.get("s3_checkpoint_uri") == spec["s3_checkpoint_uri"]
            self.status.update(
                s3_checkpoint_uri=spec["s3_checkpoint_uri"],
                # A restarted runner does not upload again what its predecessor uploaded.
                synced_checkpoints=synced if same_uri and isinstance(synced, list) else [],
                last_sync=previous.get("last_sync") if same_uri else None,
            )
        if spec["autostop_minutes"] is not None:
            self.status.update(autostop_at=None, autostop=None)

    # ---- status and log

    def write_status(self, strict: bool = False) -> None:
        if self.syncer is not None:
            self.status.update(self.syncer.snapshot())
        self.status["heartbeat"] = time.time()
        try:
            atomic_write_json(self.status_path, self.status)
            self._status_dirty = False
        except OSError as exc:
            if strict:
                raise
            # Retried at the next heartbeat; training must not suffer for a flaky disk.
            self._status_dirty = True
            _log_stderr(f"cannot write {self.status_path}: {exc}")

    def set_state(self, state: str, **fields) -> None:
        self.status["state"] = state
        self.status.update(fields)
        self.write_status()

    def log_line(self, text: str) -> None:
        """Append one marked line to train.log (never the secret env)."""
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (LOG_PREFIX + text + "\n").encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            _log_stderr(f"cannot write {self.log_path}: {exc}")

    # ---- signals

    def install_signal_handlers(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_force_signal)
        # A Python handler (not SIG_IGN) so the child does not inherit "ignore SIGHUP".
        signal.signal(signal.SIGHUP, lambda signum, frame: None)
        # Only here so that the wakeup fd wakes the loop when the child exits.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _on_stop_signal(self, signum, frame) -> None:
        if self.stop_requested:
            self.force_stop = True  # second SIGTERM/SIGINT: stop now
        self.stop_requested = True
        self.stop_signal = self.stop_signal or signum

    def _on_force_signal(self, signum, frame) -> None:
        self.stop_requested = True
        self.force_stop = True
        self.stop_signal = self.stop_signal or signum

    def _wake_from_thread(self) -> None:
        """Make the main loop look at the flags now (and write status.json)."""
        self._status_dirty = True
        try:
            os.write(self._wake_w, b"w")
        except OSError:
            pass  # pipe full: the loop is awake anyway

    def _on_spot_notice(self, notice: dict) -> None:
        # Runs in the watcher thread: record and wake; the main loop acts on it.
        now = time.time()
        deadline = parse_aws_time(notice.get("time")) or now + SPOT_DEFAULT_NOTICE_SECONDS
        self.interruption = {
            "notice_at": now,
            "action": str(notice.get("action")),
            "time": notice.get("time"),
            "deadline": deadline,
            "checkpoint": None,
            "synced": False,
            "uri": None,
        }
        self._wake_from_thread()

    def _wait_event(self, timeout: float) -> None:
        """Sleep until a signal arrives (incl. SIGCHLD) or `timeout` seconds pass."""
        try:
            select.select([self._wake_r], [], [], max(0.0, timeout))
        except InterruptedError:
            pass
        try:
            while os.read(self._wake_r, 512):  # drain; the flags say what happened
                pass
        except BlockingIOError:
            pass

    # ---- main loop

    def run(self) -> int:
        """Supervise until a final state; returns the runner's exit code (0)."""
        os.set_blocking(self._wake_r, False)
        self.install_signal_handlers()
        self.write_status(strict=True)
        if self.on_ready:
            self.on_ready()
        self.start_background()
        code = self.supervise()
        if self.spec["autostop_minutes"] is not None:
            self.autostop_wait()
        return code

    def supervise(self) -> int:
        """Attempts and restarts until a final state."""
        restarts = 0
        checkpoint, skipped = self.starting_checkpoint()
        named = self.spec["resume_from"] != NEWEST  # not chosen here: check it before use
        while True:
            if self.interruption:
                return self.finish("interrupted", self.interruption_reason())
            if self.stop_requested:
                return self.finish("stopped", "stopped before the command started")
            n = len(self.status["attempts"]) + 1
            if is_s3_uri(checkpoint):
                checkpoint, error = self.fetch_checkpoint(checkpoint)
                if error:
                    self.record_failed_attempt(n, error)
                    return self.finish("failed", error)
            error = self.refuse_unsound(checkpoint) if named else None
            named = False
            if error:
                self.record_failed_attempt(n, error)
                return self.finish("failed", error)
            command = self.spec["command"] + resume_args(self.spec["resume_template"], checkpoint)
            rc, reason = self.run_attempt(n, command, checkpoint, skipped)
            if self.interruption:
                return self.finish("interrupted", reason)
            if self.stop_requested:
                return self.finish("stopped", reason)
            if rc == 0:
                return self.finish("succeeded", None)
            if rc in NO_RETRY_EXIT_CODES:
                return self.finish("failed", reason or f"exited with code {rc} (not retried)")
            if restarts >= self.spec["max_restarts"]:
                # With no restarts allowed there is nothing to add to the exit code.
                budget = f"gave up after {restarts} restart(s)" if restarts else None
                parts = [part for part in (reason, budget) if part]
                return self.finish("failed", "; ".join(parts) or None)
            if not self.backoff(restarts):
                return self.finish("stopped", "stopped during backoff")
            restarts += 1
            checkpoint, skipped = self.choose_checkpoint()

    def choose_checkpoint(self) -> tuple:
        """The newest sound checkpoint, and the newer ones passed over (logged)."""
        path, skipped = choose_checkpoint(self.spec["checkpoint_dir"],
                                          self.spec["trusted_globals"])
        for item in skipped:
            self.log_line(f"skipped checkpoint {item['path']}: {item['reason']}")
        return path, skipped

    def starting_checkpoint(self) -> tuple:
        """What the first attempt resumes from: chosen here for NEWEST, else as the spec says
        (checked by refuse_unsound), with what `trainctl resume` passed over."""
        wanted = self.spec["resume_from"]
        if wanted == NEWEST:
            return self.choose_checkpoint()
        skipped = [item for item in self.spec["resume_skipped"] if isinstance(item, dict)]
        for item in skipped:
            self.log_line(f"skipped checkpoint {item.get('path')}: {item.get('reason')}")
        return wanted, skipped

    def refuse_unsound(self, checkpoint: str | None) -> str | None:
        """A checkpoint named in the spec (or downloaded from S3) is checked like a chosen one:
        nothing starts from one that is not sound."""
        problem = checkpoint_problem(checkpoint, self.spec["trusted_globals"]) if (
            checkpoint) else None
        if problem:
            return f"not resuming from {checkpoint}: {problem}"
        return None

    def backoff(self, restarts: int) -> bool:
        """Wait before the next restart; False if a stop came in meanwhile."""
        delay = backoff_delay(self.spec, restarts)
        restart_at = time.time() + delay
        self.set_state("backoff", next_restart_at=restart_at)
        self.log_line(f"restarting in {delay:g}s")
        heartbeat = self.spec["heartbeat_seconds"]
        next_beat = time.time() + heartbeat
        while not self.stop_requested and not self.interruption:
            now = time.time()
            if now >= restart_at:
                break
            if now >= next_beat or self._status_dirty:
                self.write_status()
                next_beat = now + heartbeat
            self._wait_event(min(restart_at, next_beat) - now)
        self.status["next_restart_at"] = None
        return not self.stop_requested and not self.interruption

    def child_env(self, n: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec["env"])
        env.update(self.secret_env)
        env["TRAINCTL_SESSION_ID"] = self.spec["id"]
        env["TRAINCTL_SESSION_DIR"] = self.session_dir
        env["TRAINCTL_ATTEMPT"] = str(n)
        if self.spec["checkpoint_dir"]:
            env["TRAINCTL_CHECKPOINT_DIR"] = self.spec["checkpoint_dir"]
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, command: list[str], n: int) -> tuple[int, str] | None:
        """Start the child; on failure return (exit code, reason) like a shell would."""
        cwd = self.spec["cwd"]
        if not os.path.isdir(cwd):
            return 127, f"working directory not found: {cwd}"
        try:
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            return 126, f"cannot open {self.log_path}: {exc.strerror}"
        try:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.child_env(n),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
            )
        except FileNotFoundError:
            return 127, f"command not found: {command[0]}"
        except PermissionError:
            return 126, f"permission denied (not executable?): {command[0]}"
        except OSError as exc:
            return 126, f"cannot execute {command[0]}: {exc.strerror or exc}"
        finally:
            os.close(log_fd)  # the child owns its copy; training keeps logging if we die
        return None

    def run_attempt(self, n: int, command: list[str], checkpoint: str | None, skipped=()):
        """Run one attempt to its end; returns (returncode, reason). `skipped`: the newer
        checkpoints passed over, with why."""
        attempt = {
            "n": n,
            "started": time.time(),
            "ended": None,
            "exit_code": None,
            "signal": None,
            "resumed_from": checkpoint,
            "command": command,
            "reason": None,
        }
        if skipped:
            attempt["skipped_checkpoints"] = list(skipped)
        self.status["attempts"].append(attempt)
        self.status.update(
            attempt=n, checkpoint=checkpoint, exit_code=None, signal=None, reason=None
        )
        self.set_state("starting")
        total = self.first_attempt + self.spec["max_restarts"]
        resuming = f" resuming from {checkpoint}" if checkpoint else ""
        self.log_line(f"attempt {n}/{total}{resuming}: {_quote_command(command)}")

        failure = self.launch(command, n)
        if failure is not None:
            rc, reason = failure
            self.log_line(reason)
            self.end_attempt(attempt, rc, reason)
            return rc, reason

        child = self.proc
        self.set_state("running", child_pid=child.pid, child_start=process_start_token(child.pid))
        rc, reason = self.wait_child(child)
        survivors = self.kill_leftovers(child.pid)  # dataloader workers, daemons it started
        self.proc = None
        self.status.update(child_pid=None, child_start=None, survivors=survivors)
        if rc < 0:
            self.log_line(f"killed by {_signal_name(-rc)}")
        else:
            self.log_line(f"exited with code {rc}")
        if survivors:
            alive = ", ".join(describe_pid(pid) for pid in survivors)
            self.log_line(f"still alive after SIGKILL: {alive}")
            reason = "; ".join(part for part in (reason, f"still alive: {alive}") if part)
        self.end_attempt(attempt, rc, reason)
        return rc, reason

    def wait_child(self, child: subprocess.Popen) -> tuple[int, str | None]:
        """Wait for the child, handling stop requests and heartbeats."""
        heartbeat = self.spec["heartbeat_seconds"]
        grace = self.spec["grace_seconds"]
        next_beat = time.time() + heartbeat
        term_sent = kill_sent = False
        kill_at = None
        reason = None
        while True:
            rc = child.poll()
            if rc is not None:
                return rc, reason
            now = time.time()
            if self.interruption and not term_sent:
                term_sent = True
                reason = self.interruption_reason()
                kill_at = self.interruption_kill_at()
                self.set_state("stopping", interruption=self.interruption)
                self.log_line(f"{reason}: SIGTERM to the process group, "
                              f"{max(0.0, kill_at - now):.0f}s to save a checkpoint")
                self.signal_training(child.pid, signal.SIGTERM)
            if self.stop_requested and not term_sent:
                term_sent = True
                name = _signal_name(self.stop_signal) if self.stop_signal else "request"
                reason = f"stopped by {name}"
                kill_at = now + grace
                self.set_state("stopping", stop_requested=True)
                if not self.force_stop:  # a force stop is SIGKILL alone, just below
                    self.log_line(f"stopping: SIGTERM to the process group, grace {grace:g}s")
                    self.signal_training(child.pid, signal.SIGTERM)
            if term_sent and not kill_sent and (self.force_stop or now >= kill_at):
                kill_sent = True
                if self.force_stop:
                    reason = f"force-stopped by {_signal_name(self.stop_signal or 0)}"
                elif self.interruption:
                    reason = f"{self.interruption_reason()}; did not exit in time, killed"
                else:
                    reason = f"did not exit within {grace:g}s of SIGTERM; killed"
                self.log_line(reason)
                self.signal_training(child.pid, signal.SIGKILL)
            if now >= next_beat or self._status_dirty:
                self.write_status()
                next_beat = now + heartbeat
            wake = next_beat if kill_sent or not term_sent else min(next_beat, kill_at)
            self._wait_event(wake - now)

    @staticmethod
    def kill_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def signal_training(self, pgid: int, signum: int) -> None:
        signal_training(pgid, self.spec["id"], signum)

    def kill_leftovers(self, pgid: int, wait: float = LEFTOVER_WAIT_SECONDS) -> list[int]:
        """SIGKILL what the training left behind; the pids still alive after `wait`."""
        self.signal_training(pgid, signal.SIGKILL)
        deadline = time.time() + wait
        while True:
            alive = marked_pids(self.spec["id"])
            if not alive or time.time() >= deadline:
                return alive
            time.sleep(0.05)

    def end_attempt(self, attempt: dict, rc: int, reason: str | None) -> None:
        exit_code, sig = (None, -rc) if rc < 0 else (rc, None)
        attempt.update(ended=time.time(), exit_code=exit_code, signal=sig, reason=reason)
        self.status.update(exit_code=exit_code, signal=sig, reason=reason)
        self.write_status()

    def finish(self, state: str, reason: str | None) -> int:
        if self.spot is not None:
            self.spot.stop()
        if state == "interrupted":
            self.record_interruption_checkpoint()
        elif self.syncer is not None:
            self.log_line("final checkpoint sync to S3")
            self.run_beating(lambda: self.syncer.final_sync(deadline=None))
        self.status.update(
            state=state,
            reason=reason,
            ended=time.time(),
            next_restart_at=None,
            stop_requested=self.stop_requested,
        )
        self.log_line(f"session {state}" + (f": {reason}" if reason else ""))
        self.write_status()
        for _ in range(3):  # a flaky disk: the final state matters most
            if not self._status_dirty:
                break
            time.sleep(0.5)
            self.write_status()
        return 0


    # ---- cloud: background threads, spot interruption, S3 checkpoints

    def aws_env(self) -> dict[str, str]:
        """The aws CLI sees what the training sees (session env and secrets may hold AWS_*)."""
        env = dict(os.environ)
        env.update(self.spec["env"])
        env.update(self.secret_env)
        return env

    def start_background(self) -> None:
        spec = self.spec
        if spec["s3_checkpoint_uri"]:
            if spec["checkpoint_dir"]:
                self.syncer = CheckpointSync(
                    spec["checkpoint_dir"], spec["s3_checkpoint_uri"], spec["aws_cli"],
                    self.aws_env(), spec["s3_sync_seconds"],
                    synced=self.status.get("synced_checkpoints") or (),
                    notify=self._wake_from_thread,
                )
                self.syncer.start()
            else:
                _log_stderr("s3_checkpoint_uri is set but checkpoint_dir is not: nothing to sync")
        if spec["spot_notice_url"]:
            self.spot = SpotWatcher(spec["spot_notice_url"], spec["spot_poll_seconds"],
                                    self._on_spot_notice)
            self.spot.start()

    def run_beating(self, work) -> None:
        """Run slow work (an upload) in a thread while the heartbeat goes on; a force stop
        (SIGUSR1, or a second SIGTERM) abandons the wait."""
        worker = threading.Thread(target=work, name="trainctl-final-sync", daemon=True)
        worker.start()
        while worker.is_alive() and not self.force_stop:
            self.write_status()
            worker.join(self.spec["heartbeat_seconds"])
        if worker.is_alive():
            self.log_line("final checkpoint sync abandoned (force stop)")

    def interruption_reason(self) -> str:
        info = self.interruption or {}
        when = f" at {info['time']}" if info.get("time") else ""
        return f"spot interruption notice ({info.get('action')}{when})"

    def interruption_kill_at(self) -> float:
        """Latest moment to SIGKILL: leave a safety margin before AWS takes the machine, but
        give the training a few seconds even when the notice came late (or clocks differ)."""
        info = self.interruption
        return max(info["deadline"] - self.spec["spot_safety_seconds"],
                   info["notice_at"] + SPOT_MIN_SAVE_SECONDS)

    def record_interruption_checkpoint(self) -> None:
        """Upload what the training saved after the notice and record where it is."""
        info = self.interruption
        newest = find_newest_checkpoint(self.spec["checkpoint_dir"])
        if self.syncer is not None:
            self.log_line("spot interruption: syncing the newest checkpoint to S3")
            self.run_beating(lambda: self.syncer.final_sync(deadline=info["deadline"]))
        synced = bool(newest and self.syncer is not None and self.syncer.is_synced(newest))
        info.update(
            checkpoint=newest,
            synced=synced,
            uri=s3_join(self.spec["s3_checkpoint_uri"], os.path.basename(newest))
            if synced else None,
        )
        self.status["interruption"] = info

    def fetch_checkpoint(self, uri: str):
        """Download an s3:// checkpoint for the next attempt: (local path, None) or
        (None, reason). No training starts without the checkpoint it should resume from."""
        dest = self.spec["checkpoint_dir"] or os.path.join(self.session_dir, "checkpoints")
        self.log_line(f"downloading checkpoint {uri} to {dest}")
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        base = self.spec["s3_checkpoint_uri"]
        from_sync_prefix = (self.syncer is not None and bool(base)
                            and uri.rstrip("/") == s3_join(base, name))
        if from_sync_prefix:
            # Marked before it appears locally, so the sync thread never uploads it back.
            self.syncer.mark_synced(name, True)
        local, error = download_checkpoint(self.spec["aws_cli"], uri, dest, self.aws_env())
        if error:
            if from_sync_prefix:
                self.syncer.mark_synced(name, False)
            return None, f"cannot download checkpoint {uri}: {error}"
        return local, None

    def record_failed_attempt(self, n: int, reason: str) -> None:
        """An attempt that could not start (nothing ran): recorded so status.json says why."""
        self.log_line(reason)
        attempt = {"n": n, "started": time.time(), "ended": time.time(), "exit_code": None,
                   "signal": None, "resumed_from": None, "command": None, "reason": reason}
        self.status["attempts"].append(attempt)
        self.status.update(attempt=n, exit_code=None, signal=None, reason=reason)
        self.write_status()

    # ---- idle autostop

    def autostop_wait(self) -> None:
        """After the final state: wait `autostop_minutes`, then run autostop_command once unless
        another runner in the same workdir is busy (then wait again). A stop signal cancels."""
        period = self.spec["autostop_minutes"] * 60.0
        # The stop that ended the training must not also cancel the idle wait.
        self.stop_requested = self.force_stop = False
        self.stop_signal = None
        beat = max(self.spec["heartbeat_seconds"] * 5, 10.0)  # idle: a slower heartbeat
        stop_at = time.time() + period
        self.status["autostop_at"] = stop_at
        self.log_line(f"idle: autostop in {period:g}s unless another session starts")
        self.write_status()
        while not self.stop_requested:
            now = time.time()
            if now >= stop_at:
                busy = active_sibling(self.session_dir)
                if busy is None:
                    self.run_autostop()
                    return
                stop_at = now + period
                self.status["autostop_at"] = stop_at
                self.log_line(f"session {busy} is active: autostop postponed by {period:g}s")
            self.write_status()
            self._wait_event(min(stop_at - time.time(), beat))
        name = _signal_name(self.stop_signal) if self.stop_signal else "request"
        self.status.update(autostop_at=None, autostop={
            "action": "cancelled", "at": time.time(), "reason": f"stopped by {name}",
            "command": None, "exit_code": None, "error": None})
        self.log_line(f"autostop cancelled by {name}")
        self.write_status()

    def run_autostop(self) -> None:
        command = self.spec["autostop_command"]
        self.log_line(f"autostop: {_quote_command(command)}")
        record = {"action": "ran", "at": time.time(), "reason": None, "command": command,
                  "exit_code": None, "error": None}
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=120)
            record["exit_code"] = result.returncode
            if result.returncode != 0:
                record["error"] = _one_line(result.stderr.decode("utf-8", "replace")) or None
        except (OSError, subprocess.SubprocessError) as exc:
            record["error"] = f"cannot run {command[0]}: {exc}"
        if record["error"]:
            _log_stderr(f"autostop command failed: {record['error']}")
        self.status.update(autostop_at=None, autostop=record)
        self.write_status()

# --------------------------------------------------------------------------- entry points


def _log_stderr(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        sys.stderr.write(f"{stamp} trainctl-runner[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


FINAL_STATES = ("succeeded", "failed", "stopped", "interrupted")


def active_sibling(session_dir: str) -> str | None:
    """Name of another session in the same workdir whose runner is alive and busy, or None."""
    workdir = os.path.dirname(os.path.abspath(session_dir))
    own = os.path.basename(os.path.abspath(session_dir))
    try:
        names = sorted(os.listdir(workdir))
    except OSError:
        return None
    for name in names:
        if name == own:
            continue
        status = read_status(os.path.join(workdir, name))
        if not status or status.get("state") in FINAL_STATES:
            continue
        if pid_alive(status.get("runner_pid"), status.get("runner_start")):
            return name
    return None


def cancel_autostop_wait(status: dict, timeout: float = 10.0) -> None:
    """A runner that only waits to stop an idle machine gives way to a new run of its session."""
    pid, token = status.get("runner_pid"), status.get("runner_start")
    if status.get("state") not in FINAL_STATES or not status.get("autostop_at"):
        return
    if not pid_alive(pid, token):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline and pid_alive(pid, token):
        time.sleep(0.1)


def refuse_if_owned(session_dir: str) -> None:
    """Raise SpecError if a live runner or a live child of an earlier run owns the session."""
    previous = read_status(session_dir)
    if not previous:
        return
    if previous.get("runner_pid") != os.getpid():
        cancel_autostop_wait(previous)
    if previous.get("runner_pid") != os.getpid() and pid_alive(
        previous.get("runner_pid"), previous.get("runner_start")
    ):
        raise SpecError(f"session already has a live runner (pid {previous['runner_pid']})")
    if pid_alive(previous.get("child_pid"), previous.get("child_start")):
        raise SpecError(
            f"training process {previous['child_pid']} from an earlier runner is still running; "
            "stop it first"
        )


def prepare(session_dir: str, base_cwd: str | None = None) -> tuple[dict, dict]:
    """Everything that can fail because of the user, checked before any process starts."""
    if not os.path.isdir(session_dir):
        raise SpecError(f"session directory not found: {session_dir}")
    spec = load_spec(session_dir, base_cwd)
    secret_env = load_secret_env(session_dir)
    refuse_if_owned(session_dir)
    return spec, secret_env


def run_foreground(session_dir: str, base_cwd: str | None = None, on_ready=None) -> int:
    spec, secret_env = prepare(session_dir, base_cwd)
    supervisor = Supervisor(session_dir, spec, secret_env, on_ready=on_ready)
    try:
        return supervisor.run()
    except OSError as exc:
        # Only the strict first status write raises; nothing has been started yet.
        _log_stderr(f"cannot start: {exc}")
        return 1


def _wait_ready(read_fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            return os.read(read_fd, 1) == b"1"  # b"" = the runner died before it was ready


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 2000))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_detached(session_dir: str) -> int:
    """Double-fork so the runner survives the caller, its terminal and its SSH connection.

    The caller returns 0 once the runner has written its first status.json, 1 otherwise.
    """
    base_cwd = os.getcwd()
    prepare(session_dir, base_cwd)  # user errors reach the caller's stderr directly
    runner_log = os.path.join(session_dir, "runner.log")
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        os.waitpid(pid, 0)  # the middle process exits at once: no zombie left behind
        ok = _wait_ready(read_fd, READY_TIMEOUT_SECONDS)
        os.close(read_fd)
        if ok:
            return 0
        detail = _last_line(runner_log)
        sys.stderr.write(
            f"trainctl runner for {session_dir} did not start"
            + (f": {detail}" if detail else f"; see {runner_log}")
            + "\n"
        )
        return 1
    code = 1
    try:
        os.close(read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        code = _detached_main(session_dir, base_cwd, runner_log, write_fd)
    except BaseException:  # noqa: B036 - the forked child must never return into the caller
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _detached_main(session_dir: str, base_cwd: str, runner_log: str, ready_fd: int) -> int:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    log_fd = os.open(runner_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.chdir("/")  # do not pin the caller's directory (paths are absolute by now)

    def ready() -> None:
        try:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        except OSError:
            pass

    _log_stderr(f"runner started for {session_dir}")
    try:
        code = run_foreground(session_dir, base_cwd, on_ready=ready)
    except SpecError as exc:
        _log_stderr(str(exc))
        code = 2
    _log_stderr(f"runner done (exit {code})")
    return code


def probe(session_dir: str) -> dict:
    """What a remote trainctl needs in one round trip: the status and who is alive."""
    status = read_status(session_dir)
    alive = bool(status) and pid_alive(status.get("runner_pid"), status.get("runner_start"))
    if status and not alive:
        status = read_status(session_dir)  # it may have written its final status and exited
    log = os.path.join(session_dir, "train.log")
    return {
        "status": status,
        "newest_checkpoint": _newest_checkpoint_info(session_dir),
        "runner_alive": alive,
        "child_alive": bool(status) and pid_alive(status.get("child_pid"),
                                                  status.get("child_start")),
        "log_size": os.path.getsize(log) if os.path.exists(log) else 0,
    }


def _newest_checkpoint_info(session_dir: str) -> dict | None:
    """Path, step, size and mtime of the newest checkpoint (names and stat only)."""
    try:
        folder = load_spec(session_dir).get("checkpoint_dir")
    except SpecError:
        return None
    path = find_newest_checkpoint(folder) if folder and os.path.isdir(folder) else None
    if not path:
        return None
    st = os.stat(path)
    return {"path": path, "step": checkpoint_step(os.path.basename(path)),
            "size": st.st_size, "mtime": st.st_mtime}


def stop(session_dir: str, force: bool) -> str:
    """Ask the runner to stop (SIGTERM: graceful, SIGUSR1: now); if the runner is gone but its
    training is not, stop that process group itself (SIGTERM, grace, SIGKILL)."""
    status = read_status(session_dir) or {}
    if pid_alive(status.get("runner_pid"), status.get("runner_start")):
        os.kill(status["runner_pid"], signal.SIGUSR1 if force else signal.SIGTERM)
        return "runner signalled"
    child, token = status.get("child_pid"), status.get("child_start")
    session_id = str(status.get("session_id") or os.path.basename(session_dir))
    if not pid_alive(child, token):
        child = None
        if not marked_pids(session_id):
            return "not running"
    signal_training(child, session_id, signal.SIGKILL if force else signal.SIGTERM)
    try:
        grace = float(load_spec(session_dir).get("grace_seconds", 30))
    except SpecError:
        grace = 30.0
    deadline = time.time() + (0 if force else grace)
    while time.time() < deadline and (pid_alive(child, token) or marked_pids(session_id)):
        time.sleep(0.2)
    signal_training(child if pid_alive(child, token) else None, session_id, signal.SIGKILL)
    return "orphaned training stopped"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--probe"] and len(args) == 2:
        sys.stdout.write(json.dumps(probe(os.path.abspath(args[1]))) + "\n")
        return 0
    if args[:1] == ["--stop"] and len(args) in (2, 3):
        sys.stdout.write(stop(os.path.abspath(args[1]), "--force" in args[2:]) + "\n")
        return 0
    detach = "--detach" in args
    args = [a for a in args if a != "--detach"]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: supervisor.py [--detach] SESSION_DIR | --probe SESSION_DIR | "
                         "--stop SESSION_DIR [--force]\n")
        return 2
    session_dir = os.path.abspath(args[0])
    try:
        if detach:
            return run_detached(session_dir)
        return run_foreground(session_dir)
    except SpecError as exc:
        sys.stderr.write(f"trainctl runner: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
