"""Seed parity: every example of MyDbEngine's README (shared/seeds/002_…) runs on
everstore.versions with only its import lines changed to
``from everstore.versions import DbEngine, BaseInlineHandler, BaseRefHandler, handlers``.

The seed document lost its line breaks, so the examples are transcribed below with
them put back; :func:`test_the_examples_are_the_seeds` checks that each one, with its
whitespace collapsed, is a piece of the seed (a copy is kept in
tests/data/mydbengine_readme.txt so the suite runs without the shared folder). They
run top to bottom in one module's namespace (so the classes they define can be loaded
back), in a temporary working directory where their ``.mytools_db`` lands. The
pandas/numpy examples run where those are installed; each also has an equivalent
over small classes of the tests' own (versions_support.py) that always runs.
"""

from __future__ import annotations

import datetime
import hashlib
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from everstore.versions import (
    DEFAULT_ROOT,
    DbEngine,
    Handlers,
    handlers,
)
from versions_support import (
    DATE_FORMAT,
    FIXED_DATE,
    FIXED_TIME,
    STORE_FILE,
    FrameHandler,
    big_frame,
    blob_rows,
    memory_engine,
    store_file,
    stored_version,
    subtrees,
)

SEED = Path(__file__).resolve().parent / "data" / "mydbengine_readme.txt"
OUR_IMPORT = "from everstore.versions import DbEngine, BaseInlineHandler, BaseRefHandler, handlers"
SEED_IMPORTS = (
    "from dbengine.dbengine import DbEngine",
    "from dbengine.handlers import BaseInlineHandler, handlers",
    "from dbengine.handlers import BaseRefHandler, handlers",
)

QUICK_START = """\
from dbengine.dbengine import DbEngine

# Initialize engine and tenant
engine = DbEngine(root=".mytools_db")
engine.init("tenant_1")

# Save and load data
engine.save("tenant_1", "user_1", "config", {"theme": "dark", "lang": "en"})
data = engine.load("tenant_1", "config")
print(data)  # {"theme": "dark", "lang": "en"}
"""

SNAPSHOT_PATTERN = """\
engine.save("tenant_1", "user_1", "config", {"theme": "dark", "lang": "en"})
config = engine.load("tenant_1", "config")
"""

RECORD_PATTERN = """\
engine.put("tenant_1", "user_1", "users", "john", {"name": "John", "age": 30})
engine.put("tenant_1", "user_1", "users", "jane", {"name": "Jane", "age": 25})
all_users = engine.get("tenant_1", "users")  # Returns list of all users
"""

SAVE_AND_LOAD = """\
# Save any Python object
data = {"users": ["alice", "bob"], "count": 2}
digest = engine.save("tenant_1", "user_1", "session", data)

# Load latest version
session = engine.load("tenant_1", "session")

# Load specific version by digest
old_session = engine.load("tenant_1", "session", digest=digest)
"""

RECORD_UPDATES = """\
# Add/update single record
engine.put("tenant_1", "user_1", "users", "alice", {"name": "Alice", "role": "admin"})

# Add/update multiple records
users = {
    "bob": {"name": "Bob", "role": "user"},
    "charlie": {"name": "Charlie", "role": "user"}
}
engine.put_many("tenant_1", "user_1", "users", users)

# Get specific record
alice = engine.get("tenant_1", "users", key="alice")

# Get all records as list
all_users = engine.get("tenant_1", "users")
"""

HISTORY_NAVIGATION = """\
# Get history chain (list of digests, newest first)
history = engine.history("tenant_1", "config", max_items=10)

# Load previous version
previous = engine.load("tenant_1", "config", digest=history[1])

# Check if entry exists
if engine.exists("tenant_1", "config"):
    print("Entry exists")
"""

DATE_HANDLER = """\
from dbengine.handlers import BaseInlineHandler, handlers
import datetime

class DateHandler(BaseInlineHandler):
    def is_eligible_for(self, obj):
        return isinstance(obj, datetime.date)

    def tag(self):
        return "Date"

    def serialize(self, obj):
        return {
            "__special__": self.tag(),
            "year": obj.year,
            "month": obj.month,
            "day": obj.day
        }

    def deserialize(self, data):
        return datetime.date(year=data["year"], month=data["month"], day=data["day"])

handlers.register_handler(DateHandler())
"""

