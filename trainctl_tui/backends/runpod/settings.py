"""[runpod]: the API key (or where it is found), new pods' image, GPU and disks, auto-resume
after interruptions, and how trainctl reaches a pod's sshd."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr

from ...config.section import Section


def _upper(value: Any) -> Any:
    # Env values are typed by hand; accept "community" as well as "COMMUNITY".
    return value.upper() if isinstance(value, str) else value


class RunpodConfig(Section):
    api_key: SecretStr | None = None
    cloud_type: Annotated[Literal["SECURE", "COMMUNITY", "ALL"], BeforeValidator(_upper)] = "SECURE"
    auto_resume: bool = False
    max_resumes: int = Field(3, ge=0)
    image: str = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    gpu_type: str | None = None
    gpu_count: int = Field(1, ge=1)
    volume_gb: int = Field(20, ge=0)
    container_disk_gb: int = Field(20, gt=0)
    network_volume_id: str | None = None
    # Keep a copy at home of each new newest checkpoint of a spot pod without a network
    # volume (<session folder>/checkpoints-home/), so auto_resume can recreate a reclaimed pod.
    pull_checkpoints: bool = False
    # Seconds to wait for a new pod to be RUNNING with its ports mapped.
    ready_timeout: float = Field(600.0, gt=0)
    # How trainctl reaches a pod's sshd (the image must run one on 22/tcp).
    ssh_user: str = "root"
    identity_file: str | None = None
    python: str = "python3"
    workdir: str = "/workspace/trainctl"
    # What the budget guard does to the pod at a limit: "stop" keeps its volume (which still
    # bills), "terminate" deletes the pod and what is on it (not a network volume).
    shutdown_behavior: Literal["stop", "terminate"] = "stop"

    @classmethod
    def notes(cls, config) -> list[str]:
        """Which RunPod key is in use and where it comes from (env, file, MCP), masked."""
        from .key import key_source_line

        return [key_source_line(config)]
