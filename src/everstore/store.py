"""The Store: an in-memory view of the log, kept current, with transactions.

One :class:`Namespace` object per namespace holds the current values (a dict look-up
away) and every field's history as parallel lists, ordered by seq, so that history,
``within`` and ``as_of`` are binary searches. Namespaces are loaded on first touch;
opening a store reads no facts.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import operator
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, overload

from .backends.base import Backend, Expectation
from .backends.memory import Memory
from .codec import Codec, default_codec
from .errors import (
    DecodeError,
    InvalidNameError,
    MissingFieldError,
    MutableAccessError,
    ReservedNameError,
    StoreClosedError,
    UnsupportedValueError,
)
from .log import Fact, Value, Write

if TYPE_CHECKING:
    from .storage import Storage
    from .temporal import StoreView

__all__ = ["Change", "History", "Namespace", "Store", "Subscription", "Transaction"]

# tuple.__new__ builds a NamedTuple without the Python-level __new__ frame.
_as_value = functools.partial(tuple.__new__, Value)
_clock = time.time  # one global look-up on the write path instead of two
_as_write = functools.partial(tuple.__new__, Write)
_seq_of = operator.itemgetter(4)  # Value.seq, as a C-level key for bisect
_time_of = operator.itemgetter(0)  # Value.time
MISSING: Any = object()
#: a change token equal to no backend's: the next read re-reads the log's tail
_STALE: Any = object()
TOMBSTONE: Any = object()
#: types whose values are immutable and need no private copy in the cache
_IMMUTABLE_SCALARS: frozenset[type] = frozenset({int, str, float, bool, type(None)})
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
#: larger than any seq: "no upper bound"
END_OF_LOG = 2**63


class Raw:
    """Encoded data of a mutable (or delta) fact, rebuilt only when asked for."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return "<encoded>"


#: A history entry as the cache keeps it: a plain tuple laid out as Value. CPython's
#: collector stops tracking an exact tuple of atomic values but never a NamedTuple,
#: and full collections rescanning a million Values cost more than the write itself.
Entry = tuple[float, bool, Any, str, int]
_UNAVAILABLE: Final = 1
_DATA: Final = 2
_SEQ: Final = 4


class FieldLog:
    """The history of one field: its entries in seq order."""

    __slots__ = ("_public", "by_value", "entries", "raw_count")

    def __init__(self) -> None:
        # One list, searched by seq or time with a key: parallel lists of seqs and
        # times would cost two more appends per write.
        self.entries: list[Entry] = []
        #: the entries as Values, made on the first history read and extended after
        self._public: list[Value] = []
        #: how many entries hold encoded containers (to rebuild on reading)
        self.raw_count = 0
        #: value -> positions holding it; built on the first ``within`` that needs it
        self.by_value: dict[Any, list[int]] | None = None

    def index(self, entry: Entry, position: int) -> None:
        """Keep the value index (once built) current for a new entry. Idempotent: the
        entry is indexed before it is appended, so an interrupt cannot leave it out."""
        data = entry[_DATA]
        if self.by_value is not None and not entry[_UNAVAILABLE] and type(data) is not Raw:
            with contextlib.suppress(TypeError):  # unhashable values are searched by scan
                positions = self.by_value.setdefault(data, [])
                if not positions or positions[-1] != position:
                    positions.append(position)

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

    def seq(self, position: int) -> int:
        """Seq of entry ``position``."""
        return self.entries[position][_SEQ]

    def unavailable(self, position: int) -> bool:
        """True if entry ``position`` is a tombstone."""
        return self.entries[position][_UNAVAILABLE]

    def public(self, length: int) -> list[Value]:
        """A list whose first ``length`` items are the entries as Values (containers
        still encoded). It may be longer, and grows: read it with a bound.

        Amortized O(1) per entry: entries never change, so the Values made for one
        history read serve every later one. Call it under the store's lock.
        """
        public = self._public
        if len(public) < length:
            public.extend(map(_as_value, self.entries[len(public) : length]))
        return public


class Namespace:
    """Everything the store knows about one namespace. One object per namespace."""

    __slots__ = ("current", "fields", "in_txn", "loaded_upto", "mutable", "parts", "path", "store")

    def __init__(self, store: Store, parts: tuple[str, ...], path: str) -> None:
        self.store = store
        self.parts = parts
        self.path = path
        #: field -> current immutable value (the fast read path)
        self.current: dict[str, Any] = {}
        #: field -> current mutable value (private; handed out as copies only)
        self.mutable: dict[str, Any] = {}
        self.fields: dict[str, FieldLog] = {}
        self.loaded_upto = 0
        #: how many open transactions hold pending state for this namespace
        self.in_txn = 0

    def available(self, field: str) -> bool:
        return field in self.current or field in self.mutable

    def field_names(self) -> list[str]:
        """Available fields, in the order they were first written."""
        return [name for name in self.fields if name in self.current or name in self.mutable]

    def __repr__(self) -> str:
        return f"Namespace{self.parts!r}"


