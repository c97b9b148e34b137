"""Pickle globals: the allow-list (what torch, Lightning, Hugging Face, numpy and the standard
containers really write), and which globals off it are known to run code.
"""

from __future__ import annotations

import _compat_pickle
import datetime
import ntpath
import posixpath
from typing import Any

from .dtypes import DTYPE_ALIASES, DTYPE_BITS, STORAGE_DTYPES, TORCH_CONSTANTS
from .stand_ins import (
    NDArray,
    NumpyDtype,
    Opaque,
    ParameterClass,
    PlainDict,
    Record,
    SafeOrderedDict,
    Storage,
    StorageType,
    TorchClass,
    TorchDtype,
    codecs_encode,
    newobj,
    numpy_frombuffer,
    numpy_reconstruct,
    numpy_scalar,
    rebuild_from_cpu,
    rebuild_from_type_v2,
    rebuild_layout_tensor,
    rebuild_meta_tensor,
    rebuild_parameter,
    rebuild_tensor,
    rebuild_tensor_v3,
    reconstructor,
    safe_bytearray,
    safe_call,
    safe_counter,
    safe_defaultdict,
    safe_deque,
    safe_int,
    safe_path,
    safe_range,
    torch_device,
    torch_size,
)

# A checkpoint is `ok` only if every global its pickles name is on the allow-list (ALLOWED,
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


def is_dangerous(module: str, name: str) -> bool:
    if (module, name) in _DANGEROUS_NAMES or (module == "__builtin__" and
                                               ("builtins", name) in _DANGEROUS_NAMES):
        return True
    parts = module.split(".")
    return any(".".join(parts[:i]) in _DANGEROUS_MODULES for i in range(1, len(parts) + 1))


def python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol 0-2 pickles written by Python 2 (or with fix_imports) use Python 2 names."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": SafeOrderedDict,
    "collections.defaultdict": safe_defaultdict,
    "collections.Counter": safe_counter,
    "collections.deque": safe_deque,
    "builtins.set": safe_call("builtins.set", set, "items"),
    "builtins.frozenset": safe_call("builtins.frozenset", frozenset, "items"),
    "builtins.slice": safe_call("builtins.slice", slice),
    "builtins.complex": safe_call("builtins.complex", complex),
    "builtins.range": safe_range,
    "builtins.bytearray": safe_bytearray,
    "builtins.bytes": safe_call("builtins.bytes", lambda v=b"": bytes(v)
                                 if not isinstance(v, int) else b""),
    "builtins.list": safe_call("builtins.list", list),
    "builtins.tuple": safe_call("builtins.tuple", tuple),
    "builtins.dict": safe_call("builtins.dict", dict, "pairs"),
    "builtins.int": safe_int,
    "builtins.float": safe_call("builtins.float", float),
    "builtins.bool": safe_call("builtins.bool", bool),
    "builtins.str": safe_call("builtins.str", lambda v="": v if isinstance(v, str) else ""),
    "builtins.object": object,
    "builtins.NoneType": type(None),
    "_codecs.encode": codecs_encode,
    "copyreg._reconstructor": reconstructor,
    "copyreg.__newobj__": newobj,
    "argparse.Namespace": Record,
    "types.SimpleNamespace": Record,
    "pathlib.Path": safe_path(posixpath),
    "pathlib.PosixPath": safe_path(posixpath),
    "pathlib.PurePosixPath": safe_path(posixpath),
    "pathlib.WindowsPath": safe_path(ntpath),
    "pathlib.PureWindowsPath": safe_path(ntpath),
    "pathlib._local.PosixPath": safe_path(posixpath),
    "pathlib._local.PurePosixPath": safe_path(posixpath),
    "pathlib._local.WindowsPath": safe_path(ntpath),
    "pathlib._local.PureWindowsPath": safe_path(ntpath),
    "datetime.datetime": safe_call("datetime.datetime", datetime.datetime),
    "datetime.date": safe_call("datetime.date", datetime.date),
    "datetime.time": safe_call("datetime.time", datetime.time),
    "datetime.timedelta": safe_call("datetime.timedelta", datetime.timedelta),
    "datetime.timezone": safe_call("datetime.timezone", datetime.timezone),
    "torch._utils._rebuild_tensor": rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": rebuild_tensor_v3,
    "torch._utils._rebuild_qtensor": rebuild_tensor,
    "torch._utils._rebuild_meta_tensor_no_storage": rebuild_meta_tensor,
    "torch._utils._rebuild_parameter": rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": rebuild_from_cpu,
    "torch._utils._rebuild_sparse_tensor": rebuild_layout_tensor,
    "torch._utils._rebuild_nested_tensor": rebuild_layout_tensor,
    "torch._tensor._rebuild_from_type_v2": rebuild_from_type_v2,
    "torch.Tensor": TorchClass,
    "torch.nn.parameter.Parameter": ParameterClass,
    "torch.device": torch_device,
    "torch.Size": torch_size,
    "torch.serialization._get_layout": lambda name="": name if isinstance(name, str) else "?",
    "numpy.dtype": NumpyDtype,
    "numpy.ndarray": NDArray,
    "numpy.core.multiarray.scalar": numpy_scalar,
    "numpy._core.multiarray.scalar": numpy_scalar,
    "numpy.core.multiarray._reconstruct": numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": numpy_reconstruct,
    "numpy.core.numeric._frombuffer": numpy_frombuffer,
    "numpy._core.numeric._frombuffer": numpy_frombuffer,
    "lightning.fabric.utilities.data.AttributeDict": PlainDict,
    "pytorch_lightning.utilities.parsing.AttributeDict": PlainDict,
    "lightning_fabric.utilities.data.AttributeDict": PlainDict,
}

