"""The pod stopping itself, from the runner: RunPod's GraphQL API (the mutation the runpod SDK
and backends/runpod/api.py send), called with urllib and the pod's own API key.

RunPod sets RUNPOD_API_KEY (a key scoped to the pod) and RUNPOD_POD_ID in a pod's container.
A runner started over SSH does not inherit the container's environment, so the key is looked
for in the runner's environment, then in the environment of the container's first process
(/proc/1/environ), then in /etc/rp_environment (`export RUNPOD_API_KEY="..."`, which RunPod's
images write for SSH shells). Stdlib only, Python 3.7+: shipped with the runner."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

KEY_VARIABLE = "RUNPOD_API_KEY"
POD_ENV_FILES = ("/proc/1/environ", "/etc/rp_environment")
DEFAULT_API_URL = "https://api.runpod.io"
TIMEOUT = 30.0
TRIES = 4
BACKOFF = 1.0  # seconds; doubles per retry
ACTIONS = ("stop", "terminate")


class PodAPIError(Exception):
    """A call that did not do what it was asked: the message is one line."""


def env_file_values(path: str) -> dict:
    """KEY=VALUE pairs of /proc/PID/environ (NUL-separated) or of a shell file of
    `export KEY="VALUE"` lines; {} when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError:
        return {}
    text = data.decode("utf-8", "replace")
    values = {}
    for item in text.split("\0") if "\0" in text else text.splitlines():
        item = item.strip()
        if item.startswith("export "):
            item = item[len("export "):].strip()
        key, sep, value = item.partition("=")
        if not sep or not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def pod_api_key(environ=None, files=None):
    """(key, where it was found), or (None, the places looked at)."""
    environ = os.environ if environ is None else environ
    files = POD_ENV_FILES if files is None else files
    key = (environ.get(KEY_VARIABLE) or "").strip()
    if key:
        return key, f"${KEY_VARIABLE}"
    for path in files:
        key = (env_file_values(path).get(KEY_VARIABLE) or "").strip()
        if key:
            return key, path
    return None, ", ".join([f"${KEY_VARIABLE}"] + list(files))


def quote(value: str) -> str:
    """`value` as a GraphQL string literal (JSON's escapes are GraphQL's)."""
    return json.dumps(str(value))


def mutation(action: str, pod_id: str) -> str:
    if action == "terminate":
        return f"mutation {{ podTerminate(input: {{podId: {quote(pod_id)}}}) }}"
    return f"mutation {{ podStop(input: {{podId: {quote(pod_id)}}}) {{ id desiredStatus }} }}"


def post_graphql(api_url: str, key: str, document: str, timeout: float = TIMEOUT) -> dict:
    """One POST to {api_url}/graphql; its `data`, or PodAPIError (with `retry` set when
    trying again may help: no connection, 429, 5xx)."""
    request = urllib.request.Request(
        api_url.rstrip("/") + "/graphql", data=json.dumps({"query": document}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + key,
                 "User-Agent": "trainctl-runner"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        error = PodAPIError(f"HTTP {exc.code}" + (" (the pod's API key was rejected)"
                                                  if exc.code in (401, 403) else ""))
        error.retry = exc.code == 429 or exc.code >= 500
        raise error from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        error = PodAPIError(f"cannot reach {api_url} ({reason})")
        error.retry = True
        raise error from None
    try:
        answer = json.loads(body.decode("utf-8"))
    except ValueError:
        raise PodAPIError(f"unexpected answer from {api_url} (not JSON)") from None
    if not isinstance(answer, dict):
        raise PodAPIError(f"unexpected answer from {api_url}")
    errors = answer.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) and errors else errors
        message = first.get("message") if isinstance(first, dict) else first
        raise PodAPIError(" ".join(str(message).split()))
    data = answer.get("data")
    if not isinstance(data, dict):
        raise PodAPIError(f"unexpected answer from {api_url} (no data)")
    return data


def end_pod(api_url: str, key: str, pod_id: str, action: str, sleep=time.sleep) -> str:
    """Stop or terminate the pod; returns what RunPod said it is now, or raises PodAPIError.
    Failures that may pass (no connection, 429, 5xx) are tried again: the spending must end."""
    document = mutation(action, pod_id)
    for attempt in range(1, TRIES + 1):
        try:
            data = post_graphql(api_url, key, document)
            break
        except PodAPIError as exc:
            if not getattr(exc, "retry", False) or attempt == TRIES:
                if getattr(exc, "retry", False):
                    raise PodAPIError(f"{exc} after {TRIES} tries") from None
                raise
            sleep(BACKOFF * 2 ** (attempt - 1))
    if action == "terminate":
        return "terminated"
    pod = data.get("podStop")
    if not isinstance(pod, dict):
        raise PodAPIError(f"RunPod answered no pod for {pod_id}")
    return str(pod.get("desiredStatus") or "?").lower()
