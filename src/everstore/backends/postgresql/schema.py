"""The store's SQL: its tables, functions and statements, and the schema's versions.

The layout, and why the commit step is written as it is, are in docs/postgresql.md.
Every name is rendered for one store (schema, prefix, notification channel) when the
backend opens. A schema is created, or migrated from an older version, in one
transaction under an advisory lock on the schema's name, so that processes opening
the store at the same moment do not race. Nothing here imports psycopg: the backend
passes the module in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from ...errors import SchemaError
from .wire import error_text

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "Place", "ensure_schema", "render_sql"]

#: the version of the layout this release writes (PostgreSQL's own; versions up to 3
#: are shared with SQLite's numbering, see docs/postgresql.md)
SCHEMA_VERSION = 5

#: relation-name suffixes (``barrier`` is a sequence); every one of them is checked
#: for foreign relations
TABLES = (
    "meta",
    "log",
    "namespaces",
    "fields",
    "contexts",
    "counter",
    "blobs",
    "barrier",
    "chain",
)


#: Each table's columns and their types in this release's layout (SCHEMA_VERSION),
#: checked when a store opens: another program's tables of our names, or a store
#: partly dropped, are refused then rather than failing (or reading wrong) later.
#: Any column added by a migration step is added here too (a test opens a created
#: schema and a migrated one, so the two cannot drift apart).
_LAYOUT: dict[str, dict[str, str]] = {
    "meta": {"key": "text", "value": "text"},
    "log": {
        "seq": "bigint",
        "time": "double precision",
        "ns": "integer",
        "field": "integer",
        "ctx": "integer",
        "data": "bytea",
    },
    **{name: {"id": "integer", "name": "text"} for name in ("namespaces", "fields", "contexts")},
    "counter": {
        "id": "boolean",
        "seq": "bigint",
        "time": "double precision",
        "armed": "boolean",
        "notified": "boolean",
        "chain": "bytea",
    },
    "blobs": {"digest": "bytea", "data": "bytea"},
    "chain": {"seq_last": "bigint", "link": "bytea"},
}

#: The relations that are not tables (relkind in pg_class)
_SEQUENCES = ("barrier",)


class Place(NamedTuple):
    """Where a store lives."""

    #: the PostgreSQL schema holding its tables
    schema: str
    #: the start of every table name
    prefix: str
    #: the server, for messages (the conninfo without its password)
    server: str


_INTERNING = "".join(
    f"""
  INSERT INTO {{t_{table}}}(name)
    SELECT DISTINCT u.name FROM unnest(p_{column}) AS u(name)
    WHERE NOT EXISTS (SELECT 1 FROM {{t_{table}}} AS t WHERE t.name = u.name)
    ORDER BY 1
    ON CONFLICT (name) DO NOTHING;"""
    for table, column in (("namespaces", "ns"), ("fields", "field"), ("contexts", "ctx"))
)

#: everstore_append: the general commit step (see docs/postgresql.md)
_APPEND_BODY = (
    """
DECLARE
  cnt integer := cardinality(p_ns);
  failed bigint;
  actual bigint;
  wake boolean;
  times bytea;
  link bytea;
