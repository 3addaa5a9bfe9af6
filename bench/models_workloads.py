"""The models family: typed objects that save on change, everstore.models against
slowstore 2.2.1 and SQLAlchemy 2's ORM, with raw sqlite3 as the floor (issue 9).

Like ``workloads.py``, each function is one (family, library) case run in a fresh
interpreter by ``bench/run.py``, performing ONE repetition. All four libraries store
the same objects, a pydantic-like ``User(name, age, email, active, score)`` keyed by
``name``:

* everstore through ``everstore.models`` as issue 9 specifies it:
  ``ModelStore[User](User, directory, key_selector=lambda u: u.name,
  indexes=["age", "email"])``, ``store.add(**fields)`` returning a proxy,
  ``proxy.age = n`` saved before it returns, ``store.filter(pred)``,
  ``store.where(age=30)`` / ``store.where(age__gte=88)``; the directory holds an
  everstore SQLite store (WAL, synchronous=NORMAL);
* slowstore 2.2.1 (JSON file per object), ``save_on_change=True`` (its default), with
  the one-line ``typing.override`` shim it needs on Python 3.11 (here only, never in
  the library); it has no index: its "indexed" queries are the ``filter`` scan a
  slowstore user has to write;
* SQLAlchemy 2 ORM on SQLite with the same settings (WAL, synchronous=NORMAL, set on
  every connection), a mapped class with indexes on ``age`` and ``email`` and a
  unique ``name``, a commit per change, and a history row per changed field written
  in the same commit by a ``before_flush`` listener (the way audit-history extensions
  do it). ``expire_on_commit=False``: objects are not re-read after every commit,
  which favours SQLAlchemy;
* raw sqlite3 (the stdlib module, the same settings): the floor. One INSERT per
  commit; the UPDATE plus history INSERT of one change in one transaction; the indexed
  SELECTs, rows as tuples. ``create_floor_us`` is the floor of an everstore creation:
  one transaction inserting what ``add()`` inserts (a namespace name and one row per
  field, five) into tables shaped like everstore's (its log, with its index, and its
  table of namespace names).

The 100k-object data sets of the query rows are built once per library version and
cached in the work directory (everstore's is rebuilt every run: its format may still
change). Cold open: each sample is a new process (``python models_workloads.py --cold
LIBRARY PATH``) that imports the library, opens the data set and reads one object.

Slowstore rewrites an object's whole file, change log included, on every save, so K
updates to one object cost O(K²): its 10,000-update figure is extrapolated from a
measured run of ``slow_hot`` updates (time x (10,000 / slow_hot)²), and reported as such.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from workloads import Config, Metrics, remove_db, scratch_dir, timed_batches, timed_loops

__all__ = ["CASES", "FAMILIES", "ModelSizes", "model_sizes", "unavailable_reason"]

perf = time.perf_counter

#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {"models": ["everstore", "slowstore", "sqlalchemy", "raw"]}

SLOWSTORE_VERSION = "2.2.1"


@dataclass(frozen=True)
class ModelSizes:
    create: int  # objects created, one commit each
    update: int  # objects updated once each
    hot_small: int  # updates to ONE object
    hot_large: int
    slow_hot: int  # slowstore's measured run, extrapolated to hot_large
    objects: int  # objects of the query data set
    ages: int  # distinct ages: objects / ages share each one
    cold_samples: int  # at most, per repetition


MODELS_FULL = ModelSizes(
    create=10_000,
    update=10_000,
    hot_small=1_000,
    hot_large=10_000,
    slow_hot=2_000,
    objects=100_000,
    ages=90,
    cold_samples=10,
)
MODELS_QUICK = ModelSizes(
    create=200,
    update=200,
    hot_small=50,
    hot_large=500,
    slow_hot=100,
    objects=2_000,
    ages=90,
    cold_samples=2,
)


def model_sizes(quick: bool) -> ModelSizes:
    return MODELS_QUICK if quick else MODELS_FULL


def unavailable_reason(library: str) -> str | None:
    """Why a case of the models family cannot run here, or None."""
    if library == "everstore":
        if importlib.util.find_spec("pydantic") is None:
            return "pydantic is not installed: pip install 'everstore[models]'"
        try:
            from everstore import models
        except ImportError as exc:
            return f"everstore.models cannot be imported: {exc}"
        if not hasattr(models, "ModelStore"):
            return "everstore.models has no ModelStore yet (issue 9)"
        return None
    if library == "slowstore":
        try:
            version = metadata.version("slowstore")
        except metadata.PackageNotFoundError:
            version = None
        if version != SLOWSTORE_VERSION:
            return f"needs slowstore {SLOWSTORE_VERSION} (found {version}): pip install '.[bench]'"
        return None
    if library == "sqlalchemy":
        try:
            version = metadata.version("sqlalchemy")
        except metadata.PackageNotFoundError:
            version = None
        if version is None or not version.startswith("2."):
            return f"needs SQLAlchemy 2 (found {version}): pip install '.[bench]'"
        return None
    return None


# -- the objects -------------------------------------------------------------------------


def user_fields(i: int, ages: int) -> dict[str, Any]:
    """Object ``i`` of a data set: unique name and email, ``ages`` distinct ages (so an
    age is shared by objects / ages of them), scores 0..99 (not indexed)."""
    return {
        "name": f"u{i:06d}",
        "age": i % ages,
        "email": f"u{i:06d}@example.com",
        "active": i % 2 == 0,
        "score": (i * 7919) % 100,
    }


def key_of(i: int) -> str:
    return f"u{i:06d}"


def _filter_pred(u: Any) -> bool:
    return bool(u.score >= 95)  # 5 % of the objects


#: the range query: the two highest ages (2 / ages of the objects)
def _range_low(sz: ModelSizes) -> int:
    return sz.ages - 2


@functools.cache
def pydantic_user() -> Any:
    from pydantic import BaseModel

    class User(BaseModel):
        name: str
        age: int = 0
        email: str = ""
        active: bool = True
        score: int = 0

    return User


def timed_once(run: Callable[[], Any]) -> float:
    start = perf()
    run()
    return perf() - start


# -- everstore ---------------------------------------------------------------------------


def _es_open(directory: Path) -> Any:
    from everstore.models import ModelStore

    user = pydantic_user()
    return ModelStore[user](  # type: ignore[valid-type]
        user, str(directory), key_selector=lambda u: u.name, indexes=["age", "email"]
    )


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _es_fill(store: Any, first: int, count: int, ages: int) -> list[Any]:
    """Add ``count`` objects, in transactions of 1,000 where the store has them."""
    proxies: list[Any] = []
    transaction = getattr(store, "transaction", None)
    for start in range(first, first + count, 1000):
        stop = min(first + count, start + 1000)
        with transaction() if transaction is not None else contextlib.nullcontext():
            proxies.extend(store.add(**user_fields(i, ages)) for i in range(start, stop))
    return proxies


def models_everstore(config: Config) -> Metrics:
    sz = model_sizes(config.quick)
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        counter = iter(range(1_000_000))

        def fresh() -> Any:
            return _es_open(scratch / f"es-{next(counter)}")

        def create(store: Any) -> None:
            for i in range(sz.create):
                store.add(**user_fields(i, sz.ages))

        out["create_us"] = 1e6 * timed_loops(fresh, create, sz.create, config.min_time, _close)

        def filled() -> tuple[Any, list[Any]]:
            store = fresh()
            return store, _es_fill(store, 0, sz.update, sz.ages)

        def update_each(state: tuple[Any, list[Any]]) -> None:
            for p in state[1]:
                p.age = p.age + 1

        out["update_us"] = 1e6 * timed_loops(
            filled, update_each, sz.update, config.min_time, lambda s: _close(s[0])
        )

        def one(count: int) -> Callable[[tuple[Any, list[Any]]], None]:
            def run(state: tuple[Any, list[Any]]) -> None:
                p = state[1][0]
                for i in range(count):
                    p.age = i

            return run

        def single() -> tuple[Any, list[Any]]:
            store = fresh()
            return store, [store.add(**user_fields(0, sz.ages))]

        for label, count in (("hot_small_s", sz.hot_small), ("hot_large_s", sz.hot_large)):
            per = timed_loops(single, one(count), count, config.min_time, lambda s: _close(s[0]))
            out[label] = per * count
        out["hot_linearity"] = out["hot_large_s"] / out["hot_small_s"] * sz.hot_small / sz.hot_large

        data = scratch / "es-query"
        store = _es_open(data)
        start = perf()
        _es_fill(store, 0, sz.objects, sz.ages)
        out["build_s"] = perf() - start
        _close(store)
        # The objects of the closed store are garbage the cyclic collector frees at
        # its next full collection: made now, so that the query phase's figures (and
        # the peak RSS) are its own, not the build's leftovers.
        del store
        gc.collect()
        out.update(cold_open("everstore", data, config, sz))
        store = _es_open(data)
        probe = key_of(sz.objects // 2)
        out["first_query_s"] = timed_once(lambda: list(store.where(email=f"{probe}@example.com")))
        out.update(_query_metrics(store, config, sz, everstore=True))
        _close(store)
    return out


def _query_metrics(store: Any, config: Config, sz: ModelSizes, everstore: bool) -> Metrics:
    """filter, indexed equality (one object, objects / ages), range: on everstore with
    where(); on slowstore with the filter scan it offers instead."""
    rng = random.Random(5)
    keys = [key_of(rng.randrange(sz.objects)) for _ in range(1000)]
    ages = [rng.randrange(sz.ages) for _ in range(100)]
    low = _range_low(sz)
    expected_range = sum(1 for i in range(sz.objects) if i % sz.ages >= low)

    if everstore:

        def eq1(email: str) -> list[Any]:
            return list(store.where(email=email))

        def eq_many(age: int) -> list[Any]:
            return list(store.where(age=age))

        def in_range() -> list[Any]:
            return list(store.where(age__gte=low))

    else:

        def eq1(email: str) -> list[Any]:
            return list(store.filter(lambda u: u.email == email))

        def eq_many(age: int) -> list[Any]:
            return list(store.filter(lambda u: u.age == age))

        def in_range() -> list[Any]:
            return list(store.filter(lambda u: u.age >= low))

    found = list(store.filter(_filter_pred))
    assert len(found) == sum(1 for i in range(sz.objects) if (i * 7919) % 100 >= 95), len(found)
    assert len(eq1(f"{keys[0]}@example.com")) == 1
    assert len(in_range()) == expected_range

    def filter_scan() -> None:
        list(store.filter(_filter_pred))

    eq_rounds = len(keys) if everstore else 3

    def eq1_batch() -> None:
        for key in keys[:eq_rounds]:
            eq1(f"{key}@example.com")

    def eq_many_batch() -> None:
        for age in ages[: 10 if everstore else 1]:
            eq_many(age)

    return {
        "filter_ms": 1e3 * timed_batches(filter_scan, 1, config.min_time),
        "eq1_us": 1e6 * timed_batches(eq1_batch, eq_rounds, config.min_time),
        "eq_many_ms": 1e3 * timed_batches(eq_many_batch, 10 if everstore else 1, config.min_time),
        "range_ms": 1e3 * timed_batches(in_range, 1, config.min_time),
    }


# -- slowstore ---------------------------------------------------------------------------


def _slowstore() -> Any:
    import typing

    if not hasattr(typing, "override"):  # slowstore 2.2.1 imports it; Python 3.12+ has it
        typing.override = lambda f: f  # type: ignore[attr-defined]
    import slowstore  # type: ignore[import-untyped]

    return slowstore


def _ss_open(directory: Path) -> Any:
    slowstore = _slowstore()
    user = pydantic_user()
    return slowstore.Store[user](user, str(directory), key_selector=lambda u: u.name)


def _ss_fill(store: Any, count: int, ages: int) -> list[Any]:
    user = pydantic_user()
    store.save_on_change = False
    proxies = [store.set(user(**user_fields(i, ages))) for i in range(count)]
    store.commit_all()
    store.save_on_change = True
    return proxies


def _cached_dataset(config: Config, library: str, version: str) -> Path:
    sz = model_sizes(config.quick)
    return config.workdir / f"models-{library}-{version}-{sz.objects}"


def models_slowstore(config: Config) -> Metrics:
    sz = model_sizes(config.quick)
    user = pydantic_user()
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        counter = iter(range(1_000_000))

        def fresh() -> Any:
            return _ss_open(scratch / f"ss-{next(counter)}")

        def create(store: Any) -> None:
            for i in range(sz.create):
                store.set(user(**user_fields(i, sz.ages)))

        out["create_us"] = 1e6 * timed_loops(fresh, create, sz.create, config.min_time)

        def filled() -> tuple[Any, list[Any]]:
            store = fresh()
            return store, _ss_fill(store, sz.update, sz.ages)

        def update_each(state: tuple[Any, list[Any]]) -> None:
            for p in state[1]:
                p.age = p.age + 1

        out["update_us"] = 1e6 * timed_loops(filled, update_each, sz.update, config.min_time)

        def single() -> Any:
            store = fresh()
            return store.set(user(**user_fields(0, sz.ages)))

        def hot(count: int) -> float:
            p = single()
            start = perf()
            for i in range(count):
                p.age = i
            return perf() - start

        # Timed once each: 1,000 updates take seconds, 2,000 about four times as long.
        out["hot_small_s"] = hot(sz.hot_small)
        measured = hot(sz.slow_hot)
        out["hot_measured_s"] = measured
        out["hot_measured_n"] = float(sz.slow_hot)
        out["hot_large_s"] = measured * (sz.hot_large / sz.slow_hot) ** 2  # extrapolated
        out["hot_large_extrapolated"] = 1.0

    data = _cached_dataset(config, "slowstore", SLOWSTORE_VERSION)
    if not data.exists():
        building = data.with_suffix(".building")
        shutil.rmtree(building, ignore_errors=True)
        start = perf()
        _ss_fill(_ss_open(building), sz.objects, sz.ages)
        out["build_s"] = perf() - start
        building.rename(data)
    out.update(cold_open("slowstore", data, config, sz))
    store = _ss_open(data)
    probe = key_of(sz.objects // 2)
    out["first_query_s"] = timed_once(
        lambda: list(store.filter(lambda u: u.email == f"{probe}@example.com"))
    )
    out.update(_query_metrics(store, config, sz, everstore=False))
    return out


# -- SQLAlchemy --------------------------------------------------------------------------


@functools.cache
def sqlalchemy_classes() -> tuple[Any, Any, Any]:
    """(Base, User, History): the mapped classes, and the listener that writes one
    history row per changed field in the flush of the change."""
    from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, event, inspect
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    # Declared without Mapped[] annotations: this module's annotations are strings
    # (``from __future__ import annotations``), which a class made in a function
    # cannot have resolved.
    class Base(DeclarativeBase):
        pass

    class User(Base):
        __tablename__ = "users"
        id = mapped_column(Integer, primary_key=True)
        name = mapped_column(String, unique=True, nullable=False)
        age = mapped_column(Integer, index=True, nullable=False)
        email = mapped_column(String, index=True, nullable=False)
        active = mapped_column(Boolean, nullable=False)
        score = mapped_column(Integer, nullable=False)

    class History(Base):
        __tablename__ = "user_history"
        id = mapped_column(Integer, primary_key=True)
        user_name = mapped_column(ForeignKey("users.name"), index=True, nullable=False)
        kind = mapped_column(String, nullable=False)
        prop_name = mapped_column(String, nullable=True)
        prev_val = mapped_column(JSON, nullable=True)
        new_val = mapped_column(JSON, nullable=True)
        date = mapped_column(Float, nullable=False)

    @event.listens_for(Session, "before_flush")
    def record_history(session: Session, context: Any, instances: Any) -> None:
        now = time.time()
        for obj in list(session.new):
            if isinstance(obj, User):
                session.add(History(user_name=obj.name, kind="ADD", date=now))
        for obj in list(session.dirty):
            if not isinstance(obj, User):
                continue
            state = inspect(obj)
            for attr in state.attrs:
                changed = attr.history
                if changed.added:
                    session.add(
                        History(
                            user_name=obj.name,
                            kind="UPDATE",
                            prop_name=attr.key,
                            prev_val=changed.deleted[0] if changed.deleted else None,
                            new_val=changed.added[0],
                            date=now,
                        )
                    )

    return Base, User, History


def sqlalchemy_engine(path: Path) -> Any:
    from sqlalchemy import create_engine, event

    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def settings(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _sa_fresh(path: Path) -> tuple[Any, Any]:
    from sqlalchemy.orm import Session

    base, _, _ = sqlalchemy_classes()
    engine = sqlalchemy_engine(path)
    base.metadata.create_all(engine)
    return engine, Session(engine, expire_on_commit=False)


def _sa_fill(session: Any, count: int, ages: int, each: bool = False) -> list[Any]:
    _, user, _ = sqlalchemy_classes()
    users: list[Any] = []
    for i in range(count):
        users.append(user(**user_fields(i, ages)))
        session.add(users[-1])
        if each or (i + 1) % 10_000 == 0:
            session.commit()
    session.commit()
    return users


def models_sqlalchemy(config: Config) -> Metrics:
    from sqlalchemy import func, select

    sz = model_sizes(config.quick)
    _, user, history = sqlalchemy_classes()
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        counter = iter(range(1_000_000))

        def fresh() -> tuple[Any, Any, Path]:
            path = scratch / f"sa-{next(counter)}.db"
            return (*_sa_fresh(path), path)

        def teardown(state: tuple[Any, ...]) -> None:
            engine, session, path = state[:3]
            session.close()
            engine.dispose()
            remove_db(path)

        def create(state: tuple[Any, Any, Path]) -> None:
            session = state[1]
            for i in range(sz.create):
                session.add(user(**user_fields(i, sz.ages)))
                session.commit()

        out["create_us"] = 1e6 * timed_loops(fresh, create, sz.create, config.min_time, teardown)

        def filled() -> tuple[Any, Any, Path, list[Any]]:
            engine, session, path = fresh()
            return engine, session, path, _sa_fill(session, sz.update, sz.ages)

        def update_each(state: tuple[Any, Any, Path, list[Any]]) -> None:
            session = state[1]
            for u in state[3]:
                u.age = u.age + 1
                session.commit()

        out["update_us"] = 1e6 * timed_loops(
            filled, update_each, sz.update, config.min_time, teardown
        )
        # The history rows are really there, one per change.
        engine, session, path, users = filled()
        update_each((engine, session, path, users))
        rows = session.scalar(select(func.count()).select_from(history))
        assert rows == 2 * sz.update, rows
        teardown((engine, session, path))

        def single() -> tuple[Any, Any, Path, list[Any]]:
            engine, session, path = fresh()
            return engine, session, path, _sa_fill(session, 1, sz.ages)

        def one(count: int) -> Callable[[tuple[Any, Any, Path, list[Any]]], None]:
            def run(state: tuple[Any, Any, Path, list[Any]]) -> None:
                session, u = state[1], state[3][0]
                for i in range(count):
                    u.age = i
                    session.commit()

            return run

        for label, count in (("hot_small_s", sz.hot_small), ("hot_large_s", sz.hot_large)):
            per = timed_loops(single, one(count), count, config.min_time, teardown)
            out[label] = per * count
        out["hot_linearity"] = out["hot_large_s"] / out["hot_small_s"] * sz.hot_small / sz.hot_large

    data = _cached_dataset(config, "sqlalchemy", metadata.version("sqlalchemy")).with_suffix(".db")
    if not data.exists():
        building = data.with_suffix(".building")
        remove_db(building)
        engine, session = _sa_fresh(building)
        start = perf()
        _sa_fill(session, sz.objects, sz.ages)
        out["build_s"] = perf() - start
        session.close()
        engine.dispose()
        building.rename(data)
    out.update(cold_open("sqlalchemy", data, config, sz))
    from sqlalchemy.orm import Session

    engine = sqlalchemy_engine(data)
    rng = random.Random(5)
    keys = [key_of(rng.randrange(sz.objects)) for _ in range(1000)]
    ages = [rng.randrange(sz.ages) for _ in range(100)]
    low = _range_low(sz)
    with Session(engine) as session:
        probe = key_of(sz.objects // 2)
        out["first_query_s"] = timed_once(
            lambda: session.scalars(select(user).where(user.email == f"{probe}@example.com")).all()
        )

        # A predicate on an unindexed column, written as SQL: the scan a user would write.
        def filter_scan() -> None:
            session.scalars(select(user).where(user.score >= 95)).all()

        def eq1_batch() -> None:
            for key in keys:
                found = session.scalars(select(user).where(user.email == f"{key}@example.com"))
                found.all()

        def eq_many_batch() -> None:
            for age in ages[:10]:
                session.scalars(select(user).where(user.age == age)).all()

        def in_range() -> None:
            session.scalars(select(user).where(user.age >= low)).all()

        assert len(session.scalars(select(user).where(user.age >= low)).all()) == sum(
            1 for i in range(sz.objects) if i % sz.ages >= low
        )
        out["filter_ms"] = 1e3 * timed_batches(filter_scan, 1, config.min_time)
        out["eq1_us"] = 1e6 * timed_batches(eq1_batch, len(keys), config.min_time)
        out["eq_many_ms"] = 1e3 * timed_batches(eq_many_batch, 10, config.min_time)
        out["range_ms"] = 1e3 * timed_batches(in_range, 1, config.min_time)
    engine.dispose()
    return out


# -- raw sqlite3: the floor ------------------------------------------------------------------


_RAW_SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, age INTEGER NOT NULL,
    email TEXT NOT NULL, active INTEGER NOT NULL, score INTEGER NOT NULL);
CREATE INDEX users_age ON users(age);
CREATE INDEX users_email ON users(email);
CREATE TABLE user_history (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL, kind TEXT NOT NULL,
    prop_name TEXT, prev_val TEXT, new_val TEXT, date REAL NOT NULL);
CREATE INDEX user_history_name ON user_history(user_name);
"""
_RAW_USER = "INSERT INTO users(name, age, email, active, score) VALUES (?, ?, ?, ?, ?)"
#: the shape of everstore's SQLite log (without its append-only triggers)
_RAW_LOG_SCHEMA = """
CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE log (seq INTEGER PRIMARY KEY, time REAL NOT NULL, ns INTEGER NOT NULL,
    field INTEGER NOT NULL, ctx INTEGER NOT NULL, data BLOB);
CREATE INDEX log_ns_field ON log(ns, field, seq);
"""
_RAW_NAME = "INSERT INTO names(name) VALUES (?)"
_RAW_FACTS = "INSERT INTO log(time, ns, field, ctx, data) VALUES " + ",".join(["(?,?,?,?,?)"] * 5)


