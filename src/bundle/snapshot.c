/* Snapshot sessions (SPEC-v2 §3.9–3.11, §4.2, §4.9): POST /sync/snapshot-sessions freezes the
 * caller's live rows (business rows checked one-to-one against live row_state, row_version from
 * row_state) into sync.snapshot_session_rows, optionally rotating the caller's source first; GET
 * /sync/snapshot-sessions/{id} pages through them by 1-based ordinal; DELETE drops a session.
 * The materialization is one set-based statement, each page one query over the primary key. */
#include "internal.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log.h"

#define CREATE_FAILED "snapshot_session_create_failed", "Failed to create snapshot session"
#define CHUNK_FAILED "snapshot_chunk_failed", "Failed to get snapshot chunk"
#define DELETE_FAILED "snapshot_session_delete_failed", "Failed to delete snapshot session"

static const char *rid(const struct bundle_ctx *c)
{
    return c->request_id ? c->request_id : "-";
}

/* ---------------------------------------------------------------- request body */

struct replacement {
    bool present;
    const char *previous, *next, *reason;
};

/* Length of a UTF-8 white-space rune (unicode.IsSpace) at s[0..n), 0 when none. */
static size_t space_at(const unsigned char *s, size_t n)
{
    if (n >= 1 && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')))
        return 1;
    if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0))
        return 2;
    if (n >= 3) {
        unsigned cp = (unsigned)(s[0] & 0x0F) << 12 | (unsigned)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        if ((s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
             cp == 0x205F || cp == 0x3000))
            return 3;
    }
    return 0;
}

/* Length of a white-space rune ending at s[n) (looking back), 0 when none. */
static size_t space_before(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (space_at(s + n - k, k) == k)
            return k;
    return 0;
}

/* Go's strings.TrimSpace, into the arena. */
static const char *trim_space(arena_t *arena, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), k;
    while ((k = space_at(p, n)) > 0) {
        p += k;
        n -= k;
    }
    while ((k = space_before(p, n)) > 0)
        n -= k;
    return arena_strndup(arena, (const char *)p, n);
}

/* The body as the reference's handler decodes it: nothing (or only white space) is no request;
 * otherwise one JSON value decoded with DisallowUnknownFields (here and inside
 * source_replacement), then a second Decode that must find either the end or one more complete
 * JSON value. false: 400 snapshot_session_invalid. */
static bool parse_body(arena_t *arena, const char *body, size_t len, struct replacement *out)
{
    memset(out, 0, sizeof *out);
    const char *end = body + len;
    const char *start = bjson_skip_ws(body, end);
    if (start == end)
        return true;
    const char *vend = bjson_value_end(start, end);
    if (!vend)
        return false;
    struct bfield top[] = { { .name = "source_replacement", .type = BF_OBJECT } };
    if (!bparse_object(arena, start, (size_t)(vend - start), top, 1, true))
        return false;
    const char *rest = bjson_skip_ws(vend, end);
    if (rest < end) {
        const char *rend = bjson_value_end(rest, end);
        struct json_span v;
        char err[64];
        if (!rend || !json_validate(rest, (size_t)(rend - rest), &v, err, sizeof err))
            return false;
    }
    if (!top[0].present)
        return true;
    struct bfield f[] = {
        { .name = "previous_source_id", .type = BF_STRING },
        { .name = "new_source_id", .type = BF_STRING },
        { .name = "reason", .type = BF_STRING },
    };
    if (!bparse_object(arena, top[0].span.start, top[0].span.len, f, 3, true))
        return false;
    out->present = true;
    out->previous = trim_space(arena, f[0].s);
    out->next = trim_space(arena, f[1].s);
    out->reason = trim_space(arena, f[2].s);
    return true;
}

/* ---------------------------------------------------------------- source replacement (§4.2) */

static bool reason_supported(const char *reason)
{
    static const char *const ok[] = { "history_pruned", "source_sequence_out_of_order", "source_sequence_changed",
                                      "source_retired" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(reason, ok[i]) == 0)
            return true;
    return false;
}

struct source_row {
    bool exists;
    const char *state;
    const char *replaced_by;
};

static bool load_source(const struct bundle_ctx *c, const char *pk, const char *source, struct source_row *row,
                        const PGresult **failed)
{
    const char *p[2] = { pk, source };
    PGresult *res = bqp(c,
                        "SELECT state, replaced_by_source_id FROM sync.source_state "
                        "WHERE user_pk = $1 AND source_id = $2 FOR UPDATE",
                        2, p);
    if (!bq_ok(res)) {
        *failed = res;
        return false;
    }
    row->exists = PQntuples(res) == 1;
    row->state = row->exists ? PQgetvalue(res, 0, 0) : "";
    row->replaced_by = row->exists ? PQgetvalue(res, 0, 1) : "";
    return true;
}

