"""Running the ``everstore`` command in a test: its output, or its one-line error."""

from __future__ import annotations

import pytest

from everstore.cli import main

Capture = pytest.CaptureFixture[str]


def output_of(capsys: Capture, argv: list[str]) -> str:
    """What ``everstore argv...`` prints; it must succeed and print no error."""
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def error_of(capsys: Capture, argv: list[str]) -> str:
    """The error ``everstore argv...`` prints: exit 2, one line naming the command,
    no traceback, nothing on stdout."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"everstore {argv[0]}: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    return captured.err
