"""everstore.versions: many writers on one entry, and every backend.

Threads sharing an engine, engines on one file, and real processes (tests/children.py)
all land every write as a version of one chain that every reader sees in the same
order; ``parent=`` turns the retry into a ConflictError. Then a conformance subset runs
unchanged on every backend of the ``make_backend`` fixture (memory, SQLite,
PostgreSQL), with several Stores on one database standing for several hosts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from children import child, expect_clean_exit, expect_line, start_together
from everstore import Backend, ConflictError, Store
from everstore.versions import (
    ANY_PARENT,
    DbEngine,
    Handlers,
    MissingEntryError,
    MissingVersionError,
    PatternError,
)

BackendFactory = Callable[[], Backend]
CHILD_DEADLINE = 60.0


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(0..count-1)`` in threads started together; re-raise any error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def check_chain(engine: DbEngine, tenant: str, entry: str) -> list[str]:
    """The entry's history, checked: each version's parent is the one before it, and
    verify() finds nothing wrong."""
    history = engine.history(tenant, entry, max_items=100_000)
    parents = [engine.info(tenant, entry, digest).parent for digest in history]
    assert parents == [*history[1:], None]
    assert len(set(history)) == len(history)
    report = engine.verify(tenant, entry)
    assert report.ok, report.problems
    assert report.versions == len(history)
    return history


# -- threads ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_threads_putting_into_one_entry_all_land(tmp_path: Path, where: str) -> None:
    engine = (
        DbEngine(tmp_path, handlers=Handlers())
        if where == "sqlite"
        else DbEngine(store=Store(), handlers=Handlers())
    )
    engine.init("t")

    def work(n: int) -> None:
        for i in range(50):
            assert engine.put("t", f"user{n}", "records", f"{n}-{i}", {"n": n, "i": i})

    run_threads(8, work)
    assert engine.count("t", "records") == 400
    assert engine.items("t", "records") == {
        f"{n}-{i}": {"n": n, "i": i} for n in range(8) for i in range(50)
    }
    history = check_chain(engine, "t", "records")
    assert len(history) == 400
    for n in range(8):
        assert len(engine.history("t", "records", user_id=f"user{n}", max_items=1000)) == 50
    engine.close()


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_threads_saving_one_entry_all_land(tmp_path: Path, where: str) -> None:
    engine = (
        DbEngine(tmp_path, handlers=Handlers())
        if where == "sqlite"
        else DbEngine(store=Store(), handlers=Handlers())
    )
    engine.init("t")
    saved: dict[str, Any] = {}
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(20):
            value = {"writer": n, "i": i}
            digest = engine.save("t", f"user{n}", "snap", value)
            with lock:
                saved[digest] = value

    run_threads(8, work)
    history = check_chain(engine, "t", "snap")
    assert len(history) == 160 and set(history) == set(saved)
    values = [engine.load("t", "snap", digest) for digest in reversed(history)]
    for n in range(8):
        # each writer's saves are in the chain in the order it made them
        assert [v["i"] for v in values if v["writer"] == n] == list(range(20))
    engine.close()


def race_from(engine: DbEngine, head: str, round_: int, writers: int = 6) -> list[str]:
    """Every writer saves a value of its own with ``parent=head`` at once; what
    each one got."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            engine.save("t", "u", "e", {"round": round_, "writer": n}, parent=head)
            outcome = "saved"
        except ConflictError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    run_threads(writers, work)
    return outcomes


def test_saves_with_the_same_parent_race_and_one_wins(tmp_path: Path) -> None:
    engine = DbEngine(tmp_path, handlers=Handlers())
    engine.init("t")
    head = engine.save("t", "u", "e", "start")
    for round_ in range(5):
        assert sorted(race_from(engine, head, round_)) == ["conflict"] * 5 + ["saved"]
        assert engine.info("t", "e").parent == head
        head = engine.get_digest("t", "e")
    assert len(check_chain(engine, "t", "e")) == 6
    engine.close()


# -- parent= -------------------------------------------------------------------------------


