"""Several SSH hosts, one run: `--provider ssh:GROUP` (an [ssh.groups.NAME] of host names) or
`ssh:a,b,c`, with `--nodes N` (default: every host of the group).

Node R's runner runs on the group's R-th host, in that host's own workdir, started with its
rank and every node's address, head first (runner/nodes.py); the head is rank 0 and keeps the
session's train.log and status.json as a one-host session would. remote.json lists the nodes
(`nodes`: host, remote_dir and runner of each rank). Every refresh probes each node; node R's
log is mirrored to nodes/R/train.log here, and the run ends only when every node has."""

from __future__ import annotations

import json
from pathlib import Path

from ...core import aio
from ...core.errors import TrainctlError
from ...core.models import Session
from ...runner.nodes import NODES_DIR, NodeCountError, node_count_text, parse_node_count
from ..base import ProviderError, UnknownProvider
from ..remote.runner import RemoteLogMirror, remote_info, remote_path
from ..remote.transport import HostNotFound, SSHTransport, resolve_target, ssh_hostname


def group_hosts(name: str, config) -> list[str] | None:
    """The host names a provider target means when it is a group ('a,b,c' or an
    [ssh.groups] name), each checked; None for a single host."""
    if "," in name:
        hosts, what = [host.strip() for host in name.split(",")], f"ssh:{name}"
        if not all(hosts):
            raise UnknownProvider(f"ssh:{name} has an empty host name (write ssh:a,b,c)")
    elif name in config.ssh.groups:
        hosts, what = list(config.ssh.groups[name].hosts), f"ssh group '{name}'"
        if not hosts:
            raise UnknownProvider(f"{what} has no hosts: give [ssh.groups.{name}] hosts = "
                                  "[\"a\", \"b\"]")
    else:
        return None
    for host in hosts:
        try:
            resolve_target(host, config.ssh.hosts)
        except HostNotFound:
            raise UnknownProvider(f"{what} names an unknown host '{host}' (not in [ssh.hosts] "
                                  "of the config nor an alias in ~/.ssh/config)") from None
    if len(set(hosts)) != len(hosts):
        raise UnknownProvider(f"{what} names a host twice: {', '.join(hosts)}")
    return hosts


def chosen_hosts(name: str, hosts: list[str] | None, nodes) -> list[str] | None:
    """The hosts a launch with `--nodes` (None: every host) runs on; one line when the
    group has too few, or one host is asked for several nodes."""
    if nodes is None:
        return hosts
    try:
        low, high = parse_node_count(nodes)
    except NodeCountError as exc:
        raise TrainctlError(str(exc)) from None
    if hosts is None:
        if high > 1:
            raise TrainctlError(f"--nodes {node_count_text(nodes)} needs several hosts; "
                                f"ssh:{name} is one: name a group ([ssh.groups.NAME] hosts = "
                                "[...]) or --provider ssh:a,b")
        return None
    if low > len(hosts):
        raise TrainctlError(f"--nodes {node_count_text(nodes)} needs {low} hosts; ssh:{name} "
                            f"has {len(hosts)} ({', '.join(hosts)})")
    return hosts[:high]


def spec_nodes(session: Session):
    """The launch's --nodes as the session's spec.json holds it (None: not given)."""
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return None
    return (spec.get("backend_options") or {}).get("nodes")


