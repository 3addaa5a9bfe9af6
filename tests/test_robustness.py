"""Damaged and foreign SQLite files (docs/integrity.md, "Damaged and foreign files").

A real store of 5,000 facts over 200 namespaces, some of them values that spill onto
overflow pages, is damaged on a copy in every way a file gets damaged: truncated,
bytes overwritten in the middle of its pages (aimed at the log's and an index's
pages), replaced by random bytes, by nothing, by text, by another program's SQLite
database, or left beside a corrupt write-ahead log. Opened read-only and read-write,
and read in full (every namespace, field, value and history, and the follow feed),
each copy must give either a typed everstore error naming the file, or exactly what
the undamaged store gave; and the damaged bytes must be left as they were.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import everstore
from everstore import BackendError, CorruptStoreError, DecodeError, SchemaError, Sqlite3, Store

#: the errors a damaged file may raise; anything else is a bug
TYPED = (SchemaError, BackendError, DecodeError)

NAMESPACES = 200
FACTS = 5_000


def _build(path: Path) -> None:
    rng = random.Random(14)
    with everstore.open(path) as store, store.transaction():
        for i in range(FACTS):
            ns = store.namespace(("robust", f"ns{i % NAMESPACES:03d}"))
            field = f"f{rng.randrange(6)}"
            if i % 250 == 0:
                value: Any = "large " * rng.randrange(2_000, 12_000)  # overflow pages
            elif i % 3 == 0:
                value = (i, f"text {i}", i / 7)
            else:
                value = f"value {i} " + "x" * rng.randrange(0, 200)
            store.write(ns, field, value)


Parts = dict[tuple[Any, ...], Any]


def _read_parts(store: Store) -> Iterator[tuple[tuple[Any, ...], Callable[[], Any]]]:
    """Every part of the store a reader can ask for, as (key, read) pairs, in an
    order that asks for the namespaces' names first."""
    yield ("namespaces",), lambda: store.namespaces()
    yield (
        ("follow",),
        lambda: [(c.seq, c.namespace, c.field, c.data) for c in store.follow(timeout=0)],
    )
    for i in range(NAMESPACES):
        parts = ("robust", f"ns{i:03d}")
        yield ("fields", parts), lambda parts=parts: store.fields(store.namespace(parts))
        for f in range(6):
            field = f"f{f}"
            yield (
                ("history", parts, field),
                lambda parts=parts, field=field: _history(store, parts, field),
            )
            yield (
                ("value", parts, field),
                lambda parts=parts, field=field: _value(store, parts, field),
            )


def _history(store: Store, parts: tuple[str, ...], field: str) -> list[Any] | None:
    ns = store.namespace(parts)
    return store.history(ns, field).values() if field in store.fields(ns) else None


def _value(store: Store, parts: tuple[str, ...], field: str) -> Any:
    ns = store.namespace(parts)
    return store.read(ns, field) if field in store.fields(ns) else None


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Parts]:
    path = tmp_path_factory.mktemp("robust") / "original.db"
    _build(path)
    assert not Path(f"{path}-wal").exists()  # checkpointed on close: one file holds it
    with everstore.open(path, readonly=True) as store:
        parts = {key: read() for key, read in _read_parts(store)}
    assert len(parts[("namespaces",)]) == NAMESPACES
    assert len(parts[("follow",)]) == FACTS
    return path, parts


@dataclass
class Outcome:
    #: the typed error of the open, if it failed
    open_error: Exception | None = None
    #: the parts read back exactly
    same: int = 0
    #: typed errors of reads
    errors: int = 0
    #: the types of the typed errors of reads
    kinds: set[type[Exception]] = field(default_factory=set)
    #: the parts read back different (only counted, not refused, with ``lenient``)
    wrong: list[tuple[Any, ...]] = field(default_factory=list)


def _files(path: Path) -> dict[str, tuple[bytes, int] | None]:
    found: dict[str, tuple[bytes, int] | None] = {}
    for name in (str(path), f"{path}-wal"):
        try:
            found[name] = (Path(name).read_bytes(), os.stat(name).st_mtime_ns)
        except FileNotFoundError:
            found[name] = None
        if name.endswith("-wal") and found[name] is not None and found[name][0] == b"":  # type: ignore[index]
            found[name] = None
    return found


def _check_error(error: Exception, path: Path) -> None:
    assert isinstance(error, TYPED), f"{type(error).__name__}: {error}"
    assert str(path) in str(error), error


def _attempt(
    path: Path,
    parts: Parts,
    *,
    readonly: bool,
    wal_recovered: bool = False,
    lenient: bool = False,
) -> Outcome:
    """Open ``path`` and read every part: each read gives a typed error or exactly
    the original's part. Nothing of the file (nor of its WAL) may change, except
    that with ``wal_recovered`` a WAL may be recovered (see test_a_corrupt_wal)."""
    before = _files(path)
    outcome = Outcome()
    try:
        store = Store(Sqlite3(path, readonly=readonly))
    except TYPED as error:
        _check_error(error, path)
        outcome.open_error = error
    else:
        with store:
            for key, read in _read_parts(store):
                try:
                    got = read()
                except TYPED as error:
                    _check_error(error, path)
                    outcome.errors += 1
                    outcome.kinds.add(type(error))
                    continue
                if got == parts[key]:
                    outcome.same += 1
                else:
                    assert lenient, f"wrong value for {key}"
                    outcome.wrong.append(key)
    # SQLite may leave an empty WAL behind, or delete one (a WAL holding no frame
    # is no WAL): the database's own bytes, and a WAL's that held frames, are untouched.
    after = _files(path)
    if wal_recovered:
        del before[f"{path}-wal"], after[f"{path}-wal"]
    assert after == before, f"{path} was written"
    return outcome


