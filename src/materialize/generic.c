/* The generic materializer: payload keys matched to columns, values converted by column type,
 * INSERT ... ON CONFLICT (primary key) DO UPDATE of the columns present; DELETE by primary key.
 * One prepared statement per set of present columns, prepared on first use per connection.
 *
 * The set path (plan_batch) writes all upserts of a table with the same present columns in one
 * statement, from a JSON array read by jsonb_populate_recordset, and all deletes of a table in one
 * DELETE ... WHERE pk = ANY($1). A key written more than once in the batch goes into successive
 * statements ("layers"), so each statement touches a row at most once and the changes of a row
 * apply in their order. */
#include "internal.h"
#include "../base64.h"
#include "../json_scan.h"
#include "../strbuf.h"
#include "../uuid.h"
#include "../xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum col_kind { COL_UUID, COL_BYTEA, COL_TIMESTAMPTZ, COL_TIMESTAMP, COL_DATE, COL_OTHER };

struct column {
    char *name;
    char *type;              /* format_type(), for messages */
    enum col_kind kind;
    bool is_pk;
};

struct stmt {
    uint64_t mask;           /* present columns */
    bool set;                /* the set form (a JSON array of rows) */
    char name[32];
};

struct generic {
    struct column *cols;
    int ncols;
    int pk;                  /* index of the primary-key column */
    char delete_stmt[32];
    char delete_set_stmt[32];   /* pk = ANY($1) */
    struct stmt *stmts;      /* prepared on the current connection */
    int nstmts;
};

#define MAX_PREPARED_COLUMNS 64

static void *generic_create(const struct table_conf *t, char *err, size_t errlen)
{
    (void)t; (void)err; (void)errlen;
    return xcalloc(1, sizeof(struct generic));
}

static void forget_columns(struct generic *g)
{
    for (int i = 0; i < g->ncols; i++) {
        free(g->cols[i].name);
        free(g->cols[i].type);
    }
    free(g->cols);
    g->cols = NULL;
    g->ncols = 0;
    free(g->stmts);
    g->stmts = NULL;
    g->nstmts = 0;
}

static void generic_destroy(void *state)
{
    struct generic *g = state;
    forget_columns(g);
    free(g);
}

static enum col_kind kind_of(const char *typname)
{
    if (strcmp(typname, "uuid") == 0)
        return COL_UUID;
    if (strcmp(typname, "bytea") == 0)
        return COL_BYTEA;
    if (strcmp(typname, "timestamptz") == 0)
        return COL_TIMESTAMPTZ;
    if (strcmp(typname, "timestamp") == 0)
        return COL_TIMESTAMP;
    if (strcmp(typname, "date") == 0)
        return COL_DATE;
    return COL_OTHER;
}

