"""Legacy torch files and plain pickles: pickles followed by raw storages."""

from __future__ import annotations

import struct
from typing import Any

from .allow_list import Findings
from .errors import Corrupt
from .info import CheckpointInfo
from .stand_ins import Storage
from .unpickler import Parsed, unpickle_bounded

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_pickle_file(info: CheckpointInfo, fp: Any, size: int, deep: bool,
                      findings: Findings) -> Parsed:
    """A legacy torch file (magic number, protocol, sys_info, data, storage keys, storages),
    or a plain pickle."""
    first = unpickle_bounded(fp, findings, "pickle", size)
    if not (isinstance(first, int) and first == _TORCH_LEGACY_MAGIC):
        parsed = Parsed("pickle")
        parsed.root = first
        return parsed
    info.format = "torch-legacy"
    parsed = Parsed("torch-legacy")
    unpickle_bounded(fp, findings, "protocol version", size - fp.tell())
    sys_info = unpickle_bounded(fp, findings, "sys_info", size - fp.tell())
    if isinstance(sys_info, dict):
        parsed.little_endian = sys_info.get("little_endian", True) is not False
    parsed.root = unpickle_bounded(fp, findings, "data pickle", size - fp.tell())
    keys = unpickle_bounded(fp, findings, "storage keys", size - fp.tell())
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise Corrupt("storage key list is malformed")
    starts = _legacy_storage_starts(keys, findings, fp.tell())
    parsed.checks.append(lambda: _check_legacy_sizes(keys, starts, findings, size))
    if deep:
        parsed.checks.append(lambda: _check_legacy_headers(fp, starts, findings))

    def read_bytes(storage: Storage, offset: int, n: int) -> bytes | None:
        if storage.key not in starts:
            return None
        fp.seek(starts[storage.key] + 8 + offset)
        return fp.read(n)

    parsed.read_bytes = read_bytes
    return parsed


def _legacy_storage_starts(keys: list[str], findings: Findings, at: int) -> dict[str, int]:
    """Each storage is an 8-byte element count then its bytes, in key-list order."""
    starts: dict[str, int] = {}
    for key in keys:
        storage = findings.storages.get(key)
        if storage is None:  # listed but never used: its size, so what follows, is unknown
            break
        starts[key] = at
        at += 8 + storage.nbytes
    return starts


def _check_legacy_sizes(keys: list[str], starts: dict[str, int], findings: Findings,
                        size: int) -> None:
    missing = [k for k in findings.storages if k not in keys]
    if missing:
        raise Corrupt(f"missing storage {missing[0]}")
    for key, at in starts.items():
        end = at + 8 + findings.storages[key].nbytes
        if end > size:
            raise Corrupt(f"truncated storage {key} (ends {end - size} bytes past the end of "
                           "the file)")


def _check_legacy_headers(fp: Any, starts: dict[str, int], findings: Findings) -> None:
    for key, at in starts.items():
        fp.seek(at)
        raw = fp.read(8)
        (count,) = struct.unpack("<q", raw) if len(raw) == 8 else (-1,)
        if count != findings.storages[key].numel:
            raise Corrupt(f"storage {key} header says {count} elements, its pickle says "
                           f"{findings.storages[key].numel}")
