/* oversyncd migrate-to-bundle: an upload-protocol database becomes a bundle-protocol one, in
 * place, step by step (migrate.h lists the steps; docs/migrating.md describes them for users).
 *
 * The upload sidecar is read with plain SQL (this file knows its table names, not the sync/
 * module, which it may not include); the bundle side goes through bundle_bootstrap() and, for
 * the initial bundles, the server-bundle functions of sql/bundle/0003_finalize.sql
 * (sync.begin_server_bundle, sync.commit_server_bundle). */
#include "migrate.h"
#include "schema.h"
#include "../db/bootstrap.h"
#include "../strbuf.h"
#include "../xalloc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define STEP_BEGIN 1
#define STEP_ARCHIVE 2
#define STEP_OWNERS 3
#define STEP_CONSTRAINTS 4
#define STEP_ROWS 5
#define STEP_SIDECAR 6
#define STEP_BUNDLES 7
#define STEP_FINISH 8
#define N_STEPS 8

static const char *const step_names[N_STEPS + 1] = {
    "", "begin", "archive", "owners", "constraints", "rows", "sidecar", "bundles", "finish",
};

/* A session lock for the whole run: two migrations of one database never interleave. */
#define MIGRATE_LOCK_SQL "SELECT pg_try_advisory_lock(hashtextextended('oversyncd migrate-to-bundle', 0))"

struct mtable {
    const char *schema, *table, *key;   /* as configured (lower case) */
    char *name;                         /* schema.table, for messages and regclass input */
    char *q;                            /* "schema"."table", quoted */
    char *qkey;                         /* the key column, quoted */
    char key_type[32];                  /* uuid or text */
    bool materialized;                  /* listed in row_owner_tables: business rows are the data */
};

struct mctx {
    PGconn *c;
    const struct config *cfg;
    struct mtable *t;
    int n;
    FILE *out, *err;
    const char *src;        /* the upload sidecar's schema: sync, or sync_upload_archive after step 2 */
    strbuf_t *plan;         /* when set, steps 3 to 5 describe every change here, one line each */
    char msg[4096];         /* why the run stops */
};

/* ------------------------------------------------------------------------------ helpers */

