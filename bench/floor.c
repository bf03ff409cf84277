/* The PostgreSQL floor of the upload-new scenario (bench/run floor): the same rows written
 * straight into the sidecar tables, without HTTP and without oversyncd.
 *
 *   floor CONNINFO THREADS WARMUP BATCHES BATCHSIZE [plain|update|oversyncd-sql]
 *
 * Each thread has its own connection, user and device.
 *
 * plain (the floor): one batch is one transaction with one set-based INSERT per sidecar table
 * (server_change_log, sync_row_meta, sync_state), sent in a single round trip (libpq pipeline
 * mode): BEGIN; 3 x INSERT ... SELECT FROM unnest(...); COMMIT. The payloads travel as one JSON
 * array parameter, as oversyncd sends them; the statements for the change log and for
 * sync_state each take it (PostgreSQL parses it twice, oversyncd once).
 *
 * update (the floor of upload-update): the rows a plain run wrote (same users, same keys) written
 * again at version 2, as set-based SQL in one round trip: BEGIN; INSERT INTO the change log ...
 * SELECT FROM unnest(...); UPDATE sync_row_meta ... FROM unnest(...); UPDATE sync_state ... FROM
 * unnest(...); COMMIT. Run it after a plain run.
 *
 * oversyncd-sql (a diagnostic, not a floor): the two pipelines oversyncd sends for an upload of
 * new rows, statement for statement (copied from src/sync/upload.c: BEGIN, lock_timeout, the
 * per-user advisory lock, the seen-scids, row-version and highest-id reads; then sync_write_fresh
 * and COMMIT; no SET CONSTRAINTS but SET LOCAL plan_cache_mode = auto, bench.items being
 * unmaterialized and without foreign keys), without HTTP and without oversyncd's C code in
 * between. (oversyncd's sessions run with plan_cache_mode = force_custom_plan otherwise.)
 *
 * Rows per second are printed as key=value lines, with backend_cpu_seconds: the CPU time of this
 * program's PostgreSQL backends from their connection to the end of the last batch (utime + stime
 * of /proc/PID/stat, read by this program on the same machine; those backends end with it, so
 * whoever measures the machine from outside cannot see their times afterwards). */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static const char *conninfo;
static int oversyncd_sql, update_mode;
static int warmup, batches, batch_size;
static pthread_barrier_t start;

static const char *words[] = {
    "offline", "first", "replica", "device", "change", "server", "version", "payload", "conflict",
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua",
};

static const char *const sql_log =
    "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"
    "                                    source_id, source_change_id, server_version)"
    " SELECT $1, 'bench', 'items', 'INSERT', x.pk, $5::jsonb -> (x.n::int - 1), $2, x.scid, 1"
    "   FROM unnest($3::uuid[], $4::bigint[]) WITH ORDINALITY AS x(pk, scid, n) ORDER BY x.n";
static const char *const sql_meta =
    "INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted,"
    "                                updated_at)"
    " SELECT $1, 'bench', 'items', pk, 1, false, now() FROM unnest($2::uuid[]) AS pk";
static const char *const sql_state =
    "INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)"
    " SELECT $1, 'bench', 'items', x.pk, $3::jsonb -> (x.n::int - 1)"
    "   FROM unnest($2::uuid[]) WITH ORDINALITY AS x(pk, n)";

/* update mode: the same rows again, version 2 */
static const char *const sql_ulog =
    "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"
    "                                    source_id, source_change_id, server_version)"
    " SELECT $1, 'bench', 'items', 'UPDATE', x.pk, $5::jsonb -> (x.n::int - 1), $2, x.scid, 2"
    "   FROM unnest($3::uuid[], $4::bigint[]) WITH ORDINALITY AS x(pk, scid, n) ORDER BY x.n";
static const char *const sql_umeta =
    "UPDATE sync.sync_row_meta m SET server_version = 2, deleted = false, updated_at = now()"
    "  FROM unnest($2::uuid[]) AS k(pk)"
    " WHERE m.user_id = $1 AND m.schema_name = 'bench' AND m.table_name = 'items' AND m.pk_uuid = k.pk";
static const char *const sql_ustate =
    "UPDATE sync.sync_state s SET payload = $3::jsonb -> (x.n::int - 1)"
    "  FROM unnest($2::uuid[]) WITH ORDINALITY AS x(pk, n)"
    " WHERE s.user_id = $1 AND s.schema_name = 'bench' AND s.table_name = 'items' AND s.pk_uuid = x.pk";

