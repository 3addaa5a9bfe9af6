"""everstore: an append-only, versioned object store.

Every write is appended with its time and the code location that made it; the
present is a fast in-memory view over that log; any past moment can be read back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import Backend, Memory, Sqlite3
from .codec import Codec, default_codec
from .engine import AppliedFact, Change, Engine, History, Namespace, Subscription
from .engine.integrity import Erasure, Retention
from .errors import (
    BackendError,
    ConflictError,
    CorruptStoreError,
    DecodeError,
    EverstoreError,
    IntegrityError,
    InvalidNameError,
    MissingBlobError,
    MissingFactError,
    MissingFieldError,
    MutableAccessError,
    PrunedHistoryError,
    ReadOnlyError,
    ReservedNameError,
    SchemaError,
    StoreClosedError,
    UnsupportedValueError,
)
from .log import Erased, Fact, Value
from .opening import open
from .storage import Storage
from .store import Store
from .temporal import FrozenStorage, StoreView, View, within

if TYPE_CHECKING:
    from .backends.postgresql import PostgreSQL

__version__ = "0.1.0"

__all__ = [
    "AppliedFact",
    "Backend",
    "BackendError",
    "Change",
    "Codec",
    "ConflictError",
    "CorruptStoreError",
    "DecodeError",
    "Engine",
    "Erased",
    "Erasure",
    "EverstoreError",
    "Fact",
    "FrozenStorage",
    "History",
    "IntegrityError",
    "InvalidNameError",
    "Memory",
    "MissingBlobError",
    "MissingFactError",
    "MissingFieldError",
    "MutableAccessError",
    "Namespace",
    "PostgreSQL",
    "PrunedHistoryError",
    "ReadOnlyError",
    "ReservedNameError",
    "Retention",
    "SchemaError",
    "Sqlite3",
    "Storage",
    "Store",
    "StoreClosedError",
    "StoreView",
    "Subscription",
    "UnsupportedValueError",
    "Value",
    "View",
    "default_codec",
    "fields",
    "history",
    "open",
    "within",
]


def __getattr__(name: str) -> Any:
    # PostgreSQL is imported on first use: ``import everstore`` stays as quick as the
    # embedded default needs.
    if name == "PostgreSQL":
        from .backends.postgresql import PostgreSQL

        return PostgreSQL
    raise AttributeError(f"module 'everstore' has no attribute {name!r}")


def fields(storage: Storage | FrozenStorage) -> list[str]:
    """The available fields of a storage, in first-write order."""
    return storage.__fields__()


def history(storage: Storage | FrozenStorage) -> dict[str, History]:
    """Field -> :class:`History` of a storage (same as ``storage.__history__()``)."""
    return storage.__history__()
