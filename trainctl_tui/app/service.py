"""The one façade the TUI and the CLI call. Every user action is a function here."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import sys
import time
from pathlib import Path

from ..backends.base import ProviderError
from ..backends.registry import get_provider
from ..core import aio, paths
from ..core.errors import SessionNotFound, StopFailed, TrainctlError
from ..core.formatting import format_age
from ..core.models import RUNNER_STATE_TO_STATUS, Attempt, Record, Session, Status, is_secret_name
from ..core.placement import Placement
from ..store import Store, StoreWriteError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    from ..core.machines import CreateRequest

MASK = "****"
NEWEST_CHECKPOINT = "newest"  # spec resume_from understood by the runner
# A session whose runner never wrote status.json after this long is lost.
PENDING_TIMEOUT = 60.0
RECENT_ENDED_SHOWN = 20
# What a refresh reads. Interrupted ones too: an auto-resume of theirs may have died (cheap).
REFRESHED = [s for s in Status if s.active or s is Status.INTERRUPTED]
MAX_GRACE_SECONDS = 86400.0  # a day; a stop must end
FORCE_STOP_WAIT = 5.0  # for the runner to act on a force stop before trainctl kills itself
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SessionOverview(Record):
    """A session with what its log says: the row of the sessions table and of `--once`."""

    session: Session
    metrics: object | None = None  # monitor.metrics.MetricSet of the log's tail
    alerts: list = []  # monitor.alerts.Alert that hold now
    newest_checkpoint: object | None = None  # checkpoints.scan.CheckpointEntry (active ones)

    def last(self, name: str) -> float | None:
        series = self.metrics.series.get(name) if self.metrics else None
        return series.ys[-1] if series is not None and len(series) else None

    @property
    def step(self) -> float | None:
        if not self.metrics:
            return None
        steps = [s.xs[-1] for s in self.metrics.series.values() if len(s)]
        return max(steps) if steps else None

    def trend(self, name: str = "loss", points: int = 12) -> list[float]:
        """The series as `points` bucket means: the shape of the curve for a sparkline."""
        series = self.metrics.series.get(name) if self.metrics else None
        if series is None or not len(series):
            return []
        ys = series.ys
        size = max(1, -(-len(ys) // points))
        means = []
        for start in range(0, len(ys), size):
            bucket = ys[start:start + size]
            means.append(sum(bucket) / len(bucket))  # nan/inf propagate: the spark shows '!'
        return means


class LaunchRequest(Record):
    """What the launch form / `trainctl launch` asks for; None means "use the config default"."""

    command: list[str]
    cwd: str | None = None
    name: str | None = None
    provider: str = "local"
    checkpoint_dir: str | None = None
    resume_template: str | None = None
    max_restarts: int | None = None
    grace_seconds: float | None = None
    keep_last_n: int | None = None
    env: dict[str, str] = {}
    # A provider with no machine yet (its backend says which): the machine to create.
    machine: CreateRequest | None = None
    s3_prefix: str | None = None  # checkpoints sync to PREFIX/<session>/checkpoints/


class Service:
    def __init__(self, store: Store | None = None, config=None):
        self._store = store
        self._config = config
        # Why changes could not be saved (disk full, read-only home), and the sessions as
        # refreshed in memory meanwhile: reading and stopping go on without the store.
        self.unsaved: str | None = None
        self._unsaved_sessions: dict[str, Session] = {}
        self._folders_seen: tuple | None = None  # restore_session_folders' last look

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(paths.db_path())
        return self._store

    @property
    def config(self):
        # Loaded on first use: pydantic is slow to import and listing sessions never needs it.
        if self._config is None:
            from ..config.loader import load_config

            self._config = load_config()
        return self._config

    def settings(self, *sections: str):
        """The config sections `sections`, validated: from the loaded config, else from the
        cache of validated sections (config_cache.py), which spares pydantic's import."""
        if self._config is not None:
            return self._config
        from ..config.cache import validated_sections

        return validated_sections(sections)

    def is_local(self, ref: str | None = None) -> bool:
        """Whether an action on session `ref`, or a refresh of every active session, stays on
        this machine: then nothing it does waits on a network (the CLI skips asyncio)."""
        if ref is not None:
            sessions = [self._resolve(ref)]
        else:
            self.restore_session_folders()  # restored sessions are refreshed too
            sessions = self.store.list(statuses=REFRESHED)
        return not any(get_provider(s.provider).remote for s in sessions)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def _save(self, session: Session, attempts=None, **fields) -> bool:
        """store.update; a store that cannot be written is noted (self.unsaved) and the
        session kept in memory, so that a refresh or a stop on a full disk goes on."""
        try:
            return self.store.update(session.id, attempts, **fields)
        except StoreWriteError as exc:
            self.unsaved = str(exc)
            fields.pop("expect", None)
            for name, value in fields.items():
                setattr(session, name, value)
            if attempts is not None:
                session.attempts = attempts
            self._unsaved_sessions[session.id] = session
            return True

    def _stored(self, session_id: str) -> Session | None:
        """The session as last known: the store's, or the one refreshed in memory."""
        return self._unsaved_sessions.get(session_id) or self.store.get(session_id)

    # -- launch -------------------------------------------------------------------------

    async def launch(self, request: LaunchRequest, progress=None) -> Session:
        """Start a run. A cloud provider without a machine id ("aws", "aws:TEMPLATE",
        "runpod") first creates the machine; if the run then fails to start, the error says
        the machine is still there and how to terminate it."""
        create = new_machine_request(request)
        if create is None:
            return await self._launch(request)
        build_session(request, self.config.defaults, remote=True)  # refuse bad input first
        create.name = create.name or f"trainctl-{request.name or default_name(request.command)}"
        instance = await self.create_instance(create, progress)
        if progress:
            progress(f"{instance.provider} {instance.id} is up; starting the run")
        try:
            return await self._launch(request.replace(provider=f"{create.provider}:"
                                                                f"{instance.id}"))
        except TrainctlError as exc:
            raise TrainctlError(f"{exc} (the {create.provider} machine {instance.id} is still "
                                f"running: trainctl instance terminate {instance.id})") from None

    async def _launch(self, request: LaunchRequest) -> Session:
        defaults = self.config.defaults
        # An unknown provider or host is refused before anything is stored.
        provider = get_provider(request.provider)
        if provider.remote:
            provider.target  # noqa: B018 - resolving the host raises for an unknown one
            validate = getattr(provider, "validate", None)  # aws: the instance runs
            if validate is not None:
                await validate()
        session = build_session(request, defaults, remote=provider.remote)
        if provider.remote:
            session.host = Placement.parse(request.provider).target
        secret_env = {k: v for k, v in request.env.items() if is_secret_name(k)}

        def prepare(s: Session) -> None:
            s.session_dir = str(paths.sessions_dir() / s.id)

        self.store.insert(session, prepare=prepare)
        write_session_files(session, defaults, secret_env, local=not provider.remote)
        if request.s3_prefix:
            spec_path = Path(session.session_dir) / "spec.json"
            spec = json.loads(spec_path.read_text())
            spec["s3_checkpoint_uri"] = f"{request.s3_prefix.rstrip('/')}/{session.id}/checkpoints/"
            atomic_write_text(spec_path, json.dumps(spec, indent=2))
        await self._start_runner(session)
        return session

    async def _start_runner(self, session: Session) -> None:
        provider = get_provider(session.provider)
        try:
            await provider.launch(session)
        except TrainctlError as exc:
            self.store.update(session.id, status=Status.FAILED, detail=str(exc), ended=time.time())
            raise
        await self.refresh_session(session)

    # -- reading ------------------------------------------------------------------------

    async def refresh_session(self, session: Session) -> Session:
        """Bring an active session up to date from its runner's status.json."""
        from . import recovery

        if recovery.running(session.session_dir) is not None:
            return session  # an auto-resume (its own process) is moving it: leave it be
        if session.status is Status.INTERRUPTED:
            return self._notice_dead_recovery(session)
        if not session.status.active:
            return session
        provider = get_provider(session.provider)
        changes: dict = {}
        attempts = None
        try:
            status = await provider.read_status(session)
            if status is not None and tells_of_previous_attempt(session, status):
                # A resume is starting its runner; until that writes, the file is the last
                # attempt's end. Applying it would end the session before it starts again.
                if time.time() - (session.heartbeat or session.created) < PENDING_TIMEOUT:
                    return session
                status = None
            if status is not None:
                changes, attempts = changes_from_status(session, status)
                new_status = changes.get("status", session.status)
                if new_status.active and not await provider.runner_alive(session, status):
                    # The runner may have written its final status and exited since we read
                    # it: only a runner that died without one is lost.
                    final = await provider.read_status(session)
                    if final and not RUNNER_STATE_TO_STATUS.get(final.get("state"),
                                                                 Status.RUNNING).active:
                        status = final
                        changes, attempts = changes_from_status(session, final)
                    else:
                        changes.update(status=Status.LOST,
                                       detail=await self._lost_detail(session, status),
                                       ended=status.get("heartbeat") or time.time())
                elif new_status.active:
                    changes = self._unresponsive_changes(
                        session, changes, await _call(provider, "unresponsive", session, status))
            else:
                problem = await _call(provider, "status_problem", session)
                if problem:
                    changes = await self._unreadable_status_changes(session, provider, problem)
        except ProviderError as exc:
            # The host did not answer: the run may well go on there. Say so; check again later.
            status = None
            changes = {"status": Status.UNREACHABLE, "detail": str(exc)}
        if status is None and not changes and \
                time.time() - (session.heartbeat or session.created) > PENDING_TIMEOUT:
            changes = {"status": Status.LOST,
                       "detail": f"runner never started (see {session.session_dir}/runner.log)"}
        if attempts is not None and session.provider.startswith("runpod:"):
            from ..backends.runpod.recovery import with_reasons

            attempts = with_reasons(session, attempts)  # in the same write as the attempts
        if changes or attempts is not None:
            # Only over what we read: meanwhile an auto-resume (another process) may have
            # moved the session on, and a slow read (an unreachable host) must not undo that.
            if not self._save(session, attempts=attempts, **changes,
                              expect={"status": session.status, "provider": session.provider}):
                return self.store.get(session.id) or session
            for key, value in changes.items():
                setattr(session, key, value)
            if attempts is not None:
                session.attempts = attempts
        if "status" in changes and session.provider.startswith("aws:"):
            from ..backends.aws.recovery import (
                after_status_change,  # resume elsewhere, drop secrets
            )

            await after_status_change(self, session)
        if session.provider.startswith("runpod:"):  # spot interruption, auto-resume
            from ..backends.runpod.recovery import after_runpod_refresh

            session = await after_runpod_refresh(self, session)
        return session

    def _notice_dead_recovery(self, session: Session) -> Session:
        """A resume (auto or trainctl resume) that was killed before it finished
        (recovery.py) says so, once."""
        from . import recovery

        marker = recovery.died(session.session_dir)
        if marker is not None:
            pid = marker.get("pid")
            if marker.get("by") == recovery.BY_RESUME:
                what = f"trainctl resume stopped before it finished (pid {pid} is gone)"
            else:
                what = (f"auto-resume stopped before it finished (recover pid {pid} is gone, "
                        f"see {marker.get('log')})")
            detail = (f"{marker.get('reason') or 'interrupted'}; {what}: "
                      f"trainctl resume {session.id}")
            self._save(session, detail=detail)
            session.detail = detail
        return session

    async def recover(self, session_id: str, lock_fd: int) -> Session | None:
        """`trainctl _recover`: the detached half of an auto-resume that a refresh started
        (recovery.py), with the lock it handed over (`lock_fd`). Frees the lock when done."""
        from . import recovery

        session = self.store.get(session_id)
        if session is None:
            return None
        lock = recovery.adopt(session.session_dir, lock_fd)
        marker = lock.marker() or {}
        reason = marker.get("reason") or "interrupted"
        recovery.log.info("session %s: %s; resuming (recover pid %s)", session.id, reason,
                          os.getpid())
        try:
            if session.provider.startswith("aws:"):
                from ..backends.aws.recovery import resume_detached

                await resume_detached(self, session, reason)
            elif session.provider.startswith("runpod:"):
                from ..backends.runpod.recovery import resume_detached

                await resume_detached(self, session, reason)
        except Exception as exc:  # a bug: the session must not say "resuming" forever
            self.store.update(session_id, detail=f"{reason}; auto-resume failed: {exc!r} "
                                                 f"(see {marker.get('log')})")
            raise
        finally:
            lock.release()
        final = self.store.get(session_id)
        if final is not None:
            recovery.log.info("session %s is %s: %s", final.id, final.status, final.detail)
        return final

    @staticmethod
    def _unresponsive_changes(session: Session, changes: dict, why: str | None) -> dict:
        """A live runner without a heartbeat is shown as unresponsive, not running."""
        if why is None:
            return changes
        changes = {**changes, "status": Status.UNRESPONSIVE, "detail": why}
        return {k: v for k, v in changes.items() if getattr(session, k) != v}

    async def _unreadable_status_changes(self, session: Session, provider,
                                         problem: str) -> dict:
        """status.json exists but cannot be used: say so; lost once nothing of it is alive."""
        runners, trainings = await provider.alive_processes(session)
        what = f"status.json is unreadable: {problem}"
        if not runners and not trainings:
            return {"status": Status.LOST, "detail": f"{what}; no process of it is alive",
                    "ended": time.time()}
        alive = ", ".join([f"runner pid {p}" for p in runners] +
                          [f"training pid {p}" for p in trainings])
        return {"status": Status.UNRESPONSIVE, "detail": f"{what}; alive: {alive}"}

    async def _lost_detail(self, session: Session, status: dict) -> str:
        beat = status.get("heartbeat")
        ago = f"; last heartbeat {format_age(time.time() - beat)} ago" if beat else ""
        detail = f"runner pid {status.get('runner_pid')} is gone{ago}"
        provider = get_provider(session.provider)
        if await provider.training_alive(session, status):
            detail += (f"; training pid {status['child_pid']} still running "
                       f"(trainctl stop {session.id} ends it)")
        return detail

    async def refresh(self) -> None:
        active = self.store.list(statuses=REFRESHED)
        await aio.gather(*(self.refresh_session(s) for s in active))

    def restore_session_folders(self) -> list[str]:
        """The session folders are the record: those the store does not know (it was lost,
        truncated or replaced) are added back, running ones included. Returns their ids."""
        root = paths.sessions_dir()
        try:
            # Nothing new to look at when neither the folder nor the store changed since.
            seen = (root.stat().st_mtime_ns, self.store.count())
            if seen == self._folders_seen:
                return []
            names = {name for name in os.listdir(root) if not name.startswith(".")}
        except OSError:
            return []
        restored = []
        for name in sorted(names - self.store.ids()):
            session = session_from_folder(root / name)
            if session is None:
                continue
            try:
                if self.store.restore(session):
                    restored.append(session.id)
            except StoreWriteError as exc:
                self.unsaved = str(exc)
                return restored
        self._folders_seen = (seen[0], self.store.count())
        return restored

    async def list_sessions(self, *, show_all: bool = False) -> list[Session]:
        """Active sessions and the most recent ended ones (all of them with show_all)."""
        self.restore_session_folders()
        await self.refresh()
        if show_all:
            sessions = self.store.list(with_attempts=True)
        else:
            # Two small queries rather than the whole store: a long-lived store holds thousands.
            active = self.store.list(statuses=[s for s in Status if s.active],
                                     with_attempts=True)
            ended = self.store.list(statuses=[s for s in Status if not s.active],
                                    limit=RECENT_ENDED_SHOWN, with_attempts=True)
            sessions = sorted(active + ended, key=lambda s: s.created, reverse=True)
        return [self._unsaved_sessions.get(s.id, s) for s in sessions]

    def _resolve(self, ref: str) -> Session:
        """store.resolve; a session the store lost is looked for in the session folders."""
        try:
            return self.store.resolve(ref)
        except SessionNotFound:
            if not self.restore_session_folders():
                raise
            return self.store.resolve(ref)

    async def get(self, ref: str) -> Session:
        session = self._resolve(ref)
        await self.refresh_session(self._unsaved_sessions.get(session.id, session))
        return self._stored(session.id)  # type: ignore[return-value]

    async def overview(self, *, show_all: bool = False,
                       metrics_limit: int = 50) -> list[SessionOverview]:
        """Sessions with their latest metrics and the alerts that hold for them now.

        Metrics come from the tail of each log (cached by size and mtime), for the active
        sessions and the `metrics_limit` newest others.
        """
        from ..monitor.alerts import evaluate
        from ..monitor.session_monitor import metrics_summary

        sessions = await self.list_sessions(show_all=show_all)
        settings = self.settings("metrics", "alerts")
        patterns, alerts_config = settings.metrics.patterns, settings.alerts
        rows, now = [], time.time()
        for index, session in enumerate(sessions):
            log = self.log_path(session)
            wanted = session.status.active or index < metrics_limit
            summary = metrics_summary(log, patterns) if wanted else None
            metrics = summary.metrics if summary else None
            try:
                log_mtime = log.stat().st_mtime
            except OSError:
                log_mtime = None
            # nan or divergence in an earlier attempt must not alert again after a resume.
            alerts = evaluate(session, summary.attempt if summary else None,
                              log_mtime=log_mtime, now=now,
                              divergence_factor=alerts_config.divergence_factor,
                              stall_seconds=alerts_config.stall_seconds)
            newest = await self._newest_checkpoint(session) if session.status.active else None
            rows.append(SessionOverview(session, metrics, alerts, newest))
        return rows

    async def _newest_checkpoint(self, session: Session):
        """The newest finished checkpoint of a running session (names and stat only), after
        applying its keep_last_n."""
        from ..checkpoints.scan import newest_finished, scan_checkpoints

        provider = get_provider(session.provider)
        if session.checkpoint_dir and provider.remote:
            return await provider.newest_checkpoint(session)
        if not session.checkpoint_dir or not Path(session.checkpoint_dir).is_dir():
            return None
        entries = scan_checkpoints(session.checkpoint_dir, settle_seconds=0)
        finished = [e for e in entries if not e.writing]
        if session.keep_last_n and len(finished) > session.keep_last_n:
            try:
                await self.auto_prune(session)
            except (TrainctlError, OSError, ValueError):
                pass  # pruning is housekeeping: it must never break a refresh
        return newest_finished(entries)

    def new_alerts(self, rows: list[SessionOverview]) -> list:
        """The alerts among `rows` not announced before (remembered in the store)."""
        fired = self.store.fired_alerts()
        fresh = [a for row in rows for a in row.alerts if a.key not in fired]
        self.store.mark_alerts_fired(a.key for a in fresh)
        return fresh

    # -- hosts ----------------------------------------------------------------------------

    async def hosts(self) -> list:
        """Every configured SSH host: reachability, load, GPUs, sessions running there."""
        from ..backends.remote.transport import resolve_target
        from ..backends.ssh.provider import probe_host

        hosts = self.config.ssh.hosts
        infos = await aio.gather(*(probe_host(resolve_target(name, hosts))
                                       for name in sorted(hosts)))
        active = self.store.list(statuses=[s for s in Status if s.active])
        for info in infos:
            info.sessions = [s.id for s in active if s.host == info.name]
        return list(infos)

    def host_names(self) -> list[str]:
        """The SSH hosts of the config, sorted."""
        return sorted(self.config.ssh.hosts)

    def host_shell(self, name: str) -> list[str]:
        """The interactive command that opens a shell on configured host `name`."""
        from ..backends.remote.transport import resolve_target, ssh_command

        return ssh_command(resolve_target(name, self.config.ssh.hosts))

    def machine_shell(self, instance, has=None) -> list[str]:
        """The interactive command that opens a shell on a rented machine: what its backend
        says (SSM for EC2 where it can), else ssh to where its provider runs the runner."""
        import shutil

        from ..backends.registry import declaration
        from ..backends.remote.transport import ssh_command

        if not instance.billing:
            raise TrainctlError(f"{instance.id} is {instance.state}: start it first (u)")
        argv = declaration(instance.provider).shell_command(self, instance, has or shutil.which)
        return argv or ssh_command(get_provider(f"{instance.provider}:{instance.id}").target)

    @staticmethod
    def shell_failure(argv: list[str], code: int, name: str) -> str | None:
        """Why an interactive shell ended, when it was the ssh client's own failure."""
        if code == 255 and argv[0] == "ssh":
            return f"ssh {name}: could not connect (exit 255)"
        return None

    def log_mirror(self, url: str):
        """A local copy of the remote log `url` (ssh://[user@]host[:port]/path), followed by
        offset; refused in one line for a malformed URL."""
        from ..backends.ssh.provider import mirror_for_url

        return mirror_for_url(url, self.config.ssh.hosts)

    @staticmethod
    def is_log_url(target: str) -> bool:
        return target.startswith("ssh://")

    async def mirror_whole_log(self, mirror) -> None:
        """Bring the local copy up to the remote log's end (the mirror copies a chunk a call;
        a copy made by an earlier `watch` or `metrics` only grows by what was appended)."""
        from ..backends.ssh.provider import LOG_CHUNK

        while await mirror.sync() >= LOG_CHUNK:
            pass

    def launch_places(self):
        """The providers the launch form offers (Place: provider, what it means, spot)."""
        from .machines import launch_places

        return launch_places(self.config, self.clouds())

    def select_choices(self, provider: str, key: str) -> list[tuple[str, str]]:
        """(label, value) of a machine option's select (e.g. templates) on the forms."""
        from .machines import select_choices

        return select_choices(self.config, provider, key)

    # -- cloud instances ------------------------------------------------------------------

    def clouds(self, provider: str | None = None) -> list[str]:
        """The clouds to ask: the one named, else every cloud the user has set up."""
        from .fleet import cloud_for, configured_clouds

        if provider:
            return [cloud_for("", provider)]
        return configured_clouds(self.config)

    async def instances(self, *, provider: str | None = None, include_unmanaged: bool = False):
        """(instances, {cloud: error}) across the clouds set up; sessions filled in."""
        from .fleet import list_instances

        instances, errors = await list_instances(self.clouds(provider),
                                                 include_unmanaged=include_unmanaged)
        by_host = {s.host: s.id for s in self.store.list(statuses=[s for s in Status
                                                                   if s.active]) if s.host}
        for instance in instances:
            instance.session = by_host.get(instance.id, instance.session)
        return instances, errors

    async def instance(self, instance_id: str, *, provider: str | None = None):
        from ..backends.cloud import get_cloud
        from .fleet import cloud_for

        return await get_cloud(cloud_for(instance_id, provider)).get_instance(instance_id)

    async def create_instance(self, request, progress=None):
        from ..backends.cloud import get_cloud

        return await get_cloud(request.provider).create_instance(request, progress)

    async def instance_action(self, action: str, instance_id: str, *,
                              provider: str | None = None, dry_run: bool = False,
                              force: bool = False):
        """start | stop | terminate one instance; returns it as the cloud now reports it."""
        from ..backends.cloud import get_cloud
        from .fleet import cloud_for

        if action not in ("start", "stop", "terminate"):
            raise TrainctlError(f"unknown instance action '{action}' (start, stop, terminate)")
        cloud = get_cloud(cloud_for(instance_id, provider))
        method = getattr(cloud, f"{action}_instance")
        kwargs = {"dry_run": dry_run}
        if force:
            kwargs["force"] = True
        return await method(instance_id, **kwargs)

    async def prices(self, provider: str, type: str | None = None):
        from ..backends.cloud import get_cloud
        from .fleet import cloud_for

        return await get_cloud(cloud_for("", provider)).prices(type)

    # -- checkpoints ----------------------------------------------------------------------

    async def checkpoint_dir(self, target: str) -> tuple[str, Session | None]:
        """A directory given as is, or the checkpoint dir of the session `target` names."""
        if is_s3(target):  # checkpoints in S3: the prefix itself
            return target, None
        path = Path(target).expanduser()
        if path.is_dir():
            return str(path.resolve()), None
        try:
            session = await self.get(target)
        except TrainctlError:
            if os.sep in target or path.exists():
                raise TrainctlError(f"{target} is not a directory") from None
            raise TrainctlError(f"no session or directory '{target}' (see trainctl sessions)"
                                ) from None
        if not session.checkpoint_dir:
            raise TrainctlError(f"session {session.id} has no checkpoint dir (launch it with "
                                "--checkpoint-dir, or give a directory)")
        if get_provider(session.provider).remote:
            from ..backends.ssh.provider import remote_checkpoint_dir

            return remote_checkpoint_dir(session), session
        return session.checkpoint_dir, session

    async def checkpoints(self, target: str, *, inspect: bool = True):
        """(directory, session or None, scan result, rows) for `target`."""
        from ..checkpoints.catalog import list_checkpoints

        if is_s3(target):
            from ..backends.aws import s3_checkpoints

            return await s3_checkpoints.checkpoints_async(target, inspect=inspect)
        directory, session = await self.checkpoint_dir(target)
        if session is not None and get_provider(session.provider).remote:
            from ..checkpoints.scan import ScanResult

            rows = await get_provider(session.provider).list_checkpoints(session)
            return directory, session, ScanResult(directory, [r.entry for r in rows]), rows
        entries, rows = list_checkpoints(directory, inspect=inspect)
        return directory, session, entries, rows

    async def pull(self, ref: str, *, checkpoint: str | None = None, to: str | None = None,
                   progress=None, note=None) -> tuple[str, Path, int]:
        """Download a remote session's checkpoint (the newest sound one by default);
        an interrupted pull continues where it stopped. Returns (remote, local, bytes).
        `ref` may also be an s3:// checkpoint or prefix (see pull_s3)."""
        if is_s3(ref):
            return await self.pull_s3(ref, to=to, progress=progress, note=note)
        session = await self.get(ref)
        if is_s3(session.checkpoint_dir):
            uri = session.checkpoint_dir.rstrip("/") + "/" + (checkpoint or "")
            return await self.pull_s3(uri, to=to or f"{session.name}-{session.id}",
                                      progress=progress, note=note)
        provider = get_provider(session.provider)
        if not provider.remote:
            where = session.checkpoint_dir or "its working directory"
            raise TrainctlError(f"session {session.id} runs on this machine: its checkpoints "
                                f"are already here ({where})")
        if not session.checkpoint_dir:
            raise TrainctlError(f"session {session.id} has no checkpoint dir to pull from")
        from ..backends.ssh.provider import remote_checkpoint_dir

        folder = remote_checkpoint_dir(session)
        rows = await provider.list_checkpoints(session)
        if checkpoint:
            row = next((r for r in rows if checkpoint in (r.entry.path, r.entry.name)), None)
            if row is None:
                raise TrainctlError(f"no checkpoint '{checkpoint}' in {folder} "
                                    f"on {session.host} (see trainctl checkpoints {session.id})")
            if row.entry.writing:
                raise TrainctlError(f"{row.entry.name} is still being written; try again soon")
        else:
            from ..checkpoints.catalog import newest_usable

            row = newest_usable(rows)
            if row is None:
                raise TrainctlError(f"no finished, sound checkpoint in {folder} "
                                    f"on {session.host} yet")
        local = Path(to or f"{session.name}-{session.id}").expanduser().resolve() / row.entry.name
        size = await provider.download(row.entry.path, local, kind=row.entry.kind,
                                       progress=progress)
        return row.entry.path, local, size

    async def pull_s3(self, uri: str, *, to: str | None = None, progress=None,
                      note=None) -> tuple[str, Path, int]:
        """An S3 checkpoint (object or folder; the newest sound one under a prefix) into `to`,
        resumable; `note(text)` hears about restarts (the object changed in S3)."""
        import asyncio

        from ..backends.aws import s3_checkpoints

        return await asyncio.to_thread(s3_checkpoints.pull, uri, to, progress=progress,
                                       note=note)

    def checkpoint_info(self, path: str, *, deep: bool = False):
        from ..checkpoints.inspect import inspect_checkpoint

        if not path.strip():  # Path("") is the current directory: never scan that by mistake
            raise TrainctlError("checkpoint info needs the path of a checkpoint (got an empty "
                                "one)")
        if is_s3(path):  # read through ranged GETs (--deep reads it all)
            from ..backends.aws import s3_checkpoints

            return s3_checkpoints.inspect_uri(path, deep=deep)
        try:
            return inspect_checkpoint(Path(path).expanduser(), deep=deep)
        except FileNotFoundError:
            raise TrainctlError(f"no such checkpoint: {shorten(path)}") from None
        except OSError as exc:  # a name too long, a permission
            raise TrainctlError(f"cannot read checkpoint {shorten(path)}: "
                                f"{exc.strerror or exc}") from None

    async def validate_checkpoint(self, target: str, path: str):
        """A deep check of one checkpoint of `target` (a session or directory), done where
        the checkpoint is: here, or on the session's SSH host."""
        _, session = await self.checkpoint_dir(target)
        if session is not None and get_provider(session.provider).remote:
            return await get_provider(session.provider).inspect_checkpoint(path, deep=True)
        return self.checkpoint_info(path, deep=True)

    def protected_checkpoints(self) -> dict[str, str]:
        """Checkpoints a running session was resumed from: never pruned or deleted."""
        protected = {}
        for session in self.store.list(statuses=[s for s in Status if s.active],
                                       with_attempts=True):
            for attempt in session.attempts[-1:]:
                if attempt.resumed_from:
                    protected[attempt.resumed_from] = (
                        f"protected: session {session.id} resumed from it")
        return protected

    async def plan_prune(self, target: str, *, keep_last: int, keep_best: str | None = None,
                         mode: str | None = None):
        """What a prune would do, without touching anything."""
        from ..checkpoints.catalog import validity_and_metrics
        from ..checkpoints.retention import plan_prune

        if is_s3(target):
            import asyncio

            from ..backends.aws import s3_checkpoints

            return await asyncio.to_thread(
                s3_checkpoints.plan_prune_s3, target, keep_last=keep_last, keep_best=keep_best,
                mode=mode, protected=self.protected_checkpoints())
        directory, session, entries, rows = await self.checkpoints(target)
        if session is not None and get_provider(session.provider).remote:
            raise TrainctlError(f"pruning checkpoints on an SSH host is not supported yet; "
                                f"prune on {session.host} with trainctl there, or pull first")
        validity, metrics = validity_and_metrics(rows)
        try:
            return plan_prune(entries, keep_last=keep_last, keep_best=keep_best, mode=mode,
                              validity=validity, metrics=metrics,
                              protected=self.protected_checkpoints(), directory=directory)
        except ValueError as exc:
            raise TrainctlError(str(exc)) from None

    def apply_prune(self, plan, *, purge: bool = False):
        """Carry out a plan: to a new trash folder under the state dir, or deleted (purge)."""
        from ..checkpoints.retention import apply_prune

        if is_s3(plan.directory):  # no trash in S3: purge required
            from ..backends.aws import s3_checkpoints

            return s3_checkpoints.apply_prune(plan, purge=purge)
        trash = None if purge else str(paths.state_dir() / "trash" /
                                       time.strftime("%Y%m%d-%H%M%S"))
        return apply_prune(plan, trash_dir=trash, purge=purge)

    async def delete_checkpoint(self, target: str, path: str, *, purge: bool = False):
        """Remove one checkpoint, unless retention would always keep it (newest valid,
        being written, protected)."""
        from ..checkpoints.retention import Decision, PrunePlan

        plan = await self.plan_prune(target, keep_last=1)
        wanted = os.path.realpath(path)
        for decision in plan.decisions:
            if os.path.realpath(decision.entry.path) != wanted:
                continue
            if decision.keep and not decision.reason.startswith("in last"):
                raise TrainctlError(f"refusing to delete {decision.entry.name}: "
                                    f"{decision.reason}")
            single = PrunePlan([Decision(decision.entry, False, "deleted by hand")],
                               directory=plan.directory)
            return self.apply_prune(single, purge=purge)
        raise TrainctlError(f"{path} is not a checkpoint in {plan.directory}")

    async def auto_prune(self, session: Session) -> list[str]:
        """Apply the session's keep_last_n once it has more finished checkpoints than that."""
        if not session.keep_last_n or not session.checkpoint_dir:
            return []
        if not Path(session.checkpoint_dir).is_dir():
            return []
        plan = await self.plan_prune(session.checkpoint_dir, keep_last=session.keep_last_n)
        return list(self.apply_prune(plan)) if plan.delete else []

    def log_path(self, session: Session) -> Path:
        return Path(session.session_dir) / "train.log"

    # -- actions ------------------------------------------------------------------------

    async def stop(self, ref: str, *, force: bool = False, wait: bool = True,
                   timeout: float | None = None) -> Session:
        """Graceful stop (SIGTERM, grace, SIGKILL), or an immediate kill with force. A stop
        that leaves anything of the session alive raises StopFailed naming it."""
        session = await self.get(ref)
        provider = get_provider(session.provider)
        status = await provider.read_status(session)
        if session.status is Status.LOST and status:
            if await provider.kill_orphan(session, status, force=force):
                detail = (f"runner pid {status.get('runner_pid')} is gone; its training "
                          f"(pid {status.get('child_pid')}) was stopped by trainctl stop")
                self._save(session, detail=detail)
                session.detail = detail
                return await self._check_nothing_left(await self.get(session.id), provider)
        if status is None or not session.status.active:
            return await self._stop_without_status(session, provider, force=force)
        if await _call(provider, "runner_frozen", status):
            return await self._stop_frozen(session, provider, force=force)
        await provider.stop(session, status, force=force)
        self._save(session, status=Status.STOPPING)
        if not wait:
            return await self.get(session.id)
        limit = timeout if timeout is not None else session.grace_seconds + 15
        if force and hasattr(provider, "kill_all"):
            limit = min(limit, FORCE_STOP_WAIT)  # then trainctl kills without the runner
        session = await self._wait_for(session.id, lambda s: not s.status.active, limit)
        if session.status.active and force and hasattr(provider, "kill_all"):
            return await self._kill_all(session, provider, f"force-stopped by trainctl: the "
                                        f"runner did not stop within {limit:g}s")
        if session.status.active:
            raise StopFailed(f"session {session.id} did not stop within {limit:g}s: "
                             f"{await self._what_is_alive(session, provider, status)}; "
                             f"trainctl stop --force {session.id} kills it")
        return await self._check_nothing_left(session, provider)

    async def _wait_for(self, session_id: str, done, limit: float) -> Session:
        """The session, refreshed until `done(session)` holds or `limit` seconds passed."""
        deadline = time.monotonic() + limit
        while True:
            session = await self.get(session_id)
            if done(session) or time.monotonic() >= deadline:
                return session
            await aio.sleep(0.2)

    async def _stop_frozen(self, session: Session, provider, *, force: bool) -> Session:
        """A runner stopped by a signal cannot act on a stop: --force kills everything
        without it; a graceful stop says so at once instead of waiting for nothing."""
        if force:
            return await self._kill_all(session, provider, "force-stopped by trainctl: the "
                                        "runner was frozen (stopped by a signal)")
        status = await provider.read_status(session) or {}
        raise StopFailed(f"session {session.id} cannot stop gracefully: "
                         f"{await self._what_is_alive(session, provider, status)}; "
                         f"trainctl stop --force {session.id} kills it")

    async def _stop_without_status(self, session: Session, provider, *,
                                   force: bool) -> Session:
        """No usable status.json (unreadable, or the session has ended): what is still
        alive of the session is found and stopped all the same."""
        if not hasattr(provider, "alive_processes"):
            raise TrainctlError(f"session {session.id} is not running (status: "
                                f"{session.status})")
        runners, trainings = await provider.alive_processes(session)
        if not runners and not trainings:
            raise TrainctlError(f"session {session.id} is not running (status: "
                                f"{session.status})")
        problem = await provider.status_problem(session)
        why = f"status.json was unreadable: {problem}" if problem else \
            f"status was {session.status}"
        if not force:
            if await provider.any_frozen(runners):  # as with a readable status: --force only
                return await self._stop_frozen(session, provider, force=False)
            await provider.stop_gracefully(session, runners)
            deadline = time.monotonic() + session.grace_seconds + 15
            while time.monotonic() < deadline and any(await provider.alive_processes(session)):
                await aio.sleep(0.2)
        return await self._kill_all(session, provider, f"stopped by trainctl stop ({why})")

    async def _kill_all(self, session: Session, provider, reason: str) -> Session:
        survivors = await provider.kill_all(session, reason)
        if survivors:
            raise StopFailed(f"session {session.id}: still alive after SIGKILL: "
                             f"{describe_pids(survivors)}")
        return await self.get(session.id)

    async def _check_nothing_left(self, session: Session, provider) -> Session:
        """The session ended: anything of it still alive (it left the process group and the
        runner could not kill it) is an error that names it."""
        if not hasattr(provider, "alive_processes"):  # a remote runner: its own record
            status = await provider.read_status(session) or {}
            if status.get("survivors"):
                raise StopFailed(f"session {session.id} is {session.status}, but still alive "
                                 f"on {session.host}: pids "
                                 f"{', '.join(map(str, status['survivors']))}")
            return session
        runners, trainings = await provider.alive_processes(session)
        if trainings:
            raise StopFailed(f"session {session.id} is {session.status}, but still alive: "
                             f"{describe_pids(trainings)}")
        return session

    async def _what_is_alive(self, session: Session, provider, status: dict) -> str:
        if not hasattr(provider, "alive_processes"):
            return f"it is still {session.status}"
        runners, trainings = await provider.alive_processes(session)
        parts = [f"runner {describe_pids(runners)}"] if runners else []
        if trainings:
            parts.append(f"training {describe_pids(trainings)}")
        return "still alive: " + "; ".join(parts) if parts else f"it is still {session.status}"

    async def kill(self, ref: str) -> Session:
        """SIGKILL the training now, without the grace period."""
        return await self.stop(ref, force=True, wait=False)

    async def resume(self, ref: str, *, from_checkpoint: str | None = None,
                     scratch: bool = False, trust: bool = False, note=None) -> Session:
        """Start a new attempt of an ended session, from a checkpoint (the newest sound one by
        default, none with `scratch`). `trust` accepts the unknown pickle globals of the
        checkpoint named by `from_checkpoint` for this session from now on; `note(text)`
        hears what was trusted."""
        session = await self.get(ref)
        if trust and not from_checkpoint:
            raise TrainctlError("--trust needs --from PATH: trust is given to one checkpoint "
                                "you name, never to whichever is newest")
        if session.status.active:
            raise TrainctlError(
                f"session {session.id} is still {session.status}; stop it first "
                f"(trainctl stop {session.id})"
            )
        if session.status is Status.INTERRUPTED:
            if trust:
                raise TrainctlError(f"session {session.id} was interrupted: its machine is "
                                    "gone; --trust works where the checkpoints are (resume "
                                    "it first, or pull the checkpoint and inspect it)")
            return await self._resume_interrupted(session, from_checkpoint, scratch)
        await self._refuse_if_training_alive(session)
        skipped, trusted = [], []
        if scratch:
            checkpoint = None
        elif get_provider(session.provider).remote and not from_checkpoint:
            # The checkpoints are on the host: the runner there picks the newest at start.
            checkpoint = NEWEST_CHECKPOINT
        elif get_provider(session.provider).remote:
            checkpoint, trusted = await self._remote_named_checkpoint(session, from_checkpoint,
                                                                      trust)
        else:
            checkpoint, skipped, trusted = resolve_resume_checkpoint(session, from_checkpoint,
                                                                     trust=trust)
        spec_path = Path(session.session_dir) / "spec.json"
        spec = read_spec(session)
        spec["resume_from"] = checkpoint
        spec["resume_skipped"] = skipped
        if trusted:
            spec["trusted_globals"] = sorted(set(spec.get("trusted_globals") or ()) | set(trusted))
            if note:
                note(f"trusting {checkpoint}: its unknown global{'s' if len(trusted) > 1 else ''} "
                     f"{', '.join(trusted)} may run code when it is loaded; session {session.id} "
                     "accepts them in every checkpoint from now on (restarts too)")
        atomic_write_text(spec_path, json.dumps(spec, indent=2))
        # The resume is this session's latest sign of life: the wait for its new runner
        # counts from now (see refresh_session), not from when the session was created.
        now = time.time()
        self.store.update(session.id, status=Status.PENDING, ended=None, detail=None,
                          heartbeat=now)
        session.status, session.heartbeat = Status.PENDING, now
        before = session.attempt or 0
        await self._start_runner(session)
        # Once its runner recorded the new attempt (it checks the checkpoint first), so what
        # is reported is what it resumed from.
        return await self._wait_for(
            session.id, lambda s: (s.attempt or 0) > before or not s.status.active, 10.0)

    async def _remote_named_checkpoint(self, session: Session, wanted: str, trust: bool
                                       ) -> tuple[str, list[str]]:
        """A checkpoint named for a remote resume, inspected on its host (one line if it is
        not sound), and the globals trusted with it."""
        path = wanted if posixpath.isabs(wanted) or not session.cwd else posixpath.join(
            session.cwd, wanted)
        info = await get_provider(session.provider).inspect_checkpoint(path)
        return path, judge_named_checkpoint(session, path, info, trust)

    async def _resume_interrupted(self, session: Session, from_checkpoint: str | None,
                                  scratch: bool) -> Session:
        """The cloud took the machine: resume on a new one like it (in the foreground: the
        user asked and watches), never next to an auto-resume of the same session."""
        from . import recovery

        lock = recovery.take_lock(session.session_dir, wait=2.0)
        if lock is None:
            marker = recovery.read_marker(session.session_dir) or {}
            if not marker.get("pid"):
                who = "by another trainctl"  # a refresh deciding whether to start one
            elif marker.get("by") == recovery.BY_RESUME:
                who = f"trainctl resume pid {marker['pid']}"
            else:
                who = f"recover pid {marker['pid']}, log {marker.get('log')}"
            raise TrainctlError(f"session {session.id} is being resumed already ({who}); "
                                "trainctl sessions shows when it is done")
        # This process resumes it now: refreshes elsewhere (a TUI) leave the session alone
        # until the runner on the new machine has started.
        lock.mark(recovery.marker_of(os.getpid(), session.detail or "interrupted",
                                     by=recovery.BY_RESUME))
        try:
            await self._resume_on_new_machine(session, from_checkpoint, scratch)
        finally:
            lock.release()
        return await self.get(session.id)

    async def _resume_on_new_machine(self, session: Session, from_checkpoint: str | None,
                                     scratch: bool) -> None:
        kind = session.provider.partition(":")[0]
        if kind == "aws":
            from ..backends.aws.recovery import resume_on_new_instance

            await resume_on_new_instance(self, session, scratch=scratch,
                                         from_checkpoint=from_checkpoint)
        elif kind == "runpod":
            from ..backends.runpod.recovery import resume_on_new_pod

            if from_checkpoint:
                raise TrainctlError("a pod that is gone resumes from the checkpoint that "
                                    "survived (network volume or pulled home); --from is "
                                    "not supported here")
            await resume_on_new_pod(self, session, scratch=scratch)
        else:
            raise TrainctlError(f"session {session.id} was interrupted on {session.provider}, "
                                "which cannot replace its machine")

    async def _refuse_if_training_alive(self, session: Session) -> None:
        """A lost session's training may outlive its runner: never start a second one."""
        provider = get_provider(session.provider)
        status = await provider.read_status(session)
        if status and await provider.training_alive(session, status):
            raise TrainctlError(
                f"session {session.id}'s training pid {status['child_pid']} is still running; "
                f"stop it first (trainctl stop {session.id})"
            )

    async def remove(self, ref: str) -> Session:
        """Forget a session and delete its folder. Checkpoints outside the folder are kept."""
        session = await self.get(ref)
        if session.status.active:
            raise TrainctlError(
                f"session {session.id} is {session.status}; stop it before removing it"
            )
        from . import recovery

        marker = recovery.running(session.session_dir)
        if marker is not None:
            raise TrainctlError(f"session {session.id} is being resumed (recover pid "
                                f"{marker.get('pid', '?')}); remove it once that is done")
        await self._refuse_if_training_alive(session)
        if session.provider.startswith("aws:") and (Path(session.session_dir) /
                                                    "secret_env.json").exists():
            from ..backends.aws.provider import delete_secrets

            await delete_secrets(session.id)
        # Out of sight first: a listing meanwhile must not restore it from its folder.
        folder = Path(session.session_dir)
        doomed = folder.with_name(f".{folder.name}.removing")
        try:
            folder.rename(doomed)
        except OSError:
            doomed = folder  # already gone
        try:
            self.store.delete(session.id)
        except StoreWriteError:
            if doomed != folder:
                doomed.rename(folder)
            raise
        import shutil

        shutil.rmtree(doomed, ignore_errors=True)
        return session


