"""appendmuch's ``Store``, ``Storage`` and ``VirtualFields``, on one everstore Store.

A compat ``Storage`` has appendmuch's reserved names (``get``, ``within``,
``history`` ...) and errors; everything it reads and writes goes through an
everstore ``Storage`` of the same namespace (its ``__everstore__``), so handles never
go stale, writes are committed before they return, and ``with storage:`` is an
atomic everstore transaction (``isolation="atomic"``: its reads are not checked).
"""

from __future__ import annotations

import string
import threading
from collections.abc import Callable, Iterator
from types import MappingProxyType, TracebackType
from typing import Any, Self

import everstore
from everstore import Value
from everstore.errors import (
    InvalidNameError,
    MissingFieldError,
    MutableAccessError,
    ReservedNameError,
)

from .drivers import DBDriver
from .views import View, field_or_default

__all__ = ["Storage", "Store", "VirtualFields", "dbns2tuple", "tuple2dbns"]

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-._")


def tuple2dbns(namespace: tuple[str, ...]) -> str:
    """``("game", "p1")`` -> ``"game/p1"`` (appendmuch's helper).

    >>> tuple2dbns(("game", "p1"))
    'game/p1'
    """
    return "/".join(namespace)


def dbns2tuple(dbns: str) -> tuple[str, ...]:
    """``"game/p1"`` -> ``("game", "p1")``; ``""`` -> ``()`` (appendmuch's helper).

    >>> dbns2tuple("game/p1"), dbns2tuple("")
    (('game', 'p1'), ())
    """
    return tuple(dbns.split("/")) if dbns else ()


def _violation(text: str) -> str:
    return f"Constraint violation: {text}"


class _Pending(threading.local):
    """This thread's open ``with`` blocks on one Store, for ``on_change``."""

    depth = 0
    since = 0
    namespaces: set[str]


