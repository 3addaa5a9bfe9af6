"""Shared fixtures: every test that takes ``make_backend`` or ``store`` runs once per
backend, so the conformance suite runs unchanged against all of them.

PostgreSQL runs on a throwaway server started for the session (tests/pg_server.py)
only when a test needs it, with a fresh schema per test; the tests are skipped, saying
why, where no server can be had.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from everstore import Backend, Memory, Sqlite3, Store
from pg_server import (
    Location,
    PgServer,
    drop_schema,
    fresh_schema,
    start_server,
    unavailable_reason,
)

if TYPE_CHECKING:
    from everstore.backends.postgresql import PostgreSQL

BackendFactory = Callable[[], Backend]

_BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BackendFactory]:
    """A factory of backend objects that all open the *same* database.

    Calling it twice gives two handles on one log, as two processes would have
    (for Memory: the same in-process log object).
    """
    if backend_kind == "memory":
        shared = Memory()
        yield lambda: shared
    elif backend_kind == "sqlite":
        path = tmp_path / "store.db"
        yield lambda: Sqlite3(path)
    elif backend_kind == "postgresql":
        yield from _postgresql_factory(request.getfixturevalue("pg_schema"))
    else:
        raise AssertionError(backend_kind)


def _postgresql_factory(location: tuple[str, str]) -> Iterator[BackendFactory]:
    from everstore.backends.postgresql import PostgreSQL

    conninfo, schema = location
    made: list[Backend] = []

    def factory() -> Backend:
        backend = PostgreSQL(conninfo, schema=schema)
        made.append(backend)
        return backend

    yield factory
    for backend in made:  # tests leave Stores open: release their connections
        backend.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def pg_schema(pg_server: PgServer) -> Iterator[tuple[str, str]]:
    """``(conninfo, schema)``: a schema no other test uses, dropped afterwards."""
    schema = fresh_schema()
    yield pg_server.conninfo, schema
    drop_schema(pg_server.conninfo, schema)


@pytest.fixture
def location(pg_schema: Location) -> Location:
    """PostgreSQL: ``(conninfo, schema)`` of a fresh schema (as ``pg_schema``)."""
    return pg_schema


@pytest.fixture
def opened(location: Location) -> Iterator[Callable[..., PostgreSQL]]:
    """PostgreSQL: make backends on the test's schema (``schema=`` may name another);
    every one is closed after the test."""
    from everstore.backends.postgresql import PostgreSQL

    made: list[PostgreSQL] = []

    def make(**options: Any) -> PostgreSQL:
        options.setdefault("schema", location[1])
        backend = PostgreSQL(location[0], **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def store(make_backend: BackendFactory) -> Iterator[Store]:
    opened = Store(make_backend())
    yield opened
    opened.close()


_counter = itertools.count()


@pytest.fixture
def unique() -> Callable[[], str]:
    """Fresh namespace parts, so tests sharing a database never collide."""
    return lambda: f"n{next(_counter)}"
