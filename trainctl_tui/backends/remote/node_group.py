"""The nodes of one multi-node session, each a runner on a machine of its own reached through
its own transport (ssh hosts of a group, EC2 instances through SSM): started at once with
their rank and every node's address, head first (runner/nodes.py); probed, their logs
mirrored to nodes/R/train.log here; stopped at once. remote.json lists the nodes (`nodes`:
host, remote_dir and runner of each rank). A backend subclasses NodeGroup and says how to
reach the node on a host (`node`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...core import aio
from ...core.atomic import atomic_write_json
from ...core.models import Session
from ...runner.nodes import NODES_DIR
from ..base import ProviderError
from .runner import RemoteLogMirror, remote_nodes


class NodeGroup:
    """Launching, probing and stopping the nodes of one session; `provider` is the head's
    (rank 0), which keeps the session's train.log and status.json as a one-node run would."""

    def __init__(self, provider):
        self.provider = provider

    def node(self, host: str):
        """The provider (a RemoteRunnerProvider) of the node on `host`, rank > 0."""
        raise NotImplementedError

    def node_args(self) -> tuple[str, ...]:
        """Runner arguments every node gets besides its place (a backend may add some)."""
        return ()

    async def start(self, session: Session, hosts: list[str], ips: str, nnodes: str,
                    head: dict | None = None) -> None:
        """One runner per host, all at once, node R told `--node-rank R --node-ips IPS
        --nnodes N`; if one fails to start, those started are stopped and the error says so.
        `head`: more keys for rank 0's entry in remote.json."""
        async def start(rank: int, host: str):
            try:
                return await self.start_node(session, rank, host, ips, nnodes)
            except ProviderError as exc:
                return exc

        results = await aio.gather(*(start(rank, host) for rank, host in enumerate(hosts)))
        failed = [result for result in results if isinstance(result, ProviderError)]
        if failed:
            started = [(rank, result) for rank, result in enumerate(results)
                       if isinstance(result, dict)]
            await self.stop_nodes(session, started, force=True)
            gone = f"; stopped the runners on {', '.join(n['host'] for _, n in started)}" \
                if started else ""
            raise ProviderError(f"{failed[0]}{gone}")
        results[0].update(head or {})
        self.save_nodes(session, results)

    async def start_node(self, session: Session, rank: int, host: str, ips: str,
                         nnodes: str) -> dict:
        """Node `rank`'s runner started on `host`; its remote.json entry."""
        node = self.provider if rank == 0 else self.node(host)
        args = ("--node-rank", str(rank), "--node-ips", ips, "--nnodes", nnodes,
                *self.node_args())
        await node.launch(session, node_args=args, record=False)
        # the head's provider may name a group: the entry names the host
        return {**node.started, "host": host, "started": time.time()}

    @staticmethod
    def save_nodes(session: Session, nodes: list[dict]) -> None:
        """remote.json: the head's entry at the top (where a one-node session has it) and
        every node's under `nodes`."""
        atomic_write_json(Path(session.session_dir) / "remote.json", {**nodes[0], "nodes": nodes})

    @staticmethod
    def nodes_of(session: Session) -> list[dict]:
        return remote_nodes(session)

    async def probe_nodes(self, session: Session, answer: dict) -> None:
        """Each other node's state and log size into the head's probe answer (its `nodes`),
        its log mirrored to nodes/R/train.log here."""
        others = list(enumerate(self.nodes_of(session)))[1:]
        found = await aio.gather(*(self.probe_node(session, rank, node)
                                   for rank, node in others))
        answer["nodes"] = {str(rank): info for (rank, _), info in zip(others, found, strict=True)}

    async def probe_node(self, session: Session, rank: int, node: dict) -> dict:
        reach = self.node(node["host"])
        transport = reach.transport
        try:
            result = await transport.run([reach.python, node["runner"], "--probe",
                                          node["remote_dir"], "--node", str(rank)], timeout=30)
            answer = json.loads(result.stdout)
        except (ProviderError, ValueError) as exc:
            return {"state": None, "alive": False, "error": str(exc), "host": node["host"]}
        folder = Path(session.session_dir) / NODES_DIR / str(rank)
        folder.mkdir(parents=True, exist_ok=True)
        remote_log = f"{node['remote_dir']}/{NODES_DIR}/{rank}/train.log"
        # An offset per host: a node replaced elsewhere has a new log, and a refresh that
        # still probed the old host (another process) copies only what is new there.
        await RemoteLogMirror(transport, remote_log, folder / "train.log",
                              folder / f"remote-{node['host']}.offset").sync(
                                  answer.get("log_size") or 0)
        status = answer.get("status") or {}
        attempts = status.get("attempts") or [{}]
        return {"state": status.get("state"), "reason": status.get("reason"),
                "alive": bool(answer.get("runner_alive")), "host": node["host"],
                "log_size": answer.get("log_size") or 0, "heartbeat": status.get("heartbeat"),
                "exit_code": status.get("exit_code"), "signal": status.get("signal"),
                # when its training started, once it runs: a replacement has joined (healing)
                "training_started": attempts[-1].get("started")
                if status.get("state") == "running" and answer.get("child_alive") else None,
                # for the session screen's node rows (remote/node_view.py)
                "heartbeat_age": answer.get("heartbeat_age"), "usage": answer.get("usage")}

    async def stop_nodes(self, session: Session, nodes: list[tuple[int, dict]], *,
                         force: bool) -> None:
        """Nodes (rank, its remote.json entry) told to stop at once (graceful unless
        force)."""
        async def stop(rank: int, node: dict) -> None:
            reach = self.node(node["host"])
            command = [reach.python, node["runner"], "--stop", node["remote_dir"],
                       "--node", str(rank)] + (["--force"] if force else [])
            try:
                await reach.transport.run(command, timeout=session.grace_seconds + 30)
            except ProviderError:
                pass  # an unreachable node: the others still stop; its state says the rest

        await aio.gather(*(stop(rank, node) for rank, node in nodes))


def spec_nodes(session: Session):
    """The launch's --nodes as the session's spec.json holds it (None: not given)."""
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return None
    return (spec.get("backend_options") or {}).get("nodes")


def lost_nodes_detail(status: dict) -> str | None:
    """A run held for its other nodes, one of which is gone: which (the session's detail
    when it is lost), else None."""
    if status.get("lost_nodes"):
        return f"{status['lost_nodes']} ({status.get('reason')})"
    return None
