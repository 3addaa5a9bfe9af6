"""The Engine's transactions: blocks that commit all or nothing, serializable by
default (the plain values a block read are checked at its commit), the function
forms that re-run on a conflict, and optimistic checks on single fields."""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from ..backends.base import Expectation, conflict
from ..codec import Codec
from ..errors import (
    ConflictError,
    UnsupportedValueError,
)
from .contexts import caller_context, frame_context
from .fieldlog import MISSING, TOMBSTONE
from .names import check_field, describe_field
from .namespace import Namespace
from .transactions import (
    ATOMIC,
    ISOLATION_LEVELS,
    SERIALIZABLE,
    Item,
    Loan,
    Scope,
    ThreadState,
    Transaction,
    Work,
)

__all__ = ["DEFAULT_RETRIES", "Transacting", "TransactionalDecorator"]

#: how often transact() re-runs a function that lost a conflict, by default
DEFAULT_RETRIES = 10
#: the pause before the k-th re-run is random, up to min(cap, base * 2**k) seconds:
#: writers that collided do not all come back at the same moment
_BACKOFF_BASE = 0.0005
_BACKOFF_CAP = 0.05

_P = ParamSpec("_P")
_R = TypeVar("_R")


class TransactionalDecorator(Protocol):
    """What ``transactional(retries=...)`` returns: a decorator."""

    def __call__(self, fn: Callable[_P, _R], /) -> Callable[_P, _R]: ...


