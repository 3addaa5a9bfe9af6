"""The Sqlite3 backend: the embedded default, one file shared by many processes.

Layout (``everstore`` is the default table prefix; the schema and its versions are in
:mod:`everstore.backends.sqlite.schema`):

* ``everstore_log(seq INTEGER PRIMARY KEY, time, ns, field, ctx, data)``: the facts.
  Namespaces, field names and contexts are interned as small integers in
  ``everstore_namespaces``, ``everstore_fields`` and ``everstore_contexts``, which keeps
  rows and the ``(ns, field, seq)`` index small.
* ``everstore_blobs(digest, data)``: content-addressed blobs (SHA-256 digest -> bytes).
* ``everstore_meta``: the schema version. The file header carries everstore's
  ``PRAGMA application_id`` and the schema version as ``user_version``.
* Triggers refuse UPDATE and DELETE on the log, the blobs and the interning tables,
  so history cannot be rewritten by accident, even with raw SQL.

Durability: WAL with ``synchronous=NORMAL`` by default. A write that returned survives
a killed process; a power loss may lose the last transactions (never corrupt the
file). ``synchronous="full"`` syncs the WAL to disk at every commit: a write that
returned survives a power loss too, for one disk flush per commit.
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

from ...errors import (
    BackendError,
    CorruptStoreError,
    ReadOnlyError,
    SchemaError,
    StoreClosedError,
)
from ...integrity.chain import (
    GENESIS,
    chain_step,
    erasable,
    erased_marker,
    fact_hash,
    fact_head,
    named_hash,
    single_step,
)
from ...log import Fact, Write
from ..base import (
    SCHEMA_VERSION,
    Backend,
    ChainedFact,
    Expectation,
    check_present,
    conflict,
    scan_tail,
    tail_is_short,
)
from . import schema
from .location import Location, locate
from .walwatch import CHANGE_COUNTER, WalHeader, map_wal_header

__all__ = ["Sqlite3"]

#: the values of Sqlite3(synchronous=...) and their PRAGMA
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}

_T = TypeVar("_T")
#: how many encoded name triples a writer keeps for the chain's fact hashes
_NAMES_KEPT = 4096

#: the change token of a database no other connection can write to
_PRIVATE_TOKEN = 0
#: the change counter of a WAL-index header (a token): ``_counter_of(token)[0]``
_counter_of = CHANGE_COUNTER.unpack_from
#: the size of a WAL file's header; its frames (the data) follow it
_WAL_HEADER_BYTES = 32
#: SQLite's result codes for "this file cannot be written here"
_NOT_WRITABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")
#: SQLite's result codes for a file whose bytes are damaged or not a database
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _is_damage(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith(_DAMAGED)


def _damage_error(path: str, exc: sqlite3.Error) -> CorruptStoreError:
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
        return CorruptStoreError(
            f"{path!r} is not an SQLite database ({exc}): not a store, or a store "
            "damaged beyond SQLite's header; nothing was written to it"
        )
    return CorruptStoreError(
        f"{path!r} is damaged ({exc}): SQLite found a page it cannot read; nothing "
        "was written to it. Restore it from a backup (see docs/integrity.md)"
    )


def _check_identifier(prefix: str) -> str:
    if not prefix.isidentifier() or not prefix.isascii():
        raise ValueError(f"table prefix must be an ASCII identifier, got {prefix!r}")
    return prefix


@functools.lru_cache(maxsize=256)
def _insert_statement(table: str, rows: int) -> str:
    """``INSERT`` of ``rows`` rows into the log ``table`` (cached: SQL text is built
    once per size, and sqlite3 caches the prepared statement by its text)."""
    values = ",".join(["(?,?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO {table}(seq, time, ns, field, ctx, data, link) VALUES {values}"


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
            cursor = conn.execute(f"INSERT OR IGNORE INTO {self.table}(name) VALUES (?)", (name,))
            if cursor.rowcount == 1 and cursor.lastrowid:
                # Inserted: its id is the rowid (the id column is INTEGER PRIMARY KEY),
                # no second look-up needed (a new namespace's first commit).
                ident = cursor.lastrowid
                self.remember(name, ident)
            else:  # another connection inserted it in between
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

    >>> import tempfile, os
    >>> from everstore import Store
    >>> path = os.path.join(tempfile.mkdtemp(), "doc.db")
    >>> with Store(Sqlite3(path)) as store:
    ...     store.storage("doc").title = "hello"
    >>> Store(Sqlite3(path)).storage("doc").title
    'hello'
    >>> Store(Sqlite3(path, readonly=True)).storage("doc").title
    'hello'

    Opening checks the file: a new or empty file becomes a store; a store of an
    older schema version is migrated, in one transaction, unless ``migrate=False``.
    A file that lost its store is refused with :class:`~everstore.errors.SchemaError`
    where a trace of it is left: an empty main file beside a non-empty ``-wal``
    (opening it would let SQLite discard that WAL), a header stamped by everstore
    without any table, or ``<prefix>_meta`` without the tables of its version. What
    leaves no trace cannot be told from a new file: a file truncated to 0 bytes after a
    clean close (which removes the WAL) opens as an empty store.

    :param path: a file path; ``":memory:"`` or ``""`` for a private database; or an
        SQLite URI (``"file:app.db?cache=private"``). A ``file:`` URI naming a file is
        shared like a path; only ``mode=memory`` makes it private.
    :param prefix: the table-name prefix (an ASCII identifier), so that several stores
        can share one file
    :param busy_timeout: seconds a writer waits for another's lock
    :param readonly: open with ``mode=ro``: every write raises
        :class:`~everstore.errors.ReadOnlyError`, no schema is created or migrated. In
        a directory this process cannot write, a file with no ``-wal``/``-shm`` beside
        it is opened ``immutable=1`` (SQLite then assumes nobody writes it).
    :param migrate: migrate an older schema on open (the default); with False an
        older schema raises :class:`~everstore.errors.SchemaError`
    :param synchronous: ``"normal"`` (the default: a commit survives a killed
        process) or ``"full"`` (it survives a power loss too: one disk flush per commit)
    :raises ValueError: for a prefix that is not an ASCII identifier, or another
        ``synchronous``
    """

    kind = "sqlite"
    chained = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "everstore",
        busy_timeout: float = 30.0,
        readonly: bool = False,
        migrate: bool = True,
        synchronous: str = "normal",
    ) -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous is 'normal' or 'full', got {synchronous!r}")
        self.synchronous = synchronous
        self.path = os.fspath(path)
        self.prefix = _check_identifier(prefix)
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self.migrate = migrate
        #: the schema version found in the file before :meth:`open` migrated it (None:
        #: nothing was migrated)
        self.migrated_from: int | None = None
        #: for an archive of pruned history (:meth:`archive_facts`), where it came
        #: from; None for a live store. Known once open.
        self.archive_of: str | None = None
        self._location: Location = locate(self.path, readonly=readonly)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._write_cursor: sqlite3.Cursor | None = None
        self._token: Callable[[], Hashable] = lambda: _PRIVATE_TOKEN
        #: what change_token() reads: "wal" (the WAL-index header), "data_version"
        #: (PRAGMA data_version) or "private" (a constant: nobody else writes)
        self._token_source = "private"
        #: the mapped WAL-index header, while change_token() reads it
        self._wal_header: WalHeader | None = None
        p = self.prefix
        self._log = f"{p}_log"
        self._namespaces = _Interner(f"{p}_namespaces")
        self._fields = _Interner(f"{p}_fields")
        self._contexts = _Interner(f"{p}_contexts")
        # The interners' dicts, one attribute look-up away for the write path.
        self._namespace_ids = self._namespaces.ids
        self._field_ids = self._fields.ids
        self._context_ids = self._contexts.ids
        # Not INSERT OR IGNORE, which would skip a bad digest (CHECK) silently: a
        # digest already stored is skipped by the table's no_replace trigger.
        self._insert_blob = f"INSERT INTO {p}_blobs(digest, data) VALUES (?, ?)"
        self._select_blob = f"SELECT data FROM {p}_blobs WHERE digest = ?"
        self._last_row = f"SELECT seq, time, link FROM {self._log} ORDER BY seq DESC LIMIT 1"
        self._insert_fact = _insert_statement(self._log, 1)
        # The last row with a link, read backwards from the end: the chain's head.
        self._chain_head = (
            f"SELECT seq, link FROM {self._log} WHERE link IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        self._links_after = (
            f"SELECT seq, link FROM {self._log} WHERE seq > ? AND link IS NOT NULL "
            "ORDER BY seq LIMIT ?"
        )
        self._chained_after = (
            f"SELECT seq, time, ns, field, ctx, data, link FROM {self._log} WHERE seq > ? "
            "ORDER BY seq LIMIT ?"
        )
        #: (seq, time, link) of the log's last row as this object's last write left
        #: it, or None when unknown (see _append_known)
        self._tail: tuple[int, float, bytes] | None = None
        #: fact heads of (ns, field, ctx) ids this object wrote (the chain's input)
        self._heads: dict[tuple[Any, ...], bytes] = {}
        self._blobs_after = (
            f"SELECT digest, data FROM {p}_blobs WHERE digest > ? ORDER BY digest LIMIT ?"
        )

    def __repr__(self) -> str:
        return f"Sqlite3({self.path!r})"

    # -- connection and schema ----------------------------------------------------

    def open(self) -> None:
        """Connect, then create, check or migrate the schema. Idempotent.

        :raises SchemaError: the file is not a store this release can use (another
            application's, a newer or (with ``migrate=False`` or ``readonly``) an older
            schema version, or a store that lost its tables)
        :raises BackendError: the file cannot be opened (for writing: the message says
            to use ``readonly=True``)
        """
        with self._lock:
            if self._conn is not None:
                return
            self._refuse_truncated()
            try:
                conn = sqlite3.connect(
                    self._location.target,
                    uri=self._location.uri,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise self._open_error(exc) from exc
            try:
                self._prepare(conn)
                token = self._token_source_of(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise self._open_error(exc) from exc
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            # One cursor for every single write: making a cursor per statement costs
            # about 1 µs, a twentieth of the whole write. A read-only backend, or an
            # archive's, has none, which is how append_one learns to refuse.
            self.archive_of = self._archive_origin(conn)
            writable = not self.readonly and self.archive_of is None
            self._write_cursor = conn.cursor() if writable else None
            self._token_source, self._token = token

    def _open_error(self, exc: sqlite3.Error) -> BackendError:
        if _is_damage(exc):
            return _damage_error(self.path, exc)
        code = getattr(exc, "sqlite_errorname", "")
        if not self.readonly and code.startswith(_NOT_WRITABLE):
            return BackendError(
                f"cannot open SQLite database {self.path!r} for writing ({exc}); to read "
                "it where it cannot be written, open it with readonly=True"
            )
        return BackendError(f"cannot open SQLite database {self.path!r}: {exc}")

    def _refuse_truncated(self) -> None:
        # SQLite, opening an empty main file, deletes the WAL beside it: whatever
        # the store still had there would be gone. Refuse before connecting.
        file = self._location.file
        if file is None:
            return
        try:
            main_size = os.path.getsize(file)
            wal_size = os.path.getsize(file + "-wal")
        except OSError:
            return
        # A WAL of its header alone holds no frame, so nothing to lose: another
        # connection is creating the file this very moment.
        if main_size == 0 and wal_size > _WAL_HEADER_BYTES:
            raise SchemaError(
                f"{self.path!r} is empty but its write-ahead log {file + '-wal'!r} holds "
                f"{wal_size} bytes: the database file was truncated after it held a "
                "store. Restore it from a backup; do not open it with SQLite, which "
                "would discard that log"
            )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # The file is inspected before anything is written to it: a file that is not
        # ours, or a schema we will not migrate, is left exactly as it was.
        version = schema.inspect(conn, self.prefix, self.path)
        self._check_version(version)
        if self.readonly:
            return
        self._until_not_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.synchronous]}")
        if version != SCHEMA_VERSION:
            self._upgrade(conn)

    def _check_version(self, version: int | None) -> None:
        if version is None:
            if self.readonly:
                raise SchemaError(
                    f"{self.path!r} holds no everstore store (no {self.prefix}_meta "
                    "table); a read-only open never creates one"
                )
            return
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path!r} holds everstore schema version {version}; this release "
                f"reads version {SCHEMA_VERSION}. Upgrade everstore to open it."
            )
        if version < SCHEMA_VERSION and self.readonly:
            raise SchemaError(
                f"{self.path!r} holds everstore schema version {version}; this release "
                f"needs version {SCHEMA_VERSION}, and a read-only open does not migrate. "
                "Open it once writable (readonly=False) to migrate it."
            )
        if version < SCHEMA_VERSION and not self.migrate:
            raise SchemaError(
                f"{self.path!r} holds everstore schema version {version}; this release "
                f"needs version {SCHEMA_VERSION}. Open it with migrate=True (the default) "
                f"or run `everstore migrate {self.path}` to migrate it."
            )

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Create or migrate the schema in one transaction. BEGIN IMMEDIATE takes the
        write lock first, so of two processes opening at once, the second finds the
        work done."""
        # BEGIN inside the try: a Ctrl-C right after it must not leave it open.
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = schema.inspect(conn, self.prefix, self.path)
            self._check_version(version)
            if version is None:
                schema.create(conn, self.prefix)
            elif version < SCHEMA_VERSION:
                schema.migrate(conn, self.prefix, version)
                self.migrated_from = version
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.migrated_from = None
            raise

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

    def _token_source_of(self, conn: sqlite3.Connection) -> tuple[str, Callable[[], Hashable]]:
        """``(source, reader)`` of the change token (see ``_token_source``)."""
        location = self._location
        if location.shared_memory:
            # Other connections of this process share it.
            return "data_version", self._data_version
        if location.file is None or location.immutable:
            # Private, or promised unchanging: no other connection can write to it.
            return "private", lambda: _PRIVATE_TOKEN
        conn.execute(f"SELECT 1 FROM {self._log} LIMIT 1").fetchall()
        header = map_wal_header(location.file + "-shm")
        if header is None:
            # No shared-memory index to watch safely: ask SQLite (slower, ~3 µs).
            return "data_version", self._data_version
        self._wal_header = header
        return "wal", header.read

    def _data_version(self) -> Hashable:
        with self._lock:
            return self.connection.execute("PRAGMA data_version").fetchone()[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._write_cursor = None
            self._token = lambda: _PRIVATE_TOKEN
            self._token_source = "private"
            if self._wal_header is not None:
                # Holding the mapping would hold the file (and its mount) open.
                self._wal_header.release()
                self._wal_header = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection (for inspection and raw SQL in tests)."""
        if self._conn is None:
            raise StoreClosedError(f"{self!r} is not open")
        return self._conn

    def _unwritable(self) -> StoreClosedError | ReadOnlyError:
        """The error for a write this object cannot make: closed, read-only, or an
        archive."""
        if self._conn is not None and self.readonly:
            return ReadOnlyError(
                f"{self.path!r} is open read-only (readonly=True): nothing was written"
            )
        if self._conn is not None and self.archive_of is not None:
            return ReadOnlyError(
                f"{self.path!r} is an archive of pruned history ({self.archive_of}): it "
                "takes no writes; nothing was written"
            )
        return StoreClosedError(f"{self!r} is not open")

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.connection
            try:
                yield conn
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_damage(exc):
                    raise _damage_error(self.path, exc) from exc
                raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc

    # -- writing ------------------------------------------------------------------

    def append(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation] = (),
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        if len(writes) == 1 and not expect and not blobs:
            return [self.append_one(*writes[0])]
        with self._using() as conn:
            if self._write_cursor is None:
                raise self._unwritable()
            return self._append_many(conn, writes, expect, None, blobs)

    def append_checked(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation],
        since: int,
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        with self._using() as conn:
            if self._write_cursor is None:
                raise self._unwritable()
            return self._append_many(conn, writes, expect, since, blobs)

    def append_one(
        self, namespace: str, field: str, data: bytes | None, context: str, time: float
    ) -> tuple[int, float]:
        # The hot path of every assignment. ``with``, not acquire() then try: Ctrl-C
        # can come right after acquire() returns, before the try, and would leave the
        # lock held for ever.
        with self._lock:
            try:
                if self._write_cursor is None:  # closed, or read-only
                    raise self._unwritable()
                ns = self._namespace_ids.get(namespace)
                field_id = self._field_ids.get(field)
                ctx = self._context_ids.get(context)
                if not (ns and field_id and ctx):
                    # A name this object has not met: looked up, or interned, in the
                    # same transaction as the row. Once per name.
                    write = Write(namespace, field, data, context, time)
                    return self._append_many(self.connection, [write], ())[-1]
                return self._append_known(time, ns, field_id, ctx, data, namespace, field, context)
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc

    def _append_known(
        self,
        time: float,
        ns: int,
        field_id: int,
        ctx: int,
        data: bytes | None,
        namespace: str,
        field: str,
        context: str,
    ) -> tuple[int, float]:
        """One write whose names are interned, with its link in its row.

        When this object wrote the log's last row, the seq, the time clamp and the
        link follow from that row, and the fact goes in by one autocommit ``INSERT``
        at the next seq: if another connection wrote since, that seq is taken and
        the insert is refused (seqs are gap-free, so the seq after ours is the first
        another writer takes). Otherwise, or after such a refusal, one ``BEGIN
        IMMEDIATE`` transaction reads the last row first."""
        key = (ns, field_id, ctx)
        head = self._heads.get(key) or self._head(key, namespace, field, context)
        hashed = named_hash(head, data)
        tail = self._tail
        if tail is not None:
            last_seq, last_time, prev = tail
            seq = last_seq + 1
            if last_time > time:
                time = last_time
            link = single_step(prev, seq, time, hashed)
            cursor = self._write_cursor
            assert cursor is not None  # checked by append_one
            try:
                cursor.execute(self._insert_fact, (seq, time, ns, field_id, ctx, data, link))
            except sqlite3.IntegrityError:
                pass  # another connection took that seq: read the log's end below
            else:
                self._tail = (seq, time, link)
                return seq, time
        conn = self.connection
        try:
            conn.execute("BEGIN IMMEDIATE")  # inside the try: see _append_many
            seq, last_time, prev = self._read_tail(conn)
            seq += 1
            if last_time > time:
                time = last_time
            link = single_step(prev, seq, time, hashed)
            conn.execute(self._insert_fact, (seq, time, ns, field_id, ctx, data, link))
            conn.execute("COMMIT")
        except BaseException:
            self._tail = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._tail = (seq, time, link)
        return seq, time

    def _read_tail(self, conn: sqlite3.Connection) -> tuple[int, float, bytes]:
        """(seq, time, link) of the log's last row; (0, 0.0, GENESIS) when empty. A
        last row without a link (never written by everstore) chains on GENESIS:
        verification reports it."""
        row = conn.execute(self._last_row).fetchone()
        if row is None:
            return 0, 0.0, GENESIS
        return row[0], row[1], GENESIS if row[2] is None else bytes(row[2])

    def _append_many(
        self,
        conn: sqlite3.Connection,
        writes: Sequence[Write],
        expect: Sequence[Expectation],
        since: int | None = None,
        blobs: Sequence[tuple[bytes, bytes]] = (),
        rewrite: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[tuple[int, float]]:
        # BEGIN inside the try: a Ctrl-C right after it would leave the connection in
        # a transaction, and every later write would fail.
        try:
            conn.execute("BEGIN IMMEDIATE")
            if rewrite is not None:
                rewrite(conn)
            seq, last_time, prev = self._read_tail(conn)
            if since is not None and seq == since:
                expect = []  # nothing was committed after since: nothing changed
            elif since is not None and tail_is_short(seq - since, len(expect)):
                # Under the write lock: the facts after since are all there will be.
                rows = conn.execute(
                    f"SELECT seq, ns, field FROM {self._log} WHERE seq > ?", (since,)
                ).fetchall()
                ns_name, field_name = self._namespaces.name, self._fields.name
                tail = ((s, ns_name(conn, ns), field_name(conn, f)) for s, ns, f in rows)
                changed = scan_tail(expect, tail)
                expect = [changed] if changed is not None else []
            for namespace, field, expected in expect:
                actual = self._latest_seq(conn, namespace, field)
                if actual != expected:
                    raise conflict(namespace, field, expected, actual)
            params: list[Any] = []
            assigned: list[tuple[int, float]] = []
            heads = self._heads
            hashes: list[bytes] = []
            first = seq + 1
            for namespace, field, data, context, when in writes:
                seq += 1
                last_time = when if when > last_time else last_time
                row = self._row(conn, seq, last_time, namespace, field, context, data)
                key = row[2:5]
                head = heads.get(key) or self._head(key, namespace, field, context)
                hashes.append(named_hash(head, data))
                params += row
                assigned.append((seq, last_time))
            if hashes:
                # The commit's link on its last row, under the write lock BEGIN
                # IMMEDIATE took: no other writer can chain in between.
                link = chain_step(prev, first, [when for _, when in assigned], hashes)
                params[-1] = link
                self._insert_rows(conn, params)
            if blobs:
                conn.executemany(self._insert_blob, _blob_rows(blobs))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Interned names inserted inside the rolled-back transaction are gone too.
            self._forget_interned()
            self._tail = None
            raise
        if assigned:
            self._tail = (seq, last_time, link)
        return assigned

    def erase_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        """The markers set by one ``UPDATE`` per fact, with the log's UPDATE trigger
        lifted inside the record's ``BEGIN IMMEDIATE`` transaction."""

        def erase(conn: sqlite3.Connection) -> None:
            markers = [
                (erased_marker(fact_hash(*names, data)), seq)
                for seq, names, data in self._rows_at(conn, seqs)
                if erasable(data)
            ]
            with schema.lifted(conn, self.prefix, "log", "UPDATE"):
                conn.executemany(f"UPDATE {self._log} SET data = ? WHERE seq = ?", markers)

        return self._rewrite(erase, record, expect)

    def remove_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        """One ``DELETE`` per fact (their links go with their rows), with the log's
        DELETE trigger lifted inside the record's ``BEGIN IMMEDIATE`` transaction."""

        def remove(conn: sqlite3.Connection) -> None:
            wanted = list(seqs)
            found = {row[0] for row in self._found_seqs(conn, wanted)}
            check_present(wanted, found, repr(self.path))
            with schema.lifted(conn, self.prefix, "log", "DELETE"):
                conn.executemany(f"DELETE FROM {self._log} WHERE seq = ?", [(s,) for s in wanted])

        return self._rewrite(remove, record, expect)

    def archive_facts(self, facts: Sequence[Fact], origin: str) -> None:
        """Keep ``facts`` at their own seqs in this file, which becomes (or already
        is) an archive of pruned history: a store that reads like any other and takes
        no other write (docs/integrity.md, "Retention"). One transaction.

        :param facts: facts pruned from a live log, with their seqs, times and data
        :param origin: what the archive holds, kept in its ``<prefix>_meta``
        :raises SchemaError: the file holds a live store (facts, and not an archive)
        :raises BackendError: a seq is in the archive already (nothing is written)
        :raises ReadOnlyError: the backend was opened with ``readonly=True``
        """
        with self._using() as conn:
            if self.readonly:
                raise self._unwritable()
            try:
                conn.execute("BEGIN IMMEDIATE")  # inside the try: see _append_many
                if self._archive_origin(conn) is None:
                    if self._last_seq(conn):
                        raise SchemaError(
                            f"{self.path!r} holds a live store: an archive needs a file "
                            "(or a prefix) of its own"
                        )
                    conn.execute(
                        f"INSERT INTO {self.prefix}_meta(key, value) VALUES ('archive_of', ?)",
                        (origin,),
                    )
                params: list[Any] = []
                for seq, when, namespace, field, data, context in facts:
                    params += self._row(conn, seq, when, namespace, field, context, data)
                self._insert_rows(conn, params)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._forget_interned()
                if isinstance(exc, sqlite3.Error):
                    raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc
                raise
            self.archive_of = self._archive_origin(conn)
            self._write_cursor = None

    def _archive_origin(self, conn: sqlite3.Connection) -> str | None:
        row = conn.execute(
            f"SELECT value FROM {self.prefix}_meta WHERE key = 'archive_of'"
        ).fetchone()
        return None if row is None else str(row[0])

    def _rewrite(
        self,
        rewrite: Callable[[sqlite3.Connection], None],
        record: Write,
        expect: Sequence[Expectation],
    ) -> tuple[int, float]:
        with self._using() as conn:
            if self._write_cursor is None:
                raise self._unwritable()
            # The rewritten rows' old bytes: zeroed in the pages SQLite frees or
            # rewrites (secure_delete), and dropped from the WAL by a checkpoint that
            # truncates it (a reader still using old frames leaves them to a later one).
            secure = conn.execute("PRAGMA secure_delete").fetchone()[0]
            conn.execute("PRAGMA secure_delete = ON")
            try:
                assigned = self._append_many(conn, [record], expect, rewrite=rewrite)[0]
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc
            finally:
                conn.execute(f"PRAGMA secure_delete = {int(secure)}")
            return assigned

    def _rows_at(
        self, conn: sqlite3.Connection, seqs: Sequence[int]
    ) -> list[tuple[int, tuple[str, str, str], bytes | None]]:
        """``(seq, (namespace, field, context), data)`` of each of ``seqs``.

        :raises MissingFactError: a seq that is not in the log
        """
        wanted = list(seqs)
        rows: dict[int, tuple[int, tuple[str, str, str], bytes | None]] = {}
        for seq, ns, field, ctx, data in self._found_seqs(conn, wanted, ", ns, field, ctx, data"):
            names = (
                self._namespaces.name(conn, ns),
                self._fields.name(conn, field),
                self._contexts.name(conn, ctx),
            )
            rows[seq] = (seq, names, data)
        check_present(wanted, rows, repr(self.path))
        return [rows[seq] for seq in wanted]

    def _found_seqs(
        self, conn: sqlite3.Connection, seqs: list[int], columns: str = ""
    ) -> list[tuple[Any, ...]]:
        """The rows of ``seqs`` that are in the log: their seq and ``columns``."""
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            found += conn.execute(
                f"SELECT seq{columns} FROM {self._log} WHERE seq IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        return found

    def put_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None:
        """Store ``(digest, data)`` pairs in ``<prefix>_blobs`` in one transaction; a
        digest already stored is left as it is.

        :param blobs: pairs of a 32-byte SHA-256 digest and the bytes it names
        :raises ReadOnlyError: the backend was opened with ``readonly=True``
        :raises BackendError: SQLite refused (a digest not 32 bytes long, for one);
            then nothing was stored
        """
        with self._using() as conn:
            if self._write_cursor is None:
                raise self._unwritable()
            rows = _blob_rows(blobs)
            try:
                conn.execute("BEGIN IMMEDIATE")  # inside the try: see _append_many
                conn.executemany(self._insert_blob, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def get_blob(self, digest: bytes) -> bytes | None:
        """The bytes stored under ``digest``, or None (one primary-key look-up).

        :param digest: a 32-byte SHA-256 digest
        :return: the stored bytes, or None if that digest was never stored
        """
        with self._using() as conn:
            row = conn.execute(self._select_blob, (bytes(digest),)).fetchone()
        return None if row is None else bytes(row[0])

    def blobs_after(self, digest: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` blobs after ``digest``, in digest order (the digest's
        unique index: one range scan)."""
        with self._using() as conn:
            rows = conn.execute(self._blobs_after, (bytes(digest), limit)).fetchall()
        return [(bytes(key), bytes(data)) for key, data in rows]

    def chain_links(self, after: int, limit: int | None = None) -> list[tuple[int, bytes]]:
        """The links in the log's rows after ``after`` (a range of its rowid tree)."""
        with self._using() as conn:
            rows = conn.execute(self._links_after, (after, -1 if limit is None else limit))
            return [(seq, bytes(link)) for seq, link in rows.fetchall()]

    def chain_head(self) -> tuple[int, bytes]:
        """The last row holding a link (read backwards from the log's end)."""
        with self._using() as conn:
            row = conn.execute(self._chain_head).fetchone()
        return (0, GENESIS) if row is None else (row[0], bytes(row[1]))

    def chained_facts(self, after: int, limit: int) -> list[ChainedFact]:
        """One range of the log's rows, with their links (one query)."""
        with self._using() as conn:
            rows = conn.execute(self._chained_after, (after, limit)).fetchall()
            namespaces, fields, contexts = self._namespaces, self._fields, self._contexts
            ns_names, field_names, context_names = namespaces.names, fields.names, contexts.names
            return [
                (
                    seq,
                    when,
                    ns_names.get(ns) or namespaces.name(conn, ns),
                    field_names.get(field) or fields.name(conn, field),
                    data,
                    context_names.get(ctx) or contexts.name(conn, ctx),
                    link,
                )
                for seq, when, ns, field, ctx, data, link in rows
            ]

    def _head(self, key: tuple[Any, ...], namespace: str, field: str, context: str) -> bytes:
        """The fact head of names with ids ``key``, kept for the next write."""
        if len(self._heads) >= _NAMES_KEPT:
            self._heads.clear()
        head = self._heads[key] = fact_head(namespace, field, context)
        return head

    def _row(
        self,
        conn: sqlite3.Connection,
        seq: int,
        when: float,
        namespace: str,
        field: str,
        context: str,
        data: bytes | None,
    ) -> tuple[Any, ...]:
        """The seven columns of one log row (no link), its names interned (inside
        the caller's transaction)."""
        names, fields, contexts = self._namespaces, self._fields, self._contexts
        return (
            seq,
            when,
            names.ids.get(namespace) or names.intern(conn, namespace),
            fields.ids.get(field) or fields.intern(conn, field),
            contexts.ids.get(context) or contexts.intern(conn, context),
            data,
            None,
        )

    def _insert_rows(self, conn: sqlite3.Connection, params: list[Any]) -> None:
        """Insert rows of seven columns given flat, in statements of up to 128 rows.

        One statement of many rows costs about two thirds of executemany's steps;
        128 rows (896 parameters) stay under SQLite's oldest limit of 999.
        """
        per_statement = 128 * 7
        for start in range(0, len(params), per_statement):
            chunk = params[start : start + per_statement]
            conn.execute(_insert_statement(self._log, len(chunk) // 7), chunk)

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
        # The interners' dicts first (names are never empty, so ``or`` falls back
        # only on a miss), and Facts made without the NamedTuple's Python __new__:
        # loading a namespace of 100k facts spends most of its time in this loop.
        field_names = self._fields.names
        context_names = self._contexts.names
        make = tuple.__new__
        return [
            make(
                Fact,
                (
                    seq,
                    when,
                    namespace if namespace is not None else ns_name(conn, ns),
                    field_names.get(field) or field_name(conn, field),
                    data,
                    context_names.get(ctx) or context_name(conn, ctx),
                ),
            )
            for seq, when, ns, field, ctx, data in rows
        ]

    def load_namespace(self, namespace: str) -> tuple[int, list[Fact]]:
        with self._using() as conn:
            if namespace not in self._namespace_ids:
                # A namespace with no fact yet (a new object's, say) has no name row:
                # two reads without a transaction prove it. The name row is inserted
                # by the transaction of the namespace's first fact, so if it is absent
                # at the second read, no fact up to the seq of the first one exists.
                high = self._last_seq(conn)
                if self._namespaces.lookup(conn, namespace) is None:
                    return high, []
            try:
                conn.execute("BEGIN")  # inside the try: see _append_many
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
                if conn.in_transaction:
                    conn.execute("COMMIT")
            return high, facts

    def load_namespaces(self, prefix: str) -> tuple[int, dict[str, list[Fact]]]:
        columns = "SELECT n.name, l.seq, l.time, l.field, l.ctx, l.data FROM "
        namespaces = f"{self.prefix}_namespaces AS n"
        if prefix:
            # The namespaces first (CROSS JOIN fixes the order), from a range of their
            # names' unique index: the paths under "p" run from "p/" up to "p0" ("0"
            # follows "/"); then each one's facts through the (ns, field, seq) index.
            query = (
                f"{columns}{namespaces} CROSS JOIN {self._log} AS l ON l.ns = n.id "
                "WHERE n.name = ? OR (n.name >= ? AND n.name < ?) ORDER BY l.seq"
            )
            params: tuple[str, ...] = (prefix, prefix + "/", prefix + "0")
        else:  # the whole log, in the order it is stored
            query = (
                f"{columns}{self._log} AS l CROSS JOIN {namespaces} ON n.id = l.ns ORDER BY l.seq"
            )
            params = ()
        with self._using() as conn:
            conn.execute("BEGIN")
            try:
                high = self._last_seq(conn)
                rows = conn.execute(query, params).fetchall()
                fields, field_name = self._fields.names, self._fields.name
                contexts, context_name = self._contexts.names, self._contexts.name
                loaded: dict[str, list[Fact]] = {}
                for name, seq, when, field, ctx, data in rows:
                    fact = Fact(
                        seq,
                        when,
                        name,
                        fields.get(field) or field_name(conn, field),
                        data,
                        contexts.get(ctx) or context_name(conn, ctx),
                    )
                    facts = loaded.get(name)
                    if facts is None:
                        loaded[name] = [fact]
                    else:
                        facts.append(fact)
            finally:
                conn.execute("COMMIT")
            return high, loaded

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

    def storage_size(self) -> int | None:
        """The database file's bytes with its write-ahead log's; None in memory."""
        file = self._location.file
        if file is None:
            return None
        return sum(os.path.getsize(name) for name in (file, file + "-wal") if os.path.isfile(name))

    def check_pages(self, *, full: bool = False) -> list[str]:
        """SQLite's own check of every page of the file: what it finds damaged, or
        ``[]``. Damage that leaves a page readable (noise inside a row or an index
        entry) is invisible to a read, which trusts the page: this finds it.

        :param full: ``PRAGMA integrity_check`` (also compares each index with its
            table, about 3x slower) instead of ``PRAGMA quick_check``
        :return: SQLite's messages (page and cell of each problem); empty when the
            file is sound
        :raises BackendError: the check could not run (the file is locked, say)

        Complexity: O(file size); it reads every page, which is why opening a store
        does not run it (see docs/integrity.md).
        """
        pragma = "integrity_check" if full else "quick_check"
        with self._lock:
            conn = self.connection
            try:
                rows = conn.execute(f"PRAGMA {pragma}").fetchall()
            except sqlite3.Error as exc:
                if _is_damage(exc):  # damaged beyond what the check walks around
                    return [str(exc)]
                raise BackendError(f"SQLite error on {self.path!r}: {exc}") from exc
        problems = [str(row[0]) for row in rows]
        return [] if problems == ["ok"] else problems

    def last_seq(self) -> int:
        with self._using() as conn:
            return self._last_seq(conn)

    def change_token(self) -> Hashable:
        return self._token()

    def token_reader(self) -> Callable[[], Hashable]:
        return self._token

    def token_after_commit(self, before: Hashable, count: int) -> Hashable | None:
        """The change token right after this object committed ``count`` facts, if it
        proves that nobody else committed since ``before``; else None.

        Called by the Store right after its own commit, ``before`` being the token it
        held (and had checked current) just before that commit. With the WAL-index
        header as token, every commit adds one to the header's change counter, so a
        counter exactly one above ``before``'s proves the only commit was ours. With
        ``PRAGMA data_version`` nothing is proved (None); a private database's token
        never changes. O(1), a memory read.

        :param before: the change token just before the commit
        :param count: how many facts the commit held (one commit whatever the count)
        :return: the current change token, or None if another writer may have
            committed since ``before``
        """
        current = self._token()
        if self._token_source != "wal":
            return current if self._token_source == "private" else None
        # The counter wraps at 2**32. Inline: this runs after every single write.
        if (
            type(before) is bytes
            and type(current) is bytes
            and _counter_of(current)[0] == (_counter_of(before)[0] + 1) & 0xFFFFFFFF
        ):
            return current
        return None

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

    def namespaces_after(
        self, prefix: str, upto_seq: int | None, after: str, limit: int | None
    ) -> list[str]:
        # The names' unique index gives them in order: the page is read, not the list.
        upto = upto_seq if upto_seq is not None else 2**62
        with self._using() as conn:
            rows = conn.execute(
                f"SELECT n.name FROM {self.prefix}_namespaces AS n WHERE n.name > ? AND "
                "(? = '' OR n.name = ? OR substr(n.name, 1, length(?) + 1) = ? || '/') AND "
                f"EXISTS (SELECT 1 FROM {self._log} AS l WHERE l.ns = n.id AND l.seq <= ?) "
                "ORDER BY n.name LIMIT ?",
                (after, prefix, prefix, prefix, prefix, upto, -1 if limit is None else limit),
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


def _blob_rows(blobs: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(bytes(digest), bytes(data)) for digest, data in blobs]
