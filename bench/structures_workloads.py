"""The structures family: everstore.structures against appendonly 1.2 on ZODB
FileStorage, with raw sqlite3 as the floor.

Like ``workloads.py``, each function is one (family, library) case run in a fresh
interpreter by ``bench/run.py``, performing ONE repetition. The libraries:

* ``everstore``: ``AppendStack`` / ``Archive`` / ``Accumulator`` from
  ``everstore.structures`` with ``storage=store.storage(...)`` on an SQLite file
  (``Store(Sqlite3(path))``: WAL, ``synchronous=NORMAL``, a commit survives a killed
  process, not a power loss);
* ``everstore-full``: the same with ``Sqlite3(path, synchronous="full")``: every commit
  is synced to disk, as ZODB's FileStorage fsyncs every commit. This is the
  like-for-like row against appendonly;
* ``appendonly``: appendonly 1.2's classes as persistent objects in the root of a ZODB
  ``DB(FileStorage(path))``, ``transaction.commit()`` per batch;
* ``raw-sqlite``: the floors. The stdlib sqlite3 module on the schema everstore
  creates (a store opened on a fresh file makes it, with a stack whose namespace,
  field and context names the rows use), the items encoded by everstore's codec
  before timing, inserted in transactions (``BEGIN`` / multi-row ``INSERT`` of 100
  rows / ``COMMIT``): F1 with ``synchronous=NORMAL``, F2 with ``synchronous=FULL``.

Items are small dicts ``{"i": i, "name": "n<i>", "v": i / 3}``, built before timing.
The stack is ``AppendStack(10, 100)`` (appendonly's defaults) and every push passes
``archive.addLayer`` as the pruner; everstore keeps the stack and the archive in two
namespaces of the same store.

The workloads (rows S1-S6 of the structures table):

* S1: 100,000 pushes, a commit every 1,000 (everstore: ``with store.transaction():``
  around each 1,000 pushes; appendonly: ``transaction.commit()`` after them);
  S2: the same, a commit every 100;
* S3: 100,000 ``Accumulator.append`` calls, a commit every 1,000, and the size of the
  file after them;
* S4: iteration of the stack followed by its archive, 100,000 items (S1's file): cold,
  each sample a fresh process (``python structures_workloads.py --cold LIBRARY PATH``)
  that opens the file and iterates once, the opening timed with the iteration and the
  imports not; warm, the same iteration repeated in one process;
* S5: 4 processes pushing at once into one stack + archive, 10,000 pushes each, a
  commit every 100: the wall time from the moment they all start (each waits, ready,
  for the same signal) to the last one's end, per push. everstore: four processes on
  one SQLite file. appendonly: four ZEO clients of a ZEO server the case starts
  (``ZEO.server``, a FileStorage behind it, in a process of its own); a batch whose
  commit raises ConflictError is aborted and pushed again (S5c counts them). The items
  found in stack + archive afterwards are counted (S5b): appendonly's conflict
  resolution drops the layers it prunes without calling the pruner. everstore's
  pruning runs after a batch's commit and can raise ArchiveOrderError when it loses a
  race to another process's pruning (at fe23ab0: the archive's cursor is read fresh
  inside the pruning transaction, its compare-and-set token is not); the worker
  catches it, the batch being committed, and S5d counts them;
* S6: bytes written per push, for S1's and S2's runs: everstore and raw sqlite3, the
  growth of the database's pages (``page_count * page_size`` after a TRUNCATE
  checkpoint has emptied the WAL into it) over the pushes; appendonly, the growth of
  ``Data.fs``.

Process times: ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every
process of the machine, so S5 compares the workers' end times with the start signal.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from workloads import (
    Config,
    Metrics,
    child_env,
    remove_db,
    scratch_dir,
    start_workers,
    timed_batches,
    timed_loops,
)

__all__ = [
    "APPENDONLY_VERSION",
    "CASES",
    "FAMILIES",
    "StructureSizes",
    "structure_sizes",
    "unavailable_reason",
    "zeo_version",
]

perf = time.perf_counter

#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {
    "structures": ["everstore", "everstore-full", "appendonly", "raw-sqlite"]
}

APPENDONLY_VERSION = "1.2"
#: the namespaces of the structures in everstore's store, and their keys in ZODB's root
STACK, ARCHIVE, ACCUMULATOR = "stack", "archive", "acc"
#: rows per INSERT statement of the raw floors (divides every batch size used)
RAW_ROWS = 100
#: cold-iteration processes per repetition: at least, and at most
COLD_MIN_SAMPLES, COLD_MAX_SAMPLES = 3, 5
#: seconds a worker process of S5 may take
WORKER_TIMEOUT = 600.0


@dataclass(frozen=True)
class StructureSizes:
    pushes: int  # S1, S2, S3 (appends), S4 (items held), S6
    commit_large: int  # S1, S3: items per commit
    commit_small: int  # S2: items per commit
    max_layers: int  # the stack's layers and their length
    max_length: int
    workers: int  # S5: processes
    worker_pushes: int  # S5: pushes per process
    worker_commit: int  # S5: pushes per commit


STRUCTURES_FULL = StructureSizes(
    pushes=100_000,
    commit_large=1_000,
    commit_small=100,
    max_layers=10,
    max_length=100,
    workers=4,
    worker_pushes=10_000,
    worker_commit=100,
)
STRUCTURES_QUICK = StructureSizes(
    pushes=2_000,
    commit_large=1_000,
    commit_small=100,
    max_layers=10,
    max_length=100,
    workers=2,
    worker_pushes=600,
    worker_commit=100,
)


def structure_sizes(quick: bool) -> StructureSizes:
    return STRUCTURES_QUICK if quick else STRUCTURES_FULL


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def zeo_version() -> str | None:
    """ZEO's version, or None if it is not installed (then S5 has no appendonly row)."""
    return _version("ZEO")


