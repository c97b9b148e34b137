"""The runner's names the tests use (they knew them as one file, supervisor.py), from the
modules that hold them now, and the runner zipapp the way it is shipped."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

from trainctl_tui.backends.aws.runner_s3 import S3_MARKER_SUFFIX  # noqa: F401
from trainctl_tui.backends.aws.runner_spot import ImdsClient, parse_aws_time  # noqa: F401
from trainctl_tui.runner.bundle import runner_bundle
from trainctl_tui.runner.checkpoint_files import (  # noqa: F401
    CHECKPOINT_DIR_RE,
    CHECKPOINT_SUFFIXES,
    checkpoint_step,
    find_newest_checkpoint,
)
from trainctl_tui.runner.processes import marked_pids, pid_alive, process_start_token  # noqa: F401
from trainctl_tui.runner.restart_policy import backoff_delay  # noqa: F401
from trainctl_tui.runner.resume_choice import choose_checkpoint  # noqa: F401
from trainctl_tui.runner.spec import SPEC_DEFAULTS, SpecError  # noqa: F401
from trainctl_tui.runner.status import atomic_write_json, read_status  # noqa: F401
from trainctl_tui.runner.supervisor import Supervisor  # noqa: F401

# Built once per version of the sources, outside any test's TRAINCTL_HOME.
BUNDLE_CACHE = Path(tempfile.gettempdir()) / f"trainctl-test-runner-{os.getuid()}"


def runner_zipapp() -> Path:
    """trainctl-runner.pyz for the current sources: what providers copy to remote machines."""
    return runner_bundle(BUNDLE_CACHE)


def kill_left_behind(folders) -> None:
    """SIGKILL the runner and the training group of each session folder a test made, when
    still alive (never a reused pid: the start tokens are checked)."""
    for folder in folders:
        status = read_status(str(folder)) or {}
        if pid_alive(status.get("runner_pid"), status.get("runner_start")):
            os.kill(status["runner_pid"], signal.SIGKILL)
        if pid_alive(status.get("child_pid"), status.get("child_start")):
            os.killpg(status["child_pid"], signal.SIGKILL)