BEGIN
  IF cnt IS NULL OR cnt = 0 THEN
    RAISE EXCEPTION 'everstore: nothing to append' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- 1. Intern the names, before taking the counter lock. Sorted, so that concurrent
  --    writers wait on each other's new names in one order (no deadlock); only the
  --    missing ones, so that the identity sequences are not burnt by conflicts."""
    + _INTERNING
    + """
  SELECT array_agg(tn.id ORDER BY w.ord), array_agg(tf.id ORDER BY w.ord),
         array_agg(tc.id ORDER BY w.ord)
    INTO ns_ids, field_ids, ctx_ids
    FROM unnest(p_ns, p_field, p_ctx) WITH ORDINALITY AS w(ns, field, ctx, ord)
    JOIN {t_namespaces} AS tn ON tn.name = w.ns
    JOIN {t_fields} AS tf ON tf.name = w.field
    JOIN {t_contexts} AS tc ON tc.name = w.ctx;
  IF coalesce(cardinality(ns_ids), 0) <> cnt THEN
    RAISE EXCEPTION 'everstore: % of % writes found their interned names',
      coalesce(cardinality(ns_ids), 0), cnt;
  END IF;
  -- 2. The commit step: lock the one counter row. A concurrent writer waits here
  --    until we have committed, then reads our new seq: seqs follow commit order.
  SELECT c.seq, c.time INTO first_seq, base_time FROM {t_counter} AS c FOR UPDATE;
  -- 3. Conditional writes: under the lock, nobody can commit between check and write.
  IF cardinality(p_expect_ns) > 0 THEN
    SELECT e.ord, coalesce(a.latest, 0) INTO failed, actual
    FROM unnest(p_expect_ns, p_expect_field, p_expect_seq)
         WITH ORDINALITY AS e(ns, field, seq, ord)
    CROSS JOIN LATERAL (
      SELECT max(l.seq) AS latest FROM {t_log} AS l
      WHERE l.ns = (SELECT t.id FROM {t_namespaces} AS t WHERE t.name = e.ns)
        AND l.field = (SELECT t.id FROM {t_fields} AS t WHERE t.name = e.field)
    ) AS a
    WHERE coalesce(a.latest, 0) <> e.seq
    ORDER BY e.ord LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'everstore: conditional write refused'
        USING ERRCODE = 'EV409', DETAIL = failed::text, HINT = actual::text;
    END IF;
  END IF;
  -- 4. Seqs and times, the counter and the chain's next link (docs/integrity.md:
  --    the client hashed names and data, p_hash; seqs and times are bound here); a
  --    notification only if a listener armed the counter (docs/postgresql.md,
  --    "Change notification"). The commit follows at once.
  INSERT INTO {t_log}(seq, time, ns, field, ctx, data)
    SELECT first_seq + w.ord, greatest(base_time, max(w.t) OVER (ORDER BY w.ord)),
           w.ns, w.field, w.ctx, w.data
    FROM unnest(ns_ids, field_ids, ctx_ids, p_data, p_time)
         WITH ORDINALITY AS w(ns, field, ctx, data, t, ord);
  SELECT string_agg(float8send(l.time), ''::bytea ORDER BY l.seq) INTO times
    FROM {t_log} AS l WHERE l.seq > first_seq AND l.seq <= first_seq + cnt;
  UPDATE {t_counter} SET seq = first_seq + cnt,
    time = greatest(base_time, (SELECT max(x) FROM unnest(p_time) AS x)),
    chain = sha256(chain || int8send(first_seq + 1) || int8send(cnt::int8) || times || p_hash),
    notified = armed, armed = false
    RETURNING notified, chain INTO wake, link;
  INSERT INTO {t_chain}(seq_last, link) VALUES (first_seq + cnt, link);
  IF wake THEN
    PERFORM pg_notify({channel}, (first_seq + cnt)::text || ' ' || coalesce(p_tag, ''));
  END IF;
END
"""
)

#: everstore_seq_at_time
_SEQ_AT_TIME_BODY = """
DECLARE
  lo bigint := 0;
  hi bigint;
  mid bigint;
  found_time float8;
BEGIN
  -- times never decrease in seq order: a binary search over the primary key
  SELECT c.seq INTO hi FROM {t_counter} AS c;
  WHILE lo < hi LOOP
    mid := (lo + hi + 1) / 2;
    SELECT l.time INTO found_time FROM {t_log} AS l WHERE l.seq >= mid ORDER BY l.seq LIMIT 1;
    IF FOUND AND found_time <= p_when THEN
      lo := mid;
    ELSE
      hi := mid - 1;
    END IF;
  END LOOP;
  RETURN lo;
END
"""

_REFUSE_BODY = """
BEGIN
  -- The sanctioned rewrites (erasure, retention: docs/integrity.md) set
  -- everstore.rewrite for their own transaction; nothing else does.
  IF TG_LEVEL = 'ROW' AND current_setting('everstore.rewrite', true) = 'on' THEN
    IF TG_OP = 'DELETE' THEN
      RETURN OLD;
    END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '%.% is append-only: % is refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
"""

_NO_REWIND_BODY = """
BEGIN
  RAISE EXCEPTION '%.% cannot go backwards', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
