"""Queries: ``where(age=30)``, ``where(age__gte=30, name__in=[...])``.

A condition is ``field=value`` (equality) or ``field__op=value`` with ``op`` one of
``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte`` and ``in`` (a collection of values).
Conditions compare stored values (an Enum as its value, a nested model as a dict),
so a query means the same whether an index or a scan answers it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from .adapters import Adapter
from .values import ABSENT


class Objects(Protocol):
    """What parsing a query needs of a model store's objects."""

    adapter: Adapter

    def stored(self, field: str, value: Any) -> Any: ...


__all__ = ["OPERATORS", "Condition", "matches", "parse_conditions"]


def _in(value: Any, wanted: Any) -> bool:
    return any(value == item for item in wanted)


#: operator name -> test(stored value, wanted)
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": _in,
}


class Condition(NamedTuple):
    """One parsed condition: field, operator name and the stored form of the value."""

    field: str
    op: str
    value: Any


def parse_conditions(conditions: dict[str, Any], objects: Objects) -> list[Condition]:
    """``where()``'s keyword arguments as conditions on stored values.

    :raises TypeError: for an unknown operator, a field the model does not have, an
        ``__in`` value that is not a collection, or no condition at all
    """
    if not conditions:
        raise TypeError("where() needs at least one condition, like where(age=30)")
    parsed = []
    for name, wanted in conditions.items():
        known = _names.get(name)
        if known is None or known[2] is not objects.adapter:
            known = _parse_name(name, objects)
        field, op, _ = known
        if op == "in":
            if isinstance(wanted, str | bytes) or not isinstance(wanted, Iterable):
                raise TypeError(f"where({name}=...) needs a collection of values")
            stored: Any = [objects.stored(field, item) for item in wanted]
        else:
            stored = objects.stored(field, wanted)
        parsed.append(Condition(field, op, stored))
    return parsed


#: where() keyword -> (field, operator, adapter it was checked against)
_names: dict[str, tuple[str, str, Any]] = {}


def _parse_name(name: str, objects: Objects) -> tuple[str, str, Any]:
    adapter = objects.adapter
    field, _, op = name.partition("__")
    op = op or "eq"
    if op not in OPERATORS:
        raise TypeError(
            f"where({name}=...): unknown operator {op!r}; use one of {', '.join(sorted(OPERATORS))}"
        )
    if not adapter.is_field(field):
        raise TypeError(f"where({name}=...): {adapter.cls.__name__} has no field {field!r}")
    known = (field, op, adapter)
    if len(_names) < 10_000:
        _names[name] = known
    return known


def matches(values: dict[str, Any], conditions: list[Condition]) -> bool:
    """True if stored ``values`` meet every condition (a missing field or values
    that do not compare meet none)."""
    for field, op, wanted in conditions:
        value = values.get(field, ABSENT)
        if value is ABSENT:
            return False
        try:
            if not OPERATORS[op](value, wanted):
                return False
        except TypeError:
            return False
    return True
