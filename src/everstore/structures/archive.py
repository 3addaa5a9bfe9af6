"""Archive: the layers pruned from an AppendStack, newest first."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..engine import caller_context
from ..storage import Storage
from .checks import check_position
from .errors import ArchiveOrderError
from .logs import Entry, open_log

__all__ = ["Archive"]

#: the cursor: the generation of the newest layer (-1: none yet)
GENERATION = "generation"


class Archive:
    """Layers pruned from an :class:`~everstore.structures.AppendStack`, kept for
    good: pass ``archive.addLayer`` as the stack's pruner. Iteration gives
    ``(generation, index, item)`` newest first, like the stack's, so that the stack
    followed by its archive reads as one stream.

    In memory without ``storage``; with ``storage=store.storage(...)`` it lives in
    that namespace (each layer one fact). An archive in the same store as its stack
    gets each pruned layer exactly once, in the transaction that prunes it.

    >>> archive = Archive()
    >>> archive.addLayer(0, ["a", "b"])
    >>> archive.addLayer(1, ["c"])
    >>> list(archive)
    [(1, 0, 'c'), (0, 1, 'b'), (0, 0, 'a')]

    :param storage: the everstore Storage to live in; None keeps it in memory
    :raises TypeError: for a storage that is not a Storage
    :raises StructureMismatchError: if the storage holds something else
    """

    def __init__(self, *, storage: Storage | None = None) -> None:
        self._log, _, self._where = open_log(storage, "Archive", {}, {})

    def __repr__(self) -> str:
        return f"Archive(in {self._where})"

    @property
    def generation(self) -> int:
        """The generation of the newest layer, -1 while there is none. O(1)."""
        return self._log.cursor(GENERATION, -1)[0]

    def addLayer(self, generation: int, items: Iterable[Any]) -> None:
        """Add a layer of ``items`` (oldest first, copied) as the newest, under
        ``generation``, which must be above every generation added before (gaps are
        allowed).

        >>> archive = Archive()
        >>> archive.addLayer(3, [1])
        >>> archive.addLayer(3, [2])
        Traceback (most recent call last):
        ...
        everstore.structures.errors.ArchiveOrderError: Cannot add older layers ... 3 is not above 3

        Complexity: O(len(items)).

        :raises TypeError: if ``generation`` is not an int
        :raises ArchiveOrderError: (a ValueError) if ``generation`` is not above the
            newest layer's; nothing is added
        :raises UnsupportedValueError: in a store, for an item it cannot store
        """
        check_position("generation", generation)
        log = self._log
        layer = [generation, log.stored_form(items if isinstance(items, list) else list(items))]
        context = caller_context()
        while True:
            newest, token = log.cursor(GENERATION, -1)
            if generation <= newest:
                raise ArchiveOrderError(
                    "Cannot add older layers to an already-populated archive: "
                    f"generation {generation} is not above {newest}"
                )
            if log.advance(GENERATION, token, generation, lambda: log.append(layer, context)):
                return

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        """``(generation, index, item)``, newest layer first, newest item first.

        Complexity: O(n) for n items.
        """
        log = self._log
        for generation, stored in reversed(log.values(0, log.count())):
            items = log.resolve(stored)
            for index in range(len(items) - 1, -1, -1):
                yield generation, index, items[index]

    def entries(self) -> Iterator[tuple[int, int, Entry]]:
        """As iteration, with each item as an :class:`Entry` whose time, context and
        seq are its layer's (when and where it was archived).

        Complexity: O(n).
        """
        log = self._log
        for entry in reversed(log.entries(0, log.count())):
            generation, stored = entry.value
            items = log.resolve(stored)
            for index in range(len(items) - 1, -1, -1):
                yield generation, index, entry._replace(value=items[index])

    def __len__(self) -> int:
        """How many items the archive holds. O(n) (a store decodes its layers)."""
        log = self._log
        return sum(
            stored["stop"] - stored["start"] if type(stored) is dict else len(stored)
            for _, stored in log.values(0, log.count())
        )
