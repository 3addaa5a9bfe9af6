"""Transactions: one thread's pending writes between the outermost ``with`` enter
and exit, with savepoints for nested blocks."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol

from ..backends.base import Expectation
from ..codec import Codec
from ..codec.tracked import Tracker
from .fieldlog import MISSING, TOMBSTONE
from .namespace import Namespace

__all__ = [
    "ThreadState",
    "ATOMIC",
    "ISOLATION_LEVELS",
    "SERIALIZABLE",
    "Item",
    "Loan",
    "Scope",
    "Transaction",
    "Work",
]

#: the default: the plain values a transaction read are checked at its commit
SERIALIZABLE = "serializable"
#: the opt-out: all or nothing, but reads are not checked (lost updates are possible)
ATOMIC = "atomic"
ISOLATION_LEVELS = (SERIALIZABLE, ATOMIC)

#: one pending write: (namespace, field, encoded data or None, context, hint), where
#: ``hint`` is the written value when it is immutable and MISSING otherwise
Item = tuple[Namespace, str, "bytes | None", str, Any]


class Work:
    """A mutable value handed out inside a transaction, and what it was.

    ``position`` is set for a value written to be committed as it is at the commit
    (:meth:`Engine.write_at_commit`): the index of its write in the transaction's
    items, whose data the commit replaces.
    """

    __slots__ = ("base_seq", "obj", "position", "recorded")

    def __init__(
        self, obj: Any, recorded: bytes, base_seq: int | None, position: int | None = None
    ) -> None:
        self.obj = obj
        self.recorded = recorded
        self.base_seq = base_seq
        self.position = position


class Loan:
    """The engine's own current value of a field, lent to a transaction: changed in
    place, its containers recording how (see :mod:`everstore.codec.tracked`).

    ``level`` is how many savepoints were open when it was lent: rolling back to one
    of those gives the whole loan back.
    """

    __slots__ = ("field", "level", "ns", "tracker")

    def __init__(self, ns: Namespace, field: str, tracker: Tracker, level: int) -> None:
        self.ns = ns
        self.field = field
        # Not the value itself: the engine counts who holds it (held_elsewhere).
        self.tracker = tracker
        self.level = level

    def open(self) -> bool:
        """True while the loan records (not yet committed nor given back)."""
        return self.tracker.loan is self


#: a pending changed value: the caller's own or a private copy (Work), or a Loan
Pending = Work | Loan
#: one savepoint: (number of items, overlay, what each pending value was)
_Savepoint = tuple[int, dict[tuple[Namespace, str], Any], dict[tuple[Namespace, str], Any]]


class Transaction:
    """The writes of one thread between the outermost ``with`` enter and exit.

    Nothing reaches the backend before the outermost exit; then every write, and
    every changed mutable value, is committed in one atomic append. A serializable
    transaction also keeps the seq of every plain value it read from the committed
    state, and that append checks those fields are still at those seqs.
    """

    def __init__(self, codec: Codec, isolation: str = SERIALIZABLE) -> None:
        self.codec = codec
        #: SERIALIZABLE or ATOMIC, fixed by the outermost block
        self.isolation = isolation
        self.serializable = isolation == SERIALIZABLE
        #: (namespace, field) -> the field's latest seq when this transaction first
        #: read its committed value (0: never written); serializable only
        self.reads: dict[tuple[Namespace, str], int] = {}
        #: a seq of the log at or before every one of ``reads`` (the engine's last
        #: applied seq when the transaction began): each read held in the log as it
        #: was at some seq at or after this one
        self.read_since = 0
        self.depth = 0
        self.items: list[Item] = []
        self.overlay: dict[tuple[Namespace, str], Any] = {}
        self.work: dict[tuple[Namespace, str], Pending] = {}
        #: every loan taken, in order (one may no longer be in ``work``: overwritten)
        self.loans: list[Loan] = []
        self.touched: set[Namespace] = set()
        self.savepoints: list[_Savepoint] = []
        #: (namespace path, field) -> the seq the field must still be at on commit
        self.expect: dict[tuple[str, str], int] = {}
        #: an expectation the cache did not show true when it was made
        self.unchecked_expect = False
        #: called with ``committed`` when the outermost block ends (on_transaction_end)
        self.end_callbacks: list[Callable[[bool], object]] = []
        #: called as the outermost block is about to commit (before_commit)
        self.commit_callbacks: list[Callable[[], object]] = []
        #: digest -> bytes put inside the transaction, stored with its commit
        self.blobs: dict[bytes, bytes] = {}

    def touch(self, ns: Namespace) -> None:
        self.touched.add(ns)

    def expectations(self) -> list[Expectation]:
        """What the commit checks: each field read still at the seq it was read at,
        and each :meth:`Engine.expect`, which wins for the same field."""
        if not self.expect:
            return [(ns.path, field, seq) for (ns, field), seq in self.reads.items()]
        checks = {(ns.path, field): seq for (ns, field), seq in self.reads.items()}
        checks.update(self.expect)
        return [(path, field, seq) for (path, field), seq in checks.items()]

    def checked_since(self) -> int | None:
        """The ``since`` of :meth:`Backend.append_checked` for :meth:`expectations`:
        reads, and explicit expectations the cache showed true, were checked when they
        were made, at or after :attr:`read_since`; an expectation the cache did not
        show true is checked in full (None: check every one)."""
        if self.unchecked_expect or not (self.reads or self.expect):
            return None
        return self.read_since

    def record(
        self,
        ns: Namespace,
        field: str,
        data: bytes | None,
        context: str,
        value: Any,
        hint: Any,
        at_commit: bool = False,
    ) -> None:
        """Keep one write; ``hint`` is ``value`` if immutable, else MISSING;
        ``at_commit``: see :class:`Work`."""
        self.touched.add(ns)  # touch(), inlined: every write in a transaction comes here
        key = (ns, field)
        self.items.append((ns, field, data, context, hint))
        if data is None:
            self.overlay[key] = TOMBSTONE
            self.work.pop(key, None)
        elif hint is MISSING:
            # The caller's own object: later in-place changes in the block are kept.
            self.overlay.pop(key, None)
            self.work[key] = Work(value, data, None, len(self.items) - 1 if at_commit else None)
        else:
            self.overlay[key] = value
            self.work.pop(key, None)

    def pending(self, ns: Namespace, field: str) -> Any:
        """What this transaction holds for ``field``: a Work, TOMBSTONE, a written
        immutable value, or MISSING if it has not touched it."""
        key = (ns, field)
        work = self.work.get(key)
        if work is not None:
            return work
        return self.overlay.get(key, MISSING)

    def savepoint(self) -> None:
        """An inner block starts. O(1) per loan; a Work (a private copy) is encoded."""
        codec = self.codec
        snapshot: dict[tuple[Namespace, str], Any] = {
            key: work if isinstance(work, Loan) else (work, codec.encode(work.obj))
            for key, work in self.work.items()
        }
        for loan in self.loans:
            loan.tracker.push()
        self.savepoints.append((len(self.items), dict(self.overlay), snapshot))

    def release_savepoint(self) -> None:
        """The innermost block succeeded: its writes join the enclosing block's."""
        self.savepoints.pop()
        level = len(self.savepoints)
        for loan in self.loans:
            if loan.level > level:
                loan.level = level
            else:
                loan.tracker.pop_keep()

    def rollback_to_savepoint(self) -> None:
        """The innermost block failed: undo its writes (loans in place)."""
        count, overlay, snapshot = self.savepoints.pop()
        level = len(self.savepoints)
        codec = self.codec
        del self.items[count:]
        self.overlay = overlay
        kept: list[Loan] = []
        for loan in self.loans:
            if loan.level > level:
                loan.tracker.give_back()
            else:
                loan.tracker.pop_undo()
                kept.append(loan)
        self.loans = kept
        work: dict[tuple[Namespace, str], Pending] = {}
        for key, saved in snapshot.items():
            if type(saved) is Loan:
                work[key] = saved
            else:
                pending, data = saved
                pending.obj = codec.decode(data)
                work[key] = pending
        self.work = work

    def release(self) -> None:
        self.touched.clear()
        self.reads.clear()


class ThreadState(threading.local):
    """Per-thread state of an Engine: the open transaction, if any."""

    txn: Transaction | None = None


class _Transacting(Protocol):
    def begin(self, isolation: str | None = None) -> Transaction: ...

    def end(self, failed: bool, context: str | FrameType | None = None) -> None: ...


class Scope:
    """Context manager that enters (or joins) the calling thread's transaction."""

    __slots__ = ("_engine", "_isolation")

    def __init__(self, engine: _Transacting, isolation: str | None = None) -> None:
        self._engine = engine
        self._isolation = isolation

    def __enter__(self) -> Transaction:
        return self._engine.begin(self._isolation)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._engine.end(kind is not None, sys._getframe(1))
