"""The monitoring figures of issue 3, in one run:

1. metrics extraction throughput on a generated mixed-format log (default 1 GB), as MB/s and
   as a ratio to `grep -c loss` on the same file (target <= 10x) — bench/monitor_throughput.py;
2. latency from a line appended to a log to its value appearing in the session's metric
   series, through the same SessionMonitor the session screen uses (target p95 <= 250 ms);
3. peak RSS while holding 10 million points (target <= 300 MB) — also monitor_throughput.py.

    python bench/monitor.py [--size-mb 1024] [--lines 200]

Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.monitor.session_monitor import SessionMonitor  # noqa: E402


def write_lines(path: Path, count: int, sent: dict[int, float]) -> None:
    """Append `count` metric lines at random 10-50 ms intervals, noting when each was written."""
    rng = random.Random(0)
    with open(path, "a") as log:
        for step in range(1, count + 1):
            time.sleep(rng.uniform(0.01, 0.05))
            sent[step] = time.perf_counter()
            log.write(f"step {step}: train loss {1.0 / step:.6f}, lr 3.0e-4\n")
            log.flush()


async def measure_latency(count: int) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="trainctl-latency-"))
    path = folder / "train.log"
    path.write_text("warming up\n")
    monitor = SessionMonitor(path)
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    stop = asyncio.Event()
    writer = threading.Thread(target=write_lines, args=(path, count, sent))

    async def consume():
        async for update in monitor.updates(stop=stop, poll_interval=0.5):
            if update.metrics_changed:
                now = time.perf_counter()
                series = monitor.metrics.series.get("loss")
                for x in series.xs[len(received):] if series else []:
                    received.setdefault(int(x), now)
            if len(received) >= count:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.0)  # let the watcher start, as a screen would have
    writer.start()
    await asyncio.wait_for(task, timeout=count * 0.1 + 30)
    stop.set()
    writer.join()
    monitor.close()
    return [(received[step] - sent[step]) * 1000 for step in sorted(sent)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()

    print("== throughput and memory (bench/monitor_throughput.py) ==", flush=True)
    subprocess.run([sys.executable, str(ROOT / "bench" / "monitor_throughput.py"),
                    "--size-mb", str(args.size_mb)], check=True)

    print("\n== line appended -> value in the series (SessionMonitor.updates) ==")
    latencies = asyncio.run(measure_latency(args.lines))
    ordered = sorted(latencies)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(f"{len(latencies)} lines: median {statistics.median(latencies):.1f} ms, "
          f"p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms; p95 / 250 ms target = {p95 / 250:.2f}x")


if __name__ == "__main__":
    main()
