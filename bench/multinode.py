"""Issue 16's figure: the time from `trainctl launch --provider ssh:GROUP --nodes 3` to every
rank training, on three SSH "hosts" (the test sshd on 127.0.0.1, a workdir each, as the tests
use them). Two commands: a plain python trainer (the runners' start over ssh alone), and
torchrun with a c10d rendezvous running a tiny DDP training on CPU (gloo; needs torch),
timed to the first step logged by every rank.

    python bench/multinode.py [--runs 3] [--nodes 3]

Prints figures (median and each run) and the launch command's own share, after the same for
one host (`ssh:h0`, no nodes) as the baseline; asserts nothing.

Then healing: `--nodes 2` on a group of three hosts (one spare), node 1's runner and training
SIGKILLed once every rank trains, with no terminal refreshing (the node watcher alone heals):
the time from the kill to the replacement's runner started on the spare, to its training
logging a step (it joined), and, for torchrun, to the head logging a step again (the run goes
on: its agent restarted its worker into a new rendezvous with the replacement, from the
newest checkpoint). Its ratio to a launch's time to every rank training is printed too.

With --aws, the same on EC2 as the tests see it (moto's server on 127.0.0.1, the tests'
placement-group and SSM doubles: a sandbox folder per instance): `--nodes 2 --provider aws`,
node 1's instance terminated through the EC2 API once every rank trains, with no terminal
refreshing: the time to the replacement instance's runner running rank 1, and to its
training logging a step. A real instance's boot and SSM registration (a minute or two) come
on top: this is trainctl's own share (noticing, the EC2 and SSM calls, the runner's start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sshd import SshServer, find_sshd  # noqa: E402 - the tests' sshd

TRAINER = """\
import os, sys, time
print("step 0 loss 1.0 rank", os.environ["TRAINCTL_NODE_RANK"], flush=True)
time.sleep(1)
"""
# A step every 0.1 s until stopped: the healing runs.
SLOW_TRAINER = """\
import time
for i in range(10 ** 6):
    print(f"step {i} loss 1.0", flush=True)
    time.sleep(0.1)
