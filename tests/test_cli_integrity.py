"""``everstore erase``, ``everstore prune`` and what the other commands show of a store
holding erased values and pruned history, driven through the entry point (stdout
captured: plain text)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import Capture, error_of, output_of
from everstore import Erased, PrunedHistoryError, Sqlite3, Store
from everstore.cli import main


@pytest.fixture
def people(tmp_path: Path) -> Iterator[str]:
    """Seqs 1..8: ann's email twice and her age, a sensor's readings."""
    path = tmp_path / "people.db"
    with Store(Sqlite3(path)) as store:
        ann = store.storage("people", "ann")
        ann.email = "ann@example.org"  # 1
        ann.age = 40  # 2
        ann.email = "ann@example.com"  # 3
        sensor = store.storage("sensor")
        for reading in range(5):  # 4..8
            sensor.v = reading
    yield str(path)


class _Terminal(io.StringIO):
    """Standard input as a terminal where the user types ``answer``."""

    def isatty(self) -> bool:
        return True


def _erase_and_prune(path: str, capsys: Capture) -> None:
    out = output_of(
        capsys,
        ["erase", path, "people/ann", "email", "--reason", "GDPR 42", "--by", "dpo", "--yes"],
    )
    assert out == (
        "erased 2 values of field 'email' of people/ann (reason: GDPR 42, by dpo); "
        "record at seq 9\n"
    )
    out = output_of(capsys, ["prune", path, "--before", "8", "--namespaces", "sensor", "--yes"])
    assert out == (
        "pruned 4 facts of namespaces under sensor up to seq 7 (seqs 4 to 7), "
        "dropped (no archive); record at seq 10\n"
    )


def test_erase_and_prune_go_through_the_store(people: str, capsys: Capture) -> None:
    _erase_and_prune(people, capsys)
    with Store(Sqlite3(people, readonly=True)) as store:
        ann = store.storage("people", "ann")
        assert isinstance(ann.email, Erased) and ann.age == 40
        assert [(e.seq, e.erased, e.reason, e.by) for e in store.erasures()] == [
            (9, (1, 3), "GDPR 42", "dpo")
        ]
        assert [(r.seq, r.prefix, r.through, r.removed) for r in store.retentions()] == [
            (10, "sensor", 7, 4)
        ]
        assert store.storage("sensor").v == 4
        with pytest.raises(PrunedHistoryError):
            store.as_of(seq=5).storage("sensor").v  # noqa: B018
    argv = ["prune", people, "--before", "8", "--namespaces", "sensor", "--yes"]
    assert output_of(capsys, argv) == "nothing to prune before 8\n"


def test_prune_takes_a_time_and_an_archive(people: str, tmp_path: Path, capsys: Capture) -> None:
    archive = tmp_path / "old.db"
    out = output_of(capsys, ["prune", people, "--before=-0s", "--archive", str(archive), "--yes"])
    assert out.startswith("pruned 5 facts of every namespace up to seq 8 (seqs 1 to 7), into ")
    with Store(Sqlite3(archive, readonly=True)) as old:
        assert [value.data for value in old.storage("sensor").__history__()["v"]] == [0, 1, 2, 3]
    err = error_of(capsys, ["show", people, "sensor", "--at", "5"])
    assert "was pruned" in err and str(archive) in err


def test_rewrites_ask_on_a_terminal_and_refuse_when_piped(
    people: str, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = Path(people).read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "--yes" in error_of(capsys, ["erase", people, "people/ann", "--reason", "r"])
    assert "--yes" in error_of(capsys, ["prune", people, "--before", "8"])
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    assert main(["erase", people, "people/ann", "--reason", "r"]) == 2
    captured = capsys.readouterr()
    assert "Erase every field of people/ann" in captured.err and "not confirmed" in captured.err
    assert Path(people).read_bytes() == before
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    assert main(["erase", people, "people/ann", "age", "--reason", "r"]) == 0
    assert "erased 1 value of field 'age'" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", _Terminal("yes\n"))
    assert main(["prune", people, "--before", "8"]) == 0
    assert capsys.readouterr().out.startswith("pruned 5 facts")


def test_rewrite_errors_are_one_line_and_exit_2(
    people: str, tmp_path: Path, capsys: Capture
) -> None:
    missing = tmp_path / "missing.db"
    assert "no store at" in error_of(capsys, ["erase", str(missing), "a", "--reason", "r", "--yes"])
    assert not missing.exists()
    assert "holds no fact" in error_of(
        capsys, ["erase", people, "people/bob", "--reason", "r", "--yes"]
    )
    assert "holds no fact" in error_of(
        capsys, ["erase", people, "people/ann", "nope", "--reason", "r", "--yes"]
    )
    assert "--reason" in error_of(capsys, ["erase", people, "people/ann", "--reason", " ", "--yes"])
    assert "is no namespace" in error_of(
        capsys, ["erase", people, "a//b", "--reason", "r", "--yes"]
    )
    assert "seq >= 1" in error_of(capsys, ["prune", people, "--before", "0", "--yes"])
    assert "is no moment" in error_of(capsys, ["prune", people, "--before", "soon", "--yes"])
    with pytest.raises(SystemExit):
        main(["erase", people, "people/ann", "--yes"])  # --reason is required
    capsys.readouterr()


def test_verify_lists_erasures_and_prunes(people: str, capsys: Capture) -> None:
    _erase_and_prune(people, capsys)
    lines = output_of(capsys, ["verify", people]).splitlines()
    assert lines[0].startswith("ok: ") and "; checkpoint es1:10:" in lines[0]
    assert lines[2] == "erasures"
    assert lines[3].split() == ["SEQ", "TIME", "ERASED", "VALUES", "REASON", "BY"]
    assert lines[4].split()[0] == "9" and lines[4].split()[2:] == [
        "people/ann.email", "2", "GDPR", "42", "dpo"
    ]  # fmt: skip
    assert lines[6] == "prunes"
    assert lines[8].split()[0] == "10" and lines[8].split()[2:] == ["sensor", "7", "4", "(dropped)"]
    report = json.loads(output_of(capsys, ["verify", people, "--json"]))
    assert report["ok"] is True
    erasure = report["erasures"][0]
    assert len(report["erasures"]) == 1 and erasure["seq"] == 9
    assert (erasure["namespace"], erasure["field"], erasure["erased"], erasure["seqs"]) == (
        "people/ann", "email", 2, [1, 3]
    )  # fmt: skip
    assert (erasure["reason"], erasure["by"]) == ("GDPR 42", "dpo")
    retention = report["retentions"][0]
    assert len(report["retentions"]) == 1
    assert (retention["seq"], retention["prefix"], retention["through"]) == (10, "sensor", 7)
    assert (retention["removed"], retention["archive"]) == (4, None)


def test_every_command_shows_erased_values_and_pruned_history(
    people: str, tmp_path: Path, capsys: Capture
) -> None:
    _erase_and_prune(people, capsys)
    show = output_of(capsys, ["show", people, "people/ann"]).splitlines()
    assert show[1].split()[:3] == ["email", "<erased>", "3"]
    assert json.loads(output_of(capsys, ["show", people, "people/ann", "--json"]))["email"] == {
        "erased": Store(Sqlite3(people, readonly=True)).storage("people", "ann").email.digest
    }
    history = output_of(capsys, ["history", people, "people/ann", "email"]).splitlines()
    assert [line.split()[2] for line in history[1:]] == ["<erased>", "<erased>"]
    rows = [
        json.loads(x)
        for x in output_of(
            capsys, ["history", people, "people/ann", "email", "--json"]
        ).splitlines()
    ]
    assert all(set(row["value"]) == {"erased"} for row in rows)
    log = output_of(capsys, ["log", people, "-n", "people"]).splitlines()
    assert [line.split()[4] for line in log[1:]] == ["<erased>", "40", "<erased>"]
    assert output_of(capsys, ["ls", people]).splitlines() == ["everstore", "people/ann", "sensor"]
    diff = output_of(capsys, ["diff", people, "3", "8", "people"])
    assert diff == "0 added, 0 changed, 0 deleted from seq 3 to seq 8\n"
    # history before the cut: one line naming the prune, exit 2
    for argv in (
        ["show", people, "sensor", "--at", "5"],
        ["history", people, "sensor", "v", "--at", "5"],
        ["diff", people, "5", "8", "sensor"],
    ):
        assert "up to seq 7 was pruned" in error_of(capsys, argv)
    # the live log exports as it is, holes and markers included
    target = tmp_path / "out.jsonl"
    assert main(["export", people, "-o", str(target)]) == 0
    assert "exported 6 facts" in capsys.readouterr().err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[0]["facts"] == 6 and lines[0]["last_seq"] == 10
    assert lines[0]["pruned_through"] == 7
    assert [line["seq"] for line in lines[1:]] == [1, 2, 3, 8, 9, 10]
    err = error_of(capsys, ["import", str(tmp_path / "copy.db"), str(target)])
    assert "was pruned" in err and not (tmp_path / "copy.db").exists()


def test_an_erased_store_exports_and_imports_with_its_markers(
    people: str, tmp_path: Path, capsys: Capture
) -> None:
    output_of(capsys, ["erase", people, "people/ann", "--reason", "asked", "--yes"])
    target = tmp_path / "out.jsonl"
    assert main(["export", people, "-o", str(target)]) == 0
    copy = tmp_path / "copy.db"
    assert main(["import", str(copy), str(target)]) == 0
    capsys.readouterr()
    with Store(Sqlite3(copy, readonly=True)) as store:
        assert isinstance(store.storage("people", "ann").email, Erased)
        assert store.storage("people", "ann").age == Erased(
            Store(Sqlite3(people, readonly=True)).storage("people", "ann").age.digest
        )
        assert [e.reason for e in store.erasures()] == ["asked"]
        # the copy chains each marker as the original did: it verifies, erasures listed
        report = store.verify()
        assert report.ok and report.erased and len(report.erasures) == 1
