"""Batch clusters as the front ends show them, whatever the scheduler: each partition's nodes
and GPUs, the user's own jobs, or why the cluster did not answer. Plain data; the backend that
runs jobs on a cluster fills it (`trainctl clusters`, the Instances screen)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

UP, UNREACHABLE, ERROR = "up", "unreachable", "error"  # ClusterInfo.state


@dataclass
class Partition:
    """One partition (queue) of a cluster. A node in two partitions counts in both."""

    name: str
    default: bool = False  # where a job goes without --partition
    state: str = "up"  # the partition's own: up, down, drain, inact
    time_limit: str = ""  # the scheduler's words: "30:00", "1-00:00:00", "infinite"
    nodes_idle: int = 0
    nodes_mixed: int = 0  # some CPUs or GPUs still free
    nodes_allocated: int = 0
    nodes_down: int = 0  # down, drained, draining, not responding: take no new job
    gpus_total: int = 0
    gpus_used: int = 0
    gpus_free: int = 0  # on nodes that take jobs (idle or mixed) only
    gpu_types: dict[str, int] = field(default_factory=dict)  # "a100" -> count ("" untyped)
    cpus_idle: int = 0  # on nodes that take jobs
    cpus_total: int = 0

    @property
    def nodes_total(self) -> int:
        return self.nodes_idle + self.nodes_mixed + self.nodes_allocated + self.nodes_down

    def to_json(self) -> dict:
        return {"name": self.name, "default": self.default, "state": self.state,
                "time_limit": self.time_limit,
                "nodes": {"total": self.nodes_total, "idle": self.nodes_idle,
                          "mixed": self.nodes_mixed, "allocated": self.nodes_allocated,
                          "down": self.nodes_down},
                "gpus": {"total": self.gpus_total, "used": self.gpus_used,
                         "free": self.gpus_free, "types": dict(self.gpu_types)},
                "cpus": {"total": self.cpus_total, "idle": self.cpus_idle}}


@dataclass
class QueuedJob:
    """One of the user's jobs in the cluster's queue."""

    id: str
    name: str
    state: str  # the scheduler's word: PENDING, RUNNING, COMPLETING ...
    reason: str = ""  # why it waits (Priority, Resources ...); "" when it runs
    time: str = ""  # how long it has run, as the scheduler prints it ("0:42")
    time_limit: str = ""
    nodes: int = 0
    partition: str = ""

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ClusterInfo:
    """A cluster's partitions and the user's queue, or why it could not be asked."""

    name: str
    backend: str  # the registry name of the backend that runs jobs there
    login: str = ""  # where its commands run: "local" or an ssh host
    state: str = UP  # UP, UNREACHABLE (the login node did not answer), ERROR (it said why)
    error: str | None = None
    user: str = ""  # whose queue this is
    partitions: list[Partition] = field(default_factory=list)
    queue: list[QueuedJob] = field(default_factory=list)

    @property
    def place(self) -> str:
        """The provider string a run there takes: "slurm:hpc"."""
        return f"{self.backend}:{self.name}"

    def jobs_in(self, partition: str) -> list[QueuedJob]:
        return [job for job in self.queue if partition in job.partition.split(",")]

    def to_json(self) -> dict:
        return {"name": self.name, "backend": self.backend, "login": self.login,
                "state": self.state, "error": self.error, "user": self.user,
                "partitions": [p.to_json() for p in self.partitions],
                "queue": [job.to_json() for job in self.queue]}


def jobs_summary(jobs: list[QueuedJob]) -> str:
    """'1 running, 2 queued' ('' for none); jobs neither running nor pending count as other."""
    running = sum(1 for job in jobs if job.state == "RUNNING")
    queued = sum(1 for job in jobs if job.pending)
    other = len(jobs) - running - queued
    parts = [f"{running} running" if running else "", f"{queued} queued" if queued else "",
             f"{other} other" if other else ""]
    return ", ".join(part for part in parts if part)
