"""What a session's training uses, read from the usage.json its runner keeps beside status.json
(runner/gpu_sampler.py; a remote session's copy arrives with each probe): the GPUs' latest
values and their recent history, the training's CPU % and resident memory, and since when
the GPUs have been quiet (for the idle-GPU alert)."""

from __future__ import annotations

import math
from pathlib import Path

from ..runner.gpu_sampler import read_usage

GPU_JSON_FIELDS = ("index", "name", "util", "mem_used_mb", "mem_total_mb", "power_w", "temp_c")
UTIL, MEMORY = 3, 4  # where a sample ([time, cpu, rss, [util...], [mem...]]) keeps them


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


class Usage:
    """One session's usage.json, checked field by field (a damaged file gives nulls)."""

    def __init__(self, raw: dict):
        self.at = _number(raw.get("at"))
        self.interval = _number(raw.get("interval"))
        self.cpu_percent = _number(raw.get("cpu_percent"))
        self.rss_mb = _number(raw.get("rss_mb"))
        note = raw.get("gpu_note")
        self.gpu_note = note if isinstance(note, str) else None
        self.gpu_since = _number(raw.get("gpu_since"))
        gpus = raw.get("gpus") if isinstance(raw.get("gpus"), list) else []
        self.gpus = [self._gpu(gpu) for gpu in gpus if isinstance(gpu, dict)]
        busy = raw.get("busy") if isinstance(raw.get("busy"), list) else []
        self.busy = [(entry[0], entry[1]) for entry in busy if isinstance(entry, list)
                     and len(entry) == 2 and _number(entry[0]) is not None
                     and _number(entry[1]) is not None]
        samples = raw.get("samples") if isinstance(raw.get("samples"), list) else []
        self.samples = [s for s in samples if isinstance(s, list) and len(s) == 5
                        and _number(s[0]) is not None]

    @staticmethod
    def _gpu(raw: dict) -> dict:
        gpu = {key: _number(raw.get(key)) for key in GPU_JSON_FIELDS if key != "name"}
        gpu["name"] = raw.get("name") if isinstance(raw.get("name"), str) else None
        return {key: gpu[key] for key in GPU_JSON_FIELDS}

    def to_json(self) -> dict:
        """The latest values, as `--once --json` and `sessions --json` give them."""
        return {"gpus": self.gpus, "cpu_percent": self.cpu_percent, "rss_mb": self.rss_mb}

    def history(self, field: int, gpu: int) -> list[float | None]:
        """GPU `gpu`'s utilization (field UTIL) or memory used (MEMORY), oldest first."""
        values = []
        for sample in self.samples:
            row = sample[field] if isinstance(sample[field], list) else []
            values.append(_number(row[gpu]) if gpu < len(row) else None)
        return values

    def cpu_history(self) -> list[float | None]:
        return [_number(sample[1]) for sample in self.samples]

    @property
    def util_percent(self) -> float | None:
        """The mean utilization of the GPUs (None when none answers)."""
        known = [gpu["util"] for gpu in self.gpus if gpu["util"] is not None]
        return sum(known) / len(known) if known else None

    def idle_since(self, below_percent: float) -> float | None:
        """Since when every GPU has been under `below_percent` (as of the last sample), or
        None: no GPU, or they are busy now. From the runner's busy staircase: the last sample
        at or above each level."""
        if not self.gpus or self.gpu_since is None:
            return None
        last_busy = None
        for when, level in self.busy:
            if level >= below_percent:
                last_busy = when
        if last_busy is None:
            return self.gpu_since
        if self.at is not None and last_busy >= self.at:
            return None  # the newest sample is busy
        return last_busy + (self.interval or 0.0)  # about when the first quiet sample came


def usage_of(session_dir: str | Path) -> Usage | None:
    """The session's usage, or None before its runner sampled anything."""
    raw = read_usage(str(session_dir))
    return Usage(raw) if raw is not None else None


def empty_json() -> dict:
    """What the JSON outputs say for a session with no usage known."""
    return {"gpus": None, "cpu_percent": None, "rss_mb": None}
