"""everstore.compat.appendmuch behaves as appendmuch does, on every backend.

The behaviours are those appendmuch's own suite (0.0.7) and its 0.3.0 release show;
the tests are written for everstore. Storage tests run on Memory and SQLite, driver
tests on PostgreSQL too.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from everstore import Value
from everstore.compat.appendmuch import (
    Codec,
    DBDriver,
    Memory,
    PostgreSQL,
    Sqlite3,
    Storage,
    Store,
    View,
    VirtualFields,
    dbns2tuple,
    tuple2dbns,
    within,
)
from everstore.errors import DecodeError, EverstoreError

MakeStore = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Stores on one fresh log: a second call opens the same log again."""
    made: list[Store] = []
    shared = Memory()

    def make(**options: Any) -> Store:
        driver: DBDriver = shared if request.param == "memory" else Sqlite3(tmp_path / "db")
        store = Store(driver, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def s(make_store: MakeStore) -> Storage:
    return make_store().storage("ns", "test")


# -- get, set, delete ---------------------------------------------------------------


def test_set_get_and_overwrite(s: Storage) -> None:
    s.x = 42
    s.x = 43
    assert s.x == 43
    assert [v.data for v in s.history()["x"]] == [42, 43]


def test_missing_field_is_attribute_error_naming_the_storage(s: Storage) -> None:
    with pytest.raises(AttributeError, match=r"Storage\('ns', 'test'\) has no \.nope"):
        _ = s.nope
    assert not hasattr(s, "nope")
    assert getattr(s, "nope", "d") == "d"


def test_get_with_default(s: Storage) -> None:
    assert s.get("x") is None
    assert s.get("x", "default") == "default"
    s.x = 42
    assert s.get("x", "default") == 42
    del s.x
    assert s.get("x", "gone") == "gone"
    assert s.get("__class__", "dunder") == "dunder"


def test_delete_tombstones_and_the_field_can_come_back(s: Storage) -> None:
    s.x = 1
    del s.x
    with pytest.raises(AttributeError):
        _ = s.x
    s.x = 2
    history = s.history()["x"]
    assert [(v.unavailable, v.data) for v in history] == [(False, 1), (True, None), (False, 2)]


def test_deleting_a_missing_field_writes_nothing(s: Storage) -> None:
    with pytest.raises(AttributeError, match=r"Key not found: \(ns/test, x\)"):
        del s.x
    s.x = 1
    del s.x
    with pytest.raises(AttributeError, match="Key not found"):
        del s.x
    assert len(s.history()["x"]) == 2


def test_none_is_a_value_not_a_tombstone(s: Storage) -> None:
    s.x = None
    assert s.x is None
    assert s.fields() == ["x"]


def test_every_assignment_is_a_fact_even_an_equal_one(s: Storage) -> None:
    s.x = 5
    s.x = 5
    assert len(s.history()["x"]) == 2


def test_context_names_the_writing_code(s: Storage) -> None:
    s.x = 1
    (value,) = s.history()["x"]
    assert value.context.startswith(f"{__name__}.test_context_names_the_writing_code:")


# -- names ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(Storage.RESERVED_METHODS))
def test_reserved_method_names_cannot_be_fields(s: Storage, method: str) -> None:
    with pytest.raises(AttributeError, match=f"'{method}' is a Storage method"):
        setattr(s, method, 1)


def test_name_and_virtual_are_reserved(s: Storage) -> None:
    assert s.name == "test"
    with pytest.raises(AttributeError, match="'name' is reserved and cannot be changed"):
        s.name = "other"
    with pytest.raises(AttributeError, match="'virtual' is reserved"):
        s.virtual = VirtualFields()
    assert s.name == "test"


def test_unknown_dunder_is_not_an_internal_attribute(s: Storage) -> None:
    with pytest.raises(AttributeError, match="not an internal attribute"):
        s.__bogus__ = 42


def test_field_names_must_be_identifiers(s: Storage) -> None:
    with pytest.raises(ValueError, match="Attribute name must be a valid identifier"):
        setattr(s, "not valid", 1)
    s._group = "g1"
    s.größe = 3
    assert (s._group, s.größe) == ("g1", 3)


@pytest.mark.parametrize(
    "namespace", [(), ("has space",), ("a", ""), ("a", 1), ("a/b",), ("ä",)], ids=repr
)
def test_invalid_namespaces(make_store: MakeStore, namespace: tuple[Any, ...]) -> None:
    store = make_store()
    with pytest.raises(ValueError, match="is an invalid namespace"):
        store.storage(*namespace)


def test_namespace_tokens_allow_dots_dashes_underscores(make_store: MakeStore) -> None:
    store = make_store()
    store.storage("a.b", "c-d", "e_F9").x = 1
    assert store.storage("a.b", "c-d", "e_F9").x == 1


def test_namespace_validator(make_store: MakeStore) -> None:
    store = make_store(namespace_validator=lambda ns: ns[0] == "allowed")
    assert store.storage("allowed", "test").name == "test"
    with pytest.raises(ValueError, match="failed namespace validation"):
        store.storage("forbidden", "test")


def test_errors_are_everstore_errors(s: Storage) -> None:
    for attempt in (lambda: s.nope, lambda: setattr(s, "get", 1), lambda: delattr(s, "x")):
        with pytest.raises(EverstoreError):
            attempt()


# -- mutable values --------------------------------------------------------------------


def test_mutable_read_needs_with(s: Storage) -> None:
    s.x = [1, 2, 3]  # writing one outside `with` is allowed
    with pytest.raises(TypeError, match=r"must be wrapped in a context manager .* \(list\)"):
        _ = s.x
    with pytest.raises(TypeError):
        s.get("x")
    with s:
        assert s.x == [1, 2, 3]


@pytest.mark.parametrize("value", [(1, [2]), frozenset({(1,)}) | {(2,)}], ids=repr)
def test_tuples_with_mutable_members_need_with_too(s: Storage, value: Any) -> None:
    s.x = (1, [2])
    with pytest.raises(TypeError, match="context manager"):
        _ = s.x
    s.y = (1, (2, 3))  # hashable: immutable
    assert s.y == (1, (2, 3))


def test_in_place_changes_are_saved_at_exit(s: Storage) -> None:
    s.items = [1, 2, 3]
    with s:
        s.items.append(4)
        s.items.append(5)  # the same object each time: changes accumulate
    with s:
        assert s.items == [1, 2, 3, 4, 5]
    assert len(s.history()["items"]) == 2


def test_reading_without_changing_writes_nothing(s: Storage) -> None:
    s.d = {"b": 1, "a": 2}
    with s:
        assert s.d == {"a": 2, "b": 1}
        s.d["a"] = 2  # the same value again
    assert len(s.history()["d"]) == 1


def test_assigned_then_mutated_is_written_once_with_the_result(make_store: MakeStore) -> None:
    changes: list[tuple[str, Any]] = []
    store = make_store()
    store.on_change = lambda ns, field, value: changes.append((field, value.data))
    s = store.storage("ns", "test")
    with s:
        s.x = [1, 2]
        s.x.append(3)
    assert changes == [("x", [1, 2]), ("x", [1, 2, 3])]  # the assignment, then the change
    with s:
        assert s.x == [1, 2, 3]


def test_explicit_set_in_with_is_not_written_twice(make_store: MakeStore) -> None:
    changes: list[str] = []
    store = make_store(on_change=lambda ns, field, value: changes.append(field))
    s = store.storage("ns", "test")
    with s:
        s.x = 42
    assert changes == ["x"]


def test_an_exception_in_with_discards_the_block(make_store: MakeStore) -> None:
    changes: list[str] = []
    store = make_store(on_change=lambda ns, field, value: changes.append(field))
    s = store.storage("ns", "test")
    s.x = 1
    with pytest.raises(RuntimeError), s:
        s.x = [1, 2, 3]
        s.x.append(4)
        raise RuntimeError("boom")
    assert s.x == 1  # everstore: the whole block is undone, assignments too
    assert changes == ["x"]


def test_nested_with_commits_at_the_outermost_exit(make_store: MakeStore) -> None:
    store = make_store()
    s = store.storage("ns", "test")
    s.items = []
    with s:
        with s:
            s.items.append(1)
        assert store.storage("ns", "test").history()["items"][-1].data == []
    with s:
        assert s.items == [1]


def test_with_returns_the_storage_and_writes_through_other_objects_join(
    make_store: MakeStore,
) -> None:
    store = make_store()
    with store.storage("g", "1") as g:
        store.storage("g", "1")._members = ["p2", "p3"]
        assert g._members == ["p2", "p3"]
    with g:
        assert g._members == ["p2", "p3"]


@pytest.mark.parametrize(
    "value", [{"a": [1, {"b": 2}]}, {1, 2}, bytearray(b"ab"), [(1, 2)]], ids=repr
)
def test_mutable_types_round_trip(make_store: MakeStore, value: Any) -> None:
    make_store().storage("ns", "m").v = value
    with make_store().storage("ns", "m") as again:
        assert again.v == value


def test_random_state_is_saved_when_used(s: Storage) -> None:
    import random

    s.rng = random.Random(7)
    with s:
        first = s.rng.random()
    with s:
        second = s.rng.random()
    expected = random.Random(7)
    assert (first, second) == (expected.random(), expected.random())
    assert len(s.history()["rng"]) == 3


# -- handles never go stale (appendmuch needed refresh()) --------------------------------


def test_another_handle_sees_a_write_at_once(make_store: MakeStore) -> None:
    store = make_store()
    p1 = store.storage("game", "p1")
    p2 = store.storage("game", "p1")
    p1.v = 1
    assert p2.v == 1
    p2.v = 2
    assert p1.v == 2
    p1.refresh()
    p1.refresh("v")
    assert p1.v == 2


def test_another_store_on_the_same_log_sees_writes(make_store: MakeStore) -> None:
    first, second = make_store(), make_store()
    first.storage("a").x = 1
    assert second.storage("a").x == 1
    second.storage("a").x = 2
    first.load()
    assert first.storage("a").x == 2
    first.flush()
    first.storage("a").flush()


# -- fields, history, bool, eq, hash, repr ----------------------------------------------


def test_fields_in_first_write_order_without_deleted(s: Storage) -> None:
    assert s.fields() == [] and s.__fields__() == []
    s.b = 1
    s.a = 2
    s.c = 3
    del s.a
    s.b = 4
    assert s.fields() == ["b", "c"]
    assert s.__fields__() == ["b", "c"]


def test_history_is_read_only_and_in_seq_order(s: Storage) -> None:
    assert s.history() == {} and s.__history__() == {}
    s.x = 1
    s.x = 2
    s.y = 3
    history = s.history()
    assert set(history) == {"x", "y"}
    assert [v.data for v in history["x"]] == [1, 2]
    assert history["x"][0].seq < history["x"][1].seq < history["y"][0].seq
    assert isinstance(history["x"], tuple) and isinstance(history["x"][0], Value)
    with pytest.raises(TypeError):
        history["z"] = ()  # type: ignore[index]
    assert s.__history__() == history


def test_history_values_are_copies(s: Storage) -> None:
    s.x = [1]
    s.history()["x"][0].data.append(2)
    with s:
        assert s.x == [1]


def test_history_leaves_out_sub_namespaces(make_store: MakeStore) -> None:
    store = make_store()
    store.storage("a", "b").x = 1
    parent = store.storage("a")
    assert parent.history() == {} and not parent


def test_bool(s: Storage) -> None:
    assert not s
    s.x = 1
    assert s
    del s.x
    assert not s


def test_eq_hash_repr(make_store: MakeStore) -> None:
    store = make_store()
    one, same, other = store.storage("ns", "t"), store.storage("ns", "t"), store.storage("ns", "o")
    assert one == same and one is not same and one != other
    assert hash(one) == hash(same) == hash(("ns", "t"))
    assert one != "not a storage" and one != 42
    assert repr(one) == "Storage('ns', 't')"
    assert {one: 1}[same] == 1


def test_no_iteration_len_or_in(s: Storage) -> None:
    s.x = 1
    with pytest.raises(TypeError):
        iter(s)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        len(s)  # type: ignore[arg-type]


def test_internal_attributes(s: Storage) -> None:
    assert s.__namespace__ == ("ns", "test")
    assert s.__dbns__ == "ns/test"
    assert tuple2dbns(("a", "b")) == "a/b"
    assert dbns2tuple("a/b") == ("a", "b") and dbns2tuple("") == ()


# -- virtual fields ------------------------------------------------------------------------


def test_virtual_fields_from_a_dict(make_store: MakeStore) -> None:
    s = make_store().storage("ns", "test", virtual={"computed": lambda st: 42})
    assert s.computed == 42 and s.get("computed") == 42
    with pytest.raises(AttributeError, match="Cannot assign to virtual field 'computed'"):
        s.computed = 99


def test_virtual_fields_decorators_and_item_assignment(s: Storage) -> None:
    s.score = 10

    @s.virtual
    def doubled(st: Storage) -> int:
        return int(st.score) * 2

    @s.virtual("bonus")
    def compute_bonus(st: Storage) -> float:
        return float(st.score) * 0.1

    s.virtual["plus"] = lambda st: st.score + 10
    assert (s.doubled, s.bonus, s.plus) == (20, 1.0, 20)
    s.score = 20  # recomputed on every access
    assert s.doubled == 40
    del s.virtual["plus"]
    assert not hasattr(s, "plus")


def test_virtual_fields_shadow_real_ones_and_are_per_object(make_store: MakeStore) -> None:
    store = make_store()
    s = store.storage("ns", "test")
    s.x = 1
    s.virtual["x"] = lambda st: "virtual"
    assert s.x == "virtual"
    assert store.storage("ns", "test").x == 1
    with pytest.raises(AttributeError, match="Key not found"):
        del s.y
    s.virtual["y"] = lambda st: 0
    with pytest.raises(AttributeError, match="Key not found"):
        del s.y  # del of a virtual name deletes the real field, as appendmuch did


def test_virtual_field_validation(s: Storage) -> None:
    with pytest.raises(ValueError, match="valid identifier"):
        s.virtual["not ok"] = lambda st: 1
    with pytest.raises(TypeError, match="must be callable, got int"):
        s.virtual["n"] = 1  # type: ignore[assignment]
    for reserved in ("get", "within", "history", "name", "virtual", "__store__"):
        with pytest.raises(ValueError, match="reserved name"):
            s.virtual[reserved] = lambda st: 1
    with pytest.raises(TypeError, match="Expected a callable or string"):
        s.virtual(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VirtualFields({"fields": lambda st: 1})


def test_views_do_not_see_virtual_fields(s: Storage) -> None:
    s.round = 1
    s.virtual["v"] = lambda st: 1
    assert s.within(round=1).get("v") is None


# -- replace_predicate and on_change ---------------------------------------------------------


def test_replace_predicate_shows_only_the_latest(make_store: MakeStore) -> None:
    store = make_store(
        replace_predicate=lambda ns, field: field == "latest" and ns.startswith("data/")
    )
    s = store.storage("data", "test")
    for version in ("v1", "v2", "v3"):
        s.latest = version
        s.normal = version
    history = s.history()
    assert [v.data for v in history["latest"]] == ["v3"]
    assert [v.data for v in history["normal"]] == ["v1", "v2", "v3"]
    assert len(store.everstore.storage("data", "test").__history__()["latest"]) == 3
    assert len(store.storage("other", "t").history()) == 0


def test_on_change_for_set_and_delete(make_store: MakeStore) -> None:
    changes: list[tuple[tuple[str, ...], str, Value]] = []
    store = make_store(on_change=lambda ns, field, value: changes.append((ns, field, value)))
    s = store.storage("ns", "test")
    s.x = 42
    del s.x
    assert [(ns, f, v.unavailable, v.data) for ns, f, v in changes] == [
        (("ns", "test"), "x", False, 42),
        (("ns", "test"), "x", True, None),
    ]
    assert changes[0][2] == s.history()["x"][0]


def test_on_change_can_be_set_later_and_sees_only_this_stores_namespaces(
    make_store: MakeStore,
) -> None:
    store = make_store()
    other = make_store()
    seen: list[str] = []
    store.on_change = lambda ns, field, value: seen.append(field)
    with store.storage("a") as a:
        other.storage("b").unrelated = 1
        a.x = 1
    assert seen == ["x"]


def test_on_change_fails_loudly_after_the_commit(make_store: MakeStore) -> None:
    def refuse(ns: tuple[str, ...], field: str, value: Value) -> None:
        raise LookupError("callback failed")

    store = make_store(on_change=refuse)
    s = store.storage("a")
    with pytest.raises(LookupError):
        s.x = 1
    assert s.x == 1  # the write was committed before the callback ran


# -- within / along: 0.0.x functions and 0.3.0 methods ----------------------------------------


def _rounds(s: Storage) -> None:
    s.round = 1
    s.score = 10
    s.round = 2
    s.score = 20


def test_within_both_generations(s: Storage) -> None:
    _rounds(s)
    assert within(s, round=1).score == 10
    assert within(s, round=2).score == 20
    assert s.within(round=1).score == 10
    assert View(s, round=2).score == 20


def test_within_is_live(s: Storage) -> None:
    _rounds(s)
    view = s.within(round=2)
    s.score = 21
    assert view.score == 21


def test_within_get_default(s: Storage) -> None:
    s.round = 1
    w = within(s, round=1)
    assert w.get("nonexistent", "default") == "default"
    assert w.get("round") == 1
    assert w.get("__dict__", "d") == "d"


def test_within_a_value_set_before_the_period_counts(s: Storage) -> None:
    s.treatment = "high"
    s.round = 1
    assert s.within(round=1).treatment == "high"
    assert within.strict(s, round=1).get("treatment") is None
    with pytest.raises(AttributeError):
        _ = s.within(round=1, strict=True).treatment


def test_within_the_latest_period_wins(s: Storage) -> None:
    s.round = 1
    s.score = 10
    s.round = 2
    s.score = 20
    s.round = 1
    s.score = 30
    assert s.within(round=1).score == 30
    s.round = 3
    assert s.within(round=1).score == 30  # later writes are outside the period


def test_within_re_entered_period_keeps_the_value_in_force(s: Storage) -> None:
    s.round = 1
    s.score = 10
    s.round = 2
    s.round = 1
    assert s.within(round=1).score == 10
    assert within.strict(s, round=1).get("score") is None


def test_within_never_held_or_missing_fields(s: Storage) -> None:
    _rounds(s)
    message = r"No value found for score within the specified context in namespace \('ns', 'test'\)"
    with pytest.raises(AttributeError, match=message):
        _ = within(s, round=999).score
    with pytest.raises(AttributeError):
        _ = within(s, nonexistent=42).score
    with pytest.raises(AttributeError):
        _ = within(s, round=1).nonexistent


def test_within_deleted_key_or_condition(s: Storage) -> None:
    s.round = 1
    s.score = 10
    del s.score
    with pytest.raises(AttributeError):
        _ = within(s, round=1).score
    s.flag = True
    s.x = 1
    del s.flag
    s.x = 2
    assert within(s, flag=True).x == 1  # a tombstoned condition does not hold


def test_within_several_conditions(s: Storage) -> None:
    s.round = 1
    s.stage = "a"
    s.score = 1
    s.stage = "b"
    s.score = 2
    s.round = 2
    s.stage = "a"
    s.score = 3
    assert s.within(round=1, stage="a").score == 1
    assert s.within(round=1, stage="b").score == 2
    assert s.within(round=2, stage="a").score == 3
    assert s.within(round=2, stage="b").score == 2  # stage b and score 2 carried in
    assert within.strict(s, round=2, stage="b").get("score") is None


def test_within_compares_with_equality(s: Storage) -> None:
    s.flag = True
    s.x = 1
    assert s.within(flag=1).x == 1
    assert s.within(flag=1.0).x == 1


def test_within_key_may_be_a_condition(s: Storage) -> None:
    s.color = "red"
    assert s.within(color="red").color == "red"
    assert within.strict(s, color="red").color == "red"


def test_within_strict_only_counts_writes_inside_the_period(s: Storage) -> None:
    _rounds(s)
    assert within.strict(s, round=2).score == 20
    s.round = 3
    with pytest.raises(AttributeError):
        _ = within.strict(s, round=3).score
    assert s.within(round=3).score == 20


def test_within_returns_copies_of_mutables_without_with(s: Storage) -> None:
    s.round = 1
    s.items = [1]
    copy = s.within(round=1).items
    copy.append(2)
    assert s.within(round=1).items == [1]


def test_within_with_no_conditions_is_the_present(s: Storage) -> None:
    s.x = 1
    assert s.within().x == 1
    s.x = 2
    assert s.within().x == 2


def test_views_are_read_only(s: Storage) -> None:
    s.round = 1
    view = s.within(round=1)
    with pytest.raises(AttributeError, match="View is a read-only view"):
        view.score = 1
    with pytest.raises(AttributeError, match="read-only"):
        del view.round


def test_along_both_generations(s: Storage) -> None:
    _rounds(s)
    expected = [(1, 10), (2, 20)]
    assert [(r, v.score) for r, v in within.along(s, "round")] == expected
    assert [(r, v.score) for r, v in s.along("round")] == expected
    assert list(s.along("never")) == []


def test_along_views_see_their_own_period(s: Storage) -> None:
    # appendmuch's views selected by value, so both round-1 views gave 30.
    for r, score in [(1, 10), (2, 20), (1, 30), (3, 40)]:
        s.round = r
        s.score = score
    assert [(r, v.score) for r, v in s.along("round")] == [(1, 10), (2, 20), (1, 30), (3, 40)]


def test_along_skips_tombstones(s: Storage) -> None:
    s.round = 1
    del s.round
    s.round = 2
    assert [r for r, _ in s.along("round")] == [1, 2]


def test_along_yields_copies(s: Storage) -> None:
    s.tags = ["a"]
    ((value, _),) = list(s.along("tags"))
    value.append("b")
    with s:
        assert s.tags == ["a"]


def test_chained_along(s: Storage) -> None:
    for r in (1, 2):
        s.round = r
        for stage in ("a", "b"):
            s.stage = stage
            s.score = f"{r}{stage}"
    chained = [
        (r, stage, view.score)
        for r, round_view in s.along("round")
        for stage, view in round_view.along("stage")
    ]
    assert chained == [(1, "a", "1a"), (1, "b", "1b"), (2, "a", "2a"), (2, "b", "2b")]
    in_round_2 = [(st, v.score) for st, v in within(s, round=2).along("stage")]
    assert in_round_2 == [("a", "2a"), ("b", "2b")]
    assert [st for st, _ in within.along(within(s, round=1), "stage")] == ["a", "b"]


def test_along_strict(s: Storage) -> None:
    s.score = 5
    s.round = 1
    s.round = 2
    s.score = 20
    assert [(r, v.get("score")) for r, v in s.along("round")] == [(1, 5), (2, 20)]
    assert [(r, v.get("score")) for r, v in s.along("round", strict=True)] == [(1, None), (2, 20)]
    assert [(r, v.get("score")) for r, v in within.strict.along(s, "round")] == [
        (1, None),
        (2, 20),
    ]


def test_within_of_a_view_adds_conditions(s: Storage) -> None:
    s.round = 1
    s.stage = "a"
    s.score = 1
    s.stage = "b"
    s.score = 2
    assert within(s.within(round=1), stage="a").score == 1


# -- subclassing and codecs ----------------------------------------------------------------


def test_subclassing_storage(make_store: MakeStore) -> None:
    store = make_store()

    class Player(Storage):
        label = "player"

        def __repr__(self) -> str:
            return f"Player({self.name})"

        @property
        def double(self) -> int:
            return int(self.score) * 2

        @property
        def nickname(self) -> str:
            return str(self._nickname)

        @nickname.setter
        def nickname(self, value: str) -> None:
            self._nickname = value.lower()

    p = Player("game", "p1", store=store)
    p.score = 21
    p.nickname = "ACE"
    assert (p.score, p.double, p.nickname, p.label, repr(p)) == (
        21,
        42,
        "ace",
        "player",
        "Player(p1)",
    )
    assert store.storage("game", "p1")._nickname == "ace"
    with pytest.raises(AttributeError, match="Cannot assign to 'label'"):
        p.label = "x"
    with pytest.raises(AttributeError, match="has no setter"):
        p.double = 1
    assert p == store.storage("game", "p1")


class Tag:
    def __init__(self, label: str) -> None:
        self.label = label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tag) and self.label == other.label

    __hash__ = None  # type: ignore[assignment]


def _tag_codec() -> Codec:
    codec = Codec()
    codec.register(Tag, 200, lambda t: t.label.encode(), lambda b: Tag(b.decode()))
    return codec


def test_custom_codec_through_the_whole_stack(make_store: MakeStore) -> None:
    store = make_store(codec=_tag_codec())
    store.storage("ns", "t").tag = Tag("important")
    assert store.storage("ns", "t").tag == Tag("important")
    again = make_store(codec=_tag_codec())
    assert again.storage("ns", "t").tag == Tag("important")


def test_codec_registration_checks() -> None:
    codec = _tag_codec()
    with pytest.raises(ValueError):
        codec.register(Tag, 201, bytes, bytes)  # the class again
    with pytest.raises(ValueError, match=r"0\.\.255"):
        Codec().register(Tag, 256, bytes, bytes)
    with pytest.raises(ValueError, match="built-in"):
        Codec().register(Tag, 128, bytes, bytes)
    with pytest.raises(NotImplementedError):
        Codec().register(Tag, 201, bytes, bytes, predicate=lambda v: True)
    tagged = Codec()
    tagged.register(Tag, "tag", lambda t: t.label, Tag)  # everstore's form
    assert tagged.decode(tagged.encode(Tag("a"))) == Tag("a")


def test_values_appendmuch_refused_are_stored(s: Storage) -> None:
    s.x = math.inf
    s.big = 2**70
    with s:
        s.nested = {(1, 2): [Tag.__name__, (3, 4)]}
    assert (s.x, s.big) == (math.inf, 2**70)


def test_unsupported_values_are_type_errors_and_write_nothing(s: Storage) -> None:
    with pytest.raises(TypeError):
        s.bad = object()
    assert "bad" not in s.history()
    with pytest.raises(TypeError):
        s.other = s
    assert s.history() == {}


# -- drivers ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], DBDriver]]:
    """Drivers on fresh, separate logs (one per call)."""
    made: list[DBDriver] = []
    counter = iter(range(100))

    def make() -> DBDriver:
        driver: DBDriver
        if request.param == "memory":
            driver = Memory()
        elif request.param == "sqlite":
            driver = Sqlite3(str(tmp_path / f"{next(counter)}.db"))
        else:
            conninfo, schema = request.getfixturevalue("pg_schema")
            driver = PostgreSQL(
                conninfo, table_prefix=f"t{next(counter)}", schema=schema, min_size=1, max_size=2
            )
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


def test_driver_ensure(make_driver: Callable[[], DBDriver]) -> None:
    driver = make_driver()
    first = driver.ensure()
    assert first is isinstance(driver, Memory)  # SQL: created now
    assert driver.ensure() is True


def test_driver_ensure_sees_an_existing_log(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    Store(Sqlite3(path)).storage("a").x = 1
    assert Sqlite3(path).ensure() is True


def test_driver_history_all_in_seq_order(make_driver: Callable[[], DBDriver]) -> None:
    driver = make_driver()
    store = Store(driver)
    s = store.storage("ns", "t")
    s.a = 1
    s.b = "two"
    del s.a
    rows = list(driver.history_all())
    assert [(row[1], row[2], row[3] is None) for row in rows] == [
        ("ns/t", "a", False),
        ("ns/t", "b", False),
        ("ns/t", "a", True),
    ]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert rows[-1][0] == driver.seq
    assert all(isinstance(row[4], float) and row[5].startswith(__name__) for row in rows)


def test_driver_dump_restore(make_driver: Callable[[], DBDriver]) -> None:
    source = Store(make_driver())
    s = source.storage("ns", "test")
    s.x = 42
    s.y = "hello"
    with s:
        s.items = [1, 2]
    with s:
        s.items.append(3)
    del s.x
    chunks = list(source.driver.dump())
    assert len(chunks) == 5

    target = Store(make_driver())
    target.driver.restore(io.BytesIO(b"".join(chunks)))
    target.load()
    copy = target.storage("ns", "test")
    assert copy.y == "hello" and copy.get("x") is None
    with copy:
        assert copy.items == [1, 2, 3]
    assert [v.data for v in copy.history()["x"]] == [42, None]

    chunked = Store(make_driver())  # an iterable of chunks works as well
    chunked.driver.restore(iter(chunks))
    assert chunked.storage("ns", "test").y == "hello"


def test_driver_restore_refuses_a_bad_dump_and_writes_nothing(
    make_driver: Callable[[], DBDriver],
) -> None:
    driver = make_driver()
    store = Store(Memory())
    store.storage("a").x = 1
    good = list(store.driver.dump())
    for bad in (b"not json\n", b'{"seq": 1}\n', good[0].replace(b'"value":"', b'"value":"!')):
        with pytest.raises(DecodeError, match="line"):
            driver.restore([good[0], bad])
        assert list(driver.history_all()) == []


def test_driver_size(make_driver: Callable[[], DBDriver]) -> None:
    driver = make_driver()
    store = Store(driver)
    before = driver.size()
    if isinstance(driver, Memory):
        assert before is None
        return
    assert before is not None and before > 0
    s = store.storage("big")
    for i in range(200):
        s.x = "x" * 1000 + str(i)
    after = driver.size()
    assert after is not None and after > before


def test_driver_append_flush_reset(make_driver: Callable[[], DBDriver]) -> None:
    driver = make_driver()
    store = Store(driver)
    seq = driver.append("ns/raw", "x", store.codec.encode(7), "ctx", 1.0)
    assert seq == driver.seq
    assert store.storage("ns", "raw").x == 7
    driver.flush()
    with pytest.raises(NotImplementedError):
        driver.reset()
    assert store.storage("ns", "raw").x == 7


def test_sql_driver_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        Sqlite3(str(tmp_path / "db"), table_prefix="bad prefix")
    with pytest.raises(ValueError, match="tblextra"):
        Sqlite3(str(tmp_path / "db"), tblextra="bad-extra")
    with pytest.raises(ValueError, match="pattern"):
        Sqlite3(str(tmp_path / "db"), replace_index_specs=[("f", "bad'pattern")])
    driver = Sqlite3(str(tmp_path / "db"), "app", "x", [("latest", "data/%")])
    Store(driver).storage("data", "a").latest = 1
    assert Store(Sqlite3(str(tmp_path / "db"), "app", "x")).storage("data", "a").latest == 1
    assert list(Store(Sqlite3(str(tmp_path / "db"))).driver.history_all()) == []


def test_store_survives_reopen_and_closes_idempotently(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with Store(Sqlite3(path)) as store:
        store.storage("a").x = [1]
    store.close()
    with Store(Sqlite3(path)) as again, again.storage("a") as a:
        assert a.x == [1]


def test_store_needs_a_driver() -> None:
    with pytest.raises(TypeError, match="needs a driver"):
        Store("db.sqlite3")  # type: ignore[arg-type]


def test_get_current_value_and_field_history(make_store: MakeStore) -> None:
    store = make_store()
    store.storage("ns", "t").x = [1]
    assert store.get_current_value(("ns", "t"), "x") == [1]
    with pytest.raises(AttributeError, match="Key not found"):
        store.get_current_value(("ns", "t"), "nope")
    with pytest.raises(AttributeError, match="Key not found"):
        store.get_current_value(("bad ns",), "x")
    assert [v.data for v in store.field_history(("ns", "t"), "x")] == [[1]]
    assert store.field_history(("ns", "t"), "nope") == ()


# -- the seed README's examples, with only the import line changed -------------------------

README = textwrap.dedent(
    """
    from everstore.compat.appendmuch import Memory, Sqlite3, Store, within

    store = Store(Memory())  # or Store(Sqlite3("db.sqlite3"))

    # Storage instances provide attribute-based access to namespaced data
    player = store.storage("game", "player1")
    player.score = 100
    player.name = "Alice"

    print(player.score)  # 100
    print(player.name)   # Alice

    with player:
        player.items = ["sword"]
        player.items.append("shield")
    # Changes are flushed here

    with player:
        print(player.items)  # ['sword', 'shield']

    player.round = 1
    player.score = 10
    player.round = 2
    player.score = 25

    print(within(player, round=1).score)  # 10
    print(within(player, round=2).score)  # 25

    for round_val, ctx in within.along(player, "round"):
        print(f"Round {round_val}: score={ctx.score}")

    print(player.__history__()["score"][1].data)

    # Define helper
    def get_group(player):
        return store.storage("game", player._group)

    # Initialize Storage instances
    player2 = store.storage("game", "player2", virtual={"group": get_group})
    player3 = store.storage("game", "player3", virtual={"group": get_group})

    # Note the underscore before "group"; this is accessed by get_group:
    player2._group = player3._group = "group1"

    # This is essentially get_group(player2).budget = 42.7:
    player2.group.budget = 42.7

    # Access from different player with same _group:
    print(player3.group.budget)  # Also 42.7

    def get_members(group):
        return [store.storage("game", p, virtual={"group": get_group}) for p in group._members]

    def get_group(player):
        return store.storage("game", player._group, virtual={"members": get_members})

    player2 = store.storage("game", "player2", virtual={"group": get_group})
    player3 = store.storage("game", "player3", virtual={"group": get_group})

    with player2.group:
        player2.group._members = ["player2", "player3"]

    with player3.group as g:
        print(g.members)
        print(g.members[0].group.budget)  # Ha!
    """
)


def test_seed_readme_runs_with_the_import_line_changed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # `name` is reserved (a Storage's namespace part) in appendmuch 0.0.7 and 0.3.0
    # alike, so the README's `player.name = "Alice"` raises there and here.
    with pytest.raises(AttributeError, match="'name' is reserved and cannot be changed"):
        exec(compile(README, "README", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == ""

    without_name = README.replace('player.name = "Alice"\n', "")
    without_name = without_name.replace("print(player.name)   # Alice", "print(player.name)")
    exec(compile(without_name, "README", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.splitlines() == [
        "100",
        "player1",
        "['sword', 'shield']",
        "10",
        "25",
        "Round 1: score=10",
        "Round 2: score=25",
        "10",
        "42.7",
        "[Storage('game', 'player2'), Storage('game', 'player3')]",
        "42.7",
    ]

    on_sqlite = without_name.replace("Store(Memory())  # or Store(", "Store(")
    assert 'store = Store(Sqlite3("db.sqlite3"))\n' in on_sqlite
    exec(compile(on_sqlite, "README", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.splitlines()[-1] == "42.7"


def test_on_change_reports_in_place_changes_at_commit(make_store: MakeStore) -> None:
    changes: list[tuple[str, Any]] = []
    store = make_store(on_change=lambda ns, field, value: changes.append((field, value.data)))
    store.storage("a").items = [1]
    with store.storage("b"):
        store.storage("a").items.append(2)  # read through another Storage
        assert changes == [("items", [1])]
    assert changes == [("items", [1]), ("items", [1, 2])]


def test_fields_and_sub_namespaces_may_share_a_name(make_store: MakeStore) -> None:
    store = make_store()
    store.storage("a", "b").x = 1
    store.storage("a").b = 2  # appendmuch refused this collision
    assert (store.storage("a").b, store.storage("a", "b").x) == (2, 1)
