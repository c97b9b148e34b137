"""Healing a multi-node run on EC2 instances: remote/healing.py decides; this is its view of
the instances (`AWSNodes`) and what EC2 says about them.

A node (not the head) is lost when its instance is terminated, shutting down, stopped or
stopping, when its spot request is `marked-for-termination` / `marked-for-stop` (EC2's
word before it takes a spot instance), when its runner ended `interrupted` (the spot
instance-action notice the runner reads from the instance metadata), or when SSM has not
reached it for `[aws] node_lost_seconds`. It is replaced alone: the lost instance is
terminated (or stopped, when the template's shutdown_behavior is stop), a new one is made
from the head's template, type, market and AMI in the cluster's placement group, subnet and
security group (cluster.py), and the runner for that rank starts there with the same
rendezvous; torchrun's agents on the other nodes restart their workers into a new round
with it. At most `[aws] max_resumes` times per session; past that, or when the new instance
cannot be made (no capacity, a quota), the other nodes are stopped gracefully and the run
ends with one line. The head lost (its instance gone, its runner interrupted by a spot
notice or gone without a final status) stops the others and interrupts the run.

Each refresh of the run does this (the detached watcher's every 2 s, app/watching.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...core.interruptions import node_losses
from ...core.models import Session
from ...runner.nodes import node_count_text
from ...runner.status import FINAL_STATES
from ..base import ProviderError
from ..remote import healing
from ..remote.healing import HealingNodes
from ..remote.node_group import NodeGroup, spec_nodes
from .recovery import LAST_STATUS

GONE = ("shutting-down", "terminated", "stopping", "stopped")
MARKED = ("marked-for-termination", "marked-for-stop", "marked-for-hibernation")
NEW_INSTANCE = "a new instance"  # the spare: start() makes it
# While every node runs well, EC2 is asked about the instances this often (seconds).
LOOK_SECONDS = 30.0
looked: dict[str, float] = {}  # session id -> when this process last asked (monotonic)


def machine_lost(raw: dict | None, spot: dict | None) -> str | None:
    """Why a node's instance is lost as EC2 describes it (its instance, its spot request);
    None while it runs."""
    if raw is None:
        return "its instance is gone (EC2 no longer lists it)"
    state = (raw.get("State") or {}).get("Name")
    if state in GONE:
        message = (raw.get("StateReason") or {}).get("Message")
        return f"its instance is {state}" + (f" ({message})" if message else "")
    status = (spot or {}).get("Status") or {}
    if status.get("Code") in MARKED:
        message = status.get("Message")
        return f"its spot request is {status['Code']}" + (f" ({message})" if message else "")
    return None


def mark_lost(answers: dict, nodes: list[dict], raws: dict, spot: dict) -> None:
    """A lost node's probe answer says so (`lost`: why, what remote/healing.py reads)."""
    for rank, node in enumerate(nodes):
        if not rank or node.get("given_up"):
            continue
        raw = raws.get(node["host"])
        why = machine_lost(raw, spot.get((raw or {}).get("SpotInstanceRequestId")))
        info = answers.setdefault(str(rank), {"host": node["host"]})
        if why is None and info.get("state") == "interrupted":  # the runner read a notice
            why = info.get("reason") or "its runner was interrupted"
        if why is not None:
            info["lost"] = why


class AWSNodes(HealingNodes):
    """Healing's view of one session's instances: the spare is a new instance, made when a
    node is replaced."""

    def __init__(self, provider, session: Session, price: float | None = None,
                 probed_started: float | None = None):
        from .api import aws_settings
        from .nodes import InstanceGroup

        settings = aws_settings()
        self.provider, self.session, self.node_price = provider, session, price
        self.probed_started = probed_started  # the head's start the probes saw (healing.py)
        self.group = InstanceGroup(provider)
        self.place = f"aws:{provider.host}"
        self.setting = "[aws] max_resumes"
        self.max_resumes = settings.max_resumes
        self.lost_after = settings.node_lost_seconds

    def nodes(self) -> list[dict]:
        return NodeGroup.nodes_of(self.session)

    def save_nodes(self, nodes: list[dict]) -> None:
        from .nodes import save_nodes

        save_nodes(self.session, nodes)

    def spare(self, used: set[str]) -> str | None:
        return NEW_INSTANCE

    async def start(self, rank: int, host: str) -> dict:
        """The lost instance released, a new one made in the cluster, node `rank`'s runner
        started there; a failure leaves no new instance behind and says so."""
        from .cloud import AWSCloud

        cloud = AWSCloud()
        nodes = self.nodes()
        await cloud.release_lost_node(nodes[rank]["host"])  # never left billing
        made = await cloud.create_replacement(nodes[0]["host"], rank, self.session.id)
        ips = await self.ips(cloud, nodes)
        ips[rank] = made.extra.get("private_ip") or ""
        nnodes = node_count_text(spec_nodes(self.session) or len(nodes))
        try:
            return await self.group.start_node(self.session, rank, made.id, ",".join(ips),
                                               nnodes)
        except ProviderError as exc:
            note = await cloud.discard_replacement(made)
            raise ProviderError(f"{exc}; {note}") from None

    @staticmethod
    async def ips(cloud, nodes: list[dict]) -> list[str]:
        """Each node's private IP, as its entry keeps it (else as EC2 says)."""
        missing = [node["host"] for node in nodes if not node.get("ip")]
        found = await cloud.nodes_now(missing) if missing else {}
        return [node.get("ip") or (found[node["host"]].extra.get("private_ip") or ""
                                   if node["host"] in found else "") for node in nodes]

    async def stop(self, ranks: list[int]) -> None:
        nodes = self.nodes()
        await self.group.stop_nodes(self.session, [(rank, nodes[rank]) for rank in ranks],
                                    force=False)

    def price(self, host: str) -> float | None:
        return self.node_price  # every node is of the head's type and market

    def moved(self, rank: int, line: str) -> None:
        healing.note_moved(self.session.session_dir, rank, line)

    def place_of(self, node: dict) -> str:
        return f"{node['host']} ({node['ip']})" if node.get("ip") else node["host"]

    def details(self, old: dict, new: dict) -> dict:
        return {"old_ip": old.get("ip"), "new_ip": new.get("ip")}


