/* GET /sync/download (SPEC §5): one indexed range scan on (user_id, server_id) per page. */
#include "internal.h"
#include "../log.h"
#include "../uuid.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_count(const char *s, long long max, long long *out)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v > max)
        return false;
    *out = v;
    return true;
}

bool download_params_parse(const char *after, const char *limit, const char *schema,
                           const char *include_self, const char *until, struct download_params *p,
                           char *err, size_t errlen)
{
    p->after = 0;
    p->limit = 100;
    p->schema = NULL;
    p->include_self = false;
    p->until = 0;
    if (after && !parse_count(after, INT64_MAX, &p->after)) {
        snprintf(err, errlen, "after must be an integer >= 0");
        return false;
    }
    if (limit) {
        long long l;
        if (!parse_count(limit, 1000000, &l) || l < 1 || l > 1000) {
            snprintf(err, errlen, "limit must be an integer from 1 to 1000");
            return false;
        }
        p->limit = (int)l;
    }
    if (schema) {
        if (!sync_name_ok(schema)) {
            snprintf(err, errlen, "schema must match ^[a-z0-9_]+$");
            return false;
        }
        p->schema = schema;
    }
    p->include_self = include_self && strcmp(include_self, "true") == 0;
    if (until && !parse_count(until, INT64_MAX, &p->until)) {
        snprintf(err, errlen, "until must be an integer >= 0");
        return false;
    }
    return true;
}

/* Planned per call, like sql_highest (statements.c).
 *
 * deleted is the row's current flag (SPEC §5), which the log row alone cannot tell: a row
 * inserted and deleted since has deleted true on its INSERT, a row deleted and inserted again
 * has deleted false on its DELETE. Both need a DELETE of that row at or after the log row, so a
 * log row past the user's last DELETE tells it by itself: false (it is no DELETE, and nothing
 * deleted its row since). Only rows up to that DELETE look the row up in sync_row_meta; the last
 * DELETE is one read of scl_user_delete_seq_idx, in the page's snapshot. This relies on a user's
 * changes getting server_ids in the order they are written, which the upload's per-user lock
 * (sync_user_lock) guarantees.
 *
 * The page comes in libpq's binary format: numbers, the pk and ts are formatted here (PostgreSQL
 * would format them as text only for them to be copied), and the payload is the column's own
 * bytes, passed through (a jsonb column sends its text after a version byte, a json column its
 * text as stored). */
#define DOWNLOAD_COLUMNS                                                                                         \
    "SELECT l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid, l.payload, l.server_version,"            \
    "       CASE WHEN l.server_id <= (SELECT coalesce(max(d.server_id), 0) FROM sync.server_change_log d"        \
    "                                  WHERE d.user_id = $1 AND d.op = 'DELETE')"                                 \
    "            THEN coalesce((SELECT m.deleted FROM sync.sync_row_meta m"                                       \
    "                            WHERE m.user_id = l.user_id AND m.schema_name = l.schema_name"                   \
    "                              AND m.table_name = l.table_name AND m.pk_uuid = l.pk_uuid), false)"            \
    "            ELSE false END,"                                                                                 \
    "       l.source_id, l.source_change_id, l.ts"                                                                \
    "  FROM sync.server_change_log l"
static const char sql_download_all[] =
    DOWNLOAD_COLUMNS
    " WHERE l.user_id = $1 AND l.server_id > $2 AND l.server_id <= $3 AND ($4 OR l.source_id <> $5)"
    " ORDER BY l.server_id LIMIT $6";
static const char sql_download_schema[] =
    DOWNLOAD_COLUMNS
    " WHERE l.user_id = $1 AND l.schema_name = $7 AND l.server_id > $2 AND l.server_id <= $3"
    "   AND ($4 OR l.source_id <> $5)"
    " ORDER BY l.server_id LIMIT $6";

/* The page's column types, as the binary values below are read. */
static const Oid download_types[11] = { 20 /* int8 */, 25 /* text */, 25, 25, 2950 /* uuid */, 0 /* payload */,
                                        20, 16 /* bool */, 25, 20, 1184 /* timestamptz */ };
enum { OID_JSON = 114, OID_JSONB = 3802, OID_TEXT = 25 };

static bool page_types_ok(const PGresult *r)
{
    if (PQnfields(r) != 11)
        return false;
    for (int f = 0; f < 11; f++) {
        Oid t = PQftype(r, f);
        if (f == 5 ? t != OID_JSON && t != OID_JSONB && t != OID_TEXT : t != download_types[f])
            return false;
    }
    return true;
}

static int64_t get_i64(const char *v)
{
    const unsigned char *b = (const unsigned char *)v;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | b[i];
    return (int64_t)x;
}

static void put_i64(strbuf_t *out, const char *v)
{
    sb_put_i64(out, get_i64(v));
}

/* The canonical text of a binary uuid. */
static void put_uuid(strbuf_t *out, const char *v)
{
    char buf[UUID_STR_LEN + 1];
    uuid_format((const uint8_t *)v, buf);
    sb_append(out, buf, UUID_STR_LEN);
}

static void put_digits(char **p, long long v, int width)
{
    char *end = *p + width;
    for (char *q = end; q > *p; v /= 10)
        *--q = (char)('0' + v % 10);
    *p = end;
}

/* A binary timestamptz (microseconds since 2000-01-01 00:00 UTC) as
 * to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') writes it: a year of at least
 * four digits (a year BC as its number, as YYYY does), and nothing for ±infinity, for which
 * to_char gives NULL. */
