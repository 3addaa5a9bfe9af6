"""appendmuch's drivers (``Memory``, ``Sqlite3``, ``PostgreSQL``) over everstore's backends.

Each driver wraps one everstore backend (its ``backend`` attribute) and offers the
driver methods appendmuch's users call: ``ensure()``, ``size()``, ``dump()`` /
``restore()``, ``history_all()``, ``append()``, ``flush()`` and ``close()``.

``dump()`` writes JSON lines (one object per fact, keys ``seq``, ``namespace``,
``field``, ``value`` (base64 of the encoded value, null for a tombstone),
``created_at``, ``context``) where appendmuch 0.3.0 wrote msgpack maps with the same
keys: everstore does not depend on msgpack, and the encoded values differ from
appendmuch's anyway, so neither library can restore the other's dumps.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import orjson

from everstore import Backend
from everstore import Memory as MemoryBackend
from everstore import Sqlite3 as Sqlite3Backend
from everstore.errors import DecodeError, EverstoreError, SchemaError
from everstore.log import Write

__all__ = ["DBDriver", "DriverError", "Memory", "PostgreSQL", "Row", "SQLDriver", "Sqlite3"]

#: ``(seq, namespace, field, value, created_at, context)``: a row as appendmuch's
#: drivers yield it; ``value`` is the encoded value, None for a tombstone
Row = tuple[int, str, str, bytes | None, float, str]

_DUMP_KEYS = ("seq", "namespace", "field", "value", "created_at", "context")
#: how many facts one read of the log fetches
_PAGE = 1000
_LIKE_PATTERN = re.compile(r"^[a-zA-Z0-9_%.\-/]+\Z")


class DriverError(EverstoreError, RuntimeError):
    """The database cannot be reached or holds tables everstore cannot use
    (a RuntimeError, as appendmuch's ``ensure()`` raises)."""


class ReadableBytes(Protocol):
    """A binary file-like object (what ``restore()`` accepts besides chunks)."""

    def read(self, size: int = -1) -> bytes: ...


class DBDriver:
    """What every compat driver offers; ``backend`` is the everstore backend it wraps.

    ``replace_predicate`` is set by the Store. In appendmuch it allowed a driver to
    overwrite a field's previous row; everstore's log is append-only, so every fact
    is kept and the predicate only shapes what ``history()`` shows.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.replace_predicate: Callable[[str, str], bool] = lambda namespace, field: False
        self._opened = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"

    @property
    def seq(self) -> int:
        """The highest committed seq (appendmuch's ``driver.seq``). O(1).

        :return: 0 for an empty log.
        """
        return self.backend.last_seq()

    def ensure(self) -> bool:
        """Open the log, creating its tables if they are missing.

        Never destroys data (nor did appendmuch since 0.1.0).

        :return: True if the log existed already (it holds facts, or this driver
            opened it before), False if it was created empty.
        :raises DriverError: the database cannot be reached, or holds tables of a
            schema everstore cannot read.
        """
        existed = self._opened
        try:
            self.backend.open()
            existed = existed or self.backend.last_seq() > 0
        except SchemaError as exc:
            raise DriverError(f"{self!r}: {exc}") from exc
        except (EverstoreError, OSError, sqlite3.Error) as exc:
            raise DriverError(f"Cannot connect to database. ({exc})") from exc
        self._opened = True
        return existed

    def size(self) -> int | None:
        """Bytes the database occupies, or None where that has no meaning (Memory)."""
        return None

    def append(
        self, namespace: str, field: str, value: bytes | None, context: str, now: float
    ) -> int:
        """Commit one encoded fact (``value`` None: a tombstone), as appendmuch 0.3.0's
        driver-level ``append``. Committed before it returns. O(1).

        :param namespace: the namespace path, parts joined by ``/``.
        :param field: the field name.
        :param value: the encoded value (the Store's codec), or None for a tombstone.
        :param context: the code location to record.
        :param now: the wall-clock time of the write.
        :return: the fact's seq, given by the backend.
        """
        self.ensure()
        return self.backend.append([Write(namespace, field, value, context, now)])[0][0]

    def history_all(self) -> Iterator[Row]:
        """Every fact of the log, in seq order, as appendmuch rows. O(facts), read in
        pages of 1000, so memory stays bounded.

        :return: an iterator of ``(seq, namespace, field, value, created_at, context)``.
        """
        self.ensure()
        last = 0
        while True:
            facts = self.backend.facts_since(last, _PAGE)
            for fact in facts:
                yield fact.seq, fact.namespace, fact.field, fact.data, fact.time, fact.context
            if len(facts) < _PAGE:
                return
            last = facts[-1].seq

    def dump(self) -> Iterator[bytes]:
        """The log as JSON lines, one chunk (one line) per fact, in seq order.

        :return: an iterator of byte chunks; their concatenation is the dump.
        """
        for seq, namespace, field, value, created_at, context in self.history_all():
            encoded = None if value is None else base64.b64encode(value).decode("ascii")
            record = {
                "seq": seq,
                "namespace": namespace,
                "field": field,
                "value": encoded,
                "created_at": created_at,
                "context": context,
            }
            yield orjson.dumps(record) + b"\n"

    def restore(self, stream: Iterable[bytes] | ReadableBytes) -> None:
        """Append the facts of a :meth:`dump` to this log, in their order, atomically.

        The backend gives the facts new seqs (the same ones when restoring into an
        empty log); times are kept (raised where they would go backwards).
        O(facts); the whole dump is held in memory once.

        :param stream: a binary file-like object, or an iterable of byte chunks.
        :raises DecodeError: a line is not a fact of a dump; nothing is written.
        """
        writes = [_write_of(number, line) for number, line in enumerate(_lines(stream), 1)]
        self.ensure()
        if writes:
            self.backend.append(writes)

    def flush(self) -> None:
        """Nothing to do: everstore commits every write before it returns."""

    def reset(self) -> None:
        """Refused: everstore's log is append-only and is never dropped.

        :raises NotImplementedError: always.
        """
        raise NotImplementedError(
            "everstore never drops its log (it is append-only); use a new database instead"
        )

    def close(self) -> None:
        """Close the backend. Idempotent."""
        self.backend.close()


def _lines(stream: Iterable[bytes] | ReadableBytes) -> Iterator[bytes]:
    if hasattr(stream, "read"):
        chunks: Iterable[bytes] = [stream.read()]
    else:
        chunks = stream
    pending = b""
    for chunk in chunks:
        pending += bytes(chunk)
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def _write_of(number: int, line: bytes) -> Write:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"line {number} of the dump is not JSON: {exc}") from None
    if not isinstance(record, dict) or set(record) != set(_DUMP_KEYS):
        raise DecodeError(f"line {number} of the dump needs exactly the keys {_DUMP_KEYS}")
    namespace, field, value = record["namespace"], record["field"], record["value"]
    created_at, context = record["created_at"], record["context"]
    if not isinstance(namespace, str) or not namespace or not isinstance(field, str):
        raise DecodeError(f"line {number} of the dump has a bad namespace or field")
    if not isinstance(created_at, int | float) or not isinstance(context, str):
        raise DecodeError(f"line {number} of the dump has a bad created_at or context")
    if value is not None:
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise DecodeError(f"line {number} of the dump has a value that is not base64") from None
    return Write(namespace, field, value, context, float(created_at))


class Memory(DBDriver):
    """appendmuch's in-memory driver, on an everstore ``Memory`` backend.

    >>> from everstore.compat.appendmuch import Store
    >>> driver = Memory()
    >>> Store(driver).storage("doc").x = 1
    >>> [row[1:3] for row in driver.history_all()]
    [('doc', 'x')]
    """

    def __init__(self) -> None:
        super().__init__(MemoryBackend())

    def ensure(self) -> bool:
        """Open the log; as in appendmuch 0.3.0, a Memory log always "exists".

        :return: True.
        """
        super().ensure()
        return True


def _check_names(table_prefix: str, tblextra: str, replace_index_specs: Any) -> str:
    if not (table_prefix.isascii() and table_prefix.isidentifier()):
        raise ValueError("Constraint violation: table_prefix must be a valid ASCII identifier")
    if tblextra and not (tblextra.isascii() and tblextra.isidentifier()):
        raise ValueError("Constraint violation: tblextra must be empty or a valid ASCII identifier")
    for field, pattern in replace_index_specs or []:
        if not (field.isascii() and field.isidentifier()):
            raise ValueError(
                "Constraint violation: replace_index_specs field must be a valid ASCII identifier"
            )
        if not _LIKE_PATTERN.match(pattern):
            raise ValueError(
                "Constraint violation: replace_index_specs namespace pattern contains "
                "disallowed characters"
            )
    return f"{table_prefix}{tblextra}"


class SQLDriver(DBDriver):
    """The SQL drivers' shared arguments. ``table_prefix`` + ``tblextra`` become the
    everstore backend's table prefix (tables ``appendmuch_log`` etc. by default, next
    to, never inside, an appendmuch ``appendmuch_values`` table).
    ``replace_index_specs`` is checked as appendmuch checks it, then unused: nothing
    is ever replaced."""

    def __init__(
        self,
        backend: Backend,
        table_prefix: str,
        tblextra: str,
        replace_index_specs: list[tuple[str, str]] | None,
    ) -> None:
        super().__init__(backend)
        self.table_prefix = table_prefix
        self.tblextra = tblextra
        self.replace_index_specs = list(replace_index_specs or [])


class Sqlite3(SQLDriver):
    """appendmuch's SQLite driver, on an everstore ``Sqlite3`` backend.

    ``busy_timeout`` (seconds) goes to the backend; many processes may share the file.
    """

    def __init__(
        self,
        database: str | os.PathLike[str],
        table_prefix: str = "appendmuch",
        tblextra: str = "",
        replace_index_specs: list[tuple[str, str]] | None = None,
        *,
        busy_timeout: float = 30.0,
    ) -> None:
        prefix = _check_names(table_prefix, tblextra, replace_index_specs)
        backend = Sqlite3Backend(database, prefix=prefix, busy_timeout=busy_timeout)
        super().__init__(backend, table_prefix, tblextra, replace_index_specs)
        self.database = os.fspath(database)

    def size(self) -> int | None:
        """Bytes of the database file (page count times page size), as appendmuch.

        :return: None for an in-memory database.
        """
        if self.database in ("", ":memory:"):
            return None
        self.ensure()
        uri = f"file:{self.database}?mode=ro"
        with _closing(sqlite3.connect(uri, uri=True)) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(page_size)


class _closing:
    """``contextlib.closing`` for a sqlite3 connection (whose own ``with`` commits)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


class PostgreSQL(SQLDriver):
    """appendmuch's PostgreSQL driver, on an everstore ``PostgreSQL`` backend (needs
    the ``postgres`` extra). ``min_size``/``max_size`` and other keywords go to the
    connection pool; ``schema`` (an everstore option) names the schema of the tables.
    """

    def __init__(
        self,
        conninfo: str = "",
        table_prefix: str = "appendmuch",
        tblextra: str = "",
        min_size: int = 5,
        max_size: int = 50,
        replace_index_specs: list[tuple[str, str]] | None = None,
        *,
        schema: str | None = None,
        **pool_options: Any,
    ) -> None:
        from everstore.backends.postgresql import PostgreSQL as PostgreSQLBackend

        prefix = _check_names(table_prefix, tblextra, replace_index_specs)
        backend = PostgreSQLBackend(
            conninfo,
            schema=schema,
            prefix=prefix,
            min_size=min_size,
            max_size=max_size,
            **pool_options,
        )
        super().__init__(backend, table_prefix, tblextra, replace_index_specs)

    def size(self) -> int | None:
        """Bytes of the store's tables and their indexes (``pg_total_relation_size``).

        :return: the total over the tables of this store.
        """
        self.ensure()
        backend = self.backend
        tables = []
        for suffix in ("log", "namespaces", "fields", "contexts", "meta", "counter", "blobs"):
            try:
                tables.append(backend.table(suffix))  # type: ignore[attr-defined]
            except ValueError:
                continue  # a table this schema version does not have
        query = " + ".join(f"pg_total_relation_size('{name}'::regclass)" for name in tables)
        with backend.connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute(f"SELECT {query}").fetchone()
        return int(row[0]) if row else None
