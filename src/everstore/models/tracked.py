"""Tracked views: lists, dicts, sets and nested objects inside a stored object.

A proxy hands out a container or nested object of a field as a view that knows where
it lives (the object, the field, and the path below it). Reading through the view
reads the object as the calling thread sees it; every change through the view
(``p.tags.append(x)``, ``p.address.city = ...``, ``p.scores["a"] += 1``) is made in
place and then saved like an assignment of the field: validated by the model, one
fact (a delta where the core stores one), one undo step.

A view is not the container itself: ``list(p.tags)`` or ``p.tags.copy()`` gives a
plain copy, and ``isinstance(p.tags, list)`` is False (it is a ``MutableSequence``).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import sys
import types
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    MutableMapping,
    MutableSequence,
    MutableSet,
)
from typing import TYPE_CHECKING, Any

from ..engine import frame_context
from .relations import Ref

if TYPE_CHECKING:
    from .objects import Objects
    from .state import ObjectState

__all__ = [
    "PLAIN_TYPES",
    "TrackedDict",
    "TrackedList",
    "TrackedObject",
    "TrackedSet",
    "plain",
    "wrap",
]


def _is_record(value: Any) -> bool:
    """True for nested objects whose attributes a view should track: pydantic
    models, dataclass instances and instances of plain user classes."""
    kind = type(value)
    if hasattr(kind, "__pydantic_fields__"):
        return True
    if dataclasses.is_dataclass(value):
        return True
    if isinstance(value, enum.Enum | Ref | type | types.FunctionType | types.MethodType):
        return False
    return hasattr(value, "__dict__") and kind.__module__ not in ("builtins", "datetime")


#: types whose values are handed out as they are (never a tracked view)
PLAIN_TYPES = frozenset({int, str, float, bool, type(None), bytes})
_PLAIN = PLAIN_TYPES


def wrap(objects: Objects, state: ObjectState, path: tuple[Any, ...], value: Any) -> Any:
    """``value`` (found at ``path``) as a tracked view if it is a container or a
    nested object, else as it is."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return TrackedList(objects, state, path)
    if kind is dict:
        return TrackedDict(objects, state, path)
    if kind is set:
        return TrackedSet(objects, state, path)
    if _is_record(value):
        return TrackedObject(objects, state, path)
    return value


def plain(value: Any) -> Any:
    """A value to store: a tracked view or a proxy becomes a private copy of what it
    shows (so that two fields never share one container)."""
    unwrap = getattr(type(value), "__tracked_value__", None)
    if unwrap is not None:
        return copy.deepcopy(unwrap(value))
    model_of = getattr(type(value), "__proxy_model__", None)
    if model_of is not None:
        return copy.deepcopy(model_of(value))
    return value


class Tracked:
    """What every view shares: where it lives, reading and changing through it."""

    __slots__ = ("_objects", "_path", "_state")

    _objects: Objects
    _path: tuple[Any, ...]
    _state: ObjectState

    def __init__(self, objects: Objects, state: ObjectState, path: tuple[Any, ...]) -> None:
        object.__setattr__(self, "_objects", objects)
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_path", path)

    def _value(self) -> Any:
        return self._objects.read_path(self._state, self._path)

    def _mutate(self, change: Callable[[Any], Any]) -> Any:
        # the user's line: the caller of the view's method that called this
        context = frame_context(sys._getframe(2))
        return self._objects.mutate(self._state, self._path, change, context)

    def _child(self, step: tuple[str, Any], value: Any) -> Any:
        return wrap(self._objects, self._state, (*self._path, step), value)

    @staticmethod
    def __tracked_value__(view: Tracked) -> Any:
        return view._value()

    def __eq__(self, other: object) -> bool:
        return bool(self._value() == _shown(other))

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._value())

    def __str__(self) -> str:
        return str(self._value())

    def __copy__(self) -> Any:
        return copy.copy(self._value())

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(self._value(), memo)

    def __reduce__(self) -> Any:
        return (copy.deepcopy, (self._value(),))


def _shown(value: Any) -> Any:
    unwrap = getattr(type(value), "__tracked_value__", None)
    return unwrap(value) if unwrap is not None else value