class Transacting:
    """The transaction methods of :class:`Engine` (a part of it, not used alone)."""

    if TYPE_CHECKING:
        codec: Codec
        open_transactions: int
        _lock: threading.RLock
        _local: ThreadState
        _by_path: dict[str, Namespace]
        _applied: int

        def sync(self) -> None: ...
        def check_open(self) -> None: ...
        def namespace(self, parts: tuple[str, ...]) -> Namespace: ...
        def write(
            self, ns: Namespace, field: str, value: Any, context: str | None = None
        ) -> None: ...
        def _commit(
            self,
            items: list[Item],
            expect: Sequence[Expectation] = (),
            since: int | None = None,
            blobs: Sequence[tuple[bytes, bytes]] = (),
        ) -> None: ...
        def _store_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None: ...
        def _end_loans(self, txn: Transaction) -> None: ...

    # -- transactions ---------------------------------------------------------------

    def transaction(self, isolation: str | None = None) -> Scope:
        """``with store.transaction():`` commits every write inside atomically, in one
        round trip, at the outermost exit, or none of them if the block raises.

        Serializable by default: every plain value the block read from the committed
        state (a field, or its absence) must still be current when it commits;
        if another writer changed one first, :class:`ConflictError` is raised and
        nothing is written (:meth:`transact` re-runs a function until it commits).
        In-place changes of mutable values are not checked: they merge.
        ``isolation="atomic"`` opts out of the check: all or nothing, no more.

        Inside, mutable values may be read and changed in place. Nested blocks join
        the outer one, whose isolation holds for the whole transaction; an exception
        leaving an inner block undoes that block's writes (not its reads).

        :param isolation: ``"serializable"`` or ``"atomic"``; None (the default) is
            serializable for an outermost block and the outer block's for a nested one
        :raises ValueError: for an unknown isolation, or on entering a nested block
            that names an isolation other than the transaction's
        :raises ConflictError: on exit, if a value read (or an :meth:`expect`) failed
        """
        _check_isolation(isolation)
        return Scope(self, isolation)

    def transact(
        self,
        fn: Callable[..., _R],
        /,
        *args: Any,
        retries: int = DEFAULT_RETRIES,
        **kwargs: Any,
    ) -> _R:
        """Run ``fn(*args, **kwargs)`` in a serializable transaction and return its
        result; if the commit raises :class:`ConflictError`, run it again, up to
        ``retries`` more times, after a short random pause (growing from about
        0.5 ms to at most 50 ms), and re-raise the last conflict after that.

        ``fn`` may run several times: it should change nothing but the store.
        Called inside an open transaction, ``fn`` joins it and runs once: the conflict
        surfaces at the outermost block, which is the one that can be re-run.

        >>> from everstore import Store
        >>> store = Store()
        >>> counter = store.storage("counter")
        >>> counter.n = 0
        >>> def add(k):
        ...     counter.n = counter.n + k
        ...     return counter.n
        >>> store.transact(add, 5, retries=3)
        5

        :param retries: re-runs allowed after the first run (an int >= 0); a keyword
            of ``transact`` itself, so ``fn`` cannot receive one of that name this way
            (use :meth:`transactional`)
        :raises TypeError: if ``fn`` is not callable or ``retries`` is not an int
        :raises ValueError: if ``retries`` is negative
        :raises ConflictError: if every run lost a conflict
        """
        _check_retries(retries)
        if not callable(fn):
            raise TypeError(f"transact() needs a callable, got {fn!r}")
        return self._transact(fn, args, kwargs, retries)

    @overload
    def transactional(self, fn: Callable[_P, _R], /) -> Callable[_P, _R]: ...

    @overload
    def transactional(self, *, retries: int = DEFAULT_RETRIES) -> TransactionalDecorator: ...

    def transactional(
        self, fn: Callable[..., Any] | None = None, *, retries: int = DEFAULT_RETRIES
    ) -> Any:
        """Decorator: every call of the function runs as :meth:`transact` would run it.

        >>> from everstore import Store
        >>> store = Store()
        >>> account = store.storage("account")
        >>> account.balance = 10
        >>> @store.transactional(retries=5)
        ... def withdraw(amount):
        ...     if account.balance < amount:
        ...         raise ValueError("insufficient funds")
        ...     account.balance = account.balance - amount
        >>> withdraw(3)
        >>> account.balance
        7

        ``@store.transactional`` (no parentheses) uses the default retries.

        :raises TypeError: if what is decorated is not callable, or ``retries`` is
            not an int
        :raises ValueError: if ``retries`` is negative
        """
        _check_retries(retries)

        def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
            if not callable(function):
                raise TypeError(f"transactional() decorates a callable, got {function!r}")

            @functools.wraps(function)
            def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
                return self._transact(function, args, kwargs, retries)

            return run

        return decorate if fn is None else decorate(fn)

    def _transact(
        self, fn: Callable[..., _R], args: Any, kwargs: dict[str, Any], retries: int
    ) -> _R:
        if self.in_transaction():
            with self.transaction():
                return fn(*args, **kwargs)
        attempt = 0
        while True:
            try:
                with self.transaction():
                    return fn(*args, **kwargs)
            except ConflictError:
                if attempt >= retries:
                    raise
            attempt += 1
            time.sleep(random.uniform(0.0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))

    def in_transaction(self) -> bool:
        """True if the calling thread has a transaction open on this Engine."""
        return self._local.txn is not None

    def check_outside_transaction(self, what: str) -> None:
        """What an operation that commits on its own calls first (an import, an
        erasure, a prune): its commit could not be part of the calling thread's
        transaction.

        :param what: the operation, as the error names it (``"erase()"``)
        :raises RuntimeError: inside a transaction of the calling thread
        """
        if self.open_transactions and self._local.txn is not None:
            raise RuntimeError(
                f"{what} commits at once: call it outside 'with store.transaction():'"
            )

    def begin(self, isolation: str | None = None) -> Transaction:
        """Enter (or join, one level deeper) the calling thread's transaction; every
        :meth:`begin` needs one :meth:`end`. :meth:`transaction` does both, and
        documents ``isolation``.

        :raises StoreClosedError: if the Engine is closed
        :raises ValueError: for an unknown isolation, or one that differs from the
            open transaction's
        """
        self.check_open()
        _check_isolation(isolation)
        txn = self._local.txn
        if txn is None:
            txn = Transaction(self.codec, SERIALIZABLE if isolation is None else isolation)
            # Before any read: each read holds at this seq or a later one.
            txn.read_since = self._applied
            with self._lock:
                self.open_transactions += 1
            self._local.txn = txn
        else:
            if isolation is not None and isolation != txn.isolation:
                raise ValueError(
                    f"this block asks for an {isolation} transaction, but it would join an "
                    f"open {txn.isolation} one: the outermost block decides the isolation"
                )
            if txn.depth:
                txn.savepoint()
        txn.depth += 1
        return txn

    def end(self, failed: bool, context: str | FrameType | None = None) -> None:
        """Leave one level of the calling thread's transaction: an inner level that
        ``failed`` undoes its own writes; the outermost commits everything (or, if it
        ``failed``, nothing). ``context`` is recorded for changed mutable values: a
        code location, or the frame to take it from (a ``__exit__`` passes its
        caller's: it is read only after the transaction is closed, so that an
        interrupt cannot leave it open); default: the caller's code location.

        :raises RuntimeError: if no transaction is open in this thread
        :raises ConflictError: if a value read (in a serializable transaction) or an
            expectation (see :meth:`expect`) failed; nothing is written then
        """
        txn = self._local.txn
        if txn is None:
            raise RuntimeError("end() without begin(): no transaction is open in this thread")
        if txn.depth == 1 and not failed and txn.commit_callbacks:
            # Still one level deep: a block a callback opens joins this transaction.
            try:
                _run_commit_callbacks(txn.commit_callbacks)
            except BaseException:
                txn.depth -= 1
                self._local.txn = None
                with self._lock:
                    self.open_transactions -= 1
                self._abandon(txn)
                raise
        txn.depth -= 1
        if txn.depth:
            if failed:
                txn.rollback_to_savepoint()
            else:
                txn.release_savepoint()
            return
        self._local.txn = None
        with self._lock:
            self.open_transactions -= 1
        try:
            if not failed:
                if context is None:
                    context = caller_context()
                elif not isinstance(context, str):
                    context = frame_context(context)
                self._commit_transaction(txn, context)
        except BaseException:
            self._abandon(txn)
            raise
        if txn.loans:
            self._end_loans(txn)
        txn.release()
        if txn.end_callbacks:
            if failed:  # the block is raising its own error: that is the one to see
                with contextlib.suppress(Exception):
                    _run_end_callbacks(txn.end_callbacks, False)
            else:
                _run_end_callbacks(txn.end_callbacks, True)

    def _abandon(self, txn: Transaction) -> None:
        """Clean up after a transaction whose commit failed (nothing of it written)."""
        if txn.loans:
            self._end_loans(txn)
        txn.release()
        if txn.end_callbacks:
            with contextlib.suppress(Exception):  # the commit's error is the one to see
                _run_end_callbacks(txn.end_callbacks, False)

    def before_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once, as the calling thread's open transaction is about
        to commit (not if its block fails): inside the transaction, so that what it
        writes commits with the rest, and what it reads (:meth:`pending_value`) is
        final. Callbacks run in the order given, those they add after them; an
        exception from one fails the transaction (nothing is written) and propagates.

        For layers that derive writes from a whole transaction's (the structures
        layer prunes a stack's layers its pushes filled, with those pushes).

        >>> from everstore import Store
        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> with store.transaction():
        ...     doc.a = 1
        ...     store.before_commit(lambda: setattr(doc, "b", doc.a + 1))
        ...     doc.a = 5
        >>> doc.b
        6

        :raises TypeError: if ``callback`` is not callable
        :raises RuntimeError: if no transaction is open in this thread
        """
        self._transaction_taking("before_commit", callback).commit_callbacks.append(callback)

    def write_at_commit(
        self, target: Namespace | Any, field: str, value: Any, context: str | None = None
    ) -> None:
        """Inside a transaction: write ``value``, a container, as it is when the
        transaction commits: one fact, however it is changed in place until then
        (:meth:`write` then changes in place commit two facts, the value as written
        and as changed). For a layer that gathers a transaction's worth of items in
        one value, growing it through :meth:`pending_value`.

        >>> from everstore import Store
        >>> store = Store()
        >>> ns = store.namespace(("doc",))
        >>> with store.transaction():
        ...     store.write_at_commit(ns, "batch", [])
        ...     store.pending_value(ns, "batch").extend([1, 2])
        >>> store.history(ns, "batch").values()
        [[1, 2]]

        :param target: a :class:`Namespace` or a Storage
        :raises RuntimeError: outside a transaction
        :raises UnsupportedValueError: if the codec cannot encode ``value`` (now) or
            what it became (at the commit, which then fails)
        """
        txn = self._local.txn
        if txn is None:
            raise RuntimeError("write_at_commit() belongs inside 'with store.transaction():'")
        ns = self._resolve(target)
        check_field(field)
        try:
            data = self.codec.encode(value)
        except UnsupportedValueError as exc:
            raise UnsupportedValueError(f"{describe_field(ns.parts, field)}: {exc}") from None
        hint = MISSING if self.codec.is_mutable(value) else value
        txn.record(ns, field, data, context or caller_context(), value, hint, at_commit=True)

    def pending_value(self, target: Namespace | Any, field: str, default: Any = None) -> Any:
        """The value the calling thread's open transaction wrote to ``field``, which
        its commit will write: for a mutable value, the very object written, so
        that changing it in place until then changes what is committed (as a value
        written and then changed in place always is). ``default`` if the
        transaction wrote none, deleted the field, or none is open. O(1).

        An inner block that fails gives back what the value was when it began: ask
        again after one rather than keep the object.

        >>> from everstore import Store
        >>> store = Store()
        >>> ns = store.namespace(("doc",))
        >>> with store.transaction():
        ...     store.write(ns, "tags", ["a"])
        ...     store.pending_value(ns, "tags").append("b")
        >>> store.history(ns, "tags").values()
        [['a'], ['a', 'b']]

        :param target: a :class:`Namespace` or a Storage
        """
        txn = self._local.txn
        if txn is None:
            return default
        pending = txn.pending(self._resolve(target), field)
        if type(pending) is Work:
            return pending.obj
        if pending is MISSING or pending is TOMBSTONE or type(pending) is Loan:
            return default  # a Loan is the committed value, lent: not written by it
        return pending

    def on_transaction_end(self, callback: Callable[[bool], object]) -> None:
        """Call ``callback(committed)`` once, when the calling thread's open transaction
        ends at its outermost block: ``committed`` is True after its commit, False if
        it failed or its commit raised (then nothing of it was written).

        For layers that keep in-memory state derived from a transaction's writes (the
        models layer's undo steps and per-thread working copies), which must be kept
        after a commit and dropped after a failure. Callbacks run in the order they
        were given, after the commit (the facts are applied and the fact hooks have
        run) and outside the engine's lock; an exception from one is re-raised once
        the others have run, unless the block failed or its commit raised: then that
        error is the one raised.

        >>> from everstore import Store
        >>> store = Store()
        >>> ended = []
        >>> with store.transaction():
        ...     store.on_transaction_end(ended.append)
        ...     store.storage("doc").title = "a"
        >>> ended
        [True]

        :raises TypeError: if ``callback`` is not callable
        :raises RuntimeError: if no transaction is open in this thread
        """
        self._transaction_taking("on_transaction_end", callback).end_callbacks.append(callback)

    def _transaction_taking(self, method: str, callback: object) -> Transaction:
        """The calling thread's open transaction, for ``method`` to give ``callback``.

        :raises TypeError: if ``callback`` is not callable
        :raises RuntimeError: if no transaction is open in this thread
        """
        if not callable(callback):
            raise TypeError(f"{method}() needs a callable, got {callback!r}")
        txn = self._local.txn
        if txn is None:
            raise RuntimeError(
                f"{method}() belongs inside a transaction: none is open in this thread"
            )
        return txn

    def _commit_transaction(self, txn: Transaction, context: str) -> None:
        items = txn.items
        codec = self.codec
        for (ns, field), work in txn.work.items():
            hint: Any = MISSING
            data: bytes | None
            try:
                if isinstance(work, Loan):  # the cache's own value, changed in place
                    data = work.tracker.change()
                    hint = work
                elif work.base_seq is None:  # the caller's own new object: stored whole
                    data = codec.encode(work.obj)
                    if data == work.recorded:
                        continue
                    if work.position is not None:  # write_at_commit: in its write's place
                        written = items[work.position]
                        items[work.position] = (ns, field, data, written[3], written[4])
                        continue
                else:
                    data = codec.encode_change(work.base_seq, work.recorded, work.obj)
            except UnsupportedValueError as exc:
                raise UnsupportedValueError(f"{describe_field(ns.parts, field)}: {exc}") from None
            if data is not None:
                items.append((ns, field, data, context, hint))
        blobs = list(txn.blobs.items())
        if items:
            self._commit(items, txn.expectations(), txn.checked_since(), blobs)
            return
        if txn.serializable and (txn.reads or txn.expect):
            self._check_expectations(txn.expectations())
        if blobs:
            self._store_blobs(blobs)

    def _check_expectations(self, expectations: list[Expectation]) -> None:
        """A serializable transaction that writes nothing still saw only values that
        were current together: checked against the cache, made current by a sync."""
        self.sync()
        with self._lock:
            for path, field, seq in expectations:
                ns = self._by_path.get(path) or self.namespace(tuple(path.split("/")))
                log = ns.fields.get(field)
                actual = log.last_seq() if log is not None else 0
                if actual != seq:
                    raise conflict(path, field, seq, actual)

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
        ns = self._resolve(target)
        txn.expect[(ns.path, check_field(field))] = seq
        # True in the cache, which holds the log as of a seq at or after the
        # transaction began: then the backend need only look at facts after that.
        log = ns.fields.get(field)
        if (log.last_seq() if log is not None else 0) != seq:
            txn.unchecked_expect = True

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


def _run_commit_callbacks(callbacks: list[Callable[[], object]]) -> None:
    """Run every callback, those added meanwhile included; the first error stops."""
    while callbacks:
        callbacks.pop(0)()


def _run_end_callbacks(callbacks: list[Callable[[bool], object]], committed: bool) -> None:
    """Run every callback; re-raise the first error after all have run."""
    error: BaseException | None = None
    for callback in callbacks:
        try:
            callback(committed)
        except BaseException as exc:
            if error is None:
                error = exc
    callbacks.clear()
    if error is not None:
        raise error


def _check_isolation(isolation: object) -> None:
    if isolation is not None and isolation not in ISOLATION_LEVELS:
        if not isinstance(isolation, str):
            raise TypeError(
                f"isolation is a str ({SERIALIZABLE!r} or {ATOMIC!r}), got {isolation!r}"
            )
        raise ValueError(f"isolation is {SERIALIZABLE!r} or {ATOMIC!r}, got {isolation!r}")


def _check_retries(retries: object) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries is an int >= 0, got {retries!r}")
    if retries < 0:
        raise ValueError(f"retries is an int >= 0, got {retries!r}")
