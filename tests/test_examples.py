"""The recipes of docs/EXAMPLES.md and docs/resumable-training.md, run for real under trainctl
with the real libraries (CPU): each is launched, stopped gracefully mid-run (it must save),
resumed by `trainctl resume` from the checkpoint it saved, and run to its end; its loss reaches
`trainctl metrics`. The plain loop is also SIGKILLed and restarted by the runner, and must end
with exactly the weights of a run that was never interrupted."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from sshd import missing
from test_cli import session_json, status_file, wait_for

# Real libraries training for real: left out of `just test-fast` like the real components.
pytestmark = [pytest.mark.timeout(600), pytest.mark.real]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


def need(library: str) -> None:
    """The recipes' library is in the test extra; without it the test skips (fails in CI)."""
    if importlib.util.find_spec(library) is None:  # not imported: keras wants KERAS_BACKEND
        missing(f"{library} is not installed (pip install -e '.[test]')")


def launch(name: str, ckpt: Path, *command: str, env: tuple[str, ...] = (),
           restarts: int = 0) -> str:
    args = ["launch", "--name", name, "--checkpoint-dir", str(ckpt), "--max-restarts",
            str(restarts), "--resume-template", "--resume {checkpoint}"]
    for pair in env:
        args += ["--env", pair]
    result = run_cli(*args, "--", sys.executable, *command, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def ended(session_id: str, timeout: float = 480) -> dict:
    final = {"succeeded", "failed", "stopped", "lost", "interrupted"}
    return wait_for(lambda: (lambda s: s if s["status"] in final else None)(
        session_json(session_id)), timeout=timeout, every=0.5)


def log(home: Path, session_id: str) -> str:
    return (home / "sessions" / session_id / "train.log").read_text(errors="replace")


def stop_after(home: Path, session_id: str, first_checkpoint) -> None:
    """Stop once the first periodic checkpoint exists (the run is under way), gracefully; a
    run that ended before it saved fails the test with its log."""
    wait_for(lambda: first_checkpoint() or session_json(session_id)["status"] not in
             {"pending", "running"}, timeout=300, every=0.2)
    assert first_checkpoint(), log(home, session_id)[-3000:]
    result = run_cli("stop", session_id, timeout=120)
    assert result.returncode == 0, result.stderr
    assert ended(session_id)["status"] == "stopped", log(home, session_id)


def resume_and_stop_again(home: Path, session_id: str, progressed) -> dict:
    """`trainctl resume`, wait until the new attempt has trained past where it resumed
    (`progressed(log)`), then stop it gracefully again: the runs are long, so neither attempt
    can end on its own before the test stops it, however fast or slow the machine is."""
    result = run_cli("resume", session_id, timeout=120)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: progressed(log(home, session_id)), timeout=300, every=0.5)
    result = run_cli("stop", session_id, timeout=120)
    assert result.returncode == 0, result.stderr
    assert ended(session_id)["status"] == "stopped", log(home, session_id)[-3000:]
    return status_file(home, session_id)


