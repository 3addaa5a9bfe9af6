"""What SQLite's own page checks cost, against opening a store (issue 14): the
numbers behind the decision that opening does not run ``PRAGMA quick_check``
(docs/integrity.md, "Damaged and foreign files").

Builds stores of growing size (facts of ~320 bytes over 5,000 namespaces), then
times, on a warm page cache, a read-only open, ``Sqlite3.check_pages()``
(``quick_check``) and ``check_pages(full=True)`` (``integrity_check``); the best of
three each. A cold cache adds the read of the whole file from disk to both checks,
and nothing to the open.

    .venv/bin/python bench/check_pages.py [--workdir DIR] [--facts 100000,400000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import everstore
from everstore import Sqlite3, Store


def _build(path: Path, facts: int) -> None:
    with everstore.open(path) as store:
        for start in range(0, facts, 10_000):
            with store.transaction():
                for i in range(start, min(start + 10_000, facts)):
                    ns = store.namespace(("big", f"n{i % 5000}"))
                    store.write(ns, f"f{i % 7}", f"value {i} " + "y" * 300)


def _best(action: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def _open(path: Path) -> None:
    Store(Sqlite3(path, readonly=True)).close()


def _check(path: Path, full: bool) -> None:
    backend = Sqlite3(path, readonly=True)
    with Store(backend):
        assert backend.check_pages(full=full) == []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--facts", default="100000,400000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        print("| facts | file (MB) | open (ms) | quick_check (ms) | integrity_check (ms) |")
        print("|---:|---:|---:|---:|---:|")
        for facts in (int(n) for n in args.facts.split(",")):
            path = workdir / f"check-{facts}.db"
            if not path.exists():
                _build(path, facts)
            size = path.stat().st_size / 1e6
            opened = _best(lambda path=path: _open(path)) * 1e3
            quick = _best(lambda path=path: _check(path, False)) * 1e3
            full = _best(lambda path=path: _check(path, True)) * 1e3
            print(f"| {facts:,} | {size:.0f} | {opened:.1f} | {quick:.0f} | {full:.0f} |")


if __name__ == "__main__":
    main()
