"""The hash chain (docs/integrity.md): a clean store verifies on every backend, and
raw-SQL tampering with a real SQLite file and a real PostgreSQL schema, after
dropping their append-only triggers, is found at the right seq with the right kind;
checkpoints catch truncation and older backups."""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from everstore import Sqlite3, Store
from everstore.cli import main
from everstore.integrity import GENESIS, fact_hash, parse_checkpoint, single_step
from pg_server import raw_connection

FACTS = 10


def test_a_clean_store_verifies(store: Store) -> None:
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
    doc = store.storage("doc")
    doc.x = 1
    with store.transaction():
        doc.a, doc.b = 1, 2
    assert parse_checkpoint(store.checkpoint(2)).seq == 3
    with pytest.raises(ValueError, match="from 0 to 3"):
        store.checkpoint(4)
    with pytest.raises(ValueError, match="es1"):
        store.verify(against="not a checkpoint")


class Target:
    """A store of FACTS one-fact commits (seqs 1 to FACTS) in a real database, and raw
    SQL on it with every trigger dropped. ``{log}``, ``{chain}``, ``{contexts}``,
    ``{counter}`` in statements name its tables."""

    def __init__(self, kind: str, tmp_path: Path, location: Any) -> None:
        self.kind = kind
        self.path = tmp_path / "log.db"
        self.location = location
        with self.open() as store:
            doc = store.storage("doc")
            for i in range(FACTS):
                setattr(doc, f"f{i % 3}", i)
            backend: Any = store.backend
            if kind == "sqlite":
                # the link of each commit is a column of its last row
                self.names = {t: f"everstore_{t}" for t in ("log", "contexts")}
            else:
                self.names = {t: backend.table(t) for t in ("log", "chain", "contexts", "counter")}
        self._drop_triggers()

    def open(self) -> Store:
        if self.kind == "sqlite":
            return Store(Sqlite3(self.path))
        from everstore.backends.postgresql import PostgreSQL

        conninfo, schema = self.location
        return Store(PostgreSQL(conninfo, schema=schema))

    def _drop_triggers(self) -> None:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path, isolation_level=None)
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in rows.fetchall():
                conn.execute(f"DROP TRIGGER {name}")
            conn.close()
            return
        with raw_connection(self.location[0]) as conn:
            for table in ("log", "chain", "counter"):  # the chain: a link per commit
                rows = conn.execute(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = "
                    f"'{self.names[table]}'::regclass"
                ).fetchall()
                for (name,) in rows:
                    conn.execute(f'DROP TRIGGER "{name}" ON {self.names[table]}')

    def sql(self, *statements: str) -> None:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path, isolation_level=None)
            for statement in statements:
                conn.execute(statement.format(**self.names))
            conn.close()
            return
        with raw_connection(self.location[0]) as conn:
            for statement in statements:
                conn.execute(statement.format(**self.names))

    def verify(self, against: str | None = None) -> tuple[int | None, str | None, bool]:
        with self.open() as store:
            report = store.verify(against=against)
        return report.seq, report.kind, report.ok

    def checkpoint(self, seq: int | None = None) -> str:
        with self.open() as store:
            return store.checkpoint(seq)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    location = request.getfixturevalue("location") if request.param == "postgresql" else None
    return Target(request.param, tmp_path, location)


def test_the_untouched_store_verifies(target: Target) -> None:
    assert target.verify() == (None, None, True)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {log} SET data = (SELECT data FROM {log} WHERE seq = 2) WHERE seq = 4",
        "UPDATE {log} SET time = time + 0.001 WHERE seq = 4",
        "UPDATE {log} SET data = NULL WHERE seq = 4",
        "UPDATE {log} SET field = (SELECT field FROM {log} WHERE seq = 5) WHERE seq = 4",
    ],
    ids=["data", "time", "tombstone", "field"],
)
def test_a_changed_fact_is_found(target: Target, change: str) -> None:
    target.sql(change)
    assert target.verify() == (4, "changed", False)


def test_a_changed_context_is_found(target: Target) -> None:
    target.sql(
        "INSERT INTO {contexts}(name) VALUES ('forged.py:1')",
        "UPDATE {log} SET ctx = (SELECT id FROM {contexts} WHERE name = 'forged.py:1')"
        " WHERE seq = 7",
    )
    assert target.verify() == (7, "changed", False)


def test_a_deleted_fact_is_found(target: Target) -> None:
    target.sql("DELETE FROM {log} WHERE seq = 6")
    assert target.verify() == (6, "deleted", False)


def test_an_inserted_fact_is_found(target: Target) -> None:
    target.sql(
        "INSERT INTO {log}(seq, time, ns, field, ctx, data)"
        " SELECT seq + 1, time, ns, field, ctx, data FROM {log} WHERE seq = 10"
    )
    assert target.verify() == (FACTS + 1, "inserted", False)


def test_swapped_facts_are_found_as_reordered(target: Target) -> None:
    target.sql(
        "UPDATE {log} SET seq = -3 WHERE seq = 3",
        "UPDATE {log} SET seq = 3 WHERE seq = 8",
        "UPDATE {log} SET seq = 8 WHERE seq = -3",
    )
    assert target.verify() == (3, "reordered", False)