def unavailable_reason(library: str) -> str | None:
    """Why a case of the structures family cannot run here, or None."""
    if library.startswith("everstore"):
        try:
            module = importlib.import_module("everstore.structures")
        except ImportError as exc:
            return f"everstore.structures cannot be imported: {exc}"
        if not hasattr(module, "AppendStack"):
            return "everstore.structures has no AppendStack yet"
        return None
    if library == "appendonly":
        found = _version("appendonly")
        if found != APPENDONLY_VERSION:
            return (
                f"needs appendonly {APPENDONLY_VERSION} (found {found}) and ZODB:"
                " pip install -e '.[bench]'"
            )
        if _version("ZODB") is None:
            return "ZODB is not installed: pip install -e '.[bench]'"
    return None


# -- the data and the files ---------------------------------------------------------------


def item(i: int) -> dict[str, Any]:
    return {"i": i, "name": f"n{i}", "v": i / 3}


def items(first: int, count: int) -> list[dict[str, Any]]:
    return [item(i) for i in range(first, first + count)]


def sqlite_bytes(path: Path) -> int:
    """Bytes of the SQLite database ``path``: its pages after a TRUNCATE checkpoint
    moved every page of its WAL into it (plus the WAL, if the checkpoint could not
    empty it). No connection to it may be open."""
    conn = sqlite3.connect(path)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return int(pages * size) + (wal.stat().st_size if busy and wal.exists() else 0)


