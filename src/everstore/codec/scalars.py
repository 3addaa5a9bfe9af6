"""Trees for the codec's scalar types: ints of any size, floats, bytes, Decimal,
dates and times, UUID and ``random.Random``.

A *tree* is what :mod:`everstore.codec` writes as JSON: a scalar either is its own
tree (a str, a 64-bit int, a finite float, a bool, None) or becomes a one-key object
whose key is its type tag (``{"~u": "<hex>"}``). Each function here turns one type
into its tree or back; nothing here nests, so none of it recurses.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import math
import random
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "INT64_MIN",
    "SCALAR_TREES",
    "SCALAR_UNTREES",
    "UINT64_MAX",
    "Unsupported",
    "float_tree",
    "int_tree",
]

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1
# Ints up to this many bits are written in decimal ({"~i": "<digits>"}, as 0.1.0
# did): at most 617 digits, below 640, the smallest int/str conversion limit CPython
# lets a process set (sys.set_int_max_str_digits), so any process converts them.
# Larger ints are written in hex ({"~ix": ...}), which that limit never applies to.
_DECIMAL_BITS = 2048
# int() reads decimal strings up to this many digits in any process (see above)
_SAFE_DIGITS = 600


class Unsupported(Exception):
    """Raised inside the encoder; the codec turns it into UnsupportedValueError."""

    def __init__(self, kind: type, path: tuple[Any, ...]) -> None:
        super().__init__(kind, path)
        self.kind = kind
        self.path = path


def int_tree(value: int) -> Any:
    """The tree of an int: itself in the 64-bit range, else a decimal or hex string."""
    if INT64_MIN <= value <= UINT64_MAX:
        return value
    if value.bit_length() <= _DECIMAL_BITS:
        return {"~i": str(value)}
    return {"~ix": format(value, "x")}


def _int_from_decimal(text: str) -> int:
    """An int from decimal digits, of any length whatever the process's conversion
    limit: 0.1.0 wrote big ints in decimal, some with a raised limit."""
    if len(text) <= _SAFE_DIGITS:
        return int(text)
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"not a decimal integer: {text[:40]!r}…")
    magnitude = _join_digits(digits)
    return -magnitude if text[:1] == "-" else magnitude


def _join_digits(digits: str) -> int:
    # Halving keeps every int() call under the limit; the recursion is only
    # log2(len(digits) / _SAFE_DIGITS) deep.
    if len(digits) <= _SAFE_DIGITS:
        return int(digits)
    low = len(digits) // 2
    scale: int = 10**low
    return _join_digits(digits[:-low]) * scale + _join_digits(digits[-low:])


def _int_from_hex(text: object) -> int:
    if not isinstance(text, str):
        raise TypeError(f"a hex int must be stored as a string, got {text!r}")
    return int(text, 16)


def float_tree(value: float) -> Any:
    """The tree of a float: itself when finite, else ``{"~f": "nan" | "inf" | "-inf"}``."""
    if math.isfinite(value):
        return value
    return {"~f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _float_from_tree(tree: Any) -> float:
    """The float a :func:`float_tree` stands for."""
    if type(tree) is dict:
        return float(tree["~f"])
    return float(tree)


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def _complex_tree(value: complex) -> Any:
    return {"~c": [float_tree(value.real), float_tree(value.imag)]}


def _complex_from_tree(payload: Any) -> complex:
    real, imag = payload
    return complex(_float_from_tree(real), _float_from_tree(imag))


def _random_tree(value: random.Random) -> Any:
    version, internal, gauss = value.getstate()
    return {"~r": [version, list(internal), gauss]}


def _random_from_tree(payload: Any) -> random.Random:
    version, internal, gauss = payload
    rng = random.Random(0)
    rng.setstate((version, tuple(internal), gauss))
    return rng


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
    raise Unsupported(type(zone), ("tzinfo",))


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


#: type -> its tree, for the scalar types that are never their own tree
SCALAR_TREES: dict[type, Callable[[Any], Any]] = {
    bytes: lambda v: {"~b": _b64(v)},
    bytearray: lambda v: {"~ba": _b64(v)},
    complex: _complex_tree,
    decimal.Decimal: lambda v: {"~D": str(v)},
    _dt.datetime: _datetime_tree,
    _dt.date: lambda v: {"~da": v.isoformat()},
    _dt.time: _time_tree,
    uuid.UUID: lambda v: {"~u": v.hex},
    random.Random: _random_tree,
}

#: tag -> the scalar its payload stands for
SCALAR_UNTREES: dict[str, Callable[[Any], Any]] = {
    "~i": _int_from_decimal,
    "~ix": _int_from_hex,
    "~f": float,
    "~c": _complex_from_tree,
    "~b": base64.b64decode,
    "~ba": lambda p: bytearray(base64.b64decode(p)),
    "~D": decimal.Decimal,
    "~dt": _datetime_from_tree,
    "~da": _dt.date.fromisoformat,
    "~tm": _time_from_tree,
    "~u": lambda p: uuid.UUID(hex=p),
    "~r": _random_from_tree,
}
