"""docs/cli.md is generated from the command's --help texts and must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from everstore.cli import build_parsers, main
from everstore.cli.docs import render

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is out of date: run `python -m everstore.cli.docs > docs/cli.md` "
        "(or `make docs`)"
    )


def test_the_docs_do_not_depend_on_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    narrow = render()
    monkeypatch.setenv("COLUMNS", "200")
    assert render() == narrow


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    _, commands = build_parsers()
    assert set(commands) == {
        "log", "show", "ls", "history", "diff", "stats",
        "export", "import", "serve", "demo", "migrate",
    }  # fmt: skip
    for name in commands:
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: everstore {name}") and f"## everstore {name}" in render()


def test_python_dash_m_everstore_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "everstore", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: everstore" in result.stdout and "history" in result.stdout
