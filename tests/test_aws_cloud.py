"""AWSCloud (EC2 instances and prices) against moto's server on 127.0.0.1, and AWS faults
through a reverse proxy in front of it (tests/aws_faults.py)."""

from __future__ import annotations

import asyncio
import json

import boto3
import pytest
from aws_faults import FaultProxy
from moto_aws import REGION, aws, moto_server  # noqa: F401

from trainctl_tui.backends.aws import api as aws_api
from trainctl_tui.backends.aws import cloud as aws_cloud
from trainctl_tui.backends.aws.api import AWSError
from trainctl_tui.backends.aws.cloud import AWSCloud, gpus_of, parse_on_demand
from trainctl_tui.backends.aws.settings import AwsConfig, AwsTemplate
from trainctl_tui.backends.base import ProviderError
from trainctl_tui.backends.registry import get_cloud
from trainctl_tui.core.machines import CreateRequest

pytestmark = pytest.mark.timeout(120)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def pricing(aws, monkeypatch):  # noqa: F811
    """moto has no Pricing API (it answers 500, retried): a proxy answers for it, by default
    AccessDenied as for an account without pricing:GetProducts."""
    with FaultProxy(aws) as proxy:
        proxy.json_error("GetProducts", "AccessDeniedException", "not authorized")
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", proxy.url)
        yield proxy


@pytest.fixture
def net(aws, pricing):  # noqa: F811
    """A VPC, subnet, security group, instance profile and an AMI in moto."""
    aws_cloud.clear_price_cache()
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.0.0/24",
                               AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="trainctl", Description="t",
                                      VpcId=vpc)["GroupId"]
    iam = boto3.client("iam", region_name=REGION)
    iam.create_instance_profile(InstanceProfileName="trainctl-ssm")
    image = ec2.describe_images(Owners=["amazon"], Filters=[
        {"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*"]}
    ])["Images"][0]
    yield {"ec2": ec2, "ssm": boto3.client("ssm", region_name=REGION), "subnet": subnet,
           "group": group, "ami": image["ImageId"], "ami_name": image["Name"],
           "root": image["RootDeviceName"], "url": aws}
    aws_cloud.clear_price_cache()


def settings(net, **template) -> AwsConfig:
    base = {"ami": net["ami"], "instance_type": "g5.xlarge", "key_name": None,
            "subnet_id": net["subnet"], "security_group_ids": [net["group"]],
            "iam_instance_profile": "trainctl-ssm", "volume_gb": 120,
            "tags": {"team": "ml"}}
    base.update(template)
    return AwsConfig(templates={"default": AwsTemplate(**base)}, prices={"g5.xlarge": 1.006})


def cloud(net, **template) -> AWSCloud:
    return AWSCloud(settings(net, **template), poll_seconds=0.05)


def raw(net, instance_id: str) -> dict:
    return net["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"][0]


def all_instances(net) -> list[dict]:
    return [item for res in net["ec2"].describe_instances()["Reservations"]
            for item in res["Instances"]]


def tags(item: dict) -> dict:
    return {tag["Key"]: tag["Value"] for tag in item.get("Tags") or []}


def create(c: AWSCloud, **kw):
    lines: list[str] = []
    request = CreateRequest(provider="aws", **kw)
    instance = run(c.create_instance(request, lines.append, wait_ssm=False, timeout=5))
    return instance, lines


# -- create ---------------------------------------------------------------------------------


def test_registry_gives_aws_cloud(net):
    assert isinstance(get_cloud("aws"), AWSCloud)


