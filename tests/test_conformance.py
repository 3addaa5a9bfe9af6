"""The conformance suite: the public API, run unchanged against every backend.

Every test takes the ``store`` or ``make_backend`` fixture (tests/conftest.py), which
is parametrised over all backends; a new backend joins by adding itself there.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import itertools
import math
import pickle
import random
import uuid
from collections.abc import Callable

import pytest

from everstore import (
    Backend,
    MissingFieldError,
    MutableAccessError,
    ReadOnlyError,
    ReservedNameError,
    Store,
    UnsupportedValueError,
    Value,
    within,
)
from everstore.errors import InvalidNameError

BackendFactory = Callable[[], Backend]


# -- seed parity: appendmuch's README, with only the import changed ------------------


def test_quick_start(store: Store) -> None:
    player = store.storage("game", "player1")
    player.score = 100
    player.name = "Alice"
    assert player.score == 100
    assert player.name == "Alice"


def test_mutable_values_persist_on_exit(store: Store) -> None:
    player = store.storage("game", "player1")
    with player:
        player.items = ["sword"]
        player.items.append("shield")
    with player:
        assert player.items == ["sword", "shield"]


def test_mutable_read_outside_with_is_a_type_error(store: Store) -> None:
    player = store.storage("game", "p")
    player.items = ["sword"]  # writing one outside `with` is fine
    with pytest.raises(MutableAccessError) as caught:
        _ = player.items
    assert isinstance(caught.value, TypeError)
    assert "items" in str(caught.value) and "with" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [[1], {"a": 1}, {1, 2}, bytearray(b"ab"), random.Random(5), ([1], 2), frozenset({(1,)})],
    ids=repr,
)
def test_every_mutable_type_round_trips_inside_with(store: Store, value: object) -> None:
    s = store.storage("mut")
    s.v = value
    with s:
        got = s.v
    if isinstance(value, random.Random):
        assert isinstance(got, random.Random) and got.getstate() == value.getstate()
    else:
        # A list, dict, set or bytearray read inside `with` is a subclass of its type
        # that records its changes; a copy of it is the plain type.
        assert got == value and isinstance(got, type(value))
        assert type(copy.copy(got)) is type(value)


def test_within_seed_example(store: Store) -> None:
    player = store.storage("game", "player1")
    player.round = 1
    player.score = 10
    player.round = 2
    player.score = 25
    assert within(player, round=1).score == 10
    assert within(player, round=2).score == 25
    seen = [(round_val, ctx.score) for round_val, ctx in within.along(player, "round")]
    assert seen == [(1, 10), (2, 25)]


def test_history_entries_are_values_with_context(store: Store) -> None:
    player = store.storage("game", "player1")
    player.score = 10
    player.score = 25
    history = player.__history__()["score"]
    assert [v.data for v in history] == [10, 25]
    first = history[0]
    assert isinstance(first, Value)
    assert first.unavailable is False
    assert first.context.startswith(f"{__name__}.test_history_entries_are_values_with_context:")
    assert history[0].seq < history[1].seq
    assert history[0].time <= history[1].time


def test_virtual_fields_seed_example(store: Store) -> None:
    def get_group(player: object) -> object:
        return store.storage("game", player._group)  # type: ignore[attr-defined]

    player2 = store.storage("game", "player2", virtual={"group": get_group})
    player3 = store.storage("game", "player3", virtual={"group": get_group})
    player2._group = player3._group = "group1"
    player2.group.budget = 42.7
    assert player3.group.budget == 42.7


def test_virtual_indirection_pattern(store: Store) -> None:
    def get_members(group: object) -> list[object]:
        return [store.storage("game", p, virtual={"group": get_group}) for p in group._members]  # type: ignore[attr-defined]

    def get_group(player: object) -> object:
        return store.storage("game", player._group, virtual={"members": get_members})  # type: ignore[attr-defined]

    player2 = store.storage("game", "player2", virtual={"group": get_group})
    player3 = store.storage("game", "player3", virtual={"group": get_group})
    player2._group = player3._group = "group1"
    player2.group.budget = 42.7
    with player2.group:
        player2.group._members = ["player2", "player3"]
    with player3.group as g:
        members = g.members
        assert [m.__namespace__ for m in members] == [("game", "player2"), ("game", "player3")]
        assert g.members[0].group.budget == 42.7


def test_virtual_field_cannot_be_set_or_deleted(store: Store) -> None:
    s = store.storage("v", virtual={"double": lambda st: st.x * 2})
    s.x = 4
    assert s.double == 8
    with pytest.raises(ReservedNameError):
        s.double = 1
    with pytest.raises(ReservedNameError):
        del s.double


OUT_OF_THE_BOX = [
    True,
    7,
    1.5,
    "text",
    (1, "a"),
    b"\x00bytes",
    complex(1, -2),
    None,
    decimal.Decimal("1.10"),
    frozenset({1, 2}),
    dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC),
    dt.date(2026, 11, 23),
    dt.time(12, 30, 1, 5),
    uuid.UUID(int=12345),
]


@pytest.mark.parametrize("value", OUT_OF_THE_BOX, ids=repr)
def test_out_of_the_box_types_survive_reopening(
    make_backend: BackendFactory, value: object
) -> None:
    first = Store(make_backend())
    first.storage("types").v = value
    second = Store(make_backend())
    got = second.storage("types").v
    assert got == value and type(got) is type(value)


def test_name_is_a_field_and_reserved_words_are_free(store: Store) -> None:
    s = store.storage("game", "p")
    for field in ("name", "fields", "history", "within", "along", "get", "refresh", "flush"):
        setattr(s, field, field.upper())
    assert s.name == "NAME" and s.fields == "FIELDS" and s.get == "GET"


def test_missing_and_deleted_fields_raise_attribute_error(store: Store) -> None:
    s = store.storage("game", "p")
    with pytest.raises(AttributeError):
        _ = s.nope
    s.x = 1
    del s.x
    with pytest.raises(MissingFieldError) as caught:
        _ = s.x
    assert isinstance(caught.value, AttributeError)
    assert "deleted" in str(caught.value)
    assert not hasattr(s, "x")
    assert s.__history__()["x"][-1].unavailable is True
    with pytest.raises(MissingFieldError):
        del s.x  # already deleted: no second tombstone
    assert len(s.__history__()["x"]) == 2
    s.x = 2  # history continues
    assert [v.data for v in s.__history__()["x"]] == [1, None, 2]


def test_none_is_a_value_not_a_tombstone(store: Store) -> None:
    s = store.storage("n")
    s.x = None
    assert s.x is None
    assert s.__history__()["x"][-1].unavailable is False


@pytest.mark.parametrize("bad", ["1abc", "a-b", "", "__dunder__"])
def test_bad_field_names_are_refused(store: Store, bad: str) -> None:
    s = store.storage("names")
    with pytest.raises((InvalidNameError, ReservedNameError)):
        setattr(s, bad, 1)
    assert s.__fields__() == []


@pytest.mark.parametrize("bad", [(), ("a/b",), ("",), (1,), ("ok", None)], ids=repr)
def test_bad_namespaces_are_refused(store: Store, bad: tuple[object, ...]) -> None:
    with pytest.raises(InvalidNameError):
        store.storage(*bad)  # type: ignore[arg-type]


# -- one namespace is one object: handles never disagree ------------------------------


def test_two_handles_never_disagree(store: Store) -> None:
    a = store.storage("game", "p")
    b = store.storage("game", "p")
    a.x = 1
    assert b.x == 1
    b.x = 2
    assert a.x == 2
    assert a == b and hash(a) == hash(b)


def test_a_second_store_sees_committed_writes_on_next_read(make_backend: BackendFactory) -> None:
    writer = Store(make_backend())
    reader = Store(make_backend())
    w = writer.storage("shared")
    r = reader.storage("shared")
    w.x = 1
    assert r.x == 1
    w.x = 2
    assert r.x == 2
    del w.x
    assert not hasattr(r, "x")
    assert [v.data for v in r.__history__()["x"]] == [1, 2, None]


# -- transactions ---------------------------------------------------------------------


def test_transaction_commits_all_at_exit(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    other = Store(make_backend())
    s = store.storage("t")
    with store.transaction():
        s.a = 1
        s.b = 2
        assert s.a == 1  # read-your-writes inside
        assert not hasattr(other.storage("t"), "a")  # nobody else sees it yet
    assert other.storage("t").a == 1 and other.storage("t").b == 2
    seqs = [s.__history__()[f][-1].seq for f in ("a", "b")]
    assert seqs[1] == seqs[0] + 1


def test_a_large_transaction_keeps_every_write_in_order(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    with store.transaction():
        for i in range(1000):
            setattr(store.storage("big", str(i % 7)), f"f{i % 13}", i)
    reader = Store(make_backend())
    facts = list(reader.follow(since=0, timeout=0))
    assert [change.data for change in facts] == list(range(1000))
    assert [change.seq for change in facts] == list(range(facts[0].seq, facts[0].seq + 1000))
    assert reader.storage("big", "3").f12 == max(
        i for i in range(1000) if i % 7 == 3 and i % 13 == 12
    )


def test_fields_inside_a_transaction_count_its_own_writes(store: Store) -> None:
    s = store.storage("pending")
    s.a = 1
    s.b = 2
    with store.transaction():
        s.c = 3
        del s.a
        assert s.__fields__() == ["b", "c"]
        assert list(s) == ["b", "c"] and len(s) == 2
        with pytest.raises(KeyError), store.transaction():
            s.d = 4
            s.a = 5
            assert s.__fields__() == ["a", "b", "c", "d"]
            raise KeyError("undo the inner block")
        assert s.__fields__() == ["b", "c"]
        other = store.storage("untouched")
        assert other.__fields__() == []
    assert s.__fields__() == ["b", "c"]


def test_transaction_rolls_back_when_block_raises(store: Store) -> None:
    s = store.storage("t")
    s.a = 0
    before = store.last_seq
    with pytest.raises(KeyError), store.transaction():
        s.a = 1
        s.b = 2
        raise KeyError("boom")
    assert s.a == 0 and not hasattr(s, "b")
    assert store.last_seq == before


def test_with_storage_is_atomic_too(store: Store) -> None:
    s = store.storage("t")
    with pytest.raises(RuntimeError), s:
        s.items = [1]
        s.items.append(2)
        s.flag = True
        raise RuntimeError
    assert "items" not in s and "flag" not in s


def test_inner_block_failure_undoes_only_the_inner_block(store: Store) -> None:
    s = store.storage("t")
    with store.transaction():
        s.a = 1
        with s:
            s.lst = [1]
        try:
            with s:
                s.b = 2
                s.lst.append(2)
                raise ValueError
        except ValueError:
            pass
        s.c = 3
    assert s.a == 1 and s.c == 3 and "b" not in s
    with s:
        assert s.lst == [1]


def test_unchanged_mutable_read_writes_nothing(store: Store) -> None:
    s = store.storage("t")
    s.d = {"b": 1, "a": 2}
    before = store.last_seq
    with s:
        _ = s.d
        s.d["c"] = 1
        del s.d["c"]
    assert store.last_seq == before


def test_mutation_context_is_the_with_statement(store: Store) -> None:
    s = store.storage("t")
    s.lst = []
    with s:
        s.lst.append(1)
    context = s.__history__()["lst"][-1].context
    assert context.startswith(f"{__name__}.test_mutation_context_is_the_with_statement:")


def test_assigned_mutable_changed_later_in_block_is_saved(store: Store) -> None:
    s = store.storage("t")
    mine = [1]
    with s:
        s.lst = mine
        mine.append(2)
    mine.append(3)  # outside: not tracked, and the store kept its own copy
    with s:
        assert s.lst == [1, 2]


# -- deltas: appending to a long list writes the item, every past value rebuilt -------


def test_list_append_is_a_delta_and_history_is_exact(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    s = store.storage("d")
    s.lst = list(range(1000))
    for i in range(20):
        with s:
            s.lst.append(i)
    with s:
        s.lst[0] = "changed"  # not an append: a full value
    with s:
        s.lst.extend(["x", "y"])
    fresh = Store(make_backend()).storage("d")
    history = fresh.__history__()["lst"]
    expected = list(range(1000))
    assert history[0].data == expected
    for i in range(20):
        expected.append(i)
        assert history[i + 1].data == expected
    expected[0] = "changed"
    assert history[21].data == expected
    assert history[22].data == [*expected, "x", "y"]
    with fresh:
        assert fresh.lst == [*expected, "x", "y"]


def test_dict_and_set_changes_rebuild_exactly(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    s = store.storage("d")
    s.d = {f"k{i}": i for i in range(200)}
    s.st = set(range(200))
    with s:
        s.d["k1"] = "one"
        del s.d["k2"]
        s.d[(1, 2)] = dt.date(2026, 1, 1)
        s.st.add(1000)
        s.st.discard(3)
    fresh = Store(make_backend()).storage("d")
    with fresh:
        assert fresh.d["k1"] == "one" and "k2" not in fresh.d and fresh.d[(1, 2)].year == 2026
        assert 1000 in fresh.st and 3 not in fresh.st
    assert fresh.__history__()["d"][0].data["k2"] == 2


# -- unsupported values leave no trace ---------------------------------------------------


class _Opaque:
    pass


def test_unsupported_value_names_namespace_field_and_type(store: Store) -> None:
    s = store.storage("game", "p")
    before = store.last_seq
    with pytest.raises(UnsupportedValueError) as caught:
        s.bad = [1, _Opaque()]
    message = str(caught.value)
    assert "bad" in message and "('game', 'p')" in message and "_Opaque" in message
    assert isinstance(caught.value, TypeError)
    assert "bad" not in s.__history__() and s.__fields__() == []
    assert store.last_seq == before
    assert store.namespaces() == []


def test_storage_cannot_be_stored(store: Store) -> None:
    s = store.storage("a")
    with pytest.raises(TypeError):
        s.other = store.storage("b")


# -- listing, history, as_of ------------------------------------------------------------


def test_namespaces_and_fields_are_listed(store: Store) -> None:
    store.storage("game", "p2").x = 1
    store.storage("game", "p1").y = 1
    store.storage("gamer").z = 1
    store.storage("other", "deep", "ns").z = 1
    store.storage("empty")  # touched, never written: not listed
    assert store.namespaces() == [
        ("game", "p1"),
        ("game", "p2"),
        ("gamer",),
        ("other", "deep", "ns"),
    ]
    assert store.namespaces(("game",)) == [("game", "p1"), ("game", "p2")]
    assert store.namespaces(["other", "deep"]) == [("other", "deep", "ns")]
    p = store.storage("game", "p2")
    p.b = 2
    p.a = 3
    del p.x
    assert p.__fields__() == ["b", "a"]
    assert list(p) == ["b", "a"] and len(p) == 2 and "a" in p and "x" not in p
    assert set(p.__history__()) == {"x", "b", "a"}


def test_namespaces_refuses_a_str_prefix(store: Store) -> None:
    # A str is a sequence of one-letter parts: ("g", "a", "m", "e") would list nothing
    # instead of saying what is wrong.
    store.storage("game", "p1").x = 1
    with pytest.raises(TypeError, match=r"\('game',\)"):
        store.namespaces("game")
    assert store.namespaces(("game",)) == [("game", "p1")]


def _paged(store: Store, size: int, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every namespace under ``prefix``, read ``size`` at a time with after= and limit=."""
    found: list[tuple[str, ...]] = []
    while True:
        page = store.namespaces(prefix, after=found[-1] if found else None, limit=size)
        assert len(page) <= size
        found += page
        if len(page) < size:
            return found


