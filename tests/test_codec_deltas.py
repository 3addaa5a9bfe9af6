"""Changes of mutable values through the codec's public interface: what
``encode_change`` stores and what ``decode_fact`` rebuilds from it.

A tiny log stands in for a Store's: each fact's bytes in seq order, with the value
at any seq rebuilt from them the way a reader would.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from everstore import Codec, DecodeError, UnsupportedValueError

CODEC = Codec()


class Log:
    """One field's facts (seq -> bytes), read back through ``decode_fact``."""

    def __init__(self, first: Any) -> None:
        self.facts: dict[int, bytes] = {1: CODEC.encode(first)}

    @property
    def last(self) -> int:
        return max(self.facts)

    def change(self, base_seq: int, value: Any) -> bytes | None:
        """What a writer who read the field at ``base_seq`` appends for ``value``."""
        old = CODEC.encode(self.value_at(base_seq))
        data = CODEC.encode_change(base_seq, old, value)
        if data is not None:
            self.facts[self.last + 1] = data
        return data

    def value_at(self, seq: int) -> Any:
        """The value at ``seq``, as a fresh object, walking the facts in order."""
        value = Codec.NO_VALUE
        for at in sorted(self.facts):
            if at > seq:
                break
            value = CODEC.decode_fact(self.facts[at], value, self.value_at)
        return value

    def value_at_without_previous(self, seq: int) -> Any:
        """The same, read by someone who holds no earlier value."""
        return CODEC.decode_fact(self.facts[seq], Codec.NO_VALUE, self.value_at)


BIG_LIST = [f"item {i}" for i in range(100)]
BIG_DICT = {f"key {i}": i for i in range(100)}
BIG_SET = {f"member {i}" for i in range(100)}


def appended(items: list[Any]) -> Callable[[Any], None]:
    return lambda value: value.extend(items)


def set_keys(**changes: Any) -> Callable[[Any], None]:
    return lambda value: value.update(changes)


def deleted(key: Any) -> Callable[[Any], None]:
    return lambda value: value.pop(key)


def added(item: Any) -> Callable[[Any], None]:
    return lambda value: value.add(item)


def discarded(item: Any) -> Callable[[Any], None]:
    return lambda value: value.discard(item)


CHANGES: dict[str, tuple[Any, Callable[[Any], None]]] = {
    "list_append": (BIG_LIST, appended(["one more"])),
    "list_extend_tagged": (BIG_LIST, appended([(1, 2), {3}, 2**70])),
    "tagged_list_append": ([*BIG_LIST, (0,)], appended([b"bytes"])),
    "empty_list_append": ([], appended([1, 2])),
    "dict_set_key": (BIG_DICT, set_keys(new=[1, 2], **{"key 5": "five"})),
    "dict_delete_key": (BIG_DICT, deleted("key 7")),
    "dict_int_keys": ({i: str(i) for i in range(50)}, deleted(3)),
    "set_add": (BIG_SET, added((1, "tuple"))),
    "set_discard": (BIG_SET, discarded("member 9")),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_small_change_is_a_small_delta_that_rebuilds_the_value(name: str) -> None:
    start, change = CHANGES[name]
    log = Log(start)
    value = copy.deepcopy(start)
    change(value)
    data = log.change(1, value)
    assert data is not None and Codec.is_delta(data)
    assert Codec.delta_base(data) == 1
    assert len(data) < 100 < len(log.facts[1]) or not start
    assert log.value_at(2) == value
    assert log.value_at_without_previous(2) == value
    assert log.value_at(1) == start  # the value before is left as it was


def test_a_delta_changes_the_previous_value_in_place() -> None:
    log = Log(BIG_LIST)
    log.change(1, [*BIG_LIST, "x"])
    previous = list(BIG_LIST)
    rebuilt = CODEC.decode_fact(log.facts[2], previous, log.value_at)
    assert rebuilt is previous and rebuilt == [*BIG_LIST, "x"]


@pytest.mark.parametrize(
    ("start", "first", "second", "merged"),
    [
        (BIG_LIST, [*BIG_LIST, "a"], [*BIG_LIST, "b"], [*BIG_LIST, "a", "b"]),
        (
            BIG_DICT,
            {**BIG_DICT, "a": 1},
            {k: v for k, v in BIG_DICT.items() if k != "key 0"},
            {**{k: v for k, v in BIG_DICT.items() if k != "key 0"}, "a": 1},
        ),
        (BIG_SET, BIG_SET | {"a"}, BIG_SET - {"member 0"}, (BIG_SET | {"a"}) - {"member 0"}),
    ],
    ids=["list", "dict", "set"],
)
def test_concurrent_changes_to_one_container_both_survive(
    start: Any, first: Any, second: Any, merged: Any
) -> None:
    """Two writers read seq 1 and change it at once: the second delta, made from
    seq 1, applies to the value the first one left."""
    log = Log(start)
    log.change(1, first)
    log.change(1, second)
    assert Codec.delta_base(log.facts[3]) == 1
    assert log.value_at(3) == merged
    # someone holding no earlier value rebuilds from the delta's base instead
    assert log.value_at_without_previous(3) == second


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([1, 2, 3], [1, 2, 3]),
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
        ({-1, -2, "z"}, {"z", -2, -1}),
        ({(1, 2): [3]}, {(1, 2): [3]}),
    ],
)
def test_an_unchanged_value_needs_nothing_appended(before: Any, after: Any) -> None:
    assert CODEC.encode_change(1, CODEC.encode(before), after) is None


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (BIG_LIST, BIG_LIST[:-1]),  # shortened
        (BIG_LIST, ["changed", *BIG_LIST[1:]]),  # an item replaced
        (BIG_LIST, tuple(BIG_LIST)),  # another type
        (BIG_DICT, {"only": 1}),  # a delta larger than the value
        (bytearray(b"ab"), bytearray(b"abc")),  # mutable, but no delta for it
    ],
)
def test_other_changes_store_the_full_value(before: Any, after: Any) -> None:
    data = CODEC.encode_change(1, CODEC.encode(before), after)
    assert data == CODEC.encode(after)
    assert not Codec.is_delta(data)
    assert CODEC.decode_fact(data, before, lambda seq: pytest.fail("not needed")) == after


