"""everstore.versions: the decisions the seed leaves open (docs: VERSIONS_API.md).

What a digest covers, what a no-op write does, what put/put_many/remove return, the
deletion of an entry, the two patterns never mixing, listing entries, tenants'
isolation, and bad input (a typed error and the store unchanged). History, as_of and
diff are in test_versions_history.py, values and their encodings in
test_versions_values.py, verify() in test_versions_verify.py.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from everstore import InvalidNameError, Memory, Sqlite3, Store
from everstore.versions import (
    DbEngine,
    Handlers,
    MissingEntryError,
    MissingRecordError,
    MissingVersionError,
    PatternError,
    UnknownTenantError,
    VersionsError,
)
from versions_support import FIXED_TIME, memory_engine, stored_version


@pytest.fixture
def engine() -> DbEngine:
    """An engine on a fresh in-memory store with the tenant "t" initialised."""
    made = memory_engine()
    made.init("t")
    return made


def snapshot_of(engine: DbEngine) -> tuple[int, list[str], dict[str, list[str]]]:
    """What a failed call must leave as it was: the log's length, the entries and
    every entry's history."""
    tenants = ["t", "t2"]
    entries = {
        f"{tenant}/{entry}": engine.history(tenant, entry)
        for tenant in tenants
        for entry in engine.entries(tenant, include_deleted=True)
    }
    return engine.store.last_seq, engine.entries("t", include_deleted=True), entries


# -- what a digest covers ----------------------------------------------------------------


def fixed_engines() -> list[DbEngine]:
    """Three engines on separate stores (two kinds of backend) with one clock."""
    stores = [
        Store(Memory(), clock=lambda: FIXED_TIME),
        Store(Memory(), clock=lambda: FIXED_TIME),
    ]
    engines = [DbEngine(store=store, handlers=Handlers()) for store in stores]
    for made in engines:
        made.init("t")
    return engines


def test_a_digest_is_64_hex_characters(engine: DbEngine) -> None:
    for digest in (engine.save("t", "u", "e", {"a": 1}), engine.get_digest("t", "e")):
        assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    engine.put("t", "u", "r", "k", 1)
    assert len(engine.get_digest("t", "r")) == 64


def test_the_same_state_gives_the_same_digest_on_separate_stores(tmp_path: Path) -> None:
    a, b = fixed_engines()
    c = DbEngine(store=Store(Sqlite3(tmp_path / "c.db"), clock=lambda: FIXED_TIME))
    c.init("t")
    value = {"name": "x", "items": [1, 2.5, None, True], "when": datetime.date(2020, 1, 1)}
    digests = [made.save("t", "u", "e", value) for made in (a, b, c)]
    assert len(set(digests)) == 1
    # the next version's digest too (same parent, user, date and value)
    assert len({made.save("t", "u", "e", [1]) for made in (a, b, c)}) == 1
    # records: the same puts, the same versions
    for made in (a, b, c):
        made.put_many("t", "u", "r", {"k1": 1, 2: "two"})
        made.remove("t", "u", "r", "k1")
    assert len({tuple(made.history("t", "r")) for made in (a, b, c)}) == 1
    c.close()


def test_a_digest_covers_user_date_and_parent() -> None:
    base, same = fixed_engines()
    other_user, other_time = fixed_engines()[0], memory_engine(clock=lambda: FIXED_TIME + 1)
    other_time.init("t")
    first = base.save("t", "u", "e", 1)
    assert same.save("t", "u", "e", 1) == first
    assert other_user.save("t", "someone else", "e", 1) != first
    assert other_time.save("t", "u", "e", 1) != first
    # the same value after another version: another parent, another digest
    base.save("t", "u", "e", 2)
    assert base.save("t", "u", "e", 1) != first
    assert len(set(base.history("t", "e"))) == 3


def test_dict_key_order_does_not_change_the_digest() -> None:
    a, b = fixed_engines()
    first = {"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": 2}, 3: "int key", 1: "one"}
    second = {1: "one", "a": {"x": 2, "y": [1, {"p": 2, "q": 1}]}, 3: "int key", "b": 1}
    assert list(first) != list(second)
    assert a.save("t", "u", "e", first) == b.save("t", "u", "e", second)
    # and a dict comes back with its keys sorted
    loaded = a.load("t", "e")
    assert loaded == first
    assert list(loaded["a"]) == ["x", "y"]


