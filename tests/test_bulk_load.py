"""Backend.load_namespaces: every namespace under a prefix in one read, on every backend.

Each test runs against the backend's own implementation and against the default one
in :class:`Backend` (a loop of :meth:`Backend.load_namespace`), which third-party
backends inherit: both must give the same answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from conftest import BackendFactory
from everstore import Backend
from everstore.log import Fact, Write

BulkLoad = Callable[[Backend, str], tuple[int, dict[str, list[Fact]]]]


def _own(backend: Backend, prefix: str) -> tuple[int, dict[str, list[Fact]]]:
    return backend.load_namespaces(prefix)


def _default(backend: Backend, prefix: str) -> tuple[int, dict[str, list[Fact]]]:
    return Backend.load_namespaces(backend, prefix)


@pytest.fixture(params=[_own, _default], ids=["own", "default"])
def bulk_load(request: pytest.FixtureRequest) -> BulkLoad:
    load: BulkLoad = request.param
    return load


def _opened(make_backend: BackendFactory) -> Backend:
    backend = make_backend()
    backend.open()
    return backend


def _write(backend: Backend, *writes: tuple[str, str, bytes | None]) -> None:
    """Commit ``(namespace, field, data)`` writes in one append."""
    now = time.time()
    backend.append([Write(ns, field, data, "test", now) for ns, field, data in writes])


def _one_by_one(backend: Backend, prefix: str, high: int) -> dict[str, list[Fact]]:
    """What loading each namespace by itself gives, up to seq ``high``."""
    return {
        path: [fact for fact in backend.load_namespace(path)[1] if fact.seq <= high]
        for path in backend.namespaces(prefix, high)
    }


# A prefix and its look-alikes: the characters around "/" ("." before it, "0" after
# it) and a longer name ("gamer") sort next to "game/..." but are not under "game".
NAMES = ["game", "game/p1", "game/p1/deep", "game/p2", "gamer", "game.x", "game0", "gam", "x"]


def test_the_same_facts_as_one_load_per_namespace(
    make_backend: BackendFactory, bulk_load: BulkLoad
) -> None:
    backend = _opened(make_backend)
    for round_ in range(3):
        _write(backend, *[(name, f"f{round_ % 2}", name.encode()) for name in NAMES])
    _write(backend, ("game/p1", "f0", None), ("game/p2", "big", b"\x00\xff" * 5000))
    for prefix in ["game", "game/p1", "game/p1/deep", "gamer", "x", ""]:
        high, loaded = bulk_load(backend, prefix)
        assert high == backend.last_seq()
        assert loaded == _one_by_one(backend, prefix, high)
        for facts in loaded.values():
            assert [fact.seq for fact in facts] == sorted(fact.seq for fact in facts)
    backend.close()


def test_a_prefix_holds_itself_and_what_is_under_it_not_its_look_alikes(
    make_backend: BackendFactory, bulk_load: BulkLoad
) -> None:
    backend = _opened(make_backend)
    _write(backend, *[(name, "f", b"1") for name in NAMES])
    assert sorted(bulk_load(backend, "game")[1]) == [
        "game",
        "game/p1",
        "game/p1/deep",
        "game/p2",
    ]
    assert sorted(bulk_load(backend, "game/p1")[1]) == ["game/p1", "game/p1/deep"]
    assert sorted(bulk_load(backend, "gamer")[1]) == ["gamer"]
    assert sorted(bulk_load(backend, "ga")[1]) == []
    assert sorted(bulk_load(backend, "")[1]) == sorted(NAMES)
    backend.close()


def test_an_empty_log_and_an_unknown_prefix_load_nothing(
    make_backend: BackendFactory, bulk_load: BulkLoad
) -> None:
    backend = _opened(make_backend)
    assert bulk_load(backend, "") == (0, {})
    assert bulk_load(backend, "game") == (0, {})
    _write(backend, ("game/p1", "f", b"1"))
    assert bulk_load(backend, "nothing") == (1, {})
    backend.close()


def test_one_snapshot_while_others_write(make_backend: BackendFactory, bulk_load: BulkLoad) -> None:
    """Each answer holds exactly the facts up to its seq, whatever commits meanwhile:
    a writer on another handle commits three namespaces per append, without pause."""
    reader, writer = _opened(make_backend), _opened(make_backend)
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(3_000):
                if stop.is_set():
                    return
                value = str(i).encode()
                _write(writer, *[(f"live/n{(i + k) % 7}", "f", value) for k in range(3)])
                _write(writer, ("lively", "f", value))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    _write(writer, ("live/n0", "f", b"start"))
    thread = threading.Thread(target=write)
    thread.start()
    try:
        answers = []
        while thread.is_alive() and (len(answers) < 50 or answers[-1][0] == answers[0][0]):
            answers.append(bulk_load(reader, "live"))
    finally:
        stop.set()
        thread.join()
    assert not failures
    assert len({high for high, _ in answers}) > 1  # the log grew between answers
    for high, loaded in answers:
        assert loaded == _one_by_one(reader, "live", high)
        assert "lively" not in loaded
    reader.close()
    writer.close()
