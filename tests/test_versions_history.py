"""everstore.versions: reading the past -- history (from a digest, by user, at most
max_items), as_of (the commit time in the log), records at an older digest, and
diff (records added/removed/changed; snapshots structurally; across kinds)."""

from __future__ import annotations

import datetime

import pytest

from everstore.versions import (
    DbEngine,
    MissingEntryError,
    MissingRecordError,
    MissingVersionError,
)
from versions_support import SteppedClock, memory_engine


@pytest.fixture
def engine() -> DbEngine:
    """An engine on a fresh in-memory store with the tenant "t" initialised."""
    made = memory_engine()
    made.init("t")
    return made


# -- history, as_of ------------------------------------------------------------------------


def test_history_from_a_digest_and_at_most_max_items(engine: DbEngine) -> None:
    digests = [engine.save("t", "u", "e", i) for i in range(6)]
    newest_first = digests[::-1]
    assert engine.history("t", "e") == newest_first
    assert engine.history("t", "e", max_items=2) == newest_first[:2]
    assert engine.history("t", "e", digests[3]) == digests[3::-1]
    assert engine.history("t", "e", digests[3], 2) == [digests[3], digests[2]]
    assert engine.history("t", "e", digests[0]) == [digests[0]]
    assert engine.history("t", "e", max_items=0) == []
    assert engine.history("t", "never") == []
    with pytest.raises(MissingVersionError):
        engine.history("t", "never", digests[0])


def test_history_filtered_by_user(engine: DbEngine) -> None:
    users = ["ann", "bob", "ann", "cy", "ann", "bob"]
    digests = [engine.save("t", user, "e", i) for i, user in enumerate(users)]
    assert engine.history("t", "e", user_id="ann") == [digests[4], digests[2], digests[0]]
    assert engine.history("t", "e", user_id="bob", max_items=1) == [digests[5]]
    assert engine.history("t", "e", digests[3], user_id="bob") == [digests[1]]
    assert engine.history("t", "e", user_id="nobody") == []
    for record, user in enumerate(users):
        engine.put("t", user, "r", record, user)
    assert len(engine.history("t", "r", user_id="ann")) == 3


def test_as_of_reads_the_version_in_force_then() -> None:
    clock = SteppedClock()
    engine = memory_engine(clock=clock)
    engine.init("t")
    first = clock.tick()
    v1 = engine.save("t", "u", "e", "one")
    second = clock.tick()
    engine.save("t", "u", "e", "two")
    clock.tick()
    engine.delete_entry("t", "u", "e")
    assert engine.load("t", "e", as_of=first) == "one"
    assert engine.load("t", "e", as_of=(first + second) / 2) == "one"
    assert engine.load("t", "e", as_of=second) == "two"
    assert engine.info("t", "e", as_of=first + 1).digest == v1
    at = datetime.datetime.fromtimestamp(first + 1, datetime.UTC)
    assert engine.load("t", "e", as_of=at) == "one"
    with pytest.raises(MissingEntryError):
        engine.load("t", "e", as_of=first - 1)
    with pytest.raises(MissingEntryError):
        engine.load("t", "e", as_of=clock.now + 100)  # deleted by then


def test_as_of_on_records() -> None:
    clock = SteppedClock()
    engine = memory_engine(clock=clock)
    engine.init("t")
    first = clock.tick()
    engine.put("t", "u", "r", "a", 1)
    clock.tick()
    engine.put("t", "u", "r", "b", 2)
    assert engine.get("t", "r", as_of=first) == [1]
    assert engine.items("t", "r", as_of=first + 5) == {"a": 1}
    assert engine.count("t", "r", as_of=clock.now) == 2
    with pytest.raises(MissingRecordError):
        engine.get("t", "r", "b", as_of=first)
    with pytest.raises(MissingEntryError):
        engine.get("t", "r", as_of=first - 5)


def test_records_at_an_older_digest(engine: DbEngine) -> None:
    engine.put_many("t", "u", "r", {"a": 1, "b": 2})
    old = engine.get_digest("t", "r")
    engine.put("t", "u", "r", "a", 10)
    engine.remove("t", "u", "r", "b")
    engine.put("t", "u", "r", "c", 3)
    assert engine.get("t", "r", "a", old) == 1
    assert engine.get("t", "r", digest=old) == [1, 2]
    assert engine.items("t", "r", old) == {"a": 1, "b": 2}
    assert engine.count("t", "r", old) == 2
    assert engine.items("t", "r") == {"a": 10, "c": 3}
    with pytest.raises(MissingRecordError):
        engine.get("t", "r", "c", old)


