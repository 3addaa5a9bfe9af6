"""The engine API (docs/engine.md) that Storage, time travel and every layer use,
on every backend: namespace handles, field reads and writes, history positions,
transactions, the fact hook, blobs and the clock."""

from __future__ import annotations

import gc
import hashlib
import itertools
import threading
from collections.abc import Callable

import pytest

import everstore
from conftest import BackendFactory
from everstore import AppliedFact, Engine, Store
from everstore.codec import default_codec
from everstore.engine import Namespace, caller_context, check_field, namespace_path
from everstore.errors import (
    InvalidNameError,
    MissingBlobError,
    MissingFieldError,
    ReservedNameError,
    StoreClosedError,
)


def test_one_namespace_handle_per_namespace(store: Store, unique: Callable[[], str]) -> None:
    parts = ("engine", unique())
    ns = store.namespace(parts)
    assert store.namespace(parts) is ns
    assert ns.parts == parts and ns.path == "/".join(parts)
    assert store.storage(*parts).__namespace__ == parts


def test_write_read_delete_has_fields(store: Store, unique: Callable[[], str]) -> None:
    ns = store.namespace(("engine", unique()))
    store.write(ns, "a", 1)
    store.write(ns, "b", [1, 2])
    store.write(ns, "c", "x")
    store.delete(ns, "c")
    assert store.read(ns, "a") == 1
    assert store.has(ns, "a") and store.has(ns, "b") and not store.has(ns, "c")
    assert store.fields(ns) == ["a", "b"]
    assert ns.written_fields() == ["a", "b", "c"]
    with pytest.raises(MissingFieldError):
        store.read(ns, "c")
    with pytest.raises(MissingFieldError):
        store.delete(ns, "c")
    with store.transaction():
        assert store.read(ns, "b") == [1, 2]


def test_writes_record_the_callers_context_or_the_given_one(
    store: Store, unique: Callable[[], str]
) -> None:
    ns = store.namespace(("engine", unique()))
    store.write(ns, "a", 1)
    store.write(ns, "a", 2, "mylayer.save:7")
    store.delete(ns, "a", "mylayer.drop:9")
    contexts = [v.context for v in store.history(ns, "a")]
    assert contexts[0].startswith(f"{__name__}.test_writes_record_the_callers_context")
    assert contexts[1:] == ["mylayer.save:7", "mylayer.drop:9"]


def test_caller_context_names_the_layers_caller() -> None:
    def layer_method() -> str:
        return caller_context()

    here = layer_method()
    assert here.startswith(f"{__name__}.test_caller_context_names_the_layers_caller:")


def test_history_positions(store: Store, unique: Callable[[], str]) -> None:
    ns = store.namespace(("engine", unique()))
    for value in ["a", "b", "a"]:
        store.write(ns, "v", value)
    store.delete(ns, "v")
    store.write(ns, "v", ["list"])
    h = store.history(ns, "v")
    seqs = [h.seq_at(i) for i in range(len(h))]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [h.deleted_at(i) for i in range(5)] == [False, False, False, True, False]
    assert [h.value_at(i) for i in range(5)] == ["a", "b", "a", None, ["list"]]
    assert h.positions_of("a") == [0, 2]
    assert h.positions_of(["list"]) is None  # unhashable: the caller scans
    assert h.position(seq=seqs[2]) == 2 and h.position(seq=seqs[2] - 1) == 1
    assert h.position(seq=0) == -1
    assert h.position(time=h[1].time) >= 1
    bounded = store.history(ns, "v", upto=seqs[1])
    assert len(bounded) == 2 and bounded.positions_of("a") == [0]
    assert bounded.position(seq=seqs[4]) == 1
    with pytest.raises(IndexError):
        h.seq_at(5)
    with pytest.raises(TypeError):
        h.position()
    with pytest.raises(MissingFieldError):
        store.history(ns, "never")


