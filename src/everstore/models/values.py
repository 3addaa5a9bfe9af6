"""Field values <-> the values the log stores.

A model field is stored as one value of the core codec. Values the codec stores as
they are (numbers, text, bytes, Decimal, UUID, dates and times with their tzinfo,
tuples, lists, dicts, sets, ...) and types registered with the store's codec are kept
as they are, so that the log, indexes and range queries see them unchanged. The rest
is stored as plain data that the field's annotation turns back into the object:

- an ``Enum`` member as its ``value``;
- a nested pydantic model or dataclass as a dict of its fields;
- a :class:`~everstore.models.Ref` as its key.

:func:`from_storable` rebuilds a value from its annotation (for dataclasses and
annotated plain classes; pydantic models validate the plain data themselves). Where
there is no annotation to rebuild from, such a value is refused rather than stored
in a form that would come back as something else.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from ..codec import Codec
from ..errors import UnsupportedValueError
from .relations import Ref, ref_target

__all__ = [
    "ABSENT",
    "SCALAR_TYPES",
    "Converter",
    "from_storable",
    "build_dataclass",
    "copy_storable",
    "jsonable",
    "same_value",
    "type_hints",
]

#: "no value": distinct from every value, None included
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()

#: types the log stores as they are: such a value is its own stored value
SCALAR_TYPES: frozenset[type] = frozenset(
    {
        int,
        str,
        float,
        bool,
        type(None),
        bytes,
        complex,
        decimal.Decimal,
        uuid.UUID,
        datetime.datetime,
        datetime.date,
        datetime.time,
    }
)
_SCALARS = SCALAR_TYPES


class Converter:
    """:func:`to_storable` for one codec: remembers which classes the codec was
    taught (``codec.register``), which are then stored as they are."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._registered: dict[type, bool] = {}

    def registered(self, value: Any) -> bool:
        """True if the codec stores ``value``'s class itself (a registered type)."""
        kind = type(value)
        known = self._registered.get(kind)
        if known is None:
            try:
                self.codec.encode(value)
            except UnsupportedValueError:
                known = False
            else:
                known = True
            self._registered[kind] = known
        return known

    def to_storable(self, value: Any, lossless: bool = True) -> Any:
        """The value to store for ``value``.

        :param lossless: False when the field's annotation can rebuild what is
            converted (an Enum from its value, a nested model from a dict)
        :raises UnsupportedValueError: for a value that would come back as something
            else (an Enum or a nested object where there is no annotation)
        """
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is list:
            return [self.to_storable(item, lossless) for item in value]
        if kind is dict:
            return {
                self.to_storable(k, lossless): self.to_storable(v, lossless)
                for k, v in value.items()
            }
        if kind is tuple:
            return tuple(self.to_storable(item, lossless) for item in value)
        if kind is set:
            return {self.to_storable(item, lossless) for item in value}
        if kind is frozenset:
            return frozenset(self.to_storable(item, lossless) for item in value)
        unwrap = getattr(kind, "__tracked_value__", None)
        if unwrap is not None:  # a tracked view of a container: what it shows
            return self.to_storable(unwrap(value), lossless)
        if self.registered(value):
            return value
        if isinstance(value, Ref):
            return value.key
        converted = _plain_data(value)
        if converted is ABSENT:
            return value  # the codec will refuse it, naming the field
        if lossless:
            raise UnsupportedValueError(
                f"a {kind.__name__} would be stored as {type(converted).__name__} and "
                f"read back as one: annotate the field with its type (dataclasses and "
                f"annotated classes are rebuilt from it) or register the type with the "
                f"store's codec"
            )
        return self.to_storable(converted, lossless)


