"""An object's past, read from its fields' histories: the change log, the object at a
seq, and the difference between two moments.

There is no second record of changes: the log is the change log. An object's
changes are the facts of its namespace, merged from its fields' histories, so they
are complete after a reload and in every process that opens the store.
"""

from __future__ import annotations

import datetime
from typing import Any, NamedTuple

from ..engine import END_OF_LOG, Engine, Namespace
from .adapters import EXPIRES, RESERVED
from .keys import Key
from .values import ABSENT

__all__ = ["ADD", "DELETE", "UPDATE", "Diff", "ModelChange", "changes_of", "values_at"]

#: kinds of changes
ADD, UPDATE, DELETE = "ADD", "UPDATE", "DELETE"


class ModelChange(NamedTuple):
    """One change of one field of a stored object: one fact of the log.

    ``prev_val`` and ``new_val`` are the stored values (an Enum as its value, a nested
    model as a dict); None where the field had no value (``kind`` says which:
    ``"ADD"`` when the field got a value, ``"UPDATE"``, ``"DELETE"`` for a tombstone).
    ``date`` is the fact's time as an aware datetime in local time.
    """

    key: Key
    prop_name: str
    prev_val: Any
    new_val: Any
    date: datetime.datetime
    kind: str
    seq: int
    context: str

    def as_json(self) -> dict[str, Any]:
        """The entry as in Slowstore's ``__changes__`` (plus kind, seq and context);
        values are converted by the export (:func:`~everstore.models.values.jsonable`)."""
        from .values import jsonable

        return {
            "__key__": jsonable(self.key),
            "prop_name": self.prop_name,
            "prev_val": jsonable(self.prev_val),
            "new_val": jsonable(self.new_val),
            "date": self.date.isoformat(),
            "kind": self.kind,
            "seq": self.seq,
            "context": self.context,
        }


def changes_of(store: Engine, ns: Namespace, key: Key, upto: int = END_OF_LOG) -> list[ModelChange]:
    """Every change of the object in ``ns`` (up to seq ``upto``), newest first.

    O(total facts of the object), reading the histories the engine already holds.
    """
    found: list[ModelChange] = []
    store.sync()
    for field in ns.written_fields():
        if field in RESERVED:
            continue
        previous: Any = ABSENT
        for value in store.history(ns, field, upto):
            current = ABSENT if value.unavailable else value.data
            if current is ABSENT:
                kind = DELETE
            elif previous is ABSENT:
                kind = ADD
            else:
                kind = UPDATE
            found.append(
                ModelChange(
                    key,
                    field,
                    None if previous is ABSENT else previous,
                    None if current is ABSENT else current,
                    datetime.datetime.fromtimestamp(value.time).astimezone(),
                    kind,
                    value.seq,
                    value.context,
                )
            )
            previous = current
    found.sort(key=lambda change: change.seq, reverse=True)
    return found


def values_at(
    store: Engine, ns: Namespace, seq: int = END_OF_LOG
) -> tuple[dict[str, Any], float | None]:
    """The object's stored field values at ``seq`` (absent fields left out), and its
    expiry time then (None: none)."""
    values: dict[str, Any] = {}
    expires = None
    store.sync()
    for field in ns.written_fields():
        history = store.history(ns, field, seq)
        if not len(history) or history.deleted_at(-1):
            continue
        if field == EXPIRES:
            expires = history.value_at(-1)
        elif field not in RESERVED:
            values[field] = history.value_at(-1)
    return values, expires


class Diff(NamedTuple):
    """How an object differs between two moments, in stored values: fields that got
    a value (``added``), lost it (``removed``: the old value) or changed
    (``changed``: ``(old, new)``)."""

    added: dict[str, Any]
    removed: dict[str, Any]
    changed: dict[str, tuple[Any, Any]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_values(before: dict[str, Any], after: dict[str, Any]) -> Diff:
    from .values import same_value

    added = {f: v for f, v in after.items() if f not in before}
    removed = {f: v for f, v in before.items() if f not in after}
    changed = {
        f: (v, after[f]) for f, v in before.items() if f in after and not same_value(v, after[f])
    }
    return Diff(added, removed, changed)
