"""EC2 for trainctl: create on-demand or spot GPU instances from `[aws.templates.NAME]`, wait
for them to run and to register with SSM, list/start/stop/terminate the ones trainctl manages
(tag `trainctl:managed`), and what they cost (spot price history per AZ, the Pricing API, or
`[aws] prices` in the config).

Every boto3 call runs in a thread through `aws_api.call`; its errors are one-line AWSErrors.
This module imports boto3 (through aws_api) so it is imported only when an AWS action runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from datetime import datetime, timezone

from ...core.machines import CreateRequest, Instance, Price, Progress
from ..base import ProviderError
from . import api as aws_api
from .api import AWSError
from .cluster import CLUSTER_TAG, NodesOfCloud
from .settings import AwsConfig, AwsTemplate
from .tags import MANAGED_TAG, SESSION_TAG, TEMPLATE_TAG

POLL_SECONDS = 5.0
PRICE_TTL = 300.0  # seconds prices are kept in-process
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
DRY_RUN_OK = "DryRun: the request would have succeeded"

# GPUs of common GPU instance types: family -> (model, {size: count}); sizes not listed have 1.
_GPU_FAMILIES: dict[str, tuple[str, dict[str, int]]] = {
    "g4dn": ("T4", {"12xlarge": 4, "metal": 8}),
    "g5": ("A10G", {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6": ("L4", {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6e": ("L40S", {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "p3": ("V100", {"8xlarge": 4, "16xlarge": 8}),
    "p3dn": ("V100", {"24xlarge": 8}),
    "p4d": ("A100", {"24xlarge": 8}),
    "p4de": ("A100 80GB", {"24xlarge": 8}),
    "p5": ("H100", {"48xlarge": 8}),
}

# Region code -> the Pricing API's `location` attribute.
REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)",
    "sa-east-1": "South America (Sao Paulo)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-north-1": "EU (Stockholm)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
}

SSM_HELP = ("is the SSM agent in the AMI, does the instance profile allow SSM "
            "(AmazonSSMManagedInstanceCore), and can the subnet reach the SSM endpoints?")


def gpus_of(instance_type: str) -> str:
    """'1x A10G' for g5.xlarge; '' for a type without GPUs we know of."""
    family, _, size = instance_type.partition(".")
    known = _GPU_FAMILIES.get(family)
    if known is None:
        return ""
    model, counts = known
    return f"{counts.get(size, 1)}x {model}"


def _tags(item: dict) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in item.get("Tags") or []}


def _epoch(value) -> float | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return None


def _short(exc: AWSError) -> str:
    """An AWSError's text without an HTML page a broken endpoint may have answered with."""
    text = str(exc)
    if "<" in text and ("<html" in text.lower() or "<!doctype" in text.lower()):
        text = text[:text.index("<")].rstrip(": ") + f" (HTTP {exc.code} from the endpoint)"
    return text


# -- price cache (in-process, a few minutes) ------------------------------------------------

_price_lock = threading.Lock()
_price_cache: dict[tuple, tuple[float, object]] = {}


def clear_price_cache() -> None:
    """Forget cached prices and Pricing API clients (tests point endpoints elsewhere)."""
    with _price_lock:
        _price_cache.clear()
        _pricing_clients.clear()


def _cached(key: tuple):
    with _price_lock:
        hit = _price_cache.get(key)
    if hit and time.monotonic() - hit[0] < PRICE_TTL:
        return True, hit[1]
    return False, None


def _remember(key: tuple, value) -> None:
    with _price_lock:
        _price_cache[key] = (time.monotonic(), value)


