#include "app.h"
#include "json_scan.h"
#include "log.h"
#include "materialize/materialize.h"
#include "metrics.h"
#include "watch_client.h"
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The body of go-oversync's /health, which monitors look for. */
static void handle_health(struct app *app, struct request *req)
{
    http_json_text(req, 200, "{\"status\":\"healthy\",\"service\":\"oversyncd\"}");
}

static void handle_ready(struct app *app, struct request *req)
{
    PGresult *r = db_result_in(req->arena, PQexec(db_conn(app->db), "SELECT 1"));
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok) {
        http_json_text(req, 200, "{\"status\":\"ready\"}");
        return;
    }
    db_check_lost(app->db);
    http_error(req, 503, "database_unavailable", "the database is unreachable");
}

static const char *slot_label(int slot);

static void handle_metrics(struct app *app, struct request *req)
{
    strbuf_t sb = STRBUF_ARENA(req->arena);
    metrics_render(&sb, slot_label);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, sb.data, sb.len);
}

static void handle_schema_version(struct app *app, struct request *req)
{
    strbuf_t body = STRBUF_ARENA(req->arena);
    sb_puts(&body, "{\"schema_version\":");
    sb_put_i64(&body, app->cfg->schema_version);
    sb_putc(&body, '}');
    http_json(req, 200, &body);
}

static void sync_request_init(struct sync_request *rq, struct app *app, struct request *req)
{
    rq->cfg = app->cfg;
    rq->schema = &app->schema;
    rq->conn = db_conn(app->db);
    rq->who = &req->identity;
    rq->arena = req->arena;
    rq->request_id = req->request_id;
    rq->sink = NULL;
}

static void sync_failure(struct app *app, struct request *req, enum sync_outcome o, const char *err)
{
    switch (o) {
    case SYNC_BAD_REQUEST:
        http_error(req, 400, "invalid_request", "%s", err);
        break;
    case SYNC_UNAVAILABLE:
        db_check_lost(app->db);
        http_error(req, 503, "database_unavailable", "the database is unavailable or busy; retry later");
        break;
    default:
        http_error(req, 500, "internal_error", "internal error (request id %s)", req->request_id);
        break;
    }
}

static double since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The upload's sink: an answer too large to hold (statuses of an oversized batch) goes to the web
 * server as it is written. After a failed write the rest is dropped. */
struct upload_sink {
    struct request *req;
    bool broken;
};

static void upload_sink_begin(void *ud, size_t len)
{
    struct upload_sink *s = ud;
    s->broken = !http_respond_begin(s->req, 200, "application/json", len);
}

static void upload_sink_write(void *ud, const char *data, size_t len)
{
    struct upload_sink *s = ud;
    if (!s->broken)
        s->broken = !http_respond_more(s->req, data, len);
}

static void handle_upload(struct app *app, struct request *req)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct sync_request rq;
    sync_request_init(&rq, app, req);
    struct upload_sink sink_state = { req, false };
    const struct sync_sink sink = { upload_sink_begin, upload_sink_write, &sink_state };
    rq.sink = &sink;
    strbuf_t out = STRBUF_ARENA(req->arena);
    struct upload_counts counts;
    char err[512];
    enum sync_outcome o = sync_upload(&rq, req->body, req->body_len, &out, &counts, err, sizeof err);
    if (o == SYNC_OK) {
        if (!req->responded)
            http_json(req, 200, &out);
        metrics_upload(since(&t0), counts.applied, counts.conflicts, counts.materialize_errors, counts.invalid);
        metrics_materialize_fallbacks(counts.materialize_fallbacks);
        metrics_upload_trips(counts.one_trip, counts.rewrites);
        if (counts.applied)
            app_watch_upload_committed(app, &req->identity);
    } else {
        sync_failure(app, req, o, err);
    }
}

