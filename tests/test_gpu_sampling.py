"""The runner's usage sampling (runner/gpu_sampler.py) with real runner processes and a fake
nvidia-smi on PATH that prints what nvidia-smi prints: samples appear, every value form
parses, no nvidia-smi says "no GPU" once, a hung nvidia-smi is killed and never stalls the
runner, and a remote probe carries the newest samples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import runner_names as sv
from gpu_helpers import A10G, A10G_IDLE, install_fake_nvidia_smi, without_nvidia_smi
from runner_names import runner_zipapp

from trainctl_tui.runner.gpu_sampler import (
    PROBE_SAMPLES,
    UNKNOWN_LEVEL,
    NvidiaSmi,
    UsageSampler,
    merge_usage,
    parse_gpu_csv,
)

SUPERVISOR = runner_zipapp()
PY = sys.executable

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and POSIX signals")


@pytest.fixture
def session(tmp_path):
    made: list[Path] = []

    def make(command, name="session", **spec) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        full = {"id": f"t-{name}", "name": name, "command": command, "cwd": str(tmp_path),
                "max_restarts": 0, "grace_seconds": 5.0, "heartbeat_seconds": 0.2,
                "usage_sample_seconds": 0.2}
        full.update(spec)
        (folder / "spec.json").write_text(json.dumps(full))
        made.append(folder)
        return folder

    yield make
    sv.kill_left_behind(made)


def launch(folder: Path) -> None:
    result = subprocess.run([PY, str(SUPERVISOR), "--detach", str(folder)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def wait_for(what, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = what()
        if value is not None and predicate(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout}s; last: {value}")


def usage(folder: Path):
    try:
        return json.loads((folder / "usage.json").read_text())
    except (OSError, ValueError):
        return None


def gpu_notes(folder: Path) -> list[str]:
    """The runner's own log lines about GPUs, without their time and pid prefix."""
    text = (folder / "runner.log").read_text(errors="replace")
    return [line.split("]: ", 1)[1] for line in text.splitlines() if "GPU" in line]


# A training that keeps a core busy and holds 64 MB until it is stopped.
BUSY = [PY, "-c", "import time\nx = bytearray(64 << 20)\nwhile True: pass"]


# --------------------------------------------------------------------------- parsing


def test_parse_every_value_form_nvidia_smi_prints():
    text = (
        "0, GPU-5f0c1b7e-2d3a-4c51-9e8f-0a1b2c3d4e5f, NVIDIA A10G, 97, 20515, 23028, 187.41, 61\n"
        "1, GPU-0e4a8c2d-1b3f-4d5e-8a9b-7c6d5e4f3a2b, Tesla T4, [N/A], 0, 15360, [N/A], 34\n"
        "2, GPU-11111111-2222-3333-4444-555555555555, NVIDIA GeForce GTX 1050, "
        "[Not Supported], 301, 4096, [Not Supported], [N/A]\n"
        "3, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, [N/A], 0, [Unknown Error], [N/A], "
        "70.00, 45\n")
    gpus = parse_gpu_csv(text)
    assert gpus[0] == {"index": 0, "uuid": "GPU-5f0c1b7e-2d3a-4c51-9e8f-0a1b2c3d4e5f",
                       "name": "NVIDIA A10G", "util": 97, "mem_used_mb": 20515,
                       "mem_total_mb": 23028, "power_w": 187.41, "temp_c": 61}
    assert (gpus[1]["util"], gpus[1]["power_w"], gpus[1]["mem_used_mb"]) == (None, None, 0)
    assert (gpus[2]["util"], gpus[2]["power_w"], gpus[2]["temp_c"]) == (None, None, None)
    assert gpus[2]["name"] == "NVIDIA GeForce GTX 1050"
    assert (gpus[3]["name"], gpus[3]["mem_used_mb"], gpus[3]["power_w"]) == (None, None, 70.0)
    assert [gpu["index"] for gpu in gpus] == [0, 1, 2, 3]


def test_lines_that_are_no_gpu_are_skipped_and_a_name_may_hold_commas():
    assert parse_gpu_csv("No devices were found\n") == []
    assert parse_gpu_csv("NVIDIA-SMI has failed because it couldn't communicate with the "
                         "NVIDIA driver. Make sure that the latest NVIDIA driver is installed "
                         "and running.\n") == []
    gpus = parse_gpu_csv("WARNING: infoROM is corrupted at gpu 0000:00:1E.0\n"
                         "0, [N/A], Odd, Name, 5, 10, 20, 30.5, 40\n")
    assert [(g["name"], g["util"], g["uuid"]) for g in gpus] == [("Odd, Name", 5, None)]


