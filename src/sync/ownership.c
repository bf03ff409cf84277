/* Row ownership across users (sql/migrations/0004_row_owner.sql, docs/materializers.md): the
 * keys of a materialized table belong to the user that created them. Uploads claim keys and
 * refuse other users' (upload.c); this file keeps sync.row_owner in step with the registry. */
#include "sync.h"
#include "../log.h"

#include <stdio.h>
#include <stdlib.h>

/* $1, $2: schemas and names of the materialized tables. A table new to the list has its existing
 * rows adopted: each key goes to the user whose sync state wrote it first (ties by user id). */
static const char adopt_sql[] =
    "WITH want AS (SELECT * FROM unnest($1::text[], $2::text[]) AS w(s, t)),"
    " gone AS ("
    "  DELETE FROM sync.row_owner_tables o"
    "   WHERE NOT EXISTS (SELECT 1 FROM want WHERE want.s = o.schema_name AND want.t = o.table_name)),"
    " fresh AS ("
    "  INSERT INTO sync.row_owner_tables (schema_name, table_name) SELECT s, t FROM want"
    "  ON CONFLICT DO NOTHING RETURNING schema_name, table_name),"
    " adopted AS ("
    "  INSERT INTO sync.row_owner (schema_name, table_name, pk_uuid, user_id)"
    "  SELECT DISTINCT ON (m.schema_name, m.table_name, m.pk_uuid) m.schema_name, m.table_name, m.pk_uuid, m.user_id"
    "    FROM sync.sync_row_meta m JOIN fresh f ON f.schema_name = m.schema_name AND f.table_name = m.table_name"
    "   ORDER BY m.schema_name, m.table_name, m.pk_uuid, m.updated_at, m.user_id"
    "  ON CONFLICT DO NOTHING RETURNING 1),"
    " shared AS ("
    "  SELECT 1 FROM sync.sync_row_meta m JOIN fresh f ON f.schema_name = m.schema_name AND f.table_name = m.table_name"
    "   GROUP BY m.schema_name, m.table_name, m.pk_uuid HAVING count(DISTINCT m.user_id) > 1)"
    "SELECT (SELECT string_agg(schema_name || '.' || table_name, ', ') FROM fresh),"
    "       (SELECT count(*) FROM adopted), (SELECT count(*) FROM shared)";

bool sync_ownership_setup(const struct sync_schema *s, PGconn *conn, char *err, size_t errlen)
{
    PGresult *r = sync_schema_query(s, true, conn, adopt_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sync_pg_error_text(conn, r, "adopting row owners", err, errlen);
        PQclear(r);
        return false;
    }
    if (!PQgetisnull(r, 0, 0)) {
        log_info("row ownership: adopted %s existing row(s) of %s", PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0));
        if (atoll(PQgetvalue(r, 0, 2)) > 0)
            log_warn("row ownership: %s row(s) of %s are held by more than one user's sync state; each now "
                     "belongs to the user that wrote it first, and the others' changes to it are refused",
                     PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return true;
}