static enum btx apply_replacement(const struct bundle_ctx *c, struct bundle_reply *r, const char *pk,
                                  const struct replacement *rp)
{
    if (strcmp(rp->previous, c->source) != 0) {
        bundle_fail(r, 400, "snapshot_session_invalid", "previous_source_id must match authenticated source_id");
        return BTX_FAIL;
    }
    if (!*rp->next) {
        bundle_fail(r, 400, "snapshot_session_invalid", "new_source_id is required for source replacement");
        return BTX_FAIL;
    }
    if (strcmp(rp->next, rp->previous) == 0) {
        bundle_fail(r, 400, "snapshot_session_invalid", "new_source_id must differ from previous_source_id");
        return BTX_FAIL;
    }
    if (!reason_supported(rp->reason)) {
        bundle_fail(r, 400, "snapshot_session_invalid", "source replacement reason is unsupported");
        return BTX_FAIL;
    }
    struct source_row prev, next;
    const PGresult *failed;
    if (!load_source(c, pk, rp->previous, &prev, &failed) || !load_source(c, pk, rp->next, &next, &failed))
        return btx_db_error(c, r, failed, CREATE_FAILED);

    bool reserve = false, retire = false;
    if (prev.exists && strcmp(prev.state, "retired") == 0) {
        /* a retry of the same rotation: the replacement may already be reserved or in use */
        if (strcmp(prev.replaced_by, rp->next) != 0) {
            bundle_fail_source_retired(c, r, rp->previous, prev.replaced_by);
            return BTX_FAIL;
        }
        if (!next.exists) {
            reserve = true;
        } else if (strcmp(next.state, "reserved") != 0 && strcmp(next.state, "active") != 0) {
            bundle_fail(r, 409, "source_replacement_invalid", "replacement source %s is not available for rotated rebuild",
                        rp->next);
            return BTX_FAIL;
        }
    } else {
        if (next.exists) {
            bundle_fail(r, 409, "source_replacement_invalid", "replacement source %s is already known for user %s",
                        rp->next, c->user);
            return BTX_FAIL;
        }
        reserve = retire = true;
    }
    if (reserve) {
        const char *p[2] = { pk, rp->next };
        PGresult *res = bqp(c,
                            "INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id, "
                            "replaced_by_source_id, retirement_reason) VALUES ($1, $2, 'reserved', 0, '', '')",
                            2, p);
        if (!bq_ok(res))
            return btx_db_error(c, r, res, CREATE_FAILED);
    }
    if (retire) {
        const char *p[4] = { pk, rp->previous, rp->next, rp->reason };
        PGresult *res = bqp(c,
                            "INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id, "
                            "replaced_by_source_id, retirement_reason) VALUES ($1, $2, 'retired', 0, $3, $4) "
                            "ON CONFLICT (user_pk, source_id) DO UPDATE SET state = EXCLUDED.state, "
                            "replaced_by_source_id = EXCLUDED.replaced_by_source_id, "
                            "retirement_reason = EXCLUDED.retirement_reason",
                            4, p);
        if (!bq_ok(res))
            return btx_db_error(c, r, res, CREATE_FAILED);
    }
    return BTX_OK;
}

/* ---------------------------------------------------------------- materialization (§4.9) */

/* The registered tables' bytea columns, "schema.table" -> columns, from the catalog of the
 * database (a payload holding a non-null one is re-serialized canonically with base64, as the
 * reference's canonicalizeWirePayload does; any other payload keeps to_jsonb's text). */
static PGresult *bytea_columns(const struct bundle_ctx *c)
{
    return bq(c,
              "SELECT n.nspname || '.' || cl.relname, a.attname FROM pg_attribute a "
              "JOIN pg_class cl ON cl.oid = a.attrelid JOIN pg_namespace n ON n.oid = cl.relnamespace "
              "JOIN sync.table_catalog t ON t.schema_name = n.nspname AND t.table_name = cl.relname "
              "WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypid = 'bytea'::regtype "
              "AND a.attname <> '_sync_scope_id' ORDER BY 1, a.attnum");
}

