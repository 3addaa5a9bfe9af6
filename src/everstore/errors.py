"""Every error everstore raises, under one root.

Each class also inherits the builtin a caller would naturally catch, so
``except AttributeError`` keeps working for a missing field and ``except
TypeError`` for a value that cannot be stored.
"""

from __future__ import annotations


class EverstoreError(Exception):
    """Root of every error raised by everstore."""


class UnsupportedValueError(EverstoreError, TypeError):
    """A value (or something nested in it) has a type the codec cannot store."""


class MissingFieldError(EverstoreError, AttributeError):
    """A field was never written, or its latest fact is a tombstone."""


class InvalidNameError(EverstoreError, ValueError):
    """A field name or namespace part is not allowed."""


class ReservedNameError(EverstoreError, AttributeError):
    """An attribute name is reserved (dunder, virtual field, or a read-only view)."""


class MutableAccessError(EverstoreError, TypeError):
    """A mutable value was read outside ``with storage:`` or a transaction."""


class ReadOnlyError(EverstoreError, AttributeError):
    """A write was attempted through a read-only view (``within``, ``as_of``)."""


class SchemaError(EverstoreError):
    """The database holds a schema everstore did not create or cannot read."""


class BackendError(EverstoreError):
    """The backend failed; nothing of the failed operation was committed."""


class CorruptStoreError(BackendError):
    """The database file is damaged (SQLite found a page that does not parse, or the
    file is not a database at all); the message names the file. Nothing was written
    to it. See docs/integrity.md, "Damaged and foreign files"."""


class StoreClosedError(EverstoreError, RuntimeError):
    """The store (or its backend) was closed."""


class DecodeError(EverstoreError, ValueError):
    """Stored bytes could not be decoded (corruption or a missing custom type)."""


class ConflictError(EverstoreError):
    """A conditional write lost: another writer changed the field first."""


class MissingBlobError(EverstoreError, KeyError):
    """No blob is stored under the digest asked for."""


class ImportFormatError(EverstoreError, ValueError):
    """An import stream is not a valid export (the message names the line and what is
    wrong); nothing of it was imported."""


class StoreNotEmptyError(EverstoreError):
    """An import was asked into a store that already holds facts, without
    ``into_nonempty=True``; nothing was imported."""


class MissingFactError(EverstoreError, LookupError):
    """A seq asked for is not in the log (never written, or pruned); nothing was
    changed."""


class PrunedHistoryError(EverstoreError, LookupError):
    """A read reached history that :meth:`everstore.Store.prune` moved out of the live
    log; ``archive`` is the file that holds it (None when it was dropped) and
    ``through`` the last seq of the pruned stretch."""

    def __init__(self, message: str, archive: str | None = None, through: int = 0) -> None:
        super().__init__(message)
        self.archive = archive
        self.through = through


class IntegrityError(EverstoreError):
    """The log does not verify against its hash chain (``report`` says where and
    how): an operation that would build on it, such as a prune, refused to run and
    changed nothing."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


__all__ = [
    "BackendError",
    "ConflictError",
    "CorruptStoreError",
    "DecodeError",
    "EverstoreError",
    "ImportFormatError",
    "IntegrityError",
    "InvalidNameError",
    "MissingBlobError",
    "MissingFactError",
    "MissingFieldError",
    "MutableAccessError",
    "PrunedHistoryError",
    "ReadOnlyError",
    "ReservedNameError",
    "SchemaError",
    "StoreClosedError",
    "StoreNotEmptyError",
    "UnsupportedValueError",
]
