"""Mutable values changed in place inside ``with``: every change is saved exactly, what
the block did is undone exactly when it fails, and a value kept after its block is the
caller's own.

Each check compares three things: the value the writing Store shows in a new block,
the value a fresh Store reads from the log, and the same operations done on a plain
Python value. The codec's encoding is compared too, so types must match exactly.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import BackendFactory
from everstore import (
    Codec,
    ConflictError,
    Memory,
    Sqlite3,
    Store,
    UnsupportedValueError,
    default_codec,
)

Op = Callable[[Any], Any]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (as the codec stores them)."""
    return bool(default_codec.encode(a) == default_codec.encode(b))


def fresh_value(make_backend: BackendFactory, field: str) -> Any:
    """``field`` of namespace ("t",) as a Store opened now reads it from the log."""
    reader = Store(make_backend())
    try:
        s = reader.storage("t")
        with s:
            return copy.deepcopy(getattr(s, field))
    finally:
        reader.close()


def _do(statement: Callable[[Any], None]) -> Op:
    return statement


def _setitem(key: Any, value: Any) -> Op:
    return _do(lambda v: v.__setitem__(key, value))


def _delitem(key: Any) -> Op:
    return _do(lambda v: v.__delitem__(key))


def _ior(other: Any) -> Op:
    def op(v: Any) -> None:
        v |= other

    return op


def _isub(other: Any) -> Op:
    def op(v: Any) -> None:
        v -= other

    return op


def _iand(other: Any) -> Op:
    def op(v: Any) -> None:
        v &= other

    return op


def _ixor(other: Any) -> Op:
    def op(v: Any) -> None:
        v ^= other

    return op


def _iadd(other: Any) -> Op:
    def op(v: Any) -> None:
        v += other

    return op


def _imul(times: int) -> Op:
    def op(v: Any) -> None:
        v *= times

    return op


LIST = [1, 2, 3, [10, 11], {"a": 1}, (1, [2]), "s"]
LIST_OPS: dict[str, Op] = {
    "append": lambda v: v.append(99),
    "append_container": lambda v: v.append([1, {"a": (2, 3)}]),
    "append_tuple": lambda v: v.append((1, 2)),
    "extend": lambda v: v.extend([7, 8]),
    "extend_generator": lambda v: v.extend(i * i for i in range(3)),
    "extend_itself": lambda v: v.extend(v),
    "iadd": _iadd([5, 6]),
    "insert": lambda v: v.insert(1, "x"),
    "remove": lambda v: v.remove(2),
    "pop": lambda v: v.pop(),
    "pop_index": lambda v: v.pop(0),
    "clear": lambda v: v.clear(),
    "sort": lambda v: v.sort(key=repr),
    "reverse": lambda v: v.reverse(),
    "setitem": _setitem(0, "first"),
    "setitem_slice": _setitem(slice(1, 3), ["a", "b", "c"]),
    "delitem": _delitem(0),
    "delitem_slice": _delitem(slice(None, None, 2)),
    "imul": _imul(2),
    "nested_list": lambda v: v[3].append(12),
    "nested_dict": lambda v: v[4].__setitem__("b", [1]),
    "nested_in_tuple": lambda v: v[5][1].append(3),
    "append_then_pop": lambda v: (v.append(1), v.pop()),
}

