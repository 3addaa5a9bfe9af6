--
-- PostgreSQL database dump
--

\restrict ueCcTNhB5NYct7heusqFNmzxO1MIvJZ074FUpQdb0oqRrsaGfnv9pzRb8RigHpo

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: v3; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA v3;


--
-- Name: everstore_append(text[], text[], text[], bytea[], double precision[], text, text[], text[], bigint[]); Type: FUNCTION; Schema: v3; Owner: -
--

CREATE FUNCTION v3.everstore_append(p_ns text[], p_field text[], p_ctx text[], p_data bytea[], p_time double precision[], p_tag text DEFAULT NULL::text, p_expect_ns text[] DEFAULT NULL::text[], p_expect_field text[] DEFAULT NULL::text[], p_expect_seq bigint[] DEFAULT NULL::bigint[], OUT first_seq bigint, OUT base_time double precision, OUT ns_ids integer[], OUT field_ids integer[], OUT ctx_ids integer[]) RETURNS record
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  cnt integer := cardinality(p_ns);
  failed bigint;
  actual bigint;
BEGIN
  IF cnt IS NULL OR cnt = 0 THEN
    RAISE EXCEPTION 'everstore: nothing to append' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- 1. Intern the names, before taking the counter lock. Sorted, so that concurrent
  --    writers wait on each other's new names in one order (no deadlock); only the
  --    missing ones, so that the identity sequences are not burnt by conflicts.
  INSERT INTO "v3"."everstore_namespaces"(name)
    SELECT DISTINCT u.name FROM unnest(p_ns) AS u(name)
    WHERE NOT EXISTS (SELECT 1 FROM "v3"."everstore_namespaces" AS t WHERE t.name = u.name)
    ORDER BY 1
    ON CONFLICT (name) DO NOTHING;
  INSERT INTO "v3"."everstore_fields"(name)
    SELECT DISTINCT u.name FROM unnest(p_field) AS u(name)
    WHERE NOT EXISTS (SELECT 1 FROM "v3"."everstore_fields" AS t WHERE t.name = u.name)
    ORDER BY 1
    ON CONFLICT (name) DO NOTHING;
  INSERT INTO "v3"."everstore_contexts"(name)
    SELECT DISTINCT u.name FROM unnest(p_ctx) AS u(name)
    WHERE NOT EXISTS (SELECT 1 FROM "v3"."everstore_contexts" AS t WHERE t.name = u.name)
    ORDER BY 1
    ON CONFLICT (name) DO NOTHING;
  SELECT array_agg(tn.id ORDER BY w.ord), array_agg(tf.id ORDER BY w.ord),
         array_agg(tc.id ORDER BY w.ord)
    INTO ns_ids, field_ids, ctx_ids
    FROM unnest(p_ns, p_field, p_ctx) WITH ORDINALITY AS w(ns, field, ctx, ord)
    JOIN "v3"."everstore_namespaces" AS tn ON tn.name = w.ns
    JOIN "v3"."everstore_fields" AS tf ON tf.name = w.field
    JOIN "v3"."everstore_contexts" AS tc ON tc.name = w.ctx;
  IF coalesce(cardinality(ns_ids), 0) <> cnt THEN
    RAISE EXCEPTION 'everstore: % of % writes found their interned names',
      coalesce(cardinality(ns_ids), 0), cnt;
  END IF;
  -- 2. The commit step: lock the one counter row. A concurrent writer waits here
  --    until we have committed, then reads our new seq: seqs follow commit order.
  SELECT c.seq, c.time INTO first_seq, base_time FROM "v3"."everstore_counter" AS c FOR UPDATE;
  -- 3. Conditional writes: under the lock, nobody can commit between check and write.
  IF cardinality(p_expect_ns) > 0 THEN
    SELECT e.ord, coalesce(a.latest, 0) INTO failed, actual
    FROM unnest(p_expect_ns, p_expect_field, p_expect_seq)
         WITH ORDINALITY AS e(ns, field, seq, ord)
    CROSS JOIN LATERAL (
      SELECT max(l.seq) AS latest FROM "v3"."everstore_log" AS l
      WHERE l.ns = (SELECT t.id FROM "v3"."everstore_namespaces" AS t WHERE t.name = e.ns)
        AND l.field = (SELECT t.id FROM "v3"."everstore_fields" AS t WHERE t.name = e.field)
    ) AS a
    WHERE coalesce(a.latest, 0) <> e.seq
    ORDER BY e.ord LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'everstore: conditional write refused'
        USING ERRCODE = 'EV409', DETAIL = failed::text, HINT = actual::text;
    END IF;
  END IF;
  -- 4. Seqs and times, the counter, the notification; the commit follows at once.
  INSERT INTO "v3"."everstore_log"(seq, time, ns, field, ctx, data)
    SELECT first_seq + w.ord, greatest(base_time, max(w.t) OVER (ORDER BY w.ord)),
           w.ns, w.field, w.ctx, w.data
    FROM unnest(ns_ids, field_ids, ctx_ids, p_data, p_time)
         WITH ORDINALITY AS w(ns, field, ctx, data, t, ord);
  UPDATE "v3"."everstore_counter" SET seq = first_seq + cnt,
    time = greatest(base_time, (SELECT max(x) FROM unnest(p_time) AS x));
  PERFORM pg_notify('everstore_b7d2e5c2be816479', (first_seq + cnt)::text || ' ' || coalesce(p_tag, ''));
