"""What a torch/Lightning/plain pickle holds: weights, optimizer, step, epoch, loss, metrics."""

from __future__ import annotations

import re
from typing import Any

from .errors import Corrupt
from .info import TENSOR_LIST_CAP, CheckpointInfo, TensorInfo, key_text, plain_json
from .stand_ins import Opaque, Record, Tensor
from .unpickler import Parsed

_STEP_KEYS = ("global_step", "step", "iter_num", "iteration", "iter", "num_updates", "steps",
              "total_steps", "train_step", "num_steps")
_EPOCH_KEYS = ("epoch", "current_epoch", "cur_epoch", "epochs")
_LOSS_KEYS = ("loss", "val_loss", "valid_loss", "eval_loss", "train_loss", "best_val_loss",
              "best_loss")
_BEST_KEYS = ("best_metric", "best_val_loss", "best_loss", "best_score", "best_acc",
              "best_accuracy", "best_model_score")
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "module", "model_state", "net",
                "network", "params", "weights", "ema")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_states", "optimizers",
                   "optim", "opt", "optimizer_state")
_NON_WEIGHT_KEYS = (*_OPTIMIZER_KEYS, "lr_scheduler", "lr_schedulers", "scheduler",
                    "schedulers", "scaler", "grad_scaler", "rng_state", "rng", "callbacks",
                    "loops")
_HPARAM_KEYS = ("hyper_parameters", "hparams", "config", "cfg", "args", "hyperparameters",
                "train_config", "training_args", "opt")
_MODEL_ARG_KEYS = ("model_args", "model_config", "model_cfg")
_METRIC_WORDS = re.compile(r"loss|acc|metric|score|ppl|perplex|step|epoch|iter|reward|bleu|f1",
                           re.IGNORECASE)
_NESTED_NUMBER_KEYS = ("metrics", "stats", "scores", "results", "train_state",
                       "training_state", "trainer_state", "progress", "meta", "metadata")