# -- helpers (pure, tested directly) ------------------------------------------------------


async def _call(provider, capability: str, *args):
    """An optional provider capability (local only so far); None where there is none."""
    method = getattr(provider, capability, None)
    return await method(*args) if method is not None else None


def describe_pids(pids: list[int]) -> str:
    from ..runner.supervisor import describe_pid

    return ", ".join(f"pid {describe_pid(pid)}" for pid in pids)


def build_session(request: LaunchRequest, defaults, *, remote: bool = False) -> Session:
    """Validate a launch request and turn it into a (not yet stored) session.

    Paths of a remote session are the host's: they are kept as given (relative ones are
    relative to the login directory there) and checked by the runner on the host.
    """
    command = list(request.command)
    if not command or not command[0].strip():
        raise TrainctlError("nothing to launch: give a command after --, e.g. "
                            "trainctl launch -- python train.py")
    if request.s3_prefix is not None:
        from .machines import run_option_owners

        if Placement.parse(request.provider).kind not in run_option_owners("s3_prefix"):
            raise TrainctlError("--s3-prefix is for runs on AWS (--provider aws...)")
        if not request.s3_prefix.startswith("s3://") or len(request.s3_prefix) <= 5:
            raise TrainctlError(f"the S3 prefix must look like s3://bucket/prefix, not "
                                f"'{request.s3_prefix}'")
    for key in request.env:
        if not ENV_NAME.match(key):
            raise TrainctlError(f"bad environment variable name '{key}' (use letters, digits, _)")
    if remote:
        cwd = _remote_relative(request.cwd or ".")
    else:
        cwd = Path(request.cwd or os.getcwd()).expanduser().resolve()
        if not cwd.is_dir():
            raise TrainctlError(f"working directory {cwd} does not exist")
        path_env = request.env.get("PATH", os.environ.get("PATH", ""))
        if not _command_exists(command[0], cwd, path_env):
            raise TrainctlError(f"command not found: {command[0]} (looked in {cwd} and PATH)")
    template = request.resume_template if request.resume_template is not None \
        else defaults.resume_template
    if template:
        if "{checkpoint}" not in template:
            raise TrainctlError(f"resume template '{template}' must contain {{checkpoint}}")
        try:
            shlex.split(template)
        except ValueError as exc:
            raise TrainctlError(f"resume template '{template}' does not parse: {exc}") from None
    max_restarts = request.max_restarts if request.max_restarts is not None \
        else defaults.max_restarts
    if max_restarts < 0:
        raise TrainctlError(f"max restarts must be 0 or more, not {max_restarts}")
    grace = request.grace_seconds if request.grace_seconds is not None else defaults.grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:  # nan fails this too; inf would never stop
        raise TrainctlError(f"grace seconds must be from 0 to {MAX_GRACE_SECONDS:g}, not {grace}")
    keep_last_n = request.keep_last_n if request.keep_last_n is not None \
        else defaults.keep_last_n
    if keep_last_n is not None and keep_last_n < 1:
        raise TrainctlError(f"keep last must be 1 or more, not {keep_last_n}")
    checkpoint_dir = request.checkpoint_dir or defaults.checkpoint_dir
    if checkpoint_dir and remote:
        checkpoint_dir = _remote_relative(checkpoint_dir)
    elif checkpoint_dir:
        checkpoint_dir = str((cwd / Path(checkpoint_dir).expanduser()).resolve())
    return Session(
        id="",
        name=(request.name or default_name(command)).strip(),
        provider=request.provider,
        command=command,
        cwd=str(cwd),
        session_dir="",
        env={k: (MASK if is_secret_name(k) else v) for k, v in request.env.items()},
        checkpoint_dir=checkpoint_dir,
        resume_template=template or None,
        max_restarts=max_restarts,
        grace_seconds=grace,
        keep_last_n=keep_last_n,
        created=time.time(),
    )


