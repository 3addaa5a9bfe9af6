"""Blobs: bytes stored once under their SHA-256 digest, beside the log (the Engine's
blob API, mixed into :class:`~everstore.engine.Engine`)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..errors import MissingBlobError

if TYPE_CHECKING:
    from ..backends.base import Backend
    from .transactions import ThreadState

__all__ = ["Blobs"]


class Blobs:
    """Mixed into :class:`~everstore.engine.Engine`; uses its backend, lock,
    thread state and open-transaction count."""

    if TYPE_CHECKING:
        backend: Backend
        open_transactions: int
        _lock: threading.RLock
        _local: ThreadState

        def check_open(self) -> None: ...

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` once under its SHA-256 digest and return the digest (64 hex
        characters). Putting the same bytes again stores nothing more. Blobs are
        written at once, outside any transaction, and never removed.

        >>> from everstore import Engine
        >>> store = Engine()
        >>> digest = store.put_blob(b"hello")
        >>> digest[:12], store.get_blob(digest)
        ('2cf24dba5fb0', b'hello')

        :raises TypeError: if ``data`` is not bytes-like
        """
        return self.put_blobs([data])[0]

    def put_blobs(self, blobs: Iterable[bytes]) -> list[str]:
        """Store several blobs at once, atomically, in one write to the backend, and
        return their digests in order (as :meth:`put_blob` does for one). O(total
        bytes).

        Inside a transaction they are stored with its commit (in the same database
        transaction on SQLite and in memory, just before it on PostgreSQL), and not at
        all if it fails; :meth:`get_blob` in the same thread sees them at once. A
        savepoint rolled back keeps them: bytes no fact refers to are harmless.

        >>> from everstore import Engine
        >>> store = Engine()
        >>> [d[:8] for d in store.put_blobs([b"a", b"b", b"a"])]
        ['ca978112', '3e23e816', 'ca978112']

        :raises TypeError: if an item is not bytes-like (nothing is stored then)
        """
        pairs: dict[bytes, bytes] = {}
        digests: list[str] = []
        for data in blobs:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"a blob is bytes, got {type(data).__name__}")
            payload = bytes(data)
            digest = hashlib.sha256(payload).digest()
            pairs[digest] = payload
            digests.append(digest.hex())
        txn = self._local.txn if self.open_transactions else None
        if txn is not None:
            self.check_open()
            txn.blobs.update(pairs)
        elif pairs:
            self._store_blobs(list(pairs.items()))
        return digests

    def _store_blobs(self, blobs: Sequence[tuple[bytes, bytes]]) -> None:
        with self._lock:
            self.check_open()
            self.backend.put_blobs(blobs)

    def get_blob(self, digest: str) -> bytes:
        """The bytes stored under ``digest`` (64 hex characters, as :meth:`put_blob`
        returned).

        :raises ValueError: if ``digest`` is not 64 hex characters
        :raises MissingBlobError: if nothing is stored under it
        """
        key = _digest_bytes(digest)
        self.check_open()
        txn = self._local.txn if self.open_transactions else None
        data = txn.blobs.get(key) if txn is not None else None
        if data is None:
            data = self.backend.get_blob(key)
        if data is None:
            raise MissingBlobError(f"no blob is stored under {digest}")
        return data

    def blobs(self, after: str = "", limit: int = 1000) -> list[tuple[str, bytes]]:
        """Up to ``limit`` stored blobs whose digest (64 hex characters) sorts after
        ``after`` (``""``: from the first), as ``(digest, data)`` pairs in digest
        order: the whole blob table, page by page, as an export reads it. Blobs a
        transaction of the calling thread holds until its commit are not listed.

        >>> from everstore import Engine
        >>> store = Engine()
        >>> digests = store.put_blobs([b"a", b"b"])
        >>> [(d[:8], data) for d, data in store.blobs()]
        [('3e23e816', b'b'), ('ca978112', b'a')]
        >>> [d[:8] for d, _ in store.blobs(after=digests[1], limit=1)]
        ['ca978112']

        :raises ValueError: if ``after`` is not "" or 64 hex characters, or ``limit``
            not an int >= 1
        :raises StoreClosedError: if the Engine is closed
        """
        if type(limit) is not int or limit < 1:
            raise ValueError(f"blobs(limit=...) needs an int >= 1, got {limit!r}")
        start = _digest_bytes(after) if after != "" else b""
        self.check_open()
        return [(key.hex(), data) for key, data in self.backend.blobs_after(start, limit)]


def _digest_bytes(digest: object) -> bytes:
    """The 32 bytes of a blob digest written as 64 hex characters.

    :raises ValueError: if ``digest`` is not 64 hex characters
    """
    if type(digest) is str and len(digest) == 64:
        try:
            return bytes.fromhex(digest)
        except ValueError:
            pass
    raise ValueError(f"a blob digest is 64 hex characters, got {digest!r}")
