"""Where a structure's items and cursors live: in this process (:class:`MemoryLog`)
or in a store (:class:`StoredLog`).

A structure is a log of items plus a few cursors (how far a stack was pruned, how
far an accumulator was consumed). Both logs give items positions 0, 1, 2 ... in the
order they were appended (in a store: the log's seq order, fixed at commit), and
move a cursor by compare-and-set, or so that its highest value wins, so the
structures' logic is written once.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from ..engine import Engine, History, Namespace, caller_context, describe_field
from ..errors import ConflictError, MissingFieldError, UnsupportedValueError
from ..storage import Storage
from .errors import StructureExistsError, StructureMismatchError

__all__ = ["ITEM", "Entry", "ItemLog", "Layer", "MemoryLog", "StoredLog", "open_log"]

#: the field whose history is a structure's items
ITEM = "item"
#: the field that says what structure a namespace holds, and its parameters
STRUCTURE = "structure"


class Entry(NamedTuple):
    """One item of a structure and where it came from.

    ``time`` is when it was appended (wall-clock seconds), ``context`` the code
    location that appended it (``module.function:line``), ``seq`` the position in the
    store's log of the fact that holds it, which the items appended in one
    transaction share (None for a structure kept in memory).
    """

    value: Any
    time: float
    context: str
    seq: int | None


#: where a layer's items are: (store, the stack's namespace, first position, stop)
Source = tuple[Engine, Namespace, int, int]


class Layer(list[Any]):
    """The items of a layer pruned from a stack, oldest first: a list.

    A stack in a store hands its layers to ``addLayer`` of an Archive in the same
    store (no other code in between that could change them) as a sealed layer: empty,
    knowing where its items are, which is what that archive records. Only
    :meth:`ItemLog.stored_form` reads one.
    """

    __slots__ = ("source",)

    def __init__(self, items: Iterable[Any], source: Source | None = None) -> None:
        super().__init__(items)
        #: where the items are, for a sealed layer; None for a list of the items
        self.source = source


class ItemLog(Protocol):
    """What a structure stands on (see the module's docstring)."""

    #: True if :meth:`advance` undoes everything ``during()`` wrote when it fails
    #: (a store's transaction); False if what ``during()`` did stays done
    atomic: bool

    @property
    def engine(self) -> Engine | None:
        """The store the items are in; None in memory."""

    def count(self) -> int:
        """How many items were ever appended (committed ones, in a store)."""

    def values(self, start: int, stop: int) -> list[Any]:
        """The items at positions ``start`` to ``stop - 1``, oldest first."""

    def entries(self, start: int, stop: int) -> list[Entry]:
        """The same, as :class:`Entry` values."""

    def layer(self, start: int, stop: int, sealed: bool) -> Layer:
        """The items at positions ``start`` to ``stop - 1`` as a :class:`Layer`; if
        ``sealed``, where they are instead (see :class:`Layer`), which need not be
        committed yet: in an open transaction, the positions its appends will have."""

    def stored_form(self, items: list[Any]) -> Any:
        """What to store for a layer of ``items`` copied into this log: the items, or
        a reference to where they already are in the same store."""

    def resolve(self, stored: list[Any]) -> list[list[Any]]:
        """The items each of the :meth:`stored_form` values ``stored`` stands for,
        fresh objects (items of one stack read together, each batch decoded once)."""

    def append(self, value: Any, context: str) -> bool | None:
        """Append one item: None if it is committed (or kept) at once; True if it
        began the calling thread's open transaction's batch, False if it joined it."""

    def extend(self, values: list[Any], context: str) -> None:
        """Append several items atomically."""

    def cursor(self, name: str, default: int) -> tuple[int, int]:
        """A cursor's value (``default`` if never set) and the token that
        :meth:`advance` compares."""

    def advance(
        self, name: str, token: int, value: int, during: Callable[[], object] | None
    ) -> bool:
        """Set cursor ``name`` to ``value`` if it is still at ``token``, running
        ``during()`` atomically with it (in the same transaction, in a store); False
        if another writer moved it first (then nothing of it is kept)."""

    def set_cursor(self, name: str, value: int, during: Callable[[], object] | None) -> None:
        """Set cursor ``name`` to ``value`` unconditionally, with ``during()`` (in one
        transaction, joining the open one). Unlike :meth:`advance`, it never conflicts:
        a cursor's value is the highest ever set, whatever order writers commit in."""

    def pending_appends(self) -> int:
        """How many appends the calling thread's open transaction holds."""

    def before_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` as the calling thread's open transaction is about to
        commit, inside it."""

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` after the calling thread's open transaction commits
        (not if it fails)."""

    def forget(self, stop: int) -> None:
        """Items before ``stop`` will not be read again (memory may drop them)."""


class MemoryLog:
    """Items in a list of this process, as appendonly keeps them: the objects
    themselves, not copies. Thread-safe; no transactions."""

    atomic = False
    engine = None

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: position of _values[0]: the items before it were forgotten
        self._base = 0
        self._values: list[Any] = []
        self._times: list[float] = []
        self._contexts: list[str] = []
        self._cursors: dict[str, int] = {}

    def count(self) -> int:
        with self._lock:  # _base and _values change together (forget)
            return self._base + len(self._values)

    def values(self, start: int, stop: int) -> list[Any]:
        with self._lock:
            base = self._base
            return self._values[max(start - base, 0) : max(stop - base, 0)]

    def entries(self, start: int, stop: int) -> list[Entry]:
        with self._lock:
            first, last = max(start - self._base, 0), max(stop - self._base, 0)
            return [
                Entry(value, when, context, None)
                for value, when, context in zip(
                    self._values[first:last],
                    self._times[first:last],
                    self._contexts[first:last],
                    strict=True,
                )
            ]

    def layer(self, start: int, stop: int, sealed: bool) -> Layer:
        return Layer(self.values(start, stop), None)

    def stored_form(self, items: list[Any]) -> Any:
        source = items.source if type(items) is Layer else None
        if source is not None:  # a stack in a store pruning into this archive
            engine, ns, start, stop = source
            return StoredLog(engine, ns).values(start, stop)
        return list(items)

    def resolve(self, stored: list[Any]) -> list[list[Any]]:
        return stored

    def append(self, value: Any, context: str) -> bool | None:
        with self._lock:
            self._values.append(value)
            self._times.append(time.time())
            self._contexts.append(context)
        return None

    def extend(self, values: list[Any], context: str) -> None:
        with self._lock:
            now = time.time()
            self._values.extend(values)
            self._times.extend([now] * len(values))
            self._contexts.extend([context] * len(values))

    def cursor(self, name: str, default: int) -> tuple[int, int]:
        value = self._cursors.get(name, default)
        return value, value

    def advance(
        self, name: str, token: int, value: int, during: Callable[[], object] | None
    ) -> bool:
        with self._lock:
            if self._cursors.get(name, token) != token:
                return False
            if during is not None:
                during()
            self._cursors[name] = value
            return True

    def set_cursor(self, name: str, value: int, during: Callable[[], object] | None) -> None:
        with self._lock:
            if during is not None:
                during()
            self._cursors[name] = max(value, self._cursors.get(name, value))

    def pending_appends(self) -> int:
        return 0

    def before_commit(self, callback: Callable[[], object]) -> None:
        callback()  # no transactions in memory

    def after_commit(self, callback: Callable[[], object]) -> None:
        callback()

    def forget(self, stop: int) -> None:
        with self._lock:
            drop = stop - self._base
            if drop > 0:
                del self._values[:drop], self._times[:drop], self._contexts[:drop]
                self._base = stop


class StoredLog:
    """Items in the history of the field ``item`` of one namespace of a store, and
    cursors as fields beside it.

    Each fact of ``item`` is a batch: ``[items]``, items appended together, whose
    code location is the fact's, or ``[items, runs]``, ``runs`` saying where each
    came from as ``[count, context]`` pairs. An append outside a transaction is a
    batch of one; the appends of a transaction are one batch, written as it commits
    (a list its first append writes, :meth:`Engine.write_at_commit`, and all of them
    extend in place, :meth:`Engine.pending_value`). Positions count the items of the
    batches in the log's order.
    """

    atomic = True

    def __init__(self, engine: Engine, ns: Namespace) -> None:
        self.engine = engine
        self.ns = ns
        #: cursor name -> (history entries read, highest value among them)
        self._highest: dict[str, tuple[int, int]] = {}
        #: the items before the end of each batch read so far (a running total)
        self._ends: list[int] = []
        self._ends_lock = threading.Lock()
        #: the logs of the stacks whose layers this (archive's) log refers to
        self._stacks: dict[tuple[str, ...], StoredLog] = {}
        #: context: the code location of the calling thread's transaction's batch
        self._local = threading.local()

    def _history(self, field: str) -> History | None:
        try:
            return self.engine.history(self.ns, field)
        except MissingFieldError:
            return None

    def _batches(self) -> tuple[History | None, list[int], int]:
        """The history of ``item``, its length, and the running total of items at
        the end of each batch (at least that many: another thread may have read
        further)."""
        history = self._history(ITEM)
        if history is None:
            return None, [], 0
        ends = self._ends
        length = len(history)
        if len(ends) < length:
            with self._ends_lock:  # batches are decoded once, to count their items
                done = len(ends)
                if done < length:
                    total = ends[-1] if ends else 0
                    for batch in history.values(done, length):
                        total += len(batch[0])
                        ends.append(total)
        return history, ends, length

    def count(self) -> int:
        _, ends, length = self._batches()
        return ends[length - 1] if length else 0

    def _covering(self, start: int, stop: int) -> tuple[History | None, int, int, int]:
        """The history, the batches holding positions ``start`` to ``stop - 1``
        (``first`` to ``last - 1``), and the position of the first one's first item."""
        history, ends, length = self._batches()
        stop = min(stop, ends[length - 1] if length else 0)
        if history is None or start >= stop:
            return None, 0, 0, 0
        first = bisect.bisect_right(ends, start, 0, length)
        last = bisect.bisect_left(ends, stop, 0, length) + 1
        return history, first, last, ends[first - 1] if first else 0

    def values(self, start: int, stop: int) -> list[Any]:
        history, first, last, offset = self._covering(start, stop)
        if history is None:
            return []
        items = [item for batch in history.values(first, last) for item in batch[0]]
        return items[start - offset : stop - offset]

    def entries(self, start: int, stop: int) -> list[Entry]:
        history, first, last, offset = self._covering(start, stop)
        if history is None:
            return []
        found: list[Entry] = []
        for fact in history[first:last]:
            items = fact.data[0]
            runs: list[list[Any]] = (
                fact.data[1] if len(fact.data) > 1 else [[len(items), fact.context]]
            )
            contexts = [context for count, context in runs for _ in range(count)]
            found += [
                Entry(item, fact.time, context, fact.seq)
                for item, context in zip(items, contexts, strict=True)
            ]
        return found[start - offset : stop - offset]

    def layer(self, start: int, stop: int, sealed: bool) -> Layer:
        if sealed:
            return Layer((), (self.engine, self.ns, start, stop))
        return Layer(self.values(start, stop))

    def stored_form(self, items: list[Any]) -> Any:
        source = items.source if type(items) is Layer else None
        if source is None:
            return list(items)
        engine, ns, start, stop = source
        if engine is not self.engine:  # not by construction (see Layer); copied then
            return StoredLog(engine, ns).values(start, stop)
        # The items are facts of this store, and facts never change: where they are
        # is all an archive needs to keep.
        return {"stack": list(ns.parts), "start": start, "stop": stop}

    def resolve(self, stored: list[Any]) -> list[list[Any]]:
        # The references to one stack's items, read in one span: an archive's layers
        # are consecutive ranges of its stack, and a batch holds several of them.
        spans: dict[tuple[str, ...], tuple[int, int]] = {}
        for layer in stored:
            if type(layer) is dict:
                parts = tuple(layer["stack"])
                low, high = spans.get(parts, (layer["start"], layer["stop"]))
                spans[parts] = (min(low, layer["start"]), max(high, layer["stop"]))
        read: dict[tuple[str, ...], tuple[int, list[Any]]] = {}
        for parts, (low, high) in spans.items():
            stack = self._stacks.get(parts)
            if stack is None:
                namespace = self.engine.namespace(parts)
                stack = self._stacks[parts] = StoredLog(self.engine, namespace)
            read[parts] = (low, stack.values(low, high))
        resolved: list[list[Any]] = []
        for layer in stored:
            if type(layer) is dict:
                low, items = read[tuple(layer["stack"])]
                resolved.append(items[layer["start"] - low : layer["stop"] - low])
            else:
                resolved.append(layer)
        return resolved

    def append(self, value: Any, context: str) -> bool | None:
        engine = self.engine
        # The transaction's batch, if one is open: looked up first, since it is found
        # at every append but the first of a transaction.
        batch: Any = engine.pending_value(self.ns, ITEM) if engine.open_transactions else None
        if batch is None and not engine.in_transaction():
            engine.write(self.ns, ITEM, [[value]], context)
            return None
        try:
            # Checked now, not when the batch is encoded at the commit: the error
            # reaches this push, and the transaction goes on without the item.
            engine.codec.check(value)
        except UnsupportedValueError as exc:
            raise UnsupportedValueError(f"{describe_field(self.ns.parts, ITEM)}: {exc}") from None
        began = batch is None
        if began:  # the transaction's first append: its batch, extended in place
            batch = [[]]
            engine.write_at_commit(self.ns, ITEM, batch, context)
            self._local.context = context  # the batch's fact's
        items = batch[0]
        items.append(value)
        if len(batch) > 1:
            runs = batch[1]
            if runs[-1][1] == context:
                runs[-1][0] += 1
            else:
                runs.append([1, context])
        elif context != self._local.context:  # from elsewhere: each item's place, from now
            batch.append([[len(items) - 1, self._local.context], [1, context]])
        return began

    def extend(self, values: list[Any], context: str) -> None:
        with self.engine.transaction():
            for value in values:
                self.append(value, context)

    def pending_appends(self) -> int:
        batch = self.engine.pending_value(self.ns, ITEM)
        return 0 if batch is None else len(batch[0])

    def cursor(self, name: str, default: int) -> tuple[int, int]:
        history = self._history(name)
        if history is None:
            return default, 0
        # The highest value ever set (set_cursor lets writers commit in any order),
        # read from the same snapshot as the seq that advance() compares.
        length = len(history)
        seen, highest = self._highest.get(name, (0, default))
        if length > seen:
            highest = max(highest, max(map(int, history.values(seen, length))))
            self._highest[name] = (length, highest)
        return highest, history.seq_at(length - 1)

    def advance(
        self, name: str, token: int, value: int, during: Callable[[], object] | None
    ) -> bool:
        engine = self.engine
        try:
            # Joins the caller's open transaction, if any: then a lost race surfaces
            # as ConflictError when that transaction commits.
            with engine.transaction():
                engine.expect(self.ns, name, token)
                if during is not None:
                    during()
                engine.write(self.ns, name, value)
        except ConflictError:
            return False
        except Exception:
            # during() saw the store after another writer moved the cursor (an
            # Archive refusing the layer that writer archived already): the race
            # was lost, and nothing of this attempt was written.
            if engine.field_seq(self.ns, name) != token:
                return False
            raise
        return True

    def set_cursor(self, name: str, value: int, during: Callable[[], object] | None) -> None:
        engine = self.engine
        if self._joins_transaction():
            # Inside the caller's transaction already (pruning as it commits): an
            # error fails all of it, so no inner block is needed to undo this part.
            if during is not None:
                during()
            engine.write(self.ns, name, value)
            return
        with engine.transaction():
            if during is not None:
                during()
            engine.write(self.ns, name, value)

    def forget(self, stop: int) -> None:
        """Nothing: the store keeps every item."""

    def _joins_transaction(self) -> bool:
        engine = self.engine
        return bool(engine.open_transactions) and engine.in_transaction()

    def before_commit(self, callback: Callable[[], object]) -> None:
        self.engine.before_commit(callback)

    def after_commit(self, callback: Callable[[], object]) -> None:
        self.engine.on_transaction_end(lambda committed: callback() if committed else None)

    # -- what the namespace holds ---------------------------------------------------

    def claim(
        self,
        kind: str,
        asked: dict[str, int | None],
        defaults: dict[str, int],
        initial: list[Any],
        context: str,
    ) -> None:
        """Make the namespace hold a ``kind`` with the parameters ``asked`` (None:
        the stored value, or the default for a new one), created with the items
        ``initial``. The parameters in force are then :meth:`parameters`.

        :raises StructureMismatchError: if it holds another kind, or ``asked``
            differs from its parameters
        :raises StructureExistsError: if it holds one already and ``initial`` has items
        """
        engine, ns = self.engine, self.ns
        while True:
            held = self._held()
            if held is not None:
                self._check(kind, asked, held)
                if initial:
                    raise StructureExistsError(
                        f"{'/'.join(ns.parts)!r} already holds an {kind}: an initial value "
                        "only fills a new one"
                    )
                return
            wanted: dict[str, Any] = {"type": kind}
            wanted.update({k: defaults[k] if v is None else v for k, v in asked.items()})
            try:
                with engine.transaction():
                    engine.expect(ns, STRUCTURE, 0)
                    engine.write(ns, STRUCTURE, wanted, context)
                    if initial:
                        self.extend(initial, context)
            except ConflictError:
                continue  # created by another writer meanwhile: check theirs
            return

    def parameters(self) -> dict[str, Any]:
        held = self._held()
        return {} if held is None else dict(held)

    def _held(self) -> Any:
        """What the namespace says it holds (None: nothing yet), as the calling thread
        sees it: the committed value, or its open transaction's own write of it."""
        history = self._history(STRUCTURE)
        if history is not None:
            return history.value_at(-1)
        engine, ns = self.engine, self.ns
        # Created earlier in the open transaction: not in the committed history until
        # it commits, but the parameters in force already.
        if engine.in_transaction() and engine.has(ns, STRUCTURE):
            return engine.read(ns, STRUCTURE)
        return None

    def _check(self, kind: str, asked: dict[str, int | None], stored: Any) -> None:
        where = "/".join(self.ns.parts)
        if not isinstance(stored, dict) or stored.get("type") != kind:
            held = stored.get("type") if isinstance(stored, dict) else stored
            raise StructureMismatchError(f"{where!r} holds {held!r}, not an {kind}")
        differ = [
            f"{name}={stored.get(name)!r} (asked for {value!r})"
            for name, value in asked.items()
            if value is not None and stored.get(name) != value
        ]
        if differ:
            raise StructureMismatchError(
                f"{where!r} holds an {kind} with "
                + ", ".join(differ)
                + ": open it without those arguments to use its own"
            )


def open_log(
    storage: Storage | None,
    kind: str,
    asked: dict[str, int | None],
    defaults: dict[str, int],
    initial: Iterable[Any] = (),
) -> tuple[ItemLog, dict[str, int], str]:
    """The log of a new structure of ``kind``: in memory when ``storage`` is None,
    else in the storage's namespace (created there or reopened). Return the log,
    the parameters in force, and where it lives (for reprs).

    ``initial`` items are appended when the structure is created, with its creation.

    :raises TypeError: if ``storage`` is not an everstore Storage
    :raises StructureMismatchError: see :meth:`StoredLog.claim`
    :raises StructureExistsError: if ``initial`` holds items and the storage
        already holds the structure
    """
    context = caller_context()
    items = list(initial)
    if storage is None:
        memory = MemoryLog()
        if items:
            memory.extend(items, context)
        return memory, {k: defaults[k] if v is None else v for k, v in asked.items()}, "memory"
    if not isinstance(storage, Storage):
        raise TypeError(
            f"storage= takes an everstore Storage (store.storage(...)), got {storage!r}"
        )
    log = StoredLog(storage.__store__, storage.__ns__)
    log.claim(kind, asked, defaults, items, context)
    parameters = log.parameters()
    return log, {k: parameters[k] for k in asked}, "/".join(log.ns.parts)
