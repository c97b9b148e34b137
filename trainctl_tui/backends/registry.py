"""The backends by name: their declarations and providers, imported by name when first used
(the table is core/backend_table.py), so listing the backends imports no SDK and `trainctl
sessions` imports only the providers its sessions use; and lookups by capability."""

from __future__ import annotations

import importlib

from ..core.backend_table import BACKENDS, load
from ..core.placement import Placement
from .errors import UnknownProvider

_declarations: dict = {}


def available_providers() -> list[str]:
    return sorted(BACKENDS)


def declaration(name: str):
    """The Declaration of backend `name` (one instance each)."""
    if name not in _declarations:
        if name not in BACKENDS:
            raise UnknownProvider(
                f"unknown provider '{name}' (available: {', '.join(available_providers())})")
        _declarations[name] = load(BACKENDS[name].declaration)()
    return _declarations[name]


def declarations() -> list:
    return [declaration(name) for name in BACKENDS]


def get_provider(name: str):
    """Provider for a session's provider string, e.g. 'local' or 'ssh:gpu-box'."""
    placement = Placement.parse(name)
    if placement.kind not in BACKENDS:
        raise UnknownProvider(
            f"unknown provider '{name}' (available: {', '.join(available_providers())})")
    cls = load(BACKENDS[placement.kind].provider)
    if placement.target:
        return cls(placement.target)
    # Only a provider string without a target needs the declaration (loading it costs the
    # refresh of every session: a cloud's declaration brings its machine options).
    needs_target = declaration(placement.kind).needs_target
    if needs_target:
        raise UnknownProvider(needs_target)
    return cls()


def cloud_names() -> list[str]:
    """The backends that rent machines, sorted."""
    return sorted(d.name for d in declarations() if d.rents_machines)


def get_cloud(name: str):
    """The CloudProvider of backend `name`; its SDK is imported here, on first use."""
    if name not in BACKENDS or not declaration(name).rents_machines:
        raise UnknownProvider(f"unknown cloud '{name}' (available: {', '.join(cloud_names())})")
    return load(declaration(name).cloud)()


def guess_cloud(instance_id: str) -> str | None:
    """The cloud whose ids look like `instance_id`, or None."""
    return next((d.name for d in declarations() if d.rents_machines
                 and d.owns_instance(instance_id)), None)


def checkpoint_store(target: str | None):
    """The module of the backend that stores checkpoints at `target` (an s3:// URI ...), or
    None for a path on a machine."""
    lowered = (target or "").lower()
    for d in declarations():
        if any(lowered.startswith(scheme) for scheme in d.checkpoint_schemes):
            return importlib.import_module(d.checkpoint_store)
    return None


def log_url_backend(target: str):
    """The declaration of the backend whose log URLs look like `target`, or None."""
    return next((d for d in declarations() if d.log_url_scheme
                 and target.startswith(d.log_url_scheme)), None)


def host_backends() -> list:
    """The declarations of the backends whose places are configured hosts."""
    return [d for d in declarations() if d.lists_hosts]


def cluster_backends() -> list:
    """The declarations of the backends whose places are batch clusters."""
    return [d for d in declarations() if d.lists_clusters]


def shell_failure(argv: list[str], code: int, name: str) -> str | None:
    """Why an interactive shell ended, when it was the shell client's own failure."""
    from .remote.transport import shell_failure as client_failure

    return client_failure(argv, code, name)


def machine_shell(holder, instance, has) -> list[str]:
    """The interactive command that opens a shell on a rented machine: what its backend says
    (SSM for EC2 where it can), else ssh to where its provider runs the runner. holder: what
    holds the loaded config (`.config`); has(program): whether it is installed."""
    argv = declaration(instance.provider).shell_command(holder, instance, has)
    if argv:
        return argv
    from .remote.transport import ssh_command

    return ssh_command(get_provider(f"{instance.provider}:{instance.id}").target)