def test_the_busy_staircase_says_since_when_the_gpus_are_quiet(tmp_path, monkeypatch):
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    sampler = UsageSampler(str(tmp_path), 5.0, pgid=lambda: None)
    for t, util in [(100, 90), (105, 40), (110, 2), (115, 0), (120, 3)]:
        gpus.set(A10G[:3] + [util] + A10G[4:])
        written = sampler.sample(t)
    # The last sample at or above each level: at 5 % or more the GPUs were last seen at
    # 105 s, at 90 % or more at 100 s; at 3 % or more just now.
    assert written["busy"] == [[100, 90], [105, 40], [120, 3]]
    gpus.set(A10G[:3] + ["[N/A]"] + A10G[4:])
    assert sampler.sample(125)["busy"] == [[125, UNKNOWN_LEVEL]]  # unknown is never idle
    assert written["cpu_percent"] is None and written["gpu_note"] is None


def test_merge_keeps_the_ring_and_adds_only_newer_samples():
    kept = {"samples": [[1.0, 5, 10, [], []], [2.0, 6, 10, [], []]]}
    fresh = {"at": 4.0, "samples": [[2.0, 6, 10, [], []], [3.0, 7, 11, [], []],
                                    [4.0, 8, 12, [], []]]}
    merged = merge_usage(kept, fresh, keep=3)
    assert [s[0] for s in merged["samples"]] == [2.0, 3.0, 4.0]
    assert merged["at"] == 4.0
    assert [s[0] for s in merge_usage(None, fresh)["samples"]] == [2.0, 3.0, 4.0]


# --------------------------------------------------------------------------- real runners


def test_samples_appear_with_the_gpus_cpu_and_memory_of_the_training(session, tmp_path,
                                                                       monkeypatch):
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    folder = session(BUSY)
    launch(folder)
    found = wait_for(lambda: usage(folder), lambda u: len(u["samples"]) >= 4
                     and u["rss_mb"] and u["cpu_percent"])
    assert found["gpus"] == parse_gpu_csv(", ".join(str(v) for v in A10G))
    assert found["gpu_note"] is None
    assert found["rss_mb"] >= 64  # the training's bytearray
    assert found["cpu_percent"] > 10  # it spins
    sample = found["samples"][-1]
    assert sample[3:] == [[97], [20515]]
    gpus.set(A10G_IDLE)
    quiet = wait_for(lambda: usage(folder), lambda u: u["samples"][-1][3] == [0])
    assert quiet["busy"][0][1] == 97 and quiet["busy"][-1][1] == 0
    # A remote trainctl gets the newest samples with the status, in the same round trip.
    probe = subprocess.run([PY, str(SUPERVISOR), "--probe", str(folder)],
                           capture_output=True, text=True, timeout=30)
    answer = json.loads(probe.stdout)["usage"]
    assert 0 < len(answer["samples"]) <= PROBE_SAMPLES
    assert answer["gpus"][0]["name"] == "NVIDIA A10G"
    os.kill(sv.read_status(str(folder))["runner_pid"], signal.SIGTERM)
    wait_for(lambda: sv.read_status(str(folder)), lambda s: s["state"] == "stopped")


def test_without_nvidia_smi_it_says_no_gpu_once_and_keeps_cpu_and_memory(session,
                                                                          monkeypatch):
    without_nvidia_smi(monkeypatch)
    folder = session(BUSY)
    launch(folder)
    found = wait_for(lambda: usage(folder), lambda u: len(u["samples"]) >= 5
                     and u["cpu_percent"])
    assert found["gpus"] == [] and found["gpu_note"] == "no GPU: nvidia-smi not found"
    assert found["rss_mb"] >= 64
    assert found["busy"] == [] and found["gpu_since"] is None
    os.kill(sv.read_status(str(folder))["runner_pid"], signal.SIGTERM)
    wait_for(lambda: sv.read_status(str(folder)), lambda s: s["state"] == "stopped")
    assert gpu_notes(folder) == ["no GPU: nvidia-smi not found; sampling CPU and memory only"]
    assert "Traceback" not in (folder / "runner.log").read_text()
    assert "GPU" not in (folder / "train.log").read_text()  # the training's log stays its own


def test_a_failing_nvidia_smi_is_said_once_in_its_own_words(tmp_path, monkeypatch):
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    gpus.set(output="No devices were found\n", exit=6)
    notes: list[str] = []
    sampler = UsageSampler(str(tmp_path), 5.0, pgid=lambda: None, note=notes.append)
    for t in range(4):
        written = sampler.sample(100.0 + t)
    assert notes == ["no GPU: No devices were found; sampling CPU and memory only"]
    assert written["gpu_note"] == "no GPU: No devices were found"
    gpus.set(A10G)
    assert sampler.sample(110.0)["gpu_note"] is None
    assert notes[-1] == "GPUs answer again"


def fake_smi_pids(bin_dir: Path) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if str(bin_dir / "nvidia-smi").encode() in cmdline:
                found.append(int(name))
    return found


