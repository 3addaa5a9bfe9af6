"""The hash chain over the log, and its verification (docs/integrity.md).

Each commit (a batch of facts with consecutive seqs) is one link of the chain::

    link_k = SHA-256(link_{k-1} || first_seq || count || time_1 .. time_count || batch_hash)
    batch_hash = SHA-256(encode(fact_1) || ... || encode(fact_count))

with ``link_0`` 32 zero bytes. :func:`encode_fact` leaves the seq and the time out:
they are given under the commit's lock, so :func:`chain_step` binds them, while a
writer can hash the rest before it takes the lock. A backend stores
``(seq_last, link)`` beside the log, computed under the lock that gives the batch
its seqs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .log import Fact

__all__ = [
    "GENESIS",
    "Checkpoint",
    "VerifyReport",
    "batch_hash",
    "chain_step",
    "encode_fact",
    "encode_names",
    "single_step",
    "format_checkpoint",
    "parse_checkpoint",
    "verify_log",
]

#: the link before the first commit
GENESIS = bytes(32)

_LENGTH = struct.Struct(">q")
_TOMBSTONE = _LENGTH.pack(-1)
_LENGTHS = struct.Struct(">III")
_ONE = struct.Struct(">QQd")
_STEP = struct.Struct(">QQ")
_sha256 = hashlib.sha256

#: how many hex digits of a link a checkpoint keeps (128 bits)
CHECKPOINT_HEX = 32

#: how many encoded name triples verification keeps (a fact's names mostly repeat)
_NAMES_CACHE = 65_536

#: how many mismatching commits verification gathers to tell a reorder from a change
_REORDER_WINDOW = 64


def encode_fact(namespace: str, field: str, context: str, data: bytes | None) -> bytes:
    """The canonical bytes of one fact, without its seq and time: the data's length
    (-1 for a tombstone) as a big-endian 8-byte integer, :func:`encode_names`, the
    data."""
    names = encode_names(namespace, field, context)
    if data is None:
        return _TOMBSTONE + names
    return _LENGTH.pack(len(data)) + names + data


def encode_names(namespace: str, field: str, context: str) -> bytes:
    """The names of a fact: the UTF-8 lengths of namespace, field and context as
    big-endian 4-byte integers, then those UTF-8 strings."""
    ns = namespace.encode()
    fd = field.encode()
    cx = context.encode()
    return _LENGTHS.pack(len(ns), len(fd), len(cx)) + ns + fd + cx


def batch_hash(encoded: Iterable[bytes]) -> bytes:
    """SHA-256 over the concatenated encodings of one commit's facts."""
    return _sha256(b"".join(encoded)).digest()


def chain_step(prev: bytes, first_seq: int, times: Sequence[float], batch: bytes) -> bytes:
    """The link of a commit of ``len(times)`` facts from ``first_seq``, committed at
    ``times``, after ``prev``; ``batch`` is their :func:`batch_hash`."""
    count = len(times)
    return _sha256(
        prev + _STEP.pack(first_seq, count) + struct.pack(f">{count}d", *times) + batch
    ).digest()


def single_step(prev: bytes, seq: int, time: float, fact_hash: bytes) -> bytes:
    """:func:`chain_step` for a commit of one fact (``fact_hash`` the SHA-256 of its
    :func:`encode_fact`), with one ``struct`` call: the hot path of an assignment."""
    return _sha256(prev + _ONE.pack(seq, 1, time) + fact_hash).digest()


def _fact_bytes(fact: Fact) -> bytes:
    return encode_fact(fact.namespace, fact.field, fact.context, fact.data)


@dataclass(frozen=True)
class Checkpoint:
    """A short digest of the log up to ``seq``: ``es1:<seq>:<hex>``."""

    seq: int
    digest: str


def format_checkpoint(seq: int, link: bytes) -> str:
    """The text form of a checkpoint at the commit ending at ``seq``."""
    return f"es1:{seq}:{link.hex()[:CHECKPOINT_HEX]}"


