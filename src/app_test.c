/* The test-only routes of a bundle deployment ([bundle] test_routes = on), which go-oversync's own
 * end-to-end tests drive through our shim (docs/compatibility.md, "The e2e test hook"):
 *
 *   POST /test/e2e/setup      drop every non-system schema, create the example tables in the
 *                             given business schema, register them, bootstrap the sidecar, and
 *                             apply the test's lease TTL, app name and empty-first deferral;
 *   POST /test/e2e/failures   answer the next N requests of one endpoint with a given error.
 *
 * Workers are separate processes, so what a setup decides lives in the database, in three tables
 * of schema public (which the setup does not drop): each request of a test deployment first
 * looks at the setup's generation (one indexed read) and, when it changed, adopts the new
 * registry; injected failures are counted down there atomically, whichever worker serves the
 * request. Never enabled in production: any caller may drop every schema. */
#include "app.h"
#include "bundle/bundle.h"
#include "canonical_json.h"
#include "json_scan.h"
#include "log.h"
#include "xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TABLES_SQL                                                                            \
    "BEGIN; SET LOCAL client_min_messages = warning;"                                              \
    "SELECT pg_advisory_xact_lock(hashtextextended('oversyncd test routes', 0));"                 \
    "CREATE TABLE IF NOT EXISTS public.oversyncd_test_setup ("                                     \
    " singleton bool PRIMARY KEY DEFAULT true CHECK (singleton), generation bigint NOT NULL,"      \
    " business_schema text NOT NULL, app_name text NOT NULL, lease_ttl_ms bigint NOT NULL,"        \
    " deferral bool NOT NULL, deferral_ms bigint NOT NULL);"                                       \
    "CREATE TABLE IF NOT EXISTS public.oversyncd_test_failures (endpoint text PRIMARY KEY,"        \
    " status int NOT NULL, remaining int NOT NULL, body text NOT NULL);"                           \
    "CREATE TABLE IF NOT EXISTS public.oversyncd_test_deferrals (user_id text PRIMARY KEY,"        \
    " source_id text NOT NULL, expires_at timestamptz NOT NULL); COMMIT"

/* The example's eight tables, in table_id order. */
static const char *const example_tables[] = { "categories", "file_reviews", "files", "posts",
                                              "team_members", "teams", "typed_rows", "users" };
#define N_EXAMPLE_TABLES 8

/* The failure-injection names of the reference, by route. */
static const struct {
    const char *method, *path, *endpoint;
} failure_routes[] = {
    { "POST", "/sync/connect", "connect" },
    { "POST", "/sync/push-sessions", "push_session_create" },
    { "POST", "/sync/push-sessions/{push_id}/chunks", "push_session_chunk" },
    { "POST", "/sync/push-sessions/{push_id}/commit", "push_session_commit" },
    { "GET", "/sync/pull", "pull" },
    { "POST", "/sync/snapshot-sessions", "snapshot_create" },
    { "GET", "/sync/snapshot-sessions/{snapshot_id}", "snapshot_chunk" },
    { "GET", "/sync/capabilities", "capabilities" },
    { "GET", "/sync/committed-bundles/{bundle_seq}/rows", "committed_bundle_rows" },
};
#define N_FAILURE_ROUTES (sizeof failure_routes / sizeof failure_routes[0])

static PGresult *q(struct request *req, PGconn *c, const char *sql, int n, const char *const *params)
{
    return db_result_in(req->arena, PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0));
}

static bool ok(const PGresult *r)
{
    return PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
}

bool app_test_tables(PGconn *conn, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, TEST_TABLES_SQL);
    bool good = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!good)
        snprintf(err, errlen, "test routes: creating their tables: %s", PQerrorMessage(conn));
    PQclear(r);
    if (!good)
        PQclear(PQexec(conn, "ROLLBACK"));
    return good;
}

