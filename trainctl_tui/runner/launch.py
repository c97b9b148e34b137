"""Starting a runner for a session folder: refuse one that is owned, run in the foreground or
detached (double fork) and say when it is ready.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from .processes import pid_alive
from .runner_log import log_stderr
from .spec import SpecError, load_secret_env, load_spec
from .status import FINAL_STATES, read_status
from .supervisor import Supervisor

READY_TIMEOUT_SECONDS = 10.0


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


def prepare(session_dir: str, base_cwd: str | None = None, node=None) -> tuple[dict, dict]:
    """Everything that can fail because of the user, checked before any process starts.
    `node`: this runner's node of a multi-node run (its status lives in its own folder)."""
    if not os.path.isdir(session_dir):
        raise SpecError(f"session directory not found: {session_dir}")
    spec = load_spec(session_dir, base_cwd)
    secret_env = load_secret_env(session_dir)
    folder = node.folder(session_dir) if node else session_dir
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"cannot create {folder}: {exc.strerror}") from None
    refuse_if_owned(folder)
    return spec, secret_env


def run_foreground(session_dir: str, base_cwd: str | None = None, on_ready=None,
                   node=None) -> int:
    spec, secret_env = prepare(session_dir, base_cwd, node)
    if node is not None and node.signals_from:
        # once its signal handlers are in place (a TERM before them would kill it)
        def ready(then=on_ready) -> None:
            node.watch_signals()
            if then:
                then()

        on_ready = ready
    supervisor = Supervisor(session_dir, spec, secret_env, on_ready=on_ready, node=node)
    try:
        return supervisor.run()
    except OSError as exc:
        # Only the strict first status write raises; nothing has been started yet.
        log_stderr(f"cannot start: {exc}")
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


def run_detached(session_dir: str, node=None) -> int:
    """Double-fork so the runner survives the caller, its terminal and its SSH connection.

    The caller returns 0 once the runner has written its first status.json, 1 otherwise.
    """
    base_cwd = os.getcwd()
    prepare(session_dir, base_cwd, node)  # user errors reach the caller's stderr directly
    runner_log = os.path.join(node.folder(session_dir) if node else session_dir, "runner.log")
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
        code = _detached_main(session_dir, base_cwd, runner_log, write_fd, node)
    except BaseException:  # noqa: B036 - the forked child must never return into the caller
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _detached_main(session_dir: str, base_cwd: str, runner_log: str, ready_fd: int,
                   node=None) -> int:
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

    log_stderr(f"runner started for {session_dir}")
    try:
        code = run_foreground(session_dir, base_cwd, on_ready=ready, node=node)
    except SpecError as exc:
        log_stderr(str(exc))
        code = 2
    log_stderr(f"runner done (exit {code})")
    return code
