"""The slurm backend as the front ends see it: one launch place per configured cluster, and
the options of a batch job (nodes, GPUs per node, time, partition, account, QOS)."""

from __future__ import annotations

from ..declaration import Declaration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...core.options import Option


def _options() -> tuple[Option, ...]:
    from ...core.options import LAUNCH, Option

    def job(key: str, flag: str, help: str, **more) -> Option:
        return Option(key, flag, help=f"slurm: {help}", fills="spec", commands=(LAUNCH,),
                      forms=(), **more)

    return (
        job("nodes", "--nodes", "nodes of the job, one runner each (MIN:MAX: as many as Slurm "
            "gives)", metavar="N|MIN:MAX"),
        job("gpus_per_node", "--gpus-per-node", "GPUs per node (--gres=gpu:G)", type="int",
            metavar="G", minimum=0),
        job("time", "--time", "time limit, e.g. 04:00:00", metavar="T"),
        job("partition", "--partition", "partition", metavar="P"),
        job("account", "--account", "account to charge", metavar="A"),
        job("qos", "--qos", "quality of service", metavar="Q"),
    )


class SlurmDeclaration(Declaration):
    name = "slurm"
    needs_target = ("slurm needs a cluster: --provider slurm:NAME (a [slurm.clusters.NAME] in "
                    "the config)")

    @property
    def options(self) -> tuple[Option, ...]:  # built on first use: `sessions` never asks
        return _options()

    def configured(self, config) -> bool:
        return bool(config.slurm.clusters)

    def launch_places(self, config, rents: bool) -> list:
        from ...core.options import Place

        clusters = config.slurm.clusters
        return [Place(f"{self.name}:{name}", describe_cluster(clusters[name]))
                for name in sorted(clusters)]


def describe_cluster(cluster) -> str:
    """'Slurm via hpc-login · partition gpu · workdir /scratch/me/trainctl' for the form."""
    login = "this machine" if cluster.login == "local" else cluster.login
    parts = [f"Slurm via {login}"]
    if cluster.partition:
        parts.append(f"partition {cluster.partition}")
    parts.append(f"workdir {cluster.workdir}")
    return " · ".join(parts)
