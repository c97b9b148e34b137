"""Export the README's screenshots from the app itself, on a live demo run.

    TRAINCTL_HOME=$(mktemp -d) python tests/export_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TRAINCTL_HOME", tempfile.mkdtemp(prefix="trainctl-shots-"))
os.environ.setdefault("TRAINCTL_CONFIG", os.path.join(os.environ["TRAINCTL_HOME"], "none.toml"))

from uihelpers import launch_command, launch_demo, wait_until  # noqa: E402

from trainctl_tui.ui.app import TrainctlApp  # noqa: E402
from trainctl_tui.ui.screens.session import SessionScreen  # noqa: E402
from trainctl_tui.ui.widgets.plot import PlotView  # noqa: E402

OUT = ROOT / "screenshots"


async def shoot(size: tuple[int, int], suffix: str) -> None:
    app = TrainctlApp(refresh_seconds=0.5)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.query("DataTable")
                         and app.screen.query_one("DataTable").row_count >= 3)
        await pilot.pause(2.0)
        app.save_screenshot(str(OUT / f"sessions{suffix}.svg"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
        plot = app.screen.query_one(PlotView)
        await wait_until(pilot, lambda: plot._series and len(plot._series[0][1] or ()) > 20)
        await pilot.pause(1.0)
        app.save_screenshot(str(OUT / f"session{suffix}.svg"))
        await pilot.press("c")
        await pilot.pause(1.5)
        app.save_screenshot(str(OUT / f"checkpoints{suffix}.svg"))
        await pilot.press("escape", "escape", "n")
        await pilot.pause(0.5)
        app.save_screenshot(str(OUT / f"launch{suffix}.svg"))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    os.chdir(os.environ["TRAINCTL_HOME"])  # the demo's checkpoints go there
    launch_command([sys.executable, "-c", "print('step 1 loss 2.3'); raise SystemExit(1)"],
                   "bert-base-sweep")
    launch_command([sys.executable, "-c", "print('epoch 1 step 100 loss=0.91')"], "mnist-cnn")
    launch_demo(steps=3000, step_time=0.01, name="demo")
    asyncio.run(shoot((120, 35), ""))
    asyncio.run(shoot((80, 24), "-80x24"))
    from trainctl_tui.service import Service

    asyncio.run(Service().stop("demo", force=True, wait=True))
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