def test_begin_end_is_a_transaction(make_backend: BackendFactory) -> None:
    writer, reader = Store(make_backend()), Store(make_backend())
    ns = writer.namespace(("engine", "txn"))
    writer.begin()
    assert writer.in_transaction()
    writer.write(ns, "a", 1)
    writer.write(ns, "b", 2)
    assert writer.read(ns, "a") == 1
    assert not reader.has(reader.namespace(("engine", "txn")), "a")
    writer.end(failed=False, context="mylayer.commit:1")
    assert not writer.in_transaction()
    assert reader.fields(reader.namespace(("engine", "txn"))) == ["a", "b"]
    writer.begin()
    writer.write(ns, "a", 99)
    writer.end(failed=True)
    assert writer.read(ns, "a") == 1
    with pytest.raises(RuntimeError, match="without begin"):
        writer.end(failed=False)


def test_fact_hook_sees_own_commits_transactions_and_other_writers(
    make_backend: BackendFactory,
) -> None:
    mine, other = Store(make_backend()), Store(make_backend())
    ns = mine.namespace(("engine", "hooked"))
    seen: list[tuple[tuple[str, ...], str, object, bool, int]] = []

    def hook(fact: AppliedFact) -> None:
        seen.append(
            (fact.namespace.parts, fact.field, fact.value.data, fact.loading, fact.value.seq)
        )

    remove = mine.add_fact_hook(hook)
    mine.write(ns, "a", 1)
    with mine.transaction():
        mine.write(ns, "b", [1])
        mine.write(ns, "a", 2)
    other.write(other.namespace(("engine", "hooked")), "a", 3)
    other.delete(other.namespace(("engine", "hooked")), "b")
    other.write(other.namespace(("engine", "unloaded")), "z", 0)  # not in mine's cache
    mine.sync()
    assert [item[:4] for item in seen] == [
        (("engine", "hooked"), "a", 1, False),
        (("engine", "hooked"), "b", [1], False),
        (("engine", "hooked"), "a", 2, False),
        (("engine", "hooked"), "a", 3, False),
        (("engine", "hooked"), "b", None, False),
    ]
    assert [item[4] for item in seen] == sorted(item[4] for item in seen)
    seen.clear()
    mine.namespace(("engine", "unloaded"))  # loading replays its facts to the hook
    assert seen[0][:4] == (("engine", "unloaded"), "z", 0, True)
    remove()
    seen.clear()
    mine.write(ns, "a", 4)
    assert seen == []
    remove()  # removing twice is harmless


