"""GPUs, CPU and memory of a session as one line of text (`--once`, the session screen)."""

from __future__ import annotations


def gpu_text(gpu: dict) -> str:
    """'GPU0 97% 20.0/22.5G 187W 61°C'; '?' for what nvidia-smi did not know."""
    util = "?" if gpu["util"] is None else f"{gpu['util']:.0f}%"
    parts = [f"GPU{gpu['index'] if gpu['index'] is not None else '?'}", util,
             f"{gib(gpu['mem_used_mb'])}/{gib(gpu['mem_total_mb'])}G"]
    if gpu["power_w"] is not None:
        parts.append(f"{gpu['power_w']:.0f}W")
    if gpu["temp_c"] is not None:
        parts.append(f"{gpu['temp_c']:.0f}°C")
    return " ".join(parts)


def gib(mb) -> str:
    return "?" if mb is None else f"{mb / 1024:.1f}"


def memory_text(mb) -> str:
    """'820M', '1.2G'; '?' when unknown."""
    if mb is None:
        return "?"
    return f"{mb:.0f}M" if mb < 1024 else f"{mb / 1024:.1f}G"


def process_text(usage) -> str:
    """'CPU 98% · RSS 1.2G' for the training's process group."""
    cpu = "?" if usage.cpu_percent is None else f"{usage.cpu_percent:.0f}%"
    return f"CPU {cpu} · RSS {memory_text(usage.rss_mb)}"


def usage_line(usage) -> str:
    """Every GPU, then the training's CPU and memory; 'no GPU' when the runner found none."""
    gpus = [gpu_text(gpu) for gpu in usage.gpus] or ["no GPU"]
    return " · ".join([*gpus, process_text(usage)])


def short_gpu_name(name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'A100'; 'NVIDIA GeForce RTX 4090' -> 'RTX 4090'."""
    words = name.split()
    while words and words[0] in ("NVIDIA", "GeForce", "Tesla", "Quadro"):
        words = words[1:]
    if not words:
        return name
    if words[0] in ("RTX", "GTX", "TITAN") and len(words) > 1:
        return f"{words[0]} {words[1].split('-')[0]}"
    return words[0].split("-")[0]