class Store:
    """appendmuch's Store on everstore: ``Store(driver, *, codec=None,
    replace_predicate=None, on_change=None, namespace_validator=None)``.

    ``on_change(namespace_tuple, field, Value)`` is called synchronously for each
    fact committed through this Store (after the write, or after the outermost
    ``with`` block commits). ``replace_predicate(dbns, field)`` marks fields whose
    ``history()`` shows only the latest value (the log keeps every fact).
    ``namespace_validator(namespace_tuple)`` may refuse namespaces. The everstore
    Store underneath is ``store.everstore`` (time travel, the change feed ...).

    >>> from everstore.compat.appendmuch import Memory
    >>> seen = []
    >>> store = Store(Memory(), on_change=lambda ns, f, v: seen.append((ns, f, v.data)))
    >>> store.storage("game", "p1").score = 3
    >>> seen
    [(('game', 'p1'), 'score', 3)]
    """

    def __init__(
        self,
        driver: DBDriver,
        *,
        codec: everstore.Codec | None = None,
        replace_predicate: Callable[[str, str], bool] | None = None,
        on_change: Callable[[tuple[str, ...], str, Value], None] | None = None,
        namespace_validator: Callable[[tuple[str, ...]], bool] | None = None,
    ) -> None:
        if not isinstance(driver, DBDriver):
            raise TypeError(f"Store() needs a driver (Memory, Sqlite3, PostgreSQL), got {driver!r}")
        self.codec = codec if codec is not None else everstore.default_codec
        self.replace_predicate: Callable[[str, str], bool] = replace_predicate or _never
        self.on_change = on_change
        self.namespace_validator = namespace_validator
        self.driver = driver
        driver.replace_predicate = self.replace_predicate
        driver.ensure()
        self.everstore = everstore.Store(driver.backend, codec=self.codec)
        self._pending = _Pending()

    def __repr__(self) -> str:
        return f"Store({self.driver!r})"

    def storage(
        self, *namespace: str, virtual: dict[str, Callable[[Storage], Any]] | None = None
    ) -> Storage:
        """A Storage of one namespace (a new object each call, as in appendmuch;
        all of them show the same, current values).

        :param namespace: the parts, each of ``[A-Za-z0-9._-]``.
        :param virtual: name -> ``fn(storage)``, this object's virtual fields.
        :return: the Storage.
        :raises ValueError: an invalid namespace, or one the validator refuses.
        """
        return Storage(*namespace, store=self, virtual=virtual)

    def get_current_value(self, namespace: tuple[str, ...], field: str) -> Any:
        """The latest value of a field, a copy if mutable (no ``with`` needed). O(f).

        :raises AttributeError: the field has no value (``Key not found``).
        """
        try:
            history = self.field_history(namespace, field)
        except InvalidNameError:
            history = ()
        if not history or history[-1].unavailable:
            raise MissingFieldError(f"Key not found: ({namespace}, {field})")
        return history[-1].data

    def field_history(self, namespace: tuple[str, ...], field: str) -> tuple[Value, ...]:
        """A field's history in seq order (every fact; empty if never written). O(n).

        :raises ValueError: ``namespace`` is not a valid everstore namespace.
        """
        history = self.everstore.storage(*namespace).__history__().get(field)
        return tuple(history) if history is not None else ()

    def load(self) -> None:
        """Catch up with facts other writers committed (appendmuch reloaded
        everything here; everstore keeps itself current on every read anyway)."""
        self.everstore.sync()

    def flush(self) -> None:
        """Nothing to do: every write was committed before it returned."""
        self.driver.flush()

    def close(self) -> None:
        """Close the driver. Idempotent."""
        self.everstore.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- on_change: which facts this Store committed ---------------------------------

    def before_write(self, dbns: str) -> int | None:
        """Called by Storage before a write: the seq to report changes after, or
        None when nothing is to be reported now (no callback, or a ``with`` is open)."""
        pending = self._pending
        if pending.depth:
            pending.namespaces.add(dbns)
            return None
        return self.everstore.last_seq if self.on_change is not None else None

    def after_write(self, since: int | None, dbns: str, field: str) -> None:
        """Called by Storage after a write outside ``with``: report its fact."""
        if since is not None:
            self._report(since, lambda path, name: path == dbns and name == field)

    def enter(self, dbns: str) -> None:
        """Called by ``Storage.__enter__`` (before the everstore block opens)."""
        pending = self._pending
        if not pending.depth:
            pending.since = self.everstore.last_seq if self.on_change is not None else -1
            pending.namespaces = set()
        pending.namespaces.add(dbns)
        pending.depth += 1

    def leave(self, committed: bool) -> None:
        """Called by ``Storage.__exit__`` after the everstore block closed."""
        pending = self._pending
        pending.depth -= 1
        if pending.depth or pending.since < 0 or not committed:
            return
        namespaces = pending.namespaces
        self._report(pending.since, lambda path, name: path in namespaces)

    def read_inside(self, dbns: str) -> None:
        """Called on a read: inside ``with``, in-place changes of this namespace are
        committed at the end, so it is one to report."""
        pending = self._pending
        if pending.depth:
            pending.namespaces.add(dbns)

    def _report(self, since: int, ours: Callable[[str, str], bool]) -> None:
        callback = self.on_change
        if callback is None:
            return
        for change in self.everstore.follow(since, timeout=0):
            if ours("/".join(change.namespace), change.field):
                value = Value(
                    change.time, change.unavailable, change.data, change.context, change.seq
                )
                callback(change.namespace, change.field, value)


def _never(namespace: str, field: str) -> bool:
    return False