def test_namespaces_come_in_pages(store: Store) -> None:
    for parts in [("b",), ("a", "x"), ("a.b",), ("a",), ("a", "y", "z"), ("c", "1"), ("a0",)]:
        store.storage(*parts).v = 1
    store.storage("empty")  # touched, never written: not listed
    everything = store.namespaces()
    # sorted by path: "a.b" < "a/x" < "a0", though ("a", "x") < ("a.b",) as tuples
    assert everything == [
        ("a",),
        ("a.b",),
        ("a", "x"),
        ("a", "y", "z"),
        ("a0",),
        ("b",),
        ("c", "1"),
    ]
    for size in (1, 2, 3, 7, 100):
        assert _paged(store, size) == everything
    assert store.namespaces(after=("a", "x"), limit=2) == [("a", "y", "z"), ("a0",)]
    assert store.namespaces(after=("a", "w")) == everything[2:]  # need not exist
    assert store.namespaces(limit=0) == []
    assert store.namespaces(("a",), after=("a",), limit=5) == [("a", "x"), ("a", "y", "z")]
    assert _paged(store, 2, ("a",)) == store.namespaces(("a",))


def test_namespaces_pages_as_of_a_seq(store: Store) -> None:
    store.storage("m").v = 1
    store.storage("k").v = 1
    then = store.last_seq
    store.storage("l").v = 1
    store.storage("a").v = 1
    assert store.namespaces(seq=then, limit=1) == [("k",)]
    assert store.namespaces(seq=then, after=("k",), limit=5) == [("m",)]
    assert store.namespaces(after=("k",), limit=5) == [("l",), ("m",)]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"after": "game"}, TypeError),
        ({"limit": "10"}, TypeError),
        ({"limit": True}, TypeError),
        ({"limit": -1}, ValueError),
        ({"after": ("",)}, InvalidNameError),
    ],
)
def test_namespaces_refuses_bad_pages(
    store: Store, options: dict[str, object], error: type[Exception]
) -> None:
    store.storage("game").x = 1
    with pytest.raises(error):
        store.namespaces(**options)  # type: ignore[arg-type]
    assert store.namespaces() == [("game",)]


