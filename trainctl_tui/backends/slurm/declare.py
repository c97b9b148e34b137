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
                      **{"forms": (), **more})

    def field(key: str, flag: str, help: str, label: str, **more) -> Option:
        """Also a field of the launch form, under the provider."""
        return job(key, flag, help, forms=(LAUNCH,), field=key.replace("_", "-"), label=label,
                   after="provider", **{"placeholder": "(the cluster's default)", **more})

    return (
        field("nodes", "--nodes", "nodes of the job, one runner each (MIN:MAX: as many as "
              "Slurm gives)", "Nodes", metavar="N|MIN:MAX", placeholder="1"),
        field("gpus_per_node", "--gpus-per-node", "GPUs per node (--gres=gpu:G)",
              "GPUs per node", type="int", metavar="G", minimum=0),
        field("time", "--time", "time limit, e.g. 04:00:00", "Time limit", metavar="T",
              placeholder="(the cluster's default) e.g. 04:00:00"),
        field("partition", "--partition", "partition", "Partition", metavar="P",
              select="probe"),
        job("account", "--account", "account to charge", metavar="A"),
        job("qos", "--qos", "quality of service", metavar="Q"),
    )


class SlurmDeclaration(Declaration):
    name = "slurm"
    needs_target = ("slurm needs a cluster: --provider slurm:NAME (a [slurm.clusters.NAME] in "
                    "the config)")
    lists_clusters = True
    nodes_place = "slurm:NAME"
    cluster_section = "[slurm.clusters.NAME]"

    @property
    def options(self) -> tuple[Option, ...]:  # built on first use: `sessions` never asks
        return _options()

    def configured(self, config) -> bool:
        return bool(config.slurm.clusters)

    def clusters(self, config) -> list[str]:
        return sorted(config.slurm.clusters)

    async def probe_clusters(self, config, names: list[str]) -> list:
        from .clusters import probe_clusters

        return await probe_clusters(config, names)

    def cluster_shell(self, config, name: str) -> list[str]:
        from ..errors import ProviderError
        from ..remote.transport import resolve_target, ssh_command

        login = config.slurm.clusters[name].login
        if login == "local":
            raise ProviderError(f"{name}: its login node is this machine (login = \"local\"); "
                                "sbatch and squeue work in any shell here")
        return ssh_command(resolve_target(login, config.ssh.hosts))

    async def probe_choices(self, config, placement, key: str) -> list[tuple[str, str]]:
        """The partitions of the cluster, from sinfo (the launch form's select)."""
        from ...core.clusters import UNREACHABLE, UP
        from ..errors import ProviderError, UnknownProvider
        from .clusters import partition_choices, probe_clusters

        clusters = config.slurm.clusters
        if key != "partition":
            return []
        if placement.target not in clusters:
            raise UnknownProvider(f"unknown Slurm cluster '{placement.target}'")
        info = (await probe_clusters(config, [placement.target]))[0]
        if info.state == UNREACHABLE:
            raise ProviderError(f"the login node is unreachable: {info.error}")
        if info.state != UP:
            raise ProviderError(info.error or info.state)
        return partition_choices(info, clusters[placement.target].partition)

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
