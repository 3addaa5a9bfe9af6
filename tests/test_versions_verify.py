"""everstore.versions: verify() recomputes every digest along an entry's chain.

A healthy entry verifies; then the SQLite file is changed behind everstore's back
(its triggers, which refuse UPDATE and DELETE on the blob table, dropped first) and
verify() must name the version whose bytes, records or blobs no longer match.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from everstore.versions import CHECKPOINT_EVERY, DbEngine, Handlers, VerifyReport
from versions_support import STORE_FILE, memory_engine

MARKED = {"note": "a marker in the text", "n": 1}


def tamper(path: Path, *statements: str) -> int:
    """Run ``statements`` on the SQLite file after dropping the blob table's
    triggers; the number of rows they changed."""
    raw = sqlite3.connect(path)
    try:
        triggers = raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
            ("everstore_blobs",),
        ).fetchall()
        for (name,) in triggers:
            raw.execute(f'DROP TRIGGER "{name}"')
        changed = 0
        for statement in statements:
            changed += raw.execute(statement).rowcount
        raw.commit()
        return changed
    finally:
        raw.close()


def checkpoint(engine: DbEngine) -> str:
    """The digest of the version of "recs" whose write stored its records' nodes."""
    return engine.history("t", "recs")[::-1][CHECKPOINT_EVERY - 1]


