"""The cache's memory of one field: its entries in seq order, and how a past value
is rebuilt from them (containers are kept encoded, deltas applied on demand)."""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import itertools
import operator
from collections.abc import Callable, Iterator
from typing import Any, Final

from ..codec import Codec
from ..errors import DecodeError
from ..log import Value

__all__ = [
    "MISSING",
    "TOMBSTONE",
    "Entry",
    "FieldLog",
    "Raw",
    "as_value",
    "collector_paused",
    "replaced_later",
]

#: "no value given": distinct from None, which is a value
MISSING: Any = object()
#: tuple.__new__ builds a NamedTuple without the Python-level __new__ frame.
as_value: Callable[[Any], Value] = functools.partial(tuple.__new__, Value)
_seq_of = operator.itemgetter(4)  # Value.seq, as a C-level key for bisect
#: ``map(_make_value, repeat(Value), entries)`` makes Values ~10 % faster than
#: ``map(as_value, entries)``: no partial object in between
_make_value: Callable[[type[Value], Any], Value] = tuple.__new__
#: batches of new Values from this size on are made with the collector paused
_PAUSE_GC_FROM = 4096

#: A history entry as the cache keeps it: a plain tuple laid out as Value. CPython's
#: collector stops tracking an exact tuple of atomic values but never a NamedTuple,
#: and full collections rescanning a million Values cost more than the write itself.
Entry = tuple[float, bool, Any, str, int]
UNAVAILABLE: Final = 1
DATA: Final = 2
SEQ: Final = 4


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many containers are made at once.

    Each batch of new tracked containers triggers a collection that rescans the young
    ones again and again (for 100k of them, more time than making them); paused, one
    later collection sees them all. The pause is process-wide: other threads run with
    it meanwhile, and one that disables the collector inside the window finds it
    enabled again after.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


#: Encoded data of a mutable (or delta) fact, rebuilt only when asked for. A
#: bytearray, because no value the cache holds as itself ever is one (a bytearray
#: value is mutable: it is cached encoded, in a Raw), and because the cyclic collector
#: does not track it: an entry holding one is untracked too, as an entry holding an
#: immutable value is, and a history of a million containers costs full collections
#: nothing (an object of a class of ours would be tracked, and rescanned by each).
Raw = bytearray


