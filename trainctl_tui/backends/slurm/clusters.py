"""The overview of the configured Slurm clusters: per cluster one round trip to its login node
running sinfo and squeue, read into a ClusterInfo (partitions, the user's queue), or the one
line why not (unreachable: the login node did not answer; error: Slurm said why). Every cluster
is asked at once; a slow or dead one never hides the others."""

from __future__ import annotations

import shlex

from ...core import aio
from ...core.clusters import ERROR, UNREACHABLE, ClusterInfo, Partition
from ..errors import ProviderError
from .sinfo import SINFO_ARGV, parse_sinfo
from .squeue import SQUEUE_ARGV, parse_squeue

BACKEND = "slurm"
PROBE_TIMEOUT = 30.0
MARK = "@@trainctl "  # ends each command's output, with its exit code


def probe_script() -> str:
    """The shell line run on the login node: the user, then sinfo's output (with its errors)
    and MARK with its exit code, then, if sinfo worked, squeue's the same way (a controller
    that does not answer costs seconds per command)."""
    return (f"u=$(id -un); echo \"$u\"; {shlex.join(SINFO_ARGV)} 2>&1; s=$?; "
            f"echo \"{MARK}$s\"; [ $s = 0 ] || exit 0; "
            f"{shlex.join(SQUEUE_ARGV)} -u \"$u\" 2>&1; echo \"{MARK}$?\"")


async def probe_clusters(config, names: list[str]) -> list[ClusterInfo]:
    clusters = config.slurm.clusters
    return list(await aio.gather(*(probe_cluster(name, clusters[name]) for name in names)))


async def probe_cluster(name: str, cluster) -> ClusterInfo:
    from .provider import SlurmProvider

    info = ClusterInfo(name=name, backend=BACKEND, login=cluster.login)
    try:
        result = await SlurmProvider(name).transport.run(probe_script(), check=False,
                                                         timeout=PROBE_TIMEOUT)
    except ProviderError as exc:
        info.state, info.error = UNREACHABLE, str(exc)
        return info
    return read_probe(info, result.stdout.decode(errors="replace"), result.returncode)


def read_probe(info: ClusterInfo, output: str, returncode: int) -> ClusterInfo:
    """Fill `info` from the probe's output; a command that failed makes it an ERROR."""
    user, _, rest = output.partition("\n")
    sections = split_sections(rest)
    for command, (text, code) in zip(("sinfo", "squeue"), sections, strict=False):
        if code != 0:
            info.state, info.error = ERROR, command_failure(command, text, code)
            return info
    if len(sections) < 2:  # the shell itself failed before the marks
        info.state = ERROR
        info.error = (f"the probe on the login node failed (exit {returncode}): "
                      f"{' '.join(output.split())[-200:] or 'no output'}")
        return info
    info.user = user.strip()
    info.partitions = parse_sinfo(sections[0][0])
    info.queue = parse_squeue(sections[1][0])
    return info


def split_sections(text: str) -> list[tuple[str, int]]:
    """[(output, exit code)] of each command, in order."""
    sections, lines = [], []
    for line in text.splitlines():
        if line.startswith(MARK):
            code = line[len(MARK):].strip()
            sections.append(("\n".join(lines), int(code) if code.isdigit() else 1))
            lines = []
        else:
            lines.append(line)
    return sections


def command_failure(command: str, output: str, code: int) -> str:
    """One line: a command missing on the login node, or Slurm's own words."""
    if code == 127:
        return (f"{command} not found on the login node: is Slurm installed there, and on the "
                "PATH of a non-interactive shell?")
    from .provider import slurm_message

    return f"{command} failed (exit {code}): {slurm_message(output.encode()) or 'no output'}"


def partition_choices(info: ClusterInfo, configured: str | None) -> list[tuple[str, str]]:
    """(label, value) of the launch form's partition select: first the default ("": the
    cluster's configured partition, else Slurm's default), then each partition with what is
    free there."""
    default = configured or next((p.name for p in info.partitions if p.default), "")
    choices = [(f"default ({default})" if default else "default", "")]
    return choices + [(describe_partition(p), p.name) for p in info.partitions]


def describe_partition(partition: Partition) -> str:
    """'gpu · 3 idle, 1 mixed of 8 · 6 GPUs free · limit 4:00:00'."""
    nodes = f"{partition.nodes_idle} idle"
    if partition.nodes_mixed:
        nodes += f", {partition.nodes_mixed} mixed"
    parts = [partition.name, f"{nodes} of {partition.nodes_total}"]
    if partition.gpus_total:
        parts.append(f"{partition.gpus_free} GPUs free")
    if partition.state != "up":
        parts.append(partition.state)
    if partition.time_limit:
        parts.append(f"limit {partition.time_limit}")
    return " · ".join(parts)
