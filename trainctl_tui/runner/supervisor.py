"""trainctl runner: supervises one training command for one session folder.

Self-contained and stdlib only: this file is copied alone to SSH hosts, pods and EC2 instances
and run there as ``python3 supervisor.py [--detach] SESSION_DIR``. Never import trainctl_tui here.

The session folder holds ``spec.json`` (what to run), optional ``secret_env.json`` (env vars that
are never logged), ``status.json`` (written atomically by this runner at every state change and
heartbeat), ``train.log`` (the training's own stdout/stderr, appended directly by the child) and
``runner.log`` (this runner's stderr when detached).

Signals: SIGTERM/SIGINT = graceful stop (SIGTERM to the training's process group, SIGKILL after
``grace_seconds``), a second one or SIGUSR1 = force stop (SIGKILL now), SIGHUP is ignored.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import traceback

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
}

# Exit codes a shell uses for "cannot execute" / "not found": retrying them is pointless.
NO_RETRY_EXIT_CODES = (126, 127)
NEWEST = "newest"  # spec resume_from: the newest checkpoint in checkpoint_dir at start


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


def read_status(session_dir: str) -> dict | None:
    """The session's status.json as a dict, or None if missing, unreadable or invalid."""
    try:
        with open(os.path.join(session_dir, "status.json"), "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def _quote_command(command: list[str]) -> str:
    # shlex.join needs Python 3.8; some hosts (Amazon Linux 2) still ship 3.7.
    return " ".join(shlex.quote(tok) for tok in command)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
UNFINISHED_SUFFIXES = (".tmp", ".partial", ".part", ".incomplete")
CHECKPOINT_DIR_RE = re.compile(r"^(checkpoint-\d+|step_\d+|global_step\d+|.*-step=\d+.*)$")
STEP_KEYWORD_RES = [
    re.compile(rf"{kw}[_\-=]?(\d+)", re.IGNORECASE)
    for kw in ("step", "iter", "checkpoint", "ckpt", "epoch")
]
LAST_NUMBER_RE = re.compile(r"(\d+)(?!.*\d)")
STILL_WRITING_SECONDS = 2.0


def checkpoint_step(name: str) -> int | None:
    """Step number parsed from a checkpoint name: after step/iter/checkpoint/ckpt/epoch (in that
    order of preference, so 'epoch=2-step=900' is 900), else the last number, else None."""
    for pattern in STEP_KEYWORD_RES:
        match = pattern.search(name)
        if match:
            return int(match.group(1))
    match = LAST_NUMBER_RE.search(name)
    return int(match.group(1)) if match else None


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
    # A Hugging Face checkpoint-N folder is complete only once trainer_state.json is written.
    if name.startswith("checkpoint-") and not os.path.isfile(
        os.path.join(entry.path, "trainer_state.json")
    ):
        return None
    return False


def find_newest_checkpoint(directory: str | None) -> str | None:
    """Absolute path of the newest complete checkpoint in `directory` (not recursive), or None.

    Ordered by the step number in the name, ties and unnumbered ones by mtime (numbered ones
    win over unnumbered ones). Unfinished files (.tmp/.partial/..., hidden, tmp*) are skipped,
    and so is a top candidate that is still growing.
    """
    if not directory or not os.path.isdir(directory):
        return None
    candidates = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        kind = _is_candidate(entry)
        if kind is None:
            continue
        stat = _candidate_stat(entry.path, is_dir=not kind)
        if stat is None:
            continue
        step = checkpoint_step(entry.name)
        key = (step is not None, step or 0, stat[1])
        candidates.append((key, entry.path, not kind, stat))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0], reverse=True)
    _key, path, is_dir, (size, mtime) = candidates[0]
    if time.time() - mtime < STILL_WRITING_SECONDS:
        time.sleep(0.2)
        again = _candidate_stat(path, is_dir)
        if again is None or again[0] != size:
            # Still being written: fall back to the previous one, if any.
            return os.path.abspath(candidates[1][1]) if len(candidates) > 1 else None
    return os.path.abspath(path)


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
    if spec["resume_from"] == NEWEST:
        # Chosen here, where the checkpoints are (a remote trainctl cannot see them).
        spec["resume_from"] = find_newest_checkpoint(spec["checkpoint_dir"])
    elif spec["resume_from"]:
        spec["resume_from"] = os.path.abspath(os.path.join(spec["cwd"], spec["resume_from"]))
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
    return spec


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
            "attempts": attempts if isinstance(attempts, list) else [],
        }
        for old in self.status["attempts"]:
            # The previous runner died before it could record the end of this attempt.
            if isinstance(old, dict) and old.get("ended") is None and old.get("reason") is None:
                old["reason"] = "runner lost before the attempt ended"
        self.status["attempt"] = len(self.status["attempts"])
        self.first_attempt = len(self.status["attempts"]) + 1

    # ---- status and log

    def write_status(self, strict: bool = False) -> None:
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
        restarts = 0
        checkpoint = self.spec["resume_from"]
        while True:
            if self.stop_requested:
                return self.finish("stopped", "stopped before the command started")
            n = len(self.status["attempts"]) + 1
            command = self.spec["command"] + resume_args(self.spec["resume_template"], checkpoint)
            rc, reason = self.run_attempt(n, command, checkpoint)
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
            newest = find_newest_checkpoint(self.spec["checkpoint_dir"])
            checkpoint = newest or None

    def backoff(self, restarts: int) -> bool:
        """Wait before the next restart; False if a stop came in meanwhile."""
        delay = backoff_delay(self.spec, restarts)
        restart_at = time.time() + delay
        self.set_state("backoff", next_restart_at=restart_at)
        self.log_line(f"restarting in {delay:g}s")
        heartbeat = self.spec["heartbeat_seconds"]
        next_beat = time.time() + heartbeat
        while not self.stop_requested:
            now = time.time()
            if now >= restart_at:
                break
            if now >= next_beat:
                self.write_status()
                next_beat = now + heartbeat
            self._wait_event(min(restart_at, next_beat) - now)
        self.status["next_restart_at"] = None
        return not self.stop_requested

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

    def run_attempt(self, n: int, command: list[str], checkpoint: str | None):
        """Run one attempt to its end; returns (returncode, reason)."""
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
        self.kill_group(child.pid, signal.SIGKILL)  # leftovers (e.g. dataloader workers)
        self.proc = None
        self.status.update(child_pid=None, child_start=None)
        if rc < 0:
            self.log_line(f"killed by {_signal_name(-rc)}")
        else:
            self.log_line(f"exited with code {rc}")
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
            if self.stop_requested and not term_sent:
                term_sent = True
                name = _signal_name(self.stop_signal) if self.stop_signal else "request"
                reason = f"stopped by {name}"
                kill_at = now + grace
                self.set_state("stopping", stop_requested=True)
                self.log_line(f"stopping: SIGTERM to the process group, grace {grace:g}s")
                self.kill_group(child.pid, signal.SIGTERM)
            if term_sent and not kill_sent and (self.force_stop or now >= kill_at):
                kill_sent = True
                if self.force_stop:
                    reason = f"force-stopped by {_signal_name(self.stop_signal or 0)}"
                else:
                    reason = f"did not exit within {grace:g}s of SIGTERM; killed"
                self.log_line(reason)
                self.kill_group(child.pid, signal.SIGKILL)
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

    def end_attempt(self, attempt: dict, rc: int, reason: str | None) -> None:
        exit_code, sig = (None, -rc) if rc < 0 else (rc, None)
        attempt.update(ended=time.time(), exit_code=exit_code, signal=sig, reason=reason)
        self.status.update(exit_code=exit_code, signal=sig, reason=reason)
        self.write_status()

    def finish(self, state: str, reason: str | None) -> int:
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


# --------------------------------------------------------------------------- entry points


def _log_stderr(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        sys.stderr.write(f"{stamp} trainctl-runner[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def refuse_if_owned(session_dir: str) -> None:
    """Raise SpecError if a live runner or a live child of an earlier run owns the session."""
    previous = read_status(session_dir)
    if not previous:
        return
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
    if not pid_alive(child, token):
        return "not running"
    os.killpg(child, signal.SIGKILL if force else signal.SIGTERM)
    try:
        grace = float(load_spec(session_dir).get("grace_seconds", 30))
    except SpecError:
        grace = 30.0
    deadline = time.time() + (0 if force else grace)
    while time.time() < deadline and pid_alive(child, token):
        time.sleep(0.2)
    if pid_alive(child, token):
        os.killpg(child, signal.SIGKILL)
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