class FieldLog:
    """The history of one field: its entries in seq order."""

    __slots__ = ("_public", "by_value", "entries", "raw_count")

    def __init__(self) -> None:
        # One list, searched by seq or time with a key: parallel lists of seqs and
        # times would cost two more appends per write.
        self.entries: list[Entry] = []
        #: the entries as Values, made on the first history read (iterating one) and
        #: extended after; None until then: most fields of a store never have their
        #: history iterated, and an empty list per field would cost 56 bytes (and a
        #: container for the garbage collector) for each
        self._public: list[Value] | None = None
        #: how many entries hold encoded containers (to rebuild on reading)
        self.raw_count = 0
        #: value -> positions holding it; built on the first ``within`` that needs it
        self.by_value: dict[Any, list[int]] | None = None

    def add(self, entry: Entry) -> None:
        """Append one entry (its seq above every other), keeping the indexes current.

        Counted and indexed before it is appended, idempotently: an interrupt cannot
        leave an encoded entry uncounted (its history would show it undecoded) or an
        entry missing from the value index; one counted twice costs only speed.
        """
        data = entry[DATA]
        position = len(self.entries)
        if type(data) is Raw:
            self.raw_count += 1
        elif self.by_value is not None and not entry[UNAVAILABLE]:
            with contextlib.suppress(TypeError):  # unhashable values are searched by scan
                positions = self.by_value.setdefault(data, [])
                if not positions or positions[-1] != position:
                    positions.append(position)
        self.entries.append(entry)

    def last_seq(self) -> int:
        """The seq of the latest entry, 0 if there is none."""
        return self.entries[-1][SEQ] if self.entries else 0

    def positions_of(self, wanted: Any) -> list[int] | None:
        """Positions whose value equals ``wanted``, or None if it cannot be indexed."""
        if self.by_value is None:
            index: dict[Any, list[int]] = {}
            for position, (_, unavailable, data, _, _) in enumerate(self.entries):
                if not unavailable and type(data) is not Raw:
                    try:
                        index.setdefault(data, []).append(position)
                    except TypeError:
                        continue
            self.by_value = index
        try:
            return self.by_value.get(wanted, [])
        except TypeError:
            return None

    def index_at(self, seq: int) -> int:
        """Position of the latest entry with a seq at or below ``seq`` (-1 if none)."""
        return bisect.bisect_right(self.entries, seq, key=_seq_of) - 1

    def public(self, length: int) -> list[Value]:
        """A list whose first ``length`` items are the entries as Values (containers
        still encoded). It may be longer, and grows: read it with a bound.

        Amortized O(1) per entry: entries never change, so the Values made for one
        history read serve every later one. Call it under the store's lock.
        """
        public = self._public
        if public is None:
            public = self._public = []
        missing = length - len(public)
        if missing <= 0:
            return public
        entries = self.entries[len(public) : length]
        if missing < _PAUSE_GC_FROM:
            public.extend(map(_make_value, itertools.repeat(Value, missing), entries))
            return public
        # Every Value is a tracked container (see Entry): at 100k values the
        # collections that making them triggers cost twice the making itself.
        with collector_paused():
            public.extend(map(_make_value, itertools.repeat(Value, missing), entries))
        return public

    # -- rebuilding values ----------------------------------------------------------
    # A delta applies to the field's *previous* value when that value is a container
    # of the delta's type, and only otherwise to the value at the seq it was made
    # from. So when two writers change one list, dict or set at once, both changes
    # survive (appends add up, keys merge), in every process, as the log orders them.

    def apply_delta(
        self,
        codec: Codec,
        data: bytes,
        previous: Any,
        convert: Callable[[Any], Any] | None = None,
    ) -> Any:
        """The value after delta ``data``, changing ``previous`` in place when it fits
        (``convert``: see :meth:`Codec.apply_delta`)."""
        value_at = functools.partial(self.value_at_seq, codec)
        return codec.decode_fact(data, previous, value_at, convert)

    def value_at_seq(self, codec: Codec, seq: int) -> Any:
        """The value of the entry at exactly ``seq``, as a fresh object."""
        position = self.index_at(seq)
        if position < 0 or self.entries[position][SEQ] != seq:
            raise DecodeError(f"a stored delta refers to missing seq {seq}")
        return self.value_at(codec, position)

    def value_at(self, codec: Codec, position: int, previous: Any = MISSING) -> Any:
        """The value of entry ``position``, as a fresh object for mutable values.

        ``previous`` may hold a private copy of entry ``position - 1``'s value (the
        caller's running value when it walks a history in order).
        """
        entries = self.entries
        data = entries[position][DATA]
        if type(data) is not Raw:
            return data
        if not codec.is_delta(data):
            return codec.decode(data)
        if previous is MISSING:
            start = position
            while start > 0 and self._is_delta(codec, entries[start]):
                start -= 1
            value = self._full_value(codec, start)
        else:
            start = position - 1
            value = previous
        for index in range(start + 1, position + 1):
            value = self.apply_delta(codec, entries[index][DATA], value)
        return value

    def values(self, codec: Codec, start: int, stop: int) -> list[Any]:
        """The values of entries ``start`` to ``stop - 1`` (None for a tombstone),
        fresh objects for mutable ones: encoded containers decoded together
        (:meth:`Codec.decode_many`), deltas rebuilt one by one."""
        entries = self.entries[start:stop]
        values = [entry[DATA] for entry in entries]
        raw = [i for i, data in enumerate(values) if type(data) is Raw]
        if not raw:
            return values
        full = [i for i in raw if not codec.is_delta(values[i])]
        for i, value in zip(full, codec.decode_many([values[i] for i in full]), strict=True):
            values[i] = value
        if len(full) < len(raw):
            for i in raw:
                if type(values[i]) is Raw:  # a delta: rebuilt from the entries before
                    values[i] = self.value_at(codec, start + i)
        return values

    @staticmethod
    def _is_delta(codec: Codec, entry: Entry) -> bool:
        data = entry[DATA]
        return type(data) is Raw and codec.is_delta(data)

    def _full_value(self, codec: Codec, position: int) -> Any:
        data = self.entries[position][DATA]
        if type(data) is not Raw:
            return data  # an immutable value, or None for a tombstone
        raw: bytes | bytearray = data
        if codec.is_delta(raw):  # a field's first entry cannot be a delta: damaged
            raise DecodeError(
                f"a stored delta at seq {self.entries[position][SEQ]} has no value before it"
            )
        return codec.decode(raw)


def replaced_later(keys: list[Any], replaces: list[bool]) -> set[int]:
    """Positions ``i`` whose key's next occurrence ``j > i`` has ``replaces[j]``: a
    value that a later one replaces whole (not a delta on it), so that nothing will
    ever need it decoded to rebuild the current value.

    >>> sorted(replaced_later(["a", "b", "a", "a"], [True, True, False, True]))
    [2]
    >>> sorted(replaced_later(["a", "a", "a"], [True, True, True]))
    [0, 1]
    """
    found: set[int] = set()
    next_replaces: dict[Any, bool] = {}
    for position in range(len(keys) - 1, -1, -1):
        key = keys[position]
        if next_replaces.get(key):
            found.add(position)
        next_replaces[key] = replaces[position]
    return found


#: the value a write carries to delete its field (a tombstone)
TOMBSTONE: Any = object()