def test_the_default_namespace_pages_agree_with_each_backends_own(
    make_backend: Callable[[], Backend],
) -> None:
    # a third-party backend inherits Backend.namespaces_after: both must agree
    store = Store(make_backend())
    for parts in [("b",), ("a", "x"), ("a.b",), ("a",), ("c", "1")]:
        store.storage(*parts).v = 1
    backend = store.backend
    for prefix, upto, after, limit in [
        ("", None, "", None),
        ("", None, "a", 2),
        ("a", None, "", 1),
        ("", 2, "", None),
        ("", None, "a/x", None),
        ("", None, "", 0),
    ]:
        own = backend.namespaces_after(prefix, upto, after, limit)
        assert own == Backend.namespaces_after(backend, prefix, upto, after, limit)
    store.close()


def test_a_store_cannot_be_pickled(store: Store) -> None:
    store.storage("doc").x = 1
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="a Store cannot be pickled"):
            pickle.dumps(store, protocol)
    with pytest.raises(TypeError, match="a Store cannot be pickled"):
        copy.copy(store)
    store.storage("doc").y = 2  # still usable
    assert store.storage("doc").x == 1


def test_as_of_reads_the_whole_store_at_a_seq_and_a_time(store: Store) -> None:
    a = store.storage("a")
    a.v = 1
    a.lst = [1]
    mark = store.last_seq
    mark_time = a.__history__()["lst"][-1].time
    with a:
        a.lst.append(2)
    a.v = 2
    store.storage("b").v = 1
    del a.v
    past = store.as_of(seq=mark)
    assert past.storage("a").v == 1
    assert past.storage("a").lst == [1]  # read-only view: no `with` needed
    assert not hasattr(past.storage("b"), "v")
    assert past.namespaces() == [("a",)]
    assert store.namespaces() == [("a",), ("b",)]
    assert past.storage("a").__fields__() == ["v", "lst"]
    assert [v.data for v in past.storage("a").__history__()["v"]] == [1]
    by_time = store.as_of(time=mark_time)
    assert by_time.seq >= mark and by_time.storage("a").lst == [1]
    assert store.as_of(time=0).namespaces() == []
    with pytest.raises(ReadOnlyError):
        past.storage("a").v = 5
    now = store.as_of(seq=store.last_seq).storage("a")
    assert not hasattr(now, "v") and now.lst == [1, 2]


