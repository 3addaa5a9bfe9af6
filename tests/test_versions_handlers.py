"""everstore.versions: the handler registry (MyDbEngine 0.2.1: a handler is
registered once), the order handlers are asked in, and handlers that break their
contract. Each test uses a private ``Handlers()`` registry, except the one that checks
the process-wide ``handlers``, which it leaves as it found it."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from everstore import DecodeError, UnsupportedValueError
from everstore.versions import BaseInlineHandler, Handlers, handlers
from versions_support import DayHandler, FrameHandler, big_frame, memory_engine, stored_version


class IsoDayHandler(DayHandler):
    def tag(self) -> str:
        return "IsoDate"

    def serialize(self, obj: Any) -> dict[str, Any]:
        return {"__special__": self.tag(), "iso": obj.isoformat()}

    def deserialize(self, data: dict[str, Any]) -> Any:
        return datetime.date.fromisoformat(data["iso"])


def test_a_handler_is_registered_once() -> None:
    registry = Handlers()
    registry.register_handler(DayHandler())
    with pytest.raises(ValueError, match="already registered"):
        registry.register_handler(DayHandler())
    assert len(registry) == 1


def test_the_process_wide_registry_refuses_a_second_registration() -> None:
    handler = DayHandler()
    handlers.register_handler(handler)
    try:
        with pytest.raises(ValueError):
            handlers.register_handler(handler)
        assert handlers.for_tag("Date") is handler
    finally:
        handlers.unregister_handler("Date")
    assert handlers.for_tag("Date") is None


@pytest.mark.parametrize("tag", ["~tuple", "~Mine", ""])
def test_reserved_and_empty_tags_are_refused(tag: str) -> None:
    class Tagged(DayHandler):
        def tag(self) -> str:
            return tag

    registry = Handlers()
    with pytest.raises(ValueError):
        registry.register_handler(Tagged())
    assert len(registry) == 0


def test_only_handlers_can_be_registered() -> None:
    with pytest.raises(TypeError):
        Handlers().register_handler(object())  # type: ignore[arg-type]


def test_unregistering() -> None:
    registry = Handlers()
    registry.register_handler(DayHandler())
    registry.unregister_handler("Date")
    registry.register_handler(DayHandler())  # may come back once gone
    with pytest.raises(KeyError):
        registry.unregister_handler("Nothing")


def test_handlers_are_asked_in_registration_order() -> None:
    registry = Handlers()
    registry.register_handler(IsoDayHandler())
    registry.register_handler(DayHandler())
    engine = memory_engine(handlers=registry)
    engine.init("t")
    digest = engine.save("t", "u", "e", datetime.date(2020, 1, 2))
    assert stored_version(engine, digest)["__data__"] == {
        "__special__": "IsoDate",
        "iso": "2020-01-02",
    }
    assert engine.load("t", "e") == datetime.date(2020, 1, 2)


def test_a_handler_goes_before_the_built_in_rules() -> None:
    registry = Handlers()
    registry.register_handler(DayHandler())
    engine = memory_engine(handlers=registry)
    engine.init("t")
    # without the handler a date is a built-in codec type; with it, the handler's dict
    digest = engine.save("t", "u", "e", [datetime.date(2021, 5, 6)])
    assert stored_version(engine, digest)["__data__"][0]["__special__"] == "Date"
    plain = memory_engine()
    plain.init("t")
    other = plain.save("t", "u", "e", [datetime.date(2021, 5, 6)])
    assert stored_version(plain, other)["__data__"][0]["__special__"] != "Date"
    assert plain.load("t", "e") == [datetime.date(2021, 5, 6)]


def test_a_version_written_through_an_unregistered_handler_cannot_be_loaded() -> None:
    registry = Handlers()
    registry.register_handler(DayHandler())
    engine = memory_engine(handlers=registry)
    engine.init("t")
    engine.save("t", "u", "e", datetime.date(2020, 1, 2))
    registry.unregister_handler("Date")
    with pytest.raises(DecodeError, match="Date"):
        engine.load("t", "e")
    registry.register_handler(DayHandler())
    assert engine.load("t", "e") == datetime.date(2020, 1, 2)


def test_private_registries_do_not_share_handlers() -> None:
    mine = Handlers()
    mine.register_handler(DayHandler())
    theirs = Handlers()
    theirs.register_handler(DayHandler())  # the same tag in another registry is fine
    assert handlers.for_tag("Date") is None


class WrongTag(DayHandler):
    def serialize(self, obj: Any) -> dict[str, Any]:
        return {"__special__": "NotMyTag", "iso": obj.isoformat()}


class NotADict(DayHandler):
    def serialize(self, obj: Any) -> Any:
        return obj.isoformat()


class NotBytes(FrameHandler):
    def serialize_to_bytes(self, obj: Any) -> Any:
        return "a str"


@pytest.mark.parametrize("handler", [WrongTag(), NotADict(), NotBytes()], ids=type)
def test_a_handler_breaking_its_contract_is_an_unsupported_value(handler: Any) -> None:
    registry = Handlers()
    registry.register_handler(handler)
    engine = memory_engine(handlers=registry)
    engine.init("t")
    value = datetime.date(2020, 1, 1) if isinstance(handler, DayHandler) else big_frame(3)
    before = engine.store.last_seq
    with pytest.raises(UnsupportedValueError):
        engine.save("t", "u", "e", {"v": value})
    assert engine.store.last_seq == before and not engine.exists("t", "e")


class Fragile(DayHandler):
    def deserialize(self, data: dict[str, Any]) -> Any:
        raise RuntimeError("cannot rebuild")


def test_a_handler_failing_to_rebuild_is_a_decode_error() -> None:
    registry = Handlers()
    registry.register_handler(Fragile())
    engine = memory_engine(handlers=registry)
    engine.init("t")
    engine.save("t", "u", "e", [datetime.date(2020, 1, 1)])
    with pytest.raises(DecodeError, match="Date"):
        engine.load("t", "e")


class Everything(BaseInlineHandler):
    def is_eligible_for(self, obj: Any) -> bool:
        return True

    def tag(self) -> str:
        return "Everything"

    def serialize(self, obj: Any) -> dict[str, Any]:
        return {"__special__": "Everything", "repr": repr(obj)}

    def deserialize(self, data: dict[str, Any]) -> Any:
        return data["repr"]


def test_handlers_are_not_asked_about_json_values() -> None:
    registry = Handlers()
    registry.register_handler(Everything())
    engine = memory_engine(handlers=registry)
    engine.init("t")
    value = {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "l": [1], "d": {"k": "v"}}
    engine.save("t", "u", "e", value)
    assert engine.load("t", "e") == value
    # anything else is the handler's, even a type everstore has a rule for
    engine.save("t", "u", "tuple", (1, 2))
    assert engine.load("t", "tuple") == "(1, 2)"
