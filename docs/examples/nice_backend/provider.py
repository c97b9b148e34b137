"""Where a session's runner lives: this machine, under `nice -n N` (provider "nice:N")."""

from __future__ import annotations

from trainctl_tui.backends.base import UnknownProvider
from trainctl_tui.backends.local.provider import LocalProvider


class NiceProvider(LocalProvider):
    """Everything as LocalProvider (status, stop, orphans), the runner started under nice;
    the training it starts inherits the niceness."""

    def __init__(self, niceness: str = "10"):
        if not niceness.isdigit() or not 1 <= int(niceness) <= 19:
            raise UnknownProvider(f"nice: '{niceness}' is not a niceness from 1 to 19 "
                                  "(--provider nice:10)")
        self.niceness = int(niceness)

    @property
    def name(self) -> str:
        return f"nice:{self.niceness}"

    def runner_argv(self, runner, session) -> list[str]:
        return ["nice", "-n", str(self.niceness), *super().runner_argv(runner, session)]