def test_history_at_seq_and_time(store: Store) -> None:
    s = store.storage("h")
    for i in range(10):
        s.x = i
    history = s.__history__()["x"]
    assert len(history) == 10
    assert history.at(seq=history[4].seq) == history[4]
    assert history.at(seq=history[0].seq - 1) is None
    assert history.at(time=history[-1].time).data == 9
    assert [v.data for v in history[2:4]] == [2, 3]
    s.x = 10
    assert len(history) == 10  # a history is a snapshot


def test_iterating_a_history_while_writing_sees_the_snapshot(store: Store) -> None:
    s = store.storage("h")
    s.x = 0
    s.x = 1
    seen = []
    for value in s.__history__()["x"]:
        seen.append(value.data)
        s.x = value.data + 10
        assert len(list(s.__history__()["x"])) == len(seen) + 2
    assert seen == [0, 1]
    assert [v.data for v in s.__history__()["x"]] == [0, 1, 10, 11]
    assert all(isinstance(v, Value) for v in s.__history__()["x"])


def test_history_values_are_private_copies(store: Store) -> None:
    s = store.storage("h")
    s.lst = [1]
    history = s.__history__()["lst"]
    history[0].data.append("mutated")
    assert s.__history__()["lst"][0].data == [1]
    with s:
        assert s.lst == [1]


