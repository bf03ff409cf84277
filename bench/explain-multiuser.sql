-- Plan check after the download scenario (bench/run calls it with the 1,000,000 rows of
-- bench-dl still in the log): a second user, bench-small, gets 1,000 newer rows, and the page
-- and highest-id statements of src/sync/upload.c are explained for users whose rows are not at
-- the end of the log, with the plan a prepared statement uses after five executions (generic)
-- and with a custom plan. Then rewritten forms: an ORDER BY that names user_id (does not help:
-- with user_id = $1 the planner knows the order is the same), and row comparisons on
-- (user_id, server_id), which only an index that starts with those two columns can use.
\set ON_ERROR_STOP 1
\pset pager off
INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload, source_id,
                                    source_change_id, server_version)
SELECT 'bench-small', 'bench', 'items', 'INSERT', md5('small' || g)::uuid,
       jsonb_build_object('id', md5('small' || g)::uuid, 'n', g), 'small-dev', g, 1
  FROM generate_series(1, 1000) AS g;
ANALYZE sync.server_change_log;
SELECT max(server_id) AS hi FROM sync.server_change_log \gset

PREPARE page(text, bigint, bigint, bool, text, bigint) AS
SELECT l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid, l.payload::text, l.server_version,
       coalesce(m.deleted, false), l.source_id, l.source_change_id,
       to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM sync.server_change_log l
  LEFT JOIN sync.sync_row_meta m ON m.user_id = l.user_id AND m.schema_name = l.schema_name
   AND m.table_name = l.table_name AND m.pk_uuid = l.pk_uuid
 WHERE l.user_id = $1 AND l.server_id > $2 AND l.server_id <= $3 AND ($4 OR l.source_id <> $5)
 ORDER BY l.server_id LIMIT $6;
PREPARE highest(text) AS
SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = $1;
-- rewritten: the ORDER BY names user_id first, which only scl_user_seq_idx can deliver
PREPARE page2(text, bigint, bigint, bool, text, bigint) AS
SELECT l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid, l.payload::text, l.server_version,
       coalesce(m.deleted, false), l.source_id, l.source_change_id,
       to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM sync.server_change_log l
  LEFT JOIN sync.sync_row_meta m ON m.user_id = l.user_id AND m.schema_name = l.schema_name
   AND m.table_name = l.table_name AND m.pk_uuid = l.pk_uuid
 WHERE l.user_id = $1 AND l.server_id > $2 AND l.server_id <= $3 AND ($4 OR l.source_id <> $5)
 ORDER BY l.user_id, l.server_id LIMIT $6;
PREPARE highest2(text) AS
SELECT coalesce((SELECT server_id FROM sync.server_change_log WHERE user_id = $1
                  ORDER BY user_id DESC, server_id DESC LIMIT 1), 0);
-- rewritten with row comparisons
PREPARE page3(text, bigint, bigint, bool, text, bigint) AS
SELECT l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid, l.payload::text, l.server_version,
       coalesce(m.deleted, false), l.source_id, l.source_change_id,
       to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM sync.server_change_log l
  LEFT JOIN sync.sync_row_meta m ON m.user_id = l.user_id AND m.schema_name = l.schema_name
   AND m.table_name = l.table_name AND m.pk_uuid = l.pk_uuid
 WHERE l.user_id = $1 AND (l.user_id, l.server_id) > ($1, $2) AND (l.user_id, l.server_id) <= ($1, $3)
   AND ($4 OR l.source_id <> $5)
 ORDER BY l.server_id LIMIT $6;
PREPARE highest3(text) AS
SELECT coalesce((SELECT CASE WHEN x.user_id = $1 THEN x.server_id END
                   FROM (SELECT user_id, server_id FROM sync.server_change_log
                          WHERE (user_id, server_id) <= ($1, 9223372036854775807)
                          ORDER BY user_id DESC, server_id DESC LIMIT 1) AS x), 0);

SET plan_cache_mode = force_generic_plan;
\echo '== generic plan: first page of bench-small (1,000 rows, all after the 1,000,000 of bench-dl)'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page('bench-small', 0, :hi, false, 'reader', 1001);
\echo '== generic plan: highest server_id of a user with no rows (a new user, an empty upload)'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest('nobody');
\echo '== generic plan: highest server_id of bench-dl (its newest row is 1,000 rows from the end)'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest('bench-dl');
SET plan_cache_mode = force_custom_plan;
\echo '== custom plan: first page of bench-small'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page('bench-small', 0, :hi, false, 'reader', 1001);
\echo '== custom plan: highest server_id of a user with no rows'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest('nobody');
SET plan_cache_mode = force_generic_plan;
\echo '== rewritten (ORDER BY user_id, server_id), generic plan: first page of bench-small'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page2('bench-small', 0, :hi, false, 'reader', 1001);
\echo '== rewritten, generic plan: first page of bench-dl'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page2('bench-dl', 0, :hi, false, 'reader', 1001);
\echo '== rewritten (ORDER BY user_id DESC, server_id DESC LIMIT 1), generic plan: highest of a user with no rows'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest2('nobody');
\echo '== rewritten, generic plan: highest of bench-dl'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest2('bench-dl');
\echo '== row comparisons, generic plan: first page of bench-small'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page3('bench-small', 0, :hi, false, 'reader', 1001);
\echo '== row comparisons, generic plan: first page of bench-dl'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page3('bench-dl', 0, :hi, false, 'reader', 1001);
\echo '== row comparisons, generic plan: last page of bench-dl'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE page3('bench-dl', :hi - 2000, :hi, false, 'reader', 1001);
\echo '== row comparison (no equality), generic plan: highest of a user with no rows'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest3('nobody');
\echo '== row comparison, generic plan: highest of bench-dl'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE highest3('bench-dl');
