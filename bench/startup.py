"""Startup cost of the commands people run most, as a ratio to `python -c pass`.

Targets (issue 2): `trainctl --version` <= 3x, `trainctl sessions --json` with 1,000 sessions
in the store <= 5x. Prints figures and ratios; asserts nothing (machines are noisy).

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.models import Attempt, Session, Status  # noqa: E402
from trainctl_tui.store import Store  # noqa: E402


def fill_store(home: Path, count: int) -> None:
    """`count` ended sessions with two attempts each, as a long-lived store would hold."""
    with Store(home / "trainctl.db") as store:
        for i in range(count):
            session = Session(
                id="", name=f"run-{i}", provider="local",
                command=["python", "train.py", "--lr", "3e-4", "--seed", str(i)],
                cwd="/srv/project", session_dir=str(home / "sessions" / f"s{i}"),
                status=Status.SUCCEEDED if i % 3 else Status.FAILED,
                created=time.time() - i * 60, started=time.time() - i * 60,
                ended=time.time() - i * 60 + 30, attempt=2, exit_code=0,
            )
            store.insert(session)
            attempts = [Attempt(n=1, exit_code=1), Attempt(n=2, exit_code=0)]
            store.update(session.id, attempts=attempts)


def median_seconds(argv: list[str], env: dict, runs: int) -> float:
    subprocess.run(argv, env=env, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="trainctl-bench-"))
    try:
        fill_store(home, args.sessions)
        env = {**os.environ, "TRAINCTL_HOME": str(home),
               "TRAINCTL_CONFIG": str(home / "none.toml"), "PYTHONPATH": str(ROOT)}
        installed = shutil.which("trainctl")
        trainctl = [installed] if installed else [sys.executable, "-m", "trainctl_tui"]
        baseline = median_seconds([sys.executable, "-c", "pass"], env, args.runs)
        print(f"python -c pass: {baseline * 1000:.1f} ms (median of {args.runs})")
        print(f"trainctl: {' '.join(trainctl)}; {args.sessions} sessions in the store")
        cases = [
            ("--version", ["--version"], 3.0),
            ("sessions --json", ["sessions", "--json"], 5.0),
            ("sessions --json --all", ["sessions", "--json", "--all"], None),
            ("--once", ["--once"], None),
            ("--once --json", ["--once", "--json"], None),
        ]
        for label, argv, target in cases:
            seconds = median_seconds(trainctl + argv, env, args.runs)
            ratio = seconds / baseline
            verdict = "" if target is None else (
                f"  target <= {target:.0f}x: {'met' if ratio <= target else 'MISSED'}")
            print(f"{label:24} {seconds * 1000:7.1f} ms  {ratio:5.2f}x{verdict}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