"""


def _append_only(table: str, refused: str = "UPDATE OR DELETE") -> list[str]:
    """The triggers refusing to rewrite ``table`` (``refused`` rows, and TRUNCATE)."""
    return [
        f"CREATE TRIGGER append_only BEFORE {refused} ON {{t_{table}}} "
        "FOR EACH ROW EXECUTE FUNCTION {f_refuse}()",
        f"CREATE TRIGGER no_truncate BEFORE TRUNCATE ON {{t_{table}}} "
        "FOR EACH STATEMENT EXECUTE FUNCTION {f_refuse}()",
    ]


#: The tables of schema version 1 (everstore 0.1.0); later versions add theirs in a
#: migration step, which a new schema runs too: created or migrated, it is the same.
_VERSION_1_TABLES = [
    "CREATE TABLE {t_meta} (key text PRIMARY KEY, value text NOT NULL)",
    *(
        f"CREATE TABLE {{t_{table}}} (id integer GENERATED BY DEFAULT AS IDENTITY "
        "PRIMARY KEY, name text NOT NULL UNIQUE)"
        for table in ("namespaces", "fields", "contexts")
    ),
    "CREATE TABLE {t_log} (seq bigint PRIMARY KEY, time double precision NOT NULL, "
    "ns integer NOT NULL, field integer NOT NULL, ctx integer NOT NULL, data bytea)",
    "CREATE INDEX ON {t_log} (ns, field, seq)",
    "CREATE TABLE {t_counter} (id boolean PRIMARY KEY DEFAULT true CHECK (id), "
    "seq bigint NOT NULL, time double precision NOT NULL) WITH (fillfactor = 20)",
    "INSERT INTO {t_counter}(seq, time) VALUES (0, 0)",
    *(
        trigger
        for table in ("log", "namespaces", "fields", "contexts")
        for trigger in _append_only(table)
    ),
    *_append_only("counter", "DELETE"),
    "CREATE TRIGGER no_rewind BEFORE UPDATE ON {t_counter} FOR EACH ROW "
    "WHEN (NEW.seq < OLD.seq OR NEW.time < OLD.time) EXECUTE FUNCTION {f_no_rewind}()",
]

#: The steps bringing a schema from the version they are keyed by to the next one.
#: The next schema version adds one step here (and raises SCHEMA_VERSION).
MIGRATIONS: dict[int, list[str]] = {
    # 1 -> 2: the content-addressed blob table, append-only like the log
    1: [
        "CREATE TABLE {t_blobs} (digest bytea PRIMARY KEY CHECK (length(digest) = 32), "
        "data bytea NOT NULL)",
        *_append_only("blobs"),
    ],
    # 2 -> 3: SQLite rebuilt its blob table; nothing changes here
    2: [],
    # 3 -> 4: commits without a lock held through their flush, notifications only
    # when a listener asks for one (docs/postgresql.md, "The commit step")
    3: [
        "ALTER TABLE {t_counter} ADD COLUMN armed boolean NOT NULL DEFAULT false, "
        "ADD COLUMN notified boolean NOT NULL DEFAULT false",
        "CREATE SEQUENCE {t_barrier}",
        # An AFTER trigger's WHEN is checked on the new row as it is written; a
        # BEFORE trigger first locked the row again (one more WAL record per commit).
        "DROP TRIGGER no_rewind ON {t_counter}",
        "CREATE TRIGGER no_rewind AFTER UPDATE ON {t_counter} FOR EACH ROW "
        "WHEN (NEW.seq < OLD.seq OR NEW.time < OLD.time) EXECUTE FUNCTION {f_no_rewind}()",
    ],
    # 4 -> 5: the hash chain (docs/integrity.md): its head in the counter row, which
    # every commit locks already, a link per commit, the existing log chained once
    4: [
        "ALTER TABLE {t_counter} ADD COLUMN chain bytea NOT NULL "
        "DEFAULT decode(repeat('00', 32), 'hex')",
        "CREATE TABLE {t_chain} (seq_last bigint PRIMARY KEY, "
        "link bytea NOT NULL CHECK (length(link) = 32))",
        *_append_only("chain"),
        "DO {chain_existing}",
    ],
}

#: Functions whose signature a step changed: dropped before the functions are
#: created again, keyed by the step (a migration from at or before it drops them).
_DROPPED: dict[int, list[str]] = {
    4: [
        "DROP FUNCTION IF EXISTS {f_append}(text[], text[], text[], bytea[], float8[], text, "
        "text[], text[], int8[])"
    ],
}

#: The encoding of one fact, as everstore.integrity.encode_fact (docs/integrity.md)
_ENCODED_FACT = (
    "CASE WHEN l.data IS NULL THEN '\\x00'::bytea ELSE '\\x01'::bytea END "
    "|| int4send(octet_length(convert_to(n.name, 'UTF8'))) "
    "|| int4send(octet_length(convert_to(f.name, 'UTF8'))) "
    "|| int4send(octet_length(convert_to(c.name, 'UTF8'))) "
    "|| convert_to(n.name, 'UTF8') || convert_to(f.name, 'UTF8') "
    "|| convert_to(c.name, 'UTF8') || coalesce(l.data, ''::bytea)"
)

#: The migration to version 5 chains the log as it is, in seq order, 1,000 facts a
#: link (a link binds its seq range: a gap shows as deleted facts)
_CHAIN_EXISTING_BODY = (
    """
DECLARE
  prev bytea := decode(repeat('00', 32), 'hex');
  nxt bigint := 1;
  r record;
BEGIN
  FOR r IN
    SELECT max(l.seq) AS last_seq,
           string_agg(float8send(l.time), ''::bytea ORDER BY l.seq) AS times,
           string_agg(sha256("""
    + _ENCODED_FACT
    + """), ''::bytea ORDER BY l.seq) AS hash
    FROM {t_log} AS l
    JOIN {t_namespaces} AS n ON n.id = l.ns
    JOIN {t_fields} AS f ON f.id = l.field
    JOIN {t_contexts} AS c ON c.id = l.ctx
    GROUP BY (l.seq - 1) / 1000
    ORDER BY 1
  LOOP
    prev := sha256(prev || int8send(nxt) || int8send(r.last_seq - nxt + 1) || r.times || r.hash);
    INSERT INTO {t_chain}(seq_last, link) VALUES (r.last_seq, prev);
    nxt := r.last_seq + 1;
  END LOOP;
  UPDATE {t_counter} SET chain = prev;
