"""Containers that record their own changes: what a Store hands out inside ``with``.

A :class:`TrackedList`, :class:`TrackedDict`, :class:`TrackedSet` or
:class:`TrackedBytearray` is the builtin type for every purpose a user has
(``isinstance``, equality, ``repr``, ``copy``, pickling and the codec all see the plain
type), but each one belongs to a :class:`Tracker`: the bookkeeping of one stored value,
the engine's cached current value, nested containers included.

Why: the engine keeps one private current value per field. Handing out a copy inside
``with`` and diffing it on exit costs time in proportion to the value. Instead the
cached value itself is *lent* to the transaction; while it is lent, its containers
keep just enough to

* make the change as a delta from what happened, not from a comparison: appending to
  the top-level list (or bytearray), setting or deleting top-level keys of a dict (str
  or int keys) and adding or removing set members (str or int) cost the change alone;
* undo the block's changes in place, for a failed block or a rolled-back inner one;
* give the committed value to anyone else who needs it meanwhile.

Any other change (sorting, inserting, a change inside a nested container, keys of
other types) first takes an encoded snapshot of the value, once per lending and open
inner block, and the commit falls back to comparing encodings: O(size of the value),
as every change was before.

A container changed while its value is not lent (kept from an earlier block) first
gives the engine a copy of itself, and is an ordinary container from then on: such
changes are not saved, and the engine's value stays exact.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, SupportsIndex

__all__ = [
    "PLAIN_TYPES",
    "TRACKED_TYPES",
    "Tracker",
    "TrackedBytearray",
    "TrackedDict",
    "TrackedList",
    "TrackedSet",
    "Untrackable",
    "held_elsewhere",
]


class _Codec(Protocol):
    """What a Tracker needs of the codec (the codec module imports this one)."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...

    def is_mutable(self, value: Any) -> bool: ...

    def make_delta(self, base_seq: int, old: bytes, new_value: Any, new: bytes) -> bytes | None: ...

    def encode_append(self, base_seq: int, items: list[Any]) -> bytes: ...

    def encode_dict_change(
        self, base_seq: int, changed: dict[Any, Any], removed: list[Any]
    ) -> bytes: ...

    def encode_set_change(self, base_seq: int, added: set[Any], removed: set[Any]) -> bytes: ...


class Untrackable(Exception):
    """A value holds a mutable part no container can watch (a ``random.Random``, a
    registered mutable type): the engine keeps such values the old way, by copy."""


#: types whose values hold nothing mutable (a tuple or frozenset may, so is walked)
_ATOMIC: Final[frozenset[type]] = frozenset(
    {
        int,
        float,
        str,
        bool,
        type(None),
        bytes,
        complex,
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        uuid.UUID,
    }
)
#: key and member types whose changes are journaled (their equality is plain)
_PLAIN_KEYS: Final[frozenset[type]] = frozenset({str, int})
_ABSENT: Any = object()


class _Mark:
    """The state at the start of a lending or of an inner block: a length (lists,
    bytearrays), the first old value of every key or member changed since (dicts,
    sets), and, once a change that is not journaled happened, the encoded state."""

    __slots__ = ("length", "snapshot", "undo")

    def __init__(self, length: int, undo: dict[Any, Any] | None) -> None:
        self.length = length
        self.undo = undo
        self.snapshot: bytes | None = None


