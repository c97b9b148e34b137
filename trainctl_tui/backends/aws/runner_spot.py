"""AWS spot interruption notices, polled from the instance metadata service (IMDSv2)."""

from __future__ import annotations

import json
import os
import time

from ...runner.lazy_import import OnFirstUse
from ...runner.runner_log import log_stderr

threading = OnFirstUse("threading", globals())


IMDS_URL = "http://169.254.169.254"
IMDS_TIMEOUT_SECONDS = 1.5
IMDS_TOKEN_TTL_SECONDS = 21600
SPOT_DEFAULT_NOTICE_SECONDS = 120.0
SPOT_MIN_SAVE_SECONDS = 5.0


def parse_aws_time(text) -> float | None:
    """Epoch seconds from IMDS times such as '2026-11-28T16:30:00Z'; None if unparsable."""
    if not isinstance(text, str):
        return None
    import calendar  # here only: the CLI imports this module and must start fast

    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    return None


def imds_endpoint(url: str) -> str:
    """Where the instance's metadata service is: the spec's `url`, unless that is the usual
    address and the instance's environment names another in AWS_EC2_METADATA_SERVICE_ENDPOINT
    (as the AWS SDKs and CLI read it, e.g. http://[fd00:ec2::254] on an IPv6-only subnet)."""
    named = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "").strip().rstrip("/")
    return named if url.rstrip("/") == IMDS_URL and named else url


class ImdsClient:
    """IMDSv2: a session token (PUT, cached, renewed before expiry or on 401), then GETs."""

    # urllib (and the ssl it brings) only where the runner watches for spot notices: the CLI
    # imports this module to read status files and must start fast.
    def __init__(self, base_url: str, timeout: float = IMDS_TIMEOUT_SECONDS):
        import urllib.request

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = None
        self.token_expires = 0.0
        # IMDS is link-local: a proxy from the environment must never see these requests.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _token(self) -> str:
        import urllib.request

        if self.token is None or time.time() >= self.token_expires:
            request = urllib.request.Request(
                self.base_url + "/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL_SECONDS)},
            )
            with self.opener.open(request, timeout=self.timeout) as response:
                self.token = response.read().decode("ascii", "replace").strip()
            # Renew a minute early so a token never expires between two polls.
            self.token_expires = time.time() + IMDS_TOKEN_TTL_SECONDS - 60
        return self.token

    def get(self, path: str):
        """(HTTP status, body) of a metadata GET; raises OSError when IMDS is unreachable."""
        import urllib.error
        import urllib.request

        for _ in range(2):
            request = urllib.request.Request(
                self.base_url + path, headers={"X-aws-ec2-metadata-token": self._token()}
            )
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    self.token = None  # expired or revoked: fetch a new one and retry once
                    continue
                return exc.code, b""
        return 401, b""

    def spot_action(self) -> dict | None:
        """The spot instance-action notice as a dict, or None when there is none."""
        code, body = self.get("/latest/meta-data/spot/instance-action")
        if code != 200:
            return None
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("action") else None


class SpotWatcher:
    """Polls IMDS for a spot interruption notice in a thread and reports the first one.

    IMDS being slow or unreachable must never touch the training: every error is swallowed
    (logged once per outage) and the next poll tries again.
    """

    def __init__(self, base_url: str, interval: float, on_notice):
        self.client = ImdsClient(base_url)
        self.interval = interval
        self.on_notice = on_notice
        self.outage_logged = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainctl-spot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            notice = self.poll_once()
            if notice is not None:
                self.on_notice(notice)
                return
            self._stop.wait(self.interval)

    def poll_once(self) -> dict | None:
        import http.client

        try:
            notice = self.client.spot_action()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not self.outage_logged:
                self.outage_logged = True
                log_stderr(f"instance metadata unreachable at {self.client.base_url} "
                            f"({exc}); spot notices will not be seen until it answers")
            return None
        if self.outage_logged:
            self.outage_logged = False
            log_stderr("instance metadata reachable again")
        return notice
