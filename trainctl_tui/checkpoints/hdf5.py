"""A small, careful reader of HDF5 *metadata*: what h5py writes for Keras weights files.

Stdlib only, Python 3.7+ and no other trainctl_tui imports (shipped in the runner's zipapp
beside the inspector; its fixed binary structures are in hdf5_structs.py). It never loads
array data: it walks the superblock, object headers, groups
(symbol tables and compact links), attributes and dataset descriptions (shape, dtype, where the
bytes are), and checks that everything it follows lies inside the file. Every read is bounded,
every address is checked, and the walk has limits, so a damaged or hostile file ends in an
`HDF5Error` with a short reason, never a hang or a huge allocation.

What it does not do, and says so in `H5Summary.unverified`: groups or attributes kept in
"dense" storage (fractal heaps, written with libver='latest' once a group has more than 8
members), chunk indexes other than the version-1 B-tree, and shared (SOHM) messages.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .hdf5_structs import (
    SIGNATURE,
    Dtype,
    HDF5Error,
    HDF5Truncated,
    Superblock,
    lookup3,
    pad8,
    parse_dtype,
    parse_superblock,
    read_uint,
)

__all__ = ["SIGNATURE", "H5Dataset", "H5Group", "H5Summary", "HDF5Error",
           "HDF5Truncated", "lookup3", "read_hdf5", "read_scalar"]

MAX_OBJECTS = 100_000  # groups + datasets walked
MAX_DEPTH = 64
MAX_CHUNKS_CHECKED = 1_000_000
MAX_HEAP_BYTES = 64 * 1024 * 1024
MAX_ATTR_ELEMENTS = 100_000
_MAX_HEADER_CHUNKS = 4096
_MAX_MESSAGES = 65_536

# object header message types
_DATASPACE, _LINK_INFO, _DATATYPE, _LINK, _LAYOUT, _FILTERS, _ATTRIBUTE = 1, 2, 3, 6, 8, 11, 12
_CONTINUATION, _SYMBOL_TABLE, _ATTRIBUTE_INFO = 16, 17, 21
_FILTER_NAMES = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                 6: "scaleoffset"}


@dataclass
class H5Dataset:
    path: str
    dtype: str
    shape: tuple[int, ...]
    layout: str  # compact | contiguous | chunked | virtual | unknown
    address: int | None = None  # file offset of contiguous data (None: not allocated)
    stored_size: int | None = None  # bytes on disk for contiguous/compact data
    compact_data: bytes | None = None
    filters: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    itemsize: int = 0
    byteorder: str = "<"

    @property
    def numel(self) -> int:
        count = 1
        for n in self.shape:
            count *= n
        return count


@dataclass
class H5Group:
    path: str
    attrs: dict = field(default_factory=dict)


@dataclass
class H5Summary:
    superblock_version: int
    eof: int  # where the superblock says the file ends (absolute offset)
    size: int
    open_for_writing: bool
    groups: list[H5Group] = field(default_factory=list)
    datasets: list[H5Dataset] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    chunks_checked: int = 0


class _Reader:
    """Bounded reads of a file given as read_at(offset, n) -> bytes, with HDF5 addresses
    (relative to the base address) turned into file offsets."""

    def __init__(self, read_at: Callable[[int, int], bytes], size: int, sb: Superblock):
        self.read_at = read_at
        self.size = size
        self.sb = sb
        self.O = sb.offset_size
        self.L = sb.length_size
        self.undefined = (1 << (8 * self.O)) - 1
        self.objects_seen = 0
        self.unverified: list[str] = []
        self.chunks_checked = 0
        self._global_heaps: dict[int, dict[int, bytes]] = {}
        self._local_heaps: dict[int, bytes] = {}

    def read(self, address: int, n: int, what: str) -> bytes:
        offset = self.sb.base + address
        if address == self.undefined or n < 0 or offset + n > self.size:
            raise HDF5Error(f"{what} at byte {offset:,} runs past the end of the file "
                            f"({self.size:,} bytes)")
        data = self.read_at(offset, n)
        if len(data) != n:
            raise HDF5Error(f"{what} at byte {offset:,}: short read")
        return data

    def addr(self, buf: bytes, pos: int) -> int:
        if pos + self.O > len(buf):
            raise HDF5Error("address field cut short")
        return read_uint(buf, pos, self.O)

    def length(self, buf: bytes, pos: int) -> int:
        if pos + self.L > len(buf):
            raise HDF5Error("length field cut short")
        return read_uint(buf, pos, self.L)

    def note(self, text: str) -> None:
        if text not in self.unverified and len(self.unverified) < 50:
            self.unverified.append(text)

    # -- object headers -----------------------------------------------------------------

    def messages(self, address: int) -> list[tuple[int, int, bytes]]:
        """(type, flags, body) of every message of the object header at `address`."""
        head = self.read(address, 4, "object header")
        if head == b"OHDR":
            return self._messages_v2(address)
        if head[0] == 1:
            return self._messages_v1(address)
        raise HDF5Error(f"bad object header at byte {self.sb.base + address:,} "
                        f"(starts with {head!r})")

    def _messages_v1(self, address: int) -> list[tuple[int, int, bytes]]:
        prefix = self.read(address, 16, "object header")
        (size,) = struct.unpack_from("<I", prefix, 8)
        chunks, out = [(address + 16, size)], []
        seen = set()
        while chunks:
            start, length = chunks.pop(0)
            if (start, length) in seen or len(seen) > _MAX_HEADER_CHUNKS:
                raise HDF5Error("object header continuation loop")
            seen.add((start, length))
            data = self.read(start, length, "object header chunk")
            pos = 0
            while pos + 8 <= len(data):
                mtype, msize, mflags = struct.unpack_from("<HHB", data, pos)
                body = data[pos + 8:pos + 8 + msize]
                if len(body) != msize:
                    raise HDF5Error("object header message runs past its chunk")
                if mtype == _CONTINUATION:
                    chunks.append((self.addr(body, 0), self.length(body, self.O)))
                else:
                    out.append((mtype, mflags, body))
                if len(out) > _MAX_MESSAGES:
                    raise HDF5Error("too many object header messages")
                pos += 8 + msize
        return out

    def _messages_v2(self, address: int) -> list[tuple[int, int, bytes]]:
        head = self.read(address, 6, "object header")
        flags = head[5]
        pos = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 3)
        chunk0 = read_uint(self.read(address + pos, width, "object header"), 0, width)
        whole = self.read(address, pos + width + chunk0 + 4, "object header")
        self._check_sum(whole, address)
        order = 2 if flags & 0x04 else 0
        out: list[tuple[int, int, bytes]] = []
        chunks = [(whole, pos + width, len(whole) - 4)]
        seen: set[int] = set()
        while chunks:
            data, at, end = chunks.pop(0)
            while at + 4 + order <= end:
                mtype, msize, mflags = data[at], struct.unpack_from("<H", data, at + 1)[0], \
                    data[at + 3]
                body_at = at + 4 + order
                body = data[body_at:body_at + msize]
                if body_at + msize > end:
                    raise HDF5Error("object header message runs past its chunk")
                if mtype == _CONTINUATION:
                    cont, clen = self.addr(body, 0), self.length(body, self.O)
                    if cont in seen or len(seen) > _MAX_HEADER_CHUNKS:
                        raise HDF5Error("object header continuation loop")
                    seen.add(cont)
                    block = self.read(cont, clen, "object header continuation")
                    if block[:4] != b"OCHK":
                        raise HDF5Error(f"bad object header continuation at byte "
                                        f"{self.sb.base + cont:,}")
                    self._check_sum(block, cont)
                    chunks.append((block, 4, len(block) - 4))
                elif mtype:
                    out.append((mtype, mflags, body))
                if len(out) > _MAX_MESSAGES:
                    raise HDF5Error("too many object header messages")
                at = body_at + msize
        return out

    def _check_sum(self, block: bytes, address: int) -> None:
        (stored,) = struct.unpack_from("<I", block, len(block) - 4)
        if lookup3(block[:-4]) != stored:
            raise HDF5Error(f"checksum mismatch in the metadata at byte "
                            f"{self.sb.base + address:,}")

    # -- heaps --------------------------------------------------------------------------

    def local_heap(self, address: int) -> bytes:
        if address not in self._local_heaps:
            head = self.read(address, 8 + 2 * self.L + self.O, "local heap")
            if head[:4] != b"HEAP":
                raise HDF5Error(f"bad local heap at byte {self.sb.base + address:,}")
            size = self.length(head, 8)
            data_at = self.addr(head, 8 + 2 * self.L)
            if size > MAX_HEAP_BYTES:
                raise HDF5Error(f"local heap of {size:,} bytes is implausibly large")
            self._local_heaps[address] = self.read(data_at, size, "local heap data")
        return self._local_heaps[address]

    def global_heap_object(self, address: int, index: int) -> bytes:
        if address not in self._global_heaps:
            self._global_heaps[address] = self._read_global_heap(address)
        heap = self._global_heaps[address]
        if index not in heap:
            raise HDF5Error(f"global heap object {index} missing at byte "
                            f"{self.sb.base + address:,}")
        return heap[index]

    def _read_global_heap(self, address: int) -> dict[int, bytes]:
        head = self.read(address, 8 + self.L, "global heap")
        if head[:4] != b"GCOL":
            raise HDF5Error(f"bad global heap at byte {self.sb.base + address:,}")
        size = self.length(head, 8)
        if size > MAX_HEAP_BYTES or size < 8 + self.L:
            raise HDF5Error(f"global heap at byte {self.sb.base + address:,} has an "
                            f"implausible size ({size:,})")
        data = self.read(address, size, "global heap")
        objects, pos = {}, 8 + self.L
        while pos + 8 + self.L <= len(data):
            index = struct.unpack_from("<H", data, pos)[0]
            length = self.length(data, pos + 8)
            if index == 0:
                break  # free space to the end of the collection
            start = pos + 8 + self.L
            if start + length > len(data):
                raise HDF5Error("global heap object runs past its collection")
            objects[index] = data[start:start + length]
            pos = start + pad8(length)
        return objects


def _dataspace(body: bytes, r: _Reader) -> tuple[int, ...] | None:
    """The shape, or None for a null dataspace (no elements)."""
    if len(body) < 4:
        raise HDF5Error("malformed dataspace message")
    version, rank = body[0], body[1]
    if version == 1:
        pos = 8
    elif version == 2:
        pos = 4
        if body[3] == 2:
            return None
    else:
        raise HDF5Error(f"unsupported dataspace message version {version}")
    if rank > 32:
        raise HDF5Error(f"dataspace of rank {rank}")
    return tuple(r.length(body, pos + i * r.L) for i in range(rank))


def _layout(body: bytes, ds: H5Dataset, r: _Reader) -> tuple[str, int | None, int | None]:
    """Fill the dataset's layout; returns (kind, address, size) of what must be checked."""
    version = body[0] if body else 0
    if version in (1, 2):
        rank, cls = body[1], body[2]
        pos = 8
        if cls == 0:
            ds.layout = "compact"
            data_at = pos + 4 * rank
            (size,) = struct.unpack_from("<I", body, data_at)
            ds.compact_data = body[data_at + 4:data_at + 4 + size]
            ds.stored_size = size
            return "compact", None, None
        address = r.addr(body, pos)
        if cls == 1:
            ds.layout, ds.address = "contiguous", address
            ds.stored_size = ds.numel * ds.itemsize
            return "contiguous", address, ds.stored_size
        ds.layout = "chunked"
        return "chunked-v1", address, rank
    if version >= 3:
        cls = body[1]
        if cls == 0:
            (size,) = struct.unpack_from("<H", body, 2)
            ds.layout, ds.stored_size, ds.compact_data = "compact", size, body[4:4 + size]
            return "compact", None, None
        if cls == 1:
            ds.layout = "contiguous"
            ds.address, ds.stored_size = r.addr(body, 2), r.length(body, 2 + r.O)
            return "contiguous", ds.address, ds.stored_size
        if cls == 2 and version == 3:
            ds.layout = "chunked"
            return "chunked-v1", r.addr(body, 3), body[2]
        if cls == 2:
            ds.layout = "chunked"
            return "chunked-index", None, None
        if cls == 3:
            ds.layout = "virtual"
            return "virtual", None, None
    raise HDF5Error(f"unsupported data layout message (version {version})")


