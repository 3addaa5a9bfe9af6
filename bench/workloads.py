"""The benchmark workloads: one function per (family, library) case.

Each case runs in a fresh interpreter started by ``bench/run.py`` and performs ONE
repetition: every measurement in it repeats its workload (with fresh, untimed setup
where the workload changes state) until at least ``min_time`` seconds were timed, and
reports the time per operation. ``run.py`` takes the median over repetitions.

The libraries are imported inside the case functions, never at module level, so a
child process only ever loads the library it measures (peak RSS and import time stay
meaningful).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "CASES",
    "Config",
    "Metrics",
    "Sizes",
    "child_env",
    "cold_file",
    "interleaved_batches",
    "read_after",
    "sizes",
    "start_workers",
    "timer_cost",
]

Metrics = dict[str, float]
_S = TypeVar("_S")

perf = time.perf_counter


def child_env() -> dict[str, str]:
    """The environment of a worker process a case starts (which may write bytecode)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def start_workers(workers: list[subprocess.Popen[str]], library: str) -> float:
    """Wait until each worker says ``ready``, then tell them all ``go``; return when
    they were told (``perf_counter``).

    :raises RuntimeError: if a worker says anything else (it failed to start)
    """
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a worker of {library} did not start: {line!r}")
    start = perf()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return start


@dataclass(frozen=True)
class Config:
    """What a child needs to know: sizes come from ``quick``."""

    quick: bool
    min_time: float
    workdir: Path


@dataclass(frozen=True)
class Sizes:
    writes: int  # writes per timed loop (families 1 and 2)
    reads: int  # reads per timed batch (family 3; 10 per loop iteration)
    history: int  # values in the history (family 4)
    within: int  # writes in the within namespace, half round and half score (family 5)
    cold_namespaces: int  # family 6: namespaces x fields x writes per field
    cold_fields: int
    cold_writes: int
    list_items: int  # family 7
    history_small: int  # the smaller history of the iteration rows (family 4)
    paired_writes: int  # writes per loop of the paired SQLite write loops (family 2)
    after_write: int  # write-then-read pairs per loop (read_after_write)


FULL = Sizes(
    writes=100_000,
    reads=1_000_000,
    history=100_000,
    within=100_000,
    cold_namespaces=1_000,
    cold_fields=10,
    cold_writes=100,
    list_items=10_000,
    history_small=20_000,
    paired_writes=10_000,
    after_write=20_000,
)
QUICK = Sizes(
    writes=2_000,
    reads=20_000,
    history=2_000,
    within=2_000,
    cold_namespaces=10,
    cold_fields=10,
    cold_writes=10,
    list_items=200,
    history_small=400,
    paired_writes=200,
    after_write=500,
)


def sizes(quick: bool) -> Sizes:
    return QUICK if quick else FULL


# -- timing helpers -------------------------------------------------------------------


def timed_loops(
    setup: Callable[[], _S],
    run: Callable[[_S], None],
    ops: int,
    min_time: float,
    teardown: Callable[[_S], None] | None = None,
) -> float:
    """Seconds per op: ``run(setup())`` (``ops`` ops each) repeated until ``min_time``
    seconds were timed. Setup, teardown and garbage collection between loops are not
    timed; collection during a loop is (both libraries pay it the same way)."""
    total = 0.0
    count = 0
    while total < min_time:
        state = setup()
        gc.collect()
        start = perf()
        run(state)
        total += perf() - start
        count += ops
        if teardown is not None:
            teardown(state)
        del state
    return total / count


def timed_batches(run: Callable[[], Any], ops: int, min_time: float) -> float:
    """Seconds per op for a read-only ``run()`` of ``ops`` ops, repeated to ``min_time``."""
    gc.collect()
    total = 0.0
    count = 0
    while total < min_time:
        start = perf()
        run()
        total += perf() - start
        count += ops
    return total / count


def interleaved_batches(
    runs: dict[str, Callable[[], Any]], ops: int, min_time: float, rounds: int = 5
) -> dict[str, float]:
    """Seconds per op of each read-only ``run()`` of ``ops`` ops, measured in turn:
    ``rounds`` rounds, each giving every run ``min_time / rounds`` seconds. Drift on a
    noisy machine then hits every run alike, which a ratio between them needs."""
    totals = dict.fromkeys(runs, 0.0)
    counts = dict.fromkeys(runs, 0)
    gc.collect()
    for _ in range(rounds):
        for name, run in runs.items():
            spent = 0.0
            while spent < min_time / rounds:
                start = perf()
                run()
                spent += perf() - start
                counts[name] += ops
            totals[name] += spent
    return {name: totals[name] / counts[name] for name in runs}