static void handle_download(struct app *app, struct request *req)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    static const char *const names[] = { "after", "limit", "schema", "include_self", "until", "wait" };
    const char *q[sizeof names / sizeof names[0]];
    if (!http_query_params(req, sizeof names / sizeof names[0], names, q))
        return;
    struct download_params p;
    char err[512];
    long wait_ms;
    if (!download_params_parse(q[0], q[1], q[2], q[3], q[4], &p, err, sizeof err) ||
        !app_watch_parse_wait(app->cfg, q[5], &wait_ms, err, sizeof err)) {
        http_error(req, 400, "invalid_request", "%s", err);
        return;
    }
    /* wait=S: the user counts as waiting before the page is read, so that an upload committing
     * after that read announces itself (app_watch_upload_committed) */
    bool wait = wait_ms > 0 && watch_available();
    int64_t wait_t0 = watch_now_ns();
    if (wait)
        watch_waiting_add(req->identity.user, +1);
    struct sync_request rq;
    sync_request_init(&rq, app, req);
    strbuf_t out = STRBUF_ARENA(req->arena);
    unsigned long rows = 0;
    enum sync_outcome o = sync_download(&rq, &p, &out, &rows, err, sizeof err);
    if (o == SYNC_OK && wait && rows == 0 && app_watch_download_wait(app, req, &p, wait_ms, wait_t0))
        return;   /* the watch process answers, and ends the wait (watch_waiting_add -1) */
    if (wait)
        watch_waiting_add(req->identity.user, -1);
    if (o == SYNC_OK) {
        http_json(req, 200, &out);
        metrics_download(since(&t0), rows);
    } else {
        sync_failure(app, req, o, err);
    }
}

static void handle_list_failures(struct app *app, struct request *req)
{
    static const char *const names[] = { "schema", "table", "limit" };
    const char *q[sizeof names / sizeof names[0]];
    if (!http_query_params(req, sizeof names / sizeof names[0], names, q))
        return;
    const char *schema, *table;
    int limit;
    char err[512];
    if (!failures_params_parse(q[0], q[1], q[2], &schema, &table, &limit, err, sizeof err)) {
        http_error(req, 400, "invalid_request", "%s", err);
        return;
    }
    struct sync_request rq;
    sync_request_init(&rq, app, req);
    strbuf_t out = STRBUF_ARENA(req->arena);
    enum sync_outcome o = sync_list_failures(&rq, schema, table, limit, &out, err, sizeof err);
    if (o == SYNC_OK)
        http_json(req, 200, &out);
    else
        sync_failure(app, req, o, err);
}

/* The failure id: ?id=N or a body {"id": N}; a positive integer either way. q: the query's id. */
static bool retry_id(struct request *req, const char *q, long long *id, char *err, size_t errlen)
{
    if (q) {
        size_t n = strlen(q);
        if (n == 0 || n > 18 || strspn(q, "0123456789") != n || (*id = atoll(q)) < 1) {
            snprintf(err, errlen, "id must be a positive integer");
            return false;
        }
        return true;
    }
    struct json_span root, k, v;
    if (req->body_len && json_validate(req->body, req->body_len, &root, err, errlen) && root.type == JSON_OBJECT) {
        struct json_iter it;
        json_iter_init(&it, &root);
        while (json_iter_member(&it, &k, &v))
            if (json_string_eq(&k, "id")) {
                if (!json_int64(&v, id) || *id < 1) {
                    snprintf(err, errlen, "id must be a positive integer");
                    return false;
                }
                return true;
            }
    } else if (req->body_len) {
        snprintf(err, errlen, "the body must be a JSON object like {\"id\": 42}");
        return false;
    }
    snprintf(err, errlen, "id is required (?id=N or {\"id\": N})");
    return false;
}

static void handle_retry_failure(struct app *app, struct request *req)
{
    static const char *const names[] = { "id" };
    const char *q;
    if (!http_query_params(req, 1, names, &q))
        return;
    long long id;
    char err[512];
    if (!retry_id(req, q, &id, err, sizeof err)) {
        http_error(req, 400, "invalid_request", "%s", err);
        return;
    }
    struct sync_request rq;
    sync_request_init(&rq, app, req);
    strbuf_t out = STRBUF_ARENA(req->arena);
    enum sync_outcome o = sync_retry_failure(&rq, id, &out, err, sizeof err);
    if (o == SYNC_OK)
        http_json(req, 200, &out);
    else if (o == SYNC_NOT_FOUND)
        http_error(req, 404, "not_found", "%s", err);
    else
        sync_failure(app, req, o, err);
}

