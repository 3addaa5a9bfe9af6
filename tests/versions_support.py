"""What the tests of everstore.versions share: engines on a fixed or stepped clock,
the stored form of a version (read back through the store's public blob API), the
size of an SQLite store measured by SQLite itself, and handlers the tests register
(at module level, so that versions naming their classes can be loaded back)."""

from __future__ import annotations

import array
import datetime
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from everstore import Memory, Store
from everstore.versions import BaseInlineHandler, BaseRefHandler, DbEngine, Handlers

#: a time every store of a test can share, and the ``__date__`` it is written as
FIXED_TIME = 1_800_000_000.0
FIXED_DATE = "20270115 08:00:00 +0000"
#: the seed's ``__date__`` format, ``YYYYMMDD HH:MM:SS +0000`` (always UTC)
DATE_FORMAT = re.compile(r"\d{8} \d{2}:\d{2}:\d{2} \+0000")
#: the SQLite file a ``DbEngine(root=...)`` directory holds
STORE_FILE = "everstore.db"


class SteppedClock:
    """A clock the test moves: every read returns ``now``; :meth:`tick` moves it on."""

    def __init__(self, start: float = FIXED_TIME) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 10.0) -> float:
        self.now += seconds
        return self.now


def memory_engine(
    *, clock: Any = None, handlers: Handlers | None = None, unpickle: bool = True
) -> DbEngine:
    """An engine over a fresh in-memory store, with a private handler registry."""
    return DbEngine(
        store=Store(Memory(), clock=clock),
        handlers=handlers if handlers is not None else Handlers(),
        unpickle=unpickle,
    )


def stored_version(engine: DbEngine, digest: str) -> dict[str, Any]:
    """The version ``digest`` as stored: the JSON object the store keeps under it."""
    found = orjson.loads(engine.store.get_blob(digest))
    assert isinstance(found, dict)
    return found


def store_file(engine: DbEngine) -> Path:
    """The SQLite file of an engine opened with ``root=``."""
    assert engine.root is not None
    return engine.root / STORE_FILE


def file_bytes(path: Path) -> int:
    """The bytes an SQLite database uses once its write-ahead log is folded in (its
    pages, less the free ones its schema migrations left for reuse)."""
    raw = sqlite3.connect(path)
    try:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        free = raw.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    finally:
        raw.close()
    return (int(pages) - int(free)) * int(page_size)


def blob_rows(path: Path) -> tuple[int, int]:
    """``(rows, bytes)`` of the blob table of an SQLite store."""
    raw = sqlite3.connect(path)
    try:
        rows, size = raw.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM everstore_blobs"
        ).fetchone()
    finally:
        raw.close()
    return int(rows), int(size)


def subtrees(tree: Any) -> list[dict[str, Any]]:
    """Every JSON object inside ``tree`` (``tree`` too, if it is one)."""
    found: list[dict[str, Any]] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            found.append(node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


# -- handlers the tests register ------------------------------------------------------


class Frame:
    """A tiny table of 64-bit ints: the DataFrame example without pandas."""

    def __init__(self, columns: list[str], index: list[int], rows: list[list[int]]) -> None:
        self.columns = columns
        self.index = index
        self.rows = rows

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


class FrameHandler(BaseRefHandler):
    """The README's DataFrameHandler, over :class:`Frame`: a JSON header, then the
    values as raw machine integers."""

    def is_eligible_for(self, obj: Any) -> bool:
        return isinstance(obj, Frame)

    def tag(self) -> str:
        return "Frame"

    def serialize_to_bytes(self, obj: Any) -> bytes:
        metadata = json.dumps({"columns": obj.columns, "index": obj.index}).encode("utf-8")
        values = array.array("q", [value for row in obj.rows for value in row])
        return len(metadata).to_bytes(4, "big") + metadata + values.tobytes()

    def deserialize_from_bytes(self, data: bytes) -> Any:
        length = int.from_bytes(data[:4], "big")
        metadata = json.loads(data[4 : 4 + length].decode("utf-8"))
        values = array.array("q")
        values.frombytes(data[4 + length :])
        width = len(metadata["columns"])
        rows = [list(values[i : i + width]) for i in range(0, len(values), width)]
        return Frame(metadata["columns"], metadata["index"], rows)


def big_frame(rows: int = 500) -> Frame:
    return Frame(["col1", "col2"], list(range(rows)), [[i, i * i] for i in range(rows)])


class DayHandler(BaseInlineHandler):
    """The README's DateHandler, defined here so a private registry can take it."""

    def is_eligible_for(self, obj: Any) -> bool:
        return isinstance(obj, datetime.date)

    def tag(self) -> str:
        return "Date"

    def serialize(self, obj: Any) -> dict[str, Any]:
        return {"__special__": self.tag(), "year": obj.year, "month": obj.month, "day": obj.day}

    def deserialize(self, data: dict[str, Any]) -> Any:
        return datetime.date(year=data["year"], month=data["month"], day=data["day"])