"""


def config(root: Path, server: SshServer, hosts: list[str]) -> Path:
    lines = []
    for name in hosts:
        lines += [f"[ssh.hosts.{name}]", *(f"{key} = {json.dumps(value)}"
                                          for key, value in server.host_entry().items()),
                  f"workdir = {json.dumps(str(root / f'ws-{name}'))}",
                  f"python = {json.dumps(sys.executable)}", ""]
    lines += ["[ssh.groups.bench]", f"hosts = {json.dumps(hosts)}", ""]
    path = root / "config.toml"
    path.write_text("\n".join(lines))
    return path


def node_logs(root: Path, hosts: list[str], session_id: str) -> list[Path]:
    return [root / f"ws-{host}" / "sessions" / session_id /
            ("train.log" if not rank else f"nodes/{rank}/train.log")
            for rank, host in enumerate(hosts)]


def one_run(root: Path, env: dict, hosts: list[str], command: list[str]) -> tuple[float, float]:
    """(seconds until every rank logged its first step, seconds the launch command took)."""
    start = time.monotonic()
    where = ["ssh:bench", "--nodes", str(len(hosts))] if len(hosts) > 1 else [f"ssh:{hosts[0]}"]
    result = subprocess.run([sys.executable, "-m", "trainctl_tui", "launch", "--provider",
                             *where, "--cwd", str(root), "--", *command],
                            capture_output=True, text=True, env=env, timeout=300)
    launched = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"launch failed: {result.stderr.strip()}")
    session_id = result.stdout.strip().splitlines()[-1]
    logs = node_logs(root, hosts, session_id)
    while not all(log.exists() and "step 0" in log.read_text(errors="replace")
                  for log in logs):
        if time.monotonic() - start > 300:
            raise SystemExit(f"ranks not training after 300 s: {session_id}")
        time.sleep(0.05)
    training = time.monotonic() - start
    subprocess.run([sys.executable, "-m", "trainctl_tui", "stop", session_id, "--force"],
                   capture_output=True, env=env, timeout=120)
    return training, launched


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check, limit: float = 300) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise SystemExit(f"{what}: not after {limit:.0f} s")
        time.sleep(0.05)
    return time.monotonic()


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def heal_run(root: Path, env: dict, hosts: list[str], command: list[str]) -> tuple:
    """(kill -> replacement started, kill -> it logged a step, kill -> head logged a step
    again or None) for `--nodes 2` on `hosts` (three: one spare)."""
    result = subprocess.run([sys.executable, "-m", "trainctl_tui", "launch", "--provider",
                             "ssh:bench", "--nodes", "2", "--cwd", str(root), "--", *command],
                            capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"launch failed: {result.stderr.strip()}")
    session_id = result.stdout.strip().splitlines()[-1]
    head, node = node_logs(root, hosts[:2], session_id)
    wait_for("every rank training", lambda: "step 1 " in text(head) and "step 1 " in text(node))
    status = json.loads((node.parent / "status.json").read_text())
    head_before = len(text(head))
    os.kill(status["runner_pid"], 9)
    os.killpg(status["child_pid"], 9)
    killed = time.monotonic()
    spare = root / f"ws-{hosts[2]}" / "sessions" / session_id / "nodes" / "1"
    started = wait_for("replacement started", lambda: (spare / "status.json").exists())
    joined = wait_for("replacement training", lambda: "step " in text(spare / "train.log"))
    again = None
    if "torchrun" in command[0]:
        def head_steps() -> bool:
            after = text(head)[head_before:]
            return "resumed from step" in after and \
                "step " in after.split("resumed from step", 1)[1].split("\n", 1)[-1]
        again = wait_for("head training again", head_steps) - killed
    subprocess.run([sys.executable, "-m", "trainctl_tui", "stop", session_id, "--force"],
                   capture_output=True, env=env, timeout=120)
    return started - killed, joined - killed, again


def aws_heal_runs(root: Path, runs: int) -> list[tuple[float, float]]:
    """(termination -> the replacement's runner running rank 1, -> its training logged a
    step) for each run of `--nodes 2 --provider aws`, against moto and the tests' doubles."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
    from placement_groups import PlacementGroups
    from ssm_double import SSMDouble, kill_sandbox_runners

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    found = []
    try:
        with PlacementGroups(f"http://127.0.0.1:{port}") as groups:
            sandbox = root / "instances"
            sandbox.mkdir()
            ssm = SSMDouble(groups.url, sandbox, "/opt/trainctl-bench")
            ssm.machines_die = True  # a terminated instance takes its runner along
            env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ENDPOINT_URL": ssm.url,
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                   "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE":
                   "/nonexistent", "TRAINCTL_HOME": str(root / "aws-home")}
            ssm.env = env
            ssm.start()
            client = boto3.client("ec2", region_name="us-east-1", endpoint_url=ssm.url,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
            ami = client.describe_images()["Images"][0]["ImageId"]
            config = root / "aws.toml"
            config.write_text(f'[aws]\nregion = "us-east-1"\n[aws.prices]\n"t3.micro" = 0.1\n'
                              f'[aws.templates.default]\nami = "{ami}"\n'
                              f'instance_type = "t3.micro"\nworkdir = "/opt/trainctl-bench"\n'
                              f'python = "{sys.executable}"\n')
            env["TRAINCTL_CONFIG"] = str(config)
            slow = root / "slow.py"
            slow.write_text(SLOW_TRAINER)
            try:
                for _ in range(runs):
                    found.append(aws_heal_run(client, ssm, env, [sys.executable, "-u",
                                                                 str(slow)]))
            finally:
                kill_sandbox_runners(sandbox)
                ssm.stop()
    finally:
        moto.stop()
    return found


def aws_heal_run(client, ssm, env: dict, command: list[str]) -> tuple[float, float]:
    result = subprocess.run([sys.executable, "-m", "trainctl_tui", "launch", "--provider", "aws",
                             "--nodes", "2", "--", *command],
                            capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"launch failed: {result.stderr.strip()}")
    session_id = result.stdout.strip().splitlines()[-1]
    info = json.loads(subprocess.run([sys.executable, "-m", "trainctl_tui", "sessions", "--all",
                                      "--json"], capture_output=True, text=True, env=env,
                                     timeout=60).stdout)
    [session] = [s for s in info["sessions"] if s["id"] == session_id]
    head, lost = session["provider"].removeprefix("aws:").split(",")

    def node_dir(instance: str) -> Path:
        return ssm.path(instance, "sessions", session_id, "nodes", "1")

    wait_for("every rank training", lambda: "step 1 " in text(node_dir(lost) / "train.log"))
    client.terminate_instances(InstanceIds=[lost])
    terminated = time.monotonic()

    def replacement() -> Path | None:
        for res in client.describe_instances()["Reservations"]:
            for raw in res["Instances"]:
                if raw["InstanceId"] not in (head, lost) and \
                        (node_dir(raw["InstanceId"]) / "status.json").exists():
                    return node_dir(raw["InstanceId"])
        return None

    def running() -> bool:
        folder = replacement()
        return folder is not None and '"running"' in text(folder / "status.json")

    started = wait_for("replacement's runner running", running)
    joined = wait_for("replacement training", lambda: "step 1 " in text(
        replacement() / "train.log"))
    subprocess.run([sys.executable, "-m", "trainctl_tui", "stop", session_id, "--force"],
                   capture_output=True, env=env, timeout=120)
    return started - terminated, joined - terminated


def report_heal(name: str, runs: list[tuple], launch_median: float) -> None:
    started = statistics.median(r[0] for r in runs)
    joined = statistics.median(r[1] for r in runs)
    line = (f"{name}: node 1 lost -> replacement started: median {started:.2f} s; -> it "
            f"trains: median {joined:.2f} s ({joined / launch_median:.1f}x a launch's time to "
            f"every rank training)")
    if runs[0][2] is not None:
        again = [r[2] for r in runs]
        line += (f"; -> the head trains again: median {statistics.median(again):.2f} s "
                 f"(runs: {', '.join(f'{t:.2f}' for t in again)})")
    print(line)


def report(name: str, runs: list[tuple[float, float]]) -> float:
    training = [t for t, _ in runs]
    launch = [lo for _, lo in runs]
    print(f"{name}: launch -> every rank training: median {statistics.median(training):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in training)}); the launch command itself: "
          f"median {statistics.median(launch):.2f} s")
    return statistics.median(training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--aws", action="store_true",
                        help="only the EC2 healing figure (moto and the tests' doubles)")
    args = parser.parse_args()
    if args.aws:
        with tempfile.TemporaryDirectory(prefix="trainctl-bench-aws-") as tmp:
            runs = aws_heal_runs(Path(tmp), args.runs)
        started, joined = [r[0] for r in runs], [r[1] for r in runs]
        print(f"healing on EC2 (moto): node 1's instance terminated -> its replacement's "
              f"runner running rank 1: median {statistics.median(started):.2f} s (runs: "
              f"{', '.join(f'{t:.2f}' for t in started)}); -> it trains: median "
              f"{statistics.median(joined):.2f} s")
        return
    sshd = find_sshd()
    if sshd is None:
        raise SystemExit("sshd is not installed (apt-get install openssh-server)")
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-nodes-") as tmp:
        root = Path(tmp)
        (root / "sshd").mkdir()
        server = SshServer(root / "sshd", sshd)
        server.start()
        try:
            hosts = [f"h{n}" for n in range(args.nodes)]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "TRAINCTL_HOME": str(root / "home"),
                   "TRAINCTL_CONFIG": str(config(root, server, hosts)),
                   "TRAINCTL_SSH_CONFIG": str(server.config_path)}
            trainer = root / "train.py"
            trainer.write_text(TRAINER)
            python = [sys.executable, "-u", str(trainer)]
            report("baseline: 1 host, python", [one_run(root, env, hosts[:1], python)
                                                for _ in range(args.runs)])
            launch_python = report(f"{args.nodes} nodes, python",
                                   [one_run(root, env, hosts, python) for _ in range(args.runs)])
            torchrun = Path(sys.executable).with_name("torchrun")
            if torchrun.exists():
                ddp = [str(torchrun), "--nproc-per-node", "1",
                       str(ROOT / "tests" / "fixtures" / "ddp_train.py"), "3"]
                env["OMP_NUM_THREADS"] = "1"
                launch_ddp = report(f"{args.nodes} nodes, torchrun c10d + DDP (gloo)",
                                    [one_run(root, env, hosts, ddp) for _ in range(args.runs)])
            else:
                print("torchrun not installed here: the DDP figures are skipped")
            heal_hosts = hosts[:3] if len(hosts) >= 3 else [f"h{n}" for n in range(3)]
            config(root, server, heal_hosts)  # the group: two nodes and a spare
            slow = root / "slow.py"
            slow.write_text(SLOW_TRAINER)
            report_heal("healing, python", [heal_run(root, env, heal_hosts, [
                sys.executable, "-u", str(slow)]) for _ in range(args.runs)], launch_python)
            if torchrun.exists():
                report_heal("healing, torchrun c10d + DDP (gloo)", [heal_run(
                    root, env, heal_hosts, [
                        str(torchrun), "--nproc-per-node", "1", "--rdzv-endpoint",
                        f"127.0.0.1:{free_port()}",
                        str(ROOT / "tests" / "fixtures" / "ddp_elastic.py"),
                        str(root / f"ckpt-{n}"), "100000"]) for n in range(args.runs)],
                    launch_ddp)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