/* One arm of the union of live business rows: (table_id, key_bytes, payload text). */
static void business_arm(strbuf_t *sql, const struct bundle_catalog_table *t, const PGresult *bytea)
{
    char name[2 * BUNDLE_NAME_MAX + 2];
    snprintf(name, sizeof name, "%s.%s", t->schema, t->table);
    if (t->table_id > 1)
        sb_puts(sql, " UNION ALL ");
    sb_printf(sql, "SELECT %d AS table_id, ", t->table_id);
    if (t->key_kind == BUNDLE_KEY_UUID)
        sb_printf(sql, "uuid_send(src.\"%s\")", t->key_column);
    else
        sb_printf(sql, "convert_to(src.\"%s\"::text, 'UTF8')", t->key_column);
    sb_puts(sql, " AS key_bytes, ");
    int first = -1, count = 0;
    for (int i = 0; i < PQntuples(bytea); i++)
        if (strcmp(PQgetvalue(bytea, i, 0), name) == 0) {
            if (first < 0)
                first = i;
            count++;
        }
    if (!count) {
        sb_puts(sql, "(to_jsonb(src) - '_sync_scope_id')::text");
    } else {
        sb_puts(sql, "CASE WHEN ");
        for (int i = first; i < first + count; i++)
            sb_printf(sql, "%ssrc.\"%s\" IS NULL", i > first ? " AND " : "", PQgetvalue(bytea, i, 1));
        sb_puts(sql, " THEN (to_jsonb(src) - '_sync_scope_id')::text ELSE oversyncd.canonical_json("
                     "(to_jsonb(src) - '_sync_scope_id') || jsonb_build_object(");
        for (int i = first; i < first + count; i++)
            sb_printf(sql, "%s'%s', translate(encode(src.\"%s\", 'base64'), E'\\n', '')", i > first ? ", " : "",
                      PQgetvalue(bytea, i, 1), PQgetvalue(bytea, i, 1));
        sb_puts(sql, ")) END");
    }
    sb_printf(sql, " AS payload FROM \"%s\".\"%s\" src WHERE src._sync_scope_id = $1", t->schema, t->table);
}

/* The whole materialization in one statement: business rows FULL JOIN live row_state; when they
 * match one-to-one and the limits hold, the session and its rows (ordinals 1...N in (table_id,
 * key_bytes) order) are inserted. $1 user, $2 user_pk, $3 snapshot_bundle_seq, $4 row limit, $5
 * byte limit (0 = none), $6 TTL in ms. Returns n, mismatches, bytes, snapshot_id, expires_at,
 * rows inserted, and the first mismatch described. */
static void materialize_sql(const struct bundle_ctx *c, const PGresult *bytea, strbuf_t *sql)
{
    sb_puts(sql, "WITH biz AS MATERIALIZED (");
    for (int i = 0; i < c->catalog->n_tables; i++)
        business_arm(sql, &c->catalog->tables[i], bytea);
    if (!c->catalog->n_tables)
        sb_puts(sql, "SELECT 0 AS table_id, ''::bytea AS key_bytes, ''::text AS payload WHERE false");
    sb_puts(sql,
            "), live AS MATERIALIZED (SELECT table_id, key_bytes, bundle_seq FROM sync.row_state "
            " WHERE user_pk = $2 AND deleted = false), "
            "j AS MATERIALIZED (SELECT coalesce(b.table_id, l.table_id) AS table_id, "
            " coalesce(b.key_bytes, l.key_bytes) AS key_bytes, b.payload, l.bundle_seq, "
            " b.table_id IS NOT NULL AND l.table_id IS NOT NULL AS matched, b.table_id IS NULL AS no_row "
            " FROM biz b FULL JOIN live l ON l.table_id = b.table_id AND l.key_bytes = b.key_bytes), "
            "stats AS MATERIALIZED (SELECT count(*) FILTER (WHERE matched) AS n, "
            " count(*) FILTER (WHERE NOT matched) AS bad, "
            " coalesce(sum(octet_length(payload)) FILTER (WHERE matched), 0) AS bytes FROM j), "
            "ok AS MATERIALIZED (SELECT gen_random_uuid() AS snapshot_id, "
            " clock_timestamp() + $6::bigint * interval '1 ms' AS expires_at FROM stats "
            " WHERE bad = 0 AND ($4::bigint <= 0 OR n <= $4::bigint) AND ($5::bigint <= 0 OR bytes <= $5::bigint)), "
            "sess AS (INSERT INTO sync.snapshot_sessions (snapshot_id, user_pk, snapshot_bundle_seq, row_count, "
            " byte_count, expires_at) SELECT ok.snapshot_id, $2, $3, stats.n, stats.bytes, ok.expires_at "
            " FROM ok, stats RETURNING 1), "
            "ins AS (INSERT INTO sync.snapshot_session_rows (snapshot_id, row_ordinal, table_id, key_bytes, "
            " bundle_seq, payload_wire) SELECT ok.snapshot_id, row_number() OVER (ORDER BY j.table_id, j.key_bytes), "
            " j.table_id, j.key_bytes, j.bundle_seq, j.payload::json FROM j, ok WHERE j.matched RETURNING 1) "
            "SELECT stats.n, stats.bad, stats.bytes, (SELECT snapshot_id::text FROM ok), "
            " (SELECT " SQL_RFC3339("expires_at") " FROM ok), (SELECT count(*) FROM sess), (SELECT count(*) FROM ins), "
            " (SELECT CASE WHEN no_row THEN 'sync.row_state row table_id ' || table_id || ' key ' || "
            "  encode(key_bytes, 'hex') || ' is missing a live business-table row' "
            "  ELSE 'live row table_id ' || table_id || ' key ' || encode(key_bytes, 'hex') || "
            "  ' is missing non-deleted sync.row_state' END FROM j WHERE NOT matched "
            "  ORDER BY table_id, key_bytes LIMIT 1) "
            "FROM stats");
}

