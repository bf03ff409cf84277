-- EXPLAIN ANALYZE of the statements oversyncd sends for one upload of 200 new rows, and of the
-- floor's three INSERTs for 200 more, against whatever the sidecar holds when bench/run calls
-- this (after the upload-sql scenario: ~176,000 rows in each sidecar table).
-- The statement texts are those of src/sync/upload.c (upload_statements[]: sync_write and
-- sync_write_fresh) and bench/floor.c.
\set ON_ERROR_STOP 1
\pset pager off

SELECT array_agg('bench'::text) AS s, array_agg('items'::text) AS t, array_agg('INSERT'::text) AS o,
       array_agg(md5('explain' || g)::uuid ORDER BY g) AS pk, array_agg(g ORDER BY g) AS scid,
       array_agg(1) AS v, array_agg(true) AS fin, array_agg(false) AS del, array_agg(false) AS mat,
       jsonb_agg(jsonb_build_object('id', md5('explain' || g)::uuid, 'name', 'item ' || g,
                                    'body', repeat(md5(g::text) || ' ', 30), 'n', 123) ORDER BY g) AS payloads
  FROM generate_series(1, 200) AS g \gset
SELECT array_agg(md5('floor-explain' || g)::uuid ORDER BY g) AS fpk, array_agg(g ORDER BY g) AS fscid,
       jsonb_agg(jsonb_build_object('id', md5('floor-explain' || g)::uuid, 'name', 'item ' || g,
                                    'body', repeat(md5(g::text) || ' ', 30), 'n', 123) ORDER BY g) AS fpayloads
  FROM generate_series(1, 200) AS g \gset

PREPARE seen(text, text, bigint[]) AS
SELECT x.scid FROM unnest($3::bigint[]) AS x(scid)
 CROSS JOIN LATERAL (SELECT 1 FROM sync.server_change_log l WHERE l.user_id = $1 AND l.source_id = $2
                        AND l.source_change_id = x.scid LIMIT 1) AS l;
PREPARE versions(text, text[], text[], uuid[]) AS
SELECT k.i, m.server_version, m.deleted
  FROM unnest($2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY AS k(s, t, p, i)
 CROSS JOIN LATERAL (SELECT m.server_version, m.deleted FROM sync.sync_row_meta m
                      WHERE m.user_id = $1 AND m.schema_name = k.s AND m.table_name = k.t
                        AND m.pk_uuid = k.p LIMIT 1) AS m;
PREPARE highest(text) AS
SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = $1;
PREPARE write(text, text, text[], text[], text[], uuid[], bigint[], bigint[], bool[], bool[], jsonb, bool[]) AS
WITH input AS (
  SELECT x.n, x.s, x.t, x.op, x.pk, x.scid, x.v, x.fin, x.del, x.mat,
         CASE WHEN x.op = 'DELETE' THEN NULL ELSE $11::jsonb -> (x.n::int - 1) END AS payload
  FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::bigint[], $8::bigint[],
              $9::bool[], $10::bool[], $12::bool[])
       WITH ORDINALITY AS x(s, t, op, pk, scid, v, fin, del, mat, n)),
 log AS (
  INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,
                                      source_id, source_change_id, server_version)
  SELECT $1, s, t, op, pk, to_json(payload), $2, scid, v FROM input ORDER BY n
  RETURNING server_id),
 meta AS (
  INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version,
                                  deleted, updated_at)
  SELECT $1, s, t, pk, v, del, now() FROM input WHERE fin
  ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE
  SET server_version = EXCLUDED.server_version, deleted = EXCLUDED.deleted,
      updated_at = EXCLUDED.updated_at),
 state AS (
  INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
  SELECT $1, s, t, pk, payload FROM input WHERE fin AND NOT del
  ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE SET payload = EXCLUDED.payload),
 gone AS (
  DELETE FROM sync.sync_state st USING input i
  WHERE i.fin AND i.del AND st.user_id = $1 AND st.schema_name = i.s AND st.table_name = i.t
    AND st.pk_uuid = i.pk),
 cleared AS (
  DELETE FROM sync.materialize_failures f USING input i
  WHERE i.fin AND i.mat AND f.user_id = $1 AND f.schema_name = i.s AND f.table_name = i.t
    AND f.pk_uuid = i.pk AND f.attempted_version <= i.v)