def test_save_with_a_parent_raises_conflict_when_the_head_moved(tmp_path: Path) -> None:
    with (
        DbEngine(tmp_path, handlers=Handlers()) as one,
        DbEngine(tmp_path, handlers=Handlers()) as two,
    ):
        one.init("t")
        first = one.save("t", "alice", "doc", {"v": 1})
        seen_by_two = two.get_digest("t", "doc")
        second = one.save("t", "alice", "doc", {"v": 2}, parent=first)
        before = two.store.last_seq
        with pytest.raises(ConflictError):
            two.save("t", "bob", "doc", {"v": "bob's"}, parent=seen_by_two)
        with pytest.raises(ConflictError):
            two.save("t", "bob", "doc", {"v": 1}, parent=seen_by_two)  # not even a no-op
        with pytest.raises(ConflictError):
            two.delete_entry("t", "bob", "doc", parent=seen_by_two)
        assert two.store.last_seq == before
        assert two.history("t", "doc") == [second, first]
        assert one.load("t", "doc") == {"v": 2}
        # from the head it saw last, the same save goes through
        third = two.save("t", "bob", "doc", {"v": "bob's"}, parent=second)
        assert one.history("t", "doc") == [third, second, first]
        assert one.save("t", "bob", "doc", {"v": "bob's"}, parent=third) == third
        assert one.save("t", "bob", "doc", {"v": 4}, parent=ANY_PARENT) != third


def test_parent_none_means_the_entry_must_be_new(tmp_path: Path) -> None:
    with DbEngine(tmp_path, handlers=Handlers()) as engine:
        engine.init("t")
        first = engine.save("t", "u", "e", 1, parent=None)
        with pytest.raises(ConflictError):
            engine.save("t", "u", "e", 2, parent=None)
        with pytest.raises(ConflictError):
            engine.save("t", "u", "other", 2, parent=first)
        assert engine.history("t", "e") == [first]
        assert not engine.exists("t", "other")
        deleted = engine.delete_entry("t", "u", "e", parent=first)
        with pytest.raises(ConflictError):
            engine.save("t", "u", "e", 3, parent=None)  # deleted is not new
        assert engine.save("t", "u", "e", 3, parent=deleted) != first


# -- processes --------------------------------------------------------------------------------

WRITER = r"""
import sys
from everstore.versions import DbEngine, Handlers

root, name, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
engine = DbEngine(root, handlers=Handlers())  # opened by every child at once
engine.init("t")
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
for i in range(count):
    if mode == "puts":
        if not engine.put("t", name, "records", f"{name}-{i}", {"writer": name, "i": i}):
            sys.exit(f"put {i} made no version")
    else:
        engine.save("t", name, "snap", {"writer": name, "i": i})
engine.close()
print("done", flush=True)
"""


@pytest.mark.slow
def test_processes_writing_one_store_all_land_in_one_order(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = tmp_path / "db"
    putters = [f"p{k}" for k in range(4)]
    savers = [f"s{k}" for k in range(4)]
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                child(script, str(root), name, mode, str(count), deadline=CHILD_DEADLINE)
            )
            for names, mode, count in ((putters, "puts", 100), (savers, "saves", 30))
            for name in names
        ]
        start_together(procs)
        for proc in procs:
            expect_line(proc, "done")
            expect_clean_exit(proc, CHILD_DEADLINE)

    with (
        DbEngine(root, handlers=Handlers()) as reader,
        DbEngine(root, handlers=Handlers()) as other_reader,
    ):
        # every put landed exactly once, each as its own version
        assert reader.items("t", "records") == {
            f"{name}-{i}": {"writer": name, "i": i} for name in putters for i in range(100)
        }
        records = check_chain(reader, "t", "records")
        assert len(records) == 400
        for name in putters:
            mine = reader.history("t", "records", user_id=name)
            assert len(mine) == 100
        # every save is a version; each writer's in its own order
        snaps = check_chain(reader, "t", "snap")
        assert len(snaps) == 120
        values = [reader.load("t", "snap", digest) for digest in reversed(snaps)]
        for name in savers:
            assert [v["i"] for v in values if v["writer"] == name] == list(range(30))
        # every reader sees the same chains, in the same order
        assert other_reader.history("t", "records", max_items=1000) == records
        assert other_reader.history("t", "snap") == snaps
        assert other_reader.entries("t") == ["records", "snap"]


# -- every backend ------------------------------------------------------------------------


@pytest.fixture
def engines(make_backend: BackendFactory) -> list[DbEngine]:
    """Two engines, each with its own Store, on one database (two hosts, as it were)."""
    made = [DbEngine(store=Store(make_backend()), handlers=Handlers()) for _ in range(2)]
    made[0].init("t")
    return made