def remove_zodb(path: Path) -> None:
    for suffix in ("", ".index", ".lock", ".tmp", ".old"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


class Names:
    """Fresh file names in one directory."""

    def __init__(self, directory: Path, stem: str, suffix: str) -> None:
        self.directory, self.stem, self.suffix = directory, stem, suffix
        self.count = 0

    def next(self) -> Path:
        self.count += 1
        return self.directory / f"{self.stem}-{self.count}{self.suffix}"


# -- the libraries behind one interface -------------------------------------------------


class Side:
    """One library's way to hold a stack + archive and an accumulator in a file:
    ``open`` returns a handle, the rest take it."""

    suffix = ""

    def open(self, path: Path) -> Any:
        raise NotImplementedError

    def close(self, handle: Any) -> None:
        raise NotImplementedError

    def stack(self, handle: Any, sz: StructureSizes | None) -> tuple[Any, Any]:
        """The stack and its archive (created with ``sz``'s sizes if new; None: it
        exists)."""
        raise NotImplementedError

    def accumulator(self, handle: Any) -> Any:
        raise NotImplementedError

    def batches(self, handle: Any, count: int, commit: int) -> Iterator[range]:
        """``range`` objects of ``commit`` positions up to ``count``, each committed
        when the loop asks for the next."""
        raise NotImplementedError

    def size(self, path: Path) -> int:
        """Bytes of the closed file ``path`` (see the module's docstring)."""
        raise NotImplementedError

    def remove(self, path: Path) -> None:
        raise NotImplementedError


class EverstoreSide(Side):
    suffix = ".db"

    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous

    def open(self, path: Path) -> Any:
        from everstore import Sqlite3, Store

        return Store(Sqlite3(path, synchronous=self.synchronous))

    def close(self, handle: Any) -> None:
        handle.close()

    def stack(self, handle: Any, sz: StructureSizes | None) -> tuple[Any, Any]:
        from everstore.structures import AppendStack, Archive

        layers, length = (None, None) if sz is None else (sz.max_layers, sz.max_length)
        stack = AppendStack(layers, length, storage=handle.storage("bench", STACK))
        return stack, Archive(storage=handle.storage("bench", ARCHIVE))

    def accumulator(self, handle: Any) -> Any:
        from everstore.structures import Accumulator

        return Accumulator(storage=handle.storage("bench", ACCUMULATOR))

    def batches(self, handle: Any, count: int, commit: int) -> Iterator[range]:
        for start in range(0, count, commit):
            with handle.transaction():
                yield range(start, min(start + commit, count))

    def size(self, path: Path) -> int:
        return sqlite_bytes(path)

    def remove(self, path: Path) -> None:
        remove_db(path)


class AppendonlySide(Side):
    suffix = ".fs"

    def open(self, path: Path) -> Any:
        from ZODB import DB
        from ZODB.FileStorage import FileStorage

        db = DB(FileStorage(str(path)))
        return db, db.open()

    def close(self, handle: Any) -> None:
        db, conn = handle
        conn.close()
        db.close()

    def _root_object(self, handle: Any, key: str, make: Callable[[], Any]) -> Any:
        import transaction

        root = handle[1].root()
        if key not in root:
            root[key] = make()
            transaction.commit()
        return root[key]

    def stack(self, handle: Any, sz: StructureSizes | None) -> tuple[Any, Any]:
        from appendonly import AppendStack, Archive

        new = STRUCTURES_FULL if sz is None else sz
        stack = self._root_object(
            handle, STACK, lambda: AppendStack(new.max_layers, new.max_length)
        )
        return stack, self._root_object(handle, ARCHIVE, Archive)

    def accumulator(self, handle: Any) -> Any:
        from appendonly import Accumulator

        return self._root_object(handle, ACCUMULATOR, Accumulator)

    def batches(self, handle: Any, count: int, commit: int) -> Iterator[range]:
        import transaction

        for start in range(0, count, commit):
            yield range(start, min(start + commit, count))
            transaction.commit()

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def remove(self, path: Path) -> None:
        remove_zodb(path)


def side(library: str) -> Side:
    if library == "appendonly":
        return AppendonlySide()
    return EverstoreSide("full" if library == "everstore-full" else "normal")


# -- the cases of everstore and appendonly --------------------------------------------------


@dataclass
class Opened:
    """A file with its handle and structures, and its size before the timed part."""

    path: Path
    handle: Any
    structures: tuple[Any, ...]
    before: int


def structures_case(config: Config, library: str) -> Metrics:
    sz = structure_sizes(config.quick)
    lib = side(library)
    data = items(0, sz.pushes)
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        names = Names(scratch, "structures", lib.suffix)

        def fresh(make: Callable[[Any], tuple[Any, ...]]) -> Callable[[], Opened]:
            # The structures are created, the file closed and measured, then reopened:
            # the timed part starts from structures that exist, their size known.
            def setup() -> Opened:
                path = names.next()
                handle = lib.open(path)
                make(handle)
                lib.close(handle)
                before = lib.size(path)
                handle = lib.open(path)
                return Opened(path, handle, make(handle), before)

            return setup

        def stack_of(handle: Any) -> tuple[Any, ...]:
            return lib.stack(handle, sz)

        def accumulator_of(handle: Any) -> tuple[Any, ...]:
            return (lib.accumulator(handle),)

        def pushes(commit: int) -> Callable[[Opened], None]:
            def run(opened: Opened) -> None:
                stack, archive = opened.structures
                push, add_layer = stack.push, archive.addLayer
                for batch in lib.batches(opened.handle, sz.pushes, commit):
                    for i in batch:
                        push(data[i], add_layer)

            return run

        # S1, S2 and S6: the first run of each keeps its file, measured after it
        kept: dict[str, Path] = {}

        def keep_first(label: str) -> Callable[[Opened], None]:
            def teardown(opened: Opened) -> None:
                lib.close(opened.handle)
                if label in kept:
                    lib.remove(opened.path)
                    return
                kept[label] = opened.path
                grown = lib.size(opened.path) - opened.before
                out[f"bytes_per_push_{label}"] = grown / sz.pushes

            return teardown

        for label, commit in (("large", sz.commit_large), ("small", sz.commit_small)):
            out[f"push_us_{label}"] = 1e6 * timed_loops(
                fresh(stack_of), pushes(commit), sz.pushes, config.min_time, keep_first(label)
            )
        lib.remove(kept.pop("small"))
        s1 = kept.pop("large")

        # S3: the accumulator
        def appends(opened: Opened) -> None:
            append = opened.structures[0].append
            for batch in lib.batches(opened.handle, sz.pushes, sz.commit_large):
                for i in batch:
                    append(data[i])

        def measure_accumulator(opened: Opened) -> None:
            lib.close(opened.handle)
            if "accumulator_mb" not in out:
                handle = lib.open(opened.path)
                assert list(lib.accumulator(handle)) == data
                lib.close(handle)
                out["accumulator_mb"] = lib.size(opened.path) / 1e6
            lib.remove(opened.path)

        out["append_us"] = 1e6 * timed_loops(
            fresh(accumulator_of), appends, sz.pushes, config.min_time, measure_accumulator
        )

        # S4: iteration of S1's stack + archive
        out.update(cold_iteration(config, library, s1, sz.pushes))
        handle = lib.open(s1)
        stack, archive = lib.stack(handle, sz)

        def iterate() -> int:
            count = 0
            for _ in stack:
                count += 1
            for _ in archive:
                count += 1
            return count

        assert iterate() == sz.pushes  # the first iteration loads: not timed here
        out["warm_iter_ms"] = 1e3 * timed_batches(iterate, 1, config.min_time)
        lib.close(handle)
        lib.remove(s1)

        # S5: processes pushing at once
        if library != "appendonly" or zeo_version() is not None:
            out.update(concurrent_pushes(config, library, scratch, sz))
    return out


def structures_everstore(config: Config) -> Metrics:
    return structures_case(config, "everstore")


def structures_everstore_full(config: Config) -> Metrics:
    return structures_case(config, "everstore-full")


def structures_appendonly(config: Config) -> Metrics:
    return structures_case(config, "appendonly")


# -- S4: cold iteration, one process per sample -------------------------------------------


def cold_iteration(config: Config, library: str, path: Path, expected: int) -> Metrics:
    """S4 cold: processes that each open ``path`` and iterate stack + archive once,
    until ``min_time`` seconds of that were timed (COLD_MIN_SAMPLES to COLD_MAX_SAMPLES
    of them); their median."""
    samples: list[dict[str, float]] = []
    while len(samples) < COLD_MAX_SAMPLES and (
        len(samples) < COLD_MIN_SAMPLES or sum(s["cold_iter_s"] for s in samples) < config.min_time
    ):
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--cold", library, str(path)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=WORKER_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cold iteration of {library} failed:\n{done.stdout}{done.stderr}")
        sample = json.loads(done.stdout.strip().splitlines()[-1])
        assert sample["items"] == expected, sample
        samples.append(sample)
    return {
        "cold_iter_ms": 1e3 * statistics.median(s["cold_iter_s"] for s in samples),
        "cold_samples": float(len(samples)),
    }


