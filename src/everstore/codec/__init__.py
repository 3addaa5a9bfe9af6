"""Typed Python values to bytes and back, exactly.

Four shapes of stored bytes, told apart by their first byte:

* plain JSON (``[``, ``{``, ``"``, a digit, ``-``, ``t``, ``f``, ``n``): the value is
  made only of str, int (64-bit), finite float, bool, None, list and dict with str keys,
  and ``orjson.loads`` alone rebuilds it;
* ``~`` + JSON: a *tagged tree*, where any other type is a one-key object whose key
  starts with ``~`` (``{"~t": [1, 2]}`` is the tuple ``(1, 2)``); dicts whose keys are
  not all plain strings become ``{"~d": [[key, value], ...]}``; the scalar tags are in
  :mod:`everstore.codec.scalars`;
* ``\\x01`` + JSON: a *delta* ``[base_seq, op, payload]`` that rebuilds a mutable value
  from the value the same field had at ``base_seq`` (see :meth:`Codec.encode_change`);
* ``\\x02`` + 32 bytes: an *erased* value's marker, which decodes to
  :class:`~everstore.log.Erased` (docs/integrity.md, "Erasure"); the codec never
  encodes one.

Encoding is canonical (dict keys sorted, set items sorted by their encoding), so equal
values give equal bytes; that is how a changed mutable value is detected.

Containers nest at most :attr:`Codec.MAX_DEPTH` levels: then every stored tree stays
within the 254 levels orjson writes (a level costs at most 3 JSON levels, ``~d``), and
decoding never recurses, so whatever was written reads back in any process and thread.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from typing import Any, Final

import orjson

from ..errors import DecodeError, UnsupportedValueError
from ..integrity.chain import ERASED_TAG
from ..log import Erased
from .deepjson import loads_deep
from .scalars import (
    INT64_MIN,
    SCALAR_TREES,
    SCALAR_UNTREES,
    UINT64_MAX,
    Unsupported,
    float_tree,
    int_tree,
)
from .tracked import PLAIN_TYPES, TrackedDict, TrackedList

__all__ = ["Codec", "default_codec"]

# Subclasses are not passed through: _only_json_types lets none reach orjson but the
# tracked list and dict (see .tracked), which orjson then writes as the plain types.
_ORJSON_OPTS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
_TAGGED = 0x7E  # "~"
_DELTA = 0x01
#: how many containers may nest (see the module docstring for why 80)
_MAX_DEPTH = 80
_PLAIN_SCALARS = (str, bool, type(None))
_NESTING: frozenset[type] = frozenset({list, dict, tuple, set, frozenset})
_BUILTIN_MUTABLE: frozenset[type] = frozenset(
    {list, dict, set, bytearray, random.Random, *PLAIN_TYPES}
)


class _TooDeep(Exception):
    """Raised inside the encoder at a container nested deeper than _MAX_DEPTH."""

    def __init__(self, path: tuple[Any, ...]) -> None:
        super().__init__(path)
        self.path = path


class _NoValue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Codec.NO_VALUE"


def _refuse(value: Any) -> Any:
    # orjson's ``default``: anything orjson does not know sends us to the slow path.
    raise TypeError


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


#: one step of the iterative decoder: (build the value from its decoded children,
#: the children's trees still to decode, the children decoded so far)
_Frame = tuple[Callable[[list[Any]], Any], Iterator[Any], list[Any]]
_OPENED = object()  # _open's value when it pushed a frame instead of returning one


class Codec:
    """Turns supported values into canonical bytes and back.

    Out of the box: bool, int (any size), float (inf and nan too), str, bytes,
    bytearray, complex, None, Decimal, tuple, list, dict (any supported hashable keys),
    set, frozenset, datetime, date, time, UUID, random.Random, nested up to
    :attr:`MAX_DEPTH` levels.

    >>> from datetime import date
    >>> codec = Codec()
    >>> value = {"when": date(2026, 1, 2), (1, 2): [1.5, float("inf")]}
    >>> codec.decode(codec.encode(value)) == value
    True
    >>> codec.encode([1, "a"])
    b'[1,"a"]'
    """

    #: The deepest nesting stored: a container (list, tuple, dict, set, frozenset or
    #: registered type) directly in the value is level 1, one inside it level 2, ...
    #: Scalars do not count. Deeper values are refused by :meth:`encode`.
    MAX_DEPTH: Final = _MAX_DEPTH

    #: ``previous`` for :meth:`decode_fact` when there is no previous value.
    NO_VALUE: Final[Any] = _NoValue()

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
        recursively, one level deeper than ``obj``); ``decode(data)`` rebuilds the
        object from it. ``tag`` names the type in stored bytes, so it must never
        change once data is written.

        :param cls: the exact class (subclasses are not included).
        :param tag: the type's name in stored bytes.
        :param encode: ``obj`` -> a storable value.
        :param decode: that value -> ``obj``.
        :param mutable: True puts the type under the ``with`` guard and stores changes.
        :raises TypeError: ``cls`` is not a class, or the functions are not callable.
        :raises ValueError: ``cls`` or ``tag`` is taken, or ``tag`` is empty.

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
        """Canonical bytes for ``value``.

        :param value: any supported value, nested at most :attr:`MAX_DEPTH` levels.
        :return: bytes that :meth:`decode` turns back into an equal value of the
            same types; equal values give equal bytes.
        :raises UnsupportedValueError: (a TypeError) a type the codec does not know,
            a str with lone surrogates, or nesting deeper than :attr:`MAX_DEPTH`;
            the message says what and where.

        Complexity: O(n) in the size of the value.

        >>> Codec().encode([[[]]])
        b'[[[]]]'
        >>> deep = []
        >>> for _ in range(Codec.MAX_DEPTH):
        ...     deep = [deep]
        >>> Codec().encode(deep)
        Traceback (most recent call last):
        ...
        everstore.errors.UnsupportedValueError: cannot store a value nested more than 80 levels ...
        """
        # orjson's result keeps its whole output buffer (about 4 KiB) alive; the
        # stored bytes are copied to their exact size, or every cached fact costs 4 KiB.
        kind = type(value)
        if kind is int and INT64_MIN <= value <= UINT64_MAX:
            return b"%d" % value  # what orjson writes, at its exact size
        if kind is str:
            try:
                return bytes(memoryview(orjson.dumps(value)))
            except TypeError:
                raise UnsupportedValueError(
                    "str with lone surrogates cannot be stored (not valid UTF-8)"
                ) from None
        if kind in _PLAIN_CONTAINERS and _only_json_types(value, _MAX_DEPTH - 1):
            try:
                encoded = orjson.dumps(value, default=_refuse, option=_ORJSON_OPTS)
            except TypeError:
                pass
            else:
                # _only_json_types kept tuples, UUIDs and enums (which orjson writes
                # as plain JSON) off this path; what is left is inf and nan, which it
                # writes as null: where a null is written, only an exact round trip
                # proves the plain form faithful.
                if b"null" not in encoded or orjson.loads(encoded) == value:
                    return bytes(memoryview(encoded))
        elif (kind is float and math.isfinite(value)) or kind is bool or value is None:
            return bytes(memoryview(orjson.dumps(value)))
        return b"~" + self._dumps(value)

    def check(self, value: Any) -> None:
        """Raise what :meth:`encode` would raise for ``value``, at less cost: a
        container of plain JSON values is only type-checked and serialized once, its
        bytes not kept. For a layer that takes a value now and encodes it later.

        >>> Codec().check({"a": [1, "x"]})
        >>> Codec().check({"a": object()})
        Traceback (most recent call last):
        ...
        everstore.errors.UnsupportedValueError: cannot store a value of type object at ['a']

        :raises UnsupportedValueError: as :meth:`encode`
        """
        if type(value) in _PLAIN_CONTAINERS and _only_json_types(value, _MAX_DEPTH - 1):
            try:
                orjson.dumps(value)
            except TypeError:  # an int beyond 64 bits (stored tagged) or lone surrogates
                pass
            else:
                return
        self.encode(value)

    def _dumps(self, value: Any) -> bytes:
        """The tagged tree of ``value`` as JSON, with the encoder's errors made public."""
        return self._dumps_built(lambda: self._tree(value, ()))

    def _dumps_built(self, build: Callable[[], Any]) -> bytes:
        """``build()``'s tree as JSON, with the encoder's errors made public."""
        try:
            return orjson.dumps(build(), option=orjson.OPT_SORT_KEYS)
        except Unsupported as exc:
            raise UnsupportedValueError(
                f"cannot store a value of type {exc.kind.__qualname__}{_at(exc.path)}"
            ) from None
        except _TooDeep as exc:
            raise UnsupportedValueError(
                f"cannot store a value nested more than {_MAX_DEPTH} levels deep (containers "
                f"in containers), or one that contains itself: too deep{_at(exc.path)}"
            ) from None
        except RecursionError:  # the caller's stack was nearly full, or a custom encoder
            raise UnsupportedValueError(
                "cannot store value: Python's recursion limit was reached while encoding it"
            ) from None
        except (TypeError, ValueError) as exc:  # orjson: lone surrogates in str
            raise UnsupportedValueError(f"cannot store value: {exc}") from None

    def _tree(self, value: Any, path: tuple[Any, ...]) -> Any:
        # ``path`` holds where ``value`` is in each container above it (so its length
        # is the depth); it is only formatted for an error message (by _at).
        kind = type(value)
        if kind in _PLAIN_SCALARS:
            return value
        if kind is int:
            return int_tree(value)
        if kind is float:
            return float_tree(value)
        # A tracked container (see .tracked) is stored as the builtin type it stands for.
        kind = PLAIN_TYPES.get(kind, kind)
        scalar = SCALAR_TREES.get(kind)
        if scalar is not None:
            try:
                return scalar(value)
            except Unsupported as exc:  # a part of it (a datetime's tzinfo)
                raise Unsupported(exc.kind, (*path, *exc.path)) from None
        if len(path) >= _MAX_DEPTH and (kind in _NESTING or kind in self._custom_by_type):
            raise _TooDeep(path)
        if kind is list:
            return [self._tree(item, (*path, i)) for i, item in enumerate(value)]
        if kind is dict:
            return self._dict_tree(value, path)
        if kind is tuple:
            return {"~t": [self._tree(item, (*path, i)) for i, item in enumerate(value)]}
        if kind is set or kind is frozenset:
            items = [self._tree(item, (*path, _ITEM)) for item in value]
            items.sort(key=_dumps_tree)
            return {"~s" if kind is set else "~fs": items}
        custom = self._custom_by_type.get(kind)
        if custom is not None:
            return {
                "~x": [custom.tag, self._tree(custom.encode(value), (*path, _Place(custom.tag)))]
            }
        raise Unsupported(kind, path)

    def _dict_tree(self, value: dict[Any, Any], path: tuple[Any, ...]) -> Any:
        if all(type(key) is str and key[:1] != "~" for key in value):
            return {key: self._tree(item, (*path, key)) for key, item in value.items()}
        pairs = [
            [self._tree(key, (*path, _KEY)), self._tree(item, (*path, key))]
            for key, item in value.items()
        ]
        pairs.sort(key=lambda pair: _dumps_tree(pair[0]))
        return {"~d": pairs}

    # -- decoding -----------------------------------------------------------------

    def decode(self, data: bytes | bytearray) -> Any:
        """Rebuild the value from a full encoding (not a delta).

        :param data: bytes made by :meth:`encode` (by this version or 0.1.0).
        :return: a new value, equal to and of the same types as the one encoded.
        :raises DecodeError: damaged bytes, a delta, or an unregistered custom tag.

        Complexity: O(n); it never recurses, so any stored value decodes whatever
        the recursion limit and however deeply 0.1.0 nested it.
        """
        try:
            if data[0] == _TAGGED:
                return self._untree(_loads(data[1:]))
            if data[0] == _DELTA:
                raise DecodeError("a delta cannot be decoded without its base value")
            if data[0] == ERASED_TAG and len(data) == 33:
                return Erased(data[1:].hex())
            return orjson.loads(data)
        except DecodeError:
            raise
        except _DAMAGE as exc:
            raise DecodeError(f"cannot decode stored bytes {bytes(data[:40])!r}: {exc}") from None

    def decode_many(self, datas: list[bytes | bytearray]) -> list[Any]:
        """:meth:`decode` of each of ``datas``, in order: what reading many stored
        values at once (a structure's items, a history's values) calls.

        :raises DecodeError: as :meth:`decode`, for the first damaged one

        Complexity: O(total size); plain JSON encodings are parsed in one C loop.

        >>> codec = Codec()
        >>> codec.decode_many([codec.encode({"a": 1}), codec.encode((1, 2))])
        [{'a': 1}, (1, 2)]
        """
        tagged = (_TAGGED, _DELTA, ERASED_TAG)
        if any(not data or data[0] in tagged for data in datas):
            return [self.decode(data) for data in datas]
        try:
            return list(map(orjson.loads, datas))
        except orjson.JSONDecodeError:
            return [self.decode(data) for data in datas]  # raises, naming the damaged one

    def _untree(self, tree: Any) -> Any:
        """The value a tagged tree stands for, walked with an explicit stack."""
        frames: list[_Frame] = []
        value = self._open(tree, frames)
        while frames:
            build, pending, done = frames[-1]
            if value is not _OPENED:
                done.append(value)
            for child in pending:
                value = self._open(child, frames)
                if value is _OPENED:
                    break
                done.append(value)
            else:
                frames.pop()
                value = build(done)
        return value

    def _open(self, tree: Any, frames: list[_Frame]) -> Any:
        """The value of ``tree`` if it holds no containers; else a frame that builds
        it is pushed on ``frames`` and _OPENED returned."""
        kind = type(tree)
        if kind is list:
            if _is_flat(tree):
                return tree
            frames.append((_same_list, iter(tree), []))
            return _OPENED
        if kind is not dict:
            return tree
        if len(tree) == 1:
            ((key, payload),) = tree.items()
            if key[:1] == "~":
                return self._open_tagged(key, payload, frames)
        if _is_flat(tree.values()):
            return tree
        keys = list(tree)
        frames.append((lambda items: dict(zip(keys, items, strict=True)), iter(tree.values()), []))
        return _OPENED

    def _open_tagged(self, tag: str, payload: Any, frames: list[_Frame]) -> Any:
        shape = _CONTAINER_TAGS.get(tag)
        if shape is not None:
            if type(payload) is not list:
                raise DecodeError(f"{tag} holds {type(payload).__name__}, not a list")
            if _is_flat(payload):
                return shape(payload)
            frames.append((shape, iter(payload), []))
            return _OPENED
        if tag == "~d":
            if not all(type(pair) is list and len(pair) == 2 for pair in payload):
                raise DecodeError("~d holds something other than [key, value] pairs")
            frames.append((_dict_from_flat, itertools.chain.from_iterable(payload), []))
            return _OPENED
        if tag == "~x":
            custom_tag, inner = payload
            custom = self._custom_by_tag.get(custom_tag)
            if custom is None:
                raise DecodeError(f"no type is registered for the custom tag {custom_tag!r}")
            decode = custom.decode
            frames.append((lambda inners: decode(inners[0]), iter((inner,)), []))
            return _OPENED
        scalar = SCALAR_UNTREES.get(tag)
        if scalar is None:
            raise DecodeError(f"unknown type tag {tag!r} in stored bytes")
        return scalar(payload)

    # -- properties of values -----------------------------------------------------

    def is_mutable(self, value: Any) -> bool:
        """True if in-place changes to ``value`` could go unnoticed without ``with``.

        :param value: any value.
        :return: True for list, dict, set, bytearray, Random, registered mutable
            types, and tuples or frozensets that hold any of them.
        """
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
        """A private deep copy, made through the codec (faster than copy.deepcopy).

        :param value: a value the codec can store.
        :return: an equal value sharing no mutable part with ``value``.
        :raises UnsupportedValueError: as :meth:`encode`.
        """
        return self.decode(self.encode(value))

    # -- changes of mutable values: the Store's interface ---------------------------

    def encode_change(self, base_seq: int, old: bytes, value: Any) -> bytes | None:
        """What to append for a mutable ``value`` that was encoded as ``old`` at seq
        ``base_seq``.

        A delta is preferred when :meth:`make_delta` finds one (appending to a list
        costs the appended items only; changed dicts and sets store what changed).

        :param base_seq: the seq of the fact ``old`` was read from.
        :param old: the full encoding (not a delta) of the value as it was read.
        :param value: the value now.
        :return: None when ``value`` still encodes as ``old``, else a delta or the
            full encoding (tell them apart with :meth:`is_delta`).
        :raises UnsupportedValueError: as :meth:`encode`.

        Complexity: O(n) in the size of ``value``.

        >>> codec = Codec()
        >>> old = codec.encode([1, 2])
        >>> codec.encode_change(7, old, [1, 2]) is None
        True
        >>> codec.encode_change(7, old, [1, 2, 3])
        b'\\x01[7,"L",[3]]'
        >>> codec.encode_change(7, old, (1, 2))
        b'~{"~t":[1,2]}'
        """
        new = self.encode(value)
        if new == old:
            return None
        delta = self.make_delta(base_seq, old, value, new)
        return new if delta is None else delta

    def encode_append(self, base_seq: int, items: list[Any]) -> bytes:
        """A delta that appends ``items`` to the list the field held at ``base_seq``:
        what :meth:`encode_change` stores for such a change, made from the items alone
        by one who knows that only they were appended.

        :param base_seq: the seq of the value the items were appended to.
        :param items: the appended items (at least one).
        :return: the delta.
        :raises UnsupportedValueError: as :meth:`encode`.

        Complexity: O(size of ``items``).

        >>> Codec().encode_append(7, [3])
        b'\\x01[7,"L",[3]]'
        """
        encoded = self.encode(items)
        if encoded[0] == _TAGGED:  # tagged items: their tree, as make_delta writes it
            return b'\x01[%d,"l",%b]' % (base_seq, encoded[1:])
        return b'\x01[%d,"L",%b]' % (base_seq, encoded)

    def encode_dict_change(
        self, base_seq: int, changed: dict[Any, Any], removed: list[Any]
    ) -> bytes:
        """A delta that sets the ``changed`` keys and removes the ``removed`` ones of
        the dict the field held at ``base_seq``.

        :param base_seq: the seq of the dict that was changed.
        :param changed: key -> new value, for the keys set.
        :param removed: the keys deleted.
        :return: the delta.
        :raises UnsupportedValueError: as :meth:`encode`.

        Complexity: O(size of the change).

        >>> Codec().encode_dict_change(7, {"a": 1}, ["b"])
        b'\\x01[7,"D",{"a":1},["b"]]'
        """
        return self._delta(base_seq, "D", changed, removed)

    def encode_set_change(self, base_seq: int, added: set[Any], removed: set[Any]) -> bytes:
        """A delta that adds ``added`` to and takes ``removed`` from the set the field
        held at ``base_seq``.

        :param base_seq: the seq of the set that was changed.
        :param added: the members added.
        :param removed: the members removed.
        :return: the delta.
        :raises UnsupportedValueError: as :meth:`encode`.

        Complexity: O(size of the change).
        """
        return self._delta(base_seq, "S", added, removed)

    def _delta(self, base_seq: int, op: str, plus: Any, minus: Any) -> bytes:
        # Each part at the root, as deep as it is in the value (as _mapping_delta).
        header = b"\x01[" + str(base_seq).encode() + b","
        payload = self._dumps_built(lambda: [op, self._tree(plus, ()), self._tree(minus, ())])
        return header + payload[1:]

    def decode_fact(
        self,
        data: bytes,
        previous: Any,
        value_at: Callable[[int], Any],
        convert: Callable[[Any], Any] | None = None,
    ) -> Any:
        """The value a stored fact stands for.

        A full encoding is decoded. A delta is applied to ``previous`` when that is a
        container of the delta's type (so when two writers change one list, dict or
        set at once, both changes survive, as the log orders them), otherwise to
        ``value_at(base_seq)``.

        :param data: the fact's bytes (a full encoding or a delta).
        :param previous: the field's value before this fact, which may be changed
            in place; :attr:`NO_VALUE` when there is none.
        :param value_at: seq -> a fresh object holding the field's value at that seq.
        :param convert: given to :meth:`apply_delta` when the delta is applied to
            ``previous``.
        :return: the value (``previous`` itself when the delta was applied to it).
        :raises DecodeError: damaged data (and whatever ``value_at`` raises).

        Complexity: O(size of the value) for a full encoding; O(size of the delta)
        when applied to ``previous``.

        >>> codec = Codec()
        >>> delta = codec.encode_change(3, codec.encode(["a"]), ["a", "b"])
        >>> codec.decode_fact(delta, ["a", "x"], value_at=lambda seq: ["a"])
        ['a', 'x', 'b']
        >>> codec.decode_fact(delta, Codec.NO_VALUE, value_at=lambda seq: ["a"])
        ['a', 'b']
        """
        if not self.is_delta(data):
            return self.decode(data)
        kind = type(previous)
        if PLAIN_TYPES.get(kind, kind) is self.delta_type(data):
            return self.apply_delta(previous, data, convert)
        return self.apply_delta(value_at(self.delta_base(data)), data)

    @staticmethod
    def is_plain_container(data: bytes | bytearray | None) -> bool:
        """True if ``data`` encodes a list or a dict as plain JSON: a mutable value,
        known without decoding it.

        >>> Codec.is_plain_container(Codec().encode({"a": 1})), Codec.is_plain_container(b"1")
        (True, False)
        """
        return data is not None and data[:1] in (b"[", b"{")

    @staticmethod
    def is_delta(data: bytes | bytearray | None) -> bool:
        """True if ``data`` is a delta, False for a full encoding or None (a tombstone).

        :param data: a fact's stored bytes, or None.
        :return: whether :meth:`decode_fact` needs a base value to rebuild it.

        >>> codec = Codec()
        >>> codec.is_delta(codec.encode([1])), codec.is_delta(None)
        (False, False)
        >>> codec.is_delta(codec.encode_change(1, codec.encode([1]), [1, 2]))
        True
        """
        return data is not None and data[:1] == b"\x01"

    @staticmethod
    def delta_base(delta: bytes) -> int:
        """The seq of the fact a delta was made from.

        :param delta: a delta (see :meth:`is_delta`).
        :return: its base seq.
        :raises DecodeError: ``delta`` is damaged.
        """
        try:
            return int(delta[2 : delta.index(b",", 2)])
        except ValueError:
            raise DecodeError(f"damaged delta {bytes(delta[:40])!r}") from None

    # -- deltas, the low-level pieces under encode_change and decode_fact -----------

    def make_delta(self, base_seq: int, old: bytes, new_value: Any, new: bytes) -> bytes | None:
        """Low level (use :meth:`encode_change`): a delta that rebuilds ``new_value``
        (encoded as ``new``) from the value encoded as ``old``, or None.

        Appending to a list costs the appended items, whatever the list's length: the
        canonical encoding of a list is its items' encodings joined, so the old bytes
        are a prefix of the new ones. Changed dicts and sets store the changed keys
        and items. A delta is preferred even when it is slightly larger than the full
        value: concurrent deltas to one container merge, full values overwrite.
        """
        kind = type(new_value)
        kind = PLAIN_TYPES.get(kind, kind)
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
        return header + b'"l",' + self._dumps(new_value[count:]) + b"]"

    def _mapping_delta(self, header: bytes, old: bytes, new_value: Any, new: bytes) -> bytes | None:
        old_value = self.decode(old)
        kind = type(new_value)
        kind = PLAIN_TYPES.get(kind, kind)
        if type(old_value) is not kind:
            return None
        if kind is dict:
            changed = {k: v for k, v in new_value.items() if k not in old_value}
            for key, item in new_value.items():
                if key in old_value and self.encode(old_value[key]) != self.encode(item):
                    changed[key] = item
            removed = [key for key in old_value if key not in new_value]
            parts: tuple[str, Any, Any] = ("D", changed, removed)
        else:
            parts = ("S", new_value - old_value, old_value - new_value)
        op, plus, minus = parts
        try:  # each part at the root, as deep as it is in the value (already encoded)
            payload = [op, self._tree(plus, ()), self._tree(minus, ())]
        except (Unsupported, _TooDeep):
            return None
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
        """Low level (used by :meth:`decode_fact`): the container type a delta
        applies to (list, dict or set).

        :raises DecodeError: ``delta`` is damaged.
        """
        try:
            start = delta.index(b",", 2) + 2
            return _DELTA_TYPES[bytes(delta[start : start + 1])]
        except (ValueError, KeyError):
            raise DecodeError(f"damaged delta {bytes(delta[:40])!r}") from None

    def apply_delta(
        self, base: Any, delta: bytes, convert: Callable[[Any], Any] | None = None
    ) -> Any:
        """Low level (use :meth:`decode_fact`): apply ``delta`` to ``base``, in place
        where possible; returns the new value.

        ``base`` is changed through the builtin type's own methods (a tracked
        container records nothing). ``convert``, when given, is applied to what the
        delta puts in: the list of appended items, or the dict of changed entries.

        :raises DecodeError: ``delta`` is damaged or does not fit ``base``.
        """
        try:
            _, op, *args = _loads(delta[1:])
            if op == "L" or op == "l":
                items = args[0] if op == "L" else self._untree(args[0])
                list.extend(base, items if convert is None else convert(items))
            elif op == "D":
                changed = self._untree(args[0])
                dict.update(base, changed if convert is None else convert(changed))
                for key in self._untree(args[1]):
                    dict.pop(base, key, None)  # a concurrent writer may have removed it
            elif op == "S":
                set.update(base, self._untree(args[0]))
                set.difference_update(base, self._untree(args[1]))
            else:
                raise DecodeError(f"unknown delta operation {op!r}")
        except DecodeError:
            raise
        except _DAMAGE as exc:
            raise DecodeError(f"cannot apply stored delta: {exc}") from None
        return base


