"""The one table of backends: name -> where its declaration and its provider live. Both are
imported by name when first used, so listing the backends imports no SDK and `trainctl
sessions` imports only the providers its sessions use. A new backend is one line here."""

from __future__ import annotations

import importlib

from ..core.placement import Placement
from .errors import UnknownProvider

# name -> ("module:Class" of its Declaration, "module:Class" of its Provider). In the order
# the front ends list them.
BACKENDS = {
    "local": ("trainctl_tui.backends.local.declare:LocalDeclaration",
              "trainctl_tui.backends.local.provider:LocalProvider"),
    "ssh": ("trainctl_tui.backends.ssh.declare:SSHDeclaration",
            "trainctl_tui.backends.ssh.provider:SSHProvider"),
    "aws": ("trainctl_tui.backends.aws.declare:AWSDeclaration",
            "trainctl_tui.backends.aws.provider:AWSProvider"),
    "runpod": ("trainctl_tui.backends.runpod.declare:RunPodDeclaration",
               "trainctl_tui.backends.runpod.provider:RunPodProvider"),
}

_declarations: dict = {}


def load(spec: str):
    """The object a "module:Name" string names, imported now."""
    module_name, _, name = spec.partition(":")
    return getattr(importlib.import_module(module_name), name)


def available_providers() -> list[str]:
    return sorted(BACKENDS)


def declaration(name: str):
    """The Declaration of backend `name` (one instance each)."""
    if name not in _declarations:
        if name not in BACKENDS:
            raise UnknownProvider(
                f"unknown provider '{name}' (available: {', '.join(available_providers())})")
        _declarations[name] = load(BACKENDS[name][0])()
    return _declarations[name]


def declarations() -> list:
    return [declaration(name) for name in BACKENDS]


def get_provider(name: str):
    """Provider for a session's provider string, e.g. 'local' or 'ssh:gpu-box'."""
    placement = Placement.parse(name)
    if placement.kind not in BACKENDS:
        raise UnknownProvider(
            f"unknown provider '{name}' (available: {', '.join(available_providers())})")
    cls = load(BACKENDS[placement.kind][1])
    needs_target = declaration(placement.kind).needs_target
    if needs_target and not placement.target:
        raise UnknownProvider(needs_target)
    return cls(placement.target) if placement.target else cls()


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
