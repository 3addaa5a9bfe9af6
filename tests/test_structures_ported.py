"""appendonly 1.2's 81 tests, ported to everstore.structures as specifications.

Written from the facts appendonly's tests specify (not from their code). Each
appendonly test has one test here, or one case of a parametrized test, whose
docstring or comment names it; docs/migrating-from-appendonly.md has the full table.

- Behaviour (iteration order, ``newer``, layers, pruning, Archive order, Accumulator)
  runs in memory, where everstore keeps appendonly's exact behaviour and the objects
  themselves (identity kept: ``object()`` items compare by identity).
- Internals (``_Layer``, ``_ArchiveLayer``, ``__getstate__``/``__setstate__``, private
  attributes, zope.interface checks) are ported to their public equivalent: a layer is
  what ``AppendStack.layers()`` or ``Archive`` iteration shows, a state is
  ``(max_layers, max_length, layers())`` built by pushes, an interface is a check of
  the public signatures.
- The 26 ``_p_resolveConflict`` tests (7 AppendStack, 2 Archive, 17 Accumulator) become
  two writers on one database (two Stores: a shared Memory, an SQLite file, a
  PostgreSQL schema): writer N's transaction reads the *old* state, writer C commits
  meanwhile, then N commits (see :class:`Race`). Where appendonly raised ConflictError
  or lost data, everstore's behaviour is asserted and the difference stated.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, takewhile
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

import everstore
from everstore import ConflictError, Memory, Store
from everstore.structures import (
    Accumulator,
    AppendStack,
    Archive,
    ArchiveOrderError,
    StructureMismatchError,
)

T = TypeVar("T")
Triple = tuple[int, int, Any]


def objects(count: int) -> list[object]:
    """Distinct items that compare by identity only."""
    return [object() for _ in range(count)]


def newer_than(stream: Iterable[Triple], generation: int, index: int) -> list[Triple]:
    """The prefix of a newest-first ``(generation, index, item)`` stream that is newer
    than ``(generation, index)``: ``AppendStack.newer``'s cursor, for an Archive (which
    has no ``newer``) or a stack followed by its archive."""
    return list(takewhile(lambda t: (t[0], t[1]) > (generation, index), stream))


# -- two writers on one database -----------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def writers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Writers C and N: two Stores on one database, as two processes would have."""
    stores: tuple[Store, Store]
    if request.param == "memory":
        shared = Memory()
        stores = Store(shared), Store(shared)
    elif request.param == "sqlite":
        path = tmp_path / "app.db"
        stores = everstore.open(path), everstore.open(path)
    else:
        from everstore.backends.postgresql import PostgreSQL

        conninfo, schema = request.getfixturevalue("pg_schema")
        stores = (
            Store(PostgreSQL(conninfo, schema=schema)),
            Store(PostgreSQL(conninfo, schema=schema)),
        )
    yield stores
    for store in stores:
        store.close()


class Race(Generic[T]):
    """appendonly's old/committed/new situation, made real: writer N runs ``n_work``
    as a transaction (``store.transact``), so it reads the old state; writer C runs
    ``c_work`` (committing it) after N's work and before N commits, on N's first run
    only. N re-runs if its commit conflicts, as ``transact`` does; :attr:`runs` says
    how many runs it took."""

    def __init__(self, writer_n: Store, c_work: Callable[[], object]) -> None:
        self.writer_n = writer_n
        self.c_work = c_work
        self.runs = 0

    def run(self, n_work: Callable[[], T]) -> T:
        def transaction() -> T:
            self.runs += 1
            result = n_work()
            if self.runs == 1:
                self.c_work()
            return result

        return self.writer_n.transact(transaction)


@dataclass
class Side:
    """One writer's handles on the shared stack and its archive."""

    stack: AppendStack
    archive: Archive

    def push(self, *items: Any) -> None:
        for item in items:
            self.stack.push(item, self.archive.addLayer)

    def stream(self) -> list[Any]:
        """Every item, newest first: the stack, then its archive."""
        return [item for _, _, item in chain(self.stack, self.archive)]

    def archived_generations(self) -> list[int]:
        return [generation for generation, index, _ in self.archive if index == 0]


def old_stack(
    writers: tuple[Store, Store], max_layers: int = 2, max_length: int = 3, pushes: int = 10
) -> tuple[Side, Side]:
    """The resolution tests' old state: ``AppendStack(2, 3)`` holding 0..9, i.e.
    ``[(3, [9]), (2, [6, 7, 8])]``, generations 0 and 1 archived; as C and N see it."""
    writer_c, writer_n = writers
    c = Side(
        AppendStack(max_layers, max_length, storage=writer_c.storage("app", "recent")),
        Archive(storage=writer_c.storage("app", "archive")),
    )
    c.push(*range(pushes))
    n = Side(
        AppendStack(storage=writer_n.storage("app", "recent")),
        Archive(storage=writer_n.storage("app", "archive")),
    )
    return c, n


# == LayerTests: appendonly's _Layer, seen through AppendStack.layers() and iteration ==


def test_layer_ctor_defaults() -> None:
    """LayerTests.test_ctor_defaults: a new stack has one empty layer (a list) of
    generation 0, holding up to 100 items."""
    stack = AppendStack()
    assert stack.max_length == 100
    assert stack.layers() == [(0, [])]
    assert type(stack.layers()[0][1]) is list


