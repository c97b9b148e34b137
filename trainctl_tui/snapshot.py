"""`--once` / `--json` output: the same session data the TUI shows, rendered with rich only."""

from __future__ import annotations

import json
import time
from typing import TextIO

from .models import Session, Status
from .service import format_age

STATUS_STYLE = {
    Status.PENDING: "dim",
    Status.RUNNING: "green",
    Status.STOPPING: "yellow",
    Status.STOPPED: "yellow",
    Status.SUCCEEDED: "cyan",
    Status.FAILED: "bold red",
    Status.LOST: "bold magenta",
}
SCHEMA_VERSION = 1


def sessions_json(sessions: list[Session]) -> str:
    return json.dumps(
        {"version": SCHEMA_VERSION, "generated": time.time(),
         "sessions": [s.to_json() for s in sessions]},
        indent=2,
    )


def elapsed(session: Session, now: float | None = None) -> str:
    if not session.started:
        return "-"
    end = session.ended or (now or time.time())
    return format_age(end - session.started)


def outcome(session: Session) -> str:
    """'exit 1', 'SIGKILL' or the runner's reason, for the last column."""
    if session.detail:
        return session.detail
    if session.signal:
        import signal

        try:
            return signal.Signals(session.signal).name
        except ValueError:
            return f"signal {session.signal}"
    if session.exit_code is not None and not session.status.active:
        return f"exit {session.exit_code}"
    return ""


def render_sessions(sessions: list[Session], out: TextIO, *, width: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=width, highlight=False)
    if not sessions:
        console.print("no sessions yet — start one with: trainctl launch -- python train.py")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "PROVIDER", "STATUS", "ATTEMPT", "ELAPSED", "DETAIL"):
        table.add_column(column, no_wrap=column != "DETAIL", overflow="fold")
    now = time.time()
    for s in sessions:
        attempt = str(s.attempt) if s.attempt else "-"
        where = s.provider if not s.host else f"{s.provider}:{s.host}"
        table.add_row(
            s.id, s.name, where, f"[{STATUS_STYLE[s.status]}]{s.status}[/]",
            attempt, elapsed(s, now), outcome(s),
        )
    console.print(table)
