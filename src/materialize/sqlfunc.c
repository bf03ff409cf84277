/* sql:<schema.function>: the function is called as f(op, schema, tbl, pk, payload, user_id) when it
 * takes the user, else as f(op, schema, tbl, pk, payload); an exception it raises is the change's
 * materialize error.
 *
 * Its batch form f(schema text, tbl text, changes jsonb, user_id text) (an overload of the same
 * name) is called once with all upserts of the table in a batch, and once with all its deletes:
 * changes is a JSON array of {"op", "pk", "payload"} in apply order. When it raises, oversyncd
 * applies the batch again change by change: with the per-change form, or with the batch form and
 * one change at a time when that is the only form. */
#include "internal.h"
#include "../strbuf.h"
#include "../xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sqlfunc {
    char *function;          /* schema.function, lower-case */
    char stmt[32];           /* the per-change form; "" when there is none */
    int nargs;               /* 6: it takes the user; 5: the original signature; 0: none */
    char batch_stmt[32];     /* the batch form; "" when there is none */
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

static bool prepare(PGconn *conn, char *name, size_t namelen, const char *prefix, const char *sql, char *err,
                    size_t errlen)
{
    materializer_stmt_name(name, namelen, prefix);
    PGresult *r = PQprepare(conn, name, sql, 0, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        materializer_error_text(r, conn, err, errlen);
    PQclear(r);
    return ok;
}

static bool sqlfunc_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    struct sqlfunc *f = m->state;
    f->stmt[0] = f->batch_stmt[0] = '\0';
    f->nargs = 0;
    const char *vals[1] = { f->function };
    /* per change: the six-argument form wins when both exist; the batch form (4 arguments) besides */
    PGresult *r = PQexecParams(conn,
                               "SELECT format('%I.%I', n.nspname, p.proname), p.pronargs FROM pg_proc p "
                               "JOIN pg_namespace n ON n.oid = p.pronamespace "
                               "WHERE n.nspname || '.' || p.proname = $1 AND ("
                               " p.proargtypes = '25 25 25 2950 3802 25'::oidvector OR"
                               " p.proargtypes = '25 25 25 2950 3802'::oidvector OR"
                               " p.proargtypes = '25 25 3802 25'::oidvector) "
                               "ORDER BY p.pronargs DESC",
                               1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        snprintf(err, errlen,
                 "no function %s(op text, schema text, tbl text, pk uuid, payload jsonb, user_id text),"
                 " %s(op text, schema text, tbl text, pk uuid, payload jsonb)"
                 " or %s(schema text, tbl text, changes jsonb, user_id text)",
                 f->function, f->function, f->function);
        PQclear(r);
        return false;
    }
    bool batch = false;
    for (int i = 0; i < PQntuples(r); i++) {
        int nargs = atoi(PQgetvalue(r, i, 1));
        if (nargs == 4)
            batch = true;
        else if (!f->nargs)
            f->nargs = nargs;
    }
    char *name = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    strbuf_t sql = STRBUF_INIT;
    bool ok = true;
    if (f->nargs) {
        sb_printf(&sql, "SELECT %s($1::text, $2::text, $3::text, $4::uuid, $5::jsonb%s)", name,
                  f->nargs == 6 ? ", $6::text" : "");
        ok = prepare(conn, f->stmt, sizeof f->stmt, "msf", sql.data, err, errlen);
    }
    if (ok && batch) {
        sb_reset(&sql);
        sb_printf(&sql, "SELECT %s($1::text, $2::text, $3::jsonb, $4::text)", name);
        ok = prepare(conn, f->batch_stmt, sizeof f->batch_stmt, "msb", sql.data, err, errlen);
    }
    sb_free(&sql);
    free(name);
    return ok;
}

/* The batch form's changes argument: a JSON array of {"op", "pk", "payload"}. */
static const char *changes_json(const struct mat_change *cs, int n, arena_t *a)
{
    size_t need = 2;
    for (int i = 0; i < n; i++)
        need += 96 + (cs[i].is_delete ? 4 : cs[i].payload_len);
    strbuf_t out = STRBUF_ARENA(a);
    sb_reserve(&out, need);
    sb_putc(&out, '[');
    for (int i = 0; i < n; i++) {
        sb_puts(&out, i ? ",{\"op\":" : "{\"op\":");
        sb_json_str(&out, cs[i].op);
        sb_puts(&out, ",\"pk\":");
        sb_json_str(&out, cs[i].pk);
        sb_puts(&out, ",\"payload\":");
        if (cs[i].is_delete)
            sb_puts(&out, "null");
        else
            sb_append(&out, cs[i].payload, cs[i].payload_len);
        sb_putc(&out, '}');
    }
    sb_putc(&out, ']');
    return sb_cstr(&out);
}

static enum mat_plan_result sqlfunc_plan(struct materializer *m, PGconn *conn, const struct mat_change *c,
                                         arena_t *a, struct mat_plan *plan, char *err, size_t errlen)
{
    (void)conn; (void)err; (void)errlen;
    const struct sqlfunc *f = m->state;
    if (!f->nargs) {
        /* only the batch form: a batch of one */
        plan->stmt = f->batch_stmt;
        plan->nparams = 4;
        plan->values[0] = c->schema;
        plan->values[1] = c->table;
        plan->values[2] = changes_json(c, 1, a);
        plan->values[3] = c->user;
        return MAT_PLANNED;
    }
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

static bool sqlfunc_batches(const struct materializer *m)
{
    const struct sqlfunc *f = m->state;
    return f->batch_stmt[0] != '\0';
}

static enum mat_plan_result sqlfunc_plan_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs,
                                               int n, arena_t *a, struct mat_batch_plan *plan, int *bad, char *err,
                                               size_t errlen)
{
    (void)conn; (void)bad; (void)err; (void)errlen;
    const struct sqlfunc *f = m->state;
    plan->stmts = arena_calloc(a, 1, sizeof *plan->stmts);
    plan->nstmts = 1;
    plan->stmts[0].stmt = f->batch_stmt;
    plan->stmts[0].nparams = 4;
    plan->stmts[0].values[0] = cs[0].schema;
    plan->stmts[0].values[1] = cs[0].table;
    plan->stmts[0].values[2] = changes_json(cs, n, a);
    plan->stmts[0].values[3] = cs[0].user;
    return MAT_PLANNED;
}

const struct materializer_ops sqlfunc_materializer_ops = {
    .name = "sql",
    .create = sqlfunc_create,
    .destroy = sqlfunc_destroy,
    .connect = sqlfunc_connect,
    .plan = sqlfunc_plan,
    .batches = sqlfunc_batches,
    .plan_batch = sqlfunc_plan_batch,
};
