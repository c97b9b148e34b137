"""The walk-through of docs/architecture.md is real: the example backend in
docs/examples/nice_backend (one folder, one line in the table of backends) launches, watches
and stops a run on this machine at a lower CPU priority, and the launch form offers it."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from trainctl_tui.app.service import LaunchRequest, Service
from trainctl_tui.backends import registry
from trainctl_tui.core import backend_table
from trainctl_tui.core.errors import TrainctlError
from trainctl_tui.core.models import Status

SLEEPER = [sys.executable, "-c",
           "import time\nfor i in range(600):\n print('tick', i, flush=True); time.sleep(0.2)"]


@pytest.fixture
def nice_backend(monkeypatch):
    """The example registered the way the docs say: its folder importable, one table line."""
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples"))
    monkeypatch.setitem(backend_table.BACKENDS, "nice", backend_table.Entry(
        "nice_backend.declare:NiceDeclaration", "nice_backend.provider:NiceProvider"))
    monkeypatch.setattr(registry, "_declarations", {})


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_the_example_backend_runs_watches_and_stops_a_run_at_low_priority(nice_backend):
    service = Service()
    session = asyncio.run(service.launch(LaunchRequest(command=SLEEPER, provider="nice:15")))
    assert session.provider == "nice:15"
    running = wait_for(lambda: (s := asyncio.run(service.get(session.id))).runner_pid
                       and s.status is Status.RUNNING and s)
    status = wait_for(lambda: asyncio.run(
        registry.get_provider(session.provider).read_status(running)) or None)
    child = wait_for(lambda: status.get("child_pid") or asyncio.run(
        registry.get_provider(session.provider).read_status(running)).get("child_pid"))
    assert niceness(running.runner_pid) == 15 and niceness(child) == 15
    assert "tick" in wait_for(lambda: service.log_path(running).read_text())
    stopped = asyncio.run(service.stop(session.id))
    assert stopped.status is Status.STOPPED
    service.close()


def test_the_launch_form_offers_it_and_a_bad_niceness_is_one_line(nice_backend):
    service = Service()
    places = {place.provider: place.detail for place in service.launch_places()}
    assert places["nice:10"] == "this machine, at a lower CPU priority (nice 10)"
    with pytest.raises(TrainctlError) as err:
        asyncio.run(service.launch(LaunchRequest(command=SLEEPER, provider="nice:99")))
    assert str(err.value) == "nice: '99' is not a niceness from 1 to 19 (--provider nice:10)"
    assert service.store.list() == []  # refused before anything was stored
    service.close()
