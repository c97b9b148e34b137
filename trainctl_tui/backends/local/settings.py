"""[local]: this machine. Only what a run here costs, for the cost columns and budgets."""

from __future__ import annotations

from pydantic import Field

from ...config.section import Section


class LocalConfig(Section):
    price_per_hour: float | None = Field(None, ge=0)  # USD; None: runs here cost nothing shown
