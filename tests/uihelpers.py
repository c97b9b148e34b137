"""Shared pieces of the TUI tests: real sessions, and waiting on a running app."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from trainctl_tui.app.service import LaunchRequest, Service, demo_script_path

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def launch_demo(*, steps: int = 100000, step_time: float = 0.02, name: str = "demo",
                checkpoint_dir: Path | None = None, **extra) -> str:
    """A real demo run through the same service call the TUI and CLI use."""
    command = [sys.executable, "-u", str(demo_script_path()), "--steps", str(steps),
               "--step-time", str(step_time), "--ckpt-every", "20", "--eval-every", "20"]
    service = Service()
    try:
        session = asyncio.run(service.launch(LaunchRequest(
            command=command, name=name, checkpoint_dir=str(checkpoint_dir or Path.cwd() / name),
            resume_template="--resume {checkpoint}", grace_seconds=10, **extra)))
    finally:
        service.close()
    return session.id


def launch_command(command: list[str], name: str) -> str:
    service = Service()
    try:
        return asyncio.run(service.launch(LaunchRequest(command=command, name=name))).id
    finally:
        service.close()


def session_status(session_id: str):
    service = Service()
    try:
        return asyncio.run(service.get(session_id))
    finally:
        service.close()


async def wait_until(pilot, predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_for_status(pilot, session_id: str, statuses: set[str], timeout: float = 30.0):
    async def current():
        return (await asyncio.to_thread(session_status, session_id)).status.value

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await current()
        if status in statuses:
            return status
        await pilot.pause(0.2)
    raise AssertionError(f"session {session_id} never reached {statuses} (is {status})")


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]
