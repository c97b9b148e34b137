"""SQLite session store: WAL mode, a schema version table and forward migrations.

Many processes touch it at once (the TUI, CLI calls, refreshes), so every write is a short
`BEGIN IMMEDIATE` transaction and every connection waits on a busy database instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .core.errors import SessionNotFound, TrainctlError
from .core.models import Attempt, Session, Status

# Each entry migrates from version i to i+1. Never edit a shipped entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        host TEXT,
        command TEXT NOT NULL,
        cwd TEXT NOT NULL,
        env TEXT NOT NULL DEFAULT '{}',
        session_dir TEXT NOT NULL,
        checkpoint_dir TEXT,
        resume_template TEXT,
        max_restarts INTEGER NOT NULL DEFAULT 0,
        grace_seconds REAL NOT NULL DEFAULT 30,
        created REAL NOT NULL,
        started REAL,
        ended REAL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        signal INTEGER,
        detail TEXT,
        runner_pid INTEGER,
        heartbeat REAL
    );
    CREATE INDEX sessions_created ON sessions(created);
    CREATE INDEX sessions_status ON sessions(status);
    CREATE TABLE attempts (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        started REAL,
        ended REAL,
        exit_code INTEGER,
        signal INTEGER,
        resumed_from TEXT,
        reason TEXT,
        PRIMARY KEY (session_id, n)
    );
    """,
    # 2: alerts already notified, so a restart of the TUI does not notify them again.
    """
    CREATE TABLE fired_alerts (key TEXT PRIMARY KEY, at REAL NOT NULL)
    """,
    # 3: per-session retention, applied automatically as new checkpoints appear.
    """
    ALTER TABLE sessions ADD COLUMN keep_last_n INTEGER
    """,
    # 4: the machines a multi-node run spans (one runner each).
    """
    ALTER TABLE sessions ADD COLUMN nodes INTEGER NOT NULL DEFAULT 1
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Short, human-typeable ids: no 0/o, 1/l/i look-alikes.
ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ID_LENGTH = 6

SESSION_COLUMNS = (
    "id name provider host command cwd env session_dir checkpoint_dir resume_template "
    "max_restarts grace_seconds created started ended status attempt exit_code signal detail "
    "runner_pid heartbeat keep_last_n nodes"
).split()
# Fields a refresh from status.json may change.
MUTABLE_FIELDS = frozenset(
    "started ended status attempt exit_code signal detail runner_pid heartbeat "
    "provider host nodes".split()  # provider/host: a spot session moves to a new instance
)


def new_session_id() -> str:
    import secrets  # here only: it costs more to import than listing sessions

    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class StoreWriteError(TrainctlError):
    """A change could not be saved (disk full, read-only home); the store itself is intact."""


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.read_only: str | None = None  # why writes are impossible, when they are
        self.db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainctlError(f"cannot create {self.path.parent} for the session store: "
                                f"{exc.strerror or exc}") from None
        try:
            self.db = self._connect(self.path)
            self._prepare()
        except sqlite3.DatabaseError as exc:
            self.close()
            problem = unwritable_reason(self.path.parent)
            if problem is None or not self.path.exists():
                raise self._open_error(exc, problem) from None
            # Disk full or read-only: reading (sessions, logs, stop) must still work.
            self.db = self._open_read_only()
            self.read_only = problem

    @staticmethod
    def _connect(target, **kwargs) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=30, isolation_level=None, **kwargs)
        db.row_factory = sqlite3.Row
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """Without a working -shm file a WAL database cannot be opened where nothing can be
        written; with an empty or no -wal file the database file is the whole store, so it is
        read as immutable."""
        uri = self.path.resolve().as_uri()
        wal = Path(f"{self.path}-wal")
        mode = "ro" if wal.exists() and wal.stat().st_size else "ro&immutable=1"
        try:
            db = self._connect(f"{uri}?mode={mode}", uri=True)
            db.execute("SELECT COUNT(*) FROM sessions").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            raise self._open_error(exc, unwritable_reason(self.path.parent)) from None

    def _open_error(self, exc: Exception, problem: str | None) -> TrainctlError:
        if problem is not None and not self.path.exists():
            return TrainctlError(f"cannot create the session store {self.path}: {problem}")
        if problem is not None:
            return TrainctlError(f"cannot open the session store {self.path}: {problem} "
                                 f"({exc}); the store itself is not damaged")
        if "not a database" in str(exc) or "malformed" in str(exc):
            return TrainctlError(f"session store {self.path} is unreadable ({exc}); move it "
                                 "away to start a new one (your runs' folders are kept)")
        return TrainctlError(f"cannot open the session store {self.path}: {exc}")

    def _prepare(self) -> None:
        """Settings and migrations. Switching a new database to WAL fails at once (no busy
        wait) while another process opens it too, so that is retried."""
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA foreign_keys = ON")
        for attempt in range(100):
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        self.db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return
        with self._write():
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = self._version()  # re-read under the lock: another process may have won
            if version > SCHEMA_VERSION:
                raise TrainctlError(
                    f"session store {self.path} has schema {version}, newer than this trainctl "
                    f"understands ({SCHEMA_VERSION}); upgrade trainctl"
                )
            for script in MIGRATIONS[version:]:
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
            self.db.execute("DELETE FROM schema_version")
            self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def _version(self) -> int:
        try:
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            return 0
        return row[0] if row else 0

    def _write(self):
        if self.read_only:
            raise StoreWriteError(f"the session store {self.path} cannot be changed: "
                                  f"{self.read_only}")
        return _Transaction(self.db, self.path)

    # -- sessions -----------------------------------------------------------------------

    def insert(self, session: Session, prepare: Callable[[Session], None] | None = None) -> Session:
        """Store a new session under a fresh unique id (the one on `session` is ignored).

        `prepare` runs once the id is chosen, to fill fields that depend on it (its folder).
        """
        for _ in range(100):
            session.id = new_session_id()
            if prepare:
                prepare(session)
            try:
                with self._write():
                    self._insert_row(session)
                return session
            except sqlite3.IntegrityError:
                continue
        raise RuntimeError("could not find a free session id")

    def restore(self, session: Session) -> bool:
        """Store a session found in its folder (the store lost it), keeping its id. False if
        the id is taken by now (another process restored it first)."""
        with self._write():
            inserted = self._insert_row(session, or_ignore=True)
            if inserted:
                self._insert_attempts(session.id, session.attempts)
        return inserted

    def _insert_row(self, session: Session, *, or_ignore: bool = False) -> bool:
        """The session's row (inside a write); False if `or_ignore` and its id is taken."""
        row = _session_row(session)
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        cursor = self.db.execute(f"{verb} INTO sessions ({', '.join(row)}) "
                                 f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        return bool(cursor.rowcount)

    def _insert_attempts(self, session_id: str, attempts: Iterable[Attempt]) -> None:
        self.db.executemany(
            "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(session_id, a.n, a.started, a.ended, a.exit_code, a.signal, a.resumed_from,
              a.reason) for a in attempts])

    def ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM sessions")}

    def update(self, session_id: str, attempts: Iterable[Attempt] | None = None, *,
               expect: dict | None = None, **fields) -> bool:
        """Set `fields` (and replace the attempts). With `expect` ({"status": ..., ...}) only
        while the stored session still has those values: a refresh that read the session
        before another process moved it on (an auto-resume) must not undo that. True if
        written."""
        unknown = set(fields) - MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if "status" in fields:
            fields["status"] = Status(fields["status"]).value
        with self._write():
            if expect and not self._matches(session_id, expect):
                return False
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                self.db.execute(
                    f"UPDATE sessions SET {assignments} WHERE id = ?",
                    (*fields.values(), session_id),
                )
            if attempts is not None:
                self.db.execute("DELETE FROM attempts WHERE session_id = ?", (session_id,))
                self._insert_attempts(session_id, attempts)
        return True

    def _matches(self, session_id: str, expect: dict) -> bool:
        unknown = set(expect) - MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"not comparable: {sorted(unknown)}")
        values = [Status(v).value if k == "status" else v for k, v in expect.items()]
        where = " AND ".join(f"{name} IS ?" for name in expect)
        return self.db.execute(f"SELECT 1 FROM sessions WHERE id = ? AND {where}",
                               (session_id, *values)).fetchone() is not None

    def delete(self, session_id: str) -> None:
        with self._write():
            self.db.execute("DELETE FROM fired_alerts WHERE key LIKE ? ESCAPE '\\'",
                            (_like_prefix(session_id + ":"),))
            self.db.execute("DELETE FROM attempts WHERE session_id = ?", (session_id,))
            self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def get(self, session_id: str) -> Session | None:
        row = self.db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        session = _session_from_row(row)
        session.attempts = self._attempts(session_id)
        return session

    def resolve(self, ref: str) -> Session:
        """Find a session by id, by name or by an id prefix. A name or prefix that more than
        one session shares is an error listing them: `rm dup` must never pick one."""
        ref = ref.strip()
        found = self.get(ref)
        if found:
            return found
        ids = [r[0] for r in self.db.execute(
            "SELECT id FROM sessions WHERE name = ? ORDER BY created DESC LIMIT 6", (ref,))]
        what, hint = "sessions are named so", "use the id"
        if not ids and len(ref) >= 2:
            ids = [r[0] for r in self.db.execute(
                "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6",
                (_like_prefix(ref),))]
            what, hint = "ids start so", "give more of the id"
        if not ids:
            raise SessionNotFound(ref)
        if len(ids) > 1:
            more = ", ..." if len(ids) > 5 else ""
            raise TrainctlError(f"session '{ref}' is ambiguous: {what} ({', '.join(ids[:5])}"
                                f"{more}); {hint}")
        return self.get(ids[0])  # type: ignore[return-value]

    def list(self, *, statuses: Iterable[Status] | None = None, limit: int | None = None,
             with_attempts: bool = False) -> list[Session]:
        """Sessions newest first, optionally only those in `statuses`."""
        query = "SELECT * FROM sessions"
        params: list = []
        if statuses is not None:
            values = [Status(s).value for s in statuses]
            query += f" WHERE status IN ({', '.join('?' * len(values))})"
            params += values
        query += " ORDER BY created DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        sessions = [_session_from_row(row) for row in self.db.execute(query, params)]
        if with_attempts and sessions:
            by_id = {s.id: s for s in sessions}
            # Only the listed sessions' attempts: a long-lived store holds thousands.
            ids = query.replace("SELECT *", "SELECT id", 1)
            for row in self.db.execute(f"SELECT * FROM attempts WHERE session_id IN ({ids}) "
                                       "ORDER BY session_id, n", params):
                if row["session_id"] in by_id:  # not one inserted since the first query
                    by_id[row["session_id"]].attempts.append(_attempt_from_row(row))
        return sessions

    def fired_alerts(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT key FROM fired_alerts")}

    def mark_alerts_fired(self, keys: Iterable[str]) -> None:
        with self._write():
            self.db.executemany("INSERT OR IGNORE INTO fired_alerts VALUES (?, ?)",
                                [(key, time.time()) for key in keys])

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]

    def _attempts(self, session_id: str) -> list[Attempt]:
        rows = self.db.execute(
            "SELECT * FROM attempts WHERE session_id = ? ORDER BY n", (session_id,)
        )
        return [_attempt_from_row(row) for row in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: concurrent writers queue on the lock, never deadlock.
    A write the disk refuses becomes a StoreWriteError that says why."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self.db = db
        self.path = path

    def __enter__(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._refused(exc) from None

    def __exit__(self, exc_type, exc, _tb):
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.OperationalError as error:
            if exc_type is None:
                raise self._refused(error) from None
        if exc_type is sqlite3.OperationalError:
            raise self._refused(exc) from None

    def _refused(self, exc: Exception) -> Exception:
        problem = unwritable_reason(self.path.parent)
        if problem is None:
            return exc  # locked for 30 s, or a bug: not the user's to fix
        return StoreWriteError(f"the session store {self.path} cannot be changed: {problem}")


def unwritable_reason(folder: Path) -> str | None:
    """Why nothing can be written in `folder` ("the disk ... is full", "... read-only"),
    or None if writing there looks possible."""
    import os

    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return f"{folder} is on a read-only filesystem"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable by you"
    if stats.f_bavail * stats.f_frsize < 64 * 1024:
        return f"the disk holding {folder} is full; free some space"
    return None


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _session_row(session: Session) -> dict:
    row = {name: getattr(session, name) for name in SESSION_COLUMNS}
    row["command"] = json.dumps(session.command)
    row["env"] = json.dumps(session.env)
    row["status"] = Status(session.status).value
    row["created"] = session.created or time.time()
    return row


def _session_from_row(row: sqlite3.Row) -> Session:
    data = {name: row[name] for name in SESSION_COLUMNS}
    data["command"] = json.loads(data["command"])
    data["env"] = json.loads(data["env"])
    data["status"] = Status(data["status"])
    return Session(**data)


def _attempt_from_row(row: sqlite3.Row) -> Attempt:
    data = dict(row)
    data.pop("session_id")
    return Attempt(**data)
