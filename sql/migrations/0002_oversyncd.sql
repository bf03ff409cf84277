-- Brings whatever sidecar 0001 found (the reference server's layout of any version, or a
-- hand-made one) to the shape oversyncd relies on. Every step checks the catalog first, so the
-- file can run on any of those states and changes only what differs; it never drops a row.

-- 1. Refuse, with one clear message, a layout the statements of oversyncd cannot work with.
--    CREATE TABLE IF NOT EXISTS in 0001 skips any relation of the same name, so a view or a
--    table with other columns can sit where a sidecar table is expected.
DO $$
DECLARE
    want record;
    rel regclass;
    kind "char";
    have text;
    problem text;
    problems text[] := '{}';
BEGIN
    FOR want IN
        SELECT * FROM (VALUES
            ('sync_row_meta', 'user_id', ARRAY['text']),
            ('sync_row_meta', 'schema_name', ARRAY['text']),
            ('sync_row_meta', 'table_name', ARRAY['text']),
            ('sync_row_meta', 'pk_uuid', ARRAY['uuid']),
            ('sync_row_meta', 'server_version', ARRAY['bigint']),
            ('sync_row_meta', 'deleted', ARRAY['boolean']),
            ('sync_row_meta', 'updated_at', ARRAY['timestamp with time zone']),
            ('sync_state', 'user_id', ARRAY['text']),
            ('sync_state', 'schema_name', ARRAY['text']),
            ('sync_state', 'table_name', ARRAY['text']),
            ('sync_state', 'pk_uuid', ARRAY['uuid']),
            ('sync_state', 'payload', ARRAY['jsonb', 'json']),
            ('server_change_log', 'server_id', ARRAY['bigint']),
            ('server_change_log', 'user_id', ARRAY['text']),
            ('server_change_log', 'schema_name', ARRAY['text']),
            ('server_change_log', 'table_name', ARRAY['text']),
            ('server_change_log', 'op', ARRAY['text']),
            ('server_change_log', 'pk_uuid', ARRAY['uuid']),
            ('server_change_log', 'payload', ARRAY['jsonb', 'json']),
            ('server_change_log', 'source_id', ARRAY['text']),
            ('server_change_log', 'source_change_id', ARRAY['bigint']),
            ('server_change_log', 'server_version', ARRAY['bigint']),
            ('server_change_log', 'ts', ARRAY['timestamp with time zone']),
            ('materialize_failures', 'id', ARRAY['bigint']),
            ('materialize_failures', 'user_id', ARRAY['text']),
            ('materialize_failures', 'schema_name', ARRAY['text']),
            ('materialize_failures', 'table_name', ARRAY['text']),
            ('materialize_failures', 'pk_uuid', ARRAY['uuid']),
            ('materialize_failures', 'attempted_version', ARRAY['bigint']),
            ('materialize_failures', 'op', ARRAY['text']),
            ('materialize_failures', 'payload', ARRAY['jsonb', 'json']),
            ('materialize_failures', 'error', ARRAY['text']),
            ('materialize_failures', 'first_seen', ARRAY['timestamp with time zone']),
            ('materialize_failures', 'retry_count', ARRAY['integer'])
        ) AS w(tbl, col, types)
    LOOP
        rel := to_regclass(format('sync.%I', want.tbl));
        SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = rel;
        IF rel IS NULL OR kind NOT IN ('r', 'p') THEN
            problem := format('sync.%I is not a table', want.tbl);
            IF NOT problem = ANY (problems) THEN
                problems := problems || problem;
            END IF;
            CONTINUE;
        END IF;
        SELECT format_type(a.atttypid, a.atttypmod) INTO have
          FROM pg_attribute a
         WHERE a.attrelid = rel AND a.attname = want.col AND a.attnum > 0 AND NOT a.attisdropped;
        IF have IS NULL THEN
            problems := problems || format('sync.%I has no column %I', want.tbl, want.col);
        ELSIF NOT have = ANY (want.types) THEN
            problems := problems || format('sync.%I.%I is %s, oversyncd needs %s',
                                           want.tbl, want.col, have, array_to_string(want.types, ' or '));
        END IF;
    END LOOP;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'the sidecar in schema sync does not have the layout oversyncd needs: %',
            array_to_string(problems, '; ')
            USING HINT = 'Fix or rename the listed objects; oversyncd creates missing ones itself.';
    END IF;
END
$$;

-- 2. Payloads as jsonb. A newer reference server stores them as json (text kept verbatim);
--    oversyncd compares, indexes and builds payloads with jsonb operators. The cast keeps every
--    row; jsonb only normalises whitespace, key order and duplicate keys.
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['sync_state', 'server_change_log', 'materialize_failures'] LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = format('sync.%I', tbl)::regclass AND a.attname = 'payload'
                      AND a.atttypid = 'json'::regtype AND NOT a.attisdropped) THEN
            EXECUTE format('ALTER TABLE sync.%I ALTER COLUMN payload TYPE jsonb USING payload::jsonb', tbl);
        END IF;
    END LOOP;
