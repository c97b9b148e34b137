"""`--once` / `--json` output: the same session data the TUI shows. The tables people print
many times a day (`sessions`, `--once`) are plain text (plain_table.py); the others use rich."""

from __future__ import annotations

import json
import math
import time

from ..core.formatting import format_duration, nodes_note, visible
from ..core.models import Session, Status

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    from typing import TextIO

STATUS_STYLE = {
    Status.PENDING: "dim",
    Status.RUNNING: "green",
    Status.STOPPING: "yellow",
    Status.STOPPED: "yellow",
    Status.SUCCEEDED: "cyan",
    Status.FAILED: "bold red",
    Status.LOST: "bold magenta",
    Status.UNREACHABLE: "bold yellow",
    Status.UNRESPONSIVE: "bold red",
    Status.INTERRUPTED: "bold yellow",
}
SCHEMA_VERSION = 1
NAME_WIDTH = 32  # a session name longer than this is cut in tables (--json has it whole)
CHECKPOINT_NAME_WIDTH = 60


def cell(text, limit: int | None = None) -> str:
    """A value for a rich table or line: made visible and not read as [markup]."""
    from rich.markup import escape

    return escape(visible(text, limit))


def sessions_json(sessions: list[Session], figures: dict | None = None,
                  usage: dict | None = None) -> str:
    """`sessions --json`; by session id, `figures`: progress and cost (app/costs.py), `usage`:
    an active session's GPUs, CPU and memory (app/gpu_usage.py)."""
    from ..app.gpu_usage import usage_json
    from ..app.nodes import node_rows_json
    from ..core.interruptions import node_losses_json

    figures, usage = figures or {}, usage or {}

    def entry(session: Session) -> dict:
        data = session.to_json()
        data["node_rows"] = node_rows_json(session)
        data["node_losses"] = node_losses_json(session.session_dir)
        if session.id in figures:
            data.update(figures[session.id].to_json())
        data.update(usage_json(usage.get(session.id)))
        return data

    return json.dumps(
        {"version": SCHEMA_VERSION, "generated": time.time(),
         "sessions": [entry(s) for s in sessions]},
        indent=2,
    )


def elapsed(session: Session, now: float | None = None) -> str:
    if not session.started:
        return "-"
    end = session.ended or (now or time.time())
    return format_duration(end - session.started)


def outcome(session: Session) -> str:
    """How the session ended ('exit 1', 'SIGKILL') and/or the runner's reason."""
    how = ""
    if session.signal:
        import signal

        try:
            how = signal.Signals(session.signal).name
        except ValueError:
            how = f"signal {session.signal}"
    elif session.exit_code is not None and not session.status.active:
        how = f"exit {session.exit_code}"
    detail = session.detail or ""
    if how and detail and how.split()[-1] not in detail:
        return f"{how}: {detail}"
    return detail or how


def render_sessions(sessions: list[Session], out: TextIO, *, width: int | None = None) -> None:
    """`trainctl sessions`: a plain table (plain_table.py: no rich, it starts fast)."""
    from .plain_table import render_table

    if not sessions:
        out.write("no sessions yet — start one with: trainctl launch -- python train.py\n")
        return
    headers = ("ID", "NAME", "PROVIDER", "STATUS", "ATTEMPT", "ELAPSED", "DETAIL")
    now = time.time()
    rows = [(s.id, visible(s.name, NAME_WIDTH), visible(where_text(s)), str(s.status),
             str(s.attempt) if s.attempt else "-", elapsed(s, now), visible(outcome(s)))
            for s in sessions]
    styles = [(None, None, None, STATUS_STYLE[s.status], None, None, None) for s in sessions]
    render_table(headers, rows, out, styles=styles, shrink=(1, 2), width=width)


def where_text(session: Session) -> str:
    """"local", "ssh:gpu-box", "aws:i-0123…", "runpod:abc123": the provider string says where
    (it already names the host; older rows may carry the host only in `host`)."""
    where = session.provider
    if session.host and not session.provider.endswith(f":{session.host}"):
        where = f"{session.provider}:{session.host}"
    return where + nodes_note(session.nodes)


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if not math.isfinite(value) else f"{value:.4g}"


