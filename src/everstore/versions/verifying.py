"""Checking an entry's chain: every stored byte against the digest that names it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..engine import History
from ..errors import DecodeError, MissingBlobError
from .canonical import blob_refs
from .repository import RECORDS, SNAPSHOT, Head, Repository, State, decode_change
from .trie import Branch, Pack, Ref, decode_node, read_pack

__all__ = ["Problem", "VerifyReport", "verify_entry"]


@dataclass(frozen=True)
class Problem:
    """One mismatch: the version (position in the chain, 0 the first, and digest) in
    which it was found, and what is wrong."""

    position: int
    digest: str
    message: str


@dataclass
class VerifyReport:
    """What :meth:`Tenant.verify` checked and found; true when nothing is wrong."""

    entry: str
    versions: int = 0
    nodes: int = 0
    blobs: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


class _Checker:
    def __init__(self, repo: Repository, report: VerifyReport) -> None:
        self.repo = repo
        self.report = report
        self.seen: set[str] = set()
        self.packs: dict[str, Pack | None] = {}
        self.position = 0
        self.version = ""

    def problem(self, message: str) -> None:
        self.report.problems.append(Problem(self.position, self.version, message))

    def fetch(self, digest: str, what: str) -> bytes | None:
        """The bytes under ``digest``, if they are there and hash to it."""
        try:
            data = self.repo.store.get_blob(digest)
        except (MissingBlobError, ValueError):
            self.problem(f"{what} {digest} is missing")
            return None
        return self.checked(data, digest, what)

    def checked(self, data: bytes, digest: str, what: str) -> bytes | None:
        if hashlib.sha256(data).hexdigest() != digest:
            self.problem(f"{what} {digest} does not match its digest: its bytes were changed")
            return None
        return data

    def pack(self, digest: str) -> Pack | None:
        """The pack under ``digest``, checked once."""
        if digest not in self.packs:
            data = self.fetch(digest, "pack")
            try:
                self.packs[digest] = read_pack(data) if data is not None else None
            except DecodeError as exc:
                self.problem(str(exc))
                self.packs[digest] = None
        return self.packs[digest]

    def item(self, digest: str, pack: str, what: str) -> tuple[bytes, tuple[str, ...]] | None:
        """One item of a pack, checked against its digest."""
        found = self.pack(pack)
        if found is None:
            return None
        item = found.items.get(digest)
        if item is None:
            self.problem(f"{what} {digest} is not in its pack {pack}")
            return None
        return item if self.checked(item[0], digest, what) is not None else None

    def value_blobs(self, data: bytes) -> None:
        try:
            refs = blob_refs(data)
        except ValueError:
            self.problem("a stored value is not valid JSON")
            return
        for digest in refs:
            if digest not in self.seen:
                self.seen.add(digest)
                self.report.blobs += 1
                self.fetch(digest, "blob")

    def nodes(self, root: Ref | None) -> None:
        pending = [root] if root is not None else []
        while pending:
            ref = pending.pop()
            if ref.digest in self.seen:
                continue
            self.seen.add(ref.digest)
            self.report.nodes += 1
            item = self.item(ref.digest, ref.pack, "records node")
            if item is None:
                continue
            data, locations = item
            try:
                node = decode_node(data, tuple(location or ref.pack for location in locations))
            except DecodeError as exc:
                self.problem(str(exc))
                continue
            if isinstance(node, Branch):
                pending.extend(Ref(d, p) for d, p in zip(node.children, node.packs, strict=True))
            else:
                for record in node.records:
                    self.value_blobs(record.value)

    def version_blob(self, digest: str, pack: str) -> bytes | None:
        if not pack:
            return self.fetch(digest, "version")
        item = self.item(digest, pack, "version")
        return item[0] if item is not None else None


def verify_entry(repo: Repository, entry: str, chain: History | None) -> VerifyReport:
    """Check every version of a chain (None: an entry with no version).

    A record version is rebuilt from the log: its change is replayed on the records
    before it and the digest recomputed from the result and its metadata; at a
    checkpoint its pack is checked too, node by node, and the replay goes on from it.
    """
    report = VerifyReport(entry)
    check = _Checker(repo, report)
    previous: str | None = None
    state: State | None = State(None, 0)  # None: the replay broke until a checkpoint
    for position in range(len(chain) if chain is not None else 0):
        assert chain is not None
        head = repo.head_at(chain, position)
        check.position, check.version = position, head.digest
        report.versions += 1
        if head.kind == RECORDS:
            state = _check_records(repo, check, head, previous, state)
        else:
            _check_whole(repo, check, head, previous)
            state = State(None, 0)
        previous = head.digest
    return report


def _check_whole(repo: Repository, check: _Checker, head: Head, previous: str | None) -> None:
    """A version stored whole, as a blob under its digest (a snapshot, a deletion)."""
    blob = check.fetch(head.digest, "version")
    if blob is None:
        return
    try:
        version = repo.parse_version(head.digest, blob)
    except DecodeError as exc:
        check.problem(str(exc))
        return
    if version.parent != previous:
        check.problem(f"its parent is {version.parent}, but the version before it is {previous}")
    if version.user_id != head.user_id or version.kind != head.kind:
        check.problem(
            f"it says {version.kind} by {version.user_id!r}, "
            f"the log says {head.kind} by {head.user_id!r}"
        )
    if head.kind == SNAPSHOT:
        check.value_blobs(repo.data_of(head.digest, blob))


def _check_records(
    repo: Repository, check: _Checker, head: Head, previous: str | None, state: State | None
) -> State | None:
    """A record version: its change replayed, its digest recomputed, its pack checked."""
    try:
        changes = decode_change(head.change)
    except DecodeError as exc:
        check.problem(str(exc))
        changes = None
    for record in (changes or {}).values():
        if record is not None:
            check.value_blobs(record.value)
    root: str | None = None
    if state is not None and changes is not None:
        try:
            state = repo.apply(state, changes)
        except DecodeError as exc:
            check.problem(f"its records could not be rebuilt: {exc}")
            state = None
        else:
            root = state.root.digest if state.root is not None else None
            metadata = {
                "__date__": head.date,
                "__parent__": [previous],
                "__records__": root,
                "__user_id__": head.user_id,
            }
            if hashlib.sha256(repo.version_bytes(metadata)).hexdigest() != head.digest:
                check.problem(
                    "its records and metadata, rebuilt from the log, do not hash to its "
                    "digest: its change, a stored records node or its metadata was changed"
                )
    if not head.pack:
        return state
    stored = check.version_blob(head.digest, head.pack)
    if stored is None:
        return None
    try:
        version = repo.parse_version(head.digest, stored)
    except DecodeError as exc:
        check.problem(str(exc))
        return None
    check.nodes(Ref(version.records, head.pack) if version.records is not None else None)
    # the replay goes on from the checkpoint as stored, as reads do
    return State(Ref(version.records, head.pack) if version.records else None, 0)