def _remote_relative(path: str) -> str:
    """'~/runs/x' -> 'runs/x': the runner resolves relative paths against the login dir."""
    if path in ("~", "~/"):
        return "."
    return path[2:] if path.startswith("~/") else path


def _command_exists(program: str, cwd: Path, path_env: str) -> bool:
    if os.sep in program:
        candidate = cwd / Path(program).expanduser()
        return candidate.is_file() and os.access(candidate, os.X_OK)
    import shutil  # here only, like every import the listing commands do not need

    return shutil.which(program, path=path_env) is not None


def is_s3(target: str | None) -> bool:
    """Checkpoints addressed as s3://bucket/prefix live in S3 (providers/s3_checkpoints)."""
    return (target or "")[:5].lower() == "s3://"


def new_machine_request(request: LaunchRequest) -> CreateRequest | None:
    """The machine to create before launching, or None to launch where the provider says."""
    from .machines import launch_request_machine

    return launch_request_machine(request.provider, request.machine)


def default_name(command: list[str]) -> str:
    """A short name for a run from its command: its script wherever it sits ('python -u
    train.py', 'torchrun --nproc_per_node 8 train.py', 'bash run.sh' -> 'train'/'run'), a
    python module ('python -m pkg.finetune' -> 'finetune'), else the program ('python -c
    CODE' -> 'python')."""
    words = [arg for arg in command if arg and not any(c.isspace() for c in arg)]
    for arg in words[1:]:
        name = Path(arg).name
        if name.endswith((".py", ".sh")) and not arg.startswith("-"):
            return name.rsplit(".", 1)[0]
    program = Path(command[0]).name
    if program.startswith("python"):
        if "-m" in command[1:-1]:
            return command[command.index("-m") + 1].rsplit(".", 1)[-1]
        if "-c" not in command:
            script = next((arg for arg in words[1:] if not arg.startswith("-")), None)
            if script:
                return Path(script).name
    return program