def cold_child(library: str, path: str) -> dict[str, float]:
    """One cold sample, in a fresh process: open the file, iterate stack + archive."""
    lib = side(library)
    if library == "appendonly":
        import appendonly  # noqa: F401  (imports are not part of the opening)
        import ZODB.FileStorage  # noqa: F401
    else:
        import everstore.structures  # noqa: F401
    gc.collect()
    start = perf()
    handle = lib.open(Path(path))
    stack, archive = lib.stack(handle, None)
    count = 0
    for _ in stack:
        count += 1
    for _ in archive:
        count += 1
    elapsed = perf() - start
    lib.close(handle)
    return {"cold_iter_s": elapsed, "items": count}


# -- S5: processes pushing at once ------------------------------------------------------


def concurrent_pushes(config: Config, library: str, scratch: Path, sz: StructureSizes) -> Metrics:
    """S5: ``sz.workers`` processes push at once into one stack + archive, until
    ``min_time`` seconds were timed (fresh files each time). Reports µs per push of
    the wall time, and what the first run left: the items missing from stack +
    archive, duplicated, and (appendonly) the batches pushed again after a conflict."""
    lib = side(library)
    names = Names(scratch, "concurrent", lib.suffix)
    total = sz.workers * sz.worker_pushes
    runs: list[float] = []
    found: Metrics = {}
    while sum(runs) < config.min_time:
        path = names.next()
        with _target(library, path, sz) as target:
            elapsed, reports = _run_workers(library, target, sz)
            runs.append(elapsed)
            if not found:
                found = _count_items(library, target, sz, total)
                found["concurrent_retries"] = float(sum(r["retries"] for r in reports))
                found["concurrent_prune_errors"] = float(sum(r["prune_errors"] for r in reports))
        lib.remove(path)
    return {"concurrent_us": 1e6 * statistics.fmean(runs) / total, **found}


