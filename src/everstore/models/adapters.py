"""Adapters: what the models layer needs to know about a class of objects.

One adapter per kind of class: pydantic models (:mod:`.pydantic_adapter`, imported
only for pydantic classes), dataclasses and plain classes. An adapter names an
object's fields, builds an object from stored values, assigns a field (validated,
where the class validates) and puts a field back without validation (to undo an
assignment that could not be stored).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ..engine import check_field
from ..errors import InvalidNameError
from .relations import Ref
from .values import ABSENT, build_dataclass, from_storable, type_hints

__all__ = ["EXPIRES", "RESERVED", "Adapter", "DataclassAdapter", "PlainAdapter"]

#: the field holding an object's expiry time (seconds since the epoch, the store's clock)
EXPIRES = "_expires_at"
#: field names the layer keeps for itself
RESERVED = frozenset({EXPIRES})

#: what a class attribute is to a proxy (see :meth:`Adapter.attribute_kind`)
FIELD, METHOD, PROPERTY, OTHER = "field", "method", "property", "other"


class Adapter:
    """The common part: attribute kinds, and class checks."""

    #: True for classes whose assignments are validated (pydantic)
    validates = False

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self._kinds: dict[str, str] = {}
        self.hints: dict[str, Any] = type_hints(cls)

    # -- fields ---------------------------------------------------------------------

    def field_names(self, obj: Any) -> list[str]:
        """The fields of ``obj`` that are stored."""
        raise NotImplementedError

    def is_field(self, name: str) -> bool:
        """True if ``name`` is (or, for plain classes, may become) a stored field."""
        raise NotImplementedError

    def lossless(self, name: str) -> bool:
        """True if nothing would rebuild a converted value of field ``name`` (no
        annotation): then only values the codec stores as they are are accepted."""
        return name not in self.hints

    def hint(self, name: str) -> Any:
        return self.hints.get(name, Any)

    def ref_fields(self) -> dict[str, type | None]:
        """Fields annotated ``Ref[T]`` (or ``Ref``), with their target classes."""
        from .relations import ref_target

        found: dict[str, type | None] = {}
        for name, hint in self.hints.items():
            for candidate in _union_members(hint):
                if candidate is Ref or getattr(candidate, "__origin__", None) is Ref:
                    found[name] = ref_target(candidate)
        return found

    # -- objects --------------------------------------------------------------------

    def create(self, fields: dict[str, Any]) -> Any:
        """A new object from the user's field values (``store.add(**fields)``)."""
        return self.cls(**fields)

    def build(self, values: dict[str, Any]) -> Any:
        """An object from stored field values."""
        raise NotImplementedError

    def raw(self, obj: Any, name: str) -> Any:
        """Field ``name`` of ``obj`` as it is held (ABSENT if it has none)."""
        return obj.__dict__.get(name, ABSENT)

    def assign(self, obj: Any, name: str, value: Any) -> None:
        """Set field ``name``; raise (leaving ``obj`` unchanged) if the class refuses."""
        raise NotImplementedError

    def load_field(self, obj: Any, name: str, stored: Any) -> None:
        """Set field ``name`` from its stored value (ABSENT: remove it)."""
        if stored is ABSENT:
            self.restore(obj, name, ABSENT)
        else:
            self.restore(obj, name, from_storable(stored, self.hint(name)))

    def restore(self, obj: Any, name: str, held: Any) -> None:
        """Put back a value :meth:`raw` returned, without validation."""
        if held is ABSENT:
            obj.__dict__.pop(name, None)
        else:
            obj.__dict__[name] = held

    def copy(self, obj: Any) -> Any:
        """A deep copy of ``obj``: the store's own object, or a transaction's."""
        return copy.deepcopy(obj)

    def check_fields(self) -> None:
        """:raises InvalidNameError: if a declared field cannot be stored under its name"""
        for name in self.declared_fields():
            if name in RESERVED:
                raise InvalidNameError(
                    f"{self.cls.__qualname__}.{name}: {name!r} is reserved by everstore.models"
                )
            check_field(name)

    def declared_fields(self) -> list[str]:
        return []

    # -- attributes as a proxy sees them ----------------------------------------------

    def attribute_kind(self, name: str) -> str:
        """FIELD, METHOD (a function of the user's class: runs with the proxy as
        ``self``), PROPERTY (a property of the user's class: evaluated with the proxy
        as ``self``) or OTHER (read from the object itself)."""
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._attribute_kind(name)
            self._kinds[name] = kind
        return kind

    def _attribute_kind(self, name: str) -> str:
        if name in self.declared_fields():
            return FIELD
        for klass in self.cls.__mro__:
            if name in vars(klass):
                member = vars(klass)[name]
                if klass is object or self.is_library_class(klass) or name.startswith("__"):
                    return OTHER
                if isinstance(member, property):
                    return PROPERTY
                if _is_function(member):
                    return METHOD
                if isinstance(member, staticmethod | classmethod) or hasattr(member, "__get__"):
                    return OTHER
                # a plain value on the class: the default of a field not yet set
                return FIELD if self.is_field(name) else OTHER
        return FIELD if self.is_field(name) else OTHER

    def member(self, name: str) -> Any:
        """The class attribute ``name`` (a method's function, a property)."""
        for klass in self.cls.__mro__:
            if name in vars(klass):
                return vars(klass)[name]
        raise AttributeError(name)

    def is_library_class(self, klass: type) -> bool:
        """True for base classes whose methods act on the object itself."""
        return False


