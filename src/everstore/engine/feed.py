"""The change feed: every fact after a cursor, in seq order, each once, waiting for
new ones; and subscriptions that call a function for each from a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, NamedTuple

from ..backends.base import Backend
from ..log import Fact

__all__ = [
    "Change",
    "Subscription",
    "check_changes_arguments",
    "check_follow_arguments",
    "facts_after",
    "facts_between",
]

#: how long a follower waits at most before it checks that its Engine is still open
_FOLLOW_SLICE = 0.25


class Change(NamedTuple):
    """One fact of the change feed, with its value decoded."""

    seq: int
    time: float
    namespace: tuple[str, ...]
    field: str
    unavailable: bool
    data: Any
    context: str


def check_follow_arguments(since: object, timeout: object, batch: object) -> None:
    """Refuse follow() arguments that would never yield or wait wrongly.

    :raises TypeError: naming the argument that is wrong
    """
    if type(since) is not int or since < 0:
        raise TypeError(f"follow(since=...) needs a seq, an int >= 0, got {since!r}")
    if timeout is not None and (
        type(timeout) not in (int, float) or not timeout >= 0  # type: ignore[operator]
    ):
        raise TypeError(f"follow(timeout=...) needs None or seconds >= 0, got {timeout!r}")
    if type(batch) is not int or batch < 1:
        raise TypeError(f"follow(batch=...) needs an int >= 1, got {batch!r}")


def facts_after(
    backend: Backend,
    check_open: Callable[[], None],
    cursor: int,
    timeout: float | None,
    batch: int,
) -> Iterator[Fact]:
    """Every fact above ``cursor`` in seq order, then waiting for more until
    ``timeout`` seconds pass without one. ``check_open`` raises once the engine is
    closed; it is called at least every quarter second while waiting."""
    while True:
        check_open()
        token = backend.change_token()
        facts = backend.facts_since(cursor, batch)
        if facts:
            for fact in facts:
                yield fact
                cursor = fact.seq
            continue
        if not _wait_for_change(backend, check_open, token, timeout):
            return


def check_changes_arguments(after: object, upto: object, batch: object) -> None:
    """Refuse changes() arguments that are not seqs or a batch size.

    :raises TypeError: naming the argument that is wrong
    """
    if type(after) is not int or after < 0:
        raise TypeError(f"changes(after=...) needs a seq, an int >= 0, got {after!r}")
    if upto is not None and (type(upto) is not int or upto < 0):
        raise TypeError(f"changes(upto=...) needs None or a seq, an int >= 0, got {upto!r}")
    if type(batch) is not int or batch < 1:
        raise TypeError(f"changes(batch=...) needs an int >= 1, got {batch!r}")


def facts_between(
    backend: Backend, after: int, upto: int, newest_first: bool, batch: int
) -> Iterator[Fact]:
    """The committed facts with ``after < seq <= upto``, in seq order or newest first,
    read ``batch`` at a time: newest first costs what is read, not the whole log."""
    if not newest_first:
        cursor = after
        while cursor < upto:
            facts = backend.facts_since(cursor, batch)
            for fact in facts:
                if fact.seq > upto:
                    return
                yield fact
                cursor = fact.seq
            if len(facts) < batch:
                return
        return
    high = upto
    while high > after:
        low = max(after, high - batch)
        # seqs are distinct ints, so the (high - low) facts after ``low`` hold every
        # fact up to ``high`` (fewer when seqs have gaps)
        window = [fact for fact in backend.facts_since(low, high - low) if fact.seq <= high]
        yield from reversed(window)
        high = low


def _wait_for_change(
    backend: Backend, check_open: Callable[[], None], token: Hashable, timeout: float | None
) -> bool:
    # The backend's wait, in slices, so that close() ends a waiting follower (with
    # StoreClosedError) within a slice even when it waits for ever.
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = _FOLLOW_SLICE if deadline is None else deadline - time.monotonic()
        if backend.wait_for_change(token, max(0.0, min(left, _FOLLOW_SLICE))):
            return True
        check_open()
        if deadline is not None and time.monotonic() >= deadline:
            return False


class Subscription:
    """A background follower calling a function for each change (see
    :meth:`Engine.subscribe`)."""

    def __init__(
        self,
        follow: Callable[[int, float], Iterator[Change]],
        callback: Callable[[Change], object],
        since: int,
    ) -> None:
        self.last_seq = since
        self._follow = follow
        self._callback = callback
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="everstore-subscription", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for change in self._follow(self.last_seq, 0.05):
                    self._callback(change)
                    self.last_seq = change.seq
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # handed to close(), which re-raises it
            if not self._stop.is_set():
                self._error = exc

    @property
    def running(self) -> bool:
        """True until the subscription is closed or its callback raised."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the subscription stops (closed, or its callback raised);
        True if it stopped within ``timeout`` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop, wait for the thread, and re-raise the callback's error, if any."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