def test_a_truncated_log_is_found(target: Target) -> None:
    kept = target.checkpoint()
    target.sql("DELETE FROM {log} WHERE seq > 7")
    if target.kind == "postgresql":
        # the chain (its table and its head in the counter row) goes on to seq 10
        assert target.verify() == (8, "truncated", False)
    else:
        # the links went with the rows: what is left is consistent in itself, the
        # state of an older backup, which only a checkpoint tells apart
        assert target.verify() == (None, None, True)
    assert target.verify(against=kept) == (8, "truncated", False)


def test_a_truncation_of_log_and_chain_is_found_by_a_checkpoint(target: Target) -> None:
    kept = target.checkpoint()
    target.sql("DELETE FROM {log} WHERE seq > 7")
    if target.kind == "postgresql":
        target.sql(
            "DELETE FROM {chain} WHERE seq_last > 7",
            "UPDATE {counter} SET seq = 7, chain = (SELECT link FROM {chain} WHERE seq_last = 7)",
        )
    assert target.verify() == (None, None, True)  # consistent in itself
    assert target.verify(against=kept) == (8, "truncated", False)


def test_a_rewritten_and_rechained_log_is_found_by_a_checkpoint(target: Target) -> None:
    kept = target.checkpoint(8)
    target.sql("UPDATE {log} SET time = time + 0.5 WHERE seq = 2")
    with target.open() as store:
        facts = store.facts()
    # the forger recomputes the whole chain, as everstore would have
    link = GENESIS
    rows = ["DELETE FROM {chain}"] if target.kind == "postgresql" else []
    for fact in facts:
        hashed = fact_hash(fact.namespace, fact.field, fact.context, fact.data)
        link = single_step(link, fact.seq, fact.time, hashed)
        if target.kind == "postgresql":
            rows.append(
                f"INSERT INTO {{chain}}(seq_last, link) VALUES ({fact.seq}, {_blob(target, link)})"
            )
        else:
            rows.append(f"UPDATE {{log}} SET link = {_blob(target, link)} WHERE seq = {fact.seq}")
    target.sql(*rows)
    if target.kind == "postgresql":
        target.sql(f"UPDATE {{counter}} SET chain = {_blob(target, link)}")
    assert target.verify() == (None, None, True)
    assert target.verify(against=kept) == (None, "changed", False)


def _blob(target: Target, data: bytes) -> str:
    return f"x'{data.hex()}'" if target.kind == "sqlite" else f"'\\x{data.hex()}'::bytea"


def test_an_older_backup_restored_is_found_by_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with Store(Sqlite3(path)) as store:
        for i in range(FACTS):
            store.storage("doc").x = i
    backup = tmp_path / "backup.db"
    shutil.copyfile(path, backup)
    with Store(Sqlite3(path)) as store:
        store.storage("doc").later = "x"
        kept = store.checkpoint()
    shutil.copyfile(backup, path)
    with Store(Sqlite3(path)) as store:
        assert store.verify().ok
        report = store.verify(against=kept)
    assert (report.seq, report.kind, report.ok) == (FACTS + 1, "truncated", False)


def test_a_change_inside_a_commit_of_several_facts_names_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "batch.db"
    with Store(Sqlite3(path)) as store:
        doc = store.storage("doc")
        doc.x = 0
        with store.transaction():
            for i in range(5):
                setattr(doc, f"f{i}", i)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER everstore_log_no_update")
    conn.execute("UPDATE everstore_log SET data = x'30' WHERE seq = 4")
    conn.close()
    with Store(Sqlite3(path)) as store:
        report = store.verify()
    assert (report.seq, report.kind, report.ok) == (2, "changed", False)
    assert "2..6" in report.message


def test_a_tampered_store_still_opens_and_writes(target: Target) -> None:
    # verification reports; it does not stop the store from working
    target.sql("UPDATE {log} SET time = time + 0.001 WHERE seq = 4")
    with target.open() as store:
        store.storage("doc").more = 1
        report = store.verify()
    assert (report.seq, report.kind) == (4, "changed")


def test_the_verify_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.db"
    with Store(Sqlite3(path)) as store:
        for i in range(FACTS):
            store.storage("doc").x = i
        kept = store.checkpoint()
    assert main(["verify", str(path)]) == 0
    assert capsys.readouterr().out == f"ok: {FACTS} facts verify; checkpoint {kept}\n"
    assert main(["verify", str(path), "--against", kept]) == 0
    capsys.readouterr()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER everstore_log_no_delete")
    conn.execute("DELETE FROM everstore_log WHERE seq = 5")
    conn.close()
    assert main(["verify", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "ok": False,
        "facts": 4,
        "seq": 5,
        "kind": "deleted",
        "message": "the fact at seq 5 was deleted",
        "checkpoint": None,
        "erasures": [],
        "retentions": [],
    }
    assert main(["verify", str(path), "--against", "es1:nope"]) == 2
    assert "es1:<seq>" in capsys.readouterr().err


def test_writers_taking_turns_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    # Each plain write first tries the seq after its own last one; when the other
    # writer took it, it reads the log's end and chains on the other's link.
    path = tmp_path / "turns.db"
    with Store(Sqlite3(path)) as first, Store(Sqlite3(path)) as second:
        a, b = first.storage("a"), second.storage("b")
        for i in range(20):
            a.x = i
            if i % 3:
                b.y = i
                b.z = -i
        with first.transaction():
            a.p, a.q = 1, 2
        b.y = "last"
        facts = second.facts()
        assert [f.seq for f in facts] == list(range(1, len(facts) + 1))
        assert all(x.time <= y.time for x, y in itertools.pairwise(facts))
        assert first.verify().ok and second.verify().facts == len(facts)
