"""``everstore serve``: the web inspector, from the ``web`` extra."""

from __future__ import annotations

import argparse
import importlib
import os

from .targets import CliError, sqlite_file

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """``everstore serve TARGET [--port N] [--host H]``: run :func:`everstore.web.serve`.

    :param args: the parsed command line
    :return: the exit code (0 once the server stops)
    :raises CliError: when the ``web`` extra is not installed, or the file is missing
    """
    try:
        web = importlib.import_module("everstore.web")
    except ImportError as exc:
        raise CliError(f"serve needs the web extra: pip install 'everstore[web]' ({exc})") from exc
    path = sqlite_file(args.target)
    if path is not None and not os.path.isfile(path):
        raise CliError(f"no store at {path!r} (no such file)")
    web.serve(args.target, port=args.port, host=args.host)
    return 0
