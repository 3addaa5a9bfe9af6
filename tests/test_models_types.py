"""everstore.models: validation, nested changes, and every codec type in model fields,
for pydantic models, dataclasses and plain classes."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import subprocess
import sys
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from conftest import BackendFactory
from everstore import Codec, Store
from everstore.errors import UnsupportedValueError
from everstore.models import ModelStore, TrackedList


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(BaseModel):
    city: str
    zip: str = ""

    def move(self, city: str) -> None:
        self.city = city


class Person(BaseModel):
    name: str
    age: int = 0
    email: str = ""
    tags: list[str] = []
    scores: dict[str, int] = {}
    flags: set[int] = set()
    address: Address = Address(city="nowhere")
    friends: list[Address] = []

    @field_validator("email")
    @classmethod
    def has_at(cls, value: str) -> str:
        if value and "@" not in value:
            raise ValueError("an email has an @")
        return value.lower()


def people(store: Store) -> ModelStore[Person]:
    return ModelStore(Person, store=store, prefix=("people",), key_selector=lambda p: p.name)


def facts_of(store: Store, field: str) -> list[bytes | None]:
    """The stored bytes of ``field``'s facts (to see deltas)."""
    return [fact.data for fact in store.backend.facts_since(0) if fact.field == field]


# -- validation ----------------------------------------------------------------------------


def test_assignments_are_validated_and_a_refusal_changes_nothing(
    make_backend: BackendFactory,
) -> None:
    store = Store(make_backend())
    group = people(store)
    ann = group.add(name="ann", age=30, email="ANN@x.org")
    assert ann.email == "ann@x.org"  # the model's validators run on assignment too
    seq = store.last_seq
    for field, bad in [("age", "thirty"), ("email", "no-at-sign"), ("tags", "not a list")]:
        with pytest.raises(ValidationError):
            setattr(ann, field, bad)
    assert (ann.age, ann.email, ann.tags) == (30, "ann@x.org", [])
    assert store.last_seq == seq  # nothing written
    assert people(Store(make_backend()))["ann"].age == 30
    ann.email = "Ann@Y.org"
    assert ann.email == "ann@y.org"


def test_validation_without_the_models_own_validate_assignment() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(validate_assignment=False)
        n: int = 0

    raw = Loose()
    raw.n = "not checked by pydantic itself"  # type: ignore[assignment]
    stored = ModelStore(Loose, key_selector=lambda _: "one").set(Loose())
    with pytest.raises(ValidationError):
        stored.n = "checked by the store"


