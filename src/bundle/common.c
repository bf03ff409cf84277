/* Replies, request decoding, transactions and the scope lifecycle shared by the bundle endpoints
 * (internal.h). */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../canonical_json.h"
#include "../db/db.h"
#include "../log.h"

/* ---------------------------------------------------------------- replies */

void bundle_reply_init(struct bundle_reply *r, arena_t *arena)
{
    memset(r, 0, sizeof *r);
    r->body = (strbuf_t)STRBUF_ARENA(arena);
}

void bj_str(strbuf_t *sb, const char *s)
{
    canonical_json_string(sb, s, strlen(s));
}

void bundle_ok(struct bundle_reply *r, int status)
{
    r->status = status;
    r->error = NULL;
    if (r->body.len)
        sb_putc(&r->body, '\n');
}

void bundle_fail(struct bundle_reply *r, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->body.len = 0;
    sb_puts(&r->body, "{\"error\":");
    bj_str(&r->body, code);
    sb_puts(&r->body, ",\"message\":");
    bj_str(&r->body, msg);
    sb_puts(&r->body, "}\n");
    r->status = status;
    r->error = code;
}

static bool connection_gone(const struct bundle_ctx *c)
{
    return PQstatus(c->conn) != CONNECTION_OK;
}

void bundle_fail_internal(const struct bundle_ctx *c, struct bundle_reply *r, const char *code, const char *message)
{
    if (connection_gone(c)) {
        r->connection_lost = true;
        bundle_fail(r, 503, "service_unavailable", "the database connection was lost; retry later");
        return;
    }
    bundle_fail(r, 500, code, "%s", message);
}

void bundle_fail_db(const struct bundle_ctx *c, struct bundle_reply *r, const PGresult *res, const char *code,
                    const char *message)
{
    const char *pg = res ? PQresultErrorMessage(res) : NULL;
    if (!pg || !*pg)
        pg = PQerrorMessage(c->conn);
    char line[512];
    snprintf(line, sizeof line, "%s", pg ? pg : "");
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    log_error("request %s: %s: %s", c->request_id ? c->request_id : "-", code, line);
    if (res && bq_retryable(res)) {
        bundle_fail(r, 503, "service_unavailable", "the database is busy; retry later");
        return;
    }
    bundle_fail_internal(c, r, code, message);
}

void bundle_fail_source_retired(const struct bundle_ctx *c, struct bundle_reply *r, const char *source_id,
                                const char *replaced_by)
{
    bool replaced = false;
    for (const char *p = replaced_by; *p; p++)
        if (!isspace((unsigned char)*p))
            replaced = true;
    char msg[1024];
    if (replaced)
        snprintf(msg, sizeof msg, "source %s for user %s was retired and replaced by %s", source_id, c->user,
                 replaced_by);
    else
        snprintf(msg, sizeof msg, "source %s for user %s was retired", source_id, c->user);
    r->body.len = 0;
    sb_puts(&r->body, "{\"error\":\"source_retired\",\"message\":");
    bj_str(&r->body, msg);
    sb_puts(&r->body, ",\"source_id\":");
    bj_str(&r->body, source_id);
    if (*replaced_by) {
        sb_puts(&r->body, ",\"replaced_by_source_id\":");
        bj_str(&r->body, replaced_by);
    }
    sb_puts(&r->body, "}\n");
    r->status = 409;
    r->error = "source_retired";
}

/* ---------------------------------------------------------------- request bodies */

const char *bjson_skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the JSON value starting at p (only its extent: json_validate checks it), NULL when
 * the text ends inside it. */
const char *bjson_value_end(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '{' || *p == '[' || *p == '"') {
        int depth = 0;
        bool in_str = false;
        for (; p < end; p++) {
            if (in_str) {
                if (*p == '\\')
                    p++;
                else if (*p == '"') {
                    in_str = false;
                    if (depth == 0)
                        return p + 1;
                }
                continue;
            }
            if (*p == '"')
                in_str = true;
            else if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth <= 0)
                return p + 1;
        }
        return NULL;
    }
    const char *q = p;
    while (q < end && !strchr(" \t\r\n,:]}{[\"", *q))
        q++;
    return q == p ? p + 1 : q;
}

