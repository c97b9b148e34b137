"""`trainctl clusters`: each batch cluster's partitions and the user's queue as compact rich
tables, or JSON (JSON_SCHEMA, shown in the command's help). Never imports textual."""

from __future__ import annotations

import json
import time
from typing import TextIO

from ..core.clusters import UP, ClusterInfo, Partition, jobs_summary

JSON_SCHEMA = """\
--json prints (version 1; counts are integers, the rest strings unless said):
  {"version": 1, "generated": EPOCH_SECONDS, "clusters": [CLUSTER, ...]}
  CLUSTER   = {"name", "backend", "login", "state": "up" | "unreachable" | "error",
               "error": null | ONE_LINE, "user", "partitions": [PARTITION, ...],
               "queue": [JOB, ...]}
  PARTITION = {"name", "default": true | false, "state", "time_limit",
               "nodes": {"total", "idle", "mixed", "allocated", "down"},
               "gpus": {"total", "used", "free", "types": {TYPE: COUNT}},
               "cpus": {"total", "idle"}}
  JOB       = {"id", "name", "state", "reason", "time", "time_limit", "nodes", "partition"}
"down" nodes take no new job (down, drained, draining, not responding); free GPUs and idle
CPUs count only nodes that take jobs (idle or mixed). An unreachable cluster has no
partitions and no queue. Exit code 0 when at least one cluster answered, else 1."""

STATE_STYLE = {"up": "green", "unreachable": "bold red", "error": "bold red",
               "RUNNING": "green", "PENDING": "yellow"}


def clusters_json(clusters: list[ClusterInfo]) -> str:
    return json.dumps({"version": 1, "generated": time.time(),
                       "clusters": [c.to_json() for c in clusters]}, indent=2)


def login_words(cluster: ClusterInfo) -> str:
    return "this machine" if cluster.login == "local" else cluster.login


def gpus_cell(partition: Partition) -> str:
    """'6/16' free of total; '-' on a partition without GPUs."""
    return f"{partition.gpus_free}/{partition.gpus_total}" if partition.gpus_total else "-"


def cpus_cell(partition: Partition) -> str:
    return f"{partition.cpus_idle}/{partition.cpus_total}" if partition.cpus_total else "-"


def render_clusters(clusters: list[ClusterInfo], out: TextIO) -> None:
    """Per cluster a heading line, its partitions and the user's jobs; an unreachable one
    in one line."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, highlight=False)
    for at, cluster in enumerate(clusters):
        if at:
            console.print()
        style = STATE_STYLE.get(cluster.state, "")
        heading = (f"[bold]{escape(cluster.name)}[/] via {escape(login_words(cluster))} · "
                   f"[{style}]{cluster.state}[/]")
        if cluster.state != UP:  # one line, however long: scripts grep it
            console.print(f"{heading}: {escape(cluster.error or '')}", soft_wrap=True)
            continue
        jobs = jobs_summary(cluster.queue)
        console.print(f"{heading} · {escape(cluster.user)}: "
                      f"{jobs or 'no jobs'}")
        console.print(partitions_table(cluster, narrow=console.width < 100))
        if cluster.queue:
            console.print(queue_table(cluster))


def partitions_table(cluster: ClusterInfo, *, narrow: bool):
    """One row per partition; the default one is marked '*' as sinfo does."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["PARTITION", "IDLE", "MIX", "ALLOC", "DOWN", "GPUS FREE", "CPUS IDLE", "LIMIT",
               "YOUR JOBS"]
    if narrow:  # 80 columns: the rest is in --json
        columns.remove("CPUS IDLE")
    numbers = {"IDLE", "MIX", "ALLOC", "DOWN", "GPUS FREE", "CPUS IDLE"}
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis",
                         justify="right" if column in numbers else "left")
    for partition in cluster.partitions:
        name = escape(partition.name) + ("*" if partition.default else "")
        if partition.state != "up":  # a partition is up but for rare moments: say so then
            name += f" [bold red]{escape(partition.state)}[/]"
        cells = {
            "PARTITION": name,
            "IDLE": str(partition.nodes_idle), "MIX": str(partition.nodes_mixed),
            "ALLOC": str(partition.nodes_allocated), "DOWN": str(partition.nodes_down),
            "GPUS FREE": gpus_cell(partition), "CPUS IDLE": cpus_cell(partition),
            "LIMIT": partition.time_limit or "-",
            "YOUR JOBS": jobs_summary(cluster.jobs_in(partition.name)) or "-",
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def queue_table(cluster: ClusterInfo):
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["JOB", "NAME", "STATE", "REASON", "TIME", "NODES", "PARTITION"]
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis",
                         justify="right" if column in ("TIME", "NODES") else "left")
    for job in cluster.queue:
        style = STATE_STYLE.get(job.state, "")
        table.add_row(job.id, escape(job.name),
                      f"[{style}]{job.state}[/]" if style else job.state,
                      escape(job.reason) or "-", job.time, str(job.nodes), job.partition)
    return table
