"""Damaged and foreign PostgreSQL schemas (docs/integrity.md, "PostgreSQL: damaged and
foreign schemas").

A real store (a few namespaces, immutable and mutable values, one large enough for
TOAST) is damaged with raw SQL, its triggers disabled where they would refuse it; or
another program's relations are put where a store would be. Opening and reading the
schema through the public API must give a typed everstore error naming the damage,
or exactly what the undamaged store gave; and nothing of the schema may change: its
relations, columns, types, functions, triggers, every row and every sequence (the
counter's ``armed`` and ``notified`` flags aside, which a listener sets when a store
opens: see "Change notification" in docs/postgresql.md).
"""

from __future__ import annotations

import functools
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from everstore import BackendError, CorruptStoreError, DecodeError, SchemaError, Store
from everstore.backends.postgresql.schema import SCHEMA_VERSION, TABLES
from pg_server import Location, PgServer, raw_connection

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from everstore.backends.postgresql import PostgreSQL  # noqa: E402

#: the errors a damaged schema may raise; anything else is a bug
TYPED = (SchemaError, BackendError, DecodeError)

NAMESPACES = ("a", "b", "c")
#: a v1 store (see tests/test_schema_postgresql.py)
V1_DUMP = Path(__file__).resolve().parent / "data" / "pg-schema-0.1.0.sql"


def _open(location: Location, **options: Any) -> Store:
    return Store(PostgreSQL(location[0], schema=location[1], **options))


def _build(location: Location) -> None:
    with _open(location) as store:
        for round_ in range(4):
            for name in NAMESPACES:
                ns = store.namespace(("robust", name))
                store.write(ns, "text", f"{name} round {round_}")
                store.write(ns, "pair", (round_, name))
                if round_ == 2:
                    store.write(ns, "large", "large " * 5_000)  # TOAST
        with store.transaction():
            for name in NAMESPACES:
                store.storage("robust", name).items = [name]
        with store.transaction():
            store.storage("robust", "c").items.append("more")  # a delta


Parts = dict[tuple[Any, ...], Any]


def _read_parts(store: Store) -> Iterator[tuple[tuple[Any, ...], Callable[[], Any]]]:
    """Every part of the store a reader can ask for, as (key, read) pairs."""
    yield ("namespaces",), lambda: store.namespaces()
    yield (
        ("follow",),
        lambda: [(c.seq, c.namespace, c.field, c.data) for c in store.follow(timeout=0)],
    )
    for name in NAMESPACES:
        parts = ("robust", name)
        yield ("fields", name), functools.partial(_fields, store, parts)
        for field_ in ("text", "pair", "large", "items"):
            yield ("history", name, field_), functools.partial(_history, store, parts, field_)
            yield ("value", name, field_), functools.partial(_value, store, parts, field_)


def _fields(store: Store, parts: tuple[str, ...]) -> list[str]:
    return store.fields(store.namespace(parts))


def _history(store: Store, parts: tuple[str, ...], field_: str) -> list[Any] | None:
    ns = store.namespace(parts)
    return store.history(ns, field_).values() if field_ in store.fields(ns) else None


def _value(store: Store, parts: tuple[str, ...], field_: str) -> Any:
    ns = store.namespace(parts)
    if field_ not in store.fields(ns):
        return None
    with store.transaction():  # a mutable value is read in a scope
        value = store.read(ns, field_)
        return list(value) if isinstance(value, list) else value


@pytest.fixture(scope="module")
def expected(pg_server: PgServer) -> Parts:
    """What every part of the undamaged store reads."""
    from pg_server import drop_schema, fresh_schema

    location = (pg_server.conninfo, fresh_schema())
    try:
        _build(location)
        with _open(location) as store:
            return {key: read() for key, read in _read_parts(store)}
    finally:
        drop_schema(*location)


@pytest.fixture
def built(location: Location) -> Location:
    """The test's schema, holding the store that ``expected`` read."""
    _build(location)
    return location


# -- what must not change ------------------------------------------------------------


