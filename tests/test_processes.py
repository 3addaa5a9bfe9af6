"""Many writers on one store: processes on one SQLite file, threads on one Store.

Children are real processes started with ``sys.executable``; the test talks to them
through pipes (a line per command and per acknowledgement), never through sleeps.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from children import child, expect_line, start_together
from everstore import (
    Backend,
    BackendError,
    Memory,
    MissingFieldError,
    MutableAccessError,
    Sqlite3,
    Storage,
    Store,
    within,
)


@pytest.fixture(params=["memory", "sqlite"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The ``store`` and ``make_backend`` fixtures of conftest, on Memory and SQLite."""
    return str(request.param)


# No deadline and no "too slow" health check: a loaded machine must not fail a test
ROBUST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHILD_DEADLINE = 30.0  # seconds before a hung child is killed (the test then fails)


def all_values(store: Store) -> list[tuple[tuple[str, ...], str, Any]]:
    """Every fact of the store through the public API: (namespace, field, Value)."""
    found = []
    for parts in store.namespaces():
        for field, history in store.storage(*parts).__history__().items():
            found.extend((parts, field, value) for value in history)
    return found


def check_log_order(store: Store) -> list[tuple[tuple[str, ...], str, Any]]:
    """Seqs are exactly 1..last_seq, once each; times never decrease in seq order."""
    facts = sorted(all_values(store), key=lambda fact: fact[2].seq)
    seqs = [value.seq for _, _, value in facts]
    assert seqs == list(range(1, store.last_seq + 1))
    times = [value.time for _, _, value in facts]
    assert all(a <= b for a, b in itertools.pairwise(times))
    return facts


# -- several processes on one file ---------------------------------------------------

WRITER = r"""
import sys
from everstore import Store, Sqlite3

path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
store = Store(Sqlite3(path))  # opened by all children at once: the schema races too
own = store.storage("proc", name)
shared = store.storage("shared")
seen = 0
for i in range(count):
    if i % 5 == 4:
        with store.transaction():
            for k in range(4):
                setattr(own, f"t{i}_{k}", (name, i, k))
            shared.txn = (name, i)
    else:
        setattr(own, f"w{i}", (name, i))
        shared.last = (name, i)
    own.count = i
    seq = store.last_seq
    if seq <= seen:
        sys.exit(f"last_seq went from {seen} to {seq}")
    seen = seq
print("done", flush=True)
"""


@pytest.mark.slow
def test_processes_writing_one_file_never_collide(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "shared.db"  # does not exist yet
    names = [f"p{k}" for k in range(4)]
    count = 150
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(child(script, str(path), name, str(count))) for name in names]
        start_together(procs)
        for proc in procs:
            expect_line(proc, "done")
            assert proc.wait(timeout=CHILD_DEADLINE) == 0
            assert proc.stderr is not None
            assert proc.stderr.read() == ""

    store = Store(Sqlite3(path))
    facts = check_log_order(store)
    # the four writers' commits interleaved into one chain that verifies
    report = store.verify()
    assert report.ok and report.facts == store.last_seq
    txns = [i for i in range(count) if i % 5 == 4]
    singles = [i for i in range(count) if i % 5 != 4]
    assert len(facts) == len(names) * (len(singles) * 3 + len(txns) * 6)
    seq_of = {(parts, field, value.data): value.seq for parts, field, value in facts}
    shared = store.storage("shared")
    last = [value.data for value in shared.__history__()["last"]]
    txn = [value.data for value in shared.__history__()["txn"]]
    for name in names:
        own = store.storage("proc", name)
        for i in singles:
            assert getattr(own, f"w{i}") == (name, i)
        for i in txns:
            run = [seq_of[(("proc", name), f"t{i}_{k}", (name, i, k))] for k in range(4)]
            run.append(seq_of[(("shared",), "txn", (name, i))])
            # a transaction's facts are one contiguous block of the log
            assert run == list(range(run[0], run[0] + 5))
        assert [value.data for value in own.__history__()["count"]] == list(range(count))
        # each process's writes to the shared field appear, in its order
        assert [v for v in last if v[0] == name] == [(name, i) for i in singles]
        assert [v for v in txn if v[0] == name] == [(name, i) for i in txns]
    # the same, seen by SQLite itself
    raw = sqlite3.connect(path)
    rows = raw.execute("SELECT seq, time FROM everstore_log ORDER BY seq").fetchall()
    raw.close()
    assert [seq for seq, _ in rows] == list(range(1, len(facts) + 1))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(rows))
    store.close()


