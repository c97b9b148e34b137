"""Checkpoint inspection cost (issue 4): metadata of a 4 GB checkpoint in well under a second,
as a ratio to reading its pickle member only; and a directory of 500 checkpoints.

The checkpoints are torch zip archives written by hand (no torch needed): `<stem>/data.pkl` in
torch's pickle layout, `<stem>/data/N` storages left as holes of a sparse file, zip64 records,
correct CRCs. Prints figures; asserts nothing.

    python bench/checkpoints.py [--gib 4] [--dir-count 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainctl_tui.checkpoints.inspect import cache_clear, inspect_checkpoint  # noqa: E402

# -- CRC-32 of n zero bytes without reading them (zlib's crc32_combine arithmetic) -----------

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


_X2N = [1 << 30]
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def crc32_zeros(n: int, crc: int = 0) -> int:
    """zlib.crc32(bytes(n), crc), in O(log n)."""
    p, k = 1 << 31, 3  # x^0; each byte is x^8
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


# -- torch's data.pkl, opcode by opcode (protocol 2, as torch.save writes it) ----------------


def _text(s: str) -> bytes:
    raw = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _int(n: int) -> bytes:
    return pickle.BININT + struct.pack("<i", n) if n < 2**31 else pickle.LONG1 + bytes(
        [8]) + n.to_bytes(8, "little", signed=True)


def _tuple(items: list[bytes]) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def tensor_pickle(key: str, storage_key: str, shape: tuple[int, ...]) -> bytes:
    """`key: _rebuild_tensor_v2(FloatStorage persistent id, 0, shape, stride, False, {})`."""
    stride, acc = [], 1
    for n in reversed(shape):
        stride.insert(0, acc)
        acc *= n
    numel = acc
    pid = _tuple([_text("storage"), pickle.GLOBAL + b"torch\nFloatStorage\n", _text(storage_key),
                  _text("cpu"), _int(numel)]) + pickle.BINPERSID
    hooks = pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE
    args = _tuple([pid, _int(0), _tuple([_int(n) for n in shape]),
                   _tuple([_int(s) for s in stride]), pickle.NEWFALSE, hooks])
    return _text(key) + pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n" + args + \
        pickle.REDUCE


def state_pickle(tensors: dict[str, tuple[int, ...]], extra: dict[str, int]) -> bytes:
    """{'model': OrderedDict of float32 tensors (storage i for the i-th), **extra ints}."""
    body = b"".join(tensor_pickle(k, str(i), shape) for i, (k, shape) in enumerate(
        tensors.items()))
    model = (pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE +
             pickle.REDUCE + pickle.MARK + body + pickle.SETITEMS)
    items = _text("model") + model + b"".join(_text(k) + _int(v) for k, v in extra.items())
    return (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + items +
            pickle.SETITEMS + pickle.STOP)


# -- a zip64 writer whose big members are holes ----------------------------------------------


def _local_header(name: bytes, crc: int, size: int, zip64: bool) -> bytes:
    extra = struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b""
    shown = 0xFFFFFFFF if zip64 else size
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, shown, shown,
                       len(name), len(extra)) + name + extra


def _central_entry(name: bytes, crc: int, size: int, offset: int) -> bytes:
    extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc,
                       0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0,
                       0xFFFFFFFF) + name + extra


def write_torch_zip(path: Path, tensors: dict[str, tuple[int, ...]],
                    extra: dict[str, int] | None = None) -> None:
    """A float32 state dict in torch's zip layout; storages are zeros left as file holes."""
    stem = path.stem
    members: list[tuple[str, bytes | int]] = [
        (f"{stem}/data.pkl", state_pickle(tensors, extra or {})),
        (f"{stem}/.format_version", b"1"), (f"{stem}/.storage_alignment", b"64"),
        (f"{stem}/byteorder", b"little")]
    for i, shape in enumerate(tensors.values()):
        numel = 1
        for n in shape:
            numel *= n
        members.append((f"{stem}/data/{i}", numel * 4))
    members.append((f"{stem}/version", b"3\n"))
    central = []
    with open(path, "wb") as f:
        for name, data in members:
            raw_name, offset = name.encode(), f.tell()
            size = data if isinstance(data, int) else len(data)
            crc = crc32_zeros(size) if isinstance(data, int) else zlib.crc32(data)
            f.write(_local_header(raw_name, crc, size, zip64=True))
            if isinstance(data, int):
                f.seek(size, os.SEEK_CUR)  # a hole: zeros that take no disk
            else:
                f.write(data)
            central.append(_central_entry(raw_name, crc, size, offset))
        start = f.tell()
        f.write(b"".join(central))
        end = f.tell()
        count, length = len(central), end - start
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, length,
                            start))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                            0xFFFFFFFF, 0))


