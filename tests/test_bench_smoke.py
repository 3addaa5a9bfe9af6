"""Smoke test of the benchmark runner: ``bench/run.py --quick`` runs every workload on
tiny sizes, in child processes, and prints the results table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "bench" / "run.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("appendmuch") is None,
    reason="appendmuch is not installed: only `make bench` installs it (the [bench] extra); "
    "the benchmarks compare against it",
)


def test_quick_benchmark_runs_and_prints_the_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--quick",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(tmp_path / "quick.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| # | workload | unit | everstore | appendmuch | raw / floor |" in done.stdout
    # The PostgreSQL families print their own table, or say why they were skipped.
    assert (
        "| # | workload | unit | everstore | everstore /s | eventsourcing | raw psycopg |"
        in done.stdout
        or "PostgreSQL families (" in done.stdout
    ), done.stdout
    # The PostgreSQL writers family (issue 12) prints its table, or says why it was skipped.
    assert (
        "| # | writers | commits | everstore writes/s | raw psycopg writes/s |" in done.stdout
        or any(
            line.startswith("PostgreSQL families (") and "pg_writers" in line
            for line in done.stdout.splitlines()
        )
    ), done.stdout
    # The versions family's table (everstore.versions against the model of MyDbEngine).
    assert "| # | workload | unit | everstore | file model | raw sqlite |" in done.stdout
    assert (tmp_path / "quick.json").is_file()
