"""Checkpoint directories: Hugging Face (trainer_state.json), Accelerate `checkpoint_N`,
torchtune `epoch_N`, DeepSpeed; described from their listing, wherever the files are.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from .errors import METADATA_LIMIT, TooLarge, too_large
from .info import TENSOR_LIST_CAP, CheckpointInfo, TensorInfo, plain_json

_WEIGHT_FILE = re.compile(
    r"^(model|pytorch_model|adapter_model|diffusion_pytorch_model|consolidated|tf_model|"
    r"flax_model)([._-].*)?\.(safetensors|bin|pt|pth)$|.*model_states\.pt$")
_ROLES = (("optimizer", re.compile(r"optimizer.*\.(pt|bin|pth)$|.*optim_states\.pt$")),
          ("scheduler", re.compile(r"scheduler.*\.(pt|pth|bin)$")),
          ("rng_state", re.compile(r"(rng_state.*\.pth?|random_states_\d+\.pkl)$")),
          ("custom_state", re.compile(r"custom_checkpoint_\d+\.pkl$")),  # Accelerate's
          ("training_args", re.compile(r"training_args\.bin$")),
          ("scaler", re.compile(r"scaler\.pt$")))
_TENSOR_FILE = re.compile(r".*\.(safetensors|bin|pt|pth|ckpt)$")


def dir_files(path: str) -> list[str]:
    """Files of a checkpoint dir, and of its real sub-folders one level down (DeepSpeed's
    global_stepN/), as relative paths. Symlinked folders (`up -> ..`) are not entered;
    entries that cannot be looked at (a symlink loop) are left out."""
    out = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if _is_file(entry):
            out.append(entry.name)
        elif _is_real_dir(entry):
            with os.scandir(entry.path) as inner:
                out.extend(f"{entry.name}/{e.name}" for e in sorted(inner, key=lambda e: e.name)
                           if _is_file(e))
    return out


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_real_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _role(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    if _WEIGHT_FILE.match(base):
        return "weights"
    for role, pattern in _ROLES:
        if pattern.match(base):
            return role
    if base == "trainer_state.json":
        return "trainer_state"
    if base.endswith(".index.json"):
        return "index"
    if base.endswith(".json"):
        return "config"
    return "other" if not _TENSOR_FILE.match(base) else "tensors"


# torchtune keeps the optimizer and progress of the newest unfinished epoch beside the epoch
# folders (0.4+: recipe_state/recipe_state.pt; before: recipe_state.pt in output_dir).
RECIPE_STATES = ("recipe_state/recipe_state.pt", "recipe_state.pt")


def inspect_dir_files(path: str, files: list[tuple[str, int, float]],
                      inspect_file: Callable[[str], CheckpointInfo],
                      read_file: Callable[[str], bytes], *, mtime: float = 0.0
                      ) -> CheckpointInfo:
    """Describe a checkpoint directory from its listing, wherever its files are: `files` holds
    (relative name, size, mtime); `inspect_file(name)` describes one tensor file and
    `read_file(name)` returns a small JSON file's bytes (both may raise OSError)."""
    names = [name for name, _size, _mtime in files]
    info = CheckpointInfo(path=path, kind="dir", format="hf-dir", size=0, mtime=mtime,
                          top_keys=names[:100])
    problems: list[tuple[str, str]] = []  # (status, reason)
    weights: list[CheckpointInfo] = []
    for name, size, file_mtime in files:
        info.size += size
        info.mtime = max(info.mtime, file_mtime)
        role = _role(name)
        entry: dict[str, Any] = {"name": name, "role": role, "size": size}
        if role in ("weights", "optimizer", "scheduler", "rng_state", "custom_state",
                    "training_args", "scaler", "tensors"):
            try:
                sub = inspect_file(name)
            except FileNotFoundError:
                continue  # removed while we looked
            except OSError as exc:
                problems.append(("corrupt", f"{name}: cannot read ({exc.strerror or exc})"))
                info.files.append(entry)
                continue
            entry.update(_file_entry(sub))
            merge_globals(info, sub)
            if sub.status != "ok":
                kind = "dangerous" if sub.dangerous_globals else sub.status
                problems.append((kind, f"{name}: {sub.reason}"))
            if role == "weights":
                weights.append(sub)
            if role == "optimizer":
                info.has_optimizer = True
            if role == "training_args" and sub.hparams:
                info.hparams = sub.hparams
            if role == "rng_state" and sub.step:  # Accelerate keeps its step counter there
                info.metadata.setdefault("accelerator_step", sub.step)
        info.files.append(entry)
    sizes = {name: size for name, size, _mtime in files}
    _read_dir_json(info, path, names, problems, lambda name: _read_small(name, sizes, read_file))
    _merge_weights(info, weights)
    _dir_layout(info, path, names)
    if not any(e["role"] in ("weights", "trainer_state", "optimizer") for e in info.files):
        info.format = "unknown"
        problems.append(("corrupt", "no checkpoint files in this directory"))
    _dir_status(info, problems)
    return info


_ACCELERATE_DIR = re.compile(r"^checkpoint_(\d+)$")
TORCHTUNE_DIR = re.compile(r"^epoch_(\d+)$")


