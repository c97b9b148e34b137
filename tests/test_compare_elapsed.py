"""The compare's elapsed-time axis from when the runner saw each step (steps.jsonl): real
runner sessions launched with the CLI (a training that pauses between two fast stretches, a
run stopped and resumed), then `trainctl compare --json`; the file's format read and written
on its own (a torn last line, a damaged one, thinning, a remote runner's records merged)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_budget_runner import TRAIN

from trainctl_tui.core.models import Session, Status
from trainctl_tui.monitor import step_clock
from trainctl_tui.runner import step_times
from trainctl_tui.runner.step_times import StepTimes, merge_records, newest_records
from trainctl_tui.store import Store

PY = sys.executable
PAUSE = 1.5  # seconds the paced training is held at step 20, at the least

# Steps 1-20 at once, then held until the test says go, then 21-40 at once.
PACED = r"""
import os, sys, time
go = sys.argv[1]
for step in range(1, 41):
    if step == 21:
        while not os.path.exists(go):
            time.sleep(0.02)
    print("step %d/40 loss %.4f" % (step, 1.0 / step), flush=True)
"""


def launch(*args: str) -> str:
    result = run_cli("launch", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def folder_of(home: Path, session_id: str) -> Path:
    return home / "sessions" / session_id


def samples(folder: Path) -> list[dict]:
    path = folder / "steps.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def status_of(folder: Path) -> dict:
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def compare(*targets: str) -> dict:
    result = run_cli("compare", *targets, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def config(tmp_path):
    (tmp_path / "config.toml").write_text("[defaults]\nheartbeat_seconds = 0.2\n")


def test_a_run_at_two_speeds_is_placed_when_each_step_was_reached(trainctl_home, config,
                                                                   tmp_path):
    script, go = tmp_path / "paced.py", tmp_path / "go"
    script.write_text(PACED)
    session_id = launch("--name", "paced", "--", PY, str(script), str(go))
    folder = folder_of(trainctl_home, session_id)
    wait_for(lambda: any(s.get("step") == 20 for s in samples(folder)), "step 20 recorded")
    seen_at = time.time()  # step 20 was reached before this
    # Held at step 20 until a poll PAUSE seconds later has seen it still there.
    wait_for(lambda: ((status_of(folder).get("progress") or {}).get("at") or 0)
             > seen_at + PAUSE, "a poll after the pause")
    go.write_text("")
    wait_for(lambda: status_of(folder).get("state") == "succeeded", "the run's end")
    other = tmp_path / "other.log"
    other.write_text("step 1 loss 2.0\nstep 2 loss 1.0\n")

    data = compare(session_id, str(other))
    paced, log = data["runs"]
    assert paced["x"] == [float(step) for step in range(1, 41)]
    assert paced["elapsed_from"] == "runner" and paced["elapsed_note"] is None
    assert paced["gaps"] == []
    at = dict(zip(paced["x"], paced["x_elapsed"], strict=True))
    assert None not in at.values()  # from step 1: the start-up is not spread over it
    assert list(at.values()) == sorted(at.values())
    # The pause is between steps 20 and 21, not spread over the run as an average would be.
    assert at[21.0] - at[20.0] >= PAUSE
    assert at[21.0] - at[20.0] > 10 * paced["elapsed_seconds"] / 39
    # A log trainctl did not launch has no place on that axis, and says so.
    assert (log["x_elapsed"], log["elapsed_from"], log["gaps"]) == (None, None, [])

    # A damaged middle line: the file is not used, the run is placed at its average pace,
    # and the output says why.
    path = folder / "steps.jsonl"
    lines = path.read_text().splitlines(True)
    lines[2] = '{"t": 17\n'
    path.write_text("".join(lines))
    damaged = compare(session_id, str(other))["runs"][0]
    assert damaged["elapsed_from"] == "average pace"
    assert damaged["elapsed_note"] == "steps.jsonl line 3 is damaged: not used"
    span = damaged["elapsed_seconds"]
    assert damaged["x_elapsed"] == pytest.approx([span * i / 39 for i in range(40)], abs=1e-3)


def test_a_resumed_run_counts_the_time_its_runners_ran_and_shows_the_gap(
        trainctl_home, config, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    session_id = launch("--name", "resumed", "--checkpoint-dir", str(tmp_path / "ckpt"),
                        "--resume-template", "--resume {checkpoint}", "--",
                        PY, str(script), "60", "0.05")
    folder = folder_of(trainctl_home, session_id)
    wait_for(lambda: any((s.get("step") or 0) >= 15 for s in samples(folder)), "step 15")
    assert run_cli("stop", session_id).returncode == 0
    stopped_at = time.time()
    wait_for(lambda: time.time() > stopped_at + 2.0, "a gap without a runner")
    resumed = run_cli("resume", session_id)
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: status_of(folder).get("state") == "succeeded", "the run's end")

    records = samples(folder)
    runners = [r["runner"] for r in records if "runner" in r]
    ends = [r["end"] for r in records if "end" in r]
    assert len(runners) == 2 and len(ends) == 2
    other = tmp_path / "other.log"
    other.write_text("step 1 loss 2.0\n")
    run = compare(session_id, str(other))["runs"][0]
    assert run["elapsed_from"] == "runner"
    # The gap: where the first runner ended (in active seconds) and how long none ran.
    first_span = ends[0] - runners[0]
    assert run["gaps"] == [{"at_seconds": pytest.approx(first_span, abs=0.01),
                            "seconds": pytest.approx(runners[1] - ends[0], abs=0.01)}]
    assert run["gaps"][0]["seconds"] >= 2.0
    at = dict(zip(run["x"], run["x_elapsed"], strict=True))
    assert None not in at.values() and len(at) == 60
    # A step the runner saw is placed at that time, the gap left out after the resume.
    for record in records:
        if "step" in record and record["src"] != "start" and record["step"] in at:
            runner = next(r for r in reversed(runners) if r <= record["t"])
            active = record["t"] - runner + (first_span if runner == runners[1] else 0.0)
            if at[record["step"]] != pytest.approx(active, abs=0.01):
                # A step seen twice (still there at a later poll) is placed at the first.
                first = next(r["t"] for r in records if r.get("step") == record["step"])
                assert first < record["t"]
    resumed_from = json.loads((folder / "status.json").read_text())["attempts"][-1]
    step = int(Path(resumed_from["resumed_from"]).stem.split("_")[1])
    assert at[step + 1] >= first_span  # after the gap, which is not counted


# --------------------------------------------------------------------------- the file


def write(folder: Path, *lines: str) -> None:
    (folder / "steps.jsonl").write_text("".join(line + "\n" for line in lines))


def test_the_clock_interpolates_within_stretches_and_leaves_gaps_out(tmp_path):
    write(tmp_path,
          '{"runner":100}', '{"t":100,"step":0,"src":"start"}',
          '{"t":102,"step":0,"src":"start"}', '{"t":103,"step":10,"src":"log"}',
          '{"t":113,"step":10,"src":"log"}', '{"t":114,"step":20,"src":"log"}',
          '{"end":115}',
          '{"runner":200}', '{"t":201,"step":15,"src":"log"}', '{"t":203,"step":25,"src":"log"}')
    clock = step_clock.load(tmp_path)
    assert clock.gaps == [(15.0, 85.0)] and clock.active == 18.0
    assert clock.sources == {"start", "log"}
    # 0..10 between the last poll at 0 and step 10; 10..20 after the pause at 10.
    assert clock.place([0, 5, 10, 15, 20]) == [0.0, 2.5, 3.0, 13.5, 14.0]
    # The series counts again after a restart: the second runner's stretch, gap left out.
    assert clock.place([10, 20, 15, 20, 25, 30]) == [3.0, 14.0, 16.0, 17.0, 18.0, None]
    # Before a stretch's first sample, or past its last: no place.
    assert clock.place([12, 11]) == [13.2, None]
    write(tmp_path, '{"runner":100}', '{"t":101,"step":3,"src":"log"}')
    assert step_clock.load(tmp_path).place([1, 3, 4]) == [None, 1.0, None]


@pytest.mark.parametrize(("lines", "error"), [
    (['{"runner":1}', 'oops', '{"t":2,"step":1}'], "steps.jsonl line 2 is damaged"),
    (['{"t":2,"step":1}'], "steps.jsonl line 1: a sample before any runner started"),
    (['{"runner":1}', '{"t":5,"step":1}', '{"t":4,"step":2}'],
     "steps.jsonl line 3 is not a sample in time order"),
    (['{"runner":1}', '{"t":5,"step":"x"}'], "steps.jsonl line 2 is not a sample in time order"),
    (['{"runner":"soon"}'], "steps.jsonl line 1 has no time"),
    (['[1, 2]'], "steps.jsonl line 1 is damaged"),
])
def test_a_damaged_file_is_refused_with_the_line(tmp_path, lines, error):
    write(tmp_path, *lines)
    with pytest.raises(step_clock.Damaged) as raised:
        step_clock.load(tmp_path)
    assert str(raised.value) == error


def test_a_torn_last_line_is_not_read_and_is_cut_before_the_next_runner(tmp_path):
    (tmp_path / "steps.jsonl").write_text('{"runner":1}\n{"t":2,"step":4,"src":"log"}\n{"t":3,')
    assert step_clock.load(tmp_path).place([4]) == [1.0]
    writer = StepTimes(str(tmp_path))
    writer.runner_started(10.0)
    writer.attempt_started(10.0, None)
    writer.poll(11.0, 8, "log")
    assert (tmp_path / "steps.jsonl").read_text() == (
        '{"runner":1}\n{"t":2,"step":4,"src":"log"}\n{"runner":10.0}\n'
        '{"t":11.0,"step":8,"src":"log"}\n')
    assert step_clock.load(tmp_path).gaps == [(1.0, 8.0)]  # ran 1 s, none for 8
    assert step_clock.load(tmp_path / "absent") is None


def test_the_writer_keeps_the_file_small(tmp_path, monkeypatch):
    monkeypatch.setattr(step_times, "MAX_LINES", 100)
    monkeypatch.setattr(step_times, "KEEP_NEWEST", 20)
    writer = StepTimes(str(tmp_path))
    writer.runner_started(0.0)
    writer.attempt_started(0.0, 0)
    for step in range(1, 1001):
        writer.poll(float(step), step, "log")
    writer.runner_ended(1001.0)
    lines = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert len(lines) <= 101
    assert lines[0] == '{"runner":0.0}' and lines[-1] == '{"end":1001.0}'
    clock = step_clock.load(tmp_path)
    steps = clock.stretches[0].steps
    assert steps[-20:] == [float(s) for s in range(981, 1001)]  # the newest whole
    assert clock.place([500]) == [pytest.approx(500.0)]  # thinned, still in place
    assert not (tmp_path / "steps.jsonl.tmp").exists()


def test_a_remote_runners_records_are_merged_into_the_local_copy(tmp_path):
    remote, local = tmp_path / "remote", tmp_path / "local"
    remote.mkdir()
    local.mkdir()
    writer = StepTimes(str(remote))
    writer.runner_started(0.0)
    writer.attempt_started(0.0, 0)
    for step in range(1, 11):
        writer.poll(float(step), step, "log")
    assert merge_records(str(local), newest_records(str(remote), 5)) == 5
    assert merge_records(str(local), newest_records(str(remote), 5)) == 0  # nothing new
    for step in range(11, 14):
        writer.poll(float(step), step, "log")
    assert merge_records(str(local), newest_records(str(remote), 5)) == 3
    assert [r["step"] for r in newest_records(str(local), 100)] == list(range(6, 14))


def test_sessions_without_a_file_are_placed_at_their_average_pace_and_say_so(
        trainctl_home, tmp_path):
    folder = trainctl_home / "sessions" / "old"
    folder.mkdir(parents=True)
    (folder / "train.log").write_text("step 10 loss 2\nstep 20 loss 1\nstep 30 loss 0.5\n")
    with Store(trainctl_home / "trainctl.db") as store:
        store.insert(Session(
            id="old", name="old", provider="local", command=["python", "t.py"], cwd="/srv",
            session_dir=str(folder), status=Status.SUCCEEDED, created=1_790_000_000.0,
            started=1_790_000_000.0, ended=1_790_000_100.0, attempt=1, exit_code=0))
    other = tmp_path / "other.log"
    other.write_text("step 1 loss 2.0\n")
    run = compare("old", str(other))["runs"][0]
    assert run["x_elapsed"] == [0.0, 50.0, 100.0]
    assert (run["elapsed_from"], run["elapsed_note"]) == \
        ("average pace", "its runner recorded no steps")


def test_a_log_without_a_total_still_gives_its_steps(tmp_path):
    from trainctl_tui.runner.progress import LogProgress

    log = tmp_path / "train.log"
    log.write_text("")
    progress = LogProgress(str(log))
    with open(log, "a") as out:
        out.write("loading\nstep 10 loss 2.0\nstep 20 loss 1.5\nsaved\n")
    assert progress.poll(1.0) is None  # no total: no progress, no ETA
    assert progress.log_step() == 20
    with open(log, "a") as out:
        out.write("step 30/100 loss 1.0\n")
    assert progress.poll(2.0)["done"] == 30 and progress.log_step() == 30


def test_the_fast_path_places_as_the_point_by_point_one():
    """A rising series on one stretch (what the compare redraws each frame) takes a path
    without a call a point: the same places as walking point by point, plateaus and all."""
    import random

    for trial in range(200):
        rng = random.Random(trial)
        lines, t, step = [b'{"runner":0}'], 0.0, 0
        for _ in range(rng.randint(1, 30)):
            t += rng.random()
            step += rng.choice([0, 0, 1, 2, 5])
            lines.append(b'{"t":%.3f,"step":%d}' % (t, step))
        clock = step_clock.parse(lines)
        xs = sorted([rng.uniform(-1, step + 2) for _ in range(40)] + list(range(step + 2)))
        walked, index = [], 0
        for x in xs:
            found = clock.stretches[0].place(x, index)
            walked.append(None if found is None else found[0])
            index = found[1] if found is not None else index
        assert clock.place(xs) == pytest.approx(walked, abs=1e-9)
