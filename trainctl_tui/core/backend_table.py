"""The table of backends: where each one's declaration, provider and settings live, as
"module:Class" strings. Plain data in the core so that every layer can read which backends
exist without importing one (the config builds its schema from the settings); loading them
by name is backends/registry.py's job. A new backend is one line here."""

from __future__ import annotations

import importlib


class Entry:
    """declaration: what it tells the front ends; provider: where a session's runner lives;
    settings: its config section ([name]), or None when it has none."""

    __slots__ = ("declaration", "provider", "settings")

    def __init__(self, declaration: str, provider: str, settings: str | None = None):
        self.declaration, self.provider, self.settings = declaration, provider, settings


_B = "trainctl_tui.backends"
# In the order the front ends list them, and the config shows their sections.
BACKENDS = {
    "local": Entry(f"{_B}.local.declare:LocalDeclaration", f"{_B}.local.provider:LocalProvider",
                   f"{_B}.local.settings:LocalConfig"),
    "ssh": Entry(f"{_B}.ssh.declare:SSHDeclaration", f"{_B}.ssh.provider:SSHProvider",
                 f"{_B}.ssh.settings:SshConfig"),
    "aws": Entry(f"{_B}.aws.declare:AWSDeclaration", f"{_B}.aws.provider:AWSProvider",
                 f"{_B}.aws.settings:AwsConfig"),
    "runpod": Entry(f"{_B}.runpod.declare:RunPodDeclaration",
                    f"{_B}.runpod.provider:RunPodProvider", f"{_B}.runpod.settings:RunpodConfig"),
    "slurm": Entry(f"{_B}.slurm.declare:SlurmDeclaration", f"{_B}.slurm.provider:SlurmProvider",
                   f"{_B}.slurm.settings:SlurmConfig"),
}


def module_of(spec: str) -> str:
    """The module of a "module:Class" string."""
    return spec.partition(":")[0]


def load(spec: str):
    """The object a "module:Class" string names, imported now."""
    module_name, _, name = spec.partition(":")
    return getattr(importlib.import_module(module_name), name)
