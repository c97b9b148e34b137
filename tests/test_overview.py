"""service.overview: the rows of the sessions table and of --once, with metrics and alerts."""

from __future__ import annotations

import asyncio
import time

from trainctl_tui.app.service import Service
from trainctl_tui.core.models import Attempt, Session, Status


def add_session(home, name: str, log: str, status=Status.SUCCEEDED, attempt: int = 1) -> str:
    service = Service()
    folder = home / "sessions" / name
    folder.mkdir(parents=True)
    (folder / "train.log").write_text(log)
    session = service.store.insert(Session(
        id="", name=name, provider="local", command=["x"], cwd="/", session_dir=str(folder),
        status=status, created=time.time(), started=time.time() - 60, ended=time.time(),
        attempt=attempt, exit_code=0))
    service.store.update(session.id, attempts=[Attempt(n=i + 1, exit_code=0)
                                                for i in range(attempt)])
    return session.id


def overview():
    return {row.session.name: row for row in asyncio.run(Service().overview())}


def test_rows_carry_last_metrics_step_and_trend(trainctl_home):
    log = "".join(f"step {i}: train loss {1 / i:.4f}, val loss {1.5 / i:.4f}\n"
                  for i in range(1, 101))
    add_session(trainctl_home, "curve", log)
    row = overview()["curve"]
    assert row.step == 100
    assert row.last("loss") == 0.01
    assert row.last("val_loss") == 0.015
    trend = row.trend("loss", 12)
    assert len(trend) <= 12 and trend[0] > trend[-1]
    assert row.alerts == []


def test_nan_in_an_earlier_attempt_does_not_alert_after_a_resume(trainctl_home):
    log = ("[trainctl] attempt 1/3: python train.py\n"
           "step 1 loss 0.9\nstep 2 loss nan\n"
           "[trainctl] exited with code 1\n"
           "[trainctl] attempt 2/3 resuming from /c/step_1.pt: python train.py\n"
           "step 2 loss 0.8\nstep 3 loss 0.7\n")
    add_session(trainctl_home, "resumed", log, attempt=2)
    add_session(trainctl_home, "broken", "step 1 loss 0.9\nstep 2 loss inf\n")
    rows = overview()
    assert rows["resumed"].alerts == []
    assert rows["resumed"].last("loss") == 0.7
    (alert,) = rows["broken"].alerts
    assert alert.kind == "nonfinite" and "loss became inf at step 2" in alert.message


def test_new_alerts_are_announced_once_across_service_instances(trainctl_home):
    add_session(trainctl_home, "crashed", "step 1 loss 0.5\n", status=Status.FAILED)
    rows = list(overview().values())
    first = Service().new_alerts(rows)
    assert [a.kind for a in first] == ["failed"]
    assert Service().new_alerts(list(overview().values())) == []  # remembered in the store
