/* GET /sync/committed-bundles/{bundle_seq}/rows (SPEC-v2 §3.6): the rows of one of the user's
 * committed bundles, page by page, so that a client that pushed it can read back exactly what
 * the server committed and check bundle_hash over them. Ordinals are 0-based and
 * after_row_ordinal names the last row already held (§8.3). One statement: one snapshot. */
#include "push_internal.h"

#include <stdio.h>
#include <string.h>

#define ROWS_FAILED "committed_bundle_rows_failed", "Failed to fetch committed bundle rows"

void bundle_committed_rows(const struct bundle_ctx *c, const char *bundle_seq, const char *after_row_ordinal,
                           const char *max_rows, struct bundle_reply *r)
{
    const char *invalid = "committed_bundle_chunk_invalid";
    long long seq, after = -1, max = c->cfg->default_rows_per_committed_bundle_chunk;
    bool has_after = after_row_ordinal && *after_row_ordinal;
    if (!bparse_int(bundle_seq, &seq)) {
        bundle_fail(r, 400, invalid, "bundle_seq must be an integer");
        return;
    }
    if (has_after && !bparse_int(after_row_ordinal, &after)) {
        bundle_fail(r, 400, invalid, "after_row_ordinal must be an integer");
        return;
    }
    if (max_rows && *max_rows && !bparse_int(max_rows, &max)) {
        bundle_fail(r, 400, invalid, "max_rows must be an integer");
        return;
    }
    if (seq <= 0) {
        bundle_fail(r, 400, invalid, "bundle_seq must be > 0");
        return;
    }
    if (has_after && after < 0) {
        bundle_fail(r, 400, invalid, "after_row_ordinal must be >= 0");
        return;
    }
    if (max <= 0) {
        bundle_fail(r, 400, invalid, "max_rows must be > 0");
        return;
    }
    if (max > c->cfg->max_rows_per_committed_bundle_chunk)
        max = c->cfg->max_rows_per_committed_bundle_chunk;

    /* stored ordinals are 1-based: the row after "after" (0-based) is after + 2 */
    char seq_s[32], from_s[32], limit_s[32];
    snprintf(seq_s, sizeof seq_s, "%lld", seq);
    snprintf(from_s, sizeof from_s, "%lld", (has_after ? after : -1) + 1);
    snprintf(limit_s, sizeof limit_s, "%lld", max + 1);
    const char *p[4] = { c->user, seq_s, from_s, limit_s };
    PGresult *q = bqp(c,
                      "SELECT us.retained_bundle_floor, bl.bundle_seq, bl.source_id, bl.source_bundle_id, bl.row_count, "
                      "encode(bl.bundle_hash, 'hex'), br.table_id, encode(br.key_bytes, 'hex'), br.op_code, "
                      "br.payload_wire::text "
                      "FROM sync.user_state us "
                      "LEFT JOIN sync.bundle_log bl ON bl.user_pk = us.user_pk AND bl.bundle_seq = $2::bigint "
                      "LEFT JOIN LATERAL (SELECT b.row_ordinal, b.table_id, b.key_bytes, b.op_code, b.payload_wire "
                      "FROM sync.bundle_rows b WHERE b.user_pk = bl.user_pk AND b.bundle_seq = bl.bundle_seq "
                      "AND b.row_ordinal > $3::bigint ORDER BY b.row_ordinal LIMIT $4::bigint) br ON true "
                      "WHERE us.user_id = $1 ORDER BY br.row_ordinal",
                      4, p);
    if (!bq_ok(q)) {
        bundle_fail_db(c, r, q, ROWS_FAILED);
        return;
    }
    if (PQntuples(q) == 0) {
        /* the reference: "missing user_state row", an internal error */
        bundle_fail_internal(c, r, ROWS_FAILED);
        return;
    }
    long long floor = bq_int(q, 0, 0);
    if (seq <= floor) {
        bundle_fail(r, 409, "history_pruned", "requested checkpoint %lld is older than retained history floor %lld for user %s",
                    seq, floor, c->user);
        return;
    }
    if (PQgetisnull(q, 0, 1)) {
        bundle_fail(r, 404, "committed_bundle_not_found", "committed bundle %lld was not found", seq);
        return;
    }
    int n = PQgetisnull(q, 0, 6) ? 0 : PQntuples(q);
    bool has_more = n > max;
    if (has_more)
        n = (int)max;
    strbuf_t *b = &r->body;
    sb_printf(b, "{\"bundle_seq\":%lld,\"source_id\":", seq);
    bj_str(b, PQgetvalue(q, 0, 2));
    sb_printf(b, ",\"source_bundle_id\":%s,\"row_count\":%s,\"bundle_hash\":\"%s\",\"rows\":[", PQgetvalue(q, 0, 3),
              PQgetvalue(q, 0, 4), PQgetvalue(q, 0, 5));
    for (int i = 0; i < n; i++) {
        const struct bundle_catalog_table *t = bundle_catalog_get(c->catalog, (int)bq_int(q, i, 6));
        size_t key_len;
        const char *key = t ? push_key_text(c->arena, t->key_kind, PQgetvalue(q, i, 7), &key_len) : NULL;
        if (!key) {
            r->body.len = 0;
            bundle_fail_internal(c, r, ROWS_FAILED);
            return;
        }
        if (i)
            sb_putc(b, ',');
        sb_puts(b, "{\"schema\":");
        bj_str(b, t->schema);
        sb_puts(b, ",\"table\":");
        bj_str(b, t->table);
        sb_puts(b, ",\"key\":");
        push_key_json(b, t, key, key_len);
        sb_printf(b, ",\"op\":\"%s\",\"row_version\":%lld", push_op_name((int)bq_int(q, i, 8)), seq);
        if (!PQgetisnull(q, i, 9) && PQgetlength(q, i, 9) > 0) {
            sb_puts(b, ",\"payload\":");
            push_json_compact(b, PQgetvalue(q, i, 9), (size_t)PQgetlength(q, i, 9));
        }
        sb_putc(b, '}');
    }
    long long next = n == 0 ? (has_after ? after : 0) : (has_after ? after : -1) + n;
    sb_printf(b, "],\"next_row_ordinal\":%lld,\"has_more\":%s}", next, has_more ? "true" : "false");
    bundle_ok(r, 200);
}
