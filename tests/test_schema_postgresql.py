"""Schema versions on PostgreSQL: a store written by everstore 0.1.0 (schema version 1)
opens in this release, migrated in place; and the blob table (from version 2).

tests/data/pg-schema-0.1.0.sql is a pg_dump of schema ``v1`` holding the store that
tests/data/make_v1_fixtures.py wrote; each test loads it into a fresh schema.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from everstore import SchemaError, Store, StoreClosedError
from everstore.backends.postgresql.schema import SCHEMA_VERSION
from pg_server import Location, raw_connection

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from everstore.backends.postgresql import PostgreSQL  # noqa: E402

DUMP = Path(__file__).resolve().parent / "data" / "pg-schema-0.1.0.sql"
#: a version-3 store (tests/data/make_v3_fixture.py), the layout before version 4
V3_DUMP = Path(__file__).resolve().parent / "data" / "pg-schema-v3.sql"

#: the log of the 0.1.0 store: (seq, time, namespace, field, context line, data as hex)
V1_LOG = [
    (1, 1796108018.9953864, "game/alice", "name", 24, "22416c69636522"),
    (2, 1796108019.005108, "game/alice", "round", 25, "31"),
    (3, 1796108019.0125651, "game/alice", "score", 26, "3130"),
    (4, 1796108019.0142558, "game/alice", "round", 27, "32"),
    (5, 1796108019.0156348, "game/alice", "score", 28, "3235"),
    (6, 1796108019.0168839, "game/alice", "items", 30, "5b2273776f7264225d"),
    (7, 1796108019.018157, "game/alice", "items", 31, "015b362c224c222c5b22736869656c64225d5d"),
    (8, 1796108019.0192616, "game/alice", "price", 33, "7e7b227e44223a22312e3530227d"),
    (9, 1796108019.0204, "game/alice", "pair", 34, "7e7b227e74223a5b312c2261225d7d"),
    (10, 1796108019.021535, "game/alice", "score", 35, None),
    (11, 1796108019.0233521, "game/bob", "name", 38, "22426f6222"),
    (12, 1796108019.0233521, "game/bob", "tags", 39, "7e7b227e73223a5b2278222c2279225d7d"),
]


def load_v1(conninfo: str, schema: str, dump: Path = DUMP, name: str = "v1") -> None:
    """Load the 0.1.0 dump (or another, whose schema is ``name``) into ``schema``
    (which must not exist), as psql would."""
    lines = [line for line in dump.read_text().splitlines() if not line.startswith("\\")]
    script = re.sub(rf"\b{name}\b", schema, "\n".join(lines))
    with raw_connection(conninfo) as conn:
        conn.execute(script)


def meta_version(conninfo: str, schema: str) -> str:
    with raw_connection(conninfo) as conn:
        row = conn.execute(
            f"SELECT value FROM \"{schema}\".everstore_meta WHERE key = 'schema_version'"
        ).fetchone()
    return str(row[0])


def has_blob_table(conninfo: str, schema: str) -> bool:
    with raw_connection(conninfo) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".everstore_blobs',))
        return found.fetchone()[0] is not None


@pytest.fixture
def v1_location(location: Location) -> Location:
    """The test's schema, holding the 0.1.0 store."""
    load_v1(*location)
    return location


# -- migration from everstore 0.1.0 ----------------------------------------------------


def test_the_fixture_is_a_version_1_schema(v1_location: Location) -> None:
    assert meta_version(*v1_location) == "1"
    assert not has_blob_table(*v1_location)