def test_backend_snapshots(engines: list[DbEngine]) -> None:
    one, two = engines
    first = one.save("t", "u", "e", {"a": 1, "blob": b"x" * 5000, "set": {1, 2}})
    second = one.save("t", "v", "e", {"a": 2})
    assert one.save("t", "u", "e", {"a": 2}) == second
    assert two.load("t", "e") == {"a": 2}
    assert two.load("t", "e", first) == {"a": 1, "blob": b"x" * 5000, "set": {1, 2}}
    assert two.history("t", "e") == [second, first]
    assert two.history("t", "e", user_id="u") == [first]
    assert two.get_digest("t", "e") == second and two.exists("t", "e")
    assert two.diff("t", "e", first, second).changed == {("a",): (1, 2)}
    assert two.verify("t", "e").ok


def test_backend_records(engines: list[DbEngine]) -> None:
    one, two = engines
    assert one.put_many("t", "u", "r", {i: {"i": i} for i in range(300)}) is True
    assert one.put("t", "u", "r", "k", b"y" * 3000) is True
    old = one.get_digest("t", "r")
    assert two.put("t", "u", "r", "k", b"y" * 3000) is False
    assert two.remove("t", "u", "r", 5) is True
    assert one.count("t", "r") == 300
    assert one.get("t", "r", "k") == b"y" * 3000
    assert one.get("t", "r", 5, old) == {"i": 5}
    assert one.diff("t", "r", old, two.get_digest("t", "r")).removed == {5: {"i": 5}}
    assert len(one.get("t", "r")) == 300
    with pytest.raises(PatternError):
        two.save("t", "u", "r", 1)
    assert two.verify("t", "r").ok


def test_backend_deletion(engines: list[DbEngine]) -> None:
    one, two = engines
    first = one.save("t", "u", "e", 1)
    deleted = two.delete_entry("t", "u", "e")
    assert not one.exists("t", "e")
    with pytest.raises(MissingEntryError):
        one.load("t", "e")
    assert one.load("t", "e", first) == 1
    assert one.entries("t") == [] and one.entries("t", include_deleted=True) == ["e"]
    one.put("t", "u", "e", "k", 1)
    assert two.info("t", "e").parent == deleted
    assert two.verify("t", "e").ok


def test_backend_tenants_are_isolated(engines: list[DbEngine]) -> None:
    one, two = engines
    two.init("t2")
    theirs = two.tenant("t2").save("someone", "secret", {"x": 1})
    one.tenant("t").save("u", "mine", {"x": 1})
    handle = one.tenant("t")
    assert handle.entries() == ["mine"]
    with pytest.raises(MissingEntryError):
        handle.load("secret")
    with pytest.raises(MissingVersionError):
        handle.load("mine", theirs)
    assert two.tenant("t2").entries() == ["secret"]


def test_backend_conflicts(engines: list[DbEngine]) -> None:
    one, two = engines
    first = one.save("t", "u", "e", 1)
    one.save("t", "u", "e", 2)
    with pytest.raises(ConflictError):
        two.save("t", "u", "e", 3, parent=first)
    assert len(two.history("t", "e")) == 2


def test_backend_writers_on_separate_stores_all_land(make_backend: BackendFactory) -> None:
    engines = [DbEngine(store=Store(make_backend()), handlers=Handlers()) for _ in range(4)]
    engines[0].init("t")

    def work(n: int) -> None:
        for i in range(15):
            engines[n].put("t", f"w{n}", "r", f"{n}-{i}", i)
            engines[n].save("t", f"w{n}", "s", {"n": n, "i": i})

    run_threads(4, work)
    reader = DbEngine(store=Store(make_backend()), handlers=Handlers())
    assert reader.count("t", "r") == 60
    assert len(check_chain(reader, "t", "r")) == 60
    assert len(check_chain(reader, "t", "s")) == 60
    assert all(e.history("t", "s") == reader.history("t", "s") for e in engines)


def test_backend_tenant_names_with_pattern_characters(engines: list[DbEngine]) -> None:
    one, two = engines
    names = ["a_", "ab", "a%", "abc", "a\\", "a\\b", "a.", "a*"]
    for name in names:
        one.init(name)
        one.save(name, "u", f"of {name}", name)
    for name in names:
        assert two.entries(name) == [f"of {name}"]
        assert two.tenant(name).load(f"of {name}") == name
