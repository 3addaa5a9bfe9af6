"""everstore.open(): one function from a URL or a path to a Store on the right backend."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

import everstore
from everstore import Memory, Sqlite3, Store
from everstore.log import Write
from two_stores import assert_reader_sees_each_commit


def _written_and_reread(target: str | os.PathLike[str]) -> Store:
    with everstore.open(target) as store:
        store.storage("doc").title = "kept"
    reopened = everstore.open(target)
    assert reopened.storage("doc").title == "kept"
    return reopened


@pytest.mark.parametrize("target", [":memory:", "memory://"])
def test_memory_targets(target: str) -> None:
    store = everstore.open(target)
    assert isinstance(store.backend, Memory)
    store.storage("doc").title = "x"
    assert store.storage("doc").title == "x"


def test_a_plain_path_and_a_pathlike_are_sqlite_files(tmp_path: Path) -> None:
    for target in (str(tmp_path / "a.db"), tmp_path / "b.db"):
        store = _written_and_reread(target)
        assert isinstance(store.backend, Sqlite3)
        assert store.backend.path == os.fspath(target)
        store.close()


def test_sqlite_urls_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = _written_and_reread("sqlite:///rel.db")
    assert isinstance(relative.backend, Sqlite3) and (tmp_path / "rel.db").exists()
    relative.close()
    absolute = _written_and_reread(f"sqlite:///{tmp_path / 'abs.db'}")
    assert isinstance(absolute.backend, Sqlite3) and (tmp_path / "abs.db").exists()
    absolute.close()


def test_options_reach_the_backend_and_codec_the_store(tmp_path: Path) -> None:
    codec = everstore.Codec()
    store = everstore.open(tmp_path / "c.db", busy_timeout=1.5, prefix="app", codec=codec)
    assert isinstance(store.backend, Sqlite3)
    assert (store.backend.busy_timeout, store.backend.prefix) == (1.5, "app")
    assert store.codec is codec
    store.close()


def test_unknown_scheme_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="unknown scheme 'mysql'"):
        everstore.open("mysql://db/app")


def _url(conninfo: str) -> str:
    """The conninfo of the test server as a postgresql:// URL (its host may be a
    socket directory, which a URL carries as a query parameter)."""
    psycopg = pytest.importorskip("psycopg")
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    dbname = quote(str(params.pop("dbname", "postgres")))
    query = urlencode({k: str(v) for k, v in params.items()})
    return f"postgresql:///{dbname}?{query}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls(pg_schema: tuple[str, str], scheme: str) -> None:
    conninfo, schema = pg_schema
    url = _url(conninfo).replace("postgresql://", f"{scheme}://", 1)
    with everstore.open(url, schema=schema, max_size=2) as store:
        assert type(store.backend).__name__ == "PostgreSQL"
        assert store.backend is not None and store.backend.schema == schema
        store.storage("doc").title = "on the server"
    with everstore.open(url, schema=schema) as reopened:
        assert reopened.storage("doc").title == "on the server"
    assert everstore.PostgreSQL is type(reopened.backend)


def test_a_file_uri_is_a_shared_file_whose_changes_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = everstore.open("file:shared.db")
    second = Store(Sqlite3("file:shared.db?cache=private"))
    assert (tmp_path / "shared.db").exists()
    first.storage("doc").title = "one"
    assert second.storage("doc").title == "one"
    second.storage("doc").title = "two"
    assert first.storage("doc").title == "two"
    assert first.backend.change_token() == second.backend.change_token()
    first.close()
    second.close()


def test_private_databases_keep_a_constant_token() -> None:
    for target in (":memory:", "", "file::memory:", "file:x?mode=memory"):
        backend = Sqlite3(target)
        with Store(backend) as store:
            token = backend.change_token()
            store.storage("doc").title = "x"
            assert backend.change_token() == token
            assert backend.token_after_commit(token, 1) == token


def test_a_shared_memory_uri_sees_the_other_connections_writes() -> None:
    uri = "file:everstore-test-shared?mode=memory&cache=shared"
    assert_reader_sees_each_commit(Store(Sqlite3(uri)), Store(Sqlite3(uri)), ["one", "two"])


def test_token_after_commit_proves_only_a_lone_commit(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    mine, other = Sqlite3(path), Sqlite3(path)
    mine.open()
    other.open()
    # The first write of a name interns it in the same commit: still a lone commit.
    before = mine.change_token()
    mine.append_one("doc", "a", b"0", "test", 0.5)
    assert mine.token_after_commit(before, 1) == mine.change_token() != before
    before = mine.change_token()
    mine.append_one("doc", "a", b"1", "test", 1.0)
    after = mine.token_after_commit(before, 1)
    assert after is not None and after == mine.change_token() != before
    before = mine.change_token()
    other.append_one("doc", "a", b"2", "test", 2.0)
    mine.append_one("doc", "a", b"3", "test", 3.0)
    assert mine.token_after_commit(before, 1) is None
    before = mine.change_token()
    mine.append([Write("doc", "a", data, "test", 4.0) for data in (b"4", b"5")])
    assert mine.token_after_commit(before, 2) == mine.change_token()
    mine.close()
    other.close()


def test_synchronous_full_syncs_every_commit_and_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    with everstore.open(path, synchronous="full") as store:
        assert isinstance(store.backend, Sqlite3)
        assert store.backend.connection.execute("PRAGMA synchronous").fetchone()[0] == 2
        store.storage("doc").title = "kept"
    with everstore.open(path) as store:  # the default: NORMAL
        assert isinstance(store.backend, Sqlite3)
        assert store.backend.connection.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert store.storage("doc").title == "kept"


@pytest.mark.parametrize("value", ["FULL", "off", "extra", 2])
def test_synchronous_takes_normal_or_full_only(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValueError, match="synchronous is 'normal' or 'full'"):
        Sqlite3(tmp_path / "x.db", synchronous=value)  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()
