"""GPUs at work in the app: the idle-GPU alert (once per idle stretch, only on a paid machine,
only while the run is running), and the latest values in `--once`, `--once --json` and
`sessions --json`. Real runners sample a fake nvidia-smi on PATH."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from gpu_helpers import A10G, A10G_IDLE, install_fake_nvidia_smi, without_nvidia_smi

from trainctl_tui.app.gpu_usage import gpu_idle_alert
from trainctl_tui.app.service import Service
from trainctl_tui.core.models import Attempt, Session, Status
from trainctl_tui.monitor.usage import Usage

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and POSIX signals")

BUSY = [sys.executable, "-c", "import time\nx = bytearray(32 << 20)\nwhile True: time.sleep(0.01)"]
FAST = "[defaults]\nusage_sample_seconds = 0.2\n[alerts]\ngpu_idle_seconds = 1\n"


def session_id(cli, name: str) -> str:
    sessions = json.loads(cli("sessions", "--json").stdout)["sessions"]
    return next(s["id"] for s in sessions if s["name"] == name)


def set_price(home: Path, sid: str, price: float) -> None:
    """What a launch records for a machine with a known $/h (rented, or priced in config)."""
    spec_path = home / "sessions" / sid / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec["price_per_hour"] = price
    spec_path.write_text(json.dumps(spec))


def wait_for(what, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = what()
        if predicate(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s; last: {value}")


def overview() -> dict:
    return {row.session.name: row for row in asyncio.run(Service().overview())}


def newest_util(home: Path) -> list | None:
    """The GPUs' utilization in the newest sample of the (only) session's usage.json."""
    for path in home.glob("sessions/*/usage.json"):
        try:
            return json.loads(path.read_text())["samples"][-1][3]
        except (OSError, ValueError, IndexError):
            return None
    return None


def idle_alerts(row) -> list:
    return [a for a in row.alerts if a.kind == "gpu_idle"]


def test_idle_gpus_alert_once_per_idle_stretch_and_only_on_a_paid_machine(
        cli, trainctl_home, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text(FAST)
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    gpus.set(A10G)
    for name in ("paid", "unpaid"):
        assert cli("launch", "--name", name, "--", *BUSY).returncode == 0
    set_price(trainctl_home, session_id(cli, "paid"), 1.01)
    rows = wait_for(overview, lambda rows: all(r.usage and r.usage.gpus for r in
                                               rows.values()))
    assert idle_alerts(rows["paid"]) == []  # busy GPUs
    gpus.set(A10G_IDLE)
    rows = wait_for(overview, lambda rows: idle_alerts(rows["paid"]))
    (alert,) = idle_alerts(rows["paid"])
    assert alert.message == "GPU idle for 1s on this machine (1x NVIDIA A10G, $1.01/h)"
    assert alert.severity == "warning"
    assert idle_alerts(rows["unpaid"]) == []  # no $/h known: nothing is wasted money
    service = Service()
    assert [a.kind for a in service.new_alerts(list(rows.values()))] == ["gpu_idle"]
    assert service.new_alerts(list(overview().values())) == []  # announced once
    # Busy again: the alert ends; idle again: it is announced again.
    gpus.set(A10G)
    wait_for(overview, lambda rows: not idle_alerts(rows["paid"]))
    gpus.set(A10G_IDLE)
    rows = wait_for(overview, lambda rows: idle_alerts(rows["paid"]))
    again = Service().new_alerts(list(rows.values()))
    assert [a.kind for a in again] == ["gpu_idle"] and again[0].key != alert.key
    # --once lists it with the other open alerts.
    once = cli("--once")
    assert "gpu_idle" in once.stdout and "GPU idle for 1s on this machine" in once.stdout


def test_once_and_json_carry_the_latest_values(cli, trainctl_home, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text(FAST)
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    gpus.set(A10G, [1, "GPU-0e4a8c2d-1b3f-4d5e-8a9b-7c6d5e4f3a2b", "Tesla T4", "[N/A]", 0,
                    15360, "[Not Supported]", 34])
    assert cli("launch", "--name", "watched", "--", *BUSY).returncode == 0

    def listed():
        return json.loads(cli("sessions", "--json").stdout)["sessions"][0]

    entry = wait_for(listed, lambda s: s["gpus"] and s["rss_mb"] and s["cpu_percent"]
                     is not None)
    assert entry["gpus"] == [
        {"index": 0, "name": "NVIDIA A10G", "util": 97, "mem_used_mb": 20515,
         "mem_total_mb": 23028, "power_w": 187.41, "temp_c": 61},
        {"index": 1, "name": "Tesla T4", "util": None, "mem_used_mb": 0,
         "mem_total_mb": 15360, "power_w": None, "temp_c": 34}]
    assert entry["rss_mb"] >= 32
    once = json.loads(cli("--once", "--json").stdout)["sessions"][0]
    assert once["gpus"] == entry["gpus"]
    assert set(once) >= {"cpu_percent", "rss_mb"}
    text = cli("--once").stdout
    line = next(line for line in text.splitlines() if line.startswith("  watched ("))
    assert "GPU0 97% 20.0/22.5G 187W 61°C · GPU1 ? 0.0/15.0G 34°C · CPU " in line
    # Ended: no latest values (an old reading is no reading).
    assert cli("stop", entry["id"]).returncode == 0
    ended = wait_for(listed, lambda s: s["status"] == "stopped")
    assert (ended["gpus"], ended["cpu_percent"], ended["rss_mb"]) == (None, None, None)


def test_without_a_gpu_json_has_an_empty_gpu_list_and_once_says_no_gpu(
        cli, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text(FAST)
    without_nvidia_smi(monkeypatch)
    assert cli("launch", "--name", "cpu-only", "--", *BUSY).returncode == 0
    entry = wait_for(lambda: json.loads(cli("sessions", "--json").stdout)["sessions"][0],
                     lambda s: s["rss_mb"])
    assert entry["gpus"] == []
    assert ": no GPU · CPU " in cli("--once").stdout


# --------------------------------------------------------------------------- the rule itself


def running_session(started: float, ended: float | None = None) -> Session:
    return Session(id="s1", name="run", provider="aws:i-0abc", command=["x"], cwd="/",
                   session_dir="/nonexistent", status=Status.RUNNING, attempt=1,
                   attempts=[Attempt(n=1, started=started, ended=ended)])


def idle_usage(quiet_from: float, at: float, util: int = 0) -> Usage:
    return Usage({"at": at, "interval": 5.0, "gpu_since": quiet_from - 100,
                  "gpus": [{"index": 0, "name": "NVIDIA A10G", "util": util}],
                  "busy": [[quiet_from - 5.0, 80], [at, util]], "samples": []})


def alert_for(session, usage, price=1.01, now=10_000.0):
    return gpu_idle_alert(session, usage, price=price, now=now, below_percent=5,
                          after_seconds=600)


def test_the_rule_counts_from_the_first_quiet_sample_and_the_attempts_start():
    session = running_session(started=1000.0)
    assert alert_for(session, idle_usage(quiet_from=2000.0, at=2599.0)) is None
    alert = alert_for(session, idle_usage(quiet_from=2000.0, at=2600.0))
    assert alert.message == "GPU idle for 10 min on i-0abc (1x NVIDIA A10G, $1.01/h)"
    named = gpu_idle_alert(session, idle_usage(quiet_from=2000.0, at=2600.0), price=1.01,
                           now=2600.0, below_percent=5, after_seconds=600,
                           machine_type="g5.xlarge")
    assert named.message == "GPU idle for 10 min on g5.xlarge (1x NVIDIA A10G, $1.01/h)"
    assert alert.key == "s1:gpu_idle@2000"
    # Quiet since before this attempt began: counted from the attempt's start.
    late = running_session(started=2500.0)
    assert alert_for(late, idle_usage(quiet_from=2000.0, at=3000.0)) is None
    assert alert_for(late, idle_usage(quiet_from=2000.0, at=3100.0)) is not None


def test_the_rule_holds_only_for_a_running_attempt_on_a_paid_machine_with_quiet_gpus():
    usage = idle_usage(quiet_from=2000.0, at=4000.0)
    assert alert_for(running_session(1000.0), usage, price=None) is None
    assert alert_for(running_session(1000.0, ended=3000.0), usage) is None  # backoff
    stopped = running_session(1000.0)
    stopped.status = Status.STOPPED
    assert alert_for(stopped, usage) is None
    assert alert_for(running_session(1000.0), idle_usage(2000.0, 4000.0, util=5)) is None
    assert alert_for(running_session(1000.0), None) is None
    no_gpu = Usage({"at": 4000.0, "gpus": [], "busy": [], "gpu_note": "no GPU: x"})
    assert alert_for(running_session(1000.0), no_gpu) is None


def test_the_tui_delivers_the_idle_alert_to_the_webhook_once_per_idle_stretch(
        cli, trainctl_home, tmp_path, monkeypatch):
    from test_alerts import Receiver
    from uihelpers import wait_until

    from trainctl_tui.monitor.alerts import Notifier
    from trainctl_tui.ui.app import TrainctlApp

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config.toml").write_text(FAST)
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    gpus.set(A10G)
    assert cli("launch", "--name", "paid", "--", *BUSY).returncode == 0
    set_price(trainctl_home, session_id(cli, "paid"), 1.01)

    def posted(receiver) -> list[dict]:
        return [json.loads(request["body"])["alert"] for request in receiver.requests]

    async def scenario(receiver):
        notifier = Notifier(bell=False, desktop=False, webhook_url=receiver.url)
        app = TrainctlApp(refresh_seconds=0.3, notifier=notifier)
        async with app.run_test(size=(120, 35)) as pilot:
            gpus.set(A10G_IDLE)
            await wait_until(pilot, lambda: posted(receiver), what="the first POST")
            gpus.set(A10G)  # busy again: nothing new
            await wait_until(pilot, lambda: newest_util(trainctl_home) == [97], what="busy")
            await pilot.pause(1.0)  # a few refreshes of the TUI while busy
            assert len(posted(receiver)) == 1
            gpus.set(A10G_IDLE)
            await wait_until(pilot, lambda: len(posted(receiver)) == 2, what="a second POST")
            await pilot.pause(1.0)
        return posted(receiver)

    with Receiver([200, 200, 200]) as receiver:
        alerts = asyncio.run(scenario(receiver))
    assert [a["kind"] for a in alerts] == ["gpu_idle", "gpu_idle"]
    assert alerts[0]["message"] == "GPU idle for 1s on this machine (1x NVIDIA A10G, $1.01/h)"
    assert alerts[0]["key"] != alerts[1]["key"]