static void setmsg(struct mctx *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void setmsg(struct mctx *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    va_end(ap);
}

/* PostgreSQL's primary message of a failed result, on one line. */
static const char *pg_message(const PGresult *r, PGconn *c)
{
    static char buf[1024];
    const char *s = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    snprintf(buf, sizeof buf, "%s", s ? s : PQerrorMessage(c));
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    size_t n = strlen(buf);
    while (n && buf[n - 1] == ' ')
        buf[--n] = '\0';
    return buf;
}

/* Runs sql with text parameters; NULL (and m->msg "what: PostgreSQL's message") on failure. */
static PGresult *q(struct mctx *m, const char *what, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(m->c, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    setmsg(m, "%s: %s", what, pg_message(r, m->c));
    PQclear(r);
    return NULL;
}

/* Runs one or more statements without parameters. */
static bool x(struct mctx *m, const char *what, const char *sql)
{
    PGresult *r = PQexec(m->c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        setmsg(m, "%s: %s", what, pg_message(r, m->c));
    PQclear(r);
    return ok;
}

/* The first cell of a one-value query as a number; -1 on failure. */
static long long q_ll(struct mctx *m, const char *what, const char *sql, int n, const char *const *p)
{
    PGresult *r = q(m, what, sql, n, p);
    if (!r)
        return -1;
    long long v = PQntuples(r) && !PQgetisnull(r, 0, 0) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

static bool q_bool(struct mctx *m, const char *sql, int n, const char *const *p, bool *out)
{
    PGresult *r = q(m, "reading the catalog", sql, n, p);
    if (!r)
        return false;
    *out = PQntuples(r) && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return true;
}

static char *qident(PGconn *c, const char *s)
{
    char *e = PQescapeIdentifier(c, s, strlen(s));
    char *d = xstrdup(e ? e : "\"?\"");
    PQfreemem(e);
    return d;
}

static void rollback(struct mctx *m)
{
    if (PQtransactionStatus(m->c) != PQTRANS_IDLE)
        PQclear(PQexec(m->c, "ROLLBACK"));
}

static void plan(struct mctx *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plan(struct mctx *m, const char *fmt, ...)
{
    if (!m->plan)
        return;
    va_list ap;
    va_start(ap, fmt);
    sb_puts(m->plan, "    ");
    sb_vprintf(m->plan, fmt, ap);
    sb_putc(m->plan, '\n');
    va_end(ap);
}

/* The registry as one text, for the progress table: a resumed run must use the same tables. */
static void registry_text(const struct mctx *m, strbuf_t *sb)
{
    for (int i = 0; i < m->n; i++)
        sb_printf(sb, "%s%s:%s", i ? "," : "", m->t[i].name, m->t[i].key);
}

/* "{a.b,c.d}" of the registered tables, for regclass[] and text[] parameters. */
static void registry_array(const struct mctx *m, strbuf_t *sb)
{
    sb_putc(sb, '{');
    for (int i = 0; i < m->n; i++)
        sb_printf(sb, "%s%s", i ? "," : "", m->t[i].name);
    sb_putc(sb, '}');
}

static struct mtable *find_table(struct mctx *m, const char *schema, const char *table)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->t[i].schema, schema) == 0 && strcmp(m->t[i].table, table) == 0)
            return &m->t[i];
    return NULL;
}

/* ------------------------------------------------------------------------- progress table */

static const char progress_ddl[] =
    "DO $$ BEGIN IF to_regnamespace('oversyncd') IS NULL THEN CREATE SCHEMA oversyncd; END IF; END $$;"
    "CREATE TABLE oversyncd.migrate_to_bundle ("
    "  step     integer PRIMARY KEY,"
    "  name     text NOT NULL,"
    "  detail   text NOT NULL DEFAULT '',"
    "  done_at  timestamptz NOT NULL DEFAULT now())";

/* The highest step recorded as done, 0 when the progress table does not exist; -1 on failure.
 * *registry gets the registry recorded by step 1 (malloc'd, NULL when none). */
static int progress_read(struct mctx *m, char **registry, char *finished_at, size_t flen)
{
    *registry = NULL;
    bool exists;
    if (!q_bool(m, "SELECT to_regclass('oversyncd.migrate_to_bundle') IS NOT NULL", 0, NULL, &exists))
        return -1;
    if (!exists)
        return 0;
    PGresult *r = q(m, "reading oversyncd.migrate_to_bundle",
                    "SELECT coalesce(max(step), 0), "
                    "       (SELECT detail FROM oversyncd.migrate_to_bundle WHERE step = 1), "
                    "       (SELECT done_at::text FROM oversyncd.migrate_to_bundle WHERE step = 7) "
                    "FROM oversyncd.migrate_to_bundle",
                    0, NULL);
    if (!r)
        return -1;
    int step = atoi(PQgetvalue(r, 0, 0));
    if (!PQgetisnull(r, 0, 1))
        *registry = xstrdup(PQgetvalue(r, 0, 1));
    if (finished_at && flen)
        snprintf(finished_at, flen, "%s", PQgetisnull(r, 0, 2) ? "" : PQgetvalue(r, 0, 2));
    PQclear(r);
    return step;
}

static bool progress_mark(struct mctx *m, int step, const char *detail)
{
    char s[16];
    snprintf(s, sizeof s, "%d", step);
    const char *p[3] = { s, step_names[step], detail ? detail : "" };
    PGresult *r = q(m, "recording progress",
                    "INSERT INTO oversyncd.migrate_to_bundle (step, name, detail) VALUES ($1::int, $2, $3)", 3, p);
    PQclear(r);
    return r != NULL;
}

/* ------------------------------------------------------------------------------- checks */

/* What the database is: an upload database (its sidecar in schema sync, at the newest migration,
 * with no bundle layout and no archive yet). Refusals name what is wrong. */
static bool check_database(struct mctx *m)
{
    PGresult *r = q(m, "reading the catalog",
                    "SELECT to_regclass('sync.sync_row_meta') IS NOT NULL, to_regclass('sync.meta') IS NOT NULL, "
                    "       to_regnamespace('" MIGRATE_ARCHIVE_SCHEMA "') IS NOT NULL, "
                    "       to_regclass('sync.sync_state') IS NOT NULL, to_regclass('sync.row_owner') IS NOT NULL, "
                    "       to_regclass('sync.row_owner_tables') IS NOT NULL, "
                    "       to_regclass('sync.schema_migrations') IS NOT NULL",
                    0, NULL);
    if (!r)
        return false;
    bool upload = strcmp(PQgetvalue(r, 0, 0), "t") == 0, bundle = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    bool archive = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    bool complete = strcmp(PQgetvalue(r, 0, 3), "t") == 0 && strcmp(PQgetvalue(r, 0, 4), "t") == 0
                    && strcmp(PQgetvalue(r, 0, 5), "t") == 0 && strcmp(PQgetvalue(r, 0, 6), "t") == 0;
    PQclear(r);
    if (bundle) {
        setmsg(m, "the database already holds the bundle protocol's sidecar (sync.meta) and no record of a "
                  "migration (oversyncd.migrate_to_bundle): there is nothing to migrate");
        return false;
    }
    if (archive) {
        setmsg(m, "schema " MIGRATE_ARCHIVE_SCHEMA " already exists but oversyncd.migrate_to_bundle records no "
                  "migration: rename or drop it first (it may be the archive of an earlier migration)");
        return false;
    }
    if (!upload) {
        setmsg(m, "the database holds no upload-protocol sidecar (no sync.sync_row_meta): it is not an "
                  "upload-protocol database, there is nothing to migrate");
        return false;
    }
    if (!complete) {
        setmsg(m, "the upload-protocol sidecar is not at oversyncd's newest version (sync.row_owner, "
                  "sync.row_owner_tables or sync.schema_migrations missing): start oversyncd once with the "
                  "old configuration (protocol = upload) so that it upgrades the sidecar, then migrate");
        return false;
    }
    long long v = q_ll(m, "reading sync.schema_migrations", "SELECT coalesce(max(version), 0) FROM sync.schema_migrations",
                       0, NULL);
    if (v < 0)
        return false;
    if (v != n_sidecar_migrations) {
        setmsg(m, "the upload-protocol sidecar is at version %lld, this oversyncd knows %d: start oversyncd once "
                  "with the old configuration (protocol = upload) so that it upgrades the sidecar, then migrate",
               v, n_sidecar_migrations);
        return false;
    }
    return true;
}

/* The registered tables: they exist, their key column is uuid or text, _sync_scope_id is not
 * there yet; which of them are materialized (row_owner_tables of the source sidecar). */
static bool check_tables(struct mctx *m, bool fresh)
{
    for (int i = 0; i < m->n; i++) {
        struct mtable *t = &m->t[i];
        const char *p[3] = { t->name, t->key, NULL };
        PGresult *r = q(m, "reading the catalog",
                        "SELECT c.relkind::text, "
                        "       (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a WHERE a.attrelid = c.oid "
                        "          AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped), "
                        "       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
                        "          AND a.attname = '" BUNDLE_SCOPE_COLUMN "' AND NOT a.attisdropped) "
                        "FROM pg_class c WHERE c.oid = to_regclass($1)",
                        2, p);
        if (!r)
            return false;
        if (PQntuples(r) == 0) {
            PQclear(r);
            setmsg(m, "registered table %s does not exist in the database", t->name);
            return false;
        }
        const char *kind = PQgetvalue(r, 0, 0);
        bool has_key = !PQgetisnull(r, 0, 1);
        snprintf(t->key_type, sizeof t->key_type, "%s", has_key ? PQgetvalue(r, 0, 1) : "");
        bool has_scope = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
        PQclear(r);
        if (strcmp(kind, "r") != 0) {
            setmsg(m, "registered table %s is not an ordinary table (relkind %s)", t->name, kind);
            return false;
        }
        if (!has_key) {
            setmsg(m, "registered table %s has no sync key column %s", t->name, t->key);
            return false;
        }
        if (strcmp(t->key_type, "uuid") != 0 && strcmp(t->key_type, "text") != 0) {
            setmsg(m, "registered table %s: sync key column %s is %s; the bundle protocol allows only uuid and text",
                   t->name, t->key, t->key_type);
            return false;
        }
        if (has_scope && fresh) {
            setmsg(m, "registered table %s already has a column " BUNDLE_SCOPE_COLUMN
                      ": it is not an upload-protocol business table",
                   t->name);
            return false;
        }
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT EXISTS (SELECT 1 FROM %s.row_owner_tables WHERE schema_name = $1 AND table_name = $2)", m->src);
        const char *p2[2] = { t->schema, t->table };
        if (!q_bool(m, sql, 2, p2, &t->materialized))
            return false;
    }
    return true;
}

/* Unique indexes the new shape cannot hold, and foreign keys: among registered tables single
 * column, to the parent's key; none from or to an unregistered table. */
static bool check_shape(struct mctx *m)
{
    strbuf_t arr = STRBUF_INIT;
    registry_array(m, &arr);
    const char *p[1] = { sb_cstr(&arr) };
    PGresult *r = q(m, "reading unique indexes",
                    "SELECT i.indrelid::regclass::text, c.relname, i.indpred IS NOT NULL, i.indexprs IS NOT NULL, "
                    "       i.indnatts <> i.indnkeyatts "
                    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indisunique AND i.indrelid = ANY ($1::regclass[]) "
                    "  AND (i.indpred IS NOT NULL OR i.indexprs IS NOT NULL OR i.indnatts <> i.indnkeyatts) "
                    "ORDER BY 1, 2",
                    1, p);
    if (!r) {
        sb_free(&arr);
        return false;
    }
    if (PQntuples(r) > 0) {
        setmsg(m, "registered table %s has unique index %s %s: the bundle protocol's tables allow only plain "
                  "unique indexes on columns (make it a plain one or drop it, then migrate)",
               PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
               strcmp(PQgetvalue(r, 0, 2), "t") == 0   ? "with a WHERE clause"
               : strcmp(PQgetvalue(r, 0, 3), "t") == 0 ? "on an expression"
                                                        : "with INCLUDE columns");
        PQclear(r);
        sb_free(&arr);
        return false;
    }
    PQclear(r);

    r = q(m, "reading foreign keys",
          "SELECT con.conname, cn.nspname, cc.relname, pn.nspname, pc.relname, cardinality(con.conkey), "
          "       (SELECT attname FROM pg_attribute WHERE attrelid = con.confrelid AND attnum = con.confkey[1]), "
          "       con.confupdtype::text, con.confmatchtype::text "
          "FROM pg_constraint con "
          "JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
          "JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
          "WHERE con.contype = 'f' AND (con.conrelid = ANY ($1::regclass[]) OR con.confrelid = ANY ($1::regclass[])) "
          "ORDER BY 2, 3, 1",
          1, p);
    sb_free(&arr);
    if (!r)
        return false;
    bool ok = true;
    for (int i = 0; ok && i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        struct mtable *child = find_table(m, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
        struct mtable *parent = find_table(m, PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
        const char *cs = PQgetvalue(r, i, 1), *ct = PQgetvalue(r, i, 2), *ps = PQgetvalue(r, i, 3),
                   *pt = PQgetvalue(r, i, 4);
        if (child && !parent) {
            setmsg(m, "foreign key %s of registered table %s.%s references %s.%s, which NEW.conf does not "
                      "register: the bundle protocol needs the registered tables FK-closed (register it too)",
                   name, cs, ct, ps, pt);
            ok = false;
        } else if (!child) {
            setmsg(m, "foreign key %s of the unregistered table %s.%s references registered table %s.%s, whose "
                      "keys become unique per user only (_sync_scope_id, key): drop it or register %s.%s, then migrate",
                   name, cs, ct, ps, pt, cs, ct);
            ok = false;
        } else if (atoi(PQgetvalue(r, i, 5)) != 1) {
            setmsg(m, "foreign key %s of %s has several columns: only single-column foreign keys among registered "
                      "tables can be made scope-inclusive",
                   name, child->name);
            ok = false;
        } else if (strcmp(PQgetvalue(r, i, 6), parent->key) != 0) {
            setmsg(m, "foreign key %s of %s references %s (%s), not its sync key %s: the bundle protocol needs "
                      "(_sync_scope_id, col) -> (_sync_scope_id, %s)",
                   name, child->name, parent->name, PQgetvalue(r, i, 6), parent->key, parent->key);
            ok = false;
        } else if (strchr("nd", PQgetvalue(r, i, 7)[0])) {
            setmsg(m, "foreign key %s of %s has ON UPDATE SET NULL/SET DEFAULT, which would clear _sync_scope_id "
                      "once the key is scope-inclusive: change it, then migrate",
                   name, child->name);
            ok = false;
        } else if (PQgetvalue(r, i, 8)[0] == 'p') {
            setmsg(m, "foreign key %s of %s is MATCH PARTIAL", name, child->name);
            ok = false;
        }
    }
    PQclear(r);
    return ok;
}

/* The rows: every business row has an owner, no key is live for two users of a materialized
 * table, nothing live is missing from a business table, sidecar payloads fit their table, no
 * live row belongs to a table NEW.conf leaves out. With report, what would move is printed. */
static bool check_rows(struct mctx *m, strbuf_t *report)
{
    char sql[2048];
    strbuf_t arr = STRBUF_INIT;
    registry_array(m, &arr);
    const char *pa[1] = { sb_cstr(&arr) };
    snprintf(sql, sizeof sql,
             "SELECT schema_name || '.' || table_name, count(*) FROM %s.sync_row_meta "
             "WHERE NOT deleted AND schema_name || '.' || table_name <> ALL ($1::text[]) GROUP BY 1 ORDER BY 1",
             m->src);
    PGresult *r = q(m, "reading the sidecar", sql, 1, pa);
    sb_free(&arr);
    if (!r)
        return false;
    if (PQntuples(r) > 0) {
        setmsg(m, "the sidecar holds %s live row(s) of %s, which NEW.conf does not register: register the table "
                  "(or delete those rows on purpose), then migrate",
               PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0));
        PQclear(r);
        return false;
    }
    PQclear(r);

    for (int i = 0; i < m->n; i++) {
        struct mtable *t = &m->t[i];
        const char *p[2] = { t->schema, t->table };
        long long tomb, a, b, c;
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM %s.sync_row_meta WHERE schema_name = $1 AND table_name = $2 AND deleted", m->src);
        if ((tomb = q_ll(m, "reading the sidecar", sql, 2, p)) < 0)
            return false;
        if (t->materialized) {
            /* a: business rows whose key no user owns */
            snprintf(sql, sizeof sql,
                     "SELECT count(*) FROM %s t WHERE NOT EXISTS (SELECT 1 FROM %s.row_owner o "
                     "WHERE o.schema_name = $1 AND o.table_name = $2 AND o.pk_uuid::text = t.%s::text)",
                     t->q, m->src, t->qkey);
            if ((a = q_ll(m, "reading business rows", sql, 2, p)) < 0)
                return false;
            if (a > 0) {
                setmsg(m, "%lld row(s) of %s have no owner: their key is in no user's sidecar "
                          "(%s.row_owner); delete them or give them to a user, then migrate",
                       a, t->name, m->src);
                return false;
            }
            /* b: keys live for a user other than their owner (several users held one key) */
            snprintf(sql, sizeof sql,
                     "SELECT count(*) FROM %s.sync_row_meta m JOIN %s.row_owner o ON o.schema_name = m.schema_name "
                     " AND o.table_name = m.table_name AND o.pk_uuid = m.pk_uuid "
                     "WHERE m.schema_name = $1 AND m.table_name = $2 AND NOT m.deleted AND m.user_id <> o.user_id",
                     m->src, m->src);
            if ((b = q_ll(m, "reading the sidecar", sql, 2, p)) < 0)
                return false;
            if (b > 0) {
                setmsg(m, "%lld live sidecar row(s) of %s share their key with another user's business row: one "
                          "business row cannot hold both users' rows (SELECT * FROM %s.sync_row_meta m JOIN "
                          "%s.row_owner o USING (schema_name, table_name, pk_uuid) WHERE m.user_id <> o.user_id "
                          "AND NOT m.deleted lists them); delete them through the upload protocol, then migrate",
                       b, t->name, m->src, m->src);
                return false;
            }
            /* c: live rows missing from the business table (a materialization that failed) */
            snprintf(sql, sizeof sql,
                     "SELECT count(*) FROM %s.sync_row_meta m WHERE m.schema_name = $1 AND m.table_name = $2 "
                     "AND NOT m.deleted AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s::text = m.pk_uuid::text)",
                     m->src, t->q, t->qkey);
            if ((c = q_ll(m, "reading the sidecar", sql, 2, p)) < 0)
                return false;
            if (c > 0) {
                setmsg(m, "%lld live sidecar row(s) of %s are missing from the business table (failed "
                          "materializations, see GET /admin/materialize-failures): retry or delete them, then migrate",
                       c, t->name);
                return false;
            }
            snprintf(sql, sizeof sql,
                     "SELECT o.user_id, count(*) FROM %s t JOIN %s.row_owner o ON o.schema_name = $1 "
                     "AND o.table_name = $2 AND o.pk_uuid::text = t.%s::text GROUP BY 1 ORDER BY 1",
                     t->q, m->src, t->qkey);
        } else {
            if ((a = q_ll(m, "reading business rows", (snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t->q), sql),
                          0, NULL)) < 0)
                return false;
            if (a > 0) {
                setmsg(m, "%s is not materialized by the upload protocol (materializer none: not in "
                          "%s.row_owner_tables) but holds %lld row(s) of its own, whose owner cannot be "
                          "determined: empty it, then migrate",
                       t->name, m->src, a);
                return false;
            }
            snprintf(sql, sizeof sql,
                     "SELECT string_agg(DISTINCT k, ', ') FROM %s.sync_row_meta m JOIN %s.sync_state s "
                     " USING (user_id, schema_name, table_name, pk_uuid) CROSS JOIN LATERAL jsonb_object_keys(s.payload) k "
                     "WHERE m.schema_name = $1 AND m.table_name = $2 AND NOT m.deleted "
                     "  AND k NOT IN (SELECT attname FROM pg_attribute WHERE attrelid = '%s'::regclass "
                     "                AND attnum > 0 AND NOT attisdropped)",
                     m->src, m->src, t->name);
            r = q(m, "reading the sidecar", sql, 2, p);
            if (!r)
                return false;
            if (!PQgetisnull(r, 0, 0)) {
                setmsg(m, "sidecar rows of %s carry the field(s) %s, which are not columns of the table: add the "
                          "columns (the bundle protocol's tables have exactly the clients' columns), then migrate",
                       t->name, PQgetvalue(r, 0, 0));
                PQclear(r);
                return false;
            }
            PQclear(r);
            snprintf(sql, sizeof sql,
                     "SELECT m.user_id, count(*) FROM %s.sync_row_meta m JOIN %s.sync_state s "
                     " USING (user_id, schema_name, table_name, pk_uuid) "
                     "WHERE m.schema_name = $1 AND m.table_name = $2 AND NOT m.deleted GROUP BY 1 ORDER BY 1",
                     m->src, m->src);
        }
        if (!report)
            continue;
        r = q(m, "counting rows", sql, 2, p);
        if (!r)
            return false;
        long long total = 0;
        sb_printf(report, "  %s (sync key %s %s; %s)\n", t->name, t->key, t->key_type,
                  t->materialized ? "materialized: its business rows are kept and get their owner"
                                  : "materializer none: the rows come from the sidecar's after-images");
        sb_puts(report, "    rows per user:");
        for (int j = 0; j < PQntuples(r); j++) {
            sb_printf(report, "%s %s %s", j ? "," : "", PQgetvalue(r, j, 0), PQgetvalue(r, j, 1));
            total += atoll(PQgetvalue(r, j, 1));
        }
        sb_printf(report, "%s (%lld row(s))\n", PQntuples(r) ? "" : " none", total);
        sb_printf(report, "    rows without owner: 0\n");
        sb_printf(report, "    tombstones (deleted rows; no bundle, kept in the archive): %lld\n", tomb);
        PQclear(r);
    }
    return true;
}

/* ------------------------------------------------------------------- step 3: owners */

static bool owners_table(struct mctx *m, struct mtable *t)
{
    char sql[4096];
    snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN " BUNDLE_SCOPE_COLUMN " text", t->q);
    if (!x(m, t->name, sql))
        return false;
    plan(m, "%s: add column " BUNDLE_SCOPE_COLUMN " text NOT NULL", t->name);
    const char *p[2] = { t->schema, t->table };
    if (t->materialized) {
        if (strcmp(t->key_type, "uuid") == 0)
            snprintf(sql, sizeof sql,
                     "UPDATE %s t SET " BUNDLE_SCOPE_COLUMN " = o.user_id FROM %s.row_owner o "
                     "WHERE o.schema_name = $1 AND o.table_name = $2 AND o.pk_uuid = t.%s",
                     t->q, m->src, t->qkey);
        else
            snprintf(sql, sizeof sql,
                     "UPDATE %s t SET " BUNDLE_SCOPE_COLUMN " = o.user_id FROM %s.row_owner o "
                     "WHERE o.schema_name = $1 AND o.table_name = $2 AND o.pk_uuid::text = t.%s",
                     t->q, m->src, t->qkey);
        PGresult *r = q(m, t->name, sql, 2, p);
        if (!r)
            return false;
        plan(m, "%s: %s business row(s) get their owner from %s.row_owner", t->name, PQcmdTuples(r), m->src);
        PQclear(r);
    }
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE " BUNDLE_SCOPE_COLUMN " IS NULL", t->q);
    long long orphans = q_ll(m, t->name, sql, 0, NULL);
    if (orphans < 0)
        return false;
    if (orphans > 0) {
        setmsg(m, "%lld row(s) of %s have no owner", orphans, t->name);
        return false;
    }
    snprintf(sql, sizeof sql, "ALTER TABLE %s ALTER COLUMN " BUNDLE_SCOPE_COLUMN " SET NOT NULL", t->q);
    return x(m, t->name, sql);
}

static bool step_owners(struct mctx *m)
{
    for (int i = 0; i < m->n; i++)
        if (!owners_table(m, &m->t[i]))
            return false;
    return true;
}

/* -------------------------------------------------------------- step 4: constraints */

struct fkdef {
    char *name, *qname, *child_q, *child_name, *col_q, *col, *parent_q, *parent_name, *pkey_q;
    char upd, del;
};

static void fk_violation(struct mctx *m, long long bad, const char *child, const char *fk, const char *col,
                         const char *parent);

static const char *fk_action(char a)
{
    switch (a) {
    case 'r': return "RESTRICT";
    case 'c': return "CASCADE";
    case 'n': return "SET NULL";
    case 'd': return "SET DEFAULT";
    default: return "NO ACTION";
    }
}

static bool step_constraints(struct mctx *m)
{
    strbuf_t arr = STRBUF_INIT;
    registry_array(m, &arr);
    const char *pa[1] = { sb_cstr(&arr) };
    /* 1. the foreign keys among registered tables (check_shape refused every other kind) */
    PGresult *r = q(m, "reading foreign keys",
                    "SELECT con.conname, quote_ident(con.conname), con.conrelid::regclass::text, "
                    "       quote_ident(cn.nspname) || '.' || quote_ident(cc.relname), "
                    "       (SELECT attname FROM pg_attribute WHERE attrelid = con.conrelid AND attnum = con.conkey[1]), "
                    "       con.confrelid::regclass::text, quote_ident(pn.nspname) || '.' || quote_ident(pc.relname), "
                    "       (SELECT attname FROM pg_attribute WHERE attrelid = con.confrelid AND attnum = con.confkey[1]), "
                    "       con.confupdtype::text, con.confdeltype::text "
                    "FROM pg_constraint con "
                    "JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
                    "JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
                    "WHERE con.contype = 'f' AND con.conrelid = ANY ($1::regclass[]) ORDER BY 3, 1",
                    1, pa);
    if (!r) {
        sb_free(&arr);
        return false;
    }
    int nfk = PQntuples(r);
    struct fkdef *fk = xcalloc((size_t)nfk + 1, sizeof *fk);
    for (int i = 0; i < nfk; i++) {
        fk[i].name = xstrdup(PQgetvalue(r, i, 0));
        fk[i].qname = xstrdup(PQgetvalue(r, i, 1));
        fk[i].child_name = xstrdup(PQgetvalue(r, i, 2));
        fk[i].child_q = xstrdup(PQgetvalue(r, i, 3));
        fk[i].col = xstrdup(PQgetvalue(r, i, 4));
        fk[i].col_q = qident(m->c, fk[i].col);
        fk[i].parent_name = xstrdup(PQgetvalue(r, i, 5));
        fk[i].parent_q = xstrdup(PQgetvalue(r, i, 6));
        fk[i].pkey_q = qident(m->c, PQgetvalue(r, i, 7));
        fk[i].upd = PQgetvalue(r, i, 8)[0];
        fk[i].del = PQgetvalue(r, i, 9)[0];
    }
    PQclear(r);
    bool ok = true;
    char sql[4096];
    for (int i = 0; ok && i < nfk; i++) {
        snprintf(sql, sizeof sql, "ALTER TABLE %s DROP CONSTRAINT %s", fk[i].child_q, fk[i].qname);
        ok = x(m, fk[i].name, sql);
    }

    /* 2. every unique index and key leads with _sync_scope_id */
    r = ok ? q(m, "reading unique indexes",
               "SELECT i.indrelid::regclass::text, quote_ident(n.nspname) || '.' || quote_ident(ic.relname), "
               "       quote_ident(ic.relname), ic.relname, con.contype::text, con.condeferrable, con.condeferred, "
               "       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n) "
               "          FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) "
               "          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum), "
               "       (SELECT string_agg(a.attname, ',' ORDER BY k.n) "
               "          FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) "
               "          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum), "
               "       quote_ident(tn.nspname) || '.' || quote_ident(tc.relname), tn.nspname, tc.relname "
               "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace "
               "JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace "
               "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid "
               "     AND con.contype IN ('p', 'u') "
               "WHERE i.indisunique AND i.indrelid = ANY ($1::regclass[]) ORDER BY 1, 4",
               1, pa)
             : NULL;
    sb_free(&arr);
    if (ok && !r)
        ok = false;
    bool *has_scope_key = xcalloc((size_t)m->n + 1, sizeof *has_scope_key);
    for (int i = 0; ok && i < PQntuples(r); i++) {
        struct mtable *t = find_table(m, PQgetvalue(r, i, 10), PQgetvalue(r, i, 11));
        const char *tname = t ? t->name : PQgetvalue(r, i, 0), *idx_q = PQgetvalue(r, i, 1), *name_q = PQgetvalue(r, i, 2),
                   *name = PQgetvalue(r, i, 3), *contype = PQgetvalue(r, i, 4), *cols_q = PQgetvalue(r, i, 7),
                   *cols = PQgetvalue(r, i, 8), *table_q = PQgetvalue(r, i, 9);
        if (strncmp(cols, BUNDLE_SCOPE_COLUMN ",", strlen(BUNDLE_SCOPE_COLUMN) + 1) == 0)
            continue;   /* already scope-inclusive */
        if (t && strcmp(cols, t->key) == 0)
            has_scope_key[t - m->t] = true;
        if (contype[0]) {
            bool pk = contype[0] == 'p';
            const char *defer = strcmp(PQgetvalue(r, i, 5), "t") != 0   ? ""
                                : strcmp(PQgetvalue(r, i, 6), "t") == 0 ? " DEFERRABLE INITIALLY DEFERRED"
                                                                         : " DEFERRABLE";
            snprintf(sql, sizeof sql,
                     "ALTER TABLE %s DROP CONSTRAINT %s; "
                     "ALTER TABLE %s ADD CONSTRAINT %s %s (" BUNDLE_SCOPE_COLUMN ", %s)%s",
                     table_q, name_q, table_q, name_q, pk ? "PRIMARY KEY" : "UNIQUE", cols_q, defer);
            plan(m, "%s: %s %s (%s) becomes (" BUNDLE_SCOPE_COLUMN ", %s)", tname, pk ? "primary key" : "unique",
                 name, cols, cols);
        } else {
            snprintf(sql, sizeof sql, "DROP INDEX %s; CREATE UNIQUE INDEX %s ON %s (" BUNDLE_SCOPE_COLUMN ", %s)",
                     idx_q, name_q, table_q, cols_q);
            plan(m, "%s: unique index %s (%s) becomes (" BUNDLE_SCOPE_COLUMN ", %s)", tname, name, cols, cols);
        }
        ok = x(m, tname, sql);
    }
    PQclear(r);
    for (int i = 0; ok && i < m->n; i++) {
        if (has_scope_key[i])
            continue;
        struct mtable *t = &m->t[i];
        char cname[64];
        snprintf(cname, sizeof cname, "%.40s_sync_scope_key", t->table);
        char *cq = qident(m->c, cname);
        snprintf(sql, sizeof sql, "ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (" BUNDLE_SCOPE_COLUMN ", %s)", t->q, cq,
                 t->qkey);
        free(cq);
        plan(m, "%s: new unique %s (" BUNDLE_SCOPE_COLUMN ", %s)", t->name, cname, t->key);
        ok = x(m, t->name, sql);
    }
    free(has_scope_key);

    /* 3. the foreign keys again, scope-inclusive; a row whose parent is not its owner's own is
     * named before PostgreSQL would refuse the constraint */
    for (int i = 0; ok && i < nfk; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM %s c WHERE c.%s IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %s p "
                 "WHERE p." BUNDLE_SCOPE_COLUMN " = c." BUNDLE_SCOPE_COLUMN " AND p.%s = c.%s)",
                 fk[i].child_q, fk[i].col_q, fk[i].parent_q, fk[i].pkey_q, fk[i].col_q);
        long long bad = q_ll(m, fk[i].name, sql, 0, NULL);
        if (bad < 0) {
            ok = false;
            break;
        }
        if (bad > 0) {
            fk_violation(m, bad, fk[i].child_name, fk[i].name, fk[i].col, fk[i].parent_name);
            ok = false;
            break;
        }
        char del[256];
        if (fk[i].del == 'n' || fk[i].del == 'd')
            snprintf(del, sizeof del, "%s (%s)", fk_action(fk[i].del), fk[i].col_q);
        else
            snprintf(del, sizeof del, "%s", fk_action(fk[i].del));
        snprintf(sql, sizeof sql,
                 "ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (" BUNDLE_SCOPE_COLUMN ", %s) REFERENCES %s ("
                 BUNDLE_SCOPE_COLUMN ", %s) MATCH SIMPLE ON UPDATE %s ON DELETE %s DEFERRABLE INITIALLY DEFERRED",
                 fk[i].child_q, fk[i].qname, fk[i].col_q, fk[i].parent_q, fk[i].pkey_q, fk_action(fk[i].upd), del);
        plan(m, "%s: foreign key %s (%s) -> %s becomes (" BUNDLE_SCOPE_COLUMN ", %s) -> (" BUNDLE_SCOPE_COLUMN
                ", key) ON DELETE %s DEFERRABLE INITIALLY DEFERRED",
             fk[i].child_name, fk[i].name, fk[i].col, fk[i].parent_name, fk[i].col, del);
        ok = x(m, fk[i].name, sql);
    }
    for (int i = 0; i < nfk; i++) {
        free(fk[i].name), free(fk[i].qname), free(fk[i].child_name), free(fk[i].child_q), free(fk[i].col);
        free(fk[i].col_q), free(fk[i].parent_name), free(fk[i].parent_q), free(fk[i].pkey_q);
    }
    free(fk);
    return ok;
}

/* The message for rows whose reference would cross users once foreign keys are scope-inclusive. */
static void fk_violation(struct mctx *m, long long bad, const char *child, const char *fk, const char *col,
                         const char *parent)
{
    setmsg(m, "%lld row(s) of %s reference through %s (%s) a %s row that is not their own owner's: "
              "scope-inclusive foreign keys cannot hold references across users (or to rows deleted since); "
              "change those rows, then migrate",
           bad, child, fk, col, parent);
}

/* After the rows of step 5: every scope-inclusive foreign key among registered tables holds. */
static bool fk_check_all(struct mctx *m)
{
    strbuf_t arr = STRBUF_INIT;
    registry_array(m, &arr);
    const char *pa[1] = { sb_cstr(&arr) };
    PGresult *r = q(m, "reading foreign keys",
                    "SELECT con.conname, con.conrelid::regclass::text, con.confrelid::regclass::text, "
                    "       quote_ident(cn.nspname) || '.' || quote_ident(cc.relname), "
                    "       quote_ident(pn.nspname) || '.' || quote_ident(pc.relname), "
                    "       (SELECT attname FROM pg_attribute WHERE attrelid = con.conrelid "
                    "          AND attnum = con.conkey[cardinality(con.conkey)]), "
                    "       (SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = con.conrelid "
                    "          AND attnum = con.conkey[cardinality(con.conkey)]), "
                    "       (SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = con.confrelid "
                    "          AND attnum = con.confkey[cardinality(con.confkey)]) "
                    "FROM pg_constraint con "
                    "JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
                    "JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
                    "WHERE con.contype = 'f' AND con.conrelid = ANY ($1::regclass[]) ORDER BY 2, 1",
                    1, pa);
    sb_free(&arr);
    if (!r)
        return false;
    bool ok = true;
    for (int i = 0; ok && i < PQntuples(r); i++) {
        char sql[2048];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM %s c WHERE c.%s IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %s p "
                 "WHERE p." BUNDLE_SCOPE_COLUMN " = c." BUNDLE_SCOPE_COLUMN " AND p.%s = c.%s)",
                 PQgetvalue(r, i, 3), PQgetvalue(r, i, 6), PQgetvalue(r, i, 4), PQgetvalue(r, i, 7),
                 PQgetvalue(r, i, 6));
        long long bad = q_ll(m, PQgetvalue(r, i, 0), sql, 0, NULL);
        if (bad != 0) {
            if (bad > 0)
                fk_violation(m, bad, PQgetvalue(r, i, 1), PQgetvalue(r, i, 0), PQgetvalue(r, i, 5),
                             PQgetvalue(r, i, 2));
            ok = false;
        }
    }
    PQclear(r);
    return ok;
}

