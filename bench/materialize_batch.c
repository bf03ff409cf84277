/* PostgreSQL CPU of materialization per 1000 changes (issue #11, item 1): for
 * bench/materialize-batch.sh. Links liboversyncd.a and calls sync_upload as a worker does, on one
 * connection, with the generic materializer projecting the go-oversync example tables
 * business.users and business.posts (posts.author_id → users, deferrable).
 *
 *   materialize_batch DBURL on|off|none BATCHES BATCH_SIZE [TAG [RUN]]
 *
 * on/off is [sync] set_materialization; none registers both tables with materializer none, the
 * baseline: what the upload costs without materialization. Each batch is BATCH_SIZE changes of a user of its own: half
 * users, half posts (post i by user i), INSERTs, then the same rows UPDATEd (server_version 1) in
 * a second batch of the same size. Measured around the uploads:
 *   backend_cpu_ms   utime + stime of the connection's backend (/proc/PID/stat, clock ticks)
 *   stmt_ms          pg_stat_statements total_exec_time + total_plan_time of the run (reset before)
 *   client_cpu_ms    this process (parsing, classification, libpq)
 * each printed per 1000 changes, as key=value lines prefixed with TAG (default: the mode).
 * ITEMS=1 in the environment: the table of bench/run upload-generic instead, bench.items_gen (id,
 * name, body, n), one table, payloads of about 1 KB. RUN (a
 * number, default 0) goes into the keys, so that runs on one database never share a row. */
