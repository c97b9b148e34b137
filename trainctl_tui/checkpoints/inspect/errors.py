"""How much is read, and why a file is not ok: damage (`Corrupt`) or metadata past the limit
(`TooLarge`).
"""

from __future__ import annotations

CHUNK = 1 << 20
# What is inflated or read into memory for metadata (a pickle without its storages, a JSON
# config): a real one is far smaller; a zip bomb's data.pkl is not read past it.
METADATA_LIMIT = 16 * 1024 * 1024


class Corrupt(Exception):
    """A file is damaged; the message is the reason shown to the user."""

    status = "corrupt"


class TooLarge(Corrupt):
    """Metadata past METADATA_LIMIT: not read, so nothing is known about the file."""

    status = "unknown"


def too_large(what: str, limit: int = METADATA_LIMIT) -> TooLarge:
    return TooLarge(f"{what} too large to inspect (over {limit // (1024 * 1024)} MiB; "
                     "metadata is never that big)")
