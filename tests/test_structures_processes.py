"""everstore.structures with real processes: pushers that never lose an item, pruning
included, and consumers that never share one.

appendonly, through ZEO, loses 40-85 of 1,200 items in every run of 4 processes x 300
pushes into AppendStack(max_layers=2, max_length=5) (its conflict resolution prunes
without calling the pruner), and hands the same items to two concurrent consumers.
The same runs through everstore, on SQLite and on PostgreSQL, end with every item
exactly once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import everstore
from children import child, expect_clean_exit, expect_line, start_together
from everstore import Store
from everstore.structures import Accumulator, AppendStack, Archive

CHILD_DEADLINE = 120.0

#: every child's start: argv[1] is a JSON [target, options]: a SQLite path, or a
#: PostgreSQL conninfo and its schema
OPEN = r"""
import json, sys
import everstore

target, options = json.loads(sys.argv[1])
if "schema" in options:
    from everstore.backends.postgresql import PostgreSQL
    store = everstore.Store(PostgreSQL(target, **options))
else:
    store = everstore.open(target)
"""

PUSHER = (
    OPEN
    + r"""
from everstore.structures import AppendStack, Archive

name, count, per_transaction = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stack = AppendStack(2, 5, storage=store.storage("app", "recent"))
archive = Archive(storage=store.storage("app", "archive"))
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
for start in range(0, count, per_transaction):
    if per_transaction == 1:  # a commit per push, pruned after it
        stack.push([name, start], archive.addLayer)
        continue
    with store.transaction():  # a batch, pruned as it commits
        for i in range(start, min(start + per_transaction, count)):
            stack.push([name, i], archive.addLayer)
store.close()
print("done", flush=True)
"""
)

PRODUCER = (
    OPEN
    + r"""
from everstore.structures import Accumulator

name, count = sys.argv[2], int(sys.argv[3])
pending = Accumulator(storage=store.storage("app", "pending"))
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
for i in range(count):
    if i % 10 == 9:
        pending.extend([[name, i]])
    else:
        pending.append([name, i])
store.close()
print("done", flush=True)
"""
)

CONSUMER = (
    OPEN
    + r"""
import os
from everstore.structures import Accumulator

stop_file = sys.argv[2]
pending = Accumulator(storage=store.storage("app", "pending"))
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
taken = []
while True:
    stopping = os.path.exists(stop_file)  # looked at before the last consume
    taken.append(pending.consume())
    if stopping:
        break
store.close()
print(json.dumps(taken), flush=True)
"""
)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(target, options)`` of one fresh store that every child opens."""
    if request.param == "sqlite":
        yield str(tmp_path / "shared.db"), {}
    else:
        conninfo, schema = request.getfixturevalue("pg_schema")
        yield conninfo, {"schema": schema}


def _open(target: tuple[str, dict[str, Any]]) -> Store:
    """The store the children wrote, as OPEN opens it."""
    if "schema" in target[1]:
        from everstore.backends.postgresql import PostgreSQL

        return Store(PostgreSQL(target[0], **target[1]))
    return everstore.open(target[0])


def _scripts(tmp_path: Path) -> dict[str, Path]:
    scripts = {}
    for name, text in (("pusher", PUSHER), ("producer", PRODUCER), ("consumer", CONSUMER)):
        scripts[name] = tmp_path / f"{name}.py"
        scripts[name].write_text(text)
    return scripts


@pytest.mark.slow
@pytest.mark.parametrize("per_transaction", [1, 7])
def test_processes_pushing_with_an_archive_keep_every_item_exactly_once(
    tmp_path: Path, target: tuple[str, dict[str, Any]], per_transaction: int
) -> None:
    scripts = _scripts(tmp_path)
    where = json.dumps(target)
    names = [f"p{k}" for k in range(4)]
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                child(
                    scripts["pusher"],
                    where,
                    name,
                    "300",
                    str(per_transaction),
                    deadline=CHILD_DEADLINE,
                )
            )
            for name in names
        ]
        start_together(procs)
        for proc in procs:
            expect_line(proc, "done")
            expect_clean_exit(proc, CHILD_DEADLINE)

    with _open(target) as store:
        recent = AppendStack(storage=store.storage("app", "recent"))
        archive = Archive(storage=store.storage("app", "archive"))
        stream = [*recent, *archive]
        items = [tuple(item) for _, _, item in stream]
        # every item exactly once, at every position exactly once, newest first
        assert sorted(items) == sorted((name, i) for name in names for i in range(300))
        assert [(g, i) for g, i, _ in stream] == [divmod(n, 5) for n in reversed(range(1200))]
        # each process's items in the order it pushed them
        oldest_first = items[::-1]
        for name in names:
            assert [i for who, i in oldest_first if who == name] == list(range(300))
        # the stack holds its newest layers; the pruned ones are in the archive
        assert len(archive) == 1200 - len(recent)
        if per_transaction == 1:  # each pruning after a commit saw every commit before it
            assert len(recent) in range(6, 11)
        else:  # a pruning as a transaction commits may not see one committed meanwhile
            assert len(recent) >= 6


@pytest.mark.slow
def test_consume_hands_each_item_to_exactly_one_consumer(
    tmp_path: Path, target: tuple[str, dict[str, Any]]
) -> None:
    scripts = _scripts(tmp_path)
    where = json.dumps(target)
    stop_file = tmp_path / "stop"
    producers = [f"p{k}" for k in range(2)]
    with contextlib.ExitStack() as stack:
        made = [
            stack.enter_context(
                child(scripts["producer"], where, name, "400", deadline=CHILD_DEADLINE)
            )
            for name in producers
        ]
        consumers = [
            stack.enter_context(
                child(scripts["consumer"], where, str(stop_file), deadline=CHILD_DEADLINE)
            )
            for _ in range(3)
        ]
        start_together(made + consumers)
        for proc in made:
            expect_line(proc, "done")
            assert proc.wait(timeout=CHILD_DEADLINE) == 0
        stop_file.write_text("producers are done")
        batches = [json.loads(expect_line(proc)) for proc in consumers]
        for proc in made + consumers:
            expect_clean_exit(proc, CHILD_DEADLINE)

    taken = [tuple(item) for consumer in batches for batch in consumer for item in batch]
    assert sorted(taken) == sorted((name, i) for name in producers for i in range(400))
    # each batch is a run of the log: every producer's items in its own order
    for consumer in batches:
        for batch in consumer:
            for name in producers:
                mine = [i for who, i in batch if who == name]
                assert mine == sorted(mine)
    with _open(target) as store:
        assert Accumulator(storage=store.storage("app", "pending")).consume() == []
