"""Object keys <-> namespace parts.

Each object of a :class:`~everstore.models.ModelStore` lives in the namespace
``prefix + (part,)``, where ``part`` encodes the object's key. A namespace part must be
non-empty printable text without ``/``; a key may be any ``str`` (empty, with ``/``,
``%`` or non-printable characters included) or any ``int``. The encoding is reversible
and keeps ordinary keys readable in the log:

- a ``str`` key is kept as it is, except that ``%``, ``/``, a leading ``#`` and every
  non-printable character are written as ``%XX`` (the bytes of their UTF-8 encoding,
  lone surrogates included), so ``"denis"`` is ``denis`` and ``"a/b"`` is ``a%2Fb``;
- the empty ``str`` is ``%`` (which no other key encodes to: a literal ``%`` is ``%25``);
- an ``int`` key is ``#`` followed by its decimal digits: ``42`` is ``#42``, ``-1`` is
  ``#-1`` (the ``str`` ``"#42"`` is ``%2342``, so the two never meet).

Other key types (``bool`` included) raise :class:`TypeError`.

>>> encode_key("denis"), encode_key("a/b"), encode_key(""), encode_key(42)
('denis', 'a%2Fb', '%', '#42')
>>> decode_key("a%2Fb"), decode_key("#42"), decode_key("%")
('a/b', 42, '')
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidNameError

__all__ = ["Key", "check_key", "decode_key", "encode_key"]

#: what a key may be
Key = str | int

_HEX = "0123456789ABCDEF"
_HEX_DIGITS = frozenset("0123456789ABCDEFabcdef")


def check_key(key: Any) -> Key:
    """``key`` if it is a valid key (a ``str`` or an ``int``, not a ``bool``).

    :raises TypeError: for any other type
    """
    kind = type(key)
    if kind is str or kind is int:
        return key  # type: ignore[no-any-return]
    if isinstance(key, str):
        return str(key)  # a str subclass (a StrEnum member, say): its text
    if isinstance(key, int) and not isinstance(key, bool):
        return int(key)
    raise TypeError(f"a model key is a str or an int, got {type(key).__name__} {key!r}")


def encode_key(key: Key) -> str:
    """The namespace part of ``key`` (see the module's documentation).

    :raises TypeError: if ``key`` is neither a ``str`` nor an ``int``
    """
    key = check_key(key)
    if type(key) is int:
        return f"#{key}"
    assert isinstance(key, str)
    if not key:
        return "%"
    if key.isprintable() and "%" not in key and "/" not in key and key[0] != "#":
        return key  # the common case: kept as it is
    out: list[str] = []
    for index, char in enumerate(key):
        if char == "%" or char == "/" or not char.isprintable() or (index == 0 and char == "#"):
            for byte in char.encode("utf-8", "surrogatepass"):
                out.append("%" + _HEX[byte >> 4] + _HEX[byte & 15])
        else:
            out.append(char)
    return "".join(out)


def decode_key(part: str) -> Key:
    """The key whose namespace part is ``part`` (the inverse of :func:`encode_key`).

    :raises InvalidNameError: if ``part`` is not the encoding of any key
    """
    if part == "%":
        return ""
    if part.startswith("#"):
        try:
            return int(part[1:])
        except ValueError:
            raise InvalidNameError(f"{part!r} is not the namespace part of a key") from None
    if "%" not in part:
        return part
    out: list[str] = []
    pending = bytearray()
    index = 0
    length = len(part)
    while index < length:
        char = part[index]
        if char == "%":
            digits = part[index + 1 : index + 3]
            if len(digits) != 2 or not _HEX_DIGITS.issuperset(digits):
                raise InvalidNameError(f"{part!r} is not the namespace part of a key")
            pending.append(int(digits, 16))
            index += 3
            continue
        if pending:
            out.append(_bytes_text(pending, part))
            pending.clear()
        out.append(char)
        index += 1
    if pending:
        out.append(_bytes_text(pending, part))
    return "".join(out)


def _bytes_text(data: bytearray, part: str) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise InvalidNameError(f"{part!r} is not the namespace part of a key") from None