/* The routes: method, path (matched under any mount prefix), whether the identity and the
 * database are needed before the handler runs, and the handler. Adding a route is adding a row. */
const struct route app_routes[] = {
    /* protocol = upload (SPEC.md) */
    { "POST", "/sync/upload", ROUTE_UPLOAD, true, true, handle_upload },
    { "GET", "/sync/download", ROUTE_UPLOAD, true, true, handle_download },
    { "GET", "/sync/schema-version", ROUTE_UPLOAD, true, true, handle_schema_version },
    { "GET", "/admin/materialize-failures", ROUTE_UPLOAD, true, true, handle_list_failures },
    { "POST", "/admin/materialize-failures/retry", ROUTE_UPLOAD, true, true, handle_retry_failure },
    /* protocol = bundle (SPEC-v2.md, docs/bundle-protocol.md) */
    { "GET", "/sync/capabilities", ROUTE_BUNDLE, true, true, app_bundle_capabilities },
    { "POST", "/sync/connect", ROUTE_BUNDLE, true, true, app_bundle_connect },
    { "GET", "/sync/pull", ROUTE_BUNDLE, true, true, app_bundle_pull },
    { "GET", "/sync/watch", ROUTE_BUNDLE, true, true, app_bundle_watch },
    { "POST", "/sync/snapshot-sessions", ROUTE_BUNDLE, true, true, app_bundle_snapshot_create },
    { "GET", "/sync/snapshot-sessions/{snapshot_id}", ROUTE_BUNDLE, true, true, app_bundle_snapshot_chunk },
    { "DELETE", "/sync/snapshot-sessions/{snapshot_id}", ROUTE_BUNDLE, true, true, app_bundle_snapshot_delete },
    { "GET", "/syncx/health", ROUTE_BUNDLE, false, true, app_bundle_health },
    { "GET", "/syncx/status", ROUTE_BUNDLE, false, true, app_bundle_status },
    { "POST", "/sync/push-sessions", ROUTE_BUNDLE, true, true, app_bundle_push_create },
    { "POST", "/sync/push-sessions/{push_id}/chunks", ROUTE_BUNDLE, true, true, app_bundle_push_chunk },
    { "POST", "/sync/push-sessions/{push_id}/commit", ROUTE_BUNDLE, true, true, app_bundle_push_commit },
    { "DELETE", "/sync/push-sessions/{push_id}", ROUTE_BUNDLE, true, true, app_bundle_push_delete },
    { "GET", "/sync/committed-bundles/{bundle_seq}/rows", ROUTE_BUNDLE, true, true, app_bundle_committed_rows },
    /* [bundle] test_routes = on (docs/compatibility.md) */
    { "POST", "/test/e2e/setup", ROUTE_TEST, false, true, app_test_setup },
    { "POST", "/test/e2e/failures", ROUTE_TEST, false, true, app_test_failures },
    { "GET", "/test/watch-subscribers", ROUTE_TEST, false, true, app_test_watch_subscribers },
    /* both */
    { "GET", "/health", ROUTE_ANY, false, false, handle_health },
    { "GET", "/ready", ROUTE_ANY, false, true, handle_ready },
    { "GET", "/metrics", ROUTE_ANY, false, false, handle_metrics },
};
const size_t n_app_routes = sizeof app_routes / sizeof app_routes[0];
_Static_assert(sizeof app_routes / sizeof app_routes[0] < METRICS_MAX_ROUTES, "metrics has a slot per route");

/* Metrics slot of a route: 0 for a request no route took, 1 + its index otherwise. */
static int route_slot(const struct route *r)
{
    return r ? (int)(r - app_routes) + 1 : 0;
}

static const char *slot_label(int slot)
{
    return slot > 0 && (size_t)slot <= n_app_routes ? app_routes[slot - 1].path : "other";
}

