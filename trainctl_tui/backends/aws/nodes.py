"""A multi-node run on EC2 instances: provider string `aws:i-HEAD,i-B,...` (head first), as
`launch --nodes N --provider aws[:TEMPLATE]` makes it (cluster.py creates the instances).

Each node is one instance reached through SSM, its runner started with its rank and every
node's private IP (remote/node_group.py, as ssh groups do); every refresh probes each node,
heals a lost one (node_healing.py: a new instance in its place, remote.json then names it)
and the run ends when all nodes have (remote/nodes.py). Then the instances are stopped or
terminated as the template's shutdown_behavior says; a resume starts stopped ones again."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ...core.atomic import atomic_write_json
from ...core.errors import TrainctlError
from ...core.models import Session
from ...runner.nodes import NodeCountError, node_count_text, parse_node_count
from ...runner.status import FINAL_STATES
from ..remote.node_group import NodeGroup, spec_nodes
from ..remote.node_view import keep_nodes
from ..remote.runner import remote_info
from .recovery import LAST_STATUS
from .tags import SESSION_TAG

RELEASED = "released"  # remote.json: what was done to the instances at the run's end


class InstanceGroup(NodeGroup):
    """The nodes of a session on EC2 instances; `provider` is the head's AWSProvider."""

    def node(self, host: str):
        return type(self.provider)(host, self.provider.template_name)

    def node_args(self) -> tuple[str, ...]:
        # torchrun's own restarts, so a replacement joining makes the workers start again
        from .api import aws_settings

        return ("--node-restarts", str(aws_settings().max_resumes))

    async def start_node(self, session: Session, rank: int, host: str, ips: str,
                         nnodes: str) -> dict:
        entry = await super().start_node(session, rank, host, ips, nnodes)
        return {**entry, "ip": ips.split(",")[rank]}  # where the others reach it


def node_ids(provider, session: Session) -> list[str]:
    """The run's instances as they are now (a lost node's replacement in its place)."""
    return [node["host"] for node in NodeGroup.nodes_of(session)] or provider.node_ids


def keep_nodes_of(session: Session, answer: dict) -> None:
    """Each node's row for the session screen, as probed (before healing's verdict)."""
    keep_nodes(session, answer, [node["host"] for node in NodeGroup.nodes_of(session)])


def check_node_count(name: str, ids: list[str], nodes) -> None:
    """--nodes against the instances a provider string names: one line when they differ."""
    if nodes is None:
        return
    try:
        low, high = parse_node_count(nodes)
    except NodeCountError as exc:
        raise TrainctlError(str(exc)) from None
    if low <= len(ids) <= high:
        return
    what = "is one instance" if len(ids) == 1 else f"names {len(ids)} instances"
    raise TrainctlError(f"--nodes {node_count_text(nodes)} does not fit aws:{name}, which "
                        f"{what}: let trainctl create them (--provider aws or aws:TEMPLATE)")


async def start_nodes(provider, session: Session) -> None:
    """Every node's runner, head first; stopped instances (a resume after the run's end
    stopped them) are started again first."""
    from .cloud import AWSCloud

    cloud = AWSCloud()
    ids = provider.node_ids
    found = await cloud.nodes_now(ids)
    stopped = [i for i in ids if found.get(i) and found[i].state in ("stopped", "stopping")]
    if stopped:
        await cloud.start_nodes(stopped)
        found = await cloud.nodes_now(ids)
    await cloud.tag_nodes(ids, {SESSION_TAG: session.id})  # the Instances screen's session
    ips = ",".join(found[i].extra.get("private_ip") or "" for i in ids)
    nnodes = node_count_text(spec_nodes(session) or len(ids))
    try:  # a resume: the head's runner that ended the run before (its status is read on)
        last = json.loads((Path(session.session_dir) / LAST_STATUS).read_text())
    except (OSError, ValueError):
        last = None
    await InstanceGroup(provider).start(session, ids, ips, nnodes, head={
        "runner_before": runner_of(last) if isinstance(last, dict) else None})


def runner_of(status: dict) -> list | None:
    """Which runner process wrote a status (pid and its start), None if it says not."""
    if not status.get("runner_pid"):
        return None
    return [status.get("runner_pid"), status.get("runner_start")]


async def probe_nodes(provider, session: Session, answer: dict) -> None:
    """The other nodes into the head's answer, each node's row kept for the session screen.
    Then the provider heals (node_healing.py) and releases the instances at the end."""
    await InstanceGroup(provider).probe_nodes(session, answer)
    keep_nodes_of(session, answer)


@contextmanager
def release_lock(session: Session):
    """Held while a run's end is decided and its instances released: a refresh and the
    watcher may both see the end (and the head, once released, no longer answers)."""
    fd = os.open(Path(session.session_dir) / "release.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # frees the lock


async def release_at_end(provider, session: Session, answer: dict) -> None:
    """A run that has ended releases its instances, once: the answer's detail says what was
    done. Released by another process meanwhile (its stop may have failed this probe of a
    node), the answer is the run's end as that one saw it."""
    with release_lock(session):
        done = released_answer(session)
        if done is not None:
            answer.clear()
            answer.update(done)
            return
        await release_now(provider, session, answer)


async def release_now(provider, session: Session, answer: dict) -> None:
    """release_at_end with the lock held."""
    status = answer.get("status") or {}
    if status.get("state") not in FINAL_STATES:
        return
    info = remote_info(session) or {}
    if info.get(RELEASED):  # the other process did
        answer["status"] = info.get("final_status") or status
        return
    before = (NodeGroup.nodes_of(session) or [{}])[0].get("runner_before")
    if before and before == runner_of(status):
        return  # the end of the run before a resume, read before the new runner wrote
    note = await release(provider, session)
    reason = status.get("reason")
    answer["status"] = {**status, "reason": f"{reason}; {note}" if reason else note}
    info.update({RELEASED: note, "final_status": answer["status"]})
    atomic_write_json(Path(session.session_dir) / "remote.json", info)


def save_nodes(session: Session, nodes: list[dict]) -> None:
    """remote.json with these nodes, what the run's end released kept."""
    info = remote_info(session) or {}
    kept = {key: info[key] for key in (RELEASED, "final_status") if key in info}
    atomic_write_json(Path(session.session_dir) / "remote.json",
                      {**nodes[0], "nodes": nodes, **kept})


def released_answer(session: Session) -> dict | None:
    """After the run's end released the instances, the probe's answer is its last one
    (there is nothing left to ask); None before (a resume starts over: new remote.json)."""
    info = remote_info(session) or {}
    if not info.get(RELEASED):
        return None
    return {"status": info.get("final_status"), "runner_alive": False, "child_alive": False,
            "log_size": 0, "newest_checkpoint": None}


async def release(provider, session: Session) -> str:
    """Stop or terminate the nodes as the template says; a failure is the line it returns
    (the run's end must still be seen)."""
    from .api import AWSError
    from .cloud import AWSCloud

    ids = node_ids(provider, session)
    try:
        return await AWSCloud().release_nodes(ids, provider.template_name)
    except AWSError as exc:
        ids = ", ".join(ids)
        return (f"the nodes were not released ({exc}): stop or terminate {ids} "
                "(trainctl instance stop ID)")


async def price_of_nodes(provider) -> float | None:
    """What the nodes cost together per hour (None when one price is unknown)."""
    from .cloud import AWSCloud

    found = await AWSCloud().nodes_now(provider.node_ids)
    prices = [item.price_per_hour for item in found.values()]
    if len(prices) != len(provider.node_ids) or any(p is None for p in prices):
        return None
    return sum(prices)
