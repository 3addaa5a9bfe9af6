"""everstore: an append-only, versioned object store.

Every write is appended with its time and the code location that made it; the
present is a fast in-memory view over that log; any past moment can be read back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .backends import Backend, Memory, Sqlite3
from .codec import Codec, default_codec
from .errors import (
    BackendError,
    ConflictError,
    DecodeError,
    EverstoreError,
    InvalidNameError,
    MissingFieldError,
    MutableAccessError,
    ReadOnlyError,
    ReservedNameError,
    SchemaError,
    StoreClosedError,
    UnsupportedValueError,
)
from .log import Fact, Value
from .storage import Storage
from .store import Change, History, Store, Subscription
from .temporal import FrozenStorage, StoreView, View, within

if TYPE_CHECKING:
    from .backends.postgresql import PostgreSQL

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "Change",
    "Codec",
    "ConflictError",
    "DecodeError",
    "EverstoreError",
    "Fact",
    "FrozenStorage",
    "History",
    "InvalidNameError",
    "Memory",
    "MissingFieldError",
    "MutableAccessError",
    "PostgreSQL",
    "ReadOnlyError",
    "ReservedNameError",
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


def open(target: str | os.PathLike[str], **options: Any) -> Store:
    """Open a store from a URL or a path.

    ``":memory:"`` (or ``"memory://"``) is a Memory store; ``"sqlite:///relative.db"``,
    ``"sqlite:////absolute.db"`` or a plain path is an SQLite file;
    ``"postgresql://user@host/dbname"`` (or ``postgres://``) is a PostgreSQL database,
    which needs the ``postgres`` extra. ``options`` go to the backend (``schema=`` and
    pool options for PostgreSQL, ``busy_timeout=`` for SQLite); ``codec=`` goes to
    the Store.

    >>> store = open(":memory:")
    >>> store.backend
    Memory()
    """
    codec = options.pop("codec", None)
    text = os.fspath(target)
    backend: Backend
    if text in (":memory:", "memory://"):
        backend = Memory(**options)
    elif text.startswith("sqlite://"):
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else ""
        backend = Sqlite3(path or ":memory:", **options)
    elif text.startswith(("postgresql://", "postgres://")):
        from .backends.postgresql import PostgreSQL

        backend = PostgreSQL(text, **options)
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(f"everstore.open(): unknown scheme {scheme!r} in {text!r}")
    else:
        backend = Sqlite3(text, **options)
    return Store(backend, codec=codec)


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
