"""Time never decreases along the log, whatever the writers' clocks say (every backend).

Two Stores on one database write with a skewed clock: single writes, transactions,
conditional writes that win and that lose. A fact's time is its writer's clock, or
the time of the fact before it when that clock is behind; so along the log, time
never decreases with seq, and every Value a Store shows (its own writes included,
which it keeps from the commit without reading them back) has its fact's time.

The clock is skewed through the Store's ``clock=`` option: one the test sets before
each operation. Every backend takes the time from the client (PostgreSQL too: the
server only raises it to the time before), so the skew reaches all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import everstore
from everstore import Backend, ConflictError, Storage, Store

BackendFactory = Callable[[], Backend]

NAMESPACES = [("clock", "n0"), ("clock", "n1")]
FIELDS = ["f0", "f1", "f2"]


class SkewedClock:
    """A wall clock that says what the test tells it to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Log:
    """What the test knows of the log: the last fact it checked and that fact's time."""

    store: Store
    other: Store
    clock: SkewedClock
    seq: int = 0
    time: float = 0.0
    #: seq -> time of every fact checked so far
    times: dict[int, float] = field(default_factory=dict)


@pytest.fixture
def log(make_backend: BackendFactory) -> Iterator[Log]:
    # Two Stores, opened once: hypothesis's examples continue one log.
    clock = SkewedClock()
    with (
        Store(make_backend(), clock=clock) as store,
        Store(make_backend(), clock=clock) as other,
    ):
        yield Log(store, other, clock)


# -- the operations: each returns how many facts it committed ---------------------------


def _storage(store: Store, where: int) -> Storage:
    return store.storage(*NAMESPACES[where % len(NAMESPACES)])


def _value(n: int) -> object:
    # an int (the write path's fast lane), a str, a list (a mutable value)
    return (n, f"v{n}", [n, n])[n % 3]


@dataclass(frozen=True)
class Op:
    kind: str  # "write", "transaction", "compare_and_set", "expect"
    writer: int  # 0 or 1: which Store
    skew: float  # the writer's clock minus the latest time of the log
    where: int
    field: str
    value: int
    #: for conditional writes: the expected seq is stale, so the write must lose
    stale: bool
    #: for transactions: how many more writes, in the other namespace
    more: int
    #: the writer first catches up with the log (a read), so that its view, not only
    #: the backend, knows the other writer's facts when it writes
    read_first: bool


def run(log: Log, op: Op) -> int:
    """Carry out ``op``; return how many facts it committed."""
    store, other = (log.store, log.other) if op.writer == 0 else (log.other, log.store)
    target = _storage(store, op.where)
    value = _value(op.value)
    if op.read_first:
        assert store.last_seq == log.seq
    if op.kind == "write":
        setattr(target, op.field, value)
        return 1
    if op.kind == "transaction":
        with store.transaction():
            setattr(target, op.field, value)
            for i in range(op.more):
                setattr(_storage(store, op.where + 1), FIELDS[i % len(FIELDS)], op.value + i)
        return 1 + op.more
    seq = store.field_seq(target, op.field)
    if op.stale:
        # The other writer changes the field after this one read its seq: the
        # conditional write loses, and writes nothing.
        setattr(_storage(other, op.where), op.field, -1)
        check_new_facts(log, op, 1)
        with pytest.raises(ConflictError):
            _conditional(store, target, op, value, seq)
        return 0
    _conditional(store, target, op, value, seq)
    return 2 if op.kind == "expect" else 1


def _conditional(store: Store, target: Storage, op: Op, value: object, seq: int) -> None:
    if op.kind == "compare_and_set":
        store.compare_and_set(target, op.field, value, seq=seq)
    else:
        with store.transaction():
            store.expect(target, op.field, seq)
            setattr(target, op.field, value)
            _storage(store, op.where + 1).marker = op.value


def check_new_facts(log: Log, op: Op, expected: int) -> None:
    """The facts committed since the last check: ``expected`` of them, each at the
    writer's clock or, if that is behind, at the time of the fact before it."""
    new = list(log.store.follow(since=log.seq, timeout=0))
    assert len(new) == expected, (op, new)
    for change in new:
        assert change.seq > log.seq, (op, change)
        assert change.time == max(log.clock.now, log.time), (op, change, log.time)
        log.seq, log.time = change.seq, change.time
        log.times[change.seq] = change.time


def _check_views(log: Log) -> None:
    """Every Value either Store shows has the time of the fact with its seq."""
    for store in (log.store, log.other):
        for parts in store.namespaces(("clock",)):
            for name, history in everstore.history(store.storage(*parts)).items():
                for value in history:
                    assert value.time == log.times[value.seq], (parts, name, value)


operations = st.builds(
    Op,
    kind=st.sampled_from(["write", "transaction", "compare_and_set", "expect"]),
    writer=st.integers(0, 1),
    # behind, level with and ahead of the log, by up to a minute, or by very little
    skew=st.one_of(st.floats(-60, 60), st.sampled_from([0.0, -1e-6, 1e-6])),
    where=st.integers(0, 1),
    field=st.sampled_from(FIELDS),
    value=st.integers(0, 1000),
    stale=st.booleans(),
    more=st.integers(0, 3),
    read_first=st.booleans(),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operations, min_size=1, max_size=12))
def test_time_never_decreases_along_the_log(log: Log, ops: list[Op]) -> None:
    for op in ops:
        # Each writer's clock: the log's latest time, skewed. A clock ahead of the log
        # must reach it unchanged (which shows that the skew took effect).
        log.clock.now = log.time + op.skew if log.seq else 1_000_000.0 + op.skew
        check_new_facts(log, op, run(log, op))
    _check_views(log)
    changes = list(log.store.follow(timeout=0))
    assert [c.seq for c in changes] == sorted({c.seq for c in changes})
    assert all(a.time <= b.time for a, b in itertools.pairwise(changes))
    assert {c.seq: c.time for c in changes} == log.times


def test_a_skewed_clock_reaches_the_log(log: Log) -> None:
    # Not vacuous: the clock the test sets is the one the Stores read.
    log.clock.now = 5e9
    log.store.storage("clock", "n0").x = 1
    log.clock.now = 1.0  # far behind: raised to the time before
    with log.other.transaction():
        log.other.storage("clock", "n1").y = 2
    assert [(c.field, c.time) for c in log.store.follow(timeout=0)] == [("x", 5e9), ("y", 5e9)]
    assert everstore.history(log.other.storage("clock", "n1"))["y"][-1].time == 5e9
