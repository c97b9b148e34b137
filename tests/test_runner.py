"""The runner (supervisor.py) with real subprocesses and real signals: no mocks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import runner_names as sv
from runner_names import runner_zipapp

ROOT = Path(__file__).resolve().parents[1]
SUPERVISOR = runner_zipapp()  # the runner as it is shipped: one zipapp
DEMO = ROOT / "trainctl_tui" / "demo" / "train.py"
PY = sys.executable
FINAL = ("stopped", "succeeded", "failed")


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def session(tmp_path):
    """Factory for session folders; kills whatever a test leaves running."""
    made: list[Path] = []

    def make(command, name="session", **spec) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        full = {
            "id": f"t-{name}",
            "name": name,
            "command": command,
            "cwd": str(tmp_path),
            "max_restarts": 0,
            "backoff_seconds": 0.05,
            "grace_seconds": 5.0,
            "heartbeat_seconds": 0.2,
        }
        full.update(spec)
        (folder / "spec.json").write_text(json.dumps(full))
        made.append(folder)
        return folder

    yield make
    sv.kill_left_behind(made)


def safetensors_file(path: Path, age: float = 100.0) -> Path:
    """A small sound checkpoint (one float32), older than the "still being written" look."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\x80?")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def launch(folder: Path) -> dict:
    """Start a detached runner the way the launcher does; return the first status."""
    result = subprocess.run(
        [PY, str(SUPERVISOR), "--detach", str(folder)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    status = sv.read_status(str(folder))
    assert status is not None, "the launcher returned before status.json existed"
    return status


def run_foreground(folder: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [PY, str(SUPERVISOR), str(folder)], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result


def start_foreground(folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, str(SUPERVISOR), str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_status(folder: Path, predicate, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = sv.read_status(str(folder))
        if status and predicate(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"status condition not met in {timeout}s; last status: {status}")


def wait_state(folder: Path, *states: str, timeout: float = 30) -> dict:
    return wait_status(folder, lambda s: s["state"] in states, timeout)


def wait_log(folder: Path, pattern: str, timeout: float = 30) -> str:
    log = folder / "train.log"
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if re.search(pattern, text, re.M):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{pattern!r} not found in train.log:\n{text}")


def wait_dead(pid: int, token: str | None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while sv.pid_alive(pid, token):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


def demo(*args: str) -> list[str]:
    return [PY, str(DEMO), "--log-every", "5", "--eval-every", "10", *args]


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def trainctl_lines(folder: Path) -> list[str]:
    text = (folder / "train.log").read_text(errors="replace")
    return [line for line in text.splitlines() if line.startswith("[trainctl] ")]


# --------------------------------------------------------------------------- lifecycle


def test_detached_run_succeeds(session):
    folder = session(demo("--steps", "30", "--step-time", "0.02"), checkpoint_dir="ckpt")
    first = launch(folder)
    assert first["state"] in ("starting", "running")
    assert first["session_id"] == "t-session"
    runner_pid, runner_start = first["runner_pid"], first["runner_start"]
    assert sv.pid_alive(runner_pid, runner_start)
    assert os.getsid(runner_pid) != os.getsid(0)  # a new session: no terminal, survives us

    running = wait_status(folder, lambda s: s["child_pid"] is not None)
    child = running["child_pid"]
    assert os.getpgid(child) == child  # own process group, so killpg reaches everything

    final = wait_state(folder, *FINAL)
    assert final["state"] == "succeeded"
    assert final["exit_code"] == 0 and final["signal"] is None and final["reason"] is None
    assert final["child_pid"] is None and final["next_restart_at"] is None
    assert final["stop_requested"] is False
    assert final["ended"] >= final["started"]
    assert final["runner_pid"] == runner_pid and final["runner_start"] == runner_start
    assert final["version"] == 1 and final["max_restarts"] == 0
    [attempt] = final["attempts"]
    assert attempt["n"] == 1 and final["attempt"] == 1
    assert attempt["exit_code"] == 0 and attempt["resumed_from"] is None
    assert attempt["command"] == demo("--steps", "30", "--step-time", "0.02")
    assert attempt["started"] <= attempt["ended"]

    log = (folder / "train.log").read_text()
    assert "step 30/30 | train loss" in log
    assert f"saved checkpoint {folder.parent / 'ckpt' / 'step_000030.safetensors'}" in log
    marks = trainctl_lines(folder)
    assert marks[0].startswith("[trainctl] attempt 1/1: ")
    assert "[trainctl] exited with code 0" in marks
    assert marks[-1] == "[trainctl] session succeeded"
    assert (folder / "runner.log").exists()
    wait_dead(runner_pid, runner_start)  # the runner ends once the session has ended


def test_child_environment_stdio_and_module_entry_point(session, tmp_path):
    code = (
        "import json, os, sys\n"
        "keys = ['K', 'API_TOKEN', 'TRAINCTL_SESSION_ID', 'TRAINCTL_SESSION_DIR',\n"
        "        'TRAINCTL_ATTEMPT', 'TRAINCTL_CHECKPOINT_DIR', 'PYTHONUNBUFFERED']\n"
        "print('ENV ' + json.dumps({k: os.environ.get(k) for k in keys}))\n"
        "print('CWD ' + os.getcwd())\n"
        "print('STDIN %r' % sys.stdin.read())\n"
        "print('oops', file=sys.stderr)\n"
    )
    work = tmp_path / "train-cwd"
    work.mkdir()
    folder = session(py(code), cwd=str(work), env={"K": "V"}, checkpoint_dir="ck")
    (folder / "secret_env.json").write_text(json.dumps({"API_TOKEN": "s3cr3t-value"}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [PY, "-m", "trainctl_tui.runner.supervisor", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status = sv.read_status(str(folder))
    assert status["state"] == "succeeded"
    log = (folder / "train.log").read_text()
    child_env = json.loads(re.search(r"^ENV (.*)$", log, re.M).group(1))
    assert child_env == {
        "K": "V",
        "API_TOKEN": "s3cr3t-value",
        "TRAINCTL_SESSION_ID": "t-session",
        "TRAINCTL_SESSION_DIR": str(folder),
        "TRAINCTL_ATTEMPT": "1",
        "TRAINCTL_CHECKPOINT_DIR": str(work / "ck"),  # relative to cwd, made absolute
        "PYTHONUNBUFFERED": "1",
    }
    assert f"CWD {work}" in log
    assert "STDIN ''" in log
    assert "oops" in log  # stderr goes to train.log too
    # The secret is only in the child's environment, never in what the runner writes.
    assert "s3cr3t-value" not in (folder / "status.json").read_text()
    assert "s3cr3t-value" not in "\n".join(trainctl_lines(folder))
    assert "s3cr3t-value" not in result.stdout + result.stderr


def test_binary_output_is_logged_unchanged(session):
    garbage = bytes(range(256)) * 8
    code = (
        "import os, sys\n"
        f"sys.stdout.buffer.write({garbage!r}); sys.stdout.flush()\n"
        "os.write(2, b'\\xff\\xfe\\x00 not utf-8\\n')\n"
    )
    folder = session(py(code))
    run_foreground(folder)
    assert sv.read_status(str(folder))["state"] == "succeeded"
    raw = (folder / "train.log").read_bytes()
    assert garbage + b"\xff\xfe\x00 not utf-8\n" in raw


# --------------------------------------------------------------------------- restarts


def test_failed_attempt_restarts_from_newest_checkpoint(session, tmp_path):
    command = demo(
        "--steps", "60", "--step-time", "0.01", "--ckpt-every", "10", "--fail-at-step", "30"
    )
    folder = session(
        command,
        checkpoint_dir="ckpt",
        resume_template="--resume {checkpoint}",
        max_restarts=2,
    )
    run_foreground(folder)
    status = sv.read_status(str(folder))
    assert status["state"] == "succeeded", status
    newest_at_failure = str(tmp_path / "ckpt" / "step_000030.safetensors")
    first, second = status["attempts"]
    assert first["exit_code"] == 1 and first["command"] == command
    assert second["exit_code"] == 0
    assert second["command"] == command + ["--resume", newest_at_failure]
    assert second["resumed_from"] == newest_at_failure
    assert status["checkpoint"] == newest_at_failure and status["attempt"] == 2

    log = (folder / "train.log").read_text()
    assert "simulated failure at step 30" in log
    assert f"[trainctl] attempt 2/3 resuming from {newest_at_failure}: " in log
    resumed_part = log.split(f"resumed from {newest_at_failure} at step 30", 1)[1]
    steps = [int(s) for s in re.findall(r"^step (\d+)/60 \|", resumed_part, re.M)]
    assert steps and min(steps) > 30 and max(steps) == 60
    assert "[trainctl] exited with code 1" in trainctl_lines(folder)


def test_budget_exhausted_fails_with_every_exit_code(session):
    code = "import os, sys; print('try', os.environ['TRAINCTL_ATTEMPT']); sys.exit(3)"
    folder = session(py(code), max_restarts=2, backoff_seconds=0.1, checkpoint_dir="none")
    run_foreground(folder)
    status = sv.read_status(str(folder))
    assert status["state"] == "failed"
    assert status["exit_code"] == 3 and "gave up after 2 restart(s)" in status["reason"]
    attempts = status["attempts"]
    assert [a["n"] for a in attempts] == [1, 2, 3]
    assert [a["exit_code"] for a in attempts] == [3, 3, 3]
    assert all(a["resumed_from"] is None for a in attempts)  # no checkpoint: plain command
    # Exponential backoff: at least 0.1 s, then 0.2 s between attempts.
    assert attempts[1]["started"] - attempts[0]["ended"] >= 0.1
    assert attempts[2]["started"] - attempts[1]["ended"] >= 0.2
    log = (folder / "train.log").read_text()
    assert re.findall(r"^try (\d)$", log, re.M) == ["1", "2", "3"]


@pytest.mark.parametrize(
    "command, spec, exit_code, reason",
    [
        (["pyhton3-nope", "train.py"], {}, 127, "command not found: pyhton3-nope"),
        ([PY, "-V"], {"cwd": "/nonexistent/dir"}, 127, "working directory not found"),
        (None, {}, 126, "permission denied"),
        (["/bin/sh", "-c", "exit 127"], {}, 127, "exited with code 127"),
    ],
    ids=["not-found", "no-cwd", "not-executable", "child-127"],
)
def test_commands_that_cannot_run_are_not_retried(
    session, tmp_path, command, spec, exit_code, reason
):
    if command is None:
        script = tmp_path / "train.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        command = [str(script)]
    folder = session(command, max_restarts=3, **spec)
    run_foreground(folder)
    status = sv.read_status(str(folder))
    assert status["state"] == "failed"
    assert status["exit_code"] == exit_code
    assert reason in status["reason"]
    [attempt] = status["attempts"]
    assert attempt["exit_code"] == exit_code
    assert trainctl_lines(folder)[-1].startswith("[trainctl] session failed")


def test_backoff_delay_doubles_up_to_the_cap():
    spec = {"backoff_seconds": 5.0, "backoff_max_seconds": 30.0}
    assert [sv.backoff_delay(spec, k) for k in range(5)] == [5.0, 10.0, 20.0, 30.0, 30.0]
    assert sv.backoff_delay(spec, 10_000) == 30.0


def test_resume_of_ended_session_keeps_attempt_history(session, tmp_path):
    ckpt = str(safetensors_file(tmp_path / "ckpts" / "ckpt-7.safetensors"))
    folder = session(py("import sys; sys.exit(4)"))
    run_foreground(folder)
    first = sv.read_status(str(folder))
    assert first["state"] == "failed" and len(first["attempts"]) == 1

    code = "import os, sys; print('argv', sys.argv[1:], 'attempt', os.environ['TRAINCTL_ATTEMPT'])"
    spec = json.loads((folder / "spec.json").read_text())
    spec.update(
        command=py(code), resume_from=ckpt, resume_template="--resume {checkpoint}"
    )
    (folder / "spec.json").write_text(json.dumps(spec))
    run_foreground(folder)
    second = sv.read_status(str(folder))
    assert second["state"] == "succeeded"
    assert second["started"] >= first["ended"]  # this runner's start, not the first one's
    assert [a["n"] for a in second["attempts"]] == [1, 2]
    assert second["attempts"][0] == first["attempts"][0]
    resumed = second["attempts"][1]
    assert resumed["command"] == py(code) + ["--resume", ckpt]
    assert resumed["resumed_from"] == ckpt
    assert f"argv ['--resume', '{ckpt}'] attempt 2" in (folder / "train.log").read_text()

    # Without a template the checkpoint is recorded but nothing is appended.
    spec["resume_template"] = None
    (folder / "spec.json").write_text(json.dumps(spec))
    run_foreground(folder)
    third = sv.read_status(str(folder))
    assert [a["n"] for a in third["attempts"]] == [1, 2, 3]
    assert third["attempts"][2]["command"] == py(code)
    assert third["attempts"][2]["resumed_from"] == ckpt
    assert f"[trainctl] attempt 3/3 resuming from {ckpt}: " in trainctl_lines(folder)[-3]


# --------------------------------------------------------------------------- stopping


def test_sigterm_stops_gracefully_and_is_not_retried(session, tmp_path):
    folder = session(
        demo("--steps", "100000", "--step-time", "0.01", "--ckpt-every", "100000"),
        checkpoint_dir="ckpt",
        max_restarts=3,
        resume_template="--resume {checkpoint}",
    )
    status = launch(folder)
    wait_log(folder, r"^step 20/")
    os.kill(status["runner_pid"], signal.SIGTERM)
    final = wait_state(folder, *FINAL)
    assert final["state"] == "stopped"
    assert final["stop_requested"] is True
    assert final["reason"] == "stopped by SIGTERM"
    [attempt] = final["attempts"]  # a stop is never retried
    assert attempt["exit_code"] == 0 and attempt["signal"] is None  # the demo saved and exited
    log = (folder / "train.log").read_text()
    saved = re.search(r"^received SIGTERM, saved checkpoint (\S+)$", log, re.M).group(1)
    assert Path(saved).is_file() and Path(saved).parent == tmp_path / "ckpt"
    assert sv.find_newest_checkpoint(str(tmp_path / "ckpt")) == saved
    assert "[trainctl] stopping: SIGTERM to the process group, grace 5s" in trainctl_lines(folder)
    wait_dead(final["runner_pid"], final["runner_start"])


IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_child_ignoring_sigterm_is_killed_after_grace_and_sighup_is_ignored(session):
    folder = session(py(IGNORES_SIGTERM), grace_seconds=0.5, heartbeat_seconds=0.05, max_restarts=3)
    runner = start_foreground(folder)
    try:
        wait_log(folder, "^ready$")
        runner.send_signal(signal.SIGHUP)
        beat = wait_state(folder, "running")["heartbeat"]
        # A few heartbeats later the runner is alive and still running the same child.
        later = wait_status(folder, lambda s: s["heartbeat"] > beat + 0.2)
        assert later["state"] == "running" and runner.poll() is None
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0
    finally:
        runner.kill()
    status = sv.read_status(str(folder))
    assert status["state"] == "stopped"
    assert status["signal"] == 9 and status["exit_code"] is None
    assert "did not exit within 0.5s of SIGTERM" in status["reason"]
    [attempt] = status["attempts"]
    assert attempt["signal"] == 9 and attempt["exit_code"] is None
    assert "[trainctl] killed by SIGKILL" in trainctl_lines(folder)


@pytest.mark.parametrize("how", ["sigusr1", "second-sigterm"])
def test_force_stop_kills_at_once(session, how):
    folder = session(py(IGNORES_SIGTERM), grace_seconds=120)
    runner = start_foreground(folder)
    try:
        wait_log(folder, "^ready$")
        if how == "sigusr1":
            runner.send_signal(signal.SIGUSR1)
        else:
            runner.send_signal(signal.SIGTERM)
            wait_state(folder, "stopping")
            runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0  # far less than the 120 s grace
    finally:
        runner.kill()
    status = sv.read_status(str(folder))
    assert status["state"] == "stopped" and status["signal"] == 9
    assert status["reason"].startswith("force-stopped by SIG")


GRANDPARENT = (
    "import subprocess, sys, time\n"
    "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('grandchild', kid.pid, flush=True)\n"
    "time.sleep(float(sys.argv[1]))\n"
)


@pytest.mark.parametrize("how", ["stop", "child-exits"])
def test_grandchildren_are_killed(session, how):
    hold = "60" if how == "stop" else "0.3"
    folder = session(py(GRANDPARENT) + [hold])
    status = launch(folder)
    text = wait_log(folder, r"^grandchild \d+$")
    grandchild = int(re.search(r"^grandchild (\d+)$", text, re.M).group(1))
    token = sv.process_start_token(grandchild)
    assert token is not None
    if how == "stop":
        os.kill(status["runner_pid"], signal.SIGTERM)
    final = wait_state(folder, *FINAL)
    assert final["state"] == ("stopped" if how == "stop" else "succeeded")
    wait_dead(grandchild, token)


def test_stop_during_backoff_ends_at_once(session):
    folder = session(py("import sys; sys.exit(1)"), max_restarts=3, backoff_seconds=120)
    runner = start_foreground(folder)
    try:
        backoff = wait_state(folder, "backoff")
        assert backoff["next_restart_at"] > time.time() + 60
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0
    finally:
        runner.kill()
    status = sv.read_status(str(folder))
    assert status["state"] == "stopped"
    assert status["reason"] == "stopped during backoff"
    assert status["next_restart_at"] is None and status["stop_requested"] is True
    assert len(status["attempts"]) == 1 and status["exit_code"] == 1


def test_killed_runner_leaves_training_running(session):
    folder = session(
        demo("--steps", "100000", "--step-time", "0.01", "--ckpt-every", "100000"),
        checkpoint_dir="ckpt",
    )
    launch(folder)
    wait_log(folder, r"^step 10/")
    status = sv.read_status(str(folder))
    os.kill(status["runner_pid"], signal.SIGKILL)
    wait_dead(status["runner_pid"], status["runner_start"])
    assert not sv.pid_alive(status["runner_pid"], status["runner_start"])
    child, child_start = status["child_pid"], status["child_start"]
    assert sv.pid_alive(child, child_start)
    # The child owns its log fd: it keeps logging without the runner.
    size = (folder / "train.log").stat().st_size
    deadline = time.monotonic() + 20
    while (folder / "train.log").stat().st_size == size:
        assert time.monotonic() < deadline, "training stopped logging"
        time.sleep(0.05)
    assert sv.pid_alive(child, child_start)

    # A new runner refuses to start a second training next to the orphaned one.
    again = subprocess.run(
        [PY, str(SUPERVISOR), str(folder)], capture_output=True, text=True, timeout=30
    )
    assert again.returncode == 2
    assert f"training process {child} from an earlier runner is still running" in again.stderr
    os.killpg(child, signal.SIGTERM)
    wait_dead(child, child_start)


def test_second_runner_is_refused_while_one_is_alive(session):
    folder = session(py("import time; time.sleep(60)"))
    status = launch(folder)
    second = subprocess.run(
        [PY, str(SUPERVISOR), "--detach", str(folder)], capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 2
    assert f"live runner (pid {status['runner_pid']})" in second.stderr
    os.kill(status["runner_pid"], signal.SIGUSR1)
    assert wait_state(folder, *FINAL)["state"] == "stopped"


# --------------------------------------------------------------------------- status.json


def test_status_is_never_seen_half_written(session):
    folder = session(py("import time; time.sleep(1.5)"), heartbeat_seconds=0.02)
    path = folder / "status.json"
    seen: list[float] = []
    errors: list[str] = []
    done = threading.Event()

    def hammer():
        while not done.is_set():
            try:
                data = json.loads(path.read_bytes())
            except FileNotFoundError:
                if seen:
                    errors.append("status.json vanished")
                continue
            except ValueError as exc:
                errors.append(f"half-written: {exc}")
                continue
            seen.append(data["heartbeat"])

    reader = threading.Thread(target=hammer)
    reader.start()
    try:
        run_foreground(folder)
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert seen == sorted(seen)
    assert len(set(seen)) >= 10  # many heartbeats were written while we were reading
    assert sv.read_status(str(folder))["state"] == "succeeded"


def test_unwritable_status_is_retried_and_the_runner_survives(session):
    folder = session(py("import time; time.sleep(1.5); print('finished')"), heartbeat_seconds=0.05)
    blocker = folder / "status.json.tmp"
    runner = start_foreground(folder)
    try:
        wait_state(folder, "running")
        while True:  # a directory in the way makes every status write fail
            try:
                blocker.mkdir()
                break
            except FileExistsError:
                time.sleep(0.005)
        time.sleep(0.4)
        stale = sv.read_status(str(folder))
        assert stale["state"] == "running"  # the old file is still whole
        blocker.rmdir()
        _, stderr = runner.communicate(timeout=30)
    finally:
        runner.kill()
    assert runner.returncode == 0
    assert b"cannot write" in stderr and b"status.json" in stderr
    status = sv.read_status(str(folder))
    assert status["state"] == "succeeded"
    assert "finished" in (folder / "train.log").read_text()


def test_read_status_and_atomic_write(tmp_path):
    tmp_path = tmp_path / "status-dir"
    tmp_path.mkdir()
    assert sv.read_status(str(tmp_path)) is None
    (tmp_path / "status.json").write_text('{"state": "run')
    assert sv.read_status(str(tmp_path)) is None
    (tmp_path / "status.json").write_text("[1, 2]")
    assert sv.read_status(str(tmp_path)) is None
    sv.atomic_write_json(str(tmp_path / "status.json"), {"state": "running", "n": 1})
    assert sv.read_status(str(tmp_path)) == {"state": "running", "n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


@pytest.mark.parametrize(
    "argv, spec_text, message",
    [
        ([], None, "usage"),
        (["--detach"], None, "no spec.json"),
        ([], "{not json", "cannot read"),
        ([], '{"command": []}', "'command' must be a non-empty list"),
    ],
)
def test_bad_invocations_are_one_line_errors(tmp_path, argv, spec_text, message):
    folder = tmp_path / "s"
    folder.mkdir()
    if spec_text is not None:
        (folder / "spec.json").write_text(spec_text)
    args = argv + [str(folder)] if message != "usage" else []
    result = subprocess.run(
        [PY, str(SUPERVISOR), *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / "status.json").exists()


# --------------------------------------------------------------------------- processes


def test_process_start_token_and_pid_alive():
    mine = sv.process_start_token(os.getpid())
    assert mine
    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        token = sv.process_start_token(sleeper.pid)
        assert token and token != mine
        assert sv.pid_alive(sleeper.pid, token)
        assert not sv.pid_alive(sleeper.pid, mine)  # same pid, another instance: reused pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sv.process_start_token(sleeper.pid) is None
    assert not sv.pid_alive(sleeper.pid, token)
    assert not sv.pid_alive(None, None) and not sv.pid_alive(0, None)


def test_zombie_counts_as_dead():
    quick = subprocess.Popen(["true"])
    token = None
    deadline = time.monotonic() + 10
    # Not reaped yet: once it has exited it is a zombie and must count as dead.
    while sv.process_start_token(quick.pid) is not None:
        token = token or sv.process_start_token(quick.pid)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not sv.pid_alive(quick.pid, None)
    if sys.platform.startswith("linux"):
        state = Path(f"/proc/{quick.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "Z"
    assert quick.wait(timeout=5) == 0


# --------------------------------------------------------------------------- checkpoints


def touch(path: Path, age: float = 100.0, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.is_file():
        path.write_bytes(content)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_find_newest_checkpoint_orders_by_step_and_skips_unfinished(tmp_path):
    ck = tmp_path / "ck"
    touch(ck / "step_100.pt")
    touch(ck / "step_20.pt", age=10)  # newer file, lower step
    touch(ck / "model_final.bin", age=1)
    touch(ck / "epoch=1-step=400.ckpt")
    for unfinished in (
        "step_900.pt.tmp",
        "step_901.safetensors.partial",
        "step_902.pt.part",
        "step_903.bin.incomplete",
        ".step_1000.pt",
        "tmp_step_2000.pt",
        "notes_5000.txt",
    ):
        touch(ck / unfinished)
    touch(ck / "checkpoint-3000" / "model.safetensors")  # HF dir without trainer_state.json
    (ck / "step_4000").mkdir()  # a checkpoint dir with no file yet
    assert sv.find_newest_checkpoint(str(ck)) == str(ck / "epoch=1-step=400.ckpt")

    touch(ck / "checkpoint-500" / "model.safetensors")
    touch(ck / "checkpoint-500" / "trainer_state.json")
    assert sv.find_newest_checkpoint(str(ck)) == str(ck / "checkpoint-500")
    touch(ck / "step_4000" / "weights.bin")
    assert sv.find_newest_checkpoint(str(ck)) == str(ck / "step_4000")


def test_find_newest_checkpoint_falls_back_to_mtime(tmp_path, monkeypatch):
    touch(tmp_path / "best.ckpt", age=50)
    touch(tmp_path / "last.ckpt", age=20)
    touch(tmp_path / "older.ckpt", age=90)
    monkeypatch.chdir(tmp_path.parent)
    # A relative directory still gives an absolute path.
    assert sv.find_newest_checkpoint(tmp_path.name) == str(tmp_path / "last.ckpt")
    touch(tmp_path / "a" / "step_7.pt")  # not at the top level: ignored
    touch(tmp_path / "run_v3.pt", age=80)  # numbered (last number) beats unnumbered
    assert sv.find_newest_checkpoint(str(tmp_path)) == str(tmp_path / "run_v3.pt")


def test_find_newest_checkpoint_skips_a_file_still_being_written(tmp_path):
    touch(tmp_path / "step_10.safetensors")
    growing = tmp_path / "step_20.safetensors"
    stop = threading.Event()

    def write():
        with open(growing, "wb") as fh:
            while not stop.is_set():
                fh.write(b"\0" * 4096)
                fh.flush()
                time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while not growing.exists():
            time.sleep(0.01)
        assert sv.find_newest_checkpoint(str(tmp_path)) == str(tmp_path / "step_10.safetensors")
    finally:
        stop.set()
        writer.join()
    # Recent but no longer growing: accepted.
    assert sv.find_newest_checkpoint(str(tmp_path)) == str(growing)


def test_find_newest_checkpoint_nothing_found(tmp_path):
    assert sv.find_newest_checkpoint(None) is None
    assert sv.find_newest_checkpoint(str(tmp_path / "missing")) is None
    assert sv.find_newest_checkpoint(str(tmp_path)) is None
    touch(tmp_path / "step_1.pt.tmp")
    assert sv.find_newest_checkpoint(str(tmp_path)) is None


@pytest.mark.parametrize(
    "name, step",
    [
        ("step_000300.safetensors", 300),
        ("epoch=3-step=1200.ckpt", 1200),
        ("checkpoint-500", 500),
        ("ckpt_iter42.pt", 42),
        ("model_epoch7.pth", 7),
        ("weights_v2_99.bin", 99),
        ("last.ckpt", None),
        ("model.03-0.41.keras", 3),
        ("ckpt_epoch_05.weights.h5", 5),
        ("model.weights.h5", None),
        ("checkpoint_7", 7),
        ("epoch_2", 2),
    ],
)
def test_checkpoint_step_parsing(name, step):
    assert sv.checkpoint_step(name) == step
