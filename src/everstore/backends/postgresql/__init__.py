"""The PostgreSQL backend: many processes on many hosts share one store.

``PostgreSQL(conninfo)`` needs the ``postgres`` extra (``pip install
'everstore[postgres]'``: psycopg 3 and psycopg-pool); importing this package does
not. How it lays out its tables, why its seqs follow commit order without a table
lock, what each durability setting risks, how changes are notified, how failures
are reported and how schema versions are migrated: docs/postgresql.md.

Modules: ``backend`` (the :class:`PostgreSQL` class), ``schema`` (the SQL text,
creation and migration), ``listener`` (the LISTEN thread and the change feed),
``wire`` (libpq-level helpers and the one-write prepared statement).
"""

from .backend import PostgreSQL

__all__ = ["PostgreSQL"]
