"""The runner's command line: ``[--detach] SESSION_DIR [NODE] | --probe SESSION_DIR [--node R]
| --stop SESSION_DIR [--node R] [--force]``, where NODE (one node of a multi-node run) is
``--node-rank R --node-ips HEAD,B,... [--nnodes N|MIN:MAX]`` (runner/nodes.py).
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
from .nodes import NODES_DIR, NodeCountError, node_folder, parse_node_args
from .processes import marked_pids, pid_alive, signal_training
from .spec import SpecError, load_spec
from .status import read_status
from .step_times import newest_records


def probe(session_dir: str, rank: int = 0) -> dict:
    """What a remote trainctl needs in one round trip: the status and who is alive (of node
    `rank`'s runner in a multi-node run)."""
    folder = node_folder(session_dir, rank)
    status = read_status(folder)
    alive = bool(status) and pid_alive(status.get("runner_pid"), status.get("runner_start"))
    if status and not alive:
        status = read_status(folder)  # it may have written its final status and exited
    log = os.path.join(folder, "train.log")
    return {
        "status": status,
        "nodes": {} if rank else node_states(session_dir),
        "newest_checkpoint": _newest_checkpoint_info(session_dir),
        "runner_alive": alive,
        "child_alive": bool(status) and pid_alive(status.get("child_pid"),
                                                  status.get("child_start")),
        "log_size": os.path.getsize(log) if os.path.exists(log) else 0,
        # GPUs, CPU and memory with the newest samples: the app keeps the ring (no extra trip)
        "usage": read_usage(folder, samples=PROBE_SAMPLES),
        # When steps were reached (steps.jsonl): the app keeps its copy of the file
        "steps": newest_records(folder),
        # as this machine's clock sees it: the asker's clock may differ
        "heartbeat_age": beat_age(status),
    }


def node_states(session_dir: str) -> dict:
    """{rank: state, heartbeat and log size} of the other nodes' runners whose folders are
    here (a shared filesystem): the head's probe tells whether all of them have ended."""
    found = {}
    try:
        ranks = sorted(int(n) for n in os.listdir(os.path.join(session_dir, NODES_DIR))
                       if n.isdigit())
    except OSError:
        return found
    for rank in ranks:
        folder = node_folder(session_dir, rank)
        status = read_status(folder) or {}
        log = os.path.join(folder, "train.log")
        found[str(rank)] = {"state": status.get("state"), "reason": status.get("reason"),
                            "age": beat_age(status), "heartbeat": status.get("heartbeat"),
                            "exit_code": status.get("exit_code"), "signal": status.get("signal"),
                            "log_size": os.path.getsize(log) if os.path.exists(log) else 0,
                            "usage": read_usage(folder, samples=1)}
    return found


def beat_age(status) -> float | None:
    """Seconds since the runner's last heartbeat (None before it wrote one)."""
    beat = (status or {}).get("heartbeat")
    return time.time() - beat if isinstance(beat, (int, float)) else None


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


def stop(session_dir: str, force: bool, rank: int | None = None) -> str:
    """Ask the runner to stop (SIGTERM: graceful, SIGUSR1: now); if the runner is gone but its
    training is not, stop that process group itself (SIGTERM, grace, SIGKILL). `rank`: node
    `rank`'s runner of a multi-node run."""
    status = read_status(node_folder(session_dir, rank or 0)) or {}
    if pid_alive(status.get("runner_pid"), status.get("runner_start")):
        os.kill(status["runner_pid"], signal.SIGUSR1 if force else signal.SIGTERM)
        return "runner signalled"
    child, token = status.get("child_pid"), status.get("child_start")
    session_id = str(status.get("session_id") or os.path.basename(session_dir))
    if not pid_alive(child, token):
        child = None
        if not marked_pids(session_id, rank):
            return "not running"
    signal_training(child, session_id, signal.SIGKILL if force else signal.SIGTERM, rank)
    try:
        grace = float(load_spec(session_dir).get("grace_seconds", 30))
    except SpecError:
        grace = 30.0
    deadline = time.time() + (0 if force else grace)
    while time.time() < deadline and (pid_alive(child, token) or marked_pids(session_id, rank)):
        time.sleep(0.2)
    signal_training(child if pid_alive(child, token) else None, session_id, signal.SIGKILL,
                    rank)
    return "orphaned training stopped"


USAGE = ("usage: trainctl-runner.pyz [--detach] SESSION_DIR [--node-rank R --node-ips "
         "HEAD,B,... [--nnodes N|MIN:MAX]] | --probe SESSION_DIR [--node R] | "
         "--stop SESSION_DIR [--node R] [--force]\n")


def node_option(args: list) -> tuple:
    """(rank or None, the other arguments) for `--node R` of --probe and --stop."""
    if "--node" not in args:
        return None, args
    at = args.index("--node")
    value = args[at + 1] if at + 1 < len(args) else ""
    if not value.isdigit():
        raise NodeCountError(f"bad node rank {value!r}")
    return int(value), args[:at] + args[at + 2:]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] in (["--probe"], ["--stop"]):
            rank, args = node_option(args)
        else:
            node, args = parse_node_args(args)
    except NodeCountError as exc:
        sys.stderr.write(f"trainctl runner: {exc}\n")
        return 2
    if args[:1] == ["--probe"] and len(args) == 2:
        # Compact: over SSM the answer and a slice of the log share 24,000 characters.
        sys.stdout.write(json.dumps(probe(os.path.abspath(args[1]), rank or 0),
                                    separators=(",", ":")) + "\n")
        return 0
    if args[:1] == ["--stop"] and len(args) in (2, 3):
        sys.stdout.write(stop(os.path.abspath(args[1]), "--force" in args[2:], rank) + "\n")
        return 0
    detach = "--detach" in args
    args = [a for a in args if a != "--detach"]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    session_dir = os.path.abspath(args[0])
    try:
        if detach:
            return run_detached(session_dir, node)
        return run_foreground(session_dir, node=node)
    except SpecError as exc:
        sys.stderr.write(f"trainctl runner: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