# -- 8 processes x 5,000 writes, with a follower checking exactly-once order --------

STRESS_WRITER = r"""
import sys
from everstore import Store, Sqlite3

path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Store(Sqlite3(path)) as store:
    s = store.storage("proc", name)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        s.n = i
print("done", flush=True)
"""

#: writes per process in the stress test (8 processes)
STRESS_WRITES = int(os.environ.get("EVERSTORE_STRESS_WRITES", "5000"))


@pytest.mark.slow
def test_eight_processes_write_and_a_follower_sees_each_fact_once_in_order(
    tmp_path: Path,
) -> None:
    workers, count = 8, STRESS_WRITES
    script = tmp_path / "stress.py"
    script.write_text(STRESS_WRITER)
    path = tmp_path / "stress.db"
    follower = Store(Sqlite3(path))  # creates the file; the writers share it
    total = workers * count
    seen: list[Any] = []
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(child(script, str(path), f"w{k}", str(count)))
            for k in range(workers)
        ]
        start_together(procs)
        # The follower runs while they write: each fact must come exactly once, in
        # seq order, never behind one already seen.
        for change in follower.follow(since=0, timeout=CHILD_DEADLINE):
            assert change.seq == len(seen) + 1, f"after seq {len(seen)} came {change.seq}"
            seen.append(change)
            if len(seen) == total:
                break
        for proc in procs:
            expect_line(proc, "done")
            assert proc.wait(timeout=CHILD_DEADLINE) == 0
    assert len(seen) == total
    by_worker: dict[tuple[str, ...], list[int]] = {}
    for change in seen:
        by_worker.setdefault(change.namespace, []).append(change.data)
    assert sorted(by_worker) == [("proc", f"w{k}") for k in range(workers)]
    for values in by_worker.values():
        assert values == list(range(count))  # every write once, in its writer's order
    assert all(a.time <= b.time for a, b in itertools.pairwise(seen))
    assert list(follower.follow(since=total, timeout=0)) == []
    follower.close()


# -- a reader sees another process's write on its very next read ------------------

SERVANT = r"""
import json
import sys
from everstore import Store, Sqlite3

store = Store(Sqlite3(sys.argv[1]))
print("ready", flush=True)
for line in sys.stdin:
    op, parts, *args = json.loads(line)
    s = store.storage(*parts)
    if op == "set":
        setattr(s, args[0], args[1])
    elif op == "del":
        delattr(s, args[0])
    elif op == "txn":
        with store.transaction():
            for field, value in args[0]:
                setattr(s, field, value)
    elif op == "append":
        with s:
            getattr(s, args[0]).append(args[1])
    elif op == "checkpoint":
        store.backend.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    print(json.dumps(store.last_seq), flush=True)
"""