#: what damaged bytes make the decoder's parts raise: orjson and int() raise
#: ValueError, Decimal an ArithmeticError (InvalidOperation), float and complex
#: OverflowError, ZoneInfo a LookupError or (for a key naming a directory) an
#: OSError, UUID an AttributeError for a payload that is not a string; each
#: becomes a DecodeError
_DAMAGE: tuple[type[Exception], ...] = (
    ArithmeticError,
    AttributeError,
    LookupError,
    OSError,
    TypeError,
    ValueError,
)

#: how many bytes a delta may exceed the full value by and still be preferred
_DELTA_ALLOWANCE = 64
_DELTA_TYPES: dict[bytes, type] = {b"L": list, b"l": list, b"D": dict, b"S": set}
_JSON_SCALARS = frozenset({int, str, float, bool, type(None)})
_JSON_TYPES = _JSON_SCALARS | {list, dict, TrackedList, TrackedDict}
_STR_ONLY = frozenset({str})
_CONTAINERS = frozenset({list, dict, TrackedList, TrackedDict})
_PLAIN_CONTAINERS = (list, dict, TrackedList, TrackedDict)
_CONTAINER_TAGS: dict[str, Callable[[Any], Any]] = {"~t": tuple, "~s": set, "~fs": frozenset}
_BUILTIN_TYPES: frozenset[type] = frozenset(
    {int, float, str, bool, type(None), list, dict, tuple, set, frozenset} | set(SCALAR_TREES)
)


