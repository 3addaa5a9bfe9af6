"""Values nested deeply, for tests/test_codec_limits.py and for the fresh interpreters
it starts (which import this module: it needs nothing but everstore)."""

from __future__ import annotations

import itertools
from typing import Any

from everstore import Codec

__all__ = ["Box", "box_codec", "unwrap"]


class Box:
    """A registered type: it counts as one level, as a container does."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __eq__(self, other: object) -> bool:
        return type(other) is Box and other.inner == self.inner

    __hash__ = None  # type: ignore[assignment]


def box_codec() -> Codec:
    codec = Codec()
    codec.register(Box, "box", lambda box: box.inner, Box)
    return codec


def unwrap(value: Any, levels: int | None = None) -> Any:
    """What ``levels`` one-item containers (or, with None, all of them) hold, walked
    without recursion.

    :raises AssertionError: ``value`` holds fewer than ``levels`` containers
    """
    for level in range(levels) if levels is not None else itertools.count():
        if type(value) is dict:
            (value,) = value.values()
        elif type(value) is Box:
            value = value.inner
        elif type(value) in (list, tuple, set, frozenset):
            (value,) = value
        elif levels is None:
            break
        else:
            raise AssertionError(f"{levels} levels wanted, {level} found")
    return value