@contextlib.contextmanager
def scratch_dir(config: Config) -> Iterator[Path]:
    """A private directory under the work directory (same disk as the cached files)."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="scratch-", dir=config.workdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sqlite_files_size(path: Path) -> int:
    """Bytes of an SQLite database with its WAL (the -shm index is not data)."""
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


class _Counter:
    """Fresh file names inside one scratch directory."""

    def __init__(self, directory: Path, stem: str) -> None:
        self.directory = directory
        self.stem = stem
        self.count = 0

    def next(self) -> Path:
        self.count += 1
        return self.directory / f"{self.stem}-{self.count}.db"


# -- 1. writes on Memory -------------------------------------------------------------


def _library(name: str) -> Any:
    """The everstore or the appendmuch module, imported only by the case that runs it
    (both spell Store, Memory and Sqlite3 alike)."""
    if name == "everstore":
        import everstore as lib
    else:
        import appendmuch as lib  # type: ignore[no-redef]
    return lib


def _writes_memory(config: Config, library: str) -> Metrics:
    lib = _library(library)
    n = sizes(config.quick).writes

    def setup() -> Any:
        return lib.Store(lib.Memory()).storage("bench", "ns")

    def run(s: Any) -> None:
        for i in range(n):
            s.x = i

    return {"write_us": 1e6 * timed_loops(setup, run, n, config.min_time)}


def writes_memory_everstore(config: Config) -> Metrics:
    return _writes_memory(config, "everstore")


def writes_memory_appendmuch(config: Config) -> Metrics:
    return _writes_memory(config, "appendmuch")


# -- 2. writes on an SQLite file ------------------------------------------------------


def writes_sqlite_everstore(config: Config) -> Metrics:
    from everstore import Sqlite3, Store

    n = sizes(config.quick).writes
    with scratch_dir(config) as directory:
        names = _Counter(directory, "everstore")

        def setup() -> tuple[Any, Any, Path]:
            path = names.next()
            store = Store(Sqlite3(path))
            return store, store.storage("bench", "ns"), path

        def teardown(state: tuple[Any, Any, Path]) -> None:
            state[0].close()
            remove_db(state[2])

        def per_write(state: tuple[Any, Any, Path]) -> None:
            s = state[1]
            for i in range(n):
                s.x = i

        def txn100(state: tuple[Any, Any, Path]) -> None:
            store, s, _ = state
            i = 0
            for _ in range(n // 100):
                with store.transaction():
                    for _ in range(100):
                        s.x = i
                        i += 1

        committed = timed_loops(setup, per_write, n, config.min_time, teardown)
        batched = timed_loops(setup, txn100, n // 100 * 100, config.min_time, teardown)
    return {"write_us": 1e6 * committed, "txn100_us": 1e6 * batched}


def writes_sqlite_appendmuch(config: Config) -> Metrics:
    from appendmuch import Sqlite3, Store

    n = sizes(config.quick).writes
    with scratch_dir(config) as directory:
        names = _Counter(directory, "appendmuch")

        def setup() -> tuple[Any, Any, Path]:
            path = names.next()
            store = Store(Sqlite3(str(path)))
            return store, store.storage("bench", "ns"), path

        def teardown(state: tuple[Any, Any, Path]) -> None:
            state[0].close()
            remove_db(state[2])

        def buffered(state: tuple[Any, Any, Path]) -> None:
            store, s, _ = state
            for i in range(n):
                s.x = i
            store.flush()

        durable_n = max(1, n // 10)  # 10x slower per write: keep the case short

        def flush_each(state: tuple[Any, Any, Path]) -> None:
            # appendmuch's only way to have a write on disk when it returns.
            store, s, _ = state
            for i in range(durable_n):
                s.x = i
                store.flush()

        seconds = timed_loops(setup, buffered, n, config.min_time, teardown)
        durable = timed_loops(setup, flush_each, durable_n, config.min_time, teardown)
    return {"write_us": 1e6 * seconds, "flush_each_us": 1e6 * durable}


_RAW_INSERT = "INSERT INTO everstore_log(time, ns, field, ctx, data) VALUES (?, ?, ?, ?, ?)"
#: the statement everstore's SQLite backend runs for a single write: the same INSERT
#: with the seq and the chain's link (its writer knows them, and the time clamp, from
#: its own last write; the seq's uniqueness refuses it if another writer came first)
_RAW_INSERT_SEQ_LINK = (
    "INSERT INTO everstore_log(seq, time, ns, field, ctx, data, link) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_RawState = tuple[sqlite3.Connection, tuple[int, int, int], Path]


def _raw_sqlite(path: Path) -> _RawState:
    """A connection to a new store file at ``path``, made by everstore (schema, index
    and triggers, names interned), with everstore's settings: autocommit, WAL,
    synchronous=NORMAL; and the ids of its namespace, field and context."""
    from everstore import Sqlite3, Store

    with Store(Sqlite3(path)) as store:
        store.storage("bench", "ns").x = 0
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ids = (
        conn.execute("SELECT id FROM everstore_namespaces WHERE name='bench/ns'"),
        conn.execute("SELECT id FROM everstore_fields WHERE name='x'"),
        conn.execute("SELECT max(id) FROM everstore_contexts"),
    )
    ns, field, ctx = (int(cursor.fetchone()[0]) for cursor in ids)
    return conn, (ns, field, ctx), path


def _raw_teardown(state: _RawState) -> None:
    state[0].close()
    remove_db(state[2])


def writes_sqlite_raw(config: Config) -> Metrics:
    """The floor: the stdlib sqlite3 module on the schema everstore creates.

    Same settings as everstore's backend (autocommit connection, WAL,
    synchronous=NORMAL); the encoded values are prepared before timing.
    """
    from everstore import default_codec

    n = sizes(config.quick).writes
    blobs = [default_codec.encode(i) for i in range(n)]
    with scratch_dir(config) as directory:
        names = _Counter(directory, "raw")

        def setup() -> _RawState:
            return _raw_sqlite(names.next())

        def per_write(state: _RawState) -> None:
            conn, (ns, field, ctx), _ = state
            execute = conn.execute
            now = time.time
            for i in range(n):
                execute(_RAW_INSERT, (now(), ns, field, ctx, blobs[i]))

        def executemany100(state: _RawState) -> None:
            conn, (ns, field, ctx), _ = state
            execute = conn.execute
            for first in range(0, n // 100 * 100, 100):
                now = time.time()
                rows = [(now, ns, field, ctx, blobs[i]) for i in range(first, first + 100)]
                execute("BEGIN")
                conn.executemany(_RAW_INSERT, rows)
                execute("COMMIT")

        committed = timed_loops(setup, per_write, n, config.min_time, _raw_teardown)
        batched = timed_loops(setup, executemany100, n // 100 * 100, config.min_time, _raw_teardown)
    return {"write_us": 1e6 * committed, "executemany100_us": 1e6 * batched}


def writes_paired_everstore(config: Config) -> Metrics:
    """Commit per write on an SQLite file: everstore and the raw sqlite3 module in ONE
    process, their loops alternating (everstore, raw, raw with everstore's statement,
    everstore, ...) on fresh files, so that drift hits all three alike; each reports
    its median loop.

    * everstore: ``s.x = i``, its names interned by an untimed first write;
    * raw: ``conn.execute(INSERT)`` as row 2a's raw loop (values encoded beforehand);
    * raw, everstore's statement: the INSERT with seq and link (links made
      beforehand), run on one reused cursor, as everstore's backend does: the floor
      of everstore's SQL, with none of its Python (no hashing).
    """
    from everstore import Sqlite3, Store, default_codec

    n = sizes(config.quick).paired_writes
    blobs = [default_codec.encode(i) for i in range(n)]
    links = [hashlib.sha256(blob).digest() for blob in blobs]

    def raw(state: _RawState) -> None:
        conn, (ns, field, ctx), _ = state
        execute = conn.execute
        now = time.time
        for i in range(n):
            execute(_RAW_INSERT, (now(), ns, field, ctx, blobs[i]))

    def raw_same_sql(state: _RawState) -> None:
        conn, (ns, field, ctx), _ = state
        cursor = conn.cursor()
        execute = cursor.execute
        now = time.time
        last = conn.execute("SELECT max(seq) FROM everstore_log").fetchone()[0]
        for i in range(n):
            seq = last + 1 + i
            execute(_RAW_INSERT_SEQ_LINK, (seq, now(), ns, field, ctx, blobs[i], links[i]))

    with scratch_dir(config) as directory:
        names = _Counter(directory, "paired")

        def everstore_setup() -> tuple[Any, Any, Path]:
            path = names.next()
            store = Store(Sqlite3(path))
            s = store.storage("bench", "ns")
            s.x = -1
            return store, s, path

        def everstore_teardown(state: tuple[Any, Any, Path]) -> None:
            state[0].close()
            remove_db(state[2])

        def everstore(state: tuple[Any, Any, Path]) -> None:
            s = state[1]
            for i in range(n):
                s.x = i

        def raw_setup() -> _RawState:
            return _raw_sqlite(names.next())

        loops: dict[str, tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], None]]]
        loops = {
            "everstore": (everstore_setup, everstore, everstore_teardown),
            "raw": (raw_setup, raw, _raw_teardown),
            "raw_same_sql": (raw_setup, raw_same_sql, _raw_teardown),
        }
        # Rounds of one loop each, until every variant had 2 * min_time; the median
        # loop of each, so that a loop hit by a spike of the machine's load drops out.
        times: dict[str, list[float]] = {name: [] for name in loops}
        while min(sum(seconds) for seconds in times.values()) < 2 * config.min_time:
            for name, (setup, run, teardown) in loops.items():
                state = setup()
                gc.collect()
                start = perf()
                run(state)
                times[name].append(perf() - start)
                teardown(state)
                del state
    per_write = {name: 1e6 * statistics.median(seconds) / n for name, seconds in times.items()}
    return {
        "write_us": per_write["everstore"],
        "raw_us": per_write["raw"],
        "raw_same_sql_us": per_write["raw_same_sql"],
        "loops": float(len(times["everstore"])),
    }


# -- 3. current-value reads -----------------------------------------------------------


def _read_loop(s: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        # Ten reads per iteration keep the loop's own cost under 2 % of a read.
        for _ in range(loops):
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018
            s.x  # noqa: B018

    return run


def _reads(config: Config, library: str, backend: str) -> Metrics:
    lib = _library(library)
    n = sizes(config.quick).reads
    with scratch_dir(config) as directory:
        if backend == "memory":
            store: Any = lib.Store(lib.Memory())
        else:
            store = lib.Store(lib.Sqlite3(str(directory / "reads.db")))
        s = store.storage("bench", "ns")
        s.x = 12345
        assert s.x == 12345
        seconds = timed_batches(_read_loop(s, n // 10), n // 10 * 10, config.min_time)
        store.close()
    return {"read_us": 1e6 * seconds}


def reads_memory_everstore(config: Config) -> Metrics:
    return _reads(config, "everstore", "memory")


def reads_memory_appendmuch(config: Config) -> Metrics:
    return _reads(config, "appendmuch", "memory")


def reads_sqlite_everstore(config: Config) -> Metrics:
    return _reads(config, "everstore", "sqlite")


def reads_sqlite_appendmuch(config: Config) -> Metrics:
    return _reads(config, "appendmuch", "sqlite")


# -- 3c. a read right after this process's own write ---------------------------------


def timer_cost(samples: int) -> float:
    """Seconds an empty ``start = perf(); ... ; perf() - start`` region measures."""
    total = 0.0
    for _ in range(samples):
        start = perf()
        total += perf() - start
    return total / samples


def read_after(store: Any, s: Any, n: int, mode: str) -> float:
    """Seconds of ``s.x`` summed over ``n`` reads, each timed alone: after a write
    ("write"), after a one-write transaction ("after_txn"), inside a transaction
    after a write to the same field ("in_txn"), or with no write before it
    ("plain", the like-for-like reference: a read timed the same way)."""
    total = 0.0
    if mode == "write":
        for i in range(n):
            s.x = i
            start = perf()
            s.x  # noqa: B018
            total += perf() - start
    elif mode == "after_txn":
        for i in range(n):
            with store.transaction():
                s.x = i
            start = perf()
            s.x  # noqa: B018
            total += perf() - start
    elif mode == "in_txn":
        for i in range(n):
            with store.transaction():
                s.x = i
                start = perf()
                s.x  # noqa: B018
                total += perf() - start
    else:
        for _ in range(n):
            start = perf()
            s.x  # noqa: B018
            total += perf() - start
    return total


def read_after_write_everstore(config: Config) -> Metrics:
    """The issue's "a read right after this process's own write": each read timed
    alone (``perf_counter`` around it, the cost of an empty timed region measured
    in the same loops and subtracted), on Memory and an SQLite file."""
    from everstore import Memory, Sqlite3, Store

    n = sizes(config.quick).after_write
    modes = ("write", "after_txn", "in_txn", "plain")
    metrics: Metrics = {}
    with scratch_dir(config) as directory:
        for backend in ("memory", "sqlite"):
            store = Store(Memory() if backend == "memory" else Sqlite3(directory / "raw.db"))
            s = store.storage("bench", "ns")
            s.x = -1
            assert s.x == -1
            totals = dict.fromkeys(modes, 0.0)
            timer = 0.0
            loops = 0
            gc.collect()
            started = perf()
            while perf() - started < config.min_time * len(modes) or not loops:
                for mode in modes:
                    totals[mode] += read_after(store, s, n, mode)
                timer += timer_cost(n)
                loops += 1
            store.close()
            for mode in modes:
                metrics[f"{backend}_{mode}_us"] = 1e6 * (totals[mode] - timer) / (loops * n)
    return metrics


# -- 4. history of 100k values ----------------------------------------------------------


def history_everstore(config: Config) -> Metrics:
    from everstore import Memory, Store

    n = sizes(config.quick).history
    s = Store(Memory()).storage("bench", "ns")
    for i in range(n):
        s.x = i
    assert len(s.__history__()["x"]) == n

    def get() -> None:
        s.__history__()["x"]

    def iterate() -> None:
        values = [v.data for v in s.__history__()["x"]]
        assert len(values) == n

    entries = list(s.__history__()["x"])

    def loop_only() -> None:
        # The caller's own loop over a plain list of the same Values: the floor of
        # any history that hands out one object per entry.
        values = [v.data for v in entries]
        assert len(values) == n

    return {
        "get_ms": 1e3 * timed_batches(get, 1, config.min_time),
        "iterate_ms": 1e3 * timed_batches(iterate, 1, config.min_time),
        "loop_floor_ms": 1e3 * timed_batches(loop_only, 1, config.min_time),
    }


def _filled_history(n: int) -> Any:
    """A Storage on a new Memory store whose field ``x`` has ``n`` int values."""
    from everstore import Memory, Store

    s = Store(Memory()).storage("bench", "ns")
    for i in range(n):
        s.x = i
    return s


def _history_steady(config: Config, n: int) -> dict[str, float]:
    """Seconds per value of ``[v.data for v in s.__history__()['x']]``, repeated
    calls, each on a new History; and of the same comprehension over a tuple of the
    same Values (what appendmuch hands out), the two measured in turn."""
    s = _filled_history(n)
    values = tuple(s.__history__()["x"])
    assert len(values) == n

    def everstore() -> None:
        assert len([v.data for v in s.__history__()["x"]]) == n

    def plain_tuple() -> None:
        assert len([v.data for v in values]) == n

    return interleaved_batches({"everstore": everstore, "tuple": plain_tuple}, n, config.min_time)


def _history_first(config: Config, n: int) -> dict[str, float]:
    """Seconds per value of the first such call on a fresh store (it makes the
    Values), against the first pass over a freshly made tuple of Values."""
    first = {"everstore": 0.0, "tuple": 0.0}
    samples = 0
    while first["everstore"] < config.min_time or samples < 3:
        s = _filled_history(n)
        gc.collect()
        start = perf()
        data = [v.data for v in s.__history__()["x"]]
        first["everstore"] += perf() - start
        assert len(data) == n
        made = tuple(s.__history__()["x"][0:n])  # new Values, as a peer would make them
        gc.collect()
        start = perf()
        data = [v.data for v in made]
        first["tuple"] += perf() - start
        samples += 1
        del s, made, data
    return {name: seconds / (samples * n) for name, seconds in first.items()}


def _history_iteration(config: Config, n: int, label: str) -> Metrics:
    steady = _history_steady(config, n)
    first = _history_first(config, n)
    return {
        f"iter_{label}_ns": 1e9 * steady["everstore"],
        f"iter_{label}_tuple_ns": 1e9 * steady["tuple"],
        f"first_{label}_ns": 1e9 * first["everstore"],
        f"first_{label}_tuple_ns": 1e9 * first["tuple"],
    }


def history_iter_everstore(config: Config) -> Metrics:
    sz = sizes(config.quick)
    return {
        **_history_iteration(config, sz.history_small, "small"),
        **_history_iteration(config, sz.history, "large"),
    }


def history_appendmuch(config: Config) -> Metrics:
    from appendmuch import Memory, Store

    n = sizes(config.quick).history
    s = Store(Memory()).storage("bench", "ns")
    for i in range(n):
        s.x = i
    assert len(s.history()["x"]) == n

    def get() -> None:
        s.history()["x"]

    def iterate() -> None:
        values = [v.data for v in s.history()["x"]]
        assert len(values) == n

    return {
        "get_ms": 1e3 * timed_batches(get, 1, config.min_time),
        "iterate_ms": 1e3 * timed_batches(iterate, 1, config.min_time),
    }


# -- 5. within ----------------------------------------------------------------------------


def _within(config: Config, library: str) -> Metrics:
    """``round = k; score = 10 * k + 7`` alternating, then queries for random k."""
    rounds = sizes(config.quick).within // 2
    if library == "everstore":
        from everstore import Memory, Store, within

        s: Any = Store(Memory()).storage("bench", "ns")

        def query(k: int) -> Any:
            return within(s, round=k).score
    else:
        from appendmuch import Memory as AMemory
        from appendmuch import Store as AStore

        s = AStore(AMemory()).storage("bench", "ns")

        def query(k: int) -> Any:
            return s.within(round=k).score

    for k in range(rounds):
        s.round = k
        s.score = 10 * k + 7
    rng = random.Random(20261122)
    start = perf()
    first = query(rounds // 2)
    first_seconds = perf() - start
    assert first == 10 * (rounds // 2) + 7
    ks = [rng.randrange(rounds) for _ in range(1000)]
    for k in ks[:10]:
        assert query(k) == 10 * k + 7
    batch = 10
    cycle = itertools.cycle(ks)

    def run() -> None:
        for _ in range(batch):
            query(next(cycle))

    seconds = timed_batches(run, batch, config.min_time)
    return {"query_ms": 1e3 * seconds, "first_query_ms": 1e3 * first_seconds}


def within_everstore(config: Config) -> Metrics:
    return _within(config, "everstore")


def within_appendmuch(config: Config) -> Metrics:
    return _within(config, "appendmuch")


# -- 6. cold open of a large file ---------------------------------------------------------


def cold_file(config: Config, library: str) -> Path:
    """Where the cached database for the cold-open family lives (built on demand)."""
    sz = sizes(config.quick)
    facts = sz.cold_namespaces * sz.cold_fields * sz.cold_writes
    if library == "everstore":
        from everstore.backends.base import SCHEMA_VERSION

        version = f"schema{SCHEMA_VERSION}"
    else:
        version = "0.3.0"
    return config.workdir / f"cold-{library}-{version}-{facts}facts.db"


def _cold_names(config: Config) -> tuple[list[str], list[str], int]:
    sz = sizes(config.quick)
    namespaces = [f"n{i:04d}" for i in range(sz.cold_namespaces)]
    fields = [f"f{i}" for i in range(sz.cold_fields)]
    return namespaces, fields, sz.cold_writes


def cold_build_everstore(config: Config) -> Metrics:
    """Interleaved writes (every namespace gets one write per field per round), one
    transaction per round: a namespace's facts end up spread over the whole file."""
    from everstore import Sqlite3, Store

    target = cold_file(config, "everstore")
    building = target.with_suffix(".building")
    remove_db(building)
    namespaces, fields, rounds = _cold_names(config)
    start = perf()
    with Store(Sqlite3(building)) as store:
        handles = [store.storage("cold", name) for name in namespaces]
        for r in range(rounds):
            with store.transaction():
                for s in handles:
                    for field in fields:
                        setattr(s, field, r)
    seconds = perf() - start
    remove_db(target)
    os.replace(building, target)
    remove_db(building)
    return {"build_s": seconds, "bytes": float(target.stat().st_size)}


