"""Export a store's log as a portable JSON-lines stream, and import one into any store.

The stream (docs/export-format.md) is a header line, then one JSON object per fact in
seq order, carrying each fact exactly as the backend stores it: seq, time, namespace,
field, the codec's bytes (never decoded: a tombstone, a delta, a custom type's bytes
go through unchanged) and the code location that wrote it; before the facts, the
blob table's blobs (content-addressed bytes that facts name by digest). Importing an export into
an empty store of any backend gives back the same log, fact for fact: the same seqs,
times, contexts and bytes. That is how a store moves between SQLite and PostgreSQL.

An import reads and checks the whole stream before it writes anything, so a bad
stream imports nothing; then it commits the facts in batches, each atomic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from . import __version__
from .engine import namespace_path
from .errors import (
    BackendError,
    ConflictError,
    EverstoreError,
    ImportFormatError,
    InvalidNameError,
    StoreNotEmptyError,
)
from .log import Fact, Write
from .store import Store

__all__ = [
    "FORMAT",
    "VERSION",
    "ImportFormatError",
    "StoreNotEmptyError",
    "export_facts",
    "import_facts",
]

#: the header's ``format``: what the stream is
FORMAT = "everstore-facts"
#: the header's ``version``: the version of this format (not of everstore)
VERSION = 1

#: facts read from the store per query while exporting
EXPORT_PAGE = 5000
#: facts committed per append while importing (each batch is one atomic commit)
IMPORT_BATCH = 5000
#: blobs read from the store per query while exporting
EXPORT_BLOB_PAGE = 100
#: bytes of blobs stored per write while importing
IMPORT_BLOB_BYTES = 8 << 20

#: the keys every fact line has (``encoding`` too, unless ``data`` is null)
_FACT_KEYS = ("seq", "time", "namespace", "field", "context", "data")
_HEADER_KEYS = ("format", "version", "source", "facts", "last_seq", "everstore")

_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def export_facts(
    store: Store, out: TextIO, *, progress: Callable[[int], None] | None = None
) -> int:
    """Write every fact of ``store`` to ``out``: a header line, a line per stored
    blob, then one JSON object per fact, in seq order (docs/export-format.md). The
    facts are those up to the store's last seq when the export starts; facts
    committed meanwhile are left for a later export. The stream is ASCII (every
    other character is escaped).

    Reads the log in pages of :data:`EXPORT_PAGE` facts (one query each), the blobs
    in pages of :data:`EXPORT_BLOB_PAGE`; memory is one page.

    :param store: the store to export (any backend); it is only read
    :param out: a text stream (standard output, a file opened for writing)
    :param progress: called with the number of facts written so far after each page
        (``store.last_seq`` is the total)
    :return: the number of facts written
    :raises BackendError: if the log has a hole in its seqs outside pruned history
        (never made by everstore)
    :raises StoreClosedError: if the store is closed
    """
    high = store.last_seq
    # A prune leaves holes in the log up to its cut: those seqs are exported as the
    # holes they are, and the header says how many facts there are and where the
    # pruned history ends.
    prunes = [r for r in store.retentions() if r.seq <= high]
    pruned_through = max((r.through for r in prunes), default=0)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "source": store.backend.kind,
        "facts": high - sum(r.removed for r in prunes),
        "last_seq": high,
        "everstore": __version__,
    }
    if prunes:
        header["pruned_through"] = pruned_through
    out.write(_dumps(header) + "\n")
    # After the last seq was taken: every blob a fact up to it names is stored by now
    # (a blob is stored with, or before, the facts that name it).
    _export_blobs(store, out)
    written = reached = 0
    while reached < high:
        page = store.facts(reached, min(EXPORT_PAGE, high - reached))
        if not page:
            raise BackendError(f"the log ended at seq {reached}, before its last seq {high}")
        lines = []
        for fact in page:
            if fact.seq > high:
                break
            if fact.seq != reached + 1 and fact.seq - 1 > pruned_through:
                raise BackendError(
                    f"the log has no fact with seq {reached + 1} (the next is {fact.seq}): "
                    "an export needs seqs 1, 2, 3, ... (past any pruned history)"
                )
            lines.append(_fact_line(fact))
            written += 1
            reached = fact.seq
        out.write("".join(lines))
        if progress is not None:
            progress(reached)
        if page[-1].seq > high:
            break
    if progress is not None and not high:
        progress(0)
    return written


def _export_blobs(store: Store, out: TextIO) -> int:
    """Write one line per stored blob, in digest order; return how many."""
    count = 0
    after = ""
    while True:
        try:
            page = store.blobs(after, EXPORT_BLOB_PAGE)
        except NotImplementedError:  # a backend without a blob table holds none
            return count
        if not page:
            return count
        out.write(
            "".join(
                _dumps({"blob": digest, "data": base64.b64encode(data).decode("ascii")}) + "\n"
                for digest, data in page
            )
        )
        count += len(page)
        after = page[-1][0]


def _fact_line(fact: Fact) -> str:
    data = fact.data
    encoding: str | None
    text: str | None
    if data is None:
        text = encoding = None
    else:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(data).decode("ascii"), "base64"
    line: dict[str, Any] = {
        "seq": fact.seq,
        "time": fact.time,
        "namespace": fact.namespace.split("/"),
        "field": fact.field,
        "context": fact.context,
        "data": text,
    }
    if encoding is not None:
        line["encoding"] = encoding
    return _dumps(line) + "\n"


def import_facts(
    store: Store,
    source: Iterable[str],
    *,
    into_nonempty: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append the facts of an export stream (``source``: its lines, such as an open
    file or standard input) to ``store``, keeping their order, times, contexts and
    bytes.

    Into an empty store the facts get the seqs they had (1 to N) and their times:
    the log is the one exported. With ``into_nonempty=True`` they are appended after
    the facts already there: each seq shifts by the store's last seq, and a time
    below the store's latest time is raised to it (time never decreases along a log).

    The whole stream is read and checked first (held in memory, about the size of
    its facts): a bad stream raises :class:`ImportFormatError` and imports nothing.
    Then the blobs are stored (content-addressed: one already there is kept), and the
    facts committed in batches of :data:`IMPORT_BATCH`, each atomic. If
    the backend fails in the middle (a lost connection), the batches committed before
    stay and the error says how many facts they hold; import into a fresh store again.

    :param store: the target store, of any backend
    :param source: the stream's lines (a trailing newline on each is allowed)
    :param into_nonempty: append even if ``store`` holds facts already
    :param progress: called with the number of facts imported so far after each batch
    :return: the number of facts imported
    :raises StoreNotEmptyError: if ``store`` holds facts and ``into_nonempty`` is
        False (checked before the stream is read; nothing is written)
    :raises ImportFormatError: naming the line and what is wrong with it
    :raises ConflictError: if another writer committed to ``store`` during the import
        (the batches committed stay; the message says how many facts they hold)
    :raises BackendError: if the backend fails (as for ConflictError)
    """
    offset = store.last_seq
    if offset and not into_nonempty:
        raise StoreNotEmptyError(
            f"the store holds {offset} facts: import into an empty store, or pass "
            "into_nonempty=True to append after them (their seqs then shift)"
        )
    blobs, writes, seqs = _read_stream(source)
    imported = 0
    try:
        if store.last_seq != offset:
            if not into_nonempty and offset == 0:
                raise StoreNotEmptyError(
                    "another writer committed to the store while the stream was read; "
                    "nothing was imported"
                )
            raise ConflictError(
                "another writer committed to the store while the stream was read: "
                "the imported seqs would not follow its last one; nothing was imported"
            )
        _import_blobs(store, blobs)
        for start in range(0, len(writes), IMPORT_BATCH):
            batch = writes[start : start + IMPORT_BATCH]
            assigned = store.append_facts(batch)
            imported += len(batch)
            for (seq, _), wanted in zip(assigned, seqs[start : start + IMPORT_BATCH], strict=True):
                if seq != wanted + offset:
                    raise ConflictError(
                        f"the fact with seq {wanted} in the stream was given seq {seq}, not "
                        f"{wanted + offset}: another writer committed during the import"
                    )
            if progress is not None:
                progress(imported)
    except EverstoreError as exc:
        if imported:
            raise type(exc)(
                f"{exc} ({imported} of the stream's {len(writes)} facts are committed)"
            ) from exc
        raise
    if progress is not None and not writes:
        progress(0)
    return imported


