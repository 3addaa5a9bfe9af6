"""Store: the engine with attribute access and time travel on top."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from .engine import Engine
from .engine.integrity import Erasure, Retention
from .integrity.erasure import erase
from .integrity.retention import prune
from .storage import Storage
from .temporal import StoreView

__all__ = ["Store"]


class Store(Engine):
    """Namespaced, versioned storage over one backend.

    ``Store()`` keeps everything in memory; ``Store(Sqlite3(path))`` is the embedded
    default; see :func:`everstore.open` for URLs. A Store is thread-safe and may be
    shared by threads; processes share a database, each with its own Store. Its
    engine methods (docs/engine.md) are what layers build on.

    >>> store = Store()
    >>> player = store.storage("game", "player1")
    >>> player.score = 100
    >>> player.score
    100
    """

    def storage(self, *namespace: str, virtual: dict[str, Any] | None = None) -> Storage:
        """A handle on one namespace (loaded on first touch, then kept in memory).

        Complexity: O(1) once loaded; the first touch reads that namespace's facts.

        :raises InvalidNameError: if the namespace is not one or more printable str
        """
        return Storage(*namespace, store=self, virtual=virtual)

    def as_of(self, *, seq: int | None = None, time: float | None = None) -> StoreView:
        """A read-only view of the whole store as it was at ``seq`` or ``time``.

        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> doc.v = 1
        >>> past = store.last_seq
        >>> doc.v = 2
        >>> store.as_of(seq=past).storage("doc").v
        1

        :raises TypeError: unless exactly one of ``seq`` and ``time`` is given
        :raises ValueError: for a negative seq
        """
        if (seq is None) == (time is None):
            raise TypeError("as_of() needs exactly one of seq= or time=")
        self.sync()
        if time is not None:
            seq = self.seq_at_time(time)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"as_of(seq=...) needs a non-negative int, got {seq!r}")
        return StoreView(self, seq)

    def erase(
        self,
        namespace: str | tuple[str, ...],
        field: str | None = None,
        *,
        reason: str,
        by: str | None = None,
    ) -> Erasure:
        """Erase a subject's values: every stored value of ``namespace`` (of its
        ``field`` only, when given) is replaced in the log by an erasure marker, and
        an erasure record saying what, why (``reason``), who (``by``, and the code
        location of the call) and when is appended, in one transaction.

        The log keeps its shape: each erased fact keeps its seq, time, field and code
        location, and in place of its value the SHA-256 of the fact, so the hash chain
        still verifies (:meth:`verify` lists the erasures). Every read of an erased
        value, current or past, in this process and in others, then gives an
        :class:`~everstore.Erased` marker. Values written after the erasure are kept.
        This and :meth:`prune` are the only ways a value leaves the log
        (docs/integrity.md, "Erasure").

        >>> store = Store()
        >>> person = store.storage("people", "ann")
        >>> person.email = "ann@example.org"
        >>> done = store.erase(("people", "ann"), "email", reason="GDPR request 42")
        >>> person.email
        Erased('...')
        >>> store.verify().ok, store.verify().erasures[0].reason
        (True, 'GDPR request 42')

        :param namespace: the namespace, as a tuple of parts or one part
        :param field: one field of it, or None for all of its fields
        :param reason: why, kept in the record (not empty)
        :param by: who asked, kept in the record
        :return: the :class:`~everstore.Erasure` its record stands for
        :raises MissingFieldError: the namespace (or the field) holds no fact
        :raises InvalidNameError: for a namespace or field that is not a name
        :raises TypeError: for a ``reason`` or ``by`` that is not a str
        :raises ValueError: for an empty ``reason``
        :raises RuntimeError: inside a transaction of the calling thread
        :raises ReadOnlyError: the store is read-only
        """
        parts = (namespace,) if isinstance(namespace, str) else tuple(namespace)
        return erase(self, parts, field, reason, by)

    def prune(
        self,
        before: int | float | dt.datetime,
        namespaces: str | tuple[str, ...] | None = None,
        archive: str | os.PathLike[str] | None = None,
    ) -> Retention | None:
        """Move old history out of the live log: every fact before ``before`` of the
        namespaces under ``namespaces`` (all of them when None) that no current value
        needs leaves the log, into ``archive`` (an SQLite file that
        ``Store(Sqlite3(archive, readonly=True))`` reads like any store) or dropped
        when no archive is given. Current values stay, and so does everything a
        current value is rebuilt from (a list's last full value and its changes).

        A retention record (the range, how many facts, the chain's link at the cut and
        a digest of the facts kept before it, the archive) is appended in the same
        transaction, so :meth:`verify` still passes and lists it. The log must verify
        first. Reading a pruned namespace as of a seq up to the cut raises
        :class:`~everstore.errors.PrunedHistoryError` naming the archive; its
        histories start at their first kept fact. This and :meth:`erase` are the only
        ways facts leave the log (docs/integrity.md, "Retention").

        >>> store = Store()
        >>> log = store.storage("sensor")
        >>> for reading in range(5):
        ...     log.value = reading
        >>> kept = store.prune(before=store.last_seq + 1)
        >>> kept.removed, log.value, store.verify().ok
        (4, 4, True)

        :param before: a seq (facts before it), a unix time or an aware datetime
            (facts written before it); the cut falls at the end of the last commit
            before it
        :param namespaces: one namespace part, a tuple of parts, or None for all
        :param archive: where pruned facts go (created, or an earlier archive that
            takes more); None drops them
        :return: the :class:`~everstore.Retention` recorded, or None when nothing
            before ``before`` could go
        :raises IntegrityError: the log does not verify (nothing is pruned)
        :raises ConflictError: another prune committed meanwhile (nothing is pruned)
        :raises TypeError: for arguments of the wrong type
        :raises ValueError: for a seq below 1, a time that is not finite or a naive
            datetime
        :raises InvalidNameError: for namespaces that are not names
        :raises RuntimeError: inside a transaction of the calling thread
        :raises ReadOnlyError: the store is read-only
        """
        return prune(self, before, namespaces, archive)
