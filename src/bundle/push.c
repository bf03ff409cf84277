/* Push sessions (SPEC-v2 §3.2, §3.3, §3.5): a client stages the rows of one local transaction
 * chunk by chunk under a push_id, then commits them (push_commit.c). Creation checks the scope
 * lifecycle and the source's sequence; a chunk's rows are validated before the session is even
 * looked up (as the reference does), turned into the canonical payloads the commit applies, and
 * COPYed into sync.push_session_rows. Also the helpers push_internal.h declares. */
#include "push_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../canonical_json.h"
#include "../db/db.h"
#include "../log.h"
#include "../uuid.h"

#define CREATE_FAILED "push_session_create_failed", "Failed to create push session"
#define CHUNK_FAILED "push_chunk_failed", "Failed to upload push chunk"
#define DELETE_FAILED "push_session_delete_failed", "Failed to delete push session"

/* ------------------------------------------------------------------------------ helpers */

const char *push_op_name(int op)
{
    switch (op) {
    case PUSH_OP_INSERT:
        return "INSERT";
    case PUSH_OP_UPDATE:
        return "UPDATE";
    default:
        return "DELETE";
    }
}

void push_hex(strbuf_t *sb, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_reserve(sb, 2 * n);
    for (size_t i = 0; i < n; i++) {
        sb->data[sb->len++] = hex[p[i] >> 4];
        sb->data[sb->len++] = hex[p[i] & 15];
    }
    sb->data[sb->len] = '\0';
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

const char *push_key_text(arena_t *arena, enum bundle_key_kind kind, const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    if (n % 2)
        return NULL;
    unsigned char *b = arena_alloc(arena, n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return NULL;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    if (kind == BUNDLE_KEY_UUID) {
        if (n != 32)
            return NULL;
        char *out = arena_alloc(arena, UUID_STR_LEN + 1);
        uuid_format(b, out);
        *len = UUID_STR_LEN;
        return out;
    }
    b[n / 2] = '\0';
    *len = n / 2;
    return (const char *)b;
}

void push_key_json(strbuf_t *sb, const struct bundle_catalog_table *t, const char *key, size_t len)
{
    sb_putc(sb, '{');
    bj_str(sb, t->key_column);
    sb_putc(sb, ':');
    canonical_json_string(sb, key, len);
    sb_putc(sb, '}');
}

void push_json_compact(strbuf_t *out, const char *json, size_t len)
{
    bool in_str = false;
    sb_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)json[i];
        if (!in_str) {
            if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
                continue;
            if (ch == '"')
                in_str = true;
            sb_putc(out, (char)ch);
            continue;
        }
        if (ch == '\\' && i + 1 < len) {
            sb_append(out, json + i, 2);
            i++;
            continue;
        }
        if (ch == '"')
            in_str = false;
        if (ch == '<')
            sb_puts(out, "\\u003c");
        else if (ch == '>')
            sb_puts(out, "\\u003e");
        else if (ch == '&')
            sb_puts(out, "\\u0026");
        else if (ch == 0xe2 && i + 2 < len && (unsigned char)json[i + 1] == 0x80 &&
                 ((unsigned char)json[i + 2] == 0xa8 || (unsigned char)json[i + 2] == 0xa9)) {
            sb_puts(out, (unsigned char)json[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
            i += 2;
        } else
            sb_putc(out, (char)ch);
    }
}

/* The length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid; *cp its code
 * point. */
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    unsigned v, min;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, v = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, v = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, v = s[0] & 0x07, min = 0x10000;
    } else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

void push_go_quote(strbuf_t *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    sb_putc(sb, '"');
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_seq(p + i, n - i, &cp);
        if (len == 0) {
            sb_printf(sb, "\\x%02x", p[i]);
            i++;
            continue;
        }
        if (cp == '"' || cp == '\\') {
            sb_putc(sb, '\\');
            sb_putc(sb, (char)cp);
        } else if (cp == '\a')
            sb_puts(sb, "\\a");
        else if (cp == '\b')
            sb_puts(sb, "\\b");
        else if (cp == '\f')
            sb_puts(sb, "\\f");
        else if (cp == '\n')
            sb_puts(sb, "\\n");
        else if (cp == '\r')
            sb_puts(sb, "\\r");
        else if (cp == '\t')
            sb_puts(sb, "\\t");
        else if (cp == '\v')
            sb_puts(sb, "\\v");
        else if (cp < 0x20 || cp == 0x7f)
            sb_printf(sb, "\\x%02x", cp);
        else if (cp >= 0x80 && cp < 0xa0)
            sb_printf(sb, "\\u%04x", cp);
        else if (cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xad)
            sb_printf(sb, "\\u%04x", cp);   /* format/separator characters Go does not print */
        else
            sb_append(sb, (const char *)p + i, len);
        i += len;
    }
    sb_putc(sb, '"');
}

