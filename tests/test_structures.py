"""everstore.structures in a store: the same behaviour on every backend (the ``store``
fixture runs each test on Memory, SQLite and PostgreSQL), persistence, positions, time
and context, transactions, errors, and what a push costs on disk.

appendonly's own tests, ported, are in test_structures_ported.py; real processes in
test_structures_processes.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import everstore
from everstore import Backend, ConflictError, Store, UnsupportedValueError
from everstore.structures import (
    Accumulator,
    AppendStack,
    Archive,
    ArchiveOrderError,
    StructureExistsError,
    StructureMismatchError,
)

BackendFactory = Callable[[], Backend]


def items_of(structure: Any) -> list[Any]:
    return [item for _, _, item in structure]


# -- the same on every backend -------------------------------------------------------------


def test_a_stack_in_a_store_numbers_and_prunes_as_appendonly(
    store: Store, unique: Callable[[], str]
) -> None:
    stack = AppendStack(3, 2, storage=store.storage(unique(), "stack"))
    for item in range(9):
        stack.push(item)
    assert list(stack) == [(4, 0, 8), (3, 1, 7), (3, 0, 6), (2, 1, 5), (2, 0, 4)]
    assert list(stack.newer(3, 0)) == [(4, 0, 8), (3, 1, 7)]
    assert stack.layers() == [(4, [8]), (3, [6, 7]), (2, [4, 5])]
    assert len(stack) == 5
    assert (stack.max_layers, stack.max_length) == (3, 2)


def test_stack_and_archive_in_one_store_read_as_one_stream(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    stack = AppendStack(2, 3, storage=store.storage(name, "recent"))
    archive = Archive(storage=store.storage(name, "archive"))
    for item in range(20):
        stack.push({"n": item}, archive.addLayer)
    stream = [*stack, *archive]
    assert [item["n"] for _, _, item in stream] == list(reversed(range(20)))
    assert [(g, i) for g, i, _ in stream] == [divmod(n, 3) for n in reversed(range(20))]
    assert archive.generation == 4 and len(archive) == 15 and len(stack) == 5


def test_a_reopened_store_gives_the_same_structures(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    name = unique()
    first = Store(make_backend())
    stack = AppendStack(2, 2, storage=first.storage(name, "s"))
    archive = Archive(storage=first.storage(name, "a"))
    acc = Accumulator(["x"], storage=first.storage(name, "acc"))
    for item in "abcdef":
        stack.push(item, archive.addLayer)
    acc.append("y")
    acc.consume()
    acc.append("z")

    again = Store(make_backend())  # another process, as it were
    stack2 = AppendStack(storage=again.storage(name, "s"))
    assert (stack2.max_layers, stack2.max_length) == (2, 2)
    assert list(stack2) == list(stack) == [(2, 1, "f"), (2, 0, "e"), (1, 1, "d"), (1, 0, "c")]
    assert list(Archive(storage=again.storage(name, "a"))) == [(0, 1, "b"), (0, 0, "a")]
    assert list(Accumulator(storage=again.storage(name, "acc"))) == ["z"]
    first.close()
    again.close()


def test_every_item_keeps_its_time_context_and_seq(store: Store, unique: Callable[[], str]) -> None:
    name = unique()
    stack = AppendStack(storage=store.storage(name, "s"))
    acc = Accumulator(storage=store.storage(name, "acc"))
    before = store.last_seq
    stack.push("a")
    stack.push("b")
    acc.append("c")
    here = f"{__name__}.test_every_item_keeps_its_time_context_and_seq"
    entries = [entry for _, _, entry in stack.entries()]
    assert [e.value for e in entries] == ["b", "a"]
    assert all(e.context.startswith(here + ":") for e in entries)
    assert entries[0].seq is not None and entries[1].seq is not None
    assert before < entries[1].seq < entries[0].seq
    assert entries[0].time >= entries[1].time > 0
    (appended,) = acc.entries()
    assert appended.value == "c" and appended.context.startswith(here + ":")


def test_positions_of_committed_items_never_change(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    name = unique()
    one, two = Store(make_backend()), Store(make_backend())
    stacks = [AppendStack(2, 3, storage=s.storage(name, "s")) for s in (one, two)]
    archives = [Archive(storage=s.storage(name, "a")) for s in (one, two)]
    seen: dict[str, tuple[int, int]] = {}
    for round_ in range(12):
        for k, (stack, archive) in enumerate(zip(stacks, archives, strict=True)):
            stack.push(f"{k}-{round_}", archive.addLayer)
        for stack, archive in zip(stacks, archives, strict=True):
            for generation, index, item in [*stack, *archive]:
                assert seen.setdefault(item, (generation, index)) == (generation, index)
    assert len(seen) == 24
    assert sorted(seen.values()) == [divmod(n, 3) for n in range(24)]
    one.close()
    two.close()


def test_pushes_in_a_transaction_commit_with_the_other_writes(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    stack = AppendStack(1, 2, storage=store.storage(name, "s"))
    archive = Archive(storage=store.storage(name, "a"))
    doc = store.storage(name, "doc")
    with store.transaction():
        stack.push("a", archive.addLayer)
        stack.push("b", archive.addLayer)
        stack.push("c", archive.addLayer)
        doc.title = "three pushed"
        assert list(stack) == []  # a view shows what is committed
    # pruned as the transaction committed, in it: the layer its pushes filled included
    assert items_of(stack) == ["c"] and items_of(archive) == ["b", "a"]
    # one commit: the items, in one batch, and the title, with one time
    (_, _, pushed), *_ = stack.entries()
    titled = store.history(store.namespace((name, "doc")), "title")[-1]
    assert pushed.time == titled.time and abs(pushed.seq - titled.seq) < 6  # type: ignore[operator]
    with store.transaction():
        stack.push("d", archive.addLayer)
        stack.push("e", archive.addLayer)
        assert items_of(stack) == ["c"]  # a view shows what is committed
    assert items_of(stack) == ["e"] and items_of(archive) == ["d", "c", "b", "a"]
    with pytest.raises(RuntimeError, match="rolled back"), store.transaction():
        stack.push("f", archive.addLayer)
        doc.title = "never"
        raise RuntimeError("rolled back")
    assert items_of(stack) == ["e"] and doc.title == "three pushed"


def test_a_pruner_that_raises_leaves_the_layer_in_the_stack(
    store: Store, unique: Callable[[], str]
) -> None:
    stack = AppendStack(1, 2, storage=store.storage(unique(), "s"))
    calls: list[tuple[int, list[Any]]] = []

    def failing(generation: int, items: list[Any]) -> None:
        calls.append((generation, list(items)))
        raise OSError("archive offline")

    stack.push("a")
    stack.push("b")
    with pytest.raises(OSError, match="archive offline"):
        stack.push("c", failing)
    assert items_of(stack) == ["c", "b", "a"]  # nothing lost
    kept: list[tuple[int, list[Any]]] = []
    stack.push("d", lambda generation, items: kept.append((generation, list(items))))
    assert calls == [(0, ["a", "b"])] and kept == [(0, ["a", "b"])]
    assert items_of(stack) == ["d", "c"]


def test_without_a_pruner_the_stack_drops_layers_but_the_log_keeps_them(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    stack = AppendStack(1, 2, storage=store.storage(name, "s"))
    for item in range(5):
        stack.push(item)
    assert items_of(stack) == [4]
    history = store.history(store.namespace((name, "s")), "item")
    assert history.values() == [[[0]], [[1]], [[2]], [[3]], [[4]]]  # batches of one


def test_an_accumulator_consumes_each_item_once_between_stores(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    name = unique()
    one, two = Store(make_backend()), Store(make_backend())
    mine = Accumulator(storage=one.storage(name, "acc"))
    theirs = Accumulator(storage=two.storage(name, "acc"))
    mine.extend([1, 2])
    theirs.append(3)
    assert len(mine) == 3 and list(theirs) == [1, 2, 3]
    assert theirs.consume() == [1, 2, 3]
    assert mine.consume() == [] and len(mine) == 0
    mine.append(4)
    # a consume inside a transaction that another consumer beats to the items fails
    # at commit, and the items are theirs alone
    with pytest.raises(ConflictError), one.transaction():
        taken = mine.consume()
        assert taken == [4]
        assert theirs.consume() == [4]
    assert mine.consume() == [] and theirs.consume() == []
    one.close()
    two.close()


def test_consume_inside_a_transaction_leaves_that_transactions_appends(
    store: Store, unique: Callable[[], str]
) -> None:
    acc = Accumulator([1], storage=store.storage(unique(), "acc"))
    with store.transaction():
        acc.append(2)
        assert acc.consume() == [1]
    assert list(acc) == [2]


# -- errors ------------------------------------------------------------------------------------


def test_bad_arguments_raise_typed_errors_and_write_nothing(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    storage = store.storage(name, "s")
    last = store.last_seq
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_layers is an int >= 1"):
            AppendStack(bad, storage=storage)
    for wrong in ("3", 2.0, True):
        with pytest.raises(TypeError, match="max_length is an int >= 1"):
            AppendStack(max_length=wrong, storage=storage)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="storage= takes an everstore Storage"):
        AppendStack(storage=store)  # type: ignore[arg-type]
    assert store.last_seq == last

    stack = AppendStack(2, 2, storage=storage)
    with pytest.raises(TypeError, match="pruner is a callable"):
        stack.push("x", pruner="archive")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedValueError, match="cannot store a value of type object"):
        stack.push(object())
    with store.transaction():  # refused at the push: the transaction goes on without it
        with pytest.raises(UnsupportedValueError, match="field 'item' of namespace"):
            stack.push({"bad": object()})
        stack.push("fine")
    assert items_of(stack) == ["fine"]
    stack = AppendStack(2, 2, storage=store.storage(name, "s2"))
    with pytest.raises(TypeError, match="latest_gen is an int"):
        list(stack.newer("0", 0))  # type: ignore[arg-type]
    assert list(stack) == []


def test_a_storage_holds_one_kind_of_structure_with_one_set_of_sizes(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    AppendStack(2, 5, storage=store.storage(name, "s"))
    with pytest.raises(StructureMismatchError, match=r"max_layers=2 \(asked for 3\)"):
        AppendStack(3, storage=store.storage(name, "s"))
    with pytest.raises(StructureMismatchError, match="holds 'AppendStack', not an Archive"):
        Archive(storage=store.storage(name, "s"))
    assert AppendStack(max_length=5, storage=store.storage(name, "s")).max_layers == 2
    Accumulator(storage=store.storage(name, "acc"))
    with pytest.raises(StructureExistsError, match="already holds an Accumulator"):
        Accumulator([1], storage=store.storage(name, "acc"))
    assert list(Accumulator(storage=store.storage(name, "acc"))) == []


def test_archive_refuses_an_older_generation_and_a_value_it_cannot_store(
    store: Store, unique: Callable[[], str]
) -> None:
    archive = Archive(storage=store.storage(unique(), "a"))
    archive.addLayer(2, iter(["a", "b"]))
    with pytest.raises(ArchiveOrderError, match="generation 2 is not above 2"):
        archive.addLayer(2, ["c"])
    with pytest.raises(ValueError):
        archive.addLayer(1, ["c"])
    with pytest.raises(UnsupportedValueError):
        archive.addLayer(3, [object()])
    with pytest.raises(TypeError, match="generation is an int"):
        archive.addLayer(None, [])  # type: ignore[arg-type]
    assert list(archive) == [(2, 1, "b"), (2, 0, "a")] and archive.generation == 2


def test_an_archive_in_another_store_keeps_copies(store: Store, unique: Callable[[], str]) -> None:
    name = unique()
    elsewhere = Store()
    stack = AppendStack(1, 2, storage=store.storage(name, "s"))
    other_stack = AppendStack(1, 2, storage=store.storage(name, "s2"))
    archive = Archive(storage=elsewhere.storage(name, "a"))
    in_memory = Archive()
    for item in "abcdefghi":
        stack.push(item, archive.addLayer)
        other_stack.push(item, in_memory.addLayer)
    assert items_of(archive) == items_of(in_memory) == list("hgfedcba")


# -- on disk -----------------------------------------------------------------------------------


def _file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages * size)


@pytest.mark.parametrize("structure", ["stack", "accumulator", "stack, a commit per push"])
def test_a_small_item_costs_at_most_150_bytes_on_sqlite(tmp_path: Path, structure: str) -> None:
    path = tmp_path / "s.db"
    store = everstore.open(path)
    stack = AppendStack(storage=store.storage("app", "recent"))
    archive = Archive(storage=store.storage("app", "archive"))
    acc = Accumulator(storage=store.storage("app", "pending"))
    before = _file_bytes(path)
    count = 5_000
    per_commit = 1 if structure.endswith("push") else 500
    for start in range(0, count, per_commit):
        with store.transaction():
            for i in range(start, start + per_commit):
                item = {"i": i, "name": f"n{i}", "v": i / 7}
                if structure.startswith("stack"):
                    stack.push(item, archive.addLayer)
                else:
                    acc.append(item)
    per_item = (_file_bytes(path) - before) / count
    assert per_item <= 150, per_item
    if structure.startswith("stack"):
        assert len(stack) + len(archive) == count
    store.close()


def test_an_archive_keeps_what_a_pruner_hands_it_even_when_changed_in_place(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    stack = AppendStack(1, 2, storage=store.storage(name, "s"))
    archive = Archive(storage=store.storage(name, "a"))

    def redact(generation: int, items: list[Any]) -> None:
        for item in items:
            item.pop("secret")
        del items[0]
        archive.addLayer(generation, items)

    for n in range(5):
        stack.push({"n": n, "secret": "s3cr3t"}, redact)
    assert items_of(archive) == [{"n": 3}, {"n": 1}]
    assert items_of(stack) == [{"n": 4, "secret": "s3cr3t"}]


def test_two_transactions_pruning_the_same_layer_archive_it_once(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    name = unique()
    one, two = Store(make_backend()), Store(make_backend())
    stacks = [AppendStack(1, 2, storage=s.storage(name, "s")) for s in (one, two)]
    archives = [Archive(storage=s.storage(name, "a")) for s in (one, two)]
    stacks[0].push(0, archives[0].addLayer)
    stacks[0].push(1, archives[0].addLayer)

    def other_writer_commits_first() -> None:
        with two.transaction():
            stacks[1].push("b", archives[1].addLayer)

    with one.transaction():
        stacks[0].push("a", archives[0].addLayer)
        # after this transaction pruned layer 0 (as it commits), and before it commits,
        # another writer's transaction does the same, and commits first
        one.before_commit(other_writer_commits_first)
    batches = one.history(one.namespace((name, "a")), "item").values()
    assert [layer for batch in batches for layer in batch[0]] == [
        [0, {"stack": [name, "s"], "start": 0, "stop": 2}]
    ] * 2  # layer 0, recorded by both
    for stack, archive in zip(stacks, archives, strict=True):
        assert list(stack) == [(1, 1, "a"), (1, 0, "b")]
        assert list(archive) == [(0, 1, 1), (0, 0, 0)]  # once
        assert archive.generation == 0 and len(archive) == 2
    one.close()
    two.close()


def test_pushes_of_a_block_rolled_back_do_not_count_for_pruning(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    stack = AppendStack(1, 2, storage=store.storage(name, "s"))
    archive = Archive(storage=store.storage(name, "a"))
    with store.transaction():
        stack.push("a", archive.addLayer)
        with pytest.raises(LookupError), store.transaction():
            stack.push("b", archive.addLayer)
            stack.push("c", archive.addLayer)
            raise LookupError("undone")
    assert items_of(stack) == ["a"] and items_of(archive) == []
    with store.transaction():
        for item in "bcd":
            stack.push(item, archive.addLayer)
    assert items_of(stack) == ["d", "c"] and items_of(archive) == ["b", "a"]


def test_items_pushed_together_keep_each_its_own_code_location(
    store: Store, unique: Callable[[], str]
) -> None:
    acc = Accumulator(storage=store.storage(unique(), "acc"))

    def from_a_helper(item: str) -> None:
        acc.append(item)

    with store.transaction():
        acc.append("a")
        acc.append("b")
        from_a_helper("c")
        acc.extend(["d"])
    here = f"{__name__}.test_items_pushed_together_keep_each_its_own_code_location:"
    helper = f"{__name__}.from_a_helper:"
    entries = list(acc.entries())
    assert [e.value for e in entries] == ["a", "b", "c", "d"]
    assert [e.context.split(":")[0] + ":" for e in entries] == [here, here, helper, here]
    assert len({e.context for e in entries}) == 4  # four lines
    assert len({(e.time, e.seq) for e in entries}) == 1  # one commit, one fact
