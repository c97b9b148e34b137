"""What is inside a checkpoint, read without loading it and without ever running code from it.

Stdlib only, and no trainctl_tui imports: this one file is also copied to SSH hosts and pods and
run there as `python3 inspect.py PATH --json`.

- torch zip (`<archive>/data.pkl` + `<archive>/data/N`) and legacy torch files (pickles followed by
  raw storages): the pickle goes through a restricted unpickler. Allowed globals map to local
  stand-ins that build *descriptions* (dtype, shape, numel, bytes); storages are never read, only
  their declared sizes are checked against the archive. Every other global becomes an opaque
  `<unsupported global module.name>` marker; nothing from the file is imported or called.
- safetensors: the JSON header only, checked against the file size.
- Keras: a `.keras` zip (end record, central directory, member CRCs; config.json and
  metadata.json for the model class, layers, Keras version, optimizer) whose model.weights.h5,
  like a `.weights.h5` or legacy `.h5` file, is walked by the sibling HDF5 metadata reader
  (hdf5.py, copied along as ckpt_hdf5.py): dataset names, shapes and dtypes, the optimizer's
  iteration count, truncation against the superblock. Nothing of Keras, h5py or numpy is used.
- Checkpoint directories: Hugging Face (trainer_state.json), Accelerate `checkpoint_N`
  (random_states_N.pkl holds its step counter), torchtune `epoch_N` (its recipe state lives
  beside it), DeepSpeed; each weight/optimizer/state file gets the summary above.

What could not be checked is listed in `CheckpointInfo.unverified` (HDF5 dense storage, CRCs
of a huge .keras without deep=True, ...), so "ok" never claims more than was read.

`inspect_checkpoint(path, deep=False)` never raises for a bad file: it reports `corrupt` or
`suspicious` with the reason. Results are cached by (path, size, mtime, deep).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script, this file's folder is sys.path[0] and `inspect.py` would shadow the stdlib
    # module that dataclasses imports.
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import _compat_pickle  # noqa: E402
import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import errno  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import ntpath  # noqa: E402
import pickle  # noqa: E402
import posixpath  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["CheckpointInfo", "TensorInfo", "cache_clear", "cache_stats", "inspect_checkpoint",
           "inspect_dir_files", "inspect_fileobj", "main", "trust_problem", "unsound_reason"]

TENSOR_LIST_CAP = 200
CACHE_SIZE = 512
_LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors library's own limit
_CHUNK = 1 << 20
# What is inflated or read into memory for metadata (a pickle without its storages, a JSON
# config): a real one is far smaller; a zip bomb's data.pkl is not read past it.
METADATA_LIMIT = 16 * 1024 * 1024


@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    numel: int
    nbytes: int


@dataclass
class CheckpointInfo:
    """What a checkpoint holds. `tensor_count`, `dtypes` (dtype -> tensor count) and `tensors`
    cover every tensor in a file (one per distinct view of a storage, optimizer state
    included); `param_count` sums the model weights only. For a directory all of them come
    from its weight files, and `files` has each file's own summary."""

    path: str
    kind: str  # "file" | "dir"
    format: str  # torch-zip | torch-legacy | lightning | pickle | safetensors | keras |
    #              keras-weights | keras-h5 | hdf5 | hf-dir | accelerate-dir | torchtune-dir |
    #              git-lfs-pointer | unknown
    size: int
    mtime: float
    status: str = "ok"  # ok | corrupt | suspicious
    reason: str | None = None
    step: int | None = None
    epoch: float | None = None
    loss: float | None = None
    best_metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tensor_count: int = 0
    param_count: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    top_keys: list[str] = field(default_factory=list)
    has_optimizer: bool = False
    hparams: dict | None = None
    unknown_globals: list[str] = field(default_factory=list)
    dangerous_globals: list[str] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    model_args: dict | None = None  # nanoGPT model_args, or a HF dir's config.json
    callbacks: list[str] = field(default_factory=list)  # Lightning callback state keys
    metadata: dict = field(default_factory=dict)  # safetensors __metadata__, versions, lfs oid
    unverified: list[str] = field(default_factory=list)  # what could not be checked, and why

    def to_json(self) -> dict:
        out = {name: _plain(getattr(self, name)) for name in self.__dataclass_fields__}
        out["tensors"] = [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "numel": t.numel,
             "nbytes": t.nbytes} for t in self.tensors]
        return out


# -- dtypes ----------------------------------------------------------------------------------

_DTYPE_BITS = {
    "float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "complex128": 128,
    "complex64": 64, "complex32": 32, "int64": 64, "int32": 32, "int16": 16, "int8": 8,
    "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "bool": 8, "float8_e4m3fn": 8,
    "float8_e5m2": 8, "float8_e4m3fnuz": 8, "float8_e5m2fnuz": 8, "float8_e8m0fnu": 8,
    "float4_e2m1fn_x2": 8, "qint8": 8, "quint8": 8, "qint32": 32, "quint4x2": 8, "quint2x4": 8,
    "bits8": 8, "bits16": 16, "bits1x8": 8, "bits2x4": 8, "bits4x2": 8,
    **{f"int{n}": 8 for n in range(1, 8)}, **{f"uint{n}": 8 for n in range(1, 8)},
    # safetensors-only sub-byte floats
    "float4_e2m1fn": 4, "float6_e2m3fn": 6, "float6_e3m2fn": 6,
}
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                  "int": "int32", "short": "int16", "cfloat": "complex64",
                  "cdouble": "complex128", "chalf": "complex32"}
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "QInt8Storage": "qint8", "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8", "TypedStorage": "uint8",
}
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32",
    "U16": "uint16", "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu", "C64": "complex64",
    "C128": "complex128", "F4": "float4_e2m1fn", "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
}
# torch names that are plain values, not dtypes (layouts, memory formats, quantization schemes)
_TORCH_CONSTANTS = {
    "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc", "_mkldnn",
    "jagged", "contiguous_format", "channels_last", "channels_last_3d", "preserve_format",
    "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
    "per_channel_symmetric", "per_channel_affine_float_qparams",
}
_STRUCT_CODES = {"float64": "d", "float32": "f", "float16": "e", "int64": "q", "int32": "i",
                 "int16": "h", "int8": "b", "uint8": "B", "uint16": "H", "uint32": "I",
                 "uint64": "Q", "bool": "?"}


def _product(values) -> int:
    """math.prod, which Python 3.7 (on remote hosts, beside the runner) does not have."""
    result = 1
    for value in values:
        result *= value
    return result


def _nbytes(dtype: str, numel: int) -> int:
    bits = _DTYPE_BITS.get(dtype, 8)
    return (numel * bits + 7) // 8


def _decode_scalar(dtype: str, raw: bytes, little: bool) -> float | int | None:
    order = "<" if little else ">"
    if dtype == "bfloat16" and len(raw) == 2:
        (value,) = struct.unpack(order + "H", raw)
        return struct.unpack("<f", struct.pack("<I", value << 16))[0]
    code = _STRUCT_CODES.get(dtype)
    if code is None or struct.calcsize(code) != len(raw):
        return None
    value = struct.unpack(order + code, raw)[0]
    return bool(value) if code == "?" else value


# -- globals: allowed, dangerous, unknown ----------------------------------------------------
# A checkpoint is `ok` only if every global its pickles name is on the allow-list (_ALLOWED,
# _KNOWN_CLASSES, torch dtypes and storages): what torch, Lightning, Hugging Face, numpy and
# the standard containers really write. Any other global makes it `suspicious`; the deny-list
# below only says which of those are known to run code, for a sharper reason.

# Modules whose every global can run code, touch files or the network when called.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "runpy", "importlib", "imp",
    "shutil", "socket", "_socket", "sys", "code", "codeop", "pty", "webbrowser", "commands",
    "popen2", "ctypes", "_ctypes", "multiprocessing", "marshal", "types", "timeit", "pdb",
    "bdb", "cProfile", "profile", "trace", "signal", "asyncio", "http", "urllib", "urllib2",
    "ftplib", "smtplib", "telnetlib", "requests", "httplib", "pickle", "_pickle", "cPickle",
    "dill", "cloudpickle", "joblib", "operator", "_operator", "pip", "setuptools", "distutils",
    "zipimport", "pkgutil", "ssl", "venv", "ensurepip", "idlelib", "tkinter", "antigravity",
    "torch.hub", "torch.utils.cpp_extension", "torch.jit", "torch._dynamo", "torch._inductor",
    "torch.fx.graph_module", "torch.package", "numpy.f2py", "numpy.distutils",
}
# Single globals that run code, read or write files, or unpickle nested payloads.
_DANGEROUS_NAMES = {
    *(("builtins", n) for n in (
        "exec", "eval", "compile", "getattr", "setattr", "delattr", "__import__", "open",
        "globals", "locals", "vars", "input", "breakpoint", "help", "exit", "quit", "apply",
        "execfile", "reload", "file")),
    ("io", "open"), ("io", "open_code"), ("io", "FileIO"), ("_io", "open"), ("_io", "FileIO"),
    ("torch", "load"), ("torch.serialization", "load"), ("torch.storage", "_load_from_bytes"),
    ("numpy", "load"), ("numpy.lib.npyio", "load"), ("numpy.testing._private.utils", "runstring"),
}


def _is_dangerous(module: str, name: str) -> bool:
    if (module, name) in _DANGEROUS_NAMES or (module == "__builtin__" and
                                               ("builtins", name) in _DANGEROUS_NAMES):
        return True
    parts = module.split(".")
    return any(".".join(parts[:i]) in _DANGEROUS_MODULES for i in range(1, len(parts) + 1))


def _py3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol 0-2 pickles written by Python 2 (or with fix_imports) use Python 2 names."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class Opaque:
    """Stand-in for a global off the allow-list. Whatever the pickle does with it (call it,
    NEWOBJ it, BUILD it, fill it like a dict or a list) succeeds and is only recorded."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        self = object.__new__(cls)
        self.args, self.kwargs = args, kwargs
        self.state: Any = None
        self.items: dict = {}
        self.listitems: list = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.listitems.append(value)

    def extend(self, values: Any) -> None:
        self.listitems.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        # e.g. getattr(x, "y")(...): the result of an opaque call may be called in turn
        return type(self)(*args, **kwargs)

    @property
    def args_shape(self) -> str:
        return "(" + ", ".join(type(a).__name__ for a in self.args) + ")"

    def __repr__(self) -> str:
        return f"<unsupported global {self.global_name}>"


def _opaque_class(name: str) -> type[Opaque]:
    return type("Unsupported", (Opaque,), {"global_name": name})


class _Record:
    """argparse.Namespace and other attribute bags: keeps the attributes, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Record:
        self = object.__new__(cls)
        self.attrs = dict(kwargs)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.attrs.update(state)


