"""PostgreSQL-specific behaviour, against a real server (tests/pg_server.py).

The conformance suite already runs on PostgreSQL (tests/conftest.py); these tests
cover what only a server shows: schema versions and foreign tables, the database
refusing to rewrite history, schemas and prefixes, connection failures, atomicity
when a statement or a connection dies, a server restart, notifications across
processes, and many writer processes at once.
"""

from __future__ import annotations

import importlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

import pytest

from everstore import BackendError, SchemaError, Store, StoreClosedError
from everstore.backends.postgresql.schema import SCHEMA_VERSION
from everstore.log import Write
from pg_server import Location, PgServer, drop_schema, fresh_schema, raw_connection

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from everstore.backends.postgresql import PostgreSQL  # noqa: E402


def count_rows(conninfo: str, backend: PostgreSQL, table: str) -> int:
    with raw_connection(conninfo) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {backend.table(table)}").fetchone()[0])


# -- schema: created with a version, never dropped -------------------------------------


def test_schema_is_created_with_a_version_and_reopened(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    with Store(backend) as store:
        store.storage("doc").title = "hello"
    with raw_connection(location[0]) as conn:
        version = conn.execute(
            f"SELECT value FROM {backend.table('meta')} WHERE key = 'schema_version'"
        ).fetchone()
    assert version == (str(SCHEMA_VERSION),)
    with Store(opened()) as again:
        assert again.storage("doc").title == "hello"


def test_a_newer_schema_version_is_refused_and_nothing_is_dropped(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    first = opened()
    with Store(first) as store:
        store.storage("doc").title = "kept"
    with raw_connection(location[0]) as conn:
        conn.execute(f"UPDATE {first.table('meta')} SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaError) as caught:
        Store(opened())
    assert "99" in str(caught.value) and "Upgrade everstore" in str(caught.value)
    assert count_rows(location[0], first, "log") == 1  # nothing dropped, nothing changed


def test_foreign_tables_with_our_names_are_refused(location: Location) -> None:
    conninfo, schema = location
    with raw_connection(conninfo) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".everstore_log (id int)')
        conn.execute(f'INSERT INTO "{schema}".everstore_log VALUES (7)')
    backend = PostgreSQL(conninfo, schema=schema)
    with pytest.raises(SchemaError) as caught:
        backend.open()
    assert "everstore_log" in str(caught.value) and "not created by everstore" in str(caught.value)
    backend.close()
    with raw_connection(conninfo) as conn:
        assert conn.execute(f'SELECT id FROM "{schema}".everstore_log').fetchall() == [(7,)]
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchone()
    assert tables == (1,)  # nothing of ours was created beside it


def test_a_foreign_meta_table_is_refused(location: Location) -> None:
    conninfo, schema = location
    with raw_connection(conninfo) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".everstore_meta (something int)')
    backend = PostgreSQL(conninfo, schema=schema)
    with pytest.raises(SchemaError, match="not an everstore table"):
        backend.open()
    backend.close()


def test_concurrent_first_opens_do_not_race(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backends = [opened() for _ in range(8)]
    barrier = threading.Barrier(len(backends))
    errors: list[BaseException] = []

    def open_one(backend: PostgreSQL) -> None:
        try:
            barrier.wait(10)
            backend.open()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    stores = [Store(backend) for backend in backends]
    for number, store in enumerate(stores):
        store.storage("race").__setattr__(f"w{number}", number)
    assert len(Store(opened()).storage("race").__fields__()) == 8


# -- the database refuses to rewrite history --------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {log} SET data = 'x'",
        "INSERT INTO {log} SELECT * FROM {log} ON CONFLICT (seq) DO UPDATE SET data = 'x'",
        "INSERT INTO {namespaces}(id, name) VALUES (1, 'x') "
        "ON CONFLICT (id) DO UPDATE SET name = 'x'",
        "DELETE FROM {log}",
        "TRUNCATE {log}",
        "UPDATE {namespaces} SET name = 'other'",
        "DELETE FROM {fields}",
        "TRUNCATE {contexts}",
        "DELETE FROM {counter}",
        "UPDATE {counter} SET seq = 0",
        "TRUNCATE {counter}",
    ],
)
def test_update_delete_truncate_are_refused(
    location: Location, opened: Callable[..., PostgreSQL], statement: str
) -> None:
    backend = opened()
    with Store(backend) as store:
        store.storage("doc").title = "original"
    names = {t: backend.table(t) for t in ("log", "namespaces", "fields", "contexts", "counter")}
    with (
        raw_connection(location[0]) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as caught,
    ):
        conn.execute(statement.format(**names))
    assert "append-only" in str(caught.value) or "backwards" in str(caught.value)
    with Store(opened()) as store:
        assert store.storage("doc").title == "original"
        assert store.last_seq == 1


# -- schemas and prefixes -----------------------------------------------------------------


def test_schema_and_prefix_keep_stores_apart(pg_server: PgServer) -> None:
    conninfo = pg_server.conninfo
    schema = fresh_schema()
    try:
        a = PostgreSQL(conninfo, schema=schema)
        b = PostgreSQL(conninfo, schema=schema, prefix="Other_Store")
        with Store(a) as store_a, Store(b) as store_b:
            store_a.storage("doc").v = "a"
            store_b.storage("doc").v = "b"
            assert store_a.storage("doc").v == "a" and store_b.storage("doc").v == "b"
            assert a.channel != b.channel
        with raw_connection(conninfo) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                )
            }
        assert {"everstore_log", "Other_Store_log", "everstore_meta", "Other_Store_meta"} <= tables
    finally:
        drop_schema(conninfo, schema)


