"""The bundled demo trainer, run as a real subprocess: it learns, checkpoints, stops and resumes."""

from __future__ import annotations

import json
import math
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "trainctl_tui" / "demo" / "train.py"
STEP_LINE = re.compile(
    r"^step (\d+)/(\d+) \| train loss ([\d.]+) \| lr ([\d.e+-]+) \| grad_norm ([\d.]+) \| "
    r"([\d.]+) samples/s$"
)
EVAL_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+), val acc ([\d.]+)$")
FAST = ["--step-time", "0", "--log-every", "10"]


def run_demo(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEMO), "--checkpoint-dir", str(tmp_path / "ckpt"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def step_lines(output: str) -> list[tuple[int, float]]:
    return [
        (int(m.group(1)), float(m.group(3))) for m in map(STEP_LINE.match, output.splitlines()) if m
    ]


def eval_lines(output: str) -> list[tuple[int, float, float, float]]:
    return [
        (int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4)))
        for m in map(EVAL_LINE.match, output.splitlines())
        if m
    ]


def parse_safetensors(path: Path) -> tuple[dict, dict, bytes]:
    """An independent reader: (header without metadata, metadata, data section)."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert 8 + header_len <= len(raw)
    header = json.loads(raw[8 : 8 + header_len])
    metadata = header.pop("__metadata__")
    return header, metadata, raw[8 + header_len :]


def test_loss_decreases_and_logs_are_regular(tmp_path):
    result = run_demo(tmp_path, "--steps", "300", "--eval-every", "100", *FAST)
    assert result.returncode == 0, result.stderr
    steps = step_lines(result.stdout)
    assert [s for s, _ in steps] == list(range(10, 301, 10))
    first = sum(loss for _, loss in steps[:3]) / 3
    last = sum(loss for _, loss in steps[-3:]) / 3
    assert last < first * 0.85, (first, last)
    evals = eval_lines(result.stdout)
    assert [e[0] for e in evals] == [100, 200, 300]
    assert evals[-1][2] < evals[0][2]  # val loss
    assert 0.5 < evals[-1][3] <= 1.0  # val acc better than chance
    assert "done: step 300" in result.stdout


def test_checkpoint_is_valid_safetensors(tmp_path):
    result = run_demo(tmp_path, "--steps", "40", "--ckpt-every", "20", "--seed", "7", *FAST)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "ckpt" / "step_000040.safetensors"
    assert f"saved checkpoint {path}" in result.stdout
    header, metadata, data = parse_safetensors(path)
    assert metadata["format"] == "trainctl-demo"
    assert metadata["step"] == "40"
    assert metadata["seed"] == "7"
    for key in ("epoch", "train_loss", "val_loss", "lr"):
        assert math.isfinite(float(metadata[key]))
    assert all(isinstance(v, str) for v in metadata.values())
    expected = {f"{p}.{n}" for p in ("model", "optim.m") for n in ("w1", "b1", "w2", "b2")}
    assert set(header) == expected
    spans = []
    for name, info in header.items():
        assert info["dtype"] == "F32"
        start, stop = info["data_offsets"]
        assert stop - start == 4 * math.prod(info["shape"]), name
        spans.append((start, stop))
        values = struct.unpack(f"<{math.prod(info['shape'])}f", data[start:stop])
        assert all(math.isfinite(v) for v in values)
    spans.sort()
    assert spans[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # contiguous, no gaps
    assert spans[-1][1] == len(data)  # header + tensors == file size
    assert header["model.w1"]["shape"] == [16, 8]
    # Momentum buffers are real state, not zeros.
    m = header["optim.m.w1"]["data_offsets"]
    assert any(struct.unpack("<128f", data[m[0] : m[1]]))


def test_keep_prunes_old_checkpoints_and_leaves_no_tmp(tmp_path):
    result = run_demo(tmp_path, "--steps", "50", "--ckpt-every", "10", "--keep", "2", *FAST)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["step_000040.safetensors", "step_000050.safetensors"]


def test_checkpoint_dir_defaults_to_trainctl_env(tmp_path):
    env_dir = tmp_path / "from-env"
    result = subprocess.run(
        [sys.executable, str(DEMO), "--steps", "10", *FAST],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"TRAINCTL_CHECKPOINT_DIR": str(env_dir), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert (env_dir / "step_000010.safetensors").is_file()


def wait_for_line(path: Path, pattern: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text, re.M):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path}:\n{text}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_checkpoint_and_resume_continues(tmp_path, signum):
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(DEMO),
                "--steps",
                "100000",
                "--step-time",
                "0.01",
                "--ckpt-every",
                "100000",
                "--log-every",
                "5",
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            wait_for_line(log, r"^step 20/")
            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
    text = log.read_text()
    match = re.search(rf"^received {signum.name}, saved checkpoint (\S+)$", text, re.M)
    assert match, text
    saved = Path(match.group(1))
    stopped_at = int(re.search(r"step_(\d+)\.safetensors$", saved.name).group(1))
    assert stopped_at >= 20
    assert stopped_at >= max(s for s, _ in step_lines(text))
    _, metadata, _ = parse_safetensors(saved)
    assert metadata["step"] == str(stopped_at)
    assert not list((tmp_path / "ckpt").glob("*.tmp"))

    resumed = run_demo(
        tmp_path,
        "--steps",
        str(stopped_at + 30),
        "--resume",
        str(saved),
        *FAST[:2],
        "--log-every",
        "1",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {saved} at step {stopped_at}" in resumed.stdout
    steps = [s for s, _ in step_lines(resumed.stdout)]
    assert steps == list(range(stopped_at + 1, stopped_at + 31))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    """Weights, momentum, step and batch order all come back: same losses as without a break."""
    args = ["--steps", "40", "--ckpt-every", "20", "--step-time", "0", "--log-every", "1"]
    full = run_demo(tmp_path, *args)
    assert full.returncode == 0, full.stderr
    ckpt = tmp_path / "ckpt" / "step_000020.safetensors"
    resumed = run_demo(tmp_path, *args, "--resume", str(ckpt))
    assert resumed.returncode == 0, resumed.stderr
    expected = [(s, loss) for s, loss in step_lines(full.stdout) if s > 20]
    got = step_lines(resumed.stdout)
    assert [s for s, _ in got] == [s for s, _ in expected] == list(range(21, 41))
    # Float32 checkpoints: equal up to rounding, and far from a fresh start's losses.
    assert all(abs(a - b) < 1e-3 for (_, a), (_, b) in zip(got, expected, strict=True)), (
        got,
        expected,
    )


def test_fail_at_step_fails_once_and_resume_past_it_succeeds(tmp_path):
    failed = run_demo(
        tmp_path, "--steps", "40", "--ckpt-every", "10", "--fail-at-step", "20", *FAST
    )
    assert failed.returncode == 1
    assert "simulated failure at step 20" in failed.stderr
    assert max(s for s, _ in step_lines(failed.stdout)) == 20
    ckpt = tmp_path / "ckpt" / "step_000020.safetensors"
    assert ckpt.is_file()
    resumed = run_demo(
        tmp_path,
        "--steps",
        "40",
        "--ckpt-every",
        "10",
        "--fail-at-step",
        "20",
        "--resume",
        str(ckpt),
        *FAST,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [s for s, _ in step_lines(resumed.stdout)] == [30, 40]
    # Resumed from before the failing step, it reaches it again and fails again.
    early = tmp_path / "ckpt" / "step_000010.safetensors"
    again = run_demo(
        tmp_path, "--steps", "40", "--fail-at-step", "20", "--resume", str(early), *FAST
    )
    assert again.returncode == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "too short"),
        (struct.pack("<Q", 10**9) + b"{}", "does not fit"),
        (struct.pack("<Q", 4) + b"nope", "not valid JSON"),
    ],
)
def test_resume_from_garbage_is_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    result = run_demo(tmp_path, "--steps", "10", "--resume", str(bad), *FAST)
    assert result.returncode == 2
    assert f"cannot resume from {bad}" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
