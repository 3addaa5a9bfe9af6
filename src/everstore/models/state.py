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
from .values import ABSENT, same_value

__all__ = [
    "CREATE",
    "DELETE",
    "FIELDS",
    "NO_CHANGES",
    "ObjectState",
    "Step",
    "View",
    "Working",
    "merge_steps",
    "own_dirty",
]

#: kinds of undo steps
FIELDS, CREATE, DELETE = "fields", "create", "delete"


class Step:
    """One undoable change of an object: ``changes`` maps each changed field to
    ``(before, after)`` stored values (ABSENT: no value). For CREATE and DELETE it
    holds every field (before ABSENT for a creation, after ABSENT for a deletion).

    A creation or a deletion keeps only its values (``Step.created(values)``,
    ``Step.deleted(values)``), and makes ``changes`` when it is read: an object added
    in this process keeps its creation step as long as it lives, and a dict of plain
    values costs the garbage collector nothing, where a pair per field would each be
    a container to track.
    """

    __slots__ = ("_changes", "_values", "kind")

    def __init__(self, kind: str, changes: dict[str, tuple[Any, Any]]) -> None:
        self.kind = kind
        self._changes: dict[str, tuple[Any, Any]] | None = changes
        self._values: dict[str, Any] | None = None

    @classmethod
    def created(cls, values: dict[str, Any]) -> Step:
        """The creation of an object with these stored values."""
        step = cls(CREATE, {})
        step._changes, step._values = None, values
        return step

    @classmethod
    def deleted(cls, values: dict[str, Any]) -> Step:
        """The deletion of an object that had these stored values."""
        step = cls(DELETE, {})
        step._changes, step._values = None, values
        return step

    @property
    def changes(self) -> dict[str, tuple[Any, Any]]:
        changes = self._changes
        if changes is not None:
            return changes
        values = self._values or {}
        if self.kind == CREATE:
            return {field: (ABSENT, value) for field, value in values.items()}
        return {field: (value, ABSENT) for field, value in values.items()}

    def inverse(self) -> Step:
        """The step that undoes this one."""
        if self._changes is None and self._values is not None:
            flip = Step.deleted if self.kind == CREATE else Step.created
            return flip(self._values)
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


#: guards the lazy creation of the per-object locks
_LOCK_CREATION = threading.Lock()


class _NoChanges(dict[str, Any]):
    """The ``dirty`` of every object without unsaved changes: one empty dict, shared.

    A query reads ``dirty`` of every object it checks; shared, it stays in the CPU's
    cache (and costs no memory per object). A change is recorded in the object's own
    dict (see :func:`own_dirty`): this one refuses to hold any.
    """

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("NO_CHANGES is shared: record a change with own_dirty(view)")

    def setdefault(self, key: str, default: Any = None) -> Any:
        raise TypeError("NO_CHANGES is shared: record a change with own_dirty(view)")

    def update(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise TypeError("NO_CHANGES is shared: record a change with own_dirty(view)")


#: the ``dirty`` of an object without unsaved changes
NO_CHANGES: dict[str, Any] = _NoChanges()


def own_dirty(view: ObjectState | Working) -> dict[str, Any]:
    """``view.dirty``, made the object's own first if it is the shared empty one."""
    dirty = view.dirty
    if dirty is NO_CHANGES:
        dirty = view.dirty = {}
    return dirty


class ObjectState:
    """One stored object, as this ModelStore holds it (shared by its proxies).

    A ModelStore may hold one per stored object (100k and more), so what most
    objects never need is made on first use: the lock (reading a loaded object
    takes none), the undo and redo stacks, the steps of an operation.
    """

    # What a query reads of each object first, so that it shares a cache line.
    __slots__ = (  # noqa: RUF023
        "stale",
        "new",
        "live",
        "model",
        "expires",
        "saved",
        "dirty",
        "proxy",
        "key",
        "part",
        "ns",
        "seqs",
        "seen",
        "error",
        "group",
        "_lock",
        "_undo",
        "_redo",
        "_grouped",
    )

    txn = False

    def __init__(self, key: Key, part: str, ns: Namespace) -> None:
        self.key = key
        self.part = part
        self.ns = ns
        self._lock: threading.RLock | None = None
        #: the object (None until first built)
        self.model: Any = None
        #: field -> the stored value the log holds (as of the last refresh or own write)
        self.saved: dict[str, Any] = {}
        #: field -> seq of its latest fact known here
        self.seqs: dict[str, int] = {}
        #: field -> seq of the value this store last showed, loaded or wrote (what an
        #: optimistic write expects the field to be still at); kept by optimistic
        #: stores only, None until then (see :meth:`shown`)
        self.seen: dict[str, int] | None = None
        #: field -> its stored value before the first change not saved yet (NO_CHANGES
        #: until there is one: write to it through own_dirty())
        self.dirty: dict[str, Any] = NO_CHANGES
        #: True when the log has facts this state has not been rebuilt from
        self.stale = True
        #: the object exists (added and not deleted)
        self.live = False
        #: added here and not saved yet (save_on_change is off)
        self.new = False
        #: expiry time (the store's clock), or None
        self.expires: float | None = None
        self._undo: list[Step] | None = None
        self._redo: list[Step] | None = None
        #: > 0 while an operation (a method call) groups its steps
        self.group = 0
        self._grouped: list[Step] | None = None
        self.proxy: Any = None
        #: why the stored values do not build an object of the model (None: they do)
        self.error: Exception | None = None

    @property
    def lock(self) -> threading.RLock:
        """The lock that writers (and a rebuild from the log) hold on this object."""
        lock = self._lock
        if lock is None:
            with _LOCK_CREATION:
                lock = self._lock
                if lock is None:
                    lock = self._lock = threading.RLock()
        return lock

    def shown(self) -> dict[str, int]:
        """``seen``, made on first use."""
        seen = self.seen
        if seen is None:
            seen = self.seen = {}
        return seen

    @property
    def undo(self) -> list[Step]:
        stack = self._undo
        if stack is None:
            stack = self._undo = []
        return stack

    @property
    def redo(self) -> list[Step]:
        stack = self._redo
        if stack is None:
            stack = self._redo = []
        return stack

    @property
    def grouped(self) -> list[Step]:
        steps = self._grouped
        if steps is None:
            steps = self._grouped = []
        return steps

    @grouped.setter
    def grouped(self, steps: list[Step]) -> None:
        self._grouped = steps

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