def _filters(body: bytes) -> list[str]:
    if len(body) < 2:
        return []
    version, count = body[0], body[1]
    pos, names = (8 if version == 1 else 2), []
    for _ in range(min(count, 32)):
        if pos + 8 > len(body):
            break
        fid, = struct.unpack_from("<H", body, pos)
        if version == 1 or fid >= 256:
            name_len, _flags, nvalues = struct.unpack_from("<HHH", body, pos + 2)
            pos += 8 + (pad8(name_len) if version == 1 else name_len)
        else:
            _flags, nvalues = struct.unpack_from("<HH", body, pos + 2)
            name_len = 0
            pos += 6
        pos += 4 * nvalues + (4 if version == 1 and nvalues % 2 else 0)
        names.append(_FILTER_NAMES.get(fid, f"filter {fid}"))
    return names


def _attribute(body: bytes, r: _Reader, where: str) -> tuple[str, object]:
    if len(body) < 8:
        raise HDF5Error(f"malformed attribute message in {where}")
    version, flags = body[0], body[1]
    name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)
    pos = 8 + (1 if version == 3 else 0)

    def take(n: int) -> int:
        return pad8(n) if version == 1 else n

    name = body[pos:pos + name_size].split(b"\0", 1)[0].decode("utf-8", "replace")
    pos += take(name_size)
    type_at, space_at = pos, pos + take(type_size)
    data_at = space_at + take(space_size)
    if flags & 0x03:
        r.note(f"shared attribute datatype/dataspace of {where}/{name} not decoded")
        return name, None
    dtype, _ = parse_dtype(body, type_at)
    shape = _dataspace(body[space_at:space_at + space_size], r)
    if shape is None:
        return name, None
    return name, _decode_values(body[data_at:], dtype, shape, r)


