"""Healing a multi-node run: noticing a node that is lost (its host stopped answering, or its
runner is gone without a final status) or failed for good (its runner ended `failed`), and
deciding what happens, the same for every backend whose nodes can be told apart:

- a lost node (not the head) is replaced alone: a runner for its rank starts on the next
  free place (an SSH group's spare host, a new EC2 instance), with the same rendezvous
  (torchrun's --rdzv-id and endpoint); torchrun's agents on the other nodes restart their
  workers into a new round with it. Within --nodes MIN:MAX torchrun goes on with fewer
  nodes meanwhile.
- with no free place and a fixed node count, past `max_resumes` replacements, or a node that
  failed for good, the other nodes are stopped gracefully (SIGTERM: they save) and the run
  ends with one line naming the node and its host, instead of waiting in a collective until
  someone notices.
- the head (rank 0) hosts the c10d store: when it is lost the others cannot go on. They are
  stopped gracefully and the run is `interrupted`; `trainctl resume` restarts every node
  from the newest checkpoint.

Each loss goes in the session's interruption record (core/interruptions.py) with its node,
old and new host, reason, when it was lost, when the replacement joined, and its cost when
the host's price is known.

Where it runs: in the refresh of the machine that launched the run (every `trainctl
sessions`, the TUI), and in the detached watcher launch starts for a multi-node run
(`trainctl _watch`), which refreshes that session until it ends: healing needs no terminal
open, only the launching machine up (its ssh keys are what reach the hosts). A laptop that
sleeps heals when it wakes. One decision at a time per session: an flock on heal.lock.
A user's stop waits for a decision in progress (a replacement starting) and marks the launch
stopped (stop_asked.json): what was started is in the record it then stops, and no decision
follows it.

A backend brings a `HealingNodes` (below); this module decides and records."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ...core import interruptions
from ...core.formatting import format_duration
from ...core.interruptions import node_losses as replacements
from ...core.models import Record
from ...runner.status import FINAL_STATES

LOCK_NAME = "heal.lock"
STOP_MARK = "stop_asked.json"
# How long a user's stop waits for a replacement being started (an instance booting: the
# template's ready timeout is 600 s by default) before it stops what the record names.
STOP_WAITS_SECONDS = 660.0
# A node whose host does not answer for this long is lost (one refused connection is not).
LOST_AFTER_SECONDS = 60.0
# A started node's runner has this long to write its first status.json.
START_SECONDS = 60.0


class Verdict(Record):
    """A node that cannot go on as it is."""

    rank: int
    host: str
    kind: str  # "lost" or "failed"
    why: str  # "its runner is gone without a final status", "exit code 1" ...
    since: float  # when it was last seen well (its last heartbeat, or the first failed probe)
    reachable: bool = True  # its host answers: what its dead runner left can be stopped


class HealingNodes:
    """What a backend gives healing, for one session. Subclasses fill in the methods."""

    place: str = ""  # how lines name where the nodes run: "ssh:trio"
    # Why a lost node is not replaced when spare() has nothing, for the run's line.
    no_spare: str = "nowhere to replace it"
    replaces: bool = True  # False: spare() is always None (a batch job's nodes)
    setting: str = "max_resumes"  # the setting that bounds replacements, for the hint
    max_resumes: int = 3
    lost_after: float = LOST_AFTER_SECONDS
    # The head's `started` in the nodes' record when the probes this look decides on were
    # made (None: not tracked). The record started since means the nodes were launched again
    # meanwhile (a resume): those probes saw runners that are no longer the run's.
    probed_started: float | None = None

    def nodes(self) -> list[dict]:
        """Each rank's node as the backend records it (at least `host`)."""
        raise NotImplementedError

    def save_nodes(self, nodes: list[dict], **extra) -> None:
        raise NotImplementedError

    def spare(self, used: set[str]) -> str | None:
        """A free place for a replacement, not one of `used`; None when there is none. A
        cloud says what start() will make ("a new instance"); its entry names the machine."""
        raise NotImplementedError

    async def start(self, rank: int, host: str) -> dict:
        """Start node `rank`'s runner on `host`; its new record entry. Raises ProviderError."""
        raise NotImplementedError

    async def stop(self, ranks: list[int]) -> None:
        """Stop these nodes gracefully (SIGTERM, grace, SIGKILL), at once."""
        raise NotImplementedError

    def price(self, host: str) -> float | None:
        return None

    def moved(self, rank: int, line: str) -> None:
        """Node `rank` runs elsewhere from now on (saved): its log follows from there, after
        `line`."""

    def place_of(self, node: dict) -> str:
        """How lines name where a started node runs (its record entry): its host."""
        return node.get("host")

    def details(self, old: dict, new: dict) -> dict:
        """More keys for a replacement's record entry (an instance's old and new IP)."""
        return {}