/* -------------------------------------------------------------------- step 5: rows */

/* A table of materializer none: every live after-image becomes a row of the user (its key from
 * the sidecar's pk, columns the payload lacks from their defaults, as an INSERT of a push). */
static bool rows_table(struct mctx *m, struct mtable *t)
{
    const char *p[2] = { t->schema, t->table };
    /* Every live after-image becomes a row: its key from the sidecar's pk, the owner from its
     * user, columns the payload lacks from their defaults (as an INSERT of a push does). */
    const char *pc[1] = { t->name };
    PGresult *cols = q(m, t->name,
                       "SELECT quote_ident(a.attname), a.attname, pg_get_expr(d.adbin, d.adrelid), "
                       "       a.attidentity::text, a.attgenerated::text "
                       "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                       "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                       1, pc);
    if (!cols)
        return false;
    strbuf_t names = STRBUF_INIT, vals = STRBUF_INIT;
    bool identity = false;
    for (int i = 0; i < PQntuples(cols); i++) {
        const char *qn = PQgetvalue(cols, i, 0), *n = PQgetvalue(cols, i, 1);
        if (PQgetvalue(cols, i, 4)[0])   /* generated: computed by PostgreSQL */
            continue;
        sb_printf(&names, "%s%s", names.len ? ", " : "", qn);
        if (vals.len)
            sb_puts(&vals, ", ");
        char *lit = PQescapeLiteral(m->c, n, strlen(n));
        if (strcmp(n, BUNDLE_SCOPE_COLUMN) == 0)
            sb_puts(&vals, "m.user_id");
        else if (strcmp(n, t->key) == 0)
            sb_printf(&vals, "m.pk_uuid::%s", t->key_type);
        else if (PQgetvalue(cols, i, 3)[0]) {
            identity = true;
            char *tl = PQescapeLiteral(m->c, t->name, strlen(t->name));
            sb_printf(&vals, "CASE WHEN s.payload ? %s THEN r.%s ELSE nextval(pg_get_serial_sequence(%s, %s)) END",
                      lit, qn, tl, lit);
            PQfreemem(tl);
        } else if (!PQgetisnull(cols, i, 2))
            sb_printf(&vals, "CASE WHEN s.payload ? %s THEN r.%s ELSE %s END", lit, qn, PQgetvalue(cols, i, 2));
        else
            sb_printf(&vals, "r.%s", qn);
        PQfreemem(lit);
    }
    PQclear(cols);
    strbuf_t ins = STRBUF_INIT;
    sb_printf(&ins,
              "INSERT INTO %s (%s) %s SELECT %s FROM %s.sync_row_meta m JOIN %s.sync_state s "
              " USING (user_id, schema_name, table_name, pk_uuid) "
              "CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, s.payload) r "
              "WHERE m.schema_name = $1 AND m.table_name = $2 AND NOT m.deleted ORDER BY m.user_id, m.pk_uuid",
              t->q, sb_cstr(&names), identity ? "OVERRIDING SYSTEM VALUE" : "", sb_cstr(&vals), m->src, m->src,
              t->q);
    sb_free(&names);
    sb_free(&vals);
    PGresult *r = q(m, t->name, sb_cstr(&ins), 2, p);
    sb_free(&ins);
    if (!r)
        return false;
    plan(m, "%s: %s row(s) inserted from the sidecar's after-images (%s.sync_state)", t->name, PQcmdTuples(r),
         m->src);
    PQclear(r);
    return true;
}