def _both(path: Path, parts: Parts) -> tuple[Outcome, Outcome]:
    return _attempt(path, parts, readonly=True), _attempt(path, parts, readonly=False)


def _copy(original: tuple[Path, Parts], tmp_path: Path) -> tuple[Path, Parts]:
    source, parts = original
    path = tmp_path / "damaged.db"
    shutil.copyfile(source, path)
    return path, parts


def _page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big") or 65536


def _root_pages(path: Path) -> dict[str, int]:
    uri = f"file:{path}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0")
        return {name: page for name, page in rows}
    finally:
        conn.close()


def _pages_of(path: Path, name: str) -> list[int]:
    """The pages of table or index ``name`` (SQLite's dbstat table)."""
    uri = f"file:{path}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute("SELECT pageno FROM dbstat WHERE name = ? ORDER BY pageno", (name,))
        return [row[0] for row in rows]
    finally:
        conn.close()


# -- the undamaged store --------------------------------------------------------


def test_the_undamaged_copy_reads_whole(original: tuple[Path, Parts], tmp_path: Path) -> None:
    path, parts = _copy(original, tmp_path)
    for outcome in _both(path, parts):
        assert outcome.open_error is None and outcome.errors == 0
        assert outcome.same == len(parts)


# -- truncated ------------------------------------------------------------------


@pytest.mark.parametrize("keep", ["half", "one page", "mid-page", "all but a page"])
def test_a_truncated_file(original: tuple[Path, Parts], tmp_path: Path, keep: str) -> None:
    path, parts = _copy(original, tmp_path)
    size, page = path.stat().st_size, _page_size(path)
    length = {
        "half": size // 2,
        "one page": page,
        "mid-page": size // 2 + page // 2 + 7,
        "all but a page": size - page,
    }[keep]
    with open(path, "r+b") as file:
        file.truncate(length)
    for outcome in _both(path, parts):
        # A file cut short is refused when opened: nothing of it is read.
        assert isinstance(outcome.open_error, CorruptStoreError), keep
        assert "damaged" in str(outcome.open_error)


# -- overwritten in the middle --------------------------------------------------


def _overwrite(path: Path, offset: int, length: int, seed: int) -> None:
    noise = random.Random(seed).randbytes(length)
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(noise)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", ["log leaf", "log root", "index", "names", "schema"])
def test_bytes_overwritten_in_a_page_header(
    original: tuple[Path, Parts], tmp_path: Path, target: str, seed: int
) -> None:
    """Noise over a b-tree page's header and cell pointers: SQLite notices it
    (the page no longer parses) the first time the page is read."""
    path, parts = _copy(original, tmp_path)
    page_size = _page_size(path)
    roots = _root_pages(path)
    rng = random.Random(seed)
    page = {
        "log leaf": lambda: rng.choice(_pages_of(path, "everstore_log")[1:]),
        "log root": lambda: roots["everstore_log"],
        "index": lambda: rng.choice(_pages_of(path, "everstore_log_ns_field")),
        "names": lambda: roots["everstore_namespaces"],
        "schema": lambda: 1,
    }[target]()
    start = (page - 1) * page_size + (100 if page == 1 else 0)
    _overwrite(path, start, 24, seed)
    outcomes = _both(path, parts)
    assert any(o.open_error is not None or o.errors for o in outcomes), "damage unseen"
    for outcome in outcomes:
        assert outcome.kinds <= {CorruptStoreError, DecodeError}
        assert outcome.open_error is None or isinstance(outcome.open_error, CorruptStoreError)


