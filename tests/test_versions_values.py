"""everstore.versions: what a version can hold and how it is stored.

Every codec type round-trips, in a snapshot and as a record; a value nothing can
store raises UnsupportedValueError (a TypeError) naming the ways to store it, and
stores nothing; only use_refs() fields are pickled, and ``unpickle=False`` refuses
them; bytes of a kilobyte or more are stored once, whatever tenant, entry or version
holds them.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from everstore import DecodeError, UnsupportedValueError
from everstore.versions import DbEngine, Handlers, UnpicklingRefusedError
from versions_support import (
    blob_rows,
    file_bytes,
    memory_engine,
    store_file,
    stored_version,
    subtrees,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Node:
    """A plain object: stored as its class and its __dict__."""

    def __init__(self, name: str, children: list[Node], extra: Any = None) -> None:
        self.name = name
        self.children = children
        self.extra = extra

    def __eq__(self, other: object) -> bool:
        return type(other) is Node and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


class Slotted:
    __slots__ = ("x",)

    def __init__(self, x: int) -> None:
        self.x = x


class Unpicklable:
    """Storable by its __dict__, but refuses to be pickled."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable instances are never pickled")

    def __eq__(self, other: object) -> bool:
        return type(other) is Unpicklable and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


class WithRefs:
    """A class naming one field to pickle."""

    def __init__(self, meta: Any, heavy: Any) -> None:
        self.meta = meta
        self.heavy = heavy

    @staticmethod
    def use_refs() -> set[str]:
        return {"heavy"}


