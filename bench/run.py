"""Benchmarks: everstore against appendmuch 0.3.0 and raw SQLite, on PostgreSQL
against eventsourcing 9.5 and raw psycopg, its models layer against slowstore 2.2.1
and SQLAlchemy 2's ORM (family ``models``), its versions layer against a model of
MyDbEngine 0.2.1 (family ``versions``), and its structures against appendonly 1.2 on
ZODB (family ``structures``), in one run.

    .venv/bin/python bench/run.py            # full sizes (what docs/benchmarks.md shows)
    .venv/bin/python bench/run.py --quick    # tiny sizes: a smoke test, numbers mean nothing

Method (the same as appendmuch's own baseline, see docs/benchmarks.md):

* every (family, library) case runs in a fresh interpreter, so its peak RSS is its own;
* inside it, each measurement repeats its workload, with fresh untimed setup, until at
  least ``--min-time`` seconds (0.5 s) were timed, and reports time per operation;
* that is one repetition; repetitions of the libraries alternate (everstore,
  appendmuch, raw, everstore, ...) so that drift on a noisy machine hits all of them,
  and the table shows the median of ``--reps`` (3) repetitions;
* cold open: every sample is a new process that imports the library, opens the cached
  file and reads one field; a repetition takes samples until ``--min-time`` seconds
  of opening were timed (at most 10) and reports their mean.

PostgreSQL: the ``pg_*`` families run against ONE throwaway server started for the run
(``tests/pg_server.py``: fsync and synchronous_commit on, as a production server), or the
server ``EVERSTORE_PG_CONNINFO`` names; children get its conninfo in that variable. They
are skipped, with the reason printed, when no server can run here or eventsourcing 9.5.0
is not installed. Their rows form a second table.

PostgreSQL writers: ``bench/run.py --only pg_writers`` runs the ``pg_writers`` family
alone (``bench/pg_writers_workloads.py`` describes it: 1, 2, 4 and 8 writer processes at
once on one store, everstore against raw psycopg, issue 12) on the same kind of server;
it needs psycopg, not eventsourcing, and is skipped, with the reason printed, when no
server can run here. Its rows form a table of their own (writes per second, higher is
better).

Models: ``bench/run.py --only models`` runs the ``models`` family alone
(``bench/models_workloads.py`` describes it); a library of it that is not installed (or
everstore.models before it has a ModelStore) is skipped, with the reason printed. Its
rows form a third table.

Versions: ``bench/run.py --only versions`` runs the ``versions`` family alone
(``bench/versions_workloads.py`` describes it; its baseline is
``bench/mydbengine_model.py``, a model of MyDbEngine written from its README, since
MyDbEngine cannot be installed). everstore is skipped, with the reason printed, while
everstore.versions has no DbEngine. Its rows form a fourth table.

Structures: ``bench/run.py --only structures`` runs the ``structures`` family alone
(``bench/structures_workloads.py`` describes it): everstore.structures on SQLite with
``synchronous=NORMAL`` and with ``synchronous="full"`` against appendonly 1.2 on ZODB
FileStorage (ZEO for the concurrent row), raw sqlite3 the floor. appendonly is skipped,
with the reason printed, when appendonly 1.2 or ZODB is not installed; its concurrent
row is left empty, with the reason printed, when ZEO is not. Its rows form a fifth table.

Results go to stdout as Markdown tables and to ``bench/results/latest.json``
(``quick.json`` for ``--quick``, so a smoke run never overwrites real numbers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

sys.path.insert(0, str(HERE))

import models_workloads  # noqa: E402  (bench/ is not a package)
import pg_workloads  # noqa: E402
import pg_writers_workloads  # noqa: E402
import structures_workloads  # noqa: E402
import versions_workloads  # noqa: E402
import workloads  # noqa: E402

#: every case of every family, by "family/library"
CASES = {
    **workloads.CASES,
    **pg_workloads.CASES,
    **pg_writers_workloads.CASES,
    **models_workloads.CASES,
    **versions_workloads.CASES,
    **structures_workloads.CASES,
}

#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {
    "writes_memory": ["everstore", "appendmuch"],
    "writes_sqlite": ["everstore", "appendmuch", "raw"],
    "writes_paired": ["everstore"],  # everstore and raw sqlite3 in one process
    "reads_memory": ["everstore", "appendmuch"],
    "reads_sqlite": ["everstore", "appendmuch"],
    "read_after_write": ["everstore"],
    "history": ["everstore", "appendmuch"],
    "history_iter": ["everstore"],  # everstore and a tuple of its Values in one process
    "within": ["everstore", "appendmuch"],
    "cold_open": ["everstore", "appendmuch"],
    "list_sqlite": ["everstore", "appendmuch"],
    "list_memory": ["everstore", "appendmuch"],
    "isolation": ["everstore"],
    **workloads.FAMILIES,
    **pg_workloads.FAMILIES,
    **pg_writers_workloads.FAMILIES,
    **models_workloads.FAMILIES,
    **versions_workloads.FAMILIES,
    **structures_workloads.FAMILIES,
}
#: the families that run against the run's PostgreSQL server
PG_FAMILIES = pg_workloads.FAMILIES | pg_writers_workloads.FAMILIES
#: the families of the layers, whose libraries may be missing (skipped, with the reason)
LAYER_FAMILIES = (
    models_workloads.FAMILIES | versions_workloads.FAMILIES | structures_workloads.FAMILIES
)
#: why a library of a layer family cannot run here (None: it can)
UNAVAILABLE = {
    **dict.fromkeys(models_workloads.FAMILIES, models_workloads.unavailable_reason),
    **dict.fromkeys(versions_workloads.FAMILIES, versions_workloads.unavailable_reason),
    **dict.fromkeys(structures_workloads.FAMILIES, structures_workloads.unavailable_reason),
}
#: the families that need appendmuch (the first table's peer)
APPENDMUCH_FAMILIES = [name for name in FAMILIES if name not in PG_FAMILIES | LAYER_FAMILIES]

COLD_MAX_SAMPLES = 10
#: seconds a child may run: a case that hangs (a peer's stuck save) fails, not the run
CHILD_TIMEOUT = {True: 60.0, False: 900.0}
TABLE_HEADER = (
    "| # | workload | unit | everstore | appendmuch | raw / floor | vs appendmuch "
    "| vs raw / floor | goal | result |"
)
MODELS_TABLE_HEADER = (
    "| # | workload | unit | everstore | slowstore | sqlalchemy | raw sqlite | vs slowstore "
    "| vs sqlalchemy | vs raw | goal | result |"
)
VERSIONS_TABLE_HEADER = (
    "| # | workload | unit | everstore | file model | raw sqlite | vs file model | vs raw "
    "| goal | result |"
)
PG_TABLE_HEADER = (
    "| # | workload | unit | everstore | everstore /s | eventsourcing | raw psycopg "
    "| vs eventsourcing | vs raw | goal | result |"
)


# -- goals and rows --------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """One stated goal. Every metric is lower-is-better, so ratios are other / everstore.

    Kinds: "appendmuch" / "eventsourcing" / "slowstore" / "file model" / "appendonly"
    (the peer column: peer / everstore >= x), "sqlalchemy" (the second peer column,
    likewise), "raw" (raw / everstore >= x), "raw_within" (everstore / raw <= x: at
    most x times the floor's time), "below" (everstore < x), "at_most" (everstore <=
    x), "rate" (everstore, in µs per op, does at least x ops per second).
    """

    kind: str
    threshold: float

    def label(self) -> str:
        if self.kind == "below":
            return f"< {self.threshold:g}"
        if self.kind == "at_most":
            return f"≤ {self.threshold:g}"
        if self.kind == "rate":
            return f"≥ {human(int(self.threshold))}/s"
        if self.kind == "raw_within":
            return f"≤ {self.threshold:g}x raw time"
        peer = {"appendmuch": "am", "eventsourcing": "evs"}.get(self.kind, self.kind)
        return f"≥ {self.threshold:g}x {peer}"

    def check(
        self, es: float | None, am: float | None, raw: float | None, peer2: float | None = None
    ) -> str:
        if es is None:
            return "n/a"
        if self.kind == "below":
            return "PASS" if es < self.threshold else "MISS"
        if self.kind == "at_most":
            return "PASS" if es <= self.threshold else "MISS"
        if self.kind == "rate":
            return "PASS" if 1e6 / es >= self.threshold else "MISS"
        if self.kind == "raw_within":
            if raw is None:
                return "n/a"
            return "PASS" if es / raw <= self.threshold else "MISS"
        other = {"raw": raw, "sqlalchemy": peer2}.get(self.kind, am)
        if other is None:
            return "n/a"
        return "PASS" if other / es >= self.threshold else "MISS"


AM3 = Goal("appendmuch", 3.0)

Ref = tuple[str, str]  # (case, metric)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    es: Ref | None  # None: a row of other columns only (a floor)
    am: Ref | None = None  # the peer column: appendmuch, or eventsourcing on PostgreSQL
    raw: Ref | None = None
    goals: tuple[Goal, ...] = ()
    peer2: Ref | None = None  # the second peer column (SQLAlchemy in the models table)


ROWS: list[Row] = [
    Row("1", "{writes} writes of an int, Memory", "µs/write",
        ("writes_memory/everstore", "write_us"), ("writes_memory/appendmuch", "write_us"),
        goals=(AM3,)),
    Row("2a", "write int, SQLite file: everstore commit per write; am buffered + flush;"
        " raw INSERT autocommit", "µs/write",
        ("writes_sqlite/everstore", "write_us"), ("writes_sqlite/appendmuch", "write_us"),
        ("writes_sqlite/raw", "write_us"), goals=(AM3, Goal("raw", 0.8))),
    Row("2b", "write int, SQLite file: everstore transaction of 100; am buffered + flush;"
        " raw executemany 100 in BEGIN/COMMIT", "µs/write",
        ("writes_sqlite/everstore", "txn100_us"), ("writes_sqlite/appendmuch", "write_us"),
        ("writes_sqlite/raw", "executemany100_us"), goals=(AM3, Goal("raw", 0.5))),
    Row("2c", "write int, SQLite file, on disk when the write returns: everstore commit per"
        " write; am write + flush(); raw INSERT autocommit", "µs/write",
        ("writes_sqlite/everstore", "write_us"), ("writes_sqlite/appendmuch", "flush_each_us"),
        ("writes_sqlite/raw", "write_us"), goals=(AM3,)),
    Row("2d", "write int, SQLite file, commit per write, in one process (loops of {paired}"
        " writes alternating on fresh files): everstore `s.x = i`; raw `conn.execute(INSERT)`"
        " autocommit", "µs/write",
        ("writes_paired/everstore", "write_us"), None, ("writes_paired/everstore", "raw_us"),
        goals=(Goal("raw", 0.95),)),
    Row("2e", "as 2d; floor: raw running everstore's own INSERT (with seq and"
        " link) on a reused cursor, no Python around it", "µs/write",
        ("writes_paired/everstore", "write_us"), None,
        ("writes_paired/everstore", "raw_same_sql_us")),
    Row("3a", "read current value s.x, Memory", "µs/read",
        ("reads_memory/everstore", "read_us"), ("reads_memory/appendmuch", "read_us"),
        goals=(AM3, Goal("below", 0.5))),
    Row("3b", "read current value s.x, SQLite file", "µs/read",
        ("reads_sqlite/everstore", "read_us"), ("reads_sqlite/appendmuch", "read_us"),
        goals=(AM3, Goal("below", 0.5))),
    Row("3c", "read s.x right after this process's own `s.x = i`, Memory, each read timed"
        " alone; floor: the same read with no write before it", "µs/read",
        ("read_after_write/everstore", "memory_write_us"), None,
        ("read_after_write/everstore", "memory_plain_us"), goals=(Goal("below", 0.5),)),
    Row("3d", "read s.x right after this process's own `s.x = i`, SQLite file; floor as 3c",
        "µs/read", ("read_after_write/everstore", "sqlite_write_us"), None,
        ("read_after_write/everstore", "sqlite_plain_us"), goals=(Goal("below", 0.5),)),
    Row("3e", "read s.x right after `with store.transaction(): s.x = i`, Memory; floor as 3c",
        "µs/read", ("read_after_write/everstore", "memory_after_txn_us"), None,
        ("read_after_write/everstore", "memory_plain_us"), goals=(Goal("below", 0.5),)),
    Row("3f", "read s.x right after `with store.transaction(): s.x = i`, SQLite file; floor"
        " as 3c", "µs/read", ("read_after_write/everstore", "sqlite_after_txn_us"), None,
        ("read_after_write/everstore", "sqlite_plain_us"), goals=(Goal("below", 0.5),)),
    Row("3g", "read s.x inside `with store.transaction():` right after `s.x = i`, Memory;"
        " floor as 3c", "µs/read", ("read_after_write/everstore", "memory_in_txn_us"), None,
        ("read_after_write/everstore", "memory_plain_us"), goals=(Goal("below", 0.5),)),
    Row("3h", "read s.x inside `with store.transaction():` right after `s.x = i`, SQLite"
        " file; floor as 3c", "µs/read", ("read_after_write/everstore", "sqlite_in_txn_us"),
        None, ("read_after_write/everstore", "sqlite_plain_us"), goals=(Goal("below", 0.5),)),
    Row("4a", "history of {history} values: s.__history__()['x'] / s.history()['x']", "ms/call",
        ("history/everstore", "get_ms"), ("history/appendmuch", "get_ms"), goals=(AM3,)),
    Row("4b", "history of {history} values: [v.data for v in ...['x']]", "ms/call",
        ("history/everstore", "iterate_ms"), ("history/appendmuch", "iterate_ms"),
        goals=(AM3,)),
    Row("4c", "the same comprehension over a plain list of the same {history} Values (the"
        " caller's loop alone: the floor of 4b)", "ms/call",
        ("history/everstore", "loop_floor_ms"), ("history/appendmuch", "iterate_ms")),
    Row("4d", "[v.data for v in s.__history__()['x']], {history_small} values, repeated calls;"
        " floor: the same comprehension over a tuple of the same Values, measured in turn",
        "ns/value", ("history_iter/everstore", "iter_small_ns"), None,
        ("history_iter/everstore", "iter_small_tuple_ns"), goals=(Goal("raw_within", 1.3),)),
    Row("4e", "as 4d, {history} values", "ns/value",
        ("history_iter/everstore", "iter_large_ns"), None,
        ("history_iter/everstore", "iter_large_tuple_ns"), goals=(Goal("raw_within", 1.3),)),
    Row("4f", "as 4d, first call on a fresh store ({history_small} values: the Values are"
        " made); floor: first pass over a fresh tuple of Values", "ns/value",
        ("history_iter/everstore", "first_small_ns"), None,
        ("history_iter/everstore", "first_small_tuple_ns"), goals=(Goal("raw_within", 1.3),)),
    Row("4g", "as 4f, {history} values", "ns/value",
        ("history_iter/everstore", "first_large_ns"), None,
        ("history_iter/everstore", "first_large_tuple_ns"), goals=(Goal("raw_within", 1.3),)),
    Row("5a", "within(round=k).score, namespace of {within} writes, random k", "ms/query",
        ("within/everstore", "query_ms"), ("within/appendmuch", "query_ms"), goals=(AM3,)),
    Row("5b", "within: first query (everstore builds its value index)", "ms",
        ("within/everstore", "first_query_ms"), ("within/appendmuch", "first_query_ms")),
    Row("6a", "cold open of a {cold}-fact SQLite file + first read of a field", "s",
        ("cold_open/everstore", "open_read_s"), ("cold_open/appendmuch", "open_read_s"),
        goals=(AM3,)),
    Row("6b", "cold open: peak RSS of the process (ru_maxrss)", "MiB",
        ("cold_open/everstore", "rss_mib"), ("cold_open/appendmuch", "rss_mib")),
    Row("6c", "cold open: import of the library", "s",
        ("cold_open/everstore", "import_s"), ("cold_open/appendmuch", "import_s")),
    Row("7a", "list append in `with s:` up to {items} items, SQLite: average", "ms/append",
        ("list_sqlite/everstore", "append_ms"), ("list_sqlite/appendmuch", "append_ms"),
        goals=(AM3,)),
    Row("7b", "list append, SQLite: last 100 appends", "ms/append",
        ("list_sqlite/everstore", "last100_ms"), ("list_sqlite/appendmuch", "last100_ms"),
        goals=(AM3,)),
    Row("7c", "list append, SQLite: file growth per append", "bytes",
        ("list_sqlite/everstore", "bytes_per_append"),
        ("list_sqlite/appendmuch", "bytes_per_append")),
    Row("7d", "list append in `with s:` up to {items} items, Memory: average", "ms/append",
        ("list_memory/everstore", "append_ms"), ("list_memory/appendmuch", "append_ms"),
        goals=(AM3,)),
    Row("7e", "list append, Memory: last 100 appends", "ms/append",
        ("list_memory/everstore", "last100_ms"), ("list_memory/appendmuch", "last100_ms"),
        goals=(AM3,)),
    Row("8a", "transaction of {isolation} `s.f = s.f + 1` ({isolation} reads, {isolation}"
        " writes), Memory: serializable (the default)", "µs/txn",
        ("isolation/everstore", "memory_serializable_us")),
    Row("8b", "the same, Memory: `isolation=\"atomic\"` (reads not checked)", "µs/txn",
        ("isolation/everstore", "memory_atomic_us")),
    Row("8c", "read tracking, Memory: serializable / atomic time", "ratio",
        ("isolation/everstore", "memory_ratio"), goals=(Goal("below", 1.1),)),
    Row("8d", "transaction of {isolation} `s.f = s.f + 1`, SQLite file: serializable",
        "µs/txn", ("isolation/everstore", "sqlite_serializable_us")),
    Row("8e", "the same, SQLite file: `isolation=\"atomic\"`", "µs/txn",
        ("isolation/everstore", "sqlite_atomic_us")),
    Row("8f", "read tracking, SQLite file: serializable / atomic time", "ratio",
        ("isolation/everstore", "sqlite_ratio"), goals=(Goal("below", 1.1),)),
    *(
        Row(f"9{letter}", f"`with s: s.lst.append(i)`, SQLite: mean of the last 100 appends"
            f" up to {{app{index}}} items; raw: one INSERT of such a delta, autocommit",
            "µs/append", ("appends_sqlite/everstore", f"append_us_{index}"),
            raw=("appends_sqlite/raw", "insert_us"), goals=(Goal("below", 50.0),))
        for index, letter in ((1, "a"), (2, "b"), (3, "c"))
    ),
    *(
        Row(f"9{letter}", f"`with s: s.lst.append(i)`, Memory: mean of the last 100 appends"
            f" up to {{app{index}}} items", "µs/append",
            ("appends_memory/everstore", f"append_us_{index}"), goals=(Goal("below", 50.0),))
        for index, letter in ((1, "d"), (2, "e"), (3, "f"))
    ),
    *(
        row
        for backend, name, letters in
        (("sqlite", "SQLite file", "abc"), ("memory", "Memory", "def"))
        for row in (
            Row(f"10{letters[0]}", f"load {{loadns}} namespaces of {workloads.BULK_FIELDS} fields"
                f" into a fresh Store, {name}: `store.namespace()` for each of"
                " `store.namespaces((\"people\",))`", "µs/namespace",
                (f"bulk_{backend}/everstore", "per_namespace_us")),
            Row(f"10{letters[1]}", f"the same, {name}: one `store.load((\"people\",))`",
                "µs/namespace", (f"bulk_{backend}/everstore", "bulk_us")),
            Row(f"10{letters[2]}", f"{name}: one by one / at once (time)", "ratio",
                (f"bulk_{backend}/everstore", "ratio")),
        )
    ),
]  # fmt: skip

PG_WITHIN = Goal("raw_within", 1.5)
EVS5 = Goal("eventsourcing", 5.0)

PG_ROWS: list[Row] = [
    Row("P1a", "write an int, commit per write, synchronous_commit on (server default):"
        " everstore `s.x = i`; evs one event per save; raw INSERT autocommit", "µs/write",
        ("pg_writes/everstore", "write_us"), ("pg_writes/eventsourcing", "save_us"),
        ("pg_writes/raw", "write_us"), goals=(PG_WITHIN, EVS5)),
    Row("P1b", "write an int, commit per write, synchronous_commit off: everstore"
        " `PostgreSQL(..., synchronous_commit=False)`; raw `SET synchronous_commit = off`;"
        " evs as P1a (its default, on)", "µs/write",
        ("pg_writes/everstore", "write_off_us"), ("pg_writes/eventsourcing", "save_us"),
        ("pg_writes/raw", "write_off_us"), goals=(PG_WITHIN, EVS5)),
    Row("P1c", "as P1b, like for like: evs with synchronous_commit off too (PGOPTIONS)",
        "µs/write", ("pg_writes/everstore", "write_off_us"),
        ("pg_writes/eventsourcing", "save_off_us"), ("pg_writes/raw", "write_off_us")),
    Row("P1d", "read s.x right after this process's own `s.x = i` (synchronous_commit off),"
        " each read timed alone; raw column: the same read with no write before it",
        "µs/read", ("pg_writes/everstore", "read_after_write_us"), None,
        ("pg_writes/everstore", "read_plain_us"), goals=(Goal("below", 0.5),)),
    Row("P2a", "transactions of {txn} writes: everstore `with store.transaction()`; evs {txn}"
        " events per save; raw executemany (pipelined) in BEGIN/COMMIT", "µs/write",
        ("pg_txn1000/everstore", "txn_us"), ("pg_txn1000/eventsourcing", "save_us"),
        ("pg_txn1000/raw", "executemany_us"), goals=(Goal("rate", 100_000),)),
    Row("P2b", "transactions of {txn} writes: raw binary COPY in BEGIN/COMMIT", "µs/write",
        ("pg_txn1000/everstore", "txn_us"), ("pg_txn1000/eventsourcing", "save_us"),
        ("pg_txn1000/raw", "copy_us"), goals=(Goal("rate", 100_000),)),
    Row("P3", "bulk import of {bulk} writes in transactions of {bulk_txn}: evs {es_save}"
        " events per save (larger saves hang); raw binary COPY per transaction", "µs/write",
        ("pg_bulk/everstore", "bulk_us"), ("pg_bulk/eventsourcing", "save_us"),
        ("pg_bulk/raw", "copy_us")),
    Row("P4", "follower reads a log of {follow} facts from the start: everstore"
        " `store.follow(since=0, timeout=0)`; evs NotificationLogReader.select (1,000 per"
        " section) + mapper.to_domain_event; raw SELECT seq > n LIMIT 1000, rows only",
        "µs/fact", ("pg_follow/everstore", "follow_us"),
        ("pg_follow/eventsourcing", "follow_us"), ("pg_follow/raw", "follow_us")),
]  # fmt: skip


SS10 = Goal("slowstore", 10.0)
SA5 = Goal("sqlalchemy", 5.0)
SA10 = Goal("sqlalchemy", 10.0)
_M = "models/"

MODELS_ROWS: list[Row] = [
    Row("M1", "create {m_create} objects, one commit each (sqlalchemy: + its history row;"
        " raw: one INSERT per commit, the floor)", "µs/object",
        (_M + "everstore", "create_us"), (_M + "slowstore", "create_us"),
        (_M + "raw", "commit_us"), goals=(SS10,), peer2=(_M + "sqlalchemy", "create_us")),
    Row("M2", "one field update on each of {m_update} objects, committed (sqlalchemy: + a"
        " history row in the same commit; raw: UPDATE + history INSERT per transaction)",
        "µs/update", (_M + "everstore", "update_us"), (_M + "slowstore", "update_us"),
        (_M + "raw", "update_history_us"), goals=(SS10, SA5),
        peer2=(_M + "sqlalchemy", "update_us")),
    Row("M3", "{m_hot_small} updates to ONE object, committed each", "s",
        (_M + "everstore", "hot_small_s"), (_M + "slowstore", "hot_small_s"),
        goals=(SS10,), peer2=(_M + "sqlalchemy", "hot_small_s")),
    Row("M4", "{m_hot_large} updates to ONE object (slowstore: extrapolated as n² from"
        " {m_slow_hot} measured)", "s", (_M + "everstore", "hot_large_s"),
        (_M + "slowstore", "hot_large_s"), goals=(SS10, Goal("below", 2.0)),
        peer2=(_M + "sqlalchemy", "hot_large_s")),
    Row("M5", "linearity: time per update at {m_hot_large} / at {m_hot_small} updates",
        "ratio", (_M + "everstore", "hot_linearity"), goals=(Goal("below", 1.5),),
        peer2=(_M + "sqlalchemy", "hot_linearity")),
    Row("M6", "cold open of {m_objects} objects + first object (new process; after import)",
        "s", (_M + "everstore", "cold_open_first_s"), (_M + "slowstore", "cold_open_first_s"),
        goals=(Goal("below", 0.010),), peer2=(_M + "sqlalchemy", "cold_open_first_s")),
    Row("M6b", "cold open: import of the library and the model class", "s",
        (_M + "everstore", "cold_import_s"), (_M + "slowstore", "cold_import_s"),
        peer2=(_M + "sqlalchemy", "cold_import_s")),
    Row("M7", "filter(pred) over {m_objects} objects, 5 % hits (sqlalchemy: the same"
        " predicate in SQL on an unindexed column)", "ms", (_M + "everstore", "filter_ms"),
        (_M + "slowstore", "filter_ms"), peer2=(_M + "sqlalchemy", "filter_ms")),
    Row("M8", "indexed equality returning 1 object of {m_objects} (slowstore: filter scan;"
        " raw: SELECT, rows as tuples)", "µs", (_M + "everstore", "eq1_us"),
        (_M + "slowstore", "eq1_us"), (_M + "raw", "eq1_us"),
        goals=(Goal("below", 8.0), SA10), peer2=(_M + "sqlalchemy", "eq1_us")),
    Row("M9", "indexed equality returning {m_per_age} objects of {m_objects}", "ms",
        (_M + "everstore", "eq_many_ms"), (_M + "slowstore", "eq_many_ms"),
        (_M + "raw", "eq_many_ms"), goals=(SA10,), peer2=(_M + "sqlalchemy", "eq_many_ms")),
    Row("M10", "indexed range age >= {m_range_low}: {m_in_range} objects of {m_objects}", "ms",
        (_M + "everstore", "range_ms"), (_M + "slowstore", "range_ms"),
        (_M + "raw", "range_ms"), peer2=(_M + "sqlalchemy", "range_ms")),
    Row("M11", "first indexed query after opening {m_objects} objects (everstore builds its"
        " index; slowstore loads every file)", "s", (_M + "everstore", "first_query_s"),
        (_M + "slowstore", "first_query_s"), peer2=(_M + "sqlalchemy", "first_query_s")),
    Row("M12", "floor: raw sqlite3, one-row INSERT, commit per write (WAL,"
        " synchronous=NORMAL)", "µs/write", None, raw=(_M + "raw", "commit_us")),
    Row("M13", "floor of M1: raw sqlite3, one transaction inserting what add() inserts (a"
        " namespace name and five rows, tables shaped like everstore's)", "µs/object", None,
        raw=(_M + "raw", "create_floor_us")),
]  # fmt: skip


_V = "versions/"
_VE, _VF, _VR = _V + "everstore", _V + "file-model", _V + "raw-sqlite"

VERSIONS_ROWS: list[Row] = [
    Row("V1", "save of a 1 KB object (dict of strings and ints), a new version of one entry"
        " each (raw: INSERT of its JSON + commit)", "µs/save",
        (_VE, "save_small_us"), (_VF, "save_small_us"), (_VR, "save_small_us")),
    Row("V2", "load of it, latest version (raw: SELECT + orjson.loads)", "µs/load",
        (_VE, "load_small_us"), (_VF, "load_small_us"), (_VR, "load_small_us")),
    Row("V3", "save of a 1 MB object (a dict holding a list of small dicts)", "ms/save",
        (_VE, "save_large_ms"), (_VF, "save_large_ms"), (_VR, "save_large_ms")),
    Row("V4", "load of it, latest version", "ms/load",
        (_VE, "load_large_ms"), (_VF, "load_large_ms"), (_VR, "load_large_ms")),
    Row("V5a", "{v_puts} puts of ~100-byte dicts into ONE record entry, total (raw: one"
        " INSERT + commit each)", "s", (_VE, "puts_s"), (_VF, "puts_s"), (_VR, "puts_s"),
        goals=(Goal("file model", 100.0),)),
    Row("V5b", "the first {v_block} of those puts", "ms",
        (_VE, "puts_first_ms"), (_VF, "puts_first_ms"), (_VR, "puts_first_ms")),
    Row("V5c", "the last {v_block} of those puts", "ms",
        (_VE, "puts_last_ms"), (_VF, "puts_last_ms"), (_VR, "puts_last_ms")),
    Row("V5d", "linearity: last {v_block} / first {v_block} puts (time)", "ratio",
        (_VE, "puts_last_first_ratio"), (_VF, "puts_last_first_ratio"),
        (_VR, "puts_last_first_ratio"), goals=(Goal("below", 1.5),)),
    Row("V5e", "linearity of the typical put: median put of the last {v_block} / of the"
        " first {v_block} (each put timed alone)", "ratio", (_VE, "puts_median_ratio"),
        (_VF, "puts_median_ratio"), (_VR, "puts_median_ratio")),
    Row("V5f", "storage in use after those puts (as V8 counts it; raw: its rows)", "MiB",
        (_VE, "puts_storage_mib"), (_VF, "puts_storage_mib"), (_VR, "puts_storage_mib")),
    Row("V6", "history(max_items={v_versions}) of an entry with {v_versions} versions"
        " (raw: SELECT of its digests, newest first)", "ms/call",
        (_VE, "history_ms"), (_VF, "history_ms"), (_VR, "history_ms")),
    Row("V7a", "load(digest=history[-1]): the version {v_versions} back, repeated (raw:"
        " SELECT by digest + orjson.loads)", "µs/load",
        (_VE, "load_far_us"), (_VF, "load_far_us"), (_VR, "load_far_us")),
    Row("V7b", "load of the version {v_near} back, repeated", "µs/load",
        (_VE, "load_near_us"), (_VF, "load_near_us"), (_VR, "load_near_us")),
    Row("V7c", "{v_versions} back / {v_near} back (time; O(log n) would be at most 2)",
        "ratio", (_VE, "load_far_near_ratio"), (_VF, "load_far_near_ratio"),
        (_VR, "load_far_near_ratio"), goals=(Goal("below", 2.0),)),
    Row("V7d", "first load of the version {v_versions} back on a freshly opened engine",
        "µs", (_VE, "first_load_far_us"), (_VF, "first_load_far_us")),
    Row("V7e", "first load of the version {v_near} back on a freshly opened engine", "µs",
        (_VE, "first_load_near_us"), (_VF, "first_load_near_us")),
    Row("V7f", "first loads: {v_versions} back / {v_near} back (time)", "ratio",
        (_VE, "first_load_far_near_ratio"), (_VF, "first_load_far_near_ratio"),
        goals=(Goal("below", 2.0),)),
    Row("V8a", "dedup: storage added by saving a {v_blob} `bytes` value (everstore: SQLite"
        " pages in use after a TRUNCATE checkpoint; file model: its files' sizes)", "KiB",
        (_VE, "dedup_first_kib"), (_VF, "dedup_first_kib")),
    Row("V8b", "dedup: storage added by saving the same {v_blob} in another entry of"
        " another tenant (stored once: only the new snapshot)", "KiB",
        (_VE, "dedup_second_kib"), (_VF, "dedup_second_kib"), goals=(Goal("below", 64.0),)),
    Row("V9", "floor of a put: raw sqlite3, one INSERT of a ~100-byte blob + commit (WAL,"
        " synchronous=NORMAL)", "µs/write", None, raw=(_VR, "put_us")),
    Row("V10", "floor of a put that stores what everstore stores for it: raw sqlite3, the V9"
        " INSERT, and in every 32nd put (a checkpoint) a 57 KB blob under a unique SHA-256 in"
        " the same transaction", "µs/put", None, raw=(_VR, "pack_put_us")),
]  # fmt: skip


@dataclass(frozen=True)
class Table:
    """One results table: its header, the JSON key of its peer column, its rows."""

    name: str
    header: str
    peer: str
    rows: list[Row]
    rate_column: bool = False  # "everstore /s" after the everstore column
    peer2: str | None = None  # the JSON key of a second peer column


SQLITE_TABLE = Table("sqlite", TABLE_HEADER, "appendmuch", ROWS)
PG_TABLE = Table("postgresql", PG_TABLE_HEADER, "eventsourcing", PG_ROWS, rate_column=True)
MODELS_TABLE = Table("models", MODELS_TABLE_HEADER, "slowstore", MODELS_ROWS, peer2="sqlalchemy")
VERSIONS_TABLE = Table("versions", VERSIONS_TABLE_HEADER, "file_model", VERSIONS_ROWS)


@dataclass(frozen=True)
class StructRow:
    """A row of the structures table: everstore (synchronous=NORMAL), everstore with
    synchronous=FULL, appendonly, and the raw sqlite3 floors F1 (NORMAL) and F2 (FULL).
    Its ratios are appendonly / each of the others, so that the floors' ratios show
    what raw SQLite can do against appendonly in the same run. ``goals`` pairs a goal
    with the column it judges, "full" or "es"; a goal on appendonly that the column's
    floor itself misses is marked so."""

    key: str
    label: str
    unit: str
    es: Ref | None = None
    full: Ref | None = None
    ao: Ref | None = None
    floor: Ref | None = None
    floor_full: Ref | None = None
    goals: tuple[tuple[str, Goal], ...] = ()
    ratios: bool = True  # False for counts, where a ratio means nothing


#: the columns of the structures table: (StructRow attribute, title, JSON key)
STRUCT_COLUMNS = (
    ("es", "everstore", "everstore"),
    ("full", "everstore FULL", "everstore_full"),
    ("ao", "appendonly", "appendonly"),
    ("floor", "floor F1", "floor_f1"),
    ("floor_full", "floor F2", "floor_f2"),
)
#: the floor of each judged column, and how a verdict names the column
STRUCT_FLOOR = {"es": "floor", "full": "floor_full"}
STRUCT_NAME = {"es": "NORMAL", "full": "FULL"}
STRUCTURES_TABLE_HEADER = (
    "| # | workload | unit | everstore | everstore FULL | appendonly | floor F1 | floor F2 "
    "| ao / everstore | ao / FULL | ao / F1 | ao / F2 | goal | result |"
)

_S = "structures/"
_SE, _SF, _SA, _SR = _S + "everstore", _S + "everstore-full", _S + "appendonly", _S + "raw-sqlite"
AO2 = (("full", Goal("appendonly", 2.0)), ("es", Goal("appendonly", 2.0)))


def _struct(
    key: str,
    label: str,
    unit: str,
    metric: str,
    floor: Ref | None = None,
    floor_full: Ref | None = None,
    goals: tuple[tuple[str, Goal], ...] = (),
    ratios: bool = True,
) -> StructRow:
    """A row of everstore, everstore FULL and appendonly's ``metric``, and the floors."""
    return StructRow(key, label, unit, (_SE, metric), (_SF, metric), (_SA, metric), floor,
                     floor_full, goals, ratios)  # fmt: skip


