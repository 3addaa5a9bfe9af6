"""What changed between two versions: records added, removed and changed, or, between
two snapshots, a structural diff of their dicts and lists."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Change", "Diff", "structural_changes"]

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class Change:
    """One difference: where (a record's ``(key,)``, or a path of dict keys and list
    indexes into a snapshot), what kind, and the values on each side (None on the side
    that has none)."""

    path: tuple[Any, ...]
    kind: ChangeKind
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class Diff:
    """The changes from version ``old`` to version ``new`` of one entry.

    For a record entry each change's path is ``(key,)`` and :attr:`added`,
    :attr:`removed` and :attr:`changed` are keyed by the record's key; for snapshots
    they are keyed by the path.
    """

    old: str
    new: str
    records: bool
    changes: list[Change] = field(default_factory=list)

    def _by(self, kind: ChangeKind) -> Iterator[tuple[Any, Change]]:
        for change in self.changes:
            if change.kind == kind:
                yield (change.path[0] if self.records else change.path), change

    @property
    def added(self) -> dict[Any, Any]:
        """Key (or path) -> the new value, for what only ``new`` has."""
        return {where: change.new for where, change in self._by("added")}

    @property
    def removed(self) -> dict[Any, Any]:
        """Key (or path) -> the old value, for what only ``old`` has."""
        return {where: change.old for where, change in self._by("removed")}

    @property
    def changed(self) -> dict[Any, tuple[Any, Any]]:
        """Key (or path) -> ``(old value, new value)``."""
        return {where: (change.old, change.new) for where, change in self._by("changed")}

    def __bool__(self) -> bool:
        return bool(self.changes)


def structural_changes(
    old: Any,
    new: Any,
    path: tuple[Any, ...] = (),
    same: Callable[[Any, Any], bool] = lambda old, new: False,
) -> Iterator[Change]:
    """The changes from ``old`` to ``new``: into dicts key by key, into lists index by
    index (items past the shorter list are added or removed); anything else that
    differs is changed as a whole. Values that are not ``==`` are still no change when
    ``same(old, new)`` (the versions layer compares their stored bytes: nan, objects
    without ``__eq__``).

    >>> [(c.path, c.kind) for c in structural_changes({"a": [1, 2], "b": 1}, {"a": [1, 3, 4]})]
    [(('a', 1), 'changed'), (('a', 2), 'added'), (('b',), 'removed')]
    """
    if type(old) is dict and type(new) is dict:
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                yield Change((*path, key), "removed", old[key], None)
            elif key not in old:
                yield Change((*path, key), "added", None, new[key])
            else:
                yield from structural_changes(old[key], new[key], (*path, key), same)
    elif type(old) is list and type(new) is list:
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                yield Change((*path, i), "removed", old[i], None)
            elif i >= len(old):
                yield Change((*path, i), "added", None, new[i])
            else:
                yield from structural_changes(old[i], new[i], (*path, i), same)
    elif type(old) is not type(new) or (old != new and not same(old, new)):
        yield Change(path, "changed", old, new)