def test_set_order_does_not_change_the_digest() -> None:
    forwards: set[int] = set()
    backwards: set[int] = set()
    for item in (1, 9, 17, 25):
        forwards.add(item)
    for item in (25, 17, 9, 1):
        backwards.add(item)
    assert list(forwards) != list(backwards)  # iterated in different orders
    a, b = fixed_engines()
    assert a.save("t", "u", "s", forwards) == b.save("t", "u", "s", backwards)
    assert a.save("t", "u", "f", frozenset(forwards)) == b.save("t", "u", "f", frozenset(backwards))
    assert a.load("t", "s") == forwards


# -- writes that change nothing -----------------------------------------------------


def test_saving_the_heads_value_adds_no_version(engine: DbEngine) -> None:
    digest = engine.save("t", "u", "e", {"a": 1, "b": [1, 2]})
    before = engine.store.last_seq
    assert engine.save("t", "u", "e", {"b": [1, 2], "a": 1}) == digest
    assert engine.save("t", "another user", "e", {"a": 1, "b": [1, 2]}) == digest
    assert engine.history("t", "e") == [digest]
    assert engine.store.last_seq == before


def test_saving_an_older_value_or_an_equal_but_different_one_is_a_version(
    engine: DbEngine,
) -> None:
    first = engine.save("t", "u", "e", 1)
    engine.save("t", "u", "e", 2)
    assert engine.save("t", "u", "e", 1) != first  # equal to an older version only
    # 1, 1.0 and True are equal in Python, not the same value
    engine.save("t", "u", "e", 1.0)
    engine.save("t", "u", "e", True)
    assert len(engine.history("t", "e")) == 5
    assert engine.load("t", "e") is True
    assert type(engine.load("t", "e", engine.history("t", "e")[1])) is float


def test_put_returns_whether_a_version_was_made(engine: DbEngine) -> None:
    assert engine.put("t", "u", "r", "a", {"v": 1}) is True
    assert engine.put("t", "u", "r", "a", {"v": 1}) is False
    assert engine.put("t", "other", "r", "a", {"v": 1}) is False
    assert engine.put("t", "u", "r", "a", {"v": 2}) is True
    assert len(engine.history("t", "r")) == 2
    assert engine.get("t", "r", "a") == {"v": 2}


def test_put_many_returns_whether_anything_changed(engine: DbEngine) -> None:
    assert engine.put_many("t", "u", "r", {"a": 1, "b": 2}) is True
    assert engine.put_many("t", "u", "r", {"a": 1, "b": 2}) is False
    assert engine.put_many("t", "u", "r", {"a": 1}) is False
    assert engine.put_many("t", "u", "r", {}) is False
    assert engine.put_many("t", "u", "r", {"a": 1, "b": 3, "c": 4}) is True
    assert len(engine.history("t", "r")) == 2  # one version for three records
    assert engine.items("t", "r") == {"a": 1, "b": 3, "c": 4}
    # an empty put_many does not create an entry either
    assert engine.put_many("t", "u", "nothing", {}) is False
    assert not engine.exists("t", "nothing")
    assert engine.entries("t") == ["r"]


def test_remove_returns_whether_the_record_was_there(engine: DbEngine) -> None:
    engine.put_many("t", "u", "r", {"a": 1, "b": 2, "c": 3})
    assert engine.remove("t", "u", "r", "missing") is False
    assert engine.remove("t", "u", "r", "a") is True
    assert engine.remove("t", "u", "r", "a") is False
    assert engine.remove_many("t", "u", "r", ["x", "y"]) is False
    assert engine.remove_many("t", "u", "r", ["b", "x"]) is True
    assert engine.items("t", "r") == {"c": 3}
    assert len(engine.history("t", "r")) == 3
    with pytest.raises(MissingRecordError):
        engine.get("t", "r", "a")
    # removing the last record leaves an empty record entry, which still exists
    assert engine.remove("t", "u", "r", "c") is True
    assert engine.exists("t", "r") and engine.get("t", "r") == [] and engine.count("t", "r") == 0


def test_records_come_in_key_order_ints_first(engine: DbEngine) -> None:
    engine.put_many("t", "u", "r", {"b": "B", 10: "ten", "a": "A", -3: "minus", 2: "two"})
    assert list(engine.items("t", "r")) == [-3, 2, 10, "a", "b"]
    assert engine.get("t", "r") == ["minus", "two", "ten", "A", "B"]
    assert engine.get("t", "r", 10) == "ten"
    assert engine.count("t", "r") == 5
    # 1 and "1" are two keys
    engine.put_many("t", "u", "r", {1: "int", "1": "str"})
    assert engine.get("t", "r", 1) == "int" and engine.get("t", "r", "1") == "str"


