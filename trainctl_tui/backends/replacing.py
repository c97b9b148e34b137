"""The capability "replaces an interrupted machine", for backends that rent machines a cloud
can take back (spot instances, interruptible pods). Such a backend sets
`replaces_machines = True` and `interrupted_when` (the session statuses after which a refresh
asks it), and has these methods:

    async def interruption(session, entries) -> Interruption | None
        Was the machine taken? `entries` is the session's interruption record so far
        (core/interruptions.py). None: not an interruption, or one recorded already.
    async def replace(session, entry, *, reason, by_hand=False, scratch=False,
                      from_checkpoint=None, progress=None) -> Replacement
        A machine to go on with (the same one back, or a new one like it) and where the run
        resumes from there. `entry` is the interruption being handled (None for a resume by
        hand of one never recorded); `progress(detail)` says what it is doing. Raises
        ReplaceFailed (the whole detail to show) or a TrainctlError.
    async def observe(session) -> None
        While the session is active: what the backend keeps to replace the machine later.
        Never raises.

The app's recovery (app/replace.py) calls them and does the rest, the same for every backend:
the lock, the record, the detached process, moving the session and starting its runner. A
backend never calls back into the app."""

from __future__ import annotations

from ..core.errors import TrainctlError
from ..core.models import Record


class Interruption(Record):
    """What a backend found: an interruption to record and what the session says now."""

    entry: dict  # for the interruption record: machine, at, reason, spot, cost + its own keys
    detail: str | None  # the session's detail from now on
    changes: dict = {}  # other fields of the session (status, ended)
    resume: str | None = None  # set when auto-resume starts now: what it does, for the detail


class Replacement(Record):
    """A machine ready to run the session again."""

    provider: str  # the session's provider string from now on
    host: str
    label: str  # how notes name the machine: "pod abc123", "i-0abc..."
    resume_from: str | None  # for spec.json: a checkpoint, "newest", or None for scratch
    note: str  # one line for train.log, saying what happened and where the run goes on
    detail: str  # the session's detail while its runner starts there
    resume_skipped: list | None = None  # newer checkpoints passed over; None leaves spec's
    new_machine: bool = True  # the log mirror starts over on a machine that is new
    entry_update: dict = {}  # what to add to the interruption's entry
    entry: dict | None = None  # an interruption never recorded (resume by hand): record it
    discard: object = None  # async (exc) -> None: give the machine back if the run cannot start


class ReplaceFailed(TrainctlError):
    """No replacement: str(error) is the session's whole detail from now on."""
