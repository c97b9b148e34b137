"""The batch script of a session: every #SBATCH line, the cluster's setup lines, then the
runner supervising the training in the session folder on the shared filesystem (with
several nodes, one runner per node started by srun: runner/nodes.py).

The runner runs in the job's working directory (the submit directory: the login directory,
as over ssh). It starts in the background and the shell waits for it, so the shell's traps
run at once: a stop (`scancel --batch --signal=INT`) reaches the runner as SIGTERM
(graceful: the runner SIGTERMs the training, waits its grace, then SIGKILLs), USR2 as its
force stop (SIGUSR1). Every value is quoted: a session name, path or option is untrusted input."""

from __future__ import annotations

import re
import shlex

from ...runner.nodes import NodeCountError, node_count_text, parse_node_count
from ..base import ProviderError

SIGNALS_FILE = "slurm-signals"  # in the session folder: "TERM 1733370000" a line
STOP_FILE = "trainctl-stop"  # in the session folder: trainctl asked for the stop
NODE_SIGNALS_FILE = "node-signals"  # in the session folder: signals for every node's runner
# Run by the job's python on a requeued start: spec.json's resume_from becomes "newest".
RESUME_NEWEST = """\
import json, os, sys
path = sys.argv[1]
with open(path) as handle:
    spec = json.load(handle)
spec["resume_from"] = "newest"
with open(path + ".tmp", "w") as handle:
    json.dump(spec, handle)
os.replace(path + ".tmp", path)"""
# Slurm's --job-name may hold anything but is shown in squeue: keep it readable and short.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class JobRequest:
    """What one job asks Slurm for: the cluster's defaults overridden by the launch options."""

    __slots__ = ("nodes", "several", "node_range", "gpus_per_node", "gres", "time", "partition",
                 "account", "qos")

    def __init__(self, cluster, options: dict | None = None):
        options = {k: v for k, v in (options or {}).items() if v is not None}
        try:  # "N" or "MIN:MAX" (as many as Slurm gives)
            self.nodes = node_count_text(options.get("nodes") or 1)
            low, high = parse_node_count(self.nodes)
        except NodeCountError as exc:
            raise ProviderError(f"slurm: {exc}") from None
        self.several = high > 1  # one runner per node, started by srun
        self.node_range = str(low) if low == high else f"{low}-{high}"
        self.gpus_per_node = options.get("gpus_per_node", cluster.gpus_per_node)
        self.gres = None if "gpus_per_node" in options else cluster.gres
        self.time = options.get("time", cluster.time)
        self.partition = options.get("partition", cluster.partition)
        self.account = options.get("account", cluster.account)
        self.qos = options.get("qos", cluster.qos)

    def sbatch_lines(self) -> list[str]:
        lines = [f"--nodes={self.node_range}", "--ntasks-per-node=1"]
        for flag, value in (("partition", self.partition), ("account", self.account),
                            ("qos", self.qos), ("time", self.time)):
            if value:
                lines.append(f"--{flag}={value}")
        if self.gres:
            lines.append(f"--gres={self.gres}")
        elif self.gpus_per_node:
            lines.append(f"--gres=gpu:{int(self.gpus_per_node)}")
        return lines


def job_name(session_name: str) -> str:
    name = _NAME_UNSAFE.sub("-", session_name).strip("-.")[:40]
    return f"trainctl-{name or 'run'}"


def sbatch_directive(option: str) -> str:
    """One #SBATCH line. sbatch reads these words itself, without a shell: a value with a
    space, quote, line break or '#' could split the line or end it, so it is refused."""
    if not option or any(c.isspace() or c in "'\"#\\\0" or not c.isprintable()
                         for c in option):
        raise ProviderError(f"slurm: the sbatch option {option!r} may not hold spaces, quotes, "
                            "'#' or control characters")
    return f"#SBATCH {option}"


