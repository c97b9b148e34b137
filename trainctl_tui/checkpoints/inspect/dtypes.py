"""Tensor dtypes: names, sizes in bits, and decoding a one-element tensor's bytes."""

from __future__ import annotations

import struct

DTYPE_BITS = {
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
DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                  "int": "int32", "short": "int16", "cfloat": "complex64",
                  "cdouble": "complex128", "chalf": "complex32"}
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "QInt8Storage": "qint8", "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8", "TypedStorage": "uint8",
}
SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32",
    "U16": "uint16", "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu", "C64": "complex64",
    "C128": "complex128", "F4": "float4_e2m1fn", "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
}
# torch names that are plain values, not dtypes (layouts, memory formats, quantization schemes)
TORCH_CONSTANTS = {
    "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc", "_mkldnn",
    "jagged", "contiguous_format", "channels_last", "channels_last_3d", "preserve_format",
    "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
    "per_channel_symmetric", "per_channel_affine_float_qparams",
}
_STRUCT_CODES = {"float64": "d", "float32": "f", "float16": "e", "int64": "q", "int32": "i",
                 "int16": "h", "int8": "b", "uint8": "B", "uint16": "H", "uint32": "I",
                 "uint64": "Q", "bool": "?"}


def product(values) -> int:
    """math.prod, which Python 3.7 (on remote hosts, beside the runner) does not have."""
    result = 1
    for value in values:
        result *= value
    return result


def dtype_nbytes(dtype: str, numel: int) -> int:
    bits = DTYPE_BITS.get(dtype, 8)
    return (numel * bits + 7) // 8


def decode_scalar(dtype: str, raw: bytes, little: bool) -> float | int | None:
    order = "<" if little else ">"
    if dtype == "bfloat16" and len(raw) == 2:
        (value,) = struct.unpack(order + "H", raw)
        return struct.unpack("<f", struct.pack("<I", value << 16))[0]
    code = _STRUCT_CODES.get(dtype)
    if code is None or struct.calcsize(code) != len(raw):
        return None
    value = struct.unpack(order + code, raw)[0]
    return bool(value) if code == "?" else value
