"""The logs `trainctl metrics`, `trainctl compare` and the compare screen read: a session
(id or name), a log file here, or a backend's log URL (ssh://[user@]host[:port]/path), each
refused in one line as `trainctl watch` refuses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import SessionNotFound, TrainctlError
from ..core.models import Session


@dataclass
class LogSource:
    path: Path  # the local file to read (a remote log's local copy)
    label: str  # what the user gave, as shown
    session: Session | None = None
    mirror: object | None = None  # what keeps a remote log's copy growing (its `sync()`)


async def log_source(service, target: str) -> LogSource:
    """The log `target` names; a remote log is first copied up to its end."""
    if service.is_log_url(target):
        mirror = service.log_mirror(target)
        await service.mirror_whole_log(mirror)
        return LogSource(mirror.local, target, mirror=mirror)
    path = Path(target).expanduser()
    if path.is_file():
        return LogSource(path, str(path))
    if path.is_dir():
        raise TrainctlError(f"{path} is a directory; give the log file inside it")
    try:
        session = await service.get(target)
    except SessionNotFound:
        if "/" in target or target.startswith((".", "~")) or path.suffix:
            raise TrainctlError(f"no such log file: {path}") from None  # as `watch` says
        raise
    require_session_folder(session)
    log = service.log_path(session)
    if not log.is_file():
        raise TrainctlError(f"session {session.id} has no log yet ({log})")
    return LogSource(log, str(log), session=session)


def require_session_folder(session: Session) -> None:
    """A session whose folder was deleted by hand: its log and files are gone, say so."""
    if not Path(session.session_dir).is_dir():
        raise TrainctlError(f"session {session.id}'s folder {session.session_dir} is gone "
                            f"(deleted?); trainctl rm {session.id} forgets the session")
