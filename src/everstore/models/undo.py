"""Undo and redo: each object's steps, undone and redone as new facts.

A step is one change made through this ModelStore (an assignment, a nested change, a
method call, a creation, a deletion). Undoing writes the values from before the step,
as new facts, so the undone values stay in the history; the step's inverse goes on the
redo stack, which a new change empties. A step is undone only while the object is as
the step left it: if another writer changed it since, the undo raises ConflictError
and writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConflictError
from .errors import NothingToUndoError
from .lifecycle import create, delete
from .state import CREATE, DELETE, ObjectState, Step
from .values import ABSENT, same_value

if TYPE_CHECKING:
    from .objects import Objects

__all__ = ["apply", "undo"]


def undo(objects: Objects, state: ObjectState, redo: bool = False, ctx: str | None = None) -> None:
    """Undo the object's latest change (or redo the latest undone one), as new
    facts: the undone values stay in the history.

    :raises NothingToUndoError: if there is nothing to undo (or redo)
    :raises ConflictError: if the object changed since that step (elsewhere)
    :raises RuntimeError: inside a transaction
    """
    if objects.in_transaction():
        raise RuntimeError("undo() and redo() run outside transactions")
    with state.lock:
        objects.fresh(state)
        stack = state.redo if redo else state.undo
        if not stack:
            raise NothingToUndoError(
                f"nothing to {'redo' if redo else 'undo'} for object {state.key!r}"
            )
        step = stack[-1]
        current = objects.current_values(state)
        for field, (_, after) in step.changes.items():
            if not same_value(current.get(field, ABSENT), after):
                raise ConflictError(
                    f"field {field!r} of object {state.key!r} changed since the step "
                    f"to {'redo' if redo else 'undo'}; nothing was written"
                )
        inverse = step.inverse()
        apply(objects, state, inverse, ctx)
        stack.pop()
        (state.undo if redo else state.redo).append(inverse)


def apply(objects: Objects, state: ObjectState, step: Step, ctx: str | None = None) -> None:
    """Make the object as ``step`` says (an undo or a redo), without a new step."""
    if step.kind == DELETE:
        delete(objects, state, step=False, ctx=ctx)
        return
    targets = {f: after for f, (_, after) in step.changes.items()}
    if step.kind == CREATE:
        model = objects.adapter.build({f: v for f, v in targets.items() if v is not ABSENT})
        create(objects, state.key, model, replace=False, ttl=None, step=False, ctx=ctx)
        return
    adapter = objects.adapter
    model = state.model
    held = {field: adapter.raw(model, field) for field in targets}
    try:
        for field, value in targets.items():
            adapter.load_field(model, field, value)
        changes = {f: (objects.before(state, f, held[f]), v) for f, v in targets.items()}
        if not state.new and objects.save_on_change:
            objects.persist(state, targets, {f: state.seqs.get(f, 0) for f in targets}, ctx)
        else:
            objects.record(state, state, changes, step=False, ctx=ctx)
    except BaseException:
        for field, value in held.items():
            adapter.restore(model, field, value)
        raise
