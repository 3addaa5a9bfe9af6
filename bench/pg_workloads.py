"""The PostgreSQL benchmark cases: everstore against raw psycopg and eventsourcing 9.5.

Like ``workloads.py``, each function is one (family, library) case run in a fresh
interpreter by ``bench/run.py``, performing ONE repetition. The server comes from the
runner, which starts one throwaway server per run and passes its conninfo in the
``EVERSTORE_PG_CONNINFO`` environment variable; every timed loop gets a fresh schema
(created untimed, dropped untimed), so no case ever sees another's rows.

The three libraries write the same facts (an int per write, encoded by everstore's
codec for everstore and raw psycopg, by eventsourcing's JSON transcoder for it):

* everstore through its public API only (``s.x = i``, ``store.transaction()``,
  ``store.follow``);
* raw psycopg 3 on a table with the columns of everstore's log (``seq bigint PRIMARY
  KEY, time, ns, field, ctx, data bytea``) and the same ``(ns, field, seq)`` index, the
  encoded values prepared before timing: the floor for the same rows;
* eventsourcing 9.5's ``Application`` with ``PERSISTENCE_MODULE=eventsourcing.postgres``
  (its ``PostgresApplicationRecorder``), default settings: one aggregate whose command
  records one event per call, ``app.save(aggregate)`` per event or per batch, and its
  ``NotificationLogReader`` for the follower.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

from workloads import Config, Metrics, read_after, timed_batches, timed_loops, timer_cost

__all__ = [
    "CASES",
    "CONNINFO_VAR",
    "FAMILIES",
    "PgSizes",
    "admin",
    "conninfo",
    "drop_schema",
    "new_schema",
    "pg_sizes",
    "unavailable_reason",
]

#: where the runner puts the conninfo of the run's server (tests/pg_server.py reads it too)
CONNINFO_VAR = "EVERSTORE_PG_CONNINFO"

#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {
    "pg_writes": ["everstore", "eventsourcing", "raw"],
    "pg_txn1000": ["everstore", "eventsourcing", "raw"],
    "pg_bulk": ["everstore", "eventsourcing", "raw"],
    "pg_follow": ["everstore", "eventsourcing", "raw"],
}

EVENTSOURCING_VERSION = "9.5.0"
#: events per eventsourcing save, at most: on this machine (psycopg 3.3.9) a save of
#: 4,000 or more events never returns (the server waits in ClientRead for the rest of
#: the pipelined INSERT), while 2,000 take 70 ms; so its bulk import saves 1,000 at a time
ES_MAX_SAVE = 1_000


@dataclass(frozen=True)
class PgSizes:
    commits: int  # single-write commits per timed loop (pg_writes)
    txn_size: int  # writes per transaction (pg_txn1000)
    txns: int  # transactions per timed loop (pg_txn1000)
    bulk: int  # writes per bulk import (pg_bulk)
    bulk_txn: int  # writes per transaction of the bulk import
    follow: int  # facts in the log the follower reads (pg_follow)
    follow_keys: int  # namespaces (aggregates) the followed facts are spread over


PG_FULL = PgSizes(
    commits=2_000,
    txn_size=1_000,
    txns=20,
    bulk=100_000,
    bulk_txn=10_000,
    follow=100_000,
    follow_keys=1_000,
)
PG_QUICK = PgSizes(
    commits=50, txn_size=100, txns=2, bulk=1_000, bulk_txn=500, follow=1_000, follow_keys=10
)


def pg_sizes(quick: bool) -> PgSizes:
    return PG_QUICK if quick else PG_FULL


def unavailable_reason() -> str | None:
    """Why the PostgreSQL families cannot run here, or None (checked by the runner)."""
    import importlib.util
    from importlib import metadata

    for module in ("psycopg", "psycopg_pool"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install 'everstore[postgres]'"
    try:
        version = metadata.version("eventsourcing")
    except metadata.PackageNotFoundError:
        version = None
    if version != EVENTSOURCING_VERSION:
        return (
            f"the PostgreSQL families compare against eventsourcing {EVENTSOURCING_VERSION} "
            f"(found {version}): pip install 'everstore[bench]'"
        )
    return None


# -- schemas --------------------------------------------------------------------------


def conninfo() -> str:
    """The run's server (see CONNINFO_VAR)."""
    conninfo = os.environ.get(CONNINFO_VAR)
    if not conninfo:
        raise RuntimeError(f"{CONNINFO_VAR} is not set: bench/run.py passes its server's")
    return conninfo


