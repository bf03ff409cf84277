/* POST /sync/push-sessions/{push_id}/commit (SPEC-v2 §3.4, §4.3): the staged rows become one
 * committed bundle, or nothing does. In one transaction under the user's lock: the staged rows
 * are checked (count, contiguity, one row per target), the initialization lease and the
 * source's sequence re-checked, every row checked against sync.row_state (the first conflict
 * answers 409 push_conflict with the server's row), the rows applied to the business tables in
 * set-based batches (the triggers capture the effects, cascades and defaults included), and
 * the capture folded into the bundle by oversyncd.finalize_bundle (sql/bundle/0003_finalize.sql),
 * which numbers it, hashes it, writes bundle_log/bundle_rows/row_state and notifies watchers.
 * Deferred constraints fail the COMMIT: 500, nothing kept. */
#include "push_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../canonical_json.h"

#define COMMIT_FAILED "push_session_commit_failed", "Failed to commit push session"

/* A staged row, with the row_state of its target. */
struct staged {
    long long ordinal;
    const struct bundle_catalog_table *t;
    const char *hex;             /* key_bytes */
    const char *key;             /* the key as text */
    size_t key_len;
    int op;
    long long base;
    const char *payload;         /* canonical; NULL for DELETE */
    size_t payload_len;
    bool has_state;
    long long state_seq;
    bool state_deleted;
    char **cols;                 /* lower-cased payload keys, sorted bytewise */
    int ncols;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The payload's column list as the reference derives it (lower-cased keys, sorted). */
static bool payload_columns(arena_t *a, struct staged *s)
{
    struct json_span root, k, v;
    char err[64];
    if (!json_validate(s->payload, s->payload_len, &root, err, sizeof err) || root.type != JSON_OBJECT)
        return false;
    struct json_iter it;
    int n = 0;
    json_iter_init(&it, &root);
    while (json_iter_member(&it, &k, &v))
        n++;
    s->cols = arena_calloc(a, (size_t)n + 1, sizeof *s->cols);
    json_iter_init(&it, &root);
    for (int i = 0; json_iter_member(&it, &k, &v); i++) {
        char *name = json_string_dup(a, &k);
        for (char *p = name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        s->cols[i] = name;
    }
    s->ncols = n;
    qsort(s->cols, (size_t)n, sizeof *s->cols, cmp_str);
    return true;
}

static bool same_batch(const struct staged *a, const struct staged *b)
{
    if (a->t != b->t || a->op != b->op || a->ncols != b->ncols)
        return false;
    for (int i = 0; i < a->ncols; i++)
        if (strcmp(a->cols[i], b->cols[i]) != 0)
            return false;
    return true;
}

/* ------------------------------------------------------------------------- conflicts */

static void base64_std(strbuf_t *sb, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        sb_putc(sb, tab[v >> 18 & 63]);
        sb_putc(sb, tab[v >> 12 & 63]);
        sb_putc(sb, i + 1 < n ? tab[v >> 6 & 63] : '=');
        sb_putc(sb, i + 2 < n ? tab[v & 63] : '=');
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The wire form of a row read with to_jsonb(src) - '_sync_scope_id' (binary_wire.go
 * canonicalizeWirePayload): when a bytea column holds a value, the object with those values in
 * base64, canonical; otherwise the jsonb text as it is (jsonb's key order), compacted. */
static void wire_server_row(const struct bundle_ctx *c, const struct push_table_columns *tc, const char *text,
                            strbuf_t *out)
{
    size_t len = strlen(text);
    struct json_span root, k, v;
    char err[64];
    if (!json_validate(text, len, &root, err, sizeof err) || root.type != JSON_OBJECT) {
        push_json_compact(out, text, len);
        return;
    }
    strbuf_t obj = STRBUF_ARENA(c->arena);
    bool changed = false;
    struct json_iter it;
    json_iter_init(&it, &root);
    sb_putc(&obj, '{');
    for (bool first = true; json_iter_member(&it, &k, &v); first = false) {
        if (!first)
            sb_putc(&obj, ',');
        sb_append(&obj, k.start, k.len);
        sb_putc(&obj, ':');
        char *name = json_string_dup(c->arena, &k);
        for (char *p = name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        if (v.type != JSON_STRING || !push_is_bytea(tc, name)) {
            sb_append(&obj, v.start, v.len);
            continue;
        }
        const char *s = json_string_dup(c->arena, &v);
        size_t n = strlen(s);
        unsigned char *bytes = arena_alloc(c->arena, n / 2 + 1);
        size_t nb = 0;
        if (n >= 2 && s[0] == '\\' && (s[1] == 'x' || s[1] == 'X')) {
            for (size_t i = 2; i + 1 < n; i += 2)
                bytes[nb++] = (unsigned char)(hexval(s[i]) << 4 | hexval(s[i + 1]));
        } else if (!push_base64_std_decode(s, n, bytes = arena_alloc(c->arena, n / 4 * 3 + 4), &nb)) {
            sb_append(&obj, v.start, v.len);
            continue;
        }
        sb_putc(&obj, '"');
        base64_std(&obj, bytes, nb);
        sb_putc(&obj, '"');
        changed = true;
    }
    sb_putc(&obj, '}');
    if (changed && canonical_json(obj.data, obj.len, out, NULL, 0))
        return;
    push_json_compact(out, text, len);
}

static enum btx push_conflict(const struct bundle_ctx *c, struct bundle_reply *r, const struct staged *s,
                              bool with_state, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* 409 push_conflict for row s: message (after "<op> conflict on s.t KEY: "), with the server's
 * row when row_state says it is live. */
static enum btx push_conflict(const struct bundle_ctx *c, struct bundle_reply *r, const struct staged *s,
                              bool with_state, const char *fmt, ...)
{
    strbuf_t row = STRBUF_ARENA(c->arena);
    if (with_state && !s->state_deleted) {
        const PGresult *failed = NULL;
        const struct push_table_columns *bytea = push_bytea_columns(c, &failed);
        if (!bytea)
            return btx_db_error(c, r, failed, COMMIT_FAILED);
        char *sql = arena_printf(c->arena,
                                 "SELECT (to_jsonb(src) - '" BUNDLE_SCOPE_COLUMN "')::text FROM \"%s\".\"%s\" AS src "
                                 "WHERE \"%s\" = $1 AND \"" BUNDLE_SCOPE_COLUMN "\" = $2",
                                 s->t->schema, s->t->table, s->t->key_column);
        const char *p[2] = { s->key, c->user };
        PGresult *q = bqp(c, sql, 2, p);
        if (!bq_ok(q))
            return btx_db_error(c, r, q, COMMIT_FAILED);
        if (PQntuples(q) == 1 && !PQgetisnull(q, 0, 0))
            wire_server_row(c, &bytea[s->t->table_id - 1], PQgetvalue(q, 0, 0), &row);
    }
    char lower[8];
    snprintf(lower, sizeof lower, "%s", push_op_name(s->op));
    for (char *p = lower; *p; p++)
        *p = (char)(*p - 'A' + 'a');
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    char *msg = arena_printf(c->arena, "%s conflict on %s.%s %.*s: %s", lower, s->t->schema, s->t->table,
                             (int)s->key_len, s->key, detail);
    strbuf_t *b = &r->body;
    b->len = 0;
    sb_puts(b, "{\"error\":\"push_conflict\",\"message\":");
    bj_str(b, msg);
    sb_puts(b, ",\"conflict\":{\"schema\":");
    bj_str(b, s->t->schema);
    sb_puts(b, ",\"table\":");
    bj_str(b, s->t->table);
    sb_puts(b, ",\"key\":");
    push_key_json(b, s->t, s->key, s->key_len);
    sb_printf(b, ",\"op\":\"%s\",\"base_row_version\":%lld,\"server_row_version\":%lld,\"server_row_deleted\":%s,"
                 "\"server_row\":",
              push_op_name(s->op), s->base, with_state ? s->state_seq : 0,
              with_state && s->state_deleted ? "true" : "false");
    if (row.len)
        sb_append(b, row.data, row.len);
    else
        sb_puts(b, "null");
    sb_puts(b, "}}\n");
    r->status = 409;
    r->error = "push_conflict";
    return BTX_FAIL;
}

/* push.go validatePushRowConflict */
static enum btx check_conflict(const struct bundle_ctx *c, struct bundle_reply *r, const struct staged *s)
{
    if (s->op == PUSH_OP_INSERT) {
        if (!s->has_state) {
            if (s->base != 0)
                return push_conflict(c, r, s, false, "expected missing row at version 0, got %lld", s->base);
            return BTX_OK;
        }
        if (s->base != s->state_seq)
            return push_conflict(c, r, s, true, "expected base_row_version %lld, got %lld", s->state_seq, s->base);
        if (!s->state_deleted)
            return push_conflict(c, r, s, true, "row already exists at version %lld", s->state_seq);
        return BTX_OK;
    }
    if (!s->has_state || s->state_deleted)
        return push_conflict(c, r, s, s->has_state, "row does not exist");
    if (s->base != s->state_seq)
        return push_conflict(c, r, s, true, "expected version %lld, got %lld", s->state_seq, s->base);
    return BTX_OK;
}

/* ------------------------------------------------------------------------------ apply */

/* "s"."t": names are [a-z0-9_] (validated at start-up) */
static const char *table_ident(arena_t *a, const struct bundle_catalog_table *t)
{
    return arena_printf(a, "\"%s\".\"%s\"", t->schema, t->table);
}

/* Rows rows[from..to) share table, op and column set (push.go applyPreparedPushRowBatch). */
static enum btx apply_batch(const struct bundle_ctx *c, struct bundle_reply *r, const struct staged *rows, int from,
                            int to, const char *owner_json)
{
    const struct staged *first = &rows[from];
    arena_t *a = c->arena;
    const char *tbl = table_ident(a, first->t);
    PGresult *q;
    if (first->op == PUSH_OP_DELETE) {
        /* one statement per row, in order (the capture order is the bundle's order), sent as
         * one round trip */
        strbuf_t sql = STRBUF_ARENA(a);
        char *owner = PQescapeLiteral(c->conn, c->user, strlen(c->user));
        if (!owner)
            return btx_db_error(c, r, NULL, COMMIT_FAILED);
        for (int i = from; i < to; i++) {
            char *key = PQescapeLiteral(c->conn, rows[i].key, rows[i].key_len);
            if (!key) {
                PQfreemem(owner);
                return btx_db_error(c, r, NULL, COMMIT_FAILED);
            }
            sb_printf(&sql, "DELETE FROM %s WHERE \"%s\" = %s AND \"" BUNDLE_SCOPE_COLUMN "\" = %s;", tbl,
                      first->t->key_column, key, owner);
            PQfreemem(key);
        }
        PQfreemem(owner);
        q = bq(c, sb_cstr(&sql));
        if (!bq_ok(q))
            return btx_db_error(c, r, q, COMMIT_FAILED);
        return BTX_OK;
    }
    strbuf_t arr = STRBUF_ARENA(a);
    sb_putc(&arr, '[');
    for (int i = from; i < to; i++) {
        if (i > from)
            sb_putc(&arr, ',');
        const struct staged *s = &rows[i];
        if (first->op == PUSH_OP_INSERT) {
            /* the owner injected: the payload is canonical, so it ends with its closing brace */
            sb_append(&arr, s->payload, s->payload_len - 1);
            if (s->payload_len > 2)
                sb_putc(&arr, ',');
            sb_puts(&arr, "\"" BUNDLE_SCOPE_COLUMN "\":");
            sb_puts(&arr, owner_json);
            sb_putc(&arr, '}');
        } else {
            sb_append(&arr, s->payload, s->payload_len);
        }
    }
    sb_putc(&arr, ']');
    strbuf_t sql = STRBUF_ARENA(a);
    if (first->op == PUSH_OP_INSERT) {
        strbuf_t cols = STRBUF_ARENA(a);
        sb_puts(&cols, "\"" BUNDLE_SCOPE_COLUMN "\"");
        for (int k = 0; k < first->ncols; k++)
            sb_printf(&cols, ", \"%s\"", first->cols[k]);
        sb_printf(&sql, "INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1::jsonb)", tbl,
                  sb_cstr(&cols), sb_cstr(&cols), tbl);
        const char *p[1] = { sb_cstr(&arr) };
        q = bqp(c, sb_cstr(&sql), 1, p);
    } else {
        sb_printf(&sql, "UPDATE %s AS dst SET ", tbl);
        for (int k = 0; k < first->ncols; k++)
            sb_printf(&sql, "%s\"%s\" = src.\"%s\"", k ? ", " : "", first->cols[k], first->cols[k]);
        sb_printf(&sql,
                  " FROM jsonb_populate_recordset(NULL::%s, $1::jsonb) AS src WHERE dst.\"%s\" = src.\"%s\" "
                  "AND dst.\"" BUNDLE_SCOPE_COLUMN "\" = $2",
                  tbl, first->t->key_column, first->t->key_column);
        const char *p[2] = { sb_cstr(&arr), c->user };
        q = bqp(c, sb_cstr(&sql), 2, p);
    }
    if (!bq_ok(q))
        return btx_db_error(c, r, q, COMMIT_FAILED);
    return BTX_OK;
}

/* -------------------------------------------------------------------------- the commit */

struct commit_state {
    const char *push_id;
};

static enum btx load_staged(const struct bundle_ctx *c, struct bundle_reply *r, const struct push_session *s,
                            struct staged **out, int *n)
{
    char pk[32];
    snprintf(pk, sizeof pk, "%lld", s->user_pk);
    const char *p[2] = { s->push_id, pk };
    PGresult *q = bqp(c,
                      "SELECT r.row_ordinal, r.table_id, encode(r.key_bytes, 'hex'), r.op_code, r.base_bundle_seq, "
                      "r.payload_apply::text, rs.bundle_seq, rs.deleted "
                      "FROM sync.push_session_rows r LEFT JOIN sync.row_state rs ON rs.user_pk = $2 "
                      "AND rs.table_id = r.table_id AND rs.key_bytes = r.key_bytes "
                      "WHERE r.push_id = $1::uuid ORDER BY r.row_ordinal",
                      2, p);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, COMMIT_FAILED);
    *n = PQntuples(q);
    struct staged *rows = arena_calloc(c->arena, (size_t)*n + 1, sizeof *rows);
    for (int i = 0; i < *n; i++) {
        struct staged *st = &rows[i];
        st->ordinal = bq_int(q, i, 0);
        st->t = bundle_catalog_get(c->catalog, (int)bq_int(q, i, 1));
        st->hex = PQgetvalue(q, i, 2);
        st->op = (int)bq_int(q, i, 3);
        st->base = bq_int(q, i, 4);
        if (!st->t || !(st->key = push_key_text(c->arena, st->t->key_kind, st->hex, &st->key_len))) {
            bundle_fail_internal(c, r, COMMIT_FAILED);
            return BTX_FAIL;
        }
        if (st->op != PUSH_OP_DELETE) {
            if (PQgetisnull(q, i, 5)) {
                bundle_fail_internal(c, r, COMMIT_FAILED);
                return BTX_FAIL;
            }
            st->payload = PQgetvalue(q, i, 5);
            st->payload_len = (size_t)PQgetlength(q, i, 5);
            if (!payload_columns(c->arena, st)) {
                bundle_fail_internal(c, r, COMMIT_FAILED);
                return BTX_FAIL;
            }
        }
        st->has_state = !PQgetisnull(q, i, 6);
        st->state_seq = bq_int(q, i, 6);
        st->state_deleted = st->has_state && strcmp(PQgetvalue(q, i, 7), "t") == 0;
    }
    *out = rows;
    return BTX_OK;
}

/* A set of staged targets (table_id, key bytes). */
static bool target_seen(arena_t *a, const struct staged *rows, int n, int i, int **slots, size_t *cap)
{
    if (!*slots) {
        *cap = 16;
        while (*cap < 2 * (size_t)n)
            *cap *= 2;
        *slots = arena_alloc(a, *cap * sizeof **slots);
        for (size_t k = 0; k < *cap; k++)
            (*slots)[k] = -1;
    }
    unsigned long h = 1469598103934665603UL ^ (unsigned long)rows[i].t->table_id;
    for (const char *p = rows[i].hex; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211UL;
    for (size_t k = h & (*cap - 1);; k = (k + 1) & (*cap - 1)) {
        int j = (*slots)[k];
        if (j < 0) {
            (*slots)[k] = i;
            return false;
        }
        if (rows[j].t == rows[i].t && strcmp(rows[j].hex, rows[i].hex) == 0)
            return true;
    }
}

static enum btx commit_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct commit_state *cs = ud;
    r->body.len = 0;
    enum btx locked = btx_user_lock(c, r, COMMIT_FAILED);
    if (locked != BTX_OK)
        return locked;
    PGresult *q;
    struct push_session s;
    enum btx out = push_session_load(c, r, cs->push_id, &s, COMMIT_FAILED);
    if (out != BTX_OK)
        return out;

    struct staged *rows = NULL;
    int n = 0;
    if ((out = load_staged(c, r, &s, &rows, &n)) != BTX_OK)
        return out;
    if (s.next_expected_row_ordinal != s.planned_row_count || n != s.planned_row_count) {
        bundle_fail(r, 400, "push_commit_invalid", "staged row count %d does not match planned_row_count %lld", n,
                    s.planned_row_count);
        return BTX_FAIL;
    }
    int *slots = NULL;
    size_t cap = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].ordinal != i) {
            bundle_fail(r, 400, "push_commit_invalid", "staged rows are not contiguous at row_ordinal %d", i);
            return BTX_FAIL;
        }
        if (target_seen(c->arena, rows, n, i, &slots, &cap)) {
            bundle_fail(r, 400, "push_commit_invalid", "duplicate target row in staged push session: %s.%s %.*s",
                        rows[i].t->schema, rows[i].t->table, (int)rows[i].key_len, rows[i].key);
            return BTX_FAIL;
        }
    }

    if (*s.initialization_id && (out = scope_check_lease(c, r, s.source_id, s.initialization_id, COMMIT_FAILED)) != BTX_OK)
        return out;

    /* the source's sequence, locked */
    char pk[32], sbid[32];
    snprintf(pk, sizeof pk, "%lld", s.user_pk);
    snprintf(sbid, sizeof sbid, "%lld", s.source_bundle_id);
    const char *sp[2] = { pk, s.source_id };
    q = bqp(c,
            "SELECT state, max_committed_source_bundle_id, replaced_by_source_id FROM sync.source_state "
            "WHERE user_pk = $1 AND source_id = $2 FOR UPDATE",
            2, sp);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, COMMIT_FAILED);
    long long expected = 1;
    if (PQntuples(q) == 1) {
        if (strcmp(PQgetvalue(q, 0, 0), "retired") == 0) {
            bundle_fail_source_retired(c, r, s.source_id, PQgetvalue(q, 0, 2));
            return BTX_FAIL;
        }
        expected = bq_int(q, 0, 1) + 1;
    }
    if (s.source_bundle_id != expected) {
        bundle_fail(r, 409, "source_sequence_changed",
                    "source %s for user %s changed expected next source_bundle_id from staged %lld to %lld before commit",
                    s.source_id, c->user, s.source_bundle_id, expected);
        return BTX_FAIL;
    }

    /* deferred constraints, UTC payload timestamps (SPEC-v2 §8.10), the bundle context */
    strbuf_t setup = STRBUF_ARENA(c->arena);
    char *lit[3] = { PQescapeLiteral(c->conn, c->user, strlen(c->user)),
                     PQescapeLiteral(c->conn, s.source_id, strlen(s.source_id)),
                     PQescapeLiteral(c->conn, s.initialization_id, strlen(s.initialization_id)) };
    if (lit[0] && lit[1] && lit[2])
        sb_printf(&setup,
                  "SET CONSTRAINTS ALL DEFERRED; SET LOCAL TimeZone = 'UTC'; "
                  "SELECT set_config('" BUNDLE_GUC_USER_ID "', %s, true), set_config('" BUNDLE_GUC_USER_PK
                  "', '%s', true), set_config('" BUNDLE_GUC_SOURCE_ID "', %s, true), set_config('" BUNDLE_GUC_SOURCE_BUNDLE_ID
                  "', '%s', true), set_config('" BUNDLE_GUC_INITIALIZATION_ID "', %s, true)",
                  lit[0], pk, lit[1], sbid, lit[2]);
    for (int i = 0; i < 3; i++)
        if (lit[i])
            PQfreemem(lit[i]);
    if (!setup.len)
        return btx_db_error(c, r, NULL, COMMIT_FAILED);
    q = bq(c, sb_cstr(&setup));
    if (!bq_ok(q))
        return btx_db_error(c, r, q, COMMIT_FAILED);

    for (int i = 0; i < n; i++)
        if ((out = check_conflict(c, r, &rows[i])) != BTX_OK)
            return out;

    strbuf_t owner = STRBUF_ARENA(c->arena);
    bj_str(&owner, c->user);
    for (int from = 0; from < n;) {
        int to = from + 1;
        while (to < n && same_batch(&rows[from], &rows[to]))
            to++;
        if ((out = apply_batch(c, r, rows, from, to, sb_cstr(&owner))) != BTX_OK)
            return out;
        from = to;
    }

    const char *fp[4] = { pk, s.source_id, sbid, c->cfg->bundle_watch ? c->cfg->notify_channel : NULL };
    q = bqp(c,
            "SELECT bundle_seq, row_count, bundle_hash FROM oversyncd.finalize_bundle($1::bigint, $2, $3::bigint, $4)",
            4, fp);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, COMMIT_FAILED);
    if (PQntuples(q) == 0) {
        bundle_fail(r, 400, "push_commit_invalid", "push session produced no captured business-table effects");
        return BTX_FAIL;
    }
    sb_printf(&r->body, "{\"bundle_seq\":%s,\"source_id\":", PQgetvalue(q, 0, 0));
    bj_str(&r->body, s.source_id);
    sb_printf(&r->body, ",\"source_bundle_id\":%lld,\"row_count\":%s,\"bundle_hash\":\"%s\"}", s.source_bundle_id,
              PQgetvalue(q, 0, 1), PQgetvalue(q, 0, 2));