def _children(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [(key_text(k), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(obj)]
    if isinstance(obj, Record):
        return [(key_text(k), v) for k, v in obj.attrs.items()]
    if isinstance(obj, Opaque):
        kids = [(f"arg{i}", a) for i, a in enumerate(obj.args)]
        kids += [(key_text(k), v) for k, v in obj.items.items()]
        kids += [(str(i), v) for i, v in enumerate(obj.listitems)]
        if isinstance(obj.state, dict):
            kids += [(key_text(k), v) for k, v in obj.state.items()]
        elif obj.state is not None:
            kids.append(("state", obj.state))
        return kids
    return []


def _walk_tensors(root: Any, prefix: str = "") -> dict[tuple, tuple[str, Tensor]]:
    """Every tensor under root, once per distinct view of a storage, with its dotted path."""
    found: dict[tuple, tuple[str, Tensor]] = {}
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(prefix, root)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, Tensor):
            found.setdefault(obj.view_key(), (path, obj))
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kids = _children(obj)
        for name, child in reversed(kids):  # reversed: pop in file order
            # names stop growing past a sane depth: a pickle can nest lists 100k deep
            child_path = f"{path}.{name}" if path else name
            stack.append((child_path if len(child_path) <= 400 else path, child))
    return found


def _weights_section(root: Any, fmt: str) -> Any:
    """The part of a checkpoint holding the model's weights (not optimizer state)."""
    if not isinstance(root, dict):
        return root
    if fmt == "lightning":
        return root.get("state_dict")
    if {"state", "param_groups"} <= set(root):  # an optimizer's own state_dict
        return None
    for key in _WEIGHT_KEYS:
        if key in root and _walk_tensors(root[key]):
            return root[key]
    if root and all(isinstance(v, Tensor) for v in root.values()):
        return root
    return {k: v for k, v in root.items() if key_text(k) not in _NON_WEIGHT_KEYS}


def _is_lightning(root: Any) -> bool:
    return isinstance(root, dict) and ("pytorch-lightning_version" in root or (
        "state_dict" in root and bool({"loops", "callbacks", "optimizer_states"} & set(root))))


def summarize_torch(info: CheckpointInfo, parsed: Parsed) -> None:
    root = parsed.root
    if _is_lightning(root):
        parsed.format = "lightning"
    info.format = parsed.format
    found = _walk_tensors(root)
    _fill_tensors(info, [(name, t) for name, t in found.values()])
    weights = _weights_section(root, parsed.format)
    info.param_count = sum(t.numel for _, t in _walk_tensors(weights).values()) if (
        weights is not None) else 0
    parsed.checks.insert(0, lambda: _check_tensor_bounds(found.values()))
    if isinstance(root, Opaque) and isinstance(root.state, dict):
        info.hparams = _plain_fields(root.state)  # e.g. transformers' TrainingArguments
    if not isinstance(root, dict):
        return
    info.top_keys = [key_text(k) for k in list(root)[:100]]
    info.has_optimizer = ({"state", "param_groups"} <= set(root)) or any(
        bool(root.get(k)) for k in _OPTIMIZER_KEYS)
    _extract_numbers(info, root, parsed)
    info.hparams = _first_mapping(root, _HPARAM_KEYS)
    info.model_args = _first_mapping(root, _MODEL_ARG_KEYS)
    if parsed.format == "lightning":
        _summarize_lightning(info, root, parsed)


def _fill_tensors(info: CheckpointInfo, named: list[tuple[str, Tensor]]) -> None:
    info.tensor_count = len(named)
    for _, t in named:
        info.dtypes[t.dtype] = info.dtypes.get(t.dtype, 0) + 1
    biggest = sorted(named, key=lambda nt: (-nt[1].nbytes, nt[0]))[:TENSOR_LIST_CAP]
    info.tensors = [TensorInfo(name, t.dtype, t.shape, t.numel, t.nbytes)
                    for name, t in biggest]


def _check_tensor_bounds(found: Any) -> None:
    for name, t in found:
        if t.storage is not None and t.byte_extent() > t.storage.nbytes:
            raise Corrupt(f"tensor {name} reaches past the end of its storage "
                           f"{t.storage.key} ({t.byte_extent()} > {t.storage.nbytes} bytes)")


def _extract_numbers(info: CheckpointInfo, root: dict, parsed: Parsed) -> None:
    if root and all(isinstance(v, Tensor) for v in root.values()):
        return  # a bare state dict
    numbers: dict[str, float | int] = {}
    for nested in _NESTED_NUMBER_KEYS:
        if isinstance(root.get(nested), dict):
            numbers.update(_numbers_in(root[nested], parsed))
    numbers.update(_numbers_in(root, parsed))  # top level wins
    apply_numbers(info, numbers)


def _numbers_in(mapping: dict, parsed: Parsed) -> dict[str, float | int]:
    """Numbers stored under string keys; one-element tensors only under metric-like keys
    (reading them costs a seek, and a state dict's buffers are not metrics)."""
    out: dict[str, float | int] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or (isinstance(value, Tensor) and not _METRIC_WORDS.search(
                key)):
            continue
        number = parsed.scalar(value)
        if number is not None:
            out[key] = number
    return out


def _plain_fields(state: dict) -> dict:
    return {k: plain_json(v) for k, v in state.items()
            if isinstance(k, str) and (v is None or isinstance(v, (bool, int, float, str)))}


def apply_numbers(info: CheckpointInfo, numbers: dict[str, float | int]) -> None:
    step = _first(numbers, _STEP_KEYS)
    if step is not None and float(step).is_integer():
        info.step = int(step)
    epoch = _first(numbers, _EPOCH_KEYS)
    info.epoch = float(epoch) if epoch is not None else None
    loss, best = _first(numbers, _LOSS_KEYS), _first(numbers, _BEST_KEYS)
    info.loss = float(loss) if loss is not None else info.loss
    info.best_metric = float(best) if best is not None else info.best_metric
    skip = set(_STEP_KEYS) | set(_EPOCH_KEYS)
    info.metrics.update({k: float(v) for k, v in numbers.items() if k not in skip})


def _first(numbers: dict, keys: tuple[str, ...]) -> Any:
    return next((numbers[k] for k in keys if k in numbers), None)


def _first_mapping(root: dict, keys: tuple[str, ...]) -> dict | None:
    for key in keys:
        value = root.get(key)
        if isinstance(value, Record):
            return plain_json(value.attrs)
        if isinstance(value, dict) and value:
            return plain_json(value)
    return None


def _summarize_lightning(info: CheckpointInfo, root: dict, parsed: Parsed) -> None:
    callbacks = root.get("callbacks")
    if isinstance(callbacks, dict):
        info.callbacks = [key_text(k) for k in callbacks]
        for key, state in callbacks.items():
            if isinstance(state, dict) and key_text(key).startswith("ModelCheckpoint"):
                _lightning_checkpoint_scores(info, state, parsed)
    for key in ("pytorch-lightning_version", "hparams_name"):
        if isinstance(root.get(key), str):
            info.metadata[key] = root[key]


def _lightning_checkpoint_scores(info: CheckpointInfo, state: dict, parsed: Parsed) -> None:
    monitor = state.get("monitor")
    current = parsed.scalar(state.get("current_score"))
    best = parsed.scalar(state.get("best_model_score"))
    if isinstance(monitor, str) and current is not None:
        info.metrics.setdefault(monitor, float(current))
        if "loss" in monitor and info.loss is None:
            info.loss = float(current)
    if best is not None:
        info.metrics.setdefault(f"best_{monitor}" if isinstance(monitor, str)
                                else "best_model_score", float(best))
        if info.best_metric is None:
            info.best_metric = float(best)