def test_a_reader_sees_another_process_write_on_its_next_read(tmp_path: Path) -> None:
    script = tmp_path / "servant.py"
    script.write_text(SERVANT)
    path = tmp_path / "live.db"
    reader = Store(Sqlite3(path))
    r = reader.storage("live")  # loaded (empty) before the child writes anything
    with child(script, str(path)) as proc:
        expect_line(proc, "ready")
        assert proc.stdin is not None

        def ask(op: str, parts: tuple[str, ...], *args: Any) -> int:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps([op, parts, *args]) + "\n")
            proc.stdin.flush()
            return int(expect_line(proc))

        ask("set", ("live",), "x", 0)
        assert r.x == 0
        ask("set", ("live",), "lst", [])
        expected_list: list[int] = []
        x_writes = 1
        for i in range(1, 13):
            seq = ask("set", ("live",), "x", i)
            x_writes += 1
            # the first read after the acknowledgement, by a different path each time
            path_taken = i % 6
            if path_taken == 0:
                assert r.x == i
            elif path_taken == 1:
                assert reader.last_seq == seq
            elif path_taken == 2:
                assert len(r.__history__()["x"]) == x_writes
            elif path_taken == 3:
                assert within(r, x=i).x == i
            elif path_taken == 4:
                assert reader.as_of(seq=seq).storage("live").x == i
            else:
                assert getattr(reader.storage("live"), "x", None) == i
            assert r.x == i and reader.last_seq == seq

            ask("set", ("live",), f"f{i}", f"value {i}")
            assert f"f{i}" in r
            assert getattr(r, f"f{i}") == f"value {i}"

            ask("txn", ("live",), [["a", i], ["b", i], ["c", -i]])
            assert (r.a, r.b, r.c) == (i, i, -i)

            ask("append", ("live",), "lst", i)
            expected_list.append(i)
            with r:
                assert r.lst == expected_list

            ask("del", ("live",), f"f{i}")
            assert not hasattr(r, f"f{i}")
            assert f"f{i}" not in r.__fields__()

            ask("set", ("live", f"n{i}"), "v", i)
            assert ("live", f"n{i}") in reader.namespaces(("live",))
            assert reader.storage("live", f"n{i}").v == i

            if i % 4 == 0:  # the WAL restarts from its beginning after this
                ask("checkpoint", ("live",))
                seq = ask("set", ("live",), "x", -i)
                x_writes += 1
                assert r.x == -i
                assert reader.last_seq == seq
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait() == 0
    # a reader that was opened after everything agrees with the long-lived one
    fresh = Store(Sqlite3(path))
    assert [v.data for v in fresh.storage("live").__history__()["x"]] == [
        v.data for v in r.__history__()["x"]
    ]
    check_log_order(reader)
    reader.close()
    fresh.close()


# -- an open Store keeps its share of SQLite's shared-memory locks -------------------

HOLDER = r"""
import sqlite3
import sys
from everstore import Store, Sqlite3

if sys.argv[2] == "everstore":
    store = Store(Sqlite3(sys.argv[1]))
    store.storage("held").x = 1
    assert store.storage("held").x == 1
else:
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("SELECT count(*) FROM everstore_log").fetchall()
print("ready", flush=True)
sys.stdin.readline()
"""


