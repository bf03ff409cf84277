/* sql:<schema.function>: the function is called as f(op, schema, tbl, pk, payload, user_id) when it
 * takes the user, else as f(op, schema, tbl, pk, payload); an exception it raises is the change's
 * materialize error. */
#include "internal.h"
#include "../strbuf.h"
#include "../xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sqlfunc {
    char *function;          /* schema.function, lower-case */
    char stmt[32];
    int nargs;               /* 6: it takes the user; 5: the original signature */
};

static void *sqlfunc_create(const struct table_conf *t, char *err, size_t errlen)
{
    (void)err; (void)errlen;
    struct sqlfunc *f = xcalloc(1, sizeof *f);
    f->function = xstrdup(t->materializer_arg);
    return f;
}

static void sqlfunc_destroy(void *state)
{
    struct sqlfunc *f = state;
    free(f->function);
    free(f);
}

static bool sqlfunc_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    struct sqlfunc *f = m->state;
    const char *vals[1] = { f->function };
    /* the six-argument form wins when both exist */
    PGresult *r = PQexecParams(conn,
                               "SELECT format('%I.%I', n.nspname, p.proname), p.pronargs FROM pg_proc p "
                               "JOIN pg_namespace n ON n.oid = p.pronamespace "
                               "WHERE n.nspname || '.' || p.proname = $1 AND ("
                               " p.proargtypes = '25 25 25 2950 3802 25'::oidvector OR"
                               " p.proargtypes = '25 25 25 2950 3802'::oidvector) "
                               "ORDER BY p.pronargs DESC LIMIT 1",
                               1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(err, errlen,
                 "no function %s(op text, schema text, tbl text, pk uuid, payload jsonb, user_id text)"
                 " or %s(op text, schema text, tbl text, pk uuid, payload jsonb)",
                 f->function, f->function);
        PQclear(r);
        return false;
    }
    f->nargs = atoi(PQgetvalue(r, 0, 1));
    strbuf_t sql = STRBUF_INIT;
    sb_printf(&sql, "SELECT %s($1::text, $2::text, $3::text, $4::uuid, $5::jsonb%s)", PQgetvalue(r, 0, 0),
              f->nargs == 6 ? ", $6::text" : "");
    PQclear(r);
    materializer_stmt_name(f->stmt, sizeof f->stmt, "msf");
    r = PQprepare(conn, f->stmt, sql.data, 0, NULL);
    sb_free(&sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        materializer_error_text(r, conn, err, errlen);
    PQclear(r);
    return ok;
}

static enum mat_plan_result sqlfunc_plan(struct materializer *m, PGconn *conn, const struct mat_change *c,
                                         arena_t *a, struct mat_plan *plan, char *err, size_t errlen)
{
    (void)conn; (void)a; (void)err; (void)errlen;
    const struct sqlfunc *f = m->state;
    plan->stmt = f->stmt;
    plan->nparams = f->nargs;
    plan->values[0] = c->op;
    plan->values[1] = c->schema;
    plan->values[2] = c->table;
    plan->values[3] = c->pk;
    plan->values[4] = c->is_delete ? NULL : c->payload;
    plan->values[5] = c->user;
    return MAT_PLANNED;
}

const struct materializer_ops sqlfunc_materializer_ops = {
    .name = "sql",
    .create = sqlfunc_create,
    .destroy = sqlfunc_destroy,
    .connect = sqlfunc_connect,
    .plan = sqlfunc_plan,
};
