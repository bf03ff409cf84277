/* The HTTP side of the bundle protocol (protocol = bundle): the request's source header, its
 * parameters and body handed to bundle/, and bundle/'s reply written back. Every check and
 * message lives in bundle/; the routes are in app.c's table. */
#include "app.h"
#include "bundle/bundle.h"
#include "log.h"
#include "watch_client.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* The Oversync-Source-ID header, trimmed (Go's strings.TrimSpace: ASCII white space), into the
 * arena; NULL when absent or blank. */
static const char *source_header(struct request *req)
{
    const char *v = req->io->param(req->io->ud, "HTTP_OVERSYNC_SOURCE_ID");
    if (!v)
        return NULL;
    while (*v && isspace((unsigned char)*v))
        v++;
    size_t n = strlen(v);
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    return n ? arena_strndup(req->arena, v, n) : NULL;
}

/* Fills the context of an authenticated request; false (answered) when the source is missing or
 * unusable. */
static bool bundle_begin(struct app *app, struct request *req, struct bundle_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->cfg = app->test_cfg_set ? &app->test_cfg : app->cfg;
    c->catalog = &app->catalog;
    c->conn = db_conn(app->db);
    c->arena = req->arena;
    c->request_id = req->request_id;
    c->inflight = 1;
    if (!req->authenticated)
        return true;
    c->user = req->identity.user;
    const char *source = source_header(req);
    if (!source) {
        http_error(req, 400, "invalid_request", "Oversync-Source-ID header is required");
        return false;
    }
    char why[256];
    if (!identity_check(source, strlen(source), "Oversync-Source-ID", why, sizeof why)) {
        http_error(req, 400, "invalid_request", "%s", why);
        return false;
    }
    c->source = source;
    return true;
}

static void bundle_send(struct app *app, struct request *req, const struct bundle_reply *r)
{
    if (r->connection_lost)
        db_check_lost(app->db);
    if (r->status == 204)
        http_respond(req, 204, NULL, NULL, "", 0);
    else
        http_respond(req, r->status, "application/json", NULL, r->body.data ? r->body.data : "", r->body.len);
    req->error_code = r->error;
}

/* The common shape of a handler: context, call, reply. */
#define BUNDLE_HANDLER(name, call)                                                                 \
    void name(struct app *app, struct request *req)                                               \
    {                                                                                              \
        struct bundle_ctx c;                                                                       \
        if (!bundle_begin(app, req, &c))                                                           \
            return;                                                                                \
        struct bundle_reply r;                                                                     \
        bundle_reply_init(&r, req->arena);                                                         \
        call;                                                                                      \
        bundle_send(app, req, &r);                                                                 \
    }

/* The same for a handler that first reads its query: `read` answers and yields false on a bad
 * parameter (after the identity and the source were checked, as the reference orders them). */
#define BUNDLE_HANDLER_BODY(read, call)                                                            \
    struct bundle_ctx c;                                                                           \
    if (!bundle_begin(app, req, &c))                                                               \
        return;                                                                                    \
    if (!(read))                                                                                   \
        return;                                                                                    \
    struct bundle_reply r;                                                                         \
    bundle_reply_init(&r, req->arena);                                                             \
    call;                                                                                          \
    bundle_send(app, req, &r);

BUNDLE_HANDLER(app_bundle_capabilities, bundle_capabilities(&c, app->cfg->bundle_watch && watch_available(), &r))
BUNDLE_HANDLER(app_bundle_health, bundle_status(&c, true, false, &r))
BUNDLE_HANDLER(app_bundle_status, bundle_status(&c, false, false, &r))
BUNDLE_HANDLER(app_bundle_push_create, bundle_push_create(&c, req->body, req->body_len, &r))
BUNDLE_HANDLER(app_bundle_push_chunk, bundle_push_chunk(&c, req->path_params[0], req->body, req->body_len, &r))
BUNDLE_HANDLER(app_bundle_push_commit, bundle_push_commit(&c, req->path_params[0], &r))
BUNDLE_HANDLER(app_bundle_push_delete, bundle_push_delete(&c, req->path_params[0], &r))

void app_bundle_committed_rows(struct app *app, struct request *req)
{
    static const char *const names[] = { "after_row_ordinal", "max_rows" };
    const char *q[2];
    BUNDLE_HANDLER_BODY(http_query_params(req, 2, names, q),
                        bundle_committed_rows(&c, req->path_params[0], q[0], q[1], &r))
}
BUNDLE_HANDLER(app_bundle_connect, if (app_test_connect_deferred(app, req, c.user, c.source)) return;
               bundle_connect(&c, req->body, req->body_len, &r))

