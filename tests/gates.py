"""Gates for the fake clouds: a request that matches waits until the test opens the gate, so
a test can look at what trainctl does meanwhile (ordering by events, not by the clock)."""

from __future__ import annotations

import threading


class Gate:
    def __init__(self, match: str):
        self.match = match
        self.arrived = threading.Event()  # a matching request came in and waits
        self.opened = threading.Event()

    def wait_here(self) -> None:
        """In the server's request thread."""
        self.arrived.set()
        self.opened.wait(timeout=300)

    def open(self) -> None:
        self.opened.set()


def wait_recovery_done(session_dir, timeout: float = 180.0) -> None:
    """Until no detached recovery (trainctl _recover) of the session runs any more."""
    import time

    from trainctl_tui.app import recovery

    deadline = time.monotonic() + timeout
    while recovery.running(session_dir) is not None:
        assert time.monotonic() < deadline, recovery.read_marker(session_dir)
        time.sleep(0.2)
