"""The command line, driven through its entry point like a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from everstore import Sqlite3, Store
from everstore.cli import main


def test_demo_writes_reads_and_can_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"
    assert main(["demo", "--path", str(path)]) == 0
    first = capsys.readouterr().out
    assert "within(player, round=2).score = 25" in first
    assert "at seq 9: score = 40, inventory = ['sword', 'shield']" in first
    assert main(["demo", "--path", str(path)]) == 0
    assert "facts already in the file: 10" in capsys.readouterr().out
    store = Store(Sqlite3(path))
    assert len(store.storage("game", "alice").__history__()["round"]) == 6


def test_namespaces_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.db"
    with Store(Sqlite3(path)) as store:
        store.storage("a", "b").x = 1
        store.storage("a", "b").x = 2
        store.storage("c").y = "z"
    assert main(["namespaces", str(path)]) == 0
    assert capsys.readouterr().out.split() == ["a/b", "c"]
    assert main(["namespaces", str(path), "a"]) == 0
    assert capsys.readouterr().out.split() == ["a/b"]
    assert main(["show", str(path), "a/b", "x"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 2 and "x = 1" in shown[0] and "x = 2" in shown[1]
    assert "test_cli.test_namespaces_and_show:" in shown[0]


def test_installed_command_runs_the_demo(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "everstore.cli", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "everstore-demo.db").exists()
