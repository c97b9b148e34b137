"""EC2 placement groups for the tests: moto (5.x) has none, so a threaded HTTP proxy on
127.0.0.1 in front of it answers CreatePlacementGroup, DescribePlacementGroups and
DeletePlacementGroup itself, as EC2 does: a RunInstances into a group that does not exist is
refused (InvalidPlacementGroup.Unknown), the instances it launches are the group's members,
and a group with a member that is not terminated cannot be deleted
(InvalidPlacementGroup.InUse). Everything else goes to moto unchanged."""

from __future__ import annotations

import http.client
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


def error(code: str, message: str) -> tuple[int, bytes]:
    return 400, (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>"
                 f"{code}</Code><Message>{escape(message)}</Message></Error></Errors>"
                 f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


def answer(action: str, inner: str) -> tuple[int, bytes]:
    return 200, (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NS}\">"
                 f"<requestId>{uuid.uuid4()}</requestId>{inner}</{action}Response>").encode()


class PlacementGroups:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.groups: dict[str, dict] = {}  # name -> {id, strategy, tags, members}
        self.lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fields = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
                status, data, headers = double.handle(self, body, fields)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "content-length", "connection",
                                           "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PlacementGroups:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- EC2 ---------------------------------------------------------------------------------

    def handle(self, handler, body: bytes, fields: dict):
        action = fields.get("Action", "")
        xml = [("Content-Type", "text/xml")]
        if action == "CreatePlacementGroup":
            return (*self.create(fields), xml)
        if action == "DescribePlacementGroups":
            return (*self.describe(fields), xml)
        if action == "DeletePlacementGroup":
            return (*self.delete(fields), xml)
        group = fields.get("Placement.GroupName")
        if action == "RunInstances" and group:
            with self.lock:
                known = group in self.groups
            if not known:
                return (*error("InvalidPlacementGroup.Unknown",
                               f"The Placement Group '{group}' is unknown."), xml)
        status, data, headers = self.forward(handler, body)
        if action == "RunInstances" and group and status == 200:
            with self.lock:
                self.groups[group]["members"] += re.findall(
                    r"<instanceId>(i-[0-9a-f]+)</instanceId>", data.decode())
        return status, data, headers

    def create(self, fields: dict):
        name = fields.get("GroupName", "")
        with self.lock:
            if name in self.groups:
                return error("InvalidPlacementGroup.Duplicate",
                             f"The Placement Group '{name}' already exists.")
            tags = {}
            for key, value in fields.items():
                found = re.fullmatch(r"TagSpecification\.1\.Tag\.(\d+)\.Key", key)
                if found:
                    tags[value] = fields.get(f"TagSpecification.1.Tag.{found[1]}.Value", "")
            self.groups[name] = {"id": f"pg-{uuid.uuid4().hex[:17]}",
                                 "strategy": fields.get("Strategy", ""), "tags": tags,
                                 "members": []}
            group = self.groups[name]
        return answer("CreatePlacementGroup", self.item(name, group, "placementGroup"))

    def describe(self, fields: dict):
        wanted = {v for k, v in fields.items() if k.startswith("GroupName.")}
        with self.lock:
            rows = "".join(self.item(name, group, "item") for name, group in self.groups.items()
                           if not wanted or name in wanted)
        return answer("DescribePlacementGroups", f"<placementGroupSet>{rows}</placementGroupSet>")

    def delete(self, fields: dict):
        name = fields.get("GroupName", "")
        with self.lock:
            group = self.groups.get(name)
        if group is None:
            return error("InvalidPlacementGroup.Unknown",
                         f"The Placement Group '{name}' is unknown.")
        if any(state != "terminated" for state in self.states(group["members"])):
            return error("InvalidPlacementGroup.InUse",
                         f"The placement group '{name}' is in use and may not be deleted.")
        with self.lock:
            del self.groups[name]
        return answer("DeletePlacementGroup", "<return>true</return>")

    @staticmethod
    def item(name: str, group: dict, tag: str) -> str:
        tags = "".join(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>"
                       for k, v in group["tags"].items())
        return (f"<{tag}><groupName>{escape(name)}</groupName><groupId>{group['id']}</groupId>"
                f"<strategy>{group['strategy']}</strategy><state>available</state>"
                f"<tagSet>{tags}</tagSet></{tag}>")

    def states(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        import boto3

        ec2 = boto3.client("ec2", endpoint_url=f"{self.upstream.scheme}://{self.upstream.netloc}",
                           region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        found = ec2.describe_instances(InstanceIds=ids)
        return [raw["State"]["Name"] for res in found["Reservations"] for raw in res["Instances"]]

    def forward(self, handler, body: bytes):
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() not in ("host", "transfer-encoding", "content-length")}
            headers["Host"] = self.upstream.netloc
            if body or handler.command in ("POST", "PUT"):
                headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheaders()
        finally:
            conn.close()