STRUCTURES_ROWS: list[StructRow] = [
    _struct("S1", "{s_pushes} pushes into AppendStack({s_layers}, {s_length}) with an Archive"
            " pruner, a commit every {s_large}; F1/F2: raw INSERT of the same rows (everstore's"
            " log), transactions of {s_large}", "µs/push", "push_us_large",
            (_SR, "insert_us_normal_large"), (_SR, "insert_us_full_large"), AO2),
    _struct("S2", "the same, a commit every {s_small}; F1/F2: transactions of {s_small}",
            "µs/push", "push_us_small", (_SR, "insert_us_normal_small"),
            (_SR, "insert_us_full_small"), AO2),
    _struct("S3a", "Accumulator: {s_pushes} appends, a commit every {s_large}; F1/F2 as S1's",
            "µs/append", "append_us", (_SR, "insert_us_normal_large"),
            (_SR, "insert_us_full_large"),
            (("full", Goal("appendonly", 10.0)), ("es", Goal("appendonly", 10.0)))),
    _struct("S3b", "Accumulator: size of the file after S3a (everstore: its pages after a"
            " checkpoint; appendonly: Data.fs)", "MB", "accumulator_mb"),
    _struct("S4a", "iteration of stack + archive holding {s_pushes} items (S1's file), cold: a"
            " fresh process opens the file and iterates once (imports not timed)", "ms",
            "cold_iter_ms"),
    _struct("S4b", "the same, warm: repeated iterations in one process", "ms", "warm_iter_ms"),
    _struct("S5a", "{s_workers} processes pushing at once into one stack + archive,"
            " {s_worker_pushes} pushes each, a commit every {s_worker_commit} (everstore: one"
            " SQLite file; appendonly: ZEO clients of one ZEO server, a batch retried after a"
            " ConflictError): wall time per push", "µs/push", "concurrent_us"),
    _struct("S5b", "S5a: items missing from stack + archive afterwards (of {s_total})",
            "items", "concurrent_missing", ratios=False),
    _struct("S5c", "S5a: batches pushed again after a ConflictError", "batches",
            "concurrent_retries", ratios=False),
    _struct("S5d", "S5a: batches whose pruning, after their commit, raised ArchiveOrderError"
            " (a lost race; the bench catches it)", "batches", "concurrent_prune_errors",
            ratios=False),
    _struct("S6a", "bytes written per push in S1 (SQLite: growth of page_count x page_size"
            " after a TRUNCATE checkpoint; appendonly: growth of Data.fs); F1/F2: per row",
            "bytes", "bytes_per_push_large", (_SR, "bytes_per_row_normal_large"),
            (_SR, "bytes_per_row_full_large"),
            (("es", Goal("at_most", 150.0)), ("full", Goal("at_most", 150.0)))),
    _struct("S6b", "the same in S2 (a commit every {s_small})", "bytes", "bytes_per_push_small",
            (_SR, "bytes_per_row_normal_small"), (_SR, "bytes_per_row_full_small")),
]  # fmt: skip