def test_a_value_the_codec_cannot_store_changes_nothing() -> None:
    class Holder(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        name: str
        thing: Any = None

    store = Store()
    holders = ModelStore(Holder, store=store, key_selector=lambda h: h.name)
    holder = holders.add(name="h", thing=1)
    seq = store.last_seq
    with pytest.raises(UnsupportedValueError, match="thing"):
        holder.thing = object()
    assert holder.thing == 1 and store.last_seq == seq


def test_nested_changes_that_the_model_refuses_change_nothing() -> None:
    store = Store()
    ann = people(store).add(name="ann", tags=["a"])
    seq = store.last_seq
    with pytest.raises(ValidationError):
        ann.tags.append(5)  # tags: list[str]
    with pytest.raises(ValidationError):
        ann.address.zip = ["not", "a", "str"]
    assert ann.tags == ["a"] and ann.address.zip == "" and store.last_seq == seq


# -- nested changes ------------------------------------------------------------------------


def test_nested_changes_are_saved(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    ann = people(store).add(name="ann", tags=["a"], scores={"x": 1}, flags={1})
    ann.tags.append("b")
    ann.tags.extend(["c", "d"])
    ann.tags[0] = "A"
    del ann.tags[1]
    ann.tags += ["e"]
    ann.tags.sort(reverse=True)
    assert ann.tags.pop() == "A"
    ann.scores["y"] = 2
    ann.scores["x"] += 10
    ann.scores.update(z=3)
    del ann.scores["y"]
    ann.flags.add(2)
    ann.flags.discard(1)
    ann.flags |= {7}
    ann.address.city = "Paris"
    ann.address.move("Lyon")  # a nested model's own method
    ann.friends.append(Address(city="Oslo"))
    ann.friends[0].city = "Bergen"
    expected = {
        "tags": ["e", "d", "c"],
        "scores": {"x": 11, "z": 3},
        "flags": {2, 7},
        "address": Address(city="Lyon"),
        "friends": [Address(city="Bergen")],
    }
    reread = people(Store(make_backend()))["ann"]
    for field, value in expected.items():
        assert getattr(ann, field) == value
        assert getattr(reread, field) == value
    assert isinstance(ann.tags, TrackedList) and ann.tags.copy() == ["e", "d", "c"]


def test_nested_changes_are_stored_as_deltas(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    ann = people(store).add(name="ann", tags=[f"tag{i}" for i in range(1000)])
    ann.tags.append("one more")
    ann.address.city = "Paris"
    ann.scores["k"] = 1
    codec = store.codec
    tags = facts_of(store, "tags")
    assert len(tags) == 2 and codec.is_delta(tags[1]) and len(tags[1] or b"") < 40
    assert codec.is_delta(facts_of(store, "address")[1])
    assert codec.is_delta(facts_of(store, "scores")[1])
    # every past value can still be rebuilt
    history = store.history(store.namespace(("people", "ann")), "tags")
    assert len(history.value_at(0)) == 1000 and history.value_at(1)[-1] == "one more"


def test_a_nested_change_is_one_undo_step() -> None:
    ann = people(Store()).add(name="ann", tags=["a"])
    ann.tags.append("b")
    ann.address.city = "Paris"
    ann.undo()
    assert ann.address.city == "nowhere" and ann.tags == ["a", "b"]
    ann.undo()
    assert ann.tags == ["a"]


def test_views_read_like_their_values() -> None:
    ann = people(Store()).add(name="ann", tags=["b", "a"], scores={"x": 1})
    assert list(ann.tags) == ["b", "a"] and len(ann.tags) == 2 and "a" in ann.tags
    assert ann.tags + ["c"] == ["b", "a", "c"] and sorted(ann.tags) == ["a", "b"]  # noqa: RUF005
    assert dict(ann.scores) == {"x": 1} and ann.scores.get("nope", 0) == 0
    assert repr(ann.tags) == "['b', 'a']"
    copy_of_tags = ann.tags.copy()
    copy_of_tags.append("not saved")
    assert ann.tags == ["b", "a"]
    # assigning a view to another field stores a copy
    ann.email = "a@b.c"
    bob = people(Store()).add(name="bob", tags=ann.tags)
    assert bob.tags == ["b", "a"]


# -- every codec type round-trips ----------------------------------------------------------


class Everything(BaseModel):
    name: str
    uid: uuid.UUID
    money: decimal.Decimal
    members: set[str]
    frozen: frozenset[int]
    pair: tuple[int, str]
    color: Color
    level: Level
    when: datetime.datetime
    day: datetime.date
    at: datetime.time
    blob: bytes
    ratio: float
    big: int
    maybe: int | None
    by_id: dict[int, str]
    address: Address
    addresses: list[Address]
    colors: list[Color]
    nested: dict[str, list[tuple[int, ...]]]


def everything() -> Everything:
    return Everything(
        name="all",
        uid=uuid.uuid4(),
        money=decimal.Decimal("12.340"),
        members={"a", "b"},
        frozen=frozenset({1, 2}),
        pair=(1, "x"),
        color=Color.BLUE,
        level=Level.HIGH,
        when=datetime.datetime(
            2024,
            5,
            6,
            7,
            8,
            9,
            123456,
            tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        ),
        day=datetime.date(2024, 2, 29),
        at=datetime.time(23, 59, 59),
        blob=b"\x00\xff",
        ratio=float("inf"),
        big=2**200,
        maybe=None,
        by_id={1: "one", 2: "two"},
        address=Address(city="Paris", zip="75001"),
        addresses=[Address(city="A"), Address(city="B")],
        colors=[Color.RED, Color.BLUE],
        nested={"k": [(1, 2), (3,)]},
    )


def test_every_codec_type_round_trips_in_pydantic_fields(make_backend: BackendFactory) -> None:
    original = everything()
    store = Store(make_backend())
    things = ModelStore(Everything, store=store, key_selector=lambda e: e.name)
    things.set(original)
    reread = ModelStore(Everything, store=Store(make_backend()), key_selector=lambda e: e.name)
    copy = reread["all"].__model__
    assert copy == original
    assert copy.when.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert str(copy.money) == "12.340" and type(copy.color) is Color
    assert type(copy.level) is Level and type(copy.address) is Address
    # the log holds plain values: an Enum as its value, a nested model as a dict
    raw = store.storage("Everything", "all")
    assert raw.color == "blue" and raw.uid == original.uid
    with raw:
        assert raw.address == {"city": "Paris", "zip": "75001"}


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Shape:
    name: str
    color: Color
    origin: Point
    points: list[Point]
    uid: uuid.UUID
    money: decimal.Decimal
    when: datetime.datetime
    tags: set[str] = dataclasses.field(default_factory=set)
    maybe: Point | None = None

    def grow(self) -> None:
        self.points.append(Point(len(self.points), 0))


def test_dataclasses_round_trip_and_track(make_backend: BackendFactory) -> None:
    shape = Shape(
        "tri",
        Color.RED,
        Point(0, 0),
        [Point(1, 1)],
        uuid.uuid4(),
        decimal.Decimal("1.10"),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        {"a"},
        Point(5, 5),
    )
    shapes = ModelStore(Shape, store=Store(make_backend()), key_selector=lambda s: s.name)
    stored = shapes.set(shape)
    stored.origin.x = 10
    stored.grow()
    stored.tags.add("b")
    stored.color = Color.BLUE
    with pytest.raises(AttributeError, match="declared fields"):
        stored.undeclared = 1
    reread = ModelStore(Shape, store=Store(make_backend()), key_selector=lambda s: s.name)
    copy = reread["tri"].__model__
    assert type(copy) is Shape and type(copy.origin) is Point and type(copy.color) is Color
    assert copy.origin == Point(10, 0) and copy.points == [Point(1, 1), Point(1, 0)]
    assert copy.tags == {"a", "b"} and copy.maybe == Point(5, 5) and copy.uid == shape.uid


class Plain:
    def __init__(self, name: str, n: int = 0) -> None:
        self.name = name
        self.n = n
        self.items: list[int] = []
        self._cache = "not stored"

    def bump(self) -> None:
        self.n += 1
        self.items.append(self.n)


class Annotated:
    name: str
    color: Color
    where: Point

    def __init__(self, name: str, color: Color, where: Point) -> None:
        self.name, self.color, self.where = name, color, where


def test_plain_classes_store_their_public_attributes(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    plains = ModelStore(Plain, store=store, key_selector=lambda p: p.name)
    obj = plains.set(Plain("p", 1))
    obj.bump()
    obj.extra = "a new attribute is a new field"
    reread = ModelStore(Plain, store=Store(make_backend()), key_selector=lambda p: p.name)["p"]
    assert (reread.n, reread.items, reread.extra) == (2, [2], "a new attribute is a new field")
    assert not hasattr(reread.__model__, "_cache")  # private attributes are not stored
    del obj.extra
    assert "extra" not in store.fields(store.namespace(("Plain", "p")))


def test_plain_classes_rebuild_from_annotations_or_refuse_lossy_values() -> None:
    store = Store()
    annotated = ModelStore(Annotated, store=store, key_selector=lambda a: a.name)
    annotated.set(Annotated("a", Color.BLUE, Point(1, 2)))
    copy = ModelStore(Annotated, store=store, key_selector=lambda a: a.name)["a"].__model__
    assert copy.color is Color.BLUE and copy.where == Point(1, 2)
    plains = ModelStore(Plain, store=store, key_selector=lambda p: p.name)
    obj = plains.set(Plain("p"))
    with pytest.raises(UnsupportedValueError, match="annotate"):
        obj.n = Color.RED  # no annotation to rebuild an Enum from: refused, not lost
    assert obj.n == 0


def test_custom_types_through_the_codec_registry(tmp_path: Path) -> None:
    class Recipe(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        name: str
        ratio: Fraction
        parts: list[Fraction] = []

    codec = Codec()
    codec.register(
        Fraction, "fraction", lambda f: (f.numerator, f.denominator), lambda pair: Fraction(*pair)
    )
    with ModelStore(Recipe, tmp_path, key_selector=lambda r: r.name, codec=codec) as recipes:
        soup = recipes.add(name="soup", ratio=Fraction(1, 3))
        soup.parts.append(Fraction(2, 7))
    with ModelStore(Recipe, tmp_path, key_selector=lambda r: r.name, codec=codec) as recipes:
        assert recipes["soup"].ratio == Fraction(1, 3)
        assert recipes["soup"].parts == [Fraction(2, 7)]
    on_store = ModelStore(Recipe, store=Store(codec=codec), key_selector=lambda r: r.name)
    on_store.add(name="x", ratio=Fraction(3, 4))
    assert on_store["x"].ratio == Fraction(3, 4)


def test_importing_the_core_and_models_does_not_import_pydantic() -> None:
    code = (
        "import sys, everstore, everstore.models\n"
        "from everstore.models import ModelStore\n"
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class P:\n"
        "    name: str\n"
        "s = ModelStore(P, key_selector=lambda p: p.name)\n"
        "s.add(name='x')\n"
        "assert s['x'].name == 'x'\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stored_values_the_model_refuses_are_never_skipped(make_backend: BackendFactory) -> None:
    store = Store(make_backend())
    group = people(store)
    group.add(name="ann", age=1)
    group.add(name="bob", age=2)
    store.storage("people", "bob").age = "not a number"  # written around the model
    reread = people(Store(make_backend()))
    assert reread.keys() == ["ann", "bob"] and len(reread) == 2  # listed, not dropped
    bob = reread["bob"]
    with pytest.raises(ValidationError):
        bob.age  # noqa: B018
    assert reread["ann"].age == 1
    store.storage("people", "bob").age = 3  # repaired by any writer...
    assert bob.age == 3  # ...and readable again
    store.storage("people", "bob").age = "broken again"
    assert reread.delete("bob") and reread.keys() == ["ann"]  # a broken object can go