# Classes that Hugging Face's Trainer and Accelerate pickle (training_args.bin): allowed as
# objects rebuilt without calling them (NEWOBJ + BUILD, as pickle writes them) and, for enums,
# looked up by value. A pickle that calls one of the others (REDUCE runs __init__, e.g.
# TrainingArguments.__post_init__) is not what the library writes: suspicious.
KNOWN_ENUMS = {
    "transformers.trainer_utils.HubStrategy", "transformers.trainer_utils.IntervalStrategy",
    "transformers.trainer_utils.SaveStrategy", "transformers.trainer_utils.SchedulerType",
    "transformers.trainer_utils.FSDPOption", "transformers.training_args.OptimizerNames",
    "transformers.debug_utils.DebugOption", "transformers.trainer_utils.EvaluationStrategy",
    "transformers.training_args.ParallelMode", "accelerate.utils.dataclasses.DistributedType",
}
KNOWN_OBJECTS = {
    "transformers.training_args.TrainingArguments",
    "transformers.training_args_seq2seq.Seq2SeqTrainingArguments",
    "transformers.trainer_pt_utils.AcceleratorConfig", "accelerate.state.PartialState",
}


def known_class(name: str, findings: Findings) -> type[Opaque]:
    """An Opaque stand-in that notes a call of a class only ever rebuilt by NEWOBJ."""

    def init(self: Opaque, *args: Any, **kwargs: Any) -> None:
        findings.note(findings.unknown, f"{name} (called)")

    return type("Known", (Opaque,), {"global_name": name, "__init__": init})


def torch_global(module: str, name: str) -> Any:
    """torch dtypes, storage types and constants, or None when `module.name` is not one."""
    if module in ("torch", "torch.cuda", "torch.storage") and name in STORAGE_DTYPES:
        return StorageType(name)
    if module == "torch":
        dtype = DTYPE_ALIASES.get(name, name)
        if dtype in DTYPE_BITS:
            return TorchDtype(dtype)
        if name in TORCH_CONSTANTS:
            return f"torch.{name}"
    return None


class Findings:
    """What the unpicklers of one checkpoint met: globals and declared storages."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.dangerous: list[str] = []
        self.storages: dict[str, Storage] = {}

    def note(self, bucket: list[str], name: str) -> None:
        if name not in bucket:
            bucket.append(name)
