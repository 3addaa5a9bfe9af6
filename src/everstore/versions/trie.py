"""A record entry's records: a hash trie of content-addressed nodes, stored in packs.

Each node is canonical JSON named by its SHA-256 and names its children by digest, so
a version of a record entry is one root digest, versions share every node they have
in common, and a put makes only the nodes on one path: O(log n) nodes, each at most
:data:`WIDTH` digests or :data:`BUCKET` records.

The shape depends on the set of records only, never on the order of the puts: a node
holding at most BUCKET records is a leaf (its records sorted by key), a larger one is a
branch splitting them by the next :data:`BITS` bits of the SHA-256 of their key. So
the same records give the same root digest, whatever history led to them.

    leaf    {"r": [[key, value], ...]}                JSON, sorted by the key's JSON
    branch  b"B1" | u32 bitmap | u64 records below | 32-byte digest per child

Storage: nodes are made in memory, in a *scratch* (a dict of the nodes no pack holds
yet), and stored together, as one *pack* blob, at a checkpoint (every
``CHECKPOINT_EVERY`` record writes of an entry): one blob per checkpoint instead of one
per node, which on SQLite is most of the cost (each blob is a random insert into the
digest index). A pack lists, for each branch in it, the pack of each child (empty:
this pack); that location is kept beside the node, outside its hashed bytes, so a
node's digest still depends on its content only. Pack layout::

    b"EVPK1\\n" then per item: digest (32 bytes) | u32 size | bytes | u32 size | locations

where a branch's locations are, per child, b"\\x00" (in this pack) or b"\\x01" and the
32-byte digest of the pack holding it; a leaf's, or a version's, are empty.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import NamedTuple

import orjson

from ..errors import DecodeError, UnsupportedValueError

__all__ = [
    "BITS",
    "BUCKET",
    "WIDTH",
    "Branch",
    "Leaf",
    "Pack",
    "Record",
    "Ref",
    "Scratch",
    "Trie",
    "decode_node",
    "key_bytes",
    "read_pack",
    "write_pack",
]

BITS = 5
WIDTH = 1 << BITS
BUCKET = 16
_MASK = WIDTH - 1
# SHA-256 has 256 bits; below this depth records that still collide share a leaf
_MAX_LEVEL = 256 // BITS
_SORTED = orjson.OPT_SORT_KEYS
_MAGIC = b"EVPK1\n"
_SIZE = struct.Struct(">I")
_BRANCH = b"B1"
_BRANCH_HEAD = struct.Struct(">2sIQ")
_HERE = b"\x00"
_THERE = b"\x01"


class Record(NamedTuple):
    """One record in a leaf: the key's JSON (its sort and hash key), the key, and the
    value's canonical bytes."""

    kb: bytes
    key: str | int
    value: bytes


class Leaf(NamedTuple):
    records: tuple[Record, ...]


class Branch(NamedTuple):
    bitmap: int
    children: tuple[str, ...]
    size: int
    #: the pack holding each child ("": the pack this branch is in)
    packs: tuple[str, ...]


Node = Leaf | Branch


#: nodes not in any pack yet: digest -> (node, its canonical bytes)
Scratch = dict[str, tuple["Node", bytes]]


class Ref(NamedTuple):
    """Where a node is: its digest and the pack holding it, or, for a node not in a
    pack yet (pack ""), the scratch holding it."""

    digest: str
    pack: str
    pending: Scratch | None = None


class Pack(NamedTuple):
    """A parsed pack: digest -> (stored bytes, child locations)."""

    items: dict[str, tuple[bytes, tuple[str, ...]]]


def key_bytes(key: str | int) -> bytes:
    """The JSON of a record key: what it is sorted and hashed by.

    :raises UnsupportedValueError: for a key JSON cannot hold (a lone surrogate)
    """
    try:
        return orjson.dumps(key)
    except orjson.JSONEncodeError as exc:
        raise UnsupportedValueError(f"cannot use {key!r} as a record key: {exc}") from None


def _hash(kb: bytes) -> int:
    return int.from_bytes(hashlib.sha256(kb).digest(), "little")


def _encode(node: Node) -> bytes:
    """A node's canonical bytes (what its digest is the SHA-256 of)."""
    if isinstance(node, Leaf):
        # what orjson.dumps({"r": [[key, value], ...]}) writes, from the parts at hand
        items = b",".join([b"[" + r.kb + b"," + r.value + b"]" for r in node.records])
        return b'{"r":[' + items + b"]}"
    head = _BRANCH_HEAD.pack(_BRANCH, node.bitmap, node.size)
    return head + bytes.fromhex("".join(node.children))


def _encode_locations(packs: tuple[str, ...]) -> bytes:
    # one fromhex over the whole: far cheaper than one per child
    return bytes.fromhex("".join(["01" + pack if pack else "00" for pack in packs]))


