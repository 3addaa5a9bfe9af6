"""The change feed: a LISTEN thread that learns of other writers' commits.

A commit notifies the store's channel only when a listener armed the counter row; a
woken listener lets writes go unannounced for :data:`HINT_INTERVAL`, then re-arms the
counter and reads its seq, so that a Store's per-read check stays a memory read
while notifications are coalesced (see docs/postgresql.md, "Change notification").
Nothing here imports psycopg: the backend passes the module in.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from .wire import result_error, wait_answer

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "HEARTBEAT",
    "HINT_INTERVAL",
    "KEEPALIVES",
    "PEERS",
    "Feed",
    "Listener",
    "Listening",
    "PeerFeeds",
]

#: seconds of silence after which the listener checks that its connection is alive
#: (and re-arms the counter, should a notification have been lost)
HEARTBEAT = 20.0
#: seconds a woken listener lets commits go without notifications before it re-arms
#: the counter: while writers keep committing, the store sends about one
#: notification per interval whatever their number, and other processes see a
#: commit within about this long
HINT_INTERVAL = 0.02

#: libpq keepalives for the listener, so that a vanished server is noticed over TCP
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

#: a store, as this process tells stores apart: (conninfo, schema, prefix)
StoreKey = tuple[str, str, str]


class Listening(NamedTuple):
    """What a listener sends: the store's channel and two statements."""

    #: the LISTEN/NOTIFY channel
    channel: str
    #: arms the counter row; returns its seq if it was not armed yet
    arm: str
    #: reads the counter row's seq and whether it is armed
    state: str


class Feed:
    """What the listener thread shares with its backend (never the backend itself, so
    that an unclosed backend can still be garbage-collected and shut down).

    ``box[0]`` counts every change (the change token); ``box[1]`` leaves out the
    backend's own commits (the read token). Both only grow, under ``changed``.
    """

    __slots__ = ("__weakref__", "box", "changed", "filter_own", "tag")

    def __init__(self) -> None:
        self.box = [0, 0]
        self.changed = threading.Condition(threading.Lock())
        #: travels in the payload of our own notifications: "<last seq> <tag>"
        self.tag = os.urandom(8).hex()
        #: False once several Stores read through this backend (see token_reader)
        self.filter_own = True

    def bump(self, count: int = 1) -> None:
        """Someone else may have committed.

        :param count: how many changes to count
        """
        with self.changed:
            self.box[0] += count
            self.box[1] += count
            self.changed.notify_all()

    def committed(self) -> None:
        """Our own commit returned (its notification will not count)."""
        with self.changed:
            self.box[0] += 1
            if not self.filter_own:
                self.box[1] += 1
            self.changed.notify_all()

    def notified(self, payloads: list[str]) -> None:
        """Notifications arrived; those our own commits sent are not news.

        :param payloads: their payloads, ``"<last seq> <tag>"``
        """
        own = " " + self.tag
        news = sum(1 for payload in payloads if not payload.endswith(own))
        if news:
            self.bump(news)

    def share(self) -> None:
        """Several Stores read through this backend: own commits count for all."""
        with self.changed:
            self.filter_own = False
            self.box[1] += 1

    def reset(self) -> None:
        """The listener (re)connected: notifications may have been lost."""
        self.bump()


