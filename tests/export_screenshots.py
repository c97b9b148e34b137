"""Export the README's screenshots from the app itself, on a live demo run.

    TRAINCTL_HOME=$(mktemp -d) python tests/export_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TRAINCTL_HOME", tempfile.mkdtemp(prefix="trainctl-shots-"))
os.environ.setdefault("TRAINCTL_CONFIG", os.path.join(os.environ["TRAINCTL_HOME"], "none.toml"))

from uihelpers import launch_command, launch_demo, wait_until  # noqa: E402

from trainctl_tui.ui.app import TrainctlApp  # noqa: E402
from trainctl_tui.ui.screens.session import SessionScreen  # noqa: E402
from trainctl_tui.ui.widgets.plot import PlotView  # noqa: E402

OUT = ROOT / "screenshots"


async def shoot(size: tuple[int, int], suffix: str) -> None:
    app = TrainctlApp(refresh_seconds=0.5)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.query("DataTable")
                         and app.screen.query_one("DataTable").row_count >= 3)
        await pilot.pause(2.0)
        app.save_screenshot(str(OUT / f"sessions{suffix}.svg"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
        plot = app.screen.query_one(PlotView)
        await wait_until(pilot, lambda: plot._series and len(plot._series[0][1] or ()) > 20)
        await pilot.pause(1.0)
        app.save_screenshot(str(OUT / f"session{suffix}.svg"))
        await pilot.press("c")
        await pilot.pause(1.5)
        app.save_screenshot(str(OUT / f"checkpoints{suffix}.svg"))
        await pilot.press("escape", "escape", "n")
        await pilot.pause(0.5)
        app.save_screenshot(str(OUT / f"launch{suffix}.svg"))


def launch_lr_sweep() -> None:
    """Two more demo runs at other learning rates, for the compare screen."""
    from trainctl_tui.app.service import LaunchRequest, Service, demo_script_path

    service = Service()
    for name, lr in (("demo-lr-0.005", "0.005"), ("demo-lr-0.08", "0.08")):
        command = [sys.executable, "-u", str(demo_script_path()), "--steps", "400",
                   "--step-time", "0.01", "--lr", lr, "--ckpt-every", "1000"]
        asyncio.run(service.launch(LaunchRequest(command=command, name=name)))
    service.close()


async def shoot_compare(size: tuple[int, int], suffix: str) -> None:
    """The three demo runs marked (space) and compared (C), smoothed at 0.9 (S)."""
    from trainctl_tui.ui.screens.compare_screen import CompareScreen

    app = TrainctlApp(refresh_seconds=30)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.query("DataTable")
                         and app.screen.query_one("DataTable").row_count >= 5)
        screen = app.screen
        table = screen.query_one("DataTable")
        order = [key.value for key in table.rows]
        for row in screen.rows:
            if row.session.name.startswith("demo"):
                table.move_cursor(row=order.index(row.session.id), animate=False)
                await pilot.press("space")
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen)
                         and len(app.screen.runs) == 3)
        compare = app.screen
        await wait_until(pilot, lambda: all(len(run.monitor.shown.series.get("loss") or ())
                                            > 30 for run in compare.runs))
        while compare.query_one(PlotView).smoothing != 0.9:  # kept from the last run
            await pilot.press("S")
        await pilot.pause(1.0)
        app.save_screenshot(str(OUT / f"compare{suffix}.svg"))


def cloud_machines() -> None:
    """Two EC2 instances (moto's server) and two RunPod pods (the tests' GraphQL server), as
    the Instances screen shows them; the servers stay up until the process ends."""
    import boto3
    from moto.server import ThreadedMotoServer
    from moto_aws import free_port
    from runpod_server import API_KEY, RunPodServer

    from trainctl_tui.backends.runpod import cloud as rp
    from trainctl_tui.core.machines import CreateRequest

    port = free_port()
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    pods = RunPodServer().__enter__()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="x",
                      AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1",
                      RUNPOD_API_BASE_URL=pods.url, RUNPOD_API_KEY=API_KEY)
    Path(os.environ["TRAINCTL_CONFIG"]).write_text(
        '[aws]\nregion = "us-east-1"\n'
        'prices = { "g5.xlarge" = 1.006, "g6e.xlarge" = 1.861 }\n')
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for name, kind, market in (("llama-lora", "g5.xlarge", {"MarketType": "spot"}),
                               ("eval-sweep", "g6e.xlarge", None)):
        ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType=kind,
            **({"InstanceMarketOptions": market} if market else {}),
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "trainctl:managed", "Value": "true"}, {"Key": "Name", "Value": name}]}])
    rp.POLL_SECONDS = 0.05
    cloud = rp.RunPodCloud()
    for name, gpu, spot in (("gpt2-ablation", "NVIDIA A40", True),
                            ("sdxl-finetune", "NVIDIA GeForce RTX 4090", False)):
        asyncio.run(cloud.create_instance(CreateRequest(provider="runpod", type=gpu, spot=spot,
                                                        name=name)))


def slurm_cluster() -> None:
    """A real Slurm whose nodes have GPUs (tests/slurm_gres_cluster.py), two jobs running
    and one waiting for GPUs, as [slurm.clusters.hpc]; it stops when the process ends. Left
    out where Slurm is not installed or we are not root."""
    import atexit
    import shutil

    from slurm_cluster import find_program, find_programs
    from slurm_gres_cluster import GresCluster

    if os.geteuid() != 0 or not all(map(find_program, ("slurmctld", "slurmd", "munged"))):
        print("no Slurm here (or not root): the Instances screenshots show no cluster")
        return
    root = Path(tempfile.mkdtemp(prefix="trainctl-shots-slurm-"))
    cluster = GresCluster(root, find_programs())
    cluster.start()
    atexit.register(lambda: (cluster.stop(), shutil.rmtree(root, ignore_errors=True)))
    os.environ["SLURM_CONF"] = str(cluster.conf_path)
    sleep = cluster.write_script("sleep.sh", "sleep 600\n")
    jobs = [cluster.sbatch(sleep, "-c", "1", "-J", name, *options) for name, options in (
        ("llama-8b-sft", ("-p", "debug", "--gres=gpu:a100:3")),
        ("eval-mmlu", ("-p", "pair", "--nodelist=node2", "--gres=gpu:v100:1")))]
    for job in jobs:
        cluster.wait_state(job, {"RUNNING"})
    waiting = cluster.sbatch(sleep, "-c", "1", "-J", "llama-70b", "-p", "debug",
                             "--gres=gpu:a100:4")
    cluster._wait_for(lambda: cluster.job_state(waiting) == ("PENDING", "Resources"), 30,
                      "llama-70b does not wait for Resources")
    with open(os.environ["TRAINCTL_CONFIG"], "a") as config:
        config.write(f'\n[slurm.clusters.hpc]\nlogin = "local"\nworkdir = "{root}/shared"\n'
                     'partition = "debug"\n')


async def shoot_instances(size: tuple[int, int], suffix: str) -> None:
    from trainctl_tui.ui.screens.instances import InstancesScreen

    app = TrainctlApp(refresh_seconds=30)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.query("DataTable"))
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, InstancesScreen)
                         and app.screen.probes >= 1, timeout=90)
        await pilot.pause(0.5)
        app.save_screenshot(str(OUT / f"instances{suffix}.svg"))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    os.chdir(os.environ["TRAINCTL_HOME"])  # the demo's checkpoints go there
    launch_command([sys.executable, "-c", "print('step 1 loss 2.3'); raise SystemExit(1)"],
                   "bert-base-sweep")
    launch_command([sys.executable, "-c", "print('epoch 1 step 100 loss=0.91')"], "mnist-cnn")
    launch_demo(steps=3000, step_time=0.01, name="demo")
    asyncio.run(shoot((120, 35), ""))
    asyncio.run(shoot((80, 24), "-80x24"))
    from trainctl_tui.app.service import Service

    asyncio.run(Service().stop("demo", force=True, wait=True))
    launch_lr_sweep()
    time.sleep(8)  # 400 steps each
    asyncio.run(shoot_compare((120, 35), ""))
    asyncio.run(shoot_compare((80, 24), "-80x24"))
    cloud_machines()
    slurm_cluster()
    asyncio.run(shoot_instances((120, 35), ""))
    asyncio.run(shoot_instances((80, 24), "-80x24"))
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
