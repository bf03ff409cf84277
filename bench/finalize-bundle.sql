-- One size of bench/finalize-bundle: psql -v n=ROWS -v reps=BUNDLES -f bench/finalize-bundle.sql
-- on a database with the example business tables, laid out by bundle_bootstrap. Each bundle
-- inserts n rows of business.typed_rows (nine columns: uuid, text, NULL or text with <...>,
-- bigint, float8 of 17 digits, bytea, timestamptz). Two runs of reps bundles each, one
-- transaction per bundle:
--   server writes  sync.begin_server_bundle, the INSERT (the capture trigger), and
--                  sync.commit_server_bundle (finalize + source + retention + context cleared);
--   push path      the bundle context set by hand, the INSERT, oversyncd.finalize_bundle alone.
-- Prints the medians after the first 5 bundles of each run: capture µs/row, finalize and commit
-- ms and µs/row.
\set QUIET on
SELECT set_config('bench.n', :'n', false), set_config('bench.reps', :'reps', false) \gset
CREATE TEMP TABLE timings (what text, n int, capture_ms float8, ms float8);
DO $$
DECLARE
    n int := current_setting('bench.n')::int;
    reps int := current_setting('bench.reps')::int;
    t0 timestamptz; t1 timestamptz; t2 timestamptz;
    pk bigint;
    i int;
BEGIN
    PERFORM setseed(0.5);
    FOR i IN 1..reps LOOP
        PERFORM sync.begin_server_bundle('bench-user', 'bench');
        t0 := clock_timestamp();
        INSERT INTO business.typed_rows (id, name, note, count_value, enabled_flag, rating, data, created_at)
        SELECT gen_random_uuid(), 'row ' || g, CASE WHEN g % 2 = 0 THEN 'note <' || g || '>' END, g * 1000003,
               g % 2, random(), decode(md5(g::text), 'hex'),
               '2026-03-22T12:00:00.5Z'::timestamptz + g * interval '1.5 second'
          FROM generate_series(1, n) g;
        t1 := clock_timestamp();
        PERFORM * FROM sync.commit_server_bundle();
        t2 := clock_timestamp();
        INSERT INTO timings VALUES ('commit_server_bundle', n, extract(epoch FROM t1 - t0) * 1000,
                                    extract(epoch FROM t2 - t1) * 1000);
        COMMIT;
    END LOOP;
    pk := (SELECT user_pk FROM sync.user_state WHERE user_id = 'bench-user');
    FOR i IN 1..reps LOOP
        PERFORM set_config('oversync.bundle_user_id', 'bench-user', true),
                set_config('oversync.bundle_user_pk', pk::text, true);
        t0 := clock_timestamp();
        INSERT INTO business.typed_rows (id, name, note, count_value, enabled_flag, rating, data, created_at)
        SELECT gen_random_uuid(), 'row ' || g, CASE WHEN g % 2 = 0 THEN 'note <' || g || '>' END, g * 1000003,
               g % 2, random(), decode(md5(g::text), 'hex'),
               '2026-03-22T12:00:00.5Z'::timestamptz + g * interval '1.5 second'
          FROM generate_series(1, n) g;
        t1 := clock_timestamp();
        PERFORM * FROM oversyncd.finalize_bundle(pk, 'push-' || n, i, NULL);
        t2 := clock_timestamp();
        INSERT INTO timings VALUES ('finalize_bundle', n, extract(epoch FROM t1 - t0) * 1000,
                                    extract(epoch FROM t2 - t1) * 1000);
        COMMIT;
    END LOOP;
END
$$;
\pset footer off
SELECT what, n AS rows, count(*) AS bundles,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY capture_ms) * 1000 / n)::numeric, 1) AS capture_us_row,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 3) AS ms,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) * 1000 / n)::numeric, 1) AS us_row
  FROM (SELECT *, row_number() OVER (PARTITION BY what) AS k FROM timings) t
 WHERE k > 5
 GROUP BY what, n ORDER BY what DESC;
