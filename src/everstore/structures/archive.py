"""Archive: the layers pruned from an AppendStack, newest first."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..engine import Engine, caller_context
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
    that namespace (its layers kept as a stack's items are). An archive in the same
    store as its stack gets each pruned layer exactly once, in the transaction that
    prunes it.

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

    @property
    def store(self) -> Engine | None:
        """The store this structure lives in (None: in memory)."""
        return self._log.engine

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
        stored = log.stored_form(items if isinstance(items, list) else list(items))
        layer = [generation, stored]
        context = caller_context()
        if type(stored) is dict:
            self._add_reference(layer, context)
            return
        while True:
            newest, token = log.cursor(GENERATION, -1)
            if generation <= newest:
                raise ArchiveOrderError(
                    "Cannot add older layers to an already-populated archive: "
                    f"generation {generation} is not above {newest}"
                )
            if log.advance(GENERATION, token, generation, lambda: log.append(layer, context)):
                return

    def _add_reference(self, layer: list[Any], context: str) -> None:
        """Record a layer that a stack in the same store prunes into this archive (a
        reference to its items): without a compare-and-set, since two writers
        pruning the same layer at once record the same reference, which is then
        one layer (see :func:`newest_first`)."""
        log = self._log
        generation = layer[0]
        newest, _ = log.cursor(GENERATION, -1)
        if generation <= newest:
            if layer in log.values(0, log.count()):
                return  # recorded already: another writer pruned the same layer
            raise ArchiveOrderError(
                "Cannot add older layers to an already-populated archive: "
                f"generation {generation} is not above {newest}"
            )
        log.set_cursor(GENERATION, generation, lambda: log.append(layer, context))

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        """``(generation, index, item)``, newest layer first, newest item first.

        Complexity: O(n) for n items.
        """
        log = self._log
        layers = newest_first(log.values(0, log.count()))
        resolved = log.resolve([stored for _, stored in layers])
        for (generation, _), items in zip(layers, resolved, strict=True):
            for index in range(len(items) - 1, -1, -1):
                yield generation, index, items[index]

    def entries(self) -> Iterator[tuple[int, int, Entry]]:
        """As iteration, with each item as an :class:`Entry` whose time, context and
        seq are its layer's (when and where it was archived).

        Complexity: O(n).
        """
        log = self._log
        entries = log.entries(0, log.count())
        chosen = newest_first([entry.value for entry in entries], entries)
        resolved = log.resolve([entry.value[1] for entry in chosen])
        for entry, items in zip(chosen, resolved, strict=True):
            generation = entry.value[0]
            for index in range(len(items) - 1, -1, -1):
                yield generation, index, entry._replace(value=items[index])

    def __len__(self) -> int:
        """How many items the archive holds. O(n) (a store decodes its layers)."""
        log = self._log
        return sum(
            stored["stop"] - stored["start"] if type(stored) is dict else len(stored)
            for _, stored in newest_first(log.values(0, log.count()))
        )


def newest_first(layers: list[Any], tags: list[Any] | None = None) -> list[Any]:
    """``tags`` (default: ``layers`` themselves), one per ``[generation, stored]``
    layer, ordered newest generation first, a layer recorded twice over taken once.

    Layers are recorded in commit order, which is generation order, except when two
    writers prune at once: each records the layers it pruned, and the same layer may
    then be there twice (the same reference, from the same stack), the newer of two
    generations possibly first. A layer of the same generation with other items
    (never recorded so by everstore) is kept: nothing is dropped.

    >>> newest_first([[0, "a"], [2, "c"], [1, "b"], [2, "c"]])
    [[2, 'c'], [1, 'b'], [0, 'a']]
    """
    chosen = list(range(len(layers)))
    chosen.sort(key=lambda position: layers[position][0], reverse=True)  # stable
    kept: list[Any] = []
    previous: Any = None
    for position in chosen:
        layer = layers[position]
        if layer != previous:
            kept.append(layer if tags is None else tags[position])
        previous = layer
    return kept
