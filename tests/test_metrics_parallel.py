"""A big log's cold parse on every core gives what the serial parse gives, bit for bit: every
fixture log and generated mixes, cut into chunks at every kind of place (inside Keras epochs,
between a Lightning bar and its validation bar, between a step line and its repeat)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from test_metrics_golden import adversarial_log, mixed_logs

from trainctl_tui.monitor import parallel as parallel_module
from trainctl_tui.monitor.index import load_metrics
from trainctl_tui.monitor.metrics import MetricSet, extract_file, extract_range
from trainctl_tui.monitor.parallel import extract_in_parallel

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"


def state(metrics: MetricSet) -> str:
    """Everything a parse leaves: points, series order, counters and the parser's state."""
    series = {name: [s.xs.tobytes().hex(), s.ys.tobytes().hex(), s.nonfinite, s._first_bad]
              for name, s in metrics.series.items()}
    return json.dumps({
        "names": list(metrics.series), "series": series, "lines": metrics.lines,
        "records": metrics.records, "last_step": metrics._last_step,
        "epoch": metrics.parser._epoch, "indexed_x": metrics.indexed_x,
        "previous": sorted([list(k), repr(v)] for k, v in metrics._previous.items()),
    })


def serial(path: Path) -> MetricSet:
    metrics = MetricSet()
    with open(path, "rb") as handle:
        extract_range(metrics, handle, 0, os.fstat(handle.fileno()).st_size)
    return metrics


def parallel(path: Path, parts: int, checkpoint_bytes: int) -> tuple[MetricSet, list[int]]:
    metrics = MetricSet()
    with open(path, "rb") as handle:
        stitched = extract_in_parallel(metrics, handle, 0, os.fstat(handle.fileno()).st_size,
                                       parts=parts, checkpoint_bytes=checkpoint_bytes)
    assert stitched is not None, "no workers started"
    return metrics, stitched


def bars_across_chunks(seed: int) -> bytes:
    """Bars and their context lines in runs short enough that any cut separates them: Keras
    `Epoch N/M` lines and their bars, Lightning bars whose postfix repeats the last val_loss,
    step lines and the summary repeating their step, step-less HF dicts repeating."""
    rng = random.Random(seed)
    out, step = [], 0
    for _ in range(400):
        kind = rng.randrange(5)
        if kind == 0:
            out.append(f"Epoch {rng.randint(1, 5)}/5")
            out.append("".join(f"\r{b}/4 [{'=' * b}>{'.' * (4 - b)}] - ETA: 0s - loss: "
                               f"{rng.uniform(0, 1):.4f}" for b in range(1, 4))
                       + f"\r4/4 [====] - 1s 17ms/step - loss: {rng.uniform(0, 1):.4f}")
        elif kind == 1:
            epoch, val = rng.randint(0, 3), rng.choice(["0.498", "0.512"])
            out.append("".join(f"\rEpoch {epoch}: {n * 10}%|##| {n}/10 [00:01<00:09, 9.1it/s, "
                               f"v_num=0, train_loss_step={rng.choice(['0.5', '0.4'])}, "
                               f"val_loss={val}]" for n in range(rng.randint(1, 10))))
        elif kind == 2:
            step += rng.choice([0, 10])
            out.append(f"step {step} loss={rng.choice(['0.25', '0.5', 'nan'])} lr=1e-4")
            if rng.random() < 0.3:
                out.append(f"done: step {step}, train loss 0.25")
        elif kind == 3:
            out.append(str({"loss": rng.choice([0.5, 0.25]), "epoch": rng.choice([1.0, 2.0])}))
        else:
            out.append(f"iter {step}: loss {rng.uniform(1, 3):.4f}, time 12.5ms, mfu 3.10%")
    return "\n".join(out).encode() + b"\n"


def sample_logs(tmp_path: Path) -> list[Path]:
    logs = sorted(LOGS.glob("*.log"))
    generated = {**mixed_logs(), **{f"adversarial_{seed}": adversarial_log(seed, lines=3000)
                                    for seed in range(2)},
                 **{f"bars_{seed}": bars_across_chunks(seed) for seed in range(3)}}
    for name, data in generated.items():
        path = tmp_path / f"{name}.log"
        path.write_bytes(data)
        logs.append(path)
    return logs


def check_every_log(parts: int, tmp: str) -> None:
    adopted = 0
    for path in sample_logs(Path(tmp)):
        expected = state(serial(path))
        size = path.stat().st_size
        for checkpoint_bytes in (256, 4096):
            metrics, stitched = parallel(path, parts, checkpoint_bytes)
            assert state(metrics) == expected, (path.name, parts, checkpoint_bytes)
            adopted += sum(1 for done in stitched if done < size // parts // 2)
    assert adopted > 0  # the workers' points were used, not only parsed again here


def check_load_metrics(tmp: str) -> None:
    from trainctl_tui.monitor import index as index_module

    parallel_module.PARALLEL_MIN_BYTES = index_module.MIN_LOG_BYTES = 1
    log, index = Path(tmp) / "train.log", Path(tmp) / "i.index"
    log.write_bytes(mixed_logs()["mixed"] + bars_across_chunks(9))
    whole = state(serial(log))
    assert state(extract_file(log)) == whole
    assert state(load_metrics(log, index=index)) == whole  # cold, on every core; writes the index
    assert state(load_metrics(log, index=index)) == whole  # from the index


def run_alone(call: str) -> None:
    """Workers start only from a process with one thread, and a test run may hold others:
    the check runs in a fresh interpreter."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    done = subprocess.run([sys.executable, "-c", f"import test_metrics_parallel as t; t.{call}"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_a_parse_on_every_core_equals_the_serial_parse_bit_for_bit(parts, tmp_path):
    run_alone(f"check_every_log({parts}, {str(tmp_path)!r})")


def test_a_big_cold_parse_uses_the_workers_and_its_index_round_trips(tmp_path):
    run_alone(f"check_load_metrics({str(tmp_path)!r})")


def test_a_process_with_other_threads_parses_alone(tmp_path):
    import threading

    log = tmp_path / "train.log"
    log.write_bytes(bars_across_chunks(1))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with open(log, "rb") as handle:
            assert extract_in_parallel(MetricSet(), handle, 0, log.stat().st_size,
                                       parts=2) is None
    finally:
        stop.set()
        other.join()


def test_this_process_takes_a_smaller_chunk_than_each_worker(tmp_path):
    """It stitches the chunks and writes the index besides: 0.9 of a worker's share, cut
    just past a newline."""
    log = tmp_path / "train.log"
    log.write_bytes(b"".join(b"step %05d loss 1.0\n" % n for n in range(1000)))  # 20 bytes
    with open(log, "rb") as handle:
        assert parallel_module.chunk_bounds(handle, 0, 20_000, 2) == [0, 10_020, 20_000]
        assert parallel_module.chunk_bounds(handle, 0, 20_000, 2, 0.9) == [0, 9_480, 20_000]
        assert parallel_module.chunk_bounds(handle, 0, 20_000, 3, 0.9) == [
            0, 6_220, 13_120, 20_000]
    assert parallel_module.FIRST_SHARE == 0.9