def _decode_locations(data: bytes) -> tuple[str, ...]:
    packs: list[str] = []
    at = 0
    while at < len(data):
        if data[at : at + 1] == _HERE:
            packs.append("")
            at += 1
        elif data[at : at + 1] == _THERE and at + 33 <= len(data):
            packs.append(data[at + 1 : at + 33].hex())
            at += 33
        else:
            raise ValueError("damaged child locations")
    return tuple(packs)


def decode_node(data: bytes, packs: tuple[str, ...]) -> Node:
    """The node whose canonical bytes are ``data`` and whose children are in ``packs``.

    :raises DecodeError: if they are not a node
    """
    try:
        if data[:2] == _BRANCH:
            _, bitmap, size = _BRANCH_HEAD.unpack_from(data)
            raw = data[_BRANCH_HEAD.size :]
            children = tuple(raw[i : i + 32].hex() for i in range(0, len(raw), 32))
            if len(packs) != len(children) or len(raw) % 32 or bitmap.bit_count() != len(children):
                raise ValueError("a branch's children, bitmap and locations disagree")
            return Branch(bitmap, children, size, tuple(packs))
        tree = orjson.loads(data)
        if "r" in tree:
            return Leaf(
                tuple(
                    Record(key_bytes(key), key, orjson.dumps(value, option=_SORTED))
                    for key, value in tree["r"]
                )
            )
        raise ValueError("neither a leaf nor a branch")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, struct.error) as exc:
        raise DecodeError(f"a stored record node is damaged: {exc!r}") from None


def write_pack(items: dict[str, tuple[bytes, tuple[str, ...]]]) -> bytes:
    """The bytes of a pack holding ``items`` (digest -> bytes and child locations)."""
    parts = [_MAGIC]
    for digest, (data, packs) in items.items():
        locations = _encode_locations(packs)
        parts += [bytes.fromhex(digest), _SIZE.pack(len(data)), data]
        parts += [_SIZE.pack(len(locations)), locations]
    return b"".join(parts)


def read_pack(data: bytes) -> Pack:
    """The items of a pack's bytes.

    :raises DecodeError: if they are not a pack
    """
    if not data.startswith(_MAGIC):
        raise DecodeError("a stored pack of records nodes is damaged: no pack header")
    items: dict[str, tuple[bytes, tuple[str, ...]]] = {}
    at = len(_MAGIC)
    try:
        while at < len(data):
            digest = data[at : at + 32].hex()
            (size,) = _SIZE.unpack_from(data, at + 32)
            body = data[at + 36 : at + 36 + size]
            at += 36 + size
            (size,) = _SIZE.unpack_from(data, at)
            locations = _decode_locations(data[at + 4 : at + 4 + size])
            at += 4 + size
            if at > len(data) or len(digest) != 64:
                raise ValueError("the pack is truncated")
            items[digest] = (body, locations)
    except (struct.error, ValueError) as exc:
        raise DecodeError(f"a stored pack of records nodes is damaged: {exc!r}") from None
    return Pack(items)


