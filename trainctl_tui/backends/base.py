"""The Provider protocol every place a run can live implements, its errors, and the registry."""

from __future__ import annotations

import importlib

from ..core.errors import TrainctlError
from ..core.models import Session


class ProviderError(TrainctlError):
    """A provider could not do what was asked; the message says what and why."""


class UnknownProvider(ProviderError):
    pass


class Provider:
    """Where a session's runner lives. All methods are async and never block the event loop.
    Providers have these methods; they need not inherit from this class (it documents them,
    as a typing.Protocol would, without importing typing on every command)."""

    name: str

    async def launch(self, session: Session) -> None:
        """Start the runner for `session` (its spec.json is already in session.session_dir)."""

    async def read_status(self, session: Session) -> dict | None:
        """The runner's latest status.json, or None if there is none (yet)."""

    async def runner_alive(self, session: Session, status: dict) -> bool:
        """Whether the runner that wrote `status` is still alive (pid reuse guarded)."""

    async def training_alive(self, session: Session, status: dict) -> bool:
        """Whether the training process of `status` is still alive (it may outlive a runner)."""

    async def stop(self, session: Session, status: dict, *, force: bool) -> None:
        """Ask the runner to stop its training (SIGTERM, grace, SIGKILL; force skips the grace)."""

    async def kill_orphan(self, session: Session, status: dict, *, force: bool) -> bool:
        """Stop a training process whose runner died. True if one was signalled."""


# provider name prefix -> "module:Class"; later issues add ssh, runpod, aws.
_PROVIDERS = {
    "local": "trainctl_tui.backends.local.provider:LocalProvider",
    "ssh": "trainctl_tui.backends.ssh.provider:SSHProvider",
    "aws": "trainctl_tui.backends.aws.provider:AWSProvider",
    "runpod": "trainctl_tui.backends.runpod.provider:RunPodProvider",
}


def available_providers() -> list[str]:
    return sorted(_PROVIDERS)


def get_provider(name: str) -> Provider:
    """Provider for a session's provider string, e.g. 'local' or 'ssh:gpu-box'."""
    kind, _, target = name.partition(":")
    spec = _PROVIDERS.get(kind)
    if spec is None:
        raise UnknownProvider(
            f"unknown provider '{name}' (available: {', '.join(available_providers())})"
        )
    module_name, class_name = spec.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if kind == "ssh" and not target:
        raise UnknownProvider("ssh needs a host: --provider ssh:NAME (a [ssh.hosts.NAME] in "
                              "the config, or an alias from ~/.ssh/config)")
    if kind == "aws" and not target:
        raise UnknownProvider("aws needs an instance: --provider aws:i-0123456789abcdef0 (see "
                              "trainctl instances)")
    return cls(target) if target else cls()
