/* CPU time of one upload in the sync core, in this process (issue #9 item 6): for bench/run
 * classify. Links liboversyncd.a and calls sync_upload exactly as a worker does, on a database
 * whose sidecar oversyncd has created.
 *
 *   classify DBURL N ROUNDS [KINDS]
 *
 * The table bench.chain (id uuid PRIMARY KEY, next_id uuid REFERENCES bench.chain, deferrable)
 * is registered with materializer none and the catalog is read as a worker reads it. Two batches
 * of N INSERTs, row i's next_id naming row i + 1, which comes later in the batch:
 *   ok      the last row's next_id is null: every change is applied;
 *   broken  the last row's next_id names a row that exists nowhere: every change is fk_missing,
 *           the failure travelling back along the whole chain.
 * KINDS: "ok", "broken" or "ok,broken" (the default). Each round uploads each with a user of its own. CPU is CLOCK_PROCESS_CPUTIME_ID around
 * sync_upload: parsing, classification and libpq's client side, not PostgreSQL's work. Prints
 * key=value lines (per kind and N: each round's CPU ms, the median, the median wall ms); exits 1
 * when the statuses are not the expected ones. */
#include "log.h"
#include "strbuf.h"
#include "sync/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double ms_of(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *chain_body(int n, bool broken)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        char next[48];
        if (i + 1 < n)
            snprintf(next, sizeof next, "\"00000000-0000-4000-8000-%012d\"", i + 1);
        else
            snprintf(next, sizeof next, "%s", broken ? "\"ffffffff-ffff-4fff-8fff-ffffffffffff\"" : "null");
        sb_printf(&sb,
                  "%s{\"source_change_id\":%d,\"schema\":\"bench\",\"table\":\"chain\",\"op\":\"INSERT\","
                  "\"pk\":\"00000000-0000-4000-8000-%012d\",\"server_version\":0,"
                  "\"payload\":{\"id\":\"00000000-0000-4000-8000-%012d\",\"next_id\":%s}}",
                  i ? "," : "", i + 1, i, i, next);
    }
    sb_puts(&sb, "]}");
    return sb.data;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: classify DBURL N ROUNDS [ok|broken|ok,broken]\n");
        return 2;
    }
    int n = atoi(argv[2]), rounds = atoi(argv[3]);
    if (n < 1 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "classify: bad N or ROUNDS\n");
        return 2;
    }
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "classify: %s", PQerrorMessage(conn));
        return 1;
    }
    char perr[512];
    sync_register_statements();
    if (!db_prepare_statements(conn, perr, sizeof perr)) {
        fprintf(stderr, "classify: %s\n", perr);
        return 1;
    }
    struct table_conf table = { .schema = "bench", .name = "chain", .materializer = MATERIALIZER_NONE, .line = 1 };
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_upload_changes = n;
    cfg.max_payload_bytes = 1024 * 1024;
    cfg.max_body_bytes = 64 * 1024 * 1024;
    cfg.lock_timeout_ms = 5000;
    cfg.statement_timeout_ms = 600000;
    cfg.schema_version = 1;
    cfg.tables = &table;
    cfg.n_tables = 1;
    struct sync_schema schema;
    sync_schema_init(&schema, &cfg);
    char err[1024] = "";
    if (!sync_schema_discover(&schema, conn, err, sizeof err)) {
        fprintf(stderr, "classify: reading the catalog: %s\n", err);
        return 1;
    }

    static const char *const kinds[] = { "ok", "broken" };
    const char *wanted = argc == 5 ? argv[4] : "ok,broken";
    for (int k = 0; k < 2; k++) {
        if (!strstr(wanted, kinds[k]))
            continue;
        bool broken = k == 1;
        char *body = chain_body(n, broken);
        double cpu[100], wall[100];
        for (int r = 0; r < rounds; r++) {
            struct identity who;
            memset(&who, 0, sizeof who);
            snprintf(who.user, sizeof who.user, "bench-classify-%d-%s-%d-%ld", n, kinds[k], r, (long)time(NULL));
            snprintf(who.device, sizeof who.device, "bench-classify");
            arena_t *arena = arena_new(64 * 1024);
            struct sync_request rq = {
                .cfg = &cfg, .schema = &schema, .conn = conn, .who = &who, .arena = arena,
                .request_id = "bench",
            };
            strbuf_t out = STRBUF_INIT;
            struct upload_counts counts;
            memset(&counts, 0, sizeof counts);
            double c0 = ms_of(CLOCK_PROCESS_CPUTIME_ID), w0 = ms_of(CLOCK_MONOTONIC);
            enum sync_outcome o = sync_upload(&rq, body, strlen(body), &out, &counts, err, sizeof err);
            cpu[r] = ms_of(CLOCK_PROCESS_CPUTIME_ID) - c0;
            wall[r] = ms_of(CLOCK_MONOTONIC) - w0;
            unsigned long want = (unsigned long)n;
            if (o != SYNC_OK || (broken ? counts.invalid[INVALID_FK_MISSING] : counts.applied) != want) {
                fprintf(stderr, "classify: %s %d: outcome %d (%s), %lu applied, %lu fk_missing, expected %lu %s\n",
                        kinds[k], n, (int)o, err, counts.applied, counts.invalid[INVALID_FK_MISSING], want,
                        broken ? "fk_missing" : "applied");
                return 1;
            }
            sb_free(&out);
            arena_free(arena);
            printf("chain_%s_%d_cpu_ms_r%d=%.1f\n", kinds[k], n, r + 1, cpu[r]);
            fflush(stdout);
        }
        qsort(cpu, (size_t)rounds, sizeof *cpu, cmp_double);
        qsort(wall, (size_t)rounds, sizeof *wall, cmp_double);
        printf("chain_%s_%d_cpu_ms_median=%.1f\n", kinds[k], n, cpu[rounds / 2]);
        printf("chain_%s_%d_wall_ms_median=%.1f\n", kinds[k], n, wall[rounds / 2]);
        fflush(stdout);
        free(body);
    }
    sync_schema_free(&schema);
    PQfinish(conn);
    return 0;
}
