"""The hash chain's one definition (docs/integrity.md, "The chain").

Each commit (a run of facts with consecutive seqs) is one link::

    link_k = SHA-256(link_{k-1} || first_seq || count || time_1 .. time_count
                     || fact_hash_1 .. fact_hash_count)
    fact_hash = SHA-256(encode_fact(namespace, field, context, data))

with ``link_0`` 32 zero bytes (:data:`GENESIS`). A fact's hash leaves its seq and
time out: they are given under the commit's lock, so the link binds them, while a
writer hashes the rest before it takes the lock. An erased fact keeps its fact hash
in place of its data (:func:`erased_marker`), so the chain still verifies.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHECKPOINT_HEX",
    "ERASED_TAG",
    "GENESIS",
    "Checkpoint",
    "chain_step",
    "encode_fact",
    "encode_names",
    "erasable",
    "erased_hash",
    "erased_marker",
    "fact_hash",
    "fact_head",
    "kept_digest",
    "format_checkpoint",
    "named_hash",
    "named_hash_input",
    "parse_checkpoint",
    "single_step",
]

#: the link before the first commit
GENESIS = bytes(32)

#: how many hex digits of a link a checkpoint keeps (128 bits)
CHECKPOINT_HEX = 32

#: the first byte of an erased fact's stored data; the codec never writes it
ERASED_TAG = 0x02

_DATA = b"\x01"
_NO_DATA = b"\x00"
_LENGTHS = struct.Struct(">III")
_ONE = struct.Struct(">QQd")
_STEP = struct.Struct(">QQ")
_KEPT = struct.Struct(">Qd")
_sha256 = hashlib.sha256


def encode_names(namespace: str, field: str, context: str) -> bytes:
    """The names of a fact: the UTF-8 lengths of namespace, field and context as
    big-endian 4-byte integers, then those UTF-8 strings.

    >>> encode_names("a", "b", "c").hex()
    '000000010000000100000001616263'
    """
    ns = namespace.encode()
    fd = field.encode()
    cx = context.encode()
    return _LENGTHS.pack(len(ns), len(fd), len(cx)) + ns + fd + cx


def encode_fact(namespace: str, field: str, context: str, data: bytes | None) -> bytes:
    """The canonical bytes of one fact without its seq and time: a byte 1 (0 for a
    tombstone), :func:`encode_names`, the data. O(len(data)).

    >>> encode_fact("a", "b", "c", None).hex()
    '00000000010000000100000001616263'
    """
    return named_hash_input(fact_head(namespace, field, context), data)


def fact_head(namespace: str, field: str, context: str) -> bytes:
    """What :func:`encode_fact` puts before the data of a fact of these names (a
    caller hashing many facts of the same names keeps it)."""
    return _DATA + encode_names(namespace, field, context)


def named_hash_input(head: bytes, data: bytes | None) -> bytes:
    """:func:`encode_fact` from the names' :func:`fact_head`."""
    return _NO_DATA + head[1:] if data is None else head + data


def fact_hash(namespace: str, field: str, context: str, data: bytes | None) -> bytes:
    """SHA-256 of :func:`encode_fact`: what the chain binds of one fact (for an
    erased fact, the hash its marker keeps)."""
    return named_hash(fact_head(namespace, field, context), data)


def named_hash(head: bytes, data: bytes | None) -> bytes:
    """:func:`fact_hash` from the names' :func:`fact_head`. An erased fact's data
    (:func:`erased_marker`) stands for the hash it keeps: a copy of an erased log
    (an import) chains it as the original did."""
    if data is None:
        return _sha256(_NO_DATA + head[1:]).digest()
    if len(data) == 33 and data[0] == ERASED_TAG:
        return bytes(data[1:])
    return _sha256(head + data).digest()


def chain_step(
    prev: bytes, first_seq: int, times: Sequence[float], hashes: Sequence[bytes]
) -> bytes:
    """The link of a commit of ``len(times)`` facts from ``first_seq``, committed at
    ``times``, with those :func:`fact_hash` values, after ``prev``."""
    count = len(times)
    return _sha256(
        prev + _STEP.pack(first_seq, count) + struct.pack(f">{count}d", *times) + b"".join(hashes)
    ).digest()


def single_step(prev: bytes, seq: int, time: float, hashed: bytes) -> bytes:
    """:func:`chain_step` for a commit of one fact, with one ``struct`` call: the hot
    path of an assignment and of verification."""
    return _sha256(prev + _ONE.pack(seq, 1, time) + hashed).digest()


def kept_digest(facts: Iterable[tuple[Any, ...]]) -> str:
    """A retention's digest of the facts it kept (docs/integrity.md, "Retention"):
    SHA-256 over the seq, the time and the :func:`fact_hash` of each of ``facts``
    (``(seq, time, namespace, field, data, context, ...)`` rows, in seq order), in hex.
    O(n)."""
    digest = _sha256()
    heads: dict[tuple[str, str, str], bytes] = {}
    for seq, when, namespace, field, data, context, *_ in facts:
        names = (namespace, field, context)
        head = heads.get(names) or heads.setdefault(names, fact_head(*names))
        digest.update(_KEPT.pack(seq, when) + named_hash(head, data))
    return digest.hexdigest()


def erased_marker(hashed: bytes) -> bytes:
    """What an erased fact stores in place of its data: :data:`ERASED_TAG` then the
    fact's 32-byte :func:`fact_hash`."""
    return bytes((ERASED_TAG,)) + hashed


def erasable(data: bytes | None) -> bool:
    """True for a fact's stored data that erasure replaces: a value, not a tombstone
    and not a marker already."""
    return data is not None and erased_hash(data) is None


def erased_hash(data: bytes | None) -> bytes | None:
    """The fact hash an erasure marker keeps, or None if ``data`` is not one."""
    if data is not None and len(data) == 33 and data[0] == ERASED_TAG:
        return bytes(data[1:])
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A short digest of the log up to ``seq``: ``es1:<seq>:<hex>``."""

    seq: int
    digest: str


def format_checkpoint(seq: int, link: bytes) -> str:
    """The text form of a checkpoint at the commit ending at ``seq``.

    >>> format_checkpoint(0, GENESIS)
    'es1:0:00000000000000000000000000000000'
    """
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
