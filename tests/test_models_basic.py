"""everstore.models: the Slowstore API, kept (on every backend where it matters).

"Another process" is a second Store on the same database (``make_backend()`` twice);
tests/test_models_concurrency.py runs real processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from conftest import BackendFactory
from everstore import ConflictError, Memory, Store
from everstore.errors import InvalidNameError
from everstore.models import (
    DATABASE_FILE,
    DuplicateKeyError,
    GoneError,
    ModelProxy,
    ModelStore,
    NothingToUndoError,
)


class Person(BaseModel):
    name: str
    age: int = 0

    def birthday(self) -> None:
        self.age += 1

    def rename(self, name: str, age: int) -> None:
        self.name = name
        self.age = age

    @property
    def label(self) -> str:
        return f"{self.name} ({self.age})"


def people(store: Store, **options: object) -> ModelStore[Person]:
    return ModelStore(
        Person, store=store, prefix=("people",), key_selector=lambda p: p.name, **options
    )  # type: ignore[arg-type]


def other_process(make_backend: BackendFactory, **options: object) -> ModelStore[Person]:
    """The same collection seen by another Store on the same database."""
    return people(Store(make_backend()), **options)


# -- construction ----------------------------------------------------------------------


def test_directory_form_creates_an_sqlite_store(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "mydata"
    store = ModelStore[Person](Person, folder, key_selector=lambda p: p.name)
    store.add(name="ann", age=3)
    store.close()
    assert (folder / DATABASE_FILE).is_file()
    again = ModelStore(Person, str(folder), key_selector=lambda p: p.name)
    assert again["ann"].age == 3
    assert again.store.namespaces() == [("Person", "ann")]  # default prefix: the class name
    again.close()


def test_store_form_any_backend(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    group = people(store)
    group.add(name="ann", age=3)
    assert store.namespaces(("people",)) == [("people", "ann")]
    assert store.storage("people", "ann").age == 3  # one field per model field
    assert other_process(make_backend)["ann"].age == 3


def test_unknown_or_conflicting_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="save_on_chnage"):
        ModelStore(Person, tmp_path, save_on_chnage=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="not both"):
        ModelStore(Person, tmp_path, store=Store())
    with pytest.raises(TypeError, match="tuple of namespace parts"):
        ModelStore(Person, store=Store(), prefix="people")
    with pytest.raises(InvalidNameError):
        ModelStore(Person, store=Store(), prefix=("a/b",))
    with pytest.raises(TypeError, match="codec"):
        ModelStore(Person, store=Store(), codec=Store().codec)
    with pytest.raises(ValueError, match="ttl"):
        ModelStore(Person, ttl=-1)
    with pytest.raises(TypeError, match="a class"):
        ModelStore("Person")  # type: ignore[arg-type]

    class Reserved(BaseModel):
        pass

    import dataclasses

    @dataclasses.dataclass
    class Clash:
        _expires_at: float = 0.0

    with pytest.raises(InvalidNameError, match="reserved"):
        ModelStore(Clash)
    ModelStore(Reserved)  # no fields is fine


# -- proxies -----------------------------------------------------------------------------


def test_add_and_set_return_proxies_that_save_assignments(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()))
    ann = group.add(name="ann", age=30)
    bob = group.set(Person(name="bob", age=40))
    assert isinstance(ann, ModelProxy) and isinstance(bob, ModelProxy)
    ann.age = 31
    bob.age = "41"  # validated as the model validates: coerced to 41
    elsewhere = other_process(make_backend)
    assert (elsewhere["ann"].age, elsewhere["bob"].age) == (31, 41)
    assert group.get("ann") is ann  # one proxy per object
    assert ann.label == "ann (31)"  # properties run on the proxy


def test_model_methods_mutate_through_the_proxy(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()))
    dennis = group.add(name="denis", age=32)
    dennis.birthday()
    dennis.rename("DENIS", 40)
    elsewhere = other_process(make_backend)["denis"]
    assert (elsewhere.name, elsewhere.age) == ("DENIS", 40)
    # a method's changes are one step of the undo stack
    dennis.undo()
    assert (dennis.name, dennis.age) == ("denis", 33)


def test_the_key_is_fixed_when_added(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()))
    dennis = group.add(name="denis", age=32)
    dennis.name = "DENIS"
    assert dennis.__key__ == "denis"
    assert "denis" in group and "DENIS" not in group
    assert group.keys() == ["denis"]


def test_add_refuses_a_stored_key_and_set_replaces(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()))
    ann = group.add(name="ann", age=1)
    with pytest.raises(DuplicateKeyError):
        group.add(name="ann", age=2)
    assert ann.age == 1
    again = group.set(Person(name="ann", age=5))
    assert again is ann and ann.age == 5
    group["carl"] = Person(name="carl", age=9)
    assert group["carl"].age == 9
    with pytest.raises(TypeError, match="Person"):
        group.set("not a person")  # type: ignore[arg-type]


def test_set_keeps_its_own_copy() -> None:
    group = people(Store())
    mine = Person(name="ann", age=1)
    proxy = group.set(mine)
    mine.age = 99  # the caller's object is not the stored one
    assert proxy.age == 1


def test_keys_by_default_come_from_id_or_key() -> None:
    class Item(BaseModel):
        id: int
        title: str = ""

    items = ModelStore(Item)
    items.add(id=7, title="seven")
    assert items[7].title == "seven" and items.keys() == [7]
    with pytest.raises(TypeError, match="key_selector"):
        ModelStore(Person).add(name="nobody")


# -- save_on_change, commit, dirty ---------------------------------------------------------


def test_save_on_change_off_keeps_changes_until_commit(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()), save_on_change=False)
    ann = group.add(name="ann", age=1)
    bob = group.add(name="bob", age=1)
    assert ann.is_dirty and group.is_dirty(bob)
    elsewhere = other_process(make_backend)
    assert "ann" not in elsewhere and len(group) == 2
    group.commit(ann)
    assert not ann.is_dirty and bob.is_dirty
    assert elsewhere["ann"].age == 1 and "bob" not in elsewhere
    ann.age = 2
    bob.age = 2
    assert elsewhere["ann"].age == 1
    group.commit_all()
    assert not ann.is_dirty and not bob.is_dirty
    assert (elsewhere["ann"].age, elsewhere["bob"].age) == (2, 2)
    group.save_on_change = True  # toggled at any time
    ann.age = 3
    assert elsewhere["ann"].age == 3 and not ann.is_dirty


def test_changing_a_value_back_is_not_dirty() -> None:
    group = people(Store(), save_on_change=False)
    ann = group.add(name="ann", age=1)
    group.commit(ann)
    ann.age = 2
    assert ann.is_dirty
    ann.age = 1
    assert not ann.is_dirty


def test_commit_saves_changes_made_behind_the_proxys_back() -> None:
    store = Store()
    group = people(store, save_on_change=False)
    ann = group.add(name="ann", age=1)
    ann.commit()
    ann.__model__.age = 7  # not tracked...
    group.commit(ann)  # ... but commit compares every field
    assert people(store)["ann"].age == 7


def test_commit_all_is_one_transaction(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    group = people(store, save_on_change=False)
    group.add(name="ann", age=1)
    group.add(name="bob", age=1)
    before = store.last_seq
    group.commit_all()
    times = {change.time for change in store.follow(since=before, timeout=0)}
    assert len(times) == 1  # the facts of one commit share its time


# -- undo and redo -------------------------------------------------------------------------


def test_undo_redo_multi_step_each_a_new_fact(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    group = people(store)
    ann = group.add(name="ann", age=1)
    ann.age = 2
    ann.age = 3
    ann.undo()
    assert ann.age == 2
    ann.undo()
    assert ann.age == 1
    ann.redo()
    assert ann.age == 2
    ann.redo()
    assert ann.age == 3
    with pytest.raises(NothingToUndoError):
        ann.redo()
    # every undo and redo was written: the undone values stay in the history
    ages = [v.data for v in store.history(store.namespace(("people", "ann")), "age")]
    assert ages == [1, 2, 3, 2, 1, 2, 3]
    assert other_process(make_backend)["ann"].age == 3


def test_a_new_change_clears_the_redo_stack() -> None:
    group = people(Store())
    ann = group.add(name="ann", age=1)
    ann.age = 2
    ann.undo()
    ann.age = 5
    with pytest.raises(NothingToUndoError):
        ann.redo()
    ann.undo()
    assert ann.age == 1


def test_undoing_a_creation_deletes_and_redo_recreates(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    group = people(store)
    ann = group.add(name="ann", age=1)
    ann.undo()
    assert "ann" not in group and "ann" not in other_process(make_backend)
    with pytest.raises(NothingToUndoError):
        ann.undo()
    ann.redo()
    assert group["ann"].age == 1 and other_process(make_backend)["ann"].age == 1


def test_undo_of_a_deletion_restores_the_object() -> None:
    group = people(Store())
    ann = group.add(name="ann", age=4)
    group.delete(ann)
    ann.undo()
    assert group["ann"].age == 4


def test_undo_refuses_when_another_writer_changed_the_object(
    make_backend: BackendFactory,
) -> None:
    group = people(Store(make_backend()))
    ann = group.add(name="ann", age=1)
    ann.age = 2
    other_process(make_backend)["ann"].age = 10
    with pytest.raises(ConflictError):
        ann.undo()
    assert ann.age == 10 and other_process(make_backend)["ann"].age == 10


def test_undo_with_save_on_change_off_changes_memory_until_commit() -> None:
    store = Store()
    group = people(store, save_on_change=False)
    ann = group.add(name="ann", age=1)
    ann.commit()
    ann.age = 9
    ann.commit()
    ann.undo()
    assert ann.age == 1 and ann.is_dirty and people(store)["ann"].age == 9
    ann.commit()
    assert people(store)["ann"].age == 1


def test_store_level_undo_redo_for_models_with_such_fields() -> None:
    class Task(BaseModel):
        name: str
        undo: str = "keep"

    tasks = ModelStore(Task, key_selector=lambda t: t.name)
    task = tasks.add(name="t")
    assert task.undo == "keep"  # the model's field wins over the proxy's method
    task.undo = "changed"
    tasks.undo(task)
    assert task.undo == "keep"
    tasks.redo(task)
    assert task.undo == "changed"


# -- queries, membership, deletion ---------------------------------------------------------


def test_all_filter_first_len_keys(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()))
    for name, age in [("ann", 31), ("bob", 25), ("cid", 40)]:
        group.add(name=name, age=age)
    assert [p.name for p in group.all()] == ["ann", "bob", "cid"]
    assert [p.name for p in group.filter(lambda p: p.age > 30)] == ["ann", "cid"]
    assert group.first(lambda p: p.age > 30).name == "ann"  # type: ignore[union-attr]
    assert group.first(lambda p: p.age > 99) is None
    assert len(group) == 3 and group.keys() == ["ann", "bob", "cid"]
    assert [k for k, _ in group.items()] == ["ann", "bob", "cid"]


def test_in_by_proxy_model_or_key() -> None:
    group = people(Store())
    ann = group.add(name="ann")
    assert ann in group and "ann" in group and Person(name="ann") in group
    assert Person(name="zed") not in group and "zed" not in group and 3.5 not in group


def test_delete_by_proxy_or_key_leaves_a_readable_history(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    group = people(store)
    ann, bob, cid, _ = (group.add(name=n, age=1) for n in ("ann", "bob", "cid", "dan"))
    assert group.delete(ann) and group.delete("bob")
    del group[cid]
    del group["dan"]
    assert len(group) == 0 and not group.delete("ann")
    with pytest.raises(KeyError):
        del group["ann"]
    with pytest.raises(GoneError):
        ann.age  # noqa: B018
    with pytest.raises(GoneError):
        bob.age = 3
    elsewhere = other_process(make_backend)
    assert len(elsewhere) == 0
    assert [c.kind for c in elsewhere.changes("ann")] == ["DELETE", "DELETE", "ADD", "ADD"]
    assert store.storage("people", "ann").__history__()["age"][0].data == 1


def test_a_deleted_key_can_be_added_again() -> None:
    group = people(Store())
    group.add(name="ann", age=1)
    group.delete("ann")
    again = group.add(name="ann", age=2)
    assert again.age == 2 and len(group) == 1


# -- the change log ---------------------------------------------------------------------


def test_change_log_newest_first_complete_after_reload(make_backend: BackendFactory) -> None:
    group = people(Store(make_backend()))
    dennis = group.add(name="denis", age=32)
    dennis.name = "DENIS"
    dennis.birthday()
    expected = [
        ("denis", "age", 32, 33, "UPDATE"),
        ("denis", "name", "denis", "DENIS", "UPDATE"),
        ("denis", "age", None, 32, "ADD"),
        ("denis", "name", None, "denis", "ADD"),
    ]
    for log in (dennis.__changes__, other_process(make_backend).changes("denis")):
        assert [(c.key, c.prop_name, c.prev_val, c.new_val, c.kind) for c in log] == expected
        dates = [c.date for c in log]
        assert dates == sorted(dates, reverse=True) and dates[0].tzinfo is not None
        # the line that made the change: inside the model's method, or the test
        assert log[0].context.startswith(f"{__name__}.birthday:")
        assert log[1].context.startswith(f"{__name__}.test_change_log")


def test_repr_equality_and_hash() -> None:
    group = people(Store())
    ann = group.add(name="ann", age=1)
    assert repr(ann) == repr(Person(name="ann", age=1))
    assert ann == Person(name="ann", age=1) and ann == group["ann"]
    assert hash(ann) == hash(group["ann"])
    assert dict(ann) == {"name": "ann", "age": 1}
    assert ann.model_dump() == {"name": "ann", "age": 1}
    with pytest.raises(TypeError, match="pickled"):
        import pickle

        pickle.dumps(ann)


def test_context_manager_commits_and_closes(tmp_path: Path) -> None:
    with ModelStore(Person, tmp_path, key_selector=lambda p: p.name, save_on_change=False) as group:
        group.add(name="ann", age=1)
    with ModelStore(Person, tmp_path, key_selector=lambda p: p.name) as group:
        assert group["ann"].age == 1


def test_a_store_of_memory_is_the_default() -> None:
    group = ModelStore(Person, key_selector=lambda p: p.name)
    group.add(name="ann")
    assert isinstance(group.store.backend, Memory)
