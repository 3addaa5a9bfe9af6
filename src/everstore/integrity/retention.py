"""Retention: old history moved out of the live log, with a record that keeps the
chain verifiable (docs/integrity.md, "Retention"), built on the engine's and
backends' public API."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
from collections import defaultdict
from typing import TYPE_CHECKING

from ..backends.sqlite import Sqlite3
from ..engine.contexts import caller_context
from ..engine.integrity import Retention, covers
from ..engine.names import namespace_path
from ..errors import IntegrityError
from ..log import RECORDS_NAMESPACE, RETENTION_FIELD, Fact, Write
from .chain import kept_digest
from .verify import chained_upto, verify_backend

if TYPE_CHECKING:
    from ..backends.base import Backend, ChainedFact
    from ..codec import Codec
    from ..engine import Engine

__all__ = ["prune"]


def prune(
    store: Engine,
    before: int | float | dt.datetime,
    namespaces: str | tuple[str, ...] | None = None,
    archive: str | os.PathLike[str] | None = None,
    context: str | None = None,
) -> Retention | None:
    """:meth:`everstore.Store.prune` (its documentation says what it does).

    :raises TypeError: for arguments of the wrong type
    :raises ValueError: for a ``before`` that is not a seq >= 1 or a finite time
    :raises IntegrityError: the log does not verify (nothing is pruned)
    :raises ConflictError: another prune committed meanwhile (nothing is pruned)
    :raises RuntimeError: inside a transaction of the calling thread
    """
    prefix = _prefix(namespaces)
    target = None if archive is None else os.fspath(archive)
    if archive is not None and not isinstance(target, str):
        raise TypeError(f"prune(archive=...) needs a path or None, got {archive!r}")
    store.check_outside_transaction("prune()")
    store.check_open()
    cut = _cut(store, before)
    store.sync()  # the records, as verify() reads them
    backend = store.backend
    # The log is read once, for verifying it and for choosing what goes.
    high, head = backend.chain_head()
    facts = list(chained_upto(backend, high))
    erasures, retentions = store.erasures(), store.retentions()
    report = verify_backend(backend, None, None, erasures, retentions, (high, head, facts))
    if not report.ok:
        raise IntegrityError(
            f"the log does not verify ({report.kind} at seq {report.seq}: {report.message}); "
            "prune() does not cut a log it cannot vouch for, nothing was pruned",
            report,
        )
    previous = retentions[-1] if retentions else None
    through, link = _through(facts, cut, previous)
    if through == 0:
        return None
    removed = _removable(facts, through, prefix, store.codec)
    if not removed:
        return None
    where = context if context is not None else caller_context()
    if target is not None:
        _archive(target, removed, backend, prefix, through)
    gone = {fact[0] for fact in removed}
    record = {
        "prefix": prefix,
        "through": through,
        "removed": len(removed),
        "first": removed[0][0],
        "last": removed[-1][0],
        "archive": target,
        "link": link,
        "kept": kept_digest(
            fact
            for fact in itertools.takewhile(lambda f: f[0] <= through, facts)
            if fact[0] not in gone
        ),
        "before": before.isoformat() if isinstance(before, dt.datetime) else before,
    }
    write = Write(
        RECORDS_NAMESPACE, RETENTION_FIELD, store.codec.encode(record), where, store.clock()
    )
    # A prune committed since this one read the log would make this record's digest
    # wrong: the record field's latest seq must still be the one read.
    expect = [(RECORDS_NAMESPACE, RETENTION_FIELD, previous.seq if previous else 0)]
    backend.remove_facts(sorted(gone), write, expect)
    store.sync()
    return store.retentions()[-1]


def _prefix(namespaces: str | tuple[str, ...] | None) -> str:
    if namespaces is None or namespaces == ():
        return ""
    if isinstance(namespaces, str):
        return namespace_path((namespaces,))
    if isinstance(namespaces, tuple):
        return namespace_path(namespaces)
    raise TypeError(
        f"prune(namespaces=...) needs a str, a tuple of parts or None, got {namespaces!r}"
    )


def _cut(store: Engine, before: int | float | dt.datetime) -> int:
    """The last seq before ``before`` (a seq, or a time: unix seconds or datetime)."""
    if isinstance(before, bool):
        raise TypeError(f"prune(before=...) needs a seq, a time or a datetime, got {before!r}")
    if isinstance(before, int):
        if before < 1:
            raise ValueError(f"prune(before=...) needs a seq >= 1, got {before}")
        return before - 1
    if isinstance(before, dt.datetime):
        if before.tzinfo is None:
            raise ValueError("prune(before=...) needs a datetime with a timezone")
        before = before.timestamp()
    if not isinstance(before, float) or not math.isfinite(before):
        raise TypeError(f"prune(before=...) needs a seq, a time or a datetime, got {before!r}")
    return store.seq_at_time(math.nextafter(before, -math.inf))


def _through(facts: list[ChainedFact], cut: int, previous: Retention | None) -> tuple[int, str]:
    """Where the pruned stretch ends: the last commit that ends at or before ``cut``
    (never inside a commit), or the previous prune's end if it is further; and the
    chain's link there (hex). ``(0, "")`` when nothing ends before the cut."""
    start = previous.through if previous is not None else 0
    found = (start, previous.link if previous is not None else "")
    for seq, _, _, _, _, _, link in facts:
        if seq > cut:
            break
        if seq > start and link is not None:
            found = (seq, link.hex())
    return found


def _removable(facts: list[ChainedFact], through: int, prefix: str, codec: Codec) -> list[Fact]:
    """The facts up to ``through`` of namespaces under ``prefix`` that the current
    values do not need, in seq order. A field's current value is rebuilt from its
    last full value (or tombstone) and the deltas after it, and a delta may read the
    value at its base seq: all of those stay."""
    by_field: dict[tuple[str, str], list[ChainedFact]] = defaultdict(list)
    for fact in facts:
        if fact[2] != RECORDS_NAMESPACE and covers(prefix, fact[2]):
            by_field[fact[2], fact[3]].append(fact)
    removed: list[Fact] = []
    for history in by_field.values():
        keep_from = _needed_from(history, codec)
        removed += (Fact(*fact[:6]) for fact in history[:keep_from] if fact[0] <= through)
    removed.sort()
    return removed


def _needed_from(history: list[ChainedFact], codec: Codec) -> int:
    """The index in one field's ``history`` from which its facts are needed."""
    index_of = {fact[0]: index for index, fact in enumerate(history)}
    start = len(history) - 1
    while start > 0 and codec.is_delta(history[start][4]):
        start -= 1
    checked = len(history)
    while True:
        earliest = start
        for fact in history[start:checked]:
            data = fact[4]
            if codec.is_delta(data) and data is not None:
                base = index_of.get(codec.delta_base(data))
                if base is not None and base < earliest:
                    earliest = base
        if earliest == start:
            return start
        checked, start = start, earliest


def _archive(path: str, removed: list[Fact], source: Backend, prefix: str, through: int) -> None:
    """Write ``removed`` to the archive at ``path`` and flush it to disk before the
    live log lets them go."""
    archive = Sqlite3(path, synchronous="full")
    archive.open()
    try:
        origin = f"facts of {prefix or 'every namespace'!r} up to seq {through} of {source!r}"
        archive.archive_facts(removed, origin)
    finally:
        archive.close()
