"""Keeping control of a run when things go wrong: a full disk, a read-only home, processes
that leave the training's process group, a bad status.json, a lost store, a frozen runner.
Real runners, real signals, real filesystems (a small tmpfs, mounted when we are root)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kill_leftovers, run_cli
from test_cli import wait_for

SLEEPER = ["--", sys.executable, "-c",
           "import time\nfor i in range(600):\n print('tick', i, flush=True); time.sleep(0.5)"]


def launch(*args: str) -> str:
    result = run_cli("launch", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def session_json(session_id: str) -> dict:
    result = run_cli("sessions", "--json", "--all")
    assert result.returncode == 0, result.stderr
    return next(s for s in json.loads(result.stdout)["sessions"] if s["id"] == session_id)


def status_of(home: Path, session_id: str) -> dict:
    return json.loads((home / "sessions" / session_id / "status.json").read_text())


def running_status(home: Path, session_id: str) -> dict:
    """status.json once the training runs, and after the store has seen its attempt."""
    status = wait_for(lambda: (s := status_of(home, session_id))["child_pid"] and s)
    assert session_json(session_id)["attempt"] == 1
    return status


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- a small filesystem of our own ---------------------------------------------------------


@pytest.fixture
def small_home(tmp_path, monkeypatch, trainctl_home):
    """TRAINCTL_HOME on a 2 MB tmpfs (root only); yields (home, mount point)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    home = mount / "home"
    monkeypatch.setenv("TRAINCTL_HOME", str(home))
    try:
        yield home, mount
    finally:
        kill_leftovers(home)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path) -> None:
    with open(mount / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    assert os.statvfs(mount).f_bavail == 0


def test_on_a_full_disk_sessions_logs_and_stop_work_and_say_what_was_not_saved(small_home):
    home, mount = small_home
    session_id = launch(*SLEEPER)
    wait_for(lambda: "tick 2" in run_cli("logs", session_id).stdout)
    child = status_of(home, session_id)["child_pid"]
    store_before = (home / "trainctl.db").read_bytes()
    fill(mount)
    note = (f"note: not saved: the session store {home / 'trainctl.db'} cannot be changed: "
            f"the disk holding {home} is full; free some space\n")

    listed = run_cli("sessions")
    assert listed.returncode == 0, listed.stderr
    assert session_id in listed.stdout
    assert listed.stderr == note

    logs = run_cli("logs", session_id, "-n", "2")
    assert logs.returncode == 0, logs.stderr
    assert "tick" in logs.stdout and logs.stderr == note

    stopped = run_cli("stop", session_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stderr.endswith(note) and "Traceback" not in stopped.stderr
    wait_for(lambda: not alive(child))
    assert (home / "trainctl.db").read_bytes() == store_before  # nothing half-written

    refused = run_cli("rm", session_id)  # forgetting it is a write: refused, nothing lost
    assert refused.returncode == 2
    assert refused.stderr == (f"the session store {home / 'trainctl.db'} cannot be changed: "
                              f"the disk holding {home} is full; free some space\n")
    assert (home / "sessions" / session_id / "spec.json").is_file()

    (mount / "filler").unlink()
    assert session_json(session_id)["status"] in ("stopped", "lost")


def test_launch_on_a_full_disk_says_the_disk_is_full_not_that_the_store_is_unreadable(
        small_home):
    home, mount = small_home
    run_cli("sessions")  # the store exists
    fill(mount)
    result = run_cli("launch", "--", "true")
    assert result.returncode == 2
    assert result.stderr == (f"the session store {home / 'trainctl.db'} cannot be changed: "
                             f"the disk holding {home} is full; free some space\n")


def test_a_read_only_home_lists_sessions_and_says_it_is_read_only(small_home):
    home, mount = small_home
    session_id = launch("--", sys.executable, "-c", "pass")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True)
    assert remounted.returncode == 0
    listed = run_cli("sessions")
    assert listed.returncode == 0, listed.stderr
    assert session_id in listed.stdout and "unreadable" not in listed.stderr
    result = run_cli("launch", "--", "true")
    assert result.returncode == 2
    assert result.stderr == (f"the session store {home / 'trainctl.db'} cannot be changed: "
                             f"{home} is on a read-only filesystem\n")


# -- processes that leave the training's process group -------------------------------------

ESCAPER = r"""
import os, subprocess, sys, time
folder = sys.argv[1]
hold = ("import os, sys, time; open(os.path.join(sys.argv[1], str(os.getpid())), 'w'); "
        "time.sleep(300)")
subprocess.Popen([sys.executable, "-c", hold, folder], start_new_session=True)  # setsid
subprocess.Popen([sys.executable, "-c", hold, folder], preexec_fn=os.setpgrp)  # new group
middle = os.fork()
if middle == 0:  # the classic daemon: fork, setsid, fork again
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", hold, folder])
    os._exit(0)
os.waitpid(middle, 0)
while len(os.listdir(folder)) < 3:
    time.sleep(0.05)
print("escaped", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.parametrize("how", ["stop", "stop --force", "exits"])
def test_processes_that_left_the_process_group_do_not_survive(trainctl_home, tmp_path, how):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    hold = "3" if how == "exits" else "300"
    session_id = launch("--grace-seconds", "2", "--", sys.executable, "-c", ESCAPER,
                        str(pids_dir), hold)
    wait_for(lambda: "escaped" in run_cli("logs", session_id).stdout)
    escaped = [int(p.name) for p in pids_dir.iterdir()]
    assert len(escaped) == 3 and all(alive(pid) for pid in escaped)
    if how != "exits":
        result = run_cli(*how.split(), session_id)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"session {session_id}: stopped")
    else:
        wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    wait_for(lambda: not any(alive(pid) for pid in escaped), timeout=5)
    assert status_of(trainctl_home, session_id)["survivors"] == []


# -- a frozen runner -----------------------------------------------------------------------

FAST_BEAT = {"TRAINCTL_DEFAULTS__HEARTBEAT_SECONDS": "0.2"}  # stale after 6 s, not 15 s


def test_a_frozen_runner_is_unresponsive_and_only_a_force_stop_ends_it(trainctl_home):
    result = run_cli("launch", "--grace-seconds", "1", *SLEEPER, env=FAST_BEAT)
    assert result.returncode == 0, result.stderr
    session_id = result.stdout.strip().splitlines()[-1]
    status = running_status(trainctl_home, session_id)
    runner, child = status["runner_pid"], status["child_pid"]
    os.kill(runner, signal.SIGSTOP)
    try:
        info = wait_for(lambda: (s := session_json(session_id))["status"] == "unresponsive"
                        and s, timeout=20)
        assert re.fullmatch(rf"no heartbeat for \d+s from runner pid {runner} \(stopped by a "
                            rf"signal; kill -CONT {runner} resumes it\)", info["detail"])

        started = time.monotonic()
        graceful = run_cli("stop", session_id)
        assert graceful.returncode == 1
        assert time.monotonic() - started < 10  # no waiting for a runner that cannot act
        assert re.fullmatch(
            rf"session {session_id} cannot stop gracefully: still alive: runner pid {runner} "
            rf"\(.*trainctl-runner\.pyz.*\) stopped by a signal; training pid {child} \(.*\); "
            rf"trainctl stop --force {session_id} kills it\n", graceful.stderr), graceful.stderr
        assert alive(child)

        forced = run_cli("stop", "--force", session_id)
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout == (f"session {session_id}: stopped (SIGKILL: force-stopped by "
                                 "trainctl: the runner was frozen (stopped by a signal))\n")
        assert not alive(runner) and not alive(child)
    finally:
        if alive(runner):
            os.kill(runner, signal.SIGCONT)
    info = session_json(session_id)
    assert info["status"] == "stopped" and info["attempts"][0]["ended"] is not None
    assert run_cli("rm", session_id).returncode == 0


# -- a status.json that cannot be read -----------------------------------------------------

BAD_STATUS = {
    "wrong types": (json.dumps({"state": "running", "attempts": "many", "runner_pid": 1}),
                    "'attempts' is a str, not a list"),
    "deep nesting": ('{"state": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     "it is nested too deeply"),
    "garbled": ("\x00\x13garbage{{", "it is not valid JSON"),
    "empty": ("", "it is empty"),
    "half-written": ('{"version": 1, "state": "running", "runner_pid": 12', "it is not valid JSON"),
}


@pytest.mark.parametrize("kind", sorted(BAD_STATUS))
def test_read_status_says_why_a_status_cannot_be_used(tmp_path, kind):
    from trainctl_tui.runner.status import read_status, read_status_checked

    text, problem = BAD_STATUS[kind]
    (tmp_path / "status.json").write_text(text)
    status, why = read_status_checked(str(tmp_path))
    assert status is None and why.startswith(problem)
    assert read_status(str(tmp_path)) is None


@pytest.mark.parametrize("kind", sorted(BAD_STATUS))
def test_a_session_with_an_unreadable_status_says_so_and_can_be_stopped_and_removed(
        trainctl_home, kind):
    session_id = launch("--grace-seconds", "2", *SLEEPER)
    status = running_status(trainctl_home, session_id)
    runner, child = status["runner_pid"], status["child_pid"]
    os.kill(runner, signal.SIGKILL)  # nothing rewrites status.json any more
    wait_for(lambda: not alive(runner))
    text, problem = BAD_STATUS[kind]
    (trainctl_home / "sessions" / session_id / "status.json").write_text(text)

    info = session_json(session_id)
    assert info["status"] == "unresponsive"
    assert info["detail"].startswith(f"status.json is unreadable: {problem}")
    assert info["detail"].endswith(f"; alive: training pid {child}")
    listed = run_cli("sessions")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert run_cli("logs", session_id).returncode == 0

    stopped = run_cli("stop", session_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"session {session_id}: stopped (")
    assert f"stopped by trainctl stop (status.json was unreadable: {problem}" in stopped.stdout
    assert not alive(child)
    info = session_json(session_id)
    assert info["status"] == "stopped" and len(info["attempts"]) == 1  # history kept
    removed = run_cli("rm", session_id)
    assert removed.returncode == 0, removed.stderr
    assert not (trainctl_home / "sessions" / session_id).exists()


def test_an_unreadable_status_with_nothing_alive_is_lost_and_can_be_removed(trainctl_home):
    session_id = launch(*SLEEPER)
    status = running_status(trainctl_home, session_id)
    os.kill(status["runner_pid"], signal.SIGKILL)
    os.killpg(status["child_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(status["child_pid"]) and not alive(status["runner_pid"]))
    (trainctl_home / "sessions" / session_id / "status.json").write_text("{")
    info = session_json(session_id)
    assert info["status"] == "lost"
    assert info["detail"].startswith("status.json is unreadable: it is not valid JSON")
    assert info["detail"].endswith("; no process of it is alive")
    forced = run_cli("stop", "--force", session_id)
    assert forced.returncode == 2
    assert forced.stderr == f"session {session_id} is not running (status: lost)\n"
    assert run_cli("rm", session_id).returncode == 0


# -- a store truncated to 0 bytes ----------------------------------------------------------


def test_a_store_truncated_to_nothing_is_rebuilt_from_the_session_folders(trainctl_home):
    ended = launch("--name", "done", "--env", "PLAIN=1", "--", sys.executable, "-c", "pass")
    wait_for(lambda: session_json(ended)["status"] == "succeeded")
    running = launch("--name", "busy", "--max-restarts", "2", *SLEEPER)
    running_status(trainctl_home, running)
    before = {s["id"]: s for s in json.loads(run_cli("sessions", "--json").stdout)["sessions"]}
    (trainctl_home / "trainctl.db").write_bytes(b"")

    after = {s["id"]: s for s in json.loads(run_cli("sessions", "--json").stdout)["sessions"]}
    assert set(after) == {ended, running}
    for session_id in (ended, running):
        for key in ("name", "provider", "command", "cwd", "env", "status", "attempt",
                    "max_restarts", "grace_seconds", "runner_pid", "exit_code", "created"):
            assert after[session_id][key] == before[session_id][key], key
        assert len(after[session_id]["attempts"]) == 1
    assert after[running]["status"] == "running"

    child = status_of(trainctl_home, running)["child_pid"]
    stopped = run_cli("stop", "busy")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"session {running}: stopped")
    wait_for(lambda: not alive(child))
    assert run_cli("rm", "done").returncode == 0
    assert [s["id"] for s in json.loads(run_cli("sessions", "--json").stdout)["sessions"]] \
        == [running]


def test_a_folder_the_store_lost_is_found_by_its_id(trainctl_home):
    session_id = launch("--", sys.executable, "-c", "print('hello')")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    (trainctl_home / "trainctl.db").write_bytes(b"")
    result = run_cli("logs", session_id)
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout


# -- names that hold escape sequences ------------------------------------------------------

EVIL = "x\x1b]0;pwned\x07\x1b[2J\n[trainctl] session stopped\u202e[bold]"
EVIL_SHOWN = "x\\x1b]0;pwned\\x07\\x1b[2J\\n[trainctl] session stopped\\u202e[bold]"


def assert_no_control_characters(text: str) -> None:
    lines = text.split("\n")
    assert not any(c < " " or c == "\x7f" or c == "\u202e" for line in lines for c in line), \
        repr(text)
    assert not any(line.startswith("[trainctl]") for line in lines)


@pytest.mark.parametrize("argv", [["sessions"], ["--once"]])
def test_names_with_escape_sequences_are_printed_visibly(trainctl_home, argv):
    result = run_cli("launch", "--name", EVIL, "--", sys.executable, "-c", "pass")
    assert result.returncode == 0, result.stderr
    assert_no_control_characters(result.stdout)
    assert EVIL_SHOWN[:20] in result.stdout
    shown = run_cli(*argv, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert_no_control_characters(shown.stdout)
    assert EVIL_SHOWN[:29] in shown.stdout  # cut to the column's width, markup left as text


def test_a_very_long_name_is_cut_in_the_table_but_whole_in_json(trainctl_home):
    name = "n" * 500
    session_id = launch("--name", name, "--", sys.executable, "-c", "pass")
    shown = run_cli("sessions", env={"COLUMNS": "200"})
    assert "n" * 29 + "..." in shown.stdout and "n" * 30 not in shown.stdout
    assert session_json(session_id)["name"] == name


def test_checkpoint_names_with_escape_sequences_are_printed_visibly(trainctl_home, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "step_1\x1b[2J\n[trainctl] fake.pt").write_bytes(b"")
    result = run_cli("checkpoints", str(folder), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert_no_control_characters(result.stdout)
    assert "step_1\\x1b[2J\\n[trainctl] fake.pt" in result.stdout


# -- what SIGKILL could not end is reported ------------------------------------------------


def test_the_runner_reports_processes_that_survive_sigkill(monkeypatch, tmp_path):
    import runner_names as supervisor

    session_dir = tmp_path / "s"
    session_dir.mkdir()
    marked = {**os.environ, "TRAINCTL_SESSION_ID": "t-survivor"}
    stubborn = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env=marked, start_new_session=True)
    try:
        wait_for(lambda: stubborn.pid in supervisor.marked_pids("t-survivor"))
        real_kill = os.kill

        def kill_all_but_stubborn(pid, signum):  # stands in for a process SIGKILL cannot end
            if pid != stubborn.pid:
                real_kill(pid, signum)

        monkeypatch.setattr(os, "kill", kill_all_but_stubborn)
        runner = supervisor.Supervisor(str(session_dir), {**supervisor.SPEC_DEFAULTS,
                                                          "id": "t-survivor", "command": ["x"]},
                                       {})
        assert runner.kill_leftovers(stubborn.pid + 10**6, wait=0.3) == [stubborn.pid]
    finally:
        monkeypatch.undo()
        stubborn.kill()
        stubborn.wait()
    assert supervisor.marked_pids("t-survivor") == []


def test_stopping_a_lost_session_ends_what_left_the_process_group(trainctl_home, tmp_path):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    session_id = launch("--grace-seconds", "2", "--", sys.executable, "-c", ESCAPER,
                        str(pids_dir), "300")
    wait_for(lambda: "escaped" in run_cli("logs", session_id).stdout)
    status = status_of(trainctl_home, session_id)
    os.kill(status["runner_pid"], signal.SIGKILL)
    wait_for(lambda: session_json(session_id)["status"] == "lost")
    escaped = [int(p.name) for p in pids_dir.iterdir()]
    result = run_cli("stop", session_id)
    assert result.returncode == 0, result.stderr
    assert not alive(status["child_pid"])
    assert not any(alive(pid) for pid in escaped)


def test_an_old_folder_that_does_not_say_where_it_ran_is_restored_only_if_it_ran_here(tmp_path):
    from trainctl_tui.app.service import session_from_folder

    folder = tmp_path / "abc234"
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps({"id": "abc234", "name": "old",
                                                  "command": ["python", "t.py"], "cwd": "/"}))
    assert session_from_folder(folder) is None  # perhaps a remote one: not guessed
    (folder / "runner.log").write_text("runner started\n")
    restored = session_from_folder(folder)
    assert (restored.id, restored.name, restored.provider) == ("abc234", "old", "local")


def test_a_frozen_runner_with_an_unreadable_status_is_still_stopped_by_force(trainctl_home):
    session_id = launch("--grace-seconds", "1", *SLEEPER)
    status = running_status(trainctl_home, session_id)
    runner, child = status["runner_pid"], status["child_pid"]
    os.kill(runner, signal.SIGSTOP)
    try:
        (trainctl_home / "sessions" / session_id / "status.json").write_text('{"state": ')
        info = session_json(session_id)
        assert info["status"] == "unresponsive"
        assert info["detail"] == ("status.json is unreadable: it is not valid JSON (Expecting "
                                  "value: line 1 column 11 (char 10)); alive: runner pid "
                                  f"{runner}, training pid {child}")
        graceful = run_cli("stop", session_id)
        assert graceful.returncode == 1
        assert graceful.stderr.startswith(f"session {session_id} cannot stop gracefully: "
                                          f"still alive: runner pid {runner} (")
        forced = run_cli("stop", "--force", session_id)
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.startswith(f"session {session_id}: stopped (SIGKILL: stopped by "
                                        "trainctl stop (status.json was unreadable: it is not "
                                        "valid JSON")
        assert not alive(runner) and not alive(child)
    finally:
        if alive(runner):
            os.kill(runner, signal.SIGCONT)
    info = session_json(session_id)
    assert info["status"] == "stopped" and len(info["attempts"]) == 1