def format_step(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.2f}"


def overview_json(rows) -> str:
    """`--once --json`: sessions with their last metrics, plus the alerts that hold now."""
    from ..app.gpu_usage import usage_json
    from ..app.nodes import node_rows_json
    from ..core.interruptions import node_losses_json
    from ..monitor.metrics import json_number  # strict JSON: a nan loss is "nan", not NaN

    sessions = []
    for row in rows:
        data = row.session.to_json()
        data["node_rows"] = node_rows_json(row.session)
        data["node_losses"] = node_losses_json(row.session.session_dir)
        data["metrics"] = ({name: {"last": json_number(s.ys[-1]), "step": s.xs[-1],
                                   "count": len(s), "nonfinite": s.nonfinite}
                            for name, s in row.metrics.series.items() if len(s)}
                           if row.metrics else {})
        data["step"] = row.step
        if row.figures is not None:
            data.update(row.figures.to_json())
        data.update(usage_json(row.usage))
        entry = row.newest_checkpoint
        data["newest_checkpoint"] = None if entry is None else {
            "path": entry.path, "step": entry.step, "mtime": entry.mtime, "size": entry.size}
        sessions.append(data)
    alerts = [a.to_json() for row in rows for a in row.alerts]
    return json.dumps({"version": SCHEMA_VERSION, "generated": time.time(),
                       "sessions": sessions, "alerts": alerts}, indent=2)


def render_overview(rows, out: TextIO, *, width: int | None = None) -> None:
    """`--once`: the sessions table of the TUI, with last metrics, then open alerts. A plain
    table (plain_table.py): no rich, so a snapshot for a script starts fast."""
    from ..core.formatting import terminal_columns
    from .plain_table import paint, render_table, wants_colour
    from .sparkline import sparkline

    if not rows:
        out.write("no sessions yet — start one with: trainctl launch -- python train.py "
                  "(or trainctl demo)\n")
        return
    width = width or terminal_columns()  # 80 when piped
    # At 80 columns (ssh, tmux) the less important columns go; NAME is cut short to fit.
    narrow = width < 110
    from .progress import cost_cell, eta_cell

    columns = ["", "ID", "NAME", "WHERE", "STATUS", "ATT", "STEP", "LOSS", "VAL", "TREND",
               "ELAPSED", "ETA", "COST", "DETAIL"]
    if narrow:
        columns = [c for c in columns if c not in ("WHERE", "VAL", "COST", "DETAIL")]
    now = time.time()
    table, styles = [], []
    for row in rows:
        s = row.session
        cells = {
            "": "!" if row.alerts else "", "ID": s.id, "NAME": visible(s.name, NAME_WIDTH),
            "WHERE": visible(where_text(s)),
            "STATUS": str(s.status), "ATT": str(s.attempt or "-"),
            "STEP": format_step(row.step), "LOSS": format_number(row.last("loss")),
            "VAL": format_number(row.last("val_loss")),
            "TREND": sparkline(row.trend("loss", 8 if narrow else 12)),
            "ELAPSED": elapsed(s, now), "ETA": eta_cell(row.figures),
            "COST": cost_cell(row.figures), "DETAIL": visible(outcome(s)),
        }
        style = {"": "bold red", "STATUS": STATUS_STYLE[s.status], "TREND": "cyan"}
        table.append([cells[c] for c in columns])
        styles.append([style.get(c) for c in columns])
    render_table(columns, table, out, styles=styles, shrink=(columns.index("NAME"),),
                 width=width)
    colour = wants_colour(out)
    newest = [row for row in rows if row.newest_checkpoint is not None]
    if newest:
        out.write(f"\n{paint('newest checkpoints', 'bold', colour)}\n")
        for row in newest:
            entry = row.newest_checkpoint
            step = f"step {entry.step}, " if entry.step is not None else ""
            out.write(f"  {visible(row.session.name, NAME_WIDTH)} ({row.session.id}): "
                      f"{visible(entry.path)} "
                      f"({step}{format_duration(now - entry.mtime)} ago)\n")
    working = [row for row in rows if row.usage is not None]
    if working:
        from .usage import usage_line

        out.write(f"\n{paint('GPUs at work', 'bold', colour)}\n")
        for row in working:
            out.write(f"  {visible(row.session.name, NAME_WIDTH)} ({row.session.id}): "
                      f"{usage_line(row.usage)}\n")
    alerts = [a for row in rows for a in row.alerts]
    if alerts:
        title = f"{len(alerts)} open alert{'s' if len(alerts) > 1 else ''}"
        out.write(f"\n{paint(title, 'bold', colour)}\n")
        for alert in alerts:
            style = "red" if alert.severity == "error" else "yellow"
            out.write(f"  {paint(alert.kind, style, colour)} "
                      f"{visible(alert.session_name, NAME_WIDTH)} ({alert.session_id}): "
                      f"{visible(alert.message)}\n")


