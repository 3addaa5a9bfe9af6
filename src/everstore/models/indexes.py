"""Secondary indexes: one field of every object under a namespace prefix, answering
equality in O(1) and ranges in O(log n + k), kept current by the engine's fact hook.

An *object* is a namespace exactly one part below the prefix (``("users", "ann")``
under ``("users",)``); its indexed value is the current value of one field. Deeper
namespaces and the prefix itself are not objects.

>>> from everstore import Store
>>> store = Store()
>>> for name, age in [("ann", 31), ("bob", 25), ("cid", 31)]:
...     store.write(store.namespace(("users", name)), "age", age)
>>> ages = FieldIndex(store, ("users",), "age")
>>> ages.equal(31)
[('users', 'ann'), ('users', 'cid')]
>>> ages.range(25, 31)
[('users', 'bob')]
>>> store.write(store.namespace(("users", "bob")), "age", 40)
>>> ages.range(30, None)
[('users', 'ann'), ('users', 'cid'), ('users', 'bob')]
>>> ages.close()

Values and what they answer:

- :meth:`FieldIndex.equal` finds hashable values, with Python's ``==`` (1, 1.0 and
  ``Decimal(1)`` are one value), except that a bool never equals a number
  (``equal(1)`` does not find ``True``). Unhashable values (lists, dicts, sets) are in
  no equality entry; asking for one raises :class:`TypeError`.
- :meth:`FieldIndex.range` orders values within one *family* of mutually comparable
  types: numbers (int, float, Decimal, Fraction; NaN is left out), bool, str,
  bytes, naive datetimes, aware datetimes, dates, naive times, aware times,
  timedeltas, UUIDs. A range never mixes families: ``range(30)`` returns numbers
  only, never strings; values of any other type are in no range entry. A bound of
  no family raises :class:`TypeError`, and two bounds of different families
  :class:`TypeError` too.

The index is built on first use: that first query loads every object under the
prefix (O(n), in one read of the backend: ``Engine.load``); later queries cost only
their own answer. It follows what the engine applies: this process's commits at once, other
processes' commits on the next sync (every query syncs first). An open transaction's
pending writes are not in it until they commit. It answers for the present only: a
query about a past moment (``as_of``) reads the objects' histories instead.

Memory: one entry per object with a value, plus one per range family it belongs to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from math import isnan
from typing import Any, Final
from uuid import UUID

from sortedcontainers import SortedList

from ..engine import AppliedFact, Engine, Namespace, check_field, namespace_path
from ..errors import StoreClosedError

__all__ = ["FieldIndex"]


class _Top:
    """Greater than any tuple of namespace parts: ``(v, TOP)`` sorts after every
    ``(v, parts)``, which makes exclusive lower and inclusive upper bounds."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __repr__(self) -> str:
        return "TOP"


_TOP: Final = _Top()
#: an object whose field has no value (never written, deleted)
_ABSENT: Final[Any] = object()
#: the equality key of a value that has none
_UNHASHABLE: Final = object()
#: the equality key of a bool is tagged, so that True is not 1
_BOOL: Final = "bool"


def _family(value: Any) -> str | None:
    """The name of the family of mutually comparable values ``value`` belongs to, or
    None if it has none (it then has no place in a range)."""
    kind = type(value)
    family = _FAMILIES.get(kind)
    if family is not None:
        if kind is float and isnan(value):
            return None
        return family
    if kind is datetime:
        return "datetime" if value.utcoffset() is None else "datetime-aware"
    if kind is time:
        return "time" if value.utcoffset() is None else "time-aware"
    if kind is Decimal:
        return None if value.is_nan() else "number"
    # Subclasses (IntEnum, StrEnum, datetime subclasses...) join their base's family.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Fraction):
        return "number"
    if isinstance(value, float):
        return None if isnan(value) else "number"
    if isinstance(value, Decimal):
        return None if value.is_nan() else "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, datetime):
        return "datetime" if value.utcoffset() is None else "datetime-aware"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time" if value.utcoffset() is None else "time-aware"
    if isinstance(value, timedelta):
        return "timedelta"
    if isinstance(value, UUID):
        return "uuid"
    return None


_FAMILIES: dict[type, str] = {
    int: "number",
    float: "number",
    Fraction: "number",
    bool: "bool",
    str: "str",
    bytes: "bytes",
    date: "date",
    timedelta: "timedelta",
    UUID: "uuid",
}


#: what the index holds for one object: the seq of the fact in force, its value (or
#: _ABSENT), the value's equality key and its family
_Entry = tuple[int, Any, Hashable, str | None]


def _equality_key(value: Any) -> Hashable:
    """The key of ``value`` in the equality map, or _UNHASHABLE."""
    if isinstance(value, bool):
        return (_BOOL, value)
    try:
        hash(value)
    except TypeError:
        return _UNHASHABLE
    return value  # type: ignore[no-any-return]


