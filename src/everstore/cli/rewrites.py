"""``everstore erase`` and ``everstore prune``: the log's two sanctioned rewrites
(docs/integrity.md), through :meth:`everstore.Store.erase` and
:meth:`everstore.Store.prune` only. Both change the store for good, so each asks
first on a terminal and, piped, needs ``--yes``."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..engine.integrity import Erasure, Retention
from .output import Output
from .targets import CliError, open_target, parse_moment, parse_namespace

__all__ = ["confirm", "describe_erasure", "describe_retention", "erase", "prune"]


def confirm(question: str, yes: bool, stdin: TextIO | None = None) -> None:
    """Go on only with the user's consent: ``--yes``, or "y" typed on a terminal.

    :param question: what is about to happen, asked on stderr
    :param yes: True when ``--yes`` was given
    :param stdin: where the answer comes from (default: ``sys.stdin`` at call time)
    :raises CliError: when stdin is no terminal and ``--yes`` is missing, or the
        answer is not yes
    """
    if yes:
        return
    source = sys.stdin if stdin is None else stdin
    isatty = getattr(source, "isatty", None)
    if not (isatty and isatty()):
        raise CliError("this cannot be undone: add --yes to do it without a terminal to ask on")
    sys.stderr.write(f"{question} This cannot be undone. [y/N] ")
    sys.stderr.flush()
    answer = source.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CliError("not confirmed: nothing was changed")


def _what(namespace: str, field: str | None) -> str:
    return f"field {field!r} of {namespace}" if field is not None else f"every field of {namespace}"


def describe_erasure(erasure: Erasure) -> str:
    """One line saying what an erasure did.

    :param erasure: the record, from :meth:`~everstore.Store.erase` or ``erasures()``
    :return: the text
    """
    by = f", by {erasure.by}" if erasure.by else ""
    count = len(erasure.erased)
    return (
        f"erased {count} value{'s' if count != 1 else ''} of "
        f"{_what(erasure.namespace, erasure.field)} (reason: {erasure.reason}{by}); "
        f"record at seq {erasure.seq}"
    )


def describe_retention(retention: Retention) -> str:
    """One line saying what a prune did.

    :param retention: the record, from :meth:`~everstore.Store.prune` or ``retentions()``
    :return: the text
    """
    where = f"into {retention.archive}" if retention.archive else "dropped (no archive)"
    under = f"namespaces under {retention.prefix}" if retention.prefix else "every namespace"
    return (
        f"pruned {retention.removed} fact{'s' if retention.removed != 1 else ''} of {under} "
        f"up to seq {retention.through} (seqs {retention.first} to {retention.last}), "
        f"{where}; record at seq {retention.seq}"
    )


def erase(args: argparse.Namespace, out: Output) -> int:
    """``everstore erase STORE NAMESPACE [FIELD] --reason TEXT``: every stored value
    of the namespace (of its field) replaced by an erasure marker.

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for a bad namespace or reason, or no consent
    """
    parts = parse_namespace(args.namespace)
    if not args.reason.strip():
        raise CliError("--reason needs a text saying why these values are erased")
    name = "/".join(parts)
    with open_target(args.target, schema=args.schema, write=True) as store:
        confirm(f"Erase {_what(name, args.field)} in {args.target}?", args.yes)
        try:
            done = store.erase(parts, args.field, reason=args.reason, by=args.by)
        except (TypeError, ValueError) as exc:
            raise CliError(str(exc)) from exc
    out.line(describe_erasure(done), style="green")
    return 0


def prune(args: argparse.Namespace, out: Output) -> int:
    """``everstore prune STORE --before TIME|SEQ``: the history no current value
    needs moved out of the live log (into ``--archive``, or dropped).

    :param args: the parsed command line
    :param out: where to print
    :return: the exit code (0)
    :raises CliError: for a bad moment or prefix, or no consent
    """
    moment = parse_moment(args.before)
    before: int | float = moment.seq if moment.seq is not None else float(moment.time or 0.0)
    prefix = parse_namespace(args.namespaces) if args.namespaces else None
    under = f"namespaces under {'/'.join(prefix)}" if prefix else "every namespace"
    where = f"into {args.archive}" if args.archive else "for good (no --archive)"
    with open_target(args.target, schema=args.schema, write=True) as store:
        confirm(
            f"Prune the history of {under} before {args.before} in {args.target} {where}?",
            args.yes,
        )
        try:
            done = store.prune(before, prefix, args.archive)
        except (TypeError, ValueError) as exc:
            raise CliError(str(exc)) from exc
    if done is None:
        out.line(f"nothing to prune before {args.before}")
    else:
        out.line(describe_retention(done), style="green")
    return 0