def render_metrics(metrics, log: str, out: TextIO) -> None:
    """`trainctl metrics`: one line per series: count, last value and step, range."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    summary = metrics.summary()
    if not summary:
        console.print(f"no metrics found in {log}")
        return
    table = Table(box=None, pad_edge=False, header_style="bold", title=log, title_justify="left")
    for column in ("SERIES", "POINTS", "LAST STEP", "LAST", "MIN", "MAX", "NAN/INF"):
        table.add_column(column, justify="left" if column == "SERIES" else "right")
    for name, info in summary.items():
        table.add_row(name, str(info["count"]), format_step(info["last_x"]),
                      format_number(info["last"]), format_number(info["min"]),
                      format_number(info["max"]),
                      f"[red]{info['nonfinite']}[/]" if info["nonfinite"] else "0")
    console.print(table)


CHECKPOINT_STATUS_STYLE = {"ok": "green", "writing": "yellow", "corrupt": "bold red",
                           "suspicious": "bold magenta", "unknown": "dim"}


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def render_checkpoints(directory: str, rows, skipped, out: TextIO) -> None:
    """`trainctl checkpoints`: oldest first, like `ls -tr`, so the newest is at the bottom."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    if not rows:
        console.print(f"no checkpoints in {cell(directory)}")
    else:
        table = Table(box=None, pad_edge=False, header_style="bold", title=cell(directory),
                      title_justify="left")
        columns = ["STEP", "NAME", "SIZE", "AGE", "STATUS", "FORMAT", "LOSS", "PARAMS"]
        if console.width < 110:  # 80 columns: the name matters more than these
            columns = [c for c in columns if c not in ("AGE", "FORMAT")]
        for column in columns:
            table.add_column(column, justify="right" if column in ("STEP", "SIZE") else "left",
                             no_wrap=column != "NAME", overflow="fold")
        now = time.time()
        notes = []
        for row in rows:
            info = row.info
            note = (info.reason if info and info.reason else row.entry.note)
            if note:
                notes.append(f"[{CHECKPOINT_STATUS_STYLE.get(row.status, '')}]"
                             f"{cell(row.entry.name, CHECKPOINT_NAME_WIDTH)}[/]: {cell(note)}")
            style = CHECKPOINT_STATUS_STYLE.get(row.status, "")
            cells = {
                "STEP": format_step(row.step),
                "NAME": cell(row.entry.name, CHECKPOINT_NAME_WIDTH),
                "SIZE": format_size(row.entry.size), "AGE": format_duration(now - row.entry.mtime),
                "STATUS": f"[{style}]{row.status}[/]", "FORMAT": info.format if info else "-",
                "LOSS": format_number(row.loss),
                "PARAMS": f"{info.param_count:,}" if info and info.param_count else "-",
            }
            table.add_row(*(cells[c] for c in columns))
        console.print(table)
        for note in notes:
            console.print(f"  {note}")
    for path, reason in skipped:
        console.print(f"[yellow]skipped[/] {cell(path)}: {cell(reason)}")


