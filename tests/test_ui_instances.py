"""The Instances screen (`i`): SSH hosts probed for real against a local sshd, a refused
port, the probe cadence, the shell key and the snapshot at 80x24."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import types

import pytest
from sshd import free_port, sshd_server  # noqa: F401 - the fixture
from textual.command import CommandPalette
from textual.screen import Screen
from textual.widgets import DataTable, Static
from uihelpers import FIXTURES, notifications, wait_until

from trainctl_tui.app.service import Service
from trainctl_tui.backends.ssh.provider import HostInfo
from trainctl_tui.ui.app import TrainctlApp
from trainctl_tui.ui.screens import instances
from trainctl_tui.ui.screens.instances import InstancesScreen, cells, gpu_summary
from trainctl_tui.ui.screens.session import SessionScreen
from trainctl_tui.ui.screens.sessions import SessionsScreen


def run(scenario):
    asyncio.run(scenario())


def write_hosts(tmp_path, **hosts: dict) -> None:
    lines = []
    for name, entry in hosts.items():
        lines.append(f"[ssh.hosts.{name}]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in entry.items()]
    (tmp_path / "config.toml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def quiet_ssh_config(tmp_path, monkeypatch):
    """No ~/.ssh/config of whoever runs the tests: error lines stay the same everywhere."""
    path = tmp_path / "ssh_config"
    path.write_text("")
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(path))
    return path


def text(screen, selector: str) -> str:
    rendered = screen.query_one(selector, Static).render()
    return str(getattr(rendered, "plain", rendered))


def cell(screen, key: str, column: str) -> str:
    value = screen.query_one(DataTable).get_cell(key, column)
    return str(getattr(value, "plain", value))


def row_keys(screen) -> list[str]:
    return [key.value for key in screen.query_one(DataTable).rows]


async def open_instances(pilot) -> InstancesScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, (SessionsScreen, SessionScreen)))
    await pilot.press("i")
    return await wait_until(pilot, lambda: isinstance(pilot.app.screen, InstancesScreen)
                            and pilot.app.screen, what="instances screen")


def test_hosts_are_probed_for_real_and_a_shell_opens(sshd_server, tmp_path,  # noqa: F811
                                                     monkeypatch):
    write_hosts(tmp_path, box={"host": sshd_server.alias},
                dead={"host": "127.0.0.1", "port": free_port()})
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    shells, logins = [], []

    def run_shell(argv):
        # What the TUI hands the terminal to; run it for real, with a command instead of a tty.
        shells.append(argv)
        logins.append(subprocess.run([*argv, "true"], stdin=subprocess.DEVNULL,
                                     capture_output=True, timeout=30))
        return logins[-1]

    monkeypatch.setattr(instances, "subprocess", types.SimpleNamespace(run=run_shell))

    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        app.suspend = contextlib.nullcontext  # headless: nothing to hand over
        async with app.run_test(size=(120, 35)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: screen.probes >= 1, what="first probe")
            assert row_keys(screen) == ["ssh:box", "ssh:dead"]
            assert cell(screen, "ssh:box", "state").startswith("up ")
            assert cell(screen, "ssh:box", "state").endswith("ms")
            float(cell(screen, "ssh:box", "load"))
            assert cell(screen, "ssh:box", "market") == cell(screen, "ssh:box", "spent") == "-"
            gpus = cell(screen, "ssh:box", "gpus")
            assert gpus == "none" or "x " in gpus  # nvidia-smi where present
            assert cell(screen, "ssh:box", "cost") == "-"
            assert cell(screen, "ssh:dead", "state") == "unreachable"
            assert "2 hosts · 1 up · 1 unreachable" in text(screen, "#status-line")
            assert "load " in text(screen, "#instance-detail")  # box is selected

            await pilot.press("down")
            detail = await wait_until(pilot, lambda: "ssh dead:" in (t := text(
                screen, "#instance-detail")) and t, what="dead's detail line")
            assert "Connection refused" in detail

            probes = screen.probes
            await pilot.press("r")
            await wait_until(pilot, lambda: screen.probes > probes, what="refresh")
            assert row_keys(screen) == ["ssh:box", "ssh:dead"]

            probes = screen.probes
            await pilot.press("up", "s")
            await wait_until(pilot, lambda: shells, what="the shell")
            argv = shells[0]
            assert argv[0] == "ssh" and argv[-2:] == ["--", sshd_server.alias]
            assert not any("BatchMode" in word for word in argv)
            await wait_until(pilot, lambda: screen.probes > probes, what="probe after shell")
            assert logins[0].returncode == 0, logins[0].stderr  # the argv logs in for real

            await pilot.press("down", "enter")
            await wait_until(pilot, lambda: len(shells) == 2, what="shell on enter")
            assert shells[1][-1] == "127.0.0.1" and "-p" in shells[1]
            await wait_until(pilot, lambda: "ssh dead: could not connect" in
                             " ".join(notifications(app)), what="exit 255 reported")

            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))

    run(scenario)


def test_probes_never_overlap_and_pause_while_hidden(quiet_ssh_config, tmp_path, monkeypatch):
    write_hosts(tmp_path, dead={"host": "127.0.0.1", "port": free_port()})
    monkeypatch.setattr(InstancesScreen, "PROBE_SECONDS", 0.3)
    gate = threading.Event()
    active, peak, calls = [], [0], [0]
    original = Service.hosts

    async def hosts(self):
        calls[0] += 1
        active.append(1)
        peak[0] = max(peak[0], len(active))
        try:
            await asyncio.to_thread(gate.wait, 30)
            return await original(self)
        finally:
            active.pop()

    monkeypatch.setattr(Service, "hosts", hosts)

    async def scenario():
        app = TrainctlApp(refresh_seconds=30)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: "probing 1 host…" in text(screen, "#status-line"),
                             what="probing line")
            assert cell(screen, "ssh:dead", "state") == "probing…"
            await pilot.press("r")  # refused while the probe is out
            await pilot.pause(0.3)
            assert calls[0] == 1 and "still probing" in notifications(app)[-1]
            gate.set()
            await wait_until(pilot, lambda: screen.probes >= 3, what="probes every 0.3s")
            assert cell(screen, "ssh:dead", "state") == "unreachable"

            # A modal (help) leaves the table in view; a full screen on top hides it.
            await app.push_screen(Screen())
            hidden_at = screen.probes
            await pilot.pause(1.2)  # four intervals: at most the probe in flight finishes
            assert screen.probes <= hidden_at + 1
            app.pop_screen()
            await wait_until(pilot, lambda: screen.probes >= hidden_at + 2,
                             what="probing again once shown")
            assert peak[0] == 1

    run(scenario)


def test_no_hosts_hint_from_the_session_screen_and_the_palette(quiet_ssh_config):
    async def scenario():
        app = TrainctlApp(refresh_seconds=30, watch_path=FIXTURES / "demo.log")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_instances(pilot)
            await wait_until(pilot, lambda: screen.probes >= 1, what="probe")
            hint = text(screen, "#empty-hint")
            assert screen.query_one("#empty-hint").display
            assert "[ssh.hosts.NAME]" in hint and "trainctl config init" in hint
            assert text(screen, "#status-line") == "no hosts or clouds configured"
            await pilot.press("s")
            assert "no machine selected" in notifications(app)[-1]
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*"instances")
            await wait_until(pilot, lambda: "Instances" in str(
                app.screen.query_one("CommandList").get_option_at_index(0).prompt),
                what="palette hit")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, InstancesScreen))

    run(scenario)


def test_row_cells_summarise_gpus_and_sessions():
    gpus = [{"index": i, "name": "NVIDIA A100-SXM4-80GB", "memory_used_mib": 6195,
             "memory_total_mib": 81920, "utilization": util} for i, util in enumerate((90, 96))]
    info = HostInfo("gpu", "me@gpu-box", reachable=True, rtt_ms=12.4, load=[3.5, 2, 1],
                    cpus=32, gpus=gpus, sessions=["ab12cd", "ef34gh"])
    row = cells(instances.machine_from_host(info))
    assert row["gpus"] == "2x A100 12.1/160G 93%"
    assert str(row["state"]) == "up 12ms" and row["load"] == "3.50" and row["market"] == "-"
    assert row["sessions"] == "ab12cd, ef34gh" and row["cost"] == "-"
    assert cells(instances.machine_from_host(info), narrow=True)["sessions"] == "2"
    assert gpu_summary([{"name": "NVIDIA GeForce RTX 4090", "memory_used_mib": 0,
                         "memory_total_mib": 24564, "utilization": 0}]) == \
        "1x RTX 4090 0.0/24G 0%"
    down = cells(instances.machine_from_host(HostInfo("x", "x", error="ssh x: refused")))
    assert str(down["state"]) == "unreachable" and down["gpus"] == "-" and down["load"] == "-"


def test_instances_snapshot(quiet_ssh_config, tmp_path, snap_compare):
    # Port 1 is never listening: the refusal (and so the screen) is the same on every run.
    write_hosts(tmp_path, dead={"host": "127.0.0.1", "port": 1, "user": "me"})

    async def probed(pilot):
        screen = await open_instances(pilot)
        await wait_until(pilot, lambda: screen.probes >= 1, what="probe")
        await pilot.pause(0.3)

    assert snap_compare(TrainctlApp(refresh_seconds=30), terminal_size=(80, 24),
                        run_before=probed)


def test_launch_form_shows_the_selected_hosts_settings(trainctl_home, tmp_path):
    import asyncio

    from textual.widgets import Select, Static
    from uihelpers import wait_until

    from trainctl_tui.ui.app import TrainctlApp
    from trainctl_tui.ui.screens.launch import LaunchScreen

    (tmp_path / "config.toml").write_text(
        '[ssh.hosts.gpu]\nhost = "gpu-box.lan"\nuser = "me"\nport = 2222\n')

    async def scenario():
        app = TrainctlApp(refresh_seconds=5)
        async with app.run_test(size=(100, 34)) as pilot:
            await pilot.press("n")
            await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            form = app.screen
            form.query_one(Select).value = "ssh:gpu"
            await pilot.pause(0.2)
            info = str(form.query_one("#provider-info", Static).render())
            assert "me@gpu-box.lan:2222" in info and "workdir ~/.trainctl" in info
            assert form.query_one("#f-cwd").value == ""  # the host's login dir, not ours

    asyncio.run(scenario())
