"""Retention (docs/integrity.md, "Retention"): old history leaves the live log, into
an archive or dropped; current values stay, the record keeps the chain verifiable,
reads of pruned history say where it went; on every backend."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import BackendFactory
from everstore import (
    ConflictError,
    IntegrityError,
    InvalidNameError,
    MissingFactError,
    PrunedHistoryError,
    ReadOnlyError,
    Sqlite3,
    Store,
)
from everstore.log import RECORDS_NAMESPACE, RETENTION_FIELD, Write
from tampering import tamper


def _history(store: Store) -> int:
    """Sensor readings, a list grown by appends, another namespace; returns the last
    seq of the old part."""
    sensor = store.storage("sensor", "a")
    for reading in range(5):
        sensor.value = reading
    with sensor:
        sensor.items = ["x"]
    for item in "yz":
        with sensor:
            sensor.items.append(item)  # deltas, each on the one before
    store.storage("audit").who = "ann"
    store.storage("audit").who = "bob"
    return store.last_seq


def _values(store: Store) -> dict[str, object]:
    sensor = store.storage("sensor", "a")
    with sensor:
        items = list(sensor.items)
    return {"value": sensor.value, "items": items, "who": store.storage("audit").who}


def test_prune_keeps_current_values_and_the_chain(store: Store) -> None:
    cut = _history(store)
    before = _values(store)
    kept = store.prune(before=cut + 1)
    assert kept is not None
    assert (kept.prefix, kept.through, kept.archive, kept.seq) == ("", cut, None, cut + 1)
    # 4 old readings and ann; the list's full value and both deltas are needed
    assert kept.removed == 5 and (kept.first, kept.last) == (1, 9)
    assert _values(store) == before
    ns = store.namespace(("sensor", "a"))
    assert [value.data for value in store.history(ns, "value")] == [4]
    report = store.verify()
    assert report.ok and report.retentions == (kept,)
    assert store.retentions() == [kept]


def test_reading_before_the_cut_names_where_history_went(store: Store) -> None:
    cut = _history(store)
    store.prune(before=cut + 1)
    with pytest.raises(PrunedHistoryError, match="dropped") as raised:
        _ = store.as_of(seq=2).storage("sensor", "a").value
    assert raised.value.through == cut and raised.value.archive is None
    assert store.as_of(seq=cut + 1).storage("sensor", "a").value == 4


def test_only_the_namespaces_asked_for_are_pruned(store: Store) -> None:
    cut = _history(store)
    kept = store.prune(before=cut + 1, namespaces="audit")
    assert kept is not None and kept.removed == 1 and kept.prefix == "audit"
    ns = store.namespace(("sensor", "a"))
    assert [value.data for value in store.history(ns, "value")] == [0, 1, 2, 3, 4]
    assert store.as_of(seq=2).storage("sensor", "a").value == 1
    with pytest.raises(PrunedHistoryError):
        _ = store.as_of(seq=8).storage("audit").who
    assert store.verify().ok


def test_another_store_sees_the_prune(make_backend: BackendFactory) -> None:
    with Store(make_backend()) as first, Store(make_backend()) as second:
        cut = _history(first)
        ns = second.namespace(("sensor", "a"))
        assert len(second.history(ns, "value")) == 5
        first.prune(before=cut + 1)
        assert [value.data for value in second.history(ns, "value")] == [4]
        with pytest.raises(PrunedHistoryError):
            _ = second.as_of(seq=1).storage("sensor", "a").value
        assert second.verify().ok


def test_pruning_again_extends_the_cut(store: Store) -> None:
    cut = _history(store)
    first = store.prune(before=cut + 1)
    sensor = store.storage("sensor", "a")
    for reading in range(10, 13):
        sensor.value = reading
    second = store.prune(before=store.last_seq)
    assert first is not None and second is not None
    assert second.through == store.last_seq - 2 and second.removed == 3
    assert sensor.value == 12 and store.verify().ok
    assert store.prune(before=store.last_seq) is None  # nothing more can go


def test_before_as_a_time(store: Store) -> None:
    _history(store)
    facts = store.facts()
    at = facts[2].time
    kept = store.prune(before=at)
    seqs = [fact.seq for fact in facts if fact.time < at]
    assert kept is not None and kept.through == max(seqs)
    when = dt.datetime.fromtimestamp(facts[-1].time + 1, tz=dt.UTC)
    assert store.prune(before=when) is not None
    assert store.verify().ok


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"before": 0}, ValueError),
        ({"before": True}, TypeError),
        ({"before": "yesterday"}, TypeError),
        ({"before": float("nan")}, TypeError),
        ({"before": dt.datetime(2020, 1, 1)}, ValueError),
        ({"before": 5, "namespaces": "a/b"}, InvalidNameError),
        ({"before": 5, "namespaces": 7}, TypeError),
        ({"before": 5, "archive": 7}, TypeError),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    store: Store, kwargs: dict[str, object], error: type[Exception]
) -> None:
    _history(store)
    facts = store.facts()
    with pytest.raises(error):
        store.prune(**kwargs)  # type: ignore[arg-type]
    assert store.facts() == facts


def test_prune_inside_a_transaction_is_refused(store: Store) -> None:
    cut = _history(store)
    with store.transaction(), pytest.raises(RuntimeError, match="outside"):
        store.prune(before=cut)
    assert len(store.facts()) == cut


def test_a_stale_prune_conflicts(store: Store) -> None:
    cut = _history(store)
    store.prune(before=cut + 1)
    stale = Write(RECORDS_NAMESPACE, RETENTION_FIELD, b"{}", "t:1", 0.0)
    with pytest.raises(ConflictError):
        store.backend.remove_facts([cut], stale, [(RECORDS_NAMESPACE, RETENTION_FIELD, 0)])
    assert store.verify().ok


def test_an_archive_reads_like_a_store_and_takes_no_writes(tmp_path: Path) -> None:
    path, archive = tmp_path / "live.db", tmp_path / "old.db"
    with Store(Sqlite3(path)) as store:
        cut = _history(store)
        kept = store.prune(before=cut + 1, archive=archive)
        assert kept is not None and kept.archive == str(archive)
        with pytest.raises(PrunedHistoryError, match=r"old\.db") as raised:
            _ = store.as_of(seq=2).storage("sensor", "a").value
        assert raised.value.archive == str(archive)
    with Store(Sqlite3(archive, readonly=True)) as old:
        ns = old.namespace(("sensor", "a"))
        assert [(v.seq, v.data) for v in old.history(ns, "value")] == [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 3),
        ]
        assert old.storage("audit").who == "ann"
    with Store(Sqlite3(archive)) as old, pytest.raises(ReadOnlyError, match="archive"):
        old.storage("audit").who = "eve"
    with Store(Sqlite3(path)) as store:  # reopened: the record is read again
        with pytest.raises(PrunedHistoryError):
            _ = store.as_of(seq=1).storage("sensor", "a").value
        store.storage("sensor", "a").value = 99
        store.storage("sensor", "a").value = 100
        more = store.prune(before=store.last_seq, archive=archive)
        assert more is not None and more.removed == 2
        assert store.verify().ok
    with Store(Sqlite3(archive, readonly=True)) as old:
        assert len(old.history(old.namespace(("sensor", "a")), "value")) == 6


def test_a_live_store_is_not_an_archive(tmp_path: Path) -> None:
    path, other = tmp_path / "live.db", tmp_path / "other.db"
    with Store(Sqlite3(other)) as busy:
        busy.storage("x").y = 1
    with Store(Sqlite3(path)) as store:
        cut = _history(store)
        facts = store.facts()
        with pytest.raises(Exception, match="live store"):
            store.prune(before=cut + 1, archive=other)
        assert store.facts() == facts


def test_a_log_that_does_not_verify_is_not_pruned(tmp_path: Path) -> None:
    path = tmp_path / "tampered.db"
    with Store(Sqlite3(path)) as store:
        cut = _history(store)
    tamper(path, "UPDATE everstore_log SET time = time + 1 WHERE seq = 2")
    with Store(Sqlite3(path)) as store:
        facts = store.facts()
        with pytest.raises(IntegrityError, match="changed at seq 2"):
            store.prune(before=cut + 1)
        assert store.facts() == facts


def test_a_change_to_a_kept_fact_before_the_cut_is_found(tmp_path: Path) -> None:
    path = tmp_path / "kept.db"
    with Store(Sqlite3(path)) as store:
        cut = _history(store)
        store.prune(before=cut + 1)
    tamper(path, "UPDATE everstore_log SET data = CAST('7' AS BLOB) WHERE seq = 5")
    with Store(Sqlite3(path)) as store:
        report = store.verify()
    assert (report.ok, report.kind) == (False, "changed")
    assert f"kept up to seq {cut}" in report.message


def test_checkpoints_and_a_prune(store: Store) -> None:
    cut = _history(store)
    early, at_cut = store.checkpoint(3), store.checkpoint(cut)
    store.storage("audit").who = "cy"
    later = store.checkpoint()
    store.prune(before=cut + 1)
    assert store.verify(against=later).ok
    assert store.verify(against=at_cut).ok
    report = store.verify(against=early)
    assert (report.ok, report.kind) == (False, "pruned")


def test_a_read_only_store_cannot_prune(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with Store(Sqlite3(path)) as store:
        cut = _history(store)
    with Store(Sqlite3(path, readonly=True)) as store, pytest.raises(ReadOnlyError):
        store.prune(before=cut + 1)


def test_facts_come_with_their_links_across_a_pruned_stretch(store: Store) -> None:
    sensor = store.storage("sensor", "a")
    for reading in range(30):
        sensor.value = reading
    store.storage("audit").who = "ann"
    store.prune(before=store.last_seq + 1)
    whole = store.backend.chained_facts(0, 100)
    assert [fact[0] for fact in whole] == [30, 31, 32]
    paged = store.backend.chained_facts(0, 2) + store.backend.chained_facts(31, 2)
    assert paged == whole and all(fact[6] is not None for fact in whole)


def test_a_rewrite_of_a_seq_not_in_the_log_changes_nothing(store: Store) -> None:
    _history(store)
    store.backend.remove_facts([2], Write(RECORDS_NAMESPACE, RETENTION_FIELD, b"{}", "t:1", 0.0))
    facts = store.facts()
    record = Write(RECORDS_NAMESPACE, RETENTION_FIELD, b"{}", "t:1", 0.0)
    for rewrite in (store.backend.remove_facts, store.backend.erase_facts):
        for seqs in ([3, 9999], [2]):  # one past the log, one removed already
            with pytest.raises(MissingFactError, match="not facts of"):
                rewrite(seqs, record)
            assert store.facts() == facts
