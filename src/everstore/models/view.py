"""ModelView: a whole ModelStore as it was at one moment (``store.as_of(...)``).

A view reads every object from its fields' histories up to the view's seq, with the
same reading API as the store (``get``, ``in``, ``len``, ``all``, ``filter``,
``first``, ``where``, ``keys``, ``changes``); an object that had expired by the
view's time is invisible in it, as it was then. Objects come back as read-only
:class:`FrozenProxy` handles whose references resolve in the target store as of the
same moment.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import ReadOnlyError
from .adapters import FIELD, METHOD, PROPERTY
from .changes import ModelChange, changes_of, values_at
from .keys import Key, check_key, decode_key, encode_key
from .query import Condition, matches, parse_conditions
from .relations import Ref

if TYPE_CHECKING:
    from .objects import Objects

__all__ = ["FrozenProxy", "ModelView"]

T = TypeVar("T")


class ModelView(Generic[T]):
    """A read-only ModelStore at ``seq`` (its time: ``time``)."""

    def __init__(self, objects: Objects, seq: int, time: float) -> None:
        self._objects = objects
        #: the last seq the view includes
        self.seq = seq
        #: the time of the view (expiry is judged at it)
        self.time = time

    # -- single objects ------------------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        """The object with ``key`` as it was then (a :class:`FrozenProxy`), or
        ``default`` if it did not exist (or had expired) then."""
        found = self._load(encode_key(check_key(key)))
        return default if found is None else found

    def __getitem__(self, key: Any) -> FrozenProxy[T]:
        found = self._load(encode_key(check_key(key)))
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, item: object) -> bool:
        try:
            key = self._objects.owner.key_of(item)
        except (TypeError, ValueError):
            return False
        return self._load(encode_key(key)) is not None

    def _load(self, part: str) -> FrozenProxy[T] | None:
        objects = self._objects
        ns = objects.store.namespace((*objects.prefix, part))
        values, expires = values_at(objects.store, ns, self.seq)
        if not values or (expires is not None and expires <= self.time):
            return None
        model = objects.adapter.build(values)
        return FrozenProxy(self, decode_key(part), model, values)

    # -- the collection -------------------------------------------------------------------

    def keys(self) -> list[Key]:
        """The keys of the objects that existed then, in key-encoding order."""
        return [proxy.__key__ for proxy in self.all()]

    def all(self) -> Iterator[FrozenProxy[T]]:
        """Every object that existed then."""
        # Every namespace the log holds now: those with no fact up to the view's seq
        # have no values then, and are left out.
        for part in self._objects.listing():
            found = self._load(part)
            if found is not None:
                yield found

    __iter__ = all

    def __len__(self) -> int:
        return sum(1 for _ in self.all())

    def filter(self, predicate: Callable[[Any], Any]) -> Iterator[FrozenProxy[T]]:
        """The objects (then) for which ``predicate(obj)`` is true."""
        return (proxy for proxy in self.all() if predicate(proxy))

    def first(self, predicate: Callable[[Any], Any] | None = None) -> FrozenProxy[T] | None:
        """The first object (then) for which ``predicate`` is true, or None."""
        for proxy in self.all():
            if predicate is None or predicate(proxy):
                return proxy
        return None

    def where(self, **conditions: Any) -> list[FrozenProxy[T]]:
        """The objects (then) meeting every condition (``age=30``, ``age__gte=30``;
        see ``ModelStore.where``). A past view scans: indexes hold the present."""
        parsed = parse_conditions(conditions, self._objects)
        return [proxy for proxy in self.all() if _matches(proxy, parsed)]

    def changes(self, item: Any) -> list[ModelChange]:
        """An object's changes up to this view's seq, newest first."""
        objects = self._objects
        key = objects.owner.key_of(item)
        state = objects.state(key)
        return changes_of(objects.store, state.ns, state.key, self.seq)

    def __repr__(self) -> str:
        return f"<ModelView of {self._objects.owner!r} at seq {self.seq}>"


def _matches(proxy: FrozenProxy[Any], conditions: list[Condition]) -> bool:
    return matches(object.__getattribute__(proxy, "_values"), conditions)


class FrozenProxy(Generic[T]):
    """A stored object as it was at a view's moment: read-only."""

    __slots__ = ("_key", "_model", "_values", "_view")

    def __init__(self, view: ModelView[T], key: Key, model: T, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_view", view)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        view: ModelView[T] = object.__getattribute__(self, "_view")
        model = object.__getattribute__(self, "_model")
        objects = view._objects
        adapter = objects.adapter
        kind = adapter.attribute_kind(name)
        if kind == METHOD:
            function = adapter.member(name)
            return lambda *args, **kwargs: function(self, *args, **kwargs)
        if kind == PROPERTY:
            return adapter.member(name).fget(self)
        value = getattr(model, name)
        if kind == FIELD and type(value) is Ref and name in objects.ref_fields:
            return objects.owner.ref_in_view(name, value, view.seq)
        return copy.deepcopy(value) if kind == FIELD else value

    def __setattr__(self, name: str, value: Any) -> None:
        raise ReadOnlyError(f"{self!r} is a read-only view of the past")

    def __delattr__(self, name: str) -> None:
        raise ReadOnlyError(f"{self!r} is a read-only view of the past")

    @property
    def __key__(self) -> Key:
        key: Key = object.__getattribute__(self, "_key")
        return key

    @property
    def __model__(self) -> T:
        """A copy of the object as it was."""
        model: T = copy.deepcopy(object.__getattribute__(self, "_model"))
        return model

    @property
    def __changes__(self) -> list[ModelChange]:
        view: ModelView[T] = object.__getattribute__(self, "_view")
        return view.changes(self.__key__)

    def __eq__(self, other: object) -> bool:
        mine = object.__getattribute__(self, "_model")
        if isinstance(other, FrozenProxy):
            other = object.__getattribute__(other, "_model")
        else:
            model_of = getattr(type(other), "__proxy_model__", None)
            if model_of is not None:
                other = model_of(other)
        return bool(mine == other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        view: ModelView[T] = object.__getattribute__(self, "_view")
        model = object.__getattribute__(self, "_model")
        return f"{model!r} (as of seq {view.seq})"

    @staticmethod
    def __proxy_key__(proxy: FrozenProxy[Any]) -> Key:
        key: Key = object.__getattribute__(proxy, "_key")
        return key
