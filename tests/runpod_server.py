"""A local stand-in for RunPod's API on 127.0.0.1, for tests through the real runpod SDK.

POST /graphql parses and validates every document with graphql-core against an SDL schema
written from RunPod's documented GraphQL spec (the parts trainctl uses): an unknown field or
argument is a GraphQL error, as on the real API. The key is checked (Authorization: Bearer or
?api_key=), pods are kept in memory, and failures can be injected: timeouts, 429, 500,
GraphQL errors, pods that never run, spot interruptions. A pod's 22/tcp maps to `ssh_port`
(the test sshd), so training on a "pod" really runs over SSH.

GET /v2/pods/{id}/logs answers the pod's container log lines as server-sent events.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from graphql import build_schema, graphql_sync

SDL = """
scalar Void

enum PodStatus { CREATED RUNNING RESTARTING EXITED PAUSED DEAD TERMINATED }
enum PodType { INTERRUPTABLE RESERVED BID BACKGROUND }
enum CloudTypeEnum { SECURE COMMUNITY ALL }

type Query {
  gpuTypes(input: GpuTypeFilter): [GpuType]
  myself: User
  pod(input: PodFilter): Pod
}

type Mutation {
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput): Pod
  podRentInterruptable(input: PodRentInterruptableInput!): Pod
  podStop(input: PodStopInput!): Pod
  podResume(input: PodResumeInput!): Pod
  podBidResume(input: PodBidResumeInput!): Pod
  podTerminate(input: PodTerminateInput!): Void
}

input GpuTypeFilter { id: String ids: [String] }
input PodFilter { podId: String! }

input GpuLowestPriceInput {
  countryCode: String dataCenterId: String gpuCount: Int includeAiApi: Boolean minDisk: Int
  minDownload: Int minMemoryInGb: Int minUpload: Int minVcpuCount: Int secureCloud: Boolean
  supportPublicIp: Boolean totalDisk: Int cudaVersion: String allowedCudaVersions: [String]
}

type LowestPrice {
  gpuName: String gpuTypeId: String minimumBidPrice: Float uninterruptablePrice: Float
  minMemory: Int minVcpu: Int rentalPercentage: Float rentedCount: Int totalCount: Int
  stockStatus: String minDownload: Int minDisk: Int minUpload: Int countryCode: String
  supportPublicIp: Boolean
}

type GpuType {
  lowestPrice(input: GpuLowestPriceInput): LowestPrice
  maxGpuCount: Int maxGpuCountCommunityCloud: Int maxGpuCountSecureCloud: Int
  minPodGpuCount: Int id: String displayName: String manufacturer: String memoryInGb: Int
  cudaCores: Int secureCloud: Boolean communityCloud: Boolean securePrice: Float
  communityPrice: Float oneMonthPrice: Float threeMonthPrice: Float sixMonthPrice: Float
  oneWeekPrice: Float communitySpotPrice: Float secureSpotPrice: Float
}

type NetworkVolume { id: String name: String size: Int dataCenterId: String }

type User {
  id: String
  pubKey: String
  networkVolumes: [NetworkVolume]
  pods: [Pod]
}

type PodRuntimePorts {
  ip: String isIpPublic: Boolean privatePort: Int publicPort: Int type: String
}
type PodRuntimeContainer { cpuPercent: Float memoryPercent: Float }
type PodRuntimeGpus { id: String gpuUtilPercent: Float memoryUtilPercent: Float }
type PodRuntime {
  container: PodRuntimeContainer gpus: [PodRuntimeGpus] ports: [PodRuntimePorts]
  uptimeInSeconds: Int
}

type PodMachineInfo {
  id: String costPerHr: Float currentPricePerGpu: Float gpuDisplayName: String
  gpuTypeId: String location: String podHostId: String runpodIp: String
  secureCloud: Boolean supportPublicIp: Boolean dataCenterId: String
}

type Pod {
  lowestBidPriceToResume: Float
  containerDiskInGb: Int
  costPerHr: Float
  createdAt: String
  adjustedCostPerHr: Float
  desiredStatus: PodStatus
  dockerArgs: String
  dockerId: String
  env: [String]
  gpuCount: Int
  id: String
  imageName: String
  lastStatusChange: String
  lastStartedAt: String
  locked: Boolean
  machineId: String
  memoryInGb: Float
  name: String
  podType: PodType
  port: Int
  ports: String
  templateId: String
  uptimeSeconds: Int
  vcpuCount: Float
  version: Int
  volumeInGb: Float
  volumeMountPath: String
  networkVolumeId: String
  runtime: PodRuntime
  machine: PodMachineInfo
}

input EnvironmentVariableInput { key: String! value: String! }

