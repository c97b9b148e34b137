"""Alerts: evaluate() on fake series, the tracker's fire-once rule, and the notifier against a
real HTTP server on 127.0.0.1, a real (fake) notify-send executable and a real stream."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterator, MutableSet
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trainctl_tui.core.models import Session, Status
from trainctl_tui.monitor.alerts import (
    Alert,
    AlertKind,
    AlertTracker,
    Notifier,
    evaluate,
    format_duration,
)

NOW = 1_700_000_000.0
TOKEN_PATH = "/services/T0000/B0000/SECRETTOKEN123"


# --------------------------------------------------------------------------- fakes


class FakeSeries:
    """The shape of monitor.metrics.Series: xs/ys as array('d'), nonfinite count, last."""

    def __init__(self, name: str, points: list[tuple[float, float]] = ()):
        self.name = name
        self.xs = array("d")
        self.ys = array("d")
        self.nonfinite = 0
        for x, y in points:
            self.add(x, y)

    def add(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)
        if not math.isfinite(y):
            self.nonfinite += 1

    @property
    def last(self) -> tuple[float, float] | None:
        return (self.xs[-1], self.ys[-1]) if self.xs else None

    def __len__(self) -> int:
        return len(self.xs)


class FakeMetrics:
    def __init__(self, *series: FakeSeries):
        self.series = {s.name: s for s in series}


def make_session(status: Status = Status.RUNNING, **fields) -> Session:
    base = dict(
        id="abc123", name="gpt-small", provider="local", command=["python", "train.py"],
        cwd="/tmp", session_dir="/tmp/s", status=status, attempt=1, started=NOW - 3600,
    )
    return Session(**{**base, **fields})


def losses(values: list[float], start: int = 0, every: int = 100) -> FakeSeries:
    return FakeSeries("loss", [(start + i * every, v) for i, v in enumerate(values)])


def run_evaluate(session: Session, metrics=None, **kwargs) -> list[Alert]:
    options = dict(log_mtime=NOW - 5, now=NOW, divergence_factor=3.0, stall_seconds=600.0)
    return evaluate(session, metrics, **{**options, **kwargs})


def kinds(alerts: list[Alert]) -> list[AlertKind]:
    return [a.kind for a in alerts]


# --------------------------------------------------------------------------- evaluate


def test_healthy_session_has_no_alerts():
    metrics = FakeMetrics(losses([2.0 - i * 0.01 for i in range(50)]))
    assert run_evaluate(make_session(), metrics) == []
    assert run_evaluate(make_session(), None) == []


def test_nan_loss_names_series_step_and_value():
    values = [1.0] * 12 + [math.nan, 1.0]
    alerts = run_evaluate(make_session(), FakeMetrics(losses(values)))
    assert kinds(alerts) == [AlertKind.NONFINITE]
    assert alerts[0].message == "loss became nan at step 1200"
    assert alerts[0].severity == "error"


def test_inf_val_loss_is_reported_too():
    val = FakeSeries("val_loss", [(10, 1.5), (20, math.inf), (30, math.nan)])
    alerts = run_evaluate(make_session(), FakeMetrics(losses([1.0] * 5), val))
    assert [a.message for a in alerts] == ["val_loss became inf at step 20"]


def test_nonfinite_counted_but_not_kept_as_a_point():
    series = losses([1.0] * 5)
    series.nonfinite = 2  # a Series that drops nan points but counts them
    alerts = run_evaluate(make_session(), FakeMetrics(series))
    assert kinds(alerts) == [AlertKind.NONFINITE]
    assert "loss" in alerts[0].message and "2" in alerts[0].message


def test_nan_in_other_series_is_ignored():
    lr = FakeSeries("lr", [(0, math.nan)])
    assert run_evaluate(make_session(), FakeMetrics(losses([1.0] * 5), lr)) == []


def test_divergence_above_factor_alerts_with_both_numbers():
    values = [2.0] * 10 + [1.0] * 20 + [3.5] * 5
    alerts = run_evaluate(make_session(), FakeMetrics(losses(values)))
    assert kinds(alerts) == [AlertKind.DIVERGED]
    message = alerts[0].message
    assert "3.5" in message and "best 1" in message and "3×" in message
    assert alerts[0].severity == "warning"


def test_divergence_below_factor_is_quiet():
    values = [1.0] * 30 + [2.9] * 5
    assert run_evaluate(make_session(), FakeMetrics(losses(values))) == []


def test_divergence_is_smoothed_over_recent_points():
    # One spike in the last five points does not lift the mean above 3 × best.
    values = [1.0] * 30 + [1.0, 1.0, 1.0, 1.0, 9.0]
    assert run_evaluate(make_session(), FakeMetrics(losses(values))) == []


def test_divergence_needs_min_points():
    values = [1.0] * 10 + [5.0] * 5
    metrics = FakeMetrics(losses(values))
    assert run_evaluate(make_session(), metrics) == []  # 15 < 20
    assert kinds(run_evaluate(make_session(), metrics, min_points=10)) == [AlertKind.DIVERGED]


def test_divergence_factor_is_configurable():
    values = [1.0] * 30 + [2.0] * 5
    metrics = FakeMetrics(losses(values))
    assert run_evaluate(make_session(), metrics) == []
    alerts = run_evaluate(make_session(), metrics, divergence_factor=1.5)
    assert kinds(alerts) == [AlertKind.DIVERGED]


def test_no_divergence_when_latest_loss_is_nan():
    values = [1.0] * 30 + [5.0] * 5 + [math.nan]
    alerts = run_evaluate(make_session(), FakeMetrics(losses(values)))
    assert kinds(alerts) == [AlertKind.NONFINITE]


def test_divergence_ignores_losses_that_reach_zero_or_below():
    values = [-1.0] * 30 + [5.0] * 5
    assert run_evaluate(make_session(), FakeMetrics(losses(values))) == []


def test_stall_while_running():
    alerts = run_evaluate(make_session(), log_mtime=NOW - 723)
    assert kinds(alerts) == [AlertKind.STALLED]
    assert alerts[0].message == "no log output for 12m03s"
    assert alerts[0].at == NOW - 723 + 600  # when it became a stall


def test_no_stall_when_not_running_or_recent():
    for status in (Status.SUCCEEDED, Status.STOPPED, Status.PENDING, Status.STOPPING):
        assert run_evaluate(make_session(status), log_mtime=NOW - 9999) == []
    assert run_evaluate(make_session(), log_mtime=NOW - 599) == []
    assert kinds(run_evaluate(make_session(), log_mtime=NOW - 10, stall_seconds=5)) == [
        AlertKind.STALLED
    ]


def test_stall_without_log_counts_from_start():
    alerts = run_evaluate(make_session(started=NOW - 700), log_mtime=None)
    assert [a.message for a in alerts] == ["no log output for 11m40s"]
    assert run_evaluate(make_session(started=None), log_mtime=None) == []


def test_failed_with_exit_code():
    session = make_session(Status.FAILED, exit_code=3, ended=NOW - 60, detail=None)
    alerts = run_evaluate(session)
    assert kinds(alerts) == [AlertKind.FAILED]
    assert alerts[0].message == "failed: exit code 3"
    assert alerts[0].severity == "error"
    assert alerts[0].at == NOW - 60


def test_failed_with_signal_names_it():
    session = make_session(Status.FAILED, signal=9, detail="out of memory?")
    [alert] = run_evaluate(session)
    assert alert.message == "failed (killed by SIGKILL): out of memory?"


def test_failed_detail_that_already_names_the_code_is_not_repeated():
    session = make_session(Status.FAILED, exit_code=1, detail="exited with code 1 (not retried)")
    [alert] = run_evaluate(session)
    assert alert.message == "failed: exited with code 1 (not retried)"


def test_lost_gives_detail():
    session = make_session(Status.LOST, detail="runner pid 4242 is gone")
    [alert] = run_evaluate(session)
    assert alert.kind == AlertKind.LOST
    assert alert.message == "session lost: runner pid 4242 is gone"


def test_failed_session_with_nan_reports_both():
    session = make_session(Status.FAILED, exit_code=1)
    alerts = run_evaluate(session, FakeMetrics(losses([1.0, math.nan])))
    assert sorted(kinds(alerts)) == sorted([AlertKind.FAILED, AlertKind.NONFINITE])


def test_format_duration():
    assert format_duration(45.9) == "45s"
    assert format_duration(723) == "12m03s"
    assert format_duration(7509) == "2h05m09s"


def test_alert_key_includes_attempt_only_after_a_resume():
    first = run_evaluate(make_session(Status.FAILED, attempt=1))[0]
    second = run_evaluate(make_session(Status.FAILED, attempt=2))[0]
    assert first.key == "abc123:failed"
    assert second.key == "abc123:failed:2"


# --------------------------------------------------------------------------- tracker


def test_same_alert_on_five_refreshes_fires_once():
    tracker = AlertTracker()
    fired = []
    for i in range(5):
        alerts = run_evaluate(make_session(), log_mtime=NOW - 700, now=NOW + i)
        fired += tracker.update({"abc123": alerts})
    assert kinds(fired) == [AlertKind.STALLED]
    [still_open] = tracker.open
    assert still_open.message == "no log output for 11m44s"  # fresh message
    assert still_open.at == fired[0].at


def test_resumed_session_can_fire_again():
    tracker = AlertTracker()
    assert len(tracker.update({"abc123": run_evaluate(make_session(Status.FAILED))})) == 1
    assert tracker.update({"abc123": run_evaluate(make_session(Status.FAILED))}) == []
    resumed = make_session(Status.FAILED, attempt=2)
    assert kinds(tracker.update({"abc123": run_evaluate(resumed)})) == [AlertKind.FAILED]


def test_open_list_drops_alerts_that_no_longer_hold():
    tracker = AlertTracker()
    stalled = run_evaluate(make_session(), log_mtime=NOW - 700)
    failed = run_evaluate(make_session(Status.FAILED, id="zzz", ended=NOW))
    tracker.update({"abc123": stalled, "zzz": failed})
    assert [a.session_id for a in tracker.open] == ["zzz", "abc123"]  # newest first
    tracker.update({"abc123": []})  # log moved again
    assert [a.session_id for a in tracker.open] == ["zzz"]  # zzz not refreshed: kept
    tracker.clear("zzz")
    assert tracker.open == []
    assert "zzz:failed" not in tracker.fired


def test_alert_that_returns_within_the_same_attempt_does_not_fire_again():
    tracker = AlertTracker()
    stalled = run_evaluate(make_session(), log_mtime=NOW - 700)
    assert len(tracker.update({"abc123": stalled})) == 1
    tracker.update({"abc123": []})
    assert tracker.update({"abc123": stalled}) == []
    assert len(tracker.open) == 1


class JsonFileSet(MutableSet):
    """A fired-set kept in a file, as a store-backed one would be."""

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> set[str]:
        return set(json.loads(self.path.read_text())) if self.path.exists() else set()

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def add(self, key: str) -> None:
        self.path.write_text(json.dumps(sorted(self._load() | {key})))

    def discard(self, key: str) -> None:
        self.path.write_text(json.dumps(sorted(self._load() - {key})))


def test_persisted_fired_set_prevents_refiring_across_trackers(tmp_path):
    failed = run_evaluate(make_session(Status.FAILED, exit_code=1))
    first = AlertTracker(JsonFileSet(tmp_path / "fired.json"))
    assert len(first.update({"abc123": failed})) == 1
    second = AlertTracker(JsonFileSet(tmp_path / "fired.json"))  # e.g. the app restarted
    assert second.update({"abc123": failed}) == []
    assert len(second.open) == 1  # still shown, just not announced again


# --------------------------------------------------------------------------- webhook


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script."""

    def __init__(self, statuses: list[int], delay: float = 0.0, body: bytes = b"ok"):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        self.delay = delay
        self.body = body
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                receiver.requests.append({
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length),
                })
                if receiver.delay:
                    receiver.release.wait(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                reply = receiver.body.replace(b"{path}", self.path.encode())
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{TOKEN_PATH}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy from the developer's env must not intercept requests to 127.0.0.1.
    for scheme in ("http", "https", "all"):
        for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
            monkeypatch.delenv(name, raising=False)


def failed_alert(**fields) -> Alert:
    base = dict(
        session_id="abc123", session_name="gpt-small", kind=AlertKind.FAILED,
        message="failed: exit code 3", severity="error", at=NOW, attempt=1,
    )
    return Alert(**{**base, **fields})


def webhook_only(url: str, timeout: float = 5.0) -> Notifier:
    return Notifier(bell=False, desktop=False, webhook_url=url, timeout=timeout, notify_send=None)


def test_webhook_posts_slack_compatible_json():
    with Receiver([200]) as receiver:
        assert webhook_only(receiver.url).send(failed_alert()) == []
    [request] = receiver.requests
    assert request["path"] == TOKEN_PATH
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {
        "text": "trainctl: gpt-small (abc123) failed: exit code 3",
        "alert": {
            "session_id": "abc123",
            "session_name": "gpt-small",
            "kind": "failed",
            "message": "failed: exit code 3",
            "severity": "error",
            "at": NOW,
            "attempt": 1,
            "key": "abc123:failed",
        },
    }


def test_webhook_accepts_a_secretstr():
    pydantic = pytest.importorskip("pydantic")
    with Receiver([200]) as receiver:
        notifier = webhook_only(pydantic.SecretStr(receiver.url))
        assert notifier.send(failed_alert()) == []
        assert "SECRETTOKEN" not in repr(notifier)
    assert len(receiver.requests) == 1


def test_webhook_retries_once_on_5xx():
    with Receiver([500, 200]) as receiver:
        assert webhook_only(receiver.url).send(failed_alert()) == []
    assert len(receiver.requests) == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]