def _snapshot(location: Location) -> dict[str, Any]:
    """The schema's catalog entries and every row of its tables and views, and its
    sequences' states (the counter's armed and notified flags left out)."""
    conninfo, schema = location
    from psycopg import sql

    with raw_connection(conninfo) as conn:

        def rows(query: str) -> list[tuple[Any, ...]]:
            found: list[tuple[Any, ...]] = conn.execute(query, (schema,)).fetchall()
            return found

        found: dict[str, Any] = {
            "schema": rows("SELECT nspname FROM pg_namespace WHERE nspname = %s"),
            "relations": rows(
                "SELECT c.relname, c.relkind, c.relfilenode FROM pg_class AS c JOIN pg_namespace "
                "AS n ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1"
            ),
            "columns": rows(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"
            ),
            "types": rows(
                "SELECT t.typname FROM pg_type AS t JOIN pg_namespace AS n "
                "ON n.oid = t.typnamespace WHERE n.nspname = %s ORDER BY 1"
            ),
            "functions": rows(
                "SELECT p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc) "
                "FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s ORDER BY 1, 2"
            ),
            "triggers": rows(
                "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger AS t "
                "JOIN pg_class AS c ON c.oid = t.tgrelid JOIN pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal "
                "ORDER BY 1, 2"
            ),
        }
        for relname, relkind, _ in found["relations"]:
            name = sql.Identifier(schema, relname)
            if relkind in ("r", "v", "m"):
                query = sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(j, E'\\n' ORDER BY j), '')) "
                    "FROM (SELECT (to_jsonb(t) - 'armed' - 'notified')::text AS j "
                    "FROM {} AS t) AS s"
                ).format(name)
            elif relkind == "S":
                query = sql.SQL("SELECT last_value, is_called FROM {}").format(name)
            else:
                continue
            found[f"rows of {relname}"] = conn.execute(query).fetchall()
    return found


@dataclass
class Outcome:
    #: the typed error of the open, if it failed
    open_error: Exception | None = None
    #: the parts read back exactly
    same: set[tuple[Any, ...]] = field(default_factory=set)
    #: the typed errors of reads, by part
    errors: dict[tuple[Any, ...], Exception] = field(default_factory=dict)
    #: the parts read back different
    wrong: dict[tuple[Any, ...], Any] = field(default_factory=dict)


def _attempt(location: Location, expected: Parts | None = None, **options: Any) -> Outcome:
    """Open the store and read every part; check that nothing of the schema changed."""
    before = _snapshot(location)
    outcome = Outcome()
    try:
        store = _open(location, **options)
    except TYPED as error:
        outcome.open_error = error
    else:
        assert expected is not None, "the store opened"
        with store:
            for key, read in _read_parts(store):
                try:
                    got = read()
                except TYPED as error:
                    outcome.errors[key] = error
                    continue
                if got == expected[key]:
                    outcome.same.add(key)
                else:
                    outcome.wrong[key] = got
    assert _snapshot(location) == before, "the schema was written"
    return outcome


def _sql(location: Location, *statements: str) -> None:
    """Run statements on the schema, ``{s}`` naming it and ``{log}``, ``{meta}``, ...
    its tables; the triggers of every store table are disabled meanwhile."""
    conninfo, schema = location
    names = {suffix: f'"{schema}".everstore_{suffix}' for suffix in TABLES}
    with raw_connection(conninfo) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class AS c JOIN pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                (schema,),
            )
        ]
        for table in tables:
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(statement.format(s=f'"{schema}"', **names))
        for table in tables:
            kind = conn.execute(
                "SELECT c.relkind FROM pg_class AS c WHERE c.oid = to_regclass(%s)", (table,)
            ).fetchone()
            if kind is not None and kind[0] == "r":
                conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def _seq_of(location: Location, namespace: str, field_: str) -> int:
    """The seq of the latest fact of ``field_`` in ``robust/<namespace>``."""
    conninfo, schema = location
    with raw_connection(conninfo) as conn:
        row = conn.execute(
            f'SELECT max(l.seq) FROM "{schema}".everstore_log AS l '
            f'JOIN "{schema}".everstore_namespaces AS n ON n.id = l.ns '
            f'JOIN "{schema}".everstore_fields AS f ON f.id = l.field '
            "WHERE n.name = %s AND f.name = %s",
            (f"robust/{namespace}", field_),
        ).fetchone()
    return int(row[0])


# -- the undamaged store ------------------------------------------------------------------


