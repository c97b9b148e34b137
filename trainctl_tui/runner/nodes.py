"""One node of a multi-node run: where its runner keeps its status and log, the environment
its command gets (TRAINCTL_NODE_RANK, TRAINCTL_NUM_NODES, TRAINCTL_NODE_IPS, MASTER_ADDR,
MASTER_PORT), and the c10d rendezvous added to a torchrun command.

A runner learns its place from its command line (`--node-rank R --node-ips HEAD,B,...
--nnodes N|MIN:MAX`), given by the backend that starts it; it never asks a scheduler.
Rank 0 keeps the session's own status.json and train.log, so everything that watches a
one-node session watches a multi-node one through its head; node R > 0 writes them in
nodes/R/. Stdlib only, Python 3.7+, like the rest of the runner."""

from __future__ import annotations

import os
import signal

from .processes import NODE_RANK_ENV

NODES_DIR = "nodes"
RDZV_PORT = 29400  # torchrun's c10d rendezvous on the head node
MASTER_PORT = 29500  # torch.distributed's default, for launchers that read MASTER_*
# torchrun options that take no value (every other option takes one).
TORCHRUN_FLAGS = {"--standalone", "--no-python", "--no_python", "-m", "--module",
                  "--run-path", "--run_path"}
TORCHRUN_MODULE = "torch.distributed.run"
SHARED_STORE_OFF = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"
# A line "TERM 1733370000" in a signals file asks a node's runner for that signal: how a batch
# shell reaches runners on other nodes without signalling their trainings too (a scheduler's
# signal to a job step reaches every process in it).
FILE_SIGNALS = {"TERM": signal.SIGTERM, "USR1": signal.SIGUSR1}
SIGNALS_POLL_SECONDS = 0.5


class NodeCountError(ValueError):
    """A node count that is neither N nor MIN:MAX; the message says what was given."""


def parse_node_count(text) -> tuple:
    """'2' -> (2, 2), '2:4' -> (2, 4); NodeCountError for anything else."""
    raw = str(text).strip()
    low, sep, high = raw.partition(":")
    try:
        pair = (int(low), int(high if sep else low))
    except ValueError:
        raise NodeCountError(f"--nodes must be N or MIN:MAX, not '{raw}'") from None
    if pair[0] < 1 or pair[1] < pair[0]:
        raise NodeCountError(f"--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '{raw}'")
    return pair


def node_count_text(text) -> str:
    """The count as torchrun's --nnodes takes it: '2', or '2:4'."""
    low, high = parse_node_count(text)
    return str(low) if low == high else f"{low}:{high}"


def several(text) -> bool:
    """Whether a --nodes value asks for more than one node."""
    return text is not None and parse_node_count(text)[1] > 1


def node_folder(session_dir: str, rank: int) -> str:
    """Where node `rank`'s runner keeps status.json, train.log and runner.log."""
    if not rank:
        return session_dir
    return os.path.join(session_dir, NODES_DIR, str(rank))


class Node:
    """This runner's place in the run: its rank, every node's address (head first) and the
    node count asked for (torchrun's --nnodes: 'N' or 'MIN:MAX')."""

    def __init__(self, rank: int, ips: list, nnodes: str | None = None,
                 signals_from: str | None = None, restarts: int | None = None):
        if not ips or any(not ip or "," in ip for ip in ips):
            raise NodeCountError(f"bad node addresses {','.join(ips)!r}")
        if not 0 <= rank < len(ips):
            raise NodeCountError(f"node rank {rank} is not one of the {len(ips)} nodes")
        self.rank = rank
        self.ips = list(ips)
        self.nnodes = node_count_text(nnodes if nnodes is not None else len(ips))
        self.signals_from = signals_from  # a file whose new lines are signals for this runner
        # torchrun's --max-restarts, from a backend that replaces lost nodes: a node lost
        # fails the others' workers, and their agents restart them into a new rendezvous
        # (with the replacement) instead of ending the run.
        self.restarts = restarts

    @property
    def head(self) -> str:
        return self.ips[0]

    def folder(self, session_dir: str) -> str:
        return node_folder(session_dir, self.rank)

    def env(self) -> dict:
        env = {NODE_RANK_ENV: str(self.rank), "TRAINCTL_NUM_NODES": str(len(self.ips)),
               "TRAINCTL_NODE_IPS": ",".join(self.ips), "MASTER_ADDR": self.head,
               "MASTER_PORT": str(MASTER_PORT)}
        if self.restarts is not None:
            # A node that joins a later round (a replacement) waits for the workers' store
            # address, which an agent sharing its rendezvous store writes in its first round
            # only (torch 2.x): without sharing, rank 0 writes it every round.
            env[SHARED_STORE_OFF] = "1"
        return env

    def command(self, command: list, session_id: str) -> list:
        """`command`, with the c10d rendezvous added when it is torchrun."""
        return with_rendezvous(command, self.nnodes, self.head, session_id, self.rank,
                               self.restarts)

    def watch_signals(self, interval: float = SIGNALS_POLL_SECONDS) -> None:
        """Each line of the signals file (from its start: the file is new for each job)
        becomes that signal to this runner, from a daemon thread."""
        import threading
        import time

        def watch() -> None:
            seen = 0
            while True:
                for line in read_lines(self.signals_from)[seen:]:
                    seen += 1
                    signum = FILE_SIGNALS.get(line.split()[0] if line.split() else "")
                    if signum is not None:
                        os.kill(os.getpid(), signum)
                time.sleep(interval)

        threading.Thread(target=watch, name="trainctl-node-signals", daemon=True).start()

    def describe(self) -> dict:
        """The node's part of status.json."""
        return {"rank": self.rank, "ips": self.ips, "nnodes": self.nnodes}


