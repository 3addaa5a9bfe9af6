"""The web viewer's application: a read-only JSON API over a Store, and the static page
that renders it.

Every list is paged (``limit`` plus ``offset``, ``after`` or ``before``), so the first
page of any view costs about the same on a store of a thousand facts or of a million.
Endpoints are plain functions: Starlette runs them in its thread pool, and a Store is
thread-safe.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..engine import Change, History, namespace_path
from ..errors import EverstoreError, InvalidNameError, MissingFieldError, PrunedHistoryError
from ..log import Erased
from ..store import Store

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
SHOWN_CHARS = 300  # a value's text is cut there in lists (a page of huge values stays small)
PLOT_POINTS = 400  # at most this many points of a numeric history are plotted
DIFF_SCAN = 20_000  # facts one diff request reads at most before it answers with a cursor


class BadRequest(Exception):
    """A query parameter the API cannot use; answered with status 400."""


def create_app(store: Store) -> Starlette:
    """The web viewer of ``store``, as a Starlette application (read-only).

    The caller owns the store: the application neither opens nor closes it.

    :param store: the store to show
    :return: the application, for uvicorn or a test client
    """
    api = _Api(store)
    routes = [
        Route("/", _index),
        Route("/api/info", api.endpoint(api.info)),
        Route("/api/namespaces", api.endpoint(api.namespaces)),
        Route("/api/namespace", api.endpoint(api.namespace)),
        Route("/api/history", api.endpoint(api.history)),
        Route("/api/log", api.endpoint(api.log)),
        Route("/api/diff", api.endpoint(api.diff)),
        Route("/api/seq_at", api.endpoint(api.seq_at)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


# -- query parameters -----------------------------------------------------------------


def _int(request: Request, name: str, default: int | None = None, low: int = 0) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise BadRequest(f"{name} needs an integer, got {text!r}") from None
    if number < low:
        raise BadRequest(f"{name} needs an integer >= {low}, got {number}")
    return number


def _limit(request: Request) -> int:
    limit = _int(request, "limit", DEFAULT_LIMIT, low=1)
    assert limit is not None
    return min(limit, MAX_LIMIT)


def _parts(request: Request, required: bool) -> tuple[str, ...]:
    parts = tuple(request.query_params.getlist("ns"))
    if required and not parts:
        raise BadRequest("ns needs at least one namespace part (ns=a&ns=b for a/b)")
    return parts


# -- values as shown ------------------------------------------------------------------


def _shown(value: Any, unavailable: bool = False) -> str | dict[str, str]:
    """A value as the API gives it: its repr (cut at SHOWN_CHARS), ``""`` for a
    tombstone, ``{"erased": DIGEST}`` for a value :meth:`everstore.Store.erase`
    removed (the page shows a marker)."""
    if unavailable:
        return ""
    if isinstance(value, Erased):
        return {"erased": value.digest}
    text = repr(value)
    if len(text) > SHOWN_CHARS:
        return text[: SHOWN_CHARS - 1] + "…"
    return text


def _numeric(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


class _Absent:
    """A field without a value at some seq (never written, or deleted)."""


ABSENT = _Absent()


class _Api:
    def __init__(self, store: Store) -> None:
        self.store = store
        # The sorted namespace list of the latest (prefix, seq) asked for: paging through
        # it, or typing in the search box, does not read every name again each time.
        self._names_lock = threading.Lock()
        self._names_key: tuple[tuple[str, ...], int] | None = None
        self._names: list[str] = []

    def endpoint(self, view: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return JSONResponse(view(request))
            except BadRequest as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            except MissingFieldError as error:
                return JSONResponse({"error": str(error)}, status_code=404)
            except PrunedHistoryError as error:
                # history a prune moved out: gone for good from this store (410)
                body = {"error": str(error), "pruned": True, "archive": error.archive}
                return JSONResponse(body, status_code=410)
            except (InvalidNameError, TypeError, ValueError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            except EverstoreError as error:
                return JSONResponse({"error": str(error)}, status_code=500)

        return run

    def _seq(self, request: Request) -> tuple[int, int | None]:
        """The store's last seq and the ``seq`` asked for (None: now)."""
        last = self.store.last_seq
        seq = _int(request, "seq")
        if seq is not None and seq >= last:
            seq = None
        return last, seq

    # -- /api/info --------------------------------------------------------------------

    def info(self, request: Request) -> dict[str, Any]:
        last = self.store.last_seq
        first = next(self.store.follow(0, timeout=0, batch=1), None)
        latest = self._fact(last)
        return {
            "store": repr(self.store),
            "last_seq": last,
            "first_time": first.time if first else None,
            "last_time": latest.time if latest else None,
        }

    def _fact(self, seq: int) -> Change | None:
        if seq < 1:
            return None
        found = next(self.store.follow(seq - 1, timeout=0, batch=1), None)
        return found if found is not None and found.seq == seq else None

    def seq_at(self, request: Request) -> dict[str, Any]:
        text = request.query_params.get("time", "")
        try:
            when = float(text)
        except ValueError:
            raise BadRequest(f"time needs seconds since the epoch, got {text!r}") from None
        return {"time": when, "seq": self.store.seq_at_time(when)}

    # -- /api/namespaces --------------------------------------------------------------

    def _names_of(self, prefix: tuple[str, ...], seq: int | None, last: int) -> list[str]:
        key = (prefix, last if seq is None else seq)
        with self._names_lock:
            if key == self._names_key:
                return self._names
        names = ["/".join(parts) for parts in self.store.namespaces(prefix, seq=seq)]
        with self._names_lock:
            self._names_key, self._names = key, names
        return names

    def namespaces(self, request: Request) -> dict[str, Any]:
        """Namespace names in order, ``limit`` after the name ``after``, those containing
        ``q`` (case-insensitive) only when given, as they were at ``seq`` when given.

        Without ``q`` a page is one paged read of the store (``total`` is then None);
        a search walks the whole sorted list, read once and kept while the store and
        the ``seq`` stay the same (``total`` counts it)."""
        last, seq = self._seq(request)
        limit = _limit(request)
        query = request.query_params.get("q", "").strip().lower()
        after = request.query_params.get("after", "")
        prefix = _parts(request, required=False)
        total: int | None = None
        if not query:
            after_parts = tuple(after.split("/")) if after else None
            found = self.store.namespaces(prefix, seq=seq, after=after_parts, limit=limit + 1)
            page = ["/".join(parts) for parts in found]
        else:
            names = self._names_of(prefix, seq, last)
            total = len(names)
            page = []
            position = bisect.bisect_right(names, after) if after else 0
            while position < len(names) and len(page) <= limit:
                name = names[position]
                if query in name.lower():
                    page.append(name)
                position += 1
        more = len(page) > limit
        page = page[:limit]
        return {
            "seq": seq,
            "last_seq": last,
            "total": total,
            "items": [{"name": name, "parts": name.split("/")} for name in page],
            "next": page[-1] if more else None,
        }

    # -- /api/namespace ---------------------------------------------------------------

    def _history(self, parts: tuple[str, ...], field: str, seq: int | None) -> History:
        ns = self.store.namespace(parts)
        if seq is None:
            return self.store.history(ns, field)
        return self.store.history(ns, field, seq)

    def namespace(self, request: Request) -> dict[str, Any]:
        """A namespace's fields with their values (now, or at ``seq``), ``limit`` from
        ``offset``, in first-write order."""
        last, seq = self._seq(request)
        parts = _parts(request, required=True)
        limit = _limit(request)
        offset = _int(request, "offset", 0) or 0
        if seq is None:
            names = self.store.fields(self.store.namespace(parts))
        else:
            # pruned history is an error (410), not a namespace without fields
            self.store.check_unpruned(namespace_path(parts), seq)
            names = self.store.as_of(seq=seq).storage(*parts).__fields__()
        rows = []
        for name in names[offset : offset + limit]:
            history = self._history(parts, name, seq)
            latest = history[-1]
            rows.append(
                {
                    "name": name,
                    "value": _shown(latest.data),
                    "numeric": _numeric(latest.data),
                    "versions": len(history),
                    "seq": latest.seq,
                    "time": latest.time,
                    "context": latest.context,
                }
            )
        return {
            "namespace": list(parts),
            "seq": seq,
            "last_seq": last,
            "total": len(names),
            "offset": offset,
            "fields": rows,
        }

    # -- /api/history -----------------------------------------------------------------

    def history(self, request: Request) -> dict[str, Any]:
        """A field's history, newest first, ``limit`` from ``offset``; for a numeric
        field also up to PLOT_POINTS (seq, time, value) points spread over all of it."""
        last, seq = self._seq(request)
        parts = _parts(request, required=True)
        field = request.query_params.get("field", "")
        if not field:
            raise BadRequest("field is required")
        limit = _limit(request)
        offset = _int(request, "offset", 0) or 0
        history = self._history(parts, field, seq)
        total = len(history)
        stop = max(total - offset, 0)
        start = max(stop - limit, 0)
        rows = [
            {
                "seq": entry.seq,
                "time": entry.time,
                "deleted": entry.unavailable,
                "value": _shown(entry.data, entry.unavailable),
                "context": entry.context,
            }
            for entry in reversed(history[start:stop])
        ]
        points = []
        if total and any(_numeric(history.value_at(p)) for p in (0, total - 1)):
            step = max(total / PLOT_POINTS, 1.0)
            for position in sorted({int(i * step) for i in range(min(total, PLOT_POINTS))}):
                entry = history[position]
                if not entry.unavailable and _numeric(entry.data):
                    points.append({"seq": entry.seq, "time": entry.time, "value": entry.data})
            final = history[-1]
            shown_last = points[-1]["seq"] if points else None
            if not final.unavailable and _numeric(final.data) and shown_last != final.seq:
                points.append({"seq": final.seq, "time": final.time, "value": final.data})
        return {
            "namespace": list(parts),
            "field": field,
            "seq": seq,
            "last_seq": last,
            "total": total,
            "offset": offset,
            "rows": rows,
            "points": points,
        }

    # -- /api/log ---------------------------------------------------------------------

    def log(self, request: Request) -> dict[str, Any]:
        """The log: the ``limit`` facts after seq ``after``, oldest first (what a live
        view polls for); otherwise the ``limit`` facts before seq ``before`` (default:
        the newest), newest first."""
        limit = _limit(request)
        after = _int(request, "after")
        last = self.store.last_seq
        if after is not None:
            facts = list(itertools.islice(self._facts(after, last), limit))
            return {"last_seq": last, "order": "ascending", "facts": [_row(c) for c in facts]}
        before = _int(request, "before", last + 1) or 0
        high = min(before - 1, last)
        # Seqs may have gaps (a rolled-back transaction's on PostgreSQL): widen the
        # window until it holds a page or reaches the start.
        window = limit
        while True:
            since = max(high - window, 0)
            facts = list(self._facts(since, high))
            if len(facts) >= limit or since == 0:
                break
            window *= 4
        page = facts[-limit:][::-1]
        return {
            "last_seq": last,
            "order": "descending",
            "facts": [_row(c) for c in page],
            "next": page[-1].seq if page and page[-1].seq > 1 and len(page) == limit else None,
        }

    def _facts(self, since: int, high: int) -> Iterator[Change]:
        batch = max(min(high - since, 1000), 1)
        changes = self.store.follow(since, timeout=0, batch=batch)
        return itertools.takewhile(lambda change: change.seq <= high, changes)

    # -- /api/diff --------------------------------------------------------------------

    def _value_at(self, parts: tuple[str, ...], field: str, seq: int) -> Any:
        try:
            history = self.store.history(self.store.namespace(parts), field, seq)
        except MissingFieldError:
            return ABSENT
        if not history or history.deleted_at(-1):
            return ABSENT
        return history.value_at(-1)

    def diff(self, request: Request) -> dict[str, Any]:
        """Fields that differ between seq ``from`` and seq ``to``, in namespaces equal to
        or under the ``ns`` prefix: added, changed or deleted, ``limit`` at a time.

        Reads the facts between the two seqs; a page ends after ``limit`` differences
        or DIFF_SCAN facts, and ``cursor`` (the seq reached) asks for the next one.
        """
        last = self.store.last_seq
        low = _int(request, "from", 0) or 0
        high = _int(request, "to", last)
        assert high is not None
        low, high = min(low, high), min(max(low, high), last)
        prefix = _parts(request, required=False)
        limit = _limit(request)
        cursor = max(_int(request, "cursor", low) or low, low)
        width = len(prefix)
        seen: set[tuple[tuple[str, ...], str]] = set()
        changes = []
        reached = high
        for scanned, change in enumerate(self._facts(cursor, high), start=1):
            key = (change.namespace, change.field)
            if change.namespace[:width] != prefix or key in seen:
                pass
            else:
                seen.add(key)
                old = self._value_at(change.namespace, change.field, low)
                new = self._value_at(change.namespace, change.field, high)
                if old is ABSENT and new is not ABSENT:
                    kind = "added"
                elif new is ABSENT and old is not ABSENT:
                    kind = "deleted"
                elif old is not ABSENT and old != new:
                    kind = "changed"
                else:
                    kind = ""
                if kind:
                    changes.append(
                        {
                            "namespace": list(change.namespace),
                            "field": change.field,
                            "kind": kind,
                            "old": "" if old is ABSENT else _shown(old),
                            "new": "" if new is ABSENT else _shown(new),
                        }
                    )
            if len(changes) >= limit or scanned >= DIFF_SCAN:
                reached = change.seq
                break
        return {
            "from": low,
            "to": high,
            "namespace": list(prefix),
            "changes": changes,
            "cursor": reached if reached < high else None,
        }


def _row(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "time": change.time,
        "namespace": list(change.namespace),
        "field": change.field,
        "deleted": change.unavailable,
        "value": _shown(change.data, change.unavailable),
        "context": change.context,
    }
