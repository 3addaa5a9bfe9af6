"""The Memory backend: the log as a Python list, for tests and throwaway stores.

Several Stores may share one ``Memory()`` in one process; they see each other's
writes exactly as processes sharing a database file do.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Hashable, Sequence

from sortedcontainers import SortedDict

from ..log import Fact, Write
from .base import Backend, Expectation, conflict

__all__ = ["Memory"]

# tuple.__new__ builds a NamedTuple without the Python-level __new__ frame.
_new_fact = tuple.__new__


class Memory(Backend):
    """An in-memory log. Appends are O(1); loading a namespace is O(its facts).

    >>> from everstore import Store
    >>> store = Store(Memory())
    >>> store.storage("doc").x = 1
    >>> store.storage("doc").x
    1
    """

    kind = "memory"

    def __init__(self) -> None:
        self._facts: list[Fact] = []
        self._times: list[float] = []
        # Sorted by path, so that listing a prefix is O(log n + k), not a scan.
        self._by_namespace: SortedDict = SortedDict()
        #: (namespace, field) -> latest seq, for conditional writes
        self._latest: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def open(self) -> None:
        self._check_open()

    def append(
        self, writes: Sequence[Write], expect: Sequence[Expectation] = ()
    ) -> list[tuple[int, float]]:
        with self._changed:
            for namespace, field, expected in expect:
                actual = self._latest.get((namespace, field), 0)
                if actual != expected:
                    raise conflict(namespace, field, expected, actual)
            seq = len(self._facts)
            last_time = self._times[-1] if self._times else 0.0
            new_facts: list[Fact] = []
            for write in writes:
                seq += 1
                last_time = write.time if write.time > last_time else last_time
                new_facts.append(
                    Fact(seq, last_time, write.namespace, write.field, write.data, write.context)
                )
            # Readers slice the list without the lock: one extend makes the whole
            # transaction visible at once, never half of it.
            for fact in new_facts:
                self._by_namespace.setdefault(fact.namespace, []).append(fact)
                self._latest[(fact.namespace, fact.field)] = fact.seq
            self._times.extend(fact.time for fact in new_facts)
            self._facts.extend(new_facts)
            assigned = [(fact.seq, fact.time) for fact in new_facts]
            self._changed.notify_all()
            return assigned

    def append_one(
        self, namespace: str, field: str, data: bytes | None, context: str, time: float
    ) -> tuple[int, float]:
        with self._changed:
            facts = self._facts
            seq = len(facts) + 1
            times = self._times
            if times and times[-1] > time:
                time = times[-1]
            fact = _new_fact(Fact, (seq, time, namespace, field, data, context))
            facts.append(fact)
            times.append(time)
            in_namespace = self._by_namespace.get(namespace)
            if in_namespace is None:
                self._by_namespace[namespace] = [fact]
            else:
                in_namespace.append(fact)
            self._latest[(namespace, field)] = seq
            self._changed.notify_all()
            return seq, time

    def token_reader(self) -> Callable[[], Hashable]:
        return self._facts.__len__

    def load_namespace(self, namespace: str) -> tuple[int, list[Fact]]:
        with self._lock:
            self._check_open()
            return len(self._facts), list(self._by_namespace.get(namespace, ()))

    def facts_since(self, seq: int, limit: int | None = None) -> list[Fact]:
        # Seqs are list positions (seq n is at index n - 1), so this is a slice.
        return self._facts[seq : None if limit is None else seq + limit]

    def wait_for_change(self, token: Hashable, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._facts) != token, timeout)

    def last_seq(self) -> int:
        return len(self._facts)

    def change_token(self) -> Hashable:
        return len(self._facts)

    def namespaces(self, prefix: str, upto_seq: int | None = None) -> list[str]:
        with self._lock:
            if prefix:
                # "/" sorts just after "." and before "0": "a/..." paths follow "a".
                paths = [prefix] if prefix in self._by_namespace else []
                paths += self._by_namespace.irange(
                    prefix + "/", prefix + "0", inclusive=(True, False)
                )
            else:
                paths = list(self._by_namespace)
            return [
                path
                for path in paths
                if upto_seq is None or self._by_namespace[path][0].seq <= upto_seq
            ]

    def seq_at_time(self, when: float) -> int:
        return bisect.bisect_right(self._times, when)

    def close(self) -> None:
        # The log lives as long as this object: other Stores may still share it.
        pass

    def _check_open(self) -> None:
        pass
