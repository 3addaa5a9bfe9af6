"""Shared fixtures: every test that takes ``make_backend`` or ``store`` runs once per
backend, so the conformance suite runs unchanged against all of them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from everstore import Backend, Memory, Sqlite3, Store

BackendFactory = Callable[[], Backend]

_BACKENDS = ["memory", "sqlite"]


@pytest.fixture(params=_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path) -> BackendFactory:
    """A factory of backend objects that all open the *same* database.

    Calling it twice gives two handles on one log, as two processes would have
    (for Memory: the same in-process log object).
    """
    if backend_kind == "memory":
        shared = Memory()
        return lambda: shared
    if backend_kind == "sqlite":
        path = tmp_path / "store.db"
        return lambda: Sqlite3(path)
    raise AssertionError(backend_kind)


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
