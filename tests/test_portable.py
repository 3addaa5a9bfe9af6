"""everstore.portable: export a store as a JSON-lines stream, import it into any store.

The round trip SQLite -> PostgreSQL -> SQLite must give back the log fact for fact:
seq, time, namespace, field, data bytes and context.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import everstore
from everstore import Memory, Sqlite3, Store
from everstore.errors import ConflictError
from everstore.log import Write
from everstore.portable import (
    EXPORT_PAGE,
    FORMAT,
    IMPORT_BATCH,
    VERSION,
    ImportFormatError,
    StoreNotEmptyError,
    export_facts,
    import_facts,
)
from pg_server import Location


def _fill(store: Store) -> None:
    """A little of everything a log holds."""
    player = store.storage("game", "player1")
    player.name = "Alice"
    player.score = 10
    player.ratio = 0.1 + 0.2
    player.big = 10**40
    player.raw = b"\xff\x00\xfe"
    player.text = 'snowman \u2603, emoji \U0001f600, quote " and \\ and \n'
    with player:
        player.items = ["sword"]
    with player:
        player.items.append("shield")  # a delta
    with player:
        player.bag = {"gold": 1}
    with player:
        player.bag["silver"] = 2  # a delta
    with player:
        player.seen = {1, 2}
    with player:
        player.seen.add(3)
    del player.score  # a tombstone
    player.score = 25
    with store.transaction():
        store.storage("shop", "cart", "1").total = 12
        store.storage("shop", "cart", "2").total = 13
        player.round = 2
    store.storage("log").long = "x" * 100_000  # a large value
    rng = random.Random(7)
    store.storage("rng").state = rng
    # blobs, named by digest from facts (as the versions layer does), one of 1 MB
    big = random.Random(3).randbytes(1 << 20)
    with store.transaction():
        digests = store.put_blobs([b"small blob", big])
        store.storage("files").names = digests
    store.put_blob(b"a blob no fact names")
    # bytes no codec made, that are not UTF-8: carried as they are
    store.append_facts([Write("opaque", "blob", b"\x80\x81 not utf-8", "m.f:1", store.clock())])


def _export(store: Store) -> str:
    out = io.StringIO()
    export_facts(store, out)
    return out.getvalue()


def _rows(store: Store) -> list[tuple[int, float, str, str, bytes | None, str]]:
    return [
        (f.seq, f.time, f.namespace, f.field, None if f.data is None else bytes(f.data), f.context)
        for f in store.facts()
    ]


def test_round_trip_sqlite_postgresql_sqlite(tmp_path: Path, location: Location) -> None:
    from everstore.backends.postgresql import PostgreSQL

    conninfo, schema = location
    with (
        Store(Sqlite3(tmp_path / "first.db")) as first,
        Store(PostgreSQL(conninfo, schema=schema)) as middle,
        Store(Sqlite3(tmp_path / "last.db")) as last,
    ):
        _fill(first)
        original = _rows(first)
        assert len(original) > 15

        exported = _export(first)
        assert import_facts(middle, io.StringIO(exported)) == len(original)
        assert _rows(middle) == original

        again = _export(middle)
        assert import_facts(last, again.splitlines(keepends=True)) == len(original)
        assert _rows(last) == original

        # the streams differ only in the header's source
        assert exported.splitlines()[1:] == again.splitlines()[1:]
        assert json.loads(exported.splitlines()[0])["source"] == "sqlite"
        assert json.loads(again.splitlines()[0])["source"] == "postgresql"

        # and the values read back are the same
        for store in (middle, last):
            player = store.storage("game", "player1")
            assert player.score == 25 and player.raw == b"\xff\x00\xfe"
            assert player.text == first.storage("game", "player1").text
            with player:
                assert player.items == ["sword", "shield"]
                assert player.bag == {"gold": 1, "silver": 2}
                assert player.seen == {1, 2, 3}
            history = player.__history__()["score"]
            assert [v.unavailable for v in history] == [False, True, False]
            assert history[0] == first.storage("game", "player1").__history__()["score"][0]
            assert store.storage("shop", "cart", "2").total == 13
            assert len(store.storage("log").long) == 100_000
            assert store.blobs(limit=10) == first.blobs(limit=10)
            assert len(store.blobs(limit=10)) == 3
            with store.storage("files") as files:
                assert store.get_blob(files.names[1]) == first.get_blob(files.names[1])


def test_a_versions_store_moves_to_postgresql(tmp_path: Path, location: Location) -> None:
    # The versions layer keeps its versions in the blob table: they move with the facts.
    from everstore.backends.postgresql import PostgreSQL
    from everstore.versions import DbEngine

    conninfo, schema = location
    with Store(Sqlite3(tmp_path / "v.db")) as first:
        engine = DbEngine(store=first)
        engine.init("acme")
        old = engine.save("acme", "ann", "config", {"theme": "dark", "rows": list(range(500))})
        engine.save("acme", "bob", "config", {"theme": "light"})
        engine.put("acme", "ann", "users", "bob", {"name": "Bob", "avatar": b"\x89PNG" * 100})
        exported = _export(first)
        assert first.blobs()  # what the versions layer needs besides the facts
    with Store(PostgreSQL(conninfo, schema=schema)) as moved:
        import_facts(moved, io.StringIO(exported))
        engine = DbEngine(store=moved)
        assert engine.load("acme", "config") == {"theme": "light"}
        assert engine.load("acme", "config", old)["rows"] == list(range(500))
        assert engine.get("acme", "users", "bob")["avatar"] == b"\x89PNG" * 100


def test_round_trip_from_every_backend(store: Store) -> None:
    _fill(store)
    target = Store(Memory())
    import_facts(target, io.StringIO(_export(store)))
    assert _rows(target) == _rows(store)
    assert target.blobs() == store.blobs()


def test_blob_lines_come_between_the_header_and_the_facts() -> None:
    source = Store()
    source.storage("a").x = 1
    digest = source.put_blob(b"\x00\xffbytes")
    lines = [json.loads(line) for line in _export(source).splitlines()]
    assert lines[1] == {"blob": digest, "data": "AP9ieXRlcw=="}
    assert lines[2]["seq"] == 1 and len(lines) == 3


def test_the_header(store: Store) -> None:
    _fill(store)
    header = json.loads(_export(store).splitlines()[0])
    assert header == {
        "format": FORMAT,
        "version": VERSION,
        "source": store.backend.kind,
        "facts": store.last_seq,
        "last_seq": store.last_seq,
        "everstore": everstore.__version__,
    }


def test_an_empty_store_exports_a_header_only() -> None:
    text = _export(Store())
    assert len(text.splitlines()) == 1
    target = Store()
    assert import_facts(target, io.StringIO(text)) == 0
    assert target.last_seq == 0


def test_data_is_text_when_utf8_else_base64() -> None:
    source = Store()
    source.storage("a").x = "é"
    source.append_facts([Write("b", "y", b"\xff", "m:1", source.clock())])
    del source.storage("a").x
    lines = [json.loads(line) for line in _export(source).splitlines()[1:]]
    assert (lines[0]["data"], lines[0]["encoding"]) == ('"é"', "utf-8")
    assert (lines[1]["data"], lines[1]["encoding"]) == ("/w==", "base64")
    assert lines[2]["data"] is None and "encoding" not in lines[2]


def test_refuses_a_nonempty_store_and_leaves_it(tmp_path: Path) -> None:
    source = Store()
    _fill(source)
    with Store(Sqlite3(tmp_path / "t.db")) as target:
        target.storage("mine").x = 1
        before = _rows(target)
        with pytest.raises(StoreNotEmptyError, match="1 facts"):
            import_facts(target, io.StringIO(_export(source)))
        assert _rows(target) == before


def test_into_nonempty_appends_after_and_shifts_seqs(store: Store) -> None:
    source = Store()
    _fill(source)
    mine = store.storage("mine")
    mine.x = 1
    mine.y = 2
    count = import_facts(store, io.StringIO(_export(source)), into_nonempty=True)
    assert count == source.last_seq
    rows = _rows(store)
    assert [r[0] for r in rows] == list(range(1, count + 3))
    assert [r[2:] for r in rows[2:]] == [r[2:] for r in _rows(source)]
    assert all(later[1] >= earlier[1] for earlier, later in itertools.pairwise(rows))
    assert mine.x == 1 and store.storage("game", "player1").score == 25


def test_progress_is_reported() -> None:
    source = Store()
    total = EXPORT_PAGE * 2 + 3
    source.append_facts([Write("n", "x", b"%d" % i, "m:1", 1.0) for i in range(total)])
    exported: list[int] = []
    out = io.StringIO()
    assert export_facts(source, out, progress=exported.append) == total
    assert exported == [EXPORT_PAGE, 2 * EXPORT_PAGE, total]
    imported: list[int] = []
    target = Store()
    assert import_facts(target, io.StringIO(out.getvalue()), progress=imported.append) == total
    assert imported[-1] == total and imported == sorted(imported) and len(imported) >= 1
    assert _rows(target) == _rows(source)


def test_a_bad_last_line_after_many_batches_imports_nothing(tmp_path: Path) -> None:
    source = Store()
    total = IMPORT_BATCH * 2 + 1
    source.append_facts([Write("n", "x", b"%d" % i, "m:1", 1.0) for i in range(total)])
    lines = _export(source).splitlines(keepends=True)
    lines[-1] = lines[-1].replace('"seq":', '"seq_":')
    with Store(Sqlite3(tmp_path / "t.db")) as target:
        with pytest.raises(ImportFormatError, match=f"line {total + 1}: .*'seq'"):
            import_facts(target, lines)
        assert target.last_seq == 0 and target.facts() == []


def _good_lines() -> list[str]:
    """A header, then three facts (lines 2 to 4)."""
    source = Store()
    ns = source.namespace(("a", "b"))
    for i in range(3):
        source.write(ns, "x", i, "m.f:1")
    return _export(source).splitlines(keepends=True)


_BLOB = json.dumps({"blob": hashlib.sha256(b"x").hexdigest(), "data": "eA=="}) + "\n"


def _set(line: str, key: str, value: object) -> str:
    obj = json.loads(line)
    obj[key] = value
    return json.dumps(obj) + "\n"


def _drop(line: str, key: str) -> str:
    obj = json.loads(line)
    del obj[key]
    return json.dumps(obj) + "\n"


def _swap(lines: list[str], i: int, j: int) -> list[str]:
    lines = list(lines)
    lines[i], lines[j] = lines[j], lines[i]
    return lines


_BAD: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "empty stream": (lambda ls: [], "line 1: the stream is empty"),
    "not JSON": (lambda ls: [*ls[:2], "{not json\n", *ls[3:]], "line 3: not a JSON object"),
    "a JSON array": (lambda ls: [*ls[:2], "[1, 2]\n", *ls[3:]], "line 3: not a JSON object"),
    "NaN": (lambda ls: [ls[0], ls[1].replace('"time":', '"time":NaN,"t":'), *ls[2:]], "line 2"),
    "an empty line": (lambda ls: [*ls[:2], "\n", *ls[2:]], "line 3"),
    "not a header": (lambda ls: ls[1:], "line 1: not an everstore export header"),
    "wrong format": (lambda ls: [_set(ls[0], "format", "other"), *ls[1:]], "line 1"),
    "wrong version": (lambda ls: [_set(ls[0], "version", 2), *ls[1:]], "line 1: format version"),
    "header without count": (lambda ls: [_drop(ls[0], "facts"), *ls[1:]], "line 1: .*'facts'"),
    "header count is a str": (lambda ls: [_set(ls[0], "facts", "3"), *ls[1:]], "line 1"),
    "missing field": (lambda ls: [ls[0], _drop(ls[1], "field"), *ls[2:]], "line 2: .*'field'"),
    "missing data": (lambda ls: [*ls[:3], _drop(ls[3], "data")], "line 4: .*'data'"),
    "seq is a str": (lambda ls: [ls[0], _set(ls[1], "seq", "1"), *ls[2:]], "line 2: 'seq'"),
    "time is a str": (lambda ls: [ls[0], _set(ls[1], "time", "now"), *ls[2:]], "line 2: 'time'"),
    "time beyond a float": (
        lambda ls: [ls[0], _set(ls[1], "time", 10**400), *ls[2:]],
        "line 2: 'time'",
    ),
    "time is a bool": (lambda ls: [ls[0], _set(ls[1], "time", True), *ls[2:]], "line 2: 'time'"),
    "namespace is a str": (
        lambda ls: [ls[0], _set(ls[1], "namespace", "a/b"), *ls[2:]],
        "line 2: 'namespace'",
    ),
    "namespace part with /": (
        lambda ls: [ls[0], _set(ls[1], "namespace", ["a/b"]), *ls[2:]],
        "line 2: namespace part",
    ),
    "field is an int": (lambda ls: [ls[0], _set(ls[1], "field", 3), *ls[2:]], "line 2: 'field'"),
    "context is null": (
        lambda ls: [ls[0], _set(ls[1], "context", None), *ls[2:]],
        "line 2: 'context'",
    ),
    "data is an int": (lambda ls: [ls[0], _set(ls[1], "data", 1), *ls[2:]], "line 2: 'data'"),
    "unknown encoding": (
        lambda ls: [ls[0], _set(ls[1], "encoding", "hex"), *ls[2:]],
        "line 2: 'encoding'",
    ),
    "bad base64": (
        lambda ls: [ls[0], _set(_set(ls[1], "encoding", "base64"), "data", "!!"), *ls[2:]],
        "line 2: 'data' is not base64",
    ),
    "lone surrogate": (
        lambda ls: [ls[0], _set(ls[1], "data", "\ud800"), *ls[2:]],
        "line 2: 'data' holds a lone surrogate",
    ),
    "seq gap": (lambda ls: [*ls[:2], _set(ls[2], "seq", 3), *ls[3:]], "line 3: seq 3 where seq 2"),
    "out of order": (lambda ls: _swap(ls, 2, 3), "line 3: seq 3 where seq 2"),
    "time goes back": (
        lambda ls: [*ls[:3], _set(ls[3], "time", 0.5)],
        "line 4: time 0.5 is before",
    ),
    "truncated: a line missing": (lambda ls: ls[:-1], "line 4: .*truncated"),
    "truncated in a line": (
        lambda ls: [*ls[:-1], ls[-1][: len(ls[-1]) // 2]],
        "line 4: not a JSON",
    ),
    "blob after a fact": (lambda ls: [*ls[:2], _BLOB, *ls[2:]], "line 3: a blob line after"),
    "blob digest mismatch": (
        lambda ls: [ls[0], _set(_BLOB, "data", "eQ=="), *ls[1:]],
        "line 2: the blob's data does not have",
    ),
    "blob digest in capitals": (
        lambda ls: [ls[0], _set(_BLOB, "blob", hashlib.sha256(b"x").hexdigest().upper()), *ls[1:]],
        "line 2: 'blob' is a digest",
    ),
    "blob data not base64": (
        lambda ls: [ls[0], _set(_BLOB, "data", "e A"), *ls[1:]],
        "line 2: 'data' is not base64",
    ),
    "blob without data": (lambda ls: [ls[0], _drop(_BLOB, "data"), *ls[1:]], "line 2: a blob's"),
    "a fact too many": (
        lambda ls: [*ls, _set(_set(ls[-1], "seq", 4), "time", 1e10)],
        "line 5: the header announces 3 facts",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_a_bad_stream_names_its_line_and_imports_nothing(store: Store, case: str) -> None:
    mutate, message = _BAD[case]
    store.storage("mine").x = 1
    before = _rows(store)
    with pytest.raises(ImportFormatError, match=message):
        import_facts(store, mutate(_good_lines()), into_nonempty=True)
    assert _rows(store) == before
    assert store.storage("mine").x == 1


def test_import_format_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="line 1"):
        import_facts(Store(), ["nonsense"])


def test_good_lines_do_import() -> None:
    # the base the bad cases mutate is itself a valid stream (with or without newlines)
    target = Store()
    lines = _good_lines()
    assert import_facts(target, [line.rstrip("\n") for line in lines]) == 3
    assert target.storage("a", "b").x == 2
    with_blob = Store()
    assert import_facts(with_blob, [lines[0], _BLOB, *lines[1:]]) == 3
    assert with_blob.get_blob(hashlib.sha256(b"x").hexdigest()) == b"x"


def test_another_writer_during_the_import_is_reported() -> None:
    # A writer that commits between batches (here: in the progress callback).
    source = Store()
    total = IMPORT_BATCH + 1
    source.append_facts([Write("n", "x", b"1", "m:1", 1.0) for _ in range(total)])
    target = Store()

    def intrude(done: int) -> None:
        target.storage("other").y = done

    with pytest.raises(ConflictError, match=f"{total} of the stream's {total} facts are commit"):
        import_facts(target, io.StringIO(_export(source)), progress=intrude)
    # ours, the intruder's, then our last batch after it
    assert [f.namespace for f in target.facts()][IMPORT_BATCH - 1 : IMPORT_BATCH + 2] == [
        "n",
        "other",
        "n",
    ]


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    )


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    _containers,
    max_leaves=8,
)
_keys = st.sampled_from(
    ["seq", "time", "namespace", "field", "context", "data", "encoding", "format", "version",
     "source", "facts", "last_seq", "everstore", "blob"]
)  # fmt: skip
_objects = st.dictionaries(_keys, _json_values, max_size=13).map(json.dumps)
_header = st.builds(
    lambda facts: json.dumps(
        {"format": FORMAT, "version": VERSION, "source": "x", "facts": facts,
         "last_seq": facts, "everstore": "0"}
    ),
    st.integers(0, 3),
)  # fmt: skip
_line = st.one_of(st.text(max_size=30), _objects, _header)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=5), st.booleans())
def test_fuzz_only_typed_errors_come_out(lines: list[str], prefilled: bool) -> None:
    target = Store(Memory())
    if prefilled:
        target.storage("mine").x = 1
    before = _rows(target)
    try:
        import_facts(target, lines)
    except (ImportFormatError, StoreNotEmptyError):
        assert _rows(target) == before
        assert target.blobs() == []


_FIELD_KEYS = st.sampled_from(
    ["seq", "time", "namespace", "field", "context", "data", "encoding", "format", "version",
     "facts", "last_seq", "blob"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), _FIELD_KEYS, _json_values | st.integers()),
        min_size=1,
        max_size=3,
    )
)
def test_fuzz_a_valid_stream_with_values_changed(changes: list[tuple[int, str, object]]) -> None:
    lines = _good_lines()
    for index, key, value in changes:
        obj = json.loads(lines[index % len(lines)])
        obj[key] = value
        lines[index % len(lines)] = json.dumps(obj) + "\n"
    target = Store(Memory())
    try:
        count = import_facts(target, lines)
    except ImportFormatError:
        assert target.last_seq == 0 and target.blobs() == []
    else:
        assert count == target.last_seq == 3
