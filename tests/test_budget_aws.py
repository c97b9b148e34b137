"""The budget guard on EC2 (through the SSM double in front of moto): the runner on the
instance stops the run at the budget, then shuts the instance down, which AWS turns into a
stop or a termination as the instance was created to (InstanceInitiatedShutdownBehavior, the
template's `shutdown_behavior`)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import boto3
import pytest
from moto_aws import aws, moto_server  # noqa: F401 - the fixtures
from ssm_double import ssm  # noqa: F401 - the fixture
from test_aws_sessions import launch, new_instance, run, wait_status
from test_budget_runner import TRAIN

from trainctl_tui.app.service import Service
from trainctl_tui.core.models import Status

# `shutdown` on the instance: returns at once, as the real one does with `+1`; a minute
# later (2 s here) EC2 applies the instance's shutdown behavior.
SHUTDOWN = r"""#!{python}
import os, sys, time
open({marker!r}, "a").write(" ".join(sys.argv[1:]) + "\n")
if os.fork() == 0:
    os.setsid()
    time.sleep(2)
    import boto3
    ec2 = boto3.client("ec2", region_name="us-east-1")
    behavior = ec2.describe_instance_attribute(
        InstanceId={instance!r}, Attribute="instanceInitiatedShutdownBehavior"
    )["InstanceInitiatedShutdownBehavior"]["Value"]
    if behavior == "terminate":
        ec2.terminate_instances(InstanceIds=[{instance!r}])
    else:
        ec2.stop_instances(InstanceIds=[{instance!r}])
"""


@pytest.fixture
def priced_ec2(ssm, tmp_path):  # noqa: F811 - pytest fixture injection
    (tmp_path / "config.toml").write_text(
        "[defaults]\nheartbeat_seconds = 0.5\n"
        "[aws]\nregion = \"us-east-1\"\nprices = { \"t3.micro\" = 3600.0 }\n\n"
        f"[aws.templates.default]\nworkdir = \"{ssm.workdir}\"\npython = \"{sys.executable}\"\n"
        "instance_type = \"t3.micro\"\n")
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return boto3.client("ec2", region_name="us-east-1"), script


def shutdown_on_path(ssm, tmp_path: Path, instance: str) -> Path:  # noqa: F811
    bin_dir = tmp_path / "instance-bin"
    bin_dir.mkdir()
    marker = tmp_path / "shutdown-called"
    tool = bin_dir / "shutdown"
    tool.write_text(SHUTDOWN.format(python=sys.executable, marker=str(marker),
                                    instance=instance))
    tool.chmod(0o755)
    ssm.env["PATH"] = f"{bin_dir}:{ssm.env['PATH']}"
    return marker


@pytest.mark.parametrize("behavior, final_state", [("terminate", "terminated"),
                                                    ("stop", "stopped")])
def test_the_budget_stops_the_run_and_the_instance(ssm, priced_ec2, trainctl_home,  # noqa: F811
                                                   tmp_path, behavior, final_state):
    client, script = priced_ec2
    instance = new_instance(client, InstanceInitiatedShutdownBehavior=behavior)
    marker = shutdown_on_path(ssm, tmp_path, instance)
    service = Service()
    session = launch(service, instance, [sys.executable, "-u", str(script), "1000", "0.1"],
                     checkpoint_dir="ckpt", budget=6.0)
    remote = ssm.path(instance, "sessions", session.id)
    spec = json.loads((remote / "spec.json").read_text())
    assert spec["price_per_hour"] == 3600.0 and spec["budget"] == 6.0
    assert spec["budget_stop_command"] == "shutdown -h +1"
    stopped = run(wait_status(service, session.id, lambda s: not s.status.active))
    assert stopped.status is Status.STOPPED, stopped.detail
    assert re.fullmatch(r"budget reached \(\$6\.\d\d of \$6\.00\)", stopped.detail)
    log = (remote / "train.log").read_text()
    assert re.search(r"got SIGTERM at step \d+, saved checkpoint", log)
    ran = run(wait_status(service, session.id, lambda s: (json.loads(  # the stop's record
        (remote / "status.json").read_text()).get("budget_stop") or {}).get("at")))
    assert ran.status is Status.STOPPED
    status = json.loads((remote / "status.json").read_text())
    assert status["budget_stop"]["exit_code"] == 0
    assert status["budget_stop"]["command"] == ["shutdown", "-h", "+1"]
    assert marker.read_text() == "-h +1\n"

    def state() -> str:
        described = client.describe_instances(InstanceIds=[instance])
        return described["Reservations"][0]["Instances"][0]["State"]["Name"]

    run(wait_status(service, session.id, lambda s: state() == final_state, timeout=30))
    # the instance is gone: the session stays stopped by its budget, not "interrupted"
    again = run(service.get(session.id))
    assert again.status is Status.STOPPED and again.detail == stopped.detail
    service.close()


def test_a_machine_its_guard_stopped_unwatched_is_no_interruption(
        ssm, priced_ec2, trainctl_home, tmp_path):  # noqa: F811
    """Nobody watched: the last look was at the launch. When trainctl looks again the
    instance is gone; the spending counted on from that look passed the budget, so its own
    guard stopped it: stopped, never unreachable or resumed elsewhere."""
    import time

    client, script = priced_ec2
    instance = new_instance(client, InstanceInitiatedShutdownBehavior="terminate")
    marker = shutdown_on_path(ssm, tmp_path, instance)
    service = Service()
    session = launch(service, instance, [sys.executable, "-u", str(script), "1000", "0.1"],
                     checkpoint_dir="ckpt", budget=6.0)
    service.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (marker.exists() and client.describe_instances(
            InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]
            == "terminated"):
        time.sleep(0.3)
    service = Service()
    seen = run(service.get(session.id))
    assert seen.status is Status.STOPPED
    assert re.fullmatch(r"budget reached \(its machine stopped itself; \$\d+\.\d\d of \$6\.00 "
                        r"at the last look\)", seen.detail), seen.detail
    service.close()
