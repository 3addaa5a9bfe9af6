"""Killed writers lose nothing they acknowledged, and never half a transaction.

Writer processes print one line to stdout after each assignment (and each
``with store.transaction():``) has returned. The test reads a random number of those
lines from each writer and then kills it with SIGKILL, so the kill lands at a random
point of the writer's work: between writes, inside a write, inside a commit. Lines
still in the pipe after the kill were acknowledged too, and are checked as well.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from everstore import Sqlite3, Store

pytestmark = pytest.mark.slow

TXN_FIELDS = 6
DEADLINE = 20.0  # seconds: a writer still running after this is a failure, not a hang

WRITER = r"""
import sys
from everstore import Store, Sqlite3

path, round_, name = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store(Sqlite3(path))
s = store.storage("crash", round_, name)
s.items = []
s.count = 0
print("ready", flush=True)
i = 0
while True:
    i += 1
    if i % 4 == 0:
        with store.transaction():
            for k in range(TXN_FIELDS):
                setattr(s, f"t{i}_{k}", (i, k, "x" * (i % 50)))
            s.items.append(i)  # stored as a delta, in the same transaction
            s.count = len(s.items)
        print(f"T {i}", flush=True)
    else:
        setattr(s, f"w{i}", value(i))
        print(f"W {i}", flush=True)
        s.last = i
        print(f"L {i}", flush=True)
"""


def value(i: int) -> object:
    """The value of field w{i} (the writer script gets this very function)."""
    return {"i": i, "text": "v" * (i % 30), "nested": [i, (i, -i)], "big": 2**70 + i}


class Writer:
    """One writer process and the acknowledgements read from it."""

    def __init__(self, script: Path, path: Path, round_: str, name: str, kill_after: int):
        self.name = name
        self.round = round_
        self.kill_after = kill_after
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", str(script), str(path), round_, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        # "ready" and then kill_after acknowledgements; kill; then drain the pipe
        while len(self.lines) <= self.kill_after:
            line = self.proc.stdout.readline()
            if not line:
                return  # the writer died by itself: reported by finish()
            self.lines.append(line.decode())
        os.kill(self.proc.pid, signal.SIGKILL)
        for line in self.proc.stdout:
            self.lines.append(line.decode())

    def finish(self) -> str | None:
        """Wait for the writer to be gone; a message if it did not die by our SIGKILL."""
        self.thread.join(DEADLINE)
        if self.thread.is_alive():
            self.proc.kill()
            self.thread.join()
            return f"writer {self.name} of round {self.round} hung"
        self.proc.wait()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        errors = self.proc.stderr.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        code = self.proc.returncode
        if code == -signal.SIGKILL:
            return None
        how = f", {signal.Signals(-code).name}" if code < 0 else ""
        return (
            f"writer {self.name} of round {self.round} ended by itself before the kill "
            f"(returncode {code}{how}): {errors}"
        )

    def acknowledged(self) -> list[tuple[str, int]] | None:
        """The acknowledgements after "ready", or None if "ready" never came."""
        complete = [line for line in self.lines if line.endswith("\n")]
        if not complete:
            return None
        assert complete[0] == "ready\n", complete[:3]
        acks = []
        for line in complete[1:]:
            kind, number = line.split()
            acks.append((kind, int(number)))
        return acks


def operations(count: int) -> list[tuple[str, int]]:
    """The first ``count`` acknowledgements a writer prints, in order."""
    ops: list[tuple[str, int]] = []
    i = 0
    while len(ops) < count:
        i += 1
        ops.extend([("T", i)] if i % 4 == 0 else [("W", i), ("L", i)])
    return ops[:count]


def state_after(ops: list[tuple[str, int]]) -> dict[str, object]:
    """What the writer's namespace holds once ``ops`` (and nothing else) committed."""
    state: dict[str, object] = {"items": [], "count": 0}
    for kind, i in ops:
        if kind == "W":
            state[f"w{i}"] = value(i)
        elif kind == "L":
            state["last"] = i
        else:
            for k in range(TXN_FIELDS):
                state[f"t{i}_{k}"] = (i, k, "x" * (i % 50))
            items = [*state["items"], i]  # type: ignore[misc]
            state["items"] = items
            state["count"] = len(items)
    return state


def check_writer(store: Store, writer: Writer) -> None:
    """The namespace holds exactly the acknowledged operations, plus at most the one
    that was in flight when the kill came, which is all there or not at all."""
    s = store.storage("crash", writer.round, writer.name)
    actual: dict[str, object] = {}
    with s:
        for field in s.__fields__():
            got = getattr(s, field)
            actual[field] = list(got) if isinstance(got, list) else got
    acks = writer.acknowledged()
    if acks is None:  # it died opening the store: its first writes are there or not
        assert actual in ({}, {"items": []}, {"items": [], "count": 0}), writer.name
        return
    where = f"round {writer.round} writer {writer.name} after {len(acks)} acks"
    assert acks == operations(len(acks)), where
    acknowledged = state_after(acks)
    in_flight = state_after(operations(len(acks) + 1))
    assert actual in (acknowledged, in_flight), where
    # every past value of the list is rebuilt (a chain of deltas survived the kill)
    items = actual["items"]
    assert isinstance(items, list)
    history = s.__history__()["items"]
    assert [entry.data for entry in history] == [items[:n] for n in range(len(items) + 1)], where
    if "last" in actual:
        lasts = [entry.data for entry in s.__history__()["last"]]
        assert lasts == [i for kind, i in operations(len(acks) + 1) if kind == "L"][: len(lasts)]


def check_file(path: Path) -> None:
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count, low, high = raw.execute(
            "SELECT count(*), min(seq), max(seq) FROM everstore_log"
        ).fetchone()
        assert (count, low) == (high, 1)  # no seq lost or reused by a rolled-back commit
    finally:
        raw.close()


@contextlib.contextmanager
def long_lived_reader(path: Path) -> Iterator[Store]:
    store = Store(Sqlite3(path))
    try:
        yield store
    finally:
        store.close()


def test_killed_writers_keep_every_acknowledged_write(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    script = tmp_path / "writer.py"
    script.write_text(inspect.getsource(value) + WRITER.replace("TXN_FIELDS", str(TXN_FIELDS)))
    path = tmp_path / "crash.db"
    finished: list[Writer] = []
    deaths: list[str] = []  # writers that died before the kill: reported at the end
    with long_lived_reader(path) as reader:  # stays open across every crash
        for round_number in range(10):
            round_ = f"r{round_number}"
            kill_points = [rng.choice([0, 1, 2, rng.randrange(3, 400)]) for _ in range(3)]
            # all open the file at once, as processes coming and going do
            writers = [
                Writer(script, path, round_, f"w{k}", kill_after)
                for k, kill_after in enumerate(kill_points)
            ]
            deaths.extend(filter(None, (writer.finish() for writer in writers)))
            finished.extend(writers)
            check_file(path)
            with Store(Sqlite3(path)) as fresh:
                for writer in finished:  # earlier rounds are still intact too
                    try:
                        check_writer(fresh, writer)
                        check_writer(reader, writer)
                    except AssertionError as exc:
                        raise AssertionError(f"seed {seed}, kill points {kill_points}") from exc
    assert sum(len(writer.acknowledged() or ()) for writer in finished) > 0
    assert deaths == [], f"{len(deaths)} writers died by themselves; the first: {deaths[0]}"
