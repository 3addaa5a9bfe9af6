"""A record entry's records: a hash trie of content-addressed nodes.

Each node is canonical JSON stored in the blob table under its SHA-256, and names its
children by digest, so a version of a record entry is one root digest, versions share
every node they have in common, and a put writes only the nodes on one path: O(log n)
nodes, each at most :data:`WIDTH` digests or :data:`BUCKET` records.

The shape depends on the set of records only, never on the order of the puts: a node
holding at most BUCKET records is a leaf (its records sorted by key), a larger one is a
branch splitting them by the next :data:`BITS` bits of the SHA-256 of their key. So
the same records give the same root digest, whatever history led to them.

    leaf    {"r": [[key, value], ...]}                sorted by the key's JSON
    branch  {"b": bitmap, "c": [digest, ...], "n": records below}
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import NamedTuple

import orjson

from ..errors import DecodeError

__all__ = [
    "BITS",
    "BUCKET",
    "WIDTH",
    "Branch",
    "Leaf",
    "Record",
    "Trie",
    "decode_node",
    "key_bytes",
]

BITS = 5
WIDTH = 1 << BITS
BUCKET = 16
_MASK = WIDTH - 1
# SHA-256 has 256 bits; below this depth records that still collide share a leaf
_MAX_LEVEL = 256 // BITS
_SORTED = orjson.OPT_SORT_KEYS


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


Node = Leaf | Branch


def key_bytes(key: str | int) -> bytes:
    """The JSON of a record key: what it is sorted and hashed by."""
    return orjson.dumps(key)


def _hash(kb: bytes) -> int:
    return int.from_bytes(hashlib.sha256(kb).digest(), "little")


def _encode(node: Node) -> bytes:
    if isinstance(node, Leaf):
        return orjson.dumps({"r": [[r.key, orjson.Fragment(r.value)] for r in node.records]})
    assert isinstance(node, Branch)
    return orjson.dumps({"b": node.bitmap, "c": list(node.children), "n": node.size})


def decode_node(data: bytes) -> Node:
    """The node whose stored bytes are ``data``.

    :raises DecodeError: if they are not a node
    """
    try:
        tree = orjson.loads(data)
        if "r" in tree:
            return Leaf(
                tuple(
                    Record(key_bytes(key), key, orjson.dumps(value, option=_SORTED))
                    for key, value in tree["r"]
                )
            )
        return Branch(int(tree["b"]), tuple(tree["c"]), int(tree["n"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"a stored record node is damaged: {exc!r}") from None


class Trie:
    """Reads and builds tries over a blob table.

    :param get_blob: digest -> bytes (the engine's ``get_blob``)
    :param cache_size: how many decoded nodes to keep (nodes never change, so a cached
        node is always right; the ones on recent paths are the ones used again)
    """

    def __init__(self, get_blob: Callable[[str], bytes], cache_size: int = 8192) -> None:
        self._get_blob = get_blob
        self._cache: OrderedDict[str, Node] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- nodes ------------------------------------------------------------------------

    def node(self, digest: str) -> Node:
        """The node stored under ``digest``."""
        with self._lock:
            node = self._cache.get(digest)
            if node is not None:
                self._cache.move_to_end(digest)
                return node
        node = decode_node(self._get_blob(digest))
        self._remember(digest, node)
        return node

    def _remember(self, digest: str, node: Node) -> None:
        with self._lock:
            self._cache[digest] = node
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _write(self, node: Node, out: dict[str, bytes]) -> str:
        data = _encode(node)
        digest = hashlib.sha256(data).hexdigest()
        out[digest] = data
        self._remember(digest, node)
        return digest

    # -- reading ------------------------------------------------------------------------

    def count(self, root: str | None) -> int:
        """How many records the trie under ``root`` holds. O(1)."""
        if root is None:
            return 0
        node = self.node(root)
        return node.size if isinstance(node, Branch) else len(node.records)

    def get(self, root: str | None, kb: bytes) -> bytes | None:
        """The value bytes of the record whose key's JSON is ``kb``, or None. O(log n)."""
        digest = root
        hashed = _hash(kb)
        while digest is not None:
            node = self.node(digest)
            if isinstance(node, Leaf):
                for record in node.records:
                    if record.kb == kb:
                        return record.value
                return None
            assert isinstance(node, Branch)
            bit = 1 << (hashed & _MASK)
            if not node.bitmap & bit:
                return None
            digest = node.children[(node.bitmap & (bit - 1)).bit_count()]
            hashed >>= BITS
        return None

    def records(self, root: str | None) -> Iterator[Record]:
        """Every record under ``root`` (in trie order). O(n)."""
        if root is None:
            return
        node = self.node(root)
        if isinstance(node, Leaf):
            yield from node.records
            return
        assert isinstance(node, Branch)
        for child in node.children:
            yield from self.records(child)

    def digests(self, root: str | None) -> Iterator[str]:
        """The digest of every node under ``root``, ``root`` first. O(nodes)."""
        if root is None:
            return
        yield root
        node = self.node(root)
        if isinstance(node, Branch):
            for child in node.children:
                yield from self.digests(child)

    def diff(
        self, old: str | None, new: str | None
    ) -> Iterator[tuple[Record | None, Record | None]]:
        """``(old record, new record)`` for every key whose record differs, None where a
        side has none. Subtrees with equal digests are skipped: the cost follows the
        difference, not the size."""
        if old == new:
            return
        old_node = self.node(old) if old is not None else None
        new_node = self.node(new) if new is not None else None
        if isinstance(old_node, Branch) and isinstance(new_node, Branch):
            for bit in range(WIDTH):
                yield from self.diff(_child(old_node, bit), _child(new_node, bit))
            return
        before = {r.kb: r for r in self.records(old)}
        after = {r.kb: r for r in self.records(new)}
        for kb in sorted(before.keys() | after.keys()):
            a, b = before.get(kb), after.get(kb)
            if a is None or b is None or a.value != b.value:
                yield a, b

    # -- building -------------------------------------------------------------------------

    def update(
        self, root: str | None, changes: dict[bytes, Record | None], out: dict[str, bytes]
    ) -> str | None:
        """The root of the trie ``root`` with ``changes`` applied (key JSON -> its new
        record, or None to remove it); the new nodes are added to ``out`` (digest ->
        bytes). The same root comes back when nothing changed."""
        hashed = [(_hash(kb), kb, record) for kb, record in changes.items()]
        return self._update(root, 0, hashed, out)[0]

    def _update(
        self,
        digest: str | None,
        level: int,
        changes: list[tuple[int, bytes, Record | None]],
        out: dict[str, bytes],
    ) -> tuple[str | None, int, int]:
        """``(new digest, records after, records before)`` of the node ``digest``."""
        node = self.node(digest) if digest is not None else None
        if isinstance(node, Branch):
            return self._update_branch(digest, node, level, changes, out)
        records = {r.kb: r for r in node.records} if node is not None else {}
        before = len(records)
        changed = False
        for _, kb, record in changes:
            if record is None:
                changed |= records.pop(kb, None) is not None
            elif records.get(kb) != record:
                records[kb] = record
                changed = True
        if not changed:
            return digest, before, before
        return self._build(sorted(records.values()), level, out), len(records), before

    def _update_branch(
        self,
        digest: str | None,
        node: Branch,
        level: int,
        changes: list[tuple[int, bytes, Record | None]],
        out: dict[str, bytes],
    ) -> tuple[str | None, int, int]:
        shift = BITS * level
        by_slot: dict[int, list[tuple[int, bytes, Record | None]]] = {}
        for change in changes:
            by_slot.setdefault((change[0] >> shift) & _MASK, []).append(change)
        bitmap, children, size = node.bitmap, node.children, node.size
        for bit, slot_changes in by_slot.items():
            flag = 1 << bit
            index = (bitmap & (flag - 1)).bit_count()
            child = children[index] if bitmap & flag else None
            new_child, after, before = self._update(child, level + 1, slot_changes, out)
            size += after - before
            if new_child == child:
                continue
            if new_child is None:
                bitmap &= ~flag
                children = children[:index] + children[index + 1 :]
            elif child is None:
                bitmap |= flag
                children = (*children[:index], new_child, *children[index:])
            else:
                children = (*children[:index], new_child, *children[index + 1 :])
        if size <= BUCKET:
            # few enough records again: the canonical shape is one leaf
            gathered = sorted(r for child in children for r in self.records(child))
            return (self._write(Leaf(tuple(gathered)), out) if gathered else None), size, node.size
        if children == node.children:
            return digest, size, node.size
        return self._write(Branch(bitmap, children, size), out), size, node.size

    def _build(self, records: list[Record], level: int, out: dict[str, bytes]) -> str | None:
        """The canonical node holding exactly ``records`` (sorted) at ``level``."""
        if not records:
            return None
        if len(records) <= BUCKET or level >= _MAX_LEVEL:
            return self._write(Leaf(tuple(records)), out)
        shift = BITS * level
        by_slot: dict[int, list[Record]] = {}
        for record in records:
            by_slot.setdefault((_hash(record.kb) >> shift) & _MASK, []).append(record)
        children = []
        bitmap = 0
        for bit in sorted(by_slot):
            child = self._build(by_slot[bit], level + 1, out)
            assert child is not None
            children.append(child)
            bitmap |= 1 << bit
        return self._write(Branch(bitmap, tuple(children), len(records)), out)


def _child(node: Branch | Leaf | None, bit: int) -> str | None:
    """The digest in ``bit``'s slot of a branch, or None."""
    if not isinstance(node, Branch) or not node.bitmap >> bit & 1:
        return None
    return node.children[(node.bitmap & ((1 << bit) - 1)).bit_count()]