static int b64val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

bool push_base64_std_decode(const char *s, size_t len, unsigned char *out, size_t *outlen)
{
    /* newlines are skipped wherever they are; what is left is quanta of four characters, the
     * last one possibly "xx==" or "xxx=" */
    unsigned char q[4];
    int nq = 0;
    size_t o = 0;
    bool ended = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n')
            continue;
        if (ended)
            return false;
        q[nq++] = ch;
        if (nq < 4)
            continue;
        nq = 0;
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = b64val(q[k]);
        if (v[0] < 0 || v[1] < 0)
            return false;
        if (q[2] == '=') {
            if (q[3] != '=')
                return false;
            out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
            ended = true;
            continue;
        }
        if (v[2] < 0)
            return false;
        if (q[3] == '=') {
            out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
            out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
            ended = true;
            continue;
        }
        if (v[3] < 0)
            return false;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    if (nq)
        return false;
    *outlen = o;
    return true;
}

/* --------------------------------------------------------------------- bytea columns */

/* Loaded once per process (and again when the catalog changes: compared by its names). */
static struct {
    char **names;                  /* "schema.table" per table_id - 1 */
    int n;
    struct push_table_columns *tables;
} bytea_cache;

static bool cache_matches(const struct bundle_catalog *cat)
{
    if (!bytea_cache.tables || bytea_cache.n != cat->n_tables)
        return false;
    for (int i = 0; i < cat->n_tables; i++) {
        char name[2 * BUNDLE_NAME_MAX + 2];
        snprintf(name, sizeof name, "%s.%s", cat->tables[i].schema, cat->tables[i].table);
        if (strcmp(name, bytea_cache.names[i]) != 0)
            return false;
    }
    return true;
}

static void cache_clear(void)
{
    for (int i = 0; i < bytea_cache.n; i++) {
        free(bytea_cache.names[i]);
        for (int k = 0; bytea_cache.tables && k < bytea_cache.tables[i].n_bytea; k++)
            free(bytea_cache.tables[i].bytea[k]);
        if (bytea_cache.tables)
            free(bytea_cache.tables[i].bytea);
    }
    free(bytea_cache.names);
    free(bytea_cache.tables);
    memset(&bytea_cache, 0, sizeof bytea_cache);
}

const struct push_table_columns *push_bytea_columns(const struct bundle_ctx *c, const PGresult **res)
{
    const struct bundle_catalog *cat = c->catalog;
    if (cache_matches(cat))
        return bytea_cache.tables;
    /* the tables as text arrays: schema and table names are [a-z0-9_] */
    strbuf_t schemas = STRBUF_ARENA(c->arena), tables = STRBUF_ARENA(c->arena);
    sb_putc(&schemas, '{');
    sb_putc(&tables, '{');
    for (int i = 0; i < cat->n_tables; i++) {
        sb_printf(&schemas, "%s%s", i ? "," : "", cat->tables[i].schema);
        sb_printf(&tables, "%s%s", i ? "," : "", cat->tables[i].table);
    }
    sb_putc(&schemas, '}');
    sb_putc(&tables, '}');
    const char *p[2] = { sb_cstr(&schemas), sb_cstr(&tables) };
    PGresult *q = bqp(c,
                      "SELECT t.ord, lower(c.column_name) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY "
                      "AS t(schema_name, table_name, ord) JOIN information_schema.columns c "
                      "ON c.table_schema = t.schema_name AND c.table_name = t.table_name "
                      "WHERE lower(c.udt_name) = 'bytea' ORDER BY 1, 2",
                      2, p);
    if (!bq_ok(q)) {
        *res = q;
        return NULL;
    }
    cache_clear();
    bytea_cache.n = cat->n_tables;
    bytea_cache.names = calloc((size_t)cat->n_tables + 1, sizeof *bytea_cache.names);
    bytea_cache.tables = calloc((size_t)cat->n_tables + 1, sizeof *bytea_cache.tables);
    if (!bytea_cache.names || !bytea_cache.tables)
        abort();
    for (int i = 0; i < cat->n_tables; i++) {
        char name[2 * BUNDLE_NAME_MAX + 2];
        snprintf(name, sizeof name, "%s.%s", cat->tables[i].schema, cat->tables[i].table);
        bytea_cache.names[i] = strdup(name);
        bytea_cache.tables[i].bytea = calloc((size_t)PQntuples(q) + 1, sizeof(char *));
        if (!bytea_cache.names[i] || !bytea_cache.tables[i].bytea)
            abort();
    }
    for (int row = 0; row < PQntuples(q); row++) {
        long long ord = bq_int(q, row, 0);
        if (ord < 1 || ord > cat->n_tables)
            continue;
        struct push_table_columns *t = &bytea_cache.tables[ord - 1];
        t->bytea[t->n_bytea] = strdup(PQgetvalue(q, row, 1));
        if (!t->bytea[t->n_bytea])
            abort();
        t->n_bytea++;
    }
    return bytea_cache.tables;
}

