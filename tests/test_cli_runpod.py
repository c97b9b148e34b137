"""The cloud verbs on RunPod as a user types them (`trainctl gpus`, `instance create|stop|start|
terminate`, `instances`), each a real `trainctl` process using the runpod SDK against the local
GraphQL server that validates every document; and terminate's confirmation."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_cli
from runpod_server import runpod_server  # noqa: F401 - the fixture

from trainctl_tui.cli import main as cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No MCP client files or AWS profiles of whoever runs the tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def create_spot(server, *extra: str) -> str:
    result = run_cli("instance", "create", "--provider", "runpod", "--gpu", "NVIDIA A40",
                     "--spot", "--name", "bert", *extra)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("created runpod pod") and "bert: A40, spot, running" in line
    return line.split()[2]


def test_gpus_by_price_with_both_markets(home, runpod_server):  # noqa: F811
    result = run_cli("gpus", "--provider", "runpod", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["prices"]
    a40 = {(r["lifecycle"], r["where"]): r["price_per_hour"] for r in rows
           if r["type"] == "NVIDIA A40"}
    assert a40[("on-demand", "secure")] == 0.44 and a40[("spot", "community")] == 0.2
    table = run_cli("gpus", "--provider", "runpod").stdout
    prices = [float(match) for match in re.findall(r"\$(\d+\.\d+)", table)]
    assert len(prices) == 9
    assert prices == sorted(prices)  # cheapest first
    assert "H100" in table  # listed although it has no spot market


def test_spot_pod_lifecycle_from_the_cli(home, runpod_server):  # noqa: F811
    pod_id = create_spot(runpod_server, "--disk-gb", "55", "--container-disk-gb", "33")
    pod = runpod_server.state.pods[pod_id]
    assert pod["podType"] == "INTERRUPTABLE" and pod["bid"] == 0.2  # the current minimum
    assert pod["volumeInGb"] == 55 and pod["containerDiskInGb"] == 33
    assert "22/tcp" in pod["ports"]

    [row] = json.loads(run_cli("instances", "--json").stdout)["instances"]
    assert row["id"] == pod_id and row["lifecycle"] == "spot" and row["state"] == "running"
    assert row["price_per_hour"] == pytest.approx(0.2)

    assert run_cli("instance", "stop", pod_id).returncode == 0
    assert pod["desiredStatus"] == "EXITED"
    started = run_cli("instance", "start", pod_id)
    assert started.returncode == 0, started.stderr
    assert runpod_server.state.count("podBidResume") == 1  # a spot pod bids again

    refused = run_cli("instance", "terminate", pod_id)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"not terminating runpod {pod_id} (bert): A40")
    assert refused.stderr.rstrip().endswith("without confirmation: pass --yes")
    assert pod_id in runpod_server.state.pods

    done = run_cli("instance", "terminate", pod_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert pod_id not in runpod_server.state.pods


def test_an_explicit_bid_below_the_minimum_is_runpods_own_message(home, runpod_server):  # noqa: F811
    result = run_cli("instance", "create", "--provider", "runpod", "--gpu", "NVIDIA A40",
                     "--spot", "--bid", "0.05")
    assert result.returncode == 2
    assert "below the minimum bid price (0.2)" in result.stderr
    assert runpod_server.state.pods == {}


@pytest.mark.parametrize("answer, kept", [("n", True), ("y", False), ("", True)])
def test_terminate_asks_and_names_the_pod(home, runpod_server, monkeypatch, capsys,  # noqa: F811
                                          answer, kept):
    pod_id = create_spot(runpod_server)
    asked = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)
    code = cli.main(["instance", "terminate", pod_id])
    assert asked and asked[0].startswith(f"Terminate runpod {pod_id} (bert): A40, "
                                         "running")
    assert "Its disk is deleted" in asked[0]
    assert (pod_id in runpod_server.state.pods) is kept
    assert code == (2 if kept else 0)
    if kept:
        assert capsys.readouterr().err.strip() == f"not terminated: {pod_id}"
