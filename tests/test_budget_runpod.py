"""The budget guard on a RunPod pod (the local GraphQL server, the test sshd as the pod): the
pod's own price, the stop at the budget over SSH (SIGTERM, a checkpoint saved), then the pod
stopped (or terminated) through the GraphQL server with the pod's key, and a failing API call
said in train.log, status.json and the session's detail. The "pod"'s sshd puts
RUNPOD_API_KEY in its sessions' environment, as a pod's container has it."""

from __future__ import annotations

import json
import re
import sys

import pytest
from runpod_server import (
    API_KEY,
    runpod_server,  # noqa: F401 - the fixture
)
from sshd import SshServer, find_sshd, missing
from test_budget_runner import TRAIN
from test_cli import wait_for
from test_runpod_session import launch, pod_env, run, session_of  # noqa: F401

from trainctl_tui.backends.runpod import cloud as rp
from trainctl_tui.backends.runpod.provider import BUDGET_STOP
from trainctl_tui.backends.runpod.runner_pod_api import env_file_values, pod_api_key
from trainctl_tui.core.machines import CreateRequest
from trainctl_tui.core.models import Status


class PodSshServer(SshServer):
    """The test sshd, with the pod's API key in every session's environment."""

    def _write_files(self) -> None:
        super()._write_files()
        config = self.sshd_config.read_text()
        setenv = "SetEnv PYENV_REHASH_TIMEOUT=1"
        self.sshd_config.write_text(config.replace(
            setenv, f"{setenv} RUNPOD_API_KEY={API_KEY}"))


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory):
    sshd = find_sshd()
    if sshd is None:
        missing("sshd is not installed (apt-get install openssh-server)")
    server = PodSshServer(tmp_path_factory.mktemp("pod-sshd"), sshd)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def budget_run(server, tmp_path, config_extra: str = ""):
    """A pod at $1 a second and a run on it with a $6 budget; (pod id, session, remote dir)."""
    _, workdir = server
    server = server[0]
    config = tmp_path / "config.toml"
    text = config.read_text().replace("[runpod]\n", "[runpod]\n" + config_extra)
    config.write_text("[defaults]\nheartbeat_seconds = 0.5\n" + text)
    pod = run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod",
                                                             type="NVIDIA A40")))
    server.state.pods[pod.id]["costPerHr"] = 3600.0  # $1 a second: the budget in seconds
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    session = launch(pod.id, sys.executable, "-u", str(script), "1000", "0.1",
                     checkpoint_dir=str(tmp_path / "ckpt"), budget=6.0)
    return pod.id, session, workdir / "sessions" / session.id


def stopped_by_budget(session):
    stopped = wait_for(lambda: (s := session_of(session.id)).status is Status.STOPPED and s,
                       timeout=60)
    assert stopped.detail.startswith("budget reached ($6.")
    return stopped


def budget_stop(remote):
    """The machine stop's record (until it is written the final status says it is pending)."""
    return wait_for(lambda: ((record := json.loads((remote / "status.json").read_text()).get(
        "budget_stop")) or {}).get("at") and record, timeout=60)


def trainctl_lines(remote) -> list[str]:
    return [line[len("[trainctl] "):] for line in (remote / "train.log").read_text().splitlines()
            if line.startswith("[trainctl] ")]


def test_the_budget_stops_the_run_on_a_pod_and_then_the_pod(pod_env, trainctl_home,  # noqa: F811
                                                            tmp_path):
    server = pod_env[0]
    pod_id, session, remote = budget_run(pod_env, tmp_path)
    spec = json.loads((remote / "spec.json").read_text())
    assert spec["price_per_hour"] == 3600.0
    assert (spec["runpod_pod_id"], spec["runpod_api_url"], spec["runpod_shutdown_behavior"]) \
        == (pod_id, server.url, "stop")
    assert spec["budget_stop_command"] == BUDGET_STOP  # the fallback
    assert server.state.pods[pod_id]["desiredStatus"] == "RUNNING"
    stopped = stopped_by_budget(session)
    assert re.fullmatch(r"budget reached \(\$6\.\d\d of \$6\.00\)", stopped.detail)
    assert "got SIGTERM" in (remote / "train.log").read_text()
    record = budget_stop(remote)
    assert record["error"] is None and record["command"] is None  # runpodctl was not needed
    assert (record["action"], record["machine"], record["state"]) == \
        ("stop", f"pod {pod_id}", "exited")
    # Stopped on RunPod's side, by one podStop with the pod's key.
    assert server.state.pods[pod_id]["desiredStatus"] == "EXITED"
    stops = [r for r in server.state.requests if "podStop" in r["query"]]
    assert [(r["status"], pod_id in r["query"]) for r in stops] == [(200, True)]
    lines = trainctl_lines(remote)
    assert lines[-1] == f"budget stop: pod {pod_id} stopped through the RunPod API (now exited)"
    assert session_of(session.id).status is Status.STOPPED  # never taken for an interruption


