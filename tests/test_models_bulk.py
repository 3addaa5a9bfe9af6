"""everstore.models over many objects: the first listing loads every object in one
read and later listings follow every writer; indexed queries, the shared parts of
loaded objects (pydantic's set of fields set, the "no unsaved change" marker) and
optimistic checks turned on late.

"Another process" is a second Store on the same database (``make_backend()`` twice).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from conftest import BackendFactory
from everstore import ConflictError, Store
from everstore.engine import AppliedFact
from everstore.models import ModelStore
from everstore.models.indexes import FieldIndex


class Person(BaseModel):
    name: str
    age: int = 0
    email: str = ""


def people(store: Store, **options: Any) -> ModelStore[Person]:
    return ModelStore(
        Person, store=store, prefix=("people",), key_selector=lambda p: p.name, **options
    )


class Loads:
    """Counts the namespaces whose facts a Store loads (a fact hook)."""

    def __init__(self, store: Store) -> None:
        self.namespaces: list[tuple[str, ...]] = []
        store.add_fact_hook(self)

    def __call__(self, fact: AppliedFact) -> None:
        if fact.loading and fact.namespace.parts not in self.namespaces:
            self.namespaces.append(fact.namespace.parts)


def test_the_first_listing_loads_every_object_and_later_ones_follow_every_writer(
    make_backend: BackendFactory,
) -> None:
    theirs = people(Store(make_backend()))
    for i in range(20):
        theirs.add(name=f"p{i:02}", age=i)
    store = Store(make_backend())
    loads = Loads(store)
    mine = people(store)
    assert loads.namespaces == []  # opening reads nothing
    assert len(mine) == 20
    assert len(loads.namespaces) == 20
    assert mine.keys() == [f"p{i:02}" for i in range(20)]
    assert [p.age for p in mine.filter(lambda p: p.age >= 18)] == [18, 19]
    assert len(loads.namespaces) == 20  # listing again loads nothing again
    # another process adds and deletes; this one sees it on its next listing
    mark = store.last_seq
    theirs.add(name="a-first", age=7)
    theirs.add(name="zz-last", age=7)
    theirs.delete("p03")
    keys = mine.keys()
    assert keys[0] == "a-first" and keys[-1] == "zz-last" and "p03" not in keys
    assert len(mine) == 21
    assert [p.name for p in mine.where(age=7)] == ["a-first", "p07", "zz-last"]
    found = mine.first(lambda p: p.age == 7)
    assert found is not None and found.name == "a-first"
    assert [p.name for p in mine.all()][:2] == ["a-first", "p00"]
    then = mine.as_of(seq=mark)
    then_keys = then.keys()
    assert len(then) == 20 and "a-first" not in then_keys and "p03" in then_keys
    assert sorted(loads.namespaces)[0] == ("people", "a-first")
    assert len(loads.namespaces) == 22
    store.close()


def test_listing_follows_this_processes_other_writers(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    mine = people(store, indexes=["age"])
    other = people(store)  # a second ModelStore on the same prefix
    mine.add(name="ann", age=30)
    assert mine.keys() == ["ann"]
    other.add(name="bob", age=30)
    raw = store.storage("people", "cid")  # and plain Storage
    raw.name, raw.age = "cid", 30
    store.storage("people", "cid", "deeper").x = 1  # not an object: one level too deep
    store.storage("elsewhere", "dan").name = "dan"  # not under the prefix
    assert mine.keys() == ["ann", "bob", "cid"]
    assert [p.name for p in mine.where(age=30)] == ["ann", "bob", "cid"]
    assert [p.name for p in mine.where(name__in=["cid", "dan"])] == ["cid"]


def test_an_index_built_after_the_listing_sees_every_object(make_backend: BackendFactory) -> None:
    theirs = people(Store(make_backend()))
    for i in range(10):
        theirs.add(name=f"p{i}", age=i % 3)
    mine = people(Store(make_backend()), indexes=["age", "email"])
    assert len(mine) == 10  # listed before any index is built
    theirs.add(name="late", age=2)
    theirs["p0"].age = 2
    assert [p.name for p in mine.where(age=2)] == ["late", "p0", "p2", "p5", "p8"]
    assert [p.name for p in mine.where(age__lt=1)] == ["p3", "p6", "p9"]
    theirs["p3"].email = "x@y.z"
    assert [p.name for p in mine.where(email="x@y.z", age=0)] == ["p3"]


def test_unsaved_changes_count_in_indexed_queries() -> None:
    mine = people(Store(), indexes=["age"], save_on_change=False)
    ann = mine.add(name="ann", age=30)
    bob = mine.add(name="bob", age=30)
    mine.commit_all()
    assert [p.name for p in mine.where(age=30)] == ["ann", "bob"]
    bob.age = 31  # not saved: the index still has 30
    assert [p.name for p in mine.where(age=30)] == ["ann"]
    assert mine.where(age__lte=30, name="bob") == []
    mine.commit(bob)
    assert [p.name for p in mine.where(age__gte=31)] == ["bob"]
    assert ann.age == 30


def test_equality_answers_follow_changes_of_their_holders(store: Store) -> None:
    for name, age in [("a", 1), ("b", 1), ("c", 2)]:
        store.write(store.namespace(("u", name)), "age", age)
    index = FieldIndex(store, ("u",), "age")
    assert index.equal(1) == [("u", "a"), ("u", "b")]
    assert index.equal(2) == [("u", "c")]
    store.write(store.namespace(("u", "c")), "age", 1)
    assert index.equal(1) == [("u", "a"), ("u", "b"), ("u", "c")]
    assert index.equal(2) == []
    store.delete(store.namespace(("u", "a")), "age")
    store.write(store.namespace(("u", "b")), "age", 2)
    assert index.equal(1) == [("u", "c")] and index.equal(2) == [("u", "b")]
    store.write(store.namespace(("u", "b")), "age", 1)
    assert index.equal(1) == [("u", "b"), ("u", "c")]
    index.close()


def test_an_index_may_be_given_its_namespaces(store: Store) -> None:
    for name, age in [("a", 1), ("b", 1)]:
        store.write(store.namespace(("u", name)), "age", age)
    listed = [store.namespace(("u", "a"))]  # b is left out: it is never read
    index = FieldIndex(store, ("u",), "age", namespaces=lambda: listed)
    assert index.equal(1) == [("u", "a")]
    store.write(store.namespace(("u", "c")), "age", 1)  # a fact after the build
    assert index.equal(1) == [("u", "a"), ("u", "c")]
    index.close()


def test_loaded_objects_keep_pydantics_fields_set(make_backend: BackendFactory) -> None:
    people(Store(make_backend())).add(name="ann", age=3)
    people(Store(make_backend())).add(name="bob", age=4)
    mine = people(Store(make_backend()))
    ann, bob = mine["ann"], mine["bob"]
    assert ann.model_fields_set == {"name", "age", "email"}
    ann.age = 5
    ann.email = "a@b.c"
    assert ann.model_dump(exclude_unset=True) == {"name": "ann", "age": 5, "email": "a@b.c"}
    assert bob.model_fields_set == {"name", "age", "email"}
    assert bob.model_copy().model_fields_set == {"name", "age", "email"}


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str


def test_extra_fields_set_on_one_object_stay_its_own(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    loose = ModelStore(Loose, store=store, key_selector=lambda o: o.name)
    loose.add(name="a")
    loose.add(name="b")
    again = ModelStore(Loose, store=Store(make_backend()), key_selector=lambda o: o.name)
    first, second = again["a"], again["b"]
    first.colour = "red"  # type: ignore[attr-defined]
    assert "colour" in first.model_fields_set and "colour" not in second.model_fields_set
    assert again["a"].colour == "red"  # type: ignore[attr-defined]


def test_optimistic_checks_turned_on_after_loading(make_backend: BackendFactory) -> None:
    mine = people(Store(make_backend()))
    theirs = people(Store(make_backend()))
    theirs.add(name="ann", age=1)
    ann = mine["ann"]
    assert ann.age == 1
    mine.optimistic = True  # the value loaded counts as shown
    theirs["ann"].age = 2
    ann.email = "x"  # a field nobody else changed: checked, and current
    with pytest.raises(ConflictError):
        ann.age = 10  # based on 1, which is not current any more
    assert ann.age == 2
    ann.age = 10
    assert theirs["ann"].age == 10


def test_queries_in_a_transaction_see_its_changes_and_list_its_objects() -> None:
    mine = people(Store(), indexes=["age"])
    mine.add(name="ann", age=30)
    with mine.transaction():
        mine.add(name="bob", age=30)
        mine["ann"].age = 31
        assert [p.name for p in mine.where(age=30)] == ["bob"]
        assert mine.keys() == ["ann", "bob"] and len(mine) == 2
    assert [p.name for p in mine.where(age=30)] == ["bob"]
