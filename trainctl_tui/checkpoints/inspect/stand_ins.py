"""Local stand-ins for allowed pickle globals: they build *descriptions* (dtype, shape, numel,
bytes) and never import or call anything named in the file.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable
from typing import Any

from .dtypes import STORAGE_DTYPES, decode_scalar, dtype_nbytes, product


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


def opaque_class(name: str) -> type[Opaque]:
    return type("Unsupported", (Opaque,), {"global_name": name})


class Record:
    """argparse.Namespace and other attribute bags: keeps the attributes, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
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


class PlainDict(dict):
    """dict subclasses known to be plain (Lightning's AttributeDict)."""

    def __setstate__(self, state: Any) -> None:
        pass


class Described:
    """Base of the descriptions: a pickle's BUILD on them is ignored, so file data can never
    overwrite what was worked out."""

    def __setstate__(self, state: Any) -> None:
        pass


class TorchDtype(Described):
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class StorageType(Described):
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class Storage(Described):
    """A storage as its persistent id declares it; its bytes stay on disk."""

    def __init__(self, key: str, dtype: str, numel: int, location: str) -> None:
        self.key, self.dtype, self.numel, self.location = key, dtype, numel, location
        self.nbytes = dtype_nbytes(dtype, numel)


class Tensor(Described):
    """Description of a tensor: what torch would rebuild, minus the data."""

    def __init__(self, storage: Any, offset: Any, shape: Any, stride: Any,
                 dtype: str | None = None) -> None:
        if not plausible_shape(shape):
            raise pickle.UnpicklingError("tensor with a malformed shape")
        self.storage = storage if isinstance(storage, Storage) else None
        self.shape = tuple(shape)
        ok_stride = int_tuple(stride) and len(stride) == len(self.shape)
        self.stride = tuple(stride) if ok_stride else None
        self.offset = offset if isinstance(offset, int) else 0
        self.dtype = dtype or (self.storage.dtype if self.storage else "unknown")
        self.numel = product(self.shape)
        self.nbytes = dtype_nbytes(self.dtype, self.numel)
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
        return dtype_nbytes(self.dtype, last + 1)

    def __repr__(self) -> str:
        return f"<tensor {self.dtype} {list(self.shape)}>"


class NumpyDtype:
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


class NDArray:
    def __new__(cls, *args: Any, **kwargs: Any) -> NDArray:
        self = object.__new__(cls)
        self.shape: tuple = ()
        self.dtype = "?"
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, raw data or list)
        if isinstance(state, tuple) and len(state) >= 3:
            self.shape = tuple(state[1]) if int_tuple(state[1]) else ()
            self.dtype = state[2].name if isinstance(state[2], NumpyDtype) else "?"

    def __repr__(self) -> str:
        return f"<ndarray {self.dtype} {list(self.shape)}>"


def plausible_shape(shape: Any) -> bool:
    return (isinstance(shape, (tuple, list)) and len(shape) <= 64 and int_tuple(shape)
            and all(n >= 0 for n in shape)
            and product(shape) < 1 << 62)


def int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(
        isinstance(n, int) and not isinstance(n, bool) for n in value)


# Stand-ins for allowed globals. Each takes what the pickle gives and returns plain data or a
# description; none calls anything it was given.

def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Tensor:
    return Tensor(storage, offset, size, stride)


def rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any, dtype: Any = None, *_: Any) -> Tensor:
    name = dtype.name if isinstance(dtype, TorchDtype) else None
    return Tensor(storage, offset, size, stride, name)


def rebuild_meta_tensor(dtype: Any, size: Any, stride: Any, *_: Any) -> Tensor:
    name = dtype.name if isinstance(dtype, TorchDtype) else None
    return Tensor(None, 0, size, stride, name)


def rebuild_parameter(data: Any, *_: Any) -> Any:
    if isinstance(data, Tensor):
        data.parameter = True
    return data


def rebuild_from_cpu(data: Any, *_: Any) -> Any:
    return data


def rebuild_layout_tensor(layout: Any, data: Any, *_: Any) -> Any:
    """A sparse or nested tensor: its component tensors (indices, values ...) are described
    where the walk finds them, inside this opaque value."""
    return opaque_value("sparse or nested tensor", data)


class TorchClass:
    """torch.Tensor / torch.nn.Parameter as named types (e.g. rebuild_from_type_v2's new_type).
    Called on a tensor description, they hand it back."""

    global_name = "torch.Tensor"
    parameter = False

    def __new__(cls, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, Tensor):
            data.parameter = data.parameter or cls.parameter
            return data
        return opaque_value(cls.global_name, data, *args)


class ParameterClass(TorchClass):
    global_name = "torch.nn.parameter.Parameter"
    parameter = True


def rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
    # func is one of these stand-ins or an Opaque class: calling it is safe
    result = func(*args) if callable(func) and isinstance(args, tuple) else Opaque()
    if isinstance(result, Tensor) and isinstance(new_type, type):
        if issubclass(new_type, TorchClass):
            result.parameter = result.parameter or new_type.parameter
        elif issubclass(new_type, Opaque):
            result.subclass = new_type.global_name
    return result


_ENCODINGS = ("latin1", "latin-1", "utf-8", "utf8", "ascii")


def codecs_encode(value: Any, encoding: Any = "utf-8", *_: Any) -> Any:
    # protocol 2 writes bytes as _codecs.encode(str, "latin1")
    if isinstance(value, str) and isinstance(encoding, str) and encoding.lower() in _ENCODINGS:
        return value.encode(encoding)
    raise pickle.UnpicklingError("unsupported _codecs.encode call")


def numpy_scalar(dtype: Any, data: Any = None, *_: Any) -> Any:
    if isinstance(dtype, NumpyDtype) and isinstance(data, (bytes, bytearray)):
        name = dtype.name
        value = decode_scalar(name, bytes(data), dtype.byteorder != ">")
        if value is not None:
            return float(value) if name.startswith("float") else value
    return opaque_value("numpy scalar")


def numpy_reconstruct(cls: Any, *_: Any) -> Any:
    return NDArray() if cls is NDArray else opaque_value("numpy._reconstruct")


def numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, *_: Any) -> NDArray:
    array = NDArray()
    array.__setstate__((1, shape, dtype))
    return array


def opaque_value(name: str, *args: Any) -> Opaque:
    return opaque_class(name)(*args)


def check_hashable(obj: Any) -> None:
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
            check_hashable(item[0] if pairs and isinstance(item, (list, tuple)) and item
                            else item)


def safe_call(name: str, func: Callable, hashes: str = "") -> Callable:
    """Wrap a builtin so odd arguments give an opaque value instead of failing the parse;
    `hashes` ("items" or "pairs") says what of its first argument it will hash."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, (range, Opaque)) for a in args):  # no lazy huge iterables
            return opaque_value(name, *args)
        if hashes and args:
            _check_items(args[0], pairs=hashes == "pairs")
        try:
            return func(*args, **kwargs)
        except (TypeError, ValueError, OverflowError):
            return opaque_value(name, *args)

    return call


def safe_bytearray(value: Any = b"", *rest: Any) -> Any:
    if isinstance(value, int):  # bytearray(n) would allocate n bytes
        return opaque_value("builtins.bytearray", value)
    if isinstance(value, str):
        return bytearray(codecs_encode(value, rest[0] if rest else "latin1"))
    return safe_call("builtins.bytearray", bytearray)(value)


def safe_int(value: Any = 0, *rest: Any) -> Any:
    if isinstance(value, str) and len(value) > 4300:  # int() of long text is quadratic
        return opaque_value("builtins.int", value)
    return safe_call("builtins.int", int)(value, *rest)


def safe_range(*args: Any) -> Any:
    return opaque_value("builtins.range", *args)  # never a real (lazy, huge) range


def safe_path(flavour: Any) -> Callable:
    def make(*parts: Any) -> Any:
        if all(isinstance(p, str) for p in parts):
            return flavour.join(*parts) if parts else "."
        return opaque_value("pathlib path", *parts)

    return make


def safe_defaultdict(*_: Any) -> dict:
    return {}


class SafeOrderedDict(collections.OrderedDict):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            _check_items(args[0], pairs=True)
        super().__init__(*args, **kwargs)


def safe_counter(*args: Any) -> Any:
    return safe_call("collections.Counter", dict, "pairs")(*args)


def safe_deque(items: Any = (), *_: Any) -> Any:
    return list(items) if isinstance(items, (list, tuple)) else []


def torch_device(kind: Any = "cpu", index: Any = None) -> Any:
    if not isinstance(kind, str) or not isinstance(index, (int, type(None))):
        return opaque_value("torch.device", kind, index)
    return f"{kind}:{index}" if index is not None else kind


def torch_size(dims: Any = ()) -> Any:
    return tuple(dims) if isinstance(dims, (list, tuple)) else opaque_value("torch.Size", dims)


def reconstructor(cls: Any, base: Any = None, state: Any = None) -> Any:
    # copyreg._reconstructor(cls, object, None): protocol 0/1 object creation
    if isinstance(cls, type) and issubclass(cls, (Opaque, Record, NDArray)):
        return cls.__new__(cls)  # as pickle does: no __init__
    return opaque_value("copyreg._reconstructor", cls)


def newobj(cls: Any, *args: Any) -> Any:
    return reconstructor(cls)
