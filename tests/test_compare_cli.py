"""`trainctl compare A B [C ...] [--metric NAME] [--json]`: sessions and logs side by side,
with figures computed by hand from the logs below, and one clear line for each bad input."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from sshd import sshd_server  # noqa: F401 - the fixture (a real sshd)
from test_metrics_cli import ssh_env  # noqa: F401 - the fixture

from trainctl_tui.core.models import Session, Status
from trainctl_tui.store import Store

RUN_A = """\
step 10 | loss 2.50 | lr 0.1
step 20 | loss 1.75 | lr 0.1
step 30 | loss 1.25 | lr 0.05
step 40 | loss 1.50 | lr 0.05
"""
RUN_B = """\
epoch 1 step 100 loss 3.00 val_loss 3.10
epoch 1 step 200 loss 1.00 val_loss 2.00
epoch 2 step 300 loss 1.00
epoch 2 step 400 loss 1.20 val_loss 1.90
"""
WIDE = {"COLUMNS": "100"}


@pytest.fixture
def runs(trainctl_home, tmp_path):
    """run_a.log (a log trainctl did not launch) and the session 'bert' (run B), which ran
    for 1h02m05s."""
    log_a = tmp_path / "run_a.log"
    log_a.write_text(RUN_A)
    folder = trainctl_home / "sessions" / "bert"
    folder.mkdir(parents=True)
    (folder / "train.log").write_text(RUN_B)
    with Store(trainctl_home / "trainctl.db") as store:
        session = store.insert(Session(
            id="", name="bert", provider="local", command=["python", "train.py"], cwd="/srv",
            session_dir=str(folder), status=Status.SUCCEEDED, created=1_790_000_000.0,
            started=1_790_000_000.0, ended=1_790_003_725.0, attempt=1, exit_code=0))
    return log_a, session


def test_the_table_of_a_log_and_a_session(runs):
    log_a, session = runs
    result = run_cli("compare", str(log_a), session.id, env=WIDE)
    assert result.returncode == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0] == "loss · 2 runs"
    assert lines[1].split() == ["RUN", "LAST", "MIN", "AT", "STEP", "STEPS", "ELAPSED", "COST"]
    # run A: last 1.5, min 1.25 at step 30, reached step 40; no clock, no cost
    assert lines[2].split() == ["…" + str(log_a)[-31:], "1.5", "1.25", "30", "40"]
    # run B: min 1.0 first at step 200 (again at 300), elapsed 1h02m; cost unknown: blank
    assert lines[3].split() == ["bert", "1.2", "1", "200", "400", "1h02m"]
    assert len(lines) == 4


def test_another_metric_and_every_point_as_json(runs):
    log_a, session = runs
    result = run_cli("compare", str(log_a), "bert", "--metric", "val_loss", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["metric"] == "val_loss" and data["version"] == 1
    first, second = data["runs"]
    assert first == {"run": str(log_a), "log": str(log_a), "session": None, "last": None,
                     "min": None, "min_step": None, "steps": None, "points": 0,
                     "elapsed_seconds": None, "cost": None, "x": [], "y": [],
                     "x_elapsed": None, "elapsed_from": None, "elapsed_note": None, "gaps": []}
    assert second["run"] == "bert" and second["session"] == session.id
    assert second["x"] == [100.0, 200.0, 400.0] and second["y"] == [3.1, 2.0, 1.9]
    assert (second["last"], second["min"], second["min_step"], second["steps"]) == \
        (1.9, 1.9, 400.0, 400.0)
    assert second["elapsed_seconds"] == 3725.0 and second["cost"] is None
    # No steps.jsonl (its runner kept none): at its average pace over 100..400, said so.
    assert second["x_elapsed"] == pytest.approx([0.0, 3725.0 / 3, 3725.0])
    assert (second["elapsed_from"], second["elapsed_note"]) == \
        ("average pace", "its runner recorded no steps")

    loss = json.loads(run_cli("compare", str(log_a), "bert", "--json").stdout)
    assert loss["metric"] == "loss"  # the default: train loss
    assert loss["runs"][0]["x"] == [10.0, 20.0, 30.0, 40.0]
    assert loss["runs"][0]["y"] == [2.5, 1.75, 1.25, 1.5]


def test_two_sessions_of_one_name_are_told_apart_by_id(runs, trainctl_home):
    log_a, session = runs
    result = run_cli("compare", session.id, session.id, "--json")
    labels = [run["run"] for run in json.loads(result.stdout)["runs"]]
    assert labels == [f"bert ({session.id})"] * 2


@pytest.mark.parametrize(("args", "error"), [
    (["{a}"], "compare needs at least two runs (sessions or logs), got 1"),
    (["{a}", "nosuchrun"], "no session 'nosuchrun' (see trainctl sessions)"),
    (["{a}", "./missing.log"], "no such log file: missing.log"),
    (["{a}", "{tmp}"], "{tmp} is a directory; give the log file inside it"),
    (["{a}", "bert", "--metric", "accuracy"],
     "no run has the series 'accuracy'; they have: loss, val_loss, lr"),
    (["{prose}", "{prose}"], "none of the runs has printed a metric yet (nothing to compare)"),
])
def test_bad_input_is_one_line(runs, tmp_path, args, error):
    log_a, _ = runs
    prose = tmp_path / "prose.log"
    prose.write_text("loading the data\nstarting\n")
    fill = {"a": str(log_a), "tmp": str(tmp_path), "prose": str(prose)}
    result = run_cli("compare", *[arg.format(**fill) for arg in args])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == error.format(**fill) + "\n"


def test_a_log_on_an_ssh_host(ssh_env, runs, tmp_path):  # noqa: F811 - the fixture
    remote = tmp_path / "on host" / "train.log"
    remote.parent.mkdir()
    remote.write_text("step 5 loss 0.75\nstep 6 loss 0.5\nstep 7 loss 0.625\n")
    url = f"ssh://box{remote}"
    result = run_cli("compare", url, "bert", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout)["runs"][0]
    assert (first["run"], first["log"], first["last"], first["min"], first["min_step"]) == \
        (url, url, 0.625, 0.5, 6.0)
    missing = run_cli("compare", "ssh://box/nope/train.log", "bert", timeout=120)
    assert missing.returncode == 2
    assert missing.stderr == "ssh box: no such file /nope/train.log\n"
