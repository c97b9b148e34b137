"""The errors of every backend (re-exported by base.py). A module of their own so that the
registry can raise them without importing the interface that re-exports the registry."""

from __future__ import annotations

from ..core.errors import TrainctlError


class ProviderError(TrainctlError):
    """A provider could not do what was asked; the message says what and why."""


class UnknownProvider(ProviderError):
    pass
