"""The engine: the log's in-memory view, transactions, history, the change feed and
the fact hook, as one public API that Storage, time travel and every layer stand on.

docs/engine.md documents it; everything a layer needs is importable from here.
"""

from __future__ import annotations

from .contexts import caller_context, frame_context
from .engine import END_OF_LOG, AppliedFact, Engine, FactHook
from .feed import Change, Subscription
from .history import History
from .names import check_field, describe_field, namespace_path
from .namespace import Namespace
from .transactions import Transaction

__all__ = [
    "END_OF_LOG",
    "AppliedFact",
    "Change",
    "Engine",
    "FactHook",
    "History",
    "Namespace",
    "Subscription",
    "Transaction",
    "caller_context",
    "check_field",
    "describe_field",
    "frame_context",
    "namespace_path",
]