    /* the source active at this id, retention, the session gone, a seed commit initializes */
    char retained[32], batch[32];
    snprintf(retained, sizeof retained, "%ld", c->cfg->retained_bundles_per_user);
    snprintf(batch, sizeof batch, "%ld", c->cfg->retention_prune_batch);
    const char *pp[7] = { pk, s.source_id, sbid, s.push_id, retained, batch, *s.initialization_id ? "t" : "f" };
    q = bqp(c,
            "WITH d AS (DELETE FROM sync.push_sessions WHERE push_id = $4::uuid), "
            "i AS (UPDATE sync.scope_state SET state_code = 2, initializer_source_id = NULL, initialization_id = NULL, "
            "lease_expires_at = NULL, initialized_at = now(), initialized_by_source_id = $2 "
            "WHERE user_pk = $1 AND $7::boolean) "
            "SELECT oversyncd.activate_source($1::bigint, $2, $3::bigint), "
            "oversyncd.apply_retention($1::bigint, $5::bigint, $6::bigint)",
            7, pp);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, COMMIT_FAILED);
    return BTX_OK;
}

void bundle_push_commit(const struct bundle_ctx *c, const char *push_id, struct bundle_reply *r)
{
    struct commit_state cs = { push_id };
    if (btx_run(c, r, "ISOLATION LEVEL READ COMMITTED", commit_tx, &cs, COMMIT_FAILED))
        bundle_ok(r, 200);
}
