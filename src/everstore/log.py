"""The shapes of the log: facts as the backends store them, values as users see them."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "ERASURE_FIELD",
    "RECORDS_NAMESPACE",
    "RETENTION_FIELD",
    "Erased",
    "Fact",
    "Value",
    "Write",
]

#: the namespace of the log's own records (docs/integrity.md): facts the sanctioned
#: rewrites append, under dunder field names no user write can take
RECORDS_NAMESPACE = "everstore"
#: the field of an erasure's record (:meth:`everstore.Store.erase`)
ERASURE_FIELD = "__erasure__"
#: the field of a retention's record (:meth:`everstore.Store.prune`)
RETENTION_FIELD = "__retention__"


class Value(NamedTuple):
    """One entry of a field's history.

    ``time`` is wall-clock seconds (never decreasing within a store), ``unavailable``
    marks a tombstone (``data`` is then None), ``context`` is the ``module.function:line``
    that wrote it and ``seq`` its position in the store's log.
    """

    time: float
    unavailable: bool
    data: Any
    context: str
    seq: int


class Write(NamedTuple):
    """A fact before the backend has given it a seq and a time.

    ``data`` is the encoded value, or None for a tombstone.
    """

    namespace: str
    field: str
    data: bytes | None
    context: str
    time: float


class Fact(NamedTuple):
    """A committed fact: one row of the log."""

    seq: int
    time: float
    namespace: str
    field: str
    data: bytes | None
    context: str


class Erased:
    """What a read returns for a value that :meth:`everstore.Store.erase` removed.

    ``digest`` is the hex SHA-256 of the erased fact (its namespace, field, code
    location and value) that the log keeps in its place, so that the hash chain still
    verifies (docs/integrity.md, "Erasure"). Two markers are equal when they stand
    for the same fact.

    >>> Erased("ab" * 32)
    Erased('abababababab...')
    """

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Erased) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(("Erased", self.digest))

    def __repr__(self) -> str:
        return f"Erased({self.digest[:12]!r}...)".replace("'...)", "...')")
