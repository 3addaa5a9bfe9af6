"""A drop-in for appendmuch: change ``from appendmuch import ...`` to
``from everstore.compat.appendmuch import ...``.

Both API generations work: 0.0.x's ``within(s, round=1).score``,
``within.along(s, "round")``, ``within.strict(...)``, ``s.__history__()`` and
``s.__fields__()``, and 0.3.0's ``s.within(...)``, ``s.along(...)``, ``s.history()``,
``s.fields()``, ``View`` and ``VirtualFields``, with appendmuch's reserved names and
errors, on everstore's log. docs/migrating-from-appendmuch.md lists where the
behaviour differs and why.

>>> from everstore.compat.appendmuch import Memory, Store, within
>>> player = Store(Memory()).storage("game", "player1")
>>> player.round = 1; player.score = 10; player.round = 2; player.score = 25
>>> within(player, round=1).score, player.within(round=2).score
(10, 25)
"""

from __future__ import annotations

from everstore import Value

from .codec import Codec
from .drivers import DBDriver, DriverError, Memory, PostgreSQL, SQLDriver, Sqlite3
from .storage import Storage, Store, VirtualFields, dbns2tuple, tuple2dbns
from .views import View, within

__all__ = [
    "Codec",
    "DBDriver",
    "DriverError",
    "Memory",
    "PostgreSQL",
    "SQLDriver",
    "Sqlite3",
    "Storage",
    "Store",
    "Value",
    "View",
    "VirtualFields",
    "dbns2tuple",
    "tuple2dbns",
    "within",
]
