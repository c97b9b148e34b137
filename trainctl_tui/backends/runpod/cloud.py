"""RunPod pods as cloud machines (RunPodCloud): GPU types and prices, creating, starting,
stopping and terminating pods. The runpod SDK is imported only when a RunPod call runs
(see api.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ...core.atomic import atomic_write
from ...core.machines import CreateRequest, Instance, Price, Progress
from ..base import ProviderError
from .api import RunPodAPI, RunPodError, gql_float, gql_quote, gql_string

POLL_SECONDS = 3.0  # between pod queries while waiting for RUNNING
SSH_PORT = "22/tcp"
MANAGED_ENV = "TRAINCTL_MANAGED"
SESSION_ENV = "TRAINCTL_SESSION"
SPOT_TYPES = ("INTERRUPTABLE", "BID")

POD_FIELDS = """
  id name desiredStatus costPerHr gpuCount podType imageName env lastStatusChange
  uptimeSeconds lowestBidPriceToResume volumeInGb containerDiskInGb networkVolumeId
  machine { gpuDisplayName gpuTypeId dataCenterId secureCloud }
  runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }
"""

GPU_FIELDS = """
  id displayName memoryInGb secureCloud communityCloud securePrice communityPrice
  secureSpotPrice communitySpotPrice
  lowestPrice(input: {{gpuCount: {count}}}) {{ minimumBidPrice uninterruptablePrice stockStatus }}