def stale(group: HealingNodes, nodes: list[dict]) -> bool:
    """The nodes were launched again since the probes of this look (healing.probed_started)."""
    return group.probed_started is not None and bool(nodes) and \
        nodes[0].get("started") != group.probed_started


def node_name(rank: int, host: str | None) -> str:
    return f"node {rank} (on {host})" if host else f"node {rank}"


def verdicts(answers: dict, nodes: list[dict], now: float,
             lost_after: float = LOST_AFTER_SECONDS) -> list[Verdict]:
    """The nodes that are lost or failed for good, from their probes' answers (rank ->
    host, state, alive, error, heartbeat; `lost`: why, when its backend knows its machine is
    gone; "0" the head's, judged failed only while others run: a head lost is head_lost's).
    Marks in `nodes` when a host first
    failed to answer (`unreachable_since`), cleared when it answers again."""
    found = []
    for rank, node in enumerate(nodes):
        if not rank or node.get("given_up"):
            continue
        info = answers.get(str(rank)) or {}
        host = node.get("host")
        if info.get("host") != host:
            continue  # a probe of the host it ran on before (another process moved it)
        if info.get("lost"):  # its backend knows the machine is gone (an instance terminated)
            found.append(Verdict(rank, host, "lost", info["lost"],
                                 node.get("unreachable_since") or info.get("heartbeat") or now,
                                 bool(info.get("reachable"))))
            continue
        if info.get("error"):
            since = node.setdefault("unreachable_since", now)
            if now - since >= lost_after:
                found.append(Verdict(rank, host, "lost",
                                     f"its host stopped answering for "
                                     f"{format_duration(now - since)}", since, False))
            continue
        node.pop("unreachable_since", None)
        state = info.get("state")
        if state == "failed":
            found.append(Verdict(rank, host, "failed", failure(info),
                                 info.get("heartbeat") or now))
        elif state in FINAL_STATES or info.get("alive"):
            continue
        elif state:
            found.append(Verdict(rank, host, "lost", "its runner is gone without a final "
                                 "status", info.get("heartbeat") or now))
        elif now - (node.get("started") or now) > START_SECONDS:
            found.append(Verdict(rank, host, "lost", "its runner never started",
                                 node.get("started") or now))
    head = answers.get("0") or {}
    others_on = [rank for rank in range(1, len(nodes)) if not nodes[rank].get("given_up")
                 and (answers.get(str(rank)) or {}).get("state") not in FINAL_STATES]
    if head.get("state") == "failed" and others_on:  # they would wait in a collective
        found.insert(0, Verdict(0, nodes[0].get("host"), "failed", failure(head),
                                head.get("heartbeat") or now))
    return found


def failure(info: dict) -> str:
    """How a node's run failed: its runner's reason, else its exit code or signal."""
    if info.get("reason"):
        return info["reason"]
    if info.get("signal"):
        return f"killed by signal {info['signal']}"
    return f"exit code {info.get('exit_code')}" if info.get("exit_code") is not None \
        else "failed"


