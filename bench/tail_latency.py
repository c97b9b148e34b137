"""Latency from a line appended to a log to `LogFollower.updates()` delivering it.

A writer subprocess appends lines at random 10-50 ms intervals, each carrying its write time;
the reader records receipt time - write time. Runs the watchfiles path and the polling fallback.
Target (issue): p95 <= 250 ms on both. Prints figures and the ratio to the target; asserts
nothing (machines are noisy).

    python bench/tail_latency.py [--lines 200] [--mode both|watchfiles|polling]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.monitor.tail import LogFollower  # noqa: E402

TARGET_P95_MS = 250.0

WRITER = """
import random, sys, time
path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with open(path, "ab", buffering=0) as log:
    for i in range(count):
        time.sleep(rng.uniform(0.010, 0.050))
        log.write(b"line %d wrote %.6f\\n" % (i, time.time()))
"""


async def measure(path: Path, lines: int, use_watchfiles: bool) -> tuple[list[float], str, float]:
    """(latencies in ms, wake mode used, reader CPU seconds)."""
    path.write_bytes(b"")
    follower = LogFollower(path, start="beginning")
    stop = asyncio.Event()
    latencies: list[float] = []

    async def read() -> None:
        async for update in follower.updates(stop=stop, use_watchfiles=use_watchfiles):
            now = time.time()
            for line in update.lines:
                latencies.append((now - float(line.rsplit(" ", 1)[1])) * 1000)
            if len(latencies) >= lines:
                stop.set()

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(1.5)  # past the watcher's warm-up, so steady state is measured
    cpu = time.process_time()
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path),
                                                  str(lines), "7")
    await writer.wait()
    try:
        await asyncio.wait_for(reader, timeout=30)
    except asyncio.TimeoutError:
        stop.set()
    return latencies, follower.wake_mode or "?", time.process_time() - cpu


def report(label: str, latencies: list[float], mode: str, cpu: float) -> None:
    if not latencies:
        print(f"{label:<11} no lines received")
        return
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(f"{label:<11} mode={mode:<10} n={len(ordered):<4} "
          f"median={statistics.median(ordered):6.1f} ms  p95={p95:6.1f} ms  "
          f"max={ordered[-1]:6.1f} ms  p95/target={p95 / TARGET_P95_MS:4.2f}x  "
          f"reader cpu={cpu:4.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--mode", choices=["both", "watchfiles", "polling"], default="both")
    args = parser.parse_args()
    modes = ["watchfiles", "polling"] if args.mode == "both" else [args.mode]
    print(f"{args.lines} lines at 10-50 ms intervals; target p95 <= {TARGET_P95_MS:.0f} ms")
    with tempfile.TemporaryDirectory() as folder:
        for mode in modes:
            path = Path(folder) / f"{mode}.log"
            result = asyncio.run(measure(path, args.lines, use_watchfiles=mode == "watchfiles"))
            report(mode, *result)


if __name__ == "__main__":
    main()