def test_layer_ctor_w_positional() -> None:
    """LayerTests.test_ctor_w_positional: _Layer(4, 14) was (max_length, generation);
    AppendStack's positional arguments are (max_layers, max_length), so
    AppendStack(4, 14) is checked, pushed until its newest layer is generation 14."""
    stack = AppendStack(4, 14)
    assert (stack.max_layers, stack.max_length) == (4, 14)
    for item in range(14 * 14 + 1):
        stack.push(item)
    assert [generation for generation, _ in stack.layers()] == [14, 13, 12, 11]
    assert stack.layers()[0] == (14, [196])


def test_layer_ctor_w_max_length() -> None:
    """LayerTests.test_ctor_w_max_length: a layer of max_length 14 holds 14 items; the
    15th opens the next layer."""
    stack = AppendStack(max_length=14)
    for item in range(15):
        stack.push(item)
    assert stack.layers() == [(1, [14]), (0, list(range(14)))]


def test_layer_ctor_w_generation() -> None:
    """LayerTests.test_ctor_w_generation: a layer of generation 12 (no constructor
    makes one: it is the 13th layer a stack opens)."""
    stack = AppendStack(max_layers=1, max_length=1)
    for item in range(13):
        stack.push(item)
    assert stack.layers() == [(12, [12])]


def test_layer_iter_empty() -> None:
    """LayerTests.test___iter___empty: the empty first layer yields nothing."""
    stack = AppendStack()
    assert stack.layers()[0] == (0, [])
    assert list(stack) == []


def test_layer_newer_empty() -> None:
    """LayerTests.test_newer_empty: nothing in an empty layer is newer even than the
    position before its first item, (0, -1); once pushed, the item is."""
    stack = AppendStack()
    assert list(stack.newer(0, -1)) == []
    item = object()
    stack.push(item)
    assert list(stack.newer(0, -1)) == [(0, 0, item)]


def test_layer_iter_filled() -> None:
    """LayerTests.test___iter___filled: a layer yields its items newest first, with
    their index in the layer."""
    one, two, three = objects(3)
    stack = AppendStack()
    for item in (one, two, three):
        stack.push(item)
    assert list(stack) == [(0, 2, three), (0, 1, two), (0, 0, one)]


def test_layer_newer_miss() -> None:
    """LayerTests.test_newer_miss: nothing is newer than a layer's newest item (here
    the first item of generation 1)."""
    stack = AppendStack(max_length=3)
    for item in objects(4):
        stack.push(item)
    assert list(stack.newer(1, 0)) == []


def test_layer_newer_hit() -> None:
    """LayerTests.test_newer_hit: newer than index 0 of a layer of three is indexes 2
    and 1, newest first (here within generation 1)."""
    items = objects(6)
    stack = AppendStack(max_length=3)
    for item in items:
        stack.push(item)
    assert list(stack.newer(1, 0)) == [(1, 2, items[5]), (1, 1, items[4])]


def test_layer_push_one() -> None:
    """LayerTests.test_push_one: the pushed object itself is in the layer."""
    item = object()
    stack = AppendStack()
    stack.push(item)
    assert stack.layers() == [(0, [item])]
    assert stack.layers()[0][1][0] is item


def test_layer_push_many() -> None:
    """LayerTests.test_push_many: a layer keeps its items oldest first."""
    items = objects(3)
    stack = AppendStack()
    for item in items:
        stack.push(item)
    assert stack.layers() == [(0, items)]


def test_layer_push_overflow_opens_a_new_layer() -> None:
    """LayerTests.test_push_overflow: appendonly's full _Layer refused a third push
    (ValueError) and its stack then opened a new layer. everstore has no layer object
    that refuses: the stack opens generation 1, and the full layer is unchanged."""
    one, two, three = objects(3)
    stack = AppendStack(max_length=2)
    for item in (one, two, three):
        stack.push(item)
    assert stack.layers() == [(1, [three]), (0, [one, two])]
    assert list(stack) == [(1, 0, three), (0, 1, two), (0, 0, one)]


# == AppendStackTests ==================================================================


def _check_appendstack_interface(target: type[AppendStack] | AppendStack) -> None:
    """IAppendStack's three methods, with appendonly's parameter names and defaults."""
    bound = not inspect.isclass(target)
    push = inspect.signature(target.push)
    newer = inspect.signature(target.newer)
    iterate = inspect.signature(target.__iter__)
    self_ = [] if bound else ["self"]
    assert list(push.parameters) == [*self_, "obj", "pruner"]
    assert push.parameters["pruner"].default is None
    assert list(newer.parameters) == [*self_, "latest_gen", "latest_index"]
    assert list(iterate.parameters) == self_


def test_stack_class_has_the_appendstack_interface() -> None:
    """AppendStackTests.test_class_conforms_to_IAppendStack: zope.interface's
    verifyClass becomes a check of the class's public signatures (everstore declares no
    zope interfaces)."""
    _check_appendstack_interface(AppendStack)


def test_stack_instance_has_the_appendstack_interface() -> None:
    """AppendStackTests.test_instance_conforms_to_IAppendStack: verifyObject becomes
    the same check on an instance's bound methods, and iter() works on it."""
    stack = AppendStack()
    _check_appendstack_interface(stack)
    assert list(iter(stack)) == []


def test_stack_ctor_defaults() -> None:
    """AppendStackTests.test_ctor_defaults: 10 layers of 100 items."""
    stack = AppendStack()
    assert (stack.max_layers, stack.max_length) == (10, 100)


def test_stack_ctor_w_max_layers() -> None:
    """AppendStackTests.test_ctor_w_max_layers."""
    assert AppendStack(max_layers=37).max_layers == 37


def test_stack_ctor_w_max_length() -> None:
    """AppendStackTests.test_ctor_w_max_length."""
    assert AppendStack(max_length=14).max_length == 14


