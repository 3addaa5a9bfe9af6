"""`everstore export` and `everstore import` on the command line. They drive the
library module everstore.portable, written on its own branch: these tests pass once
both are merged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from everstore import Sqlite3, Store
from everstore.cli import main
from everstore.portable import export_facts
from pg_server import postgresql_url

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "source.db"
    with Store(Sqlite3(path)) as store:
        alice = store.storage("game", "alice")
        alice.name = "Alice"
        alice.score = 10
        alice.score = 25
        del alice.name
        store.storage("config").mode = ["easy", {"lives": 3}]
    return str(path)


def _log(capsys: Capture, target: str) -> list[tuple[object, ...]]:
    assert main(["log", target, "--oldest", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [(r["namespace"], r["field"], r["deleted"], r["value"]) for r in records]


def test_export_to_a_file_and_import_it_into_a_new_store(
    source: str, tmp_path: Path, capsys: Capture
) -> None:
    dump, copy = tmp_path / "dump.jsonl", tmp_path / "copy.db"
    assert main(["export", source, "-o", str(dump)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the facts went to the file
    assert "exported 5 facts" in captured.err and "\x1b[" not in captured.err
    assert len(dump.read_text().splitlines()) >= 5
    assert not copy.exists()
    assert main(["import", str(copy), str(dump)]) == 0
    assert "imported 5 facts" in capsys.readouterr().err
    assert _log(capsys, str(copy)) == _log(capsys, source)


def test_export_to_stdout_and_import_from_stdin(
    source: str, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["export", source]) == 0
    stream = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(stream))
    copy = tmp_path / "copy.db"
    assert main(["import", f"sqlite:///{copy}"]) == 0
    capsys.readouterr()
    assert _log(capsys, str(copy)) == _log(capsys, source)


def test_import_into_a_store_with_facts_needs_into_nonempty(
    source: str, tmp_path: Path, capsys: Capture
) -> None:
    dump = tmp_path / "dump.jsonl"
    assert main(["export", source, "-o", str(dump)]) == 0
    capsys.readouterr()
    before = _log(capsys, source)
    assert main(["import", source, str(dump)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("everstore import: ") and "--into-nonempty" in captured.err
    assert "Traceback" not in captured.err
    assert _log(capsys, source) == before  # nothing written
    assert main(["import", source, str(dump), "--into-nonempty"]) == 0
    capsys.readouterr()
    assert _log(capsys, source) == before + before


def test_a_bad_stream_or_missing_input_is_a_clear_error(
    source: str, tmp_path: Path, capsys: Capture
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not an export\n")
    copy = tmp_path / "copy.db"
    assert main(["import", str(copy), str(bad)]) == 2
    assert capsys.readouterr().err.startswith("everstore import: ")
    assert not copy.exists()  # a failed import into a new file leaves none behind
    assert main(["import", str(copy), str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    missing, dump = tmp_path / "missing.db", tmp_path / "dump.jsonl"
    assert main(["export", str(missing), "-o", str(dump)]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not missing.exists() and not dump.exists()


def test_a_store_moves_to_postgresql_and_back_fact_for_fact(
    source: str, tmp_path: Path, location: tuple[str, str], capsys: Capture
) -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    url, on_pg = postgresql_url(location[0]), ["--schema", location[1]]
    there, back = tmp_path / "there.jsonl", tmp_path / "back.db"
    assert main(["export", source, "-o", str(tmp_path / "dump.jsonl")]) == 0
    assert main(["import", url, str(tmp_path / "dump.jsonl"), *on_pg]) == 0
    assert main(["export", url, "-o", str(there), *on_pg]) == 0
    assert main(["import", str(back), str(there)]) == 0
    capsys.readouterr()

    def facts(path: str) -> list[str]:
        stream = io.StringIO()
        with Store(Sqlite3(path)) as store:
            export_facts(store, stream)
        return stream.getvalue().splitlines()[1:]  # the header names the source

    # Seq, time, namespace, field, the stored bytes and the code location, each fact.
    assert facts(str(back)) == facts(source)