bool push_is_bytea(const struct push_table_columns *t, const char *lower_column)
{
    for (int i = 0; i < t->n_bytea; i++)
        if (strcmp(t->bytea[i], lower_column) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------------ session rows */

/* Go's uuid.Parse of strings.TrimSpace(s). */
static bool go_uuid_ok(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    uint8_t b[16];
    return uuid_parse(s, n, b);
}

enum btx push_session_load(const struct bundle_ctx *c, struct bundle_reply *r, const char *push_id,
                           struct push_session *s, const char *code, const char *message)
{
    if (!go_uuid_ok(push_id)) {
        bundle_fail(r, 404, "push_session_not_found", "push session %s was not found", push_id);
        return BTX_FAIL;
    }
    /* the text as sent goes to PostgreSQL, as in the reference: a spelling uuid.Parse accepts
     * and uuid_in does not (surrounding space, urn:uuid:) is a database error there too */
    const char *p[1] = { push_id };
    PGresult *q = bqp(c,
                      "SELECT ps.push_id::text, ps.user_pk, us.user_id, ps.source_id, ps.source_bundle_id, "
                      "ps.planned_row_count, ps.next_expected_row_ordinal, coalesce(ps.initialization_id::text, ''), "
                      "clock_timestamp() > ps.expires_at "
                      "FROM sync.push_sessions ps JOIN sync.user_state us ON us.user_pk = ps.user_pk "
                      "WHERE ps.push_id = $1::uuid FOR UPDATE OF ps",
                      1, p);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, code, message);
    if (PQntuples(q) == 0) {
        bundle_fail(r, 404, "push_session_not_found", "push session %s was not found", push_id);
        return BTX_FAIL;
    }
    s->push_id = PQgetvalue(q, 0, 0);
    s->user_pk = bq_int(q, 0, 1);
    s->user_id = PQgetvalue(q, 0, 2);
    s->source_id = PQgetvalue(q, 0, 3);
    s->source_bundle_id = bq_int(q, 0, 4);
    s->planned_row_count = bq_int(q, 0, 5);
    s->next_expected_row_ordinal = bq_int(q, 0, 6);
    s->initialization_id = PQgetvalue(q, 0, 7);
    if (strcmp(s->user_id, c->user) != 0) {
        bundle_fail(r, 403, "push_session_forbidden", "push session %s does not belong to the authenticated user",
                    push_id);
        return BTX_FAIL;
    }
    if (strcmp(PQgetvalue(q, 0, 8), "t") == 0) {
        bundle_fail(r, 410, "push_session_expired", "push session %s has expired; start a new push session",
                    push_id);
        return BTX_FAIL;
    }
    return BTX_OK;
}

/* --------------------------------------------------------------- POST /sync/push-sessions */

struct create_state {
    long long source_bundle_id;
    long long planned_row_count;
    const char *initialization_id;   /* trimmed, "" when absent */
};

static enum btx create_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct create_state *st = ud;
    r->body.len = 0;
    enum btx locked = btx_user_lock(c, r, CREATE_FAILED);
    if (locked != BTX_OK)
        return locked;
    PGresult *q;
    struct scope s;
    const PGresult *failed;
    if (!scope_lock(c, &s, &failed))
        return btx_db_error(c, r, failed, CREATE_FAILED);

    const char *initialization_id = NULL;
    switch (s.state) {
    case SCOPE_UNINITIALIZED:
        if (*st->initialization_id)
            bundle_fail(r, 410, "initialization_expired", "initialization lease is no longer active");
        else
            bundle_fail(r, 409, "scope_uninitialized", "sync scope for user %s is not initialized", c->user);
        return BTX_FAIL;
    case SCOPE_INITIALIZING: {
        if (!*st->initialization_id) {
            bundle_fail(r, 400, "push_session_invalid", "initialization_id is required while the scope is initializing");
            return BTX_FAIL;
        }
        enum btx out = scope_check_lease(c, r, c->source, st->initialization_id, CREATE_FAILED);
        if (out != BTX_OK)
            return out;
        initialization_id = st->initialization_id;
        break;
    }
    case SCOPE_INITIALIZED:
        if (*st->initialization_id) {
            bundle_fail(r, 400, "push_session_invalid", "initialization_id must be absent once the scope is initialized");
            return BTX_FAIL;
        }
        break;
    }

    /* the tuple already committed (and still above the floor), and the source's state */
    char pk[32], sbid[32], planned[32], ttl[32];
    snprintf(pk, sizeof pk, "%lld", s.user_pk);
    snprintf(sbid, sizeof sbid, "%lld", st->source_bundle_id);
    snprintf(planned, sizeof planned, "%lld", st->planned_row_count);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg->push_session_ttl_ms);
    const char *p[3] = { pk, c->source, sbid };
    q = bqp(c,
            "SELECT bl.bundle_seq, bl.source_id, bl.source_bundle_id, bl.row_count, encode(bl.bundle_hash, 'hex'), "
            "ss.state, ss.max_committed_source_bundle_id, ss.replaced_by_source_id "
            "FROM (SELECT 1) one "
            "LEFT JOIN LATERAL (SELECT b.* FROM sync.bundle_log b JOIN sync.user_state us ON us.user_pk = b.user_pk "
            "WHERE b.user_pk = $1 AND b.source_id = $2 AND b.source_bundle_id = $3 "
            "AND b.bundle_seq > us.retained_bundle_floor) bl ON true "
            "LEFT JOIN sync.source_state ss ON ss.user_pk = $1 AND ss.source_id = $2",
            3, p);
    if (!bq_ok(q) || PQntuples(q) != 1)
        return btx_db_error(c, r, q, CREATE_FAILED);
    if (!PQgetisnull(q, 0, 0)) {
        sb_printf(&r->body, "{\"status\":\"already_committed\",\"bundle_seq\":%s,\"source_id\":", PQgetvalue(q, 0, 0));
        bj_str(&r->body, PQgetvalue(q, 0, 1));
        sb_printf(&r->body, ",\"source_bundle_id\":%s", PQgetvalue(q, 0, 2));
        if (bq_int(q, 0, 3))
            sb_printf(&r->body, ",\"row_count\":%s", PQgetvalue(q, 0, 3));
        sb_printf(&r->body, ",\"bundle_hash\":\"%s\"}", PQgetvalue(q, 0, 4));
        return BTX_OK;
    }
    long long max_committed = 0, expected = 1;
    if (!PQgetisnull(q, 0, 5)) {
        if (strcmp(PQgetvalue(q, 0, 5), "retired") == 0) {
            bundle_fail_source_retired(c, r, c->source, PQgetvalue(q, 0, 7));
            return BTX_FAIL;
        }
        max_committed = bq_int(q, 0, 6);
        expected = max_committed + 1;
    }
    if (st->source_bundle_id < expected) {
        bundle_fail(r, 409, "history_pruned",
                    "source tuple (%s, %lld) for user %s is older than retained duplicate history; "
                    "max committed source_bundle_id is %lld",
                    c->source, st->source_bundle_id, c->user, max_committed);
        return BTX_FAIL;
    }
    if (st->source_bundle_id > expected) {
        bundle_fail(r, 409, "source_sequence_out_of_order", "source %s for user %s expected next source_bundle_id %lld, got %lld",
                    c->source, c->user, expected, st->source_bundle_id);
        return BTX_FAIL;
    }

    /* every user's expired sessions go, and a staging session of the same tuple is replaced */
    q = bqp(c,
            "DELETE FROM sync.push_sessions WHERE expires_at <= now() "
            "OR (user_pk = $1 AND source_id = $2 AND source_bundle_id = $3)",
            3, p);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, CREATE_FAILED);
    const char *ip[6] = { pk, c->source, sbid, planned, initialization_id, ttl };
    q = bqp(c,
            "INSERT INTO sync.push_sessions (push_id, user_pk, source_id, source_bundle_id, planned_row_count, "
            "next_expected_row_ordinal, initialization_id, expires_at) "
            "VALUES (gen_random_uuid(), $1, $2, $3, $4, 0, $5::uuid, clock_timestamp() + $6::bigint * interval '1 ms') "
            "RETURNING push_id::text",
            6, ip);
    if (!bq_ok(q) || PQntuples(q) != 1)
        return btx_db_error(c, r, q, CREATE_FAILED);
    sb_puts(&r->body, "{\"push_id\":");
    bj_str(&r->body, PQgetvalue(q, 0, 0));
    sb_printf(&r->body, ",\"status\":\"staging\",\"planned_row_count\":%lld}", st->planned_row_count);
    return BTX_OK;
}

