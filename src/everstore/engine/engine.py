"""The Engine: an in-memory view of the log, kept current, with transactions.

One :class:`Namespace` object per namespace holds the current values (a dict look-up
away) and every field's history, ordered by seq, so that history, ``within`` and
``as_of`` are binary searches. Namespaces are loaded on first touch; opening reads no
facts. docs/engine.md documents this API for the layers built on it.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

from ..backends.base import Backend, Expectation
from ..backends.memory import Memory
from ..codec import Codec, default_codec
from ..errors import (
    MissingBlobError,
    MissingFieldError,
    MutableAccessError,
    StoreClosedError,
    UnsupportedValueError,
)
from ..log import Fact, Value, Write
from .contexts import caller_context
from .feed import Change, Subscription, check_follow_arguments, facts_after
from .fieldlog import MISSING, TOMBSTONE, UNAVAILABLE, Entry, FieldLog, Raw, as_value
from .history import History
from .names import check_field, describe_field, namespace_path
from .namespace import Namespace
from .transactions import Item, Scope, Transaction, Work

__all__ = ["END_OF_LOG", "AppliedFact", "Engine", "FactHook"]

#: a change token equal to no backend's: the next read re-reads the log's tail
_STALE: Any = object()
#: types whose values are immutable and need no private copy in the cache
_IMMUTABLE_SCALARS: frozenset[type] = frozenset({int, str, float, bool, type(None)})
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
#: tuple.__new__ builds a NamedTuple without the Python-level __new__ frame.
_as_write = functools.partial(tuple.__new__, Write)
#: larger than any seq: "no upper bound"
END_OF_LOG = 2**63


class AppliedFact(NamedTuple):
    """What a fact hook is told: a fact has just been applied to the cache.

    ``value`` is the field's new entry (its data rebuilt, None for a tombstone);
    ``loading`` is True for facts replayed when a namespace is first loaded.
    """

    namespace: Namespace
    field: str
    value: Value
    loading: bool


FactHook = Callable[[AppliedFact], None]


class _ThreadState(threading.local):
    """Per-thread state of an Engine: the open transaction, if any."""

    txn: Transaction | None = None


class Engine:
    """Namespaced, versioned storage over one backend: the engine API.

    :class:`everstore.Store` is an Engine with attribute access (``storage()``) and
    time travel (``as_of()``) on top; layers use the methods documented here.
    An Engine is thread-safe and may be shared by threads; processes share a
    database, each with its own Engine.

    :param backend: where the log lives (default: a new :class:`Memory`)
    :param codec: how values become bytes (default: :data:`default_codec`)
    :param clock: wall-clock seconds for new facts (default: ``time.time``); the
        backend keeps time from decreasing along the log whatever it returns
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.backend: Backend = backend if backend is not None else Memory()
        self.codec: Codec = codec if codec is not None else default_codec
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        #: ints may be encoded inline (a subclass of Codec might encode them otherwise)
        self._plain_ints = type(self.codec) is Codec
        self._lock = threading.RLock()
        self._local = _ThreadState()
        #: transactions open in any thread (when 0, no thread-local look-up is needed)
        self._open_txns = 0
        self._namespaces: dict[tuple[str, ...], Namespace] = {}
        self._by_path: dict[str, Namespace] = {}
        self._hooks: list[FactHook] = []
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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Store cannot be pickled: it holds connections, locks and a cache; pass "
            "its URL or path to the other process and open the store there"
        )

    def check_open(self) -> None:
        """:raises StoreClosedError: if this Engine is closed"""
        if self._closed:
            raise StoreClosedError("this Store is closed")

    # -- namespaces -----------------------------------------------------------------

    def namespace(self, parts: tuple[str, ...]) -> Namespace:
        """The one :class:`Namespace` handle for ``parts``, loading it on first touch.

        O(1) once loaded; the first touch reads that namespace's facts.

        :raises InvalidNameError: if ``parts`` is not a valid namespace
        :raises StoreClosedError: on first touch after :meth:`close`
        """
        ns = self._namespaces.get(parts)
        if ns is not None:
            return ns
        path = namespace_path(parts)
        with self._lock:
            ns = self._namespaces.get(parts)
            if ns is None:
                self.check_open()
                ns = Namespace(parts, path)
                high, facts = self.backend.load_namespace(path)
                for fact in facts:
                    self._apply(ns, fact.seq, fact.time, fact.field, fact.data, fact.context)
                    if self._hooks:
                        self._run_hooks(ns, fact.field, True)
                ns.loaded_upto = high
                self._by_path[path] = ns
                self._namespaces[parts] = ns
        return ns

    def namespaces(
        self, prefix: Sequence[str] = (), *, seq: int | None = None
    ) -> list[tuple[str, ...]]:
        """Namespaces that hold at least one fact (with a seq up to ``seq``, when
        given), equal to or under ``prefix``, sorted.

        >>> store = Engine()
        >>> store.write(store.namespace(("game", "p1")), "x", 1)
        >>> store.write(store.namespace(("game", "p2")), "x", 1)
        >>> store.namespaces(("game",))
        [('game', 'p1'), ('game', 'p2')]

        :raises TypeError: if ``prefix`` is a str rather than a tuple of parts
        """
        self.check_open()
        if isinstance(prefix, str):
            raise TypeError(
                f"namespaces() takes the prefix as a tuple of parts, like ({prefix!r},), "
                f"not the str {prefix!r}"
            )
        prefix_path = namespace_path(tuple(prefix)) if prefix else ""
        return [tuple(path.split("/")) for path in self.backend.namespaces(prefix_path, seq)]

    # -- positions in the log ---------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the latest fact this store has seen (after a sync)."""
        self.sync()
        return self._applied

    def seq_at_time(self, when: float) -> int:
        """The highest seq whose time is at or before ``when`` (0 if none).

        :raises TypeError: if ``when`` is not a number of seconds
        """
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise TypeError(f"a time needs a number of seconds, got {when!r}")
        self.check_open()
        return self.backend.seq_at_time(float(when))

    # -- transactions ---------------------------------------------------------------

    def transaction(self) -> Scope:
        """``with store.transaction():`` commits every write inside atomically, in one
        round trip, at the outermost exit, or none of them if the block raises.

        Inside, mutable values may be read and changed in place. Nested blocks join
        the outer one; an exception leaving an inner block undoes that block's writes.
        """
        return Scope(self)

    def in_transaction(self) -> bool:
        """True if the calling thread has a transaction open on this Engine."""
        return self._local.txn is not None

    def begin(self) -> Transaction:
        """Enter (or join, one level deeper) the calling thread's transaction; every
        :meth:`begin` needs one :meth:`end`. :meth:`transaction` does both.

        :raises StoreClosedError: if the Engine is closed
        """
        self.check_open()
        txn = self._local.txn
        if txn is None:
            txn = Transaction(self.codec)
            with self._lock:
                self._open_txns += 1
            self._local.txn = txn
        elif txn.depth:
            txn.savepoint()
        txn.depth += 1
        return txn

    def end(self, failed: bool, context: str | None = None) -> None:
        """Leave one level of the calling thread's transaction: an inner level that
        ``failed`` undoes its own writes; the outermost commits everything (or, if it
        ``failed``, nothing). ``context`` is recorded for changed mutable values
        (default: the caller's code location).

        :raises RuntimeError: if no transaction is open in this thread
        :raises ConflictError: if an expectation (see :meth:`expect`) failed
        """
        txn = self._local.txn
        if txn is None:
            raise RuntimeError("end() without begin(): no transaction is open in this thread")
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
                self._commit_transaction(txn, context or caller_context())
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
                raise UnsupportedValueError(f"{describe_field(ns.parts, field)}: {exc}") from None
            if data is not None:
                items.append((ns, field, data, context, MISSING))
        if items:
            self._commit(items, [(path, field, seq) for (path, field), seq in txn.expect.items()])

    # -- optimistic concurrency -------------------------------------------------------

    def _resolve(self, target: Namespace | Any) -> Namespace:
        """A Namespace, or the Namespace of anything with a ``__namespace__``."""
        if type(target) is Namespace:
            return target
        parts = getattr(target, "__namespace__", None)
        if type(parts) is not tuple:
            raise TypeError(f"needs a Storage or a Namespace, got {target!r}")
        return self.namespace(parts)

    def field_seq(self, target: Namespace | Any, field: str) -> int:
        """The seq of ``field``'s latest fact (0 if it was never written). O(1).

        :param target: a :class:`Namespace` or a Storage
        """
        self.sync()
        log = self._resolve(target).fields.get(field)
        return log.last_seq() if log is not None else 0

    def expect(self, target: Namespace | Any, field: str, seq: int) -> None:
        """Inside a transaction: commit only if ``field`` is still at ``seq`` then.

        If another writer changed the field first, the whole transaction is refused
        with :class:`ConflictError` and nothing of it is written.

        :raises RuntimeError: outside a transaction
        :raises ValueError: if ``seq`` is not an int >= 0
        """
        txn = self._local.txn
        if txn is None:
            raise RuntimeError("expect() belongs inside 'with store.transaction():'")
        if not isinstance(seq, int) or seq < 0:
            raise ValueError(f"expect() needs a seq (an int >= 0), got {seq!r}")
        txn.expect[(self._resolve(target).path, check_field(field))] = seq

    def compare_and_set(self, target: Namespace | Any, field: str, value: Any, *, seq: int) -> int:
        """Set ``field`` to ``value`` only if its latest fact is still ``seq``
        (0: never written); return the new seq.

        >>> from everstore import Store
        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> first = store.compare_and_set(doc, "owner", "ann", seq=0)
        >>> store.compare_and_set(doc, "owner", "bob", seq=0)
        Traceback (most recent call last):
        ...
        everstore.errors.ConflictError: field 'owner' of namespace 'doc' is at seq 1, not 0: ...

        :raises ConflictError: if another writer changed the field first
        """
        context = caller_context()
        ns = self._resolve(target)
        with self.transaction():
            self.expect(ns, field, seq)
            self.write(ns, check_field(field), value, context)
        return self.field_seq(ns, field)

    # -- the change feed ----------------------------------------------------------

    def follow(
        self, since: int = 0, *, timeout: float | None = None, batch: int = 1000
    ) -> Iterator[Change]:
        """Yield every fact with a seq above ``since``, in seq order, each once;
        when caught up, wait for new ones, and stop after ``timeout`` seconds
        without one (None: never stop; :meth:`close` ends the wait).

        A follower that keeps the seq of the last change it handled and restarts
        from it misses nothing and sees nothing twice.

        >>> from everstore import Store
        >>> store = Store()
        >>> store.storage("doc").title = "a"
        >>> [(c.namespace, c.field, c.data) for c in store.follow(timeout=0)]
        [(('doc',), 'title', 'a')]

        :raises TypeError: for a ``since``, ``timeout`` or ``batch`` of the wrong kind
        :raises StoreClosedError: when the Engine is closed while following
        """
        check_follow_arguments(since, timeout, batch)
        facts = facts_after(self.backend, self.check_open, since, timeout, batch)
        return map(self._change, facts)

    def subscribe(
        self, callback: Callable[[Change], object], *, since: int | None = None
    ) -> Subscription:
        """Call ``callback(change)`` from a background thread for every new fact
        (after ``since``; by default from now on). Returns a :class:`Subscription`
        to stop it; an exception in the callback stops it and is re-raised by
        :meth:`Subscription.close`."""
        start = self.last_seq if since is None else since
        return Subscription(lambda seq, wait: self.follow(seq, timeout=wait), callback, start)

    def _change(self, fact: Fact) -> Change:
        parts = tuple(fact.namespace.split("/"))
        data = fact.data
        if data is None:
            value = None
        elif self.codec.is_delta(data):  # rebuild from the namespace's history
            history = self.history(self.namespace(parts), fact.field)
            value = history.value_at(history.position(seq=fact.seq))
        else:
            value = self.codec.decode(data)
        return Change(fact.seq, fact.time, parts, fact.field, data is None, value, fact.context)

    # -- the fact hook ------------------------------------------------------------------

    def add_fact_hook(self, hook: FactHook) -> Callable[[], None]:
        """Call ``hook(AppliedFact)`` synchronously for every fact the cache applies:
        this process's commits, other processes' facts on refresh, and the facts of
        a namespace when it is first loaded (``loading=True``). Returns a function
        that removes the hook.

        Hooks run under the Engine's lock, in seq order per namespace, right after the
        fact is applied: keep them quick, and do not wait there for other threads. An
        exception from a hook propagates to the operation that applied the fact (the
        fact stays committed and applied).

        >>> store = Engine()
        >>> seen = []
        >>> remove = store.add_fact_hook(lambda f: seen.append((f.field, f.value.data)))
        >>> store.write(store.namespace(("doc",)), "title", "a")
        >>> remove()
        >>> seen
        [('title', 'a')]
        """
        if not callable(hook):
            raise TypeError(f"a fact hook must be callable, got {hook!r}")
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    def _run_hooks(self, ns: Namespace, field: str, loading: bool) -> None:
        log = ns.fields[field]
        value = as_value(log.entries[-1])
        if type(value.data) is Raw:
            value = value._replace(data=log.value_at(self.codec, len(log.entries) - 1))
        applied = AppliedFact(ns, field, value, loading)
        for hook in list(self._hooks):
            hook(applied)

    # -- blobs ------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` once under its SHA-256 digest and return the digest (64 hex
        characters). Putting the same bytes again stores nothing more. Blobs are
        written at once, outside any transaction, and never removed.

        >>> store = Engine()
        >>> digest = store.put_blob(b"hello")
        >>> digest[:12], store.get_blob(digest)
        ('2cf24dba5fb0', b'hello')

        :raises TypeError: if ``data`` is not bytes-like
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a blob is bytes, got {type(data).__name__}")
        payload = bytes(data)
        digest = hashlib.sha256(payload).digest()
        with self._lock:
            self.check_open()
            self.backend.put_blobs([(digest, payload)])
        return digest.hex()

    def get_blob(self, digest: str) -> bytes:
        """The bytes stored under ``digest`` (64 hex characters, as :meth:`put_blob`
        returned).

        :raises ValueError: if ``digest`` is not 64 hex characters
        :raises MissingBlobError: if nothing is stored under it
        """
        if type(digest) is not str or len(digest) != 64:
            raise ValueError(f"a blob digest is 64 hex characters, got {digest!r}")
        try:
            key = bytes.fromhex(digest)
        except ValueError:
            raise ValueError(f"a blob digest is 64 hex characters, got {digest!r}") from None
        self.check_open()
        data = self.backend.get_blob(key)
        if data is None:
            raise MissingBlobError(f"no blob is stored under {digest}")
        return data

    # -- writing ------------------------------------------------------------------

    def write(self, ns: Namespace, field: str, value: Any, context: str | None = None) -> None:
        """Append ``field = value`` to ``ns``: committed before this returns, or kept
        for the commit of the calling thread's open transaction.

        ``context`` is the code location to record (default: the caller's). The
        caller checks ``field`` with :func:`check_field` (Storage does it once per name).

        :raises UnsupportedValueError: if the codec cannot encode ``value``
        :raises StoreClosedError: if the Engine is closed
        """
        # Every assignment comes through here: the whole single-write path is in this
        # one method (a call more costs ~0.1 µs, 1 % of a write to SQLite).
        if not context:
            context = caller_context()
        if type(value) is int and self._plain_ints and _INT64_MIN <= value <= _UINT64_MAX:
            # The commonest write, encoded here as the default codec would (JSON).
            data: bytes | None = b"%d" % value
            hint = value
        elif value is TOMBSTONE:
            data = None
            hint = MISSING
            if not self.has(ns, field):
                raise MissingFieldError(
                    f"{describe_field(ns.parts, field)} cannot be deleted: it has no value"
                )
        else:
            try:
                data = self.codec.encode(value)
            except UnsupportedValueError as exc:
                raise UnsupportedValueError(f"{describe_field(ns.parts, field)}: {exc}") from None
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
        # acquire/release, not ``with``: the context-manager protocol costs as much
        # as the lock itself on this path.
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                raise StoreClosedError("this Store is closed")
            token = self._token
            current = self._token_fn() == token
            seq, when = self.backend.append_one(ns.path, field, data, context, self.clock())
            if seq != self._applied + 1:
                self._catch_up_locked()  # others wrote in between: read theirs and ours
                return
            log = ns.fields.get(field)
            if hint is MISSING or log is None or log.by_value is not None or self._hooks:
                self._apply(ns, seq, when, field, data, context, hint)
                self._applied = seq
                if self._hooks:
                    self._run_hooks(ns, field, False)
            else:
                # _apply's hot path, inlined: an immutable value to a known field.
                log.entries.append((when, False, hint, context, seq))
                ns.current[field] = hint
                if field in ns.mutable:
                    del ns.mutable[field]
                self._applied = seq
            if current:
                # _settle_token(), inlined: a method call is a tenth of this path's
                # Python time.
                after = self.backend.token_after_commit(token, 1)
                if after is not None:
                    self._token = after
        except BaseException:
            # Ctrl-C (or any error) between the commit and the cache update: the next
            # read re-reads the log's tail, so the view never misses a committed fact.
            self._token = _STALE
            raise
        finally:
            lock.release()

    def delete(self, ns: Namespace, field: str, context: str | None = None) -> None:
        """Append a tombstone for ``field``: its history stays, its value is gone.

        :raises MissingFieldError: if the field has no value to delete
        """
        self.write(ns, field, TOMBSTONE, context or caller_context())

    def _settle_token(self, before: Any, count: int) -> None:
        """After our own commit of ``count`` facts, on a token that was current: keep
        the cache marked current when the backend proves nobody else committed, so
        the next read needs no round trip."""
        after = self.backend.token_after_commit(before, count)
        if after is not None:
            self._token = after

    def _commit(self, items: list[Item], expect: Sequence[Expectation] = ()) -> None:
        """Commit ``items`` in one append (see :data:`Item`)."""
        now = self.clock()
        writes = [
            _as_write((ns.path, field, data, context, now)) for ns, field, data, context, _ in items
        ]
        with self._lock:
            self.check_open()
            token = self._token
            current = self._token_fn() == token
            try:
                assigned = self.backend.append(writes, expect)
                first = assigned[0][0]
                if first == self._applied + 1 and assigned[-1][0] == first + len(assigned) - 1:
                    # Nobody else committed in between: apply ours without a round trip.
                    hooks = self._hooks
                    for (ns, field, data, context, hint), (seq, when) in zip(
                        items, assigned, strict=True
                    ):
                        self._apply(ns, seq, when, field, data, context, hint)
                        self._applied = seq
                        if hooks:
                            self._run_hooks(ns, field, False)
                    if current:
                        self._settle_token(token, len(assigned))
                else:
                    self._catch_up_locked()
            except BaseException:
                self._token = _STALE  # see write(): the next read re-reads the tail
                raise

    # -- keeping current ------------------------------------------------------------

    def sync(self) -> None:
        """Apply facts other writers committed since this Engine last looked. O(1)
        when there are none (one probe of the backend's change token)."""
        if self._token_fn() != self._token:
            with self._lock:
                self._catch_up_locked()

    def _catch_up_locked(self) -> None:
        self.check_open()
        token = self._token_fn()
        facts = self.backend.facts_since(self._applied)
        by_path = self._by_path
        hooks = self._hooks
        for fact in facts:
            ns = by_path.get(fact.namespace)
            if ns is not None and fact.seq > ns.loaded_upto:
                log = ns.fields.get(fact.field)
                # A fact applied before an interrupt cut a batch short is not applied twice.
                if log is None or log.last_seq() < fact.seq:
                    self._apply(ns, fact.seq, fact.time, fact.field, fact.data, fact.context)
                    if hooks:
                        self._run_hooks(ns, fact.field, False)
            # Advanced fact by fact, after the fact: an interrupt loses nothing.
            if fact.seq > self._applied:
                self._applied = fact.seq
        self._token = token

    def _apply(
        self,
        ns: Namespace,
        seq: int,
        when: float,
        field: str,
        data: bytes | None,
        context: str,
        hint: Any = MISSING,
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
            ns.mutable.pop(field, None)
        elif data is None:
            entry = (when, True, None, context, seq)
            ns.current.pop(field, None)
            ns.mutable.pop(field, None)
        elif self.codec.is_delta(data):
            entry = (when, False, Raw(data), context, seq)
            previous = ns.mutable.get(field, Codec.NO_VALUE)
            ns.mutable[field] = log.apply_delta(self.codec, data, previous)
            ns.current.pop(field, None)
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
        log.add(entry)

    # -- reading ------------------------------------------------------------------

    def read(self, ns: Namespace, field: str) -> Any:
        """The value of ``field`` as the calling thread should see it (its own
        transaction's writes included). O(1), plus a copy for a mutable value.

        :raises MissingFieldError: if the field has no value (never written, deleted)
        :raises MutableAccessError: for a mutable value read outside a transaction
        """
        self.sync()
        txn = self._local.txn
        if txn is not None:
            pending = txn.pending(ns, field)
            if type(pending) is Work:
                return pending.obj
            if pending is TOMBSTONE:
                raise MissingFieldError(
                    f"{describe_field(ns.parts, field)} was deleted in this transaction"
                )
            if pending is not MISSING:
                return pending
        value = ns.current.get(field, MISSING)
        if value is not MISSING:
            return value
        mutable = ns.mutable.get(field, MISSING)
        if mutable is MISSING:
            raise MissingFieldError(self._missing_message(ns, field))
        if txn is None:
            raise MutableAccessError(
                f"{describe_field(ns.parts, field)} holds a mutable {type(mutable).__name__}: "
                f"read it inside 'with storage:' (or store.transaction()) so that changes "
                f"are saved"
            )
        with self._lock:
            recorded = self.codec.encode(ns.mutable[field])
            base_seq = ns.fields[field].last_seq()
        work = Work(self.codec.decode(recorded), recorded, base_seq)
        txn.work[(ns, field)] = work
        txn.touch(ns)
        return work.obj

    @staticmethod
    def _missing_message(ns: Namespace, field: str) -> str:
        log = ns.fields.get(field)
        if log is not None and log.entries and log.entries[-1][UNAVAILABLE]:
            return f"{describe_field(ns.parts, field)} was deleted (see its __history__())"
        return f"Storage{ns.parts!r} has no field {field!r}"

    def has(self, ns: Namespace, field: str) -> bool:
        """True if ``field`` has a value as the calling thread sees it. O(1)."""
        txn = self._local.txn
        if txn is not None:
            pending = txn.pending(ns, field)
            if pending is not MISSING:
                return pending is not TOMBSTONE
        self.sync()
        return ns.available(field)

    def fields(self, ns: Namespace) -> list[str]:
        """The fields of ``ns`` with a value, as the calling thread sees them, in
        first-write order. O(f)."""
        self.sync()
        txn = self._local.txn
        if txn is None or ns not in txn.touched:
            return ns.field_names()
        shown = {name: ns.available(name) for name in ns.fields}
        for item_ns, field, data, _, _ in txn.items:
            if item_ns is ns:
                shown[field] = data is not None
        return [name for name, visible in shown.items() if visible]

    def history(self, ns: Namespace, field: str, upto: int = END_OF_LOG) -> History:
        """``field``'s committed history, up to and including seq ``upto``.

        O(log n) to make; see :class:`History` for reading it.

        :raises MissingFieldError: if the field was never written
        """
        self.sync()
        log = ns.fields.get(field)
        if log is None:
            raise MissingFieldError(f"{describe_field(ns.parts, field)} has no history")
        return History(log, self.codec, self._lock, log.index_at(upto) + 1)