def batch_script(*, session_name: str, session_dir: str, runner: str, python: str,
                 cluster, request: JobRequest) -> str:
    """The whole script, as text."""
    lines = ["#!/bin/bash"]
    options = [f"--job-name={job_name(session_name)}",
               f"--output={session_dir}/slurm-%j.out",
               f"--error={session_dir}/slurm-%j.out",
               "--open-mode=append",
               *request.sbatch_lines(),
               f"--signal=B:USR1@{int(cluster.signal_lead_seconds)}",
               "--requeue",
               *cluster.sbatch_args]
    lines += [sbatch_directive(option) for option in options]
    quoted_dir = shlex.quote(session_dir)
    lines += [
        "",
        "# the cluster's setup",
        *cluster.setup,
        "",
        f"trainctl_dir={quoted_dir}",
        # Each signal is noted (SIGNALS_FILE), so a stop nobody asked trainctl for is told
        # apart: a scancel by someone else, Slurm's warning before the time limit, a requeue.
        f"note() {{ echo \"$1 $(date +%s)\" >> \"$trainctl_dir\"/{SIGNALS_FILE}; }}",
        # A requeued start resumes from the newest sound checkpoint (the resume template).
        "if [ -n \"${SLURM_RESTART_COUNT:-}\" ]; then",
        f"  note START; {shlex.quote(python)} - \"$trainctl_dir/spec.json\" <<'EOF'",
        RESUME_NEWEST,
        "EOF",
        "fi",
        *(start_node_runners(python, runner, request.nodes) if request.several else [
            f"{shlex.quote(python)} {shlex.quote(runner)} \"$trainctl_dir\" &",
            "runner=$!",
            "signal_runners() { kill -\"$1\" \"$runner\" 2>/dev/null; }"]),
        # Slurm's own TERM (scancel, a requeue, a preemption, the time limit) reaches every
        # process of the job, the runners too: passing it on would be a second SIGTERM, the
        # runner's force stop. trainctl's stop (INT) reaches the batch shell alone.
        "trap '[ -n \"$requeued\" ] && exit 0; note TERM' TERM",
        "trap 'note INT; signal_runners TERM' INT",
        "trap 'note USR2; signal_runners USR1' USR2",
        # Slurm's warning before the time limit: a graceful stop so the training saves, then
        # a requeue (up to max_requeues) that starts it again from that checkpoint.
        "trap 'note USR1; warned=1; signal_runners TERM' USR1",
        "wait \"$runner\"; code=$?",
        "while kill -0 \"$runner\" 2>/dev/null; do wait \"$runner\"; code=$?; done",
        "if [ -n \"$warned\" ] && [ ! -e \"$trainctl_dir\"/" + STOP_FILE + " ]; then",
        f"  if [ \"${{SLURM_RESTART_COUNT:-0}}\" -lt {int(cluster.max_requeues)} ]; then",
        "    requeued=1; note REQUEUE",
        "    scontrol requeue \"$SLURM_JOB_ID\" && while :; do sleep 1 & wait $!; done",
        "    note REQUEUE_FAILED",
        "  else",
        "    note NO_REQUEUE",
        "  fi",
        "fi",
        "exit \"$code\"",
        "",
    ]
    return "\n".join(lines)


def start_node_runners(python: str, runner: str, nodes: str) -> list[str]:
    """One runner per node (srun, one task a node): each gets its rank from SLURM_NODEID and
    every node's address, head first, resolved here from Slurm's NodeAddr. A signal for the
    runners is a line in NODE_SIGNALS_FILE on the shared filesystem, which each runner
    watches: srun would turn TERM into SIGKILL, and `scancel --signal` reaches every process
    of the step, the trainings too (a second SIGTERM may kill one that is saving)."""
    return [
        "node_ip() {",
        "  addr=$(scontrol -o show node \"$1\" | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')",
        "  ip=$(getent ahostsv4 \"${addr:-$1}\" | awk 'NR == 1 { print $1 }')",
        "  echo \"${ip:-${addr:-$1}}\"",
        "}",
        "node_ips=$(for node in $(scontrol show hostnames \"$SLURM_JOB_NODELIST\"); do "
        "node_ip \"$node\"; done | paste -sd, -)",
        f"rm -f \"$trainctl_dir\"/{NODE_SIGNALS_FILE}",
        "srun --ntasks-per-node=1 bash -c 'exec \"$0\" \"$1\" \"$2\" "
        "--node-rank \"$SLURM_NODEID\" --node-ips \"$3\" --nnodes \"$4\" "
        f"--signals-from \"$2\"/{NODE_SIGNALS_FILE}' "
        f"{shlex.quote(python)} {shlex.quote(runner)} \"$trainctl_dir\" \"$node_ips\" "
        f"{shlex.quote(nodes)} &",
        "runner=$!",
        "signal_runners() { echo \"$1 $(date +%s)\" >> \"$trainctl_dir\"/"
        f"{NODE_SIGNALS_FILE}; }}",
    ]