class GroupRun:
    """The nodes of one session on a group: launching, probing and stopping them."""

    def __init__(self, provider, config, node_provider):
        self.provider = provider  # the head's SSHProvider (rank 0)
        self.config = config
        self.node_provider = node_provider  # host -> the provider of a node on that host

    async def launch(self, session: Session, hosts: list[str]) -> None:
        """One runner per host, all at once; if one fails to start, those started are
        stopped and the error says so."""
        targets = [resolve_target(host, self.config.ssh.hosts) for host in hosts]
        # Each node's address as ssh reaches it (an alias's HostName): the head's is where
        # the others meet (torchrun's rendezvous, MASTER_ADDR).
        ips = ",".join([ssh_hostname(target.host) for target in targets])
        nnodes = node_count_text(spec_nodes(session) or len(hosts))

        async def start(rank: int, host: str):
            node = self.provider if rank == 0 else self.node_provider(host)
            args = ("--node-rank", str(rank), "--node-ips", ips, "--nnodes", nnodes)
            try:
                await node.launch(session, node_args=args, record=False)
            except ProviderError as exc:
                return exc
            return {**node.started, "host": host}  # the head's provider is named by the group

        results = await aio.gather(*(start(rank, host) for rank, host in enumerate(hosts)))
        failed = [result for result in results if isinstance(result, ProviderError)]
        if failed:
            started = [(rank, result) for rank, result in enumerate(results)
                       if isinstance(result, dict)]
            await self.stop_nodes(session, started, force=True)
            gone = f"; stopped the runners on {', '.join(n['host'] for _, n in started)}" \
                if started else ""
            raise ProviderError(f"{failed[0]}{gone}")
        info = {**results[0], "nodes": results}
        (Path(session.session_dir) / "remote.json").write_text(json.dumps(info))

    @staticmethod
    def nodes_of(session: Session) -> list[dict]:
        return (remote_info(session) or {}).get("nodes") or []

    async def probe_nodes(self, session: Session, answer: dict) -> None:
        """Each other node's state and log size into the head's probe answer (its `nodes`),
        its log mirrored to nodes/R/train.log here."""
        others = list(enumerate(self.nodes_of(session)))[1:]
        found = await aio.gather(*(self.probe_node(session, rank, node)
                                   for rank, node in others))
        answer["nodes"] = {str(rank): info for (rank, _), info in zip(others, found, strict=True)}

    async def probe_node(self, session: Session, rank: int, node: dict) -> dict:
        transport = self.transport(node["host"])
        try:
            result = await transport.run([self.python(node["host"]), node["runner"], "--probe",
                                          node["remote_dir"], "--node", str(rank)], timeout=30)
            answer = json.loads(result.stdout)
        except (ProviderError, ValueError) as exc:
            return {"state": None, "alive": False, "error": str(exc), "host": node["host"]}
        folder = Path(session.session_dir) / NODES_DIR / str(rank)
        folder.mkdir(parents=True, exist_ok=True)
        remote_log = f"{node['remote_dir']}/{NODES_DIR}/{rank}/train.log"
        await RemoteLogMirror(transport, remote_log, folder / "train.log",
                              folder / "remote.offset").sync(answer.get("log_size") or 0)
        status = answer.get("status") or {}
        return {"state": status.get("state"), "reason": status.get("reason"),
                "alive": bool(answer.get("runner_alive")), "host": node["host"],
                "log_size": answer.get("log_size") or 0,
                # for the session screen's node rows (remote/node_view.py)
                "heartbeat_age": answer.get("heartbeat_age"), "exit_code": status.get("exit_code"),
                "usage": answer.get("usage")}

    async def stop_nodes(self, session: Session, nodes: list[tuple[int, dict]], *,
                         force: bool) -> None:
        """Nodes (rank, its remote.json entry) told to stop at once (graceful unless
        force)."""
        async def stop(rank: int, node: dict) -> None:
            command = [self.python(node["host"]), node["runner"], "--stop", node["remote_dir"],
                       "--node", str(rank)] + (["--force"] if force else [])
            try:
                await self.transport(node["host"]).run(command,
                                                       timeout=session.grace_seconds + 30)
            except ProviderError:
                pass  # an unreachable node: the others still stop; its state says the rest

        await aio.gather(*(stop(rank, node) for rank, node in nodes))

    def transport(self, host: str) -> SSHTransport:
        return SSHTransport(resolve_target(host, self.config.ssh.hosts))

    def python(self, host: str) -> str:
        return resolve_target(host, self.config.ssh.hosts).python


def own_remote_dir(workdir: str, session: Session) -> str:
    return remote_path(workdir, "sessions", session.id)
