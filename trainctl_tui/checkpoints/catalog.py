"""A directory's checkpoints with what is inside them: what the checkpoints screen, the CLI
and resume all look at. Scanning reads names and stat; inspection reads metadata only."""

from __future__ import annotations

from dataclasses import dataclass

from .inspect import CheckpointInfo, inspect_checkpoint, unsound_reason
from .scan import CheckpointEntry, ScanResult, scan_checkpoints


@dataclass
class CheckpointRow:
    entry: CheckpointEntry
    info: CheckpointInfo | None = None  # None while being written (never opened then)

    @property
    def status(self) -> str:
        if self.entry.writing:
            return "writing"
        return self.info.status if self.info else "unknown"

    @property
    def usable(self) -> bool:
        """Offered for resume: finished and known good."""
        return self.status == "ok"

    @property
    def step(self) -> int | None:
        if self.info is not None and self.info.step is not None:
            return self.info.step
        return self.entry.step

    @property
    def loss(self) -> float | None:
        if self.info is None:
            return None
        return self.info.loss if self.info.loss is not None else self.info.best_metric

    def to_json(self) -> dict:
        entry = self.entry
        return {
            "path": entry.path, "name": entry.name, "kind": entry.kind, "step": self.step,
            "size": entry.size, "mtime": entry.mtime, "status": self.status,
            "reason": self.info.reason if self.info else entry.note,
            "info": self.info.to_json() if self.info else None,
        }


def list_checkpoints(directory: str, *, inspect: bool = True,
                     settle_seconds: float = 2.0) -> tuple[ScanResult, list[CheckpointRow]]:
    """Scan `directory` (oldest first) and, unless inspect=False, read each finished one."""
    entries = scan_checkpoints(directory, settle_seconds=settle_seconds)
    rows = []
    for entry in entries:
        info = None
        if inspect and not entry.writing:
            try:
                info = inspect_checkpoint(entry.path)
            except FileNotFoundError:  # removed between the scan and the read
                continue
            except OSError as exc:  # listed as what it is: unknown, and why
                entry.note = f"cannot read: {exc.strerror or exc}"
        rows.append(CheckpointRow(entry, info))
    return entries, rows


def validity_and_metrics(rows: list[CheckpointRow]) -> tuple[dict[str, bool], dict]:
    """What retention needs: path -> valid, path -> {metric: value}."""
    validity = {row.entry.path: row.usable for row in rows if row.info is not None}
    metrics = {}
    for row in rows:
        if row.info is None:
            continue
        values = dict(row.info.metrics)
        if row.info.loss is not None:
            values.setdefault("loss", row.info.loss)
        if row.info.best_metric is not None:
            values.setdefault("best_metric", row.info.best_metric)
        metrics[row.entry.path] = values
    return validity, metrics


def row_problem(row: CheckpointRow, trusted_globals=()) -> str | None:
    """Why a row must not be resumed from, or None (the runner's checkpoint_problem)."""
    if row.entry.writing:
        return "still being written" + (f" ({row.entry.note})" if row.entry.note else "")
    if row.info is None:
        return "unknown: not inspected"
    return unsound_reason(row.info, trusted_globals)


def choose_row(rows: list[CheckpointRow], trusted_globals=()
               ) -> tuple[CheckpointRow | None, list[dict]]:
    """The one rule, over rows oldest first: the newest sound row, and the newer ones passed
    over as [{"path", "reason"}], newest first (what an attempt records)."""
    skipped = []
    for row in reversed(rows):
        reason = row_problem(row, trusted_globals)
        if reason is None:
            return row, skipped
        skipped.append({"path": row.entry.path, "reason": reason})
    return None, skipped


def newest_usable(rows: list[CheckpointRow]) -> CheckpointRow | None:
    return choose_row(rows)[0]
