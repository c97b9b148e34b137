"""Processes of a session: liveness by pid and start time, the session's marked processes
(found in /proc), signals to the training's process group and to what escaped it.
"""

from __future__ import annotations

import os
import shlex
import signal

from .bundle import RUNNER_NAME
from .lazy_import import OnFirstUse

subprocess = OnFirstUse("subprocess", globals())


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


# A runner's command line names its zipapp (or, before the zipapp, supervisor.py).
RUNNER_FILE_ENDINGS = (RUNNER_NAME.encode(), b"supervisor.py")
SESSION_ENV = "TRAINCTL_SESSION_ID"  # marks every process a session's training starts
NODE_RANK_ENV = "TRAINCTL_NODE_RANK"  # and, in a multi-node run, which node started it


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


def marked_pids(session_id: str, rank: int | None = None) -> list[int]:
    """Live processes whose environment carries this session's mark: the training and all
    it started, including those that left its process group (setsid, double fork) but not
    those that cleared their environment. Zombies have an empty environ and are left out.
    `rank`: only node `rank`'s (several nodes of a run may share a machine)."""
    marks = [f"{SESSION_ENV}={session_id}".encode()]
    if rank is not None:
        marks.append(f"{NODE_RANK_ENV}={rank}".encode())
    own = os.getpid()
    found = []
    for pid in _all_pids():
        if pid != own:
            environ = _proc_read(pid, "environ").split(b"\0")
            if all(mark in environ for mark in marks):
                found.append(pid)
    return found


def runner_pids(session_dir: str) -> list[int]:
    """Live runners of this session folder (found by their command line: the runner itself
    does not carry the mark)."""
    folder = os.path.abspath(session_dir).encode()
    found = []
    for pid in _all_pids():
        args = _proc_read(pid, "cmdline").split(b"\0")
        if pid != os.getpid() and folder in args and any(
                arg.endswith(RUNNER_FILE_ENDINGS) for arg in args):
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


def signal_training(pgid: int | None, session_id: str, signum: int,
                    rank: int | None = None) -> None:
    """`signum` to the training's process group and to every process it started that left
    the group (setsid, double fork, setpgid) but still carries the session's mark (and
    node `rank`'s, when given)."""
    if pgid:
        try:
            os.killpg(pgid, signum)
        except OSError:
            pass
    signal_escaped(pgid, session_id, signum, rank)


def signal_escaped(pgid: int | None, session_id: str, signum: int,
                   rank: int | None = None) -> None:
    """`signum` to the session's marked processes outside process group `pgid`: those in it
    got the group's signal, and a second SIGTERM can kill a training that is saving."""
    for pid in marked_pids(session_id, rank):
        try:
            if pgid is None or os.getpgid(pid) != pgid:
                os.kill(pid, signum)
        except OSError:
            pass


def quote_command(command: list[str]) -> str:
    # shlex.join needs Python 3.8; some hosts (Amazon Linux 2) still ship 3.7.
    return " ".join(shlex.quote(tok) for tok in command)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