static bool generic_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    struct generic *g = m->state;
    forget_columns(g);
    const char *vals[1] = { m->qtable };
    PGresult *r = PQexecParams(
        conn,
        "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod),"
        "       coalesce(a.attnum = ANY (pk.conkey), false), coalesce(array_length(pk.conkey, 1), 0)"
        "  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        "  LEFT JOIN pg_constraint pk ON pk.conrelid = a.attrelid AND pk.contype = 'p'"
        " WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the columns of %s.%s: %s", m->schema, m->table, PQresultErrorMessage(r));
        PQclear(r);
        return false;
    }
    int n = PQntuples(r);
    if (n == 0) {
        snprintf(err, errlen, "table %s.%s does not exist", m->schema, m->table);
        PQclear(r);
        return false;
    }
    g->cols = xcalloc((size_t)n, sizeof *g->cols);
    g->ncols = n;
    g->pk = -1;
    int pk_width = atoi(PQgetvalue(r, 0, 4));
    for (int i = 0; i < n; i++) {
        g->cols[i].name = xstrdup(PQgetvalue(r, i, 0));
        g->cols[i].kind = kind_of(PQgetvalue(r, i, 1));
        g->cols[i].type = xstrdup(PQgetvalue(r, i, 2));
        g->cols[i].is_pk = PQgetvalue(r, i, 3)[0] == 't';
        if (g->cols[i].is_pk)
            g->pk = i;
    }
    PQclear(r);
    if (g->pk < 0 || pk_width != 1) {
        snprintf(err, errlen, "the generic materializer needs a single-column primary key on %s.%s", m->schema,
                 m->table);
        return false;
    }
    materializer_stmt_name(g->delete_stmt, sizeof g->delete_stmt, "mgd");
    strbuf_t sql = STRBUF_INIT;
    sb_printf(&sql, "DELETE FROM %s WHERE \"%s\" = $1", m->qtable, g->cols[g->pk].name);
    r = PQprepare(conn, g->delete_stmt, sql.data, 0, NULL);
    sb_free(&sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, errlen, "preparing the delete on %s.%s: %s", m->schema, m->table, PQresultErrorMessage(r));
    PQclear(r);
    if (!ok)
        return false;
    materializer_stmt_name(g->delete_set_stmt, sizeof g->delete_set_stmt, "mgD");
    sb_init(&sql);
    sb_printf(&sql, "DELETE FROM %s WHERE \"%s\" = ANY ($1)", m->qtable, g->cols[g->pk].name);
    r = PQprepare(conn, g->delete_set_stmt, sql.data, 0, NULL);
    sb_free(&sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, errlen, "preparing the delete on %s.%s: %s", m->schema, m->table, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static int column_index(const struct generic *g, const struct json_span *key, arena_t *a)
{
    char *name = json_string_dup(a, key);
    for (int i = 0; i < g->ncols; i++)
        if (strcmp(g->cols[i].name, name) == 0)
            return i;
    return -1;
}

/* Unix seconds (a JSON number, fractions allowed) as an ISO 8601 text in UTC. */
static bool unix_seconds(const struct json_span *v, enum col_kind kind, strbuf_t *out)
{
    char buf[64];
    if (v->len >= sizeof buf)
        return false;
    memcpy(buf, v->start, v->len);
    buf[v->len] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    if (errno || !isfinite(d) || d < -62135596800.0 || d > 253402300799.0)
        return false;
    double whole = floor(d);
    long micros = lround((d - whole) * 1e6);
    time_t secs = (time_t)whole;
    if (micros >= 1000000) {
        secs++;
        micros -= 1000000;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[48];
    if (kind == COL_DATE)
        strftime(ts, sizeof ts, "%Y-%m-%d", &tm);
    else {
        size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + k, sizeof ts - k, ".%06ld%s", micros, kind == COL_TIMESTAMPTZ ? "Z" : "");
    }
    sb_json_str(out, ts);
    return true;
}

/* Appends the value for column col converted for jsonb_populate_record; false when it cannot be. */
static bool convert(const struct column *col, const struct json_span *v, arena_t *a, strbuf_t *out)
{
    if (v->type == JSON_NULL) {
        sb_puts(out, "null");
        return true;
    }
    switch (col->kind) {
    case COL_UUID: {
        if (v->type != JSON_STRING)
            return false;
        char *s = json_string_dup(a, v);
        char canon[UUID_STR_LEN + 1];
        unsigned char bytes[64];
        size_t n, len = strlen(s);
        if (uuid_canonical(s, len, canon)) {
            sb_json_str(out, canon);
            return true;
        }
        if (len <= 24 && base64_decode(s, len, BASE64_ANY | BASE64_PAD_OPTIONAL, bytes, &n) && n == 16) {
            uuid_format(bytes, canon);
            sb_json_str(out, canon);
            return true;
        }
        return false;
    }
    case COL_BYTEA: {
        if (v->type != JSON_STRING)
            return false;
        char *s = json_string_dup(a, v);
        size_t len = strlen(s), n;
        unsigned char *bytes = arena_alloc(a, BASE64_DECODED_MAX(len));
        if (!base64_decode(s, len, BASE64_ANY | BASE64_PAD_OPTIONAL, bytes, &n))
            return false;
        static const char hex[] = "0123456789abcdef";
        char *text = arena_alloc(a, 2 * n + 3);
        text[0] = '\\';
        text[1] = 'x';
        for (size_t i = 0; i < n; i++) {
            text[2 + 2 * i] = hex[bytes[i] >> 4];
            text[3 + 2 * i] = hex[bytes[i] & 15];
        }
        text[2 + 2 * n] = '\0';
        sb_json_str(out, text);
        return true;
    }
    case COL_TIMESTAMPTZ:
    case COL_TIMESTAMP:
    case COL_DATE:
        if (v->type == JSON_NUMBER)
            return unix_seconds(v, col->kind, out);
        if (v->type != JSON_STRING)
            return false;
        sb_append(out, v->start, v->len);
        return true;
    default:
        sb_append(out, v->start, v->len);
        return true;
    }
}

/* UPDATE of the present columns first, INSERT only when no row was there: an INSERT ... ON
 * CONFLICT would check NOT NULL on the proposed row and refuse a partial update. The ON CONFLICT
 * branch only runs when another transaction inserted the row in between. The key comes as its own
 * parameter ($2), so even a generic plan finds the row by the primary key index instead of
 * joining the whole table with the record.
 *
 * The set form reads every row from the JSON array $1 (each key at most once) and joins by key;
 * the keys come once more as the array $2, so that the table is searched by its primary key index
 * (a join with the function's rows alone is planned as a hash join over the whole table). */
static void upsert_sql(const struct materializer *m, const bool *present, bool set, strbuf_t *sql)
{
    const struct generic *g = m->state;
    strbuf_t cols = STRBUF_INIT, from_r = STRBUF_INIT, from_excluded = STRBUF_INIT;
    for (int i = 0; i < g->ncols; i++) {
        if (!present[i])
            continue;
        const char *c = g->cols[i].name;
        sb_printf(&cols, "%s\"%s\"", cols.len ? ", " : "", c);
        if (i == g->pk)
            continue;
        sb_printf(&from_r, "%s\"%s\" = r.\"%s\"", from_r.len ? ", " : "", c, c);
        sb_printf(&from_excluded, "%s\"%s\" = EXCLUDED.\"%s\"", from_excluded.len ? ", " : "", c, c);
    }
    const char *pk = g->cols[g->pk].name;
    const char *rows = set ? "jsonb_populate_recordset" : "jsonb_populate_record";
    if (!from_r.len)
        sb_printf(sql, "INSERT INTO %s (%s) SELECT %s FROM %s(NULL::%s, $1::jsonb) "
                       "ON CONFLICT (\"%s\") DO NOTHING",
                  m->qtable, cols.data, cols.data, rows, m->qtable, pk);
    else if (!set)
        sb_printf(sql,
                  "WITH r AS (SELECT * FROM jsonb_populate_record(NULL::%s, $1::jsonb)),"
                  " u AS (UPDATE %s t SET %s FROM r WHERE t.\"%s\" = $2 RETURNING 1) "
                  "INSERT INTO %s (%s) SELECT %s FROM r WHERE NOT EXISTS (SELECT 1 FROM u) "
                  "ON CONFLICT (\"%s\") DO UPDATE SET %s",
                  m->qtable, m->qtable, from_r.data, pk, m->qtable, cols.data, cols.data, pk,
                  from_excluded.data);
    else
        sb_printf(sql,
                  "WITH r AS (SELECT * FROM jsonb_populate_recordset(NULL::%s, $1::jsonb)),"
                  " u AS (UPDATE %s t SET %s FROM r WHERE t.\"%s\" = ANY ($2) AND t.\"%s\" = r.\"%s\""
                  " RETURNING t.\"%s\") "
                  "INSERT INTO %s (%s) SELECT %s FROM r WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.\"%s\" = r.\"%s\") "
                  "ON CONFLICT (\"%s\") DO UPDATE SET %s",
                  m->qtable, m->qtable, from_r.data, pk, pk, pk, pk, m->qtable, cols.data, cols.data, pk, pk, pk,
                  from_excluded.data);
    sb_free(&cols);
    sb_free(&from_r);
    sb_free(&from_excluded);
}

static const char *prepare_upsert(struct materializer *m, PGconn *conn, uint64_t mask, const bool *present,
                                  bool set, char *err, size_t errlen)
{
    struct generic *g = m->state;
    for (int i = 0; i < g->nstmts; i++)
        if (g->stmts[i].mask == mask && g->stmts[i].set == set)
            return g->stmts[i].name;
    strbuf_t sql = STRBUF_INIT;
    upsert_sql(m, present, set, &sql);
    g->stmts = xrealloc(g->stmts, (size_t)(g->nstmts + 1) * sizeof *g->stmts);
    struct stmt *st = &g->stmts[g->nstmts];
    st->mask = mask;
    st->set = set;
    materializer_stmt_name(st->name, sizeof st->name, set ? "mgs" : "mgu");
    PGresult *r = PQprepare(conn, st->name, sql.data, 0, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        materializer_error_text(r, conn, err, errlen);
    PQclear(r);
    sb_free(&sql);
    if (!ok)
        return NULL;
    g->nstmts++;
    return st->name;
}

/* The row of upsert c as the JSON object jsonb_populate_record reads (key first, then the present
 * columns converted), appended to obj; the present columns in present[] (zeroed by the caller) and
 * *mask (meaningless for a table wider than MAX_PREPARED_COLUMNS). false with err naming the column
 * when a value cannot be converted. */
static bool row_object(const struct generic *g, const struct mat_change *c, arena_t *a, strbuf_t *obj, bool *present,
                       uint64_t *mask, char *err, size_t errlen)
{
    struct json_span root;
    char scan_err[128];
    if (!json_validate(c->payload, c->payload_len, &root, scan_err, sizeof scan_err) || root.type != JSON_OBJECT) {
        snprintf(err, errlen, "payload is not a JSON object");
        return false;
    }
    bool wide = g->ncols > MAX_PREPARED_COLUMNS;
    *mask = UINT64_C(1) << g->pk;
    struct json_span *value = arena_calloc(a, (size_t)g->ncols, sizeof *value);
    present[g->pk] = true;
    struct json_iter it;
    struct json_span k, v;
    json_iter_init(&it, &root);
    while (json_iter_member(&it, &k, &v)) {
        int col = column_index(g, &k, a);
        if (col < 0 || col == g->pk)
            continue;   /* unknown keys are ignored; the pk column always comes from the change */
        value[col] = v; /* a repeated key: the last one wins, as in jsonb */
        present[col] = true;
    }
    sb_printf(obj, "{\"%s\":", g->cols[g->pk].name);
    sb_json_str(obj, c->pk);
    for (int col = 0; col < g->ncols; col++) {
        if (!present[col] || col == g->pk)
            continue;
        sb_printf(obj, ",\"%s\":", g->cols[col].name);
        if (!convert(&g->cols[col], &value[col], a, obj)) {
            snprintf(err, errlen, "column %s (%s): the value cannot be converted", g->cols[col].name,
                     g->cols[col].type);
            return false;
        }
        if (!wide)
            *mask |= UINT64_C(1) << col;
    }
    sb_putc(obj, '}');
    return true;
}

static enum mat_plan_result generic_plan(struct materializer *m, PGconn *conn, const struct mat_change *c,
                                         arena_t *a, struct mat_plan *plan, char *err, size_t errlen)
{
    struct generic *g = m->state;
    if (c->is_delete) {
        plan->stmt = g->delete_stmt;
        plan->nparams = 1;
        plan->values[0] = c->pk;
        return MAT_PLANNED;
    }
    strbuf_t obj = STRBUF_INIT;
    uint64_t mask;
    bool *present = arena_calloc(a, (size_t)g->ncols, sizeof *present);
    if (!row_object(g, c, a, &obj, present, &mask, err, errlen)) {
        sb_free(&obj);
        return MAT_UNCONVERTIBLE;
    }
    bool updates = false;   /* any column besides the key: the statement then takes the key as $2 */
    for (int col = 0; col < g->ncols; col++)
        updates |= present[col] && col != g->pk;
    plan->nparams = updates ? 2 : 1;
    plan->values[0] = arena_strndup(a, obj.data, obj.len);
    plan->values[1] = c->pk;
    sb_free(&obj);
    if (g->ncols <= MAX_PREPARED_COLUMNS) {
        /* copied: the cache array may move when a later change prepares another column set */
        const char *name = prepare_upsert(m, conn, mask, present, false, err, errlen);
        plan->stmt = name ? arena_strdup(a, name) : NULL;
        return plan->stmt ? MAT_PLANNED : MAT_DB_ERROR;
    }
    /* more columns than a mask holds: send the statement text each time */
    strbuf_t sql = STRBUF_INIT;
    upsert_sql(m, present, false, &sql);
    plan->sql = arena_strndup(a, sql.data, sql.len);
    sb_free(&sql);
    return MAT_PLANNED;
}

static bool generic_batches(const struct materializer *m)
{
    (void)m;
    return true;
}

/* One statement's rows: the same layer and the same present columns. */
struct row_group {
    int layer;
    bool *present;
    uint64_t mask;
    bool updates;            /* a column besides the key: the statement also takes the keys as $2 */
    strbuf_t rows;           /* JSON array being built */
    strbuf_t keys;           /* their keys, an array literal being built */
};

static uint64_t hash_pk(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int group_cmp(const void *x, const void *y)
{
    const struct row_group *a = x, *b = y;
    return a->layer - b->layer;
}

static enum mat_plan_result generic_plan_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs,
                                               int n, arena_t *a, struct mat_batch_plan *plan, int *bad, char *err,
                                               size_t errlen)
{
    struct generic *g = m->state;
    if (n > 0 && cs[0].is_delete) {
        /* a repeated key is harmless here: the row goes once */
        strbuf_t keys = STRBUF_ARENA(a);
        sb_putc(&keys, '{');
        for (int i = 0; i < n; i++)
            sb_pg_array_str(&keys, cs[i].pk);
        sb_putc(&keys, '}');
        plan->stmts = arena_calloc(a, 1, sizeof *plan->stmts);
        plan->nstmts = 1;
        plan->stmts[0].stmt = g->delete_set_stmt;
        plan->stmts[0].nparams = 1;
        plan->stmts[0].values[0] = sb_cstr(&keys);
        return MAT_PLANNED;
    }
    /* the layer of each change: how many earlier changes of the batch wrote its key */
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap <<= 1;
    const char **slot_pk = arena_calloc(a, cap, sizeof *slot_pk);
    int *slot_count = arena_calloc(a, cap, sizeof *slot_count);
    int ngroups = 0, cap_groups = 4;
    struct row_group *groups = arena_calloc(a, (size_t)cap_groups, sizeof *groups);
    bool wide = g->ncols > MAX_PREPARED_COLUMNS;
    for (int i = 0; i < n; i++) {
        size_t h = (size_t)hash_pk(cs[i].pk) & (cap - 1);
        while (slot_pk[h] && strcmp(slot_pk[h], cs[i].pk) != 0)
            h = (h + 1) & (cap - 1);
        slot_pk[h] = cs[i].pk;
        int layer = slot_count[h]++;
        bool *present = arena_calloc(a, (size_t)g->ncols, sizeof *present);
        uint64_t mask;
        strbuf_t obj = STRBUF_ARENA(a);
        if (!row_object(g, &cs[i], a, &obj, present, &mask, err, errlen)) {
            *bad = i;
            return MAT_UNCONVERTIBLE;
        }
        int gi = 0;
        for (; gi < ngroups; gi++)
            if (groups[gi].layer == layer &&
                (wide ? memcmp(groups[gi].present, present, (size_t)g->ncols * sizeof *present) == 0
                      : groups[gi].mask == mask))
                break;
        if (gi == ngroups) {
            if (ngroups == cap_groups) {
                struct row_group *more = arena_calloc(a, (size_t)cap_groups * 2, sizeof *more);
                memcpy(more, groups, (size_t)ngroups * sizeof *groups);
                groups = more;
                cap_groups *= 2;
            }
            groups[gi].layer = layer;
            groups[gi].present = present;
            groups[gi].mask = mask;
            groups[gi].rows = (strbuf_t)STRBUF_ARENA(a);
            groups[gi].keys = (strbuf_t)STRBUF_ARENA(a);
            for (int col = 0; col < g->ncols; col++)
                groups[gi].updates |= present[col] && col != g->pk;
            sb_putc(&groups[gi].rows, '[');
            sb_putc(&groups[gi].keys, '{');
            ngroups++;
        } else {
            sb_putc(&groups[gi].rows, ',');
        }
        sb_append(&groups[gi].rows, obj.data, obj.len);
        sb_pg_array_str(&groups[gi].keys, cs[i].pk);
    }
    /* stable enough: groups of one layer keep no order among themselves, and need none (each key
     * is in one of them at most) */
    qsort(groups, (size_t)ngroups, sizeof *groups, group_cmp);
    plan->stmts = arena_calloc(a, (size_t)(ngroups ? ngroups : 1), sizeof *plan->stmts);
    for (int gi = 0; gi < ngroups; gi++) {
        struct mat_set_stmt *st = &plan->stmts[plan->nstmts++];
        sb_putc(&groups[gi].rows, ']');
        sb_putc(&groups[gi].keys, '}');
        st->nparams = groups[gi].updates ? 2 : 1;
        st->values[0] = sb_cstr(&groups[gi].rows);
        st->values[1] = sb_cstr(&groups[gi].keys);
        if (!wide) {
            const char *name = prepare_upsert(m, conn, groups[gi].mask, groups[gi].present, true, err, errlen);
            if (!name)
                return MAT_DB_ERROR;
            st->stmt = arena_strdup(a, name);
        } else {
            strbuf_t sql = STRBUF_INIT;
            upsert_sql(m, groups[gi].present, true, &sql);
            st->sql = arena_strndup(a, sql.data, sql.len);
            sb_free(&sql);
        }
    }
    return MAT_PLANNED;
}

const struct materializer_ops generic_materializer_ops = {
    .name = "generic",
    .create = generic_create,
    .destroy = generic_destroy,
    .connect = generic_connect,
    .plan = generic_plan,
    .batches = generic_batches,
    .plan_batch = generic_plan_batch,
};
