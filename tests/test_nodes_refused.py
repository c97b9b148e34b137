"""`--nodes` where a run cannot have several nodes (issue 16): RunPod's pod API makes pods
that cannot reach each other, so several nodes there are refused in one line naming the
places that can, before any pod is made (the runpod SDK against the local GraphQL server);
other backends without nodes keep the generic line."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from runpod_server import runpod_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(120)

RUNPOD_LINE = ("runpod: --nodes {}: RunPod pods cannot reach each other through its pod API; "
               "use ssh:GROUP, aws or slurm:NAME for several nodes")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No MCP client files or AWS profiles of whoever runs the tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("nodes, market", [("2", ()), ("2:4", ("--spot",)), ("3", ())])
def test_several_nodes_on_runpod_are_refused_before_any_pod(home, runpod_server, nodes,  # noqa: F811
                                                            market):
    result = run_cli("launch", "--provider", "runpod", "--gpu", "NVIDIA A40", *market,
                     "--nodes", nodes, "--", "torchrun", "--nproc-per-node", "1", "t.py")
    assert (result.returncode, result.stderr.strip()) == (2, RUNPOD_LINE.format(nodes))
    assert runpod_server.state.pods == {}
    assert runpod_server.state.count("podFindAndDeployOnDemand") == 0
    assert runpod_server.state.count("podRentInterruptable") == 0
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []


def test_one_node_on_runpod_keeps_the_generic_line(home, runpod_server):  # noqa: F811
    """--nodes 1 is not several nodes: RunPod's reason does not apply, the usual line does
    (aws takes --nodes since it creates its nodes: tests/test_aws_nodes.py)."""
    result = run_cli("launch", "--provider", "runpod", "--gpu", "NVIDIA A40", "--nodes", "1",
                     "--", "python", "t.py")
    assert (result.returncode, result.stderr.strip()) == (
        2, "--nodes is for runs on ssh or aws or slurm (--provider ssh:NAME)")
    assert runpod_server.state.pods == {}
    assert json.loads(run_cli("sessions", "--all", "--json").stdout)["sessions"] == []