DATAFRAME_HANDLER = '''\
from dbengine.handlers import BaseRefHandler, handlers
import pandas as pd
import numpy as np
import json

class DataFrameHandler(BaseRefHandler):
    def is_eligible_for(self, obj):
        return isinstance(obj, pd.DataFrame)

    def tag(self):
        return "DataFrame"

    def serialize_to_bytes(self, df):
        """Convert DataFrame to compact binary format"""
        # Store metadata + numpy bytes
        metadata = {
            "columns": df.columns.tolist(),
            "index": df.index.tolist(),
            "dtype": str(df.values.dtype)
        }
        metadata_bytes = json.dumps(metadata).encode('utf-8')
        metadata_length = len(metadata_bytes).to_bytes(4, 'big')
        numpy_bytes = df.to_numpy().tobytes()
        return metadata_length + metadata_bytes + numpy_bytes

    def deserialize_from_bytes(self, data):
        """Reconstruct DataFrame from binary format"""
        # Read metadata
        metadata_length = int.from_bytes(data[:4], 'big')
        metadata = json.loads(data[4:4+metadata_length].decode('utf-8'))
        numpy_bytes = data[4+metadata_length:]

        # Reconstruct array and DataFrame
        array = np.frombuffer(numpy_bytes, dtype=metadata['dtype'])
        array = array.reshape(len(metadata['index']), len(metadata['columns']))
        return pd.DataFrame(array, columns=metadata['columns'], index=metadata['index'])

handlers.register_handler(DataFrameHandler())

# Now DataFrames are automatically stored in optimized binary format
df = pd.DataFrame({"col1": [1, 2, 3], "col2": [4, 5, 6]})
engine.save("tenant_1", "user_1", "data", df)
'''

USE_REFS = '''\
class MyDataObject:
    def __init__(self, metadata, large_array):
        self.metadata = metadata
        self.large_array = large_array  # Large numpy array or similar

    @staticmethod
    def use_refs():
        """Fields to pickle instead of JSON-serialize"""
        return {"large_array"}

# metadata goes to JSON, large_array goes to refs/ (pickled)
obj = MyDataObject({"name": "dataset_1"}, np.zeros((1000, 1000)))
engine.save("tenant_1", "user_1", "my_data", obj)
'''

EXAMPLES = [
    QUICK_START,
    SNAPSHOT_PATTERN,
    RECORD_PATTERN,
    SAVE_AND_LOAD,
    RECORD_UPDATES,
    HISTORY_NAVIGATION,
    DATE_HANDLER,
    DATAFRAME_HANDLER,
    USE_REFS,
]


def collapsed(text: str) -> str:
    """``text`` with every run of whitespace one space (the seed's line breaks are
    lost; a comment's two leading spaces in PEP 8 style are too)."""
    return " ".join(text.split())


def ours(example: str) -> str:
    """The example with its import lines changed to everstore.versions' one."""
    for line in SEED_IMPORTS:
        example = example.replace(line, OUR_IMPORT)
    return example


class ExampleModule:
    """A real module the examples run in, so the classes they define are importable
    by ``module:name`` (a version stores a plain object's class that way)."""

    def __init__(self, name: str) -> None:
        self.module = types.ModuleType(name)
        self.namespace: dict[str, Any] = self.module.__dict__

    def run(self, example: str, title: str) -> None:
        exec(compile(ours(example), f"MyDbEngine README [{title}]", "exec"), self.namespace)

    def __getitem__(self, name: str) -> Any:
        return self.namespace[name]


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExampleModule]:
    """A fresh module namespace, in a temporary working directory; the handlers the
    examples register in the process-wide registry are unregistered afterwards."""
    monkeypatch.chdir(tmp_path)
    name = f"mydbengine_readme_{tmp_path.name}"
    module = ExampleModule(name)
    monkeypatch.setitem(sys.modules, name, module.module)
    yield module
    for tag in ("Date", "DataFrame"):
        if handlers.for_tag(tag) is not None:
            handlers.unregister_handler(tag)
    engine = module.namespace.get("engine")
    if isinstance(engine, DbEngine):
        engine.close()


