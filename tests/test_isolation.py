"""Serializable transactions: the plain values a transaction read are checked when it
commits, on every backend, with threads and with processes.

Races are made deterministic by interleaving by hand: a second Store on the same log
(or a second thread, joined) writes while the first one's block is open.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from children import child, expect_line
from everstore import Backend, ConflictError, MissingFieldError, Storage, Store

BackendFactory = Callable[[], Backend]

#: generous: a run that needs this many re-runs is still correct, and none should
RETRIES = 1000
CHILD_DEADLINE = 60.0


@pytest.fixture
def two(make_backend: BackendFactory) -> Iterator[tuple[Store, Store]]:
    """Two Stores on one log, as two processes would have them."""
    first, second = Store(make_backend()), Store(make_backend())
    yield first, second
    first.close()
    second.close()


def values_of(storage: Storage, field: str) -> list[Any]:
    return [value.data for value in storage.__history__()[field]]


# -- the issue: eight threads, fifty increments each ------------------------------------


def increment_with_transact(store: Store, s: Storage) -> None:
    def add_one() -> None:
        s.n = s.n + 1

    store.transact(add_one, retries=RETRIES)


def increment_with_decorator(store: Store, s: Storage) -> None:
    @store.transactional(retries=RETRIES)
    def add_one() -> None:
        with s:  # joins the decorator's transaction
            s.n = s.n + 1

    add_one()


def increment_with_plain_with(store: Store, s: Storage) -> None:
    """The issue's code, with the retry a `with` block cannot do for itself."""
    for _ in range(RETRIES):
        try:
            with s:
                s.n = s.n + 1
            return
        except ConflictError:
            continue
    raise AssertionError(f"no commit after {RETRIES} tries")


@pytest.mark.parametrize(
    "increment",
    [increment_with_transact, increment_with_decorator, increment_with_plain_with],
    ids=["transact", "transactional", "with-and-retry"],
)
@pytest.mark.parametrize("stores", ["one-store", "store-per-thread"])
def test_eight_threads_incrementing_fifty_times_end_at_400(
    make_backend: BackendFactory,
    increment: Callable[[Store, Storage], None],
    stores: str,
) -> None:
    threads, rounds = 8, 50
    shared = Store(make_backend())
    shared.storage("counter").n = 0
    opened = [shared if stores == "one-store" else Store(make_backend()) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(store: Store) -> None:
        try:
            s = store.storage("counter")
            barrier.wait()
            for _ in range(rounds):
                increment(store, s)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(store,)) for store in opened]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many more thread switches: races even on Memory
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=CHILD_DEADLINE)
            assert not worker.is_alive()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    for store in {*opened, Store(make_backend())}:
        counter = store.storage("counter")
        assert counter.n == threads * rounds
        # every committed increment saw the one before it: no value was written twice
        assert values_of(counter, "n") == list(range(threads * rounds + 1))
        store.close()


# -- ... and with processes -----------------------------------------------------------