#include "db/bootstrap.h"
#include "db/db.h"
#include "log.h"
#include "materialize/materialize.h"
#include "strbuf.h"
#include "sync/sync.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double ms_of(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* utime + stime of pid in milliseconds, or -1 */
static double proc_cpu_ms(int pid)
{
    long long ticks = proc_ticks(pid);
    return ticks < 0 ? -1 : (double)ticks * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static double query_double(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    double v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atof(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

static int run_id;

static void uuid_of(char *out, int kind, int batch, int i)
{
    snprintf(out, 37, "%08x-%04x-4000-8000-%012x", (unsigned)batch, (unsigned)(run_id * 16 + kind), (unsigned)i);
}

static bool items;   /* ITEMS=1: bench.items_gen */

static char *body_of(int batch, int size, bool update)
{
    if (items) {
        static char filler[1001];
        memset(filler, 'x', 1000);
        strbuf_t sb = STRBUF_INIT;
        sb_puts(&sb, "{\"changes\":[");
        for (int i = 0; i < size; i++) {
            char pk[40];
            uuid_of(pk, 3, batch, i);
            sb_printf(&sb, "%s{\"source_change_id\":%d,\"schema\":\"bench\",\"table\":\"items_gen\",\"op\":\"%s\","
                           "\"pk\":\"%s\",\"server_version\":%d,\"payload\":{\"id\":\"%s\",\"name\":\"item %d%s\","
                           "\"body\":\"%s\",\"n\":%d}}",
                      i ? "," : "", i + 1 + (update ? size : 0), update ? "UPDATE" : "INSERT", pk, update ? 1 : 0, pk,
                      i, update ? " (edited)" : "", filler, i);
        }
        sb_puts(&sb, "]}");
        return sb.data;
    }
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    int half = size / 2;
    for (int i = 0; i < size; i++) {
        char pk[40], author[40];
        bool post = i >= half;
        int k = post ? i - half : i;
        uuid_of(pk, post ? 2 : 1, batch, k);
        uuid_of(author, 1, batch, k);
        sb_printf(&sb, "%s{\"source_change_id\":%d,\"schema\":\"business\",\"table\":\"%s\",\"op\":\"%s\","
                       "\"pk\":\"%s\",\"server_version\":%d,\"payload\":",
                  i ? "," : "", i + 1 + (update ? size : 0), post ? "posts" : "users", update ? "UPDATE" : "INSERT",
                  pk, update ? 1 : 0);
        if (post)
            sb_printf(&sb, "{\"id\":\"%s\",\"title\":\"post %d of batch %d%s\",\"content\":\"%s\","
                           "\"author_id\":\"%s\",\"updated_at\":\"2026-01-01T00:00:00Z\"}}",
                      pk, k, batch, update ? " (edited)" : "",
                      "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
                      "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation.",
                      author);
        else
            sb_printf(&sb, "{\"id\":\"%s\",\"name\":\"user %d%s\",\"email\":\"u%d.b%d@example.com\","
                           "\"updated_at\":\"2026-01-01T00:00:00Z\"}}",
                      pk, k, update ? " (edited)" : "", k, batch);
    }
    sb_puts(&sb, "]}");
    return sb.data;
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: materialize_batch DBURL on|off|none BATCHES BATCH_SIZE [TAG [RUN]]\n");
        return 2;
    }
    bool set = strcmp(argv[2], "on") == 0, none = strcmp(argv[2], "none") == 0;
    int batches = atoi(argv[3]), size = atoi(argv[4]);
    const char *tag = argc >= 6 ? argv[5] : argv[2];
    run_id = argc == 7 ? atoi(argv[6]) : 0;
    if (batches < 1 || size < 2) {
        fprintf(stderr, "materialize_batch: bad BATCHES or BATCH_SIZE\n");
        return 2;
    }
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    PGconn *conn = PQconnectdb(argv[1]);
    PGconn *admin = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK || PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "materialize_batch: %s", PQerrorMessage(conn));
        return 1;
    }
    char err[1024] = "";
    int applied = 0;
    if (!bootstrap_sidecar(conn, &applied, err, sizeof err)) {
        fprintf(stderr, "materialize_batch: %s\n", err);
        return 1;
    }
    sync_register_statements();
    if (!db_prepare_statements(conn, err, sizeof err)) {
        fprintf(stderr, "materialize_batch: %s\n", err);
        return 1;
    }
    items = getenv("ITEMS") && strcmp(getenv("ITEMS"), "1") == 0;
    struct table_conf tables[2] = {
        { .schema = "business", .name = "posts", .materializer = MATERIALIZER_GENERIC, .line = 1 },
        { .schema = "business", .name = "users", .materializer = MATERIALIZER_GENERIC, .line = 2 },
    };
    if (items)
        tables[0] = (struct table_conf){ .schema = "bench", .name = "items_gen", .materializer = MATERIALIZER_GENERIC,
                                         .line = 1 };
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_upload_changes = size;
    cfg.max_payload_bytes = 1024 * 1024;
    cfg.max_body_bytes = 64 * 1024 * 1024;
    cfg.lock_timeout_ms = 5000;
    cfg.statement_timeout_ms = 600000;
    cfg.schema_version = 1;
    cfg.set_materialization = set;
    cfg.tables = tables;
    cfg.n_tables = items ? 1 : 2;
    if (none)
        tables[0].materializer = tables[1].materializer = MATERIALIZER_NONE;
    struct sync_schema schema;
    sync_schema_init(&schema, &cfg);
    for (int i = 0; i < schema.n_tables && !none; i++) {
        schema.tables[i].mat = materializer_new(schema.tables[i].conf, err, sizeof err);
        if (!schema.tables[i].mat) {
            fprintf(stderr, "materialize_batch: %s\n", err);
            return 1;
        }
    }
    if (!sync_schema_discover(&schema, conn, err, sizeof err) || !sync_ownership_setup(&schema, conn, err, sizeof err)) {
        fprintf(stderr, "materialize_batch: reading the catalog: %s\n", err);
        return 1;
    }
    for (int i = 0; i < schema.n_tables && !none; i++)
        if (!materializer_connect(schema.tables[i].mat, conn, err, sizeof err)) {
            fprintf(stderr, "materialize_batch: %s\n", err);
            return 1;
        }

    int backend = PQbackendPID(conn);
    double stmt0 = -1;
    PQclear(PQexec(admin, "SELECT pg_stat_statements_reset()"));
    double b0 = proc_cpu_ms(backend), c0 = ms_of(CLOCK_PROCESS_CPUTIME_ID), w0 = ms_of(CLOCK_MONOTONIC);
    stmt0 = 0;
    long changes = 0;
    unsigned long fallbacks = 0;
    long started = (long)time(NULL);
    for (int b = 0; b < batches; b++) {
        /* a user per batch: the inserts and then the updates of its rows */
        struct identity who;
        memset(&who, 0, sizeof who);
        snprintf(who.user, sizeof who.user, "bench-mat-%s-%d-%d-%ld", tag, run_id, b, started);
        snprintf(who.device, sizeof who.device, "bench");
        for (int phase = 0; phase < 2; phase++) {
            char *body = body_of(b + 1, size, phase == 1);
            arena_t *arena = arena_new(64 * 1024);
            struct sync_request rq = {
                .cfg = &cfg, .schema = &schema, .conn = conn, .who = &who, .arena = arena, .request_id = "bench",
            };
            strbuf_t out = STRBUF_INIT;
            struct upload_counts counts;
            memset(&counts, 0, sizeof counts);
            enum sync_outcome o = sync_upload(&rq, body, strlen(body), &out, &counts, err, sizeof err);
            if (o != SYNC_OK || counts.applied != (unsigned long)size) {
                fprintf(stderr, "materialize_batch: batch %d phase %d: outcome %d (%s), %lu applied of %d: %.300s\n",
                        b, phase, (int)o, err, counts.applied, size, out.data ? out.data : "");
                return 1;
            }
            fallbacks += counts.materialize_fallbacks;
            changes += size;
            sb_free(&out);
            arena_free(arena);
            free(body);
        }
    }
    double b1 = proc_cpu_ms(backend), c1 = ms_of(CLOCK_PROCESS_CPUTIME_ID), w1 = ms_of(CLOCK_MONOTONIC);
    double stmt = query_double(admin, "SELECT sum(total_exec_time + total_plan_time) FROM pg_stat_statements"
                                      " WHERE query NOT LIKE '%pg_stat_statements%'") - stmt0;
    double k = 1000.0 / (double)changes;
    printf("%s_changes=%ld\n", tag, changes);
    printf("%s_fallbacks=%lu\n", tag, fallbacks);
    printf("%s_backend_cpu_ms_per_1000=%.1f\n", tag, (b1 - b0) * k);
    printf("%s_stmt_ms_per_1000=%.1f\n", tag, stmt * k);
    printf("%s_client_cpu_ms_per_1000=%.1f\n", tag, (c1 - c0) * k);
    printf("%s_wall_ms_per_1000=%.1f\n", tag, (w1 - w0) * k);
    if (getenv("TOP_STATEMENTS")) {
        PGresult *r = PQexec(admin, "SELECT round((total_exec_time + total_plan_time)::numeric, 1), calls,"
                                    " left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements"
                                    " WHERE query NOT LIKE '%pg_stat_statements%'"
                                    " ORDER BY total_exec_time + total_plan_time DESC LIMIT 12");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%s_top: %10s ms %7s calls  %s\n", tag, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 2));
        PQclear(r);
    }
    fflush(stdout);
    sync_schema_free(&schema);
    PQfinish(conn);
    PQfinish(admin);
    return 0;
}
