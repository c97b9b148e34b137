"""Runs sessions on any machine reachable by ssh, with the system ssh client.

The stdlib runner is copied to the host once per version, started detached there, and asked
for its status with `trainctl-runner.pyz --probe`. The remote train.log is mirrored into the local
session folder by byte offset, so logs, metrics and plots work exactly as for local runs, and a
dropped connection resumes where it stopped: no line is lost or repeated.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...core import aio
from ...core.atomic import atomic_write_json
from ...core.models import Session
from ..base import ProviderError
from ..remote.node_group import spec_nodes
from ..remote.runner import HostOverSSH, RemoteLogMirror
from ..remote.transport import SSHTarget, SSHTransport, resolve_target
from .group import GroupRun, chosen_hosts, group_hosts, own_remote_dir

HEAD_STATUS = "head_status.json"  # a group's head's last status.json, for when it is lost


class SSHProvider(HostOverSSH):
    """The runner on a host named in [ssh.hosts] or ~/.ssh/config, or on each host of a group
    (`ssh:GROUP` of [ssh.groups], or `ssh:a,b,c`) for a multi-node run: group.py."""

    def __init__(self, host: str, own_dir: bool = False):
        super().__init__()
        self.host = host
        self.own_dir = own_dir  # one node of a group: its folder is under its own workdir
        self._group_hosts: list[str] | None = None

    @property
    def name(self) -> str:
        return f"ssh:{self.host}"

    @property
    def label(self) -> str:
        return f"ssh {self.host}"

    price_setting = "price_per_hour in [ssh.hosts.NAME]"
    probes_nodes_apart = True  # a group's nodes are probed on their hosts (group.py)

    async def price_per_hour(self, session, options: dict) -> float | None:
        """What the host costs per hour, as its [ssh.hosts.NAME] declares (else None)."""
        from ...config.loader import load_config

        host = load_config().ssh.hosts.get(self.host)
        return host.price_per_hour if host is not None else None

    async def node_prices(self, session, options: dict) -> list | None:
        """Each host's $/h of a group run (None where its [ssh.hosts.NAME] declares none);
        None for one host."""
        from ...config.loader import load_config

        self.target  # noqa: B018 - resolves the group
        hosts = chosen_hosts(self.host, self._group_hosts, options.get("nodes"))
        if not hosts or len(hosts) < 2:
            return None
        declared = load_config().ssh.hosts
        return [declared[host].price_per_hour if host in declared else None for host in hosts]

    @property
    def target(self) -> SSHTarget:
        """The host's target; a group's head (its first host), every host checked."""
        if self._target is None:
            from ...config.loader import load_config

            config = load_config()
            self._group_hosts = group_hosts(self.host, config)
            head = self._group_hosts[0] if self._group_hosts else self.host
            self._target = resolve_target(head, config.ssh.hosts)
        return self._target

    @property
    def group(self) -> GroupRun:
        from ...config.loader import load_config

        self.target  # noqa: B018 - resolves the group's hosts
        return GroupRun(self, load_config(), lambda host: SSHProvider(host, own_dir=True),
                        self._group_hosts)

    def heals_nodes(self, session: Session) -> bool:
        """A group's run is watched and healed (remote/healing.py) with terminals closed."""
        self.target  # noqa: B018 - resolves the group
        return self._group_hosts is not None

    def check_options(self, options: dict) -> None:
        """At launch, before anything is made: --nodes against the group's hosts."""
        self.target  # noqa: B018 - resolves the group
        chosen_hosts(self.host, self._group_hosts, options.get("nodes"))

    def remote_dir(self, session: Session) -> str:
        if self.own_dir:
            return own_remote_dir(self.workdir, session)
        return super().remote_dir(session)

    async def launch(self, session: Session, node_args: tuple[str, ...] = (),
                     record: bool = True) -> None:
        self.target  # noqa: B018 - resolves the group
        if node_args or self._group_hosts is None:
            return await super().launch(session, node_args, record)
        hosts = chosen_hosts(self.host, self._group_hosts, spec_nodes(session))
        await self.group.launch(session, hosts)

    async def _probe(self, session: Session) -> dict:
        nodes = GroupRun.nodes_of(session)
        if len(nodes) < 2:
            return await super()._probe(session)
        # which launch these probes see: a resume meanwhile makes them stale (healing.py)
        launched = nodes[0].get("started")
        try:
            answer = await super()._probe(session)
        except ProviderError:
            answer = await self._head_unanswered(session, launched)
            if answer is None:
                raise  # unreachable for now: the run may well go on there
            return answer
        atomic_write_json(Path(session.session_dir) / HEAD_STATUS, answer.get("status"),
                          durable=False)
        await self._probe_and_heal(session, answer, launched)
        return answer

    async def _head_unanswered(self, session: Session, launched: float | None
                               ) -> dict | None:
        """The head's host did not answer: once it is lost (remote/healing.py), what the run
        says, from the head's last status; else None."""
        from ..remote import healing

        try:
            last = json.loads((Path(session.session_dir) / HEAD_STATUS).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(last, dict) or await healing.head_unanswered(
                self.group.healing(session, launched), session) is None:
            return None
        answer = {"status": last, "runner_alive": False, "child_alive": False, "log_size": 0,
                  "nodes": {}, "newest_checkpoint": None, "usage": None}
        await self.group.probe_nodes(session, answer)
        self._keep_nodes(session, answer)
        healing.show(answer, GroupRun.nodes_of(session), session.session_dir)
        return answer

    async def _probe_and_heal(self, session: Session, answer: dict,
                              launched: float | None) -> None:
        """Every node probed; a lost or failed one healed (remote/healing.py); the answer
        says what the run is now. `launched`: the head's start the probe saw."""
        from ...runner.status import FINAL_STATES
        from ..remote import healing

        group = self.group
        await group.probe_nodes(session, answer)
        self._keep_nodes(session, answer)
        nodes = group.healing(session, launched)
        status = answer.get("status") or {}
        if status and status.get("state") not in FINAL_STATES and \
                not answer.get("runner_alive"):
            await healing.head_lost(nodes, session, "its runner is gone without a final status",
                                    status.get("heartbeat"))
        else:
            head = {"host": GroupRun.nodes_of(session)[0].get("host"), "alive":
                    answer.get("runner_alive"), **{key: status.get(key) for key in (
                        "state", "reason", "exit_code", "signal", "heartbeat")}}
            await healing.heal(nodes, session, {**(answer.get("nodes") or {}), "0": head})
        healing.show(answer, GroupRun.nodes_of(session), session.session_dir)

    @staticmethod
    def _keep_nodes(session: Session, answer: dict) -> None:
        """Each node's row for the session screen, as probed (before healing's verdict)."""
        from ..remote.node_view import keep_nodes

        keep_nodes(session, answer, [node["host"] for node in GroupRun.nodes_of(session)])

    async def lost_detail(self, session: Session, status: dict) -> str | None:
        """A run held for its other nodes, one of which is gone: say which."""
        from ..remote.node_group import lost_nodes_detail

        return lost_nodes_detail(status)

    async def _stop(self, session: Session, force: bool) -> str:
        nodes = GroupRun.nodes_of(session)
        if len(nodes) < 2:
            return await super()._stop(session, force)
        # every node at once: the head (rank 0) here, the others through group.py
        others = list(enumerate(nodes))[1:]
        done, _ = await aio.gather(super()._stop(session, force),
                                   self.group.stop_nodes(session, others, force=force))
        return done


def mirror_for_url(url: str, hosts: dict) -> RemoteLogMirror:
    """ssh://[user@]host[:port]/path/to/train.log -> a mirror into trainctl's state dir.
    /path is absolute on the host; /~/path is relative to the login directory."""
    import hashlib
    from pathlib import PurePosixPath
    from urllib.parse import unquote, urlsplit

    from ...core.errors import TrainctlError
    from ...core.paths import state_dir

    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.scheme != "ssh" or not parts.netloc or not path or path == "/":
        raise TrainctlError(f"expected ssh://[user@]host[:port]/path/to/train.log, got '{url}'")
    path = path[3:] if path.startswith("/~/") else path
    target = resolve_target(parts.netloc, hosts)
    folder = state_dir() / "watch"
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(url.encode()).hexdigest()[:12]
    return RemoteLogMirror(SSHTransport(target), path,
                           folder / f"{key}-{PurePosixPath(path).name}",
                           folder / f"{key}.offset")


# -- hosts ----------------------------------------------------------------------------------

HOST_PROBE = (
    "cat /proc/loadavg 2>/dev/null || uptime; echo '--'; nproc 2>/dev/null || echo '?'; "
    "echo '--'; nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu "
    "--format=csv,noheader,nounits 2>/dev/null || true"
)


@dataclass
class HostInfo:
    name: str
    address: str
    reachable: bool = False
    error: str | None = None
    rtt_ms: float | None = None
    load: list[float] = field(default_factory=list)  # 1, 5, 15 minute load averages
    cpus: int | None = None
    gpus: list[dict] = field(default_factory=list)  # index, name, memory_used/total MiB, util %
    sessions: list[str] = field(default_factory=list)  # ids of active sessions there

    def to_json(self) -> dict:
        return asdict(self)


async def probe_host(target: SSHTarget) -> HostInfo:
    """Reachability, load, CPUs and GPUs (`nvidia-smi` where present) in one ssh call."""
    address = f"{target.user + '@' if target.user else ''}{target.host}" + \
        (f":{target.port}" if target.port else "")
    info = HostInfo(target.name, address)
    transport = SSHTransport(target)
    try:
        start = time.monotonic()
        result = await transport.run(HOST_PROBE, timeout=30)
        info.rtt_ms = (time.monotonic() - start) * 1000
    except ProviderError as exc:
        info.error = str(exc)
        return info
    info.reachable = True
    load, cpus, gpus = (result.stdout.decode(errors="replace").split("--\n") + ["", "", ""])[:3]
    info.load = _load_average(load)
    info.cpus = int(cpus.strip()) if cpus.strip().isdigit() else None
    info.gpus = [gpu for gpu in map(_gpu_row, gpus.strip().splitlines()) if gpu]
    return info


def _load_average(text: str) -> list[float]:
    """From /proc/loadavg ('0.52 0.58 0.59 1/123 4567') or uptime ('load average: 0.5, ...')."""
    numbers = text.split("load average")[-1].replace(":", " ").replace(",", " ").split()
    values = []
    for token in numbers[:3]:
        try:
            values.append(float(token))
        except ValueError:
            break
    return values


def _gpu_row(line: str) -> dict | None:
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != 5:
        return None
    index, name, used, total, util = parts
    try:
        return {"index": int(index), "name": name, "memory_used_mib": int(float(used)),
                "memory_total_mib": int(float(total)), "utilization": int(float(util))}
    except ValueError:
        return None
