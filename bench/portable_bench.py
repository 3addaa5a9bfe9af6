"""Export and import of a whole store (everstore.portable, issue 13), timed.

    .venv/bin/python bench/portable_bench.py              # 100,000 facts
    .venv/bin/python bench/portable_bench.py --facts 5000 # a quick run

Builds an SQLite store of ``--facts`` facts (namespaces of 10 fields, ints, short
strings, lists changed by deltas, tombstones: one in 100), then times, each once:
exporting it to a file, importing that file into a fresh SQLite store, and, when a
PostgreSQL server can run here (tests/pg_server.py, a throwaway one), importing it into
PostgreSQL and exporting it from there. Every import is checked fact for fact against
the source. Prints a Markdown table (facts per second; the stream's size).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from everstore import Sqlite3, Store
from everstore.portable import export_facts, import_facts


def build(store: Store, facts: int) -> None:
    """``facts`` facts, committed in transactions of 1,000."""
    written = 0
    i = 0
    while written < facts:
        with store.transaction():
            for _ in range(min(1000, facts - written)):
                ns = store.storage("bench", f"obj{i // 10}")
                field = f"f{i % 10}"
                kind = i % 100
                if kind == 99 and hasattr(ns, field):
                    delattr(ns, field)
                elif kind % 3 == 0:
                    setattr(ns, field, i)
                elif kind % 3 == 1:
                    setattr(ns, field, f"value {i}")
                else:
                    setattr(ns, field, [i, i + 1])
                written += 1
                i += 1


def timed(
    label: str, rows: list[tuple[str, float, int]], count: int, run: Callable[[], int]
) -> None:
    start = time.perf_counter()
    done = run()
    elapsed = time.perf_counter() - start
    assert done == count, (label, done, count)
    rows.append((label, elapsed, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=100_000)
    args = parser.parse_args()
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        stream = root / "export.jsonl"
        with Store(Sqlite3(root / "source.db")) as source:
            build(source, args.facts)
            total = source.last_seq
            reference = source.facts()

            def export_from(store: Store) -> int:
                with stream.open("w") as out:
                    return export_facts(store, out)

            timed("export, SQLite -> file", rows, total, lambda: export_from(source))
        size = stream.stat().st_size

        def import_into(store: Store) -> int:
            with stream.open() as lines:
                return import_facts(store, lines)

        with Store(Sqlite3(root / "copy.db")) as copy:
            timed("import, file -> SQLite", rows, total, lambda: import_into(copy))
            assert copy.facts() == reference
        pg_rows(rows, total, reference, import_into, export_from)
    print(f"{total:,} facts, stream {size / 1e6:.1f} MB ({size / total:.0f} bytes per fact)\n")
    print("| operation | seconds | facts per second |")
    print("| --- | --: | --: |")
    for label, elapsed, count in rows:
        print(f"| {label} | {elapsed:.2f} | {count / elapsed:,.0f} |")


def pg_rows(
    rows: list[tuple[str, float, int]],
    total: int,
    reference: list[object],
    import_into: Callable[[Store], int],
    export_from: Callable[[Store], int],
) -> None:
    from pg_server import fresh_schema, start_server, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        print(f"PostgreSQL skipped: {reason}")
        return
    from everstore.backends.postgresql import PostgreSQL

    server = start_server()
    try:
        with Store(PostgreSQL(server.conninfo, schema=fresh_schema())) as pg:
            timed("import, file -> PostgreSQL", rows, total, lambda: import_into(pg))
            assert pg.facts() == reference
            timed("export, PostgreSQL -> file", rows, total, lambda: export_from(pg))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
