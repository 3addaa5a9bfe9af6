"""The change feed's edges, on every backend: a follower that waits for ever ends when
its Store is closed, and bad arguments are refused when ``follow()`` is called.

(The feed's ordinary behaviour is in the conformance suite, tests/test_conformance.py.)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import pytest

from everstore import Backend, Change, Store, StoreClosedError

BackendFactory = Callable[[], Backend]
#: seconds a follower may take to notice close() before the test calls it stuck
_DEADLINE = 10.0


def test_a_follower_waiting_for_ever_ends_with_store_closed_error_on_close(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    store.storage("feed").x = 1
    first_seen = threading.Event()
    seen: list[Change] = []
    ended: list[BaseException | None] = []

    def follow() -> None:
        try:
            for change in store.follow(timeout=None):
                seen.append(change)
                first_seen.set()  # from here on the follower waits for a next fact
        except BaseException as exc:
            ended.append(exc)
        else:
            ended.append(None)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert first_seen.wait(_DEADLINE)
    store.close()
    follower.join(_DEADLINE)
    assert not follower.is_alive(), "follow(timeout=None) still waits after close()"
    assert [change.field for change in seen] == ["x"]
    assert len(ended) == 1 and isinstance(ended[0], StoreClosedError), ended


def test_a_follower_started_on_a_closed_store_raises_at_once(store: Store) -> None:
    store.storage("feed").x = 1
    feed = store.follow(timeout=None)
    store.close()
    with pytest.raises(StoreClosedError):
        next(feed)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"batch": 0}, "batch"),
        ({"batch": -5}, "batch"),
        ({"batch": 1.0}, "batch"),
        ({"batch": True}, "batch"),
        ({"since": "x"}, "since"),
        ({"since": 0.5}, "since"),
        ({"since": -1}, "since"),
        ({"since": None}, "since"),
        ({"since": True}, "since"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": -0.5}, "timeout"),
        ({"timeout": "1"}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": True}, "timeout"),
    ],
    ids=repr,
)
def test_bad_follow_arguments_are_type_errors_naming_the_argument(
    store: Store, arguments: dict[str, Any], named: str
) -> None:
    store.storage("feed").x = 1
    # Refused by the call itself, not on the first next() of the iterator.
    with pytest.raises(TypeError, match=rf"follow\({named}=") as raised:
        store.follow(**arguments)
    assert repr(arguments[named]) in str(raised.value)
    # The store is unchanged and the feed still works.
    assert [(c.field, c.data) for c in store.follow(timeout=0)] == [("x", 1)]


@pytest.mark.parametrize("arguments", [{"since": 0, "batch": 1, "timeout": 0}, {"timeout": 0.0}])
def test_good_follow_arguments_at_their_edges_are_taken(
    store: Store, arguments: dict[str, Any]
) -> None:
    store.storage("feed").x = 1
    store.storage("feed").y = 2
    assert [c.field for c in store.follow(**arguments)] == ["x", "y"]
