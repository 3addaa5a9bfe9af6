"""Verification of the log against its hash chain (docs/integrity.md, "Verify and
checkpoints"), through the backend's public chain API only."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .chain import (
    CHECKPOINT_HEX,
    ERASED_TAG,
    GENESIS,
    chain_step,
    erased_hash,
    fact_head,
    format_checkpoint,
    kept_digest,
    named_hash,
    parse_checkpoint,
    single_step,
)

if TYPE_CHECKING:
    from ..backends.base import Backend, ChainedFact
    from ..engine.integrity import Erasure, Retention

__all__ = ["VerifyReport", "chained_upto", "checkpoint_of", "verify_backend", "verify_log"]

_ONE = struct.Struct(">QQd")
_sha256 = hashlib.sha256

#: how many encoded name triples verification keeps (a fact's names mostly repeat)
_NAMES_CACHE = 65_536

#: how many mismatching commits verification gathers to tell a reorder from a change
_REORDER_WINDOW = 64

#: facts verification reads per query
_PAGE = 20_000


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`~everstore.engine.Engine.verify` found.

    ``kind`` is None when ``ok``, else one of ``"changed"``, ``"deleted"``,
    ``"inserted"``, ``"reordered"``, ``"truncated"`` (and ``"pruned"`` for a
    checkpoint inside pruned history); ``seq`` is the first position found bad (for
    a change inside a commit of several facts: the commit's first seq). ``erased``
    lists the seqs of erased facts, which verify through the digest kept in their
    place; ``erasures`` and ``retentions`` the records that explain them.
    """

    ok: bool
    facts: int
    seq: int | None = None
    kind: str | None = None
    message: str = "the log verifies: every commit matches its link"
    erased: tuple[int, ...] = field(default=(), repr=False)
    #: the erasures and prunes the log records (filled in when ``ok``)
    erasures: tuple[Erasure, ...] = field(default=(), repr=False)
    retentions: tuple[Retention, ...] = field(default=(), repr=False)

    def __bool__(self) -> bool:
        return self.ok


def _bad(facts: int, seq: int, kind: str, message: str) -> VerifyReport:
    return VerifyReport(False, facts, seq, kind, message)


#: a commit that does not match its link: first seq, previous link, its link, its
#: facts and their hashes
_BadCommit = tuple[int, bytes, bytes, list["ChainedFact"], list[bytes]]


def _remember(names: dict[tuple[str, str, str], bytes], ns: str, fd: str, cx: str) -> bytes:
    if len(names) >= _NAMES_CACHE:
        names.clear()
    head = names[ns, fd, cx] = fact_head(ns, fd, cx)
    return head


def verify_log(
    facts: Iterable[ChainedFact],
    total: int = 0,
    progress: Callable[[int, int], None] | None = None,
    kept: Retention | None = None,
) -> VerifyReport:
    """Check ``facts`` (the whole log in seq order, each with the link of the commit
    it ends, or None inside a commit) against their chain.

    Each commit is checked against the link stored before it, so one bad commit
    does not hide the ones after it. O(n) SHA-256 calls: one per fact and one per
    commit. The fact hash of data is :func:`~everstore.integrity.named_hash`'s,
    written out here: verification's speed is this loop's.

    :param total: the number of facts expected, for ``progress``
    :param progress: called now and then with ``(facts checked, total)``
    :param kept: the latest retention: the facts up to its ``through`` are checked
        against its digest of the facts it kept, and the chain goes on from its link
    """
    names: dict[tuple[str, str, str], bytes] = {}
    erased: list[int] = []
    prev = GENESIS
    nxt = 1
    if kept is not None:
        facts, found = _check_kept(iter(facts), kept, erased)
        if found is not None:
            return found
        prev = bytes.fromhex(kept.link)
        nxt = kept.through + 1
    shown = 0 if progress is not None else 1 << 63
    report: VerifyReport | None = None
    pending: list[ChainedFact] = []
    hashes: list[bytes] = []
    bad: list[_BadCommit] = []
    sha = _sha256
    one = _ONE.pack
    erased_tag = ERASED_TAG
    for fact in facts:
        seq, when, ns, fd, data, cx, link = fact
        if seq != nxt and report is None:
            checked = nxt - 1 - len(pending) if not bad else bad[0][0] - 1
            report = _bad(checked, nxt, "deleted", f"the fact at seq {nxt} was deleted")
            if not bad:
                break
        head = names.get((ns, fd, cx)) or _remember(names, ns, fd, cx)
        if data is None:
            hashed = named_hash(head, None)
        elif len(data) == 33 and data[0] == erased_tag:
            hashed = data[1:]
            erased.append(seq)
        else:
            hashed = sha(head + data).digest()
        nxt = seq + 1
        if link is None:
            pending.append(fact)
            hashes.append(hashed)
            continue
        if pending:
            pending.append(fact)
            hashes.append(hashed)
            first = pending[0][0]
            if chain_step(prev, first, [f[1] for f in pending], hashes) != link:
                bad.append((first, prev, link, pending, hashes))
            pending = []
            hashes = []
        elif sha(prev + one(seq, 1, when) + hashed).digest() != link:
            bad.append((seq, prev, link, [fact], [hashed]))
        if bad:
            if report is None:
                report = _changed(bad[0][0] - 1, bad[0])
            elif len(bad) >= _REORDER_WINDOW:
                break
        elif seq >= shown:
            shown = seq + 0x10000
            progress(seq, total)  # type: ignore[misc]  # shown stays huge without it
        prev = link
    checked = report.facts if report is not None else nxt - 1 - len(pending)
    if report is None and pending:
        seq = pending[0][0]
        report = _bad(
            checked,
            seq,
            "inserted",
            f"the fact at seq {seq} is after the chain's last commit (seq {seq - 1}): "
            "it was inserted",
        )
    if report is not None and report.kind == "changed" and len(bad) > 1:
        report = _reorder(report, bad)
    if progress is not None:
        progress(checked, total)
    if report is not None:
        return report
    return VerifyReport(True, checked, erased=tuple(erased))