# -- deleting an entry -----------------------------------------------------------------


def test_deleting_an_entry_is_a_version(engine: DbEngine) -> None:
    first = engine.save("t", "u", "e", {"v": 1})
    second = engine.save("t", "u", "e", {"v": 2})
    deleted = engine.delete_entry("t", "remover", "e")
    assert not engine.exists("t", "e")
    with pytest.raises(MissingEntryError):
        engine.load("t", "e")
    with pytest.raises(MissingEntryError):
        engine.load("t", "e", deleted)
    assert engine.get_digest("t", "e") == deleted
    assert engine.history("t", "e") == [deleted, second, first]
    info = engine.info("t", "e")
    assert (info.kind, info.parent, info.user_id) == ("deleted", second, "remover")
    assert stored_version(engine, deleted)["__deleted__"] is True
    # every past version stays loadable by digest
    assert engine.load("t", "e", first) == {"v": 1}
    assert engine.load("t", "e", second) == {"v": 2}
    assert engine.entries("t") == []
    assert engine.entries("t", include_deleted=True) == ["e"]


def test_an_entry_is_deleted_once(engine: DbEngine) -> None:
    with pytest.raises(MissingEntryError):
        engine.delete_entry("t", "u", "never")
    engine.save("t", "u", "e", 1)
    engine.delete_entry("t", "u", "e")
    before = snapshot_of(engine)
    with pytest.raises(MissingEntryError):
        engine.delete_entry("t", "u", "e")
    assert snapshot_of(engine) == before


def test_writing_after_a_deletion_goes_on_with_the_chain(engine: DbEngine) -> None:
    engine.save("t", "u", "e", 1)
    deleted = engine.delete_entry("t", "u", "e")
    # the same value as before the deletion is a new version
    again = engine.save("t", "u", "e", 1)
    assert engine.info("t", "e").parent == deleted
    assert engine.load("t", "e") == 1 and engine.exists("t", "e")
    assert engine.history("t", "e")[:2] == [again, deleted]


@pytest.mark.parametrize("before", ["snapshot", "records"])
@pytest.mark.parametrize("after", ["snapshot", "records"])
def test_either_pattern_after_a_deletion(engine: DbEngine, before: str, after: str) -> None:
    if before == "snapshot":
        old = engine.save("t", "u", "e", {"old": True})
    else:
        engine.put_many("t", "u", "e", {"old": 1, "kept?": 2})
        old = engine.get_digest("t", "e")
    deleted = engine.delete_entry("t", "u", "e")
    if after == "snapshot":
        engine.save("t", "u", "e", {"new": True})
        assert engine.load("t", "e") == {"new": True}
    else:
        assert engine.put("t", "u", "e", "new", 1) is True
        # the records start afresh: none of the deleted entry's come back
        assert engine.items("t", "e") == {"new": 1}
    assert engine.info("t", "e").parent == deleted
    assert engine.history("t", "e")[1:] == [deleted, old]
    if before == "records":
        assert engine.items("t", "e", old) == {"old": 1, "kept?": 2}
    else:
        assert engine.load("t", "e", old) == {"old": True}


def test_removing_from_a_deleted_record_entry_changes_nothing(engine: DbEngine) -> None:
    engine.put("t", "u", "r", "a", 1)
    engine.delete_entry("t", "u", "r")
    before = snapshot_of(engine)
    assert engine.remove("t", "u", "r", "a") is False
    assert snapshot_of(engine) == before
    with pytest.raises(MissingEntryError):
        engine.get("t", "r", "a")
    with pytest.raises(MissingEntryError):
        engine.items("t", "r")


# -- the two patterns never mix ----------------------------------------------------------


def test_a_record_operation_on_a_snapshot_entry_is_refused(engine: DbEngine) -> None:
    engine.save("t", "u", "snap", {"a": 1})
    before = snapshot_of(engine)
    writes: list[Any] = [
        lambda: engine.put("t", "u", "snap", "a", 2),
        lambda: engine.put_many("t", "u", "snap", {"a": 2}),
        lambda: engine.remove("t", "u", "snap", "a"),
        lambda: engine.remove_many("t", "u", "snap", ["a"]),
    ]
    reads: list[Any] = [
        lambda: engine.get("t", "snap"),
        lambda: engine.get("t", "snap", "a"),
        lambda: engine.items("t", "snap"),
        lambda: engine.count("t", "snap"),
    ]
    for call in writes + reads:
        with pytest.raises(PatternError):
            call()
    assert snapshot_of(engine) == before
    assert engine.load("t", "snap") == {"a": 1}


