"""The adapter for pydantic 2 models (imported only when a pydantic class is stored).

Assignments are validated as ``validate_assignment=True`` would validate them, whether
or not the model's config asks for it: a value the model refuses raises pydantic's
``ValidationError`` and leaves the object as it was. Objects are rebuilt from stored
values by the model's own validation, which turns stored plain data back into Enums,
nested models and references.
"""

from __future__ import annotations

from typing import Any

import pydantic

from .adapters import Adapter
from .values import ABSENT

__all__ = ["PydanticAdapter"]


class PydanticAdapter(Adapter):
    """A pydantic ``BaseModel`` subclass."""

    validates = True

    def __init__(self, cls: type) -> None:
        super().__init__(cls)
        model: Any = cls
        self.fields: list[str] = list(model.__pydantic_fields__)
        self._field_set = frozenset(self.fields)
        self._extra = model.model_config.get("extra") == "allow"
        self._validator = model.__pydantic_validator__
        # stored values are keyed by field name; a model with aliases validates them
        # by name (pydantic >= 2.11 says so directly)
        self._aliases = {
            name: info.alias
            for name, info in model.__pydantic_fields__.items()
            if isinstance(info.alias, str) and info.alias != name
        }
        # An object built from the log has, nearly always, every declared field set:
        # the objects of this class then share one such set (a set of five names
        # costs 728 bytes, more than the rest of the object). Assigning a declared
        # field adds its name, which it holds already: the set never changes. With
        # extra fields, assigning one would add its name: no sharing then.
        self._every_field: set[str] | None = None if self._extra else set(self.fields)

    def declared_fields(self) -> list[str]:
        return list(self.fields)

    def field_names(self, obj: Any) -> list[str]:
        extra = obj.__pydantic_extra__
        if extra:
            return [*self.fields, *(name for name in extra if name not in self._field_set)]
        return list(self.fields)

    def is_field(self, name: str) -> bool:
        return name in self._field_set or (self._extra and not name.startswith("_"))

    def lossless(self, name: str) -> bool:
        # The model's validation rebuilds Enums and nested models from plain data,
        # except in fields it knows nothing about (extra fields).
        return name not in self._field_set

    def is_library_class(self, klass: type) -> bool:
        return klass is pydantic.BaseModel or klass.__module__.startswith("pydantic.")

    def build(self, values: dict[str, Any]) -> Any:
        model: Any = self.cls
        if not self._aliases:
            obj = model.model_validate(values)
        else:
            try:
                obj = model.model_validate(values, by_name=True)
            except TypeError:  # pydantic before 2.11: no by_name
                obj = model.model_validate(
                    {self._aliases.get(name, name): value for name, value in values.items()}
                )
        return self._shared(obj)

    def create(self, fields: dict[str, Any]) -> Any:
        return self._shared(self.cls(**fields))

    def _shared(self, obj: Any) -> Any:
        """``obj``, sharing the class's set of every field if that is its fields set."""
        every = self._every_field
        if every is not None and obj.__pydantic_fields_set__ == every:
            object.__setattr__(obj, "__pydantic_fields_set__", every)
        return obj

    def raw(self, obj: Any, name: str) -> Any:
        held = obj.__dict__.get(name, ABSENT)
        if held is ABSENT and obj.__pydantic_extra__:
            return obj.__pydantic_extra__.get(name, ABSENT)
        return held

    def assign(self, obj: Any, name: str, value: Any) -> None:
        if name in self._field_set:
            before = obj.__dict__.get(name, ABSENT)
            fields_set = set(obj.__pydantic_fields_set__)
            try:
                self._validator.validate_assignment(obj, name, value)
            except BaseException:
                # an "after" model validator may refuse once the value is in place
                self.restore(obj, name, before)
                object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
                raise
        else:
            setattr(obj, name, value)  # extra fields and private attributes: pydantic decides

    def load_field(self, obj: Any, name: str, stored: Any) -> None:
        if stored is ABSENT:
            self.restore(obj, name, ABSENT)
        elif name in self._field_set:
            self._validator.validate_assignment(obj, name, stored)
        else:
            self.restore(obj, name, stored)

    def restore(self, obj: Any, name: str, held: Any) -> None:
        if name in self._field_set:
            if held is ABSENT:
                obj.__dict__.pop(name, None)
            else:
                obj.__dict__[name] = held
            return
        extra = obj.__pydantic_extra__
        if extra is not None:
            if held is ABSENT:
                extra.pop(name, None)
            else:
                extra[name] = held

    def copy(self, obj: Any) -> Any:
        return obj.model_copy(deep=True)