def render_checkpoint_info(info, out: TextIO) -> None:
    """`trainctl checkpoint info`: what a checkpoint holds, read without running it."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    style = CHECKPOINT_STATUS_STYLE.get(info.status, "")
    # Everything below comes from the file, which may be hostile: cell() shows control
    # characters and keeps rich from reading [markup] in it.
    console.print(f"[bold]{cell(info.path)}[/]")
    console.print(f"  status   [{style}]{info.status}[/]" +
                  (f": {cell(info.reason)}" if info.reason else ""))
    facts = [("format", info.format), ("size", format_size(info.size)),
             ("step", info.step), ("epoch", info.epoch), ("loss", info.loss),
             ("best", info.best_metric),
             ("tensors", f"{info.tensor_count:,}" if info.tensor_count else None),
             ("params", f"{info.param_count:,}" if info.param_count else None),
             ("dtypes", ", ".join(f"{k} x{v}" for k, v in info.dtypes.items()) or None),
             ("keys", ", ".join(info.top_keys) or None),
             ("optimizer", "yes" if info.has_optimizer else "no")]
    for label, value in facts:
        if value is not None:
            console.print(f"  {label:<8} {cell(value)}")
    for label, values in (("metrics", info.metrics), ("hparams", info.hparams or {}),
                          ("model", getattr(info, "model_args", None) or {}),
                          ("metadata", getattr(info, "metadata", None) or {})):
        if values:
            shown = ", ".join(f"{k}={v}" for k, v in list(values.items())[:12])
            more = f" (+{len(values) - 12} more)" if len(values) > 12 else ""
            console.print(f"  {label:<8} {cell(shown)}{more}")
    for note in getattr(info, "unverified", None) or []:
        console.print(f"  [yellow]not checked[/] {cell(note)}")
    if info.dangerous_globals:
        console.print(f"  [bold red]code it would run[/]: "
                      f"{cell(', '.join(info.dangerous_globals))}")
    if info.unknown_globals:
        console.print(f"  [yellow]unknown globals[/] (never imported): "
                      f"{cell(', '.join(info.unknown_globals))}")
    if info.tensors:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("TENSOR", "DTYPE", "SHAPE", "PARAMS"):
            table.add_column(column, justify="right" if column == "PARAMS" else "left")
        for tensor in info.tensors[:15]:
            table.add_row(cell(tensor.name), cell(tensor.dtype),
                          "x".join(map(str, tensor.shape)) or "()", f"{tensor.numel:,}")
        console.print(table)
        if len(info.tensors) > 15:
            console.print(f"  ... {len(info.tensors) - 15} more tensors (--json lists them)")


def render_hosts(infos, out: TextIO) -> None:
    """`trainctl hosts`: one row per configured SSH host."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    if not infos:
        console.print("no SSH hosts configured: add [ssh.hosts.NAME] to the config "
                      "(trainctl config init writes an example)")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("HOST", "ADDRESS", "STATE", "LOAD", "CPUS", "GPUS", "SESSIONS"):
        table.add_column(column, overflow="fold", no_wrap=column in ("HOST", "STATE"))
    for info in infos:
        if info.reachable:
            state = f"[green]up[/] {info.rtt_ms:.0f} ms"
        else:
            state = "[bold red]unreachable[/]"
        gpus = ", ".join(f"{g['name']} {g['memory_used_mib']}/{g['memory_total_mib']} MiB "
                         f"{g['utilization']}%" for g in info.gpus) or ("none" if info.reachable
                                                                        else "-")
        table.add_row(info.name, info.address, state,
                      " ".join(f"{x:.2f}" for x in info.load) or "-",
                      str(info.cpus or "-"), gpus, ", ".join(info.sessions) or "-")
    console.print(table)
    for info in infos:
        if info.error:
            console.print(f"  [red]{info.name}[/]: {info.error}")
