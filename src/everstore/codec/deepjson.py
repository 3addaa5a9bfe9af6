"""JSON of any nesting depth, parsed without recursion.

orjson refuses documents nested deeper than 1024 levels, and the standard library's
parser recurses (so it fails at the interpreter's recursion limit, or worse, on the
C stack). everstore 0.1.0 could store values nested that deep; this parser reads
them in any process and any thread. It is only the fallback: a few times slower
than orjson, and never needed for what the codec writes today.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["loads_deep"]

# a string token, escapes and all; orjson then checks and decodes it (it does not nest)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORDS = {"true": True, "false": False, "null": None}


def loads_deep(text: str) -> Any:
    """The value of the JSON document ``text``, however deeply it nests.

    :param text: one JSON document (whitespace around tokens allowed).
    :return: what ``json.loads(text)`` returns, with str keys and int or float numbers.
    :raises ValueError: ``text`` is not one well-formed JSON document.

    Complexity: O(len(text)), with the open containers as the only stack.

    >>> loads_deep('[1, {"a": [true, null]}, "x"]')
    [1, {'a': [True, None]}, 'x']
    >>> loads_deep("[" * 5000 + "]" * 5000) is not None
    True
    """
    parents: list[Any] = []  # the open containers, innermost last
    keys: list[str] = []  # the key each open object waits to fill, innermost last
    pos = 0
    while True:
        value, pos = _open(text, _skip(text, pos), parents, keys)
        if value is _OPENED:
            continue
        while parents:  # a value is complete: store it and close what ends here
            container = parents[-1]
            if type(container) is list:
                container.append(value)
            else:
                container[keys.pop()] = value
            pos = _skip(text, pos)
            char = text[pos : pos + 1]
            pos += 1
            if char == ",":
                if type(container) is dict:
                    pos = _read_key(text, pos, keys)
                break
            if char != ("]" if type(container) is list else "}"):
                raise ValueError(f"malformed JSON at character {pos - 1}")
            value = parents.pop()
        else:
            if _skip(text, pos) != len(text):
                raise ValueError(f"extra data after JSON at character {pos}")
            return value


_OPENED = object()  # _open's value when it opened a container that is not yet read


def _open(text: str, pos: int, parents: list[Any], keys: list[str]) -> tuple[Any, int]:
    """Read the value at ``pos``: a scalar or empty container is returned; a
    non-empty container is pushed on ``parents`` (with its first key) instead."""
    char = text[pos : pos + 1]
    if char == "[" or char == "{":
        closing = "]" if char == "[" else "}"
        after = _skip(text, pos + 1)
        if text[after : after + 1] == closing:
            return ([] if char == "[" else {}), after + 1
        if char == "[":
            parents.append([])
            return _OPENED, after
        parents.append({})
        return _OPENED, _read_key(text, after, keys)
    if char == '"':
        return _read_string(text, pos)
    number = _NUMBER.match(text, pos)
    if number is not None:
        is_float = number.group(1) or number.group(2)
        return (float if is_float else int)(number.group()), number.end()
    for word, meaning in _WORDS.items():
        if text.startswith(word, pos):
            return meaning, pos + len(word)
    raise ValueError(f"malformed JSON at character {pos}")


def _read_key(text: str, pos: int, keys: list[str]) -> int:
    """Read ``"key":`` at ``pos`` onto ``keys``; return where its value starts."""
    pos = _skip(text, pos)
    key, pos = _read_string(text, pos)
    pos = _skip(text, pos)
    if text[pos : pos + 1] != ":":
        raise ValueError(f"expected ':' at character {pos}")
    keys.append(key)
    return pos + 1


def _read_string(text: str, pos: int) -> tuple[str, int]:
    """The JSON string token at ``pos`` and where it ends."""
    token = _STRING.match(text, pos)
    if token is None:
        raise ValueError(f"unterminated string at character {pos}")
    value = orjson.loads(token.group())
    assert type(value) is str
    return value, token.end()


def _skip(text: str, pos: int) -> int:
    space = _SPACE.match(text, pos)
    return pos if space is None else space.end()
