-- Finalization of a bundle and server-originated writes in plain SQL (SPEC-v2 §4.2, §4.4, §4.7,
-- §4.8, §4.10, §4.11, §4.12): what go-oversync 1f1118f does in Go around a transaction that writes
-- registered tables (bundle_capture.go, scope_manager.go, source_state.go, pruning.go), done by
-- the database, so that any backend (psql, a cron job, a service in any language) can write
-- business rows that clients then pull, and so that oversyncd's push commit finalizes its bundles
-- where the rows are.
--
--   oversyncd.finalize_bundle(user_pk, source_id, source_bundle_id, notify_channel)
--       the staged row effects of the current transaction → one committed bundle
--   oversyncd.activate_source(user_pk, source_id, source_bundle_id)
--   oversyncd.apply_retention(user_pk, retained, batch)
--   sync.begin_server_bundle(user_id, writer_id)                   ScopeManager.ExecWrite
--   sync.begin_server_bundle(user_id, source_id, source_bundle_id) WithinSyncBundle
--   sync.commit_server_bundle()
--
-- The three sync.* functions are the public API the issue asked for in schema sync; the go-oversync
-- library ignores functions it does not know in an adopted layout (tests/compat/
-- check-bundle-schema.sh). Everything else lives in schema oversyncd. src/bundle/bundle_schema.c
-- runs this file at every bundle bootstrap, after creating or adopting the layout: everything
-- here is idempotent (CREATE OR REPLACE, IF NOT EXISTS).
--
-- Errors raised here carry SQLSTATEs of class OV (implementation-defined; PostgreSQL uses none
-- of them) and stable messages, the library's wording where it has one; docs/bundle-protocol.md
-- lists them:
--   OV001 invalid argument                    OV006 source sequence out of order
--   OV002 scope not initialized               OV007 conflicting or repeated bundle context
--   OV003 scope initializing                  OV008 no server bundle in progress
--   OV004 source retired                      OV009 no captured changes
--   OV005 source tuple older than history     OV010 unknown user_pk
--   OV011 begin_server_bundle without commit_server_bundle at COMMIT
--
-- None of the functions that set the bundle context may carry a SET clause: a function's SET
-- clause undoes, when the function returns, every set_config() made inside it.

DO $$
BEGIN
    IF to_regnamespace('oversyncd') IS NULL THEN
        CREATE SCHEMA oversyncd;
    END IF;
END
$$;

-- ------------------------------------------------------------------- wire text helpers
--
-- Go's canonical text (§4.7) of the values found in a captured payload, fast: the payload of a
-- row is flat (column → scalar), and jsonb prints scalars almost as Go does. These helpers are
-- plain SQL expressions, inlined into the finalization query; anything they cannot do quickly
-- goes to oversyncd.canonical_json_value / canonical_json_number (0002_canonical.sql).

