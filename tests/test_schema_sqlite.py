"""The SQLite schema: version 4 (the blob table, the hash chain), migration of an
everstore 0.1.0 file and of a version-2 file (each then verifies clean),
the file-header stamp, and stores that lost their schema."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import sqlite3
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

import everstore
from everstore import BackendError, SchemaError, Sqlite3, Store
from everstore.backends.base import SCHEMA_VERSION
from everstore.backends.sqlite.schema import MIGRATIONS
from everstore.cli import main

DATA = Path(__file__).resolve().parent / "data"
#: ``PRAGMA application_id`` of an everstore file: "Evst"
EVERSTORE_ID = int.from_bytes(b"Evst", "big")


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    """A copy of the store everstore 0.1.0 wrote (tests/data/make_v1_fixtures.py)."""
    path = tmp_path / "store-0.1.0.db"
    shutil.copyfile(DATA / "store-0.1.0.db", path)
    return path


def _raw_facts(path: Path) -> list[tuple[object, ...]]:
    """Every fact of the file as SQL sees it, names resolved (read without writing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute(
            "SELECT l.seq, l.time, n.name, f.name, c.name, l.data FROM everstore_log AS l "
            "JOIN everstore_namespaces AS n ON n.id = l.ns "
            "JOIN everstore_fields AS f ON f.id = l.field "
            "JOIN everstore_contexts AS c ON c.id = l.ctx ORDER BY l.seq"
        ).fetchall()
    finally:
        conn.close()


def _header(conn: sqlite3.Connection) -> tuple[int, int]:
    return (
        conn.execute("PRAGMA application_id").fetchone()[0],
        conn.execute("PRAGMA user_version").fetchone()[0],
    )


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_the_release_writes_schema_version_4() -> None:
    assert SCHEMA_VERSION == 4


def test_a_new_file_is_stamped_and_has_the_blob_table(tmp_path: Path) -> None:
    backend = Sqlite3(tmp_path / "new.db")
    with Store(backend):
        assert _header(backend.connection) == (EVERSTORE_ID, 4)
        assert "everstore_blobs" in _tables(backend.connection)
        assert backend.migrated_from is None


def test_an_old_store_is_migrated_on_open_keeping_every_fact(old_store: Path) -> None:
    before = _raw_facts(old_store)
    assert len(before) == 12
    backend = Sqlite3(old_store)
    with Store(backend) as store:
        assert backend.migrated_from == 1
        conn = backend.connection
        assert _header(conn) == (EVERSTORE_ID, 4)
        assert "everstore_blobs" in _tables(conn)
        meta = conn.execute("SELECT value FROM everstore_meta WHERE key='schema_version'")
        assert meta.fetchone()[0] == "4"
        columns = [row[1] for row in conn.execute("PRAGMA table_info(everstore_log)")]
        assert columns[-1] == "link"
        assert store.verify().ok and store.verify().facts == 12
        assert [tuple(fact) for fact in backend.facts_since(0)] == [
            (seq, time, ns, field, data, ctx) for seq, time, ns, field, ctx, data in before
        ]
        alice = store.storage("game", "alice")
        assert (alice.name, alice.round, alice.price, alice.pair) == (
            "Alice",
            2,
            Decimal("1.50"),
            (1, "a"),
        )
        with alice:
            assert alice.items == ["sword", "shield"]
        assert "score" not in alice
        score = alice.__history__()["score"]
        assert [value.data for value in score if not value.unavailable] == [10, 25]
        assert score[-1].unavailable
        assert [value.seq for value in score] == [3, 5, 10]
        assert score[0].time == before[2][1] and score[0].context == before[2][4]
        bob = store.storage("game", "bob")
        with bob:
            assert (bob.name, bob.tags) == ("Bob", {"x", "y"})
        # and it goes on as a version-4 store
        alice.round = 3
        digest = hashlib.sha256(b"snapshot").digest()
        backend.put_blobs([(digest, b"snapshot")])
    with Store(Sqlite3(old_store, migrate=False)) as reopened:
        assert reopened.storage("game", "alice").round == 3
        assert reopened.backend.get_blob(digest) == b"snapshot"
        assert reopened.last_seq == 13
        assert reopened.verify().ok


def test_a_version_2_file_gets_the_rowid_blob_table_keeping_every_blob(old_store: Path) -> None:
    # a version-2 file, made as version 2 of this module made it: the 0.1.0 file
    # with the first migration step run on it
    conn = sqlite3.connect(old_store, isolation_level=None)
    for statement in MIGRATIONS[0].statements("everstore"):
        conn.execute(statement)
    conn.execute("UPDATE everstore_meta SET value = '2' WHERE key = 'schema_version'")
    conn.execute("PRAGMA user_version = 2")
    blobs = {hashlib.sha256(data).digest(): data for data in (b"a", b"b" * 5000)}
    conn.executemany("INSERT INTO everstore_blobs(digest, data) VALUES (?, ?)", blobs.items())
    conn.close()
    backend = Sqlite3(old_store)
    with Store(backend) as store:
        assert backend.migrated_from == 2
        assert _header(backend.connection) == (EVERSTORE_ID, 4)
        assert all(store.get_blob(digest.hex()) == data for digest, data in blobs.items())
        assert store.put_blob(b"a") == hashlib.sha256(b"a").hexdigest()  # stored once
        rows = backend.connection.execute("SELECT count(*) FROM everstore_blobs").fetchone()
        assert rows[0] == 2
        assert store.storage("game", "alice").name == "Alice"
        assert store.verify().ok
        with pytest.raises(sqlite3.IntegrityError):
            backend.connection.execute("DELETE FROM everstore_blobs")


def test_migrate_false_refuses_an_old_store_and_leaves_the_file_as_it_was(
    old_store: Path,
) -> None:
    original = old_store.read_bytes()
    with pytest.raises(SchemaError) as refused:
        everstore.open(old_store, migrate=False)
    message = str(refused.value)
    assert "version 1" in message and "version 4" in message
    assert "migrate=True" in message and f"everstore migrate {old_store}" in message
    assert old_store.read_bytes() == original


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store(Sqlite3(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE everstore_meta SET value = '5' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match=r"version 5.*Upgrade everstore"):
        Store(Sqlite3(path))


def test_a_failed_migration_leaves_the_old_store_whole(old_store: Path) -> None:
    # A table of that name is in the way: the migration's CREATE TABLE fails.
    conn = sqlite3.connect(old_store)
    conn.execute("CREATE TABLE everstore_blobs (x)")
    conn.commit()
    conn.close()
    facts = _raw_facts(old_store)
    with pytest.raises(BackendError, match="everstore_blobs"):
        Store(Sqlite3(old_store))
    conn = sqlite3.connect(old_store)
    meta = conn.execute("SELECT value FROM everstore_meta WHERE key='schema_version'")
    assert meta.fetchone()[0] == "1"
    assert _header(conn) == (0, 0)
    assert "everstore_blobs_no_update" not in {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
    }
    conn.close()
    assert _raw_facts(old_store) == facts


def _open_at_barrier(path: str, barrier: Barrier, results: Queue[int | None]) -> None:
    backend = Sqlite3(path)
    barrier.wait()
    backend.open()
    results.put(backend.migrated_from)
    backend.close()


def test_concurrent_openers_migrate_once(old_store: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    results: Queue[int | None] = context.Queue()
    openers = [
        context.Process(target=_open_at_barrier, args=(str(old_store), barrier, results))
        for _ in range(4)
    ]
    for opener in openers:
        opener.start()
    found = sorted((results.get(timeout=60) for _ in openers), key=str)
    for opener in openers:
        opener.join(timeout=60)
        assert opener.exitcode == 0
    assert found == [1, None, None, None]  # one migrated from version 1, the rest found 2
    assert [fact[0] for fact in _raw_facts(old_store)] == list(range(1, 13))


def test_the_migrate_command(old_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(old_store)]) == 0
    assert "migrated from schema version 1 to 4" in capsys.readouterr().out
    assert main(["migrate", str(old_store)]) == 0
    assert "already at schema version 4" in capsys.readouterr().out
    with Store(Sqlite3(old_store, readonly=True)) as store:
        assert store.storage("game", "bob").name == "Bob"
    assert main(["migrate", str(old_store.parent / "missing.db")]) == 2
    assert "no store" in capsys.readouterr().err


# -- the blob table -----------------------------------------------------------------


@pytest.fixture
def backend(tmp_path: Path) -> Sqlite3:
    opened = Sqlite3(tmp_path / "blobs.db")
    opened.open()
    return opened


def _blob(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), data


def test_blobs_put_and_get(backend: Sqlite3) -> None:
    first, second = _blob(b"one"), _blob(b"two" * 1000)
    backend.put_blobs([first, second])
    assert backend.get_blob(first[0]) == b"one"
    assert backend.get_blob(second[0]) == b"two" * 1000
    assert backend.get_blob(hashlib.sha256(b"never").digest()) is None


def test_putting_a_blob_again_keeps_the_first(backend: Sqlite3) -> None:
    digest, data = _blob(b"kept")
    backend.put_blobs([(digest, data)])
    backend.put_blobs([(digest, data), (digest, b"other bytes")])
    assert backend.get_blob(digest) == b"kept"
    count = backend.connection.execute("SELECT count(*) FROM everstore_blobs").fetchone()[0]
    assert count == 1


def test_put_blobs_is_atomic(backend: Sqlite3) -> None:
    good = _blob(b"good")
    with pytest.raises(BackendError, match="CHECK"):
        backend.put_blobs([good, (b"short", b"bad digest")])
    assert backend.get_blob(good[0]) is None


def test_raw_sql_cannot_rewrite_or_remove_a_blob(backend: Sqlite3) -> None:
    digest, data = _blob(b"forever")
    backend.put_blobs([(digest, data)])
    conn = backend.connection
    with pytest.raises(sqlite3.DatabaseError, match="append-only: UPDATE"):
        conn.execute("UPDATE everstore_blobs SET data = x'00'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE"):
        conn.execute("DELETE FROM everstore_blobs")
    conn.execute(
        "INSERT OR REPLACE INTO everstore_blobs(digest, data) VALUES (?, x'00')", (digest,)
    )
    assert backend.get_blob(digest) == b"forever"


# -- a store that lost its schema ----------------------------------------------------


def test_an_empty_existing_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with everstore.open(path) as store:
        store.storage("doc").title = "new"
    assert everstore.open(path).storage("doc").title == "new"


def test_an_empty_file_beside_a_wal_of_only_its_header_opens(tmp_path: Path) -> None:
    # What a second process sees while a first one is creating the file: the WAL's
    # 32-byte header, no frame (no data), beside an empty main file.
    path = tmp_path / "creating.db"
    path.write_bytes(b"")
    Path(f"{path}-wal").write_bytes(bytes(32))
    with everstore.open(path) as store:
        store.storage("doc").title = "new"
    assert everstore.open(path).storage("doc").title == "new"


def test_an_empty_file_beside_a_non_empty_wal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.db"
    writer = everstore.open(path)  # kept open: its WAL stays beside the file
    writer.storage("doc").title = "in the log"
    wal = Path(f"{path}-wal")
    wal_bytes = wal.read_bytes()
    assert wal_bytes
    os.truncate(path, 0)
    with pytest.raises(SchemaError, match="truncated after it held a store"):
        everstore.open(path)
    assert wal.read_bytes() == wal_bytes  # SQLite was not let near it
    writer.close()


def _drop(path: Path, *tables: str) -> None:
    conn = sqlite3.connect(path)
    for table in tables:
        conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()


def test_a_stamped_file_without_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dropped.db"
    everstore.open(path).close()
    tables = ["meta", "log", "namespaces", "fields", "contexts", "blobs"]
    _drop(path, *[f"everstore_{table}" for table in tables])
    with pytest.raises(SchemaError, match="lost its schema"):
        everstore.open(path)


def test_a_meta_table_without_the_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nolog.db"
    with everstore.open(path) as store:
        store.storage("doc").title = "x"
    _drop(path, "everstore_log")
    with pytest.raises(SchemaError, match=r"everstore_log.*lost tables"):
        everstore.open(path)


def test_another_applications_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.commit()
    conn.close()
    original = path.read_bytes()
    with pytest.raises(SchemaError, match="another application"):
        everstore.open(path)
    assert path.read_bytes() == original