/* The test's settings over the configuration: a shallow copy whose strings the app owns. */
static void apply_settings(struct app *app, const char *app_name, long lease_ms, bool deferral, long deferral_ms)
{
    free(app->test_app_name);
    app->test_app_name = xstrdup(app_name);
    app->test_cfg = *app->cfg;
    app->test_cfg.app_name = app->test_app_name;
    if (lease_ms > 0)
        app->test_cfg.initialization_lease_ttl_ms = lease_ms;
    app->test_cfg_set = true;
    app->test_deferral = deferral;
    app->test_deferral_ms = deferral_ms > 0 ? deferral_ms : 1000;
}

/* The generation of the last setup, adopted by this worker when it changed. false when the
 * adoption failed (answered 500). */
static bool refresh(struct app *app, struct request *req)
{
    PGconn *c = db_conn(app->db);
    PGresult *r = q(req, c,
                    "SELECT generation, business_schema, app_name, lease_ttl_ms, deferral, deferral_ms "
                    "FROM public.oversyncd_test_setup",
                    0, NULL);
    if (!ok(r)) {
        db_check_lost(app->db);
        http_error(req, 500, "setup_failed", "reading the test setup: %s", PQresultErrorMessage(r));
        return false;
    }
    if (PQntuples(r) != 1)
        return true;
    long long gen = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (gen == app->test_generation)
        return true;
    free(app->test_schema);
    app->test_schema = xstrdup(PQgetvalue(r, 0, 1));
    apply_settings(app, PQgetvalue(r, 0, 2), strtol(PQgetvalue(r, 0, 3), NULL, 10),
                   strcmp(PQgetvalue(r, 0, 4), "t") == 0, strtol(PQgetvalue(r, 0, 5), NULL, 10));
    char err[1024];
    if (!app_bundle_setup(app, c, err, sizeof err)) {
        http_error(req, 500, "setup_failed", "adopting the test setup: %s", err);
        return false;
    }
    app->test_generation = gen;
    return true;
}

bool app_test_before(struct app *app, struct request *req)
{
    if (!refresh(app, req))
        return true;
    const char *endpoint = NULL;
    for (size_t i = 0; i < N_FAILURE_ROUTES && !endpoint; i++)
        if (strcmp(failure_routes[i].method, req->route->method) == 0 &&
            strcmp(failure_routes[i].path, req->route->path) == 0)
            endpoint = failure_routes[i].endpoint;
    if (!endpoint)
        return false;
    const char *p[1] = { endpoint };
    PGresult *r = q(req, db_conn(app->db),
                    "UPDATE public.oversyncd_test_failures SET remaining = remaining - 1 "
                    "WHERE endpoint = $1 AND remaining > 0 RETURNING status, body",
                    1, p);
    if (!ok(r)) {
        db_check_lost(app->db);
        http_error(req, 500, "setup_failed", "reading the injected failures: %s", PQresultErrorMessage(r));
        return true;
    }
    if (PQntuples(r) == 0)
        return false;
    const char *body = PQgetvalue(r, 0, 1);
    char *text = arena_printf(req->arena, "%s\n", body);
    http_respond(req, atoi(PQgetvalue(r, 0, 0)), "application/json", NULL, text, strlen(text));
    req->error_code = "injected_failure";
    return true;
}

/* ------------------------------------------------------------------------ request bodies */

/* A member of a validated object (the last occurrence), or NULL. */
static bool member(const struct json_span *obj, const char *name, struct json_span *out)
{
    struct json_iter it;
    struct json_span k, v;
    bool found = false;
    json_iter_init(&it, obj);
    while (json_iter_member(&it, &k, &v))
        if (json_string_eq(&k, name)) {
            *out = v;
            found = true;
        }
    return found;
}

static bool int_member(const struct json_span *obj, const char *name, long long *out)
{
    struct json_span v;
    *out = 0;
    if (!member(obj, name, &v) || v.type == JSON_NULL)
        return true;
    return v.type == JSON_NUMBER && json_int64(&v, out);
}

static void reply_json(struct request *req, int status, strbuf_t *sb)
{
    sb_putc(sb, '\n');
    http_respond(req, status, "application/json", NULL, sb->data, sb->len);
}

/* ------------------------------------------------------------------------------- setup */

/* The example's DDL for schema `schema` (already quoted): psql's lines dropped, its variable
 * replaced. */
