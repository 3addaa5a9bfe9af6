"""What the PostgreSQL backend says to libpq directly, below psycopg's cursors.

Binary ``int4[]`` and ``bytea[]`` parameters built in C, the wait for a statement's
answer on the socket (so that Ctrl-C can cancel it), the one-write commit as a
prepared statement, and the reading of libpq's errors. Nothing here imports psycopg:
the backend passes the module in.
"""

from __future__ import annotations

import array
import functools
import select
import struct
import sys
import time
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "BYTEA_ARRAY_OID",
    "CANCEL_TIMEOUT",
    "INT4_ARRAY_OID",
    "ByteaArray",
    "FlushUnconfirmed",
    "Int4Array",
    "OneWriteCommit",
    "array_dumper",
    "connection_lost",
    "encode_bytea_array",
    "encode_int4_array",
    "error_text",
    "is_alive",
    "result_error",
    "send_all",
    "wait_answer",
    "wait_readable",
    "wait_result",
]

#: seconds to wait for a statement cancelled by Ctrl-C to end
CANCEL_TIMEOUT = 5.0

INT4_OID = 23
INT4_ARRAY_OID = 1007
BYTEA_OID = 17
BYTEA_ARRAY_OID = 1001

_ONE_WRITE_STATEMENT = b"everstore_append_one"
_BARRIER_STATEMENT = b"everstore_barrier"
_BEGIN_STATEMENT = b"everstore_begin"
_COMMIT_STATEMENT = b"everstore_commit"
_NO_SUCH_STATEMENT = b"26000"  # invalid_sql_statement_name
_BINARY_6 = [1, 1, 1, 1, 1, 1]
_PACK_F8 = struct.Struct(">d").pack
_PACK_I4 = struct.Struct(">i").pack
_UNPACK_I8 = struct.Struct(">q").unpack
_UNPACK_F8 = struct.Struct(">d").unpack
_NULL_ELEMENT = struct.pack(">i", -1)


class Int4Array(list[int]):
    """Interned ids, sent as one binary ``int4[]`` built in C (see encode_int4_array)."""


class ByteaArray(list["bytes | None"]):
    """Byte strings (None: NULL), sent as one binary ``bytea[]`` (see encode_bytea_array)."""


def encode_int4_array(ids: list[int]) -> bytes:
    """PostgreSQL's binary ``int4[]``: a header, then (length 4, value) per element.

    psycopg's generic list dumper inspects every element's type and size; for the
    three id arrays of a transaction of 1,000 writes that cost about 0.6 µs per write,
    this about a tenth of it.

    :param ids: the values, each fitting in 32 bits
    :return: the array in PostgreSQL's binary format

    >>> encode_int4_array([7]).hex()
    '00000001000000000000001700000001000000010000000400000007'
    """
    count = len(ids)
    if not count:
        return struct.pack(">3i", 0, 0, INT4_OID)
    body = array.array("i", [4]) * (2 * count)
    body[1::2] = array.array("i", ids)
    if sys.byteorder == "little":
        body.byteswap()
    return struct.pack(">5i", 1, 0, INT4_OID, count, 1) + body.tobytes()


def encode_bytea_array(blobs: list[bytes | None]) -> bytes:
    """PostgreSQL's binary ``bytea[]``: a header, then (length, bytes) per element,
    length -1 for NULL (a tombstone). Without NULLs the parts are interleaved in C:
    about a third of psycopg's generic list dumper's time.

    :param blobs: the byte strings, None for NULL
    :return: the array in PostgreSQL's binary format

    >>> encode_bytea_array([b"a", None])[-9:].hex()
    '0000000161ffffffff'
    """
    count = len(blobs)
    if not count:
        return struct.pack(">3i", 0, 0, BYTEA_OID)
    parts: list[bytes] = [b""] * (2 * count)
    if None in blobs:
        parts[0::2] = [_NULL_ELEMENT if blob is None else _PACK_I4(len(blob)) for blob in blobs]
        parts[1::2] = [blob or b"" for blob in blobs]
        has_null = 1
    else:
        parts[0::2] = map(_PACK_I4, map(len, blobs))  # type: ignore[arg-type]
        parts[1::2] = blobs  # type: ignore[assignment]
        has_null = 0
    header = struct.pack(">5i", 1, has_null, BYTEA_OID, count, 1)
    return header + b"".join(parts)


@functools.cache
def array_dumper(psycopg: ModuleType, array_oid: int, encode: Callable[[Any], bytes]) -> type:
    """A binary psycopg dumper sending a list subclass through ``encode``.

    :param psycopg: the psycopg module
    :param array_oid: the PostgreSQL type of the array (``INT4_ARRAY_OID``, ...)
    :param encode: turns the list into PostgreSQL's binary format
    :return: a dumper class for ``conn.adapters.register_dumper``
    """

    class ArrayDumper(psycopg.adapt.Dumper):  # type: ignore[name-defined,misc]
        format = psycopg.pq.Format.BINARY
        oid = array_oid

        def dump(self, obj: list[Any]) -> bytes:
            return encode(obj)

    return ArrayDumper