def write_session_files(session: Session, defaults, secret_env: dict[str, str], *,
                        local: bool = True) -> None:
    """The session folder: spec.json for the runner, secret_env.json (0600) for secrets.
    A remote session's provider copies them to its host."""
    folder = Path(session.session_dir)
    folder.mkdir(parents=True, mode=0o700)
    if session.checkpoint_dir and local:
        Path(session.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    if secret_env:
        path = folder / "secret_env.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(secret_env, handle)
    spec = {
        "id": session.id,
        "name": session.name,
        "command": session.command,
        "cwd": session.cwd,
        "env": session.env,
        "checkpoint_dir": session.checkpoint_dir,
        "resume_template": session.resume_template,
        "max_restarts": session.max_restarts,
        "backoff_seconds": defaults.backoff_seconds,
        "backoff_max_seconds": defaults.backoff_max_seconds,
        "grace_seconds": session.grace_seconds,
        "heartbeat_seconds": defaults.heartbeat_seconds,
        "resume_from": None,
        # Not for the runner: what rebuilding the store from this folder needs.
        "provider": session.provider,
        "host": session.host,
        "keep_last_n": session.keep_last_n,
        "created": session.created,
    }
    atomic_write_text(folder / "spec.json", json.dumps(spec, indent=2))
    (folder / "train.log").touch()


def shorten(text: str, limit: int = 120) -> str:
    """A user's argument in an error: a 10,000-character path must not fill the screen."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text):,} characters)"


def read_spec(session: Session) -> dict:
    """The session's spec.json, or one line saying it cannot be used."""
    path = Path(session.session_dir) / "spec.json"
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainctlError(f"session {session.id} has no spec.json ({path}); it cannot be "
                            "resumed") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise TrainctlError(f"session {session.id}'s spec.json ({path}) is unreadable "
                            f"({exc}); it cannot be resumed") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), list):
        raise TrainctlError(f"session {session.id}'s spec.json ({path}) is not a trainctl "
                            "spec (no command list); it cannot be resumed")
    return spec


