"""`trainctl metrics` reads every source `trainctl watch` takes, with the same errors: a log
file, a session, and ssh://[user@]host[:port]/path against a real sshd on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from sshd import sshd_server  # noqa: F401 - the fixture

from trainctl_tui.monitor.metrics import extract_file

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"


@pytest.fixture
def ssh_env(sshd_server, tmp_path, monkeypatch, trainctl_home):  # noqa: F811 - fixture
    (tmp_path / "config.toml").write_text(
        f"[ssh.hosts.box]\nhost = \"{sshd_server.alias}\"\n"
        f"workdir = {json.dumps(str(tmp_path / 'work on host'))}\n"
        "python = \"/usr/bin/python3\"\n")
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    return sshd_server


def series_points(output: str) -> dict[str, list]:
    data = json.loads(output)
    return {name: list(zip(s["x"], s["y"], strict=True)) for name, s in data["series"].items()}


def expected_points(path: Path) -> dict[str, list]:
    metrics = extract_file(path)
    return {name: list(zip(s.xs, s.ys, strict=True)) for name, s in metrics.series.items()}


def test_a_local_log_gives_every_point_as_json(trainctl_home):
    log = LOGS / "lightning_tqdm_steps.log"
    result = run_cli("metrics", str(log), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["log"] == str(log)
    points = series_points(result.stdout)
    assert points == expected_points(log) and len(points["loss"]) == 30


@pytest.mark.parametrize("target", ["{tmp}", "{tmp}/nope/train.log", "./missing.log"])
def test_a_bad_local_source_fails_as_watch_fails(trainctl_home, tmp_path, target):
    target = target.format(tmp=tmp_path)
    metrics, watch = run_cli("metrics", target), run_cli("watch", target)
    assert metrics.returncode == watch.returncode == 2
    assert metrics.stderr == watch.stderr
    assert metrics.stderr.startswith(("no such log file: ", f"{tmp_path} is a directory"))


def test_an_unknown_session_name_still_says_so(trainctl_home):
    result = run_cli("metrics", "no-such-run")
    assert result.returncode == 2
    assert result.stderr.strip() == "no session 'no-such-run' (see trainctl sessions)"


def test_a_log_on_an_ssh_host_is_read_whole(ssh_env, tmp_path):
    remote = tmp_path / "run on host $(x)" / "train.log"
    remote.parent.mkdir()
    # more than one mirror chunk (8 MiB), so the whole log takes several copies
    with open(remote, "w") as out:
        for step in range(1, 400_001):
            out.write(f"step {step}: train loss {1 / step:.6f}, lr 3.0e-4\n")
    assert remote.stat().st_size > 9 << 20
    url = f"ssh://box{remote}"

    result = run_cli("metrics", url, "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["log"] == url
    points = series_points(result.stdout)
    assert len(points["loss"]) == 400_000 and points["loss"][-1] == (400_000, 0.000003)
    assert points == expected_points(remote)

    with open(remote, "a") as out:  # run again after the log grew: the new point is there
        out.write("step 400001: train loss 0.000001, lr 3.0e-4\n")
    again = series_points(run_cli("metrics", url, "--json", timeout=180).stdout)
    assert again["loss"][-1] == (400_001, 0.000001) and len(again["loss"]) == 400_001

    text = run_cli("metrics", url)
    assert text.returncode == 0 and "400,001" in text.stdout
    assert url in text.stdout.replace("\n", "")  # the title names the URL (wrapped at 80)


@pytest.mark.parametrize("url", ["ssh://box/nope/train.log", "ssh://box", "ssh:///x.log"])
def test_a_bad_ssh_source_fails_as_watch_fails(ssh_env, url):
    metrics, watch = run_cli("metrics", url), run_cli("watch", url)
    assert metrics.returncode == watch.returncode == 2
    assert metrics.stderr == watch.stderr and metrics.stderr.count("\n") == 1
    if url == "ssh://box/nope/train.log":
        assert metrics.stderr.strip() == "ssh box: no such file /nope/train.log"


def run_with_stderr_in_a_terminal(code: str, *args: str) -> tuple[int, str, bytes]:
    """(exit code, stdout (a file: no terminal), what a terminal on stderr received)."""
    import os
    import pty
    import subprocess
    import sys
    import tempfile

    leader, follower = pty.openpty()
    stdout = tempfile.TemporaryFile()  # a file, not a pipe nobody reads while we read stderr
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=stdout,
                            stderr=follower, env={**os.environ, "TERM": "xterm"})
    os.close(follower)
    received = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    code = proc.wait()
    os.close(leader)
    stdout.seek(0)
    return code, stdout.read().decode(), received


SLOW_PARSE = ("import sys, time; import trainctl_tui.cli.main as cli; "
              "from trainctl_tui.monitor import index; load = index.load_metrics\n"
              "def slow(*a, progress=None, **k):\n"
              "    return load(*a, progress=lambda d, t: (time.sleep(0.5), progress(d, t)), **k)\n"
              "index.load_metrics = slow; cli.ParseProgress.DELAY = {delay}\n"
              "sys.exit(cli.main(sys.argv[1:]))")


def test_a_long_parse_shows_a_progress_bar_on_stderr_when_stdout_is_no_terminal(trainctl_home,
                                                                            tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i} loss {1 / i:.6f}\n" for i in range(1, 200_001)))
    assert log.stat().st_size > 4 << 20  # several blocks, so the bar moves

    code, out, terminal = run_with_stderr_in_a_terminal(SLOW_PARSE.format(delay=0.2),
                                                        "metrics", str(log), "--json")
    assert code == 0 and len(json.loads(out)["series"]["loss"]["x"]) == 200_000
    assert b"parsing the log" in terminal  # drawn, then erased (transient)

    (log.parent / "train.log.again").write_bytes(log.read_bytes())
    code, out, terminal = run_with_stderr_in_a_terminal(SLOW_PARSE.format(delay=60),
                                                        "metrics", str(log) + ".again")
    assert code == 0 and b"parsing the log" not in terminal  # quicker than the delay