static const char *trim_space(arena_t *arena, const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return arena_strndup(arena, s, n);
}

void bundle_push_create(const struct bundle_ctx *c, const char *body, size_t len, struct bundle_reply *r)
{
    struct bfield f[] = {
        { .name = "source_bundle_id", .type = BF_INT64 },
        { .name = "planned_row_count", .type = BF_INT64 },
        { .name = "initialization_id", .type = BF_STRING },
    };
    if (len == 0 || !bparse_object(c->arena, body, len, f, 3, false)) {
        bundle_fail(r, 400, "invalid_request", "Failed to parse push session request");
        return;
    }
    if (f[0].i <= 0) {
        bundle_fail(r, 400, "push_session_invalid", "source_bundle_id must be > 0");
        return;
    }
    if (f[1].i <= 0) {
        bundle_fail(r, 400, "push_session_invalid", "planned_row_count must be > 0");
        return;
    }
    struct create_state st = { f[0].i, f[1].i, trim_space(c->arena, f[2].s) };
    if (btx_run(c, r, "ISOLATION LEVEL READ COMMITTED", create_tx, &st, CREATE_FAILED))
        bundle_ok(r, 200);
}

/* ---------------------------------------------------- POST /sync/push-sessions/{id}/chunks */

/* A row of the request as Go's decoder fills PushRequestRow. */
struct row_in {
    const char *schema, *table, *op;   /* "" when absent or null */
    bool has_key;                      /* a non-null key object */
    struct json_span key;
    long long base_row_version;
    bool has_payload;                  /* the member is present, even as null (json.RawMessage) */
    struct json_span payload;
};