def _decode_values(raw: bytes, dtype: Dtype, shape: tuple[int, ...], r: _Reader) -> object:
    count = 1
    for n in shape:
        count *= n
    if count > MAX_ATTR_ELEMENTS:
        return f"<{count:,} values>"
    if len(raw) < count * dtype.size:
        raise HDF5Error("attribute value cut short")
    values = [_decode_one(raw[i * dtype.size:(i + 1) * dtype.size], dtype, r)
              for i in range(count)]
    return values[0] if shape == () else values


def _decode_one(raw: bytes, dtype: Dtype, r: _Reader) -> object:
    if dtype.kind == "string":
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    if dtype.kind == "vlen-string":
        (length,) = struct.unpack_from("<I", raw, 0)
        if length == 0:
            return ""
        data = r.global_heap_object(r.addr(raw, 4), struct.unpack_from("<I", raw, 4 + r.O)[0])
        return data[:length].decode("utf-8", "replace")
    code = _struct_code(dtype)
    if code:
        return struct.unpack(dtype.byteorder + code, raw)[0]
    return f"<{dtype.name}>"


def _struct_code(dtype: Dtype) -> str | None:
    table = {("int", 1): "b", ("int", 2): "h", ("int", 4): "i", ("int", 8): "q",
             ("uint", 1): "B", ("uint", 2): "H", ("uint", 4): "I", ("uint", 8): "Q",
             ("float", 2): "e", ("float", 4): "f", ("float", 8): "d"}
    if dtype.name == "bfloat16":
        return None
    return table.get((dtype.kind, dtype.size))