END
$$;

-- 3. NOT NULL wherever the reference layout has it (every column but the change log's and the
--    failure log's payload): oversyncd reads versions, flags and times without NULL checks, and
--    a unique key over nullable columns lets NULL keys through, which would defeat idempotency.
--    One ALTER per table, so a table is scanned once however many columns change.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT a.attrelid, string_agg(format('ALTER COLUMN %I SET NOT NULL', a.attname), ', ') AS alters
          FROM (VALUES
                    ('sync_row_meta', ARRAY['user_id', 'schema_name', 'table_name', 'pk_uuid',
                                            'server_version', 'deleted', 'updated_at']),
                    ('sync_state', ARRAY['user_id', 'schema_name', 'table_name', 'pk_uuid', 'payload']),
                    ('server_change_log', ARRAY['server_id', 'user_id', 'schema_name', 'table_name', 'op',
                                                'pk_uuid', 'source_id', 'source_change_id',
                                                'server_version', 'ts']),
                    ('materialize_failures', ARRAY['id', 'user_id', 'schema_name', 'table_name', 'pk_uuid',
                                                   'attempted_version', 'op', 'error', 'first_seen',
                                                   'retry_count'])
               ) AS w(tbl, cols)
          JOIN pg_attribute a ON a.attrelid = format('sync.%I', w.tbl)::regclass
                             AND a.attname = ANY (w.cols)
         WHERE NOT a.attnotnull AND NOT a.attisdropped
         GROUP BY a.attrelid
    LOOP
        EXECUTE format('ALTER TABLE %s %s', t.attrelid::regclass, t.alters);
    END LOOP;
END
$$;

-- 4. The keys every upsert, ON CONFLICT clause and idempotency check depends on. A key counts
--    as present when a valid, non-partial unique index covers exactly its columns (in any order,
--    which is what ON CONFLICT inference accepts), whatever it is called. Missing keys get the
--    names the reference server's DDL would have given them; a table that already has another
--    primary key gets a unique constraint instead.
DO $$
DECLARE
    k record;
    rel regclass;
    collist text;
    kind text;
BEGIN
    FOR k IN
        SELECT * FROM (VALUES
            ('sync_row_meta', true, 'sync_row_meta_pkey',
             ARRAY['user_id', 'schema_name', 'table_name', 'pk_uuid']),
            ('sync_state', true, 'sync_state_pkey',
             ARRAY['user_id', 'schema_name', 'table_name', 'pk_uuid']),
            ('server_change_log', true, 'server_change_log_pkey',
             ARRAY['server_id']),
            ('server_change_log', false, 'server_change_log_user_id_source_id_source_change_id_key',
             ARRAY['user_id', 'source_id', 'source_change_id']),
            ('materialize_failures', true, 'materialize_failures_pkey',
             ARRAY['id']),
            ('materialize_failures', false, 'materialize_failures_user_id_schema_name_table_name_pk_uuid_key',
             ARRAY['user_id', 'schema_name', 'table_name', 'pk_uuid', 'attempted_version'])
        ) AS v(tbl, primary_key, conname, cols)
    LOOP
        rel := format('sync.%I', k.tbl)::regclass;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pg_index i
             WHERE i.indrelid = rel AND i.indisunique AND i.indisvalid
               AND i.indpred IS NULL AND i.indexprs IS NULL
               AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                      FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS u(attnum, n)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
                     WHERE u.n <= i.indnkeyatts)
                   = (SELECT array_agg(c ORDER BY c) FROM unnest(k.cols) AS c));

        collist := (SELECT string_agg(quote_ident(c), ', ' ORDER BY n)
                      FROM unnest(k.cols) WITH ORDINALITY AS x(c, n));
        kind := CASE WHEN k.primary_key
                      AND NOT EXISTS (SELECT 1 FROM pg_constraint
                                       WHERE conrelid = rel AND contype = 'p')
                     THEN 'PRIMARY KEY' ELSE 'UNIQUE' END;
        IF to_regclass(format('sync.%I', k.conname)) IS NULL THEN
            EXECUTE format('ALTER TABLE sync.%I ADD CONSTRAINT %I %s (%s)', k.tbl, k.conname, kind, collist);
        ELSE
            EXECUTE format('ALTER TABLE sync.%I ADD %s (%s)', k.tbl, kind, collist);
        END IF;
    END LOOP;
END
$$;

-- 5. The change log's row checks: download code trusts op to be one of three words and the
--    payload to be present exactly when op is not DELETE.
DO $$
DECLARE
    op_att int2;
    payload_att int2;
