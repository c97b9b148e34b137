"""What the index keeps beside the points: each series' min/max (and where the minimum is),
its non-finite count and its per-block summaries, so a reopened big log's `trainctl metrics`
and its chart's first draw touch no point again. A reopened series gives, bit for bit, what
a parse from the start gives, after any number of appended segments; a damaged summary
means a rebuild."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest
from conftest import run_cli
from test_metrics_index import header_of, sample_logs, segments_of

from trainctl_tui.monitor import index as index_module
from trainctl_tui.monitor.index import MAGIC, cache_dir, load_metrics
from trainctl_tui.monitor.metrics import extract_file
from trainctl_tui.monitor.series import BLOCK

WIDTHS = (2, 3, 7, 40, 200)
INDEXED_FROM = index_module.MIN_LOG_BYTES  # what a real run indexes


@pytest.fixture(autouse=True)
def index_small_logs(monkeypatch):
    monkeypatch.setattr(index_module, "MIN_LOG_BYTES", 1)


def figures(metrics) -> list:
    """Every figure a user sees of each series: the summary, where its minimum and first
    nan/inf are, and the chart's points at several widths (reprs: -0.0 and nan count)."""
    out = []
    for name, s in metrics.series.items():
        out.append((name, repr(s.summary()), s.min_index(), repr(s.first_nonfinite())))
        for width in WIDTHS:
            xs, ys = s.downsample(width)
            out.append((name, width, repr(list(xs)), repr(list(ys))))
    return out


def held_without_a_pass(metrics) -> bool:
    """Whether the restored series already know their summaries and every whole block's."""
    return all(s._scanned == len(s) and len(s._blocks.first) == len(s) // BLOCK
               for s in metrics.series.values())


def long_log(points: int, seed: int) -> bytes:
    """Dense nanoGPT-like lines with ties, -0.0, nan and inf: enough points that the chart
    samples whole blocks."""
    rng = random.Random(seed)
    lines = []
    for step in range(points):
        roll = rng.random()
        loss = (rng.choice(["nan", "inf", "-inf"]) if roll < 0.0005
                else "-0.0" if roll < 0.001 else f"{rng.choice([rng.random(), 0.5]):.3f}")
        lines.append(f"iter {step}: loss {loss}, time {rng.randrange(5)}.00ms, mfu 1.00%\n")
    return "".join(lines).encode()


@pytest.mark.parametrize("name", [*sorted(sample_logs()), "long"])
def test_a_log_appended_to_many_times_reopens_with_the_figures_of_a_cold_parse(
        name, tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 1)
    monkeypatch.setattr(index_module, "MAX_SEGMENTS", 5)  # then written whole again
    data = long_log(30 * BLOCK, seed=5) if name == "long" else sample_logs()[name]
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    rng = random.Random(name)
    cuts = sorted(rng.sample(range(1, len(data)), 8)) + [len(data)]  # mid-line cuts too
    seen_segments = set()
    for cut in cuts:
        log.write_bytes(data[:cut])
        first = load_metrics(log, index=index)
        assert figures(first) == figures(extract_file(log)), cut
        reopened = load_metrics(log, index=index)
        unfinished = not data[:cut].endswith(b"\n")
        assert unfinished or held_without_a_pass(reopened), cut
        assert figures(reopened) == figures(extract_file(log)), cut
        seen_segments.add(segments_of(index))
    assert name != "long" or {0, 1, 5} <= seen_segments | {0}


def test_the_cli_table_and_json_of_a_reopened_log_are_those_of_a_cold_parse(
        trainctl_home, tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(long_log(100_000, seed=9))
    assert log.stat().st_size >= INDEXED_FROM
    cache = cache_dir()
    outputs = {}
    for how in ("cold", "cold", "reopened", "reopened"):
        if how == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        kind = "json" if len(outputs.get(how, ())) else "table"
        result = run_cli("metrics", str(log), *(["--json"] if kind == "json" else []))
        assert result.returncode == 0, result.stderr
        outputs.setdefault(how, []).append(result.stdout)
        assert len(list(cache.glob("*.index"))) == 1
    assert outputs["cold"] == outputs["reopened"]
    assert json.loads(outputs["cold"][1])["series"]["loss"]["nonfinite"] > 0


def lie_in_the_header(index, key: str) -> None:
    """Change one summary figure of the first series to another of the same length (the
    body's checksum is unchanged)."""
    data = index.read_bytes()
    length = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    header = data[len(MAGIC) + 8:len(MAGIC) + 8 + length]
    entry = header_of(index)["series"][0]
    old = f'"{key}": {json.dumps(entry[key])}'.encode()
    assert old in header
    new = old[:-1] + (b"1" if old[-1:] != b"1" else b"2")
    index.write_bytes(data.replace(header, header.replace(old, new, 1)))


@pytest.mark.parametrize("key", ["max", "min", "min_at", "blocks", "nonfinite"])
def test_a_summary_that_lies_means_a_rebuild_and_the_true_figures(key, tmp_path):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_bytes(long_log(3 * BLOCK, seed=1))
    load_metrics(log, index=index)
    lie_in_the_header(index, key)
    seen = []
    got = load_metrics(log, index=index, progress=lambda done, total: seen.append(done))
    assert max(seen) == log.stat().st_size  # parsed again from the start
    assert figures(got) == figures(extract_file(log))
    assert math.isfinite(header_of(index)["series"][0]["max"])  # and written again
