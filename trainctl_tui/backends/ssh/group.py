"""Several SSH hosts, one run: `--provider ssh:GROUP` (an [ssh.groups.NAME] of host names) or
`ssh:a,b,c`, with `--nodes N` (default: every host of the group).

Node R's runner runs on the group's R-th host, in that host's own workdir, started with its
rank and every node's address, head first (runner/nodes.py); the head is rank 0 and keeps the
session's train.log and status.json as a one-host session would. remote.json lists the nodes
(`nodes`: host, remote_dir and runner of each rank). Every refresh probes each node; node R's
log is mirrored to nodes/R/train.log here, and the run ends only when every node has.

A node lost is healed (backends/remote/healing.py): a runner for its rank starts on the
group's next free host (a group listing more hosts than --nodes uses has spares), bounded by
`[ssh] max_resumes`; its entry in remote.json then names the new host."""

from __future__ import annotations

from ...core.errors import TrainctlError
from ...core.models import Session
from ...runner.nodes import NodeCountError, node_count_text, parse_node_count
from ..base import UnknownProvider
from ..remote.healing import HealingNodes, note_moved
from ..remote.node_group import NodeGroup, spec_nodes
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


class GroupRun(NodeGroup):
    """The nodes of one session on a group: the hosts chosen, each node's address as ssh
    reaches it; starting, probing and stopping them is remote/node_group.py's."""

    def __init__(self, provider, config, node_provider, hosts: list[str] | None = None):
        super().__init__(provider)  # the head's SSHProvider (rank 0)
        self.config = config
        self.node_provider = node_provider  # host -> the provider of a node on that host
        self.hosts = hosts or []  # the group's hosts, spares included

    def node(self, host: str):
        return self.node_provider(host)

    async def launch(self, session: Session, hosts: list[str]) -> None:
        """One runner per host, all at once; if one fails to start, those started are
        stopped and the error says so."""
        ips = ",".join(self.addresses(hosts))
        nnodes = node_count_text(spec_nodes(session) or len(hosts))
        await self.start(session, hosts, ips, nnodes,
                         head={"min_nodes": parse_node_count(nnodes)[0]})

    def node_args(self) -> tuple[str, ...]:
        # torchrun's own restarts, so a replacement joining makes the workers start again
        return ("--node-restarts", str(self.config.ssh.max_resumes))

    def addresses(self, hosts: list[str]) -> list[str]:
        """Each node's address as ssh reaches it (an alias's HostName): the head's is where
        the others meet (torchrun's rendezvous, MASTER_ADDR)."""
        return [ssh_hostname(resolve_target(host, self.config.ssh.hosts).host)
                for host in hosts]

    def healing(self, session: Session, probed_started: float | None = None) -> SSHNodes:
        """`probed_started`: the head's `started` when the probes were made (healing.py)."""
        nodes = SSHNodes(self, session)
        nodes.probed_started = probed_started
        return nodes


class SSHNodes(HealingNodes):
    """Healing's view of one session's nodes on a group (remote/healing.py): the spare hosts
    are the group's hosts no node of the run uses or lost."""

    def __init__(self, run: GroupRun, session: Session):
        self.run, self.session = run, session
        self.place = f"ssh:{run.provider.host}"
        self.no_spare = f"no spare host in {self.place} to replace it"
        self.setting = "[ssh] max_resumes"
        self.max_resumes = run.config.ssh.max_resumes
        self.lost_after = run.config.ssh.node_lost_seconds

    def nodes(self) -> list[dict]:
        return GroupRun.nodes_of(self.session)

    def save_nodes(self, nodes: list[dict]) -> None:
        GroupRun.save_nodes(self.session, nodes)

    def spare(self, used: set[str]) -> str | None:
        return next((host for host in self.run.hosts if host not in used), None)

    async def start(self, rank: int, host: str) -> dict:
        hosts = [node["host"] for node in self.nodes()]
        hosts[rank] = host
        nnodes = node_count_text(spec_nodes(self.session) or len(hosts))
        return await self.run.start_node(self.session, rank, host,
                                         ",".join(self.run.addresses(hosts)), nnodes)

    async def stop(self, ranks: list[int]) -> None:
        nodes = self.nodes()
        await self.run.stop_nodes(self.session, [(rank, nodes[rank]) for rank in ranks],
                                  force=False)

    def price(self, host: str) -> float | None:
        entry = self.run.config.ssh.hosts.get(host)
        return entry.price_per_hour if entry is not None else None

    def moved(self, rank: int, line: str) -> None:
        note_moved(self.session.session_dir, rank, line)  # its new host's log follows it


def own_remote_dir(workdir: str, session: Session) -> str:
    return remote_path(workdir, "sessions", session.id)
