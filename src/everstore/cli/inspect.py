"""The inspector's commands: log, show, ls, history, diff and stats. Each reads a
store through its public API (``follow``, ``as_of``, ``namespaces``, histories) and
never writes to it."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..engine import Change, namespace_path
from ..store import Store
from ..temporal import StoreView
from .output import Output, jsonable
from .targets import CliError, Moment, open_target, parse_moment, parse_namespace

__all__ = ["diff", "history", "log", "ls", "show", "stats"]


def _at_seq(store: Store, at: str | None) -> int:
    return store.last_seq if at is None else parse_moment(at).resolve(store)


def _where(args: argparse.Namespace, seq: int) -> str:
    return f" at seq {seq}" if getattr(args, "at", None) is not None else ""


# -- log ------------------------------------------------------------------------------


def _start_cursor(store: Store, since: Moment) -> int:
    """The cursor (exclusive) after which the facts at or after ``since`` start."""
    if since.seq is not None:
        return max(since.seq - 1, 0)
    assert since.time is not None
    # the highest seq strictly before the time: a fact written at exactly it is kept
    return store.seq_at_time(math.nextafter(since.time, -math.inf))


def _end_seq(store: Store, until: Moment) -> int:
    if until.seq is not None:
        return until.seq
    assert until.time is not None
    return store.seq_at_time(until.time)


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "time": change.time,
        "namespace": "/".join(change.namespace),
        "field": change.field,
        "deleted": change.unavailable,
        "value": jsonable(change.data),
        "context": change.context,
    }


def _change_row(out: Output, change: Change) -> list[str]:
    return [
        str(change.seq),
        out.when(change.time),
        "/".join(change.namespace),
        change.field,
        out.value(change.data, deleted=change.unavailable),
        change.context,
    ]


_LOG_HEADERS = ("SEQ", "TIME", "NAMESPACE", "FIELD", "VALUE", "BY")


def log(args: argparse.Namespace, out: Output) -> int:
    """``everstore log``: the facts, filtered, newest first unless ``--oldest``;
    with ``--follow``, the new facts as they commit.

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for a bad moment, namespace or option combination
    """
    prefix = parse_namespace(args.namespace) if args.namespace else ()
    fields = set(args.field or ())
    since = parse_moment(args.since) if args.since else None
    ends = [parse_moment(text) for text in (args.until, args.at) if text]
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit needs a number >= 1, got {args.limit}")
    if args.follow and ends:
        raise CliError("--follow streams new facts; it takes no --until or --at")

    def wanted(change: Change) -> bool:
        return change.namespace[: len(prefix)] == prefix and (not fields or change.field in fields)

    with open_target(args.target, schema=args.schema) as store:
        if args.follow:
            cursor = store.last_seq if since is None else _start_cursor(store, since)
            return _follow(store, cursor, wanted, args, out)
        cursor = 0 if since is None else _start_cursor(store, since)
        end = min([store.last_seq, *(_end_seq(store, moment) for moment in ends)])
        # unfiltered, the newest N are the last N facts: one read of N
        filtered = bool(prefix or fields)
        batch = 1000 if filtered or args.limit is None else min(args.limit, 1000)
        selected = filter(
            wanted, store.changes(cursor, end, newest_first=not args.oldest, batch=batch)
        )
        # a list: a table is aligned over all its rows
        changes = list(itertools.islice(selected, args.limit))
        if args.json:
            for change in changes:
                out.json(_change_json(change))
        else:
            out.table(_LOG_HEADERS, (_change_row(out, c) for c in changes), right=(0,))
    return 0


def _follow(
    store: Store,
    cursor: int,
    wanted: Callable[[Change], bool],
    args: argparse.Namespace,
    out: Output,
) -> int:
    shown = 0
    for change in store.follow(cursor):
        if not wanted(change):
            continue
        if args.json:
            out.json(_change_json(change))
        else:
            out.line("  ".join(_change_row(out, change)))
        out.flush()
        shown += 1
        if args.limit is not None and shown >= args.limit:
            break
    return 0


# -- show, ls, history -------------------------------------------------------------------


def _existing(store: Store, view: StoreView, args: argparse.Namespace) -> tuple[str, ...]:
    parts = parse_namespace(args.namespace)
    if parts not in view.namespaces(parts):
        # a namespace whose facts up to the seq were all pruned is not missing: say so
        store.check_unpruned(namespace_path(parts), view.seq)
        raise CliError(
            f"no namespace {args.namespace!r} in {args.target}{_where(args, view.seq)} "
            "(see `everstore ls`)"
        )
    return parts


def show(args: argparse.Namespace, out: Output) -> int:
    """``everstore show NAMESPACE``: the namespace's current fields (at ``--at``).

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for an unknown namespace or a bad moment
    """
    with open_target(args.target, schema=args.schema) as store:
        view = store.as_of(seq=_at_seq(store, args.at))
        parts = _existing(store, view, args)
        latest = [
            (name, history[-1])
            for name, history in view.storage(*parts).__history__().items()
            if not history.deleted_at(-1)
        ]
        if args.json:
            out.json({name: jsonable(value.data) for name, value in latest})
            return 0
        rows = (
            [name, out.value(value.data), str(value.seq), out.when(value.time), value.context]
            for name, value in latest
        )
        out.table(("FIELD", "VALUE", "SEQ", "WRITTEN", "BY"), rows, right=(2,))
    return 0


def ls(args: argparse.Namespace, out: Output) -> int:
    """``everstore ls [PREFIX]``: the namespaces (at ``--at``), one a line.

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for a bad prefix or moment
    """
    prefix = parse_namespace(args.prefix) if args.prefix else ()
    with open_target(args.target, schema=args.schema) as store:
        view = store.as_of(seq=_at_seq(store, args.at))
        for parts in view.namespaces(prefix):
            if args.json:
                out.json({"namespace": "/".join(parts), "parts": list(parts)})
            else:
                out.line("/".join(parts))
    return 0


def history(args: argparse.Namespace, out: Output) -> int:
    """``everstore history NAMESPACE FIELD``: every value of a field, oldest first,
    with its seq, time and the code that wrote it.

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for an unknown namespace or field, or a bad moment
    """
    with open_target(args.target, schema=args.schema) as store:
        view = store.as_of(seq=_at_seq(store, args.at))
        parts = _existing(store, view, args)
        found = view.storage(*parts).__history__().get(args.field)
        if found is None:
            raise CliError(
                f"{args.namespace} has no field {args.field!r}{_where(args, view.seq)} "
                f"(see `everstore show {args.target} {args.namespace}`)"
            )
        if args.json:
            for value in found:
                out.json(
                    {
                        "seq": value.seq,
                        "time": value.time,
                        "deleted": value.unavailable,
                        "value": jsonable(value.data),
                        "context": value.context,
                    }
                )
            return 0
        rows = (
            [
                str(value.seq),
                out.when(value.time),
                out.value(value.data, deleted=value.unavailable),
                value.context,
            ]
            for value in found
        )
        out.table(("SEQ", "TIME", "VALUE", "BY"), rows, right=(0,))
    return 0


# -- diff --------------------------------------------------------------------------------


def _current(view: StoreView, parts: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: history.value_at(-1)
        for name, history in view.storage(*parts).__history__().items()
        if not history.deleted_at(-1)
    }


_MARKS = {"added": ("+", "green"), "changed": ("~", "yellow"), "deleted": ("-", "red")}


def diff(args: argparse.Namespace, out: Output) -> int:
    """``everstore diff A B [PREFIX]``: the fields added, changed and deleted between
    two moments, in the whole store, under a prefix, or (``--exact``) in one namespace.

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for a bad moment or prefix
    """
    prefix = parse_namespace(args.prefix) if args.prefix else ()
    if args.exact and not prefix:
        raise CliError("--exact needs a namespace")
    with open_target(args.target, schema=args.schema) as store:
        first = parse_moment(args.a).resolve(store)
        second = parse_moment(args.b).resolve(store)
        before, after = store.as_of(seq=first), store.as_of(seq=second)
        names = sorted(set(before.namespaces(prefix)) | set(after.namespaces(prefix)))
        if args.exact:
            names = [parts for parts in names if parts == prefix]
        counts: Counter[str] = Counter()
        for parts in names:
            old, new = _current(before, parts), _current(after, parts)
            for name in [*old, *(n for n in new if n not in old)]:
                if name not in old:
                    kind, was, now = "added", None, new[name]
                elif name not in new:
                    kind, was, now = "deleted", old[name], None
                elif old[name] != new[name]:
                    kind, was, now = "changed", old[name], new[name]
                else:
                    continue
                counts[kind] += 1
                _print_change(out, args.json, kind, "/".join(parts), name, was, now)
        if not args.json:
            out.line(
                f"{counts['added']} added, {counts['changed']} changed, "
                f"{counts['deleted']} deleted from seq {first} to seq {second}"
            )
    return 0


def _print_change(
    out: Output, as_json: bool, kind: str, namespace: str, name: str, was: Any, now: Any
) -> None:
    if as_json:
        record: dict[str, Any] = {"change": kind, "namespace": namespace, "field": name}
        if kind != "added":
            record["before"] = jsonable(was)
        if kind != "deleted":
            record["after"] = jsonable(now)
        out.json(record)
        return
    if kind == "added":
        text = f"{namespace}  {name} = {out.value(now)}"
    elif kind == "deleted":
        text = f"{namespace}  {name} (was {out.value(was)})"
    else:
        text = f"{namespace}  {name}: {out.value(was)} -> {out.value(now)}"
    mark, colour = _MARKS[kind]
    out.line(f"{mark} {text}", style=colour)


# -- stats -------------------------------------------------------------------------------

_PERIODS = (
    (2 * 86400, "hour", "%Y-%m-%d %H:00"),
    (62 * 86400, "day", "%Y-%m-%d"),
    (math.inf, "month", "%Y-%m"),
)
#: growth rows shown at most; earlier periods are summed into one row
_GROWTH_ROWS = 24


def _growth(times: list[float]) -> tuple[str, list[tuple[str, int, int]]]:
    if not times:
        return "day", []
    span = max(times) - min(times)
    unit, pattern = next((u, p) for limit, u, p in _PERIODS if span <= limit)
    per = Counter(dt.datetime.fromtimestamp(t).strftime(pattern) for t in times)
    rows, total = [], 0
    for period in sorted(per):
        total += per[period]
        rows.append((period, per[period], total))
    if len(rows) > _GROWTH_ROWS:
        cut = len(rows) - _GROWTH_ROWS + 1
        earlier = rows[cut - 1][2]
        rows = [(f"before {rows[cut][0]}", earlier, earlier), *rows[cut:]]
    return unit, rows


def _human_size(size: int | None) -> str:
    if size is None:
        return "n/a"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def stats(args: argparse.Namespace, out: Output) -> int:
    """``everstore stats``: facts, namespaces, fields, size, growth over time and the
    busiest namespaces (at ``--at``).

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for a bad moment or ``--top``
    """
    if args.top < 1:
        raise CliError(f"--top needs a number >= 1, got {args.top}")
    with open_target(args.target, schema=args.schema) as store:
        view = store.as_of(seq=_at_seq(store, args.at))
        per_namespace: Counter[str] = Counter()
        live_fields = 0
        times: list[float] = []
        for parts in view.namespaces():
            for found in view.storage(*parts).__history__().values():
                per_namespace["/".join(parts)] += len(found)
                live_fields += not found.deleted_at(-1)
                times.extend(value.time for value in found)
        unit, growth = _growth(times)
        busiest = sorted(per_namespace.items(), key=lambda item: (-item[1], item[0]))
        busiest = busiest[: args.top]
        size = store.storage_size()
        summary: dict[str, Any] = {
            "facts": len(times),
            "last_seq": view.seq,
            "namespaces": len(per_namespace),
            "fields": live_fields,
            "size_bytes": size,
            "first_time": min(times, default=None),
            "last_time": max(times, default=None),
        }
        if args.json:
            summary["growth"] = [
                {"period": period, "facts": count, "total": total}
                for period, count, total in growth
            ]
            summary["growth_unit"] = unit
            summary["busiest"] = [{"namespace": ns, "facts": count} for ns, count in busiest]
            out.json(summary)
            return 0
        rows = [
            ["facts", str(summary["facts"])],
            ["last seq", str(view.seq)],
            ["namespaces", str(summary["namespaces"])],
            ["fields", str(live_fields)],
            ["size", _human_size(size)],
        ]
        if times:
            rows.append(["first fact", out.when(min(times))])
            rows.append(["last fact", out.when(max(times))])
        out.table(None, rows, title="store")
        out.line()
        out.table(
            (unit.upper(), "FACTS", "TOTAL"),
            ([period, str(count), str(total)] for period, count, total in growth),
            right=(1, 2),
            title="growth",
        )
        out.line()
        out.table(
            ("NAMESPACE", "FACTS"),
            ([ns, str(count)] for ns, count in busiest),
            right=(1,),
            title="busiest namespaces",
        )
    return 0
