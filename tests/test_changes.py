"""Engine.changes(): the facts of a seq range, oldest or newest first, on every backend."""

from __future__ import annotations

import itertools

import pytest

from everstore import Store, StoreClosedError


def _fill(store: Store) -> None:
    a, b = store.storage("a"), store.storage("b")
    for value in range(7):
        (a if value % 2 else b).x = value
    del a.x
    with a:
        a.items = [1]
    with a:
        a.items.append(2)  # a delta: changes() gives the whole value


def test_changes_in_seq_order_and_newest_first(store: Store) -> None:
    _fill(store)
    last = store.last_seq
    forward = list(store.changes())
    assert [c.seq for c in forward] == sorted(c.seq for c in forward)
    assert len(forward) == 10 and forward[-1].seq == last
    assert [c.data for c in forward[:7]] == list(range(7))
    assert forward[7].unavailable and forward[7].data is None
    assert forward[-1].data == [1, 2] and forward[-1].namespace == ("a",)
    # the same facts as the change feed gives
    assert forward == list(store.follow(0, timeout=0))
    backward = list(store.changes(newest_first=True))
    assert backward == forward[::-1]
    for batch in (1, 2, 3, 1000):  # windows of every size give the same facts
        assert list(store.changes(newest_first=True, batch=batch)) == backward
        assert list(store.changes(batch=batch)) == forward


def test_changes_of_a_range(store: Store) -> None:
    _fill(store)
    seqs = [c.seq for c in store.changes()]
    low, high = seqs[2], seqs[6]
    assert [c.seq for c in store.changes(low, high)] == seqs[3:7]
    assert [c.seq for c in store.changes(low, high, newest_first=True)] == seqs[6:2:-1]
    assert list(store.changes(high, low)) == []
    assert list(store.changes(seqs[-1])) == []
    newest_three = itertools.islice(store.changes(newest_first=True, batch=2), 3)
    assert [c.seq for c in newest_three] == seqs[-1:-4:-1]
    # a range beyond the last fact holds what the log holds
    assert [c.seq for c in store.changes(seqs[-2], seqs[-1] + 100)] == seqs[-1:]


def test_changes_of_an_empty_store_and_bad_arguments(store: Store) -> None:
    assert list(store.changes()) == []
    assert list(store.changes(newest_first=True)) == []
    for bad in ({"after": -1}, {"after": "1"}, {"upto": -2}, {"upto": 1.5}, {"batch": 0}):
        with pytest.raises(TypeError):
            store.changes(**bad)  # type: ignore[arg-type]
    store.close()
    with pytest.raises(StoreClosedError):
        store.changes()
