"""ModelStore: typed objects on the log, with Slowstore's API and its roadmap.

docs/models.md is the guide; docs/migrating-from-slowstore.md maps Slowstore onto it.
"""

from __future__ import annotations

import datetime
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from ..backends import Sqlite3
from ..codec import Codec
from ..engine import END_OF_LOG, Engine, caller_context, namespace_path
from ..store import Store
from .adapter_choice import adapter_for
from .changes import Diff, ModelChange, changes_of, diff_values, values_at
from .expiry import purge, set_expiry
from .export import export_json
from .keys import Key, check_key
from .lifecycle import commit, create, delete
from .objects import Objects
from .proxy import ModelProxy
from .query import Condition, parse_conditions
from .relations import Ref
from .state import ObjectState
from .tracked import plain
from .undo import undo
from .view import ModelView

__all__ = ["DATABASE_FILE", "ModelStore"]

T = TypeVar("T")
R = TypeVar("R")

#: the file a directory-form ModelStore keeps its log in
DATABASE_FILE = "everstore.db"

#: everstore Store -> model class -> the ModelStore for it (how a Ref finds its target)
_registry: weakref.WeakKeyDictionary[Engine, dict[type, weakref.ref[ModelStore[Any]]]] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()


class ModelStore(Generic[T]):
    """Typed objects stored on an everstore log, one namespace per object.

    ``ModelStore[Person](Person, "mydata", key_selector=lambda p: p.name)`` keeps its
    log in ``mydata/everstore.db`` (an SQLite file; the directory is created if
    missing); ``ModelStore(Person, store=store, prefix=("people",))`` uses any
    everstore Store (Memory, SQLite, PostgreSQL) and a namespace prefix; with
    neither, the log is kept in memory.

    :param model: the class of the stored objects: a pydantic model, a dataclass or
        a plain class
    :param directory: where to keep an SQLite log (created if missing)
    :param store: an everstore Store to use instead (not closed by :meth:`close`)
    :param prefix: the objects' namespace prefix (default: ``(model.__name__,)``)
    :param key_selector: ``obj -> key`` (a str or an int); default: the object's
        ``__key__`` or ``id`` attribute
    :param save_on_change: save every change when it is made (default); False keeps
        changes until :meth:`commit` / :meth:`commit_all`
    :param optimistic: saving a change checks that no other writer changed that
        field since this store last saw it, raising ConflictError otherwise
    :param ttl: seconds after which added objects expire (default: never)
    :param indexes: fields to index, for :meth:`where` without a scan
    :param refs: field -> the ModelStore its ``Ref`` values point into (default:
        the ModelStore of the ``Ref[T]`` class on the same everstore Store)
    :param codec: the codec of a directory-form or in-memory store (custom types)
    :param undo_limit: undo steps kept per object (None: every one); the log keeps
        every change whatever this says
    :raises TypeError: for a misspelt or unknown keyword, or both ``directory`` and
        ``store``
    :raises InvalidNameError: for a prefix or a field name that cannot be stored
    """

    def __init__(
        self,
        model: type[T],
        directory: str | os.PathLike[str] | None = None,
        *,
        store: Engine | None = None,
        prefix: Sequence[str] | None = None,
        key_selector: Callable[[T], Any] | None = None,
        save_on_change: bool = True,
        optimistic: bool = False,
        ttl: float | None = None,
        indexes: Iterable[str] = (),
        refs: dict[str, ModelStore[Any]] | None = None,
        codec: Codec | None = None,
        undo_limit: int | None = 1000,
    ) -> None:
        adapter = adapter_for(model)
        adapter.check_fields()
        if directory is not None and store is not None:
            raise TypeError("ModelStore takes a directory or a store=, not both")
        if store is not None and codec is not None:
            raise TypeError("codec= is for a store the ModelStore opens; store= has its own")
        if key_selector is not None and not callable(key_selector):
            raise TypeError(f"key_selector must be callable, got {key_selector!r}")
        prefix = _check_prefix(model, prefix)
        ttl = _check_seconds("ttl", ttl)
        self._owns_store = store is None
        if store is None:
            if directory is not None:
                folder = Path(directory)
                folder.mkdir(parents=True, exist_ok=True)
                store = Store(Sqlite3(folder / DATABASE_FILE), codec=codec)
            else:
                store = Store(codec=codec)
        self._store = store
        self._model = model
        self._key_selector = key_selector
        self._refs = dict(refs or {})
        self._objects = Objects(
            store,
            prefix,
            adapter,
            save_on_change=bool(save_on_change),
            optimistic=bool(optimistic),
            ttl=ttl,
            undo_limit=_check_limit(undo_limit),
            make_proxy=ModelProxy,
            resolve_ref=self._bind_ref,
        )
        self._objects.owner = self
        self._indexes: dict[str, Any] = {}
        try:
            for field in indexes:
                self._add_index(field)
        except BaseException:
            self.close()
            raise
        with _registry_lock:
            _registry.setdefault(store, {})[model] = weakref.ref(self)

    # -- settings ---------------------------------------------------------------------

    @property
    def model(self) -> type[T]:
        """The class of the stored objects."""
        return self._model

    @property
    def store(self) -> Engine:
        """The everstore Store holding the log."""
        return self._store

    @property
    def prefix(self) -> tuple[str, ...]:
        """The namespace prefix: each object is the namespace ``prefix + (key,)``."""
        return self._objects.prefix

    @property
    def save_on_change(self) -> bool:
        """True: each change is saved when it is made; False: on :meth:`commit`."""
        return self._objects.save_on_change

    @save_on_change.setter
    def save_on_change(self, value: bool) -> None:
        self._objects.save_on_change = bool(value)

    @property
    def optimistic(self) -> bool:
        """True: saving a change raises ConflictError if another writer changed that
        field since this store last saw it."""
        return self._objects.optimistic

    @optimistic.setter
    def optimistic(self, value: bool) -> None:
        self._objects.set_optimistic(bool(value))

    @property
    def ttl(self) -> float | None:
        """Seconds after which newly added objects expire (None: never)."""
        return self._objects.ttl

    @ttl.setter
    def ttl(self, value: float | None) -> None:
        self._objects.ttl = _check_seconds("ttl", value)

    # -- keys -----------------------------------------------------------------------------

    def key_of(self, item: Any) -> Key:
        """The key of ``item``: a proxy's own key, a key itself, or the key the
        ``key_selector`` (default: ``__key__`` or ``id``) gives an object.

        :raises TypeError: if ``item`` has no usable key
        """
        proxy_key = getattr(type(item), "__proxy_key__", None)
        if proxy_key is not None:
            return check_key(proxy_key(item))
        if isinstance(item, str | int) and not isinstance(item, bool):
            return check_key(item)
        if not isinstance(item, self._model):
            raise TypeError(f"{item!r} is neither a key, a proxy nor a {self._model.__name__}")
        if self._key_selector is not None:
            return check_key(self._key_selector(item))
        for name in ("__key__", "id"):
            key = getattr(item, name, None)
            if key is not None:
                return check_key(key)
        raise TypeError(
            f"no key for {item!r}: pass key_selector= to the ModelStore, or give the "
            f"object an 'id' attribute"
        )

    def _state_of(self, item: Any) -> ObjectState:
        return self._objects.state(self.key_of(item))

    # -- adding and finding -------------------------------------------------------------------

    def add(self, **fields: Any) -> T:
        """Make an object of the model from ``fields``, store it, return its proxy.

        :raises DuplicateKeyError: if an object with its key is stored (see :meth:`set`)
        :raises ValidationError: (pydantic) if the model refuses the fields
        """
        obj = self._objects.adapter.create(fields)
        state = create(
            self._objects, self.key_of(obj), obj, replace=False, ttl=None, ctx=caller_context()
        )
        return self._proxy(state)

    def set(self, obj: T, *, key: Any = None, ttl: float | None = None) -> T:
        """Store ``obj`` (a copy: the store keeps its own), replacing the fields of an
        object stored under the same key; return its proxy.

        :param key: the key to store it under (default: :meth:`key_of`)
        :param ttl: seconds until it expires (default: the store's ``ttl``)
        :raises TypeError: if ``obj`` is not an instance of the model
        """
        own = getattr(type(obj), "__proxy_key__", None) is not None
        if own and obj.__store__ is self:  # type: ignore[attr-defined]
            return obj  # already stored: it is saved as it changes
        model = plain(obj)
        if not isinstance(model, self._model):
            raise TypeError(f"set() stores {self._model.__name__} objects, got {obj!r}")
        if not own:
            model = self._objects.adapter.copy(model)
        chosen = self.key_of(model if key is None else key)
        state = create(
            self._objects,
            chosen,
            model,
            replace=True,
            ttl=_check_seconds("ttl", ttl),
            ctx=caller_context(),
        )
        return self._proxy(state)

    def __setitem__(self, key: Any, obj: T) -> None:
        self.set(obj, key=check_key(key))

    def get(self, item: Any, default: Any = None) -> Any:
        """The proxy of the object with ``item``'s key, or ``default`` if there is
        none (or it has expired)."""
        try:
            state = self._state_of(item)
        except TypeError:
            return default
        return self._proxy(state) if self._objects.exists(state) else default

    def __getitem__(self, item: Any) -> T:
        found = self.get(item, _MISSING)
        if found is _MISSING:
            raise KeyError(item)
        result: T = found
        return result

    def __contains__(self, item: object) -> bool:
        try:
            state = self._state_of(item)
        except TypeError:
            return False
        return self._objects.exists(state)

    def _proxy(self, state: ObjectState) -> T:
        proxy: T = self._objects.proxy(state)
        return proxy

    # -- the collection -----------------------------------------------------------------

    def all(self) -> Iterator[T]:
        """Every stored object (not expired), in key-encoding order. Objects load
        as the iteration reaches them."""
        for state in self._objects.live_states():
            yield self._proxy(state)

    __iter__ = all

    def values(self) -> list[T]:
        """Every stored object, as a list."""
        return list(self.all())

    def keys(self) -> list[Key]:
        """The keys of every stored object."""
        return [state.key for state in self._objects.live_states()]

    def items(self) -> list[tuple[Key, T]]:
        """``(key, object)`` of every stored object."""
        return [(state.key, self._proxy(state)) for state in self._objects.live_states()]

    def __len__(self) -> int:
        return sum(1 for _ in self._objects.live_states())

    def filter(self, predicate: Callable[[T], Any]) -> Iterator[T]:
        """The objects for which ``predicate(obj)`` is true (a scan)."""
        return (proxy for proxy in self.all() if predicate(proxy))

    def first(self, predicate: Callable[[T], Any] | None = None) -> T | None:
        """The first object for which ``predicate`` is true (any object, without
        one), or None."""
        for proxy in self.all():
            if predicate is None or predicate(proxy):
                return proxy
        return None

    def where(self, **conditions: Any) -> list[T]:
        """The objects meeting every condition: ``field=value`` or ``field__op=value``
        with ``op`` in eq, ne, gt, gte, lt, lte, in (``age__gte=30``,
        ``email__in=[...]``). Conditions on indexed fields are answered by their
        indexes (then only the candidates are loaded and checked); the others scan.

        :raises TypeError: for an unknown field or operator
        """
        objects = self._objects
        parsed = parse_conditions(conditions, objects)
        parts: list[str] | None = None
        unanswered = parsed
        if self._indexes and not objects.in_transaction():
            if objects.ordered is None:
                # Load every object before an index is built: the index then reads
                # the loaded namespaces instead of seeing every fact of the load.
                objects.listing()
            common: set[str] | None = None
            unanswered = []
            for condition in parsed:
                index = self._indexes.get(condition.field)
                found = None if index is None else _from_index(index, condition)
                if found is None:
                    unanswered.append(condition)
                elif parts is None:
                    parts = found
                else:
                    common = (set(parts) if common is None else common) & set(found)
            if common is not None:
                parts = sorted(common)
        if parts is None:
            parts = objects.parts()
            unanswered = parsed
        proxy = objects.proxy
        return [proxy(state) for state in objects.matching(parts, parsed, unanswered)]

    # -- deleting ---------------------------------------------------------------------------

    def delete(self, item: Any) -> bool:
        """Delete the object (by proxy, object or key): a tombstone for each field,
        saved at once; its history stays readable. False if there was none."""
        try:
            state = self._state_of(item)
        except TypeError:
            return False
        return delete(self._objects, state, ctx=caller_context())

    def __delitem__(self, item: Any) -> None:
        if not self.delete(item):
            raise KeyError(item)

    # -- saving, dirty, undo --------------------------------------------------------------

    def commit(self, *items: Any) -> None:
        """Save the unsaved changes of these objects (one transaction)."""
        objects = self._objects
        states = [self._state_of(item) for item in items]
        context = caller_context()
        with objects.block(context):
            for state in states:
                commit(objects, state, context)

    def commit_all(self) -> None:
        """Save every unsaved change, of every object, in one transaction."""
        objects = self._objects
        dirty = [state for state in list(objects.states.values()) if objects.is_dirty(state)]
        if dirty:
            context = caller_context()
            with objects.block(context):
                for state in dirty:
                    commit(objects, state, context)

    def is_dirty(self, item: Any) -> bool:
        """True while the object has changes that are not saved."""
        return self._objects.is_dirty(self._state_of(item))

    def undo(self, item: Any) -> None:
        """Undo the object's latest change (see ``ModelProxy.undo``)."""
        undo(self._objects, self._state_of(item), ctx=caller_context())

    def redo(self, item: Any) -> None:
        """Redo the object's latest undone change (see ``ModelProxy.redo``)."""
        undo(self._objects, self._state_of(item), redo=True, ctx=caller_context())

    # -- the past ----------------------------------------------------------------------------

    def changes(self, item: Any) -> list[ModelChange]:
        """The object's change log, newest first: every fact of its fields (also
        after it was deleted, and across processes)."""
        state = self._state_of(item)
        return changes_of(self._store, state.ns, state.key)

    def as_of(self, *, seq: int | None = None, time: Any = None) -> ModelView[T]:
        """The whole store as it was at ``seq`` or ``time`` (seconds, or a datetime).

        :raises TypeError: unless exactly one of ``seq`` and ``time`` is given
        """
        if (seq is None) == (time is None):
            raise TypeError("as_of() needs exactly one of seq= or time=")
        store = self._store
        store.sync()
        if time is not None:
            when = time.timestamp() if isinstance(time, datetime.datetime) else time
            seq = store.seq_at_time(when)
            return ModelView(self._objects, seq, float(when))
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"as_of(seq=...) needs a non-negative int, got {seq!r}")
        return ModelView(self._objects, seq, _time_of_seq(store, seq))

    def diff(self, item: Any, before: Any, after: Any = None) -> Diff:
        """How the object differs between two moments: each a seq (int), a
        :meth:`as_of` view, a datetime, or None (now, the default for ``after``)."""
        state = self._state_of(item)
        old, _ = values_at(self._store, state.ns, _moment(self._store, before))
        new, _ = values_at(self._store, state.ns, _moment(self._store, after))
        return diff_values(old, new)

    # -- relationships ----------------------------------------------------------------------

    def _bind_ref(self, field: str, ref: Ref[Any]) -> Ref[Any]:
        return ref.bound(_Target(self, field, None))

    def ref_in_view(self, field: str, ref: Ref[Any], seq: int) -> Ref[Any]:
        """``ref`` resolved in its target store as of ``seq`` (for past views)."""
        return ref.bound(_Target(self, field, seq))

    def target_of(self, field: str, model: type | None) -> ModelStore[Any]:
        """The ModelStore the references in ``field`` point into.

        :raises LookupError: if there is none
        """
        target = self._refs.get(field)
        if target is not None:
            return target
        model = model or self._objects.ref_fields.get(field)
        if model is not None:
            with _registry_lock:
                found = _registry.get(self._store, {}).get(model)
            target = found() if found is not None else None
            if target is not None:
                return target
        raise LookupError(
            f"no ModelStore for the references in {self._model.__name__}.{field}: open "
            f"one for {getattr(model, '__name__', 'the target')} on the same store, or "
            f"pass refs={{{field!r}: <ModelStore>}}"
        )

    # -- transactions -------------------------------------------------------------------------

    def transaction(self, isolation: str | None = None) -> Any:
        """``with store.transaction():`` every change inside, to any object, is saved
        together at the end, or none if the block raises (serializable by default:
        see the guide). Other threads do not see the changes before the commit."""
        return self._store.transaction(isolation)

    def transact(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run ``fn`` in a transaction, again on ConflictError (``Store.transact``)."""
        return self._store.transact(fn, *args, **kwargs)

    def transactional(self, fn: Callable[..., R]) -> Callable[..., R]:
        """Decorator: each call runs as :meth:`transact` would run it."""
        return self._store.transactional(fn)

    # -- expiry ---------------------------------------------------------------------------------

    def expire(self, item: Any, seconds: float | None = None, *, at: Any = None) -> None:
        """Make the object expire ``seconds`` from now, or ``at`` a moment (seconds
        since the epoch, or a datetime); ``expire(obj, None)`` removes its expiry.
        Saved at once. An expired object is invisible to reads and queries until
        :meth:`purge` deletes it.

        :raises GoneError: if the object does not exist (or has expired)
        """
        if seconds is not None and at is not None:
            raise TypeError("expire() takes seconds or at=, not both")
        when: float | None
        if at is not None:
            when = at.timestamp() if isinstance(at, datetime.datetime) else float(at)
        elif seconds is not None:
            when = self._store.clock() + _check_seconds("seconds", seconds)  # type: ignore[operator]
        else:
            when = None
        set_expiry(self._objects, self._state_of(item), when, caller_context())

    def time_to_live(self, item: Any) -> float | None:
        """Seconds until the object expires (None: it does not; 0 once expired)."""
        view = self._objects.peek(self._state_of(item))
        if view.expires is None:
            return None
        return max(0.0, view.expires - self._store.clock())

    def purge(self) -> list[Key]:
        """Delete every expired object (tombstones, in one transaction: the purge
        is in the log like any change); return their keys."""
        return purge(self._objects, caller_context())

    # -- export and life cycle -------------------------------------------------------------------

    def export_json(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write each object as ``directory/<key>.json`` (fields, ``__key__``,
        ``__changes__``: Slowstore's format); return the paths written."""
        return export_json(self._objects, directory)

    def close(self) -> None:
        """Stop following the log; close the store if this ModelStore opened it."""
        self._objects.close()
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> ModelStore[T]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.commit_all()
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"ModelStore({self._model.__name__}, prefix={self.prefix!r}, {self._store!r})"

    # -- indexes ---------------------------------------------------------------------------------

    def _add_index(self, field: str) -> None:
        if not self._objects.adapter.is_field(field):
            raise TypeError(f"indexes: {self._model.__name__} has no field {field!r}")
        from .indexes import FieldIndex

        self._indexes[field] = FieldIndex(
            self._store, self.prefix, field, namespaces=self._objects.namespaces
        )


_MISSING: Any = object()


class _Target:
    """A Ref's resolver: the target ModelStore, found when first needed (so the
    target may be opened after the referring one), now or as of a seq."""

    __slots__ = ("field", "owner", "seq")

    def __init__(self, owner: ModelStore[Any], field: str, seq: int | None) -> None:
        self.owner = owner
        self.field = field
        self.seq = seq

    def get(self, key: Any) -> Any:
        target = self.owner.target_of(self.field, None)
        if self.seq is None:
            return target.get(key)
        return target.as_of(seq=self.seq).get(key)


def _from_index(index: Any, condition: Condition) -> list[str] | None:
    """Namespace parts an index gives for one condition, sorted, each once (None:
    the index cannot answer it, so the condition is checked by the scan)."""
    _, op, wanted = condition
    try:
        if op == "eq":
            # sorted by namespace already: the objects' parts in key order
            return [parts[-1] for parts in index.equal(wanted)]
        if op == "in":
            found = {parts[-1] for value in wanted for parts in index.equal(value)}
            return sorted(found)
        if op in ("gt", "gte"):
            ranged = index.range(low=wanted, include_low=op == "gte")
        elif op in ("lt", "lte"):
            ranged = index.range(high=wanted, include_high=op == "lte")
        else:
            return None
    except TypeError:  # an unhashable or incomparable value: scan instead
        return None
    return sorted([parts[-1] for parts in ranged])


def _check_prefix(model: type, prefix: Sequence[str] | None) -> tuple[str, ...]:
    if prefix is None:
        return (model.__name__,)
    if isinstance(prefix, str):
        raise TypeError(
            f"prefix is a tuple of namespace parts, like ({prefix!r},), not the str {prefix!r}"
        )
    parts = tuple(prefix)
    namespace_path(parts)  # raises InvalidNameError for a bad part
    return parts


def _check_limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"undo_limit is an int >= 0, or None; got {value!r}")
    return value


def _check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} is a number of seconds > 0, or None; got {value!r}")
    return float(value)


def _time_of_seq(store: Engine, seq: int) -> float:
    """The time of the log at ``seq``: that of its fact (-inf before the first)."""
    if seq <= 0:
        return float("-inf")
    for change in store.follow(since=seq - 1, timeout=0, batch=1):
        return change.time
    return store.clock()


def _moment(store: Engine, moment: Any) -> int:
    """A seq for :meth:`ModelStore.diff`'s moments."""
    if moment is None:
        return END_OF_LOG
    if isinstance(moment, ModelView):
        return moment.seq
    if isinstance(moment, datetime.datetime):
        return store.seq_at_time(moment.timestamp())
    if isinstance(moment, bool) or not isinstance(moment, int) or moment < 0:
        raise TypeError(
            f"a moment is a seq (an int >= 0), a view from as_of(), a datetime or None; "
            f"got {moment!r}"
        )
    return moment