def read_lines(path: str) -> list:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return []
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]  # whole lines


def torchrun_args_at(command: list):
    """Where torchrun's own arguments start in `command` (`torchrun ...` or `python -m
    torch.distributed.run ...`), or None when the command is not torchrun."""
    if not command:
        return None
    program = os.path.basename(command[0])
    if program == "torchrun":
        return 1
    if program.startswith("python"):
        for at, word in enumerate(command[1:-1], start=1):
            if word == "-m":
                return at + 2 if command[at + 1] == TORCHRUN_MODULE else None
            if not word.startswith("-"):
                return None  # a script: python train.py
    return None


def torchrun_options(command: list) -> dict:
    """torchrun's own options, before the training script: {'--nnodes': '2', ...} with
    '_' spelled '-' ('--rdzv_id' is '--rdzv-id'); {} when it is not torchrun."""
    at = torchrun_args_at(command)
    if at is None:
        return {}
    found = {}
    words = command[at:]
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-"):
            break  # the training script: what follows is its own
        name, sep, value = word.partition("=")
        name = "--" + name.lstrip("-").replace("_", "-") if name.startswith("--") else name
        if sep:
            found[name] = value
            i += 1
        elif word in TORCHRUN_FLAGS:
            found[name] = ""
            i += 1
            if word in ("-m", "--module"):
                break
        else:
            found[name] = words[i + 1] if i + 1 < len(words) else ""
            i += 2
    return found


def nnodes_conflict(command: list, nodes) -> str | None:
    """One line when a torchrun command's own --nnodes disagrees with --nodes, else None."""
    own = torchrun_options(command).get("--nnodes")
    if own is None or nodes is None:
        return None
    try:
        agrees = parse_node_count(own) == parse_node_count(nodes)
    except NodeCountError:
        agrees = False
    if agrees:
        return None
    return (f"torchrun --nnodes {own} disagrees with --nodes {node_count_text(nodes)}: "
            "drop torchrun's --nnodes (trainctl adds it) or give the same count")


def with_rendezvous(command: list, nnodes: str, head: str, session_id: str,
                    rank: int | None = None, restarts: int | None = None) -> list:
    """A torchrun command with --nnodes, --rdzv-backend c10d, --rdzv-endpoint HEAD:29400 and
    --rdzv-id SESSION added where the user did not give them; any other command unchanged.
    With c10d, node `rank` 0 hosts the rendezvous store (--rdzv-conf is_host=1, the others
    0): torchrun would guess from the endpoint's host, which fails where the head's address
    is not one its own hostname resolves to, and races where nodes share a machine.
    `restarts`: --max-restarts added unless given (a backend that heals nodes)."""
    at = torchrun_args_at(command)
    if at is None:
        return list(command)
    given = torchrun_options(command)
    added = []
    for name, value in (("--nnodes", nnodes), ("--rdzv-backend", "c10d"),
                        ("--rdzv-endpoint", f"{head}:{RDZV_PORT}"),
                        ("--rdzv-id", session_id),
                        *((("--max-restarts", str(restarts)),) if restarts is not None else ())):
        if name not in given:
            added += [name, value]
    if rank is not None and given.get("--rdzv-backend", "c10d") == "c10d" and \
            "--rdzv-conf" not in given:
        added += ["--rdzv-conf", f"is_host={1 if rank == 0 else 0}"]
    return command[:at] + added + command[at:]


def parse_node_args(args: list):
    """(Node or None, the other arguments) from the runner's command line; NodeCountError
    for a malformed one."""
    values = {}
    rest = []
    i = 0
    while i < len(args):
        if args[i] in ("--node-rank", "--node-ips", "--nnodes", "--signals-from",
                       "--node-restarts"):
            if i + 1 >= len(args):
                raise NodeCountError(f"{args[i]} needs a value")
            values[args[i]] = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    if not values:
        return None, rest
    if "--node-rank" not in values or "--node-ips" not in values:
        raise NodeCountError("--node-rank and --node-ips go together")
    try:
        rank = int(values["--node-rank"])
    except ValueError:
        raise NodeCountError(f"bad node rank {values['--node-rank']!r}") from None
    restarts = values.get("--node-restarts")
    if restarts is not None and not restarts.isdigit():
        raise NodeCountError(f"bad --node-restarts {restarts!r}")
    ips = [ip.strip() for ip in values["--node-ips"].split(",")]
    return Node(rank, ips, values.get("--nnodes"), values.get("--signals-from"),
                int(restarts) if restarts is not None else None), rest
