"""The command line, driven through its entry point like a user would: on a store
built here, with stdout captured (not a terminal, so the output is plain)."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import Capture, error_of, output_of
from everstore import PostgreSQL, Sqlite3, Store
from everstore.cli import main
from everstore.cli.output import Output, jsonable, relative_time
from everstore.cli.targets import CliError, parse_moment, parse_namespace
from pg_server import postgresql_url


def test_demo_writes_reads_and_can_run_again(tmp_path: Path, capsys: Capture) -> None:
    path = tmp_path / "demo.db"
    assert main(["demo", "--path", str(path)]) == 0
    first = capsys.readouterr().out
    assert "within(player, round=2).score = 25" in first
    assert "at seq 9: score = 40, inventory = ['sword', 'shield']" in first
    assert main(["demo", "--path", str(path)]) == 0
    assert "facts already in the file: 10" in capsys.readouterr().out
    store = Store(Sqlite3(path))
    assert len(store.storage("game", "alice").__history__()["round"]) == 6


@pytest.mark.parametrize("module", ["everstore", "everstore.cli"])
def test_python_dash_m_runs_the_demo(tmp_path: Path, module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "everstore-demo.db").exists()


# -- a store to look at ------------------------------------------------------------------


def _write_game(store: Store) -> dict[str, int]:
    """Seqs 1..8: two players and a config; returns named seqs."""
    alice = store.storage("game", "alice")
    bob = store.storage("game", "bob")
    config = store.storage("config")
    alice.name = "Alice"  # 1
    alice.score = 10  # 2
    bob.name = "Bob"  # 3
    config.mode = "easy"  # 4
    middle = store.last_seq
    alice.score = 25  # 5
    del bob.name  # 6
    bob.level = 2  # 7
    alice.items = ["sword"]  # 8
    return {"middle": middle, "last": store.last_seq}


@pytest.fixture
def game(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "game.db"
    with Store(Sqlite3(path)) as store:
        seqs = _write_game(store)
    assert seqs == {"middle": 4, "last": 8}
    yield str(path)


def _json_lines(capsys: Capture, argv: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in output_of(capsys, [*argv, "--json"]).splitlines()]


# -- ls, show, history ---------------------------------------------------------------------


def test_ls_lists_namespaces_under_a_prefix_and_at_a_moment(game: str, capsys: Capture) -> None:
    assert output_of(capsys, ["ls", game]).splitlines() == ["config", "game/alice", "game/bob"]
    assert output_of(capsys, ["ls", game, "game"]).splitlines() == ["game/alice", "game/bob"]
    assert output_of(capsys, ["ls", game, "--at", "2"]).splitlines() == ["game/alice"]
    assert _json_lines(capsys, ["ls", game, "game/bob"]) == [
        {"namespace": "game/bob", "parts": ["game", "bob"]}
    ]


def test_show_prints_current_fields_as_an_aligned_table(game: str, capsys: Capture) -> None:
    lines = output_of(capsys, ["show", game, "game/alice"]).splitlines()
    assert lines[0].split() == ["FIELD", "VALUE", "SEQ", "WRITTEN", "BY"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["name", "'Alice'", "1"],
        ["score", "25", "5"],
        ["items", "['sword']", "8"],
    ]
    # aligned: every row's value starts in the same column
    starts = {
        line.index(word) for line, word in zip(lines, ["VALUE", "'A", "25", "['"], strict=True)
    }
    assert len(starts) == 1
    assert "test_cli._write_game:" in lines[1]
    assert "\x1b[" not in "\n".join(lines)  # no colours when piped


def test_show_json_and_at(game: str, capsys: Capture) -> None:
    assert _json_lines(capsys, ["show", game, "game/alice"]) == [
        {"name": "Alice", "score": 25, "items": ["sword"]}
    ]
    assert _json_lines(capsys, ["show", game, "game/alice", "--at", "4"]) == [
        {"name": "Alice", "score": 10}
    ]
    # a deleted field is gone from show, and back at a moment before its deletion
    assert _json_lines(capsys, ["show", game, "game/bob"]) == [{"level": 2}]
    assert _json_lines(capsys, ["show", game, "game/bob", "--at", "5"]) == [{"name": "Bob"}]


def test_show_at_a_time(game: str, capsys: Capture) -> None:
    with Store(Sqlite3(game)) as store:
        history = store.storage("game", "alice").__history__()["score"]
        first_score = history[0]
    when = repr(first_score.time)  # a float: a unix time
    assert _json_lines(capsys, ["show", game, "game/alice", "--at", when]) == [
        {"name": "Alice", "score": 10}
    ]
    assert output_of(capsys, ["ls", game, "--at=-1d"]) == ""  # a day ago: nothing yet
    assert "no namespace 'config'" in error_of(capsys, ["show", game, "config", "--at", "0"])


def test_history_lists_every_value_with_seq_and_code(game: str, capsys: Capture) -> None:
    lines = output_of(capsys, ["history", game, "game/bob", "name"]).splitlines()
    assert [line.split()[0] for line in lines] == ["SEQ", "3", "6"]
    assert "'Bob'" in lines[1] and "<deleted>" in lines[2]
    assert "test_cli._write_game:" in lines[2]
    records = _json_lines(capsys, ["history", game, "game/alice", "score"])
    assert [(r["seq"], r["value"], r["deleted"]) for r in records] == [
        (2, 10, False),
        (5, 25, False),
    ]
    assert isinstance(records[0]["time"], float)
    at = _json_lines(capsys, ["history", game, "game/alice", "score", "--at", "4"])
    assert [r["seq"] for r in at] == [2]


# -- log ---------------------------------------------------------------------------------


def _seqs(capsys: Capture, argv: list[str]) -> list[object]:
    return [record["seq"] for record in _json_lines(capsys, ["log", *argv])]


def test_log_newest_first_oldest_first_and_limit(game: str, capsys: Capture) -> None:
    assert _seqs(capsys, [game]) == [8, 7, 6, 5, 4, 3, 2, 1]
    assert _seqs(capsys, [game, "--oldest"]) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert _seqs(capsys, [game, "--limit", "3"]) == [8, 7, 6]
    assert _seqs(capsys, [game, "--oldest", "--limit", "3"]) == [1, 2, 3]


def test_log_filters_by_namespace_field_and_ranges(game: str, capsys: Capture) -> None:
    assert _seqs(capsys, [game, "-n", "game/bob"]) == [7, 6, 3]
    assert _seqs(capsys, [game, "-n", "game"]) == [8, 7, 6, 5, 3, 2, 1]
    assert _seqs(capsys, [game, "-f", "name", "--oldest"]) == [1, 3, 6]
    assert _seqs(capsys, [game, "-f", "name", "-f", "mode"]) == [6, 4, 3, 1]
    assert _seqs(capsys, [game, "--since", "3", "--until", "5"]) == [5, 4, 3]
    assert _seqs(capsys, [game, "--at", "2"]) == [2, 1]
    assert _seqs(capsys, [game, "-n", "game/alice", "--since", "2", "--until", "6"]) == [5, 2]
    with Store(Sqlite3(game)) as store:
        times = [value.time for value in store.storage("game", "alice").__history__()["score"]]
    # a time range: from the first score's time (kept though written at exactly it)
    # to just before the second one's
    start, end = repr(times[0]), repr(math.nextafter(times[1], -math.inf))
    assert _seqs(capsys, [game, "-f", "score", "--since", start, "--until", end]) == [2]


def test_log_records_and_table(game: str, capsys: Capture) -> None:
    record = _json_lines(capsys, ["log", game, "--limit", "1", "--since", "6"])[0]
    assert record == {
        "seq": 8,
        "time": record["time"],
        "namespace": "game/alice",
        "field": "items",
        "deleted": False,
        "value": ["sword"],
        "context": record["context"],
    }
    deleted = _json_lines(capsys, ["log", game, "--since", "6", "--until", "6"])[0]
    assert deleted["deleted"] is True and deleted["value"] is None
    lines = output_of(capsys, ["log", game, "--until", "2"]).splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "NAMESPACE", "FIELD", "VALUE", "BY"]
    assert lines[1].split()[0] == "2" and "game/alice" in lines[1] and " 10 " in lines[1]


def test_log_follow_streams_facts_as_they_commit(game: str, capsys: Capture) -> None:
    def write() -> None:
        with Store(Sqlite3(game)) as writer:
            for value in range(5):
                writer.storage("live").n = value

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # from seq 9 on: the facts the writer commits, whether before or after the
        # follower starts; -n and --limit end it after three of them
        argv = ["log", game, "--follow", "--since", "9", "-n", "live", "--limit", "3", "--json"]
        assert main(argv) == 0
    finally:
        writer.join()
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["seq"], r["value"]) for r in records] == [(9, 0), (10, 1), (11, 2)]


def test_log_follow_starts_from_now_without_since(game: str, capsys: Capture) -> None:
    codes: list[int] = []
    follower = threading.Thread(
        target=lambda: codes.append(main(["log", game, "--follow", "--limit", "1", "--json"]))
    )
    follower.start()
    with Store(Sqlite3(game)) as writer:
        written = 0
        # it has started when it shows a fact; until then, each write may come first
        while follower.is_alive() and written < 10_000:
            writer.storage("live").n = written
            written += 1
            follower.join(0.05)
    follower.join()
    assert codes == [0]
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["namespace"] == "live" and record["seq"] > 8  # none of the older facts


def test_log_follow_ends_cleanly_on_ctrl_c(game: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "everstore", "log", game, "--follow", "--since", "9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Store(Sqlite3(game)) as writer:
            writer.storage("live").n = 1
        assert proc.stdout is not None
        line = proc.stdout.readline()  # it is following: the new fact arrived
        assert line.split()[:2] == ["9", line.split()[1]] and "live" in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err == "" and out == ""


# -- diff --------------------------------------------------------------------------------


def test_diff_shows_added_changed_and_deleted_fields(game: str, capsys: Capture) -> None:
    lines = output_of(capsys, ["diff", game, "4", "8"]).splitlines()
    assert lines == [
        "~ game/alice  score: 10 -> 25",
        "+ game/alice  items = ['sword']",
        "- game/bob  name (was 'Bob')",
        "+ game/bob  level = 2",
        "2 added, 1 changed, 1 deleted from seq 4 to seq 8",
    ]
    assert _json_lines(capsys, ["diff", game, "4", "8", "game/bob"]) == [
        {"change": "deleted", "namespace": "game/bob", "field": "name", "before": "Bob"},
        {"change": "added", "namespace": "game/bob", "field": "level", "after": 2},
    ]
    assert _json_lines(capsys, ["diff", game, "1", "2", "game/alice", "--exact"]) == [
        {"change": "added", "namespace": "game/alice", "field": "score", "after": 10}
    ]
    assert output_of(capsys, ["diff", game, "4", "8", "game", "--exact"]).splitlines() == [
        "0 added, 0 changed, 0 deleted from seq 4 to seq 8"
    ]
    # backwards: the same changes, undone
    assert [r["change"] for r in _json_lines(capsys, ["diff", game, "8", "4", "game/bob"])] == [
        "deleted",
        "added",
    ]


# -- stats -------------------------------------------------------------------------------


def test_stats_counts_facts_namespaces_fields_and_the_busiest(game: str, capsys: Capture) -> None:
    (report,) = _json_lines(capsys, ["stats", game])
    assert report["facts"] == 8 and report["last_seq"] == 8
    assert report["namespaces"] == 3
    assert report["fields"] == 5  # alice: name score items; bob: level; config: mode
    assert isinstance(report["size_bytes"], int) and report["size_bytes"] > 0
    assert report["busiest"] == [
        {"namespace": "game/alice", "facts": 4},
        {"namespace": "game/bob", "facts": 3},
        {"namespace": "config", "facts": 1},
    ]
    growth = report["growth"]
    assert isinstance(growth, list) and growth[-1]["total"] == 8
    (early,) = _json_lines(capsys, ["stats", game, "--at", "3", "--top", "1"])
    assert early["facts"] == 3 and early["busiest"] == [{"namespace": "game/alice", "facts": 2}]
    text = output_of(capsys, ["stats", game])
    assert "facts       8" in text and "busiest namespaces" in text
    assert "game/alice      4" in text


# -- errors ------------------------------------------------------------------------------


def test_errors_are_one_clear_line_and_exit_code_2(
    game: str, tmp_path: Path, capsys: Capture
) -> None:
    missing = tmp_path / "missing.db"
    assert "no store at" in error_of(capsys, ["ls", str(missing)])
    assert "no store at" in error_of(capsys, ["log", f"sqlite:///{missing}"])
    assert not missing.exists()  # looking creates nothing
    assert "no namespace 'game/carol'" in error_of(capsys, ["show", game, "game/carol"])
    assert "no field 'nope'" in error_of(capsys, ["history", game, "game/bob", "nope"])
    assert "is no moment" in error_of(capsys, ["show", game, "game/bob", "--at", "yesterday"])
    assert "negative" in error_of(capsys, ["log", game, "--at", "-3"])
    assert "beyond the store's last fact" in error_of(capsys, ["diff", game, "1", "99"])
    assert "is no namespace" in error_of(capsys, ["show", game, "a//b"])
    assert "--follow" in error_of(capsys, ["log", game, "--follow", "--until", "3"])
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello")
    assert "everstore" in error_of(capsys, ["ls", str(not_a_store)])
    assert not_a_store.read_text() == "hello"
    assert "unknown scheme" in error_of(capsys, ["ls", "mysql://db/app"])


def test_looking_leaves_the_file_unchanged(game: str, capsys: Capture) -> None:
    before = Path(game).read_bytes()
    for argv in (["ls", game], ["show", game, "config"], ["log", game], ["stats", game]):
        output_of(capsys, argv)
    assert Path(game).read_bytes() == before


def test_serve_without_the_web_extra_names_it(
    game: str, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "everstore.web", None)  # as if not installed
    assert "pip install 'everstore[web]'" in error_of(capsys, ["serve", game])


def test_moments_and_namespaces_parse() -> None:
    assert parse_moment("42").seq == 42
    assert parse_moment("1700000000.5").time == 1700000000.5
    assert parse_moment("-5m", now=1000.0).time == 700.0
    assert parse_moment("-1.5h", now=10000.0).time == 10000.0 - 5400
    assert parse_moment("2026-01-31T12:00:00+00:00").time == 1769860800.0
    assert parse_moment("2026-01-31").time is not None
    for bad in ("-3", "soon", "nan", "5m"):
        with pytest.raises(CliError):
            parse_moment(bad)
    assert parse_namespace("game/p1") == ("game", "p1")
    assert parse_namespace("/game/") == ("game",)
    with pytest.raises(CliError):
        parse_namespace("")


# -- PostgreSQL ----------------------------------------------------------------------------


def test_log_show_diff_and_stats_on_postgresql(location: tuple[str, str], capsys: Capture) -> None:
    conninfo, schema = location
    with Store(PostgreSQL(conninfo, schema=schema)) as store:
        seqs = _write_game(store)
    url = postgresql_url(conninfo)
    on_pg = ["--schema", schema]
    assert _json_lines(capsys, ["show", url, "game/alice", *on_pg]) == [
        {"name": "Alice", "score": 25, "items": ["sword"]}
    ]
    at_middle = ["--at", str(seqs["middle"])]
    assert _json_lines(capsys, ["show", url, "game/alice", *on_pg, *at_middle]) == [
        {"name": "Alice", "score": 10}
    ]
    records = _json_lines(capsys, ["log", url, *on_pg, "-n", "game/bob", "--oldest"])
    assert [(r["field"], r["deleted"]) for r in records] == [
        ("name", False),
        ("name", True),
        ("level", False),
    ]
    assert output_of(capsys, ["ls", url, *on_pg]).splitlines() == [
        "config",
        "game/alice",
        "game/bob",
    ]
    changes = _json_lines(capsys, ["diff", url, str(seqs["middle"]), str(seqs["last"]), *on_pg])
    assert len(changes) == 4
    (report,) = _json_lines(capsys, ["stats", url, *on_pg])
    assert report["facts"] == 8
    assert isinstance(report["size_bytes"], int) and report["size_bytes"] > 0


# -- output --------------------------------------------------------------------------------


def test_relative_times_and_json_values() -> None:
    assert relative_time(100.0, 112.5) == "12s ago"
    assert relative_time(0.0, 300.0) == "5m ago"
    assert relative_time(0.0, 3 * 3600.0) == "3h ago"
    assert relative_time(0.0, 2 * 86400.0) == "2d ago"
    assert relative_time(10.0, 5.0) == "in the future"
    assert jsonable({1: {"a", "b"}, "t": (1, b"\x01"), "d": dt.date(2026, 1, 31)}) == {
        "1": ["a", "b"],
        "t": [1, "01"],
        "d": "2026-01-31",
    }


def test_a_terminal_gets_a_rich_table_with_relative_times() -> None:
    stream = io.StringIO()
    out = Output(stream, styled=True)
    out.table(("SEQ", "WHEN"), [["7", out.when(out.now - 90)]], right=(0,), title="log")
    text = stream.getvalue()
    assert "log" in text and "SEQ" in text and "1m ago" in text
    plain = Output(io.StringIO())  # not a terminal: plain, ISO times
    assert not plain.styled and plain.when(1e9).startswith("2001-09-0")
