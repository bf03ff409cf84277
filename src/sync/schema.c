#include "sync.h"
#include "../materialize/materialize.h"
#include "../xalloc.h"

#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b)
{
    const struct sync_table *x = a, *y = b;
    int c = strcmp(x->schema, y->schema);
    return c ? c : strcmp(x->name, y->name);
}

void sync_schema_init(struct sync_schema *s, const struct config *cfg)
{
    memset(s, 0, sizeof *s);
    s->n_tables = cfg->n_tables;
    s->tables = xcalloc((size_t)(cfg->n_tables ? cfg->n_tables : 1), sizeof *s->tables);
    for (int i = 0; i < cfg->n_tables; i++) {
        s->tables[i].schema = cfg->tables[i].schema;
        s->tables[i].name = cfg->tables[i].name;
        s->tables[i].conf = &cfg->tables[i];
    }
    qsort(s->tables, (size_t)s->n_tables, sizeof *s->tables, by_name);
    for (int i = 0; i < s->n_tables; i++)
        s->tables[i].rank = i;
}

void sync_schema_free_fks(struct sync_schema *s)
{
    for (int i = 0; i < s->n_fks; i++) {
        struct sync_fk *f = &s->fks[i];
        free(f->name);
        free(f->child_col);
        free(f->parent_schema);
        free(f->parent_table);
        free(f->parent_col);
        free(f->parent_type);
        free(f->exists_sql);
    }
    free(s->fks);
    s->fks = NULL;
    s->n_fks = 0;
    for (int i = 0; i < s->n_tables; i++) {
        free(s->tables[i].fks);
        s->tables[i].fks = NULL;
        s->tables[i].n_fks = 0;
    }
}

void sync_schema_free(struct sync_schema *s)
{
    sync_schema_free_fks(s);
    for (int i = 0; i < s->n_tables; i++)
        materializer_free(s->tables[i].mat);
    free(s->tables);
    s->tables = NULL;
    s->n_tables = 0;
}

const struct sync_table *sync_schema_find(const struct sync_schema *s, const char *schema, const char *name)
{
    struct sync_table key = { .schema = schema, .name = name };
    return bsearch(&key, s->tables, (size_t)s->n_tables, sizeof *s->tables, by_name);
}

bool sync_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

void sync_schema_arrays(const struct sync_schema *s, bool materialized_only, strbuf_t *schemas, strbuf_t *names)
{
    sb_putc(schemas, '{');
    sb_putc(names, '{');
    for (int i = 0; i < s->n_tables; i++) {
        if (materialized_only && s->tables[i].conf->materializer == MATERIALIZER_NONE)
            continue;
        sb_pg_array_str(schemas, s->tables[i].schema);
        sb_pg_array_str(names, s->tables[i].name);
    }
    sb_putc(schemas, '}');
    sb_putc(names, '}');
}

PGresult *sync_schema_query(const struct sync_schema *s, bool materialized_only, PGconn *conn, const char *sql)
{
    strbuf_t schemas = STRBUF_INIT, names = STRBUF_INIT;
    sync_schema_arrays(s, materialized_only, &schemas, &names);
    const char *vals[2] = { schemas.data, names.data };
    PGresult *r = PQexecParams(conn, sql, 2, NULL, vals, NULL, NULL, 0);
    sb_free(&schemas);
    sb_free(&names);
    return r;
}
