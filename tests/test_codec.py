"""The codec: every supported value comes back exactly, with its exact types.

``same()`` below is the oracle: a recursive comparison that also compares types (so
``1``, ``1.0`` and ``True`` differ, as do tuple and list, set and frozenset), treats
nan as equal to nan, tells ``0.0`` from ``-0.0``, compares Decimals by their text
(``1.10`` is not ``1.1``) and Random objects by their state.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import math
import random
import sqlite3
import tempfile
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import everstore
from everstore import Backend, Codec, Memory, Sqlite3, Store, UnsupportedValueError

CODEC = Codec()
# No deadline and no "too slow" health check: a loaded machine must not fail a test
ROBUST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(params=["memory", "sqlite"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The ``store`` and ``make_backend`` fixtures of conftest, on Memory and SQLite."""
    return str(request.param)


# -- the oracle ----------------------------------------------------------------------


def _same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _same_tz(a: dt.tzinfo | None, b: dt.tzinfo | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and a == b


def _same_items(left: list[tuple[Any, Any]], right: list[tuple[Any, Any]]) -> bool:
    """Multiset equality of (key, value) pairs under ``same`` (nan keys included)."""
    if len(left) != len(right):
        return False
    unmatched = list(right)
    for key, value in left:
        for index, (other_key, other_value) in enumerate(unmatched):
            if same(key, other_key) and same(value, other_value):
                del unmatched[index]
                break
        else:
            return False
    return True


def same(a: Any, b: Any) -> bool:
    """True if ``a`` and ``b`` are equal *and* of the same types, recursively."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is float:
        return _same_float(a, b)
    if kind is complex:
        return _same_float(a.real, b.real) and _same_float(a.imag, b.imag)
    if kind is decimal.Decimal:
        return str(a) == str(b)
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):  # dict and registered dict subclasses
        return _same_items(list(a.items()), list(b.items()))
    if kind is set or kind is frozenset:
        return _same_items([(x, None) for x in a], [(y, None) for y in b])
    if kind is random.Random:
        return bool(a.getstate() == b.getstate())
    if kind is dt.datetime or kind is dt.time:
        return a.isoformat() == b.isoformat() and a.fold == b.fold and _same_tz(a.tzinfo, b.tzinfo)
    # None, bool, int, str, bytes, bytearray, date, UUID and registered custom types
    return bool(a == b)


def round_trip(value: Any, codec: Codec = CODEC) -> Any:
    return codec.decode(codec.encode(value))


def test_the_oracle_tells_apart_what_the_codec_must_keep_apart() -> None:
    pairs = [
        (1, 1.0),
        (1, True),
        (0.0, -0.0),
        (0, False),
        ((1, 2), [1, 2]),
        ({1}, frozenset({1})),
        ({1: "a"}, {True: "a"}),
        ([1, [1.0]], [1, [1]]),
        (b"a", bytearray(b"a")),
        (decimal.Decimal("1.10"), decimal.Decimal("1.1")),
        (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, fold=1)),
        (dt.date(2020, 1, 1), dt.datetime(2020, 1, 1)),
        (random.Random(1), random.Random(2)),
        ({float("nan"): 1}, {float("nan"): 2}),
    ]
    for a, b in pairs:
        assert not same(a, b), (a, b)
        assert not same(b, a), (b, a)
    assert same(float("nan"), float("nan"))
    assert same({float("nan"), 1}, {1, float("nan")})
    assert same(random.Random(7), random.Random(7))
    assert same({(1, "a"): [1.5, None]}, {(1, "a"): [1.5, None]})


# -- strategies ----------------------------------------------------------------------

INT_EDGES = [
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**64 + 1,
    -(2**63),
    -(2**63) - 1,
    -(2**64),
    10**40,
    -(10**40),
]
ints = st.integers() | st.sampled_from(INT_EDGES) | st.integers(-(2**300), 2**300)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 1e16, 0.1]
)
SPECIAL_DECIMALS = [
    decimal.Decimal(text)
    for text in ["1.10", "-0", "0E-30", "1E+30", "Infinity", "-Infinity", "NaN", "-NaN", "NaN42"]
]
hashable_decimals = st.decimals(allow_nan=True, allow_infinity=True).filter(
    lambda d: not d.is_snan()
) | st.sampled_from(SPECIAL_DECIMALS)
signalling_decimals = st.sampled_from([decimal.Decimal("sNaN"), decimal.Decimal("-sNaN7")])
# whole seconds: sub-second offsets have their own test below
fixed_zones = st.integers(-86399, 86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))
zones = st.none() | st.just(dt.UTC) | fixed_zones
datetimes = st.datetimes(timezones=zones).map(lambda d: d.replace(fold=0))
times = st.times(timezones=zones).map(lambda t: t.replace(fold=0))
TILDE_KEYS = ["~", "~t", "~d", "~s", "~fs", "~x", "~i", "~f", "~b", "~u", "~dt", "~~"]
str_keys = st.text() | st.text().map(lambda t: "~" + t) | st.sampled_from(TILDE_KEYS)


def _rng(seed: int, draws: int) -> random.Random:
    rng = random.Random(seed)
    for _ in range(draws):
        rng.gauss(0.0, 1.0)  # leaves gauss_next set half of the time
    return rng


randoms = st.builds(_rng, st.integers(), st.integers(0, 3))

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    st.text(),
    str_keys,
    st.binary(),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    hashable_decimals,
    datetimes,
    st.dates(),
    times,
    st.uuids(),
)


def hashables(extra: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    leaves = hashable_scalars if extra is None else hashable_scalars | extra
    return st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=3).map(tuple) | st.frozensets(kids, max_size=3),
        max_leaves=6,
    )


def values(
    extra_hashable: st.SearchStrategy[Any] | None = None, max_leaves: int = 20
) -> st.SearchStrategy[Any]:
    keys = hashables(extra_hashable)
    leaves = keys | st.binary().map(bytearray) | randoms | signalling_decimals
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.lists(kids, max_size=4).map(tuple),
            st.dictionaries(keys, kids, max_size=4),
            st.dictionaries(str_keys, kids, max_size=4),
            st.dictionaries(st.text(), kids, max_size=4),
            st.sets(keys, max_size=4),
            st.frozensets(keys, max_size=4),
        ),
        max_leaves=max_leaves,
    )


any_value = values()


# -- round trips ---------------------------------------------------------------------


@settings(ROBUST, max_examples=150)
@given(any_value)
def test_every_value_round_trips_exactly(value: Any) -> None:
    encoded = CODEC.encode(value)
    assert type(encoded) is bytes
    assert same(CODEC.decode(encoded), value)


@settings(ROBUST, max_examples=60)
@given(hashables())
def test_every_hashable_round_trips_as_key_and_as_set_item(key: Any) -> None:
    for container in ({key: key}, {key}, frozenset({key}), {"a": 1, key: [key]}):
        assert same(round_trip(container), container)


def _reordered(value: Any, rnd: random.Random) -> Any:
    """An equal value whose dicts and sets were built in another order."""
    kind = type(value)
    if kind is list:
        return [_reordered(item, rnd) for item in value]
    if kind is tuple:
        return tuple(_reordered(item, rnd) for item in value)
    if kind is dict:
        pairs = [(_reordered(k, rnd), _reordered(v, rnd)) for k, v in value.items()]
        rnd.shuffle(pairs)
        return dict(pairs)
    if kind is set or kind is frozenset:
        items = [_reordered(item, rnd) for item in value]
        rnd.shuffle(items)
        # Junk inserted first and removed afterwards changes the hash table's layout,
        # so the iteration order differs even for items whose hashes collide.
        junk = [object() for _ in range(rnd.randrange(0, 40))]
        built = set(junk)
        built.update(items)
        built.difference_update(junk)
        return built if kind is set else frozenset(built)
    return value


@settings(ROBUST, max_examples=60)
@given(any_value, st.randoms(use_true_random=False))
def test_equal_values_give_equal_bytes(value: Any, rnd: random.Random) -> None:
    # One draw seeds a private Random: the shuffles walk sets, whose order can differ
    # between hypothesis's replays of one example (NaN hashes by identity), and
    # drawing from ``rnd`` in that walk made hypothesis report flaky data generation.
    other = _reordered(value, random.Random(rnd.getrandbits(64)))
    assert same(other, value)  # the oracle agrees they are the same value
    assert CODEC.encode(other) == CODEC.encode(value)


@settings(ROBUST, max_examples=60)
@given(any_value)
def test_encoding_a_decoded_value_gives_the_same_bytes(value: Any) -> None:
    encoded = CODEC.encode(value)
    assert CODEC.encode(CODEC.decode(encoded)) == encoded


def test_canonical_for_dict_insertion_order_and_colliding_set_items() -> None:
    forward = {"b": 1, "a": 2, 3: "x", (1,): None}
    backward = dict(reversed(list(forward.items())))
    assert CODEC.encode(forward) == CODEC.encode(backward)
    # -1 and -2 have the same hash in CPython: their order in a set depends on history
    first = {-1, -2, "z", 2.5}
    second = {2.5, "z", -2, -1}
    assert CODEC.encode(first) == CODEC.encode(second)
    assert CODEC.encode(frozenset(first)) == CODEC.encode(frozenset(second))
    assert CODEC.encode({"k": {-2, -1}}) == CODEC.encode({"k": {-1, -2}})


EDGE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    *INT_EDGES,
    2**1000,
    -(2**1000),
    0.0,
    -0.0,
    math.inf,
    -math.inf,
    math.nan,
    5e-324,
    1e300,
    "",
    "~",
    "~t",
    "\x00\x01",
    "snow \u2603 and \U0001f600",
    b"",
    b"\x00\xff",
    bytearray(),
    bytearray(b"\x00~"),
    complex(0, 0),
    complex(-0.0, -0.0),
    complex(math.nan, math.inf),
    complex(-math.inf, 1.5),
    *SPECIAL_DECIMALS,
    decimal.Decimal("sNaN"),
    decimal.Decimal("-sNaN12"),
    decimal.Decimal("3.141592653589793238462643383279502884197"),
    (),
    [],
    {},
    set(),
    frozenset(),
    ((),),
    [[]],
    [(), [], {}, set(), frozenset()],
    {"~t": [1, 2]},
    {"~d": [[1, 2]]},
    {"~x": ["tag", 1]},
    {"~t": (1, 2)},
    {"~": 1, "a": 2},
    ({"~t": [1, 2]},),
    [{"~s": []}, 1j],
    {1: "int", "1": "str", 1.5: "float", None: "none", False: "bool"},
    {(1, 2): "tuple", frozenset({1}): "frozenset", b"k": "bytes", -0.0: "negative zero"},
    {dt.date(2020, 1, 2): 1, dt.datetime(2020, 1, 2): 2, dt.time(3): 3},
    {uuid.UUID(int=1): uuid.UUID(int=2)},
    {decimal.Decimal("1.10"): decimal.Decimal("NaN")},
    {math.nan: math.nan},
    {True, 2, 2.5, "x", b"x", None, (1, (2, (3,))), frozenset({frozenset()})},
    [1, 1.0, True, "1", b"1", (1,), [1], {1}, frozenset({1}), {1: 1}],
    [2**64, -(2**63) - 1, [2**70]],
    {"big": 2**64, "nested": {"inf": math.inf, "nan": math.nan}},
    dt.datetime(2026, 11, 23, 12, 0, 0, 123456),
    dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-23, minutes=-59))),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=30, microseconds=5))),
    dt.date(1, 1, 1),
    dt.date(9999, 12, 31),
    dt.time(0),
    dt.time(23, 59, 59, 999999),
    dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    uuid.UUID(int=0),
    uuid.UUID(int=2**128 - 1),
    uuid.uuid4(),
    random.Random(0),
    _rng(42, 1),
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
def test_edge_values_round_trip_exactly(value: Any) -> None:
    assert same(round_trip(value), value)
    for wrapped in ([value], (value,), {"k": value}, {1: value}, [[value], {"~": value}]):
        assert same(round_trip(wrapped), wrapped)


def test_random_state_is_kept_and_the_copy_is_independent() -> None:
    rng = _rng(5, 1)
    copy_ = round_trip(rng)
    assert type(copy_) is random.Random and copy_ is not rng
    assert [copy_.random() for _ in range(5)] == [rng.random() for _ in range(5)]
    assert copy_.gauss(0, 1) == rng.gauss(0, 1)


GROUPS_OF_EQUAL_BUT_DIFFERENT = [
    [1, 1.0, True, decimal.Decimal(1), complex(1, 0), "1", b"1"],
    [0, 0.0, -0.0, False, decimal.Decimal(0), decimal.Decimal("-0"), complex(0, 0), None, ""],
    [(1, 2), [1, 2], {1, 2}, frozenset({1, 2})],
    [b"ab", bytearray(b"ab"), "ab"],
    [dt.date(2020, 1, 1), dt.datetime(2020, 1, 1), "2020-01-01"],
    [decimal.Decimal("1.1"), decimal.Decimal("1.10"), 1.1],
    [{1: "a"}, {True: "a"}, {1.0: "a"}, {"1": "a"}],
    [{"~t": [1]}, (1,), {"~t": (1,)}],
    [uuid.UUID(int=1), uuid.UUID(int=1).hex, str(uuid.UUID(int=1))],
    [2**64, float(2**64), str(2**64)],
]


@pytest.mark.parametrize("group", GROUPS_OF_EQUAL_BUT_DIFFERENT, ids=repr)
def test_values_of_different_types_never_share_bytes(group: list[Any]) -> None:
    encodings = [CODEC.encode(value) for value in group]
    assert len(set(encodings)) == len(group), encodings
    for value in group:
        assert same(round_trip(value), value)


# -- what the codec refuses ----------------------------------------------------------


class Opaque:
    pass


@dataclasses.dataclass(frozen=True)
class FrozenRecord:
    x: int


class Colour(enum.Enum):
    RED = "red"


class Number(enum.IntEnum):
    ONE = 1


class Word(enum.StrEnum):
    HELLO = "hello"


UNSUPPORTED: list[Any] = [
    object(),
    Opaque(),
    FrozenRecord(1),
    Colour.RED,
    Number.ONE,
    Word.HELLO,
    collections.namedtuple("Pair", "a b")(1, 2),
]

PLACES: dict[str, Callable[[Any], Any]] = {
    "alone": lambda bad: bad,
    "in_list": lambda bad: [1, bad],
    "in_tuple": lambda bad: ("a", bad),
    "dict_value": lambda bad: {"k": bad},
    "dict_value_int_key": lambda bad: {1: bad},
    "deep": lambda bad: {"a": [{"b": (1, [bad])}]},
    "dict_key": lambda bad: {bad: 1},
    "set_item": lambda bad: {2.5, bad},
    "frozenset_item": lambda bad: frozenset({bad}),
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("bad", UNSUPPORTED, ids=lambda v: type(v).__name__)
def test_unsupported_values_are_refused_anywhere(bad: Any, place: str) -> None:
    value = PLACES[place](bad)
    with pytest.raises(UnsupportedValueError) as caught:
        CODEC.encode(value)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, everstore.EverstoreError)
    assert type(bad).__name__ in str(caught.value)


LONE_SURROGATE = "abc\ud800"


@pytest.mark.parametrize("place", list(PLACES))
def test_lone_surrogates_are_refused_anywhere(place: str) -> None:
    value = PLACES[place](LONE_SURROGATE)
    with pytest.raises(UnsupportedValueError) as caught:
        CODEC.encode(value)
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    "value",
    [{LONE_SURROGATE: 1, 2: 3}, {"ok": {LONE_SURROGATE, "b"}}, ({LONE_SURROGATE: 1},)],
    ids=["mixed_key_dict", "set_in_dict", "dict_in_tuple"],
)
def test_lone_surrogates_are_refused_in_tagged_containers(value: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        CODEC.encode(value)


def test_a_cyclic_value_is_an_unsupported_value() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    with pytest.raises(UnsupportedValueError):
        CODEC.encode(cyclic)


def test_nesting_up_to_the_limit_round_trips() -> None:
    # (tests/test_codec_limits.py tests the limit itself)
    deep: list[Any] = []
    inner = deep
    for _ in range(Codec.MAX_DEPTH - 2):
        inner.append([])
        inner = inner[0]
    inner.append(1)
    assert same(round_trip(deep), deep)
    assert same(round_trip((deep,)), (deep,))


def test_zoneinfo_datetimes_keep_their_zone() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    summer = dt.datetime(2024, 7, 1, 12, 0, tzinfo=paris)
    got = round_trip(summer)
    assert got == summer
    # the zone, not just the offset of that instant: a day in winter is +01:00 again
    assert got.tzinfo == paris
    assert (got + dt.timedelta(days=180)).utcoffset() == dt.timedelta(hours=1)


@pytest.mark.parametrize("micros", [1, 500_000, -1, 1_000_001])
def test_sub_second_utc_offsets_are_kept(micros: int) -> None:
    zone = dt.timezone(dt.timedelta(microseconds=micros))
    for value in (dt.datetime(2000, 1, 1, tzinfo=zone), dt.time(1, tzinfo=zone)):
        got = round_trip(value)
        assert got.utcoffset() == value.utcoffset()
        assert same(got, value)


def test_datetime_fold_is_kept() -> None:
    # 02:30 happened twice in Paris on 2024-10-27; fold=1 is the second time
    second = dt.datetime(2024, 10, 27, 2, 30, fold=1)
    assert round_trip(second).fold == 1
    assert round_trip(dt.time(2, 30, fold=1)).fold == 1


# -- through a Storage: the error names where, and nothing is left behind ------------


def _db_rows(store: Store) -> Any:
    backend = store.backend
    if isinstance(backend, Sqlite3):
        raw = sqlite3.connect(backend.path)
        try:
            return {
                table: raw.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in (
                    "everstore_log",
                    "everstore_namespaces",
                    "everstore_fields",
                    "everstore_contexts",
                )
            }
        finally:
            raw.close()
    return list(backend.facts_since(0))


def _state(store: Store, *namespaces: tuple[str, ...]) -> Any:
    """Everything observable about ``namespaces`` in ``store``, plus the raw log."""
    seen: dict[tuple[str, ...], Any] = {}
    for parts in namespaces:
        s = store.storage(*parts)
        history = {
            name: [(v.seq, v.time, v.unavailable, v.context, CODEC.encode(v.data)) for v in h]
            for name, h in s.__history__().items()
        }
        seen[parts] = (s.__fields__(), history)
    return store.last_seq, store.namespaces(), seen, _db_rows(store)


NS = ("codec", "bad-ns")
OTHER = ("codec", "other")


@pytest.fixture
def populated(store: Store) -> Store:
    s = store.storage(*NS)
    s.good = 1
    s.lst = [1, 2]
    store.storage(*OTHER).x = "x"
    return store


def _check_message(exc: BaseException, field: str, type_name: str) -> None:
    message = str(exc)
    assert isinstance(exc, TypeError)
    assert repr(field) in message or field in message, message
    for part in NS:
        assert part in message, message
    assert type_name in message, message


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Opaque(), "Opaque"),
        ([1, {"k": Opaque()}], "Opaque"),
        ({Opaque(): 1}, "Opaque"),
        ((Number.ONE,), "Number"),
        ({1, Colour.RED}, "Colour"),
        ([FrozenRecord(2)], "FrozenRecord"),
    ],
    ids=["alone", "nested", "key", "intenum_in_tuple", "enum_in_set", "dataclass_in_list"],
)
@pytest.mark.parametrize("field", ["bad", "good"])
def test_unsupported_assignment_names_where_and_leaves_no_trace(
    populated: Store, field: str, value: Any, type_name: str
) -> None:
    store = populated
    before = _state(store, NS, OTHER)
    s = store.storage(*NS)
    with pytest.raises(UnsupportedValueError) as caught:
        setattr(s, field, value)
    _check_message(caught.value, field, type_name)
    assert _state(store, NS, OTHER) == before
    assert "bad" not in s.__fields__() and "bad" not in s.__history__()
    assert s.good == 1
    # the failed write used no seq: the next one follows the last committed one
    last = store.last_seq
    s.after = 1
    assert s.__history__()["after"][0].seq == last + 1


def test_unsupported_value_inside_a_transaction_commits_nothing(populated: Store) -> None:
    store = populated
    before = _state(store, NS, OTHER)
    s = store.storage(*NS)
    with pytest.raises(UnsupportedValueError) as caught, store.transaction():
        s.good = 2
        store.storage(*OTHER).x = "changed"
        s.bad = [Opaque()]
    _check_message(caught.value, "bad", "Opaque")
    assert _state(store, NS, OTHER) == before


def test_unsupported_item_put_into_a_mutable_commits_nothing(populated: Store) -> None:
    store = populated
    before = _state(store, NS, OTHER)
    s = store.storage(*NS)
    with pytest.raises(UnsupportedValueError) as caught, s:
        s.lst.append(Opaque())
    _check_message(caught.value, "lst", "Opaque")
    assert _state(store, NS, OTHER) == before
    with pytest.raises(UnsupportedValueError), store.transaction():
        s.good = 3
        with s:
            s.lst.append({"deep": [Opaque()]})
    assert _state(store, NS, OTHER) == before
    with s:
        assert s.lst == [1, 2]


def test_lone_surrogate_through_storage_leaves_no_trace(populated: Store) -> None:
    store = populated
    before = _state(store, NS, OTHER)
    s = store.storage(*NS)
    for value in (LONE_SURROGATE, [LONE_SURROGATE], {LONE_SURROGATE: 1}, {"a", LONE_SURROGATE}):
        with pytest.raises(UnsupportedValueError):
            s.bad = value
    assert _state(store, NS, OTHER) == before


def test_a_fresh_store_agrees_that_nothing_was_written(
    make_backend: Callable[[], Backend],
) -> None:
    store = Store(make_backend())
    s = store.storage(*NS)
    s.good = 1
    with pytest.raises(UnsupportedValueError):
        s.bad = Opaque()
    fresh = Store(make_backend())
    assert _state(fresh, NS) == _state(store, NS)
    assert fresh.storage(*NS).__fields__() == ["good"]


# -- custom types ------------------------------------------------------------------


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((Point, self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


@dataclasses.dataclass(frozen=True)
class Span:
    start: dt.date
    end: dt.date


class Bag(dict[str, Any]):
    """A dict subclass: orjson would happily write it as a plain object."""


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def custom_codec() -> Codec:
    codec = Codec()
    codec.register(Point, "point", lambda p: [p.x, p.y], lambda d: Point(*d))
    codec.register(Span, "span", lambda s: (s.start, s.end), lambda d: Span(*d))
    codec.register(
        fractions.Fraction,
        "fraction",
        lambda f: (f.numerator, f.denominator),
        lambda d: fractions.Fraction(*d),
    )
    codec.register(Bag, "bag", dict, Bag)
    codec.register(Level, "level", lambda v: v.value, Level)
    return codec


CUSTOM = custom_codec()
custom_hashables = st.one_of(
    st.builds(Point, st.integers(), st.integers()),
    st.builds(Span, st.dates(), st.dates()),
    st.builds(fractions.Fraction, st.integers(), st.integers(1, 10**6)),
)
custom_values = values(custom_hashables) | st.dictionaries(st.text(), any_value, max_size=3).map(
    Bag
)


@settings(ROBUST, max_examples=60)
@given(st.lists(custom_values, max_size=3) | custom_values)
def test_custom_types_round_trip_nested(value: Any) -> None:
    assert same(round_trip(value, CUSTOM), value)


CUSTOM_INSTANCES = [
    Point(1, -2),
    Span(dt.date(2020, 1, 1), dt.date(2021, 1, 1)),
    fractions.Fraction(1, 3),
    Bag(a=1, b=[2]),
    Level.HIGH,
]


@pytest.mark.parametrize(
    "place", ["alone", "in_list", "in_tuple", "dict_value", "dict_value_int_key", "deep"]
)
@pytest.mark.parametrize("item", CUSTOM_INSTANCES, ids=lambda v: type(v).__name__)
def test_each_registered_type_round_trips_in_every_container(item: Any, place: str) -> None:
    value = PLACES[place](item)
    got = round_trip(value, CUSTOM)
    assert same(got, value)


@pytest.mark.parametrize("item", [i for i in CUSTOM_INSTANCES if type(i) is not Bag], ids=repr)
def test_registered_hashable_types_round_trip_as_keys_and_set_items(item: Any) -> None:
    for value in ({item: 1}, {item}, frozenset({item}), {"x": {item: [item]}}):
        assert same(round_trip(value, CUSTOM), value)


def test_custom_types_survive_reopening_an_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "custom.db"
    value = {
        "points": [Point(1, 2), Point(3, 4)],
        Point(0, 0): (Span(dt.date(2020, 1, 1), dt.date(2020, 2, 1)), fractions.Fraction(2, 3)),
        "bag": Bag(inner=[Bag(k=1)]),
        "tuple": (fractions.Fraction(-1, 7),),
    }
    with Store(Sqlite3(path), codec=custom_codec()) as store:
        store.storage("custom").v = value
    with Store(Sqlite3(path), codec=custom_codec()) as store:
        assert same(store.storage("custom").__history__()["v"][0].data, value)


def test_decoding_an_unregistered_custom_tag_is_a_decode_error() -> None:
    data = CUSTOM.encode([Point(1, 2)])
    with pytest.raises(everstore.DecodeError):
        Codec().decode(data)


# -- deltas: every past value is rebuilt exactly, after reopening too ---------------


@contextlib.contextmanager
def _backends(kind: str) -> Iterator[Callable[[], Backend]]:
    """Backend factory on one log (a file for SQLite); one per hypothesis example."""
    if kind == "memory":
        shared = Memory()
        yield lambda: shared
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "delta.db"
        yield lambda: Sqlite3(path)


def _check_history(
    make: Callable[[], Backend], store: Store, field: str, expected: list[Any]
) -> None:
    for where in (store, Store(make())):
        s = where.storage("delta")
        history = s.__history__()[field]
        assert len(history) == len(expected)
        for position, (entry, wanted) in enumerate(zip(history, expected, strict=True)):
            assert same(entry.data, wanted), (position, entry.data, wanted)
        with s:
            # Read inside `with`, a list, dict or set records its changes (a subclass);
            # its copy is the plain type.
            assert same(copy.deepcopy(getattr(s, field)), expected[-1])
        if where is not store:
            where.close()


BASE_LIST = list(range(40))
list_items = values(max_leaves=4)
list_steps = st.lists(
    st.tuples(
        st.sampled_from(["append", "extend", "extend", "setitem"]),
        st.lists(list_items, min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=8,
)


def _change_list(target: list[Any], op: str, items: list[Any]) -> None:
    if op == "append":
        target.append(copy.deepcopy(items[0]))
    elif op == "extend":
        target.extend(copy.deepcopy(items))
    else:
        target[len(target) // 2] = copy.deepcopy(items[0])


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(ROBUST, max_examples=15)
@given(start=st.lists(list_items, max_size=5), steps=list_steps)
def test_list_history_is_rebuilt_exactly(
    kind: str, start: list[Any], steps: list[tuple[str, list[Any]]]
) -> None:
    with _backends(kind) as make:
        store = Store(make())
        s = store.storage("delta")
        s.lst = BASE_LIST + start
        expected = [copy.deepcopy(BASE_LIST + start)]
        for op, items in steps:
            with s:
                _change_list(s.lst, op, items)
            after = copy.deepcopy(expected[-1])
            _change_list(after, op, items)
            if not same(after, expected[-1]):
                expected.append(after)
        _check_history(make, store, "lst", expected)
        store.close()


def _has_nan(value: Any) -> bool:
    if type(value) is float or type(value) is decimal.Decimal:
        return bool(value != value)
    if type(value) is complex:
        return math.isnan(value.real) or math.isnan(value.imag)
    if type(value) is tuple or type(value) is frozenset:
        return any(_has_nan(item) for item in value)
    return False


# NaN keys are left to test_dict_with_a_nan_key_can_be_changed below (and, as for sets,
# a stored copy of a NaN key never equals the original)
dict_keys_without_nan = hashables().filter(lambda key: not _has_nan(key))
BASE_DICT: dict[Any, Any] = {f"key{i}": i for i in range(30)}
dict_changes = st.lists(
    st.tuples(
        st.sampled_from(["set", "set", "delete"]),
        st.sampled_from(list(BASE_DICT)) | dict_keys_without_nan,
        list_items,
    ),
    min_size=1,
    max_size=3,
)


def _change_dict(target: dict[Any, Any], changes: list[tuple[str, Any, Any]]) -> None:
    for op, key, item in changes:
        if op == "set":
            target[key] = copy.deepcopy(item)
        else:
            target.pop(key, None)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(ROBUST, max_examples=15)
@given(
    start=st.dictionaries(dict_keys_without_nan, list_items, max_size=4),
    steps=st.lists(dict_changes, min_size=1, max_size=6),
)
def test_dict_history_is_rebuilt_exactly(
    kind: str, start: dict[Any, Any], steps: list[list[tuple[str, Any, Any]]]
) -> None:
    with _backends(kind) as make:
        store = Store(make())
        s = store.storage("delta")
        s.d = {**BASE_DICT, **start}
        expected = [copy.deepcopy({**BASE_DICT, **start})]
        for changes in steps:
            with s:
                _change_dict(s.d, changes)
            after = copy.deepcopy(expected[-1])
            _change_dict(after, changes)
            if not same(after, expected[-1]):
                expected.append(after)
        _check_history(make, store, "d", expected)
        store.close()


@pytest.mark.parametrize(
    "nan_key",
    [math.nan, decimal.Decimal("NaN"), (1, math.nan), complex(0, math.nan)],
    ids=["float", "Decimal", "tuple", "complex"],
)
def test_dict_with_a_nan_key_can_be_changed(store: Store, nan_key: Any) -> None:
    s = store.storage("delta")
    s.d = {nan_key: "nan", **BASE_DICT}
    with s:
        s.d["key0"] = "changed"
    history = s.__history__()["d"]
    assert len(history) == 2
    assert same(history[1].data, {nan_key: "nan", **BASE_DICT, "key0": "changed"})


BASE_SET = set(range(1000, 1030))
# NaN items are left out: a stored set holds copies, and a copy of an item holding NaN
# never equals it, so s.add(item) grows the stored set where it did not grow the original
items_without_nan = hashables().filter(lambda item: not _has_nan(item))
set_changes = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "discard"]),
        st.sampled_from(sorted(BASE_SET)) | items_without_nan,
    ),
    max_size=3,
)


def _change_set(target: set[Any], changes: list[tuple[str, Any]]) -> None:
    for op, item in changes:
        if op == "add":
            target.add(item)
        else:
            target.discard(item)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(ROBUST, max_examples=15)
@given(
    start=st.sets(items_without_nan, max_size=4),
    steps=st.lists(set_changes, min_size=1, max_size=6),
)
def test_set_history_is_rebuilt_exactly(
    kind: str, start: set[Any], steps: list[list[tuple[str, Any]]]
) -> None:
    with _backends(kind) as make:
        store = Store(make())
        s = store.storage("delta")
        s.st = BASE_SET | start
        expected = [BASE_SET | start]
        for changes in steps:
            with s:
                _change_set(s.st, changes)
            after = set(expected[-1])
            _change_set(after, changes)
            if not same(after, expected[-1]):
                expected.append(after)
        _check_history(make, store, "st", expected)
        store.close()


def test_small_changes_to_large_containers_are_stored_small(
    make_backend: Callable[[], Backend],
) -> None:
    """The delta path is really taken (otherwise the tests above would prove little)."""
    store = Store(make_backend())
    s = store.storage("delta")
    s.lst = [f"item number {i}" for i in range(1000)]
    s.d = {f"key number {i}": i for i in range(1000)}
    s.st = {f"member {i}" for i in range(1000)}
    with s:
        s.lst.append("one more item")
        s.d["key number 5"] = "five"
        s.st.discard("member 7")
        s.st.add(b"new")
    facts = store.backend.facts_since(0)
    full = {fact.field: len(fact.data) for fact in facts[:3]}
    changed = {fact.field: len(fact.data) for fact in facts[3:]}
    assert set(changed) == {"lst", "d", "st"}
    for field, size in changed.items():
        assert size < 200 < full[field], (field, size, full[field])
    fresh = Store(make_backend()).storage("delta")
    with fresh:
        assert fresh.lst[-1] == "one more item" and len(fresh.lst) == 1001
        assert fresh.d["key number 5"] == "five"
        assert "member 7" not in fresh.st and b"new" in fresh.st
    assert len(fresh.__history__()["lst"][0].data) == 1000


@pytest.mark.parametrize(
    "number", [0, -1, 7, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**40, True]
)
def test_a_store_writes_ints_exactly_as_the_codec_encodes_them(number: int) -> None:
    # Store.write encodes plain ints itself (the commonest write); the bytes must be
    # the codec's, on both sides of the int64 range.
    store = everstore.Store()
    store.storage("n").value = number
    (fact,) = store.backend.facts_since(0)
    assert fact.data == everstore.default_codec.encode(number)
    assert store.storage("n").value == number
    assert type(store.storage("n").value) is type(number)
    assert type(everstore.Store().codec.decode(fact.data)) is type(number)


@pytest.mark.parametrize(
    "value",
    [
        {"a": math.inf, "b": [1.5, -math.inf]},
        [None, math.nan],
        {"none": None, "text": "null", "nested": [{"x": math.inf}]},
        [[], {}, [None]],
    ],
)
def test_plain_json_containers_with_nulls_or_non_finite_floats_round_trip(value: Any) -> None:
    # orjson writes inf and nan as null: the plain form is used only when it decodes
    # back to the value itself.
    codec = Codec()
    assert same(codec.decode(codec.encode(value)), value)