def test_terminate_as_the_config_says_through_a_passing_failure(pod_env, trainctl_home,  # noqa: F811
                                                                tmp_path):
    server = pod_env[0]
    server.state.fail("503", "podTerminate")  # RunPod busy once: tried again
    pod_id, session, remote = budget_run(pod_env, tmp_path, 'shutdown_behavior = "terminate"\n')
    spec = json.loads((remote / "spec.json").read_text())
    assert spec["runpod_shutdown_behavior"] == "terminate"
    stopped_by_budget(session)
    record = budget_stop(remote)
    assert record["error"] is None and record["action"] == "terminate"
    assert pod_id not in server.state.pods  # gone on RunPod's side
    assert [r["status"] for r in server.state.requests if "podTerminate" in r["query"]] == \
        [503, 200]
    assert trainctl_lines(remote)[-1] == \
        f"budget stop: pod {pod_id} terminated through the RunPod API"


def test_a_failing_stop_is_said_everywhere_never_a_silent_success(pod_env, trainctl_home,  # noqa: F811
                                                                  tmp_path):
    server = pod_env[0]
    server.state.fail("graphql:Something went wrong. Please try again later.", "podStop")
    pod_id, session, remote = budget_run(pod_env, tmp_path)
    stopped_by_budget(session)
    record = budget_stop(remote)
    api_error = (f"podStop at {server.url}: Something went wrong. Please try again later.")
    # runpodctl, the fallback, is not on this machine either.
    assert record["error"].startswith(api_error + "; sh -c 'runpodctl stop pod")
    assert record["error"].endswith("runpodctl: not found")
    assert record["exit_code"] == 127 and record["command"] == BUDGET_STOP
    assert server.state.pods[pod_id]["desiredStatus"] == "RUNNING"  # still billing
    lines = trainctl_lines(remote)
    assert f"budget stop: could not stop pod {pod_id}: {api_error}" in lines
    assert lines[-1] == (f"budget stop: pod {pod_id} was NOT stopped and may still cost money "
                         f"({record['error']})")
    detail = wait_for(lambda: "NOT stopped" in (s := session_of(session.id)).detail and s,
                      timeout=30).detail
    assert re.fullmatch(r"budget reached \(\$6\.\d\d of \$6\.00\); pod \w+ was NOT stopped "
                        r"and may still cost money \(.*\)", detail)


# --------------------------------------------------------------------------- the pod's key


def test_the_pods_key_is_found_where_runpod_puts_it(tmp_path):
    proc_environ = tmp_path / "environ"
    proc_environ.write_bytes(b"PATH=/usr/bin\0RUNPOD_POD_ID=abc\0RUNPOD_API_KEY=rpa_PROC\0")
    rp_environment = tmp_path / "rp_environment"
    rp_environment.write_text('export RUNPOD_POD_ID="abc"\nexport RUNPOD_API_KEY="rpa_FILE"\n')
    missing_file = str(tmp_path / "absent")
    assert env_file_values(str(rp_environment)) == {"RUNPOD_POD_ID": "abc",
                                                    "RUNPOD_API_KEY": "rpa_FILE"}
    assert pod_api_key({"RUNPOD_API_KEY": "rpa_ENV"}, [str(proc_environ)]) == \
        ("rpa_ENV", "$RUNPOD_API_KEY")
    assert pod_api_key({}, [missing_file, str(proc_environ), str(rp_environment)]) == \
        ("rpa_PROC", str(proc_environ))
    assert pod_api_key({}, [missing_file, str(rp_environment)]) == \
        ("rpa_FILE", str(rp_environment))
    assert pod_api_key({"RUNPOD_API_KEY": " "}, [missing_file]) == \
        (None, f"$RUNPOD_API_KEY, {missing_file}")


def test_no_key_on_the_pod_or_no_api_is_a_clear_error(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sshd import free_port

    from trainctl_tui.backends.runpod import runner_pod_api
    from trainctl_tui.backends.runpod.runner_part import RunPodRunnerPart
    from trainctl_tui.backends.runpod.runner_pod_api import PodAPIError, end_pod

    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    absent = str(tmp_path / "absent")
    monkeypatch.setattr(runner_pod_api, "POD_ENV_FILES", (absent,))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = {"runpod_pod_id": "pod0001x", "runpod_api_url": url,
            "runpod_shutdown_behavior": "stop"}
    record = RunPodRunnerPart(SimpleNamespace(spec=spec)).stop_machine()
    assert (record["action"], record["machine"]) == ("stop", "pod pod0001x")
    assert record["error"] == f"no RunPod API key on the pod (looked in $RUNPOD_API_KEY, {absent})"
    waits = []
    with pytest.raises(PodAPIError) as raised:
        end_pod(url, "rpa_KEY", "pod0001x", "stop", sleep=waits.append)
    assert str(raised.value).startswith(f"cannot reach {url} (")
    assert str(raised.value).endswith(") after 4 tries") and waits == [1.0, 2.0, 4.0]
