"""The session screen's GPU panel: a row per GPU with its utilization and memory as sparklines
(newest sample on the right) and its latest values, and the training's CPU and memory.
Hidden until the runner has sampled something."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from ...monitor.usage import MEMORY, UTIL
from ...render.usage import gib, process_text, short_gpu_name

BARS = "▁▂▃▄▅▆▇█"


class ScaledSparkline(Sparkline):
    """Textual's Sparkline on a fixed scale, 0 to `top` (100 % for utilization, the GPU's
    memory for memory), one column per sample with the newest on the right; an unknown
    sample shows as a dot. (The stock one stretches min..max, so a steady 97 % would look
    like an idle GPU.)"""

    def __init__(self, top: float = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.top = top

    def render(self) -> Text:
        width = max(0, self.size.width)
        values = list(self.data or [])[-width:] if width else []
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        text = Text(" " * (width - len(values)))
        for value in values:
            if value is None:
                text.append("·", style="dim")
                continue
            ratio = min(1.0, max(0.0, value / self.top)) if self.top > 0 else 0.0
            bar = BARS[min(len(BARS) - 1, int(ratio * len(BARS)))]
            text.append(bar, Style(color=low.blend(high, ratio).rich_color))
        return text


class GpuRow(Horizontal):
    """One GPU: name, utilization sparkline and %, memory sparkline and GB, power, °C."""

    def compose(self) -> ComposeResult:
        yield Static("", classes="gpu-name")
        yield ScaledSparkline(100.0, classes="gpu-util")
        yield Static("", classes="gpu-util-value")
        yield ScaledSparkline(1.0, classes="gpu-mem")
        yield Static("", classes="gpu-mem-value")
        yield Static("", classes="gpu-extra")

    def show(self, gpu: dict, util: list, memory: list) -> None:
        name = short_gpu_name(gpu["name"]) if gpu["name"] else "?"
        self.query_one(".gpu-name", Static).update(
            Text.assemble((f"{gpu['index']}", "bold"), f" {name}"))
        self.query_one(".gpu-util", ScaledSparkline).data = util
        util_text = "?" if gpu["util"] is None else f"{gpu['util']:.0f}%"
        self.query_one(".gpu-util-value", Static).update(util_text)
        mem = self.query_one(".gpu-mem", ScaledSparkline)
        mem.top = gpu["mem_total_mb"] or max([m for m in memory if m is not None] or [1.0])
        mem.data = memory
        self.query_one(".gpu-mem-value", Static).update(
            f"{gib(gpu['mem_used_mb'])}/{gib(gpu['mem_total_mb'])}G")
        extra = [f"{gpu['power_w']:.0f}W" if gpu["power_w"] is not None else "",
                 f"{gpu['temp_c']:.0f}°C" if gpu["temp_c"] is not None else ""]
        self.query_one(".gpu-extra", Static).update(" ".join(e for e in extra if e))


class GpuPanel(Vertical):
    """Every GPU of the session's machine; the training's CPU and memory in its bottom edge
    (one row less: at 80x24 the chart needs it)."""

    def on_mount(self) -> None:
        self.border_title = "GPUs"
        self.display = False

    def show(self, usage, whose: str | None = None) -> None:
        """Draw `usage` (monitor.usage.Usage); hidden when None. `whose`: the node of a
        multi-node run they are ('node 1'), said in the title."""
        self.display = usage is not None
        if usage is None:
            return
        rows = list(self.query(GpuRow))
        if len(rows) != len(usage.gpus):
            self.remove_children()
            rows = [GpuRow() for _ in usage.gpus]
            if rows:
                self.mount_all(rows)
            self.call_after_refresh(self.show, usage, whose)  # the rows compose first
            return
        for i, (row, gpu) in enumerate(zip(rows, usage.gpus, strict=True)):
            row.show(gpu, usage.history(UTIL, i), usage.history(MEMORY, i))
        count = f"{len(usage.gpus)} GPU{'s' if len(usage.gpus) != 1 else ''}"
        self.border_title = (f"{whose} · " if whose else "") + (usage.gpu_note or count)
        self.border_subtitle = f"training {process_text(usage)}"
