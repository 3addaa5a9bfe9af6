"""Relationships: a field that refers to another stored object by its key.

``author: Ref[Author]`` in a model (pydantic, dataclass or annotated plain class) holds
a :class:`Ref`. The log stores only the key; a proxy hands the field out bound to the
:class:`~everstore.models.ModelStore` of ``Author`` on the same everstore Store (or the
one named in ``refs=``), and ``book.author.get()`` loads the author on first use. A
book read from ``store.as_of(...)`` resolves its author as of the same moment.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, get_args

from .keys import Key, check_key

__all__ = ["Ref", "Resolver"]

T = TypeVar("T")


class Resolver(Protocol):
    """Where a bound :class:`Ref` looks its object up: a ModelStore or a past view."""

    def get(self, key: Any) -> Any: ...


class Ref(Generic[T]):
    """A reference to a stored object by key, resolved lazily.

    ``Ref(key)`` (or a proxy, a key or a Ref, in a field annotated ``Ref[T]``) is what
    a model holds; proxies hand out references bound to the target store, so
    ``ref.get()`` returns the target's proxy, or None if no such object exists (now,
    or at the moment a past view shows).

    >>> Ref("alice") == Ref("alice"), Ref("alice").key
    (True, 'alice')
    """

    __slots__ = ("key", "model", "resolver")

    key: Key
    model: type | None
    resolver: Resolver | None

    def __init__(self, key: Any, model: type | None = None, resolver: Resolver | None = None):
        """:param key: the target's key, or a proxy (its key is taken)
        :param model: the target's class, when known (``Ref[Author]`` knows it)
        :param resolver: where :meth:`get` looks the key up
        :raises TypeError: if ``key`` is not a key or a proxy
        """
        if isinstance(key, Ref):
            model = model or key.model
            key = key.key
        proxied = getattr(type(key), "__proxy_key__", None)
        if proxied is not None:
            key = proxied(key)
        object.__setattr__(self, "key", check_key(key))
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "resolver", resolver)

    def bound(self, resolver: Resolver) -> Ref[T]:
        """This reference, resolved through ``resolver`` (a ModelStore or a view)."""
        return Ref(self.key, self.model, resolver)

    def get(self) -> T | None:
        """The referenced object (a proxy), or None if it does not exist.

        :raises LookupError: if this reference is not bound to a store (a Ref read
            from a proxy always is)
        """
        if self.resolver is None:
            raise LookupError(
                f"{self!r} is not bound to a store: read it through a proxy, or use "
                f"store.get(ref.key)"
            )
        found: T | None = self.resolver.get(self.key)
        return found

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Ref is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ref):
            return bool(self.key == other.key and type(self.key) is type(other.key))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Ref", self.key))

    def __repr__(self) -> str:
        return f"Ref({self.key!r})"

    def __reduce__(self) -> Any:
        return (Ref, (self.key, self.model))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # Imported here: pydantic is only needed by those who use it.
        from pydantic_core import core_schema

        args = get_args(source)
        target = args[0] if args and isinstance(args[0], type) else None

        def validate(value: Any) -> Ref[Any]:
            if isinstance(value, Ref) and (value.model is target or target is None):
                return value
            try:
                return Ref(value, target)
            except TypeError as exc:
                raise ValueError(str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda ref: ref.key),
        )


def ref_target(hint: Any) -> type | None:
    """The target class of a ``Ref[T]`` annotation (None for a bare ``Ref``)."""
    args = get_args(hint)
    return args[0] if args and isinstance(args[0], type) else None