def test_the_undamaged_store_reads_whole_and_opening_it_writes_nothing(
    built: Location, expected: Parts
) -> None:
    outcome = _attempt(built, expected)
    assert outcome.open_error is None and not outcome.errors and not outcome.wrong
    assert outcome.same == set(expected)


# -- 1. another program's relations under our names --------------------------------------

CURRENT = f"'{SCHEMA_VERSION}'"

FOREIGN: dict[str, tuple[list[str], str]] = {
    "our log's name, other columns": (
        [
            "CREATE TABLE {s}.everstore_log (id serial PRIMARY KEY, payload text)",
            "INSERT INTO {s}.everstore_log(payload) VALUES ('started')",
        ],
        "no everstore_meta",
    ),
    "our meta's name, no schema_version": (
        [
            "CREATE TABLE {s}.everstore_meta (key text PRIMARY KEY, value text)",
            "INSERT INTO {s}.everstore_meta VALUES ('owner', 'billing')",
        ],
        "has no schema_version",
    ),
    "our meta's name, other columns": (
        ["CREATE TABLE {s}.everstore_meta (id int, note text)"],
        "is not an everstore table",
    ),
    "a view named like our log": (
        ["CREATE VIEW {s}.everstore_log AS SELECT 1::bigint AS seq"],
        "no everstore_meta",
    ),
    "a sequence named like our counter": (
        ["CREATE SEQUENCE {s}.everstore_counter"],
        "no everstore_meta",
    ),
    "a meta claiming this version, over a log of other columns": (
        [
            "CREATE TABLE {s}.everstore_meta (key text PRIMARY KEY, value text)",
            "INSERT INTO {s}.everstore_meta VALUES ('schema_version', " + CURRENT + ")",
            "CREATE TABLE {s}.everstore_log (id serial PRIMARY KEY, payload text)",
        ],
        "everstore_log has the columns (id integer, payload text) instead of (seq bigint,",
    ),
    "a meta claiming this version, alone": (
        [
            "CREATE TABLE {s}.everstore_meta (key text PRIMARY KEY, value text)",
            "INSERT INTO {s}.everstore_meta VALUES ('schema_version', " + CURRENT + ")",
        ],
        "everstore_log, everstore_namespaces, everstore_fields",
    ),
    "a view as meta claiming this version": (
        [
            "CREATE VIEW {s}.everstore_meta AS SELECT 'schema_version'::text AS key, "
            + CURRENT
            + "::text AS value",
        ],
        "everstore_meta is a view, not a table",
    ),
    "every relation of ours, other columns": (
        [
            "CREATE TABLE {s}.everstore_meta (key text PRIMARY KEY, value text)",
            "INSERT INTO {s}.everstore_meta VALUES ('schema_version', " + CURRENT + ")",
            *(
                f"CREATE TABLE {{s}}.everstore_{suffix} (something text)"
                for suffix in TABLES
                if suffix != "meta"
            ),
        ],
        "everstore_barrier is a table, not a sequence",
    ),
    "a meta claiming an older version, over a log of other columns": (
        [
            "CREATE TABLE {s}.everstore_meta (key text PRIMARY KEY, value text)",
            "INSERT INTO {s}.everstore_meta VALUES ('schema_version', '4')",
            "CREATE TABLE {s}.everstore_log (id serial PRIMARY KEY, payload text)",
        ],
        "cannot migrate (from version 4)",
    ),
    "a type named like our log": (
        ["CREATE TYPE {s}.everstore_log AS ENUM ('x')"],
        "choose another prefix or schema",
    ),
    "a function of ours, with our signature": (
        [
            "CREATE FUNCTION {s}.everstore_seq_at_time(p_when float8) RETURNS bigint "
            "LANGUAGE sql AS 'SELECT 42::bigint'"
        ],
        "choose another prefix or schema",
    ),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_another_programs_relations_are_refused_at_open(location: Location, case: str) -> None:
    statements, says = FOREIGN[case]
    _sql(location, "CREATE SCHEMA {s}", *statements)
    outcome = _attempt(location)
    assert isinstance(outcome.open_error, SchemaError), case
    message = str(outcome.open_error)
    assert says in message, message
    assert location[1] in message, message


def test_a_foreign_schema_is_refused_without_migrating_too(location: Location) -> None:
    statements, _ = FOREIGN["a meta claiming an older version, over a log of other columns"]
    _sql(location, "CREATE SCHEMA {s}", *statements)
    outcome = _attempt(location, migrate=False)
    assert isinstance(outcome.open_error, SchemaError)
    assert "version 4" in str(outcome.open_error)


# -- 2. a store partly dropped --------------------------------------------------------------

DROPPED: dict[str, tuple[list[str], str]] = {
    "the log": (["DROP TABLE {log}"], "everstore_log missing"),
    "the log and the chain": (
        ["DROP TABLE {log}", "DROP TABLE {chain}"],
        "everstore_log, everstore_chain missing",
    ),
    "the namespaces' names": (["DROP TABLE {namespaces}"], "everstore_namespaces missing"),
    "the blobs": (["DROP TABLE {blobs}"], "everstore_blobs missing"),
    "the barrier": (["DROP SEQUENCE {barrier}"], "everstore_barrier missing"),
    "a column of the log": (
        ["ALTER TABLE {log} DROP COLUMN ctx"],
        "everstore_log has the columns (seq bigint, time double precision, ns integer, "
        "field integer, data bytea) instead of",
    ),
    "the log, a view in its place": (
        ["DROP TABLE {log}", "CREATE VIEW {log} AS SELECT 1::bigint AS seq"],
        "everstore_log is a view, not a table",
    ),
    "the counter's row": (["DELETE FROM {counter}"], "everstore_counter has no row"),
    "the schema_version": (
        ["DELETE FROM {meta} WHERE key = 'schema_version'"],
        "has no schema_version",
    ),
    "the meta table": (["DROP TABLE {meta}"], "but no everstore_meta"),
}


@pytest.mark.parametrize("case", DROPPED)
def test_a_partly_dropped_store_is_refused_at_open_naming_what_is_missing(
    built: Location, case: str
) -> None:
    statements, says = DROPPED[case]
    _sql(built, *statements)
    outcome = _attempt(built)
    assert isinstance(outcome.open_error, SchemaError), case
    message = str(outcome.open_error)
    assert says in message, message
    assert built[1] in message, message


def _load_v1(location: Location) -> None:
    """The 0.1.0 store (schema version 1) of tests/test_schema_postgresql.py."""
    conninfo, schema = location
    lines = [line for line in V1_DUMP.read_text().splitlines() if not line.startswith("\\")]
    with raw_connection(conninfo) as conn:
        conn.execute(re.sub(r"\bv1\b", schema, "\n".join(lines)))


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("DROP TABLE {contexts}", 'relation "{schema}.everstore_contexts" does not exist'),
        ("DELETE FROM {counter}", "everstore_counter has no row"),
    ],
    ids=["a table", "the counter's row"],
)
def test_an_old_store_partly_dropped_is_refused_and_not_migrated(
    location: Location, statement: str, says: str
) -> None:
    _load_v1(location)
    _sql(location, statement)
    outcome = _attempt(location)  # the snapshot shows the migration rolled back
    assert isinstance(outcome.open_error, SchemaError)
    assert says.format(schema=location[1]) in str(outcome.open_error)