def test_a_change_to_an_unsupported_value_is_refused() -> None:
    with pytest.raises(UnsupportedValueError, match="object"):
        CODEC.encode_change(1, CODEC.encode([1]), [1, object()])


def test_is_delta_and_delta_base() -> None:
    assert not Codec.is_delta(None)  # a tombstone
    assert not Codec.is_delta(CODEC.encode([1]))
    delta = CODEC.encode_change(123456, CODEC.encode([1]), [1, 2])
    assert delta is not None and Codec.is_delta(delta)
    assert Codec.delta_base(delta) == 123456


def _good_delta() -> bytes:
    delta = CODEC.encode_change(1, CODEC.encode({"a": 1}), {"a": 1, "b": 2})
    assert delta is not None and Codec.is_delta(delta)
    return delta


DAMAGED = {
    "truncated": _good_delta()[:-3],
    "no_base": b"\x01[",
    "base_not_a_number": b'\x01[x,"L",[1]]',
    "unknown_op": b'\x01[1,"Q",[1]]',
    "not_json": b"\x01[1,\xff\xfe]",
    "missing_payload": b'\x01[1,"D"]',
    "payload_of_another_shape": b'\x01[1,"D",[1,2],[]]',
    "unknown_tag_inside": b'\x01[1,"l",[{"~nope":1}]]',
}


@pytest.mark.parametrize("name", list(DAMAGED))
@pytest.mark.parametrize("previous", [{"a": 1}, [1], Codec.NO_VALUE], ids=repr)
def test_a_damaged_delta_is_a_decode_error(name: str, previous: Any) -> None:
    def value_at(seq: int) -> Any:
        return {"a": 1}

    with pytest.raises(DecodeError):
        CODEC.decode_fact(DAMAGED[name], copy.deepcopy(previous), value_at)


def test_a_delta_whose_base_is_of_another_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        CODEC.decode_fact(_good_delta(), Codec.NO_VALUE, lambda seq: [1, 2])


def test_damaged_full_bytes_are_a_decode_error() -> None:
    for data in (b"", b"[1,", b"~{", b'~{"~t":1}'):
        with pytest.raises(DecodeError):
            CODEC.decode_fact(data, Codec.NO_VALUE, lambda seq: None)


def test_no_value_is_one_named_sentinel() -> None:
    assert Codec.NO_VALUE is Codec().NO_VALUE
    assert repr(Codec.NO_VALUE) == "Codec.NO_VALUE"


items = st.one_of(st.integers(), st.text(max_size=5), st.tuples(st.integers()), st.none())
steps = st.lists(
    st.tuples(st.sampled_from(["append", "set", "del", "add", "discard"]), items), max_size=12
)


@settings(deadline=None, max_examples=60)
@given(steps)
def test_any_sequence_of_changes_reads_back_at_every_seq(changes: list[tuple[str, Any]]) -> None:
    """Each step writes a list, dict and set, all changed from their latest fact."""
    values: dict[str, Any] = {
        "list": list(range(30)),
        "dict": dict.fromkeys(range(30)),
        "set": set(),
    }
    logs = {name: Log(value) for name, value in values.items()}
    history = {name: {1: copy.deepcopy(value)} for name, value in values.items()}
    for op, item in changes:
        if op == "append":
            values["list"].append(item)
        elif op == "set":
            values["dict"][item] = op
        elif op == "del":
            values["dict"].pop(item, None)
        elif op == "add":
            values["set"].add(item)
        else:
            values["set"].discard(item)
        for name, log in logs.items():
            if log.change(log.last, values[name]) is not None:
                history[name][log.last] = copy.deepcopy(values[name])
    for name, log in logs.items():
        for seq, expected in history[name].items():
            assert log.value_at(seq) == expected
            assert log.value_at_without_previous(seq) == expected