/* A validated row, ready for sync.push_session_rows. */
struct row_ok {
    const struct bundle_catalog_table *t;
    int op;
    const char *key;          /* the key as text */
    size_t key_len;
    strbuf_t key_hex;         /* key_bytes */
    long long base_row_version;
    strbuf_t payload;         /* canonical; empty for DELETE */
};

/* Decodes one element of rows as encoding/json decodes it into PushRequestRow: false on a type
 * mismatch (the whole request is then unreadable). */
static bool decode_row(arena_t *arena, const struct json_span *v, struct row_in *row)
{
    memset(row, 0, sizeof *row);
    row->schema = row->table = row->op = "";
    if (v->type == JSON_NULL)
        return true;
    if (v->type != JSON_OBJECT)
        return false;
    struct json_iter it;
    struct json_span k, val;
    json_iter_init(&it, v);
    while (json_iter_member(&it, &k, &val)) {
        char *name = json_string_dup(arena, &k);
        if (strcasecmp(name, "payload") == 0) {
            row->has_payload = true;
            row->payload = val;
            continue;
        }
        const char **str = strcasecmp(name, "schema") == 0 ? &row->schema
                           : strcasecmp(name, "table") == 0 ? &row->table
                           : strcasecmp(name, "op") == 0    ? &row->op
                                                            : NULL;
        if (str) {
            if (val.type == JSON_NULL)
                continue;
            if (val.type != JSON_STRING)
                return false;
            *str = json_string_dup(arena, &val);
        } else if (strcasecmp(name, "key") == 0) {
            if (val.type == JSON_NULL) {
                row->has_key = false;   /* a map set to nil */
                continue;
            }
            if (val.type != JSON_OBJECT)
                return false;
            row->has_key = true;
            row->key = val;
        } else if (strcasecmp(name, "base_row_version") == 0) {
            if (val.type == JSON_NULL)
                continue;
            if (val.type != JSON_NUMBER || !json_int64(&val, &row->base_row_version))
                return false;
        }
    }
    return true;
}

static char *lower_trim(arena_t *arena, const char *s, bool upper)
{
    char *t = (char *)trim_space(arena, s);
    for (char *p = t; *p; p++)
        *p = (char)(upper ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    return t;
}

/* A set of (table_id, key bytes as hex) targets. */
struct keyset {
    size_t cap;
    struct keyslot {
        int table_id;
        const char *hex;
    } *slots;
};

static void keyset_init(struct keyset *s, arena_t *arena, size_t n)
{
    s->cap = 16;
    while (s->cap < 2 * n)
        s->cap *= 2;
    s->slots = arena_calloc(arena, s->cap, sizeof *s->slots);
}

/* false when the target was there already */
static bool keyset_add(struct keyset *s, int table_id, const char *hex)
{
    unsigned long h = 1469598103934665603UL ^ (unsigned long)table_id;
    for (const char *p = hex; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211UL;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i].hex) {
            s->slots[i].table_id = table_id;
            s->slots[i].hex = hex;
            return true;
        }
        if (s->slots[i].table_id == table_id && strcmp(s->slots[i].hex, hex) == 0)
            return false;
    }
}

/* Is there a member with the same (decoded) name after position idx? Go's map keeps the last. */
static bool shadowed(char **names, int n, int idx)
{
    for (int k = idx + 1; k < n; k++)
        if (strcmp(names[k], names[idx]) == 0)
            return true;
    return false;
}

/* Validates row i as the reference's preparePushRows does, first failure wins (the message set
 * in r as 400 push_chunk_invalid); fills out. */
