"""safetensors: the JSON header only, checked against the file size."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

from .dtypes import DTYPE_BITS, SAFETENSORS_DTYPES, dtype_nbytes, product
from .errors import Corrupt
from .info import TENSOR_LIST_CAP, CheckpointInfo, TensorInfo
from .stand_ins import int_tuple, plausible_shape
from .torch_summary import apply_numbers

_SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors library's own limit


class _SafetensorsFile:
    def __init__(self) -> None:
        self.tensors: list[TensorInfo] = []
        self.metadata: dict = {}
        self.checks: list[Callable[[], None]] = []


def read_safetensors(fp: Any, size: int, deep: bool) -> _SafetensorsFile:
    if size < 8:
        raise Corrupt(f"file too small for a safetensors header ({size} bytes)")
    (length,) = struct.unpack("<Q", fp.read(8))
    if length > size - 8:
        raise Corrupt(f"header length {length} past end of file ({size} bytes)")
    if length > _SAFETENSORS_HEADER_LIMIT:
        raise Corrupt(f"header length {length} over the safetensors limit of 100 MB")
    try:
        header = json.loads(fp.read(length))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Corrupt(f"bad safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise Corrupt("bad safetensors header (not a JSON object)")
    out = _SafetensorsFile()
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise Corrupt("bad safetensors header (__metadata__ is not an object)")
    out.metadata = meta
    spans = [_safetensors_entry(name, entry) for name, entry in header.items()]
    out.checks.append(lambda: _check_spans(spans, size - 8 - length, deep))
    out.tensors = [info for info, _, _ in spans]
    return out


def _safetensors_entry(name: str, entry: Any) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise Corrupt(f"bad safetensors header (entry {name} is not an object)")
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    if not plausible_shape(shape) or not isinstance(dtype, str):
        raise Corrupt(f"bad safetensors header (tensor {name} has a malformed shape or dtype)")
    if not int_tuple(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
        raise Corrupt(f"bad safetensors header (tensor {name} has malformed data_offsets)")
    dtype = SAFETENSORS_DTYPES.get(dtype, dtype.lower())
    numel = product(shape)
    info = TensorInfo(name, dtype, tuple(shape), numel, dtype_nbytes(dtype, numel))
    return info, offsets[0], offsets[1]


def _check_spans(spans: list, data_size: int, deep: bool) -> None:
    previous = None
    for info, begin, end in sorted(spans, key=lambda s: (s[1], s[2])):
        if end > data_size:
            raise Corrupt(f"tensor {info.name} bytes [{begin}, {end}) past end of data "
                           f"({data_size} bytes)")
        if previous is not None and begin < previous[2]:
            raise Corrupt(f"tensors {previous[0].name} and {info.name} overlap")
        if deep:
            if end - begin != info.nbytes and info.dtype in DTYPE_BITS:
                raise Corrupt(f"tensor {info.name} has {end - begin} bytes, {info.dtype} x "
                               f"{info.numel} needs {info.nbytes}")
            gap_from = previous[2] if previous is not None else 0
            if begin != gap_from:
                raise Corrupt(f"bytes [{gap_from}, {begin}) of the data belong to no tensor")
        previous = (info, begin, end)
    if deep and (previous[2] if previous else 0) != data_size:
        raise Corrupt(f"bytes [{previous[2] if previous else 0}, {data_size}) of the data "
                       "belong to no tensor")


def summarize_safetensors(info: CheckpointInfo, st: _SafetensorsFile) -> None:
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
    apply_numbers(info, numbers)