def _shm_is_locked_by_another_process(path: Path) -> bool:
    """True if some other process holds a POSIX lock anywhere on ``path``-shm."""
    fd = os.open(f"{path}-shm", os.O_RDWR)
    try:
        # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid}
        request = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, request)
    finally:
        os.close(fd)  # we hold no lock on it: closing releases nothing of ours
    return struct.unpack("hhqqi", answer)[0] != fcntl.F_UNLCK


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="struct flock layout")
def test_an_open_store_keeps_sqlite_shared_memory_lock(tmp_path: Path) -> None:
    """Every process connected to a WAL database holds a shared lock on its -shm file;
    the next process to open the file takes its absence to mean "I am alone", and
    truncates and rebuilds the shared memory under the feet of running processes
    (they die of SIGBUS: see test_crash.py). A Store must keep that lock while open."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    path = tmp_path / "locks.db"
    Store(Sqlite3(path)).close()  # the schema, for the plain connection below
    with child(script, str(path), "plain") as proc:
        expect_line(proc, "ready")
        if not _shm_is_locked_by_another_process(path):
            pytest.skip("this SQLite build holds no lock on -shm while idle")
    with child(script, str(path), "everstore") as proc:
        expect_line(proc, "ready")
        assert _shm_is_locked_by_another_process(path), (
            "a process with an open Store holds no lock on the -shm file"
        )


# -- opening a file that others are opening or writing --------------------------------


def test_opening_honours_busy_timeout_while_another_connection_writes(tmp_path: Path) -> None:
    """SQLite answers "busy" at once, without calling the busy handler, when switching
    to WAL finds another connection's write lock (that avoids a deadlock): the open must
    then retry until ``busy_timeout``, as every other locked step does."""
    path = tmp_path / "fresh.db"
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")  # a writer (another process, say) holds the lock
        busy_timeout = 0.3
        started = time.monotonic()
        with pytest.raises(BackendError):  # the lock is never released, so in the end...
            Store(Sqlite3(path, busy_timeout=busy_timeout))
        waited = time.monotonic() - started
        # ...but only after waiting for it as long as it was told to
        assert waited >= busy_timeout * 0.9, f"gave up after {waited:.3f}s"
    finally:
        raw.close()


@pytest.mark.slow
def test_stores_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Like processes starting together on a new file (threads make it cheap to try
    often; each Store has its own connection, and SQLite locks them the same way)."""
    failures: list[str] = []
    for trial in range(150):
        path = tmp_path / f"new{trial}.db"
        barrier = threading.Barrier(8)
        stores: list[Store] = []

        def open_one(
            path: Path = path, barrier: threading.Barrier = barrier, stores: list[Store] = stores
        ) -> None:
            barrier.wait()
            try:
                store = Store(Sqlite3(path))
                stores.append(store)
                store.storage("opened").x = 1
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        openers = [threading.Thread(target=open_one) for _ in range(8)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
        for store in stores:
            store.close()
        if failures:
            break
    assert failures == [], f"after {trial + 1} trials: {failures[0]}"


# -- two handles of one namespace never disagree -------------------------------------


@contextlib.contextmanager
def backend_factory(kind: str) -> Iterator[Callable[[], Backend]]:
    if kind == "memory":
        shared = Memory()
        yield lambda: shared
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "handles.db"
        yield lambda: Sqlite3(path)


def observe(handle: Storage) -> Any:
    """What a handle shows: fields, their values (read both ways) and history seqs."""
    fields = handle.__fields__()
    values = {}
    for field in fields:
        try:
            values[field] = getattr(handle, field)
        except MutableAccessError:
            with handle:
                values[field] = list(getattr(handle, field))
    history = {
        field: [(v.seq, v.unavailable) for v in entries]
        for field, entries in handle.__history__().items()
    }
    return fields, values, history


handle_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 3), st.sampled_from("abc"), st.integers()),
        st.tuples(st.just("del"), st.integers(0, 3), st.sampled_from("abc"), st.none()),
        st.tuples(st.just("append"), st.integers(0, 3), st.just("lst"), st.integers()),
        st.tuples(st.just("txn"), st.integers(0, 3), st.sampled_from("abc"), st.integers()),
        st.tuples(st.just("handle"), st.integers(0, 3), st.just(""), st.none()),
    ),
    min_size=1,
    max_size=25,
)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(ROBUST, max_examples=25)
@given(ops=handle_ops)
def test_two_handles_of_one_namespace_never_disagree(
    kind: str, ops: list[tuple[str, int, str, Any]]
) -> None:
    with backend_factory(kind) as make:
        store = Store(make())
        handles = [store.storage("same"), store.storage("same")]
        other_store = Store(make())
        for op, which, field, value in ops:
            h = handles[which % len(handles)]
            other = handles[(which + 1) % len(handles)]
            if op == "set":
                setattr(h, field, value)
                assert getattr(other, field) == value
            elif op == "del":
                with contextlib.suppress(MissingFieldError):
                    delattr(h, field)
                assert not hasattr(other, field)
            elif op == "append":
                with h:
                    if "lst" in h:
                        h.lst.append(value)
                    else:
                        h.lst = [value]
                    # inside the block the other handle sees the same pending list
                    assert other.lst == h.lst
            elif op == "txn":
                with store.transaction():
                    setattr(h, field, value)
                    assert getattr(other, field) == value  # read-your-writes via either
                    with other:
                        if "lst" in other:
                            other.lst.append(value)
                    assert ("lst" in h) == ("lst" in other)
                    if "lst" in h:
                        assert h.lst == other.lst
            else:
                handles.append(store.storage("same"))
            seen = [observe(handle) for handle in handles]
            seen.append(observe(other_store.storage("same")))  # another Store, same log
            assert all(view == seen[0] for view in seen), seen
        store.close()
        other_store.close()