def admin(sql: str) -> tuple[Any, ...] | None:
    """Run one statement on a connection of its own; its first row, if it returns any."""
    import psycopg

    with psycopg.connect(conninfo(), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchone() if cursor.description is not None else None


def new_schema() -> str:
    """A fresh schema of the run's server."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin(f"CREATE SCHEMA {schema}")
    return schema


def drop_schema(schema: str) -> None:
    admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _blobs(n: int) -> list[bytes]:
    """The values everstore stores for ``s.x = i``: raw psycopg writes the same bytes."""
    from everstore import default_codec

    return [default_codec.encode(i) for i in range(n)]


# -- everstore ------------------------------------------------------------------------


@dataclass
class _Everstore:
    schema: str
    store: Any
    s: Any


def _everstore_setup(synchronous_commit: bool | None = None) -> Callable[[], _Everstore]:
    def setup() -> _Everstore:
        from everstore import PostgreSQL, Store

        schema = new_schema()
        store = Store(PostgreSQL(conninfo(), schema=schema, synchronous_commit=synchronous_commit))
        s = store.storage("bench", "ns")
        # Untimed first write: it interns the names (the general path, once per store),
        # so the loop measures the steady state, as raw's prepared table does.
        s.x = -1
        return _Everstore(schema, store, s)

    return setup


def _everstore_teardown(state: _Everstore) -> None:
    state.store.close()
    drop_schema(state.schema)


def pg_writes_everstore(config: Config) -> Metrics:
    n = pg_sizes(config.quick).commits

    def per_write(state: _Everstore) -> None:
        s = state.s
        for i in range(n):
            s.x = i

    default = timed_loops(_everstore_setup(), per_write, n, config.min_time, _everstore_teardown)
    sync_off = timed_loops(
        _everstore_setup(False), per_write, n, config.min_time, _everstore_teardown
    )
    # A read right after this process's own write, each read timed alone (see
    # workloads.read_after_write_everstore); a plain read timed the same way beside it.
    state = _everstore_setup(False)()
    try:
        reads = max(10, n // 2)
        after = read_after(state.store, state.s, reads, "write") - timer_cost(reads)
        plain = read_after(state.store, state.s, reads, "plain") - timer_cost(reads)
    finally:
        _everstore_teardown(state)
    return {
        "write_us": 1e6 * default,
        "write_off_us": 1e6 * sync_off,
        "read_after_write_us": 1e6 * after / reads,
        "read_plain_us": 1e6 * plain / reads,
    }


def _everstore_transactions(size: int, count: int) -> Callable[[_Everstore], None]:
    def run(state: _Everstore) -> None:
        store, s = state.store, state.s
        i = 0
        for _ in range(count):
            with store.transaction():
                for _ in range(size):
                    s.x = i
                    i += 1

    return run


def pg_txn1000_everstore(config: Config) -> Metrics:
    sz = pg_sizes(config.quick)
    run = _everstore_transactions(sz.txn_size, sz.txns)
    seconds = timed_loops(
        _everstore_setup(), run, sz.txn_size * sz.txns, config.min_time, _everstore_teardown
    )
    return {"txn_us": 1e6 * seconds}


def pg_bulk_everstore(config: Config) -> Metrics:
    sz = pg_sizes(config.quick)
    run = _everstore_transactions(sz.bulk_txn, sz.bulk // sz.bulk_txn)
    seconds = timed_loops(
        _everstore_setup(), run, sz.bulk // sz.bulk_txn * sz.bulk_txn, config.min_time,
        _everstore_teardown,
    )  # fmt: skip
    return {"bulk_us": 1e6 * seconds}


def pg_follow_everstore(config: Config) -> Metrics:
    """A follower in a fresh Store (as a new process would be) reads the whole log."""
    from everstore import PostgreSQL, Store

    sz = pg_sizes(config.quick)
    per_key = sz.follow // sz.follow_keys
    schema = new_schema()
    try:
        with Store(PostgreSQL(conninfo(), schema=schema)) as writer:
            handles = [writer.storage("bench", f"n{k}") for k in range(sz.follow_keys)]
            # Interleaved, so that consecutive facts belong to different namespaces.
            with writer.transaction():
                for r in range(per_key):
                    for s in handles:
                        s.x = r
        total = per_key * sz.follow_keys
        with Store(PostgreSQL(conninfo(), schema=schema)) as follower:

            def follow() -> None:
                count = sum(1 for _ in follower.follow(since=0, timeout=0))
                assert count == total, (count, total)

            seconds = timed_batches(follow, total, config.min_time)
    finally:
        drop_schema(schema)
    return {"follow_us": 1e6 * seconds}


# -- raw psycopg ------------------------------------------------------------------------

_RAW_COLUMNS = "seq, time, ns, field, ctx, data"
_RAW_INSERT = "INSERT INTO {t}(seq, time, ns, field, ctx, data) VALUES (%b, %b, %b, %b, %b, %b)"
_RAW_COPY = "COPY {t}(seq, time, ns, field, ctx, data) FROM STDIN (FORMAT BINARY)"
_RAW_TYPES = ["int8", "float8", "int4", "int4", "int4", "bytea"]


@dataclass
class _Raw:
    schema: str
    table: str
    conn: Any


def _raw_setup(synchronous_commit: bool | None = None) -> Callable[[], _Raw]:
    def setup() -> _Raw:
        import psycopg

        schema = new_schema()
        table = f"{schema}.log"
        conn = psycopg.connect(conninfo(), autocommit=True)
        conn.execute(
            f"CREATE TABLE {table} (seq bigint PRIMARY KEY, time float8 NOT NULL, "
            "ns int4 NOT NULL, field int4 NOT NULL, ctx int4 NOT NULL, data bytea)"
        )
        conn.execute(f"CREATE INDEX ON {table} (ns, field, seq)")
        if synchronous_commit is not None:
            conn.execute(f"SET synchronous_commit = {'on' if synchronous_commit else 'off'}")
        return _Raw(schema, table, conn)

    return setup


def _raw_teardown(state: _Raw) -> None:
    state.conn.close()
    drop_schema(state.schema)


def pg_writes_raw(config: Config) -> Metrics:
    """``INSERT`` in autocommit: one statement, one transaction, one round trip."""
    n = pg_sizes(config.quick).commits
    blobs = _blobs(n)

    def per_write(state: _Raw) -> None:
        execute = state.conn.execute
        query = _RAW_INSERT.format(t=state.table)
        now = time.time
        for i in range(n):
            execute(query, (i + 1, now(), 1, 1, 1, blobs[i]))

    default = timed_loops(_raw_setup(), per_write, n, config.min_time, _raw_teardown)
    sync_off = timed_loops(_raw_setup(False), per_write, n, config.min_time, _raw_teardown)
    return {"write_us": 1e6 * default, "write_off_us": 1e6 * sync_off}


def _raw_rows(first: int, count: int, blobs: list[bytes], keys: int = 1) -> list[tuple[Any, ...]]:
    now = time.time()
    return [
        (seq, now, 1 + (seq - 1) % keys, 1, 1, blobs[seq - 1])
        for seq in range(first, first + count)
    ]


def _copy(conn: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cursor, cursor.copy(_RAW_COPY.format(t=table)) as copy:
        copy.set_types(_RAW_TYPES)
        for row in rows:
            copy.write_row(row)


def _raw_transactions(
    size: int, count: int, blobs: list[bytes], how: str
) -> Callable[[_Raw], None]:
    """``count`` transactions of ``size`` rows, by ``executemany`` (psycopg 3 sends it
    in pipeline mode: one round trip) or by binary ``COPY``; the rows (tuples) are
    built inside the timed loop, as a program would."""

    def run(state: _Raw) -> None:
        conn = state.conn
        query = _RAW_INSERT.format(t=state.table)
        for t in range(count):
            rows = _raw_rows(t * size + 1, size, blobs)
            with conn.transaction():
                if how == "copy":
                    _copy(conn, state.table, rows)
                else:
                    with conn.cursor() as cursor:
                        cursor.executemany(query, rows)

    return run


def pg_txn1000_raw(config: Config) -> Metrics:
    sz = pg_sizes(config.quick)
    n = sz.txn_size * sz.txns
    blobs = _blobs(n)
    metrics: Metrics = {}
    for how in ("executemany", "copy"):
        run = _raw_transactions(sz.txn_size, sz.txns, blobs, how)
        seconds = timed_loops(_raw_setup(), run, n, config.min_time, _raw_teardown)
        metrics[f"{how}_us"] = 1e6 * seconds
    return metrics


def pg_bulk_raw(config: Config) -> Metrics:
    """Binary COPY, one transaction per ``bulk_txn`` rows (as everstore's import)."""
    sz = pg_sizes(config.quick)
    count = sz.bulk // sz.bulk_txn
    blobs = _blobs(count * sz.bulk_txn)
    run = _raw_transactions(sz.bulk_txn, count, blobs, "copy")
    seconds = timed_loops(_raw_setup(), run, count * sz.bulk_txn, config.min_time, _raw_teardown)
    return {"copy_us": 1e6 * seconds}


def pg_follow_raw(config: Config) -> Metrics:
    """``SELECT ... WHERE seq > last ORDER BY seq LIMIT 1000`` (binary) until empty: the
    query everstore's follower sends, without turning rows into anything."""
    sz = pg_sizes(config.quick)
    total = sz.follow // sz.follow_keys * sz.follow_keys
    state = _raw_setup()()
    try:
        with state.conn.transaction():
            _copy(state.conn, state.table, _raw_rows(1, total, _blobs(total), sz.follow_keys))
        query = f"SELECT {_RAW_COLUMNS} FROM {state.table} WHERE seq > %b ORDER BY seq LIMIT 1000"

        def follow() -> None:
            last = count = 0
            while True:
                rows = state.conn.execute(query, (last,), binary=True).fetchall()
                if not rows:
                    break
                count += len(rows)
                last = rows[-1][0]
            assert count == total, (count, total)

        seconds = timed_batches(follow, total, config.min_time)
    finally:
        _raw_teardown(state)
    return {"follow_us": 1e6 * seconds}


# -- eventsourcing 9.5 ------------------------------------------------------------------


def _eventsourcing_env(schema: str) -> dict[str, str]:
    """eventsourcing's settings for the run's server, from the libpq conninfo."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo())
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),  # a socket directory works
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_SCHEMA": schema,
    }


@functools.cache
def _eventsourcing_model() -> tuple[type[Any], type[Any]]:
    """The application and aggregate classes, defined on first use so that importing
    this module never imports eventsourcing (its topics resolve through the topic
    cache that defining the event classes fills)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Counter(Aggregate):
        """One field, like everstore's ``s.x``: every ``set`` records one event."""

        def __init__(self) -> None:
            self.x = 0

        @event("Set")
        def set(self, x: int) -> None:
            self.x = x

    class Bench(Application[Any]):
        # LocalNotificationLog refuses a select larger than its section size; 1,000 is
        # the batch everstore's follower reads per query.
        log_section_size = 1000

    return Bench, Counter


@dataclass
class _EventSourcing:
    schema: str
    app: Any
    aggregate: Any


def _eventsourcing_setup() -> _EventSourcing:
    bench, counter = _eventsourcing_model()
    schema = new_schema()
    app = bench(env=_eventsourcing_env(schema))
    aggregate = counter()
    app.save(aggregate)  # untimed: the creation event, and the tables warmed up
    return _EventSourcing(schema, app, aggregate)


def _eventsourcing_teardown(state: _EventSourcing) -> None:
    state.app.close()
    drop_schema(state.schema)


def _eventsourcing_saves(size: int, count: int) -> Callable[[_EventSourcing], None]:
    """``count`` saves of ``size`` events each (one transaction per save)."""

    def run(state: _EventSourcing) -> None:
        app, aggregate = state.app, state.aggregate
        i = 0
        for _ in range(count):
            for _ in range(size):
                aggregate.set(i)
                i += 1
            app.save(aggregate)

    return run


def pg_writes_eventsourcing(config: Config) -> Metrics:
    n = pg_sizes(config.quick).commits
    run = _eventsourcing_saves(1, n)
    seconds = timed_loops(_eventsourcing_setup, run, n, config.min_time, _eventsourcing_teardown)
    # Like for like with everstore's synchronous_commit=False: eventsourcing has no
    # such setting, but libpq applies PGOPTIONS to every connection it opens.
    with mock.patch.dict(os.environ, PGOPTIONS="-c synchronous_commit=off"):
        sync_off = timed_loops(
            _eventsourcing_setup, run, n, config.min_time, _eventsourcing_teardown
        )
    return {"save_us": 1e6 * seconds, "save_off_us": 1e6 * sync_off}


def pg_txn1000_eventsourcing(config: Config) -> Metrics:
    sz = pg_sizes(config.quick)
    run = _eventsourcing_saves(sz.txn_size, sz.txns)
    seconds = timed_loops(
        _eventsourcing_setup, run, sz.txn_size * sz.txns, config.min_time,
        _eventsourcing_teardown,
    )  # fmt: skip
    return {"save_us": 1e6 * seconds}


def pg_bulk_eventsourcing(config: Config) -> Metrics:
    sz = pg_sizes(config.quick)
    size = min(sz.bulk_txn, ES_MAX_SAVE)
    count = sz.bulk // size
    run = _eventsourcing_saves(size, count)
    seconds = timed_loops(
        _eventsourcing_setup, run, count * size, config.min_time, _eventsourcing_teardown
    )
    return {"save_us": 1e6 * seconds}


def pg_follow_eventsourcing(config: Config) -> Metrics:
    """``NotificationLogReader.select`` in sections of 1,000, each notification turned
    into its domain event (what a follower's policy receives), as everstore's follower
    decodes each value."""
    from eventsourcing.system import NotificationLogReader

    sz = pg_sizes(config.quick)
    per_key = sz.follow // sz.follow_keys
    _, counter = _eventsourcing_model()
    state = _eventsourcing_setup()
    try:
        app = state.app
        aggregates = [counter() for _ in range(sz.follow_keys - 1)] + [state.aggregate]
        group = max(1, ES_MAX_SAVE // per_key)  # aggregates per save
        for first in range(0, len(aggregates), group):
            chunk = aggregates[first : first + group]
            for r in range(per_key - 1):  # each creation event counts as one fact
                for aggregate in chunk:
                    aggregate.set(r)
            app.save(*chunk)
        total = per_key * sz.follow_keys
        reader = NotificationLogReader(app.notification_log, section_size=1000)
        to_event = app.mapper.to_domain_event

        def follow() -> None:
            count = 0
            for section in reader.select(start=1):
                for notification in section:
                    to_event(notification)
                count += len(section)
            assert count == total, (count, total)

        seconds = timed_batches(follow, total, config.min_time)
    finally:
        _eventsourcing_teardown(state)
    return {"follow_us": 1e6 * seconds}


CASES: dict[str, Callable[[Config], Metrics]] = {
    "pg_writes/everstore": pg_writes_everstore,
    "pg_writes/eventsourcing": pg_writes_eventsourcing,
    "pg_writes/raw": pg_writes_raw,
    "pg_txn1000/everstore": pg_txn1000_everstore,
    "pg_txn1000/eventsourcing": pg_txn1000_eventsourcing,
    "pg_txn1000/raw": pg_txn1000_raw,
    "pg_bulk/everstore": pg_bulk_everstore,
    "pg_bulk/eventsourcing": pg_bulk_eventsourcing,
    "pg_bulk/raw": pg_bulk_raw,
    "pg_follow/everstore": pg_follow_everstore,
    "pg_follow/eventsourcing": pg_follow_eventsourcing,
    "pg_follow/raw": pg_follow_raw,
}
