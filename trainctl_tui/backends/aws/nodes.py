"""A multi-node run on EC2 instances: provider string `aws:i-HEAD,i-B,...` (head first), as
`launch --nodes N --provider aws[:TEMPLATE]` makes it (cluster.py creates the instances).

Each node is one instance reached through SSM, its runner started with its rank and every
node's private IP (remote/node_group.py, as ssh groups do); every refresh probes each node and
the run ends when all nodes have (remote/nodes.py). Then the instances are stopped or
terminated as the template's shutdown_behavior says; a resume starts stopped ones again."""

from __future__ import annotations

import json
from pathlib import Path

from ...core.errors import TrainctlError
from ...core.models import Session
from ...runner.nodes import NodeCountError, node_count_text, parse_node_count
from ...runner.status import FINAL_STATES
from ..remote.node_group import NodeGroup, spec_nodes
from ..remote.node_view import keep_nodes
from ..remote.nodes import hold_for_nodes
from ..remote.runner import remote_info
from .tags import SESSION_TAG

RELEASED = "released"  # remote.json: what was done to the instances at the run's end


class InstanceGroup(NodeGroup):
    """The nodes of a session on EC2 instances; `provider` is the head's AWSProvider."""

    def node(self, host: str):
        return type(self.provider)(host, self.provider.template_name)


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
    await InstanceGroup(provider).start(session, ids, ips, nnodes)


async def probe_nodes(provider, session: Session, answer: dict) -> None:
    """The other nodes into the head's answer, the run held until all have ended; then the
    instances are stopped or terminated as the template says (once), and the detail says
    so."""
    await InstanceGroup(provider).probe_nodes(session, answer)
    keep_nodes(session, answer, provider.node_ids)  # each node's row, for the session screen
    hold_for_nodes(answer)
    status = answer.get("status") or {}
    if status.get("state") not in FINAL_STATES:
        return
    note = await release(provider)
    reason = status.get("reason")
    answer["status"] = {**status, "reason": f"{reason}; {note}" if reason else note}
    info = remote_info(session) or {}
    info.update({RELEASED: note, "final_status": answer["status"]})
    (Path(session.session_dir) / "remote.json").write_text(json.dumps(info))


def released_answer(session: Session) -> dict | None:
    """After the run's end released the instances, the probe's answer is its last one
    (there is nothing left to ask); None before (a resume starts over: new remote.json)."""
    info = remote_info(session) or {}
    if not info.get(RELEASED):
        return None
    return {"status": info.get("final_status"), "runner_alive": False, "child_alive": False,
            "log_size": 0, "newest_checkpoint": None}


async def release(provider) -> str:
    """Stop or terminate the nodes as the template says; a failure is the line it returns
    (the run's end must still be seen)."""
    from .api import AWSError
    from .cloud import AWSCloud

    try:
        return await AWSCloud().release_nodes(provider.node_ids, provider.template_name)
    except AWSError as exc:
        ids = ", ".join(provider.node_ids)
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
