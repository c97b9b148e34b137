"""The headless CLI end to end: real runner processes and signals, a fresh interpreter
per call."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

DEMO = str(ROOT / "trainctl_tui" / "demo" / "train.py")


def launch(*args: str, env: dict | None = None) -> str:
    result = run_cli("launch", *args, env=env)
    assert result.returncode == 0, result.stderr
    session_id = result.stdout.strip().splitlines()[-1]
    assert len(session_id) == 6 and session_id.isalnum()
    return session_id


def session_json(session_id: str) -> dict:
    result = run_cli("sessions", "--json", "--all")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == 1
    return next(s for s in data["sessions"] if s["id"] == session_id)


def wait_for(predicate, timeout: float = 30.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def status_file(home: Path, session_id: str) -> dict:
    return json.loads((home / "sessions" / session_id / "status.json").read_text())


def demo_args(ckpt: Path, *extra: str) -> list[str]:
    return ["--checkpoint-dir", str(ckpt), "--resume-template", "--resume {checkpoint}",
            "--", sys.executable, DEMO, "--ckpt-every", "10", "--eval-every", "20", *extra]


def test_version_prints_and_exits_zero():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "trainctl 0.1.0"


@pytest.mark.parametrize("argv", [["--version"], ["sessions", "--json"], ["sessions"]])
def test_fast_paths_import_no_ui_or_cloud_sdks(argv):
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['trainctl', *{argv!r}]\n"
        "try:\n    runpy.run_module('trainctl_tui', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('textual', 'boto3', 'runpod', 'pydantic', 'botocore')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert "HEAVY []" in result.stderr, result.stderr


def test_launch_runs_to_success_and_records_the_attempt(trainctl_home, tmp_path):
    session_id = launch("--name", "quick", "--", sys.executable, "-c",
                        "print('hello from training'); print('loss 0.5')")
    info = wait_for(lambda: (s := session_json(session_id))["status"] == "succeeded" and s)
    assert info["name"] == "quick"
    assert info["attempt"] == 1
    assert [(a["n"], a["exit_code"]) for a in info["attempts"]] == [(1, 0)]
    assert info["started"] and info["ended"] >= info["started"]
    logs = run_cli("logs", session_id, "-n", "50")
    assert "hello from training" in logs.stdout
    assert "loss 0.5" in logs.stdout


def test_cli_exits_while_training_continues_and_another_cli_sees_it(trainctl_home):
    session_id = launch("--", sys.executable, "-c",
                        "import time\nfor i in range(600):\n print('tick', i, flush=True)\n"
                        " time.sleep(0.05)")
    # The launching CLI process has exited; a brand-new one still sees the run going.
    info = session_json(session_id)
    assert info["status"] == "running"
    status = status_file(trainctl_home, session_id)
    os.kill(status["child_pid"], 0)  # the training process is alive
    wait_for(lambda: "tick 5" in run_cli("logs", session_id).stdout)
    snapshot = run_cli("--once")
    assert session_id in snapshot.stdout and "running" in snapshot.stdout


def test_stop_leaves_a_final_checkpoint_and_status_stopped(trainctl_home, tmp_path):
    ckpt = tmp_path / "ckpt"
    session_id = launch(*demo_args(ckpt, "--steps", "100000", "--step-time", "0.02"))
    wait_for(lambda: "step 30" in run_cli("logs", session_id).stdout)
    result = run_cli("stop", session_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"session {session_id}: stopped")
    info = session_json(session_id)
    assert info["status"] == "stopped"
    assert len(info["attempts"]) == 1  # a user stop is never retried
    log = run_cli("logs", session_id, "-n", "200").stdout
    assert "received SIGTERM, saved checkpoint" in log
    saved = log.split("received SIGTERM, saved checkpoint ")[1].split()[0]
    assert Path(saved).exists() and Path(saved).parent == ckpt


def test_failing_command_is_retried_with_resume_from_newest_checkpoint(trainctl_home, tmp_path):
    ckpt = tmp_path / "ckpt"
    session_id = launch("--max-restarts", "2", *demo_args(
        ckpt, "--steps", "60", "--step-time", "0.005", "--fail-at-step", "30"),
        env={"TRAINCTL_DEFAULTS__BACKOFF_SECONDS": "0.5"})
    info = wait_for(lambda: (s := session_json(session_id))["status"] in ("succeeded", "failed")
                    and s, timeout=90)
    assert info["status"] == "succeeded", info
    first, second = info["attempts"]
    assert first["exit_code"] == 1 and first["resumed_from"] is None
    assert second["exit_code"] == 0
    assert second["resumed_from"] == str(ckpt / "step_000030.safetensors")
    assert f"resumed from {ckpt / 'step_000030.safetensors'} at step 30" in \
        run_cli("logs", session_id, "-n", "500").stdout


def test_sigkill_of_the_runner_marks_the_session_lost(trainctl_home):
    session_id = launch("--", sys.executable, "-c", "import time; time.sleep(120)")
    status = status_file(trainctl_home, session_id)
    os.kill(status["runner_pid"], signal.SIGKILL)
    info = wait_for(lambda: (s := session_json(session_id))["status"] == "lost" and s)
    assert f"runner pid {status['runner_pid']} is gone" in info["detail"]
    assert f"training pid {status['child_pid']} still running" in info["detail"]
    # stop now ends the orphaned training.
    result = run_cli("stop", session_id)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not Path(f"/proc/{status['child_pid']}").exists()
             or "Z" in Path(f"/proc/{status['child_pid']}/stat").read_text().split(")")[-1][:3])
    assert "was stopped by trainctl stop" in session_json(session_id)["detail"]


def test_resume_starts_a_new_attempt_in_the_same_session(trainctl_home, tmp_path):
    ckpt = tmp_path / "ckpt"
    session_id = launch(*demo_args(ckpt, "--steps", "100000", "--step-time", "0.02"))
    wait_for(lambda: "step 20:" in run_cli("logs", session_id).stdout)
    assert run_cli("stop", session_id).returncode == 0
    newest = sorted(ckpt.glob("step_*.safetensors"))[-1]  # the resumed run writes newer ones
    result = run_cli("resume", session_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == session_id
    info = session_json(session_id)
    assert info["status"] == "running" and info["attempt"] == 2
    assert info["attempts"][1]["resumed_from"] == str(newest)
    refused = run_cli("resume", session_id)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"session {session_id} is still running; stop it first (trainctl stop {session_id})")
    run_cli("stop", session_id, "--force")


def test_resume_from_a_missing_checkpoint_is_refused(trainctl_home):
    session_id = launch("--", sys.executable, "-c", "pass")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    result = run_cli("resume", session_id, "--from", "/nope/ckpt.pt")
    assert result.returncode == 2
    assert result.stderr.strip() == "checkpoint /nope/ckpt.pt does not exist"
    assert session_json(session_id)["attempt"] == 1


@pytest.mark.parametrize("verb", ["stop", "resume", "logs", "rm"])
def test_unknown_session_id_is_one_clear_line(verb):
    result = run_cli(verb, "zzzzzz")
    assert result.returncode == 2
    assert result.stderr == "no session 'zzzzzz' (see trainctl sessions)\n"
    assert result.stdout == ""


def test_rm_refuses_a_running_session_then_removes_it(trainctl_home):
    session_id = launch("--", sys.executable, "-c", "import time; time.sleep(60)")
    refused = run_cli("rm", session_id)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"session {session_id} is running; stop it before removing it"
    assert (trainctl_home / "sessions" / session_id).is_dir()
    assert run_cli("stop", session_id, "--force").returncode == 0
    removed = run_cli("rm", session_id)
    assert removed.returncode == 0, removed.stderr
    assert not (trainctl_home / "sessions" / session_id).exists()
    assert session_id not in run_cli("sessions", "--all").stdout


@pytest.mark.parametrize("args, message", [
    ([], "nothing to launch: give a command after --, e.g. trainctl launch -- python train.py"),
    (["--", "no-such-binary-xyz"], "command not found: no-such-binary-xyz (looked in"),
    (["--cwd", "/does/not/exist", "--", "true"],
     "working directory /does/not/exist does not exist"),
    (["--env", "NOEQUALS", "--", "true"], "--env expects K=V, got 'NOEQUALS'"),
    (["--env", "DB_PASS:hunter2", "--", "true"],
     "--env expects K=V, got 'DB_PASS' followed by ':' (the rest is not shown)\n"),
    (["--env", "=hunter2", "--", "true"],
     "--env expects K=V, got no name before '=' (the value is not shown)\n"),
    (["--env", "1BAD=x", "--", "true"], "bad environment variable name '1BAD' (use letters"),
    (["--resume-template=--resume", "--", "true"],
     "resume template '--resume' must contain {checkpoint}"),
    (["--max-restarts", "-1", "--", "true"], "max restarts must be 0 or more, not -1"),
    (["--keep-last", "0", "--", "true"], "keep last must be 1 or more, not 0"),
    (["--provider", "gcp", "--", "true"],
     "unknown provider 'gcp' (available: aws, local, runpod, slurm, ssh)"),
])
def test_bad_launch_input_is_refused_and_stores_nothing(trainctl_home, args, message):
    result = run_cli("launch", *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(run_cli("sessions", "--json", "--all").stdout)["sessions"] == []


def test_bad_config_file_is_one_line_with_position(trainctl_home, tmp_path):
    (tmp_path / "config.toml").write_text("[defaults]\ngrace_seconds = = 3\n")
    result = run_cli("launch", "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith(f"config error: {tmp_path / 'config.toml'}:2:")
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "config.toml").write_text("[defaults]\ngrace_seconds = 'soon'\n")
    result = run_cli("config", "show")
    assert result.returncode == 2
    assert "defaults.grace_seconds = 'soon'" in result.stderr


def test_config_defaults_apply_to_launch(trainctl_home, tmp_path):
    (tmp_path / "config.toml").write_text("[defaults]\nmax_restarts = 4\ngrace_seconds = 7\n")
    session_id = launch("--", "true")
    info = session_json(session_id)
    assert (info["max_restarts"], info["grace_seconds"]) == (4, 7.0)


def test_config_path_show_init(tmp_path):
    assert f"user: {tmp_path / 'config.toml'} (not present)" in run_cli("config", "path").stdout
    init = run_cli("config", "init")
    assert init.returncode == 0
    original = (tmp_path / "config.toml").read_bytes()
    again = run_cli("config", "init")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (tmp_path / "config.toml").read_bytes() == original
    assert "[defaults]" in run_cli("config", "show").stdout


def test_secret_env_is_masked_everywhere_but_reaches_the_training(trainctl_home, tmp_path):
    out = tmp_path / "seen.txt"
    session_id = launch(
        "--env", "WANDB_API_KEY=sk-very-secret-123", "--env", "PLAIN=visible",
        "--env", "DB_PASS=pw-very-secret-456", "--", sys.executable, "-c",
        f"import os; open({str(out)!r}, 'w').write(os.environ['WANDB_API_KEY'] + ' ' "
        "+ os.environ['PLAIN'] + ' ' + os.environ['DB_PASS'])")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    assert out.read_text() == "sk-very-secret-123 visible pw-very-secret-456"
    listing = run_cli("sessions", "--json", "--all").stdout
    assert "sk-very-secret-123" not in listing and "pw-very-secret-456" not in listing
    assert session_json(session_id)["env"] == {"WANDB_API_KEY": "****", "PLAIN": "visible",
                                               "DB_PASS": "****"}
    folder = trainctl_home / "sessions" / session_id
    for name in ("spec.json", "status.json", "train.log"):
        assert "sk-very-secret-123" not in (folder / name).read_text()
        assert "pw-very-secret-456" not in (folder / name).read_text()
    db = sqlite3.connect(trainctl_home / "trainctl.db")
    stored = "".join(map(str, db.execute("SELECT * FROM sessions")))
    assert "sk-very-secret-123" not in stored and "pw-very-secret-456" not in stored
    assert (folder / "secret_env.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["DB_PASS", "PASSPHRASE", "SSH_PRIVATE_KEY_FILE",
                                  "GCP_CREDENTIALS", "GH_AUTH", "MYSQL_PWD", "PRIVATE",
                                  "session_cookie"])
def test_secret_looking_names_are_masked(name):
    from trainctl_tui.core.models import is_secret_name

    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PLAIN", "BATCH_SIZE", "LR", "CUDA_VISIBLE_DEVICES"])
def test_ordinary_names_are_shown(name):
    from trainctl_tui.core.models import is_secret_name

    assert not is_secret_name(name)


def test_logs_follow_ends_when_the_session_ends(trainctl_home):
    session_id = launch("--", sys.executable, "-c",
                        "import time\nfor i in range(15):\n print('line', i, flush=True)\n"
                        " time.sleep(0.1)")
    result = run_cli("logs", session_id, "-f", "-n", "100", timeout=60)
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(15)]  # no duplicates, none missing
    assert f"session {session_id} succeeded" in result.stderr


def test_once_json_has_a_stable_schema(trainctl_home):
    session_id = launch("--", "true")
    data = json.loads(run_cli("--once", "--json").stdout)
    assert set(data) == {"version", "generated", "sessions", "alerts"}
    (entry,) = data["sessions"]
    assert entry["id"] == session_id
    assert set(entry) >= {"id", "name", "provider", "status", "command", "cwd", "attempt",
                          "attempts", "created", "started", "ended", "exit_code", "signal",
                          "metrics", "step"}
    assert data["alerts"] == []


def test_two_processes_launching_50_sessions_each_lose_none(trainctl_home, tmp_path):
    script = (
        "import asyncio, sys\n"
        "from trainctl_tui.app.service import Service, LaunchRequest\n"
        "async def main():\n"
        "    s = Service()\n"
        "    for i in range(50):\n"
        "        await s.launch(LaunchRequest(command=['true'], name=f'{sys.argv[1]}{i}'))\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], env=env) for tag in "ab"]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    sessions = json.loads(run_cli("sessions", "--json", "--all").stdout)["sessions"]
    assert len(sessions) == 100
    assert sorted(s["name"] for s in sessions) == sorted(
        f"{t}{i}" for t in "ab" for i in range(50))
    assert len({s["id"] for s in sessions}) == 100
    wait_for(lambda: all(s["status"] == "succeeded" for s in json.loads(
        run_cli("sessions", "--json", "--all").stdout)["sessions"]), timeout=60)


@pytest.mark.parametrize("command, name", [
    (["python", "-u", "train.py", "--lr", "3"], "train"),
    (["torchrun", "--nproc_per_node", "8", "train.py"], "train"),
    (["accelerate", "launch", "--config_file", "a.yaml", "scripts/sft.py"], "sft"),
    (["deepspeed", "pretrain.py", "--deepspeed", "ds.json"], "pretrain"),
    (["bash", "run.sh"], "run"),
    (["python", "-m", "pkg.finetune", "--epochs", "3"], "finetune"),
    (["python3", "-c", "import time; print('step 1 loss 0.5 /tmp/x')"], "python3"),
    (["./train"], "train"),
])
def test_default_session_name_is_the_script_not_its_arguments(command, name):
    from trainctl_tui.app.service import default_name

    assert default_name(command) == name


def test_a_refresh_during_a_resume_does_not_end_the_session_with_the_last_attempts_status():
    """While a resume starts its new runner, status.json still says how attempt 1 ended. A
    refresh from another process (the TUI, --once) must not take that as news: it once set
    the session back to its old end for good, so the resumed run showed as stopped."""
    import asyncio

    from uihelpers import launch_command

    from trainctl_tui.app.service import PENDING_TIMEOUT, Service
    from trainctl_tui.core.models import Status

    session_id = launch_command([sys.executable, "-c", "print('step 1 loss 0.5')"], "quick")
    service = Service()
    try:
        for _ in range(100):
            ended = asyncio.run(service.get(session_id))
            if not ended.status.active:
                break
            time.sleep(0.1)
        assert ended.status is Status.SUCCEEDED and ended.attempt == 1

        # What Service.resume writes before the new runner's first status.json.
        service.store.update(session_id, status=Status.PENDING, ended=None, detail=None,
                             heartbeat=time.time())
        pending = asyncio.run(service.refresh_session(service.store.get(session_id)))
        assert pending.status is Status.PENDING
        assert service.store.get(session_id).status is Status.PENDING

        # A runner that never writes is still found out, counted from the resume.
        service.store.update(session_id, heartbeat=time.time() - PENDING_TIMEOUT - 1)
        lost = asyncio.run(service.refresh_session(service.store.get(session_id)))
        assert lost.status is Status.LOST and "runner never started" in lost.detail
    finally:
        service.close()


@pytest.mark.parametrize("verb", ["rm", "logs", "stop", "metrics", "resume"])
def test_a_name_two_sessions_share_is_refused_listing_both(trainctl_home, verb):
    first = launch("--name", "dup", "--", sys.executable, "-c", "pass")
    second = launch("--name", "dup", "--", sys.executable, "-c", "pass")
    wait_for(lambda: all(session_json(s)["status"] == "succeeded" for s in (first, second)))
    result = run_cli(verb, "dup")
    assert result.returncode == 2
    assert result.stderr == (f"session 'dup' is ambiguous: sessions are named so "
                             f"({second}, {first}); use the id\n")
    assert result.stdout == ""
    for session_id in (first, second):
        assert (trainctl_home / "sessions" / session_id / "spec.json").is_file()
        assert session_json(session_id)["attempt"] == 1


def test_a_huge_line_count_is_one_clear_line(trainctl_home):
    session_id = launch("--", sys.executable, "-c", "print('hello')")
    result = run_cli("logs", "-n", "99999999999999999999", session_id)
    assert result.returncode == 2
    assert result.stderr == ("-n takes a number of lines from 0 to 10,000,000, "
                             "not 99999999999999999999\n")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300"])
def test_a_grace_that_never_ends_is_refused_and_stores_nothing(trainctl_home, value):
    result = run_cli("launch", f"--grace-seconds={value}", "--", "true")
    assert result.returncode == 2
    shown = str(float(value))
    assert result.stderr == f"grace seconds must be from 0 to 86400, not {shown}\n"
    assert json.loads(run_cli("sessions", "--json", "--all").stdout)["sessions"] == []


def test_checkpoint_info_of_an_empty_path_does_not_scan_the_cwd(trainctl_home):
    Path("model.pt").write_bytes(b"not a checkpoint")
    result = run_cli("checkpoint", "info", "")
    assert result.returncode == 2
    assert result.stderr == "checkpoint info needs the path of a checkpoint (got an empty one)\n"
    assert result.stdout == ""


def test_checkpoint_info_of_a_10000_character_path_is_one_short_line(trainctl_home):
    path = "a" * 10_000
    result = run_cli("checkpoint", "info", path)
    assert result.returncode == 2
    assert result.stderr == (f"cannot read checkpoint {'a' * 60}...{'a' * 30} "
                             "(10,000 characters): File name too long\n")


@pytest.mark.parametrize("garbage", ["garbage", "", "[1, 2]", '{"command": "x"}'])
def test_resume_with_a_garbage_spec_is_one_line_and_changes_nothing(trainctl_home, garbage):
    session_id = launch("--", sys.executable, "-c", "pass")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    spec = trainctl_home / "sessions" / session_id / "spec.json"
    spec.write_text(garbage)
    result = run_cli("resume", session_id, "--scratch")
    assert result.returncode == 2
    assert result.stderr.startswith(f"session {session_id}'s spec.json ({spec}) is ")
    assert result.stderr.endswith("; it cannot be resumed\n")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    info = session_json(session_id)
    assert info["status"] == "succeeded" and info["attempt"] == 1
    assert spec.read_text() == garbage


@pytest.mark.parametrize("verb", ["metrics", "logs"])
def test_reading_a_session_whose_folder_was_deleted_is_one_line(trainctl_home, verb):
    session_id = launch("--", sys.executable, "-c", "print('loss=1.0')")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    folder = trainctl_home / "sessions" / session_id
    import shutil

    shutil.rmtree(folder)
    result = run_cli(verb, session_id)
    assert result.returncode == 2
    assert result.stderr == (f"session {session_id}'s folder {folder} is gone (deleted?); "
                             f"trainctl rm {session_id} forgets the session\n")
