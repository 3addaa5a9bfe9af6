"""Names: namespace parts joined into the log's paths, and field names checked."""

from __future__ import annotations

from ..errors import InvalidNameError, ReservedNameError

__all__ = ["check_field", "describe_field", "namespace_path"]

_NAMESPACE_FORBIDDEN = frozenset("/\x00")


def namespace_path(parts: tuple[str, ...]) -> str:
    """``("game", "p1")`` -> ``"game/p1"``, refusing parts that would be ambiguous.

    >>> namespace_path(("game", "p1"))
    'game/p1'

    :param parts: the namespace, one or more non-empty printable str without ``/``
    :return: the parts joined by ``/``, as the log stores them
    :raises InvalidNameError: if ``parts`` is empty or a part is not such a str
    """
    if not parts:
        raise InvalidNameError("a namespace needs at least one part")
    for part in parts:
        if type(part) is not str:
            raise InvalidNameError(f"namespace parts must be str, got {part!r} in {parts!r}")
        if not part or not _NAMESPACE_FORBIDDEN.isdisjoint(part) or not part.isprintable():
            raise InvalidNameError(
                f"namespace part {part!r} in {parts!r} must be non-empty printable text without '/'"
            )
    return "/".join(parts)


def check_field(field: object) -> str:
    """``field`` if it is a field name (an identifier, not a dunder), else an error.

    >>> check_field("score")
    'score'

    :raises InvalidNameError: if ``field`` is not an identifier
    :raises ReservedNameError: if ``field`` is a dunder name
    """
    if type(field) is not str or not field.isidentifier():
        raise InvalidNameError(f"field names must be identifiers, got {field!r}")
    if field.startswith("__") and field.endswith("__"):
        raise ReservedNameError(f"{field!r}: dunder names are reserved for everstore and Python")
    return field


def describe_field(parts: tuple[str, ...], field: str) -> str:
    """How error messages name one field: ``field 'x' of namespace ('a',)``."""
    return f"field {field!r} of namespace {parts!r}"
