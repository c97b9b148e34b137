"""Multi-node runs on EC2 (issue 16): `launch --nodes N --provider aws[:TEMPLATE]` creates N
instances from the template in one cluster placement group and subnet, with a security group
of the run's own, and starts a runner on each through SSM with its rank and every node's
private IP. boto3 -> a fault proxy -> the SSM double (which runs the commands in a sandbox
folder per instance) -> a placement-group double (moto has none) -> moto."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from aws_faults import FaultProxy
from conftest import run_cli
from moto_aws import aws, moto_server  # noqa: F401 - the fixtures
from placement_groups import PlacementGroups
from ssm_double import SSMDouble, kill_sandbox_runners
from test_aws_sessions import wait_status

from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.backends.aws import api as aws_api
from trainctl_tui.backends.aws.api import AWSError
from trainctl_tui.backends.aws.cloud import AWSCloud
from trainctl_tui.backends.aws.settings import AwsConfig, AwsTemplate
from trainctl_tui.core.machines import CreateRequest
from trainctl_tui.core.models import Status

pytestmark = pytest.mark.timeout(180)

REGION = "us-east-1"
# Prints its node's environment and a few steps; on SIGTERM notes its rank and exits 0.
TRAINER = """\
import os, signal, sys, time
rank = os.environ.get("TRAINCTL_NODE_RANK")
def term(*_):
    with open(sys.argv[1], "a") as f:
        f.write(f"TERM {rank}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
names = ("TRAINCTL_NODE_RANK", "TRAINCTL_NUM_NODES", "TRAINCTL_NODE_IPS", "MASTER_ADDR")
print(" ".join(f"{n}={os.environ.get(n)}" for n in names), flush=True)
for i in range(int(sys.argv[2])):
    print(f"step {i} loss {1.0 / (i + 1):.3f}", flush=True)
    time.sleep(0.1)
print("done", rank, flush=True)
"""


@pytest.fixture
def ec2(aws, tmp_path, monkeypatch):  # noqa: F811 - pytest fixture injection
    """The chain of doubles in front of moto, AWS_ENDPOINT_URL at its front, a template
    `default` (t3.micro, moto's default VPC) and `big` (p4d.24xlarge: EFA, terminates)."""
    sandbox = tmp_path / "instances"
    sandbox.mkdir()
    workdir = f"/opt/trainctl-nodes-{tmp_path.name[-8:]}"
    with PlacementGroups(aws) as groups:
        ssm = SSMDouble(groups.url, sandbox, workdir)
        with FaultProxy(ssm.url) as faults:
            faults.json_error("GetProducts", "AccessDeniedException", "not authorized")
            monkeypatch.setenv("AWS_ENDPOINT_URL", faults.url)
            ssm.env = dict(__import__("os").environ)
            aws_api.reset_clients()
            ssm.start()
            client = boto3.client("ec2", region_name=REGION)
            ami = client.describe_images()["Images"][0]["ImageId"]
            (tmp_path / "config.toml").write_text(
                f'[aws]\nregion = "{REGION}"\n\n[aws.prices]\n"t3.micro" = 0.25\n'
                f'"p4d.24xlarge" = 32.77\n\n'
                f'[aws.templates.default]\nami = "{ami}"\ninstance_type = "t3.micro"\n'
                f'workdir = "{workdir}"\npython = "{sys.executable}"\n\n'
                f'[aws.templates.big]\nami = "{ami}"\ninstance_type = "p4d.24xlarge"\n'
                f'shutdown_behavior = "terminate"\nworkdir = "{workdir}"\n'
                f'python = "{sys.executable}"\n')
            try:
                yield {"client": client, "ssm": ssm, "faults": faults, "groups": groups,
                       "ami": ami, "tmp": tmp_path}
            finally:
                kill_sandbox_runners(sandbox)
                ssm.stop()
                aws_api.reset_clients()


def run(coro):
    return asyncio.run(coro)


def instances(client) -> list[dict]:
    return [raw for res in client.describe_instances()["Reservations"]
            for raw in res["Instances"]]


def ours(client) -> list[dict]:
    """The security groups trainctl made (the VPCs' default groups aside)."""
    return [g for g in client.describe_security_groups()["SecurityGroups"]
            if g["GroupName"] != "default"]


def tags(item: dict) -> dict:
    return {tag["Key"]: tag["Value"] for tag in item.get("Tags") or []}


def cloud(template: str = "default", **changes) -> AWSCloud:
    from trainctl_tui.config.loader import load_config

    settings = load_config().aws
    if changes:
        base = settings.templates[template].model_dump()
        settings = AwsConfig(**{**settings.model_dump(), "templates": {
            template: AwsTemplate(**{**base, **changes})}})
    return AWSCloud(settings, poll_seconds=0.05)


def trainer(tmp_path: Path, steps: int) -> list[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    return [sys.executable, "-u", str(script), str(tmp_path / "marks"), str(steps)]


def wait_nodes(service: Service, session_id: str, predicate):
    """test_aws_sessions' wait, with the longer wait several instances need."""
    return wait_status(service, session_id, predicate, timeout=90)


# -- creating the nodes -----------------------------------------------------------------------


def test_three_nodes_share_a_placement_group_a_subnet_and_a_security_group(ec2):
    client = ec2["client"]
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    office = client.create_security_group(GroupName="ssh-from-office", Description="ssh",
                                          VpcId=vpc["VpcId"])["GroupId"]
    client.authorize_security_group_ingress(GroupId=office, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}])
    lines: list[str] = []
    made = run(cloud(security_group_ids=[office]).create_nodes(
        CreateRequest(provider="aws", name="trainctl-bert"), "3", lines.append))
    assert len(made) == 3 and all(item.state == "running" for item in made)
    [group] = client.describe_placement_groups()["PlacementGroups"]
    name = group["GroupName"]
    assert name.startswith("trainctl-bert-") and group["Strategy"] == "cluster"
    assert tags(group)["trainctl:managed"] == "true" and tags(group)["trainctl:cluster"] == name
    assert sorted(ec2["groups"].groups[name]["members"]) == sorted(i.id for i in made)
    raws = {raw["InstanceId"]: raw for raw in instances(client)}
    assert len({raws[i.id]["SubnetId"] for i in made}) == 1
    [sg] = [g for g in ours(client) if g["GroupId"] != office]
    assert sg["GroupName"] == name and tags(sg)["trainctl:cluster"] == name
    # in: every TCP port from members of the group, nobody else; out: anything
    assert [(p["IpProtocol"], p.get("FromPort"), p.get("ToPort"),
             [pair["GroupId"] for pair in p["UserIdGroupPairs"]], p["IpRanges"])
            for p in sg["IpPermissions"]] == [("tcp", 0, 65535, [sg["GroupId"]], [])]
    for rank, item in enumerate(made):
        raw = raws[item.id]
        # the run's group, then the template's own (how you reach them), left as it was
        assert [g["GroupId"] for g in raw["SecurityGroups"]] == [sg["GroupId"], office]
        assert tags(raw)["trainctl:node"] == str(rank)
        assert tags(raw)["Name"] == f"trainctl-bert-node{rank}"
    assert lines[0] == f"created {made[0].id} (node 0 of {name}, on-demand t3.micro)"
    [kept] = [g for g in ours(client) if g["GroupId"] == office]
    assert [(p["FromPort"], p["IpRanges"][0]["CidrIp"]) for p in kept["IpPermissions"]] == [
        (22, "203.0.113.0/24")]
    sent = ec2["faults"].sent("RunInstances")
    assert [fields["Placement.GroupName"] for fields in sent] == [name] * 3
    assert all("NetworkInterface.1.InterfaceType" not in fields for fields in sent)


def test_a_type_with_efa_gets_an_efa_interface_and_the_all_traffic_rule(ec2):
    client = ec2["client"]
    made = run(cloud("big").create_nodes(CreateRequest(provider="aws", template="big",
                                                       name="trainctl-llm"), "2"))
    [sg] = ours(client)
    assert [(p["IpProtocol"], [pair["GroupId"] for pair in p["UserIdGroupPairs"]])
            for p in sg["IpPermissions"]] == [("-1", [sg["GroupId"]])]
    sent = ec2["faults"].sent("RunInstances")
    assert len(sent) == 2 and len(made) == 2
    for fields in sent:
        assert fields["NetworkInterface.1.InterfaceType"] == "efa"
        assert fields["NetworkInterface.1.DeviceIndex"] == "0"
        assert fields["NetworkInterface.1.SecurityGroupId.1"] == sg["GroupId"]
        assert fields["NetworkInterface.1.SubnetId"].startswith("subnet-")
        assert "SubnetId" not in fields and "SecurityGroupId.1" not in fields
        assert fields["InstanceType"] == "p4d.24xlarge"


def test_a_spot_template_makes_every_node_spot(ec2):
    made = run(cloud(spot=True).create_nodes(CreateRequest(provider="aws", name="trainctl-s"),
                                             "2"))
    sent = ec2["faults"].sent("RunInstances")
    assert [fields["InstanceMarketOptions.MarketType"] for fields in sent] == ["spot"] * 2
    assert [fields["InstanceMarketOptions.SpotOptions.SpotInstanceType"]
            for fields in sent] == ["one-time"] * 2
    assert [item.lifecycle for item in made] == ["spot", "spot"]


def test_terminating_the_last_node_by_hand_removes_its_groups(ec2):
    client = ec2["client"]
    c = cloud()
    first, second = run(c.create_nodes(CreateRequest(provider="aws", name="trainctl-h"), "2"))
    name = client.describe_placement_groups()["PlacementGroups"][0]["GroupName"]
    one = run(c.terminate_instance(first.id))
    assert one.state == "terminated"
    assert one.detail.endswith("the placement group stays while a node of it remains")
    assert len(client.describe_placement_groups()["PlacementGroups"]) == 1
    last = run(c.terminate_instance(second.id))
    assert last.detail.endswith(f"deleted placement group {name} and its security group")
    assert client.describe_placement_groups()["PlacementGroups"] == [] and ours(client) == []


def test_a_create_that_fails_half_way_leaves_nothing_and_says_so_in_one_line(ec2):
    client = ec2["client"]
    ec2["faults"].error("RunInstances", "InsufficientInstanceCapacity",
                        "We currently do not have sufficient t3.micro capacity in the "
                        "Availability Zone you requested.", after=2)
    with pytest.raises(AWSError) as err:
        run(cloud().create_nodes(CreateRequest(provider="aws", name="trainctl-bert"), "4"))
    made = [raw["InstanceId"] for raw in instances(client)]
    assert len(made) == 2
    assert all(raw["State"]["Name"] == "terminated" for raw in instances(client))
    assert client.describe_placement_groups()["PlacementGroups"] == []
    assert ours(client) == []
    line = str(err.value)
    assert "\n" not in line
    head, _, tail = line.partition("; terminated")
    assert head == (
        "aws: creating node 3 of 4 (on-demand t3.micro): InsufficientInstanceCapacity: We "
        "currently do not have sufficient t3.micro capacity in the Availability Zone you "
        "requested. (AWS has no capacity for this type in this zone now: try another zone, "
        "type, or on-demand)")
    name = ec2["faults"].sent("CreatePlacementGroup")[0]["GroupName"]
    sg = ec2["faults"].sent("DeleteSecurityGroup")[0]["GroupId"]
    assert tail == (f" the 2 instances made ({', '.join(made)}); deleted placement group "
                    f"{name}; deleted security group {sg}")


def test_a_quota_error_on_the_first_node_removes_the_groups(ec2):
    client = ec2["client"]
    ec2["faults"].error("RunInstances", "VcpuLimitExceeded", "You have requested more vCPU "
                        "capacity than your current vCPU limit of 0 allows.")
    with pytest.raises(AWSError) as err:
        run(cloud().create_nodes(CreateRequest(provider="aws", name="trainctl-x"), "2"))
    assert str(err.value).startswith("aws: creating node 1 of 2 (on-demand t3.micro): "
                                     "VcpuLimitExceeded: ")
    assert "; deleted placement group trainctl-x-" in str(err.value)
    assert instances(client) == [] and ours(client) == []
    assert client.describe_placement_groups()["PlacementGroups"] == []


# -- runs -------------------------------------------------------------------------------------


def test_a_run_on_two_new_instances_gives_each_node_its_rank_and_the_ips(ec2, trainctl_home):
    client, ssm = ec2["client"], ec2["ssm"]
    service = Service()
    session = run(service.launch(LaunchRequest(
        command=trainer(ec2["tmp"], 5), provider="aws", backend_options={"nodes": "2"})))
    head, other = session.provider.removeprefix("aws:").split(",")
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    assert done.status is Status.SUCCEEDED, done.detail
    assert done.nodes == 2
    raws = {raw["InstanceId"]: raw for raw in instances(client)}
    ips = f"{raws[head]['PrivateIpAddress']},{raws[other]['PrivateIpAddress']}"
    logs = [(Path(session.session_dir) / "train.log").read_text(),
            (Path(session.session_dir) / "nodes" / "1" / "train.log").read_text()]
    for rank, log in enumerate(logs):
        assert (f"TRAINCTL_NODE_RANK={rank} TRAINCTL_NUM_NODES=2 TRAINCTL_NODE_IPS={ips} "
                f"MASTER_ADDR={raws[head]['PrivateIpAddress']}") in log
        assert f"done {rank}" in log
    assert "done 1" in run_cli("logs", session.id, "--node", "1", "-n", "50").stdout
    # each node's runner ran on its own instance, started with its rank and the ips
    assert ssm.path(other, "sessions", session.id, "nodes", "1", "status.json").exists()
    started = [text for text in ssm.commands if "--detach" in text]
    assert len(started) == 2
    assert any(f"--node-rank 1 --node-ips {ips} --nnodes 2" in text for text in started)
    # the session's tags, the price of both, and the instances stopped at the run's end
    assert all(tags(raws[i])["trainctl:session"] == session.id for i in (head, other))
    spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    assert spec["price_per_hour"] == pytest.approx(0.5)
    assert done.detail == f"stopped 2 instances ({head}, {other})"
    assert {raw["State"]["Name"] for raw in instances(client)} == {"stopped"}
    [row] = run_cli("sessions", "--all", env={"COLUMNS": "200"}).stdout.splitlines()[1:]
    assert f" aws:{head},{other} · 2 nodes  succeeded " in row
    service.close()


FAKE_TORCHRUN = """\
#!/bin/sh
echo "torchrun $*"
"""


def test_torchrun_on_each_instance_meets_at_the_heads_private_ip(ec2, trainctl_home):
    client = ec2["client"]
    torchrun = ec2["tmp"] / "bin" / "torchrun"  # prints what it was given, as torchrun would run
    torchrun.parent.mkdir()
    torchrun.write_text(FAKE_TORCHRUN)
    torchrun.chmod(0o755)
    service = Service()
    session = run(service.launch(LaunchRequest(
        command=[str(torchrun), "--nproc-per-node", "8", "train.py"], provider="aws",
        backend_options={"nodes": "2"})))
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    assert done.status is Status.SUCCEEDED, done.detail
    head = session.provider.removeprefix("aws:").split(",")[0]
    [raw] = [r for r in instances(client) if r["InstanceId"] == head]
    logs = [(Path(session.session_dir) / "train.log").read_text(),
            (Path(session.session_dir) / "nodes" / "1" / "train.log").read_text()]
    for rank, log in enumerate(logs):
        assert (f"torchrun --nnodes 2 --rdzv-backend c10d --rdzv-endpoint "
                f"{raw['PrivateIpAddress']}:29400 --rdzv-id {session.id} --max-restarts 3 "
                f"--rdzv-conf is_host={1 - rank} --nproc-per-node 8 train.py") in log, log
    service.close()


def test_stop_reaches_every_node_and_a_terminating_template_leaves_nothing(ec2, trainctl_home):
    client = ec2["client"]
    service = Service()
    session = run(service.launch(LaunchRequest(
        command=trainer(ec2["tmp"], 100000), provider="aws:big",
        backend_options={"nodes": "3"}, grace_seconds=10)))
    assert len(session.provider.split(",")) == 3
    run(wait_nodes(service, session.id, lambda s: s.status is Status.RUNNING and (
        Path(session.session_dir) / "nodes" / "2" / "train.log").exists() and "step 3" in (
        Path(session.session_dir) / "nodes" / "2" / "train.log").read_text()))
    stopped = run(service.stop(session.id))
    assert stopped.status is Status.STOPPED, stopped.detail
    marks = sorted((ec2["tmp"] / "marks").read_text().splitlines())
    assert marks == ["TERM 0", "TERM 1", "TERM 2"]
    assert {raw["State"]["Name"] for raw in instances(client)} == {"terminated"}
    assert client.describe_placement_groups()["PlacementGroups"] == []
    assert ours(client) == []
    assert "terminated 3 instances" in stopped.detail
    assert stopped.detail.endswith("and its security group")
    # the stop waited for any healing decision and marked the launch: none follows it
    from trainctl_tui.backends.remote.healing import stop_asked

    nodes = json.loads((Path(session.session_dir) / "remote.json").read_text())["nodes"]
    assert stop_asked(session.session_dir, nodes)
    service.close()


def test_a_run_whose_runners_cannot_start_discards_its_nodes(ec2, tmp_path):
    text = (tmp_path / "config.toml").read_text()
    (tmp_path / "config.toml").write_text(text.replace(
        f'python = "{sys.executable}"', 'python = "/nonexistent/python3"', 1))
    result = run_cli("launch", "--nodes", "2", "--provider", "aws", "--",
                     sys.executable, "-c", "1")
    client = ec2["client"]
    ids = [raw["InstanceId"] for raw in instances(client)]
    assert result.returncode == 2 and len(ids) == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("runner on i-") and " failed to start: " in line
    name = ec2["faults"].sent("CreatePlacementGroup")[0]["GroupName"]
    assert line.endswith(f"; terminated the 2 instances ({', '.join(ids)}); deleted placement "
                         f"group {name} and its security group"), line
    assert {raw["State"]["Name"] for raw in instances(client)} == {"terminated"}
    assert client.describe_placement_groups()["PlacementGroups"] == [] and ours(client) == []
    [session] = json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
    assert session["status"] == "failed"


def test_a_resume_starts_the_stopped_nodes_again(ec2, trainctl_home):
    client = ec2["client"]
    service = Service()
    session = run(service.launch(LaunchRequest(
        command=trainer(ec2["tmp"], 100000), provider="aws", backend_options={"nodes": "2"},
        grace_seconds=5)))
    node_log = Path(session.session_dir) / "nodes" / "1" / "train.log"
    run(wait_nodes(service, session.id, lambda s: node_log.exists() and
                    "step 2 " in node_log.read_text()))
    stopped = run(service.stop(session.id))
    assert stopped.status is Status.STOPPED
    assert {raw["State"]["Name"] for raw in instances(client)} == {"stopped"}
    resumed = run(service.resume(session.id))
    assert resumed.attempt == 2
    assert {raw["State"]["Name"] for raw in instances(client)} == {"running"}
    run(wait_nodes(service, session.id, lambda s: s.status is Status.RUNNING and
                    node_log.read_text().count("TRAINCTL_NODE_RANK=1") == 2))
    run(service.stop(session.id, force=True))
    service.close()


# -- what a user types --------------------------------------------------------------------------


def test_dry_run_shows_the_instances_the_group_and_the_rules_and_makes_nothing(ec2):
    result = run_cli("launch", "--dry-run", "--nodes", "2", "--provider", "aws:big",
                     "--name", "llm", "--", "torchrun", "--nproc-per-node", "8", "train.py")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("would create 2 on-demand p4d.24xlarge instances (AMI ami-")
    assert lines[1].startswith("  node 0: trainctl-llm-") and lines[1].endswith("-node0")
    assert lines[3].startswith("placement group trainctl-llm-")
    assert lines[3].endswith(" (strategy cluster)")
    assert "inbound all traffic from members of the group only; outbound all" in lines[5]
    assert lines[7] == "network interface: EFA"
    assert lines[8] == ("at the run's end the instances are terminated (the template's "
                        "shutdown_behavior)")
    client = ec2["client"]
    assert instances(client) == [] and ours(client) == []
    assert client.describe_placement_groups()["PlacementGroups"] == []


@pytest.mark.parametrize("args, line", [
    (("--nodes", "0"), "--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '0'"),
    (("--nodes", "3:2"), "--nodes must be N or MIN:MAX with 1 <= MIN <= MAX, not '3:2'"),
    (("--nodes", "3", "--", "torchrun", "--nnodes", "2", "t.py"),
     "torchrun --nnodes 2 disagrees with --nodes 3: drop torchrun's --nnodes (trainctl adds "
     "it) or give the same count"),
])
def test_bad_node_counts_are_one_line_and_nothing_is_created(ec2, args, line):
    command = () if "--" in args else ("--", sys.executable, "-c", "1")
    result = run_cli("launch", "--provider", "aws", *args, *command)
    assert (result.returncode, result.stderr.strip()) == (2, line)
    client = ec2["client"]
    assert instances(client) == [] and ours(client) == []
    assert client.describe_placement_groups()["PlacementGroups"] == []
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []


def test_nodes_on_one_existing_instance_are_refused(ec2):
    client = ec2["client"]
    ami = ec2["ami"]
    instance = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                                    InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    result = run_cli("launch", "--provider", f"aws:{instance}", "--nodes", "2", "--",
                     sys.executable, "-c", "1")
    assert (result.returncode, result.stderr.strip()) == (
        2, f"--nodes 2 does not fit aws:{instance}, which is one instance: let trainctl "
           "create them (--provider aws or aws:TEMPLATE)")
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []


# -- healing: a lost node replaced alone ------------------------------------------------------


def session_info(session_id: str) -> dict:
    [found] = [s for s in json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"]
               if s["id"] == session_id]
    return found


def running_steps(service: Service, session, rank: int, steps: str = "step 2 "):
    log = Path(session.session_dir) / "nodes" / str(rank) / "train.log"
    return run(wait_nodes(service, session.id, lambda s: log.exists() and
                          steps in log.read_text()))


def two_nodes_training(ec2, steps: int, provider: str = "aws", **request):
    """A two-node run whose instances take their runners along when they end, node 1
    past its second step: (service, session, head's id, node 1's id)."""
    ec2["ssm"].machines_die = True
    service = Service()
    session = run(service.launch(LaunchRequest(
        command=trainer(ec2["tmp"], steps), provider=provider, backend_options={"nodes": "2"},
        **request)))
    head, other = session.provider.removeprefix("aws:").split(",")
    running_steps(service, session, 1)
    return service, session, head, other


TERMINATED = "its instance is terminated (Client.UserInitiatedShutdown: User initiated shutdown)"


def test_a_terminated_node_is_replaced_alone_in_its_group_and_the_run_finishes(
        ec2, trainctl_home):
    client, ssm = ec2["client"], ec2["ssm"]
    service, session, head, lost = two_nodes_training(ec2, 250)
    client.terminate_instances(InstanceIds=[lost])
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    assert done.status is Status.SUCCEEDED, done.detail
    raws = {raw["InstanceId"]: raw for raw in instances(client)}
    [new] = [i for i in raws if i not in (head, lost)]
    assert done.provider == f"aws:{head},{new}"  # the session follows its nodes
    # the same placement group, subnet and security groups as the head; rank 1's tags
    name = tags(raws[head])["trainctl:cluster"]
    assert new in ec2["groups"].groups[name]["members"]
    assert raws[new]["SubnetId"] == raws[head]["SubnetId"]
    assert [g["GroupId"] for g in raws[new]["SecurityGroups"]] == [
        g["GroupId"] for g in raws[head]["SecurityGroups"]]
    assert {k: tags(raws[new])[k] for k in ("trainctl:node", "trainctl:session", "Name")} == {
        "trainctl:node": "1", "trainctl:session": session.id,
        "Name": tags(raws[lost])["Name"]}
    assert raws[new]["InstanceType"] == raws[head]["InstanceType"]
    # the replacement ran rank 1 in the same rendezvous, with the new IP in place
    ips = f"{raws[head]['PrivateIpAddress']},{raws[new]['PrivateIpAddress']}"
    assert json.loads(ssm.path(new, "sessions", session.id, "nodes", "1", "status.json")
                      .read_text())["state"] == "succeeded"
    log = run_cli("logs", session.id, "--node", "1", "-n", "400").stdout
    assert f"TRAINCTL_NODE_RANK=1 TRAINCTL_NUM_NODES=2 TRAINCTL_NODE_IPS={ips} " in log
    assert "done 1" in log
    started = [text for text in ssm.commands if "--detach" in text and "--node-rank 1" in text]
    assert len(started) == 2 and all("--node-restarts 3" in text for text in started)
    # the loss and the replacement, recorded
    losses = session_info(session.id)["node_losses"]
    assert len(losses) == 1, losses
    [loss] = losses
    assert {key: loss[key] for key in ("node", "host", "new_host", "old_ip", "new_ip",
                                       "reason")} == {
        "node": 1, "host": lost, "new_host": new,
        "old_ip": raws[lost]["PrivateIpAddress"], "new_ip": raws[new]["PrivateIpAddress"],
        "reason": f"node 1 (on {lost}) lost: {TERMINATED}; replaced on {new} "
                  f"({raws[new]['PrivateIpAddress']}) (1 of 3)"}
    assert 0 < loss["cost"] < 0.25 * 120 / 3600  # t3.micro's $0.25/h until it was lost
    assert loss["lost_at"] <= loss["replaced_at"] <= loss["joined_at"]
    assert loss["seconds_lost"] == pytest.approx(loss["joined_at"] - loss["lost_at"], abs=1e-3)
    assert f"[trainctl] {loss['reason']}" in (Path(session.session_dir) / "train.log").read_text()
    # at the end: the run's instances stopped (the template says stop), the lost one gone
    assert done.detail == f"stopped 2 instances ({head}, {new})"
    assert {i: raws[i]["State"]["Name"] for i in (head, lost, new)} == {
        head: "stopped", lost: "terminated", new: "stopped"}
    service.close()


def test_past_max_resumes_a_lost_node_ends_the_run_in_one_line(ec2, trainctl_home):
    config = ec2["tmp"] / "config.toml"
    config.write_text(config.read_text().replace(
        f'region = "{REGION}"\n', f'region = "{REGION}"\nmax_resumes = 0\n', 1))
    client = ec2["client"]
    service, session, head, lost = two_nodes_training(ec2, 100000, grace_seconds=5)
    client.terminate_instances(InstanceIds=[lost])
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    line = (f"node 1 (on {lost}) lost: {TERMINATED}; not replaced: max_resumes 0 reached "
            f"(raise [aws] max_resumes, or trainctl resume {session.id})")
    assert done.status is Status.INTERRUPTED
    assert done.detail == f"{line}; stopped 1 instances ({head})"
    assert (ec2["tmp"] / "marks").read_text().splitlines() == ["TERM 0"]  # the head saved
    assert [loss["reason"] for loss in session_info(session.id)["node_losses"]] == [line]
    assert len(instances(client)) == 2  # nothing new was made
    assert {raw["State"]["Name"] for raw in instances(client)} == {"stopped", "terminated"}
    service.close()


def test_while_ec2_does_not_describe_the_nodes_none_is_judged_lost(ec2, trainctl_home):
    """A failing DescribeInstances never reads as every instance gone: the run goes on, and
    once EC2 answers again the terminated node is replaced."""
    client, faults = ec2["client"], ec2["faults"]
    service, session, head, lost = two_nodes_training(ec2, 100000, grace_seconds=5)
    faults.error("DescribeInstances", "UnauthorizedOperation",
                 "You are not authorized to perform this operation.")
    client.terminate_instances(InstanceIds=[lost])
    before = faults.seen["DescribeInstances"]
    deadline = time.monotonic() + 60
    while faults.seen["DescribeInstances"] < before + 4:  # healing asked, and asked again
        assert time.monotonic() < deadline
        found = run(service.get(session.id))
        time.sleep(0.3)
    assert found.status is Status.RUNNING, found.detail
    assert session_info(session.id)["node_losses"] == []
    faults.clear()
    node_log = Path(session.session_dir) / "nodes" / "1" / "train.log"
    run(wait_nodes(service, session.id, lambda s: s.provider != session.provider and
                   node_log.read_text().count("TRAINCTL_NODE_RANK=1") == 2))
    [loss] = session_info(session.id)["node_losses"]
    assert loss["reason"].startswith(f"node 1 (on {lost}) lost: {TERMINATED}; replaced on i-")
    run(service.stop(session.id, force=True))
    service.close()


def test_a_terminated_head_stops_the_others_and_interrupts_the_run(ec2, trainctl_home):
    client = ec2["client"]
    service, session, head, other = two_nodes_training(ec2, 100000, grace_seconds=5)
    client.terminate_instances(InstanceIds=[head])
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    line = (f"node 0 (on {head}) lost: {TERMINATED}; stopped the other nodes (trainctl resume "
            f"{session.id} restarts every node from the newest checkpoint)")
    assert done.status is Status.INTERRUPTED
    assert done.detail == f"{line}; stopped 1 instances ({other})"
    assert (ec2["tmp"] / "marks").read_text().splitlines() == ["TERM 1"]  # node 1 saved
    assert [loss["reason"] for loss in session_info(session.id)["node_losses"]] == [line]
    assert {raw["InstanceId"]: raw["State"]["Name"] for raw in instances(client)} == {
        head: "terminated", other: "stopped"}
    service.close()


def test_a_replacement_that_cannot_be_made_stops_the_others_and_leaves_nothing_running(
        ec2, trainctl_home):
    client, faults = ec2["client"], ec2["faults"]
    service, session, head, lost = two_nodes_training(ec2, 100000, "aws:big", grace_seconds=5)
    faults.error("RunInstances", "InsufficientInstanceCapacity", "We currently do not have "
                 "sufficient p4d.24xlarge capacity in the Availability Zone you requested.")
    client.terminate_instances(InstanceIds=[lost])
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    line = (f"node 1 (on {lost}) lost: {TERMINATED}; its replacement on a new instance failed "
            "to start (aws: creating a replacement for node 1 (on-demand p4d.24xlarge): "
            "InsufficientInstanceCapacity: We currently do not have sufficient p4d.24xlarge "
            "capacity in the Availability Zone you requested. (AWS has no capacity for this "
            "type in this zone now: try another zone, type, or on-demand)); stopped the other "
            "nodes")
    assert done.status is Status.INTERRUPTED
    name = tags([r for r in instances(client) if r["InstanceId"] == head][0])["trainctl:cluster"]
    assert done.detail == (f"{line}; terminated 1 instances ({head}); deleted placement group "
                           f"{name} and its security group")
    assert (ec2["tmp"] / "marks").read_text().splitlines() == ["TERM 0"]
    assert len(faults.sent("RunInstances")) == 3  # the two nodes, the replacement refused
    assert {raw["State"]["Name"] for raw in instances(client)} == {"terminated"}
    assert client.describe_placement_groups()["PlacementGroups"] == [] and ours(client) == []
    service.close()


def test_min_max_goes_on_with_the_instances_made_when_capacity_runs_out(ec2, trainctl_home):
    client = ec2["client"]
    ec2["faults"].error("RunInstances", "InsufficientInstanceCapacity",
                        "We currently do not have sufficient t3.micro capacity in the "
                        "Availability Zone you requested.", after=2)
    lines: list[str] = []
    service = Service()
    session = run(service.launch(LaunchRequest(
        command=trainer(ec2["tmp"], 5), provider="aws", backend_options={"nodes": "2:3"}),
        lines.append))
    ids = session.provider.removeprefix("aws:").split(",")
    assert len(ids) == 2
    assert ("aws: creating node 3 of 3 (on-demand t3.micro): InsufficientInstanceCapacity: We "
            "currently do not have sufficient t3.micro capacity in the Availability Zone you "
            "requested. (AWS has no capacity for this type in this zone now: try another zone, "
            "type, or on-demand): going on with the 2 nodes made (--nodes 2:3)") in lines
    done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    assert done.status is Status.SUCCEEDED, done.detail
    assert done.nodes == 2
    started = [text for text in ec2["ssm"].commands if "--detach" in text]
    assert len(started) == 2 and all("--nnodes 2:3" in text for text in started)
    assert len(instances(client)) == 2
    service.close()


def test_min_max_below_min_removes_everything_as_a_half_made_create(ec2):
    client = ec2["client"]
    ec2["faults"].error("RunInstances", "VcpuLimitExceeded", "You have requested more vCPU "
                        "capacity than your current vCPU limit of 2 allows.", after=1)
    with pytest.raises(AWSError) as err:
        run(cloud().create_nodes(CreateRequest(provider="aws", name="trainctl-x"), "2:3"))
    assert str(err.value).startswith("aws: creating node 2 of 3 (on-demand t3.micro): "
                                     "VcpuLimitExceeded: ")
    assert "; terminated the 1 instance made (" in str(err.value)
    assert {raw["State"]["Name"] for raw in instances(client)} == {"terminated"}
    assert client.describe_placement_groups()["PlacementGroups"] == [] and ours(client) == []


def test_which_instances_are_lost_as_ec2_describes_them():
    """What the healing reads from EC2 (moto cannot mark a spot request for termination, nor
    serve a node's instance-action notice: the decision is tested on the shapes EC2 returns)."""
    from trainctl_tui.backends.aws.node_healing import machine_lost, mark_lost

    def raw(state, reason=None, request=None):
        found = {"InstanceId": "i-1", "State": {"Name": state}}
        if reason:
            found["StateReason"] = {"Code": reason.split(":")[0], "Message": reason}
        if request:
            found["SpotInstanceRequestId"] = request
        return found

    spot = {"sir-1": {"SpotInstanceRequestId": "sir-1", "State": "active", "Status": {
        "Code": "marked-for-termination", "Message": "Spot Instance is marked for termination "
        "due to capacity constraints."}},
        "sir-2": {"SpotInstanceRequestId": "sir-2", "State": "active", "Status": {
            "Code": "fulfilled", "Message": "Your spot request is fulfilled."}}}
    assert machine_lost(raw("running"), None) is None
    assert machine_lost(raw("running", request="sir-2"), spot["sir-2"]) is None
    assert machine_lost(raw("running", request="sir-1"), spot["sir-1"]) == (
        "its spot request is marked-for-termination (Spot Instance is marked for termination "
        "due to capacity constraints.)")
    assert machine_lost(raw("running"), {"Status": {"Code": "marked-for-stop"}}) == \
        "its spot request is marked-for-stop"
    assert machine_lost(raw("shutting-down", "Server.SpotInstanceTermination: Spot instance "
                            "termination"), None) == (
        "its instance is shutting-down (Server.SpotInstanceTermination: Spot instance "
        "termination)")
    assert machine_lost(raw("stopped", "Server.SpotInstanceShutdown: Spot instance "
                            "shutdown"), None) == (
        "its instance is stopped (Server.SpotInstanceShutdown: Spot instance shutdown)")
    assert machine_lost(raw("stopping"), None) == "its instance is stopping"
    assert machine_lost(None, None) == "its instance is gone (EC2 no longer lists it)"
    # a node's runner that read the instance-action notice ended interrupted: lost too
    nodes = [{"host": "i-0"}, {"host": "i-1"}, {"host": "i-2"}, {"host": "i-3"},
             {"host": "i-4", "given_up": True}]
    raws = {"i-0": raw("running"), "i-1": raw("running"),
            "i-2": {**raw("running", request="sir-1"), "InstanceId": "i-2"},
            "i-3": {**raw("terminated"), "InstanceId": "i-3"},
            "i-4": {**raw("terminated"), "InstanceId": "i-4"}}
    answers = {"1": {"host": "i-1", "state": "interrupted",
                     "reason": "spot interruption notice (terminate at 2026-12-05T11:00:00Z)"},
               "2": {"host": "i-2", "state": "running", "alive": True},
               "3": {"host": "i-3", "error": "aws ssm: i-3 is not reachable through SSM"}}
    mark_lost(answers, nodes, raws, spot)
    assert {rank: info.get("lost") for rank, info in answers.items()} == {
        "1": "spot interruption notice (terminate at 2026-12-05T11:00:00Z)",
        "2": "its spot request is marked-for-termination (Spot Instance is marked for "
             "termination due to capacity constraints.)",
        "3": "its instance is terminated"}
    from trainctl_tui.backends.remote.healing import verdicts

    answers["0"] = {"host": "i-0", "state": "running", "alive": True}
    found = verdicts(answers, nodes, now=100.0)
    assert [(v.rank, v.kind, v.why, v.since, v.reachable) for v in found] == [
        (1, "lost", answers["1"]["lost"], 100.0, False),
        (2, "lost", answers["2"]["lost"], 100.0, False),
        (3, "lost", "its instance is terminated", 100.0, False)]


def test_a_refresh_during_a_resume_does_not_release_the_instances_again(ec2, tmp_path):
    """A resume starts the stopped nodes and their runners; a refresh meanwhile (the watcher)
    may still read the last run's final status: that end was released already, and the
    instances the resume started must stay running."""
    from types import SimpleNamespace

    from trainctl_tui.backends.aws.nodes import release_now
    from trainctl_tui.backends.aws.provider import AWSProvider

    client = ec2["client"]
    ids = [client.run_instances(ImageId=ec2["ami"], MinCount=1, MaxCount=1,
                                InstanceType="t3.micro")["Instances"][0]["InstanceId"]
           for _ in range(2)]
    folder = tmp_path / "session"
    folder.mkdir()
    now = time.time()
    nodes = [{"host": i, "remote_dir": "/x", "runner": "/r", "started": now} for i in ids]
    nodes[0]["runner_before"] = [4242, "88123"]  # the head's runner that ended the last run
    (folder / "remote.json").write_text(json.dumps({**nodes[0], "nodes": nodes}))
    session = SimpleNamespace(id="s1", session_dir=str(folder))
    answer = {"status": {"state": "stopped", "reason": "stopped by trainctl",
                         "runner_pid": 4242, "runner_start": "88123"}}
    run(release_now(AWSProvider(",".join(ids)), session, answer))
    assert {raw["State"]["Name"] for raw in instances(client)} == {"running"}
    assert "released" not in json.loads((folder / "remote.json").read_text())
    answer["status"]["runner_pid"] = 4343  # the resumed runner's own end: released
    run(release_now(AWSProvider(",".join(ids)), session, answer))
    assert {raw["State"]["Name"] for raw in instances(client)} == {"stopped"}
    assert answer["status"]["reason"] == f"stopped by trainctl; stopped 2 instances ({ids[0]}, " \
        f"{ids[1]})"


def test_a_spot_notice_on_one_node_replaces_that_node_alone(ec2, trainctl_home, monkeypatch):
    """Node 1's instance gets EC2's two-minute notice (its own metadata service, as
    AWS_EC2_METADATA_SERVICE_ENDPOINT names it there): its runner SIGTERMs the training,
    which saves, healing replaces that instance alone with a new spot one, and the run
    finishes; the head never saw a notice."""
    import datetime

    from test_runner_cloud import Imds

    from trainctl_tui.backends.aws import provider as aws_provider

    client, ssm = ec2["client"], ec2["ssm"]
    config = ec2["tmp"] / "config.toml"
    config.write_text(config.read_text() + (
        f'\n[aws.templates.spot]\nami = "{ec2["ami"]}"\ninstance_type = "t3.micro"\n'
        f'spot = true\nworkdir = "{ssm.workdir}"\npython = "{sys.executable}"\n'))
    monkeypatch.setattr(aws_provider, "SPOT_POLL_SECONDS", 0.3)
    imds = Imds()
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    noticed = []  # the first instance of rank 1 has the notice's metadata service

    def env_of(instance_id: str, raw: dict | None) -> dict:
        if raw and tags(raw).get("trainctl:node") == "1" and noticed in ([], [instance_id]):
            noticed[:] = [instance_id]
            return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
        return {}

    ssm.env_of = env_of
    try:
        service, session, head, lost = two_nodes_training(ec2, 250, provider="aws:spot")
        assert noticed == [lost]
        when = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=2)
                ).strftime("%Y-%m-%dT%H:%M:%SZ")
        imds.notice = {"action": "terminate", "time": when}
        done = run(wait_nodes(service, session.id, lambda s: not s.status.active))
    finally:
        imds.shutdown()
    assert done.status is Status.SUCCEEDED, done.detail
    raws = {raw["InstanceId"]: raw for raw in instances(client)}
    [new] = [i for i in raws if i not in (head, lost)]
    # the lost one released as the template says (stop), the new one spot like it
    assert raws[new].get("InstanceLifecycle") == "spot" and raws[lost]["State"]["Name"] == \
        "stopped"
    [loss] = session_info(session.id)["node_losses"]
    assert loss["reason"] == (
        f"node 1 (on {lost}) lost: spot interruption notice (terminate at {when}); replaced "
        f"on {new} ({raws[new]['PrivateIpAddress']}) (1 of 3)")
    assert (ec2["tmp"] / "marks").read_text().splitlines() == ["TERM 1"]  # it saved; 0 ran on
    assert "done 1" in run_cli("logs", session.id, "--node", "1", "-n", "400").stdout
    service.close()
