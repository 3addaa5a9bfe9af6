"""The in-memory state of one stored object, and of one transaction's view of it.

An :class:`ObjectState` is the one copy of an object that a ModelStore keeps (all
proxies of the object share it): the object as the log has it (plus the changes not
saved yet), the stored values it was built from with their seqs, and the undo and
redo stacks. A :class:`Working` copy is one thread's view of the object while that
thread has a transaction open: its changes stay there, invisible to other threads,
until the transaction commits (the fact hook then marks the shared state stale, and
it is rebuilt from the log), or vanish if it fails.
"""

from __future__ import annotations

import threading
from typing import Any

from ..engine import Namespace
from .keys import Key
from .values import same_value

__all__ = ["CREATE", "DELETE", "FIELDS", "ObjectState", "Step", "View", "Working", "merge_steps"]

#: kinds of undo steps
FIELDS, CREATE, DELETE = "fields", "create", "delete"


class Step:
    """One undoable change of an object: ``changes`` maps each changed field to
    ``(before, after)`` stored values (ABSENT: no value). For CREATE and DELETE it
    holds every field (before ABSENT for a creation, after ABSENT for a deletion).
    """

    __slots__ = ("changes", "kind")

    def __init__(self, kind: str, changes: dict[str, tuple[Any, Any]]) -> None:
        self.kind = kind
        self.changes = changes

    def inverse(self) -> Step:
        """The step that undoes this one."""
        kind = {CREATE: DELETE, DELETE: CREATE}.get(self.kind, FIELDS)
        return Step(kind, {f: (after, before) for f, (before, after) in self.changes.items()})

    def __repr__(self) -> str:
        return f"Step({self.kind}, {self.changes!r})"


def merge_steps(steps: list[Step]) -> list[Step]:
    """Field steps made by one operation (a method call) as one step; creations and
    deletions stay steps of their own."""
    if len(steps) <= 1 or any(step.kind != FIELDS for step in steps):
        return steps
    changes: dict[str, tuple[Any, Any]] = {}
    for step in steps:
        for field, (before, after) in step.changes.items():
            first = changes[field][0] if field in changes else before
            changes[field] = (first, after)
    kept = {f: pair for f, pair in changes.items() if not same_value(pair[0], pair[1])}
    return [Step(FIELDS, kept)] if kept else []


class ObjectState:
    """One stored object, as this ModelStore holds it (shared by its proxies)."""

    __slots__ = (
        "dirty",
        "error",
        "expires",
        "group",
        "grouped",
        "key",
        "live",
        "lock",
        "model",
        "new",
        "ns",
        "part",
        "proxy",
        "redo",
        "saved",
        "seen",
        "seqs",
        "stale",
        "undo",
    )

    txn = False

    def __init__(self, key: Key, part: str, ns: Namespace) -> None:
        self.key = key
        self.part = part
        self.ns = ns
        self.lock = threading.RLock()
        #: the object (None until first built)
        self.model: Any = None
        #: field -> the stored value the log holds (as of the last refresh or own write)
        self.saved: dict[str, Any] = {}
        #: field -> seq of its latest fact known here
        self.seqs: dict[str, int] = {}
        #: field -> seq of the value this store last showed, loaded or wrote (what an
        #: optimistic write expects the field to be still at)
        self.seen: dict[str, int] = {}
        #: field -> its stored value before the first change not saved yet
        self.dirty: dict[str, Any] = {}
        #: True when the log has facts this state has not been rebuilt from
        self.stale = True
        #: the object exists (added and not deleted)
        self.live = False
        #: added here and not saved yet (save_on_change is off)
        self.new = False
        #: expiry time (the store's clock), or None
        self.expires: float | None = None
        self.undo: list[Step] = []
        self.redo: list[Step] = []
        #: > 0 while an operation (a method call) groups its steps
        self.group = 0
        self.grouped: list[Step] = []
        self.proxy: Any = None
        #: why the stored values do not build an object of the model (None: they do)
        self.error: Exception | None = None

    def __repr__(self) -> str:
        return f"ObjectState({self.key!r})"


class Working:
    """One thread's view of an object while it has a transaction open."""

    __slots__ = (
        "dirty",
        "expires",
        "group",
        "grouped",
        "live",
        "model",
        "new",
        "saved",
        "state",
        "steps",
        "written",
    )

    txn = True

    def __init__(self, state: ObjectState, model: Any) -> None:
        self.state = state
        self.model = model
        #: field -> the stored value as this transaction last saw it in the log
        self.saved: dict[str, Any] = dict(state.saved)
        self.dirty: dict[str, Any] = dict(state.dirty)
        self.live = state.live
        self.new = state.new
        self.expires = state.expires
        #: undo steps made in the transaction: pushed to the state's stack on commit
        self.steps: list[Step] = []
        self.written: set[str] = set()
        self.group = 0
        self.grouped: list[Step] = []

    @property
    def undo(self) -> list[Step]:
        return self.steps


#: what an operation reads and changes: the shared state, or a transaction's copy
View = ObjectState | Working