class _Work:
    """A mutable value handed out inside a transaction, and what it was."""

    __slots__ = ("base_seq", "obj", "recorded")

    def __init__(self, obj: Any, recorded: bytes, base_seq: int | None) -> None:
        self.obj = obj
        self.recorded = recorded
        self.base_seq = base_seq


_Item = tuple[Namespace, str, "bytes | None", str, Any]


class Transaction:
    """The writes of one thread between the outermost ``with`` enter and exit.

    Nothing reaches the backend before the outermost exit; then every write, and
    every changed mutable value, is committed in one atomic append.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.depth = 0
        self.items: list[_Item] = []
        self.overlay: dict[tuple[Namespace, str], Any] = {}
        self.work: dict[tuple[Namespace, str], _Work] = {}
        self.touched: set[Namespace] = set()
        self.savepoints: list[tuple[int, dict[tuple[Namespace, str], Any], dict[Any, bytes]]] = []
        #: (namespace path, field) -> the seq the field must still be at on commit
        self.expect: dict[tuple[str, str], int] = {}

    def touch(self, ns: Namespace) -> None:
        if ns not in self.touched:
            self.touched.add(ns)
            ns.in_txn += 1

    def record(
        self, ns: Namespace, field: str, data: bytes | None, context: str, value: Any, hint: Any
    ) -> None:
        """Keep one write; ``hint`` is ``value`` if immutable, else MISSING."""
        self.touch(ns)
        key = (ns, field)
        self.items.append((ns, field, data, context, hint))
        if data is None:
            self.overlay[key] = TOMBSTONE
            self.work.pop(key, None)
        elif hint is MISSING:
            # The caller's own object: later in-place changes in the block are kept.
            self.overlay.pop(key, None)
            self.work[key] = _Work(value, data, None)
        else:
            self.overlay[key] = value
            self.work.pop(key, None)

    def savepoint(self) -> None:
        codec = self.store.codec
        snapshot = {key: codec.encode(work.obj) for key, work in self.work.items()}
        self.savepoints.append((len(self.items), dict(self.overlay), snapshot))

    def rollback_to_savepoint(self) -> None:
        count, overlay, snapshot = self.savepoints.pop()
        codec = self.store.codec
        del self.items[count:]
        self.overlay = overlay
        for key in list(self.work):
            if key not in snapshot:
                del self.work[key]
            else:
                self.work[key].obj = codec.decode(snapshot[key])

    def release(self) -> None:
        for ns in self.touched:
            ns.in_txn -= 1
        self.touched.clear()


class _Scope:
    """Context manager that enters (or joins) the calling thread's transaction."""

    __slots__ = ("_result", "_store")

    def __init__(self, store: Store, result: Any = None) -> None:
        self._store = store
        self._result = result

    def __enter__(self) -> Any:
        txn = self._store._begin()
        return self._result if self._result is not None else txn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._store._end(kind is not None, sys._getframe(1))


#: (id of a code object, instruction offset) -> "module.function:line". Keyed by id
#: because hashing a code object costs more than the rest of the look-up; the code
#: objects are kept alive in _context_codes, so an id is never reused.
_contexts: dict[tuple[int, int], str] = {}
_context_codes: dict[int, CodeType] = {}
_internal_code: dict[CodeType, bool] = {}


def _is_internal(frame: Any) -> bool:
    code = frame.f_code
    internal = _internal_code.get(code)
    if internal is None:
        module = frame.f_globals.get("__name__", "")
        internal = module.startswith("everstore.") and module not in ("everstore.cli",)
        _internal_code[code] = internal
    return internal


def frame_context(frame: Any) -> str:
    """``module.function:line`` of ``frame``, skipping everstore's own frames."""
    text = _contexts.get((id(frame.f_code), frame.f_lasti))
    if text is not None:
        return text
    while frame is not None and _is_internal(frame):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    module = frame.f_globals.get("__name__", "?")
    text = f"{module}.{frame.f_code.co_name}:{frame.f_lineno}"
    # Only locations outside everstore are cached: an internal frame's answer
    # depends on its caller.
    _context_codes[id(frame.f_code)] = frame.f_code
    _contexts[(id(frame.f_code), frame.f_lasti)] = text
    return text


def caller_context() -> str:
    """The code location of whoever called the everstore function calling this."""
    return frame_context(sys._getframe(2))


class _ThreadState(threading.local):
    """Per-thread state of a Store: the open transaction, if any."""

    txn: Transaction | None = None