def test_default_schema_is_the_current_one(pg_server: PgServer) -> None:
    conninfo = pg_server.conninfo
    prefix = f"p_{fresh_schema()[2:12]}"
    backend = PostgreSQL(conninfo, prefix=prefix)
    try:
        with Store(backend) as store:
            store.storage("doc").v = 1
        assert backend.table("log") == f'"public"."{prefix}_log"'
    finally:
        with raw_connection(conninfo) as conn:
            for suffix in ("meta", "log", "namespaces", "fields", "contexts", "counter"):
                conn.execute(f'DROP TABLE IF EXISTS public."{prefix}_{suffix}" CASCADE')
            for function in ("append", "seq_at_time", "refuse", "no_rewind"):
                conn.execute(f'DROP FUNCTION IF EXISTS public."{prefix}_{function}" CASCADE')


def test_a_schema_name_needing_quotes_works(pg_server: PgServer) -> None:
    schema = f'odd "name"; {fresh_schema()}'
    try:
        with Store(PostgreSQL(pg_server.conninfo, schema=schema)) as store:
            store.storage("doc").v = 1
        with Store(PostgreSQL(pg_server.conninfo, schema=schema)) as store:
            assert store.storage("doc").v == 1
    finally:
        drop_schema(pg_server.conninfo, schema)