def test_stack_iter_empty() -> None:
    """AppendStackTests.test___iter___empty."""
    stack = AppendStack()
    assert list(stack) == []
    assert len(stack) == 0


def test_stack_newer_empty() -> None:
    """AppendStackTests.test_newer_empty."""
    assert list(AppendStack().newer(0, 0)) == []


def test_stack_newer_miss() -> None:
    """AppendStackTests.test_newer_miss: nothing is newer than the only item."""
    stack = AppendStack()
    stack.push(object())
    assert list(stack.newer(0, 0)) == []


def test_stack_newer_hit() -> None:
    """AppendStackTests.test_newer_hit."""
    one, two, three = objects(3)
    stack = AppendStack()
    for item in (one, two, three):
        stack.push(item)
    assert list(stack.newer(0, 0)) == [(0, 2, three), (0, 1, two)]


def test_stack_newer_hit_across_layers() -> None:
    """AppendStackTests.test_newer_hit_across_layers."""
    one, two, three = objects(3)
    stack = AppendStack(max_length=2)
    for item in (one, two, three):
        stack.push(item)
    assert list(stack.newer(0, 0)) == [(1, 0, three), (0, 1, two)]


def test_stack_push_one() -> None:
    """AppendStackTests.test_push_one: one item, one layer (``len(_layers)`` becomes
    ``len(layers())``)."""
    item = object()
    stack = AppendStack()
    stack.push(item)
    assert list(stack) == [(0, 0, item)]
    assert len(stack.layers()) == 1


def test_stack_push_many() -> None:
    """AppendStackTests.test_push_many: the third push into layers of two opens
    generation 1, listed before generation 0."""
    one, two, three = objects(3)
    stack = AppendStack(max_length=2)
    for item in (one, two, three):
        stack.push(item)
    assert list(stack) == [(1, 0, three), (0, 1, two), (0, 0, one)]
    assert [generation for generation, _ in stack.layers()] == [1, 0]


def test_stack_push_trimming_layers() -> None:
    """AppendStackTests.test_push_trimming_layers: 1,001 pushes into 4 layers of 100
    leave 301 items, (10, 0, 1000) the newest and (7, 0, 700) the oldest."""
    stack = AppendStack(max_layers=4)
    for item in range(1001):
        stack.push(item)
    found = list(stack)
    assert len(found) == 301 == len(stack)
    assert found[0] == (10, 0, 1000)
    assert found[-1] == (7, 0, 700)
    assert [generation for generation, _ in stack.layers()] == [10, 9, 8, 7]


def test_stack_push_trimming_layers_with_archive_utility() -> None:
    """AppendStackTests.test_push_trimming_layers_with_archive_utility: the pruner
    gets generations 0 to 6, oldest first, each with its 100 items oldest first."""
    pruned: dict[int, list[Any]] = {}

    def prune(generation: int, items: list[Any]) -> None:
        pruned[generation] = items

    stack = AppendStack(max_layers=4)
    for item in range(1001):
        stack.push(item, pruner=prune)
    found = list(stack)
    assert len(found) == 301
    assert found[0] == (10, 0, 1000)
    assert found[-1] == (7, 0, 700)
    assert [generation for generation, _ in stack.layers()] == [10, 9, 8, 7]
    assert list(pruned) == list(range(7))
    for generation in range(7):
        assert pruned[generation] == list(range(generation * 100, (generation + 1) * 100))


def test_stack_state_empty() -> None:
    """AppendStackTests.test___getstate___empty: appendonly's pickled state
    ``(max_layers, max_length, [(generation, items)])``, from the public properties."""
    stack = AppendStack()
    assert (stack.max_layers, stack.max_length, stack.layers()) == (10, 100, [(0, [])])


def test_stack_state_filled() -> None:
    """AppendStackTests.test___getstate___filled."""
    stack = AppendStack(2, 3)
    for item in range(10):
        stack.push(item)
    state = (stack.max_layers, stack.max_length, stack.layers())
    assert state == (2, 3, [(3, [9]), (2, [6, 7, 8])])


def test_stack_state_built_by_pushes() -> None:
    """AppendStackTests.test___setstate___: everstore has no __setstate__ (a stored
    stack is reopened from its store: see test_stack_state_reloaded_by_another_writer);
    the state ``(2, 3, [(3, [9]), (2, [6, 7, 8])])`` is built by pushes."""
    stack = AppendStack(2, 3)
    for item in range(10):
        stack.push(item)
    assert (stack.max_layers, stack.max_length) == (2, 3)
    assert list(stack) == [(3, 0, 9), (2, 2, 8), (2, 1, 7), (2, 0, 6)]


def test_stack_concurrent_mismatched_max_layers(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_mismatched_max_layers: appendonly
    raised ConflictError when N's max_layers differed, and (its check compared N with
    itself) missed a committed state with another max_layers. everstore stores the
    sizes once: a writer asking for others, N or C, gets StructureMismatchError (a
    ValueError) at once, and nothing is written."""
    writer_c, writer_n = writers
    c, _ = old_stack(writers)
    before = writer_c.last_seq
    for writer in (writer_n, writer_c):
        with pytest.raises(StructureMismatchError, match="max_layers=2"):
            AppendStack(3, 3, storage=writer.storage("app", "recent"))
    assert writer_n.last_seq == before
    reopened = AppendStack(storage=writer_n.storage("app", "recent"))
    assert (reopened.max_layers, reopened.max_length) == (2, 3)
    assert reopened.layers() == c.stack.layers() == [(3, [9]), (2, [6, 7, 8])]


def test_stack_concurrent_mismatched_max_length(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_mismatched_max_length: appendonly
    raised ConflictError. In everstore two writers creating the stack at once with
    other max_length: N's transaction creates (2, 4) and pushes, C commits (2, 3)
    first; N's commit conflicts, and its re-run gets StructureMismatchError (a
    ValueError): none of N's pushes is written, C's stack is intact."""
    writer_c, writer_n = writers

    def create_c() -> None:
        stack = AppendStack(2, 3, storage=writer_c.storage("app", "recent"))
        stack.push("c")

    def create_n() -> None:
        stack = AppendStack(2, 4, storage=writer_n.storage("app", "recent"))
        stack.push("n")

    race: Race[None] = Race(writer_n, create_c)
    with pytest.raises(StructureMismatchError, match="max_length=3"):
        race.run(create_n)
    assert race.runs == 2
    stack = AppendStack(storage=writer_n.storage("app", "recent"))
    assert (stack.max_layers, stack.max_length) == (2, 3)
    assert list(stack) == [(0, 0, "c")]


