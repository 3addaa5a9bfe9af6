"""everstore.models with many writers: transactions across objects, threads, other
Stores on the same database, and real processes on one SQLite directory."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from children import child
from conftest import BackendFactory
from everstore import ConflictError, Store
from everstore.models import ModelStore


class Account(BaseModel):
    name: str
    balance: int = 0
    visits: int = 0

    def deposit(self, amount: int) -> None:
        self.balance += amount

    def withdraw(self, amount: int) -> None:
        self.balance -= amount
        if self.balance < 0:
            raise ValueError("insufficient funds")

    def visit(self) -> None:
        self.visits += 1


def accounts(store: Store, **options: object) -> ModelStore[Account]:
    return ModelStore(
        Account, store=store, prefix=("accounts",), key_selector=lambda a: a.name, **options
    )  # type: ignore[arg-type]


def test_a_transaction_across_objects_is_all_or_nothing(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    bank = accounts(store)
    ann, bob = bank.add(name="ann", balance=10), bank.add(name="bob", balance=0)
    with pytest.raises(ValueError, match="insufficient"), bank.transaction():
        bob.deposit(30)
        ann.withdraw(30)  # raises: nothing of the block is written
    assert (ann.balance, bob.balance) == (10, 0)
    elsewhere = accounts(Store(make_backend()))
    assert (elsewhere["ann"].balance, elsewhere["bob"].balance) == (10, 0)
    before = store.last_seq
    with bank.transaction():
        ann.withdraw(4)
        bob.deposit(4)
        carl = bank.add(name="carl", balance=1)
        assert (ann.balance, bob.balance, carl.balance) == (6, 4, 1)  # the block sees its own
    assert (elsewhere["ann"].balance, elsewhere["bob"].balance, elsewhere["carl"].balance) == (
        6,
        4,
        1,
    )
    assert len({c.time for c in store.follow(since=before, timeout=0)}) == 1  # one commit
    # each change made in the transaction can be undone
    bob.undo()
    assert bob.balance == 0


def test_a_deletion_and_a_creation_in_a_failed_transaction_leave_nothing() -> None:
    bank = accounts(Store())
    bank.add(name="ann", balance=1)
    with pytest.raises(RuntimeError), bank.transaction():
        bank.delete("ann")
        bank.add(name="zed")
        assert "ann" not in bank and "zed" in bank and len(bank) == 1
        raise RuntimeError
    assert "ann" in bank and "zed" not in bank and bank["ann"].balance == 1


def test_uncommitted_changes_are_invisible_to_other_threads() -> None:
    bank = accounts(Store())
    ann = bank.add(name="ann", balance=1)
    seen: list[int] = []
    inside, looked = threading.Event(), threading.Event()

    def look() -> None:
        inside.wait()
        seen.append(ann.balance)
        looked.set()

    thread = threading.Thread(target=look)
    thread.start()
    with bank.transaction():
        ann.balance = 99
        inside.set()
        looked.wait()
    thread.join()
    assert seen == [1] and ann.balance == 99


def test_an_inner_block_that_fails_undoes_its_own_changes_only() -> None:
    bank = accounts(Store())
    ann = bank.add(name="ann", balance=1)
    with bank.transaction():
        ann.balance = 2
        with pytest.raises(RuntimeError), bank.transaction():
            ann.balance = 3
            raise RuntimeError
        assert ann.balance == 2  # the inner block's write is gone, in the object too
    assert ann.balance == 2


def test_a_method_is_atomic() -> None:
    store = Store()
    bank = accounts(store)
    ann = bank.add(name="ann", balance=5)
    seq = store.last_seq
    with pytest.raises(ValueError):
        ann.withdraw(10)  # sets balance to -5, then raises
    assert ann.balance == 5 and store.last_seq == seq


def test_a_read_modify_write_never_loses_an_update(make_backend: BackendFactory) -> None:
    bank = accounts(Store(make_backend()))
    ann = bank.add(name="ann")
    other = accounts(Store(make_backend()))["ann"]
    with pytest.raises(ConflictError), bank.transaction():
        seen = ann.balance
        other.balance = 100  # another writer commits in between
        ann.balance = seen + 1
    assert ann.balance == 100
    # transact() runs it again until it commits
    assert bank.transact(lambda: ann.deposit(1)) is None
    assert ann.balance == 101


def test_threads_calling_methods_lose_no_update() -> None:
    bank = accounts(Store())
    ann = bank.add(name="ann")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                bank.transact(ann.visit, retries=100)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and ann.visits == 200
    assert len(ann.__changes__) == 203  # three fields added, then 200 updates


def test_optimistic_writes_refuse_a_value_they_did_not_see(make_backend: BackendFactory) -> None:
    bank = accounts(Store(make_backend()), optimistic=True)
    ann = bank.add(name="ann", balance=1)
    assert ann.balance == 1
    accounts(Store(make_backend()))["ann"].balance = 50  # another writer
    with pytest.raises(ConflictError):
        ann.balance = 2  # this store showed 1, not 50
    assert ann.balance == 50  # reading it shows the other writer's value...
    ann.balance = 2  # ...and now the assignment is based on what was seen
    assert accounts(Store(make_backend()))["ann"].balance == 2
    # without optimistic checks, the last writer wins
    plain = accounts(Store(make_backend()))
    plain_ann = plain["ann"]
    accounts(Store(make_backend()))["ann"].balance = 70
    plain_ann.balance = 3
    assert plain_ann.balance == 3


def test_optimistic_commit_of_unsaved_changes(make_backend: BackendFactory) -> None:
    bank = accounts(Store(make_backend()), optimistic=True, save_on_change=False)
    ann = bank.add(name="ann", balance=1)
    bank.commit(ann)
    ann.balance = 2  # not saved yet
    accounts(Store(make_backend()))["ann"].balance = 50
    with pytest.raises(ConflictError):
        bank.commit_all()
    assert ann.is_dirty and ann.balance == 2  # the change is kept, not lost
    assert accounts(Store(make_backend()))["ann"].balance == 50


def test_other_writers_changes_show_at_once(make_backend: BackendFactory) -> None:
    mine = accounts(Store(make_backend()))
    theirs = accounts(Store(make_backend()))
    ann = mine.add(name="ann", balance=1)
    theirs["ann"].deposit(5)
    theirs.add(name="bob")
    assert ann.balance == 6 and "bob" in mine and len(mine) == 2
    theirs.delete("ann")
    assert "ann" not in mine and len(mine) == 1


# -- real processes on one directory -------------------------------------------------------

CHILD = r"""
import sys
from pydantic import BaseModel
from everstore.models import ModelStore

