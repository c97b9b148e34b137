"""A PyTorch training loop that survives what trainctl handles: a stop, a spot notice, Slurm's
advance signal, a crash. docs/resumable-training.md explains each part.

    trainctl launch --checkpoint-dir ckpt --max-restarts 3 \
        --resume-template '--resume {checkpoint}' -- python train.py --steps 300
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from pathlib import Path

import torch

stop_signal = None


def ask_to_stop(signum, frame):
    """SIGTERM (trainctl stop, a spot notice, Slurm's warning): finish the step, save, exit."""
    global stop_signal
    stop_signal = signum


def batch(step: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The data of a step depends on the step alone, so a resumed run sees what it would have."""
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(size, 16, generator=generator)
    return x, x.sum(dim=1, keepdim=True).sin()


def save(path: Path, step: int, model, optimizer, scheduler) -> None:
    """Everything the next attempt needs, written to a temp file and renamed: a kill mid-write
    leaves the previous checkpoint whole and no half file with a checkpoint's name."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    torch.save(state, temp)
    os.replace(temp, path)


def load(path: str, model, optimizer, scheduler) -> int:
    # weights_only=True: a checkpoint is untrusted input; unpickling it may not run code.
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    return state["step"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--checkpoint-dir", default=os.environ.get("TRAINCTL_CHECKPOINT_DIR",
                                                                   "ckpt"))
    parser.add_argument("--resume", metavar="CHECKPOINT")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, ask_to_stop)

    torch.manual_seed(0)
    random.seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    step = load(args.resume, model, optimizer, scheduler) if args.resume else 0
    if args.resume:
        print(f"resumed from {args.resume} at step {step}", flush=True)
    folder = Path(args.checkpoint_dir)

    while step < args.steps:
        step += 1
        x, y = batch(step)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        print(f"step {step}/{args.steps} loss {loss.item():.6f} "
              f"lr {scheduler.get_last_lr()[0]:.3e}", flush=True)
        if step % args.save_every == 0 or step == args.steps or stop_signal:
            save(folder / f"step_{step:06d}.pt", step, model, optimizer, scheduler)
        if stop_signal:
            print(f"got signal {stop_signal}: saved step {step}, exiting", flush=True)
            return 0
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    print(f"done: step {step} loss {loss.item():.6f} checksum {weights.sum().item():.9f}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
