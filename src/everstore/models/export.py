"""The JSON view of stored objects (Slowstore's file format), as an export.

``store.export_json(directory)`` writes one ``<key>.json`` per object: its fields,
``"__key__"`` and ``"__changes__"`` (newest first), as Slowstore kept them. It is a
view of the log written on demand, never read back: the log stays the one record.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .changes import changes_of
from .values import jsonable

if TYPE_CHECKING:
    from .objects import Objects
    from .state import ObjectState

__all__ = ["export_json", "object_json"]

#: longest file name written as it is (most file systems allow 255 bytes)
_LONGEST_NAME = 200


def object_json(objects: Objects, state: ObjectState) -> dict[str, Any]:
    """One object's JSON view: fields, ``__key__``, ``__changes__``."""
    adapter = objects.adapter
    view = objects.peek(state)
    objects.check_alive(state, view)
    model = view.model
    document: dict[str, Any] = {}
    for field in adapter.field_names(model):
        document[field] = jsonable(objects.stored(field, getattr(model, field)))
    document["__key__"] = jsonable(state.key)
    document["__changes__"] = [
        change.as_json() for change in changes_of(objects.store, state.ns, state.key)
    ]
    return document


def file_name(part: str) -> str:
    """A file name for an object's namespace part: the part itself (already free of
    ``/`` and control characters) unless it is too long or starts with a dot."""
    name = part if not part.startswith(".") else "%2E" + part[1:]
    if len(name.encode()) > _LONGEST_NAME:
        digest = hashlib.sha256(part.encode()).hexdigest()[:16]
        name = name.encode()[:_LONGEST_NAME].decode(errors="ignore") + "~" + digest
    return name + ".json"


def export_json(objects: Objects, directory: str | os.PathLike[str]) -> list[Path]:
    """Write every existing object as ``directory/<key>.json``; return the paths.

    Each file is written to a temporary name and renamed, so a reader never sees
    half a file.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for state in objects.live_states():
        document = object_json(objects, state)
        path = target / file_name(state.part)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False), "utf-8")
        os.replace(temporary, path)
        written.append(path)
    return written