END
"""
)

#: The functions, as this release defines them. A migration re-creates them (their
#: signatures never change), so that a migrated schema runs this release's code.
_FUNCTIONS = [
    "{create} FUNCTION {f_refuse}() RETURNS trigger LANGUAGE plpgsql AS {refuse_body}",
    "{create} FUNCTION {f_no_rewind}() RETURNS trigger LANGUAGE plpgsql AS {no_rewind_body}",
    "{create} FUNCTION {f_append}(p_ns text[], p_field text[], p_ctx text[], "
    "p_data bytea[], p_time float8[], p_hash bytea, p_tag text DEFAULT NULL, "
    "p_expect_ns text[] DEFAULT NULL, "
    "p_expect_field text[] DEFAULT NULL, p_expect_seq int8[] DEFAULT NULL, "
    "OUT first_seq bigint, OUT base_time float8, OUT ns_ids int4[], "
    "OUT field_ids int4[], OUT ctx_ids int4[]) "
    "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan "
    "SET search_path = pg_catalog, pg_temp AS {append_body}",
    "{create} FUNCTION {f_seq_at_time}(p_when float8) RETURNS bigint "
    "LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp "
    "AS {seq_at_time_body}",
]


def _steps_from(version: int) -> list[str]:
    """Every migration step from ``version`` to SCHEMA_VERSION, in order."""
    return [
        statement for start in range(version, SCHEMA_VERSION) for statement in MIGRATIONS[start]
    ]


Render = Callable[..., str]


def _renderer(psycopg: ModuleType, conn: Connection[Any], place: Place) -> Render:
    """Formats a template's ``{t_<table>}`` and ``{f_<function>}`` (and any other
    names given) as quoted, schema-qualified identifiers or literals."""
    sql = psycopg.sql

    def name(suffix: str) -> Any:
        return sql.Identifier(place.schema, f"{place.prefix}_{suffix}")

    names = {f"t_{suffix}": name(suffix) for suffix in TABLES}
    for function in ("append", "seq_at_time", "refuse", "no_rewind"):
        names[f"f_{function}"] = name(function)

    def render(template: str, **extra: Any) -> str:
        rendered: str = sql.SQL(template).format(**names, **extra).as_string(conn)
        return rendered

    return render


def _schema_scripts(psycopg: ModuleType, render: Render, channel: str) -> dict[str, str]:
    """The scripts creating the schema and migrating it from each older version."""
    sql = psycopg.sql
    bodies = {
        "refuse_body": sql.Literal(_REFUSE_BODY),
        "no_rewind_body": sql.Literal(_NO_REWIND_BODY),
        "append_body": sql.Literal(render(_APPEND_BODY, channel=sql.Literal(channel))),
        "seq_at_time_body": sql.Literal(render(_SEQ_AT_TIME_BODY)),
        "chain_existing": sql.Literal(render(_CHAIN_EXISTING_BODY)),
        "version": sql.Literal(str(SCHEMA_VERSION)),
    }
    scripts = {
        "create": render(
            ";\n".join(
                [
                    *_FUNCTIONS,
                    *_VERSION_1_TABLES,
                    *_steps_from(1),
                    "INSERT INTO {t_meta}(key, value) VALUES ('schema_version', {version})",
                ]
            ),
            create=sql.SQL("CREATE"),
            **bodies,
        )
    }
    for start in MIGRATIONS:
        dropped = [drop for step, drops in _DROPPED.items() if step >= start for drop in drops]
        scripts[f"migrate_from_{start}"] = render(
            ";\n".join(
                [
                    *dropped,
                    *_FUNCTIONS,
                    *_steps_from(start),
                    "UPDATE {t_meta} SET value = {version} WHERE key = 'schema_version'",
                ]
            ),
            create=sql.SQL("CREATE OR REPLACE"),
            **bodies,
        )
    return scripts


def render_sql(
    psycopg: ModuleType, conn: Connection[Any], place: Place, channel: str, tag: str
) -> dict[str, str]:
    """Every statement the backend runs, rendered for one store.

    :param psycopg: the psycopg module
    :param conn: a connection (quoting depends on its encoding)
    :param place: the store
    :param channel: its LISTEN/NOTIFY channel
    :param tag: the backend's tag, sent in its notifications ("<last seq> <tag>")
    :return: statements by name: ``table_<suffix>`` (a quoted table name),
        ``schema``, the commits (``append``, ``append_expect``, ``append_ids``,
        ``append_ids_one``, ``append_ids_checked``), the reads, ``put_blobs``, ``get_blob``,
        ``version``,
        and the scripts ``create`` and ``migrate_from_<version>``
    """
    sql = psycopg.sql
    render = _renderer(psycopg, conn, place)
    q: dict[str, str] = {f"table_{s}": render(f"{{t_{s}}}") for s in TABLES}
    q["schema"] = sql.Identifier(place.schema).as_string(conn)
    # Every commit runs with synchronous_commit off, so that the counter row's lock is
    # released without waiting for the WAL flush; the backend then waits for the
    # flush with the ``barrier`` statement, outside the lock (see "The commit step").
    no_wait = "set_config('synchronous_commit', 'off', true)"
    returning = (
        f"SELECT f.first_seq, f.base_time, f.ns_ids, f.field_ids, f.ctx_ids, {no_wait} "
        "FROM {f_append}"
    )
    q["append"] = render(
        returning + "(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::float8[], %b::bytea, "
        "%b::text) AS f"
    )
    q["append_expect"] = render(
        returning + "(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::float8[], "
        "%b::bytea, %b::text, %b::text[], %b::text[], %b::int8[]) AS f"
    )
    # A commit's setval writes WAL and takes a transaction id, so its commit waits
    # for the WAL to be flushed up to it, hence up to the write committed before it
    # on the same connection; it locks nothing anyone else waits for.
    q["barrier"] = render("SELECT setval({barrier}, 1)", barrier=sql.Literal(render("{t_barrier}")))
    # A listener asks the next commit to notify (docs/postgresql.md, "Change
    # notification"); a row back means it armed the counter, else one was armed.
    q["arm"] = render("UPDATE {t_counter} SET armed = true WHERE NOT armed RETURNING seq")
    # The notification only when a listener armed the counter; then the commit
    # without waiting for its flush (the barrier does, after the lock is released).
    after_commit_step = (
        "CASE WHEN c.notified THEN pg_notify({channel}, c.seq || {tag}) END, {no_wait} FROM c"
    )
    step = {
        "channel": sql.Literal(channel),
        "tag": sql.Literal(" " + tag),
        "no_wait": sql.SQL(no_wait),
    }
    # The hot paths: every name already interned (ids cached), one time for all
    # writes (what the Store sends), no condition. One statement: the UPDATE locks
    # the counter row and, having waited for it, reads its latest committed
    # version, so this is the same commit step as in everstore_append.
    # The hottest of them, for one write, is prepared and run through libpq
    # directly (see wire.OneWriteCommit), hence libpq's $n placeholders.
    q["append_ids_one"] = render(
        "WITH c AS (UPDATE {t_counter} SET seq = seq + 1, time = greatest(time, $1::float8), "
        "chain = sha256(chain || int8send(seq + 1) || int8send(1::int8) "
        "|| float8send(greatest(time, $1::float8)) || $6::bytea), "
        "notified = armed, armed = false RETURNING seq, time, notified, chain), "
        "i AS (INSERT INTO {t_log}(seq, time, ns, field, ctx, data) "
        "SELECT c.seq, c.time, $2::int4, $3::int4, $4::int4, $5::bytea FROM c), "
        "k AS (INSERT INTO {t_chain}(seq_last, link) SELECT c.seq, c.chain FROM c) "
        "SELECT c.seq - 1, c.time, " + after_commit_step,
        **step,
    )
    # The chain's next link (docs/integrity.md), in the counter's UPDATE: under its
    # lock, from the row's latest link; the n writes share one commit time.
    chain_step = (
        "chain = sha256(chain || int8send(seq + 1) || int8send(%(n)b::int8) || "
        "decode(repeat(encode(float8send(greatest(time, %(t)b::float8)), 'hex'), "
        "(%(n)b::int8)::int4), 'hex') || %(h)b::bytea)"
    )
    q["append_ids"] = render(
        "WITH c AS (UPDATE {t_counter} SET seq = seq + %(n)b::int8, "
        "time = greatest(time, %(t)b::float8), " + chain_step + ", notified = armed, "
        "armed = false RETURNING seq, time, notified, chain), "
        "i AS (INSERT INTO {t_log}(seq, time, ns, field, ctx, data) "
        "SELECT c.seq - %(n)b::int8 + w.ord, c.time, w.ns, w.field, w.ctx, w.data FROM c "
        "CROSS JOIN unnest(%(ns)b::int4[], %(field)b::int4[], %(ctx)b::int4[], "
        "%(data)b::bytea[]) WITH ORDINALITY AS w(ns, field, ctx, data, ord)), "
        "k AS (INSERT INTO {t_chain}(seq_last, link) SELECT c.seq, c.chain FROM c) "
        "SELECT c.seq - %(n)b::int8, c.time, " + after_commit_step,
        **step,
    )
    # append_ids, for expectations found true at or after seq %(since)s (see
    # Backend.append_checked): the facts after it, in the statement's snapshot, must
    # not change an expected field. That snapshot is complete only if nobody committed
    # after it was taken: the UPDATE then finds the counter as the snapshot shows it;
    # if somebody did, the UPDATE, having waited for the row, sees a newer seq and
    # updates nothing. The tail is bounded (up to %(upto)s): a bounded range of the
    # primary key is what a generic plan reads through the index, not by a scan of
    # the log. No row back: nothing was written, and the caller checks exactly
    # (everstore_append), which tells a conflict from a late snapshot or a long tail.
    q["append_ids_checked"] = render(
        "WITH s AS (SELECT seq FROM {t_counter}), "
        "bad AS (SELECT 1 FROM {t_log} AS l JOIN unnest(%(ens)b::int4[], %(efield)b::int4[], "
        "%(eseq)b::int8[]) AS e(ns, field, seq) ON l.ns = e.ns AND l.field = e.field "
        "WHERE l.seq > %(since)b::int8 AND l.seq <= %(upto)b::int8 AND l.seq > e.seq LIMIT 1), "
        "c AS (UPDATE {t_counter} SET seq = seq + %(n)b::int8, "
        "time = greatest(time, %(t)b::float8), " + chain_step + ", notified = armed, "
        "armed = false WHERE seq = (SELECT seq FROM s) AND seq <= %(upto)b::int8 "
        "AND NOT EXISTS (SELECT 1 FROM bad) "
        "RETURNING seq, time, notified, chain), "
        "i AS (INSERT INTO {t_log}(seq, time, ns, field, ctx, data) "
        "SELECT c.seq - %(n)b::int8 + w.ord, c.time, w.ns, w.field, w.ctx, w.data FROM c "
        "CROSS JOIN unnest(%(ns)b::int4[], %(field)b::int4[], %(ctx)b::int4[], "
        "%(data)b::bytea[]) WITH ORDINALITY AS w(ns, field, ctx, data, ord)), "
        "k AS (INSERT INTO {t_chain}(seq_last, link) SELECT c.seq, c.chain FROM c) "
        "SELECT c.seq - %(n)b::int8, c.time, " + after_commit_step,
        **step,
    )
    # The sanctioned rewrites (see _REFUSE_BODY), each in its record's transaction.
    q["rewrite_on"] = "SELECT set_config('everstore.rewrite', 'on', true)"
    q["rows_at"] = render(
        "SELECT l.seq, n.name, f.name, c.name, l.data FROM {t_log} AS l "
        "JOIN {t_namespaces} AS n ON n.id = l.ns JOIN {t_fields} AS f ON f.id = l.field "
        "JOIN {t_contexts} AS c ON c.id = l.ctx WHERE l.seq = ANY(%s::int8[]) FOR UPDATE OF l"
    )
    q["erase"] = render(
        "UPDATE {t_log} AS l SET data = v.data "
        "FROM unnest(%s::int8[], %s::bytea[]) AS v(seq, data) WHERE l.seq = v.seq"
    )
    q["remove"] = render("DELETE FROM {t_log} WHERE seq = ANY(%s::int8[]) RETURNING seq")
    q["last_seq"] = render("SELECT seq FROM {t_counter}")
    q["chain_head"] = render("SELECT seq, chain FROM {t_counter}")
    q["chain_links"] = render(
        "SELECT seq_last, link FROM {t_chain} WHERE seq_last > %b ORDER BY seq_last LIMIT %b::int8"
    )
    # The tables' bytes with their indexes and TOAST (the barrier sequence is a page).
    tables = [render(f"{{t_{suffix}}}") for suffix in TABLES if suffix != "barrier"]
    q["storage_size"] = render(
        "SELECT sum(pg_total_relation_size(t)) FROM unnest({tables}::regclass[]) AS s(t)",
        tables=sql.Literal(tables),
    )
    q["counter_state"] = render("SELECT seq, armed FROM {t_counter}")
    q["facts_since"] = render(
        "SELECT seq, time, ns, field, ctx, data FROM {t_log} WHERE seq > %b "
        "ORDER BY seq LIMIT %b::int8"
    )
    q["load_namespace"] = render(
        "SELECT c.seq, l.seq, l.time, l.field, l.ctx, l.data FROM {t_counter} AS c "
        "LEFT JOIN {t_log} AS l ON l.ns = (SELECT id FROM {t_namespaces} WHERE name = %b) "
        "ORDER BY l.seq"
    )
    # The counter's row, then every fact of the namespaces equal to or under a prefix
    # (or of all), in one statement; the counter's row has a NULL seq and sorts first.
    bulk = (
        "SELECT seq, NULL, NULL, NULL, NULL, NULL, NULL FROM {t_counter} UNION ALL "
        "SELECT NULL, n.name, l.seq, l.time, l.field, l.ctx, l.data "
        "FROM {t_namespaces} AS n JOIN {t_log} AS l ON l.ns = n.id "
    )
    q["load_namespaces"] = render(
        bulk + "WHERE n.name = %(p)b OR starts_with(n.name, %(p)b || '/') ORDER BY 3 NULLS FIRST"
    )
    q["load_all"] = render(bulk + "ORDER BY 3 NULLS FIRST")
    q["names"] = render(
        "SELECT 0, id, name FROM {t_namespaces} WHERE id = ANY(%b::int4[]) UNION ALL "
        "SELECT 1, id, name FROM {t_fields} WHERE id = ANY(%b::int4[]) UNION ALL "
        "SELECT 2, id, name FROM {t_contexts} WHERE id = ANY(%b::int4[])"
    )
    q["namespaces"] = render(
        "SELECT n.name FROM {t_namespaces} AS n WHERE "
        "(%(p)s = '' OR n.name = %(p)s OR starts_with(n.name, %(p)s || '/')) AND "
        "EXISTS (SELECT 1 FROM {t_log} AS l WHERE l.ns = n.id AND l.seq <= %(upto)s) "
        'ORDER BY n.name COLLATE "C"'
    )
    q["namespaces_after"] = render(
        'SELECT n.name FROM {t_namespaces} AS n WHERE n.name COLLATE "C" > %(after)s AND '
        "(%(p)s = '' OR n.name = %(p)s OR starts_with(n.name, %(p)s || '/')) AND "
        "EXISTS (SELECT 1 FROM {t_log} AS l WHERE l.ns = n.id AND l.seq <= %(upto)s) "
        'ORDER BY n.name COLLATE "C" LIMIT %(limit)s'
    )
    q["seq_at_time"] = render("SELECT {f_seq_at_time}(%b::float8)")
    # One statement, so atomic; a digest already stored (or twice in the batch) is
    # skipped, as content addressing allows.
    q["put_blobs"] = render(
        "INSERT INTO {t_blobs}(digest, data) SELECT * FROM unnest(%b::bytea[], %b::bytea[]) "
        "ON CONFLICT (digest) DO NOTHING"
    )
    q["get_blob"] = render("SELECT data FROM {t_blobs} WHERE digest = %b")
    q["blobs_after"] = render(
        "SELECT digest, data FROM {t_blobs} WHERE digest > %b ORDER BY digest LIMIT %b"
    )
    q["version"] = render("SELECT value FROM {t_meta} WHERE key = 'schema_version'")
    q.update(_schema_scripts(psycopg, render, channel))
    return q


def ensure_schema(
    psycopg: ModuleType,
    conn: Connection[Any],
    place: Place,
    sql: Mapping[str, str],
    *,
    migrate: bool,
) -> None:
    """Create the store's schema if missing, migrate it if older, check it otherwise.

    Creation and migration each run in one transaction holding
    ``pg_advisory_xact_lock`` on the schema's name: concurrent openers queue there,
    and the later ones find the work done.

    :param psycopg: the psycopg module
    :param conn: an autocommit connection
    :param place: the store
    :param sql: what :func:`render_sql` gave
    :param migrate: whether a schema of an older version may be migrated
    :raises SchemaError: for a newer version, an older one when ``migrate`` is
        False, tables of our names that everstore did not create, or a store that
        lacks a table, has one of other columns, or whose counter lost its row
        (nothing is written then)
    :raises psycopg.Error: for any other database error
    """
    version = _read_version(psycopg, conn, place, sql)
    if version is not None and version < SCHEMA_VERSION and not migrate:
        raise _refusal(place, version)
    if version is None or version < SCHEMA_VERSION:
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"everstore schema {place.schema}",),
            )
            version = _read_version(psycopg, conn, place, sql)
            if version is None:
                _create(psycopg, conn, place, sql)
                version = SCHEMA_VERSION
            elif version < SCHEMA_VERSION:
                _migrate(psycopg, conn, place, sql, version)
                # in the transaction: a refusal rolls the migration back
                _check_layout(conn, place, sql)
                return
    if version != SCHEMA_VERSION:
        raise _refusal(place, version)
    _check_layout(conn, place, sql)


#: pg_class.relkind, for messages
_KINDS = {
    "r": "table",
    "v": "view",
    "m": "materialized view",
    "S": "sequence",
    "f": "foreign table",
    "p": "partitioned table",
    "i": "index",
    "c": "composite type",
}


def _check_layout(conn: Connection[Any], place: Place, sql: Mapping[str, str]) -> None:
    """Refuse a store whose relations are not this release's layout, or whose
    counter has lost its row: every read and commit relies on both, and a store
    partly dropped (or another program's tables under a meta table claiming the
    current version) would otherwise fail at some later read, or read wrong.

    One catalog query and a count of the counter's one row; nothing is written.

    :raises SchemaError: naming every relation missing or different
    """
    names = {f"{place.prefix}_{suffix}": suffix for suffix in TABLES}
    rows = conn.execute(
        "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 "
        "AND NOT a.attisdropped WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (place.schema, list(names)),
    ).fetchall()
    kinds: dict[str, str] = {}
    columns: dict[str, dict[str, str]] = {}
    for relname, relkind, column, type_name in rows:
        suffix = names[relname]
        kinds[suffix] = relkind
        if column is not None:
            columns.setdefault(suffix, {})[column] = type_name
    problems = []
    missing = [f"{place.prefix}_{suffix}" for suffix in TABLES if suffix not in kinds]
    if missing:
        problems.append(f"{', '.join(missing)} missing")
    for suffix in TABLES:
        kind = kinds.get(suffix)
        if kind is None:
            continue
        name = f"{place.prefix}_{suffix}"
        wanted = "S" if suffix in _SEQUENCES else "r"
        if kind != wanted:
            problems.append(f"{name} is a {_KINDS.get(kind, kind)}, not a {_KINDS[wanted]}")
        elif suffix in _LAYOUT and columns.get(suffix, {}) != _LAYOUT[suffix]:
            problems.append(
                f"{name} has the columns {_columns(columns.get(suffix, {}))} instead of "
                f"{_columns(_LAYOUT[suffix])}"
            )
    if not problems:
        row = conn.execute(f"SELECT count(*) FROM {sql['table_counter']}").fetchone()
        if row is None or row[0] != 1:
            problems.append(f"{place.prefix}_counter has no row (it holds the last seq)")
    if problems:
        raise SchemaError(
            f"schema {place.schema!r} on {place.server} is not a whole everstore store of "
            f"schema version {SCHEMA_VERSION}, as its {place.prefix}_meta says: "
            f"{'; '.join(problems)}. It was partly dropped or altered, or these are "
            "another program's tables; nothing was written"
        )


def _columns(columns: Mapping[str, str]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns.items()) + ")"


def _refusal(place: Place, version: int) -> SchemaError:
    """Why a schema of another version is not opened, and what to do."""
    holds = (
        f"{place.server}, schema {place.schema!r}, prefix {place.prefix!r} holds everstore "
        f"schema version {version}; this release needs version {SCHEMA_VERSION}. "
    )
    if version > SCHEMA_VERSION:
        return SchemaError(holds + "Upgrade everstore to open it.")
    if version in MIGRATIONS:
        return SchemaError(
            holds + "Open it with migrate=True (the default) to migrate it in place; "
            "older everstore releases cannot open it afterwards."
        )
    return SchemaError(holds + "It cannot be opened.")


def _create(
    psycopg: ModuleType, conn: Connection[Any], place: Place, sql: Mapping[str, str]
) -> None:
    exists = conn.execute(
        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (place.schema,)
    ).fetchone()
    if exists is None:
        conn.execute(f"CREATE SCHEMA {sql['schema']}")
    _run_script(psycopg, conn, place, sql["create"], "create")


def _migrate(
    psycopg: ModuleType, conn: Connection[Any], place: Place, sql: Mapping[str, str], version: int
) -> None:
    script = sql.get(f"migrate_from_{version}")
    if script is None:  # older than any migration this release knows
        raise _refusal(place, version)
    _run_script(psycopg, conn, place, script, f"migrate (from version {version})")


def _run_script(
    psycopg: ModuleType, conn: Connection[Any], place: Place, script: str, doing: str
) -> None:
    """Run a schema script; a name already taken by something else, or a table not
    as the script expects it (a migration over tables partly dropped or another
    program's), is a SchemaError."""
    errors = psycopg.errors
    try:
        conn.execute(script)
    except (errors.DuplicateObject, errors.DuplicateFunction, errors.DuplicateTable) as exc:
        raise SchemaError(
            f"cannot {doing} the everstore schema in {place.schema!r} on {place.server}: "
            f"{error_text(exc)}; choose another prefix or schema"
        ) from None
    except (
        errors.UndefinedTable,
        errors.UndefinedColumn,
        errors.WrongObjectType,
        errors.DatatypeMismatch,
        errors.UndefinedFunction,
    ) as exc:
        raise SchemaError(
            f"cannot {doing} the everstore schema in {place.schema!r} on {place.server}: "
            f"{error_text(exc)}; its tables are not the ones everstore made (partly "
            "dropped or altered, or another program's); nothing was changed"
        ) from None


def _read_version(
    psycopg: ModuleType, conn: Connection[Any], place: Place, sql: Mapping[str, str]
) -> int | None:
    """The schema version in the meta table; None if the store has no table yet."""
    names = [f"{place.prefix}_{suffix}" for suffix in TABLES]
    rows = conn.execute(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (place.schema, names),
    ).fetchall()
    found = {row[0] for row in rows}
    meta = f"{place.prefix}_meta"
    if meta not in found:
        if found:
            raise SchemaError(
                f"schema {place.schema!r} on {place.server} has {sorted(found)} but no "
                f"{meta}: they were not created by everstore (or the store lost its meta "
                "table); choose another prefix or schema"
            )
        return None
    try:
        with conn.transaction():
            row = conn.execute(sql["version"]).fetchone()
    except psycopg.Error as exc:
        raise SchemaError(
            f"{place.schema}.{meta} on {place.server} is not an everstore table: {error_text(exc)}"
        ) from None
    if row is None:
        raise SchemaError(f"{place.schema}.{meta} on {place.server} has no schema_version")
    try:
        return int(row[0])
    except ValueError:
        raise SchemaError(
            f"{place.schema}.{meta} on {place.server} has schema_version {row[0]!r}"
        ) from None