def session_from_folder(folder: Path) -> Session | None:
    """A session rebuilt from its folder (spec.json, and status.json if readable), or None if
    the folder holds no usable spec.json of its own."""
    from ..runner.supervisor import read_status

    try:
        spec = json.loads((folder / "spec.json").read_text())
        created = (folder / "spec.json").stat().st_mtime
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(spec, dict) or spec.get("id") != folder.name or not isinstance(
            spec.get("command"), list) or not isinstance(spec.get("env") or {}, dict):
        return None
    # Older folders do not say where they ran: only a local runner leaves runner.log here.
    provider = spec.get("provider") or ("local" if (folder / "runner.log").exists() else None)
    if not isinstance(provider, str):
        return None
    try:
        session = Session(
            id=folder.name, name=str(spec.get("name") or folder.name),
            provider=provider, host=spec.get("host"),
            command=[str(word) for word in spec["command"]], cwd=str(spec.get("cwd") or ""),
            session_dir=str(folder), env={str(k): str(v) for k, v in (spec.get("env") or
                                                                       {}).items()},
            checkpoint_dir=spec.get("checkpoint_dir"), resume_template=spec.get(
                "resume_template"), max_restarts=int(spec.get("max_restarts") or 0),
            grace_seconds=float(spec.get("grace_seconds") or 30.0),
            keep_last_n=spec.get("keep_last_n"), created=float(spec.get("created") or created),
            status=Status.PENDING, heartbeat=created,
        )
    except (TypeError, ValueError):
        return None
    status = read_status(str(folder))
    if status is not None:
        changes, session.attempts = changes_from_status(session, status)
        for name, value in changes.items():
            setattr(session, name, value)
    return session


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def tells_of_previous_attempt(session: Session, status: dict) -> bool:
    """A pending session (a resume starting) whose status.json still tells how the attempt
    before it ended: not news about the new one."""
    final = not RUNNER_STATE_TO_STATUS.get(status.get("state"), Status.RUNNING).active
    return (session.status is Status.PENDING and final
            and (status.get("attempt") or 0) <= (session.attempt or 0))