class Account(BaseModel):
    name: str
    balance: int = 0
    visits: int = 0

    def visit(self):
        self.visits += 1

directory, count = sys.argv[1], int(sys.argv[2])
bank = ModelStore(Account, directory, key_selector=lambda a: a.name)
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
ann = bank["ann"]
for _ in range(count):
    bank.transact(ann.visit, retries=1000)
bank.add(name="child-%d" % count)
print("done", flush=True)
bank.close()
"""


def line_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"child ended early: {proc.stderr.read()}")
    return line.strip()


@pytest.mark.slow
def test_processes_on_one_directory_lose_no_update(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "bank"
    bank = ModelStore(Account, directory, key_selector=lambda a: a.name)
    ann = bank.add(name="ann")
    counts = [40, 41]
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(child(script, str(directory), str(n), deadline=60)) for n in counts
        ]
        for proc in procs:
            assert line_of(proc) == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for _ in range(30):
            bank.transact(ann.visit, retries=1000)
        for proc in procs:
            assert line_of(proc) == "done"
            assert proc.wait(timeout=60) == 0
    assert ann.visits == 30 + sum(counts)
    assert sorted(bank.keys()) == ["ann", "child-40", "child-41"]
    visits = [c for c in bank.changes("ann") if c.prop_name == "visits"]
    assert [c.new_val for c in visits] == list(range(30 + sum(counts), -1, -1))
    contexts = {c.context for c in visits[:-1]}
    assert any(context.startswith("__main__.visit:") for context in contexts)
    bank.close()