def _import_blobs(store: Store, blobs: list[bytes]) -> None:
    """Store ``blobs`` in writes of about :data:`IMPORT_BLOB_BYTES` each."""
    batch: list[bytes] = []
    size = 0
    for data in blobs:
        batch.append(data)
        size += len(data)
        if size >= IMPORT_BLOB_BYTES:
            store.put_blobs(batch)
            batch, size = [], 0
    if batch:
        store.put_blobs(batch)


def _read_stream(source: Iterable[str]) -> tuple[list[bytes], list[Write], list[int]]:
    """The blobs in ``source``, the writes of its facts and their seqs in the stream.

    :raises ImportFormatError: at the first line that is wrong
    """
    lines = iter(source)
    number = 0
    header: dict[str, Any] | None = None
    blobs: list[bytes] = []
    writes: list[Write] = []
    seqs: list[int] = []
    last_time = -math.inf
    announced = 0
    for number, line in enumerate(lines, start=1):
        if type(line) is not str:
            raise ImportFormatError(f"line {number}: a line is a str, got {type(line).__name__}")
        obj = _parse(number, line)
        if header is None:
            header = _check_header(number, obj)
            announced = header["facts"]
            continue
        if "blob" in obj:
            if writes:
                raise ImportFormatError(f"line {number}: a blob line after a fact line")
            blobs.append(_check_blob(number, obj))
            continue
        seq = len(writes) + 1
        if seq > announced:
            raise ImportFormatError(
                f"line {number}: the header announces {announced} facts, this is one more"
            )
        write = _check_fact(number, obj, seq, last_time)
        last_time = write.time
        writes.append(write)
        seqs.append(seq)
    if header is None:
        raise ImportFormatError("line 1: the stream is empty; it starts with a header line")
    if len(writes) != announced:
        raise ImportFormatError(
            f"line {number + 1}: the stream ends after {len(writes)} facts, the header "
            f"announces {announced}: it was truncated"
        )
    return blobs, writes, seqs