class VirtualFields(dict[str, Callable[..., Any]]):
    """A Storage's virtual fields: a dict that checks what goes in, and a decorator.

    ``s.virtual["f"] = fn``, ``@s.virtual`` (named after the function),
    ``@s.virtual("f")``; ``del s.virtual["f"]`` removes one.

    >>> fields = VirtualFields()
    >>> @fields
    ... def double(s):
    ...     return 2
    >>> list(fields)
    ['double']
    >>> fields["get"] = double
    Traceback (most recent call last):
    ...
    everstore.errors.InvalidNameError: Constraint violation: Cannot use reserved name 'get' ...
    """

    def __init__(self, initial: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__()
        for name, function in (initial or {}).items():
            self[name] = function

    def __setitem__(self, name: str, function: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidNameError(
                _violation(f"Virtual field name must be a valid identifier, got {name!r}")
            )
        if not callable(function):
            raise TypeError(
                _violation(f"Virtual field must be callable, got {type(function).__name__}")
            )
        if name in Storage.INTERNAL_ATTRS or name in Storage.RESERVED_METHODS:
            raise InvalidNameError(
                _violation(f"Cannot use reserved name {name!r} as a virtual field")
            )
        super().__setitem__(name, function)

    def __call__(self, function_or_name: Callable[..., Any] | str) -> Any:
        """Register a function under its own name, or return a decorator that
        registers under the given name."""
        if callable(function_or_name):
            self[function_or_name.__name__] = function_or_name
            return function_or_name
        if not isinstance(function_or_name, str):
            raise TypeError(
                _violation(f"Expected a callable or string, got {type(function_or_name).__name__}")
            )
        name = function_or_name

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self[name] = function
            return function

        return register


class Storage:
    """appendmuch's Storage: the fields of one namespace as attributes.

    ``name``, ``virtual`` and the methods ``along``, ``fields``, ``flush``, ``get``,
    ``history``, ``refresh``, ``within`` (and ``strict``) are reserved, as in
    appendmuch 0.3.0; 0.0.x's ``__fields__()`` and ``__history__()`` work too.

    >>> from everstore.compat.appendmuch import Memory, Store
    >>> player = Store(Memory()).storage("game", "player1")
    >>> player.score = 100
    >>> player.score, player.get("lives", 3), player.fields()
    (100, 3, ['score'])
    >>> player.fields = 1
    Traceback (most recent call last):
    ...
    everstore.errors.ReservedNameError: 'fields' is a Storage method and cannot be used as a ...
    """

    INTERNAL_ATTRS = frozenset(
        {
            "__accessed_fields__",
            "__contexts__",
            "__field_cache__",
            "name",
            "virtual",
            "__namespace__",
            "__dbns__",
            "__store__",
        }
    )
    RESERVED_METHODS = frozenset(
        {"along", "fields", "flush", "get", "history", "refresh", "strict", "within"}
    )
    #: internal attributes that cannot change once set
    _FIXED = frozenset({"name", "virtual", "__namespace__", "__dbns__", "__store__"})

    name: str
    virtual: VirtualFields
    __namespace__: tuple[str, ...]
    __dbns__: str
    __store__: Store
    __contexts__: int
    __everstore__: everstore.Storage

    def __init__(
        self,
        *namespace: str,
        store: Store,
        virtual: dict[str, Callable[[Self], Any]] | None = None,
    ) -> None:
        if not namespace or not all(
            type(part) is str and part and _TOKEN_CHARS.issuperset(part) for part in namespace
        ):
            raise InvalidNameError(_violation(f"{namespace!r} is an invalid namespace"))
        validator = store.namespace_validator
        if validator is not None and not validator(namespace):
            raise InvalidNameError(_violation(f"{namespace!r} failed namespace validation"))
        put = object.__setattr__
        put(self, "name", namespace[-1])
        put(self, "__namespace__", namespace)
        put(self, "__dbns__", tuple2dbns(namespace))
        put(self, "__store__", store)
        put(self, "__contexts__", 0)
        put(self, "__everstore__", store.everstore.storage(*namespace))
        put(self, "virtual", VirtualFields(virtual))

    # -- fields ---------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Reached only when normal look-up fails: methods, the internal attributes and
        # a subclass's own attributes win over fields, as in appendmuch.
        if name.startswith("__") and name.endswith("__"):
            raise ReservedNameError(name)
        virtual = self.__dict__["virtual"]
        if name in virtual:
            return virtual[name](self)
        return self.__field__(name)

    def __field__(self, name: str) -> Any:
        store = self.__store__
        store.read_inside(self.__dbns__)
        try:
            return getattr(self.__everstore__, name)
        except MissingFieldError:
            raise MissingFieldError(f"{self!r} has no .{name}") from None
        except MutableAccessError as exc:
            kind = str(exc).split(" holds a mutable ", 1)[-1].split(":", 1)[0]
            raise MutableAccessError(
                _violation(
                    f"This {self!r} must be wrapped in a context manager (use 'with') "
                    f"because the field '{name}' is of a mutable type ({kind})."
                )
            ) from None

    def get(self, name: str, default: Any = None) -> Any:
        """A field's value (or virtual field's), or ``default`` if it has none. O(1).

        :param name: the field.
        :param default: returned for a missing or deleted field, and for dunders.
        :return: the value, or ``default``.
        :raises TypeError: the value is mutable and no ``with`` block is open.
        """
        return field_or_default(self, name, default)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.isidentifier():
            raise InvalidNameError(_violation("Attribute name must be a valid identifier"))
        cls = type(self)
        if name in ("name", "virtual") or (name.startswith("__") and name.endswith("__")):
            if name not in cls.INTERNAL_ATTRS:
                raise ReservedNameError(
                    _violation(f"Attribute '{name}' is not an internal attribute")
                )
            if name in cls._FIXED and name in self.__dict__:
                raise ReservedNameError(
                    _violation(f"Attribute '{name}' is reserved and cannot be changed")
                )
            object.__setattr__(self, name, value)
            return
        if name in cls.RESERVED_METHODS:
            raise ReservedNameError(
                f"'{name}' is a Storage method and cannot be used as a field name"
            )
        if name in self.__dict__["virtual"]:
            raise ReservedNameError(f"Cannot assign to virtual field '{name}'")
        if cls is not Storage and _subclass_attribute(cls, self, name, value):
            return
        store = self.__store__
        since = store.before_write(self.__dbns__)
        setattr(self.__everstore__, name, value)
        store.after_write(since, self.__dbns__, name)

    def __delattr__(self, name: str) -> None:
        if not name.isidentifier():
            raise InvalidNameError(_violation("Key must be a valid identifier"))
        store = self.__store__
        dbns = self.__dbns__
        if name.startswith("__") and name.endswith("__"):
            raise MissingFieldError(f"Key not found: ({dbns}, {name})")
        since = store.before_write(dbns)
        try:
            delattr(self.__everstore__, name)
        except MissingFieldError:
            raise MissingFieldError(f"Key not found: ({dbns}, {name})") from None
        store.after_write(since, dbns, name)

    # -- the whole namespace --------------------------------------------------------

    def fields(self) -> list[str]:
        """The available (not deleted) fields, in first-write order. O(f)."""
        return self.__everstore__.__fields__()

    def __fields__(self) -> list[str]:
        """appendmuch 0.0.x's name of :meth:`fields`."""
        return self.fields()

    def history(self) -> MappingProxyType[str, tuple[Value, ...]]:
        """Every field ever written (deleted ones too) -> its Values in seq order,
        read-only. Fields under the Store's ``replace_predicate`` show only their
        latest Value. O(total history of the namespace).
        """
        replaced = self.__store__.replace_predicate
        dbns = self.__dbns__
        found: dict[str, tuple[Value, ...]] = {}
        for field, values in self.__everstore__.__history__().items():
            found[field] = (values[-1],) if replaced(dbns, field) else tuple(values)
        return MappingProxyType(found)

    def __history__(self) -> MappingProxyType[str, tuple[Value, ...]]:
        """appendmuch 0.0.x's name of :meth:`history`."""
        return self.history()

    def __bool__(self) -> bool:
        return bool(self.fields())

    def refresh(self, *fields: str) -> None:
        """Nothing to do: every Storage of a namespace shows its current values
        (appendmuch's per-object caches could go stale and needed this)."""

    def flush(self) -> None:
        """Nothing to do now: in-place changes are committed when the outermost
        ``with`` block exits, atomically with the block's other writes."""

    # -- temporal -------------------------------------------------------------------

    def within(self, *, strict: bool = False, **context: Any) -> View:
        """A live, read-only :class:`View` of the fields while ``context`` held.

        :param strict: only values written during the latest such period count.
        :param context: ``field=value`` conditions.
        :return: the View.
        """
        return View(self, strict=strict, **context)

    def along(self, field: str, *, strict: bool = False) -> Iterator[tuple[Any, View]]:
        """``(value, view)`` per period in which ``field`` kept one value, oldest first.

        :param field: the field to walk.
        :param strict: the views count only values written during their period.
        :return: an iterator; empty for a field never written.
        """
        return View(self, strict=strict).along(field)

    # -- with: an everstore transaction ---------------------------------------------

    def __enter__(self) -> Self:
        store = self.__store__
        store.enter(self.__dbns__)
        try:
            # appendmuch's ``with`` never refused to commit: an atomic transaction, not
            # a serializable one (a nested block joins whatever is open).
            engine = store.everstore
            engine.begin(None if engine.in_transaction() else "atomic")
        except BaseException:
            store.leave(committed=False)
            raise
        object.__setattr__(self, "__contexts__", self.__contexts__ + 1)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        object.__setattr__(self, "__contexts__", self.__contexts__ - 1)
        committed = False
        try:
            self.__everstore__.__exit__(kind, exc, tb)
            committed = kind is None
        finally:
            self.__store__.leave(committed)

    # -- identity -------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and self.__namespace__ == other.__namespace__

    def __hash__(self) -> int:
        return hash(self.__namespace__)

    def __repr__(self) -> str:
        return f"Storage{self.__namespace__!r}"


def _subclass_attribute(cls: type, storage: Storage, name: str, value: Any) -> bool:
    """Assign through a subclass's own attribute of that name (True if one exists)."""
    for klass in cls.__mro__:
        if klass is Storage:
            return False
        member = klass.__dict__.get(name, _ABSENT)
        if member is _ABSENT:
            continue
        if hasattr(member, "__set__"):
            member.__set__(storage, value)
            return True
        raise ReservedNameError(f"Cannot assign to '{name}'")
    return False


_ABSENT = object()
