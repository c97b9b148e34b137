"""Sessions on EC2 through SSM, end to end: boto3 -> the SSM double (which runs the commands in
a sandbox folder per instance) -> moto for everything else. A real runner and a real training
process run "on the instance"."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pickle
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from child_patches import patch_everywhere
from conftest import run_cli
from gates import wait_recovery_done
from moto_aws import aws, moto_server  # noqa: F401 - the fixtures
from ssm_double import ssm  # noqa: F401 - the fixture

from trainctl_tui.app import recovery
from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.backends.aws.ssm import RAW_CHUNK, SSMTransport, SSMUnreachable
from trainctl_tui.core.models import Status

SECRET = "hf-very-secret-value-123"

TRAIN = r"""
import os, pickle, signal, sys, time
steps, every, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
start = 0
if "--resume" in sys.argv:  # a checkpoint is a pickle of the step: sound to the inspector
    start = pickle.load(open(sys.argv[sys.argv.index("--resume") + 1], "rb"))
    print(f"resumed from step {start}", flush=True)
os.makedirs("ckpt", exist_ok=True)
step = start
def save():
    with open(f"ckpt/step_{step:06d}.pt.tmp", "wb") as fh:
        pickle.dump(step, fh, protocol=2)
    os.replace(f"ckpt/step_{step:06d}.pt.tmp", f"ckpt/step_{step:06d}.pt")
def on_term(*_):
    save()
    print(f"got SIGTERM at step {step}, saved checkpoint", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
token = os.environ.get("HF_TOKEN", "")
print("token sha", __import__("hashlib").sha256(token.encode()).hexdigest()[:16], flush=True)
for step in range(start + 1, steps + 1):
    print(f"step {step} loss {1.0 / step:.5f}", flush=True)
    if step % every == 0:
        save()
    time.sleep(pause)
print("done", flush=True)
"""


@pytest.fixture
def ec2(ssm, tmp_path):  # noqa: F811 - pytest fixture injection
    """A running moto instance whose template workdir points into the double's sandbox."""
    (tmp_path / "config.toml").write_text(
        f"[aws]\nregion = \"us-east-1\"\n\n[aws.templates.default]\n"
        f"workdir = \"{ssm.workdir}\"\npython = \"{sys.executable}\"\n"
        f"instance_type = \"t3.micro\"\n")
    client = boto3.client("ec2", region_name="us-east-1")
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return client, script


def new_instance(client, **extra) -> str:
    ami = client.describe_images()["Images"][0]["ImageId"]
    answer = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                  **extra)
    return answer["Instances"][0]["InstanceId"]


def run(coro):
    return asyncio.run(coro)