-- A JSON string literal with Go's escaping. PostgreSQL's escape_json (to_json(text)) escapes
-- " \ \b \f \n \r \t and the other controls as \u00xx (lowercase), exactly as Go does; Go also
-- escapes < > & U+2028 U+2029, which never occur inside an escape sequence.
CREATE OR REPLACE FUNCTION oversyncd.json_quote(s text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT replace(replace(replace(replace(replace(to_json(s)::text,
         '<', '\u003c'), '>', '\u003e'), '&', '\u0026'), U&'\2028', '\u2028'), U&'\2029', '\u2029')
$fn$;

-- Go's text of a number (a jsonb number is an exact numeric). A decimal of at most 15
-- significant digits reads back from the nearest float64 unchanged, so Go prints it as it is
-- (without trailing fraction zeros) when 1e-6 <= |x| < 1e15; anything else takes the exact path,
-- oversyncd.canonical_json_number, which needs extra_float_digits >= 1 (finalize_bundle sets it).
CREATE OR REPLACE FUNCTION oversyncd.json_number(x numeric) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT CASE
         WHEN x = 0 THEN '0'
         WHEN abs(x) >= 0.000001 AND abs(x) < 1e15 AND abs(x) * power(10::numeric, min_scale(x)) < 1e15
           THEN trim_scale(x)::text
         ELSE oversyncd.canonical_json_number(x)
       END
$fn$;

-- A bytea value of a payload, as PostgreSQL's to_jsonb prints it ("\x0001ff") or already in
-- base64, as the JSON text of its standard padded base64 (binary_wire.go).
CREATE OR REPLACE FUNCTION oversyncd.json_bytea_base64(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT '"' || translate(encode(CASE WHEN left(s, 2) IN ('\x', '\X') THEN decode(substr(s, 3), 'hex')
                                    ELSE decode(s, 'base64') END, 'base64'), E'\n', '') || '"'
$fn$;

-- One value of a captured payload as wire text: bytea columns (is_bytea) in base64, the rest
-- canonical.
CREATE OR REPLACE FUNCTION oversyncd.json_wire_value(v jsonb, is_bytea boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT CASE jsonb_typeof(v)
         WHEN 'string' THEN CASE WHEN is_bytea THEN oversyncd.json_bytea_base64(v #>> '{}')
                                 ELSE replace(replace(replace(replace(replace(v::text,
                                        '<', '\u003c'), '>', '\u003e'), '&', '\u0026'),
                                        U&'\2028', '\u2028'), U&'\2029', '\u2029') END
         WHEN 'number' THEN oversyncd.json_number(v::numeric)
         WHEN 'boolean' THEN v::text
         WHEN 'null' THEN 'null'
         ELSE oversyncd.canonical_json_value(v)
       END
$fn$;

-- RFC 3339 in UTC with the fraction's trailing zeros dropped, as Go's time.RFC3339Nano prints a
-- time read from PostgreSQL (for the library's "initializing until" message).
CREATE OR REPLACE FUNCTION oversyncd.rfc3339(t timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $fn$
SELECT to_char(u, 'YYYY-MM-DD"T"HH24:MI:SS')
       || CASE WHEN extract(microseconds FROM u)::bigint % 1000000 = 0 THEN ''
               ELSE '.' || rtrim(lpad((extract(microseconds FROM u)::bigint % 1000000)::text, 6, '0'), '0') END
       || 'Z'
  FROM (SELECT t AT TIME ZONE 'UTC') AS x(u)
$fn$;

-- ------------------------------------------------------------------------ finalization

-- Turns what the capture trigger staged in the current transaction for one user into one
-- committed bundle (§4.4), exactly as the library's finalizeCapturedBundle:
--   * the stage rows of (txid_current(), p_user_pk), in capture order, fold per (table, key):
--     first op F, last op L: F = INSERT and L = DELETE vanishes; L = DELETE is a DELETE;
--     F = INSERT an INSERT; anything else an UPDATE; the payload is the last one. Rows are
--     ordered by their first capture (then table_id, key bytes);
--   * nothing left: the stage rows are deleted and NO row is returned (no bundle_seq is used);
--   * else bundle_seq = the user's next_bundle_seq (which advances: dense, rollback-safe); the
--     wire rows (schema/table from sync.table_catalog, key {col: text}, op, row_version =
--     bundle_seq, payload = the row without _sync_scope_id, bytea in base64, canonical) give
--     bundle_hash and byte_count (§4.7); sync.bundle_log gets the bundle (committed_at now()),
--     pg_notify(p_notify_channel, '{"user_pk":N,"bundle_seq":S,"source_id":"…",
--     "source_bundle_id":M}') is sent when the channel is not NULL (source fields left out when
--     empty / 0, as Go's omitempty), sync.bundle_rows the rows (row_ordinal 1…N, payload_wire the
--     canonical text), sync.row_state (user, table, key) → (bundle_seq, deleted); the stage rows
--     are deleted.
-- The caller holds the user's lock and has set the bundle context; it still has to activate the
-- source (activate_source) and apply retention (apply_retention). Returns one row: bundle_seq,
-- row_count, byte_count, bundle_hash (64 lowercase hex digits).
CREATE OR REPLACE FUNCTION oversyncd.finalize_bundle(p_user_pk bigint, p_source_id text, p_source_bundle_id bigint,
                                                     p_notify_channel text)
RETURNS TABLE (bundle_seq bigint, row_count bigint, byte_count bigint, bundle_hash text)
LANGUAGE plpgsql VOLATILE
SET extra_float_digits = 1
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    v_txid      bigint := txid_current();
    v_table_ids integer[];
    v_keys      bytea[];
    v_ops       smallint[];
    v_payloads  text[];    -- wire payload text, NULL for a DELETE
    v_heads     text[];    -- each hashed row up to "row_version":
    v_tails     text[];    -- and after it
    v_n         bigint;
    v_seq       bigint;
    v_seq_text  text;
    v_text      text;
    v_hash      bytea;
BEGIN
    WITH staged AS (
        SELECT s.table_id, s.key_bytes,
               row_number() OVER w AS nth,
               first_value(s.capture_ordinal) OVER w AS first_ordinal,
               first_value(s.op_code) OVER w AS first_op,
               last_value(s.op_code) OVER w AS last_op,
               last_value(s.payload_db) OVER w AS last_payload
          FROM sync.bundle_capture_stage s
         WHERE s.txid = v_txid AND s.user_pk = p_user_pk
        WINDOW w AS (PARTITION BY s.table_id, s.key_bytes ORDER BY s.capture_ordinal
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ), folded AS (
        SELECT first_ordinal, table_id, key_bytes,
               CASE WHEN last_op = 3 THEN 3 WHEN first_op = 1 THEN 1 ELSE 2 END::smallint AS op_code,
               CASE WHEN last_op <> 3 THEN last_payload END AS payload_db
          FROM staged
         WHERE nth = 1 AND NOT (first_op = 1 AND last_op = 3)
    ), tables AS MATERIALIZED (
        -- the bytea columns of the tables concerned, by lower-cased name, as the library reads
        -- them (information_schema's udt_name: a domain's base type)
        SELECT c.table_id, c.schema_name, c.table_name, c.sync_key_column, c.sync_key_kind,
               coalesce((SELECT array_agg(lower(a.attname::text))
                           FROM pg_catalog.pg_namespace n
                           JOIN pg_catalog.pg_class r ON r.relnamespace = n.oid AND r.relname = c.table_name
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
                           JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                           LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
                          WHERE n.nspname = c.schema_name AND a.attnum > 0 AND NOT a.attisdropped
                            AND lower(coalesce(bt.typname, t.typname)::text) = 'bytea'),
                        '{}') AS bytea_columns
          FROM sync.table_catalog c
         WHERE c.table_id IN (SELECT DISTINCT table_id FROM folded)
    ), wire AS (
        SELECT f.first_ordinal, f.table_id, f.key_bytes, f.op_code,
               -- the wire payload (binary_wire.go canonicalizeWirePayload): the hidden owner
               -- column dropped whatever its case, bytea columns in base64, canonical text
               CASE WHEN f.op_code <> 3 THEN p.payload END AS payload,
               '{' || oversyncd.json_quote(t.sync_key_column) || ':'
                   || CASE WHEN t.sync_key_kind = 1 THEN '"' || encode(f.key_bytes, 'hex')::uuid::text || '"'
                           ELSE oversyncd.json_quote(convert_from(f.key_bytes, 'UTF8')) END
                   || '}' AS key_json,
               t.schema_name, t.table_name
          FROM folded f
          JOIN tables t ON t.table_id = f.table_id
          CROSS JOIN LATERAL (
              SELECT '{' || coalesce(string_agg(oversyncd.json_quote(e.k) || ':'
                                                || oversyncd.json_wire_value(e.v, lower(e.k) = ANY (t.bytea_columns)),
                                                ',' ORDER BY e.k COLLATE "C"), '') || '}'
                FROM jsonb_each(f.payload_db) AS e(k, v)
               WHERE lower(e.k) <> '_sync_scope_id') AS p(payload)
    ), numbered AS (
        SELECT w.*, row_number() OVER (ORDER BY w.first_ordinal, w.table_id, w.key_bytes) AS ordinal
          FROM wire w
    )
    SELECT array_agg(table_id ORDER BY ordinal), array_agg(key_bytes ORDER BY ordinal),
           array_agg(op_code ORDER BY ordinal), array_agg(payload ORDER BY ordinal),
           array_agg('{"key":' || key_json
                     || ',"op":"' || CASE op_code WHEN 1 THEN 'INSERT' WHEN 2 THEN 'UPDATE' ELSE 'DELETE' END
                     || '","payload":' || coalesce(payload, 'null')
                     || ',"row_ordinal":' || oversyncd.json_number(ordinal - 1)
                     || ',"row_version":' ORDER BY ordinal),
           array_agg(',"schema":' || oversyncd.json_quote(schema_name)
                     || ',"table":' || oversyncd.json_quote(table_name) || '}' ORDER BY ordinal),
           count(*)
      INTO v_table_ids, v_keys, v_ops, v_payloads, v_heads, v_tails, v_n
      FROM numbered;

    IF v_n = 0 THEN
        DELETE FROM sync.bundle_capture_stage WHERE txid = v_txid AND user_pk = p_user_pk;
        RETURN;
    END IF;

    UPDATE sync.user_state SET next_bundle_seq = next_bundle_seq + 1
     WHERE user_pk = p_user_pk
    RETURNING next_bundle_seq - 1 INTO v_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OV010',
            MESSAGE = format('reserve user bundle_seq: no sync.user_state row for user_pk %s', p_user_pk);
    END IF;

    -- §4.7: the canonical array of the wire rows (row_version passes through float64 like any
    -- number of the library)
    v_seq_text := oversyncd.json_number(v_seq);
    SELECT '[' || string_agg(h || v_seq_text || t, ',' ORDER BY o) || ']'
      INTO v_text
      FROM unnest(v_heads, v_tails) WITH ORDINALITY AS x(h, t, o);
    v_hash := sha256(convert_to(v_text, 'UTF8'));

    INSERT INTO sync.bundle_log (user_pk, bundle_seq, source_id, source_bundle_id, row_count, byte_count,
                                 bundle_hash, committed_at)
    VALUES (p_user_pk, v_seq, p_source_id, p_source_bundle_id, v_n, octet_length(v_text), v_hash, now());

    IF p_notify_channel IS NOT NULL THEN
        PERFORM pg_notify(p_notify_channel,
                          '{"user_pk":' || p_user_pk || ',"bundle_seq":' || v_seq
                          || CASE WHEN coalesce(p_source_id, '') <> '' THEN ',"source_id":' || oversyncd.json_quote(p_source_id)
                                  ELSE '' END
                          || CASE WHEN coalesce(p_source_bundle_id, 0) <> 0
                                  THEN ',"source_bundle_id":' || p_source_bundle_id ELSE '' END
                          || '}');
    END IF;

    INSERT INTO sync.bundle_rows (user_pk, bundle_seq, row_ordinal, table_id, key_bytes, op_code, payload_wire)
    SELECT p_user_pk, v_seq, r.o, r.table_id, r.key_bytes, r.op_code, r.payload::json
      FROM unnest(v_table_ids, v_keys, v_ops, v_payloads) WITH ORDINALITY AS r(table_id, key_bytes, op_code, payload, o);

    INSERT INTO sync.row_state (user_pk, table_id, key_bytes, bundle_seq, deleted)
    SELECT p_user_pk, r.table_id, r.key_bytes, v_seq, r.op_code = 3
      FROM unnest(v_table_ids, v_keys, v_ops) AS r(table_id, key_bytes, op_code)
    ON CONFLICT (user_pk, table_id, key_bytes) DO UPDATE
        SET bundle_seq = EXCLUDED.bundle_seq, deleted = EXCLUDED.deleted;

    DELETE FROM sync.bundle_capture_stage WHERE txid = v_txid AND user_pk = p_user_pk;

    RETURN QUERY SELECT v_seq, v_n, octet_length(v_text)::bigint, encode(v_hash, 'hex');
END
$fn$;

-- ------------------------------------------------------------------- source, retention

-- §4.2: a committed bundle makes its source active with max_committed_source_bundle_id = the
-- bundle's source_bundle_id (source_state.go activateSourceState); a retired source raises
-- OV004.
CREATE OR REPLACE FUNCTION oversyncd.activate_source(p_user_pk bigint, p_source_id text, p_source_bundle_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_state    text;
    v_replaced text;
    v_user_id  text;
BEGIN
    SELECT s.state, s.replaced_by_source_id INTO v_state, v_replaced
      FROM sync.source_state s
     WHERE s.user_pk = p_user_pk AND s.source_id = p_source_id
       FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id,
                                       replaced_by_source_id, retirement_reason)
        VALUES (p_user_pk, p_source_id, 'active', p_source_bundle_id, '', '');
        RETURN;
    END IF;
    IF v_state = 'retired' THEN
        SELECT u.user_id INTO v_user_id FROM sync.user_state u WHERE u.user_pk = p_user_pk;
        RAISE EXCEPTION USING ERRCODE = 'OV004', MESSAGE = format('source %s for user %s was retired', p_source_id, v_user_id)
            || CASE WHEN btrim(v_replaced) <> '' THEN ' and replaced by ' || v_replaced ELSE '' END;
    END IF;
    UPDATE sync.source_state
       SET state = 'active', max_committed_source_bundle_id = p_source_bundle_id,
           replaced_by_source_id = '', retirement_reason = ''
     WHERE user_pk = p_user_pk AND source_id = p_source_id;
END
$fn$;

-- §4.8 (pruning.go): after a committed bundle, the retained floor F moves towards
-- (next_bundle_seq - 1) - p_retained, by at most p_batch bundles (p_batch <= 0: no limit), and
-- the bundles at or below it are deleted (their rows cascade). p_retained <= 0 disables
-- retention. Returns the floor afterwards (NULL for an unknown user). The library's defaults are
-- 10000 and 1000.
CREATE OR REPLACE FUNCTION oversyncd.apply_retention(p_user_pk bigint, p_retained bigint, p_batch bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_next   bigint;
    v_floor  bigint;
    v_target bigint;
BEGIN
    SELECT u.next_bundle_seq, u.retained_bundle_floor INTO v_next, v_floor
      FROM sync.user_state u WHERE u.user_pk = p_user_pk;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_retained IS NULL OR p_retained <= 0 THEN
        RETURN v_floor;
    END IF;
    v_target := greatest(greatest(v_next - 1, 0) - p_retained, 0);
    IF v_target <= v_floor THEN
        RETURN v_floor;
    END IF;
    IF p_batch > 0 AND v_target - v_floor > p_batch THEN
        v_target := v_floor + p_batch;
    END IF;
    UPDATE sync.user_state SET retained_bundle_floor = v_target WHERE user_pk = p_user_pk;
    DELETE FROM sync.bundle_log WHERE user_pk = p_user_pk AND bundle_seq <= v_target;
    RETURN v_target;
END
$fn$;

-- ----------------------------------------------------------- server-originated writes
--
-- sync.begin_server_bundle opens a bundle in the caller's transaction, sync.commit_server_bundle
-- closes it. Between them the caller writes registered tables with plain SQL; the triggers check
-- ownership and stage the effects. oversyncd.server_bundle_open holds one row per open server
-- bundle: commit_server_bundle deletes it, and a deferred constraint trigger refuses a COMMIT
-- that still has one (writes that would otherwise commit without a bundle, never to be pulled).

CREATE UNLOGGED TABLE IF NOT EXISTS oversyncd.server_bundle_open (
    txid             bigint NOT NULL,
    user_pk          bigint NOT NULL,
    user_id          text   NOT NULL,
    source_id        text   NOT NULL,
    source_bundle_id bigint NOT NULL,
    CONSTRAINT server_bundle_open_pkey PRIMARY KEY (txid, user_pk)
);

CREATE OR REPLACE FUNCTION oversyncd.server_bundle_open_at_commit() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM oversyncd.server_bundle_open o
                WHERE o.txid = NEW.txid AND o.user_pk = NEW.user_pk) THEN
        RAISE EXCEPTION USING ERRCODE = 'OV011',
            MESSAGE = format('server bundle for user %s via %s was begun but not committed: call '
                             'sync.commit_server_bundle() before COMMIT, or roll back', NEW.user_id, NEW.source_id);
    END IF;
    RETURN NULL;
END
$fn$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'oversyncd.server_bundle_open'::regclass
                      AND tgname = 'server_bundle_open_at_commit') THEN
        CREATE CONSTRAINT TRIGGER server_bundle_open_at_commit
            AFTER INSERT ON oversyncd.server_bundle_open
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION oversyncd.server_bundle_open_at_commit();
    END IF;
END
$$;

-- The shared part of both begin_server_bundle forms (arguments already validated): the user
-- lock, the scope, the source tuple, the bundle context. p_source_bundle_id NULL: the writer's
-- next id, and an uninitialized scope becomes initialized by the writer (ExecWrite); else that
-- tuple, and the scope must be initialized (WithinSyncBundle).
CREATE OR REPLACE FUNCTION oversyncd.begin_bundle_context(p_user_id text, p_source_id text, p_source_bundle_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_user_pk  bigint;
    v_state    smallint;
    v_lease    timestamptz;
    v_src      text;
    v_max      bigint;
    v_replaced text;
    v_expected bigint;
    v_sbid     bigint;
    v_name     text;
    v_value    text;
    v_existing text;
BEGIN
    -- the library's session lock on the same key (upload_support.go) conflicts with this one
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user_id, 0));

    INSERT INTO sync.user_state (user_id, next_bundle_seq, retained_bundle_floor) VALUES (p_user_id, 1, 0)
    ON CONFLICT (user_id) DO NOTHING;
    INSERT INTO sync.scope_state (user_pk, state_code)
    SELECT u.user_pk, 0 FROM sync.user_state u WHERE u.user_id = p_user_id
    ON CONFLICT (user_pk) DO NOTHING;

    SELECT u.user_pk, s.state_code, s.lease_expires_at INTO v_user_pk, v_state, v_lease
      FROM sync.scope_state s JOIN sync.user_state u ON u.user_pk = s.user_pk
     WHERE u.user_id = p_user_id
       FOR UPDATE;
    -- an initialization lease that ran out ends lazily (scope_state.go)
    IF v_state = 1 AND v_lease IS NOT NULL AND v_lease <= clock_timestamp() THEN
        UPDATE sync.scope_state
           SET state_code = 0, initializer_source_id = NULL, initialization_id = NULL, lease_expires_at = NULL
         WHERE user_pk = v_user_pk;
        v_state := 0;
    END IF;
    IF v_state = 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OV003', MESSAGE = format('sync scope for user %s is initializing', p_user_id)
            || CASE WHEN v_lease IS NOT NULL THEN ' until ' || oversyncd.rfc3339(v_lease) ELSE '' END;
    END IF;
    IF v_state = 0 THEN
        IF p_source_bundle_id IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'OV002',
                MESSAGE = format('sync scope for user %s is not initialized', p_user_id);
        END IF;
        UPDATE sync.scope_state
           SET state_code = 2, initializer_source_id = NULL, initialization_id = NULL, lease_expires_at = NULL,
               initialized_at = now(), initialized_by_source_id = p_source_id
         WHERE user_pk = v_user_pk;
    END IF;

    SET CONSTRAINTS ALL DEFERRED;

    SELECT s.state, s.max_committed_source_bundle_id, s.replaced_by_source_id INTO v_src, v_max, v_replaced
      FROM sync.source_state s
     WHERE s.user_pk = v_user_pk AND s.source_id = p_source_id
       FOR UPDATE;
    IF NOT FOUND THEN
        v_max := 0;
    ELSIF v_src = 'retired' THEN
        RAISE EXCEPTION USING ERRCODE = 'OV004', MESSAGE = format('source %s for user %s was retired', p_source_id, p_user_id)
            || CASE WHEN btrim(v_replaced) <> '' THEN ' and replaced by ' || v_replaced ELSE '' END;
    END IF;
    v_expected := v_max + 1;
    v_sbid := coalesce(p_source_bundle_id, v_expected);
    IF v_sbid < v_expected THEN
        RAISE EXCEPTION USING ERRCODE = 'OV005', MESSAGE = format(
            'source tuple (%s, %s) for user %s is older than retained duplicate history; max committed source_bundle_id is %s',
            p_source_id, v_sbid, p_user_id, v_max);
    ELSIF v_sbid > v_expected THEN
        RAISE EXCEPTION USING ERRCODE = 'OV006', MESSAGE = format(
            'source %s for user %s expected next source_bundle_id %s, got %s', p_source_id, p_user_id, v_expected, v_sbid);
    END IF;

    -- the bundle context (upload_support.go setBundleTxContext): a value set before is an error
    -- unless it is the same
    FOR v_name, v_value IN
        SELECT * FROM (VALUES ('oversync.bundle_user_id', p_user_id),
                              ('oversync.bundle_user_pk', v_user_pk::text),
                              ('oversync.bundle_source_id', p_source_id),
                              ('oversync.bundle_source_bundle_id', v_sbid::text),
                              ('oversync.bundle_initialization_id', '')) AS g(n, v)
    LOOP
        v_existing := coalesce(current_setting(v_name, true), '');
        IF v_existing <> '' AND v_existing <> v_value THEN
            RAISE EXCEPTION USING ERRCODE = 'OV007',
                MESSAGE = format('transaction already carries conflicting sync bundle context for %s', v_name);
        END IF;
        PERFORM set_config(v_name, v_value, true);
    END LOOP;

    IF EXISTS (SELECT 1 FROM oversyncd.server_bundle_open o WHERE o.txid = txid_current() AND o.user_pk = v_user_pk) THEN
        RAISE EXCEPTION USING ERRCODE = 'OV007', MESSAGE = format(
            'a server bundle for user %s is already open in this transaction (sync.commit_server_bundle() ends it)',
            p_user_id);
    END IF;
    INSERT INTO oversyncd.server_bundle_open (txid, user_pk, user_id, source_id, source_bundle_id)
    VALUES (txid_current(), v_user_pk, p_user_id, p_source_id, v_sbid);
    RETURN v_sbid;
END
$fn$;

-- ScopeManager.ExecWrite (scope_manager.go): a server-side writer writes as the user. The user id
-- and the writer id are trimmed; the scope is created if new, an uninitialized scope becomes
-- initialized by the writer, an initializing one raises OV003; the source tuple is (writer,
-- its highest committed source_bundle_id + 1), a retired writer raises OV004. Returns the
-- source_bundle_id the bundle will carry.
CREATE OR REPLACE FUNCTION sync.begin_server_bundle(p_user_id text, p_writer_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF coalesce(btrim(p_user_id), '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = 'scope_id is required';
    END IF;
    IF coalesce(btrim(p_writer_id), '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = 'writer_id is required';
    END IF;
    RETURN oversyncd.begin_bundle_context(btrim(p_user_id), btrim(p_writer_id), NULL);
END
$fn$;

-- SyncService.WithinSyncBundle (bundle_capture.go): the caller names the source tuple, which must
-- be the source's next one (older: OV005, further: OV006); the scope must already be initialized
-- (OV002, OV003). Ids are taken as given (not trimmed). Returns p_source_bundle_id.
CREATE OR REPLACE FUNCTION sync.begin_server_bundle(p_user_id text, p_source_id text, p_source_bundle_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF coalesce(p_user_id, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = 'actor user_id is required';
    END IF;
    IF coalesce(btrim(p_source_id), '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = 'bundle source_id is required';
    END IF;
    IF p_source_bundle_id IS NULL OR p_source_bundle_id <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = 'bundle source_bundle_id must be > 0';
    END IF;
    RETURN oversyncd.begin_bundle_context(p_user_id, p_source_id, p_source_bundle_id);
END
$fn$;

-- Ends the server bundle begun in this transaction: finalizes it (NOTIFY on
-- oversync_bundle_change_v1), activates the source, applies retention (10000 bundles kept,
-- 1000 pruned at most per commit: the library's defaults) and clears the bundle context. Writes
-- that captured nothing raise OV009 (the library's ScopeWriteNoCapturedChangesError), a call
-- without sync.begin_server_bundle OV008: either way the caller's transaction must roll back.
CREATE OR REPLACE FUNCTION sync.commit_server_bundle()
RETURNS TABLE (bundle_seq bigint, source_id text, source_bundle_id bigint, row_count bigint, byte_count bigint,
               bundle_hash text)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_user_id text := coalesce(current_setting('oversync.bundle_user_id', true), '');
    v_open    oversyncd.server_bundle_open;
    v_result  record;
BEGIN
    SELECT o.* INTO v_open FROM oversyncd.server_bundle_open o
     WHERE o.txid = txid_current() AND o.user_id = v_user_id;
    IF v_user_id = '' OR NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OV008',
            MESSAGE = 'no server bundle in progress in this transaction: call sync.begin_server_bundle() first';
    END IF;
    IF coalesce(current_setting('oversync.bundle_user_pk', true), '') <> v_open.user_pk::text
       OR coalesce(current_setting('oversync.bundle_source_id', true), '') <> v_open.source_id
       OR coalesce(current_setting('oversync.bundle_source_bundle_id', true), '') <> v_open.source_bundle_id::text
       OR coalesce(current_setting('oversync.bundle_initialization_id', true), '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OV008', MESSAGE = format(
            'the sync bundle context of this transaction was changed after sync.begin_server_bundle() for user %s',
            v_user_id);
    END IF;

    SELECT * INTO v_result
      FROM oversyncd.finalize_bundle(v_open.user_pk, v_open.source_id, v_open.source_bundle_id,
                                     'oversync_bundle_change_v1');
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OV009', MESSAGE = format(
            'scope write for %s via %s produced no visible registered-table effects', v_user_id, v_open.source_id);
    END IF;
    PERFORM oversyncd.activate_source(v_open.user_pk, v_open.source_id, v_open.source_bundle_id);
    PERFORM oversyncd.apply_retention(v_open.user_pk, 10000, 1000);

    DELETE FROM oversyncd.server_bundle_open o WHERE o.txid = v_open.txid AND o.user_pk = v_open.user_pk;
    PERFORM set_config('oversync.bundle_user_id', '', true),
            set_config('oversync.bundle_user_pk', '', true),
            set_config('oversync.bundle_source_id', '', true),
            set_config('oversync.bundle_source_bundle_id', '', true),
            set_config('oversync.bundle_initialization_id', '', true);

    RETURN QUERY SELECT v_result.bundle_seq, v_open.source_id, v_open.source_bundle_id, v_result.row_count,
                        v_result.byte_count, v_result.bundle_hash;
END
$fn$;
