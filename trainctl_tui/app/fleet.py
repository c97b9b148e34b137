"""Every rented machine across the clouds a user has set up: which clouds count as set up
(without importing their SDKs), listing them all at once, and finding one by its id."""

from __future__ import annotations

import asyncio

from ..backends.registry import cloud_names, declaration, get_cloud, guess_cloud
from ..core.errors import TrainctlError
from ..core.machines import Instance
from .machines import either_provider


def configured_clouds(config) -> list[str]:
    """The clouds the user has set up (credentials somewhere), each asked without its SDK."""
    return [name for name in cloud_names() if declaration(name).configured(config)]


def cloud_for(instance_id: str, provider: str | None) -> str:
    name = provider or guess_cloud(instance_id)
    if name is None:
        raise TrainctlError(f"cannot tell which cloud '{instance_id}' is on: pass "
                            f"{either_provider()}")
    if name not in cloud_names():
        raise TrainctlError(f"unknown cloud '{name}' (available: {', '.join(cloud_names())})")
    return name


async def list_instances(clouds: list[str], *, include_unmanaged: bool = False
                         ) -> tuple[list[Instance], dict[str, str]]:
    """Every cloud asked at once; a cloud that fails is reported, the others still listed."""
    async def one(name: str) -> list[Instance]:
        return await get_cloud(name).list_instances(include_unmanaged=include_unmanaged)

    results = await asyncio.gather(*(one(name) for name in clouds), return_exceptions=True)
    instances: list[Instance] = []
    errors: dict[str, str] = {}
    for name, result in zip(clouds, results, strict=True):
        if isinstance(result, TrainctlError):
            errors[name] = str(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            instances.extend(result)
    instances.sort(key=lambda i: (i.provider, not i.billing, -(i.launched or 0), i.id))
    return instances, errors