async def wait_status(service: Service, session_id: str, predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = await service.get(session_id)
        if predicate(session):
            return session
        await asyncio.sleep(0.3)
    raise AssertionError(f"session {session_id} stayed {session.status}: {session.detail}")


def launch(service: Service, instance: str, command: list[str], **kw):
    request = LaunchRequest(command=command, provider=f"aws:{instance}", **kw)
    return run(service.launch(request))


def test_launch_follows_status_log_and_metrics_and_keeps_secrets_out_of_commands(
        ssm, ec2, trainctl_home):  # noqa: F811
    client, script = ec2
    instance = new_instance(client)
    service = Service()
    session = launch(service, instance, [sys.executable, "-u", str(script), "25", "10", "0.01"],
                     checkpoint_dir="ckpt", env={"HF_TOKEN": SECRET, "MODE": "plain"})
    assert session.provider == f"aws:{instance}" and session.host == instance
    done = run(wait_status(service, session.id, lambda s: not s.status.active))
    assert done.status is Status.SUCCEEDED, done.detail
    remote = ssm.path(instance, "sessions", session.id)
    local = Path(session.session_dir)
    log = (local / "train.log").read_text()
    assert (remote / "train.log").read_text() == log  # mirrored exactly
    assert [f"step {i} loss" in log for i in range(1, 26)] == [True] * 25
    # the training saw the secret; no SSM command text and no spec carried it
    assert hashlib.sha256(SECRET.encode()).hexdigest()[:16] in log
    assert ssm.commands and not any(SECRET in text for text in ssm.commands)
    assert SECRET not in (remote / "spec.json").read_text()
    assert (remote / "secret_env.json").stat().st_mode & 0o777 == 0o600
    ssm_client = boto3.client("ssm", region_name="us-east-1")
    # metrics from the mirrored log, as for a local run
    from trainctl_tui.monitor.session_monitor import metrics_summary

    summary = metrics_summary(local / "train.log")
    assert summary.metrics.series["loss"].ys[-1] == pytest.approx(1 / 25, rel=1e-3)
    # the spec on the instance says where things are; on-demand: no spot polling
    spec = json.loads((remote / "spec.json").read_text())
    assert "spot_notice_url" not in spec
    assert spec["machine_type"] == "t3.micro"  # how an idle-GPU alert names the machine
    # ended for good: the secrets are gone from SSM
    assert not ssm_client.get_parameters_by_path(
        Path=f"/trainctl/{session.id}/env/")["Parameters"]
    service.close()


def test_a_refresh_is_one_ssm_command(ssm, ec2, trainctl_home):  # noqa: F811
    client, script = ec2
    instance = new_instance(client)
    service = Service()
    session = launch(service, instance, [sys.executable, "-u", str(script), "100000", "1000",
                                         "0.05"])
    run(wait_status(service, session.id, lambda s: s.status is Status.RUNNING))
    time.sleep(1.2)  # past the probe cache
    before = len(ssm.commands)
    refreshed = run(service.get(session.id))
    assert refreshed.status is Status.RUNNING
    assert len(ssm.commands) - before == 1
    assert "step 5 loss" in (Path(session.session_dir) / "train.log").read_text()
    # the runner's GPU/CPU samples came back in that same command (usage.json, kept here)
    usage = json.loads((Path(session.session_dir) / "usage.json").read_text())
    assert usage["samples"] and usage["version"] == 1
    run(service.stop(session.id, force=True))
    service.close()


def test_stop_gracefully_resume_and_kill(ssm, ec2, trainctl_home):  # noqa: F811
    client, script = ec2
    instance = new_instance(client)
    service = Service()
    session = launch(service, instance, [sys.executable, "-u", str(script), "100000", "10",
                                         "0.02"],
                     checkpoint_dir="ckpt", resume_template="--resume {checkpoint}",
                     grace_seconds=10)
    local_log = Path(session.session_dir) / "train.log"
    run(wait_status(service, session.id,
                    lambda s: "step 30 loss" in local_log.read_text()))
    stopped = run(service.stop(session.id))
    assert stopped.status is Status.STOPPED, stopped.detail
    remote = ssm.path(instance, "sessions", session.id)
    assert "got SIGTERM at step" in (remote / "train.log").read_text()
    ckpts = sorted(ssm.path(instance, "ckpt").glob("step_*.pt"))
    newest = ckpts[-1]
    resumed = run(service.resume(session.id))
    assert resumed.attempt == 2
    state = run(wait_status(service, session.id,
                            lambda s: f"resumed from step {pickle.loads(newest.read_bytes())}"
                            in local_log.read_text()))
    assert state.attempts[1].resumed_from == str(newest)
    killed = run(service.kill(session.id))
    final = run(wait_status(service, killed.id, lambda s: not s.status.active, timeout=30))
    assert final.status is Status.STOPPED
    assert final.attempts[-1].signal == 9 or final.signal == 9
    service.close()


def test_a_log_beyond_the_inline_limit_arrives_complete(ssm, ec2, trainctl_home):  # noqa: F811
    client, script = ec2
    instance = new_instance(client)
    service = Service()
    # ~160 KB of poorly compressible lines, printed at once
    code = ("import hashlib\nfor i in range(2000):\n"
            " print(f'line {i:05d} ' + hashlib.sha256(str(i).encode()).hexdigest())")
    session = launch(service, instance, [sys.executable, "-u", "-c", code])
    run(wait_status(service, session.id, lambda s: not s.status.active))
    run(service.get(session.id))
    lines = [line for line in (Path(session.session_dir) / "train.log").read_text().splitlines()
             if line.startswith("line ")]
    assert lines == [f"line {i:05d} " + hashlib.sha256(str(i).encode()).hexdigest()
                     for i in range(2000)]
    service.close()


def test_transport_reads_and_runs_beyond_the_inline_limit(ssm, ec2):  # noqa: F811
    client, _ = ec2
    instance = new_instance(client)
    transport = SSMTransport(instance, cwd=ssm.workdir)
    blob = os.urandom(100_000)  # incompressible: many chunks
    run(transport.put(blob, f"{ssm.workdir}/blob.bin"))
    assert ssm.path(instance, "blob.bin").read_bytes() == blob
    assert run(transport.size(f"{ssm.workdir}/blob.bin")) == len(blob)
    sent = transport.commands_sent
    assert run(transport.read_range(f"{ssm.workdir}/blob.bin", 10, 90_000)) == blob[10:90_010]
    assert transport.commands_sent - sent >= 90_000 // RAW_CHUNK
    assert run(transport.read_range(f"{ssm.workdir}/blob.bin", 200_000, 10)) == b""
    result = run(transport.run(["head", "-c", "60000", f"{ssm.workdir}/blob.bin"]))
    assert result.stdout == blob[:60_000]
    failed = run(transport.run("echo oops >&2; exit 3", check=False))
    assert failed.returncode == 3 and failed.stderr == b"oops\n"
    assert run(transport.size(f"{ssm.workdir}/missing")) is None


def test_a_stopped_instance_is_unreachable_with_one_line(ssm, ec2, trainctl_home):  # noqa: F811
    client, script = ec2
    instance = new_instance(client)
    service = Service()
    session = launch(service, instance, [sys.executable, "-u", str(script), "100000", "1000",
                                         "0.05"])
    client.stop_instances(InstanceIds=[instance])
    down = run(wait_status(service, session.id, lambda s: s.status is Status.UNREACHABLE))
    assert down.detail.startswith(f"aws ssm: {instance} is not reachable through SSM "
                                  "(instance is stopped")
    assert "\n" not in down.detail
    service.close()


def test_an_instance_that_never_registered(ssm, ec2):  # noqa: F811
    client, _ = ec2
    instance = new_instance(client)
    ssm.never_register.add(instance)
    with pytest.raises(SSMUnreachable) as caught:
        run(SSMTransport(instance, cwd=ssm.workdir).run(["true"]))
    assert str(caught.value).startswith(f"aws ssm: {instance} is not reachable through SSM (")


# -- spot interruption and auto-resume ----------------------------------------------------------


class IMDS:
    """IMDSv2 on 127.0.0.1: a token, then spot/instance-action once `notice` is set."""

    def __init__(self):
        self.notice = False
        self.token_requests = 0
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                imds.token_requests += 1
                self._send(200, b"token-123")

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") != "token-123":
                    return self._send(401, b"")
                if self.path.endswith("/spot/instance-action") and imds.notice:
                    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
                    return self._send(200, json.dumps({"action": "terminate",
                                                       "time": when}).encode())
                self._send(404, b"")

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("auto", [True, False], ids=["auto_resume", "trainctl_resume"])
def test_spot_interruption_resumes_on_a_new_instance_from_s3(  # noqa: F811
        ssm, ec2, trainctl_home, tmp_path, monkeypatch, auto):  # noqa: F811
    from trainctl_tui.backends.aws import provider as aws_sessions

    client, script = ec2
    imds = IMDS()
    # Also in the detached `trainctl _recover` that auto-resume starts.
    patch_everywhere(monkeypatch, aws_sessions, "SPOT_NOTICE_URL", imds.url)
    patch_everywhere(monkeypatch, aws_sessions, "SPOT_POLL_SECONDS", 0.3)
    aws_cli = Path(sys.executable).parent / "aws"  # not the slow pyenv shim
    if aws_cli.exists():
        patch_everywhere(monkeypatch, aws_sessions, "AWS_CLI", str(aws_cli))
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="ckpts")
    ami = client.describe_images()["Images"][0]["ImageId"]
    (tmp_path / "config.toml").write_text(
        f"[aws]\nregion = \"us-east-1\"\nauto_resume = {str(auto).lower()}\nmax_resumes = 2\n\n"
        f"[aws.templates.default]\nworkdir = \"{ssm.workdir}\"\npython = \"{sys.executable}\"\n"
        f"instance_type = \"t3.micro\"\nami = \"{ami}\"\nspot = true\n"
        f"s3_prefix = \"s3://ckpts/runs\"\n")
    first = new_instance(client, InstanceMarketOptions={"MarketType": "spot"})
    service = Service()
    session = launch(service, first, [sys.executable, "-u", str(script), "100000", "50", "0.02"],
                     checkpoint_dir="ckpt", resume_template="--resume {checkpoint}",
                     grace_seconds=10, env={"HF_TOKEN": SECRET})
    spec = json.loads(ssm.path(first, "sessions", session.id, "spec.json").read_text())
    assert spec["spot_notice_url"] == imds.url
    assert spec["s3_checkpoint_uri"] == f"s3://ckpts/runs/{session.id}/checkpoints/"
    local_log = Path(session.session_dir) / "train.log"
    run(wait_status(service, session.id, lambda s: "step 60 loss" in local_log.read_text()))
    imds.notice = True  # AWS says: this instance goes in two minutes
    status_file = ssm.path(first, "sessions", session.id, "status.json")
    deadline = time.monotonic() + 120
    while json.loads(status_file.read_text()).get("state") != "interrupted":
        assert time.monotonic() < deadline, status_file.read_text()
        time.sleep(0.3)
    imds.notice = False  # the replacement gets no notice
    folder = Path(session.session_dir)
    if auto:  # the refresh that notices returns at once; a detached process resumes
        create = ssm.hold("RunInstances")
        noticed = run(wait_status(service, session.id,
                                  lambda s: s.status is Status.INTERRUPTED))
        assert create.arrived.wait(60)  # the recovery is creating the replacement, and:
        recovering = recovery.running(folder)
        assert noticed.host == first and noticed.detail.endswith(
            f"; resuming on a new instance (recover pid {recovering['pid']}, log "
            f"{folder / 'recover.log'})")
        listed = run_cli("sessions", "--json")  # a listing does not wait for it
        assert listed.returncode == 0, listed.stderr
        row = next(r for r in json.loads(listed.stdout)["sessions"] if r["id"] == session.id)
        assert (row["status"], row["detail"]) == ("interrupted", noticed.detail)
        assert recovery.running(folder) == recovering
        create.open()
    else:  # it stays interrupted until the user resumes it
        interrupted = run(wait_status(service, session.id,
                                      lambda s: s.status is Status.INTERRUPTED))
        assert interrupted.host == first
        run(service.resume(session.id))
    resumed = run(wait_status(service, session.id,
                              lambda s: s.host != first and s.status is Status.RUNNING,
                              timeout=120))
    second = resumed.host
    if auto:
        wait_recovery_done(folder)
        text = (folder / "recover.log").read_text()
        assert f"resuming (recover pid {recovering['pid']})" in text
        assert f"creating a spot instance to replace {first} (t3.micro)" in text
        assert f"instance {second} runs; starting the session there" in text
        assert f"session {session.id} is " in text.splitlines()[-1]
        assert not any(SECRET in line for line in text.splitlines())
    assert resumed.provider == f"aws:{second}"
    log = run(wait_status(service, session.id,
                          lambda s: "resumed from step" in local_log.read_text()))
    assert log.attempts[0].reason.startswith(f"spot interruption ({first}")
    # the runner on the new instance fetched the newest checkpoint that reached S3
    keys = [o["Key"] for o in boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket="ckpts", Prefix=f"runs/{session.id}/checkpoints/")["Contents"]]
    newest = sorted(k.rsplit("/", 1)[-1] for k in keys if k.endswith(".pt"))[-1]
    resumed_from = Path(log.attempts[-1].resumed_from)
    assert resumed_from.name == newest
    assert str(resumed_from).startswith(str(ssm.root(second)))
    step = int(newest.split("_")[1].split(".")[0])
    assert f"resumed from step {step}" in local_log.read_text()
    assert (json.loads((Path(session.session_dir) / "interruptions.json").read_text())[0]
            ["instance"] == first)
    tags = client.describe_instances(InstanceIds=[second])["Reservations"][0]["Instances"][0]
    assert {"Key": "trainctl:session", "Value": session.id} in tags["Tags"]
    assert not any(SECRET in text for text in ssm.commands)
    run(service.stop(session.id, force=True))
    service.close()
    imds.server.shutdown()
