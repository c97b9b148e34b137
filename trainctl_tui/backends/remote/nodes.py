"""A multi-node session seen through its head's probe, for backends whose nodes share the
session folder (a cluster's shared filesystem): the other nodes' logs mirrored beside the
head's (nodes/R/train.log in the local session folder), and a head that has ended held as
running (or stopping) until every node has, so the run ends only when all nodes have."""

from __future__ import annotations

from pathlib import Path

from ...runner.nodes import NODES_DIR
from ...runner.status import FINAL_STATES

# A node whose status.json was written this recently (seconds) counts as alive.
NODE_ALIVE_SECONDS = 60.0


def node_count(status: dict | None) -> int:
    """How many nodes the head's status.json says the run has (1 for a one-node run)."""
    node = (status or {}).get("node")
    return len(node.get("ips") or ()) if isinstance(node, dict) else 1


def waiting_nodes(status: dict | None, nodes: dict, skip=()) -> list[str]:
    """The ranks (past the head) whose runners have not ended yet, but those in `skip`
    (nodes lost that the run goes on without)."""
    return [str(rank) for rank in range(1, node_count(status))
            if (nodes.get(str(rank)) or {}).get("state") not in FINAL_STATES
            and str(rank) not in skip]


def hold_for_nodes(answer: dict, skip=()) -> None:
    """In a probe's answer: a head that has ended while other nodes run on is shown as
    running (stopping, for a stop) with who is awaited; it lives while they beat. While the
    head runs, a node whose runner is gone without a final state is named in the detail.
    Ranks in `skip` are not waited for."""
    status, nodes = answer.get("status"), answer.get("nodes") or {}
    if not status:
        return
    waiting = waiting_nodes(status, nodes, skip)
    gone = [rank for rank in waiting
            if (nodes.get(rank) or {}).get("state") and not alive(nodes[rank])]
    state = status.get("state")
    if state not in FINAL_STATES:
        if gone and state == "running":
            answer["status"] = {**status, "reason": gone_line(gone, nodes)}
        return
    if not waiting:
        return
    answer["status"] = {**status, "state": "running" if state == "succeeded" else "stopping",
                        "ended": None, "lost_nodes": gone_line(gone, nodes) if gone else None,
                        "reason": f"node 0 {state}; waiting for node {', '.join(waiting)}"}
    answer["runner_alive"] = any(alive(nodes.get(rank) or {}) for rank in waiting)


def gone_line(ranks: list[str], nodes: dict) -> str:
    """'node 1 (on b) is gone without a final status' for the session's detail."""
    names = [f"{rank} (on {nodes[rank]['host']})" if nodes[rank].get("host") else rank
             for rank in ranks]
    verb = "is" if len(ranks) == 1 else "are"
    return f"node {', '.join(names)} {verb} gone without a final status"


def alive(node: dict) -> bool:
    """A node's runner lives: its own probe says so (a host of its own), or its status.json
    was written lately (a folder shared with the head)."""
    age = node.get("age")
    return bool(node.get("alive")) or (age is not None and age < NODE_ALIVE_SECONDS)


def node_logs(remote_dir: str, session_dir: str, nodes: dict) -> list[tuple]:
    """(remote train.log, local copy, its offset file, remote size) of each other node:
    node R's log is mirrored to nodes/R/train.log in the local session folder."""
    found = []
    for rank, info in sorted(nodes.items()):
        folder = Path(session_dir) / NODES_DIR / rank
        folder.mkdir(parents=True, exist_ok=True)
        found.append((f"{remote_dir}/{NODES_DIR}/{rank}/train.log", folder / "train.log",
                      folder / "remote.offset", int(info.get("log_size") or 0)))
    return found