class _PlainDict(dict):
    """dict subclasses known to be plain (Lightning's AttributeDict)."""

    def __setstate__(self, state: Any) -> None:
        pass


class _Described:
    """Base of the descriptions: a pickle's BUILD on them is ignored, so file data can never
    overwrite what was worked out."""

    def __setstate__(self, state: Any) -> None:
        pass


class _TorchDtype(_Described):
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _StorageType(_Described):
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage(_Described):
    """A storage as its persistent id declares it; its bytes stay on disk."""

    def __init__(self, key: str, dtype: str, numel: int, location: str) -> None:
        self.key, self.dtype, self.numel, self.location = key, dtype, numel, location
        self.nbytes = _nbytes(dtype, numel)


class _Tensor(_Described):
    """Description of a tensor: what torch would rebuild, minus the data."""

    def __init__(self, storage: Any, offset: Any, shape: Any, stride: Any,
                 dtype: str | None = None) -> None:
        if not _plausible_shape(shape):
            raise pickle.UnpicklingError("tensor with a malformed shape")
        self.storage = storage if isinstance(storage, _Storage) else None
        self.shape = tuple(shape)
        ok_stride = _int_tuple(stride) and len(stride) == len(self.shape)
        self.stride = tuple(stride) if ok_stride else None
        self.offset = offset if isinstance(offset, int) else 0
        self.dtype = dtype or (self.storage.dtype if self.storage else "unknown")
        self.numel = _product(self.shape)
        self.nbytes = _nbytes(self.dtype, self.numel)
        self.parameter = False
        self.subclass: str | None = None

    def view_key(self) -> tuple:
        key = self.storage.key if self.storage else id(self)
        return (key, self.offset, self.shape, self.stride, self.dtype)

    def byte_extent(self) -> int:
        """Bytes of its storage this view reaches, for the bounds check."""
        if self.numel == 0 or self.stride is None:
            return 0
        if len(self.shape) != len(self.stride):
            raise ValueError(f"shape {self.shape} and stride {self.stride} differ in length")
        # No zip(strict=...): this file runs on Python 3.7 hosts beside the runner.
        pairs = zip(self.shape, self.stride)  # noqa: B905
        last = self.offset + sum((n - 1) * s for n, s in pairs)
        return _nbytes(self.dtype, last + 1)

    def __repr__(self) -> str:
        return f"<tensor {self.dtype} {list(self.shape)}>"


class _NumpyDtype:
    def __init__(self, spec: Any = "", align: Any = False, copy: Any = False) -> None:
        self.spec = str(spec)
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    @property
    def name(self) -> str:
        kinds = {"f": "float", "i": "int", "u": "uint", "c": "complex", "b": "bool"}
        kind, size = self.spec[:1], self.spec[1:]
        if kind == "b":
            return "bool"
        return kinds[kind] + str(int(size) * 8) if kind in kinds and size.isdigit() else self.spec


class _NDArray:
    def __new__(cls, *args: Any, **kwargs: Any) -> _NDArray:
        self = object.__new__(cls)
        self.shape: tuple = ()
        self.dtype = "?"
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, raw data or list)
        if isinstance(state, tuple) and len(state) >= 3:
            self.shape = tuple(state[1]) if _int_tuple(state[1]) else ()
            self.dtype = state[2].name if isinstance(state[2], _NumpyDtype) else "?"

    def __repr__(self) -> str:
        return f"<ndarray {self.dtype} {list(self.shape)}>"


def _plausible_shape(shape: Any) -> bool:
    return (isinstance(shape, (tuple, list)) and len(shape) <= 64 and _int_tuple(shape)
            and all(n >= 0 for n in shape)
            and _product(shape) < 1 << 62)


def _int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(
        isinstance(n, int) and not isinstance(n, bool) for n in value)


# Stand-ins for allowed globals. Each takes what the pickle gives and returns plain data or a
# description; none calls anything it was given.

def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any, dtype: Any = None, *_: Any) -> _Tensor:
    name = dtype.name if isinstance(dtype, _TorchDtype) else None
    return _Tensor(storage, offset, size, stride, name)


def _rebuild_meta_tensor(dtype: Any, size: Any, stride: Any, *_: Any) -> _Tensor:
    name = dtype.name if isinstance(dtype, _TorchDtype) else None
    return _Tensor(None, 0, size, stride, name)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    if isinstance(data, _Tensor):
        data.parameter = True
    return data


def _rebuild_from_cpu(data: Any, *_: Any) -> Any:
    return data


def _rebuild_layout_tensor(layout: Any, data: Any, *_: Any) -> Any:
    """A sparse or nested tensor: its component tensors (indices, values ...) are described
    where the walk finds them, inside this opaque value."""
    return _opaque_value("sparse or nested tensor", data)


class _TorchClass:
    """torch.Tensor / torch.nn.Parameter as named types (e.g. _rebuild_from_type_v2's new_type).
    Called on a tensor description, they hand it back."""

    global_name = "torch.Tensor"
    parameter = False

    def __new__(cls, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, _Tensor):
            data.parameter = data.parameter or cls.parameter
            return data
        return _opaque_value(cls.global_name, data, *args)


class _ParameterClass(_TorchClass):
    global_name = "torch.nn.parameter.Parameter"
    parameter = True


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
    # func is one of these stand-ins or an Opaque class: calling it is safe
    result = func(*args) if callable(func) and isinstance(args, tuple) else Opaque()
    if isinstance(result, _Tensor) and isinstance(new_type, type):
        if issubclass(new_type, _TorchClass):
            result.parameter = result.parameter or new_type.parameter
        elif issubclass(new_type, Opaque):
            result.subclass = new_type.global_name
    return result


_ENCODINGS = ("latin1", "latin-1", "utf-8", "utf8", "ascii")


def _codecs_encode(value: Any, encoding: Any = "utf-8", *_: Any) -> Any:
    # protocol 2 writes bytes as _codecs.encode(str, "latin1")
    if isinstance(value, str) and isinstance(encoding, str) and encoding.lower() in _ENCODINGS:
        return value.encode(encoding)
    raise pickle.UnpicklingError("unsupported _codecs.encode call")


def _numpy_scalar(dtype: Any, data: Any = None, *_: Any) -> Any:
    if isinstance(dtype, _NumpyDtype) and isinstance(data, (bytes, bytearray)):
        name = dtype.name
        value = _decode_scalar(name, bytes(data), dtype.byteorder != ">")
        if value is not None:
            return float(value) if name.startswith("float") else value
    return _opaque_value("numpy scalar")


def _numpy_reconstruct(cls: Any, *_: Any) -> Any:
    return _NDArray() if cls is _NDArray else _opaque_value("numpy._reconstruct")


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, *_: Any) -> _NDArray:
    array = _NDArray()
    array.__setstate__((1, shape, dtype))
    return array


def _opaque_value(name: str, *args: Any) -> Opaque:
    return _opaque_class(name)(*args)


def _check_hashable(obj: Any) -> None:
    """Hashing a tuple walks all of it, and a pickle can share one tuple at every level of a
    deep nest (BINGET): a few bytes make a dict key whose hash never finishes."""
    stack, count = [obj], 0
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, frozenset)):
            count += len(item)
            if count > 10_000:
                raise pickle.UnpicklingError("a dict key or set item nests too much to hash")
            stack.extend(item)


def _check_items(arg: Any, pairs: bool) -> None:
    if isinstance(arg, (list, tuple)):
        for item in arg:
            _check_hashable(item[0] if pairs and isinstance(item, (list, tuple)) and item
                            else item)


