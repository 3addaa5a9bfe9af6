"""Child Python processes for the tests that need real other processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["child"]


@contextlib.contextmanager
def child(script: Path, *args: str, deadline: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """A Python child running ``script`` with line-buffered pipes, killed if it
    outlives ``deadline`` seconds (the test then fails) or the ``with`` block."""
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    watchdog = threading.Timer(deadline, proc.kill)
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def expect_line(proc: subprocess.Popen[str], wanted: str | None = None) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        proc.kill()
        raise AssertionError(f"child ended early (rc={proc.wait()}): {proc.stderr.read()}")
    line = line.rstrip("\n")
    if wanted is not None:
        assert line == wanted
    return line


def start_together(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every child is ready, then let them all go at once."""
    for proc in procs:
        expect_line(proc, "ready")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def expect_clean_exit(proc: subprocess.Popen[str], timeout: float) -> None:
    """The child exits with status 0 within ``timeout`` seconds, writing nothing to
    standard error."""
    assert proc.wait(timeout=timeout) == 0
    assert proc.stderr is not None and proc.stderr.read() == ""