async def machines(provider, session: Session, launched: float | None
                   ) -> tuple[AWSNodes, dict | None, dict]:
    """(healing's view of the nodes, each instance's description, each spot request's);
    None for the descriptions when EC2 did not answer (nothing is judged lost by it then)."""
    from .api import AWSError
    from .cloud import AWSCloud

    nodes = NodeGroup.nodes_of(session)
    try:
        raws, spot, price = await AWSCloud().node_machines([node["host"] for node in nodes])
    except AWSError:
        raws, spot, price = None, {}, None
    return AWSNodes(provider, session, price, launched), raws, spot


def all_well(answer: dict, nodes: list[dict]) -> bool:
    """Every node's runner (the head's too) answers and runs its training."""
    status = answer.get("status") or {}
    if status.get("state") != "running" or not answer.get("runner_alive"):
        return False
    probed = answer.get("nodes") or {}
    for rank, node in enumerate(nodes):
        info = probed.get(str(rank)) or {}
        if rank and not node.get("given_up") and not (info.get("state") == "running" and
                                                      info.get("alive")):
            return False
    return True


async def heal(provider, session: Session, answer: dict, launched: float | None = None,
               now: float | None = None) -> None:
    """After the head's probe and the other nodes': a lost or failed node healed, the head
    lost ended; the answer then says what the run is. EC2 is asked about the instances when
    a node looks unwell, else every LOOK_SECONDS (a spot request marked early). `launched`:
    the head's start when the probes were made (a resume since makes them stale)."""
    nodes = NodeGroup.nodes_of(session)
    now = time.monotonic() if now is None else now
    joining = any(entry.get("new_host") and entry.get("joined_at") is None
                  for entry in node_losses(session.session_dir))  # healing notes when
    if all_well(answer, nodes) and not joining and \
            now - looked.get(session.id, -LOOK_SECONDS) < LOOK_SECONDS:
        healing.show(answer, nodes, session.session_dir)
        return
    looked[session.id] = now
    if healing.ended_by(nodes) is None:
        group, raws, spot = await machines(provider, session, launched)
        status = answer.get("status") or {}
        others_on = [rank for rank, info in (answer.get("nodes") or {}).items()
                     if info.get("state") not in FINAL_STATES
                     and not nodes[int(rank)].get("given_up")]
        if status and status.get("state") not in FINAL_STATES and \
                not answer.get("runner_alive"):
            await healing.head_lost(group, session, "its runner is gone without a final "
                                    "status", status.get("heartbeat"))
        elif status.get("state") == "interrupted" and others_on:  # a spot notice on the head
            await healing.head_lost(group, session, status.get("reason") or "interrupted",
                                    status.get("heartbeat"))
        else:
            head = {"host": nodes[0].get("host"), "alive": answer.get("runner_alive"),
                    **{key: status.get(key) for key in ("state", "reason", "exit_code",
                                                        "signal", "heartbeat")}}
            answers = {**(answer.get("nodes") or {}), "0": head}
            if raws is not None and status.get("state") not in FINAL_STATES:
                # Once the head has ended the instances are released (stopped): not a loss.
                mark_lost(answers, nodes, raws, spot)
            await healing.heal(group, session, answers)
    healing.show(answer, NodeGroup.nodes_of(session), session.session_dir)


async def head_unanswered(provider, session: Session, launched: float | None = None
                          ) -> dict | None:
    """SSM did not reach the head: once it is lost (its instance gone or marked, or silent
    for node_lost_seconds) the others are stopped and the run says so, from the head's last
    status (the answer returned); None while it is only unreachable."""
    from .nodes import InstanceGroup, keep_nodes_of

    nodes = NodeGroup.nodes_of(session)
    try:
        last = json.loads((Path(session.session_dir) / LAST_STATUS).read_text())
    except (OSError, ValueError):
        return None
    if len(nodes) < 2 or not isinstance(last, dict):
        return None
    group, raws, spot = await machines(provider, session, launched)
    head = (raws or {}).get(nodes[0]["host"])
    why = None if raws is None else \
        machine_lost(head, spot.get((head or {}).get("SpotInstanceRequestId")))
    if why is not None:
        ended = await healing.head_lost(group, session, why)
    else:
        ended = await healing.head_unanswered(group, session)
    if ended is None:
        return None
    answer = {"status": last, "runner_alive": False, "child_alive": False, "log_size": 0,
              "nodes": {}, "newest_checkpoint": None, "usage": None}
    await InstanceGroup(provider).probe_nodes(session, answer)
    keep_nodes_of(session, answer)
    healing.show(answer, NodeGroup.nodes_of(session), session.session_dir)
    return answer
