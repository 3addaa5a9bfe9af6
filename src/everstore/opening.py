"""everstore.open(): one function from a URL or a path to a Store on the right backend."""

from __future__ import annotations

import os
from typing import Any

from .backends import Backend, Memory, Sqlite3
from .store import Store

__all__ = ["open"]


def open(target: str | os.PathLike[str], **options: Any) -> Store:
    """Open a store from a URL or a path.

    ``":memory:"`` (or ``"memory://"``) is a Memory store; ``"sqlite:///relative.db"``,
    ``"sqlite:////absolute.db"``, an SQLite URI (``"file:app.db?cache=private"``) or a
    plain path is an SQLite file; ``"postgresql://user@host/dbname"`` (or
    ``postgres://``) is a PostgreSQL database, which needs the ``postgres`` extra.
    ``options`` go to the backend (``schema=`` and pool options for PostgreSQL;
    ``busy_timeout=``, ``readonly=``, ``migrate=``, ``prefix=`` and ``synchronous=``
    for SQLite, see :class:`~everstore.Sqlite3`); ``codec=`` goes to the Store.

    :param target: a URL or a path (``str`` or path-like)
    :param options: backend options, and ``codec=`` for the Store
    :return: an open :class:`~everstore.Store`
    :raises ValueError: for an unknown URL scheme
    :raises everstore.errors.SchemaError: for a database everstore cannot use
    :raises everstore.errors.BackendError: for a database that cannot be opened

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
