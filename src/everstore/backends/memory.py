"""The Memory backend: the log as a Python list, for tests and throwaway stores.

Several Stores may share one ``Memory()`` in one process; they see each other's
writes exactly as processes sharing a database file do.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import operator
import threading
from collections.abc import Callable, Hashable, Sequence

from sortedcontainers import SortedDict

from ..integrity.chain import (
    GENESIS,
    chain_step,
    erasable,
    erased_marker,
    fact_hash,
    single_step,
)
from ..log import Fact, Write
from .base import Backend, Expectation, check_present, conflict, scan_tail, tail_is_short

__all__ = ["Memory"]

# The log keeps plain tuples laid out as Fact and hands out Facts. CPython's
# collector stops tracking an exact tuple of atomic values, but never a NamedTuple,
# so a long log of Facts would be rescanned by every full collection: that cost
# more than the rest of an append put together.
_as_fact = functools.partial(tuple.__new__, Fact)
_time_of = operator.itemgetter(1)


class Memory(Backend):
    """An in-memory log. Appends are O(1); loading a namespace is O(its facts).

    >>> from everstore import Store
    >>> store = Store(Memory())
    >>> store.storage("doc").x = 1
    >>> store.storage("doc").x
    1
    """

    kind = "memory"
    chained = True

    def __init__(self) -> None:
        #: (seq, time, namespace, field, data, context) plain tuples; seq n at n - 1
        self._facts: list[tuple[int, float, str, str, bytes | None, str]] = []
        # Sorted by path, so that listing a prefix is O(log n + k), not a scan.
        self._by_namespace: SortedDict = SortedDict()
        #: (namespace, field) -> latest seq, for conditional writes; brought up to date
        #: (from seq _latest_upto on) only when a conditional write needs it, so that
        #: plain appends do not pay for it
        self._latest: dict[tuple[str, str], int] = {}
        self._latest_upto = 0
        #: how many facts of the log _by_namespace holds
        self._indexed = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Waking a Condition costs more than the append itself: writers notify only
        # when someone waits (counted under the same lock, so no wake-up is lost).
        self._waiting = 0
        self._blobs: dict[bytes, bytes] = {}
        #: (seq_last, link) of every commit, and the chain's last link
        self._chain: list[tuple[int, bytes]] = []
        self._head = GENESIS
        #: seqs of removed facts (retention): their places in the list stay, so
        #: that seq n stays at index n - 1, and readers skip them
        self._removed: set[int] = set()

    def open(self) -> None:
        self._check_open()

    def append(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation] = (),
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        with self._changed:
            self._check_latest(expect)
            self._store_blobs(blobs)
            return self._append_locked(writes)

    def append_checked(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation],
        since: int,
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        with self._changed:
            facts = self._facts
            if len(facts) == since:
                pass  # nothing was committed after since: nothing changed
            elif tail_is_short(len(facts) - since, len(expect)):
                changed = scan_tail(expect, ((f[0], f[2], f[3]) for f in facts[since:]))
                if changed is not None:
                    self._check_latest([changed])  # raises, with the field's latest seq
            else:
                self._check_latest(expect)
            self._store_blobs(blobs)
            return self._append_locked(writes)

    def _check_latest(self, expect: Sequence[Expectation]) -> None:
        """:raises ConflictError: unless each field's latest seq is the expected one"""
        if expect:
            self._index_latest()
        for namespace, field, expected in expect:
            actual = self._latest.get((namespace, field), 0)
            if actual != expected:
                raise conflict(namespace, field, expected, actual)

    def _append_locked(self, writes: Sequence[Write]) -> list[tuple[int, float]]:
        """Append ``writes`` (the lock held); see :meth:`append`."""
        seq = len(self._facts)
        last_time = self._facts[-1][1] if self._facts else 0.0
        new_facts = []
        for write in writes:
            seq += 1
            last_time = write.time if write.time > last_time else last_time
            new_facts.append(
                (seq, last_time, write.namespace, write.field, write.data, write.context)
            )
        # Readers slice the list without the lock: one extend makes the whole
        # transaction visible at once, never half of it. It is the commit point: the
        # namespace index is derived from the list later (see _index), so an
        # interrupt cannot leave indexed facts that never reached the log.
        if new_facts:
            first = new_facts[0][0]
            link = chain_step(
                self._head,
                first,
                [f[1] for f in new_facts],
                [fact_hash(f[2], f[3], f[5], f[4]) for f in new_facts],
            )
        self._facts.extend(new_facts)
        if new_facts:
            # After the facts, under the lock chain_links takes: a verifier that
            # sees a link sees its facts.
            self._chain.append((seq, link))
            self._head = link
        assigned = [(fact[0], fact[1]) for fact in new_facts]
        if self._waiting:
            self._changed.notify_all()
        return assigned

    def append_one(
        self, namespace: str, field: str, data: bytes | None, context: str, time: float
    ) -> tuple[int, float]:
        # ``with``, not acquire() then try: Ctrl-C can come right after acquire()
        # returns, before the try, and would leave the lock held for ever.
        with self._lock:
            facts = self._facts
            seq = len(facts) + 1
            if facts and facts[-1][1] > time:
                time = facts[-1][1]
            link = single_step(
                self._head,
                seq,
                time,
                fact_hash(namespace, field, context, data),
            )
            facts.append((seq, time, namespace, field, data, context))
            self._chain.append((seq, link))
            self._head = link
            if self._waiting:
                self._changed.notify_all()
            return seq, time

    def _index(self) -> None:
        """Bring the namespace index up to the end of the log (under the lock).

        O(facts since the last call). Idempotent fact by fact: an interrupt midway
        leaves no fact indexed twice on the next call.
        """
        by_namespace = self._by_namespace
        facts = self._facts
        removed = self._removed
        while self._indexed < len(facts):
            fact = facts[self._indexed]
            if removed and fact[0] in removed:
                self._indexed += 1
                continue
            in_namespace = by_namespace.get(fact[2])
            if in_namespace is None:
                by_namespace[fact[2]] = [fact]
            elif in_namespace[-1][0] < fact[0]:
                in_namespace.append(fact)
            self._indexed += 1

    def _index_latest(self) -> None:
        """Bring ``_latest`` up to the end of the log: O(facts since the last call)."""
        latest = self._latest
        removed = self._removed
        for seq, _, namespace, field, _, _ in self._facts[self._latest_upto :]:
            if seq not in removed:
                latest[(namespace, field)] = seq
        self._latest_upto = len(self._facts)

    def token_reader(self) -> Callable[[], Hashable]:
        return self._facts.__len__

    def token_after_commit(self, before: Hashable, count: int) -> Hashable | None:
        length = len(self._facts)
        return length if type(before) is int and length == before + count else None

    def put_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None:
        with self._lock:
            self._store_blobs(blobs)

    def _store_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None:
        # One dict.update: every blob becomes visible at once, or none does.
        if blobs:
            self._blobs.update((d, bytes(b)) for d, b in blobs if d not in self._blobs)

    def get_blob(self, digest: bytes) -> bytes | None:
        return self._blobs.get(digest)

    def blobs_after(self, digest: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            after = bytes(digest)
            page = heapq.nsmallest(limit, (key for key in self._blobs if key > after))
            return [(key, self._blobs[key]) for key in page]

    def load_namespace(self, namespace: str) -> tuple[int, list[Fact]]:
        with self._lock:
            self._check_open()
            self._index()
            return len(self._facts), list(map(_as_fact, self._by_namespace.get(namespace, ())))

    def load_namespaces(self, prefix: str) -> tuple[int, dict[str, list[Fact]]]:
        # Under the lock, so the index holds exactly the log's facts: one snapshot.
        with self._lock:
            self._check_open()
            self._index()
            by_namespace = self._by_namespace
            paths = self._paths_under(prefix)
            loaded = {path: list(map(_as_fact, by_namespace[path])) for path in paths}
            return len(self._facts), loaded

    def facts_since(self, seq: int, limit: int | None = None) -> list[Fact]:
        # Seqs are list positions (seq n is at index n - 1), so this is a slice.
        if not self._removed:
            return list(map(_as_fact, self._facts[seq : None if limit is None else seq + limit]))
        with self._lock:
            removed = self._removed
            kept = (fact for fact in self._facts[seq:] if fact[0] not in removed)
            return list(map(_as_fact, itertools.islice(kept, limit)))

    def wait_for_change(self, token: Hashable, timeout: float | None) -> bool:
        with self._changed:
            self._waiting += 1
            try:
                return self._changed.wait_for(lambda: len(self._facts) != token, timeout)
            finally:
                self._waiting -= 1

    def last_seq(self) -> int:
        return len(self._facts)

    def change_token(self) -> Hashable:
        return len(self._facts)

    def namespaces(self, prefix: str, upto_seq: int | None = None) -> list[str]:
        with self._lock:
            self._index()
            paths = self._paths_under(prefix)
            return [
                path
                for path in paths
                if upto_seq is None or self._by_namespace[path][0][0] <= upto_seq
            ]

    def namespaces_after(
        self, prefix: str, upto_seq: int | None, after: str, limit: int | None
    ) -> list[str]:
        with self._lock:
            self._index()
            paths = self._paths_under(prefix)
            found: list[str] = []
            for path in paths[bisect.bisect_right(paths, after) if after else 0 :]:
                if limit is not None and len(found) >= limit:
                    break
                if upto_seq is None or self._by_namespace[path][0][0] <= upto_seq:
                    found.append(path)
            return found

    def _paths_under(self, prefix: str) -> list[str]:
        """The indexed paths equal to or under ``prefix``, sorted (under the lock)."""
        if not prefix:
            return list(self._by_namespace)
        # "/" sorts just after "." and before "0": "a/..." paths follow "a".
        paths = [prefix] if prefix in self._by_namespace else []
        paths += self._by_namespace.irange(prefix + "/", prefix + "0", inclusive=(True, False))
        return paths

    def seq_at_time(self, when: float) -> int:
        return bisect.bisect_right(self._facts, when, key=_time_of)

    def chain_links(self, after: int, limit: int | None = None) -> list[tuple[int, bytes]]:
        with self._lock:
            chain = self._chain
            start = bisect.bisect_right(chain, (after, b"\xff" * 33))
            return chain[start:] if limit is None else chain[start : start + limit]

    def chain_head(self) -> tuple[int, bytes]:
        with self._lock:
            return self._chain[-1] if self._chain else (0, GENESIS)

    def erase_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        with self._changed:
            self._check_latest(expect)
            facts = self._facts
            wanted = self._present(seqs)
            for seq in wanted:
                seq_, when, namespace, field, data, context = facts[seq - 1]
                if erasable(data):
                    marker = erased_marker(fact_hash(namespace, field, context, data))
                    facts[seq - 1] = (seq_, when, namespace, field, marker, context)
            self._reindex()
            return self._append_locked([record])[0]

    def remove_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        with self._changed:
            self._check_latest(expect)
            self._removed.update(self._present(seqs))
            self._reindex()
            return self._append_locked([record])[0]

    def _present(self, seqs: Sequence[int]) -> list[int]:
        """``seqs`` if every one is a fact of the log (under the lock)."""
        wanted = list(seqs)
        last = len(self._facts)
        present = {
            seq
            for seq in wanted
            if type(seq) is int and 0 < seq <= last and seq not in self._removed
        }
        check_present(wanted, present, "this Memory log")
        return wanted

    def _reindex(self) -> None:
        """Rebuild the derived indexes after a rewrite (under the lock)."""
        self._by_namespace.clear()
        self._indexed = 0
        self._latest.clear()
        self._latest_upto = 0

    def close(self) -> None:
        # The log lives as long as this object: other Stores may still share it.
        pass

    def _check_open(self) -> None:
        pass
