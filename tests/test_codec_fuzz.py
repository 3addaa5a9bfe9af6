"""The codec's decoder on damaged bytes: arbitrary bytes, and valid encodings (of
every supported type, deltas included) with bytes flipped, inserted or deleted.
Decoding returns a value or raises DecodeError, never another exception."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import random
import uuid
import zoneinfo
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from everstore import Codec, DecodeError

CODEC = Codec()

SAMPLES: list[Any] = [
    None,
    True,
    0,
    -(2**70),
    2**5000,
    1.5,
    float("nan"),
    float("-inf"),
    "text é",
    b"\x00\xffbytes",
    bytearray(b"ba"),
    complex(1, -2),
    decimal.Decimal("1.25"),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2), "X")),
    dt.date(2024, 3, 1),
    dt.time(12, 30, tzinfo=dt.UTC),
    uuid.UUID(int=12345),
    random.Random(7),
    (1, 2, (3,)),
    frozenset({1, 2}),
    {"a", "b"},
    [1, [2, [3, {"k": (4,)}]]],
    {"a": 1, "b": [1, 2], "c": {"d": None}},
    {1: "int key", (1, 2): "tuple key"},
    [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
]

# (old value, new value): encode_change makes a delta of each
CHANGES: list[tuple[Any, Any]] = [
    (["a"], ["a", "b"]),
    ([1, (2,)], [1, (2,), {3}]),
    ({"a": 1}, {"a": 2, "b": (1,)}),
    ({"a": 1, "b": 2}, {"b": 2}),
    ({1, 2}, {2, 3}),
]


def _encodings() -> list[bytes]:
    found = [CODEC.encode(value) for value in SAMPLES]
    for old, new in CHANGES:
        delta = CODEC.encode_change(5, CODEC.encode(old), new)
        assert delta is not None and CODEC.is_delta(delta)
        found.append(delta)
    return found


ENCODINGS = _encodings()


def _decode_or_typed_error(data: bytes) -> None:
    """Every entry point a reader takes: a typed error or a value."""
    with contextlib.suppress(DecodeError):
        CODEC.decode(data)
    with contextlib.suppress(DecodeError):
        CODEC.decode_many([data])
    if CODEC.is_delta(data):
        for base in ([], {}, set(), Codec.NO_VALUE):
            with contextlib.suppress(DecodeError):
                CODEC.decode_fact(data, base, value_at=lambda seq: [])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ENCODINGS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(("flip", "insert", "delete", "replace")))
        at = draw(st.integers(0, len(data)))
        if action == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and data:
            del data[at : at + draw(st.integers(1, 4))]
        elif action == "replace" and at < len(data):
            data[at] = draw(st.sampled_from(b'[]{}",:~0123456789-.eE\x00\x01ntfal'))
    return bytes(data)


def test_the_samples_round_trip() -> None:
    # The mutations below start from valid encodings: they must be valid first.
    for value, data in zip(SAMPLES, ENCODINGS, strict=False):
        assert CODEC.encode(CODEC.decode(data)) == data, value


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _decode_or_typed_error(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"", b"~", b"\x01"]), st.binary(max_size=120))
def test_tagged_and_delta_prefixes_with_arbitrary_bodies(prefix: bytes, body: bytes) -> None:
    _decode_or_typed_error(prefix + body)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_encodings_decode_or_raise_decode_error(data: bytes) -> None:
    _decode_or_typed_error(data)


TAGS = ["~i", "~ix", "~f", "~c", "~b", "~ba", "~D", "~dt", "~da", "~tm", "~u", "~r"]
TAGS += ["~t", "~s", "~fs", "~d", "~x", "~zz"]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.sampled_from(TAGS), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TAGS), JSON)
def test_every_tag_with_any_payload(tag: str, payload: Any) -> None:
    body = orjson.dumps({tag: payload})
    _decode_or_typed_error(b"~" + body)
    _decode_or_typed_error(b"~" + orjson.dumps([{tag: payload}, [{tag: payload}]]))
    _decode_or_typed_error(b'\x01[3,"D",' + orjson.dumps({tag: payload}) + b",[]]")


def test_known_damage_raises_decode_error() -> None:
    # Each of these raised something other than DecodeError before it was fixed.
    for data in (
        b'~{"~D":"not a number"}',
        b'~{"~c":[1e400,0]}',
        b'~{"~dt":["2024-01-01T00:00:00",0,["zone","/"]]}',
        b'~{"~dt":["2024-01-01T00:00:00",0,["zone","Nowhere/Atall"]]}',
    ):
        try:
            CODEC.decode(data)
        except DecodeError:
            continue
        raise AssertionError(f"{data!r} decoded")


def test_deep_nesting_decodes_without_recursion_error() -> None:
    depth = 100_000
    for data in (
        b"[" * depth + b"]" * depth,
        b"~" + b'{"~t":[' * depth + b"]}" * depth,
        b"~" + b"[" * depth,  # unterminated
    ):
        with contextlib.suppress(DecodeError):
            CODEC.decode(data)
