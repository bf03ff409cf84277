/* Foreign keys of the registered tables (SPEC §6): discovery, apply order, DEFERRABLE migration. */
#include "sync.h"
#include "../log.h"
#include "../xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FK_MIGRATION_LOCK "8031718527699873380"   /* one above the bootstrap lock */

static const char discover_sql[] =
    "SELECT c.conname, cn.nspname, cc.relname, pn.nspname, pc.relname, array_length(c.conkey, 1),"
    "       ca.attname, pa.attname, format_type(pa.atttypid, pa.atttypmod), pt.typname,"
    "       EXISTS (SELECT 1 FROM pg_constraint pk WHERE pk.conrelid = c.confrelid AND pk.contype = 'p'"
    "               AND pk.conkey = c.confkey),"
    "       c.condeferrable, c.condeferred,"
    "       format('%I.%I', pn.nspname, pc.relname), quote_ident(pa.attname),"
    "       quote_literal(format_type(pa.atttypid, pa.atttypmod)), format_type(pa.atttypid, NULL)"
    "  FROM pg_constraint c"
    "  JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace"
    "  JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace"
    "  JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = c.conkey[1]"
    "  JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]"
    "  JOIN pg_type pt ON pt.oid = pa.atttypid"
    "  JOIN unnest($1::text[], $2::text[]) AS r(s, t) ON r.s = cn.nspname AND r.t = cc.relname"
    " WHERE c.contype = 'f'"
    " ORDER BY cn.nspname, cc.relname, c.conname";

static enum fk_value_kind kind_of(const char *typname)
{
    if (strcmp(typname, "uuid") == 0)
        return FK_VALUE_UUID;
    if (strcmp(typname, "int2") == 0)
        return FK_VALUE_INT2;
    if (strcmp(typname, "int4") == 0)
        return FK_VALUE_INT4;
    if (strcmp(typname, "int8") == 0)
        return FK_VALUE_INT8;
    if (strcmp(typname, "text") == 0 || strcmp(typname, "varchar") == 0 || strcmp(typname, "bpchar") == 0)
        return FK_VALUE_TEXT;
    return FK_VALUE_OTHER;
}

static int table_index(const struct sync_schema *s, const char *schema, const char *name)
{
    const struct sync_table *t = sync_schema_find(s, schema, name);
    return t ? (int)(t - s->tables) : -1;
}

/* Kahn's algorithm, always taking the first ready table in name order (tables are sorted by
 * name), so the order is the same on every worker and every start. */
static void rank_tables(struct sync_schema *s)
{
    int n = s->n_tables;
    if (n == 0)
        return;
    int *indeg = xcalloc((size_t)n, sizeof *indeg);
    bool *done = xcalloc((size_t)n, sizeof *done);
    /* edges parent -> child among registered tables, self-references ignored */
    for (int i = 0; i < s->n_fks; i++) {
        const struct sync_fk *f = &s->fks[i];
        if (f->parent >= 0 && f->parent != f->child)
            indeg[f->child]++;
    }
    int rank = 0;
    for (;;) {
        int pick = -1;
        for (int t = 0; t < n && pick < 0; t++)
            if (!done[t] && indeg[t] == 0)
                pick = t;
        if (pick < 0)
            break;
        done[pick] = true;
        s->tables[pick].rank = rank++;
        for (int i = 0; i < s->n_fks; i++) {
            const struct sync_fk *f = &s->fks[i];
            if (f->parent == pick && f->child != pick)
                indeg[f->child]--;
        }
    }
    if (rank < n) {
        strbuf_t names = STRBUF_INIT;
        for (int t = 0; t < n; t++)
            if (!done[t]) {
                s->tables[t].rank = rank++;
                sb_printf(&names, "%s%s.%s", names.len ? ", " : "", s->tables[t].schema, s->tables[t].name);
            }
        log_warn("foreign keys form a cycle among %s; those tables are applied in name order and "
                 "rely on deferred constraints", sb_cstr(&names));
        sb_free(&names);
    }
    free(indeg);
    free(done);
}