def test_a_snapshot_operation_on_a_record_entry_is_refused(engine: DbEngine) -> None:
    engine.put("t", "u", "recs", "a", 1)
    before = snapshot_of(engine)
    with pytest.raises(PatternError):
        engine.save("t", "u", "recs", {"a": 1})
    with pytest.raises(PatternError):
        engine.load("t", "recs")
    with pytest.raises(PatternError, match="records"):
        engine.load("t", "recs", engine.get_digest("t", "recs"))
    assert snapshot_of(engine) == before
    assert issubclass(PatternError, TypeError) and issubclass(PatternError, VersionsError)


# -- listing a tenant's entries -------------------------------------------------------------


def test_entries_are_listed_sorted(engine: DbEngine) -> None:
    for name in ["zeta", "Alpha", "beta", "b", "10", "9"]:
        engine.save("t", "u", name, name)
    engine.put("t", "u", "records", "k", 1)
    assert engine.entries("t") == sorted(["zeta", "Alpha", "beta", "b", "10", "9", "records"])
    engine.delete_entry("t", "u", "beta")
    assert "beta" not in engine.entries("t")
    assert "beta" in engine.entries("t", include_deleted=True)
    assert engine.entries("t", include_deleted=True) == sorted(
        engine.entries("t", include_deleted=True)
    )


# -- tenants ---------------------------------------------------------------------------------


def test_a_tenant_handle_cannot_read_another_tenants_versions(engine: DbEngine) -> None:
    engine.init("t2")
    one, two = engine.tenant("t"), engine.tenant("t2")
    mine = one.save("u1", "e", {"same": "content"})
    theirs = two.save("u2", "e", {"same": "content"})
    secret = two.save("u2", "secret", {"only": "t2"})
    assert mine != theirs  # another user: another version
    assert one.load("e") == two.load("e")
    for digest in (theirs, secret):
        with pytest.raises(MissingVersionError):
            one.load("e", digest)
        with pytest.raises(MissingVersionError):
            one.history("e", digest)
        with pytest.raises(MissingVersionError):
            one.info("e", digest)
        with pytest.raises(MissingVersionError):
            one.diff("e", mine, digest)
    with pytest.raises(MissingEntryError):
        one.load("secret")
    assert not one.exists("secret")
    assert one.entries() == ["e"]
    assert two.entries() == ["e", "secret"]
    # the engine's methods go through the same handles
    with pytest.raises(MissingVersionError):
        engine.load("t", "e", theirs)


def test_a_digest_of_another_entry_or_a_blob_is_not_a_version(engine: DbEngine) -> None:
    other = engine.save("t", "u", "other", 1)
    engine.save("t", "u", "e", b"x" * 2000)
    blob = engine.store.put_blob(b"x" * 2000)
    for digest in (other, blob, "0" * 64, "not a digest"):
        with pytest.raises(MissingVersionError):
            engine.load("t", "e", digest)


def test_tenants_whose_names_share_a_prefix_stay_apart(engine: DbEngine) -> None:
    for tenant in ("t1", "t10", "t1x"):
        engine.init(tenant)
        engine.save(tenant, "u", f"of_{tenant}", tenant)
    assert engine.entries("t1") == ["of_t1"]
    assert engine.entries("t10") == ["of_t10"]
    assert engine.entries("t") == []


def test_tenant_handles_of_two_engines_on_one_store_see_the_same() -> None:
    store = Store(Memory())
    a = DbEngine(store=store, handlers=Handlers())
    b = DbEngine(store=store, handlers=Handlers(), prefix="versions")
    other_prefix = DbEngine(store=store, handlers=Handlers(), prefix="elsewhere")
    a.init("t")
    a.tenant("t").save("u", "e", 1)
    assert b.tenant("t").load("e") == 1
    assert not other_prefix.is_initialized("t")
    assert other_prefix.entries("t") == []


