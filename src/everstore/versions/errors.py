"""The versions layer's errors, under :class:`everstore.errors.EverstoreError`."""

from __future__ import annotations

from ..errors import DecodeError, EverstoreError

__all__ = [
    "MissingEntryError",
    "MissingRecordError",
    "MissingVersionError",
    "PatternError",
    "UnknownTenantError",
    "UnpicklingRefusedError",
    "VersionsError",
]


class VersionsError(EverstoreError):
    """Base class of the versions layer's own errors."""


class _KeyErrorText(KeyError):
    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; these are sentences.
        return str(self.args[0]) if self.args else ""


class UnknownTenantError(VersionsError, _KeyErrorText):
    """A write to a tenant that :meth:`DbEngine.init` never created."""


class MissingEntryError(VersionsError, _KeyErrorText):
    """The entry has no version, or its latest version deletes it."""


class MissingVersionError(VersionsError, _KeyErrorText):
    """No version of this entry has the digest asked for (another entry's or another
    tenant's digest included: a tenant only reads its own versions)."""


class MissingRecordError(VersionsError, _KeyErrorText):
    """A record entry has no record under the key asked for."""


class PatternError(VersionsError, TypeError):
    """A snapshot operation on a record entry, or a record operation on a snapshot
    entry: the two patterns never mix on one entry (delete the entry first)."""


class UnpicklingRefusedError(VersionsError, DecodeError):
    """The version holds a pickled field and the engine was opened with
    ``unpickle=False``: loading it could run code."""
