"""The detached recovery's plumbing (trainctl_tui/recovery.py) with real processes: the lock
handed to `trainctl _recover`, the detail and log it leaves, a SIGKILLed holder's lock taken
over. The clouds' own recoveries are in test_aws_sessions.py and test_runpod_recovery.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from gates import wait_recovery_done

from trainctl_tui.app import recovery
from trainctl_tui.app.service import Service
from trainctl_tui.core.models import Session, Status


def interrupted_session(service: Service, detail: str = "spot interruption (i-0abc)") -> Session:
    """An AWS session as a refresh leaves it after an interruption, with no record of it:
    a recovery started for it finds nothing to resume."""
    def prepare(session: Session) -> None:
        session.session_dir = str(Path(os.environ["TRAINCTL_HOME"]) / "sessions" / session.id)
        Path(session.session_dir).mkdir(parents=True)

    session = Session(id="", name="run", command=["python", "train.py"], cwd="/tmp",
                      session_dir="",
                      provider="aws:i-0123456789abcdef0", host="i-0123456789abcdef0",
                      status=Status.INTERRUPTED, detail=detail)
    return service.store.insert(session, prepare=prepare)


def hold_lock_in_another_process(folder: Path, marker: dict) -> subprocess.Popen:
    script = ("import fcntl, os, sys, time\n"
              "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
              "fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "os.pwrite(fd, sys.argv[2].encode(), 0)\n"
              "print('held', flush=True)\n"
              "time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder / recovery.LOCK_NAME),
                               json.dumps(marker)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_the_refresh_side_returns_at_once_and_the_detached_process_does_the_rest(
        trainctl_home, monkeypatch):
    service = Service()
    session = interrupted_session(service)
    lock = recovery.take_lock(session.session_dir)
    assert recovery.take_lock(session.session_dir) is None  # one holder at a time
    monkeypatch.setenv("PATH", "/nonexistent")  # no console script needed: python -m
    detail = recovery.start(service, session, lock, "spot interruption (i-0abc)",
                            "resuming on a new instance")

    log = Path(session.session_dir) / recovery.LOG_NAME
    assert lock.fd == -1  # handed over: only the recovery holds it now
    assert detail.startswith("spot interruption (i-0abc); resuming on a new instance "
                             "(recover pid ") and detail.endswith(f", log {log})")
    assert service.store.get(session.id).detail == detail == session.detail
    pid = int(detail.split("recover pid ")[1].split(",")[0])
    assert json.loads(Path(session.session_dir, recovery.LOCK_NAME).read_text())["pid"] == pid

    wait_recovery_done(session.session_dir, timeout=60)
    # It found no recorded interruption: nothing was created, the detail is back to the reason.
    text = log.read_text()
    assert f"resuming (recover pid {pid})" in text and "nothing to resume" in text
    assert service.store.get(session.id).detail == "spot interruption (i-0abc)"
    assert recovery.read_marker(session.session_dir) is None  # finished: nothing to report
    assert os.stat(log).st_mode & 0o777 == 0o600
    service.close()


def test_a_sigkilled_holder_frees_the_lock_and_a_refresh_says_it_died(trainctl_home):
    service = Service()
    session = interrupted_session(service)
    folder = Path(session.session_dir)
    log = folder / recovery.LOG_NAME
    marker = {"pid": 0, "log": str(log), "reason": "spot interruption (i-0abc)"}
    holder = hold_lock_in_another_process(folder, marker)
    marker["pid"] = holder.pid
    Path(folder / recovery.LOCK_NAME).write_text(json.dumps(marker))
    try:
        assert recovery.running(folder) == marker
        assert recovery.died(folder) is None  # alive: nobody takes its lock
        before = asyncio.run(service.get(session.id))
        assert before.detail == "spot interruption (i-0abc)"  # untouched while it runs
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    # The lock file is still there and still names the dead recovery; the lock is free.
    assert recovery.read_marker(folder) == marker
    after = asyncio.run(service.get(session.id))
    assert after.status is Status.INTERRUPTED
    assert after.detail == (f"spot interruption (i-0abc); auto-resume stopped before it "
                            f"finished (recover pid {holder.pid} is gone, see {log}): "
                            f"trainctl resume {session.id}")
    assert recovery.read_marker(folder) is None  # said once
    lock = recovery.take_lock(folder)  # the next attempt is not blocked
    assert lock is not None
    lock.release()
    service.close()


def test_trainctl_resume_refuses_while_a_recovery_runs(trainctl_home, cli):
    service = Service()
    session = interrupted_session(service)
    folder = Path(session.session_dir)
    marker = {"pid": 0, "log": str(folder / recovery.LOG_NAME), "reason": "x"}
    holder = hold_lock_in_another_process(folder, marker)
    marker["pid"] = holder.pid
    Path(folder / recovery.LOCK_NAME).write_text(json.dumps(marker))
    try:
        result = cli("resume", session.id)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"session {session.id} is being resumed already (recover pid {holder.pid}, log "
            f"{marker['log']}); trainctl sessions shows when it is done")
        removed = cli("rm", session.id)
        assert removed.returncode == 2 and "is being resumed" in removed.stderr
        assert folder.is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    service.close()



def test_trainctl_resume_names_itself_while_it_works_and_forgets_it_after(
        trainctl_home, monkeypatch):
    """Refreshes in other processes (a TUI) leave the session alone meanwhile; a kill -9 of
    it is reported like a killed auto-resume."""
    service = Service()
    session = interrupted_session(service)
    folder = Path(session.session_dir)
    seen = []

    async def resume_on_new_machine(self, session, from_checkpoint, scratch):
        seen.append(recovery.read_marker(folder))
        probe = subprocess.run(  # another process asks whether a resume runs
            [sys.executable, "-c", "import sys; from trainctl_tui.app import recovery; "
             "print((recovery.running(sys.argv[1]) or {}).get('by'))", str(folder)],
            capture_output=True, text=True, timeout=60)
        seen.append(probe.stdout.strip())

    monkeypatch.setattr(Service, "_resume_on_new_machine", resume_on_new_machine)
    asyncio.run(service.resume(session.id))
    marker, other = seen
    assert (marker["pid"], marker["by"], marker["reason"]) == (
        os.getpid(), "trainctl resume", "spot interruption (i-0abc)")
    assert other == "trainctl resume"
    assert recovery.read_marker(folder) is None  # done: forgotten

    # Had it been killed: the next refresh says so.
    Path(folder / recovery.LOCK_NAME).write_text(json.dumps({**marker, "pid": 2 ** 22 + 7}))
    after = asyncio.run(service.get(session.id))
    assert after.detail == (f"spot interruption (i-0abc); trainctl resume stopped before it "
                            f"finished (pid {2 ** 22 + 7} is gone): trainctl resume "
                            f"{session.id}")
    service.close()
