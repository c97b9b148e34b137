"""Machines rented by the hour: what a backend that rents them implements (CloudProvider).
The data (Instance, CreateRequest, Price) is plain and lives in core.machines; which clouds
exist is the registry's. The SDK behind each cloud is imported only when an action on it runs
(boto3 and runpod are slow to import)."""

from __future__ import annotations

from typing import Protocol

from ..core.machines import CreateRequest, Instance, Price, Progress

__all__ = ["CloudProvider"]


class CloudProvider(Protocol):
    """What the Instances screen and `trainctl instance(s)` ask of a cloud. Async; blocking
    SDK calls run in a thread. Errors are ProviderError with one clear line."""

    name: str

    async def list_instances(self, *, include_unmanaged: bool = False) -> list[Instance]: ...

    async def get_instance(self, instance_id: str) -> Instance: ...

    async def create_instance(self, request: CreateRequest,
                              progress: Progress | None = None) -> Instance: ...

    async def start_instance(self, instance_id: str, *, dry_run: bool = False) -> Instance: ...

    async def stop_instance(self, instance_id: str, *, dry_run: bool = False) -> Instance: ...

    async def terminate_instance(self, instance_id: str, *,
                                 dry_run: bool = False) -> Instance: ...

    async def prices(self, type: str | None = None) -> list[Price]: ...
