"""Values <-> canonical JSON: the one encoding every version and record is stored in.

The same value gives the same bytes on every machine, so a digest over them names the
state: dict keys are sorted, sets are sorted by their items' encodings, floats are
written in their shortest exact form, and nothing depends on the process (no ids, no
addresses, no hash seeds). JSON's own types (str, a 64-bit int, a finite float, bool,
None, list, a dict with str keys) are themselves; anything else becomes a dict tagged
``{"__special__": tag, ...}``. Tags starting with ``~`` are everstore's:

==============  ==========================================================
``~tuple``      ``{"items": [...]}``; ``~set`` and ``~frozenset`` the same, sorted
``~dict``       a dict with a non-str key, or a ``__special__`` key of its own:
                ``{"items": [[key, value], ...]}`` sorted by key
``~bytes``      bytes of :data:`BLOB_THRESHOLD` or more, stored once in the blob
                table: ``{"__digest__": sha256}`` (``~bytearray`` likewise)
``~object``     a plain object: ``{"class": "module:Qualname", "dict": {...}}``
``~pickle``     a field its class names in ``use_refs()``: its pickle, a blob
``~enum``       ``{"class": ..., "value": ...}``
``~codec``      a type registered with the store's codec: ``{"v": its bytes as str}``
``~i`` ...      the store codec's scalar types (big ints, nan, bytes, Decimal,
                datetime, date, time, UUID, complex, Random): ``{"v": payload}``
==============  ==========================================================

A handler's tag (:mod:`everstore.versions.handlers`) never starts with ``~``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import importlib
import math
import pickle
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..codec import Codec
from ..codec.scalars import (
    INT64_MIN,
    SCALAR_TREES,
    SCALAR_UNTREES,
    UINT64_MAX,
    float_tree,
    int_tree,
)
from ..errors import DecodeError, UnsupportedValueError
from .errors import UnpicklingRefusedError
from .handlers import BaseInlineHandler, BaseRefHandler, Handlers

__all__ = [
    "BLOB_THRESHOLD",
    "MAX_DEPTH",
    "SPECIAL",
    "Decoder",
    "Encoder",
    "blob_refs",
    "dumps",
]

SPECIAL = "__special__"
DIGEST = "__digest__"
#: bytes values at least this long are stored once in the blob table, not inline
BLOB_THRESHOLD = 1024
#: the deepest nesting of containers a version holds (JSON's parser has a limit too)
MAX_DEPTH = 64

_SORTED = orjson.OPT_SORT_KEYS
_SPECIAL_MARK = b'"__special__"'


def dumps(tree: Any) -> bytes:
    """The canonical bytes of a tree (keys sorted).

    :raises UnsupportedValueError: for text JSON cannot hold (a lone surrogate)
    """
    try:
        return orjson.dumps(tree, option=_SORTED)
    except orjson.JSONEncodeError as exc:
        raise UnsupportedValueError(f"cannot store this value in a version: {exc}") from None


def _sorted_items(trees: list[Any]) -> list[Any]:
    """Items in the order of their canonical bytes: the same set, the same list."""
    return [tree for _, _, tree in sorted((dumps(t), i, t) for i, t in enumerate(trees))]


def blob_refs(data: bytes) -> list[str]:
    """The digests of the blobs a value's canonical bytes refer to.

    :raises orjson.JSONDecodeError: if ``data`` is not JSON
    """
    if _SPECIAL_MARK not in data:
        return []
    found: list[str] = []
    pending = [orjson.loads(data)]
    while pending:
        tree = pending.pop()
        if type(tree) is list:
            pending.extend(tree)
        elif type(tree) is dict:
            digest = tree.get(DIGEST) if SPECIAL in tree else None
            if type(digest) is str:
                found.append(digest)
            pending.extend(tree.values())
    return found


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _wrapped_scalar(tree: Any) -> Any:
    """A codec scalar tree (``{"~x": payload}``) as a tagged special."""
    ((tag, payload),) = tree.items()
    return {SPECIAL: tag, "v": payload}


class Encoder:
    """Turns values into canonical bytes, collecting the blobs they refer to.

    :param handlers: the registry asked for types the encoder has no rule for
    :param codec: the store's codec, for the types registered with it
    """

    def __init__(self, handlers: Handlers, codec: Codec) -> None:
        self.handlers = handlers
        self.codec = codec

    def encode(self, value: Any) -> tuple[bytes, dict[str, bytes]]:
        """``value``'s canonical bytes and the blobs (digest -> bytes) they refer to.

        :raises UnsupportedValueError: (a TypeError) naming a value no rule stores, or
            nesting deeper than :data:`MAX_DEPTH`
        """
        blobs: dict[str, bytes] = {}
        return dumps(self.tree(value, blobs, 0)), blobs

    def tree(self, value: Any, blobs: dict[str, bytes], depth: int) -> Any:
        """The JSON tree of ``value``; blobs it refers to are added to ``blobs``."""
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is int:
            return value if INT64_MIN <= value <= UINT64_MAX else _wrapped_scalar(int_tree(value))
        if kind is float:
            return value if math.isfinite(value) else _wrapped_scalar(float_tree(value))
        if depth >= MAX_DEPTH:
            raise UnsupportedValueError(f"values nest at most {MAX_DEPTH} containers deep")
        inner = depth + 1
        if kind is list:
            return [self.tree(item, blobs, inner) for item in value]
        if kind is dict:
            if SPECIAL not in value and all(type(key) is str for key in value):
                return {key: self.tree(item, blobs, inner) for key, item in value.items()}
            pairs = [
                [self.tree(k, blobs, inner), self.tree(v, blobs, inner)] for k, v in value.items()
            ]
            return {SPECIAL: "~dict", "items": _sorted_items(pairs)}
        handler = self.handlers.for_object(value)
        if handler is not None:
            return self._handled(handler, value, blobs, inner)
        return self._builtin(kind, value, blobs, inner)

    def _handled(self, handler: Any, value: Any, blobs: dict[str, bytes], depth: int) -> Any:
        tag = handler.tag()
        if isinstance(handler, BaseRefHandler):
            data = handler.serialize_to_bytes(value)
            if not isinstance(data, bytes | bytearray):
                raise UnsupportedValueError(
                    f"{type(handler).__name__}.serialize_to_bytes() returned "
                    f"{type(data).__name__}, not bytes"
                )
            return {SPECIAL: tag, DIGEST: _add_blob(blobs, bytes(data))}
        assert isinstance(handler, BaseInlineHandler)
        fields = handler.serialize(value)
        if type(fields) is not dict or fields.get(SPECIAL) != tag:
            raise UnsupportedValueError(
                f"{type(handler).__name__}.serialize() must return a dict holding "
                f"'__special__': {tag!r}, got {fields!r:.80}"
            )
        return {
            key: item if key == SPECIAL else self.tree(item, blobs, depth)
            for key, item in fields.items()
        }

    def _builtin(self, kind: type, value: Any, blobs: dict[str, bytes], depth: int) -> Any:
        if kind is tuple:
            return {SPECIAL: "~tuple", "items": [self.tree(item, blobs, depth) for item in value]}
        if kind is set or kind is frozenset:
            items = _sorted_items([self.tree(item, blobs, depth) for item in value])
            return {SPECIAL: "~set" if kind is set else "~frozenset", "items": items}
        if (kind is bytes or kind is bytearray) and len(value) >= BLOB_THRESHOLD:
            tag = "~bytes" if kind is bytes else "~bytearray"
            return {SPECIAL: tag, DIGEST: _add_blob(blobs, bytes(value))}
        scalar = SCALAR_TREES.get(kind)
        if scalar is not None:
            return _wrapped_scalar(scalar(value))
        if isinstance(value, enum.Enum):
            return {
                SPECIAL: "~enum",
                "class": _class_path(_importable(kind)),
                "value": self.tree(value.value, blobs, depth),
            }
        custom = self._custom_codec_type(value)
        if custom is not None:
            return custom
        if (
            hasattr(value, "__dict__")
            and not isinstance(value, type | Callable)
            # a subclass of a built-in type keeps its contents outside __dict__
            and not isinstance(value, _BUILTIN_BASES)
        ):
            return self._object(kind, value, blobs, depth)
        raise UnsupportedValueError(
            f"cannot store a {kind.__qualname__} ({value!r:.60}) in a version: register a "
            "BaseInlineHandler or BaseRefHandler for it (everstore.versions.handlers), "
            "register the type with the store's codec, make it a plain class (its "
            "__dict__ is stored), or name the field holding it in its class's use_refs() "
            "to pickle it"
        )

    def _custom_codec_type(self, value: Any) -> Any:
        try:
            data = self.codec.encode(value)
        except UnsupportedValueError:
            return None
        return {SPECIAL: "~codec", "v": data.decode("utf-8")}

    def _object(self, kind: type, value: Any, blobs: dict[str, bytes], depth: int) -> Any:
        use_refs = getattr(kind, "use_refs", None)
        pickled = set(use_refs()) if callable(use_refs) else set()
        fields: dict[str, Any] = {}
        for name, item in vars(value).items():
            if name in pickled:
                try:
                    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    raise UnsupportedValueError(
                        f"{kind.__qualname__}.{name} is named in use_refs() but pickle "
                        f"cannot store it: {exc}"
                    ) from None
                fields[name] = {SPECIAL: "~pickle", DIGEST: _add_blob(blobs, data)}
            else:
                fields[name] = self.tree(item, blobs, depth)
        return {SPECIAL: "~object", "class": _class_path(_importable(kind)), "dict": fields}


_BUILTIN_BASES = (
    str,
    int,
    float,
    complex,
    bytes,
    bytearray,
    list,
    dict,
    tuple,
    set,
    frozenset,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)


def _importable(kind: type) -> type:
    """``kind`` if a loader can find it again by module and qualified name."""
    if "<locals>" in kind.__qualname__:
        raise UnsupportedValueError(
            f"{kind.__qualname__} is defined inside a function: a version stores a "
            "class by its module and name, so it must be defined at module level"
        )
    return kind


def _add_blob(blobs: dict[str, bytes], data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


class Decoder:
    """Turns canonical bytes back into values.

    :param handlers: the registry whose tags the stored values name
    :param codec: the store's codec, for ``~codec`` values
    :param get_blob: digest -> the blob's bytes
    :param unpickle: False refuses ``~pickle`` values (loading a pickle can run code)
    """

    def __init__(
        self,
        handlers: Handlers,
        codec: Codec,
        get_blob: Callable[[str], bytes],
        unpickle: bool,
    ) -> None:
        self.handlers = handlers
        self.codec = codec
        self.get_blob = get_blob
        self.unpickle = unpickle

    def decode(self, data: bytes) -> Any:
        """The value whose canonical bytes are ``data``.

        :raises DecodeError: if ``data`` is not such bytes, names a handler tag nobody
            registered, or a class that cannot be imported
        :raises UnpicklingRefusedError: for a pickled field when ``unpickle`` is False
        """
        try:
            tree = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"a stored version is not valid JSON: {exc}") from None
        if _SPECIAL_MARK not in data:
            return tree  # JSON's own types only: the tree is the value
        return self.value(tree)

    def value(self, tree: Any) -> Any:
        """The value a tree stands for."""
        kind = type(tree)
        if kind is list:
            return [self.value(item) for item in tree]
        if kind is not dict:
            return tree
        tag = tree.get(SPECIAL)
        if tag is None:
            return {key: self.value(item) for key, item in tree.items()}
        try:
            if tag[:1] == "~":
                return self._builtin(tag, tree)
            return self._handled(tag, tree)
        except (DecodeError, UnpicklingRefusedError):
            raise
        except Exception as exc:
            raise DecodeError(f"a stored {tag!r} value could not be rebuilt: {exc!r}") from exc

    def _handled(self, tag: str, tree: dict[str, Any]) -> Any:
        handler = self.handlers.for_tag(tag)
        if handler is None:
            raise DecodeError(
                f"the version holds a {tag!r} value and no handler with that tag is "
                "registered: register it before loading"
            )
        if isinstance(handler, BaseRefHandler):
            return handler.deserialize_from_bytes(self.get_blob(tree[DIGEST]))
        assert isinstance(handler, BaseInlineHandler)
        return handler.deserialize(
            {key: item if key == SPECIAL else self.value(item) for key, item in tree.items()}
        )

    def _builtin(self, tag: str, tree: dict[str, Any]) -> Any:
        rebuild = _BUILTIN_REBUILDERS.get(tag)
        if rebuild is not None:
            return rebuild(self, tree)
        scalar = SCALAR_UNTREES.get(tag)
        if scalar is None:
            raise DecodeError(f"unknown stored type {tag!r}: written by a newer everstore?")
        return scalar(tree["v"])

    def _pickle(self, tree: dict[str, Any]) -> Any:
        if not self.unpickle:
            raise UnpicklingRefusedError(
                "this version holds a pickled field (a use_refs() field) and the engine "
                "was opened with unpickle=False: loading a pickle can run code"
            )
        return pickle.loads(self.get_blob(tree[DIGEST]))

    def _object(self, tree: dict[str, Any]) -> Any:
        cls = _load_class(tree["class"])
        obj = cls.__new__(cls)
        obj.__dict__.update({name: self.value(item) for name, item in tree["dict"].items()})
        return obj


def _load_class(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        raise DecodeError(f"the version holds a {path} and that class cannot be imported") from None
    if not isinstance(found, type):
        raise DecodeError(f"the version names {path}, which is not a class")
    return found


def _items(decoder: Decoder, tree: dict[str, Any]) -> list[Any]:
    return [decoder.value(item) for item in tree["items"]]


_BUILTIN_REBUILDERS: dict[str, Callable[[Decoder, dict[str, Any]], Any]] = {
    "~tuple": lambda d, t: tuple(_items(d, t)),
    "~set": lambda d, t: set(_items(d, t)),
    "~frozenset": lambda d, t: frozenset(_items(d, t)),
    "~dict": lambda d, t: {d.value(k): d.value(v) for k, v in t["items"]},
    "~bytes": lambda d, t: d.get_blob(t[DIGEST]),
    "~bytearray": lambda d, t: bytearray(d.get_blob(t[DIGEST])),
    "~object": lambda d, t: d._object(t),
    "~pickle": lambda d, t: d._pickle(t),
    "~enum": lambda d, t: _load_class(t["class"])(d.value(t["value"])),
    "~codec": lambda d, t: d.codec.decode(t["v"].encode("utf-8")),
}