bool sync_schema_discover(struct sync_schema *s, PGconn *conn, char *err, size_t errlen)
{
    PGresult *r = sync_schema_query(s, false, conn, discover_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading foreign keys: %s", PQresultErrorMessage(r));
        PQclear(r);
        return false;
    }
    sync_schema_free_fks(s);
    int n = PQntuples(r);
    s->fks = xcalloc((size_t)(n ? n : 1), sizeof *s->fks);
    for (int i = 0; i < n; i++) {
        struct sync_fk *f = &s->fks[s->n_fks];
        f->child = table_index(s, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
        if (f->child < 0)
            continue;
        f->name = xstrdup(PQgetvalue(r, i, 0));
        f->parent_schema = xstrdup(PQgetvalue(r, i, 3));
        f->parent_table = xstrdup(PQgetvalue(r, i, 4));
        f->parent = table_index(s, f->parent_schema, f->parent_table);
        bool composite = atoi(PQgetvalue(r, i, 5)) != 1;
        f->child_col = composite ? NULL : xstrdup(PQgetvalue(r, i, 6));
        f->parent_col = xstrdup(PQgetvalue(r, i, 7));
        f->parent_type = xstrdup(PQgetvalue(r, i, 8));
        f->kind = kind_of(PQgetvalue(r, i, 9));
        f->parent_is_pk = !composite && PQgetvalue(r, i, 10)[0] == 't';
        f->deferrable = PQgetvalue(r, i, 11)[0] == 't';
        f->deferred = PQgetvalue(r, i, 12)[0] == 't';
        strbuf_t sql = STRBUF_INIT;
        /* Values are cast to the parent's base type, without its modifier: a cast to varchar(2)
         * or numeric(10,2) would cut or round the value and find a parent that is not there.
         * Values the C side could not vouch for are tested with sync.fk_castable first, so one
         * odd value cannot fail the whole statement. */
        if (f->kind == FK_VALUE_OTHER)
            sb_printf(&sql,
                      "SELECT x.i, CASE WHEN NOT sync.fk_castable(x.v, %s) THEN 'b' "
                      "WHEN EXISTS (SELECT 1 FROM %s p WHERE p.%s = x.v::%s) THEN 'y' ELSE 'n' END "
                      "FROM unnest($1::text[]) WITH ORDINALITY AS x(v, i)",
                      PQgetvalue(r, i, 15), PQgetvalue(r, i, 13), PQgetvalue(r, i, 14), PQgetvalue(r, i, 16));
        else
            sb_printf(&sql,
                      "SELECT x.i, CASE WHEN EXISTS (SELECT 1 FROM %s p WHERE p.%s = x.v::%s) THEN 'y' ELSE 'n' END "
                      "FROM unnest($1::text[]) WITH ORDINALITY AS x(v, i)",
                      PQgetvalue(r, i, 13), PQgetvalue(r, i, 14), PQgetvalue(r, i, 16));
        f->exists_sql = xstrdup(sql.data);
        sb_free(&sql);
        s->n_fks++;
    }
    PQclear(r);
    for (int i = 0; i < s->n_fks; i++) {
        struct sync_table *t = &s->tables[s->fks[i].child];
        if (!s->fks[i].child_col)
            continue;
        t->fks = xrealloc(t->fks, (size_t)(t->n_fks + 1) * sizeof *t->fks);
        t->fks[t->n_fks++] = i;
    }
    rank_tables(s);
    s->discovered = true;
    if (log_enabled(LOG_DEBUG)) {
        for (int i = 0; i < s->n_tables; i++)
            log_debug("apply rank %d: %s.%s (%d single-column FK)", s->tables[i].rank, s->tables[i].schema,
                      s->tables[i].name, s->tables[i].n_fks);
    }
    return true;
}

/* ------------------------------------------------------------------ DEFERRABLE migration */

static const char pending_sql[] =
    "SELECT c.conname, format('%I.%I', cn.nspname, cc.relname), c.condeferrable,"
    "       pg_get_constraintdef(c.oid), quote_ident(c.conname), 'oversyncd_deferrable_' || c.oid"
    "  FROM pg_constraint c"
    "  JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace"
    "  JOIN unnest($1::text[], $2::text[]) AS r(s, t) ON r.s = cn.nspname AND r.t = cc.relname"
    " WHERE c.contype = 'f' AND NOT (c.condeferrable AND c.condeferred)"
    " ORDER BY cn.nspname, cc.relname, c.conname";

static bool exec_ok(PGconn *conn, const char *sql, strbuf_t *why)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok && why) {
        sb_reset(why);
        sb_puts(why, PQresultErrorMessage(r));
        str_trim_right(why->data);
        why->len = strlen(why->data);
    }
    PQclear(r);
    return ok;
}