def test_watch_loads_other_writers_new_namespaces_for_the_hook(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    mine, other = Store(make_backend()), Store(make_backend())
    prefix = unique()
    seen: list[tuple[tuple[str, ...], str, object, bool]] = []
    mine.add_fact_hook(lambda f: seen.append((f.namespace.parts, f.field, f.value.data, f.loading)))
    stop = mine.watch((prefix,))
    other.write(other.namespace((prefix, "a")), "x", 1)
    other.write(other.namespace((prefix, "a")), "y", 2)
    other.write(other.namespace((prefix, "b", "deep")), "x", 3)
    other.write(other.namespace((prefix + "z", "c")), "x", 4)  # a sibling prefix, not under
    other.write(other.namespace((prefix,)), "x", 5)  # the prefix itself is watched too
    mine.sync()
    assert seen == [
        ((prefix, "a"), "x", 1, True),
        ((prefix, "a"), "y", 2, True),
        ((prefix, "b", "deep"), "x", 3, True),
        ((prefix,), "x", 5, True),
    ]
    seen.clear()
    other.write(other.namespace((prefix, "a")), "x", 6)  # loaded now: an ordinary fact
    mine.sync()
    assert seen == [((prefix, "a"), "x", 6, False)]
    assert mine.read(mine.namespace((prefix, "a")), "x") == 6
    stop()
    seen.clear()
    other.write(other.namespace((prefix, "new")), "x", 7)
    mine.sync()
    assert seen == []
    stop()  # stopping twice is harmless
    with pytest.raises(TypeError):
        mine.watch(prefix)
    with pytest.raises(InvalidNameError):
        mine.watch(("bad/part",))


def test_fact_hook_keeps_derived_state_current(store: Store, unique: Callable[[], str]) -> None:
    """A secondary index (owner -> namespaces), as the models layer keeps one."""
    index: dict[object, set[tuple[str, ...]]] = {}

    def on_fact(fact: AppliedFact) -> None:
        if fact.field != "owner":
            return
        for holders in index.values():
            holders.discard(fact.namespace.parts)
        if not fact.value.unavailable:
            index.setdefault(fact.value.data, set()).add(fact.namespace.parts)

    store.add_fact_hook(on_fact)
    prefix = unique()
    doc1, doc2 = store.storage(prefix, "1"), store.storage(prefix, "2")
    doc1.owner = "ann"
    doc2.owner = "ann"
    doc2.owner = "bob"
    del doc1.owner
    assert index == {"ann": set(), "bob": {(prefix, "2")}}


def test_an_error_in_a_hook_reaches_the_writer_and_the_fact_stays(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    ns = store.namespace(("engine", "failing"))

    def hook(fact: AppliedFact) -> None:
        raise ValueError("index full")

    remove = store.add_fact_hook(hook)
    with pytest.raises(ValueError, match="index full"):
        store.write(ns, "a", 1)
    remove()
    assert store.read(ns, "a") == 1
    assert [v.data for v in store.history(ns, "a")] == [1]
    fresh = Store(make_backend())
    assert fresh.read(fresh.namespace(("engine", "failing")), "a") == 1
    with pytest.raises(TypeError):
        store.add_fact_hook("not callable")  # type: ignore[arg-type]


def test_blobs_are_stored_once_by_digest(make_backend: BackendFactory) -> None:
    store, other = Store(make_backend()), Store(make_backend())
    data = b"\x00binary\xff" * 1000
    digest = store.put_blob(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put_blob(bytearray(data)) == digest  # again: nothing more stored
    assert other.get_blob(digest) == data
    assert store.get_blob(store.put_blob(b"")) == b""
    missing = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(MissingBlobError) as caught:
        store.get_blob(missing)
    assert isinstance(caught.value, KeyError) and missing in str(caught.value)
    for bad in ["xyz", "g" * 64, digest[:-1], b"\x00" * 32]:
        with pytest.raises(ValueError):
            store.get_blob(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put_blob("text")  # type: ignore[arg-type]
    store.close()
    with pytest.raises(StoreClosedError):
        store.put_blob(b"late")


def test_put_blobs_stores_many_at_once_or_none(make_backend: BackendFactory) -> None:
    store, other = Store(make_backend()), Store(make_backend())
    datas = [b"first", b"second" * 500, b"first"]
    digests = store.put_blobs(datas)
    assert digests == [hashlib.sha256(data).hexdigest() for data in datas]
    assert [other.get_blob(digest) for digest in digests] == datas
    assert store.put_blobs([]) == []
    never = b"never stored, for a later item was not bytes"
    with pytest.raises(TypeError):
        store.put_blobs([never, "text"])  # type: ignore[list-item]
    with pytest.raises(MissingBlobError):
        other.get_blob(hashlib.sha256(never).hexdigest())


def test_blobs_put_in_a_transaction_are_stored_with_its_commit_or_not_at_all(
    make_backend: BackendFactory,
) -> None:
    store, other = Store(make_backend()), Store(make_backend())
    ns = store.namespace(("doc", "blobbed"))
    with store.transaction():
        (kept,) = store.put_blobs([b"kept with the commit"])
        assert store.get_blob(kept) == b"kept with the commit"  # this thread sees it
        store.write(ns, "ref", kept)
    assert other.get_blob(other.read(other.namespace(("doc", "blobbed")), "ref")) == (
        b"kept with the commit"
    )
    lost = hashlib.sha256(b"lost with the block").hexdigest()
    with pytest.raises(RuntimeError), store.transaction():
        store.put_blob(b"lost with the block")
        store.write(ns, "ref", lost)
        raise RuntimeError("the block fails")
    with pytest.raises(MissingBlobError):
        other.get_blob(lost)
    with store.transaction():  # blobs alone, no write: stored at the end
        (alone,) = store.put_blobs([b"alone"])
    assert other.get_blob(alone) == b"alone"


def test_namespaces_at_a_seq(store: Store, unique: Callable[[], str]) -> None:
    prefix = unique()
    store.write(store.namespace((prefix, "a")), "x", 1)
    middle = store.last_seq
    store.write(store.namespace((prefix, "b")), "x", 1)
    assert store.namespaces((prefix,), seq=middle) == [(prefix, "a")]
    assert store.namespaces((prefix,)) == [(prefix, "a"), (prefix, "b")]


def test_clock_option_dates_new_facts(make_backend: BackendFactory) -> None:
    ticks = itertools.count(1_000_000)
    store = Store(make_backend(), clock=lambda: float(next(ticks)))
    ns = store.namespace(("engine", "clocked"))
    store.write(ns, "a", 1)
    with store.transaction():
        store.write(ns, "a", 2)
    times = [v.time for v in store.history(ns, "a")]
    if isinstance(store.backend, everstore.Memory | everstore.Sqlite3):
        assert times == [1_000_000.0, 1_000_001.0]
    assert times == sorted(times)


def test_names() -> None:
    assert namespace_path(("a", "b")) == "a/b"
    with pytest.raises(InvalidNameError):
        namespace_path(("a/b",))
    assert check_field("x") == "x"
    with pytest.raises(ReservedNameError):
        check_field("__x__")


def test_engine_without_storage_layer() -> None:
    engine = Engine()
    ns = engine.namespace(("plain",))
    engine.write(ns, "n", 1)
    assert engine.read(ns, "n") == 1
    assert repr(engine) == "Engine(Memory())" or repr(engine).startswith("Engine(")


def test_on_transaction_end_reports_commit_failure_and_conflict(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    other = Store(make_backend())
    ns = store.namespace(("engine", "ends"))
    ended: list[tuple[str, bool]] = []
    with store.transaction():
        store.on_transaction_end(lambda ok: ended.append(("first", ok)))
        with store.transaction():  # a nested block: the callback waits for the outermost
            store.on_transaction_end(lambda ok: ended.append(("second", ok)))
            store.write(ns, "a", 1)
        assert ended == []
    assert ended == [("first", True), ("second", True)]

    ended.clear()
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.on_transaction_end(lambda ok: ended.append(("failed", ok)))
        store.write(ns, "a", 2)
        raise RuntimeError("boom")
    assert ended == [("failed", False)] and store.read(ns, "a") == 1

    ended.clear()
    with pytest.raises(everstore.ConflictError), store.transaction():
        store.on_transaction_end(lambda ok: ended.append(("conflict", ok)))
        seen = store.read(ns, "a")
        other.write(other.namespace(("engine", "ends")), "a", 10)
        store.write(ns, "a", seen + 1)
    assert ended == [("conflict", False)]

    # the callback runs once: a later transaction does not call it again
    ended.clear()
    with store.transaction():
        store.write(ns, "b", 1)
    assert ended == []
    store.close()
    other.close()


def test_on_transaction_end_errors() -> None:
    store = Store()
    with pytest.raises(RuntimeError, match="inside a transaction"):
        store.on_transaction_end(lambda ok: None)
    with pytest.raises(TypeError), store.transaction():
        store.on_transaction_end("not callable")  # type: ignore[arg-type]
    calls: list[bool] = []

    def fails(ok: bool) -> None:
        raise ValueError("callback failed")

    ns = store.namespace(("engine", "cb"))
    with pytest.raises(ValueError, match="callback failed"), store.transaction():
        store.on_transaction_end(fails)  # raised after the commit
        store.on_transaction_end(calls.append)
        store.write(ns, "a", 1)
    assert calls == [True] and store.read(ns, "a") == 1  # committed; the others ran
    calls.clear()
    with pytest.raises(KeyError), store.transaction():  # the block's own error wins
        store.on_transaction_end(fails)
        store.on_transaction_end(calls.append)
        raise KeyError("mine")
    assert calls == [False]


def test_load_brings_in_every_namespace_under_a_prefix_at_once(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    writer = Store(make_backend())
    prefix = unique()
    for name in ["a", "b", "c"]:
        ns = writer.namespace((prefix, name))
        writer.write(ns, "x", name)
        writer.write(ns, "items", [name])
        writer.write(ns, "x", name * 2)
    writer.write(writer.namespace((prefix, "b", "deep")), "x", 1)
    writer.write(writer.namespace((prefix + "r", "look-alike")), "x", 1)
    writer.delete(writer.namespace((prefix, "c")), "x")

    reader = Store(make_backend())
    seen: list[tuple[tuple[str, ...], str, object, bool]] = []
    reader.add_fact_hook(
        lambda f: seen.append((f.namespace.parts, f.field, f.value.data, f.loading))
    )
    loaded = reader.load((prefix,))
    assert [ns.parts for ns in loaded] == [
        (prefix, "a"),
        (prefix, "b"),
        (prefix, "b", "deep"),
        (prefix, "c"),
    ]
    assert all(reader.namespace(ns.parts) is ns for ns in loaded)
    # The same state, and the same hook calls, as loading each one on first touch.
    fresh = Store(make_backend())
    replayed: list[tuple[tuple[str, ...], str, object, bool]] = []
    fresh.add_fact_hook(
        lambda f: replayed.append((f.namespace.parts, f.field, f.value.data, f.loading))
    )
    for ns in loaded:
        one = fresh.namespace(ns.parts)
        assert reader.fields(ns) == fresh.fields(one)
        assert ns.written_fields() == one.written_fields()
        for field in ns.written_fields():
            assert list(reader.history(ns, field)) == list(fresh.history(one, field))
    assert seen == replayed
    assert all(item[3] for item in seen) and len(seen) == 11
    assert reader.read(loaded[0], "x") == "aa"
    with reader.transaction():
        assert reader.read(loaded[1], "items") == ["b"]
    assert not reader.has(loaded[3], "x")
    assert reader.load((prefix, "b")) == loaded[1:3]  # loaded already: the same handles
    assert [ns.parts for ns in reader.load()] == sorted(reader.namespaces())


def test_load_shares_the_prefix_among_the_namespaces_it_makes(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    writer = Store(make_backend())
    top = unique()
    for parts in [(top, "g"), (top, "g", "a"), (top, "g", "b", "c"), (top, "gx", "d")]:
        writer.write(writer.namespace(parts), "x", 1)
    prefix = (top, "g")
    loaded = Store(make_backend()).load(prefix)
    assert [ns.parts for ns in loaded] == [(top, "g"), (top, "g", "a"), (top, "g", "b", "c")]
    # one copy of the prefix's parts for all of them, not one per namespace
    assert all(ns.parts[0] is top and ns.parts[1] is prefix[1] for ns in loaded[1:])


def test_load_leaves_loaded_namespaces_alone_and_later_facts_to_the_sync(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    mine, other = Store(make_backend()), Store(make_backend())
    prefix = unique()
    other.write(other.namespace((prefix, "old")), "x", 1)
    old = mine.namespace((prefix, "old"))  # loaded before, by the first touch
    empty = mine.namespace((prefix, "empty"))  # touched, never written
    seen: list[tuple[tuple[str, ...], str, object, bool]] = []
    mine.add_fact_hook(lambda f: seen.append((f.namespace.parts, f.field, f.value.data, f.loading)))
    other.write(other.namespace((prefix, "old")), "x", 2)
    other.write(other.namespace((prefix, "new")), "x", 3)

    loaded = mine.load((prefix,))
    assert [ns.parts for ns in loaded] == [(prefix, "new"), (prefix, "old")]
    assert loaded[1] is old and empty not in loaded
    assert seen == [((prefix, "new"), "x", 3, True)]  # "old" is not replayed
    mine.sync()  # "old" gets its second fact as every loaded namespace does, once
    assert seen[1:] == [((prefix, "old"), "x", 2, False)]
    assert [v.data for v in mine.history(old, "x")] == [1, 2]

    # Committed after the load: the sync applies it to the loaded namespaces.
    other.write(other.namespace((prefix, "new")), "x", 4)
    other.write(other.namespace((prefix, "empty")), "x", 5)
    assert mine.read(loaded[0], "x") == 4
    assert [v.data for v in mine.history(loaded[0], "x")] == [3, 4]
    assert mine.read(empty, "x") == 5
    assert [ns.parts for ns in mine.load((prefix,))] == [
        (prefix, "empty"),
        (prefix, "new"),
        (prefix, "old"),
    ]
    assert [v.data for v in mine.history(empty, "x")] == [5]


def test_load_from_many_threads_makes_one_handle_per_namespace(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    writer = Store(make_backend())
    prefix = unique()
    names = [f"n{i:02d}" for i in range(30)]
    with writer.transaction():
        for name in names:
            ns = writer.namespace((prefix, name))
            writer.write(ns, "x", 1)
            writer.write(ns, "x", 2)
    reader = Store(make_backend())
    start = threading.Barrier(4)
    results: list[list[Namespace]] = []

    def run(by_name: bool) -> None:
        start.wait()
        if by_name:
            results.append([reader.namespace((prefix, name)) for name in names])
        else:
            results.append(reader.load((prefix,)))

    threads = [threading.Thread(target=run, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        assert [id(ns) for ns in result] == [id(ns) for ns in results[0]]
    for ns in results[0]:
        assert [v.data for v in reader.history(ns, "x")] == [1, 2]


def test_load_checks_its_prefix_and_the_engine(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    with pytest.raises(TypeError, match=r"like \('game',\)"):
        store.load("game")  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        store.load(("a/b",))
    store.close()
    with pytest.raises(StoreClosedError):
        store.load(("game",))


def test_load_leaves_the_collector_as_it_found_it(store: Store) -> None:
    store.write(store.namespace(("engine", "collected")), "x", 1)
    assert gc.isenabled()
    store.load()
    assert gc.isenabled()
    gc.disable()
    try:
        store.load(("engine",))
        assert not gc.isenabled()
    finally:
        gc.enable()
    store.close()
    with pytest.raises(StoreClosedError):
        store.load()
    assert gc.isenabled()


def test_history_values_reads_many_values_at_once(store: Store, unique: Callable[[], str]) -> None:
    name = unique()
    doc = store.storage(name)
    ns = store.namespace((name,))
    doc.v = 1
    doc.v = [1, 2]
    with doc:
        doc.v.append(3)  # stored as a delta on the list before it
    doc.v = {"k": (1, 2)}  # a tagged encoding
    del doc.v
    doc.v = "last"
    history = store.history(ns, "v")
    expected = [history.value_at(i) for i in range(len(history))]
    assert expected == [1, [1, 2], [1, 2, 3], {"k": (1, 2)}, None, "last"]
    assert history.values() == expected
    assert history.values(1, 3) == [[1, 2], [1, 2, 3]] and history.values(-2) == [None, "last"]
    assert history.values(4, 2) == [] and history.values(10) == []
    fresh = history.values(1, 2)[0]
    fresh.append("mine")  # a fresh object: the history is not changed
    assert history.value_at(1) == [1, 2]


def test_a_container_written_twice_in_one_commit_keeps_both_in_history(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    name = unique()
    store = Store(make_backend())
    ns = store.namespace((name,))
    with store.transaction():
        store.write(ns, "items", [1])
        store.write(ns, "items", {"a": [2]})
        store.write(ns, "items", [3])
        store.write(ns, "other", [4])
    with store.transaction():
        assert store.read(ns, "items") == [3] and store.read(ns, "other") == [4]
    history = store.history(ns, "items")
    assert history.values() == [[1], {"a": [2]}, [3]]
    reader = Store(make_backend())  # another process reads the same facts
    assert reader.history(reader.namespace((name,)), "items").values() == [[1], {"a": [2]}, [3]]
    store.close()
    reader.close()


def test_decode_many_names_damaged_bytes() -> None:
    codec = default_codec
    assert codec.decode_many([b"1", b'{"a":[1]}', bytearray(b'"s"')]) == [1, {"a": [1]}, "s"]
    with pytest.raises(everstore.DecodeError, match="cannot decode stored bytes"):
        codec.decode_many([b"1", b'{"a":'])
    with pytest.raises(everstore.DecodeError, match="a delta cannot be decoded"):
        codec.decode_many([b"1", b"\x01L[1]"])


def test_loading_and_catching_up_rebuild_values_replaced_within_a_batch(
    make_backend: BackendFactory, unique: Callable[[], str]
) -> None:
    # Containers replaced by a later fact of the same field are kept encoded when a
    # namespace loads or catches up; a delta after one still finds its base.
    name = unique()
    writer, reader = Store(make_backend()), Store(make_backend())
    doc = writer.storage(name)

    def write_batch(start: int) -> None:
        doc.x = [start]
        doc.x = {"k": start}
        doc.x = [start, start + 1]
        doc.y = "text"
        with doc:
            doc.x.append(start + 2)  # the current value: a delta on the list before it

    write_batch(0)
    ns = reader.namespace((name,))  # loaded now, in one batch
    with reader.transaction():
        assert reader.read(ns, "x") == [0, 1, 2] and reader.read(ns, "y") == "text"
    write_batch(10)
    reader.sync()  # caught up, in one batch
    with reader.transaction():
        assert reader.read(ns, "x") == [10, 11, 12]
    expected = [[0], {"k": 0}, [0, 1], [0, 1, 2], [10], {"k": 10}, [10, 11], [10, 11, 12]]
    assert reader.history(ns, "x").values() == expected
    assert writer.history(writer.namespace((name,)), "x").values() == expected
    writer.close()
    reader.close()


def test_before_commit_writes_with_the_transaction_or_fails_it(
    store: Store, unique: Callable[[], str]
) -> None:
    name = unique()
    ns = store.namespace((name,))
    order: list[str] = []

    def count_then_more() -> None:
        order.append("first")
        store.write(ns, "count", len(store.pending_value(ns, "item")))
        store.before_commit(lambda: order.append("added by the first"))

    with store.transaction():
        assert store.pending_value(ns, "item", "none yet") == "none yet"
        store.write(ns, "item", [1])
        store.before_commit(count_then_more)
        store.pending_value(ns, "item").append(2)
        with pytest.raises(KeyError), store.transaction():
            store.pending_value(ns, "item").append(3)  # undone with its block
            raise KeyError("inner")
        assert store.pending_value(ns, "item") == [1, 2]
    assert order == ["first", "added by the first"]
    assert store.read(ns, "count") == 2 and store.pending_value(ns, "item") is None
    items = store.history(ns, "item")
    assert items.values() == [[1], [1, 2]]  # written, then changed in place
    seqs = sorted([items.seq_at(0), items.seq_at(1), store.history(ns, "count").seq_at(-1)])
    assert seqs == list(range(seqs[0], seqs[0] + 3))  # one commit
    store.write(ns, "kept", [1])
    with store.transaction():
        store.write(ns, "flag", 5)
        store.delete(ns, "item")
        store.read(ns, "kept").append(2)  # the committed list, lent: not written by it
        assert store.pending_value(ns, "flag") == 5 and store.pending_value(ns, "item") is None
        assert store.pending_value(ns, "kept") is None

    ended: list[bool] = []
    with pytest.raises(ValueError, match="refused"), store.transaction():
        store.write(ns, "item", 4)
        store.on_transaction_end(ended.append)
        store.before_commit(lambda: (_ for _ in ()).throw(ValueError("refused")))
    assert ended == [False] and not store.in_transaction()
    assert store.history(ns, "item").values() == [[1], [1, 2], None]

    called: list[int] = []
    with pytest.raises(OSError), store.transaction():
        store.before_commit(lambda: called.append(1))
        raise OSError("the block failed")
    assert called == []
    with pytest.raises(RuntimeError, match="belongs inside a transaction"):
        store.before_commit(lambda: None)
    with pytest.raises(TypeError, match="needs a callable"), store.transaction():
        store.before_commit("later")  # type: ignore[arg-type]
