"""Several EC2 instances for one multi-node run (`launch --nodes N --provider aws[:TEMPLATE]`):
N instances from the template in one cluster placement group and one subnet, with a security
group of their own that lets them reach each other on every TCP port (torchrun's rendezvous
29400, MASTER_PORT, NCCL's ports) and nobody else; the template's own security groups (how
trainctl or you reach them) are kept as they are. EFA interfaces where the type has them.

A create that fails half way terminates what it made (instances, then the placement group and
the security group) and says so in one line. At the run's end the instances are stopped or
terminated as the template's shutdown_behavior says; the placement group and the security
group go with the last of them terminated.

With --nodes MIN:MAX, a create short of capacity or quota once MIN instances are made goes
on with those. A lost node's instance is replaced alone (create_replacement, for
node_healing.py): the same template, type, market and AMI, in the same placement group,
subnet and security group.

`NodesOfCloud` is a part of AWSCloud (cloud.py), which gives `_call`, `template`,
`resolve_ami`, `_root_device`, `_run_arguments`, `_wait_running`, `_wait_for_ssm`,
`_describe_one`, `_clean_up` and `_to_instances`."""

from __future__ import annotations

import asyncio
import secrets
import time

from ...core.machines import CreateRequest, Instance, Progress
from ...runner.nodes import parse_node_count
from ..base import ProviderError
from .api import AWSError
from .tags import MANAGED_TAG, SESSION_TAG, TEMPLATE_TAG

CLUSTER_TAG = "trainctl:cluster"  # the placement group's name, on everything of one cluster
NODE_TAG = "trainctl:node"  # the instance's rank
GONE_STATES = ("shutting-down", "terminated")
# RunInstances errors after which a --nodes MIN:MAX run goes on with the nodes made (>= MIN):
# no capacity for the type in the zone now, or an account quota reached.
SHORT_CODES = {"InsufficientInstanceCapacity", "InsufficientCapacity",
               "InsufficientHostCapacity", "MaxSpotInstanceCountExceeded",
               "VcpuLimitExceeded", "InstanceLimitExceeded"}


def cluster_name(request: CreateRequest) -> str:
    """'trainctl-<run name>-<6 hex>': the placement group's and security group's name."""
    base = (request.name or "trainctl").removeprefix("trainctl-")
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in base)[:40].strip("-")
    return f"trainctl-{cleaned or 'run'}-{secrets.token_hex(3)}"


def node_count(nodes) -> int:
    """How many instances a --nodes value makes: N, or MAX of MIN:MAX."""
    return parse_node_count(nodes)[1]