static bool step_rows(struct mctx *m)
{
    for (int i = 0; i < m->n; i++)
        if (!m->t[i].materialized && !rows_table(m, &m->t[i]))
            return false;
    return fk_check_all(m) && x(m, "checking the constraints", "SET CONSTRAINTS ALL IMMEDIATE");
}

/* Steps 3, 4 and 5 in a transaction that is rolled back: whatever PostgreSQL would refuse (a value
 * of an after-image that does not fit its column, a duplicate, a reference across users) is
 * found before anything is written. With plan set, every change is described there. */
static bool trial(struct mctx *m)
{
    if (!x(m, "trial", "BEGIN; SET LOCAL client_min_messages = warning"))
        return false;
    bool ok = step_owners(m) && step_constraints(m) && step_rows(m);
    rollback(m);
    return ok;
}

/* ------------------------------------------------------------------ steps 5 and 6 */

static bool bootstrap(struct mctx *m, struct bundle_catalog *cat)
{
    struct bundle_table *bt = xcalloc((size_t)m->n + 1, sizeof *bt);
    for (int i = 0; i < m->n; i++)
        bt[i] = (struct bundle_table){ m->t[i].schema, m->t[i].table, m->t[i].key };
    char e[1024];
    bool ok = bundle_bootstrap(m->c, bt, m->n, cat, e, sizeof e);
    free(bt);
    if (!ok)
        setmsg(m, "%s", e);
    return ok;
}