/* src/sync/upload.c, upload_statements[] (as of the commit bench/run reports) */
static const char *const sql_lock = "SELECT pg_advisory_xact_lock(1870030713, hashtext($1))";
static const char *const sql_seen =
    "SELECT x.scid FROM unnest($3::bigint[]) AS x(scid) "
    "CROSS JOIN LATERAL (SELECT 1 FROM sync.server_change_log l WHERE l.user_id = $1 AND l.source_id = $2 "
    "AND l.source_change_id = x.scid LIMIT 1) AS l";
static const char *const sql_versions =
    "SELECT k.i, m.server_version, m.deleted "
    "FROM unnest($2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY AS k(s, t, p, i) "
    "CROSS JOIN LATERAL (SELECT m.server_version, m.deleted FROM sync.sync_row_meta m "
    "WHERE m.user_id = $1 AND m.schema_name = k.s AND m.table_name = k.t AND m.pk_uuid = k.p LIMIT 1) AS m";
static const char *const sql_highest =
    "SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = $1";
/* sync_write_fresh: every key of an upload of new rows to an unmaterialized table is absent */
static const char *const sql_write =
    "WITH input AS ("
    "  SELECT x.n, x.s, x.t, x.op, x.pk, x.scid, x.v, x.fin, x.del,"
    "         CASE WHEN x.op = 'DELETE' THEN NULL ELSE $11::jsonb -> (x.n::int - 1) END AS payload"
    "  FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::bigint[], $8::bigint[],"
    "              $9::bool[], $10::bool[])"
    "       WITH ORDINALITY AS x(s, t, op, pk, scid, v, fin, del, n)),"
    " log AS ("
    "  INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"
    "                                      source_id, source_change_id, server_version)"
    "  SELECT $1, s, t, op, pk, to_json(payload), $2, scid, v FROM input ORDER BY n"
    "  RETURNING server_id),"
    " meta AS ("
    "  INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version,"
    "                                  deleted, updated_at)"
    "  SELECT $1, s, t, pk, v, del, now() FROM input WHERE fin),"
    " state AS ("
    "  INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)"
    "  SELECT $1, s, t, pk, payload FROM input WHERE fin AND NOT del)"
    "SELECT coalesce(max(server_id), 0) FROM log";

/* Runs the queued statements of one pipeline and checks that each succeeded. */
static void pipeline_finish(PGconn *c, int n, const char *what);

struct th {
    int idx;
    pthread_t tid;
    double *lat;
    double t_end;
    long rows;
    long long cpu_ticks;    /* of its backend, -1 when /proc could not tell */
};

static void die(PGconn *c, const char *what, PGresult *r)
{
    fprintf(stderr, "floor: FAILED: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    exit(1);
}

static void pipeline_finish(PGconn *c, int n, const char *what)
{
    PGresult *r;
    if (!PQpipelineSync(c))
        die(c, what, NULL);
    for (int q = 0; q < n; q++) {
        r = PQgetResult(c);
        if (!r || (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK))
            die(c, what, r);
        PQclear(r);
        while ((r = PQgetResult(c)))
            PQclear(r);
    }
    r = PQgetResult(c);
    if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC)
        die(c, what, r);
    PQclear(r);
}

