"""The models layer's errors, under :class:`everstore.errors.EverstoreError`."""

from __future__ import annotations

from ..errors import EverstoreError

__all__ = ["DuplicateKeyError", "GoneError", "ModelError", "NothingToUndoError"]


class ModelError(EverstoreError):
    """Base class of the models layer's own errors."""


class DuplicateKeyError(ModelError, ValueError):
    """``add()`` of an object whose key is already in the store (``set()`` replaces)."""


class GoneError(ModelError, KeyError):
    """The object was deleted or has expired: its fields cannot be read or changed
    (its history stays readable: ``store.changes(key)``, ``store.as_of(...)``)."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; this one is a sentence.
        return str(self.args[0]) if self.args else ""


class NothingToUndoError(ModelError, IndexError):
    """``undo()`` with no change left to undo, or ``redo()`` with none to redo."""
