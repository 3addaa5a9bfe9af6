"""The cache's mutable values, tracked and lent to transactions.

A list, dict, set or bytearray value, once a block reads it, is kept as tracked
containers (see everstore.codec.tracked), lent to the transaction that reads it and
changed there in place: reading, committing and applying the change cost the change,
not the value. Values that cannot be tracked (a Random, a registered mutable type, in
them or at the top) are copied and compared as before.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..codec import Codec
from ..codec.tracked import TRACKED_TYPES, Tracker, Untrackable, held_elsewhere
from ..errors import (
    MissingFieldError,
)
from .fieldlog import MISSING, Entry, FieldLog
from .namespace import Namespace
from .transactions import (
    Item,
    Loan,
    ThreadState,
    Transaction,
    Work,
)

__all__ = ["Lending"]


class Lending:
    """The lending methods of :class:`Engine` (a part of it, not used alone)."""

    if TYPE_CHECKING:
        codec: Codec
        open_transactions: int
        _lock: threading.RLock
        _local: ThreadState

        @staticmethod
        def _missing_message(ns: Namespace, field: str) -> str: ...

    def _writes_back(self, ns: Namespace, field: str, value: Any) -> bool:
        """True if ``value`` is the value lent to this thread's transaction for this
        very field (``s.items += [...]`` reads it, extends it in place and assigns it
        back): its changes are recorded already, and the assignment changes nothing."""
        txn = self._local.txn if self.open_transactions else None
        if txn is None:
            return False
        pending = txn.work.get((ns, field))
        return type(pending) is Loan and pending.tracker.root is value

    def _before_replay(self, items: list[Item]) -> None:
        """Our loans among ``items`` are committed, but the cache must apply others'
        facts first: each lent value is undone in place (O(change)), to be changed
        again as the log says; or, if the caller holds it, left to the caller with
        its changes while the cache takes a copy of the value as committed (O(n))."""
        for item in items:
            loan = item[4]
            if type(loan) is Loan and loan.open():
                tracker = loan.tracker
                root = tracker.root
                if tracker.home is not None and not held_elsewhere(root):
                    tracker.give_back()
                    continue
                if tracker.home is not None:
                    self._copy_home(loan.ns, loan.field, tracker)
                tracker.drop()

    @staticmethod
    def _give_back(items: list[Item]) -> None:
        """Undo, in place, the changes of every loan among ``items`` not yet applied."""
        for item in items:
            loan = item[4]
            if type(loan) is Loan and loan.open():
                loan.tracker.give_back()

    def _end_loans(self, txn: Transaction) -> None:
        """The outermost block ended: every loan still open (the block failed, or the
        value was unchanged or overwritten) is given back, its changes undone."""
        with self._lock:
            for loan in txn.loans:
                if loan.open():
                    loan.tracker.give_back()
            txn.loans.clear()
            txn.work.clear()

    # -- the cache's mutable values: tracked, lent to transactions ----------------------
    # A list, dict, set or bytearray value, once a block reads it, is kept as tracked
    # containers (see everstore.codec.tracked), lent to the transaction that reads it
    # and changed there in place: reading, committing and applying the change cost the
    # change, not the value. Values that cannot be tracked (a Random, a registered
    # mutable type, in them or at the top) are copied and compared as before.

    def _home(self, ns: Namespace, field: str) -> Callable[[Tracker], None]:
        """What a tracked value calls when it is about to change outside any block."""
        return functools.partial(self._unshare, ns, field)

    def _unshare(self, ns: Namespace, field: str, tracker: Tracker) -> None:
        # The caller kept a container from an earlier block and changes it now: it
        # becomes theirs alone, and the cache keeps a copy of the value.
        with self._lock:
            if tracker.loan is None and tracker.home is not None:
                if ns.mutable.get(field) is tracker.root:
                    ns.mutable[field] = tracker.copy_value()
                tracker.home = None

    def _drop_mutable(self, ns: Namespace, field: str) -> None:
        """The field's mutable value leaves the cache (replaced or deleted)."""
        value = ns.mutable.pop(field, None)
        if type(value) in TRACKED_TYPES:
            value._tracker.home = None  # a loan of it goes on, now private

    def _copy_home(self, ns: Namespace, field: str, tracker: Tracker) -> Any:
        """Give the field a copy of its value as committed, for the cache alone; the
        value it had stays with whoever holds it (a caller who kept it from an earlier
        block, or a transaction it is lent to). O(n)."""
        copied = tracker.copy_value()
        tracker.home = None
        ns.mutable[field] = copied
        return copied

    def _apply_delta(self, ns: Namespace, field: str, log: FieldLog, data: bytes) -> Any:
        previous = ns.mutable.get(field, Codec.NO_VALUE)
        if type(previous) not in TRACKED_TYPES:
            return log.apply_delta(self.codec, data, previous)
        tracker: Tracker = previous._tracker
        # Changed in place only if nobody else holds it (O(1) to tell).
        if tracker.loan is not None or held_elsewhere(previous):
            previous = self._copy_home(ns, field, tracker)
            tracker = previous._tracker
        try:
            value = log.apply_delta(self.codec, data, previous, tracker.adopt)
        except Untrackable:  # another writer put in a part that cannot be tracked
            tracker.home = None
            plain = self.codec.copy(previous)
            return log.apply_delta(self.codec, data, plain)
        if value is not previous:  # rebuilt from an earlier value: a new, plain object
            tracker.home = None
        return value

    def _apply_loan(
        self, ns: Namespace, field: str, loan: Loan, log: FieldLog, entry: Entry
    ) -> bool:
        """Our committed change of a lent value: True if the value is still the
        cache's, changed in place already (then ``entry`` is added and nothing more
        is to apply)."""
        tracker = loan.tracker
        if not loan.open():
            return False
        if tracker.home is None or ns.mutable.get(field) is not tracker.root:
            # Left home while lent (another writer's fact came first): apply the
            # change to what the cache holds now, as anyone's.
            tracker.drop()
            return False
        # The entry before the loan is settled, as in _apply's delta branch: after an
        # interrupt in between, catch-up rebuilds the value from the entries.
        log.add(entry)
        if not tracker.settle():  # an untrackable part was put in: keep a plain copy
            tracker.home = None
            ns.mutable[field] = self.codec.copy(tracker.root)
        return True

    def _lend(self, txn: Transaction, ns: Namespace, field: str) -> Any:
        """The field's mutable value for ``txn`` to change: the cache's own, lent
        (O(1)); or a private copy (O(n)) if it cannot be tracked or is lent already."""
        codec = self.codec
        with self._lock:
            value = ns.mutable.get(field, MISSING)
            if value is MISSING:
                raise MissingFieldError(self._missing_message(ns, field))
            base_seq = ns.fields[field].last_seq()
            if type(value) not in TRACKED_TYPES:  # first lent: tracked from now on, O(n)
                value = Tracker.track(value, codec, self._home(ns, field))
                if type(value) in TRACKED_TYPES:
                    ns.mutable[field] = value
            if type(value) in TRACKED_TYPES:
                tracker: Tracker = value._tracker
                if tracker.loan is None:
                    if held_elsewhere(value):  # kept from an earlier block: theirs now
                        value = self._copy_home(ns, field, tracker)
                        tracker = value._tracker
                    loan = Loan(ns, field, tracker, len(txn.savepoints))
                    tracker.lend(loan, base_seq)
                    txn.loans.append(loan)
                    txn.work[(ns, field)] = loan
                    txn.touch(ns)
                    return value
                recorded = tracker.committed_bytes()
            else:
                recorded = codec.encode(value)
        work = Work(codec.decode(recorded), recorded, base_seq)
        txn.work[(ns, field)] = work
        txn.touch(ns)
        return work.obj
