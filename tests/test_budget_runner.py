"""The budget guard and the progress meter in the runner, with real runner processes and a
real training process on a tiny budget: the price makes it reach the limit in seconds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from test_runner import launch, session, trainctl_lines, wait_state, wait_status  # noqa: F401

from trainctl_tui.runner.progress import LogProgress, ProgressScanner, Rate

PY = sys.executable
FIXTURES = Path(__file__).parent / "fixtures" / "logs"

# Prints `step N/TOTAL`, saves a checkpoint when told to stop (SIGTERM), resumes from one.
TRAIN = r"""
import os, pickle, signal, sys, time
total, pause = int(sys.argv[1]), float(sys.argv[2])
start = 0
if "--resume" in sys.argv:  # a checkpoint is a pickle of the step: sound to the inspector
    start = pickle.load(open(sys.argv[sys.argv.index("--resume") + 1], "rb"))
    print("resumed from step %d" % start, flush=True)
ckpt = os.environ.get("TRAINCTL_CHECKPOINT_DIR", "ckpt")
os.makedirs(ckpt, exist_ok=True)
step = start
def on_term(*_):
    with open(os.path.join(ckpt, "step_%06d.pt" % step), "wb") as fh:
        pickle.dump(step, fh, protocol=2)
    print("got SIGTERM at step %d, saved checkpoint" % step, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
for step in range(start + 1, total + 1):
    print("step %d/%d loss %.4f" % (step, total, 1.0 / step), flush=True)
    time.sleep(pause)
"""


@pytest.fixture
def train(tmp_path) -> list[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return [PY, str(script)]


# --------------------------------------------------------------------------- progress


def scan(name: str, block: int = 4096):
    """Every distinct progress of a real library's log, fed in blocks as polls read it."""
    data = (FIXTURES / name).read_bytes()
    scanner, seen = ProgressScanner(), []
    for start in range(0, len(data), block):
        found = scanner.feed(data[start:start + block])
        if found is not None and (not seen or seen[-1] != found.as_dict()):
            seen.append(found.as_dict())
    return seen


@pytest.mark.parametrize("name, total, source", [
    ("hf_trainer.log", 48, "bar"),  # HF Trainer's tqdm bar counts global steps
    ("tqdm_prints.log", 60, "bar"),
    ("lightning_rich.log", 96, "lightning"),  # Epoch 0/3 .. 3/3 of 24 batches
    ("lightning_rich_steps.log", 30, "lightning"),
    ("keras.log", 192, "keras"),  # Epoch N/6 of 32 batches
    ("keras2.log", 1600, "keras"),
    ("nanogpt.log", 200, "setting"),  # `Overriding: max_iters = 200`, then iter N lines
    ("demo.log", 300, "log"),  # step 10/300
])
def test_progress_of_real_logs(name, total, source):
    seen = scan(name)
    assert seen, f"no progress in {name}"
    assert all(p["total"] == total and p["unit"] == "step" for p in seen)
    assert seen[-1]["source"] == source
    assert seen[-1]["done"] == total  # they all ran to the end
    assert [p["done"] for p in seen] == sorted(p["done"] for p in seen)


def test_hf_trainer_total_from_its_banner_and_a_resume_is_not_speed():
    """Transformers at INFO verbosity, max_steps=40, a checkpoint at 20, a second run resumed
    from it (tests/fixtures/make_logs/make_hf_trainer_resume.py): its bar goes 0/40, then
    22/40 at once; the 20 steps of the checkpoint are no speed."""
    data = (FIXTURES / "hf_trainer_resume.log").read_bytes()
    first, resumed = data.split(b"--- resuming from checkpoint-20 ---")
    scanner = ProgressScanner()
    scanner.feed(first.split(b"  0%")[0])  # the banner, before any bar
    assert scanner.setting_total == 40
    assert scanner.feed(first).as_dict() == {"done": 40, "total": 40, "unit": "step",
                                             "source": "bar"}  # not `Writing model shards 1/1`
    # the resumed run, read a poll a second, each poll ending at one of its logged dicts
    scanner, rate = ProgressScanner(), Rate()
    polls = resumed.split(b"{'loss'")
    for second, block in enumerate(polls):
        found = scanner.feed(block if second == 0 else b"{'loss'" + block)
        rate.observe(float(second), found.done)
    assert [done for _, done in rate.samples] == [22, 25, 30, 35, 40]
    assert rate.seconds_per_step() == pytest.approx(0.2)  # 5 steps a second, not 22


def test_trainer_state_json_gives_the_total(tmp_path):
    import json

    from trainctl_tui.runner.progress import trainer_state_max_steps

    state = json.loads((FIXTURES / "hf_trainer_resume.json").read_text())
    checkpoint = tmp_path / "checkpoint-20"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(
        json.dumps(state["checkpoint_trainer_state"]))
    assert trainer_state_max_steps(str(checkpoint)) == 40
    log = tmp_path / "train.log"
    log.write_text("")
    progress = LogProgress(str(log), str(checkpoint))
    log.write_text("step 21 loss 0.69\n")  # a print of the step, no total of its own
    assert progress.poll(1.0)["total"] == 40
    assert trainer_state_max_steps(str(tmp_path)) is None


@pytest.mark.parametrize("name", ["plain_torch.log", "deepspeed.log", "lightning_tqdm.log",
                                  "lightning_tqdm_steps.log"])
def test_no_total_no_progress(name):
    # Lightning's tqdm bar counts one epoch's batches; max_epochs is printed only at the end.
    assert scan(name) == []


def test_keras_without_a_bar_counts_epochs():
    seen = scan("keras_pipe.log")
    assert seen[-1] == {"done": 5, "total": 6, "unit": "epoch", "source": "keras"}


def test_eval_bars_are_not_the_runs():
    scanner = ProgressScanner()
    scanner.feed(b" 40%|####      | 40/100 [00:04<00:06, 10.0it/s]\n")
    found = scanner.feed(b"Validation DataLoader 0:  50%|#####     | 4/8 [00:00<00:00]\r"
                         b"Sanity Checking: 1/2 [00:00<00:00]\n")
    assert (found.done, found.total) == (40, 100)


def test_rate_is_the_median_of_this_attempts_intervals():
    rate = Rate()
    for now, done in [(100.0, 1000), (101.0, 1010), (102.0, 1020), (110.0, 1030), (111.0, 1040)]:
        rate.observe(now, done)
    # one slow interval (a checkpoint save) does not move the median; the resumed 1000 steps
    # are not speed: nothing before this attempt's first observation counts
    assert rate.seconds_per_step() == pytest.approx(0.1)
    rate.observe(112.0, 5)  # a new bar counts from 0 again
    assert rate.seconds_per_step() is None


def test_log_progress_reads_only_this_attempts_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("step 1990/2000 loss 0.1\n")  # the attempt before
    progress = LogProgress(str(log))
    assert progress.poll(10.0) is None
    with open(log, "a") as fh:
        fh.write("step 1000/2000 loss 0.3\n")
    assert progress.poll(10.0)["done"] == 1000
    with open(log, "a") as fh:
        fh.write("step 1001/2000 loss 0.3\nstep 1002/2000 loss 0.3\n")
    found = progress.poll(11.0)
    assert found["done"] == 1002 and found["seconds_per_step"] == pytest.approx(0.5)
    assert found["eta_seconds"] == pytest.approx(998 * 0.5)


# --------------------------------------------------------------------------- budget guard


def test_budget_reached_stops_gracefully_after_a_warning(session, train):  # noqa: F811
    # $3600/h is $1 a second: a $5.50 budget lasts 5 s of a run that would take 100 s
    folder = session(train + ["1000", "0.1"], price_per_hour=3600.0, budget=5.5,
                     spent_before=0.5, checkpoint_dir="ckpt")
    launch(folder)
    running = wait_status(folder, lambda s: (s.get("progress") or {}).get("eta_seconds"))
    progress = running["progress"]
    assert progress["total"] == 1000 and progress["unit"] == "step"
    assert progress["attempt"] == 1 and progress["seconds_per_step"] > 0
    final = wait_state(folder, "stopped", "failed", "succeeded")
    assert final["state"] == "stopped"
    assert re.fullmatch(r"budget reached \(\$5\.\d\d of \$5\.50\)", final["reason"])
    cost = final["cost"]
    assert cost["price_per_hour"] == 3600.0 and cost["budget"] == 5.5
    assert 5.5 <= cost["spent"] < 6.5 and cost["reached"] == final["reason"]
    assert set(cost["warned"]) == {"budget"}
    log = (folder / "train.log").read_text()
    assert re.search(r"got SIGTERM at step \d+, saved checkpoint", log)
    step = int(re.search(r"got SIGTERM at step (\d+)", log).group(1))
    assert (folder.parent / "ckpt" / f"step_{step:06d}.pt").exists()
    marks = trainctl_lines(folder)
    assert any(re.fullmatch(r"\[trainctl\] budget: \$\d\.\d\d of \$5\.50 used \((9\d|100)%\)", m)
               for m in marks)
    assert marks[-1] == f"[trainctl] session stopped: {final['reason']}"


def test_max_hours_reached(session, train, tmp_path):  # noqa: F811
    marker = tmp_path / "machine-stopped"
    folder = session(train + ["1000", "0.1"], max_hours=1.5 / 3600, checkpoint_dir="ckpt",
                     budget_stop_command=[PY, "-c", f"open({str(marker)!r}, 'w')"])
    launch(folder)
    final = wait_state(folder, "stopped", "failed", "succeeded")
    assert final["reason"] == "max hours reached (2s of 2s)"
    assert final["cost"]["spent"] is None  # no price: no cost, never a made-up $0
    assert "got SIGTERM" in (folder / "train.log").read_text()
    # the stop's record (until then the final status says it is pending)
    stop = wait_status(folder, lambda s: (s.get("budget_stop") or {}).get("at"))["budget_stop"]
    assert stop["exit_code"] == 0 and marker.exists()


def test_a_bad_budget_in_the_spec_is_one_line(session, train):  # noqa: F811
    import subprocess

    from runner_names import runner_zipapp

    folder = session(train + ["10", "0.1"], budget="abc")
    result = subprocess.run([PY, str(runner_zipapp()), str(folder)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"{folder}/spec.json: 'budget' must be a number")


def test_a_runner_started_again_counts_on_from_the_one_before(session, train):  # noqa: F811
    """A Slurm requeue starts the runner again from the same spec: the spending of the
    runner before it (its status.json) is not forgotten."""
    from test_runner import run_foreground

    folder = session(train + ["3", "0.01"], price_per_hour=3600.0, budget=100.0)
    run_foreground(folder)
    first = wait_state(folder, "succeeded")["cost"]["spent"]
    assert first > 0
    run_foreground(folder)  # the same folder, the same spec: a requeue
    again = wait_state(folder, "succeeded")["cost"]
    assert again["spent_before"] == first and again["spent"] > first