def changes_from_status(session: Session, status: dict) -> tuple[dict, list[Attempt]]:
    """Store fields and attempts that a runner's status.json implies for `session`."""
    state = status.get("state")
    new_status = RUNNER_STATE_TO_STATUS.get(state, session.status)
    attempts = [
        Attempt(
            n=a.get("n", i + 1), started=a.get("started"), ended=a.get("ended"),
            exit_code=a.get("exit_code"), signal=a.get("signal"),
            resumed_from=a.get("resumed_from"), reason=a.get("reason"),
        )
        for i, a in enumerate(status.get("attempts") or [])
    ]
    detail = status.get("reason")
    if state == "backoff" and status.get("next_restart_at"):
        wait = max(0.0, status["next_restart_at"] - time.time())
        detail = f"restarting in {wait:.0f}s"
    changes = {
        "status": new_status,
        "attempt": status.get("attempt") or len(attempts),
        "exit_code": status.get("exit_code"),
        "signal": status.get("signal"),
        "detail": detail,
        "runner_pid": status.get("runner_pid"),
        "heartbeat": status.get("heartbeat"),
        "ended": status.get("ended") if not new_status.active else None,
    }
    first_start = attempts[0].started if attempts and attempts[0].started else status.get("started")
    if first_start:
        changes["started"] = first_start
    return {k: v for k, v in changes.items() if getattr(session, k) != v}, attempts


