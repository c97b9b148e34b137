"""How fast trainctl turns a log into metric series, next to `grep -c loss` on the same file,
and how much memory 10 million points take.

    python bench/monitor_throughput.py              # 1 GB mixed log (made once, kept in /tmp)
    python bench/monitor_throughput.py --size-mb 200

The mixed log simulates the same number of training steps for each format trainctl knows:
progress-bar formats redraw their bar every step (`\\r`), as tqdm, Lightning and Keras do when
a step takes longer than their refresh interval; line formats print every 10 steps; noise
(warnings, tracebacks, INFO prose) is sprinkled in. Per-format figures are printed too, since
a log of only dense metric lines is the slowest case. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.monitor.metrics import extract_file  # noqa: E402

CACHE = Path("/tmp/trainctl_bench")
STEPS_PER_ROUND = 200
BAR = 40


def bar(fraction: float, full: str = "█", empty: str = " ") -> str:
    filled = int(fraction * BAR)
    return full * filled + empty * (BAR - filled)


def hf_round(rng: random.Random, step: int) -> str:
    out, line = [], ""
    for s in range(step, step + STEPS_PER_ROUND):
        frac = (s % 1000) / 1000
        line += (f"\r{int(frac * 100):3d}%|{bar(frac)}| {s % 1000}/1000 "
                 f"[00:{s % 60:02d}<01:40, {rng.uniform(3, 5):.2f}it/s]")
        if s % 10 == 0:
            record = {"loss": f"{rng.uniform(0.3, 0.7):.4g}",
                      "grad_norm": f"{rng.uniform(0.1, 2):.4g}",
                      "learning_rate": f"{5e-5 * (1 - frac):.4g}", "epoch": f"{s / 1000:.4g}"}
            out.append(line + "\r" + " " * 100 + "\r" + str(record))
            line = ""
    out.append(line)
    return "\n".join(out) + "\n"


def lightning_round(rng: random.Random, step: int) -> str:
    epoch = step // 1000
    line = ""
    for s in range(step, step + STEPS_PER_ROUND):
        frac = (s % 1000) / 1000
        line += (f"\rEpoch {epoch}: {int(frac * 100):3d}%|{bar(frac)}| {s % 1000}/1000 "
                 f"[00:01<00:09, {rng.uniform(20, 60):.2f}it/s, v_num=0, "
                 f"train_loss_step={rng.uniform(0.1, 0.6):.3f}, val_loss=0.498, val_acc=0.812]")
    val = "".join(f"\rValidation DataLoader 0: {p * 25:3d}%|{bar(p / 4)}| {p}/4 [00:00<00:00, "
                  f"150.00it/s]\x1b[A" for p in range(5))
    return line + "\n" + val + "\n"


def keras_round(rng: random.Random, step: int) -> str:
    out = [f"Epoch {step // STEPS_PER_ROUND + 1}/1000"]
    line = ""
    for b in range(1, STEPS_PER_ROUND + 1):
        done = int(20 * b / STEPS_PER_ROUND)
        line += (f"\r\x1b[1m{b:3d}/{STEPS_PER_ROUND}\x1b[0m \x1b[32m{'━' * done}\x1b[0m"
                 f"\x1b[37m{'━' * (20 - done)}\x1b[0m \x1b[1m0s\x1b[0m 9ms/step - accuracy: "
                 f"{rng.uniform(0.5, 1):.4f} - loss: {rng.uniform(0.05, 0.7):.4f}" + "\b" * 60)
    out.append(line + f" - val_accuracy: {rng.uniform(0.5, 1):.4f} - val_loss: "
                      f"{rng.uniform(0.05, 0.7):.4f}")
    return "\n".join(out) + "\n"


def nanogpt_round(rng: random.Random, step: int) -> str:
    out = []
    for s in range(step, step + STEPS_PER_ROUND, 10):
        if s % 250 == 0:
            out.append(f"step {s}: train loss {rng.uniform(1, 3):.4f}, "
                       f"val loss {rng.uniform(1, 3):.4f}")
        out.append(f"iter {s}: loss {rng.uniform(1, 3):.4f}, time {rng.uniform(10, 300):.2f}ms, "
                   f"mfu {rng.uniform(1, 40):.2f}%")
    return "\n".join(out) + "\n"


def demo_round(rng: random.Random, step: int) -> str:
    out = []
    for s in range(step, step + STEPS_PER_ROUND, 10):
        out.append(f"step {s}/1000000 | train loss {rng.uniform(0.2, 0.7):.4f} | lr "
                   f"{rng.uniform(1e-4, 3e-2):.2e} | grad_norm {rng.uniform(0.1, 3):.2f} | "
                   f"{rng.uniform(400, 600):.1f} samples/s")
    return "\n".join(out) + "\n"


def jsonl_round(rng: random.Random, step: int) -> str:
    return "".join(json.dumps({"step": s, "loss": rng.uniform(0.2, 2), "lr": 3e-4,
                               "grad_norm": rng.uniform(0.1, 3)}) + "\n"
                   for s in range(step, step + STEPS_PER_ROUND, 10))


def kv_round(rng: random.Random, step: int) -> str:
    return "".join(f"2026-01-01 12:{s % 60:02d}:{s % 60:02d},123 - train - INFO - epoch "
                   f"{s // 1000} step {s} loss={rng.uniform(0.2, 2):.4f} lr=1.0e-04\n"
                   for s in range(step, step + STEPS_PER_ROUND, 10))


def deepspeed_round(rng: random.Random, step: int) -> str:
    out = []
    for s in range(step, step + STEPS_PER_ROUND, 10):
        out.append(f"[2026-01-01 12:00:00,668] [INFO] [logging.py:123:log_dist] [Rank 0] "
                   f"step={s}, skipped=0, lr=[{rng.uniform(1e-4, 1e-3)}], mom=[(0.9, 0.999)]")
        out.append(f"[Rank 0] time (ms) | fwd: {rng.uniform(0.1, 1):.2f} | bwd: "
                   f"{rng.uniform(0.1, 1):.2f} | step: {rng.uniform(1, 3):.2f}")
        out.append(f"step {s} loss {rng.uniform(2, 8):.4f}")
    return "\n".join(out) + "\n"


NOISE = (
    "/usr/lib/python3/site-packages/torch/utils/data/dataloader.py:557: UserWarning: This "
    "DataLoader will create 8 worker processes in total.\n  warnings.warn(\n"
    "Traceback (most recent call last):\n  File \"train.py\", line 12, in <module>\n"
    "    loss = step(batch)\nValueError: the loss 0.5 is not what we wanted\n"
    "2026-01-01 12:00:00,000 - root - INFO - saving checkpoint to ./out/checkpoint-500 (2.1 GB)\n"
    "\n"
)

FORMATS = {
    "hf": hf_round, "lightning": lightning_round, "keras": keras_round,
    "nanogpt": nanogpt_round, "demo": demo_round, "jsonl": jsonl_round, "kv": kv_round,
    "deepspeed": deepspeed_round,
}


def make_block(formats, megabytes: float, seed: int = 0) -> bytes:
    """Rounds of each format in turn (same steps each) until `megabytes` are written."""
    rng = random.Random(seed)
    parts, size, step = [], 0, 0
    while size < megabytes * 1e6:
        for name in formats:
            text = FORMATS[name](rng, step).encode()
            parts.append(text)
            size += len(text)
        parts.append(NOISE.encode())
        step += STEPS_PER_ROUND
    return b"".join(parts)


def mixed_log(size_mb: int) -> Path:
    """A log of `size_mb` MB, made once: a 64 MB block written again until big enough."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"mixed_{size_mb}mb.log"
    if path.exists() and path.stat().st_size >= size_mb * 1e6:
        return path
    block = make_block(list(FORMATS), min(64, size_mb))
    with open(path, "wb") as handle:
        written = 0
        while written < size_mb * 1e6:
            handle.write(block)
            written += len(block)
    return path