static bool prepare_row(const struct bundle_ctx *c, const struct push_table_columns *bytea, struct keyset *seen,
                        const struct row_in *in, struct row_ok *out, struct bundle_reply *r)
{
    arena_t *a = c->arena;
    strbuf_t q = STRBUF_ARENA(a);
    char *schema = lower_trim(a, in->schema, false);
    if (!*schema)
        schema = "public";
    char *table = lower_trim(a, in->table, false);
    char *op = lower_trim(a, in->op, true);
#define INVALID(...)                                                                               \
    do {                                                                                           \
        bundle_fail(r, 400, "push_chunk_invalid", __VA_ARGS__);                                    \
        return false;                                                                              \
    } while (0)
    if (!bundle_name_valid(schema)) {
        push_go_quote(&q, in->schema);
        INVALID("invalid schema name %s", sb_cstr(&q));
    }
    if (!bundle_name_valid(table)) {
        push_go_quote(&q, in->table);
        INVALID("invalid table name %s", sb_cstr(&q));
    }
    const struct bundle_catalog_table *t = bundle_catalog_find(c->catalog, schema, table);
    if (!t)
        INVALID("table %s.%s is not registered", schema, table);
    if (strcmp(op, "INSERT") == 0)
        out->op = PUSH_OP_INSERT;
    else if (strcmp(op, "UPDATE") == 0)
        out->op = PUSH_OP_UPDATE;
    else if (strcmp(op, "DELETE") == 0)
        out->op = PUSH_OP_DELETE;
    else {
        push_go_quote(&q, in->op);
        INVALID("invalid op %s", sb_cstr(&q));
    }
    out->t = t;

    /* the key: the last member named exactly as the key column */
    struct json_span kv = { 0 };
    bool found = false;
    if (in->has_key) {
        struct json_iter it;
        struct json_span k, v;
        json_iter_init(&it, &in->key);
        while (json_iter_member(&it, &k, &v))
            if (json_string_eq(&k, t->key_column)) {
                kv = v;
                found = true;
            }
    }
    if (!found) {
        push_go_quote(&q, t->key_column);
        INVALID("row key for %s.%s must include %s", schema, table, sb_cstr(&q));
    }
    if (kv.type != JSON_STRING)
        INVALID("row key %s.%s.%s must be a string", schema, table, t->key_column);
    const char *key = json_string_dup(a, &kv);
    size_t key_len = strlen(key);
    out->key_hex = (strbuf_t)STRBUF_ARENA(a);
    if (t->key_kind == BUNDLE_KEY_UUID) {
        uint8_t b[16];
        char canon[UUID_STR_LEN + 1];
        if (!uuid_parse(key, key_len, b) || (uuid_format(b, canon), strcmp(canon, key) != 0))
            INVALID("row key %s.%s.%s must use canonical dashed lowercase UUID text", schema, table, t->key_column);
        push_hex(&out->key_hex, b, 16);
    } else {
        push_hex(&out->key_hex, (const unsigned char *)key, key_len);
    }
    out->key = key;
    out->key_len = key_len;
    if (!keyset_add(seen, t->table_id, sb_cstr(&out->key_hex)))
        INVALID("duplicate target row in push request: %s.%s %s", schema, table, key);
    out->base_row_version = in->base_row_version;
    out->payload = (strbuf_t)STRBUF_ARENA(a);

    if (out->op == PUSH_OP_DELETE) {
        if (in->has_payload)
            INVALID("DELETE for %s.%s must not include payload", schema, table);
        return true;
    }
    if (!in->has_payload)
        INVALID("%s for %s.%s requires payload", op, schema, table);
    /* json.Unmarshal into a map: an object whose every number fits a float64 */
    strbuf_t scratch = STRBUF_ARENA(a);
    if (in->payload.type != JSON_OBJECT ||
        !canonical_json(in->payload.start, in->payload.len, &scratch, NULL, 0))
        INVALID("payload for %s.%s must be a JSON object", schema, table);

    int n = 0;
    {
        struct json_iter it;
        struct json_span k, v;
        json_iter_init(&it, &in->payload);
        while (json_iter_member(&it, &k, &v))
            n++;
    }
    char **names = arena_calloc(a, (size_t)n + 1, sizeof *names);
    struct json_span *vals = arena_calloc(a, (size_t)n + 1, sizeof *vals);
    struct json_span *keys = arena_calloc(a, (size_t)n + 1, sizeof *keys);
    {
        struct json_iter it;
        int i = 0;
        json_iter_init(&it, &in->payload);
        while (json_iter_member(&it, &keys[i], &vals[i])) {
            names[i] = json_string_dup(a, &keys[i]);
            i++;
        }
    }
    int key_member = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], BUNDLE_SCOPE_COLUMN) == 0) {
            push_go_quote(&q, BUNDLE_SCOPE_COLUMN);
            INVALID("payload for %s.%s must not include hidden scope column %s", schema, table, sb_cstr(&q));
        }
        if (strcmp(names[i], t->key_column) == 0)
            key_member = i;   /* the last one */
    }
    if (key_member >= 0) {
        const struct json_span *v = &vals[key_member];
        if (v->type != JSON_STRING || strcmp(json_string_dup(a, v), key) != 0)
            INVALID("payload key %s.%s.%s must match request key", schema, table, t->key_column);
    }
    for (int i = 0; i < n; i++) {
        if (shadowed(names, n, i))
            continue;
        char *lower = lower_trim(a, names[i], false);
        /* lower_trim also trims: a name with surrounding space is invalid anyway */
        if (strlen(lower) != strlen(names[i]) || !bundle_name_valid(lower)) {
            q.len = 0;
            push_go_quote(&q, names[i]);
            INVALID("payload for %s.%s contains invalid column %s", schema, table, sb_cstr(&q));
        }
    }
    const struct push_table_columns *tc = &bytea[t->table_id - 1];
    /* the object again, with bytea values as PostgreSQL's \x text and the key injected, then
     * canonical: what the reference stores */
    strbuf_t obj = STRBUF_ARENA(a);
    sb_putc(&obj, '{');
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (shadowed(names, n, i))
            continue;
        if (!first)
            sb_putc(&obj, ',');
        first = false;
        sb_append(&obj, keys[i].start, keys[i].len);
        sb_putc(&obj, ':');
        char *lower = lower_trim(a, names[i], false);
        if (vals[i].type == JSON_NULL || !push_is_bytea(tc, lower)) {
            sb_append(&obj, vals[i].start, vals[i].len);
            continue;
        }
        if (vals[i].type != JSON_STRING)
            INVALID("payload binary field %s.%s.%s must be a base64 string", schema, table, names[i]);
        const char *b64 = json_string_dup(a, &vals[i]);
        size_t blen = strlen(b64), dlen;
        unsigned char *dec = arena_alloc(a, blen / 4 * 3 + 4);
        if (!push_base64_std_decode(b64, blen, dec, &dlen))
            INVALID("payload binary field %s.%s.%s must be valid base64", schema, table, names[i]);
        sb_puts(&obj, "\"\\\\x");
        push_hex(&obj, dec, dlen);
        sb_putc(&obj, '"');
    }
    if (key_member < 0) {
        if (!first)
            sb_putc(&obj, ',');
        bj_str(&obj, t->key_column);
        sb_putc(&obj, ':');
        canonical_json_string(&obj, key, key_len);
    }
    sb_putc(&obj, '}');
    char err[256];
    if (!canonical_json(obj.data, obj.len, &out->payload, err, sizeof err))
        INVALID("canonicalize payload for %s.%s: %s", schema, table, err);