def test_a_0_1_0_schema_is_migrated_on_open(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    backend.open()
    assert meta_version(*v1_location) == str(SCHEMA_VERSION) == "5"
    assert has_blob_table(*v1_location)


def test_every_0_1_0_fact_keeps_its_seq_time_and_context(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    backend.open()
    facts = backend.facts_since(0)
    assert [
        (f.seq, f.time, f.namespace, f.field, f.context, f.data.hex() if f.data else None)
        for f in facts
    ] == [
        (seq, when, ns, field, f"__main__.fill:{line}", data)
        for seq, when, ns, field, line, data in V1_LOG
    ]
    assert backend.last_seq() == 12
    assert backend.seq_at_time(1796108019.0142558) == 4
    assert backend.namespaces("game") == ["game/alice", "game/bob"]
    # the migration chained the existing log: it verifies, and goes on verifying
    with Store(backend) as store:
        assert store.verify().ok and store.verify().facts == 12
        store.storage("game", "alice").round = 9
        assert store.verify().ok and store.verify().facts == 13


def test_0_1_0_values_and_histories_read_right(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    with Store(opened()) as store:
        alice = store.storage("game", "alice")
        assert alice.name == "Alice"
        with alice:  # a mutable value is read in a scope
            assert alice.items == ["sword", "shield"]
        with pytest.raises(AttributeError):
            _ = alice.score
        history = alice.__history__()
        assert [v.data for v in history["score"] if not v.unavailable] == [10, 25]
        assert history["score"][-1].unavailable  # the deletion
        assert [v.seq for v in history["score"]] == [3, 5, 10]
        assert alice.round == 2
        assert alice.price == Decimal("1.50")
        assert alice.pair == (1, "a")
        bob = store.storage("game", "bob")
        assert bob.name == "Bob"
        with bob:
            assert bob.tags == {"x", "y"}


def test_a_migrated_store_takes_new_writes_and_blobs(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    with Store(backend) as store:
        alice = store.storage("game", "alice")
        alice.round = 3  # cached names: the one-write statement
        store.storage("game", "carol").name = "Carol"  # new names: everstore_append
        with store.transaction():
            alice.items.append("bow")
            alice.score = 40
        assert backend.last_seq() == 16
        data = b"a blob"
        digest = hashlib.sha256(data).digest()
        backend.put_blobs([(digest, data)])
        assert backend.get_blob(digest) == data
    with Store(opened()) as again:
        alice = again.storage("game", "alice")
        with alice:
            assert (alice.round, alice.score, alice.items) == (3, 40, ["sword", "shield", "bow"])
        assert again.storage("game", "carol").name == "Carol"


def test_a_migrated_store_notifies_on_its_own_channel(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    # The 0.1.0 everstore_append notified the channel of the schema it was made in
    # (v1); migration re-creates the functions, so a commit through it reaches the
    # listeners of the schema the store is in now.
    # Another conninfo: this process does not wake the watcher itself (as it wakes
    # the backends of one store it knows), only the notification can.
    writer = opened()
    watcher = PostgreSQL(v1_location[0] + " application_name=watcher", schema=v1_location[1])
    writer.open()
    watcher.open()
    token = watcher.change_token()
    seen = threading.Event()

    def watch() -> None:
        if watcher.wait_for_change(token, 30):
            seen.set()

    thread = threading.Thread(target=watch)
    thread.start()
    with Store(writer) as store:
        store.storage("game", "dave").name = "Dave"  # new names: everstore_append
    thread.join(35)
    watcher.close()
    assert seen.is_set(), "the migrated store's commit was not notified"


def test_migrate_false_refuses_an_old_schema_and_leaves_it(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened(migrate=False)
    with pytest.raises(SchemaError) as caught:
        backend.open()
    message = str(caught.value)
    assert "version 1" in message and "needs version 5" in message
    assert "migrate=True" in message
    assert meta_version(*v1_location) == "1"
    assert not has_blob_table(*v1_location)
    with raw_connection(v1_location[0]) as conn:
        count = conn.execute(f'SELECT count(*) FROM "{v1_location[1]}".everstore_log')
        assert count.fetchone()[0] == 12


def test_migrate_false_opens_a_current_or_new_schema(opened: Callable[..., PostgreSQL]) -> None:
    with Store(opened(migrate=False)) as store:
        store.storage("doc").v = 1
    with Store(opened(migrate=False)) as again:
        assert again.storage("doc").v == 1


def test_migrate_must_be_a_bool(location: Location) -> None:
    with pytest.raises(TypeError, match="migrate"):
        PostgreSQL(location[0], schema=location[1], migrate="yes")  # type: ignore[arg-type]


def test_opening_twice_migrates_once(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backends = [opened() for _ in range(4)]
    errors: list[BaseException] = []

    def open_one(backend: PostgreSQL) -> None:
        try:
            backend.open()
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    again = opened()
    again.open()  # a migrated schema is just opened
    assert meta_version(*v1_location) == "5"
    assert backends[0].last_seq() == 12
    with raw_connection(v1_location[0]) as conn:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s)",
            (f'"{v1_location[1]}".everstore_blobs',),
        ).fetchone()[0]
    assert triggers == 2  # append_only and no_truncate, created once


def test_a_foreign_blob_table_stops_the_migration_and_changes_nothing(
    v1_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    conninfo, schema = v1_location
    with raw_connection(conninfo) as conn:
        conn.execute(f'CREATE TABLE "{schema}".everstore_blobs (x int)')
    with pytest.raises(SchemaError, match="choose another prefix or schema"):
        opened().open()
    assert meta_version(conninfo, schema) == "1"


# -- the blob table -----------------------------------------------------------------------


def blob(text: str) -> tuple[bytes, bytes]:
    data = text.encode()
    return hashlib.sha256(data).digest(), data


def test_blobs_are_put_and_got(opened: Callable[..., PostgreSQL]) -> None:
    backend = opened()
    backend.open()
    first, second = blob("one"), blob("two" * 10_000)
    backend.put_blobs([first, second])
    assert backend.get_blob(first[0]) == b"one"
    assert backend.get_blob(second[0]) == second[1]


def test_putting_a_blob_again_changes_nothing(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    backend.open()
    digest, data = blob("same")
    backend.put_blobs([(digest, data)])
    backend.put_blobs([(digest, data), (digest, data)])  # again, and twice in one batch
    backend.put_blobs([])
    assert backend.get_blob(digest) == data
    with raw_connection(location[0]) as conn:
        count = conn.execute(f"SELECT count(*) FROM {backend.table('blobs')}").fetchone()[0]
    assert count == 1


def test_a_missing_blob_is_none(opened: Callable[..., PostgreSQL]) -> None:
    backend = opened()
    backend.open()
    assert backend.get_blob(hashlib.sha256(b"never stored").digest()) is None


@pytest.mark.parametrize("length", [0, 31, 33])
def test_a_digest_of_the_wrong_length_is_refused(
    location: Location, opened: Callable[..., PostgreSQL], length: int
) -> None:
    backend = opened()
    backend.open()
    good = blob("good")
    with pytest.raises(ValueError, match=f"blob 1's digest must be 32 bytes.*got {length}"):
        backend.put_blobs([good, (b"d" * length, b"data")])
    with pytest.raises(ValueError, match=f"got {length} bytes"):
        backend.get_blob(b"d" * length)
    assert backend.get_blob(good[0]) is None  # the batch wrote nothing
    with raw_connection(location[0]) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(f"INSERT INTO {backend.table('blobs')} VALUES (%s, %s)", (b"d" * length, b"x"))


def test_blob_data_must_be_bytes(opened: Callable[..., PostgreSQL]) -> None:
    backend = opened()
    backend.open()
    digest, _ = blob("x")
    with pytest.raises(TypeError, match="blob 0's data must be bytes, got str"):
        backend.put_blobs([(digest, "x")])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET data = 'other'",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
    ],
)
def test_the_database_refuses_to_rewrite_blobs(
    location: Location, opened: Callable[..., PostgreSQL], statement: str
) -> None:
    backend = opened()
    backend.open()
    digest, data = blob("kept")
    backend.put_blobs([(digest, data)])
    table = backend.table("blobs")
    with (
        raw_connection(location[0]) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as caught,
    ):
        conn.execute(statement.format(t=table))
    assert "append-only" in str(caught.value)
    assert backend.get_blob(digest) == data


def test_blobs_need_an_open_backend(opened: Callable[..., PostgreSQL]) -> None:
    backend = opened()
    with pytest.raises(StoreClosedError):
        backend.get_blob(blob("x")[0])
    with pytest.raises(StoreClosedError):
        backend.put_blobs([blob("x")])


# -- migration from schema version 3 (commits notified every time) -------------------------


@pytest.fixture
def v3_location(location: Location) -> Location:
    """The test's schema, holding a store of schema version 3."""
    load_v1(*location, dump=V3_DUMP, name="v3")
    return location


def _counter_layout(conninfo: str, schema: str) -> tuple[list[str], bool, str]:
    """The counter's columns, whether the barrier exists, and when no_rewind fires."""
    with raw_connection(conninfo) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = 'everstore_counter' ORDER BY ordinal_position",
                (schema,),
            )
        ]
        barrier = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".everstore_barrier',))
        trigger = conn.execute(
            "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger AS t WHERE t.tgname = 'no_rewind' "
            "AND t.tgrelid = to_regclass(%s)",
            (f'"{schema}".everstore_counter',),
        ).fetchone()[0]
        return columns, barrier.fetchone()[0] is not None, trigger


def test_a_version_3_store_is_migrated_to_version_5_on_open(
    v3_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    assert meta_version(*v3_location) == "3"
    columns, barrier, trigger = _counter_layout(*v3_location)
    assert (columns, barrier) == (["id", "seq", "time"], False)
    assert " BEFORE UPDATE " in trigger
    with Store(opened()) as store:
        alice = store.storage("game", "alice")
        assert (alice.name, alice.round, alice.pair) == ("Alice", 2, (1, "a"))
        assert [v.seq for v in alice.__history__()["score"]] == [3, 5, 10]
        alice.round = 3  # the new commit step, with its barrier
        assert [v.data for v in alice.__history__()["round"]] == [1, 2, 3]
        assert alice.__history__()["round"][-1].seq == 13
        assert store.verify().ok and store.verify().facts == 13
    assert meta_version(*v3_location) == "5"
    columns, barrier, trigger = _counter_layout(*v3_location)
    assert (columns, barrier) == (["id", "seq", "time", "armed", "notified", "chain"], True)
    assert " AFTER UPDATE " in trigger


def test_migrate_false_refuses_a_version_3_store_and_leaves_it(
    v3_location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    with pytest.raises(SchemaError) as refused:
        opened(migrate=False).open()
    message = str(refused.value)
    assert "version 3" in message and "needs version 5" in message
    assert "migrate=True" in message
    assert meta_version(*v3_location) == "3"
    assert _counter_layout(*v3_location)[:2] == (["id", "seq", "time"], False)
