"""boto3 the way every AWS call in trainctl makes it: credentials, region and endpoint from the
SDK's own chain (env incl. AWS_ENDPOINT_URL, profiles, SSO, instance role) narrowed by `[aws]`
in the config; botocore's retry modes and explicit timeouts; calls off the event loop; and
AWS's errors turned into one line that says what to do.

Import this module only when an AWS action runs: boto3 costs ~0.3 s to import."""

from __future__ import annotations

import asyncio
import functools
import os
import threading

import boto3
import botocore.config
import botocore.exceptions

from ..base import ProviderError

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
MAX_ATTEMPTS = 5  # botocore counts the first call too

_lock = threading.RLock()
_sessions: dict[tuple, boto3.Session] = {}
_clients: dict[tuple, object] = {}


class AWSError(ProviderError):
    """An AWS call failed; `code` is AWS's error code when it gave one."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


def aws_settings():
    from ...config.loader import load_config

    return load_config().aws


def session(settings=None) -> boto3.Session:
    """One boto3 Session per (profile, region): boto3 sessions are not free to build."""
    settings = settings or aws_settings()
    key = (settings.profile, settings.region)
    with _lock:
        if key not in _sessions:
            try:
                _sessions[key] = boto3.Session(profile_name=settings.profile,
                                               region_name=settings.region)
            except botocore.exceptions.ProfileNotFound:
                raise AWSError(f"aws: profile '{settings.profile}' is not in ~/.aws/config or "
                               "~/.aws/credentials (set [aws] profile in the trainctl config)"
                               ) from None
        return _sessions[key]


def region(settings=None) -> str:
    name = session(settings).region_name
    if not name:
        raise AWSError("aws: no region: set [aws] region in the trainctl config, or "
                       "AWS_REGION / AWS_DEFAULT_REGION, or a region in your AWS profile")
    return name


def client(service: str, settings=None, *, region_name: str | None = None):
    """A cached boto3 client with the standard retry mode (adaptive if AWS_RETRY_MODE says
    so) and explicit timeouts. Clients are thread-safe; sessions are not, hence the lock."""
    settings = settings or aws_settings()
    where = region_name or region(settings)
    key = (service, settings.profile, where, os.environ.get("AWS_ENDPOINT_URL"),
           os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"))
    with _lock:
        if key not in _clients:
            retry_mode = os.environ.get("AWS_RETRY_MODE", "standard")
            config = botocore.config.Config(
                retries={"mode": retry_mode if retry_mode in ("standard", "adaptive")
                         else "standard", "total_max_attempts": MAX_ATTEMPTS},
                connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                user_agent_extra="trainctl")
            _clients[key] = session(settings).client(service, region_name=where, config=config)
        return _clients[key]


def reset_clients() -> None:
    """Forget cached sessions and clients (tests point AWS_ENDPOINT_URL elsewhere)."""
    with _lock:
        _sessions.clear()
        _clients.clear()


# -- errors ---------------------------------------------------------------------------------

_HINTS = {
    "ExpiredToken": "your AWS credentials have expired: refresh them (aws sso login, or new "
                    "keys) and retry",
    "ExpiredTokenException": "your AWS credentials have expired: refresh them (aws sso login, "
                             "or new keys) and retry",
    "RequestExpired": "your AWS credentials have expired (or the clock is off): refresh them "
                      "and retry",
    "InvalidClientTokenId": "AWS does not know these credentials: check AWS_ACCESS_KEY_ID or "
                            "the profile",
    "AuthFailure": "AWS rejected the credentials: check AWS_ACCESS_KEY_ID / the profile",
    "SignatureDoesNotMatch": "AWS rejected the secret key: check AWS_SECRET_ACCESS_KEY",
    "UnauthorizedOperation": "these credentials may not do this (IAM permissions)",
    "AccessDenied": "these credentials may not do this (IAM permissions)",
    "AccessDeniedException": "these credentials may not do this (IAM permissions)",
    "InsufficientInstanceCapacity": "AWS has no capacity for this type in this zone now: try "
                                    "another zone, type, or on-demand",
    "SpotMaxPriceTooLow": "the spot max price is below the current spot price: raise "
                          "--max-price or drop it",
    "MaxSpotInstanceCountExceeded": "the account's spot instance limit is reached",
    "VcpuLimitExceeded": "the account's vCPU limit for this instance family is reached: "
                         "ask AWS for a quota increase",
    "InstanceLimitExceeded": "the account's instance limit is reached",
    "InvalidInstanceID.NotFound": "no such instance in this region",
    "InvalidInstanceID.Malformed": "that is not an EC2 instance id (i-0123456789abcdef0)",
    "InvalidAMIID.NotFound": "no such AMI in this region",
    "InvalidAMIID.Malformed": "that is not an AMI id (ami-0123456789abcdef0)",
    "Throttling": "AWS kept throttling the calls; retry in a minute",
    "ThrottlingException": "AWS kept throttling the calls; retry in a minute",
    "RequestLimitExceeded": "AWS kept throttling the calls; retry in a minute",
    "NoSuchBucket": "no such S3 bucket",
    "NoSuchKey": "no such S3 object",
    "InvalidInstanceId": "the instance is not registered with SSM (yet), or is not running",
}


def describe_error(exc: BaseException, doing: str) -> AWSError:
    """One line: what we were doing, what AWS said, and what to do about it."""
    prefix = f"aws: {doing}"
    if isinstance(exc, AWSError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {})
                   .get("HTTPStatusCode") or "error")
        message = " ".join(str(error.get("Message") or "").split())
        if "<html" in message.lower() or "<!doctype" in message.lower():
            message = ""  # an HTML error page from a proxy or a broken endpoint: noise
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = _HINTS.get(code)
        if hint is None and status and int(status) >= 500:
            tries = f"{MAX_ATTEMPTS} tries" if MAX_ATTEMPTS != 1 else "1 try"
            hint = f"AWS answered {status} after {tries}; retry later"
        text = f"{prefix}: {code}" + (f": {message}" if message else "")
        return AWSError(f"{text} ({hint})" if hint else text, code)
    if isinstance(exc, (botocore.exceptions.NoCredentialsError,
                        botocore.exceptions.PartialCredentialsError)):
        return AWSError(f"{prefix}: no AWS credentials found (set AWS_ACCESS_KEY_ID/"
                        "AWS_SECRET_ACCESS_KEY, run aws configure or aws sso login, or set "
                        "[aws] profile)", "NoCredentials")
    if isinstance(exc, botocore.exceptions.TokenRetrievalError):
        return AWSError(f"{prefix}: the SSO session has expired: run aws sso login",
                        "ExpiredToken")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError)):
        return AWSError(f"{prefix}: cannot reach AWS ({exc})", "Unreachable")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return AWSError(f"{prefix}: AWS did not answer within {READ_TIMEOUT}s", "Timeout")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return AWSError(f"{prefix}: {exc}")
    raise exc


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, AWSError):
        return exc.code
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def translate(doing: str):
    """Decorator for blocking functions: AWS/botocore errors become AWSError(doing)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise describe_error(exc, doing) from None
        return inner
    return wrap


async def call(doing: str, fn, *args, **kwargs):
    """Run a blocking boto3 call in a thread; its errors become one-line AWSErrors."""
    def blocking():
        try:
            return fn(*args, **kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise describe_error(exc, doing) from None

    return await asyncio.to_thread(blocking)
