"""The nodes of a multi-node run for the front ends: a row per node (rank, host, state,
heartbeat, GPUs, $/h), the alert when a node stops answering or dies while the head runs on,
and the line the session's detail gives it.

Read from the session folder, whatever the backend: nodes.json (what the last probe saw of
each node, written by backends/remote/node_view.py), node R's GPU samples in
nodes/R/usage.json (the head's in usage.json), and each node's $/h in the spec's
`node_prices` (what the launch priced each node at)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.formatting import format_duration
from ..core.models import Record, Session, Status
from ..monitor.usage import Usage, usage_of
from ..runner.nodes import NODES_DIR
from ..runner.status import FINAL_STATES

NODES_FILE = "nodes.json"  # written by backends/remote/node_view.py
# A node whose heartbeat is older than this (seconds, as its probe saw it) is not answering.
STALE_SECONDS = 60.0
FINAL = (*FINAL_STATES, "lost")
# While the session is one of these its nodes' troubles are news (an unreachable head
# says nothing new about its nodes).
WATCHED = (Status.RUNNING, Status.STOPPING)
GONE = "is gone without a final status"


class NodeRow(Record):
    """One node of the run as last seen."""

    rank: int
    host: str | None = None
    state: str | None = None  # the node's runner's state; None: not heard of yet
    reason: str | None = None
    exit_code: int | None = None
    heartbeat_age: float | None = None  # seconds, as of the probe
    seen: float | None = None  # when the probe was (this machine's clock)
    answering: bool = True  # its runner answers (the backend's word)
    error: str | None = None  # why its host did not answer
    usage: Usage | None = None
    price_per_hour: float | None = None

    @property
    def name(self) -> str:
        """'node 1 (on b)'."""
        return f"node {self.rank}" + (f" (on {self.host})" if self.host else "")

    def beat_age(self, now: float) -> float | None:
        """Seconds since the node's last heartbeat, counted on to `now`."""
        if self.heartbeat_age is None or self.state in FINAL:
            return None
        return self.heartbeat_age + max(0.0, now - (self.seen or now))

    def trouble(self) -> tuple[str, str] | None:
        """(alert kind, the line) when the node failed or stopped answering, else None:
        'node 1 (on b) failed (exit 1)'."""
        found = self.problem()
        if found is None:
            return None
        kind, why = found
        if kind == "node_failed":
            return kind, f"{self.name} {self.state} ({why})"
        if why == GONE:
            return kind, f"{self.name} {GONE}" + (
                f" (last heartbeat {format_duration(self.heartbeat_age)} ago)"
                if self.heartbeat_age is not None else "")
        return kind, f"{self.name} is not answering: {why}"

    def problem(self) -> tuple[str, str] | None:
        """(alert kind, why in a few words) when the node failed or stopped answering."""
        if self.state in ("failed", "lost"):
            return "node_failed", (f"exit {self.exit_code}" if self.exit_code is not None
                                   else self.reason or self.state)
        if self.state in FINAL:
            return None
        if self.error:
            return "node_lost", self.error
        if self.state is None:
            return None  # not started yet: the head waits for it at the rendezvous
        if not self.answering:
            return "node_lost", GONE
        if self.heartbeat_age is not None and self.heartbeat_age > STALE_SECONDS:
            return "node_lost", f"no heartbeat for {format_duration(self.heartbeat_age)}"
        return None


def node_rows(session: Session) -> list[NodeRow]:
    """Each node of a multi-node session as the last probe saw it; [] for a one-node run
    or before a probe saw its nodes."""
    folder = Path(session.session_dir)
    try:
        data = json.loads((folder / NODES_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return []
    raw_rows = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(raw_rows, list) or len(raw_rows) < 2:
        return []
    seen = _number(data.get("at"))
    prices = node_prices(session)
    rows = []
    for raw in raw_rows:
        if not isinstance(raw, dict) or not isinstance(raw.get("rank"), int):
            continue
        rank = raw["rank"]
        usage_dir = folder if rank == 0 else folder / NODES_DIR / str(rank)
        rows.append(NodeRow(
            rank=rank, host=_text(raw.get("host")), state=_text(raw.get("state")),
            reason=_text(raw.get("reason")),
            exit_code=raw.get("exit_code") if isinstance(raw.get("exit_code"), int) else None,
            heartbeat_age=_number(raw.get("heartbeat_age")), seen=seen,
            answering=raw.get("answering") is not False, error=_text(raw.get("error")),
            # an ended node's last samples are no reading
            usage=usage_of(usage_dir) if session.status.active and
            raw.get("state") not in FINAL else None,
            price_per_hour=prices[rank] if rank < len(prices) else None))
    return rows


def node_rows_json(session: Session, now: float | None = None) -> list[dict]:
    """`sessions[].node_rows` of the JSON outputs: each node as the last probe saw it, with
    its heartbeat's age counted on to now and its GPUs; [] for a one-node run."""
    now = time.time() if now is None else now
    found = []
    for row in node_rows(session):
        age = row.beat_age(now)
        found.append({"rank": row.rank, "host": row.host, "state": row.state,
                      "reason": row.reason, "exit_code": row.exit_code,
                      "heartbeat_age": None if age is None else round(age, 1),
                      "answering": row.answering, "error": row.error,
                      "price_per_hour": row.price_per_hour,
                      "gpus": row.usage.gpus if row.usage is not None else []})
    return found


def node_prices(session: Session) -> list[float | None]:
    """Each node's $/h as the launch priced it (the spec's node_prices), else []."""
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError, RecursionError):
        return []
    prices = spec.get("node_prices") if isinstance(spec, dict) else None
    if not isinstance(prices, list):
        return []
    return [_number(price) for price in prices]


def troubles(session: Session, rows: list[NodeRow] | None = None,
             status: Status | None = None) -> list[tuple[int, str, str]]:
    """(rank, alert kind, line) of each node past the head that failed or stopped answering
    while the run goes on (the session's status, or `status` about to be it)."""
    if (status or session.status) not in WATCHED:
        return []
    rows = node_rows(session) if rows is None else rows
    found = []
    for row in rows:
        trouble = row.trouble() if row.rank else None
        if trouble is not None:
            found.append((row.rank, *trouble))
    return found


def node_alerts(session: Session, now: float | None = None,
                rows: list[NodeRow] | None = None) -> list:
    """The alerts of the nodes' troubles (monitor/alerts.py delivers each once per node
    and attempt)."""
    from ..monitor.alerts import ERROR, Alert, AlertKind

    return [Alert(session_id=session.id, session_name=session.name, kind=AlertKind(kind),
                  message=line, severity=ERROR, at=now or time.time(),
                  attempt=session.attempt or 0, episode=f"node{rank}")
            for rank, kind, line in troubles(session, rows)]


def with_node_trouble(session: Session, changes: dict) -> dict:
    """A refresh's changes, the detail naming the nodes in trouble when the run goes on
    and nothing else says why (`node 1 (on b) failed (exit 1)`)."""
    status = changes.get("status", session.status)
    detail = changes.get("detail", session.detail)
    if status not in WATCHED or detail:
        return changes
    found = troubles(session, status=status)
    if not found:
        return changes
    line = "; ".join(line for _, _, line in found)
    changes = {**changes, "detail": line}
    return {key: value for key, value in changes.items() if getattr(session, key) != value}


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None