void sync_format_ts(strbuf_t *out, int64_t us)
{
    if (us == INT64_MIN || us == INT64_MAX)
        return;
    int64_t day = us / 86400000000LL, tod = us % 86400000000LL;
    if (tod < 0) {
        tod += 86400000000LL;
        day--;
    }
    /* civil date of a day count from 1970-01-01 (proleptic Gregorian, as PostgreSQL) */
    int64_t z = day + 10957 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int64_t y = yoe + era * 400 + (m <= 2);
    if (y <= 0)
        y = 1 - y;   /* 1 BC is year 0 */
    char buf[40], *q = buf;
    char yb[24];
    size_t yl = put_u64(yb, (unsigned long long)y);
    for (size_t i = yl; i < 4; i++)
        *q++ = '0';
    memcpy(q, yb, yl);
    q += yl;
    *q++ = '-';
    put_digits(&q, m, 2);
    *q++ = '-';
    put_digits(&q, d, 2);
    *q++ = 'T';
    long long secs = tod / 1000000;
    put_digits(&q, secs / 3600, 2);
    *q++ = ':';
    put_digits(&q, secs / 60 % 60, 2);
    *q++ = ':';
    put_digits(&q, secs % 60, 2);
    *q++ = '.';
    put_digits(&q, tod % 1000000, 6);
    *q++ = 'Z';
    sb_append(out, buf, (size_t)(q - buf));
}

enum sync_outcome sync_download(const struct sync_request *rq, const struct download_params *p,
                                strbuf_t *out, unsigned long *nrows, char *err, size_t errlen)
{
    char after[24], until[24], limit[16];
    snprintf(after, sizeof after, "%lld", p->after);
    snprintf(limit, sizeof limit, "%d", p->limit + 1);   /* one more tells whether there is more */
    const char *user[1] = { rq->who->user };

    /* The window's upper end and the page come from one snapshot only when until is given; with
     * until = 0 the end is read first, and the page is bounded by it, so rows committed in
     * between wait for the next window. */
    long long window = p->until;
    if (window == 0) {
        PGresult *r = db_result_in(rq->arena, PQexecParams(rq->conn, sql_highest, 1, NULL, user, NULL, NULL, 0));
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            return sync_db_failure(rq, r, "download", err, errlen);
        window = atoll(PQgetvalue(r, 0, 0));
    }
    snprintf(until, sizeof until, "%lld", window);

    PGresult *r = NULL;
    if (window > p->after) {
        const char *vals[7] = { rq->who->user, after, until, p->include_self ? "t" : "f",
                                rq->who->device, limit, p->schema };
        r = db_result_in(rq->arena, PQexecParams(rq->conn, p->schema ? sql_download_schema : sql_download_all,
                                                 p->schema ? 7 : 6, NULL, vals, NULL, NULL, 1));
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            return sync_db_failure(rq, r, "download", err, errlen);
    }

    if (r && !page_types_ok(r)) {
        snprintf(err, errlen, "download: sync.server_change_log does not have the column types oversyncd reads");
        log_error("request %s: %s", rq->request_id, err);
        return SYNC_FAILED;
    }
    int n = r ? PQntuples(r) : 0;
    bool more = n > p->limit;
    if (more)
        n = p->limit;
    /* a jsonb payload is its text after one version byte */
    int skip = r && PQftype(r, 5) == OID_JSONB ? 1 : 0;
    /* the answer's size, reserved at once: an arena buffer would keep every outgrown copy */
    size_t need = 128;
    for (int i = 0; i < n; i++) {
        need += 300;   /* names, punctuation, numbers, pk, ts, escapes of the short text fields */
        for (int f = 0; f < 11; f++)
            need += (size_t)PQgetlength(r, i, f);
    }
    sb_reserve(out, need);
    sb_puts(out, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            sb_putc(out, ',');
        sb_puts(out, "{\"server_id\":");
        put_i64(out, PQgetvalue(r, i, 0));
        sb_puts(out, ",\"schema\":");
        sb_json_strn(out, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
        sb_puts(out, ",\"table\":");
        sb_json_strn(out, PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
        sb_puts(out, ",\"op\":");
        sb_json_strn(out, PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3));
        sb_puts(out, ",\"pk\":\"");
        put_uuid(out, PQgetvalue(r, i, 4));
        sb_puts(out, "\",\"payload\":");
        int plen = PQgetlength(r, i, 5);
        if (PQgetisnull(r, i, 5) || plen < skip)
            sb_puts(out, "null");
        else
            sb_append(out, PQgetvalue(r, i, 5) + skip, (size_t)(plen - skip));
        sb_puts(out, ",\"server_version\":");
        put_i64(out, PQgetvalue(r, i, 6));
        sb_puts(out, ",\"deleted\":");
        sb_puts(out, PQgetvalue(r, i, 7)[0] ? "true" : "false");
        sb_puts(out, ",\"source_id\":");
        sb_json_strn(out, PQgetvalue(r, i, 8), (size_t)PQgetlength(r, i, 8));
        sb_puts(out, ",\"source_change_id\":");
        put_i64(out, PQgetvalue(r, i, 9));
        sb_puts(out, ",\"ts\":\"");
        sync_format_ts(out, get_i64(PQgetvalue(r, i, 10)));
        sb_puts(out, "\"}");
    }
    sb_puts(out, "],\"has_more\":");
    sb_puts(out, more ? "true" : "false");
    sb_puts(out, ",\"next_after\":");
    if (n)
        put_i64(out, PQgetvalue(r, n - 1, 0));
    else
        sb_puts(out, after);
    sb_puts(out, ",\"window_until\":");
    sb_put_i64(out, window);
    sb_putc(out, '}');
    *nrows = (unsigned long)n;
    return SYNC_OK;
}
