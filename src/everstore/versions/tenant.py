"""One tenant's entries: every read and write of the versions layer.

A :class:`Tenant` handle reaches its own entries only: every entry it names is one
namespace part under its tenant's namespace, and a digest it is given is looked up in
that entry's own chain, so another tenant's digest (or an unused blob's) is unknown
to it even when the bytes behind it are shared in the blob table.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from ..engine import History, Namespace, namespace_path
from ..errors import ConflictError, InvalidNameError
from .diffing import Change, Diff, structural_changes
from .errors import (
    MissingEntryError,
    MissingRecordError,
    MissingVersionError,
    PatternError,
    UnknownTenantError,
)
from .repository import (
    CHECKPOINT_EVERY,
    DELETED,
    RECORDS,
    SNAPSHOT,
    Head,
    Repository,
    State,
    encode_change,
)
from .trie import Record, Ref, key_bytes, write_pack
from .verifying import VerifyReport, verify_entry

__all__ = ["ANY_PARENT", "Tenant", "VersionInfo"]


class _AnyParent:
    def __repr__(self) -> str:
        return "ANY_PARENT"


#: ``parent=`` left out: a write goes on from whatever the head is when it commits
ANY_PARENT: Final[Any] = _AnyParent()

# A write that keeps losing the race to other writers gives up after this many tries
# (each lost try means another writer's version landed: the store made progress).
_MAX_ATTEMPTS = 1000
_CREATED = "created"

Key = str | int
When = float | datetime.datetime
#: what put_many takes (a dict of str keys is one, as a Mapping's key type is invariant)
Records = Mapping[str, Any] | Mapping[int, Any] | Mapping[Key, Any]


class VersionInfo(NamedTuple):
    """One version of an entry: its digest and what the log and the version say of it.

    ``date`` is the version's ``__date__`` (``YYYYMMDD HH:MM:SS +0000``, UTC, taken
    when it was written); ``time`` is the commit's time in the log (what ``as_of``
    compares with), ``seq`` its position, ``context`` the code that committed it;
    ``records`` the root digest of a record version's trie (None otherwise, or with no
    records): the same records, the same root, whatever writes led to them.
    """

    digest: str
    kind: str
    parent: str | None
    user_id: str
    date: str
    time: float
    seq: int
    context: str
    records: str | None


class Tenant:
    """A tenant's handle: the DbEngine API without the tenant argument.

    :param repository: the store's versions (what :class:`DbEngine` holds)
    :param name: the tenant's id, a non-empty printable str without ``/``
    :raises InvalidNameError: for any other name
    """

    def __init__(self, repository: Repository, name: str) -> None:
        namespace_path((repository.prefix, name))
        self._repo = repository
        self.name = name
        self._namespace = repository.tenant_namespace(name)
        self._initialized = False

    def __repr__(self) -> str:
        return f"<Tenant {self.name!r}>"

    # -- the tenant -----------------------------------------------------------------

    def init(self) -> None:
        """Create the tenant (nothing happens if it exists). O(1)."""
        if not self.is_initialized():
            self._repo.store.write(self._namespace, _CREATED, True)

    def is_initialized(self) -> bool:
        """True once :meth:`init` ran, in any process. O(1)."""
        if self._initialized:
            return True  # a tenant is never un-initialised
        self._initialized = self._repo.store.has(self._namespace, _CREATED)
        return self._initialized

    def entries(self, *, include_deleted: bool = False) -> list[str]:
        """The tenant's entries, sorted; deleted ones only with ``include_deleted``.
        One query, plus O(1) per entry.
        """
        names = [
            parts[2]
            for parts in self._repo.store.namespaces(self._namespace.parts)
            if len(parts) == 3
        ]
        if include_deleted:
            return [name for name in names if self._head(name) is not None]
        return [name for name in names if self.exists(name)]

    # -- snapshots ------------------------------------------------------------------

    def save(self, user_id: str, entry: str, obj: Any, *, parent: Any = ANY_PARENT) -> str:
        """Save ``obj`` as the entry's new version and return its digest.

        A value equal to the head's (same canonical bytes) adds no version: the head's
        digest comes back. Concurrent saves all land, one after the other, each the
        parent of the next. O(size of ``obj``).

        :param parent: the digest the head must still be at (None: the entry must have
            no version yet); left out, the save goes on from whatever the head is
        :raises ConflictError: if the head is not at ``parent``
        :raises PatternError: if the entry holds records
        :raises UnknownTenantError: if the tenant was never initialised
        :raises UnsupportedValueError: (a TypeError) for a value nothing can store
        """
        ns = self._writable(user_id, entry)
        data, blobs = self._repo.encoder.encode(obj)
        data_hash = hashlib.sha256(data).digest()
        for _ in range(_MAX_ATTEMPTS):
            _, head = self._checked_head(ns, entry, parent, SNAPSHOT)
            if (
                head is not None
                and head.kind == SNAPSHOT
                and self._repo.data_hash(head.digest) == data_hash
            ):
                return head.digest
            version = self._repo.snapshot_bytes(data, self._metadata(head, user_id))
            digest = hashlib.sha256(version).hexdigest()
            new_head = _whole(digest, SNAPSHOT, user_id)
            if self._commit(ns, head, new_head, [*blobs.values(), version], parent):
                self._repo.remember_data_hash(digest, data_hash)
                return digest
        raise self._gave_up(entry)

    def load(self, entry: str, digest: str | None = None, *, as_of: When | None = None) -> Any:
        """The value saved in the entry's head, in version ``digest``, or in the
        version in force at time ``as_of`` (seconds or a datetime). O(log n) in the
        history (by digest: O(1), after this process's first look-up of a digest in the
        entry indexed its chain, O(n) once) plus O(size of the value).

        :raises MissingEntryError: if the entry has no version (then), or was deleted
        :raises MissingVersionError: if no version of this entry has ``digest``
        :raises PatternError: if the entry holds records (use :meth:`get`)
        :raises UnpicklingRefusedError: for a pickled field with ``unpickle=False``
        """
        head = self._resolve(entry, digest, as_of, SNAPSHOT)
        return self._repo.decoder.decode(self._repo.snapshot_data(head.digest))

    def delete_entry(self, user_id: str, entry: str, *, parent: Any = ANY_PARENT) -> str:
        """Delete the entry: a new version saying so (its past versions all stay
        loadable by digest); return its digest. The entry can be written again later,
        with either pattern, and its chain goes on. O(1).

        :raises MissingEntryError: if the entry has no version or is deleted already
        :raises ConflictError: if the head is not at ``parent``
        """
        ns = self._writable(user_id, entry)
        for _ in range(_MAX_ATTEMPTS):
            _, head = self._checked_head(ns, entry, parent, None)
            if head is None or head.kind == DELETED:
                raise MissingEntryError(f"{self._where(entry)} does not exist: nothing to delete")
            version = self._repo.version_bytes(
                {**self._metadata(head, user_id), "__deleted__": True}
            )
            digest = hashlib.sha256(version).hexdigest()
            if self._commit(ns, head, _whole(digest, DELETED, user_id), [version], parent):
                return digest
        raise self._gave_up(entry)

    # -- records --------------------------------------------------------------------

    def put(self, user_id: str, entry: str, key: Key, value: Any) -> bool:
        """Add or replace one record; True if that made a new version (False: the
        record already had this value). O(log n) in the entry's records.

        :raises PatternError: if the entry holds a snapshot
        :raises TypeError: if ``key`` is not a str or an int
        """
        return self.put_many(user_id, entry, {key: value})

    def put_many(self, user_id: str, entry: str, items: Records) -> bool:
        """Add or replace several records in one version; True if anything changed.
        O(k log n) for k records.

        :raises PatternError: if the entry holds a snapshot
        :raises TypeError: if a key is not a str or an int, or ``items`` not a mapping
        """
        if not isinstance(items, Mapping):
            raise TypeError(
                f"put_many() takes a mapping of key -> value, got {type(items).__name__}"
            )
        blobs: dict[str, bytes] = {}
        changes: dict[bytes, Record | None] = {}
        for key, value in items.items():
            kb = _key_bytes(key)
            data, value_blobs = self._repo.encoder.encode(value)
            blobs.update(value_blobs)
            changes[kb] = Record(kb, key, data)
        return self._change_records(user_id, entry, changes, blobs)

    def remove(self, user_id: str, entry: str, key: Key) -> bool:
        """Remove one record (a new version without it); False if there was none.
        O(log n)."""
        return self.remove_many(user_id, entry, [key])

    def remove_many(self, user_id: str, entry: str, keys: Iterable[Key]) -> bool:
        """Remove several records in one version; False if none of them was there."""
        if isinstance(keys, str | bytes):
            raise TypeError("remove_many() takes an iterable of keys, not one str")
        changes: dict[bytes, Record | None] = {_key_bytes(key): None for key in keys}
        return self._change_records(user_id, entry, changes, {})

    def get(
        self,
        entry: str,
        key: Key | None = None,
        digest: str | None = None,
        *,
        as_of: When | None = None,
    ) -> Any:
        """One record's value, or, with no ``key``, every record's value as a list in
        key order (ints before strs), at the head, version ``digest`` or time
        ``as_of``. O(log n) for one record, O(n) for all.

        :raises MissingRecordError: if there is no record under ``key``
        :raises MissingEntryError: if the entry has no version (then) or was deleted
        :raises PatternError: if the entry holds a snapshot (use :meth:`load`)
        """
        root = self._records_root(entry, digest, as_of)
        if key is None:
            return list(self._items(root).values())
        found = self._repo.trie.get(root, _key_bytes(key))
        if found is None:
            raise MissingRecordError(f"{self._where(entry)} has no record {key!r}")
        return self._repo.decoder.decode(found)

    def items(
        self, entry: str, digest: str | None = None, *, as_of: When | None = None
    ) -> dict[Key, Any]:
        """Every record as a dict key -> value, in key order. O(n)."""
        return self._items(self._records_root(entry, digest, as_of))

    def count(self, entry: str, digest: str | None = None, *, as_of: When | None = None) -> int:
        """How many records the entry holds (then). O(1)."""
        return self._repo.trie.count(self._records_root(entry, digest, as_of))

    # -- history ----------------------------------------------------------------------

    def exists(self, entry: str) -> bool:
        """True if the entry has a version and is not deleted. O(1)."""
        head = self._head(entry)
        return head is not None and head.kind != DELETED

    def get_digest(self, entry: str) -> str:
        """The digest of the entry's head (a deletion version's, if it was deleted).

        :raises MissingEntryError: if the entry has no version
        """
        head = self._head(entry)
        if head is None:
            raise MissingEntryError(f"{self._where(entry)} has no version")
        return head.digest

    def history(
        self,
        entry: str,
        digest: str | None = None,
        max_items: int = 1000,
        *,
        user_id: str | None = None,
    ) -> list[str]:
        """Digests of the entry's versions, newest first, from the head or from
        ``digest`` back; only ``user_id``'s, when given; at most ``max_items``.
        O(max_items) (O(n) with ``user_id``); [] for an entry with no version.

        :raises MissingVersionError: if no version of this entry has ``digest``
        """
        if not isinstance(max_items, int) or max_items < 0:
            raise ValueError(f"max_items is an int >= 0, got {max_items!r}")
        ns = self._namespace_of(entry)
        if digest is not None:
            chain, start = self._locate(ns, entry, digest, None)
        else:
            found_chain = self._repo.chain(ns)
            if found_chain is None:
                return []
            chain, start = found_chain, len(found_chain) - 1
        found: list[str] = []
        for position in range(start, -1, -1):
            if len(found) >= max_items:
                break
            found_head = chain.value_at(position)
            version_digest, version_user = found_head[0], found_head[2]
            if user_id is None or version_user == user_id:
                found.append(version_digest)
        return found

    def info(
        self, entry: str, digest: str | None = None, *, as_of: When | None = None
    ) -> VersionInfo:
        """What is known of one version (the head by default): its digest, kind
        (``"snapshot"``, ``"records"`` or ``"deleted"``), parent, user, date, and
        the time, seq and code location of its commit. O(log n).
        """
        ns = self._namespace_of(entry)
        chain, position = self._locate(ns, entry, digest, as_of)
        value = chain[position]
        head = self._repo.head_at(chain, position)
        if head.kind == RECORDS:
            # a record version is rebuilt from the log, not read from a blob
            parent = chain.value_at(position - 1)[0] if position else None
            root = self._repo.records_state(ns, chain, position).root
            date, records = head.date, (root.digest if root else None)
        else:
            version = self._repo.version(head.digest, head.pack)
            parent, date, records = version.parent, version.date, None
        return VersionInfo(
            head.digest,
            head.kind,
            parent,
            head.user_id,
            date,
            value.time,
            value.seq,
            value.context,
            records,
        )

    def diff(self, entry: str, old: str, new: str) -> Diff:
        """What changed from version ``old`` to version ``new`` of the entry: records
        added, removed and changed (cost: the nodes that differ), or between snapshots,
        a structural diff of their dicts and lists. Between versions of different
        kinds, one change of the whole value (a deleted version's value is None).

        :raises MissingVersionError: if either digest is not a version of this entry
        """
        ns = self._namespace_of(entry)
        places = [self._locate(ns, entry, d, None) for d in (old, new)]
        heads = [self._repo.head_at(chain, position) for chain, position in places]
        kinds = {head.kind for head in heads}
        if kinds == {RECORDS}:
            roots = [self._repo.records_state(ns, *place).root for place in places]
            decode = self._repo.decoder.decode
            changes = [
                _record_change(a, b, decode) for a, b in self._repo.trie.diff(roots[0], roots[1])
            ]
            return Diff(old, new, True, changes)
        values = [self._whole_value(ns, *place) for place in places]
        if kinds == {SNAPSHOT}:
            encode = self._repo.encoder.encode
            structural = structural_changes(
                values[0], values[1], (), lambda a, b: encode(a)[0] == encode(b)[0]
            )
            return Diff(old, new, False, list(structural))
        same = heads[0].digest == heads[1].digest
        return Diff(old, new, False, [] if same else [Change((), "changed", values[0], values[1])])

    def verify(self, entry: str) -> VerifyReport:
        """Recompute every digest along the entry's chain (each version, each records
        node and each blob a version refers to, each once) and check each version's
        parent and user against the log; the report lists every mismatch. O(size of
        everything the entry ever stored).
        """
        ns = self._namespace_of(entry)
        return verify_entry(self._repo, self._where(entry), self._repo.chain(ns))

    # -- the parts ----------------------------------------------------------------------

    def _where(self, entry: str) -> str:
        return f"entry {entry!r} of tenant {self.name!r}"

    def _namespace_of(self, entry: str) -> Namespace:
        if type(entry) is not str:
            raise InvalidNameError(f"an entry's name is a str, got {entry!r}")
        return self._repo.entry_namespace(self.name, entry)

    def _head(self, entry: str) -> Head | None:
        return self._repo.head(self._namespace_of(entry))

    def _chain(self, ns: Namespace, entry: str) -> History:
        chain = self._repo.chain(ns)
        if chain is None:
            raise MissingEntryError(f"{self._where(entry)} has no version")
        return chain

    def _position(self, ns: Namespace, entry: str, digest: str) -> int:
        position = self._repo.position(ns, digest) if type(digest) is str else None
        if position is None:
            raise MissingVersionError(f"{self._where(entry)} has no version {digest!r}")
        return position

    def _locate(
        self, ns: Namespace, entry: str, digest: str | None, as_of: When | None
    ) -> tuple[History, int]:
        """The entry's chain and the position in it of the version asked for."""
        if digest is not None and as_of is not None:
            raise TypeError("give a version's digest or as_of=, not both")
        if digest is not None:
            position = self._position(ns, entry, digest)
            # fetched after the look-up, so it holds every version the index holds
            return self._chain(ns, entry), position
        chain = self._chain(ns, entry)
        if as_of is None:
            return chain, len(chain) - 1
        when = as_of.timestamp() if isinstance(as_of, datetime.datetime) else as_of
        if not isinstance(when, int | float) or isinstance(when, bool):
            raise TypeError(f"as_of is a time in seconds or a datetime, got {as_of!r}")
        position = chain.position(time=float(when))
        if position < 0:
            raise MissingEntryError(f"{self._where(entry)} had no version at {as_of!r}")
        return chain, position

    def _resolve(self, entry: str, digest: str | None, as_of: When | None, kind: str) -> Head:
        """The version asked for, checked to be of ``kind``."""
        return self._resolve_at(entry, digest, as_of, kind)[3]

    def _resolve_at(
        self, entry: str, digest: str | None, as_of: When | None, kind: str
    ) -> tuple[Namespace, History, int, Head]:
        """The version asked for, checked to be of ``kind``, and where it is."""
        ns = self._namespace_of(entry)
        chain, position = self._locate(ns, entry, digest, as_of)
        head = self._repo.head_at(chain, position)
        if head.kind == DELETED:
            raise MissingEntryError(f"{self._where(entry)} was deleted (version {head.digest})")
        if head.kind != kind:
            raise PatternError(_pattern_message(self._where(entry), head.kind))
        return ns, chain, position, head

    def _records_root(self, entry: str, digest: str | None, as_of: When | None) -> Ref | None:
        ns, chain, position, _ = self._resolve_at(entry, digest, as_of, RECORDS)
        return self._repo.records_state(ns, chain, position).root

    def _items(self, root: Ref | None) -> dict[Key, Any]:
        decode = self._repo.decoder.decode
        records = sorted(self._repo.trie.records(root), key=_key_order)
        return {record.key: decode(record.value) for record in records}

    def _whole_value(self, ns: Namespace, chain: History, position: int) -> Any:
        head = self._repo.head_at(chain, position)
        if head.kind == SNAPSHOT:
            return self._repo.decoder.decode(self._repo.snapshot_data(head.digest))
        if head.kind == RECORDS:
            return self._items(self._repo.records_state(ns, chain, position).root)
        return None

    def _writable(self, user_id: str, entry: str) -> Namespace:
        if type(user_id) is not str:
            raise TypeError(f"a user id is a str, got {user_id!r}")
        ns = self._namespace_of(entry)
        if not self.is_initialized():
            raise UnknownTenantError(
                f"tenant {self.name!r} was never initialised: call init() first"
            )
        return ns

    def _checked_head(
        self, ns: Namespace, entry: str, parent: Any, kind: str | None
    ) -> tuple[History | None, Head | None]:
        """The entry's chain and head, checked against ``parent`` and ``kind``."""
        chain = self._repo.chain(ns)
        head = self._repo.head_at(chain, len(chain) - 1) if chain is not None else None
        if parent is not ANY_PARENT and (head.digest if head else None) != parent:
            at = head.digest if head else "no version"
            raise ConflictError(f"{self._where(entry)} is at {at}, not at the parent {parent!r}")
        if kind is not None and head is not None and head.kind not in (kind, DELETED):
            raise PatternError(_pattern_message(self._where(entry), head.kind))
        return chain, head

    def _metadata(self, head: Head | None, user_id: str) -> dict[str, Any]:
        parent = head.digest if head is not None else None
        return self._repo.metadata(parent, user_id, self._repo.store.clock())

    def _commit(
        self,
        ns: Namespace,
        head: Head | None,
        new_head: tuple[str, str, str, str, str, str],
        blobs: list[bytes],
        parent: Any,
    ) -> bool:
        """Write ``blobs`` (the version and all it refers to) and move the head to
        ``new_head``, in one commit: True if it moved; False if another writer moved it
        first and the write should be tried again from the new head."""
        try:
            self._repo.commit(ns, head.seq if head else 0, new_head, blobs)
        except ConflictError:
            if parent is not ANY_PARENT:
                raise
            return False
        return True

    def _change_records(
        self,
        user_id: str,
        entry: str,
        changes: dict[bytes, Record | None],
        blobs: dict[str, bytes],
    ) -> bool:
        """Make ``changes`` a new version. Its head fact holds the change itself; one
        write in :data:`CHECKPOINT_EVERY` also stores, in one pack with its version,
        every node of its trie not in a pack yet (a checkpoint), so that reading any
        version replays at most that many changes."""
        ns = self._writable(user_id, entry)
        repo = self._repo
        change = encode_change(changes)
        for _ in range(_MAX_ATTEMPTS):
            chain, head = self._checked_head(ns, entry, ANY_PARENT, RECORDS)
            live = head is not None and head.kind == RECORDS
            position = len(chain) if chain is not None else 0
            state = State(None, 0)
            if live and chain is not None:
                state = repo.records_state(ns, chain, position - 1)
            new = repo.apply(state, changes)
            before = state.root.digest if state.root is not None else None
            root = new.root.digest if new.root is not None else None
            if (live and root == before) or (not live and root is None):
                return False
            metadata = {**self._metadata(head, user_id), "__records__": root}
            version = repo.version_bytes(metadata)
            digest = hashlib.sha256(version).hexdigest()
            to_store = list(blobs.values())
            pack_digest = ""
            placed: dict[str, tuple[bytes, tuple[str, ...]]] = {}
            if new.since >= CHECKPOINT_EVERY:
                placed = repo.trie.unplaced(new.root)
                pack = write_pack({**placed, digest: (version, ())})
                pack_digest = hashlib.sha256(pack).hexdigest()
                to_store.append(pack)
            new_head = (digest, RECORDS, user_id, pack_digest, metadata["__date__"], change)
            if not self._commit(ns, head, new_head, to_store, ANY_PARENT):
                continue
            if pack_digest:
                # the checkpoint's nodes are in its pack now (it has none if no records)
                if new.root is not None:
                    assert new.root.pending is not None
                    repo.trie.placed(placed, new.root.pending, pack_digest)
                    new = State(Ref(new.root.digest, pack_digest), 0)
                else:
                    new = State(None, 0)
            repo.remember_state(ns, position, new)
            return True
        raise self._gave_up(entry)

    def _gave_up(self, entry: str) -> ConflictError:
        return ConflictError(
            f"{self._where(entry)}: other writers kept moving the head; gave up after "
            f"{_MAX_ATTEMPTS} tries"
        )


def _whole(digest: str, kind: str, user_id: str) -> tuple[str, str, str, str, str, str]:
    """The head fact of a version stored whole, as a blob of its own."""
    return (digest, kind, user_id, "", "", "")


def _key_bytes(key: Any) -> bytes:
    if type(key) is not str and type(key) is not int:
        raise TypeError(f"a record key is a str or an int, got {key!r}")
    if type(key) is int and not -(2**63) <= key < 2**64:
        raise TypeError(f"a record key int must fit in 64 bits, got {key!r}")
    return key_bytes(key)


def _key_order(record: Record) -> tuple[bool, Any]:
    return type(record.key) is str, record.key


def _record_change(old: Record | None, new: Record | None, decode: Any) -> Change:
    if old is None:
        assert new is not None
        return Change((new.key,), "added", None, decode(new.value))
    if new is None:
        return Change((old.key,), "removed", decode(old.value), None)
    return Change((old.key,), "changed", decode(old.value), decode(new.value))


def _pattern_message(where: str, kind: str) -> str:
    if kind == RECORDS:
        return f"{where} holds records: use put/get on it, or delete the entry first"
    return f"{where} holds a snapshot: use save/load on it, or delete the entry first"
