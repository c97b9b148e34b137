"""S3 checkpoints through the aws CLI (not boto3: it is on every Deep Learning AMI and keeps
the runner stdlib only): upload each finished checkpoint once, download one to resume from.
"""

from __future__ import annotations

import json
import os
import time

from ...runner.checkpoint_files import finished_checkpoints
from ...runner.lazy_import import OnFirstUse
from ...runner.runner_log import log_stderr, one_line

subprocess = OnFirstUse("subprocess", globals())
threading = OnFirstUse("threading", globals())


S3_MARKER_SUFFIX = ".trainctl-complete"
S3_TRANSFER_TIMEOUT_SECONDS = 3600.0
SYNC_BACKOFF_MAX_SECONDS = 300.0


def is_s3_uri(value) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


def s3_join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def s3_marker_uri(base: str, name: str, is_dir: bool) -> str:
    """Written after a checkpoint's data, so readers can tell complete uploads from partial."""
    if is_dir:
        return s3_join(s3_join(base, name), S3_MARKER_SUFFIX)
    return s3_join(base, name + S3_MARKER_SUFFIX)


def run_aws(aws_cli: list[str], args: list[str], env: dict | None = None,
            timeout: float = S3_TRANSFER_TIMEOUT_SECONDS, stdin_data: bytes | None = None):
    """Run one aws CLI command; returns None on success, else a one-line error."""
    command = list(aws_cli) + list(args)
    try:
        result = subprocess.run(
            command,
            input=stdin_data,
            stdin=None if stdin_data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=max(1.0, timeout),
        )
    except FileNotFoundError:
        return f"aws CLI not found: {aws_cli[0]} (install awscli on this machine)"
    except subprocess.TimeoutExpired:
        return f"aws {args[0]} {args[1] if len(args) > 1 else ''} timed out after {timeout:g}s"
    except OSError as exc:
        return f"cannot run {aws_cli[0]}: {exc.strerror or exc}"
    if result.returncode == 0:
        return None
    detail = one_line(result.stderr.decode("utf-8", "replace")) or one_line(
        result.stdout.decode("utf-8", "replace"))
    return detail or f"aws exited with code {result.returncode}"


def upload_checkpoint(aws_cli: list[str], path: str, base_uri: str, env: dict | None = None,
                      timeout: float = S3_TRANSFER_TIMEOUT_SECONDS):
    """Upload one checkpoint (file or folder) under base_uri, then its completion marker.
    Returns None on success, else a one-line error."""
    name = os.path.basename(path.rstrip("/"))
    is_dir = os.path.isdir(path)
    quiet = ["--only-show-errors"]
    if is_dir:
        error = run_aws(aws_cli, ["s3", "sync", path, s3_join(base_uri, name) + "/"] + quiet,
                        env, timeout)
    else:
        error = run_aws(aws_cli, ["s3", "cp", path, s3_join(base_uri, name)] + quiet, env, timeout)
    if error:
        return error
    marker = json.dumps({"name": name, "completed_at": time.time(), "dir": is_dir}).encode()
    return run_aws(aws_cli, ["s3", "cp", "-", s3_marker_uri(base_uri, name, is_dir)] + quiet,
                   env, timeout, stdin_data=marker)


def download_checkpoint(aws_cli: list[str], uri: str, dest_dir: str, env: dict | None = None,
                        timeout: float = S3_TRANSFER_TIMEOUT_SECONDS):
    """Download an S3 checkpoint (an object, or a prefix = folder) into dest_dir.
    Returns (local path, None) or (None, one-line error)."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not name or uri.rstrip("/") == "s3:/":
        return None, f"not a checkpoint URI: {uri}"
    local = os.path.join(dest_dir, name)
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as exc:
        return None, f"cannot create {dest_dir}: {exc.strerror or exc}"
    quiet = ["--only-show-errors"]
    file_error = None
    if not uri.endswith("/"):
        file_error = run_aws(aws_cli, ["s3", "cp", uri, local] + quiet, env, timeout)
        if file_error is None:
            return local, None
    # Not an object: maybe a folder checkpoint stored as a prefix.
    error = run_aws(aws_cli, ["s3", "sync", uri.rstrip("/") + "/", local + "/",
                              "--exclude", S3_MARKER_SUFFIX] + quiet, env, timeout)
    if error:
        return None, error
    if not os.path.isdir(local) or not os.listdir(local):
        return None, f"no such checkpoint in S3: {uri}" + (
            f" ({file_error})" if file_error and "404" not in file_error else "")
    return local, None


class CheckpointSync:
    """Uploads each finished checkpoint once, in a thread; never blocks or kills the training.

    The thread never writes status.json itself: it publishes `synced_checkpoints` and
    `last_sync` through snapshot(), which the supervisor merges into its next status write.
    """

    def __init__(self, checkpoint_dir: str, uri: str, aws_cli: list[str], env: dict,
                 interval: float, synced=(), notify=None):
        self.checkpoint_dir = checkpoint_dir
        self.uri = uri
        self.aws_cli = aws_cli
        self.env = env
        self.interval = interval
        self.notify = notify or (lambda: None)
        self.synced = [str(name) for name in synced]
        self.last_sync = None
        self.failures = 0
        self.retry_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainctl-s3-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> dict:
        with self._lock:
            return {"synced_checkpoints": list(self.synced), "last_sync": self.last_sync}

    def mark_synced(self, name: str, synced: bool) -> None:
        with self._lock:
            if synced and name not in self.synced:
                self.synced.append(name)
            elif not synced and name in self.synced:
                self.synced.remove(name)

    def is_synced(self, path: str) -> bool:
        with self._lock:
            return os.path.basename(path) in self.synced

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if time.time() >= self.retry_at:
                self.sync_pending(deadline=None)

    def sync_pending(self, deadline: float | None) -> None:
        """Upload every finished checkpoint not uploaded yet, oldest first; stop at the first
        failure (retried later with backoff) or when `deadline` has passed."""
        for path in reversed(finished_checkpoints(self.checkpoint_dir)):
            if self.is_synced(path):
                continue
            timeout = S3_TRANSFER_TIMEOUT_SECONDS
            if deadline is not None:
                timeout = deadline - time.time()
                if timeout <= 1:
                    return
            if not self.upload(path, timeout):
                return

    def upload(self, path: str, timeout: float) -> bool:
        name = os.path.basename(path)
        error = upload_checkpoint(self.aws_cli, path, self.uri, self.env, timeout)
        with self._lock:
            self.last_sync = {"name": name, "at": time.time(), "ok": error is None,
                              "error": error}
            if error is None:
                self.synced.append(name)
                self.failures = 0
                self.retry_at = 0.0
            else:
                self.failures += 1
                delay = min(self.interval * 2 ** min(self.failures, 20), SYNC_BACKOFF_MAX_SECONDS)
                self.retry_at = time.time() + delay
        if error is None:
            log_stderr(f"synced checkpoint {name} to {s3_join(self.uri, name)}")
        else:
            log_stderr(f"checkpoint sync of {name} failed (retrying later): {error}")
        self.notify()
        return error is None

    def final_sync(self, deadline: float | None) -> None:
        """Stop the thread (letting a running upload finish) and upload what is left, now."""
        self._stop.set()
        if self._thread.is_alive():
            wait = None if deadline is None else max(0.0, deadline - time.time())
            self._thread.join(wait)
        if self._thread.is_alive():
            return  # still uploading at the deadline: nothing more fits
        self.sync_pending(deadline)
