"""The versions family: everstore.versions, the drop-in of MyDbEngine, against a model of
MyDbEngine 0.2.1, with raw sqlite3 as the floor.

Like ``workloads.py``, each function is one (family, library) case run in a fresh
interpreter by ``bench/run.py``, performing ONE repetition. The libraries:

* ``everstore``: ``from everstore.versions import DbEngine``; ``DbEngine(root=directory)``
  makes an everstore SQLite store (WAL, ``synchronous=NORMAL``) in that directory;
* ``file-model``: ``mydbengine_model.FileDbEngine``, a model of MyDbEngine written from its
  README (MyDbEngine itself cannot be installed: no distribution of it exists). One JSON
  file per snapshot, a ``head`` file per tenant rewritten on every write, ``bytes`` in a
  shared ``refs/`` directory, nothing fsynced; a record entry's snapshot is the whole
  collection, so each ``put`` rewrites it (``mydbengine_model.py`` says what is modelled
  and how);
* ``raw-sqlite``: the stdlib ``sqlite3`` module with everstore's settings (WAL,
  ``synchronous=NORMAL``, autocommit), one table ``versions(id, entry, digest, data
  BLOB)``: what each operation costs at least in SQLite. A write is one INSERT of the
  orjson-encoded value and its commit (no digest computed); a read is one SELECT and an
  ``orjson.loads``.

The workloads (rows V1-V10 of the versions table):

* V1/V2: ``save`` of a 1 KB object (a dict of strings and ints; every save a new version
  of one entry) and ``load`` of the latest version; V3/V4: the same with a 1 MB object
  (a dict holding a list of 14,300 small dicts, 1 MB of compact JSON);
* V5: ``put`` of 10,000 records (each a ~100-byte dict) into ONE record entry: the total
  time, the time of the first and of the last 1,000 puts and their ratio (1 means a put
  costs the same at any size of the collection), the same ratio of the median put
  (every put is timed alone: a load spike on a shared machine moves a block's total,
  hardly its median), and the storage they left (as V8 counts it). The file model's
  puts cost O(size), so 10,000 of them take minutes: one run per repetition;
* V6: ``history(max_items=10_000)`` of an entry with 10,000 versions (made by ``save``);
* V7: ``load(tenant, entry, digest=history[-1])``, the version 10,000 back, against
  the version 100 back: repeated loads, and the first load on a freshly opened engine;
* V8: a 1 MiB ``bytes`` value saved in two entries of two tenants: the bytes of storage
  each save added (everstore: the pages in use of its SQLite file after a TRUNCATE
  checkpoint, so whole 4 KiB pages; the file model: the sizes of its files). Stored
  once, the second save adds only its snapshot;
* V9: the floor of a put: one INSERT of a ~100-byte blob and its commit;
* V10: the floor of a put that also stores what everstore.versions stores for it: the
  V9 row in every put, and in every 32nd (a checkpoint) a 57,000-byte blob under its
  unique SHA-256 in the same transaction (the pack of trie nodes made since the last
  checkpoint).

``python bench/versions_workloads.py --profile [PUTS]`` prints a cProfile summary of
V5's puts on everstore (not part of the run).
"""

from __future__ import annotations

import cProfile
import functools
import gc
import hashlib
import importlib
import os
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from workloads import Config, Metrics, interleaved_batches, scratch_dir, timed_batches, timed_loops

__all__ = ["CASES", "FAMILIES", "VersionSizes", "unavailable_reason", "version_sizes"]

perf = time.perf_counter
_S = TypeVar("_S")

#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {"versions": ["everstore", "file-model", "raw-sqlite"]}

TENANT = "tenant_1"
USER = "user_1"
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class VersionSizes:
    small_saves: int  # V1: saves of the 1 KB object per timed loop
    large_saves: int  # V3: saves of the 1 MB object per timed loop
    large_rows: int  # the 1 MB object: a list of this many small dicts
    puts: int  # V5: puts into one record entry
    block: int  # V5: the first and the last ``block`` puts are timed apart
    versions: int  # V6, V7: versions of the entry
    near: int  # V7: the near version is ``near`` back
    fresh_samples: int  # V7: first loads on a freshly opened engine, per repetition
    blob: int  # V8: bytes of the value saved twice


VERSIONS_FULL = VersionSizes(
    small_saves=1_000,
    large_saves=10,
    large_rows=14_300,
    puts=10_000,
    block=1_000,
    versions=10_000,
    near=100,
    fresh_samples=5,
    blob=1 << 20,
)
VERSIONS_QUICK = VersionSizes(
    small_saves=50,
    large_saves=2,
    large_rows=14_300,
    puts=300,
    block=30,
    versions=300,
    near=10,
    fresh_samples=2,
    blob=1 << 20,
)