SELECT coalesce(max(server_id), 0) FROM log;
-- sync_write_fresh: what oversyncd sends when every key of the batch is new (and unmaterialized)
PREPARE write_fresh(text, text, text[], text[], text[], uuid[], bigint[], bigint[], bool[], bool[], jsonb) AS
WITH input AS (
  SELECT x.n, x.s, x.t, x.op, x.pk, x.scid, x.v, x.fin, x.del,
         CASE WHEN x.op = 'DELETE' THEN NULL ELSE $11::jsonb -> (x.n::int - 1) END AS payload
  FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::bigint[], $8::bigint[],
              $9::bool[], $10::bool[])
       WITH ORDINALITY AS x(s, t, op, pk, scid, v, fin, del, n)),
 log AS (
  INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,
                                      source_id, source_change_id, server_version)
  SELECT $1, s, t, op, pk, to_json(payload), $2, scid, v FROM input ORDER BY n
  RETURNING server_id),
 meta AS (
  INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version,
                                  deleted, updated_at)
  SELECT $1, s, t, pk, v, del, now() FROM input WHERE fin),
 state AS (
  INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
  SELECT $1, s, t, pk, payload FROM input WHERE fin AND NOT del)
SELECT coalesce(max(server_id), 0) FROM log;

PREPARE flog(text, text, uuid[], bigint[], jsonb) AS
INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,
                                    source_id, source_change_id, server_version)
SELECT $1, 'bench', 'items', 'INSERT', x.pk, $5::jsonb -> (x.n::int - 1), $2, x.scid, 1
  FROM unnest($3::uuid[], $4::bigint[]) WITH ORDINALITY AS x(pk, scid, n) ORDER BY x.n;
PREPARE fmeta(text, uuid[]) AS
INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted, updated_at)
SELECT $1, 'bench', 'items', pk, 1, false, now() FROM unnest($2::uuid[]) AS pk;
PREPARE fstate(text, uuid[], jsonb) AS
INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
SELECT $1, 'bench', 'items', x.pk, $3::jsonb -> (x.n::int - 1)
  FROM unnest($2::uuid[]) WITH ORDINALITY AS x(pk, n);

-- One oversyncd upload (round trip 1 reads, then the write), with the plan a prepared
-- statement uses after its first five executions.
SET plan_cache_mode = force_generic_plan;
BEGIN;
\echo '== oversyncd round trip 1: seen scids (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE seen('explain-u', 'explain-d', :'scid');
\echo '== oversyncd round trip 1: row versions (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE versions('explain-u', :'s', :'t', :'pk');
\echo '== oversyncd round trip 1: highest server_id (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE highest('explain-u');
\echo '== the same, custom plan'
SET LOCAL plan_cache_mode = force_custom_plan;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE highest('explain-u');
SET LOCAL plan_cache_mode = force_generic_plan;
\echo '== oversyncd round trip 2: sync_write, 200 new rows (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE write('explain-u', 'explain-d', :'s', :'t', :'o', :'pk', :'scid', :'v', :'fin', :'del', :'payloads', :'mat');
ROLLBACK;
SET plan_cache_mode = force_custom_plan;
BEGIN;
\echo '== oversyncd round trip 2: sync_write, 200 new rows (custom plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE write('explain-u', 'explain-d', :'s', :'t', :'o', :'pk', :'scid', :'v', :'fin', :'del', :'payloads', :'mat');
ROLLBACK;
BEGIN;
\echo '== oversyncd round trip 2: sync_write_fresh, the same 200 new rows (custom plan, what oversyncd sends)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE write_fresh('explain-u', 'explain-d', :'s', :'t', :'o', :'pk', :'scid', :'v', :'fin', :'del', :'payloads');
ROLLBACK;

-- The floor's three statements for 200 new rows.
SET plan_cache_mode = force_generic_plan;
BEGIN;
\echo '== floor: change log INSERT (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE flog('explain-f', 'explain-fd', :'fpk', :'fscid', :'fpayloads');
\echo '== floor: sync_row_meta INSERT (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE fmeta('explain-f', :'fpk');
\echo '== floor: sync_state INSERT (generic plan)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE fstate('explain-f', :'fpk', :'fpayloads');
ROLLBACK;
