"""Checks of the structures' arguments, each raising the builtin error a caller expects."""

from __future__ import annotations

__all__ = ["check_position", "check_size"]


def check_size(name: str, value: object) -> int | None:
    """``value`` if it is None or an int >= 1.

    :raises TypeError: if it is neither None nor an int
    :raises ValueError: if it is an int below 1
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} is an int >= 1, got {value!r}")
    return value


def check_position(name: str, value: object) -> int:
    """``value`` if it is an int (not a bool).

    :raises TypeError: otherwise
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int, got {value!r}")
    return value
