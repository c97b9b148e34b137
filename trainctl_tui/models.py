"""Plain data shared by every layer: sessions, attempts, statuses. No I/O here."""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field


class Status(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    INTERRUPTED = "interrupted"  # the cloud reclaimed its spot machine; resumable elsewhere
    UNREACHABLE = "unreachable"  # its host did not answer the last refresh; it may be fine
    # Its runner is alive but silent (no heartbeat: frozen, e.g. SIGSTOP) or its status.json
    # cannot be read: trainctl cannot tell how the run is doing.
    UNRESPONSIVE = "unresponsive"

    @property
    def active(self) -> bool:
        """True while a runner may still own the session."""
        return self in (Status.PENDING, Status.RUNNING, Status.STOPPING, Status.UNREACHABLE,
                        Status.UNRESPONSIVE)

    def __str__(self) -> str:
        return self.value


# Runner states (status.json) -> session status. "backoff" is a running session waiting
# to restart; "starting" is a running one whose child is not up yet.
RUNNER_STATE_TO_STATUS = {
    "starting": Status.RUNNING,
    "running": Status.RUNNING,
    "backoff": Status.RUNNING,
    "stopping": Status.STOPPING,
    "stopped": Status.STOPPED,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "interrupted": Status.INTERRUPTED,
}

# Any part of the name: DB_PASS, PASSPHRASE, GCP_CREDENTIALS, GH_AUTH, SSH_PRIVATE ...
# Masking a harmless name by mistake costs little; showing a secret does not.
SECRET_KEY_PATTERN = re.compile(r"(KEY|TOKEN|SECRET|PASS|PWD|CREDENTIAL|AUTH|PRIVATE|COOKIE|"
                                r"SIGNATURE|CERT)", re.I)


def is_secret_name(name: str) -> bool:
    """Env var names that look like they hold a secret are never stored or shown in clear."""
    return bool(SECRET_KEY_PATTERN.search(name))


@dataclass
class Attempt:
    """One run of the training command within a session (restarts and resumes add more)."""

    n: int
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    resumed_from: str | None = None
    reason: str | None = None


@dataclass
class Session:
    """A training run trainctl manages: where it runs, what it runs, how it is going."""

    id: str
    name: str
    provider: str
    command: list[str]
    cwd: str
    session_dir: str
    env: dict[str, str] = field(default_factory=dict)  # secrets already masked
    host: str | None = None
    checkpoint_dir: str | None = None
    resume_template: str | None = None
    max_restarts: int = 0
    grace_seconds: float = 30.0
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    status: Status = Status.PENDING
    attempt: int = 0
    exit_code: int | None = None
    signal: int | None = None
    detail: str | None = None
    runner_pid: int | None = None
    heartbeat: float | None = None
    keep_last_n: int | None = None  # prune older checkpoints automatically when set
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict:
        """The stable --json schema of a session."""
        data = asdict(self)
        data["status"] = self.status.value
        return data