def resolve_resume_checkpoint(session: Session, explicit: str | None, *, trust: bool = False
                              ) -> tuple[str | None, list[dict], list[str]]:
    """(checkpoint, passed over, trusted globals) for a resume: the one asked for if it is
    sound (or trusted), else the newest sound one in the session's checkpoint dir and the newer
    ones passed over with why (None: start from scratch)."""
    from ..checkpoints.catalog import choose_row, list_checkpoints
    from ..checkpoints.inspect import inspect_checkpoint

    if explicit:
        path = (Path(session.cwd) / Path(explicit).expanduser()).resolve()
        if not path.exists():
            raise TrainctlError(f"checkpoint {path} does not exist")
        info = inspect_checkpoint(path)
        return str(path), [], judge_named_checkpoint(session, str(path), info, trust)
    if session.checkpoint_dir and Path(session.checkpoint_dir).is_dir():
        _, rows = list_checkpoints(session.checkpoint_dir)
        trusted = _spec_trusted_globals(session)
        row, skipped = choose_row(rows, trusted)
        return (row.entry.path if row else None), skipped, []
    return None, [], []


def _spec_trusted_globals(session: Session) -> list[str]:
    try:
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return []
    trusted = spec.get("trusted_globals") if isinstance(spec, dict) else None
    return [g for g in trusted if isinstance(g, str)] if isinstance(trusted, list) else []


