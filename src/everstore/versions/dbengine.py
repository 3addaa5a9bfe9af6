"""DbEngine: MyDbEngine's API, each method taking the tenant first, over a Tenant."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from ..backends import Sqlite3
from ..engine import Engine
from ..store import Store
from .diffing import Diff
from .handlers import Handlers, handlers
from .repository import Repository
from .tenant import ANY_PARENT, Key, Records, Tenant, VersionInfo, When
from .verifying import VerifyReport

__all__ = ["DEFAULT_ROOT", "DbEngine"]

DEFAULT_ROOT = ".mytools_db"
#: the SQLite file a ``root`` directory holds
STORE_FILE = "everstore.db"


class DbEngine:
    """Versioned snapshots and records of many tenants in one everstore store.

    ``DbEngine(root=".mytools_db")`` keeps them in an SQLite store in the directory
    ``root`` (created if missing); ``DbEngine(store=...)`` in any everstore Store
    (PostgreSQL for many hosts), under the namespace ``prefix``. Every method but
    :meth:`tenant` takes the tenant's id first and does what the :class:`Tenant`
    method of the same name does. Thread-safe, and safe for many processes (and, on
    PostgreSQL, hosts) on one store.

    :param root: the directory of the store (only without ``store``)
    :param store: an open everstore Store to keep the versions in
    :param prefix: the first namespace part of every tenant's namespaces
    :param handlers: the handler registry (default: the process-wide ``handlers``)
    :param unpickle: False refuses to load ``use_refs()`` fields: a pickle can run
        code when it is loaded, so an engine reading versions it does not trust
        should say False
    :raises TypeError: if both ``root`` and ``store`` are given
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        store: Engine | None = None,
        prefix: str = "versions",
        handlers: Handlers = handlers,
        unpickle: bool = True,
    ) -> None:
        if store is not None and root is not None:
            raise TypeError("DbEngine() takes root= or store=, not both")
        self.root: Path | None = None
        self._owns_store = store is None
        if store is None:
            self.root = Path(root if root is not None else DEFAULT_ROOT)
            self.root.mkdir(parents=True, exist_ok=True)
            store = Store(Sqlite3(self.root / STORE_FILE))
        self.store = store
        self._repository = Repository(store, prefix, handlers, unpickle)
        self._tenants: dict[str, Tenant] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.root if self.root is not None else self.store
        return f"<DbEngine {where}>"

    def tenant(self, tenant_id: str) -> Tenant:
        """The handle of one tenant, which reaches that tenant's entries only.

        :raises InvalidNameError: if ``tenant_id`` is not a non-empty printable str
            without ``/``
        """
        with self._lock:
            found = self._tenants.get(tenant_id)
            if found is None:
                found = self._tenants[tenant_id] = Tenant(self._repository, tenant_id)
            return found

    def close(self) -> None:
        """Close the store if this engine opened it (``root=``)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> DbEngine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- MyDbEngine's methods, tenant first -------------------------------------------

    def init(self, tenant_id: str) -> None:
        """:meth:`Tenant.init`"""
        self.tenant(tenant_id).init()

    def is_initialized(self, tenant_id: str) -> bool:
        """:meth:`Tenant.is_initialized`"""
        return self.tenant(tenant_id).is_initialized()

    def entries(self, tenant_id: str, *, include_deleted: bool = False) -> list[str]:
        """:meth:`Tenant.entries`"""
        return self.tenant(tenant_id).entries(include_deleted=include_deleted)

    def save(
        self, tenant_id: str, user_id: str, entry: str, obj: Any, *, parent: Any = ANY_PARENT
    ) -> str:
        """:meth:`Tenant.save`"""
        return self.tenant(tenant_id).save(user_id, entry, obj, parent=parent)

    def load(
        self, tenant_id: str, entry: str, digest: str | None = None, *, as_of: When | None = None
    ) -> Any:
        """:meth:`Tenant.load`"""
        return self.tenant(tenant_id).load(entry, digest, as_of=as_of)

    def delete_entry(
        self, tenant_id: str, user_id: str, entry: str, *, parent: Any = ANY_PARENT
    ) -> str:
        """:meth:`Tenant.delete_entry`"""
        return self.tenant(tenant_id).delete_entry(user_id, entry, parent=parent)

    def put(self, tenant_id: str, user_id: str, entry: str, key: Key, value: Any) -> bool:
        """:meth:`Tenant.put`"""
        return self.tenant(tenant_id).put(user_id, entry, key, value)

    def put_many(self, tenant_id: str, user_id: str, entry: str, items: Records) -> bool:
        """:meth:`Tenant.put_many`"""
        return self.tenant(tenant_id).put_many(user_id, entry, items)

    def remove(self, tenant_id: str, user_id: str, entry: str, key: Key) -> bool:
        """:meth:`Tenant.remove`"""
        return self.tenant(tenant_id).remove(user_id, entry, key)

    def remove_many(self, tenant_id: str, user_id: str, entry: str, keys: Iterable[Key]) -> bool:
        """:meth:`Tenant.remove_many`"""
        return self.tenant(tenant_id).remove_many(user_id, entry, keys)

    def get(
        self,
        tenant_id: str,
        entry: str,
        key: Key | None = None,
        digest: str | None = None,
        *,
        as_of: When | None = None,
    ) -> Any:
        """:meth:`Tenant.get`"""
        return self.tenant(tenant_id).get(entry, key, digest, as_of=as_of)

    def items(
        self, tenant_id: str, entry: str, digest: str | None = None, *, as_of: When | None = None
    ) -> dict[Key, Any]:
        """:meth:`Tenant.items`"""
        return self.tenant(tenant_id).items(entry, digest, as_of=as_of)

    def count(
        self, tenant_id: str, entry: str, digest: str | None = None, *, as_of: When | None = None
    ) -> int:
        """:meth:`Tenant.count`"""
        return self.tenant(tenant_id).count(entry, digest, as_of=as_of)

    def exists(self, tenant_id: str, entry: str) -> bool:
        """:meth:`Tenant.exists`"""
        return self.tenant(tenant_id).exists(entry)

    def get_digest(self, tenant_id: str, entry: str) -> str:
        """:meth:`Tenant.get_digest`"""
        return self.tenant(tenant_id).get_digest(entry)

    def history(
        self,
        tenant_id: str,
        entry: str,
        digest: str | None = None,
        max_items: int = 1000,
        *,
        user_id: str | None = None,
    ) -> list[str]:
        """:meth:`Tenant.history`"""
        return self.tenant(tenant_id).history(entry, digest, max_items, user_id=user_id)

    def info(
        self, tenant_id: str, entry: str, digest: str | None = None, *, as_of: When | None = None
    ) -> VersionInfo:
        """:meth:`Tenant.info`"""
        return self.tenant(tenant_id).info(entry, digest, as_of=as_of)

    def diff(self, tenant_id: str, entry: str, old: str, new: str) -> Diff:
        """:meth:`Tenant.diff`"""
        return self.tenant(tenant_id).diff(entry, old, new)

    def verify(self, tenant_id: str, entry: str) -> VerifyReport:
        """:meth:`Tenant.verify`"""
        return self.tenant(tenant_id).verify(entry)