def read_scalar(read_at: Callable[[int, int], bytes], ds: H5Dataset) -> float | int | None:
    """The value of a one-element numeric dataset (a Keras optimizer's iteration count),
    read with one small read; None if it is not one."""
    if ds.numel != 1 or ds.filters:
        return None
    kind = "float" if ds.dtype.startswith("float") else (
        "int" if ds.dtype.startswith("int") else "uint" if ds.dtype.startswith("uint") else "")
    code = _struct_code(Dtype(ds.dtype, ds.itemsize, kind))
    if code is None:
        return None
    if ds.compact_data is not None:
        raw = ds.compact_data[:ds.itemsize]
    elif ds.address is not None:
        raw = read_at(ds.address, ds.itemsize)
    else:
        return None
    return struct.unpack(ds.byteorder + code, raw)[0] if len(raw) == ds.itemsize else None


def _symbol_table_links(body: bytes, r: _Reader, where: str) -> list[tuple[str, int]]:
    btree, heap_at = r.addr(body, 0), r.addr(body, r.O)
    heap = r.local_heap(heap_at)
    links: list[tuple[str, int]] = []
    _walk_group_btree(btree, heap, r, links, set(), 0, where)
    return links


def _walk_group_btree(address: int, heap: bytes, r: _Reader, links: list,
                      seen: set[int], depth: int, where: str) -> None:
    if address in seen or depth > MAX_DEPTH:
        raise HDF5Error(f"group B-tree of {where} loops")
    seen.add(address)
    level, used, body = _btree_v1_node(r, address, 0, r.L, where)
    step = r.L + r.O
    for i in range(used):
        child = r.addr(body, r.L + i * step)
        if level > 0:
            _walk_group_btree(child, heap, r, links, seen, depth + 1, where)
        else:
            _symbol_node(child, heap, r, links, where)