def test_create_on_demand_tags_volume_and_shutdown_behaviour(net):
    c = cloud(net)
    instance, lines = create(c, session="s-1", name="exp1")
    assert instance.provider == "aws" and instance.id.startswith("i-")
    assert (instance.state, instance.lifecycle, instance.type) == ("running", "on-demand",
                                                                  "g5.xlarge")
    assert (instance.name, instance.session, instance.managed) == ("exp1", "s-1", True)
    assert instance.gpus == "1x A10G"
    assert instance.zone == "us-east-1b"
    assert instance.price_per_hour == 1.006  # the config table: moto has no Pricing API
    assert lines[0] == f"created {instance.id} (on-demand g5.xlarge)"

    item = raw(net, instance.id)
    assert "InstanceLifecycle" not in item
    expected = {"Name": "exp1", "trainctl:managed": "true", "trainctl:session": "s-1",
                "trainctl:template": "default", "team": "ml"}
    assert tags(item) == expected
    assert item["SubnetId"] == net["subnet"]
    assert [g["GroupId"] for g in item["SecurityGroups"]] == [net["group"]]
    assert item["IamInstanceProfile"]["Arn"].endswith("/trainctl-ssm")
    volumes = net["ec2"].describe_volumes(Filters=[
        {"Name": "attachment.instance-id", "Values": [instance.id]}])["Volumes"]
    assert [(v["Size"], v["VolumeType"], tags(v)) for v in volumes] == [(120, "gp3", expected)]
    assert volumes[0]["Attachments"][0]["Device"] == net["root"]
    behaviour = net["ec2"].describe_instance_attribute(
        InstanceId=instance.id, Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"


def test_create_spot_sends_market_options(net, monkeypatch):
    with FaultProxy(net["url"]) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        c = cloud(net, spot=True, max_price=1.5, interruption_behavior="stop",
                  shutdown_behavior="terminate")
        instance, lines = create(c)
        sent = proxy.sent("RunInstances")
    assert instance.lifecycle == "spot"
    assert lines[0] == f"created {instance.id} (spot g5.xlarge)"
    assert raw(net, instance.id)["InstanceLifecycle"] == "spot"
    [fields] = sent
    assert fields["InstanceMarketOptions.MarketType"] == "spot"
    assert fields["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "persistent"
    assert fields["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "stop"
    assert fields["InstanceMarketOptions.SpotOptions.MaxPrice"] == "1.5"
    assert fields["MinCount"] == fields["MaxCount"] == "1"
    assert fields["ClientToken"]
    assert fields["MetadataOptions.HttpTokens"] == "required"
    behaviour = net["ec2"].describe_instance_attribute(
        InstanceId=instance.id, Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


def test_request_overrides_template_spot_type_and_one_time_terminate(net, monkeypatch):
    with FaultProxy(net["url"]) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        c = cloud(net, spot=False)
        instance, _ = create(c, spot=True, type="g4dn.xlarge", max_price=0.4)
        [fields] = proxy.sent("RunInstances")
    assert (instance.type, instance.lifecycle, instance.gpus) == ("g4dn.xlarge", "spot",
                                                                   "1x T4")
    assert fields["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert fields["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == \
        "terminate"
    assert fields["InstanceMarketOptions.SpotOptions.MaxPrice"] == "0.4"
    on_demand, _ = create(cloud(net, spot=True), spot=False)
    assert on_demand.lifecycle == "on-demand"


def test_a_zone_on_the_request_picks_a_subnet_there(net):
    """spot_recovery's fallback zones: CreateRequest may carry a `zone`."""
    vpc = net["ec2"].describe_subnets(SubnetIds=[net["subnet"]])["Subnets"][0]["VpcId"]
    other = net["ec2"].create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24",
                                     AvailabilityZone="us-east-1c")["Subnet"]["SubnetId"]
    request = CreateRequest(provider="aws")
    request.zone = "us-east-1c"
    instance = run(cloud(net).create_instance(request, wait_ssm=False))
    assert instance.zone == "us-east-1c"
    assert raw(net, instance.id)["SubnetId"] == other
    request.zone = "us-east-1d"
    with pytest.raises(ProviderError) as err:
        run(cloud(net).create_instance(request, wait_ssm=False))
    assert str(err.value) == (f"aws: no subnet of {vpc} in us-east-1d (a fallback zone needs "
                              "a subnet there)")


def test_max_price_without_spot_is_refused(net):
    with pytest.raises(ProviderError) as err:
        create(cloud(net), max_price=0.5)
    assert str(err.value) == "aws: a max price applies to spot instances only (add --spot)"
    assert all_instances(net) == []


def test_create_waits_while_ec2_does_not_know_the_new_instance_yet(net, proxy):
    proxy.error("DescribeInstances", "InvalidInstanceID.NotFound", "does not exist", times=2)
    instance, lines = create(cloud(net))
    assert instance.state == "running"
    assert [line.split(" (")[0] for line in lines[1:]] == [
        f"waiting for {instance.id} to be running"] * 2


def test_instance_that_dies_while_starting_is_reported(net):
    ec2 = net["ec2"]

    def progress(line: str) -> None:
        if line.startswith("created "):  # AWS takes it away before it runs
            ec2.terminate_instances(InstanceIds=[line.split()[1]])

    with pytest.raises(AWSError) as err:
        run(cloud(net).create_instance(CreateRequest(provider="aws"), progress, timeout=5))
    [item] = all_instances(net)
    iid = item["InstanceId"]
    assert err.value.code == "NotRunning"
    assert str(err.value).startswith(f"aws: {iid} is terminated instead of running (")
    assert str(err.value).endswith(f"); {iid} was terminated")


def test_create_dry_run_changes_nothing(net):
    instance, _ = create(cloud(net, spot=True), dry_run=True, session="s-2")
    assert (instance.state, instance.id, instance.lifecycle) == ("dry-run", "(dry run)", "spot")
    assert instance.detail == "DryRun: the request would have succeeded"
    assert instance.name == "trainctl-s-2"
    assert all_instances(net) == []


# -- templates and AMIs ---------------------------------------------------------------------


def test_template_errors(net):
    c = AWSCloud(AwsConfig(templates={"big": AwsTemplate(ami="ami-1"),
                                      "small": AwsTemplate(ami="ami-2")}))
    with pytest.raises(ProviderError) as err:
        c.template("huge")
    assert str(err.value) == ("aws: no template 'huge' (available: big, small); add "
                              "[aws.templates.huge] to the config")
    with pytest.raises(ProviderError) as err:
        c.template(None)
    assert str(err.value) == ("aws: no template 'default' (available: big, small); pass "
                              "--template NAME or add [aws.templates.default]")
    assert c.template("small").ami == "ami-2"
    bare = AWSCloud(AwsConfig())
    assert bare.template(None) == AwsTemplate()
    with pytest.raises(ProviderError) as err:
        bare.template("gpu")
    assert "no template 'gpu': the config has no [aws.templates.*] tables" in str(err.value)


def test_no_templates_needs_an_ami_from_the_request(net):
    bare = AWSCloud(AwsConfig(), poll_seconds=0.05)
    with pytest.raises(ProviderError) as err:
        create(bare)
    assert str(err.value).startswith("aws: no AMI: set ami in the [aws.templates.*] table")
    assert str(err.value).endswith("or pass --image")
    instance, _ = create(bare, image=net["ami"], type="t3.micro")
    assert (instance.state, instance.type, instance.gpus) == ("running", "t3.micro", "")
    assert instance.extra["ami"] == net["ami"]


def test_ami_from_ssm_parameter_and_name_filter(net):
    net["ssm"].put_parameter(Name="/trainctl/test/ami-id", Value=net["ami"], Type="String")
    c = cloud(net)
    assert run(c.resolve_ami("/trainctl/test/ami-id")) == net["ami"]
    assert run(c.resolve_ami("resolve:ssm:/trainctl/test/ami-id")) == net["ami"]
    assert run(c.resolve_ami(net["ami_name"])) == net["ami"]
    assert run(c.resolve_ami("ami-0123abcd")) == "ami-0123abcd"
    with pytest.raises(AWSError) as err:
        run(c.resolve_ami("/trainctl/test/missing"))
    assert str(err.value) == ("aws: no SSM parameter '/trainctl/test/missing' in us-east-1 "
                              "(check the ami of the template)")
    with pytest.raises(ProviderError) as err:
        run(c.resolve_ami("Deep Learning Nothing*"))
    assert str(err.value) == ("aws: no AMI named 'Deep Learning Nothing*' owned by amazon or "
                              "you in us-east-1 (a name filter may use * wildcards)")
    net["ssm"].put_parameter(Name="/trainctl/test/bad", Value="hello", Type="String")
    with pytest.raises(ProviderError) as err:
        run(c.resolve_ami("/trainctl/test/bad"))
    assert str(err.value) == "aws: SSM parameter '/trainctl/test/bad' holds 'hello', not an AMI id"
    instance, _ = create(cloud(net, ami="/trainctl/test/ami-id"))
    assert raw(net, instance.id)["ImageId"] == net["ami"]


def test_unknown_ami_is_one_line(net):
    with pytest.raises(ProviderError) as err:
        create(cloud(net, ami="ami-00000000deadbeef0"))
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("aws: ")
    assert "ami-00000000deadbeef0" in str(err.value)
    assert all_instances(net) == []


# -- list / actions -------------------------------------------------------------------------


def unmanaged(net) -> str:
    return net["ec2"].run_instances(
        ImageId=net["ami"], MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": "theirs"}]}],
    )["Instances"][0]["InstanceId"]


def test_list_managed_and_all(net):
    c = cloud(net)
    mine, _ = create(c, session="s-3")
    theirs = unmanaged(net)
    listed = run(c.list_instances())
    assert [i.id for i in listed] == [mine.id]
    assert listed[0].session == "s-3" and listed[0].managed
    everything = {i.id: i for i in run(c.list_instances(include_unmanaged=True))}
    assert set(everything) == {mine.id, theirs}
    assert (everything[theirs].managed, everything[theirs].name) == (False, "theirs")
    assert everything[theirs].price_per_hour is None  # t3.micro is not in the config table


def test_stop_start_terminate(net):
    c = cloud(net)
    instance, _ = create(c)
    stopped = run(c.stop_instance(instance.id))
    assert stopped.state in ("stopping", "stopped")
    assert not stopped.billing
    assert raw(net, instance.id)["State"]["Name"] in ("stopping", "stopped")
    started = run(c.start_instance(instance.id))
    assert started.state in ("pending", "running")
    gone = run(c.terminate_instance(instance.id))
    assert gone.state in ("shutting-down", "terminated")
    assert raw(net, instance.id)["State"]["Name"] in ("shutting-down", "terminated")
    with pytest.raises(ProviderError) as err:
        run(c.start_instance(instance.id))
    assert str(err.value) == f"aws: {instance.id} is terminated; it cannot be started"


def test_dry_run_actions_change_nothing(net):
    c = cloud(net)
    instance, _ = create(c)
    for act, verb in ((c.stop_instance, "stopped"), (c.terminate_instance, "terminated")):
        answer = run(act(instance.id, dry_run=True))
        assert answer.state == "running"
        assert answer.detail == ("DryRun: the request would have succeeded "
                                 f"({instance.id} was not {verb})")
        assert answer.extra["dry_run"] is True
        assert raw(net, instance.id)["State"]["Name"] == "running"


def test_unmanaged_instances_need_force(net):
    c = cloud(net)
    theirs = unmanaged(net)
    with pytest.raises(ProviderError) as err:
        run(c.stop_instance(theirs))
    assert str(err.value) == (f"aws: {theirs} is not managed by trainctl (no trainctl:managed "
                              "tag); pass --force to stop it anyway")
    assert raw(net, theirs)["State"]["Name"] == "running"
    assert run(c.stop_instance(theirs, force=True)).state in ("stopping", "stopped")


def test_unknown_and_malformed_ids(net):
    c = cloud(net)
    with pytest.raises(AWSError) as err:
        run(c.get_instance("i-0123456789abcdef0"))
    assert str(err.value) == ("aws: no instance i-0123456789abcdef0 in us-east-1 (see "
                              "trainctl instances --all)")
    with pytest.raises(ProviderError) as err:
        run(c.terminate_instance("web-1"))
    assert str(err.value) == "aws: 'web-1' is not an EC2 instance id (i-0123456789abcdef0)"


# -- prices ---------------------------------------------------------------------------------


def test_prices_spot_per_zone_and_on_demand_from_config(net):
    rows = run(cloud(net).prices("g5.xlarge"))
    spot = [r for r in rows if r.lifecycle == "spot"]
    zones = [r.where for r in spot]
    assert zones == sorted(zones) and len(zones) >= 3 and "us-east-1a" in zones
    assert {r.source for r in spot} == {"describe_spot_price_history"}
    assert all(isinstance(r.price_per_hour, float) for r in spot)
    assert spot[0].detail == "1x A10G"
    [od] = [r for r in rows if r.lifecycle == "on-demand"]
    assert (od.price_per_hour, od.where, od.source) == (1.006, "us-east-1",
                                                        "config [aws.prices]")
    [unknown] = [r for r in run(cloud(net).prices("p5.48xlarge")) if r.lifecycle == "on-demand"]
    assert unknown.price_per_hour is None
    assert unknown.source == 'unknown — add [aws.prices] "p5.48xlarge" = USD'
    assert [r.type for r in run(cloud(net).prices())] == ["g5.xlarge"] * len(rows)
    with pytest.raises(ProviderError) as err:
        run(AWSCloud(AwsConfig(templates={"a": AwsTemplate()})).prices())
    assert str(err.value) == "aws: prices need an instance type: pass --type (e.g. g5.xlarge)"


PRICE_LIST = [json.dumps({
    "product": {"attributes": {"instanceType": "g6.xlarge"}},
    "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {
        "X.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.8048000000"}}}}}},
})]