def parse_checkpoint(text: str) -> Checkpoint:
    """:raises ValueError: unless ``text`` is ``es1:<seq>:<32 hex digits>``"""
    parts = text.strip().split(":") if isinstance(text, str) else []
    if (
        len(parts) != 3
        or parts[0] != "es1"
        or not parts[1].isdigit()
        or len(parts[2]) != CHECKPOINT_HEX
        or any(c not in "0123456789abcdef" for c in parts[2])
    ):
        raise ValueError(f"a checkpoint looks like 'es1:<seq>:<32 hex digits>', got {text!r}")
    return Checkpoint(int(parts[1]), parts[2])


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`~everstore.engine.Engine.verify` found.

    ``kind`` is None when ``ok``, else one of ``"changed"``, ``"deleted"``,
    ``"inserted"``, ``"reordered"``, ``"truncated"``; ``seq`` is the first position
    found bad (for a change inside a commit of several facts: the commit's first seq).
    """

    ok: bool
    facts: int
    seq: int | None = None
    kind: str | None = None
    message: str = "the log verifies: every commit matches its link"

    def __bool__(self) -> bool:
        return self.ok


def _bad(facts: int, seq: int, kind: str, message: str) -> VerifyReport:
    return VerifyReport(False, facts, seq, kind, message)


#: a commit that does not match its link: first seq, count, previous link, its link, facts
_BadCommit = tuple[int, int, bytes, bytes, list[Fact]]


def verify_log(
    links: Iterable[tuple[int, bytes]],
    facts: Iterable[Fact],
    total: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check ``facts`` (the whole log, in seq order) against ``links`` (every
    ``(seq_last, link)``, in order).

    :param total: the number of facts expected, for ``progress``
    :param progress: called now and then with ``(facts checked, total)``
    """
    it = iter(facts)
    head = next(it, None)
    prev = GENESIS
    nxt = 1
    checked = 0
    report: VerifyReport | None = None
    bad_batches: list[_BadCommit] = []
    one_pack = _ONE.pack
    length = _LENGTH.pack
    tombstone = _TOMBSTONE
    sha = _sha256
    names_of: dict[tuple[str, str, str], bytes] = {}
    for seq_last, link in links:
        first = nxt
        if seq_last == first and report is None and head is not None and head.seq == first:
            # A commit of one fact, the common case: inline, with the names cached.
            _, when, ns, fd, data, cx = head
            names = names_of.get((ns, fd, cx))
            if names is None:
                if len(names_of) >= _NAMES_CACHE:
                    names_of.clear()
                names = names_of[ns, fd, cx] = encode_names(ns, fd, cx)
            raw = tombstone + names if data is None else length(len(data)) + names + data
            if sha(prev + one_pack(first, 1, when) + sha(raw).digest()).digest() == link:
                head = next(it, None)
                checked += 1
                if progress is not None and not checked & 0xFFFF:
                    progress(checked, total)
                prev = link
                nxt = first + 1
                continue
        count = seq_last - first + 1
        batch: list[Fact] = []
        while head is not None and head.seq <= seq_last:
            batch.append(head)
            head = next(it, None)
        if report is None:
            if count <= 0:
                report = _bad(
                    checked,
                    seq_last,
                    "reordered",
                    f"the chain's links are out of order at seq {seq_last}",
                )
            else:
                report = _check_seqs(batch, first, count, checked, head is None)
        if report is None or bad_batches:
            digest = _relink(prev, first, count, batch)
            if digest != link:
                if report is None:
                    report = _bad(
                        checked,
                        first,
                        "changed",
                        f"the fact at seq {first} was changed"
                        if count == 1
                        else f"a fact of the commit of seqs {first}..{seq_last} was changed",
                    )
                bad_batches.append((first, count, prev, link, batch))
            if len(bad_batches) >= _REORDER_WINDOW:
                break
        before = checked
        checked += len(batch)
        if report is None and progress is not None and checked >> 16 != before >> 16:
            progress(checked, total)
        prev = link
        nxt = seq_last + 1 if seq_last >= nxt else nxt
    if report is None and head is not None:
        report = _bad(
            checked,
            head.seq,
            "inserted",
            f"the fact at seq {head.seq} is after the chain's last commit (seq {nxt - 1}): "
            "it was inserted",
        )
    if report is not None and report.kind == "changed" and len(bad_batches) > 1:
        report = _reorder(report, bad_batches)
    if progress is not None:
        progress(checked, total)
    return report if report is not None else VerifyReport(True, checked)


def _relink(prev: bytes, first: int, count: int, batch: list[Fact]) -> bytes | None:
    """The link of ``batch`` as the commit of ``count`` facts from ``first`` (None if
    it does not hold that many facts: no link can match)."""
    if len(batch) != count:
        return None
    return chain_step(prev, first, [f.time for f in batch], batch_hash(map(_fact_bytes, batch)))


def _check_seqs(
    batch: Sequence[Fact], first: int, count: int, checked: int, at_end: bool
) -> VerifyReport | None:
    for offset, fact in enumerate(batch):
        if fact.seq != first + offset:
            return _bad(
                checked + offset,
                first + offset,
                "deleted",
                f"the fact at seq {first + offset} was deleted",
            )
    if len(batch) < count:
        missing = first + len(batch)
        if at_end:
            return _bad(
                checked + len(batch),
                missing,
                "truncated",
                f"the log ends at seq {missing - 1}, but its chain goes on to later commits: "
                "it was truncated",
            )
        return _bad(
            checked + len(batch), missing, "deleted", f"the fact at seq {missing} was deleted"
        )
    return None


def _reorder(report: VerifyReport, bad: list[_BadCommit]) -> VerifyReport:
    """``report`` as a reorder if putting a fact of a later bad commit in the first bad
    commit's place makes that commit match its stored link."""
    first, _, prev, link, batch = bad[0]
    encoded = [_fact_bytes(f) for f in batch]
    tries = 0
    for *_, other in bad[1:]:
        for candidate in other:
            moved = _fact_bytes(candidate)
            for position in range(len(batch)):
                tries += 1
                if tries > 10_000:
                    return report
                trial = [*encoded[:position], moved, *encoded[position + 1 :]]
                times = [f.time for f in batch]
                times[position] = candidate.time
                if chain_step(prev, first, times, batch_hash(trial)) == link:
                    seq = first + position
                    return _bad(
                        report.facts,
                        seq,
                        "reordered",
                        f"the fact at seq {seq} belongs at seq {candidate.seq}: facts were "
                        "reordered",
                    )
    return report
