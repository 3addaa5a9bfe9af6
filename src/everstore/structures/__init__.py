"""Append-only structures: appendonly's AppendStack, Archive and Accumulator, in
memory or in a store, where concurrent writers never conflict and never lose an item
(docs/structures.md).

>>> from everstore import Store
>>> from everstore.structures import AppendStack, Archive
>>> store = Store()
>>> stack = AppendStack(max_layers=2, max_length=2, storage=store.storage("app", "recent"))
>>> archive = Archive(storage=store.storage("app", "archive"))
>>> for item in range(5):
...     stack.push(item, archive.addLayer)
>>> [item for _, _, item in stack] + [item for _, _, item in archive]
[4, 3, 2, 1, 0]
"""

from __future__ import annotations

from .accumulator import Accumulator
from .archive import Archive
from .errors import ArchiveOrderError, StructureError, StructureExistsError, StructureMismatchError
from .logs import Entry
from .stack import AppendStack, Pruner

__all__ = [
    "Accumulator",
    "AppendStack",
    "Archive",
    "ArchiveOrderError",
    "Entry",
    "Pruner",
    "StructureError",
    "StructureExistsError",
    "StructureMismatchError",
]