class Store:
    """Namespaced, versioned storage over one backend.

    ``Store()`` keeps everything in memory; ``Store(Sqlite3(path))`` is the embedded
    default; see :func:`everstore.open` for URLs. A Store is thread-safe and may be
    shared by threads; processes share a database, each with its own Store.

    >>> store = Store()
    >>> player = store.storage("game", "player1")
    >>> player.score = 100
    >>> player.score
    100
    """

    def __init__(self, backend: Backend | None = None, *, codec: Codec | None = None) -> None:
        self.backend: Backend = backend if backend is not None else Memory()
        self.codec: Codec = codec if codec is not None else default_codec
        #: ints may be encoded inline (a subclass of Codec might encode them otherwise)
        self._plain_ints = type(self.codec) is Codec
        self._lock = threading.RLock()
        self._local = _ThreadState()
        #: transactions open in any thread (when 0, no thread-local look-up is needed)
        self._open_txns = 0
        self._namespaces: dict[tuple[str, ...], Namespace] = {}
        self._by_path: dict[str, Namespace] = {}
        self._closed = False
        self.backend.open()
        self._token_fn = self.backend.token_reader()
        self._token = self._token_fn()
        self._applied = self.backend.last_seq()

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the backend. Everything written was already committed. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                # Reads of loaded namespaces keep working from memory; the backend's
                # change probe may not outlive it.
                token = self._token
                self._token_fn = lambda: token
                self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.backend!r})"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Store cannot be pickled: it holds connections, locks and a cache; pass "
            "its URL or path to the other process and open the store there"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this Store is closed")

    # -- namespaces -----------------------------------------------------------------

    def storage(self, *namespace: str, virtual: dict[str, Any] | None = None) -> Storage:
        """A handle on one namespace (loaded on first touch, then kept in memory).

        Complexity: O(1) once loaded; the first touch reads that namespace's facts.
        """
        from .storage import Storage

        return Storage(*namespace, store=self, virtual=virtual)

    def namespace(self, parts: tuple[str, ...]) -> Namespace:
        """The one Namespace object for ``parts``, loading it on first touch."""
        ns = self._namespaces.get(parts)
        if ns is not None:
            return ns
        path = namespace_path(parts)
        with self._lock:
            ns = self._namespaces.get(parts)
            if ns is None:
                self._check_open()
                ns = Namespace(self, parts, path)
                high, facts = self.backend.load_namespace(path)
                for fact in facts:
                    self._apply(
                        ns, fact.seq, fact.time, fact.field, fact.data, fact.context, MISSING
                    )
                ns.loaded_upto = high
                self._by_path[path] = ns
                self._namespaces[parts] = ns
        return ns

    def namespaces(self, prefix: Sequence[str] = ()) -> list[tuple[str, ...]]:
        """Namespaces that hold at least one fact, equal to or under ``prefix``, sorted.

        >>> store = Store()
        >>> store.storage("game", "p1").x = 1
        >>> store.storage("game", "p2").x = 1
        >>> store.namespaces(("game",))
        [('game', 'p1'), ('game', 'p2')]
        """
        self._check_open()
        if isinstance(prefix, str):
            raise TypeError(
                f"namespaces() takes the prefix as a tuple of parts, like ({prefix!r},), "
                f"not the str {prefix!r}"
            )
        prefix_path = namespace_path(tuple(prefix)) if prefix else ""
        return [tuple(path.split("/")) for path in self.backend.namespaces(prefix_path)]

    # -- time travel --------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the latest fact this store has seen."""
        self.sync()
        return self._applied

    def as_of(self, *, seq: int | None = None, time: float | None = None) -> StoreView:
        """A read-only view of the whole store as it was at ``seq`` or ``time``.

        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> doc.v = 1
        >>> past = store.last_seq
        >>> doc.v = 2
        >>> store.as_of(seq=past).storage("doc").v
        1
        """
        from .temporal import StoreView

        if (seq is None) == (time is None):
            raise TypeError("as_of() needs exactly one of seq= or time=")
        self.sync()
        if time is not None:
            if not isinstance(time, int | float):
                raise TypeError(f"as_of(time=...) needs a number of seconds, got {time!r}")
            seq = self.backend.seq_at_time(float(time))
        assert seq is not None
        if not isinstance(seq, int) or seq < 0:
            raise ValueError(f"as_of(seq=...) needs a non-negative int, got {seq!r}")
        return StoreView(self, seq)

    # -- transactions ---------------------------------------------------------------

    def transaction(self) -> _Scope:
        """``with store.transaction():`` commits every write inside atomically, in one
        round trip, at the outermost exit, or none of them if the block raises.

        Inside, mutable values may be read and changed in place. Nested blocks join
        the outer one; an exception leaving an inner block undoes that block's writes.
        """
        return _Scope(self)

    def _current_txn(self) -> Transaction | None:
        return self._local.txn

    def _begin(self) -> Transaction:
        self._check_open()
        txn = self._current_txn()
        if txn is None:
            txn = Transaction(self)
            with self._lock:
                self._open_txns += 1
            self._local.txn = txn
        elif txn.depth:
            txn.savepoint()
        txn.depth += 1
        return txn

    def _end(self, failed: bool, frame: Any) -> None:
        # Not _current_txn(): a Ctrl-C as that call starts would leave the thread's
        # transaction open for ever, swallowing every later write of the thread.
        txn = self._local.txn
        assert txn is not None
        txn.depth -= 1
        if txn.depth:
            if failed:
                txn.rollback_to_savepoint()
            else:
                txn.savepoints.pop()
            return
        self._local.txn = None
        with self._lock:
            self._open_txns -= 1
        try:
            if not failed:
                self._commit_transaction(txn, frame_context(frame))
        finally:
            txn.release()

    def _commit_transaction(self, txn: Transaction, context: str) -> None:
        items = txn.items
        codec = self.codec
        for (ns, field), work in txn.work.items():
            try:
                if work.base_seq is None:  # the caller's own new object: stored whole
                    data: bytes | None = codec.encode(work.obj)
                    if data == work.recorded:
                        continue
                else:
                    data = codec.encode_change(work.base_seq, work.recorded, work.obj)
            except UnsupportedValueError as exc:
                raise UnsupportedValueError(f"{_where(ns, field)}: {exc}") from None
            if data is not None:
                items.append((ns, field, data, context, MISSING))
        if items:
            self._commit(items, [(path, field, seq) for (path, field), seq in txn.expect.items()])

    # -- optimistic concurrency -------------------------------------------------------

    def field_seq(self, storage: Storage, field: str) -> int:
        """The seq of ``field``'s latest fact (0 if it was never written). O(1).

        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> store.field_seq(doc, "title")
        0
        >>> doc.title = "a"
        >>> store.field_seq(doc, "title") == store.last_seq
        True
        """
        self.sync()
        log = storage.__ns__.fields.get(field)
        return log.entries[-1][_SEQ] if log is not None and log.entries else 0

    def expect(self, storage: Storage, field: str, seq: int) -> None:
        """Inside a transaction: commit only if ``field`` is still at ``seq`` then.

        If another writer changed the field first, the whole transaction is refused
        with :class:`ConflictError` and nothing of it is written.
        """
        txn = self._local.txn
        if txn is None:
            raise RuntimeError("expect() belongs inside 'with store.transaction():'")
        if not isinstance(seq, int) or seq < 0:
            raise ValueError(f"expect() needs a seq (an int >= 0), got {seq!r}")
        txn.expect[(storage.__ns__.path, check_field(field))] = seq

    def compare_and_set(self, storage: Storage, field: str, value: Any, *, seq: int) -> int:
        """Set ``field`` to ``value`` only if its latest fact is still ``seq``
        (0: never written); return the new seq, or raise :class:`ConflictError`.

        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> first = store.compare_and_set(doc, "owner", "ann", seq=0)
        >>> store.compare_and_set(doc, "owner", "bob", seq=0)
        Traceback (most recent call last):
        ...
        everstore.errors.ConflictError: field 'owner' of namespace 'doc' is at seq 1, not 0: ...
        """
        context = caller_context()
        with self.transaction():
            self.expect(storage, field, seq)
            self.write(storage.__ns__, check_field(field), value, context)
        return self.field_seq(storage, field)

    # -- the change feed ----------------------------------------------------------

    def follow(
        self, since: int = 0, *, timeout: float | None = None, batch: int = 1000
    ) -> Iterator[Change]:
        """Yield every fact with a seq above ``since``, in seq order, each once;
        when caught up, wait for new ones, and stop after ``timeout`` seconds
        without one (None: never stop).

        A follower that keeps the seq of the last change it handled and restarts
        from it misses nothing and sees nothing twice.

        >>> store = Store()
        >>> store.storage("doc").title = "a"
        >>> [(c.namespace, c.field, c.data) for c in store.follow(timeout=0)]
        [(('doc',), 'title', 'a')]
        """
        _check_follow_arguments(since, timeout, batch)
        return self._follow(since, timeout, batch)

    def _follow(self, cursor: int, timeout: float | None, batch: int) -> Iterator[Change]:
        backend = self.backend
        while True:
            self._check_open()
            token = backend.change_token()
            facts = backend.facts_since(cursor, batch)
            if facts:
                for fact in facts:
                    yield self._change(fact)
                    cursor = fact.seq
                continue
            if not self._wait_for_change(token, timeout):
                return

    def _wait_for_change(self, token: Any, timeout: float | None) -> bool:
        """The backend's wait, in slices, so that close() ends a waiting follower
        (with StoreClosedError) within a slice even when it waits for ever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _FOLLOW_SLICE if deadline is None else deadline - time.monotonic()
            if self.backend.wait_for_change(token, max(0.0, min(left, _FOLLOW_SLICE))):
                return True
            self._check_open()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def subscribe(
        self, callback: Callable[[Change], object], *, since: int | None = None
    ) -> Subscription:
        """Call ``callback(change)`` from a background thread for every new fact
        (after ``since``; by default from now on). Returns a :class:`Subscription`
        to stop it; an exception in the callback stops it and is re-raised by
        :meth:`Subscription.close`."""
        start = self.last_seq if since is None else since
        return Subscription(self, callback, start)

    def _change(self, fact: Fact) -> Change:
        parts = tuple(fact.namespace.split("/"))
        data = fact.data
        if data is None:
            value = None
        elif self.codec.is_delta(data):  # rebuild from the namespace's history
            ns = self.namespace(parts)
            self.sync()
            log = ns.fields[fact.field]
            value = self.value_at(log, log.index_at(fact.seq))
        else:
            value = self.codec.decode(data)
        return Change(fact.seq, fact.time, parts, fact.field, data is None, value, fact.context)

    # -- writing ------------------------------------------------------------------

    def write(self, ns: Namespace, field: str, value: Any, context: str) -> None:
        """Append ``field = value`` (or a tombstone for TOMBSTONE) to ``ns``.

        Outside a transaction the fact is committed before this returns.
        """
        if type(value) is int and self._plain_ints and _INT64_MIN <= value <= _UINT64_MAX:
            # The commonest write, encoded here as the default codec would (JSON).
            data: bytes | None = b"%d" % value
            hint = value
        elif value is TOMBSTONE:
            data = None
            hint = MISSING
            if not self._visible(ns, field):
                raise MissingFieldError(f"{_where(ns, field)} cannot be deleted: it has no value")
        else:
            try:
                data = self.codec.encode(value)
            except UnsupportedValueError as exc:
                raise UnsupportedValueError(f"{_where(ns, field)}: {exc}") from None
            # The cache keeps a private copy of a mutable value, decoded from the bytes.
            if type(value) in _IMMUTABLE_SCALARS or not self.codec.is_mutable(value):
                hint = value
            else:
                hint = MISSING
        # Most writes happen with no transaction open anywhere: then the thread-local
        # look-up is skipped.
        txn = self._local.txn if self._open_txns else None
        if txn is not None:
            txn.record(ns, field, data, context, value, hint)
            return
        # ``with``, not acquire() then try: Ctrl-C can come right after acquire()
        # returns, before the try, and would leave the lock held for ever.
        with self._lock:
            try:
                if self._closed:
                    raise StoreClosedError("this Store is closed")
                token = self._token
                current = self._token_fn() == token
                seq, when = self.backend.append_one(ns.path, field, data, context, _clock())
                if seq != self._applied + 1:
                    self._catch_up_locked()  # others wrote in between: read theirs and ours
                    return
                log = ns.fields.get(field)
                if hint is MISSING or log is None or log.by_value is not None:
                    self._apply(ns, seq, when, field, data, context, hint)
                else:
                    # _apply's hot path, inlined: an immutable value to a known field.
                    log.entries.append((when, False, hint, context, seq))
                    ns.current[field] = hint
                    if field in ns.mutable:
                        del ns.mutable[field]
                self._applied = seq
                if current:
                    self._settle_token(token, 1)
            except BaseException:
                # Ctrl-C (or any error) between the commit and the cache update: the next
                # read re-reads the log's tail, so the view never misses a committed fact.
                self._token = _STALE
                raise

    def _settle_token(self, before: Any, count: int) -> None:
        """After our own commit of ``count`` facts, on a token that was current: keep
        the cache marked current when the backend proves nobody else committed, so
        the next read needs no round trip."""
        after = self.backend.token_after_commit(before, count)
        if after is not None:
            self._token = after

    def _visible(self, ns: Namespace, field: str) -> bool:
        txn = self._current_txn()
        if txn is not None:
            key = (ns, field)
            if key in txn.work:
                return True
            pending = txn.overlay.get(key, MISSING)
            if pending is not MISSING:
                return pending is not TOMBSTONE
        self.sync()
        return ns.available(field)

    def _commit(self, items: list[_Item], expect: Sequence[Expectation] = ()) -> None:
        """Commit ``items``: (namespace, field, data, context, hint), where ``hint`` is
        the written value when it is immutable and MISSING otherwise."""
        now = _clock()
        writes = [
            _as_write((ns.path, field, data, context, now)) for ns, field, data, context, _ in items
        ]
        with self._lock:
            self._check_open()
            token = self._token
            current = self._token_fn() == token
            try:
                assigned = self.backend.append(writes, expect)
                first = assigned[0][0]
                if first == self._applied + 1 and assigned[-1][0] == first + len(assigned) - 1:
                    # Nobody else committed in between: apply ours without a round trip.
                    apply = self._apply
                    for (ns, field, data, context, hint), (seq, when) in zip(
                        items, assigned, strict=True
                    ):
                        apply(ns, seq, when, field, data, context, hint)
                    self._applied = assigned[-1][0]
                    if current:
                        self._settle_token(token, len(assigned))
                else:
                    self._catch_up_locked()
            except BaseException:
                self._token = _STALE  # see write(): the next read re-reads the tail
                raise

    # -- keeping current ------------------------------------------------------------

    def sync(self) -> None:
        """Apply facts other writers committed since we last looked. Cheap if none."""
        if self._token_fn() != self._token:
            with self._lock:
                self._catch_up_locked()

    def _catch_up_locked(self) -> None:
        self._check_open()
        token = self._token_fn()
        facts = self.backend.facts_since(self._applied)
        self._apply_facts(facts)
        self._token = token

    def _apply_facts(self, facts: list[Fact]) -> None:
        by_path = self._by_path
        for fact in facts:
            ns = by_path.get(fact.namespace)
            if ns is not None and fact.seq > ns.loaded_upto:
                log = ns.fields.get(fact.field)
                # A fact applied before an interrupt cut a batch short is not applied twice.
                if log is None or not log.entries or log.entries[-1][_SEQ] < fact.seq:
                    self._apply(
                        ns, fact.seq, fact.time, fact.field, fact.data, fact.context, MISSING
                    )
                else:
                    # Its entry is in place, its value may not be: an interrupt came in
                    # between (see _apply).
                    self._refresh_value(ns, fact.field, log)
            # Advanced fact by fact, after the fact: an interrupt loses nothing.
            if fact.seq > self._applied:
                self._applied = fact.seq

    def _refresh_value(self, ns: Namespace, field: str, log: FieldLog) -> None:
        """Set the cached value of ``field`` from its latest entry."""
        latest = log.entries[-1]
        if latest[_UNAVAILABLE]:
            ns.current.pop(field, None)
            ns.mutable.pop(field, None)
        elif type(latest[_DATA]) is Raw:
            ns.mutable[field] = self.value_at(log, len(log.entries) - 1)
            ns.current.pop(field, None)
        else:
            ns.current[field] = latest[_DATA]
            ns.mutable.pop(field, None)

    def _apply(
        self,
        ns: Namespace,
        seq: int,
        when: float,
        field: str,
        data: bytes | None,
        context: str,
        hint: Any,
    ) -> None:
        """Add one committed fact to a loaded namespace. ``hint`` is the decoded value
        when the caller already holds it (an immutable value it just wrote)."""
        log = ns.fields.get(field)
        if log is None:
            log = ns.fields[field] = FieldLog()
        entry: Entry
        if hint is not MISSING:  # the hot path: our own write of an immutable value
            entry = (when, False, hint, context, seq)
            ns.current[field] = hint
            if field in ns.mutable:
                del ns.mutable[field]
            if log.by_value is not None:
                log.index(entry, len(log.entries))
            log.entries.append(entry)
            return
        if data is None:
            entry = (when, True, None, context, seq)
            ns.current.pop(field, None)
            ns.mutable.pop(field, None)
        elif self.codec.is_delta(data):
            # The entry first, then the value changed in place: after an interrupt,
            # catch-up applies a fact with no entry again, and rebuilds the value of
            # one whose entry is in place (see _apply_facts), never applies it twice.
            entry = (when, False, Raw(data), context, seq)
            log.raw_count += 1
            log.entries.append(entry)
            ns.mutable[field] = self._apply_delta(ns, log, field, data)
            ns.current.pop(field, None)
            return
        else:
            value = self.codec.decode(data)
            if self.codec.is_mutable(value):
                entry = (when, False, Raw(data), context, seq)
                ns.mutable[field] = value
                ns.current.pop(field, None)
            else:
                entry = (when, False, value, context, seq)
                ns.current[field] = value
                ns.mutable.pop(field, None)
        # Counted first: an interrupt must not leave an encoded entry uncounted (its
        # history would show it undecoded); one counted twice costs only speed.
        if type(entry[_DATA]) is Raw:
            log.raw_count += 1
        if log.by_value is not None:
            log.index(entry, len(log.entries))
        log.entries.append(entry)

    # A delta applies to the field's *previous* value when that value is a container
    # of the delta's type, and only otherwise to the value at the seq it was made
    # from. So when two writers change one list, dict or set at once, both changes
    # survive (appends add up, keys merge), in every process, as the log orders them.

    def _apply_delta(self, ns: Namespace, log: FieldLog, field: str, data: bytes) -> Any:
        # The private current value is changed in place when the delta fits it.
        previous = ns.mutable.get(field, Codec.NO_VALUE)
        return self.codec.decode_fact(data, previous, functools.partial(self._value_at_seq, log))

    def _value_at_seq(self, log: FieldLog, seq: int) -> Any:
        position = log.index_at(seq)
        if position < 0 or log.seq(position) != seq:
            raise DecodeError(f"a stored delta refers to missing seq {seq}")
        return self.value_at(log, position)

    def value_at(self, log: FieldLog, position: int, previous: Any = MISSING) -> Any:
        """The value of entry ``position``, as a fresh object for mutable values.

        ``previous`` may hold a private copy of entry ``position - 1``'s value (the
        caller's running value when it walks a history in order).
        """
        entries = log.entries
        data = entries[position][_DATA]
        if type(data) is not Raw:
            return data
        codec = self.codec
        if not codec.is_delta(data.data):
            return codec.decode(data.data)
        if previous is MISSING:
            start = position
            while start > 0 and self._is_delta(entries[start]):
                start -= 1
            value = self._full_value(log, start)
        else:
            start = position - 1
            value = previous
        for index in range(start + 1, position + 1):
            delta: bytes = entries[index][_DATA].data
            value = codec.decode_fact(delta, value, functools.partial(self._value_at_seq, log))
        return value

    def _is_delta(self, entry: Entry) -> bool:
        data = entry[_DATA]
        return type(data) is Raw and self.codec.is_delta(data.data)

    def _full_value(self, log: FieldLog, position: int) -> Any:
        data = log.entries[position][_DATA]
        if type(data) is not Raw:
            return data  # an immutable value, or None for a tombstone
        raw: bytes = data.data
        if self.codec.is_delta(raw):  # a field's first entry cannot be a delta: damaged
            seq = log.seq(position)
            raise DecodeError(f"a stored delta at seq {seq} has no value before it")
        return self.codec.decode(raw)

    # -- reading (the slow path: the fast one lives in Storage.__getattr__) --------

    def read(self, ns: Namespace, field: str) -> Any:
        """The value of ``field`` as the calling thread should see it."""
        txn = self._current_txn()
        if txn is not None:
            key = (ns, field)
            work = txn.work.get(key)
            if work is not None:
                return work.obj
            pending = txn.overlay.get(key, MISSING)
            if pending is TOMBSTONE:
                raise MissingFieldError(f"{_where(ns, field)} was deleted in this transaction")
            if pending is not MISSING:
                return pending
        value = ns.current.get(field, MISSING)
        if value is not MISSING:
            return value
        mutable = ns.mutable.get(field, MISSING)
        if mutable is MISSING:
            raise MissingFieldError(_missing_message(ns, field))
        if txn is None:
            raise MutableAccessError(
                f"{_where(ns, field)} holds a mutable {type(mutable).__name__}: read it inside "
                f"'with storage:' (or store.transaction()) so that changes are saved"
            )
        with self._lock:
            recorded = self.codec.encode(ns.mutable[field])
            base_seq = ns.fields[field].entries[-1][_SEQ]
        work = _Work(self.codec.decode(recorded), recorded, base_seq)
        txn.work[(ns, field)] = work
        txn.touch(ns)
        return work.obj

    def field_names(self, ns: Namespace) -> list[str]:
        """The fields of ``ns`` the calling thread sees, in first-write order."""
        self.sync()
        txn = self._current_txn()
        if txn is None or ns not in txn.touched:
            return ns.field_names()
        shown = {name: ns.available(name) for name in ns.fields}
        for item_ns, field, data, _, _ in txn.items:
            if item_ns is ns:
                shown[field] = data is not None
        return [name for name, visible in shown.items() if visible]

    def history(self, ns: Namespace, field: str, upto: int = END_OF_LOG) -> History:
        self.sync()
        log = ns.fields.get(field)
        if log is None:
            raise MissingFieldError(f"{_where(ns, field)} has no history")
        return History(self, log, log.index_at(upto) + 1)


class Change(NamedTuple):
    """One fact of the change feed, with its value decoded."""

    seq: int
    time: float
    namespace: tuple[str, ...]
    field: str
    unavailable: bool
    data: Any
    context: str


class Subscription:
    """A background follower calling a function for each change (see Store.subscribe)."""

    def __init__(self, store: Store, callback: Callable[[Change], object], since: int) -> None:
        self.last_seq = since
        self._store = store
        self._callback = callback
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="everstore-subscription", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for change in self._store.follow(self.last_seq, timeout=0.05):
                    self._callback(change)
                    self.last_seq = change.seq
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # handed to close(), which re-raises it
            if not self._stop.is_set():
                self._error = exc

    @property
    def running(self) -> bool:
        """True until the subscription is closed or its callback raised."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the subscription stops (closed, or its callback raised);
        True if it stopped within ``timeout`` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop, wait for the thread, and re-raise the callback's error, if any."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class History(Sequence[Value]):
    """A field's history: an immutable, seq-ordered sequence of :class:`Value`.

    Indexing and slicing are O(1) (plus rebuilding a container value); :meth:`at`
    finds the entry in force at a seq or time in O(log n).
    """

    __slots__ = ("_length", "_log", "_store")

    def __init__(self, store: Store, log: FieldLog, length: int) -> None:
        self._store = store
        self._log = log
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
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("history index out of range")
        return self._entry(index)

    def _entry(self, position: int) -> Value:
        entry = _as_value(self._log.entries[position])
        if type(entry.data) is Raw:
            return entry._replace(data=self._store.value_at(self._log, position))
        return entry

    def __iter__(self) -> Iterator[Value]:
        # Walks in order with a running value, so a long chain of deltas is rebuilt
        # once, not once per entry.
        log = self._log
        with self._store._lock:
            public = log.public(self._length)
        if not log.raw_count:  # nothing to rebuild: the entries themselves
            return itertools.islice(public, self._length)
        return self._rebuilding_iter(public)

    def _rebuilding_iter(self, public: list[Value]) -> Iterator[Value]:
        log = self._log
        store = self._store
        running: Any = MISSING
        for position, entry in enumerate(itertools.islice(public, self._length)):
            if type(entry.data) is not Raw:
                running = MISSING
                yield entry
                continue
            value = store.value_at(log, position, running)
            running = store.codec.copy(value) if store.codec.is_mutable(value) else MISSING
            yield entry._replace(data=value)

    def at(self, *, seq: int | None = None, time: float | None = None) -> Value | None:
        """The entry in force at ``seq`` or ``time`` (None before the first)."""
        if (seq is None) == (time is None):
            raise TypeError("at() needs exactly one of seq= or time=")
        if seq is not None:
            position = self._log.index_at(seq)
        else:
            assert time is not None
            entries = self._log.entries
            position = bisect.bisect_right(entries, time, 0, self._length, key=_time_of) - 1
        position = min(position, self._length - 1)
        return None if position < 0 else self._entry(position)

    def __repr__(self) -> str:
        shown = ", ".join(repr(v) for v in self[-3:])
        more = "…, " if self._length > 3 else ""
        return f"History([{more}{shown}])"