# -- running cases in child processes ----------------------------------------------------


@dataclass
class Options:
    quick: bool
    reps: int
    min_time: float
    workdir: Path
    json_path: Path
    only: list[str]
    rebuild: bool
    pg_conninfo: str | None = None  # the run's PostgreSQL server, for the pg_* families
    skipped: list[str] = field(default_factory=list)  # cases that could not run, and why


@dataclass
class CaseResult:
    reps: list[dict[str, float]] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    def median(self) -> dict[str, float]:
        keys = sorted({key for rep in self.reps for key in rep})
        found = {key: statistics.median(rep[key] for rep in self.reps if key in rep)
                 for key in keys}  # fmt: skip
        if self.rss_mib:
            found["rss_mib"] = statistics.median(self.rss_mib)
        return found


class ChildFailed(RuntimeError):
    pass


def run_child(case: str, opts: Options) -> dict[str, Any]:
    """Run one case in a fresh interpreter; return its JSON report."""
    handle, out = tempfile.mkstemp(prefix="bench-", suffix=".json")
    os.close(handle)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", case, "--out", out,
        "--min-time", repr(opts.min_time), "--workdir", str(opts.workdir),
    ]  # fmt: skip
    if opts.quick:
        command.append("--quick")
    # Children compile bytecode once into the work directory (never under src/): this
    # machine sets PYTHONDONTWRITEBYTECODE, which would make every import of the
    # editable everstore recompile its source while appendmuch's wheel has .pyc files.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(opts.workdir / "pycache")
    if opts.pg_conninfo is not None:
        env[pg_workloads.CONNINFO_VAR] = opts.pg_conninfo
    try:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=env,
                timeout=CHILD_TIMEOUT[opts.quick],
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise ChildFailed(f"{case} did not finish within {exc.timeout:g} s") from None
        if done.returncode != 0:
            raise ChildFailed(
                f"{case} exited with {done.returncode}:\n{done.stdout}{done.stderr}".rstrip()
            )
        with open(out, encoding="utf-8") as handle_:
            report: dict[str, Any] = json.load(handle_)
        return report
    finally:
        os.remove(out)


