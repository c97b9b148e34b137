"""Budgets, ETA and cost through the CLI, as a user runs them: real runners and trainings on
this machine, priced by `[local] price_per_hour` so a budget is reached in seconds."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from sshd import sshd_server  # noqa: F401 - the fixture
from test_budget_runner import TRAIN

PY = sys.executable
ACTIVE = ("pending", "running", "stopping")


def write_config(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)


@pytest.fixture
def train(tmp_path) -> list[str]:
    script = tmp_path / "work" / "train.py"
    script.write_text(TRAIN)
    return ["--", PY, str(script)]


def launch(*args: str) -> str:
    result = run_cli("launch", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def session_json(session_id: str) -> dict:
    result = run_cli("sessions", "--json", "--all")
    assert result.returncode == 0, result.stderr
    return next(s for s in json.loads(result.stdout)["sessions"] if s["id"] == session_id)


def wait_session(session_id: str, predicate, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        info = session_json(session_id)
        if predicate(info):
            return info
        time.sleep(0.3)
    raise AssertionError(f"condition not met in {timeout}s: {info}")


def no_sessions() -> bool:
    return json.loads(run_cli("sessions", "--json", "--all").stdout)["sessions"] == []


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--budget", "-3"], "--budget takes dollars, a number above 0 (e.g. --budget 25), not '-3'"),
    (["--budget", "abc"],
     "--budget takes dollars, a number above 0 (e.g. --budget 25), not 'abc'"),
    (["--budget", "nan"],
     "--budget takes dollars, a number above 0 (e.g. --budget 25), not 'nan'"),
    (["--max-hours", "0"],
     "--max-hours takes hours, a number above 0 (e.g. --max-hours 12), not '0'"),
    (["--no-budget", "--budget", "3"], "--no-budget cannot go with --budget or --max-hours"),
    # no price declared for this machine: a budget cannot be kept
    (["--budget", "25"], "--budget needs what this machine costs per hour, which is not known "
                         "(declare price_per_hour in [local]); or use --max-hours"),
])
def test_bad_budget_input_is_one_line_and_stores_nothing(trainctl_home, args, message):
    result = run_cli("launch", *args, "--", "true")
    assert result.returncode == 2
    assert result.stderr == message + "\n"
    assert no_sessions()


def test_a_bad_price_in_the_config_is_refused(trainctl_home, tmp_path):
    write_config(tmp_path, "[local]\nprice_per_hour = -1\n")
    result = run_cli("launch", "--", "true")
    assert result.returncode == 2
    assert "local.price_per_hour" in result.stderr and len(result.stderr.splitlines()) == 1
    assert no_sessions()


# --------------------------------------------------------------------------- the guard


def test_budget_stops_the_run_shows_eta_and_cost_and_resume_asks_for_a_new_one(
        trainctl_home, tmp_path, train):
    # $3600/h = $1 a second: the $8 budget lasts about 8 s of a 100 s run
    write_config(tmp_path, "[defaults]\nheartbeat_seconds = 0.5\n[local]\nprice_per_hour = 3600\n")
    session_id = launch("--budget", "8", "--checkpoint-dir", "ckpt",
                        "--resume-template", "--resume {checkpoint}", *train, "1000", "0.1")
    running = wait_session(session_id, lambda s: s.get("eta_seconds"))
    assert running["progress"]["total"] == 1000 and running["budget"] == 8.0
    assert running["price_per_hour"] == 3600.0
    assert running["cost_to_finish"] == pytest.approx(running["eta_seconds"], rel=0.01)

    once = run_cli("--once", env={"COLUMNS": "160"})
    row = next(line for line in once.stdout.splitlines() if session_id in line)
    assert re.search(r" \d+m\d\ds +\$\d\.\d\d\b", row), row  # ETA, then COST
    alerts = json.loads(run_cli("--once", "--json").stdout)["alerts"]
    [projected] = [a for a in alerts if a["kind"] == "projected"]
    assert re.fullmatch(r"would cost \$\d+\.\d\d to finish, over the \$8\.00 budget "
                        r"\(the run stops at the budget\)", projected["message"])

    ended = wait_session(session_id, lambda s: s["status"] not in ACTIVE)
    assert ended["status"] == "stopped"
    assert re.fullmatch(r"budget reached \(\$8\.\d\d of \$8\.00\)", ended["detail"])
    assert ended["budget_reached"] == ended["detail"]
    assert 8.0 <= ended["cost_so_far"] < 9.0 and ended["eta_seconds"] is None
    log = (trainctl_home / "sessions" / session_id / "train.log").read_text()
    assert re.search(r"got SIGTERM at step \d+, saved checkpoint", log)

    once = run_cli("--once", "--json")
    alerts = {a["kind"]: a for a in json.loads(once.stdout)["alerts"]
              if a["session_id"] == session_id}
    assert alerts["limit"]["message"] == f"stopped: {ended['detail']}"

    result = run_cli("resume", session_id)
    assert result.returncode == 2
    assert result.stderr == (f"session {session_id} was stopped: {ended['detail']}; resume it "
                             "with a new --budget USD, or with --no-budget\n")
    result = run_cli("resume", session_id, "--budget", "3")
    assert result.returncode == 2
    assert re.fullmatch(rf"--budget 3 is not more than the \$8\.\d\d session {session_id} "
                        r"has cost already\n", result.stderr)
    result = run_cli("resume", session_id, "--budget", "abc")
    assert result.returncode == 2 and result.stderr == (
        "--budget takes dollars, a number above 0 (e.g. --budget 25), not 'abc'\n")
    spec_file = trainctl_home / "sessions" / session_id / "spec.json"
    assert json.loads(spec_file.read_text())["budget"] == 8.0  # the refusals changed nothing
    spent = ended["cost_so_far"]
    result = run_cli("resume", session_id, "--budget", "11")
    assert result.returncode == 0, result.stderr
    resumed = wait_session(session_id, lambda s: s["status"] not in ACTIVE)
    assert resumed["status"] == "stopped" and resumed["attempt"] == 2
    assert re.fullmatch(r"budget reached \(\$11\.\d\d of \$11\.00\)", resumed["detail"])
    # the second runner counted on from the first one's spending
    assert resumed["cost_so_far"] >= 11.0
    spec = json.loads((trainctl_home / "sessions" / session_id / "spec.json").read_text())
    assert spec["spent_before"] == pytest.approx(spent, abs=0.05)
    second = (trainctl_home / "sessions" / session_id / "train.log").read_text()
    assert re.search(r"\[trainctl\] attempt 2/\d+ resuming from .*step_\d+\.pt", second)
    assert "resumed from step" in second


def test_max_hours_from_the_defaults_and_no_budget_overrides_them(trainctl_home, tmp_path, train):
    write_config(tmp_path, f"[defaults]\nmax_hours = {2 / 3600}\n")
    session_id = launch(*train, "1000", "0.1")
    ended = wait_session(session_id, lambda s: s["status"] not in ACTIVE)
    assert ended["detail"] == "max hours reached (2s of 2s)"
    assert ended["cost_so_far"] is None and ended["price_per_hour"] is None  # no price, no $0
    free = launch("--no-budget", *train, "3", "0.01")
    done = wait_session(free, lambda s: s["status"] not in ACTIVE)
    assert done["status"] == "succeeded" and done["max_hours"] is None
    assert done["progress"]["done"] == 3 and done["progress"]["total"] == 3

    result = run_cli("resume", session_id)
    assert result.returncode == 2
    assert result.stderr.endswith("resume it with a new --max-hours H, or with --no-budget\n")


# --------------------------------------------------------------------------- on an SSH host


@pytest.fixture
def box(sshd_server, tmp_path, monkeypatch):  # noqa: F811 - pytest fixture injection
    workdir = tmp_path / "remote work"
    write_config(tmp_path, "[defaults]\nheartbeat_seconds = 0.5\n"
                 f"[ssh.hosts.box]\nhost = \"{sshd_server.alias}\"\n"
                 f"workdir = {json.dumps(str(workdir))}\npython = \"/usr/bin/python3\"\n"
                 "price_per_hour = 3600\n")
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    return workdir


def test_the_guard_runs_on_the_host(box, trainctl_home, tmp_path, train):
    ckpt = tmp_path / "ckpt on host"
    session_id = launch("--provider", "ssh:box", "--budget", "6", "--checkpoint-dir",
                        str(ckpt), *train, "1000", "0.1")
    running = wait_session(session_id, lambda s: s.get("eta_seconds"))
    # the host's runner's figures, mirrored into the session folder by a refresh
    assert running["progress"]["total"] == 1000 and running["price_per_hour"] == 3600.0
    ended = wait_session(session_id, lambda s: s["status"] not in ACTIVE)
    assert ended["status"] == "stopped"
    assert re.fullmatch(r"budget reached \(\$6\.\d\d of \$6\.00\)", ended["detail"])
    remote = (box / "sessions" / session_id / "train.log").read_text()
    step = int(re.search(r"got SIGTERM at step (\d+), saved checkpoint", remote).group(1))
    assert (ckpt / f"step_{step:06d}.pt").exists()
    assert f"[trainctl] session stopped: {ended['detail']}" in remote
    assert ended["cost_so_far"] >= 6.0


# --------------------------------------------------------------------------- Slurm's price


def test_a_slurm_jobs_price_is_per_gpu_hour_x_gpus_x_nodes():
    from trainctl_tui.backends.slurm.price import job_price
    from trainctl_tui.backends.slurm.settings import SlurmCluster

    cluster = SlurmCluster(workdir="/scratch", price_per_gpu_hour=2.5, gpus_per_node=4)
    assert job_price(cluster, {}) == 10.0
    assert job_price(cluster, {"gpus_per_node": 2, "nodes": 3}) == 15.0
    assert job_price(cluster.model_copy(update={"gpus_per_node": None, "gres": "gpu:a100:8"}),
                     {}) == 20.0
    assert job_price(cluster.model_copy(update={"gpus_per_node": None}), {}) is None  # no GPU
    assert job_price(cluster.model_copy(update={"price_per_gpu_hour": None}), {}) is None


# --------------------------------------------------------------------------- the app's figures


def folder_session(tmp_path: Path, status: dict, spec: dict | None = None, **fields):
    from trainctl_tui.core.models import Session, Status

    folder = tmp_path / "s1"
    folder.mkdir()
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "spec.json").write_text(json.dumps(spec or {"command": ["x"]}))
    fields.setdefault("status", Status.RUNNING)
    return Session(id="s1", name="run", provider="aws:i-1", command=["x"], cwd="/",
                   session_dir=str(folder), **fields)


def test_cost_so_far_carries_an_interrupted_machines_cost(tmp_path):
    from trainctl_tui.app.costs import carried_spending
    from trainctl_tui.core import interruptions

    session = folder_session(tmp_path, {"started": 1000.0, "cost": {
        "spent": 1.25, "spent_before": 0.5, "hours": 2.0, "price_per_hour": 1.0}})
    assert carried_spending(session) == (1.25, 2.0)
    # the machine was taken; it had cost $2.00 since it booted, before its runner started
    interruptions.append(session.session_dir, {"machine": "i-1", "at": 2000.0, "reason": "x",
                                               "spot": True, "cost": 2.0})
    assert carried_spending(session) == (2.5, 2.0)  # what was spent before + that machine
    # an interruption of an earlier runner's machine is already in spent_before
    interruptions.append(session.session_dir, {"machine": "i-0", "at": 10.0, "reason": "x",
                                               "spot": True, "cost": 9.0})
    assert carried_spending(session) == (2.5, 2.0)


def test_budget_alerts_and_figures(tmp_path):
    from trainctl_tui.app.costs import budget_alerts, figures_of

    now = 10_000.0
    session = folder_session(tmp_path, {"started": 1000.0, "progress": {
        "done": 500, "total": 1000, "unit": "step", "eta_seconds": 3600.0, "at": now - 600},
        "cost": {"spent": 23.0, "price_per_hour": 4.0, "hours": 5.75, "budget": 25.0,
                 "max_hours": 6.0, "warned": {"budget": now - 60, "hours": now - 30}}})
    figures = figures_of(session, now)
    assert figures.eta_seconds == 3000.0  # as of the last look, ten minutes ago
    assert figures.cost_to_finish == pytest.approx(3000 / 3600 * 4.0)
    alerts = {a.kind.value: a for a in budget_alerts(session, figures, now)}
    assert alerts["budget"].message == "$23.00 of the $25.00 budget spent (92%)"
    assert alerts["hours"].message == "5.8h of the 6h limit used"
    assert alerts["projected"].message == ("would cost $26.33 to finish, over the $25.00 "
                                           "budget (the run stops at the budget)")
    assert figures.to_json()["cost_so_far"] == 23.0


def test_no_total_no_eta_and_no_price_no_cost(tmp_path):
    from trainctl_tui.app.costs import figures_of

    session = folder_session(tmp_path, {"started": 1.0, "progress": None,
                                        "cost": {"spent": None, "price_per_hour": None}})
    figures = figures_of(session)
    assert figures.to_json() == {"progress": None, "eta_seconds": None, "cost_so_far": None,
                                 "cost_to_finish": None, "price_per_hour": None,
                                 "budget": None, "max_hours": None, "hours": None,
                                 "budget_reached": None}
