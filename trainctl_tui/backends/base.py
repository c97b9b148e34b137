"""The Provider protocol every place a run can live implements, and its errors. Which
providers exist is the registry's (registry.py)."""

from __future__ import annotations

from ..core.models import Session
from .errors import ProviderError, UnknownProvider

__all__ = ["Provider", "ProviderError", "UnknownProvider"]


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