/* Each new connection re-reads the foreign keys, so a reconnect after a schema change (or a
 * database that was down at start-up) still gets the right order and pre-check. */
/* protocol = bundle: the sidecar of the bundle protocol created or adopted, the registered tables
 * validated and their triggers installed (bundle_bootstrap), and the catalog kept for requests. */
bool app_bundle_setup(struct app *app, PGconn *conn, char *err, size_t errlen)
{
    const struct config *cfg = app->cfg;
    if (cfg->test_routes && !app_test_tables(conn, err, errlen))
        return false;
    struct bundle_table *tables = xcalloc((size_t)cfg->n_tables + 8, sizeof *tables);
    int n = cfg->n_tables;
    if (app->test_schema) {
        n = app_test_registry(app, tables);
    } else {
        for (int i = 0; i < cfg->n_tables; i++)
            tables[i] = (struct bundle_table){ cfg->tables[i].schema, cfg->tables[i].name, cfg->tables[i].sync_key };
    }
    bundle_catalog_free(&app->catalog);
    bool ok = bundle_bootstrap(conn, tables, n, &app->catalog, err, errlen);
    free(tables);
    return ok;
}

static bool app_db_setup(PGconn *conn, void *ud, char *err, size_t errlen)
{
    struct app *app = ud;
    if (app->cfg->protocol == PROTOCOL_BUNDLE)
        return app_bundle_setup(app, conn, err, errlen);
    if (app->cfg->auto_migrate_fks && app->cfg->n_tables) {
        strbuf_t report = STRBUF_INIT;
        sync_fk_migrate(app->cfg, conn, false, &report);
        sb_free(&report);
    }
    if (!sync_schema_discover(&app->schema, conn, err, errlen))
        return false;
    if (!sync_ownership_setup(&app->schema, conn, err, errlen))
        return false;
    for (int i = 0; i < app->schema.n_tables; i++) {
        struct sync_table *t = &app->schema.tables[i];
        /* a materializer that could not load is never silently "none": no service until it can */
        if (!t->mat && t->conf->materializer != MATERIALIZER_NONE &&
            !(t->mat = materializer_new(t->conf, err, errlen)))
            return false;
        if (t->mat && !materializer_connect(t->mat, conn, err, errlen))
            return false;
    }
    return true;
}

void app_init(struct app *app, const struct config *cfg, const struct auth_ctx *auth)
{
    app->cfg = cfg;
    app->auth = auth;
    app->db = db_new(cfg);
    app->arena = arena_new(64 * 1024);
    sync_schema_init(&app->schema, cfg);
    for (int i = 0; i < app->schema.n_tables; i++) {
        char err[512];
        struct sync_table *t = &app->schema.tables[i];
        t->mat = materializer_new(t->conf, err, sizeof err);
        if (!t->mat && t->conf->materializer != MATERIALIZER_NONE)
            log_error("%s", err);   /* verified at start-up; only a file changed since can get here */
    }
    memset(&app->catalog, 0, sizeof app->catalog);
    app->test_generation = 0;
    app->test_schema = app->test_app_name = NULL;
    app->test_cfg_set = app->test_deferral = false;
    if (cfg->protocol == PROTOCOL_UPLOAD)
        sync_register_statements();
    db_set_setup_hook(app->db, app_db_setup, app);
}

void app_cleanup(struct app *app)
{
    db_free(app->db);
    arena_free(app->arena);
    sync_schema_free(&app->schema);
    bundle_catalog_free(&app->catalog);
    free(app->test_schema);
    free(app->test_app_name);
    app->test_schema = app->test_app_name = NULL;
    app->db = NULL;
    app->arena = NULL;
}

bool app_db_failed(struct app *app, struct request *req)
{
    if (!db_check_lost(app->db))
        return false;
    http_error(req, 503, "database_unavailable", "the database connection was lost; retry later");
    return true;
}

