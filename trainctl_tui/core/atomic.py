"""The one way trainctl replaces a file: readers see the old file or the new one, never a half
written one. (The runner has its own copy: it ships alone, stdlib only.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    from collections.abc import Iterable


def atomic_write(path: str | Path, data: bytes | str | Iterable[bytes], *, mode: int = 0o644,
                 durable: bool = True) -> None:
    """Write `data` (bytes, text, or bytes in parts) to a temporary file beside `path` and
    rename it over `path`. `mode` is the new file's (0o600 for what holds secrets). `durable`
    fsyncs the file and the folder, so a power cut leaves the old file or the new one; caches
    that check themselves skip it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: writers never share
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, str):
                data = data.encode()
            for part in (data,) if isinstance(data, bytes) else data:
                out.write(part)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def atomic_write_json(path: str | Path, value, *, mode: int = 0o644, indent: int | None = 2,
                      durable: bool = True) -> None:
    atomic_write(path, json.dumps(value, indent=indent), mode=mode, durable=durable)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not every filesystem lets a folder be opened for it.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
