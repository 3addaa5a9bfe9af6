"""Serialization handlers: how a type the encoder does not know goes into a version.

Two kinds, as in MyDbEngine 0.2:

* :class:`BaseInlineHandler` turns an object into a small tagged dict that stays inside
  the version (``{"__special__": tag, ...}``), readable in the stored JSON;
* :class:`BaseRefHandler` turns it into bytes of its own format, stored once in the
  store's blob table under their SHA-256; the version holds
  ``{"__special__": tag, "__digest__": digest}``, so equal bytes are stored once across
  tenants, entries and versions.

A handler is registered once, in the process-wide registry :data:`handlers` (or in a
:class:`Handlers` given to one engine), and is asked, in registration order, whether it
takes a value the encoder has no rule for.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["BaseHandler", "BaseInlineHandler", "BaseRefHandler", "Handlers", "handlers"]


class BaseHandler:
    """What every handler answers: which objects it takes and the tag it writes."""

    def is_eligible_for(self, obj: Any) -> bool:
        """True if this handler stores ``obj``."""
        raise NotImplementedError

    def tag(self) -> str:
        """The name written as ``__special__``; it must never change once data is
        written. Tags starting with ``~`` are everstore's own."""
        raise NotImplementedError


class BaseInlineHandler(BaseHandler):
    """A handler whose objects stay inside the version as a tagged dict."""

    def serialize(self, obj: Any) -> dict[str, Any]:
        """``obj`` as a dict holding ``"__special__": self.tag()`` and any values the
        versions encoder can store."""
        raise NotImplementedError

    def deserialize(self, data: dict[str, Any]) -> Any:
        """The object :meth:`serialize` made ``data`` from."""
        raise NotImplementedError


class BaseRefHandler(BaseHandler):
    """A handler whose objects become bytes stored once in the blob table."""

    def serialize_to_bytes(self, obj: Any) -> bytes:
        """``obj`` in this handler's own binary format."""
        raise NotImplementedError

    def deserialize_from_bytes(self, data: bytes) -> Any:
        """The object :meth:`serialize_to_bytes` made ``data`` from."""
        raise NotImplementedError


class Handlers:
    """A registry of handlers, asked in registration order.

    >>> class Upper(BaseInlineHandler):
    ...     def is_eligible_for(self, obj): return isinstance(obj, bytes)
    ...     def tag(self): return "Upper"
    >>> registry = Handlers()
    >>> registry.register_handler(Upper())
    >>> registry.register_handler(Upper())
    Traceback (most recent call last):
    ...
    ValueError: a handler with tag 'Upper' is already registered
    """

    def __init__(self) -> None:
        self._by_tag: dict[str, BaseHandler] = {}
        self._lock = threading.Lock()

    def register_handler(self, handler: BaseHandler) -> None:
        """Add ``handler``; objects it is eligible for are stored through it from now.

        :raises TypeError: if ``handler`` is not a BaseInlineHandler or BaseRefHandler
        :raises ValueError: if a handler with its tag is registered already (a handler
            is registered once: MyDbEngine 0.2.1's rule), or the tag is not a non-empty
            str or starts with ``~`` (everstore's own tags)
        """
        if not isinstance(handler, BaseInlineHandler | BaseRefHandler):
            raise TypeError(
                f"a handler is a BaseInlineHandler or a BaseRefHandler, got {handler!r}"
            )
        tag = handler.tag()
        if not isinstance(tag, str) or not tag or tag.startswith("~"):
            raise ValueError(
                f"a handler's tag is a non-empty str not starting with '~', got {tag!r}"
            )
        with self._lock:
            if tag in self._by_tag:
                raise ValueError(f"a handler with tag {tag!r} is already registered")
            # a new dict, never one changed in place: readers iterate without the lock
            self._by_tag = {**self._by_tag, tag: handler}

    def unregister_handler(self, tag: str) -> None:
        """Remove the handler registered under ``tag``; versions written through it
        can no longer be loaded until one is registered again.

        :raises KeyError: if no handler has that tag
        """
        with self._lock:
            if tag not in self._by_tag:
                raise KeyError(f"no handler is registered with tag {tag!r}")
            self._by_tag = {t: h for t, h in self._by_tag.items() if t != tag}

    def for_object(self, obj: Any) -> BaseHandler | None:
        """The first registered handler eligible for ``obj``, or None."""
        for handler in self._by_tag.values():
            if handler.is_eligible_for(obj):
                return handler
        return None

    def for_tag(self, tag: str) -> BaseHandler | None:
        """The handler registered under ``tag``, or None."""
        return self._by_tag.get(tag)

    def __len__(self) -> int:
        return len(self._by_tag)


#: The process-wide registry every engine uses unless it is given its own.
handlers = Handlers()
