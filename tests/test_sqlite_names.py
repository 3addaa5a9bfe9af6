"""SQLite: namespace, field and context names are interned (a table each) by whichever
connection writes them first; another connection finds them, and a namespace no fact
was written to loads empty, whichever connection asks and whenever."""

from __future__ import annotations

from pathlib import Path

from everstore import Sqlite3, Store
from everstore.log import Write


def opened(path: Path) -> Sqlite3:
    backend = Sqlite3(path)
    backend.open()
    return backend


def test_a_new_namespace_loads_empty_until_another_connection_writes_to_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "names.db"
    mine, theirs = opened(path), opened(path)
    theirs.append_one("other/ns", "x", b"1", "ctx", 1.0)
    assert mine.load_namespace("game/p1") == (1, [])
    assert mine.load_namespace("game/p1") == (1, [])  # asked again: still nothing
    seq, _ = theirs.append_one("game/p1", "score", b"7", "ctx", 2.0)
    high, facts = mine.load_namespace("game/p1")
    assert high == seq == 2
    assert [(f.namespace, f.field, f.data) for f in facts] == [("game/p1", "score", b"7")]
    mine.close()
    theirs.close()


def test_names_one_connection_interned_are_found_by_another(tmp_path: Path) -> None:
    path = tmp_path / "names.db"
    mine, theirs = opened(path), opened(path)
    # a transaction of several facts interns a new namespace, field and context
    mine.append([Write("a/b", "f", b"1", "here", 1.0), Write("a/b", "g", b"2", "here", 1.0)])
    # the other connection has none of them cached: it finds each, never a second id
    theirs.append_one("a/b", "f", b"3", "here", 2.0)
    theirs.append([Write("a/b", "g", b"4", "there", 2.0), Write("a/c", "f", b"5", "here", 2.0)])
    mine.append_one("a/c", "g", b"6", "there", 3.0)
    for backend in (mine, theirs, opened(path)):
        _, facts = backend.load_namespace("a/b")
        assert [(f.field, f.data, f.context) for f in facts] == [
            ("f", b"1", "here"),
            ("g", b"2", "here"),
            ("f", b"3", "here"),
            ("g", b"4", "there"),
        ]
        _, facts = backend.load_namespace("a/c")
        assert [(f.field, f.data, f.context) for f in facts] == [
            ("f", b"5", "here"),
            ("g", b"6", "there"),
        ]
    assert opened(path).namespaces("a") == ["a/b", "a/c"]
    mine.close()
    theirs.close()


def test_two_stores_creating_namespaces_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "names.db"
    one, two = Store(Sqlite3(path)), Store(Sqlite3(path))
    for i in range(10):
        store = one if i % 2 else two
        with store.transaction():
            doc = store.storage("docs", f"d{i}")
            doc.n = i
            doc.name = f"d{i}"
    for store in (one, two, Store(Sqlite3(path))):
        assert [store.storage("docs", f"d{i}").n for i in range(10)] == list(range(10))
        assert len(store.namespaces(("docs",))) == 10
