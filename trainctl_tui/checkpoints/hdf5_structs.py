"""HDF5's fixed binary structures, decoded with bounds checks: the superblock, datatypes,
the lookup3 checksum, and the errors every HDF5 read ends in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SIGNATURE = b"\x89HDF\r\n\x1a\n"


class HDF5Error(Exception):
    """The file is not a readable HDF5 file; the message says why (one line)."""


class HDF5Truncated(HDF5Error):
    """The file is shorter than its superblock says."""

    def __init__(self, expected: int, actual: int):
        super().__init__(f"truncated: the HDF5 superblock says the file is {expected:,} bytes, "
                         f"it has {actual:,} ({expected - actual:,} missing)")
        self.expected, self.actual = expected, actual


@dataclass
class Superblock:
    version: int
    offset_size: int
    length_size: int
    base: int
    eof: int  # absolute
    root: int  # root group object header address (relative to base)
    flags: int


def parse_superblock(head: bytes) -> Superblock:
    if head[:8] != SIGNATURE:
        raise HDF5Error(f"not an HDF5 file (starts with {head[:8]!r})")
    if len(head) < 12:
        raise HDF5Error("superblock cut short")
    version = head[8]
    if version in (0, 1):
        offset_size, length_size = head[13], head[14]
        check_sizes(offset_size, length_size)
        pos = 24 + (4 if version == 1 else 0)
        need = pos + 4 * offset_size + 2 * offset_size + 24
        if len(head) < need:
            raise HDF5Error("superblock cut short")
        (flags,) = struct.unpack_from("<I", head, 20)
        base, _free, eof, _driver = (read_uint(head, pos + i * offset_size, offset_size)
                                     for i in range(4))
        root = read_uint(head, pos + 4 * offset_size + offset_size, offset_size)
    elif version in (2, 3):
        offset_size, length_size, flags = head[9], head[10], head[11]
        check_sizes(offset_size, length_size)
        end = 12 + 4 * offset_size
        if len(head) < end + 4:
            raise HDF5Error("superblock cut short")
        base, _ext, eof, root = (read_uint(head, 12 + i * offset_size, offset_size)
                                 for i in range(4))
        (stored,) = struct.unpack_from("<I", head, end)
        if lookup3(head[:end]) != stored:
            raise HDF5Error(f"superblock checksum mismatch (version {version} superblock)")
    else:
        raise HDF5Error(f"unsupported HDF5 superblock version {version}")
    return Superblock(version, offset_size, length_size, base, base + eof, root, flags)


def check_sizes(offset_size: int, length_size: int) -> None:
    if offset_size not in (2, 4, 8) or length_size not in (2, 4, 8):
        raise HDF5Error(f"unsupported HDF5 address/length sizes ({offset_size}, {length_size})")


def read_uint(buf: bytes, pos: int, size: int) -> int:
    return int.from_bytes(buf[pos:pos + size], "little")


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 hashlittle: the checksum of HDF5's newer metadata structures."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    length, i = len(data), 0
    a = b = c = (0xDEADBEEF + length + initval) & mask
    while length > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & mask
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & mask
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & mask
        a = (a - c) & mask; a ^= rot(c, 4); c = (c + b) & mask  # noqa: E702
        b = (b - a) & mask; b ^= rot(a, 6); a = (a + c) & mask  # noqa: E702
        c = (c - b) & mask; c ^= rot(b, 8); b = (b + a) & mask  # noqa: E702
        a = (a - c) & mask; a ^= rot(c, 16); c = (c + b) & mask  # noqa: E702
        b = (b - a) & mask; b ^= rot(a, 19); a = (a + c) & mask  # noqa: E702
        c = (c - b) & mask; c ^= rot(b, 4); b = (b + a) & mask  # noqa: E702
        length, i = length - 12, i + 12
    if length == 0:
        return c
    tail = data[i:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    c ^= b; c = (c - rot(b, 14)) & mask  # noqa: E702
    a ^= c; a = (a - rot(c, 11)) & mask  # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & mask  # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & mask  # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & mask  # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & mask  # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & mask  # noqa: E702
    return c


@dataclass
class Dtype:
    name: str  # float32, int64, string, bfloat16, ...
    size: int
    kind: str  # int | uint | float | string | vlen-string | other
    byteorder: str = "<"
    charset: int = 0


def parse_dtype(buf: bytes, pos: int, depth: int = 0) -> tuple[Dtype, int]:
    """The datatype at buf[pos:] and how many bytes it takes."""
    if depth > 8 or pos + 8 > len(buf):
        raise HDF5Error("malformed datatype message")
    cls, version = buf[pos] & 0x0F, buf[pos] >> 4
    bits = buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16
    (size,) = struct.unpack_from("<I", buf, pos + 4)
    body = pos + 8
    order = ">" if bits & 1 else "<"
    if cls == 0:  # fixed-point
        signed = bool(bits & 0x08)
        name = f"{'int' if signed else 'uint'}{size * 8}"
        return Dtype(name, size, "int" if signed else "uint", order), 12
    if cls == 1:  # floating-point
        if body + 12 > len(buf):
            raise HDF5Error("malformed datatype message")
        exponent_bits = buf[body + 5]
        name = "bfloat16" if size == 2 and exponent_bits == 8 else f"float{size * 8}"
        return Dtype(name, size, "float", order), 20
    if cls == 2:  # time
        return Dtype(f"time{size * 8}", size, "other"), 10
    if cls == 3:  # fixed-length string
        return Dtype("string", size, "string", charset=(bits >> 4) & 0x0F), 8
    if cls == 4:  # bitfield
        return Dtype(f"bitfield{size * 8}", size, "other"), 12
    if cls == 5:  # opaque: an ASCII tag padded to 8
        tag_len = bits & 0xFF
        return Dtype(f"opaque{size * 8}", size, "other"), 8 + tag_len
    if cls == 6:
        return _compound(buf, pos, version, bits, size, depth)
    if cls == 7:
        return Dtype("reference", size, "other"), 8
    if cls == 8:
        return _enum(buf, pos, version, bits, size, depth)
    if cls == 9:  # variable-length sequence or string
        base, used = parse_dtype(buf, body, depth + 1)
        if bits & 0x0F == 1:
            return Dtype("string", size, "vlen-string", charset=(bits >> 8) & 0x0F), 8 + used
        return Dtype(f"vlen({base.name})", size, "other"), 8 + used
    if cls == 10:  # array
        return _array(buf, pos, version, size, depth)
    raise HDF5Error(f"unknown datatype class {cls}")


def _compound(buf: bytes, pos: int, version: int, bits: int, size: int,
              depth: int) -> tuple[Dtype, int]:
    count = bits & 0xFFFF
    at = pos + 8
    members = []
    for _ in range(min(count, 1024)):
        name, at = _member_name(buf, at, version)
        if version < 3:
            at += 4 + (28 if version == 1 else 0)  # byte offset (+ v1 array fields)
        else:
            at += max(1, (size.bit_length() + 7) // 8)
        member, used = parse_dtype(buf, at, depth + 1)
        members.append((name, member))
        at += used
    names = [n for n, _ in members]
    kinds = {m.kind for _, m in members}
    if names == ["r", "i"] and kinds == {"float"}:
        return Dtype(f"complex{size * 8}", size, "other"), at - pos
    return Dtype(f"compound{size * 8}", size, "other"), at - pos


def _enum(buf: bytes, pos: int, version: int, bits: int, size: int,
          depth: int) -> tuple[Dtype, int]:
    count = bits & 0xFFFF
    base, used = parse_dtype(buf, pos + 8, depth + 1)
    at, names = pos + 8 + used, []
    for _ in range(min(count, 1024)):
        name, at = _member_name(buf, at, version)
        names.append(name)
    at += count * base.size
    if sorted(names) == ["FALSE", "TRUE"] and size == 1:  # h5py's bool
        return Dtype("bool", 1, "uint"), at - pos
    return Dtype(f"enum({base.name})", size, "other"), at - pos


def _member_name(buf: bytes, at: int, version: int) -> tuple[str, int]:
    """A null-terminated member name and where what follows it starts (datatype versions 1-2
    pad each name, with its null, to a multiple of 8 bytes)."""
    end = buf.find(b"\0", at)
    if end < 0:
        raise HDF5Error("malformed datatype member name")
    name = buf[at:end].decode("utf-8", "replace")
    return name, (at + pad8(end - at + 1) if version < 3 else end + 1)


def _array(buf: bytes, pos: int, version: int, size: int, depth: int) -> tuple[Dtype, int]:
    rank = buf[pos + 8] if pos + 8 < len(buf) else 0
    at = pos + 9 + (3 if version < 3 else 0)
    dims = [struct.unpack_from("<I", buf, at + 4 * i)[0] for i in range(rank)]
    at += 4 * rank + (4 * rank if version < 3 else 0)
    base, used = parse_dtype(buf, at, depth + 1)
    return Dtype(f"{base.name}[{'x'.join(map(str, dims))}]", size, "other"), at + used - pos


def pad8(n: int) -> int:
    return (n + 7) & ~7