class TrackedList(Tracked, MutableSequence[Any]):
    """A list field (or a list inside one), changed in place and saved."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._value())

    def __getitem__(self, index: Any) -> Any:
        items = self._value()
        if isinstance(index, slice):
            return copy.deepcopy(items[index])
        if index < 0:
            index += len(items)
        return self._child(("item", index), items[index])

    def __setitem__(self, index: Any, value: Any) -> None:
        value = [plain(v) for v in value] if isinstance(index, slice) else plain(value)
        self._mutate(lambda items: items.__setitem__(index, value))

    def __delitem__(self, index: Any) -> None:
        self._mutate(lambda items: items.__delitem__(index))

    def __iter__(self) -> Iterator[Any]:
        for index, item in enumerate(list(self._value())):
            yield self._child(("item", index), item)

    def __contains__(self, value: object) -> bool:
        return _shown(value) in self._value()

    def __reversed__(self) -> Iterator[Any]:
        items: list[Any] = list(self)
        return iter(items[::-1])

    def insert(self, index: int, value: Any) -> None:
        value = plain(value)
        self._mutate(lambda items: items.insert(index, value))

    def append(self, value: Any) -> None:
        value = plain(value)
        self._mutate(lambda items: items.append(value))

    def extend(self, values: Iterable[Any]) -> None:
        added = [plain(v) for v in values]
        self._mutate(lambda items: items.extend(added))

    def __iadd__(self, values: Iterable[Any]) -> TrackedList:  # type: ignore[misc]
        self.extend(values)
        return self

    def __imul__(self, count: int) -> TrackedList:
        self._mutate(lambda items: items.__imul__(count))
        return self

    def pop(self, index: int = -1) -> Any:
        return self._mutate(lambda items: items.pop(index))

    def remove(self, value: Any) -> None:
        value = _shown(value)
        self._mutate(lambda items: items.remove(value))

    def clear(self) -> None:
        self._mutate(lambda items: items.clear())

    def reverse(self) -> None:
        self._mutate(lambda items: items.reverse())

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        self._mutate(lambda items: items.sort(key=key, reverse=reverse))

    def index(self, value: Any, start: int = 0, stop: int = 2**63) -> int:
        return int(self._value().index(_shown(value), start, stop))

    def count(self, value: Any) -> int:
        return int(self._value().count(_shown(value)))

    def copy(self) -> list[Any]:
        """A plain (deep) copy of the list."""
        return copy.deepcopy(list(self._value()))

    def __add__(self, other: Any) -> list[Any]:
        return self.copy() + list(_shown(other))

    def __radd__(self, other: Any) -> list[Any]:
        return list(_shown(other)) + self.copy()

    def __mul__(self, count: int) -> list[Any]:
        return self.copy() * count

    def __lt__(self, other: Any) -> bool:
        return bool(self._value() < _shown(other))

    def __le__(self, other: Any) -> bool:
        return bool(self._value() <= _shown(other))

    def __gt__(self, other: Any) -> bool:
        return bool(self._value() > _shown(other))

    def __ge__(self, other: Any) -> bool:
        return bool(self._value() >= _shown(other))


class TrackedDict(Tracked, MutableMapping[Any, Any]):
    """A dict field (or a dict inside one), changed in place and saved."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._value())

    def __getitem__(self, key: Any) -> Any:
        return self._child(("item", key), self._value()[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        value = plain(value)
        self._mutate(lambda items: items.__setitem__(key, value))

    def __delitem__(self, key: Any) -> None:
        self._mutate(lambda items: items.__delitem__(key))

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._value()))

    def __contains__(self, key: object) -> bool:
        return key in self._value()

    def get(self, key: Any, default: Any = None) -> Any:
        items = self._value()
        return self._child(("item", key), items[key]) if key in items else default

    def update(self, *args: Any, **kwargs: Any) -> None:
        added = {k: plain(v) for k, v in dict(*args, **kwargs).items()}
        self._mutate(lambda items: items.update(added))

    def __ior__(self, other: Any) -> TrackedDict:
        self.update(_shown(other))
        return self

    def __or__(self, other: Any) -> dict[Any, Any]:
        return self.copy() | dict(_shown(other))

    def pop(self, key: Any, *default: Any) -> Any:
        return self._mutate(lambda items: items.pop(key, *default))

    def popitem(self) -> tuple[Any, Any]:
        return self._mutate(lambda items: items.popitem())  # type: ignore[no-any-return]

    def setdefault(self, key: Any, default: Any = None) -> Any:
        default = plain(default)
        if key not in self._value():
            self._mutate(lambda items: items.setdefault(key, default))
        return self[key]

    def clear(self) -> None:
        self._mutate(lambda items: items.clear())

    def copy(self) -> dict[Any, Any]:
        """A plain (deep) copy of the dict."""
        return copy.deepcopy(dict(self._value()))


