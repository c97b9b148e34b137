"""Every test gets its own trainctl home, config and working directory, and leaves no
runner or training process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from trainctl_tui.runner.processes import pid_alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def trainctl_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for name in list(os.environ):
        if name.startswith("TRAINCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRAINCTL_HOME", str(home))
    monkeypatch.setenv("TRAINCTL_CONFIG", str(tmp_path / "config.toml"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield home
    kill_leftovers(home)


def kill_leftovers(home: Path) -> None:
    """SIGKILL the process groups of runners and trainings the test started, and the node
    watchers (`trainctl _watch`) of its multi-node sessions."""
    for lock in home.glob("sessions/*/watch.lock"):
        text = lock.read_text().strip() if lock.exists() else ""
        if text.isdigit():
            try:
                os.kill(int(text), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for status_file in home.glob("sessions/*/status.json"):
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            continue
        for key, token in (("child_pid", "child_start"), ("runner_pid", "runner_start")):
            pid = status.get(key)
            if not pid or not pid_alive(pid, status.get(token)):  # never a reused pid
                continue
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def run_cli(*args: str, timeout: float = 60, env: dict | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
    """`trainctl ARGS` in a fresh interpreter, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "trainctl_tui", *args],
        capture_output=True, text=True, timeout=timeout, input=input,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.fixture
def cli():
    return run_cli


# Fixtures that start a real component (sshd, moto's server, the GraphQL server, Slurm): a test
# using one, directly or through another fixture, is marked `real`, so `pytest -m "not real"`
# (`just test-fast`) runs the rest in a fraction of the time.
REAL_COMPONENTS = {"sshd_server", "moto_server", "runpod_server", "slurm_cluster",
                   "gres_cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        if REAL_COMPONENTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)