input PodFindAndDeployOnDemandInput {
  aiApiId: String cloudType: CloudTypeEnum containerDiskInGb: Int countryCode: String
  deployCost: Float dockerArgs: String env: [EnvironmentVariableInput] gpuCount: Int
  gpuTypeId: String gpuTypeIdList: [String] imageName: String minDisk: Int minDownload: Int
  minMemoryInGb: Int minUpload: Int minVcpuCount: Int name: String networkVolumeId: String
  port: Int ports: String startJupyter: Boolean startSsh: Boolean stopAfter: String
  supportPublicIp: Boolean templateId: String terminateAfter: String volumeInGb: Int
  volumeKey: String volumeMountPath: String dataCenterId: String cudaVersion: String
  allowedCudaVersions: [String] instanceIds: [String]
}

input PodRentInterruptableInput {
  bidPerGpu: Float! cloudType: CloudTypeEnum containerDiskInGb: Int countryCode: String
  dockerArgs: String env: [EnvironmentVariableInput] gpuCount: Int gpuTypeId: String
  imageName: String minDisk: Int minDownload: Int minMemoryInGb: Int minUpload: Int
  minVcpuCount: Int name: String networkVolumeId: String port: Int ports: String
  startJupyter: Boolean startSsh: Boolean stopAfter: String supportPublicIp: Boolean
  templateId: String terminateAfter: String volumeInGb: Int volumeKey: String
  volumeMountPath: String dataCenterId: String cudaVersion: String
  allowedCudaVersions: [String]
}

