"""Erasure: a subject's values replaced by markers that keep the chain whole
(docs/integrity.md, "Erasure"), built on the engine's and backends' public API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.contexts import caller_context
from ..engine.integrity import Erasure
from ..engine.names import check_field, describe_field, namespace_path
from ..errors import MissingFieldError
from ..log import ERASURE_FIELD, RECORDS_NAMESPACE, Write
from .chain import erasable

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["erase"]


def erase(
    store: Engine,
    namespace: tuple[str, ...],
    field: str | None,
    reason: str,
    by: str | None = None,
    context: str | None = None,
) -> Erasure:
    """:meth:`everstore.Store.erase` (its documentation says what it does).

    :raises TypeError: for a ``reason`` or ``by`` that is not a str
    :raises ValueError: for an empty ``reason``
    :raises MissingFieldError: the namespace (or the field) holds no fact
    :raises RuntimeError: inside a transaction of the calling thread
    """
    path = namespace_path(namespace)
    if field is not None:
        check_field(field)
    if not isinstance(reason, str):
        raise TypeError(f"erase(reason=...) must be a str, got {reason!r}")
    if not reason.strip():
        raise ValueError("erase() needs a reason: say why these values are erased")
    if by is not None and not isinstance(by, str):
        raise TypeError(f"erase(by=...) must be a str or None, got {by!r}")
    store.check_outside_transaction("erase()")
    store.check_open()
    store.sync()
    _, facts = store.backend.load_namespace(path)
    chosen = [fact for fact in facts if field is None or fact.field == field]
    if not chosen:
        what = describe_field(namespace, field) if field is not None else f"namespace {namespace!r}"
        raise MissingFieldError(f"{what} holds no fact to erase")
    seqs = [f.seq for f in chosen if erasable(f.data)]
    record = {
        "prefix": path,
        "namespace": path,
        "field": field,
        "erased": seqs,
        "reason": reason,
        "by": by,
    }
    where = context if context is not None else caller_context()
    data = store.codec.encode(record)
    write = Write(RECORDS_NAMESPACE, ERASURE_FIELD, data, where, store.clock())
    seq, when = store.backend.erase_facts(seqs, write)
    store.sync()
    return Erasure(seq, when, path, field, tuple(seqs), reason, by, where)
