"""Engine.facts() and Engine.append_facts(): the raw log, read and written as it is.

Conformance style: every test runs against every backend (the ``store`` and
``make_backend`` fixtures of tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from everstore import AppliedFact, Backend, Store
from everstore.errors import InvalidNameError, MissingFieldError
from everstore.log import Fact, Write

BackendFactory = Callable[[], Backend]


def test_facts_are_the_raw_log_in_seq_order(store: Store) -> None:
    doc = store.storage("doc", "1")
    doc.title = "a"
    with doc:
        doc.tags = ["x"]
    with doc:
        doc.tags.append("y")
    del doc.title
    facts = store.facts()
    assert [f.seq for f in facts] == [1, 2, 3, 4]
    assert all(type(f) is Fact for f in facts)
    assert [(f.namespace, f.field) for f in facts] == [
        ("doc/1", "title"),
        ("doc/1", "tags"),
        ("doc/1", "tags"),
        ("doc/1", "title"),
    ]
    assert facts[0].data == store.codec.encode("a")
    assert facts[2].data is not None and store.codec.is_delta(facts[2].data)
    assert facts[3].data is None
    assert facts[0].context.startswith("test_engine_facts.")
    assert [f.time for f in facts] == sorted(f.time for f in facts)


def test_facts_since_and_limit(store: Store) -> None:
    ns = store.namespace(("n",))
    for i in range(5):
        store.write(ns, "v", i)
    assert [f.seq for f in store.facts(2)] == [3, 4, 5]
    assert [f.seq for f in store.facts(1, 2)] == [2, 3]
    assert store.facts(5) == []


@pytest.mark.parametrize("since", [-1, 1.0, "0", None, True])
def test_facts_refuses_a_bad_since(store: Store, since: object) -> None:
    with pytest.raises(TypeError, match="since"):
        store.facts(since)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, 2.0, "3", True])
def test_facts_refuses_a_bad_limit(store: Store, limit: object) -> None:
    with pytest.raises(TypeError, match="limit"):
        store.facts(0, limit)  # type: ignore[arg-type]


def test_append_facts_keeps_time_context_and_bytes(store: Store) -> None:
    encode = store.codec.encode
    writes = [
        Write("a/b", "x", encode(1), "m.f:1", 100.0),
        Write("a/b", "y", encode([1, 2]), "m.g:2", 100.0),
        Write("c", "x", b"\xff\x00 not the codec's", "m.h:3", 101.5),
        Write("a/b", "x", None, "m.f:4", 102.25),
    ]
    assert store.append_facts(writes) == [(1, 100.0), (2, 100.0), (3, 101.5), (4, 102.25)]
    assert [(f.seq, f.time, f.namespace, f.field, f.data, f.context) for f in store.facts()] == [
        (i + 1, w.time, w.namespace, w.field, w.data, w.context) for i, w in enumerate(writes)
    ]
    ab = store.storage("a", "b")
    with pytest.raises(MissingFieldError):
        _ = ab.x
    assert [v.context for v in ab.__history__()["x"]] == ["m.f:1", "m.f:4"]
    with ab:
        assert ab.y == [1, 2]


def test_append_facts_raises_a_time_below_the_latest(store: Store) -> None:
    store.append_facts([Write("t", "x", b"1", "m:1", 50.0)])
    assigned = store.append_facts([Write("t", "x", b"2", "m:2", 10.0)])
    assert assigned == [(2, 50.0)]
    assert [f.time for f in store.facts()] == [50.0, 50.0]


def test_append_facts_keeps_a_loaded_namespace_current(store: Store) -> None:
    doc = store.storage("doc")
    doc.v = 1
    seen: list[tuple[str, object]] = []

    def hook(fact: AppliedFact) -> None:
        seen.append((fact.field, fact.value.data))

    store.add_fact_hook(hook)
    store.append_facts([Write("doc", "v", store.codec.encode(2), "m:1", store.clock())])
    assert doc.v == 2
    assert seen == [("v", 2)]
    assert store.last_seq == 2


def test_append_facts_reaches_another_store(make_backend: BackendFactory) -> None:
    writer, reader = Store(make_backend()), Store(make_backend())
    try:
        page = reader.storage("page")
        page.title = "old"
        writer.append_facts([Write("page", "title", b'"new"', "m:1", writer.clock())])
        assert page.title == "new"
        assert reader.last_seq == 2
    finally:
        writer.close()
        reader.close()


def test_append_facts_into_an_unloaded_namespace_is_read_on_first_touch(store: Store) -> None:
    store.append_facts([Write("later", "x", b"7", "m:1", 1.0)])
    assert store.last_seq == 1
    assert store.storage("later").x == 7
    store.storage("later").x = 8  # the next write follows on
    assert [f.seq for f in store.facts()] == [1, 2]


@pytest.mark.parametrize(
    ("write", "error"),
    [
        (("a", "x", b"1", "m:1", 1.0), TypeError),  # a plain tuple
        (Write("", "x", b"1", "m:1", 1.0), InvalidNameError),
        (Write("a//b", "x", b"1", "m:1", 1.0), InvalidNameError),
        (Write("a", "", b"1", "m:1", 1.0), InvalidNameError),
        (Write("a", "x\x00", b"1", "m:1", 1.0), InvalidNameError),
        (Write("a", "x", "1", "m:1", 1.0), TypeError),  # type: ignore[arg-type]
        (Write("a", "x", b"1", None, 1.0), TypeError),  # type: ignore[arg-type]
        (Write("a", "x", b"1", "m:1", float("nan")), TypeError),
        (Write("a", "x", b"1", "m:1", 1), TypeError),  # type: ignore[arg-type]
    ],
)
def test_append_facts_refuses_a_bad_write_and_writes_nothing(
    store: Store, write: object, error: type[Exception]
) -> None:
    good = Write("a", "x", b"1", "m:1", 1.0)
    with pytest.raises(error):
        store.append_facts([good, write])  # type: ignore[list-item]
    assert store.last_seq == 0
    assert store.facts() == []


def test_append_facts_refuses_inside_a_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError, match="outside"), store.transaction():
        store.append_facts([Write("a", "x", b"1", "m:1", 1.0)])
    assert store.facts() == []


def test_append_facts_of_nothing(store: Store) -> None:
    assert store.append_facts([]) == []
    assert store.last_seq == 0


def test_blobs_lists_the_blob_table_page_by_page(store: Store) -> None:
    assert store.blobs() == []
    datas = [bytes([i]) * i for i in range(1, 8)]
    digests = store.put_blobs(datas)
    expected = sorted(zip(digests, datas, strict=True))
    assert store.blobs() == expected
    pages = []
    after = ""
    while page := store.blobs(after, limit=3):
        pages.append(page)
        after = page[-1][0]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [pair for p in pages for pair in p] == expected
    assert store.blobs(expected[-1][0]) == []


@pytest.mark.parametrize(
    ("after", "limit"), [("ab", 1), ("z" * 64, 1), (None, 1), ("", 0), ("", 1.5)]
)
def test_blobs_refuses_bad_arguments(store: Store, after: object, limit: object) -> None:
    with pytest.raises(ValueError):
        store.blobs(after, limit)  # type: ignore[arg-type]