def test_a_hung_nvidia_smi_is_killed_and_does_not_stall_the_runner(session, tmp_path,
                                                                     monkeypatch):
    gpus = install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    gpus.set(A10G, hang=True)  # ignores SIGTERM: only the SIGKILL after the timeout ends it
    folder = session(BUSY)
    launch(folder)
    wait_for(lambda: gpus.calls, lambda n: n >= 1)
    # While nvidia-smi hangs, the runner's heartbeat goes on.
    beat = sv.read_status(str(folder))["heartbeat"]
    wait_for(lambda: sv.read_status(str(folder)), lambda s: s["heartbeat"] > beat + 0.5)
    found = wait_for(lambda: usage(folder), lambda u: u["rss_mb"])
    assert found["gpu_note"] == "no GPU: nvidia-smi timed out after 1s (killed)"
    assert found["gpus"] == []
    wait_for(lambda: gpus.calls, lambda n: n >= 3)  # tried again each sample, one at a time
    assert len(fake_smi_pids(tmp_path / "bin")) <= 1
    gpus.set(A10G)  # it answers again
    wait_for(lambda: usage(folder), lambda u: u["gpus"] and u["gpu_note"] is None)
    os.kill(sv.read_status(str(folder))["runner_pid"], signal.SIGTERM)
    wait_for(lambda: sv.read_status(str(folder)), lambda s: s["state"] == "stopped")
    assert gpu_notes(folder) == ["no GPU: nvidia-smi timed out after 1s (killed); "
                                 "sampling CPU and memory only", "GPUs answer again"]
    wait_for(lambda: fake_smi_pids(tmp_path / "bin"), lambda pids: pids == [])


def test_sampling_off_writes_nothing(session, tmp_path, monkeypatch):
    install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    folder = session([PY, "-c", "pass"], usage_sample_seconds=0)
    launch(folder)
    wait_for(lambda: sv.read_status(str(folder)), lambda s: s["state"] == "succeeded")
    assert not (folder / "usage.json").exists()


def test_nvidia_smi_asked_with_the_documented_query(tmp_path, monkeypatch):
    install_fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    found, problem = NvidiaSmi().query()
    assert problem is None and found[0]["name"] == "NVIDIA A10G"
    calls = Path(os.environ["FAKE_NVIDIA_SMI_STATE"] + ".calls").read_text().splitlines()
    assert calls == ["--query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.total,"
                     "power.draw,temperature.gpu --format=csv,noheader,nounits"]


def test_a_damaged_usage_file_reads_as_unknown_never_as_an_error(tmp_path):
    from trainctl_tui.app.gpu_usage import usage_json
    from trainctl_tui.monitor.usage import usage_of

    path = tmp_path / "usage.json"
    for garbage in ("", "{half", "[1, 2]", "null"):
        path.write_text(garbage)
        assert usage_of(tmp_path) is None
        assert usage_json(usage_of(tmp_path)) == {"gpus": None, "cpu_percent": None,
                                                  "rss_mb": None}
    path.write_text(json.dumps({"cpu_percent": "lots", "rss_mb": float("inf"), "gpus": [
        {"index": "0", "name": 7, "util": True, "mem_used_mb": 5}, "not a gpu"],
        "busy": [[1, "x"], [2, 50], "y"], "samples": [[1, 2], "z", [3.0, 1, 2, [5], [6]]]}))
    usage = usage_of(tmp_path)
    assert usage.to_json() == {"gpus": [{"index": None, "name": None, "util": None,
                                         "mem_used_mb": 5, "mem_total_mb": None,
                                         "power_w": None, "temp_c": None}],
                               "cpu_percent": None, "rss_mb": None}
    assert usage.busy == [(2, 50)] and len(usage.samples) == 1
    assert usage.history(3, 0) == [5] and usage.history(3, 1) == [None]


def test_a_probe_without_usage_or_with_garbage_leaves_the_kept_copy(tmp_path):
    from trainctl_tui.backends.remote.runner import keep_usage
    from trainctl_tui.core.models import Session

    session = Session(id="s", name="s", provider="ssh:box", command=["x"], cwd="/",
                      session_dir=str(tmp_path))
    for answer in (None, "garbage", [1]):
        keep_usage(session, answer)  # an older runner's probe has no usage: nothing kept
    assert not (tmp_path / "usage.json").exists()
    keep_usage(session, {"at": 2.0, "samples": [[1.0, 0, 0, [], []], [2.0, 0, 0, [], []]]})
    keep_usage(session, {"at": 3.0, "samples": [[2.0, 0, 0, [], []], [3.0, 0, 0, [], []]]})
    kept = json.loads((tmp_path / "usage.json").read_text())
    assert [s[0] for s in kept["samples"]] == [1.0, 2.0, 3.0] and kept["at"] == 3.0


@pytest.mark.parametrize("value, interval", [(None, 5.0), ("abc", 5.0), (0, None),
                                             (-1, None), (2, 2.0)])
def test_the_spec_interval(value, interval):
    from trainctl_tui.runner.gpu_sampler import sample_interval

    assert sample_interval({"usage_sample_seconds": value}) == interval
    assert sample_interval({}) == 5.0