def test_webhook_gives_up_after_one_retry():
    with Receiver([503, 502, 200]) as receiver:
        [error] = webhook_only(receiver.url).send(failed_alert())
    assert len(receiver.requests) == 2
    assert error.startswith("webhook (127.0.0.1): HTTP 502")


def test_webhook_4xx_is_not_retried_and_body_does_not_leak_the_token():
    with Receiver([404], body=b"no_service for {path}") as receiver:
        [error] = webhook_only(receiver.url).send(failed_alert())
    assert len(receiver.requests) == 1
    assert "HTTP 404" in error and "no_service" in error
    assert "SECRETTOKEN123" not in error and "/services" not in error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webhook_unreachable_port_error_hides_the_url():
    url = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    [error] = webhook_only(url).send(failed_alert())
    assert error.startswith("webhook (127.0.0.1):")
    assert "refused" in error
    assert "SECRETTOKEN123" not in error and "/services" not in error and url not in error


def test_webhook_slow_server_times_out_bounded():
    with Receiver([200], delay=10) as receiver:
        started = time.monotonic()
        [error] = webhook_only(receiver.url, timeout=0.3).send(failed_alert())
        elapsed = time.monotonic() - started
    assert error == "webhook (127.0.0.1): timed out after 0.3s"
    assert len(receiver.requests) == 2  # one retry on timeout
    assert elapsed < 2.0


