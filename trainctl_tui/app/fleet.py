"""Every rented machine across the clouds a user has set up: which clouds count as set up
(without importing their SDKs), listing them all at once, and finding one by its id."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ..backends.cloud import Instance, cloud_names, get_cloud, guess_cloud
from ..core.errors import TrainctlError

AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")


def aws_configured(config) -> bool:
    """Credentials or settings for AWS exist somewhere boto3 would look."""
    if any(os.environ.get(name) for name in AWS_ENV):
        return True
    aws = config.aws
    if aws.profile or aws.region or aws.templates:
        return True
    home = Path.home() / ".aws"
    return (home / "credentials").exists() or (home / "config").exists()


def runpod_configured(config) -> bool:
    if os.environ.get("RUNPOD_API_KEY") or config.runpod.api_key:
        return True
    try:
        from ..config.runpod_key import find_api_key
    except ImportError:
        return False
    try:
        return find_api_key(config) is not None
    except TrainctlError:
        return False


def configured_clouds(config) -> list[str]:
    checks = {"aws": aws_configured, "runpod": runpod_configured}
    return [name for name in cloud_names() if checks[name](config)]


def cloud_for(instance_id: str, provider: str | None) -> str:
    name = provider or guess_cloud(instance_id)
    if name is None:
        raise TrainctlError(f"cannot tell which cloud '{instance_id}' is on: pass "
                            "--provider aws or --provider runpod")
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
