"""The structures layer's errors, under :class:`everstore.errors.EverstoreError`."""

from __future__ import annotations

from ..errors import EverstoreError

__all__ = ["ArchiveOrderError", "StructureError", "StructureExistsError", "StructureMismatchError"]


class StructureError(EverstoreError):
    """Base class of the structures layer's own errors."""


class StructureMismatchError(StructureError, ValueError):
    """The storage holds another kind of structure, or the same kind with other
    parameters than the ones asked for."""


class StructureExistsError(StructureError, ValueError):
    """An initial value was given for a structure that the storage already holds."""


class ArchiveOrderError(StructureError, ValueError):
    """:meth:`Archive.addLayer` was given a generation not above the archive's last."""