# -- the examples are the seed's -----------------------------------------------------


def test_the_seed_document_is_the_shared_one() -> None:
    shared = sorted(Path("/work/shared/seeds").glob("002_*.txt"))
    if not shared:
        pytest.skip("the shared seeds folder is not mounted here")
    assert shared[0].read_text() == SEED.read_text()


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_examples_are_the_seeds(example: str) -> None:
    seed = collapsed(SEED.read_text())
    assert collapsed(example) in seed
    # the lines run differently from the seed's are its import lines, and only those
    changed = [
        line
        for line, run in zip(example.splitlines(), ours(example).splitlines(), strict=True)
        if line != run
    ]
    assert changed == [line for line in example.splitlines() if line.startswith("from dbengine")]


def test_the_seed_has_these_examples_and_no_others() -> None:
    seed = SEED.read_text()
    assert seed.count("```python") == len(EXAMPLES)


# -- running them ----------------------------------------------------------------------


def test_every_example_runs_top_to_bottom(
    example_module: ExampleModule, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = example_module.run
    run(QUICK_START, "Quick Start")
    assert example_module["data"] == {"theme": "dark", "lang": "en"}
    assert capsys.readouterr().out == "{'lang': 'en', 'theme': 'dark'}\n"
    assert (tmp_path / ".mytools_db" / STORE_FILE).is_file()
    engine: DbEngine = example_module["engine"]

    run(SNAPSHOT_PATTERN, "Pattern 1: snapshots")
    assert example_module["config"] == {"theme": "dark", "lang": "en"}
    # saving a value equal to the head's makes no version (a decision of everstore)
    assert len(engine.history("tenant_1", "config")) == 1

    run(RECORD_PATTERN, "Pattern 2: records")
    # every record's value, in key order
    assert example_module["all_users"] == [
        {"name": "Jane", "age": 25},
        {"name": "John", "age": 30},
    ]

    run(SAVE_AND_LOAD, "Save and Load Complete Snapshots")
    assert example_module["session"] == {"users": ["alice", "bob"], "count": 2}
    assert example_module["old_session"] == example_module["session"]
    assert len(example_module["digest"]) == 64

    run(RECORD_UPDATES, "Incremental Record Updates")
    assert example_module["alice"] == {"name": "Alice", "role": "admin"}
    assert example_module["all_users"] == [
        {"name": "Alice", "role": "admin"},
        {"name": "Bob", "role": "user"},
        {"name": "Charlie", "role": "user"},
        {"name": "Jane", "age": 25},
        {"name": "John", "age": 30},
    ]
    assert engine.count("tenant_1", "users") == 5

    # The README's two saves of "config" hold the same value, which everstore keeps as
    # one version; the history example reads history[1], so config needs a second.
    engine.save("tenant_1", "user_1", "config", {"theme": "light", "lang": "en"})
    run(HISTORY_NAVIGATION, "History Navigation")
    assert example_module["previous"] == {"theme": "dark", "lang": "en"}
    assert len(example_module["history"]) == 2
    assert capsys.readouterr().out == "Entry exists\n"

    run(DATE_HANDLER, "BaseInlineHandler")
    day = datetime.date(2024, 2, 29)
    digest = engine.save("tenant_1", "user_1", "deadline", {"due": day})
    loaded = engine.load("tenant_1", "deadline")
    assert loaded == {"due": day} and type(loaded["due"]) is datetime.date
    # the snapshot holds the handler's tagged dict, readable in the stored JSON
    stored = stored_version(engine, digest)
    assert stored["__data__"] == {
        "due": {"__special__": "Date", "year": 2024, "month": 2, "day": 29}
    }


def test_the_dataframe_example(example_module: ExampleModule) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("numpy")
    example_module.run(QUICK_START, "Quick Start")
    example_module.run(DATAFRAME_HANDLER, "BaseRefHandler")
    engine: DbEngine = example_module["engine"]
    df = example_module["df"]
    assert engine.load("tenant_1", "data").equals(df)
    digest = engine.get_digest("tenant_1", "data")
    ref = stored_version(engine, digest)["__data__"]
    assert ref["__special__"] == "DataFrame"
    assert engine.store.get_blob(ref["__digest__"])[4:].startswith(b'{"columns"')
    assert isinstance(engine.load("tenant_1", "data"), pd.DataFrame)


def test_the_use_refs_example(example_module: ExampleModule) -> None:
    np = pytest.importorskip("numpy")
    example_module.namespace["np"] = np
    example_module.run(QUICK_START, "Quick Start")
    example_module.run(USE_REFS, "use_refs()")
    engine: DbEngine = example_module["engine"]
    loaded = engine.load("tenant_1", "my_data")
    assert type(loaded) is example_module["MyDataObject"]
    assert loaded.metadata == {"name": "dataset_1"}
    assert (loaded.large_array == np.zeros((1000, 1000))).all()


# -- the same extension points over classes of the tests (always run) ------------------


class MyDataObject:
    """The README's MyDataObject, with a bytes or list value as its large array."""

    def __init__(self, metadata: Any, large_array: Any) -> None:
        self.metadata = metadata
        self.large_array = large_array

    @staticmethod
    def use_refs() -> set[str]:
        return {"large_array"}


def test_a_ref_handler_stores_its_bytes_once_by_digest(tmp_path: Path) -> None:
    registry = Handlers()
    handler = FrameHandler()
    registry.register_handler(handler)
    with DbEngine(tmp_path / "db", handlers=registry) as engine:
        engine.init("tenant_1")
        engine.init("tenant_2")
        frame = big_frame()
        digest = engine.save("tenant_1", "user_1", "data", frame)
        assert engine.load("tenant_1", "data") == frame
        payload = handler.serialize_to_bytes(frame)
        # the snapshot holds {"__special__": tag, "__digest__": sha256 of the bytes}
        assert stored_version(engine, digest)["__data__"] == {
            "__special__": "Frame",
            "__digest__": hashlib.sha256(payload).hexdigest(),
        }
        assert engine.store.get_blob(hashlib.sha256(payload).hexdigest()) == payload
        # the same bytes from another tenant and another entry are not stored again
        rows, size = blob_rows(store_file(engine))
        engine.save("tenant_2", "user_2", "copy", frame)
        engine.save("tenant_1", "user_1", "again", {"nested": [frame]})
        new_rows, new_size = blob_rows(store_file(engine))
        assert new_rows == rows + 2  # the two new versions only
        assert new_size - size < len(payload)
        assert engine.load("tenant_2", "copy") == frame
        assert engine.load("tenant_1", "again") == {"nested": [frame]}


@pytest.mark.parametrize(
    "large_array",
    [bytes(range(256)) * 64, [[0.0] * 100 for _ in range(100)]],
    ids=["bytes", "list"],
)
def test_use_refs_fields_are_pickled_and_the_rest_is_json(large_array: Any) -> None:
    engine = memory_engine()
    engine.init("tenant_1")
    obj = MyDataObject({"name": "dataset_1"}, large_array)
    digest = engine.save("tenant_1", "user_1", "my_data", obj)
    loaded = engine.load("tenant_1", "my_data")
    assert type(loaded) is MyDataObject
    assert loaded.metadata == {"name": "dataset_1"}
    assert loaded.large_array == large_array
    stored = stored_version(engine, digest)["__data__"]
    # metadata stays readable JSON; large_array is a reference to its pickle
    assert {"name": "dataset_1"} in [d.get("metadata") for d in subtrees(stored)]
    (ref,) = [d["large_array"] for d in subtrees(stored) if "large_array" in d]
    assert pickle.loads(engine.store.get_blob(ref["__digest__"])) == large_array


def test_a_plain_object_without_use_refs_is_stored_as_json() -> None:
    engine = memory_engine()
    engine.init("tenant_1")
    obj = MyDataObject({"name": "dataset_1"}, None)
    # an instance attribute named like the class's method is not a use_refs() list
    engine.save("tenant_1", "user_1", "plain", obj)
    loaded = engine.load("tenant_1", "plain")
    assert vars(loaded) == {"metadata": {"name": "dataset_1"}, "large_array": None}


# -- metadata ----------------------------------------------------------------------------


def test_each_version_holds_parent_user_and_date() -> None:
    engine = memory_engine(clock=lambda: FIXED_TIME)
    engine.init("tenant_1")
    first = engine.save("tenant_1", "alice", "config", {"v": 1})
    second = engine.save("tenant_1", "bob", "config", {"v": 2})
    third = engine.save("tenant_1", "alice", "config", {"v": 3})
    assert engine.history("tenant_1", "config") == [third, second, first]
    stored = [stored_version(engine, d) for d in (first, second, third)]
    assert [s["__parent__"] for s in stored] == [[None], [first], [second]]
    assert [s["__user_id__"] for s in stored] == ["alice", "bob", "alice"]
    assert all(s["__date__"] == FIXED_DATE for s in stored)
    assert stored[0]["__data__"] == {"v": 1}
    assert set(stored[0]) == {"__data__", "__date__", "__parent__", "__user_id__"}
    # info() says the same, and walking its parents from the head ends at None
    walked: list[str] = []
    digest: str | None = third
    while digest is not None:
        info = engine.info("tenant_1", "config", digest)
        assert info.digest == digest and info.kind == "snapshot"
        assert info.date == FIXED_DATE
        walked.append(digest)
        digest = info.parent
    assert walked == [third, second, first]
    assert engine.info("tenant_1", "config").user_id == "alice"
    assert engine.info("tenant_1", "config", first).user_id == "alice"
    assert engine.info("tenant_1", "config", second).user_id == "bob"


def test_dates_are_utc_in_the_seeds_format(tmp_path: Path) -> None:
    with DbEngine(tmp_path) as engine:
        engine.init("t")
        digest = engine.save("t", "u", "e", 1)
        date = engine.info("t", "e").date
        assert DATE_FORMAT.fullmatch(date)
        assert stored_version(engine, digest)["__date__"] == date
        when = datetime.datetime.strptime(date, "%Y%m%d %H:%M:%S %z")
        assert when.utcoffset() == datetime.timedelta(0)
        # the commit's time and the date agree to the second
        commit = datetime.datetime.fromtimestamp(engine.info("t", "e").time, datetime.UTC)
        assert abs((commit - when).total_seconds()) < 1


def test_record_versions_hold_the_same_metadata() -> None:
    engine = memory_engine(clock=lambda: FIXED_TIME)
    engine.init("t")
    engine.put("t", "u1", "users", "a", 1)
    engine.put("t", "u2", "users", "b", 2)
    newest, oldest = engine.history("t", "users")
    # (a record version is stored in a pack with its nodes: read through info())
    assert engine.info("t", "users", oldest).parent is None
    newest_info = engine.info("t", "users", newest)
    assert (newest_info.parent, newest_info.user_id) == (oldest, "u2")
    assert newest_info.date == FIXED_DATE and newest_info.kind == "records"


# -- the engine's construction -----------------------------------------------------------


def test_root_is_a_directory_created_if_missing(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    with DbEngine(root) as engine:
        engine.init("t")
        engine.save("t", "u", "e", 1)
    assert (root / STORE_FILE).is_file()
    with DbEngine(root=str(root)) as again:
        assert again.load("t", "e") == 1
        assert again.is_initialized("t")


def test_the_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_ROOT == ".mytools_db"
    with DbEngine() as engine:
        engine.init("t")
    assert (tmp_path / ".mytools_db" / STORE_FILE).is_file()


def test_root_and_store_together_are_refused(tmp_path: Path) -> None:
    store = memory_engine().store
    with pytest.raises(TypeError):
        DbEngine(tmp_path, store=store)
    assert list(tmp_path.iterdir()) == []


def test_an_engine_closes_only_the_store_it_opened() -> None:
    engine = memory_engine()
    engine.init("t")
    engine.close()
    # the store was given: it stays open for its owner
    again = DbEngine(store=engine.store, handlers=Handlers())
    assert again.is_initialized("t")
    again.save("t", "u", "e", 1)


def test_init_and_is_initialized() -> None:
    engine = memory_engine()
    assert not engine.is_initialized("tenant_1")
    engine.init("tenant_1")
    engine.init("tenant_1")  # a second init changes nothing
    assert engine.is_initialized("tenant_1")
    assert not engine.is_initialized("tenant_2")
    assert engine.entries("tenant_1") == []
