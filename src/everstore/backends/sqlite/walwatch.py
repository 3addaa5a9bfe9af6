"""Watch an SQLite WAL index for commits, without touching SQLite's locks.

Every commit by any connection rewrites the WAL-index header (the first 48 bytes of
the ``-shm`` file: frame count, change counter, checksums). Reading it costs a memory
read, where ``PRAGMA data_version`` costs a query (~3 µs).

The mapping must not come from a file descriptor of our own: POSIX locks belong to
the process, and closing *any* descriptor of a file drops all of them, SQLite's
included (another process would then think it is alone and truncate the shared
memory under everyone's feet). Python's ``mmap`` duplicates the descriptor it maps
and closes the copy later, so it cannot be used either. Instead the header page is
mapped with libc's ``mmap`` from the descriptor SQLite itself opened, found in
``/proc/self/fd``; nothing is ever closed. The page stays mapped until the process
closes the database: then :meth:`WalHeader.release` puts an anonymous zero page in
its place (a reader called later reads zeros instead of faulting) and the file, and the
mount it lives on, are no longer held.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from collections.abc import Callable

__all__ = ["CHANGE_COUNTER", "WalHeader", "map_wal_header"]

_HEADER_BYTES = 48
_PAGE = 4096
_PROT_READ = 1
_MAP_SHARED = 1
_MAP_PRIVATE = 2
_MAP_FIXED = 0x10
_MAP_ANONYMOUS = 0x20  # Linux
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc_mmap() -> Callable[..., int | None] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mmap = libc.mmap
    except (OSError, AttributeError):
        return None
    mmap.restype = ctypes.c_void_p
    mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    return mmap


def _sqlite_descriptor(shm_path: str) -> int | None:
    """The descriptor through which SQLite has ``shm_path`` open in this process."""
    try:
        wanted = os.stat(shm_path)
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    target = os.path.realpath(shm_path)
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}") != target:
                continue
            found = os.fstat(int(name))
        except (OSError, ValueError):
            continue
        if (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino):
            return int(name)
    return None


class WalHeader:
    """The mapped WAL-index header of one ``-shm`` file."""

    def __init__(self, address: int, mmap: Callable[..., int | None]) -> None:
        self._address = address
        self._mmap = mmap
        header = (ctypes.c_char * _HEADER_BYTES).from_address(address)
        #: the current 48 header bytes (a memory read)
        self.read: Callable[[], bytes] = memoryview(header).tobytes

    def release(self) -> None:
        """Stop mapping the file: :attr:`read` returns zeros from now on. Idempotent."""
        self._mmap(
            self._address,
            _PAGE,
            _PROT_READ,
            _MAP_PRIVATE | _MAP_FIXED | _MAP_ANONYMOUS,
            -1,
            0,
        )


def map_wal_header(shm_path: str) -> WalHeader | None:
    """The WAL-index header of ``shm_path``, mapped, or None where that cannot be done
    safely (then ask SQLite: ``PRAGMA data_version``).

    Call it only after a read on a WAL-mode connection (so SQLite has the file open),
    and release it when that connection is closed.
    """
    if not sys.platform.startswith("linux"):
        return None
    mmap = _libc_mmap()
    descriptor = _sqlite_descriptor(shm_path)
    if mmap is None or descriptor is None:
        return None
    address = mmap(None, _PAGE, _PROT_READ, _MAP_SHARED, descriptor, 0)
    if address is None or address == _MAP_FAILED:
        return None
    return WalHeader(address, mmap)


#: ``CHANGE_COUNTER.unpack_from(header)[0]`` is the ``iChange`` field of a WAL-index
#: header: a u32 in native byte order at byte 8, which SQLite increments each time it
#: writes the header (every commit; also a WAL restart, so it may grow by more than one
#: per commit, never by less). One C call: a slice and ``int.from_bytes`` cost twice as
#: much, on the path of every single write.
CHANGE_COUNTER = struct.Struct("=8xI")