def _raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _raw_fresh(path: Path, count: int, ages: int) -> sqlite3.Connection:
    conn = _raw_connect(path)
    conn.executescript(_RAW_SCHEMA)
    conn.execute("BEGIN")
    conn.executemany(_RAW_USER, (tuple(user_fields(i, ages).values()) for i in range(count)))
    conn.execute("COMMIT")
    return conn


def models_raw(config: Config) -> Metrics:
    sz = model_sizes(config.quick)
    out: Metrics = {}
    with scratch_dir(config) as scratch:
        counter = iter(range(1_000_000))

        def fresh(count: int) -> Callable[[], tuple[sqlite3.Connection, Path]]:
            def make() -> tuple[sqlite3.Connection, Path]:
                path = scratch / f"raw-{next(counter)}.db"
                return _raw_fresh(path, count, sz.ages), path

            return make

        def teardown(state: tuple[sqlite3.Connection, Path]) -> None:
            state[0].close()
            remove_db(state[1])

        def insert_each(state: tuple[sqlite3.Connection, Path]) -> None:
            execute = state[0].execute
            for i in range(sz.create):
                execute(_RAW_USER, tuple(user_fields(i, sz.ages).values()))

        out["commit_us"] = 1e6 * timed_loops(
            fresh(0), insert_each, sz.create, config.min_time, teardown
        )

        def log_fresh() -> tuple[sqlite3.Connection, Path]:
            path = scratch / f"raw-{next(counter)}.db"
            conn = _raw_connect(path)
            conn.executescript(_RAW_LOG_SCHEMA)
            return conn, path

        def create_each(state: tuple[sqlite3.Connection, Path]) -> None:
            execute = state[0].execute
            for i in range(sz.create):
                fields = user_fields(i, sz.ages)
                now = time.time()
                execute("BEGIN")
                ns = execute(_RAW_NAME, (f"User/{fields['name']}",)).lastrowid
                rows: list[Any] = []
                for field, value in enumerate(fields.values()):
                    rows += (now, ns, field, 1, json.dumps(value).encode())
                execute(_RAW_FACTS, rows)
                execute("COMMIT")

        out["create_floor_us"] = 1e6 * timed_loops(
            log_fresh, create_each, sz.create, config.min_time, teardown
        )

        def update_each(state: tuple[sqlite3.Connection, Path]) -> None:
            execute = state[0].execute
            for i in range(sz.update):
                name = key_of(i)
                age = i % sz.ages
                execute("BEGIN")
                execute("UPDATE users SET age = ? WHERE name = ?", (age + 1, name))
                execute(
                    "INSERT INTO user_history(user_name, kind, prop_name, prev_val, new_val,"
                    " date) VALUES (?, 'UPDATE', 'age', ?, ?, ?)",
                    (name, json.dumps(age), json.dumps(age + 1), time.time()),
                )
                execute("COMMIT")

        out["update_history_us"] = 1e6 * timed_loops(
            fresh(sz.update), update_each, sz.update, config.min_time, teardown
        )

        conn = _raw_fresh(scratch / "raw-query.db", sz.objects, sz.ages)
        rng = random.Random(5)
        keys = [key_of(rng.randrange(sz.objects)) for _ in range(1000)]
        ages = [rng.randrange(sz.ages) for _ in range(100)]

        def eq1_fetch() -> None:
            for key in keys:
                conn.execute(
                    "SELECT * FROM users WHERE email = ?", (f"{key}@example.com",)
                ).fetchall()

        def eq_many_batch() -> None:
            for age in ages[:10]:
                conn.execute("SELECT * FROM users WHERE age = ?", (age,)).fetchall()

        def in_range() -> None:
            conn.execute("SELECT * FROM users WHERE age >= ?", (_range_low(sz),)).fetchall()

        out["eq1_us"] = 1e6 * timed_batches(eq1_fetch, len(keys), config.min_time)
        out["eq_many_ms"] = 1e3 * timed_batches(eq_many_batch, 10, config.min_time)
        out["range_ms"] = 1e3 * timed_batches(in_range, 1, config.min_time)
        conn.close()
    return out


