"""The embedded SQLite backend: :class:`Sqlite3` (backend), its schema and
migrations (schema), how a path or URI is opened (location), and the shared-memory
probe of a WAL file's header (walwatch)."""

from __future__ import annotations

from .backend import Sqlite3

__all__ = ["Sqlite3"]
