"""[slurm]: the clusters runs can go to, each `[slurm.clusters.NAME]`."""

from __future__ import annotations

from pydantic import Field

from ...config.section import Section


class SlurmCluster(Section):
    login: str = "local"  # "local" when sbatch is on this machine, else an ssh host or alias
    workdir: str  # on the filesystem the login node and the compute nodes share
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # Slurm's syntax: "04:00:00", "1-00:00:00", "30"
    gpus_per_node: int | None = Field(None, ge=0)  # becomes --gres=gpu:N
    gres: str | None = None  # instead of gpus_per_node: "gpu:a100:4"
    setup: list[str] = Field(default_factory=list)  # shell lines run before the runner
    sbatch_args: list[str] = Field(default_factory=list)  # e.g. ["--mem=64G"]
    signal_lead_seconds: int = Field(120, ge=0, le=65535)
    max_requeues: int = Field(5, ge=0)
    python: str = "python3"
    # USD per GPU-hour: a run's price is this x GPUs per node x nodes (cost, budgets)
    price_per_gpu_hour: float | None = Field(None, ge=0)


class SlurmConfig(Section):
    clusters: dict[str, SlurmCluster] = Field(default_factory=dict)