def child_main(case: str, out: str, config: workloads.Config) -> int:
    import resource

    start = time.perf_counter()
    metrics = CASES[case](config)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"case": case, "metrics": metrics, "rss_mib": rss, "wall_s": wall}, handle)
    return 0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_family(family: str, opts: Options, results: dict[str, CaseResult]) -> None:
    libraries = FAMILIES[family]
    if family == "cold_open":
        ensure_cold_files(opts)
    if family in LAYER_FAMILIES:
        unavailable = UNAVAILABLE[family]
        runnable = []
        for library in libraries:
            reason = unavailable(library)
            if reason is None:
                runnable.append(library)
            else:
                opts.skipped.append(f"{family}/{library}: {reason}")
                progress(f"  {family}/{library} skipped: {reason}")
        libraries = runnable
    for rep in range(opts.reps):
        for library in libraries:
            case = f"{family}/{library}"
            result = results.setdefault(case, CaseResult())
            started = time.perf_counter()
            if family == "cold_open":
                metrics, rss = cold_open_repetition(case, opts)
                result.reps.append(metrics)
                result.rss_mib.extend(rss)
            else:
                report = run_child(case, opts)
                result.reps.append(report["metrics"])
                result.rss_mib.append(report["rss_mib"])
            elapsed = time.perf_counter() - started
            result.wall_s.append(elapsed)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in result.reps[-1].items())
            progress(f"  {case} rep {rep + 1}/{opts.reps} ({elapsed:.1f} s): {shown}")


