"""The restricted unpickler: globals resolved through the allow-list, storages only declared,
every read bounded.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from typing import Any

from .allow_list import (
    ALLOWED,
    KNOWN_ENUMS,
    KNOWN_OBJECTS,
    Findings,
    is_dangerous,
    known_class,
    python3_name,
    torch_global,
)
from .dtypes import decode_scalar, dtype_nbytes
from .errors import METADATA_LIMIT, Corrupt, too_large
from .info import key_text
from .stand_ins import (
    Opaque,
    Storage,
    StorageType,
    Tensor,
    check_hashable,
    opaque_class,
    opaque_value,
)

# Protocol 5's opcode; the pickle module only names it from Python 3.8 (hosts may run 3.7).
BYTEARRAY8 = getattr(pickle, "BYTEARRAY8", b"\x96")


def _guarded(load: Callable, pick: Callable[[list], list]) -> Callable:
    def guarded_load(unpickler: pickle._Unpickler) -> None:
        for item in pick(unpickler.stack):
            check_hashable(item)
        load(unpickler)

    return guarded_load


class SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler: its memo is a dict. The C one sizes its memo array from the
    indices in the file, so one corrupt BINPUT can make it allocate and zero gigabytes."""

    def __init__(self, file: _Bounded, findings: Findings) -> None:
        super().__init__(file)
        self.source = file
        self.findings = findings
        self.opaque: dict[str, type[Opaque]] = {}
        self.resolved: dict[tuple[str, str], Any] = {}

    # Opcodes that hash what the pickle built: check those keys and items first.
    dispatch = dict(pickle._Unpickler.dispatch)
    for _op, _pick in ((pickle.SETITEM, lambda stack: stack[-2:-1]),
                       (pickle.SETITEMS, lambda stack: stack[0::2]),
                       (pickle.DICT, lambda stack: stack[0::2]),
                       (pickle.ADDITEMS, lambda stack: stack),
                       (pickle.FROZENSET, lambda stack: stack)):
        dispatch[_op[0]] = _guarded(dispatch[_op[0]], _pick)
    del _op, _pick

    def load_bytearray8(self) -> None:
        # pickle allocates bytearray(length) before it reads: check the length first
        (length,) = struct.unpack("<Q", self.read(8))
        self.source.take(length)
        self.source.give_back(length)
        self.append(bytearray(self.read(length)))

    dispatch[BYTEARRAY8[0]] = load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.resolved:  # pickles without memo repeat their globals
            self.resolved[(module, name)] = self._resolve(module, name)
        return self.resolved[(module, name)]

    def _resolve(self, module: str, name: str) -> Any:
        written = f"{module}.{name}"
        py3_module, py3_name = python3_name(module, name)
        if is_dangerous(module, name) or is_dangerous(py3_module, py3_name):
            self.findings.note(self.findings.dangerous, written)
            return self._opaque(written)
        full = f"{py3_module}.{py3_name}"
        allowed = ALLOWED.get(full)
        if allowed is None:
            allowed = torch_global(py3_module, py3_name)
        if allowed is not None:
            return allowed
        if full in KNOWN_ENUMS:
            return self._opaque(written)
        if full in KNOWN_OBJECTS:
            return known_class(written, self.findings)
        self.findings.note(self.findings.unknown, written)
        return self._opaque(written)

    def _opaque(self, name: str) -> type[Opaque]:
        if name not in self.opaque:
            self.opaque[name] = opaque_class(name)
        return self.opaque[name]

    def persistent_load(self, pid: Any) -> Any:
        # torch: ("storage", storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unsupported persistent id ({type(pid).__name__})")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # legacy torch.save(model): the class and its source
            return opaque_value("torch module source")
        if kind != "storage" or len(pid) < 5:
            raise pickle.UnpicklingError(f"unsupported persistent id {key_text(kind)}")
        storage_type, key, location, numel = pid[1:5]
        if not isinstance(key, (str, int)) or not isinstance(numel, int) or not (
                0 <= numel < 1 << 62):
            raise pickle.UnpicklingError("malformed storage persistent id")
        dtype = storage_type.dtype if isinstance(storage_type, StorageType) else "uint8"
        key = str(key)
        location = location if isinstance(location, str) else "?"
        known = self.findings.storages.get(key)
        if known is not None and known.nbytes >= dtype_nbytes(dtype, numel):
            return known
        storage = Storage(key, dtype, numel, location)
        self.findings.storages[key] = storage
        return storage


_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError,
                  AttributeError, ArithmeticError, struct.error, RecursionError, MemoryError,
                  ImportError, SystemError)


class _Bounded:
    """read/readline of a file or zip member that refuse to go past `limit` bytes in all,
    before anything is read or allocated (a pickle may declare a 1 GiB string). A length
    past the `available` bytes is damage, not size."""

    def __init__(self, fp: Any, what: str, available: int | None = None,
                 limit: int = METADATA_LIMIT) -> None:
        self.fp, self.what, self.limit, self.left = fp, what, limit, limit
        self.available = available

    def take(self, n: int) -> None:
        if self.available is not None and n > self.available:
            raise Corrupt(f"pickle error in {self.what}: it needs {n:,} more bytes, "
                           f"{self.available:,} are left")
        if n > self.left:
            raise too_large(self.what, self.limit)
        self.left -= n
        if self.available is not None:
            self.available -= n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.left + 1
        self.take(n)
        data = self.fp.read(n)
        self.give_back(n - len(data))
        return data

    def give_back(self, n: int) -> None:
        self.left += n
        if self.available is not None:
            self.available += n

    def readline(self) -> bytes:
        line = self.fp.readline(min(self.left, self.available or self.left) + 1)
        self.take(len(line))
        return line


def unpickle_bounded(file: Any, findings: Findings, what: str, available: int | None = None) -> Any:
    bounded = _Bounded(file, what, available)
    try:
        return SafeUnpickler(bounded, findings).load()
    except _PICKLE_ERRORS as exc:
        raise Corrupt(f"pickle error in {what}: {exc or type(exc).__name__}") from None


class Parsed:
    """One file's root object, how to read a scalar tensor's bytes, and the integrity checks
    to run once the summary is filled (so a damaged file still shows what it holds)."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.root: Any = None
        self.little_endian = True
        self.read_bytes: Callable[[Storage, int, int], bytes | None] = lambda s, o, n: None
        self.checks: list[Callable[[], None]] = []

    def scalar(self, value: Any) -> float | int | None:
        """A plain number, a numpy scalar, or a one-element tensor's value (a few bytes read)."""
        if isinstance(value, bool):
            return None
        if isinstance(value, float) or (isinstance(value, int) and value.bit_length() <= 63):
            return value
        if isinstance(value, Tensor) and value.numel == 1 and value.storage is not None:
            size = dtype_nbytes(value.dtype, 1)
            raw = self.read_bytes(value.storage, value.offset * size, size)
            if raw is not None and len(raw) == size:
                return decode_scalar(value.dtype, raw, self.little_endian)
        return None
