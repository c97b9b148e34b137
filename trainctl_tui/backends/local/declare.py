"""The local backend as the front ends see it: runs on this machine, offered first."""

from __future__ import annotations

from ..declaration import Declaration


class LocalDeclaration(Declaration):
    name = "local"

    def configured(self, config) -> bool:
        return True

    def launch_places(self, config, rents: bool) -> list:
        from ...core.options import Place  # not at the top: `trainctl sessions` loads this

        return [Place("local")]
