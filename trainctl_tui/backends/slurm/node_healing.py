"""Healing's view of a multi-node Slurm job (remote/healing.py): a job cannot take a node in
place of one it lost, so a node whose training failed for good, or whose runner is gone
without a final status, ends the run: the job is stopped gracefully (every node's runner
gets TERM: they save) and the session says which node, instead of the others waiting in a
collective until the time limit. Within --nodes MIN:MAX the run goes on without it.

The nodes (their addresses, from the head's status.json) and what was decided are kept in
node_healing.json in the local session folder, per job: a resubmitted job starts afresh.
(nodes.json beside it is the node rows every probe rewrites: remote/node_view.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from ...core.atomic import atomic_write_json
from ...core.models import Session
from ...runner.nodes import parse_node_count
from ..remote.healing import HealingNodes

HEALING_FILE = "node_healing.json"


class SlurmNodes(HealingNodes):
    replaces = False

    def __init__(self, provider, session: Session, status: dict, job: str | None):
        self.provider, self.session, self.status, self.job = provider, session, status, job
        self.place = provider.name
        self.no_spare = f"a Slurm job cannot replace a node (job {job})"

    @property
    def path(self) -> Path:
        return Path(self.session.session_dir) / HEALING_FILE

    def nodes(self) -> list[dict]:
        try:
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            kept = {}
        if isinstance(kept, dict) and kept.get("job") == self.job and kept.get("nodes"):
            return kept["nodes"]
        node = self.status.get("node") or {}
        nodes = [{"host": ip} for ip in node.get("ips") or ()]
        if nodes:
            try:
                nodes[0]["min_nodes"] = parse_node_count(node.get("nnodes") or len(nodes))[0]
            except ValueError:
                pass
        return nodes

    def save_nodes(self, nodes: list[dict]) -> None:
        atomic_write_json(self.path, {"job": self.job, "nodes": nodes})

    def spare(self, used: set[str]) -> str | None:
        return None

    async def start(self, rank: int, host: str) -> dict:
        raise NotImplementedError("a Slurm job cannot start a node of its own")

    async def stop(self, ranks: list[int]) -> None:
        """The whole job, gracefully: its batch shell hands TERM to every node's runner."""
        await self.provider.stop(self.session, self.status, force=False)