BEGIN
    SELECT attnum INTO op_att FROM pg_attribute
     WHERE attrelid = 'sync.server_change_log'::regclass AND attname = 'op';
    SELECT attnum INTO payload_att FROM pg_attribute
     WHERE attrelid = 'sync.server_change_log'::regclass AND attname = 'payload';

    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'sync.server_change_log'::regclass AND contype = 'c'
                      AND conkey = ARRAY[op_att]) THEN
        ALTER TABLE sync.server_change_log ADD CHECK (op IN ('INSERT', 'UPDATE', 'DELETE'));
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'sync.server_change_log'::regclass AND contype = 'c'
                      AND (conname = 'server_change_payload_by_op_chk'
                           OR conkey @> ARRAY[op_att, payload_att])) THEN
        ALTER TABLE sync.server_change_log ADD CONSTRAINT server_change_payload_by_op_chk
            CHECK ((op = 'DELETE' AND payload IS NULL) OR (op IN ('INSERT', 'UPDATE') AND payload IS NOT NULL));
    END IF;
END
$$;

-- 6. Column defaults that inserts leave to the server. Only missing ones are set, so an
--    operator's own default is kept.
DO $$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT * FROM (VALUES
            ('sync_row_meta', 'server_version', '0'),
            ('sync_row_meta', 'deleted', 'false'),
            ('sync_row_meta', 'updated_at', 'now()'),
            ('server_change_log', 'server_version', '0'),
            ('server_change_log', 'ts', 'now()'),
            ('materialize_failures', 'first_seen', 'now()'),
            ('materialize_failures', 'retry_count', '0')
        ) AS v(tbl, col, expr)
    LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = format('sync.%I', d.tbl)::regclass AND a.attname = d.col
                      AND NOT a.atthasdef) THEN
            EXECUTE format('ALTER TABLE sync.%I ALTER COLUMN %I SET DEFAULT %s', d.tbl, d.col, d.expr);
        END IF;
    END LOOP;
END
$$;

-- 7. Id sequences. A column without any default gets the sequence bigserial would have made.
--    A sequence behind the highest id (rows restored without their sequence, ids inserted by
--    hand) would hand out ids that collide with the primary key, so it is moved past them.
--    setval is not rolled back with the transaction; it only ever moves forward, which is safe.
DO $$
DECLARE
    s record;
    seq text;
    top bigint;
    last bigint;
    called boolean;
BEGIN
    FOR s IN
        SELECT * FROM (VALUES ('server_change_log', 'server_id'), ('materialize_failures', 'id')) AS v(tbl, col)
    LOOP
        seq := pg_get_serial_sequence(format('sync.%I', s.tbl), s.col);
        IF seq IS NULL AND EXISTS (SELECT 1 FROM pg_attribute a
                                    WHERE a.attrelid = format('sync.%I', s.tbl)::regclass
                                      AND a.attname = s.col AND NOT a.atthasdef) THEN
            seq := format('sync.%I', s.tbl || '_' || s.col || '_seq');
            EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s AS bigint', seq);
            EXECUTE format('ALTER SEQUENCE %s OWNED BY sync.%I.%I', seq, s.tbl, s.col);
            EXECUTE format('ALTER TABLE sync.%I ALTER COLUMN %I SET DEFAULT nextval(%L::regclass)',
                           s.tbl, s.col, seq);
        END IF;
        CONTINUE WHEN seq IS NULL;

        EXECUTE format('SELECT max(%I) FROM sync.%I', s.col, s.tbl) INTO top;
        EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
        IF top IS NOT NULL AND (top > last OR (top = last AND NOT called)) THEN
            PERFORM setval(seq::regclass, top);
        END IF;
    END LOOP;
END
$$;

-- 8. Indexes: every index of the reference layout. Older reference versions lack some (for
--    instance scl_user_schema_seq_idx, the one schema-filtered download pages need) and the
--    newest one drops scl_seq_idx and scl_triplet_idx.
CREATE INDEX IF NOT EXISTS scl_seq_idx ON sync.server_change_log (server_id);
CREATE INDEX IF NOT EXISTS scl_user_seq_idx ON sync.server_change_log (user_id, server_id);
CREATE INDEX IF NOT EXISTS scl_user_schema_seq_idx ON sync.server_change_log (user_id, schema_name, server_id);
CREATE INDEX IF NOT EXISTS scl_triplet_idx ON sync.server_change_log (user_id, schema_name, table_name, pk_uuid);
CREATE INDEX IF NOT EXISTS scl_user_pk_seq_idx ON sync.server_change_log (user_id, schema_name, table_name, pk_uuid, server_id);
CREATE INDEX IF NOT EXISTS scl_user_delete_seq_idx ON sync.server_change_log (user_id, server_id) WHERE op = 'DELETE';
CREATE INDEX IF NOT EXISTS mf_user_table_idx ON sync.materialize_failures (user_id, schema_name, table_name);
