/* The upload protocol's long-poll (GET /sync/download?wait=S) on both sides of the hand-over: the
 * worker's (parse wait, hand the request to the watch process when there is nothing to answer
 * yet), the watch process's (run the same download and write the complete answer), and the
 * upload's announcement of its changes to whoever waits. See src/watch.h. */
#include "app.h"
#include "log.h"
#include "watch_client.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool app_watch_parse_wait(const struct config *cfg, const char *s, long *wait_ms, char *err, size_t errlen)
{
    *wait_ms = 0;
    if (!s)
        return true;
    long max_s = cfg->download_max_wait_ms / 1000;
    size_t n = strlen(s);
    bool digits = n > 0 && n <= 9 && strspn(s, "0123456789") == n;
    long v = digits ? atol(s) : -1;
    if (!digits || v > max_s) {
        if (max_s > 0)
            snprintf(err, errlen, "wait must be an integer number of seconds from 0 to %ld", max_s);
        else
            snprintf(err, errlen, "wait is not available on this server ([sync] download_max_wait = 0)");
        return false;
    }
    *wait_ms = v * 1000;
    return true;
}

bool app_watch_download_wait(struct app *app, struct request *req, const struct download_params *p, long wait_ms,
                             int64_t t0)
{
    struct watch_msg m;
    memset(&m, 0, sizeof m);
    m.kind = WATCH_DOWNLOAD;
    snprintf(m.request_id, sizeof m.request_id, "%s", req->request_id);
    m.t0_ns = t0;
    m.dl_after = p->after;
    m.dl_until = p->until;
    m.dl_limit = p->limit;
    m.dl_include_self = p->include_self;
    if (p->schema) {
        if (strlen(p->schema) >= sizeof m.schema)
            return false;
        m.dl_has_schema = 1;
        snprintf(m.schema, sizeof m.schema, "%s", p->schema);
    }
    m.deadline_ns = t0 + (int64_t)wait_ms * 1000000;
    snprintf(m.user, sizeof m.user, "%s", req->identity.user);
    snprintf(m.device, sizeof m.device, "%s", req->identity.device);
    return http_handoff(req, &m, sizeof m);
}

/* A transport that collects the answer in a buffer: the watch process wraps it in FastCGI
 * records itself. */
static int collect_write(void *ud, const char *buf, size_t n)
{
    sb_append(ud, buf, n);
    return 0;
}

static const char *no_param(void *ud, const char *name)
{
    return NULL;
}

bool app_watch_download_answer(struct app *app, const struct watch_msg *m, strbuf_t *answer, unsigned long *rows)
{
    arena_reset(app->arena);
    struct http_io io = { .param = no_param, .read = NULL, .write = collect_write, .handoff = NULL, .ud = answer };
    struct request req;
    memset(&req, 0, sizeof req);
    req.io = &io;
    req.arena = app->arena;
    req.method = "GET";
    req.path = req.route_path = "/sync/download";
    req.query = "";
    snprintf(req.request_id, sizeof req.request_id, "%s", m->request_id);
    struct identity who;
    snprintf(who.user, sizeof who.user, "%s", m->user);
    snprintf(who.device, sizeof who.device, "%s", m->device);
    struct download_params p = { .after = m->dl_after, .limit = m->dl_limit,
                                 .schema = m->dl_has_schema ? m->schema : NULL,
                                 .include_self = m->dl_include_self, .until = m->dl_until };
    *rows = 0;
    if (!db_ensure(app->db)) {
        http_error(&req, 503, "database_unavailable", "the database is unreachable; retry later");
        return false;
    }
    struct sync_request rq = { .cfg = app->cfg, .schema = &app->schema, .conn = db_conn(app->db), .who = &who,
                               .arena = app->arena, .request_id = req.request_id, .sink = NULL };
    strbuf_t out = STRBUF_ARENA(app->arena);
    char err[512];
    enum sync_outcome o = sync_download(&rq, &p, &out, rows, err, sizeof err);
    if (o != SYNC_OK) {
        db_check_lost(app->db);
        http_error(&req, 503, "database_unavailable", "the database is unavailable or busy; retry later");
        return false;
    }
    http_json(&req, 200, &out);
    return true;
}

void app_watch_upload_committed(struct app *app, const struct identity *who)
{
    if (app->cfg->protocol != PROTOCOL_UPLOAD || app->cfg->download_max_wait_ms <= 0 || !watch_waiting(who->user))
        return;
    /* After the COMMIT (the answer is already on its way): a downloader that starts waiting
     * from now on reads after the commit, and one that waits already is counted in the table
     * watch_waiting() reads, so none misses the change. */
    strbuf_t payload = STRBUF_ARENA(app->arena);
    sb_puts(&payload, "{\"user_id\":");
    sb_json_str(&payload, who->user);
    sb_puts(&payload, ",\"source_id\":");
    sb_json_str(&payload, who->device);
    sb_putc(&payload, '}');
    const char *vals[2] = { WATCH_UPLOAD_CHANNEL, payload.data };
    PGresult *r = db_result_in(app->arena, PQexecParams(db_conn(app->db), "SELECT pg_notify($1, $2)", 2, NULL, vals,
                                                        NULL, NULL, 0));
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        log_warn("announcing an upload to waiting downloads: %s", PQresultErrorMessage(r));
}
