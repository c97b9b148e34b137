"""The GPU panel of the session screen (a real runner sampling a fake nvidia-smi; a
snapshot of fixed samples) and the Instances screen's GPU% column."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import pytest
from gpu_helpers import A10G, install_fake_nvidia_smi, without_nvidia_smi
from test_ui_snapshots import chart_drawn, fixed_store, make_app, table_filled  # noqa: F401
from textual.widgets import Static
from uihelpers import launch_command, wait_until

from trainctl_tui.app.gpu_usage import gpu_util_by_session
from trainctl_tui.app.service import Service
from trainctl_tui.monitor.usage import Usage
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens import instances
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.widgets.gpu_panel import GpuPanel, GpuRow, ScaledSparkline

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc")

BUSY = [sys.executable, "-c", "import time\nx = bytearray(32 << 20)\nwhile True: time.sleep(0.01)"]


def text(widget) -> str:
    rendered = widget.render()
    return str(getattr(rendered, "plain", rendered))


def rss_mb(panel) -> float:
    """The training's memory the panel's bottom edge shows ('... RSS 41M'), 0 if none."""
    found = re.search(r"RSS (\d+(?:\.\d)?)([MG])", panel.border_subtitle or "")
    if not found:
        return 0.0
    return float(found[1]) * (1024 if found[2] == "G" else 1)


def row_texts(panel) -> list[list[str]]:
    return [[text(cell) for cell in row.query(Static)] for row in panel.query(GpuRow)]


def test_the_panel_follows_a_real_runner(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("[defaults]\nusage_sample_seconds = 0.2\n")
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    t4 = [1, "GPU-0e4a8c2d-1b3f-4d5e-8a9b-7c6d5e4f3a2b", "Tesla T4", "[N/A]", 0, 15360,
          "[Not Supported]", 34]
    gpus.set(A10G, t4)
    session_id = launch_command(BUSY, "gpu-run")

    async def scenario():
        app = TrainctlApp(open_session=session_id, refresh_seconds=0.3)
        async with app.run_test(size=(120, 35)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            panel = app.screen.query_one(GpuPanel)
            await wait_until(pilot, lambda: panel.display and len(panel.query(GpuRow)) == 2
                             and text(panel.query(GpuRow).first().query_one(".gpu-name")),
                             what="GPU rows")
            await wait_until(pilot, lambda: rss_mb(panel) >= 32, what="the training's memory")
            rows = row_texts(panel)
            assert rows[0] == ["0 A10G", "97%", "20.0/22.5G", "187W 61°C"]
            assert rows[1] == ["1 T4", "?", "0.0/15.0G", "34°C"]
            assert panel.border_title == "2 GPUs"
            assert panel.border_subtitle.startswith("training CPU ")
            util = panel.query(GpuRow).first().query_one(".gpu-util", ScaledSparkline)
            await wait_until(pilot, lambda: len(util.data or []) >= 3, what="history")
            assert set(text(util).strip()) == {"█"}  # 97 % of a fixed 100 %: full bars
            gpus.set(A10G[:3] + [0] + A10G[4:], t4)
            await wait_until(pilot, lambda: text(util).rstrip().endswith("▁"),
                             what="an idle bar")
            gpus.set(A10G)  # one GPU left (a MIG change, a lost GPU): one row
            await wait_until(pilot, lambda: len(panel.query(GpuRow)) == 1
                             and row_texts(panel)[0][1:2] == ["97%"], what="one row")
            assert panel.border_title == "1 GPU"

    asyncio.run(scenario())


def test_without_a_gpu_the_panel_says_so_and_keeps_cpu_and_memory(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("[defaults]\nusage_sample_seconds = 0.2\n")
    without_nvidia_smi(monkeypatch)
    session_id = launch_command(BUSY, "cpu-run")

    async def scenario():
        app = TrainctlApp(open_session=session_id, refresh_seconds=0.3)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            panel = app.screen.query_one(GpuPanel)
            await wait_until(pilot, lambda: panel.display and rss_mb(panel) >= 32,
                             what="panel")
            assert panel.border_title == "no GPU: nvidia-smi not found"
            assert list(panel.query(GpuRow)) == []

    asyncio.run(scenario())


FIXED_USAGE = {
    "at": 1_790_000_300.0, "interval": 5.0, "cpu_percent": 97.5, "rss_mb": 3481.2,
    "gpu_note": None, "gpu_since": 1_790_000_000.0, "busy": [],
    "gpus": [
        {"index": 0, "uuid": "GPU-1", "name": "NVIDIA A100-SXM4-80GB", "util": 93,
         "mem_used_mb": 61234, "mem_total_mb": 81920, "power_w": 312.5, "temp_c": 66},
        {"index": 1, "uuid": "GPU-2", "name": "NVIDIA A100-SXM4-80GB", "util": None,
         "mem_used_mb": 60111, "mem_total_mb": 81920, "power_w": None, "temp_c": 64}],
    "samples": [[1_790_000_000.0 + 5 * i, 90.0 + i % 7, 3400.0,
                 [(i * 13) % 100, None if i % 11 == 0 else 80],
                 [30000 + 500 * i, 60111]] for i in range(60)],
}


@pytest.mark.parametrize("size", [(80, 24), (120, 35)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_gpu_panel_snapshot(fixed_store, snap_compare, size):  # noqa: F811
    async def open_with_gpus(pilot):
        await table_filled(pilot)
        await pilot.press("down", "down", "down", "enter")  # the demo session
        await chart_drawn(pilot)
        pilot.app.screen.query_one(GpuPanel).show(Usage(json.loads(json.dumps(FIXED_USAGE))))
        await pilot.pause(0.5)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_with_gpus)


def test_instances_show_the_gpu_utilization_the_runners_sampled(trainctl_home, tmp_path,
                                                                monkeypatch):
    (tmp_path / "config.toml").write_text("[defaults]\nusage_sample_seconds = 0.2\n")
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    gpus.set(A10G, A10G[:1] + [1] + A10G[1:3] + [41] + A10G[4:])  # two GPUs: 97 % and 41 %
    session_id = launch_command(BUSY, "on-a-pod")
    service = Service()
    try:
        for _ in range(300):
            util = gpu_util_by_session(service, [session_id, "nosuch"])
            if util[session_id] is not None:
                break
            time.sleep(0.1)
        assert util == {session_id: 69.0, "nosuch": None}
    finally:
        service.close()
    pod = instances.Machine(kind="pod", name="abc123", sessions=[session_id], gpu_util=69.0)
    assert instances.cells(pod)["util"] == "69%"
    host = instances.Machine(kind="ssh", name="box", state="up", gpus=[
        {"name": "NVIDIA A10G", "utilization": 90}, {"name": "NVIDIA A10G", "utilization": 30}])
    assert instances.cells(host)["util"] == "60%"  # the probe's own nvidia-smi reading
    assert instances.cells(instances.Machine(kind="ssh", name="x"))["util"] == "-"
