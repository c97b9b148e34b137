"""The runner's command line: ``[--detach] SESSION_DIR | --probe SESSION_DIR |
--stop SESSION_DIR [--force]``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from .checkpoint_files import checkpoint_step, find_newest_checkpoint
from .gpu_sampler import PROBE_SAMPLES, read_usage
from .launch import run_detached, run_foreground
from .processes import marked_pids, pid_alive, signal_training
from .spec import SpecError, load_spec
from .status import read_status


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
        # GPUs, CPU and memory with the newest samples: the app keeps the ring (no extra trip)
        "usage": read_usage(session_dir, samples=PROBE_SAMPLES),
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
        # Compact: over SSM the answer and a slice of the log share 24,000 characters.
        sys.stdout.write(json.dumps(probe(os.path.abspath(args[1])), separators=(",", ":")) + "\n")
        return 0
    if args[:1] == ["--stop"] and len(args) in (2, 3):
        sys.stdout.write(stop(os.path.abspath(args[1]), "--force" in args[2:]) + "\n")
        return 0
    detach = "--detach" in args
    args = [a for a in args if a != "--detach"]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: trainctl-runner.pyz [--detach] SESSION_DIR | "
                         "--probe SESSION_DIR | --stop SESSION_DIR [--force]\n")
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
