/* GET /sync/pull (SPEC-v2 §3.7, §4.8): complete committed bundles of the caller's scope after
 * after_bundle_seq, up to a stable bundle_seq (the target the client echoes back, or the head),
 * at most max_bundles of them, in one READ ONLY REPEATABLE READ transaction. The page is one
 * query over the primary keys of bundle_log and bundle_rows; the stored payload text is passed
 * through. */
#include "internal.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log.h"

#define PULL_FAILED "pull_failed", "Failed to process pull"

struct pull_state {
    long long after, max, target;
    bool pruned;   /* answered history_pruned: count it after the transaction */
};

/* The floor check of retention.go: a positive seq at or below the floor is history_pruned. */
static bool floor_ok(const struct bundle_ctx *c, struct bundle_reply *r, long long seq, long long floor)
{
    if (seq <= 0 || seq > floor)
        return true;
    bundle_fail(r, 409, "history_pruned", "requested checkpoint %lld is older than retained history floor %lld for user %s",
                seq, floor, c->user);
    return false;
}

/* The page: the bundles after `after` (and above the floor) up to `stable`, max + 1 of them to
 * learn has_more, with the rows of the first max joined in order. A bundle without rows still
 * yields one line (row columns NULL). */
#define SQL_PULL_PAGE                                                                                  \
    "WITH b AS MATERIALIZED ("                                                                         \
    " SELECT l.bundle_seq, l.source_id, l.source_bundle_id, l.row_count, encode(l.bundle_hash, 'hex') AS hash," \
    " row_number() OVER (ORDER BY l.bundle_seq) AS n FROM ("                                           \
    "  SELECT bundle_seq, source_id, source_bundle_id, row_count, bundle_hash FROM sync.bundle_log"    \
    "  WHERE user_pk = $1 AND bundle_seq > $2 AND bundle_seq > $3 AND bundle_seq <= $4"                \
    "  ORDER BY bundle_seq LIMIT $5::bigint + 1) l) "                                                  \
    "SELECT b.n, b.bundle_seq, b.source_id, b.source_bundle_id, b.row_count, b.hash,"                   \
    " r.table_id, encode(r.key_bytes, 'hex'), r.op_code, r.payload_wire "                              \
    "FROM b LEFT JOIN LATERAL (SELECT row_ordinal, table_id, key_bytes, op_code, payload_wire"         \
    " FROM sync.bundle_rows WHERE user_pk = $1 AND bundle_seq = b.bundle_seq AND b.n <= $5"            \
    " ORDER BY row_ordinal) r ON true "                                                                \
    "ORDER BY b.bundle_seq, r.row_ordinal"

/* Writes the bundles of a page result into sb; false (logged) on a row the wire cannot carry. */
static bool write_page(const struct bundle_ctx *c, const PGresult *res, long long max, strbuf_t *sb, bool *has_more)
{
    int n = PQntuples(res);
    long long current = -1;   /* the open bundle's seq */
    bool first_row = true;
    sb_puts(sb, "\"bundles\":[");
    for (int i = 0; i < n; i++) {
        if (bq_int(res, i, 0) > max) {
            *has_more = true;
            break;
        }
        long long seq = bq_int(res, i, 1);
        if (seq != current) {
            if (current >= 0)
                sb_puts(sb, first_row ? "null}," : "]},");
            current = seq;
            first_row = true;
            sb_printf(sb, "{\"bundle_seq\":%lld,\"source_id\":", seq);
            bj_str(sb, PQgetvalue(res, i, 2));
            sb_printf(sb, ",\"source_bundle_id\":%lld", bq_int(res, i, 3));
            if (bq_int(res, i, 4) != 0)
                sb_printf(sb, ",\"row_count\":%lld", bq_int(res, i, 4));
            if (!PQgetisnull(res, i, 5) && *PQgetvalue(res, i, 5)) {
                sb_puts(sb, ",\"bundle_hash\":\"");
                sb_puts(sb, PQgetvalue(res, i, 5));
                sb_putc(sb, '"');
            }
            sb_puts(sb, ",\"rows\":");
        }
        if (PQgetisnull(res, i, 6))
            continue;   /* a bundle without rows: "rows":null, as Go writes a nil slice */
        int table_id = (int)bq_int(res, i, 6);
        const struct bundle_catalog_table *t = bundle_catalog_get(c->catalog, table_id);
        const char *op = bwire_op((int)bq_int(res, i, 8));
        sb_puts(sb, first_row ? "[{" : ",{");
        first_row = false;
        if (!t || !op || !bwire_row_head(sb, t, PQgetvalue(res, i, 7))) {
            log_error("request %s: pull_failed: bundle %lld of user %s holds a row the wire cannot carry "
                      "(table_id %d, op %s, key %s)",
                      c->request_id ? c->request_id : "-", seq, c->user, table_id, PQgetvalue(res, i, 8),
                      PQgetvalue(res, i, 7));
            return false;
        }
        sb_printf(sb, ",\"op\":\"%s\",\"row_version\":%lld", op, seq);
        if (!PQgetisnull(res, i, 9)) {
            sb_puts(sb, ",\"payload\":");
            bwire_raw(sb, PQgetvalue(res, i, 9), (size_t)PQgetlength(res, i, 9));
        }
        sb_putc(sb, '}');
    }
    if (current >= 0)
        sb_puts(sb, first_row ? "null}" : "]}");
    sb_putc(sb, ']');
    return true;
}