class TrackedSet(Tracked, MutableSet[Any]):
    """A set field (or a set inside one), changed in place and saved."""

    __slots__ = ()

    @classmethod
    def _from_iterable(cls, items: Iterable[Any]) -> set[Any]:
        return set(items)

    def __len__(self) -> int:
        return len(self._value())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._value()))

    def __contains__(self, value: object) -> bool:
        return value in self._value()

    def add(self, value: Any) -> None:
        self._mutate(lambda items: items.add(value))

    def discard(self, value: Any) -> None:
        self._mutate(lambda items: items.discard(value))

    def remove(self, value: Any) -> None:
        self._mutate(lambda items: items.remove(value))

    def pop(self) -> Any:
        return self._mutate(lambda items: items.pop())

    def clear(self) -> None:
        self._mutate(lambda items: items.clear())

    def update(self, *others: Iterable[Any]) -> None:
        added = [list(_shown(other)) for other in others]
        self._mutate(lambda items: items.update(*added))

    def difference_update(self, *others: Iterable[Any]) -> None:
        removed = [list(_shown(other)) for other in others]
        self._mutate(lambda items: items.difference_update(*removed))

    def __ior__(self, other: Any) -> TrackedSet:  # type: ignore[misc]
        self.update(other)
        return self

    def __isub__(self, other: Any) -> TrackedSet:  # type: ignore[misc]
        self.difference_update(other)
        return self

    def __iand__(self, other: Any) -> TrackedSet:  # type: ignore[misc]
        kept = set(_shown(other))
        self._mutate(lambda items: items.intersection_update(kept))
        return self

    def __ixor__(self, other: Any) -> TrackedSet:  # type: ignore[misc]
        flipped = set(_shown(other))
        self._mutate(lambda items: items.symmetric_difference_update(flipped))
        return self

    def copy(self) -> set[Any]:
        """A plain copy of the set."""
        return set(self._value())

    def __eq__(self, other: object) -> bool:
        return bool(self._value() == _shown(other))

    def __le__(self, other: Any) -> bool:
        return bool(self._value() <= set(_shown(other)))

    def __lt__(self, other: Any) -> bool:
        return bool(self._value() < set(_shown(other)))

    def __ge__(self, other: Any) -> bool:
        return bool(self._value() >= set(_shown(other)))

    def __gt__(self, other: Any) -> bool:
        return bool(self._value() > set(_shown(other)))

    __hash__ = None  # type: ignore[assignment]


class TrackedObject(Tracked):
    """A nested model, dataclass or object inside a field: attribute changes are
    validated (pydantic) and saved; its own methods run with the view as ``self``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        target = self._value()
        member = getattr(type(target), name, None)
        if isinstance(member, types.FunctionType) and not _library(type(target), name):
            return types.MethodType(member, self)
        if isinstance(member, property):
            return member.__get__(self, type(target)) if member.fget else getattr(target, name)
        value = getattr(target, name)
        return self._child(("attr", name), value)

    def __setattr__(self, name: str, value: Any) -> None:
        value = plain(value)

        def assign(target: Any) -> None:
            validator = getattr(type(target), "__pydantic_validator__", None)
            if validator is not None and name in type(target).__pydantic_fields__:
                validator.validate_assignment(target, name, value)
            else:
                setattr(target, name, value)

        self._mutate(assign)

    def __delattr__(self, name: str) -> None:
        self._mutate(lambda target: delattr(target, name))

    def __dir__(self) -> list[str]:
        return dir(self._value())


def _library(cls: type, name: str) -> bool:
    """True if ``cls``'s attribute ``name`` comes from pydantic itself."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass.__module__.startswith("pydantic")
    return False