class Tracker:
    """The bookkeeping of one value held by the engine and of every container in it.

    States: *home* (``home`` is set: the value is the engine's current one) or not;
    *lent* (``loan`` is set: a transaction is changing it in place) or not. A value
    neither home nor lent is detached: its containers behave as plain ones.

    :param codec: encodes snapshots and changes
    :param home: called (without arguments beyond the tracker) when a container is
        about to change while the value is home but not lent; it must give the engine
        a copy (:meth:`copy_value`) and clear ``home``
    """

    __slots__ = ("base_seq", "codec", "encoded", "home", "loan", "lock", "marks", "root")

    def __init__(self, codec: _Codec | None, home: Callable[[Tracker], None] | None) -> None:
        self.codec = codec
        self.home = home
        self.loan: Any = None
        self.root: Any = None
        self.base_seq = 0
        self.marks: list[_Mark] = []
        #: what :meth:`change` encoded, for :meth:`settle`
        self.encoded: Any = None
        self.lock = threading.Lock()

    # -- making tracked values ----------------------------------------------------------

    @classmethod
    def track(cls, value: Any, codec: _Codec, home: Callable[[Tracker], None] | None) -> Any:
        """``value`` as tracked containers of a new Tracker (copied), or ``value``
        itself when it cannot be tracked (not a list, dict, set or bytearray at the
        top, or holding an untrackable mutable part). O(size of the value).
        """
        if type(value) not in _TRACKABLE:
            return value
        tracker = cls(codec, home)
        try:
            root = tracker.adopt(value)
        except (Untrackable, RecursionError):
            return value
        tracker.root = root
        return root

    def adopt(self, value: Any) -> Any:
        """A deep copy of ``value`` made of this tracker's containers.

        :raises Untrackable: if a part is mutable but not a list, dict, set or bytearray
        """
        kind = type(value)
        if kind in _ATOMIC:
            return value
        kind = PLAIN_TYPES.get(kind, kind)
        out: Any
        if kind is list:
            out = TrackedList(value)
            out._tracker = self
            if not set(map(type, value)) <= _ATOMIC:
                for index, item in enumerate(value):
                    if type(item) not in _ATOMIC:
                        list.__setitem__(out, index, self.adopt(item))
            return out
        if kind is dict:
            out = TrackedDict(value)
            out._tracker = self
            if not set(map(type, value.values())) <= _ATOMIC:
                for key, item in value.items():
                    if type(item) not in _ATOMIC:
                        dict.__setitem__(out, key, self.adopt(item))
            self._check_hashables(value)
            return out
        if kind is set:
            self._check_hashables(value)
            out = TrackedSet(value)
            out._tracker = self
            return out
        if kind is bytearray:
            out = TrackedBytearray(value)
            out._tracker = self
            return out
        if kind is tuple:
            items = [self.adopt(item) for item in value]
            return tuple(items)
        if kind is frozenset:
            self._check_hashables(value)
            return value
        if self.codec is not None and self.codec.is_mutable(value):
            raise Untrackable(kind)
        return value

    def _check_hashables(self, items: Iterable[Any]) -> None:
        # Set members and dict keys are hashable, so hold no list, dict or set; but a
        # tuple of them may hold a Random, which would change unseen.
        for item in items:
            kind = type(item)
            if kind not in _ATOMIC:
                if kind is tuple or kind is frozenset:
                    self._check_hashables(item)
                elif self.codec is not None and self.codec.is_mutable(item):
                    raise Untrackable(kind)

    def copy_value(self) -> Any:
        """A tracked deep copy of the value as committed (under a new Tracker with
        this one's ``home``), for the engine to keep when this value leaves home."""
        tracker = Tracker(self.codec, self.home)
        # Copied under the lock: a nested container about to change in another thread
        # (changing() takes the lock first) stays as committed until the copy is made.
        with self.lock:
            root = tracker.adopt(self._committed_state())
        tracker.root = root
        return root

    # -- lending ------------------------------------------------------------------------

    def lend(self, loan: Any, base_seq: int) -> None:
        """Start recording changes for ``loan``; the value is at ``base_seq``. The
        caller makes sure nobody else lends it meanwhile (the engine's lock)."""
        self.base_seq = base_seq
        self.marks = [self._new_mark()]
        self.loan = loan  # last: a reader that sees the loan sees its marks

    def _new_mark(self) -> _Mark:
        root = self.root
        if type(root) is TrackedList or type(root) is TrackedBytearray:
            return _Mark(len(root), None)
        return _Mark(0, {})

    def push(self) -> None:
        """An inner block starts: changes from here on can be undone on their own."""
        with self.lock:
            self.marks.append(self._new_mark())

    def pop_keep(self) -> None:
        """The innermost block succeeded: its changes join the enclosing one's."""
        with self.lock:
            # An outer mark holds every key an inner one does, and a snapshot whenever
            # the inner one has one: nothing to carry over.
            self.marks.pop()

    def pop_undo(self) -> None:
        """The innermost block failed: undo its changes, in place."""
        with self.lock:
            self._restore(self.marks.pop())

    def drop(self) -> None:
        """Stop recording and keep the changes: the value left home while lent, and
        what the lending changed is committed (the caller keeps the object)."""
        with self.lock:
            self.marks = []
            self.loan = None
            self.encoded = None

    def give_back(self) -> None:
        """The lending ends without its changes (the block failed, or the value was
        replaced or not committed): undo everything, in place, and stop recording."""
        with self.lock:
            if self.marks:
                self._restore(self.marks[0])
            self.marks = []
            self.loan = None
            self.encoded = None

    # -- changes ----------------------------------------------------------------------

    def change(self) -> bytes | None:
        """What to append for the lending's changes: None if the value is unchanged,
        else a delta (or the full value) made from the record of changes when only
        journaled changes happened, else from comparing encodings.

        :raises UnsupportedValueError: if the codec cannot encode the new value
        """
        codec = self.codec
        assert codec is not None
        with self.lock:
            mark = self.marks[0]
            root = self.root
            kind = type(root)
            if mark.snapshot is not None:
                new = codec.encode(root)
                if new == mark.snapshot:
                    return None
                self.encoded = new
                delta = codec.make_delta(self.base_seq, mark.snapshot, root, new)
                return new if delta is None else delta
            if kind is TrackedList:
                if len(root) == mark.length:
                    return None
                items = list.__getitem__(root, slice(mark.length, None))
                self.encoded = items
                return codec.encode_append(self.base_seq, items)
            if kind is TrackedBytearray:
                # No delta for bytearrays: the full value, but no comparison.
                return None if len(root) == mark.length else codec.encode(root)
            undo = mark.undo
            assert undo is not None
            if kind is TrackedDict:
                changed: dict[Any, Any] = {}
                removed: list[Any] = []
                for key, old in undo.items():
                    if key in root:
                        new_item = dict.__getitem__(root, key)
                        if old is _ABSENT or codec.encode(old) != codec.encode(new_item):
                            changed[key] = new_item
                    elif old is not _ABSENT:
                        removed.append(key)
                if not changed and not removed:
                    return None
                self.encoded = changed
                return codec.encode_dict_change(self.base_seq, changed, removed)
            added = {item for item, was in undo.items() if not was and item in root}
            gone = {item for item, was in undo.items() if was and item not in root}
            if not added and not gone:
                return None
            return codec.encode_set_change(self.base_seq, added, gone)

    def settle(self) -> bool:
        """The lending's change is committed and the value stays home: keep the
        changes, stop recording, and make every part the caller put in the value the
        engine's own (a fresh copy: the caller's objects stay the caller's).

        :return: False if the value can no longer be tracked (the caller put an
            untrackable part in it): the engine must keep a plain copy instead.
        """
        codec = self.codec
        assert codec is not None
        with self.lock:
            mark = self.marks[0]
            root = self.root
            kind = type(root)
            encoded = self.encoded
            self.encoded = None
            self.marks = []
            self.loan = None
            if mark.snapshot is not None:
                return self._replace(codec.decode(encoded))
            try:
                if kind is TrackedList and encoded is not None:
                    if not set(map(type, encoded)) <= _ATOMIC:
                        fresh = self.adopt(codec.decode(codec.encode(encoded)))
                        list.__setitem__(root, slice(mark.length, None), fresh)
                elif kind is TrackedDict and encoded:
                    for key, item in encoded.items():
                        if type(item) not in _ATOMIC:
                            fresh = self.adopt(codec.decode(codec.encode(item)))
                            dict.__setitem__(root, key, fresh)
            except (Untrackable, RecursionError):
                return False
        return True

    def committed_bytes(self) -> bytes:
        """The encoding of the value as committed (the lending's changes left out)."""
        codec = self.codec
        assert codec is not None
        with self.lock:
            if self.marks and self.marks[0].snapshot is not None:
                return self.marks[0].snapshot
            return codec.encode(self._committed_state())

    # -- the containers' side -----------------------------------------------------------

    def changing(self) -> None:
        """A change that is not journaled is about to happen to one of the value's
        containers: snapshot what an undo or the commit will need."""
        while True:
            if self.loan is not None:
                codec = self.codec
                assert codec is not None
                with self.lock:
                    for mark in self.marks:
                        if mark.snapshot is None:
                            mark.snapshot = codec.encode(self._state_at(mark))
                return
            home = self.home
            if home is None:  # detached: an ordinary container
                return
            home(self)  # leaves home (or, meanwhile lent, goes round again)

    def note_key(self, key: Any) -> None:
        """A top-level dict key (or set member) is about to change: remember its old
        value (or presence) in every open mark that has not seen it yet."""
        root = self.root
        old = dict.get(root, key, _ABSENT) if type(root) is TrackedDict else key in root
        for mark in self.marks:
            undo = mark.undo
            if undo is not None and key not in undo:
                undo[key] = old

    # -- states -------------------------------------------------------------------------

    def _committed_state(self) -> Any:
        if not self.marks:
            return self.root
        mark = self.marks[0]
        if mark.snapshot is not None:
            assert self.codec is not None
            return self.codec.decode(mark.snapshot)
        return self._state_at(mark)

    def _state_at(self, mark: _Mark) -> Any:
        """The value as it was at ``mark`` (a plain container; nested ones shared)."""
        root = self.root
        kind = type(root)
        if kind is TrackedList:
            return list.__getitem__(root, slice(0, mark.length))
        if kind is TrackedBytearray:
            return bytearray(bytearray.__getitem__(root, slice(0, mark.length)))
        undo = mark.undo
        assert undo is not None
        if kind is TrackedDict:
            state = dict(root)
            for key, old in undo.items():
                if old is _ABSENT:
                    state.pop(key, None)
                else:
                    state[key] = old
            return state
        members = set(root)
        for item, was in undo.items():
            if was:
                members.add(item)
            else:
                members.discard(item)
        return members

    def _restore(self, mark: _Mark) -> None:
        root = self.root
        kind = type(root)
        if mark.snapshot is not None:
            assert self.codec is not None
            self._replace(self.codec.decode(mark.snapshot))
        elif kind is TrackedList:
            list.__delitem__(root, slice(mark.length, None))
        elif kind is TrackedBytearray:
            bytearray.__delitem__(root, slice(mark.length, None))
        elif kind is TrackedDict:
            assert mark.undo is not None
            for key, old in mark.undo.items():
                if old is _ABSENT:
                    dict.pop(root, key, None)
                else:
                    dict.__setitem__(root, key, old)
        else:
            assert mark.undo is not None
            for item, was in mark.undo.items():
                if was:
                    set.add(root, item)
                else:
                    set.discard(root, item)

    def _replace(self, value: Any) -> bool:
        """Make the root hold ``value`` (plain, freshly decoded), in place; the
        containers it held before become ordinary ones.

        :return: False if ``value`` holds an untrackable part (then it is held as
            it is: only a commit's full comparison sees changes to it)
        """
        root = self.root
        _retire(root, self)
        try:
            content = self.adopt(value)
            tracked = True
        except (Untrackable, RecursionError):
            content = value
            tracked = False
        kind = type(root)
        if kind is TrackedList:
            list.__setitem__(root, slice(None), content)
        elif kind is TrackedDict:
            dict.clear(root)
            dict.update(root, content)
        elif kind is TrackedSet:
            set.clear(root)
            set.update(root, content)
        else:
            bytearray.__setitem__(root, slice(None), content)
        return tracked


