#include "internal.h"
#include "../strbuf.h"
#include "../xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *quote_table(const char *schema, const char *table)
{
    /* names are ^[a-z0-9_]+$ (checked by the configuration), so quoting is plain */
    size_t n = strlen(schema) + strlen(table) + 6;
    char *q = xmalloc(n);
    snprintf(q, n, "\"%s\".\"%s\"", schema, table);
    return q;
}

/* One row per kind; MATERIALIZER_NONE has none. */
static const struct materializer_ops *const kinds[] = {
    [MATERIALIZER_GENERIC] = &generic_materializer_ops,
    [MATERIALIZER_SQL] = &sqlfunc_materializer_ops,
    [MATERIALIZER_PLUGIN] = &plugin_materializer_ops,
};

struct materializer *materializer_new(const struct table_conf *t, char *err, size_t errlen)
{
    const struct materializer_ops *ops =
        (size_t)t->materializer < sizeof kinds / sizeof kinds[0] ? kinds[t->materializer] : NULL;
    if (!ops)
        return NULL;
    char why[400];
    void *state = ops->create(t, why, sizeof why);
    if (!state) {
        snprintf(err, errlen, "[table %s.%s] materializer: %s", t->schema, t->name, why);
        return NULL;
    }
    struct materializer *m = xcalloc(1, sizeof *m);
    m->ops = ops;
    m->state = state;
    m->schema = xstrdup(t->schema);
    m->table = xstrdup(t->name);
    m->qtable = quote_table(t->schema, t->name);
    return m;
}

void materializer_free(struct materializer *m)
{
    if (!m)
        return;
    m->ops->destroy(m->state);
    free(m->schema);
    free(m->table);
    free(m->qtable);
    free(m);
}

bool materializer_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    char why[400];
    if (m->ops->connect(m, conn, why, sizeof why))
        return true;
    snprintf(err, errlen, "[table %s.%s] materializer: %s", m->schema, m->table, why);
    return false;
}

enum mat_plan_result materializer_plan(struct materializer *m, PGconn *conn, const struct mat_change *c,
                                       arena_t *a, struct mat_plan *plan, char *err, size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    return m->ops->plan(m, conn, c, a, plan, err, errlen);
}

bool materializer_batches(const struct materializer *m)
{
    return m && m->ops->batches && m->ops->plan_batch && m->ops->batches(m);
}

enum mat_plan_result materializer_plan_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs,
                                             int n, arena_t *a, struct mat_batch_plan *plan, int *bad, char *err,
                                             size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    *bad = -1;
    return m->ops->plan_batch(m, conn, cs, n, a, plan, bad, err, errlen);
}

bool materializer_apply_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs, int n, char *err,
                              size_t errlen)
{
    if (!m->ops->apply_batch) {
        snprintf(err, errlen, "the %s materializer has no synchronous batch apply", m->ops->name);
        return false;
    }
    return m->ops->apply_batch(m, conn, cs, n, err, errlen);
}

int materializer_convert_reference(struct materializer *m, const char *column, const char *value, char *out,
                                   size_t outlen, char *err, size_t errlen)
{
    if (!m || !m->ops->convert_reference)
        return 0;
    return m->ops->convert_reference(m, column, value, out, outlen, err, errlen);
}

bool materializer_apply(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err,
                        size_t errlen)
{
    if (!m->ops->apply) {
        snprintf(err, errlen, "the %s materializer has no synchronous apply", m->ops->name);
        return false;
    }
    return m->ops->apply(m, conn, c, err, errlen);
}

void materializer_error_text(const PGresult *res, PGconn *conn, char *err, size_t errlen)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *msg = primary ? primary : res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    snprintf(err, errlen, "%s", msg && *msg ? msg : "unknown database error");
    str_trim_right(err);
}

void materializer_stmt_name(char *out, size_t n, const char *prefix)
{
    static unsigned long counter;
    snprintf(out, n, "%s_%lu", prefix, ++counter);
}

bool materializers_verify(const struct config *cfg, PGconn *conn, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->n_tables; i++) {
        const struct table_conf *t = &cfg->tables[i];
        if (t->materializer == MATERIALIZER_NONE)
            continue;
        struct materializer *m = materializer_new(t, err, errlen);
        if (!m)
            return false;
        bool ok = !conn || materializer_connect(m, conn, err, errlen);
        materializer_free(m);
        if (!ok)
            return false;
    }
    return true;
}