@contextmanager
def healing_lock(session_dir: str):
    """Yields whether this process may decide now (another refresh or watcher may be)."""
    fd = os.open(Path(session_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # frees the lock


async def settle_for_stop(session_dir: str, wait: float = STOP_WAITS_SECONDS,
                          note: Callable[[str], None] | None = None) -> None:
    """Before a user's stop reads the nodes' record: waits for a healing decision in progress
    to end (a replacement it started is then in the record, and stops with the others), and
    marks this launch stopped, so no healing decides after it. A decision that outlasts
    `wait` sees the mark when its start returns and stops what it started (decide).
    `note(line)`: told once when the stop has to wait."""
    from ...core import aio
    from ...core.atomic import atomic_write_json

    deadline = time.monotonic() + wait
    told = note is None
    while True:
        with healing_lock(session_dir) as mine:
            if mine or time.monotonic() >= deadline:
                atomic_write_json(Path(session_dir) / STOP_MARK, {"at": time.time()})
                return
        if not told:
            note("a node of this run is being healed (a replacement starting): stopping "
                 "every node once it has started")
            told = True
        await aio.sleep(0.2)


def stop_asked(session_dir: str, nodes: list[dict]) -> bool:
    """A user asked this launch of the nodes to stop (a mark from before a resume is not)."""
    try:
        at = json.loads((Path(session_dir) / STOP_MARK).read_text())["at"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    started = nodes[0].get("started") if nodes else None
    return isinstance(at, (int, float)) and at >= (started or 0)


async def heal(group: HealingNodes, session, answers: dict, now: float | None = None) -> None:
    """One look at the nodes past the head (`answers`: their probes) and what it calls for:
    a replacement, going on without a node (MIN:MAX), or the run stopped with a reason."""
    now = time.time() if now is None else now
    nodes = group.nodes()
    if not nodes or nodes[0].get("ended_by"):
        return
    with healing_lock(session.session_dir) as mine:
        if not mine:
            return
        nodes = group.nodes()  # as the last decision left them
        if nodes[0].get("ended_by") or stale(group, nodes) or \
                stop_asked(session.session_dir, nodes):
            return
        before = json.dumps(nodes, sort_keys=True)
        nodes[0].pop("unreachable_since", None)  # the head answered
        found = verdicts(answers, nodes, now, group.lost_after)
        note_joined(session.session_dir, nodes, answers)
        hosts = [node.get("host") for node in nodes]
        head = (answers.get("0") or {}).get("state")
        for verdict in found:
            if verdict.kind == "lost" and head in FINAL_STATES:
                # The run is over (the head ended): nothing would meet a replacement.
                nodes[verdict.rank]["given_up"] = True
                interruptions.append(session.session_dir, loss_entry(
                    group, nodes, verdict, now, f"{node_name(verdict.rank, verdict.host)} lost: "
                    f"{verdict.why}; not replaced: node 0 has ended ({head})"))
                continue
            ended = await decide(group, session, nodes, verdict, now)
            if ended:
                break
        if json.dumps(nodes, sort_keys=True) != before:
            group.save_nodes(nodes)
        for rank, node in enumerate(nodes):
            if node.get("host") != hosts[rank]:
                entry = [e for e in replacements(session.session_dir) if e["node"] == rank][-1]
                group.moved(rank, entry["reason"])


async def heal_shared(group: HealingNodes, session, answer: dict) -> None:
    """heal() for nodes that share the head's folder (a batch job's: the head's probe tells
    their states and heartbeats' age), then the answer as the run is."""
    from .nodes import alive

    nodes = group.nodes()
    status = answer.get("status") or {}
    answers = {rank: {**info, "alive": alive(info),
                      "host": nodes[int(rank)]["host"] if int(rank) < len(nodes) else None}
               for rank, info in (answer.get("nodes") or {}).items()}
    answers["0"] = {"host": nodes[0]["host"] if nodes else None,
                    "alive": answer.get("runner_alive"),
                    **{key: status.get(key) for key in ("state", "reason", "exit_code",
                                                        "signal", "heartbeat")}}
    await heal(group, session, answers)
    show(answer, group.nodes(), session.session_dir)


async def decide(group: HealingNodes, session, nodes: list[dict], verdict: Verdict,
                 now: float) -> bool:
    """What one lost or failed node calls for; True when the run ends."""
    from ..base import ProviderError

    name = node_name(verdict.rank, verdict.host)
    what = f"{name} {verdict.kind}: {verdict.why}"
    entry = loss_entry(group, nodes, verdict, now, what)
    if verdict.kind == "failed":
        return await end(group, session, nodes, verdict, entry, "failed",
                         f"{what}; stopped the other nodes")
    done = sum(1 for e in replacements(session.session_dir) if e.get("new_host"))
    if group.replaces and done >= group.max_resumes:
        return await end(group, session, nodes, verdict, entry, "interrupted",
                         f"{what}; not replaced: max_resumes {group.max_resumes} reached "
                         f"(raise {group.setting}, or trainctl resume {session.id})")
    used = {node.get("host") for node in nodes} | \
        {e.get("host") for e in replacements(session.session_dir)}
    spare = group.spare(used)
    if spare is not None:
        if verdict.reachable:
            await group.stop([verdict.rank])  # a training its dead runner left, if any
        replaced_at = time.time()  # when its runner was asked to start
        try:
            started = await group.start(verdict.rank, spare)
        except ProviderError as exc:
            return await end(group, session, nodes, verdict, entry, "interrupted",
                             f"{what}; its replacement on {spare} failed to start ({exc}); "
                             "stopped the other nodes")
        old, nodes[verdict.rank] = nodes[verdict.rank], started
        # a cloud's spare is a machine made by start(): the started entry names it
        entry.update(new_host=started.get("host") or spare, replaced_at=replaced_at,
                     reason=f"{what}; replaced on {group.place_of(started) or spare} "
                            f"({done + 1} of {group.max_resumes})",
                     **group.details(old, started))
        if stop_asked(session.session_dir, nodes):
            # The user's stop came while it started and could not wait for it: it stops too.
            entry["reason"] += "; stopped with the run"
            interruptions.append(session.session_dir, entry)
            group.save_nodes(nodes)
            await group.stop([verdict.rank])
            return True
        interruptions.append(session.session_dir, entry)
        return False
    low = min_nodes(nodes)
    left = sum(1 for rank, node in enumerate(nodes)
               if rank != verdict.rank and not node.get("given_up"))
    if low < len(nodes) and left >= low:  # MIN:MAX: torchrun goes on without it
        nodes[verdict.rank]["given_up"] = True
        entry["reason"] = f"{what}; {group.no_spare}: going on with {left} " \
                          f"node{'s' if left != 1 else ''}"
        interruptions.append(session.session_dir, entry)
        return False
    return await end(group, session, nodes, verdict, entry, "interrupted",
                     f"{what}; {group.no_spare}; stopped the other nodes")


def loss_entry(group: HealingNodes, nodes: list[dict], verdict: Verdict, now: float,
               reason: str) -> dict:
    """The interruption record's entry of a node lost or failed."""
    return {"machine": node_name(verdict.rank, verdict.host), "at": now, "reason": reason,
            "spot": False,
            # the host was the run's from its start until the loss was noticed
            "cost": cost(group.price(verdict.host), nodes[verdict.rank].get("started"), now),
            "node": verdict.rank, "host": verdict.host, "new_host": None,
            "lost_at": verdict.since, "replaced_at": None, "joined_at": None,
            "seconds_lost": None, "kind": verdict.kind}


async def end(group: HealingNodes, session, nodes: list[dict], verdict: Verdict, entry: dict,
              state: str, line: str) -> bool:
    """The others stopped gracefully; the run ends `state` saying `line`."""
    entry["reason"] = line
    interruptions.append(session.session_dir, entry)
    nodes[verdict.rank]["given_up"] = True
    nodes[0]["ended_by"] = {"state": state, "reason": line, "at": time.time()}
    group.save_nodes(nodes)  # before the stop: a refresh meanwhile says why
    # Every node, the lost one too: a training its dead runner left behind stops as well.
    await group.stop(list(range(len(nodes))))
    return True


async def head_lost(group: HealingNodes, session, why: str, since: float | None = None
                    ) -> dict | None:
    """The head is lost: the others are stopped gracefully and the run is interrupted.
    Returns what the run says now ({'state', 'reason'}), or None when another process
    decides."""
    with healing_lock(session.session_dir) as mine:
        if not mine:
            return None
        nodes = group.nodes()
        if stale(group, nodes):
            return None  # the head that was lost is not this launch's
        if nodes[0].get("ended_by"):
            return nodes[0]["ended_by"]
        host = nodes[0].get("host")
        now = time.time()
        line = (f"{node_name(0, host)} lost: {why}; stopped the other nodes (trainctl resume "
                f"{session.id} restarts every node from the newest checkpoint)")
        entry = {"machine": node_name(0, host), "at": now, "reason": line, "spot": False,
                 "cost": cost(group.price(host), nodes[0].get("started"), now),
                 "node": 0, "host": host, "new_host": None, "lost_at": since or now,
                 "replaced_at": None, "joined_at": None, "seconds_lost": None, "kind": "lost"}
        await end(group, session, nodes, Verdict(0, host, "lost", why, since or now), entry,
                  "interrupted", line)
        return nodes[0]["ended_by"]


async def head_unanswered(group: HealingNodes, session, now: float | None = None
                          ) -> dict | None:
    """The head's host did not answer a probe: once it has not for `lost_after`, the head is
    lost (head_lost). Returns what the run says now, or None while it is only unreachable."""
    now = time.time() if now is None else now
    with healing_lock(session.session_dir) as mine:
        if not mine:
            return None
        nodes = group.nodes()
        if stale(group, nodes):
            return None
        if not nodes or ended_by(nodes):
            return ended_by(nodes)
        since = nodes[0].setdefault("unreachable_since", now)
        group.save_nodes(nodes)
    if now - since < group.lost_after:
        return None
    return await head_lost(group, session, "its host stopped answering for "
                                           f"{format_duration(now - since)}", since)


def note_joined(session_dir: str, nodes: list[dict], answers: dict) -> None:
    """A replacement whose runner runs its training: when it joined, and the time the node
    was lost for, on its record entry."""
    pending = [e for e in replacements(session_dir)
               if e.get("new_host") and e.get("joined_at") is None]
    if not pending:
        return
    entries = interruptions.load(session_dir)
    changed = False
    for entry in entries:
        if entry not in pending:
            continue
        rank = entry["node"]
        info = answers.get(str(rank)) or {}
        node = nodes[rank] if rank < len(nodes) else {}
        if node.get("host") != entry["new_host"] or not info.get("training_started"):
            continue
        entry["joined_at"] = info["training_started"]
        entry["seconds_lost"] = round(max(0.0, entry["joined_at"] - entry["lost_at"]), 3)
        changed = True
    if changed:
        from ...core.atomic import atomic_write_json

        atomic_write_json(Path(session_dir) / interruptions.FILE, entries)


def min_nodes(nodes: list[dict]) -> int:
    """The fewest nodes the run may go on with (MIN of --nodes MIN:MAX), as recorded."""
    low = nodes[0].get("min_nodes") if nodes else None
    return int(low) if isinstance(low, int) else len(nodes)


def cost(price: float | None, started: float | None, until: float) -> float | None:
    """What a node's host cost from its start until `until`, when its price is known."""
    if price is None or started is None:
        return None
    return round(price * max(0.0, until - started) / 3600, 4)


def ended_by(nodes: list[dict]) -> dict | None:
    return nodes[0].get("ended_by") if nodes else None


def given_up(nodes: list[dict]) -> set[str]:
    """Ranks the run no longer waits for (lost and not replaced)."""
    return {str(rank) for rank, node in enumerate(nodes) if rank and node.get("given_up")}


def latest_line(session_dir: str) -> str | None:
    """The newest node loss's reason, for the detail of a run that goes on."""
    found = replacements(session_dir)
    return found[-1]["reason"] if found else None


def show(answer: dict, nodes: list[dict], session_dir: str) -> None:
    """The head's probe answer as the run is after healing: a run ended by it says why
    (stopping while a node still runs, then its state); a run that goes on after a loss
    says the latest loss in its detail; nodes given up are not waited for."""
    from .nodes import alive, hold_for_nodes

    status, ended = answer.get("status"), ended_by(nodes)
    if not status:
        return
    if ended is None:
        hold_for_nodes(answer, skip=given_up(nodes))
        status = answer["status"]
        line = latest_line(session_dir)
        if line and status.get("state") == "running" and not status.get("reason"):
            answer["status"] = {**status, "reason": line}
        return
    skip = given_up(nodes)
    head_on = not nodes[0].get("given_up") and status.get("state") not in FINAL_STATES \
        and answer.get("runner_alive")
    others_on = [rank for rank, info in (answer.get("nodes") or {}).items()
                 if rank not in skip and info.get("state") not in FINAL_STATES and alive(info)]
    if head_on or others_on:
        answer["status"] = {**status, "state": "stopping", "reason": ended["reason"],
                            "ended": None}
        answer["runner_alive"] = True
    else:
        answer["status"] = {**status, "state": ended["state"], "reason": ended["reason"],
                            "ended": status.get("ended") or ended["at"]}


def note_moved(session_dir: str, rank: int, line: str) -> None:
    """A note in node `rank`'s log and the head's (the session's): its new machine's log
    follows after it."""
    from ...runner.nodes import NODES_DIR

    folder = Path(session_dir) / NODES_DIR / str(rank)
    folder.mkdir(parents=True, exist_ok=True)
    for log_path in (folder / "train.log", Path(session_dir) / "train.log"):
        with open(log_path, "ab") as log:
            log.write(f"\n[trainctl] {line}\n".encode())
