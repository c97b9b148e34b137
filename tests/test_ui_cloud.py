"""Cloud machines in the TUI: EC2 instances (moto + the executing SSM double) on the Instances
screen with their market, $/h and cost; stop and terminate from the keyboard (terminate asks and
names the machine); the create form; and the launch form's machine fields."""

from __future__ import annotations

import asyncio

import boto3
import pytest
from moto_aws import REGION, aws, moto_server  # noqa: F401 - the fixtures
from ssm_double import ssm  # noqa: F401 - the fixture
from test_ui_instances import cell, open_instances, row_keys, text
from textual.widgets import Checkbox, Input, Select
from uihelpers import notifications, wait_until

from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens.confirm import ConfirmScreen
from trainctl_tui.ui.screens.create_instance import CreateInstanceScreen
from trainctl_tui.ui.screens.instances import InstancesScreen
from trainctl_tui.ui.screens.launch import LaunchScreen

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def ec2(ssm, tmp_path):  # noqa: F811 - fixture injection
    client = boto3.client("ec2", region_name=REGION)
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (tmp_path / "config.toml").write_text(f"""
[aws]
region = "{REGION}"
prices = {{ "g5.xlarge" = 1.006, "t3.micro" = 0.0104 }}

[aws.templates.default]
ami = "{image}"
instance_type = "t3.micro"
workdir = "{ssm.workdir}"

[aws.templates.a10g]
ami = "{image}"
instance_type = "g5.xlarge"
spot = true
workdir = "{ssm.workdir}"
""")
    return client, image


def run_managed(client, image, instance_type="g5.xlarge", name="bert") -> str:
    return client.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "trainctl:managed", "Value": "true"}, {"Key": "Name", "Value": name}]}],
    )["Instances"][0]["InstanceId"]


def ec2_state(client, instance_id: str) -> str:
    return client.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"][0]["State"]["Name"]


def test_instances_stop_and_terminate_from_the_keyboard(ec2):
    client, image = ec2
    instance_id = run_managed(client, image)

    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        async with app.run_test(size=(120, 35)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: screen.probes >= 1, timeout=60, what="probe")
            key = f"aws:{instance_id}"
            assert row_keys(screen) == [key]
            assert cell(screen, key, "name") == "bert"
            assert cell(screen, key, "state") == "running"
            assert cell(screen, key, "market") == "on-dem"
            assert cell(screen, key, "gpus") == "1x A10G"
            assert cell(screen, key, "cost") == "1.006"
            assert "1 billing $1.01/h" in text(screen, "#status-line")
            assert f"{instance_id} bert" in text(screen, "#instance-detail")

            await pilot.press("x")
            await wait_until(pilot, lambda: ec2_state(client, instance_id) == "stopped",
                             timeout=60, what="stopped")
            await wait_until(pilot, lambda: cell(screen, key, "state") == "stopped",
                             timeout=60, what="row shows stopped")

            await pilot.press("T")
            confirm = await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                                       and app.screen, what="confirmation")
            assert confirm.question == f"Terminate aws {instance_id} (bert)?"
            assert "g5.xlarge on-demand, stopped" in confirm.detail
            await pilot.press("n")  # no: nothing happens
            await pilot.pause(0.5)
            assert ec2_state(client, instance_id) == "stopped"

            await pilot.press("T")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen),
                             what="confirmation")
            await pilot.press("y")
            await wait_until(pilot, lambda: ec2_state(client, instance_id) in
                             ("shutting-down", "terminated"), timeout=60, what="terminated")
            assert isinstance(app.screen, InstancesScreen)

    asyncio.run(scenario())