@pytest.mark.parametrize("prefix", ["", "1abc", "a-b", "a;drop", "x" * 41, "é"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        PostgreSQL("dbname=x", prefix=prefix)


@pytest.mark.parametrize("schema", ["", "pg_catalog", "x" * 64, "a\nb"])
def test_bad_schemas_are_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgreSQL("dbname=x", schema=schema)


# -- connection failures ---------------------------------------------------------------------


def test_a_malformed_conninfo_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="conninfo"):
        PostgreSQL("this is = not = a conninfo")


@pytest.mark.parametrize(
    "conninfo",
    [
        "host=127.0.0.1 port=1 dbname=x connect_timeout=5",  # refused at once
        "host=/nonexistent-everstore-socket-dir port=5432 dbname=x",  # no such socket
    ],
)
def test_an_unreachable_server_fails_quickly(conninfo: str) -> None:
    started = time.monotonic()
    backend = PostgreSQL(conninfo)
    with pytest.raises(BackendError, match="cannot connect") as caught:
        Store(backend)
    assert time.monotonic() - started < 5
    assert "password" not in str(caught.value)
    backend.close()


def test_a_missing_database_is_a_backend_error(pg_server: PgServer) -> None:
    conninfo = pg_server.conninfo.replace("dbname=postgres", "dbname=no_such_db_everstore")
    if conninfo == pg_server.conninfo:
        conninfo += " dbname=no_such_db_everstore"
    with pytest.raises(BackendError, match="no_such_db_everstore"):
        Store(PostgreSQL(conninfo))


def test_close_is_idempotent_and_stops_everything(opened: Callable[..., PostgreSQL]) -> None:
    backend = opened()
    store = Store(backend)
    store.storage("doc").v = 1
    assert backend.listening
    listeners = [t for t in threading.enumerate() if t.name.startswith("everstore-listen")]
    store.close()
    backend.close()
    assert not backend.listening
    assert not any(t.is_alive() for t in listeners if t.name.endswith(backend.channel))
    with pytest.raises(StoreClosedError):
        backend.last_seq()


def test_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    module = importlib.import_module("everstore.backends.postgresql")
    with pytest.raises(ImportError, match=r"everstore\[postgres\]"):
        module.PostgreSQL("dbname=x")


# -- atomicity ------------------------------------------------------------------------------


def test_a_batch_failing_on_the_server_leaves_nothing(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    store = Store(backend)
    store.storage("doc").before = 1
    # A trigger that fails the second row of any batch holding b'bad', as a full disk
    # or a constraint would, after the first row was inserted.
    with raw_connection(location[0]) as conn:
        conn.execute(
            f"""CREATE FUNCTION "{location[1]}".fail_bad() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN IF NEW.data = 'bad'::bytea THEN RAISE EXCEPTION 'bad row'; END IF;
            RETURN NEW; END $$"""
        )
        conn.execute(
            f"CREATE TRIGGER fail_bad BEFORE INSERT ON {backend.table('log')} "
            f'FOR EACH ROW EXECUTE FUNCTION "{location[1]}".fail_bad()'
        )
    names_before = count_rows(location[0], backend, "namespaces")
    now = time.time()
    batch = [
        Write("fresh/ns", "a", b"1", "ctx.new:1", now),
        Write("fresh/ns", "b", b"bad", "ctx.new:1", now),
        Write("fresh/other", "c", b"3", "ctx.new:2", now),
    ]
    with pytest.raises(BackendError, match="bad row"):
        backend.append(batch)
    with pytest.raises(BackendError, match="bad row"):
        backend.append([Write("doc", "before", b"bad", "ctx:1", now)])  # the cached-ids path
    context = store.storage("doc").__history__()["before"][0].context
    with pytest.raises(BackendError, match=r"refused a commit of 1 write.*bad row"):
        backend.append_one("doc", "before", b"bad", context, now)  # the libpq path
    s = store.storage("doc")
    with pytest.raises(BackendError), store.transaction():
        s.x = 1
        s.y = "bad"  # encodes differently; the raw write below is the bad one
        store.backend.append([Write("doc", "z", b"bad", "ctx:1", now)])
    assert count_rows(location[0], backend, "log") == 1
    assert count_rows(location[0], backend, "namespaces") == names_before  # interning undone
    assert backend.last_seq() == 1 and store.last_seq == 1
    assert "x" not in s and s.before == 1
    s.after = 2  # the store works on
    with Store(opened()) as other:
        assert other.storage("doc").__fields__() == ["before", "after"]
        assert [f.seq for f in other.backend.facts_since(0)] == [1, 2]


def _lock_waiter(conn: Any, schema: str) -> int:
    """The pid of the session waiting for the commit step's lock on ``schema``'s
    tables (asked until it appears, for at most 10 s). A listener arming the counter
    may wait for the same lock: it is not the commit."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid() AND query LIKE %s AND query NOT LIKE %s",
            (f"%{schema}%", "%SET armed = true%"),
        ).fetchone()
        if row:
            return int(row[0])
    raise AssertionError("no write reached the commit step")


def _kill_mid_commit(backend: PostgreSQL, location: Location, batch: list[Write]) -> object:
    """Append ``batch`` while another connection holds the commit step, terminate the
    appending connection from a third one, and return what append gave or raised.
    A batch of one goes through ``append_one``, the Store's path for one write."""
    conninfo, schema = location
    outcome: list[object] = []

    def append() -> None:
        try:
            if len(batch) == 1:
                outcome.append(backend.append_one(*batch[0]))
            else:
                outcome.append(backend.append(batch))
        except BaseException as exc:
            outcome.append(exc)

    with raw_connection(conninfo) as blocker, raw_connection(conninfo) as killer:
        blocker.execute("BEGIN")
        blocker.execute(f"SELECT * FROM {backend.table('counter')} FOR UPDATE")
        thread = threading.Thread(target=append)
        thread.start()
        pid = _lock_waiter(killer, schema)
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(10)
        blocker.execute("ROLLBACK")
    assert len(outcome) == 1
    return outcome[0]


def test_a_connection_killed_mid_commit_leaves_nothing(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    conninfo = location[0]
    backend = opened()
    store = Store(backend)
    doc = store.storage("doc")
    doc.before = 1
    context = doc.__history__()["before"][0].context
    # New names: the function interns them inside the same transaction.
    fresh = [Write(f"new{i}", "f", b"1", "killed.ctx:1", time.time()) for i in range(50)]
    # Names interned already: the one-statement paths, for several writes and for one.
    cached = [Write("doc", "before", b"2", context, time.time())] * 2
    single = cached[:1]
    read_token = backend.token_reader()
    for batch in (fresh, cached, single):
        before = read_token()
        outcome = _kill_mid_commit(backend, location, batch)
        assert isinstance(outcome, BackendError), outcome
        assert "lost" in str(outcome) and "entirely or not at all" in str(outcome)
        # The outcome is unknown to the client: the Stores are told to look.
        assert read_token() != before
        assert count_rows(conninfo, backend, "log") == 1
        assert backend.last_seq() == 1
        with raw_connection(conninfo) as conn:
            assert conn.execute(
                f"SELECT count(*) FROM {backend.table('namespaces')} WHERE name LIKE 'new%%'"
            ).fetchone() == (0,)
    doc.after = 2  # the pool replaced the dead connection
    assert store.last_seq == 2 and doc.before == 1


_STUCK_WRITER = textwrap.dedent(
    """
    import sys
    from everstore import Store
    from everstore.backends.postgresql import PostgreSQL

    with Store(PostgreSQL(sys.argv[1], schema=sys.argv[2])) as store:
        s = store.storage("doc")
        for value in (0, 1):
            # One line, one context: the first write interns the names, so the
            # second takes the one-write path (straight through libpq).
            s.n = value
            if value == 0:
                print("ready", flush=True)
                sys.stdin.readline()
        print("written", flush=True)
    """
)


def test_ctrl_c_interrupts_a_write_stuck_behind_the_commit_step(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    conninfo, schema = location
    backend = opened()
    Store(backend)  # opens it: the table names are known
    child = subprocess.Popen(
        [sys.executable, "-c", _STUCK_WRITER, conninfo, schema],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        with raw_connection(conninfo) as blocker, raw_connection(conninfo) as watcher:
            blocker.execute("BEGIN")
            blocker.execute(f"SELECT * FROM {backend.table('counter')} FOR UPDATE")
            child.stdin.write("go\n")
            child.stdin.flush()
            _lock_waiter(watcher, schema)
            child.send_signal(signal.SIGINT)
            # The lock is still held: only an interruptible wait lets the child end.
            returncode = child.wait(15)
            blocker.execute("ROLLBACK")
        _, stderr = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert returncode != 0 and "KeyboardInterrupt" in stderr, stderr
    # Cancelled on the server: it did not commit once the lock was released.
    assert count_rows(conninfo, backend, "log") == 1
    assert [f.data for f in backend.facts_since(0)] == [b"0"]


# -- server restart ---------------------------------------------------------------------------


def test_the_store_works_again_after_a_server_restart(
    pg_server: PgServer, opened: Callable[..., PostgreSQL]
) -> None:
    if not pg_server.owned:
        pytest.skip("the server comes from EVERSTORE_PG_CONNINFO: not restarting it")
    writer = Store(opened())
    reader_backend = opened()
    reader = Store(reader_backend)
    writer.storage("doc").v = 1
    assert reader.storage("doc").v == 1
    token = reader_backend.change_token()
    pg_server.restart()
    # The next operation reconnects (idle pooled connections are checked first); a
    # clear BackendError is the other acceptable outcome, never a hang.
    started = time.monotonic()
    try:
        writer.storage("doc").v = 2
    except BackendError as exc:
        assert "PostgreSQL" in str(exc)
        writer.storage("doc").v = 2
    assert time.monotonic() - started < 15
    assert reader_backend.wait_for_change(token, 15)  # the listener reconnected
    assert reader.storage("doc").v == 2
    assert [v.data for v in reader.storage("doc").__history__()["v"]] == [1, 2]


# -- notifications across processes -------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from everstore import Store
    from everstore.backends.postgresql import PostgreSQL

    conninfo, schema, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Store(PostgreSQL(conninfo, schema=schema)) as store:
        s = store.storage("proc", worker)
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(count):
            s.n = i
    """
)


def _writer(location: Location, worker: str, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, location[0], location[1], worker, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _start(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def test_a_reader_sees_another_process_write_after_the_notification(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    backend = opened()
    reader = Store(backend)
    doc = reader.storage("proc", "w0")
    assert "n" not in doc
    read_token = backend.token_reader()
    before = read_token()
    seen = threading.Event()

    def watch() -> None:  # waits on the listener's condition, not on sleeps
        token = backend.change_token()
        while not seen.is_set():
            if backend.wait_for_change(token, 0.5):
                token = backend.change_token()
                if read_token() != before:
                    seen.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    process = _writer(location, "w0", 1)
    _start([process])
    assert process.wait(30) == 0
    assert seen.wait(10), "no notification arrived"
    watcher.join(5)
    assert doc.n == 0  # the next read fetched it


def test_reads_do_not_query_until_something_changes(
    opened: Callable[..., PostgreSQL], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = opened()
    store = Store(backend)
    doc = store.storage("doc")
    doc.v = 1  # our own write: applied from append's answer, no false alarm
    calls: list[int] = []
    original = backend.facts_since
    monkeypatch.setattr(
        backend, "facts_since", lambda seq, limit=None: calls.append(seq) or original(seq, limit)
    )
    for _ in range(1000):
        assert doc.v == 1
    assert calls == []
    token = backend.token_reader()
    cost = min(timeit.repeat(token, number=100_000, repeat=5)) / 100_000
    assert cost < 1e-6, f"change token costs {cost * 1e9:.0f} ns"


def test_one_backend_shared_by_two_stores_keeps_both_current(
    opened: Callable[..., PostgreSQL],
) -> None:
    backend = opened()
    first = Store(backend)
    second = Store(backend)
    first.storage("doc").v = 1
    assert second.storage("doc").v == 1
    second.storage("doc").v = 2
    assert first.storage("doc").v == 2


def test_one_write_survives_a_deallocated_statement_and_carries_large_values(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    # One pooled connection: the one every write and every raw statement below uses.
    backend = opened(min_size=1, max_size=1)
    store = Store(backend)
    s = store.storage("doc")
    s.x = 1  # prepares the one-write commit on the connection
    with backend.connection() as conn:
        conn.execute("DEALLOCATE ALL")  # as a pool's reset or an admin might
    s.x = 2
    big = bytes(range(256)) * 20_000  # 5 MB through libpq's blocking call
    s.blob = big
    del s.x  # a tombstone: NULL data
    s.x = 3
    with Store(opened()) as other:
        o = other.storage("doc")
        assert o.blob == big and o.x == 3
        assert [(v.unavailable, v.data) for v in o.__history__()["x"]] == [
            (False, 1),
            (False, 2),
            (True, None),
            (False, 3),
        ]
    assert [f.seq for f in backend.facts_since(0)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("names", ["new", "interned"])
def test_a_batch_carries_nulls_empty_and_large_values_exactly(
    opened: Callable[..., PostgreSQL], names: str
) -> None:
    backend = opened()
    backend.open()
    now = time.time()
    if names == "interned":  # the cached-ids statement, not the function
        backend.append([Write("doc", "f", b"0", "ctx:1", now)])
    payloads: list[bytes | None] = [b"1", None, b"", bytes(range(256)) * 4_000, b"\x00", None]
    batch = [Write("doc", "f", data, "ctx:1", now) for data in payloads]
    assigned = backend.append(batch)
    facts = backend.facts_since(assigned[0][0] - 1)
    assert [fact.data for fact in facts] == payloads
    assert [fact.seq for fact in facts] == [seq for seq, _ in assigned]


def test_statements_are_not_prepared_when_psycopg_is_told_not_to(
    opened: Callable[..., PostgreSQL],
) -> None:
    # What pgbouncer's transaction mode needs: prepare_threshold=None, as for psycopg.
    backend = opened(min_size=1, max_size=1, kwargs={"prepare_threshold": None})
    store = Store(backend)
    s = store.storage("doc")
    for value in range(10):
        s.x = value  # one line: from the second write on, the one-write path
    del s.x
    with backend.connection() as conn:
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
    with Store(opened()) as other:
        history = other.storage("doc").__history__()["x"]
        assert [v.data for v in history] == [*range(10), None]
    # The default prepares the one-write commit once per connection.
    prepared = opened(min_size=1, max_size=1)
    t = Store(prepared).storage("doc")
    for value in range(3):
        t.y = value
    with prepared.connection() as conn:
        names = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    assert ("everstore_append_one",) in names


def test_synchronous_commit_can_be_relaxed(opened: Callable[..., PostgreSQL]) -> None:
    relaxed = opened(synchronous_commit=False)
    strict = opened(synchronous_commit=True)
    for backend, expected in ((relaxed, "off"), (strict, "on")):
        with Store(backend) as store:
            store.storage("doc").v = expected
            with backend.connection() as conn:
                assert conn.execute("SHOW synchronous_commit").fetchone() == (expected,)


def test_returned_seqs_and_times_are_the_stored_ones(opened: Callable[..., PostgreSQL]) -> None:
    backend = opened()
    backend.open()
    now = time.time()
    mixed = [Write("t", "a", b"1", "c:1", now), Write("t", "b", b"2", "c:1", now - 100)]
    mixed.append(Write("t", "c", b"3", "c:1", now + 1))
    assigned = backend.append(mixed)  # names new: the function
    assigned += backend.append([Write("t", "a", b"4", "c:1", now - 50)] * 3)  # cached ids
    assigned.append(backend.append_one("t", "b", None, "c:1", now - 60))
    stored = [(fact.seq, fact.time) for fact in backend.facts_since(0)]
    assert assigned == stored
    assert [seq for seq, _ in stored] == list(range(1, 8))
    times = [when for _, when in stored]
    assert times == sorted(times) and times[0] == now and times[2] == now + 1


# -- many processes at once ------------------------------------------------------------------------

#: writes per process in the stress test (8 processes)
STRESS_WRITES = int(os.environ.get("EVERSTORE_STRESS_WRITES", "5000"))


@pytest.mark.slow
def test_eight_processes_write_and_a_follower_sees_each_fact_once_in_order(
    location: Location, opened: Callable[..., PostgreSQL]
) -> None:
    workers, count = 8, STRESS_WRITES
    backend = opened()
    backend.open()
    processes = [_writer(location, f"w{k}", count) for k in range(workers)]
    started = time.monotonic()
    _start(processes)
    total = workers * count
    cursor = 0
    seen: list[tuple[int, float, str, bytes | None]] = []
    deadline = time.monotonic() + 600
    while cursor < total and time.monotonic() < deadline:
        token = backend.change_token()
        facts = backend.facts_since(cursor, 5000)
        for fact in facts:
            # The follower's invariant: no fact ever appears behind one already seen.
            assert fact.seq == cursor + 1, f"gap: {cursor} then {fact.seq}"
            cursor = fact.seq
            seen.append((fact.seq, fact.time, fact.namespace, fact.data))
        if not facts:
            backend.wait_for_change(token, 5)
    for process in processes:
        assert process.wait(60) == 0
    elapsed = time.monotonic() - started
    assert cursor == total and len(seen) == total
    by_worker: dict[str, list[int]] = {}
    for _, _, namespace, data in seen:
        assert data is not None
        by_worker.setdefault(namespace, []).append(int(data))
    assert sorted(by_worker) == [f"proc/w{k}" for k in range(workers)]
    for values in by_worker.values():
        assert values == list(range(count))  # each write exactly once, in its order
    times = [when for _, when, _, _ in seen]
    assert all(a <= b for a, b in itertools.pairwise(times))
    print(f"\n{total} single-write commits from {workers} processes in {elapsed:.1f} s")