def cold_open_repetition(case: str, opts: Options) -> tuple[dict[str, float], list[float]]:
    samples: list[dict[str, float]] = []
    rss: list[float] = []
    limit = 2 if opts.quick else COLD_MAX_SAMPLES
    while len(samples) < limit and sum(s["open_read_s"] for s in samples) < opts.min_time:
        report = run_child(case, opts)
        samples.append(report["metrics"])
        rss.append(report["rss_mib"])
    metrics = {key: statistics.fmean(sample[key] for sample in samples) for key in samples[0]}
    metrics["samples"] = float(len(samples))
    return metrics, rss


def ensure_cold_files(opts: Options) -> None:
    config = workloads.Config(opts.quick, opts.min_time, opts.workdir)
    for library in FAMILIES["cold_open"]:
        path = workloads.cold_file(config, library)
        if path.exists() and not opts.rebuild:
            progress(f"  cold_open: using cached {path.name}")
            continue
        progress(f"  cold_open: building {path.name} (cached for later runs) ...")
        report = run_child(f"cold_build/{library}", opts)
        m = report["metrics"]
        progress(f"  cold_open: built in {m['build_s']:.1f} s, {m['bytes'] / 1e6:.1f} MB")


# -- the PostgreSQL server ---------------------------------------------------------------