def _btree_v1_node(r: _Reader, address: int, node_type: int, key_size: int,
                   where: str) -> tuple[int, int, bytes]:
    """(level, entries, keys and children) of a version-1 B-tree node: type 0 indexes a
    group's symbol nodes, type 1 a dataset's chunks. Each child follows a `key_size` key,
    and one more key ends the node."""
    what = "group B-tree node" if node_type == 0 else "chunk B-tree node"
    head = r.read(address, 8 + 2 * r.O, what)
    if head[:4] != b"TREE" or head[4] != node_type:
        raise HDF5Error(f"bad {what} at byte {r.sb.base + address:,} ({where})")
    level, used = head[5], struct.unpack_from("<H", head, 6)[0]
    body = r.read(address + 8 + 2 * r.O, used * (key_size + r.O) + key_size, what)
    return level, used, body


def _symbol_node(address: int, heap: bytes, r: _Reader, links: list, where: str) -> None:
    head = r.read(address, 8, "symbol table node")
    if head[:4] != b"SNOD":
        raise HDF5Error(f"bad symbol table node at byte {r.sb.base + address:,} ({where})")
    count = struct.unpack_from("<H", head, 6)[0]
    size = 2 * r.O + 24
    body = r.read(address + 8, count * size, "symbol table node")
    for i in range(count):
        name_at = r.addr(body, i * size)
        target = r.addr(body, i * size + r.O)
        end = heap.find(b"\0", name_at)
        if name_at >= len(heap) or end < 0:
            raise HDF5Error(f"link name outside the local heap ({where})")
        (cache_type,) = struct.unpack_from("<I", body, i * size + 2 * r.O)
        name = heap[name_at:end].decode("utf-8", "replace")
        links.append((name, None if cache_type == 2 else target))  # 2: a soft link