bool bparse_object(arena_t *arena, const char *body, size_t len, struct bfield *fields, int n, bool strict)
{
    for (int i = 0; i < n; i++) {
        fields[i].present = false;
        fields[i].b = false;
        fields[i].i = 0;
        fields[i].s = "";
        memset(&fields[i].span, 0, sizeof fields[i].span);
    }
    const char *end = body + len;
    const char *start = bjson_skip_ws(body, end);
    const char *vend = bjson_value_end(start, end);
    if (!vend)
        return false;
    if (strict && bjson_skip_ws(vend, end) != end)
        return false;
    struct json_span root, k, v;
    char err[128];
    if (!json_validate(start, (size_t)(vend - start), &root, err, sizeof err))
        return false;
    if (root.type == JSON_NULL)
        return true;
    if (root.type != JSON_OBJECT)
        return false;
    struct json_iter it;
    json_iter_init(&it, &root);
    while (json_iter_member(&it, &k, &v)) {
        char *key = json_string_dup(arena, &k);
        struct bfield *f = NULL;
        for (int i = 0; i < n && !f; i++)
            if (strcasecmp(fields[i].name, key) == 0)
                f = &fields[i];
        if (!f) {
            if (strict)
                return false;
            continue;
        }
        if (v.type == JSON_NULL)
            continue;   /* Go leaves the field as it was */
        f->span = v;
        switch (f->type) {
        case BF_BOOL:
            if (v.type != JSON_TRUE && v.type != JSON_FALSE)
                return false;
            f->b = v.type == JSON_TRUE;
            break;
        case BF_INT64:
            if (v.type != JSON_NUMBER || !json_int64(&v, &f->i))
                return false;
            break;
        case BF_STRING:
            if (v.type != JSON_STRING)
                return false;
            f->s = json_string_dup(arena, &v);
            break;
        case BF_OBJECT:
            if (v.type != JSON_OBJECT)
                return false;
            break;
        case BF_ARRAY:
            if (v.type != JSON_ARRAY)
                return false;
            break;
        case BF_RAW:
            break;
        }
        f->present = true;
    }
    return true;
}

bool bparse_int(const char *s, long long *out)
{
    if (!s || !*s)
        return false;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p || strspn(p, "0123456789") != strlen(p))
        return false;
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (errno == ERANGE || *e)
        return false;
    *out = v;
    return true;
}

/* ---------------------------------------------------------------- queries */

PGresult *bq(const struct bundle_ctx *c, const char *sql)
{
    return db_result_in(c->arena, PQexec(c->conn, sql));
}

PGresult *bqp(const struct bundle_ctx *c, const char *sql, int n, const char *const *params)
{
    return db_result_in(c->arena, PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0));
}

bool bq_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

bool bq_retryable(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0);
}

long long bq_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