@pytest.mark.parametrize("seed", range(12))
def test_bytes_overwritten_anywhere_in_the_middle(
    original: tuple[Path, Parts], tmp_path: Path, seed: int
) -> None:
    """Noise at a random place of the file's middle half: a typed error or the
    original values -- except where the noise leaves a page readable (inside an
    index entry, say): SQLite keeps no checksum of a page's content, so a read
    trusts it. Sqlite3.check_pages() (SQLite's quick_check) finds every such case."""
    path, parts = _copy(original, tmp_path)
    size = path.stat().st_size
    rng = random.Random(seed)
    _overwrite(path, rng.randrange(size // 4, 3 * size // 4), 512, seed)
    outcomes = (
        _attempt(path, parts, readonly=True, lenient=True),
        _attempt(path, parts, readonly=False, lenient=True),
    )
    if any(outcome.wrong for outcome in outcomes):
        with Store(Sqlite3(path, readonly=True)) as store:
            assert isinstance(store.backend, Sqlite3)
            assert store.backend.check_pages() != []
    else:
        assert all(o.open_error is not None or o.errors for o in outcomes), "damage unseen"


def test_check_pages_of_a_sound_file(original: tuple[Path, Parts], tmp_path: Path) -> None:
    path, _ = _copy(original, tmp_path)
    with Store(Sqlite3(path, readonly=True)) as store:
        assert isinstance(store.backend, Sqlite3)
        assert store.backend.check_pages() == []
        assert store.backend.check_pages(full=True) == []


# -- not a store at all ---------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        random.Random(1).randbytes(1_000_000),
        random.Random(2).randbytes(100),
        b"SQLite format 3\x00" + random.Random(3).randbytes(8_192),
        b"name,score\nalice,10\n" * 500,
        b"ni un magasin, ni une base\n" * 10,
    ],
    ids=["random 1 MB", "random 100 B", "SQLite magic then noise", "csv", "text"],
)
def test_a_file_that_is_not_a_database(
    original: tuple[Path, Parts], tmp_path: Path, content: bytes
) -> None:
    _, parts = original
    path = tmp_path / "not.db"
    path.write_bytes(content)
    for outcome in _both(path, parts):
        assert isinstance(outcome.open_error, CorruptStoreError)


def test_an_empty_file_is_a_new_database(original: tuple[Path, Parts], tmp_path: Path) -> None:
    """An empty file is what SQLite (and ``touch``) call a new database: read-only it
    holds no store; read-write, a store is created in it."""
    _, parts = original
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    readonly = _attempt(path, parts, readonly=True)
    assert isinstance(readonly.open_error, SchemaError)
    with everstore.open(path) as store:
        assert store.namespaces() == []


def _other_program(path: Path, statements: list[str]) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


OTHER_PROGRAMS = {
    "other tables": [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
        "INSERT INTO users(name) VALUES ('alice'), ('bob')",
        "CREATE INDEX users_name ON users(name)",
    ],
    "our log's name, other columns": [
        "CREATE TABLE everstore_log (id INTEGER PRIMARY KEY, line TEXT)",
        "INSERT INTO everstore_log(line) VALUES ('started')",
    ],
    "our meta's name, other columns": [
        "CREATE TABLE everstore_meta (k, v)",
        "INSERT INTO everstore_meta VALUES ('schema_version', 'x')",
    ],
    "every table of ours, other columns": [
        f"CREATE TABLE everstore_{suffix} (something)"
        for suffix in ("meta", "log", "namespaces", "fields", "contexts", "blobs")
    ]
    + ["INSERT INTO everstore_meta VALUES ('not a version')"],
    "another application id": [
        "PRAGMA application_id = 1234",
        "CREATE TABLE things (x)",
    ],
    "another application id, no tables": ["PRAGMA application_id = 1234"],
}


@pytest.mark.parametrize("name", OTHER_PROGRAMS)
def test_another_programs_database(original: tuple[Path, Parts], tmp_path: Path, name: str) -> None:
    """Another program's SQLite file is refused, read-only and read-write: everstore
    adds no table to it and does not switch it to WAL."""
    _, parts = original
    path = tmp_path / "other.db"
    _other_program(path, OTHER_PROGRAMS[name])
    for outcome in _both(path, parts):
        assert isinstance(outcome.open_error, SchemaError), name
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


# -- a corrupt write-ahead log ----------------------------------------------------


def _with_wal(original: tuple[Path, Parts], tmp_path: Path) -> tuple[Path, Parts, Path]:
    """A copy with committed facts still in its WAL (copied while a writer held it
    open, as a crash would leave it)."""
    source, parts = original
    work = tmp_path / "work.db"
    shutil.copyfile(source, work)
    backend = Sqlite3(work)
    store = Store(backend)
    backend.connection.execute("PRAGMA wal_autocheckpoint = 0")
    store.write(store.namespace(("robust", "late")), "f0", "in the WAL")
    path = tmp_path / "damaged.db"
    shutil.copyfile(work, path)
    shutil.copyfile(f"{work}-wal", f"{path}-wal")
    store.close()
    return path, parts, Path(f"{path}-wal")


@pytest.mark.parametrize("where", ["frame header", "frame body", "wal header"])
def test_a_corrupt_wal(original: tuple[Path, Parts], tmp_path: Path, where: str) -> None:
    """SQLite checksums every WAL frame: a damaged frame and what follows it are
    not replayed, so the store reads as it was before them (here: the original).
    A read-only open leaves the WAL as it was; a read-write one recovers it as after
    a crash (SQLite cannot tell a damaged frame from one torn by a crash), which
    discards the frames that were never whole: the database file is not written."""
    path, parts, wal = _with_wal(original, tmp_path)
    offset = {"wal header": 8, "frame header": 32 + 8, "frame body": 32 + 24 + 100}[where]
    _overwrite(wal, offset, 16, 7)
    readonly = _attempt(path, parts, readonly=True)
    readwrite = _attempt(path, parts, readonly=False, wal_recovered=True)
    for outcome in (readonly, readwrite):
        assert outcome.open_error is not None or outcome.same == len(parts)