def _check_kept(
    facts: Iterator[ChainedFact], kept: Retention, erased: list[int]
) -> tuple[Iterator[ChainedFact], VerifyReport | None]:
    """Check the facts up to a retention's ``through`` against its digest; the rest
    of ``facts`` (from the first fact after it), and a report if they differ."""
    after: list[ChainedFact] = []

    def region() -> Iterator[ChainedFact]:
        for fact in facts:
            if fact[0] > kept.through:
                after.append(fact)
                return
            if erased_hash(fact[4]) is not None:
                erased.append(fact[0])
            yield fact

    digest = kept_digest(region())
    rest = itertools.chain(after, facts)
    if digest == kept.kept:
        return rest, None
    return rest, VerifyReport(
        False,
        0,
        None,
        "changed",
        f"the facts kept up to seq {kept.through} by the prune recorded at seq {kept.seq} "
        "are not the ones it kept: one was changed, deleted or inserted",
    )


def _changed(checked: int, commit: _BadCommit) -> VerifyReport:
    first, _, _, facts, _ = commit
    last = facts[-1][0]
    return _bad(
        checked,
        first,
        "changed",
        f"the fact at seq {first} was changed"
        if first == last
        else f"a fact of the commit of seqs {first}..{last} was changed",
    )


def _reorder(report: VerifyReport, bad: list[_BadCommit]) -> VerifyReport:
    """``report`` as a reorder if the first bad commit's fact, with its link, fits
    the place of a later bad commit (a row moved with its link, as on SQLite), or if
    putting a fact of a later bad commit in the first bad commit's place makes that
    commit match its stored link (a fact moved without it)."""
    first, prev, link, facts, hashes = bad[0]
    if len(facts) == 1:
        for place, place_prev, *_ in bad[1:]:
            if single_step(place_prev, place, facts[0][1], hashes[0]) == link:
                return _moved(report, first, place)
    tries = 0
    for _, _, _, others, other_hashes in bad[1:]:
        for candidate, moved in zip(others, other_hashes, strict=True):
            for position in range(len(facts)):
                tries += 1
                if tries > 10_000:
                    return report
                trial = [*hashes[:position], moved, *hashes[position + 1 :]]
                times = [f[1] for f in facts]
                times[position] = candidate[1]
                if chain_step(prev, first, times, trial) == link:
                    return _moved(report, first + position, candidate[0])
    return report


def _moved(report: VerifyReport, seq: int, place: int) -> VerifyReport:
    return _bad(
        report.facts,
        seq,
        "reordered",
        f"the fact at seq {seq} belongs at seq {place}: facts were reordered",
    )


def verify_backend(
    backend: Backend,
    against: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    erasures: Sequence[Erasure] = (),
    retentions: Sequence[Retention] = (),
    log: tuple[int, bytes, Sequence[ChainedFact]] | None = None,
) -> VerifyReport:
    """:meth:`~everstore.engine.Engine.verify` on ``backend``: the log up to the
    chain's head when it starts, then the head, the erased facts against
    ``erasures`` and the checkpoint ``against``. The log up to the latest of
    ``retentions`` is checked against its digest of the facts it kept.

    :param log: the chain's head (seq and link) and the facts up to it, when the
        caller read them already (in that order) because it needs them too; else
        they are read here, page by page
    :raises ValueError: for an ``against`` that is not a checkpoint
    """
    checkpoint = None if against is None else parse_checkpoint(against)
    latest = max(retentions, key=lambda r: r.seq, default=None)
    if log is None:
        high, head = backend.chain_head()
        facts: Iterable[ChainedFact] = chained_upto(backend, high)
    else:
        high, head, facts = log
    report = verify_log(facts, high, progress, latest)
    if report.ok:
        report = _headless(backend, high, head, report)
    if report.ok:
        report = _unchained(backend, high, report)
    if report.ok:
        report = _explained(report, erasures, retentions)
    if not report.ok or checkpoint is None:
        return report
    if latest is not None and checkpoint.seq <= latest.through:
        return _against_pruned(report, checkpoint.seq, checkpoint.digest, latest)
    found = _link_at(backend, checkpoint.seq)
    if found is None and high < checkpoint.seq:
        return VerifyReport(
            False,
            report.facts,
            high + 1,
            "truncated",
            f"the log ends at seq {high}, before the checkpoint's seq {checkpoint.seq}: "
            "it was truncated, or restored from an older backup",
        )
    if found is None or found.hex()[:CHECKPOINT_HEX] != checkpoint.digest:
        return _rewritten(report, checkpoint.seq)
    return report


