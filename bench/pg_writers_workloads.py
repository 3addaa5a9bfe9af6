"""The pg_writers family: writers in many processes at once on one PostgreSQL store
(issue 12), everstore against raw psycopg 3 in the same run.

Like ``pg_workloads.py``, each function is one (family, library) case run in a fresh
interpreter by ``bench/run.py``, performing ONE repetition, against the run's server
(its conninfo in ``EVERSTORE_PG_CONNINFO``; fsync and synchronous_commit on). A case
measures every number of writer processes W (1, 2, 4, 8) in both modes:

* ``single``: each process commits N single writes;
* ``txn100``: each process commits transactions of 100 writes.

The libraries:

* ``everstore``: each process opens its own ``Store(PostgreSQL(conninfo,
  schema=...))`` on the one store and writes ``s.x = i`` to a Storage of its own
  namespace; ``with store.transaction():`` around 100 of them in ``txn100``;
* ``raw``: each process opens one psycopg connection in autocommit and INSERTs into a
  table with the columns of everstore's log whose ``seq`` is an identity column (so
  concurrent writers need nothing from each other but the sequence), with the same
  ``(ns, field, seq)`` index; its own ``ns``; the values encoded by everstore's codec
  before timing. ``txn100``: ``executemany`` of 100 rows (psycopg pipelines it) in
  ``BEGIN``/``COMMIT``.
* ``raw_ordered``: the floor of a log whose seqs follow commit order without holes
  and whose writer learns its seq at once (what everstore promises), written with
  plain psycopg: the same table with a plain ``seq`` column and a one-row counter;
  each commit is one prepared statement that updates the counter and inserts with the
  seqs it got (``unnest`` of a binary ``bytea[]``, 1 or 100 rows), with
  ``synchronous_commit`` off for that transaction only, followed in the same round
  trip (libpq's pipeline mode through psycopg's ``pgconn``, a sync between them) by a
  ``setval`` of a sequence in a transaction of its own that waits for the WAL flush:
  the design docs/postgresql.md ("The commit step and its flush") describes, sent as
  fast as a Python client can, without everstore's layers.

Every timed loop gets a fresh schema (the store or the table created by the parent
before the workers start, untimed). The workers are processes of their own (this file,
``--worker``); each connects, makes one untimed write (everstore interns its names,
psycopg's connection warms up), says ``ready`` and waits; when all are ready the
parent writes ``go`` to each, and the loop's time runs from that moment to the last
worker's end (``time.perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every
process). The result is total writes per second: W x N over that time, summed over
loops repeated until ``min_time`` seconds (at full size at least 1 s) were timed.
After each loop the parent counts the rows (everstore: a follower from the start; raw:
``count(*)``), so a lost write fails the case instead of flattering it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pg_workloads import admin, conninfo, drop_schema, new_schema
from workloads import Config, Metrics, child_env, start_workers

__all__ = [
    "CASES",
    "FAMILIES",
    "MODES",
    "WritersSizes",
    "metric",
    "unavailable_reason",
    "writers_sizes",
]

perf = time.perf_counter


#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {"pg_writers": ["everstore", "raw", "raw_ordered"]}

#: the commit modes: "single" (a commit per write), "txn100" (transactions of 100)
MODES = ("single", "txn100")
TXN_SIZE = 100
#: seconds timed per point at full size, at least: one loop with 1 writer is short
#: (800 commits, ~0.2 s), and one slow loop should not be the whole measurement
FULL_MIN_TIME = 1.0
#: seconds the parent waits for a worker to start, or to finish its writes
WORKER_TIMEOUT = 600.0


@dataclass(frozen=True)
class WritersSizes:
    writers: tuple[int, ...]  # numbers of writer processes measured
    single: int  # single-write commits per process per loop
    txns: int  # transactions of TXN_SIZE per process per loop


WRITERS_FULL = WritersSizes(writers=(1, 2, 4, 8), single=800, txns=100)
WRITERS_QUICK = WritersSizes(writers=(1, 2), single=20, txns=2)


def writers_sizes(quick: bool) -> WritersSizes:
    return WRITERS_QUICK if quick else WRITERS_FULL


def writes_per_process(sz: WritersSizes, mode: str) -> int:
    return sz.single if mode == "single" else sz.txns * TXN_SIZE


def metric(mode: str, writers: int) -> str:
    """The name of a case's result: total writes per second of ``writers`` processes."""
    return f"{mode}_w{writers}_per_s"