def judge_named_checkpoint(session: Session, path: str, info, trust: bool) -> list[str]:
    """The globals to trust for a checkpoint the user named ([] when it is sound as it is);
    one line when it cannot be resumed from."""
    from ..checkpoints.inspect import trust_problem, unsound_reason

    trusted = _spec_trusted_globals(session)
    if unsound_reason(info, trusted) is None:
        return []
    if not trust:
        hint = "" if trust_problem(info, info.unknown_globals) else (
            f"; if you trust where it came from: trainctl resume {session.id} --from {path} "
            "--trust")
        raise TrainctlError(f"checkpoint {path} is {info.status}: {info.reason}; pick another "
                            f"(trainctl checkpoints {session.id}){hint}")
    problem = trust_problem(info, info.unknown_globals)
    if problem:
        raise TrainctlError(f"cannot trust {path}: {problem}")
    return list(info.unknown_globals)


def demo_script_path() -> Path:
    return Path(__file__).parents[1] / "demo" / "train.py"


def demo_request(*, steps: int | None = None, step_time: float | None = None) -> LaunchRequest:
    """The bundled toy trainer as a normal session, restartable from its own checkpoints."""
    command = [sys.executable, "-u", str(demo_script_path())]
    if steps is not None:
        command += ["--steps", str(steps)]
    if step_time is not None:
        command += ["--step-time", str(step_time)]
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    checkpoint_dir = paths.state_dir() / "demo-checkpoints" / stamp
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    return LaunchRequest(
        command=command,
        cwd=str(paths.state_dir()),
        name="demo",
        checkpoint_dir=str(checkpoint_dir),
        resume_template="--resume {checkpoint}",
        max_restarts=3,
        grace_seconds=20,
    )