# -- diff -------------------------------------------------------------------------------------


def test_diff_of_records(engine: DbEngine) -> None:
    engine.put_many("t", "u", "r", {"a": 1, "b": {"x": 2}, "c": 3, 7: "seven"})
    old = engine.get_digest("t", "r")
    engine.remove("t", "u", "r", "a")
    engine.put_many("t", "u", "r", {"b": {"x": 20}, "d": [4], 7: "seven"})
    new = engine.get_digest("t", "r")
    diff = engine.diff("t", "r", old, new)
    assert diff.records and diff and (diff.old, diff.new) == (old, new)
    assert diff.added == {"d": [4]}
    assert diff.removed == {"a": 1}
    assert diff.changed == {"b": ({"x": 2}, {"x": 20})}
    assert len(diff.changes) == 3
    back = engine.diff("t", "r", new, old)
    assert back.added == {"a": 1} and back.removed == {"d": [4]}
    assert back.changed == {"b": ({"x": 20}, {"x": 2})}
    same = engine.diff("t", "r", old, old)
    assert not same and same.changes == []


def test_diff_of_snapshots_is_structural(engine: DbEngine) -> None:
    old = engine.save("t", "u", "e", {"a": [1, 2], "b": {"x": 1, "z": [0]}, "c": 1})
    new = engine.save("t", "u", "e", {"a": [1, 3, 4], "b": {"x": 2, "y": 3, "z": [0]}})
    diff = engine.diff("t", "e", old, new)
    assert not diff.records
    assert diff.changed == {("a", 1): (2, 3), ("b", "x"): (1, 2)}
    assert diff.added == {("a", 2): 4, ("b", "y"): 3}
    assert diff.removed == {("c",): 1}
    shrunk = engine.save("t", "u", "e", {"a": [1]})
    assert engine.diff("t", "e", new, shrunk).removed == {
        ("a", 1): 3,
        ("a", 2): 4,
        ("b",): {
            "x": 2,
            "y": 3,
            "z": [0],
        },
    }
    scalar = engine.save("t", "u", "e", "whole")
    assert engine.diff("t", "e", shrunk, scalar).changed == {(): ({"a": [1]}, "whole")}


def test_diff_between_kinds(engine: DbEngine) -> None:
    snap = engine.save("t", "u", "e", {"a": 1})
    gone = engine.delete_entry("t", "u", "e")
    engine.put("t", "u", "e", "k", "v")
    recs = engine.get_digest("t", "e")
    assert engine.diff("t", "e", snap, gone).changed == {(): ({"a": 1}, None)}
    assert engine.diff("t", "e", gone, recs).changed == {(): (None, {"k": "v"})}
    assert engine.diff("t", "e", snap, recs).changed == {(): ({"a": 1}, {"k": "v"})}
    assert not engine.diff("t", "e", gone, gone)


class Plain:
    """A plain class without __eq__: two equal instances are not == in Python."""

    def __init__(self, x: int) -> None:
        self.x = x


# A value that is not == to an equal copy of itself (nan; a plain object without
# __eq__) is no change when its stored form is the same.
def test_an_unchanged_nan_is_no_change(engine: DbEngine) -> None:
    old = engine.save("t", "u", "e", {"x": float("nan"), "y": 1})
    new = engine.save("t", "u", "e", {"x": float("nan"), "y": 2})
    assert not engine.diff("t", "e", old, old)
    assert [change.path for change in engine.diff("t", "e", old, new).changes] == [("y",)]


def test_an_unchanged_plain_object_is_no_change(engine: DbEngine) -> None:
    old = engine.save("t", "u", "e", {"obj": Plain(1), "y": 1})
    new = engine.save("t", "u", "e", {"obj": Plain(1), "y": 2})
    assert not engine.diff("t", "e", old, old)
    assert [change.path for change in engine.diff("t", "e", old, new).changes] == [("y",)]


def test_records_diff_compares_stored_values(engine: DbEngine) -> None:
    engine.put_many("t", "u", "r", {"nan": float("nan"), "obj": Plain(1), "y": 1})
    old = engine.get_digest("t", "r")
    engine.put("t", "u", "r", "y", 2)
    new = engine.get_digest("t", "r")
    assert not engine.diff("t", "r", old, old)
    assert list(engine.diff("t", "r", old, new).changed) == ["y"]
