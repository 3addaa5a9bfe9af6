"""The interface every backend implements, and helpers they share.

A backend is the log itself: it appends facts atomically, gives each a ``seq`` and a
``time``, and answers the few reads the Store needs (one namespace, the facts after a
seq, namespace listing). It knows nothing of codecs or caches; ``data`` is opaque
bytes, or None for a tombstone.
"""

from __future__ import annotations

import abc
import bisect
import time as _time
from collections.abc import Callable, Container, Hashable, Iterable, Sequence

from ..errors import ConflictError, MissingFactError
from ..log import Fact, Write

#: a fact with the link of the commit it ends (None inside a commit):
#: ``(seq, time, namespace, field, data, context, link)``
ChainedFact = tuple[int, float, str, str, bytes | None, str, bytes | None]

__all__ = [
    "TAIL_BASE",
    "TAIL_PER_EXPECTATION",
    "Backend",
    "ChainedFact",
    "Expectation",
    "check_present",
    "conflict",
    "scan_tail",
    "tail_is_short",
]

#: ``(namespace, field, seq)``: the field's latest seq must be ``seq`` (0: unwritten)
Expectation = tuple[str, str, int]

#: How long a log tail :meth:`Backend.append_checked` scans, per expectation, before
#: looking up each field's latest fact instead (plus a constant, for few expectations).
TAIL_PER_EXPECTATION = 4
TAIL_BASE = 64

#: The version of the log schema this release writes; stored in every database.
# 1: everstore 0.1.0; 2: adds the content-addressed blob table; 3: SQLite's blob table
# as a rowid table (no change on PostgreSQL); 4: SQLite's hash chain (docs/integrity.md)
SCHEMA_VERSION = 4


def check_present(seqs: Sequence[int], present: Container[int], where: str) -> None:
    """What a rewrite checks of the seqs it is given.

    :raises MissingFactError: unless each of ``seqs`` is ``present`` (in the log of
        ``where``, a backend's description)
    """
    missing = [seq for seq in seqs if seq not in present]
    if missing:
        raise MissingFactError(f"seqs {missing[:5]} are not facts of {where}")


