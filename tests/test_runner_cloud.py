"""The runner's cloud behaviour on an instance, with real processes and real HTTP: spot notices
from a local IMDSv2 server, checkpoints synced to S3 (moto's server) with the real aws CLI,
resume from s3://, and idle autostop."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import runner_names as sv
from moto_aws import aws, free_port, moto_server  # noqa: F401 - the fixtures
from runner_names import runner_zipapp

ROOT = Path(__file__).resolve().parents[1]
SUPERVISOR = runner_zipapp()  # the runner as it is shipped: one zipapp
PY = sys.executable
PY37 = "/root/.pyenv/versions/3.7.16/bin/python3"
BUCKET = "trainctl-ckpts"
PREFIX = f"s3://{BUCKET}/runs/sess/checkpoints/"


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")


def _aws_cli() -> str | None:
    # The interpreter's own entry point: the pyenv shim adds a second of startup per call.
    beside = Path(PY).with_name("aws")
    return str(beside) if beside.exists() else shutil.which("aws")


AWS_CLI = _aws_cli()
needs_aws_cli = pytest.mark.skipif(AWS_CLI is None, reason="the aws CLI is not installed")

# A torch-free training: `step N loss X` lines, checkpoints ckpt-<step>.pt written through a
# temporary name, one more checkpoint on SIGTERM.
TRAIN = r'''
import argparse, os, pickle, signal, sys, time
p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=100000)
p.add_argument("--every", type=int, default=0)
p.add_argument("--max-ckpts", type=int, default=0)
p.add_argument("--sleep", type=float, default=0.05)
p.add_argument("--resume")
p.add_argument("--partial", action="store_true")
p.add_argument("--ignore-term", action="store_true")
a = p.parse_args()
ckdir = os.environ.get("TRAINCTL_CHECKPOINT_DIR", "ckpts")
os.makedirs(ckdir, exist_ok=True)
step, saved = 0, 0

def payload(n):  # a pickle of plain data: a sound checkpoint to the inspector
    return pickle.dumps({"step": n, "weights": bytes(range(256)) * 8}, protocol=2)

def save(n):
    path = os.path.join(ckdir, "ckpt-%d.pt" % n)
    with open(path + ".tmp", "wb") as fh:
        fh.write(payload(n))
    os.replace(path + ".tmp", path)
    return path

def on_term(signum, frame):
    if a.ignore_term:
        print("ignoring SIGTERM", flush=True)
        return
    print("saved on SIGTERM: %s" % save(max(step, 1)), flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
if a.resume:
    if os.path.isdir(a.resume):
        print("resumed from dir %s files %s" % (a.resume, sorted(os.listdir(a.resume))), flush=True)
    else:
        with open(a.resume, "rb") as fh:
            step = pickle.load(fh)["step"]
        print("resumed from %s at step %d" % (a.resume, step), flush=True)
if a.partial:
    with open(os.path.join(ckdir, "ckpt-999.pt.tmp"), "wb") as fh:
        fh.write(b"half")
    with open(os.path.join(ckdir, ".ckpt-998.pt"), "wb") as fh:
        fh.write(b"hidden")
for _ in range(a.steps):
    step += 1
    print("step %d loss %.4f" % (step, 1.0 / step), flush=True)
    if a.every and step % a.every == 0 and (not a.max_ckpts or saved < a.max_ckpts):
        save(step)
        saved += 1
    time.sleep(a.sleep)
print("done", flush=True)
'''


# --------------------------------------------------------------------------- IMDS


class Imds(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ImdsHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.tokens: set[str] = set()
        self.notice: dict | None = None
        self.token_puts = 0
        self.unauthorized = 0
        self.action_gets = 0

    def revoke_tokens(self) -> None:
        self.tokens.clear()


class ImdsHandler(BaseHTTPRequestHandler):
    server: Imds

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        if self.path != "/latest/api/token" or not self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            return self._send(400)
        self.server.token_puts += 1
        token = f"token-{self.server.token_puts}"
        self.server.tokens.add(token)
        self._send(200, token.encode())

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") not in self.server.tokens:
            self.server.unauthorized += 1
            return self._send(401)
        if self.path != "/latest/meta-data/spot/instance-action":
            return self._send(404)
        self.server.action_gets += 1
        if self.server.notice is None:
            return self._send(404)
        self._send(200, json.dumps(self.server.notice).encode())


@pytest.fixture
def imds():
    server = Imds()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def notice_time(seconds_from_now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now))


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def train(tmp_path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


@pytest.fixture
def session(tmp_path, train):
    """Factory for session folders (siblings in tmp_path); kills whatever a test leaves."""
    made: list[Path] = []

    def make(*train_args: str, name: str = "sess", **spec) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        full = {
            "id": f"t-{name}",
            "command": [PY, str(train), *train_args],
            "cwd": str(tmp_path),
            "checkpoint_dir": f"ckpts-{name}",
            "max_restarts": 0,
            "backoff_seconds": 0.05,
            "grace_seconds": 10.0,
            "heartbeat_seconds": 0.2,
        }
        full.update(spec)
        (folder / "spec.json").write_text(json.dumps(full))
        made.append(folder)
        return folder

    yield make
    sv.kill_left_behind(made)


def launch(folder: Path, python: str = PY) -> dict:
    """Start a detached runner the way the providers do; return its first status."""
    result = subprocess.run([python, str(SUPERVISOR), "--detach", str(folder)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    status = sv.read_status(str(folder))
    assert status is not None
    return status


def wait_status(folder: Path, predicate, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = sv.read_status(str(folder))
        if status and predicate(status):
            return status
        time.sleep(0.05)
    log = folder / "runner.log"
    raise AssertionError(f"status condition not met in {timeout}s; last status: {status}\n"
                         f"runner.log: {log.read_text() if log.exists() else ''}")


def wait_state(folder: Path, *states: str, timeout: float = 60) -> dict:
    return wait_status(folder, lambda s: s["state"] in states, timeout)


def wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def train_log(folder: Path) -> str:
    path = folder / "train.log"
    return path.read_text(errors="replace") if path.exists() else ""


def runner_log(folder: Path) -> str:
    path = folder / "runner.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_runner_gone(status: dict, timeout: float = 30) -> None:
    wait_for(lambda: not sv.pid_alive(status["runner_pid"], status["runner_start"]),
             "the runner to exit", timeout)


@pytest.fixture
def s3(aws):  # noqa: F811 - the fixture
    import boto3

    client = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def s3_keys(client, prefix: str = "runs/sess/checkpoints/") -> list[str]:
    response = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for obj in response.get("Contents", []))


def s3_cloud(**extra) -> dict:
    spec = {"s3_checkpoint_uri": PREFIX, "aws_cli": [AWS_CLI], "s3_sync_seconds": 0.3}
    spec.update(extra)
    return spec


# --------------------------------------------------------------------------- spot notices


@needs_aws_cli
@pytest.mark.parametrize("python", [PY, PY37], ids=["py", "py3.7"])
def test_spot_notice_saves_checkpoint_syncs_it_and_ends_interrupted(s3, imds, session, python):
    if not os.path.exists(python):
        pytest.skip("python 3.7 is not installed")
    folder = session(spot_notice_url=imds.url, spot_poll_seconds=0.2,
                     **s3_cloud(), max_restarts=3)
    launch(folder, python)
    wait_for(lambda: "step 5 " in train_log(folder), "training steps")
    wait_for(lambda: imds.action_gets >= 2, "the runner polling IMDS")
    deadline = notice_time(90)
    imds.notice = {"action": "terminate", "time": deadline}

    status = wait_state(folder, "interrupted")
    log = train_log(folder)
    assert "saved on SIGTERM" in log
    info = status["interruption"]
    assert info["action"] == "terminate"
    assert info["deadline"] == sv.parse_aws_time(deadline)
    assert info["notice_at"] <= info["deadline"]
    checkpoint = Path(info["checkpoint"])
    assert checkpoint.name.startswith("ckpt-") and checkpoint.exists()
    assert info["synced"] is True
    assert info["uri"] == PREFIX + checkpoint.name
    body = s3.get_object(Bucket=BUCKET, Key=f"runs/sess/checkpoints/{checkpoint.name}")
    assert body["Body"].read() == checkpoint.read_bytes()
    marker = f"runs/sess/checkpoints/{checkpoint.name}{sv.S3_MARKER_SUFFIX}"
    assert marker in s3_keys(s3)
    # An interruption is final: no restart although restarts were allowed.
    assert len(status["attempts"]) == 1
    assert status["stop_requested"] is False
    # The runner always used its token; it never asked IMDS without one.
    assert imds.token_puts >= 1 and imds.unauthorized == 0


def test_spot_deadline_kills_a_training_that_ignores_sigterm(imds, session):
    folder = session("--ignore-term", spot_notice_url=imds.url, spot_poll_seconds=0.2,
                     spot_safety_seconds=20)
    launch(folder)
    wait_for(lambda: "step 3 " in train_log(folder), "training steps")
    imds.notice = {"action": "stop", "time": notice_time(22)}
    status = wait_state(folder, "interrupted")
    assert "ignoring SIGTERM" in train_log(folder)
    assert status["attempts"][-1]["signal"] == signal.SIGKILL
    assert "did not exit in time" in status["reason"]
    assert status["interruption"]["action"] == "stop"
    assert status["interruption"]["synced"] is False  # no S3 configured
    assert status["interruption"]["uri"] is None


def test_imds_unreachable_never_disturbs_the_training(session):
    closed = f"http://127.0.0.1:{free_port()}"
    folder = session("--steps", "30", "--sleep", "0.02", spot_notice_url=closed,
                     spot_poll_seconds=0.1)
    launch(folder)
    status = wait_state(folder, "succeeded", "failed")
    assert status["state"] == "succeeded" and status["exit_code"] == 0
    assert status["interruption"] is None
    assert "step 30 " in train_log(folder)
    # Said once, not at every poll.
    assert runner_log(folder).count("instance metadata unreachable") == 1


def test_imds_token_is_renewed_after_a_401(imds):
    client = sv.ImdsClient(imds.url)
    assert client.spot_action() is None
    assert imds.token_puts == 1
    assert client.spot_action() is None
    assert imds.token_puts == 1  # cached
    imds.revoke_tokens()
    imds.notice = {"action": "hibernate", "time": "2026-11-28T16:30:00Z"}
    assert client.spot_action() == imds.notice
    assert imds.token_puts == 2 and imds.unauthorized == 1


# --------------------------------------------------------------------------- S3 sync


@needs_aws_cli
def test_finished_checkpoints_are_synced_once_while_training_runs(s3, session):
    folder = session("--every", "3", "--max-ckpts", "3", "--partial", **s3_cloud())
    launch(folder)
    status = wait_status(folder, lambda s: len(s.get("synced_checkpoints") or []) >= 3)
    assert status["state"] == "running"  # synced while the training runs
    assert sorted(status["synced_checkpoints"]) == ["ckpt-3.pt", "ckpt-6.pt", "ckpt-9.pt"]
    assert status["last_sync"]["ok"] is True and status["last_sync"]["error"] is None
    keys = s3_keys(s3)
    base = "runs/sess/checkpoints/"
    for name in ("ckpt-3.pt", "ckpt-6.pt", "ckpt-9.pt"):
        assert base + name in keys and base + name + sv.S3_MARKER_SUFFIX in keys
    assert not [k for k in keys if "999" in k or "998" in k]  # .tmp and hidden: not finished
    local = Path(status["attempts"][0]["command"][1]).parent / "ckpts-sess" / "ckpt-6.pt"
    body = s3.get_object(Bucket=BUCKET, Key=base + "ckpt-6.pt")["Body"].read()
    assert body == local.read_bytes()

    # A few more sync rounds upload nothing again; the stop's own checkpoint goes up at the end.
    time.sleep(1.5)
    subprocess.run([PY, str(SUPERVISOR), "--stop", str(folder)], check=True, timeout=30)
    status = wait_state(folder, "stopped")
    saved = [line for line in train_log(folder).splitlines() if "saved on SIGTERM" in line]
    final_name = Path(saved[0].split(": ", 1)[1]).name
    assert final_name in status["synced_checkpoints"]
    assert base + final_name + sv.S3_MARKER_SUFFIX in s3_keys(s3)
    uploads = [line for line in runner_log(folder).splitlines() if "synced checkpoint" in line]
    assert len(uploads) == len(set(uploads)) == len(status["synced_checkpoints"])
    assert not [k for k in s3_keys(s3) if "999" in k or "998" in k]


def last_step(folder: Path) -> int:
    steps = [line for line in train_log(folder).splitlines() if line.startswith("step ")]
    return int(steps[-1].split()[1]) if steps else 0


@needs_aws_cli
def test_sync_failure_is_recorded_and_the_training_goes_on(s3, session):
    folder = session("--every", "2", "--max-ckpts", "1",
                     **s3_cloud(s3_checkpoint_uri="s3://no-such-bucket-here/x/"))
    launch(folder)
    status = wait_status(folder, lambda s: (s.get("last_sync") or {}).get("ok") is False)
    assert status["state"] == "running"
    assert status["last_sync"]["name"] == "ckpt-2.pt"
    assert "NoSuchBucket" in status["last_sync"]["error"]
    assert "checkpoint sync of ckpt-2.pt failed" in runner_log(folder)
    steps_then = last_step(folder)
    wait_for(lambda: last_step(folder) > steps_then + 5, "more training steps")
    subprocess.run([PY, str(SUPERVISOR), "--stop", str(folder)], check=True, timeout=30)
    status = wait_state(folder, "stopped", "failed")
    assert status["state"] == "stopped"
    assert status["exit_code"] == 0  # the training saved and exited normally
    assert status["synced_checkpoints"] == []
    assert status["last_sync"]["ok"] is False


def test_missing_aws_cli_is_a_sync_failure_not_a_training_failure(session):
    folder = session("--every", "2", "--max-ckpts", "1", "--steps", "20", "--sleep", "0.02",
                     s3_checkpoint_uri=PREFIX, aws_cli=["/nonexistent/aws"], s3_sync_seconds=0.2)
    launch(folder)
    status = wait_state(folder, "succeeded", "failed")
    assert status["state"] == "succeeded"
    assert status["last_sync"]["ok"] is False
    assert "aws CLI not found" in status["last_sync"]["error"]


# --------------------------------------------------------------------------- resume from S3


@needs_aws_cli
def test_resume_from_an_s3_checkpoint_downloads_it_first(s3, session, tmp_path):
    # As after a spot interruption: the checkpoint is in the session's own S3 prefix.
    payload = pickle.dumps({"step": 7, "weights": b"weights" * 100}, protocol=2)
    s3.put_object(Bucket=BUCKET, Key="runs/sess/checkpoints/ckpt-7.pt", Body=payload)
    folder = session("--steps", "3", "--sleep", "0.01", **s3_cloud(),
                     resume_from=PREFIX + "ckpt-7.pt", resume_template="--resume {checkpoint}")
    launch(folder)
    status = wait_state(folder, "succeeded", "failed")
    local = tmp_path / "ckpts-sess" / "ckpt-7.pt"
    assert status["state"] == "succeeded", status
    assert local.read_bytes() == payload
    assert f"resumed from {local} at step 7" in train_log(folder)
    assert status["attempts"][0]["resumed_from"] == str(local)
    assert status["attempts"][0]["command"][-2:] == ["--resume", str(local)]
    # Downloaded from the sync prefix, so it is not uploaded back.
    assert status["synced_checkpoints"] == ["ckpt-7.pt"]
    assert "synced checkpoint ckpt-7.pt" not in runner_log(folder)


@needs_aws_cli
def test_resume_from_an_s3_folder_checkpoint(s3, session, tmp_path):
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    files = {"trainer_state.json": b"{}",
             "model.safetensors": len(header).to_bytes(8, "little") + header + b"\0\0\x80?"}
    for name, body in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"old/checkpoint-5/{name}", Body=body)
    s3.put_object(Bucket=BUCKET, Key=f"old/checkpoint-5/{sv.S3_MARKER_SUFFIX}", Body=b"{}")
    folder = session("--steps", "2", "--sleep", "0.01", aws_cli=[AWS_CLI],
                     resume_from=f"s3://{BUCKET}/old/checkpoint-5/",
                     resume_template="--resume {checkpoint}")
    launch(folder)
    status = wait_state(folder, "succeeded", "failed")
    local = tmp_path / "ckpts-sess" / "checkpoint-5"
    assert status["state"] == "succeeded", status
    assert "files ['model.safetensors', 'trainer_state.json']" in train_log(folder)
    assert status["attempts"][0]["resumed_from"] == str(local)


@needs_aws_cli
def test_missing_s3_checkpoint_fails_with_a_clear_reason(s3, session):
    uri = f"s3://{BUCKET}/old/ckpt-404.pt"
    folder = session(aws_cli=[AWS_CLI], resume_from=uri, resume_template="--resume {checkpoint}",
                     max_restarts=2)
    launch(folder)
    status = wait_state(folder, "failed", "succeeded")
    assert status["state"] == "failed"
    assert status["reason"].startswith(f"cannot download checkpoint {uri}")
    assert "no such checkpoint" in status["reason"]
    assert status["attempts"][-1]["reason"] == status["reason"]
    assert "step 1 " not in train_log(folder)  # the training never started


# --------------------------------------------------------------------------- autostop


def marker_command(path: Path) -> list[str]:
    return [PY, "-c", f"open({str(path)!r}, 'a').write('stop\\n')"]


def test_autostop_runs_the_command_once_after_the_idle_time(session, tmp_path):
    marker = tmp_path / "shutdown-ran"
    folder = session("--steps", "3", "--sleep", "0.01", autostop_minutes=0.02,
                     autostop_command=marker_command(marker))
    first = launch(folder)
    status = wait_status(folder, lambda s: s.get("autostop_at") is not None)
    assert status["state"] == "succeeded"  # the final state stays
    wait_for(marker.exists, "the autostop command")
    wait_runner_gone(first)
    status = sv.read_status(str(folder))
    assert marker.read_text() == "stop\n"
    assert status["state"] == "succeeded"
    assert status["autostop"]["action"] == "ran"
    assert status["autostop"]["exit_code"] == 0
    assert status["autostop"]["command"] == marker_command(marker)
    assert status["autostop_at"] is None


def test_autostop_waits_while_a_sibling_session_trains(session, tmp_path):
    marker = tmp_path / "shutdown-ran"
    busy = session(name="busy")
    launch(busy)
    wait_state(busy, "running")
    idle = session("--steps", "2", "--sleep", "0.01", name="idle", autostop_minutes=0.01,
                   autostop_command=marker_command(marker))
    launch(idle)
    wait_for(lambda: "is active: autostop postponed" in train_log(idle), "a postponed autostop")
    assert not marker.exists()
    assert sv.read_status(str(idle))["state"] == "succeeded"

    subprocess.run([PY, str(SUPERVISOR), "--stop", str(busy)], check=True, timeout=30)
    wait_state(busy, "stopped")
    status = wait_status(idle, lambda s: s["autostop"] is not None)
    assert status["autostop"]["action"] == "ran"
    assert marker.read_text() == "stop\n"


def test_stop_cancels_an_autostop_wait(session, tmp_path):
    marker = tmp_path / "shutdown-ran"
    folder = session("--steps", "2", "--sleep", "0.01", autostop_minutes=30,
                     autostop_command=marker_command(marker))
    first = launch(folder)
    wait_status(folder, lambda s: s.get("autostop_at") is not None)
    result = subprocess.run([PY, str(SUPERVISOR), "--stop", str(folder)],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "runner signalled"
    wait_runner_gone(first)
    status = sv.read_status(str(folder))
    assert status["state"] == "succeeded"
    assert status["autostop"]["action"] == "cancelled"
    assert status["autostop_at"] is None
    assert not marker.exists()


def test_a_new_run_of_the_session_ends_its_autostop_wait(session, tmp_path):
    marker = tmp_path / "shutdown-ran"
    folder = session("--steps", "2", "--sleep", "0.01", autostop_minutes=30,
                     autostop_command=marker_command(marker))
    first = launch(folder)
    wait_status(folder, lambda s: s.get("autostop_at") is not None)
    second = launch(folder)  # not refused: the idle runner gives way
    assert second["runner_pid"] != first["runner_pid"]
    assert not sv.pid_alive(first["runner_pid"], first["runner_start"])
    status = wait_status(folder, lambda s: len(s["attempts"]) == 2 and s["autostop_at"])
    assert status["state"] == "succeeded"
    assert not marker.exists()


def test_without_cloud_keys_status_has_no_cloud_fields(session):
    folder = session("--steps", "2", "--sleep", "0.01")
    launch(folder)
    status = wait_state(folder, "succeeded", "failed")
    for key in ("interruption", "synced_checkpoints", "last_sync", "autostop_at", "autostop"):
        assert key not in status


def test_the_metadata_service_is_where_the_instance_environment_names_it(monkeypatch):
    """AWS_EC2_METADATA_SERVICE_ENDPOINT (as the SDKs and CLI read it) replaces the usual
    address only; a spec naming another address keeps it."""
    from trainctl_tui.backends.aws.runner_spot import IMDS_URL, imds_endpoint

    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", raising=False)
    assert imds_endpoint(IMDS_URL) == "http://169.254.169.254"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]/")
    assert imds_endpoint(IMDS_URL) == "http://[fd00:ec2::254]"
    assert imds_endpoint(IMDS_URL + "/") == "http://[fd00:ec2::254]"
    assert imds_endpoint("http://127.0.0.1:8111") == "http://127.0.0.1:8111"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", " ")
    assert imds_endpoint(IMDS_URL) == IMDS_URL
