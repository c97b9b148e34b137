"""The report: what a checkpoint holds (`CheckpointInfo`, `TensorInfo`), as plain JSON."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from typing import Any

from .stand_ins import Described, NDArray, NumpyDtype, Opaque, Record

TENSOR_LIST_CAP = 200


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
        out = {name: plain_json(getattr(self, name)) for name in self.__dataclass_fields__}
        out["tensors"] = [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "numel": t.numel,
             "nbytes": t.nbytes} for t in self.tensors]
        return out


def key_text(key: Any, depth: int = 0) -> str:
    """A dict key as text, bounded however the pickle nests or shares it."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, float)):
        return str(key)
    if isinstance(key, int):
        return str(key) if key.bit_length() <= 64 else f"<int of {key.bit_length()} bits>"
    if isinstance(key, (Opaque, Described)):
        return repr(key)
    if isinstance(key, tuple) and depth < 2:
        more = ", ..." if len(key) > 6 else ""
        return "(" + ", ".join(key_text(k, depth + 1) for k in key[:6]) + more + ")"
    return f"<{type(key).__name__}>"


def plain_json(obj: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
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
    if isinstance(obj, Record):
        obj = obj.attrs
    if isinstance(obj, dict):
        return {key_text(k): plain_json(v, depth + 1, budget) for k, v in list(obj.items())[:500]}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain_json(v, depth + 1, budget) for v in list(obj)[:500]]
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    if isinstance(obj, (datetime.date, datetime.time, datetime.timedelta)):
        return str(obj)
    if isinstance(obj, (Opaque, Described, NDArray, NumpyDtype)):
        return repr(obj)  # short, never recursive
    if isinstance(obj, complex):
        return str(obj)
    return f"<{type(obj).__name__}>"