def version_sizes(quick: bool) -> VersionSizes:
    return VERSIONS_QUICK if quick else VERSIONS_FULL


def unavailable_reason(library: str) -> str | None:
    """Why a case of the versions family cannot run here, or None."""
    if library == "everstore":
        try:
            module = importlib.import_module("everstore.versions")
        except ImportError as exc:
            return f"everstore.versions cannot be imported: {exc}"
        if not hasattr(module, "DbEngine"):
            return "everstore.versions has no DbEngine yet"
    return None


# -- the data ------------------------------------------------------------------------------


def small_object(i: int) -> dict[str, Any]:
    """About 1 KB of JSON: strings and ints; ``i`` makes every version different."""
    return {
        "id": i,
        "name": f"configuration {i:08d}",
        "owner": "user_1",
        "theme": "dark",
        "lang": "en",
        "retries": 3,
        "timeout": 30,
        **{f"option_{k:02d}": f"value {k:02d} of configuration {i:08d}" for k in range(20)},
    }


@functools.cache
def _large_rows(count: int) -> list[dict[str, Any]]:
    return [
        {"n": j, "name": f"row {j:06d}", "value": (j * 7919) % 1000, "text": "lorem ipsum dolor"}
        for j in range(count)
    ]


def large_object(i: int, rows: int) -> dict[str, Any]:
    """About 1 MB of compact JSON (for 14,300 rows); only ``id`` differs between versions."""
    return {"id": i, "title": f"dataset {i:08d}", "rows": _large_rows(rows)}


def record_key(i: int) -> str:
    return f"user{i:06d}"


def record_value(i: int) -> dict[str, Any]:
    """About 100 bytes of JSON."""
    return {
        "name": f"User number {i:06d}",
        "email": f"user{i:06d}@example.com",
        "age": i % 90,
        "city": "Springfield",
    }


def blob(size: int) -> bytes:
    """Incompressible bytes, the same in every process."""
    return random.Random(8).randbytes(size)


# -- the engines (everstore.versions.DbEngine and the file model share the README's API) ---


def engine_factory(library: str) -> Callable[[Path], Any]:
    if library == "everstore":
        # imported by name: the module may not exist yet (unavailable_reason says so)
        engine_class = importlib.import_module("everstore.versions").DbEngine
        return lambda root: engine_class(root=str(root))
    from mydbengine_model import FileDbEngine

    return lambda root: FileDbEngine(root)


def _close(engine: Any) -> None:
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def storage_bytes(root: Path) -> int:
    """Bytes of storage in use under ``root``: for an SQLite database, its pages in use
    (page count less free pages) after a TRUNCATE checkpoint has moved every page of
    its WAL into it (a WAL the checkpoint could not empty counts whole); for any other
    file, its size. SQLite's -shm index is not data."""
    total = 0
    databases: set[Path] = set()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        with open(path, "rb") as handle:
            is_sqlite = handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
        if not is_sqlite:
            total += path.stat().st_size
            continue
        databases.add(path)
        total += sqlite_bytes(path)
    for path in root.rglob("*-wal"):
        if Path(str(path)[: -len("-wal")]) not in databases:
            total += path.stat().st_size
    return total


def sqlite_bytes(path: Path) -> int:
    """Bytes of the pages in use of the SQLite database ``path``, after a TRUNCATE
    checkpoint (plus its WAL, if the checkpoint could not empty it)."""
    conn = sqlite3.connect(path)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return int((pages - free) * size) + (wal.stat().st_size if busy and wal.exists() else 0)


