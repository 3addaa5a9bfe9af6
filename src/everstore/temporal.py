"""Reading the past: ``within`` (values while conditions held) and ``as_of`` views.

Points in time are seqs: the state "at seq t" is the result of every fact with a seq
up to t. A condition ``field == value`` holds on half-open seq intervals
``[write, next write of that field)``; ``within`` answers from the latest interval in
which every condition held, found by binary searches over per-field histories.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from .engine import END_OF_LOG, Engine, History, Namespace
from .errors import MissingFieldError, ReadOnlyError
from .storage import Storage

__all__ = ["FrozenStorage", "StoreView", "View", "within"]


def _target(obj: Any) -> tuple[Engine, Namespace, int, Any]:
    """(store, namespace, exclusive seq bound, storage) for a Storage-like object."""
    if isinstance(obj, View):
        return obj._store, obj._ns, obj._upto, obj._storage
    if isinstance(obj, FrozenStorage):
        return obj._store, obj._ns, obj._upto, obj
    if isinstance(obj, Storage):
        return obj.__store__, obj.__ns__, END_OF_LOG, obj
    raise TypeError(f"within() needs a Storage, a View or a FrozenStorage, got {obj!r}")


def _history(store: Engine, ns: Namespace, field: str, upto: int = END_OF_LOG) -> History | None:
    """``field``'s history up to seq ``upto``, None if it was never written."""
    try:
        return store.history(ns, field, upto)
    except MissingFieldError:
        return None


def _latest_interval(history: History, wanted: Any, bound: int) -> tuple[int, int, int] | None:
    """The latest interval ``[start, end)`` with ``end <= bound`` clipped, in which
    the field's value equals ``wanted``, as (position, start, end); None if none.

    O(log n) through the value index; O(n) for unhashable values.
    """
    before = history.position(seq=bound - 1) + 1  # positions whose seq is < bound
    positions = history.positions_of(wanted)
    if positions is not None:
        k = bisect.bisect_left(positions, before) - 1
        if k < 0:
            return None
        position = positions[k]
    else:
        position = before - 1
        while position >= 0 and not _holds(history, position, wanted):
            position -= 1
        if position < 0:
            return None
    end = history.seq_at(position + 1) if position + 1 < len(history) else END_OF_LOG
    return position, history.seq_at(position), min(end, bound)


def _holds(history: History, position: int, wanted: Any) -> bool:
    return not history.deleted_at(position) and bool(history.value_at(position) == wanted)


def _period_start(history: History, position: int, wanted: Any) -> int:
    """Seq where the run of equal values containing ``position`` began."""
    while position > 0 and _holds(history, position - 1, wanted):
        position -= 1
    return history.seq_at(position)


def latest_period(
    store: Engine, ns: Namespace, conditions: dict[str, Any], bound: int
) -> tuple[int, int] | None:
    """The latest ``[start, end)`` below ``bound`` in which every condition held.

    Each round costs O(k log n) for k conditions; a round that finds no overlap moves
    the bound below the earliest end, so rounds are few unless the conditions
    alternate without ever overlapping.
    """
    histories: list[tuple[History, Any]] = []
    for field, wanted in conditions.items():
        history = _history(store, ns, field)
        if history is None:
            return None
        histories.append((history, wanted))
    while True:
        start, end = -1, END_OF_LOG
        found: list[tuple[History, Any, int]] = []
        for history, wanted in histories:
            interval = _latest_interval(history, wanted, bound)
            if interval is None:
                return None
            position, first, last = interval
            found.append((history, wanted, position))
            start = max(start, first)
            end = min(end, last)
        if start < end:
            true_start = max(
                _period_start(history, position, wanted) for history, wanted, position in found
            )
            return true_start, end
        bound = end


class View:
    """Read-only values of a namespace as they were while conditions held.

    ``within(player, round=1).score`` is the score at the end of the latest period
    in which ``round == 1`` (written before or during it); with ``strict=True`` only
    a score written during that period counts. A missing answer raises
    MissingFieldError (an AttributeError).
    """

    __slots__ = ("_conditions", "_ns", "_storage", "_store", "_strict", "_upto")

    _conditions: dict[str, Any]
    _ns: Namespace
    _storage: Any
    _store: Engine
    _strict: bool
    _upto: int

    def __init__(
        self,
        target: Any,
        conditions: dict[str, Any],
        *,
        strict: bool = False,
        upto: int | None = None,
    ) -> None:
        store, ns, bound, storage = _target(target)
        parent = dict(target._conditions) if isinstance(target, View) else {}
        if isinstance(target, View):
            strict = strict or target._strict
        parent.update(conditions)
        set_ = object.__setattr__
        set_(self, "_store", store)
        set_(self, "_ns", ns)
        set_(self, "_storage", storage)
        set_(self, "_conditions", parent)
        set_(self, "_strict", strict)
        set_(self, "_upto", bound if upto is None else min(upto, bound))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        store = self._store
        history = _history(store, self._ns, name)
        if history is None:
            raise MissingFieldError(f"{self!r} has no field {name!r}")
        period = latest_period(store, self._ns, self._conditions, self._upto)
        if period is None:
            raise MissingFieldError(f"{self!r}: the conditions never held")
        start, end = period
        position = history.position(seq=end - 1)
        if position < 0 or history.deleted_at(position):
            raise MissingFieldError(f"{self!r}: {name!r} had no value then")
        if self._strict and history.seq_at(position) < start:
            raise MissingFieldError(f"{self!r}: {name!r} was not written in that period")
        return history.value_at(position)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ReadOnlyError(f"{self!r} is a read-only view of the past")

    def __delattr__(self, name: str) -> None:
        raise ReadOnlyError(f"{self!r} is a read-only view of the past")

    def __repr__(self) -> str:
        conditions = ", ".join(f"{k}={v!r}" for k, v in self._conditions.items())
        strict = ", strict=True" if self._strict else ""
        return f"within({self._storage!r}, {conditions}{strict})"


