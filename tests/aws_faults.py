"""AWS faults for the tests: a small threaded HTTP reverse proxy on 127.0.0.1 in front of
moto that answers chosen actions with throttling, 5xx, any AWS error or a canned answer, a
number of times or forever, and counts the requests it saw per action.

Actions are matched on `Action=NAME` in a query-protocol body (EC2) or on the operation of an
`X-Amz-Target: Service.Operation` header (JSON protocols: SSM, Pricing).

    with FaultProxy(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.throttle("DescribeInstances", times=2)
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate"}


@dataclass
class Rule:
    status: int
    body: bytes
    content_type: str
    times: int | None  # None: forever
    after: int = 0  # requests of the action let through before this rule answers


def ec2_error(code: str, message: str) -> bytes:
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>fault-proxy</RequestID></Response>").encode()


def json_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.rules: dict[str, list[Rule]] = {}
        self.seen: Counter[str] = Counter()
        self.bodies: list[tuple[str, dict]] = []  # (action, form fields) of query requests
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what to answer ---------------------------------------------------------------------

    def add(self, action: str, status: int, body: bytes, *, times: int | None = None,
            content_type: str = "text/xml", after: int = 0) -> None:
        with self.lock:
            self.rules.setdefault(action, []).append(Rule(status, body, content_type, times,
                                                          after))

    def throttle(self, action: str, times: int | None = None) -> None:
        self.add(action, 400, ec2_error("RequestLimitExceeded", "Request limit exceeded."),
                 times=times)

    def fail(self, action: str, status: int = 500, times: int | None = None) -> None:
        self.add(action, status, ec2_error("InternalError",
                                           "An internal error has occurred"), times=times)

    def error(self, action: str, code: str, message: str, *, status: int = 400,
              times: int | None = None, after: int = 0) -> None:
        """`action` answers this error (`times` times, or forever), from the request after
        the first `after` ones on (e.g. after=2: the third RunInstances fails)."""
        self.add(action, status, ec2_error(code, message), times=times, after=after)

    def answer_json(self, operation: str, data: dict, *, status: int = 200,
                    times: int | None = None) -> None:
        self.add(operation, status, json.dumps(data).encode(), times=times,
                 content_type="application/x-amz-json-1.1")

    def json_error(self, operation: str, code: str, message: str, *, status: int = 400,
                   times: int | None = None) -> None:
        self.add(operation, status, json_error(code, message), times=times,
                 content_type="application/x-amz-json-1.1")

    def sent(self, action: str) -> list[dict]:
        """The form fields of every `action` request the proxy saw (EC2 query protocol)."""
        with self.lock:
            return [fields for name, fields in self.bodies if name == action]

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    # -- serving ----------------------------------------------------------------------------

    @staticmethod
    def _action(handler: BaseHTTPRequestHandler, body: bytes) -> str:
        target = handler.headers.get("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1]
        query = urllib.parse.urlsplit(handler.path).query
        for source in (body.decode("utf-8", "replace"), query):
            values = urllib.parse.parse_qs(source).get("Action")
            if values:
                return values[0]
        return ""

    def _rule(self, action: str) -> Rule | None:
        with self.lock:
            self.seen[action] += 1
            for rule in self.rules.get(action, []):
                if rule.after > 0:
                    rule.after -= 1
                    continue
                if rule.times is None:
                    return rule
                if rule.times > 0:
                    rule.times -= 1
                    return rule
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        action = self._action(handler, body)
        if not handler.headers.get("X-Amz-Target"):
            fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            with self.lock:
                self.bodies.append((action, {key: values[-1] for key, values in fields.items()}))
        rule = self._rule(action)
        if rule is not None:
            self._reply(handler, rule.status, rule.body,
                        [("Content-Type", rule.content_type)])
            return
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                          timeout=60)
        try:
            headers = {key: value for key, value in handler.headers.items()
                       if key.lower() not in HOP_HEADERS and key.lower() != "content-length"}
            conn.request(handler.command, handler.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self._reply(handler, answer.status, data,
                        [(key, value) for key, value in answer.getheaders()
                         if key.lower() not in HOP_HEADERS
                         and key.lower() != "content-length"])
        finally:
            conn.close()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes,
               headers: list[tuple[str, str]]) -> None:
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