def test_webhook_bad_scheme_is_an_error_not_a_leak():
    [error] = webhook_only("file:///etc/passwd?SECRETTOKEN123").send(failed_alert())
    assert error.startswith("webhook")
    assert "SECRETTOKEN123" not in error and "/etc/passwd" not in error


# --------------------------------------------------------------------------- desktop


def fake_notify_send(directory: Path, record: Path, *, code: int = 0, sleep: float = 0) -> Path:
    """An executable named notify-send that records its argv as JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "notify-send"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, time\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"time.sleep({sleep})\n"
        f"sys.stderr.write('cannot reach dbus\\n') if {code} else None\n"
        f"sys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def desktop_only(notify_send, timeout: float = 5.0) -> Notifier:
    return Notifier(
        bell=False, desktop=True, webhook_url=None, notify_send=notify_send, timeout=timeout
    )


def test_notify_send_found_on_path(tmp_path, monkeypatch):
    record = tmp_path / "argv.json"
    fake_notify_send(tmp_path / "bin", record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    notifier = Notifier(bell=False, desktop=True, webhook_url=None)
    assert notifier.send(failed_alert()) == []
    assert json.loads(record.read_text()) == [
        "--urgency=critical", "--", "trainctl: gpt-small", "failed: exit code 3",
    ]


def test_notify_send_gets_hostile_text_literally(tmp_path):
    record = tmp_path / "argv.json"
    pwned = tmp_path / "pwned"
    script = fake_notify_send(tmp_path / "bin", record)
    message = f"loss became nan $(touch {pwned}) `touch {pwned}` \"dq\" 'sq'; touch {pwned}"
    alert = failed_alert(message=message, session_name="-x; $(id)", severity="warning")
    assert desktop_only(str(script)).send(alert) == []
    assert json.loads(record.read_text()) == [
        "--urgency=normal", "--", "trainctl: -x; $(id)", message,
    ]
    assert not pwned.exists()


def test_notify_send_failure_is_reported(tmp_path):
    script = fake_notify_send(tmp_path / "bin", tmp_path / "argv.json", code=1)
    assert desktop_only(str(script)).send(failed_alert()) == [
        "desktop: notify-send exited 1: cannot reach dbus"
    ]


def test_notify_send_hang_is_bounded(tmp_path):
    script = fake_notify_send(tmp_path / "bin", tmp_path / "argv.json", sleep=30)
    started = time.monotonic()
    [error] = desktop_only(str(script), timeout=0.5).send(failed_alert())
    assert error == "desktop: notify-send timed out after 0.5s"
    assert time.monotonic() - started < 5


def test_notify_send_missing():
    assert desktop_only(None).send(failed_alert()) == [
        "desktop: notify-send not found (install libnotify-bin)"
    ]


# --------------------------------------------------------------------------- bell and all


def test_bell_writes_to_the_injected_stream():
    stream = io.StringIO()
    notifier = Notifier(bell=True, desktop=False, webhook_url=None, stream=stream)
    assert notifier.send(failed_alert()) == []
    assert stream.getvalue() == "\a"


def test_bell_on_a_closed_stream_is_an_error_not_an_exception():
    stream = io.StringIO()
    stream.close()
    notifier = Notifier(bell=True, desktop=False, webhook_url=None, stream=stream)
    assert notifier.send(failed_alert()) == ["bell: ValueError"]


def test_nothing_enabled_sends_nothing():
    notifier = Notifier(bell=False, desktop=False, webhook_url=None, notify_send=None)
    assert not notifier.enabled
    assert notifier.send(failed_alert()) == []


def test_all_channels_and_one_failure(tmp_path):
    record = tmp_path / "argv.json"
    script = fake_notify_send(tmp_path / "bin", record)
    stream = io.StringIO()
    url = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    notifier = Notifier(
        bell=True, desktop=True, webhook_url=url, notify_send=str(script), stream=stream
    )
    errors = notifier.send(failed_alert())
    assert stream.getvalue() == "\a" and record.exists()
    assert len(errors) == 1 and errors[0].startswith("webhook (127.0.0.1)")


def test_from_config_reads_alerts_section():
    config = pytest.importorskip("trainctl_tui.config.loader")
    cfg = config.AlertsConfig(bell=True, webhook_url="https://hooks.example.com/T/B/XYZ")
    notifier = Notifier.from_config(cfg, notify_send=None)
    assert notifier.bell and not notifier.desktop and notifier.enabled
    assert "XYZ" not in repr(notifier) and "hooks.example.com" in repr(notifier)


def test_module_imports_no_ui_libraries():
    code = (
        "import sys, trainctl_tui.monitor.alerts; "
        "bad = [m for m in ('textual', 'rich', 'pydantic') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
