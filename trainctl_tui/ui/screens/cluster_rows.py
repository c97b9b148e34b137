"""The batch clusters' part of the Instances screen: one row per partition (nodes idle, mixed,
allocated, down, GPUs free, time limit, your jobs there), one row for a cluster that did not
answer, and the detail under the table with the user's queue. Whatever backend runs the
cluster: the rows come from ClusterInfo (app: Service.clusters)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from ...core.clusters import UP, ClusterInfo, Partition, QueuedJob, jobs_summary
from ..columns import ColumnLayout

CLUSTER_COLUMNS = [
    ("cluster", "CLUSTER", 10), ("partition", "PARTITION", 10), ("state", "STATE", 11),
    ("idle", "IDLE", 4), ("mixed", "MIX", 3), ("allocated", "ALLOC", 5), ("down", "DOWN", 4),
    ("gpus", "GPUS FREE", 9), ("cpus", "CPUS IDLE", 9), ("limit", "LIMIT", 10),
    ("jobs", "YOUR JOBS", 0),
]
CLUSTER_LAYOUT = ColumnLayout(
    CLUSTER_COLUMNS, narrow_drops={"cpus", "limit"},
    narrow_widths={"cluster": 8, "partition": 9, "gpus": 5},
    narrow_labels={"gpus": "GPUS", "jobs": "JOBS"})
STATE_STYLE = {UP: "green", "unreachable": "bold red", "error": "bold red", "probing": "dim"}
QUEUE_LINES = 4  # jobs listed in the detail; the rest are counted


@dataclass
class ClusterRow:
    """A partition of a cluster that answered; the whole cluster (partition None) when it did
    not, or has not yet."""

    info: ClusterInfo
    partition: Partition | None = None

    @property
    def key(self) -> str:
        """The cluster's name (the config's key), and the partition's."""
        return f"{self.info.name}:{self.partition.name}" if self.partition else self.info.name


def cluster_rows(clusters: list[ClusterInfo]) -> list[ClusterRow]:
    rows = []
    for info in sorted(clusters, key=lambda c: c.name):
        if info.state == UP and info.partitions:
            rows += [ClusterRow(info, partition) for partition in info.partitions]
        else:
            rows.append(ClusterRow(info))
    return rows


def probing(name: str) -> ClusterInfo:
    """A cluster not asked yet."""
    return ClusterInfo(name=name, backend="", state="probing")


def short_jobs(jobs: list[QueuedJob]) -> str:
    """'1R 2PD' as squeue's ST column says it; for 80 columns."""
    running = sum(1 for job in jobs if job.state == "RUNNING")
    queued = sum(1 for job in jobs if job.pending)
    other = len(jobs) - running - queued
    return " ".join(f"{count}{code}" for count, code in
                    ((running, "R"), (queued, "PD"), (other, "?")) if count)


def state_cell(row: ClusterRow) -> Text:
    if row.partition is not None and row.partition.state != "up":
        return Text(row.partition.state, style="bold red")
    state = row.info.state
    return Text("probing…" if state == "probing" else state, style=STATE_STYLE.get(state, ""))


def cluster_cells(row: ClusterRow, *, narrow: bool = False) -> dict:
    partition = row.partition
    name = Text(row.info.name, style="bold")
    if partition is None:
        dash = number_text("-")
        return {"cluster": name, "partition": "-", "state": state_cell(row), "idle": dash,
                "mixed": dash, "allocated": dash, "down": dash, "gpus": dash, "cpus": dash,
                "limit": "-", "jobs": (short_jobs if narrow else jobs_summary)(
                    row.info.queue) or "-"}
    jobs = row.info.jobs_in(partition.name)
    return {
        "cluster": name,
        "partition": partition.name + ("*" if partition.default else ""),
        "state": state_cell(row),
        "idle": number(partition.nodes_idle, "green"),
        "mixed": number(partition.nodes_mixed),
        "allocated": number(partition.nodes_allocated),
        "down": number(partition.nodes_down, "red"),
        "gpus": number_text(f"{partition.gpus_free}/{partition.gpus_total}"
                            if partition.gpus_total else "-"),
        "cpus": number_text(f"{partition.cpus_idle}/{partition.cpus_total}"
                            if partition.cpus_total else "-"),
        "limit": partition.time_limit or "-",
        "jobs": (short_jobs if narrow else jobs_summary)(jobs) or "-",
    }


def number(count: int, style_if_any: str = "") -> Text:
    return number_text(str(count), style_if_any if count else "")


def number_text(text: str, style: str = "") -> Text:
    return Text(text, style=style, justify="right")


def describe_cluster_row(row: ClusterRow) -> Text:
    """The detail under the table: the partition in full, then the user's queue there."""
    info, partition = row.info, row.partition
    login = "this machine" if info.login == "local" else info.login
    text = Text.assemble((info.name, "bold"), f" via {login}  " if info.login else "  ")
    if partition is None:
        text.append_text(state_cell(row))
        if info.error:
            text.append(f"\n{info.error}", style="red")
        elif info.state == UP:
            text.append("  no partitions visible to you")
        return text
    text.append_text(Text.assemble((partition.name, "bold"),
                                   " (default) " if partition.default else " ",
                                   state_cell(row)))
    if partition.time_limit:
        text.append(f"  limit {partition.time_limit}")
    text.append(f"\nnodes: {partition.nodes_idle} idle, {partition.nodes_mixed} mixed, "
                f"{partition.nodes_allocated} allocated, {partition.nodes_down} down"
                f" of {partition.nodes_total}")
    if partition.gpus_total:
        types = ", ".join(f"{count}x {kind or 'gpu'}" for kind, count in
                          partition.gpu_types.items())
        text.append(f" · GPUs {partition.gpus_free} free of {partition.gpus_total} ({types})")
    if partition.cpus_total:
        text.append(f" · CPUs {partition.cpus_idle} idle of {partition.cpus_total}")
    text.append_text(queue_lines(info))
    return text


def queue_lines(info: ClusterInfo) -> Text:
    """The user's jobs on the cluster, one aligned line each (the first QUEUE_LINES)."""
    text = Text(f"\nyour jobs on {info.name}: {jobs_summary(info.queue) or 'none'}")
    shown = info.queue[:QUEUE_LINES]
    def width(field: str) -> int:
        return max((len(getattr(job, field)) for job in shown), default=0)

    name_width = min(24, width("name"))
    for job in shown:
        text.append(f"\n  {job.id:<{width('id')}}  ")
        text.append(f"{job.name[:name_width]:<{name_width}}", style="bold")
        text.append(f"  {job.state:<{width('state')}}", style="green" if job.state == "RUNNING"
                    else "yellow" if job.pending else "")
        text.append(f"  {job.time:>{width('time')}}  {job.nodes} "
                    f"node{'s' if job.nodes != 1 else ''}  {job.partition}")
        if job.reason:
            text.append(f"  {job.reason}", style="yellow")
    if len(info.queue) > QUEUE_LINES:
        text.append(f"\n  … {len(info.queue) - QUEUE_LINES} more (trainctl clusters "
                    f"{info.name})")
    return text