def test_writes_to_a_tenant_never_initialised_are_refused(engine: DbEngine) -> None:
    before = snapshot_of(engine)
    writes: list[Any] = [
        lambda: engine.save("nobody", "u", "e", 1),
        lambda: engine.put("nobody", "u", "e", "k", 1),
        lambda: engine.put_many("nobody", "u", "e", {"k": 1}),
        lambda: engine.remove("nobody", "u", "e", "k"),
        lambda: engine.delete_entry("nobody", "u", "e"),
        lambda: engine.tenant("nobody").save("u", "e", 1),
    ]
    for call in writes:
        with pytest.raises(UnknownTenantError, match="init"):
            call()
    assert issubclass(UnknownTenantError, KeyError)
    assert snapshot_of(engine) == before
    assert not engine.is_initialized("nobody")
    # reads of it find nothing
    assert not engine.exists("nobody", "e")
    assert engine.entries("nobody") == []
    assert engine.history("nobody", "e") == []
    with pytest.raises(MissingEntryError):
        engine.load("nobody", "e")
    with pytest.raises(MissingEntryError):
        engine.get("nobody", "e")


# -- bad input: a typed error, the store unchanged ------------------------------------------


BAD_NAMES = ["", "a/b", "/", "tab\there", "new\nline", 5, None, b"bytes"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_tenant_names_are_refused(engine: DbEngine, name: Any) -> None:
    before = snapshot_of(engine)
    with pytest.raises(InvalidNameError):
        engine.init(name)
    with pytest.raises(InvalidNameError):
        engine.tenant(name)
    with pytest.raises(InvalidNameError):
        engine.save(name, "u", "e", 1)
    assert snapshot_of(engine) == before


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_entry_names_are_refused(engine: DbEngine, name: Any) -> None:
    engine.save("t", "u", "good", 1)
    before = snapshot_of(engine)
    calls: list[Any] = [
        lambda: engine.save("t", "u", name, 1),
        lambda: engine.put("t", "u", name, "k", 1),
        lambda: engine.put_many("t", "u", name, {"k": 1}),
        lambda: engine.delete_entry("t", "u", name),
        lambda: engine.load("t", name),
        lambda: engine.get("t", name),
        lambda: engine.exists("t", name),
        lambda: engine.history("t", name),
    ]
    for call in calls:
        with pytest.raises(InvalidNameError):
            call()
    assert issubclass(InvalidNameError, ValueError)
    assert snapshot_of(engine) == before


@pytest.mark.parametrize("user", [5, None, b"u", ["u"]], ids=repr)
def test_a_user_id_is_a_str(engine: DbEngine, user: Any) -> None:
    engine.save("t", "u", "e", 1)
    engine.put("t", "u", "r", "k", 1)
    before = snapshot_of(engine)
    calls: list[Any] = [
        lambda: engine.save("t", user, "e", 2),
        lambda: engine.save("t", user, "new", 2),
        lambda: engine.put("t", user, "r", "k", 2),
        lambda: engine.remove("t", user, "r", "k"),
        lambda: engine.delete_entry("t", user, "e"),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    assert snapshot_of(engine) == before


@pytest.mark.parametrize("key", [1.5, True, None, b"k", ("a",), 2**64, -(2**63) - 1], ids=repr)
def test_a_record_key_is_a_str_or_a_64_bit_int(engine: DbEngine, key: Any) -> None:
    engine.put("t", "u", "r", "k", 1)
    before = snapshot_of(engine)
    with pytest.raises(TypeError):
        engine.put("t", "u", "r", key, 2)
    with pytest.raises(TypeError):
        engine.put_many("t", "u", "r", {"fine": 2, key: 3})
    with pytest.raises(TypeError):
        engine.put_many("t", "u", "new", {key: 3})
    if key is not None:  # get(key=None) is every record
        with pytest.raises(TypeError):
            engine.get("t", "r", key)
    with pytest.raises(TypeError):
        engine.remove_many("t", "u", "r", ["k", key])
    assert snapshot_of(engine) == before
    assert engine.items("t", "r") == {"k": 1}


def test_the_extreme_64_bit_keys_are_keys(engine: DbEngine) -> None:
    engine.put_many("t", "u", "r", {-(2**63): "min", 2**64 - 1: "max", 0: "zero"})
    assert engine.get("t", "r") == ["min", "zero", "max"]


def test_other_bad_arguments(engine: DbEngine) -> None:
    engine.save("t", "u", "e", 1)
    engine.put("t", "u", "r", "k", 1)
    before = snapshot_of(engine)
    with pytest.raises(TypeError):
        engine.put_many("t", "u", "r", [("k", 2)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.remove_many("t", "u", "r", "k")
    with pytest.raises(ValueError):
        engine.history("t", "e", max_items=-1)
    with pytest.raises(TypeError):
        engine.load("t", "e", engine.get_digest("t", "e"), as_of=FIXED_TIME)
    with pytest.raises(TypeError):
        engine.load("t", "e", as_of="yesterday")  # type: ignore[arg-type]
    assert snapshot_of(engine) == before
