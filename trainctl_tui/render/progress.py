"""The ETA, cost and progress of a session (app/costs.py Figures) as table cells and one
line, the same in the TUI and in `--once`."""

from __future__ import annotations

from ..core.formatting import format_duration


def usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def eta_cell(figures) -> str:
    """'1h 12m', '-' when no total is known or the run is not running."""
    if figures is None or figures.eta_seconds is None:
        return "-"
    return format_duration(figures.eta_seconds)


def cost_cell(figures) -> str:
    return usd(figures.cost_so_far if figures is not None else None)


def progress_text(progress: dict | None) -> str:
    """'step 40/2,000' or 'epoch 3/20'."""
    if not progress:
        return ""
    done, total = progress.get("done"), progress.get("total")
    return f"{progress.get('unit') or 'step'} {done:,}/{total:,}"


def figures_line(figures) -> str:
    """'step 40/2,000 · ETA 16m · $3.20 so far · $0.80 to finish · budget $25.00' (the
    parts that are known)."""
    if figures is None:
        return ""
    parts = [progress_text(figures.progress)]
    if figures.eta_seconds is not None:
        parts.append(f"ETA {format_duration(figures.eta_seconds)}")
    if figures.cost_so_far is not None:
        parts.append(f"{usd(figures.cost_so_far)} so far")
    if figures.cost_to_finish is not None:
        parts.append(f"{usd(figures.cost_to_finish)} to finish")
    if figures.budget is not None:
        parts.append(f"budget {usd(figures.budget)}")
    if figures.max_hours is not None:
        parts.append(f"max {figures.max_hours:g}h")
    return " · ".join(part for part in parts if part)
