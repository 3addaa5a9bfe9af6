"""The shapes of the log: facts as the backends store them, values as users see them."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Fact", "Value", "Write"]


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