def _only_json_types(value: list[Any] | dict[Any, Any], room: int) -> bool:
    """True if ``value`` holds only exact JSON types (str keys), all the way down,
    with containers nested at most ``room`` levels inside it.

    orjson writes IntEnum and StrEnum members as plain numbers and strings, which
    compare equal after a round trip; checking exact types keeps them off the plain
    path, where they would lose their type. A value nested too deeply (or containing
    itself) goes to the tagged path, which names it.

    One level at a time, every container of the level together: the type checks run
    in C (``map(type, ...)``) over a whole level, so a list of a thousand small dicts
    costs a few calls, not a thousand.
    """
    # The commonest value, flat: one container of scalars.
    if isinstance(value, dict):
        if not set(map(type, value)) <= _STR_ONLY:
            return False
        kinds = set(map(type, value.values()))
    else:
        kinds = set(map(type, value))
    if kinds <= _JSON_SCALARS:
        return True
    level: list[Any] = [value]
    while True:
        dicts = [item for item in level if isinstance(item, dict)]
        if dicts:
            if not set(map(type, itertools.chain.from_iterable(dicts))) <= _STR_ONLY:
                return False
            members = list(itertools.chain.from_iterable(map(dict.values, dicts)))
            if len(dicts) < len(level):
                lists = (item for item in level if not isinstance(item, dict))
                members.extend(itertools.chain.from_iterable(lists))
        else:
            members = list(itertools.chain.from_iterable(level))
        kinds = set(map(type, members))
        if kinds <= _JSON_SCALARS:
            return True
        if not room or not kinds <= _JSON_TYPES:
            return False
        level = [item for item in members if type(item) in _CONTAINERS]
        room -= 1