def _along(target: Any, field: str, strict: bool) -> Iterator[tuple[Any, View]]:
    store, ns, bound, _ = _target(target)
    conditions = dict(target._conditions) if isinstance(target, View) else {}
    history = _history(store, ns, field)
    if history is None:
        return
    count = history.position(seq=bound - 1) + 1
    position = 0
    while position < count:
        if history.deleted_at(position):
            position += 1
            continue
        value = history.value_at(position)
        last = position
        while last + 1 < count and _holds(history, last + 1, value):
            last += 1
        start = history.seq_at(position)
        end = min(history.seq_at(last + 1) if last + 1 < len(history) else END_OF_LOG, bound)
        for period_end in _parent_periods(store, ns, conditions, start, end):
            yield value, View(target, {field: value}, strict=strict, upto=period_end)
        position = last + 1


def _parent_periods(
    store: Engine, ns: Namespace, conditions: dict[str, Any], start: int, end: int
) -> list[int]:
    """Ends of the periods inside ``[start, end)`` where ``conditions`` held, in order."""
    if not conditions:
        return [end]
    ends: list[int] = []
    bound = end
    while bound > start:
        period = latest_period(store, ns, conditions, bound)
        if period is None or period[1] <= start:
            break
        ends.append(period[1])
        bound = period[0]
    ends.reverse()
    return ends


class _Within:
    """``within(storage, **conditions)`` and ``within.along(storage, field)``.

    >>> from everstore import Store
    >>> player = Store().storage("game", "p1")
    >>> player.round = 1; player.score = 10; player.round = 2; player.score = 25
    >>> within(player, round=1).score, within(player, round=2).score
    (10, 25)
    >>> [(r, v.score) for r, v in within.along(player, "round")]
    [(1, 10), (2, 25)]
    """

    def __call__(self, target: Any, /, *, strict: bool = False, **conditions: Any) -> View:
        if not conditions:
            raise TypeError("within() needs at least one condition, like round=1")
        return View(target, conditions, strict=strict)

    def along(
        self, target: Any, field: str, /, *, strict: bool = False
    ) -> Iterator[tuple[Any, View]]:
        """Yield ``(value, view)`` once per period in which ``field`` kept one value
        (inside the conditions of ``target`` when it is a View), oldest first."""
        return _along(target, field, strict)

    def strict(self, target: Any, /, **conditions: Any) -> View:
        """``within(..., strict=True)``: only writes made during the period count."""
        return self(target, strict=True, **conditions)


within = _Within()


class FrozenStorage:
    """A namespace as it was at a seq: the reading API of Storage, without writes."""

    __slots__ = ("_ns", "_store", "_upto")

    _ns: Namespace
    _store: Engine
    _upto: int

    def __init__(self, store: Engine, ns: Namespace, upto: int) -> None:
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_ns", ns)
        object.__setattr__(self, "_upto", upto)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        history = _history(self._store, self._ns, name, self._upto - 1)
        if history is None or not history or history.deleted_at(-1):
            raise MissingFieldError(f"{self!r} has no field {name!r}")
        return history.value_at(-1)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ReadOnlyError(f"{self!r} is a read-only view of the past")

    def __delattr__(self, name: str) -> None:
        raise ReadOnlyError(f"{self!r} is a read-only view of the past")

    def __fields__(self) -> list[str]:
        return [name for name, history in self.__history__().items() if not history.deleted_at(-1)]

    def __history__(self) -> dict[str, History]:
        found = {}
        for name in self._ns.written_fields():
            history = self._store.history(self._ns, name, self._upto - 1)
            if history:
                found[name] = history
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.__fields__())

    def __len__(self) -> int:
        return len(self.__fields__())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.__fields__()

    @property
    def __namespace__(self) -> tuple[str, ...]:
        return self._ns.parts

    def __repr__(self) -> str:
        return f"FrozenStorage{self._ns.parts!r}@{self._upto - 1}"


class StoreView:
    """The whole store as it was at one seq (see :meth:`Store.as_of`)."""

    def __init__(self, store: Engine, seq: int) -> None:
        self._store = store
        self.seq = seq

    def storage(self, *namespace: str) -> FrozenStorage:
        """A read-only namespace as it was at this view's seq. O(1) once loaded."""
        return FrozenStorage(self._store, self._store.namespace(namespace), self.seq + 1)

    def namespaces(self, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        """Namespaces that held a fact at this view's seq, sorted."""
        return self._store.namespaces(prefix, seq=self.seq)

    def __repr__(self) -> str:
        return f"<StoreView of {self._store!r} at seq {self.seq}>"
