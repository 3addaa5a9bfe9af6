"""Backends: one module each, one interface (:class:`Backend`)."""

from .base import Backend
from .memory import Memory
from .sqlite import Sqlite3

__all__ = ["Backend", "Memory", "Sqlite3"]
