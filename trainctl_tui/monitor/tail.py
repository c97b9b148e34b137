"""Reading the end of a log and following it by byte offset, without loading the whole file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BLOCK = 64 * 1024


def last_lines(path: Path, n: int, end: int | None = None) -> list[str]:
    """The last n lines before byte `end` (default: the end of the file), read backwards block
    by block, so a multi-GB log costs about n lines of reading."""
    if n <= 0:
        return []
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return []
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end = size if end is None else min(end, size)
        position, chunks, newlines = end, [], 0
        while position > 0 and newlines <= n:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
        data = b"".join(reversed(chunks))
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-n:]


def follow(path: Path, *, offset: int | None = None, poll: float = 0.25,
           until: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Yield complete lines appended to `path` from `offset` (default: the end) on.

    Stops when `until()` is true and nothing more is left to read. A truncated file is read
    again from the start.
    """
    position = path.stat().st_size if offset is None else offset
    pending = b""
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < position:
            position, pending = 0, b""
        if size > position:
            with open(path, "rb") as handle:
                handle.seek(position)
                data = handle.read(size - position)
            position += len(data)
            *complete, pending = (pending + data).split(b"\n")
            for line in complete:
                yield line.decode("utf-8", errors="replace").rstrip("\r")
            continue
        if until():
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return
        time.sleep(poll)
