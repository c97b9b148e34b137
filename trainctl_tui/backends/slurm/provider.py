"""Runs sessions as Slurm batch jobs on a cluster named in [slurm.clusters].

The runner zipapp and the session's files go to the cluster's shared workdir through its
login node (this machine when login = "local", else ssh), a batch script starts the runner
inside the allocation, and `sbatch --parsable` submits it; the job id is kept in remote.json.
While the job waits, the session is pending with Slurm's reason; once the runner writes
status.json, running and ended come from it as for an ssh host. A stop signals the batch
shell (which forwards it to the runner: graceful), then cancels what is left."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from ...core import aio, interruptions
from ...core.atomic import atomic_write
from ...core.models import Session, Status
from ...runner.bundle import RUNNER_NAME, runner_bundle
from ..base import ProviderError, UnknownProvider
from ..remote.runner import RemoteRunnerProvider, remote_info, remote_path, runner_version
from . import requeues
from .checks import not_visible, preflight
from .queue import (
    NEVER_STARTS,
    JobState,
    accounted_state,
    job_state,
    ordinal,
    queue_place,
    slurm_message,
)
from .script import SIGNALS_FILE, STOP_FILE, JobRequest, batch_script

# squeue states of a job Slurm put back in the queue (a preemption, `scontrol requeue`).
REQUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
STOP_POLL = 0.5
REQUEUES_SEEN = "slurm-requeues.seen"  # in the local session folder: attempts when last read


class SlurmProvider(RemoteRunnerProvider):
    """The runner inside a Slurm job on cluster `cluster`."""

    def __init__(self, cluster: str):
        super().__init__()
        self.host = cluster
        self._cluster = None
        self._transport = None
        self._notes: dict[str, list | None] = {}  # read this refresh (a provider is per refresh)

    @property
    def name(self) -> str:
        return f"slurm:{self.host}"

    @property
    def label(self) -> str:
        return f"slurm {self.host}"

    @property
    def cluster(self):
        if self._cluster is None:
            from ...config.loader import load_config

            clusters = load_config().slurm.clusters
            if self.host not in clusters:
                known = ", ".join(sorted(clusters)) or "none"
                raise UnknownProvider(f"unknown Slurm cluster '{self.host}' (configured: "
                                      f"{known}); add [slurm.clusters.{self.host}] to the config")
            self._cluster = clusters[self.host]
        return self._cluster

    @property
    def target(self):
        """What launching resolves first: the cluster (an unknown one is refused)."""
        return self.cluster

    @property
    def transport(self):
        if self._transport is None:
            login = self.cluster.login
            if login == "local":
                from .local_login import LocalLogin

                self._transport = LocalLogin()
            else:
                from ...config.loader import load_config
                from ..remote.transport import SSHTransport, resolve_target

                self._transport = SSHTransport(resolve_target(login, load_config().ssh.hosts))
        return self._transport

    @property
    def python(self) -> str:
        return self.cluster.python

    @property
    def workdir(self) -> str:
        return self.cluster.workdir

    # -- launching ----------------------------------------------------------------------

    def runner_path(self) -> str:
        return remote_path(self.workdir, "runner", runner_version(), RUNNER_NAME)

    async def install_runner(self) -> str:
        """The runner zipapp on the shared workdir, once per version."""
        from ...core.paths import state_dir

        local = runner_bundle(state_dir() / "runner")
        remote = self.runner_path()
        if await self.transport.size(remote) != local.stat().st_size:
            await self.transport.put(local.read_bytes(), remote, mode=0o644)
        return remote

    def script(self, session: Session, remote_dir: str, runner: str,
               options: dict | None = None) -> str:
        request = JobRequest(self.cluster, job_options(session) if options is None else options)
        return batch_script(session_name=session.name, session_dir=remote_dir, runner=runner,
                            python=self.python, cluster=self.cluster, request=request)

    async def price_per_hour(self, session: Session, options: dict) -> float | None:
        from .price import job_price  # the cluster's declared price (price.py)

        return job_price(self.cluster, options)

    async def node_prices(self, session: Session, options: dict) -> list | None:
        from .price import node_prices

        return node_prices(self.cluster, options)

    price_setting = "price_per_gpu_hour in [slurm.clusters.NAME]"

    async def dry_run(self, session: Session, options: dict) -> str:
        """The batch script a launch would submit; nothing is written or submitted."""
        remote_dir = remote_path(self.workdir, "sessions", session.id or "SESSION")
        return self.script(session, remote_dir, self.runner_path(), options)

    async def launch(self, session: Session) -> None:
        """Checks the login node, writes the session's files and submits the job. A session
        submitted before (a resume) keeps its folder and log: the old job's notes are put
        aside and the new job starts its runner where the last attempt left off."""
        local = Path(session.session_dir)
        before = remote_info(session)
        again = bool(before and before.get("job_id"))
        remote_dir = self.remote_dir(session)
        await preflight(self.transport, label=self.label, login=self.cluster.login,
                        workdir=self.workdir, sessions_dir=remote_path(self.workdir,
                                                                       "sessions"))
        runner = await self.install_runner()
        if again:
            await self.put_aside_notes(remote_dir, before["job_id"])
        await self.transport.put((local / "spec.json").read_bytes(), f"{remote_dir}/spec.json",
                                 mode=0o644)
        secrets = local / "secret_env.json"
        if secrets.exists():
            await self.transport.put(secrets.read_bytes(), f"{remote_dir}/secret_env.json")
        if not again or await self.transport.size(f"{remote_dir}/train.log") is None:
            await self.transport.put(b"", f"{remote_dir}/train.log", mode=0o644)
        script = f"{remote_dir}/job.sh"
        await self.transport.put(self.script(session, remote_dir, runner).encode(), script,
                                 mode=0o700)
        info = {"host": self.host, "remote_dir": remote_dir, "runner": runner}
        if not again:
            (local / "remote.json").write_text(json.dumps(info))
        result = await self.transport.run(["sbatch", "--parsable", script], check=False,
                                          timeout=60, retry=False)
        words = result.stdout.decode(errors="replace").strip().split(";")[0]
        if result.returncode != 0 or not words.isdigit():
            if not again:  # nothing of it is left on the cluster
                await self.transport.run(["rm", "-rf", "--", remote_dir], check=False)
            raise ProviderError(f"{self.label}: sbatch refused the job: "
                                f"{slurm_message(result.stderr) or result.returncode}")
        info["job_id"] = words
        if again:  # until the new runner writes, status.json tells of the last attempt
            info["after_attempt"] = session.attempt or 0
            info["jobs"] = [*before.get("jobs", [before["job_id"]]), words]
        atomic_write(local / "remote.json", json.dumps(info), durable=False)
        self._probes.pop(session.id, None)

    async def put_aside_notes(self, remote_dir: str, old_job: str) -> None:
        """The old job's signal notes (and trainctl's stop mark) would be read as the new
        job's: they move to slurm-signals.<job>."""
        folder = shlex.quote(remote_dir)
        await self.transport.run(
            f"cd {folder} && {{ [ ! -e {SIGNALS_FILE} ] || mv -f {SIGNALS_FILE} "
            f"{SIGNALS_FILE}.{shlex.quote(old_job)}; }} && rm -f {STOP_FILE}", timeout=30)

    # -- the job ------------------------------------------------------------------------

    def job_id(self, session: Session) -> str | None:
        return (remote_info(session) or {}).get("job_id")

    async def job_state(self, session: Session) -> JobState | None:
        """The job as squeue lists it (ended jobs for a few minutes), or None once gone."""
        job = self.job_id(session)
        return await job_state(self.transport, self.label, job) if job else None

    async def scancel(self, *argv: str) -> None:
        await self.transport.run(["scancel", *argv], check=False, timeout=30)

    async def unstarted(self, session: Session) -> dict | None:
        """The session's changes while its runner has written no status.json yet: queued
        with Slurm's reason and its place, starting, or ended without the runner (one line
        why)."""
        job = self.job_id(session)
        if not job:
            return None
        state = await self.job_state(session)
        if state is not None and state.active:
            if state.state == "PENDING" and state.reason in NEVER_STARTS:
                await self.scancel(job)
                return {"status": Status.FAILED, "ended": time.time(),
                        "detail": f"{self.label}: job {job} can never start ({state.reason}); "
                                  "it was cancelled"}
            if state.state == "PENDING":
                return {"status": Status.PENDING,
                        "detail": await self.queued_detail(session, job, state)}
            return {"status": Status.PENDING,
                    "detail": f"starting (job {job} {state.state.lower()})"}
        return {"status": Status.FAILED if state else Status.LOST, "ended": time.time(),
                "detail": await self.gone_detail(session, state)}

    async def queued_detail(self, session: Session, job: str, state: JobState) -> str:
        """'queued: Priority (2nd in partition debug, job 123)', after a requeue with why."""
        # A job that ran before (requeued) left a status.json, and read_status read the
        # notes of this refresh; a job that never ran has none to read.
        notes = self._notes.get(session.id) or []
        again = requeues.requeues(notes + [("START", None)])
        requeued = ""
        if again and notes and notes[-1][0] in ("REQUEUE", "TERM", "USR1"):
            why = ("Slurm's time-limit warning" if again[-1]["why"] == "time limit"
                   else "a preemption")
            requeued = f"requeued after {why} ({len(again)} of {self.cluster.max_requeues}), "
        place = await queue_place(self.transport, job, state.partition)
        where = f"{ordinal(place)} in partition {state.partition}, " if place else ""
        return f"{requeued}queued: {state.reason} ({where}job {job})"

    async def gone_detail(self, session: Session, state: JobState | None = None) -> str:
        """One line on a job that ended without its runner's final word."""
        job = self.job_id(session)
        if state is None:
            state = await self.job_state(session)
        if (state is None or state.reason == "JobLaunchFailure") and await self.transport.size(
                f"{self.remote_dir(session)}/slurm-{job}.out") is None:
            # The batch step could not even open its output file in the session folder.
            if state is not None:
                return not_visible(self.label, self.workdir, job)
            return (f"{self.label}: job {job} is gone from the queue without writing its "
                    "output (cancelled while queued?); if it ran: "
                    + not_visible("", self.workdir, job).removeprefix(": "))
        ended = state.state if state else await accounted_state(self.transport, job)
        if ended:
            why = {"CANCELLED": "was cancelled (scancel by someone else?)",
                   "NODE_FAIL": "ended by a node failure", "OUT_OF_MEMORY": "ran out of memory",
                   "TIMEOUT": "hit its time limit", "PREEMPTED": "was preempted",
                   "BOOT_FAIL": "failed to boot its node"}.get(ended, f"ended {ended}")
            return f"{self.label}: job {job} {why} without a final status from its runner"
        return (f"{self.label}: job {job} is gone from the queue without a final status from "
                "its runner (sacct has no record)")

    # -- watching -----------------------------------------------------------------------

    async def read_status(self, session: Session) -> dict | None:
        """The runner's status.json, with each requeue's reason on the attempt it ended. A
        stop trainctl did not ask for says who asked; the stop before a requeue is no end
        (None: the job is queued or starting again); after max_requeues the session is
        interrupted, with a hint. After a resubmission (resume), None until the new runner
        wrote its first word."""
        self._notes.pop(session.id, None)
        status = await super().read_status(session)
        if not status:
            return status
        info = remote_info(session) or {}
        if (status.get("attempt") or 0) <= info.get("after_attempt", -1) and \
                status.get("state") != "starting":
            return None
        if len(status.get("attempts") or []) > 1:
            status = await self.with_requeues(session, status)
        if status.get("state") != "stopped" or status.get("slurm_checked"):
            return status
        notes = self._notes[session.id] = await self.notes(session)
        if notes is None:  # trainctl's own stop
            return status
        names = [name for name, _ in notes]
        last = names[-1] if names else ""
        if last in ("REQUEUE", "START"):
            return None
        if last in ("USR1", "TERM") and await self.runner_alive(session, status):
            # USR1: the shell requeues the job. TERM: Slurm requeued it (a preemption) or a
            # scancel is under way: stopping until the queue says which.
            state = await self.job_state(session)
            if last == "USR1" or (state is not None and state.state in REQUEUED):
                return None
            return {**status, "state": "stopping"}
        why = self.unasked_stop(session, names)
        if why:
            status = {**status, "reason": why, "slurm_checked": True}
            if last == "NO_REQUEUE":
                status["state"] = "interrupted"
        return status

    async def with_requeues(self, session: Session, status: dict) -> dict:
        """Records the job's requeues whose next attempt has started and puts each one's
        reason on its attempt. The signals file is read once per number of attempts (kept in
        the session folder, since every refresh has a provider of its own)."""
        folder = Path(session.session_dir)
        count = str(len(status["attempts"]))
        seen = folder / REQUEUES_SEEN
        if not seen.exists() or seen.read_text() != count:
            notes = await self.notes(session)
            if notes:
                requeues.record(folder, requeues.entries(
                    self.job_id(session), self.host, notes, status["attempts"],
                    self.cluster.max_requeues))
            atomic_write(seen, count, durable=False)
        return requeues.with_reasons(status, interruptions.load(folder))

    async def notes(self, session: Session) -> list[tuple[str, float | None]] | None:
        """What the batch shell noted (signals, requeues) in order, with when, or None when
        trainctl asked for the stop."""
        folder = self.remote_dir(session)
        if await self.transport.size(f"{folder}/{STOP_FILE}") is not None:
            return None
        size = await self.transport.size(f"{folder}/{SIGNALS_FILE}")
        if not size:
            return []
        text = await self.transport.read_range(f"{folder}/{SIGNALS_FILE}", 0, size)
        return requeues.parse_notes(text.decode(errors="replace"))

    def unasked_stop(self, session: Session, notes: list[str]) -> str | None:
        """Why the runner stopped when trainctl did not stop it: a TERM is a scancel by
        someone else (or a preemption), USR1 Slurm's warning before the time limit."""
        job = self.job_id(session)
        signals = [note for note in notes if note in ("TERM", "USR1", "USR2")]
        if not signals:
            return None
        if signals[-1] == "USR1":
            requeued = notes.count("REQUEUE")
            if notes[-1] == "NO_REQUEUE":
                return (f"{self.label}: job {job} reached its time limit after "
                        f"{requeued} requeue(s) (max_requeues {self.cluster.max_requeues}); "
                        f"trainctl resume {session.id} continues from its checkpoint")
            return (f"{self.label}: job {job} stopped on Slurm's warning before its time limit "
                    "(the training got SIGTERM to save)")
        if signals[-1] == "TERM":
            return (f"{self.label}: job {job} was cancelled outside trainctl (scancel by someone "
                    "else, or preempted)")
        return None

    async def runner_alive(self, session: Session, status: dict) -> bool:
        """The runner lives as long as its job (the batch shell waits for it); a pid on a
        compute node means nothing on the login node. A job requeued by Slurm (preempted)
        counts as alive: it starts the runner again."""
        state = await self.job_state(session)
        alive = state is not None and state.active
        if not alive:  # it may have written its final status since the (cached) probe
            self._probes.pop(session.id, None)
        return alive

    async def training_alive(self, session: Session, status: dict) -> bool:
        return await self.runner_alive(session, status)

    async def lost_detail(self, session: Session, status: dict) -> str:
        return await self.gone_detail(session)

    def healing_nodes(self, session: Session, answer: dict):
        """A multi-node job's nodes, for healing (node_healing.py)."""
        from ..remote.nodes import node_count

        status = answer.get("status") or {}
        if node_count(status) < 2:
            return None
        from .node_healing import SlurmNodes

        return SlurmNodes(self, session, status, self.job_id(session))

    def heals_nodes(self, session: Session) -> bool:
        """A multi-node job is watched (app/watching.py) so a lost node ends it promptly."""
        from ...runner.nodes import NodeCountError, several

        try:
            return several(job_options(session).get("nodes"))
        except NodeCountError:
            return False

    # -- stopping -----------------------------------------------------------------------

    async def stop(self, session: Session, status: dict, *, force: bool) -> None:
        """Graceful: INT to the batch shell alone, which hands it to the runner as TERM (the
        training gets SIGTERM, its grace, then SIGKILL); when the job outlives that, scancel
        (Slurm's TERM then reaches every process of the job). force: the runner's immediate
        stop (USR2 -> SIGUSR1), then scancel at once."""
        job = self.job_id(session)
        if not job:
            return
        await self.transport.put(b"", f"{self.remote_dir(session)}/{STOP_FILE}", mode=0o644)
        await self.scancel("--batch", f"--signal={'USR2' if force else 'INT'}", job)
        self._probes.pop(session.id, None)
        deadline = time.monotonic() + (2.0 if force else session.grace_seconds + 10)
        while time.monotonic() < deadline:
            state = await self.job_state(session)
            if state is None or not state.active:
                return
            await aio.sleep(STOP_POLL)
        await self.scancel(job)

    async def cancel_unstarted(self, session: Session) -> str | None:
        """A stop before the runner started: the job is cancelled."""
        job = self.job_id(session)
        if not job:
            return None
        await self.scancel(job)
        return f"cancelled while queued (job {job})"

    async def kill_orphan(self, session: Session, status: dict, *, force: bool) -> bool:
        if not await self.runner_alive(session, status):
            return False
        await self.scancel(self.job_id(session))
        return True


def job_options(session: Session) -> dict:
    """The launch's job options (--nodes, --time ...) as the session's spec.json holds them."""
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return {}
    return spec.get("backend_options") or {}