def _link_message(body: bytes, r: _Reader) -> tuple[str, int | None]:
    """(name, object address); address None for soft and external links."""
    if len(body) < 3 or body[0] != 1:
        raise HDF5Error("malformed link message")
    flags, pos = body[1], 2
    link_type = 0
    if flags & 0x08:
        link_type, pos = body[pos], pos + 1
    if flags & 0x04:
        pos += 8
    if flags & 0x10:
        pos += 1
    width = 1 << (flags & 3)
    name_len = read_uint(body, pos, width)
    pos += width
    name = body[pos:pos + name_len].decode("utf-8", "replace")
    pos += name_len
    if link_type != 0:
        return name, None
    return name, r.addr(body, pos)


def read_hdf5(read_at: Callable[[int, int], bytes], size: int) -> H5Summary:
    """Walk an HDF5 file's metadata. `read_at(offset, n)` returns bytes of the file (a plain
    file, or a window onto a zip member). Raises HDF5Error (HDF5Truncated when the superblock
    says the file is longer than `size`); OSError from `read_at` passes through."""
    try:
        return _read_hdf5(read_at, size)
    except (struct.error, IndexError, ValueError, KeyError, OverflowError, RecursionError,
            MemoryError, UnicodeError) as exc:  # a field that contradicts another one
        raise HDF5Error(f"malformed HDF5 metadata ({type(exc).__name__}: {exc})") from None


def _read_hdf5(read_at: Callable[[int, int], bytes], size: int) -> H5Summary:
    head = read_at(0, min(size, 256))
    sb = parse_superblock(head)
    if sb.eof > size:
        raise HDF5Truncated(sb.eof, size)
    r = _Reader(read_at, size, sb)
    summary = H5Summary(superblock_version=sb.version, eof=sb.eof, size=size,
                        open_for_writing=bool(sb.flags & 0x05))
    stack: list[tuple[str, int, int]] = [("", sb.root, 0)]
    visited: set[int] = set()
    while stack:
        path, address, depth = stack.pop()
        if address in visited:
            continue  # a second hard link to an object already described
        visited.add(address)
        r.objects_seen += 1
        if r.objects_seen > MAX_OBJECTS:
            r.note(f"stopped after {MAX_OBJECTS:,} objects")
            break
        where = path or "/"
        messages = r.messages(address)
        kinds = {m[0] for m in messages}
        attrs = _attributes(messages, r, where)
        if _DATASPACE in kinds and _LAYOUT in kinds:
            summary.datasets.append(_dataset(path, messages, attrs, r))
            continue
        summary.groups.append(H5Group(path, attrs))
        if depth >= MAX_DEPTH:
            r.note(f"groups nested deeper than {MAX_DEPTH} under {where} not listed")
            continue
        for name, target in reversed(sorted(_links(messages, r, where))):
            if target is None:
                r.note(f"soft/external link {where.rstrip('/')}/{name} not followed")
                continue
            stack.append((f"{path}/{name}" if path else name, target, depth + 1))
    summary.unverified = r.unverified
    summary.chunks_checked = r.chunks_checked
    return summary


def _attributes(messages: list, r: _Reader, where: str) -> dict:
    attrs: dict = {}
    for mtype, _flags, body in messages:
        if mtype == _ATTRIBUTE:
            name, value = _attribute(body, r, where)
            attrs[name] = value
        elif mtype == _ATTRIBUTE_INFO and len(body) >= 2 + r.O:
            heap_at = r.addr(body, 2 + (2 if body[1] & 1 else 0))
            if heap_at != r.undefined:
                r.note(f"attributes of {where} kept in dense storage were not read")
    return attrs