/* The constraint definition without a trailing NOT VALID: the replacement is validated. */
static char *definition_of(const char *def)
{
    char *d = xstrdup(def);
    size_t n = strlen(d);
    const char *nv = " NOT VALID";
    if (n > strlen(nv) && strcmp(d + n - strlen(nv), nv) == 0)
        d[n - strlen(nv)] = '\0';
    return d;
}

static bool migrate_one(PGconn *conn, const char *table, const char *qname, const char *name, bool deferrable,
                        const char *def, const char *tmpname, strbuf_t *report)
{
    strbuf_t sql = STRBUF_INIT, why = STRBUF_INIT;
    bool ok = exec_ok(conn, "BEGIN", &why) &&
              exec_ok(conn, "SELECT pg_advisory_xact_lock(" FK_MIGRATION_LOCK ")", &why);
    if (ok && deferrable) {
        sb_printf(&sql, "ALTER TABLE %s ALTER CONSTRAINT %s DEFERRABLE INITIALLY DEFERRED", table, qname);
        ok = exec_ok(conn, sql.data, &why);
    } else if (ok) {
        /* Add an equivalent deferrable copy unvalidated, validate it, then swap names: if the data
         * violates the key, validation fails and the transaction leaves the original in place. */
        char *body = definition_of(def);
        /* named after the constraint's oid: plain ASCII, unique, and never a cut-off name */
        char *qtmp = xstrdup(tmpname);
        sb_printf(&sql, "ALTER TABLE %s ADD CONSTRAINT %s %s DEFERRABLE INITIALLY DEFERRED NOT VALID", table,
                  qtmp, body);
        ok = exec_ok(conn, sql.data, &why);
        if (ok) {
            sb_reset(&sql);
            sb_printf(&sql, "ALTER TABLE %s VALIDATE CONSTRAINT %s", table, qtmp);
            ok = exec_ok(conn, sql.data, &why);
        }
        if (ok) {
            sb_reset(&sql);
            sb_printf(&sql, "ALTER TABLE %s DROP CONSTRAINT %s", table, qname);
            ok = exec_ok(conn, sql.data, &why);
        }
        if (ok) {
            sb_reset(&sql);
            sb_printf(&sql, "ALTER TABLE %s RENAME CONSTRAINT %s TO %s", table, qtmp, qname);
            ok = exec_ok(conn, sql.data, &why);
        }
        free(body);
        free(qtmp);
    }
    if (ok)
        ok = exec_ok(conn, "COMMIT", &why);
    if (!ok) {
        exec_ok(conn, "ROLLBACK", NULL);
        sb_printf(report, "%s %s: not migrated, left as it was: %s\n", table, name, sb_cstr(&why));
        log_error("foreign key %s on %s could not be made DEFERRABLE; it was left as it was: %s", name, table,
                  sb_cstr(&why));
    } else {
        sb_printf(report, "%s %s: now DEFERRABLE INITIALLY DEFERRED\n", table, name);
        log_info("foreign key %s on %s is now DEFERRABLE INITIALLY DEFERRED", name, table);
    }
    sb_free(&sql);
    sb_free(&why);
    return ok;
}

bool sync_fk_migrate(const struct config *cfg, PGconn *conn, bool dry_run, strbuf_t *report)
{
    struct sync_schema s;
    sync_schema_init(&s, cfg);
    PGresult *r = sync_schema_query(&s, false, conn, pending_sql);
    sync_schema_free(&s);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sb_printf(report, "reading foreign keys: %s", PQresultErrorMessage(r));
        PQclear(r);
        return false;
    }
    bool all = true;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0), *table = PQgetvalue(r, i, 1);
        bool deferrable = PQgetvalue(r, i, 2)[0] == 't';
        if (dry_run) {
            sb_printf(report, "%s %s: would be made DEFERRABLE INITIALLY DEFERRED (%s)\n", table, name,
                      deferrable ? "ALTER CONSTRAINT" : "add NOT VALID copy, validate, drop, rename");
            continue;
        }
        if (!migrate_one(conn, table, PQgetvalue(r, i, 4), name, deferrable, PQgetvalue(r, i, 3),
                         PQgetvalue(r, i, 5), report))
            all = false;
    }
    PQclear(r);
    return all;
}