def test_on_demand_from_the_pricing_api(net, pricing):
    pricing.clear()
    pricing.answer_json("GetProducts", {"PriceList": PRICE_LIST, "FormatVersion": "aws_v1"})
    c = cloud(net)
    rows = run(c.prices("g6.xlarge"))
    run(c.prices("g6.xlarge"))  # cached: the Pricing API is asked once
    assert pricing.seen["GetProducts"] == 1
    [od] = [r for r in rows if r.lifecycle == "on-demand"]
    assert (od.price_per_hour, od.source, od.detail) == (0.8048, "pricing api", "1x L4")


def test_parse_on_demand_and_gpu_table():
    assert parse_on_demand(PRICE_LIST) == 0.8048
    assert parse_on_demand([]) is None
    assert [gpus_of(t) for t in ("g5.12xlarge", "p4d.24xlarge", "p5.48xlarge", "g6e.xlarge",
                                 "p3.2xlarge", "m5.large")] == [
        "4x A10G", "8x A100", "8x H100", "1x L40S", "1x V100", ""]


def test_cost_so_far_uses_the_listed_price(net):
    c = cloud(net, spot=True)
    spot, _ = create(c)
    on_demand, _ = create(c, spot=False)
    listed = {i.id: i for i in run(c.list_instances())}
    zone_prices = {r.where: r.price_per_hour for r in run(c.prices("g5.xlarge"))
                   if r.lifecycle == "spot"}
    assert listed[spot.id].price_per_hour == zone_prices["us-east-1b"]
    item = listed[on_demand.id]
    assert item.price_per_hour == 1.006
    assert item.cost_so_far(now=item.launched + 1800) == pytest.approx(0.503)
    assert item.to_json(now=item.launched + 3600)["cost_so_far"] == pytest.approx(1.006)


