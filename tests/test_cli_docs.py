"""docs/cli.md is generated from the command's --help texts and must be up to date."""

from __future__ import annotations

import re
import shlex
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
        "verify", "erase", "prune", "export", "import", "serve", "demo", "migrate",
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


INSPECTOR = DOCS.parent / "inspector.md"
#: what differs from one run to the next: ISO times, unix times, the hour of growth
_VARYING = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"), "<time>"),
    (re.compile(r'"time": \d+\.\d+'), '"time": <time>'),
    (re.compile(r"^\d{4}-\d\d-\d\d \d\d:00 ", re.M), "<hour> "),
]


def _walk_through() -> list[tuple[list[str], str]]:
    """The ``$ everstore ...`` commands of docs/inspector.md's console blocks, in
    order, each with the output the page shows after it."""
    steps: list[tuple[list[str], str]] = []
    for block in re.findall(r"```console\n(.*?)```", INSPECTOR.read_text(), re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, shown = chunk.partition("\n")
            steps.append((shlex.split(command), shown))
    return steps


def _normal(text: str) -> str:
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def test_the_inspector_walk_through_runs_as_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    steps = _walk_through()
    assert len(steps) >= 10
    for argv, shown in steps:
        assert argv[0] == "everstore"
        capsys.readouterr()
        assert main(argv[1:]) == 0, argv
        printed = capsys.readouterr()
        if argv[1] == "demo":
            continue  # its story is the demo's own; only the store it leaves matters
        assert _normal(printed.out + printed.err) == _normal(shown), " ".join(argv)
