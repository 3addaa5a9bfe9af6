"""Versioned snapshots and records: MyDbEngine's git-like store on the everstore log.

``from everstore.versions import DbEngine, BaseInlineHandler, BaseRefHandler,
handlers`` is MyDbEngine 0.2.1's API; docs/versions.md is the guide and
docs/migrating-from-mydbengine.md the mapping.
"""

from __future__ import annotations

from .dbengine import DEFAULT_ROOT, DbEngine
from .diffing import Change, Diff
from .errors import (
    MissingEntryError,
    MissingRecordError,
    MissingVersionError,
    PatternError,
    UnknownTenantError,
    UnpicklingRefusedError,
    VersionsError,
)
from .handlers import BaseHandler, BaseInlineHandler, BaseRefHandler, Handlers, handlers
from .repository import CHECKPOINT_EVERY
from .tenant import ANY_PARENT, Tenant, VersionInfo
from .verifying import Problem, VerifyReport

__all__ = [
    "ANY_PARENT",
    "CHECKPOINT_EVERY",
    "DEFAULT_ROOT",
    "BaseHandler",
    "BaseInlineHandler",
    "BaseRefHandler",
    "Change",
    "DbEngine",
    "Diff",
    "Handlers",
    "MissingEntryError",
    "MissingRecordError",
    "MissingVersionError",
    "PatternError",
    "Problem",
    "Tenant",
    "UnknownTenantError",
    "UnpicklingRefusedError",
    "VerifyReport",
    "VersionInfo",
    "VersionsError",
    "handlers",
]