def pg_server_module() -> ModuleType:
    """tests/pg_server.py: the throwaway server the test suite uses, shared, not copied."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import pg_server

    return pg_server


def pg_unavailable(family: str) -> str | None:
    """Why a PostgreSQL family's libraries cannot run here (the server aside), or None."""
    if family in pg_writers_workloads.FAMILIES:
        return pg_writers_workloads.unavailable_reason()
    return pg_workloads.unavailable_reason()


def pg_settings(conninfo: str) -> dict[str, Any]:
    """The server settings that decide what a commit costs."""
    import psycopg

    names = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        found: dict[str, Any] = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", *names)
        }
    found["durable"] = found["fsync"] == "on" and found["synchronous_commit"] == "on"
    return found


def pg_start(
    families: list[str], opts: Options, info: dict[str, Any]
) -> tuple[Any, list[str], list[str]]:
    """Start the run's one server if a PostgreSQL family that can run is selected:
    (the server or None, the families skipped, a message per reason they are skipped).
    Sets ``opts.pg_conninfo`` and ``info["postgresql"]``."""
    wanted = [name for name in families if name in PG_FAMILIES]
    skipped: dict[str, list[str]] = {}  # reason -> families
    runnable = []
    for name in wanted:
        reason = pg_unavailable(name)
        if reason is None:
            runnable.append(name)
        else:
            skipped.setdefault(reason, []).append(name)
    server = None
    if runnable:
        reason = pg_server_module().unavailable_reason()
        if reason is None:
            try:
                server = pg_server_module().start_server()
                info["postgresql"] = {
                    **pg_settings(server.conninfo),
                    "started_by_run": server.owned,
                }
            except Exception as exc:  # whatever stops a server here: skip, as when none exists
                if server is not None:
                    server.stop()
                server = None
                reason = f"could not start or reach a PostgreSQL server: {exc}"
            else:
                opts.pg_conninfo = server.conninfo
                progress(f"PostgreSQL server for the run: {server.conninfo}")
        if reason is not None:
            skipped.setdefault(reason, []).extend(runnable)
    messages = [
        f"PostgreSQL families ({', '.join(names)}) skipped: {reason}"
        for reason, names in skipped.items()
    ]
    for message in messages:
        progress(message)
    return server, [name for names in skipped.values() for name in names], messages


def print_pg_context(
    info: dict[str, Any], sz: pg_workloads.PgSizes, skipped: list[str], families: list[str]
) -> None:
    for message in skipped:
        print(message)
    pg = info.get("postgresql")
    if pg is None:
        return
    source = "started for this run" if pg["started_by_run"] else "from EVERSTORE_PG_CONNINFO"
    line = (
        f"PostgreSQL {pg['server_version']} ({source}, Unix socket or as given): fsync "
        f"{pg['fsync']}, synchronous_commit {pg['synchronous_commit']}, full_page_writes "
        f"{pg['full_page_writes']}, wal_sync_method {pg['wal_sync_method']}"
    )
    if any(name in pg_workloads.FAMILIES for name in families):
        line += (
            f" | eventsourcing {info['eventsourcing']}, psycopg {info['psycopg']}; sizes: "
            f"{sz.commits:,} commits per loop, {sz.txns} transactions of {sz.txn_size:,}, "
            f"{sz.bulk:,}-write import in transactions of {sz.bulk_txn:,}, {sz.follow:,}-fact "
            f"log to follow"
        )
    print(line)
    if not pg["durable"]:
        print("WARNING: the server does not flush commits (fsync or synchronous_commit off):")
        print("  per-commit figures are far below what a durable server costs")


def print_writers_context(info: dict[str, Any], ws: pg_writers_workloads.WritersSizes) -> None:
    writers = ", ".join(str(w) for w in ws.writers)
    print(
        f"pg_writers: {writers} writer processes started together (ready/go over pipes) on"
        f" one store, a fresh schema per loop; each process commits {ws.single:,} single"
        f" writes, or {ws.txns} transactions of {pg_writers_workloads.TXN_SIZE}; everstore:"
        f" a Store per process, `s.x = i` on a namespace of its own; raw psycopg"
        f" {info['psycopg']}: autocommit INSERT into a table with everstore's log columns,"
        f" an identity seq and the (ns, field, seq) index (transactions: executemany in"
        f" BEGIN/COMMIT); raw ordered (the floor of a commit-ordered log): libpq"
        f" through psycopg's pgconn, a counter-row UPDATE and the INSERT in one"
        f" statement committed without waiting for the flush, then a setval barrier"
        f" that waits for it, in one pipeline; total writes/s from go to the last"
        f" writer's end; growth: the rate / the same library's rate with 1 writer"
    )


def print_models_context(
    info: dict[str, Any], ms: models_workloads.ModelSizes, skipped: list[str]
) -> None:
    print(
        f"models: everstore.models vs slowstore {info['slowstore']} (JSON file per object)"
        f" and SQLAlchemy {info['sqlalchemy']} ORM (SQLite, WAL, synchronous=NORMAL, a history"
        f" row per change in its commit), pydantic {info['pydantic']}; raw sqlite3 is the"
        f" floor; queries over {ms.objects:,} objects with {ms.ages} distinct ages"
    )
    print_skipped(skipped, models_workloads.FAMILIES)


def print_skipped(skipped: list[str], families: dict[str, list[str]]) -> None:
    """The reasons a case of ``families`` was skipped."""
    for reason in skipped:
        if reason.startswith(tuple(families)):
            print(f"skipped: {reason}")


def print_versions_context(
    info: dict[str, Any], vs: versions_workloads.VersionSizes, skipped: list[str]
) -> None:
    print(
        f"versions: everstore.versions (SQLite, WAL, synchronous=NORMAL) vs a model of"
        f" MyDbEngine 0.2.1 written from its README (bench/mydbengine_model.py: a JSON file"
        f" per snapshot, a record entry's whole collection rewritten by every put, no fsync);"
        f" raw sqlite3 is the floor; {vs.puts:,} puts into one record entry,"
        f" {vs.versions:,} versions for history and old loads, a {vs.blob:,}-byte value"
        f" saved twice"
    )
    print_skipped(skipped, versions_workloads.FAMILIES)


def print_structures_context(
    info: dict[str, Any], ss: structures_workloads.StructureSizes, skipped: list[str]
) -> None:
    print(
        f"structures: everstore.structures on an SQLite file (WAL; everstore:"
        f" synchronous=NORMAL, a commit survives a killed process; everstore FULL:"
        f" synchronous=FULL, every commit synced) vs appendonly {info['appendonly']} on ZODB"
        f" {info['zodb']} FileStorage (fsync at every commit: FULL is the like-for-like"
        f" column); floors: raw sqlite3 on everstore's schema, F1 synchronous=NORMAL, F2"
        f" synchronous=FULL; items {{'i': i, 'name': 'n<i>', 'v': i / 3}}; ratios ao / x:"
        f" above 1x, x is faster (or smaller) than appendonly"
    )
    if info["zeo"] is None:
        print(
            "S5 appendonly: not measurable here: ZEO is not installed (appendonly's"
            " processes can share a ZODB only through a ZEO server): pip install ZEO"
        )
    else:
        print(f"S5 appendonly: ZEO {info['zeo']}, a server process started by the bench")
    print_skipped(skipped, structures_workloads.FAMILIES)


