"""Expiry: an object's expiry time is a field of its namespace (``_expires_at``,
seconds by the Store's clock), so every process agrees on it and past views judge it
at their own moment. An expired object is invisible to reads and queries; purging
deletes expired objects with tombstones, as a logged operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapters import EXPIRES
from .keys import Key
from .state import ObjectState, Working
from .values import ABSENT

if TYPE_CHECKING:
    from .objects import Objects

__all__ = ["purge", "set_expiry"]


def set_expiry(
    objects: Objects, state: ObjectState, expires: float | None, ctx: str | None = None
) -> None:
    """Set (None: remove) the object's expiry time; saved at once."""
    with objects.locked_view(state) as view:
        objects.check_alive(state, view)
        value = ABSENT if expires is None else expires
        if view.expires is None and expires is None:
            return
        if view.txn:
            assert isinstance(view, Working)
            objects.write_in_transaction(state, view, {EXPIRES: value}, ctx)
        elif not view.new:
            assert isinstance(view, ObjectState)
            objects.persist(state, {EXPIRES: value}, None, ctx)
        view.expires = expires


def purge(objects: Objects, ctx: str | None = None) -> list[Key]:
    """Delete every expired object, in one transaction; return their keys."""
    now = objects.store.clock()
    expired = []
    for part in objects.parts():
        state = objects.state(part=part)
        view = objects.peek(state)
        if view.live and view.expires is not None and view.expires <= now:
            expired.append(state)
    if not expired:
        return []
    try:
        with objects.block(ctx):
            for state in expired:
                with objects.locked_view(state) as view:
                    fields = {*view.saved, EXPIRES}
                    if view.txn:
                        assert isinstance(view, Working)
                        objects.write_in_transaction(
                            state, view, dict.fromkeys(fields, ABSENT), ctx
                        )
                    else:
                        objects.persist(state, dict.fromkeys(fields, ABSENT), None, ctx)
    except BaseException:
        for state in expired:
            state.stale = True
        raise
    for state in expired:
        if not objects.in_transaction():
            state.live = False
            state.expires = None
            state.dirty.clear()
    return [state.key for state in expired]