class Listener:
    """A daemon thread LISTENing on one dedicated connection, arming the counter row
    and bumping the feed when other writers committed."""

    def __init__(
        self,
        psycopg: ModuleType,
        conn: Connection[Any] | None,
        conninfo: str,
        sql: Listening,
        feed: Feed,
    ) -> None:
        self._psycopg = psycopg
        self._conn = conn
        self._conninfo = conninfo
        self._sql = sql
        self._feed = feed
        #: the highest seq this listener knows of (notified, or read when arming)
        self._known = 0
        #: a notification came during one of our statements: re-arm
        self._woken = False
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"everstore-listen-{sql.channel}", daemon=True
        )

    def start(self) -> None:
        """Start the thread (on the connection given, if any, which :meth:`listen`
        prepared)."""
        if self._conn is not None:
            self._conn.add_notify_handler(self._on_notify)
            self._known = self.arm(self._conn)
            self._woken = self._drain(self._conn)
        self._thread.start()

    @staticmethod
    def listen(psycopg: ModuleType, conn: Connection[Any], sql: Listening) -> None:
        """Run ``LISTEN channel`` on ``conn`` and make its commits (the arming of the
        counter) skip the WAL flush: losing one in a crash only costs a wake-up.

        :param psycopg: the psycopg module
        :param conn: an autocommit connection
        :param sql: the store's channel and statements
        :raises psycopg.Error: if the server refuses
        """
        conn.execute("SET synchronous_commit = off")
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(sql.channel)))

    def arm(self, conn: Connection[Any]) -> int:
        """Make sure the next commit notifies, and read the seq of the latest one.

        Armed already (by another process's listener, most often), in the snapshot
        that read it: every commit before that arming is in the seq read, and every
        commit after it notifies, or follows one that did. Not armed: the arming
        waits for the counter row, so its seq is the latest; when it finds the row
        armed meanwhile, the seq is read again, in a snapshot taken after that
        arming committed. Straight through libpq (this runs every HINT_INTERVAL in
        every process while writers commit); notifications that arrive meanwhile
        wait on the connection for :meth:`_drain`.

        :param conn: a connection LISTENing on the store's channel
        :return: the latest commit's seq
        :raises psycopg.Error: on a database error
        """
        row = self._ask(conn, self._sql.state)
        if row is None:
            return 0
        if row[1] != b"t":
            row = self._ask(conn, self._sql.arm) or self._ask(conn, self._sql.state)
        return 0 if row is None else int(row[0])

    def _ask(self, conn: Connection[Any], query: str) -> tuple[bytes, ...] | None:
        """The first row of ``query``'s answer, as text, or None."""
        pgconn = conn.pgconn
        pgconn.send_query_params(query.encode(), None)
        result = wait_answer(pgconn)
        if result.status != self._psycopg.pq.ExecStatus.TUPLES_OK:
            raise result_error(self._psycopg, pgconn, result)
        if not result.ntuples:
            return None
        return tuple(result.get_value(0, column) for column in range(result.nfields))

    def _connect(self) -> Connection[Any]:
        psycopg = self._psycopg
        conn: Connection[Any] = psycopg.connect(self._conninfo, autocommit=True)
        try:
            self.listen(psycopg, conn, self._sql)
            conn.add_notify_handler(self._on_notify)
            self._known = self.arm(conn)
            self._woken = self._drain(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        psycopg = self._psycopg
        conn = self._conn
        delay = 0.1
        while not self._stopping:
            if conn is None:
                try:
                    conn = self._connect()
                except psycopg.Error:
                    if self._sleep(delay):
                        break
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.1
                self._conn = conn
                self._feed.reset()  # commits may have been missed meanwhile
            try:
                if not self._woken:
                    ready, _, _ = select.select([conn.fileno(), self._wake_r], [], [], HEARTBEAT)
                    if self._wake_r in ready:
                        break
                    if ready and not self._drain(conn):
                        continue
                    # Woken by a notification, or silent for long (then re-arming
                    # costs nothing and covers a notification that was lost).
                if self._sleep(HINT_INTERVAL):
                    break
                self._woken = False
                self._drain(conn)
                self._check(self.arm(conn))
                # Those that came while arming: the commit that sent one used it up.
                self._woken = self._drain(conn)
            except (psycopg.Error, OSError, ValueError):
                self._close(conn)
                conn = self._conn = None
                self._feed.reset()
        self._close(conn)
        self._conn = None

    def _check(self, seq: int) -> None:
        """Bump the feed if ``seq`` is news."""
        if seq > self._known:
            self._known = seq
            self._feed.bump()

    def _drain(self, conn: Connection[Any]) -> bool:
        """Hand the notifications waiting on the socket to the feed; True if any.

        Straight through libpq: psycopg's ``notifies()`` generator cost several times
        as much, holding the GIL a writer of this process needs back.
        """
        pgconn = conn.pgconn
        pgconn.consume_input()  # raises if the server closed the connection
        payloads = []
        notify = pgconn.notifies()
        while notify is not None:
            payloads.append(notify.extra.decode())
            notify = pgconn.notifies()
        if payloads:
            self._notified(payloads)
        return bool(payloads)

    def _on_notify(self, notify: Any) -> None:
        """Notifications psycopg received during one of our statements: the commit
        that sent it may have used up our arming."""
        self._woken = True
        self._notified([notify.payload])

    def _notified(self, payloads: list[str]) -> None:
        for payload in payloads:
            seq, _, _ = payload.partition(" ")
            if seq.isdigit():
                self._known = max(self._known, int(seq))
        self._feed.notified(payloads)

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True if stopped."""
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        return bool(ready) or self._stopping

    @staticmethod
    def _close(conn: Connection[Any] | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken socket
                conn.close()

    def stop(self) -> None:
        """Stop the thread and close its connection (waits up to 10 s). Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._close(self._conn)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()


class PeerFeeds:
    """The feeds of the open backends of each store in this process.

    A backend that commits bumps the feeds of the other backends of its store, so
    that a write is visible to every Store of the process as soon as it returns,
    before its notification has travelled.
    """

    def __init__(self) -> None:
        self._feeds: dict[StoreKey, weakref.WeakSet[Feed]] = {}
        self._lock = threading.Lock()

    def join(self, key: StoreKey, feed: Feed) -> None:
        """Count ``feed`` among the backends of store ``key``.

        :param key: the store
        :param feed: an opened backend's feed
        """
        with self._lock:
            self._feeds.setdefault(key, weakref.WeakSet()).add(feed)

    def leave(self, key: StoreKey, feed: Feed) -> None:
        """Forget ``feed`` (its backend closed).

        :param key: the store
        :param feed: the feed given to :meth:`join`
        """
        with self._lock:
            feeds = self._feeds.get(key)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[key]

    def wake_others(self, key: StoreKey | None, own: Feed) -> None:
        """Tell the other backends of store ``key``: ``own``'s backend committed.

        Runs after every commit, so without the lock: a backend joining meanwhile
        reads the log when it opens anyway.

        :param key: the store (None: the backend is not open)
        :param own: the committing backend's feed, left alone
        """
        feeds = self._feeds.get(key) if key is not None else None
        if feeds is not None and len(feeds) > 1:
            for feed in list(feeds):
                if feed is not own:
                    feed.bump()


#: the process's registry
PEERS = PeerFeeds()
