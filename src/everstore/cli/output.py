"""How the commands print: aligned tables, relative times and colours on a terminal
(through ``rich``, the ``cli`` extra, when it is installed); plain aligned text with
ISO-8601 times when piped; one JSON value per line for ``--json``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from ..log import Erased

__all__ = ["ERASED_TEXT", "Output", "format_value", "jsonable", "relative_time", "rich_available"]

#: how a table shows an erased value
ERASED_TEXT = "<erased>"
#: a value longer than this is cut short in a terminal's table (never when piped)
_TERMINAL_VALUE_WIDTH = 60


def rich_available() -> bool:
    """True when the ``rich`` package (the ``cli`` extra) can be imported.

    :return: whether tables and progress bars can use rich
    """
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def relative_time(when: float, now: float) -> str:
    """``when`` said the way a person would, seen from ``now``: ``"12s ago"``,
    ``"5m ago"``, ``"3h ago"``, ``"2d ago"``, or the date for longer ago.

    :param when: a unix time
    :param now: the unix time to count from
    :return: the short text
    """
    ago = now - when
    if ago < 0:
        return "in the future"
    for limit, unit, size in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if ago < limit:
            return f"{int(ago // size)}{unit} ago"
    if ago < 30 * 86400:
        return f"{int(ago // 86400)}d ago"
    return dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: containers become lists and objects (with str
    keys), dates their ISO-8601 text, bytes their hex, an erased value
    ``{"erased": DIGEST}`` (:class:`~everstore.Erased`), anything else its repr.

    :param value: a value read from a store
    :return: something :func:`json.dumps` writes
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Erased):
        return {"erased": value.digest}
    return repr(value)


def format_value(value: Any, *, deleted: bool = False, short: bool = False) -> str:
    """A value as a table shows it: its repr, ``<deleted>`` for a tombstone,
    ``<erased>`` for a value :meth:`everstore.Store.erase` removed.

    :param value: the value
    :param deleted: True for a tombstone
    :param short: cut a long repr to a terminal's width
    :return: the text
    """
    if deleted:
        return "<deleted>"
    if isinstance(value, Erased):
        return ERASED_TEXT
    text = repr(value)
    if short and len(text) > _TERMINAL_VALUE_WIDTH:
        text = text[: _TERMINAL_VALUE_WIDTH - 1] + "…"
    return text


class Output:
    """Where a command prints to, and how: styled when the stream is a terminal and
    rich is installed, plain otherwise."""

    def __init__(self, stream: TextIO | None = None, *, styled: bool | None = None) -> None:
        """:param stream: where to print (default: ``sys.stdout`` at call time)
        :param styled: force styling on or off (default: on for a terminal with rich)
        """
        self.stream = sys.stdout if stream is None else stream
        if styled is None:
            styled = _isatty(self.stream) and rich_available()
        self.styled = styled
        self.now = time.time()

    def when(self, moment: float) -> str:
        """A fact's time: relative on a terminal, ISO-8601 local time when piped.

        :param moment: a unix time
        :return: the text
        """
        if self.styled:
            return relative_time(moment, self.now)
        return dt.datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")

    def value(self, value: Any, *, deleted: bool = False) -> str:
        """A value for a table cell (cut short on a terminal).

        :param value: the value
        :param deleted: True for a tombstone
        :return: the text
        """
        return format_value(value, deleted=deleted, short=self.styled)

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """Print one line as it is (in ``style``, a rich colour, on a terminal).

        :param text: the line, without its newline
        :param style: a rich style such as ``"green"``, used only when styled
        """
        if self.styled and style:
            from rich.console import Console
            from rich.text import Text

            Console(file=self.stream).print(Text(text, style=style), soft_wrap=True)
            return
        self.stream.write(text + "\n")

    def json(self, data: Any) -> None:
        """Print ``data`` as one line of JSON.

        :param data: JSON data (values go through :func:`jsonable` first)
        """
        self.stream.write(json.dumps(data, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Flush the stream (``log --follow`` shows each fact as it comes)."""
        self.stream.flush()

    def table(
        self,
        headers: Sequence[str] | None,
        rows: Iterable[Sequence[str]],
        *,
        right: Sequence[int] = (),
        title: str | None = None,
    ) -> None:
        """Print rows under headers, in aligned columns.

        :param headers: the column names (None: no header line)
        :param rows: the cells, as text
        :param right: indexes of the columns aligned to the right (numbers)
        :param title: a line above the table
        """
        cells = [list(row) for row in rows]
        if self.styled:
            self._rich_table(headers, cells, right, title)
            return
        if title:
            self.line(title)
        lines = cells if headers is None else [list(headers), *cells]
        if not lines:
            return
        widths = [0] * len(lines[0])
        for row in lines:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        for row in lines:
            padded = [
                cell.rjust(width) if index in right else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            self.line("  ".join(padded).rstrip())

    def _rich_table(
        self,
        headers: Sequence[str] | None,
        rows: list[list[str]],
        right: Sequence[int],
        title: str | None,
    ) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=title,
            box=None,
            header_style="bold cyan",
            title_justify="left",
            show_header=headers is not None,
        )
        width = len(headers) if headers is not None else len(rows[0]) if rows else 0
        for index, header in enumerate(headers or [""] * width):
            table.add_column(header, justify="right" if index in right else "left")
        for row in rows:
            table.add_row(*_escaped(row))
        Console(file=self.stream).print(table)


def _escaped(row: list[str]) -> list[str]:
    from rich.markup import escape

    return [escape(cell) for cell in row]


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
