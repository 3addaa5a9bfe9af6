"""A model of MyDbEngine 0.2.1, the baseline of the ``versions`` benchmark family.

MyDbEngine (a git-like, file-based versioned store; its README is the seed of
``everstore.versions``) is not installable: no distribution of it exists on the package
indexes and its source was not found. This module is NOT MyDbEngine and contains none
of its code: it is a small, pure-Python engine written here from its README alone, doing
what the README describes in the simplest way that matches it, so that the benchmark has
a baseline with the documented design. Where the README leaves a choice open, the model
takes the plainest one and says so below.

What it models (README of 0.2.1):

* ``FileDbEngine(root)`` with ``init``, ``is_initialized``, ``save``, ``load``, ``put``,
  ``put_many``, ``get``, ``exists``, ``history``, ``get_digest``: the README's names and
  signatures (its ``DbEngine``).
* The layout on disk::

      {root}/{tenant}/head                              JSON {entry: latest digest}
      {root}/{tenant}/objects/{digest[:24]}/{digest}    JSON snapshot
      {root}/refs/{digest[:24]}/{digest}                bytes, shared by every tenant

* A snapshot is the object (a dict: its keys; anything else: under ``"__value__"``) plus
  the metadata ``__parent__`` (``[previous digest]``, ``[None]`` for the first version),
  ``__user_id__`` and ``__date__`` (``"%Y%m%d %H:%M:%S %z"``). Its digest is the SHA-256
  of ``json.dumps(snapshot, sort_keys=True)`` encoded as UTF-8, and those very bytes are
  the object file. The stdlib ``json`` module throughout, as the README says ("zero
  dependencies").
* ``head`` is one JSON file per tenant holding every entry's head: it is read from disk
  by every operation (the README documents no cache) and rewritten by every write.
* A ``bytes`` value anywhere in an object goes to ``refs/`` under the SHA-256 of its
  bytes, written only if that file is not there yet (stored once, across tenants); the
  snapshot holds ``{"__special__": "Bytes", "__digest__": digest}``. This stands for the
  README's ``BaseRefHandler`` route; the model stores the bytes as they are (the README's
  pickle route would add a few bytes of framing). Inline handlers, pickle and
  ``use_refs()`` are not modelled; an unsupported value raises ``TypeError``.
* The record pattern: a record entry's snapshot is the whole ``key -> value`` dict plus
  the metadata. ``put`` reads the current snapshot, copies it, changes one key and
  writes the whole collection as a new snapshot (that is what "each put creates a new
  snapshot" of a collection means without a second data structure), so a ``put`` costs
  O(size of the collection) and N puts into one entry cost O(N²) time and disk.
  ``put`` and ``put_many`` return ``True`` (the README does not say what their ``bool``
  means); they always write a new snapshot.
* ``history`` follows ``__parent__`` links, reading one object file per step, newest
  first, at most ``max_items``.
* One ``threading.RLock`` per engine around every public method (the README's "built-in
  RLock"); nothing protects two engines or two processes on one root, as in the README.
* Files are written with a plain ``open(..., "w")``, never fsynced: the README documents
  no fsync, and everstore's default SQLite settings (WAL, ``synchronous=NORMAL``) do not
  flush to disk on every commit either, so the comparison is like for like.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FileDbEngine"]

PARENT = "__parent__"
USER = "__user_id__"
DATE = "__date__"
METADATA = (PARENT, USER, DATE)
VALUE = "__value__"  # a snapshot of an object that is not a dict holds it here
SPECIAL = "__special__"
DIGEST = "__digest__"
BYTES_TAG = "Bytes"
PREFIX = 24  # characters of a digest naming its directory
DATE_FORMAT = "%Y%m%d %H:%M:%S %z"


class FileDbEngine:
    """A file-based versioned store behaving as MyDbEngine's README describes."""

    def __init__(self, root: str | os.PathLike[str] = ".mytools_db") -> None:
        """:param root: the directory of the store (made on first ``init``)."""
        self.root = Path(root)
        self._lock = threading.RLock()

    # -- tenants ---------------------------------------------------------------------

    def init(self, tenant_id: str) -> None:
        """Create the tenant's directories and an empty ``head``, if not there yet."""
        with self._lock:
            (self._tenant(tenant_id) / "objects").mkdir(parents=True, exist_ok=True)
            (self.root / "refs").mkdir(parents=True, exist_ok=True)
            head = self._tenant(tenant_id) / "head"
            if not head.exists():
                head.write_text("{}", encoding="utf-8")

    def is_initialized(self, tenant_id: str) -> bool:
        """:return: whether ``init(tenant_id)`` was done on this root."""
        with self._lock:
            return (self._tenant(tenant_id) / "head").is_file()

    # -- the snapshot pattern -----------------------------------------------------------

    def save(self, tenant_id: str, user_id: str, entry: str, obj: Any) -> str:
        """Write ``obj`` as the entry's new version.

        :return: the new snapshot's digest.
        :raises KeyError: the tenant was not initialised.
        :raises TypeError: ``obj`` holds a value the model cannot serialise.
        """
        with self._lock:
            head = self._read_head(tenant_id)
            if isinstance(obj, Mapping):
                body = {self._key(key): self._encode(value) for key, value in obj.items()}
            else:
                body = {VALUE: self._encode(obj)}
            return self._commit(tenant_id, user_id, entry, head, body)

    def load(self, tenant_id: str, entry: str, digest: str | None = None) -> Any:
        """:return: the entry's latest version, or the version ``digest``.
        :raises KeyError: no such tenant, entry or version."""
        with self._lock:
            body = self._body(self._snapshot(tenant_id, entry, digest))
            if set(body) == {VALUE}:
                return self._decode(body[VALUE])
            return {key: self._decode(value) for key, value in body.items()}

    # -- the record pattern -------------------------------------------------------------

    def put(self, tenant_id: str, user_id: str, entry: str, key: str, value: Any) -> bool:
        """Set record ``key``: a new snapshot of the whole collection.

        :return: ``True`` (a snapshot was written).
        """
        return self.put_many(tenant_id, user_id, entry, {key: value})

    def put_many(self, tenant_id: str, user_id: str, entry: str, items: Mapping[str, Any]) -> bool:
        """Set several records in one new snapshot of the whole collection.

        :return: ``True`` (a snapshot was written).
        """
        with self._lock:
            head = self._read_head(tenant_id)
            body: dict[str, Any] = {}
            if entry in head:
                body = self._body(self._read_object(tenant_id, head[entry]))
            for key, value in items.items():
                body[self._key(key)] = self._encode(value)
            self._commit(tenant_id, user_id, entry, head, body)
            return True

    def get(
        self, tenant_id: str, entry: str, key: str | None = None, digest: str | None = None
    ) -> Any:
        """:return: record ``key``, or (``key=None``) the list of every record's value,
            of the latest version or of the version ``digest``.
        :raises KeyError: no such tenant, entry, version or record."""
        with self._lock:
            body = self._body(self._snapshot(tenant_id, entry, digest))
            if key is not None:
                return self._decode(body[key])
            return [self._decode(value) for value in body.values()]

    # -- heads and history ---------------------------------------------------------------

    def exists(self, tenant_id: str, entry: str) -> bool:
        """:return: whether the entry has a version (``False`` for an unknown tenant)."""
        with self._lock:
            if not self.is_initialized(tenant_id):
                return False
            return entry in self._read_head(tenant_id)

    def get_digest(self, tenant_id: str, entry: str) -> str:
        """:return: the digest of the entry's latest version.
        :raises KeyError: no such tenant or entry."""
        with self._lock:
            digest: str = self._read_head(tenant_id)[entry]
            return digest

    def history(
        self, tenant_id: str, entry: str, digest: str | None = None, max_items: int = 1000
    ) -> list[str]:
        """:return: digests from the latest version (or from ``digest``) back along the
            parent links, newest first, at most ``max_items``.
        :raises KeyError: no such tenant, entry or version."""
        with self._lock:
            current: str | None = (
                digest if digest is not None else self.get_digest(tenant_id, entry)
            )
            chain: list[str] = []
            while current is not None and len(chain) < max_items:
                chain.append(current)
                current = self._read_object(tenant_id, current)[PARENT][0]
            return chain

    # -- files ---------------------------------------------------------------------------

    def _tenant(self, tenant_id: str) -> Path:
        return self.root / tenant_id

    def _read_head(self, tenant_id: str) -> dict[str, str]:
        path = self._tenant(tenant_id) / "head"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyError(f"tenant {tenant_id!r} is not initialized") from None
        head: dict[str, str] = json.loads(text)
        return head

    def _commit(
        self, tenant_id: str, user_id: str, entry: str, head: dict[str, str], body: dict[str, Any]
    ) -> str:
        snapshot = dict(body)
        snapshot[PARENT] = [head.get(entry)]
        snapshot[USER] = user_id
        snapshot[DATE] = datetime.datetime.now().astimezone().strftime(DATE_FORMAT)
        data = json.dumps(snapshot, sort_keys=True).encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        _write_once(self._tenant(tenant_id) / "objects" / digest[:PREFIX] / digest, data)
        head[entry] = digest
        (self._tenant(tenant_id) / "head").write_text(json.dumps(head), encoding="utf-8")
        return digest

    def _snapshot(self, tenant_id: str, entry: str, digest: str | None) -> dict[str, Any]:
        if digest is None:
            digest = self.get_digest(tenant_id, entry)
        return self._read_object(tenant_id, digest)

    def _read_object(self, tenant_id: str, digest: str) -> dict[str, Any]:
        path = self._tenant(tenant_id) / "objects" / digest[:PREFIX] / digest
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"no version {digest!r} in tenant {tenant_id!r}") from None
        snapshot: dict[str, Any] = json.loads(data)
        return snapshot

    @staticmethod
    def _body(snapshot: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in snapshot.items() if key not in METADATA}

    @staticmethod
    def _key(key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
        if key in METADATA or key == VALUE:
            raise ValueError(f"{key!r} is a reserved name")
        return key

    # -- values --------------------------------------------------------------------------

    def _encode(self, value: Any) -> Any:
        if value is None or isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, bytes):
            digest = hashlib.sha256(value).hexdigest()
            _write_once(self.root / "refs" / digest[:PREFIX] / digest, value)
            return {SPECIAL: BYTES_TAG, DIGEST: digest}
        if isinstance(value, list | tuple):
            return [self._encode(item) for item in value]
        if isinstance(value, Mapping):
            encoded: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                encoded[key] = self._encode(item)
            return encoded
        raise TypeError(f"the model cannot serialise a {type(value).__name__}")

    def _decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._decode(item) for item in value]
        if isinstance(value, dict):
            if value.get(SPECIAL) == BYTES_TAG:
                digest = value[DIGEST]
                return (self.root / "refs" / digest[:PREFIX] / digest).read_bytes()
            return {key: self._decode(item) for key, item in value.items()}
        return value


def _write_once(path: Path, data: bytes) -> None:
    """Content-addressed: a file already there holds these very bytes."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
