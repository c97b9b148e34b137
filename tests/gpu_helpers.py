"""The fake nvidia-smi (tests/fake_nvidia_smi.py) installed as `nvidia-smi` on PATH, and the
GPUs it reports, written where it reads them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FAKE = Path(__file__).resolve().parent / "fake_nvidia_smi.py"

# As nvidia-smi prints them: index, uuid, name, util %, MiB used, MiB total, W, °C.
A10G = [0, "GPU-5f0c1b7e-2d3a-4c51-9e8f-0a1b2c3d4e5f", "NVIDIA A10G", 97, 20515, 23028,
        187.41, 61]
A10G_IDLE = [0, "GPU-5f0c1b7e-2d3a-4c51-9e8f-0a1b2c3d4e5f", "NVIDIA A10G", 0, 1, 23028,
             17.69, 25]


class FakeGpus:
    """What the fake nvidia-smi on PATH answers next."""

    def __init__(self, bin_dir: Path):
        self.state = bin_dir / "gpus.json"
        self.calls_file = Path(str(self.state) + ".calls")

    def set(self, *gpus, **state) -> None:
        state.setdefault("gpus", [list(gpu) for gpu in gpus])
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state)

    @property
    def calls(self) -> int:
        try:
            return len(self.calls_file.read_text().splitlines())
        except FileNotFoundError:
            return 0


def install_fake_nvidia_smi(bin_dir: Path, monkeypatch) -> FakeGpus:
    """`nvidia-smi` first on PATH (for this process and what it starts), answering A10G."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    script.chmod(0o755)
    gpus = FakeGpus(bin_dir)
    gpus.set(A10G)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_NVIDIA_SMI_STATE", str(gpus.state))
    return gpus


def without_nvidia_smi(monkeypatch) -> None:
    """PATH with no nvidia-smi on it (none exists here; this makes sure of it)."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "nvidia-smi").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))