def _endpoint_key(service: str) -> tuple:
    return (os.environ.get("AWS_ENDPOINT_URL"),
            os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"))


def parse_on_demand(price_list: list) -> float | None:
    """USD/h from the Pricing API's PriceList (JSON strings): the OnDemand term's hourly
    price dimension."""
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for term in (product.get("terms", {}).get("OnDemand") or {}).values():
            for dimension in (term.get("priceDimensions") or {}).values():
                usd = (dimension.get("pricePerUnit") or {}).get("USD")
                if usd is None:
                    continue
                try:
                    value = float(usd)
                except ValueError:
                    continue
                if value > 0:
                    return value
    return None


class AWSCloud(NodesOfCloud):
    """EC2 instances trainctl creates and manages (several for one run: cluster.py).
    `settings` defaults to `[aws]` of the config; `poll_seconds` is how often a create asks
    EC2/SSM whether the instance is ready."""

    name = "aws"

    def __init__(self, settings: AwsConfig | None = None, *,
                 poll_seconds: float = POLL_SECONDS):
        self._settings = settings
        self.poll_seconds = poll_seconds

    @property
    def settings(self) -> AwsConfig:
        if self._settings is None:
            self._settings = aws_api.aws_settings()
        return self._settings

    def region(self) -> str:
        return aws_api.region(self.settings)

    async def _call(self, service: str, doing: str, method: str, **kwargs):
        settings = self.settings

        def run():
            return getattr(aws_api.client(service, settings), method)(**kwargs)

        return await aws_api.call(doing, run)

    # -- templates and AMIs -----------------------------------------------------------------

    def template(self, name: str | None = None) -> AwsTemplate:
        """`[aws.templates.NAME]`, `default` when no name is given. Without any template a
        built-in default is used (the AMI must then come from the request)."""
        templates = self.settings.templates
        if not templates:
            if name is None or name == "default":
                return AwsTemplate()
            raise ProviderError(f"aws: no template '{name}': the config has no "
                                f"[aws.templates.*] tables (add [aws.templates.{name}])")
        wanted = name or "default"
        if wanted not in templates:
            available = ", ".join(sorted(templates))
            hint = ("pass --template NAME or add [aws.templates.default]" if name is None
                    else f"add [aws.templates.{name}] to the config")
            raise ProviderError(f"aws: no template '{wanted}' (available: {available}); {hint}")
        return templates[wanted]

    async def resolve_ami(self, spec: str | None) -> str:
        """An AMI id from `ami-...` (as is), an SSM parameter (`/aws/service/...` or
        `resolve:ssm:NAME`), or a name filter (newest match owned by amazon or you)."""
        if not spec or not spec.strip():
            raise ProviderError("aws: no AMI: set ami in the [aws.templates.*] table (an ami- "
                                "id, an SSM parameter such as /aws/service/deeplearning/ami/"
                                "x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id, "
                                "or a name filter) or pass --image")
        spec = spec.strip()
        if spec.startswith("ami-"):
            return spec
        if spec.startswith("resolve:ssm:") or spec.startswith("/"):
            parameter = spec.removeprefix("resolve:ssm:")
            try:
                answer = await self._call("ssm", f"reading SSM parameter {parameter}",
                                          "get_parameter", Name=parameter)
            except AWSError as exc:
                if exc.code == "ParameterNotFound":
                    raise AWSError(f"aws: no SSM parameter '{parameter}' in {self.region()} "
                                   "(check the ami of the template)", exc.code) from None
                raise
            value = str(answer.get("Parameter", {}).get("Value", "")).strip()
            if not value.startswith("ami-"):
                raise ProviderError(f"aws: SSM parameter '{parameter}' holds '{value}', not an "
                                    "AMI id")
            return value
        answer = await self._call(
            "ec2", f"looking up AMI '{spec}'", "describe_images", Owners=["amazon", "self"],
            Filters=[{"Name": "name", "Values": [spec]},
                     {"Name": "state", "Values": ["available"]}])
        images = sorted(answer.get("Images") or [], key=lambda image: image.get("CreationDate", ""))
        if not images:
            raise ProviderError(f"aws: no AMI named '{spec}' owned by amazon or you in "
                                f"{self.region()} (a name filter may use * wildcards)")
        return images[-1]["ImageId"]

    async def _root_device(self, ami: str) -> str:
        answer = await self._call("ec2", f"describing AMI {ami}", "describe_images",
                                  ImageIds=[ami])
        images = answer.get("Images") or []
        if not images:
            raise ProviderError(f"aws: no AMI {ami} in {self.region()}")
        return images[0].get("RootDeviceName") or "/dev/sda1"

    # -- create ------------------------------------------------------------------------------

    def _run_arguments(self, request: CreateRequest, template: AwsTemplate, ami: str,
                       root_device: str) -> dict:
        instance_type = request.type or template.instance_type
        spot = template.spot if request.spot is None else request.spot
        name = request.name or (f"trainctl-{request.session}" if request.session else "trainctl")
        tags = {**template.tags, "Name": name, MANAGED_TAG: "true",
                SESSION_TAG: request.session or "",
                # Sessions on the instance use this template's workdir and s3_prefix.
                TEMPLATE_TAG: request.template or "default"}
        tag_list = [{"Key": key, "Value": str(value)} for key, value in tags.items()]
        args: dict = {
            "ImageId": ami, "InstanceType": instance_type, "MinCount": 1, "MaxCount": 1,
            "ClientToken": uuid.uuid4().hex,  # a retried RunInstances never makes two
            "InstanceInitiatedShutdownBehavior": template.shutdown_behavior,
            "BlockDeviceMappings": [{"DeviceName": root_device, "Ebs": {
                "VolumeSize": request.disk_gb or template.volume_gb, "VolumeType": "gp3",
                "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list},
                                  {"ResourceType": "volume", "Tags": tag_list}],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                "HttpPutResponseHopLimit": 2},
        }
        if template.key_name:
            args["KeyName"] = template.key_name
        if template.subnet_id:
            args["SubnetId"] = template.subnet_id
        if template.security_group_ids:
            args["SecurityGroupIds"] = list(template.security_group_ids)
        if template.iam_instance_profile:
            profile = template.iam_instance_profile
            args["IamInstanceProfile"] = ({"Arn": profile} if profile.startswith("arn:")
                                          else {"Name": profile})
        if spot:
            stop = template.interruption_behavior == "stop"
            options: dict = {
                # AWS only stops (rather than terminates) instances of persistent requests.
                "SpotInstanceType": "persistent" if stop else "one-time",
                "InstanceInterruptionBehavior": "stop" if stop else "terminate",
            }
            max_price = request.max_price or template.max_price
            if max_price:
                options["MaxPrice"] = f"{max_price:.6f}".rstrip("0").rstrip(".")
            args["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
        elif request.max_price:
            raise ProviderError("aws: a max price applies to spot instances only (add --spot)")
        return args

    async def create_instance(self, request: CreateRequest, progress: Progress | None = None,
                              *, wait_ssm: bool = True,
                              timeout: float | None = None) -> Instance:
        """Run one instance from the template, wait until it runs and (unless wait_ssm is
        False) has registered with SSM. Any failure once it exists terminates it."""
        template = self.template(request.template)
        ami = await self.resolve_ami(request.image or template.ami)
        root_device = await self._root_device(ami)
        args = self._run_arguments(request, template, ami, root_device)
        zone = request.zone  # a replacement in a fallback zone
        if zone:
            await self._place(args, zone)
        kind = "spot" if "InstanceMarketOptions" in args else "on-demand"
        doing = f"creating a {kind} {args['InstanceType']} instance"
        if request.dry_run:
            try:
                await self._call("ec2", doing, "run_instances", DryRun=True, **args)
            except AWSError as exc:
                if exc.code != "DryRunOperation":
                    raise
            return Instance(provider="aws", id="(dry run)", name=_tag_value(args, "Name"),
                            type=args["InstanceType"], state="dry-run",
                            lifecycle=kind, gpus=gpus_of(args["InstanceType"]),
                            session=request.session, detail=DRY_RUN_OK,
                            extra={"ami": ami, "request": _printable(args)})
        answer = await self._call("ec2", doing, "run_instances", **args)
        instance_id = answer["Instances"][0]["InstanceId"]
        spot_request = answer["Instances"][0].get("SpotInstanceRequestId")
        if progress:
            progress(f"created {instance_id} ({kind} {args['InstanceType']})")
        limit = self.settings.ready_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            await self._wait_running(instance_id, limit, progress, started)
            if wait_ssm:
                await self._wait_for_ssm(instance_id, limit, progress, started)
        except asyncio.CancelledError:
            # Ctrl-C / a cancelled task: nothing may be left billing without the user knowing.
            note = await self._clean_up(instance_id, spot_request)
            if progress:
                progress(f"cancelled: {note}")
            raise
        except BaseException as exc:
            note = await self._clean_up(instance_id, spot_request)
            if not isinstance(exc, ProviderError):  # Ctrl-C outside asyncio, or a bug
                if progress:
                    progress(note)
                raise
            reason = _short(exc) if isinstance(exc, AWSError) else str(exc)
            raise AWSError(f"{reason}; {note}", getattr(exc, "code", None)) from None
        return await self.get_instance(instance_id)

    async def _place(self, args: dict, zone: str) -> None:
        """Put the instance in `zone`: the template's subnet if it is there, else a subnet of
        the same VPC in that zone; without a subnet, EC2's Placement."""
        subnet_id = args.get("SubnetId")
        if not subnet_id:
            args["Placement"] = {"AvailabilityZone": zone}
            return
        answer = await self._call("ec2", f"describing subnet {subnet_id}", "describe_subnets",
                                  SubnetIds=[subnet_id])
        subnet = (answer.get("Subnets") or [{}])[0]
        if subnet.get("AvailabilityZone") == zone:
            return
        vpc = subnet.get("VpcId")
        answer = await self._call(
            "ec2", f"looking for a subnet in {zone}", "describe_subnets",
            Filters=[{"Name": "vpc-id", "Values": [vpc]},
                     {"Name": "availability-zone", "Values": [zone]}])
        subnets = sorted(answer.get("Subnets") or [],
                         key=lambda item: -int(item.get("AvailableIpAddressCount") or 0))
        if not subnets:
            raise ProviderError(f"aws: no subnet of {vpc} in {zone} (a fallback zone needs a "
                                "subnet there)")
        args["SubnetId"] = subnets[0]["SubnetId"]

    async def _clean_up(self, instance_id: str, spot_request: str | None) -> str:
        """Terminate a half-made instance; the text says what happened to it."""
        try:
            if spot_request:
                await self._call("ec2", f"cancelling spot request {spot_request}",
                                 "cancel_spot_instance_requests",
                                 SpotInstanceRequestIds=[spot_request])
            await self._call("ec2", f"terminating {instance_id}", "terminate_instances",
                             InstanceIds=[instance_id])
        except (AWSError, OSError) as exc:
            why = _short(exc) if isinstance(exc, AWSError) else str(exc)
            return (f"terminating {instance_id} failed too ({why}): "
                    f"terminate it with `trainctl instance terminate {instance_id}` or "
                    f"`aws ec2 terminate-instances --instance-ids {instance_id} "
                    f"--region {self.region()}`")
        return f"{instance_id} was terminated"

    async def _wait_running(self, instance_id: str, timeout: float,
                            progress: Progress | None, started: float) -> None:
        while True:
            try:
                raw = await self._describe_one(instance_id)
            except AWSError as exc:
                if exc.code != "InvalidInstanceID.NotFound":  # not visible yet right after run
                    raise
                raw = None
            state = (raw or {}).get("State", {}).get("Name", "pending")
            if state == "running":
                return
            if state in ("shutting-down", "terminated", "stopping", "stopped"):
                reason = ((raw or {}).get("StateReason") or {}).get("Message") or "no reason given"
                raise AWSError(f"aws: {instance_id} is {state} instead of running ({reason})",
                               "NotRunning")
            elapsed = time.monotonic() - started
            if elapsed >= timeout:
                raise AWSError(f"aws: {instance_id} was not running within {timeout:g}s "
                               f"(still {state})", "ReadyTimeout")
            if progress:
                progress(f"waiting for {instance_id} to be running ({elapsed:.0f}s)")
            await asyncio.sleep(min(self.poll_seconds, max(0.0, timeout - elapsed)))

    async def wait_for_ssm(self, instance_id: str, timeout: float | None = None,
                           progress: Progress | None = None) -> dict:
        """Wait until the instance's SSM agent is registered and online; returns its
        InstanceInformation. AWSError (code SSMTimeout) when it does not within timeout."""
        limit = self.settings.ready_timeout if timeout is None else timeout
        return await self._wait_for_ssm(instance_id, limit, progress, time.monotonic())

    async def _wait_for_ssm(self, instance_id: str, limit: float, progress: Progress | None,
                            started: float) -> dict:
        while True:
            try:
                answer = await self._call(
                    "ssm", f"checking whether {instance_id} registered with SSM",
                    "describe_instance_information",
                    Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])
            except AWSError as exc:
                raise AWSError(_short(exc), exc.code) from None
            for info in answer.get("InstanceInformationList") or []:
                if info.get("InstanceId") == instance_id and info.get("PingStatus") == "Online":
                    return info
            elapsed = time.monotonic() - started
            if progress:  # every poll says so, the last one too (however slow the machine)
                progress(f"waiting for {instance_id} to register with SSM ({elapsed:.0f}s)")
            if elapsed >= limit:
                raise AWSError(f"aws: {instance_id} did not register with SSM within "
                               f"{limit:g}s ({SSM_HELP})", "SSMTimeout")
            await asyncio.sleep(min(self.poll_seconds, max(0.0, limit - elapsed)))

    # -- list / get --------------------------------------------------------------------------

    async def _describe_one(self, instance_id: str) -> dict:
        answer = await self._call("ec2", f"describing {instance_id}", "describe_instances",
                                  InstanceIds=[instance_id])
        for reservation in answer.get("Reservations") or []:
            for raw in reservation.get("Instances") or []:
                return raw
        raise AWSError(f"aws: no instance {instance_id}", "InvalidInstanceID.NotFound")

    async def lookup(self, instance_id: str) -> dict:
        """The raw instance, with one clear line for a malformed or unknown id."""
        if not INSTANCE_ID.match(instance_id or ""):
            raise ProviderError(f"aws: '{instance_id}' is not an EC2 instance id "
                                "(i-0123456789abcdef0)")
        try:
            return await self._describe_one(instance_id)
        except AWSError as exc:
            if exc.code in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                raise AWSError(f"aws: no instance {instance_id} in {self.region()} (see "
                               "trainctl instances --all)", exc.code) from None
            raise

    async def get_instance(self, instance_id: str) -> Instance:
        raw = await self.lookup(instance_id)
        return (await self._to_instances([raw]))[0]

    async def list_instances(self, *, include_unmanaged: bool = False) -> list[Instance]:
        """Instances in the region: those tagged trainctl:managed, or all of them.
        Terminated ones are listed too (AWS shows them for about an hour); they cost nothing."""
        settings = self.settings
        filters = [] if include_unmanaged else [{"Name": f"tag:{MANAGED_TAG}",
                                                 "Values": ["true"]}]

        def describe_all() -> list[dict]:
            paginator = aws_api.client("ec2", settings).get_paginator("describe_instances")
            found = []
            for page in paginator.paginate(Filters=filters):
                for reservation in page.get("Reservations") or []:
                    found.extend(reservation.get("Instances") or [])
            return found

        raws = await aws_api.call("listing instances", describe_all)
        instances = await self._to_instances(raws)
        return sorted(instances, key=lambda item: (-(item.launched or 0), item.id))

    async def _to_instances(self, raws: list[dict]) -> list[Instance]:
        instances = [self._instance(raw) for raw in raws]
        wanted = {(item.type, item.lifecycle, item.zone) for item in instances
                  if item.state != "terminated"}
        keys = list(wanted)
        found = await asyncio.gather(*(self._price_for(*key) for key in keys))
        price = dict(zip(keys, found, strict=True))
        for item in instances:
            item.price_per_hour = price.get((item.type, item.lifecycle, item.zone))
        return instances

    def _instance(self, raw: dict) -> Instance:
        tags = _tags(raw)
        reason = (raw.get("StateReason") or {}).get("Message") or None
        return Instance(
            provider="aws", id=raw["InstanceId"], name=tags.get("Name", ""),
            type=raw.get("InstanceType", ""), state=raw.get("State", {}).get("Name", ""),
            lifecycle="spot" if raw.get("InstanceLifecycle") == "spot" else "on-demand",
            launched=_epoch(raw.get("LaunchTime")),
            zone=(raw.get("Placement") or {}).get("AvailabilityZone"),
            address=raw.get("PublicIpAddress") or raw.get("PrivateIpAddress"),
            gpus=gpus_of(raw.get("InstanceType", "")),
            session=tags.get(SESSION_TAG) or None,
            managed=tags.get(MANAGED_TAG) == "true",
            detail=reason,
            extra={key: value for key, value in {
                "ami": raw.get("ImageId"), "key_name": raw.get("KeyName"),
                "subnet_id": raw.get("SubnetId"), "vpc_id": raw.get("VpcId"),
                "private_ip": raw.get("PrivateIpAddress"),
                "public_ip": raw.get("PublicIpAddress"),
                "spot_request_id": raw.get("SpotInstanceRequestId"),
                "tags": tags}.items() if value})

    # -- actions -----------------------------------------------------------------------------

    async def _act(self, verb: str, method: str, instance_id: str, *, dry_run: bool,
                   force: bool) -> Instance:
        raw = await self.lookup(instance_id)
        if not force and _tags(raw).get(MANAGED_TAG) != "true":
            raise ProviderError(f"aws: {instance_id} is not managed by trainctl (no "
                                f"{MANAGED_TAG} tag); pass --force to {verb} it anyway")
        state = raw.get("State", {}).get("Name", "")
        if state == "terminated":
            raise ProviderError(f"aws: {instance_id} is terminated; it cannot be {_past(verb)}")
        doing = f"{'dry run: ' if dry_run else ''}{_ing(verb)} {instance_id}"
        if dry_run:
            try:
                await self._call("ec2", doing, method, InstanceIds=[instance_id], DryRun=True)
            except AWSError as exc:
                if exc.code != "DryRunOperation":
                    raise
            instance = (await self._to_instances([raw]))[0]
            instance.detail = f"{DRY_RUN_OK} ({instance_id} was not {_past(verb)})"
            instance.extra["dry_run"] = True
            return instance
        if method == "terminate_instances" and raw.get("SpotInstanceRequestId"):
            # A persistent spot request would launch a replacement: cancel it first.
            await self._call("ec2", f"cancelling the spot request of {instance_id}",
                             "cancel_spot_instance_requests",
                             SpotInstanceRequestIds=[raw["SpotInstanceRequestId"]])
        await self._call("ec2", doing, method, InstanceIds=[instance_id])
        if method == "terminate_instances" and CLUSTER_TAG in _tags(raw):
            return await self.terminated_node(instance_id)  # the last: its groups go too
        return await self.get_instance(instance_id)

    async def start_instance(self, instance_id: str, *, dry_run: bool = False,
                             force: bool = False) -> Instance:
        return await self._act("start", "start_instances", instance_id,
                               dry_run=dry_run, force=force)

    async def stop_instance(self, instance_id: str, *, dry_run: bool = False,
                            force: bool = False) -> Instance:
        return await self._act("stop", "stop_instances", instance_id,
                               dry_run=dry_run, force=force)

    async def terminate_instance(self, instance_id: str, *, dry_run: bool = False,
                                 force: bool = False) -> Instance:
        return await self._act("terminate", "terminate_instances", instance_id,
                               dry_run=dry_run, force=force)

    # -- prices ------------------------------------------------------------------------------

    async def prices(self, type: str | None = None) -> list[Price]:
        """Spot $/h per AZ (latest of describe_spot_price_history) and the on-demand $/h of
        the region (Pricing API, else `[aws] prices`, else unknown)."""
        if type:
            instance_type = type
        else:
            try:
                instance_type = self.template(None).instance_type
            except ProviderError:
                raise ProviderError("aws: prices need an instance type: pass --type "
                                    "(e.g. g5.xlarge)") from None
        where = self.region()
        spot = await self._spot_prices(instance_type)
        gpus = gpus_of(instance_type)
        rows = [Price(provider="aws", type=instance_type, lifecycle="spot",
                      price_per_hour=value, where=zone, source="describe_spot_price_history",
                      detail=gpus) for zone, value in sorted(spot.items())]
        value, source = await self._on_demand(instance_type)
        rows.append(Price(provider="aws", type=instance_type, lifecycle="on-demand",
                          price_per_hour=value, where=where, source=source, detail=gpus))
        return rows

    async def _price_for(self, instance_type: str, lifecycle: str,
                         zone: str | None) -> float | None:
        try:
            if lifecycle == "spot":
                return (await self._spot_prices(instance_type)).get(zone or "")
            return (await self._on_demand(instance_type))[0]
        except ProviderError:
            return None  # a price we cannot get never hides the instance list

    async def _spot_prices(self, instance_type: str) -> dict[str, float]:
        """The latest spot price per AZ for the type (Linux/UNIX)."""
        key = ("spot", self.settings.profile, self.region(), instance_type,
               *_endpoint_key("ec2"))
        hit, value = _cached(key)
        if hit:
            return value
        answer = await self._call(
            "ec2", f"reading spot prices of {instance_type}", "describe_spot_price_history",
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.now(timezone.utc))
        latest: dict[str, tuple] = {}
        for row in answer.get("SpotPriceHistory") or []:
            zone, stamp = row.get("AvailabilityZone"), row.get("Timestamp")
            if not zone or row.get("InstanceType", instance_type) != instance_type:
                continue
            if zone not in latest or (stamp and latest[zone][0] and stamp > latest[zone][0]):
                latest[zone] = (stamp, float(row["SpotPrice"]))
        prices = {zone: price for zone, (_, price) in latest.items()}
        _remember(key, prices)
        return prices

    async def _on_demand(self, instance_type: str) -> tuple[float | None, str]:
        where = self.region()
        key = ("on-demand", self.settings.profile, where, instance_type,
               *_endpoint_key("pricing"))
        hit, value = _cached(key)
        if not hit:
            try:
                value = await self._pricing_api(instance_type, where)
            except (AWSError, ValueError, KeyError):
                value = None  # no Pricing API here (denied, absent): the config table decides
            _remember(key, value)
        if value is not None:
            return value, "pricing api"
        table = self.settings.prices
        if instance_type in table:
            return float(table[instance_type]), "config [aws.prices]"
        return None, f'unknown — add [aws.prices] "{instance_type}" = USD'

    async def _pricing_api(self, instance_type: str, where: str) -> float | None:
        filters = [
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        ]
        if where in REGION_NAMES:
            filters.append({"Type": "TERM_MATCH", "Field": "location",
                            "Value": REGION_NAMES[where]})
        else:
            filters.append({"Type": "TERM_MATCH", "Field": "regionCode", "Value": where})
        settings = self.settings

        def ask():
            return _pricing_client(settings).get_products(
                ServiceCode="AmazonEC2", Filters=filters, FormatVersion="aws_v1",
                MaxResults=10)

        answer = await aws_api.call(f"reading the on-demand price of {instance_type}", ask)
        return parse_on_demand(answer.get("PriceList") or [])


_pricing_clients: dict[tuple, object] = {}


def _pricing_client(settings: AwsConfig):
    """The Pricing API lives in us-east-1. It is optional (the config table is the fallback),
    so it gets two tries instead of the usual five."""
    import botocore.config

    key = (settings.profile, *_endpoint_key("pricing"))
    with _price_lock:
        if key not in _pricing_clients:
            config = botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=aws_api.CONNECT_TIMEOUT, read_timeout=aws_api.READ_TIMEOUT,
                user_agent_extra="trainctl")
            _pricing_clients[key] = aws_api.session(settings).client(
                "pricing", region_name="us-east-1", config=config)
        return _pricing_clients[key]


def _tag_value(args: dict, key: str) -> str:
    for tag in args["TagSpecifications"][0]["Tags"]:
        if tag["Key"] == key:
            return tag["Value"]
    return ""


def _printable(args: dict) -> dict:
    return {key: value for key, value in args.items() if key != "ClientToken"}


def _ing(verb: str) -> str:
    return {"stop": "stopping", "start": "starting", "terminate": "terminating"}[verb]


def _past(verb: str) -> str:
    return {"stop": "stopped", "start": "started", "terminate": "terminated"}[verb]
