"""How tests/data/pg-schema-v3.sql was made: a PostgreSQL store of schema version 3,
the layout everstore wrote before version 4 (commits notified in every transaction,
the counter row held through the flush).

Run once with everstore at commit e36850b (the last one writing version 3), from a
checkout of it: ``PYTHONPATH=<checkout>/src python tests/data/make_v3_fixture.py``.
The file is kept as it was made; tests/test_schema_postgresql.py checks its content
after migration.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main() -> None:
    from make_v1_fixtures import fill

    import everstore
    from everstore.backends.postgresql import schema as pg_schema
    from pg_server import start_server

    assert getattr(pg_schema, "SCHEMA_VERSION", 3) == 3, "run with the release writing v3"
    server = start_server()
    try:
        with everstore.Store(everstore.PostgreSQL(server.conninfo, schema="v3")) as store:
            fill(store)
        assert server.bin_dir is not None
        dump = subprocess.run(
            [
                str(server.bin_dir / "pg_dump"),
                "--no-owner",
                "--no-privileges",
                "--inserts",
                "-n",
                "v3",
                "-d",
                server.conninfo,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (HERE / "pg-schema-v3.sql").write_text(dump)
    finally:
        server.stop()
    print("wrote pg-schema-v3.sql")


if __name__ == "__main__":
    main()
