"""``everstore verify``: check a store's log against its hash chain (docs/integrity.md)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator

from .output import Output
from .targets import CliError, open_target

__all__ = ["verify"]


def verify(args: argparse.Namespace, out: Output) -> int:
    """``everstore verify``: recompute the chain over the whole log, with a progress
    bar on a terminal.

    :param args: the parsed command line (``target``, ``schema``, ``against``, ``json``)
    :param out: where to print
    :return: 0 when the log verifies, 1 on any finding
    :raises CliError: for a checkpoint that is not one, or a store that keeps no chain
    """
    with open_target(args.target, schema=args.schema) as store:
        with _progress(out) as progress:
            try:
                report = store.verify(against=args.against, progress=progress)
            except ValueError as exc:
                raise CliError(str(exc)) from exc
        checkpoint = store.checkpoint() if report.ok else None
    if args.json:
        out.json(
            {
                "ok": report.ok,
                "facts": report.facts,
                "seq": report.seq,
                "kind": report.kind,
                "message": report.message,
                "checkpoint": checkpoint,
            }
        )
    elif report.ok:
        out.line(f"ok: {report.facts} facts verify; checkpoint {checkpoint}", style="green")
    else:
        where = "" if report.seq is None else f" at seq {report.seq}"
        out.line(f"{report.kind}{where}: {report.message}", style="bold red")
    return 0 if report.ok else 1


@contextlib.contextmanager
def _progress(out: Output) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal (None when piped or without rich)."""
    if not out.styled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=out.stream), transient=True) as bar:
        task = bar.add_task("verifying", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update