@contextlib.contextmanager
def _target(library: str, path: Path, sz: StructureSizes) -> Iterator[str]:
    """What the workers open: the store's file, or the address of a ZEO server (a
    process of its own) with a FileStorage at ``path``; the structures created."""
    lib = side(library)
    if library != "appendonly":
        handle = lib.open(path)
        lib.stack(handle, sz)
        lib.close(handle)
        yield str(path)
        return
    import ZEO

    address, stop = ZEO.server(path=str(path), threaded=False)
    try:
        db = ZEO.DB(address)
        lib.stack((db, db.open()), sz)
        db.close()
        yield f"{address[0]}:{address[1]}"
    finally:
        stop()


def _run_workers(
    library: str, target: str, sz: StructureSizes
) -> tuple[float, list[dict[str, float]]]:
    """Start the workers, wait until all are ready, signal them, and return the time
    from the signal to the last one's end, with their reports."""
    script = str(Path(__file__).resolve())
    counts = [str(sz.worker_pushes), str(sz.worker_commit)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                script,
                "--worker",
                library,
                target,
                str(w * sz.worker_pushes),
                *counts,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for w in range(sz.workers)
    ]
    try:
        start = start_workers(workers, library)
        reports = []
        for worker in workers:
            stdout, _ = worker.communicate(timeout=WORKER_TIMEOUT)
            if worker.returncode != 0:
                raise RuntimeError(f"a worker of {library} failed ({worker.returncode})")
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return max(r["end"] for r in reports) - start, reports


def _count_items(library: str, target: str, sz: StructureSizes, total: int) -> Metrics:
    lib = side(library)
    if library == "appendonly":
        import ZEO

        host, port = target.rsplit(":", 1)
        db = ZEO.DB((host, int(port)))
        handle = (db, db.open())
    else:
        handle = lib.open(Path(target))
    try:
        stack, archive = lib.stack(handle, sz)
        seen = [value["i"] for _, _, value in stack] + [value["i"] for _, _, value in archive]
    finally:
        lib.close(handle)
    distinct = set(seen)
    return {
        "concurrent_missing": float(total - len(distinct & set(range(total)))),
        "concurrent_duplicates": float(len(seen) - len(distinct)),
    }


def worker_child(library: str, target: str, first: int, count: int, commit: int) -> None:
    """One S5 worker: push ``count`` items from ``first``, a commit every ``commit``,
    once the parent says go; print the end time and the retried batches as JSON."""
    data = items(first, count)
    retries = prune_errors = 0
    if library == "appendonly":
        import transaction
        import ZEO
        from ZODB.POSException import ConflictError

        host, port = target.rsplit(":", 1)
        db = ZEO.DB((host, int(port)))
        conn = db.open()
        root = conn.root()
        transaction.abort()  # a fresh view of the root
        print("ready", flush=True)
        sys.stdin.readline()
        for start in range(0, count, commit):
            while True:
                try:
                    stack, archive = root[STACK], root[ARCHIVE]
                    for value in data[start : start + commit]:
                        stack.push(value, archive.addLayer)
                    transaction.commit()
                    break
                except ConflictError:
                    transaction.abort()
                    retries += 1
        end = perf()
        conn.close()
        db.close()
    else:
        from everstore.structures import ArchiveOrderError

        store = side(library).open(Path(target))
        stack, archive = side(library).stack(store, None)
        push, add_layer = stack.push, archive.addLayer
        print("ready", flush=True)
        sys.stdin.readline()
        for start in range(0, count, commit):
            try:
                with store.transaction():
                    for value in data[start : start + commit]:
                        push(value, add_layer)
            except ArchiveOrderError:
                # The batch is committed; its pruning, after the commit, lost a race
                # to another process's and raised instead of retrying (the report of
                # this benchmark in docs/benchmarks.md). The next push prunes again.
                prune_errors += 1
        end = perf()
        store.close()
    print(json.dumps({"end": end, "retries": retries, "prune_errors": prune_errors}), flush=True)


