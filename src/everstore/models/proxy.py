"""ModelProxy: the handle a ModelStore gives for each stored object.

A proxy reads and writes the object the store keeps (one per object, shared by all
its proxies, kept in step with the log). Reading a field is a dictionary look-up after
a change probe; assigning one validates it and saves it; the model's own methods and
properties run with the proxy as ``self``, so ``self.age += 1`` inside a method is
saved too; a list, dict, set or nested object comes back as a tracked view.

Every name of the model wins over the proxy's own: a model field or method called
``commit``, ``undo``, ``redo`` or ``is_dirty`` hides the proxy's (the store's methods
of those names do the same). The proxy's other names are dunders: ``__key__``,
``__changes__``, ``__model__``, ``__store__``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..engine import frame_context
from .adapters import FIELD, METHOD, PROPERTY
from .lifecycle import commit
from .tracked import PLAIN_TYPES, plain, wrap
from .undo import undo

if TYPE_CHECKING:
    from .changes import ModelChange
    from .objects import Objects
    from .state import ObjectState

__all__ = ["ModelProxy"]

T = TypeVar("T")

#: the proxy's own non-dunder names, used when the model has none of that name
_API = frozenset({"undo", "redo", "commit", "is_dirty"})


class ModelProxy(Generic[T]):
    """A stored object (see the module's documentation).

    >>> from pydantic import BaseModel
    >>> from everstore.models import ModelStore
    >>> class Person(BaseModel):
    ...     name: str
    ...     age: int = 0
    >>> people = ModelStore(Person, key_selector=lambda p: p.name)
    >>> ann = people.add(name="ann", age=30)
    >>> ann.age = 31
    >>> ann.undo()
    >>> ann.age, ann.__key__
    (30, 'ann')
    """

    __slots__ = ("__es_objects__", "__es_state__")

    def __init__(self, objects: Objects, state: ObjectState) -> None:
        object.__setattr__(self, "__es_objects__", objects)
        object.__setattr__(self, "__es_state__", state)

    def __getattribute__(self, name: str) -> Any:
        if name[:2] == "__" or name in _API:
            if name in _API and _model_has(self, name):
                return _model_attribute(self, name)  # the model's name wins
            try:
                return object.__getattribute__(self, name)
            except AttributeError:
                return getattr(_objects(self).model_of(_state(self)), name)
        return _model_attribute(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        objects = _objects(self)
        kind = objects.adapter.attribute_kind(name)
        if kind == FIELD:
            if name not in objects.ref_fields:
                value = plain(value)
            objects.assign(_state(self), name, value, frame_context(sys._getframe(1)))
        elif kind == PROPERTY:
            setter = objects.adapter.member(name).fset
            if setter is None:
                raise AttributeError(
                    f"property {name!r} of {objects.adapter.cls.__name__} has no setter"
                )
            objects.call(_state(self), setter, self, (value,), {}, frame_context(sys._getframe(1)))
        elif kind == METHOD:
            raise AttributeError(f"{name!r} is a method of {objects.adapter.cls.__name__}")
        elif not name.startswith("_") and not objects.adapter.validates:
            # a public name a dataclass does not declare: refused (never kept unsaved)
            objects.assign(_state(self), name, value, frame_context(sys._getframe(1)))
        else:
            setattr(objects.model_of(_state(self)), name, value)

    def __delattr__(self, name: str) -> None:
        objects = _objects(self)
        if objects.adapter.attribute_kind(name) != FIELD:
            raise AttributeError(name)
        if objects.adapter.validates or name in objects.adapter.declared_fields():
            raise TypeError(
                f"field {name!r} of {objects.adapter.cls.__name__} cannot be deleted; "
                f"assign it a value instead (or delete the object)"
            )
        objects.unset(_state(self), name, frame_context(sys._getframe(1)))

    # -- the proxy's API ----------------------------------------------------------------

    def undo(self) -> None:
        """Undo this object's latest change, as new facts (the undone value stays in
        the history); undoing its creation deletes it.

        :raises NothingToUndoError: if there is nothing to undo
        :raises ConflictError: if the object changed elsewhere since that change
        """
        undo(_objects(self), _state(self), ctx=frame_context(sys._getframe(1)))

    def redo(self) -> None:
        """Redo the latest undone change (a new change empties the redo stack).

        :raises NothingToUndoError: if there is nothing to redo
        """
        undo(_objects(self), _state(self), redo=True, ctx=frame_context(sys._getframe(1)))

    def commit(self) -> None:
        """Save this object's unsaved changes (with ``save_on_change`` off)."""
        commit(_objects(self), _state(self), frame_context(sys._getframe(1)))

    @property
    def is_dirty(self) -> bool:
        """True while this object has changes that are not saved."""
        return _objects(self).is_dirty(_state(self))

    @property
    def __key__(self) -> Any:
        """The key the object is stored under (fixed when it was added)."""
        return _state(self).key

    @property
    def __changes__(self) -> list[ModelChange]:
        """The object's change log, newest first (see ``ModelStore.changes``)."""
        from .changes import changes_of

        objects = _objects(self)
        return changes_of(objects.store, _state(self).ns, _state(self).key)

    @property
    def __model__(self) -> T:
        """The object itself, as the calling thread sees it (changes made to it
        directly are not tracked: ``commit()`` saves them)."""
        model: T = _objects(self).model_of(_state(self))
        return model

    @property
    def __store__(self) -> Any:
        """The ModelStore this object belongs to."""
        return _objects(self).owner

    @staticmethod
    def __proxy_key__(proxy: ModelProxy[Any]) -> Any:
        return _state(proxy).key

    @staticmethod
    def __proxy_model__(proxy: ModelProxy[Any]) -> Any:
        return _objects(proxy).model_of(_state(proxy))

    # -- Python protocols --------------------------------------------------------------

    def __repr__(self) -> str:
        return repr(self.__model__)

    def __str__(self) -> str:
        return str(self.__model__)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ModelProxy):
            if _state(other) is _state(self):
                return True
            other = other.__model__
        return bool(self.__model__ == other)

    def __hash__(self) -> int:
        return hash((id(_objects(self)), _state(self).part))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.__model__)  # type: ignore[call-overload,no-any-return]

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.__model__)) | _API | {"__key__", "__changes__", "__model__"})

    def __copy__(self) -> T:
        return copy.deepcopy(self.__model__)

    def __deepcopy__(self, memo: dict[int, Any]) -> T:
        return copy.deepcopy(self.__model__, memo)

    def __reduce__(self) -> Any:
        raise TypeError(
            "a proxy cannot be pickled: pickle proxy.__model__ (the object), or keep its "
            "key and look it up again"
        )