def _safe_call(name: str, func: Callable, hashes: str = "") -> Callable:
    """Wrap a builtin so odd arguments give an opaque value instead of failing the parse;
    `hashes` ("items" or "pairs") says what of its first argument it will hash."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, (range, Opaque)) for a in args):  # no lazy huge iterables
            return _opaque_value(name, *args)
        if hashes and args:
            _check_items(args[0], pairs=hashes == "pairs")
        try:
            return func(*args, **kwargs)
        except (TypeError, ValueError, OverflowError):
            return _opaque_value(name, *args)

    return call


def _bytearray(value: Any = b"", *rest: Any) -> Any:
    if isinstance(value, int):  # bytearray(n) would allocate n bytes
        return _opaque_value("builtins.bytearray", value)
    if isinstance(value, str):
        return bytearray(_codecs_encode(value, rest[0] if rest else "latin1"))
    return _safe_call("builtins.bytearray", bytearray)(value)


def _int(value: Any = 0, *rest: Any) -> Any:
    if isinstance(value, str) and len(value) > 4300:  # int() of long text is quadratic
        return _opaque_value("builtins.int", value)
    return _safe_call("builtins.int", int)(value, *rest)


def _range(*args: Any) -> Any:
    return _opaque_value("builtins.range", *args)  # never a real (lazy, huge) range


def _path(flavour: Any) -> Callable:
    def make(*parts: Any) -> Any:
        if all(isinstance(p, str) for p in parts):
            return flavour.join(*parts) if parts else "."
        return _opaque_value("pathlib path", *parts)

    return make


def _defaultdict(*_: Any) -> dict:
    return {}


class _OrderedDict(collections.OrderedDict):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            _check_items(args[0], pairs=True)
        super().__init__(*args, **kwargs)


def _counter(*args: Any) -> Any:
    return _safe_call("collections.Counter", dict, "pairs")(*args)


def _deque(items: Any = (), *_: Any) -> Any:
    return list(items) if isinstance(items, (list, tuple)) else []


def _torch_device(kind: Any = "cpu", index: Any = None) -> Any:
    if not isinstance(kind, str) or not isinstance(index, (int, type(None))):
        return _opaque_value("torch.device", kind, index)
    return f"{kind}:{index}" if index is not None else kind


def _torch_size(dims: Any = ()) -> Any:
    return tuple(dims) if isinstance(dims, (list, tuple)) else _opaque_value("torch.Size", dims)


def _reconstructor(cls: Any, base: Any = None, state: Any = None) -> Any:
    # copyreg._reconstructor(cls, object, None): protocol 0/1 object creation
    if isinstance(cls, type) and issubclass(cls, (Opaque, _Record, _NDArray)):
        return cls.__new__(cls)  # as pickle does: no __init__
    return _opaque_value("copyreg._reconstructor", cls)


def _newobj(cls: Any, *args: Any) -> Any:
    return _reconstructor(cls)


_ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": _OrderedDict,
    "collections.defaultdict": _defaultdict,
    "collections.Counter": _counter,
    "collections.deque": _deque,
    "builtins.set": _safe_call("builtins.set", set, "items"),
    "builtins.frozenset": _safe_call("builtins.frozenset", frozenset, "items"),
    "builtins.slice": _safe_call("builtins.slice", slice),
    "builtins.complex": _safe_call("builtins.complex", complex),
    "builtins.range": _range,
    "builtins.bytearray": _bytearray,
    "builtins.bytes": _safe_call("builtins.bytes", lambda v=b"": bytes(v)
                                 if not isinstance(v, int) else b""),
    "builtins.list": _safe_call("builtins.list", list),
    "builtins.tuple": _safe_call("builtins.tuple", tuple),
    "builtins.dict": _safe_call("builtins.dict", dict, "pairs"),
    "builtins.int": _int,
    "builtins.float": _safe_call("builtins.float", float),
    "builtins.bool": _safe_call("builtins.bool", bool),
    "builtins.str": _safe_call("builtins.str", lambda v="": v if isinstance(v, str) else ""),
    "builtins.object": object,
    "builtins.NoneType": type(None),
    "_codecs.encode": _codecs_encode,
    "copyreg._reconstructor": _reconstructor,
    "copyreg.__newobj__": _newobj,
    "argparse.Namespace": _Record,
    "types.SimpleNamespace": _Record,
    "pathlib.Path": _path(posixpath),
    "pathlib.PosixPath": _path(posixpath),
    "pathlib.PurePosixPath": _path(posixpath),
    "pathlib.WindowsPath": _path(ntpath),
    "pathlib.PureWindowsPath": _path(ntpath),
    "pathlib._local.PosixPath": _path(posixpath),
    "pathlib._local.PurePosixPath": _path(posixpath),
    "pathlib._local.WindowsPath": _path(ntpath),
    "pathlib._local.PureWindowsPath": _path(ntpath),
    "datetime.datetime": _safe_call("datetime.datetime", datetime.datetime),
    "datetime.date": _safe_call("datetime.date", datetime.date),
    "datetime.time": _safe_call("datetime.time", datetime.time),
    "datetime.timedelta": _safe_call("datetime.timedelta", datetime.timedelta),
    "datetime.timezone": _safe_call("datetime.timezone", datetime.timezone),
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_qtensor": _rebuild_tensor,
    "torch._utils._rebuild_meta_tensor_no_storage": _rebuild_meta_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": _rebuild_from_cpu,
    "torch._utils._rebuild_sparse_tensor": _rebuild_layout_tensor,
    "torch._utils._rebuild_nested_tensor": _rebuild_layout_tensor,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Tensor": _TorchClass,
    "torch.nn.parameter.Parameter": _ParameterClass,
    "torch.device": _torch_device,
    "torch.Size": _torch_size,
    "torch.serialization._get_layout": lambda name="": name if isinstance(name, str) else "?",
    "numpy.dtype": _NumpyDtype,
    "numpy.ndarray": _NDArray,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "numpy.core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy.core.numeric._frombuffer": _numpy_frombuffer,
    "numpy._core.numeric._frombuffer": _numpy_frombuffer,
    "lightning.fabric.utilities.data.AttributeDict": _PlainDict,
    "pytorch_lightning.utilities.parsing.AttributeDict": _PlainDict,
    "lightning_fabric.utilities.data.AttributeDict": _PlainDict,
}


# Classes that Hugging Face's Trainer and Accelerate pickle (training_args.bin): allowed as
# objects rebuilt without calling them (NEWOBJ + BUILD, as pickle writes them) and, for enums,
# looked up by value. A pickle that calls one of the others (REDUCE runs __init__, e.g.
# TrainingArguments.__post_init__) is not what the library writes: suspicious.
_KNOWN_ENUMS = {
    "transformers.trainer_utils.HubStrategy", "transformers.trainer_utils.IntervalStrategy",
    "transformers.trainer_utils.SaveStrategy", "transformers.trainer_utils.SchedulerType",
    "transformers.trainer_utils.FSDPOption", "transformers.training_args.OptimizerNames",
    "transformers.debug_utils.DebugOption", "transformers.trainer_utils.EvaluationStrategy",
    "transformers.training_args.ParallelMode", "accelerate.utils.dataclasses.DistributedType",
}
_KNOWN_OBJECTS = {
    "transformers.training_args.TrainingArguments",
    "transformers.training_args_seq2seq.Seq2SeqTrainingArguments",
    "transformers.trainer_pt_utils.AcceleratorConfig", "accelerate.state.PartialState",
}


def _known_class(name: str, findings: _Findings) -> type[Opaque]:
    """An Opaque stand-in that notes a call of a class only ever rebuilt by NEWOBJ."""

    def init(self: Opaque, *args: Any, **kwargs: Any) -> None:
        findings.note(findings.unknown, f"{name} (called)")

    return type("Known", (Opaque,), {"global_name": name, "__init__": init})


def _torch_global(module: str, name: str) -> Any:
    """torch dtypes, storage types and constants, or None when `module.name` is not one."""
    if module in ("torch", "torch.cuda", "torch.storage") and name in _STORAGE_DTYPES:
        return _StorageType(name)
    if module == "torch":
        dtype = _DTYPE_ALIASES.get(name, name)
        if dtype in _DTYPE_BITS:
            return _TorchDtype(dtype)
        if name in _TORCH_CONSTANTS:
            return f"torch.{name}"
    return None


# -- restricted unpickler --------------------------------------------------------------------


class _Findings:
    """What the unpicklers of one checkpoint met: globals and declared storages."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.dangerous: list[str] = []
        self.storages: dict[str, _Storage] = {}

    def note(self, bucket: list[str], name: str) -> None:
        if name not in bucket:
            bucket.append(name)


def _guarded(load: Callable, pick: Callable[[list], list]) -> Callable:
    def guarded_load(unpickler: pickle._Unpickler) -> None:
        for item in pick(unpickler.stack):
            _check_hashable(item)
        load(unpickler)

    return guarded_load


class _SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler: its memo is a dict. The C one sizes its memo array from the
    indices in the file, so one corrupt BINPUT can make it allocate and zero gigabytes."""

    def __init__(self, file: _Bounded, findings: _Findings) -> None:
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

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.resolved:  # pickles without memo repeat their globals
            self.resolved[(module, name)] = self._resolve(module, name)
        return self.resolved[(module, name)]

    def _resolve(self, module: str, name: str) -> Any:
        written = f"{module}.{name}"
        py3_module, py3_name = _py3_name(module, name)
        if _is_dangerous(module, name) or _is_dangerous(py3_module, py3_name):
            self.findings.note(self.findings.dangerous, written)
            return self._opaque(written)
        full = f"{py3_module}.{py3_name}"
        allowed = _ALLOWED.get(full)
        if allowed is None:
            allowed = _torch_global(py3_module, py3_name)
        if allowed is not None:
            return allowed
        if full in _KNOWN_ENUMS:
            return self._opaque(written)
        if full in _KNOWN_OBJECTS:
            return _known_class(written, self.findings)
        self.findings.note(self.findings.unknown, written)
        return self._opaque(written)

    def _opaque(self, name: str) -> type[Opaque]:
        if name not in self.opaque:
            self.opaque[name] = _opaque_class(name)
        return self.opaque[name]

    def persistent_load(self, pid: Any) -> Any:
        # torch: ("storage", storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unsupported persistent id ({type(pid).__name__})")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # legacy torch.save(model): the class and its source
            return _opaque_value("torch module source")
        if kind != "storage" or len(pid) < 5:
            raise pickle.UnpicklingError(f"unsupported persistent id {_key(kind)}")
        storage_type, key, location, numel = pid[1:5]
        if not isinstance(key, (str, int)) or not isinstance(numel, int) or not (
                0 <= numel < 1 << 62):
            raise pickle.UnpicklingError("malformed storage persistent id")
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else "uint8"
        key = str(key)
        location = location if isinstance(location, str) else "?"
        known = self.findings.storages.get(key)
        if known is not None and known.nbytes >= _nbytes(dtype, numel):
            return known
        storage = _Storage(key, dtype, numel, location)
        self.findings.storages[key] = storage
        return storage


_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError,
                  AttributeError, ArithmeticError, struct.error, RecursionError, MemoryError,
                  ImportError, SystemError)


class _Corrupt(Exception):
    """A file is damaged; the message is the reason shown to the user."""

    status = "corrupt"


class _TooLarge(_Corrupt):
    """Metadata past METADATA_LIMIT: not read, so nothing is known about the file."""

    status = "unknown"


def _too_large(what: str, limit: int = METADATA_LIMIT) -> _TooLarge:
    return _TooLarge(f"{what} too large to inspect (over {limit // (1024 * 1024)} MiB; "
                     "metadata is never that big)")


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
            raise _Corrupt(f"pickle error in {self.what}: it needs {n:,} more bytes, "
                           f"{self.available:,} are left")
        if n > self.left:
            raise _too_large(self.what, self.limit)
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


def _unpickle(file: Any, findings: _Findings, what: str, available: int | None = None) -> Any:
    bounded = _Bounded(file, what, available)
    try:
        return _SafeUnpickler(bounded, findings).load()
    except _PICKLE_ERRORS as exc:
        raise _Corrupt(f"pickle error in {what}: {exc or type(exc).__name__}") from None


# -- readers ---------------------------------------------------------------------------------


class _Parsed:
    """One file's root object, how to read a scalar tensor's bytes, and the integrity checks
    to run once the summary is filled (so a damaged file still shows what it holds)."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.root: Any = None
        self.little_endian = True
        self.read_bytes: Callable[[_Storage, int, int], bytes | None] = lambda s, o, n: None
        self.checks: list[Callable[[], None]] = []

    def scalar(self, value: Any) -> float | int | None:
        """A plain number, a numpy scalar, or a one-element tensor's value (a few bytes read)."""
        if isinstance(value, bool):
            return None
        if isinstance(value, float) or (isinstance(value, int) and value.bit_length() <= 63):
            return value
        if isinstance(value, _Tensor) and value.numel == 1 and value.storage is not None:
            size = _nbytes(value.dtype, 1)
            raw = self.read_bytes(value.storage, value.offset * size, size)
            if raw is not None and len(raw) == size:
                return _decode_scalar(value.dtype, raw, self.little_endian)
        return None