def loss_points(session_id: str, name: str = "loss") -> list[float]:
    """The x values of the series `name` that `trainctl metrics --json` finds in the log."""
    result = run_cli("metrics", session_id, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    series = json.loads(result.stdout)["series"]
    assert name in series, f"no {name} series in {sorted(series)}"
    return series[name]["x"]


def test_the_plain_pytorch_loop_stops_saves_and_resumes_where_it_was(trainctl_home, tmp_path):
    need("torch")
    ckpt = tmp_path / "ckpt"
    script = str(EXAMPLES / "resumable" / "train.py")
    session_id = launch("plain", ckpt, script, "--steps", "1000000", "--save-every", "50")
    stop_after(trainctl_home, session_id, lambda: list(ckpt.glob("step_*.pt")))
    saved = re.search(r"got signal 15: saved step (\d+), exiting", log(trainctl_home, session_id))
    assert saved, log(trainctl_home, session_id)[-2000:]
    step = int(saved.group(1))
    checkpoint = ckpt / f"step_{step:06d}.pt"
    assert checkpoint.is_file()
    status = resume_and_stop_again(trainctl_home, session_id,
                                   lambda text: f"step {step + 100}/1000000 " in text)
    assert status["attempts"][-1]["resumed_from"] == str(checkpoint)
    text = log(trainctl_home, session_id)
    assert f"resumed from {checkpoint} at step {step}" in text
    assert text.count(f"step {step + 1}/1000000 ") == 1  # continued, not started over
    again = int(re.findall(r"got signal 15: saved step (\d+), exiting", text)[-1])
    assert again > step + 100 and (ckpt / f"step_{again:06d}.pt").is_file()
    assert loss_points(session_id)[-1] >= again


def test_the_plain_loop_killed_and_restarted_ends_with_the_uninterrupted_weights(
        trainctl_home, tmp_path):
    need("torch")
    script = str(EXAMPLES / "resumable" / "train.py")
    clean = subprocess.run([sys.executable, script, "--steps", "600", "--checkpoint-dir",
                            str(tmp_path / "clean")], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    expected = re.search(r"checksum (\S+)", clean.stdout).group(1)

    ckpt = tmp_path / "ckpt"
    session_id = launch("killed", ckpt, script, "--steps", "600", "--save-every", "50",
                        restarts=2)
    wait_for(lambda: list(ckpt.glob("step_*.pt")), timeout=300)
    child = wait_for(lambda: status_file(trainctl_home, session_id).get("child_pid"))
    os.kill(child, signal.SIGKILL)  # a crash, not a stop: the runner restarts it
    session = ended(session_id)
    text = log(trainctl_home, session_id)
    assert session["status"] == "succeeded", text[-2000:]
    attempts = status_file(trainctl_home, session_id)["attempts"]
    assert len(attempts) == 2 and attempts[0]["signal"] == signal.SIGKILL
    assert re.search(r"resumed from \S+step_\d{6}\.pt at step \d+", text)
    assert f"checksum {expected}" in text


def test_hf_trainer_saves_on_sigterm_and_resumes_from_checkpoint(trainctl_home, tmp_path):
    need("transformers")
    out = tmp_path / "out"
    session_id = launch("hf", out, str(EXAMPLES / "hf" / "train.py"), "--max-steps", "1000000",
                        "--output-dir", str(out))
    stop_after(trainctl_home, session_id, lambda: (out / "checkpoint-40").is_dir())
    stopped_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert stopped_at >= 40
    status = resume_and_stop_again(
        trainctl_home, session_id,
        lambda text: any(int(p.name.split("-")[1]) > stopped_at for p in out.glob("checkpoint-*")))
    assert status["attempts"][-1]["resumed_from"] == str(out / f"checkpoint-{stopped_at}")
    again = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    state = json.loads((out / f"checkpoint-{again}" / "trainer_state.json").read_text())
    assert again > stopped_at and state["global_step"] == again
    assert loss_points(session_id)


def test_lightning_saves_on_sigterm_and_resumes_with_ckpt_path(trainctl_home, tmp_path):
    need("lightning")
    ckpt = tmp_path / "ckpt"
    session_id = launch("lightning", ckpt, str(EXAMPLES / "lightning" / "train.py"),
                        "--max-steps", "1000000", "--checkpoint-dir", str(ckpt))

    def steps() -> list[int]:
        return sorted(int(p.stem.split("=")[1]) for p in ckpt.glob("step=*.ckpt"))

    stop_after(trainctl_home, session_id, lambda: (ckpt / "step=100.ckpt").is_file())
    stopped_at = steps()[-1]
    status = resume_and_stop_again(trainctl_home, session_id,
                                   lambda text: steps()[-1] >= stopped_at + 100)
    assert status["attempts"][-1]["resumed_from"] == str(ckpt / f"step={stopped_at}.ckpt")
    text = log(trainctl_home, session_id)
    assert "Restoring states from the checkpoint path" in text
    assert steps()[-1] > stopped_at + 100  # the second stop saved too
    assert loss_points(session_id)


def test_keras_stops_at_the_epochs_end_and_resumes_at_the_next_epoch(trainctl_home, tmp_path):
    need("keras")
    ckpt = tmp_path / "ckpt"
    session_id = launch("keras", ckpt, str(EXAMPLES / "keras" / "train.py"), "--epochs",
                        "100000", "--checkpoint-dir", str(ckpt), env=("KERAS_BACKEND=torch",))

    def epochs() -> list[int]:
        return sorted(int(p.name.split(".")[1]) for p in ckpt.glob("model.*.keras"))

    stop_after(trainctl_home, session_id, lambda: (ckpt / "model.01.keras").is_file())
    stopped_at = epochs()[-1]
    status = resume_and_stop_again(trainctl_home, session_id,
                                   lambda text: epochs()[-1] >= stopped_at + 2)
    assert status["attempts"][-1]["resumed_from"] == str(ckpt / f"model.{stopped_at:02d}.keras")
    text = log(trainctl_home, session_id)
    assert text.count("Epoch 1/100000") == 1  # the second attempt did not start over
    assert text.count(f"Epoch {stopped_at + 1}/100000") == 1
    assert loss_points(session_id, "val_loss")
