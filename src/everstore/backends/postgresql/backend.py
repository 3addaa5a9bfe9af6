"""The PostgreSQL class: a Backend whose log lives in a PostgreSQL database."""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import (
    BackendError,
    CorruptStoreError,
    MissingFactError,
    SchemaError,
    StoreClosedError,
)
from ...integrity.chain import erasable, erased_marker, fact_hash
from ...log import Fact, Write
from ..base import (
    TAIL_BASE,
    TAIL_PER_EXPECTATION,
    Backend,
    Expectation,
    check_present,
    conflict,
)
from .listener import KEEPALIVES, PEERS, Feed, Listener, Listening, StoreKey
from .schema import TABLES, Place, ensure_schema, render_sql
from .wire import (
    BYTEA_ARRAY_OID,
    INT4_ARRAY_OID,
    ByteaArray,
    FlushUnconfirmed,
    Int4Array,
    OneWriteCommit,
    array_dumper,
    connection_lost,
    encode_bytea_array,
    encode_int4_array,
    error_text,
    is_alive,
)

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

__all__ = ["PostgreSQL"]

_T = TypeVar("_T")
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}\Z")
_DEFAULT_CONNECT_TIMEOUT = 10
_DEFAULT_POOL_TIMEOUT = 10.0
_DEFAULT_RECONNECT_TIMEOUT = 5.0
#: seconds to wait for a pooled connection before asking the server if it is up
_FIRST_WAIT = 2.0


def _import_psycopg() -> tuple[ModuleType, ModuleType]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise ImportError(
            "the PostgreSQL backend needs psycopg 3 and psycopg-pool, which come with the "
            f"'postgres' extra: pip install 'everstore[postgres]' ({exc})"
        ) from exc
    return psycopg, psycopg_pool


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            f"table prefix must be an ASCII identifier of at most 40 characters, got {prefix!r}"
        )
    return prefix


def _check_schema(schema: str | None) -> str | None:
    if schema is None:
        return None
    if (
        not isinstance(schema, str)
        or not schema
        or len(schema.encode()) > 63
        or not schema.isprintable()
        or schema.startswith("pg_")
    ):
        raise ValueError(
            "schema must be a printable name of 1 to 63 bytes not starting with 'pg_', "
            f"got {schema!r}"
        )
    return schema


def _shutdown(listener: Listener | None, pool: ConnectionPool[Any] | None) -> None:
    if listener is not None:
        listener.stop()
    if pool is not None:
        pool.close(timeout=5.0)


