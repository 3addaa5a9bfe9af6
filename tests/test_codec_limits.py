"""The codec's limits: how deep values nest, and how large ints are.

Whatever the codec accepts must read back in any process: one with Python's default
recursion limit and int/str conversion limit, in any thread, with the caller's stack
already well used. So a too-deep value is refused when written (nothing is stored),
and what everstore 0.1.0 wrote beyond today's limits still decodes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deep_values import Box, box_codec, unwrap
from everstore import Codec, DecodeError, Store, UnsupportedValueError

CODEC = Codec()
DEPTH = Codec.MAX_DEPTH


@pytest.fixture(params=["memory", "sqlite"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The ``store`` fixture of conftest, on Memory and SQLite."""
    return str(request.param)


# Each wraps a value in one more level; the leaf is what the innermost level holds.
WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "list": lambda inner: [inner],
    "tuple": lambda inner: (inner,),
    "dict": lambda inner: {"k": inner},
    "int_key_dict": lambda inner: {1: inner},  # {"~d": [[1, ...]]}: 3 JSON levels each
    "set": lambda inner: {inner},
    "frozenset": lambda inner: frozenset({inner}),
    "box": Box,
}
HASHABLE_ONLY = {"set", "frozenset"}  # these hold hashable items: tuples inside


def nest(kind: str, levels: int, leaf: Any = 1) -> Any:
    """``levels`` containers of ``kind``, one in the other (sets hold frozensets)."""
    wrap = WRAPPERS[kind]
    value = leaf
    for level in range(levels):
        inside_the_set = kind in HASHABLE_ONLY and level < levels - 1
        value = frozenset({value}) if inside_the_set else wrap(value)
    return value


def mixed(levels: int, leaf: Any = 1) -> Any:
    """Every kind of level in turn, the costliest (a dict with int keys) most often."""
    order = ["int_key_dict", "list", "int_key_dict", "tuple", "dict", "int_key_dict", "box"]
    value = leaf
    for level in range(levels):
        value = WRAPPERS[order[level % len(order)]](value)
    return value


# A leaf with the deepest tree a scalar has ({"~dt": [..., ["fixed", ...]]}).
DEEP_LEAF = dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2), "CEST"))
KINDS = [*WRAPPERS, "mixed"]


def make(kind: str, levels: int, leaf: Any = 1) -> Any:
    return mixed(levels, leaf) if kind == "mixed" else nest(kind, levels, leaf)


# -- too deep: refused when written --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("levels", [DEPTH + 1, 400])
def test_a_value_nested_too_deeply_is_refused_with_the_limit(kind: str, levels: int) -> None:
    value = make(kind, levels)
    with pytest.raises(UnsupportedValueError) as caught:
        box_codec().encode(value)
    assert isinstance(caught.value, TypeError)
    assert f"nested more than {DEPTH} levels deep" in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_the_deepest_value_allowed_round_trips(kind: str) -> None:
    codec = box_codec()
    value = make(kind, DEPTH, DEEP_LEAF)
    encoded = codec.encode(value)
    assert codec.decode(encoded) == value
    assert unwrap(codec.decode(encoded), DEPTH) == DEEP_LEAF


def test_a_deep_value_inside_a_plain_one_is_refused_too() -> None:
    """Plain JSON (lists and str-keyed dicts) takes a fast path: it is checked too."""
    for value in ([1, "a", nest("list", DEPTH)], {"a": nest("dict", DEPTH)}):
        with pytest.raises(UnsupportedValueError, match=f"more than {DEPTH} levels"):
            CODEC.encode(value)
    assert CODEC.encode([1, nest("list", DEPTH - 1)]).startswith(b"[1,[[[")


def test_a_cycle_is_refused_with_the_same_message() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(UnsupportedValueError, match="contains itself"):
        CODEC.encode(cyclic)


def test_a_change_that_makes_a_value_too_deep_is_refused() -> None:
    old = [nest("list", DEPTH - 1)]
    with pytest.raises(UnsupportedValueError, match=f"more than {DEPTH} levels"):
        CODEC.encode_change(1, CODEC.encode(old), [*old, nest("list", DEPTH)])


@pytest.mark.parametrize("kind", ["list", "tuple", "int_key_dict", "frozenset"])
def test_a_value_too_deep_leaves_no_trace_in_a_store(store: Store, kind: str) -> None:
    s = store.storage("deep")
    s.before = 1
    last = store.last_seq
    with pytest.raises(UnsupportedValueError, match=f"more than {DEPTH} levels"):
        s.value = make(kind, 400)
    with pytest.raises(UnsupportedValueError), store.transaction():
        s.other = 2
        s.value = make(kind, DEPTH + 1)
    assert store.last_seq == last
    assert s.__fields__() == ["before"]