def _parse(number: int, line: str) -> dict[str, Any]:
    text = line[:-1] if line.endswith("\n") else line
    if text.endswith("\r"):
        text = text[:-1]
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ImportFormatError(f"line {number}: not a JSON object ({exc})") from None
    if type(obj) is not dict:
        raise ImportFormatError(f"line {number}: not a JSON object but {type(obj).__name__}")
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_header(number: int, obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("format") != FORMAT:
        raise ImportFormatError(
            f"line {number}: not an everstore export header (its format is "
            f"{obj.get('format')!r}, not {FORMAT!r})"
        )
    for key in _HEADER_KEYS:
        if key not in obj:
            raise ImportFormatError(f"line {number}: the header has no {key!r}")
    version = obj["version"]
    if type(version) is not int or version != VERSION:
        raise ImportFormatError(
            f"line {number}: format version {version!r}; this everstore reads version {VERSION}"
        )
    if "pruned_through" in obj:
        raise ImportFormatError(
            f"line {number}: this is the export of a store whose history up to seq "
            f"{obj['pruned_through']!r} was pruned (everstore prune); it cannot be "
            "imported, since an import gives the facts seqs 1, 2, 3, ... and the store's "
            "records of erasures and prunes name the original seqs"
        )
    for key in ("facts", "last_seq"):
        if type(obj[key]) is not int or obj[key] < 0:
            raise ImportFormatError(
                f"line {number}: the header's {key!r} is an int >= 0, got {obj[key]!r}"
            )
    if obj["facts"] != obj["last_seq"]:
        raise ImportFormatError(
            f"line {number}: the header announces {obj['facts']} facts up to seq "
            f"{obj['last_seq']}; an export holds seqs 1 to its last"
        )
    for key in ("source", "everstore"):
        if type(obj[key]) is not str:
            raise ImportFormatError(f"line {number}: the header's {key!r} is a str")
    return obj


def _check_fact(number: int, obj: dict[str, Any], seq: int, last_time: float) -> Write:
    for key in _FACT_KEYS:
        if key not in obj:
            raise ImportFormatError(f"line {number}: the fact has no {key!r}")
    got = obj["seq"]
    if type(got) is not int:
        raise ImportFormatError(f"line {number}: 'seq' is an int, got {got!r}")
    if got != seq:
        raise ImportFormatError(
            f"line {number}: seq {got} where seq {seq} comes next (seqs go 1, 2, 3, ... "
            "with no gap, in order)"
        )
    when = _seconds(obj["time"])
    if when is None:
        raise ImportFormatError(f"line {number}: 'time' is a finite number, got {obj['time']!r}")
    if when < last_time:
        raise ImportFormatError(
            f"line {number}: time {when!r} is before the previous fact's {last_time!r} "
            "(time never decreases along a log)"
        )
    parts = obj["namespace"]
    if type(parts) is not list:
        raise ImportFormatError(f"line {number}: 'namespace' is a list of parts, got {parts!r}")
    try:
        path = namespace_path(tuple(parts))
    except InvalidNameError as exc:
        raise ImportFormatError(f"line {number}: {exc}") from None
    field = obj["field"]
    if type(field) is not str or not field or "\x00" in field:
        raise ImportFormatError(f"line {number}: 'field' is a non-empty str, got {field!r}")
    context = obj["context"]
    if type(context) is not str or "\x00" in context:
        raise ImportFormatError(f"line {number}: 'context' is a str, got {context!r}")
    for key, text in (("namespace", path), ("field", field), ("context", context)):
        if not _encodable(text):
            raise ImportFormatError(f"line {number}: {key!r} holds a lone surrogate")
    return Write(path, field, _data(number, obj), context, when)


def _seconds(value: object) -> float | None:
    """``value`` as a finite float, or None if it is no such number."""
    if type(value) is not int and type(value) is not float:
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return seconds if math.isfinite(seconds) else None


def _check_blob(number: int, obj: dict[str, Any]) -> bytes:
    digest, text = obj["blob"], obj.get("data")
    if type(digest) is not str or len(digest) != 64 or digest != digest.lower():
        raise ImportFormatError(
            f"line {number}: 'blob' is a digest, 64 lowercase hex characters, got {digest!r}"
        )
    if type(text) is not str:
        raise ImportFormatError(f"line {number}: a blob's 'data' is a base64 str, got {text!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImportFormatError(f"line {number}: 'data' is not base64 ({exc})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ImportFormatError(
            f"line {number}: the blob's data does not have the SHA-256 digest {digest}"
        )
    return data


def _data(number: int, obj: dict[str, Any]) -> bytes | None:
    text = obj["data"]
    if text is None:
        return None
    if type(text) is not str:
        raise ImportFormatError(f"line {number}: 'data' is a str or null, got {text!r}")
    encoding = obj.get("encoding")
    if encoding == "utf-8":
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise ImportFormatError(f"line {number}: 'data' holds a lone surrogate") from None
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImportFormatError(f"line {number}: 'data' is not base64 ({exc})") from None
    raise ImportFormatError(
        f"line {number}: 'encoding' is 'utf-8' or 'base64' when 'data' is a str, got {encoding!r}"
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
