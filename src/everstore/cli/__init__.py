"""The everstore command (also python -m everstore): look inside a store, follow
its log, verify it, erase values or prune old history, move it between databases,
and run the demo.

Every command but demo takes a store first: a path to an SQLite file, a
sqlite:///PATH URL or a postgresql://... URL. A namespace is written with '/'
between its parts (game/player1).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from ..errors import EverstoreError
from .output import Output
from .targets import CliError

__all__ = ["build_parser", "build_parsers", "main"]

_EPILOG = """\
TIME|SEQ is a seq (42), a unix time (1700000000.5), an ISO-8601 time
(2026-01-31T12:00, local unless it has an offset) or a time ago (-30s, -5m, -2h,
-1d, -1w; written --at=-5m, so that it does not look like an option).
Output is aligned text, with relative times and colours on a terminal (with the
'cli' extra: pip install 'everstore[cli]'), plain text when piped.
Exit codes: 0 done, 1 a store that cannot be migrated or a finding of verify, 2 a
usage error or a store that cannot be used, 130 interrupted (Ctrl-C)."""


#: the commands that read a store given first, and print what they find
_INSPECTING = ("log", "show", "ls", "history", "diff", "stats", "verify")
#: the commands that change a store given first (docs/integrity.md)
_REWRITING = ("erase", "prune")


def _store_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "target",
        metavar="STORE",
        help="an SQLite file, sqlite:///PATH or postgresql://... URL",
    )
    parent.add_argument(
        "--schema",
        help="the PostgreSQL schema holding the store (default: the connection's own)",
    )
    return parent


def _add_at(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--at", metavar="TIME|SEQ", help=f"{what} as it was then")


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=what)


def build_parser() -> argparse.ArgumentParser:
    """The ``everstore`` argument parser, with a subparser per command.

    :return: the parser
    """
    return build_parsers()[0]


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``everstore`` argument parser and each command's own parser, by name, in
    the order ``everstore --help`` lists them (docs/cli.md is generated from them).

    :return: ``(parser, {command: its parser})``
    """
    parser = argparse.ArgumentParser(
        prog="everstore",
        description=(__doc__ or "").strip(),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store = _store_parent()

    parsers: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        parsers[name] = commands.add_parser(
            name,
            parents=[store] if name in _INSPECTING + _REWRITING else [],
            help=summary,
            description=description,
            epilog=_EPILOG if name in (*_INSPECTING, "prune") else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parsers[name]

    log = command(
        "log",
        "the facts, newest first, filtered; --follow streams new ones",
        "Print the store's facts: seq, time, namespace, field, value and the code that\n"
        "wrote it. Newest first unless --oldest. With --follow, print the facts that\n"
        "commit from now on (from --since when given) as they come; Ctrl-C ends it.",
    )
    log.add_argument("-n", "--namespace", metavar="PREFIX", help="only namespaces under PREFIX")
    log.add_argument("-f", "--field", action="append", help="only this field (repeat for several)")
    log.add_argument("--since", metavar="TIME|SEQ", help="only facts at or after this moment")
    log.add_argument("--until", metavar="TIME|SEQ", help="only facts at or before this moment")
    _add_at(log, "the log (same as --until)")
    log.add_argument("--oldest", action="store_true", help="oldest first")
    log.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="at most N facts (the newest, or the oldest with --oldest); "
        "with --follow, stop after N",
    )
    log.add_argument("--follow", action="store_true", help="stream new facts as they commit")
    _add_json(log, "one JSON object per fact and line")

    show = command(
        "show",
        "a namespace's current fields",
        "Print a namespace's fields with their values, the seq and time each was\n"
        "written and the code that wrote it.",
    )
    show.add_argument("namespace", metavar="NAMESPACE", help="like game/player1")
    _add_at(show, "the namespace")
    _add_json(show, "one JSON object, field -> value")

    ls = command("ls", "the namespaces", "Print the namespaces holding facts, one a line.")
    ls.add_argument("prefix", metavar="PREFIX", nargs="?", help="only those under PREFIX")
    _add_at(ls, "the namespaces")
    _add_json(ls, "one JSON object per namespace and line")

    history = command(
        "history",
        "every value of a field",
        "Print every value a field has had, oldest first, with its seq, time and the\n"
        "code that wrote it; <deleted> marks a deletion.",
    )
    history.add_argument("namespace", metavar="NAMESPACE", help="like game/player1")
    history.add_argument("field", metavar="FIELD")
    _add_at(history, "the history")
    _add_json(history, "one JSON object per value and line")

    diff = command(
        "diff",
        "what changed between two moments",
        "Print the fields added (+), changed (~) and deleted (-) from moment A to\n"
        "moment B, in the whole store, in the namespaces under PREFIX, or with --exact\n"
        "in the namespace PREFIX alone.",
    )
    diff.add_argument("a", metavar="A", help="the first moment, TIME|SEQ")
    diff.add_argument("b", metavar="B", help="the second moment, TIME|SEQ")
    diff.add_argument("prefix", metavar="PREFIX", nargs="?", help="only namespaces under it")
    diff.add_argument("--exact", action="store_true", help="only the namespace PREFIX itself")
    _add_json(diff, "one JSON object per change and line")

    stats = command(
        "stats",
        "facts, namespaces, fields, size, growth, busiest namespaces",
        "Print how many facts, namespaces and fields the store holds, its size in its\n"
        "database (an SQLite file, PostgreSQL tables), its growth per hour, day or month,\n"
        "and its busiest namespaces.",
    )
    stats.add_argument("--top", type=int, default=10, metavar="N", help="busiest N (default 10)")
    _add_at(stats, "the store")
    _add_json(stats, "one JSON object")

    export = command(
        "export",
        "write every fact as JSON lines",
        "Write every fact of the store SOURCE as JSON lines, to FILE or stdout.\n"
        "A progress bar shows on a terminal.",
    )
    export.add_argument("source", metavar="SOURCE", help="an SQLite file or URL, as STORE")
    export.add_argument("--schema", help="the PostgreSQL schema holding the store")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")

    load = command(
        "import",
        "read JSON lines into a store",
        "Read a stream written by `everstore export` from FILE or stdin into TARGET\n"
        "(an SQLite file is created if missing). TARGET must hold no facts unless\n"
        "--into-nonempty. A progress bar shows on a terminal.",
    )
    load.add_argument("target", metavar="TARGET", help="an SQLite file or URL, as STORE")
    load.add_argument("file", metavar="FILE", nargs="?", help="read here (default: stdin)")
    load.add_argument("--schema", help="the PostgreSQL schema holding the store")
    load.add_argument(
        "--into-nonempty", action="store_true", help="import into a store that has facts"
    )

    serve = command(
        "serve",
        "browse the store in a web browser",
        "Serve the web inspector on http://HOST:PORT/ (needs the 'web' extra:\n"
        "pip install 'everstore[web]').",
    )
    serve.add_argument("target", metavar="STORE", help="an SQLite file or URL")
    serve.add_argument("--port", type=int, default=8000, help="default 8000")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")

    demo = command(
        "demo", "run a short scenario on an SQLite file", "Run a short game on an SQLite file."
    )
    demo.add_argument("--path", default="everstore-demo.db", help="default everstore-demo.db")

    verify = command(
        "verify",
        "check the log against its hash chain; exit 1 on any finding",
        "Recompute the store's hash chain over the whole log (docs/integrity.md) and\n"
        "report the first fact changed, deleted, inserted or reordered, or the log\n"
        "truncated. With --against, also check that the log still extends a checkpoint\n"
        "taken earlier (catches a truncation or a restored older backup). Exit status\n"
        "1 on any finding. Prints the latest checkpoint when the log verifies.",
    )
    verify.add_argument(
        "--against", metavar="CHECKPOINT", help="a checkpoint (es1:SEQ:HEX) the log must extend"
    )
    _add_json(verify, "the report as one JSON object")

    erase = command(
        "erase",
        "erase a namespace's (or one field's) values for good, with a reason",
        "Replace every stored value of NAMESPACE (of its FIELD only, when given) by an\n"
        "erasure marker, and record what, why (--reason) and who (--by) in the log\n"
        '(docs/integrity.md, "Erasure"). Reads then show <erased>; the hash chain\n'
        "still verifies. Asks first on a terminal; without one, needs --yes.",
    )
    erase.add_argument("namespace", metavar="NAMESPACE", help="like people/ann")
    erase.add_argument("field", metavar="FIELD", nargs="?", help="only this field")
    erase.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the log)")
    erase.add_argument("--by", metavar="WHO", help="who asked (kept in the log)")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    prune = command(
        "prune",
        "move old history no current value needs out of the live log",
        "Remove the facts before --before that no current value needs (a field's last\n"
        "value and what it is rebuilt from stay), of every namespace or those under\n"
        "--namespaces, into the SQLite file --archive or dropped, and record it in the\n"
        'log (docs/integrity.md, "Retention"). Reading as of a pruned seq then fails,\n'
        "naming the archive. Asks first on a terminal; without one, needs --yes.",
    )
    prune.add_argument(
        "--before", required=True, metavar="TIME|SEQ", help="prune the history before this"
    )
    prune.add_argument("--namespaces", metavar="PREFIX", help="only namespaces under PREFIX")
    prune.add_argument(
        "--archive", metavar="PATH", help="an SQLite file the pruned facts go to (default: none)"
    )
    prune.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    migrate = command(
        "migrate",
        "migrate an SQLite store to this release's schema version",
        "Migrate an SQLite store to this release's schema version.",
    )
    migrate.add_argument("path", metavar="PATH")
    migrate.add_argument("--prefix", default="everstore", help="the store's table prefix")
    return parser, parsers


