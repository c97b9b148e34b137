"""Partitions from `sinfo`: one line per node and partition (SINFO_ARGV), summed per partition
into nodes idle / mixed / allocated / down and GPUs total / used / free from the GRES fields
("gpu:a100:4(S:0-1)" configured, "gpu:a100:3(IDX:0-2)" in use)."""

from __future__ import annotations

from ...core.clusters import Partition

# Fields end in "|" (sinfo's suffix; no width = the whole value), so commas inside GRES stay.
FIELDS = ("Partition", "Available", "Time", "NodeList", "StateLong", "Gres", "GresUsed",
          "CPUsState")
SINFO_ARGV = ["sinfo", "-h", "-N", "-O", ",".join(f"{name}:|" for name in FIELDS)]

IDLE = {"idle"}
MIXED = {"mixed"}
ALLOCATED = {"allocated", "completing", "reserved", "planned"}
# Node state flags sinfo appends: * not responding (takes no job), ~ # % ! powered down or
# changing power (cloud nodes: they boot for a job), $ maintenance, @ ^ reboot.
NOT_RESPONDING = "*"
POWER_AND_REBOOT = "~#%!@^-"


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions, the default one (marked by sinfo's trailing '*') first, then by name."""
    partitions: dict[str, Partition] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < len(FIELDS):
            continue
        name, available, limit, _node, state, gres, used, cpus = fields[:len(FIELDS)]
        default = name.endswith("*")
        name = name.rstrip("*")
        partition = partitions.setdefault(name, Partition(name, default=default,
                                                          state=available.strip(),
                                                          time_limit=limit.strip()))
        add_node(partition, state.strip(), gpu_counts(gres), gpu_counts(used), cpus.strip())
    return sorted(partitions.values(), key=lambda p: (not p.default, p.name))


def add_node(partition: Partition, state: str, gpus: dict[str, int], used: dict[str, int],
             cpus: str) -> None:
    kind = node_kind(state)
    setattr(partition, f"nodes_{kind}", getattr(partition, f"nodes_{kind}") + 1)
    total, busy = sum(gpus.values()), min(sum(used.values()), sum(gpus.values()))
    partition.gpus_total += total
    partition.gpus_used += busy
    for gpu_type, count in gpus.items():
        partition.gpu_types[gpu_type] = partition.gpu_types.get(gpu_type, 0) + count
    allocated, idle, _other, all_cpus = (cpus.split("/") + ["", "", "", ""])[:4]
    partition.cpus_total += to_int(all_cpus)
    if kind in ("idle", "mixed"):
        partition.gpus_free += total - busy
        partition.cpus_idle += to_int(idle)


def node_kind(state: str) -> str:
    """idle, mixed, allocated or down, from sinfo's long state ("mixed", "drained",
    "idle~", "down*", "allocated+drain"...)."""
    if NOT_RESPONDING in state:
        return "down"
    words = state.rstrip(POWER_AND_REBOOT + "$").lower().split("+")
    base, flags = words[0], set(words[1:])
    if flags & {"drain", "drained", "draining", "fail", "maint"}:
        return "down"
    if base in IDLE:
        return "idle"
    if base in MIXED:
        return "mixed"
    if base in ALLOCATED:
        return "allocated"
    return "down"  # down, drained, draining, fail, failing, maint, unknown, future ...


def gpu_counts(gres: str) -> dict[str, int]:
    """GPUs by type in a GRES field: "gpu:a100:2(S:0),gpu:v100:2(S:1),mps:400" ->
    {"a100": 2, "v100": 2}; "gpu:4" -> {"": 4}; "(null)" -> {}."""
    counts: dict[str, int] = {}
    for item in split_outside_parentheses(gres.strip()):
        words = item.split("(")[0].split(":")
        if words[0] != "gpu" or len(words) < 2:
            continue
        count = to_int(words[-1])
        gpu_type = ":".join(words[1:-1])
        counts[gpu_type] = counts.get(gpu_type, 0) + count
    return counts


def split_outside_parentheses(text: str) -> list[str]:
    """Split at commas not inside "(...)": "gpu:a100:3(IDX:0,2-3),mps:0" has two items."""
    items, depth, start = [], 0, 0
    for at, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append(text[start:at])
            start = at + 1
    items.append(text[start:])
    return [item for item in items if item]


def to_int(text: str) -> int:
    """A count as Slurm prints it: "4", "2K" (x1024 for large GRES counts); else 0."""
    text = text.strip()
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    return int(digits) * scale if digits.isdigit() else 0