def _dir_layout(info: CheckpointInfo, path: str, names: list[str]) -> None:
    """Which library wrote the directory, and what its name numbers: Accelerate's
    checkpoint_N counts save_state calls, torchtune's epoch_N is the epoch just finished."""
    if info.format != "hf-dir":
        return
    base = os.path.basename(path.rstrip("/"))
    accelerate = _ACCELERATE_DIR.match(base)
    if accelerate or any(re.match(r"random_states_\d+\.pkl$", n) for n in names):
        info.format = "accelerate-dir"
        if accelerate:
            info.metadata["save_iteration"] = int(accelerate.group(1))
        step = info.metadata.get("accelerator_step")
        info.step = step if info.step is None and isinstance(step, int) else info.step
        return
    torchtune = TORCHTUNE_DIR.match(base)
    if torchtune:
        info.format = "torchtune-dir"
        info.epoch = float(torchtune.group(1))


def _file_entry(sub: CheckpointInfo) -> dict:
    return {"format": sub.format, "status": sub.status, "reason": sub.reason,
            "tensor_count": sub.tensor_count, "param_count": sub.param_count,
            "dtypes": dict(sub.dtypes), "top_keys": sub.top_keys[:20],
            "unknown_globals": list(sub.unknown_globals),
            "dangerous_globals": list(sub.dangerous_globals)}


def merge_globals(info: CheckpointInfo, sub: CheckpointInfo) -> None:
    for bucket, names in ((info.unknown_globals, sub.unknown_globals),
                          (info.dangerous_globals, sub.dangerous_globals)):
        bucket.extend(n for n in names if n not in bucket)
        bucket.sort()


def _merge_weights(info: CheckpointInfo, weights: list[CheckpointInfo]) -> None:
    tensors: list[TensorInfo] = []
    for sub in weights:
        info.tensor_count += sub.tensor_count
        info.param_count += sub.param_count
        for dtype, n in sub.dtypes.items():
            info.dtypes[dtype] = info.dtypes.get(dtype, 0) + n
        tensors.extend(sub.tensors)
    info.tensors = sorted(tensors, key=lambda t: (-t.nbytes, t.name))[:TENSOR_LIST_CAP]


def _read_small(name: str, sizes: dict[str, int], read_file: Callable[[str], bytes]) -> bytes:
    """A JSON side file, unless its listed size is past METADATA_LIMIT (an S3 read would fetch
    all of it)."""
    if sizes.get(name, 0) > METADATA_LIMIT:
        raise too_large(f"{name} ({sizes[name]:,} bytes)")
    return read_file(name)


def _read_dir_json(info: CheckpointInfo, path: str, names: list[str],
                   problems: list[tuple[str, str]], read_file: Callable[[str], bytes]) -> None:
    for name in names:
        role = _role(name)
        if role not in ("trainer_state", "index") and name != "config.json":
            continue
        try:
            data = json.loads(read_file(name))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            problems.append(("corrupt", f"{name}: invalid JSON ({exc})"))
            continue
        except TooLarge as exc:  # its numbers are not needed to resume: noted, not fatal
            info.unverified.append(str(exc))
            continue
        except OSError:
            continue
        if role == "trainer_state" and isinstance(data, dict):
            _trainer_state(info, data)
        elif role == "index" and isinstance(data, dict):
            _check_index(name, data, names, problems)
        elif name == "config.json" and isinstance(data, dict):
            info.model_args = plain_json(data)
    if info.step is None:
        match = re.search(r"(?:checkpoint-|global_step)(\d+)$", os.path.basename(path))
        info.step = int(match.group(1)) if match else None


def _trainer_state(info: CheckpointInfo, state: dict) -> None:
    if isinstance(state.get("global_step"), int):
        info.step = state["global_step"]
    if isinstance(state.get("epoch"), (int, float)):
        info.epoch = state["epoch"]
    if isinstance(state.get("best_metric"), (int, float)):
        info.best_metric = float(state["best_metric"])
    history = state.get("log_history")
    if not isinstance(history, list):
        return
    # latest value of every number logged (loss, eval_loss, learning_rate, grad_norm, ...)
    for entry in history:
        if isinstance(entry, dict):
            info.metrics.update({k: float(v) for k, v in entry.items()
                                 if k not in ("step", "epoch") and isinstance(v, (int, float))
                                 and not isinstance(v, bool)})
    losses = [e["loss"] for e in history if isinstance(e, dict)
              and isinstance(e.get("loss"), (int, float))]
    if losses:
        info.loss = float(losses[-1])
    elif "eval_loss" in info.metrics:
        info.loss = info.metrics["eval_loss"]


def _check_index(name: str, index: dict, names: list[str],
                 problems: list[tuple[str, str]]) -> None:
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        problems.append(("corrupt", f"{name}: no weight_map"))
        return
    folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
    for shard in sorted({str(v) for v in weight_map.values()}):
        if folder + shard not in names:
            problems.append(("corrupt", f"{shard} missing (listed in {name})"))


def _dir_status(info: CheckpointInfo, problems: list[tuple[str, str]]) -> None:
    """The worst problem first: code that runs, damage, unread, then globals merely unknown
    (the only ones `--trust` may accept, so they must not hide the others)."""
    for kind in ("dangerous", "corrupt", "unknown", "suspicious"):
        reasons = [reason for s, reason in problems if s == kind]
        if reasons:
            info.status = "suspicious" if kind == "dangerous" else kind
            info.reason = reasons[0] if len(reasons) == 1 else (
                f"{reasons[0]} (and {len(reasons) - 1} more)")
            return
