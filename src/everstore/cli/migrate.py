"""``everstore migrate``: bring an SQLite store to this release's schema version."""

from __future__ import annotations

import os
import sys

from ..backends import Sqlite3
from ..backends.base import SCHEMA_VERSION
from ..errors import EverstoreError

__all__ = ["migrate"]


def migrate(path: str, prefix: str) -> int:
    """Bring the SQLite store at ``path`` to this release's schema version.

    :param path: the SQLite file
    :param prefix: the store's table prefix
    :return: 0 when migrated or already current, 2 for no file, 1 for a store that
        cannot be migrated
    """
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        print(f"everstore migrate: no store at {path!r}", file=sys.stderr)
        return 2
    backend = Sqlite3(path, prefix=prefix)
    try:
        backend.open()
    except EverstoreError as exc:
        print(f"everstore migrate: {exc}", file=sys.stderr)
        return 1
    backend.close()
    if backend.migrated_from is None:
        print(f"{path}: already at schema version {SCHEMA_VERSION}")
    else:
        print(f"{path}: migrated from schema version {backend.migrated_from} to {SCHEMA_VERSION}")
    return 0
