#include "pipeline.h"
#include "../xalloc.h"

#include <stdlib.h>
#include <string.h>

void pipeline_begin(struct pipeline *p, PGconn *conn)
{
    memset(p, 0, sizeof *p);
    p->conn = conn;
    p->failed = -1;
    p->res = p->first;
    p->cap = PIPELINE_MAX;
    PQenterPipelineMode(conn);
}

bool pipeline_add(struct pipeline *p, const char *name, const char *sql, int nparams,
                  const char *const *values)
{
    if (p->n == p->cap) {
        /* more statements than the first slots hold: the result slots grow, the pipeline goes on
         * (libpq reads results while it cannot send, so a long pipeline cannot deadlock) */
        int cap = p->cap * 2;
        PGresult **res = xmalloc((size_t)cap * sizeof *res);
        memcpy(res, p->res, (size_t)p->n * sizeof *res);
        if (p->res != p->first)
            free(p->res);
        p->res = res;
        p->cap = cap;
    }
    int ok = name ? PQsendQueryPrepared(p->conn, name, nparams, values, NULL, NULL, 0)
                  : PQsendQueryParams(p->conn, sql, nparams, NULL, values, NULL, NULL, 0);
    if (!ok)
        return false;
    p->n++;
    return true;
}

bool pipeline_run(struct pipeline *p)
{
    bool ok = PQpipelineSync(p->conn) == 1;
    for (int i = 0; ok && i < p->n; i++) {
        PGresult *r = PQgetResult(p->conn);
        if (!r) {
            ok = false;
            break;
        }
        p->res[i] = r;
        p->got = i + 1;
        /* each statement's results end with a NULL */
        PGresult *extra;
        while ((extra = PQgetResult(p->conn)) != NULL)
            PQclear(extra);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && p->failed < 0)
            p->failed = i;
    }
    if (ok) {
        PGresult *sync = PQgetResult(p->conn);
        if (!sync || PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
            ok = false;
        PQclear(sync);
    }
    if (!ok && PQstatus(p->conn) == CONNECTION_OK) {
        /* drain whatever is left so the connection can leave pipeline mode */
        PGresult *r;
        for (int guard = 0; guard < 4 * p->n + 16; guard++) {
            r = PQgetResult(p->conn);
            if (!r)
                continue;
            ExecStatusType st = PQresultStatus(r);
            PQclear(r);
            if (st == PGRES_PIPELINE_SYNC)
                break;
        }
    }
    PQexitPipelineMode(p->conn);
    return ok && p->failed < 0;
}

void pipeline_clear(struct pipeline *p)
{
    for (int i = 0; i < p->got; i++)
        PQclear(p->res[i]);
    if (p->res != p->first)
        free(p->res);
    p->res = p->first;
    p->cap = PIPELINE_MAX;
    p->n = p->got = 0;
}

const PGresult *pipeline_error(const struct pipeline *p)
{
    return p->failed >= 0 ? p->res[p->failed] : NULL;
}