def _read_torch_zip(fp: Any, size: int, deep: bool, findings: _Findings) -> _Parsed:
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, NotImplementedError) as exc:
        raise _Corrupt(f"bad zip central directory ({exc})") from None
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise _Corrupt(f"bad zip central directory ({exc.strerror})") from None
    members = {info.filename: info for info in zf.infolist()}
    pkl = next((n for n in members if n.endswith("data.pkl") and n.count("/") <= 1
                and n.rsplit("/", 1)[-1] == "data.pkl"), None)
    if pkl is None:
        raise _Corrupt("zip archive has no data.pkl (not a torch checkpoint)")
    prefix = pkl[: -len("data.pkl")]
    parsed = _Parsed("torch-zip")
    if f"{prefix}byteorder" in members:
        byteorder = _zip_read(zf, members[f"{prefix}byteorder"], limit=64)
        parsed.little_endian = byteorder.strip() != b"big"
    parsed.root = _unpickle_member(zf, members[pkl], findings)
    parsed.checks.append(lambda: _check_zip_storages(findings, members, prefix))
    if deep:
        parsed.checks.append(lambda: _check_zip_crcs(zf))
    offsets: dict[str, int] = {}

    def read_bytes(storage: _Storage, offset: int, n: int) -> bytes | None:
        info = members.get(f"{prefix}data/{storage.key}")
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            return None
        if info.filename not in offsets:
            offsets[info.filename] = _member_data_offset(fp, info)
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
            raise _Corrupt(f"CRC mismatch in {name}") from None
        raise _Corrupt(f"bad zip member {name} ({exc})") from None
    except (EOFError, ValueError, struct.error, NotImplementedError, zlib.error) as exc:
        raise _Corrupt(f"bad zip member {name} ({exc})") from None
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a real I/O error, not a bad offset in the file
            raise
        raise _Corrupt(f"bad zip member {name} ({exc.strerror})") from None


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int = METADATA_LIMIT
              ) -> bytes:
    """A small member, whole. zipfile never inflates past the size the directory declares."""
    if info.file_size > limit:
        raise _too_large(f"{info.filename} ({info.file_size:,} bytes inflated)", limit)
    with _member_errors(info.filename):
        return zf.read(info)


def _unpickle_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, findings: _Findings) -> Any:
    """A zip member's pickle, inflated as the unpickler reads it, never past METADATA_LIMIT."""
    if info.file_size > METADATA_LIMIT:
        raise _too_large(f"{info.filename} ({info.file_size:,} bytes inflated)")
    with _member_errors(info.filename), zf.open(info) as member:
        root = _unpickle(member, findings, info.filename, info.file_size)
        while member.read(_CHUNK):  # to its end, so that zipfile checks its CRC
            pass
    return root


