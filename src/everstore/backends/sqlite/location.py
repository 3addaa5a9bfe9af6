"""Where an SQLite database lives: a private in-memory one, or a file others may share.

A path given to :class:`~everstore.Sqlite3` is a plain file path, ``":memory:"``, an
empty string (a private temporary database) or an SQLite URI (``file:...``). Which one
decides how changes by other connections are noticed, and how the file is opened
read-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode

__all__ = ["Location", "locate"]


@dataclass(frozen=True)
class Location:
    """How to connect to a database, and what it is."""

    #: what ``sqlite3.connect`` is given
    target: str
    #: True if ``target`` is an SQLite URI
    uri: bool
    #: the file holding the database; None for one in memory or a private temporary one
    file: str | None
    #: True for an in-memory database other connections of this process can share
    #: (``mode=memory&cache=shared``): it has no file, yet others may write to it
    shared_memory: bool = False
    #: True if opened with ``immutable=1``: SQLite then assumes nobody changes the file
    immutable: bool = False


def locate(path: str, *, readonly: bool) -> Location:
    """The :class:`Location` of ``path``, opened read-only (``mode=ro``) if asked.

    A read-only database in a directory this process cannot write, with no ``-wal`` or
    ``-shm`` file beside it, cannot be read in WAL mode (SQLite must create the
    ``-shm`` index): it is then opened ``immutable=1``, which needs neither.
    """
    if path.startswith("file:"):
        return _locate_uri(path, readonly)
    if path in ("", ":memory:"):
        return Location(path, uri=False, file=None)
    if not readonly:
        return Location(path, uri=False, file=path)
    query = {"mode": "ro"}
    if _needs_immutable(path):
        query["immutable"] = "1"
    target = f"file:{quote(os.path.abspath(path))}?{urlencode(query)}"
    return Location(target, uri=True, file=path, immutable="immutable" in query)


def _locate_uri(uri: str, readonly: bool) -> Location:
    rest, _, _fragment = uri[len("file:") :].partition("#")
    encoded_path, _, query_text = rest.partition("?")
    query = dict(parse_qsl(query_text, keep_blank_values=True))
    file_path = encoded_path
    if file_path.startswith("//"):  # file://host/path: SQLite accepts "" or localhost
        file_path = "/" + file_path[2:].partition("/")[2]
    file_path = unquote(file_path)
    if query.get("mode") == "memory" or file_path in ("", ":memory:"):
        shared = query.get("mode") == "memory" and query.get("cache") == "shared"
        return Location(uri, uri=True, file=None, shared_memory=shared)
    if readonly:
        query["mode"] = "ro"
        if query.get("immutable") != "1" and _needs_immutable(file_path):
            query["immutable"] = "1"
        uri = f"file:{encoded_path}?{urlencode(query)}"
    return Location(uri, uri=True, file=file_path, immutable=query.get("immutable") == "1")


def _needs_immutable(path: str) -> bool:
    directory = os.path.dirname(os.path.abspath(path))
    return (
        not os.access(directory, os.W_OK)
        and not os.path.exists(path + "-wal")
        and not os.path.exists(path + "-shm")
    )