# -- threads on one Store ---------------------------------------------------------------


def test_threads_sharing_one_store_lose_nothing(make_backend: Callable[[], Backend]) -> None:
    store = Store(make_backend())
    threads_count, rounds = 6, 120
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            own = store.storage("thread", str(k))
            shared = store.storage("shared")
            own.items = []
            barrier.wait()
            for i in range(rounds):
                if i % 3 == 0:
                    with store.transaction():
                        own.t = i
                        own.u = -i
                        shared.txn = (k, i)
                        assert own.t == i  # read-your-writes inside the transaction
                else:
                    setattr(own, f"w{i}", (k, i))
                    shared.last = (k, i)
                    assert getattr(own, f"w{i}") == (k, i)
                with own:
                    own.items.append(i)
                # reads of other threads' namespaces never fail or tear
                neighbour = store.storage("thread", str((k + 1) % threads_count))
                if "t" in neighbour:
                    seen_t = neighbour.t
                    # u is written with t; read after t, it is from that transaction or later
                    assert neighbour.u <= -seen_t
                last = shared.__history__().get("last")
                assert last is None or all(type(v.data) is tuple for v in last[-3:])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=CHILD_DEADLINE)
        assert not worker.is_alive()
    assert errors == []

    singles = [i for i in range(rounds) if i % 3 != 0]
    txns = [i for i in range(rounds) if i % 3 == 0]
    for where in (store, Store(make_backend())):
        for k in range(threads_count):
            own = where.storage("thread", str(k))
            for i in singles:
                assert getattr(own, f"w{i}") == (k, i)
            assert [v.data for v in own.__history__()["t"]] == txns
            with own:
                assert own.items == list(range(rounds))
        history = where.storage("shared").__history__()
        for field, wanted in (("last", singles), ("txn", txns)):
            values = [v.data for v in history[field]]
            assert len(values) == threads_count * len(wanted)
            for k in range(threads_count):
                assert [i for t, i in values if t == k] == wanted
        facts = check_log_order(where)
        per_thread = 1 + len(singles) * 2 + len(txns) * 3 + rounds
        assert len(facts) == threads_count * per_thread
    store.close()


def test_another_store_sees_a_transaction_all_at_once(
    make_backend: Callable[[], Backend],
) -> None:
    """Two Stores on one log, in two threads: never half of a transaction."""
    writer_store, reader_store = Store(make_backend()), Store(make_backend())
    w = writer_store.storage("pair")
    r = reader_store.storage("pair")
    w.a = 0
    w.b = 0
    assert (r.a, r.b) == (0, 0)
    done = threading.Event()
    torn: list[tuple[int, int]] = []

    def write() -> None:
        try:
            for i in range(1, 1500):
                with writer_store.transaction():
                    w.a = i
                    for k in range(10):  # a wider transaction: a wider window to look into
                        setattr(w, f"filler{k}", i)
                    w.b = i
                if torn:
                    break
        finally:
            done.set()

    thread = threading.Thread(target=write)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # many more thread switches: more interleavings tried
    try:
        thread.start()
        while not done.is_set():
            a = r.a
            b = r.b  # read after a: if a's transaction is visible, so is b's
            if b < a:
                torn.append((a, b))
                break
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert torn == [], f"read a={torn[0][0]} but b={torn[0][1]}: half a transaction"
    assert (r.a, r.b) == (w.a, w.b)


