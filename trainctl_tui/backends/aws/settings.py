"""[aws]: credentials profile and region, auto-resume after spot interruptions, and the
`[aws.templates.NAME]` new instances are made from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...config.section import Section


class AwsTemplate(Section):
    ami: str | None = None
    instance_type: str = "g5.xlarge"
    key_name: str | None = None
    subnet_id: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    iam_instance_profile: str | None = None
    volume_gb: int = Field(100, gt=0)
    tags: dict[str, str] = Field(default_factory=dict)
    spot: bool = False
    max_price: float | None = Field(None, gt=0)
    # What AWS does to a spot instance it reclaims, and what `shutdown` on the instance does.
    interruption_behavior: Literal["terminate", "stop"] = "terminate"
    shutdown_behavior: Literal["stop", "terminate"] = "stop"
    s3_prefix: str | None = None
    # Stop the instance after this many minutes without training (None: never).
    autostop_minutes: float | None = Field(None, gt=0)
    # After a spot interruption, replacements may go to these zones / types too.
    fallback_zones: list[str] = Field(default_factory=list)
    fallback_types: list[str] = Field(default_factory=list)
    python: str = "python3"
    workdir: str = "/opt/trainctl"
    # The Instances screen's shell uses SSM; without the session-manager-plugin it falls back
    # to ssh as this user (the key pair's key must be in your agent or ~/.ssh/config).
    ssh_user: str = "ubuntu"


class AwsConfig(Section):
    profile: str | None = None
    region: str | None = None
    auto_resume: bool = False
    # Spot resumes of a one-instance run; lost nodes of a multi-node run replaced (each).
    max_resumes: int = Field(3, ge=0)
    # A node's instance SSM has not reached for this long is lost (one failed probe is not).
    node_lost_seconds: float = Field(60.0, gt=0)
    # Seconds to wait for a new instance to run and register with SSM.
    ready_timeout: float = Field(600.0, gt=0)
    # On-demand $/h by instance type, used where the Pricing API is not allowed.
    prices: dict[str, float] = Field(default_factory=dict)
    templates: dict[str, AwsTemplate] = Field(default_factory=dict)
