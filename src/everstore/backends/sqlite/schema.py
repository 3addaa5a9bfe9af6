"""The SQLite schema of a store: its tables, how a file is recognised, and migrations.

Versions (``SCHEMA_VERSION`` in :mod:`everstore.backends.base`):

1. everstore 0.1.0: the log, the interning tables and ``<prefix>_meta``.
2. adds ``<prefix>_blobs``, the content-addressed blob table, and stamps the file
   header (``PRAGMA application_id`` and ``user_version``).
3. rebuilds ``<prefix>_blobs`` as a rowid table with a unique digest index: blobs of a
   kilobyte and more made the WITHOUT ROWID table of version 2 split a page on almost
   every insert (SQLite advises against WITHOUT ROWID for rows that large).
4. adds the hash chain over the log (docs/integrity.md): a ``link`` column of
   ``<prefix>_log``, set on the last row of each commit, so that a plain write stays
   one ``INSERT``; the migration chains the existing log once, in commits of
   :data:`MIGRATION_BATCH` facts.

A migration is one step from the version it starts at to the next; :func:`migrate`
runs the steps in order inside the caller's transaction, so a store is at one version
or the next, never in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ...errors import SchemaError
from ...integrity.chain import GENESIS, chain_step, fact_hash
from ..base import SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "MIGRATION_BATCH",
    "MIGRATIONS",
    "Migration",
    "create",
    "lifted",
    "inspect",
    "migrate",
    "stamp",
]

#: ``PRAGMA application_id`` of every file holding a store: "Evst" in ASCII
APPLICATION_ID = 0x45767374

#: the tables of each schema version, by their suffix after ``<prefix>_``
_TABLES = {
    1: ("meta", "log", "namespaces", "fields", "contexts"),
    2: ("meta", "log", "namespaces", "fields", "contexts", "blobs"),
    3: ("meta", "log", "namespaces", "fields", "contexts", "blobs"),
    4: ("meta", "log", "namespaces", "fields", "contexts", "blobs"),
}

#: how many existing facts the migration to version 4 chains as one link
MIGRATION_BATCH = 1000


def _refusing_triggers(p: str, tables: tuple[str, ...]) -> list[str]:
    """Triggers that refuse UPDATE and DELETE on ``tables``: history cannot be
    rewritten by accident, even with raw SQL."""
    return [
        _refusing_trigger(p, table, action) for table in tables for action in ("UPDATE", "DELETE")
    ]


def _refusing_trigger(p: str, table: str, action: str) -> str:
    return (
        f"CREATE TRIGGER {p}_{table}_no_{action.lower()} BEFORE {action} ON {p}_{table} "
        f"BEGIN SELECT RAISE(ABORT, '{p}_{table} is append-only: {action} is refused'); END"
    )


def _version_1(p: str) -> list[str]:
    statements = [
        f"CREATE TABLE {p}_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE {p}_namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        f"CREATE TABLE {p}_fields (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        f"CREATE TABLE {p}_contexts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        f"CREATE TABLE {p}_log (seq INTEGER PRIMARY KEY, time REAL NOT NULL,"
        " ns INTEGER NOT NULL, field INTEGER NOT NULL, ctx INTEGER NOT NULL, data BLOB)",
        f"CREATE INDEX {p}_log_ns_field ON {p}_log(ns, field, seq)",
        # INSERT OR REPLACE deletes the row it collides with without firing DELETE
        # triggers, so an insert that collides is refused (the log) or skipped (the
        # interning tables, whose INSERT OR IGNORE relies on that).
        f"CREATE TRIGGER {p}_log_no_replace BEFORE INSERT ON {p}_log "
        f"WHEN EXISTS (SELECT 1 FROM {p}_log WHERE seq = NEW.seq) BEGIN "
        f"SELECT RAISE(ABORT, '{p}_log is append-only: that seq exists'); END",
    ]
    statements += [
        f"CREATE TRIGGER {p}_{table}_no_replace BEFORE INSERT ON {p}_{table} "
        f"WHEN EXISTS (SELECT 1 FROM {p}_{table} WHERE id = NEW.id OR name = NEW.name) "
        "BEGIN SELECT RAISE(IGNORE); END"
        for table in ("namespaces", "fields", "contexts")
    ]
    statements += _refusing_triggers(p, ("log", "namespaces", "fields", "contexts"))
    statements.append(f"INSERT INTO {p}_meta(key, value) VALUES ('schema_version', '1')")
    return statements


def _blob_table(p: str) -> list[str]:
    return [
        f"CREATE TABLE {p}_blobs (digest BLOB PRIMARY KEY CHECK (length(digest) = 32),"
        " data BLOB NOT NULL) WITHOUT ROWID",
        *_blob_triggers(p),
    ]


def _blob_triggers(p: str) -> list[str]:
    return [
        # A digest names its bytes: storing it again is a no-op, and INSERT OR REPLACE
        # (which would delete the old row without a DELETE trigger) is skipped too.
        f"CREATE TRIGGER {p}_blobs_no_replace BEFORE INSERT ON {p}_blobs "
        f"WHEN EXISTS (SELECT 1 FROM {p}_blobs WHERE digest = NEW.digest) "
        "BEGIN SELECT RAISE(IGNORE); END",
        *_refusing_triggers(p, ("blobs",)),
    ]


def _blob_rowid_table(p: str) -> list[str]:
    # Rows are appended in rowid order and only the 32-byte digests go into a b-tree
    # in random order; DROP TABLE takes the old table's triggers with it.
    return [
        f"ALTER TABLE {p}_blobs RENAME TO {p}_blobs_v2",
        f"CREATE TABLE {p}_blobs (id INTEGER PRIMARY KEY,"
        " digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32), data BLOB NOT NULL)",
        f"INSERT INTO {p}_blobs(digest, data) SELECT digest, data FROM {p}_blobs_v2",
        f"DROP TABLE {p}_blobs_v2",
        *_blob_triggers(p),
    ]


def _chain_column(p: str) -> list[str]:
    return [f"ALTER TABLE {p}_log ADD COLUMN link BLOB CHECK (link IS NULL OR length(link) = 32)"]


def _chain_existing(conn: sqlite3.Connection, p: str) -> None:
    """Chain the log as it is, in seq order, :data:`MIGRATION_BATCH` facts a link,
    with the log's UPDATE trigger lifted inside the migration's transaction."""
    rows = conn.execute(
        f"SELECT l.seq, l.time, n.name, f.name, c.name, l.data FROM {p}_log l "
        f"JOIN {p}_namespaces n ON n.id = l.ns JOIN {p}_fields f ON f.id = l.field "
        f"JOIN {p}_contexts c ON c.id = l.ctx ORDER BY l.seq"
    )
    links = []
    link = GENESIS
    first = 1
    while batch := rows.fetchmany(MIGRATION_BATCH):
        last = batch[-1][0]
        # A gap in the seqs (a log everstore never wrote) is chained as it is: the
        # link binds the count, so verification reports the gap as deleted facts.
        times = [row[1] for row in batch] + [0.0] * (last - first + 1 - len(batch))
        hashes = [fact_hash(ns, fd, cx, data) for _, _, ns, fd, cx, data in batch]
        link = chain_step(link, first, times, hashes)
        links.append((link, last))
        first = last + 1
    with lifted(conn, p, "log", "UPDATE"):
        conn.executemany(f"UPDATE {p}_log SET link = ? WHERE seq = ?", links)


@contextmanager
def lifted(conn: sqlite3.Connection, p: str, table: str, action: str) -> Iterator[None]:
    """Run the body without the trigger refusing ``action`` on ``<p>_<table>``, inside
    the caller's transaction: other connections never see the trigger missing, and
    a failure rolls the drop back with the rest. For the log's only sanctioned
    rewrites (a migration, erasure, retention: docs/integrity.md). A trigger found
    missing (dropped by hand) is there again afterwards."""
    if not conn.in_transaction:
        raise RuntimeError("lifted() runs inside a transaction")
    conn.execute(f"DROP TRIGGER IF EXISTS {p}_{table}_no_{action.lower()}")
    yield
    conn.execute(_refusing_trigger(p, table, action))


@dataclass(frozen=True)
class Migration:
    """One step of the schema: from version ``start`` to ``start + 1``."""

    start: int
    #: what the step adds, for messages and the ``everstore migrate`` command
    describe: str
    #: the SQL of the step, for a table prefix
    statements: Callable[[str], list[str]]
    #: what the step computes in Python after its SQL (connection, prefix)
    run: Callable[[sqlite3.Connection, str], None] | None = None


#: every step, in order of the version it starts from
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "adds the content-addressed blob table", _blob_table),
    Migration(2, "rebuilds the blob table for large blobs", _blob_rowid_table),
    Migration(3, "adds the hash chain and chains the existing log", _chain_column, _chain_existing),
)


def create(conn: sqlite3.Connection, prefix: str) -> None:
    """Create the current schema (inside the caller's transaction)."""
    for statement in _version_1(prefix):
        conn.execute(statement)
    migrate(conn, prefix, 1)


def migrate(conn: sqlite3.Connection, prefix: str, version: int) -> None:
    """Run every step from ``version`` to ``SCHEMA_VERSION`` (inside the caller's
    transaction), then stamp the file header."""
    for step in MIGRATIONS:
        if step.start >= version:
            for statement in step.statements(prefix):
                conn.execute(statement)
            if step.run is not None:
                step.run(conn, prefix)
            conn.execute(
                f"UPDATE {prefix}_meta SET value = ? WHERE key = 'schema_version'",
                (str(step.start + 1),),
            )
    stamp(conn)


def stamp(conn: sqlite3.Connection) -> None:
    """Mark the file header as everstore's, at the current schema version."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def inspect(conn: sqlite3.Connection, prefix: str, path: str) -> int | None:
    """The schema version of the store ``prefix`` in the open file (None if it has
    none yet), reading only, from one snapshot of it.

    :raises SchemaError: the file is another application's, or the store lost tables
    """
    if conn.in_transaction:
        return _inspect(conn, prefix, path)
    # One read transaction: its statements see one state of the file, so a migration
    # another process commits meanwhile is seen whole or not at all (otherwise the
    # tables could be read before it and the version after it).
    conn.execute("BEGIN")
    try:
        return _inspect(conn, prefix, path)
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def _inspect(conn: sqlite3.Connection, prefix: str, path: str) -> int | None:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if application_id not in (0, APPLICATION_ID):
        raise SchemaError(
            f"{path!r} belongs to another application (its header's application_id is "
            f"{application_id:#x}, everstore's is {APPLICATION_ID:#x})"
        )
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    tables = {row[0] for row in rows}
    meta = f"{prefix}_meta"
    if meta not in tables:
        ours = sorted(tables & {f"{prefix}_{suffix}" for suffix in _TABLES[SCHEMA_VERSION]})
        if ours:
            raise SchemaError(
                f"{path!r} has tables {ours} but no {meta}: they were not created by "
                "everstore; choose another prefix or file"
            )
        if application_id == APPLICATION_ID and not tables:
            raise SchemaError(
                f"{path!r} carries everstore's mark in its header but holds no tables: "
                "the store lost its schema (dropped tables or a damaged file); restore it "
                "from a backup"
            )
        if application_id == 0 and tables and not _holds_a_store(tables):
            # Another program's database: creating a store in it would write to a
            # file everstore was likely pointed at by mistake (a wrong path).
            shown = sorted(tables)[:5]
            raise SchemaError(
                f"{path!r} is another program's SQLite database (tables {shown}"
                f"{', ...' if len(tables) > 5 else ''}, and no everstore store): "
                "everstore does not add its tables to it; choose another file"
            )
        return None
    version = _stored_version(conn, meta, path)
    missing = [
        f"{prefix}_{suffix}"
        for suffix in _TABLES.get(version, ())
        if f"{prefix}_{suffix}" not in tables
    ]
    if missing:
        raise SchemaError(
            f"{path!r} holds {meta} (schema version {version}) but not {missing}: the "
            "store lost tables; restore it from a backup"
        )
    return version


def _holds_a_store(tables: set[str]) -> bool:
    """True if ``tables`` hold an everstore store under some prefix (a file may hold
    several, one a prefix; stores of 0.1.0 left the header unstamped)."""
    return any(
        name.endswith("_meta") and f"{name[: -len('_meta')]}_log" in tables for name in tables
    )


def _stored_version(conn: sqlite3.Connection, meta: str, path: str) -> int:
    try:
        row = conn.execute(f"SELECT value FROM {meta} WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such column" not in str(exc):
            raise  # busy, locked, I/O: not about what the table is
        raise SchemaError(
            f"{meta} in {path!r} is not everstore's ({exc}): the file belongs to another "
            "program, or its store was altered; choose another prefix or file"
        ) from None
    if row is None:
        raise SchemaError(f"{meta} in {path!r} has no schema_version")
    try:
        return int(row[0])
    except ValueError:
        raise SchemaError(f"{meta} in {path!r} has schema_version {row[0]!r}") from None