#: the tracker of containers that belong to no stored value any more
_DETACHED = Tracker(None, None)


def _retire(container: Any, tracker: Tracker) -> None:
    """Detach the containers inside ``container`` that belong to ``tracker``."""
    if type(container) is TrackedList:
        items: Iterable[Any] = container
    elif type(container) is TrackedDict:
        items = container.values()
    else:
        return
    for item in items:
        kind = type(item)
        if kind in TRACKED_TYPES and item._tracker is tracker:
            item._tracker = _DETACHED
            _retire(item, tracker)
        elif kind is tuple:
            _retire(list(item), tracker)


# -- the containers --------------------------------------------------------------------


class TrackedList(list[Any]):
    """A list that records its changes while its value is lent (see the module)."""

    __slots__ = ("_tracker",)
    _tracker: Tracker

    def append(self, item: Any) -> None:
        tracker = self._tracker
        if tracker.loan is None or self is not tracker.root:
            tracker.changing()
        list.append(self, item)

    def extend(self, items: Iterable[Any]) -> None:
        tracker = self._tracker
        if tracker.loan is None or self is not tracker.root:
            tracker.changing()
        list.extend(self, items)

    def __iadd__(self, items: Iterable[Any]) -> TrackedList:  # type: ignore[misc]
        self.extend(items)
        return self

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return copy.deepcopy(list(self), memo)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (list, (list(self),))


