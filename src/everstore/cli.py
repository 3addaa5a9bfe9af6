"""The ``everstore`` command: a demo, and a look inside any store file.

everstore demo [--path everstore-demo.db]
everstore namespaces PATH [PREFIX ...]
everstore show PATH NAMESPACE [FIELD]
everstore migrate PATH [--prefix PREFIX]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from . import open as open_store
from .backends import Sqlite3
from .backends.base import SCHEMA_VERSION
from .errors import EverstoreError
from .store import Store
from .temporal import within


def _print_history(store: Store, namespace: tuple[str, ...], field: str) -> None:
    history = store.storage(*namespace).__history__().get(field)
    if history is None:
        print(f"  {field}: never written")
        return
    for value in history:
        when = time.strftime("%H:%M:%S", time.localtime(value.time))
        shown = "<deleted>" if value.unavailable else repr(value.data)
        print(f"  seq {value.seq:>4}  {when}  {field} = {shown:<28} by {value.context}")


def demo(path: str) -> int:
    """A short game, written to an SQLite file, then read back four ways."""
    with open_store(path) as store:
        start = store.last_seq
        player = store.storage("game", "alice")
        print(f"everstore demo on {path} (facts already in the file: {start})\n")

        print("1. Every assignment is appended and committed at once:")
        player.name = "Alice"
        for round_number, score in ((1, 10), (2, 25), (3, 40)):
            player.round = round_number
            player.score = score
        print(f"   player.name={player.name!r} player.round={player.round} score={player.score}")

        print("\n2. Mutable values change inside `with`, saved atomically on exit:")
        with player:
            player.inventory = ["sword"]
        with player:
            player.inventory.append("shield")  # stored as a delta: just the new item
        with player:
            print(f"   inventory = {player.inventory}")
        middle = store.last_seq

        print("\n3. Nothing is overwritten: the history of `score`, with who wrote it:")
        _print_history(store, ("game", "alice"), "score")

        print("\n4. `within`: what was the score while round == 2?")
        print(f"   within(player, round=2).score = {within(player, round=2).score}")
        for round_value, view in within.along(player, "round"):
            # A period from an earlier run may end after `score` was deleted.
            print(f"   round {round_value}: score {getattr(view, 'score', '<none>')}")

        print("\n5. `as_of`: the whole store as it was, by seq:")
        del player.score
        past = store.as_of(seq=middle).storage("game", "alice")
        print(f"   now: 'score' in player -> {'score' in player} (deleted, a tombstone)")
        print(f"   at seq {middle}: score = {past.score}, inventory = {past.inventory}")
        print(f"\nThe file now holds {store.last_seq} facts. Run again: it only grows.")
    return 0


def _namespaces(path: str, prefix: Sequence[str]) -> int:
    with open_store(path) as store:
        for namespace in store.namespaces(tuple(prefix)):
            print("/".join(namespace))
    return 0


def _show(path: str, namespace: str, field: str | None) -> int:
    parts = tuple(namespace.split("/"))
    with open_store(path) as store:
        fields = [field] if field else list(store.storage(*parts).__history__())
        for name in fields:
            _print_history(store, parts, name)
    return 0


def _migrate(path: str, prefix: str) -> int:
    """Bring the SQLite store at ``path`` to this release's schema version."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        print(f"everstore migrate: no store at {path!r}", file=sys.stderr)
        return 2
    backend = Sqlite3(path, prefix=prefix)
    try:
        backend.open()
    except EverstoreError as exc:
        print(f"everstore migrate: {exc}", file=sys.stderr)
        return 1
    backend.close()
    if backend.migrated_from is None:
        print(f"{path}: already at schema version {SCHEMA_VERSION}")
    else:
        print(f"{path}: migrated from schema version {backend.migrated_from} to {SCHEMA_VERSION}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="everstore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run a short scenario on an SQLite file")
    run_demo.add_argument("--path", default="everstore-demo.db")
    listing = commands.add_parser("namespaces", help="list the namespaces of a store")
    listing.add_argument("path")
    listing.add_argument("prefix", nargs="*")
    show = commands.add_parser("show", help="print the history of a namespace")
    show.add_argument("path")
    show.add_argument("namespace", help="parts joined by '/', like game/alice")
    show.add_argument("field", nargs="?")
    upgrade = commands.add_parser(
        "migrate", help="migrate an SQLite store to this release's schema version"
    )
    upgrade.add_argument("path")
    upgrade.add_argument("--prefix", default="everstore", help="the store's table prefix")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.path)
    if args.command == "namespaces":
        return _namespaces(args.path, args.prefix)
    if args.command == "migrate":
        return _migrate(args.path, args.prefix)
    return _show(args.path, args.namespace, args.field)


if __name__ == "__main__":
    sys.exit(main())