# -- within: the seed's semantics, answered by binary search --------------------------


def test_within_latest_period_wins_and_values_carry_in(store: Store) -> None:
    p = store.storage("w")
    p.treatment = "high"
    p.round = 1
    p.score = 10
    p.round = 2
    p.score = 20
    p.round = 1
    p.score = 30
    assert within(p, round=1).score == 30
    assert within(p, round=1).treatment == "high"
    assert within(p, round=2).score == 20
    periods = [(r, v.score) for r, v in within.along(p, "round")]
    assert periods == [(1, 10), (2, 20), (1, 30)]  # one view per period


def test_within_never_held_or_not_yet_written(store: Store) -> None:
    p = store.storage("w")
    p.round = 1
    with pytest.raises(AttributeError):
        _ = within(p, round=3).score
    with pytest.raises(AttributeError):
        _ = within(p, round=1).score
    with pytest.raises(AttributeError):
        _ = within(p, unknown=1).round


def test_within_strict_counts_only_writes_in_the_period(store: Store) -> None:
    p = store.storage("w")
    p.score = 5
    p.round = 1
    with pytest.raises(AttributeError):
        _ = within(p, round=1, strict=True).score
    assert within(p, round=1).score == 5
    p.score = 6
    assert within(p, round=1, strict=True).score == 6
    assert within.strict(p, round=1).score == 6