def test_the_create_form_rents_a_spot_instance(ec2):
    client, _ = ec2

    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        async with app.run_test(size=(120, 35)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: screen.probes >= 1, timeout=60, what="probe")
            await pilot.press("c")
            form = await wait_until(pilot, lambda: isinstance(app.screen, CreateInstanceScreen)
                                    and app.screen, what="create form")
            await wait_until(pilot, lambda: form.query_one("#c-template", Select).value
                             == "default", what="templates loaded")
            form.query_one("#c-template", Select).value = "a10g"
            form.query_one("#c-spot", Checkbox).value = True
            form.query_one("#c-price", Input).value = "0.75"
            form.query_one("#c-name", Input).value = "from-the-form"
            form.query_one("#c-disk", Input).value = "0"
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            assert "disk must be a whole number of GB (at least 1), not '0'" in \
                str(form.query_one("#launch-error").render())
            form.query_one("#c-disk", Input).value = "64"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, InstancesScreen),
                             timeout=90, what="form closed")
            await wait_until(pilot, lambda: any("created aws i-" in n
                                                for n in notifications(app)), what="notice")
            [instance] = [i for r in client.describe_instances()["Reservations"]
                          for i in r["Instances"]]
            assert instance["InstanceType"] == "g5.xlarge"
            assert instance.get("InstanceLifecycle") == "spot"
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert tags["Name"] == "from-the-form" and tags["trainctl:template"] == "a10g"
            key = f"aws:{instance['InstanceId']}"
            await wait_until(pilot, lambda: key in row_keys(screen), timeout=60,
                             what="new row")
            assert cell(screen, key, "market") == "spot"

    asyncio.run(scenario())


def test_the_launch_form_shows_machine_fields_for_cloud_providers(ec2):
    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        async with app.run_test(size=(120, 35)) as pilot:
            await pilot.press("n")
            form = await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen)
                                    and app.screen, what="launch form")
            provider = form.query_one("#f-provider", Select)
            options = [value for _, value in provider._options]
            assert options == ["local", "aws", "aws:a10g"]
            machine = form.query_one("#m-type").parent
            assert not machine.display  # local: no machine to create
            provider.value = "aws:a10g"
            await pilot.pause(0.2)
            assert machine.display
            assert form.query_one("#m-spot", Checkbox).value is True  # the template's spot
            assert form.query_one("#m-s3").parent.display
            assert not form.query_one("#m-gpu").parent.display  # that is for runpod
            assert form.query_one("#f-cwd", Input).value == ""  # the host's login dir
            form.query_one("#f-command", Input).value = "python train.py"
            form.query_one("#m-s3", Input).value = "bucket/x"
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            assert "the S3 prefix must look like s3://bucket/prefix, not 'bucket/x'" in \
                str(form.query_one("#launch-error").render())
            provider.value = "local"
            await pilot.pause(0.2)
            assert not machine.display

    asyncio.run(scenario())


def test_an_ec2_shell_is_ssm_when_possible_else_ssh(tmp_path, monkeypatch):
    import types

    from trainctl_tui.backends.aws.provider import aws_shell
    from trainctl_tui.config.loader import load_config
    from trainctl_tui.core.errors import TrainctlError
    from trainctl_tui.core.machines import Instance

    (tmp_path / "config.toml").write_text('[aws]\nregion = "eu-west-1"\n'
                                          '[aws.templates.a10g]\nssh_user = "ec2-user"\n')
    service = types.SimpleNamespace(config=load_config())
    instance = Instance(provider="aws", id="i-0abc", address="54.1.2.3", state="running",
                        extra={"key_name": "mine", "tags": {"trainctl:template": "a10g"}})
    everything = {"aws", "session-manager-plugin"}.__contains__
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert aws_shell(service, instance, has=everything) == [
        "aws", "ssm", "start-session", "--target", "i-0abc", "--region", "eu-west-1"]
    argv = aws_shell(service, instance, has={"aws"}.__contains__)  # no plugin: ssh
    assert argv[0] == "ssh" and argv[-1] == "54.1.2.3" and "ec2-user" in argv
    instance.extra.pop("key_name")  # no key pair: no way in but SSM
    with pytest.raises(TrainctlError, match="session-manager-plugin"):
        aws_shell(service, instance, has={"aws"}.__contains__)