DICT = {"a": 1, "b": [1, 2], "c": {"d": 1}, 5: "five", (1, 2): "pair", "e": {1, 2}}
DICT_OPS: dict[str, Op] = {
    "setitem_new": _setitem("z", 26),
    "setitem_existing": _setitem("a", 2),
    "setitem_same": _setitem("a", 1),
    "setitem_int_key": _setitem(6, "six"),
    "setitem_tuple_key": _setitem((3, 4), "other pair"),
    "setitem_container": _setitem("f", [1, {"g": 2}]),
    "delitem": _delitem("a"),
    "delitem_int_key": _delitem(5),
    "delitem_tuple_key": _delitem((1, 2)),
    "pop": lambda v: v.pop("b"),
    "pop_missing": lambda v: v.pop("nope", None),
    "popitem": lambda v: v.popitem(),
    "setdefault_new": lambda v: v.setdefault("n", []),
    "setdefault_existing": lambda v: v.setdefault("a", 100),
    "update_mapping": lambda v: v.update({"a": 0, "y": 1}),
    "update_pairs": lambda v: v.update([("p", 1), ("q", 2)]),
    "update_keywords": lambda v: v.update(k=1, a=3),
    "update_other_keys": lambda v: v.update({(9,): 1, 1.5: 2}),
    "ior": _ior({"a": "or"}),
    "clear": lambda v: v.clear(),
    "nested_list": lambda v: v["b"].append(3),
    "nested_dict": lambda v: v["c"].__setitem__("e", 2),
    "nested_set": lambda v: v["e"].add(3),
    "set_then_delete": lambda v: (v.__setitem__("tmp", 1), v.__delitem__("tmp")),
}

SET = {1, 2, 3, "a", (1, 2)}
SET_OPS: dict[str, Op] = {
    "add": lambda v: v.add(4),
    "add_existing": lambda v: v.add(1),
    "add_tuple": lambda v: v.add((3, 4)),
    "discard": lambda v: v.discard(2),
    "discard_missing": lambda v: v.discard(42),
    "discard_tuple": lambda v: v.discard((1, 2)),
    "remove": lambda v: v.remove("a"),
    "pop": lambda v: v.pop(),
    "clear": lambda v: v.clear(),
    "update": lambda v: v.update([5, 6], {"b"}),
    "difference_update": lambda v: v.difference_update([1, 2]),
    "intersection_update": lambda v: v.intersection_update([1, "a", 9]),
    "symmetric_difference_update": lambda v: v.symmetric_difference_update({1, 9}),
    "ior": _ior({7}),
    "isub": _isub({3}),
    "iand": _iand({1, 2}),
    "ixor": _ixor({2, 8}),
    "add_then_discard": lambda v: (v.add(50), v.discard(50)),
}

BYTEARRAY = bytearray(b"hello")
BYTEARRAY_OPS: dict[str, Op] = {
    "append": lambda v: v.append(33),
    "extend": lambda v: v.extend(b" world"),
    "iadd": _iadd(b"!!"),
    "insert": lambda v: v.insert(0, 72),
    "pop": lambda v: v.pop(),
    "remove": lambda v: v.remove(108),
    "clear": lambda v: v.clear(),
    "reverse": lambda v: v.reverse(),
    "setitem": _setitem(0, 74),
    "setitem_slice": _setitem(slice(0, 2), b"JJJ"),
    "delitem": _delitem(1),
    "imul": _imul(3),
}

ALL_OPS: list[tuple[str, Any, dict[str, Op]]] = [
    ("list", LIST, LIST_OPS),
    ("dict", DICT, DICT_OPS),
    ("set", SET, SET_OPS),
    ("bytearray", BYTEARRAY, BYTEARRAY_OPS),
]


#: operations whose outcome depends on iteration order (checked by what they popped)
ORDERED = {("set", "pop"), ("dict", "popitem")}


def stored_copy(value: Any) -> Any:
    """``value`` as a store reads it back (dicts come back in the codec's key order)."""
    return default_codec.copy(value)


def expected_after(initial: Any, *ops: Op) -> Any:
    value = stored_copy(initial)
    for op in ops:
        op(value)
    return value


# -- every mutating method is saved exactly ----------------------------------------------