def time_grep(path: Path) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        # Through a pipe: GNU grep stops at the first match when its output is /dev/null.
        subprocess.run(["grep", "-c", "loss", str(path)], stdout=subprocess.PIPE, check=False)
        best = min(best, time.perf_counter() - start)
    return best


def time_extract(path: Path) -> tuple[float, object]:
    start = time.perf_counter()
    metrics = extract_file(path)
    return time.perf_counter() - start, metrics


def python_floor(path: Path, points: int) -> tuple[float, float, float]:
    """What any pure-Python extractor pays on this interpreter before parsing anything: read
    and split the file into lines; one bytes.translate and dict lookup per line (the least a
    line can be looked at); one float() per point the parse yields."""
    marks = bytes.maketrans(b"0123456789", b"##########")
    seen: dict[bytes, int] = {}
    start = time.perf_counter()
    split = lookup = 0.0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines = block.split(b"\n")
            split = time.perf_counter()
            for line in lines:
                seen.get(line[:200].translate(marks))
            lookup += time.perf_counter() - split
    split = time.perf_counter() - start - lookup
    sample = [b"0.4563", b"1250", b"3.0e-04", b"512.3"] * 1000
    start = time.perf_counter()
    for _ in range(points // len(sample) + 1):
        list(map(float, sample))
    return split, lookup, time.perf_counter() - start


def per_format(megabytes: float) -> None:
    print(f"\nper format ({megabytes:g} MB each; MB/s, ratio to grep -c loss):")
    for name in FORMATS:
        path = CACHE / f"only_{name}.log"
        if not path.exists():
            path.write_bytes(make_block([name], megabytes))
        seconds, metrics = time_extract(path)
        grep = time_grep(path)
        size = path.stat().st_size / 1e6
        print(f"  {name:10s} {size / seconds:8.1f} MB/s  x{seconds / grep:6.1f}  "
              f"{metrics.records / seconds / 1e3:7.1f} k records/s")


# VmHWM (peak resident set) of a fresh process; ru_maxrss would carry the parent's peak.
MEMORY_PROBE = """
import sys, time
sys.path.insert(0, {root!r})
from trainctl_tui.monitor.series import Series
def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = peak_kb()
series = Series("loss")
append = series.append
for i in range({points}):
    append(float(i), 1.0 / (1 + i % 1000))
after = peak_kb()
start = time.perf_counter(); series.downsample(200); cold = time.perf_counter() - start
append(float({points}), 0.5)
start = time.perf_counter(); series.downsample(200); warm = time.perf_counter() - start
print(before, after, cold, warm)
"""


def memory(points: int) -> None:
    probe = MEMORY_PROBE.format(root=str(ROOT), points=points)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    before, after, cold, warm = int(out[0]), int(out[1]), float(out[2]), float(out[3])
    print(f"\n{points / 1e6:g} M points in one Series: peak RSS {after / 1024:.0f} MB "
          f"({(after - before) / 1024:.0f} MB for the points, target <= 300 MB); "
          f"downsample to 200: {cold * 1e3:.0f} ms first, {warm * 1e3:.1f} ms after one append")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--per-format-mb", type=float, default=20)
    args = parser.parse_args()

    path = mixed_log(args.size_mb)
    size = path.stat().st_size / 1e6
    grep = time_grep(path)
    seconds, metrics = time_extract(path)
    peak = peak_rss_mb()
    points = sum(len(s) for s in metrics.series.values())
    print(f"mixed log {path} ({size:.0f} MB, {metrics.lines / 1e6:.1f} M lines)")
    print(f"  grep -c loss   {grep:7.2f} s  {size / grep:8.1f} MB/s")
    print(f"  extract_file   {seconds:7.2f} s  {size / seconds:8.1f} MB/s  "
          f"({metrics.records / 1e6:.2f} M records, {points / 1e6:.2f} M points, "
          f"{len(metrics.series)} series, peak RSS {peak:.0f} MB)")
    print(f"  ratio          x{seconds / grep:.1f} slower than grep (target <= 30, issue 13)")
    split, lookup, floats = python_floor(path, points)
    print(f"  pure-Python floor on this interpreter: read+split x{split / grep:.1f}, "
          f"+ one lookup a line x{(split + lookup) / grep:.1f}, + float() per point "
          f"x{(split + lookup + floats) / grep:.1f} (no parsing yet)")
    per_format(args.per_format_mb)
    memory(args.points)


if __name__ == "__main__":
    main()
