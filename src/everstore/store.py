"""Store: the engine with attribute access and time travel on top."""

from __future__ import annotations

from typing import Any

from .engine import Engine
from .storage import Storage
from .temporal import StoreView

__all__ = ["Store"]


class Store(Engine):
    """Namespaced, versioned storage over one backend.

    ``Store()`` keeps everything in memory; ``Store(Sqlite3(path))`` is the embedded
    default; see :func:`everstore.open` for URLs. A Store is thread-safe and may be
    shared by threads; processes share a database, each with its own Store. Its
    engine methods (docs/engine.md) are what layers build on.

    >>> store = Store()
    >>> player = store.storage("game", "player1")
    >>> player.score = 100
    >>> player.score
    100
    """

    def storage(self, *namespace: str, virtual: dict[str, Any] | None = None) -> Storage:
        """A handle on one namespace (loaded on first touch, then kept in memory).

        Complexity: O(1) once loaded; the first touch reads that namespace's facts.

        :raises InvalidNameError: if the namespace is not one or more printable str
        """
        return Storage(*namespace, store=self, virtual=virtual)

    def as_of(self, *, seq: int | None = None, time: float | None = None) -> StoreView:
        """A read-only view of the whole store as it was at ``seq`` or ``time``.

        >>> store = Store()
        >>> doc = store.storage("doc")
        >>> doc.v = 1
        >>> past = store.last_seq
        >>> doc.v = 2
        >>> store.as_of(seq=past).storage("doc").v
        1

        :raises TypeError: unless exactly one of ``seq`` and ``time`` is given
        :raises ValueError: for a negative seq
        """
        if (seq is None) == (time is None):
            raise TypeError("as_of() needs exactly one of seq= or time=")
        self.sync()
        if time is not None:
            seq = self.seq_at_time(time)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"as_of(seq=...) needs a non-negative int, got {seq!r}")
        return StoreView(self, seq)
