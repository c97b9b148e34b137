"""What the runner's progress meter costs a training (runner/progress.py): one poll a
heartbeat reads what the log gained and scans it. Prints the time of a poll for a heartbeat's
worth of real library output (the fixtures, repeated), and its share of the heartbeat
(2 s by default), next to a plain read of the same bytes as the baseline.

    python bench/progress.py [--heartbeat 2]

Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainctl_tui.runner.progress import READ_LIMIT, LogProgress  # noqa: E402

LOGS = ROOT / "tests" / "fixtures" / "logs"


def poll_seconds(data: bytes, rounds: int = 50) -> tuple[float, float]:
    """(median seconds of a poll that finds `data` new, of a plain read of it)."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "train.log"
        log.write_bytes(b"")
        meter = LogProgress(str(log))
        polls, reads = [], []
        for _ in range(rounds):
            with open(log, "ab") as handle:
                handle.write(data)
            start = time.perf_counter()
            meter.poll(time.time())
            polls.append(time.perf_counter() - start)
            start = time.perf_counter()
            with open(log, "rb") as handle:
                handle.seek(max(0, log.stat().st_size - min(len(data), READ_LIMIT)))
                handle.read()
            reads.append(time.perf_counter() - start)
    polls.sort()
    reads.sort()
    return polls[len(polls) // 2], reads[len(reads) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heartbeat", type=float, default=2.0)
    args = parser.parse_args()
    print(f"{'log':<22}{'new bytes':>11}{'poll':>10}{'read':>10}{'ratio':>8}{'of beat':>9}")
    for name in ("hf_trainer", "lightning_rich", "keras", "nanogpt", "demo", "tqdm_prints"):
        text = (LOGS / f"{name}.log").read_bytes()
        for size in (16 << 10, READ_LIMIT):
            data = (text * (size // max(1, len(text)) + 1))[:size]
            poll, read = poll_seconds(data)
            print(f"{name:<22}{size:>11,}{poll * 1e3:>8.2f}ms{read * 1e3:>8.2f}ms"
                  f"{poll / read:>7.0f}x{100 * poll / args.heartbeat:>8.3f}%")


if __name__ == "__main__":
    main()