def _is_flat(items: Any) -> bool:
    """True if parsed JSON ``items`` hold no list or dict (nothing left to decode)."""
    return set(map(type, items)) <= _JSON_SCALARS


def _same_list(items: list[Any]) -> list[Any]:
    return items


def _dict_from_flat(keys_and_values: list[Any]) -> dict[Any, Any]:
    pairs = iter(keys_and_values)
    return dict(zip(pairs, pairs, strict=True))


class _Place:
    """A place in a container that has no key or index of its own, in messages."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ITEM = _Place("item")  # a set's item
_KEY = _Place("key")  # a dict's key (not a str)


def _at(path: tuple[Any, ...]) -> str:
    """Where in a value ``path`` points, for messages (shortened when deep)."""
    if not path:
        return ""
    where = "".join(f"[{_short_repr(part)}]" for part in path[:5])
    return f" at {where}…" if len(path) > 5 else f" at {where}"


def _short_repr(part: Any) -> str:
    try:
        text = repr(part)
    except ValueError:  # an int too long for the process's int/str conversion limit
        return f"<int of {part.bit_length()} bits>"
    return text if len(text) <= 40 else text[:39] + "…"


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


def _dumps_tree(tree: Any) -> bytes:
    return orjson.dumps(tree, option=orjson.OPT_SORT_KEYS)


def _loads(data: bytes | bytearray) -> Any:
    """Parsed JSON; what orjson refuses as too deep (only 0.1.0 wrote such bytes) is
    parsed without recursion."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" not in str(exc) and "recursion" not in str(exc).lower():
            raise
    return loads_deep(bytes(data).decode("utf-8"))


default_codec = Codec()
