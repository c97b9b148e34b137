"""Sessions on an SSH host, against a real sshd on 127.0.0.1: launch, mirrored logs, stop,
resume, a dropped connection that loses and repeats nothing, an unreachable host, hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from sshd import sshd_server  # noqa: F401 - the fixture
from test_cli import DEMO, wait_for

# A host workdir with a space and shell metacharacters: every remote path must stay quoted.
WORKDIR_NAME = "remote work $(touch PWNED) 'q'"


@pytest.fixture
def ssh_env(sshd_server, tmp_path, monkeypatch):  # noqa: F811 - pytest fixture injection
    workdir = tmp_path / WORKDIR_NAME
    (tmp_path / "config.toml").write_text(
        f"[ssh.hosts.box]\nhost = \"{sshd_server.alias}\"\n"
        f"workdir = {json.dumps(str(workdir))}\npython = \"/usr/bin/python3\"\n")
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    return sshd_server, workdir


def drop_master(server) -> None:
    """Kill only our ssh connection-sharing master (its argv names the test alias)."""
    subprocess.run(["pkill", "-f", f"ssh .*{server.alias}"], capture_output=True)


def launch_on_box(*args: str) -> str:
    result = run_cli("launch", "--provider", "ssh:box", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def info(session_id: str) -> dict:
    data = json.loads(run_cli("sessions", "--json", "--all").stdout)
    return next(s for s in data["sessions"] if s["id"] == session_id)


def remote_log(workdir: Path, session_id: str) -> bytes:
    return (workdir / "sessions" / session_id / "train.log").read_bytes()


def local_log(home: Path, session_id: str) -> bytes:
    return (home / "sessions" / session_id / "train.log").read_bytes()


def test_launch_runs_on_the_host_and_the_log_is_mirrored(ssh_env, trainctl_home, tmp_path):
    server, workdir = ssh_env
    session_id = launch_on_box("--env", "HF_TOKEN=hf-secret-value", "--", sys.executable, "-c",
                               "import os; print('on the host', os.environ['HF_TOKEN'][:3])")
    done = wait_for(lambda: (s := info(session_id))["status"] == "succeeded" and s)
    assert done["provider"] == "ssh:box" and done["host"] == "box"
    remote_dir = workdir / "sessions" / session_id
    assert (remote_dir / "secret_env.json").stat().st_mode & 0o777 == 0o600
    assert "hf-secret-value" not in (remote_dir / "spec.json").read_text()
    assert b"on the host hf-" in remote_log(workdir, session_id)
    assert local_log(trainctl_home, session_id) == remote_log(workdir, session_id)
    assert "on the host hf-" in run_cli("logs", session_id).stdout
    assert not list(tmp_path.rglob("PWNED"))  # the quoted workdir never ran its $(...)


def test_stop_and_resume_act_on_the_remote_runner(ssh_env, trainctl_home, tmp_path):
    server, workdir = ssh_env
    ckpt = tmp_path / "ckpt on host"
    session_id = launch_on_box(
        "--checkpoint-dir", str(ckpt), "--resume-template", "--resume {checkpoint}", "--",
        sys.executable, DEMO, "--steps", "100000", "--step-time", "0.02", "--ckpt-every", "10")
    wait_for(lambda: "step 30" in run_cli("logs", session_id).stdout, timeout=60)
    once = json.loads(run_cli("--once", "--json").stdout)["sessions"][0]
    assert once["newest_checkpoint"]["path"].startswith(str(ckpt))  # seen on the host
    table = run_cli("--once", env={"COLUMNS": "150"}).stdout
    assert "ssh:box" in table and "ssh:box:box" not in table  # where it runs, said once
    stopped = run_cli("stop", session_id)
    assert stopped.returncode == 0, stopped.stderr
    assert info(session_id)["status"] == "stopped"
    assert b"received SIGTERM, saved checkpoint" in remote_log(workdir, session_id)
    newest = sorted(ckpt.glob("step_*.safetensors"))[-1]
    resumed = run_cli("resume", session_id)
    assert resumed.returncode == 0, resumed.stderr
    state = wait_for(lambda: (s := info(session_id))["attempt"] == 2 and s)
    assert state["attempts"][1]["resumed_from"] == str(newest)
    wait_for(lambda: "resumed from" in run_cli("logs", session_id, "-n", "200").stdout)
    assert run_cli("stop", session_id, "--force").returncode == 0


def test_a_dropped_connection_loses_and_repeats_no_line(ssh_env, trainctl_home):
    server, workdir = ssh_env
    session_id = launch_on_box("--", sys.executable, "-u", "-c",
                               "import time\nfor i in range(400):\n print(f'line {i:05d}')\n"
                               " time.sleep(0.01)")
    wait_for(lambda: "line 00050" in run_cli("logs", session_id, "-n", "1000").stdout)
    server.restart()  # every connection (and the ssh control master) drops mid-stream
    drop_master(server)
    wait_for(lambda: info(session_id)["status"] == "succeeded", timeout=90)
    run_cli("sessions")  # one more refresh mirrors the tail
    lines = [line for line in local_log(trainctl_home, session_id).decode().splitlines()
             if line.startswith("line ")]
    assert lines == [f"line {i:05d}" for i in range(400)]
    assert local_log(trainctl_home, session_id) == remote_log(workdir, session_id)


def test_an_unreachable_host_is_shown_and_recovers(ssh_env, trainctl_home):
    server, workdir = ssh_env
    session_id = launch_on_box("--", sys.executable, "-c", "import time; time.sleep(30)")
    assert info(session_id)["status"] == "running"
    server.stop()
    drop_master(server)
    try:
        down = info(session_id)
        assert down["status"] == "unreachable"
        assert down["detail"].startswith("ssh box")
        assert "Connection refused" in down["detail"]
        hosts = json.loads(run_cli("hosts", "--json").stdout)["hosts"]
        assert hosts[0]["reachable"] is False and "Connection refused" in hosts[0]["error"]
    finally:
        server.start()
    assert wait_for(lambda: info(session_id)["status"] == "running")
    hosts = json.loads(run_cli("hosts", "--json").stdout)["hosts"]
    assert hosts[0]["name"] == "box" and hosts[0]["reachable"] is True
    assert hosts[0]["sessions"] == [session_id] and len(hosts[0]["load"]) == 3
    assert run_cli("stop", session_id, "--force").returncode == 0


def test_sigkilled_remote_runner_is_lost_and_stop_ends_the_training(ssh_env, trainctl_home):
    server, workdir = ssh_env
    session_id = launch_on_box("--", sys.executable, "-c", "import time; time.sleep(120)")
    status = json.loads((workdir / "sessions" / session_id / "status.json").read_text())
    os.kill(status["runner_pid"], signal.SIGKILL)
    lost = wait_for(lambda: (s := info(session_id))["status"] == "lost" and s)
    assert "still running" in lost["detail"]
    assert run_cli("stop", session_id).returncode == 0
    wait_for(lambda: not Path(f"/proc/{status['child_pid']}").exists() or
             " Z " in Path(f"/proc/{status['child_pid']}/stat").read_text())


def test_unknown_ssh_host_is_one_clear_line(ssh_env):
    result = run_cli("launch", "--provider", "ssh:nowhere-xyz", "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith("unknown ssh host 'nowhere-xyz'")
    assert json.loads(run_cli("sessions", "--json", "--all").stdout)["sessions"] == []


def test_remote_checkpoints_are_listed_inspected_and_pulled(ssh_env, trainctl_home, tmp_path):
    server, workdir = ssh_env
    ckpt = tmp_path / "ckpts on the host"
    session_id = launch_on_box("--checkpoint-dir", str(ckpt), "--", sys.executable, DEMO,
                               "--steps", "40", "--step-time", "0.001", "--ckpt-every", "10")
    wait_for(lambda: info(session_id)["status"] == "succeeded")
    time.sleep(2.1)
    listed = run_cli("checkpoints", session_id, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["checkpoints"]
    assert [r["name"] for r in rows] == [f"step_0000{n}0.safetensors" for n in range(1, 5)]
    assert {r["status"] for r in rows} == {"ok"}
    assert rows[-1]["info"]["step"] == 40 and rows[-1]["info"]["format"] == "safetensors"

    dest = tmp_path / "home copy"
    pulled = run_cli("pull", session_id, "--to", str(dest))
    assert pulled.returncode == 0, pulled.stderr
    local = dest / "step_000040.safetensors"
    assert local.read_bytes() == (ckpt / "step_000040.safetensors").read_bytes()
    assert f"to {local}" in pulled.stdout

    named = run_cli("pull", session_id, "--checkpoint", "step_000020.safetensors", "--to",
                    str(dest))
    assert named.returncode == 0, named.stderr
    assert (dest / "step_000020.safetensors").exists()
    missing = run_cli("pull", session_id, "--checkpoint", "nope.pt")
    assert missing.returncode == 2
    assert missing.stderr.startswith("no checkpoint 'nope.pt' in")
    refused = run_cli("checkpoints", "prune", session_id, "--keep-last", "1")
    assert refused.returncode == 2 and "not supported yet" in refused.stderr


def test_pull_of_a_local_session_says_where_its_checkpoints_are(trainctl_home, tmp_path):
    result = run_cli("launch", "--checkpoint-dir", str(tmp_path / "c"), "--", "true")
    session_id = result.stdout.strip().splitlines()[-1]
    pulled = run_cli("pull", session_id)
    assert pulled.returncode == 2
    assert pulled.stderr.startswith(f"session {session_id} runs on this machine")


def test_watch_follows_a_log_on_a_host_that_trainctl_did_not_launch(ssh_env, tmp_path):
    import asyncio

    from uihelpers import wait_until

    from trainctl_tui.backends.remote.runner import RemoteLogMirror
    from trainctl_tui.backends.remote.transport import SSHTransport, resolve_target
    from trainctl_tui.config.loader import load_config
    from trainctl_tui.ui.app import TrainctlApp
    from trainctl_tui.ui.widgets.logview import LogView

    remote = tmp_path / "other run $(x)" / "train.log"
    remote.parent.mkdir()
    remote.write_text("".join(f"step {i}: train loss {1 / i:.4f}\n" for i in range(1, 30)))

    missing = run_cli("watch", "ssh://box/nope/train.log")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "ssh box: no such file /nope/train.log"

    async def scenario():
        hosts = load_config().ssh.hosts
        mirror = RemoteLogMirror(SSHTransport(resolve_target("box", hosts)), str(remote),
                                 tmp_path / "copy.log", tmp_path / "copy.offset")
        app = TrainctlApp(watch_path=tmp_path / "copy.log", remote_log=mirror,
                          watch_label=f"ssh://box{remote}", refresh_seconds=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            log = app.screen.query_one(LogView)
            await wait_until(pilot, lambda: any("step 29:" in line for line in log.lines))
            with open(remote, "a") as out:
                out.write("step 30: train loss 0.0333\n")
            await wait_until(pilot, lambda: any("step 30:" in line for line in log.lines))
            assert app.screen.monitor.metrics.series["loss"].xs[-1] == 30
            assert sum("step 29:" in line for line in log.lines) == 1

    asyncio.run(scenario())


def test_a_size_probed_before_another_copier_went_on_is_not_a_truncation(ssh_env, tmp_path):
    """Two refreshers (a node watcher and the TUI) mirror one log: one's probe saw the log
    smaller than the offset the other has copied to since. That is not a truncation: the
    log is copied on, once."""
    import asyncio

    from trainctl_tui.backends.remote.runner import RemoteLogMirror
    from trainctl_tui.backends.remote.transport import SSHTransport, resolve_target
    from trainctl_tui.config.loader import load_config

    remote = tmp_path / "train.log"
    remote.write_text("step 1\nstep 2\n")
    mirror = RemoteLogMirror(SSHTransport(resolve_target("box", load_config().ssh.hosts)),
                             str(remote), tmp_path / "copy.log", tmp_path / "copy.offset")
    asyncio.run(mirror.sync())
    with open(remote, "a") as out:
        out.write("step 3\n")
    assert asyncio.run(mirror.sync(7)) == 7  # 7: a size probed when one line was there
    assert (tmp_path / "copy.log").read_text() == "step 1\nstep 2\nstep 3\n"
    remote.write_text("new\n")  # truly truncated: said so, followed again
    asyncio.run(mirror.sync(4))
    assert (tmp_path / "copy.log").read_text() == (
        "step 1\nstep 2\nstep 3\n\n[trainctl] remote log was truncated; following it again\nnew\n")


def test_the_watch_prompt_opens_a_remote_log_in_the_tui(ssh_env, tmp_path):
    import asyncio

    from textual.widgets import Input
    from uihelpers import wait_until

    from trainctl_tui.ui.app import TrainctlApp
    from trainctl_tui.ui.screens.session import SessionScreen
    from trainctl_tui.ui.screens.watch_prompt import WatchPrompt
    from trainctl_tui.ui.widgets.logview import LogView

    remote = tmp_path / "their run" / "train.log"
    remote.parent.mkdir()
    remote.write_text("iter 1: loss 2.5000, time 10.0ms\niter 2: loss 2.2500, time 10.0ms\n")

    async def scenario():
        app = TrainctlApp(refresh_seconds=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("w")
            await wait_until(pilot, lambda: isinstance(app.screen, WatchPrompt))
            app.screen.query_one(Input).value = "ssh://box/nowhere.log"
            await pilot.press("enter")
            await wait_until(pilot, lambda: "no such file" in str(
                app.screen.query_one("#watch-error").render()))
            app.screen.query_one(Input).value = f"ssh://box{remote}"
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            log = app.screen.query_one(LogView)
            await wait_until(pilot, lambda: any("iter 2" in line for line in log.lines))
            assert app.screen.label == f"ssh://box{remote}"

    asyncio.run(scenario())


def test_deep_validation_of_a_remote_checkpoint_runs_on_the_host(ssh_env, tmp_path):
    import asyncio
    import shutil

    from trainctl_tui.app.service import Service

    ckpt = tmp_path / "remote ckpts"
    ckpt.mkdir()
    fixtures = Path(__file__).parent / "fixtures" / "checkpoints"
    shutil.copy(fixtures / "crc_flipped.pt", ckpt / "step_000010.pt")
    session_id = launch_on_box("--checkpoint-dir", str(ckpt), "--", "true")
    wait_for(lambda: info(session_id)["status"] == "succeeded")

    async def validate():
        return await Service().validate_checkpoint(session_id, str(ckpt / "step_000010.pt"))

    report = asyncio.run(validate())
    assert report.status == "corrupt" and "CRC mismatch" in report.reason


def test_keras_checkpoints_on_a_host_are_inspected_there(ssh_env, tmp_path):
    """The HDF5 reader goes to the host beside the inspector (ckpt_hdf5.py)."""
    import shutil

    ckpt = tmp_path / "keras ckpts"
    ckpt.mkdir()
    fixtures = Path(__file__).parent / "fixtures" / "checkpoints" / "frameworks"
    shutil.copy(fixtures / "keras_weights" / "ckpt_epoch_03.weights.h5", ckpt)
    shutil.copy(fixtures / "corrupt" / "truncated.keras", ckpt / "model.04-0.50.keras")
    session_id = launch_on_box("--checkpoint-dir", str(ckpt), "--", "true")
    wait_for(lambda: info(session_id)["status"] == "succeeded")
    listed = run_cli("checkpoints", session_id, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["checkpoints"]}
    weights = rows["ckpt_epoch_03.weights.h5"]
    assert (weights["status"], weights["info"]["format"], weights["step"]) == (
        "ok", "keras-weights", 9)
    assert rows["model.04-0.50.keras"]["status"] == "writing"


def test_gpu_and_cpu_samples_travel_with_the_status_probe(ssh_env, trainctl_home, tmp_path):
    server, workdir = ssh_env
    with open(tmp_path / "config.toml", "a") as config:
        config.write("[defaults]\nusage_sample_seconds = 0.2\n")
    session_id = launch_on_box("--", sys.executable, "-c",
                               "import time\nx = bytearray(32 << 20)\ntime.sleep(30)")
    local = trainctl_home / "sessions" / session_id / "usage.json"

    def listed():
        entry = info(session_id)  # a refresh: one probe, which carries the samples
        return entry if entry["rss_mb"] and local.exists() and len(
            json.loads(local.read_text())["samples"]) >= 3 else None

    entry = wait_for(listed)
    assert entry["rss_mb"] >= 32
    remote = json.loads((workdir / "sessions" / session_id / "usage.json").read_text())
    kept = json.loads(local.read_text())
    remote_times = [sample[0] for sample in remote["samples"]]
    kept_times = [sample[0] for sample in kept["samples"]]
    assert kept_times == sorted(set(kept_times))  # the ring grows, never repeats a sample
    assert {t for t in kept_times if t >= remote_times[0]} <= set(remote_times)
    if remote["gpus"] == []:  # no nvidia-smi on this host: said once, CPU and memory kept
        assert kept["gpu_note"] == "no GPU: nvidia-smi not found" and entry["gpus"] == []
    assert run_cli("stop", session_id).returncode == 0


def test_when_each_step_was_reached_travels_with_the_status_probe(ssh_env, trainctl_home,
                                                                  tmp_path):
    server, workdir = ssh_env
    with open(tmp_path / "config.toml", "a") as config:
        config.write("[defaults]\nheartbeat_seconds = 0.2\n")
    session_id = launch_on_box("--", sys.executable, "-u", "-c",
                               "import time\nfor s in range(1, 31):\n"
                               "    print('step %d/30 loss %.3f' % (s, 1.0 / s))\n"
                               "    time.sleep(0.05)\n")
    # Each refresh is a probe, which carries the newest records of the runner's steps.jsonl;
    # the one that sees the final state carries its end (written before that state).
    wait_for(lambda: info(session_id)["status"] == "succeeded")

    def records(folder: Path) -> list[dict]:
        return [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]

    remote = records(workdir / "sessions" / session_id)
    assert remote[0].keys() == {"runner"} and remote[-1].keys() == {"end"}
    assert records(trainctl_home / "sessions" / session_id) == remote
    other = tmp_path / "other.log"
    other.write_text("step 1 loss 2\n")
    result = run_cli("compare", session_id, str(other), "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)["runs"][0]
    assert run["elapsed_from"] == "runner" and None not in run["x_elapsed"]
    assert len(run["x_elapsed"]) == 30