def versions_case(config: Config, library: str) -> Metrics:
    sz = version_sizes(config.quick)
    make = engine_factory(library)
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        counter = iter(range(1_000_000))

        def fresh() -> tuple[Any, Path]:
            root = scratch / f"db-{next(counter)}"
            engine = make(root)
            engine.init(TENANT)
            return engine, root

        def teardown(state: tuple[Any, Path]) -> None:
            _close(state[0])
            shutil.rmtree(state[1], ignore_errors=True)

        # V1, V2: a 1 KB object
        def save_small(state: tuple[Any, Path]) -> None:
            save = state[0].save
            for i in range(sz.small_saves):
                save(TENANT, USER, "config", small_object(i))

        out["save_small_us"] = 1e6 * timed_loops(
            fresh, save_small, sz.small_saves, config.min_time, teardown
        )
        state = fresh()
        save_small(state)
        engine = state[0]
        assert engine.load(TENANT, "config") == small_object(sz.small_saves - 1)

        def load_small() -> None:
            load = engine.load
            for _ in range(100):
                load(TENANT, "config")

        out["load_small_us"] = 1e6 * timed_batches(load_small, 100, config.min_time)
        teardown(state)

        # V3, V4: a 1 MB object
        def save_large(state: tuple[Any, Path]) -> None:
            save = state[0].save
            for i in range(sz.large_saves):
                save(TENANT, USER, "dataset", large_object(i, sz.large_rows))

        out["save_large_ms"] = 1e3 * timed_loops(
            fresh, save_large, sz.large_saves, config.min_time, teardown
        )
        state = fresh()
        save_large(state)
        engine = state[0]
        assert engine.load(TENANT, "dataset") == large_object(sz.large_saves - 1, sz.large_rows)
        out["load_large_ms"] = 1e3 * timed_batches(
            lambda: engine.load(TENANT, "dataset"), 1, config.min_time
        )
        teardown(state)

        # V5: puts into one record entry
        out.update(_engine_puts(fresh, teardown, sz, config.min_time))
        # The file model's puts leave 5 GiB to delete: let the file system finish freeing
        # them (its journal, and discards where the disk is mounted with them) now, not
        # during the next measurement or the next case (untimed).
        os.sync()

        # V6, V7: an entry with many versions
        state = fresh()
        engine, root = state
        start = perf()
        for i in range(sz.versions):
            engine.save(TENANT, USER, "log", record_value(i))
        out["build_versions_s"] = perf() - start
        chain = engine.history(TENANT, "log", max_items=sz.versions)
        assert len(chain) == sz.versions, len(chain)
        out["history_ms"] = 1e3 * timed_batches(
            lambda: engine.history(TENANT, "log", max_items=sz.versions), 1, config.min_time
        )
        far, near = chain[-1], chain[sz.near]
        assert engine.load(TENANT, "log", digest=far) == record_value(0)
        assert engine.load(TENANT, "log", digest=near) == record_value(sz.versions - 1 - sz.near)

        def loads(digest: str) -> Callable[[], None]:
            def run() -> None:
                load = engine.load
                for _ in range(100):
                    load(TENANT, "log", digest=digest)

            return run

        repeated = interleaved_batches(
            {"far": loads(far), "near": loads(near)}, 100, config.min_time
        )
        out["load_far_us"] = 1e6 * repeated["far"]
        out["load_near_us"] = 1e6 * repeated["near"]
        out["load_far_near_ratio"] = repeated["far"] / repeated["near"]
        _close(engine)

        # The first load on a freshly opened engine, far and near in turn.
        firsts: dict[str, list[float]] = {"far": [], "near": []}
        for _ in range(sz.fresh_samples):
            for label, digest in (("far", far), ("near", near)):
                opened = make(root)
                assert opened.is_initialized(TENANT)
                gc.collect()
                start = perf()
                opened.load(TENANT, "log", digest=digest)
                firsts[label].append(perf() - start)
                _close(opened)
        out["first_load_far_us"] = 1e6 * statistics.median(firsts["far"])
        out["first_load_near_us"] = 1e6 * statistics.median(firsts["near"])
        out["first_load_far_near_ratio"] = out["first_load_far_us"] / out["first_load_near_us"]
        shutil.rmtree(root, ignore_errors=True)

        # V8: one bytes value in two entries of two tenants
        payload = blob(sz.blob)
        engine, root = fresh()
        engine.init("tenant_2")
        before = storage_bytes(root)
        engine.save(TENANT, USER, "upload", {"name": "first", "data": payload})
        first = storage_bytes(root)
        engine.save("tenant_2", "user_2", "copy", {"name": "second", "data": payload})
        second = storage_bytes(root)
        assert engine.load("tenant_2", "copy")["data"] == payload
        out["dedup_first_kib"] = (first - before) / 1024
        out["dedup_second_kib"] = (second - first) / 1024
        teardown((engine, root))
    return out