/* Registered tables parents first (foreign keys among them; ties and cycles in catalog order),
 * as indexes into cat->tables. */
static int *parents_first(struct mctx *m, const struct bundle_catalog *cat)
{
    int n = cat->n_tables;
    int *order = xcalloc((size_t)n + 1, sizeof *order);
    bool *placed = xcalloc((size_t)n + 1, sizeof *placed);
    bool *dep = xcalloc((size_t)n * (size_t)n + 1, sizeof *dep);   /* dep[c*n+p]: c references p */
    PGresult *r = q(m, "reading foreign keys",
                    "SELECT cn.nspname, cc.relname, pn.nspname, pc.relname FROM pg_constraint con "
                    "JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
                    "JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
                    "WHERE con.contype = 'f' AND con.conrelid <> con.confrelid",
                    0, NULL);
    for (int i = 0; r && i < PQntuples(r); i++) {
        const struct bundle_catalog_table *c = bundle_catalog_find(cat, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        const struct bundle_catalog_table *p = bundle_catalog_find(cat, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
        if (c && p)
            dep[(c->table_id - 1) * n + (p->table_id - 1)] = true;
    }
    PQclear(r);
    for (int k = 0; k < n; k++) {
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (int j = 0; j < n && ready; j++)
                if (dep[i * n + j] && !placed[j])
                    ready = false;
            if (ready)
                pick = i;
        }
        for (int i = 0; i < n && pick < 0; i++)   /* a cycle: the first unplaced one */
            if (!placed[i])
                pick = i;
        placed[pick] = true;
        order[k] = pick;
    }
    free(placed);
    free(dep);
    return order;
}

/* One user's initial bundle, in one transaction: the user's rows of every registered table,
 * parents first and by key, staged as the capture trigger stages INSERTs, then finalized. */
static bool user_bundle(struct mctx *m, const struct bundle_catalog *cat, const int *order, const char *user,
                        long long *rows)
{
    const char *p[1] = { user };
    if (!x(m, user, "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = 0"))
        return false;
    /* the user's lock, the scope initialized by the writer, the source tuple, the bundle context;
     * the user_state row it creates is visible to the next statement only */
    PGresult *r = q(m, user, "SELECT sync.begin_server_bundle($1, '" MIGRATE_WRITER_ID "')", 1, p);
    PQclear(r);
    char user_pk[32] = "";
    if (r) {
        r = q(m, user, "SELECT user_pk FROM sync.user_state WHERE user_id = $1", 1, p);
        if (r)
            snprintf(user_pk, sizeof user_pk, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    if (!r) {
        rollback(m);
        return false;
    }
    *rows = 0;
    for (int k = 0; k < cat->n_tables; k++) {
        const struct bundle_catalog_table *ct = &cat->tables[order[k]];
        struct mtable *t = find_table(m, ct->schema, ct->table);
        char key[256], sql[2048];
        if (ct->key_kind == BUNDLE_KEY_UUID)
            snprintf(key, sizeof key, "uuid_send(t.%s)", t->qkey);
        else
            snprintf(key, sizeof key, "convert_to(t.%s, 'UTF8')", t->qkey);
        snprintf(sql, sizeof sql,
                 "INSERT INTO sync.bundle_capture_stage (txid, user_pk, table_id, op_code, key_bytes, payload_db) "
                 "SELECT txid_current(), $2::bigint, %d, 1, %s, to_jsonb(t) - '" BUNDLE_SCOPE_COLUMN "' "
                 "FROM %s t WHERE t." BUNDLE_SCOPE_COLUMN " = $1 ORDER BY t.%s",
                 ct->table_id, key, t->q, t->qkey);
        const char *p2[2] = { user, user_pk };
        r = q(m, user, sql, 2, p2);
        if (!r) {
            rollback(m);
            return false;
        }
        *rows += atoll(PQcmdTuples(r));
        PQclear(r);
    }
    /* finalization, source, retention, exactly as for any server-side write */
    r = q(m, user, "SELECT bundle_seq FROM sync.commit_server_bundle()", 0, NULL);
    PQclear(r);
    if (!r || !x(m, user, "COMMIT")) {
        rollback(m);
        return false;
    }
    return true;
}

/* Users with rows in the registered tables and no bundle yet: one transaction each. */
static enum migrate_exit step_bundles(struct mctx *m, const struct bundle_catalog *cat, int stop_users)
{
    strbuf_t sql = STRBUF_INIT;
    for (int i = 0; i < m->n; i++)
        sb_printf(&sql, "%sSELECT " BUNDLE_SCOPE_COLUMN " FROM %s", i ? " UNION " : "", m->t[i].q);
    sb_puts(&sql, " EXCEPT SELECT u.user_id FROM sync.user_state u WHERE EXISTS (SELECT 1 FROM sync.bundle_log b "
                  "WHERE b.user_pk = u.user_pk AND b.source_id = '" MIGRATE_WRITER_ID "') ORDER BY 1");
    PGresult *users = q(m, "listing users", sb_cstr(&sql), 0, NULL);
    sb_free(&sql);
    if (!users)
        return MIGRATE_REFUSED;
    int *order = parents_first(m, cat);
    enum migrate_exit rc = MIGRATE_OK;
    for (int i = 0; i < PQntuples(users); i++) {
        long long rows;
        const char *u = PQgetvalue(users, i, 0);
        if (!user_bundle(m, cat, order, u, &rows)) {
            rc = MIGRATE_REFUSED;
            break;
        }
        fprintf(m->out, "migrate-to-bundle:   user %s: bundle 1 with %lld row(s)\n", u, rows);
        if (stop_users > 0 && i + 1 == stop_users && i + 1 < PQntuples(users)) {
            rc = MIGRATE_STOPPED;
            break;
        }
    }
    free(order);
    PQclear(users);
    return rc;
}

/* ------------------------------------------------------------------------------- the run */

static bool run_tx_step(struct mctx *m, int step, bool (*body)(struct mctx *), const char *detail)
{
    if (!x(m, step_names[step], "BEGIN; SET LOCAL client_min_messages = warning; SET LOCAL statement_timeout = 0"))
        return false;
    if ((body && !body(m)) || !progress_mark(m, step, detail) || !x(m, step_names[step], "COMMIT")) {
        rollback(m);
        return false;
    }
    return true;
}

static bool step_begin(struct mctx *m)
{
    return x(m, "creating oversyncd.migrate_to_bundle", progress_ddl);
}

static bool step_archive(struct mctx *m)
{
    return x(m, "renaming schema sync", "ALTER SCHEMA sync RENAME TO " MIGRATE_ARCHIVE_SCHEMA);
}

enum migrate_exit bundle_migrate(PGconn *conn, const struct config *cfg, const struct migrate_options *opt,
                                 FILE *out, FILE *err)
{
    struct mctx mc = { .c = conn, .cfg = cfg, .out = out, .err = err, .src = "sync" };
    struct mctx *m = &mc;
    enum migrate_exit rc = MIGRATE_REFUSED;
    int stop_step = 0, stop_users = 0;
    if (opt->stop_after && *opt->stop_after) {
        stop_step = atoi(opt->stop_after);
        const char *colon = strchr(opt->stop_after, ':');
        if (colon)
            stop_users = atoi(colon + 1);
    }
    if (cfg->protocol != PROTOCOL_BUNDLE) {
        fprintf(err, "migrate-to-bundle: %s is not a bundle-protocol configuration: give the configuration the "
                     "server will run with afterwards ([sync] protocol = bundle, a sync_key per [table])\n",
                cfg->path ? cfg->path : "the configuration");
        return MIGRATE_REFUSED;
    }
    if (cfg->n_tables == 0) {
        fprintf(err, "migrate-to-bundle: %s registers no table\n", cfg->path ? cfg->path : "the configuration");
        return MIGRATE_REFUSED;
    }
    m->n = cfg->n_tables;
    m->t = xcalloc((size_t)m->n, sizeof *m->t);
    for (int i = 0; i < m->n; i++) {
        struct mtable *t = &m->t[i];
        t->schema = cfg->tables[i].schema;
        t->table = cfg->tables[i].name;
        t->key = cfg->tables[i].sync_key;
        strbuf_t sb = STRBUF_INIT;
        sb_printf(&sb, "%s.%s", t->schema, t->table);
        t->name = xstrdup(sb_cstr(&sb));
        sb_free(&sb);
        char *s = qident(conn, t->schema), *n = qident(conn, t->table);
        size_t len = strlen(s) + strlen(n) + 2;
        t->q = xmalloc(len);
        snprintf(t->q, len, "%s.%s", s, n);
        free(s), free(n);
        t->qkey = qident(conn, t->key);
    }
    /* configured order is kept for messages; the catalog sorts itself */

    strbuf_t reg = STRBUF_INIT, report = STRBUF_INIT, planbuf = STRBUF_INIT;
    registry_text(m, &reg);
    char *recorded = NULL;
    char finished[64] = "";
    bool locked = false;

    PGresult *r = q(m, "taking the migration lock", MIGRATE_LOCK_SQL, 0, NULL);
    if (!r)
        goto refuse;
    locked = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!locked) {
        setmsg(m, "another oversyncd migrate-to-bundle is running on this database");
        goto refuse;
    }
    if (!x(m, "session settings", "SET statement_timeout = 0"))
        goto refuse;

    int done = progress_read(m, &recorded, finished, sizeof finished);
    if (done < 0)
        goto refuse;
    if (done >= STEP_FINISH) {
        fprintf(out, "migrate-to-bundle: this database was migrated to the bundle protocol on %s; nothing to do\n",
                finished);
        rc = MIGRATE_OK;
        goto end;
    }
    if (done > 0 && recorded && strcmp(recorded, sb_cstr(&reg)) != 0) {
        setmsg(m, "the migration in progress was started for other registered tables (%s), this configuration "
                  "registers %s: resume it with the same configuration",
               recorded, sb_cstr(&reg));
        goto refuse;
    }
    if (done == 0) {
        if (!check_database(m))
            goto refuse;
    } else if (done >= STEP_ARCHIVE) {
        m->src = MIGRATE_ARCHIVE_SCHEMA;
        if (done < STEP_SIDECAR) {
            /* schema sync must still be absent (or empty): an upload-protocol server started since
             * step 2 would have laid out a new sidecar there */
            bool busy;
            if (!q_bool(m,
                        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = to_regnamespace('sync')) "
                        "    OR EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = to_regnamespace('sync'))",
                        0, NULL, &busy))
                goto refuse;
            if (busy) {
                setmsg(m, "schema sync is not empty although step 2 moved the upload sidecar to " MIGRATE_ARCHIVE_SCHEMA
                          ": was an upload-protocol server started meanwhile? Stop it, look at what it wrote in "
                          "schema sync, drop that schema, then resume");
                goto refuse;
            }
        }
    }
    if (done > 0)
        fprintf(out, "migrate-to-bundle: resuming after step %d (%s) of %d\n", done, step_names[done], N_STEPS);

    /* Which tables are materialized, their key types (also when resuming); */
    if (done < STEP_FINISH && !check_tables(m, done < STEP_OWNERS))
        goto refuse;
    /* every check, and steps 3 to 5 tried in a transaction rolled back, before anything is written. */
    if (done < STEP_OWNERS) {
        if (!check_shape(m) || !check_rows(m, opt->dry_run ? &report : NULL))
            goto refuse;
        m->plan = opt->dry_run ? &planbuf : NULL;
        if (!trial(m)) {
            char why[sizeof m->msg];
            snprintf(why, sizeof why, "%s", m->msg);
            setmsg(m, "the business tables cannot take the bundle protocol's shape: %s", why);
            goto refuse;
        }
        m->plan = NULL;
    }

    if (opt->dry_run) {
        fprintf(out, "migrate-to-bundle: dry run, nothing is written\n");
        if (done > 0)
            fprintf(out, "migrate-to-bundle: steps done: 1..%d; left: %d..%d\n", done, done + 1, N_STEPS);
        if (done < STEP_OWNERS) {
            fprintf(out, "tables:\n%s", sb_cstr(&report));
            fprintf(out, "changes to the business tables (steps 3 to 5, tried in a transaction that was rolled "
                         "back):\n%s",
                    sb_cstr(&planbuf));
        }
        if (done < STEP_ARCHIVE)
            fprintf(out, "schema sync (the upload sidecar) would be renamed to " MIGRATE_ARCHIVE_SCHEMA
                         " and kept as it is\n");
        if (done < STEP_SIDECAR)
            fprintf(out, "the bundle sidecar would be created in a new schema sync for %d table(s)\n", m->n);
        fprintf(out, "each user with rows would get bundle 1 holding them (source " MIGRATE_WRITER_ID
                     "), the scope initialized\n");
        fprintf(out, "migrate-to-bundle: dry run OK: the migration would go through\n");
        rc = MIGRATE_OK;
        goto end;
    }

    for (int step = done + 1; step <= N_STEPS; step++) {
        bool ok = true;
        struct bundle_catalog cat = { 0 };
        switch (step) {
        case STEP_BEGIN:
            ok = run_tx_step(m, step, step_begin, sb_cstr(&reg));
            break;
        case STEP_ARCHIVE:
            ok = run_tx_step(m, step, step_archive, NULL);
            if (ok)
                m->src = MIGRATE_ARCHIVE_SCHEMA;
            break;
        case STEP_OWNERS:
            ok = run_tx_step(m, step, step_owners, NULL);
            break;
        case STEP_CONSTRAINTS:
            ok = run_tx_step(m, step, step_constraints, NULL);
            break;
        case STEP_ROWS:
            ok = run_tx_step(m, step, step_rows, NULL);
            break;
        case STEP_SIDECAR:
            ok = bootstrap(m, &cat) && run_tx_step(m, step, NULL, NULL);
            bundle_catalog_free(&cat);
            break;
        case STEP_BUNDLES: {
            if (!bootstrap(m, &cat)) {
                ok = false;
                break;
            }
            enum migrate_exit b = step_bundles(m, &cat, stop_step == STEP_BUNDLES ? stop_users : 0);
            bundle_catalog_free(&cat);
            if (b == MIGRATE_STOPPED) {
                fprintf(out, "migrate-to-bundle: stopped inside step %d (%s) after %d user(s) (" MIGRATE_STOP_ENV ")\n",
                        step, step_names[step], stop_users);
                rc = MIGRATE_STOPPED;
                goto end;
            }
            ok = b == MIGRATE_OK && run_tx_step(m, step, NULL, NULL);
            break;
        }
        case STEP_FINISH:
            ok = run_tx_step(m, step, NULL, NULL);
            break;
        }
        if (!ok) {
            char why[sizeof m->msg];
            snprintf(why, sizeof why, "%s", m->msg);
            setmsg(m, "step %d (%s) failed: %s; steps 1..%d are done and recorded, run the command again to resume",
                   step, step_names[step], why, step - 1);
            goto refuse;
        }
        fprintf(out, "migrate-to-bundle: step %d of %d (%s) done\n", step, N_STEPS, step_names[step]);
        if (stop_step == step && step < N_STEPS && stop_users == 0) {
            fprintf(out, "migrate-to-bundle: stopped after step %d (" MIGRATE_STOP_ENV ")\n", step);
            rc = MIGRATE_STOPPED;
            goto end;
        }
    }
    fprintf(out, "migrate-to-bundle: done: the database serves the bundle protocol; the upload sidecar is kept "
                 "in schema " MIGRATE_ARCHIVE_SCHEMA "\n");
    rc = MIGRATE_OK;
    goto end;

refuse:
    rollback(m);
    fprintf(err, "migrate-to-bundle: %s\n", m->msg);
    rc = MIGRATE_REFUSED;
end:
    if (locked)
        PQclear(PQexec(conn, "SELECT pg_advisory_unlock(hashtextextended('oversyncd migrate-to-bundle', 0))"));
    free(recorded);
    sb_free(&reg);
    sb_free(&report);
    sb_free(&planbuf);
    for (int i = 0; i < m->n; i++)
        free(m->t[i].name), free(m->t[i].q), free(m->t[i].qkey);
    free(m->t);
    return rc;
}