def _plain_data(value: Any) -> Any:
    """An Enum's value, a model's or dataclass's fields as a dict; ABSENT otherwise."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    fields = getattr(type(value), "__pydantic_fields__", None)
    if fields is not None:
        data = {name: getattr(value, name) for name in fields}
        extra = getattr(value, "__pydantic_extra__", None)
        if extra:
            data.update(extra)
        return data
    proxy_model = getattr(type(value), "__proxy_model__", None)
    if proxy_model is not None:  # a proxy stored inside another object: its model
        return _plain_data(proxy_model(value))
    return ABSENT


def same_value(a: Any, b: Any) -> bool:
    """True if two stored values are the same value: equal and of the same types
    (``1``, ``1.0`` and ``True`` are equal in Python, but not the same value)."""
    if type(a) is not type(b):
        return False
    if type(a) in _SCALARS:
        return bool(a == b) or (a != a and b != b)  # nan is nan
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same_value(v, b[k]) for k, v in a.items())
    try:
        return bool(a == b)
    except Exception:
        return False


# -- rebuilding from annotations (dataclasses, annotated plain classes) --------------


def from_storable(value: Any, hint: Any) -> Any:
    """Rebuild a field's value from its stored form, guided by its annotation.

    Enums, dataclasses, pydantic models and Refs are rebuilt; containers are rebuilt
    item by item; anything else is returned as stored.
    """
    if hint is Any or hint is None or value is None:
        return value
    origin = get_origin(hint)
    if origin is typing.Annotated:
        return from_storable(value, get_args(hint)[0])
    if origin is Union or origin is types.UnionType:
        for option in get_args(hint):
            if option is type(None):
                continue
            rebuilt = _try_rebuild(value, option)
            if rebuilt is not ABSENT:
                return rebuilt
        return value
    if origin is Ref or hint is Ref:
        return Ref(value, ref_target(hint))
    if origin in (list, set, frozenset) and isinstance(value, list | set | frozenset | tuple):
        (item_hint,) = get_args(hint) or (Any,)
        return origin(from_storable(item, item_hint) for item in value)
    if origin is tuple and isinstance(value, list | tuple):
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_storable(item, args[0]) for item in value)
        if len(args) == len(value):
            return tuple(from_storable(item, h) for item, h in zip(value, args, strict=True))
        return tuple(value)
    if origin in (dict, Mapping) and isinstance(value, dict):
        key_hint, value_hint = get_args(hint) or (Any, Any)
        return {from_storable(k, key_hint): from_storable(v, value_hint) for k, v in value.items()}
    if isinstance(hint, type):
        rebuilt = _try_rebuild(value, hint)
        return value if rebuilt is ABSENT else rebuilt
    return value


def _try_rebuild(value: Any, hint: Any) -> Any:
    """``value`` rebuilt as ``hint`` if it is stored data of that type, else ABSENT."""
    if not isinstance(hint, type):
        rebuilt = from_storable(value, hint)
        return rebuilt
    if isinstance(value, hint) and not isinstance(value, dict):
        return value
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            return ABSENT
    if isinstance(value, dict):
        if dataclasses.is_dataclass(hint):
            return build_dataclass(hint, value)
        validate = getattr(hint, "model_validate", None)
        if validate is not None and hasattr(hint, "__pydantic_fields__"):
            return validate(value)
        if hint is dict:
            return value
        return ABSENT
    if hint is Ref:
        return Ref(value)
    return ABSENT


def build_dataclass(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of dataclass ``cls`` from stored field values (missing ones take
    their defaults; fields with ``init=False`` are set after construction)."""
    hints = type_hints(cls)
    arguments: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = from_storable(values[field.name], hints.get(field.name, Any))
        if field.init:
            arguments[field.name] = value
        else:
            later[field.name] = value
    obj = cls(**arguments)
    for name, value in later.items():
        object.__setattr__(obj, name, value)
    return obj


_hints_cache: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """``cls``'s resolved annotations (empty when there are none or they cannot be
    resolved)."""
    hints = _hints_cache.get(cls)
    if hints is None:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:
            hints = dict(getattr(cls, "__annotations__", {}))
        class_var: Any = typing.ClassVar
        hints = {k: v for k, v in hints.items() if get_origin(v) is not class_var}
        _hints_cache[cls] = hints
    return hints


# -- the JSON view (export) ------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON data, for the export: dates and times in ISO 8601, Decimal,
    UUID and complex as text, bytes as hex, sets as sorted lists where they sort,
    dict keys as text."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | complex):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {_json_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [jsonable(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, Ref):
        return jsonable(value.key)
    data = _plain_data(value)
    if data is not ABSENT:
        return jsonable(data)
    return str(value)


def _json_key(key: Any) -> str:
    converted = jsonable(key)
    return converted if isinstance(converted, str) else str(converted)


def copy_storable(value: Any) -> Any:
    """A private copy of a stored value (containers copied all the way down)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [copy_storable(item) for item in value]
    if kind is dict:
        return {k: copy_storable(v) for k, v in value.items()}
    if kind is set:
        return set(value)
    if kind is tuple:
        return tuple(copy_storable(item) for item in value)
    return value