@pytest.mark.parametrize(("kind", "initial", "ops"), ALL_OPS, ids=[k for k, _, _ in ALL_OPS])
def test_every_mutating_method_is_saved_exactly(
    make_backend: BackendFactory, kind: str, initial: Any, ops: dict[str, Op]
) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    for name in ops:
        setattr(s, name, copy.deepcopy(initial))
    results = {}
    for name, op in ops.items():
        with s:
            results[name] = op(getattr(s, name))
    for name, op in ops.items():
        if (kind, name) == ("set", "pop"):
            expected = stored_copy(initial) - {results[name]}
        else:
            expected = expected_after(initial, op)
        with s:
            assert same(getattr(s, name), expected), name
        assert same(fresh_value(make_backend, name), expected), name
        history = [v.data for v in s.__history__()[name]]
        changed = not same(expected, initial)
        assert len(history) == (2 if changed else 1), name
        assert same(history[-1], expected), name
    store.close()


GROW: dict[str, Callable[[Any, int], None]] = {
    "list": lambda v, i: v.append(i),
    "dict": lambda v, i: v.__setitem__(f"r{i}", i),
    "set": lambda v, i: v.add(f"r{i}"),
    "bytearray": lambda v, i: v.append(i),
}


@pytest.mark.parametrize(("kind", "initial", "ops"), ALL_OPS, ids=[k for k, _, _ in ALL_OPS])
def test_every_method_in_one_block_then_more_blocks(
    make_backend: BackendFactory, kind: str, initial: Any, ops: dict[str, Op]
) -> None:
    """Journaled and compared changes of many values in one block, then each value
    changed again in later blocks: each commit starts from the exact value the last
    one left."""
    store = Store(make_backend())
    s = store.storage("t")
    names = [name for name in ops if (kind, name) not in ORDERED]
    models = {name: stored_copy(initial) for name in names}
    for name in names:
        setattr(s, name, copy.deepcopy(initial))
    with s:
        for name in names:
            ops[name](getattr(s, name))
            ops[name](models[name])
    for round_ in range(3):
        for name in names:
            with s:
                GROW[kind](getattr(s, name), round_)
            GROW[kind](models[name], round_)
    for name in names:
        with s:
            assert same(getattr(s, name), models[name]), name
        assert same(fresh_value(make_backend, name), models[name]), name
    store.close()


# -- the change is a delta made from the record of changes --------------------------------


def stored(store: Store) -> list[bytes | None]:
    return [fact.data for fact in store.backend.facts_since(0)]


