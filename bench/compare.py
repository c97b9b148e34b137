"""The compare screen with 8 runs of 1 million points each (issue 17's target: a redraw under
50 ms a frame), measured in the real screen at 160x45.

A frame is what a live run costs the screen: one point appended to every run, then the
screen's `render_all()` (series picked, legend, table of last/min/steps) and the chart
widget's `render()` (each run sampled down to the chart's width through its cached block
summaries, then drawn by plotext). Measured with smoothing off and at 0.9 (a smoothed twin
per run, kept up to date point by point, drawn over the faint raw curve), by step and by
elapsed time (each run's steps.jsonl of 3,000 samples, and without one: its average
pace). The first smoothing of 8 x 1 M points after S is spread over redraws (a
budget of points a redraw); those frames are printed apart.
Textual's compositing of the frame is not included.

    python bench/compare.py [--runs 8] [--points 1000000] [--frames 60]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.app.log_sources import LogSource  # noqa: E402
from trainctl_tui.core.models import Session, Status  # noqa: E402
from trainctl_tui.monitor.metrics import MetricSet  # noqa: E402


def fill(metrics: MetricSet, points: int, seed: int) -> None:
    """A loss curve of `points` steps: a decay with noise, appended in bulk."""
    rng = random.Random(seed)
    series = metrics.series_named("loss")
    scale = 2.0 + rng.random()
    series.xs.extend(array("d", range(1, points + 1)))
    series.ys.extend(array("d", (scale * math.exp(-i / (points / 5)) + 0.3
                                 + 0.2 * rng.random() for i in range(points))))


def write_steps(folder: Path, start: float, end: float, steps: int,
                samples: int = 3000) -> None:
    """A runner's steps.jsonl: `samples` samples from step 1 at `start` to `steps` at `end`,
    at a pace that changes (as the compare reads them: runner/step_times.py's format)."""
    lines = [f'{{"runner":{start:.3f}}}']
    for k in range(samples + 1):
        share = k / samples
        t = start + (end - start) * (share ** 1.5)
        lines.append(f'{{"t":{t:.3f},"step":{max(1, round(share * steps))},"src":"log"}}')
    (folder / "steps.jsonl").write_text("\n".join(lines) + "\n")


def figures(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return (f"median {statistics.median(ms):6.1f} ms  p95 {p95:6.1f} ms  "
            f"max {ms[-1]:6.1f} ms  ({len(ms)} frames)")


async def main(runs: int, points: int, frames: int) -> None:
    from textual.app import App

    from trainctl_tui.ui.app import styles_path
    from trainctl_tui.ui.screens.compare_screen import CompareScreen
    from trainctl_tui.ui.widgets.plot import PlotView

    class Bench(App):
        CSS_PATH = str(styles_path() / "app.tcss")
        refresh_seconds = 3600.0

    folder = Path(tempfile.mkdtemp(prefix="trainctl-bench-compare-"))
    started = time.perf_counter()
    filled = []
    for index in range(runs):
        metrics = MetricSet()
        fill(metrics, points, index)
        filled.append(metrics)
    print(f"{runs} runs x {points:,} points generated in "
          f"{time.perf_counter() - started:.1f} s")

    app = Bench()
    async with app.run_test(size=(160, 45)) as pilot:
        screen = CompareScreen([])
        screen.load = lambda: None  # no sessions to read: the runs are added below
        await app.push_screen(screen)
        await pilot.pause(0.2)
        for index, metrics in enumerate(filled):
            log = folder / f"run-{index}.log"
            log.write_text("")
            now = time.time()
            run_dir = folder / f"run-{index}"
            run_dir.mkdir()
            write_steps(run_dir, now - 3600 * (index + 1), now, points + frames + 1)
            metrics.last_step = float(points)  # its xs are steps (filled in bulk)
            session = Session(id=f"r{index}", name=f"run-{index}", provider="local",
                              command=["x"], cwd=str(folder), session_dir=str(run_dir),
                              status=Status.SUCCEEDED, started=now - 3600 * (index + 1),
                              ended=now)
            screen.add_run(LogSource(log, f"run-{index}", session=session))
            screen.runs[-1].monitor.metrics = metrics
        await pilot.pause(0.5)
        plot = screen.query_one(PlotView)
        print(f"chart {plot.size.width}x{plot.size.height} cells, "
              f"{sum(len(m.series['loss']) for m in filled):,} points in all")

        def frame(step: int) -> float:
            begin = time.perf_counter()
            for metrics in filled:  # a live point on every run
                metrics.series["loss"].append(points + step, 0.3)
            screen.render_all()
            plot._version += 1  # the widget's cache is keyed by it: draw for real
            plot.render()
            return time.perf_counter() - begin

        for label, weight, by_time in (("smoothing off, by step", 0.0, False),
                                       ("smoothing 0.9, by step", 0.9, False),
                                       ("smoothing 0.9, by elapsed time", 0.9, True),
                                       ("smoothing 0.9, by average pace", 0.9, "pace")):
            screen.by_time = bool(by_time)
            if by_time == "pace":  # no steps.jsonl: spread at each run's average pace
                for run in screen.runs:
                    (Path(run.source.session.session_dir) / "steps.jsonl").unlink()
                    run.axis = None
            if weight != plot.smoothing:
                plot.set_smoothing(weight)
                catch_up = []
                while not catch_up or any(plot._smoothed[r.label].behind(
                        r.monitor.metrics.series["loss"]) for r in screen.runs):
                    catch_up.append(frame(0))
                print(f"  first smoothing of every run (after S): {len(catch_up)} frames "
                      f"of {figures(catch_up)}")
            frame(0)  # the block summaries of the new points
            times = [frame(step) for step in range(1, frames + 1)]
            print(f"{label:32s} {figures(times)}")
        await pilot.pause(0.1)
        app.exit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.points, args.frames))