static void *worker(void *arg)
{
    struct th *t = arg;
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        die(c, "connect", NULL);
    PGresult *r;
    long backend = -1;
    long long ticks0 = -1;
    r = PQexec(c, "SELECT pg_backend_pid()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        backend = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (backend > 0)
        ticks0 = proc_ticks(backend);
    const char *names[8] = { "log", "meta", "state", "lock", "seen", "versions", "highest", "write" };
    const char *sqls[8] = { sql_log, sql_meta, sql_state, sql_lock, sql_seen, sql_versions, sql_highest, sql_write };
    if (update_mode) {
        sqls[0] = sql_ulog;
        sqls[1] = sql_umeta;
        sqls[2] = sql_ustate;
    }
    for (int i = 0; i < 8; i++) {
        r = PQprepare(c, names[i], sqls[i], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die(c, "prepare", r);
        PQclear(r);
    }
    char user[32], device[32];
    snprintf(user, sizeof user, "%s-u%02d", oversyncd_sql ? "sql" : "floor", t->idx);
    snprintf(device, sizeof device, "%s-d%02d", oversyncd_sql ? "sql" : "floor", t->idx);
    struct buf pks = { 0 }, scids = { 0 }, pay = { 0 };
    /* the other arrays of oversyncd's statements: schema, table, op, version, final, deleted */
    struct buf sa = { 0 }, ta = { 0 }, oa = { 0 }, va = { 0 }, fa = { 0 }, da = { 0 };
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)t->idx << 32);
    for (int batch = 0; batch < warmup + batches; batch++) {
        if (batch == warmup)
            pthread_barrier_wait(&start);
        pks.len = scids.len = pay.len = 0;
        buf_add(&pks, "{", 1);
        buf_add(&scids, "{", 1);
        buf_add(&pay, "[", 1);
        for (int i = 0; i < batch_size; i++) {
            char pk[48];
            snprintf(pk, sizeof pk, "%08x-%04x-4%03x-8%03x-%012x", 0xf1000000u | ((unsigned)t->idx & 0xffff), (unsigned)batch & 0xffff,
                     (unsigned)i & 0xfff, (unsigned)(i >> 12) & 0xfff, 0u);
            if (i) {
                buf_add(&pks, ",", 1);
                buf_add(&scids, ",", 1);
                buf_add(&pay, ",", 1);
            }
            buf_add(&pks, pk, 36);
            /* update mode: source change ids after those of the plain run */
            buf_printf(&scids, "%lld", (update_mode ? 1000000000LL : 0) + (long long)batch * batch_size + i + 1);
            buf_printf(&pay, "{\"id\":\"%s\",\"name\":\"item %d-%d-%d\",\"body\":\"", pk, t->idx, batch, i);
            size_t s0 = pay.len;
            while (pay.len - s0 < 1000) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                const char *w = words[rng % (sizeof words / sizeof words[0])];
                buf_add(&pay, w, strlen(w));
                buf_add(&pay, " ", 1);
            }
            buf_add(&pay, "\",\"n\":123}", 10);
        }
        buf_add(&pks, "}", 1);
        buf_add(&scids, "}", 1);
        buf_add(&pay, "]", 1);

        double t0 = now_s();
        if (oversyncd_sql) {
            sa.len = ta.len = oa.len = va.len = fa.len = da.len = 0;
            buf_add(&sa, "{", 1);
            buf_add(&ta, "{", 1);
            buf_add(&oa, "{", 1);
            buf_add(&va, "{", 1);
            buf_add(&fa, "{", 1);
            buf_add(&da, "{", 1);
            for (int i = 0; i < batch_size; i++) {
                const char *sep = i ? "," : "";
                buf_printf(&sa, "%s\"bench\"", sep);
                buf_printf(&ta, "%s\"items\"", sep);
                buf_printf(&oa, "%s\"INSERT\"", sep);
                buf_printf(&va, "%s1", sep);
                buf_printf(&fa, "%st", sep);
                buf_printf(&da, "%sf", sep);
            }
            buf_add(&sa, "}", 1);
            buf_add(&ta, "}", 1);
            buf_add(&oa, "}", 1);
            buf_add(&va, "}", 1);
            buf_add(&fa, "}", 1);
            buf_add(&da, "}", 1);
            /* pk array with quoted elements, as oversyncd builds it */
            struct buf qpk = { 0 };
            buf_add(&qpk, "{", 1);
            for (int i = 0; i < batch_size; i++)
                buf_printf(&qpk, "%s\"%.36s\"", i ? "," : "", pks.p + 1 + (size_t)i * 37);
            buf_add(&qpk, "}", 1);
            const char *v_lt[1] = { "5000ms" };
            const char *v_user[1] = { user };
            const char *v_seen[3] = { user, device, scids.p };
            const char *v_rows[4] = { user, sa.p, ta.p, qpk.p };
            if (!PQenterPipelineMode(c) || !PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
                !PQsendQueryParams(c, "SELECT set_config('lock_timeout', $1, true)", 1, NULL, v_lt, NULL, NULL, 0) ||
                !PQsendQueryParams(c, "SET LOCAL plan_cache_mode = auto", 0, NULL, NULL, NULL, NULL, 0) ||
                !PQsendQueryPrepared(c, "lock", 1, v_user, NULL, NULL, 0) ||
                !PQsendQueryPrepared(c, "seen", 3, v_seen, NULL, NULL, 0) ||
                !PQsendQueryPrepared(c, "versions", 4, v_rows, NULL, NULL, 0) ||
                /* sent unnamed, as oversyncd does (src/sync/statements.c) */
                !PQsendQueryParams(c, sql_highest, 1, NULL, v_user, NULL, NULL, 0))
                die(c, "send 1", NULL);
            pipeline_finish(c, 7, "round trip 1");
            PQexitPipelineMode(c);
            const char *v_write[11] = { user, device, sa.p, ta.p, oa.p, qpk.p, scids.p, va.p, fa.p, da.p, pay.p };
            if (!PQenterPipelineMode(c) || !PQsendQueryPrepared(c, "write", 11, v_write, NULL, NULL, 0) ||
                !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
                die(c, "send 2", NULL);
            pipeline_finish(c, 2, "round trip 2");
            PQexitPipelineMode(c);
            free(qpk.p);
            double dt = now_s() - t0;
            if (batch >= warmup) {
                t->lat[batch - warmup] = dt;
                t->rows += batch_size;
            }
            continue;
        }
        const char *v_log[5] = { user, device, pks.p, scids.p, pay.p };
        const char *v_meta[2] = { user, pks.p };
        const char *v_state[3] = { user, pks.p, pay.p };
        if (!PQenterPipelineMode(c))
            die(c, "pipeline", NULL);
        if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
            !PQsendQueryPrepared(c, "log", 5, v_log, NULL, NULL, 0) ||
            !PQsendQueryPrepared(c, "meta", 2, v_meta, NULL, NULL, 0) ||
            !PQsendQueryPrepared(c, "state", 3, v_state, NULL, NULL, 0) ||
            !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c))
            die(c, "send", NULL);
        for (int q = 0; q < 5; q++) {
            r = PQgetResult(c);
            if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
                die(c, "batch", r);
            if (q >= 1 && q <= 3 && atoi(PQcmdTuples(r)) != batch_size)
                die(c, "row count", r);
            PQclear(r);
            while ((r = PQgetResult(c)))
                PQclear(r);
        }
        r = PQgetResult(c);
        if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC)
            die(c, "sync", r);
        PQclear(r);
        PQexitPipelineMode(c);
        double dt = now_s() - t0;
        if (batch >= warmup) {
            t->lat[batch - warmup] = dt;
            t->rows += batch_size;
        }
    }
    t->t_end = now_s();
    long long ticks1 = ticks0 >= 0 ? proc_ticks(backend) : -1;
    t->cpu_ticks = ticks1 >= 0 ? ticks1 - ticks0 : -1;
    PQfinish(c);
    free(pks.p);
    free(scids.p);
    free(pay.p);
    free(sa.p);
    free(ta.p);
    free(oa.p);
    free(va.p);
    free(fa.p);
    free(da.p);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: floor CONNINFO THREADS WARMUP BATCHES BATCHSIZE [plain|update|oversyncd-sql]\n");
        return 2;
    }
    oversyncd_sql = argc == 7 && strcmp(argv[6], "oversyncd-sql") == 0;
    update_mode = argc == 7 && strcmp(argv[6], "update") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    conninfo = argv[1];
    int threads = atoi(argv[2]);
    warmup = atoi(argv[3]);
    batches = atoi(argv[4]);
    batch_size = atoi(argv[5]);
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    struct th *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++) {
        t[i].idx = i;
        t[i].lat = calloc((size_t)batches, sizeof(double));
        pthread_create(&t[i].tid, NULL, worker, &t[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = now_s(), t_end = t0;
    long rows = 0;
    long long cpu_ticks = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].tid, NULL);
        if (t[i].t_end > t_end)
            t_end = t[i].t_end;
        rows += t[i].rows;
        if (cpu_ticks >= 0)
            cpu_ticks = t[i].cpu_ticks >= 0 ? cpu_ticks + t[i].cpu_ticks : -1;
    }
    size_t n = (size_t)threads * (size_t)batches;
    double *all = malloc(n * sizeof *all);
    for (int i = 0; i < threads; i++)
        memcpy(all + (size_t)i * batches, t[i].lat, (size_t)batches * sizeof(double));
    qsort(all, n, sizeof *all, cmp_double);
    double secs = t_end - t0;
    printf("mode=%s\n", oversyncd_sql ? "oversyncd-sql" : update_mode ? "update" : "plain");
    printf("threads=%d\nbatches_per_thread=%d\nbatch_size=%d\nwarmup_batches=%d\n", threads, batches, batch_size,
           warmup);
    printf("rows=%ld\nseconds=%.3f\nrows_per_s=%.0f\n", rows, secs, (double)rows / secs);
    if (cpu_ticks >= 0)
        printf("backend_cpu_seconds=%.2f\n", (double)cpu_ticks / (double)sysconf(_SC_CLK_TCK));
    printf("batch_ms_p50=%.1f\nbatch_ms_p90=%.1f\nbatch_ms_p99=%.1f\nbatch_ms_max=%.1f\n",
           all[(n - 1) / 2] * 1e3, all[(size_t)(0.9 * (double)(n - 1))] * 1e3,
           all[(size_t)(0.99 * (double)(n - 1))] * 1e3, all[n - 1] * 1e3);
    return 0;
}