class Holder:
    """A plain class without use_refs(): every field is stored as JSON."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner


PLUS_FIVE_THIRTY = datetime.timezone(datetime.timedelta(hours=5, minutes=30))

VALUES: dict[str, Any] = {
    "str": "héllo ✓ \x00 end",
    "empty containers": [[], {}, (), set(), frozenset(), "", b""],
    "tuple": (1, "a", (2, (3,)), [4]),
    "set": {1, 2, "three", (4, 5)},
    "frozenset": frozenset({1.5, "x", frozenset({2})}),
    "dict with int keys": {1: "a", 2: "b", -5: "c"},
    "dict with tuple keys": {(1, 2): "x", ("a",): "y"},
    "dict with mixed keys": {1: "int", "1": "str", None: "none", 2.5: "float"},
    "dict with a __special__ key": {"__special__": "mine", "x": 1},
    "nested __special__ keys": {"a": {"__special__": {"__special__": 1}}, "__digest__": "no"},
    "big ints": [2**64, 2**100, -(2**63) - 1, -(2**200), 2**64 - 1, -(2**63)],
    "inf": [math.inf, -math.inf],
    "negative zero": -0.0,
    "small bytes": b"\x00\xffabc",
    "bytes just under a kilobyte": bytes(range(256)) * 3 + b"x" * 255,
    "bytes of a kilobyte": bytes(1024),
    "big bytes": bytes(range(256)) * 40,
    "small bytearray": bytearray(b"abc"),
    "big bytearray": bytearray(b"z" * 5000),
    "decimal": [decimal.Decimal("1.10"), decimal.Decimal("-1E+30"), decimal.Decimal("0.000")],
    "aware datetime": datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=PLUS_FIVE_THIRTY),
    "utc datetime": datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
    "naive datetime": datetime.datetime(1999, 12, 31, 12, 0),
    "date": datetime.date(1, 1, 1),
    "time": datetime.time(13, 14, 15, 16),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "complex": complex(1.5, -2),
    "enum": [Color.RED, Color.BLUE],
    "int enum": Level.HIGH,
    "plain objects": Node("root", [Node("a", []), Node("b", [Node("c", [], {1: (2,)})])]),
    "unpicklable plain object": Unpicklable({"k": [1, 2]}),
    "deep list": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
}


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 == 1.0 == True is not enough),
    nan equal to nan and -0.0 told from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime.datetime | datetime.time):
        return bool(a == b and a.utcoffset() == b.utcoffset())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Node | Unpicklable):
        return same(vars(a), vars(b))
    return bool(a == b)


@pytest.mark.parametrize("name", list(VALUES))
def test_a_value_round_trips_in_a_snapshot(name: str) -> None:
    engine = memory_engine()
    engine.init("t")
    value = VALUES[name]
    digest = engine.save("t", "u", "e", value)
    assert same(engine.load("t", "e"), value)
    assert same(engine.load("t", "e", digest), value)
    # an equal value is the same version
    assert engine.save("t", "u", "e", value) == digest
    assert engine.verify("t", "e").ok


@pytest.mark.parametrize("name", list(VALUES))
def test_a_value_round_trips_as_a_record(name: str) -> None:
    engine = memory_engine()
    engine.init("t")
    value = VALUES[name]
    assert engine.put("t", "u", "r", name, value) is True
    assert same(engine.get("t", "r", name), value)
    assert engine.put("t", "u", "r", name, value) is False
    assert same(engine.items("t", "r")[name], value)


def test_nan_round_trips_and_is_the_same_value() -> None:
    engine = memory_engine()
    engine.init("t")
    digest = engine.save("t", "u", "e", {"x": math.nan})
    assert math.isnan(engine.load("t", "e")["x"])
    assert engine.save("t", "u", "e", {"x": float("nan")}) == digest
    engine.put("t", "u", "r", "k", math.nan)
    assert engine.put("t", "u", "r", "k", math.nan) is False


def test_all_values_at_once() -> None:
    engine = memory_engine()
    engine.init("t")
    engine.save("t", "u", "e", VALUES)
    assert same(engine.load("t", "e"), VALUES)


def test_bytes_of_a_kilobyte_or_more_go_to_the_blob_table() -> None:
    engine = memory_engine()
    engine.init("t")
    small, big = b"s" * 1023, b"b" * 1024
    digest = engine.save("t", "u", "e", {"small": small, "big": big})
    refs = [tree for tree in subtrees(stored_version(engine, digest)) if "__digest__" in tree]
    assert len(refs) == 1
    assert engine.store.get_blob(refs[0]["__digest__"]) == big


# -- values nothing can store ---------------------------------------------------------


def local_class_instance() -> Any:
    class Local:
        def __init__(self) -> None:
            self.x = 1

    return Local()


UNSTORABLE: dict[str, Any] = {
    "lambda": lambda: 1,
    "slotted object": Slotted(1),
    "lock": threading.Lock(),
    "generator": (i for i in range(3)),
    "class": Node,
    "deque": collections.deque([1, 2]),
}


def ways_named(message: str) -> bool:
    return all(way in message for way in ("BaseInlineHandler", "BaseRefHandler", "use_refs"))


@pytest.mark.parametrize("name", list(UNSTORABLE))
def test_an_unstorable_value_is_refused_naming_the_ways(tmp_path: Path, name: str) -> None:
    with DbEngine(tmp_path, handlers=Handlers()) as engine:
        engine.init("t")
        engine.save("t", "u", "e", 1)
        engine.put("t", "u", "r", "k", 1)
        before = engine.store.last_seq, blob_rows(store_file(engine))
        value = UNSTORABLE[name]
        for call in (
            lambda: engine.save("t", "u", "e", value),
            lambda: engine.save("t", "u", "new", {"deep": [1, {"x": value}]}),
            lambda: engine.put("t", "u", "r", "k", value),
            lambda: engine.put_many("t", "u", "r", {"fine": b"f" * 5000, "bad": value}),
            lambda: engine.save("t", "u", "e", Holder(value)),
        ):
            with pytest.raises(UnsupportedValueError) as caught:
                call()
            assert isinstance(caught.value, TypeError)
            assert ways_named(str(caught.value))
        assert (engine.store.last_seq, blob_rows(store_file(engine))) == before
        assert engine.entries("t") == ["e", "r"]


def test_a_class_defined_in_a_function_is_refused(tmp_path: Path) -> None:
    with DbEngine(tmp_path, handlers=Handlers()) as engine:
        engine.init("t")
        before = engine.store.last_seq, blob_rows(store_file(engine))
        with pytest.raises(UnsupportedValueError, match="module level"):
            engine.save("t", "u", "e", local_class_instance())
        with pytest.raises(TypeError):
            engine.put("t", "u", "r", "k", [local_class_instance()])
        assert (engine.store.last_seq, blob_rows(store_file(engine))) == before
        assert engine.entries("t") == []


def test_values_nested_too_deep_are_refused() -> None:
    engine = memory_engine()
    engine.init("t")
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(UnsupportedValueError):
        engine.save("t", "u", "e", deep)
    assert not engine.exists("t", "e")


def test_a_str_json_cannot_hold_is_an_unsupported_value() -> None:
    engine = memory_engine()
    engine.init("t")
    with pytest.raises(UnsupportedValueError):
        engine.save("t", "u", "e", {"text": "\ud800"})
    assert not engine.exists("t", "e")


# Subclasses of built-in types (str, int, list, dict, OrderedDict, Counter) are neither
# the exact JSON types nor codec types, and their content is not in their __dict__:
# they must be refused (or stored whole), never stored as an empty plain object.
class MyStr(str):
    pass


class MyInt(int):
    pass


class MyList(list[int]):
    pass


class MyDict(dict[str, int]):
    pass


SUBCLASSED: dict[str, Any] = {
    "str subclass": MyStr("hello"),
    "int subclass": MyInt(5),
    "list subclass": MyList([1, 2]),
    "dict subclass": MyDict(a=1),
    "OrderedDict": collections.OrderedDict(a=1, b=2),
    "Counter": collections.Counter("aab"),
}


@pytest.mark.parametrize("name", list(SUBCLASSED))
def test_a_subclass_of_a_builtin_is_stored_whole_or_refused(name: str) -> None:
    engine = memory_engine()
    engine.init("t")
    value = SUBCLASSED[name]
    try:
        engine.save("t", "u", "e", value)
    except UnsupportedValueError:
        assert not engine.exists("t", "e")
        return
    loaded = engine.load("t", "e")
    assert loaded == value


# -- use_refs() and pickling ------------------------------------------------------------


def test_only_use_refs_fields_are_pickled() -> None:
    engine = memory_engine()
    engine.init("t")
    # Unpicklable refuses pickle: stored by its __dict__, it round-trips
    value = Holder(Unpicklable({"deep": Unpicklable(3)}))
    digest = engine.save("t", "u", "e", value)
    loaded = engine.load("t", "e")
    assert type(loaded) is Holder and loaded.inner == value.inner
    assert not [tree for tree in subtrees(stored_version(engine, digest)) if "__digest__" in tree]
    # a use_refs() field is pickled even when JSON could hold it
    refs = WithRefs({"m": 1}, [1, 2, 3])
    digest = engine.save("t", "u", "refs", refs)
    (ref,) = [tree for tree in subtrees(stored_version(engine, digest)) if "__digest__" in tree]
    assert engine.store.get_blob(ref["__digest__"]).startswith(b"\x80")  # a pickle
    loaded = engine.load("t", "refs")
    assert (loaded.meta, loaded.heavy) == ({"m": 1}, [1, 2, 3])


def test_a_use_refs_field_that_cannot_be_pickled_is_a_typed_error() -> None:
    engine = memory_engine()
    engine.init("t")
    with pytest.raises(UnsupportedValueError):
        engine.save("t", "u", "e", WithRefs({}, lambda: 1))
    assert not engine.exists("t", "e")


def test_unpickle_false_refuses_pickled_fields(tmp_path: Path) -> None:
    with DbEngine(tmp_path, handlers=Handlers()) as writer:
        writer.init("t")
        writer.save("t", "u", "pickled", WithRefs({"m": 1}, b"heavy" * 1000))
        writer.put("t", "u", "records", "k", WithRefs(None, {1, 2}))
        writer.put("t", "u", "records", "plain", [1])
        writer.save("t", "u", "plain", Holder([1, 2]))
    with DbEngine(tmp_path, handlers=Handlers(), unpickle=False) as careful:
        with pytest.raises(UnpicklingRefusedError) as caught:
            careful.load("t", "pickled")
        assert isinstance(caught.value, DecodeError)
        with pytest.raises(UnpicklingRefusedError):
            careful.get("t", "records", "k")
        with pytest.raises(UnpicklingRefusedError):
            careful.get("t", "records")
        # everything that is not pickled still loads
        assert careful.get("t", "records", "plain") == [1]
        assert careful.load("t", "plain").inner == [1, 2]
        assert careful.verify("t", "pickled").ok  # verifying never unpickles
    with DbEngine(tmp_path, handlers=Handlers(), unpickle=True) as trusting:
        assert trusting.load("t", "pickled").heavy == b"heavy" * 1000
        assert trusting.get("t", "records", "k").heavy == {1, 2}


# -- blobs are stored once ----------------------------------------------------------------


def test_a_megabyte_saved_in_many_places_is_stored_once(tmp_path: Path) -> None:
    megabyte = bytes(range(256)) * 4096
    with DbEngine(tmp_path, handlers=Handlers()) as engine:
        engine.init("t1")
        engine.init("t2")
        path = store_file(engine)
        before = file_bytes(path)
        engine.save("t1", "u", "a", megabyte)
        engine.save("t1", "u", "b", {"payload": megabyte})
        engine.save("t2", "u", "a", [megabyte])
        for version in range(3):
            engine.save("t2", "u", "versions", {"payload": megabyte, "version": version})
        engine.put("t1", "u", "records", "k", megabyte)
        engine.put("t2", "u", "records", "k", (megabyte, "another record"))
        grown = file_bytes(path) - before
        assert len(megabyte) <= grown < 1.5 * len(megabyte)
        rows = blob_rows(path)
        engine.save("t1", "u", "a", "something else")
        engine.save("t1", "u", "a", megabyte)  # again, after another value
        assert blob_rows(path)[1] - rows[1] < 4096
        assert engine.load("t1", "a") == megabyte
        assert engine.load("t2", "versions")["payload"] == megabyte
        assert engine.get("t2", "records", "k") == (megabyte, "another record")


def test_a_big_bytearray_and_equal_bytes_share_their_blob(tmp_path: Path) -> None:
    data = b"q" * 100_000
    with DbEngine(tmp_path, handlers=Handlers()) as engine:
        engine.init("t")
        engine.save("t", "u", "bytes", data)
        size = blob_rows(store_file(engine))[1]
        engine.save("t", "u", "bytearray", bytearray(data))
        assert blob_rows(store_file(engine))[1] - size < 1000
        assert type(engine.load("t", "bytearray")) is bytearray
        assert type(engine.load("t", "bytes")) is bytes
