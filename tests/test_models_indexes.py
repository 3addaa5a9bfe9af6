"""everstore.models.indexes.FieldIndex on every backend: equality and range answers,
kept current under this Store's writes and other Stores' (as other processes'), plus
one test with a real second process on SQLite."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from conftest import BackendFactory
from everstore import Sqlite3, Store
from everstore.errors import InvalidNameError, StoreClosedError
from everstore.models.indexes import FieldIndex

Parts = tuple[str, ...]


@pytest.fixture
def two(make_backend: BackendFactory) -> Iterator[tuple[Store, Store]]:
    """Two Stores on one database: ``mine`` holds the index, ``other`` plays another
    process."""
    mine, other = Store(make_backend()), Store(make_backend())
    yield mine, other
    mine.close()
    other.close()


def put(store: Store, parts: Parts, field: str, value: Any) -> None:
    store.write(store.namespace(parts), field, value)


def drop(store: Store, parts: Parts, field: str) -> None:
    store.delete(store.namespace(parts), field)


def test_equal_and_range_follow_own_writes(store: Store, unique: Callable[[], str]) -> None:
    p = unique()
    ages = FieldIndex(store, (p,), "age")
    assert ages.equal(30) == [] and ages.range(0) == []
    for name, age in [("ann", 31), ("bob", 25), ("cid", 31), ("dan", 40)]:
        put(store, (p, name), "age", age)
    put(store, (p, "eve"), "name", "eve")  # no age: in no entry
    assert ages.equal(31) == [(p, "ann"), (p, "cid")]
    assert ages.equal(25) == [(p, "bob")]
    assert ages.range(25, 40) == [(p, "bob"), (p, "ann"), (p, "cid")]
    assert ages.range(25, 40, include_low=False, include_high=True) == [
        (p, "ann"),
        (p, "cid"),
        (p, "dan"),
    ]
    assert ages.range(None, 31) == [(p, "bob")]
    assert ages.range(None, 31, include_high=True) == [(p, "bob"), (p, "ann"), (p, "cid")]
    assert ages.range(31, include_low=False) == [(p, "dan")]
    assert ages.range(50) == [] and ages.range(31, 31) == []
    put(store, (p, "ann"), "age", 26)  # an update moves the entry
    assert ages.equal(31) == [(p, "cid")]
    assert ages.equal(26) == [(p, "ann")]
    assert ages.range(25, 27) == [(p, "bob"), (p, "ann")]
    drop(store, (p, "cid"), "age")  # a tombstone removes it
    assert ages.equal(31) == [] and (p, "cid") not in ages.range(0)
    put(store, (p, "cid"), "age", 31)  # and it may come back
    assert ages.equal(31) == [(p, "cid")]
    put(store, (p, "cid"), "age", 31)  # the same value again
    put(store, (p, "cid"), "age", 31.0)  # an equal value of another type
    assert ages.equal(31) == [(p, "cid")] and ages.range(31, 32) == [(p, "cid")]
    assert sorted(ages.objects()) == [(p, n) for n in ["ann", "bob", "cid", "dan"]]
    ages.close()


def test_built_lazily_from_what_exists_and_later_writes(
    store: Store, unique: Callable[[], str]
) -> None:
    p = unique()
    put(store, (p, "a"), "age", 1)
    store.namespace((p, "b"))  # loaded, no facts: not an object yet
    drop_later = (p, "c")
    put(store, drop_later, "age", 3)
    drop(store, drop_later, "age")
    ages = FieldIndex(store, (p,), "age")
    put(store, (p, "b"), "age", 2)  # between the constructor and the first query
    assert ages.range(0) == [(p, "a"), (p, "b")]
    assert ages.equal(3) == []


def test_only_objects_directly_under_the_prefix(store: Store, unique: Callable[[], str]) -> None:
    p = unique()
    put(store, (p,), "age", 1)  # the prefix itself
    put(store, (p, "a", "deep"), "age", 1)  # one level too deep
    put(store, (p + "x", "a"), "age", 1)  # a sibling prefix
    put(store, (p, "a"), "age", 1)
    ages = FieldIndex(store, (p,), "age")
    put(store, (p, "b", "deep"), "age", 1)
    put(store, (p + "x", "b"), "age", 1)
    assert ages.equal(1) == [(p, "a")]
    nested = FieldIndex(store, (p, "a"), "age")
    assert nested.equal(1) == [(p, "a", "deep")]


def test_other_writers_existing_new_changed_and_deleted_objects(
    two: tuple[Store, Store], unique: Callable[[], str]
) -> None:
    mine, other = two
    p = unique()
    put(other, (p, "old"), "age", 10)  # exists before the index, never loaded by mine
    ages = FieldIndex(mine, (p,), "age")
    assert ages.equal(10) == [(p, "old")]
    put(other, (p, "new"), "age", 10)  # created by the other writer after the build
    assert ages.equal(10) == [(p, "new"), (p, "old")]
    put(other, (p, "old"), "age", 12)
    assert ages.equal(10) == [(p, "new")] and ages.equal(12) == [(p, "old")]
    drop(other, (p, "new"), "age")
    assert ages.range(0) == [(p, "old")]
    with other.transaction():  # several objects in one commit
        put(other, (p, "t1"), "age", 11)
        put(other, (p, "t2"), "age", 11)
        put(other, (p, "old"), "age", 11)
    assert ages.equal(11) == [(p, "old"), (p, "t1"), (p, "t2")]
    assert ages.range(11, 12) == [(p, "old"), (p, "t1"), (p, "t2")]


def test_other_writer_between_listing_and_loading_is_not_missed(
    two: tuple[Store, Store], unique: Callable[[], str]
) -> None:
    """Objects created while the first query builds are caught by the watch."""
    mine, other = two
    p = unique()
    for i in range(20):
        put(other, (p, f"o{i:02}"), "age", i)
    ages = FieldIndex(mine, (p,), "age")
    seen = 0

    def interleave(fact: Any) -> None:
        # While the index loads the objects, the other writer keeps writing.
        nonlocal seen
        if fact.loading and fact.namespace.parts[0] == p and seen < 5:
            seen += 1
            put(other, (p, f"late{seen}"), "age", 100 + seen)
            put(other, (p, "o00"), "age", 50 + seen)

    remove = mine.add_fact_hook(interleave)
    ages.range(0)
    remove()
    assert seen == 5
    assert ages.equal(55) == [(p, "o00")]
    assert ages.range(100) == [(p, f"late{i}") for i in range(1, 6)]
    assert len(ages.range(0)) == 25


def test_transactions_show_in_the_index_when_they_commit(
    store: Store, unique: Callable[[], str]
) -> None:
    p = unique()
    ages = FieldIndex(store, (p,), "age")
    put(store, (p, "a"), "age", 1)
    with store.transaction():
        put(store, (p, "a"), "age", 2)
        put(store, (p, "b"), "age", 2)
        assert ages.equal(2) == []  # pending writes are not committed state
    assert ages.equal(2) == [(p, "a"), (p, "b")]
    with contextlib.suppress(KeyError), store.transaction():
        put(store, (p, "a"), "age", 3)
        raise KeyError("rolled back")
    assert ages.equal(3) == [] and ages.equal(2) == [(p, "a"), (p, "b")]


def test_value_families(store: Store, unique: Callable[[], str]) -> None:
    p = unique()
    values: dict[str, Any] = {
        "i": 1,
        "f": 1.5,
        "d": Decimal("2.25"),
        "big": 10**30,
        "t": True,
        "s": "1",
        "b": b"\x01",
        "naive": datetime(2024, 1, 1, 12),
        "aware": datetime(2024, 1, 1, 12, tzinfo=UTC),
        "day": date(2024, 1, 1),
        "noon": time(12),
        "id": UUID(int=5),
        "list": [1, 2],
        "nan": float("nan"),
        "none": None,
        "tuple": (1, "a"),
    }
    for name, value in values.items():
        put(store, (p, name), "v", value)
    index = FieldIndex(store, (p,), "v")
    assert index.range(0) == [(p, "i"), (p, "f"), (p, "d"), (p, "big")]  # numbers only
    assert index.range(1, 2) == [(p, "i"), (p, "f")]
    assert index.range(1.0, Decimal(3)) == [(p, "i"), (p, "f"), (p, "d")]
    assert index.equal(1) == [(p, "i")] and index.equal(1.0) == [(p, "i")]  # True is no 1
    assert index.equal(True) == [(p, "t")] and index.range(False) == [(p, "t")]
    assert index.range("") == [(p, "s")] and index.range(b"") == [(p, "b")]
    assert index.range(datetime(2000, 1, 1)) == [(p, "naive")]
    assert index.range(datetime(2000, 1, 1, tzinfo=UTC)) == [(p, "aware")]
    assert index.range(date(2000, 1, 1)) == [(p, "day")]
    assert index.range(time(0)) == [(p, "noon")]
    assert index.range(UUID(int=0)) == [(p, "id")]
    assert index.equal(None) == [(p, "none")]
    assert index.equal((1, "a")) == [(p, "tuple")]
    assert index.equal(float("nan")) == []  # NaN equals nothing, itself included
    with pytest.raises(TypeError, match="hashable"):
        index.equal([1, 2])  # unhashable: never indexed for equality
    with pytest.raises(TypeError, match="low or a high"):
        index.range()
    with pytest.raises(TypeError, match="do not compare"):
        index.range(1, "z")
    with pytest.raises(TypeError, match="do not compare"):
        index.range(datetime(2000, 1, 1), datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(TypeError, match="range bound"):
        index.range(float("nan"))
    with pytest.raises(TypeError, match="range bound"):
        index.range(None, (1, 2))
    assert sorted(index.objects()) == sorted((p, name) for name in values)


def test_mutable_values_changed_in_place(store: Store, unique: Callable[[], str]) -> None:
    p = unique()
    doc = store.storage(p, "a")
    with doc:
        doc.v = [1]
    index = FieldIndex(store, (p,), "v")
    assert index.objects() == [(p, "a")]
    with doc:
        doc.v.append(2)  # stored as a delta: the hook sees the rebuilt value
    doc.v = "now a str"
    assert index.equal("now a str") == [(p, "a")]
    with doc:
        doc.v = ["again"]
    assert index.range("") == [] and index.objects() == [(p, "a")]


def test_random_writes_of_two_stores_match_a_scan(
    two: tuple[Store, Store], unique: Callable[[], str]
) -> None:
    mine = two[0]
    p = unique()
    rng = random.Random(9)
    names = [f"o{i}" for i in range(12)]
    index = FieldIndex(mine, (p,), "score")
    for step in range(150):
        writer = rng.choice(two)
        parts = (p, rng.choice(names))
        ns = writer.namespace(parts)
        if writer.has(ns, "score") and rng.random() < 0.25:
            writer.delete(ns, "score")
        else:
            writer.write(ns, "score", rng.choice([rng.randrange(5), rng.randrange(5) + 0.5]))
        if step % 10 == 0:
            expected = scan(mine, p, "score")
            low = rng.randrange(5)
            assert index.equal(low) == sorted(k for k, v in expected.items() if v == low)
            assert index.range(low, low + 2) == sorted(
                (k for k, v in expected.items() if low <= v < low + 2),
                key=lambda k: (expected[k], k),
            )


def scan(store: Store, prefix: str, field: str) -> dict[Parts, Any]:
    """What the index should hold, by reading every object."""
    store.sync()
    found = {}
    for parts in store.namespaces((prefix,)):
        ns = store.namespace(parts)
        if store.has(ns, field):
            found[parts] = store.read(ns, field)
    return found


def test_threads_writing_while_others_query(store: Store, unique: Callable[[], str]) -> None:
    p = unique()
    index = FieldIndex(store, (p,), "n")
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(100):
                put(store, (p, f"w{worker}"), "n", i)
                index.range(0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert index.equal(99) == [(p, f"w{w}") for w in range(4)]
    assert index.range(0, 99) == []


def test_close_removes_the_hook_and_the_watch(store: Store, unique: Callable[[], str]) -> None:
    p = unique()
    index = FieldIndex(store, (p,), "n")
    put(store, (p, "a"), "n", 1)
    assert index.equal(1) == [(p, "a")]
    index.close()
    index.close()  # idempotent
    with pytest.raises(StoreClosedError):
        index.equal(1)
    with pytest.raises(StoreClosedError):
        index.range(1)
    unused = FieldIndex(store, (p,), "n")
    unused.close()  # never built
    with pytest.raises(StoreClosedError):
        unused.objects()


def test_bad_arguments(store: Store) -> None:
    with pytest.raises(TypeError, match="tuple of parts"):
        FieldIndex(store, "users", "age")  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        FieldIndex(store, ("a/b",), "age")
    with pytest.raises(InvalidNameError):
        FieldIndex(store, ("users",), "")


CHILD = textwrap.dedent(
    """
    import sys
    from everstore import Sqlite3, Store

    store = Store(Sqlite3(sys.argv[1]))
    for line in sys.stdin:
        verb, name, *rest = line.split()
        ns = store.namespace(("people", name))
        if verb == "set":
            store.write(ns, "age", int(rest[0]))
        else:
            store.delete(ns, "age")
        print("ok", flush=True)
    """
)


def test_another_process_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "people.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    store = Store(Sqlite3(path))
    put(store, ("people", "ann"), "age", 30)
    ages = FieldIndex(store, ("people",), "age")
    assert ages.equal(30) == [("people", "ann")]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:

        def tell(command: str) -> None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(command + "\n")
            assert proc.stdout.readline() == "ok\n"

        tell("set bob 30")  # a namespace this process never loaded
        assert ages.equal(30) == [("people", "ann"), ("people", "bob")]
        tell("set ann 41")
        assert ages.range(31) == [("people", "ann")]
        tell("del bob")
        assert ages.equal(30) == [] and ages.range(0) == [("people", "ann")]
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    store.close()
