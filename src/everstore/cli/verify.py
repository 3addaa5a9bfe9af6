"""``everstore verify``: check a store's log against its hash chain (docs/integrity.md)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..engine.integrity import Erasure, Retention
from ..integrity import VerifyReport
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
                "erasures": [_erasure_json(e) for e in report.erasures],
                "retentions": [_retention_json(r) for r in report.retentions],
            }
        )
    elif report.ok:
        out.line(f"ok: {report.facts} facts verify; checkpoint {checkpoint}", style="green")
        _print_records(report, out)
    else:
        where = "" if report.seq is None else f" at seq {report.seq}"
        out.line(f"{report.kind}{where}: {report.message}", style="bold red")
    return 0 if report.ok else 1


def _erasure_json(erasure: Erasure) -> dict[str, Any]:
    return {
        "seq": erasure.seq,
        "time": erasure.time,
        "namespace": erasure.namespace,
        "field": erasure.field,
        "erased": len(erasure.erased),
        "seqs": list(erasure.erased),
        "reason": erasure.reason,
        "by": erasure.by,
        "context": erasure.context,
    }


def _retention_json(retention: Retention) -> dict[str, Any]:
    return {
        "seq": retention.seq,
        "time": retention.time,
        "prefix": retention.prefix,
        "through": retention.through,
        "removed": retention.removed,
        "first": retention.first,
        "last": retention.last,
        "archive": retention.archive,
        "context": retention.context,
    }


def _print_records(report: VerifyReport, out: Output) -> None:
    """The erasures and prunes the log records, under the ok line (nothing without)."""
    if report.erasures:
        out.line()
        out.table(
            ("SEQ", "TIME", "ERASED", "VALUES", "REASON", "BY"),
            (
                [
                    str(e.seq),
                    out.when(e.time),
                    e.namespace if e.field is None else f"{e.namespace}.{e.field}",
                    str(len(e.erased)),
                    e.reason,
                    e.by or "",
                ]
                for e in report.erasures
            ),
            right=(0, 3),
            title="erasures",
        )
    if report.retentions:
        out.line()
        out.table(
            ("SEQ", "TIME", "PREFIX", "THROUGH", "REMOVED", "ARCHIVE"),
            (
                [
                    str(r.seq),
                    out.when(r.time),
                    r.prefix or "(all)",
                    str(r.through),
                    str(r.removed),
                    r.archive or "(dropped)",
                ]
                for r in report.retentions
            ),
            right=(0, 3, 4),
            title="prunes",
        )


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
