"""The RunPod API the way trainctl calls it: the API key found (env, config, MCP client
configs), the runpod SDK's own calls run in a thread with the key set per call, every value
put into the SDK's f-string GraphQL documents escaped, retries with backoff on timeouts, 429
and 5xx, and every failure turned into one line.

`import runpod` costs ~1.5 s (it loads its serverless stack): it happens inside `sdk()`, in
the worker thread of the first RunPod call, never at import of this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Callable

from ..base import ProviderError
from . import key as runpod_key
from .key import ENV_VAR, key_from_mcp_file, mcp_config_files  # noqa: F401

DEFAULT_BASE_URL = "https://api.runpod.io"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 5
BACKOFF_BASE = 0.5  # seconds; doubles per retry
BACKOFF_MAX = 8.0


class RunPodError(ProviderError):
    """A RunPod call failed; the message is one line starting with 'runpod:'."""


class RunPodAuthError(RunPodError):
    """The API key is missing or was rejected."""


# -- the API key ----------------------------------------------------------------------------


def _config_path() -> str:
    from ...core.paths import user_config_path

    return str(user_config_path())


def find_api_key(config=None) -> tuple[str, str] | None:
    """(key, where it came from) in the documented order, or None (key.py); the
    config is read only when the environment has no key."""
    if config is None and not os.environ.get(ENV_VAR, "").strip():
        from ...config.loader import load_config

        config = load_config()
    return runpod_key.find_api_key(config)


def resolve_api_key(config=None) -> tuple[str, str]:
    found = find_api_key(config)
    if found is None:
        places = [ENV_VAR, f"[runpod] api_key in {_config_path()}"]
        places += [str(path) for _, path in mcp_config_files()]
        raise RunPodAuthError("runpod: no API key found (looked in " + ", ".join(places)
                              + "); set RUNPOD_API_KEY or [runpod] api_key")
    return found


# -- GraphQL strings ------------------------------------------------------------------------

_GQL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                "\b": "\\b", "\f": "\\f"}


def gql_string(value: object) -> str:
    """`value` escaped to sit between the double quotes of a GraphQL string (the SDK's
    f-strings add the quotes): a quote, backslash or newline cannot end the string."""
    out = []
    for ch in str(value):
        if ch in _GQL_ESCAPES:
            out.append(_GQL_ESCAPES[ch])
        elif ch < " " or ch == "\x7f" or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def gql_quote(value: object) -> str:
    return f'"{gql_string(value)}"'


def gql_float(value: float) -> str:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise RunPodError(f"runpod: {value} is not a price")
    return repr(value)


# -- calling the SDK ------------------------------------------------------------------------

_local = threading.local()
_patch_lock = threading.Lock()


class _RequestsProxy:
    """Stands in for `requests` inside runpod.api.graphql: the SDK's own post, with our
    timeouts, remembering the HTTP status (the SDK only checks for 401) so 429 and 5xx can
    be retried."""

    def __init__(self, requests_module):
        self._requests = requests_module

    def __getattr__(self, name):
        return getattr(self._requests, name)

    def post(self, url, *args, **kwargs):
        kwargs["timeout"] = (CONNECT_TIMEOUT, READ_TIMEOUT)
        _local.response = None
        response = self._requests.post(url, *args, **kwargs)
        _local.response = response
        return response


def sdk():
    """The runpod module, imported on first use, its GraphQL client wrapped (once)."""
    import runpod
    import runpod.api.graphql as graphql

    with _patch_lock:
        if not isinstance(graphql.requests, _RequestsProxy):
            graphql.requests = _RequestsProxy(graphql.requests)
    return runpod


def base_url() -> str:
    return os.environ.get("RUNPOD_API_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


class _Transient(Exception):
    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.reason, self.delay = reason, delay


def _retry_after(response) -> float | None:
    try:
        return min(float(response.headers.get("Retry-After")), BACKOFF_MAX)
    except (TypeError, ValueError, AttributeError):
        return None


class RunPodAPI:
    """One resolved key; `call` runs a blocking SDK function in a thread with retries."""

    def __init__(self, config=None, key: tuple[str, str] | None = None):
        self.key, self.source = key or resolve_api_key(config)

    def _once(self, doing: str, fn: Callable, retry_ambiguous: bool):
        import requests

        runpod = sdk()
        from runpod import error as rp_error

        runpod.api_key = self.key  # the SDK's pod functions read the module global
        _local.response = None
        try:
            result = fn()
        except rp_error.AuthenticationError:
            raise self._rejected("HTTP 401") from None
        except rp_error.QueryError as exc:
            self._check_status(retry_ambiguous)
            message = " ".join(str(exc.message or exc).split())
            if re.search(r"unauthori[sz]ed|api key", message, re.I):
                raise self._rejected(message) from None
            raise RunPodError(f"runpod: {doing}: {message}") from None
        except requests.exceptions.ConnectTimeout:
            raise _Transient(f"no connection to {base_url()} within {CONNECT_TIMEOUT:.0f}s") \
                from None
        except requests.exceptions.Timeout:
            if not retry_ambiguous:
                raise RunPodError(f"runpod: {doing}: no answer within {READ_TIMEOUT:g}s; "
                                  "it may have happened anyway (trainctl instances)") from None
            raise _Transient(f"no answer within {READ_TIMEOUT:g}s") from None
        except requests.exceptions.ConnectionError as exc:
            raise _Transient(f"cannot reach {base_url()} ({type(exc).__name__})") from None
        except (requests.exceptions.JSONDecodeError, KeyError, TypeError, IndexError):
            self._check_status(retry_ambiguous)
            status = getattr(_local.response, "status_code", None)
            raise RunPodError(f"runpod: {doing}: unexpected answer from {base_url()}"
                              + (f" (HTTP {status})" if status else "")) from None
        except ValueError as exc:  # the SDK's own checks (e.g. an unknown GPU type)
            raise RunPodError(f"runpod: {doing}: {exc}") from None
        self._check_status(retry_ambiguous)
        return result

    def _check_status(self, retry_ambiguous: bool) -> None:
        response = _local.response
        status = getattr(response, "status_code", None)
        if status in (401, 403):
            raise self._rejected(f"HTTP {status}")
        if status == 429:
            raise _Transient("HTTP 429 (rate limited)", _retry_after(response))
        if status is not None and status >= 500:
            if not retry_ambiguous:
                raise _Transient(f"HTTP {status}", -1.0)
            raise _Transient(f"HTTP {status}", _retry_after(response))

    def _rejected(self, why: str) -> RunPodAuthError:
        return RunPodAuthError(f"runpod: the API key from {self.source} was rejected ({why}); "
                               "check it, or set RUNPOD_API_KEY")

    def call_blocking(self, doing: str, fn: Callable, *, retry_ambiguous: bool = True):
        """fn() with retries. `retry_ambiguous=False` for creates: only failures that
        certainly did nothing (429, no connection) are retried."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._once(doing, fn, retry_ambiguous)
            except _Transient as exc:
                if exc.delay == -1.0:  # a 5xx on a create: it may have happened
                    raise RunPodError(f"runpod: {doing}: {exc.reason}; it may have happened "
                                      "anyway (trainctl instances)") from None
                if attempt == MAX_ATTEMPTS:
                    raise RunPodError(f"runpod: {doing}: {exc.reason} after {MAX_ATTEMPTS} "
                                      "tries; retry later") from None
                delay = exc.delay if exc.delay is not None else \
                    min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX)
                time.sleep(delay)
        raise AssertionError("unreachable")

    async def call(self, doing: str, fn: Callable, *, retry_ambiguous: bool = True):
        return await asyncio.to_thread(self.call_blocking, doing, fn,
                                       retry_ambiguous=retry_ambiguous)

    async def graphql(self, doing: str, document: str, *, retry_ambiguous: bool = True
                      ) -> dict:
        """A document sent with the SDK's GraphQL client; returns its `data`."""
        def run():
            from runpod.api.graphql import run_graphql_query

            return run_graphql_query(document, api_key=self.key)["data"]

        return await self.call(doing, run, retry_ambiguous=retry_ambiguous)

    # -- pod logs (REST v2: GET /v2/pods/{id}/logs, server-sent events) -------------------

    def pod_logs_blocking(self, pod_id: str, tail: int = 200, idle: float = 1.5,
                          limit: float = 10.0) -> list[str]:
        """The backfill of a pod's container log: lines until the stream goes quiet."""
        import requests

        url = f"{base_url()}/v2/pods/{pod_id}/logs"
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        lines: list[str] = []
        deadline = time.monotonic() + limit
        try:
            with requests.get(url, headers=headers, stream=True,
                              params={"source": "container", "tail": str(tail)},
                              timeout=(CONNECT_TIMEOUT, idle)) as response:
                if response.status_code in (401, 403):
                    raise self._rejected(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    raise RunPodError(f"runpod: pod {pod_id} logs: HTTP "
                                      f"{response.status_code}")
                for raw in response.iter_lines(decode_unicode=True):
                    if raw and raw.startswith("data:"):
                        try:
                            event = json.loads(raw[5:].strip())
                        except ValueError:
                            continue
                        if isinstance(event, dict) and isinstance(event.get("line"), str):
                            lines.append(event["line"].rstrip("\n"))
                    if time.monotonic() > deadline or len(lines) >= tail:
                        break
        except requests.exceptions.ConnectionError as exc:
            if not lines and "Read timed out" not in str(exc):
                raise RunPodError(f"runpod: pod {pod_id} logs: cannot reach {base_url()}"
                                  ) from None
        except requests.exceptions.Timeout:
            pass  # quiet stream: the backfill is complete
        return lines
