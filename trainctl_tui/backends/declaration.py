"""What a backend tells the front ends and the app about itself, without importing its SDK:
whether it rents machines, whether the user set it up, its machine options, the places the
launch form offers, how to open a shell on its machines. Each backend's `declare.py` holds one
subclass; the registry lists them. The defaults are those of a backend that rents nothing."""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: `trainctl sessions` skips dataclasses
if TYPE_CHECKING:
    from ..core.clusters import ClusterInfo
    from ..core.machines import CreateRequest, Instance
    from ..core.options import Option, Place
    from ..core.placement import Placement


class Declaration:
    name: str = ""
    cloud: str = ""  # "module:Class" of its CloudProvider when it rents machines
    cloud_label: str = ""  # how the create form's cloud choice shows it ("" = its name)
    instance_kind: str = ""  # the Instances screen's KIND of its machines ("" = its name)
    needs_target: str = ""  # a provider string without a target is refused with this
    lists_hosts: bool = False  # its places are configured hosts, probed on the Instances screen
    # Capability "batch clusters": its places are clusters with partitions and a queue, shown
    # by `trainctl clusters` and the Instances screen; `cluster_section` is the config table
    # that adds one ("[NAME.clusters.NAME]"), for the errors that ask for it.
    lists_clusters: bool = False
    cluster_section: str = ""
    rents_by_gpu: bool = False  # machines are chosen by GPU type: `trainctl gpus` asks it first
    options: tuple[Option, ...] = ()  # the settings of a new machine
    # Capability "stores checkpoints remotely": URIs starting with one of these are its own,
    # and `checkpoint_store` names the module that lists, inspects, pulls and prunes them
    # (checkpoints_async, inspect_uri, pull, plan_prune, apply_prune).
    checkpoint_schemes: tuple[str, ...] = ()
    checkpoint_store: str = ""
    # Capability "follows logs it did not launch": URLs starting with this are its own.
    log_url_scheme: str = ""
    # (flags of other backends, as argparse dests; the error naming ours instead), in order.
    foreign_options: tuple[tuple[tuple[str, ...], str], ...] = ()
    # Capability "runs on several nodes" (a `nodes` option): how the refusal of other
    # backends names it as a place for several nodes ("ssh:GROUP"; "" = its name).
    nodes_place: str = ""
    # A backend without it may say why it cannot run several nodes (one line, no period).
    no_nodes_because: str = ""

    @property
    def rents_machines(self) -> bool:
        return bool(self.cloud)

    def configured(self, config) -> bool:
        """Whether the user has set it up (credentials, hosts). Cheap: no SDK import."""
        return False

    def owns_instance(self, instance_id: str) -> bool:
        """Whether a machine id looks like one of ours (ids carry no cloud otherwise)."""
        return False

    def creates_machine(self, placement: Placement) -> bool:
        """Whether a launch there first creates a machine (no machine named yet)."""
        return False

    def machine_request(self, placement: Placement, request: CreateRequest) -> CreateRequest:
        """The machine to create for a launch on `placement`, from what the user asked."""
        return request

    def check(self, request: CreateRequest, *, form: bool) -> None:
        """Refuse a request this backend cannot serve (TrainctlError); form: worded for the
        launch and create forms instead of the CLI's flags."""

    def choices(self, config, key: str) -> list[tuple[str, str]]:
        """(label, value) of the select of option `key` (select="config")."""
        return []

    def launch_places(self, config, rents: bool) -> list[Place]:
        """The providers the launch form offers for this backend; rents: it is set up."""
        return []

    def hosts(self, config) -> list[str]:
        """The configured hosts (lists_hosts backends)."""
        return []

    async def probe_hosts(self, config) -> list:
        """Reachability, load and GPUs of each configured host (HostInfo rows)."""
        return []

    def clusters(self, config) -> list[str]:
        """The configured clusters (lists_clusters backends), sorted."""
        return []

    async def probe_clusters(self, config, names: list[str]) -> list[ClusterInfo]:
        """Partitions and the user's queue of each cluster named (all asked at once); one that
        does not answer comes back unreachable, with the reason."""
        return []

    def cluster_shell(self, config, name: str) -> list[str]:
        """The interactive command that opens a shell on the login node of cluster `name`;
        raises TrainctlError when there is none to open."""
        raise NotImplementedError

    async def probe_choices(self, config, placement: Placement, key: str) -> list[tuple[str, str]]:
        """(label, value) of the select of option `key` (select="probe"), found by asking the
        place (a cluster's partitions); raises ProviderError when it does not answer."""
        return []

    def host_shell(self, config, name: str) -> list[str]:
        """The interactive command that opens a shell on configured host `name`."""
        raise NotImplementedError

    def log_mirror(self, config, url: str):
        """A local copy of the log at `url` (log_url_scheme), followed by byte offset."""
        raise NotImplementedError

    def shell_command(self, service, instance: Instance, has) -> list[str] | None:
        """An interactive shell on one of its machines (service: what holds the config;
        has(program): whether it is installed); None: ssh to where its provider runs."""
        return None