def unavailable_reason() -> str | None:
    """Why this family cannot run here, or None (it needs psycopg, not eventsourcing)."""
    import importlib.util

    for module in ("psycopg", "psycopg_pool"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install 'everstore[postgres]'"
    return None


# -- schemas ------------------------------------------------------------------------------


def _raw_table(schema: str) -> str:
    return f"{schema}.log"


_RAW_INSERT = "INSERT INTO {t}(time, ns, field, ctx, data) VALUES (%b, %b, %b, %b, %b)"


_ORDERED_WRITE = (
    "WITH c AS (UPDATE {s}.counter SET seq = seq + $1::int8, time = greatest(time, $2::float8) "
    "RETURNING seq, time), "
    "i AS (INSERT INTO {s}.log(seq, time, ns, field, ctx, data) "
    "SELECT c.seq - $1::int8 + w.ord, c.time, $3::int4, 1, 1, w.data FROM c "
    "CROSS JOIN unnest($4::bytea[]) WITH ORDINALITY AS w(data, ord)) "
    "SELECT c.seq, set_config('synchronous_commit', 'off', true) FROM c"
)
_ORDERED_BARRIER = "SELECT setval('{s}.barrier', 1)"


def _prepare(library: str, schema: str) -> None:
    """What the workers write to, made before they start (no worker races on DDL)."""
    if library == "everstore":
        from everstore import PostgreSQL, Store

        Store(PostgreSQL(conninfo(), schema=schema)).close()
        return
    table = _raw_table(schema)
    seq = "bigint PRIMARY KEY" if library == "raw_ordered" else (
        "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )  # fmt: skip
    admin(
        f"CREATE TABLE {table} (seq {seq}, time float8 NOT NULL, ns int4 NOT NULL, "
        "field int4 NOT NULL, ctx int4 NOT NULL, data bytea)"
    )
    admin(f"CREATE INDEX ON {table} (ns, field, seq)")
    if library == "raw_ordered":
        admin(
            f"CREATE TABLE {schema}.counter (id boolean PRIMARY KEY DEFAULT true CHECK (id), "
            "seq bigint NOT NULL, time float8 NOT NULL) WITH (fillfactor = 20)"
        )
        admin(f"INSERT INTO {schema}.counter(seq, time) VALUES (0, 0)")
        admin(f"CREATE SEQUENCE {schema}.barrier")


def _count(library: str, schema: str) -> int:
    """The facts (rows) the loop left, the workers' untimed first writes included."""
    if library == "everstore":
        from everstore import PostgreSQL, Store

        with Store(PostgreSQL(conninfo(), schema=schema)) as store:
            return sum(1 for _ in store.follow(since=0, timeout=0))
    row = admin(f"SELECT count(*) FROM {_raw_table(schema)}")
    assert row is not None
    return int(row[0])


# -- the parent: one case -------------------------------------------------------------------


def _run_workers(library: str, mode: str, schema: str, writers: int, count: int) -> float:
    """Start ``writers`` workers, wait until all are ready, signal them, and return the
    seconds from the signal to the last one's end."""
    script = str(Path(__file__).resolve())
    workers = [
        subprocess.Popen(
            [sys.executable, script, "--worker", library, mode, schema, str(w), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for w in range(writers)
    ]
    try:
        start = start_workers(workers, library)
        ends: list[float] = []
        for worker in workers:
            stdout, _ = worker.communicate(timeout=WORKER_TIMEOUT)
            if worker.returncode != 0:
                raise RuntimeError(f"a {library} writer failed ({worker.returncode})")
            ends.append(float(json.loads(stdout.strip().splitlines()[-1])["end"]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return max(ends) - start


def _measure(library: str, mode: str, writers: int, sz: WritersSizes, min_time: float) -> float:
    """Total writes per second of ``writers`` processes, loops on fresh schemas repeated
    until ``min_time`` seconds were timed."""
    count = writes_per_process(sz, mode)
    seconds = 0.0
    writes = 0
    while seconds < min_time:
        schema = new_schema()
        try:
            _prepare(library, schema)
            seconds += _run_workers(library, mode, schema, writers, count)
            writes += writers * count
            found = _count(library, schema)
            expected = writers * (count + 1)  # + each worker's untimed first write
            if found != expected:
                raise RuntimeError(
                    f"{library} {mode} with {writers} writers: {found} facts, {expected} written"
                )
        finally:
            drop_schema(schema)
    return writes / seconds


def _case(library: str) -> Callable[[Config], Metrics]:
    def case(config: Config) -> Metrics:
        sz = writers_sizes(config.quick)
        min_time = config.min_time if config.quick else max(config.min_time, FULL_MIN_TIME)
        metrics: Metrics = {"load1_start": os.getloadavg()[0]}
        for mode in MODES:
            for writers in sz.writers:
                metrics[metric(mode, writers)] = _measure(library, mode, writers, sz, min_time)
        return metrics

    case.__name__ = f"pg_writers_{library}"
    return case


CASES: dict[str, Callable[[Config], Metrics]] = {
    f"pg_writers/{library}": _case(library) for library in FAMILIES["pg_writers"]
}


# -- the workers ------------------------------------------------------------------------------


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the parent went away before saying go")


def _everstore_worker(mode: str, schema: str, index: int, count: int) -> float:
    from everstore import PostgreSQL, Store

    store = Store(PostgreSQL(conninfo(), schema=schema))
    s = store.storage("bench", f"w{index}")
    s.x = -1  # untimed: interns the names, as raw's first insert warms its connection
    _wait_for_go()
    if mode == "single":
        for i in range(count):
            s.x = i
    else:
        i = 0
        for _ in range(count // TXN_SIZE):
            with store.transaction():
                for _ in range(TXN_SIZE):
                    s.x = i
                    i += 1
    end = perf()
    store.close()
    return end


def _raw_worker(mode: str, schema: str, index: int, count: int) -> float:
    import psycopg

    from everstore import default_codec

    blobs = [default_codec.encode(i) for i in range(count)]
    query = _RAW_INSERT.format(t=_raw_table(schema))
    ns = index + 1
    conn = psycopg.connect(conninfo(), autocommit=True)
    execute = conn.execute
    execute(query, (time.time(), ns, 1, 1, default_codec.encode(-1)))  # untimed
    now = time.time
    _wait_for_go()
    if mode == "single":
        for i in range(count):
            execute(query, (now(), ns, 1, 1, blobs[i]))
    else:
        for first in range(0, count, TXN_SIZE):
            # the rows built inside the loop, as a program would
            t = now()
            rows = [(t, ns, 1, 1, blobs[i]) for i in range(first, first + TXN_SIZE)]
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(query, rows)
    end = perf()
    conn.close()
    return end


def _raw_ordered_worker(mode: str, schema: str, index: int, count: int) -> float:
    import select
    import struct

    import psycopg

    from everstore import default_codec

    blobs = [default_codec.encode(i) for i in range(count)]
    conn = psycopg.connect(conninfo(), autocommit=True)
    # libpq through psycopg's pgconn, prepared, binary: the fastest a client can send
    # the two transactions (what everstore's one-write path does too).
    pg = conn.pgconn
    pg.prepare(b"write", _ORDERED_WRITE.format(s=schema).encode())
    pg.prepare(b"barrier", _ORDERED_BARRIER.format(s=schema).encode())
    pack_f8, pack_i4, pack_i8 = (
        struct.Struct(">d").pack,
        struct.Struct(">i").pack,
        struct.Struct(">q").pack,
    )
    ns = pack_i4(index + 1)
    sync = psycopg.pq.ExecStatus.PIPELINE_SYNC
    ok = (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK)

    def commit(rows: list[bytes]) -> None:
        array = _bytea_array(rows)
        pg.enter_pipeline_mode()
        pg.send_query_prepared(
            b"write", [pack_i8(len(rows)), pack_f8(time.time()), ns, array], [1] * 4, 1
        )
        pg.pipeline_sync()
        pg.send_query_prepared(b"barrier", None, None, 1)
        pg.pipeline_sync()
        pg.flush()
        syncs = 0
        while syncs < 2:
            while pg.is_busy():
                select.select([pg.socket], [], [])
                pg.consume_input()
            result = pg.get_result()
            if result is None:
                continue
            if result.status == sync:
                syncs += 1
            elif result.status not in ok:
                raise RuntimeError(result.error_message.decode())
        pg.exit_pipeline_mode()

    commit([default_codec.encode(-1)])  # untimed
    _wait_for_go()
    size = 1 if mode == "single" else TXN_SIZE
    for first in range(0, count, size):
        commit(blobs[first : first + size])
    end = perf()
    conn.close()
    return end


def _bytea_array(items: list[bytes]) -> bytes:
    """A one-dimensional bytea[] in PostgreSQL's binary format."""
    import struct

    head = struct.pack(">iiiii", 1, 0, 17, len(items), 1)
    return head + b"".join(struct.pack(">i", len(item)) + item for item in items)


_WORKERS = {
    "everstore": _everstore_worker,
    "raw": _raw_worker,
    "raw_ordered": _raw_ordered_worker,
}


def worker_main(library: str, mode: str, schema: str, index: int, count: int) -> None:
    """One writer: connect, write once untimed, say ready, write ``count`` times once
    the parent says go, and print the moment it finished as JSON."""
    run = _WORKERS[library]
    end = run(mode, schema, index, count)
    print(json.dumps({"end": end}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        print("used by bench/run.py: bench/run.py --only pg_writers", file=sys.stderr)
        sys.exit(2)