# -- faults ---------------------------------------------------------------------------------


@pytest.fixture
def proxy(net, monkeypatch):
    with FaultProxy(net["url"]) as fault:
        monkeypatch.setenv("AWS_ENDPOINT_URL", fault.url)
        yield fault


def total_attempts() -> int:
    """Calls botocore makes for one request: its `max_attempts` counts retries only."""
    retries = aws_api.client("ec2").meta.config.retries
    return retries.get("total_max_attempts") or retries["max_attempts"] + 1


def test_standard_retry_gets_through_throttling(net, proxy):
    c = cloud(net)
    instance, _ = create(c)
    proxy.seen.clear()
    proxy.throttle("DescribeInstances", times=2)
    assert run(c.get_instance(instance.id)).state == "running"
    assert proxy.seen["DescribeInstances"] == 3


def test_persistent_500_and_throttling_are_one_line(net, proxy, monkeypatch):
    monkeypatch.setattr(aws_api, "MAX_ATTEMPTS", 2)  # keep the backoff short
    aws_api.reset_clients()
    c = cloud(net)
    instance, _ = create(c)
    proxy.seen.clear()
    proxy.fail("DescribeInstances")
    with pytest.raises(AWSError) as err:
        run(c.get_instance(instance.id))
    assert str(err.value) == (f"aws: describing {instance.id}: InternalError: An internal "
                              "error has occurred (AWS answered 500 after 2 tries; retry later)")
    assert proxy.seen["DescribeInstances"] == total_attempts()
    proxy.clear()
    proxy.throttle("DescribeInstances")
    with pytest.raises(AWSError) as err:
        run(c.list_instances())
    assert str(err.value) == ("aws: listing instances: RequestLimitExceeded: Request limit "
                              "exceeded. (AWS kept throttling the calls; retry in a minute)")