def _model_has(proxy: ModelProxy[Any], name: str) -> bool:
    """True if the model itself has an attribute ``name`` (a field it declares or
    holds, a method, a property)."""
    objects = _objects(proxy)
    kind = objects.adapter.attribute_kind(name)
    if kind in (METHOD, PROPERTY) or name in objects.adapter.declared_fields():
        return True
    if kind != FIELD:
        return False
    model = objects.model_of(_state(proxy))
    return model is not None and name in getattr(model, "__dict__", {})


def _model_attribute(proxy: ModelProxy[Any], name: str) -> Any:
    objects = _objects(proxy)
    state = _state(proxy)
    kind = objects.adapter.attribute_kind(name)
    if kind == FIELD:
        value = objects.read_field(state, name)
        if type(value) in PLAIN_TYPES:
            return value
        return wrap(objects, state, (name,), value)
    if kind == METHOD:
        function = objects.adapter.member(name)
        return _bound(objects, state, function, proxy)
    if kind == PROPERTY:
        getter = objects.adapter.member(name).fget
        if getter is None:
            raise AttributeError(f"property {name!r} has no getter")
        return getter(proxy)
    return getattr(objects.model_of(state), name)


def _bound(
    objects: Objects, state: ObjectState, function: Callable[..., Any], proxy: ModelProxy[Any]
) -> Callable[..., Any]:
    def method(*args: Any, **kwargs: Any) -> Any:
        return objects.call(state, function, proxy, args, kwargs, frame_context(sys._getframe(1)))

    method.__name__ = getattr(function, "__name__", "method")
    method.__doc__ = getattr(function, "__doc__", None)
    return method


_objects: Callable[[ModelProxy[Any]], Objects] = vars(ModelProxy)["__es_objects__"].__get__
_state: Callable[[ModelProxy[Any]], ObjectState] = vars(ModelProxy)["__es_state__"].__get__