# -- the report ---------------------------------------------------------------------------


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "everstore": version("everstore"),
        "appendmuch": version("appendmuch"),
        "orjson": version("orjson"),
        "eventsourcing": version("eventsourcing"),
        "psycopg": version("psycopg"),
        "slowstore": version("slowstore"),
        "sqlalchemy": version("sqlalchemy"),
        "pydantic": version("pydantic"),
        "appendonly": version("appendonly"),
        "zodb": version("ZODB"),
        "zeo": version("ZEO"),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "src")),
        "loadavg_start": os.getloadavg(),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio(other: float | None, es: float | None) -> str:
    if other is None or es is None or es == 0:
        return "—"
    return f"{other / es:.2f}x" if other / es < 10 else f"{other / es:,.0f}x"


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def label_names(
    sz: workloads.Sizes,
    pg: pg_workloads.PgSizes,
    ms: models_workloads.ModelSizes,
    vs: versions_workloads.VersionSizes,
    ss: structures_workloads.StructureSizes,
) -> dict[str, str]:
    """The sizes the row labels mention, as ``{writes}`` etc."""
    low = ms.ages - 2
    return {
        "s_pushes": human(ss.pushes),
        "s_layers": str(ss.max_layers),
        "s_length": str(ss.max_length),
        "s_large": human(ss.commit_large),
        "s_small": human(ss.commit_small),
        "s_workers": str(ss.workers),
        "s_worker_pushes": human(ss.worker_pushes),
        "s_worker_commit": human(ss.worker_commit),
        "s_total": human(ss.workers * ss.worker_pushes),
        "v_puts": human(vs.puts),
        "v_block": human(vs.block),
        "v_versions": human(vs.versions),
        "v_near": human(vs.near),
        "v_blob": "1 MiB" if vs.blob == 1 << 20 else f"{vs.blob:,}-byte",
        "m_create": human(ms.create),
        "m_update": human(ms.update),
        "m_hot_small": human(ms.hot_small),
        "m_hot_large": human(ms.hot_large),
        "m_slow_hot": human(ms.slow_hot),
        "m_objects": human(ms.objects),
        "m_per_age": human(ms.objects // ms.ages),
        "m_range_low": str(low),
        "m_in_range": human(sum(1 for i in range(ms.objects) if i % ms.ages >= low)),
        "writes": human(sz.writes),
        "history": human(sz.history),
        "history_small": human(sz.history_small),
        "paired": human(sz.paired_writes),
        "within": human(sz.within),
        "cold": human(sz.cold_namespaces * sz.cold_fields * sz.cold_writes),
        "items": human(sz.list_items),
        "isolation": human(workloads.ISOLATION_FIELDS),
        "loadns": human(workloads.BULK_NAMESPACES[sz is workloads.QUICK]),
        **{
            f"app{index}": human(size)
            for index, size in enumerate(workloads.APPEND_SIZES[sz is workloads.QUICK], 1)
        },
        "txn": human(pg.txn_size),
        "bulk": human(pg.bulk // pg.bulk_txn * pg.bulk_txn),
        "bulk_txn": human(pg.bulk_txn),
        "es_save": human(min(pg.bulk_txn, pg_workloads.ES_MAX_SAVE)),
        "follow": human(pg.follow // pg.follow_keys * pg.follow_keys),
    }


def per_second(us: float | None) -> str:
    return "—" if not us else f"{1e6 / us:,.0f}"


def table(
    spec: Table, medians: dict[str, dict[str, float]], names: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    def get(ref: Ref | None) -> float | None:
        if ref is None:
            return None
        return medians.get(ref[0], {}).get(ref[1])

    numbers = 5 + spec.rate_column + 2 * (spec.peer2 is not None)
    lines = [spec.header, "|---|---|---|" + "--:|" * numbers + "---|---|"]
    rows: list[dict[str, Any]] = []
    for row in spec.rows:
        label = row.label.format(**names)
        es, am, raw, p2 = get(row.es), get(row.am), get(row.raw), get(row.peer2)
        if es is None and am is None and raw is None and p2 is None:
            continue
        goals = " ; ".join(goal.label() for goal in row.goals) or "—"
        verdicts = [goal.check(es, am, raw, p2) for goal in row.goals]
        result = " ; ".join(verdicts) or "—"
        rate = f" {per_second(es)} |" if spec.rate_column else ""
        if spec.peer2 is None:
            lines.append(
                f"| {row.key} | {label} | {row.unit} | {fmt(es)} |{rate} {fmt(am)} | {fmt(raw)} "
                f"| {ratio(am, es)} | {ratio(raw, es)} | {goals} | {result} |"
            )
        else:
            lines.append(
                f"| {row.key} | {label} | {row.unit} | {fmt(es)} | {fmt(am)} | {fmt(p2)} "
                f"| {fmt(raw)} | {ratio(am, es)} | {ratio(p2, es)} | {ratio(raw, es)} "
                f"| {goals} | {result} |"
            )
        found: dict[str, Any] = {
            "table": spec.name, "key": row.key, "label": label, "unit": row.unit,
            "everstore": es, spec.peer: am, "raw": raw,
            f"vs_{spec.peer}": None if am is None or not es else am / es,
            "vs_raw": None if raw is None or not es else raw / es,
            "goals": [goal.label() for goal in row.goals], "results": verdicts,
        }  # fmt: skip
        if spec.rate_column:
            found["everstore_per_s"] = None if not es else 1e6 / es
        if spec.peer2 is not None:
            found[spec.peer2] = p2
            found[f"vs_{spec.peer2}"] = None if p2 is None or not es else p2 / es
        rows.append(found)
    return "\n".join(lines), rows


def structures_table(
    medians: dict[str, dict[str, float]], names: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    """The structures table (see :class:`StructRow`) and its rows for the JSON."""
    lines = [STRUCTURES_TABLE_HEADER, "|---|---|---|" + "--:|" * 9 + "---|---|"]
    rows: list[dict[str, Any]] = []
    for row in STRUCTURES_ROWS:
        values: dict[str, float | None] = {}
        for attribute, _, _ in STRUCT_COLUMNS:
            ref: Ref | None = getattr(row, attribute)
            values[attribute] = None if ref is None else medians.get(ref[0], {}).get(ref[1])
        if all(value is None for value in values.values()):
            continue
        ao = values["ao"]
        labels: list[str] = []
        verdicts: list[str] = []
        for column, goal in row.goals:
            floor = values[STRUCT_FLOOR[column]]
            verdict = goal.check(values[column], ao, floor)
            if (
                verdict == "MISS" and goal.kind == "appendonly" and ao is not None
                and floor is not None and ao / floor < goal.threshold
            ):  # fmt: skip
                verdict += f" (floor: {ratio(ao, floor)})"
            if goal.label() not in labels:
                labels.append(goal.label())
            verdicts.append(f"{STRUCT_NAME[column]} {verdict}")
        label = row.label.format(**names)
        cells = " | ".join(fmt(values[attribute]) for attribute, _, _ in STRUCT_COLUMNS)
        ratios = " | ".join(
            ratio(ao, values[attribute]) if row.ratios else "—"
            for attribute in ("es", "full", "floor", "floor_full")
        )
        lines.append(
            f"| {row.key} | {label} | {row.unit} | {cells} | {ratios} "
            f"| {' ; '.join(labels) or '—'} | {' ; '.join(verdicts) or '—'} |"
        )
        found: dict[str, Any] = {"table": "structures", "key": row.key, "label": label,
                                 "unit": row.unit}  # fmt: skip
        for attribute, _, key in STRUCT_COLUMNS:
            found[key] = values[attribute]
            value = values[attribute]
            if attribute != "ao" and row.ratios:
                found[f"appendonly_vs_{key}"] = None if ao is None or not value else ao / value
        found["goals"] = [f"{STRUCT_NAME[column]} {goal.label()}" for column, goal in row.goals]
        found["results"] = verdicts
        rows.append(found)
    return "\n".join(lines), rows


#: the pg_writers table's goal, from issue 12: with these many writers, everstore's total
#: writes/s at least WRITERS_RAW_SHARE of raw psycopg's, and its growth over 1 writer at
#: least WRITERS_RAW_SHARE of raw's growth ("growing with writers as raw does")
WRITERS_GOAL_FROM = 4
WRITERS_RAW_SHARE = 0.8
WRITERS_TABLE_HEADER = (
    "| # | writers | commits | everstore writes/s | raw psycopg writes/s | everstore / raw "
    "| everstore growth vs 1 | raw growth vs 1 | raw ordered writes/s (floor) "
    "| everstore / raw ordered | goal | result |"
)
WRITERS_MODE_LABEL = {"single": "one per write", "txn100": "transactions of 100"}


def writers_table(
    medians: dict[str, dict[str, float]], ws: pg_writers_workloads.WritersSizes
) -> tuple[str, list[dict[str, Any]]]:
    """The pg_writers table: per mode and number of writers, both libraries' total
    writes per second (higher is better), their ratio, each one's growth over its own
    rate with 1 writer, and issue 12's goal from WRITERS_GOAL_FROM writers on."""
    es_metrics = medians.get("pg_writers/everstore", {})
    raw_metrics = medians.get("pg_writers/raw", {})
    ordered_metrics = medians.get("pg_writers/raw_ordered", {})
    lines = [WRITERS_TABLE_HEADER, "|---|--:|---|" + "--:|" * 7 + "---|---|"]
    rows: list[dict[str, Any]] = []
    share = WRITERS_RAW_SHARE
    for number, mode in enumerate(pg_writers_workloads.MODES, 1):
        base = pg_writers_workloads.metric(mode, ws.writers[0])
        es1, raw1 = es_metrics.get(base), raw_metrics.get(base)
        for letter, writers in zip("abcdefgh", ws.writers, strict=False):
            name = pg_writers_workloads.metric(mode, writers)
            es, raw = es_metrics.get(name), raw_metrics.get(name)
            ordered = ordered_metrics.get(name)
            if es is None and raw is None:
                continue
            vs_ordered = None if es is None or not ordered else es / ordered
            es_growth = None if es is None or not es1 else es / es1
            raw_growth = None if raw is None or not raw1 else raw / raw1
            vs_raw = None if es is None or not raw else es / raw
            goals: list[str] = []
            verdicts: list[str] = []
            if writers >= WRITERS_GOAL_FROM:
                goals = [f"≥ {share:g}x raw", f"growth ≥ {share:g}x raw's"]
                verdicts = [
                    "n/a" if vs_raw is None else ("PASS" if vs_raw >= share else "MISS"),
                    "n/a" if es_growth is None or not raw_growth
                    else ("PASS" if es_growth / raw_growth >= share else "MISS"),
                ]  # fmt: skip
            key = f"PW{number}{letter}"
            lines.append(
                f"| {key} | {writers} | {WRITERS_MODE_LABEL[mode]} | {rate(es)} | {rate(raw)} "
                f"| {times(vs_raw)} | {times(es_growth)} | {times(raw_growth)} "
                f"| {rate(ordered)} | {times(vs_ordered)} "
                f"| {' ; '.join(goals) or '—'} | {' ; '.join(verdicts) or '—'} |"
            )
            rows.append({
                "table": "pg_writers", "key": key, "writers": writers, "mode": mode,
                "everstore_per_s": es, "raw_per_s": raw, "everstore_vs_raw": vs_raw,
                "everstore_growth": es_growth, "raw_growth": raw_growth,
                "raw_ordered_per_s": ordered, "everstore_vs_raw_ordered": vs_ordered,
                "goals": goals, "results": verdicts,
            })  # fmt: skip
    return "\n".join(lines), rows


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def rss_table(results: dict[str, CaseResult]) -> str:
    lines = ["| case | peak RSS (MiB, median) | wall per repetition (s) |", "|---|--:|--:|"]
    for case, result in results.items():
        if result.rss_mib:
            lines.append(
                f"| {case} | {statistics.median(result.rss_mib):.0f} "
                f"| {statistics.median(result.wall_s):.1f} |"
            )
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--reps", type=int, help="repetitions per case (default 3; quick 1)")
    parser.add_argument(
        "--min-time", type=float, help="seconds timed per measurement (default 0.5; quick 0.02)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=RESULTS, help="scratch files and cached cold-open files"
    )
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--only", default="", help=f"comma-separated families of {list(FAMILIES)}")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cold-open files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    quick: bool = args.quick
    min_time: float = args.min_time if args.min_time is not None else (0.02 if quick else 0.5)
    workdir: Path = args.workdir.resolve()
    if args.child:
        return child_main(args.child, args.out, workloads.Config(quick, min_time, workdir))

    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(FAMILIES))
    if unknown:
        print(f"unknown families {unknown}; choose from {list(FAMILIES)}", file=sys.stderr)
        return 2
    families = [name for name in FAMILIES if not only or name in only]
    try:
        am_version = metadata.version("appendmuch")
    except metadata.PackageNotFoundError:
        am_version = None
    if am_version != "0.3.0" and any(name in APPENDMUCH_FAMILIES for name in families):
        print(
            f"bench/run.py needs appendmuch 0.3.0 (found {am_version}); `make bench` installs it",
            file=sys.stderr,
        )
        return 2
    opts = Options(
        quick=quick,
        reps=args.reps if args.reps is not None else (1 if quick else 3),
        min_time=min_time,
        workdir=workdir,
        json_path=args.json or RESULTS / ("quick.json" if quick else "latest.json"),
        only=only,
        rebuild=args.rebuild,
    )
    opts.workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    sz = workloads.sizes(quick)
    pg_sz = pg_workloads.pg_sizes(quick)
    server, pg_skipped_families, pg_skipped = pg_start(families, opts, info)
    families = [name for name in families if name not in pg_skipped_families]
    progress(
        f"everstore benchmarks ({'quick' if quick else 'full'}): {opts.reps} repetition(s), "
        f"≥{min_time:g} s timed per measurement, families: {', '.join(families)}"
    )
    started = time.perf_counter()
    results: dict[str, CaseResult] = {}
    failures: list[str] = []
    try:
        for family in families:
            progress(f"{family}:")
            try:
                run_family(family, opts, results)
            except ChildFailed as exc:
                failures.append(str(exc))
                progress(f"  FAILED: {exc}")
    finally:
        if server is not None:
            server.stop()  # a no-op for a server named by EVERSTORE_PG_CONNINFO
    total = time.perf_counter() - started
    info["loadavg_end"] = os.getloadavg()
    info["git_commit_end"] = git("rev-parse", "--short", "HEAD")
    info["git_dirty_end"] = bool(git("status", "--porcelain", "--", "src"))
    medians = {case: result.median() for case, result in results.items() if result.reps}
    vs = versions_workloads.version_sizes(quick)
    ss = structures_workloads.structure_sizes(quick)
    names = label_names(sz, pg_sz, models_workloads.model_sizes(quick), vs, ss)
    sqlite_text, sqlite_rows = table(SQLITE_TABLE, medians, names)
    pg_text, pg_rows = table(PG_TABLE, medians, names)
    models_text, models_rows = table(MODELS_TABLE, medians, names)
    versions_text, versions_rows = table(VERSIONS_TABLE, medians, names)
    structures_text, structures_rows = structures_table(medians, names)
    ws = pg_writers_workloads.writers_sizes(quick)
    writers_text, writers_rows = writers_table(medians, ws)

    print(
        f"everstore {info['everstore']} (git {info['git_commit']}"
        f"{', src modified' if info['git_dirty'] else ''}) vs appendmuch {info['appendmuch']}"
        f" | Python {info['python']}, SQLite {info['sqlite']}, {info['nproc']} CPUs"
        f" | load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}"
    )
    print(
        f"mode {'quick' if quick else 'full'}: median of {opts.reps} repetition(s), each "
        f"≥{min_time:g} s timed, one fresh process per case; sizes: {sz.writes:,} writes, "
        f"{sz.history:,}-value history, {sz.within:,} writes for within, "
        f"{sz.cold_namespaces * sz.cold_fields * sz.cold_writes:,} facts for cold open, "
        f"{sz.list_items:,} list appends; total {total:.0f} s"
    )
    print_pg_context(info, pg_sz, pg_skipped, families)
    if (info["git_commit_end"], info["git_dirty_end"]) != (info["git_commit"], info["git_dirty"]):
        print(
            f"WARNING: src/ changed during the run (git {info['git_commit']} -> "
            f"{info['git_commit_end']}): cases may have measured different code"
        )
    print("Ratios: other / everstore time (or size); above 1x means everstore is better.")
    print()
    # With only PostgreSQL families selected, an empty SQLite table would be noise.
    others = pg_rows or writers_rows or models_rows or versions_rows or structures_rows
    if sqlite_rows or not others:
        print(sqlite_text)
        print()
    if pg_rows:
        print(pg_text)
        print()
    if writers_rows or "pg_writers" in families:
        print_writers_context(info, ws)
        print(writers_text)
        print()
    if models_rows or "models" in families:
        print_models_context(info, models_workloads.model_sizes(quick), opts.skipped)
        print(models_text)
        print()
    if versions_rows or "versions" in families:
        print_versions_context(info, vs, opts.skipped)
        print(versions_text)
        print()
    if structures_rows or "structures" in families:
        print_structures_context(info, ss, opts.skipped)
        print(structures_text)
        print()
    print(rss_table(results))
    for failure in failures:
        print(f"\nFAILED: {failure}")

    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": info,
        "config": {
            "quick": quick, "reps": opts.reps, "min_time": min_time,
            "sizes": sz.__dict__, "pg_sizes": pg_sz.__dict__, "families": families,
            "models_sizes": models_workloads.model_sizes(quick).__dict__,
            "versions_sizes": vs.__dict__,
            "structures_sizes": ss.__dict__,
            "skipped": opts.skipped,
            "pg_writers_sizes": ws.__dict__,
            "pg_skipped": "\n".join(pg_skipped) or None, "total_s": total,
        },
        "cases": {
            case: {"reps": result.reps, "median": medians.get(case),
                   "rss_mib": result.rss_mib, "wall_s": result.wall_s}
            for case, result in results.items()
        },
        "rows": sqlite_rows + pg_rows + writers_rows + models_rows + versions_rows
        + structures_rows,
        "failures": failures,
    }  # fmt: skip
    opts.json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress(f"results written to {opts.json_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