class Trie:
    """Reads and builds tries over a blob table.

    :param get_blob: digest -> bytes (the engine's ``get_blob``)
    :param cache_size: how many decoded nodes (and a tenth as many packs) to keep:
        nodes never change, so a cached one is always right, and the ones on recent
        paths are the ones used again
    """

    def __init__(self, get_blob: Callable[[str], bytes], cache_size: int = 8192) -> None:
        self._get_blob = get_blob
        self._nodes: OrderedDict[str, tuple[Node, str]] = OrderedDict()
        self._packs: OrderedDict[str, Pack] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- nodes and packs ------------------------------------------------------------

    def pack(self, digest: str) -> Pack:
        """The parsed pack stored under ``digest``."""
        with self._lock:
            found = self._packs.get(digest)
            if found is not None:
                self._packs.move_to_end(digest)
                return found
        found = read_pack(self._get_blob(digest))
        with self._lock:
            self._packs[digest] = found
            if len(self._packs) > self._cache_size // 10:
                self._packs.popitem(last=False)
        return found

    def node(self, ref: Ref) -> Node:
        """The node ``ref`` points at."""
        if not ref.pack:
            pending = ref.pending.get(ref.digest) if ref.pending is not None else None
            if pending is None:
                raise DecodeError(f"records node {ref.digest} is in no pack and not at hand")
            return pending[0]
        with self._lock:
            cached = self._nodes.get(ref.digest)
            if cached is not None:
                self._nodes.move_to_end(ref.digest)
                return cached[0]
        item = self.pack(ref.pack).items.get(ref.digest)
        if item is None:
            raise DecodeError(f"records node {ref.digest} is not in pack {ref.pack}")
        data, locations = item
        node = decode_node(data, tuple(location or ref.pack for location in locations))
        self._remember(ref.digest, node, ref.pack)
        return node

    def _remember(self, digest: str, node: Node, pack: str) -> None:
        with self._lock:
            self._nodes[digest] = (node, pack)
            if len(self._nodes) > self._cache_size:
                self._nodes.popitem(last=False)

    def _write(self, node: Node, scratch: Scratch) -> str:
        data = _encode(node)
        digest = hashlib.sha256(data).hexdigest()
        scratch[digest] = (node, data)
        return digest

    def unplaced(self, root: Ref | None) -> dict[str, tuple[bytes, tuple[str, ...]]]:
        """Every node under ``root`` in no pack yet, as :func:`write_pack` takes them
        (digest -> bytes and child locations). O(such nodes)."""
        found: dict[str, tuple[bytes, tuple[str, ...]]] = {}
        pending = [root.digest] if root is not None and not root.pack else []
        scratch = root.pending if root is not None else None
        while pending:
            assert scratch is not None
            digest = pending.pop()
            node, data = scratch[digest]
            if isinstance(node, Branch):
                found[digest] = (data, node.packs)
                # a child in no pack ("") is in the same scratch
                pending += [d for d, p in zip(node.children, node.packs, strict=True) if not p]
            else:
                found[digest] = (data, ())
        return found

    def placed(
        self, nodes: dict[str, tuple[bytes, tuple[str, ...]]], scratch: Scratch, pack: str
    ) -> None:
        """Record that ``nodes`` (of ``scratch``) are now stored in ``pack``: they go to
        the cache, a branch's children in "" being in that pack too."""
        with self._lock:
            for digest in nodes:
                node = scratch[digest][0]
                if isinstance(node, Branch) and "" in node.packs:
                    node = node._replace(packs=tuple([p or pack for p in node.packs]))
                self._nodes[digest] = (node, pack)
                self._nodes.move_to_end(digest)
            while len(self._nodes) > self._cache_size:
                self._nodes.popitem(last=False)

    def _children(self, ref: Ref, node: Branch) -> Iterator[Ref]:
        for digest, pack in zip(node.children, node.packs, strict=True):
            yield Ref(digest, pack, None) if pack else Ref(digest, ref.pack, ref.pending)

    # -- reading ------------------------------------------------------------------------

    def count(self, root: Ref | None) -> int:
        """How many records the trie under ``root`` holds. O(1)."""
        if root is None:
            return 0
        node = self.node(root)
        return node.size if isinstance(node, Branch) else len(node.records)

    def get(self, root: Ref | None, kb: bytes) -> bytes | None:
        """The value bytes of the record whose key's JSON is ``kb``, or None. O(log n)."""
        ref = root
        hashed = _hash(kb)
        while ref is not None:
            node = self.node(ref)
            if isinstance(node, Leaf):
                for record in node.records:
                    if record.kb == kb:
                        return record.value
                return None
            ref = _child(ref, node, hashed & _MASK)
            hashed >>= BITS
        return None

    def records(self, root: Ref | None) -> Iterator[Record]:
        """Every record under ``root`` (in trie order). O(n)."""
        if root is None:
            return
        node = self.node(root)
        if isinstance(node, Leaf):
            yield from node.records
            return
        for child in self._children(root, node):
            yield from self.records(child)

    def diff(
        self, old: Ref | None, new: Ref | None
    ) -> Iterator[tuple[Record | None, Record | None]]:
        """``(old record, new record)`` for every key whose record differs, None where a
        side has none. Subtrees with equal digests are skipped: the cost follows the
        difference, not the size."""
        if (old.digest if old else None) == (new.digest if new else None):
            return
        old_node = self.node(old) if old is not None else None
        new_node = self.node(new) if new is not None else None
        if isinstance(old_node, Branch) and isinstance(new_node, Branch):
            assert old is not None and new is not None
            for bit in range(WIDTH):
                yield from self.diff(_child(old, old_node, bit), _child(new, new_node, bit))
            return
        before = {r.kb: r for r in self.records(old)}
        after = {r.kb: r for r in self.records(new)}
        for kb in sorted(before.keys() | after.keys()):
            a, b = before.get(kb), after.get(kb)
            if a is None or b is None or a.value != b.value:
                yield a, b

    # -- building -------------------------------------------------------------------------

    def update(
        self, root: Ref | None, changes: dict[bytes, Record | None], scratch: Scratch
    ) -> Ref | None:
        """The root of the trie ``root`` with ``changes`` applied (key JSON -> its new
        record, or None to remove it). The new nodes are added to ``scratch`` (in no
        pack yet: :meth:`unplaced` lists them for one); ``root`` itself comes back when
        nothing changed."""
        hashed = [(_hash(kb), kb, record) for kb, record in changes.items()]
        digest = self._update(root, 0, hashed, scratch)[0]
        if digest is None:
            return None
        if root is not None and digest == root.digest:
            return root
        return Ref(digest, "", scratch)

    def _update(
        self,
        ref: Ref | None,
        level: int,
        changes: list[tuple[int, bytes, Record | None]],
        scratch: Scratch,
    ) -> tuple[str | None, int, int]:
        """``(new digest, records after, records before)`` of the node ``ref``."""
        node = self.node(ref) if ref is not None else None
        if isinstance(node, Branch):
            assert ref is not None
            return self._update_branch(ref, node, level, changes, scratch)
        records = list(node.records) if node is not None else []
        keys = [record.kb for record in records]
        before = len(records)
        changed = False
        for _, kb, record in changes:
            index = bisect.bisect_left(keys, kb)
            found = index < len(keys) and keys[index] == kb
            if record is None:
                if found:
                    del records[index], keys[index]
                    changed = True
            elif not found:
                records.insert(index, record)
                keys.insert(index, kb)
                changed = True
            elif records[index] != record:
                records[index] = record
                changed = True
        if not changed:
            return (ref.digest if ref else None), before, before
        return self._build(records, level, scratch), len(records), before

    def _update_branch(
        self,
        ref: Ref,
        node: Branch,
        level: int,
        changes: list[tuple[int, bytes, Record | None]],
        scratch: Scratch,
    ) -> tuple[str | None, int, int]:
        shift = BITS * level
        by_slot: dict[int, list[tuple[int, bytes, Record | None]]] = {}
        for change in changes:
            by_slot.setdefault((change[0] >> shift) & _MASK, []).append(change)
        bitmap, size = node.bitmap, node.size
        # Refs are made for the slots that change only: a branch has up to 32 children
        digests, packs = list(node.children), list(node.packs)
        for bit, slot_changes in by_slot.items():
            flag = 1 << bit
            index = (bitmap & (flag - 1)).bit_count()
            child = None
            if bitmap & flag:
                pack = packs[index]
                child = (
                    Ref(digests[index], pack, None) if pack else Ref(digests[index], "", scratch)
                )
            new_child, after, before = self._update(child, level + 1, slot_changes, scratch)
            size += after - before
            if new_child == (child.digest if child else None):
                continue
            if new_child is None:
                bitmap &= ~flag
                del digests[index], packs[index]
            elif child is None:
                bitmap |= flag
                digests.insert(index, new_child)
                packs.insert(index, "")  # in no pack yet: the scratch
            else:
                digests[index], packs[index] = new_child, ""
        if size <= BUCKET:
            # few enough records again: the canonical shape is one leaf
            # a child in no pack ("") is in the scratch: made now, or since the last pack
            children = [
                Ref(d, p, None) if p else Ref(d, "", scratch)
                for d, p in zip(digests, packs, strict=True)
            ]
            gathered = sorted(r for child in children for r in self.records(child))
            leaf = self._write(Leaf(tuple(gathered)), scratch) if gathered else None
            return leaf, size, node.size
        if tuple(digests) == node.children:
            return ref.digest, size, node.size
        branch = Branch(bitmap, tuple(digests), size, tuple(packs))
        return self._write(branch, scratch), size, node.size

    def _build(self, records: list[Record], level: int, scratch: Scratch) -> str | None:
        """The canonical node holding exactly ``records`` (sorted) at ``level``."""
        if not records:
            return None
        if len(records) <= BUCKET or level >= _MAX_LEVEL:
            return self._write(Leaf(tuple(records)), scratch)
        shift = BITS * level
        by_slot: dict[int, list[Record]] = {}
        for record in records:
            by_slot.setdefault((_hash(record.kb) >> shift) & _MASK, []).append(record)
        children = []
        bitmap = 0
        for bit in sorted(by_slot):
            child = self._build(by_slot[bit], level + 1, scratch)
            assert child is not None
            children.append(child)
            bitmap |= 1 << bit
        packs = ("",) * len(children)
        return self._write(Branch(bitmap, tuple(children), len(records), packs), scratch)


def _child(ref: Ref, node: Branch | Leaf | None, bit: int) -> Ref | None:
    """The child in ``bit``'s slot of the branch ``ref`` points at, or None."""
    if not isinstance(node, Branch) or not node.bitmap >> bit & 1:
        return None
    index = (node.bitmap & ((1 << bit) - 1)).bit_count()
    pack = node.packs[index]
    if pack:
        return Ref(node.children[index], pack, None)
    return Ref(node.children[index], ref.pack, ref.pending)
