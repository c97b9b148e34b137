"""The cloud verbs as a user types them: `trainctl instances`, `instance create|start|stop|
terminate`, `prices`, and `launch --provider aws` on a new instance. boto3 in a real
`trainctl` subprocess talks to moto's server through the executing SSM double."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from conftest import run_cli
from moto_aws import REGION, aws, moto_server  # noqa: F401 - the fixtures
from ssm_double import ssm  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cloud_config(ssm, tmp_path):  # noqa: F811 - fixture injection
    """A config with a default (on-demand) and a spot template, as a user would write it."""
    ec2 = boto3.client("ec2", region_name=REGION)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (tmp_path / "config.toml").write_text(f"""
[aws]
region = "{REGION}"
ready_timeout = 60
prices = {{ "g5.xlarge" = 1.006, "t3.micro" = 0.0104 }}

[aws.templates.default]
ami = "{image}"
instance_type = "t3.micro"
workdir = "{ssm.workdir}"
python = "python3"

[aws.templates.a10g]
ami = "{image}"
instance_type = "g5.xlarge"
spot = true
max_price = 0.5
workdir = "{ssm.workdir}"
""")
    return {"ec2": ec2, "ssm": ssm, "image": image}


def instances_json() -> list[dict]:
    result = run_cli("instances", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["errors"] == {}
    return data["instances"]


def state(ec2, instance_id: str) -> str:
    item = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return item["State"]["Name"]


def test_no_cloud_set_up_says_how(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL", "RUNPOD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, no MCP client files
    result = run_cli("instances")
    assert result.returncode == 0
    assert "no cloud set up" in result.stdout and "RUNPOD_API_KEY" in result.stdout
    assert "[aws] in the config" in " ".join(result.stdout.split())


def test_create_list_stop_start_terminate(cloud_config):
    ec2 = cloud_config["ec2"]
    result = run_cli("instance", "create", "--provider", "aws", "--template", "a10g",
                     "--name", "bert")
    assert result.returncode == 0, result.stderr
    assert "created i-" in result.stderr  # progress lines while it waits
    line = result.stdout.strip()
    assert line.startswith("created aws i-") and "bert: g5.xlarge, spot, running" in line
    instance_id = line.split()[2]

    [row] = instances_json()
    assert row["id"] == instance_id and row["name"] == "bert" and row["lifecycle"] == "spot"
    assert row["type"] == "g5.xlarge" and row["state"] == "running" and row["managed"]
    assert row["uptime_seconds"] is not None and row["cost_so_far"] is not None

    table = run_cli("instances").stdout
    assert instance_id in table and "g5.xlarge" in table and "spot" in table
    assert "1 billing" in table

    assert run_cli("instance", "stop", instance_id).returncode == 0
    assert state(ec2, instance_id) == "stopped"
    assert run_cli("instance", "start", instance_id).returncode == 0
    assert state(ec2, instance_id) in ("pending", "running")

    # No terminal to ask on and no --yes: refused, named, nothing changed.
    refused = run_cli("instance", "terminate", instance_id)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"not terminating aws {instance_id} (bert): g5.xlarge, "
        f"{state(ec2, instance_id)}, $0.000/h without confirmation: pass --yes"
    ) or "without confirmation: pass --yes" in refused.stderr
    assert state(ec2, instance_id) != "terminated"

    done = run_cli("instance", "terminate", instance_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"terminating aws {instance_id}")
    assert state(ec2, instance_id) in ("shutting-down", "terminated")


def test_dry_run_changes_nothing(cloud_config):
    ec2 = cloud_config["ec2"]
    result = run_cli("instance", "create", "--provider", "aws", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dry run aws")
    assert ec2.describe_instances()["Reservations"] == []


def test_terminate_refuses_a_machine_trainctl_did_not_create(cloud_config):
    ec2 = cloud_config["ec2"]
    foreign = ec2.run_instances(ImageId=cloud_config["image"], MinCount=1, MaxCount=1,
                                InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    assert instances_json() == []  # only managed ones by default
    everything = json.loads(run_cli("instances", "--json", "--all").stdout)["instances"]
    assert [row["id"] for row in everything] == [foreign]
    refused = run_cli("instance", "terminate", foreign, "--yes")
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert state(ec2, foreign) == "running"


@pytest.mark.parametrize("args, message", [
    (["instance", "create"], "instance create needs --provider aws or --provider runpod"),
    (["instance", "create", "--provider", "aws", "--bid", "0.3"],
     "--gpu and --bid are for runpod; aws takes --type and --max-price"),
    (["instance", "create", "--provider", "runpod", "--type", "g5.xlarge"],
     "--type, --template and --max-price are for aws; runpod takes --gpu and --bid"),
    (["instance", "create", "--provider", "aws", "--spot", "--max-price", "-1"],
     "the price must be > 0, got -1"),
    (["instance", "create", "--provider", "runpod", "--gpu-count", "0"],
     "--gpu-count must be at least 1, got 0"),
    (["instance", "create", "--provider", "runpod", "--bid", "0.2"],
     "--bid is for spot pods: add --spot"),
    (["instance", "create", "--provider", "aws", "--spot", "--on-demand"],
     "--spot and --on-demand exclude each other"),
    (["instance", "stop"], "instance stop needs an instance or pod id (see trainctl instances)"),
    (["instance", "stop", "not-an-id!"],
     "cannot tell which cloud 'not-an-id!' is on: pass --provider aws or --provider runpod"),
    (["instance", "create", "--provider", "aws", "--disk-gb", "0"],
     "--disk-gb must be at least 1, got 0"),
    (["instance", "create", "--provider", "aws", "--container-disk-gb", "20"],
     "--container-disk-gb is for runpod; aws takes --disk-gb"),
    (["launch", "--s3-prefix", "s3://b/p", "--", "python", "x.py"],
     "--s3-prefix is for runs on AWS (--provider aws...)"),
    (["launch", "--provider", "aws", "--s3-prefix", "bucket/p", "--", "python", "x.py"],
     "the S3 prefix must look like s3://bucket/prefix, not 'bucket/p'"),
    (["launch", "--spot", "--", "python", "x.py"],
     "--template, --type, --gpu, --spot ... are for a new cloud machine: use them with "
     "--provider aws or --provider runpod"),
])
def test_bad_input_is_one_clear_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == message


def test_prices_from_spot_history_and_the_config_table(cloud_config):
    result = run_cli("prices", "--provider", "aws", "--type", "g5.xlarge", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["prices"]
    on_demand = [r for r in rows if r["lifecycle"] == "on-demand"]
    assert on_demand and on_demand[0]["price_per_hour"] == 1.006
    assert on_demand[0]["source"] == "config [aws.prices]"
    assert any(r["lifecycle"] == "spot" and r["where"].startswith(REGION) for r in rows)
    table = run_cli("prices", "--provider", "aws", "--type", "g5.xlarge").stdout
    assert "$1.006" in table and "on-demand" in table


def test_launch_on_a_new_instance_runs_the_training_there(cloud_config):
    ec2 = cloud_config["ec2"]
    result = run_cli("launch", "--provider", "aws", "--name", "hello", "--disk-gb", "42",
                     "--s3-prefix", "s3://runs-bucket/team/", "--", "python3", "-c",
                     "print('step 1 loss 0.5', flush=True)", timeout=150)
    assert result.returncode == 0, result.stderr
    session_id = result.stdout.strip().splitlines()[-1]
    assert "is up; starting the run" in result.stderr
    [instance] = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["trainctl:managed"] == "true" and tags["Name"] == "trainctl-hello"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions = json.loads(run_cli("sessions", "--json").stdout)["sessions"]
        if sessions and sessions[0]["status"] == "succeeded":
            break
        time.sleep(1)
    [session] = sessions
    assert session["id"] == session_id and session["status"] == "succeeded"
    assert session["provider"] == f"aws:{instance['InstanceId']}"
    assert "step 1 loss 0.5" in run_cli("logs", session_id).stdout
    spec = json.loads((Path(session["session_dir"]) / "spec.json").read_text())
    assert spec["s3_checkpoint_uri"] == f"s3://runs-bucket/team/{session_id}/checkpoints/"
    [volume] = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                              "Values": [instance["InstanceId"]]}])["Volumes"]
    assert volume["Size"] == 42