def replace_marker() -> str:
    return (
        "UPDATE everstore_blobs "
        "SET data = CAST(replace(CAST(data AS TEXT), 'marker', 'market') AS BLOB) "
        "WHERE instr(CAST(data AS TEXT), 'marker') > 0"
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "db"


def reopened(root: Path) -> DbEngine:
    """A fresh engine on the file (nothing it read before the change is cached)."""
    return DbEngine(root, handlers=Handlers())


def healthy(root: Path) -> Iterator[str]:
    """Entries of every kind in tenant "t"; yields their names."""
    with reopened(root) as engine:
        engine.init("t")
        engine.save("t", "u", "snap", {"v": 0})
        engine.save("t", "u", "snap", MARKED)
        engine.save("t", "u", "snap", {"v": 2, "blob": b"b" * 3000})
        engine.put_many("t", "u", "recs", {i: {"value": i} for i in range(100)})
        engine.put("t", "u", "recs", "marked", "a marker in a record")
        engine.put("t", "u", "recs", "big", b"r" * 2000)
        # enough writes for a checkpoint: the records' nodes stored in a pack (at the
        # version in position CHECKPOINT_EVERY - 1), the marked record among them
        for i in range(CHECKPOINT_EVERY):
            engine.put("t", "u", "recs", f"filler{i}", i)
        engine.save("t", "u", "gone", 1)
        engine.delete_entry("t", "u", "gone")
        engine.save("t", "u", "other", {"unrelated": datetime.date(2020, 1, 1)})
    yield from ("snap", "recs", "gone", "other")


def test_a_healthy_entry_verifies(root: Path) -> None:
    names = list(healthy(root))
    with reopened(root) as engine:
        for name in names:
            report = engine.verify("t", name)
            assert isinstance(report, VerifyReport)
            assert report.ok and bool(report) and report.problems == []
            assert report.versions == len(engine.history("t", name))
        assert engine.verify("t", "recs").nodes > 1
        assert engine.verify("t", "recs").blobs == 1
        assert engine.verify("t", "snap").blobs == 1


def test_the_blob_table_refuses_changes_until_its_triggers_are_dropped(root: Path) -> None:
    list(healthy(root))
    raw = sqlite3.connect(root / STORE_FILE)
    try:
        for statement in (replace_marker(), "DELETE FROM everstore_blobs"):
            with pytest.raises(sqlite3.DatabaseError):
                raw.execute(statement)
    finally:
        raw.close()
    with reopened(root) as engine:
        assert engine.verify("t", "snap").ok


def test_an_entry_with_no_version_verifies_empty() -> None:
    engine = memory_engine()
    engine.init("t")
    report = engine.verify("t", "nothing")
    assert report.ok and report.versions == 0


def test_a_checkpoint_that_removes_every_record() -> None:
    # the write that makes a checkpoint may leave the entry with no records: its pack
    # then holds its version only
    engine = memory_engine()
    engine.init("t")
    for i in range(CHECKPOINT_EVERY - 1):
        engine.put("t", "u", "r", "k", i)
    assert engine.remove("t", "u", "r", "k") is True
    assert engine.count("t", "r") == 0 and engine.get("t", "r") == []
    assert engine.put("t", "u", "r", "k", "again") is True
    assert engine.items("t", "r") == {"k": "again"}
    history = engine.history("t", "r")
    assert engine.count("t", "r", history[1]) == 0
    assert engine.get("t", "r", "k", history[2]) == CHECKPOINT_EVERY - 2
    report = engine.verify("t", "r")
    assert report.ok and report.versions == CHECKPOINT_EVERY + 1


def test_verify_on_every_kind_of_write() -> None:
    engine = memory_engine()
    engine.init("t")
    for i in range(30):
        engine.put("t", f"user{i % 3}", "r", i % 7, {"i": i})
        if i % 5 == 0:
            engine.remove("t", "u", "r", 3)
    engine.delete_entry("t", "u", "r")
    engine.save("t", "u", "r", "a snapshot after the deletion")
    report = engine.verify("t", "r")
    assert report.ok
    assert report.versions == len(engine.history("t", "r"))


def test_a_changed_snapshot_is_reported(root: Path) -> None:
    list(healthy(root))
    with reopened(root) as engine:
        marked = engine.history("t", "snap")[1]
    # a version and the checkpoint pack of "recs"
    assert tamper(root / STORE_FILE, replace_marker()) == 2
    with reopened(root) as engine:
        report = engine.verify("t", "snap")
        assert not report.ok and not report
        (problem,) = report.problems
        assert problem.digest == marked and problem.position == 1
        assert marked in problem.message and "changed" in problem.message
        # the other entries never held those bytes
        assert engine.verify("t", "other").ok
        assert engine.verify("t", "gone").ok


def test_an_engine_open_during_the_change_reports_it_too(root: Path) -> None:
    list(healthy(root))
    with reopened(root) as engine:
        assert engine.verify("t", "snap").ok and engine.verify("t", "recs").ok
        engine.load("t", "snap", engine.history("t", "snap")[1])
        tamper(root / STORE_FILE, replace_marker())
        # verify reads the bytes again: nothing it saw before the change is trusted
        assert not engine.verify("t", "snap").ok
        assert not engine.verify("t", "recs").ok


def test_a_changed_record_is_reported(root: Path) -> None:
    list(healthy(root))
    with reopened(root) as engine:
        stored_at = checkpoint(engine)
    tamper(root / STORE_FILE, replace_marker())
    with reopened(root) as engine:
        report = engine.verify("t", "recs")
        assert not report.ok
        # found at the checkpoint whose pack holds the record's node
        assert [problem.digest for problem in report.problems] == [stored_at]
        assert "pack" in report.problems[0].message
        assert "changed" in report.problems[0].message


def test_a_changed_blob_is_reported(root: Path) -> None:
    list(healthy(root))
    with reopened(root) as engine:
        head = engine.get_digest("t", "snap")
    tamper(
        root / STORE_FILE,
        "UPDATE everstore_blobs SET data = CAST(replace(CAST(data AS TEXT), 'bbb', 'bcb')"
        " AS BLOB) WHERE length(data) = 3000",
    )
    with reopened(root) as engine:
        report = engine.verify("t", "snap")
        assert [(p.digest, "blob" in p.message) for p in report.problems] == [(head, True)]


def test_a_deleted_blob_is_reported_missing(root: Path) -> None:
    list(healthy(root))
    with reopened(root) as engine:
        snap_head = engine.get_digest("t", "snap")
        stored_at = checkpoint(engine)
    assert tamper(root / STORE_FILE, "DELETE FROM everstore_blobs WHERE length(data) = 3000") == 1
    with reopened(root) as engine:
        report = engine.verify("t", "snap")
        (problem,) = report.problems
        assert problem.digest == snap_head and "missing" in problem.message
        assert engine.verify("t", "recs").ok
    # a checkpoint's pack gone (it holds its version's raw digest): reported missing,
    # and every version still counted
    gone = f"DELETE FROM everstore_blobs WHERE instr(data, x'{stored_at}') > 0"
    assert tamper(root / STORE_FILE, gone) == 1
    with reopened(root) as engine:
        report = engine.verify("t", "recs")
        (problem,) = report.problems
        assert problem.digest == stored_at and "missing" in problem.message
        assert report.versions == len(engine.history("t", "recs"))


def test_a_deleted_records_node_is_reported_missing(root: Path) -> None:
    list(healthy(root))
    with reopened(root) as engine:
        first = checkpoint(engine)
    # the records of the first version: 100 records, so at least a branch and leaves,
    # stored at the checkpoint
    tamper(
        root / STORE_FILE,
        "DELETE FROM everstore_blobs WHERE instr(CAST(data AS TEXT), '\"value\":57') > 0",
    )
    with reopened(root) as engine:
        report = engine.verify("t", "recs")
        assert not report.ok
        assert report.problems[0].digest == first
        assert all("missing" in problem.message for problem in report.problems)
