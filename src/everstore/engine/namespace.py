"""Namespace: the cache of one namespace, and the handle layers pass to the engine."""

from __future__ import annotations

from typing import Any

from .fieldlog import FieldLog

__all__ = ["Namespace"]


class Namespace:
    """Everything the engine knows about one namespace: one object per namespace per
    Engine, made by :meth:`Engine.namespace`, so that two handles never disagree.

    Public, read-only for layers: ``parts`` (the namespace as a tuple), ``path``
    (its parts joined by ``/``), ``current`` (the fast read path, valid while the
    reading thread has no transaction open: see :attr:`Engine.open_transactions`),
    :meth:`written_fields` and :meth:`available`. The rest is the engine's.
    """

    __slots__ = ("current", "fields", "loaded_upto", "mutable", "parts", "path")

    def __init__(self, parts: tuple[str, ...], path: str) -> None:
        self.parts = parts
        self.path = path
        #: field -> current immutable value (the fast read path)
        self.current: dict[str, Any] = {}
        #: field -> current mutable value (private; handed out as copies only)
        self.mutable: dict[str, Any] = {}
        self.fields: dict[str, FieldLog] = {}
        self.loaded_upto = 0

    def available(self, field: str) -> bool:
        """True if ``field`` has a committed value (it is written and not deleted), as
        of the engine's last sync. O(1)."""
        return field in self.current or field in self.mutable

    def written_fields(self) -> list[str]:
        """Every field ever written here, deleted ones too, in first-write order, as
        of the engine's last sync. O(f)."""
        return list(self.fields)

    def field_names(self) -> list[str]:
        """Available fields, in the order they were first written. O(f)."""
        return [name for name in self.fields if name in self.current or name in self.mutable]

    def __repr__(self) -> str:
        return f"Namespace{self.parts!r}"