def test_within_several_conditions_and_chained_along(store: Store) -> None:
    p = store.storage("w")
    p.phase = "a"
    p.round = 1
    p.score = 1
    p.round = 2
    p.score = 2
    p.phase = "b"
    p.round = 1
    p.score = 3
    assert within(p, phase="a", round=1).score == 1
    assert within(p, phase="a", round=2).score == 2
    assert within(p, phase="b", round=1).score == 3
    chained = [(r, v.score) for r, v in within.along(within(p, phase="a"), "round")]
    assert chained == [(1, 1), (2, 2)]


def test_within_on_a_large_history(store: Store) -> None:
    p = store.storage("w")
    with store.transaction():
        for i in range(2000):
            p.round = i
            p.score = i * 10
    assert within(p, round=1234).score == 12340
    assert within(p, round=0).score == 0


def test_within_view_is_read_only(store: Store) -> None:
    p = store.storage("w")
    p.round = 1
    view = within(p, round=1)
    with pytest.raises(ReadOnlyError):
        view.round = 2


# -- time and seq -----------------------------------------------------------------------


def test_seq_strictly_increases_and_time_never_decreases(store: Store) -> None:
    s = store.storage("order")
    for i in range(50):
        setattr(s, f"f{i % 5}", i)
    values = sorted((v for h in s.__history__().values() for v in h), key=lambda v: v.seq)
    seqs = [v.seq for v in values]
    times = [v.time for v in values]
    assert seqs == sorted(set(seqs))
    assert all(a <= b for a, b in itertools.pairwise(times))


def test_writers_clocks_never_make_time_go_back(make_backend: BackendFactory) -> None:
    # Two writers whose clocks disagree: each fact's time is the larger of its
    # writer's clock and the time before it, and what each writer is told it stored
    # is what every reader sees.
    first, second = make_backend(), make_backend()
    first.open()
    second.open()
    told = [
        first.append_one("clock", "x", b"1", "a", 100.0),
        second.append_one("clock", "x", b"2", "b", 50.0),
        second.append_one("clock", "x", b"3", "b", 60.0),
        first.append_one("clock", "x", b"4", "a", 70.0),
        first.append_one("clock", "x", b"5", "a", 200.0),
        second.append_one("clock", "x", b"6", "b", 150.0),
    ]
    assert [when for _, when in told] == [100.0, 100.0, 100.0, 100.0, 200.0, 200.0]
    stored = [(fact.seq, fact.time) for fact in first.facts_since(0)]
    assert stored == told
    assert [seq for seq, _ in told] == list(range(told[0][0], told[0][0] + 6))


