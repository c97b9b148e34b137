"""The requeues of a job, from what its batch shell noted (script.py's SIGNALS_FILE, "USR1
1733370000" a line): each is an attempt with its reason (Slurm's warning before the time
limit, or a preemption: Slurm requeued the job itself) and the queue time it cost, from the
requeue until the runner started its next attempt. They go in the session's interruption
record (core/interruptions.py) and on the attempts, as every backend's interruptions do."""

from __future__ import annotations

from ...core import interruptions
from ...core.formatting import format_duration


def parse_notes(text: str) -> list[tuple[str, float | None]]:
    """'USR1 1733370000' lines -> [('USR1', 1733370000.0), ...], in order."""
    notes = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        try:
            at = float(words[1]) if len(words) > 1 else None
        except ValueError:
            at = None
        notes.append((words[0], at))
    return notes


def requeues(notes: list[tuple[str, float | None]]) -> list[dict]:
    """One dict per start after a requeue: why ('time limit' after Slurm's USR1 warning,
    'preempted' after a TERM nobody asked trainctl for) and when it was requeued."""
    found, signal, requeued_at = [], None, None
    for name, at in notes:
        if name in ("USR1", "TERM"):
            signal, requeued_at = (name, at), at
        elif name == "REQUEUE":
            requeued_at = at
        elif name == "START" and signal is not None:
            found.append({"why": "time limit" if signal[0] == "USR1" else "preempted",
                          "signalled_at": signal[1], "requeued_at": requeued_at,
                          "restarted_at": at})
            signal, requeued_at = None, None
    return found


def attempt_at(attempts: list[dict], when: float | None) -> dict | None:
    """The attempt that was running at `when` (the last one started by then)."""
    if when is None:
        return None
    started = [a for a in attempts if (a.get("started") or 0) <= when]
    return started[-1] if started else None


def first_attempt_after(attempts: list[dict], when: float | None) -> dict | None:
    if when is None:
        return None
    return next((a for a in attempts if (a.get("started") or 0) >= when), None)


def entries(job: str, cluster: str, notes, attempts: list[dict], max_requeues: int
            ) -> list[dict]:
    """The interruption records of the job's requeues whose next attempt has started."""
    found = []
    for k, requeue in enumerate(requeues(notes), 1):
        interrupted = attempt_at(attempts, requeue["signalled_at"])
        again = first_attempt_after(attempts, requeue["restarted_at"])
        if interrupted is None or again is None:
            continue
        queued = max(0.0, again["started"] - (requeue["requeued_at"] or again["started"]))
        what = (f"time limit: Slurm's warning, saved and requeued ({k} of {max_requeues})"
                if requeue["why"] == "time limit" else f"preempted: requeued by Slurm ({k})")
        found.append({
            "machine": f"job {job}", "at": requeue["requeued_at"] or again["started"],
            "reason": f"{what}; queued {format_duration(queued)} until it ran again",
            "spot": False, "cost": None, "attempt": interrupted.get("n"),
            "job": job, "cluster": cluster, "requeue": k, "why": requeue["why"],
            "queued_seconds": round(queued, 3)})
    return found


def record(folder: str, new: list[dict]) -> list[dict]:
    """Adds to the session's interruption record the requeues it does not hold yet (by job
    and requeue number); returns every entry."""
    known = interruptions.load(folder)
    seen = {(e.get("job"), e.get("requeue")) for e in known}
    for entry in new:
        if (entry["job"], entry["requeue"]) not in seen:
            known = interruptions.append(folder, entry)
    return known


def with_reasons(status: dict, recorded: list[dict]) -> dict:
    """status.json with each recorded requeue's reason on the attempt it interrupted."""
    by_attempt = {e["attempt"]: e["reason"] for e in recorded if "requeue" in e}
    if not by_attempt:
        return status
    attempts = [{**a, "reason": by_attempt[a.get("n")]} if a.get("n") in by_attempt else a
                for a in status.get("attempts") or []]
    return {**status, "attempts": attempts}
