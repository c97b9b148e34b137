"""A real, private Slurm cluster on 127.0.0.1 for tests (what it can do: tests/SLURM.md).

Use it with `from slurm_cluster import slurm_cluster`. The session-scoped `slurm_cluster`
fixture yields a `SlurmCluster`: its own munged (key, socket, pid and log in a temp dir), a
generated slurm.conf, slurmctld and two slurmd (this build runs several on one host) as child
processes in the foreground. `node1` has the machine's CPUs and memory (`slurmd -C`) and is the
only node of the default partition `debug`; `node2` only joins `node1` in the partition `pair`,
for real two-node jobs. Every client command gets `cluster.env` (SLURM_CONF set), so the
system's /etc/slurm and /run/munge are never used.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sshd import free_port, missing

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
CLUSTER = "trainctltest"
PARTITION = "debug"
PAIR_PARTITION = "pair"
# What squeue gives as the reason of a job waiting on a drained node. slurmctld moves between
# the two forms as its scheduler looks again, so a test cannot compare with one read of it.
DRAINED_NODE_REASON = (r"(ReqNodeNotAvail, UnavailableNodes:\S+|Nodes required for job are "
                       r"DOWN, DRAINED or reserved for jobs in higher priority partitions)")
PARTITION_MAX_MINUTES = 30  # debug's MaxTime, so a longer --time is a rejection to test
NODES = ("node1", "node2")
# How long a requeued job waits before it may start again (Slurm's default is 120 s).
CRED_EXPIRE_SECONDS = 5


def find_program(name: str) -> str | None:
    """Daemons live in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which(name)
    for path in (found, f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def machine_resources(slurmd: str) -> tuple[int, int]:
    """(CPUs, RealMemory in MB) as slurmd itself detects them, so the node never drains for
    'Low RealMemory' or 'Low socket*core*thread count'."""
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout
    cpus = re.search(r"\bCPUs=(\d+)", out)
    memory = re.search(r"\bRealMemory=(\d+)", out)
    if not cpus or not memory:
        raise RuntimeError(f"cannot read `slurmd -C`: {out!r}")
    return int(cpus.group(1)), int(memory.group(1))


class SlurmCluster:
    """munged + slurmctld + slurmd for node1 and node2, all under one temp dir."""

    cluster_name = CLUSTER
    partition = PARTITION
    pair_partition = PAIR_PARTITION
    node = NODES[0]
    nodes = NODES

    def __init__(self, root: Path, programs: dict[str, str]):
        self.dir = root
        self.programs = programs
        self.cpus, self.memory_mb = machine_resources(programs["slurmd"])
        self.controller_port = free_port()
        self.node_ports = {name: free_port() for name in NODES}
        self.conf_path = root / "slurm.conf"
        self.munge_key = root / "munge" / "munge.key"
        self.munge_socket = root / "munge" / "munge.socket"
        self.jobs_dir = root / "jobs"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf_path)}
        for name in ("SLURM_JOB_ID", "SLURM_JOBID"):  # a test run inside a job stays out of it
            self.env.pop(name, None)
        self.processes: dict[str, subprocess.Popen] = {}
        self._make_dirs()
        self._make_munge_key()
        self.conf_path.write_text(self.slurm_conf())

    # -- setup -------------------------------------------------------------------------------
    def _make_dirs(self) -> None:
        for sub in ("munge", "state", "log", "run", "jobs", *(f"spool/{n}" for n in NODES)):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def _make_munge_key(self) -> None:
        """munged refuses a key that others can read."""
        self.munge_key.write_bytes(os.urandom(1024))
        self.munge_key.chmod(0o600)

    def slurm_conf(self) -> str:
        root = self.dir
        host = socket.gethostname().split(".")[0]
        lines = [
            f"ClusterName={CLUSTER}",
            # slurmctld only starts on a host named here; the address keeps DNS out of it.
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={self.controller_port}",
            f"SlurmdPort={self.node_ports[NODES[0]]}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # Our own munged's socket; cred_expire is also how long a requeued job is held.
            f"AuthInfo=socket={self.munge_socket},cred_expire={CRED_EXPIRE_SECONDS}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}/%n",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run'}/slurmd-%n.pid",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log'}/slurmd-%n.log",
            # No cgroups in a container: plain /proc process tracking, no task binding.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            # Re-examine pending jobs every 2 s (default 60 s) so tests see state changes fast.
            "SchedulerParameters=sched_interval=2,bf_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "MaxJobCount=200",
            # Ended jobs stay visible (squeue -t all, scontrol) this long, then are purged.
            "MinJobAge=5",
            "KillWait=5",
            "InactiveLimit=0",
            "MessageTimeout=5",
            "SlurmdTimeout=30",
            "SlurmctldTimeout=30",
            "JobRequeue=1",
            # Reject at sbatch what can never run (more nodes or CPUs than the partition has,
            # a time above its MaxTime), as most sites do; the default queues it forever.
            "EnforcePartLimits=ALL",
        ]
        for name in NODES:
            lines.append(
                f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 "
                f"Port={self.node_ports[name]} CPUs={self.cpus} RealMemory={self.memory_mb} "
                "State=UNKNOWN")
        lines += [
            f"PartitionName={PARTITION} Nodes={NODES[0]} Default=YES "
            f"MaxTime={PARTITION_MAX_MINUTES} State=UP",
            f"PartitionName={PAIR_PARTITION} Nodes={','.join(NODES)} Default=NO "
            "MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._start_munged()
        self._spawn("slurmctld", [self.programs["slurmctld"], "-D", "-f", str(self.conf_path)])
        for name in NODES:
            self._spawn(f"slurmd-{name}",
                        [self.programs["slurmd"], "-D", "-N", name, "-f", str(self.conf_path)])
        self.wait_idle(NODES, timeout=30)

    def _start_munged(self) -> None:
        """--force: munged wants world-executable dirs above its socket, and pytest's temp
        dirs are 0700 (we are root, so nothing is really inaccessible)."""
        munge = self.dir / "munge"
        self._spawn("munged", [
            self.programs["munged"], "--foreground", "--force",
            f"--key-file={self.munge_key}", f"--socket={self.munge_socket}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ])
        self._wait_for(self.munge_socket.exists, 10, "munged did not create its socket")

    def _spawn(self, name: str, argv: list[str]) -> None:
        """A daemon in the foreground, in its own session, its cwd in our dir (slurmstepd
        inherits it, which is how stop() finds leftovers)."""
        with open(self.dir / "log" / f"{name}.out", "ab") as out:
            self.processes[name] = subprocess.Popen(
                argv, cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=out, start_new_session=True)

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then kill whatever still runs from our dir
        (slurmstepd and job processes live in sessions of their own)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.cancel_all()
        for process in reversed(list(self.processes.values())):  # slurmd first, munged last
            _terminate(process)
        self.processes.clear()
        for pid in _processes_in_sessions(sessions_using(self.dir)):
            _kill(pid)

    def cancel_all(self, timeout: float = 20) -> None:
        jobs = self.job_ids()
        if jobs:
            self.run("scancel", *jobs, check=False)
            self._wait_for(lambda: not self.job_ids(), timeout, "jobs did not leave the queue")

    # -- helpers for tests -------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 30,
            **kwargs) -> subprocess.CompletedProcess:
        """A Slurm client command (sbatch, squeue, scancel, scontrol, sinfo, ...) on this
        cluster; check=True raises with Slurm's own words."""
        result = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: "
                               f"{result.stderr.strip() or result.stdout.strip()}")
        return result

    def write_script(self, name: str, body: str) -> Path:
        path = self.jobs_dir / name
        path.write_text(body if body.startswith("#!") else "#!/bin/bash\n" + body)
        return path

    def sbatch(self, script: Path, *options: str) -> str:
        """Submit; returns the job id (--parsable prints `id` or `id;cluster`)."""
        out = self.run("sbatch", "--parsable", *options, str(script)).stdout
        return out.strip().split(";")[0]

    def job_ids(self) -> list[str]:
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def job_state(self, job: str) -> tuple[str, str] | None:
        """(state, reason) as squeue shows them, ended states included (-t all: without it
        squeue hides an ended job at once), or None once slurmctld purged the job."""
        out = self.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T|%r",
                       check=False).stdout.strip()
        if not out:
            return None
        state, _, reason = out.partition("|")
        return state, reason

    def wait_state(self, job: str, states: set[str | None], timeout: float = 30,
                   ) -> tuple[str, str] | None:
        """Poll until the job's state is one of `states` (None: gone from the queue)."""
        found: list = []

        def reached() -> bool:
            found[:] = [self.job_state(job)]
            return (found[0][0] if found[0] else None) in states

        self._wait_for(reached, timeout, lambda: f"job {job} is {found}, not in {states}")
        return found[0]

    def show_job(self, job: str) -> dict[str, str]:
        """`scontrol show job` as a dict (Restarts, JobState, Reason, EligibleTime, ...)."""
        out = self.run("scontrol", "-o", "show", "job", job).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def node_states(self) -> dict[str, str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_idle(self, nodes: tuple[str, ...] = (NODES[0],), timeout: float = 30) -> None:
        def idle() -> bool:
            states = self._node_states_or_empty()
            return all(states.get(name) == "idle" for name in nodes)

        self._wait_for(idle, timeout,
                       lambda: f"nodes not idle: {self._node_states_or_empty()}\n{self.log()}")

    def _node_states_or_empty(self) -> dict[str, str]:
        try:
            return self.node_states()
        except RuntimeError:  # slurmctld not answering yet
            return {}

    def drain(self, reason: str = "trainctl test", node: str = NODES[0]) -> None:
        self.run("scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}")

    def resume_node(self, node: str = NODES[0]) -> None:
        self.run("scontrol", "update", f"NodeName={node}", "State=RESUME")
        self.wait_idle((node,))

    def log(self, name: str = "slurmctld") -> str:
        try:
            return (self.dir / "log" / f"{name}.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _wait_for(self, condition, timeout: float, message) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            self._fail_if_a_daemon_died()
            time.sleep(0.2)
        raise RuntimeError(message() if callable(message) else message)

    def _fail_if_a_daemon_died(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                out = (self.dir / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited ({process.returncode}): {out}\n{self.log()}")


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM the daemon's session (slurmctld has a slurmscriptd child), SIGKILL if slow."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def sessions_using(root: Path) -> set[int]:
    """Session ids of processes whose cwd is in root: slurmstepd keeps slurmd's cwd."""
    sessions = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            if cwd == str(root) or cwd.startswith(f"{root}/"):
                sessions.add(os.getsid(int(entry.name)))
        except OSError:
            continue  # gone, or not ours to read
    sessions.discard(os.getsid(0))  # never the test run itself
    return sessions


def _processes_in_sessions(sessions: set[int]) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=", "-o", "sid="],
                         capture_output=True, text=True).stdout
    pairs = (line.split() for line in out.splitlines())
    return [int(pid) for pid, sid in pairs if int(sid) in sessions and int(pid) != os.getpid()]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def find_programs() -> dict[str, str]:
    """Every daemon and client the cluster needs, or missing() names the package."""
    programs = {}
    for name in (*DAEMONS, *CLIENTS):
        path = find_program(name)
        if path is None:
            package = "munge" if name == "munged" else "slurm-wlm"
            missing(f"{name} is not installed (apt-get install slurm-wlm munge; needs {package})")
        programs[name] = path
    return programs


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    programs = find_programs()
    if os.geteuid() != 0:
        missing("the test Slurm cluster runs its daemons as root (SlurmUser=root)")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), programs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- by hand: `python tests/slurm_cluster.py up|down [DIR]` (`just slurm-up`, `just slurm-down`) --
HAND_DIR = Path("/tmp/trainctl-slurm")


def cluster_up(root: Path) -> None:
    """The tests' cluster, left running for trying things by hand (daemons in sessions of
    their own outlive this process)."""
    if (root / "slurm.conf").exists() and sessions_using(root):
        print(f"already up: export SLURM_CONF={root / 'slurm.conf'}")
        return
    root.mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster(root, find_programs())
    cluster.start()
    print(f"up: partitions {PARTITION} ({NODES[0]}) and {PAIR_PARTITION} ({', '.join(NODES)})")
    print(f"export SLURM_CONF={cluster.conf_path}   # then sinfo, sbatch, squeue ...")
    print("[slurm.clusters.test] for trainctl: login = \"local\", workdir = "
          f"\"{root / 'work'}\"   (with SLURM_CONF exported)")


def cluster_down(root: Path) -> None:
    """Cancel every job, then end every process that runs from the cluster's dir."""
    conf = root / "slurm.conf"
    if conf.exists():
        subprocess.run(["scancel", "--full", "--user", str(os.getuid())], check=False,
                       env={**os.environ, "SLURM_CONF": str(conf)}, capture_output=True,
                       timeout=30)
    pids = _processes_in_sessions(sessions_using(root))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)
    print(f"down: {len(pids)} process(es) ended; {root} kept (rm -rf it to start afresh)")


if __name__ == "__main__":
    import sys

    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb not in ("up", "down"):
        sys.exit("usage: python tests/slurm_cluster.py up|down [DIR]")
    folder = Path(sys.argv[2] if len(sys.argv) > 2 else HAND_DIR).resolve()
    (cluster_up if verb == "up" else cluster_down)(folder)