class TrackedDict(dict[Any, Any]):
    """A dict that records its changes while its value is lent (see the module)."""

    __slots__ = ("_tracker",)
    _tracker: Tracker

    def _noting(self, key: Any) -> None:
        tracker = self._tracker
        if tracker.loan is not None and self is tracker.root and type(key) in _PLAIN_KEYS:
            tracker.note_key(key)
        else:
            tracker.changing()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._noting(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._noting(key)
        dict.__delitem__(self, key)

    def pop(self, key: Any, *default: Any) -> Any:
        self._noting(key)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        if self:
            self._noting(next(reversed(self)))
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._noting(key)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        tracker = self._tracker
        if (
            tracker.loan is not None
            and self is tracker.root
            and set(map(type, items)) <= _PLAIN_KEYS
        ):
            for key in items:
                tracker.note_key(key)
        else:
            tracker.changing()
        dict.update(self, items)

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[misc]
        self.update(other)
        return self

    def clear(self) -> None:
        self._tracker.changing()
        dict.clear(self)

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (dict, (dict(self),))


class TrackedSet(set[Any]):
    """A set that records its changes while its value is lent (see the module)."""

    __slots__ = ("_tracker",)
    _tracker: Tracker

    def _noting(self, items: Iterable[Any]) -> None:
        tracker = self._tracker
        if tracker.loan is not None and self is tracker.root:
            items = list(items)
            if set(map(type, items)) <= _PLAIN_KEYS:
                for item in items:
                    tracker.note_key(item)
                return
        tracker.changing()

    def add(self, item: Any) -> None:
        self._noting((item,))
        set.add(self, item)

    def discard(self, item: Any) -> None:
        self._noting((item,))
        set.discard(self, item)

    def remove(self, item: Any) -> None:
        self._noting((item,))
        set.remove(self, item)

    def pop(self) -> Any:
        if not self:
            raise KeyError("pop from an empty set")
        item = next(iter(self))
        self._noting((item,))
        set.remove(self, item)
        return item

    def update(self, *others: Iterable[Any]) -> None:
        items: set[Any] = set().union(*others)
        self._noting(items)
        set.update(self, items)

    def difference_update(self, *others: Iterable[Any]) -> None:
        items: set[Any] = set().union(*others)
        self._noting(items)
        set.difference_update(self, items)

    def __ior__(self, other: Any) -> TrackedSet:  # type: ignore[misc]
        if not isinstance(other, set | frozenset):
            return NotImplemented
        self.update(other)
        return self

    def __isub__(self, other: Any) -> TrackedSet:  # type: ignore[misc]
        if not isinstance(other, set | frozenset):
            return NotImplemented
        self.difference_update(other)
        return self

    def __copy__(self) -> set[Any]:
        return set(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> set[Any]:
        return copy.deepcopy(set(self), memo)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (set, (list(self),))

    def __repr__(self) -> str:
        return set.__repr__(set(self))


class TrackedBytearray(bytearray):
    """A bytearray that records its changes while its value is lent (see the module)."""

    __slots__ = ("_tracker",)
    _tracker: Tracker

    def append(self, item: SupportsIndex) -> None:
        tracker = self._tracker
        if tracker.loan is None or self is not tracker.root:
            tracker.changing()
        bytearray.append(self, item)

    def extend(self, items: Iterable[SupportsIndex] | Any) -> None:
        tracker = self._tracker
        if tracker.loan is None or self is not tracker.root:
            tracker.changing()
        bytearray.extend(self, items)

    def __iadd__(self, items: Any) -> TrackedBytearray:  # type: ignore[misc]
        self.extend(memoryview(items).tobytes())
        return self

    def __copy__(self) -> bytearray:
        return bytearray(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> bytearray:
        return bytearray(self)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (bytearray, (bytes(self),))

    def __repr__(self) -> str:
        return bytearray.__repr__(bytearray(self))

    def __str__(self) -> str:
        return bytearray.__str__(bytearray(self))


def _not_journaled(base: type, name: str) -> Callable[..., Any]:
    method = getattr(base, name)

    def change(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._tracker.changing()
        return method(self, *args, **kwargs)

    change.__name__ = name
    change.__qualname__ = f"{base.__name__}.{name}"
    change.__doc__ = method.__doc__
    return change


_OTHER_CHANGES: dict[type, tuple[str, ...]] = {
    TrackedList: (
        "insert", "remove", "pop", "clear", "sort", "reverse",
        "__setitem__", "__delitem__", "__imul__",
    ),
    TrackedSet: (
        "clear", "intersection_update", "symmetric_difference_update", "__iand__", "__ixor__",
    ),
    TrackedBytearray: (
        "insert", "remove", "pop", "clear", "reverse", "__setitem__", "__delitem__", "__imul__",
    ),
}  # fmt: skip
for _cls, _names in _OTHER_CHANGES.items():
    for _name in _names:
        setattr(_cls, _name, _not_journaled(_cls.__mro__[1], _name))
del _cls, _names, _name

#: tracked type -> the builtin type it stands for (the codec encodes it as that)
PLAIN_TYPES: Final[dict[type, type]] = {
    TrackedList: list,
    TrackedDict: dict,
    TrackedSet: set,
    TrackedBytearray: bytearray,
}
TRACKED_TYPES: Final[frozenset[type]] = frozenset(PLAIN_TYPES)
_TRACKABLE: Final[frozenset[type]] = frozenset({list, dict, set, bytearray})


# -- is a value kept by someone besides the engine? ---------------------------------------
# A value the engine changes in place (a later block's changes, another writer's facts)
# must not be one that a caller kept from an earlier block: that one is theirs, and
# must not change under them. CPython's reference count tells: the engine holds its
# current value once in the namespace and once as its tracker's root; the caller of
# held_elsewhere once more, in a local. The count is measured, not assumed, with the
# same code shape, so that an interpreter that counts otherwise only ever errs on the
# side of a copy.


def _references(value: Any) -> int:
    # The shape of held_elsewhere: one parameter, counted directly.
    return sys.getrefcount(value)


def _measure() -> int:
    probe = TrackedList()
    tracker = Tracker(None, None)
    tracker.root = probe
    holder = {0: probe}
    del probe
    value = holder[0]
    return _references(value)


_BASELINE: Final = _measure()


def held_elsewhere(value: Any) -> bool:
    """True if anything besides the engine's namespace, the value's tracker and the
    caller's one local holds ``value`` (a caller kept it from an earlier block)."""
    return sys.getrefcount(value) > _BASELINE
