"""The Engine: an in-memory view of the log, kept current, with transactions.

One :class:`Namespace` object per namespace holds the current values (a dict look-up
away) and every field's history, ordered by seq, so that history, ``within`` and
``as_of`` are binary searches. Namespaces are loaded on first touch; opening reads no
facts. docs/engine.md documents this API for the layers built on it.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

from ..backends.base import Backend, Expectation
from ..backends.memory import Memory
from ..codec import Codec, default_codec
from ..codec.tracked import PLAIN_TYPES, TRACKED_TYPES
from ..errors import (
    DecodeError,
    InvalidNameError,
    MissingFieldError,
    MutableAccessError,
    StoreClosedError,
    UnsupportedValueError,
)
from ..log import RECORDS_NAMESPACE, Fact, Value, Write
from .blobs import Blobs
from .contexts import caller_context
from .feed import (
    Change,
    Subscription,
    check_changes_arguments,
    check_follow_arguments,
    facts_after,
    facts_between,
)
from .fieldlog import (
    DATA,
    MISSING,
    SEQ,
    TOMBSTONE,
    UNAVAILABLE,
    Entry,
    FieldLog,
    Raw,
    as_value,
    collector_paused,
    replaced_later,
)
from .history import History
from .integrity import Integrity
from .lending import Lending
from .names import describe_field, namespace_path
from .namespace import Namespace
from .transacting import Transacting
from .transactions import (
    Item,
    Loan,
    ThreadState,
    Transaction,
    Work,
)

__all__ = ["END_OF_LOG", "AppliedFact", "Engine", "FactHook"]

#: a change token equal to no backend's: the next read re-reads the log's tail
_STALE: Any = object()
#: types whose values are immutable and need no private copy in the cache
_IMMUTABLE_SCALARS: frozenset[type] = frozenset({int, str, float, bool, type(None)})
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
#: tuple.__new__ builds a NamedTuple without the Python-level __new__ frame.
_as_write = functools.partial(tuple.__new__, Write)


def _encoded_entry(fact: Fact) -> Entry:
    """The cache entry of a committed fact holding an encoded container."""
    return (fact.time, False, Raw(fact.data), fact.context, fact.seq)  # type: ignore[arg-type]


def _checked_write(write: object) -> Write:
    """``write`` if it is a :class:`Write` the log can store, else the error."""
    if not isinstance(write, Write):
        raise TypeError(f"append_facts() takes Write tuples, got {write!r}")
    namespace, field, data, context, when = write
    if type(namespace) is not str:
        raise TypeError(f"a Write's namespace is an 'a/b' str, got {namespace!r}")
    namespace_path(tuple(namespace.split("/")))
    if type(field) is not str or not field or "\x00" in field:
        raise InvalidNameError(f"a field is a non-empty str without NUL, got {field!r}")
    if data is not None and type(data) is not bytes:
        raise TypeError(f"a Write's data is bytes or None, got {type(data).__name__}")
    if type(context) is not str or "\x00" in context:
        raise TypeError(f"a Write's context is a str without NUL, got {context!r}")
    if type(when) is not float or not math.isfinite(when):
        raise TypeError(f"a Write's time is a finite float, got {when!r}")
    return write


#: larger than any seq: "no upper bound"
END_OF_LOG = 2**63


class AppliedFact(NamedTuple):
    """What a fact hook is told: a fact has just been applied to the cache.

    ``value`` is the field's new entry (its data rebuilt, None for a tombstone);
    ``loading`` is True for facts replayed when a namespace is loaded; ``rewritten``
    is True (with ``loading``) when it is loaded again after an erasure or a prune
    rewrote its facts (docs/integrity.md): what a layer derived from the namespace
    before may hold values that are gone, and the replay gives the ones now kept.
    """

    namespace: Namespace
    field: str
    value: Value
    loading: bool
    rewritten: bool = False


FactHook = Callable[[AppliedFact], None]


class Engine(Transacting, Lending, Integrity, Blobs):
    """Namespaced, versioned storage over one backend: the engine API.

    :class:`everstore.Store` is an Engine with attribute access (``storage()``) and
    time travel (``as_of()``) on top; layers use the methods documented here.
    An Engine is thread-safe and may be shared by threads; processes share a
    database, each with its own Engine.

    :param backend: where the log lives (default: a new :class:`Memory`)
    :param codec: how values become bytes (default: :data:`default_codec`)
    :param clock: wall-clock seconds for new facts (default: ``time.time``); the
        backend keeps time from decreasing along the log whatever it returns
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.backend: Backend = backend if backend is not None else Memory()
        self.codec: Codec = codec if codec is not None else default_codec
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        #: ints may be encoded inline (a subclass of Codec might encode them otherwise)
        self._plain_ints = type(self.codec) is Codec
        self._lock = threading.RLock()
        self._local = ThreadState()
        #: how many threads have a transaction open on this Engine. While it is 0, a
        #: read may take a field's committed value from ``Namespace.current`` (as
        #: Storage does) without going through :meth:`read`; otherwise only a thread
        #: for which :meth:`in_transaction` is False may. Read-only for layers.
        self.open_transactions = 0
        self._namespaces: dict[tuple[str, ...], Namespace] = {}
        self._by_path: dict[str, Namespace] = {}
        self._hooks: list[FactHook] = []
        #: namespace paths whose namespaces catch-up loads (see watch())
        self._watched: list[str] = []
        self._closed = False
        self.backend.open()
        self._token_fn = self.backend.token_reader()
        self._token = self._token_fn()
        self._applied = self.backend.last_seq()

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the backend. Everything written was already committed. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                # Reads of loaded namespaces keep working from memory; the backend's
                # change probe may not outlive it.
                token = self._token
                self._token_fn = lambda: token
                self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Store cannot be pickled: it holds connections, locks and a cache; pass "
            "its URL or path to the other process and open the store there"
        )

    def check_open(self) -> None:
        """:raises StoreClosedError: if this Engine is closed"""
        if self._closed:
            raise StoreClosedError("this Store is closed")

    # -- namespaces -----------------------------------------------------------------

    def namespace(self, parts: tuple[str, ...]) -> Namespace:
        """The one :class:`Namespace` handle for ``parts``, loading it on first touch.

        O(1) once loaded; the first touch reads that namespace's facts.

        :raises InvalidNameError: if ``parts`` is not a valid namespace
        :raises StoreClosedError: on first touch after :meth:`close`
        """
        ns = self._namespaces.get(parts)
        if ns is not None:
            return ns
        path = namespace_path(parts)
        with self._lock:
            ns = self._namespaces.get(parts)
            if ns is None:
                self.check_open()
                ns = self._load_locked(parts, path)
        return ns

    def _load_locked(self, parts: tuple[str, ...], path: str) -> Namespace:
        """Read one namespace's facts into a new :class:`Namespace` and register it."""
        high, facts = self.backend.load_namespace(path)
        return self._install_locked(parts, path, high, facts)

    def _install_locked(
        self, parts: tuple[str, ...], path: str, high: int, facts: list[Fact]
    ) -> Namespace:
        """Make a namespace not loaded yet from its ``facts``, read in a snapshot whose
        last seq is ``high`` (hooks see them with ``loading=True``), and register it."""
        ns = Namespace(parts, path)
        self._fill_locked(ns, high, facts)
        self._by_path[path] = ns
        self._namespaces[parts] = ns
        return ns

    def _fill_locked(
        self, ns: Namespace, high: int, facts: list[Fact], rewritten: bool = False
    ) -> None:
        """Apply a namespace's ``facts``, read in a snapshot whose last seq is
        ``high``, to its empty cache (hooks see them with ``loading=True``, and
        ``rewritten`` as given)."""
        replaced = self._replaced_facts(facts, by_field_only=True)
        for position, fact in enumerate(facts):
            if position in replaced:
                self._add_encoded(ns, fact.field, _encoded_entry(fact))
                continue
            try:
                self._apply(ns, fact.seq, fact.time, fact.field, fact.data, fact.context)
            except DecodeError as exc:
                raise _damaged(fact, self.backend, exc) from None
            if self._hooks:
                self._run_hooks(ns, fact.field, True, rewritten)
        # Later facts of it are the catch-up's: it applies those above loaded_upto.
        ns.loaded_upto = high

    def watch(self, prefix: Sequence[str]) -> Callable[[], None]:
        """Load every namespace under ``prefix`` (or equal to it) as soon as this
        Engine applies a fact of it when catching up with other writers; returns a
        function that stops watching.

        A fact hook sees only namespaces in the cache: without a watch, a namespace
        that another process creates stays unloaded here, and its facts never reach
        the hook. Under a watched prefix such a namespace is loaded on the catch-up
        that brings its first fact, and the hook sees its facts with
        ``loading=True``. A secondary index calls this before it lists the
        namespaces it covers. Watching the same prefix twice needs two stops.

        >>> store = Engine()
        >>> stop = store.watch(("users",))
        >>> stop()

        :raises TypeError: if ``prefix`` is a str rather than a tuple of parts
        :raises InvalidNameError: if ``prefix`` is not a valid namespace
        """
        if isinstance(prefix, str):
            raise TypeError(
                f"watch() takes the prefix as a tuple of parts, like ({prefix!r},), "
                f"not the str {prefix!r}"
            )
        path = namespace_path(tuple(prefix))
        with self._lock:
            self._watched.append(path)

        def stop() -> None:
            with self._lock:
                if path in self._watched:
                    self._watched.remove(path)

        return stop

    def _watches(self, path: str) -> bool:
        """True if namespace ``path`` is equal to or under a watched prefix."""
        for prefix in self._watched:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return True
        return False

    def load(self, prefix: Sequence[str] = ()) -> list[Namespace]:
        """The :class:`Namespace` of every namespace equal to or under ``prefix`` (all
        of them for ``()``) that holds a fact, sorted by path, loading in one read of
        the backend those not loaded yet.

        What :meth:`namespace` does on first touch, for many at once: their facts are
        applied the same way (fact hooks see them with ``loading=True``); namespaces
        loaded already keep their state and are not applied again. Facts committed
        after the read reach every namespace by the usual sync. A layer calls it
        before it goes through many namespaces (every object of a model, say): one
        read of the backend instead of one per namespace (on PostgreSQL, one round
        trip instead of one per namespace), with Python's cyclic garbage collector
        paused meanwhile (see the code for why).

        >>> store = Engine()
        >>> store.write(store.namespace(("game", "p1")), "x", 1)
        >>> [ns.parts for ns in Engine(store.backend).load(("game",))]
        [('game', 'p1')]

        :raises TypeError: if ``prefix`` is a str rather than a tuple of parts
        :raises InvalidNameError: if ``prefix`` is not a valid namespace
        :raises StoreClosedError: if the Engine is closed
        """
        if isinstance(prefix, str):
            raise TypeError(
                f"load() takes the prefix as a tuple of parts, like ({prefix!r},), "
                f"not the str {prefix!r}"
            )
        prefix_path = namespace_path(tuple(prefix)) if prefix else ""
        # The prefix's parts are shared by every namespace under it (100k copies of
        # the same few strings otherwise).
        prefix_parts = tuple(prefix)
        cut = len(prefix_path) + 1
        # A load makes containers by the hundred thousand (facts, then the caches they
        # fill): for 100k namespaces, collections were four fifths of the time on
        # Memory and half of it on SQLite.
        with collector_paused(), self._lock:
            self.check_open()
            high, found = self.backend.load_namespaces(prefix_path)
            loaded = []
            for path in sorted(found):
                if prefix_parts and len(path) > cut:
                    parts = (*prefix_parts, *path[cut:].split("/"))
                else:
                    parts = tuple(path.split("/"))
                ns = self._namespaces.get(parts)
                if ns is None:
                    ns = self._install_locked(parts, path, high, found.pop(path))
                loaded.append(ns)
        return loaded

    def namespaces(
        self,
        prefix: Sequence[str] = (),
        *,
        seq: int | None = None,
        after: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, ...]]:
        """Namespaces that hold at least one fact (with a seq up to ``seq``, when
        given), equal to or under ``prefix``, sorted by their path (the parts joined
        with ``/``).

        ``after`` and ``limit`` read one page: only the namespaces whose path sorts
        after ``after``'s (which need not exist), at most ``limit`` of them. Paging with
        the last namespace of each page as the next ``after`` walks the whole list; on
        SQLite and PostgreSQL a page costs a read of that page, not of every name.

        >>> store = Engine()
        >>> store.write(store.namespace(("game", "p1")), "x", 1)
        >>> store.write(store.namespace(("game", "p2")), "x", 1)
        >>> store.namespaces(("game",))
        [('game', 'p1'), ('game', 'p2')]
        >>> store.namespaces(after=("game", "p1"), limit=10)
        [('game', 'p2')]

        :param prefix: the namespace to list under, as a tuple of parts (``()``: all)
        :param seq: list the namespaces as they were at this seq
        :param after: start after this namespace, as a tuple of parts
        :param limit: at most this many (an int >= 0)
        :return: the namespaces as tuples of parts
        :raises TypeError: if ``prefix`` or ``after`` is a str rather than a tuple of
            parts, or ``limit`` is not an int
        :raises ValueError: for a negative ``limit``
        :raises InvalidNameError: if ``prefix`` or ``after`` is not a valid namespace
        """
        self.check_open()
        if isinstance(prefix, str):
            raise TypeError(
                f"namespaces() takes the prefix as a tuple of parts, like ({prefix!r},), "
                f"not the str {prefix!r}"
            )
        if isinstance(after, str):
            raise TypeError(
                f"namespaces() takes after= as a tuple of parts, like ({after!r},), "
                f"not the str {after!r}"
            )
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"namespaces(limit=...) needs an int, got {limit!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"namespaces(limit=...) needs an int >= 0, got {limit}")
        prefix_path = namespace_path(tuple(prefix)) if prefix else ""
        if after is None and limit is None:
            paths = self.backend.namespaces(prefix_path, seq)
        else:
            after_path = namespace_path(tuple(after)) if after else ""
            paths = self.backend.namespaces_after(prefix_path, seq, after_path, limit)
        return [tuple(path.split("/")) for path in paths]

    # -- positions in the log ---------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the latest fact this store has seen (after a sync)."""
        self.sync()
        return self._applied

    def storage_size(self) -> int | None:
        """Bytes the store takes in its database: an SQLite file with its write-ahead
        log, a PostgreSQL store's tables with their indexes; None for a log in memory.

        :return: a number of bytes, or None
        :raises StoreClosedError: if the Engine is closed
        :raises BackendError: if the database cannot be reached
        """
        self.check_open()
        return self.backend.storage_size()

    def seq_at_time(self, when: float) -> int:
        """The highest seq whose time is at or before ``when`` (0 if none).

        :raises TypeError: if ``when`` is not a number of seconds
        """
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise TypeError(f"a time needs a number of seconds, got {when!r}")
        self.check_open()
        return self.backend.seq_at_time(float(when))

    # -- the change feed ----------------------------------------------------------

    def follow(
        self, since: int = 0, *, timeout: float | None = None, batch: int = 1000
    ) -> Iterator[Change]:
        """Yield every fact with a seq above ``since``, in seq order, each once;
        when caught up, wait for new ones, and stop after ``timeout`` seconds
        without one (None: never stop; :meth:`close` ends the wait).

        A follower that keeps the seq of the last change it handled and restarts
        from it misses nothing and sees nothing twice.

        >>> from everstore import Store
        >>> store = Store()
        >>> store.storage("doc").title = "a"
        >>> [(c.namespace, c.field, c.data) for c in store.follow(timeout=0)]
        [(('doc',), 'title', 'a')]

        :raises TypeError: for a ``since``, ``timeout`` or ``batch`` of the wrong kind
        :raises StoreClosedError: when the Engine is closed while following
        """
        check_follow_arguments(since, timeout, batch)
        facts = facts_after(self.backend, self.check_open, since, timeout, batch)
        return map(self._change, facts)

    def changes(
        self,
        after: int = 0,
        upto: int | None = None,
        *,
        newest_first: bool = False,
        batch: int = 1000,
    ) -> Iterator[Change]:
        """The facts with a seq above ``after`` and up to ``upto`` (default: the last
        seq now), in seq order or, with ``newest_first``, from ``upto`` down; never
        waits. Stopping early reads no further: the newest ten of a long log cost
        one ``batch``-sized read.

        >>> from everstore import Store
        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> doc.v = 1; doc.v = 2; doc.v = 3
        >>> [c.data for c in store.changes(newest_first=True)]
        [3, 2, 1]
        >>> [c.seq for c in store.changes(1, 2)]
        [2]

        :param after: only facts with a seq above it (0: from the first)
        :param upto: only facts with a seq up to it (None: up to :attr:`last_seq`)
        :param newest_first: yield the highest seq first
        :param batch: how many facts to read from the backend at a time
        :return: an iterator of :class:`Change`
        :raises TypeError: for an ``after``, ``upto`` or ``batch`` of the wrong kind
        :raises StoreClosedError: when the Engine is closed
        """
        check_changes_arguments(after, upto, batch)
        self.check_open()
        end = self.last_seq if upto is None else upto
        facts = facts_between(self.backend, after, end, newest_first, batch)
        return map(self._change, facts)

    def subscribe(
        self, callback: Callable[[Change], object], *, since: int | None = None
    ) -> Subscription:
        """Call ``callback(change)`` from a background thread for every new fact
        (after ``since``; by default from now on). Returns a :class:`Subscription`
        to stop it; an exception in the callback stops it and is re-raised by
        :meth:`Subscription.close`."""
        start = self.last_seq if since is None else since
        return Subscription(lambda seq, wait: self.follow(seq, timeout=wait), callback, start)

    def _change(self, fact: Fact) -> Change:
        parts = tuple(fact.namespace.split("/"))
        data = fact.data
        if data is None:
            value = None
        elif self.codec.is_delta(data):  # rebuild from the namespace's history
            history = self.history(self.namespace(parts), fact.field)
            value = history.value_at(history.position(seq=fact.seq))
        else:
            try:
                value = self.codec.decode(data)
            except DecodeError as exc:
                raise _damaged(fact, self.backend, exc) from None
        return Change(fact.seq, fact.time, parts, fact.field, data is None, value, fact.context)

    # -- raw facts: export and import --------------------------------------------------

    def facts(self, since: int = 0, limit: int | None = None) -> list[Fact]:
        """The committed facts with a seq above ``since``, in seq order (at most
        ``limit`` of them), as the backend stores them: ``data`` is the codec's bytes
        (None for a tombstone; a delta is not rebuilt), ``namespace`` the ``a/b`` path.

        What an export reads, page by page (:func:`everstore.portable.export_facts`);
        :meth:`follow` is the decoded, waiting form. One query; O(limit).

        >>> store = Engine()
        >>> store.write(store.namespace(("doc",)), "title", "a", "m.f:1")
        >>> [(f.seq, f.namespace, f.field, f.data, f.context) for f in store.facts()]
        [(1, 'doc', 'title', b'"a"', 'm.f:1')]

        :raises TypeError: for a ``since`` or ``limit`` that is not an int >= 0 (>= 1)
        :raises StoreClosedError: if the Engine is closed
        """
        if type(since) is not int or since < 0:
            raise TypeError(f"facts(since=...) needs a seq, an int >= 0, got {since!r}")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise TypeError(f"facts(limit=...) needs None or an int >= 1, got {limit!r}")
        self.check_open()
        return self.backend.facts_since(since, limit)

    def append_facts(self, writes: Sequence[Write]) -> list[tuple[int, float]]:
        """Commit ``writes`` as they are, atomically, in one append: their encoded
        ``data`` (None: a tombstone), ``context`` and ``time`` are stored unchanged,
        except that the backend raises a time below the log's latest to it (time never
        decreases along the log). Returns ``(seq, time)`` of each, in order: the
        backend gives them the seqs after the log's last, one apart unless another
        writer commits at the same moment. What an import writes
        (:func:`everstore.portable.import_facts`); layers write values with
        :meth:`write`.

        The cache stays current: facts of namespaces this Engine has loaded are
        applied as if another process had written them (fact hooks see them).

        >>> from everstore.log import Write
        >>> store = Engine()
        >>> store.append_facts([Write("doc", "title", b'"a"', "m.f:1", 5.0)])
        [(1, 5.0)]
        >>> store.read(store.namespace(("doc",)), "title")
        'a'

        :raises TypeError: if a write is not a :class:`~everstore.log.Write` of str
            names, bytes or None data, a str context and a finite float time
        :raises InvalidNameError: for a namespace path or field that is not a name
        :raises RuntimeError: inside a transaction of the calling thread (these writes
            would not be part of it)
        :raises StoreClosedError: if the Engine is closed
        """
        checked = [_checked_write(write) for write in writes]
        self.check_outside_transaction("append_facts()")
        if not checked:
            return []
        with self._lock:
            self.check_open()
            token = self._token
            current = self._token_fn() == token
            try:
                assigned = self.backend.append(checked)
                first = assigned[0][0]
                contiguous = (
                    first == self._applied + 1 and assigned[-1][0] == first + len(assigned) - 1
                )
                by_path = self._by_path
                untouched = not any(
                    write.namespace in by_path or (self._watched and self._watches(write.namespace))
                    for write in checked
                )
                if contiguous and untouched:
                    # None of them is cached here: nothing to apply, the position moves on.
                    self._applied = assigned[-1][0]
                    if current:
                        self._settle_token(token, len(assigned))
                else:
                    # Applied in seq order from the log, with anyone else's.
                    self._catch_up_locked()
            except BaseException:
                self._token = _STALE  # the next read re-reads the tail (see write())
                raise
        return assigned

    # -- the fact hook ------------------------------------------------------------------

    def add_fact_hook(self, hook: FactHook) -> Callable[[], None]:
        """Call ``hook(AppliedFact)`` synchronously for every fact the cache applies:
        this process's commits, other processes' facts on refresh, and the facts of
        a namespace when it is first loaded (``loading=True``). Returns a function
        that removes the hook.

        Hooks run under the Engine's lock, in seq order per namespace, right after the
        fact is applied: keep them quick, and do not wait there for other threads. An
        exception from a hook propagates to the operation that applied the fact (the
        fact stays committed and applied).

        >>> store = Engine()
        >>> seen = []
        >>> remove = store.add_fact_hook(lambda f: seen.append((f.field, f.value.data)))
        >>> store.write(store.namespace(("doc",)), "title", "a")
        >>> remove()
        >>> seen
        [('title', 'a')]
        """
        if not callable(hook):
            raise TypeError(f"a fact hook must be callable, got {hook!r}")
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    def _run_hooks(self, ns: Namespace, field: str, loading: bool, rewritten: bool = False) -> None:
        log = ns.fields[field]
        value = as_value(log.entries[-1])
        if type(value.data) is Raw:
            value = value._replace(data=log.value_at(self.codec, len(log.entries) - 1))
        applied = AppliedFact(ns, field, value, loading, rewritten)
        for hook in list(self._hooks):
            hook(applied)

    # -- writing ------------------------------------------------------------------

    def write(self, ns: Namespace, field: str, value: Any, context: str | None = None) -> None:
        """Append ``field = value`` to ``ns``: committed before this returns, or kept
        for the commit of the calling thread's open transaction.

        ``context`` is the code location to record (default: the caller's). The
        caller checks ``field`` with :func:`check_field` (Storage does it once per name).

        :raises UnsupportedValueError: if the codec cannot encode ``value``
        :raises StoreClosedError: if the Engine is closed
        """
        # Every assignment comes through here: the whole single-write path is in this
        # one method (a call more costs ~0.1 µs, 1 % of a write to SQLite).
        if not context:
            context = caller_context()
        if type(value) is int and self._plain_ints and _INT64_MIN <= value <= _UINT64_MAX:
            # The commonest write, encoded here as the default codec would (JSON).
            data: bytes | None = b"%d" % value
            hint = value
        elif value is TOMBSTONE:
            data = None
            hint = MISSING
            if not self.has(ns, field):
                raise MissingFieldError(
                    f"{describe_field(ns.parts, field)} cannot be deleted: it has no value"
                )
        else:
            if type(value) in TRACKED_TYPES and self._writes_back(ns, field, value):
                return
            try:
                data = self.codec.encode(value)
            except UnsupportedValueError as exc:
                raise UnsupportedValueError(f"{describe_field(ns.parts, field)}: {exc}") from None
            # The cache keeps a private copy of a mutable value, decoded from the bytes.
            kind = type(value)
            if kind is dict or kind is list:
                hint = MISSING
            elif kind in _IMMUTABLE_SCALARS or not self.codec.is_mutable(value):
                hint = value
            else:
                hint = MISSING
        # Most writes happen with no transaction open anywhere: then the thread-local
        # look-up is skipped.
        txn = self._local.txn if self.open_transactions else None
        if txn is not None:
            txn.record(ns, field, data, context, value, hint)
            return
        # ``with``, not acquire() then try: Ctrl-C can come right after acquire()
        # returns, before the try, and would leave the lock held for ever.
        with self._lock:
            try:
                if self._closed:
                    raise StoreClosedError("this Store is closed")
                token = self._token
                current = self._token_fn() == token
                seq, when = self.backend.append_one(ns.path, field, data, context, self.clock())
                if seq != self._applied + 1:
                    # Others wrote in between: theirs and ours are read in seq order,
                    # at once if hooks wait for them, else by the next read (a loop of
                    # writes then reads nothing back).
                    if self._hooks:
                        self._catch_up_locked()
                    else:
                        self._token = _STALE
                    return
                log = ns.fields.get(field)
                if hint is MISSING or log is None or log.by_value is not None or self._hooks:
                    self._apply(ns, seq, when, field, data, context, hint)
                    self._applied = seq
                    if self._hooks:
                        self._run_hooks(ns, field, False)
                else:
                    # _apply's hot path, inlined: an immutable value to a known field. The
                    # value before the entry, as in _apply (see _read_tracked).
                    ns.current[field] = hint
                    if field in ns.mutable:
                        self._drop_mutable(ns, field)
                    log.entries.append((when, False, hint, context, seq))
                    self._applied = seq
                if current:
                    self._settle_token(token, 1)
            except BaseException:
                # Ctrl-C (or any error) between the commit and the cache update: the next
                # read re-reads the log's tail, so the view never misses a committed fact.
                self._token = _STALE
                raise

    def delete(self, ns: Namespace, field: str, context: str | None = None) -> None:
        """Append a tombstone for ``field``: its history stays, its value is gone.

        :raises MissingFieldError: if the field has no value to delete
        """
        self.write(ns, field, TOMBSTONE, context or caller_context())

    def _settle_token(self, before: Any, count: int) -> None:
        """After our own commit of ``count`` facts, on a token that was current: keep
        the cache marked current when the backend proves nobody else committed, so
        the next read needs no round trip."""
        after = self.backend.token_after_commit(before, count)
        if after is not None:
            self._token = after

    def _commit(
        self,
        items: list[Item],
        expect: Sequence[Expectation] = (),
        since: int | None = None,
        blobs: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Commit ``items`` in one append (see :data:`Item`), with ``blobs``;
        ``since``: see :meth:`Backend.append_checked`."""
        now = self.clock()
        writes = [
            _as_write((ns.path, field, data, context, now)) for ns, field, data, context, _ in items
        ]
        with self._lock:
            self.check_open()
            token = self._token
            current = self._token_fn() == token
            try:
                if since is None or not expect:
                    assigned = self.backend.append(writes, expect, blobs)
                else:
                    assigned = self.backend.append_checked(writes, expect, since, blobs)
                first = assigned[0][0]
                if first == self._applied + 1 and assigned[-1][0] == first + len(assigned) - 1:
                    # Nobody else committed in between: apply ours without a round trip.
                    hooks = self._hooks
                    # A value written again later in the same commit is never current:
                    # its entry is kept encoded, not decoded only to be replaced.
                    overwritten = self._overwritten(items) if len(items) > 1 and not hooks else ()
                    for position, ((ns, field, data, context, hint), (seq, when)) in enumerate(
                        zip(items, assigned, strict=True)
                    ):
                        if position in overwritten:
                            self._add_encoded(ns, field, (when, False, Raw(data), context, seq))  # type: ignore[arg-type]
                        else:
                            self._apply(ns, seq, when, field, data, context, hint)
                        self._applied = seq
                        if hooks:
                            self._run_hooks(ns, field, False)
                    if current:
                        self._settle_token(token, len(assigned))
                elif self._hooks or any(type(item[4]) is Loan for item in items):
                    # Others committed in between: our loans' changes are read back
                    # from the log with theirs, in seq order, like anyone's.
                    self._before_replay(items)
                    self._catch_up_locked()
                else:
                    self._token = _STALE  # others committed in between: see write()
            except BaseException:
                self._token = _STALE  # see write(): the next read re-reads the tail
                self._give_back(items)  # and applies whatever of ours was committed
                raise

    def _overwritten(self, items: list[Item]) -> set[int]:
        """Positions of the items that write a whole mutable value which the next
        item of the same field in this commit replaces whole: cached encoded, never
        decoded (a delta or a loan after it would need it decoded)."""
        is_delta = self.codec.is_delta
        replaced = replaced_later(
            [(item[0], item[1]) for item in items],
            [type(item[4]) is not Loan and not is_delta(item[2]) for item in items],
        )
        return {
            position
            for position in replaced
            if items[position][4] is MISSING
            and items[position][2] is not None
            and not is_delta(items[position][2])
        }

    def _replaced_facts(self, facts: list[Fact], by_field_only: bool) -> set[int]:
        """Positions of ``facts`` holding a plain list or dict that a later fact of the
        same field replaces whole: kept encoded, never decoded (see :meth:`_apply`).
        None when fact hooks are set: a hook sees each fact's value as it applies."""
        if self._hooks or len(facts) < 2:
            return set()
        is_delta = self.codec.is_delta
        keys: list[Any] = (
            [fact.field for fact in facts]
            if by_field_only
            else [(fact.namespace, fact.field) for fact in facts]
        )
        replaced = replaced_later(keys, [not is_delta(fact.data) for fact in facts])
        is_plain = self.codec.is_plain_container
        return {position for position in replaced if is_plain(facts[position].data)}

    @staticmethod
    def _add_encoded(ns: Namespace, field: str, entry: Entry) -> None:
        """Add an entry that will never be the field's current value, as it is:
        encoded (see :meth:`_overwritten` and :meth:`_replaced_facts`)."""
        log = ns.fields.get(field) or ns.fields.setdefault(field, FieldLog())
        log.add(entry)

    # -- keeping current ------------------------------------------------------------

    def sync(self) -> None:
        """Apply facts other writers committed since this Engine last looked. O(1)
        when there are none (one probe of the backend's change token)."""
        if self._token_fn() != self._token:
            with self._lock:
                self._catch_up_locked()

    def _catch_up_locked(self) -> None:
        self.check_open()
        token = self._token_fn()
        facts = self.backend.facts_since(self._applied)
        by_path = self._by_path
        hooks = self._hooks
        watched = self._watched
        replaced = self._replaced_facts(facts, by_field_only=False)
        for position, fact in enumerate(facts):
            ns = by_path.get(fact.namespace)
            if ns is None and watched and self._watches(fact.namespace):
                # Loaded whole (hooks see it loading); the rest of this batch's facts
                # of it are then at or below its loaded_upto and skipped below.
                ns = self._load_locked(tuple(fact.namespace.split("/")), fact.namespace)
            elif ns is not None and fact.seq > ns.loaded_upto:
                log = ns.fields.get(fact.field)
                # A fact applied before an interrupt cut a batch short is not applied twice.
                if (log is None or log.last_seq() < fact.seq) and position in replaced:
                    self._add_encoded(ns, fact.field, _encoded_entry(fact))
                elif log is None or log.last_seq() < fact.seq:
                    self._apply(ns, fact.seq, fact.time, fact.field, fact.data, fact.context)
                    if hooks:
                        self._run_hooks(ns, fact.field, False)
                elif log.last_seq() == fact.seq:
                    # Its entry is in place, its value may not be: an interrupt came in
                    # between (see _apply).
                    self._refresh_value(ns, fact.field, log)
            if fact.namespace == RECORDS_NAMESPACE:
                self._record_arrived(fact)
            # Advanced fact by fact, after the fact: an interrupt loses nothing.
            if fact.seq > self._applied:
                self._applied = fact.seq
        self._token = token

    def _refresh_value(self, ns: Namespace, field: str, log: FieldLog) -> None:
        """Set the cached value of ``field`` from its latest entry."""
        latest = log.entries[-1]
        self._drop_mutable(ns, field)
        if latest[UNAVAILABLE]:
            ns.current.pop(field, None)
        elif type(latest[DATA]) is Raw:
            ns.mutable[field] = log.value_at(self.codec, len(log.entries) - 1)
            ns.current.pop(field, None)
        else:
            ns.current[field] = latest[DATA]

    def _apply(
        self,
        ns: Namespace,
        seq: int,
        when: float,
        field: str,
        data: bytes | None,
        context: str,
        hint: Any = MISSING,
    ) -> None:
        """Add one committed fact to a loaded namespace. ``hint`` is the decoded value
        when the caller already holds it (an immutable value it just wrote)."""
        log = ns.fields.get(field)
        if log is None:
            log = ns.fields[field] = FieldLog()
        entry: Entry
        if type(hint) is Loan:  # a lent value's change: most often in it already
            if data is not None and self._apply_loan(
                ns, field, hint, log, (when, False, Raw(data), context, seq)
            ):
                return
            hint = MISSING
        if hint is not MISSING:  # the hot path: our own write of an immutable value
            entry = (when, False, hint, context, seq)
            ns.current[field] = hint
            self._drop_mutable(ns, field)
        elif data is None:
            entry = (when, True, None, context, seq)
            ns.current.pop(field, None)
            self._drop_mutable(ns, field)
        elif self.codec.is_delta(data):
            # The entry first, then the value changed in place: after an interrupt,
            # catch-up applies a fact with no entry again and rebuilds the value of
            # one whose entry is in place (see _catch_up_locked), never applies it twice.
            log.add((when, False, Raw(data), context, seq))
            ns.mutable[field] = self._apply_delta(ns, field, log, data)
            ns.current.pop(field, None)
            return
        else:
            value = self.codec.decode(data)
            if self.codec.is_mutable(value):
                entry = (when, False, Raw(data), context, seq)
                self._drop_mutable(ns, field)
                ns.mutable[field] = value  # tracked when first lent (see _lend)
                ns.current.pop(field, None)
            else:
                entry = (when, False, value, context, seq)
                ns.current[field] = value
                self._drop_mutable(ns, field)
        log.add(entry)

    # -- reading ------------------------------------------------------------------

    def read(self, ns: Namespace, field: str) -> Any:
        """The value of ``field`` as the calling thread should see it (its own
        transaction's writes included). O(1), plus a copy for a mutable value.

        :raises MissingFieldError: if the field has no value (never written, deleted)
        :raises MutableAccessError: for a mutable value read outside a transaction
        """
        self.sync()
        txn = self._local.txn
        if txn is not None:
            pending = txn.pending(ns, field)
            if type(pending) is Work:
                return pending.obj
            if type(pending) is Loan:
                return pending.tracker.root
            if pending is TOMBSTONE:
                raise MissingFieldError(
                    f"{describe_field(ns.parts, field)} was deleted in this transaction"
                )
            if pending is not MISSING:
                return pending
            if txn.serializable:
                # _read_tracked, inlined (the hot path of a transaction's reads)
                key = (ns, field)
                reads = txn.reads
                if key not in reads:
                    log = ns.fields.get(field)  # the seq before the value: see there
                    seq = log.entries[-1][SEQ] if log is not None and log.entries else 0
                    value = ns.current.get(field, MISSING)
                    if value is not MISSING:
                        reads[key] = seq
                        return value
                    if field not in ns.mutable:
                        reads[key] = seq
        value = ns.current.get(field, MISSING)
        if value is not MISSING:
            return value
        # No reference to the value is kept here: _lend counts who holds it.
        if field not in ns.mutable:
            raise MissingFieldError(self._missing_message(ns, field))
        if txn is None:
            kind = type(ns.mutable.get(field))
            kind = PLAIN_TYPES.get(kind, kind)
            raise MutableAccessError(
                f"{describe_field(ns.parts, field)} holds a mutable {kind.__name__}: "
                f"read it inside 'with storage:' (or store.transaction()) so that changes "
                f"are saved"
            )
        return self._lend(txn, ns, field)

    def _read_tracked(self, txn: Transaction, ns: Namespace, field: str) -> Any:
        """``field``'s committed immutable value (MISSING for none or a mutable one),
        keeping for the commit's check the seq it was first read at.

        No lock: every writer of the cache sets a field's value before it appends the
        entry, and this reads the entry's seq before the value. So the value read is
        the one of that seq or of a later one; a later one fails the commit's check,
        as it must (the read cannot be placed at one point of the log). A mutable
        value is not kept: concurrent in-place changes merge instead of conflicting.
        """
        key = (ns, field)
        reads = txn.reads
        if key in reads:
            value = ns.current.get(field, MISSING)
        else:
            log = ns.fields.get(field)
            seq = log.last_seq() if log is not None else 0
            value = ns.current.get(field, MISSING)
            if value is MISSING and field in ns.mutable:
                return MISSING
            reads[key] = seq
        return value

    @staticmethod
    def _missing_message(ns: Namespace, field: str) -> str:
        log = ns.fields.get(field)
        if log is not None and log.entries and log.entries[-1][UNAVAILABLE]:
            return f"{describe_field(ns.parts, field)} was deleted (see its __history__())"
        return f"Storage{ns.parts!r} has no field {field!r}"

    def has(self, ns: Namespace, field: str) -> bool:
        """True if ``field`` has a value as the calling thread sees it. O(1).

        In a serializable transaction, the answer is checked at commit like a read.
        """
        txn = self._local.txn
        if txn is not None:
            pending = txn.pending(ns, field)
            if pending is not MISSING:
                return pending is not TOMBSTONE
        self.sync()
        if (
            txn is not None
            and txn.serializable
            and self._read_tracked(txn, ns, field) is not MISSING
        ):
            return True
        return ns.available(field)

    def fields(self, ns: Namespace) -> list[str]:
        """The fields of ``ns`` with a value, as the calling thread sees them, in
        first-write order. O(f)."""
        self.sync()
        txn = self._local.txn
        if txn is None or ns not in txn.touched:
            return ns.field_names()
        shown = {name: ns.available(name) for name in ns.fields}
        for item_ns, field, data, _, _ in txn.items:
            if item_ns is ns:
                shown[field] = data is not None
        return [name for name, visible in shown.items() if visible]

    def history(self, ns: Namespace, field: str, upto: int = END_OF_LOG) -> History:
        """``field``'s committed history, up to and including seq ``upto``.

        O(log n) to make; see :class:`History` for reading it.

        :raises MissingFieldError: if the field was never written
        :raises PrunedHistoryError: ``upto`` is before the end of history that a
            prune moved out of the live log (see :meth:`retentions`)
        """
        self.sync()
        log = ns.fields.get(field)
        if log is None:
            raise MissingFieldError(f"{describe_field(ns.parts, field)} has no history")
        if upto != END_OF_LOG:
            self.check_unpruned(ns.path, upto)
        return History(log, self.codec, self._lock, log.index_at(upto) + 1)


def _damaged(fact: Fact, backend: Backend, exc: DecodeError) -> DecodeError:
    """``exc`` saying which fact of which store it came from: the codec never sees
    where its bytes are stored."""
    return DecodeError(
        f"fact {fact.seq} (field {fact.field!r} of namespace {fact.namespace!r}) in "
        f"{backend!r} does not decode (damaged data?): {exc}"
    )