# -- the database itself refuses to rewrite history --------------------------------

TABLES = ["everstore_log", "everstore_namespaces", "everstore_fields", "everstore_contexts"]


@pytest.fixture
def written_file(tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    with Store(Sqlite3(path)) as store:
        s = store.storage("h")
        s.x = 1
        s.y = "two"
        with store.transaction():
            s.x = 3
            store.storage("other").z = 4
    return path


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    raw = sqlite3.connect(path)
    try:
        return {t: raw.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    finally:
        raw.close()


def _column(table: str) -> str:
    return "data" if table == "everstore_log" else "name"


def _key(table: str) -> str:
    return "seq" if table == "everstore_log" else "id"


STATEMENTS: dict[str, Callable[[str], str]] = {
    "update_one": lambda t: f"UPDATE {t} SET {_column(t)} = 'x' WHERE {_key(t)} = 1",
    "update_all": lambda t: f"UPDATE {t} SET {_column(t)} = {_column(t)}",
    "update_key": lambda t: f"UPDATE {t} SET {_key(t)} = {_key(t)} + 100 WHERE {_key(t)} = 1",
    "delete_one": lambda t: f"DELETE FROM {t} WHERE {_key(t)} = 1",
    "delete_all": lambda t: f"DELETE FROM {t}",
}


@pytest.mark.parametrize("statement", list(STATEMENTS))
@pytest.mark.parametrize("table", TABLES)
def test_raw_update_and_delete_are_refused(written_file: Path, table: str, statement: str) -> None:
    before = _dump(written_file)
    assert before[table], "the table must hold rows for the refusal to mean anything"
    raw = sqlite3.connect(written_file, isolation_level=None)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            raw.execute(STATEMENTS[statement](table))
        # nor inside an explicit transaction that would commit what it could
        raw.execute("BEGIN")
        with pytest.raises(sqlite3.DatabaseError):
            raw.execute(STATEMENTS[statement](table))
        raw.execute("COMMIT")
    finally:
        raw.close()
    assert _dump(written_file) == before
    with Store(Sqlite3(written_file)) as store:
        assert [v.data for v in store.storage("h").__history__()["x"]] == [1, 3]


def test_upsert_on_the_log_is_refused(written_file: Path) -> None:
    before = _dump(written_file)
    raw = sqlite3.connect(written_file, isolation_level=None)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            raw.execute(
                "INSERT INTO everstore_log(seq, time, ns, field, ctx, data) "
                "VALUES (1, 0, 1, 1, 1, x'39') ON CONFLICT(seq) DO UPDATE SET data = excluded.data"
            )
    finally:
        raw.close()
    assert _dump(written_file) == before


REPLACEMENTS = {
    "everstore_log": "INSERT OR REPLACE INTO everstore_log(seq, time, ns, field, ctx, data) "
    "VALUES (1, 0, 1, 1, 1, x'39')",
    "everstore_namespaces": "REPLACE INTO everstore_namespaces(id, name) VALUES (1, 'forged')",
    "everstore_fields": "REPLACE INTO everstore_fields(id, name) VALUES (1, 'forged')",
    "everstore_contexts": "REPLACE INTO everstore_contexts(id, name) VALUES (1, 'forged')",
}


@pytest.mark.parametrize("table", TABLES)
def test_insert_or_replace_cannot_rewrite_history(written_file: Path, table: str) -> None:
    """REPLACE deletes the old row without firing DELETE triggers (SQLite's default)."""
    before = _dump(written_file)
    raw = sqlite3.connect(written_file, isolation_level=None)
    try:
        with contextlib.suppress(sqlite3.DatabaseError):  # refusing is the right answer
            raw.execute(REPLACEMENTS[table])
    finally:
        raw.close()
    assert _dump(written_file) == before