#undef INVALID
    return true;
}

struct chunk_state {
    const char *push_id;
    long long start;
    struct row_ok *rows;
    int n;
};

/* COPY text format: backslash, newline, carriage return and tab escaped */
static void copy_text(strbuf_t *sb, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '\\')
            sb_puts(sb, "\\\\");
        else if (ch == '\n')
            sb_puts(sb, "\\n");
        else if (ch == '\r')
            sb_puts(sb, "\\r");
        else if (ch == '\t')
            sb_puts(sb, "\\t");
        else
            sb_putc(sb, ch);
    }
}

static enum btx chunk_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    struct chunk_state *st = ud;
    r->body.len = 0;
    enum btx locked = btx_user_lock(c, r, CHUNK_FAILED);
    if (locked != BTX_OK)
        return locked;
    PGresult *q;
    struct push_session s;
    enum btx out = push_session_load(c, r, st->push_id, &s, CHUNK_FAILED);
    if (out != BTX_OK)
        return out;
    if (*s.initialization_id) {
        out = scope_check_lease(c, r, s.source_id, s.initialization_id, CHUNK_FAILED);
        if (out != BTX_OK)
            return out;
    }
    if (st->start != s.next_expected_row_ordinal) {
        bundle_fail(r, 409, "push_chunk_out_of_order", "push session %s expected start_row_ordinal %lld, got %lld",
                    st->push_id, s.next_expected_row_ordinal, st->start);
        return BTX_FAIL;
    }
    if (st->start + st->n > s.planned_row_count) {
        bundle_fail(r, 400, "push_chunk_invalid", "chunk exceeds planned_row_count");
        return BTX_FAIL;
    }

    strbuf_t data = STRBUF_ARENA(c->arena);
    for (int i = 0; i < st->n; i++) {
        const struct row_ok *row = &st->rows[i];
        sb_printf(&data, "%s\t%lld\t%d\t\\\\x%s\t%d\t%lld\t", s.push_id, st->start + i, row->t->table_id,
                  sb_cstr((strbuf_t *)&row->key_hex), row->op, row->base_row_version);
        if (row->op == PUSH_OP_DELETE)
            sb_puts(&data, "\\N");
        else
            copy_text(&data, row->payload.data, row->payload.len);
        sb_putc(&data, '\n');
    }
    q = bq(c, "COPY sync.push_session_rows (push_id, row_ordinal, table_id, key_bytes, op_code, base_bundle_seq, "
              "payload_apply) FROM STDIN");
    if (PQresultStatus(q) != PGRES_COPY_IN)
        return btx_db_error(c, r, q, CHUNK_FAILED);
    bool sent = PQputCopyData(c->conn, data.data, (int)data.len) == 1;
    if (PQputCopyEnd(c->conn, sent ? NULL : "sending the rows failed") != 1)
        sent = false;
    PGresult *done = db_result_in(c->arena, PQgetResult(c->conn));
    PGresult *extra;
    while ((extra = PQgetResult(c->conn)))
        PQclear(extra);
    if (!done || !bq_ok(done))
        return btx_db_error(c, r, done, CHUNK_FAILED);

    char next[32], ttl[32];
    snprintf(next, sizeof next, "%lld", st->start + st->n);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg->push_session_ttl_ms);
    const char *p[3] = { s.push_id, next, ttl };
    q = bqp(c,
            "UPDATE sync.push_sessions SET next_expected_row_ordinal = $2, "
            "expires_at = clock_timestamp() + $3::bigint * interval '1 ms' WHERE push_id = $1::uuid",
            3, p);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, CHUNK_FAILED);
    sb_puts(&r->body, "{\"push_id\":");
    bj_str(&r->body, st->push_id);
    sb_printf(&r->body, ",\"next_expected_row_ordinal\":%lld}", st->start + st->n);
    return BTX_OK;
}