class FieldIndex:
    """The objects under ``prefix`` by the current value of their ``field``.

    Thread-safe. Built lazily by the first query (O(n) then), kept current by a
    fact hook and a watch of the prefix (:meth:`Engine.watch`) afterwards; call
    :meth:`close` to remove them.

    :param store: the Store (any Engine) the objects live in
    :param prefix: the namespace parts the objects are directly under
    :param field: the field to index
    :param namespaces: what lists the namespaces to build from (default:
        ``store.load(prefix)``): a layer that has loaded and keeps listing them (a
        ModelStore) passes its own listing, so that building reads nothing more. It
        must return, when called, every namespace under ``prefix`` with a fact
        applied so far (others may come with them)
    :raises TypeError: if ``prefix`` is a str rather than a tuple of parts
    :raises InvalidNameError: if ``prefix`` or ``field`` is not a valid name
    """

    def __init__(
        self,
        store: Engine,
        prefix: tuple[str, ...],
        field: str,
        *,
        namespaces: Callable[[], Iterable[Namespace]] | None = None,
    ) -> None:
        if isinstance(prefix, str):
            raise TypeError(
                f"FieldIndex takes the prefix as a tuple of parts, like ({prefix!r},), "
                f"not the str {prefix!r}"
            )
        prefix = tuple(prefix)
        namespace_path(prefix)  # raises InvalidNameError for a bad prefix
        self.store = store
        self.prefix: tuple[str, ...] = prefix
        self.field: str = check_field(field)
        self._depth = len(prefix) + 1
        self._namespaces = namespaces
        self._lock = threading.Lock()
        #: parts -> the fact in force: see _Entry
        self._current: dict[tuple[str, ...], _Entry] = {}
        #: equality key -> the objects holding it: the parts themselves while one
        #: object holds it (a set per object would cost 200 bytes per unique value)
        self._equal: dict[Hashable, set[tuple[str, ...]] | tuple[str, ...]] = {}
        #: equality key -> its holders in order, once asked for (and until they change)
        self._ordered: dict[Hashable, list[tuple[str, ...]]] = {}
        #: family -> SortedList of (value, parts)
        self._ranges: dict[str, Any] = {}
        self._built = False
        self._closed = False
        self._building = threading.Lock()
        self._stops: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"FieldIndex({self.prefix!r}, {self.field!r})"

    # -- queries ----------------------------------------------------------------------

    def equal(self, value: Any) -> list[tuple[str, ...]]:
        """The objects whose current ``field`` equals ``value``, sorted by namespace.

        O(1) plus the size of the answer (the first call builds the index: O(n)).

        :raises TypeError: if ``value`` is unhashable (no unhashable value is indexed)
        :raises StoreClosedError: if the index is closed
        """
        key = _equality_key(value)
        if key is _UNHASHABLE:
            raise TypeError(
                f"{self!r}: equality is indexed for hashable values only, "
                f"not {type(value).__name__}"
            )
        self._ready()
        with self._lock:
            found = self._equal.get(key)
            if not found:
                return []
            if type(found) is tuple:
                return [found]
            assert isinstance(found, set)
            if len(found) == 1:
                return list(found)
            ordered = self._ordered.get(key)
            if ordered is None:
                ordered = self._order(value, found)
                self._ordered[key] = ordered
            return list(ordered)

    def _order(self, value: Any, found: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """``found`` (the holders of ``value``), sorted."""
        family = _family(value)
        if family is None:
            return sorted(found)
        # The range list holds them already in order: O(log n + k), not a sort.
        entries = self._ranges.get(family)
        if entries is not None:
            ordered = [parts for _, parts in entries.irange((value,), (value, _TOP), (True, False))]
            # Unless a value of another family (a custom type) equals this one
            if len(ordered) == len(found):
                return ordered
        return sorted(found)

    def range(
        self,
        low: Any = None,
        high: Any = None,
        *,
        include_low: bool = True,
        include_high: bool = False,
    ) -> list[tuple[str, ...]]:
        """The objects whose current ``field`` lies between ``low`` and ``high``,
        sorted by value (then by namespace). None leaves that side open; at least one
        bound is needed, since only values of its family are considered (see the
        module's documentation). O(log n + k).

        :raises TypeError: if no bound is given, a bound has no comparable family, or
            the two bounds are of different families
        :raises StoreClosedError: if the index is closed
        """
        family = self._bounds_family(low, high)
        self._ready()
        lower = None if low is None else ((low,) if include_low else (low, _TOP))
        upper = None if high is None else ((high, _TOP) if include_high else (high,))
        with self._lock:
            entries = self._ranges.get(family)
            if entries is None:
                return []
            # Bounds are tuples, so (low,) sorts before every (low, parts) and
            # (low, TOP) after all of them: irange's own inclusive flags are not needed.
            return [parts for _, parts in entries.irange(lower, upper, (True, False))]

    def _bounds_family(self, low: Any, high: Any) -> str:
        if low is None and high is None:
            raise TypeError(f"{self!r}: range() needs a low or a high bound (or both)")
        families = {self._bound_family(bound) for bound in (low, high) if bound is not None}
        if len(families) > 1:
            raise TypeError(
                f"{self!r}: range({low!r}, {high!r}) mixes values that do not compare "
                f"({type(low).__name__} and {type(high).__name__})"
            )
        return families.pop()

    def _bound_family(self, bound: Any) -> str:
        family = _family(bound)
        if family is None:
            raise TypeError(
                f"{self!r}: a range bound must be a number, str, bytes, bool, datetime, "
                f"date, time, timedelta or UUID (not NaN), got {bound!r}"
            )
        return family

    def close(self) -> None:
        """Remove the index's hook and watch, and drop its entries. Idempotent."""
        with self._building:
            self._closed = True
            stops, self._stops = self._stops, []
        for stop in stops:
            stop()
        with self._lock:
            self._current.clear()
            self._equal.clear()
            self._ordered.clear()
            self._ranges.clear()

    # -- building and keeping current ------------------------------------------------

    def _ready(self) -> None:
        """Build on first use; afterwards bring the store (hence the index) current."""
        if self._closed:
            raise StoreClosedError(f"{self!r} is closed")
        if not self._built:
            self._build()
        self.store.sync()

    def _build(self) -> None:
        with self._building:
            if self._closed:
                raise StoreClosedError(f"{self!r} is closed")
            if self._built:
                return
            store = self.store
            # The order matters. The watch comes first: a namespace another process
            # creates after the listing below is then loaded by a catch-up, where the
            # hook sees it. The hook comes next: any fact applied from now on reaches
            # it, and any fact applied before is in the history read below. Both
            # paths record the seq of what they saw, and the later seq wins.
            self._stops.append(store.watch(self.prefix))
            self._stops.append(store.add_fact_hook(self._on_fact))
            listed = store.load(self.prefix) if self._namespaces is None else self._namespaces()
            for ns in listed:
                parts = ns.parts
                if len(parts) != self._depth:
                    continue
                # Loading a namespace replays its facts through the hook; one loaded
                # before the hook existed is read here. What the hook recorded is the
                # latest: every fact applied before it was added has a lower seq.
                if parts in self._current or self.field not in ns.written_fields():
                    continue
                history = store.history(ns, self.field)
                if not len(history):
                    continue
                last = history[-1]
                self._set(parts, last.seq, _ABSENT if last.unavailable else last.data)
            self._built = True

    def _on_fact(self, fact: AppliedFact) -> None:
        if fact.field != self.field:
            return
        parts = fact.namespace.parts
        if len(parts) != self._depth or parts[:-1] != self.prefix:
            return
        value = fact.value
        data = _ABSENT if value.unavailable else value.data
        self._set(parts, value.seq, data, replace=fact.rewritten)

    def _set(self, parts: tuple[str, ...], seq: int, value: Any, replace: bool = False) -> None:
        """Record that ``parts`` holds ``value`` as of ``seq``, unless a later fact is
        already recorded (or, with ``replace``, whatever is recorded: an erasure or a
        prune replays the namespace's facts as they are now)."""
        with self._lock:
            old = self._current.get(parts)
            if old is not None:
                if old[0] >= seq and not replace:
                    return
                previous = old[1]
                if (
                    previous is not _ABSENT
                    and type(previous) is type(value)
                    and type(value) in _FAMILIES
                    and previous == value
                ):
                    # The same plain value written again: only the seq moves on.
                    self._current[parts] = (seq, previous, old[2], old[3])
                    return
                self._remove(parts, old)
            if value is _ABSENT:
                self._current[parts] = (seq, _ABSENT, _UNHASHABLE, None)
                return
            key = _equality_key(value)
            family = _family(value)
            self._current[parts] = (seq, value, key, family)
            if key is not _UNHASHABLE:
                holders = self._equal.get(key)
                if holders is None:
                    self._equal[key] = parts
                elif type(holders) is tuple:
                    self._equal[key] = {holders, parts}
                else:
                    assert isinstance(holders, set)
                    holders.add(parts)
                    self._ordered.pop(key, None)
            if family is not None:
                entries = self._ranges.get(family)
                if entries is None:
                    entries = self._ranges[family] = SortedList()
                entries.add((value, parts))

    def _remove(self, parts: tuple[str, ...], entry: _Entry) -> None:
        _, value, key, family = entry
        if value is _ABSENT:
            return
        if key is not _UNHASHABLE:
            holders = self._equal.get(key)
            if type(holders) is tuple:
                if holders == parts:
                    del self._equal[key]
            elif holders is not None:
                assert isinstance(holders, set)
                holders.discard(parts)
                self._ordered.pop(key, None)
                if len(holders) == 1:
                    (self._equal[key],) = holders
                elif not holders:
                    del self._equal[key]
        if family is not None:
            self._ranges[family].remove((value, parts))

    def objects(self) -> list[tuple[str, ...]]:
        """Every object with a value of ``field``, in no particular order (builds the
        index if needed)."""
        self._ready()
        with self._lock:
            return [parts for parts, entry in self._current.items() if entry[1] is not _ABSENT]
