"""Machines rented by the hour (EC2 instances, RunPod pods): the shape every cloud returns,
what a create asks for, and the registry. The SDK behind each one is imported only when an
action on that cloud runs (boto3 and runpod are slow to import)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from .base import UnknownProvider

# Called with one line of progress ("waiting for running (12s)") while a create waits.
Progress = Callable[[str], object]


@dataclass
class Instance:
    """One rented machine, whatever the cloud."""

    provider: str  # "aws" | "runpod"
    id: str  # i-0123456789abcdef0 | a RunPod pod id
    name: str = ""
    type: str = ""  # g5.xlarge | "NVIDIA A40"
    state: str = ""  # the cloud's own word, lower case: pending, running, stopped, exited ...
    lifecycle: str = "on-demand"  # or "spot"
    price_per_hour: float | None = None  # USD
    launched: float | None = None  # epoch seconds the current run of the machine began
    zone: str | None = None  # availability zone / RunPod data centre
    address: str | None = None  # public IP or host:port to reach it
    gpus: str = ""  # "1x A10G"
    session: str | None = None  # the trainctl session it was created for (tag)
    managed: bool = True  # created by trainctl (tagged trainctl:managed)
    detail: str | None = None  # the cloud's reason for the state, an interruption ...
    extra: dict = field(default_factory=dict)  # provider specifics shown in --json only

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.id}"

    @property
    def billing(self) -> bool:
        """Whether the machine is costing money by the hour now."""
        return self.state in ("pending", "running", "starting", "created", "restarting")

    def uptime(self, now: float | None = None) -> float | None:
        if self.launched is None or not self.billing:
            return None
        return max(0.0, (now or time.time()) - self.launched)

    def cost_so_far(self, now: float | None = None) -> float | None:
        """What the current run has cost: uptime x hourly price (storage not included)."""
        up = self.uptime(now)
        if up is None or self.price_per_hour is None:
            return None
        return up / 3600 * self.price_per_hour

    def to_json(self, now: float | None = None) -> dict:
        data = asdict(self)
        data["uptime_seconds"] = self.uptime(now)
        data["cost_so_far"] = self.cost_so_far(now)
        return data


@dataclass
class CreateRequest:
    """`trainctl instance create` / the create form. None means the template's or the
    cloud's default."""

    provider: str
    template: str | None = None  # aws: [aws.templates.NAME]
    type: str | None = None  # aws instance type | runpod GPU type id
    gpu_count: int = 1
    spot: bool | None = None
    max_price: float | None = None  # aws: spot max price; runpod: bid per GPU
    name: str | None = None
    image: str | None = None  # runpod image | aws AMI
    session: str | None = None  # tag the machine with this session id
    zone: str | None = None  # aws: an availability zone (a subnet of the template's VPC there)
    disk_gb: int | None = None  # aws: root volume; runpod: the pod's volume (/workspace)
    container_disk_gb: int | None = None  # runpod: the container's own disk
    dry_run: bool = False


@dataclass
class Price:
    provider: str
    type: str
    lifecycle: str  # "on-demand" | "spot"
    price_per_hour: float | None
    where: str = ""  # availability zone, region, or RunPod cloud (secure/community)
    available: bool | None = None
    source: str = ""  # "describe_spot_price_history", "pricing api", "config", "gpuTypes" ...
    detail: str = ""  # GPU memory, vCPUs ...

    def to_json(self) -> dict:
        return asdict(self)


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


_CLOUDS = {
    "aws": "trainctl_tui.backends.aws.cloud:AWSCloud",
    "runpod": "trainctl_tui.backends.runpod.cloud:RunPodCloud",
}


def cloud_names() -> list[str]:
    return sorted(_CLOUDS)


def get_cloud(name: str) -> CloudProvider:
    spec = _CLOUDS.get(name)
    if spec is None:
        raise UnknownProvider(f"unknown cloud '{name}' (available: {', '.join(cloud_names())})")
    module_name, class_name = spec.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def guess_cloud(instance_id: str) -> str | None:
    """EC2 ids look like i-0123...; anything else is taken for a RunPod pod id."""
    if instance_id.startswith("i-"):
        return "aws"
    return "runpod" if instance_id.isalnum() else None
