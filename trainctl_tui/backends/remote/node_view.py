"""Each node of a multi-node run as the last probe saw it, kept in the session folder for the
front ends: nodes.json (rank, host, state, heartbeat age, whether its runner answers) and
node R's GPU samples in nodes/R/usage.json (the head's stay in the session's usage.json).

The app reads them from the folder (app/nodes.py), as it reads usage.json and figures.json:
the probe's answer never leaves the backend."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...core.atomic import atomic_write
from ...core.models import Session
from ...runner.gpu_sampler import USAGE_FILE, merge_usage, read_usage
from ...runner.nodes import NODES_DIR
from .nodes import alive, node_count

NODES_FILE = "nodes.json"
VERSION = 1


def keep_nodes(session: Session, answer: dict, hosts: list[str] | None = None) -> None:
    """Write nodes.json (and each other node's usage) from a probe's answer, before the
    answer is held for the nodes still running: rank 0's row is the head's own state.
    `hosts`: each rank's host name where the backend names them (an SSH group)."""
    status = answer.get("status")
    count = node_count(status)
    if not status or count < 2:
        return
    ips = (status.get("node") or {}).get("ips") or []
    nodes = answer.get("nodes") or {}
    head = {"state": status.get("state"), "reason": status.get("reason"),
            "exit_code": status.get("exit_code"), "heartbeat_age": answer.get("heartbeat_age"),
            "answering": bool(answer.get("runner_alive"))}
    rows = [{"rank": 0, **head}]
    for rank in range(1, count):
        node = nodes.get(str(rank)) or {}
        age = node.get("heartbeat_age", node.get("age"))
        rows.append({"rank": rank, "state": node.get("state"), "reason": node.get("reason"),
                     "exit_code": node.get("exit_code"), "heartbeat_age": age,
                     "answering": alive(node), "error": node.get("error")})
        keep_node_usage(session, rank, node.get("usage"))
    for row in rows:
        rank = row["rank"]
        known = hosts[rank] if hosts and rank < len(hosts) else None
        row["host"] = known or (nodes.get(str(rank)) or {}).get("host") or \
            (ips[rank] if rank < len(ips) else None)
    data = {"version": VERSION, "at": time.time(), "nodes": rows}
    try:
        atomic_write(Path(session.session_dir) / NODES_FILE, json.dumps(data), durable=False)
    except OSError:
        pass  # a view: a full disk must not break a refresh


def keep_node_usage(session: Session, rank: int, usage) -> None:
    """Node `rank`'s newest samples laid over its copy in nodes/R/usage.json."""
    if not isinstance(usage, dict):
        return
    folder = Path(session.session_dir) / NODES_DIR / str(rank)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        merged = merge_usage(read_usage(str(folder)), usage)
        atomic_write(folder / USAGE_FILE, json.dumps(merged, separators=(",", ":")),
                     durable=False)
    except OSError:
        pass
