"""Plain data shared by every layer: sessions, attempts, statuses. No I/O here."""

from __future__ import annotations

import copy
import enum
import re


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


class Record:
    """Plain data, as a dataclass would be: fields are the class's annotations in order,
    defaults its class attributes (a list or dict default is copied for each instance);
    equal when the fields are. Written out because `dataclasses` imports inspect, ast and
    dis, a tenth of a `trainctl sessions` that every command needs these classes for."""

    FIELDS: tuple[str, ...] = ()
    __hash__ = None  # mutable, compared by value: unhashable, as an eq dataclass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = [name for name in cls.__dict__.get("__annotations__", {}) if name != "FIELDS"]
        cls.FIELDS = (*cls.FIELDS, *own)

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{name}() takes {len(self.FIELDS)} arguments, got {len(args)}")
        values = dict(zip(self.FIELDS, args, strict=False))  # fewer args than fields is fine
        for key, value in kwargs.items():
            if key not in self.FIELDS or key in values:
                raise TypeError(f"{name}() got an unexpected or repeated argument '{key}'")
            values[key] = value
        for key in self.FIELDS:
            if key in values:
                value = values[key]
            elif hasattr(type(self), key):
                value = copy.copy(getattr(type(self), key))  # a fresh [] or {} each time
            else:
                raise TypeError(f"{name}() missing required argument '{key}'")
            setattr(self, key, value)

    def as_dict(self) -> dict:
        """The fields by name (not copied)."""
        return {key: getattr(self, key) for key in self.FIELDS}

    def replace(self, **changes):
        """A copy with `changes`, like dataclasses.replace."""
        return type(self)(**{**self.as_dict(), **changes})

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.as_dict().items())
        return f"{type(self).__name__}({fields})"


class Attempt(Record):
    """One run of the training command within a session (restarts and resumes add more)."""

    n: int
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    resumed_from: str | None = None
    reason: str | None = None


class Session(Record):
    """A training run trainctl manages: where it runs, what it runs, how it is going."""

    id: str
    name: str
    provider: str
    command: list[str]
    cwd: str
    session_dir: str
    env: dict[str, str] = {}  # secrets already masked
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
    nodes: int = 1  # machines the run spans: a multi-node run has a runner on each
    attempts: list[Attempt] = []

    def to_json(self) -> dict:
        """The stable --json schema of a session."""
        # Field by field: asdict's deep copy is most of `sessions --json`'s own work.
        data = self.as_dict()
        data.update(command=list(self.command), env=dict(self.env), status=self.status.value,
                    attempts=[attempt.as_dict() for attempt in self.attempts])
        return data
