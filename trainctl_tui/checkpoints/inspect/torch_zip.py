"""torch zip checkpoints (`<archive>/data.pkl` + `<archive>/data/N`): the pickle, the declared
storages against the archive, member CRCs.
"""

from __future__ import annotations

import contextlib
import errno
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

from .allow_list import Findings
from .errors import CHUNK, METADATA_LIMIT, Corrupt, too_large
from .stand_ins import Storage
from .unpickler import Parsed, unpickle_bounded


def read_torch_zip(fp: Any, size: int, deep: bool, findings: Findings) -> Parsed:
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, NotImplementedError) as exc:
        raise Corrupt(f"bad zip central directory ({exc})") from None
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise Corrupt(f"bad zip central directory ({exc.strerror})") from None
    members = {info.filename: info for info in zf.infolist()}
    pkl = next((n for n in members if n.endswith("data.pkl") and n.count("/") <= 1
                and n.rsplit("/", 1)[-1] == "data.pkl"), None)
    if pkl is None:
        raise Corrupt("zip archive has no data.pkl (not a torch checkpoint)")
    prefix = pkl[: -len("data.pkl")]
    parsed = Parsed("torch-zip")
    if f"{prefix}byteorder" in members:
        byteorder = zip_read(zf, members[f"{prefix}byteorder"], limit=64)
        parsed.little_endian = byteorder.strip() != b"big"
    parsed.root = _unpickle_member(zf, members[pkl], findings)
    parsed.checks.append(lambda: _check_zip_storages(findings, members, prefix))
    if deep:
        parsed.checks.append(lambda: check_zip_crcs(zf))
    offsets: dict[str, int] = {}

    def read_bytes(storage: Storage, offset: int, n: int) -> bytes | None:
        info = members.get(f"{prefix}data/{storage.key}")
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            return None
        if info.filename not in offsets:
            offsets[info.filename] = member_data_offset(fp, info)
        fp.seek(offsets[info.filename] + offset)
        return fp.read(n)

    parsed.read_bytes = read_bytes
    return parsed


@contextlib.contextmanager
def _member_errors(name: str) -> Iterator[None]:
    """zipfile's many ways of failing on a damaged member, as one corrupt reason."""
    try:
        yield
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc):
            raise Corrupt(f"CRC mismatch in {name}") from None
        raise Corrupt(f"bad zip member {name} ({exc})") from None
    except (EOFError, ValueError, struct.error, NotImplementedError, zlib.error) as exc:
        raise Corrupt(f"bad zip member {name} ({exc})") from None
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a real I/O error, not a bad offset in the file
            raise
        raise Corrupt(f"bad zip member {name} ({exc.strerror})") from None


def zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int = METADATA_LIMIT
              ) -> bytes:
    """A small member, whole. zipfile never inflates past the size the directory declares."""
    if info.file_size > limit:
        raise too_large(f"{info.filename} ({info.file_size:,} bytes inflated)", limit)
    with _member_errors(info.filename):
        return zf.read(info)


def _unpickle_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, findings: Findings) -> Any:
    """A zip member's pickle, inflated as the unpickler reads it, never past METADATA_LIMIT."""
    if info.file_size > METADATA_LIMIT:
        raise too_large(f"{info.filename} ({info.file_size:,} bytes inflated)")
    with _member_errors(info.filename), zf.open(info) as member:
        root = unpickle_bounded(member, findings, info.filename, info.file_size)
        while member.read(CHUNK):  # to its end, so that zipfile checks its CRC
            pass
    return root


def member_data_offset(fp: Any, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header (whose extra field torch
    pads for alignment, so it differs from the central directory's)."""
    with _member_errors(info.filename):
        fp.seek(info.header_offset)
        header = fp.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise Corrupt(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _check_zip_storages(findings: Findings, members: dict, prefix: str) -> None:
    for key in sorted(findings.storages, key=_natural):
        storage = findings.storages[key]
        name = f"{prefix}data/{key}"
        info = members.get(name)
        if info is None:
            raise Corrupt(f"missing storage {name}")
        if storage.nbytes > info.file_size:
            raise Corrupt(f"truncated storage {name} (declared {storage.nbytes} bytes, "
                           f"archive member has {info.file_size})")


def check_zip_crcs(zf: zipfile.ZipFile) -> None:
    """zipfile checks a member's CRC once it is read to its end; stream every member."""
    for info in zf.infolist():
        with _member_errors(info.filename), zf.open(info) as member:
            while member.read(CHUNK):
                pass


def _natural(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)