# -- 3. a value's bytes that are not the codec's -------------------------------------------

GARBAGE = {
    "noise": bytes(range(0xFE, 0x7F, -3)),
    "empty": b"",
    "JSON cut short": b'"unterminated',
    "an unknown tag": b'~{"~nope": 1}',
}


@pytest.mark.parametrize("garbage", GARBAGE)
def test_a_value_that_does_not_decode_names_its_fact_namespace_and_store(
    built: Location, expected: Parts, garbage: str
) -> None:
    seq = _seq_of(built, "a", "text")
    _sql(built, f"UPDATE {{log}} SET data = {_bytea(GARBAGE[garbage])} WHERE seq = {seq}")
    outcome = _attempt(built, expected)
    assert outcome.open_error is None and not outcome.wrong
    assert outcome.errors, "the damage was not seen"
    for key, error in outcome.errors.items():
        assert key == ("follow",) or _of(key) == "a", key
        assert isinstance(error, DecodeError), (key, error)
        message = str(error)
        assert f"fact {seq} (field 'text' of namespace 'robust/a')" in message, message
        assert built[1] in message and "PostgreSQL(" in message, message
    # every namespace but the damaged one reads exactly
    assert {key for key in expected if _of(key) in ("b", "c") or key == ("namespaces",)} <= (
        outcome.same
    )