const char *bq_str(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* ---------------------------------------------------------------- transactions */

enum btx btx_db_error(const struct bundle_ctx *c, struct bundle_reply *r, const PGresult *res, const char *code,
                      const char *message)
{
    if (bq_retryable(res))
        return BTX_RETRY;
    bundle_fail_db(c, r, res, code, message);
    return BTX_FAIL;
}

enum btx btx_user_lock(const struct bundle_ctx *c, struct bundle_reply *r, const char *code, const char *message)
{
    const char *u[1] = { c->user };
    PGresult *res = bqp(c, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1, u);
    return bq_ok(res) ? BTX_OK : btx_db_error(c, r, res, code, message);
}

#define BTX_ATTEMPTS 3

bool btx_run(const struct bundle_ctx *c, struct bundle_reply *r, const char *mode,
             enum btx (*body)(const struct bundle_ctx *c, struct bundle_reply *r, void *ud), void *ud,
             const char *code, const char *message)
{
    char begin[128];
    snprintf(begin, sizeof begin, "BEGIN %s", mode ? mode : "");
    for (int attempt = 1;; attempt++) {
        PGresult *res = bq(c, begin);
        if (!bq_ok(res)) {
            bundle_fail_db(c, r, res, code, message);
            return false;
        }
        enum btx out = body(c, r, ud);
        if (out == BTX_OK) {
            res = bq(c, "COMMIT");
            if (bq_ok(res))
                return true;
            if (!bq_retryable(res) || attempt == BTX_ATTEMPTS) {
                bundle_fail_db(c, r, res, code, message);
                /* a failed COMMIT has normally ended the transaction already */
                if (PQtransactionStatus(c->conn) != PQTRANS_IDLE)
                    bq(c, "ROLLBACK");
                return false;
            }
            continue;
        }
        PGresult *rb = bq(c, "ROLLBACK");
        (void)rb;
        if (out == BTX_FAIL)
            return false;
        if (attempt == BTX_ATTEMPTS) {
            bundle_fail(r, 503, "service_unavailable", "the database is busy; retry later");
            return false;
        }
    }
}

/* ---------------------------------------------------------------- scope lifecycle */

#define SCOPE_COLUMNS                                                                              \
    "ss.user_pk, ss.state_code, coalesce(ss.initializer_source_id, ''), "                          \
    "coalesce(ss.initialization_id::text, ''), "                                                   \
    "coalesce(" SQL_RFC3339("ss.lease_expires_at") ", ''), "                                       \
    "coalesce(ss.lease_expires_at > clock_timestamp(), false), "                                   \
    "coalesce(extract(epoch FROM ss.lease_expires_at - clock_timestamp()), 0)"

static void scope_from(const PGresult *res, int row, struct scope *s)
{
    s->user_pk = bq_int(res, row, 0);
    s->state = (enum scope_code)bq_int(res, row, 1);
    s->initializer_source_id = PQgetvalue(res, row, 2);
    s->initialization_id = PQgetvalue(res, row, 3);
    s->lease_expires_at = PQgetvalue(res, row, 4);
    s->lease_in_future = strcmp(PQgetvalue(res, row, 5), "t") == 0;
    s->lease_seconds_left = strtod(PQgetvalue(res, row, 6), NULL);
}

bool scope_lock(const struct bundle_ctx *c, struct scope *s, const PGresult **res)
{
    const char *p[1] = { c->user };
    PGresult *r = bqp(c,
                      "WITH ins AS (INSERT INTO sync.user_state (user_id, next_bundle_seq, retained_bundle_floor) "
                      "VALUES ($1, 1, 0) ON CONFLICT (user_id) DO NOTHING RETURNING user_pk) "
                      "INSERT INTO sync.scope_state (user_pk, state_code) "
                      "SELECT user_pk, 0 FROM ins UNION ALL "
                      "SELECT user_pk, 0 FROM sync.user_state WHERE user_id = $1 "
                      "ON CONFLICT (user_pk) DO NOTHING",
                      1, p);
    if (!bq_ok(r)) {
        *res = r;
        return false;
    }
    r = bqp(c,
            "UPDATE sync.scope_state ss SET state_code = 0, initializer_source_id = NULL, "
            "initialization_id = NULL, lease_expires_at = NULL FROM sync.user_state us "
            "WHERE us.user_id = $1 AND ss.user_pk = us.user_pk AND ss.state_code = 1 "
            "AND ss.lease_expires_at IS NOT NULL AND ss.lease_expires_at <= clock_timestamp()",
            1, p);
    if (!bq_ok(r)) {
        *res = r;
        return false;
    }
    r = bqp(c,
            "SELECT " SCOPE_COLUMNS " FROM sync.scope_state ss JOIN sync.user_state us ON us.user_pk = ss.user_pk "
            "WHERE us.user_id = $1 FOR UPDATE OF ss",
            1, p);
    if (!bq_ok(r) || PQntuples(r) != 1) {
        *res = r;
        return false;
    }
    scope_from(r, 0, s);
    return true;
}

bool scope_read(const struct bundle_ctx *c, struct scope *s, bool *exists, const PGresult **res)
{
    const char *p[1] = { c->user };
    PGresult *r = bqp(c,
                      "SELECT " SCOPE_COLUMNS " FROM sync.scope_state ss "
                      "JOIN sync.user_state us ON us.user_pk = ss.user_pk WHERE us.user_id = $1",
                      1, p);
    if (!bq_ok(r)) {
        *res = r;
        return false;
    }
    memset(s, 0, sizeof *s);
    s->initializer_source_id = s->initialization_id = s->lease_expires_at = "";
    *exists = PQntuples(r) == 1;
    if (*exists)
        scope_from(r, 0, s);
    return true;
}

bool scope_require_initialized(const struct bundle_ctx *c, const struct scope *s, struct bundle_reply *r)
{
    if (s->state == SCOPE_INITIALIZED)
        return true;
    if (s->state == SCOPE_INITIALIZING && (s->lease_in_future || !*s->lease_expires_at)) {
        if (*s->lease_expires_at)
            bundle_fail(r, 409, "scope_initializing", "sync scope for user %s is initializing until %s", c->user,
                        s->lease_expires_at);
        else
            bundle_fail(r, 409, "scope_initializing", "sync scope for user %s is initializing", c->user);
        return false;
    }
    bundle_fail(r, 409, "scope_uninitialized", "sync scope for user %s is not initialized", c->user);
    return false;
}

enum btx scope_check_lease(const struct bundle_ctx *c, struct bundle_reply *r, const char *source,
                           const char *initialization_id, const char *code, const char *message)
{
    struct scope s;
    const PGresult *res;
    if (!scope_lock(c, &s, &res))
        return btx_db_error(c, r, res, code, message);
    if (s.state != SCOPE_INITIALIZING) {
        bundle_fail(r, 409, "initialization_stale", "scope is no longer initializing");
        return BTX_FAIL;
    }
    if (!s.lease_in_future) {
        bundle_fail(r, 410, "initialization_expired", "initialization lease has expired");
        return BTX_FAIL;
    }
    if (!*source || strcmp(s.initializer_source_id, source) != 0) {
        bundle_fail(r, 409, "initialization_stale", "source does not own the active initialization lease");
        return BTX_FAIL;
    }
    if (!*initialization_id || strcmp(s.initialization_id, initialization_id) != 0) {
        bundle_fail(r, 409, "initialization_stale", "initialization_id does not match the active initialization lease");
        return BTX_FAIL;
    }
    char pk[32], ttl[32];
    snprintf(pk, sizeof pk, "%lld", s.user_pk);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg->initialization_lease_ttl_ms);
    const char *p[2] = { pk, ttl };
    PGresult *u = bqp(c,
                      "UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() + $2::bigint * interval '1 ms' "
                      "WHERE user_pk = $1",
                      2, p);
    if (!bq_ok(u))
        return btx_db_error(c, r, u, code, message);
    return BTX_OK;
}

bool scope_set_initialized(const struct bundle_ctx *c, long long user_pk, const char *source, const PGresult **res)
{
    char pk[32];
    snprintf(pk, sizeof pk, "%lld", user_pk);
    const char *p[2] = { pk, source };
    PGresult *u = bqp(c,
                      "UPDATE sync.scope_state SET state_code = 2, initializer_source_id = NULL, "
                      "initialization_id = NULL, lease_expires_at = NULL, initialized_at = now(), "
                      "initialized_by_source_id = $2 WHERE user_pk = $1",
                      2, p);
    if (!bq_ok(u)) {
        *res = u;
        return false;
    }
    return true;
}
