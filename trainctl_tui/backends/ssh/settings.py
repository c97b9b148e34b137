"""[ssh]: the hosts runs can go to, each `[ssh.hosts.NAME]` (a name from ~/.ssh/config works
without one)."""

from __future__ import annotations

from pydantic import Field

from ...config.section import Section


class SshHost(Section):
    host: str
    user: str | None = None
    port: int = Field(22, ge=1, le=65535)
    identity_file: str | None = None
    python: str = "python3"
    workdir: str = "~/.trainctl"
    price_per_hour: float | None = Field(None, ge=0)  # USD, for cost columns and budgets


class SshGroup(Section):
    """Hosts that run one multi-node run together (`--provider ssh:NAME --nodes N`): names
    of [ssh.hosts] or ~/.ssh/config aliases; the first is the head (rank 0)."""

    hosts: list[str] = Field(default_factory=list)


class SshConfig(Section):
    hosts: dict[str, SshHost] = Field(default_factory=dict)
    groups: dict[str, SshGroup] = Field(default_factory=dict)
    # A group's node lost is replaced on a spare host at most this many times per session.
    max_resumes: int = Field(3, ge=0)
    # Seconds a node's host may not answer before the node counts as lost.
    node_lost_seconds: float = Field(60.0, gt=0)