"""


def _settings():
    from ...config.loader import load_config

    return load_config().runpod


def ssh_address(pod: dict) -> tuple[str, int] | None:
    """(public ip, port) that 22/tcp of the pod is mapped to, once it runs."""
    for port in ((pod.get("runtime") or {}).get("ports") or []):
        if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("publicPort") \
                and (port.get("type") or "tcp") == "tcp":
            return port["ip"], int(port["publicPort"])
    return None


def pod_env(pod: dict) -> dict[str, str]:
    env = {}
    for item in pod.get("env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def instance_from_pod(pod: dict, now: float | None = None) -> Instance:
    now = now or time.time()
    runtime = pod.get("runtime") or {}
    uptime = runtime.get("uptimeInSeconds")
    address = ssh_address(pod)
    machine = pod.get("machine") or {}
    gpu = machine.get("gpuDisplayName") or ""
    env = pod_env(pod)
    return Instance(
        provider="runpod", id=pod["id"], name=pod.get("name") or "",
        type=gpu, state=(pod.get("desiredStatus") or "unknown").lower(),
        lifecycle="spot" if pod.get("podType") in SPOT_TYPES else "on-demand",
        price_per_hour=pod.get("costPerHr"),
        launched=now - uptime if uptime is not None else None,
        zone=machine.get("dataCenterId"),
        address=f"{address[0]}:{address[1]}" if address else None,
        gpus=f"{pod.get('gpuCount') or 0}x {gpu}".strip() if gpu else "",
        session=env.get(SESSION_ENV) or None,
        managed=env.get(MANAGED_ENV) == "1",
        detail=pod.get("lastStatusChange"),
        extra={"podType": pod.get("podType"), "imageName": pod.get("imageName"),
               "lowestBidPriceToResume": pod.get("lowestBidPriceToResume"),
               "gpuCount": pod.get("gpuCount"), "networkVolumeId": pod.get("networkVolumeId")},
    )


def public_key(identity_file: str | None) -> str | None:
    """The user's ssh public key, put in the pod's PUBLIC_KEY so its sshd lets us in."""
    candidates = [f"{identity_file}.pub"] if identity_file else []
    candidates += [f"~/.ssh/id_{kind}.pub" for kind in ("ed25519", "ecdsa", "rsa")]
    for candidate in candidates:
        try:
            text = Path(candidate).expanduser().read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


class RunPodCloud:
    name = "runpod"

    def __init__(self, settings=None, api: RunPodAPI | None = None):
        self._settings = settings
        self._api = api

    @property
    def settings(self):
        if self._settings is None:
            self._settings = _settings()
        return self._settings

    @property
    def api(self) -> RunPodAPI:
        if self._api is None:
            from ...config.loader import load_config

            self._api = RunPodAPI(load_config())
        return self._api

    # -- GPU types and prices ---------------------------------------------------------------

    async def gpu_types(self, type: str | None = None, *, gpu_count: int = 1) -> list[dict]:
        """The API's gpuTypes rows (with lowestPrice for gpu_count GPUs)."""
        where = f"(input: {{id: {gql_quote(type)}}})" if type else ""
        fields = GPU_FIELDS.format(count=int(gpu_count))
        data = await self.api.graphql("listing GPU types",
                                      f"query GpuTypes {{ gpuTypes{where} {{ {fields} }} }}")
        return [row for row in data.get("gpuTypes") or [] if row]

    async def prices(self, type: str | None = None, *, gpu_count: int = 1) -> list[Price]:
        """On-demand and spot, secure and community prices per GPU type (for gpu_count GPUs),
        cheapest first; `available` says whether the cloud offers it and has stock."""
        rows = []
        for gpu in await self.gpu_types(type, gpu_count=gpu_count):
            lowest = gpu.get("lowestPrice") or {}
            stock = lowest.get("stockStatus")
            detail = f"{gpu.get('memoryInGb')} GB" + (f", stock {stock}" if stock else "")
            for lifecycle, cloud, field in (
                    ("on-demand", "secure", "securePrice"),
                    ("on-demand", "community", "communityPrice"),
                    ("spot", "secure", "secureSpotPrice"),
                    ("spot", "community", "communitySpotPrice")):
                price = gpu.get(field)
                offered = bool(gpu.get(f"{cloud}Cloud")) and bool(price)
                rows.append(Price(
                    provider="runpod", type=gpu["id"], lifecycle=lifecycle,
                    price_per_hour=price * gpu_count if price else None, where=cloud,
                    available=offered and bool(stock), source="gpuTypes", detail=detail))
        rows.sort(key=lambda p: (p.price_per_hour is None, p.price_per_hour or 0, p.type))
        return rows

    async def minimum_bid(self, gpu_type: str, gpu_count: int = 1) -> float:
        rows = await self.gpu_types(gpu_type, gpu_count=gpu_count)
        if not rows:
            raise RunPodError(f"runpod: no GPU type '{gpu_type}' "
                              "(trainctl gpus --provider runpod lists them)")
        bid = (rows[0].get("lowestPrice") or {}).get("minimumBidPrice")
        if not bid:
            raise RunPodError(f"runpod: no spot offer for {gpu_type} now (no minimum bid); "
                              "try on-demand or another GPU type")
        return float(bid)

    # -- pods -----------------------------------------------------------------------------

    async def find_pod(self, pod_id: str) -> dict | None:
        data = await self.api.graphql(
            f"reading pod {pod_id}",
            f"query Pod {{ pod(input: {{podId: {gql_quote(pod_id)}}}) {{ {POD_FIELDS} }} }}")
        return data.get("pod")

    async def pod(self, pod_id: str) -> dict:
        found = await self.find_pod(pod_id)
        if not found:
            raise RunPodError(f"runpod: no pod '{pod_id}' (trainctl instances lists yours)")
        return found

    async def list_instances(self, *, include_unmanaged: bool = False) -> list[Instance]:
        data = await self.api.graphql("listing pods",
                                      f"query Pods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}")
        pods = ((data.get("myself") or {}).get("pods")) or []
        instances = [instance_from_pod(p) for p in pods if p]
        return [i for i in instances if include_unmanaged or i.managed]

    async def get_instance(self, instance_id: str) -> Instance:
        return instance_from_pod(await self.pod(instance_id))

    def _pod_input(self, request: CreateRequest) -> dict:
        settings = self.settings
        gpu = request.type or settings.gpu_type
        if not gpu:
            raise RunPodError("runpod: which GPU? pass --gpu TYPE (trainctl gpus --provider "
                              "runpod lists them) or set [runpod] gpu_type")
        env = {MANAGED_ENV: "1"}
        if request.session:
            env[SESSION_ENV] = request.session
        key = public_key(settings.identity_file)
        if key:
            env["PUBLIC_KEY"] = key
        return {
            "name": request.name or f"trainctl-{request.session or int(time.time())}",
            "image": request.image or settings.image, "gpu": gpu,
            "count": request.gpu_count or settings.gpu_count, "env": env,
            "cloud_type": settings.cloud_type,
            "volume_gb": request.disk_gb or settings.volume_gb,
            "container_disk_gb": request.options.get("container_disk_gb")
            or settings.container_disk_gb,
            "network_volume_id": settings.network_volume_id,
        }

    async def create_instance(self, request: CreateRequest,
                              progress: Progress | None = None) -> Instance:
        """A pod, on-demand (podFindAndDeployOnDemand through the SDK) or spot
        (podRentInterruptable with a bid per GPU, the current minimum by default), then
        waited for until it runs with 22/tcp mapped. A pod that fails to come up is
        terminated; if even that fails the error names it."""
        spec = self._pod_input(request)
        spot = bool(request.spot)
        bid = request.max_price
        if spot and bid is None:
            bid = await self.minimum_bid(spec["gpu"], spec["count"])
            if progress:
                progress(f"bidding the current minimum, ${bid:.3f}/GPU/h")
        if request.dry_run:
            return Instance(provider="runpod", id="(dry run)", name=spec["name"],
                            type=spec["gpu"], state="dry-run",
                            lifecycle="spot" if spot else "on-demand",
                            price_per_hour=bid * spec["count"] if bid else None,
                            gpus=f"{spec['count']}x {spec['gpu']}",
                            detail=f"would create a pod with {spec['image']}")
        return await self.create_pod(spec, spot=spot, bid=bid, progress=progress)

    async def create_pod(self, spec: dict, *, spot: bool, bid: float | None = None,
                         progress: Progress | None = None) -> Instance:
        """Create a pod from a full spec (name, image, gpu, count, env, cloud_type,
        volume_gb, container_disk_gb, network_volume_id) and wait until it runs (the
        config's ready_timeout); a pod that never runs is terminated."""
        created = await (self._rent_spot(spec, bid) if spot else self._deploy(spec))
        pod_id = created["id"]
        if progress:
            progress(f"pod {pod_id} created; waiting for it to run")
        try:
            pod = await self.wait_running(pod_id, progress)
        except BaseException as exc:
            await self._clean_up(pod_id, exc)
            raise
        return instance_from_pod(pod)

    async def _clean_up(self, pod_id: str, exc: BaseException) -> None:
        try:
            await self.api.graphql(f"terminating pod {pod_id}", terminate_doc(pod_id))
        except ProviderError as failed:
            if isinstance(exc, ProviderError):
                exc.args = (f"{exc}; terminating pod {pod_id} failed too ({failed}): "
                            f"terminate it by hand: trainctl instance terminate {pod_id}",)
            return
        if isinstance(exc, ProviderError):
            exc.args = (f"{exc}; pod {pod_id} was terminated",)

    async def _deploy(self, spec: dict) -> dict:
        def run():
            import runpod

            return runpod.create_pod(
                name=gql_string(spec["name"]), image_name=gql_string(spec["image"]),
                gpu_type_id=gql_string(spec["gpu"]), cloud_type=spec["cloud_type"],
                gpu_count=int(spec["count"]), volume_in_gb=int(spec["volume_gb"]),
                container_disk_in_gb=int(spec["container_disk_gb"]), ports=SSH_PORT,
                volume_mount_path="/workspace", support_public_ip=True, start_ssh=True,
                env={gql_string(k): gql_string(v) for k, v in spec["env"].items()},
                network_volume_id=gql_string(spec["network_volume_id"])
                if spec["network_volume_id"] else None)

        return await self.api.call("creating a pod", run, retry_ambiguous=False)

    async def _rent_spot(self, spec: dict, bid: float) -> dict:
        env = ", ".join(f"{{ key: {gql_quote(k)}, value: {gql_quote(v)} }}"
                        for k, v in spec["env"].items())
        fields = [
            f"bidPerGpu: {gql_float(bid)}", f"cloudType: {spec['cloud_type']}",
            f"gpuCount: {int(spec['count'])}", f"volumeInGb: {int(spec['volume_gb'])}",
            f"containerDiskInGb: {int(spec['container_disk_gb'])}",
            "minVcpuCount: 1", "minMemoryInGb: 1",
            f"gpuTypeId: {gql_quote(spec['gpu'])}", f"name: {gql_quote(spec['name'])}",
            f"imageName: {gql_quote(spec['image'])}", 'dockerArgs: ""',
            f"ports: {gql_quote(SSH_PORT)}", 'volumeMountPath: "/workspace"',
            "startSsh: true", "supportPublicIp: true", f"env: [{env}]",
        ]
        if spec["network_volume_id"]:
            fields.append(f"networkVolumeId: {gql_quote(spec['network_volume_id'])}")
        document = ("mutation { podRentInterruptable(input: { " + ", ".join(fields)
                    + " }) { id desiredStatus imageName machineId } }")
        data = await self.api.graphql("creating a spot pod", document, retry_ambiguous=False)
        return data["podRentInterruptable"]

    async def wait_running(self, pod_id: str, progress: Progress | None = None,
                           timeout: float | None = None) -> dict:
        """The pod once it is RUNNING with 22/tcp mapped to a public port."""
        timeout = timeout if timeout is not None else self.settings.ready_timeout
        start = time.monotonic()
        while True:
            pod = await self.find_pod(pod_id)
            status = (pod or {}).get("desiredStatus")
            if pod is None or status in ("TERMINATED", "EXITED", "DEAD"):
                raise RunPodError(f"runpod: pod {pod_id} is {status or 'gone'} before it ran"
                                  + (f" ({pod['lastStatusChange']})"
                                     if pod and pod.get("lastStatusChange") else ""))
            if status == "RUNNING" and ssh_address(pod):
                return pod
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                raise RunPodError(f"runpod: pod {pod_id} was not running with 22/tcp mapped "
                                  f"after {timeout:.0f}s (status {status})")
            if progress:
                progress(f"pod {pod_id}: {status.lower()}, waiting for running ({elapsed:.0f}s)")
            await asyncio.sleep(POLL_SECONDS)

    async def stop_instance(self, instance_id: str, *, dry_run: bool = False) -> Instance:
        if dry_run:
            return await self.get_instance(instance_id)
        await self.api.graphql(
            f"stopping pod {instance_id}",
            f"mutation {{ podStop(input: {{podId: {gql_quote(instance_id)}}}) "
            "{ id desiredStatus } }")
        return await self.get_instance(instance_id)

    async def start_instance(self, instance_id: str, *, dry_run: bool = False,
                             bid: float | None = None) -> Instance:
        """podResume; a spot pod bids again (podBidResume) with `bid`, else its last bid."""
        pod = await self.pod(instance_id)
        if dry_run:
            return instance_from_pod(pod)
        count = int(pod.get("gpuCount") or 1)
        if pod.get("podType") in SPOT_TYPES:
            bid = bid if bid is not None else (pod.get("costPerHr") or 0) / count or \
                pod.get("lowestBidPriceToResume")
            document = (f"mutation {{ podBidResume(input: {{podId: {gql_quote(instance_id)}, "
                        f"bidPerGpu: {gql_float(bid)}, gpuCount: {count}}}) "
                        "{ id desiredStatus } }")
            await self.api.graphql(f"bidding to resume pod {instance_id}", document)
        else:
            await self.api.graphql(
                f"resuming pod {instance_id}",
                f"mutation {{ podResume(input: {{podId: {gql_quote(instance_id)}, "
                f"gpuCount: {count}}}) {{ id desiredStatus }} }}")
        return await self.get_instance(instance_id)

    async def terminate_instance(self, instance_id: str, *,
                                 dry_run: bool = False) -> Instance:
        instance = await self.get_instance(instance_id)
        if dry_run:
            return instance
        await self.api.graphql(f"terminating pod {instance_id}", terminate_doc(instance_id))
        remember_user_termination(instance_id)
        instance.state, instance.address, instance.launched = "terminated", None, None
        return instance

    async def container_logs(self, pod_id: str, tail: int = 200) -> list[str]:
        """The pod's container log (RunPod's REST logs endpoint). Where that answers
        nothing, the pod's status and last status message instead."""
        try:
            lines = await asyncio.to_thread(self.api.pod_logs_blocking, pod_id, tail)
        except RunPodError:
            lines = []
        if lines:
            return lines
        pod = await self.find_pod(pod_id)
        if pod is None:
            return [f"[runpod] pod {pod_id} no longer exists"]
        return [f"[runpod] pod {pod_id} is {(pod.get('desiredStatus') or '?').lower()}"
                + (f": {pod['lastStatusChange']}" if pod.get("lastStatusChange") else "")]


TERMINATED_BY_USER = "runpod_terminated.json"  # in the state dir: pods the user terminated
TERMINATED_KEPT = 200


def remember_user_termination(pod_id: str) -> None:
    """A pod terminated through trainctl on purpose: spot recovery never recreates it."""
    import json

    from ...core.paths import state_dir

    path = state_dir() / TERMINATED_BY_USER
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError):
        ids = []
    ids = [i for i in ids if i != pod_id][-(TERMINATED_KEPT - 1):] + [pod_id]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(ids))
    except OSError:
        pass


def terminated_by_user(pod_id: str) -> bool:
    import json

    from ...core.paths import state_dir

    try:
        return pod_id in json.loads((state_dir() / TERMINATED_BY_USER).read_text())
    except (OSError, ValueError, TypeError):
        return False


def terminate_doc(pod_id: str) -> str:
    return f"mutation {{ podTerminate(input: {{podId: {gql_quote(pod_id)}}}) }}"
