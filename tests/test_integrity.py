"""The hash chain (docs/integrity.md): a clean store verifies on every backend, and
raw-SQL tampering with an SQLite file, after dropping its append-only triggers, is
found at the right seq with the right kind; checkpoints catch truncation and older
backups."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from everstore import Sqlite3, Store
from everstore.integrity import GENESIS, batch_hash, chain_step, encode_fact, parse_checkpoint

FACTS = 10


def test_a_clean_store_verifies(store: Store) -> None:
    if not store.backend.chained:
        pytest.skip(f"the {store.backend.kind} backend keeps no chain yet")
    assert store.verify().ok and store.verify().facts == 0
    doc = store.storage("doc")
    for i in range(5):
        doc.x = i
    with store.transaction():
        doc.a, doc.b, doc.c = "a", b"b" * 3000, None
    del doc.x
    seen: list[tuple[int, int]] = []
    report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.ok and report.kind is None and report.seq is None
    assert report.facts == store.last_seq == 9
    assert seen[-1] == (9, 9)
    checkpoint = store.checkpoint()
    assert parse_checkpoint(checkpoint).seq == 9
    doc.y = 1
    assert store.verify(against=checkpoint).ok
    assert store.verify(against=store.checkpoint(3)).ok
    assert store.checkpoint(0) == "es1:0:" + "0" * 32


def test_a_checkpoint_inside_a_commit_names_the_commit_s_end(store: Store) -> None:
    if not store.backend.chained:
        pytest.skip(f"the {store.backend.kind} backend keeps no chain yet")
    doc = store.storage("doc")
    doc.x = 1
    with store.transaction():
        doc.a, doc.b = 1, 2
    assert parse_checkpoint(store.checkpoint(2)).seq == 3
    with pytest.raises(ValueError, match="from 0 to 3"):
        store.checkpoint(4)
    with pytest.raises(ValueError, match="es1"):
        store.verify(against="not a checkpoint")


@pytest.fixture
def written(tmp_path: Path) -> Iterator[Path]:
    """An SQLite file of FACTS one-fact commits (seqs 1 to FACTS), closed."""
    path = tmp_path / "log.db"
    with Store(Sqlite3(path)) as store:
        doc = store.storage("doc")
        for i in range(FACTS):
            setattr(doc, f"f{i % 3}", i)
    yield path


def _raw(path: Path) -> sqlite3.Connection:
    """A plain connection with every trigger of the store dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


def _tamper(path: Path, *statements: str) -> None:
    conn = _raw(path)
    for statement in statements:
        conn.execute(statement)
    conn.close()


def _verify(path: Path, against: str | None = None) -> tuple[int | None, str | None, bool]:
    with Store(Sqlite3(path)) as store:
        report = store.verify(against=against)
    return report.seq, report.kind, report.ok


def test_the_untouched_file_verifies(written: Path) -> None:
    assert _verify(written) == (None, None, True)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE everstore_log SET data = x'31' WHERE seq = 4",
        "UPDATE everstore_log SET time = time + 0.001 WHERE seq = 4",
        "UPDATE everstore_log SET data = NULL WHERE seq = 4",
        "UPDATE everstore_log SET field = (SELECT field FROM everstore_log WHERE seq = 5)"
        " WHERE seq = 4",
    ],
)
def test_a_changed_fact_is_found(written: Path, change: str) -> None:
    _tamper(written, change)
    assert _verify(written) == (4, "changed", False)


def test_a_changed_context_is_found(written: Path) -> None:
    _tamper(
        written,
        "INSERT INTO everstore_contexts(name) VALUES ('forged.py:1')",
        "UPDATE everstore_log SET ctx = (SELECT id FROM everstore_contexts"
        " WHERE name = 'forged.py:1') WHERE seq = 7",
    )
    assert _verify(written) == (7, "changed", False)


def test_a_deleted_fact_is_found(written: Path) -> None:
    _tamper(written, "DELETE FROM everstore_log WHERE seq = 6")
    assert _verify(written) == (6, "deleted", False)


