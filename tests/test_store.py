"""The SQLite session store: ids, lookups, migrations, and many writers at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from trainctl_tui import store as store_module
from trainctl_tui.core.errors import SessionNotFound, TrainctlError
from trainctl_tui.core.models import Attempt, Session, Status
from trainctl_tui.store import ID_ALPHABET, ID_LENGTH, SCHEMA_VERSION, Store


def make_session(name="run", **fields) -> Session:
    return Session(id="", name=name, provider="local", command=["python", "train.py"],
                   cwd="/tmp", session_dir="/tmp/x", **fields)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "t.db") as s:
        yield s


def test_insert_assigns_short_typeable_unique_ids(store):
    ids = {store.insert(make_session()).id for _ in range(200)}
    assert len(ids) == 200
    for session_id in ids:
        assert len(session_id) == ID_LENGTH
        assert set(session_id) <= set(ID_ALPHABET)
    assert store.count() == 200


def test_wal_mode_and_schema_version(store, tmp_path):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw = sqlite3.connect(tmp_path / "t.db")
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "t.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    with pytest.raises(TrainctlError, match="has schema 99, newer than this trainctl"):
        Store(path)


def test_forward_migration_keeps_existing_rows(tmp_path, monkeypatch):
    path = tmp_path / "t.db"
    with Store(path) as old:
        kept = old.insert(make_session("kept"))
    monkeypatch.setattr(store_module, "MIGRATIONS",
                        [*store_module.MIGRATIONS, "ALTER TABLE sessions ADD COLUMN note TEXT"])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
    with Store(path) as new:
        assert new.get(kept.id).name == "kept"
        assert new._version() == SCHEMA_VERSION + 1
        columns = [r[1] for r in new.db.execute("PRAGMA table_info(sessions)")]
        assert "note" in columns


def test_resolve_by_id_name_and_prefix(store):
    first = store.insert(make_session("alpha", created=1.0))
    second = store.insert(make_session("alpha", created=2.0))
    assert store.resolve(first.id).id == first.id
    only = store.insert(make_session("beta"))
    assert store.resolve("beta").id == only.id
    assert store.resolve(first.id[:4]).id == first.id or first.id[:4] == second.id[:4]
    with pytest.raises(SessionNotFound) as err:
        store.resolve("nope!")
    assert str(err.value) == "no session 'nope!' (see trainctl sessions)"


def test_ambiguous_prefix_names_the_candidates(store):
    # Ids are random: insert until two share a two-letter prefix (certain within
    # len(ID_ALPHABET) ** 2 + 1 ids, usually after a few dozen), then a few more.
    by_letter: dict[str, list[str]] = {}

    def insert() -> None:
        session = store.insert(make_session())
        by_letter.setdefault(session.id[:2], []).append(session.id)

    while not any(len(ids) > 1 for ids in by_letter.values()):
        insert()
    for _ in range(20):
        insert()
    prefix, ids = next((p, ids) for p, ids in by_letter.items() if len(ids) > 1)
    with pytest.raises(TrainctlError) as err:
        store.resolve(prefix)
    listed = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
    assert str(err.value) == (f"session '{prefix}' is ambiguous: ids start so ({listed}); "
                              "give more of the id")


def test_a_name_two_sessions_share_is_an_error_listing_both(store):
    older = store.insert(make_session("dup", created=1.0))
    newer = store.insert(make_session("dup", created=2.0))
    with pytest.raises(TrainctlError) as err:
        store.resolve("dup")
    assert str(err.value) == (f"session 'dup' is ambiguous: sessions are named so "
                              f"({newer.id}, {older.id}); use the id")


def test_like_wildcards_in_a_reference_are_literal(store):
    store.insert(make_session())
    with pytest.raises(SessionNotFound):
        store.resolve("%%")
    with pytest.raises(SessionNotFound):
        store.resolve("__")


def test_update_and_attempts_roundtrip(store):
    s = store.insert(make_session())
    store.update(s.id, status=Status.FAILED, exit_code=3, attempt=2,
                 attempts=[Attempt(n=1, exit_code=1), Attempt(n=2, exit_code=3, reason="boom")])
    got = store.get(s.id)
    assert (got.status, got.exit_code, got.attempt) == (Status.FAILED, 3, 2)
    assert [(a.n, a.exit_code, a.reason) for a in got.attempts] == [(1, 1, None), (2, 3, "boom")]
    with pytest.raises(ValueError):
        store.update(s.id, command="rm -rf /")


def test_list_filters_and_orders_newest_first(store):
    for i, status in enumerate([Status.RUNNING, Status.FAILED, Status.SUCCEEDED]):
        store.insert(make_session(f"s{i}", created=float(i + 1), status=status))
    assert [s.name for s in store.list()] == ["s2", "s1", "s0"]
    assert [s.name for s in store.list(statuses=[Status.RUNNING])] == ["s0"]
    assert [s.name for s in store.list(limit=1)] == ["s2"]


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    """Two processes insert and update 200 sessions each into one database concurrently."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(store_module.__file__.rsplit('/trainctl_tui', 1)[0])!r})
        from trainctl_tui.store import Store
        from trainctl_tui.core.models import Session, Status
        s = Store({str(tmp_path / 'c.db')!r})
        for i in range(200):
            x = s.insert(Session(id='', name=sys.argv[1] + str(i), provider='local',
                                 command=['x'], cwd='/', session_dir='/'))
            s.update(x.id, status=Status.RUNNING, attempt=1)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag]) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with Store(tmp_path / "c.db") as s:
        sessions = s.list()
        assert len(sessions) == 400
        assert {x.status for x in sessions} == {Status.RUNNING}
        assert len({x.name for x in sessions}) == 400


def test_a_corrupt_store_is_one_clear_line(trainctl_home):
    from conftest import run_cli

    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "trainctl.db").write_bytes(b"this is not sqlite" * 100)
    result = run_cli("sessions")
    assert result.returncode == 2
    assert result.stderr.startswith(f"session store {trainctl_home / 'trainctl.db'} is unreadable")
    assert "Traceback" not in result.stderr