# -- raw sqlite3: the floors ----------------------------------------------------------------


_RawState = tuple[sqlite3.Connection, tuple[int, int, int], Path, int]


def _raw_insert(rows: int) -> str:
    return "INSERT INTO everstore_log(time, ns, field, ctx, data) VALUES " + ",".join(
        ["(?,?,?,?,?)"] * rows
    )


def _raw_fresh(path: Path, synchronous: str) -> _RawState:
    """A new store file made by everstore holding a stack of one push (its schema, its
    index and triggers, the stack's namespace, field and context names interned), its
    size, and a connection to it with everstore's settings and ``synchronous``."""
    from everstore import Sqlite3, Store
    from everstore.structures import AppendStack

    with Store(Sqlite3(path)) as store:
        AppendStack(storage=store.storage("bench", STACK)).push(item(-1))
    before = sqlite_bytes(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    ids = (
        conn.execute("SELECT id FROM everstore_namespaces WHERE name = ?", (f"bench/{STACK}",)),
        conn.execute("SELECT id FROM everstore_fields WHERE name = 'item'"),
        conn.execute("SELECT max(id) FROM everstore_contexts"),
    )
    ns, field, ctx = (int(cursor.fetchone()[0]) for cursor in ids)
    return conn, (ns, field, ctx), path, before


def structures_raw_sqlite(config: Config) -> Metrics:
    """F1 and F2: the floors of S1 and S2 (see the module's docstring)."""
    from everstore import default_codec

    sz = structure_sizes(config.quick)
    blobs = [default_codec.encode(value) for value in items(0, sz.pushes)]
    insert = _raw_insert(RAW_ROWS)
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        names = Names(scratch, "raw", ".db")

        def inserts(commit: int) -> Callable[[_RawState], None]:
            def run(state: _RawState) -> None:
                conn, (ns, field, ctx), _, _ = state
                execute = conn.execute
                for first in range(0, sz.pushes, commit):
                    execute("BEGIN")
                    for start in range(first, first + commit, RAW_ROWS):
                        now = time.time()
                        params: list[Any] = []
                        for i in range(start, start + RAW_ROWS):
                            params += (now, ns, field, ctx, blobs[i])
                        execute(insert, params)
                    execute("COMMIT")

            return run

        for synchronous in ("NORMAL", "FULL"):
            for label, commit in (("large", sz.commit_large), ("small", sz.commit_small)):
                measured: list[float] = []

                def setup(synchronous: str = synchronous) -> _RawState:
                    return _raw_fresh(names.next(), synchronous)

                def teardown(state: _RawState, measured: list[float] = measured) -> None:
                    state[0].close()
                    if not measured:
                        measured.append((sqlite_bytes(state[2]) - state[3]) / sz.pushes)
                    remove_db(state[2])

                key = f"{synchronous.lower()}_{label}"
                out[f"insert_us_{key}"] = 1e6 * timed_loops(
                    setup, inserts(commit), sz.pushes, config.min_time, teardown
                )
                out[f"bytes_per_row_{key}"] = measured[0]
    return out


CASES: dict[str, Callable[[Config], Metrics]] = {
    "structures/everstore": structures_everstore,
    "structures/everstore-full": structures_everstore_full,
    "structures/appendonly": structures_appendonly,
    "structures/raw-sqlite": structures_raw_sqlite,
}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--cold":
        print(json.dumps(cold_child(sys.argv[2], sys.argv[3])))
    elif len(sys.argv) == 7 and sys.argv[1] == "--worker":
        worker_child(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:]))
    else:
        print("used by bench/run.py: bench/run.py --only structures", file=sys.stderr)
        sys.exit(2)
