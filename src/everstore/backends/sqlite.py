"""The Sqlite3 backend: the embedded default, one file shared by many processes.

Layout (``everstore`` is the default table prefix):

* ``everstore_log(seq INTEGER PRIMARY KEY, time, ns, field, ctx, data)``: the facts.
  Namespaces, field names and contexts are interned as small integers in
  ``everstore_namespaces``, ``everstore_fields`` and ``everstore_contexts``, which keeps
  rows and the ``(ns, field, seq)`` index small.
* ``everstore_meta``: the schema version.
* Triggers refuse UPDATE and DELETE on the log and the interning tables, so history
  cannot be rewritten by accident, even with raw SQL.

Durability: WAL with ``synchronous=NORMAL``. A write that returned survives a killed
process; a power loss may lose the last transactions (never corrupt the file).
Writers serialise on SQLite's write lock (``busy_timeout``); seq and time are taken
inside that lock, so they are gap-free and ordered across processes.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import BackendError, SchemaError, StoreClosedError
from ..log import Fact, Write
from ._walwatch import map_wal_header
from .base import SCHEMA_VERSION, Backend, Expectation, conflict

__all__ = ["Sqlite3"]

_T = TypeVar("_T")


def _check_identifier(prefix: str) -> str:
    if not prefix.isidentifier() or not prefix.isascii():
        raise ValueError(f"table prefix must be an ASCII identifier, got {prefix!r}")
    return prefix


@functools.lru_cache(maxsize=256)
def _insert_statement(table: str, rows: int) -> str:
    """``INSERT`` of ``rows`` rows into the log ``table`` (cached: SQL text is built
    once per size, and sqlite3 caches the prepared statement by its text)."""
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO {table}(seq, time, ns, field, ctx, data) VALUES {values}"


class _Interner:
    """Two-way map between names and the integer ids of one interning table."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}

    def remember(self, name: str, ident: int) -> None:
        self.ids[name] = ident
        self.names[ident] = name

    def lookup(self, conn: sqlite3.Connection, name: str) -> int | None:
        ident = self.ids.get(name)
        if ident is None:
            row = conn.execute(f"SELECT id FROM {self.table} WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            ident = row[0]
            self.remember(name, ident)
        return ident

    def intern(self, conn: sqlite3.Connection, name: str) -> int:
        ident = self.lookup(conn, name)
        if ident is None:
            conn.execute(f"INSERT OR IGNORE INTO {self.table}(name) VALUES (?)", (name,))
            ident = self.lookup(conn, name)
            assert ident is not None
        return ident

    def name(self, conn: sqlite3.Connection, ident: int) -> str:
        name = self.names.get(ident)
        if name is None:
            row = conn.execute(f"SELECT name FROM {self.table} WHERE id = ?", (ident,)).fetchone()
            if row is None:
                raise SchemaError(f"{self.table} has no id {ident}: the database is damaged")
            name = row[0]
            self.remember(name, ident)
        return name


class Sqlite3(Backend):
    """A log in one SQLite file (WAL mode), safe for many threads and processes.

    ``path`` may be ``":memory:"`` for a private in-memory database.
    ``busy_timeout`` is how long (seconds) a writer waits for another's lock.

    >>> import tempfile, os
    >>> from everstore import Store
    >>> path = os.path.join(tempfile.mkdtemp(), "doc.db")
    >>> with Store(Sqlite3(path)) as store:
    ...     store.storage("doc").title = "hello"
    >>> Store(Sqlite3(path)).storage("doc").title
    'hello'
    """

    kind = "sqlite"

    def __init__(
        self, path: str | os.PathLike[str], *, prefix: str = "everstore", busy_timeout: float = 30.0
    ) -> None:
        self.path = os.fspath(path)
        self.prefix = _check_identifier(prefix)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._write_cursor: sqlite3.Cursor | None = None
        self._token: Callable[[], Hashable] = lambda: 0
        p = self.prefix
        self._log = f"{p}_log"
        self._namespaces = _Interner(f"{p}_namespaces")
        self._fields = _Interner(f"{p}_fields")
        self._contexts = _Interner(f"{p}_contexts")
        # The interners' dicts, one attribute look-up away for the write path.
        self._namespace_ids = self._namespaces.ids
        self._field_ids = self._fields.ids
        self._context_ids = self._contexts.ids
        self._insert_one = (
            f"INSERT INTO {self._log}(time, ns, field, ctx, data) VALUES "
            f"(max(?, coalesce((SELECT time FROM {self._log} WHERE seq = "
            f"(SELECT max(seq) FROM {self._log})), 0.0)), ?, ?, ?, ?)"
        )
        #: (seq, time) of the last row this object wrote; see append_one
        self._own_last: tuple[int, float] = (-1, 0.0)

    def __repr__(self) -> str:
        return f"Sqlite3({self.path!r})"

    # -- connection and schema ----------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise BackendError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
            try:
                self._until_not_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute("PRAGMA synchronous=NORMAL")
                self._ensure_schema(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise BackendError(f"cannot use SQLite database {self.path!r}: {exc}") from exc
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            # One cursor for every single write: making a cursor per statement costs
            # about 1 µs, a twentieth of the whole write.
            self._write_cursor = conn.cursor()
            self._token = self._make_token(conn)

    def _until_not_busy(self, statement: Callable[[], object]) -> None:
        # Switching to WAL needs a moment alone with the file, and SQLite does not
        # apply busy_timeout to it: retry until busy_timeout is spent.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                statement()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if self._read_version(conn) is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._read_version(conn) is None:
                    self._create_schema(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        version = self._read_version(conn)
        if version != SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path!r} holds everstore schema version {version}; this release "
                f"reads version {SCHEMA_VERSION}. Upgrade everstore to open it."
            )

    def _read_version(self, conn: sqlite3.Connection) -> int | None:
        tables = self._tables(conn)
        meta = f"{self.prefix}_meta"
        if meta not in tables:
            if tables:
                raise SchemaError(
                    f"{self.path!r} has tables {sorted(tables)} but no {meta}: they were not "
                    "created by everstore; choose another prefix or file"
                )
            return None
        row = conn.execute(f"SELECT value FROM {meta} WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise SchemaError(f"{meta} in {self.path!r} has no schema_version")
        try:
            return int(row[0])
        except ValueError:
            raise SchemaError(f"{meta} in {self.path!r} has schema_version {row[0]!r}") from None

    def _tables(self, conn: sqlite3.Connection) -> set[str]:
        names = {
            f"{self.prefix}_{suffix}"
            for suffix in ("meta", "log", "namespaces", "fields", "contexts")
        }
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {row[0] for row in rows if row[0] in names}

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        p = self.prefix
        statements = [
            f"CREATE TABLE {p}_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE {p}_namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
            f"CREATE TABLE {p}_fields (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
            f"CREATE TABLE {p}_contexts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
            f"CREATE TABLE {p}_log (seq INTEGER PRIMARY KEY, time REAL NOT NULL,"
            " ns INTEGER NOT NULL, field INTEGER NOT NULL, ctx INTEGER NOT NULL, data BLOB)",
            f"CREATE INDEX {p}_log_ns_field ON {p}_log(ns, field, seq)",
        ]
        # INSERT OR REPLACE deletes the row it collides with without firing DELETE
        # triggers, so an insert that collides is refused (the log) or skipped (the
        # interning tables, whose INSERT OR IGNORE relies on that).
        statements.append(
            f"CREATE TRIGGER {p}_log_no_replace BEFORE INSERT ON {p}_log "
            f"WHEN EXISTS (SELECT 1 FROM {p}_log WHERE seq = NEW.seq) BEGIN "
            f"SELECT RAISE(ABORT, '{p}_log is append-only: that seq exists'); END"
        )
        for table in ("namespaces", "fields", "contexts"):
            statements.append(
                f"CREATE TRIGGER {p}_{table}_no_replace BEFORE INSERT ON {p}_{table} "
                f"WHEN EXISTS (SELECT 1 FROM {p}_{table} WHERE id = NEW.id OR name = NEW.name) "
                "BEGIN SELECT RAISE(IGNORE); END"
            )
        for table in ("log", "namespaces", "fields", "contexts"):
            for action in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER {p}_{table}_no_{action.lower()} BEFORE {action} ON "
                    f"{p}_{table} BEGIN SELECT RAISE(ABORT, "
                    f"'{p}_{table} is append-only: {action} is refused'); END"
                )
        statements.append(
            f"INSERT INTO {p}_meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')"
        )
        for statement in statements:
            conn.execute(statement)

    def _make_token(self, conn: sqlite3.Connection) -> Callable[[], Hashable]:
        if self.path == ":memory:" or self.path.startswith("file:"):
            # A private database: no other connection can write to it.
            return lambda: 0
        conn.execute(f"SELECT 1 FROM {self._log} LIMIT 1").fetchall()
        header = map_wal_header(self.path + "-shm")
        if header is None:
            # No shared-memory index to watch safely: ask SQLite (slower, ~3 µs).
            return self._data_version
        return header

    def _data_version(self) -> Hashable:
        with self._lock:
            return self.connection.execute("PRAGMA data_version").fetchone()[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._write_cursor = None
            self._token = lambda: 0

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection (for inspection and raw SQL in tests)."""
        if self._conn is None:
            raise StoreClosedError(f"{self!r} is not open")
        return self._conn

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.connection
            try:
                yield conn
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc

    # -- writing ------------------------------------------------------------------

    def append(
        self, writes: Sequence[Write], expect: Sequence[Expectation] = ()
    ) -> list[tuple[int, float]]:
        if len(writes) == 1 and not expect:
            return [self.append_one(*writes[0])]
        with self._using() as conn:
            return self._append_many(conn, writes, expect)

    def append_one(
        self, namespace: str, field: str, data: bytes | None, context: str, time: float
    ) -> tuple[int, float]:
        # The hot path of every assignment: the lock taken directly (``with`` costs as
        # much again) around one statement.
        lock = self._lock
        lock.acquire()
        try:
            conn = self._conn
            cursor = self._write_cursor
            if conn is None or cursor is None:
                raise StoreClosedError(f"{self!r} is not open")
            ns = self._namespace_ids.get(namespace) or self._namespaces.intern(conn, namespace)
            field_id = self._field_ids.get(field) or self._fields.intern(conn, field)
            ctx = self._context_ids.get(context) or self._contexts.intern(conn, context)
            # One autocommit statement: atomic, and seq and time are taken under
            # SQLite's write lock, so they are ordered across processes.
            cursor.execute(self._insert_one, (time, ns, field_id, ctx, data))
            seq: int = cursor.lastrowid  # type: ignore[assignment]
            last_seq, last_time = self._own_last
            if seq == last_seq + 1:
                # The row before ours is our own last one (rows are never deleted, so
                # a new seq is always the largest plus one): the statement stored
                # max(time, its time), computed here without RETURNING's cost.
                time = time if time > last_time else last_time
            else:  # another connection wrote in between: read back the time
                time = conn.execute(
                    f"SELECT time FROM {self._log} WHERE seq = ?", (seq,)
                ).fetchone()[0]
            self._own_last = (seq, time)
            return seq, time
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc
        finally:
            lock.release()

    def _append_many(
        self, conn: sqlite3.Connection, writes: Sequence[Write], expect: Sequence[Expectation]
    ) -> list[tuple[int, float]]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for namespace, field, expected in expect:
                actual = self._latest_seq(conn, namespace, field)
                if actual != expected:
                    raise conflict(namespace, field, expected, actual)
            last = conn.execute(
                f"SELECT seq, time FROM {self._log} ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, last_time = (last[0], last[1]) if last else (0, 0.0)
            namespaces, fields, contexts = self._namespaces, self._fields, self._contexts
            params: list[Any] = []
            assigned: list[tuple[int, float]] = []
            for namespace, field, data, context, when in writes:
                seq += 1
                last_time = when if when > last_time else last_time
                params += (
                    seq,
                    last_time,
                    namespaces.ids.get(namespace) or namespaces.intern(conn, namespace),
                    fields.ids.get(field) or fields.intern(conn, field),
                    contexts.ids.get(context) or contexts.intern(conn, context),
                    data,
                )
                assigned.append((seq, last_time))
            self._insert_rows(conn, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Interned names inserted inside the rolled-back transaction are gone too.
            self._forget_interned()
            raise
        self._own_last = assigned[-1]
        return assigned

    def _insert_rows(self, conn: sqlite3.Connection, params: list[Any]) -> None:
        """Insert rows of six columns given flat, in statements of up to 128 rows.

        One statement of many rows costs about two thirds of executemany's steps;
        128 rows stay under SQLite's oldest limit of 999 parameters.
        """
        per_statement = 128 * 6
        for start in range(0, len(params), per_statement):
            chunk = params[start : start + per_statement]
            conn.execute(_insert_statement(self._log, len(chunk) // 6), chunk)

    def _forget_interned(self) -> None:
        for interner in (self._namespaces, self._fields, self._contexts):
            interner.ids.clear()
            interner.names.clear()

    # -- reading ------------------------------------------------------------------

    def _facts(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], namespace: str | None = None
    ) -> list[Fact]:
        field_name = self._fields.name
        context_name = self._contexts.name
        ns_name = self._namespaces.name
        return [
            Fact(
                seq,
                when,
                namespace if namespace is not None else ns_name(conn, ns),
                field_name(conn, field),
                data,
                context_name(conn, ctx),
            )
            for seq, when, ns, field, ctx, data in rows
        ]

    def load_namespace(self, namespace: str) -> tuple[int, list[Fact]]:
        with self._using() as conn:
            conn.execute("BEGIN")
            try:
                high = self._last_seq(conn)
                ns = self._namespaces.lookup(conn, namespace)
                rows = (
                    []
                    if ns is None
                    else conn.execute(
                        f"SELECT seq, time, ns, field, ctx, data FROM {self._log} "
                        "WHERE ns = ? ORDER BY seq",
                        (ns,),
                    ).fetchall()
                )
                facts = self._facts(conn, rows, namespace)
            finally:
                conn.execute("COMMIT")
            return high, facts

    def facts_since(self, seq: int, limit: int | None = None) -> list[Fact]:
        with self._using() as conn:
            rows = conn.execute(
                f"SELECT seq, time, ns, field, ctx, data FROM {self._log} WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (seq, -1 if limit is None else limit),
            ).fetchall()
            return self._facts(conn, rows)

    def _latest_seq(self, conn: sqlite3.Connection, namespace: str, field: str) -> int:
        ns = self._namespaces.lookup(conn, namespace)
        field_id = self._fields.lookup(conn, field)
        if ns is None or field_id is None:
            return 0
        row = conn.execute(
            f"SELECT max(seq) FROM {self._log} WHERE ns = ? AND field = ?", (ns, field_id)
        ).fetchone()
        return int(row[0] or 0)

    def _last_seq(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(f"SELECT max(seq) FROM {self._log}").fetchone()
        return int(row[0] or 0)

    def last_seq(self) -> int:
        with self._using() as conn:
            return self._last_seq(conn)

    def change_token(self) -> Hashable:
        return self._token()

    def token_reader(self) -> Callable[[], Hashable]:
        return self._token

    def namespaces(self, prefix: str, upto_seq: int | None = None) -> list[str]:
        limit = upto_seq if upto_seq is not None else 2**62
        with self._using() as conn:
            rows = conn.execute(
                f"SELECT n.name FROM {self.prefix}_namespaces AS n WHERE "
                "(? = '' OR n.name = ? OR substr(n.name, 1, length(?) + 1) = ? || '/') AND "
                f"EXISTS (SELECT 1 FROM {self._log} AS l WHERE l.ns = n.id AND l.seq <= ?) "
                "ORDER BY n.name",
                (prefix, prefix, prefix, prefix, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def seq_at_time(self, when: float) -> int:
        # Times never decrease in seq order, so a binary search over seq finds it in
        # O(log n) point reads without an index on time.
        with self._using() as conn:
            low, high = 0, self._last_seq(conn)
            while low < high:
                middle = (low + high + 1) // 2
                row = conn.execute(
                    f"SELECT seq, time FROM {self._log} WHERE seq >= ? ORDER BY seq LIMIT 1",
                    (middle,),
                ).fetchone()
                if row is not None and row[1] <= when:
                    low = middle
                else:
                    high = middle - 1
            return low
