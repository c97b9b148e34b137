"""The budget guard on a RunPod pod (the local GraphQL server, the test sshd as the pod): the
pod's own price, the stop at the budget over SSH, then the pod's stop command. runpodctl is
not on this machine: the command is run and its failure recorded, which is all a test here
can show of it."""

from __future__ import annotations

import json
import re
import sys

from runpod_server import runpod_server  # noqa: F401 - the fixture
from sshd import sshd_server  # noqa: F401 - the fixture
from test_budget_runner import TRAIN
from test_cli import wait_for
from test_runpod_session import launch, pod_env, run, session_of  # noqa: F401

from trainctl_tui.backends.runpod import cloud as rp
from trainctl_tui.backends.runpod.provider import BUDGET_STOP
from trainctl_tui.core.machines import CreateRequest
from trainctl_tui.core.models import Status


def test_the_budget_stops_the_run_on_a_pod_and_then_the_pod(pod_env, trainctl_home,  # noqa: F811
                                                            tmp_path):
    server, workdir = pod_env
    config = tmp_path / "config.toml"
    config.write_text("[defaults]\nheartbeat_seconds = 0.5\n" + config.read_text())
    pod = run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod",
                                                             type="NVIDIA A40")))
    server.state.pods[pod.id]["costPerHr"] = 3600.0  # $1 a second: the budget in seconds
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    session = launch(pod.id, sys.executable, "-u", str(script), "1000", "0.1",
                     checkpoint_dir=str(tmp_path / "ckpt"), budget=6.0)
    remote = workdir / "sessions" / session.id
    spec = json.loads((remote / "spec.json").read_text())
    assert spec["price_per_hour"] == 3600.0 and spec["budget_stop_command"] == BUDGET_STOP
    stopped = wait_for(lambda: (s := session_of(session.id)).status is Status.STOPPED and s,
                       timeout=60)
    assert re.fullmatch(r"budget reached \(\$6\.\d\d of \$6\.00\)", stopped.detail)
    assert "got SIGTERM" in (remote / "train.log").read_text()
    ran = wait_for(lambda: json.loads((remote / "status.json").read_text()).get("budget_stop"),
                   timeout=30)
    assert ran["command"] == BUDGET_STOP and ran["exit_code"] != 0  # no runpodctl here
    assert session_of(session.id).status is Status.STOPPED  # never taken for an interruption