END
$$;


--
-- Name: everstore_no_rewind(); Type: FUNCTION; Schema: v3; Owner: -
--

CREATE FUNCTION v3.everstore_no_rewind() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  RAISE EXCEPTION '%.% cannot go backwards', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;


--
-- Name: everstore_refuse(); Type: FUNCTION; Schema: v3; Owner: -
--

CREATE FUNCTION v3.everstore_refuse() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % is refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;


--
-- Name: everstore_seq_at_time(double precision); Type: FUNCTION; Schema: v3; Owner: -
--

CREATE FUNCTION v3.everstore_seq_at_time(p_when double precision) RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  lo bigint := 0;
  hi bigint;
  mid bigint;
  found_time float8;
BEGIN
  -- times never decrease in seq order: a binary search over the primary key
  SELECT c.seq INTO hi FROM "v3"."everstore_counter" AS c;
  WHILE lo < hi LOOP
    mid := (lo + hi + 1) / 2;
    SELECT l.time INTO found_time FROM "v3"."everstore_log" AS l WHERE l.seq >= mid ORDER BY l.seq LIMIT 1;
    IF FOUND AND found_time <= p_when THEN
      lo := mid;
    ELSE
      hi := mid - 1;
    END IF;
  END LOOP;
  RETURN lo;
END
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: everstore_blobs; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_blobs (
    digest bytea NOT NULL,
    data bytea NOT NULL,
    CONSTRAINT everstore_blobs_digest_check CHECK ((length(digest) = 32))
);


--
-- Name: everstore_contexts; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_contexts (
    id integer NOT NULL,
    name text NOT NULL
);


--
-- Name: everstore_contexts_id_seq; Type: SEQUENCE; Schema: v3; Owner: -
--

ALTER TABLE v3.everstore_contexts ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME v3.everstore_contexts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: everstore_counter; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_counter (
    id boolean DEFAULT true NOT NULL,
    seq bigint NOT NULL,
    "time" double precision NOT NULL,
    CONSTRAINT everstore_counter_id_check CHECK (id)
)
WITH (fillfactor='20');


--
-- Name: everstore_fields; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_fields (
    id integer NOT NULL,
    name text NOT NULL
);


--
-- Name: everstore_fields_id_seq; Type: SEQUENCE; Schema: v3; Owner: -
--

ALTER TABLE v3.everstore_fields ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME v3.everstore_fields_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: everstore_log; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_log (
    seq bigint NOT NULL,
    "time" double precision NOT NULL,
    ns integer NOT NULL,
    field integer NOT NULL,
    ctx integer NOT NULL,
    data bytea
);


--
-- Name: everstore_meta; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_meta (
    key text NOT NULL,
    value text NOT NULL
);


--
-- Name: everstore_namespaces; Type: TABLE; Schema: v3; Owner: -
--

CREATE TABLE v3.everstore_namespaces (
    id integer NOT NULL,
    name text NOT NULL
);


--
-- Name: everstore_namespaces_id_seq; Type: SEQUENCE; Schema: v3; Owner: -
--

ALTER TABLE v3.everstore_namespaces ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME v3.everstore_namespaces_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Data for Name: everstore_blobs; Type: TABLE DATA; Schema: v3; Owner: -
--



--
-- Data for Name: everstore_contexts; Type: TABLE DATA; Schema: v3; Owner: -
--

