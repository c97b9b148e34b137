"""RunPod through the real runpod SDK against a local GraphQL server that validates every
document: key resolution (env, config, MCP client files), prices, creates (escaping proof),
waits, retries, errors, pod actions, container logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from runpod_server import API_KEY, NO_INSTANCES, runpod_server  # noqa: F401 - the fixture

from trainctl_tui.backends.runpod import api as runpod_api
from trainctl_tui.backends.runpod import cloud as rp
from trainctl_tui.backends.runpod.api import (
    RunPodAuthError,
    RunPodError,
    find_api_key,
    gql_string,
    resolve_api_key,
)
from trainctl_tui.config.loader import load_config, render_config
from trainctl_tui.core.machines import CreateRequest

MCP_SERVER = {"command": "npx", "args": ["-y", "@runpod/mcp-server@latest"],
              "env": {"RUNPOD_API_KEY": "rpa_FROMMCP000000000000"}}


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "userhome"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    return home


def write_json(path: Path, data, text: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else json.dumps(data))


# -- the API key ------------------------------------------------------------------------------


def test_key_order_env_then_config_then_mcp(home, tmp_path, monkeypatch):
    claude = home / ".config" / "Claude" / "claude_desktop_config.json"
    write_json(claude, {"mcpServers": {"runpod": MCP_SERVER}})
    assert find_api_key(load_config()) == (
        "rpa_FROMMCP000000000000", f"Claude Desktop MCP config {claude} (server 'runpod')")
    (tmp_path / "config.toml").write_text('[runpod]\napi_key = "rpa_FROMCONFIG00000"\n')
    assert find_api_key(load_config()) == ("rpa_FROMCONFIG00000",
                                           "[runpod] api_key in the trainctl config")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_FROMENV")
    assert find_api_key(load_config()) == ("rpa_FROMENV", "RUNPOD_API_KEY")


@pytest.mark.parametrize("client, where, key", [
    ("Cursor", ".cursor/mcp.json", "mcpServers"),
    ("VS Code", ".config/Code/User/mcp.json", "servers"),
])
def test_mcp_discovery_cursor_and_vscode(home, client, where, key):
    path = home / where
    # VS Code's file is JSON with comments and trailing commas; another server comes first.
    other = '{"command": "gh", "env": {"RUNPOD_API_KEY": "not-this"}}'
    write_json(path, None, text=f'{{ // mcp\n "{key}": {{ "github": {other},\n '
               f'"my-pods": {json.dumps(MCP_SERVER)}, }} }}')
    assert find_api_key(load_config()) == (
        "rpa_FROMMCP000000000000", f"{client} MCP config {path} (server 'my-pods')")


def test_mcp_discovery_vscode_workspace_and_prompt_placeholders(home):
    path = Path.cwd() / ".vscode" / "mcp.json"
    user = home / ".config" / "Code" / "User" / "mcp.json"
    write_json(user, {"servers": {"runpod": {**MCP_SERVER,
                                             "env": {"RUNPOD_API_KEY": "${input:key}"}}}})
    write_json(path, {"servers": {"runpod": MCP_SERVER}})
    assert find_api_key(load_config())[1] == \
        f"VS Code workspace MCP config {path} (server 'runpod')"


@pytest.mark.parametrize("platform, parts", [
    ("darwin", ["Library", "Application Support", "Claude", "claude_desktop_config.json"]),
    ("win32", ["AppData", "Roaming", "Claude", "claude_desktop_config.json"]),
])
def test_claude_desktop_locations_per_platform(home, monkeypatch, platform, parts):
    monkeypatch.setenv("APPDATA", str(home / "AppData" / "Roaming"))
    files = dict(runpod_api.mcp_config_files(platform=platform))
    assert files["Claude Desktop"] == home.joinpath(*parts)
    assert files["VS Code"].parent.parent.name == "Code"


def test_missing_key_says_where_it_looked(home, tmp_path):
    with pytest.raises(RunPodAuthError) as err:
        resolve_api_key(load_config())
    config = home / ".config"
    assert str(err.value) == (
        f"runpod: no API key found (looked in RUNPOD_API_KEY, [runpod] api_key in "
        f"{tmp_path / 'config.toml'}, {config / 'Claude' / 'claude_desktop_config.json'}, "
        f"{home / '.cursor' / 'mcp.json'}, {config / 'Code' / 'User' / 'mcp.json'}, "
        f"{Path.cwd() / '.vscode' / 'mcp.json'}); set RUNPOD_API_KEY or [runpod] api_key")


def test_rejected_key_names_its_source(runpod_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_WRONG")
    with pytest.raises(RunPodAuthError) as err:
        run(rp.RunPodCloud().prices())
    assert str(err.value) == ("runpod: the API key from RUNPOD_API_KEY was rejected "
                              "(HTTP 401); check it, or set RUNPOD_API_KEY")


def test_config_show_names_the_key_source_masked(home, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_ABCDEFGHIJKLwxyz")
    text = render_config(load_config())
    assert "[runpod]\n# runpod api key: ****wxyz from RUNPOD_API_KEY\n" in text
    assert "ABCDEFGHIJKL" not in text


# -- escaping ---------------------------------------------------------------------------------


def test_gql_string_escapes_everything_that_could_end_a_string():
    assert gql_string('a"b\\c\nd}\t\x01') == 'a\\"b\\\\c\\nd}\\t\\u0001'


NASTY = 'x" gpuCount: 8, name: "evil\\\n}) { id } }\x07'


def test_nasty_values_arrive_intact_and_inject_nothing(runpod_server, monkeypatch):  # noqa: F811
    cloud = rp.RunPodCloud()
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(rp, "public_key", lambda _: f"ssh-ed25519 AAAA {NASTY}")
    for spot in (False, True):
        instance = run(cloud.create_instance(CreateRequest(
            provider="runpod", type="NVIDIA A40", name=NASTY, image=f"img{NASTY}",
            session="s1", spot=spot)))
        pod = runpod_server.state.pods[instance.id]
        assert pod["input"]["name"] == NASTY
        assert pod["input"]["imageName"] == f"img{NASTY}"
        assert pod["input"]["gpuCount"] == 1
        env = {e["key"]: e["value"] for e in pod["input"]["env"]}
        assert env == {"TRAINCTL_MANAGED": "1", "TRAINCTL_SESSION": "s1",
                       "PUBLIC_KEY": f"ssh-ed25519 AAAA {NASTY}"}
        assert instance.name == NASTY and instance.state == "running"


# -- prices -----------------------------------------------------------------------------------


def test_prices_from_gpu_types(runpod_server):  # noqa: F811
    prices = run(rp.RunPodCloud().prices())
    cheapest = prices[0]
    assert (cheapest.type, cheapest.lifecycle, cheapest.where, cheapest.price_per_hour,
            cheapest.available, cheapest.detail) == (
        "NVIDIA A40", "spot", "community", 0.2, True, "48 GB, stock High")
    h100 = [p for p in prices if p.type == "NVIDIA H100 80GB HBM3"]
    assert [(p.lifecycle, p.where, p.price_per_hour, p.available) for p in h100] == [
        ("on-demand", "secure", 2.99, False), ("on-demand", "community", None, False),
        ("spot", "secure", None, False), ("spot", "community", None, False)]
    two = run(rp.RunPodCloud().prices("NVIDIA GeForce RTX 4090", gpu_count=2))
    assert {(p.lifecycle, p.where): p.price_per_hour for p in two}[("on-demand", "secure")] \
        == pytest.approx(1.38)


# -- creating ---------------------------------------------------------------------------------


def test_spot_create_bids_the_minimum_and_waits_for_running(runpod_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.01)
    runpod_server.state.ssh_port = 2222
    lines = []
    instance = run(rp.RunPodCloud().create_instance(
        CreateRequest(provider="runpod", type="NVIDIA A40", spot=True, gpu_count=2),
        lines.append))
    pod = runpod_server.state.pods[instance.id]
    assert pod["input"]["bidPerGpu"] == 0.2 and pod["input"]["ports"] == "22/tcp"
    assert (instance.lifecycle, instance.price_per_hour, instance.address, instance.gpus) == (
        "spot", 0.4, "127.0.0.1:2222", "2x A40")
    assert lines[0] == "bidding the current minimum, $0.200/GPU/h"
    assert lines[1] == f"pod {instance.id} created; waiting for it to run"
    assert lines[2].startswith(f"pod {instance.id}: created, waiting for running (")


def test_on_demand_create_with_network_volume(runpod_server, monkeypatch, tmp_path):  # noqa: F811
    (tmp_path / "config.toml").write_text(
        '[runpod]\nnetwork_volume_id = "vol123"\ncloud_type = "community"\n'
        'volume_gb = 7\ncontainer_disk_gb = 9\n')
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.01)
    instance = run(rp.RunPodCloud().create_instance(
        CreateRequest(provider="runpod", type="NVIDIA GeForce RTX 4090")))
    data = runpod_server.state.pods[instance.id]["input"]
    assert (data["networkVolumeId"], data["dataCenterId"], data["cloudType"], data["volumeInGb"],
            data["containerDiskInGb"], data["startSsh"], data["supportPublicIp"]) == (
        "vol123", "EU-RO-1", "COMMUNITY", 7, 9, True, True)
    assert (instance.lifecycle, instance.price_per_hour) == ("on-demand", 0.34)


def test_a_pod_that_never_runs_is_terminated(runpod_server, monkeypatch, tmp_path):  # noqa: F811
    (tmp_path / "config.toml").write_text("[runpod]\nready_timeout = 0.2\n")
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.05)
    runpod_server.state.never_running = True
    with pytest.raises(RunPodError) as err:
        run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod",
                                                           type="NVIDIA A40")))
    assert str(err.value) == ("runpod: pod pod0001x was not running with 22/tcp mapped after "
                              "0s (status CREATED); pod pod0001x was terminated")
    assert runpod_server.state.pods == {}


def test_graphql_error_is_shown_as_is(runpod_server):  # noqa: F811
    with pytest.raises(RunPodError) as err:
        run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod", type="NVIDIA A40",
                                                           spot=True, max_price=0.01)))
    assert str(err.value) == ("runpod: creating a spot pod: Your bid price is below the "
                              "minimum bid price (0.2) for this GPU type.")
    runpod_server.state.fail(f"graphql:{NO_INSTANCES}", "podFindAndDeployOnDemand")
    with pytest.raises(RunPodError) as err:
        run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod",
                                                           type="NVIDIA A40")))
    assert str(err.value) == f"runpod: creating a pod: {NO_INSTANCES}"
    assert runpod_server.state.pods == {}


def test_unknown_gpu_type_is_one_line(runpod_server):  # noqa: F811
    with pytest.raises(RunPodError) as err:
        run(rp.RunPodCloud().create_instance(CreateRequest(provider="runpod", type="TPU")))
    assert str(err.value) == ("runpod: creating a pod: No GPU found with the specified ID, "
                              "run runpod.get_gpus() to get a list of all GPUs")


# -- retries ----------------------------------------------------------------------------------


def test_retries_on_429_500_and_timeouts(runpod_server):  # noqa: F811
    state = runpod_server.state
    state.fail("429", "gpuTypes")
    state.fail("500", "gpuTypes")
    state.fail("timeout", "gpuTypes")
    assert run(rp.RunPodCloud().prices("NVIDIA A40"))
    assert state.count("gpuTypes") == 4


def test_gives_up_after_max_attempts(runpod_server):  # noqa: F811
    runpod_server.state.fail("503", "myself", times=10)
    with pytest.raises(RunPodError) as err:
        run(rp.RunPodCloud().list_instances())
    assert str(err.value) == "runpod: listing pods: HTTP 503 after 5 tries; retry later"
    assert runpod_server.state.count("myself") == 5


def test_a_create_is_retried_on_429_but_not_on_500(runpod_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.01)
    state = runpod_server.state
    state.fail("429", "podRentInterruptable")
    instance = run(rp.RunPodCloud().create_instance(
        CreateRequest(provider="runpod", type="NVIDIA A40", spot=True, max_price=0.3)))
    assert state.count("podRentInterruptable") == 2 and list(state.pods) == [instance.id]
    state.fail("500", "podRentInterruptable")
    with pytest.raises(RunPodError) as err:
        run(rp.RunPodCloud().create_instance(
            CreateRequest(provider="runpod", type="NVIDIA A40", spot=True, max_price=0.3)))
    assert str(err.value) == ("runpod: creating a spot pod: HTTP 500; it may have happened "
                              "anyway (trainctl instances)")
    assert state.count("podRentInterruptable") == 3


# -- pod actions ------------------------------------------------------------------------------


def test_stop_resume_bid_resume_terminate(runpod_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.01)
    cloud = rp.RunPodCloud()
    ondemand = run(cloud.create_instance(CreateRequest(provider="runpod", type="NVIDIA A40")))
    spot = run(cloud.create_instance(CreateRequest(provider="runpod", type="NVIDIA A40",
                                                   spot=True, max_price=0.25)))
    listed = run(cloud.list_instances())
    assert sorted(i.id for i in listed) == sorted([ondemand.id, spot.id])
    assert all(i.managed and i.billing for i in listed)
    for pod in (ondemand, spot):
        stopped = run(cloud.stop_instance(pod.id))
        assert (stopped.state, stopped.address, stopped.uptime()) == ("exited", None, None)
    assert run(cloud.start_instance(ondemand.id)).state == "running"
    assert run(cloud.start_instance(spot.id)).state == "running"
    assert "bidPerGpu: 0.25" in [r["query"] for r in runpod_server.state.requests
                                 if "podBidResume" in r["query"]][0]
    run(cloud.stop_instance(spot.id))
    assert run(cloud.start_instance(spot.id, bid=0.3)).price_per_hour == 0.3
    gone = run(cloud.terminate_instance(ondemand.id))
    assert gone.state == "terminated" and ondemand.id not in runpod_server.state.pods
    with pytest.raises(RunPodError) as err:
        run(cloud.get_instance(ondemand.id))
    assert str(err.value) == f"runpod: no pod '{ondemand.id}' (trainctl instances lists yours)"


def test_container_logs_and_status_fallback(runpod_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(rp, "POLL_SECONDS", 0.01)
    cloud = rp.RunPodCloud()
    pod = run(cloud.create_instance(CreateRequest(provider="runpod", type="NVIDIA A40")))
    runpod_server.state.logs[pod.id] = ["sshd started", "ready"]
    assert run(cloud.container_logs(pod.id)) == ["sshd started", "ready"]
    runpod_server.state.logs[pod.id] = []
    run(cloud.stop_instance(pod.id))
    assert run(cloud.container_logs(pod.id)) == [f"[runpod] pod {pod.id} is exited: "
                                                 "Exited by user"]