def big_checkpoint(path: Path, gib: float = 4.0, layers: int = 48) -> None:
    """A GPT-like state dict whose embedding holds nearly all of `gib` GiB."""
    width = 1024
    tensors: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        tensors[f"h.{i}.attn.c_attn.weight"] = (width, 3 * width)
        tensors[f"h.{i}.attn.c_attn.bias"] = (3 * width,)
        tensors[f"h.{i}.mlp.c_fc.weight"] = (width, 4 * width)
        tensors[f"h.{i}.ln_1.weight"] = (width,)
    used = sum(4 * _numel(s) for s in tensors.values())
    rows = max(1, int((gib * 2**30 - used) // (4 * width)))
    tensors = {"wte.weight": (rows, width), **tensors}
    write_torch_zip(path, tensors, {"iter_num": 100_000, "epoch": 3})


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


# -- timing ----------------------------------------------------------------------------------


def median_time(func, runs: int) -> float:
    func()  # warm the page cache and imports
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_pickle_only(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))


def inspect_fresh(path: Path) -> None:
    cache_clear()
    info = inspect_checkpoint(path)
    assert info.status == "ok", info.reason  # a broken bench file, not a timing assertion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--dir-count", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-") as tmp:
        big = Path(tmp) / "big.pt"
        big_checkpoint(big, args.gib)
        st = big.stat()
        info = inspect_checkpoint(big)
        print(f"big checkpoint: {st.st_size / 2**30:.2f} GiB ({st.st_blocks * 512 / 2**20:.1f} "
              f"MiB on disk), {info.tensor_count} tensors, {info.param_count:,} parameters")
        t_info = median_time(lambda: inspect_fresh(big), args.runs)
        t_pickle = median_time(lambda: read_pickle_only(big), args.runs)
        print(f"  inspect_checkpoint: {t_info * 1000:8.2f} ms")
        print(f"  read data.pkl only: {t_pickle * 1000:8.2f} ms   ratio {t_info / t_pickle:.2f}x")

        folder = Path(tmp) / "many"
        folder.mkdir()
        shapes = {f"layer{i}.weight": (64, 64) for i in range(12)}
        for n in range(args.dir_count):
            write_torch_zip(folder / f"ckpt_{n:04d}.pt", shapes, {"step": n * 100})
        paths = sorted(folder.iterdir())

        def inspect_all() -> None:
            cache_clear()
            for p in paths:
                inspect_checkpoint(p)

        t_all = median_time(inspect_all, max(1, args.runs // 2))
        start = time.perf_counter()
        for p in paths:
            inspect_checkpoint(p)  # all cached now
        t_cached = time.perf_counter() - start
        print(f"directory of {len(paths)} checkpoints: {t_all * 1000:.1f} ms total, "
              f"{t_all / len(paths) * 1000:.3f} ms per checkpoint")
        print(f"  again, cached: {t_cached * 1000:.1f} ms total, "
              f"{t_cached / len(paths) * 1e6:.1f} us per checkpoint "
              f"(ratio {t_all / t_cached:.0f}x)")


if __name__ == "__main__":
    main()