def _of(key: tuple[Any, ...]) -> str | None:
    """The namespace ("a", "b" or "c") whose part ``key`` is, if any."""
    return str(key[1]) if len(key) > 1 else None


def _bytea(data: bytes) -> str:
    return f"'\\x{data.hex()}'::bytea"


#: garbage that looks like a delta (its first byte)
DELTA_GARBAGE = b"\x01garbage"


def test_a_delta_that_does_not_decode_is_a_typed_error(built: Location, expected: Parts) -> None:
    """Garbage that looks like a delta (its first byte): a typed error, or the
    original value where a read does not need it."""
    seq = _seq_of(built, "c", "items")
    _sql(built, f"UPDATE {{log}} SET data = {_bytea(DELTA_GARBAGE)} WHERE seq = {seq}")
    outcome = _attempt(built, expected)
    assert outcome.open_error is None and not outcome.wrong
    assert outcome.errors, "the damage was not seen"
    assert all(key == ("follow",) or _of(key) == "c" for key in outcome.errors)
    assert all(isinstance(error, DecodeError) for error in outcome.errors.values())


def test_bulk_loading_names_a_value_that_does_not_decode(built: Location) -> None:
    seq = _seq_of(built, "b", "pair")
    _sql(built, f"UPDATE {{log}} SET data = {_bytea(GARBAGE['noise'])} WHERE seq = {seq}")
    with _open(built) as store, pytest.raises(DecodeError) as caught:
        store.load(("robust",))
    assert f"fact {seq} (field 'pair' of namespace 'robust/b')" in str(caught.value)


# -- 4. ids whose names are gone ----------------------------------------------------------


@pytest.mark.parametrize("column", ["field", "ctx"])
def test_a_fact_whose_field_or_context_has_no_name_is_a_typed_error(
    built: Location, expected: Parts, column: str
) -> None:
    seq = _seq_of(built, "b", "pair")
    _sql(built, f"UPDATE {{log}} SET {column} = 9999 WHERE seq = {seq}")
    outcome = _attempt(built, expected)
    assert outcome.open_error is None and not outcome.wrong
    assert ("follow",) in outcome.errors
    assert {key for key in outcome.errors if key != ("follow",)} == {
        key for key in expected if _of(key) == "b"
    }
    kind = {"field": "field", "ctx": "context"}[column]
    for error in outcome.errors.values():
        assert isinstance(error, CorruptStoreError), error
        message = str(error)
        assert f"fact {seq} of PostgreSQL(" in message and built[1] in message, message
        assert f"{kind} id(s) [9999]" in message, message
    assert {key for key in expected if _of(key) in ("a", "c")} <= outcome.same
    with _open(built) as store, pytest.raises(CorruptStoreError, match=f"fact {seq} "):
        store.load(("robust",))


def test_facts_whose_namespace_has_no_name(built: Location, expected: Parts) -> None:
    """A namespace's name row deleted: its facts belong to no namespace. A read by
    namespace cannot see them (the namespace reads as empty, and is not listed); the
    follow feed and verify(), which read the log itself, raise a typed error naming
    the first of them."""
    conninfo, schema = built
    with raw_connection(conninfo) as conn:
        ns_id, first, count = conn.execute(
            f'SELECT n.id, min(l.seq), count(*) FROM "{schema}".everstore_namespaces AS n '
            f'JOIN "{schema}".everstore_log AS l ON l.ns = n.id WHERE n.name = %s GROUP BY n.id',
            ("robust/a",),
        ).fetchone()
    _sql(built, f"DELETE FROM {{namespaces}} WHERE id = {ns_id}")
    outcome = _attempt(built, expected)
    assert outcome.open_error is None
    error = outcome.errors.pop(("follow",))
    assert isinstance(error, CorruptStoreError)
    assert f"fact {first} and {count - 1} more of PostgreSQL(" in str(error)
    assert f"namespace id(s) [{ns_id}]" in str(error)
    assert not outcome.errors
    listed = expected[("namespaces",)]
    assert outcome.wrong[("namespaces",)] == [ns for ns in listed if "a" not in ns]
    assert {key for key in outcome.wrong if key != ("namespaces",)} == {
        key for key in expected if _of(key) == "a"
    }
    with _open(built) as store, pytest.raises(CorruptStoreError, match=f"fact {first} "):
        store.verify()


