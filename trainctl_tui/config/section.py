"""The base of every config section, trainctl's own and each backend's (backends/*/settings.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # A typo in a config file must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def notes(cls, config) -> list[str]:
        """Comment lines `trainctl config show` prints under the section's header."""
        return []
