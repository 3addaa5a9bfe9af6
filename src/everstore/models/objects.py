"""Objects: the stored objects of one ModelStore, kept in step with the log.

This is the machinery under :class:`~everstore.models.ModelStore` and its proxies:

- each object is a namespace ``prefix + (part,)``; its fields are the model's fields,
  one fact per change (:mod:`.keys` encodes the key as ``part``);
- an object is loaded on first touch (opening reads nothing), into an
  :class:`~.state.ObjectState` shared by all its proxies;
- the first operation that goes through every object (listing, a scan, building an
  index) loads every object's facts in one read of the backend (``Engine.load``) and
  watches the prefix; from then on the fact hook keeps the list of objects current,
  so listing reads nothing more;
- a fact hook marks an object stale when a fact it did not write itself arrives
  (another process, another ModelStore, raw Storage); the next access rebuilds it
  from the log, so proxies always show the log's current state;
- while a thread has a transaction open, it works on its own copy of each object it
  touches (:class:`~.state.Working`): other threads never see uncommitted values, and
  a failed transaction leaves nothing behind.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..engine import AppliedFact, Engine, Namespace, caller_context
from ..errors import MissingFieldError
from .adapters import EXPIRES, RESERVED, Adapter
from .errors import GoneError
from .keys import check_key, decode_key, encode_key
from .query import Condition, matches
from .relations import Ref
from .state import FIELDS, ObjectState, Step, View, Working, merge_steps, own_dirty
from .values import ABSENT, SCALAR_TYPES, Converter, copy_storable, same_value

__all__ = ["Objects", "walk"]

_CONTAINERS = (list, dict, set)


def walk(value: Any, steps: tuple[Any, ...]) -> Any:
    """Follow ``steps`` (``("attr", name)`` or ``("item", key)``) down from ``value``."""
    for kind, key in steps:
        value = getattr(value, key) if kind == "attr" else value[key]
    return value


class Objects:
    """The objects of one ModelStore (see the module's documentation)."""

    def __init__(
        self,
        store: Engine,
        prefix: tuple[str, ...],
        adapter: Adapter,
        *,
        save_on_change: bool,
        optimistic: bool,
        ttl: float | None,
        undo_limit: int | None = 1000,
        make_proxy: Callable[[Objects, ObjectState], Any],
        resolve_ref: Callable[[str, Ref[Any]], Ref[Any]],
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.depth = len(prefix) + 1
        self.adapter = adapter
        self.converter = Converter(store.codec)
        self.save_on_change = save_on_change
        self.optimistic = optimistic
        #: undo steps kept per object (None: all)
        self.undo_limit: int | None = undo_limit
        self.ttl = ttl
        self.make_proxy = make_proxy
        self.resolve_ref = resolve_ref
        self.ref_fields = adapter.ref_fields()
        self.states: dict[str, ObjectState] = {}
        #: the same states by their engine Namespace (what the fact hook is told)
        self.by_namespace: dict[Namespace, ObjectState] = {}
        self.lock = threading.RLock()
        self.local = threading.local()
        #: the ModelStore these objects belong to (set by it)
        self.owner: Any = None
        #: True once the first full load began: the hook records new namespaces
        self.tracking = False
        #: namespace parts under the prefix known to hold facts (complete once
        #: ``ordered`` is not None); added to by the hook, never removed from
        self.known: set[str] = set()
        #: parts the hook added to ``known`` and ``ordered`` does not hold yet
        self.arrivals: deque[str] = deque()
        #: ``known``, sorted; None until the first full load. Replaced, never changed
        #: in place, so that an iteration over it is never disturbed
        self.ordered: list[str] | None = None
        #: the thread running the first full load (its own loading facts are in the
        #: load's answer: the hook does not record them again)
        self.bulk_thread: int | None = None
        self.stop_watch: Callable[[], None] | None = None
        #: parts of objects made ``new`` here (unsaved): checked when listing
        self.unsaved: set[str] = set()
        self.remove_hook = store.add_fact_hook(self.on_fact)

    # -- the fact hook ----------------------------------------------------------------

    def on_fact(self, fact: AppliedFact) -> None:
        """Runs under the engine's lock for every fact applied: records a namespace
        of a new object (once listing is complete), and marks an object stale when
        the fact is not one this ModelStore wrote (never takes a lock)."""
        ns = fact.namespace
        if self.tracking:
            parts = ns.parts
            part = parts[-1]
            if part not in self.known and len(parts) == self.depth and parts[:-1] == self.prefix:
                if not (fact.loading and self.bulk_thread == threading.get_ident()):
                    self.arrivals.append(part)
                self.known.add(part)
        state = self.by_namespace.get(ns)
        if state is not None and fact.rewritten:
            state.stale = True  # an erasure or a prune: read the object again
            return
        if state is None or fact.loading:
            return
        value = fact.value
        field = fact.field
        saved = state.saved
        if (
            field in RESERVED
            or value.unavailable
            or field not in saved
            or not same_value(saved[field], value.data)
        ):
            state.stale = True
        else:
            state.seqs[field] = value.seq

    # -- finding and loading objects ------------------------------------------------------

    def state(self, key: Any = None, part: str | None = None) -> ObjectState:
        """The one state of the object with ``key`` (or namespace ``part``), loading
        its namespace on first touch. The object may not exist: see :meth:`exists`.

        :raises TypeError: for a key that is neither a str nor an int
        """
        if part is None:
            part = encode_key(check_key(key))
        state = self.states.get(part)
        if state is None:
            with self.lock:
                state = self.states.get(part)
                if state is None:
                    ns = self.store.namespace((*self.prefix, part))
                    state = ObjectState(decode_key(part), part, ns)
                    self.by_namespace[ns] = state
                    self.states[part] = state
        return state

    def fresh(self, state: ObjectState) -> ObjectState:
        """``state``, rebuilt from the log first if facts arrived that it lacks."""
        self.store.sync()
        if state.stale and not state.new:
            with state.lock:
                if state.stale and not state.new:
                    self.refresh(state)
        return state

    def refresh(self, state: ObjectState) -> None:
        """Rebuild ``state`` from the log (its changes not saved yet are kept)."""
        state.stale = False
        store = self.store
        ns = state.ns
        values: dict[str, Any] = {}
        seqs: dict[str, int] = {}
        expires = None
        for field in ns.written_fields():
            history = store.history(ns, field)
            if not len(history):
                continue
            last = history[-1]
            seqs[field] = last.seq
            if last.unavailable:
                continue
            if field == EXPIRES:
                expires = last.data
            elif field not in RESERVED:
                values[field] = last.data
        state.seqs = seqs
        if self.optimistic:
            self.remember_seen(state)
        if not values:
            state.live = False
            state.saved = {}
            state.expires = None
            state.error = None
            state.dirty.clear()
            return
        build = values
        if state.dirty and state.model is not None:
            build = dict(values)
            for field in list(state.dirty):
                held = self.adapter.raw(state.model, field)
                mine = ABSENT if held is ABSENT else self.stored(field, held)
                if same_value(mine, values.get(field, ABSENT)):
                    del state.dirty[field]  # the log caught up with the change
                elif mine is ABSENT:
                    build.pop(field, None)
                else:
                    build[field] = mine
        state.saved = values
        state.live = True
        state.expires = expires
        try:
            state.model = self.adapter.build(build)
        except Exception as exc:
            # Kept, not skipped: the object is listed, and touching it raises this
            # until a writer fixes its values (the hook then rebuilds it).
            state.error = exc
            state.model = None
        else:
            state.error = None

    @staticmethod
    def remember_seen(state: ObjectState) -> None:
        """Take the seqs of the values loaded as the ones shown, for fields shown
        nothing of yet (what an optimistic write expects)."""
        seen = state.shown()
        for field, seq in state.seqs.items():
            seen.setdefault(field, seq)

    def set_optimistic(self, value: bool) -> None:
        """Turn optimistic checks on or off. The objects loaded while they were off
        count as shown as they were last loaded."""
        if value and not self.optimistic:
            with self.lock:
                for state in list(self.states.values()):
                    self.remember_seen(state)
        self.optimistic = value

    def in_transaction(self) -> bool:
        store = self.store
        return bool(store.open_transactions) and store.in_transaction()

    def working(self, state: ObjectState) -> Working:
        """The calling thread's copy of ``state`` for its open transaction."""
        local = self.local
        copies: dict[ObjectState, Working] | None = getattr(local, "copies", None)
        if copies is None:
            copies = local.copies = {}
            self.store.on_transaction_end(self.transaction_ended)
        work = copies.get(state)
        if work is None:
            with state.lock:
                self.fresh(state)
                model = self.adapter.copy(state.model) if state.model is not None else None
                work = Working(state, model)
            copies[state] = work
        return work

    def peek(self, state: ObjectState) -> View:
        """The view of ``state`` this thread should read, without making a copy."""
        if self.in_transaction():
            copies: dict[ObjectState, Working] | None = getattr(self.local, "copies", None)
            if copies is not None and state in copies:
                return copies[state]
        return self.fresh(state)

    def view(self, state: ObjectState) -> View:
        """The view of ``state`` this thread reads and changes."""
        if self.in_transaction():
            return self.working(state)
        return self.fresh(state)

    def transaction_ended(self, committed: bool) -> None:
        copies: dict[ObjectState, Working] = self.local.copies or {}
        self.local.copies = None
        if not committed:
            return  # the copies go, and with them every change made in the transaction
        for state, work in copies.items():
            with state.lock:
                if work.steps:
                    state.undo.extend(work.steps)
                    state.redo.clear()
                    limit = self.undo_limit
                    if limit is not None and len(state.undo) > limit:
                        del state.undo[: len(state.undo) - limit]
                for field in work.written:
                    state.dirty.pop(field, None)
                if work.written or work.new != state.new or work.live != state.live:
                    state.new = work.new
                    state.stale = True  # rebuilt from the log on next access

    def alive(self, view: View) -> bool:
        """True if the object exists and has not expired."""
        if not view.live:
            return False
        expires = view.expires
        return expires is None or self.store.clock() < expires

    def check_alive(self, state: ObjectState, view: View) -> None:
        """:raises GoneError: if the object was deleted or has expired
        :raises ValidationError: (or what else building it raised) if its stored values
            do not make an object of the model
        """
        if state.error is not None and view.model is None:
            raise state.error
        if not view.live:
            raise GoneError(
                f"object {state.key!r} does not exist (it was deleted, or never added); "
                f"its history stays readable: store.changes({state.key!r})"
            )
        if view.expires is not None and self.store.clock() >= view.expires:
            raise GoneError(f"object {state.key!r} has expired")

    def exists(self, state: ObjectState) -> bool:
        return self.alive(self.peek(state))

    def listing(self) -> list[str]:
        """Namespace parts of every object in the log (deleted ones too), sorted.

        The first call loads every object's facts in one read of the backend
        (``Engine.load``) and watches the prefix; later calls read nothing: the fact
        hook records the namespaces that get their first fact (this process's
        writes, and other processes' on the sync made here). The list returned is
        never changed afterwards.

        :raises StoreClosedError: if the store is closed
        """
        store = self.store
        store.check_open()
        if self.ordered is None:
            self.load_all()
        store.sync()
        if self.arrivals:
            with self.lock:
                self.take_arrivals()
        ordered = self.ordered
        assert ordered is not None
        return ordered

    def load_all(self) -> None:
        """The first full load (see :meth:`listing`)."""
        with self.lock:
            if self.ordered is not None:
                return
            store = self.store
            if self.stop_watch is None:
                # Before the load: a namespace another process creates after the load's
                # read is then loaded by the catch-up that brings its first fact, and
                # the hook records it.
                self.stop_watch = store.watch(self.prefix)
            # From here on the hook records every new namespace; those the load itself
            # installs (in this thread) are in its answer.
            self.tracking = True
            self.bulk_thread = threading.get_ident()
            try:
                loaded = store.load(self.prefix)
            finally:
                self.bulk_thread = None
            depth = self.depth
            ordered = [ns.parts[-1] for ns in loaded if len(ns.parts) == depth]
            self.known.update(ordered)
            self.ordered = ordered
            self.take_arrivals()

    def namespaces(self) -> list[Namespace]:
        """The namespace of every object in the log (see :meth:`listing`)."""
        namespace = self.store.namespace
        prefix = self.prefix
        return [namespace((*prefix, part)) for part in self.listing()]

    def take_arrivals(self) -> None:
        """Merge the parts the hook recorded into ``ordered`` (under ``self.lock``)."""
        arrivals = self.arrivals
        ordered = self.ordered
        if ordered is None:
            return
        fresh = []
        while True:
            try:
                part = arrivals.popleft()
            except IndexError:
                break
            at = bisect.bisect_left(ordered, part)
            if at == len(ordered) or ordered[at] != part:
                fresh.append(part)
        if fresh:
            merged = ordered + fresh
            merged.sort()  # sorted runs: about linear
            self.ordered = merged

    def parts(self) -> list[str]:
        """Namespace parts of every object that may exist, sorted (the log's, plus
        those added here and not saved yet, plus this thread's transaction's)."""
        found = self.listing()
        known = self.known
        extra = set()
        if self.unsaved:
            for part in list(self.unsaved):
                state = self.states.get(part)
                if state is None or not state.new:
                    self.unsaved.discard(part)
                elif part not in known:
                    extra.add(part)
        copies = getattr(self.local, "copies", None) if self.in_transaction() else None
        if copies:
            extra.update(
                work.state.part
                for work in copies.values()
                if work.live and work.state.part not in known
            )
        if extra:
            return sorted({*found, *extra})
        return found

    def live_states(self) -> Iterator[ObjectState]:
        """Every existing, unexpired object's state, in key-encoding order."""
        states = self.states
        store = self.store
        for part in self.parts():
            state = states.get(part) or self.state(part=part)
            if store.open_transactions:  # this thread's may have a copy of it
                if self.alive(self.peek(state)):
                    yield state
                continue
            if state.stale and not state.new:
                self.fresh(state)
            if state.live and (state.expires is None or store.clock() < state.expires):
                yield state

    def matching(
        self,
        parts: Iterable[str],
        conditions: list[Condition],
        unanswered: list[Condition] | None = None,
    ) -> list[ObjectState]:
        """The states of the objects among ``parts`` that exist, have not expired
        and meet every condition (on stored values, unsaved changes included), in
        the order of ``parts``.

        :param unanswered: the conditions to check on an object whose stored values
            are those the indexes hold (no unsaved change, nothing new in the log
            since the indexes answered): the others are answered by the indexes that
            gave ``parts``. Default: every condition.
        """
        if self.in_transaction():
            return [
                state
                for state in map(self.state_of_part, parts)
                if self.meets(self.peek(state), conditions)
            ]
        if unanswered is None:
            unanswered = conditions
        store = self.store
        store.sync()
        states = self.states
        fields = [condition.field for condition in conditions]
        now = None
        found = []
        for part in parts:
            state = states.get(part) or self.state(part=part)
            checked = unanswered
            if state.stale and not state.new:
                checked = conditions  # the indexes may know less than the rebuilt object
                with state.lock:
                    if state.stale and not state.new:
                        self.refresh(state)
            if not state.live or state.model is None:
                continue
            if state.expires is not None:
                if now is None:
                    now = store.clock()
                if now >= state.expires:
                    continue
            if state.dirty or state.new:
                if matches(self.current_values(state, fields), conditions):
                    found.append(state)
                continue
            if not checked:
                found.append(state)
                continue
            # No unsaved change: the stored values are the ones to compare, unless a
            # field queried has none (the object's default then stands for it).
            values = state.saved
            for condition in checked:
                if condition.field not in values:
                    values = self.current_values(state, fields)
                    break
            if matches(values, checked):
                found.append(state)
        return found

    def state_of_part(self, part: str) -> ObjectState:
        return self.states.get(part) or self.state(part=part)

    def meets(self, view: View, conditions: list[Condition]) -> bool:
        """True if the object ``view`` shows exists and meets every condition."""
        fields = [condition.field for condition in conditions]
        return self.alive(view) and matches(self.current_values(view, fields), conditions)

    def proxy(self, state: ObjectState) -> Any:
        proxy = state.proxy
        if proxy is None:
            proxy = state.proxy = self.make_proxy(self, state)
        return proxy

    # -- reading -------------------------------------------------------------------------

    def stored_values(self, model: Any) -> dict[str, Any]:
        """Field -> stored value, of every field ``model`` holds."""
        adapter = self.adapter
        raw = adapter.raw
        values = {}
        for field in adapter.field_names(model):
            held = raw(model, field)
            if held is not ABSENT:
                values[field] = held if type(held) in SCALAR_TYPES else self.stored(field, held)
        return values

    def stored(self, field: str, value: Any) -> Any:
        """The value stored for ``value`` in ``field``."""
        return self.converter.to_storable(value, self.adapter.lossless(field))

    def model_of(self, state: ObjectState) -> Any:
        """The object as this thread sees it (no liveness check)."""
        return self.view(state).model if self.in_transaction() else self.fresh(state).model

    def read_field(self, state: ObjectState, name: str) -> Any:
        """Field ``name`` of the object, as this thread sees it.

        In a transaction, the read goes through the engine, so a serializable
        transaction checks it at commit, and the copy follows what the transaction
        (or an inner block that failed) did to the field.

        :raises GoneError: if the object was deleted or has expired
        """
        store = self.store
        if store.open_transactions and store.in_transaction():
            work = self.working(state)
            self.check_alive(state, work)
            self.sync_field(work, name)
            value = getattr(work.model, name)
        else:
            store.sync()
            if state.stale and not state.new:
                self.fresh(state)
            if not state.live or state.model is None or state.expires is not None:
                self.check_alive(state, state)
            value = getattr(state.model, name)
            if self.optimistic:
                state.shown()[name] = state.seqs.get(name, 0)
        if type(value) is Ref and name in self.ref_fields:
            return self.resolve_ref(name, value)
        return value

    def sync_field(self, work: Working, name: str) -> None:
        """Bring ``work``'s field in line with the engine's view in this transaction."""
        if name in work.dirty or name in RESERVED:
            return
        try:
            current = self.store.read(work.state.ns, name)
        except MissingFieldError:
            current = ABSENT
        if not same_value(current, work.saved.get(name, ABSENT)):
            self.adapter.load_field(work.model, name, current)
            if current is ABSENT:
                work.saved.pop(name, None)
            else:
                work.saved[name] = copy_storable(current)

    # -- changing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked_view(self, state: ObjectState) -> Iterator[View]:
        """The view to change, with the state's lock held outside a transaction (a
        transaction's copy belongs to one thread)."""
        if self.in_transaction():
            yield self.working(state)
        else:
            with state.lock:
                yield self.fresh(state)

    def assign(self, state: ObjectState, name: str, value: Any, ctx: str | None = None) -> None:
        """``proxy.name = value``: validated, then saved (or kept dirty).

        :raises GoneError: if the object was deleted or has expired
        :raises ValidationError: (pydantic) if the model refuses the value
        :raises UnsupportedValueError: if the value cannot be stored
        On any error the object and the store are unchanged.
        """
        if self.in_transaction():
            self.assign_in(state, self.working(state), name, value, ctx)
        else:
            with state.lock:
                self.assign_in(state, self.fresh(state), name, value, ctx)

    def assign_in(
        self, state: ObjectState, view: View, name: str, value: Any, ctx: str | None
    ) -> None:
        self.check_alive(state, view)
        adapter = self.adapter
        model = view.model
        held = adapter.raw(model, name)
        adapter.assign(model, name, value)
        try:
            after = self.stored(name, adapter.raw(model, name))
            before = self.before(view, name, held)
            if not same_value(before, after):
                self.record(state, view, {name: (before, after)}, ctx=ctx)
        except BaseException:
            adapter.restore(model, name, held)
            raise

    def unset(self, state: ObjectState, name: str, ctx: str | None = None) -> None:
        """``del proxy.name`` (plain classes): the field gets a tombstone."""
        with self.locked_view(state) as view:
            self.check_alive(state, view)
            model = view.model
            held = self.adapter.raw(model, name)
            if held is ABSENT:
                raise AttributeError(f"object {state.key!r} has no field {name!r}")
            before = self.before(view, name, held)
            self.adapter.restore(model, name, ABSENT)
            try:
                self.record(state, view, {name: (before, ABSENT)}, ctx=ctx)
            except BaseException:
                self.adapter.restore(model, name, held)
                raise

    def read_path(self, state: ObjectState, path: tuple[Any, ...]) -> Any:
        """The value a tracked view shows: field ``path[0]``, then attributes
        (``("attr", name)``) and items (``("item", key)``) down ``path[1:]``."""
        return walk(self.read_field(state, path[0]), path[1:])

    def mutate(
        self,
        state: ObjectState,
        path: tuple[Any, ...],
        change: Callable[[Any], Any],
        ctx: str | None = None,
    ) -> Any:
        """Run ``change`` on the value at ``path`` (a tracked view's in-place change),
        then save its field; on any error the field is put back as it was."""
        with self.locked_view(state) as view:
            self.check_alive(state, view)
            name = path[0]
            if view.txn:
                assert isinstance(view, Working)
                self.sync_field(view, name)
            adapter = self.adapter
            model = view.model
            before = self.stored(name, adapter.raw(model, name))
            try:
                result = change(walk(getattr(model, name), path[1:]))
            except BaseException:
                adapter.load_field(model, name, before)
                raise
            self.changed_in_place(state, view, name, before, ctx)
            return result

    def before(self, view: View, name: str, held: Any) -> Any:
        """The stored value of field ``name`` before a change (``held``: the object's
        value then)."""
        if name in view.dirty or name not in view.saved:
            return ABSENT if held is ABSENT else self.stored(name, held)
        return view.saved[name]

    def changed_in_place(
        self, state: ObjectState, view: View, name: str, before: Any, ctx: str | None = None
    ) -> None:
        """A container or nested object in field ``name`` was changed in place (by a
        tracked view): validate the field, then save it like an assignment.

        :param before: the field's stored value before the change (put back on error)
        """
        adapter = self.adapter
        model = view.model
        try:
            if adapter.validates:
                adapter.assign(model, name, adapter.raw(model, name))
            after = self.stored(name, adapter.raw(model, name))
            previous = before if name in view.dirty else view.saved.get(name, before)
            if not same_value(previous, after):
                self.record(state, view, {name: (previous, after)}, ctx=ctx)
        except BaseException:
            adapter.load_field(model, name, before)
            raise

    def record(
        self,
        state: ObjectState,
        view: View,
        changes: dict[str, tuple[Any, Any]],
        kind: str = FIELDS,
        step: bool = True,
        ctx: str | None = None,
    ) -> None:
        """Save ``changes`` (already made to ``view.model``) as the store's settings
        say, and keep them as one undo step (unless ``step`` is False)."""
        if view.txn:
            assert isinstance(view, Working)
            self.write_in_transaction(state, view, {f: a for f, (_, a) in changes.items()}, ctx)
        elif view.new or not self.save_on_change:
            dirty = own_dirty(view)
            for field, (before, after) in changes.items():
                if field not in dirty:
                    dirty[field] = before
                elif same_value(dirty[field], after):
                    del dirty[field]
        else:
            check = {f: self.expected(state, f) for f in changes} if self.optimistic else {}
            self.persist(state, {f: a for f, (_, a) in changes.items()}, check, ctx)
        if step:
            self.push_step(view, Step(kind, changes))

    def push_step(self, view: View, step: Step) -> None:
        if view.group:
            view.grouped.append(step)
            return
        undo = view.undo
        undo.append(step)
        if not view.txn:
            assert isinstance(view, ObjectState)
            view.redo.clear()
            limit = self.undo_limit
            if limit is not None and len(undo) > limit:
                del undo[: len(undo) - limit]

    def write_in_transaction(
        self, state: ObjectState, work: Working, values: dict[str, Any], ctx: str | None = None
    ) -> None:
        store = self.store
        ns = state.ns
        for field, value in values.items():
            if self.optimistic and field not in RESERVED:
                store.expect(ns, field, self.expected(state, field))
            self.write_value(field, value, ns, ctx)
            work.written.add(field)
            if field in RESERVED:
                continue
            if value is ABSENT:
                work.saved.pop(field, None)
            else:
                work.saved[field] = copy_storable(value)
            work.dirty.pop(field, None)

    def expected(self, state: ObjectState, field: str) -> int:
        """The seq an optimistic write of ``field`` expects: that of the value this
        store last showed (or loaded, or wrote)."""
        seen = state.seen
        if seen is not None and field in seen:
            return seen[field]
        return state.seqs.get(field, 0)

    def persist(
        self,
        state: ObjectState,
        values: dict[str, Any],
        check: dict[str, int] | None = None,
        ctx: str | None = None,
    ) -> None:
        """Write ``values`` (ABSENT: a tombstone) to the log now, in one commit; with
        ``check`` (field -> seq), only if those fields are still at those seqs.

        :raises ConflictError: if a checked field was changed by another writer
        """
        saved = state.saved
        before = {field: saved.get(field, ABSENT) for field in values if field not in RESERVED}
        for field in before:
            value = values[field]
            if value is ABSENT:
                saved.pop(field, None)
            else:
                saved[field] = value  # so that the hook knows the fact as ours
        store = self.store
        ns = state.ns
        try:
            if len(values) == 1 and not check:
                ((field, value),) = values.items()
                if value is ABSENT:
                    if ns.available(field):
                        store.delete(ns, field, ctx)
                elif type(value) not in _CONTAINERS:
                    store.write(ns, field, value, ctx)
                else:
                    with self.block(ctx):
                        self.write_value(field, value, ns, ctx)
            else:
                with self.block(ctx):
                    for field, seq in (check or {}).items():
                        store.expect(ns, field, seq)
                    for field, value in values.items():
                        self.write_value(field, value, ns, ctx)
        except BaseException:
            for field, value in before.items():
                if value is ABSENT:
                    saved.pop(field, None)
                else:
                    saved[field] = value
            state.stale = True
            raise
        if self.optimistic:
            seqs = state.seqs
            seen = state.shown()
            for field in values:
                if field in seqs:
                    seen[field] = seqs[field]

    def write_value(self, field: str, value: Any, ns: Any, ctx: str | None = None) -> None:
        """One field's write inside the open transaction; a changed container is
        changed in place, so that the engine stores a delta where it can."""
        store = self.store
        if value is ABSENT:
            if store.has(ns, field):
                store.delete(ns, field, ctx)
            return
        kind = type(value)
        if kind in _CONTAINERS and ns.available(field) and field not in ns.current:
            current = store.read(ns, field)
            if kind is list and isinstance(current, list):
                current[:] = value
                return
            if kind is dict and isinstance(current, dict):
                current.clear()
                current.update(value)
                return
            if kind is set and isinstance(current, set):
                current.clear()
                current.update(value)
                return
        store.write(ns, field, value, ctx)

    def block(self, ctx: str | None = None) -> _Block:
        """``with objects.block(ctx)``: a transaction for the layer's own multi-fact
        writes: atomic (the layer checks what it must with expect()), or the caller's
        open one."""
        return _Block(self.store, ctx)

    @contextlib.contextmanager
    def operation(self, ctx: str | None = None) -> Iterator[None]:
        """A serializable transaction (or the caller's open one) for an operation
        whose reads must still hold when it commits (a method call)."""
        store = self.store
        store.begin()
        failed = True
        try:
            yield
            failed = False
        finally:
            store.end(failed, ctx or caller_context())

    # -- operations: method calls --------------------------------------------------------

    def call(
        self,
        state: ObjectState,
        function: Callable[..., Any],
        proxy: Any,
        args: Any,
        kwargs: Any,
        ctx: str | None = None,
    ) -> Any:
        """Run a method of the model with the proxy as ``self``: its changes are one
        undo step; with save_on_change, it runs in a transaction (all of its changes
        are saved together, or none if it raises)."""
        if self.save_on_change and not state.new:
            with self.operation(ctx):
                work = self.working(state)
                return self.grouped(work, function, proxy, args, kwargs)
        with self.locked_view(state) as view:
            return self.grouped(view, function, proxy, args, kwargs)

    def grouped(
        self, view: View, function: Callable[..., Any], proxy: Any, args: Any, kwargs: Any
    ) -> Any:
        view.group += 1
        try:
            return function(proxy, *args, **kwargs)
        finally:
            view.group -= 1
            if not view.group and view.grouped:
                steps = merge_steps(view.grouped)
                view.grouped = []
                for step in steps:
                    self.push_step(view, step)

    def is_dirty(self, state: ObjectState) -> bool:
        view = self.peek(state)
        return bool(view.new or view.dirty)

    def current_values(self, view: View, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """The object's stored values (of ``fields``, or all) as ``view`` shows them
        (its unsaved changes included); empty if it does not exist."""
        if not view.live or view.model is None:
            return {}
        adapter = self.adapter
        model = view.model
        values = {}
        for field in adapter.field_names(model) if fields is None else fields:
            held = adapter.raw(model, field)
            if held is not ABSENT:
                values[field] = self.before(view, field, held)
        return values

    def close(self) -> None:
        self.remove_hook()
        if self.stop_watch is not None:
            self.stop_watch()


# A class, not a generator: a write of several fields enters it, and a generator-based
# context manager costs several times more to enter and leave.


class _Block:
    """What :meth:`Objects.block` returns."""

    __slots__ = ("ctx", "store")

    def __init__(self, store: Engine, ctx: str | None) -> None:
        self.store = store
        self.ctx = ctx

    def __enter__(self) -> None:
        store = self.store
        store.begin(None if store.in_transaction() else "atomic")

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.store.end(kind is not None, self.ctx or caller_context())
