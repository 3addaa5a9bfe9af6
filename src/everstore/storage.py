"""Storage: attribute-style access to one namespace.

Every public name of a Storage is a dunder, so that any identifier that is not one
(``name``, ``fields``, ``history``, ``_group`` ...) is free to be a field.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from .engine import Engine, History, Namespace, check_field, describe_field, frame_context
from .errors import MissingFieldError, ReservedNameError

__all__ = ["Storage", "check_field"]

#: "not cached": distinct from every value, None included
_NOT_CACHED: Any = object()

_setters_by_class: dict[type, frozenset[str]] = {}
#: names already checked by check_field (the check costs more than the look-up)
_valid_names: set[str] = set()


def _class_setters(cls: type) -> frozenset[str]:
    """Names a Storage subclass handles itself (properties and other data descriptors)."""
    names = _setters_by_class.get(cls)
    if names is None:
        names = frozenset(
            name
            for klass in cls.__mro__
            if klass is not Storage and klass is not object
            for name, member in vars(klass).items()
            if hasattr(member, "__set__") and not name.startswith("__")
        )
        _setters_by_class[cls] = names
    return names


class Storage:
    """Fields of one namespace as attributes; every assignment is appended to the log.

    >>> from everstore import Store
    >>> store = Store()
    >>> player = store.storage("game", "player1")
    >>> player.name = "Alice"
    >>> player.name
    'Alice'
    >>> del player.name
    >>> hasattr(player, "name")
    False

    Reading a field is a dictionary look-up (O(1)); writing appends one fact.
    Mutable values (list, dict, set, bytearray, random.Random) are read and changed
    inside ``with storage:``, and saved, atomically, when the outermost block exits.
    ``with storage:`` is ``with store.transaction():``, serializable unless an
    enclosing block opened it with ``isolation="atomic"`` (docs/guide.md, Transactions).
    """

    __slots__ = ("__ns__", "__store__", "__virtual__")

    __ns__: Namespace
    __store__: Engine
    __virtual__: dict[str, Callable[[Any], Any]] | None

    def __init__(
        self, *namespace: str, store: Engine, virtual: dict[str, Callable[[Any], Any]] | None = None
    ) -> None:
        ns = store.namespace(namespace)
        if virtual is not None:
            for name, function in virtual.items():
                check_field(name)
                if not callable(function):
                    raise TypeError(f"virtual field {name!r} needs a callable, got {function!r}")
            virtual = dict(virtual)
        object.__setattr__(self, "__ns__", ns)
        object.__setattr__(self, "__store__", store)
        object.__setattr__(self, "__virtual__", virtual or None)

    # -- fields -------------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        # The hot path. Overriding __getattribute__ (instead of relying on
        # __getattr__ after a failed normal look-up) saves the AttributeError that
        # CPython would raise and catch on every field read: about 3x faster.
        store = _store_of(self)
        store.sync()
        # A read inside a transaction goes through the engine, which shows the
        # transaction's own writes and keeps what was read for the commit's check;
        # while no thread has one open, no thread-local look-up is needed.
        if _virtual_of(self) is None:
            if not store.open_transactions or not store.in_transaction():
                value = _namespace_of(self).current.get(name, _NOT_CACHED)
                if value is not _NOT_CACHED:
                    return value
            elif name[:2] != "__" or name[-2:] != "__":
                # A field (every name but a dunder is one): straight to the engine,
                # without the failed normal look-up that would raise and catch first.
                return store.read(_namespace_of(self), name)
        # Methods and dunders; a miss goes on to __getattr__.
        return object.__getattribute__(self, name)

    def __read__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        # The slots' descriptors, not self.__x__: inside a transaction every read
        # comes here, and each self.__x__ would go through __getattribute__ again.
        virtual = _virtual_of(self)
        if virtual is not None and name in virtual:
            return virtual[name](self)
        return _store_of(self).read(_namespace_of(self), name)

    # A miss of __getattribute__ reads the field (the alias saves a look-up of __read__).
    __getattr__ = __read__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass's own attributes (properties, methods) must win over fields of
        # the same name, as normal look-up would have it: give up the fast path.
        if any(not name.startswith("__") for name in vars(cls)):
            cls.__getattribute__ = object.__getattribute__  # type: ignore[method-assign]

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if cls is not Storage and name in _class_setters(cls):
            object.__setattr__(self, name, value)
            return
        if name not in _valid_names:
            _valid_names.add(check_field(name))
        virtual = _virtual_of(self)
        if virtual is not None and name in virtual:
            raise ReservedNameError(f"{name!r} is a virtual field of {self!r}; it cannot be set")
        _store_of(self).write(_namespace_of(self), name, value, frame_context(sys._getframe(1)))

    def __delattr__(self, name: str) -> None:
        check_field(name)
        virtual = self.__virtual__
        if virtual is not None and name in virtual:
            raise ReservedNameError(
                f"{name!r} is a virtual field of {self!r}; it cannot be deleted"
            )
        self.__store__.delete(self.__ns__, name, frame_context(sys._getframe(1)))

    # -- whole namespace ------------------------------------------------------------

    def __fields__(self) -> list[str]:
        """Available (not deleted) fields, in the order they were first written. O(f).

        Inside a transaction, the transaction's own writes and deletions count, as
        they do for reading a field.
        """
        return self.__store__.fields(self.__ns__)

    def __history__(self) -> dict[str, History]:
        """Every field ever written (deleted ones too) -> its :class:`History`.

        The histories are immutable and seq-ordered; building the dict is O(f), and
        no value is decoded until it is read.
        """
        store = self.__store__
        store.sync()
        return {name: store.history(self.__ns__, name) for name in self.__ns__.written_fields()}

    def __iter__(self) -> Iterator[str]:
        return iter(self.__fields__())

    def __len__(self) -> int:
        return len(self.__fields__())

    def __contains__(self, name: object) -> bool:
        if type(name) is not str:
            return False
        try:
            self.__read_visible__(name)
        except MissingFieldError:
            return False
        return True

    def __read_visible__(self, name: str) -> None:
        if not self.__store__.has(self.__ns__, name):
            raise MissingFieldError(describe_field(self.__ns__.parts, name))

    def __dir__(self) -> list[str]:
        return sorted(set(self.__fields__()) | set(self.__virtual__ or ()))

    # -- with: a transaction --------------------------------------------------------

    def __enter__(self) -> Storage:
        _store_of(self).begin()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The slot read directly, not through __getattribute__ (which syncs): nothing
        # that an interrupt could cut may run before the transaction is ended.
        _store_of(self).end(kind is not None, sys._getframe(1))

    # -- identity -------------------------------------------------------------------

    @property
    def __namespace__(self) -> tuple[str, ...]:
        return self.__ns__.parts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Storage):
            return NotImplemented
        return self.__ns__ is other.__ns__

    def __hash__(self) -> int:
        return hash(self.__ns__.parts)

    def __repr__(self) -> str:
        return f"Storage{self.__ns__.parts!r}"

    def __reduce__(self) -> Any:
        raise TypeError("a Storage cannot be pickled or stored; store its namespace instead")


# The slots' own descriptors: reading them does not go through __getattribute__.
_namespace_of: Callable[[Storage], Namespace] = vars(Storage)["__ns__"].__get__
_store_of: Callable[[Storage], Engine] = vars(Storage)["__store__"].__get__
_virtual_of: Callable[[Storage], dict[str, Callable[[Any], Any]] | None] = vars(Storage)[
    "__virtual__"
].__get__
