"""The one façade the TUI and the CLI call: every user action is a method of Service. Its
parts live in modules of their own (launching, refreshing, stopping, resuming, checkpoint
actions, machines) and are mixed in here; reading sessions and the overview are here."""

from __future__ import annotations

import time
from pathlib import Path

from ..backends.registry import get_provider
from ..core import paths
from ..core.errors import SessionNotFound, TrainctlError
from ..core.models import Record, Session, Status
from ..store import Store, StoreWriteError
from .checkpoint_actions import CheckpointActions

# The façade's names: what the front ends and tests take from here.
from .launching import Launching, LaunchRequest, default_name, demo_request, demo_script_path  # noqa: F401
from .machine_actions import MachineActions
from .refreshing import PENDING_TIMEOUT, REFRESHED, Refreshing, session_from_folder  # noqa: F401
from .resuming import Resuming
from .stopping import Stopping

RECENT_ENDED_SHOWN = 20


class SessionOverview(Record):
    """A session with what its log says: the row of the sessions table and of `--once`."""

    session: Session
    metrics: object | None = None  # monitor.metrics.MetricSet of the log's tail
    alerts: list = []  # monitor.alerts.Alert that hold now
    newest_checkpoint: object | None = None  # checkpoints.scan.CheckpointEntry (active ones)
    figures: object | None = None  # costs.Figures: progress, ETA, cost so far and to finish
    usage: object | None = None  # monitor.usage.Usage: GPUs, CPU and memory (active ones)

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


class Service(Launching, Refreshing, Stopping, Resuming, CheckpointActions,
              MachineActions):
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

    # -- reading ------------------------------------------------------------------------


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
        from .costs import budget_alerts, figures_of
        from .gpu_usage import gpu_idle_alert, machine_price, session_usage

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
            figures = figures_of(session, now)
            alerts += budget_alerts(session, figures, now)
            usage = session_usage(session)
            price, kind = machine_price(session) if usage is not None else (None, None)
            idle = gpu_idle_alert(session, usage, price=price, now=now, machine_type=kind,
                                  below_percent=alerts_config.gpu_idle_percent,
                                  after_seconds=alerts_config.gpu_idle_seconds)
            alerts += [idle] if idle else []
            if session.nodes > 1:
                from .nodes import node_alerts

                alerts += node_alerts(session, now)  # a node failed or stopped answering
            rows.append(SessionOverview(session, metrics, alerts, newest, figures, usage))
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

    def log_path(self, session: Session, node: int | None = None) -> Path:
        """The session's log: rank 0's; `node` R: that node's of a multi-node run (mirrored
        to nodes/R/), refused in one line when the session has no such node."""
        folder = Path(session.session_dir)
        if not node:
            return folder / "train.log"
        path = folder / "nodes" / str(node) / "train.log"
        if not path.exists():
            ranks = sorted(int(p.name) for p in (folder / "nodes").glob("*")
                           if p.name.isdigit())
            known = ", ".join(str(rank) for rank in [0, *ranks])
            raise TrainctlError(f"session {session.id} has no node {node} (its nodes: {known})")
        return path

    def log_mirror(self, url: str):
        """A local copy of the log at `url` (a URL of a backend that follows logs it did not
        launch, e.g. ssh://[user@]host[:port]/path), followed by byte offset; refused in one
        line when malformed."""
        from ..backends.registry import log_url_backend

        return log_url_backend(url).log_mirror(self.config, url)

    @staticmethod
    def is_log_url(target: str) -> bool:
        """Whether `target` is a backend's log URL rather than a path here."""
        from ..backends.registry import log_url_backend

        return log_url_backend(target) is not None

    async def mirror_whole_log(self, mirror) -> None:
        """Bring the local copy up to the remote log's end (the mirror copies a chunk a call;
        a copy made by an earlier `watch` or `metrics` only grows by what was appended)."""
        await mirror.catch_up()