def _explained(
    report: VerifyReport, erasures: Sequence[Erasure], retentions: Sequence[Retention]
) -> VerifyReport:
    """``report`` with the records attached, or a finding for an erased fact no
    erasure record lists (its value removed outside :meth:`everstore.Store.erase`)."""
    listed = {seq for erasure in erasures for seq in erasure.erased}
    for seq in report.erased:
        if seq not in listed:
            return _bad(
                report.facts,
                seq,
                "changed",
                f"the fact at seq {seq} holds an erasure marker that no erasure record "
                "lists: its value was removed outside erase()",
            )
    return dataclasses.replace(report, erasures=tuple(erasures), retentions=tuple(retentions))


def _against_pruned(report: VerifyReport, seq: int, digest: str, latest: Retention) -> VerifyReport:
    """A checkpoint at or before a prune's cut: only the cut's own link is kept."""
    if seq == latest.through:
        if latest.link[:CHECKPOINT_HEX] == digest:
            return report
        return _rewritten(report, seq)
    return VerifyReport(
        False,
        report.facts,
        None,
        "pruned",
        f"the checkpoint's seq {seq} is inside the history pruned up to seq "
        f"{latest.through} (record at seq {latest.seq}): it can no longer be checked; "
        "keep the checkpoint prune() returns instead",
    )


def _rewritten(report: VerifyReport, seq: int) -> VerifyReport:
    return VerifyReport(
        False,
        report.facts,
        None,
        "changed",
        f"the log up to seq {seq} is not the one the checkpoint was taken "
        "of: its history was rewritten (and chained again)",
    )


def checkpoint_of(backend: Backend, seq: int | None = None) -> str:
    """:meth:`~everstore.engine.Engine.checkpoint` on ``backend``.

    :raises ValueError: for a seq that is not an int from 0 to the last seq
    :raises LookupError: no commit of the chain ends at or after ``seq``
    """
    high = backend.chain_head()[0]
    if seq is None:
        seq = high
    if type(seq) is not int or not 0 <= seq <= high:
        raise ValueError(f"checkpoint(seq=...) needs an int from 0 to {high}, got {seq!r}")
    if seq == 0:
        return format_checkpoint(0, GENESIS)
    links = backend.chain_links(seq - 1, 1)
    if not links:
        raise LookupError(f"the chain has no link at or after seq {seq}: run verify()")
    return format_checkpoint(*links[0])


def _link_at(backend: Backend, seq: int) -> bytes | None:
    """The link of the commit ending exactly at ``seq`` (GENESIS at 0), or None."""
    if seq == 0:
        return GENESIS
    links = backend.chain_links(seq - 1, 1)
    return links[0][1] if links and links[0][0] == seq else None


def chained_upto(backend: Backend, high: int) -> Iterator[ChainedFact]:
    """The log's facts with their links, up to seq ``high``, read page by page."""
    seq = 0
    while seq < high:
        page: Sequence[ChainedFact] = backend.chained_facts(seq, _PAGE)
        if not page:
            return
        for fact in page:
            if fact[0] > high:
                return
            yield fact
        seq = page[-1][0]


def _headless(backend: Backend, high: int, head: bytes, report: VerifyReport) -> VerifyReport:
    """``report``, or a truncation if the log ends before the chain's head (where a
    backend keeps its links apart from the facts, as PostgreSQL) or the head (kept
    apart, as in PostgreSQL's counter row) is not the last link: the log lost its
    tail, or log and chain lost it together."""
    if report.facts < high:
        missing = report.facts + 1
        return VerifyReport(
            False,
            report.facts,
            missing,
            "truncated",
            f"the log ends at seq {report.facts}, but its chain goes on to seq {high}: "
            "it was truncated",
        )
    if high == 0 or _link_at(backend, high) == head:
        return report
    return VerifyReport(
        False,
        report.facts,
        report.facts + 1,
        "truncated",
        f"the chain's head names seq {high}, but the log and its chain end before it: "
        "both were truncated",
    )


def _unchained(backend: Backend, high: int, report: VerifyReport) -> VerifyReport:
    """``report``, or an insertion if a fact after ``high`` has no link: a commit
    made since verification began has one, read after its facts."""
    after = backend.facts_since(high, 1)
    if not after:
        return report
    links = backend.chain_links(high, 1)
    if links and links[0][0] >= after[0].seq:
        return report
    seq = after[0].seq
    return VerifyReport(
        False,
        report.facts,
        seq,
        "inserted",
        f"the fact at seq {seq} is after the chain's last commit (seq {high}): it was inserted",
    )