static char *business_ddl(arena_t *a, const char *schema)
{
    strbuf_t out = STRBUF_ARENA(a);
    const char *p = bundle_example_business_sql;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) + 1 : strlen(p);
        if (*p != '\\') {
            static const char var[] = ":\"business_schema\"";
            const char *line_end = p + n, *s = p, *hit;
            while ((hit = memmem(s, (size_t)(line_end - s), var, sizeof var - 1))) {
                sb_append(&out, s, (size_t)(hit - s));
                sb_puts(&out, schema);
                s = hit + sizeof var - 1;
            }
            sb_append(&out, s, (size_t)(line_end - s));
        }
        p += n;
    }
    return out.data;
}

void app_test_setup(struct app *app, struct request *req)
{
    struct json_span root, v;
    char why[256];
    if (!json_validate(req->body ? req->body : "", req->body_len, &root, why, sizeof why) ||
        root.type != JSON_OBJECT) {
        http_error(req, 400, "invalid_request", "the body must be a JSON object such as {\"business_schema\":\"s\"}");
        return;
    }
    char *schema = NULL, *app_name = NULL;
    if (member(&root, "business_schema", &v) && v.type == JSON_STRING)
        schema = json_string_dup(req->arena, &v);
    if (!schema || !*schema) {
        http_error(req, 400, "invalid_request", "business_schema is required");
        return;
    }
    if (member(&root, "app_name", &v) && v.type == JSON_STRING)
        app_name = json_string_dup(req->arena, &v);
    if (!app_name || !*app_name)
        app_name = "oversqlite-end-to-end";
    long long lease_ms, deferral_ms;
    bool deferral = member(&root, "empty_first_deferral", &v) && v.type == JSON_TRUE;
    if (!int_member(&root, "initialization_lease_ttl_ms", &lease_ms) ||
        !int_member(&root, "empty_first_deferral_ms", &deferral_ms) || lease_ms < 0 || deferral_ms < 0) {
        http_error(req, 400, "invalid_request",
                   "initialization_lease_ttl_ms and empty_first_deferral_ms must be integers >= 0");
        return;
    }
    /* PostgreSQL folds nothing inside quotes and truncates a name to 63 bytes: register the name
     * the tables really get. Only names the registry can hold are accepted. */
    for (char *s = schema; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    if (strlen(schema) > 63)
        schema[63] = '\0';
    if (strspn(schema, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(schema)) {
        http_error(req, 400, "invalid_request", "business_schema may contain only a-z, 0-9 and _");
        return;
    }

    PGconn *c = db_conn(app->db);
    char *quoted = PQescapeIdentifier(c, schema, strlen(schema));
    char *ddl = business_ddl(req->arena, quoted);
    PQfreemem(quoted);
    const char *steps[][2] = {
        { "forgetting the previous setup",
          "DELETE FROM public.oversyncd_test_failures; DELETE FROM public.oversyncd_test_deferrals" },
        { "dropping the schemas",
          "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT IN "
          "('pg_catalog', 'information_schema', 'public') AND nspname NOT LIKE 'pg\\_toast%' AND nspname "
          "NOT LIKE 'pg\\_temp\\_%' LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$" },
        { "creating the business tables", ddl },
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        PGresult *r = db_result_in(req->arena, PQexec(c, steps[i][1]));
        if (!ok(r)) {
            http_error(req, 500, "setup_failed", "%s: %s", steps[i][0], PQresultErrorMessage(r));
            db_result_in(req->arena, PQexec(c, "ROLLBACK"));
            return;
        }
    }
    free(app->test_schema);
    app->test_schema = xstrdup(schema);
    apply_settings(app, app_name, (long)lease_ms, deferral, (long)deferral_ms);
    char err[1024];
    if (!app_bundle_setup(app, c, err, sizeof err)) {
        http_error(req, 500, "setup_failed", "bootstrapping the sidecar: %s", err);
        return;
    }
    char lease[32], dms[32];
    snprintf(lease, sizeof lease, "%lld", lease_ms);
    snprintf(dms, sizeof dms, "%lld", deferral_ms);
    const char *p[5] = { schema, app_name, lease, deferral ? "true" : "false", dms };
    PGresult *r = q(req, c,
                    "INSERT INTO public.oversyncd_test_setup AS t VALUES (true, 1, $1, $2, $3, $4, $5) "
                    "ON CONFLICT (singleton) DO UPDATE SET generation = t.generation + 1, business_schema = $1, "
                    "app_name = $2, lease_ttl_ms = $3, deferral = $4, deferral_ms = $5 RETURNING generation",
                    5, p);
    if (!ok(r)) {
        http_error(req, 500, "setup_failed", "recording the setup: %s", PQresultErrorMessage(r));
        return;
    }
    app->test_generation = strtoll(PQgetvalue(r, 0, 0), NULL, 10);

    strbuf_t sb = STRBUF_ARENA(req->arena);
    sb_puts(&sb, "{\"status\":\"ok\",\"business_schema\":");
    canonical_json_string(&sb, schema, strlen(schema));
    sb_puts(&sb, ",\"registered_tables\":[");
    for (int i = 0; i < N_EXAMPLE_TABLES; i++) {
        char *name = arena_printf(req->arena, "%s.%s", schema, example_tables[i]);
        if (i)
            sb_putc(&sb, ',');
        canonical_json_string(&sb, name, strlen(name));
    }
    sb_puts(&sb, "]}");
    reply_json(req, 200, &sb);
}

/* The registry of a test setup: the example's tables in its schema. */
int app_test_registry(const struct app *app, struct bundle_table *out)
{
    for (int i = 0; i < N_EXAMPLE_TABLES; i++)
        out[i] = (struct bundle_table){ app->test_schema, example_tables[i], "id" };
    return N_EXAMPLE_TABLES;
}

/* ----------------------------------------------------------------------------- failures */

void app_test_failures(struct app *app, struct request *req)
{
    struct json_span root, v;
    char why[256];
    if (!json_validate(req->body ? req->body : "", req->body_len, &root, why, sizeof why) ||
        root.type != JSON_OBJECT) {
        http_error(req, 400, "invalid_request", "the body must be a JSON object such as {\"endpoint\":\"pull\"}");
        return;
    }
    char *endpoint = NULL;
    if (member(&root, "endpoint", &v) && v.type == JSON_STRING)
        endpoint = json_string_dup(req->arena, &v);
    bool known = false;
    for (size_t i = 0; endpoint && i < N_FAILURE_ROUTES; i++)
        known |= strcmp(failure_routes[i].endpoint, endpoint) == 0;
    if (!known) {
        http_error(req, 400, "invalid_request", "unknown endpoint %s", endpoint ? endpoint : "(none)");
        return;
    }
    long long status, count;
    if (!int_member(&root, "status_code", &status) || !int_member(&root, "count", &count)) {
        http_error(req, 400, "invalid_request", "status_code and count must be integers");
        return;
    }
    if (count > 0 && (status < 100 || status > 599)) {
        http_error(req, 400, "invalid_request", "status_code must be between 100 and 599");
        return;
    }
    strbuf_t body = STRBUF_ARENA(req->arena);
    if (member(&root, "body", &v) && v.type != JSON_NULL) {
        sb_append(&body, v.start, v.len);
    } else {
        sb_puts(&body, "{\"error\":\"injected_failure\",\"message\":");
        char *msg = arena_printf(req->arena, "injected %s failure", endpoint);
        canonical_json_string(&body, msg, strlen(msg));
        sb_putc(&body, '}');
    }
    char st[16], cnt[32];
    snprintf(st, sizeof st, "%lld", status);
    snprintf(cnt, sizeof cnt, "%lld", count);
    const char *p[4] = { endpoint, st, cnt, body.data };
    PGresult *r = count > 0 ? q(req, db_conn(app->db),
                                "INSERT INTO public.oversyncd_test_failures VALUES ($1, $2, $3, $4) "
                                "ON CONFLICT (endpoint) DO UPDATE SET status = $2, remaining = $3, body = $4",
                                4, p)
                            : q(req, db_conn(app->db), "DELETE FROM public.oversyncd_test_failures WHERE endpoint = $1",
                                1, p);
    if (!ok(r)) {
        http_error(req, 500, "setup_failed", "recording the failure: %s", PQresultErrorMessage(r));
        return;
    }
    strbuf_t sb = STRBUF_ARENA(req->arena);
    sb_puts(&sb, "{\"status\":\"ok\",\"endpoint\":");
    canonical_json_string(&sb, endpoint, strlen(endpoint));
    sb_printf(&sb, ",\"count\":%lld}", count > 0 ? count : 0);
    reply_json(req, 200, &sb);
}

/* --------------------------------------------------------------------- empty-first deferral */

bool app_test_connect_deferred(struct app *app, struct request *req, const char *user, const char *source)
{
    if (!app->test_deferral)
        return false;
    struct json_span root, v;
    char why[128];
    if (!req->body_len || !json_validate(req->body, req->body_len, &root, why, sizeof why) ||
        root.type != JSON_OBJECT)
        return false;   /* the endpoint answers it */
    PGconn *c = db_conn(app->db);
    const char *pu[1] = { user };
    if (member(&root, "has_local_pending_rows", &v) && v.type == JSON_TRUE) {
        q(req, c, "DELETE FROM public.oversyncd_test_deferrals WHERE user_id = $1", 1, pu);
        return false;
    }
    PGresult *r = q(req, c,
                    "SELECT coalesce((SELECT ss.state_code FROM sync.scope_state ss JOIN sync.user_state us "
                    "USING (user_pk) WHERE us.user_id = $1), 0)",
                    1, pu);
    if (!ok(r) || strcmp(PQgetvalue(r, 0, 0), "0") != 0)
        return false;
    char ms[32];
    snprintf(ms, sizeof ms, "%ld", app->test_deferral_ms);
    const char *p[3] = { user, source, ms };
    /* one statement: the candidate after this request (kept, replaced or forgotten) and whether
     * to defer, with the expiry */
    r = q(req, c,
          "WITH cur AS (SELECT source_id, expires_at FROM public.oversyncd_test_deferrals WHERE user_id = $1 FOR UPDATE), "
          "decision AS (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM cur) THEN 'new' "
          " WHEN (SELECT expires_at FROM cur) > clock_timestamp() THEN 'wait' "
          " WHEN (SELECT source_id FROM cur) = $2 THEN 'pass' ELSE 'new' END AS d), "
          "del AS (DELETE FROM public.oversyncd_test_deferrals WHERE user_id = $1 AND (SELECT d FROM decision) <> 'wait' "
          " RETURNING 1), "
          "ins AS (INSERT INTO public.oversyncd_test_deferrals SELECT $1, $2, clock_timestamp() + $3::bigint * "
          " interval '1 ms' WHERE (SELECT d FROM decision) = 'new' ON CONFLICT (user_id) DO UPDATE SET "
          " source_id = EXCLUDED.source_id, expires_at = EXCLUDED.expires_at RETURNING expires_at) "
          "SELECT d, coalesce((SELECT expires_at FROM ins), (SELECT expires_at FROM cur)) AS e, "
          " ceil(extract(epoch FROM coalesce((SELECT expires_at FROM ins), (SELECT expires_at FROM cur)) - "
          " clock_timestamp())), "
          " rtrim(rtrim(to_char(coalesce((SELECT expires_at FROM ins), (SELECT expires_at FROM cur)) AT TIME ZONE "
          " 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '0'), '.') || 'Z' FROM decision",
          3, p);
    if (!ok(r) || PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "pass") == 0)
        return false;
    long retry = atol(PQgetvalue(r, 0, 2));
    if (retry < 1)
        retry = 1;
    strbuf_t sb = STRBUF_ARENA(req->arena);
    sb_puts(&sb, "{\"resolution\":\"retry_later\",\"lease_expires_at\":");
    const char *t = PQgetvalue(r, 0, 3);
    canonical_json_string(&sb, t, strlen(t));
    sb_printf(&sb, ",\"retry_after_seconds\":%ld}", retry);
    reply_json(req, 200, &sb);
    return true;
}
