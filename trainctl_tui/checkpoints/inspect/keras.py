"""Keras: a `.keras` zip (config.json, metadata.json, model.weights.h5) and `.weights.h5` /
legacy `.h5` files, walked by the HDF5 metadata reader (checkpoints/hdf5.py).
"""

from __future__ import annotations

import collections
import json
import struct
import zipfile
from collections.abc import Callable
from typing import Any

from .dtypes import dtype_nbytes
from .errors import Corrupt
from .info import TENSOR_LIST_CAP, CheckpointInfo, TensorInfo, plain_json
from .torch_zip import check_zip_crcs, member_data_offset, zip_read

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KERAS_WEIGHTS = "model.weights.h5"
# Member CRCs of a .keras are always checked up to this much data (a Keras model is usually
# small); past it only with deep=True, and the report says they were not.
KERAS_CRC_LIMIT = 256 * 1024 * 1024
_IN_MEMORY_LIMIT = 32 * 1024 * 1024  # a compressed model.weights.h5 is read whole


def _hdf5_reader() -> Any:
    """The HDF5 reader beside the inspector (checkpoints/hdf5.py), or None without it."""
    try:
        from .. import hdf5
    except ImportError:
        return None
    return hdf5


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


def read_keras(info: CheckpointInfo, fp: Any, size: int, deep: bool) -> None:
    info.format = "keras"
    problem = _zip_end_problem(fp, size)
    if problem:
        raise Corrupt(problem)
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, NotImplementedError) as exc:
        raise Corrupt(f"bad zip central directory ({exc})") from None
    members = {i.filename: i for i in zf.infolist()}
    info.top_keys = list(members)[:100]
    for info_ in members.values():
        if info_.header_offset + 30 + info_.compress_size > size:
            raise Corrupt(f"zip member {info_.filename} runs past the end of the file")
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
        raise Corrupt(f"no {_KERAS_WEIGHTS} in the archive")
    total = sum(i.file_size for i in members.values())
    if deep or total <= KERAS_CRC_LIMIT:
        check_zip_crcs(zf)
    else:
        info.unverified.append(f"member CRCs not checked ({total:,} bytes; use --deep)")


def _keras_json(zf: zipfile.ZipFile, members: dict, name: str) -> Any:
    if name not in members:
        raise Corrupt(f"no {name} in the archive (not a Keras model file)")
    try:
        return json.loads(zip_read(zf, members[name]))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Corrupt(f"{name}: invalid JSON ({exc})") from None


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
    info.model_args = plain_json(model)
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
        read = _read_at(fp, member_data_offset(fp, member))
    elif member.file_size <= _IN_MEMORY_LIMIT:
        data = zip_read(zf, member, limit=_IN_MEMORY_LIMIT)
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
        raise Corrupt(f"{prefix}{exc}") from None
    if summary.open_for_writing:
        raise Corrupt(f"{prefix}HDF5 file still open for writing, or its writer died before "
                       "closing it")
    if summary.size > summary.eof:
        summary.unverified.append(f"{prefix}{summary.size - summary.eof:,} bytes past the end "
                                  "the superblock records were not read")
    return summary


def read_hdf5_file(info: CheckpointInfo, fp: Any, size: int, deep: bool) -> None:
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
    tensors = [TensorInfo(ds.path, ds.dtype, ds.shape, ds.numel, dtype_nbytes(ds.dtype, ds.numel))
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
            raise Corrupt(f"{key} attribute: invalid JSON ({exc})") from None
        if isinstance(value, dict):
            apply(value)
    if info.model_args is None:
        weights_group = next((g for g in summary.groups if g.path in ("model_weights", "")
                              and isinstance(g.attrs.get("layer_names"), list)), None)
        if weights_group is not None:
            names = weights_group.attrs["layer_names"]
            info.model_args = {"layers_with_weights": len(names), "layer_names": names[:50]}