def error_text(exc: BaseException) -> str:
    """The first line of an error's message (psycopg's go on with context lines).

    :param exc: any exception
    :return: its first line, or its type's name if it has no message

    >>> error_text(ValueError("bad\\nLINE 1: ..."))
    'bad'
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_lost(exc: BaseException) -> bool:
    """True if the error means the connection itself failed (not a refused statement).

    :param exc: a psycopg error
    :return: whether it has no SQLSTATE or a connection-class one (08, 57P)
    """
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def wait_answer(pgconn: Any, deadline: float | None = None) -> Any:
    """Send what libpq still holds of the statement, wait for the server's answer on
    the socket and return its first result, the others read and dropped.

    :param pgconn: psycopg's libpq connection (``conn.pgconn``)
    :param deadline: a ``time.monotonic()`` value after which to give up, or None
    :return: libpq's first result of the statement
    :raises TimeoutError: when the deadline passed first
    """
    send_all(pgconn)
    wait_readable(pgconn, deadline)
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass
    return result


def send_all(pgconn: Any) -> None:
    """Send what libpq still holds (waiting for the socket to take it).

    :param pgconn: psycopg's libpq connection
    """
    while pgconn.flush():
        select.select([], [pgconn.socket], [])


def wait_readable(pgconn: Any, deadline: float | None) -> None:
    """Read from the socket until libpq holds a result (or the end of one).

    :param pgconn: psycopg's libpq connection
    :param deadline: a ``time.monotonic()`` value after which to give up, or None
    :raises TimeoutError: when the deadline passed first
    """
    fd = pgconn.socket
    while pgconn.is_busy():
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise TimeoutError("PostgreSQL did not answer in time")
        if select.select([fd], [], [], timeout)[0]:
            pgconn.consume_input()


def wait_result(conn: Connection[Any], interrupted: Callable[[], None]) -> Any:
    """The result of the statement just sent on ``conn``.

    The wait is on the socket, in Python, not in libpq's blocking call, so that
    Ctrl-C interrupts a commit stuck behind the commit step's lock: the statement is
    then cancelled on the server (as psycopg does), so it cannot commit later behind
    the caller's back, and the KeyboardInterrupt goes on.

    :param conn: the connection the statement was sent on
    :param interrupted: called after a cancel, committed or not (the caller's readers
        must look at the log)
    :return: libpq's result
    :raises KeyboardInterrupt: after cancelling the statement
    """
    try:
        return wait_answer(conn.pgconn)
    except KeyboardInterrupt:
        _cancel(conn, interrupted, functools.partial(wait_answer, conn.pgconn))
        raise


def _cancel(
    conn: Connection[Any], interrupted: Callable[[], None], settle: Callable[[float], object]
) -> None:
    """Cancel what runs on ``conn`` and wait for its end with ``settle(deadline)``; a
    connection that does not settle within seconds is closed (the pool drops it)."""
    try:
        conn.cancel_safe(timeout=CANCEL_TIMEOUT)
        settle(time.monotonic() + CANCEL_TIMEOUT)
    except BaseException:  # a second Ctrl-C too: give the connection up
        conn.close()
    finally:
        interrupted()


def result_error(psycopg: ModuleType, pgconn: Any, result: Any) -> Exception:
    """The psycopg error for a failed libpq result.

    :param psycopg: the psycopg module
    :param pgconn: the libpq connection the result came from
    :param result: the failed result
    :return: the error psycopg would raise: an OperationalError when the connection
        itself broke
    """
    if pgconn.status != psycopg.pq.ConnStatus.OK or not result.error_field(
        psycopg.pq.DiagnosticField.SQLSTATE
    ):
        message = (result.error_message or pgconn.error_message or b"").decode(errors="replace")
        lost: Exception = psycopg.OperationalError(message.strip() or "the connection was lost")
        return lost
    error: Exception = psycopg.errors.error_from_result(result)
    return error


def is_alive(conn: Connection[Any]) -> bool:
    """Whether an idle connection still works.

    An idle connection must have nothing to read. A server that restarted or
    terminated it has sent an error or closed the socket, which makes it readable;
    only then is a round trip spent to make sure.

    :param conn: an idle connection
    :return: False if it is closed or broken
    """
    if conn.closed:
        return False
    try:
        ready, _, _ = select.select([conn.fileno()], [], [], 0)
        if ready:
            conn.execute("SELECT 1")
    except Exception:
        return False
    return True


class FlushUnconfirmed(Exception):
    """A commit was made, but the wait for its WAL flush failed (the cause is set)."""


class OneWriteCommit:
    """The hot path of every assignment: one write whose names are interned, run as
    a prepared statement straight through libpq, with binary parameters and results.

    psycopg's cursor machinery (adapting, the prepare manager, its wait loop in
    Python) cost about 50 µs of CPU per commit on the project's machine, more than
    the server's own work for the statement with ``synchronous_commit`` off.

    The statement takes ``$1`` time (float8), ``$2``-``$4`` the ids of namespace,
    field and context (int4), ``$5`` the data (bytea, NULL for a tombstone), ``$6``
    the write's hash for the chain (bytea, docs/integrity.md), and
    returns the seq before the write and the commit's time. With a barrier, the
    write runs between ``BEGIN`` and ``COMMIT`` and the barrier after them, in a
    transaction of its own, all in one round trip (libpq's pipeline mode, one sync;
    see "The commit step and its flush" in docs/postgresql.md).
    """

    def __init__(self, psycopg: ModuleType, interrupted: Callable[[], None]) -> None:
        """Nothing is sent before :meth:`use` gave the statements' SQL.

        :param psycopg: the psycopg module
        :param interrupted: called when Ctrl-C cancelled a commit (see wait_result)
        """
        self._psycopg = psycopg
        self._interrupted = interrupted
        self._query = b""
        self._barrier: bytes | None = None
        #: the connections on which the statements are prepared
        self._prepared: weakref.WeakSet[Connection[Any]] = weakref.WeakSet()

    def use(self, query: str, barrier: str | None = None) -> None:
        """Set the statements' SQL (known once the backend has opened).

        :param query: the write's SQL, with libpq's ``$n`` placeholders
        :param barrier: a statement, without parameters, to run after the write's
            commit in its own transaction (the wait for the write's WAL flush), or
            None
        """
        self._query = query.encode()
        self._barrier = None if barrier is None else barrier.encode()
        self._prepared = weakref.WeakSet()

    def run(
        self,
        conn: Connection[Any],
        when: float,
        ns: int,
        field: int,
        ctx: int,
        data: bytes | None,
        digest: bytes,
    ) -> tuple[int, float]:
        """Commit one write on ``conn`` (in autocommit mode), then run the barrier.

        :return: ``(seq before the write, commit time)``
        :raises psycopg.Error: as psycopg would raise it (nothing was committed, or it
            is unknown whether it was, if the connection broke)
        :raises FlushUnconfirmed: if the write committed but the barrier failed
        :raises KeyboardInterrupt: after cancelling the statements on the server
        """
        params = [_PACK_F8(when), _PACK_I4(ns), _PACK_I4(field), _PACK_I4(ctx), data, digest]
        result = self._execute(conn, params)
        return _UNPACK_I8(result.get_value(0, 0))[0], _UNPACK_F8(result.get_value(0, 1))[0]

    def _execute(self, conn: Connection[Any], params: list[bytes | None]) -> Any:
        """Run the statements on ``conn``, preparing them first if this connection
        has not; a failure becomes the psycopg error psycopg would raise.

        A ``prepare_threshold`` of None means the user asked psycopg never to prepare
        (as behind pgbouncer in transaction mode, where a prepared statement may be
        on another server connection): the statements are then sent whole, unnamed.
        """
        named = conn.prepare_threshold is not None
        pq = self._psycopg.pq
        for attempt in (1, 2):
            if named and conn not in self._prepared:
                self._prepare(conn)
            if self._barrier is None:
                self._send(conn.pgconn, _ONE_WRITE_STATEMENT, self._query, params, named)
                write = wait_result(conn, self._interrupted)
                commit = barrier = None
            else:
                begin, write, commit, barrier = self._pipeline(conn, params, named)
                if begin is None or begin.status != pq.ExecStatus.COMMAND_OK:
                    write = begin  # the first failure: the others were not run
            if write is not None and write.status == pq.ExecStatus.TUPLES_OK:
                if self._barrier is not None:
                    self._check_commit(conn, commit, barrier, named)
                return write
            if write is None:
                raise self._psycopg.OperationalError("the connection was lost")
            if attempt == 1 and named and _sqlstate(pq, write) == _NO_SUCH_STATEMENT:
                # Someone ran DEALLOCATE on this session (nothing was executed).
                self._prepared.discard(conn)
                continue
            raise result_error(self._psycopg, conn.pgconn, write)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(self, conn: Connection[Any]) -> None:
        pq = self._psycopg.pq
        statements = [(_ONE_WRITE_STATEMENT, self._query)]
        if self._barrier is not None:
            statements += [
                (_BEGIN_STATEMENT, b"BEGIN"),
                (_COMMIT_STATEMENT, b"COMMIT"),
                (_BARRIER_STATEMENT, self._barrier),
            ]
        for name, query in statements:
            conn.pgconn.send_prepare(name, query)
            prepared = wait_result(conn, self._interrupted)
            if prepared.status != pq.ExecStatus.COMMAND_OK:
                raise result_error(self._psycopg, conn.pgconn, prepared)
        self._prepared.add(conn)

    @staticmethod
    def _send(
        pgconn: Any, name: bytes, query: bytes, params: list[bytes | None] | None, named: bool
    ) -> None:
        if named:
            pgconn.send_query_prepared(name, params, _BINARY_6 if params else None, 1)
        else:
            formats = _BINARY_6 if params else None
            pgconn.send_query_params(query, params, param_formats=formats, result_format=1)

    def _pipeline(
        self, conn: Connection[Any], params: list[bytes | None], named: bool
    ) -> list[Any]:
        """``BEGIN``, the write, ``COMMIT`` (the write's transaction, which does not
        wait for its flush), then the barrier in a transaction of its own, all before
        one sync: the server sends every answer at once, after the barrier's flush.

        :return: the first result of ``BEGIN``, the write, ``COMMIT`` and the barrier
            (None for one that never answered)
        """
        assert self._barrier is not None
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        try:
            self._send(pgconn, _BEGIN_STATEMENT, b"BEGIN", None, named)
            self._send(pgconn, _ONE_WRITE_STATEMENT, self._query, params, named)
            self._send(pgconn, _COMMIT_STATEMENT, b"COMMIT", None, named)
            self._send(pgconn, _BARRIER_STATEMENT, self._barrier, None, named)
            pgconn.pipeline_sync()
            results = self._pipeline_results(conn)
        finally:
            self._leave_pipeline(conn)
        results += [None] * (4 - len(results))
        return results

    def _pipeline_results(self, conn: Connection[Any]) -> list[Any]:
        """The first result of each statement sent before the sync; on Ctrl-C, they
        are cancelled (see wait_result) and waited for."""
        results: list[Any] = []
        try:
            self._collect(conn.pgconn, results, None)
        except KeyboardInterrupt:
            settle = functools.partial(self._collect, conn.pgconn, results)
            _cancel(conn, self._interrupted, settle)
            raise
        return results

    def _collect(self, pgconn: Any, results: list[Any], deadline: float | None) -> None:
        """Read results until the pipeline's sync, appending each statement's first
        result to ``results`` (resumable after an interrupt)."""
        pq = self._psycopg.pq
        send_all(pgconn)
        sync = pq.ExecStatus.PIPELINE_SYNC
        current = None
        while True:
            wait_readable(pgconn, deadline)
            result = pgconn.get_result()
            if result is None:  # the end of one statement's results
                if pgconn.status != pq.ConnStatus.OK:
                    raise self._psycopg.OperationalError("the connection was lost")
                results.append(current)
                current = None
            elif result.status == sync:
                return
            elif current is None:
                current = result

    def _leave_pipeline(self, conn: Connection[Any]) -> None:
        """Back to normal mode, out of any transaction a failed statement left open
        (rolled back); a connection that cannot be is closed."""
        if conn.closed:
            return
        pgconn = conn.pgconn
        pq = self._psycopg.pq
        try:
            if pgconn.pipeline_status != pq.PipelineStatus.OFF:
                pgconn.exit_pipeline_mode()
            if pgconn.transaction_status != pq.TransactionStatus.IDLE:
                pgconn.exec_(b"ROLLBACK")
        except Exception:
            conn.close()

    def _check_commit(self, conn: Connection[Any], commit: Any, barrier: Any, named: bool) -> None:
        """The write ran: its ``COMMIT`` must have succeeded (else nothing was
        committed), then the barrier (else FlushUnconfirmed, after one more try,
        unnamed: it may have been deallocated)."""
        pq = self._psycopg.pq
        pgconn = conn.pgconn
        if commit is None or commit.status != pq.ExecStatus.COMMAND_OK:
            raise result_error(self._psycopg, pgconn, commit)
        if barrier is not None and barrier.status == pq.ExecStatus.TUPLES_OK:
            return
        assert self._barrier is not None
        if barrier is not None and named and _sqlstate(pq, barrier) == _NO_SUCH_STATEMENT:
            self._prepared.discard(conn)
            self._send(pgconn, _BARRIER_STATEMENT, self._barrier, None, False)
            barrier = wait_result(conn, self._interrupted)
            if barrier.status == pq.ExecStatus.TUPLES_OK:
                return
        cause = (
            self._psycopg.OperationalError("the connection was lost")
            if barrier is None
            else result_error(self._psycopg, pgconn, barrier)
        )
        raise FlushUnconfirmed(error_text(cause)) from cause


def _sqlstate(pq: ModuleType, result: Any) -> bytes | None:
    sqlstate: bytes | None = result.error_field(pq.DiagnosticField.SQLSTATE)
    return sqlstate
