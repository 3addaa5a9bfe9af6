"""Accumulator: items appended until someone consumes them all, exactly once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..engine import Engine, caller_context
from ..storage import Storage
from .logs import Entry, open_log

__all__ = ["Accumulator"]

#: the cursor: how many items were consumed (the position of the first one left)
CONSUMED = "consumed"


class Accumulator:
    """A list to which items are only appended, until :meth:`consume` takes them
    all: pending operations, changes or notifications processed as a unit.

    In memory without ``storage``; with ``storage=store.storage(...)`` it lives in
    that namespace: each append is in the log (a fact, or one of a transaction's
    batch: its time and code location kept), and
    :meth:`consume` is exactly-once across threads, processes and hosts: no item is
    handed to two consumers, none is lost.

    >>> acc = Accumulator([1, 2])
    >>> acc.append(3)
    >>> acc.extend([4, 5])
    >>> acc.consume()
    [1, 2, 3, 4, 5]
    >>> list(acc)
    []

    :param value: the first items (for a stored one: only when it is created)
    :param storage: the everstore Storage to live in; None keeps it in memory
    :raises TypeError: for a storage that is not a Storage
    :raises StructureMismatchError: if the storage holds something else
    :raises StructureExistsError: if ``value`` has items and the storage already
        holds an Accumulator
    """

    def __init__(self, value: Iterable[Any] = (), *, storage: Storage | None = None) -> None:
        self._log, _, self._where = open_log(storage, "Accumulator", {}, {}, value)

    @property
    def store(self) -> Engine | None:
        """The store this structure lives in (None: in memory)."""
        return self._log.engine

    def __repr__(self) -> str:
        return f"Accumulator(in {self._where})"

    def append(self, v: Any) -> None:
        """Append one item: committed before this returns, or with the open
        transaction. Complexity: O(1).

        :raises UnsupportedValueError: in a store, for a value it cannot store
        """
        self._log.append(v, caller_context())

    def extend(self, v: Iterable[Any]) -> None:
        """Append every item of ``v``, atomically (all of them or, if one cannot be
        stored, none). Complexity: O(len(v)).

        :raises UnsupportedValueError: in a store, for a value it cannot store
        """
        items = list(v)
        if items:
            self._log.extend(items, caller_context())

    def consume(self) -> list[Any]:
        """Take every item (oldest first) and leave the accumulator empty.

        Exactly once: concurrent consumers each get different items and together
        all of them. Inside an open transaction it commits with it (items appended
        by that transaction are not taken yet); if another consumer took the items
        first, the commit raises :class:`~everstore.errors.ConflictError`.

        Complexity: O(k) for the k items taken.
        """
        log = self._log
        while True:
            done, token = log.cursor(CONSUMED, 0)
            count = log.count()
            if count <= done:
                return []
            items = log.values(done, count)
            if log.advance(CONSUMED, token, count, None):
                log.forget(count)
                return items

    def _left(self) -> tuple[int, int]:
        log = self._log
        return log.cursor(CONSUMED, 0)[0], log.count()

    def __iter__(self) -> Iterator[Any]:
        """The items not consumed yet, oldest first. Complexity: O(n)."""
        start, stop = self._left()
        return iter(self._log.values(start, stop))

    def entries(self) -> Iterator[Entry]:
        """As iteration, with each item as an :class:`Entry`. Complexity: O(n)."""
        start, stop = self._left()
        return iter(self._log.entries(start, stop))

    def __len__(self) -> int:
        """How many items are left to consume. O(1)."""
        start, stop = self._left()
        return max(stop - start, 0)
