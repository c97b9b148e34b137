"""Startup cost of the commands people run many times a day, as ratios to `python -c pass`
of the same interpreter (issue 11).

Targets: `--version` <= 2.5x; `sessions` and `sessions --json` with 1,000 sessions <= 5x (and
they import none of the heavy modules below); `--once` with 1,000 sessions in the store, 20 shown
<= 10x; `logs ID` and `stop ID` <= 6x. `stop` is measured as `stop ID --no-wait` on a running
session whose training ignores SIGTERM: the time until the stop is delivered, not the grace.

Run it with the python of a fresh virtualenv (`pip install -e .` in it), whose `python -c pass`
no site-wide `.pth` inflates; the baseline's own `-X importtime` total is printed to show it.
Prints figures and ratios; asserts nothing (machines are noisy).

    python bench/startup.py [--runs 15] [--sessions 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.core.models import Attempt, Session, Status  # noqa: E402
from trainctl_tui.store import Store  # noqa: E402

HEAVY = ("pydantic", "pydantic_settings", "asyncio", "ssl", "textual", "boto3", "botocore",
         "runpod", "plotext", "rich.console", "rich.table")
# A training that ignores SIGTERM, so `stop --no-wait` can be repeated on the same session.
STUBBORN = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "for i in range(100000):\n    print(f'step {i} loss {1 / (i + 1):.4f}', "
            "flush=True)\n    time.sleep(0.5)\n")


def log_text(i: int, lines: int = 300) -> str:
    return "".join(f"step {s} loss {2.0 / (s + 1) + i * 1e-3:.4f} lr 3e-4\n"
                   for s in range(lines))


def fill_store(home: Path, count: int) -> None:
    """`count` ended sessions with two attempts each, as a long-lived store would hold: each
    with its folder (spec.json, status.json), the newest ones with a training log, as
    `--once` reads their tails."""
    now = time.time()
    with Store(home / "trainctl.db") as store:
        for i in range(count):
            session = Session(
                id="", name=f"run-{i}", provider="local",
                command=["python", "train.py", "--lr", "3e-4", "--seed", str(i)],
                cwd="/srv/project", session_dir="",
                status=Status.SUCCEEDED if i % 3 else Status.FAILED,
                created=now - 3600 - i * 60, started=now - 3600 - i * 60,
                ended=now - 3600 - i * 60 + 30, attempt=2, exit_code=0,
            )
            store.insert(session, prepare=lambda s: setattr(
                s, "session_dir", str(home / "sessions" / s.id)))
            store.update(session.id, attempts=[Attempt(n=1, exit_code=1),
                                               Attempt(n=2, exit_code=0)])
            folder = Path(session.session_dir)
            folder.mkdir(parents=True)
            (folder / "spec.json").write_text(json.dumps(
                {"id": session.id, "name": session.name, "command": session.command,
                 "cwd": session.cwd, "provider": "local", "created": session.created}))
            (folder / "status.json").write_text(json.dumps(
                {"state": "succeeded", "attempt": 2, "exit_code": 0, "heartbeat": session.ended,
                 "started": session.started, "ended": session.ended}))
            if i < 60:
                (folder / "train.log").write_text(log_text(i))


def trainctl_command() -> list[str]:
    script = Path(sys.executable).parent / "trainctl"
    if script.exists():
        return [str(script)]
    found = shutil.which("trainctl")
    return [found] if found else [sys.executable, "-m", "trainctl_tui"]


def run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run. CPU time (user + system, from wait4) hardly
    moves when other work shares the machine; wall time does."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def median_seconds(argv: list[str], env: dict, runs: int) -> tuple[float, float]:
    """Median wall and median CPU seconds over `runs` runs (after one to warm the cache)."""
    run_once(argv, env)
    walls, cpus = zip(*(run_once(argv, env) for _ in range(runs)), strict=True)
    return statistics.median(walls), statistics.median(cpus)


def import_times(argv: list[str], env: dict) -> list[tuple[int, int, str]]:
    """(cumulative us, depth, module) of every import the command makes, from -X importtime."""
    result = subprocess.run(argv, env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                            capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((int(cumulative), depth, name.strip()))
    return rows


def top_level_ms(rows: list[tuple[int, int, str]]) -> float:
    return sum(us for us, depth, _ in rows if depth == 0) / 1000


def launch_stubborn(env: dict, trainctl: list[str], work: Path) -> str:
    (work / "stubborn.py").write_text(STUBBORN)
    out = subprocess.run(
        [*trainctl, "launch", "--name", "stubborn", "--cwd", str(work),
         "--grace-seconds", "3600", "--", sys.executable, "stubborn.py"],
        env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def kill_session(home: Path, session_id: str) -> None:
    try:
        status = json.loads((home / "sessions" / session_id / "status.json").read_text())
    except (OSError, ValueError):
        return
    for pid in (status.get("child_pid"), status.get("runner_pid")):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="trainctl-bench-"))
    running = None
    try:
        fill_store(home, args.sessions)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINCTL_", "PYTHON"))}
        env.update(TRAINCTL_HOME=str(home), TRAINCTL_CONFIG=str(home / "none.toml"))
        trainctl = trainctl_command()
        running = launch_stubborn(env, trainctl, home)

        base_rows = import_times([sys.executable, "-c", "pass"], env)
        base_wall, base_cpu = median_seconds([sys.executable, "-c", "pass"], env, args.runs)
        in_venv = sys.prefix != sys.base_prefix
        print(f"interpreter: {sys.executable} ({'a virtualenv' if in_venv else 'NOT a venv'})")
        print(f"python -c pass: {base_wall * 1000:.1f} ms wall, {base_cpu * 1000:.1f} ms CPU "
              f"(medians of {args.runs}); its own -X importtime total "
              f"{top_level_ms(base_rows):.1f} ms over {len(base_rows)} modules: "
              f"{', '.join(n for _, d, n in base_rows if d == 0)}")
        print(f"trainctl: {' '.join(trainctl)}; {args.sessions} sessions in the store, "
              f"1 running\n")
        print(f"{'command':20} {'wall':>9} {'ratio':>6} {'CPU':>9} {'ratio':>6}  target "
              "(on the wall ratio; the CPU ratio is steadier on a busy machine)")
        cases = [
            ("--version", ["--version"], 2.5),
            ("sessions", ["sessions"], 5.0),
            ("sessions --json", ["sessions", "--json"], 5.0),
            ("--once", ["--once"], 10.0),
            ("--once --json", ["--once", "--json"], None),
            ("logs ID", ["logs", running], 6.0),
            ("stop ID --no-wait", ["stop", running, "--no-wait"], 6.0),
        ]
        base_modules = {n for _, _, n in base_rows}
        report = []
        for label, argv, target in cases:
            wall, cpu = median_seconds(trainctl + argv, env, args.runs)
            ratio = wall / base_wall
            verdict = "" if target is None else (
                f"<= {target:g}x: {'met' if ratio <= target else 'MISSED'}")
            print(f"{label:20} {wall * 1000:6.1f} ms {ratio:5.2f}x {cpu * 1000:6.1f} ms "
                  f"{cpu / base_cpu:5.2f}x  {verdict}")
            report.append((label, import_times(trainctl + argv, env)))
        for label, rows in report:
            own = [r for r in rows if r[2] not in base_modules]
            heavy = sorted({n for _, _, n in own if n in HEAVY})
            print(f"\n{label}: {len(own)} modules beyond the baseline, "
                  f"{top_level_ms(own):.1f} ms of imports; heavy: {', '.join(heavy) or 'none'}")
            for us, _, name in sorted((r for r in own if r[1] == 0), reverse=True)[:10]:
                print(f"  {us / 1000:7.1f} ms  {name}")
    finally:
        if running:
            kill_session(home, running)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