def timed_puts(
    fresh: Callable[[], _S],
    put: Callable[[_S, int], None],
    measure: Callable[[_S], int],
    teardown: Callable[[_S], None],
    sz: VersionSizes,
    min_time: float,
) -> Metrics:
    """V5: ``sz.puts`` calls of ``put(state, i)``, each timed alone, on fresh states until
    ``min_time`` seconds were timed (the file model's first run is already minutes: one
    run). ``measure(state)`` checks the first run's result and returns its storage."""
    runs: list[list[float]] = []
    stored = 0
    while sum(map(sum, runs)) < min_time:
        state = fresh()
        times: list[float] = []
        gc.collect()
        for i in range(sz.puts):
            began = perf()
            put(state, i)
            times.append(perf() - began)
        if not runs:
            stored = measure(state)
        teardown(state)
        runs.append(times)
    total = statistics.fmean(sum(times) for times in runs)
    first = statistics.fmean(sum(times[: sz.block]) for times in runs)
    last = statistics.fmean(sum(times[-sz.block :]) for times in runs)
    typical = statistics.fmean(
        statistics.median(times[-sz.block :]) / statistics.median(times[: sz.block])
        for times in runs
    )
    return {
        "puts_s": total,
        "put_us": 1e6 * total / sz.puts,
        "puts_first_ms": 1e3 * first,
        "puts_last_ms": 1e3 * last,
        "puts_last_first_ratio": last / first,
        "puts_median_ratio": typical,
        "puts_runs": float(len(runs)),
        "puts_storage_mib": stored / (1 << 20),
    }


def _engine_puts(
    fresh: Callable[[], tuple[Any, Path]],
    teardown: Callable[[tuple[Any, Path]], None],
    sz: VersionSizes,
    min_time: float,
) -> Metrics:
    def put(state: tuple[Any, Path], i: int) -> None:
        state[0].put(TENANT, USER, "users", record_key(i), record_value(i))

    def measure(state: tuple[Any, Path]) -> int:
        engine, root = state
        last = sz.puts - 1
        assert engine.get(TENANT, "users", key=record_key(last)) == record_value(last)
        assert len(engine.get(TENANT, "users")) == sz.puts
        return storage_bytes(root)

    return timed_puts(fresh, put, measure, teardown, sz, min_time)


def versions_everstore(config: Config) -> Metrics:
    return versions_case(config, "everstore")


def versions_file_model(config: Config) -> Metrics:
    return versions_case(config, "file-model")


# -- raw sqlite3: the floor ------------------------------------------------------------------


_RAW_SCHEMA = """
CREATE TABLE versions (id INTEGER PRIMARY KEY, entry TEXT NOT NULL, digest TEXT NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX versions_entry ON versions(entry, id);
CREATE UNIQUE INDEX versions_digest ON versions(digest);
CREATE TABLE blobs (id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, data BLOB NOT NULL);
"""
_RAW_PACK = "INSERT INTO blobs(digest, data) VALUES (?, ?)"
#: V10's blob at every PACK_EVERY-th put: what everstore.versions stores at a checkpoint
#: of a record entry (its 312 packs averaged 57 KB over V5's 10,000 puts at main's
#: 39218fc, one per 32 record writes)
PACK = 57_000
PACK_EVERY = 32
_RAW_INSERT = "INSERT INTO versions(entry, digest, data) VALUES (?, ?, ?)"
_RAW_LATEST = "SELECT data FROM versions WHERE entry = ? ORDER BY id DESC LIMIT 1"