static void write_empty(struct bundle_reply *r, long long stable)
{
    sb_printf(&r->body, "{\"stable_bundle_seq\":%lld,\"bundles\":[],\"has_more\":false}", stable);
}

static enum btx pull_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct pull_state *st = ud;
    r->body.len = 0;
    struct scope s;
    bool exists;
    const PGresult *failed;
    if (!scope_read(c, &s, &exists, &failed))
        return btx_db_error(c, r, failed, PULL_FAILED);
    if (!scope_require_initialized(c, &s, r))
        return BTX_FAIL;

    const char *u[1] = { c->user };
    PGresult *res = bqp(c, "SELECT user_pk, next_bundle_seq, retained_bundle_floor FROM sync.user_state WHERE user_id = $1",
                        1, u);
    if (!bq_ok(res))
        return btx_db_error(c, r, res, PULL_FAILED);
    if (PQntuples(res) == 0) {
        write_empty(r, 0);
        return BTX_OK;
    }
    long long user_pk = bq_int(res, 0, 0), next = bq_int(res, 0, 1), floor = bq_int(res, 0, 2);
    if (!floor_ok(c, r, st->after, floor) || (st->target > 0 && !floor_ok(c, r, st->target, floor))) {
        st->pruned = true;
        return BTX_FAIL;
    }
    long long stable = st->target > 0 ? st->target : (next > 0 ? next - 1 : 0);
    if (!floor_ok(c, r, stable, floor)) {
        st->pruned = true;
        return BTX_FAIL;
    }
    if (st->after >= stable) {
        write_empty(r, stable);
        return BTX_OK;
    }

    char p_pk[24], p_after[24], p_floor[24], p_stable[24], p_max[24];
    snprintf(p_pk, sizeof p_pk, "%lld", user_pk);
    snprintf(p_after, sizeof p_after, "%lld", st->after);
    snprintf(p_floor, sizeof p_floor, "%lld", floor);
    snprintf(p_stable, sizeof p_stable, "%lld", stable);
    snprintf(p_max, sizeof p_max, "%lld", st->max);
    const char *p[5] = { p_pk, p_after, p_floor, p_stable, p_max };
    res = bqp(c, SQL_PULL_PAGE, 5, p);
    if (!bq_ok(res))
        return btx_db_error(c, r, res, PULL_FAILED);
    bool has_more = false;
    sb_reserve(&r->body, (size_t)PQntuples(res) * 160 + 64);
    sb_printf(&r->body, "{\"stable_bundle_seq\":%lld,", stable);
    if (!write_page(c, res, st->max, &r->body, &has_more)) {
        bundle_fail_internal(c, r, PULL_FAILED);
        return BTX_FAIL;
    }
    sb_printf(&r->body, ",\"has_more\":%s}", has_more ? "true" : "false");
    return BTX_OK;
}

/* A query value as the reference reads it: r.URL.Query().Get(name) != "" */
static bool given(const char *v)
{
    return v && *v;
}

void bundle_pull(const struct bundle_ctx *c, const char *after_bundle_seq, const char *max_bundles,
                 const char *target_bundle_seq, struct bundle_reply *r)
{
    struct pull_state st = { .after = 0, .max = c->cfg->default_bundles_per_pull, .target = 0 };
    if (given(after_bundle_seq)) {
        if (!bparse_int(after_bundle_seq, &st.after)) {
            bundle_fail(r, 400, "invalid_request", "after_bundle_seq must be an integer");
            return;
        }
        if (st.after < 0) {
            bundle_fail(r, 400, "invalid_request", "after_bundle_seq must be >= 0");
            return;
        }
    }
    if (given(max_bundles)) {
        if (!bparse_int(max_bundles, &st.max)) {
            bundle_fail(r, 400, "invalid_request", "max_bundles must be an integer");
            return;
        }
        if (st.max < 1 || st.max > c->cfg->max_bundles_per_pull) {
            bundle_fail(r, 400, "invalid_request", "max_bundles must be between 1 and %ld", c->cfg->max_bundles_per_pull);
            return;
        }
    }
    if (given(target_bundle_seq)) {
        if (!bparse_int(target_bundle_seq, &st.target)) {
            bundle_fail(r, 400, "invalid_request", "target_bundle_seq must be an integer");
            return;
        }
        if (st.target < 0) {
            bundle_fail(r, 400, "invalid_request", "target_bundle_seq must be >= 0");
            return;
        }
    }
    if (st.max > c->cfg->max_bundles_per_pull)   /* a default above the maximum */
        st.max = c->cfg->max_bundles_per_pull;
    if (st.max < 1)
        st.max = 1;
    if (btx_run(c, r, "ISOLATION LEVEL REPEATABLE READ READ ONLY", pull_tx, &st, PULL_FAILED)) {
        bundle_ok(r, 200);
        return;
    }
    if (st.pruned && r->error && strcmp(r->error, "history_pruned") == 0) {
        /* counted outside the transaction, as the reference does; a failure is only logged */
        PGresult *res = bq(c, "SELECT nextval('sync.history_pruned_error_seq')");
        if (!bq_ok(res))
            log_warn("request %s: failed to record history_pruned event: %s", c->request_id ? c->request_id : "-",
                     PQresultErrorMessage(res));
    }
}
