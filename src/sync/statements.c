/* The sync core's statements: each module keeps its own list (upload.c, admin.c; download.c's
 * two queries are planned per call), registered here for every connection to prepare; and the
 * one way a failed statement is classified, reported and logged. */
#include "internal.h"
#include "../log.h"

#include <stdio.h>
#include <string.h>

/* Planned on every call (sent unnamed, never prepared): with a generic plan PostgreSQL may walk
 * the server_id-only index and filter by user, so a user with a short log pays for everybody
 * else's rows (measured: 616 ms instead of 1 ms for a first page, docs/performance.md). */
const char sql_highest[] =
    "SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = $1";
void sync_register_statements(void)
{
    db_register_statements(upload_statements, n_upload_statements);
    db_register_statements(admin_statements, n_admin_statements);
}

enum sync_outcome sync_classify_pg_error(PGconn *conn, const PGresult *res)
{
    if (PQstatus(conn) != CONNECTION_OK || !res)
        return SYNC_UNAVAILABLE;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!state)
        return SYNC_FAILED;
    /* lock/statement timeout, serialization failure, deadlock, server shutting down */
    if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0 || strcmp(state, "40001") == 0 ||
        strcmp(state, "40P01") == 0 || strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0 ||
        strcmp(state, "53300") == 0)
        return SYNC_UNAVAILABLE;
    return SYNC_FAILED;
}

void sync_pg_error_text(PGconn *conn, const PGresult *res, const char *stage, char *err, size_t errlen)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (primary)
        snprintf(err, errlen, "%s: %s %s", stage, state ? state : "", primary);
    else if (PQstatus(conn) != CONNECTION_OK)
        snprintf(err, errlen, "%s: connection lost", stage);
    else
        snprintf(err, errlen, "%s: %s", stage, res ? PQresStatus(PQresultStatus(res)) : "no result");
    str_trim_right(err);
}

enum sync_outcome sync_db_failure(const struct sync_request *rq, const PGresult *res, const char *stage, char *err,
                                  size_t errlen)
{
    PGconn *conn = rq->conn;
    enum sync_outcome o = sync_classify_pg_error(conn, res);
    sync_pg_error_text(conn, res, stage, err, errlen);
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(conn, "ROLLBACK");
        PQclear(r);
    }
    log_error("request %s: %s", rq->request_id, err);
    return o;
}