def ingress_rules(group_id: str, efa: bool) -> list[dict]:
    """Members of the group reach each other: every TCP port; with EFA all traffic (EFA's
    own protocol is not TCP, and AWS asks for the self-referencing all-traffic rule)."""
    pair = [{"GroupId": group_id, "Description": "nodes of one trainctl run"}]
    if efa:
        return [{"IpProtocol": "-1", "UserIdGroupPairs": pair}]
    return [{"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "UserIdGroupPairs": pair}]


async def all_or_none(coroutines) -> None:
    """Await them together; the first failure cancels the others (no wait goes on polling
    an instance the clean-up is terminating)."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Made:
    """What a create has made so far, for its clean-up."""

    def __init__(self, name: str):
        self.name = name
        self.group: str | None = None  # the placement group, once made
        self.security_group: str | None = None
        self.instances: list[str] = []
        self.spot_requests: list[str] = []


class NodesOfCloud:
    """AWSCloud's multi-node part: create, plan and release the instances of one run."""

    async def node_network(self, subnet_id: str | None, instance_type: str) -> dict:
        """The subnet (the template's, else the default VPC's first default subnet), its VPC
        and whether the type supports EFA."""
        if subnet_id:
            answer = await self._call("ec2", f"describing subnet {subnet_id}",
                                      "describe_subnets", SubnetIds=[subnet_id])
        else:
            answer = await self._call("ec2", "looking for the default subnets",
                                      "describe_subnets", Filters=[
                                          {"Name": "default-for-az", "Values": ["true"]}])
        subnets = sorted(answer.get("Subnets") or [],
                         key=lambda item: (item.get("AvailabilityZone", ""), item["SubnetId"]))
        if not subnets:
            raise ProviderError(f"aws: several nodes need one subnet and {self.region()} has "
                                "no default VPC: set subnet_id in the [aws.templates.*] table")
        subnet = subnets[0]
        types = await self._call("ec2", f"describing instance type {instance_type}",
                                 "describe_instance_types", InstanceTypes=[instance_type])
        info = (types.get("InstanceTypes") or [{}])[0]
        return {"subnet": subnet["SubnetId"], "vpc": subnet["VpcId"],
                "zone": subnet.get("AvailabilityZone"),
                "public_ip": bool(subnet.get("MapPublicIpOnLaunch")),
                "efa": bool((info.get("NetworkInfo") or {}).get("EfaSupported"))}

    async def node_arguments(self, request: CreateRequest, subnet_id: str | None = None
                             ) -> tuple[dict, dict]:
        """(RunInstances arguments shared by every node, the network) from the template;
        `subnet_id`: the cluster's (a replacement's), else the template's."""
        template = self.template(request.template)
        ami = await self.resolve_ami(request.image or template.ami)
        args = self._run_arguments(request, template, ami, await self._root_device(ami))
        return args, await self.node_network(subnet_id or template.subnet_id,
                                             args["InstanceType"])

    def node_run(self, args: dict, net: dict, name: str, security_group: str,
                 rank: int) -> dict:
        """One node's RunInstances arguments: in the placement group and the subnet, with
        the run's security group besides the template's, tagged with the cluster and rank."""
        groups = [security_group, *args.get("SecurityGroupIds", [])]
        node = {key: value for key, value in args.items()
                if key not in ("SubnetId", "SecurityGroupIds", "ClientToken")}
        node["ClientToken"] = f"{name}-{rank}"  # a retried call never makes two of a node
        node["Placement"] = {"GroupName": name}
        if net["efa"]:
            node["NetworkInterfaces"] = [{
                "DeviceIndex": 0, "InterfaceType": "efa", "SubnetId": net["subnet"],
                "Groups": groups, "DeleteOnTermination": True,
                "AssociatePublicIpAddress": net["public_ip"]}]
        else:
            node["SubnetId"], node["SecurityGroupIds"] = net["subnet"], groups
        extra = [{"Key": CLUSTER_TAG, "Value": name}, {"Key": NODE_TAG, "Value": str(rank)}]
        node["TagSpecifications"] = [
            {"ResourceType": spec["ResourceType"], "Tags": [
                {**tag, "Value": f"{tag['Value']}-node{rank}"} if tag["Key"] == "Name" else tag
                for tag in spec["Tags"]] + extra}
            for spec in args["TagSpecifications"]]
        return node

    def cluster_tags(self, request: CreateRequest, name: str, kind: str) -> list[dict]:
        tags = {"Name": name, MANAGED_TAG: "true", SESSION_TAG: request.session or "",
                CLUSTER_TAG: name}
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]

    async def plan_nodes(self, request: CreateRequest, nodes) -> str:
        """What `launch --nodes N --dry-run` would create, as text; nothing is made."""
        count = node_count(nodes)
        args, net = await self.node_arguments(request)
        kind = "spot" if "InstanceMarketOptions" in args else "on-demand"
        name = cluster_name(request)
        extra = ", ".join(args.get("SecurityGroupIds", [])) or "none"
        reach = "all traffic" if net["efa"] else "TCP 0-65535"
        ends = "terminated" if args["InstanceInitiatedShutdownBehavior"] == "terminate" \
            else "stopped"
        lines = [
            f"would create {count} {kind} {args['InstanceType']} instances "
            f"(AMI {args['ImageId']}), head first:",
            *(f"  node {rank}: {name}-node{rank}" for rank in range(count)),
            f"placement group {name} (strategy cluster)",
            f"subnet {net['subnet']} ({net['zone']}, VPC {net['vpc']})",
            f"security group {name} in {net['vpc']}: inbound {reach} from members of the "
            "group only; outbound all",
            f"the template's security groups, kept as they are: {extra}",
            "network interface: " + ("EFA" if net["efa"] else
                                     f"ENA ({args['InstanceType']} has no EFA)"),
            f"at the run's end the instances are {ends} (the template's shutdown_behavior)",
        ]
        return "\n".join(lines) + "\n"

    async def create_nodes(self, request: CreateRequest, nodes,
                           progress: Progress | None = None, *,
                           timeout: float | None = None) -> list[Instance]:
        """N instances in one placement group and subnet, running and registered with SSM,
        head first. Any failure terminates what was made and says so in one line, but for
        --nodes MIN:MAX short of capacity or quota once MIN are made: the run goes on with
        those (one progress line says so)."""
        low, count = parse_node_count(nodes)
        args, net = await self.node_arguments(request)
        kind = "spot" if "InstanceMarketOptions" in args else "on-demand"
        made = Made(cluster_name(request))
        try:
            await self._call("ec2", f"creating placement group {made.name}",
                             "create_placement_group", GroupName=made.name,
                             Strategy="cluster",
                             TagSpecifications=self.cluster_tags(request, made.name,
                                                                 "placement-group"))
            made.group = made.name
            answer = await self._call(
                "ec2", f"creating security group {made.name}", "create_security_group",
                GroupName=made.name, VpcId=net["vpc"],
                Description=f"trainctl: the nodes of run {made.name} reach each other",
                TagSpecifications=self.cluster_tags(request, made.name, "security-group"))
            made.security_group = answer["GroupId"]
            await self._call("ec2", f"opening {made.security_group} to its members",
                             "authorize_security_group_ingress",
                             GroupId=made.security_group,
                             IpPermissions=ingress_rules(made.security_group, net["efa"]))
            for rank in range(count):
                node = self.node_run(args, net, made.name, made.security_group, rank)
                doing = f"creating node {rank + 1} of {count} ({kind} {args['InstanceType']})"
                try:
                    answer = await self._call("ec2", doing, "run_instances", **node)
                except AWSError as exc:
                    if rank < low or exc.code not in SHORT_CODES:
                        raise
                    if progress:
                        progress(f"{exc}: going on with the {rank} nodes made (--nodes "
                                 f"{low}:{count})")
                    break
                made.instances.append(answer["Instances"][0]["InstanceId"])
                if answer["Instances"][0].get("SpotInstanceRequestId"):
                    made.spot_requests.append(answer["Instances"][0]["SpotInstanceRequestId"])
                if progress:
                    progress(f"created {made.instances[-1]} (node {rank} of {made.name}, "
                             f"{kind} {args['InstanceType']})")
            limit = self.settings.ready_timeout if timeout is None else timeout
            started = time.monotonic()
            await all_or_none(self._wait_running(i, limit, progress, started)
                              for i in made.instances)
            await all_or_none(self._wait_for_ssm(i, limit, progress, started)
                              for i in made.instances)
        except BaseException as exc:
            note = await self.unmake(made)
            if not isinstance(exc, ProviderError):  # Ctrl-C, a cancelled task, a bug
                if progress:
                    progress(note)
                raise
            raise AWSError(f"{exc}; {note}", getattr(exc, "code", None)) from None
        found = await self.nodes_now(made.instances)
        return [found[i] for i in made.instances]

    async def nodes_now(self, ids: list[str]) -> dict[str, Instance]:
        answer = await self._call("ec2", f"describing {', '.join(ids)}", "describe_instances",
                                  InstanceIds=ids)
        raws = [raw for res in answer.get("Reservations") or []
                for raw in res.get("Instances") or []]
        return {item.id: item for item in await self._to_instances(raws)}

    async def unmake(self, made: Made) -> str:
        """Terminate a half-made cluster: instances, then the placement group and security
        group; the text says what was done (or what is left and how to remove it)."""
        count = len(made.instances)
        done = [f"terminated the {count} instance{'s' if count != 1 else ''} made "
                f"({', '.join(made.instances)})"] if count else []
        try:
            await self.terminate_all(made.instances, made.spot_requests)
            if made.group:
                await self.delete_group_when_empty(made.group)
                done.append(f"deleted placement group {made.group}")
            if made.security_group:
                await self.delete_security_group(made.security_group)
                done.append(f"deleted security group {made.security_group}")
        except (AWSError, OSError) as exc:
            left = [*made.instances, made.group, made.security_group]
            return (f"cleaning up failed too ({exc}): remove {', '.join(filter(None, left))} "
                    "(trainctl instances --all; aws ec2 delete-placement-group / "
                    "delete-security-group)")
        return "; ".join(done) or "nothing was left"

    async def terminate_all(self, ids: list[str], spot_requests: list[str]) -> None:
        """Terminate instances (their persistent spot requests first) and wait until gone."""
        if spot_requests:
            await self._call("ec2", "cancelling the spot requests of the nodes",
                             "cancel_spot_instance_requests",
                             SpotInstanceRequestIds=spot_requests)
        if not ids:
            return
        await self._call("ec2", f"terminating {', '.join(ids)}", "terminate_instances",
                         InstanceIds=ids)
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:  # a placement group or security group in use cannot be deleted
            found = await self.nodes_now(ids)
            if all(item.state == "terminated" for item in found.values()):
                return
            if time.monotonic() > deadline:
                raise AWSError(f"aws: {', '.join(ids)} did not terminate within "
                               f"{self.settings.ready_timeout:g}s", "ReadyTimeout")
            await asyncio.sleep(self.poll_seconds)

    async def delete_group_when_empty(self, name: str) -> None:
        await self._call("ec2", f"deleting placement group {name}", "delete_placement_group",
                         GroupName=name)

    async def delete_security_group(self, group_id: str) -> None:
        await self._call("ec2", f"deleting security group {group_id}", "delete_security_group",
                         GroupId=group_id)

    async def release_nodes(self, ids: list[str], template_name: str | None) -> str:
        """At a multi-node run's end: its instances stopped or terminated as the template's
        shutdown_behavior says (terminated: with the placement group and security group)."""
        found = await self.nodes_now(ids)
        made_from = (found[ids[0]].extra.get("tags") or {}).get(TEMPLATE_TAG) \
            if ids[0] in found else None
        try:
            template = self.template(template_name or made_from)
        except ProviderError:
            template = self.template(None)
        live = [i for i in ids if found.get(i) and found[i].state not in GONE_STATES]
        if template.shutdown_behavior == "stop":
            running = [i for i in live if found[i].state in ("pending", "running")]
            if running:
                await self._call("ec2", f"stopping {', '.join(running)}", "stop_instances",
                                 InstanceIds=running)
            return f"stopped {len(running)} instances ({', '.join(running)})"
        spot = [found[i].extra["spot_request_id"] for i in live
                if found[i].extra.get("spot_request_id")]
        await self.terminate_all(live, spot)
        return f"terminated {len(live)} instances ({', '.join(live)}); " + \
            await self.delete_cluster_of(ids)

    async def discard_nodes(self, ids: list[str]) -> str:
        """Terminate nodes made for a run that then failed to start, with their placement
        group and security group; the text says what was done."""
        try:
            found = await self.nodes_now(ids)
            spot = [item.extra["spot_request_id"] for item in found.values()
                    if item.extra.get("spot_request_id")]
            await self.terminate_all(ids, spot)
            return f"terminated the {len(ids)} instances ({', '.join(ids)}); " + \
                await self.delete_cluster_of(ids)
        except AWSError as exc:
            return (f"removing the nodes failed too ({exc}): terminate {', '.join(ids)} "
                    "(trainctl instance terminate ID; the last one takes its groups along)")

    async def start_nodes(self, ids: list[str], progress: Progress | None = None) -> None:
        """Start stopped nodes and wait until they run and answer through SSM."""
        await self._call("ec2", f"starting {', '.join(ids)}", "start_instances",
                         InstanceIds=ids)
        limit, started = self.settings.ready_timeout, time.monotonic()
        await all_or_none(self._wait_running(i, limit, progress, started) for i in ids)
        await all_or_none(self._wait_for_ssm(i, limit, progress, started) for i in ids)

    async def tag_nodes(self, ids: list[str], tags: dict[str, str]) -> None:
        await self._call("ec2", f"tagging {', '.join(ids)}", "create_tags", Resources=ids,
                         Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    async def terminated_node(self, instance_id: str) -> Instance:
        """A node terminated by hand (`trainctl instance terminate`): once it is gone, the
        placement group and security group go too if it was the last of its cluster."""
        await self.terminate_all([instance_id], [])
        note = await self.delete_cluster_of([instance_id])
        instance = (await self.nodes_now([instance_id]))[instance_id]
        instance.detail = "; ".join(filter(None, [instance.detail, note]))
        return instance

    async def delete_cluster_of(self, ids: list[str]) -> str:
        """The placement group and security group of the instances' cluster, deleted once
        every instance of it is terminated."""
        answer = await self._call("ec2", "describing the nodes' cluster", "describe_instances",
                                  InstanceIds=ids)
        names = {tag["Value"] for res in answer.get("Reservations") or []
                 for raw in res.get("Instances") or [] for tag in raw.get("Tags") or []
                 if tag["Key"] == CLUSTER_TAG}
        done = []
        for name in sorted(names):
            members = await self._call(
                "ec2", f"listing the instances of {name}", "describe_instances",
                Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [name]}])
            if any(raw["State"]["Name"] != "terminated"
                   for res in members.get("Reservations") or [] for raw in res["Instances"]):
                continue
            groups = await self._call("ec2", f"finding the security group of {name}",
                                      "describe_security_groups", Filters=[
                                          {"Name": f"tag:{CLUSTER_TAG}", "Values": [name]}])
            await self.delete_group_when_empty(name)
            for group in groups.get("SecurityGroups") or []:
                await self.delete_security_group(group["GroupId"])
            done.append(f"deleted placement group {name} and its security group")
        return "; ".join(done) or "the placement group stays while a node of it remains"

    # -- healing: a lost node replaced alone (node_healing.py) ---------------------------------

    async def create_replacement(self, model_id: str, rank: int, session_id: str,
                                 progress: Progress | None = None) -> Instance:
        """A new instance for node `rank` of the cluster instance `model_id` is in (the head):
        its template, type, market and AMI, in its placement group, subnet and the run's
        security group; running and registered with SSM. A failure once it exists terminates
        it, and the one line says so."""
        raw = await self._describe_one(model_id)
        tags = {tag["Key"]: tag.get("Value", "") for tag in raw.get("Tags") or []}
        name = tags.get(CLUSTER_TAG)
        if not name:
            raise ProviderError(f"aws: {model_id} is not a node of a trainctl cluster (it has "
                                f"no {CLUSTER_TAG} tag)")
        request = CreateRequest(
            provider="aws", template=tags.get(TEMPLATE_TAG) or None,
            type=raw.get("InstanceType"), spot=raw.get("InstanceLifecycle") == "spot",
            image=raw.get("ImageId"), session=session_id,
            name=tags.get("Name", name).removesuffix(f"-node{tags.get(NODE_TAG, '0')}"))
        args, net = await self.node_arguments(request, raw.get("SubnetId"))
        groups = await self._call("ec2", f"finding the security group of {name}",
                                  "describe_security_groups", Filters=[
                                      {"Name": f"tag:{CLUSTER_TAG}", "Values": [name]}])
        found = groups.get("SecurityGroups") or []
        if not found:
            raise ProviderError(f"aws: the security group of {name} is gone (a replacement "
                                "could not reach the other nodes)")
        node = self.node_run(args, net, name, found[0]["GroupId"], rank)
        node["ClientToken"] = f"{name}-{rank}-{secrets.token_hex(4)}"  # not the first's token
        kind = "spot" if "InstanceMarketOptions" in args else "on-demand"
        answer = await self._call("ec2", f"creating a replacement for node {rank} ({kind} "
                                         f"{args['InstanceType']})", "run_instances", **node)
        made = answer["Instances"][0]
        instance_id = made["InstanceId"]
        if progress:
            progress(f"created {instance_id} (node {rank} of {name}, {kind} "
                     f"{args['InstanceType']})")
        limit, started = self.settings.ready_timeout, time.monotonic()
        try:
            await self._wait_running(instance_id, limit, progress, started)
            await self._wait_for_ssm(instance_id, limit, progress, started)
        except BaseException as exc:
            note = await self._clean_up(instance_id, made.get("SpotInstanceRequestId"))
            if not isinstance(exc, ProviderError):  # Ctrl-C, a cancelled task, a bug
                raise
            raise AWSError(f"{exc}; {note}", getattr(exc, "code", None)) from None
        return (await self.nodes_now([instance_id]))[instance_id]

    async def release_lost_node(self, instance_id: str) -> str:
        """A lost node's instance, never left billing: terminated (its spot request cancelled
        first, so a persistent one does not start it again), or stopped when its template's
        shutdown_behavior is stop. The text says what was done."""
        found = (await self.nodes_now([instance_id])).get(instance_id)
        if found is None or found.state in GONE_STATES:
            return f"{instance_id} is {found.state if found else 'gone'}"
        tags = found.extra.get("tags") or {}
        try:
            template = self.template(tags.get(TEMPLATE_TAG))
        except ProviderError:
            template = self.template(None)
        if found.extra.get("spot_request_id"):
            await self._call("ec2", f"cancelling the spot request of {instance_id}",
                             "cancel_spot_instance_requests",
                             SpotInstanceRequestIds=[found.extra["spot_request_id"]])
        if template.shutdown_behavior == "stop":
            if found.state in ("stopping", "stopped"):
                return f"{instance_id} is {found.state}"
            await self._call("ec2", f"stopping {instance_id}", "stop_instances",
                             InstanceIds=[instance_id])
            return f"stopped {instance_id}"
        await self._call("ec2", f"terminating {instance_id}", "terminate_instances",
                         InstanceIds=[instance_id])
        return f"terminated {instance_id}"

    async def discard_replacement(self, instance: Instance) -> str:
        """Terminate a replacement its runner could not start on; the text says so."""
        return await self._clean_up(instance.id, instance.extra.get("spot_request_id"))

    async def node_machines(self, ids: list[str]
                            ) -> tuple[dict[str, dict], dict[str, dict], float | None]:
        """(each instance's raw description, each spot request's, the first's $/h: every
        node's type and market) for healing to judge and to cost a loss."""
        # a filter, not InstanceIds: one id EC2 has forgotten (an hour after it terminated)
        # would fail the whole call
        answer = await self._call("ec2", "describing the nodes", "describe_instances",
                                  Filters=[{"Name": "instance-id", "Values": ids}])
        raws = {raw["InstanceId"]: raw for res in answer.get("Reservations") or []
                for raw in res.get("Instances") or []}
        requests = [raw["SpotInstanceRequestId"] for raw in raws.values()
                    if raw.get("SpotInstanceRequestId")]
        spot: dict[str, dict] = {}
        if requests:
            answer = await self._call("ec2", "describing the nodes' spot requests",
                                      "describe_spot_instance_requests",
                                      SpotInstanceRequestIds=requests)
            spot = {item["SpotInstanceRequestId"]: item
                    for item in answer.get("SpotInstanceRequests") or []}
        price = None
        if ids and ids[0] in raws:
            price = (await self._to_instances([raws[ids[0]]]))[0].price_per_hour
        return raws, spot, price