def test_store_is_a_context_manager_and_closed_stores_refuse_writes(
    make_backend: BackendFactory,
) -> None:
    with Store(make_backend()) as store:
        s = store.storage("c")
        s.x = 1
    with pytest.raises(RuntimeError):
        s.x = 2
    assert Store(make_backend()).storage("c").x == 1


def test_floats_keep_their_edges(store: Store) -> None:
    s = store.storage("f")
    s.inf = math.inf
    s.nan = [math.nan]
    s.big = 2**100
    s.neg = -0.0
    assert s.inf == math.inf and s.big == 2**100
    assert math.copysign(1, s.neg) == -1
    with s:
        assert math.isnan(s.nan[0])


# -- the change feed --------------------------------------------------------------------


def test_follow_yields_every_fact_once_in_order(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    s = store.storage("feed", "a")
    s.x = 1
    with s:
        s.lst = list(range(100))
    with s:
        s.lst.append(100)  # a delta: the feed still gives the whole value
    del s.x
    changes = list(store.follow(timeout=0))
    assert [c.seq for c in changes] == sorted({c.seq for c in changes})
    assert [(c.namespace, c.field, c.unavailable) for c in changes] == [
        (("feed", "a"), "x", False),
        (("feed", "a"), "lst", False),
        (("feed", "a"), "lst", False),
        (("feed", "a"), "x", True),
    ]
    assert changes[0].data == 1 and changes[2].data == list(range(101))
    assert changes[0].context.startswith(f"{__name__}.")
    # restarting from the last seq handled misses nothing and repeats nothing
    s.y = 2
    later = list(Store(make_backend()).follow(since=changes[-1].seq, timeout=0))
    assert [(c.field, c.data) for c in later] == [("y", 2)]


def test_follow_waits_for_other_writers(make_backend: BackendFactory) -> None:
    import threading

    follower = Store(make_backend())
    writer = Store(make_backend())
    start = follower.last_seq
    ready = threading.Event()

    def write_later() -> None:
        ready.wait(10)
        for i in range(3):
            writer.storage("feed").n = i

    thread = threading.Thread(target=write_later)
    thread.start()
    seen = []
    feed = follower.follow(since=start, timeout=10)
    ready.set()
    for change in feed:
        seen.append(change.data)
        if len(seen) == 3:
            break
    thread.join()
    assert seen == [0, 1, 2]


def test_follow_times_out_when_nothing_comes(store: Store) -> None:
    assert list(store.follow(since=store.last_seq, timeout=0.01)) == []


def test_subscribe_calls_back_in_order_and_stops(make_backend: BackendFactory) -> None:
    import queue

    store = Store(make_backend())
    store.storage("sub").before = 0  # not delivered: a subscription starts from now
    received: queue.Queue[tuple[str, object]] = queue.Queue()
    with store.subscribe(lambda c: received.put((c.field, c.data))) as subscription:
        s = store.storage("sub")
        s.a = 1
        s.b = 2
        assert received.get(timeout=10) == ("a", 1)
        assert received.get(timeout=10) == ("b", 2)
    assert not subscription.running
    assert received.empty()


def test_subscribe_reraises_the_callback_error_on_close(store: Store) -> None:
    def explode(change: object) -> None:
        raise LookupError("callback failed")

    subscription = store.subscribe(explode)
    store.storage("sub").a = 1
    assert subscription.wait(10)
    assert not subscription.running
    with pytest.raises(LookupError):
        subscription.close()


# -- optimistic concurrency ----------------------------------------------------------------


def test_compare_and_set_detects_a_concurrent_writer(make_backend: BackendFactory) -> None:
    from everstore import ConflictError

    mine = Store(make_backend())
    theirs = Store(make_backend())
    doc = mine.storage("doc")
    assert mine.field_seq(doc, "owner") == 0
    seq = mine.compare_and_set(doc, "owner", "ann", seq=0)
    assert doc.owner == "ann" and mine.field_seq(doc, "owner") == seq
    theirs.storage("doc").owner = "bob"  # another writer gets there first
    before = mine.last_seq
    with pytest.raises(ConflictError) as caught:
        mine.compare_and_set(doc, "owner", "carl", seq=seq)
    assert "owner" in str(caught.value)
    assert doc.owner == "bob" and mine.last_seq == before  # nothing written
    assert mine.compare_and_set(doc, "owner", "carl", seq=mine.field_seq(doc, "owner")) > seq
    assert doc.owner == "carl"


def test_expect_makes_a_whole_transaction_conditional(make_backend: BackendFactory) -> None:
    from everstore import ConflictError

    store = Store(make_backend())
    other = Store(make_backend())
    account = store.storage("acct")
    account.balance = 10
    seen = store.field_seq(account, "balance")
    other.storage("acct").balance = 0
    with pytest.raises(ConflictError), store.transaction():
        store.expect(account, "balance", seen)
        account.balance = 5
        account.note = "spent 5"
    assert account.balance == 0 and "note" not in account
    with pytest.raises(RuntimeError):
        store.expect(account, "balance", 0)  # only inside a transaction


@pytest.mark.parametrize("others", [1, 500])
def test_an_expectation_the_cache_showed_true_is_still_checked_at_commit(
    make_backend: BackendFactory, others: int
) -> None:
    # expect() sees the field at the expected seq in the cache; another writer then
    # changes it (after ``others`` other facts: a short and a long tail) before the
    # commit, which must be refused
    from everstore import ConflictError

    store = Store(make_backend())
    other = Store(make_backend())
    account = store.storage("acct")
    account.balance = 10
    seen = store.field_seq(account, "balance")
    with pytest.raises(ConflictError), store.transaction(isolation="atomic"):
        store.expect(account, "balance", seen)
        with other.transaction():
            for i in range(others):
                other.storage("noise").n = i
            other.storage("acct").balance = 0
        account.balance = 5
    assert account.balance == 0
    with store.transaction(isolation="atomic"):  # and a true one commits
        store.expect(account, "balance", store.field_seq(account, "balance"))
        account.balance = 7
    assert other.storage("acct").balance == 7


def test_concurrent_changes_to_one_container_all_survive(make_backend: BackendFactory) -> None:
    import threading

    first = Store(make_backend())
    second = Store(make_backend())
    a = first.storage("merge")
    b = second.storage("merge")
    a.lst = list(range(100))
    a.d = {f"k{i}": i for i in range(100)}
    # Both read the same version, both change it, both commit: nothing is lost.
    with a:
        a.lst.append("from a")
        a.d["a"] = 1
        with b:
            b.lst.append("from b")
            b.d["b"] = 2
            del b.d["k0"]
    with a:
        assert a.lst[-2:] == ["from b", "from a"]
        assert a.d["a"] == 1 and a.d["b"] == 2 and "k0" not in a.d
        seen_by_a = (a.lst, a.d)
    with b:
        assert (b.lst, b.d) == seen_by_a
    fresh = Store(make_backend()).storage("merge")
    history = fresh.__history__()["lst"]
    assert [v.data[-1] for v in history] == [99, "from b", "from a"]
    assert [v.data[-1] for v in list(history)] == [history[i].data[-1] for i in range(3)]

    lock = threading.Barrier(4)

    def appender(tag: int) -> None:
        store = Store(make_backend())
        s = store.storage("merge")
        lock.wait()
        for i in range(25):
            with s:
                s.lst.append((tag, i))

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with fresh:
        appended = [item for item in fresh.lst if isinstance(item, tuple)]
    assert sorted(appended) == [(t, i) for t in range(4) for i in range(25)]


def test_storage_size_is_what_the_database_takes(store: Store, backend_kind: str) -> None:
    size = store.storage_size()
    if backend_kind == "memory":
        assert size is None  # a log in memory takes no database
        return
    assert isinstance(size, int) and size > 0
    notes = store.storage("sized")
    with store.transaction():
        for i in range(2_000):
            setattr(notes, f"f{i % 50}", f"{i:>200}")
    grown = store.storage_size()
    assert grown is not None and grown > size + 2_000 * 200 // 2
