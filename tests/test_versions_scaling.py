"""everstore.versions: the costs that must not grow with the collection or history.

Measured by counting bytes (SQLite's own page count and the blob table's contents),
never by timing: a put adds bytes for the records it changes and the trie path to
them, not for the collection (at most the nodes of one path per put, whatever the
size); 10,000 puts into one entry add about the same bytes per thousand once the trie
has its depth; a version 10,000 back loads; and the
same set of records has the same trie root whatever order the puts came in.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from everstore.versions import DbEngine, Handlers
from versions_support import blob_rows, file_bytes, memory_engine, store_file


def record(i: int) -> dict[str, Any]:
    return {"n": i, "name": f"record number {i}", "tags": ["a", "b"]}


def build(engine: DbEngine, entry: str, size: int) -> None:
    """An entry of ``size`` records, written in put_many chunks of 1,000."""
    for start in range(0, size, 1000):
        # (annotated: put_many takes Mapping[str | int, Any], and Mapping's key type is
        # invariant, so mypy refuses a dict[str, ...] there)
        chunk: dict[str | int, Any] = {
            f"key{i:06d}": record(i) for i in range(start, min(size, start + 1000))
        }
        engine.put_many("t", "u", entry, chunk)


def cost_of_puts(engine: DbEngine, entry: str, size: int, puts: int = 200) -> tuple[float, float]:
    """Bytes per put (file, blob table) over ``puts`` single puts: half change an
    existing record spread over the key space, half add a new one."""
    path = store_file(engine)
    before = file_bytes(path), blob_rows(path)[1]
    for j in range(puts):
        key = f"key{(j * 7919) % size:06d}" if j % 2 else f"new{j:06d}"
        assert engine.put("t", "u", entry, key, {"changed": j}) is True
    after = file_bytes(path), blob_rows(path)[1]
    return (after[0] - before[0]) / puts, (after[1] - before[1]) / puts


def test_a_put_costs_bytes_for_the_change_not_the_collection(tmp_path: Path) -> None:
    costs = {}
    sizes = {}
    for size in (100, 10_000):
        with DbEngine(tmp_path / str(size), handlers=Handlers()) as engine:
            engine.init("t")
            build(engine, "records", size)
            assert engine.count("t", "records") == size
            sizes[size] = file_bytes(store_file(engine))
            costs[size] = cost_of_puts(engine, "records", size)
            assert engine.count("t", "records") == size + 100
            assert engine.verify("t", "records").ok
    small, big = costs[100], costs[10_000]
    # A put stores its change in the log and, amortized over the writes between two
    # checkpoints, at most the nodes of one path: a leaf (16 records of ~60 bytes) and
    # two or three branches (32 digests and locations each): under PATH bytes, however
    # big the collection (the small entry's puts share their few nodes: cheaper still).
    path_bytes = 12_000
    assert small[0] <= big[0] < path_bytes and big[1] < path_bytes, costs
    # and a put is a small fraction of the collection (a copy would be all of it)
    assert big[0] < 0.01 * sizes[10_000], (costs, sizes)


def test_ten_thousand_puts_into_one_entry_cost_linear_bytes(tmp_path: Path) -> None:
    with DbEngine(tmp_path, handlers=Handlers()) as engine:
        engine.init("t")
        path = store_file(engine)
        chunks: list[tuple[int, int]] = []
        previous = file_bytes(path), blob_rows(path)[1]
        for chunk in range(10):
            for i in range(chunk * 1000, chunk * 1000 + 1000):
                engine.put("t", "u", "records", i, record(i))
            now = file_bytes(path), blob_rows(path)[1]
            chunks.append((now[0] - previous[0], now[1] - previous[1]))
            previous = now
        assert engine.count("t", "records") == 10_000
        assert len(engine.history("t", "records", max_items=20_000)) == 10_000
        # Copying the collection on each put would make the last thousand cost about
        # nineteen times the first. A trie path grows with the log of the size only:
        # from 5,000 records on the trie has the depth it has at 10,000, so the bytes
        # per thousand stay level. (The first thousands cost less: while the trie is
        # small, the writes between two checkpoints share most of their nodes.)
        middle, last = chunks[4], chunks[-1]
        for measure in (0, 1):
            assert last[measure] < 1.25 * middle[measure], chunks
            assert last[measure] < 1000 * 12_000, chunks  # one path per put at most
        assert engine.get("t", "records", 0) == record(0)
        assert engine.get("t", "records", 9_999) == record(9_999)


def test_a_version_ten_thousand_back_loads() -> None:
    engine = memory_engine()
    engine.init("t")
    first = engine.save("t", "u", "e", {"version": 0})
    for version in range(1, 10_001):
        engine.save("t", "u", "e", {"version": version})
    history = engine.history("t", "e", max_items=20_000)
    assert len(history) == 10_001 and history[-1] == first
    assert engine.load("t", "e", first) == {"version": 0}
    assert engine.load("t", "e", history[5_000]) == {"version": 5_000}
    assert engine.info("t", "e", first).parent is None
    assert engine.history("t", "e", history[9_999], 3) == history[9_999:]


def test_records_ten_thousand_versions_back() -> None:
    engine = memory_engine()
    engine.init("t")
    for i in range(10_001):
        engine.put("t", "u", "r", i, i)
    oldest = engine.history("t", "r", max_items=20_000)[-1]
    assert engine.items("t", "r", oldest) == {0: 0}
    assert engine.count("t", "r") == 10_001


def root_of(engine: DbEngine, entry: str, digest: str | None = None) -> Any:
    """The trie root a record version names (``__records__``)."""
    return engine.info("t", entry, digest).records


@pytest.mark.parametrize("size", [5, 40, 3_000])
def test_the_same_records_have_the_same_root_whatever_the_order(size: int) -> None:
    engine = memory_engine()
    engine.init("t")
    keys: list[int | str] = [*range(size // 2), *(f"k{i}" for i in range(size - size // 2))]
    shuffled = list(keys)
    random.Random(size).shuffle(shuffled)
    # one entry in key order, in one version
    engine.put_many("t", "u", "ordered", {key: [key] for key in keys})
    # another one record at a time in a shuffled order, with detours: records added
    # then removed, a value changed then changed back
    for key in shuffled[:50]:
        engine.put("t", "u", "shuffled", key, [key])
    engine.put_many("t", "other", "shuffled", {key: [key] for key in shuffled[50:]})
    engine.put_many("t", "u", "shuffled", {f"extra{i}": i for i in range(20)})
    engine.put("t", "u", "shuffled", keys[0], "changed")
    engine.remove_many("t", "u", "shuffled", [f"extra{i}" for i in range(20)])
    engine.put("t", "u", "shuffled", keys[0], [keys[0]])
    assert root_of(engine, "ordered") == root_of(engine, "shuffled")
    assert engine.items("t", "ordered") == engine.items("t", "shuffled")
    assert list(engine.items("t", "shuffled")) == sorted(
        keys, key=lambda key: (type(key) is str, key)
    )
    assert engine.verify("t", "ordered").ok and engine.verify("t", "shuffled").ok
    # within one entry: the records rebuilt in reverse after a deletion
    before = engine.get_digest("t", "ordered")
    engine.delete_entry("t", "u", "ordered")
    for start in range(size, 0, -500):
        engine.put_many("t", "u", "ordered", {k: [k] for k in keys[max(0, start - 500) : start]})
    after = engine.get_digest("t", "ordered")
    assert root_of(engine, "ordered", before) == root_of(engine, "ordered", after)
    assert not engine.diff("t", "ordered", before, after)
