"""What a user does with machines: SSH hosts probed, and the instances of every cloud set up
listed, created, started, stopped, terminated and priced (fleet.py asks the clouds)."""

from __future__ import annotations

from ..core.errors import TrainctlError
from ..core.models import Status


class MachineActions:
    """Service's machines: SSH hosts, and the instances of every cloud set up."""

    async def hosts(self) -> list:
        """Every configured host: reachability, load, GPUs, sessions running there."""
        from ..backends.registry import host_backends

        infos = []
        for backend in host_backends():
            infos += await backend.probe_hosts(self.config)
        active = self.store.list(statuses=[s for s in Status if s.active])
        for info in infos:
            info.sessions = [s.id for s in active if s.host == info.name]
        return infos

    def host_names(self) -> list[str]:
        """The configured hosts, sorted."""
        from ..backends.registry import host_backends

        return sorted(name for backend in host_backends() for name in backend.hosts(self.config))

    def cluster_names(self) -> list[str]:
        """The configured batch clusters, sorted."""
        from ..backends.registry import cluster_backends

        return sorted(name for backend in cluster_backends()
                      for name in backend.clusters(self.config))

    async def clusters(self, names: list[str] | None = None) -> list:
        """Partitions and the user's queue of the clusters named (default: every one), in
        name order, all asked at once; a cluster that does not answer is in the list as
        unreachable. An unknown name, or none configured, is refused in one line."""
        from ..backends.registry import cluster_backends
        from ..core import aio

        backends = cluster_backends()
        owner = {name: backend for backend in backends for name in backend.clusters(self.config)}
        sections = " or ".join(backend.cluster_section for backend in backends)
        if not owner:
            raise TrainctlError(f"no clusters configured: add a {sections} section to the config "
                                "(trainctl config path shows where)")
        for name in names or []:
            if name not in owner:
                raise TrainctlError(f"unknown cluster '{name}' (configured: "
                                    f"{', '.join(sorted(owner))}); add "
                                    f"{sections.replace('.NAME]', f'.{name}]')} to the config")
        wanted = sorted(set(names or owner))
        groups = await aio.gather(*(backend.probe_clusters(
            self.config, [name for name in wanted if owner[name] is backend])
            for backend in backends))
        return sorted((info for group in groups for info in group), key=lambda i: i.name)

    def cluster_shell(self, name: str) -> list[str]:
        """The interactive command that opens a shell on the login node of cluster `name`."""
        from ..backends.registry import cluster_backends

        backend = next(b for b in cluster_backends() if name in b.clusters(self.config))
        return backend.cluster_shell(self.config, name)

    async def probe_choices(self, provider: str, key: str) -> list[tuple[str, str]]:
        """(label, value) of a launch option's select that asks the place (a cluster's
        partitions); raises TrainctlError when it does not answer."""
        from ..backends.registry import declaration
        from ..core.placement import Placement

        placement = Placement.parse(provider)
        return await declaration(placement.kind).probe_choices(self.config, placement, key)

    def host_shell(self, name: str) -> list[str]:
        """The interactive command that opens a shell on configured host `name`."""
        from ..backends.registry import host_backends

        backend = next(b for b in host_backends() if name in b.hosts(self.config))
        return backend.host_shell(self.config, name)

    def machine_shell(self, instance, has=None) -> list[str]:
        """The interactive command that opens a shell on a rented machine (its backend's)."""
        import shutil

        from ..backends.registry import machine_shell

        if not instance.billing:
            raise TrainctlError(f"{instance.id} is {instance.state}: start it first (u)")
        return machine_shell(self, instance, has or shutil.which)

    @staticmethod
    def shell_failure(argv: list[str], code: int, name: str) -> str | None:
        """Why an interactive shell ended, when it was the shell client's own failure."""
        from ..backends.registry import shell_failure

        return shell_failure(argv, code, name)

    def launch_places(self):
        """The providers the launch form offers (Place: provider, what it means, spot)."""
        from .machines import launch_places

        return launch_places(self.config, self.clouds())

    def select_choices(self, provider: str, key: str) -> list[tuple[str, str]]:
        """(label, value) of a machine option's select (e.g. templates) on the forms."""
        from .machines import select_choices

        return select_choices(self.config, provider, key)

    def clouds(self, provider: str | None = None) -> list[str]:
        """The clouds to ask: the one named, else every cloud the user has set up."""
        from .fleet import cloud_for, configured_clouds


        if provider:
            return [cloud_for("", provider)]
        return configured_clouds(self.config)

    async def instances(self, *, provider: str | None = None, include_unmanaged: bool = False):
        """(instances, {cloud: error}) across the clouds set up; sessions filled in."""
        from .fleet import list_instances

        instances, errors = await list_instances(self.clouds(provider),
                                                 include_unmanaged=include_unmanaged)
        by_host = {s.host: s.id for s in self.store.list(statuses=[s for s in Status
                                                                   if s.active]) if s.host}
        for instance in instances:
            instance.session = by_host.get(instance.id, instance.session)
        return instances, errors

    async def instance(self, instance_id: str, *, provider: str | None = None):
        from ..backends.registry import get_cloud
        from .fleet import cloud_for

        return await get_cloud(cloud_for(instance_id, provider)).get_instance(instance_id)

    async def create_instance(self, request, progress=None):
        from ..backends.registry import get_cloud

        return await get_cloud(request.provider).create_instance(request, progress)

    async def instance_action(self, action: str, instance_id: str, *,
                              provider: str | None = None, dry_run: bool = False,
                              force: bool = False):
        """start | stop | terminate one instance; returns it as the cloud now reports it."""
        from ..backends.registry import get_cloud
        from .fleet import cloud_for

        if action not in ("start", "stop", "terminate"):
            raise TrainctlError(f"unknown instance action '{action}' (start, stop, terminate)")
        cloud = get_cloud(cloud_for(instance_id, provider))
        method = getattr(cloud, f"{action}_instance")
        kwargs = {"dry_run": dry_run}
        if force:
            kwargs["force"] = True
        return await method(instance_id, **kwargs)

    async def prices(self, provider: str, type: str | None = None):
        from ..backends.registry import get_cloud
        from .fleet import cloud_for

        return await get_cloud(cloud_for("", provider)).prices(type)


