"""How tests/data/store-0.1.0.db and tests/data/pg-schema-0.1.0.sql were made.

Run once with everstore 0.1.0 (commit b0f0fb8), schema version 1:
``python tests/data/make_v1_fixtures.py``. Later releases must open what it wrote;
the files are kept as they were made, and this script stays as the record of their
content (tests/test_schema.py checks that content after migration).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def fill(store: object) -> None:
    from decimal import Decimal

    s = store.storage("game", "alice")  # type: ignore[attr-defined]
    s.name = "Alice"
    s.round = 1
    s.score = 10
    s.round = 2
    s.score = 25
    with s:
        s.items = ["sword"]
    with s:
        s.items.append("shield")  # a delta
    s.price = Decimal("1.50")
    s.pair = (1, "a")
    del s.score
    with store.transaction():  # type: ignore[attr-defined]
        b = store.storage("game", "bob")  # type: ignore[attr-defined]
        b.name = "Bob"
        b.tags = {"x", "y"}


def main() -> None:
    import everstore

    assert everstore.__version__ == "0.1.0"
    path = HERE / "store-0.1.0.db"
    if path.exists():
        path.unlink()
    with everstore.open(str(path)) as store:
        fill(store)
    from pg_server import start_server

    server = start_server()
    try:
        with everstore.Store(everstore.PostgreSQL(server.conninfo, schema="v1")) as store:
            fill(store)
        dump = subprocess.run(
            [
                str(server.bin_dir / "pg_dump"),
                "--no-owner",
                "--no-privileges",
                "--inserts",
                "-n",
                "v1",
                "-d",
                server.conninfo,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (HERE / "pg-schema-0.1.0.sql").write_text(dump)
    finally:
        server.stop()
    print("wrote", path, os.path.getsize(path), "bytes and pg-schema-0.1.0.sql")


if __name__ == "__main__":
    main()
