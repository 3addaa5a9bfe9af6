"""What the command line names: a store (a path or a URL), a namespace written with
``/`` between its parts, and a moment (``--at TIME|SEQ``)."""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime

from ..errors import EverstoreError
from ..opening import open as open_store
from ..store import Store

__all__ = [
    "CliError",
    "Moment",
    "open_target",
    "parse_moment",
    "parse_namespace",
    "sqlite_file",
]


class CliError(Exception):
    """A mistake on the command line or a target that cannot be used: printed as one
    line on stderr, exit code 2."""


def sqlite_file(target: str) -> str | None:
    """The file an SQLite target names, or None for any other target.

    :param target: a path, ``sqlite:///...``, ``postgresql://...`` or ``:memory:``
    :return: the file's path, or None for a PostgreSQL, memory or ``file:`` URI target
    """
    if target in (":memory:", "memory://") or target.startswith("file:"):
        return None
    if target.startswith("sqlite://"):
        path = target[len("sqlite:///") :] if target.startswith("sqlite:///") else ""
        return path or None
    if "://" in target:
        return None
    return target


def open_target(
    target: str, *, schema: str | None = None, create: bool = False, write: bool = False
) -> Store:
    """Open the store a command names. Without ``create``, an SQLite file must exist;
    without ``create`` or ``write`` it is opened read-only, so looking never writes
    to it.

    :param target: a path, ``sqlite:///...`` or ``postgresql://...`` URL
    :param schema: the PostgreSQL schema holding the store (None: the connection's own)
    :param create: True for a command that writes (``import``): a missing SQLite file
        is created
    :param write: True for a command that changes an existing store (``erase``,
        ``prune``): the SQLite file must exist and is opened for writing
    :return: an open :class:`~everstore.Store`
    :raises CliError: for a missing file, a file that is no store, an unknown scheme or
        a database that cannot be opened
    """
    path = sqlite_file(target)
    options: dict[str, object] = {}
    if path is not None:
        if not create and not os.path.isfile(path):
            raise CliError(f"no store at {path!r} (no such file)")
        if schema is not None:
            raise CliError("--schema is for PostgreSQL targets; an SQLite file has none")
        if not create and not write:
            options["readonly"] = True
    elif schema is not None:
        options["schema"] = schema
    try:
        return open_store(target, **options)
    except (EverstoreError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def parse_namespace(text: str) -> tuple[str, ...]:
    """``"game/player1"`` -> ``("game", "player1")``.

    :param text: the parts joined by ``/``
    :return: the namespace's parts
    :raises CliError: for an empty namespace or an empty part (``a//b``)
    """
    parts = tuple(text.strip("/").split("/"))
    if not text.strip("/") or any(not part for part in parts):
        raise CliError(f"{text!r} is no namespace: write its parts joined by '/', like game/p1")
    return parts


_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class Moment:
    """A point in a store's log: a seq, or a time resolved to the last seq at it."""

    text: str
    seq: int | None = None
    time: float | None = None

    def resolve(self, store: Store) -> int:
        """The seq of this moment in ``store``.

        :param store: the store the moment is in
        :return: the seq itself, or the highest seq at or before the time (0 if none)
        :raises CliError: for a seq beyond the store's last fact
        """
        if self.seq is not None:
            last = store.last_seq
            if self.seq > last:
                raise CliError(f"seq {self.seq} is beyond the store's last fact (seq {last})")
            return self.seq
        assert self.time is not None
        return store.seq_at_time(self.time)


def parse_moment(text: str, *, now: float | None = None) -> Moment:
    """Read ``--at``'s TIME|SEQ: an int is a seq; a float is a unix time; an ISO-8601
    date or datetime (local time unless it says its offset) or a relative time
    (``-30s``, ``-5m``, ``-2h``, ``-1d``, ``-1w``: that long ago) is a time.

    :param text: what the user wrote
    :param now: the current unix time for relative times (default: the clock)
    :return: the moment, not yet resolved against a store
    :raises CliError: for text that is none of these, or a negative seq
    """
    stripped = text.strip()
    if re.fullmatch(r"[+-]?\d+", stripped):
        seq = int(stripped)
        if seq < 0:
            raise CliError(f"seq {seq} is negative; for a time ago write e.g. -5m")
        return Moment(text, seq=seq)
    relative = _RELATIVE.match(stripped)
    if relative:
        clock = time.time() if now is None else now
        return Moment(text, time=clock - float(relative[1]) * _UNITS[relative[2]])
    try:
        number = float(stripped)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return Moment(text, time=number)
    try:
        when = datetime.fromisoformat(stripped)
    except ValueError:
        raise CliError(
            f"{text!r} is no moment: give a seq (42), a unix time (1700000000.5), "
            "an ISO-8601 time (2026-01-31T12:00) or a time ago (-5m, -2h, -1d)"
        ) from None
    return Moment(text, time=when.timestamp())
