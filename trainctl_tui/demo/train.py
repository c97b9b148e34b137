"""trainctl demo: a tiny MLP trained with SGD + momentum on synthetic data, in pure Python.

Stdlib only and a single file, so it runs anywhere the trainctl runner runs. It behaves like a
real trainer: regular log lines, periodic evals, safetensors checkpoints written atomically,
resume from a checkpoint, and a graceful save on SIGTERM/SIGINT.

Log formats (stable, parsed by trainctl's metrics parsers):
    step 10/2000 | train loss 0.6931 | lr 3.00e-02 | grad_norm 1.23 | 512.0 samples/s
    step 100: train loss 0.5123, val loss 0.5311, val acc 0.812
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import random
import re
import signal
import struct
import sys
import time

FORMAT = "trainctl-demo"
N_INPUTS = 8
N_TRAIN = 2048
N_VAL = 512
N_TRAIN_EVAL = 512  # train loss in eval lines is measured on this fixed subset
MOMENTUM = 0.9
CLIP_NORM = 5.0
LABEL_NOISE = 0.05
MAX_HEADER_BYTES = 100 * 1024 * 1024
CHECKPOINT_RE = re.compile(r"^step_(\d+)\.safetensors$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


# --------------------------------------------------------------------------- data


def make_dataset(seed: int) -> tuple[list, list]:
    """Points labelled by a random 'teacher' network (plus a little label noise)."""
    rng = random.Random(seed * 7919 + 17)
    teacher_w = [[rng.gauss(0, 1) for _ in range(N_INPUTS)] for _ in range(8)]
    teacher_v = [rng.gauss(0, 1) for _ in range(8)]

    def sample():
        x = [rng.gauss(0, 1) for _ in range(N_INPUTS)]
        hidden = [math.tanh(sum(map(operator.mul, w, x))) for w in teacher_w]
        y = 1.0 if sum(map(operator.mul, teacher_v, hidden)) > 0 else 0.0
        if rng.random() < LABEL_NOISE:
            y = 1.0 - y
        return x, y

    train = [sample() for _ in range(N_TRAIN)]
    val = [sample() for _ in range(N_VAL)]
    return train, val


def batch_indices(seed: int, step: int, batch_size: int) -> list[int]:
    """The batch of a step depends only on (seed, step), so a resumed run sees the same data."""
    rng = random.Random(seed * 1_000_003 + step)
    return [rng.randrange(N_TRAIN) for _ in range(batch_size)]


# --------------------------------------------------------------------------- model


def shapes(hidden: int) -> dict[str, list[int]]:
    return {"w1": [hidden, N_INPUTS], "b1": [hidden], "w2": [hidden], "b2": [1]}


def init_params(seed: int, hidden: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {
        "w1": [rng.gauss(0, 1 / math.sqrt(N_INPUTS)) for _ in range(hidden * N_INPUTS)],
        "b1": [0.0] * hidden,
        "w2": [rng.gauss(0, 1 / math.sqrt(hidden)) for _ in range(hidden)],
        "b2": [0.0],
    }


def forward(params: dict, x: list[float]) -> tuple[list[float], float]:
    """Hidden activations and the output logit for one sample."""
    w1, b1 = params["w1"], params["b1"]
    hidden = [
        math.tanh(b + sum(map(operator.mul, w1[j * N_INPUTS : (j + 1) * N_INPUTS], x)))
        for j, b in enumerate(b1)
    ]
    return hidden, params["b2"][0] + sum(map(operator.mul, params["w2"], hidden))


def bce_with_logits(z: float, y: float) -> float:
    return max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)
    return e / (1 + e)


def loss_and_grads(params: dict, batch: list) -> tuple[float, dict[str, list[float]]]:
    grads = {name: [0.0] * len(values) for name, values in params.items()}
    gw1, gb1, gw2, gb2 = grads["w1"], grads["b1"], grads["w2"], grads["b2"]
    w2 = params["w2"]
    total = 0.0
    for x, y in batch:
        hidden, z = forward(params, x)
        total += bce_with_logits(z, y)
        dz = sigmoid(z) - y
        gb2[0] += dz
        for j, h in enumerate(hidden):
            gw2[j] += dz * h
            da = dz * w2[j] * (1 - h * h)
            gb1[j] += da
            base = j * N_INPUTS
            for i, xi in enumerate(x):
                gw1[base + i] += da * xi
    scale = 1 / len(batch)
    for values in grads.values():
        for k in range(len(values)):
            values[k] *= scale
    return total * scale, grads


def evaluate(params: dict, data: list) -> tuple[float, float]:
    """(mean loss, accuracy) over `data`."""
    loss = correct = 0.0
    for x, y in data:
        _, z = forward(params, x)
        loss += bce_with_logits(z, y)
        correct += (z > 0) == (y > 0.5)
    return loss / len(data), correct / len(data)


def lr_at(step: int, steps: int, base_lr: float) -> float:
    """Linear warmup, then cosine decay to 10% of the base rate."""
    warmup = max(1, min(100, steps // 10))
    if step <= warmup:
        return base_lr * step / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def sgd_momentum(params: dict, grads: dict, momentum: dict, lr: float) -> float:
    """One update; returns the gradient norm before clipping."""
    norm = math.sqrt(sum(g * g for values in grads.values() for g in values))
    clip = min(1.0, CLIP_NORM / norm) if norm > 0 else 1.0
    for name, values in params.items():
        g, m = grads[name], momentum[name]
        for k in range(len(values)):
            m[k] = MOMENTUM * m[k] + g[k] * clip
            values[k] -= lr * m[k]
    return norm


# --------------------------------------------------------------------------- safetensors


def write_safetensors(path: str, tensors: dict, metadata: dict[str, str]) -> None:
    """Write {name: (shape, values)} as F32 safetensors, atomically (tmp, fsync, rename)."""
    header: dict = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # align the data like safetensors does
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(header_bytes)))
        fh.write(header_bytes)
        for blob in blobs:
            fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def read_safetensors(path: str) -> tuple[dict, dict[str, str]]:
    """({name: (shape, values)}, metadata) of an F32 safetensors file. Raises CheckpointError."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CheckpointError(exc.strerror or str(exc)) from None
    if len(data) < 8:
        raise CheckpointError("file too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(len(data) - 8, MAX_HEADER_BYTES):
        raise CheckpointError(f"header length {header_len} does not fit the file")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError("header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError("__metadata__ is not an object")
    body = data[8 + header_len :]
    tensors = {}
    end = 0
    for name, info in header.items():
        tensors[name] = _read_tensor(name, info, body)
        end = max(end, info["data_offsets"][1])
    if end != len(body):
        raise CheckpointError(f"data section is {len(body)} bytes, tensors cover {end}")
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def _read_tensor(name: str, info, body: bytes) -> tuple[list[int], list[float]]:
    try:
        dtype, shape, (start, stop) = info["dtype"], info["shape"], info["data_offsets"]
        count = _count(shape)
    except (TypeError, KeyError, ValueError):
        raise CheckpointError(f"tensor {name}: malformed header entry") from None
    if dtype != "F32":
        raise CheckpointError(f"tensor {name}: dtype {dtype}, expected F32")
    if not (0 <= start <= stop <= len(body)) or stop - start != 4 * count:
        raise CheckpointError(f"tensor {name}: data offsets {start}..{stop} do not fit its shape")
    return list(shape), list(struct.unpack(f"<{count}f", body[start:stop]))


# --------------------------------------------------------------------------- checkpoints


def checkpoint_path(directory: str, step: int) -> str:
    return os.path.join(directory, f"step_{step:06d}.safetensors")


def save_checkpoint(directory: str, state: dict, metadata: dict[str, str]) -> str:
    os.makedirs(directory, exist_ok=True)
    hidden = len(state["params"]["b1"])
    tensors = {}
    for name, shape in shapes(hidden).items():
        tensors[f"model.{name}"] = (shape, state["params"][name])
        tensors[f"optim.m.{name}"] = (shape, state["momentum"][name])
    path = checkpoint_path(directory, state["step"])
    write_safetensors(path, tensors, metadata)
    return path


def prune_checkpoints(directory: str, keep: int) -> None:
    """Keep the `keep` newest step_*.safetensors (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    found = []
    for name in os.listdir(directory):
        match = CHECKPOINT_RE.match(name)
        if match:
            found.append((int(match.group(1)), name))
    for _step, name in sorted(found)[:-keep]:
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass


def load_checkpoint(path: str, hidden: int) -> dict:
    """Training state from a demo checkpoint. Raises CheckpointError."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} checkpoint (format {metadata.get('format')!r})")
    try:
        step, seed = int(metadata["step"]), int(metadata["seed"])
    except (KeyError, ValueError):
        raise CheckpointError("metadata lacks an integer step/seed") from None
    hidden = len(tensors.get("model.b1", ([], []))[1]) or hidden
    state = {"step": step, "seed": seed, "params": {}, "momentum": {}}
    for name, shape in shapes(hidden).items():
        for prefix, key in (("model.", "params"), ("optim.m.", "momentum")):
            tensor = tensors.get(prefix + name)
            if tensor is None or tensor[0] != shape:
                raise CheckpointError(f"tensor {prefix}{name} missing or not of shape {shape}")
            state[key][name] = tensor[1]
    return state


# --------------------------------------------------------------------------- training


class StopFlag:
    """Remembers the first SIGTERM/SIGINT; the loop saves and exits after the current step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.signum is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--step-time", type=float, default=0.09, help="sleep per step (s)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=None, help="default 0, or the checkpoint's")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument(
        "--checkpoint-dir",
        default=os.environ.get("TRAINCTL_CHECKPOINT_DIR") or "./checkpoints",
    )
    parser.add_argument("--resume", metavar="PATH")
    parser.add_argument("--fail-at-step", type=int, help="exit 1 after this step (tests)")
    parser.add_argument("--keep", type=int, default=5, help="keep the last N checkpoints")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "hidden", "log_every", "eval_every", "ckpt_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def say(text: str) -> None:
    print(text, flush=True)


def initial_state(args: argparse.Namespace) -> dict:
    if not args.resume:
        seed = args.seed if args.seed is not None else 0
        params = init_params(seed, args.hidden)
        momentum = {name: [0.0] * len(values) for name, values in params.items()}
        return {"step": 0, "seed": seed, "params": params, "momentum": momentum}
    try:
        state = load_checkpoint(args.resume, args.hidden)
    except CheckpointError as exc:
        print(f"error: cannot resume from {args.resume}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if args.seed is not None and args.seed != state["seed"]:
        say(f"note: using the checkpoint's seed {state['seed']} (not {args.seed})")
    say(f"resumed from {args.resume} at step {state['step']}")
    return state


def train(args: argparse.Namespace) -> int:
    stop = StopFlag()
    state = initial_state(args)
    seed, params, momentum = state["seed"], state["params"], state["momentum"]
    start_step = state["step"]
    train_set, val_set = make_dataset(seed)
    n_params = sum(len(v) for v in params.values())
    say(
        f"trainctl demo: {n_params} parameters, {N_TRAIN} train / {N_VAL} val samples, "
        f"seed {seed}, {args.steps} steps, checkpoints in {args.checkpoint_dir}"
    )
    if start_step >= args.steps:
        say(f"nothing to do: already at step {start_step}/{args.steps}")
        return 0

    last_eval = {"train_loss": float("nan"), "val_loss": float("nan")}
    saved_step = start_step
    interval_loss, interval_steps, interval_start = 0.0, 0, time.monotonic()
    lr = 0.0

    def checkpoint(step: int) -> str:
        nonlocal saved_step
        train_loss, _ = evaluate(params, train_set[:N_TRAIN_EVAL])
        val_loss, _ = evaluate(params, val_set)
        metadata = {
            "format": FORMAT,
            "step": str(step),
            "epoch": str(step * args.batch_size // N_TRAIN),
            "train_loss": f"{train_loss:.6f}",
            "val_loss": f"{val_loss:.6f}",
            "lr": f"{lr:.6e}",
            "seed": str(seed),
        }
        state["step"] = step
        path = save_checkpoint(args.checkpoint_dir, state, metadata)
        prune_checkpoints(args.checkpoint_dir, args.keep)
        saved_step = step
        return path

    for step in range(start_step + 1, args.steps + 1):
        lr = lr_at(step, args.steps, args.lr)
        batch = [train_set[i] for i in batch_indices(seed, step, args.batch_size)]
        loss, grads = loss_and_grads(params, batch)
        grad_norm = sgd_momentum(params, grads, momentum, lr)
        interval_loss += loss
        interval_steps += 1

        if step % args.log_every == 0 or step == args.steps:
            elapsed = max(time.monotonic() - interval_start, 1e-9)
            rate = interval_steps * args.batch_size / elapsed
            say(
                f"step {step}/{args.steps} | train loss {interval_loss / interval_steps:.4f} | "
                f"lr {lr:.2e} | grad_norm {grad_norm:.2f} | {rate:.1f} samples/s"
            )
            interval_loss, interval_steps, interval_start = 0.0, 0, time.monotonic()
        if step % args.eval_every == 0 or step == args.steps:
            train_loss, _ = evaluate(params, train_set[:N_TRAIN_EVAL])
            val_loss, val_acc = evaluate(params, val_set)
            last_eval = {"train_loss": train_loss, "val_loss": val_loss}
            say(
                f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                f"val acc {val_acc:.3f}"
            )
        if step % args.ckpt_every == 0 or step == args.steps:
            say(f"saved checkpoint {checkpoint(step)}")
        if args.fail_at_step == step and start_step < step:
            print(f"simulated failure at step {step}", file=sys.stderr, flush=True)
            return 1
        if step < args.steps:
            stop.sleep(args.step_time)
        if stop.signum is not None:
            path = checkpoint_path(args.checkpoint_dir, step)
            if saved_step != step or not os.path.exists(path):
                path = checkpoint(step)
            say(f"received {signal.Signals(stop.signum).name}, saved checkpoint {path}")
            return 0

    say(
        f"done: step {args.steps}, train loss {last_eval['train_loss']:.4f}, "
        f"val loss {last_eval['val_loss']:.4f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return train(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
