"""``export`` and ``import``: a store to a JSON-lines stream and back, through the
library module :mod:`everstore.portable`, with a progress bar on a terminal."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TextIO

from .output import rich_available
from .targets import CliError, open_target, sqlite_file

__all__ = ["export", "import_"]


def _portable() -> ModuleType:
    # Imported by name when a command runs: the module is the library's, and the
    # rest of the command line works without it.
    try:
        return importlib.import_module("everstore.portable")
    except ImportError as exc:
        raise CliError(f"export and import need everstore.portable: {exc}") from exc


@contextlib.contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A progress callback drawing a rich bar on stderr when it is a terminal; None
    (no bar, nothing printed) when stderr is piped or rich is missing."""
    if not (sys.stderr.isatty() and rich_available()):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int) -> None:
            bar.update(task, completed=done)

        yield advance


def export(args: argparse.Namespace) -> int:
    """``everstore export SOURCE [-o FILE]``: every fact of SOURCE as JSON lines, to
    FILE or stdout.

    :param args: the parsed command line
    :return: the exit code (0)
    :raises CliError: for a missing source or a file that cannot be written
    """
    portable = _portable()
    with open_target(args.source, schema=args.schema) as store:
        total = store.last_seq
        to_file = args.output not in (None, "-")
        try:
            target: TextIO = (
                open(args.output, "w", encoding="utf-8") if to_file else sys.stdout  # noqa: SIM115
            )
        except OSError as exc:
            raise CliError(f"cannot write {args.output!r}: {exc.strerror}") from exc
        try:
            with _progress("exporting", total) as progress:
                count: int = portable.export_facts(store, target, progress=progress)
        except BaseException:
            if to_file:  # an export that did not finish leaves no half file
                target.close()
                os.remove(args.output)
            raise
        finally:
            if to_file:
                target.close()
            else:
                target.flush()
    if to_file:
        print(f"exported {count} facts to {args.output}", file=sys.stderr)
    return 0


def import_(args: argparse.Namespace) -> int:
    """``everstore import TARGET [FILE]``: the JSON-lines stream in FILE (or stdin)
    into TARGET, which must hold no facts unless ``--into-nonempty``.

    :param args: the parsed command line
    :return: the exit code (0)
    :raises CliError: for a missing file, a target with facts, or a bad stream
    """
    portable = _portable()
    try:
        source: TextIO = (
            sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")  # noqa: SIM115
        )
    except OSError as exc:
        raise CliError(f"cannot read {args.file!r}: {exc.strerror}") from exc
    created = _new_file(args.target)
    try:
        with (
            open_target(args.target, schema=args.schema, create=True) as store,
            _progress("importing", None) as progress,
        ):
            try:
                count: int = portable.import_facts(
                    store, source, into_nonempty=args.into_nonempty, progress=progress
                )
            except (portable.StoreNotEmptyError, portable.ImportFormatError) as exc:
                raise CliError(_import_message(exc, args)) from exc
    except BaseException:
        if created is not None:  # a failed import into a new file leaves no file
            for name in (created, created + "-wal", created + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
        raise
    finally:
        if source is not sys.stdin:
            source.close()
    print(f"imported {count} facts into {args.target}", file=sys.stderr)
    return 0


def _new_file(target: str) -> str | None:
    """The SQLite file an import would create, or None when it exists or is no file."""
    path = sqlite_file(target)
    return path if path is not None and not os.path.exists(path) else None


def _import_message(exc: Any, args: argparse.Namespace) -> str:
    if type(exc).__name__ == "StoreNotEmptyError":
        return f"{exc} (add --into-nonempty to import into {args.target} anyway)"
    return str(exc)
