"""Typed Python values to bytes and back, exactly.

Three shapes of stored bytes, told apart by their first byte:

* plain JSON (``[``, ``{``, ``"``, a digit, ``-``, ``t``, ``f``, ``n``): the value is
  made only of str, int (64-bit), finite float, bool, None, list and dict with str keys,
  and ``orjson.loads`` alone rebuilds it;
* ``~`` + JSON: a *tagged tree*, where any other type is a one-key object whose key
  starts with ``~`` (``{"~t": [1, 2]}`` is the tuple ``(1, 2)``); dicts whose keys are
  not all plain strings become ``{"~d": [[key, value], ...]}``;
* ``\\x01`` + JSON: a *delta* ``[base_seq, op, payload]`` that rebuilds a mutable value
  from the value the same field had at ``base_seq`` (see :func:`make_delta`).

Encoding is canonical (dict keys sorted, set items sorted by their encoding), so equal
values give equal bytes; that is how a changed mutable value is detected.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json as _json
import math
import random
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from .errors import DecodeError, UnsupportedValueError

__all__ = ["Codec", "default_codec"]

_ORJSON_OPTS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_TAGGED = 0x7E  # "~"
_DELTA = 0x01
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
_PLAIN_SCALARS = (str, bool, type(None))
_BUILTIN_MUTABLE: frozenset[type] = frozenset({list, dict, set, bytearray, random.Random})


class _Unsupported(Exception):
    """Raised inside the encoder; turned into UnsupportedValueError with a path."""

    def __init__(self, kind: type, path: tuple[str, ...]) -> None:
        super().__init__(kind, path)
        self.kind = kind
        self.path = path


def _refuse(value: Any) -> Any:
    # orjson's ``default``: anything orjson does not know sends us to the slow path.
    raise TypeError


def _float_tree(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"~f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _int_tree(value: int) -> Any:
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    return {"~i": str(value)}


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


class _CustomType:
    __slots__ = ("cls", "decode", "encode", "mutable", "tag")

    def __init__(
        self,
        cls: type,
        tag: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        mutable: bool,
    ) -> None:
        self.cls = cls
        self.tag = tag
        self.encode = encode
        self.decode = decode
        self.mutable = mutable


class Codec:
    """Turns supported values into canonical bytes and back.

    Out of the box: bool, int (any size), float (inf and nan too), str, bytes,
    bytearray, complex, None, Decimal, tuple, list, dict (any supported hashable keys),
    set, frozenset, datetime, date, time, UUID, random.Random, nested in any way.

    >>> codec = Codec()
    >>> value = {"when": _dt.date(2026, 1, 2), (1, 2): [1.5, float("inf")]}
    >>> codec.decode(codec.encode(value)) == value
    True
    >>> codec.encode([1, "a"])
    b'[1,"a"]'
    """

    def __init__(self) -> None:
        self._custom_by_type: dict[type, _CustomType] = {}
        self._custom_by_tag: dict[str, _CustomType] = {}

    # -- registration -------------------------------------------------------------

    def register(
        self,
        cls: type,
        tag: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        *,
        mutable: bool = False,
    ) -> None:
        """Teach the codec a new type.

        ``encode(obj)`` returns any value the codec can already store (it is encoded
        recursively); ``decode(data)`` rebuilds the object from it. ``tag`` names the
        type in stored bytes, so it must never change once data is written.
        ``mutable=True`` puts the type under the ``with`` guard and stores changes.

        >>> from fractions import Fraction
        >>> codec = Codec()
        >>> codec.register(Fraction, "fraction", lambda f: (f.numerator, f.denominator),
        ...                lambda d: Fraction(*d))
        >>> codec.decode(codec.encode([Fraction(1, 3)]))
        [Fraction(1, 3)]
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() needs a class, got {cls!r}")
        if not isinstance(tag, str) or not tag:
            raise ValueError("register() needs a non-empty str tag")
        if cls in self._custom_by_type or cls in _BUILTIN_TYPES:
            raise ValueError(f"{cls.__qualname__} is already registered")
        if tag in self._custom_by_tag:
            raise ValueError(f"tag {tag!r} is already registered")
        if not callable(encode) or not callable(decode):
            raise TypeError("register() needs callable encode and decode functions")
        entry = _CustomType(cls, tag, encode, decode, mutable)
        self._custom_by_type[cls] = entry
        self._custom_by_tag[tag] = entry

    # -- encoding -----------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """Canonical bytes for ``value``; raises UnsupportedValueError (a TypeError).

        Complexity: O(n) in the size of the value.
        """
        # orjson's result keeps its whole output buffer (about 4 KiB) alive; the
        # stored bytes are copied to their exact size, or every cached fact costs 4 KiB.
        kind = type(value)
        if kind is int and _INT64_MIN <= value <= _UINT64_MAX:
            return b"%d" % value  # what orjson writes, at its exact size
        if kind is str:
            try:
                return bytes(memoryview(orjson.dumps(value)))
            except TypeError:
                raise UnsupportedValueError(
                    "str with lone surrogates cannot be stored (not valid UTF-8)"
                ) from None
        if kind in _PLAIN_CONTAINERS and _only_json_types_safely(value):
            try:
                encoded = orjson.dumps(value, default=_refuse, option=_ORJSON_OPTS)
            except TypeError:
                pass
            else:
                # orjson writes tuples, UUIDs and enums as plain JSON and inf/nan as
                # null: only an exact round trip proves the plain form is faithful.
                if orjson.loads(encoded) == value:
                    return bytes(memoryview(encoded))
        elif (kind is float and math.isfinite(value)) or kind is bool or value is None:
            return bytes(memoryview(orjson.dumps(value)))
        try:
            tree = self._tree(value, ())
            return b"~" + _dumps_tree(tree)
        except _Unsupported as exc:
            where = "".join(f"[{part}]" for part in exc.path)
            inside = f" at {where}" if where else ""
            raise UnsupportedValueError(
                f"cannot store a value of type {exc.kind.__qualname__}{inside}"
            ) from None
        except RecursionError:
            raise UnsupportedValueError(
                "cannot store a value that contains itself (or is nested too deeply)"
            ) from None
        except (TypeError, ValueError) as exc:  # orjson: lone surrogates in str
            raise UnsupportedValueError(f"cannot store value: {exc}") from None

    def _tree(self, value: Any, path: tuple[str, ...]) -> Any:
        kind = type(value)
        if kind in _PLAIN_SCALARS:
            return value
        if kind is int:
            return _int_tree(value)
        if kind is float:
            return _float_tree(value)
        if kind is list:
            return [self._tree(item, (*path, str(i))) for i, item in enumerate(value)]
        if kind is dict:
            return self._dict_tree(value, path)
        if kind is tuple:
            return {"~t": [self._tree(item, (*path, str(i))) for i, item in enumerate(value)]}
        if kind is set or kind is frozenset:
            items = [self._tree(item, (*path, "item")) for item in value]
            items.sort(key=_canonical_bytes)
            return {"~s" if kind is set else "~fs": items}
        simple = _SIMPLE_TREES.get(kind)
        if simple is not None:
            return simple(value)
        if kind is complex:
            return {"~c": [_float_tree(value.real), _float_tree(value.imag)]}
        if kind is random.Random:
            version, internal, gauss = value.getstate()
            return {"~r": [version, list(internal), gauss]}
        custom = self._custom_by_type.get(kind)
        if custom is not None:
            return {"~x": [custom.tag, self._tree(custom.encode(value), (*path, custom.tag))]}
        raise _Unsupported(kind, path)

    def _dict_tree(self, value: dict[Any, Any], path: tuple[str, ...]) -> Any:
        if all(type(key) is str and key[:1] != "~" for key in value):
            return {key: self._tree(item, (*path, repr(key))) for key, item in value.items()}
        pairs = [
            [self._tree(key, (*path, "key")), self._tree(item, (*path, repr(key)))]
            for key, item in value.items()
        ]
        pairs.sort(key=lambda pair: _canonical_bytes(pair[0]))
        return {"~d": pairs}

    # -- decoding -----------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        """Rebuild the value from full-value bytes (not a delta). O(n)."""
        try:
            if data[0] == _TAGGED:
                return self._untree(_loads_tree(data[1:]))
            if data[0] == _DELTA:
                raise DecodeError("a delta cannot be decoded without its base value")
            return orjson.loads(data)
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"cannot decode stored bytes {bytes(data[:40])!r}: {exc}") from None

    def _untree(self, node: Any) -> Any:
        kind = type(node)
        if kind is list:
            return [self._untree(item) for item in node]
        if kind is not dict:
            return node
        if len(node) == 1:
            ((key, payload),) = node.items()
            if key[:1] == "~":
                return self._untag(key, payload)
        return {key: self._untree(item) for key, item in node.items()}

    def _untag(self, tag: str, payload: Any) -> Any:
        if tag == "~t":
            return tuple(self._untree(item) for item in payload)
        if tag == "~d":
            return {_hashable(self._untree(k)): self._untree(v) for k, v in payload}
        if tag == "~s":
            return {_hashable(self._untree(item)) for item in payload}
        if tag == "~fs":
            return frozenset(_hashable(self._untree(item)) for item in payload)
        if tag == "~x":
            custom_tag, inner = payload
            custom = self._custom_by_tag.get(custom_tag)
            if custom is None:
                raise DecodeError(f"no type is registered for the custom tag {custom_tag!r}")
            return custom.decode(self._untree(inner))
        if tag == "~c":
            return complex(self._untree(payload[0]), self._untree(payload[1]))
        if tag == "~r":
            version, internal, gauss = payload
            rng = random.Random(0)
            rng.setstate((version, tuple(internal), gauss))
            return rng
        simple = _SIMPLE_UNTREES.get(tag)
        if simple is None:
            raise DecodeError(f"unknown type tag {tag!r} in stored bytes")
        return simple(payload)

    # -- properties of values -----------------------------------------------------

    def is_mutable(self, value: Any) -> bool:
        """True if in-place changes to ``value`` could go unnoticed without ``with``."""
        kind = type(value)
        if kind in _BUILTIN_MUTABLE:
            return True
        if kind is tuple or kind is frozenset:
            try:
                hash(value)
            except TypeError:
                return True
            return False
        custom = self._custom_by_type.get(kind)
        return custom is not None and custom.mutable

    def copy(self, value: Any) -> Any:
        """A private deep copy, made through the codec (faster than copy.deepcopy)."""
        return self.decode(self.encode(value))

    # -- deltas -------------------------------------------------------------------

    def make_delta(self, base_seq: int, old: bytes, new_value: Any, new: bytes) -> bytes | None:
        """Bytes that rebuild ``new_value`` from the value encoded as ``old``, or None.

        Appending to a list costs the appended items, whatever the list's length: the
        canonical encoding of a list is its items' encodings joined, so the old bytes
        are a prefix of the new ones. Changed dicts and sets store the changed keys
        and items. A delta is preferred even when it is slightly larger than the full
        value: concurrent deltas to one container merge, full values overwrite.
        """
        kind = type(new_value)
        header = b"\x01[" + str(base_seq).encode() + b","
        if kind is list:
            delta = _list_extend_delta(header, old, new) if old[:1] == new[:1] else None
            if delta is None:
                delta = self._list_extend_by_items(header, old, new_value)
        elif kind is dict or kind is set:
            delta = self._mapping_delta(header, old, new_value, new)
        else:
            return None
        if delta is None or len(delta) > len(new) + _DELTA_ALLOWANCE:
            return None
        return delta

    def _list_extend_by_items(
        self, header: bytes, old: bytes, new_value: list[Any]
    ) -> bytes | None:
        # The bytes differ in kind (a plain list that gained a tuple is now tagged):
        # compare item by item instead.
        try:
            old_value = self.decode(old)
        except DecodeError:
            return None
        count = len(old_value) if type(old_value) is list else -1
        if not 0 <= count < len(new_value) or self.encode(new_value[:count]) != old:
            return None
        return header + b'"l",' + _dumps_tree(self._tree(new_value[count:], ())) + b"]"

    def _mapping_delta(self, header: bytes, old: bytes, new_value: Any, new: bytes) -> bytes | None:
        old_value = self.decode(old)
        if type(old_value) is not type(new_value):
            return None
        if type(new_value) is dict:
            changed = {k: v for k, v in new_value.items() if k not in old_value}
            for key, item in new_value.items():
                if key in old_value and self.encode(old_value[key]) != self.encode(item):
                    changed[key] = item
            removed = [key for key in old_value if key not in new_value]
            payload: Any = ["D", self._tree(changed, ()), self._tree(removed, ())]
        else:
            added = new_value - old_value
            gone = old_value - new_value
            payload = ["S", self._tree(added, ()), self._tree(gone, ())]
        delta = header + _dumps_tree(payload)[1:]
        # Deltas are checked, never trusted: equality of decoded keys (1 == True, a
        # nan key) must not make us store something that rebuilds differently.
        try:
            rebuilt = self.apply_delta(self.decode(old), delta)
            return delta if self.encode(rebuilt) == new else None
        except (DecodeError, UnsupportedValueError):
            return None

    @staticmethod
    def delta_type(delta: bytes) -> type:
        """The container type a delta applies to (list, dict or set)."""
        op = delta[delta.index(b",", 2) + 2 : delta.index(b",", 2) + 3]
        return _DELTA_TYPES[op]

    @staticmethod
    def delta_base(delta: bytes) -> int:
        """The seq of the fact a delta applies to."""
        end = delta.index(b",", 2)
        return int(delta[2:end])

    @staticmethod
    def is_delta(data: bytes | None) -> bool:
        return data is not None and data[:1] == b"\x01"

    def apply_delta(self, base: Any, delta: bytes) -> Any:
        """Apply ``delta`` to ``base`` in place where possible; returns the new value."""
        try:
            _, op, *args = _loads_tree(delta[1:])
            if op == "L":
                base.extend(args[0])
            elif op == "l":
                base.extend(self._untree(args[0]))
            elif op == "D":
                base.update(self._untree(args[0]))
                for key in self._untree(args[1]):
                    base.pop(key, None)  # a concurrent writer may have removed it
            elif op == "S":
                base |= self._untree(args[0])
                base -= self._untree(args[1])
            else:
                raise DecodeError(f"unknown delta operation {op!r}")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise DecodeError(f"cannot apply stored delta: {exc}") from None
        return base


#: how many bytes a delta may exceed the full value by and still be preferred
_DELTA_ALLOWANCE = 64
_DELTA_TYPES: dict[bytes, type] = {b"L": list, b"l": list, b"D": dict, b"S": set}
_JSON_SCALARS = frozenset({int, str, float, bool, type(None)})
_JSON_TYPES = _JSON_SCALARS | {list, dict}


def _only_json_types(value: list[Any] | dict[Any, Any]) -> bool:
    """True if ``value`` holds only exact JSON types (str keys), all the way down.

    orjson writes IntEnum and StrEnum members as plain numbers and strings, which
    compare equal after a round trip; checking exact types (``map(type, ...)`` runs
    in C) keeps them off the plain path, where they would lose their type.
    """
    if type(value) is dict:
        if not set(map(type, value)) <= _STR_ONLY:
            return False
        items: Any = value.values()
    else:
        items = value
    kinds = set(map(type, items))
    if kinds <= _JSON_SCALARS:
        return True
    if not kinds <= _JSON_TYPES:
        return False
    return all(_only_json_types(item) for item in items if type(item) in _CONTAINERS)


_STR_ONLY = frozenset({str})
_CONTAINERS = frozenset({list, dict})


def _list_extend_delta(header: bytes, old: bytes, new: bytes) -> bytes | None:
    tagged = old[0] == _TAGGED
    start = 1 if tagged else 0
    if old[start : start + 1] != b"[" or new[start : start + 1] != b"[":
        return None
    if len(old) == start + 2:  # an empty list
        items = new[start + 1 : -1]
    elif new.startswith(old[:-1]) and new[len(old) - 1 : len(old)] == b",":
        items = new[len(old) : -1]
    else:
        return None
    if not items:
        return None
    return header + (b'"l",[' if tagged else b'"L",[') + items + b"]]"


def _canonical_bytes(tree: Any) -> bytes:
    return _dumps_tree(tree)


def _loads_tree(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "recursion" not in str(exc).lower():
            raise
    return _json.loads(data)


def _dumps_tree(tree: Any) -> bytes:
    """JSON for a tagged tree. orjson refuses nesting deeper than 254 levels; the
    standard library's encoder takes those (a value always takes the same path, so
    its bytes stay canonical)."""
    try:
        return orjson.dumps(tree, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        if "Recursion limit" not in str(exc):
            raise
    return _json.dumps(
        tree, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def _only_json_types_safely(value: list[Any] | dict[Any, Any]) -> bool:
    try:
        return _only_json_types(value)
    except RecursionError:  # a value that contains itself: the slow path names it
        return False


def _hashable(value: Any) -> Any:
    # A list key can only come from a tuple that held a list: never produced by us.
    return value


def _date_tree(value: _dt.date) -> Any:
    return {"~da": value.isoformat()}


def _zone_tree(zone: _dt.tzinfo | None) -> Any:
    """A tzinfo as data: None, a fixed offset (exact, in microseconds) or a zone key."""
    if zone is None:
        return None
    key = getattr(zone, "key", None)
    if type(zone).__name__ == "ZoneInfo" and isinstance(key, str):
        return ["zone", key]
    if type(zone) is _dt.timezone:
        offset = zone.utcoffset(None)
        name = zone.tzname(None)
        default = _dt.timezone(offset).tzname(None)
        return ["fixed", offset // _dt.timedelta(microseconds=1), None if name == default else name]
    raise _Unsupported(type(zone), ("tzinfo",))


def _zone_from_tree(tree: Any) -> _dt.tzinfo | None:
    if tree is None:
        return None
    if tree[0] == "zone":
        import zoneinfo

        return zoneinfo.ZoneInfo(tree[1])
    offset = _dt.timedelta(microseconds=tree[1])
    return _dt.timezone(offset) if tree[2] is None else _dt.timezone(offset, tree[2])


def _datetime_tree(value: _dt.datetime) -> Any:
    naive = value.replace(tzinfo=None, fold=0).isoformat()
    return {"~dt": [naive, value.fold, _zone_tree(value.tzinfo)]}


def _datetime_from_tree(payload: Any) -> _dt.datetime:
    naive, fold, zone = payload
    return _dt.datetime.fromisoformat(naive).replace(fold=fold, tzinfo=_zone_from_tree(zone))


def _time_tree(value: _dt.time) -> Any:
    naive = value.replace(tzinfo=None, fold=0).isoformat()
    return {"~tm": [naive, value.fold, _zone_tree(value.tzinfo)]}


def _time_from_tree(payload: Any) -> _dt.time:
    naive, fold, zone = payload
    return _dt.time.fromisoformat(naive).replace(fold=fold, tzinfo=_zone_from_tree(zone))


_SIMPLE_TREES: dict[type, Callable[[Any], Any]] = {
    bytes: lambda v: {"~b": _b64(v)},
    bytearray: lambda v: {"~ba": _b64(v)},
    decimal.Decimal: lambda v: {"~D": str(v)},
    _dt.datetime: _datetime_tree,
    _dt.date: _date_tree,
    _dt.time: _time_tree,
    uuid.UUID: lambda v: {"~u": v.hex},
}

_SIMPLE_UNTREES: dict[str, Callable[[Any], Any]] = {
    "~i": int,
    "~f": float,
    "~b": lambda p: base64.b64decode(p),
    "~ba": lambda p: bytearray(base64.b64decode(p)),
    "~D": decimal.Decimal,
    "~dt": _datetime_from_tree,
    "~da": _dt.date.fromisoformat,
    "~tm": _time_from_tree,
    "~u": lambda p: uuid.UUID(hex=p),
}

_PLAIN_CONTAINERS = (list, dict)
_BUILTIN_TYPES: frozenset[type] = frozenset(
    {int, float, str, bool, type(None), list, dict, tuple, set, frozenset, complex}
    | set(_SIMPLE_TREES)
    | {random.Random}
)

default_codec = Codec()
