"""An object's life: creation (``add``/``set``), replacement, deletion, commit.

Each writes through :class:`~.objects.Objects`: into the calling thread's open
transaction (on its working copy), into the object's unsaved changes (with
``save_on_change`` off), or straight to the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .adapters import EXPIRES
from .errors import DuplicateKeyError
from .keys import Key
from .state import ObjectState, Step, View, Working, own_dirty
from .values import ABSENT, same_value

if TYPE_CHECKING:
    from .objects import Objects

__all__ = ["commit", "create", "delete", "replace_fields"]


def create(
    objects: Objects,
    key: Key,
    model: Any,
    replace: bool,
    ttl: float | None,
    step: bool = True,
    ctx: str | None = None,
) -> ObjectState:
    """Store ``model`` (the store's own copy) under ``key``; with ``replace``, an
    existing object takes its field values instead.

    :raises DuplicateKeyError: if the object exists and ``replace`` is False
    """
    state = objects.state(key)
    with objects.locked_view(state) as view:
        if objects.alive(view):
            if not replace:
                raise DuplicateKeyError(
                    f"an object with key {state.key!r} is already stored: set() "
                    f"replaces it, add() does not"
                )
            replace_fields(objects, state, view, model, ctx)
            return state
        values = objects.stored_values(model)
        ttl = objects.ttl if ttl is None else ttl
        expires = objects.store.clock() + ttl if ttl is not None else None
        writes = dict(values)
        if expires is not None:
            writes[EXPIRES] = expires
        elif view.expires is not None or EXPIRES in state.ns.written_fields():
            writes[EXPIRES] = ABSENT
        old = (view.model, view.live, view.new, view.expires, dict(view.dirty))
        view.model, view.live, view.expires = model, True, expires
        view.dirty.clear()
        try:
            if view.txn:
                assert isinstance(view, Working)
                objects.write_in_transaction(state, view, writes, ctx)
                view.new = False
            elif not objects.save_on_change:
                view.new = True
                objects.unsaved.add(state.part)
            else:
                check = {f: state.seqs.get(f, 0) for f in writes} if objects.optimistic else {}
                objects.persist(state, writes, check, ctx)
                view.new = False
        except BaseException:
            view.model, view.live, view.new, view.expires = old[:4]
            if old[4]:
                own_dirty(view).update(old[4])
            raise
        if step:
            objects.push_step(view, Step.created(values))
    return state


def replace_fields(
    objects: Objects, state: ObjectState, view: View, model: Any, ctx: str | None = None
) -> None:
    """``set()`` of an existing object: every field that differs changes (one
    undo step); fields the new object lacks get tombstones."""
    adapter = objects.adapter
    current = view.model
    # None when the stored values make no object of the model (an erased field, or
    # values written by other code): the stored values are what changes then.
    old_fields = list(view.saved) if current is None else adapter.field_names(current)

    def before(field: str) -> Any:
        held = ABSENT if current is None else adapter.raw(current, field)
        return objects.before(view, field, held)

    changes: dict[str, tuple[Any, Any]] = {}
    new_fields = adapter.field_names(model)
    for field in new_fields:
        held = adapter.raw(model, field)
        after = ABSENT if held is ABSENT else objects.stored(field, held)
        old_value = before(field)
        if not same_value(old_value, after):
            changes[field] = (old_value, after)
    for field in old_fields:
        if field not in new_fields:
            changes[field] = (before(field), ABSENT)
    if not changes:
        return
    old = view.model
    view.model = model
    try:
        objects.record(state, view, changes, ctx=ctx)
    except BaseException:
        view.model = old
        raise


def delete(objects: Objects, state: ObjectState, step: bool = True, ctx: str | None = None) -> bool:
    """Delete the object: a tombstone for each of its fields (its history stays).
    Immediate whatever save_on_change says. False if it does not exist."""
    with objects.locked_view(state) as view:
        if not objects.alive(view):
            return False
        adapter = objects.adapter
        model = view.model
        values = {}
        if model is None:  # values that do not build an object: delete what is stored
            values = dict(view.saved)
        for field in adapter.field_names(model) if model is not None else ():
            held = adapter.raw(model, field)
            if held is not ABSENT:
                values[field] = objects.before(view, field, held)
        if view.txn:
            assert isinstance(view, Working)
            fields = set(view.saved) | {EXPIRES}
            objects.write_in_transaction(state, view, dict.fromkeys(fields, ABSENT), ctx)
        elif not view.new:
            assert isinstance(view, ObjectState)
            fields = set(view.saved)
            if view.expires is not None:
                fields.add(EXPIRES)
            objects.persist(state, dict.fromkeys(fields, ABSENT), None, ctx)
        view.live = False
        view.new = False
        view.dirty.clear()
        view.expires = None
        if step:
            objects.push_step(view, Step.deleted(values))
        return True


def commit(objects: Objects, state: ObjectState, ctx: str | None = None) -> None:
    """Save the object's unsaved changes (all of them if it is new), including
    in-place changes made behind the proxy's back.

    :raises ConflictError: (optimistic stores) if another writer changed a field
        this object changed since it was loaded
    """
    with objects.locked_view(state) as view:
        if not view.live or view.model is None:
            return
        adapter = objects.adapter
        model = view.model
        values = {}
        for field in adapter.field_names(model):
            held = adapter.raw(model, field)
            stored = ABSENT if held is ABSENT else objects.stored(field, held)
            if view.new or not same_value(stored, view.saved.get(field, ABSENT)):
                values[field] = stored
        if view.new and view.expires is not None:
            values[EXPIRES] = view.expires
        if not values and not view.new:
            view.dirty.clear()
            return
        if view.txn:
            assert isinstance(view, Working)
            objects.write_in_transaction(state, view, values, ctx)
        else:
            assert isinstance(view, ObjectState)
            check: dict[str, int] = {}
            if objects.optimistic:
                if view.new:
                    check = {f: state.seqs.get(f, 0) for f in values}
                else:
                    check = {f: objects.expected(state, f) for f in values if f in view.dirty}
            objects.persist(state, values, check, ctx)
        view.new = False
        view.dirty.clear()