def _member_data_offset(fp: Any, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header (whose extra field torch
    pads for alignment, so it differs from the central directory's)."""
    with _member_errors(info.filename):
        fp.seek(info.header_offset)
        header = fp.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise _Corrupt(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _check_zip_storages(findings: _Findings, members: dict, prefix: str) -> None:
    for key in sorted(findings.storages, key=_natural):
        storage = findings.storages[key]
        name = f"{prefix}data/{key}"
        info = members.get(name)
        if info is None:
            raise _Corrupt(f"missing storage {name}")
        if storage.nbytes > info.file_size:
            raise _Corrupt(f"truncated storage {name} (declared {storage.nbytes} bytes, "
                           f"archive member has {info.file_size})")


def _check_zip_crcs(zf: zipfile.ZipFile) -> None:
    """zipfile checks a member's CRC once it is read to its end; stream every member."""
    for info in zf.infolist():
        with _member_errors(info.filename), zf.open(info) as member:
            while member.read(_CHUNK):
                pass


def _natural(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _read_pickle_file(info: CheckpointInfo, fp: Any, size: int, deep: bool,
                      findings: _Findings) -> _Parsed:
    """A legacy torch file (magic number, protocol, sys_info, data, storage keys, storages),
    or a plain pickle."""
    first = _unpickle(fp, findings, "pickle", size)
    if not (isinstance(first, int) and first == _TORCH_LEGACY_MAGIC):
        parsed = _Parsed("pickle")
        parsed.root = first
        return parsed
    info.format = "torch-legacy"
    parsed = _Parsed("torch-legacy")
    _unpickle(fp, findings, "protocol version", size - fp.tell())
    sys_info = _unpickle(fp, findings, "sys_info", size - fp.tell())
    if isinstance(sys_info, dict):
        parsed.little_endian = sys_info.get("little_endian", True) is not False
    parsed.root = _unpickle(fp, findings, "data pickle", size - fp.tell())
    keys = _unpickle(fp, findings, "storage keys", size - fp.tell())
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Corrupt("storage key list is malformed")
    starts = _legacy_storage_starts(keys, findings, fp.tell())
    parsed.checks.append(lambda: _check_legacy_sizes(keys, starts, findings, size))
    if deep:
        parsed.checks.append(lambda: _check_legacy_headers(fp, starts, findings))

    def read_bytes(storage: _Storage, offset: int, n: int) -> bytes | None:
        if storage.key not in starts:
            return None
        fp.seek(starts[storage.key] + 8 + offset)
        return fp.read(n)

    parsed.read_bytes = read_bytes
    return parsed


def _legacy_storage_starts(keys: list[str], findings: _Findings, at: int) -> dict[str, int]:
    """Each storage is an 8-byte element count then its bytes, in key-list order."""
    starts: dict[str, int] = {}
    for key in keys:
        storage = findings.storages.get(key)
        if storage is None:  # listed but never used: its size, so what follows, is unknown
            break
        starts[key] = at
        at += 8 + storage.nbytes
    return starts


def _check_legacy_sizes(keys: list[str], starts: dict[str, int], findings: _Findings,
                        size: int) -> None:
    missing = [k for k in findings.storages if k not in keys]
    if missing:
        raise _Corrupt(f"missing storage {missing[0]}")
    for key, at in starts.items():
        end = at + 8 + findings.storages[key].nbytes
        if end > size:
            raise _Corrupt(f"truncated storage {key} (ends {end - size} bytes past the end of "
                           "the file)")


def _check_legacy_headers(fp: Any, starts: dict[str, int], findings: _Findings) -> None:
    for key, at in starts.items():
        fp.seek(at)
        raw = fp.read(8)
        (count,) = struct.unpack("<q", raw) if len(raw) == 8 else (-1,)
        if count != findings.storages[key].numel:
            raise _Corrupt(f"storage {key} header says {count} elements, its pickle says "
                           f"{findings.storages[key].numel}")


class _SafetensorsFile:
    def __init__(self) -> None:
        self.tensors: list[TensorInfo] = []
        self.metadata: dict = {}
        self.checks: list[Callable[[], None]] = []


def _read_safetensors(fp: Any, size: int, deep: bool) -> _SafetensorsFile:
    if size < 8:
        raise _Corrupt(f"file too small for a safetensors header ({size} bytes)")
    (length,) = struct.unpack("<Q", fp.read(8))
    if length > size - 8:
        raise _Corrupt(f"header length {length} past end of file ({size} bytes)")
    if length > _SAFETENSORS_HEADER_LIMIT:
        raise _Corrupt(f"header length {length} over the safetensors limit of 100 MB")
    try:
        header = json.loads(fp.read(length))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Corrupt(f"bad safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise _Corrupt("bad safetensors header (not a JSON object)")
    out = _SafetensorsFile()
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise _Corrupt("bad safetensors header (__metadata__ is not an object)")
    out.metadata = meta
    spans = [_safetensors_entry(name, entry) for name, entry in header.items()]
    out.checks.append(lambda: _check_spans(spans, size - 8 - length, deep))
    out.tensors = [info for info, _, _ in spans]
    return out


def _safetensors_entry(name: str, entry: Any) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise _Corrupt(f"bad safetensors header (entry {name} is not an object)")
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    if not _plausible_shape(shape) or not isinstance(dtype, str):
        raise _Corrupt(f"bad safetensors header (tensor {name} has a malformed shape or dtype)")
    if not _int_tuple(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
        raise _Corrupt(f"bad safetensors header (tensor {name} has malformed data_offsets)")
    dtype = _SAFETENSORS_DTYPES.get(dtype, dtype.lower())
    numel = _product(shape)
    info = TensorInfo(name, dtype, tuple(shape), numel, _nbytes(dtype, numel))
    return info, offsets[0], offsets[1]


def _check_spans(spans: list, data_size: int, deep: bool) -> None:
    previous = None
    for info, begin, end in sorted(spans, key=lambda s: (s[1], s[2])):
        if end > data_size:
            raise _Corrupt(f"tensor {info.name} bytes [{begin}, {end}) past end of data "
                           f"({data_size} bytes)")
        if previous is not None and begin < previous[2]:
            raise _Corrupt(f"tensors {previous[0].name} and {info.name} overlap")
        if deep:
            if end - begin != info.nbytes and info.dtype in _DTYPE_BITS:
                raise _Corrupt(f"tensor {info.name} has {end - begin} bytes, {info.dtype} x "
                               f"{info.numel} needs {info.nbytes}")
            gap_from = previous[2] if previous is not None else 0
            if begin != gap_from:
                raise _Corrupt(f"bytes [{gap_from}, {begin}) of the data belong to no tensor")
        previous = (info, begin, end)
    if deep and (previous[2] if previous else 0) != data_size:
        raise _Corrupt(f"bytes [{previous[2] if previous else 0}, {data_size}) of the data "
                       "belong to no tensor")


# -- summary of a parsed torch object --------------------------------------------------------

_STEP_KEYS = ("global_step", "step", "iter_num", "iteration", "iter", "num_updates", "steps",
              "total_steps", "train_step", "num_steps")
_EPOCH_KEYS = ("epoch", "current_epoch", "cur_epoch", "epochs")
_LOSS_KEYS = ("loss", "val_loss", "valid_loss", "eval_loss", "train_loss", "best_val_loss",
              "best_loss")
_BEST_KEYS = ("best_metric", "best_val_loss", "best_loss", "best_score", "best_acc",
              "best_accuracy", "best_model_score")
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "module", "model_state", "net",
                "network", "params", "weights", "ema")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_states", "optimizers",
                   "optim", "opt", "optimizer_state")
_NON_WEIGHT_KEYS = (*_OPTIMIZER_KEYS, "lr_scheduler", "lr_schedulers", "scheduler",
                    "schedulers", "scaler", "grad_scaler", "rng_state", "rng", "callbacks",
                    "loops")
_HPARAM_KEYS = ("hyper_parameters", "hparams", "config", "cfg", "args", "hyperparameters",
                "train_config", "training_args", "opt")
_MODEL_ARG_KEYS = ("model_args", "model_config", "model_cfg")
_METRIC_WORDS = re.compile(r"loss|acc|metric|score|ppl|perplex|step|epoch|iter|reward|bleu|f1",
                           re.IGNORECASE)
_NESTED_NUMBER_KEYS = ("metrics", "stats", "scores", "results", "train_state",
                       "training_state", "trainer_state", "progress", "meta", "metadata")


def _children(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [(_key(k), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(obj)]
    if isinstance(obj, _Record):
        return [(_key(k), v) for k, v in obj.attrs.items()]
    if isinstance(obj, Opaque):
        kids = [(f"arg{i}", a) for i, a in enumerate(obj.args)]
        kids += [(_key(k), v) for k, v in obj.items.items()]
        kids += [(str(i), v) for i, v in enumerate(obj.listitems)]
        if isinstance(obj.state, dict):
            kids += [(_key(k), v) for k, v in obj.state.items()]
        elif obj.state is not None:
            kids.append(("state", obj.state))
        return kids
    return []


def _key(key: Any, depth: int = 0) -> str:
    """A dict key as text, bounded however the pickle nests or shares it."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, float)):
        return str(key)
    if isinstance(key, int):
        return str(key) if key.bit_length() <= 64 else f"<int of {key.bit_length()} bits>"
    if isinstance(key, (Opaque, _Described)):
        return repr(key)
    if isinstance(key, tuple) and depth < 2:
        more = ", ..." if len(key) > 6 else ""
        return "(" + ", ".join(_key(k, depth + 1) for k in key[:6]) + more + ")"
    return f"<{type(key).__name__}>"


def _walk_tensors(root: Any, prefix: str = "") -> dict[tuple, tuple[str, _Tensor]]:
    """Every tensor under root, once per distinct view of a storage, with its dotted path."""
    found: dict[tuple, tuple[str, _Tensor]] = {}
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(prefix, root)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, _Tensor):
            found.setdefault(obj.view_key(), (path, obj))
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kids = _children(obj)
        for name, child in reversed(kids):  # reversed: pop in file order
            # names stop growing past a sane depth: a pickle can nest lists 100k deep
            child_path = f"{path}.{name}" if path else name
            stack.append((child_path if len(child_path) <= 400 else path, child))
    return found


def _weights_section(root: Any, fmt: str) -> Any:
    """The part of a checkpoint holding the model's weights (not optimizer state)."""
    if not isinstance(root, dict):
        return root
    if fmt == "lightning":
        return root.get("state_dict")
    if {"state", "param_groups"} <= set(root):  # an optimizer's own state_dict
        return None
    for key in _WEIGHT_KEYS:
        if key in root and _walk_tensors(root[key]):
            return root[key]
    if root and all(isinstance(v, _Tensor) for v in root.values()):
        return root
    return {k: v for k, v in root.items() if _key(k) not in _NON_WEIGHT_KEYS}


def _is_lightning(root: Any) -> bool:
    return isinstance(root, dict) and ("pytorch-lightning_version" in root or (
        "state_dict" in root and bool({"loops", "callbacks", "optimizer_states"} & set(root))))


def _summarize_torch(info: CheckpointInfo, parsed: _Parsed) -> None:
    root = parsed.root
    if _is_lightning(root):
        parsed.format = "lightning"
    info.format = parsed.format
    found = _walk_tensors(root)
    _fill_tensors(info, [(name, t) for name, t in found.values()])
    weights = _weights_section(root, parsed.format)
    info.param_count = sum(t.numel for _, t in _walk_tensors(weights).values()) if (
        weights is not None) else 0
    parsed.checks.insert(0, lambda: _check_tensor_bounds(found.values()))
    if isinstance(root, Opaque) and isinstance(root.state, dict):
        info.hparams = _plain_fields(root.state)  # e.g. transformers' TrainingArguments
    if not isinstance(root, dict):
        return
    info.top_keys = [_key(k) for k in list(root)[:100]]
    info.has_optimizer = ({"state", "param_groups"} <= set(root)) or any(
        bool(root.get(k)) for k in _OPTIMIZER_KEYS)
    _extract_numbers(info, root, parsed)
    info.hparams = _first_mapping(root, _HPARAM_KEYS)
    info.model_args = _first_mapping(root, _MODEL_ARG_KEYS)
    if parsed.format == "lightning":
        _summarize_lightning(info, root, parsed)


def _fill_tensors(info: CheckpointInfo, named: list[tuple[str, _Tensor]]) -> None:
    info.tensor_count = len(named)
    for _, t in named:
        info.dtypes[t.dtype] = info.dtypes.get(t.dtype, 0) + 1
    biggest = sorted(named, key=lambda nt: (-nt[1].nbytes, nt[0]))[:TENSOR_LIST_CAP]
    info.tensors = [TensorInfo(name, t.dtype, t.shape, t.numel, t.nbytes)
                    for name, t in biggest]


def _check_tensor_bounds(found: Any) -> None:
    for name, t in found:
        if t.storage is not None and t.byte_extent() > t.storage.nbytes:
            raise _Corrupt(f"tensor {name} reaches past the end of its storage "
                           f"{t.storage.key} ({t.byte_extent()} > {t.storage.nbytes} bytes)")


def _extract_numbers(info: CheckpointInfo, root: dict, parsed: _Parsed) -> None:
    if root and all(isinstance(v, _Tensor) for v in root.values()):
        return  # a bare state dict
    numbers: dict[str, float | int] = {}
    for nested in _NESTED_NUMBER_KEYS:
        if isinstance(root.get(nested), dict):
            numbers.update(_numbers_in(root[nested], parsed))
    numbers.update(_numbers_in(root, parsed))  # top level wins
    _apply_numbers(info, numbers)


def _numbers_in(mapping: dict, parsed: _Parsed) -> dict[str, float | int]:
    """Numbers stored under string keys; one-element tensors only under metric-like keys
    (reading them costs a seek, and a state dict's buffers are not metrics)."""
    out: dict[str, float | int] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or (isinstance(value, _Tensor) and not _METRIC_WORDS.search(
                key)):
            continue
        number = parsed.scalar(value)
        if number is not None:
            out[key] = number
    return out


def _plain_fields(state: dict) -> dict:
    return {k: _plain(v) for k, v in state.items()
            if isinstance(k, str) and (v is None or isinstance(v, (bool, int, float, str)))}


def _apply_numbers(info: CheckpointInfo, numbers: dict[str, float | int]) -> None:
    step = _first(numbers, _STEP_KEYS)
    if step is not None and float(step).is_integer():
        info.step = int(step)
    epoch = _first(numbers, _EPOCH_KEYS)
    info.epoch = float(epoch) if epoch is not None else None
    loss, best = _first(numbers, _LOSS_KEYS), _first(numbers, _BEST_KEYS)
    info.loss = float(loss) if loss is not None else info.loss
    info.best_metric = float(best) if best is not None else info.best_metric
    skip = set(_STEP_KEYS) | set(_EPOCH_KEYS)
    info.metrics.update({k: float(v) for k, v in numbers.items() if k not in skip})


def _first(numbers: dict, keys: tuple[str, ...]) -> Any:
    return next((numbers[k] for k in keys if k in numbers), None)


def _first_mapping(root: dict, keys: tuple[str, ...]) -> dict | None:
    for key in keys:
        value = root.get(key)
        if isinstance(value, _Record):
            return _plain(value.attrs)
        if isinstance(value, dict) and value:
            return _plain(value)
    return None


def _summarize_lightning(info: CheckpointInfo, root: dict, parsed: _Parsed) -> None:
    callbacks = root.get("callbacks")
    if isinstance(callbacks, dict):
        info.callbacks = [_key(k) for k in callbacks]
        for key, state in callbacks.items():
            if isinstance(state, dict) and _key(key).startswith("ModelCheckpoint"):
                _lightning_checkpoint_scores(info, state, parsed)
    for key in ("pytorch-lightning_version", "hparams_name"):
        if isinstance(root.get(key), str):
            info.metadata[key] = root[key]


def _lightning_checkpoint_scores(info: CheckpointInfo, state: dict, parsed: _Parsed) -> None:
    monitor = state.get("monitor")
    current = parsed.scalar(state.get("current_score"))
    best = parsed.scalar(state.get("best_model_score"))
    if isinstance(monitor, str) and current is not None:
        info.metrics.setdefault(monitor, float(current))
        if "loss" in monitor and info.loss is None:
            info.loss = float(current)
    if best is not None:
        info.metrics.setdefault(f"best_{monitor}" if isinstance(monitor, str)
                                else "best_model_score", float(best))
        if info.best_metric is None:
            info.best_metric = float(best)


def _summarize_safetensors(info: CheckpointInfo, st: _SafetensorsFile) -> None:
    info.format = "safetensors"
    info.tensor_count = len(st.tensors)
    info.param_count = sum(t.numel for t in st.tensors)
    for t in st.tensors:
        info.dtypes[t.dtype] = info.dtypes.get(t.dtype, 0) + 1
    info.tensors = sorted(st.tensors, key=lambda t: (-t.nbytes, t.name))[:TENSOR_LIST_CAP]
    info.metadata = {str(k): v for k, v in st.metadata.items()}
    numbers = {}
    for key, value in st.metadata.items():
        try:
            numbers[str(key)] = float(value) if "." in str(value) else int(value)
        except (TypeError, ValueError):
            continue
    _apply_numbers(info, numbers)


# -- Keras (.keras zips, .weights.h5 and legacy .h5 files) -----------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KERAS_WEIGHTS = "model.weights.h5"
# Member CRCs of a .keras are always checked up to this much data (a Keras model is usually
# small); past it only with deep=True, and the report says they were not.
KERAS_CRC_LIMIT = 256 * 1024 * 1024
_IN_MEMORY_LIMIT = 32 * 1024 * 1024  # a compressed model.weights.h5 is read whole


def _hdf5_reader() -> Any:
    """The sibling HDF5 reader: a package import, or the file next to this one when this file
    runs alone (`python3 inspect.py`, or as ckpt_inspect.py beside ckpt_hdf5.py on a host)."""
    if __package__:
        from . import hdf5
        return hdf5
    if "ckpt_hdf5" in sys.modules:
        return sys.modules["ckpt_hdf5"]
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("ckpt_hdf5.py", "hdf5.py"):
        path = os.path.join(here, name)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("ckpt_hdf5", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["ckpt_hdf5"] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            return module
    return None


def _read_at(fp: Any, start: int = 0) -> Callable[[int, int], bytes]:
    def read(offset: int, n: int) -> bytes:
        fp.seek(start + offset)
        return fp.read(n)

    return read


def _zip_end_problem(fp: Any, size: int) -> str | None:
    """Why the zip has no usable end record (a save cut short or still running), else None."""
    tail_start = max(0, size - 65557)  # the end record (22 bytes) + the longest comment
    fp.seek(tail_start)
    tail = fp.read()
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0 and at + 22 + int.from_bytes(tail[at + 20:at + 22], "little") != len(tail):
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        return (f"truncated or unfinished zip: no end-of-central-directory record "
                f"({size:,} bytes)")
    cd_size, cd_offset = struct.unpack_from("<II", tail, at + 12)
    if cd_offset != 0xFFFFFFFF and cd_offset + cd_size > tail_start + at:
        return (f"truncated zip: its central directory (bytes {cd_offset:,}-"
                f"{cd_offset + cd_size:,}) overlaps its end record at byte {tail_start + at:,}")
    return None


def _read_keras(info: CheckpointInfo, fp: Any, size: int, deep: bool) -> None:
    info.format = "keras"
    problem = _zip_end_problem(fp, size)
    if problem:
        raise _Corrupt(problem)
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, NotImplementedError) as exc:
        raise _Corrupt(f"bad zip central directory ({exc})") from None
    members = {i.filename: i for i in zf.infolist()}
    info.top_keys = list(members)[:100]
    for info_ in members.values():
        if info_.header_offset + 30 + info_.compress_size > size:
            raise _Corrupt(f"zip member {info_.filename} runs past the end of the file")
    config = _keras_json(zf, members, "config.json")
    metadata = _keras_json(zf, members, "metadata.json")
    _keras_config(info, config if isinstance(config, dict) else {})
    if isinstance(metadata, dict):
        info.metadata.update({k: metadata[k] for k in ("keras_version", "date_saved")
                              if isinstance(metadata.get(k), str)})
    if _KERAS_WEIGHTS in members:
        _keras_inner_weights(info, fp, zf, members[_KERAS_WEIGHTS])
    elif "model.weights.npz" in members:
        info.unverified.append("weights stored as model.weights.npz: arrays not listed")
    else:
        raise _Corrupt(f"no {_KERAS_WEIGHTS} in the archive")
    total = sum(i.file_size for i in members.values())
    if deep or total <= KERAS_CRC_LIMIT:
        _check_zip_crcs(zf)
    else:
        info.unverified.append(f"member CRCs not checked ({total:,} bytes; use --deep)")


def _keras_json(zf: zipfile.ZipFile, members: dict, name: str) -> Any:
    if name not in members:
        raise _Corrupt(f"no {name} in the archive (not a Keras model file)")
    try:
        return json.loads(_zip_read(zf, members[name]))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Corrupt(f"{name}: invalid JSON ({exc})") from None


def _keras_config(info: CheckpointInfo, config: dict) -> None:
    """Model class, name and layers from a Keras model config; the optimizer and loss from
    its compile config (a .keras file) or training config (a legacy .h5)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    model: dict[str, Any] = {"class": config.get("class_name")}
    if isinstance(inner.get("name"), str):
        model["name"] = inner["name"]
    layers = inner.get("layers")
    if isinstance(layers, list):
        classes = collections.Counter(
            str(layer.get("class_name")) for layer in layers if isinstance(layer, dict))
        model["layers"] = len(layers)
        model["layer_classes"] = ", ".join(
            name if n == 1 else f"{name} x{n}" for name, n in classes.items())
    info.model_args = _plain(model)
    compiled = config.get("compile_config")
    if isinstance(compiled, dict):
        _keras_training(info, compiled.get("optimizer"), compiled.get("loss"))


def _keras_training(info: CheckpointInfo, optimizer: Any, loss: Any) -> None:
    if isinstance(optimizer, dict):
        name = optimizer.get("class_name")
        settings = optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {}
        rate = settings.get("learning_rate")
        if isinstance(name, str):
            info.metadata["optimizer"] = name + (
                f" (learning_rate={rate:.6g})" if isinstance(rate, (int, float)) else "")
    if isinstance(loss, str):
        info.metadata["loss"] = loss


def _keras_inner_weights(info: CheckpointInfo, fp: Any, zf: zipfile.ZipFile,
                         member: zipfile.ZipInfo) -> None:
    """model.weights.h5 read in place when stored (the Keras default), else from memory."""
    if member.compress_type == zipfile.ZIP_STORED:
        read = _read_at(fp, _member_data_offset(fp, member))
    elif member.file_size <= _IN_MEMORY_LIMIT:
        data = _zip_read(zf, member, limit=_IN_MEMORY_LIMIT)
        read = lambda offset, n: data[offset:offset + n]  # noqa: E731
    else:
        info.unverified.append(f"{member.filename} is compressed and {member.file_size:,} "
                               "bytes: not read")
        return
    summary = _walk_hdf5(info, read, member.file_size, member.filename)
    if summary is not None:
        _keras_weights(info, summary, read)


def _walk_hdf5(info: CheckpointInfo, read: Callable[[int, int], bytes], size: int,
               what: str = "") -> Any:
    """The HDF5 walk (None, noted as unverified, where the reader was not copied along)."""
    hdf5 = _hdf5_reader()
    if hdf5 is None:
        info.unverified.append(f"HDF5 {what or 'structure'} not read: the HDF5 reader "
                               "(hdf5.py) is not next to this file")
        return None
    prefix = f"{what}: " if what else ""
    try:
        summary = hdf5.read_hdf5(read, size)
    except hdf5.HDF5Error as exc:
        raise _Corrupt(f"{prefix}{exc}") from None
    if summary.open_for_writing:
        raise _Corrupt(f"{prefix}HDF5 file still open for writing, or its writer died before "
                       "closing it")
    if summary.size > summary.eof:
        summary.unverified.append(f"{prefix}{summary.size - summary.eof:,} bytes past the end "
                                  "the superblock records were not read")
    return summary


def _read_hdf5_file(info: CheckpointInfo, fp: Any, size: int, deep: bool) -> None:
    info.format = "hdf5"
    read = _read_at(fp)
    summary = _walk_hdf5(info, read, size)
    if summary is not None:
        _keras_weights(info, summary, read)
        info.unverified.append("dataset bytes not checked (HDF5 keeps no checksum of them)")


def _keras_weights(info: CheckpointInfo, summary: Any, read: Callable[[int, int], bytes]
                   ) -> None:
    """Tensors, parameters, optimizer state and step of a Keras weights layout (Keras 3
    `layers/<name>/vars/N` + `optimizer/vars/N`, or legacy `model_weights/` +
    `optimizer_weights/`); other HDF5 files are listed as they are."""
    root = next((g.attrs for g in summary.groups if g.path == ""), {})
    groups = {g.path for g in summary.groups}
    legacy = "model_weights" in groups or "layer_names" in root or "model_config" in root
    keras3 = "layers" in groups or "optimizer/vars" in groups or "vars" in groups
    if info.format != "keras":
        info.format = "keras-h5" if legacy else "keras-weights" if keras3 else "hdf5"
    optimizer_prefix = "optimizer_weights/" if legacy else "optimizer/"
    weights_prefix = "model_weights/" if "model_weights" in groups else ""
    info.tensor_count = len(summary.datasets)
    weights = []
    for ds in summary.datasets:
        info.dtypes[ds.dtype] = info.dtypes.get(ds.dtype, 0) + 1
        if ds.path.startswith(weights_prefix) and not ds.path.startswith(optimizer_prefix) \
                and not _keras_tracker(ds.path):
            weights.append(ds)
    info.param_count = sum(ds.numel for ds in weights)
    info.has_optimizer = any(ds.path.startswith(optimizer_prefix) for ds in summary.datasets)
    tensors = [TensorInfo(ds.path, ds.dtype, ds.shape, ds.numel, _nbytes(ds.dtype, ds.numel))
               for ds in summary.datasets]
    info.tensors = sorted(tensors, key=lambda t: (-t.nbytes, t.name))[:TENSOR_LIST_CAP]
    if info.format != "keras":
        info.top_keys = sorted({g.path.split("/")[0] for g in summary.groups if g.path})[:100]
    info.metadata["hdf5_superblock"] = summary.superblock_version
    info.unverified.extend(summary.unverified)
    _keras_step(info, summary, optimizer_prefix, read)
    if legacy:
        _keras_legacy_attrs(info, root, groups, summary)
    elif keras3 and info.model_args is None:
        names = [g.attrs.get("name") for g in summary.groups
                 if g.path.endswith("/vars") and not g.path.startswith(optimizer_prefix)
                 and any(ds.path.startswith(g.path + "/") for ds in weights)]
        info.model_args = {"weight_layers": len(names),
                           "layer_names": [n for n in names if isinstance(n, str)][:50]}


def _keras_tracker(path: str) -> bool:
    """Variables of metrics and loss trackers are not model weights."""
    top = path.split("/", 1)[0]
    return "metric" in top or "loss" in top


def _keras_step(info: CheckpointInfo, summary: Any, optimizer_prefix: str,
                read: Callable[[int, int], bytes]) -> None:
    """The optimizer's iteration count (its first variable in Keras 3, `iteration(s)` in the
    legacy layout) is the number of training steps taken."""
    hdf5 = _hdf5_reader()
    for ds in summary.datasets:
        name = ds.path.rsplit("/", 1)[-1]
        first = ds.path == f"{optimizer_prefix}vars/0"
        legacy = ds.path.startswith(optimizer_prefix) and name in ("iteration", "iterations")
        if (first or legacy) and ds.shape == () and ds.dtype.startswith(("int", "uint")):
            value = hdf5.read_scalar(read, ds)
            if isinstance(value, int) and value >= 0:
                info.step = value
            return


def _keras_legacy_attrs(info: CheckpointInfo, root: dict, groups: set, summary: Any) -> None:
    for key in ("keras_version", "backend"):
        if isinstance(root.get(key), str):
            info.metadata[key] = root[key]
    for key, apply in (("model_config", lambda c: _keras_config(info, c)),
                       ("training_config", lambda c: _keras_training(
                           info, c.get("optimizer_config"), c.get("loss")))):
        text = root.get(key)
        if not isinstance(text, str):
            continue
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _Corrupt(f"{key} attribute: invalid JSON ({exc})") from None
        if isinstance(value, dict):
            apply(value)
    if info.model_args is None:
        weights_group = next((g for g in summary.groups if g.path in ("model_weights", "")
                              and isinstance(g.attrs.get("layer_names"), list)), None)
        if weights_group is not None:
            names = weights_group.attrs["layer_names"]
            info.model_args = {"layers_with_weights": len(names), "layer_names": names[:50]}


# -- JSON-safe view --------------------------------------------------------------------------


def _plain(obj: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Plain JSON data for display: stand-ins become short markers. A node budget and a depth
    cap bound the work, however a pickle nests or shares its containers."""
    budget = [20_000] if budget is None else budget
    budget[0] -= 1
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return obj if obj.bit_length() <= 64 else f"<int of {obj.bit_length()} bits>"
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, str):
        return obj if len(obj) <= 2000 else obj[:2000] + "..."
    if depth > 12 or budget[0] < 0:
        return "..."
    if isinstance(obj, _Record):
        obj = obj.attrs
    if isinstance(obj, dict):
        return {_key(k): _plain(v, depth + 1, budget) for k, v in list(obj.items())[:500]}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1, budget) for v in list(obj)[:500]]
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    if isinstance(obj, (datetime.date, datetime.time, datetime.timedelta)):
        return str(obj)
    if isinstance(obj, (Opaque, _Described, _NDArray, _NumpyDtype)):
        return repr(obj)  # short, never recursive
    if isinstance(obj, complex):
        return str(obj)
    return f"<{type(obj).__name__}>"


# -- entry points ----------------------------------------------------------------------------

_CACHE: collections.OrderedDict[tuple, CheckpointInfo] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_STATS = {"hits": 0, "misses": 0}


def inspect_checkpoint(path: str | os.PathLike, *, deep: bool = False) -> CheckpointInfo:
    """Describe a checkpoint file or directory. Never raises for a bad file (status `corrupt`
    with the reason); raises FileNotFoundError for a missing path. The result is cached and
    shared: treat it as read-only."""
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    key = (path, _signature(path, st), bool(deep))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            _STATS["hits"] += 1
            return cached
        _STATS["misses"] += 1
    if stat.S_ISDIR(st.st_mode):
        info = _inspect_dir(path, st, deep)
    else:
        info = _inspect_file(path, st, deep)
    with _CACHE_LOCK:
        _CACHE[key] = info
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return info


def cache_clear() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATS.update(hits=0, misses=0)


def cache_stats() -> dict[str, int]:
    with _CACHE_LOCK:
        return {**_STATS, "size": len(_CACHE)}


def _signature(path: str, st: os.stat_result) -> tuple:
    if not stat.S_ISDIR(st.st_mode):
        return (st.st_size, st.st_mtime_ns, st.st_ino)
    # a directory changes when any of its files does (rewritten in place or replaced)
    entries = []
    for sub in _dir_files(path):
        try:
            s = os.stat(os.path.join(path, sub))
        except OSError:
            continue
        entries.append((sub, s.st_size, s.st_mtime_ns, s.st_ino))
    if _TORCHTUNE_DIR.match(os.path.basename(path)):  # its recipe state lives beside it
        for rel in _RECIPE_STATES:
            with contextlib.suppress(OSError):
                s = os.stat(os.path.join(os.path.dirname(path), rel))
                entries.append((rel, s.st_size, s.st_mtime_ns, s.st_ino))
    return (st.st_mtime_ns, tuple(entries))


def _inspect_file(path: str, st: os.stat_result, deep: bool) -> CheckpointInfo:
    info = CheckpointInfo(path=path, kind="file", format="unknown", size=st.st_size,
                          mtime=st.st_mtime)
    findings = _Findings()
    try:
        if not stat.S_ISREG(st.st_mode):
            raise _Corrupt("not a regular file")
        if st.st_size == 0:
            raise _Corrupt("empty file (0 bytes)")
        with open(path, "rb") as fp:
            _read_any(info, fp, st.st_size, deep, findings)
    except _Corrupt as exc:
        info.status, info.reason = exc.status, str(exc)
    _apply_findings(info, findings)
    return info


def inspect_fileobj(fp: Any, path: str, size: int, mtime: float = 0.0, *,
                    deep: bool = False) -> CheckpointInfo:
    """Describe a checkpoint read from a seekable binary file object of `size` bytes (e.g.
    ranged reads of an S3 object); `path` is only what the report calls it. Not cached. A bad
    file is `corrupt`/`suspicious` as for a path; I/O errors raised by `fp` propagate."""
    info = CheckpointInfo(path=str(path), kind="file", format="unknown", size=size,
                          mtime=mtime)
    findings = _Findings()
    try:
        if size == 0:
            raise _Corrupt("empty file (0 bytes)")
        _read_any(info, fp, size, deep, findings)
    except _Corrupt as exc:
        info.status, info.reason = exc.status, str(exc)
    _apply_findings(info, findings)
    return info


def _apply_findings(info: CheckpointInfo, findings: _Findings) -> None:
    info.unknown_globals = sorted(findings.unknown)
    info.dangerous_globals = sorted(findings.dangerous)
    # A global known to run code outranks damage: the file must never be loaded. A merely
    # unknown one only marks an otherwise sound file (damage says more, and --trust must
    # never hide it).
    if info.dangerous_globals:
        names = ", ".join(info.dangerous_globals)
        plural = "s" if len(info.dangerous_globals) > 1 else ""
        info.status = "suspicious"
        info.reason = f"dangerous global{plural} {names} (can run code when loaded)"
    elif info.unknown_globals and info.status == "ok":
        names = ", ".join(info.unknown_globals)
        plural = "s" if len(info.unknown_globals) > 1 else ""
        info.status = "suspicious"
        info.reason = (f"unknown global{plural} {names} (not on the allow-list: loading it "
                       "may run code)")


def unsound_reason(info: CheckpointInfo, trusted_globals: Any = ()) -> str | None:
    """The one rule for resuming: None when `info` may be resumed from, else "status: why".
    Sound = `ok`, or `suspicious` only through unknown globals that are all in
    `trusted_globals` (`trainctl resume --from PATH --trust`); a global known to run code,
    damage and "too large to inspect" are never trusted."""
    if info.status == "ok" or trust_problem(info, trusted_globals) is None:
        return None
    return f"{info.status}: {info.reason}"


def trust_problem(info: CheckpointInfo, trusted_globals: Any) -> str | None:
    """None when trusting `trusted_globals` makes `info` sound, else why it does not."""
    if info.status != "suspicious":
        return f"it is {info.status}" + (f": {info.reason}" if info.reason else "")
    if info.dangerous_globals:
        return (f"{', '.join(info.dangerous_globals)} can run code when loaded; --trust only "
                "covers globals that are merely unknown")
    untrusted = [name for name in info.unknown_globals if name not in set(trusted_globals)]
    if untrusted:
        return f"not trusted: {', '.join(untrusted)}"
    return None


def _read_any(info: CheckpointInfo, fp: Any, size: int, deep: bool,
              findings: _Findings) -> None:
    head = fp.read(64)
    fp.seek(0)
    lower = info.path.lower()
    if head.startswith(_LFS_MAGIC):
        info.format = "git-lfs-pointer"
        _lfs_pointer(info, fp.read(1024))
    elif lower.endswith(".keras") and head[:4] != b"PK\x03\x04":
        info.format = "keras"
        raise _Corrupt(f"not a zip archive, as a .keras file is (starts with {head[:8]!r})")
    elif lower.endswith((".h5", ".hdf5")) and not head.startswith(_HDF5_SIGNATURE):
        info.format = "hdf5"
        raise _Corrupt(f"not an HDF5 file: no HDF5 signature (starts with {head[:8]!r})")
    elif head.startswith(_HDF5_SIGNATURE):
        _read_hdf5_file(info, fp, size, deep)
    elif lower.endswith(".keras"):
        _read_keras(info, fp, size, deep)
    elif head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        info.format = "torch-zip"
        parsed = _read_torch_zip(fp, size, deep, findings)
        _summarize_torch(info, parsed)
        _run(parsed.checks)
    elif len(head) > 8 and head[8:9] == b"{":
        info.format = "safetensors"
        st = _read_safetensors(fp, size, deep)
        _summarize_safetensors(info, st)
        _run(st.checks)
    elif head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]", b")", b"c"):  # protocol 2+ / 0-1
        info.format = "pickle"
        parsed = _read_pickle_file(info, fp, size, deep, findings)
        _summarize_torch(info, parsed)
        _run(parsed.checks)
    elif info.path.endswith(".safetensors"):
        info.format = "safetensors"
        raise _Corrupt("bad safetensors header (does not start with a header length and '{')")
    else:
        raise _Corrupt(f"unrecognized file format (starts with {head[:8]!r})")