static void dispatch(struct app *app, struct request *req)
{
    const struct route *route;
    const char *allow;
    unsigned mask = app->cfg->protocol == PROTOCOL_BUNDLE
                        ? ROUTE_BUNDLE | (app->cfg->test_routes ? ROUTE_TEST : 0u)
                        : ROUTE_UPLOAD;
    enum route_match m = http_route(app_routes, n_app_routes, mask, req->io, req->arena, req->method, &route,
                                    &allow, &req->path, req->path_params);
    if (m == ROUTE_NOT_FOUND) {
        http_error(req, 404, "not_found", "no such endpoint: %s", req->path);
        return;
    }
    if (m == ROUTE_WRONG_METHOD) {
        char *hdr = arena_printf(req->arena, "Allow: %s\r\n", allow);
        http_error_headers(req, 405, "method_not_allowed", hdr, "%s is not allowed here; use %s",
                           req->method, allow);
        return;
    }
    req->route = route;
    req->route_path = route->path;

    /* A test deployment: the last setup adopted, an injected failure answered, before anything
     * else (as the reference's failure injector does). */
    if (app->cfg->test_routes && app->cfg->protocol == PROTOCOL_BUNDLE) {
        if (!db_ensure(app->db)) {
            http_error(req, 503, "database_unavailable", "the database is unreachable; retry later");
            return;
        }
        if (app_test_before(app, req))
            return;
    }

    bool has_body = strcmp(route->method, "POST") == 0;
    if (has_body) {
        /* A declared length over the limit is refused before anything else is read. */
        const char *cl = req->io->param(req->io->ud, "CONTENT_LENGTH");
        errno = 0;
        long long declared = cl && *cl ? strtoll(cl, NULL, 10) : 0;
        if (declared > app->cfg->max_body_bytes || (errno == ERANGE && declared > 0)) {
            http_error(req, 413, "payload_too_large", "request body of %lld bytes exceeds the limit of %ld bytes",
                       declared, app->cfg->max_body_bytes);
            return;
        }
    }

    if (route->needs_auth) {
        char msg[256];
        if (!auth_authenticate(app->auth, req->io->param, req->io->ud, time(NULL), &req->identity,
                               msg, sizeof msg)) {
            http_error_headers(req, 401, "unauthorized", "WWW-Authenticate: Bearer realm=\"oversyncd\"\r\n",
                               "%s", msg);
            return;
        }
        req->authenticated = true;
    }

    if (has_body) {
        bool too_large;
        if (!http_read_body(req, app->cfg->max_body_bytes, &too_large)) {
            if (too_large)
                http_error(req, 413, "payload_too_large", "request body exceeds the limit of %ld bytes",
                           app->cfg->max_body_bytes);
            else
                http_error(req, 400, "invalid_request", "the request body could not be read completely");
            return;
        }
    }

    if (route->needs_db) {
        bool up = db_ensure(app->db);
        unsigned long reconnects = db_reconnect_count(app->db);
        if (reconnects != app->reconnects_counted) {
            metrics_db_reconnect(reconnects - app->reconnects_counted);
            app->reconnects_counted = reconnects;
        }
        if (!up) {
            http_error(req, 503, "database_unavailable", "the database is unreachable; retry later");
            return;
        }
    }
    route->handler(app, req);
}

void app_handle(struct app *app, const struct http_io *io)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    arena_reset(app->arena);
    struct request req;
    http_request_init(&req, io, app->arena);

    dispatch(app, &req);
    if (!req.responded) {
        log_error("request %s: handler for %s returned without an answer", req.request_id, req.route_path);
        http_error(&req, 500, "internal_error", "internal error (request id %s)", req.request_id);
    }

    double secs = since(&t0);
    metrics_request(route_slot(req.route), req.status, secs);
    struct log_request lr = {
        .request_id = req.request_id,
        .method = req.method,
        .path = req.path,
        .route = req.route_path,
        .user = req.authenticated ? req.identity.user : NULL,
        .device = req.authenticated ? req.identity.device : NULL,
        .status = req.status,
        .duration_ms = secs * 1000.0,
        .error = req.error_code,
    };
    log_request(&lr);
}