def test_stack_concurrent_committed_pruned_past_old(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_old_latest_commited_earliest: C pushed
    and pruned past N's base layer (its newest layer became generation 5), N pushed one:
    appendonly raised ConflictError ('Committed obsoletes old'). everstore: no
    conflict, N's item follows C's, every pruned layer is archived once, none lost."""
    c, n = old_stack(writers)
    race: Race[None] = Race(writers[1], lambda: c.push(*range(10, 16)))
    race.run(lambda: n.push(16))
    assert race.runs == 1
    assert n.stack.layers() == c.stack.layers() == [(5, [15, 16]), (4, [12, 13, 14])]
    assert n.stream() == c.stream() == list(range(16, -1, -1))
    assert n.archived_generations() == [3, 2, 1, 0]


def test_stack_concurrent_new_pruned_past_old(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_old_latest_new_earliest: N pushed and
    pruned past the base layer while C pushed one: appendonly raised ConflictError
    ('New obsoletes old'). everstore: no conflict, C's item keeps its position (3, 1),
    N's six follow it, N's commit prunes generations 2 and 3 into the archive."""
    c, n = old_stack(writers)
    race: Race[None] = Race(writers[1], lambda: c.push(10))
    race.run(lambda: n.push(*range(11, 17)))
    assert race.runs == 1
    assert n.stack.layers() == c.stack.layers() == [(5, [15, 16]), (4, [12, 13, 14])]
    assert n.stream() == c.stream() == list(range(16, -1, -1))
    assert (3, 1, 10) in list(n.archive)
    assert n.archived_generations() == [3, 2, 1, 0]


def test_stack_concurrent_no_added_layers(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_no_added_layers: C pushed 10, N
    pushed 11 into the same layer: merged [(3, [9, 10, 11]), (2, [6, 7, 8])], as in
    appendonly, without a merge: N's push is simply after C's in the log."""
    c, n = old_stack(writers)
    race: Race[None] = Race(writers[1], lambda: c.push(10))
    race.run(lambda: n.push(11))
    assert race.runs == 1
    assert n.stack.layers() == c.stack.layers() == [(3, [9, 10, 11]), (2, [6, 7, 8])]
    assert n.stream() == list(range(11, -1, -1))


def test_stack_concurrent_added_committed_layer(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_added_committed_layer: C pushed 10,
    11, 12 (opening generation 4, pruning 2), N pushed 13: merged [(4, [12, 13]),
    (3, [9, 10, 11])], as in appendonly; generation 2 is in the archive once."""
    c, n = old_stack(writers)
    race: Race[None] = Race(writers[1], lambda: c.push(10, 11, 12))
    race.run(lambda: n.push(13))
    assert race.runs == 1
    assert n.stack.layers() == c.stack.layers() == [(4, [12, 13]), (3, [9, 10, 11])]
    assert n.stream() == list(range(13, -1, -1))
    assert n.archived_generations() == [2, 1, 0]


def test_stack_concurrent_added_new_layer(writers: tuple[Store, Store]) -> None:
    """* AppendStackTests.test__p_resolveConflict_added_new_layer: C pushed 10, N
    pushed 11 to 14 (opening generation 4): merged [(4, [12, 13, 14]),
    (3, [9, 10, 11])], as in appendonly. appendonly moved N's items (11 was at (3, 1)
    in N's view, (3, 2) after the merge); in everstore an item has a position only
    once committed, and it never changes: C's 10 stays at (3, 1)."""
    c, n = old_stack(writers)
    race: Race[None] = Race(writers[1], lambda: c.push(10))
    race.run(lambda: n.push(11, 12, 13, 14))
    assert race.runs == 1
    assert n.stack.layers() == c.stack.layers() == [(4, [12, 13, 14]), (3, [9, 10, 11])]
    assert (3, 1, 10) in list(c.stack)
    assert n.archived_generations() == [2, 1, 0]


def test_stack_concurrent_pruning_keeps_every_item(writers: tuple[Store, Store]) -> None:
    """Beyond the 81 (research notes, §1.1 rule 4): appendonly lost items when a merge
    had to prune (0, 1, 2 committed in AppendStack(2, 2) + Archive; C pushed c3, N
    pushed n4 to n6: 2 and c3 ended in neither stack nor archive). everstore keeps
    every item, each in the stack or the archive, exactly once."""
    c, n = old_stack(writers, max_layers=2, max_length=2, pushes=3)
    race: Race[None] = Race(writers[1], lambda: c.push("c3"))
    race.run(lambda: n.push("n4", "n5", "n6"))
    assert n.stream() == c.stream() == ["n6", "n5", "n4", "c3", 2, 1, 0]
    assert n.stack.layers() == [(3, ["n6"]), (2, ["n4", "n5"])]
    assert n.archived_generations() == [1, 0]


def test_stack_state_reloaded_by_another_writer(writers: tuple[Store, Store]) -> None:
    """Beyond the 81 (the stored counterpart of __setstate__): a stack pushed by C is
    reopened by N with its own sizes and layers; items are decoded copies there."""
    writer_c, writer_n = writers
    stack_c = AppendStack(2, 3, storage=writer_c.storage("app", "recent"))
    for item in range(10):
        stack_c.push({"i": item})
    stack_n = AppendStack(storage=writer_n.storage("app", "recent"))
    assert (stack_n.max_layers, stack_n.max_length) == (2, 3)
    assert [(g, i, item["i"]) for g, i, item in stack_n] == [
        (3, 0, 9),
        (2, 2, 8),
        (2, 1, 7),
        (2, 0, 6),
    ]


# == ArchiveLayerTests: appendonly's _ArchiveLayer, seen through Archive ===============


def test_archive_layer_ctor_defaults() -> None:
    """ArchiveLayerTests.test_ctor_defaults: the layer a default stack prunes first is
    generation 0 with 100 items."""
    archive = Archive()
    stack = AppendStack(max_layers=1)
    for item in range(101):
        stack.push(item, archive.addLayer)
    assert archive.generation == 0
    assert len(archive) == 100
    assert [(g, i) for g, i, _ in archive] == [(0, i) for i in range(99, -1, -1)]


def test_archive_layer_ctor_w_positional() -> None:
    """ArchiveLayerTests.test_ctor_w_positional: an archived layer of max_length 4 and
    generation 14 (pruned from a stack of layers of 4)."""
    archive = Archive()
    stack = AppendStack(1, 4)
    for item in range(15 * 4 + 1):
        stack.push(item, archive.addLayer)
    assert archive.generation == 14
    assert list(archive)[:4] == [(14, 3, 59), (14, 2, 58), (14, 1, 57), (14, 0, 56)]
    assert list(archive)[4] == (13, 3, 55)


def test_archive_layer_ctor_w_max_length() -> None:
    """ArchiveLayerTests.test_ctor_w_max_length: a layer pruned from a stack with
    max_length 14 holds 14 items."""
    archive = Archive()
    stack = AppendStack(max_layers=1, max_length=14)
    for item in range(15):
        stack.push(item, archive.addLayer)
    assert len(archive) == 14
    assert [item for _, _, item in archive] == list(range(13, -1, -1))


def test_archive_layer_ctor_w_generation() -> None:
    """ArchiveLayerTests.test_ctor_w_generation: a layer added as generation 12."""
    archive = Archive()
    archive.addLayer(12, ["x"])
    assert archive.generation == 12
    assert list(archive) == [(12, 0, "x")]


def test_archive_layer_iter_empty() -> None:
    """ArchiveLayerTests.test___iter___empty: an empty layer yields nothing but counts
    as the newest generation."""
    archive = Archive()
    archive.addLayer(0, [])
    assert list(archive) == []
    assert (archive.generation, len(archive)) == (0, 0)


def test_archive_layer_newer_empty() -> None:
    """ArchiveLayerTests.test_newer_empty: Archive has no ``newer`` (appendonly's
    _ArchiveLayer.newer was unused by its Archive); the same cursor over the archive's
    newest-first iteration finds nothing in an empty layer."""
    archive = Archive()
    archive.addLayer(0, [])
    assert newer_than(archive, 0, 0) == []


def test_archive_layer_is_persistent(writers: tuple[Store, Store]) -> None:
    """ArchiveLayerTests.test_is_persistent: ``issubclass(_ArchiveLayer, Persistent)``
    becomes: an archive in a store keeps its layers, and another writer reads them."""
    writer_c, writer_n = writers
    Archive(storage=writer_c.storage("app", "archive")).addLayer(0, ["a", "b"])
    archive = Archive(storage=writer_n.storage("app", "archive"))
    assert archive.generation == 0
    assert list(archive) == [(0, 1, "b"), (0, 0, "a")]


def test_archive_layer_from_layer() -> None:
    """ArchiveLayerTests.test_fromLayer: a layer copied into the archive keeps its
    generation (13) and the objects themselves (identity), in a list of its own."""
    items = objects(25)
    source = list(items)
    archive = Archive()
    archive.addLayer(13, source)
    source.append(object())
    archived = [item for _, _, item in archive]
    assert len(archived) == 25
    assert all(a is b for a, b in zip(archived, reversed(items), strict=True))
    assert {generation for generation, _, _ in archive} == {13}


def test_archive_layer_iter_filled() -> None:
    """ArchiveLayerTests.test___iter___filled."""
    one, two, three = objects(3)
    archive = Archive()
    archive.addLayer(0, [one, two, three])
    assert list(archive) == [(0, 2, three), (0, 1, two), (0, 0, one)]


def test_archive_layer_newer_miss() -> None:
    """ArchiveLayerTests.test_newer_miss (see test_archive_layer_newer_empty)."""
    archive = Archive()
    archive.addLayer(0, [object()])
    assert newer_than(archive, 0, 0) == []


def test_archive_layer_newer_hit() -> None:
    """ArchiveLayerTests.test_newer_hit (see test_archive_layer_newer_empty); the same
    cursor also runs over a stack followed by its archive."""
    one, two, three = objects(3)
    archive = Archive()
    archive.addLayer(0, [one, two, three])
    assert newer_than(archive, 0, 0) == [(0, 2, three), (0, 1, two)]
    stack = AppendStack(max_layers=1, max_length=3)
    for item in range(4):
        stack.push(item, Archive().addLayer)
    joined = chain(stack, [(0, 2, "two"), (0, 1, "one")])
    assert newer_than(joined, 0, 1) == [(1, 0, 3), (0, 2, "two")]


# == ArchiveTests ======================================================================


def test_archive_ctor() -> None:
    """ArchiveTests.test_ctor: no layer (``_head`` None) and generation -1."""
    archive = Archive()
    assert archive.generation == -1
    assert (list(archive), len(archive)) == ([], 0)


def test_archive_iter_empty() -> None:
    """ArchiveTests.test___iter___empty."""
    assert list(Archive()) == []


def test_archive_iter_filled() -> None:
    """ArchiveTests.test___iter___filled: newest layer first, newest item first."""
    created = objects(5)
    archive = Archive()
    archive.addLayer(0, created[:3])
    archive.addLayer(1, created[3:])
    found = list(archive)
    assert [(g, i) for g, i, _ in found] == [(1, 1), (1, 0), (0, 2), (0, 1), (0, 0)]
    assert [item for _, _, item in found] == list(reversed(created))


def test_archive_add_layer_older() -> None:
    """ArchiveTests.test_addLayer_older: a generation not above the last raises
    ArchiveOrderError (a ValueError, as appendonly's); nothing is added."""
    archive = Archive()
    archive.addLayer(0, [])
    for generation in (0, -1):
        with pytest.raises(ValueError, match="Cannot add older layers") as raised:
            archive.addLayer(generation, ["x"])
        assert raised.type is ArchiveOrderError
    assert (archive.generation, list(archive)) == (0, [])


def test_archive_concurrent_same_generation(writers: tuple[Store, Store]) -> None:
    """* ArchiveTests.test__p_resolveConflict_w_same_generation: C and N both added
    generation 0; appendonly kept C's layer and silently dropped N's (assumed equal;
    ['p'] vs ['q'] lost 'q'). everstore: N's commit conflicts, and its re-run raises
    ArchiveOrderError: N is told its layer was not added. (Two writers pruning one
    stack never get here: its pruning hands each layer over exactly once.)"""
    writer_c, writer_n = writers
    archive_c = Archive(storage=writer_c.storage("app", "archive"))
    archive_n = Archive(storage=writer_n.storage("app", "archive"))
    race: Race[None] = Race(writer_n, lambda: archive_c.addLayer(0, ["p"]))
    with pytest.raises(ArchiveOrderError):
        race.run(lambda: archive_n.addLayer(0, ["q"]))
    assert race.runs == 2
    assert list(archive_n) == list(archive_c) == [(0, 0, "p")]


def test_archive_concurrent_different_generation(writers: tuple[Store, Store]) -> None:
    """* ArchiveTests.test__p_resolveConflict_w_different_generation: C added
    generation 0, N generation 1: appendonly raised ConflictError. everstore: N's
    commit conflicts, its re-run adds generation 1 above C's 0; both layers kept."""
    writer_c, writer_n = writers
    archive_c = Archive(storage=writer_c.storage("app", "archive"))
    archive_n = Archive(storage=writer_n.storage("app", "archive"))
    race: Race[None] = Race(writer_n, lambda: archive_c.addLayer(0, ["p"]))
    race.run(lambda: archive_n.addLayer(1, ["q"]))
    assert race.runs == 2
    assert list(archive_c) == [(1, 0, "q"), (0, 0, "p")]
    assert archive_c.generation == 1


# == AccumulatorTests ==================================================================


def test_accumulator_ctor_wo_value() -> None:
    """AccumulatorTests.test_ctor_wo_value."""
    acc = Accumulator()
    assert (list(acc), len(acc)) == ([], 0)


def test_accumulator_ctor_w_value() -> None:
    """AccumulatorTests.test_ctor_w_value: the items, copied (the list given is not
    the accumulator's: changing it afterwards changes nothing)."""
    value = [0, 1, 2]
    acc = Accumulator(value)
    value.append(3)
    assert list(acc) == [0, 1, 2]


def test_accumulator_iter_empty() -> None:
    """AccumulatorTests.test___iter___empty."""
    assert list(Accumulator()) == []


def test_accumulator_iter_filled() -> None:
    """AccumulatorTests.test___iter___filled."""
    assert list(Accumulator([0, 1, 2])) == [0, 1, 2]


def test_accumulator_append() -> None:
    """AccumulatorTests.test_append."""
    acc = Accumulator()
    for value in (0, 1, 2):
        acc.append(value)
    assert list(acc) == [0, 1, 2]


def test_accumulator_extend() -> None:
    """AccumulatorTests.test_extend."""
    acc = Accumulator()
    acc.extend([0, 1, 2])
    assert list(acc) == [0, 1, 2]


def test_accumulator_consume() -> None:
    """AccumulatorTests.test_consume: all items returned, none left."""
    acc = Accumulator([0, 1, 2])
    assert acc.consume() == [0, 1, 2]
    assert (list(acc), len(acc)) == ([], 0)


def test_accumulator_state_empty() -> None:
    """AccumulatorTests.test___getstate___empty: the state is the list of items."""
    assert list(Accumulator()) == []


def test_accumulator_state_filled() -> None:
    """AccumulatorTests.test___getstate___filled: the state is the items, in order
    (and the objects themselves, in memory)."""
    items = objects(3)
    acc = Accumulator(items)
    assert list(acc) == items
    assert all(a is b for a, b in zip(acc, items, strict=True))


def test_accumulator_state_set_empty() -> None:
    """AccumulatorTests.test___setstate___empty: no __setstate__; the empty state of
    a filled accumulator is reached by consuming it."""
    acc = Accumulator([0, 1, 2])
    acc.consume()
    assert list(acc) == []


def test_accumulator_state_set_filled() -> None:
    """AccumulatorTests.test___setstate___filled: the state [0, 1, 2] of an empty
    accumulator is reached by extending it."""
    acc = Accumulator()
    acc.extend([0, 1, 2])
    assert list(acc) == [0, 1, 2]


@dataclass(frozen=True)
class Case:
    """One of appendonly's Accumulator resolution tests, as two writers.

    ``c`` and ``n`` are each writer's steps in one transaction ("consume",
    "append 4", "extend 4 6"), from the old state [1, 2, 3]. ``appendonly`` is what
    its merge left; ``left``, ``c_got`` and ``n_got`` are everstore's (what remains,
    what each writer's consume returned in its committed run); ``runs`` is 2 where
    N's consume raced C's, so that N's commit conflicted and N ran again.
    """

    c: tuple[str, ...]
    n: tuple[str, ...]
    appendonly: list[int]
    left: list[int]
    c_got: list[int] | None = None
    n_got: list[int] | None = None
    runs: int = 1


ACCUMULATOR_CASES = [
    # AccumulatorTests.test__p_resolveConflict_w_both_append
    pytest.param(
        Case(("append 4",), ("append 5",), [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), id="both_append"
    ),
    # AccumulatorTests.test__p_resolveConflict_w_both_extend
    pytest.param(
        Case(("extend 4 6",), ("extend 5 7",), [1, 2, 3, 4, 6, 5, 7], [1, 2, 3, 4, 6, 5, 7]),
        id="both_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_c_consume_n_append
    pytest.param(
        Case(("consume",), ("append 4",), [4], [4], c_got=[1, 2, 3]), id="c_consume_n_append"
    ),
    # AccumulatorTests.test__p_resolveConflict_w_c_consume_n_extend
    pytest.param(
        Case(("consume",), ("extend 4 5",), [4, 5], [4, 5], c_got=[1, 2, 3]),
        id="c_consume_n_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_n_consume_c_append
    pytest.param(
        Case(("append 4",), ("consume",), [4], [4], n_got=[1, 2, 3]), id="n_consume_c_append"
    ),
    # AccumulatorTests.test__p_resolveConflict_w_n_consume_c_extend
    pytest.param(
        Case(("extend 4 5",), ("consume",), [4, 5], [4, 5], n_got=[1, 2, 3]),
        id="n_consume_c_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_both_consume (appendonly: both got
    # [1, 2, 3]; everstore: C did, N's re-run got nothing)
    pytest.param(
        Case(("consume",), ("consume",), [], [], [1, 2, 3], [], runs=2), id="both_consume"
    ),
    # AccumulatorTests.test__p_resolveConflict_w_c_append_n_consume_append
    pytest.param(
        Case(("append 4",), ("consume", "append 5"), [4, 5], [4, 5], n_got=[1, 2, 3]),
        id="c_append_n_consume_append",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_c_extend_n_consume_extend
    pytest.param(
        Case(
            ("extend 4 6",), ("consume", "extend 5 7"), [4, 6, 5, 7], [4, 6, 5, 7], n_got=[1, 2, 3]
        ),
        id="c_extend_n_consume_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_n_append_c_consume_append (appendonly's
    # states repeat the previous test's; ported as its name says: C consumed, then
    # appended 4; N appended 5)
    pytest.param(
        Case(("consume", "append 4"), ("append 5",), [4, 5], [4, 5], c_got=[1, 2, 3]),
        id="n_append_c_consume_append",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_n_extend_c_consume_extend (as its name
    # says, see the previous case)
    pytest.param(
        Case(
            ("consume", "extend 4 6"), ("extend 5 7",), [4, 6, 5, 7], [4, 6, 5, 7], c_got=[1, 2, 3]
        ),
        id="n_extend_c_consume_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_c_consume_n_consume_append
    pytest.param(
        Case(("consume",), ("consume", "append 4"), [4], [4], [1, 2, 3], [], runs=2),
        id="c_consume_n_consume_append",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_c_consume_n_consume_extend
    pytest.param(
        Case(("consume",), ("consume", "extend 4 5"), [4, 5], [4, 5], [1, 2, 3], [], runs=2),
        id="c_consume_n_consume_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_n_consume_c_consume_append (appendonly
    # left [4] and gave [1, 2, 3] to both; everstore: N's re-run takes the 4)
    pytest.param(
        Case(("consume", "append 4"), ("consume",), [4], [], [1, 2, 3], [4], runs=2),
        id="n_consume_c_consume_append",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_n_consume_c_consume_extend
    pytest.param(
        Case(("consume", "extend 4 5"), ("consume",), [4, 5], [], [1, 2, 3], [4, 5], runs=2),
        id="n_consume_c_consume_extend",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_both_consume_append
    pytest.param(
        Case(
            ("consume", "extend 4 5"),
            ("consume", "append 6"),
            [4, 5, 6],
            [6],
            [1, 2, 3],
            [4, 5],
            runs=2,
        ),
        id="both_consume_append",
    ),
    # AccumulatorTests.test__p_resolveConflict_w_both_consume_extend
    pytest.param(
        Case(
            ("consume", "extend 4 5"),
            ("consume", "extend 6 7"),
            [4, 5, 6, 7],
            [6, 7],
            [1, 2, 3],
            [4, 5],
            runs=2,
        ),
        id="both_consume_extend",
    ),
]


def perform(acc: Accumulator, steps: tuple[str, ...]) -> list[Any] | None:
    """Run one writer's steps; return what its consume took (None: no consume)."""
    got = None
    for step in steps:
        verb, *values = step.split()
        if verb == "consume":
            got = acc.consume()
        elif verb == "append":
            acc.append(int(values[0]))
        else:
            acc.extend(int(value) for value in values)
    return got


@pytest.mark.parametrize("case", ACCUMULATOR_CASES)
def test_accumulator_concurrent(writers: tuple[Store, Store], case: Case) -> None:
    """* AccumulatorTests.test__p_resolveConflict_w_<case> (17 cases, see each one's
    comment). Appends never conflict and keep commit order (C's, then N's). A consume
    is exactly once: where appendonly's two consumes both returned the old items, N's
    commit conflicts and its re-run (store.transact) consumes what is there then; the
    rest is appendonly's merge: ``n_got + left == appendonly`` when N re-ran, else
    ``left == appendonly``. Every item is consumed once or left, never both, never lost.
    """
    writer_c, writer_n = writers
    acc_c = Accumulator([1, 2, 3], storage=writer_c.storage("app", "pending"))
    acc_n = Accumulator(storage=writer_n.storage("app", "pending"))
    c_got: list[list[Any] | None] = []

    def c_work() -> None:
        with writer_c.transaction():
            c_got.append(perform(acc_c, case.c))

    race: Race[list[Any] | None] = Race(writer_n, c_work)
    n_got = race.run(lambda: perform(acc_n, case.n))
    left = list(acc_n)
    assert left == list(acc_c) == case.left
    assert (c_got[0], n_got, race.runs) == (case.c_got, case.n_got, case.runs)
    if race.runs == 1:
        assert left == case.appendonly
    else:
        assert (n_got or []) + left == case.appendonly
    appended = [int(v) for step in case.c + case.n for v in step.split()[1:]]
    consumed = (c_got[0] or []) + (n_got or [])
    assert Counter(consumed + left) == Counter([1, 2, 3, *appended])


def test_accumulator_concurrent_reappended_values_kept(writers: tuple[Store, Store]) -> None:
    """Beyond the 81 (research notes, §1.3): appendonly took a side that consumed and
    re-appended values equal to the old ones as 'not cleared' (old [1, 2], C appended
    3, N consumed and appended 1, 2, 5: merged [1, 2, 3, 5], C's 3 misplaced and N's
    1, 2 lost). everstore: N took [1, 2]; left are 3, 1, 2, 5 in commit order."""
    writer_c, writer_n = writers
    acc_c = Accumulator([1, 2], storage=writer_c.storage("app", "pending"))
    acc_n = Accumulator(storage=writer_n.storage("app", "pending"))

    def n_work() -> list[Any]:
        got = acc_n.consume()
        acc_n.extend([1, 2, 5])
        return got

    race: Race[list[Any]] = Race(writer_n, lambda: acc_c.append(3))
    assert race.run(n_work) == [1, 2]
    assert race.runs == 1
    assert list(acc_c) == [3, 1, 2, 5]


def test_accumulator_consume_in_a_failed_transaction_takes_nothing(
    writers: tuple[Store, Store],
) -> None:
    """Beyond the 81: what a consume returned in a transaction that then conflicted
    was not taken: the items are still there for the next consumer (so a writer that
    does not retry loses nothing either)."""
    writer_c, writer_n = writers
    acc_c = Accumulator([1, 2, 3], storage=writer_c.storage("app", "pending"))
    acc_n = Accumulator(storage=writer_n.storage("app", "pending"))
    with pytest.raises(ConflictError), writer_n.transaction():
        assert acc_n.consume() == [1, 2, 3]
        with writer_c.transaction():
            acc_c.consume()
            acc_c.append(4)
    assert list(acc_n) == [4]


# == found while porting ===============================================================


def test_structures_created_inside_a_transaction(writers: tuple[Store, Store]) -> None:
    """A stored structure created inside an open transaction takes its sizes from
    that transaction's own write (it raised KeyError before: the sizes were read from
    the committed state, which does not hold them until the commit); opened again in
    the same transaction, it is the same structure."""
    writer_c, writer_n = writers
    where = writer_c.storage("app", "recent")
    with writer_c.transaction():
        stack = AppendStack(2, 3, storage=where)
        stack.push("a")
        again = AppendStack(storage=where)
        assert (again.max_layers, again.max_length) == (2, 3)
        with pytest.raises(StructureMismatchError, match="max_layers=2"):
            AppendStack(4, 3, storage=where)
        acc = Accumulator([1], storage=writer_c.storage("app", "pending"))
        assert list(stack) == list(acc) == []  # views show committed items only
    assert list(stack) == [(0, 0, "a")]
    stack_n = AppendStack(storage=writer_n.storage("app", "recent"))
    assert (stack_n.max_layers, stack_n.max_length) == (2, 3)
    assert list(Accumulator(storage=writer_n.storage("app", "pending"))) == [1]


def test_the_migration_page_maps_each_of_the_81_tests_to_one_here() -> None:
    """The table in docs/migrating-from-appendonly.md names a test of this module (or a
    case of one) for each of appendonly's 81 tests, and every one it names exists."""
    page = Path(__file__).resolve().parent.parent / "docs" / "migrating-from-appendonly.md"
    table = page.read_text().split("## appendonly's tests, ported", 1)[1]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 81
    case_ids = {param.id for param in ACCUMULATOR_CASES}
    for row in rows:
        name = row[2].strip().strip("`")
        function, _, case = name.partition("[")
        assert callable(globals().get(function)), name
        if case:
            assert case.rstrip("]").split("-")[-1] in case_ids, name
