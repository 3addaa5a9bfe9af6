"""Which adapter a model class gets: pydantic model, dataclass or plain class."""

from __future__ import annotations

import dataclasses
import sys

from .adapters import Adapter, DataclassAdapter, PlainAdapter

__all__ = ["adapter_for"]


def adapter_for(cls: type) -> Adapter:
    """The adapter for ``cls``: pydantic model, dataclass or plain class.

    :raises TypeError: if ``cls`` is not a class
    """
    if not isinstance(cls, type):
        raise TypeError(f"a ModelStore stores instances of a class, got {cls!r}")
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        # pydantic is imported only when a model of it is stored
        from .pydantic_adapter import PydanticAdapter

        return PydanticAdapter(cls)
    if dataclasses.is_dataclass(cls):
        return DataclassAdapter(cls)
    return PlainAdapter(cls)