def _run(args: argparse.Namespace) -> int:
    from . import inspect, transfer
    from .demo import demo
    from .migrate import migrate
    from .rewrites import erase, prune
    from .serve import serve
    from .verify import verify

    printing: dict[str, Callable[[argparse.Namespace, Output], int]] = {
        "log": inspect.log,
        "show": inspect.show,
        "ls": inspect.ls,
        "history": inspect.history,
        "diff": inspect.diff,
        "stats": inspect.stats,
        "verify": verify,
        "erase": erase,
        "prune": prune,
    }
    if args.command in printing:
        return printing[args.command](args, Output())
    if args.command == "export":
        return transfer.export(args)
    if args.command == "import":
        return transfer.import_(args)
    if args.command == "serve":
        return serve(args)
    if args.command == "migrate":
        return migrate(args.path, args.prefix)
    return demo(args.path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``everstore`` command.

    :param argv: the arguments after the program name (default: ``sys.argv[1:]``)
    :return: the exit code: 0 done, 1 a store that cannot be migrated, 2 a usage error
        or a store that cannot be used, 130 interrupted
    """
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (CliError, EverstoreError) as exc:
        print(f"everstore {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C ends `log --follow` (or a long export) without a traceback
        return 130
    except BrokenPipeError:
        # `everstore log ... | head`: the reader has gone. Point stdout at devnull so
        # that the interpreter's final flush does not complain again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
