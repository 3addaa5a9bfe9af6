"""appendmuch's ``Codec.register(cls, type_id, encoder, decoder, ...)`` on everstore's codec.

Everything else about values is everstore's: more types, nested values, exact
round trips (see docs/migrating-from-appendmuch.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import everstore

__all__ = ["Codec"]

#: type IDs appendmuch 0.3.0 gives its built-in types
BUILTIN_TYPE_IDS = frozenset({*range(14), 128, 129, 130, 131, 133})


class Codec(everstore.Codec):
    """everstore's codec, whose ``register`` also takes appendmuch's arguments.

    >>> from fractions import Fraction
    >>> codec = Codec()
    >>> codec.register(Fraction, 200, lambda f: str(f).encode(), lambda b: Fraction(b.decode()))
    >>> codec.decode(codec.encode([Fraction(1, 3)]))
    [Fraction(1, 3)]
    """

    def register(
        self,
        cls: type,
        type_id: int | str,
        encoder: Callable[[Any], Any],
        decoder: Callable[[Any], Any],
        *,
        mutable: bool = False,
        predicate: Callable[[Any], bool] | None = None,
        eq: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        """Teach the codec a type, appendmuch's way (an int ``type_id``, an encoder
        returning bytes, a decoder taking bytes) or everstore's (a str tag).

        :param cls: the class.
        :param type_id: 0-255, not one of appendmuch's built-in IDs; or an everstore tag.
        :param encoder: ``encoder(obj) -> bytes`` (everstore's form: any storable value).
        :param decoder: ``decoder(bytes) -> obj``.
        :param mutable: put the type under the ``with`` guard and track its changes.
        :param predicate: appendmuch's content-based refinement; not supported.
        :param eq: appendmuch's round-trip comparison; unused (everstore does not
            re-decode what it encodes, its encodings are exact).
        :raises ValueError: a bad or taken ``type_id``, or ``cls`` already registered.
        :raises NotImplementedError: ``predicate`` was given.
        """
        if predicate is not None:
            raise NotImplementedError(
                "everstore's codec dispatches on the exact type; register a subclass "
                "instead of a predicate"
            )
        if isinstance(type_id, str):
            super().register(cls, type_id, encoder, decoder, mutable=mutable)
            return
        if type(type_id) is not int or not 0 <= type_id <= 255:
            raise ValueError(f"type_id must be an int in 0..255, got {type_id!r}")
        if type_id in BUILTIN_TYPE_IDS:
            raise ValueError(f"type_id {type_id} belongs to a built-in type")

        def encode(value: Any) -> bytes:
            return bytes(encoder(value))

        super().register(cls, f"appendmuch:{type_id}", encode, decoder, mutable=mutable)
