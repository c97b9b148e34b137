"""Machines rented by the hour, whatever the cloud: the shape every cloud returns (Instance),
what a create asks for (CreateRequest) and what a machine type costs (Price). Plain data."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# Called with one line of progress ("waiting for running (12s)") while a create waits.
Progress = Callable[[str], object]


@dataclass
class Instance:
    """One rented machine, whatever the cloud."""

    provider: str  # the backend that rents it (a registry name)
    id: str  # the cloud's id of the machine
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
    """`trainctl instance create` / the create form / a launch on a new machine. The fields
    are what every cloud understands; None means the template's or the cloud's default.
    `options` holds what only one backend reads, by the key its declaration gives."""

    provider: str
    template: str | None = None  # a machine template of the backend's config
    type: str | None = None  # the machine type: an instance type, a GPU type id ...
    gpu_count: int = 1
    spot: bool | None = None
    max_price: float | None = None  # spot: the most to pay per hour (or per GPU, a bid)
    name: str | None = None
    image: str | None = None  # what the machine boots: a machine image, a container image
    session: str | None = None  # tag the machine with this session id
    zone: str | None = None  # where: an availability zone, a data centre
    disk_gb: int | None = None  # the disk the run writes to
    dry_run: bool = False
    options: dict = field(default_factory=dict)  # backend-specific: {key: value}

    def set(self, key: str, value) -> None:
        """Fill a field by name, or the backend option of that name."""
        if key in self.__dataclass_fields__ and key != "options":
            setattr(self, key, value)
        else:
            self.options[key] = value


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