def cold_build_appendmuch(config: Config) -> Metrics:
    from appendmuch import Sqlite3, Store

    target = cold_file(config, "appendmuch")
    building = target.with_suffix(".building")
    remove_db(building)
    namespaces, fields, rounds = _cold_names(config)
    start = perf()
    store = Store(Sqlite3(str(building)))
    handles = [store.storage("cold", name) for name in namespaces]
    for r in range(rounds):
        for s in handles:
            for field in fields:
                setattr(s, field, r)
    store.close()
    seconds = perf() - start
    remove_db(target)
    os.replace(building, target)
    remove_db(building)
    return {"build_s": seconds, "bytes": float(target.stat().st_size)}


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cold_open_everstore(config: Config) -> Metrics:
    """One sample: this process is fresh; import, open, read one field."""
    start = perf()
    from everstore import Sqlite3, Store

    imported = perf()
    path = cold_file(config, "everstore")  # after the import: it may import everstore
    namespaces, _, rounds = _cold_names(config)
    rss_import = _rss_mib()
    store = Store(Sqlite3(path))
    value = store.storage("cold", namespaces[len(namespaces) // 2]).f5
    done = perf()
    assert value == rounds - 1, value
    store.close()
    return {
        "import_s": imported - start,
        "open_read_s": done - imported,
        "rss_after_import_mib": rss_import,
    }


def cold_open_appendmuch(config: Config) -> Metrics:
    start = perf()
    from appendmuch import Sqlite3, Store

    imported = perf()
    path = cold_file(config, "appendmuch")  # after the import: it may import everstore
    namespaces, _, rounds = _cold_names(config)
    rss_import = _rss_mib()
    store = Store(Sqlite3(str(path)))
    value = store.storage("cold", namespaces[len(namespaces) // 2]).f5
    done = perf()
    assert value == rounds - 1, value
    store.close()
    return {
        "import_s": imported - start,
        "open_read_s": done - imported,
        "rss_after_import_mib": rss_import,
    }


# -- 7. appending to a list inside `with` --------------------------------------------------


def _list_append(config: Config, library: str, backend: str) -> Metrics:
    lib = _library(library)
    n = sizes(config.quick).list_items
    tail = min(100, n)
    total = 0.0
    last = 0.0
    growth = 0
    loops = 0
    with scratch_dir(config) as directory:
        while total < config.min_time:
            loops += 1
            path = directory / f"list-{loops}.db"
            if backend == "sqlite":
                store: Any = lib.Store(lib.Sqlite3(str(path)))
            else:
                store = lib.Store(lib.Memory())
            s = store.storage("bench", "ns")
            s.lst = []
            if backend == "sqlite":
                # Measure growth from a closed, checkpointed file to another.
                store.close()
                before = sqlite_files_size(path)
                store = lib.Store(lib.Sqlite3(str(path)))
                s = store.storage("bench", "ns")
            times: list[float] = []
            gc.collect()
            loop_start = perf()
            for i in range(n):
                start = perf()
                with s:
                    s.lst.append(i)
                times.append(perf() - start)
            if library == "appendmuch":
                store.flush()  # its writes are buffered: the last ones are not on disk yet
            total += perf() - loop_start
            last += sum(times[-tail:]) / tail
            with s:
                assert len(s.lst) == n
            store.close()
            if backend == "sqlite":
                growth += sqlite_files_size(path) - before
                remove_db(path)
            del store, s, times
    metrics = {"append_ms": 1e3 * total / (loops * n), "last100_ms": 1e3 * last / loops}
    if backend == "sqlite":
        metrics["bytes_per_append"] = growth / (loops * n)
    return metrics


def list_sqlite_everstore(config: Config) -> Metrics:
    return _list_append(config, "everstore", "sqlite")


def list_sqlite_appendmuch(config: Config) -> Metrics:
    return _list_append(config, "appendmuch", "sqlite")


def list_memory_everstore(config: Config) -> Metrics:
    return _list_append(config, "everstore", "memory")


def list_memory_appendmuch(config: Config) -> Metrics:
    return _list_append(config, "appendmuch", "memory")


CASES: dict[str, Callable[[Config], Metrics]] = {
    "writes_memory/everstore": writes_memory_everstore,
    "writes_memory/appendmuch": writes_memory_appendmuch,
    "writes_sqlite/everstore": writes_sqlite_everstore,
    "writes_sqlite/appendmuch": writes_sqlite_appendmuch,
    "writes_sqlite/raw": writes_sqlite_raw,
    "reads_memory/everstore": reads_memory_everstore,
    "reads_memory/appendmuch": reads_memory_appendmuch,
    "reads_sqlite/everstore": reads_sqlite_everstore,
    "reads_sqlite/appendmuch": reads_sqlite_appendmuch,
    "writes_paired/everstore": writes_paired_everstore,
    "read_after_write/everstore": read_after_write_everstore,
    "history/everstore": history_everstore,
    "history_iter/everstore": history_iter_everstore,
    "history/appendmuch": history_appendmuch,
    "within/everstore": within_everstore,
    "within/appendmuch": within_appendmuch,
    "cold_build/everstore": cold_build_everstore,
    "cold_build/appendmuch": cold_build_appendmuch,
    "cold_open/everstore": cold_open_everstore,
    "cold_open/appendmuch": cold_open_appendmuch,
    "list_sqlite/everstore": list_sqlite_everstore,
    "list_sqlite/appendmuch": list_sqlite_appendmuch,
    "list_memory/everstore": list_memory_everstore,
    "list_memory/appendmuch": list_memory_appendmuch,
}


# -- 8. serializable transactions: what read tracking costs ------------------------------

#: fields read and written by each transaction of family 8
ISOLATION_FIELDS = 100
#: rounds in which the two isolations alternate (drift hits both alike); the median
#: round counts (an SQLite checkpoint lands in one round, not in both modes' medians)
ISOLATION_ROUNDS = 20


def _isolation_pair(store: Any, min_time: float) -> tuple[float, float]:
    """Seconds per transaction of ISOLATION_FIELDS ``s.f = s.f + 1`` (100 reads, 100
    writes): (serializable, atomic), timed in alternating rounds on one store."""
    s = store.storage("bench", "isolation")
    names = [f"f{i}" for i in range(ISOLATION_FIELDS)]
    with store.transaction():
        for name in names:
            setattr(s, name, 0)

    def transaction(isolation: str) -> Callable[[], None]:
        def run() -> None:
            with store.transaction(isolation=isolation):
                for name in names:
                    setattr(s, name, getattr(s, name) + 1)

        return run

    runs = {isolation: transaction(isolation) for isolation in ("serializable", "atomic")}
    for run in runs.values():  # warm up: first loads, statement caches
        for _ in range(5):
            run()
    times: dict[str, list[float]] = {isolation: [] for isolation in runs}
    order = list(runs)
    for _ in range(ISOLATION_ROUNDS):
        for isolation in order:
            times[isolation].append(timed_batches(runs[isolation], 1, min_time / ISOLATION_ROUNDS))
        order.reverse()  # neither isolation always runs first, after the other's writes
    return statistics.median(times["serializable"]), statistics.median(times["atomic"])


def isolation_everstore(config: Config) -> Metrics:
    import everstore

    metrics: Metrics = {}
    with scratch_dir(config) as directory:
        for backend in ("memory", "sqlite"):
            if backend == "sqlite":
                store = everstore.Store(everstore.Sqlite3(str(directory / "isolation.db")))
            else:
                store = everstore.Store(everstore.Memory())
            serializable, atomic = _isolation_pair(store, config.min_time)
            store.close()
            metrics[f"{backend}_serializable_us"] = 1e6 * serializable
            metrics[f"{backend}_atomic_us"] = 1e6 * atomic
            metrics[f"{backend}_ratio"] = serializable / atomic
    return metrics


CASES["isolation/everstore"] = isolation_everstore


# -- 9. one append per `with` block at growing sizes: does the cost follow the list? --------

#: list sizes at which the last 100 appends are timed (full, quick)
APPEND_SIZES: dict[bool, tuple[int, int, int]] = {
    False: (1_000, 10_000, 100_000),
    True: (200, 400, 800),
}
_APPEND_TAIL = 100


def _appends(config: Config, backend: str) -> Metrics:
    """µs per `with s: s.lst.append(i)` at each size: the mean of the last 100 appends
    before the list reaches it. The list grows from one size to the next in one
    untimed block (one extend), so each repetition builds a fresh store quickly."""
    from everstore import Memory, Sqlite3, Store

    sizes_ = APPEND_SIZES[config.quick]
    timed = dict.fromkeys(sizes_, 0.0)
    loops = 0
    with scratch_dir(config) as directory:
        while loops == 0 or sum(timed.values()) < config.min_time:
            loops += 1
            path = directory / f"appends-{loops}.db"
            store = Store(Sqlite3(path) if backend == "sqlite" else Memory())
            s = store.storage("bench", "ns")
            s.lst = []
            length = 0
            for size in sizes_:
                with s:
                    s.lst.extend(range(length, size - _APPEND_TAIL))
                length = size - _APPEND_TAIL
                gc.collect()
                start = perf()
                for i in range(length, size):
                    with s:
                        s.lst.append(i)
                timed[size] += perf() - start
                length = size
            with s:
                assert len(s.lst) == sizes_[-1] and s.lst[-1] == sizes_[-1] - 1
            store.close()
            remove_db(path)
    # Named by position (append_us_1 is the smallest size): run.py labels them.
    metrics = {
        f"append_us_{index}": 1e6 * timed[size] / (loops * _APPEND_TAIL)
        for index, size in enumerate(sizes_, 1)
    }
    return metrics


def appends_sqlite_everstore(config: Config) -> Metrics:
    return _appends(config, "sqlite")


def appends_memory_everstore(config: Config) -> Metrics:
    return _appends(config, "memory")


def appends_sqlite_raw(config: Config) -> Metrics:
    """The floor of one append on SQLite: one INSERT of an append delta's bytes, committed
    (autocommit), with the stdlib sqlite3 module on the schema everstore creates and its
    settings (WAL, synchronous=NORMAL)."""
    from everstore import Sqlite3, Store, default_codec

    n = 1_000 if config.quick else 10_000
    blobs = [default_codec.encode_append(2 + i, [i]) for i in range(n)]
    with scratch_dir(config) as directory:
        names = _Counter(directory, "raw-appends")

        def setup() -> tuple[sqlite3.Connection, tuple[int, int, int], Path]:
            path = names.next()
            with Store(Sqlite3(path)) as store:
                store.storage("bench", "ns").lst = []
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            ids = (
                conn.execute("SELECT id FROM everstore_namespaces WHERE name='bench/ns'"),
                conn.execute("SELECT id FROM everstore_fields WHERE name='lst'"),
                conn.execute("SELECT max(id) FROM everstore_contexts"),
            )
            ns, field, ctx = (int(cursor.fetchone()[0]) for cursor in ids)
            return conn, (ns, field, ctx), path

        def teardown(state: tuple[sqlite3.Connection, tuple[int, int, int], Path]) -> None:
            state[0].close()
            remove_db(state[2])

        def per_append(state: tuple[sqlite3.Connection, tuple[int, int, int], Path]) -> None:
            conn, (ns, field, ctx), _ = state
            execute = conn.execute
            now = time.time
            for i in range(n):
                execute(_RAW_INSERT, (now(), ns, field, ctx, blobs[i]))

        committed = timed_loops(setup, per_append, n, config.min_time, teardown)
    return {"insert_us": 1e6 * committed}


CASES.update(
    {
        "appends_sqlite/everstore": appends_sqlite_everstore,
        "appends_sqlite/raw": appends_sqlite_raw,
        "appends_memory/everstore": appends_memory_everstore,
    }
)

#: family -> libraries (bench/run.py runs them after its own families)
FAMILIES: dict[str, list[str]] = {
    "appends_sqlite": ["everstore", "raw"],
    "appends_memory": ["everstore"],
}


# -- 10. loading many namespaces: one read per namespace against one read for all ----------

#: namespaces of BULK_FIELDS fields each (full, quick)
BULK_NAMESPACES: dict[bool, int] = {False: 100_000, True: 1_000}
BULK_FIELDS = 4
BULK_ROUNDS = 3


def _bulk_fill(store: Any, count: int) -> None:
    """``count`` namespaces ("people", "p<i>") of BULK_FIELDS fields each (a str, an int,
    a float, a str), in transactions of 1,000 namespaces."""
    for start in range(0, count, 1_000):
        with store.transaction(isolation="atomic"):
            for i in range(start, min(count, start + 1_000)):
                ns = store.namespace(("people", f"p{i}"))
                store.write(ns, "name", f"person {i}", "bench")
                store.write(ns, "age", i % 90, "bench")
                store.write(ns, "score", i * 0.5, "bench")
                store.write(ns, "city", f"city {i % 50}", "bench")


def _bulk(config: Config, backend: str) -> Metrics:
    """µs per namespace to load every namespace under ("people",) into a fresh Store on
    the same log: ``store.namespace(parts)`` for each name ``store.namespaces()``
    lists (the listing timed too), against one ``store.load(("people",))``. The two
    alternate, each on a fresh Store (SQLite reopens its file, Memory shares the log),
    at least BULK_ROUNDS times each and until ``min_time`` was timed for each; the
    medians count. Each timed load ends with a full collection: ``load()`` pauses the
    collector, and what it leaves to collect is part of its cost."""
    from everstore import Memory, Sqlite3, Store

    count = BULK_NAMESPACES[config.quick]
    with scratch_dir(config) as directory:
        path = directory / "bulk.db"
        shared = Memory()  # the log every Memory store of this case reads

        def fresh() -> Any:
            return Store(Sqlite3(path) if backend == "sqlite" else shared)

        filler = fresh()
        _bulk_fill(filler, count)
        filler.close()

        def one_by_one(store: Any) -> None:
            for parts in store.namespaces(("people",)):
                store.namespace(parts)

        def at_once(store: Any) -> None:
            store.load(("people",))

        runs = {"per_namespace": one_by_one, "bulk": at_once}
        timed: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        while (
            min(len(t) for t in timed.values()) < BULK_ROUNDS
            or min(sum(t) for t in timed.values()) < config.min_time
        ):
            for name in order:
                store = fresh()
                gc.collect()
                start = perf()
                runs[name](store)
                gc.collect()  # what a load leaves to the collector is part of its cost
                timed[name].append(perf() - start)
                assert len(store.namespaces(("people",))) == count
                assert store.read(store.namespace(("people", "p1")), "age") == 1
                store.close()
            order.reverse()
    per_namespace = statistics.median(timed["per_namespace"]) / count
    bulk = statistics.median(timed["bulk"]) / count
    return {
        "per_namespace_us": 1e6 * per_namespace,
        "bulk_us": 1e6 * bulk,
        "ratio": per_namespace / bulk,
    }


def bulk_sqlite_everstore(config: Config) -> Metrics:
    return _bulk(config, "sqlite")


def bulk_memory_everstore(config: Config) -> Metrics:
    return _bulk(config, "memory")


CASES.update(
    {
        "bulk_sqlite/everstore": bulk_sqlite_everstore,
        "bulk_memory/everstore": bulk_memory_everstore,
    }
)
FAMILIES.update({"bulk_sqlite": ["everstore"], "bulk_memory": ["everstore"]})
