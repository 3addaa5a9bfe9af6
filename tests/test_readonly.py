"""Opening an SQLite store read-only: in a writable place, and for real in a directory
this process cannot write (a read-only bind mount when running as root, where
permission bits do not apply; a directory without write permission otherwise)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import everstore
from everstore import BackendError, ReadOnlyError, SchemaError, Sqlite3, Store
from two_stores import assert_reader_sees_each_commit

DATA = Path(__file__).resolve().parent / "data"
DIGEST = hashlib.sha256(b"blob").digest()


def _make_store(path: Path) -> None:
    with everstore.open(path) as store:
        store.storage("doc").title = "first"
        store.storage("doc").count = 1
        store.backend.put_blobs([(DIGEST, b"blob")])


def _assert_every_write_refused(store: Store, path: Path) -> None:
    doc = store.storage("doc")
    with pytest.raises(ReadOnlyError, match=str(path)):
        doc.title = "changed"
    with pytest.raises(ReadOnlyError, match="read-only"), store.transaction():
        doc.title = "changed"
        doc.other = 2
    with pytest.raises(ReadOnlyError):
        del doc.count
    with pytest.raises(ReadOnlyError):
        store.backend.put_blobs([(hashlib.sha256(b"x").digest(), b"x")])
    assert (doc.title, doc.count, "other" in doc) == ("first", 1, False)
    assert len(doc.__history__()["title"]) == 1


def test_readonly_reads_and_refuses_every_write(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    _make_store(path)
    before = path.read_bytes()
    with everstore.open(path, readonly=True) as store:
        assert isinstance(store.backend, Sqlite3) and store.backend.readonly
        assert store.storage("doc").title == "first"
        assert store.backend.get_blob(DIGEST) == b"blob"
        _assert_every_write_refused(store, path)
        last = store.last_seq
    # A read-only connection leaves SQLite's -shm index (and an empty -wal) behind.
    assert path.read_bytes() == before
    assert Path(f"{path}-wal").read_bytes() == b""
    with everstore.open(path) as store:
        assert store.last_seq == last


def test_readonly_sees_another_writers_commits(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    _make_store(path)
    writer = everstore.open(path)
    reader = everstore.open(path, readonly=True)
    assert reader.storage("doc").title == "first"
    assert_reader_sees_each_commit(writer, reader, ["second", "third"])


def test_readonly_never_creates_or_migrates(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(BackendError, match="cannot open"):
        Store(Sqlite3(missing, readonly=True))
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(SchemaError, match="holds no everstore store"):
        Store(Sqlite3(empty, readonly=True))
    assert empty.read_bytes() == b""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="another program's SQLite database"):
        Store(Sqlite3(other, readonly=True))
    old = tmp_path / "old.db"
    shutil.copyfile(DATA / "store-0.1.0.db", old)
    original = old.read_bytes()
    with pytest.raises(SchemaError, match=r"version 1.*once writable"):
        Store(Sqlite3(old, readonly=True))
    assert old.read_bytes() == original


def test_readonly_on_a_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "uri.db"
    _make_store(path)
    with everstore.open(f"file:{path}?cache=private", readonly=True) as store:
        assert store.storage("doc").title == "first"
        with pytest.raises(ReadOnlyError):
            store.storage("doc").title = "no"


# -- a directory this process cannot write -----------------------------------------


@contextmanager
def _read_only(directory: Path) -> Iterator[Path]:
    """``directory`` as a place this process cannot write to."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)
        return
    # root ignores permission bits: a read-only bind mount binds even root.
    mount_point = directory.parent / f"{directory.name}-ro"
    mount_point.mkdir()
    bound = subprocess.run(["mount", "--bind", str(directory), str(mount_point)], check=False)
    if bound.returncode != 0:
        pytest.skip("running as root, and a read-only bind mount cannot be made here")
    try:
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(mount_point)], check=False
        )
        if remounted.returncode != 0:
            pytest.skip("running as root, and a bind mount cannot be made read-only here")
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            # Still busy (a test failed with a connection open): detach it anyway.
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def test_a_store_in_a_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "shelf"
    directory.mkdir()
    _make_store(directory / "s.db")
    assert os.listdir(directory) == ["s.db"]  # closed cleanly: no -wal, no -shm
    with _read_only(directory) as place:
        path = place / "s.db"
        with pytest.raises(OSError):
            (place / "probe").write_bytes(b"")
        with pytest.raises(BackendError, match="readonly=True"):
            everstore.open(path)
        store = everstore.open(path, readonly=True)
        try:
            assert store.storage("doc").title == "first"
            assert store.backend.get_blob(DIGEST) == b"blob"
            _assert_every_write_refused(store, path)
        finally:
            store.close()
        assert os.listdir(place) == ["s.db"]


def test_a_live_store_seen_through_a_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "live"
    directory.mkdir()
    path = directory / "s.db"
    _make_store(path)
    writer = everstore.open(path)  # keeps the -wal and -shm files in place
    try:
        writer.storage("doc").title = "second"
        with _read_only(directory) as place:
            reader = everstore.open(place / "s.db", readonly=True)
            try:
                assert reader.storage("doc").title == "second"
                writer.storage("doc").title = "third"
                assert reader.storage("doc").title == "third"
                with pytest.raises(ReadOnlyError):
                    reader.storage("doc").title = "no"
            finally:
                reader.close()
                # SQLite closes a file's descriptors only once no connection of the
                # process holds a lock on it: the writer goes before the unmount.
                writer.close()
    finally:
        writer.close()
