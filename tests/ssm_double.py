"""SSM that runs its commands, for the tests: a threaded HTTP proxy on 127.0.0.1 in front of
the moto server. It answers the SSM Run Command API itself (SendCommand, GetCommandInvocation,
ListCommandInvocations, CancelCommand, DescribeInstanceInformation) and forwards everything else
(EC2, S3, SSM parameters ...) to moto.

`AWS-RunShellScript` commands sent to an instance that exists in moto, is running and is
registered run with bash as the test user in a per-instance sandbox folder: each occurrence of
`workdir` (the template's absolute workdir, e.g. /opt/trainctl-test) in the command text is
rewritten to `<sandbox>/<instance id><workdir>`, so two instances never share files. Answers
are like SSM's: InProgress first, then Success/Failed with the ResponseCode, stdout cut at
24,000 characters and stderr at 8,000, StandardOutputUrl empty. Every command text is kept in
`double.commands` (the tests check that no secret is in any of them)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

HANDLED = {"SendCommand", "GetCommandInvocation", "ListCommandInvocations", "CancelCommand",
           "DescribeInstanceInformation"}
STDOUT_LIMIT, STDERR_LIMIT = 24_000, 8_000


@dataclass
class Invocation:
    command_id: str
    instance_id: str
    text: str
    status: str = "InProgress"
    code: int = -1
    stdout: str = ""
    stderr: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen | None = None


class SSMDouble:
    def __init__(self, moto_url: str, sandbox: Path, workdir: str):
        self.moto_url = moto_url
        self.sandbox = Path(sandbox)
        self.workdir = workdir
        self.never_register: set[str] = set()
        # True: an instance terminated or stopped through EC2 takes its processes along
        self.machines_die = False
        self.gates: list = []  # gates.Gate on an EC2 Action: those requests wait until opened
        self.commands: list[str] = []  # every command text received, in order
        self.invocations: dict[tuple[str, str], Invocation] = {}
        self.lock = threading.Lock()
        self.env = dict(os.environ)
        # more environment for the commands on one instance: env_of(its id, its description)
        self.env_of = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SSMDouble:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for inv in list(self.invocations.values()):
            if inv.process and inv.process.poll() is None:
                inv.process.kill()

    def root(self, instance_id: str) -> Path:
        """The instance's filesystem root in the sandbox."""
        return self.sandbox / instance_id

    def path(self, instance_id: str, *parts: str) -> Path:
        """Where `workdir/parts...` of the instance is on this machine."""
        return Path(str(self.root(instance_id)) + self.workdir, *parts)

    # -- moto --------------------------------------------------------------------------------

    def _instance(self, instance_id: str) -> dict | None:
        import boto3

        ec2 = boto3.client("ec2", endpoint_url=self.moto_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        try:
            answer = ec2.describe_instances(InstanceIds=[instance_id])
        except Exception:  # noqa: BLE001 - unknown id: not an instance
            return None
        for reservation in answer["Reservations"]:
            for raw in reservation["Instances"]:
                return raw
        return None

    def registered(self, instance_id: str) -> bool:
        raw = self._instance(instance_id)
        return bool(raw) and raw["State"]["Name"] == "running" and \
            instance_id not in self.never_register

    def machine_gone(self, instance_id: str) -> None:
        """SIGKILL every runner and training the instance runs (its machine went away)."""
        import signal

        from trainctl_tui.runner.processes import pid_alive

        for status_file in self.root(instance_id).glob("**/status.json"):
            try:
                status = json.loads(status_file.read_text())
            except (OSError, ValueError):
                continue
            for key, token, kill in (("child_pid", "child_start", os.killpg),
                                     ("runner_pid", "runner_start", os.kill)):
                pid = status.get(key)
                if pid and pid_alive(pid, status.get(token)):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass

    def hold(self, action: str):
        """EC2 requests of `action` (e.g. RunInstances) wait until gate.open()."""
        from gates import Gate

        gate = Gate(action)
        self.gates.append(gate)
        return gate

    # -- SSM ---------------------------------------------------------------------------------

    def send_command(self, body: dict) -> tuple[int, dict]:
        ids = body.get("InstanceIds") or []
        for instance_id in ids:
            if not self.registered(instance_id):
                return 400, {"__type": "InvalidInstanceId",
                             "message": f"Instances [[{instance_id}]] not in a valid state "
                                        "for account 123456789012"}
        commands = body.get("Parameters", {}).get("commands", [])
        text = "\n".join(commands)
        timeout = float((body.get("Parameters", {}).get("executionTimeout") or ["3600"])[0])
        command_id = str(uuid.uuid4())
        with self.lock:
            self.commands.append(text)
        for instance_id in ids:
            inv = Invocation(command_id, instance_id, text)
            self.invocations[(command_id, instance_id)] = inv
            threading.Thread(target=self._execute, args=(inv, timeout), daemon=True).start()
        return 200, {"Command": {"CommandId": command_id, "DocumentName":
                                 body.get("DocumentName"), "InstanceIds": ids,
                                 "Status": "Pending", "Parameters": body.get("Parameters")}}

    def _execute(self, inv: Invocation, timeout: float) -> None:
        root = self.root(inv.instance_id)
        root.mkdir(parents=True, exist_ok=True)
        text = inv.text.replace(self.workdir, str(root) + self.workdir)
        time.sleep(0.02)  # a real agent takes a moment: callers see InProgress first
        try:
            env = {**self.env, **(self.env_of(inv.instance_id, self._instance(inv.instance_id))
                                   if self.env_of else {})}
            inv.process = subprocess.Popen(["bash", "-c", text], cwd=root, env=env,
                                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, start_new_session=True)
            out, err = inv.process.communicate(timeout=timeout)
            code = inv.process.returncode
            status = "Success" if code == 0 else "Failed"
        except subprocess.TimeoutExpired:
            inv.process.kill()
            out, err = inv.process.communicate()
            code, status = -1, "TimedOut"
        inv.stdout = out.decode(errors="replace")[:STDOUT_LIMIT]
        inv.stderr = err.decode(errors="replace")[:STDERR_LIMIT]
        inv.code, inv.status = code, status
        inv.done.set()

    def get_invocation(self, body: dict) -> tuple[int, dict]:
        inv = self.invocations.get((body.get("CommandId"), body.get("InstanceId")))
        if inv is None:
            return 400, {"__type": "InvocationDoesNotExist", "message": "no such invocation"}
        return 200, {"CommandId": inv.command_id, "InstanceId": inv.instance_id,
                     "DocumentName": "AWS-RunShellScript", "PluginName": "aws:runShellScript",
                     "Status": inv.status, "StatusDetails": inv.status,
                     "ResponseCode": inv.code, "StandardOutputContent": inv.stdout,
                     "StandardOutputUrl": "", "StandardErrorContent": inv.stderr,
                     "StandardErrorUrl": ""}

    def list_invocations(self, body: dict) -> tuple[int, dict]:
        rows = [{"CommandId": i.command_id, "InstanceId": i.instance_id, "Status": i.status}
                for i in self.invocations.values()
                if body.get("CommandId") in (None, i.command_id)]
        return 200, {"CommandInvocations": rows}

    def cancel(self, body: dict) -> tuple[int, dict]:
        for (command_id, _), inv in self.invocations.items():
            if command_id == body.get("CommandId") and inv.process and \
                    inv.process.poll() is None:
                inv.process.kill()
        return 200, {}

    def describe_information(self, body: dict) -> tuple[int, dict]:
        import boto3

        wanted = None
        for item in (body.get("Filters") or []) + (body.get("InstanceInformationFilterList")
                                                    or []):
            if item.get("Key") in ("InstanceIds", "InstanceIds".lower()) or \
                    item.get("key") == "InstanceIds":
                wanted = set(item.get("Values") or item.get("valueSet") or [])
        ec2 = boto3.client("ec2", endpoint_url=self.moto_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        rows = []
        for reservation in ec2.describe_instances()["Reservations"]:
            for raw in reservation["Instances"]:
                instance_id = raw["InstanceId"]
                if wanted is not None and instance_id not in wanted:
                    continue
                if raw["State"]["Name"] != "running" or instance_id in self.never_register:
                    continue
                rows.append({"InstanceId": instance_id, "PingStatus": "Online",
                             "PlatformType": "Linux", "AgentVersion": "3.3.0.0",
                             "ResourceType": "EC2Instance"})
        return 200, {"InstanceInformationList": rows}

    # -- HTTP --------------------------------------------------------------------------------

    def _handler(self):
        double = self
        moto = urlsplit(self.moto_url)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]):
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "content-length",
                                           "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                body = self._body()
                target = self.headers.get("X-Amz-Target", "")
                service, _, action = target.partition(".")
                if service == "AmazonSSM" and action in HANDLED:
                    request = json.loads(body or b"{}")
                    status, answer = {
                        "SendCommand": double.send_command,
                        "GetCommandInvocation": double.get_invocation,
                        "ListCommandInvocations": double.list_invocations,
                        "CancelCommand": double.cancel,
                        "DescribeInstanceInformation": double.describe_information,
                    }[action](request)
                    self._reply(status, json.dumps(answer).encode(),
                                [("Content-Type", "application/x-amz-json-1.1")])
                    return
                action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
                for gate in list(double.gates):
                    if gate.match == action:
                        gate.wait_here()
                conn = http.client.HTTPConnection(moto.hostname, moto.port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "transfer-encoding", "content-length")}
                headers["Host"] = moto.netloc
                if body or self.command in ("POST", "PUT"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if action in ("TerminateInstances", "StopInstances") and \
                        response.status == 200 and double.machines_die:
                    fields = parse_qs(body.decode(errors="replace"))
                    for key, values in fields.items():
                        if key.startswith("InstanceId."):
                            double.machine_gone(values[0])
                self._reply(response.status, data, response.getheaders())

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler


def kill_sandbox_runners(sandbox: Path) -> None:
    """SIGKILL runners and trainings the sandboxed instances still run."""
    from conftest import kill_leftovers

    for sessions in Path(sandbox).glob("*/**/sessions"):
        kill_leftovers(sessions.parent)


@pytest.fixture
def ssm(aws, tmp_path, monkeypatch):
    """The executing SSM double in front of moto; AWS_ENDPOINT_URL points at it. Its
    `workdir` is the absolute workdir to give templates."""
    from trainctl_tui.backends.aws import api as aws_api

    sandbox = tmp_path / "instances"
    sandbox.mkdir()
    workdir = f"/opt/trainctl-test-{uuid.uuid4().hex[:8]}"
    double = SSMDouble(aws, sandbox, workdir)
    monkeypatch.setenv("AWS_ENDPOINT_URL", double.url)
    double.env = dict(os.environ)  # commands on the "instance" reach AWS through the double
    aws_api.reset_clients()
    double.start()
    try:
        yield double
    finally:
        kill_sandbox_runners(sandbox)
        double.stop()
        aws_api.reset_clients()
        shutil.rmtree(sandbox, ignore_errors=True)
