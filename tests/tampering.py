"""Raw SQL on an SQLite store file with its append-only triggers dropped: what the
integrity tests do to a store behind everstore's back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def tamper(path: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``statement`` on the store file at ``path`` after dropping every trigger."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        for (name,) in triggers.fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(statement, params)
    finally:
        conn.close()