def _is_function(member: Any) -> bool:
    return type(member).__name__ in ("function", "cython_function_or_method")


def _union_members(hint: Any) -> list[Any]:
    from typing import Union, get_args, get_origin

    origin = get_origin(hint)
    if origin is Union or type(hint).__name__ == "UnionType":
        return list(get_args(hint))
    return [hint]


class DataclassAdapter(Adapter):
    """Dataclasses: the declared fields, rebuilt from their annotations; assignments
    are not validated (dataclasses do not validate)."""

    def __init__(self, cls: type) -> None:
        super().__init__(cls)
        self.fields = [f.name for f in dataclasses.fields(cls)]
        self._field_set = frozenset(self.fields)

    def declared_fields(self) -> list[str]:
        return list(self.fields)

    def field_names(self, obj: Any) -> list[str]:
        return list(self.fields)

    def is_field(self, name: str) -> bool:
        return name in self._field_set

    def build(self, values: dict[str, Any]) -> Any:
        return build_dataclass(self.cls, values)

    def raw(self, obj: Any, name: str) -> Any:
        return getattr(obj, name, ABSENT)

    def assign(self, obj: Any, name: str, value: Any) -> None:
        if name not in self._field_set:
            raise AttributeError(
                f"{self.cls.__qualname__} has no field {name!r}: a dataclass stores its "
                f"declared fields only"
            )
        setattr(obj, name, _coerce_ref(value, self.hint(name)))

    def restore(self, obj: Any, name: str, held: Any) -> None:
        if held is ABSENT:
            obj.__dict__.pop(name, None)
        else:
            object.__setattr__(obj, name, held)  # frozen dataclasses too


class PlainAdapter(Adapter):
    """Plain classes: the public attributes of each object (``vars(obj)`` without
    names starting with ``_``), rebuilt without calling ``__init__``; annotations, where
    the class has them, rebuild Enums, nested objects and references."""

    def __init__(self, cls: type) -> None:
        if not hasattr(cls, "__dict__") or "__slots__" in vars(cls):
            raise TypeError(
                f"{cls.__qualname__} keeps its attributes in __slots__: a plain class "
                f"needs a __dict__ (or use a dataclass or a pydantic model)"
            )
        super().__init__(cls)

    def declared_fields(self) -> list[str]:
        return [name for name in self.hints if not name.startswith("_")]

    def field_names(self, obj: Any) -> list[str]:
        return [name for name in vars(obj) if not name.startswith("_")]

    def is_field(self, name: str) -> bool:
        return not name.startswith("_")

    def build(self, values: dict[str, Any]) -> Any:
        cls: Any = self.cls
        obj = cls.__new__(cls)
        for name, stored in values.items():
            obj.__dict__[name] = from_storable(stored, self.hint(name))
        return obj

    def assign(self, obj: Any, name: str, value: Any) -> None:
        setattr(obj, name, _coerce_ref(value, self.hint(name)))


def _coerce_ref(value: Any, hint: Any) -> Any:
    """A proxy or key assigned to a ``Ref`` field becomes a Ref."""
    if value is None or isinstance(value, Ref):
        return value
    for candidate in _union_members(hint):
        if candidate is Ref or getattr(candidate, "__origin__", None) is Ref:
            from .relations import ref_target

            return Ref(value, ref_target(candidate))
    return value
