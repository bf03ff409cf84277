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

struct materializer *materializer_new(const struct table_conf *t, char *err, size_t errlen)
{
    if (t->materializer == MATERIALIZER_NONE)
        return NULL;
    struct materializer *m = xcalloc(1, sizeof *m);
    m->kind = t->materializer;
    m->schema = xstrdup(t->schema);
    m->table = xstrdup(t->name);
    m->qtable = quote_table(t->schema, t->name);
    switch (t->materializer) {
    case MATERIALIZER_GENERIC:
        m->generic = generic_new();
        break;
    case MATERIALIZER_SQL:
        m->sqlfunc = sqlfunc_new(t->materializer_arg);
        break;
    case MATERIALIZER_PLUGIN: {
        char why[400];
        m->plugin = plugin_load(t->materializer_arg, why, sizeof why);
        if (!m->plugin) {
            snprintf(err, errlen, "[table %s.%s] materializer: %s", t->schema, t->name, why);
            materializer_free(m);
            return NULL;
        }
        break;
    }
    default:
        break;
    }
    return m;
}

void materializer_free(struct materializer *m)
{
    if (!m)
        return;
    generic_free(m->generic);
    sqlfunc_free(m->sqlfunc);
    plugin_free(m->plugin);
    free(m->schema);
    free(m->table);
    free(m->qtable);
    free(m);
}

bool materializer_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    char why[400];
    bool ok = true;
    switch (m->kind) {
    case MATERIALIZER_GENERIC: ok = generic_connect(m, conn, why, sizeof why); break;
    case MATERIALIZER_SQL: ok = sqlfunc_connect(m, conn, why, sizeof why); break;
    case MATERIALIZER_PLUGIN: ok = plugin_connect(m, conn, why, sizeof why); break;
    default: break;
    }
    if (!ok)
        snprintf(err, errlen, "[table %s.%s] materializer: %s", m->schema, m->table, why);
    return ok;
}

enum mat_plan_result materializer_plan(struct materializer *m, PGconn *conn, const struct mat_change *c,
                                       arena_t *a, struct mat_plan *plan, char *err, size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    switch (m->kind) {
    case MATERIALIZER_GENERIC:
        return generic_plan(m, conn, c, a, plan, err, errlen);
    case MATERIALIZER_SQL:
        sqlfunc_plan(m, c, plan);
        return MAT_PLANNED;
    case MATERIALIZER_PLUGIN:
        plan->synchronous = true;
        return MAT_PLANNED;
    default:
        snprintf(err, errlen, "no materializer");
        return MAT_DB_ERROR;
    }
}

int materializer_convert_reference(struct materializer *m, const char *column, const char *value, char *out,
                                   size_t outlen, char *err, size_t errlen)
{
    if (!m || m->kind != MATERIALIZER_PLUGIN)
        return 0;
    return plugin_convert_reference(m, column, value, out, outlen, err, errlen);
}

bool materializer_apply(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err,
                        size_t errlen)
{
    return plugin_apply(m, conn, c, err, errlen);
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