def test_the_counter_row_deleted_after_the_open(built: Location) -> None:
    with _open(built) as store:
        assert store.fields(store.namespace(("robust", "a")))
        _sql(built, "DELETE FROM {counter}")
        with pytest.raises(CorruptStoreError, match=r"everstore_counter.* has no row"):
            store.fields(store.namespace(("robust", "b")))
        with pytest.raises(CorruptStoreError, match=r"everstore_counter.* has no row"):
            store.load(("robust",))
        assert isinstance(store.backend, PostgreSQL)
        with pytest.raises(CorruptStoreError, match=r"everstore_counter.* has no row"):
            store.backend.last_seq()


# -- 5. no server, or not PostgreSQL -------------------------------------------------------


def _with(conninfo: str, **params: Any) -> str:
    return str(psycopg.conninfo.make_conninfo(conninfo, **params))


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"dbname": "no_such_database"}, 'database "no_such_database" does not exist'),
        ({"user": "no_such_role"}, 'role "no_such_role" does not exist'),
    ],
    ids=["no such database", "no such role"],
)
def test_a_database_or_role_that_does_not_exist(
    location: Location, params: dict[str, str], says: str
) -> None:
    conninfo, schema = location
    with pytest.raises(BackendError) as caught:
        Store(PostgreSQL(_with(conninfo, **params), schema=schema))
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL (") and says in message, message


def test_nothing_listening(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot connect to PostgreSQL") as caught:
        Store(PostgreSQL(f"host={tmp_path} port=5999 dbname=x"))
    assert str(tmp_path) in str(caught.value)


@pytest.fixture
def not_postgresql() -> Iterator[int]:
    """A TCP port on localhost where a server answers as HTTP does, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # so that the thread sees ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def test_a_server_that_is_not_postgresql(not_postgresql: int) -> None:
    conninfo = f"host=127.0.0.1 port={not_postgresql} dbname=x connect_timeout=5"
    with pytest.raises(BackendError, match="cannot connect to PostgreSQL") as caught:
        Store(PostgreSQL(conninfo))
    assert f"port={not_postgresql}" in str(caught.value)


def test_a_conninfo_that_is_not_one() -> None:
    with pytest.raises(BackendError, match="bad PostgreSQL conninfo"):
        PostgreSQL("host=x port")


@pytest.fixture
def password_role(pg_server: PgServer) -> Iterator[str]:
    """A role that must give its password (``right``), by a rule added for it alone
    to the session server's pg_hba.conf (which otherwise trusts every connection)."""
    if not pg_server.owned:
        pytest.skip("needs the session's own server (its pg_hba.conf)")
    role = "everstore_password_role"
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    with raw_connection(pg_server.conninfo) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right'")
        try:
            hba.write_text(f"local all {role} scram-sha-256\n{original}")
            conn.execute("SELECT pg_reload_conf()")
            yield role
        finally:
            hba.write_text(original)
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"DROP ROLE {role}")


def test_a_wrong_password(location: Location, password_role: str) -> None:
    conninfo, schema = location
    wrong = _with(conninfo, user=password_role, password="not-the-password")
    with pytest.raises(BackendError) as caught:
        Store(PostgreSQL(wrong, schema=schema))
    message = str(caught.value)
    assert f'password authentication failed for user "{password_role}"' in message, message
    assert "not-the-password" not in message
    right = _with(conninfo, user=password_role, password="right")
    with raw_connection(right) as conn:  # the rule is in force: the right one connects
        assert conn.execute("SELECT current_user").fetchone()[0] == password_role


# -- 6. a newer schema version ----------------------------------------------------------


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 99])
def test_a_newer_schema_version_is_refused(built: Location, version: int) -> None:
    _sql(built, f"UPDATE {{meta}} SET value = '{version}' WHERE key = 'schema_version'")
    for migrate in (True, False):
        outcome = _attempt(built, migrate=migrate)
        assert isinstance(outcome.open_error, SchemaError)
        message = str(outcome.open_error)
        assert f"schema version {version}" in message and "Upgrade everstore" in message