def _run(checks: list[Callable[[], None]]) -> None:
    for check in checks:
        check()


def _lfs_pointer(info: CheckpointInfo, text: bytes) -> None:
    fields = dict(line.split(" ", 1) for line in text.decode("utf-8", "replace").splitlines()
                  if " " in line)
    info.metadata = {k: fields[k] for k in ("oid", "size") if k in fields}
    size = fields.get("size", "?")
    raise _Corrupt(f"git-lfs pointer, not the data ({size} bytes not fetched; "
                   "run `git lfs pull`)")


# -- Hugging Face (and other) checkpoint directories -----------------------------------------

_WEIGHT_FILE = re.compile(
    r"^(model|pytorch_model|adapter_model|diffusion_pytorch_model|consolidated|tf_model|"
    r"flax_model)([._-].*)?\.(safetensors|bin|pt|pth)$|.*model_states\.pt$")
_ROLES = (("optimizer", re.compile(r"optimizer.*\.(pt|bin|pth)$|.*optim_states\.pt$")),
          ("scheduler", re.compile(r"scheduler.*\.(pt|pth|bin)$")),
          ("rng_state", re.compile(r"(rng_state.*\.pth?|random_states_\d+\.pkl)$")),
          ("custom_state", re.compile(r"custom_checkpoint_\d+\.pkl$")),  # Accelerate's
          ("training_args", re.compile(r"training_args\.bin$")),
          ("scaler", re.compile(r"scaler\.pt$")))