class Backend(abc.ABC):
    """Abstract persistence: one append-only log of facts.

    Contract (checked by ``tests/test_conformance.py`` for every backend):

    * :meth:`append` is atomic: all of its writes are committed, or none.
    * Seqs are strictly increasing integers given at commit; times never decrease
      in seq order.
    * :meth:`facts_since` never skips a fact: once it returned seq ``n``, no fact
      with a seq below ``n`` can appear later.
    * Nothing committed is ever updated or deleted.
    """

    #: short name used in messages and URLs ("memory", "sqlite", ...)
    kind: str = "backend"

    @abc.abstractmethod
    def open(self) -> None:
        """Create the schema if missing, check it otherwise. Idempotent."""

    @abc.abstractmethod
    def append(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation] = (),
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        """Commit ``writes`` atomically; return ``(seq, time)`` for each, in order.

        ``blobs`` (pairs as :meth:`put_blobs` takes) are stored with the writes: in
        the same database transaction where the backend can, else just before them.
        They are never missing once the writes are committed; they may stay stored
        when the writes are refused (content-addressed bytes no fact refers to are
        harmless).

        A write's ``time`` is the caller's clock; the committed time is raised to the
        latest committed time when the clock is behind, so time never decreases.
        Each ``(namespace, field, seq)`` in ``expect`` must name the field's latest
        committed seq (0: never written) when the writes commit, or nothing is
        written and :class:`~everstore.errors.ConflictError` is raised.
        """

    def append_checked(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation],
        since: int,
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        """:meth:`append`, for expectations that the caller found true in the log as
        it was at some seq at or after ``since`` (each at its own seq, perhaps).

        Then a field has changed since its expectation was found true if, and only if,
        a fact after ``since`` is of that field and has a seq above the expected one:
        a backend may look at the log's tail after ``since`` (short, unless others
        wrote much meanwhile) instead of each field's latest fact. The answer, and the
        :class:`~everstore.errors.ConflictError` raised, are the same as
        :meth:`append`'s; this default is :meth:`append`.
        """
        return self.append(writes, expect, blobs)

    def append_one(
        self, namespace: str, field: str, data: bytes | None, context: str, time: float
    ) -> tuple[int, float]:
        """Commit one write; same contract as :meth:`append` (override to go faster)."""
        return self.append([Write(namespace, field, data, context, time)])[0]

    def token_reader(self) -> Callable[[], Hashable]:
        """A zero-argument callable returning :meth:`change_token`, as cheap as possible.

        The Store fetches it once after :meth:`open` and calls it on every read.
        """
        return self.change_token

    @abc.abstractmethod
    def load_namespace(self, namespace: str) -> tuple[int, list[Fact]]:
        """``(high_water, facts)``: every fact of one namespace in seq order, read in
        one snapshot whose last seq is ``high_water``."""

    def load_namespaces(self, prefix: str) -> tuple[int, dict[str, list[Fact]]]:
        """``(high_water, facts by namespace)``: every namespace (as an ``a/b`` path)
        equal to or under ``prefix`` (``""``: all of them) that holds a fact, with all
        of its facts in seq order, read in one snapshot whose last seq is
        ``high_water``: exactly the facts with a seq up to it. The dict's order is
        unspecified.

        The answer is built whole, not streamed: a stream would hold its snapshot (a
        read transaction, a connection, the backend's lock) open while the caller
        works, and a caller reading the store meanwhile (a fact hook touching another
        namespace) would wait for it or fail. The price is the memory of those facts
        for the time of the call.

        This default lists :meth:`namespaces` and reads each with
        :meth:`load_namespace`, one query apiece, keeping the facts up to the seq
        :meth:`last_seq` gave first (those are committed already, and no fact with a
        lower seq can appear later): correct, but slow; backends override it with one
        read.
        """
        high = self.last_seq()
        loaded: dict[str, list[Fact]] = {}
        for path in self.namespaces(prefix, high):
            _, facts = self.load_namespace(path)
            loaded[path] = [fact for fact in facts if fact.seq <= high]
        return high, loaded

    @abc.abstractmethod
    def facts_since(self, seq: int, limit: int | None = None) -> list[Fact]:
        """Committed facts with a seq above ``seq``, in seq order (at most ``limit``)."""

    @abc.abstractmethod
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty log)."""

    def storage_size(self) -> int | None:
        """Bytes the store takes in its database, or None where that has no meaning
        (a log in memory). The default knows of no storage."""
        return None

    @abc.abstractmethod
    def change_token(self) -> Hashable:
        """A cheap value that differs whenever another writer may have committed.

        False alarms are allowed (they cost one :meth:`facts_since`); a missed change
        is not. Called on every read, so it must cost well under a microsecond.
        """

    @abc.abstractmethod
    def namespaces(self, prefix: str, upto_seq: int | None = None) -> list[str]:
        """Namespaces (as ``a/b`` paths) equal to or under ``prefix`` that hold at
        least one fact with a seq up to ``upto_seq`` (all facts when None), sorted."""

    def namespaces_after(
        self, prefix: str, upto_seq: int | None, after: str, limit: int | None
    ) -> list[str]:
        """One page of :meth:`namespaces`: those of its paths that sort after the path
        ``after`` (all when it is ``""``), at most ``limit`` of them (all when None).

        This default lists :meth:`namespaces` and cuts the page out of it: correct,
        but it reads every name; backends override it with a read of the page only.
        """
        paths = self.namespaces(prefix, upto_seq)
        start = bisect.bisect_right(paths, after) if after else 0
        stop = len(paths) if limit is None else start + limit
        return paths[start:stop]

    @abc.abstractmethod
    def seq_at_time(self, when: float) -> int:
        """The highest seq whose time is at or before ``when`` (0 if none)."""

    def token_after_commit(self, before: Hashable, count: int) -> Hashable | None:
        """Called right after this backend object committed ``count`` facts, with
        ``before`` the change token the Store held, and had checked was current, just
        before that commit: the current change token if it proves that nobody else
        committed since ``before``, else None (the Store then re-reads the log's tail
        on its next read). The default proves nothing.
        """
        return None

    def put_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None:
        """Store ``(digest, data)`` pairs in the blob table, atomically.

        ``digest`` is the 32-byte SHA-256 of ``data`` (the caller computes it; the
        backend trusts it). A digest already stored is left as it is: blobs are
        content-addressed, so the same digest always holds the same bytes. Blobs, like
        facts, are never updated or deleted.
        """
        raise NotImplementedError(f"{type(self).__name__} has no blob table")

    def get_blob(self, digest: bytes) -> bytes | None:
        """The bytes stored under ``digest`` (32 bytes), or None if there are none."""
        raise NotImplementedError(f"{type(self).__name__} has no blob table")

    def blobs_after(self, digest: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` stored ``(digest, data)`` pairs whose digest sorts after
        ``digest`` (``b""``: from the first), in digest order (bytewise): the blob
        table page by page, as an export reads it."""
        raise NotImplementedError(f"{type(self).__name__} has no blob table")

    def wait_for_change(self, token: Hashable, timeout: float | None) -> bool:
        """Block until :meth:`change_token` differs from ``token`` or ``timeout``
        seconds pass; True if it changed. Used by followers, never by reads.

        This default polls the token with a growing pause (1 to 50 ms); backends with a
        notification channel override it.
        """
        read = self.token_reader()
        deadline = None if timeout is None else _time.monotonic() + timeout
        pause = 0.001
        while read() == token:
            if deadline is not None:
                left = deadline - _time.monotonic()
                if left <= 0:
                    return False
                pause = min(pause, left)
            _time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return True

    #: whether this backend keeps the hash chain of docs/integrity.md
    chained: bool = False

    def chain_links(self, after: int, limit: int | None = None) -> list[tuple[int, bytes]]:
        """The chain's links of the commits whose last seq is above ``after``, in seq
        order (at most ``limit``): ``(seq_last, link)`` with ``link`` the 32-byte
        :func:`everstore.integrity.chain_step` of that commit.

        :raises NotImplementedError: the backend keeps no chain (``chained`` is False)
        """
        raise NotImplementedError(f"the {self.kind} backend keeps no hash chain")

    def chain_head(self) -> tuple[int, bytes]:
        """``(seq_last, link)`` of the last commit; ``(0, 32 zero bytes)`` for an
        empty log. Every fact up to ``seq_last`` is committed and readable.

        :raises NotImplementedError: the backend keeps no chain (``chained`` is False)
        """
        raise NotImplementedError(f"the {self.kind} backend keeps no hash chain")

    def chained_facts(self, after: int, limit: int) -> list[ChainedFact]:
        """The facts above seq ``after`` (at most ``limit``), each with the link of
        the commit it ends: what verification reads. This one merges
        :meth:`facts_since` with :meth:`chain_links`; a backend that keeps a link in
        the fact's row reads both at once.

        :raises NotImplementedError: the backend keeps no chain (``chained`` is False)
        """
        facts = self.facts_since(after, limit)
        if not facts:
            return []
        # Links up to the last fact's seq: after a prune, the facts of a page may span
        # more commits than the page holds facts.
        last = facts[-1].seq
        links: dict[int, bytes] = {}
        seq = after
        while page := self.chain_links(seq, limit):
            links.update(page)
            seq = page[-1][0]
            if seq >= last:
                break
        return [(*fact, links.get(fact.seq)) for fact in facts]

    # -- the sanctioned rewrites (docs/integrity.md, "Erasure" and "Retention") --------

    def erase_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        """Replace the data of the facts at ``seqs`` by erasure markers and append
        ``record``, in one transaction: the log's one rewrite of stored values. Each
        marker is :func:`everstore.integrity.erased_marker` of the fact's
        :func:`~everstore.integrity.fact_hash`, so the chain still verifies; a fact
        already erased, or a tombstone, stays as it is. The append-only guard of the
        log is lifted for that transaction only. Afterwards the change token differs
        for every Engine on this backend, the writer's included, so each one catches
        up and meets the record.

        :param expect: as :meth:`append`'s: checked before anything is changed
        :return: ``(seq, time)`` of the record
        :raises MissingFactError: a seq that is not in the log (nothing is changed)
        :raises ConflictError: an expectation does not hold (nothing is changed)
        :raises ReadOnlyError: the backend was opened read-only
        :raises NotImplementedError: the backend cannot rewrite its log
        """
        raise NotImplementedError(f"the {self.kind} backend cannot erase facts")

    def remove_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        """Delete the facts at ``seqs`` and append ``record``, in one transaction:
        the one path that removes facts (retention). The append-only guard of the
        log is lifted for that transaction only; the chain's links are kept where
        the backend keeps them apart from the facts.

        :param expect: as :meth:`append`'s: checked before anything is changed
        :return: ``(seq, time)`` of the record
        :raises MissingFactError: a seq that is not in the log (nothing is changed)
        :raises ConflictError: an expectation does not hold (nothing is changed)
        :raises ReadOnlyError: the backend was opened read-only
        :raises NotImplementedError: the backend cannot rewrite its log
        """
        raise NotImplementedError(f"the {self.kind} backend cannot remove facts")

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files. Idempotent."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def conflict(namespace: str, field: str, expected: int, actual: int) -> ConflictError:
    """The error for a failed expectation, worded the same by every backend."""
    return ConflictError(
        f"field {field!r} of namespace {namespace!r} is at seq {actual}, not {expected}: "
        "another writer changed it first; nothing was written"
    )


def scan_tail(
    expect: Sequence[Expectation], tail: Iterable[tuple[int, str, str]]
) -> tuple[str, str, int] | None:
    """The first expectation that ``tail`` (``(seq, namespace, field)`` of the facts
    after :meth:`Backend.append_checked`'s ``since``) shows changed, or None."""
    expected = {(namespace, field): seq for namespace, field, seq in expect}
    for seq, namespace, field in tail:
        wanted = expected.get((namespace, field))
        if wanted is not None and seq > wanted:
            return namespace, field, wanted
    return None


def tail_is_short(tail_length: int, expectations: int) -> bool:
    """Whether scanning a tail of ``tail_length`` facts beats ``expectations`` look-ups."""
    return tail_length <= TAIL_BASE + TAIL_PER_EXPECTATION * expectations
