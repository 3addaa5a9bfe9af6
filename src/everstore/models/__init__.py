"""everstore.models: typed objects on the log.

A :class:`ModelStore` keeps objects of one class (a pydantic 2 model, a dataclass or a
plain class) as namespaces of an everstore log, one field per model field, one fact
per change. It keeps Slowstore's API (``add``, ``set``, proxies that save on
assignment, ``commit``, ``undo``/``redo``, ``filter``/``first``, ``__changes__``) and
adds validation, nested change tracking, transactions, indexes, relationships,
expiry and time travel. docs/models.md is the guide.

pydantic is imported only when a pydantic model is stored.
"""

from __future__ import annotations

from .changes import ADD, DELETE, UPDATE, Diff, ModelChange
from .errors import DuplicateKeyError, GoneError, ModelError, NothingToUndoError
from .keys import Key, decode_key, encode_key
from .proxy import ModelProxy
from .relations import Ref
from .store import DATABASE_FILE, ModelStore
from .tracked import TrackedDict, TrackedList, TrackedObject, TrackedSet
from .view import FrozenProxy, ModelView

__all__ = [
    "ADD",
    "DATABASE_FILE",
    "DELETE",
    "UPDATE",
    "Diff",
    "DuplicateKeyError",
    "FrozenProxy",
    "GoneError",
    "Key",
    "ModelChange",
    "ModelError",
    "ModelProxy",
    "ModelStore",
    "ModelView",
    "NothingToUndoError",
    "Ref",
    "TrackedDict",
    "TrackedList",
    "TrackedObject",
    "TrackedSet",
    "decode_key",
    "encode_key",
]
