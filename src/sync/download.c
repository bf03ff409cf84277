/* GET /sync/download (SPEC §5): one indexed range scan on (user_id, server_id) per page. */
#include "internal.h"
#include "../log.h"

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
 * DELETE is one read of scl_user_delete_seq_idx, in the page's snapshot. */
#define DOWNLOAD_COLUMNS                                                                                         \
    "SELECT l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid, l.payload::text, l.server_version,"      \
    "       CASE WHEN l.server_id <= (SELECT coalesce(max(d.server_id), 0) FROM sync.server_change_log d"        \
    "                                  WHERE d.user_id = $1 AND d.op = 'DELETE')"                                 \
    "            THEN coalesce((SELECT m.deleted FROM sync.sync_row_meta m"                                       \
    "                            WHERE m.user_id = l.user_id AND m.schema_name = l.schema_name"                   \
    "                              AND m.table_name = l.table_name AND m.pk_uuid = l.pk_uuid), false)"            \
    "            ELSE false END,"                                                                                 \
    "       l.source_id, l.source_change_id,"                                                                     \
    "       to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"                                 \
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
                                                 p->schema ? 7 : 6, NULL, vals, NULL, NULL, 0));
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            return sync_db_failure(rq, r, "download", err, errlen);
    }

    int n = r ? PQntuples(r) : 0;
    bool more = n > p->limit;
    if (more)
        n = p->limit;
    /* the answer's size, reserved at once: an arena buffer would keep every outgrown copy */
    size_t need = 128;
    for (int i = 0; i < n; i++) {
        need += 200;   /* names, punctuation, escapes of the short text fields */
        for (int f = 0; f < 11; f++)
            need += (size_t)PQgetlength(r, i, f);
    }
    sb_reserve(out, need);
    sb_puts(out, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            sb_putc(out, ',');
        sb_puts(out, "{\"server_id\":");
        sb_puts(out, PQgetvalue(r, i, 0));
        sb_puts(out, ",\"schema\":");
        sb_json_str(out, PQgetvalue(r, i, 1));
        sb_puts(out, ",\"table\":");
        sb_json_str(out, PQgetvalue(r, i, 2));
        sb_puts(out, ",\"op\":");
        sb_json_str(out, PQgetvalue(r, i, 3));
        sb_puts(out, ",\"pk\":\"");
        sb_puts(out, PQgetvalue(r, i, 4));
        sb_puts(out, "\",\"payload\":");
        if (PQgetisnull(r, i, 5))
            sb_puts(out, "null");
        else
            sb_append(out, PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5));
        sb_puts(out, ",\"server_version\":");
        sb_puts(out, PQgetvalue(r, i, 6));
        sb_puts(out, ",\"deleted\":");
        sb_puts(out, PQgetvalue(r, i, 7)[0] == 't' ? "true" : "false");
        sb_puts(out, ",\"source_id\":");
        sb_json_str(out, PQgetvalue(r, i, 8));
        sb_puts(out, ",\"source_change_id\":");
        sb_puts(out, PQgetvalue(r, i, 9));
        sb_puts(out, ",\"ts\":\"");
        sb_puts(out, PQgetvalue(r, i, 10));
        sb_puts(out, "\"}");
    }
    const char *next = n ? PQgetvalue(r, n - 1, 0) : after;
    sb_printf(out, "],\"has_more\":%s,\"next_after\":%s,\"window_until\":%lld}", more ? "true" : "false",
              next, window);
    *nrows = (unsigned long)n;
    return SYNC_OK;
}