void bundle_push_chunk(const struct bundle_ctx *c, const char *push_id, const char *body, size_t len,
                       struct bundle_reply *r)
{
    struct bfield f[] = {
        { .name = "start_row_ordinal", .type = BF_INT64 },
        { .name = "rows", .type = BF_ARRAY },
    };
    bool ok = len > 0 && bparse_object(c->arena, body, len, f, 2, false);
    int n = 0;
    struct row_in *in = NULL;
    if (ok && f[1].present) {
        struct json_iter it;
        struct json_span v;
        json_iter_init(&it, &f[1].span);
        while (json_iter_element(&it, &v))
            n++;
        in = arena_calloc(c->arena, (size_t)n + 1, sizeof *in);
        json_iter_init(&it, &f[1].span);
        for (int i = 0; ok && json_iter_element(&it, &v); i++)
            ok = decode_row(c->arena, &v, &in[i]);
    }
    if (!ok) {
        bundle_fail(r, 400, "invalid_request", "Failed to parse push chunk request");
        return;
    }
    if (f[0].i < 0) {
        bundle_fail(r, 400, "push_chunk_invalid", "start_row_ordinal must be >= 0");
        return;
    }
    if (n == 0) {
        bundle_fail(r, 400, "push_chunk_invalid", "rows must not be empty");
        return;
    }
    if (n > c->cfg->max_rows_per_push_chunk) {
        bundle_fail(r, 400, "push_chunk_invalid", "rows length %d exceeds max_rows_per_push_chunk %ld", n,
                    c->cfg->max_rows_per_push_chunk);
        return;
    }
    const PGresult *failed = NULL;
    const struct push_table_columns *bytea = push_bytea_columns(c, &failed);
    if (!bytea) {
        bundle_fail_db(c, r, failed, CHUNK_FAILED);
        return;
    }
    struct row_ok *rows = arena_calloc(c->arena, (size_t)n, sizeof *rows);
    struct keyset seen;
    keyset_init(&seen, c->arena, (size_t)n);
    for (int i = 0; i < n; i++)
        if (!prepare_row(c, bytea, &seen, &in[i], &rows[i], r))
            return;
    struct chunk_state st = { push_id, f[0].i, rows, n };
    if (btx_run(c, r, "ISOLATION LEVEL READ COMMITTED", chunk_tx, &st, CHUNK_FAILED))
        bundle_ok(r, 200);
}

/* ------------------------------------------------------ DELETE /sync/push-sessions/{id} */

static enum btx delete_tx(const struct bundle_ctx *c, struct bundle_reply *r, void *ud)
{
    const char *push_id = ud;
    r->body.len = 0;
    struct push_session s;
    enum btx out = push_session_load(c, r, push_id, &s, DELETE_FAILED);
    if (out != BTX_OK)
        return out;
    const char *p[1] = { s.push_id };
    PGresult *q = bqp(c, "DELETE FROM sync.push_sessions WHERE push_id = $1::uuid", 1, p);
    if (!bq_ok(q))
        return btx_db_error(c, r, q, DELETE_FAILED);
    return BTX_OK;
}

void bundle_push_delete(const struct bundle_ctx *c, const char *push_id, struct bundle_reply *r)
{
    if (btx_run(c, r, "ISOLATION LEVEL READ COMMITTED", delete_tx, (void *)push_id, DELETE_FAILED)) {
        r->body.len = 0;
        r->status = 204;
        r->error = NULL;
    }
}
