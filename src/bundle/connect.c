/* POST /sync/connect (SPEC-v2 §3.1): how a client install starts on a scope. An initialized scope
 * is authoritative; an uninitialized one is either seeded from the client's local rows under a
 * lease (initialize_local) or declared empty (initialize_empty); while another source holds the
 * lease the answer is retry_later. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define CONNECT_FAILED "connect_failed", "Failed to resolve connect lifecycle"

struct connect_state {
    bool pending;
};

static void answer_initialize_local(struct bundle_reply *r, const char *id, const char *lease)
{
    sb_puts(&r->body, "{\"resolution\":\"initialize_local\",\"initialization_id\":");
    bj_str(&r->body, id);
    sb_puts(&r->body, ",\"lease_expires_at\":");
    bj_str(&r->body, lease);
    sb_putc(&r->body, '}');
}

static enum btx connect_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct connect_state *st = ud;
    r->body.len = 0;
    enum btx locked = btx_user_lock(c, r, CONNECT_FAILED);
    if (locked != BTX_OK)
        return locked;
    PGresult *res;
    struct scope s;
    const PGresult *failed;
    if (!scope_lock(c, &s, &failed))
        return btx_db_error(c, r, failed, CONNECT_FAILED);

    char pk[32], ttl[32];
    snprintf(pk, sizeof pk, "%lld", s.user_pk);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg->initialization_lease_ttl_ms);

    if (s.state == SCOPE_INITIALIZED) {
        sb_puts(&r->body, "{\"resolution\":\"remote_authoritative\"}");
        return BTX_OK;
    }
    bool mine = s.state == SCOPE_INITIALIZING && strcmp(s.initializer_source_id, c->source) == 0;
    if (s.state == SCOPE_UNINITIALIZED || mine) {
        if (!st->pending) {
            if (!scope_set_initialized(c, s.user_pk, c->source, &failed))
                return btx_db_error(c, r, failed, CONNECT_FAILED);
            sb_puts(&r->body, "{\"resolution\":\"initialize_empty\"}");
            return BTX_OK;
        }
        /* a new lease, or the same one (same id) extended */
        const char *p[4] = { pk, ttl, c->source, mine ? s.initialization_id : NULL };
        res = bqp(c,
                  "UPDATE sync.scope_state SET state_code = 1, initializer_source_id = $3, "
                  "initialization_id = coalesce($4::uuid, gen_random_uuid()), "
                  "lease_expires_at = clock_timestamp() + $2::bigint * interval '1 ms', "
                  "initialized_at = NULL, initialized_by_source_id = NULL WHERE user_pk = $1 "
                  "RETURNING initialization_id::text, " SQL_RFC3339("lease_expires_at"),
                  4, p);
        if (!bq_ok(res) || PQntuples(res) != 1)
            return btx_db_error(c, r, res, CONNECT_FAILED);
        answer_initialize_local(r, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        return BTX_OK;
    }
    /* another source holds the lease */
    long retry = 1;
    if (s.lease_in_future && s.lease_seconds_left >= 1)
        retry = (long)s.lease_seconds_left;
    sb_printf(&r->body, "{\"resolution\":\"retry_later\",\"lease_expires_at\":");
    bj_str(&r->body, s.lease_expires_at);
    sb_printf(&r->body, ",\"retry_after_seconds\":%ld}", retry);
    return BTX_OK;
}

void bundle_connect(const struct bundle_ctx *c, const char *body, size_t len, struct bundle_reply *r)
{
    struct bfield f[] = { { .name = "has_local_pending_rows", .type = BF_BOOL } };
    if (len == 0 || !bparse_object(c->arena, body, len, f, 1, false)) {
        bundle_fail(r, 400, "invalid_request", "Failed to parse connect request");
        return;
    }
    struct connect_state st = { f[0].b };
    if (btx_run(c, r, "ISOLATION LEVEL READ COMMITTED", connect_tx, &st, CONNECT_FAILED))
        bundle_ok(r, 200);
}
