"""everstore.models: Slowstore's roadmap (lazy load, indexes, relationships, expiry),
time travel over a whole store, diffs and the JSON export."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from conftest import BackendFactory
from everstore import Sqlite3, Store
from everstore.models import GoneError, ModelStore, Ref


class Person(BaseModel):
    name: str
    age: int = 0
    email: str = ""

    def model_post_init(self, context: Any) -> None:
        BUILT.append(self.name)


BUILT: list[str] = []


def people(store: Store, **options: Any) -> ModelStore[Person]:
    return ModelStore(
        Person, store=store, prefix=("people",), key_selector=lambda p: p.name, **options
    )


class Clock:
    """A clock the test moves by hand (the Store's clock= option)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# -- lazy load -----------------------------------------------------------------------------


def test_opening_reads_nothing_and_an_object_loads_on_first_touch(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    with Store(Sqlite3(path)) as store:
        group = people(store)
        for i in range(50):
            group.add(name=f"p{i:02}", age=i)
    store = Store(Sqlite3(path))
    loaded: list[tuple[str, ...]] = []
    store.add_fact_hook(lambda fact: loaded.append(fact.namespace.parts) if fact.loading else None)
    BUILT.clear()
    group = people(store)
    assert loaded == [] and BUILT == []  # opening reads no object
    assert group["p07"].age == 7
    assert set(loaded) == {("people", "p07")} and BUILT == ["p07"]
    assert len(group) == 50  # the first listing loads every object, in one read
    assert len(set(loaded)) == 50
    store.close()


# -- indexes -------------------------------------------------------------------------------


def test_where_operators_with_and_without_indexes(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    plain = people(store)
    for i, name in enumerate(["ann", "bob", "cid", "dan", "eve"]):
        plain.add(name=name, age=20 + 5 * i, email=f"{name}@x.org")
    indexed = people(Store(make_backend()), indexes=["age", "email"])
    queries: list[dict[str, Any]] = [
        {"age": 30},
        {"age__eq": 30},
        {"age__ne": 30},
        {"age__gt": 25},
        {"age__gte": 25},
        {"age__lt": 30},
        {"age__lte": 30},
        {"age__in": [20, 40, 99]},
        {"email": "dan@x.org"},
        {"age__gte": 25, "age__lt": 35},
        {"age__gte": 25, "name": "cid"},
        {"email__in": ["ann@x.org", "eve@x.org"], "age__gt": 20},
        {"age": "not a number"},
    ]
    expected = [
        ["cid"],
        ["cid"],
        ["ann", "bob", "dan", "eve"],
        ["cid", "dan", "eve"],
        ["bob", "cid", "dan", "eve"],
        ["ann", "bob"],
        ["ann", "bob", "cid"],
        ["ann", "eve"],
        ["dan"],
        ["bob", "cid"],
        ["cid"],
        ["eve"],
        [],
    ]
    for query, names in zip(queries, expected, strict=True):
        assert [p.name for p in plain.where(**query)] == names, query
        assert [p.name for p in indexed.where(**query)] == names, query
    with pytest.raises(TypeError, match="operator"):
        plain.where(age__between=(1, 2))
    with pytest.raises(TypeError, match="no field"):
        plain.where(height=3)
    with pytest.raises(TypeError, match="indexes"):
        people(store, indexes=["height"])


def test_indexed_queries_load_only_their_answers(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    with Store(Sqlite3(path)) as store:
        group = people(store)
        for i in range(200):
            group.add(name=f"p{i:03}", age=i % 50)
    store = Store(Sqlite3(path))
    group = people(store, indexes=["age"])
    BUILT.clear()
    assert [p.name for p in group.where(age=7)] == ["p007", "p057", "p107", "p157"]
    assert sorted(BUILT) == ["p007", "p057", "p107", "p157"]  # no scan built the others
    BUILT.clear()
    assert len(group.where(age__gte=48)) == 8 and len(BUILT) == 8
    store.close()


def test_indexes_follow_every_writer(make_backend: BackendFactory) -> None:
    mine = people(Store(make_backend()), indexes=["age"])
    theirs = people(Store(make_backend()))
    theirs.add(name="ann", age=30)
    assert [p.name for p in mine.where(age=30)] == ["ann"]
    theirs["ann"].age = 31
    theirs.add(name="bob", age=30)
    assert [p.name for p in mine.where(age=30)] == ["bob"]
    assert [p.name for p in mine.where(age__gt=30)] == ["ann"]
    theirs.delete("bob")
    assert mine.where(age=30) == []


def test_where_sees_a_transactions_own_changes() -> None:
    group = people(Store(), indexes=["age"])
    group.add(name="ann", age=30)
    with group.transaction():
        group["ann"].age = 31
        assert [p.name for p in group.where(age=31)] == ["ann"]
        assert group.where(age=30) == []


# -- relationships -------------------------------------------------------------------------


class Author(BaseModel):
    name: str
    country: str = ""


class Book(BaseModel):
    title: str
    author: Ref[Author]
    editor: Ref[Author] | None = None


def test_references_resolve_lazily_now_and_in_the_past(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    authors = ModelStore(Author, store=store, key_selector=lambda a: a.name)
    books = ModelStore(Book, store=store, key_selector=lambda b: b.title)
    ann = authors.add(name="ann", country="fr")
    book = books.add(title="dune", author=ann)  # a proxy, a key or a Ref
    books.add(title="emma", author="bob")  # bob does not exist (yet)
    assert book.author == Ref("ann") and book.author.key == "ann"
    assert book.author.get() is ann and book.author.get().country == "fr"
    assert books["emma"].author.get() is None
    mark = store.last_seq
    ann.country = "de"
    bob = authors.add(name="bob")
    book.author = bob
    book.editor = "ann"
    assert book.author.get() is bob and books["emma"].author.get() is bob
    assert book.editor.get() is ann
    # the log keeps the key only
    assert store.storage("Book", "dune").author == "bob"
    # as of the mark, the book's author is ann, as she was then
    past = books.as_of(seq=mark)
    then = past["dune"].author.get()
    assert then.country == "fr" and past["emma"].author.get() is None
    # another process resolves the same way
    elsewhere = Store(make_backend())
    ModelStore(Author, store=elsewhere, key_selector=lambda a: a.name)
    other_books = ModelStore(Book, store=elsewhere, key_selector=lambda b: b.title)
    assert other_books["dune"].author.get().name == "bob"


def test_references_in_dataclasses_and_explicit_targets() -> None:
    @dataclasses.dataclass
    class Pet:
        name: str
        owner: Ref[Author] | None = None

    store = Store()
    authors = ModelStore(Author, store=store, prefix=("writers",), key_selector=lambda a: a.name)
    pets = ModelStore(Pet, store=store, key_selector=lambda p: p.name, refs={"owner": authors})
    authors.add(name="ann")
    rex = pets.set(Pet("rex"))
    rex.owner = authors["ann"]
    assert rex.owner.get().name == "ann"
    assert (
        ModelStore(Pet, store=store, key_selector=lambda p: p.name, refs={"owner": authors})["rex"]
        .owner.get()
        .name
        == "ann"
    )
    lost = ModelStore(Book, key_selector=lambda b: b.title).add(title="x", author="nobody")
    with pytest.raises(LookupError, match="no ModelStore"):
        lost.author.get()
    with pytest.raises(LookupError, match="not bound"):
        Ref("ann").get()


# -- expiry --------------------------------------------------------------------------------


def test_expiry_per_store_and_per_object(make_backend: BackendFactory) -> None:
    clock = Clock()
    store = Store(make_backend(), clock=clock)
    group = people(store, ttl=60)
    ann = group.add(name="ann")
    bob = group.set(Person(name="bob"), ttl=10)
    cid = group.add(name="cid")
    group.expire(cid, None)  # never
    assert group.time_to_live(ann) == 60 and group.time_to_live(cid) is None
    clock.now += 30
    assert group.keys() == ["ann", "cid"] and "bob" not in group and group.get("bob") is None
    with pytest.raises(GoneError, match="expired"):
        bob.age  # noqa: B018
    assert len(group) == 2 and [p.name for p in group.where(age=0)] == ["ann", "cid"]
    group.expire(ann, at=datetime.datetime.fromtimestamp(clock.now + 5))
    clock.now += 10
    assert group.keys() == ["cid"] and group.first() is cid
    # another process sees the same
    elsewhere = people(Store(make_backend(), clock=clock))
    assert elsewhere.keys() == ["cid"]


def test_purge_is_a_logged_operation(make_backend: BackendFactory) -> None:
    clock = Clock()
    store = Store(make_backend(), clock=clock)
    group = people(store, ttl=5)
    group.add(name="ann", age=1)
    group.add(name="bob", age=2)
    group.expire("bob", None)
    clock.now += 10
    assert group.purge() == ["ann"]
    assert group.purge() == []
    deleted = [c for c in group.changes("ann") if c.kind == "DELETE"]
    assert {c.prop_name for c in deleted} == {"name", "age", "email"}
    assert deleted[0].context.startswith(f"{__name__}.test_purge")
    # the past still shows ann, before she expired
    assert group.as_of(time=clock.now - 8)["ann"].age == 1
    assert "ann" not in group.as_of(time=clock.now)


# -- time travel and diffs -----------------------------------------------------------------


def test_as_of_a_whole_store_composes_with_queries(make_backend: BackendFactory) -> None:
    clock = Clock()
    store = Store(make_backend(), clock=clock)
    group = people(store, indexes=["age"])
    group.add(name="ann", age=30)
    group.add(name="bob", age=40)
    noon = clock.now
    clock.now += 100
    group["ann"].age = 31
    group.delete("bob")
    group.add(name="cid", age=30)
    then = group.as_of(time=noon)
    assert then.keys() == ["ann", "bob"] and len(then) == 2 and "cid" not in then
    assert [p.name for p in then.where(age=30)] == ["ann"]
    assert [p.name for p in then.filter(lambda p: p.age > 35)] == ["bob"]
    assert then.first(lambda p: p.age == 30).name == "ann"
    assert then["ann"].age == 30 and then.get("cid") is None
    with pytest.raises(AttributeError, match="read-only"):
        then["ann"].age = 5
    assert [c.new_val for c in then.changes("ann")] == ["", 30, "ann"]
    now = group.as_of(seq=store.last_seq)
    assert now.keys() == ["ann", "cid"] and now["ann"].age == 31
    assert group.as_of(seq=0).keys() == []
    with pytest.raises(TypeError):
        group.as_of()


def test_diff_of_one_object_between_two_moments() -> None:
    class Note:
        def __init__(self, id: str, text: str) -> None:
            self.id, self.text = id, text

    store = Store()
    notes = ModelStore(Note, store=store)
    note = notes.set(Note("n1", "draft"))
    first = store.last_seq
    note.text = "final"
    note.tag = "new"
    second = notes.as_of(seq=store.last_seq)
    del note.tag
    diff = notes.diff("n1", first, second)
    assert diff.changed == {"text": ("draft", "final")} and diff.added == {"tag": "new"}
    assert not diff.removed
    later = notes.diff(note, second)  # to now
    assert later.removed == {"tag": "new"} and not later.changed and not later.added
    assert not notes.diff("n1", store.last_seq)
    notes.delete("n1")
    assert notes.diff("n1", first).removed == {"id": "n1", "text": "draft"}


# -- the JSON export -----------------------------------------------------------------------


def test_export_writes_the_json_view_of_each_object(tmp_path: Path) -> None:
    class Item(BaseModel):
        key: str
        when: datetime.datetime
        price: decimal.Decimal
        tags: set[str]

    items = ModelStore(Item, key_selector=lambda i: i.key)
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    items.add(key="a/b", when=when, price=decimal.Decimal("1.50"), tags={"y", "x"})
    items.add(key=".hidden", when=when, price=decimal.Decimal(0), tags=set())
    items["a/b"].price = decimal.Decimal("2.00")
    paths = items.export_json(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["%2Ehidden.json", "a%2Fb.json"]
    document = json.loads((tmp_path / "out" / "a%2Fb.json").read_text())
    assert document["__key__"] == "a/b" and document["when"] == "2024-01-02T03:04:05+00:00"
    assert document["price"] == "2.00" and document["tags"] == ["x", "y"]
    change = document["__changes__"][0]
    assert (change["prop_name"], change["prev_val"], change["new_val"]) == ("price", "1.50", "2.00")
    assert set(change) >= {"__key__", "prop_name", "prev_val", "new_val", "date"}
