"""``everstore demo``: a short game written to an SQLite file, then read back."""

from __future__ import annotations

import time

from ..opening import open as open_store
from ..store import Store
from ..temporal import within

__all__ = ["demo"]


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
    """A short game, written to an SQLite file, then read back four ways.

    :param path: the SQLite file (created if missing; a second run adds to it)
    :return: the exit code (0)
    """
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