/* GET /sync/pull: after_bundle_seq, max_bundles, target_bundle_seq from the query. */
void app_bundle_pull(struct app *app, struct request *req)
{
    static const char *const names[] = { "after_bundle_seq", "max_bundles", "target_bundle_seq" };
    const char *q[3];
    BUNDLE_HANDLER_BODY(http_query_params(req, 3, names, q), bundle_pull(&c, q[0], q[1], q[2], &r))
}

/* POST /sync/snapshot-sessions; GET and DELETE /sync/snapshot-sessions/{snapshot_id}. */
BUNDLE_HANDLER(app_bundle_snapshot_create, bundle_snapshot_create(&c, req->body, req->body_len, &r))
void app_bundle_snapshot_chunk(struct app *app, struct request *req)
{
    static const char *const names[] = { "after_row_ordinal", "max_rows" };
    const char *q[2];
    BUNDLE_HANDLER_BODY(http_query_params(req, 2, names, q),
                        bundle_snapshot_chunk(&c, req->path_params[0], q[0], q[1], &r))
}
BUNDLE_HANDLER(app_bundle_snapshot_delete, bundle_snapshot_delete(&c, req->path_params[0], &r))

/* GET /sync/watch: the checks answered here as JSON (SPEC-v2 §3.8), then the connection goes to
 * the watch process, which writes the stream (src/watch.c). */
void app_bundle_watch(struct app *app, struct request *req)
{
    static const char *const names[] = { "after_bundle_seq" };
    const char *q[1];
    struct bundle_ctx c;
    if (!bundle_begin(app, req, &c))
        return;
    if (!http_query_params(req, 1, names, q))
        return;
    struct bundle_reply r;
    bundle_reply_init(&r, req->arena);
    struct watch_msg m;
    memset(&m, 0, sizeof m);
    m.t0_ns = watch_now_ns();   /* before the latest bundle_seq is read */
    struct bundle_watch_start st;
    if (bundle_watch_prepare(&c, app->cfg->bundle_watch && watch_available(), q[0], &st, &r)) {
        m.kind = WATCH_STREAM;
        snprintf(m.request_id, sizeof m.request_id, "%s", req->request_id);
        m.user_pk = st.user_pk;
        m.after = st.after;
        m.latest = st.latest;
        if (http_handoff(req, &m, sizeof m))
            return;
        log_error("request %s: the watch process cannot take the stream (its socket is full or gone)",
                  req->request_id);
        bundle_fail(&r, 500, "bundle_change_watch_failed", "Failed to subscribe bundle change watch");
    }
    bundle_send(app, req, &r);
}

/* GET /test/watch-subscribers?user_id=U: the open streams of U, counted by the watch process,
 * which holds all of this server's streams. */
void app_test_watch_subscribers(struct app *app, struct request *req)
{
    static const char *const names[] = { "user_id" };
    const char *q[1];
    if (!http_query_params(req, 1, names, q))
        return;
    const char *user = q[0] ? q[0] : "";
    while (*user && isspace((unsigned char)*user))
        user++;
    size_t n = strlen(user);
    while (n && isspace((unsigned char)user[n - 1]))
        n--;
    struct bundle_reply r;
    bundle_reply_init(&r, req->arena);
    if (n == 0) {
        bundle_fail(&r, 400, "invalid_request", "user_id required");
        bundle_send(app, req, &r);
        return;
    }
    user = arena_strndup(req->arena, user, n);
    struct bundle_ctx c;
    bundle_begin(app, req, &c);
    long long user_pk = 0;
    if (!bundle_user_pk(&c, user, &user_pk, &r)) {
        bundle_send(app, req, &r);
        return;
    }
    if (user_pk > 0 && n < IDENTITY_MAX && watch_available()) {
        struct watch_msg m;
        memset(&m, 0, sizeof m);
        m.kind = WATCH_COUNT;
        snprintf(m.request_id, sizeof m.request_id, "%s", req->request_id);
        m.user_pk = user_pk;
        snprintf(m.user, sizeof m.user, "%s", user);
        if (http_handoff(req, &m, sizeof m))
            return;
    }
    bundle_watch_subscribers(&r, user, 0);
    bundle_send(app, req, &r);
}
