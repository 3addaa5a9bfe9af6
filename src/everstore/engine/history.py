"""History: a field's past as an immutable sequence of Values, with the positional
look-ups that time travel (``within``, ``as_of``) is built from."""

from __future__ import annotations

import bisect
import itertools
import operator
import threading
from collections.abc import Iterator, Sequence
from typing import Any, overload

from ..codec import Codec
from ..log import Value
from .fieldlog import DATA, MISSING, SEQ, UNAVAILABLE, FieldLog, Raw, as_value

__all__ = ["History"]

_time_of = operator.itemgetter(0)  # Value.time


class History(Sequence[Value]):
    """A field's history: an immutable, seq-ordered sequence of :class:`Value`.

    Indexing and slicing are O(1) (plus rebuilding a container value); :meth:`at`
    and :meth:`position` find an entry by seq or time in O(log n). A History is a
    snapshot: facts committed after it was made are not in it.

    >>> from everstore import Store, history
    >>> doc = Store().storage("doc")
    >>> doc.title = "draft"; doc.title = "final"
    >>> h = history(doc)["title"]
    >>> [v.data for v in h], h.value_at(0)
    (['draft', 'final'], 'draft')
    """

    __slots__ = ("_codec", "_length", "_lock", "_log")

    def __init__(self, log: FieldLog, codec: Codec, lock: threading.RLock, length: int) -> None:
        """Made by :meth:`everstore.engine.Engine.history`, not by users."""
        self._log = log
        self._codec = codec
        self._lock = lock
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Value: ...

    @overload
    def __getitem__(self, index: slice) -> list[Value]: ...

    def __getitem__(self, index: int | slice) -> Value | list[Value]:
        if isinstance(index, slice):
            return [self._entry(i) for i in range(*index.indices(self._length))]
        return self._entry(self._checked(index))

    def _checked(self, position: int) -> int:
        if position < 0:
            position += self._length
        if not 0 <= position < self._length:
            raise IndexError("history index out of range")
        return position

    def _entry(self, position: int) -> Value:
        entry = as_value(self._log.entries[position])
        if type(entry.data) is Raw:
            return entry._replace(data=self._log.value_at(self._codec, position))
        return entry

    def __iter__(self) -> Iterator[Value]:
        # Walks in order with a running value, so a long chain of deltas is rebuilt
        # once, not once per entry.
        log = self._log
        with self._lock:
            public = log.public(self._length)
        if not log.raw_count:  # nothing to rebuild: the entries themselves
            return itertools.islice(public, self._length)
        return self._rebuilding_iter(public)

    def _rebuilding_iter(self, public: list[Value]) -> Iterator[Value]:
        log = self._log
        codec = self._codec
        running: Any = MISSING
        for position, entry in enumerate(itertools.islice(public, self._length)):
            if type(entry.data) is not Raw:
                running = MISSING
                yield entry
                continue
            value = log.value_at(codec, position, running)
            running = codec.copy(value) if codec.is_mutable(value) else MISSING
            yield entry._replace(data=value)

    # -- positions --------------------------------------------------------------------

    def position(self, *, seq: int | None = None, time: float | None = None) -> int:
        """The position of the entry in force at ``seq`` or ``time``: the latest one
        at or before it, -1 if there is none. O(log n).

        >>> from everstore import Store, history
        >>> doc = Store().storage("doc")
        >>> doc.v = 1; doc.v = 2
        >>> h = history(doc)["v"]
        >>> h.position(seq=h.seq_at(1)), h.position(seq=0)
        (1, -1)

        :raises TypeError: unless exactly one of ``seq`` and ``time`` is given
        """
        if (seq is None) == (time is None):
            raise TypeError("needs exactly one of seq= or time=")
        if seq is not None:
            position = self._log.index_at(seq)
        else:
            position = (
                bisect.bisect_right(self._log.entries, time, 0, self._length, key=_time_of) - 1
            )
        return min(position, self._length - 1)

    def at(self, *, seq: int | None = None, time: float | None = None) -> Value | None:
        """The entry in force at ``seq`` or ``time`` (None before the first). O(log n).

        :raises TypeError: unless exactly one of ``seq`` and ``time`` is given
        """
        position = self.position(seq=seq, time=time)
        return None if position < 0 else self._entry(position)

    def seq_at(self, position: int) -> int:
        """The seq of the entry at ``position`` (negative counts from the end). O(1)."""
        return int(self._log.entries[self._checked(position)][SEQ])

    def deleted_at(self, position: int) -> bool:
        """True if the entry at ``position`` is a tombstone. O(1)."""
        return bool(self._log.entries[self._checked(position)][UNAVAILABLE])

    def value_at(self, position: int) -> Any:
        """The value of the entry at ``position`` (None for a tombstone), a fresh
        object for containers. O(1), plus rebuilding a container."""
        position = self._checked(position)
        data = self._log.entries[position][DATA]
        if type(data) is Raw:
            return self._log.value_at(self._codec, position)
        return data

    def values(self, start: int = 0, stop: int | None = None) -> list[Any]:
        """The values of positions ``start`` to ``stop - 1`` (as ``range`` takes
        them, negative ones counting from the end; None for a tombstone), fresh
        objects for containers: ``[h.value_at(i) for i in range(start, stop)]``,
        decoded together.

        >>> from everstore import Store, history
        >>> doc = Store().storage("doc")
        >>> doc.v = 1; doc.v = [2]; doc.v = 3
        >>> history(doc)["v"].values(1)
        [[2], 3]

        Complexity: O(k) for k values, plus decoding their containers.
        """
        first, last, _ = slice(start, stop).indices(self._length)
        if first >= last:
            return []
        return self._log.values(self._codec, first, last)

    def positions_of(self, value: Any) -> list[int] | None:
        """The positions whose value equals ``value``, ascending; None when ``value``
        is unhashable (then scan). O(1) after a first O(n) call builds the index."""
        positions = self._log.positions_of(value)
        if positions is None or not positions or positions[-1] < self._length:
            return positions
        return positions[: bisect.bisect_left(positions, self._length)]

    def __repr__(self) -> str:
        shown = ", ".join(repr(v) for v in self[-3:])
        more = "…, " if self._length > 3 else ""
        return f"History([{more}{shown}])"