INSERT INTO v3.everstore_contexts VALUES (1, 'make_v1_fixtures.fill:24');
INSERT INTO v3.everstore_contexts VALUES (2, 'make_v1_fixtures.fill:25');
INSERT INTO v3.everstore_contexts VALUES (3, 'make_v1_fixtures.fill:26');
INSERT INTO v3.everstore_contexts VALUES (4, 'make_v1_fixtures.fill:27');
INSERT INTO v3.everstore_contexts VALUES (5, 'make_v1_fixtures.fill:28');
INSERT INTO v3.everstore_contexts VALUES (6, 'make_v1_fixtures.fill:30');
INSERT INTO v3.everstore_contexts VALUES (7, 'make_v1_fixtures.fill:31');
INSERT INTO v3.everstore_contexts VALUES (8, 'make_v1_fixtures.fill:33');
INSERT INTO v3.everstore_contexts VALUES (9, 'make_v1_fixtures.fill:34');
INSERT INTO v3.everstore_contexts VALUES (10, 'make_v1_fixtures.fill:35');
INSERT INTO v3.everstore_contexts VALUES (11, 'make_v1_fixtures.fill:38');
INSERT INTO v3.everstore_contexts VALUES (12, 'make_v1_fixtures.fill:39');


--
-- Data for Name: everstore_counter; Type: TABLE DATA; Schema: v3; Owner: -
--

INSERT INTO v3.everstore_counter VALUES (true, 12, 1796148385.229936);


--
-- Data for Name: everstore_fields; Type: TABLE DATA; Schema: v3; Owner: -
--

INSERT INTO v3.everstore_fields VALUES (1, 'name');
INSERT INTO v3.everstore_fields VALUES (2, 'round');
INSERT INTO v3.everstore_fields VALUES (3, 'score');
INSERT INTO v3.everstore_fields VALUES (4, 'items');
INSERT INTO v3.everstore_fields VALUES (5, 'price');
INSERT INTO v3.everstore_fields VALUES (6, 'pair');
INSERT INTO v3.everstore_fields VALUES (7, 'tags');


--
-- Data for Name: everstore_log; Type: TABLE DATA; Schema: v3; Owner: -
--

INSERT INTO v3.everstore_log VALUES (1, 1796148385.2145138, 1, 1, 1, '\x22416c69636522');
INSERT INTO v3.everstore_log VALUES (2, 1796148385.21897, 1, 2, 2, '\x31');
INSERT INTO v3.everstore_log VALUES (3, 1796148385.2235835, 1, 3, 3, '\x3130');
INSERT INTO v3.everstore_log VALUES (4, 1796148385.2245226, 1, 2, 4, '\x32');
INSERT INTO v3.everstore_log VALUES (5, 1796148385.2253468, 1, 3, 5, '\x3235');
INSERT INTO v3.everstore_log VALUES (6, 1796148385.2262056, 1, 4, 6, '\x5b2273776f7264225d');
INSERT INTO v3.everstore_log VALUES (7, 1796148385.2270615, 1, 4, 7, '\x015b362c224c222c5b22736869656c64225d5d');
INSERT INTO v3.everstore_log VALUES (8, 1796148385.2277312, 1, 5, 8, '\x7e7b227e44223a22312e3530227d');
INSERT INTO v3.everstore_log VALUES (9, 1796148385.2283995, 1, 6, 9, '\x7e7b227e74223a5b312c2261225d7d');
INSERT INTO v3.everstore_log VALUES (10, 1796148385.2290106, 1, 3, 10, NULL);
INSERT INTO v3.everstore_log VALUES (11, 1796148385.229936, 2, 1, 11, '\x22426f6222');
INSERT INTO v3.everstore_log VALUES (12, 1796148385.229936, 2, 7, 12, '\x7e7b227e73223a5b2278222c2279225d7d');


--
-- Data for Name: everstore_meta; Type: TABLE DATA; Schema: v3; Owner: -
--

INSERT INTO v3.everstore_meta VALUES ('schema_version', '3');


--
-- Data for Name: everstore_namespaces; Type: TABLE DATA; Schema: v3; Owner: -
--

INSERT INTO v3.everstore_namespaces VALUES (1, 'game/alice');
INSERT INTO v3.everstore_namespaces VALUES (2, 'game/bob');


--
-- Name: everstore_contexts_id_seq; Type: SEQUENCE SET; Schema: v3; Owner: -
--

SELECT pg_catalog.setval('v3.everstore_contexts_id_seq', 12, true);


--
-- Name: everstore_fields_id_seq; Type: SEQUENCE SET; Schema: v3; Owner: -
--

SELECT pg_catalog.setval('v3.everstore_fields_id_seq', 7, true);


