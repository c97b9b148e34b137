"""inspect_checkpoint: which reader a file or folder needs, the cache, and the one rule for
resuming (`unsound_reason`).
"""

from __future__ import annotations

import collections
import contextlib
import os
import stat
import threading
from collections.abc import Callable
from typing import Any

from .allow_list import Findings
from .directories import RECIPE_STATES, TORCHTUNE_DIR, dir_files, inspect_dir_files, merge_globals
from .errors import METADATA_LIMIT, Corrupt, too_large
from .info import CheckpointInfo
from .keras import HDF5_SIGNATURE, read_hdf5_file, read_keras
from .safetensors import read_safetensors, summarize_safetensors
from .torch_legacy import read_pickle_file
from .torch_summary import summarize_torch
from .torch_zip import read_torch_zip

CACHE_SIZE = 512
_LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"


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
    for sub in dir_files(path):
        try:
            s = os.stat(os.path.join(path, sub))
        except OSError:
            continue
        entries.append((sub, s.st_size, s.st_mtime_ns, s.st_ino))
    if TORCHTUNE_DIR.match(os.path.basename(path)):  # its recipe state lives beside it
        for rel in RECIPE_STATES:
            with contextlib.suppress(OSError):
                s = os.stat(os.path.join(os.path.dirname(path), rel))
                entries.append((rel, s.st_size, s.st_mtime_ns, s.st_ino))
    return (st.st_mtime_ns, tuple(entries))


def _inspect_file(path: str, st: os.stat_result, deep: bool) -> CheckpointInfo:
    info = CheckpointInfo(path=path, kind="file", format="unknown", size=st.st_size,
                          mtime=st.st_mtime)
    findings = Findings()
    try:
        if not stat.S_ISREG(st.st_mode):
            raise Corrupt("not a regular file")
        if st.st_size == 0:
            raise Corrupt("empty file (0 bytes)")
        with open(path, "rb") as fp:
            _read_any(info, fp, st.st_size, deep, findings)
    except Corrupt as exc:
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
    findings = Findings()
    try:
        if size == 0:
            raise Corrupt("empty file (0 bytes)")
        _read_any(info, fp, size, deep, findings)
    except Corrupt as exc:
        info.status, info.reason = exc.status, str(exc)
    _apply_findings(info, findings)
    return info


def _apply_findings(info: CheckpointInfo, findings: Findings) -> None:
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
              findings: Findings) -> None:
    head = fp.read(64)
    fp.seek(0)
    lower = info.path.lower()
    if head.startswith(_LFS_MAGIC):
        info.format = "git-lfs-pointer"
        _lfs_pointer(info, fp.read(1024))
    elif lower.endswith(".keras") and head[:4] != b"PK\x03\x04":
        info.format = "keras"
        raise Corrupt(f"not a zip archive, as a .keras file is (starts with {head[:8]!r})")
    elif lower.endswith((".h5", ".hdf5")) and not head.startswith(HDF5_SIGNATURE):
        info.format = "hdf5"
        raise Corrupt(f"not an HDF5 file: no HDF5 signature (starts with {head[:8]!r})")
    elif head.startswith(HDF5_SIGNATURE):
        read_hdf5_file(info, fp, size, deep)
    elif lower.endswith(".keras"):
        read_keras(info, fp, size, deep)
    elif head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        info.format = "torch-zip"
        parsed = read_torch_zip(fp, size, deep, findings)
        summarize_torch(info, parsed)
        _run(parsed.checks)
    elif len(head) > 8 and head[8:9] == b"{":
        info.format = "safetensors"
        st = read_safetensors(fp, size, deep)
        summarize_safetensors(info, st)
        _run(st.checks)
    elif head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]", b")", b"c"):  # protocol 2+ / 0-1
        info.format = "pickle"
        parsed = read_pickle_file(info, fp, size, deep, findings)
        summarize_torch(info, parsed)
        _run(parsed.checks)
    elif info.path.endswith(".safetensors"):
        info.format = "safetensors"
        raise Corrupt("bad safetensors header (does not start with a header length and '{')")
    else:
        raise Corrupt(f"unrecognized file format (starts with {head[:8]!r})")


def _run(checks: list[Callable[[], None]]) -> None:
    for check in checks:
        check()


def _lfs_pointer(info: CheckpointInfo, text: bytes) -> None:
    fields = dict(line.split(" ", 1) for line in text.decode("utf-8", "replace").splitlines()
                  if " " in line)
    info.metadata = {k: fields[k] for k in ("oid", "size") if k in fields}
    size = fields.get("size", "?")
    raise Corrupt(f"git-lfs pointer, not the data ({size} bytes not fetched; "
                   "run `git lfs pull`)")


def _inspect_dir(path: str, st: os.stat_result, deep: bool) -> CheckpointInfo:
    files = []
    for name in dir_files(path):
        try:
            fst = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue  # removed while we looked
        files.append((name, fst.st_size, fst.st_mtime))

    def read_file(name: str) -> bytes:
        with open(os.path.join(path, name), "rb") as fp:
            data = fp.read(METADATA_LIMIT + 1)
        if len(data) > METADATA_LIMIT:
            raise too_large(name)
        return data

    info = inspect_dir_files(
        path, files, lambda name: inspect_checkpoint(os.path.join(path, name), deep=deep),
        read_file, mtime=st.st_mtime)
    if info.format == "torchtune-dir":
        _torchtune_recipe_state(info, path, deep)
    return info


def _torchtune_recipe_state(info: CheckpointInfo, path: str, deep: bool) -> None:
    parent = os.path.dirname(path.rstrip("/"))
    found = next((r for r in RECIPE_STATES if os.path.isfile(os.path.join(parent, r))), None)
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
    merge_globals(info, sub)
    if sub.status != "ok" and info.status == "ok":
        info.status, info.reason = sub.status, f"../{found}: {sub.reason}"
