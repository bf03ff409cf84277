/* GET /sync/watch (SPEC-v2 §3.8): everything the stream needs before it can start, answered as the
 * reference answers it. The stream itself is served by the watch process (src/watch.c): this only
 * decides whether there is one, for which user_pk, and from which bundle_seq. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define WATCH_FAILED "bundle_change_watch_failed", "Failed to subscribe bundle change watch"

struct watch_state {
    long long user_pk;
    long long latest;
};

static enum btx watch_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct watch_state *st = ud;
    struct scope s;
    bool exists;
    const PGresult *failed;
    if (!scope_read(c, &s, &exists, &failed))
        return btx_db_error(c, r, failed, WATCH_FAILED);
    if (!scope_require_initialized(c, &s, r))
        return BTX_FAIL;
    const char *u[1] = { c->user };
    PGresult *res = bqp(c, "SELECT user_pk, next_bundle_seq - 1 FROM sync.user_state WHERE user_id = $1", 1, u);
    if (!bq_ok(res))
        return btx_db_error(c, r, res, WATCH_FAILED);
    if (PQntuples(res) != 1) {
        /* an initialized scope always has its user_state row: the reference fails the lookup */
        bundle_fail_internal(c, r, WATCH_FAILED);
        return BTX_FAIL;
    }
    st->user_pk = bq_int(res, 0, 0);
    st->latest = bq_int(res, 0, 1);
    return BTX_OK;
}

bool bundle_watch_prepare(const struct bundle_ctx *c, bool enabled, const char *after_bundle_seq,
                          struct bundle_watch_start *out, struct bundle_reply *r)
{
    long long after = 0;
    if (after_bundle_seq && *after_bundle_seq) {
        if (!bparse_int(after_bundle_seq, &after)) {
            bundle_fail(r, 400, "invalid_request", "after_bundle_seq must be an integer");
            return false;
        }
        if (after < 0) {
            bundle_fail(r, 400, "invalid_request", "after_bundle_seq must be >= 0");
            return false;
        }
    }
    if (!enabled) {
        bundle_fail(r, 503, "bundle_change_watch_disabled", "Bundle change watch is disabled");
        return false;
    }
    struct watch_state st = { 0, 0 };
    if (!btx_run(c, r, "READ ONLY", watch_tx, &st, WATCH_FAILED))
        return false;
    out->user_pk = st.user_pk;
    out->after = after;
    out->latest = st.latest;
    return true;
}

bool bundle_user_pk(const struct bundle_ctx *c, const char *user_id, long long *user_pk, struct bundle_reply *r)
{
    const char *u[1] = { user_id };
    PGresult *res = bqp(c, "SELECT user_pk FROM sync.user_state WHERE user_id = $1", 1, u);
    if (!bq_ok(res)) {
        bundle_fail_db(c, r, res, "watch_subscribers_failed", "failed to inspect watch subscribers");
        return false;
    }
    *user_pk = PQntuples(res) == 1 ? bq_int(res, 0, 0) : 0;
    return true;
}

void bundle_watch_subscribers(struct bundle_reply *r, const char *user_id, long count)
{
    r->body.len = 0;
    sb_printf(&r->body, "{\"process_local_only\":true,\"subscriber_count\":%ld,\"user_id\":", count);
    bj_str(&r->body, user_id);
    sb_putc(&r->body, '}');
    bundle_ok(r, 200);
}