_NAMESPACE_FORBIDDEN = frozenset("/\x00")


def namespace_path(parts: tuple[str, ...]) -> str:
    """``("game", "p1")`` -> ``"game/p1"``, refusing parts that would be ambiguous."""
    if not parts:
        raise InvalidNameError("a namespace needs at least one part")
    for part in parts:
        if type(part) is not str:
            raise InvalidNameError(f"namespace parts must be str, got {part!r} in {parts!r}")
        if not part or not _NAMESPACE_FORBIDDEN.isdisjoint(part) or not part.isprintable():
            raise InvalidNameError(
                f"namespace part {part!r} in {parts!r} must be non-empty printable text without '/'"
            )
    return "/".join(parts)


def check_field(field: object) -> str:
    """``field`` if it is a field name (an identifier, not a dunder), else an error."""
    if type(field) is not str or not field.isidentifier():
        raise InvalidNameError(f"field names must be identifiers, got {field!r}")
    if field.startswith("__") and field.endswith("__"):
        raise ReservedNameError(f"{field!r}: dunder names are reserved for everstore and Python")
    return field


#: how long a follower waits at most before it checks that its Store is still open
_FOLLOW_SLICE = 0.25


def _check_follow_arguments(since: object, timeout: object, batch: object) -> None:
    if type(since) is not int or since < 0:
        raise TypeError(f"follow(since=...) needs a seq, an int >= 0, got {since!r}")
    if timeout is not None and (
        type(timeout) not in (int, float) or not timeout >= 0  # type: ignore[operator]
    ):
        raise TypeError(f"follow(timeout=...) needs None or seconds >= 0, got {timeout!r}")
    if type(batch) is not int or batch < 1:
        raise TypeError(f"follow(batch=...) needs an int >= 1, got {batch!r}")


def _where(ns: Namespace, field: str) -> str:
    return f"field {field!r} of namespace {ns.parts!r}"


def _missing_message(ns: Namespace, field: str) -> str:
    log = ns.fields.get(field)
    if log is not None and log.entries and log.entries[-1][_UNAVAILABLE]:
        return f"{_where(ns, field)} was deleted (see its __history__())"
    return f"Storage{ns.parts!r} has no field {field!r}"