struct create_state {
    struct replacement rp;
};

static enum btx create_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct create_state *st = ud;
    r->body.len = 0;
    PGresult *res = bq(c, "DELETE FROM sync.snapshot_sessions WHERE expires_at <= now()");
    if (!bq_ok(res))
        return btx_db_error(c, r, res, CREATE_FAILED);
    struct scope s;
    bool exists;
    const PGresult *failed;
    if (!scope_read(c, &s, &exists, &failed))
        return btx_db_error(c, r, failed, CREATE_FAILED);
    if (!scope_require_initialized(c, &s, r))
        return BTX_FAIL;
    const char *u[1] = { c->user };
    res = bqp(c, "SELECT user_pk, next_bundle_seq FROM sync.user_state WHERE user_id = $1", 1, u);
    if (!bq_ok(res))
        return btx_db_error(c, r, res, CREATE_FAILED);
    if (PQntuples(res) != 1) {
        log_error("request %s: snapshot_session_create_failed: missing retained history state for %s", rid(c), c->user);
        bundle_fail_internal(c, r, CREATE_FAILED);
        return BTX_FAIL;
    }
    char pk[24], seq[24], max_rows[24], max_bytes[24], ttl[24];
    snprintf(pk, sizeof pk, "%s", PQgetvalue(res, 0, 0));
    long long next = bq_int(res, 0, 1);
    snprintf(seq, sizeof seq, "%lld", next > 0 ? next - 1 : 0);
    if (st->rp.present) {
        enum btx out = apply_replacement(c, r, pk, &st->rp);
        if (out != BTX_OK)
            return out;
    }

    PGresult *bytea = bytea_columns(c);
    if (!bq_ok(bytea))
        return btx_db_error(c, r, bytea, CREATE_FAILED);
    strbuf_t sql = STRBUF_ARENA(c->arena);
    materialize_sql(c, bytea, &sql);
    snprintf(max_rows, sizeof max_rows, "%ld", c->cfg->max_rows_per_snapshot_session);
    snprintf(max_bytes, sizeof max_bytes, "%ld", c->cfg->max_bytes_per_snapshot_session);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg->snapshot_session_ttl_ms);
    const char *p[6] = { c->user, pk, seq, max_rows, max_bytes, ttl };
    res = bqp(c, sb_cstr(&sql), 6, p);
    if (!bq_ok(res) || PQntuples(res) != 1)
        return btx_db_error(c, r, res, CREATE_FAILED);
    long long n = bq_int(res, 0, 0), bad = bq_int(res, 0, 1), bytes = bq_int(res, 0, 2);
    if (bad) {
        log_error("request %s: snapshot_session_create_failed: user %s: %s (%lld mismatches)", rid(c), c->user,
                  PQgetvalue(res, 0, 7), bad);
        bundle_fail_internal(c, r, CREATE_FAILED);
        return BTX_FAIL;
    }
    if (PQgetisnull(res, 0, 3)) {
        const char *dim = c->cfg->max_rows_per_snapshot_session > 0 && n > c->cfg->max_rows_per_snapshot_session
                              ? "row_count" : "byte_count";
        bool rows = *dim == 'r';
        log_error("request %s: snapshot_session_create_failed: user %s: snapshot session %s %lld exceeds limit %ld",
                  rid(c), c->user, dim, rows ? n : bytes,
                  rows ? c->cfg->max_rows_per_snapshot_session : c->cfg->max_bytes_per_snapshot_session);
        bundle_fail_internal(c, r, CREATE_FAILED);
        return BTX_FAIL;
    }
    if (bq_int(res, 0, 5) != 1 || bq_int(res, 0, 6) != n) {
        log_error("request %s: snapshot_session_create_failed: user %s: inserted %s session(s), %s of %lld rows",
                  rid(c), c->user, PQgetvalue(res, 0, 5), PQgetvalue(res, 0, 6), n);
        bundle_fail_internal(c, r, CREATE_FAILED);
        return BTX_FAIL;
    }
    sb_puts(&r->body, "{\"snapshot_id\":");
    bj_str(&r->body, PQgetvalue(res, 0, 3));
    sb_printf(&r->body, ",\"snapshot_bundle_seq\":%s,\"row_count\":%lld", seq, n);
    if (bytes)
        sb_printf(&r->body, ",\"byte_count\":%lld", bytes);
    sb_puts(&r->body, ",\"expires_at\":");
    bj_str(&r->body, PQgetvalue(res, 0, 4));
    sb_putc(&r->body, '}');
    return BTX_OK;
}