def _links(messages: list, r: _Reader, where: str) -> list[tuple[str, int | None]]:
    links: list[tuple[str, int | None]] = []
    for mtype, _flags, body in messages:
        if mtype == _SYMBOL_TABLE:
            links.extend(_symbol_table_links(body, r, where))
        elif mtype == _LINK:
            links.append(_link_message(body, r))
        elif mtype == _LINK_INFO and len(body) >= 2 + r.O:
            heap_at = r.addr(body, 2 + (8 if body[1] & 1 else 0))
            if heap_at != r.undefined:
                r.note(f"members of {where} kept in dense storage (a fractal heap) were not "
                       "listed")
    return links


def _dataset(path: str, messages: list, attrs: dict, r: _Reader) -> H5Dataset:
    found = {mtype: (flags, body) for mtype, flags, body in reversed(messages)}
    flags, type_body = found[_DATATYPE]
    if flags & 0x02:
        r.note(f"shared (committed) datatype of {path} not decoded")
        dtype = Dtype("unknown", 0, "other")
    else:
        dtype, _ = parse_dtype(type_body, 0)
    shape = _dataspace(found[_DATASPACE][1], r) or ()
    name = dtype.name
    if isinstance(attrs.get("dtype"), str) and attrs["dtype"] in ("bfloat16", "float8_e4m3fn",
                                                                  "float8_e5m2"):
        name = attrs["dtype"]  # Keras marks the dtypes numpy lacks with an attribute
    ds = H5Dataset(path, name, shape, "unknown", attrs=attrs, itemsize=dtype.size,
                   byteorder=dtype.byteorder)
    if _FILTERS in found:
        ds.filters = _filters(found[_FILTERS][1])
    kind, address, extra = _layout(found[_LAYOUT][1], ds, r)
    if kind == "contiguous":
        _place_contiguous(ds, address, extra or 0, r)
    elif kind == "chunked-v1" and address is not None and address != r.undefined:
        _check_chunks(address, int(extra or 0), r, path)
    elif kind == "chunked-index":
        r.note(f"chunk index of {path} (layout version 4) not checked")
    elif kind == "virtual":
        r.note(f"virtual dataset {path}: its sources were not checked")
    return ds


def _place_contiguous(ds: H5Dataset, address: int | None, size: int, r: _Reader) -> None:
    """Turn the data address into a file offset, checking the bytes lie inside the file."""
    if address is None or address == r.undefined:
        ds.address = None  # never written: reads as the fill value
        return
    start = r.sb.base + address
    end = start + size
    if end > r.sb.eof or end > r.size:
        raise HDF5Error(f"data of {ds.path} (bytes {start:,}-{end:,}) runs past the end of "
                        f"the file ({min(r.sb.eof, r.size):,} bytes)")
    ds.address = start


def _check_chunks(address: int, dims: int, r: _Reader, path: str) -> None:
    """Every chunk of a chunked dataset (version-1 B-tree index) lies inside the file."""
    stack, seen = [(address, 0)], set()
    key_size = 8 + 8 * dims
    while stack:
        node, depth = stack.pop()
        if node in seen or depth > MAX_DEPTH:
            raise HDF5Error(f"chunk B-tree of {path} loops")
        seen.add(node)
        level, used, body = _btree_v1_node(r, node, 1, key_size, path)
        step = key_size + r.O
        for i in range(used):
            (chunk_size,) = struct.unpack_from("<I", body, i * step)
            child = r.addr(body, i * step + key_size)
            if level > 0:
                stack.append((child, depth + 1))
                continue
            r.chunks_checked += 1
            if r.chunks_checked > MAX_CHUNKS_CHECKED:
                r.note(f"chunks of {path} past the first {MAX_CHUNKS_CHECKED:,} not checked")
                return
            end = r.sb.base + child + chunk_size
            if child == r.undefined or end > r.sb.eof or end > r.size:
                raise HDF5Error(f"a chunk of {path} (bytes {r.sb.base + child:,}-{end:,}) "
                                f"runs past the end of the file")
