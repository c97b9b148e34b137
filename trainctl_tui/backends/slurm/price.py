"""What a job costs per hour: the cluster's declared price per GPU-hour x GPUs per node x
nodes (Slurm bills nobody in dollars; `price_per_gpu_hour` is what the user says it costs)."""

from __future__ import annotations

import re

_GRES_COUNT = re.compile(r"^gpu(?::[^:,]+)?:(\d+)$")


def job_price(cluster, options: dict) -> float | None:
    """USD per hour of a job with `options` (--nodes, --gpus-per-node) on `cluster`, or None
    when the cluster declares no price or the job asks for no GPU."""
    if cluster.price_per_gpu_hour is None:
        return None
    gpus = options.get("gpus_per_node")
    if gpus is None:
        gpus = cluster.gpus_per_node
    if gpus is None and cluster.gres:
        match = _GRES_COUNT.match(cluster.gres.strip())
        gpus = int(match.group(1)) if match else None
    if not gpus:
        return None
    return cluster.price_per_gpu_hour * gpus * node_count(options)


def node_prices(cluster, options: dict) -> list[float | None] | None:
    """Each node's $/h of a job on several nodes (MIN:MAX: as many as it may get; the runner
    counts the nodes it got), or None for one node."""
    count = node_count(options)
    if count < 2:
        return None
    return [job_price(cluster, {**options, "nodes": 1})] * count


def node_count(options: dict) -> int:
    """The nodes a job may run on: --nodes N, or MAX of MIN:MAX (1 when not given)."""
    from ...runner.nodes import parse_node_count

    return parse_node_count(options.get("nodes") or 1)[1]
