"""A check on two Stores sharing one database, used by the tests of several modules."""

from __future__ import annotations

from collections.abc import Iterable

from everstore import Store

__all__ = ["assert_reader_sees_each_commit"]


def assert_reader_sees_each_commit(writer: Store, reader: Store, titles: Iterable[str]) -> None:
    """``reader``, a second Store on ``writer``'s database, sees each title ``writer``
    commits to ``doc.title`` at its next read; both Stores are closed afterwards."""
    try:
        for title in titles:
            writer.storage("doc").title = title
            assert reader.storage("doc").title == title
    finally:
        writer.close()
        reader.close()