void bundle_snapshot_create(const struct bundle_ctx *c, const char *body, size_t len, struct bundle_reply *r)
{
    struct create_state st;
    if (!parse_body(c->arena, body ? body : "", body ? len : 0, &st.rp)) {
        bundle_fail(r, 400, "snapshot_session_invalid", "Failed to parse snapshot session request");
        return;
    }
    if (btx_run(c, r, "ISOLATION LEVEL REPEATABLE READ", create_tx, &st, CREATE_FAILED))
        bundle_ok(r, 200);
}

/* ---------------------------------------------------------------- chunks */

/* The session and one page of its rows in one statement (one snapshot, as the reference's
 * repeatable-read transaction): no line when the session is unknown; row columns NULL when the
 * session is another user's or has expired, or the page is empty. $1 id, $2 after, $3 max, $4 user. */
#define SQL_CHUNK                                                                                       \
    "SELECT us.user_id, ss.snapshot_bundle_seq, now() > ss.expires_at, r.row_ordinal, r.table_id, "    \
    " encode(r.key_bytes, 'hex'), r.bundle_seq, r.payload_wire "                                       \
    "FROM sync.snapshot_sessions ss JOIN sync.user_state us ON us.user_pk = ss.user_pk "               \
    "LEFT JOIN LATERAL (SELECT row_ordinal, table_id, key_bytes, bundle_seq, payload_wire "            \
    " FROM sync.snapshot_session_rows WHERE snapshot_id = ss.snapshot_id AND row_ordinal > $2::bigint " \
    " AND us.user_id = $4 AND now() <= ss.expires_at ORDER BY row_ordinal LIMIT $3::bigint + 1) r ON true " \
    "WHERE ss.snapshot_id = $1::uuid ORDER BY r.row_ordinal"

static bool given(const char *v)
{
    return v && *v;
}

/* The session row of res (its user in column 0) exists and is the caller's; else the reply is
 * set: 404 snapshot_session_not_found or 403 snapshot_session_forbidden. */
static bool session_is_callers(const struct bundle_ctx *c, struct bundle_reply *r, const PGresult *res,
                               const char *snapshot_id)
{
    if (PQntuples(res) == 0) {
        bundle_fail(r, 404, "snapshot_session_not_found", "snapshot session %s was not found", snapshot_id);
        return false;
    }
    if (strcmp(PQgetvalue(res, 0, 0), c->user) != 0) {
        bundle_fail(r, 403, "snapshot_session_forbidden", "snapshot session %s does not belong to the authenticated user",
                    snapshot_id);
        return false;
    }
    return true;
}