INCREMENTER = r"""
import sys
from everstore import ConflictError, Sqlite3, Store

kind, location, schema, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "sqlite":
    backend = Sqlite3(location)
else:
    from everstore.backends.postgresql import PostgreSQL
    backend = PostgreSQL(location, schema=schema)
store = Store(backend)
s = store.storage("counter")
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)


@store.transactional(retries=1000)
def add_one():
    with s:
        s.n = s.n + 1


for i in range(rounds):
    if i % 2:
        add_one()
    else:
        while True:  # the plain `with`, retried by hand
            try:
                with s:
                    s.n = s.n + 1
                break
            except ConflictError:
                pass
store.close()
print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eight_processes_incrementing_fifty_times_end_at_400(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    processes, rounds = 8, 50
    if kind == "sqlite":
        location, schema = str(tmp_path / "counter.db"), "-"
        from everstore import Sqlite3

        store = Store(Sqlite3(location))
    else:
        location, schema = request.getfixturevalue("pg_schema")
        from everstore.backends.postgresql import PostgreSQL

        store = Store(PostgreSQL(location, schema=schema))
    counter = store.storage("counter")
    counter.n = 0
    script = tmp_path / "incrementer.py"
    script.write_text(INCREMENTER)
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                child(script, kind, location, schema, str(rounds), deadline=CHILD_DEADLINE)
            )
            for _ in range(processes)
        ]
        for proc in procs:
            expect_line(proc, "ready")
        for proc in procs:  # all at once: they race from the first increment
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            expect_line(proc, "done")
            assert proc.wait(timeout=CHILD_DEADLINE) == 0
            assert proc.stderr is not None
            assert proc.stderr.read() == ""
    assert counter.n == processes * rounds
    assert values_of(counter, "n") == list(range(processes * rounds + 1))
    store.close()


# -- what is checked, and what is not ------------------------------------------------------


def test_a_with_block_that_lost_the_race_raises_and_writes_nothing(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    before = mine.last_seq
    with pytest.raises(ConflictError) as caught, s:
        seen = s.n
        other.n = 5  # another writer commits between the read and the commit
        s.n = seen + 1
        s.note = "written with n"
    assert "'n'" in str(caught.value) and "'acct'" in str(caught.value)
    for view in (s, other):
        assert view.n == 5
        assert "note" not in view
    assert mine.last_seq == theirs.last_seq == before + 1  # only the other writer's fact


def test_a_thread_of_the_same_store_is_another_writer(store: Store) -> None:
    s = store.storage("acct")
    s.n = 0

    def write() -> None:
        s.n = 5  # no transaction in this thread: committed at once

    with pytest.raises(ConflictError), store.transaction():
        seen = s.n
        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        s.n = seen + 1
    assert s.n == 5
    assert values_of(s, "n") == [0, 5]


def test_reading_an_absent_field_is_checked_too(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("job"), theirs.storage("job")
    with pytest.raises(ConflictError), s:
        assert "owner" not in s
        other.owner = "them"
        s.owner = "me"
    with pytest.raises(ConflictError), s:
        with pytest.raises(MissingFieldError):
            s.claimed_by  # noqa: B018 (the read is the point)
        other.claimed_by = "them"
        s.claimed_by = "me"
    assert (s.owner, s.claimed_by) == ("them", "them")


def test_a_deleted_field_read_as_absent_conflicts_with_its_return(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    s, other = mine.storage("doc"), theirs.storage("doc")
    s.title = "a"
    del s.title
    with pytest.raises(ConflictError), s:
        assert not hasattr(s, "title")
        other.title = "b"
        s.title = "c"
    assert s.title == "b"


def test_blind_writes_and_reads_of_own_writes_are_not_checked(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    with s:
        other.n = 5
        s.n = 7  # never read: the later writer wins, as in a serial order
    assert other.n == 7
    with s:
        s.n = 1
        other.n = 9
        assert s.n == 1  # the block's own write, not the committed value
    assert other.n == 1


def test_a_read_only_transaction_sees_values_that_were_current_together(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    a, other = mine.storage("bank"), theirs.storage("bank")
    a.x, a.y = 50, 50
    before = mine.last_seq
    with a:
        assert a.x + a.y == 100  # nothing changed in between: no error
    assert mine.last_seq == before  # a read-only transaction writes nothing
    with pytest.raises(ConflictError), a:
        x = a.x
        with theirs.transaction():  # moves 10 from x to y
            other.x, other.y = 40, 60
        y = a.y
        assert x + y == 110  # a torn view: the commit refuses it
    assert (a.x, a.y) == (40, 60)


def test_reads_in_a_rolled_back_inner_block_stay_checked(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    with pytest.raises(ConflictError), s:
        with contextlib.suppress(KeyError), s:
            seen = s.n
            raise KeyError(seen)  # the inner block is undone, but n was read
        other.n = 5
        s.elsewhere = 1
    assert "elsewhere" not in s


def test_an_explicit_expect_wins_over_the_read(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    with s:
        seen = s.n
        other.n = 5
        mine.expect(s, "n", mine.field_seq(s, "n"))  # "I know it moved; that's fine"
        s.n = seen + 1
    assert values_of(s, "n") == [0, 5, 1]


def test_list_appends_in_overlapping_transactions_both_survive(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    s, other = mine.storage("cart"), theirs.storage("cart")
    with s:
        s.items = []
        s.tags = {"new"}
        s.meta = {"n": 0}
    s.label = "cart"
    with s:  # no ConflictError: in-place changes merge
        s.items.append("mine")
        s.tags.add("mine")
        s.meta["mine"] = 1
        assert s.label == "cart"  # a plain read nobody changes: checked, and fine
        with other:
            other.items.append("theirs")
            other.tags.add("theirs")
            other.meta["theirs"] = 1
    with s:
        assert s.items == ["theirs", "mine"]  # in commit order
        assert s.tags == {"new", "mine", "theirs"}
        assert s.meta == {"n": 0, "mine": 1, "theirs": 1}


def test_a_plain_read_beside_a_merged_list_is_still_checked(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("cart"), theirs.storage("cart")
    with s:
        s.items = []
    s.count = 0
    with pytest.raises(ConflictError), s:
        s.items.append("mine")
        seen = s.count
        other.count = 7
        s.count = seen + 1
    with s:
        assert s.items == []
    assert s.count == 7


# -- the opt-out: atomic only --------------------------------------------------------------


def test_atomic_blocks_lose_updates_without_an_error(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    with mine.transaction(isolation="atomic"):
        seen = s.n
        other.n = other.n + 1
        s.n = seen + 1
    assert values_of(s, "n") == [0, 1, 1]  # two increments, one lost: the old behaviour
    with mine.transaction(isolation="atomic"), s:  # a `with storage:` inside joins it
        seen = s.n
        other.n = 10
        s.n = seen + 1
    assert s.n == 2
    with mine.transaction(isolation="atomic"):  # reads alone: nothing checked either
        seen = s.n
        other.n = 20
        assert s.n == 20
    # still all or nothing
    with pytest.raises(RuntimeError), mine.transaction(isolation="atomic"):
        s.n = 99
        raise RuntimeError
    assert s.n == 20


def test_an_explicit_expect_still_holds_in_an_atomic_block(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    seq = mine.field_seq(s, "n")
    with pytest.raises(ConflictError), mine.transaction(isolation="atomic"):
        mine.expect(s, "n", seq)
        other.n = 1
        s.n = 2
    assert s.n == 1


def test_the_outermost_block_decides_the_isolation(store: Store) -> None:
    s = store.storage("acct")
    s.n = 0
    with store.transaction(isolation="serializable") as txn:
        assert txn.isolation == "serializable"
        with store.transaction() as inner:  # None: joins, whatever the outer is
            assert inner is txn
        with (
            pytest.raises(ValueError, match="outermost block decides"),
            store.transaction(isolation="atomic"),
        ):
            pass  # pragma: no cover - never entered
        s.n = 1  # the outer block goes on and commits
    assert s.n == 1
    with store.transaction(isolation="atomic") as txn:
        with s:
            assert txn.isolation == "atomic"
        with pytest.raises(ValueError), store.transaction(isolation="serializable"):
            pass  # pragma: no cover - never entered
        s.n = 2
    assert s.n == 2
    assert not store.in_transaction()


# -- transact and transactional ----------------------------------------------------------


def test_transact_reruns_on_conflict_and_returns_the_result(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    calls: list[int] = []

    def add(k: int, *, times: int) -> int:
        calls.append(k)
        seen = s.n
        if len(calls) <= 2:
            other.n = other.n + 100  # interferes on the first two runs only
        s.n = seen + k * times
        return seen + k * times

    assert mine.transact(add, 2, times=3, retries=2) == 206
    assert len(calls) == 3
    assert values_of(s, "n") == [0, 100, 200, 206]


def test_transact_reraises_after_the_last_retry(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    calls = 0

    def always_loses() -> None:
        nonlocal calls
        calls += 1
        seen = s.n
        other.n = other.n + 1
        s.n = seen + 1

    with pytest.raises(ConflictError):
        mine.transact(always_loses, retries=3)
    assert calls == 4  # the first run and three re-runs
    assert values_of(s, "n") == [0, 1, 2, 3, 4]  # only the other writer's
    calls = 0
    with pytest.raises(ConflictError):
        mine.transact(always_loses, retries=0)
    assert calls == 1


def test_transact_does_not_rerun_other_errors(store: Store) -> None:
    calls = 0

    def fails() -> None:
        nonlocal calls
        calls += 1
        store.storage("acct").n = 1
        raise KeyError("no")

    with pytest.raises(KeyError):
        store.transact(fails)
    assert calls == 1
    assert "n" not in store.storage("acct")


def test_transact_inside_an_open_transaction_joins_it_and_runs_once(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    calls = 0

    def add_one() -> None:
        nonlocal calls
        calls += 1
        s.n = s.n + 1

    with pytest.raises(ConflictError), s:
        mine.transact(add_one, retries=5)
        other.n = 10
    assert calls == 1  # the conflict surfaces at the outer block, the one to re-run
    assert s.n == 10


def test_transactional_decorates_with_or_without_arguments(two: tuple[Store, Store]) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    interfere = [True]  # on the first run only

    @mine.transactional
    def deposit(amount: int, retries: str = "fn's own") -> str:
        """Add to the balance."""
        seen = s.n
        if interfere:
            interfere.pop()
            other.n = other.n + 100
        s.n = seen + amount
        return retries

    assert deposit.__name__ == "deposit" and deposit.__doc__ == "Add to the balance."
    assert deposit(5, retries="passed through") == "passed through"
    assert s.n == 105

    @mine.transactional(retries=0)
    def unlucky() -> None:
        seen = s.n
        other.n = other.n + 1
        s.n = seen + 1

    with pytest.raises(ConflictError):
        unlucky()
    assert s.n == 106


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda st: st.transact(42), TypeError),
        (lambda st: st.transact(lambda: None, retries=-1), ValueError),
        (lambda st: st.transact(lambda: None, retries=1.5), TypeError),
        (lambda st: st.transact(lambda: None, retries=True), TypeError),
        (lambda st: st.transact(lambda: None, retries="3"), TypeError),
        (lambda st: st.transactional(retries=-2), ValueError),
        (lambda st: st.transactional(retries=None), TypeError),
        (lambda st: st.transactional(retries=1)(42), TypeError),
        (lambda st: st.transactional(42), TypeError),
        (lambda st: st.transaction(isolation="snapshot"), ValueError),
        (lambda st: st.transaction(isolation=1), TypeError),
        (lambda st: st.begin(isolation="SERIALIZABLE"), ValueError),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(
    store: Store, call: Callable[[Store], Any], error: type[Exception]
) -> None:
    store.storage("acct").n = 1
    before = store.last_seq
    with pytest.raises(error):
        call(store)
    assert not store.in_transaction()
    assert store.open_transactions == 0
    assert store.last_seq == before


# -- the read fast path ----------------------------------------------------------------


def test_other_threads_read_committed_values_while_a_transaction_is_open(
    store: Store,
) -> None:
    s = store.storage("acct")
    s.n = 0
    assert store.open_transactions == 0
    seen: list[int] = []

    def read() -> None:
        seen.append(s.n)
        seen.append(store.open_transactions)

    with s:
        s.n = 1
        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        assert s.n == 1
    assert seen == [0, 1]  # the committed value; one transaction was open
    assert store.open_transactions == 0
    assert s.n == 1


# -- the commit's check looks at the log's tail -------------------------------------------


def test_changes_before_the_read_or_to_other_fields_are_no_conflict(
    two: tuple[Store, Store],
) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n = 0
    with s:
        other.n = 5  # committed after the block began, but before the block read n
        seen = s.n
        assert seen == 5
        other.unrelated = 1
        s.n = seen + 1
    assert values_of(s, "n") == [0, 5, 6]
    with s:
        seen = s.n
        for i in range(300):  # a long tail of other fields' facts: still no conflict
            setattr(other, f"f{i}", i)
        s.n = seen + 1
    assert s.n == 7


@pytest.mark.parametrize("others", [0, 3, 300], ids=["no-tail", "short-tail", "long-tail"])
def test_a_change_anywhere_in_the_tail_is_a_conflict(two: tuple[Store, Store], others: int) -> None:
    mine, theirs = two
    s, other = mine.storage("acct"), theirs.storage("acct")
    s.n, s.m = 0, 0
    with pytest.raises(ConflictError, match="'m'"), s:
        seen = s.n + s.m
        for i in range(others):
            setattr(other, f"before{i}", i)
        other.m = 1
        for i in range(others):
            setattr(other, f"after{i}", i)
        s.n = seen + 1
    assert (s.n, s.m) == (0, 1)


def test_append_checked_answers_as_append_does(make_backend: BackendFactory) -> None:
    """The backend contract: expectations found true at or after ``since``."""
    from everstore.log import Write

    backend = make_backend()
    backend.open()

    def write(field: str) -> int:
        return backend.append([Write("ns", field, b"1", "here", 0.0)])[0][0]

    def checked(field: str, expect: list[tuple[str, str, int]], since: int) -> int:
        return backend.append_checked([Write("ns", field, b"1", "here", 0.0)], expect, since)[0][0]

    # every name known before (PostgreSQL's fast path)
    _, _, d0 = (write(name) for name in ("x", "y", "d"))
    first = write("a")  # a at `first`: the expectation ("ns", "a", first) holds now
    since = backend.last_seq()
    assert checked("x", [("ns", "a", first)], since) == since + 1  # no tail at all
    write("b")
    assert checked("x", [("ns", "a", first)], since) == since + 3  # a short tail
    for _ in range(200):  # a tail longer than is worth scanning
        write("c")
    assert checked("x", [("ns", "a", first)], since) == since + 204
    changed = write("a")
    d = write("d")
    cases = [
        (since, [("ns", "a", first)], f"'a' of namespace 'ns' is at seq {changed}, not {first}"),
        (changed - 1, [("ns", "a", first)], f"is at seq {changed}, not {first}"),
        (
            changed,
            [("ns", "x", since + 204), ("ns", "d", d0)],
            f"'d' of namespace 'ns' is at seq {d}",
        ),
        (changed, [("ns", "e", 0), ("ns", "d", d0)], f"'d' of namespace 'ns' is at seq {d}"),
    ]
    for checked_since, expect, message in cases:
        with pytest.raises(ConflictError) as refused:
            checked("y", expect, checked_since)
        with pytest.raises(ConflictError) as plain:
            backend.append([Write("ns", "y", b"1", "here", 0.0)], expect)
        assert str(refused.value) == str(plain.value)
        assert message in str(refused.value)
    assert backend.last_seq() == d  # nothing was written
    backend.close()