input PodStopInput { podId: String! incrementVersion: Boolean }
input PodResumeInput { podId: String! gpuCount: Int syncMachine: Boolean }
input PodBidResumeInput { podId: String! bidPerGpu: Float! gpuCount: Int }
input PodTerminateInput { podId: String! }
"""

SCHEMA = build_schema(SDL)
API_KEY = "rpa_TESTKEY0123456789abcdef"

GPU_TYPES = [
    {"id": "NVIDIA A40", "displayName": "A40", "memoryInGb": 48, "secureCloud": True,
     "communityCloud": True, "securePrice": 0.44, "communityPrice": 0.35,
     "secureSpotPrice": 0.24, "communitySpotPrice": 0.2, "minimumBidPrice": 0.2,
     "stockStatus": "High"},
    {"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24,
     "secureCloud": True, "communityCloud": True, "securePrice": 0.69, "communityPrice": 0.34,
     "secureSpotPrice": 0.35, "communitySpotPrice": 0.29, "minimumBidPrice": 0.29,
     "stockStatus": "Low"},
    {"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "memoryInGb": 80,
     "secureCloud": True, "communityCloud": False, "securePrice": 2.99,
     "communityPrice": None, "secureSpotPrice": None, "communitySpotPrice": None,
     "minimumBidPrice": None, "stockStatus": None},
]

NO_INSTANCES = ("There are no longer any instances available with the requested "
                "specifications. Please refresh and try again.")


class GraphQLFailure(Exception):
    pass


class RunPodState:
    """Pods and the failures still to inject. Touched from the server thread and tests."""

    def __init__(self):
        self.lock = threading.RLock()
        self.pods: dict[str, dict] = {}
        self.counter = 0
        self.ssh_port = 22
        self.ssh_ip = "127.0.0.1"
        self.runs_after = 2  # pod queries answered CREATED before a new pod runs
        self.never_running = False
        self.failures: list[tuple[str, str]] = []  # (kind, operation substring)
        self.requests: list[dict] = []  # every request: {"path", "status", "query"}
        self.validation_errors: list[str] = []
        self.logs: dict[str, list[str]] = {}
        self.timeout_sleep = 3.0
        self.gates: list = []  # gates.Gate: matching requests wait until opened

    def hold(self, match: str):
        """Requests whose document contains `match` wait (recorded) until gate.open()."""
        from gates import Gate

        gate = Gate(match)
        self.gates.append(gate)
        return gate

    # -- test controls ----------------------------------------------------------------------
    def fail(self, kind: str, match: str = "", times: int = 1) -> None:
        """kind: 'timeout' | '429' | '500' | '503' | 'graphql:MESSAGE'."""
        with self.lock:
            self.failures += [(kind, match)] * times

    def interrupt(self, pod_id: str) -> None:
        """The spot machine is reclaimed: the pod exits, its ports are gone."""
        with self.lock:
            pod = self.pods[pod_id]
            pod["desiredStatus"] = "EXITED"
            pod["runtime"] = None
            pod["lastStatusChange"] = "Exited by host: outbid"

    def reclaim(self, pod_id: str) -> None:
        """The spot pod is terminated by the host: it is gone (pod answers null)."""
        with self.lock:
            del self.pods[pod_id]

    def count(self, operation: str) -> int:
        return sum(1 for r in self.requests if operation in r["query"])

    # -- pods --------------------------------------------------------------------------------
    def _new_pod(self, data: dict, spot: bool, bid: float | None) -> dict:
        gpu = next((g for g in GPU_TYPES if g["id"] == data.get("gpuTypeId")), None)
        if gpu is None:
            raise GraphQLFailure(NO_INSTANCES)
        count = data.get("gpuCount") or 1
        if spot:
            if gpu["minimumBidPrice"] is None or bid < gpu["minimumBidPrice"]:
                raise GraphQLFailure(f"Your bid price is below the minimum bid price "
                                     f"({gpu['minimumBidPrice']}) for this GPU type.")
            price = bid * count
        else:
            price = (gpu["securePrice"] if data.get("cloudType") != "COMMUNITY"
                     else gpu["communityPrice"]) * count
        self.counter += 1
        pod_id = f"pod{self.counter:04d}x"
        pod = {
            "id": pod_id, "name": data.get("name"), "imageName": data.get("imageName"),
            "desiredStatus": "CREATED" if not self.never_running else "CREATED",
            "podType": "INTERRUPTABLE" if spot else "RESERVED", "costPerHr": price,
            "gpuCount": count, "bid": bid, "gpu": gpu,
            "env": [f"{e['key']}={e['value']}" for e in data.get("env") or []],
            "ports": data.get("ports"), "volumeInGb": data.get("volumeInGb"),
            "containerDiskInGb": data.get("containerDiskInGb"),
            "networkVolumeId": data.get("networkVolumeId"), "input": data,
            "machineId": f"m-{pod_id}", "runtime": None, "polls": 0,
            "started": None, "lowestBidPriceToResume": gpu["minimumBidPrice"],
            "lastStatusChange": "Created",
            "machine": {"gpuDisplayName": gpu["displayName"], "gpuTypeId": gpu["id"],
                        "secureCloud": data.get("cloudType") != "COMMUNITY",
                        "podHostId": f"{pod_id}-host",
                        "dataCenterId": "EU-RO-1", "location": "RO"},
        }
        self.pods[pod_id] = pod
        return pod

    def _run(self, pod: dict) -> None:
        pod["desiredStatus"] = "RUNNING"
        pod["started"] = time.time()
        pod["lastStatusChange"] = "Rented by User"
        pod["runtime"] = {"ports": [
            {"ip": self.ssh_ip, "isIpPublic": True, "privatePort": 22,
             "publicPort": self.ssh_port, "type": "tcp"},
            {"ip": "100.65.0.2", "isIpPublic": False, "privatePort": 8888,
             "publicPort": 60001, "type": "http"}]}

    def view(self, pod: dict | None) -> dict | None:
        """A pod as the API shows it (the default resolver reads dict keys)."""
        if pod is None:
            return None
        if pod["desiredStatus"] == "CREATED" and not self.never_running:
            pod["polls"] += 1
            if pod["polls"] > self.runs_after:
                self._run(pod)
        runtime = pod["runtime"]
        if runtime is not None:
            runtime = {**runtime, "uptimeInSeconds": int(time.time() - pod["started"])}
        return {**pod, "runtime": runtime}

    def mutation_pod(self, input: dict) -> dict:
        pod = self.pods.get(input["podId"])
        if pod is None:
            raise GraphQLFailure(f"Pod not found: {input['podId']}")
        return pod


class Root:
    """Query and mutation resolvers (graphql-core calls methods of the root value)."""

    def __init__(self, state: RunPodState):
        self.s = state

    def gpuTypes(self, info, input=None):
        rows = GPU_TYPES
        if input and input.get("id") is not None:
            rows = [g for g in GPU_TYPES if g["id"] == input["id"]]
        return [GpuRow(g) for g in rows]

    def myself(self, info):
        with self.s.lock:
            return {"id": "user1", "pubKey": "", "networkVolumes": [
                {"id": "vol123", "name": "ckpts", "size": 50, "dataCenterId": "EU-RO-1"}],
                "pods": [self.s.view(p) for p in list(self.s.pods.values())]}

    def pod(self, info, input):
        with self.s.lock:
            return self.s.view(self.s.pods.get(input["podId"]))

    def podFindAndDeployOnDemand(self, info, input=None):
        with self.s.lock:
            return self.s.view(self.s._new_pod(input or {}, spot=False, bid=None))

    def podRentInterruptable(self, info, input):
        with self.s.lock:
            return self.s.view(self.s._new_pod(input, spot=True, bid=input["bidPerGpu"]))

    def podStop(self, info, input):
        with self.s.lock:
            pod = self.s.mutation_pod(input)
            pod.update(desiredStatus="EXITED", runtime=None, lastStatusChange="Exited by user")
            return self.s.view(pod)

    def podResume(self, info, input):
        with self.s.lock:
            pod = self.s.mutation_pod(input)
            if pod["podType"] == "INTERRUPTABLE":
                raise GraphQLFailure("Cannot resume a spot pod with podResume, use podBidResume")
            self.s._run(pod)
            return self.s.view(pod)

    def podBidResume(self, info, input):
        with self.s.lock:
            pod = self.s.mutation_pod(input)
            minimum = pod["gpu"]["minimumBidPrice"]
            if input["bidPerGpu"] < minimum:
                raise GraphQLFailure(f"Your bid price is below the minimum bid price "
                                     f"({minimum}) for this GPU type.")
            pod["bid"] = input["bidPerGpu"]
            pod["costPerHr"] = input["bidPerGpu"] * pod["gpuCount"]
            self.s._run(pod)
            return self.s.view(pod)

    def podTerminate(self, info, input):
        with self.s.lock:
            self.s.mutation_pod(input)
            del self.s.pods[input["podId"]]
            return None


def GpuRow(gpu: dict) -> dict:
    """A GPU type; lowestPrice takes an argument, so it is a callable (graphql-core calls
    callables it finds in a dict with the field's arguments)."""
    def lowest_price(info, input=None):
        if gpu["minimumBidPrice"] is None and gpu["stockStatus"] is None:
            return None
        return {"minimumBidPrice": gpu["minimumBidPrice"],
                "uninterruptablePrice": gpu["securePrice"],
                "stockStatus": gpu["stockStatus"], "gpuTypeId": gpu["id"]}

    return {**gpu, "lowestPrice": lowest_price}


class Handler(BaseHTTPRequestHandler):
    server_version = "runpod-test/1"

    def log_message(self, *args):  # quiet
        pass

    @property
    def state(self) -> RunPodState:
        return self.server.state  # type: ignore[attr-defined]

    def _send(self, status: int, body: dict | str, content_type="application/json") -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self, query_params: dict) -> bool:
        header = self.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ") if header else \
            (query_params.get("api_key") or [""])[0]
        return given == API_KEY

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        query = body.get("query", "")
        record = {"path": url.path, "query": query, "status": 200}
        self.state.requests.append(record)
        if url.path != "/graphql":
            record["status"] = 404
            return self._send(404, "not found", "text/plain")
        if not self._authorized(urllib.parse.parse_qs(url.query)):
            record["status"] = 401
            return self._send(401, "Unauthorized", "text/plain")
        for gate in list(self.state.gates):
            if gate.match in query:
                gate.wait_here()
        with self.state.lock:
            failure = next((f for f in self.state.failures if f[1] in query), None)
            if failure:
                self.state.failures.remove(failure)
        if failure:
            kind = failure[0]
            if kind == "timeout":
                time.sleep(self.state.timeout_sleep)
                record["status"] = 0
                return self._send(504, "late", "text/plain")
            if kind.startswith("graphql:"):
                return self._send(200, {"errors": [{"message": kind[8:]}], "data": None})
            record["status"] = int(kind)
            return self._send(int(kind), "<html>busy</html>", "text/html")
        result = graphql_sync(SCHEMA, query, root_value=Root(self.state))
        if result.errors:
            messages = [e.message for e in result.errors]
            original = [e.original_error for e in result.errors if e.original_error]
            if not original:  # parse or validation error: the document itself is wrong
                self.state.validation_errors += messages
                record["status"] = 400
                return self._send(400, {"errors": [{"message": m} for m in messages]})
            if not all(isinstance(e, GraphQLFailure) for e in original):
                raise original[0]
            return self._send(200, {"errors": [{"message": m} for m in messages],
                                    "data": result.data})
        return self._send(200, {"data": result.data})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        self.state.requests.append({"path": url.path, "query": "", "status": 200})
        if not self._authorized({}):
            return self._send(401, "Unauthorized", "text/plain")
        if len(parts) == 4 and parts[:2] == ["v2", "pods"] and parts[3] == "logs":
            lines = self.state.logs.get(parts[2])
            if parts[2] not in self.state.pods and lines is None:
                return self._send(404, {"error": "pod not found"})
            events = "".join(
                f"id: {i}\ndata: {json.dumps({'source': 'container', 'line': line, 'ts': str(i)})}"
                "\n\n" for i, line in enumerate(lines or []))
            return self._send(200, events, "text/event-stream")
        return self._send(404, "not found", "text/plain")


class RunPodServer:
    def __init__(self):
        self.state = RunPodState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def runpod_server(monkeypatch):
    """A fresh API per test, the SDK pointed at it, RUNPOD_API_KEY set, fast retries."""
    from trainctl_tui.backends.runpod import api as runpod_api

    with RunPodServer() as server:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
        monkeypatch.setattr(runpod_api, "BACKOFF_BASE", 0.01)
        monkeypatch.setattr(runpod_api, "READ_TIMEOUT", 2.0)
        yield server
        assert server.state.validation_errors == []
