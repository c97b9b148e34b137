"""Metric extraction gives exactly the series it gave when the goldens were written: a guard
for any rewrite of the parsers (e.g. for throughput).

tests/fixtures/metrics_golden.json is rewritten with `python tests/test_metrics_golden.py`
(run it with the trusted implementation first on sys.path). Each case keeps, per series,
the count, first/last points, nan/inf counts, finite sums and a sha256 of the raw bytes of
xs and ys, so any changed point, order or flag fails.

Cases: every log in tests/fixtures/logs, small mixed logs made by the benchmark's own
generator (bench/monitor_throughput.py), and seeded logs of awkward lines (`adversarial_log`),
read whole, in small chunks, fed as text and fed a line at a time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import sys
from pathlib import Path

import pytest

from trainctl_tui.monitor.metrics import MetricSet, extract_file

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "metrics_golden.json"
PATTERNS = (r"loss[ =:]+(?P<loss>[-\d.e]+)", r"iter (?P<step>\d+)")


def _bench_generator():
    spec = importlib.util.spec_from_file_location(
        "monitor_throughput_for_tests", ROOT / "bench" / "monitor_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mixed_logs() -> dict[str, bytes]:
    bench = _bench_generator()
    formats = list(bench.FORMATS)
    return {
        "mixed": bench.make_block(formats, 1.5, seed=0),
        "mixed_seed7": bench.make_block(formats, 0.5, seed=7),
        **{f"only_{name}": bench.make_block([name], 0.2, seed=3) for name in formats},
    }


def adversarial_log(seed: int, lines: int = 6000) -> bytes:
    """Runs of random shapes (1-7 lines each) with the awkward cases mixed in: repeated,
    negative, fractional and nan steps; nan/inf/overflowing values; step-less records that
    repeat; progress bars with blank or escaped last states; Keras epochs; `#` in lines."""
    rng = random.Random(seed)
    step = 0

    def value():
        roll = rng.random()
        if roll < 0.03:
            return rng.choice(["nan", "inf", "-inf", "NaN", "1e309", "-1e309"])
        if roll < 0.05:
            return rng.choice(["1e308", "-0.0", "+3", ".5", "1e5", "0"])
        return f"{rng.uniform(-1, 3):.{rng.randint(1, 6)}f}"

    def next_step():
        nonlocal step
        roll = rng.random()
        if roll < 0.1:
            return str(step)  # the step of the line before
        if roll < 0.13:
            return rng.choice(["-10", "2.5", "nan", "0", "1e3"])
        step += rng.randint(1, 20)
        return str(step)

    def fixed_step():
        nonlocal step
        step += rng.choice([0, 1, 7])
        return step % 99999

    record = [value() for _ in range(3)]
    shapes = [
        lambda: f"step {next_step()} loss {value()}",
        lambda: f"step {next_step()}: train loss {value()}, val loss {value()}",
        lambda: f"iter {next_step()}: loss {value()}, time {value()}ms, mfu {value()}%",
        lambda: f"step {next_step()}/1000 | train loss {value()} | lr {value()} | "
                f"grad_norm {value()} | {rng.uniform(1, 600):.1f} samples/s",
        lambda: f'{{"step": {next_step()}, "loss": {value()}, "lr": 0.0003}}',
        lambda: f"2026-01-01 12:00:00,123 - INFO - step {next_step()} loss={value()} lr={value()}",
        lambda: (f"[Rank 0] step={next_step()}, skipped=0, lr=[{value()}], "
                 f"mom=[(0.9, 0.999)]"),
        lambda: f"[Rank 0] time (ms) | fwd: {value()} | bwd: {value()} | step: {value()}",
        lambda: (f"{{'loss': {record[0]}, 'grad_norm': {record[1]}, 'learning_rate': "
                 f"{record[2]}, 'epoch': {rng.choice(['0.5', '1.0', '1.5'])}}}"),
        lambda: f"{{'eval_loss': {value()}, 'eval_accuracy': {value()}, 'epoch': 1.0}}",
        lambda: (f"\r 10%|{'#' * rng.randint(0, 9)}| 1/10 [00:01<00:09]\r"
                 f"{{'loss': {record[0]}, 'learning_rate': {record[1]}, 'epoch': 0.5}}"),
        lambda: f"\r 50%|#####| 5/10 [00:05<00:05, train_loss={value()}, v_num=0]\r   ",
        lambda: f"\rEpoch 0: 10/20 [00:01<00:01, loss={value()}, v_num=0]\x1b[32m\x1b[0m",
        lambda: f"\rEpoch 0: 10/20 [00:01<00:01, train_loss_step={value()}, val_loss={value()}]",
        lambda: f"Epoch {rng.randint(1, 9)}/10",
        lambda: f"32/32 \u2501\u2501 0s 2ms/step - accuracy: {value()} - loss: {value()}",
        lambda: f"# step {next_step()} loss {value()}",
        # one layout, other names: a line must never be read with another template's plan
        lambda: f"step={fixed_step():05d} loss={rng.uniform(0, 9):.3f}",
        lambda: f"step={fixed_step():05d} gnrm={rng.uniform(0, 9):.3f}",
        lambda: f"step={fixed_step():05d} gnrm={rng.uniform(0, 9):.3f} a=1",
        lambda: "# step # loss #",
        lambda: "loss: nan",
        lambda: "Traceback (most recent call last):",
        lambda: "",
        lambda: f"step {next_step()} loss {value()}.{rng.randint(0, 9)}",
    ]
    out = []
    while len(out) < lines:
        shape = rng.choice(shapes)
        if rng.random() < 0.2:
            record = [value() for _ in range(3)]
        for _ in range(rng.randint(1, 7)):
            out.append(shape())
    return "\n".join(out).encode() + b"\n"


def _fsum(values) -> float | str:
    try:
        return math.fsum(values)
    except OverflowError:
        return "overflow"


def _number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def summarize(metrics: MetricSet) -> dict:
    series = {}
    for name, s in metrics.series.items():
        finite_x = [x for x in s.xs if math.isfinite(x)]
        finite_y = [y for y in s.ys if math.isfinite(y)]
        bad = s.first_nonfinite()
        series[name] = {
            "count": len(s),
            "first": [_number(v) for v in (s.xs[0], s.ys[0])] if len(s) else None,
            "last": [_number(v) for v in s.last] if len(s) else None,
            "nonfinite": s.nonfinite,
            "nan": sum(1 for y in s.ys if math.isnan(y)),
            "inf": sum(1 for y in s.ys if math.isinf(y)),
            "first_nonfinite": None if bad is None else [_number(v) for v in bad],
            "sum_x": _fsum(finite_x),
            "sum_y": _fsum(finite_y),
            "sha256": hashlib.sha256(s.xs.tobytes() + b"|" + s.ys.tobytes()).hexdigest(),
        }
    return {"lines": metrics.lines, "records": metrics.records, "names": list(metrics.series),
            "series": series}


def compute_cases(tmp: Path) -> dict[str, dict]:
    out = {}
    for log in sorted(LOGS.glob("*.log")):
        out[f"fixture:{log.stem}"] = summarize(extract_file(log))
        out[f"fixture:{log.stem}:chunk97"] = summarize(extract_file(log, chunk=97))
        out[f"fixture:{log.stem}:patterns"] = summarize(extract_file(log, PATTERNS))
        text = MetricSet()
        text.feed_text(log.read_bytes().decode("utf-8", "surrogateescape"))
        out[f"fixture:{log.stem}:text"] = summarize(text)
    logs = mixed_logs()
    for seed in range(4):
        logs[f"adversarial_{seed}"] = adversarial_log(seed)
    for name, data in logs.items():
        path = tmp / f"{name}.log"
        path.write_bytes(data)
        out[f"bench:{name}"] = summarize(extract_file(path))
        out[f"bench:{name}:chunk4093"] = summarize(extract_file(path, chunk=4093))
        if name == "mixed" or name.startswith("adversarial"):
            one_by_one = MetricSet()  # the live way: a line at a time
            for line in data.split(b"\n")[:-1]:
                one_by_one.feed_bytes([line])
            out[f"bench:{name}:one_by_one"] = summarize(one_by_one)
        if name == "mixed":
            out[f"bench:{name}:patterns"] = summarize(extract_file(path, PATTERNS))
            text = MetricSet()
            text.feed_text(data.decode("utf-8", "surrogateescape"))
            out[f"bench:{name}:text"] = summarize(text)
    return out


@pytest.fixture(scope="module")
def current(tmp_path_factory) -> dict[str, dict]:
    return compute_cases(tmp_path_factory.mktemp("mixed"))


GOLDEN_CASES = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def test_golden_covers_every_fixture_log():
    for log in LOGS.glob("*.log"):
        assert f"fixture:{log.stem}" in GOLDEN_CASES


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_same_series_as_the_original_implementation(current, case):
    assert json.loads(json.dumps(current[case])) == GOLDEN_CASES[case]


if __name__ == "__main__":  # write the golden file with whatever trainctl_tui is importable
    import tempfile

    import trainctl_tui

    print("golden from", trainctl_tui.__file__, file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        cases = compute_cases(Path(folder))
    GOLDEN.write_text(json.dumps(cases, indent=0, sort_keys=True) + "\n")
    print(f"{len(cases)} cases -> {GOLDEN}", file=sys.stderr)