# -- what is accepted reads back anywhere ----------------------------------------------


def run_python(code: str, stdin: bytes = b"") -> str:
    """Run ``code`` in a fresh interpreter (default limits); return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=Path(__file__).resolve().parent,  # "-c" code imports from here: deep_values
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


# Decodes each line of stdin (hex) in a new thread, from 900 frames deep (of the
# default limit of 1000), and prints the innermost leaf of each value.
DECODE_WITH_STACK_IN_USE = """
    import sys, threading
    from deep_values import box_codec, unwrap

    codec = box_codec()
    assert sys.getrecursionlimit() == 1000 and sys.get_int_max_str_digits() == 4300

    def decode_from_deep_in_the_stack(data, frames):
        if frames:
            return decode_from_deep_in_the_stack(data, frames - 1)
        return unwrap(codec.decode(data))

    results = []
    for line in sys.stdin.read().split():
        data = bytes.fromhex(line)
        thread = threading.Thread(
            target=lambda: results.append(decode_from_deep_in_the_stack(data, 900))
        )
        thread.start()
        thread.join()
    for leaf in results:
        print(repr(leaf))
"""


def test_the_deepest_values_allowed_decode_in_a_fresh_process_from_a_deep_stack() -> None:
    codec = box_codec()
    lines = [codec.encode(make(kind, DEPTH, DEEP_LEAF)).hex() for kind in KINDS]
    out = run_python(DECODE_WITH_STACK_IN_USE, "\n".join(lines).encode())
    assert out.splitlines() == [repr(DEEP_LEAF)] * len(KINDS)


def _deepest_changes() -> list[tuple[Any, Any]]:
    """(before, after) pairs whose change is stored as a delta that holds a value
    nested as deeply as allowed (a delta nests its payload deeper than the value)."""
    deepest_item = make("mixed", DEPTH - 1, DEEP_LEAF)
    deepest_member = frozenset({make("tuple", DEPTH - 2, DEEP_LEAF)})
    return [
        ([0], [0, deepest_item]),
        ({0: 0}, {0: 0, 1: deepest_item}),
        ({0: 0}, {0: 0, 1: make("int_key_dict", DEPTH - 1, DEEP_LEAF)}),  # the most JSON
        ({"a": 0}, {"a": 0, "b": deepest_item}),
        ({"a": deepest_item, "b": 0}, {"a": deepest_item}),
        ({0}, {0, deepest_member}),
        ({"x" * 2000, deepest_member}, {"x" * 2000}),  # smaller than the full value
    ]


def test_deltas_of_the_deepest_values_decode() -> None:
    codec = box_codec()
    for before, after in _deepest_changes():
        old = codec.encode(before)
        delta = codec.encode_change(5, old, after)
        assert delta is not None and codec.is_delta(delta)
        assert codec.decode_fact(delta, codec.decode(old), lambda seq: None) == after
        before_again = codec.decode(old)
        assert codec.decode_fact(delta, Codec.NO_VALUE, lambda seq, v=before_again: v) == after


# -- what 0.1.0 wrote deeper than the limit still decodes ----------------------------


def old_nested(levels: int, open_: bytes, close: bytes, inner: bytes) -> bytes:
    """Tagged bytes as 0.1.0 wrote them for ``levels`` levels around ``inner``."""
    return b"~" + open_ * levels + inner + close * levels


@pytest.mark.parametrize(
    ("open_", "close", "kind"),
    [
        (b'{"~t":[', b"]}", tuple),
        (b"[", b"]", list),
        (b'{"~d":[[1,', b"]]}", dict),
        (b'{"~x":["box",', b"]}", Box),
    ],
    ids=["tuple", "list", "int_key_dict", "box"],
)
@pytest.mark.parametrize("levels", [400, 3000])  # 3000: past orjson's 1024 JSON levels
def test_values_0_1_0_nested_deeper_still_decode(
    open_: bytes, close: bytes, kind: type, levels: int
) -> None:
    data = old_nested(levels, open_, close, b'"leaf"')
    value = box_codec().decode(data)
    assert type(value) is kind
    assert unwrap(value, levels) == "leaf"


def test_a_deep_0_1_0_value_decodes_in_a_fresh_process_from_a_deep_stack() -> None:
    data = [
        old_nested(400, b'{"~t":[', b"]}", b"7"),
        old_nested(600, b'{"~d":[[1,', b"]]}", b'"deep"'),
        old_nested(5000, b'{"~fs":[', b"]}", b'{"~t":[2]}'),
    ]
    out = run_python(DECODE_WITH_STACK_IN_USE, b"\n".join(d.hex().encode() for d in data))
    assert out.splitlines() == ["7", "'deep'", "2"]


def test_everything_decodes_exactly_inside_a_0_1_0_value_nested_past_1024_levels() -> None:
    rich = {
        "text": 'quote " backslash \\ newline \n tab \t snow \u2603 \U0001f600 \x00',
        "numbers": [0, -1, 1.5, -2.5e-300, 1e300, 2**63, -(2**70), float("inf")],
        (1, "t"): {None, True, False, b"bytes", frozenset()},
        "empty": [[], {}, (), ""],
        "when": DEEP_LEAF,
        "rng": random.Random(3),
    }
    levels = 1100
    data = old_nested(levels, b"[", b"]", CODEC.encode(rich)[1:])
    got = unwrap(CODEC.decode(data), levels)
    assert got.pop("rng").getstate() == rich.pop("rng").getstate()
    assert got == rich


@pytest.mark.parametrize(
    "damage",
    [b"[1,]", b"[1 2]", b'{"a"}', b"[tru]", b'["open', b"[1]]", b"[", b"[01]", b'{"a":1,}'],
)
def test_damaged_deep_bytes_are_a_decode_error(damage: bytes) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(old_nested(1100, b"[", b"]", damage))


# -- ints of any size ---------------------------------------------------------------


@contextlib.contextmanager
def int_digits_limit(limit: int) -> Iterator[None]:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(limit)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


HUGE_INTS = [10**5000, -(10**20000), 2**100000, -(2**100000) + 12345, 2**2048, -(2**2048)]
BIG_INTS = [2**64, -(2**63) - 1, 10**40, 2**2048 - 1, -(2**2048) + 1, 10**616]


@pytest.mark.parametrize("number", HUGE_INTS + BIG_INTS, ids=lambda n: f"{n.bit_length()}bits")
@pytest.mark.parametrize("limit", [4300, 640])  # the default, and the smallest allowed
def test_ints_of_any_size_round_trip_whatever_the_conversion_limit(number: int, limit: int) -> None:
    with int_digits_limit(limit):
        encoded = CODEC.encode(number)
        assert CODEC.decode(encoded) == number
        assert CODEC.encode(CODEC.decode(encoded)) == encoded  # canonical
        for wrapped in ([number], (number,), {number: number}, {number}):
            assert CODEC.decode(CODEC.encode(wrapped)) == wrapped


def test_big_ints_are_written_as_0_1_0_did_and_huge_ones_in_hex() -> None:
    assert CODEC.encode(2**64) == b'~{"~i":"18446744073709551616"}'
    assert CODEC.encode(-(2**2048) + 1).startswith(b'~{"~i":"-3231700607131100730')
    assert CODEC.encode(2**2048) == b'~{"~ix":"1' + b"0" * 512 + b'"}'
    assert CODEC.encode(-(2**2048)) == b'~{"~ix":"-1' + b"0" * 512 + b'"}'


def test_huge_ints_decode_in_a_fresh_process_with_the_default_limit() -> None:
    code = """
        import sys
        from everstore import Codec
        for line in sys.stdin.read().split():
            number = Codec().decode(bytes.fromhex(line))
            print(format(number, "x"))
    """
    lines = [CODEC.encode(number).hex() for number in HUGE_INTS]
    out = run_python(code, "\n".join(lines).encode())
    assert out.split() == [format(number, "x") for number in HUGE_INTS]


def old_decimal(number: int) -> bytes:
    """0.1.0's bytes for a big int (it needed a raised limit past 4300 digits)."""
    with int_digits_limit(0):
        return b'~{"~i":"' + str(number).encode() + b'"}'


@pytest.mark.parametrize(
    "number",
    [
        2**64,
        -(2**64),
        10**4299,
        10**4300,
        -(10**20000) + 987654321,
        random.Random(1).getrandbits(60000),
    ],
    ids=lambda n: f"{n.bit_length()}bits",
)
def test_0_1_0_decimal_ints_still_decode_whatever_their_length(number: int) -> None:
    with int_digits_limit(4300):
        assert CODEC.decode(old_decimal(number)) == number
        assert CODEC.decode(b"~[" + old_decimal(number)[1:] + b"]") == [number]


@pytest.mark.parametrize(
    "data",
    [
        b'~{"~i":"' + b"1" * 5000 + b'x"}',
        b'~{"~i":"' + b"1" * 3000 + b"\xd9\xa1" * 3000 + b'"}',  # Arabic-Indic digits
        b'~{"~i":"--' + b"1" * 5000 + b'"}',
        b'~{"~ix":"12g"}',
        b'~{"~ix":12}',
    ],
    ids=["letter", "non_ascii_digits", "two_signs", "bad_hex", "hex_not_a_string"],
)
def test_damaged_ints_are_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(data)
