"""Keys <-> namespace parts: any str and any int, reversibly, as valid namespace parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from everstore import Store
from everstore.engine import namespace_path
from everstore.errors import InvalidNameError
from everstore.models import ModelStore, decode_key, encode_key


@given(st.one_of(st.text(), st.integers()))
def test_every_key_maps_to_a_valid_part_and_back(key: str | int) -> None:
    part = encode_key(key)
    namespace_path(("people", part))  # raises if the part is not a valid namespace part
    back = decode_key(part)
    assert back == key and type(back) is type(key)


@given(st.text(), st.text())
def test_different_keys_get_different_parts(a: str, b: str) -> None:
    assert (encode_key(a) == encode_key(b)) == (a == b)


def test_readable_keys_stay_readable_and_special_ones_are_escaped() -> None:
    assert encode_key("denis") == "denis"
    assert encode_key("Zoë café 中文") == "Zoë café 中文"
    assert encode_key("a/b") == "a%2Fb"
    assert encode_key("100%") == "100%25"
    assert encode_key("") == "%"
    assert encode_key("#1") == "%231" and encode_key(1) == "#1"
    assert encode_key("a#b") == "a#b"  # only a leading '#' is escaped
    assert encode_key("tab\there") == "tab%09here"
    assert encode_key("\ud800") == "%ED%A0%80"  # a lone surrogate, too
    assert encode_key(-12) == "#-12" and encode_key(2**100) == f"#{2**100}"


def test_bad_keys_and_parts_are_refused() -> None:
    for bad in (True, 1.5, None, b"x", ("a",)):
        with pytest.raises(TypeError):
            encode_key(bad)  # type: ignore[arg-type]
    for part in ("%2", "%zz", "#x", "%C3"):
        with pytest.raises(InvalidNameError):
            decode_key(part)


class Thing:
    def __init__(self, id: str | int, n: int = 0) -> None:
        self.id = id
        self.n = n


@pytest.mark.parametrize("key", ["", "a/b", "%", "#7", 7, -7, "line\nbreak", "..", "\x00"])
def test_any_key_stores_and_lists(key: str | int) -> None:
    store = Store()
    things = ModelStore(Thing, store=store, prefix=("things",))
    things.set(Thing(key, 1))
    things.set(Thing("plain", 2))
    assert key in things and things[key].n == 1
    assert sorted(map(repr, things.keys())) == sorted([repr(key), "'plain'"])
    reopened = ModelStore(Thing, store=store, prefix=("things",))
    assert reopened[key].n == 1 and reopened[key].__key__ == key
