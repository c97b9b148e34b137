"""What Slurm's own commands say about a job, read through the login node: its state and
reason (squeue), its place among the jobs waiting in its partition, its end as sacct knows
it (when accounting answers), and Slurm's error lines made one."""

from __future__ import annotations

from ..base import ProviderError

# squeue states in which the job may still run the runner (it holds or waits for nodes).
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED",
                 "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
                 "STOPPED"}
# Reasons a pending job never leaves (a site without EnforcePartLimits accepts such jobs).
NEVER_STARTS = {"PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit",
                "AccountNotAllowed", "QOSNotAllowed"}


class JobState:
    """One squeue line of a job: `squeue -o %T|%r|%P`."""

    __slots__ = ("state", "reason", "partition")

    def __init__(self, state: str, reason: str = "", partition: str = ""):
        self.state, self.reason, self.partition = state, reason, partition

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


async def job_state(transport, label: str, job: str) -> JobState | None:
    """The job as squeue lists it (ended jobs for a while: MinJobAge), or None once gone."""
    result = await transport.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T|%r|%P"],
                                 check=False, timeout=30)
    line = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0 or "|" not in line:
        if result.returncode != 0 and b"Invalid job id" not in result.stderr:
            raise ProviderError(f"{label}: squeue failed: "
                                f"{slurm_message(result.stderr) or result.returncode}")
        return None
    state, _, rest = line.splitlines()[0].partition("|")
    reason, _, partition = rest.partition("|")
    return JobState(state, reason, partition.split(",")[0])


async def queue_place(transport, job: str, partition: str) -> int | None:
    """The job's place (1 = next) among the pending jobs of its partition, in the order Slurm
    starts them: highest priority first, then the oldest job. None if it is not listed."""
    if not partition:
        return None
    result = await transport.run(["squeue", "-h", "-t", "PENDING", "-p", partition,
                                  "--sort=-p,i", "-o", "%i"], check=False, timeout=30)
    if result.returncode != 0:
        return None
    jobs = result.stdout.decode(errors="replace").split()
    return jobs.index(job) + 1 if job in jobs else None


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


async def accounted_state(transport, job: str) -> str | None:
    """The job's end as sacct knows it, or None (accounting is often disabled)."""
    result = await transport.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State"],
                                 check=False, timeout=30)
    return parse_sacct_state(result.returncode, result.stdout)


def parse_sacct_state(returncode: int, stdout: bytes) -> str | None:
    """`sacct -n -X -P -o State` -> 'COMPLETED', 'CANCELLED' (from 'CANCELLED by 0'), or None
    when sacct failed (accounting disabled: exit 1) or has no record of the job. A requeued
    job's last line is its latest run."""
    if returncode != 0:
        return None
    lines = [line.split() for line in stdout.decode(errors="replace").splitlines()]
    lines = [words for words in lines if words]
    return lines[-1][0].rstrip("+") if lines else None


def slurm_message(stderr: bytes) -> str:
    """Slurm's error lines as one: 'invalid partition specified: nope; Batch job submission
    failed: Invalid partition name specified'."""
    lines = []
    for raw in stderr.decode(errors="replace").splitlines():
        line = raw.strip()
        for prefix in ("sbatch: error: ", "squeue: error: ", "scancel: error: ", "error: "):
            line = line.removeprefix(prefix)
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines)