def test_expired_and_rejected_credentials(net, proxy):
    c = cloud(net)
    proxy.error("DescribeInstances", "RequestExpired", "Request has expired.")
    with pytest.raises(AWSError) as err:
        run(c.list_instances())
    assert str(err.value) == ("aws: listing instances: RequestExpired: Request has expired. "
                              "(your AWS credentials have expired (or the clock is off): "
                              "refresh them and retry)")
    proxy.clear()
    proxy.error("DescribeSpotPriceHistory", "AuthFailure", "AWS was not able to validate "
                "the provided access credentials", status=401)
    with pytest.raises(AWSError) as err:
        run(c.prices("g5.xlarge"))
    assert err.value.code == "AuthFailure"
    assert str(err.value).endswith("(AWS rejected the credentials: check AWS_ACCESS_KEY_ID / "
                                   "the profile)")


def test_spot_capacity_failure_leaves_nothing(net, proxy):
    proxy.error("RunInstances", "InsufficientInstanceCapacity",
                "There is no Spot capacity available that matches your request.")
    with pytest.raises(AWSError) as err:
        create(cloud(net, spot=True))
    assert str(err.value) == (
        "aws: creating a spot g5.xlarge instance: InsufficientInstanceCapacity: There is no "
        "Spot capacity available that matches your request. (AWS has no capacity for this "
        "type in this zone now: try another zone, type, or on-demand)")
    assert all_instances(net) == []


