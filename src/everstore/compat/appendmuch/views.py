"""appendmuch's temporal queries: ``View`` (0.3.0), ``within`` and ``within.along`` (0.0.x).

A View answers with the values a namespace held while conditions held; the answers
come from everstore's ``within`` (binary searches over per-field histories, the
latest period in which every condition held, values written before the period
carried into it). A View is live (each read looks at the log as it is now) and
read-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import everstore
from everstore.errors import MissingFieldError, ReadOnlyError

__all__ = ["View", "field_or_default", "within"]


def field_or_default(obj: Any, name: str, default: Any) -> Any:
    """appendmuch's ``get``: ``obj``'s field ``name``, or ``default`` for a missing
    or deleted field and for dunder names."""
    if name.startswith("__") and name.endswith("__"):
        return default
    try:
        return obj.__getattr__(name)
    except AttributeError:
        return default


class View:
    """A live, read-only view of a Storage's fields as they were while
    ``context_fields`` held (appendmuch 0.3.0's ``View``; ``within(...)`` of 0.0.x).

    With ``strict=True`` only values written during the latest such period count.
    Virtual fields are not seen and no ``with`` is needed: a mutable value is a copy.

    >>> from everstore.compat.appendmuch import Memory, Store
    >>> s = Store(Memory()).storage("game", "p1")
    >>> s.round = 1; s.score = 10; s.round = 2; s.score = 25
    >>> view = View(s, round=1)
    >>> view.score, view.get("bonus", 0)
    (10, 0)
    """

    __slots__ = ("__context_fields__", "__storage__", "__strict__", "__target__")

    __context_fields__: dict[str, Any]
    __storage__: Any
    __strict__: bool
    __target__: Any

    def __init__(self, storage: Any, *, strict: bool = False, **context_fields: Any) -> None:
        """:param storage: a compat ``Storage``.
        :param strict: only values written inside the latest period count.
        :param context_fields: the conditions, ``field=value``; none: the present.
        """
        inner = storage.__everstore__
        target = (
            everstore.within(inner, strict=strict, **context_fields) if context_fields else inner
        )
        self.__set(storage, context_fields, strict, target)

    def __set(self, storage: Any, context: dict[str, Any], strict: bool, target: Any) -> None:
        object.__setattr__(self, "__storage__", storage)
        object.__setattr__(self, "__context_fields__", context)
        object.__setattr__(self, "__strict__", strict)
        object.__setattr__(self, "__target__", target)

    @classmethod
    def _of(cls, storage: Any, context: dict[str, Any], strict: bool, target: Any) -> View:
        view = cls.__new__(cls)
        view.__set(storage, context, strict, target)
        return view

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        target = self.__target__
        try:
            if target is self.__storage__.__everstore__:
                return _current(target, name)
            return getattr(target, name)
        except MissingFieldError:
            raise MissingFieldError(
                f"No value found for {name} within the specified context in namespace "
                f"{self.__storage__.__namespace__}"
            ) from None

    def get(self, name: str, default: Any = None) -> Any:
        """A field's value in this view, or ``default`` if it has none. O(log n).

        :param name: the field.
        :param default: returned when the field had no value then (and for dunders).
        :return: the value, or ``default``.
        """
        return field_or_default(self, name, default)

    def along(self, field: str) -> Iterator[tuple[Any, View]]:
        """``(value, view)`` for each period in which ``field`` kept one value while
        this view's conditions held, oldest first; ``view`` adds ``field=value`` to
        the conditions and sees that period, not a later one with the same value.
        Under conditions, only values written while they held count (a value
        written before and carried in does not), as in appendmuch.

        :param field: the field whose values to walk.
        :return: an iterator; empty if ``field`` was never written.
        """
        storage = self.__storage__
        strict = self.__strict__
        parent = self.__context_fields__
        for value, inner_view in everstore.within.along(self.__target__, field, strict=strict):
            if parent and not _written_inside(inner_view, field, value):
                continue
            yield value, View._of(storage, {**parent, field: value}, strict, inner_view)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ReadOnlyError(f"{type(self).__name__} is a read-only view")

    def __delattr__(self, name: str) -> None:
        raise ReadOnlyError(f"{type(self).__name__} is a read-only view")

    def __repr__(self) -> str:
        conditions = ", ".join(f"{k}={v!r}" for k, v in self.__context_fields__.items())
        strict = ", strict=True" if self.__strict__ else ""
        return f"View({self.__storage__!r}, {conditions}{strict})"


def _written_inside(inner_view: Any, field: str, value: Any) -> bool:
    """True if ``field`` got ``value`` while the view's other conditions held (as
    appendmuch's chained ``along`` requires), not before, carried into the period."""
    try:
        getattr(everstore.within.strict(inner_view, **{field: value}), field)
    except MissingFieldError:
        return False
    return True


def _current(inner: Any, name: str) -> Any:
    """The present value of a field, without the ``with`` guard (a View's rule)."""
    history = inner.__history__().get(name)
    if not history or history[-1].unavailable:
        raise MissingFieldError(name)
    return history[-1].data


class _StrictWithin:
    """``within.strict(storage, **conditions)`` and ``within.strict.along(storage, f)``."""

    def __call__(self, storage: Any, /, **conditions: Any) -> View:
        return within(storage, strict=True, **conditions)

    def along(self, storage: Any, field: str, /) -> Iterator[tuple[Any, View]]:
        return within.along(storage, field, strict=True)


class _Within:
    """appendmuch 0.0.x's ``within``: ``within(s, round=1).score``,
    ``within.along(s, "round")``, ``within.strict(...)``. ``s`` may be a Storage or a
    View (whose conditions are kept).

    >>> from everstore.compat.appendmuch import Memory, Store
    >>> s = Store(Memory()).storage("game", "p1")
    >>> s.round = 1; s.score = 10; s.round = 2; s.score = 25
    >>> within(s, round=1).score
    10
    >>> [(r, v.score) for r, v in within.along(s, "round")]
    [(1, 10), (2, 25)]
    """

    strict = _StrictWithin()

    def __call__(self, storage: Any, /, *, strict: bool = False, **conditions: Any) -> View:
        if isinstance(storage, View):
            merged = {**storage.__context_fields__, **conditions}
            return View(storage.__storage__, strict=strict or storage.__strict__, **merged)
        return View(storage, strict=strict, **conditions)

    def along(
        self, storage: Any, field: str, /, *, strict: bool = False
    ) -> Iterator[tuple[Any, View]]:
        view = storage if isinstance(storage, View) and not strict else self(storage, strict=strict)
        return view.along(field)


within = _Within()
