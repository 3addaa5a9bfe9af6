"""Where versions live in a store: heads in the log, versions and nodes in the blob table.

An entry is the namespace ``(prefix, tenant, entry)``; its field ``head`` holds
``(digest, kind, user_id, pack, date, change)`` of its latest version (:class:`Head`),
so the field's history is the entry's commit chain, in the log's order, with the time
and code location of each commit. A version is canonical JSON whose SHA-256 is its
digest, holding the metadata MyDbEngine writes (``__parent__``, ``__user_id__``,
``__date__``) and one of

* ``__data__``: the saved value (a snapshot entry), stored in the blob table under the
  digest;
* ``__deleted__``: true (the entry was deleted; the chain goes on if it is written
  again), stored the same way;
* ``__records__``: the root digest of the records trie (a record entry; null when
  empty). Such a version is not stored: its head fact holds its date and the change
  its write made, and the version is rebuilt by replaying changes from a checkpoint.
  One record write in :data:`CHECKPOINT_EVERY` is a checkpoint: its head names a pack
  (see :mod:`everstore.versions.trie`) holding the version and every node of its trie
  that no earlier pack holds.

A tenant is the namespace ``(prefix, tenant)``, whose field ``created`` says it was
initialised. Nothing here knows about tenants' isolation: :class:`Tenant` does.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

import orjson

from ..engine import Engine, History, Namespace
from ..errors import DecodeError, MissingFieldError
from .canonical import Decoder, Encoder, dumps
from .handlers import Handlers
from .trie import Record, Ref, Scratch, Trie, key_bytes

__all__ = [
    "CHECKPOINT_EVERY",
    "DELETED",
    "RECORDS",
    "SNAPSHOT",
    "Head",
    "Repository",
    "State",
    "Version",
    "decode_change",
    "encode_change",
]

SNAPSHOT = "snapshot"
RECORDS = "records"
DELETED = "deleted"
HEAD = "head"
#: a record write stores its trie's new nodes in a pack once this many versions of
#: the entry went without one; the others store only their change in the log
CHECKPOINT_EVERY = 32
_DATA_PREFIX = b'{"__data__":'
_DATE_KEY = b',"__date__":'


class Head(NamedTuple):
    """A version as the entry's head field has it: its digest, kind and user; for a
    record version its ``__date__``, the change it made and, for a checkpoint, the
    pack holding its nodes; and the seq of that fact (what a commit on top of it
    expects)."""

    digest: str
    kind: str
    user_id: str
    pack: str
    date: str
    change: str
    seq: int


class State(NamedTuple):
    """A record entry's trie as of one version: its root (None: no records) and how
    many versions since its last checkpoint (or since its records began)."""

    root: Ref | None
    since: int


class Version(NamedTuple):
    """A version's metadata as stored in it."""

    digest: str
    parent: str | None
    user_id: str
    date: str
    kind: str
    records: str | None  # the trie root of a record version