def test_unauthorized_dry_run_is_clear(net, proxy):
    c = cloud(net)
    instance, _ = create(c)
    proxy.error("StopInstances", "UnauthorizedOperation",
                "You are not authorized to perform this operation.")
    with pytest.raises(AWSError) as err:
        run(c.stop_instance(instance.id, dry_run=True))
    assert str(err.value) == (f"aws: dry run: stopping {instance.id}: UnauthorizedOperation: "
                              "You are not authorized to perform this operation. (these "
                              "credentials may not do this (IAM permissions))")


def ssm_never_online(proxy):
    proxy.answer_json("DescribeInstanceInformation", {"InstanceInformationList": []})


def test_instance_that_never_registers_with_ssm_is_terminated(net, proxy):
    ssm_never_online(proxy)
    c = cloud(net)
    lines: list[str] = []
    with pytest.raises(AWSError) as err:
        run(c.create_instance(CreateRequest(provider="aws"), lines.append, timeout=0.3))
    [item] = all_instances(net)
    assert item["State"]["Name"] in ("shutting-down", "terminated")
    iid = item["InstanceId"]
    assert err.value.code == "SSMTimeout"
    assert str(err.value) == (
        f"aws: {iid} did not register with SSM within 0.3s (is the SSM agent in the AMI, does "
        "the instance profile allow SSM (AmazonSSMManagedInstanceCore), and can the subnet "
        f"reach the SSM endpoints?); {iid} was terminated")
    assert any(line.startswith(f"waiting for {iid} to register with SSM (") for line in lines)


def test_wait_for_ssm_returns_when_online(net, proxy):
    c = cloud(net)
    instance, _ = create(c)
    proxy.answer_json("DescribeInstanceInformation", {"InstanceInformationList": [
        {"InstanceId": instance.id, "PingStatus": "Online", "PlatformType": "Linux"}]})
    info = run(c.wait_for_ssm(instance.id, timeout=5))
    assert info["PingStatus"] == "Online"


def test_failed_cleanup_names_the_instance_and_the_command(net, proxy):
    ssm_never_online(proxy)
    proxy.error("TerminateInstances", "UnauthorizedOperation", "You are not authorized.")
    with pytest.raises(AWSError) as err:
        run(cloud(net).create_instance(CreateRequest(provider="aws"), timeout=0.2))
    [item] = all_instances(net)
    iid = item["InstanceId"]
    assert item["State"]["Name"] == "running"
    text = str(err.value)
    assert text.startswith(f"aws: {iid} did not register with SSM within 0.2s")
    assert text.endswith(
        f"; terminating {iid} failed too (aws: terminating {iid}: UnauthorizedOperation: You "
        "are not authorized. (these credentials may not do this (IAM permissions))): terminate "
        f"it with `trainctl instance terminate {iid}` or `aws ec2 terminate-instances "
        f"--instance-ids {iid} --region us-east-1`")


def test_cancelled_create_terminates_the_instance(net, proxy):
    ssm_never_online(proxy)
    c = cloud(net)
    lines: list[str] = []

    async def scenario():
        task = asyncio.create_task(c.create_instance(CreateRequest(provider="aws"),
                                                     lines.append, timeout=60))
        while not any("register with SSM" in line for line in lines):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    [item] = all_instances(net)
    assert item["State"]["Name"] in ("shutting-down", "terminated")
    assert lines[-1] == f"cancelled: {item['InstanceId']} was terminated"


def test_wait_for_ssm_without_the_api_is_a_clear_error(net, monkeypatch):
    """Plain moto does not implement describe_instance_information: one line, no HTML."""
    monkeypatch.setattr(aws_api, "MAX_ATTEMPTS", 1)
    aws_api.reset_clients()
    c = cloud(net)
    instance, _ = create(c)
    with pytest.raises(AWSError) as err:
        run(c.wait_for_ssm(instance.id, timeout=1))
    assert str(err.value) == (f"aws: checking whether {instance.id} registered with SSM: 500 "
                              "(AWS answered 500 after 1 try; retry later)")
    assert raw(net, instance.id)["State"]["Name"] == "running"  # waiting never terminates
