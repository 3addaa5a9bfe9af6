"""The engine's integrity (docs/integrity.md): verification and checkpoints over the
hash chain, and its side of the log's sanctioned rewrites (erasure and retention): a
cached namespace is loaded again when a record of an erasure or a retention that
covers it arrives, and reads of pruned history are refused."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, DecodeError, PrunedHistoryError
from ..integrity import VerifyReport, checkpoint_of, verify_backend
from ..log import ERASURE_FIELD, RECORDS_NAMESPACE, RETENTION_FIELD, Fact
from .namespace import Namespace

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..codec import Codec

__all__ = ["Erasure", "Integrity", "Retention", "covers"]

#: the record fields whose arrival loads the namespaces they name again
_REWRITE_FIELDS = frozenset({ERASURE_FIELD, RETENTION_FIELD})


def covers(prefix: str, path: str) -> bool:
    """True if namespace ``path`` is ``prefix`` or under it (``""`` covers all).

    >>> covers("a", "a/b"), covers("a", "ab"), covers("", "x")
    (True, False, True)
    """
    return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Retention:
    """What one :meth:`everstore.Store.prune` recorded: ``removed`` facts of the
    namespaces under ``prefix`` (all for ``""``), at seqs ``first`` to ``last``, left
    the live log, into ``archive`` (None: dropped), by the record at ``seq`` at
    ``time``. Verification covers the log up to ``through`` by the digest ``kept``
    of the facts left there, and chains on from ``link``, the chain's link at
    ``through`` (both hex)."""

    seq: int
    time: float
    prefix: str
    through: int
    removed: int
    first: int
    last: int
    archive: str | None
    link: str
    kept: str
    context: str


@dataclass(frozen=True)
class Erasure:
    """One erasure, as its record in the log says: the facts at ``erased`` (seqs) of
    ``namespace`` (of ``field`` only, unless None) lost their values, for ``reason``,
    asked by ``by`` from the code at ``context``, by the record at ``seq`` at
    ``time``."""

    seq: int
    time: float
    namespace: str
    field: str | None
    erased: tuple[int, ...]
    reason: str
    by: str | None
    context: str


class Integrity:
    """Mixed into :class:`~everstore.engine.Engine`; uses its backend, codec, lock,
    cache and :meth:`_fill_locked`."""

    #: the erasure and retention records, oldest first; None until first needed
    _records: tuple[list[Erasure], list[Retention]] | None = None

    if TYPE_CHECKING:
        backend: Backend
        codec: Codec
        _lock: threading.RLock
        _by_path: dict[str, Namespace]

        def check_open(self) -> None: ...
        def sync(self) -> None: ...
        def _fill_locked(
            self, ns: Namespace, high: int, facts: list[Fact], rewritten: bool = False
        ) -> None: ...
        def _drop_mutable(self, ns: Namespace, field: str) -> None: ...

    def _chained_backend(self) -> Backend:
        self.check_open()
        if not self.backend.chained:
            raise BackendError(f"the {self.backend.kind} backend keeps no hash chain to verify")
        return self.backend

    def verify(
        self, against: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> VerifyReport:
        """Recompute the hash chain over the whole log and compare it with the links
        stored beside it: the first fact changed, deleted, inserted or reordered, or
        the log truncated, is reported with its seq. With ``against`` (a
        :meth:`checkpoint` kept elsewhere), also check that the log still extends
        it: a truncation or a restored older backup, chain and all, is found too.

        Facts committed while it runs are left for the next call: it checks the log
        up to the chain's head when it starts. O(n): one SHA-256 per fact and one
        per commit.

        >>> from everstore import Engine
        >>> store = Engine()
        >>> store.write(store.namespace(("doc",)), "title", "a", "m.f:1")
        >>> kept = store.checkpoint()
        >>> store.verify(against=kept).ok
        True

        :param against: a checkpoint, ``es1:<seq>:<hex>``
        :param progress: called now and then with ``(facts checked, facts in all)``
        :return: a :class:`~everstore.integrity.VerifyReport` (true when ok)
        :raises ValueError: for an ``against`` that is not a checkpoint
        :raises BackendError: the backend keeps no chain
        :raises StoreClosedError: if the Engine is closed
        """
        backend = self._chained_backend()
        self.sync()  # records committed since the last read are read again
        return verify_backend(backend, against, progress, self.erasures(), self.retentions())

    def checkpoint(self, seq: int | None = None) -> str:
        """A short digest of the log up to ``seq`` (the latest when None), to keep
        elsewhere and give to :meth:`verify` later: ``es1:<seq>:<32 hex digits>``.

        The digest is the chain's link of the commit holding ``seq``, so the
        checkpoint's seq is that commit's last one (``seq`` itself for a commit of
        one fact). O(log n).

        :raises ValueError: for a seq that is not an int from 0 to the last seq
        :raises BackendError: the backend keeps no chain, or no link at ``seq``
        :raises StoreClosedError: if the Engine is closed
        """
        try:
            return checkpoint_of(self._chained_backend(), seq)
        except LookupError as exc:
            raise BackendError(str(exc)) from None

    def retentions(self) -> list[Retention]:
        """Every prune recorded in the log, oldest first. O(records) once read.

        >>> from everstore import Engine
        >>> Engine().retentions()
        []
        """
        return list(self._read_records()[1])

    def erasures(self) -> list[Erasure]:
        """Every erasure recorded in the log, oldest first. O(records) once read.

        >>> from everstore import Engine
        >>> Engine().erasures()
        []
        """
        return list(self._read_records()[0])

    def _read_records(self) -> tuple[list[Erasure], list[Retention]]:
        with self._lock:
            if self._records is None:
                _, facts = self.backend.load_namespace(RECORDS_NAMESPACE)
                erasures: list[Erasure] = []
                retentions: list[Retention] = []
                for fact in facts:
                    record = self._record(fact)
                    if fact.field == ERASURE_FIELD and (e := _erasure(fact, record)):
                        erasures.append(e)
                    elif fact.field == RETENTION_FIELD and (r := _retention(fact, record)):
                        retentions.append(r)
                self._records = (erasures, retentions)
            return self._records

    def check_unpruned(self, path: str, upto: int) -> None:
        """:raises PrunedHistoryError: if namespace ``path`` as of seq ``upto`` is
        history a prune moved out of the live log (naming the archive)"""
        # The records themselves, not retentions()'s copy: this runs on every read
        # as of a seq.
        for retention in reversed(self._read_records()[1]):
            if upto <= retention.through and covers(retention.prefix, path):
                where = (
                    f"in the archive {retention.archive!r}"
                    if retention.archive
                    else "dropped (no archive was given)"
                )
                raise PrunedHistoryError(
                    f"the history of namespace {path!r} up to seq {retention.through} was "
                    f"pruned (record at seq {retention.seq}): it is {where}; seq {upto} "
                    "is before that",
                    retention.archive,
                    retention.through,
                )

    def _record_arrived(self, fact: Fact) -> None:
        """Catch-up met ``fact`` of the records namespace (the lock held): after an
        erasure or a retention, the namespaces it names are loaded again."""
        if fact.field not in _REWRITE_FIELDS:
            return
        record = self._record(fact)
        prefix = record.get("prefix") if record is not None else None
        if not isinstance(prefix, str):
            return
        for path, ns in list(self._by_path.items()):
            if covers(prefix, path):
                self._reload_locked(ns)
        self._records = None

    def _reload_locked(self, ns: Namespace) -> None:
        """Load ``ns`` again from the log, in place: handles on it stay valid, and
        fact hooks see its facts with ``rewritten=True``."""
        high, facts = self.backend.load_namespace(ns.path)
        for field in list(ns.mutable):
            self._drop_mutable(ns, field)
        ns.current.clear()
        ns.fields.clear()
        self._fill_locked(ns, high, facts, True)

    def _record(self, fact: Fact) -> dict[str, Any] | None:
        """A record's value, or None for one that is not a record (not a dict)."""
        try:
            value = self.codec.decode(fact.data) if fact.data is not None else None
        except DecodeError:
            return None
        return value if isinstance(value, dict) else None


def _retention(fact: Fact, record: dict[str, Any] | None) -> Retention | None:
    if record is None:
        return None
    through, removed, first, last = (_int(record, key) for key in _RETENTION_INTS)
    prefix, link, kept = (_text(record, key) for key in ("prefix", "link", "kept"))
    if through is None or removed is None or first is None or last is None:
        return None
    if prefix is None or link is None or kept is None:
        return None
    archive = _text(record, "archive")
    return Retention(
        fact.seq,
        fact.time,
        prefix,
        through,
        removed,
        first,
        last,
        archive,
        link,
        kept,
        fact.context,
    )


_RETENTION_INTS = ("through", "removed", "first", "last")


def _int(record: dict[str, Any], key: str) -> int | None:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def _erasure(fact: Fact, record: dict[str, Any] | None) -> Erasure | None:
    if record is None:
        return None
    erased = record.get("erased")
    namespace = record.get("namespace")
    if not isinstance(namespace, str) or not isinstance(erased, list):
        return None
    if not all(type(seq) is int for seq in erased):
        return None
    return Erasure(
        fact.seq,
        fact.time,
        namespace,
        _text(record, "field"),
        tuple(erased),
        _text(record, "reason") or "",
        _text(record, "by"),
        fact.context,
    )