class Repository:
    """The versions of every tenant of one store: reading and committing them.

    :param store: the everstore Engine holding everything
    :param prefix: the first namespace part of every tenant
    """

    def __init__(self, store: Engine, prefix: str, handlers: Handlers, unpickle: bool) -> None:
        self.store = store
        self.prefix = prefix
        self.encoder = Encoder(handlers, store.codec)
        self.decoder = Decoder(handlers, store.codec, store.get_blob, unpickle)
        self.trie = Trie(store.get_blob)
        self._lock = threading.Lock()
        # digest -> Version, and digest -> SHA-256 of a snapshot's data: versions never
        # change, so these are never stale; bounded to the recently used
        self._versions: OrderedDict[str, Version] = OrderedDict()
        self._data_hashes: OrderedDict[str, bytes] = OrderedDict()
        # entry path -> (versions indexed, digest -> position in the head history)
        self._positions: dict[str, tuple[int, dict[str, int]]] = {}
        self._last_date = (-1, "")
        # (entry path, position) -> the records then, for the recently used versions
        self._states: OrderedDict[tuple[str, int], State] = OrderedDict()

    # -- namespaces ---------------------------------------------------------------

    def tenant_namespace(self, tenant: str) -> Namespace:
        return self.store.namespace((self.prefix, tenant))

    def entry_namespace(self, tenant: str, entry: str) -> Namespace:
        return self.store.namespace((self.prefix, tenant, entry))

    # -- heads and the chain ------------------------------------------------------

    def head(self, ns: Namespace) -> Head | None:
        """The entry's latest version, or None if it has none."""
        history = self.chain(ns)
        if history is None:
            return None
        return self.head_at(history, len(history) - 1)

    def chain(self, ns: Namespace) -> History | None:
        """The entry's head history (its versions, oldest first), or None if it has
        none."""
        try:
            return self.store.history(ns, HEAD)
        except MissingFieldError:
            return None

    @staticmethod
    def head_at(history: History, position: int) -> Head:
        digest, kind, user_id, pack, date, change = history.value_at(position)
        return Head(digest, kind, user_id, pack, date, change, history.seq_at(position))

    def position(self, ns: Namespace, digest: str) -> int | None:
        """Where ``digest`` is in the entry's chain (0: its first version), or None.
        O(1) after one pass over the versions this process has not indexed yet."""
        history = self.chain(ns)
        if history is None:
            return None
        with self._lock:
            indexed, positions = self._positions.get(ns.path, (0, {}))
            for i in range(indexed, len(history)):
                positions[history.value_at(i)[0]] = i
            self._positions[ns.path] = (max(indexed, len(history)), positions)
            return positions.get(digest)

    def commit(
        self,
        ns: Namespace,
        expected_seq: int,
        head: tuple[str, str, str, str, str, str],
        blobs: list[bytes],
    ) -> None:
        """Store ``blobs`` (the version and everything it refers to) and move the
        entry's head to ``head`` (as :class:`Head` has it, seq aside) if it is still at
        ``expected_seq``, in one commit: on SQLite one database transaction.

        :raises ConflictError: if another writer moved the head first (then nothing
            is written)
        """
        store = self.store
        with store.transaction(isolation="atomic"):
            if blobs:
                store.put_blobs(blobs)
            store.expect(ns, HEAD, expected_seq)
            store.write(ns, HEAD, head)

    # -- versions -----------------------------------------------------------------

    def metadata(self, parent: str | None, user_id: str, when: float) -> dict[str, Any]:
        return {"__date__": self._date(int(when)), "__parent__": [parent], "__user_id__": user_id}

    def _date(self, second: int) -> str:
        """``__date__`` of a second (the last one is kept: writes come many a second)."""
        last = self._last_date
        if last[0] != second:
            last = (second, time.strftime("%Y%m%d %H:%M:%S +0000", time.gmtime(second)))
            self._last_date = last
        return last[1]

    @staticmethod
    def snapshot_bytes(data: bytes, metadata: dict[str, Any]) -> bytes:
        """A snapshot version: ``__data__`` sorts before every metadata key, so the
        canonical bytes are the data's bytes with the metadata's after them."""
        return _DATA_PREFIX + data + b"," + dumps(metadata)[1:]

    @staticmethod
    def version_bytes(metadata: dict[str, Any]) -> bytes:
        """A record or deletion version: its metadata, canonical."""
        return dumps(metadata)

    def version_blob(self, digest: str, pack: str) -> bytes:
        """The stored bytes of version ``digest``, in ``pack`` ("": its own blob)."""
        if not pack:
            return self.store.get_blob(digest)
        item = self.trie.pack(pack).items.get(digest)
        if item is None:
            raise DecodeError(f"version {digest} is not in pack {pack}")
        return item[0]

    def version(self, digest: str, pack: str) -> Version:
        """The metadata stored in version ``digest`` (in ``pack``)."""
        with self._lock:
            found = self._versions.get(digest)
        if found is not None:
            return found
        found = self.parse_version(digest, self.version_blob(digest, pack))
        with self._lock:
            self._versions[digest] = found
            if len(self._versions) > 4096:
                self._versions.popitem(last=False)
        return found

    @staticmethod
    def parse_version(digest: str, blob: bytes) -> Version:
        """The metadata in a version's stored bytes.

        :raises DecodeError: if they are not a version
        """
        try:
            if blob.startswith(_DATA_PREFIX):
                meta = orjson.loads(b"{" + blob[blob.rindex(_DATE_KEY) + 1 :])
                kind, records = SNAPSHOT, None
            else:
                meta = orjson.loads(blob)
                kind = DELETED if meta.get("__deleted__") is True else RECORDS
                records = meta.get("__records__")
            (parent,) = meta["__parent__"]
            return Version(digest, parent, meta["__user_id__"], meta["__date__"], kind, records)
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"version {digest} is damaged: {exc!r}") from None

    # -- record entries: checkpoints and replay ---------------------------------------

    def records_state(self, ns: Namespace, chain: History, position: int) -> State:
        """The records of the version at ``position`` (a record version): the state
        of the nearest checkpoint at or before it (or of a state at hand), with the
        changes after it applied: O(CHECKPOINT_EVERY log n) at most."""
        pending: list[str] = []
        start = position
        state = State(None, 0)
        while start >= 0:
            at_hand = self._state_at_hand(ns, start)
            if at_hand is not None:
                if start == position:
                    return at_hand  # nothing to replay or remember
                state = at_hand
                break
            head = self.head_at(chain, start)
            if head.kind != RECORDS:
                break  # the records begin after a snapshot or a deletion
            if head.pack:
                state = State(self.checkpoint_root(head), 0)
                break
            pending.append(head.change)
            start -= 1
        for change in reversed(pending):
            state = self.apply(state, decode_change(change))
        self.remember_state(ns, position, state)
        return state

    def _state_at_hand(self, ns: Namespace, position: int) -> State | None:
        with self._lock:
            found = self._states.get((ns.path, position))
            if found is not None:
                self._states.move_to_end((ns.path, position))
            return found

    def apply(self, state: State, changes: dict[bytes, Record | None]) -> State:
        """``state`` with ``changes`` made (the nodes they make in a new scratch)."""
        root = state.root
        scratch: Scratch = dict(root.pending) if root is not None and root.pending else {}
        if root is not None and not root.pack:
            root = Ref(root.digest, "", scratch)
        return State(self.trie.update(root, changes, scratch), state.since + 1)

    def remember_state(self, ns: Namespace, position: int, state: State) -> None:
        with self._lock:
            self._states[(ns.path, position)] = state
            while len(self._states) > 32:
                self._states.popitem(last=False)

    def checkpoint_root(self, head: Head) -> Ref | None:
        """The root of a checkpoint: its version is stored in its pack."""
        root = self.version(head.digest, head.pack).records
        return Ref(root, head.pack) if root is not None else None

    def snapshot_data(self, digest: str) -> bytes:
        """The canonical bytes of a snapshot version's value."""
        return self.data_of(digest, self.store.get_blob(digest))

    @staticmethod
    def data_of(digest: str, blob: bytes) -> bytes:
        """The canonical bytes of the value in a snapshot version's stored bytes."""
        if not blob.startswith(_DATA_PREFIX):
            raise DecodeError(f"version {digest} is not a snapshot")
        return blob[len(_DATA_PREFIX) : blob.rindex(_DATE_KEY)]

    def data_hash(self, digest: str) -> bytes:
        """The SHA-256 of a snapshot version's value: equal values, equal hashes."""
        with self._lock:
            found = self._data_hashes.get(digest)
        if found is None:
            found = hashlib.sha256(self.snapshot_data(digest)).digest()
            self.remember_data_hash(digest, found)
        return found

    def remember_data_hash(self, digest: str, data_hash: bytes) -> None:
        with self._lock:
            self._data_hashes[digest] = data_hash
            if len(self._data_hashes) > 4096:
                self._data_hashes.popitem(last=False)


def encode_change(changes: dict[bytes, Record | None]) -> str:
    """A record write's change as stored in its head fact: the records it puts (key
    and value) and the keys it removes, in key order."""
    puts = []
    removed = []
    for kb in sorted(changes):
        record = changes[kb]
        if record is None:
            removed.append(orjson.Fragment(kb))
        else:
            puts.append([record.key, orjson.Fragment(record.value)])
    # text, not bytes: the log stores a str as itself (bytes would be base64)
    return orjson.dumps({"p": puts, "r": removed}).decode("utf-8")


def decode_change(data: str) -> dict[bytes, Record | None]:
    """The changes :func:`encode_change` stored.

    :raises DecodeError: if ``data`` is not such a change
    """
    try:
        tree = orjson.loads(data)
        changes: dict[bytes, Record | None] = {}
        for key, value in tree["p"]:
            kb = key_bytes(key)
            changes[kb] = Record(kb, key, dumps(value))
        for key in tree["r"]:
            changes[key_bytes(key)] = None
        return changes
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(f"a stored record change is damaged: {exc!r}") from None