def test_an_inserted_fact_is_found(written: Path) -> None:
    _tamper(
        written,
        "INSERT INTO everstore_log(seq, time, ns, field, ctx, data)"
        " SELECT seq + 1, time, ns, field, ctx, x'32' FROM everstore_log WHERE seq = 10",
    )
    assert _verify(written) == (FACTS + 1, "inserted", False)


def test_swapped_facts_are_found_as_reordered(written: Path) -> None:
    _tamper(
        written,
        "UPDATE everstore_log SET seq = -3 WHERE seq = 3",
        "UPDATE everstore_log SET seq = 3 WHERE seq = 8",
        "UPDATE everstore_log SET seq = 8 WHERE seq = -3",
    )
    assert _verify(written) == (3, "reordered", False)


def test_a_truncated_log_is_found(written: Path) -> None:
    _tamper(written, "DELETE FROM everstore_log WHERE seq > 7")
    assert _verify(written) == (8, "truncated", False)


def test_a_truncation_of_log_and_chain_is_found_by_a_checkpoint(written: Path) -> None:
    with Store(Sqlite3(written)) as store:
        kept = store.checkpoint()
    _tamper(
        written,
        "DELETE FROM everstore_log WHERE seq > 7",
        "DELETE FROM everstore_chain WHERE seq_last > 7",
    )
    assert _verify(written) == (None, None, True)  # consistent in itself
    assert _verify(written, against=kept) == (8, "truncated", False)


def test_an_older_backup_restored_is_found_by_a_checkpoint(written: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    shutil.copyfile(written, backup)
    with Store(Sqlite3(written)) as store:
        store.storage("doc").later = "x"
        kept = store.checkpoint()
    shutil.copyfile(backup, written)
    assert _verify(written) == (None, None, True)
    assert _verify(written, against=kept) == (FACTS + 1, "truncated", False)


def test_a_rewritten_and_rechained_log_is_found_by_a_checkpoint(written: Path) -> None:
    with Store(Sqlite3(written)) as store:
        kept = store.checkpoint(8)
    conn = _raw(written)
    conn.execute("UPDATE everstore_log SET data = x'39' WHERE seq = 2")
    # the forger recomputes the whole chain, as everstore would have
    rows = conn.execute(
        "SELECT l.seq, l.time, n.name, f.name, c.name, l.data FROM everstore_log l"
        " JOIN everstore_namespaces n ON n.id = l.ns JOIN everstore_fields f ON f.id = l.field"
        " JOIN everstore_contexts c ON c.id = l.ctx ORDER BY l.seq"
    ).fetchall()
    conn.execute("DELETE FROM everstore_chain")
    link = GENESIS
    for seq, time, ns, field, ctx, data in rows:
        link = chain_step(link, seq, [time], batch_hash([encode_fact(ns, field, ctx, data)]))
        conn.execute("INSERT INTO everstore_chain VALUES (?, ?)", (seq, link))
    conn.close()
    assert _verify(written) == (None, None, True)
    assert _verify(written, against=kept) == (None, "changed", False)


def test_a_change_inside_a_commit_of_several_facts_names_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "batch.db"
    with Store(Sqlite3(path)) as store:
        doc = store.storage("doc")
        doc.x = 0
        with store.transaction():
            for i in range(5):
                setattr(doc, f"f{i}", i)
    _tamper(path, "UPDATE everstore_log SET data = x'30' WHERE seq = 4")
    seq, kind, ok = _verify(path)
    assert (seq, kind, ok) == (2, "changed", False)


def test_a_tampered_store_still_opens_and_writes(written: Path) -> None:
    # verification reports; it does not stop the store from working
    _tamper(written, "UPDATE everstore_log SET data = x'31' WHERE seq = 4")
    with Store(Sqlite3(written)) as store:
        store.storage("doc").more = 1
        report = store.verify()
    assert (report.seq, report.kind) == (4, "changed")
