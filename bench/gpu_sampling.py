"""The CPU that usage sampling (runner/gpu_sampler.py) adds to a running training.

The runner zipapp supervises a training that keeps one core busy for --seconds, once with
sampling off (usage_sample_seconds = 0) and once on (every --interval seconds, nvidia-smi
being the tests' fake on PATH: a Python script, so each call costs a Python start-up, likely
more than the real tool). The runner's CPU time is what wait4 reports for it (its own time
and that of the children it reaped: the training and every nvidia-smi) minus the CPU time
the training reports for itself. A third run samples with no nvidia-smi on PATH: what the
/proc scan and the file cost alone. Target (issue 17): sampling adds under 1 % CPU to a
running training, counted against the one core it keeps busy (added CPU seconds per wall
second; the share of the training's own CPU is printed too: on a loaded machine the training
gets less than its core). Prints figures and the ratio; asserts nothing.

    python bench/gpu_sampling.py [--seconds 60] [--interval 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gpu_helpers import A10G, FAKE  # noqa: E402

from trainctl_tui.runner.bundle import runner_bundle  # noqa: E402

TARGET_PERCENT = 1.0

# Spins one core for SECONDS of wall time, then writes its own CPU seconds.
TRAINING = """
import os, sys, time
end = time.time() + float(sys.argv[1])
while time.time() < end:
    sum(range(1000))
t = os.times()
open(sys.argv[2], "w").write(repr(t.user + t.system))
"""


def run(folder: Path, runner: Path, seconds: float, interval: float) -> dict:
    """One supervised training; CPU seconds of the runner itself, of the training, wall."""
    folder.mkdir()
    cpu_file = folder / "training-cpu"
    spec = {"id": folder.name, "command": [sys.executable, "-c", TRAINING, str(seconds),
                                           str(cpu_file)],
            "cwd": str(folder), "max_restarts": 0, "usage_sample_seconds": interval}
    (folder / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, str(runner), str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    training = float(cpu_file.read_text())
    total = usage.ru_utime + usage.ru_stime
    samples = 0
    if (folder / "usage.json").exists():
        samples = len(json.loads((folder / "usage.json").read_text())["samples"])
    return {"runner": total - training, "training": training, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-gpu-") as tmp:
        tmp_path = Path(tmp)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
        smi.chmod(0o755)
        state = tmp_path / "gpus.json"
        state.write_text(json.dumps({"gpus": [A10G, A10G[:1] + [1] + A10G[1:]]}))
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        os.environ["FAKE_NVIDIA_SMI_STATE"] = str(state)
        runner = runner_bundle(tmp_path / "runner")
        print(f"a training spinning one core for {args.seconds:g}s under the runner; "
              f"sampling every {args.interval:g}s with the fake nvidia-smi (2 GPUs)")
        off = run(tmp_path / "off", runner, args.seconds, 0)
        on = run(tmp_path / "on", runner, args.seconds, args.interval)
        calls_file = Path(str(state) + ".calls")
        calls = len(calls_file.read_text().splitlines()) if calls_file.exists() else 0
        smi.unlink()
        bare = run(tmp_path / "bare", runner, args.seconds, args.interval)
    for label, result in (("off", off), ("on", on), ("on, no nvidia-smi", bare)):
        print(f"  runner CPU, sampling {label + ':':19} {result['runner']:.3f}s "
              f"(training {result['training']:.1f}s, {result['samples']} samples)")
    added = on["runner"] - off["runner"]
    core = 100.0 * added / args.seconds
    print(f"  added by sampling: {added:.3f}s over {args.seconds:g}s = {core:.2f}% of one core; "
          f"{100 * added / on['training']:.2f}% of the training's CPU; "
          f"{1000 * added / max(calls, 1):.1f} ms per sample ({calls} nvidia-smi calls)")
    bare_added = bare["runner"] - off["runner"]
    print(f"  without nvidia-smi: {bare_added:.3f}s = {100 * bare_added / args.seconds:.2f}% "
          f"of one core ({1000 * bare_added / max(bare['samples'], 1):.1f} ms per sample)")
    print(f"  ratio to the {TARGET_PERCENT:g}% target: {core / TARGET_PERCENT:.2f}")


if __name__ == "__main__":
    main()