--
-- Name: everstore_namespaces_id_seq; Type: SEQUENCE SET; Schema: v3; Owner: -
--

SELECT pg_catalog.setval('v3.everstore_namespaces_id_seq', 2, true);


--
-- Name: everstore_blobs everstore_blobs_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_blobs
    ADD CONSTRAINT everstore_blobs_pkey PRIMARY KEY (digest);


--
-- Name: everstore_contexts everstore_contexts_name_key; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_contexts
    ADD CONSTRAINT everstore_contexts_name_key UNIQUE (name);


--
-- Name: everstore_contexts everstore_contexts_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_contexts
    ADD CONSTRAINT everstore_contexts_pkey PRIMARY KEY (id);


--
-- Name: everstore_counter everstore_counter_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_counter
    ADD CONSTRAINT everstore_counter_pkey PRIMARY KEY (id);


--
-- Name: everstore_fields everstore_fields_name_key; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_fields
    ADD CONSTRAINT everstore_fields_name_key UNIQUE (name);


--
-- Name: everstore_fields everstore_fields_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_fields
    ADD CONSTRAINT everstore_fields_pkey PRIMARY KEY (id);


--
-- Name: everstore_log everstore_log_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_log
    ADD CONSTRAINT everstore_log_pkey PRIMARY KEY (seq);


--
-- Name: everstore_meta everstore_meta_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_meta
    ADD CONSTRAINT everstore_meta_pkey PRIMARY KEY (key);


--
-- Name: everstore_namespaces everstore_namespaces_name_key; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_namespaces
    ADD CONSTRAINT everstore_namespaces_name_key UNIQUE (name);


--
-- Name: everstore_namespaces everstore_namespaces_pkey; Type: CONSTRAINT; Schema: v3; Owner: -
--

ALTER TABLE ONLY v3.everstore_namespaces
    ADD CONSTRAINT everstore_namespaces_pkey PRIMARY KEY (id);


--
-- Name: everstore_log_ns_field_seq_idx; Type: INDEX; Schema: v3; Owner: -
--

CREATE INDEX everstore_log_ns_field_seq_idx ON v3.everstore_log USING btree (ns, field, seq);


--
-- Name: everstore_blobs append_only; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER append_only BEFORE DELETE OR UPDATE ON v3.everstore_blobs FOR EACH ROW EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_contexts append_only; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER append_only BEFORE DELETE OR UPDATE ON v3.everstore_contexts FOR EACH ROW EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_counter append_only; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER append_only BEFORE DELETE ON v3.everstore_counter FOR EACH ROW EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_fields append_only; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER append_only BEFORE DELETE OR UPDATE ON v3.everstore_fields FOR EACH ROW EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_log append_only; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER append_only BEFORE DELETE OR UPDATE ON v3.everstore_log FOR EACH ROW EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_namespaces append_only; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER append_only BEFORE DELETE OR UPDATE ON v3.everstore_namespaces FOR EACH ROW EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_counter no_rewind; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_rewind BEFORE UPDATE ON v3.everstore_counter FOR EACH ROW WHEN (((new.seq < old.seq) OR (new."time" < old."time"))) EXECUTE FUNCTION v3.everstore_no_rewind();


--
-- Name: everstore_blobs no_truncate; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_truncate BEFORE TRUNCATE ON v3.everstore_blobs FOR EACH STATEMENT EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_contexts no_truncate; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_truncate BEFORE TRUNCATE ON v3.everstore_contexts FOR EACH STATEMENT EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_counter no_truncate; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_truncate BEFORE TRUNCATE ON v3.everstore_counter FOR EACH STATEMENT EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_fields no_truncate; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_truncate BEFORE TRUNCATE ON v3.everstore_fields FOR EACH STATEMENT EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_log no_truncate; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_truncate BEFORE TRUNCATE ON v3.everstore_log FOR EACH STATEMENT EXECUTE FUNCTION v3.everstore_refuse();


--
-- Name: everstore_namespaces no_truncate; Type: TRIGGER; Schema: v3; Owner: -
--

CREATE TRIGGER no_truncate BEFORE TRUNCATE ON v3.everstore_namespaces FOR EACH STATEMENT EXECUTE FUNCTION v3.everstore_refuse();


--
-- PostgreSQL database dump complete
--

\unrestrict ueCcTNhB5NYct7heusqFNmzxO1MIvJZ074FUpQdb0oqRrsaGfnv9pzRb8RigHpo