_TENSOR_FILE = re.compile(r".*\.(safetensors|bin|pt|pth|ckpt)$")


def _dir_files(path: str) -> list[str]:
    """Files of a checkpoint dir, and of its real sub-folders one level down (DeepSpeed's
    global_stepN/), as relative paths. Symlinked folders (`up -> ..`) are not entered;
    entries that cannot be looked at (a symlink loop) are left out."""
    out = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if _is_file(entry):
            out.append(entry.name)
        elif _is_real_dir(entry):
            with os.scandir(entry.path) as inner:
                out.extend(f"{entry.name}/{e.name}" for e in sorted(inner, key=lambda e: e.name)
                           if _is_file(e))
    return out


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_real_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _role(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    if _WEIGHT_FILE.match(base):
        return "weights"
    for role, pattern in _ROLES:
        if pattern.match(base):
            return role
    if base == "trainer_state.json":
        return "trainer_state"
    if base.endswith(".index.json"):
        return "index"
    if base.endswith(".json"):
        return "config"
    return "other" if not _TENSOR_FILE.match(base) else "tensors"


def _inspect_dir(path: str, st: os.stat_result, deep: bool) -> CheckpointInfo:
    files = []
    for name in _dir_files(path):
        try:
            fst = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue  # removed while we looked
        files.append((name, fst.st_size, fst.st_mtime))

    def read_file(name: str) -> bytes:
        with open(os.path.join(path, name), "rb") as fp:
            data = fp.read(METADATA_LIMIT + 1)
        if len(data) > METADATA_LIMIT:
            raise _too_large(name)
        return data

    info = inspect_dir_files(
        path, files, lambda name: inspect_checkpoint(os.path.join(path, name), deep=deep),
        read_file, mtime=st.st_mtime)
    if info.format == "torchtune-dir":
        _torchtune_recipe_state(info, path, deep)
    return info


# torchtune keeps the optimizer and progress of the newest unfinished epoch beside the epoch
# folders (0.4+: recipe_state/recipe_state.pt; before: recipe_state.pt in output_dir).
_RECIPE_STATES = ("recipe_state/recipe_state.pt", "recipe_state.pt")


def _torchtune_recipe_state(info: CheckpointInfo, path: str, deep: bool) -> None:
    parent = os.path.dirname(path.rstrip("/"))
    found = next((r for r in _RECIPE_STATES if os.path.isfile(os.path.join(parent, r))), None)
    if found is None or info.epoch is None:
        return
    sub = inspect_checkpoint(os.path.join(parent, found), deep=deep)
    epochs_run = sub.metrics.get("epochs_run")
    mine = epochs_run is not None and int(epochs_run) == int(info.epoch) + 1
    runs = "?" if epochs_run is None else int(epochs_run)
    info.metadata["recipe_state"] = (f"../{found} (epochs_run {runs}: "
                                     f"{'this epoch' if mine else 'another epoch'})")
    if not mine:
        return  # the final epoch, or an older one: resuming it starts a fresh optimizer
    info.has_optimizer = sub.has_optimizer
    _merge_globals(info, sub)
    if sub.status != "ok" and info.status == "ok":
        info.status, info.reason = sub.status, f"../{found}: {sub.reason}"


def inspect_dir_files(path: str, files: list[tuple[str, int, float]],
                      inspect_file: Callable[[str], CheckpointInfo],
                      read_file: Callable[[str], bytes], *, mtime: float = 0.0
                      ) -> CheckpointInfo:
    """Describe a checkpoint directory from its listing, wherever its files are: `files` holds
    (relative name, size, mtime); `inspect_file(name)` describes one tensor file and
    `read_file(name)` returns a small JSON file's bytes (both may raise OSError)."""
    names = [name for name, _size, _mtime in files]
    info = CheckpointInfo(path=path, kind="dir", format="hf-dir", size=0, mtime=mtime,
                          top_keys=names[:100])
    problems: list[tuple[str, str]] = []  # (status, reason)
    weights: list[CheckpointInfo] = []
    for name, size, file_mtime in files:
        info.size += size
        info.mtime = max(info.mtime, file_mtime)
        role = _role(name)
        entry: dict[str, Any] = {"name": name, "role": role, "size": size}
        if role in ("weights", "optimizer", "scheduler", "rng_state", "custom_state",
                    "training_args", "scaler", "tensors"):
            try:
                sub = inspect_file(name)
            except FileNotFoundError:
                continue  # removed while we looked
            except OSError as exc:
                problems.append(("corrupt", f"{name}: cannot read ({exc.strerror or exc})"))
                info.files.append(entry)
                continue
            entry.update(_file_entry(sub))
            _merge_globals(info, sub)
            if sub.status != "ok":
                kind = "dangerous" if sub.dangerous_globals else sub.status
                problems.append((kind, f"{name}: {sub.reason}"))
            if role == "weights":
                weights.append(sub)
            if role == "optimizer":
                info.has_optimizer = True
            if role == "training_args" and sub.hparams:
                info.hparams = sub.hparams
            if role == "rng_state" and sub.step:  # Accelerate keeps its step counter there
                info.metadata.setdefault("accelerator_step", sub.step)
        info.files.append(entry)
    sizes = {name: size for name, size, _mtime in files}
    _read_dir_json(info, path, names, problems, lambda name: _read_small(name, sizes, read_file))
    _merge_weights(info, weights)
    _dir_layout(info, path, names)
    if not any(e["role"] in ("weights", "trainer_state", "optimizer") for e in info.files):
        info.format = "unknown"
        problems.append(("corrupt", "no checkpoint files in this directory"))
    _dir_status(info, problems)
    return info


_ACCELERATE_DIR = re.compile(r"^checkpoint_(\d+)$")
_TORCHTUNE_DIR = re.compile(r"^epoch_(\d+)$")


def _dir_layout(info: CheckpointInfo, path: str, names: list[str]) -> None:
    """Which library wrote the directory, and what its name numbers: Accelerate's
    checkpoint_N counts save_state calls, torchtune's epoch_N is the epoch just finished."""
    if info.format != "hf-dir":
        return
    base = os.path.basename(path.rstrip("/"))
    accelerate = _ACCELERATE_DIR.match(base)
    if accelerate or any(re.match(r"random_states_\d+\.pkl$", n) for n in names):
        info.format = "accelerate-dir"
        if accelerate:
            info.metadata["save_iteration"] = int(accelerate.group(1))
        step = info.metadata.get("accelerator_step")
        info.step = step if info.step is None and isinstance(step, int) else info.step
        return
    torchtune = _TORCHTUNE_DIR.match(base)
    if torchtune:
        info.format = "torchtune-dir"
        info.epoch = float(torchtune.group(1))


def _file_entry(sub: CheckpointInfo) -> dict:
    return {"format": sub.format, "status": sub.status, "reason": sub.reason,
            "tensor_count": sub.tensor_count, "param_count": sub.param_count,
            "dtypes": dict(sub.dtypes), "top_keys": sub.top_keys[:20],
            "unknown_globals": list(sub.unknown_globals),
            "dangerous_globals": list(sub.dangerous_globals)}


def _merge_globals(info: CheckpointInfo, sub: CheckpointInfo) -> None:
    for bucket, names in ((info.unknown_globals, sub.unknown_globals),
                          (info.dangerous_globals, sub.dangerous_globals)):
        bucket.extend(n for n in names if n not in bucket)
        bucket.sort()


def _merge_weights(info: CheckpointInfo, weights: list[CheckpointInfo]) -> None:
    tensors: list[TensorInfo] = []
    for sub in weights:
        info.tensor_count += sub.tensor_count
        info.param_count += sub.param_count
        for dtype, n in sub.dtypes.items():
            info.dtypes[dtype] = info.dtypes.get(dtype, 0) + n
        tensors.extend(sub.tensors)
    info.tensors = sorted(tensors, key=lambda t: (-t.nbytes, t.name))[:TENSOR_LIST_CAP]


def _read_small(name: str, sizes: dict[str, int], read_file: Callable[[str], bytes]) -> bytes:
    """A JSON side file, unless its listed size is past METADATA_LIMIT (an S3 read would fetch
    all of it)."""
    if sizes.get(name, 0) > METADATA_LIMIT:
        raise _too_large(f"{name} ({sizes[name]:,} bytes)")
    return read_file(name)


def _read_dir_json(info: CheckpointInfo, path: str, names: list[str],
                   problems: list[tuple[str, str]], read_file: Callable[[str], bytes]) -> None:
    for name in names:
        role = _role(name)
        if role not in ("trainer_state", "index") and name != "config.json":
            continue
        try:
            data = json.loads(read_file(name))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            problems.append(("corrupt", f"{name}: invalid JSON ({exc})"))
            continue
        except _TooLarge as exc:  # its numbers are not needed to resume: noted, not fatal
            info.unverified.append(str(exc))
            continue
        except OSError:
            continue
        if role == "trainer_state" and isinstance(data, dict):
            _trainer_state(info, data)
        elif role == "index" and isinstance(data, dict):
            _check_index(name, data, names, problems)
        elif name == "config.json" and isinstance(data, dict):
            info.model_args = _plain(data)
    if info.step is None:
        match = re.search(r"(?:checkpoint-|global_step)(\d+)$", os.path.basename(path))
        info.step = int(match.group(1)) if match else None


def _trainer_state(info: CheckpointInfo, state: dict) -> None:
    if isinstance(state.get("global_step"), int):
        info.step = state["global_step"]
    if isinstance(state.get("epoch"), (int, float)):
        info.epoch = state["epoch"]
    if isinstance(state.get("best_metric"), (int, float)):
        info.best_metric = float(state["best_metric"])
    history = state.get("log_history")
    if not isinstance(history, list):
        return
    # latest value of every number logged (loss, eval_loss, learning_rate, grad_norm, ...)
    for entry in history:
        if isinstance(entry, dict):
            info.metrics.update({k: float(v) for k, v in entry.items()
                                 if k not in ("step", "epoch") and isinstance(v, (int, float))
                                 and not isinstance(v, bool)})
    losses = [e["loss"] for e in history if isinstance(e, dict)
              and isinstance(e.get("loss"), (int, float))]
    if losses:
        info.loss = float(losses[-1])
    elif "eval_loss" in info.metrics:
        info.loss = info.metrics["eval_loss"]


def _check_index(name: str, index: dict, names: list[str],
                 problems: list[tuple[str, str]]) -> None:
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        problems.append(("corrupt", f"{name}: no weight_map"))
        return
    folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
    for shard in sorted({str(v) for v in weight_map.values()}):
        if folder + shard not in names:
            problems.append(("corrupt", f"{shard} missing (listed in {name})"))


def _dir_status(info: CheckpointInfo, problems: list[tuple[str, str]]) -> None:
    """The worst problem first: code that runs, damage, unread, then globals merely unknown
    (the only ones `--trust` may accept, so they must not hide the others)."""
    for kind in ("dangerous", "corrupt", "unknown", "suspicious"):
        reasons = [reason for s, reason in problems if s == kind]
        if reasons:
            info.status = "suspicious" if kind == "dangerous" else kind
            info.reason = reasons[0] if len(reasons) == 1 else (
                f"{reasons[0]} (and {len(reasons) - 1} more)")
            return


# -- command line ----------------------------------------------------------------------------


def _text(info: CheckpointInfo) -> str:
    lines = [f"{info.path}  [{info.format}, {info.kind}, {info.size:,} bytes]",
             f"status: {info.status}" + (f" - {info.reason}" if info.reason else "")]
    facts = [f"{k} {v}" for k, v in (("step", info.step), ("epoch", info.epoch),
                                      ("loss", info.loss), ("best", info.best_metric))
             if v is not None]
    if facts:
        lines.append(", ".join(facts))
    if info.tensor_count:
        dtypes = ", ".join(f"{k} x{v}" for k, v in sorted(info.dtypes.items()))
        lines.append(f"tensors {info.tensor_count}, parameters {info.param_count:,} ({dtypes})")
    if info.top_keys:
        lines.append("keys: " + ", ".join(info.top_keys[:20]))
    lines.append(f"optimizer state: {'yes' if info.has_optimizer else 'no'}")
    for label, values in (("model", info.model_args), ("metadata", info.metadata)):
        if values:
            lines.append(f"{label}: " + ", ".join(f"{k}={v}" for k, v in
                                                   list(values.items())[:12]))
    for tensor in info.tensors[:20]:
        lines.append(f"  {tensor.name}  {tensor.dtype}  {list(tensor.shape)}")
    if info.unverified:
        lines.append("not checked: " + "; ".join(info.unverified))
    for label, names in (("unknown globals", info.unknown_globals),
                         ("dangerous globals", info.dangerous_globals)):
        if names:
            lines.append(f"{label}: " + ", ".join(names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inspect.py", description="Describe a checkpoint without loading it.")
    parser.add_argument("path", help="a checkpoint file or directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--deep", action="store_true",
                        help="also check every zip member's CRC / safetensors byte range")
    args = parser.parse_args(argv)
    try:
        info = inspect_checkpoint(args.path, deep=args.deep)
    except FileNotFoundError:
        print(f"inspect: no such file or directory: {args.path}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"inspect: cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.to_json(), indent=1) if args.json else _text(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