def test_appends_store_only_the_appended_items(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.lst = list(range(10_000))
    for i in range(5):
        with s:
            s.lst.append(i)
    with s:
        s.lst.extend(["x", ("y", 1)])
    with s:
        s.lst += [7]  # reads, extends in place and assigns back: still one small delta
    facts = stored(store)[1:]
    assert len(facts) == 7
    for data in facts:
        assert Codec.is_delta(data) and data is not None and len(data) < 60
    assert fresh_value(make_backend, "lst") == [*range(10_000), *range(5), "x", ("y", 1), 7]
    store.close()


def test_dict_and_set_changes_store_only_what_changed(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.d = {f"k{i}": i for i in range(5_000)}
    s.st = set(range(5_000))
    with s:
        s.d["k1"] = "one"
        del s.d["k2"]
        s.d[7] = "seven"
        s.st.add(-1)
        s.st.discard(3)
    facts = stored(store)[2:]
    assert len(facts) == 2
    for data in facts:
        assert Codec.is_delta(data) and data is not None and len(data) < 80
    d = fresh_value(make_backend, "d")
    assert d["k1"] == "one" and "k2" not in d and d[7] == "seven" and len(d) == 5_000
    st = fresh_value(make_backend, "st")
    assert -1 in st and 3 not in st and len(st) == 5_000
    store.close()


def test_changes_that_cancel_out_write_nothing(store: Store) -> None:
    s = store.storage("t")
    s.lst = [1, 2]
    s.d = {"a": 1}
    s.st = {1}
    s.ba = bytearray(b"x")
    before = store.last_seq
    with s:
        s.lst.append(3)
        s.lst.pop()
        s.lst.sort()
        s.d["b"] = 2
        del s.d["b"]
        s.d["a"] = 1
        s.st.add(2)
        s.st.discard(2)
        s.ba.extend(b"")
    assert store.last_seq == before


# -- failed blocks undo exactly -----------------------------------------------------------


@pytest.mark.parametrize(("kind", "initial", "ops"), ALL_OPS, ids=[k for k, _, _ in ALL_OPS])
def test_a_failed_inner_block_undoes_its_changes(
    make_backend: BackendFactory, kind: str, initial: Any, ops: dict[str, Op]
) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    names = [name for name in ops if (kind, name) not in ORDERED]
    models = {name: stored_copy(initial) for name in names}
    for name in names:
        setattr(s, name, copy.deepcopy(initial))
    with s:
        for name in names:
            GROW[kind](getattr(s, name), 1)  # a change of the outer block, kept
            GROW[kind](models[name], 1)
            try:
                with s:
                    ops[name](getattr(s, name))
                    raise KeyError("undo")
            except KeyError:
                pass
            assert same(getattr(s, name), models[name]), f"after undoing {name}"
            with s:
                ops[name](getattr(s, name))
            ops[name](models[name])
            assert same(getattr(s, name), models[name]), f"after keeping {name}"
            try:
                with s:
                    GROW[kind](getattr(s, name), 2)
                    ops[name](getattr(s, name))
                    raise KeyError("undo")
            except KeyError:
                pass
            assert same(getattr(s, name), models[name]), f"after undoing {name} again"
    for name in names:
        with s:
            assert same(getattr(s, name), models[name]), name
        assert same(fresh_value(make_backend, name), models[name]), name
    store.close()


def test_nested_inner_blocks_undo_to_their_own_start(store: Store) -> None:
    s = store.storage("t")
    s.lst = [0]
    s.d = {"a": [1]}
    with s:
        s.lst.append(1)
        s.d["x"] = 1
        with s:
            s.lst.append(2)
            s.d["y"] = 2
            try:
                with s:
                    s.lst.append(3)
                    s.lst.sort(reverse=True)  # not journaled: a snapshot per open block
                    s.d["a"].append(2)
                    del s.d["x"]
                    raise ValueError
            except ValueError:
                pass
            assert s.lst == [0, 1, 2] and s.d == {"a": [1], "x": 1, "y": 2}
            s.lst.insert(0, -1)
        assert s.lst == [-1, 0, 1, 2]
        try:
            with s:
                s.lst.clear()
                s.d.clear()
                raise ValueError
        except ValueError:
            pass
    with s:
        assert s.lst == [-1, 0, 1, 2] and s.d == {"a": [1], "x": 1, "y": 2}


def test_a_failed_block_leaves_the_store_and_the_value_read_as_they_were(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.lst = [1, 2]
    s.d = {"a": {"b": 1}}
    before = store.last_seq
    with pytest.raises(RuntimeError), s:
        got, inner = s.lst, s.d["a"]
        got.append(3)
        got.sort(reverse=True)
        inner["c"] = 2
        raise RuntimeError
    assert store.last_seq == before
    assert got == [1, 2]  # undone in place
    with s:
        assert s.lst == [1, 2] and s.d == {"a": {"b": 1}}
        s.lst.append(4)
    assert fresh_value(make_backend, "lst") == [1, 2, 4]
    store.close()


def test_an_unsupported_item_is_refused_and_leaves_no_trace(store: Store) -> None:
    s = store.storage("t")
    s.lst = [1]
    before = store.last_seq
    with pytest.raises(UnsupportedValueError, match="lst"), s:
        s.lst.append(object())
    assert store.last_seq == before
    with s:
        assert s.lst == [1]
        s.lst.append(2)
    with s:
        assert s.lst == [1, 2]


def test_a_conflict_at_commit_gives_the_value_back(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    other = Store(make_backend())
    s = store.storage("t")
    s.lst = [1]
    s.flag = 0
    seq = store.field_seq(s, "flag")
    with pytest.raises(ConflictError), store.transaction():
        store.expect(s, "flag", seq)
        s.lst.append(2)
        other.storage("t").flag = 1
    with s:
        assert s.lst == [1]
    assert fresh_value(make_backend, "lst") == [1]
    store.close()
    other.close()


# -- a value kept after its block is the caller's ------------------------------------------


def test_a_value_kept_after_its_block_does_not_change_with_the_store(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    writer = Store(make_backend())
    s = store.storage("t")
    s.lst = [1]
    with s:
        kept = s.lst
    with s:
        s.lst.append(2)  # in this store
    writer_s = writer.storage("t")
    with writer_s:
        writer_s.lst.append(3)  # in another
    with s:
        assert s.lst == [1, 2, 3]
    assert kept == [1]
    store.close()
    writer.close()


def test_changing_a_kept_value_outside_a_block_is_not_saved(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.lst = [1, [2]]
    s.d = {"a": [1]}
    with s:
        kept, nested = s.lst, s.d["a"]
    before = store.last_seq
    kept.append(3)
    kept[1].append(4)
    nested.append(5)
    assert kept == [1, [2, 4], 3] and nested == [1, 5]
    assert store.last_seq == before
    with s:
        assert s.lst == [1, [2]] and s.d == {"a": [1]}
        s.lst.append("x")
    assert kept == [1, [2, 4], 3]
    assert fresh_value(make_backend, "lst") == [1, [2], "x"]
    store.close()


def test_the_callers_own_objects_stay_the_callers(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.lst = []
    s.d = {}
    mine = [1]
    other = {"k": 1}
    with s:
        s.lst.append(mine)
        s.d["m"] = other
        mine.append(2)  # inside the block: saved, as the value is encoded at the exit
    mine.append(3)  # after it: the caller's object, not the store's
    other["k"] = 2
    with s:
        assert s.lst == [[1, 2]] and s.d == {"m": {"k": 1}}
    assert fresh_value(make_backend, "lst") == [[1, 2]]
    assert fresh_value(make_backend, "d") == {"m": {"k": 1}}
    store.close()


# -- tracked values look like plain ones --------------------------------------------------


def test_tracked_values_behave_as_their_builtin_types(store: Store) -> None:
    s = store.storage("t")
    s.lst = [1, [2], {"a": {3}}]
    s.d = {"a": [1], 2: bytearray(b"x")}
    s.st = {1, "b"}
    s.ba = bytearray(b"ab")
    with s:
        values = {"lst": s.lst, "d": s.d, "st": s.st, "ba": s.ba}
        plain = {name: copy.deepcopy(value) for name, value in values.items()}
        for name, value in values.items():
            kind = type(plain[name])
            assert isinstance(value, kind) and value == plain[name] and plain[name] == value
            assert repr(value) == repr(plain[name]) and str(value) == str(plain[name])
            assert type(copy.copy(value)) is kind and type(copy.deepcopy(value)) is kind
            unpickled = pickle.loads(pickle.dumps(value))
            assert type(unpickled) is kind and unpickled == plain[name]
            assert default_codec.encode(value) == default_codec.encode(plain[name])
        assert type(copy.deepcopy(s.lst)[1]) is list
        assert type(pickle.loads(pickle.dumps(s.d))["a"]) is list
        assert json.dumps(s.lst[:2]) == "[1, [2]]" and json.dumps(s.d["a"]) == "[1]"
        assert type(s.lst + [1]) is list and type(s.st | {2}) is set  # noqa: RUF005
        assert type(s.d.copy()) is dict and type(s.ba[:1]) is bytearray


def test_mutable_values_that_cannot_be_tracked_still_save_every_change(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.lst = [random.Random(1), 2]
    s.pair = ([1], 2)
    with s:
        s.lst[0].random()
        s.lst.append(3)
        s.pair[0].append(2)
    expected = random.Random(1)
    expected.random()
    got = fresh_value(make_backend, "lst")
    assert got[0].getstate() == expected.getstate() and got[1:] == [2, 3]
    assert fresh_value(make_backend, "pair") == ([1, 2], 2)
    with s:  # a Random put into a tracked value later is saved too
        s.d = {"a": 1}
    with s:
        s.d["r"] = random.Random(2)
    with s:
        s.d["r"].random()
        s.d["a"] = 2
    expected = random.Random(2)
    expected.random()
    got = fresh_value(make_backend, "d")
    assert got["a"] == 2 and got["r"].getstate() == expected.getstate()
    store.close()


def test_another_writer_putting_in_an_untrackable_part_is_applied(
    make_backend: BackendFactory,
) -> None:
    first = Store(make_backend())
    second = Store(make_backend())
    a = first.storage("t")
    a.lst = [1]
    with a:
        a.lst.append(2)  # a's value is tracked now
    b = second.storage("t")
    with b:
        b.lst.append(random.Random(3))
    with a:
        assert a.lst[:2] == [1, 2] and a.lst[2].getstate() == random.Random(3).getstate()
        a.lst[2].random()
        a.lst.append(4)
    expected = random.Random(3)
    expected.random()
    got = fresh_value(make_backend, "lst")
    assert got[:2] == [1, 2] and got[3] == 4 and got[2].getstate() == expected.getstate()
    first.close()
    second.close()


# -- concurrency: changes merge --------------------------------------------------------


def test_concurrent_appends_from_two_stores_both_survive(make_backend: BackendFactory) -> None:
    first = Store(make_backend())
    second = Store(make_backend())
    a = first.storage("t")
    b = second.storage("t")
    a.lst = [0]
    a.d = {"x": 0}
    for i in range(1, 30):
        with a:
            a.lst.append(("a", i))
            a.d[f"a{i}"] = i
            if i % 3 == 0:
                with b:  # commits while a's block is open: a's value is lent
                    b.lst.append(("b", i))
                    b.d[f"b{i}"] = i
        if i % 5 == 0:
            with b:
                b.lst.append(("b", i))
    expected_lst = sorted(
        [0, *(("a", i) for i in range(1, 30)), *(("b", i) for i in range(3, 30, 3))]
        + [("b", i) for i in range(5, 30, 5)],
        key=repr,
    )
    for s in (a, b):
        with s:
            assert sorted(s.lst, key=repr) == expected_lst
            assert s.d == {
                "x": 0,
                **{f"a{i}": i for i in range(1, 30)},
                **{f"b{i}": i for i in range(3, 30, 3)},
            }
    assert fresh_value(make_backend, "lst") == list(a.__history__()["lst"][-1].data)
    with a, b:
        assert a.lst == b.lst
    first.close()
    second.close()


def test_a_value_held_when_another_writer_commits_first_keeps_its_changes(
    make_backend: BackendFactory,
) -> None:
    first = Store(make_backend())
    second = Store(make_backend())
    a = first.storage("t")
    a.lst = [0]
    with a:
        held = a.lst
        held.append("a")
        b = second.storage("t")
        with b:
            b.lst.append("b")
    assert held == [0, "a"]  # the caller's object: what this block made of it
    with a:
        assert a.lst == [0, "b", "a"]
        a.lst.append("again")
    assert held == [0, "a"]
    assert fresh_value(make_backend, "lst") == [0, "b", "a", "again"]
    first.close()
    second.close()


def test_two_threads_of_one_store_change_one_list(tmp_path: Any) -> None:
    store = Store(Sqlite3(tmp_path / "t.db"))
    s = store.storage("t")
    s.lst = [0]
    lent = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with s:
                s.lst.append("holder")
                lent.set()
                assert done.wait(10)
                assert s.lst == [0, "holder"]  # the other thread's commit is not seen
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=holder)
    thread.start()
    assert lent.wait(10)
    with s:
        assert s.lst == [0]  # a copy of the committed value, not the lent one
        s.lst.append("other")
    done.set()
    thread.join()
    assert not errors
    with s:
        assert s.lst == [0, "other", "holder"]
    reader = Store(Sqlite3(tmp_path / "t.db")).storage("t")
    with reader:
        assert reader.lst == [0, "other", "holder"]
    store.close()


# -- history rebuilds every past value -------------------------------------------------


def _random_change(rng: random.Random, value: Any) -> None:
    kind = type(value)
    roll = rng.random()
    if isinstance(value, list):
        if roll < 0.5 or not value:
            value.append(rng.choice([rng.randrange(100), [rng.randrange(9)], {"k": 1}]))
        elif roll < 0.6:
            value.extend(range(rng.randrange(3)))
        elif roll < 0.7:
            value.pop(rng.randrange(len(value)))
        elif roll < 0.8:
            containers = [item for item in value if isinstance(item, list | dict)]
            if containers:
                target = rng.choice(containers)
                if isinstance(target, list):
                    target.append(rng.randrange(9))
                else:
                    target[f"n{rng.randrange(5)}"] = rng.randrange(9)
        elif roll < 0.9:
            value.insert(rng.randrange(len(value) + 1), "ins")
        else:
            value[rng.randrange(len(value))] = "set"
    elif isinstance(value, dict):
        key = rng.choice(["a", "b", "c", 1, 2, (1, 2)])
        if roll < 0.5:
            value[key] = rng.choice([rng.randrange(100), [1], {"x": rng.randrange(3)}])
        elif roll < 0.7:
            value.pop(key, None)
        elif roll < 0.85:
            nested = [item for item in value.values() if isinstance(item, list)]
            if nested:
                rng.choice(nested).append(rng.randrange(9))
        else:
            value.update({rng.choice("abcd"): rng.randrange(9)})
    else:
        assert kind is set or isinstance(value, set)
        item = rng.choice([1, 2, 3, "a", "b", (1, 2)])
        if roll < 0.5:
            value.add(item)
        elif roll < 0.8:
            value.discard(item)
        else:
            value ^= {item}


@pytest.mark.parametrize("initial", [[1, [2]], {"a": [1]}, {1, 2}], ids=repr)
def test_random_changes_and_undos_rebuild_every_past_value(
    make_backend: BackendFactory, initial: Any
) -> None:
    store = Store(make_backend())
    s = store.storage("t")
    s.v = copy.deepcopy(initial)
    rng = random.Random(repr(initial))
    committed = [stored_copy(initial)]
    model = stored_copy(initial)
    for _ in range(60):
        with s:
            for _ in range(rng.randrange(4)):
                _random_change(rng, s.v)
            snapshot = copy.deepcopy(s.v)
            try:
                with s:
                    for _ in range(rng.randrange(3)):
                        _random_change(rng, s.v)
                    if rng.random() < 0.5:
                        raise LookupError
                    snapshot = copy.deepcopy(s.v)
            except LookupError:
                pass
            assert same(s.v, snapshot)
            model = snapshot
        if not same(model, committed[-1]):
            committed.append(copy.deepcopy(model))
        with s:
            assert same(s.v, model)
    history = store.history(store.namespace(("t",)), "v")
    assert len(history) == len(committed)
    for position, value in enumerate(committed):
        assert same(history[position].data, value)
    assert all(same(got.data, want) for got, want in zip(history, committed, strict=True))
    assert same(fresh_value(make_backend, "v"), model)
    store.close()


def test_a_long_list_appended_to_in_blocks_reads_back_at_every_seq() -> None:
    store = Store(Memory())
    s = store.storage("t")
    s.lst = []
    seqs = []
    for i in range(200):
        with s:
            s.lst.append(i)
        seqs.append(store.last_seq)
    history = s.__history__()["lst"]
    for i, seq in enumerate(seqs):
        assert history.at(seq=seq).data == list(range(i + 1))
