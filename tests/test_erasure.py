"""Erasure (docs/integrity.md, "Erasure"): a subject's values leave the log, its
shape and its chain stay, the record says who, what and why; on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import BackendFactory
from everstore import (
    Erased,
    InvalidNameError,
    MissingFieldError,
    ReadOnlyError,
    Sqlite3,
    Store,
)
from everstore.integrity import erased_marker, fact_hash
from everstore.log import Write
from tampering import tamper


def _person(store: Store) -> None:
    ann = store.storage("people", "ann")
    ann.email = "ann@example.org"
    ann.age = 41
    ann.email = "ann@work.example"
    with ann:
        ann.tags = ["a"]
        ann.tags.append("b")  # a delta on the list
    store.storage("people", "bob").email = "bob@example.org"


def test_an_erased_field_reads_as_a_marker_now_and_in_the_past(store: Store) -> None:
    _person(store)
    before = store.last_seq
    erasure = store.erase(("people", "ann"), "email", reason="request 42", by="dpo@example.org")
    ann = store.storage("people", "ann")
    assert isinstance(ann.email, Erased)
    assert ann.age == 41 and store.storage("people", "bob").email == "bob@example.org"
    history = store.history(store.namespace(("people", "ann")), "email")
    assert [type(value.data) for value in history] == [Erased, Erased]
    assert [value.seq for value in history] == list(erasure.erased) == [1, 3]
    assert isinstance(store.as_of(seq=1).storage("people", "ann").email, Erased)
    assert (erasure.namespace, erasure.field, erasure.reason, erasure.by) == (
        "people/ann",
        "email",
        "request 42",
        "dpo@example.org",
    )
    assert erasure.seq == before + 1 == store.last_seq
    assert "test_erasure" in erasure.context
    report = store.verify()
    assert report.ok and report.erased == (1, 3) and report.erasures == (erasure,)
    assert store.erasures() == [erasure]


def test_the_log_keeps_its_shape(store: Store) -> None:
    _person(store)
    before = store.facts()
    store.erase(("people", "ann"), reason="whole subject")
    after = store.facts()[: len(before)]
    assert [(f.seq, f.time, f.namespace, f.field, f.context) for f in after] == [
        (f.seq, f.time, f.namespace, f.field, f.context) for f in before
    ]
    for old, new in zip(before, after, strict=True):
        if old.namespace == "people/ann" and old.data is not None:
            assert new.data == erased_marker(
                fact_hash(old.namespace, old.field, old.context, old.data)
            )
        else:
            assert new.data == old.data
    ann = store.storage("people", "ann")
    assert isinstance(ann.email, Erased) and isinstance(ann.age, Erased)
    with ann:
        assert isinstance(ann.tags, Erased)


def test_another_store_sees_the_erasure(make_backend: BackendFactory) -> None:
    with Store(make_backend()) as first, Store(make_backend()) as second:
        _person(first)
        assert second.storage("people", "ann").email == "ann@work.example"
        first.erase(("people", "ann"), "email", reason="r")
        assert isinstance(second.storage("people", "ann").email, Erased)
        assert second.verify().ok


def test_values_written_after_the_erasure_are_kept(store: Store) -> None:
    _person(store)
    store.erase(("people", "ann"), "email", reason="r")
    ann = store.storage("people", "ann")
    ann.email = "new@example.org"
    assert ann.email == "new@example.org"
    again = store.erase(("people", "ann"), "email", reason="again")
    assert again.erased == (store.last_seq - 1,)  # only the new one: the rest were erased
    assert store.verify().ok and len(store.verify().erasures) == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((("people", "ann"), "email"), {"reason": ""}, ValueError),
        ((("people", "ann"), "email"), {"reason": "   "}, ValueError),
        ((("people", "ann"), "email"), {"reason": 42}, TypeError),
        ((("people", "ann"), "email"), {"reason": "r", "by": 7}, TypeError),
        ((("people", "ann"), "nope"), {"reason": "r"}, MissingFieldError),
        ((("people", "nobody"),), {"reason": "r"}, MissingFieldError),
        ((("people", "ann"), "not a name"), {"reason": "r"}, InvalidNameError),
        ((("people/ann",),), {"reason": "r"}, InvalidNameError),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    store: Store, args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
) -> None:
    _person(store)
    before = store.facts()
    with pytest.raises(error):
        store.erase(*args, **kwargs)  # type: ignore[arg-type]
    assert store.facts() == before


def test_erase_inside_a_transaction_is_refused(store: Store) -> None:
    _person(store)
    with store.transaction(), pytest.raises(RuntimeError, match="outside"):
        store.erase(("people", "ann"), reason="r")
    assert store.storage("people", "ann").email == "ann@work.example"


def test_a_read_only_store_cannot_erase(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with Store(Sqlite3(path)) as store:
        _person(store)
    with Store(Sqlite3(path, readonly=True)) as store, pytest.raises(ReadOnlyError):
        store.erase(("people", "ann"), reason="r")


def test_the_erased_bytes_leave_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    with Store(Sqlite3(path)) as store:
        _person(store)
        for i in range(200):
            store.storage("other").x = i
        store.erase(("people", "ann"), reason="r")
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            raw = name.read_bytes()
            assert b"ann@example.org" not in raw and b"ann@work.example" not in raw
    assert b"bob@example.org" in path.read_bytes()


def test_a_marker_without_a_record_is_found(tmp_path: Path) -> None:
    path = tmp_path / "forged.db"
    with Store(Sqlite3(path)) as store:
        _person(store)
        fact = store.facts()[0]
    marker = erased_marker(fact_hash(fact.namespace, fact.field, fact.context, fact.data))
    tamper(path, "UPDATE everstore_log SET data = ? WHERE seq = 1", (marker,))
    with Store(Sqlite3(path)) as store:
        report = store.verify()
    assert (report.ok, report.seq, report.kind) == (False, 1, "changed")
    assert "no erasure record" in report.message


def test_erasing_does_not_hide_an_earlier_change(tmp_path: Path) -> None:
    path = tmp_path / "tampered.db"
    with Store(Sqlite3(path)) as store:
        _person(store)
    tamper(path, "UPDATE everstore_log SET data = CAST('\"forged\"' AS BLOB) WHERE seq = 1")
    with Store(Sqlite3(path)) as store:
        store.erase(("people", "ann"), "email", reason="r")
        report = store.verify()
    # the marker keeps the hash of the forged value, not the committed one
    assert (report.ok, report.seq, report.kind) == (False, 1, "changed")


def test_models_see_the_erasure(store: Store) -> None:
    pydantic = pytest.importorskip("pydantic")
    from everstore.models import ModelStore

    class Person(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        name: str
        email: str = ""

    people = ModelStore[Person](
        Person, store=store, key_selector=lambda p: p.name, indexes=["email"]
    )
    people.add(name="ann", email="ann@example.org")
    people.add(name="bob", email="bob@example.org")
    assert [p.name for p in people.where(email="ann@example.org")] == ["ann"]  # index built
    store.erase(("Person", "ann"), "email", reason="r")
    assert people.where(email="ann@example.org") == []
    with pytest.raises(pydantic.ValidationError, match="Erased"):
        _ = people["ann"].email
    people.set(Person(name="ann", email="new@example.org"))
    assert [p.name for p in people.where(email="new@example.org")] == ["ann"]
    assert people["bob"].email == "bob@example.org"


def test_a_tombstone_stays_a_tombstone(store: Store) -> None:
    _person(store)
    del store.storage("people", "bob").email
    deleted = store.last_seq
    record = Write("everstore", "__erasure__", b"{}", "t:1", 0.0)
    store.backend.erase_facts([deleted], record)  # a caller passing a tombstone
    assert store.facts()[deleted - 1].data is None
    assert "email" not in store.storage("people", "bob")
