/* GET /admin/materialize-failures (SPEC §7). */
#include "internal.h"
#include "../log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct db_statement admin_statements[] = {
    { "sync_list_failures",
      "SELECT id, schema_name, table_name, pk_uuid, attempted_version, op, payload::text, error,"
      "       to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), retry_count"
      "  FROM sync.materialize_failures"
      " WHERE user_id = $1 AND ($2::text IS NULL OR schema_name = $2) AND ($3::text IS NULL OR table_name = $3)"
      " ORDER BY first_seen DESC, id DESC LIMIT $4" },
};
const size_t n_admin_statements = sizeof admin_statements / sizeof admin_statements[0];

bool failures_params_parse(const char *schema, const char *table, const char *limit, const char **schema_out,
                           const char **table_out, int *limit_out, char *err, size_t errlen)
{
    *schema_out = *table_out = NULL;
    *limit_out = 100;
    if (schema && *schema) {
        if (!sync_name_ok(schema)) {
            snprintf(err, errlen, "schema must match ^[a-z0-9_]+$");
            return false;
        }
        *schema_out = schema;
    }
    if (table && *table) {
        if (!sync_name_ok(table)) {
            snprintf(err, errlen, "table must match ^[a-z0-9_]+$");
            return false;
        }
        *table_out = table;
    }
    if (limit) {
        size_t n = strlen(limit);
        if (n == 0 || n > 7 || strspn(limit, "0123456789") != n || atoi(limit) < 1 || atoi(limit) > 1000) {
            snprintf(err, errlen, "limit must be an integer from 1 to 1000");
            return false;
        }
        *limit_out = atoi(limit);
    }
    return true;
}

enum sync_outcome sync_list_failures(const struct sync_request *rq, const char *schema, const char *table,
                                     int limit, strbuf_t *out, char *err, size_t errlen)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *vals[4] = { rq->who->user, schema, table, lim };
    PGresult *r = db_result_in(rq->arena, PQexecPrepared(rq->conn, "sync_list_failures", 4, vals, NULL, NULL, 0));
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return sync_db_failure(rq, r, "listing failures", err, errlen);
    sb_putc(out, '[');
    for (int i = 0; i < PQntuples(r); i++) {
        if (i)
            sb_putc(out, ',');
        sb_printf(out, "{\"id\":%s,\"schema\":", PQgetvalue(r, i, 0));
        sb_json_str(out, PQgetvalue(r, i, 1));
        sb_puts(out, ",\"table\":");
        sb_json_str(out, PQgetvalue(r, i, 2));
        sb_printf(out, ",\"pk\":\"%s\",\"attempted_version\":%s,\"op\":", PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
        sb_json_str(out, PQgetvalue(r, i, 5));
        sb_puts(out, ",\"payload\":");
        sb_puts(out, PQgetisnull(r, i, 6) ? "null" : PQgetvalue(r, i, 6));
        sb_puts(out, ",\"error\":");
        sb_json_str(out, PQgetvalue(r, i, 7));
        sb_printf(out, ",\"first_seen\":\"%s\",\"retry_count\":%s}", PQgetvalue(r, i, 8), PQgetvalue(r, i, 9));
    }
    sb_putc(out, ']');
    return SYNC_OK;
}
