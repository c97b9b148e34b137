"""`python3 -m trainctl_tui.checkpoints.inspect PATH [--json] [--deep]`."""

from __future__ import annotations

import argparse
import json
import sys

from .dispatch import inspect_checkpoint
from .info import CheckpointInfo


def _text(info: CheckpointInfo) -> str:
    lines = [f"{info.path}  [{info.format}, {info.kind}, {info.size:,} bytes]",
             f"status: {info.status}" + (f" - {info.reason}" if info.reason else "")]
    facts = [f"{k} {v}" for k, v in (("step", info.step), ("epoch", info.epoch),
                                      ("loss", info.loss), ("best", info.best_metric))
             if v is not None]
    if facts:
        lines.append(", ".join(facts))
    if info.tensor_count:
        dtypes = ", ".join(f"{k} x{v}" for k, v in sorted(info.dtypes.items()))
        lines.append(f"tensors {info.tensor_count}, parameters {info.param_count:,} ({dtypes})")
    if info.top_keys:
        lines.append("keys: " + ", ".join(info.top_keys[:20]))
    lines.append(f"optimizer state: {'yes' if info.has_optimizer else 'no'}")
    for label, values in (("model", info.model_args), ("metadata", info.metadata)):
        if values:
            lines.append(f"{label}: " + ", ".join(f"{k}={v}" for k, v in
                                                   list(values.items())[:12]))
    for tensor in info.tensors[:20]:
        lines.append(f"  {tensor.name}  {tensor.dtype}  {list(tensor.shape)}")
    if info.unverified:
        lines.append("not checked: " + "; ".join(info.unverified))
    for label, names in (("unknown globals", info.unknown_globals),
                         ("dangerous globals", info.dangerous_globals)):
        if names:
            lines.append(f"{label}: " + ", ".join(names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m trainctl_tui.checkpoints.inspect",
        description="Describe a checkpoint without loading it.")
    parser.add_argument("path", help="a checkpoint file or directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--deep", action="store_true",
                        help="also check every zip member's CRC / safetensors byte range")
    args = parser.parse_args(argv)
    try:
        info = inspect_checkpoint(args.path, deep=args.deep)
    except FileNotFoundError:
        print(f"inspect: no such file or directory: {args.path}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"inspect: cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.to_json(), indent=1) if args.json else _text(info))
    return 0