void bundle_snapshot_chunk(const struct bundle_ctx *c, const char *snapshot_id, const char *after_row_ordinal,
                           const char *max_rows, struct bundle_reply *r)
{
    long long after = 0, max = c->cfg->default_rows_per_snapshot_chunk;
    if (given(after_row_ordinal) && !bparse_int(after_row_ordinal, &after)) {
        bundle_fail(r, 400, "snapshot_chunk_invalid", "after_row_ordinal must be an integer");
        return;
    }
    if (given(max_rows) && !bparse_int(max_rows, &max)) {
        bundle_fail(r, 400, "snapshot_chunk_invalid", "max_rows must be an integer");
        return;
    }
    if (!snapshot_id || !*snapshot_id) {
        bundle_fail(r, 400, "snapshot_chunk_invalid", "snapshot_id must be provided");
        return;
    }
    if (after < 0) {
        bundle_fail(r, 400, "snapshot_chunk_invalid", "after_row_ordinal must be >= 0");
        return;
    }
    if (max <= 0) {
        bundle_fail(r, 400, "snapshot_chunk_invalid", "max_rows must be > 0");
        return;
    }
    if (max > c->cfg->max_rows_per_snapshot_chunk)
        max = c->cfg->max_rows_per_snapshot_chunk;

    char p_after[24], p_max[24];
    snprintf(p_after, sizeof p_after, "%lld", after);
    snprintf(p_max, sizeof p_max, "%lld", max);
    const char *p[4] = { snapshot_id, p_after, p_max, c->user };
    PGresult *res = bqp(c, SQL_CHUNK, 4, p);
    if (!bq_ok(res)) {
        bundle_fail_db(c, r, res, CHUNK_FAILED);
        return;
    }
    if (!session_is_callers(c, r, res, snapshot_id))
        return;
    if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
        bundle_fail(r, 410, "snapshot_session_expired", "snapshot session %s has expired; start a new snapshot session",
                    snapshot_id);
        return;
    }
    int n = PQntuples(res);
    if (n == 1 && PQgetisnull(res, 0, 3))
        n = 0;
    bool has_more = n > max;
    if (has_more)
        n = (int)max;
    strbuf_t *sb = &r->body;
    sb_reserve(sb, (size_t)n * 200 + 128);
    sb_puts(sb, "{\"snapshot_id\":");
    bj_str(sb, snapshot_id);
    sb_printf(sb, ",\"snapshot_bundle_seq\":%s,\"rows\":[", PQgetvalue(res, 0, 1));
    for (int i = 0; i < n; i++) {
        int table_id = (int)bq_int(res, i, 4);
        const struct bundle_catalog_table *t = bundle_catalog_get(c->catalog, table_id);
        sb_puts(sb, i ? ",{" : "{");
        if (!t || !bwire_row_head(sb, t, PQgetvalue(res, i, 5))) {
            log_error("request %s: snapshot_chunk_failed: snapshot %s row %s holds a row the wire cannot carry "
                      "(table_id %d, key %s)",
                      rid(c), snapshot_id, PQgetvalue(res, i, 3), table_id, PQgetvalue(res, i, 5));
            bundle_fail_internal(c, r, CHUNK_FAILED);
            return;
        }
        sb_printf(sb, ",\"row_version\":%s,\"payload\":", PQgetvalue(res, i, 6));
        bwire_raw(sb, PQgetvalue(res, i, 7), (size_t)PQgetlength(res, i, 7));
        sb_putc(sb, '}');
    }
    sb_printf(sb, "],\"next_row_ordinal\":%lld,\"has_more\":%s}", after + n, has_more ? "true" : "false");
    bundle_ok(r, 200);
}

/* ---------------------------------------------------------------- delete */

void bundle_snapshot_delete(const struct bundle_ctx *c, const char *snapshot_id, struct bundle_reply *r)
{
    if (!snapshot_id || !*snapshot_id) {
        bundle_fail(r, 400, "snapshot_chunk_invalid", "snapshot_id must be provided");
        return;
    }
    const char *p[2] = { snapshot_id, c->user };
    PGresult *res = bqp(c,
                        "WITH s AS (SELECT ss.snapshot_id, us.user_id FROM sync.snapshot_sessions ss "
                        " JOIN sync.user_state us ON us.user_pk = ss.user_pk WHERE ss.snapshot_id = $1::uuid), "
                        "d AS (DELETE FROM sync.snapshot_sessions x USING s "
                        " WHERE x.snapshot_id = s.snapshot_id AND s.user_id = $2 RETURNING 1) "
                        "SELECT s.user_id, (SELECT count(*) FROM d) FROM s",
                        2, p);
    if (!bq_ok(res)) {
        bundle_fail_db(c, r, res, DELETE_FAILED);
        return;
    }
    if (!session_is_callers(c, r, res, snapshot_id))
        return;
    r->body.len = 0;
    r->status = 204;
    r->error = NULL;
}
