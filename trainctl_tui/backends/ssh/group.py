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

from ...core.errors import TrainctlError
from ...core.models import Session
from ...runner.nodes import NodeCountError, node_count_text, parse_node_count
from ..base import UnknownProvider
from ..remote.node_group import NodeGroup
from ..remote.runner import remote_path
from ..remote.transport import HostNotFound, resolve_target, ssh_hostname


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


class GroupRun(NodeGroup):
    """The nodes of one session on a group: the hosts chosen, each node's address as ssh
    reaches it; starting, probing and stopping them is remote/node_group.py's."""

    def __init__(self, provider, config, node_provider):
        super().__init__(provider)  # the head's SSHProvider (rank 0)
        self.config = config
        self.node_provider = node_provider  # host -> the provider of a node on that host

    def node(self, host: str):
        return self.node_provider(host)

    async def launch(self, session: Session, hosts: list[str]) -> None:
        """One runner per host, all at once; if one fails to start, those started are
        stopped and the error says so."""
        targets = [resolve_target(host, self.config.ssh.hosts) for host in hosts]
        # Each node's address as ssh reaches it (an alias's HostName): the head's is where
        # the others meet (torchrun's rendezvous, MASTER_ADDR).
        ips = ",".join([ssh_hostname(target.host) for target in targets])
        await self.start(session, hosts, ips, node_count_text(spec_nodes(session) or len(hosts)))


def own_remote_dir(workdir: str, session: Session) -> str:
    return remote_path(workdir, "sessions", session.id)