# -- cold open: one new process per sample ------------------------------------------------


def cold_open(library: str, data: Path, config: Config, sz: ModelSizes) -> Metrics:
    """Mean over samples (until ``min_time`` seconds of opening, at most
    ``cold_samples``) of a new process that imports, opens ``data`` and reads one
    object: ``cold_import_s``, ``cold_open_first_s``."""
    samples: list[dict[str, float]] = []
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(config.workdir / "pycache")
    key = key_of(sz.objects // 2)
    while len(samples) < sz.cold_samples and (
        sum(s["open_first_s"] for s in samples) < config.min_time or not samples
    ):
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--cold", library, str(data), key],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cold open of {library} failed:\n{done.stdout}{done.stderr}")
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "cold_import_s": statistics.fmean(s["import_s"] for s in samples),
        "cold_open_first_s": statistics.fmean(s["open_first_s"] for s in samples),
        "cold_samples": float(len(samples)),
    }


def cold_child(library: str, path: str, key: str) -> dict[str, float]:
    """One sample, in a fresh process: import, open, read object ``key``'s age."""
    start = perf()
    if library == "everstore":
        from everstore.models import ModelStore

        user = pydantic_user()
        imported = perf()
        store = ModelStore[user](  # type: ignore[valid-type]
            user, path, key_selector=lambda u: u.name, indexes=["age", "email"]
        )
        age = store[key].age
    elif library == "slowstore":
        _slowstore()
        user = pydantic_user()
        imported = perf()
        age = _ss_open(Path(path))[key].age
    elif library == "sqlalchemy":
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        _, user, _ = sqlalchemy_classes()
        imported = perf()
        with Session(sqlalchemy_engine(Path(path))) as session:
            age = session.scalars(select(user).where(user.name == key)).one().age
    else:
        raise ValueError(library)
    done = perf()
    assert isinstance(age, int)
    return {"import_s": imported - start, "open_first_s": done - imported}


CASES: dict[str, Callable[[Config], Metrics]] = {
    "models/everstore": models_everstore,
    "models/slowstore": models_slowstore,
    "models/sqlalchemy": models_sqlalchemy,
    "models/raw": models_raw,
}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--cold":
        print(json.dumps(cold_child(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        print("used by bench/run.py: bench/run.py --only models", file=sys.stderr)
        sys.exit(2)
