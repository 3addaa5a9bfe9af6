"""AppendStack: a LIFO stack of layers, the oldest pruned to a callback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from ..engine import Engine, caller_context
from ..storage import Storage
from .archive import Archive
from .checks import check_position, check_size
from .logs import Entry, open_log

__all__ = ["AppendStack", "Pruner"]

#: called with a pruned layer's generation and its items, oldest first (a list)
Pruner = Callable[[int, list[Any]], object]

#: the cursor: the newest generation handed to the pruner (or dropped without one)
PRUNED = "pruned"


class AppendStack:
    """A LIFO stack of items in layers of ``max_length``, keeping the newest
    ``max_layers`` layers; older layers are pruned, each handed to the pruner.

    The item pushed n-th (from 0) is at generation ``n // max_length``, index
    ``n % max_length``: appendonly's numbering. Without ``storage`` the stack lives in
    this process and holds the objects pushed; with ``storage=store.storage(...)`` it
    lives in that store's namespace, in the log (a push is a fact, or one of a
    transaction's batch: it keeps its time and the code that pushed it), the
    positions follow the log's order and never change once committed, and any number
    of processes push at once without conflict.

    >>> stack = AppendStack(max_layers=3, max_length=2)
    >>> for item in range(9):
    ...     stack.push(item)
    >>> list(stack)
    [(4, 0, 8), (3, 1, 7), (3, 0, 6), (2, 1, 5), (2, 0, 4)]

    :param max_layers: layers kept (an int >= 1; default 10, or the stored stack's)
    :param max_length: items per layer (an int >= 1; default 100, or the stored stack's)
    :param storage: the everstore Storage to live in; None keeps it in memory
    :raises TypeError: for a size that is not an int, or a storage that is not a Storage
    :raises ValueError: for a size below 1
    :raises StructureMismatchError: if the storage holds something else, or a stack
        with other sizes than the ones given
    """

    def __init__(
        self,
        max_layers: int | None = None,
        max_length: int | None = None,
        *,
        storage: Storage | None = None,
    ) -> None:
        asked = {
            "max_layers": check_size("max_layers", max_layers),
            "max_length": check_size("max_length", max_length),
        }
        self._log, sizes, self._where = open_log(
            storage, "AppendStack", asked, {"max_layers": 10, "max_length": 100}
        )
        self._max_layers = sizes["max_layers"]
        self._max_length = sizes["max_length"]
        #: the newest generation known to be pruned: the cursor only moves forward
        self._known_pruned = -1
        #: the last pruner _archives_here was asked about, and its answer
        self._last_pruner: tuple[object, bool] = (None, False)
        #: pruner: the pruner of the calling thread's last push in its transaction
        self._local = threading.local()

    @property
    def max_layers(self) -> int:
        """How many layers the stack keeps."""
        return self._max_layers

    @property
    def max_length(self) -> int:
        """How many items a layer holds."""
        return self._max_length

    @property
    def store(self) -> Engine | None:
        """The store this structure lives in (None: in memory)."""
        return self._log.engine

    def __repr__(self) -> str:
        return (
            f"AppendStack(max_layers={self._max_layers}, max_length={self._max_length}, "
            f"in {self._where})"
        )

    # -- writing --------------------------------------------------------------------

    def push(self, obj: Any, pruner: Pruner | None = None) -> None:
        """Push ``obj`` onto the newest layer (opening a new one when it is full),
        then prune layers beyond ``max_layers``, oldest first, calling
        ``pruner(generation, items)`` for each (items oldest first).

        In a store, the push is committed before this returns, or with the open
        transaction; pruning follows the commit, in a transaction of its own that
        also holds whatever the pruner writes to the same store (an
        :class:`~everstore.structures.Archive` there gets each layer exactly once,
        whichever process prunes it). A layer stays in the stack until its pruning
        commits: if the pruner raises, the error propagates and the next push
        tries again.

        >>> stack, pruned = AppendStack(max_layers=1, max_length=2), []
        >>> for item in "abc":
        ...     stack.push(item, lambda generation, items: pruned.append((generation, items)))
        >>> pruned, list(stack)
        ([(0, ['a', 'b'])], [(1, 0, 'c')])

        Complexity: O(1), plus O(max_length) when a layer is pruned.

        :raises TypeError: if ``pruner`` is not callable
        :raises UnsupportedValueError: in a store, for a value it cannot store
        """
        if pruner is not None and not callable(pruner):
            raise TypeError(f"pruner is a callable or None, got {pruner!r}")
        began = self._log.append(obj, caller_context())
        if began is None:  # committed already
            self._prune(pruner)
            return
        # In a transaction: pruned as it commits, with the pruner of its last push.
        self._local.pruner = pruner
        if began:
            self._log.before_commit(self._prune_as_committing)

    def _prune_as_committing(self) -> None:
        """The calling thread's transaction pushed and is about to commit: prune in it
        (with no pruner, or with an archive in this store), or after it."""
        pruner: Pruner | None = self._local.pruner
        if pruner is None or self._archives_here(pruner):
            self._prune_within(pruner)
        else:
            self._log.after_commit(partial(self._prune, pruner))

    def _archives_here(self, pruner: Pruner) -> bool:
        """True if ``pruner`` is ``addLayer`` of an Archive in this stack's store."""
        # Asked at every push, mostly of the same pruner: remembered for the last one
        # (``archive.addLayer`` is a new bound method each time, equal to the last).
        last, answer = self._last_pruner
        if pruner == last:
            return answer
        archive = getattr(pruner, "__self__", None)
        answer = (
            isinstance(archive, Archive)
            and getattr(pruner, "__func__", None) is Archive.addLayer
            and archive.store is not None
            and archive.store is self._log.engine
        )
        self._last_pruner = (pruner, answer)
        return answer

    def _prune_within(self, pruner: Pruner | None) -> None:
        """Prune, as the calling thread's open transaction commits and in it, the
        layers due once its pushes are in: without a compare-and-set, so that no
        other writer can make it fail.

        Its pushes will follow every item committed so far, and only more can come
        before them: the layers full after the items counted here are full at the
        commit too, and a layer is pruned as positions (the archive refers to the
        positions, whichever items they hold). Two writers pruning the same layers
        at once write the same: the cursor keeps its highest value, the archive a
        layer it was given twice once.
        """
        log, length = self._log, self._max_length
        due = (log.count() + log.pending_appends() - 1) // length - self._max_layers
        if due <= self._known_pruned:
            return
        done, _ = log.cursor(PRUNED, -1)
        self._known_pruned = done  # committed; what this transaction sets may not be
        if due <= done:
            return
        during = None if pruner is None else partial(self._hand_over, pruner, done + 1, due)
        log.set_cursor(PRUNED, due, during)

    def _prune(self, pruner: Pruner | None) -> None:
        """Prune every layer due (see :meth:`push`): in a store, all of them in one
        transaction; in memory, one at a time, so that a pruner that raises has
        been called once for each layer before the one it failed on."""
        log, length = self._log, self._max_length
        while True:
            due = (log.count() - 1) // length - self._max_layers  # newest generation to prune
            if due <= self._known_pruned:
                return
            done, token = log.cursor(PRUNED, -1)
            self._known_pruned = done
            if due <= done:
                return
            last = due if log.atomic else done + 1
            during = None if pruner is None else partial(self._hand_over, pruner, done + 1, last)
            if log.advance(PRUNED, token, last, during):
                self._known_pruned = last
                log.forget((last + 1) * length)
            # else: another writer pruned first; look again

    def _hand_over(self, pruner: Pruner, first: int, last: int) -> None:
        """Call the pruner with each layer from generation ``first`` to ``last``."""
        length = self._max_length
        # Archive.addLayer itself, with no code of the caller's in between to change
        # the items it is given: an archive in the same store may then record where
        # they are instead of a copy (see Layer).
        direct = self._archives_here(pruner)
        for generation in range(first, last + 1):
            start = generation * length
            pruner(generation, self._log.layer(start, start + length, direct))

    # -- reading --------------------------------------------------------------------

    def _retained(self) -> tuple[int, int]:
        """The positions in the stack: ``range(start, stop)``."""
        log = self._log
        stop = log.count()
        done, _ = log.cursor(PRUNED, -1)
        return (done + 1) * self._max_length, stop

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        """``(generation, index, item)`` for every item in the stack, newest first.

        Complexity: O(n) for n items (a store decodes each once).
        """
        start, stop = self._retained()
        return self._newest_first(start, stop, self._log.values(start, stop))

    def _newest_first(
        self, start: int, stop: int, values: list[Any]
    ) -> Iterator[tuple[int, int, Any]]:
        length = self._max_length
        for position in range(stop - 1, start - 1, -1):
            generation, index = divmod(position, length)
            yield generation, index, values[position - start]

    def entries(self) -> Iterator[tuple[int, int, Entry]]:
        """As iteration, with each item as an :class:`Entry` (its value, time,
        context and seq).

        >>> stack = AppendStack()
        >>> stack.push("a")
        >>> [(g, i, e.value) for g, i, e in stack.entries()]
        [(0, 0, 'a')]

        Complexity: O(n).
        """
        start, stop = self._retained()
        return self._newest_first(start, stop, self._log.entries(start, stop))

    def newer(self, latest_gen: int, latest_index: int) -> Iterator[tuple[int, int, Any]]:
        """The items pushed after the one at ``(latest_gen, latest_index)``, as
        iteration gives them (newest first): what arrived since a reader last looked.

        >>> stack = AppendStack(max_length=2)
        >>> for item in "abc":
        ...     stack.push(item)
        >>> list(stack.newer(0, 0))
        [(1, 0, 'c'), (0, 1, 'b')]

        Complexity: O(k) for the k items returned.

        :raises TypeError: if a position is not an int
        """
        check_position("latest_gen", latest_gen)
        check_position("latest_index", latest_index)
        length = self._max_length
        # The first position after (latest_gen, latest_index) in tuple order.
        first = latest_gen * length + min(max(latest_index + 1, 0), length)
        start, stop = self._retained()
        start = max(start, first)
        if start >= stop:
            return iter(())
        return self._newest_first(start, stop, self._log.values(start, stop))

    def layers(self) -> list[tuple[int, list[Any]]]:
        """The layers, newest first, as ``(generation, items oldest first)``.

        >>> stack = AppendStack(max_layers=2, max_length=3)
        >>> for item in range(10):
        ...     stack.push(item)
        >>> stack.layers()
        [(3, [9]), (2, [6, 7, 8])]

        Complexity: O(n).
        """
        start, stop = self._retained()
        if stop <= start:
            return [(0, [])]  # a new stack: one empty layer, as appendonly has
        values = self._log.values(start, stop)
        length = self._max_length
        return [
            (first // length, values[first - start : min(first + length, stop) - start])
            for first in range((stop - 1) // length * length, start - 1, -length)
        ]

    def __len__(self) -> int:
        """How many items the stack holds (pruned layers excluded). O(1)."""
        start, stop = self._retained()
        return max(stop - start, 0)