class PostgreSQL(Backend):
    """A log in a PostgreSQL database, shared by any number of processes and hosts.

    ``conninfo`` is a libpq connection string or URL (``"dbname=app host=db"``,
    ``"postgresql://user@db/app"``). ``schema`` names the schema holding the tables
    (created if missing; default: the connection's current schema); ``prefix``
    starts every table name. ``synchronous_commit`` sets the session's
    ``synchronous_commit`` on (True) or off (False, faster: see "Durability" in
    docs/postgresql.md); None keeps the server's setting. ``migrate`` (default True)
    lets :meth:`open` migrate a schema written by an older everstore to this
    release's version, in one transaction; with False such a schema is refused with
    :class:`~everstore.errors.SchemaError`, left as it is. Other keywords go to
    :class:`psycopg_pool.ConnectionPool` (``min_size`` default 1, ``max_size`` 4,
    ``timeout`` 10 s, ...); ``connect_timeout`` (10 s) is added to the conninfo when
    it has none.

    The pool and the listener thread start in :meth:`open` (the Store calls it);
    :meth:`close` stops them.
    """

    kind = "postgresql"
    chained = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        prefix: str = "everstore",
        synchronous_commit: bool | None = None,
        migrate: bool = True,
        **pool_options: Any,
    ) -> None:
        psycopg, psycopg_pool = _import_psycopg()
        self._psycopg = psycopg
        self._psycopg_pool = psycopg_pool
        self.schema = _check_schema(schema)
        self.prefix = _check_prefix(prefix)
        if synchronous_commit not in (None, True, False):
            raise TypeError(
                f"synchronous_commit must be None, True or False, got {synchronous_commit!r}"
            )
        self.synchronous_commit = synchronous_commit
        if not isinstance(migrate, bool):
            raise TypeError(f"migrate must be True or False, got {migrate!r}")
        self.migrate = migrate
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo)
            extra: dict[str, Any] = {}
            if "connect_timeout" not in params:
                extra["connect_timeout"] = _DEFAULT_CONNECT_TIMEOUT
            if "application_name" not in params:
                extra["fallback_application_name"] = "everstore"
            self._conninfo = psycopg.conninfo.make_conninfo(conninfo, **extra)
            # The listener's connection idles for long: TCP keepalives notice a server
            # that vanished without closing it (no effect on Unix sockets).
            listener_extra = {k: v for k, v in KEEPALIVES.items() if k not in params}
            self._listener_conninfo = psycopg.conninfo.make_conninfo(
                self._conninfo, **listener_extra
            )
        except psycopg.Error as exc:
            raise BackendError(f"bad PostgreSQL conninfo: {exc}") from None
        self._where = _describe(params)
        self._conninfo_given = conninfo
        self._pool_options = dict(pool_options)
        self._lock = threading.RLock()
        self._pool: ConnectionPool[Any] | None = None
        self._listener: Listener | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._feed = Feed()
        self._peer_key: StoreKey | None = None
        #: id -> name and name -> id of the three interning tables (committed names
        #: never change, so these are never invalidated)
        self._names: tuple[dict[int, str], dict[int, str], dict[int, str]] = ({}, {}, {})
        self._ids: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})
        self._sql: dict[str, str] = {}
        #: the one-write commit; after a Ctrl-C, this process's Stores must look at
        #: the log (see _commit_error)
        self._one_write = OneWriteCommit(psycopg, self._feed.bump)
        self._resolved_schema: str | None = None
        #: whether commits wait for their WAL flush (the barrier; see open)
        self._durable = True
        self._readers = 0
        self._read_token: Callable[[], Hashable] = functools.partial(
            operator.getitem, self._feed.box, 1
        )

    def __repr__(self) -> str:
        extra = "" if self.schema is None else f", schema={self.schema!r}"
        if self.prefix != "everstore":
            extra += f", prefix={self.prefix!r}"
        return f"PostgreSQL({self._where!r}{extra})"

    # -- names --------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this store (one per schema and prefix)."""
        schema = self._resolved_schema or self.schema or ""
        digest = hashlib.sha256(f"{schema}\x00{self.prefix}".encode()).hexdigest()[:16]
        return f"{self.prefix}_{digest}"

    def table(self, suffix: str) -> str:
        """The quoted, schema-qualified name of one of the store's tables (for raw SQL)."""
        if suffix not in TABLES:
            raise ValueError(f"unknown table {suffix!r}; one of {TABLES}")
        if not self._sql:
            raise StoreClosedError(f"{self!r} was never opened: its schema is not known yet")
        return self._sql[f"table_{suffix}"]

    # -- life cycle -----------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._pool is not None:
                return
            psycopg = self._psycopg
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                raise BackendError(
                    f"cannot connect to PostgreSQL ({self._where}): {error_text(exc)}"
                ) from None
            try:
                schema = self.schema
                if schema is None:
                    schema = conn.execute("SELECT current_schema()").fetchone()[0]
                    if schema is None:
                        raise SchemaError(
                            f"{self._where}: no current schema (the search_path names no "
                            "existing schema); pass schema=..."
                        )
                self._resolved_schema = schema
                place = Place(schema, self.prefix, self._where)
                self._sql = render_sql(psycopg, conn, place, self.channel, self._feed.tag)
                ensure_schema(psycopg, conn, place, self._sql, migrate=self.migrate)
                self._durable = self._waits_for_flush(conn)
                self._one_write.use(
                    self._sql["append_ids_one"], self._sql["barrier"] if self._durable else None
                )
                listening = Listening(self.channel, self._sql["arm"], self._sql["counter_state"])
                Listener.listen(psycopg, conn, listening)
            except psycopg.Error as exc:
                conn.close()
                raise BackendError(
                    f"PostgreSQL error on {self._where}: {error_text(exc)}"
                ) from None
            except BaseException:
                conn.close()
                raise
            feed = self._feed
            feed.bump()  # LISTEN is established: anything earlier is in last_seq()
            listener = Listener(psycopg, conn, self._listener_conninfo, listening, feed)
            try:
                pool = self._make_pool()
            except BaseException:
                listener.stop()
                raise
            try:
                listener.start()  # arms the counter first: the next commit notifies
            except psycopg.Error as exc:
                _shutdown(listener, pool)
                raise BackendError(
                    f"PostgreSQL error on {self._where}: {error_text(exc)}"
                ) from None
            except BaseException:
                _shutdown(listener, pool)
                raise
            self._listener = listener
            self._pool = pool
            self._finalizer = weakref.finalize(self, _shutdown, listener, pool)
            self._peer_key = (self._conninfo_given, schema, self.prefix)
            PEERS.join(self._peer_key, feed)

    def _make_pool(self) -> ConnectionPool[Any]:
        options = dict(self._pool_options)
        kwargs = dict(options.pop("kwargs", None) or {})
        kwargs.setdefault("autocommit", True)
        if not kwargs["autocommit"]:
            raise ValueError("the pool's connections must be in autocommit mode")
        options.setdefault("min_size", 1)
        options.setdefault("max_size", max(4, options["min_size"]))
        options.setdefault("timeout", _DEFAULT_POOL_TIMEOUT)
        options.setdefault("name", f"everstore-{self.channel}")
        user_configure = options.pop("configure", None)
        setting = {None: None, True: "on", False: "off"}[self.synchronous_commit]

        def configure(conn: Connection[Any]) -> None:
            # The commit step relies on READ COMMITTED: after waiting for the counter
            # row, a statement reads its new version (REPEATABLE READ would fail).
            conn.execute("SET default_transaction_isolation = 'read committed'")
            adapters = conn.adapters
            adapters.register_dumper(
                Int4Array, array_dumper(self._psycopg, INT4_ARRAY_OID, encode_int4_array)
            )
            adapters.register_dumper(
                ByteaArray, array_dumper(self._psycopg, BYTEA_ARRAY_OID, encode_bytea_array)
            )
            if setting is not None:
                conn.execute(f"SET synchronous_commit = {setting}")
            if user_configure is not None:
                user_configure(conn)

        # After an outage, give up a reconnection attempt soon: the next request then
        # starts a fresh one at once, instead of waiting out a long backoff.
        options.setdefault("reconnect_timeout", _DEFAULT_RECONNECT_TIMEOUT)
        pool: ConnectionPool[Any] = self._psycopg_pool.ConnectionPool(
            self._conninfo, kwargs=kwargs, configure=configure, open=False, **options
        )
        pool.open(wait=False)
        return pool

    def _waits_for_flush(self, conn: Connection[Any]) -> bool:
        """Whether commits must wait for their WAL flush: the pool's sessions do
        unless ``synchronous_commit`` is off for them (by our option, or by the
        server's setting when we keep it)."""
        if self.synchronous_commit is not None:
            return self.synchronous_commit
        row = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
        return row is None or row[0] != "off"

    def close(self) -> None:
        with self._lock:
            if self._peer_key is not None:
                PEERS.leave(self._peer_key, self._feed)
                self._peer_key = None
            if self._finalizer is not None:
                self._finalizer()  # stops the listener, then the pool; runs once
                self._finalizer = None
            self._listener = None
            self._pool = None

    # -- connections ------------------------------------------------------------------

    def _require_pool(self) -> ConnectionPool[Any]:
        pool = self._pool
        if pool is None:
            raise StoreClosedError(f"{self!r} is not open")
        return pool

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A pooled connection in autocommit mode, for inspection and raw SQL; every
        psycopg error inside becomes :class:`BackendError`. Raw writes to the log are
        refused by its triggers; use the table names from :meth:`table`."""
        with self._connection() as conn:
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        """A pooled connection; every psycopg error becomes a BackendError."""
        with self._pooled() as conn:
            try:
                yield conn
            except self._psycopg.Error as exc:
                raise BackendError(f"PostgreSQL error on {self._where}: {error_text(exc)}") from exc

    @contextmanager
    def _pooled(self) -> Iterator[Connection[Any]]:
        """A live connection from the pool, returned to it afterwards.

        Failing to get one is a BackendError (or StoreClosedError once closed); errors
        inside the block are the caller's to map.
        """
        pool = self._require_pool()
        pools = self._psycopg_pool
        try:
            conn = self._live_connection(pool)
        except pools.PoolClosed:
            raise StoreClosedError(f"{self!r} is closed") from None
        except pools.PoolTimeout as exc:
            raise BackendError(
                f"no connection to PostgreSQL ({self._where}) within {pool.timeout:g} s: "
                f"{error_text(exc)}; the server answers, but every connection is busy"
            ) from None
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def _live_connection(self, pool: ConnectionPool[Any]) -> Connection[Any]:
        """A connection that still works: an idle one the server dropped (a restart,
        a terminated session) is replaced at once, without waiting or a round trip."""
        for _ in range(pool.max_size + 1):
            conn = self._getconn(pool)
            try:
                if is_alive(conn):
                    return conn
                conn.close()
            except BaseException:
                # Ctrl-C while checking it: the connection goes back to the pool, or
                # enough interrupts would leave every connection taken for ever.
                pool.putconn(conn)
                raise
            pool.putconn(conn)  # a closed connection is discarded and replaced
        return self._getconn(pool)

    def _getconn(self, pool: ConnectionPool[Any]) -> Connection[Any]:
        deadline = time.monotonic() + pool.timeout
        timeout_error = self._psycopg_pool.PoolTimeout
        try:
            conn: Connection[Any] = pool.getconn(min(pool.timeout, _FIRST_WAIT))
            return conn
        except timeout_error:
            pass
        # Slow: is the server down? Ask it directly, for a quick, clear error.
        try:
            self._psycopg.connect(self._conninfo).close()
        except self._psycopg.Error as exc:
            raise BackendError(
                f"cannot connect to PostgreSQL ({self._where}): {error_text(exc)}"
            ) from None
        # It is up: the pool is busy, or still waiting to reconnect. Asking again
        # often lets the pool start a new connection attempt if it gave one up.
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise timeout_error(f"no connection after {pool.timeout:g} s")
            try:
                conn = pool.getconn(min(left, 0.5))
                return conn
            except timeout_error:
                continue

    def _read(self, work: Callable[[Connection[Any]], _T]) -> _T:
        """Run a read; retried once if the connection was lost (reads are idempotent)."""
        try:
            with self._connection() as conn:
                return work(conn)
        except BackendError as exc:
            if not isinstance(exc.__cause__, self._psycopg.OperationalError):
                raise
        with self._connection() as conn:
            return work(conn)

    # -- writing ------------------------------------------------------------------------

    def append(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation] = (),
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        # Blobs go first, in their own statement: the append runs as one server
        # function call, and a blob no fact refers to is harmless if it is refused.
        if blobs:
            self.put_blobs(blobs)
        if not writes:
            if expect:
                raise ValueError("expectations need at least one write")
            return []
        when = writes[0].time
        _check_time(when)
        uniform = True
        for write in writes:
            if write.time != when:
                _check_time(write.time)
                uniform = False
        ns_ids, field_ids, ctx_ids = self._ids
        if uniform and not expect:
            try:
                ids = (
                    [ns_ids[write.namespace] for write in writes],
                    [field_ids[write.field] for write in writes],
                    [ctx_ids[write.context] for write in writes],
                )
            except KeyError:
                pass  # a name never seen: the function interns it
            else:
                params = {
                    "n": len(writes),
                    "t": when,
                    "ns": Int4Array(ids[0]),
                    "field": Int4Array(ids[1]),
                    "ctx": Int4Array(ids[2]),
                    "data": ByteaArray([write.data for write in writes]),
                    "h": _writes_hash(writes),
                }
                first, base = self._commit("append_ids", params, len(writes))
                return [(first + offset, base) for offset in range(1, len(writes) + 1)]
        return _assigned(writes, *self._commit_by_name(writes, expect))

    def append_checked(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation],
        since: int,
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> list[tuple[int, float]]:
        """One statement that checks only the log's tail after ``since`` (its cost does
        not grow with the expected fields' histories, as everstore_append's exact check
        does), when every name is interned, the writes share one time and the tail is
        short; otherwise, or when that statement writes nothing, :meth:`append`."""
        if blobs:
            self.put_blobs(blobs)  # first, as append() does
        if writes and expect:
            when = writes[0].time
            ns_ids, field_ids, ctx_ids = self._ids
            if all(write.time == when for write in writes):
                try:
                    params = {
                        "n": len(writes),
                        "t": when,
                        "ns": Int4Array([ns_ids[write.namespace] for write in writes]),
                        "field": Int4Array([field_ids[write.field] for write in writes]),
                        "ctx": Int4Array([ctx_ids[write.context] for write in writes]),
                        "data": ByteaArray([write.data for write in writes]),
                        "h": _writes_hash(writes),
                        "ens": Int4Array([ns_ids[namespace] for namespace, _, _ in expect]),
                        "efield": Int4Array([field_ids[field] for _, field, _ in expect]),
                        "eseq": [seq for _, _, seq in expect],
                        "since": since,
                        "upto": since + TAIL_BASE + TAIL_PER_EXPECTATION * len(expect),
                    }
                except KeyError:
                    pass  # a name never seen here: everstore_append looks names up
                else:
                    _check_time(when)
                    row = self._try_commit("append_ids_checked", params, len(writes))
                    if row is not None:
                        first, base = self._committed(row)
                        return [(first + offset, base) for offset in range(1, len(writes) + 1)]
        return self.append(writes, expect)

    def _try_commit(
        self,
        kind: str,
        params: Any,
        count: int,
        expect: Sequence[Expectation] = (),
        rewrite: Callable[[Connection[Any]], None] | None = None,
    ) -> tuple[Any, ...] | None:
        """One statement, so one transaction (with ``rewrite``'s statements before it,
        when given), and the barrier after it when it wrote (a row back); None when
        the statement wrote nothing."""
        try:
            with self._pooled() as conn:
                row: tuple[Any, ...] | None
                if rewrite is None:
                    row = conn.execute(self._sql[kind], params).fetchone()
                else:
                    with conn.transaction():
                        rewrite(conn)
                        row = conn.execute(self._sql[kind], params).fetchone()
                if row is not None:
                    self._wait_for_flush(conn)
        except self._psycopg.Error as exc:
            raise self._commit_error(exc, count, expect)  # noqa: B904 (the cause is set)
        except FlushUnconfirmed as exc:
            raise self._unconfirmed(exc, count)  # noqa: B904 (the cause is set)
        return row

    def _wait_for_flush(self, conn: Connection[Any]) -> None:
        """After a commit on ``conn`` (made without waiting for its WAL flush, so that
        the counter row's lock was released at once): wait for the flush, with the
        barrier statement, unless commits need not wait (synchronous_commit off).

        :raises FlushUnconfirmed: if the barrier fails
        """
        if self._durable:
            try:
                conn.execute(self._sql["barrier"])
            except self._psycopg.Error as exc:
                raise FlushUnconfirmed(error_text(exc)) from exc

    def _unconfirmed(self, exc: FlushUnconfirmed, count: int) -> BackendError:
        """What a commit whose flush could not be waited for raises."""
        # Our own commit, which the Store will not apply: every Store of this backend
        # must look at the log on its next read.
        self._feed.bump()
        error = BackendError(
            f"{count} write(s) were committed on {self._where}, but waiting for their "
            f"WAL flush failed (the server flushes it within wal_writer_delay unless it "
            f"crashes first): {exc}"
        )
        error.__cause__ = exc.__cause__
        return error

    def append_one(
        self, namespace: str, field: str, data: bytes | None, context: str, time: float
    ) -> tuple[int, float]:
        ns = self._ids[0].get(namespace)
        field_id = self._ids[1].get(field)
        ctx = self._ids[2].get(context)
        if ns is None or field_id is None or ctx is None:
            return self.append([Write(namespace, field, data, context, time)])[0]
        _check_time(time)
        digest = fact_hash(namespace, field, context, data)
        first, base = self._committed(self._commit_one(time, ns, field_id, ctx, data, digest))
        return first + 1, base

    def _commit_one(
        self, time: float, ns: int, field_id: int, ctx: int, data: bytes | None, digest: bytes
    ) -> tuple[int, float]:
        """One write whose names are interned: see wire.OneWriteCommit."""
        try:
            with self._pooled() as conn:
                return self._one_write.run(conn, time, ns, field_id, ctx, data, digest)
        except self._psycopg.Error as exc:
            raise self._commit_error(exc, 1, ())  # noqa: B904 (the cause is set)
        except FlushUnconfirmed as exc:
            raise self._unconfirmed(exc, 1)  # noqa: B904 (the cause is set)

    def _commit_by_name(
        self,
        writes: Sequence[Write],
        expect: Sequence[Expectation],
        rewrite: Callable[[Connection[Any]], None] | None = None,
    ) -> tuple[int, float]:
        """The general path: everstore_append interns names and checks expectations
        (after ``rewrite``'s statements, in the same transaction, when given)."""
        params: list[Any] = [
            [write.namespace for write in writes],
            [write.field for write in writes],
            [write.context for write in writes],
            ByteaArray([write.data for write in writes]),
            [write.time for write in writes],
            _writes_hash(writes),
        ]
        tag: Any = self._feed.tag
        params.append(tag)
        if expect:
            params += [
                [namespace for namespace, _, _ in expect],
                [field for _, field, _ in expect],
                [seq for _, _, seq in expect],
            ]
        row = self._execute_commit(
            "append_expect" if expect else "append", params, len(writes), expect, rewrite
        )
        # The interned ids are committed now: remember them for the hot paths.
        for table, idents in enumerate(row[2:5]):
            names = params[table]
            known = self._ids[table]
            back = self._names[table]
            for name, ident in zip(names, idents, strict=True):
                known[name] = ident
                back[ident] = name
        return self._committed(row)

    def erase_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        """The markers set by one ``UPDATE`` from arrays, in the record's transaction,
        with the append-only trigger let through for that transaction only (the
        ``everstore.rewrite`` setting, which the trigger reads)."""
        wanted = _seqs(seqs)

        def erase(conn: Connection[Any]) -> None:
            rows = self._rows_at(conn, wanted)
            changed = [(seq, names, data) for seq, names, data in rows if erasable(data)]
            conn.execute(self._sql["rewrite_on"])
            conn.execute(
                self._sql["erase"],
                (
                    [seq for seq, _, _ in changed],
                    ByteaArray(
                        [erased_marker(fact_hash(*names, data)) for _, names, data in changed]
                    ),
                ),
            )

        return self._rewritten(record, self._commit_by_name([record], expect, erase))

    def remove_facts(
        self, seqs: Sequence[int], record: Write, expect: Sequence[Expectation] = ()
    ) -> tuple[int, float]:
        """One ``DELETE`` of an array of seqs, in the record's transaction, as
        :meth:`erase_facts`; the chain's rows stay in ``<prefix>_chain``."""
        wanted = _seqs(seqs)

        def remove(conn: Connection[Any]) -> None:
            conn.execute(self._sql["rewrite_on"])
            removed = {int(row[0]) for row in conn.execute(self._sql["remove"], (wanted,))}
            check_present(wanted, removed, self._where)  # else the transaction rolls back

        return self._rewritten(record, self._commit_by_name([record], expect, remove))

    def _rewritten(self, record: Write, committed: tuple[int, float]) -> tuple[int, float]:
        """The record's ``(seq, time)`` from its commit's (the seq before it, the
        base time), after making every Store of this backend read the log on its next
        read: a rewrite is a commit its own Store must catch up with too (the read
        token otherwise leaves a Store's own commits out)."""
        self._feed.bump()
        return _assigned([record], *committed)[0]

    def _rows_at(
        self, conn: Connection[Any], seqs: list[int]
    ) -> list[tuple[int, tuple[str, str, str], bytes | None]]:
        """``(seq, (namespace, field, context), data)`` of each of ``seqs``, locked
        for the rewrite.

        :raises MissingFactError: a seq that is not in the log
        """
        found = {
            int(seq): (int(seq), (ns, field, ctx), None if data is None else bytes(data))
            for seq, ns, field, ctx, data in conn.execute(self._sql["rows_at"], (seqs,))
        }
        check_present(seqs, found, self._where)
        return [found[seq] for seq in seqs]

    def _commit(self, kind: str, params: Any, count: int) -> tuple[int, float]:
        return self._committed(self._execute_commit(kind, params, count, ()))

    def _committed(self, row: tuple[Any, ...]) -> tuple[int, float]:
        self._feed.committed()
        PEERS.wake_others(self._peer_key, self._feed)
        return int(row[0]), float(row[1])

    def _execute_commit(
        self,
        kind: str,
        params: Any,
        count: int,
        expect: Sequence[Expectation],
        rewrite: Callable[[Connection[Any]], None] | None = None,
    ) -> tuple[Any, ...]:
        """:meth:`_try_commit` for a statement that always writes."""
        row = self._try_commit(kind, params, count, expect, rewrite)
        if row is None:  # pragma: no cover - the statements always return a row
            raise BackendError(f"PostgreSQL returned nothing for a commit on {self._where}")
        return row

    def _commit_error(
        self, exc: BaseException, count: int, expect: Sequence[Expectation]
    ) -> Exception:
        """What a failed commit of ``count`` writes raises (its cause set)."""
        error: Exception
        diag = getattr(exc, "diag", None)
        if getattr(exc, "sqlstate", None) == "EV409" and diag and diag.message_detail:
            namespace, field, expected = expect[int(diag.message_detail) - 1]
            error = conflict(namespace, field, expected, int(diag.message_hint or 0))
            error.__suppress_context__ = True
            return error
        if isinstance(exc, self._psycopg.OperationalError) and connection_lost(exc):
            # The commit may have landed. The read token leaves our own commits out,
            # so make every Store of this backend look at the log on its next read
            # instead of trusting its cache.
            self._feed.bump()
            error = BackendError(
                f"the connection to PostgreSQL ({self._where}) was lost while committing "
                f"{count} write(s): they were committed entirely or not at all (the "
                f"change feed shows which): {error_text(exc)}"
            )
        else:
            error = BackendError(
                f"PostgreSQL refused a commit of {count} write(s) on {self._where}; nothing "
                f"was written: {error_text(exc)}"
            )
        error.__cause__ = exc
        return error

    # -- reading ------------------------------------------------------------------------

    def _facts(
        self, conn: Connection[Any], rows: list[tuple[Any, ...]], namespace: str | None
    ) -> list[Fact]:
        ns_names, field_names, ctx_names = self._names
        if namespace is None:
            self._learn_names(conn, rows, (2, 3, 4))
            return [
                Fact(seq, when, ns_names[ns], field_names[field], data, ctx_names[ctx])
                for seq, when, ns, field, ctx, data in rows
            ]
        self._learn_names(conn, rows, (None, 2, 3))
        return [
            Fact(seq, when, namespace, field_names[field], data, ctx_names[ctx])
            for seq, when, field, ctx, data in rows
        ]

    def _learn_names(
        self,
        conn: Connection[Any],
        rows: Sequence[tuple[Any, ...]],
        columns: tuple[int | None, int, int],
        seq_column: int = 0,
    ) -> None:
        """Read the names of the interned ids in ``rows`` not cached yet.

        :param rows: facts as read
        :param columns: where a row holds its namespace, field and context ids (None:
            it holds none)
        :param seq_column: where a row holds its seq
        :raises CorruptStoreError: if an id has no name: the database is damaged
        """
        wanted = [
            set() if at is None else {row[at] for row in rows}.difference(self._names[table])
            for table, at in enumerate(columns)
        ]
        if not any(wanted):
            return
        found = conn.execute(self._sql["names"], [sorted(ids) for ids in wanted]).fetchall()
        for table, ident, name in found:
            self._names[table][ident] = name
            self._ids[table][name] = ident
        for table, ids in enumerate(wanted):
            lost = ids.difference(self._names[table])
            at = columns[table]
            if lost and at is not None:
                seqs = sorted(row[seq_column] for row in rows if row[at] in lost)
                more = f" and {len(seqs) - 1} more" if len(seqs) > 1 else ""
                refer = "refer" if more else "refers"
                kind, names = (
                    ("namespace", "namespaces"),
                    ("field", "fields"),
                    ("context", "contexts"),
                )[table]
                raise CorruptStoreError(
                    f"fact {seqs[0]}{more} of {self!r} {refer} to {kind} id(s) {sorted(lost)}, "
                    f"which {self._sql[f'table_{names}']} does not hold: the store is "
                    "damaged (a row of its names was deleted?)"
                )

    def _no_counter_row(self) -> CorruptStoreError:
        """A read found the counter's one row missing (deleted after the open)."""
        return CorruptStoreError(
            f"{self._sql['table_counter']} of {self!r} has no row (it holds the last seq): "
            "the store is damaged"
        )

    def load_namespace(self, namespace: str) -> tuple[int, list[Fact]]:
        def work(conn: Connection[Any]) -> tuple[int, list[Fact]]:
            # One statement, one snapshot: the high water and the facts agree.
            rows = conn.execute(self._sql["load_namespace"], (namespace,), binary=True).fetchall()
            if not rows or rows[0][0] is None:
                raise self._no_counter_row()
            high = int(rows[0][0])
            facts = [row[1:] for row in rows if row[1] is not None]
            return high, self._facts(conn, facts, namespace)

        return self._read(work)

    def load_namespaces(self, prefix: str) -> tuple[int, dict[str, list[Fact]]]:
        def work(conn: Connection[Any]) -> tuple[int, dict[str, list[Fact]]]:
            # One statement, one snapshot: the counter's row (seq NULL, first) and the
            # facts. Planned for each prefix (prepare=False): a generic plan could not
            # tell a prefix of a few namespaces from one of nearly all.
            if prefix:
                rows = conn.execute(
                    self._sql["load_namespaces"], {"p": prefix}, binary=True, prepare=False
                ).fetchall()
            else:
                rows = conn.execute(self._sql["load_all"], binary=True).fetchall()
            if not rows or rows[0][0] is None:
                raise self._no_counter_row()
            high = int(rows[0][0])
            del rows[0]
            _, field_names, ctx_names = self._names
            self._learn_names(conn, rows, (None, 4, 5), seq_column=2)
            loaded: dict[str, list[Fact]] = {}
            for _, name, seq, when, field, ctx, data in rows:
                fact = Fact(seq, when, name, field_names[field], data, ctx_names[ctx])
                facts = loaded.get(name)
                if facts is None:
                    loaded[name] = [fact]
                else:
                    facts.append(fact)
            return high, loaded

        return self._read(work)

    def facts_since(self, seq: int, limit: int | None = None) -> list[Fact]:
        def work(conn: Connection[Any]) -> list[Fact]:
            rows = conn.execute(self._sql["facts_since"], (seq, limit), binary=True).fetchall()
            return self._facts(conn, rows, None)

        return self._read(work)

    def chain_links(self, after: int, limit: int | None = None) -> list[tuple[int, bytes]]:
        """The rows of ``<prefix>_chain`` after ``after`` (a range of its primary key)."""

        def work(conn: Connection[Any]) -> list[tuple[int, bytes]]:
            rows = conn.execute(self._sql["chain_links"], (after, limit), binary=True).fetchall()
            return [(int(seq), bytes(link)) for seq, link in rows]

        return self._read(work)

    def chain_head(self) -> tuple[int, bytes]:
        """The counter row's seq and link: the last commit's, as it committed."""

        def work(conn: Connection[Any]) -> tuple[int, bytes]:
            row = conn.execute(self._sql["chain_head"], binary=True).fetchone()
            if row is None:
                raise self._no_counter_row()
            return int(row[0]), bytes(row[1])

        return self._read(work)

    def storage_size(self) -> int | None:
        """The bytes of the store's tables, their indexes and TOAST data."""

        def work(conn: Connection[Any]) -> int:
            row = conn.execute(self._sql["storage_size"]).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return self._read(work)

    def last_seq(self) -> int:
        def work(conn: Connection[Any]) -> int:
            row = conn.execute(self._sql["last_seq"]).fetchone()
            if row is None:
                raise self._no_counter_row()
            return int(row[0])

        return self._read(work)

    def change_token(self) -> Hashable:
        """The count of notifications (and of this backend's own commits)."""
        return self._feed.box[0]

    def token_reader(self) -> Callable[[], Hashable]:
        """The read token: like :meth:`change_token` but blind to this backend's own
        commits, which the Store applies from :meth:`append`'s answer, so that a read
        after a write costs no query. When a second Store asks (one backend shared by
        two Stores), own commits count again for every reader."""
        self._readers += 1
        if self._readers > 1 and self._feed.filter_own:
            self._feed.share()
        return self._read_token

    def wait_for_change(self, token: Hashable, timeout: float | None) -> bool:
        feed = self._feed
        with feed.changed:
            return feed.changed.wait_for(lambda: feed.box[0] != token, timeout)

    def namespaces(self, prefix: str, upto_seq: int | None = None) -> list[str]:
        limit = upto_seq if upto_seq is not None else 2**62

        def work(conn: Connection[Any]) -> list[str]:
            rows = conn.execute(self._sql["namespaces"], {"p": prefix, "upto": limit}).fetchall()
            return [row[0] for row in rows]

        return self._read(work)

    def namespaces_after(
        self, prefix: str, upto_seq: int | None, after: str, limit: int | None
    ) -> list[str]:
        params = {
            "p": prefix,
            "upto": upto_seq if upto_seq is not None else 2**62,
            "after": after,
            "limit": limit,  # NULL: LIMIT ALL
        }

        def work(conn: Connection[Any]) -> list[str]:
            rows = conn.execute(self._sql["namespaces_after"], params).fetchall()
            return [row[0] for row in rows]

        return self._read(work)

    def seq_at_time(self, when: float) -> int:
        def work(conn: Connection[Any]) -> int:
            row = conn.execute(self._sql["seq_at_time"], (float(when),)).fetchone()
            return int(row[0]) if row else 0

        return self._read(work)

    # -- blobs ----------------------------------------------------------------------

    def put_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None:
        """Store ``(digest, data)`` pairs in the blob table, atomically, in one
        statement (one round trip). A digest already stored is left as it is.

        :param blobs: pairs of a 32-byte digest (the SHA-256 of ``data``; trusted)
            and the bytes
        :raises ValueError: if a digest is not 32 bytes long (nothing is written)
        :raises TypeError: if a digest or data is not bytes-like
        :raises BackendError: if the database refuses or cannot be reached
        """
        digests = ByteaArray()
        datas = ByteaArray()
        for index, (digest, data) in enumerate(blobs):
            digests.append(_checked_digest(digest, f"blob {index}'s digest"))
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"blob {index}'s data must be bytes, got {type(data).__name__}")
            datas.append(bytes(data))
        if not digests:
            return

        def work(conn: Connection[Any]) -> None:
            conn.execute(self._sql["put_blobs"], (digests, datas))

        # Idempotent (content addressing), so it may be retried like a read.
        self._read(work)

    def get_blob(self, digest: bytes) -> bytes | None:
        """The bytes stored under ``digest``.

        :param digest: a 32-byte digest
        :return: the blob's bytes, or None if none are stored under it
        :raises ValueError: if ``digest`` is not 32 bytes long
        :raises TypeError: if ``digest`` is not bytes-like
        :raises BackendError: if the database cannot be reached
        """
        key = _checked_digest(digest, "the digest")

        def work(conn: Connection[Any]) -> bytes | None:
            row = conn.execute(self._sql["get_blob"], (key,), binary=True).fetchone()
            return None if row is None else bytes(row[0])

        return self._read(work)

    def blobs_after(self, digest: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` blobs after ``digest``, in digest order (one range scan
        of the primary key).

        :raises BackendError: if the database cannot be reached
        """
        after = bytes(digest)

        def work(conn: Connection[Any]) -> list[tuple[bytes, bytes]]:
            rows = conn.execute(self._sql["blobs_after"], (after, limit), binary=True).fetchall()
            return [(bytes(key), bytes(data)) for key, data in rows]

        return self._read(work)

    # -- inspection -----------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """True while the listener thread runs (it reconnects by itself)."""
        return self._listener is not None and self._listener.alive


def _describe(params: dict[str, Any]) -> str:
    """The conninfo without its password, for messages."""
    shown = {k: v for k, v in params.items() if k in ("host", "hostaddr", "port", "dbname", "user")}
    return " ".join(f"{k}={v}" for k, v in shown.items()) or "default server"


def _checked_digest(digest: bytes, what: str) -> bytes:
    """``digest`` as bytes, if it is 32 bytes long (a SHA-256)."""
    if not isinstance(digest, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be 32 bytes, got {type(digest).__name__}")
    digest = bytes(digest)
    if len(digest) != 32:
        raise ValueError(f"{what} must be 32 bytes (a SHA-256), got {len(digest)} bytes")
    return digest


def _writes_hash(writes: Sequence[Write]) -> bytes:
    """The :func:`~everstore.integrity.fact_hash` of each of ``writes``, joined: the
    commit's statement binds them to their seqs and times under the counter's lock."""
    return b"".join([fact_hash(w.namespace, w.field, w.context, w.data) for w in writes])


def _assigned(writes: Sequence[Write], first: int, base: float) -> list[tuple[int, float]]:
    """``(seq, time)`` of each of ``writes`` committed by the general path, from what
    it returns: the seq before them and the log's time before them (each write's time
    raised to it, and to the time of the write before it)."""
    assigned: list[tuple[int, float]] = []
    for offset, write in enumerate(writes, 1):
        if write.time > base:
            base = write.time
        assigned.append((first + offset, base))
    return assigned


def _seqs(seqs: Sequence[int]) -> list[int]:
    """``seqs`` as a list of ints.

    :raises MissingFactError: for a seq that is not a positive int
    """
    wanted = list(seqs)
    for seq in wanted:
        if type(seq) is not int or seq < 1:
            raise MissingFactError(f"seq {seq!r} is not a fact of a log (seqs are ints >= 1)")
    return wanted


def _check_time(when: float) -> None:
    if not math.isfinite(when):
        raise ValueError(f"a write's time must be a finite number of seconds, got {when!r}")