def versions_raw_sqlite(config: Config) -> Metrics:
    import orjson

    sz = version_sizes(config.quick)
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        counter = iter(range(1_000_000))

        def fresh() -> tuple[sqlite3.Connection, Path]:
            path = scratch / f"raw-{next(counter)}.db"
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_RAW_SCHEMA)
            return conn, path

        def teardown(state: tuple[sqlite3.Connection, Path]) -> None:
            state[0].close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{state[1]}{suffix}").unlink(missing_ok=True)

        def inserts(
            entry: str, count: int, value: Callable[[int], Any]
        ) -> Callable[[tuple[sqlite3.Connection, Path]], None]:
            def run(state: tuple[sqlite3.Connection, Path]) -> None:
                execute = state[0].execute
                for i in range(count):
                    # the digest column is unique: the row number stands in for a digest
                    execute(_RAW_INSERT, (entry, str(i), orjson.dumps(value(i))))

            return run

        def latest(state: tuple[sqlite3.Connection, Path], entry: str) -> Any:
            row = state[0].execute(_RAW_LATEST, (entry,)).fetchone()
            return orjson.loads(row[0])

        # V1, V2
        save_small = inserts("config", sz.small_saves, small_object)
        out["save_small_us"] = 1e6 * timed_loops(
            fresh, save_small, sz.small_saves, config.min_time, teardown
        )
        state = fresh()
        save_small(state)
        assert latest(state, "config") == small_object(sz.small_saves - 1)

        def load_small() -> None:
            for _ in range(100):
                latest(state, "config")

        out["load_small_us"] = 1e6 * timed_batches(load_small, 100, config.min_time)
        teardown(state)

        # V3, V4
        save_large = inserts("dataset", sz.large_saves, lambda i: large_object(i, sz.large_rows))
        out["save_large_ms"] = 1e3 * timed_loops(
            fresh, save_large, sz.large_saves, config.min_time, teardown
        )
        state = fresh()
        save_large(state)
        assert latest(state, "dataset") == large_object(sz.large_saves - 1, sz.large_rows)
        out["load_large_ms"] = 1e3 * timed_batches(
            lambda: latest(state, "dataset"), 1, config.min_time
        )
        teardown(state)

        # V5 and V9: one INSERT and its commit per put
        def put(state: tuple[sqlite3.Connection, Path], i: int) -> None:
            state[0].execute(_RAW_INSERT, ("users", record_key(i), orjson.dumps(record_value(i))))

        def measure(state: tuple[sqlite3.Connection, Path]) -> int:
            return sqlite_bytes(state[1])

        out.update(timed_puts(fresh, put, measure, teardown, sz, config.min_time))

        # V10: a put that stores its row and, every PACK_EVERY-th, a pack of PACK bytes
        # beside it, in one transaction
        packs = [random.Random(i).randbytes(PACK) for i in range(4)]

        def packed(state: tuple[sqlite3.Connection, Path], i: int) -> None:
            execute = state[0].execute
            execute("BEGIN")
            execute(_RAW_INSERT, ("users", record_key(i), orjson.dumps(record_value(i))))
            if i % PACK_EVERY == PACK_EVERY - 1:
                data = packs[i % 4] + i.to_bytes(8, "little")
                execute(_RAW_PACK, (hashlib.sha256(data).digest(), data))
            execute("COMMIT")

        found = timed_puts(fresh, packed, measure, teardown, sz, config.min_time)
        out["pack_put_us"] = found["put_us"]
        out["pack_last_first_ratio"] = found["puts_last_first_ratio"]

        # V6, V7: the rows of an entry's versions, newest first; one version by digest
        state = fresh()
        conn = state[0]
        rows = [orjson.dumps(record_value(i)) for i in range(sz.versions)]
        digests = [hashlib.sha256(data).hexdigest() for data in rows]
        conn.execute("BEGIN")
        conn.executemany(_RAW_INSERT, (("log", d, r) for d, r in zip(digests, rows, strict=True)))
        conn.execute("COMMIT")

        def history() -> list[str]:
            found = conn.execute(
                "SELECT digest FROM versions WHERE entry = ? ORDER BY id DESC LIMIT ?",
                ("log", sz.versions),
            ).fetchall()
            return [row[0] for row in found]

        assert history() == digests[::-1]
        out["history_ms"] = 1e3 * timed_batches(history, 1, config.min_time)

        def loads(digest: str) -> Callable[[], None]:
            def run() -> None:
                execute = conn.execute
                for _ in range(100):
                    row = execute("SELECT data FROM versions WHERE digest = ?", (digest,))
                    orjson.loads(row.fetchone()[0])

            return run

        far, near = digests[0], digests[-1 - sz.near]
        repeated = interleaved_batches(
            {"far": loads(far), "near": loads(near)}, 100, config.min_time
        )
        out["load_far_us"] = 1e6 * repeated["far"]
        out["load_near_us"] = 1e6 * repeated["near"]
        out["load_far_near_ratio"] = repeated["far"] / repeated["near"]
        teardown(state)
    return out


CASES: dict[str, Callable[[Config], Metrics]] = {
    "versions/everstore": versions_everstore,
    "versions/file-model": versions_file_model,
    "versions/raw-sqlite": versions_raw_sqlite,
}


# -- a profile of V5 on everstore (not part of the run) ------------------------------------


def profile_puts(puts: int) -> None:
    """Print where the time of ``puts`` puts into one record entry goes on everstore."""
    make = engine_factory("everstore")
    with tempfile.TemporaryDirectory(prefix="vbench-profile-") as directory:
        engine = make(Path(directory) / "db")
        engine.init(TENANT)
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(puts):
            engine.put(TENANT, USER, "users", record_key(i), record_value(i))
        profiler.disable()
        _close(engine)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    if len(sys.argv) in (2, 3) and sys.argv[1] == "--profile":
        profile_puts(int(sys.argv[2]) if len(sys.argv) == 3 else 10_000)
    else:
        print(
            "used by bench/run.py: bench/run.py --only versions;"
            " or: versions_workloads.py --profile [PUTS]",
            file=sys.stderr,
        )
        sys.exit(2)
