"""What the front ends learn about the backend, without importing it: always set up, and
one place on the launch form."""

from __future__ import annotations

from trainctl_tui.backends.declaration import Declaration


class NiceDeclaration(Declaration):
    name = "nice"

    def configured(self, config) -> bool:
        return True

    def launch_places(self, config, rents: bool) -> list:
        from trainctl_tui.core.options import Place

        return [Place("nice:10", "this machine, at a lower CPU priority (nice 10)")]
