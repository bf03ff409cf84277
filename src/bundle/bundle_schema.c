/* The bundle sidecar: validate the registered tables, create or adopt the layout, validate the
 * foreign keys, install the triggers. See schema.h and docs/bundle-protocol.md; the facts (names,
 * numbering, messages) are those of go-oversync 1f1118f (SPEC-v2 §5), so that the library and
 * oversyncd each accept the database the other one laid out. */
#include "schema.h"
#include "../log.h"
#include "../strbuf.h"
#include "../xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The transaction-level advisory lock of the reference's bootstrap: the ASCII bytes of
 * "oversync" read as a big-endian number (0x6f76657273796e63). The old protocol's sidecar
 * bootstrap (db/bootstrap.c) takes the same key, so the two never interleave either. */
#define BUNDLE_LOCK_KEY "8031718527699873379"

/* pg_trigger.tgtype of the two triggers: ROW (1) | BEFORE (2) | INSERT (4) | DELETE (8) |
 * UPDATE (16), and the same without BEFORE (AFTER). */
#define OWNER_GUARD_TGTYPE "31"
#define CAPTURE_TGTYPE "29"

#define UNSUPPORTED_LAYOUT_MESSAGE \
    "existing sync schema uses unsupported layout; drop and recreate the sync schema for layout \"" \
    BUNDLE_LAYOUT_NAME "\""

/* Every step runs READ COMMITTED whatever default_transaction_isolation says (a bootstrap that
 * waited for the lock must see what the holder committed), without notices ("trigger ... does
 * not exist, skipping") and without the request-sized statement_timeout; lock_timeout stays as
 * configured, so a bootstrap stuck behind traffic fails visibly. */
static const char begin_locked_sql[] =
    "BEGIN ISOLATION LEVEL READ COMMITTED;"
    "SET LOCAL client_min_messages = warning;"
    "SET LOCAL statement_timeout = 0;"
    "SELECT pg_advisory_xact_lock(" BUNDLE_LOCK_KEY ")";

/* ------------------------------------------------------------------------------ helpers */

static bool exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        db_error_set(err, errlen, conn, r, "bundle bootstrap: %s", what);
    PQclear(r);
    return ok;
}

/* A query with text parameters; NULL (and err set) unless it returned rows. */
static PGresult *query(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                       size_t errlen, const char *what)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    db_error_set(err, errlen, conn, r, "bundle bootstrap: %s", what);
    PQclear(r);
    return NULL;
}

static bool commit(PGconn *conn, char *err, size_t errlen, const char *what)
{
    PGresult *r = PQexec(conn, "COMMIT");
    /* COMMIT of a transaction that failed underneath succeeds with the tag ROLLBACK */
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!ok)
        db_error_set(err, errlen, conn, r, "bundle bootstrap: %s", what);
    PQclear(r);
    return ok;
}

static void rollback_if_open(PGconn *conn)
{
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
}

/* A PostgreSQL text[] literal of the schemas (which = 0) or tables (which = 1) of the catalog. */
static char *names_array(const struct bundle_catalog_table *t, int n, int which)
{
    strbuf_t sb = STRBUF_INIT;
    sb_putc(&sb, '{');
    for (int i = 0; i < n; i++)
        sb_pg_array_str(&sb, which == 0 ? t[i].schema : t[i].table);   /* adds the commas */
    sb_putc(&sb, '}');
    return sb.data;   /* malloc'd */
}

/* How Go's %q prints the short ASCII strings met here: in double quotes, with \" \\ and the
 * control characters escaped. */
static void go_quote(strbuf_t *sb, const char *s)
{
    sb_putc(sb, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sb_puts(sb, "\\\""); break;
        case '\\': sb_puts(sb, "\\\\"); break;
        case '\n': sb_puts(sb, "\\n"); break;
        case '\t': sb_puts(sb, "\\t"); break;
        case '\r': sb_puts(sb, "\\r"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                sb_printf(sb, "\\x%02x", *p);
            else
                sb_putc(sb, (char)*p);
        }
    }
    sb_putc(sb, '"');
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts the n strings of list, joins them with sep into sb and frees them. */
static void join_sorted(strbuf_t *sb, char **list, int n, const char *sep)
{
    qsort(list, (size_t)n, sizeof *list, cmp_str);
    for (int i = 0; i < n; i++) {
        if (i)
            sb_puts(sb, sep);
        sb_puts(sb, list[i]);
        free(list[i]);
    }
}

static int cmp_catalog(const void *a, const void *b)
{
    const struct bundle_catalog_table *x = a, *y = b;
    int c = strcmp(x->schema, y->schema);
    return c ? c : strcmp(x->table, y->table);
}

/* ------------------------------------------------------------------------- the registry */

/* Trimmed, ASCII lower-cased copy of src (NULL counts as empty) into dst; false when longer
 * than BUNDLE_NAME_MAX. */
static bool normalize_name(char *dst, const char *src)
{
    if (!src)
        src = "";
    while (*src && isspace((unsigned char)*src))
        src++;
    size_t len = strlen(src);
    while (len > 0 && isspace((unsigned char)src[len - 1]))
        len--;
    if (len > BUNDLE_NAME_MAX) {
        /* keep a readable prefix for the message */
        memcpy(dst, src, BUNDLE_NAME_MAX);
        dst[BUNDLE_NAME_MAX] = '\0';
        return false;
    }
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[len] = '\0';
    return true;
}

bool bundle_name_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* The configured tables, normalized and checked without the database, in configuration order. */
static bool normalize_registry(const struct bundle_table *tables, int n, struct bundle_catalog_table *t,
                               char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        bool schema_fits = normalize_name(t[i].schema, tables[i].schema);
        if (schema_fits && !t[i].schema[0])
            strcpy(t[i].schema, "public");
        bool table_fits = normalize_name(t[i].table, tables[i].table);
        if (!t[i].table[0]) {
            err_set(err, errlen, "bundle bootstrap: registered table %d (schema %s) has no table name", i + 1,
                    t[i].schema);
            return false;
        }
        if (!schema_fits || !table_fits) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s%s.%s%s: schema and table names are limited to %d bytes",
                    t[i].schema, schema_fits ? "" : "...", t[i].table, table_fits ? "" : "...", BUNDLE_NAME_MAX);
            return false;
        }
        if (!bundle_name_valid(t[i].schema) || !bundle_name_valid(t[i].table)) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s: schema and table names must match ^[a-z0-9_]+$",
                    t[i].schema, t[i].table);
            return false;
        }
        bool key_fits = normalize_name(t[i].key_column, tables[i].key_column);
        if (!t[i].key_column[0]) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s must resolve to exactly one sync key column for "
                    "the current server runtime", t[i].schema, t[i].table);
            return false;
        }
        if (!key_fits || !bundle_name_valid(t[i].key_column)) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s: sync key column %s%s must match ^[a-z0-9_]+$ "
                    "(at most %d bytes)", t[i].schema, t[i].table, t[i].key_column, key_fits ? "" : "...",
                    BUNDLE_NAME_MAX);
            return false;
        }
        if (strcmp(t[i].key_column, BUNDLE_SCOPE_COLUMN) == 0) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s cannot use hidden scope column %s as its visible "
                    "sync key", t[i].schema, t[i].table, BUNDLE_SCOPE_COLUMN);
            return false;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(t[i].schema, t[j].schema) == 0 && strcmp(t[i].table, t[j].table) == 0) {
                err_set(err, errlen, "bundle bootstrap: registered table %s.%s is registered twice",
                        t[i].schema, t[i].table);
                return false;
            }
        }
    }
    return true;
}

/* Column types as the reference reads them: information_schema (udt_name, which is the
 * underlying type of a domain), names lower-cased. */
static const char columns_sql[] =
    "SELECT c.table_schema, c.table_name, lower(c.column_name), lower(c.udt_name)"
    "  FROM information_schema.columns c"
    "  JOIN unnest($1::text[], $2::text[]) AS t(schema_name, table_name)"
    "    ON c.table_schema = t.schema_name AND c.table_name = t.table_name";

/* Every unique index with its columns in index order (INCLUDE columns too); an expression
 * column has no name (''). One row per column, or one with a NULL ordinal for no column. */
static const char unique_indexes_sql[] =
    "SELECT n.nspname, c.relname, i.relname, x.indpred IS NOT NULL, x.indexprs IS NOT NULL,"
    "       k.ord, lower(coalesce(a.attname, ''))"
    "  FROM unnest($1::text[], $2::text[]) AS t(schema_name, table_name)"
    "  JOIN pg_namespace n ON n.nspname = t.schema_name"
    "  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name"
    "  JOIN pg_index x ON x.indrelid = c.oid AND x.indisunique"
    "  JOIN pg_class i ON i.oid = x.indexrelid"
    "  LEFT JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) ON true"
    "  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
    " ORDER BY n.nspname, c.relname, i.relname, k.ord";

static bool row_is(const PGresult *r, int row, const struct bundle_catalog_table *t)
{
    return strcmp(PQgetvalue(r, row, 0), t->schema) == 0 && strcmp(PQgetvalue(r, row, 1), t->table) == 0;
}

/* The columns of one table: the scope column must be text, the key column uuid or text. */
static bool check_columns(const PGresult *cols, struct bundle_catalog_table *t, char *err, size_t errlen)
{
    bool any = false;
    const char *scope_type = "", *key_type = NULL;
    for (int r = 0; r < PQntuples(cols); r++) {
        if (!row_is(cols, r, t))
            continue;
        any = true;
        const char *col = PQgetvalue(cols, r, 2), *type = PQgetvalue(cols, r, 3);
        if (strcmp(col, BUNDLE_SCOPE_COLUMN) == 0)
            scope_type = type;
        if (strcmp(col, t->key_column) == 0)
            key_type = type;
    }
    if (!any) {
        err_set(err, errlen,
                "bundle bootstrap: registered table %s.%s could not load column metadata for sync key "
                "validation (no such table, or none of its columns is visible to this role)", t->schema,
                t->table);
        return false;
    }
    if (strcmp(scope_type, "text") != 0) {
        err_set(err, errlen, "bundle bootstrap: registered table %s.%s must define %s TEXT", t->schema, t->table,
                BUNDLE_SCOPE_COLUMN);
        return false;
    }
    if (!key_type) {
        err_set(err, errlen, "bundle bootstrap: registered table %s.%s has no sync key column %s", t->schema,
                t->table, t->key_column);
        return false;
    }
    if (strcmp(key_type, "uuid") == 0) {
        t->key_kind = BUNDLE_KEY_UUID;
    } else if (strcmp(key_type, "text") == 0) {
        t->key_kind = BUNDLE_KEY_TEXT;
    } else {
        err_set(err, errlen,
                "bundle bootstrap: registered table %s.%s uses unsupported sync key column type %s for %s; the "
                "current server runtime allows only uuid and text", t->schema, t->table, key_type, t->key_column);
        return false;
    }
    return true;
}

/* The unique indexes of one table, in name order: each non-partial, without expressions, with
 * columns, leading with the scope column; one of them exactly (scope, key). */
static bool check_unique_indexes(const PGresult *idx, const struct bundle_catalog_table *t, char *err,
                                 size_t errlen)
{
    int n_indexes = 0;
    bool identity = false;
    int r = 0, rows = PQntuples(idx);
    while (r < rows) {
        if (!row_is(idx, r, t)) {
            r++;
            continue;
        }
        const char *name = PQgetvalue(idx, r, 2);
        bool partial = PQgetvalue(idx, r, 3)[0] == 't', expressions = PQgetvalue(idx, r, 4)[0] == 't';
        const char *first = NULL, *second = NULL;
        int ncols = 0;
        for (; r < rows && row_is(idx, r, t) && strcmp(PQgetvalue(idx, r, 2), name) == 0; r++) {
            if (PQgetisnull(idx, r, 5))
                continue;
            if (ncols == 0)
                first = PQgetvalue(idx, r, 6);
            else if (ncols == 1)
                second = PQgetvalue(idx, r, 6);
            ncols++;
        }
        n_indexes++;
        if (partial || expressions) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s uses unsupported partial or expression unique "
                    "index %s", t->schema, t->table, name);
            return false;
        }
        if (ncols == 0) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s uses unsupported unique index %s without column "
                    "entries", t->schema, t->table, name);
            return false;
        }
        if (strcmp(first, BUNDLE_SCOPE_COLUMN) != 0) {
            err_set(err, errlen,
                    "bundle bootstrap: registered table %s.%s has unique index %s that does not begin with %s",
                    t->schema, t->table, name, BUNDLE_SCOPE_COLUMN);
            return false;
        }
        if (ncols == 2 && strcmp(second, t->key_column) == 0)
            identity = true;
    }
    if (n_indexes == 0) {
        err_set(err, errlen,
                "bundle bootstrap: registered table %s.%s must provide unique indexes or constraints for "
                "scope-aware identity", t->schema, t->table);
        return false;
    }
    if (!identity) {
        err_set(err, errlen, "bundle bootstrap: registered table %s.%s must provide unique identity (%s, %s)",
                t->schema, t->table, BUNDLE_SCOPE_COLUMN, t->key_column);
        return false;
    }
    return true;
}

/* SPEC-v2 §5.3 for every table, in configuration order; sets each key_kind. */
static bool validate_tables(PGconn *conn, struct bundle_catalog_table *t, int n, char *err, size_t errlen)
{
    if (n == 0)
        return true;
    char *schemas = names_array(t, n, 0), *tables = names_array(t, n, 1);
    const char *params[2] = { schemas, tables };
    bool ok = false;
    PGresult *cols = query(conn, columns_sql, 2, params, err, errlen,
                           "reading the columns of the registered tables");
    PGresult *idx = cols ? query(conn, unique_indexes_sql, 2, params, err, errlen,
                                 "reading the unique indexes of the registered tables")
                         : NULL;
    if (cols && idx) {
        ok = true;
        for (int i = 0; ok && i < n; i++)
            ok = check_columns(cols, &t[i], err, errlen) && check_unique_indexes(idx, &t[i], err, errlen);
    }
    PQclear(cols);
    PQclear(idx);
    free(schemas);
    free(tables);
    return ok;
}

/* ------------------------------------------------------------------------------ layout */

static bool validate_meta(PGconn *conn, char *err, size_t errlen)
{
    PGresult *r = query(conn, "SELECT singleton_key, protocol_label, layout_name FROM sync.meta"
                              " ORDER BY singleton_key DESC",
                        0, NULL, err, errlen, "existing sync.meta layout is unsupported");
    if (!r)
        return false;
    bool ok = true;
    strbuf_t sb = STRBUF_INIT;
    for (int i = 0; ok && i < PQntuples(r); i++) {
        const char *singleton = PQgetisnull(r, i, 0) ? "f" : PQgetvalue(r, i, 0);
        const char *label = PQgetisnull(r, i, 1) ? "" : PQgetvalue(r, i, 1);
        const char *layout = PQgetisnull(r, i, 2) ? "" : PQgetvalue(r, i, 2);
        if (strcmp(singleton, "t") != 0) {
            err_set(err, errlen, "bundle bootstrap: sync.meta must contain singleton_key = true");
            ok = false;
        } else if (strcmp(label, BUNDLE_PROTOCOL_LABEL) != 0) {
            sb_puts(&sb, "bundle bootstrap: sync.meta protocol_label = ");
            go_quote(&sb, label);
            sb_puts(&sb, ", expected ");
            go_quote(&sb, BUNDLE_PROTOCOL_LABEL);
            err_set(err, errlen, "%s", sb_cstr(&sb));
            ok = false;
        } else if (strcmp(layout, BUNDLE_LAYOUT_NAME) != 0) {
            sb_puts(&sb, "bundle bootstrap: sync.meta layout_name = ");
            go_quote(&sb, layout);
            sb_puts(&sb, ", expected ");
            go_quote(&sb, BUNDLE_LAYOUT_NAME);
            err_set(err, errlen, "%s", sb_cstr(&sb));
            ok = false;
        }
    }
    if (ok && PQntuples(r) != 1) {
        err_set(err, errlen, "bundle bootstrap: sync.meta must contain exactly one row, found %d", PQntuples(r));
        ok = false;
    }
    sb_free(&sb);
    PQclear(r);
    return ok;
}

#define CATALOG_MISMATCH_HINT \
    " (the registered tables differ from those this sync schema was laid out for; a table_id never " \
    "changes once assigned)"

static bool validate_catalog(PGconn *conn, const struct bundle_catalog *c, char *err, size_t errlen)
{
    PGresult *r = query(conn, "SELECT table_id, schema_name, table_name, sync_key_column, sync_key_kind"
                              "  FROM sync.table_catalog ORDER BY table_id",
                        0, NULL, err, errlen, "existing sync.table_catalog layout is unsupported");
    if (!r)
        return false;
    bool ok = true;
    if (PQntuples(r) != c->n_tables) {
        err_set(err, errlen,
                "bundle bootstrap: sync.table_catalog row count = %d, expected %d" CATALOG_MISMATCH_HINT,
                PQntuples(r), c->n_tables);
        ok = false;
    }
    for (int i = 0; ok && i < c->n_tables; i++) {
        const struct bundle_catalog_table *want = &c->tables[i];
        const char *id = PQgetvalue(r, i, 0), *schema = PQgetvalue(r, i, 1), *table = PQgetvalue(r, i, 2),
                   *key = PQgetvalue(r, i, 3), *kind = PQgetvalue(r, i, 4);
        char want_id[16], want_kind[16];
        snprintf(want_id, sizeof want_id, "%d", want->table_id);
        snprintf(want_kind, sizeof want_kind, "%d", (int)want->key_kind);
        if (strcmp(id, want_id) != 0 || strcmp(schema, want->schema) != 0 || strcmp(table, want->table) != 0
            || strcmp(key, want->key_column) != 0 || strcmp(kind, want_kind) != 0) {
            err_set(err, errlen,
                    "bundle bootstrap: sync.table_catalog row %d = (%s,%s,%s,%s,%s), expected (%s,%s,%s,%s,%s)"
                    CATALOG_MISMATCH_HINT,
                    i, id, schema, table, key, kind, want_id, want->schema, want->table, want->key_column,
                    want_kind);
            ok = false;
        }
    }
    PQclear(r);
    return ok;
}

/* Some names of what schema sync holds (tables first), for the unsupported-layout message. */
static const char sync_objects_sql[] =
    "SELECT count(*), string_agg(name, ', ' ORDER BY rank, name) FILTER (WHERE n <= 4) FROM ("
    "  SELECT name, rank, row_number() OVER (ORDER BY rank, name) AS n FROM ("
    "    SELECT 'sync.' || c.relname AS name, CASE WHEN c.relkind IN ('r', 'p') THEN 0 ELSE 1 END AS rank"
    "      FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'sync'"
    "    UNION ALL"
    "    SELECT 'sync.' || p.proname || '()', 2"
    "      FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace WHERE s.nspname = 'sync'"
    "  ) o"
    ") numbered";

static bool insert_markers(PGconn *conn, const struct bundle_catalog *c, char *err, size_t errlen)
{
    const char *meta[2] = { BUNDLE_PROTOCOL_LABEL, BUNDLE_LAYOUT_NAME };
    PGresult *r = PQexecParams(conn, "INSERT INTO sync.meta (singleton_key, protocol_label, layout_name)"
                                     " VALUES (true, $1, $2)",
                               2, NULL, meta, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        db_error_set(err, errlen, conn, r, "bundle bootstrap: inserting the sync.meta row");
    PQclear(r);
    for (int i = 0; ok && i < c->n_tables; i++) {
        const struct bundle_catalog_table *t = &c->tables[i];
        char id[16], kind[16];
        snprintf(id, sizeof id, "%d", t->table_id);
        snprintf(kind, sizeof kind, "%d", (int)t->key_kind);
        const char *params[5] = { id, t->schema, t->table, t->key_column, kind };
        r = PQexecParams(conn, "INSERT INTO sync.table_catalog"
                               " (table_id, schema_name, table_name, sync_key_column, sync_key_kind)"
                               " VALUES ($1::int, $2, $3, $4, $5::smallint)",
                         5, NULL, params, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            db_error_set(err, errlen, conn, r, "bundle bootstrap: inserting sync.table_catalog row %d",
                         t->table_id);
        PQclear(r);
    }
    return ok;
}

/* Inside the locked transaction: adopt, refuse or create. */
static bool layout_locked(PGconn *conn, struct bundle_catalog *c, char *err, size_t errlen)
{
    PGresult *r = query(conn, "SELECT to_regclass('sync.meta') IS NOT NULL,"
                              "       to_regclass('sync.table_catalog') IS NOT NULL",
                        0, NULL, err, errlen, "looking for sync.meta and sync.table_catalog");
    if (!r)
        return false;
    bool have_meta = PQgetvalue(r, 0, 0)[0] == 't', have_catalog = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);

    if (have_meta && have_catalog)
        return validate_meta(conn, err, errlen) && validate_catalog(conn, c, err, errlen);
    if (have_meta || have_catalog) {
        err_set(err, errlen,
                "bundle bootstrap: existing sync schema is missing required marker tables sync.meta and "
                "sync.table_catalog for layout \"%s\" (found only %s)",
                BUNDLE_LAYOUT_NAME, have_meta ? "sync.meta" : "sync.table_catalog");
        return false;
    }

    r = query(conn, sync_objects_sql, 0, NULL, err, errlen, "looking into schema sync");
    if (!r)
        return false;
    long long found = atoll(PQgetvalue(r, 0, 0));
    if (found > 0) {
        err_set(err, errlen,
                "bundle bootstrap: " UNSUPPORTED_LAYOUT_MESSAGE " or run `oversyncd migrate-to-bundle`"
                " (schema sync holds %s%s)",
                PQgetvalue(r, 0, 1), found > 4 ? ", ..." : "");
        PQclear(r);
        return false;
    }
    PQclear(r);

    for (int i = 0; i < n_bundle_layout_sql; i++) {
        char what[160];
        snprintf(what, sizeof what, "creating the layout (sql/bundle/%s)", bundle_layout_sql[i].name);
        if (!exec_ok(conn, bundle_layout_sql[i].sql, err, errlen, what))
            return false;
        if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
            err_set(err, errlen, "bundle bootstrap: sql/bundle/%s ended the transaction (it must not contain "
                    "BEGIN, COMMIT or ROLLBACK)", bundle_layout_sql[i].name);
            return false;
        }
    }
    if (!insert_markers(conn, c, err, errlen))
        return false;
    c->created = true;
    return true;
}

/* Inside the locked transaction, after layout_locked: (re)create the functions of schema
 * oversyncd, whether the layout was just created or adopted. */
static bool functions_locked(PGconn *conn, char *err, size_t errlen)
{
    for (int i = 0; i < n_bundle_functions_sql; i++) {
        char what[160];
        snprintf(what, sizeof what, "creating the functions of schema oversyncd (sql/bundle/%s)",
                 bundle_functions_sql[i].name);
        if (!exec_ok(conn, bundle_functions_sql[i].sql, err, errlen, what))
            return false;
        if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
            err_set(err, errlen, "bundle bootstrap: sql/bundle/%s ended the transaction (it must not contain "
                    "BEGIN, COMMIT or ROLLBACK)", bundle_functions_sql[i].name);
            return false;
        }
    }
    return true;
}

static bool ensure_layout(PGconn *conn, struct bundle_catalog *c, char *err, size_t errlen)
{
    if (!exec_ok(conn, begin_locked_sql, err, errlen, "taking the bootstrap lock"))
        return false;
    if (!layout_locked(conn, c, err, errlen) || !functions_locked(conn, err, errlen)
        || !commit(conn, err, errlen, "committing the layout")) {
        c->created = false;
        return false;
    }
    if (c->created)
        log_info("bundle sidecar: created the layout %s in schema sync with %d registered tables",
                 BUNDLE_LAYOUT_NAME, c->n_tables);
    return true;
}

/* ------------------------------------------------------------------------- foreign keys */

/* Every foreign key of the registered tables, one row per column pair in key order. */
static const char foreign_keys_sql[] =
    "SELECT n.nspname, c.relname, k.conname, k.condeferrable, k.confmatchtype::text,"
    "       pn.nspname, pc.relname, ca.attname, pa.attname"
    "  FROM unnest($1::text[], $2::text[]) AS t(schema_name, table_name)"
    "  JOIN pg_namespace n ON n.nspname = t.schema_name"
    "  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name"
    "  JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'"
    "  JOIN pg_class pc ON pc.oid = k.confrelid"
    "  JOIN pg_namespace pn ON pn.oid = pc.relnamespace"
    "  CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS u(child_att, parent_att, ord)"
    "  JOIN pg_attribute ca ON ca.attrelid = k.conrelid AND ca.attnum = u.child_att"
    "  JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = u.parent_att"
    " ORDER BY n.nspname, c.relname, k.conname, u.ord";

struct fk {
    const char *schema, *table, *name, *pschema, *ptable;   /* point into the PGresult */
    bool deferrable;
    char match;                                             /* 's' simple, 'f' full, 'p' partial */
    int ncols;
    const char *ccol[2], *pcol[2];                          /* the first two column pairs */
};

static struct fk *read_fks(const PGresult *r, int *nfk)
{
    struct fk *fks = xcalloc((size_t)PQntuples(r) + 1, sizeof *fks);
    int n = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        struct fk *f = n > 0 ? &fks[n - 1] : NULL;
        if (!f || strcmp(f->schema, PQgetvalue(r, i, 0)) != 0 || strcmp(f->table, PQgetvalue(r, i, 1)) != 0
            || strcmp(f->name, PQgetvalue(r, i, 2)) != 0) {
            f = &fks[n++];
            f->schema = PQgetvalue(r, i, 0);
            f->table = PQgetvalue(r, i, 1);
            f->name = PQgetvalue(r, i, 2);
            f->deferrable = PQgetvalue(r, i, 3)[0] == 't';
            f->match = PQgetvalue(r, i, 4)[0];
            f->pschema = PQgetvalue(r, i, 5);
            f->ptable = PQgetvalue(r, i, 6);
        }
        if (f->ncols < 2) {
            f->ccol[f->ncols] = PQgetvalue(r, i, 7);
            f->pcol[f->ncols] = PQgetvalue(r, i, 8);
        }
        f->ncols++;
    }
    *nfk = n;
    return fks;
}

static char *fk_detail(const struct fk *f)
{
    strbuf_t sb = STRBUF_INIT;
    sb_printf(&sb, "%s.%s -> %s.%s (%s)", f->schema, f->table, f->pschema, f->ptable, f->name);
    return sb.data;
}

/* The reference's checks, in its order: FK-closed, MATCH SIMPLE, scope-inclusive shape,
 * DEFERRABLE. Each failure lists every offender (sorted), the first failing check wins. */
static bool check_fks(const struct bundle_catalog *c, const struct fk *fks, int n, char *err, size_t errlen)
{
    char **list = xcalloc((size_t)n + 1, sizeof *list);
    int nlist = 0;
    strbuf_t sb = STRBUF_INIT;
    bool ok = true;

    for (int i = 0; i < n; i++)
        if (!bundle_catalog_find(c, fks[i].pschema, fks[i].ptable))
            list[nlist++] = fk_detail(&fks[i]);
    if (nlist > 0) {
        sb_puts(&sb, "bundle bootstrap: registered tables are not FK-closed: ");
        join_sorted(&sb, list, nlist, "; ");
        ok = false;
    }

    for (int i = 0; ok && i < n; i++) {
        if (fks[i].match != 's') {
            sb_printf(&sb, "bundle bootstrap: registered schema contains unsupported FK MATCH option \"%s\" on"
                           " %s.%s (%s)",
                      fks[i].match == 'f' ? "FULL" : "PARTIAL", fks[i].schema, fks[i].table, fks[i].name);
            ok = false;
        }
    }

    for (int i = 0; ok && i < n; i++) {
        const struct fk *f = &fks[i];
        const struct bundle_catalog_table *parent = bundle_catalog_find(c, f->pschema, f->ptable);
        if (f->ncols == 2 && strcmp(f->ccol[0], BUNDLE_SCOPE_COLUMN) == 0
            && strcmp(f->pcol[0], BUNDLE_SCOPE_COLUMN) == 0 && strcmp(f->pcol[1], parent->key_column) == 0)
            continue;
        list[nlist++] = fk_detail(f);
    }
    if (ok && nlist > 0) {
        sb_puts(&sb, "bundle bootstrap: registered schema contains unsupported registered FK constraints; "
                     "registered child FKs must be scope-inclusive and reference (" BUNDLE_SCOPE_COLUMN
                     ", parent_sync_key): ");
        join_sorted(&sb, list, nlist, "; ");
        ok = false;
    }

    for (int i = 0; ok && i < n; i++) {
        if (!fks[i].deferrable) {
            strbuf_t name = STRBUF_INIT;
            sb_printf(&name, "%s.%s", fks[i].schema, fks[i].name);
            list[nlist++] = name.data;
        }
    }
    if (ok && nlist > 0) {
        sb_puts(&sb, "bundle bootstrap: registered schema contains non-deferrable FK constraints: ");
        join_sorted(&sb, list, nlist, ", ");
        sb_puts(&sb, "; make these constraints DEFERRABLE before bootstrap (INITIALLY DEFERRED recommended)");
        ok = false;
    }

    /* a non-empty list always failed a check and was freed by join_sorted */
    if (!ok)
        err_set(err, errlen, "%s", sb_cstr(&sb));
    free(list);
    sb_free(&sb);
    return ok;
}

static bool validate_fks(PGconn *conn, const struct bundle_catalog *c, char *err, size_t errlen)
{
    if (c->n_tables == 0)
        return true;
    char *schemas = names_array(c->tables, c->n_tables, 0), *tables = names_array(c->tables, c->n_tables, 1);
    const char *params[2] = { schemas, tables };
    PGresult *r = query(conn, foreign_keys_sql, 2, params, err, errlen,
                        "reading the foreign keys of the registered tables");
    free(schemas);
    free(tables);
    if (!r)
        return false;
    int n = 0;
    struct fk *fks = read_fks(r, &n);
    bool ok = check_fks(c, fks, n, err, errlen);
    free(fks);
    PQclear(r);
    return ok;
}

/* ----------------------------------------------------------------------------- triggers */

/* Both triggers present, enabled and exactly as installed below? */
static const char triggers_in_place_sql[] =
    "SELECT count(*) FROM pg_trigger t"
    " WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal AND t.tgenabled = 'O'"
    "   AND t.tgqual IS NULL AND cardinality(t.tgattr::int2[]) = 0 AND t.tgconstraint = 0"
    "   AND t.tgoldtable IS NULL AND t.tgnewtable IS NULL"
    "   AND ((t.tgname = '" BUNDLE_OWNER_GUARD_TRIGGER "' AND t.tgtype = " OWNER_GUARD_TGTYPE
    "         AND t.tgnargs = 0 AND t.tgfoid = 'sync.enforce_registered_row_owner()'::regprocedure)"
    "     OR (t.tgname = '" BUNDLE_CAPTURE_TRIGGER "' AND t.tgtype = " CAPTURE_TGTYPE
    "         AND t.tgnargs = 3 AND t.tgargs = decode($2, 'hex')"
    "         AND t.tgfoid = 'sync.capture_registered_row_change()'::regprocedure))";

/* pg_trigger.tgargs of the capture trigger: each argument followed by a zero byte, in hex. */
static void capture_args_hex(strbuf_t *sb, const char *const args[3])
{
    for (int i = 0; i < 3; i++) {
        for (const unsigned char *p = (const unsigned char *)args[i]; *p; p++)
            sb_printf(sb, "%02x", *p);
        sb_puts(sb, "00");
    }
}

static bool install_table_triggers(PGconn *conn, const struct bundle_catalog_table *t, bool *installed,
                                   char *err, size_t errlen)
{
    char id[16], kind[16];
    snprintf(id, sizeof id, "%d", t->table_id);
    snprintf(kind, sizeof kind, "%d", (int)t->key_kind);
    const char *args[3] = { t->key_column, kind, id };

    /* names are ^[a-z0-9_]+$: quoting them needs no escaping, and keeps reserved words usable */
    strbuf_t rel = STRBUF_INIT, hex = STRBUF_INIT, sql = STRBUF_INIT;
    sb_printf(&rel, "\"%s\".\"%s\"", t->schema, t->table);
    capture_args_hex(&hex, args);
    const char *params[2] = { sb_cstr(&rel), sb_cstr(&hex) };
    char what[256];
    snprintf(what, sizeof what, "checking the triggers of %s.%s", t->schema, t->table);
    PGresult *r = query(conn, triggers_in_place_sql, 2, params, err, errlen, what);
    bool ok = r != NULL;
    *installed = false;
    if (ok && strcmp(PQgetvalue(r, 0, 0), "2") != 0) {
        sb_printf(&sql,
                  "DROP TRIGGER IF EXISTS " BUNDLE_CAPTURE_TRIGGER " ON %s;"
                  "DROP TRIGGER IF EXISTS " BUNDLE_OWNER_GUARD_TRIGGER " ON %s;"
                  "CREATE TRIGGER " BUNDLE_OWNER_GUARD_TRIGGER " BEFORE INSERT OR UPDATE OR DELETE ON %s"
                  " FOR EACH ROW EXECUTE FUNCTION sync.enforce_registered_row_owner();"
                  "CREATE TRIGGER " BUNDLE_CAPTURE_TRIGGER " AFTER INSERT OR UPDATE OR DELETE ON %s"
                  " FOR EACH ROW EXECUTE FUNCTION sync.capture_registered_row_change('%s', '%s', '%s')",
                  sb_cstr(&rel), sb_cstr(&rel), sb_cstr(&rel), sb_cstr(&rel), args[0], args[1], args[2]);
        snprintf(what, sizeof what, "installing the triggers of %s.%s", t->schema, t->table);
        ok = exec_ok(conn, sb_cstr(&sql), err, errlen, what);
        *installed = ok;
    }
    PQclear(r);
    sb_free(&rel);
    sb_free(&hex);
    sb_free(&sql);
    return ok;
}

static bool install_triggers(PGconn *conn, struct bundle_catalog *c, char *err, size_t errlen)
{
    if (c->n_tables == 0)
        return true;
    if (!exec_ok(conn, begin_locked_sql, err, errlen, "taking the bootstrap lock for the triggers"))
        return false;
    int count = 0;
    for (int i = 0; i < c->n_tables; i++) {
        bool installed;
        if (!install_table_triggers(conn, &c->tables[i], &installed, err, errlen))
            return false;
        count += installed;
    }
    if (!commit(conn, err, errlen, "committing the triggers"))
        return false;
    c->triggers_installed = count;
    if (count > 0)
        log_info("bundle sidecar: installed the triggers of %d registered table%s", count, count == 1 ? "" : "s");
    return true;
}

/* -------------------------------------------------------------------------- the entry */

bool bundle_bootstrap(PGconn *conn, const struct bundle_table *tables, int n, struct bundle_catalog *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        err_set(err, errlen, "bundle bootstrap: no connection to PostgreSQL");
        return false;
    }
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        err_set(err, errlen, "bundle bootstrap: the connection is inside a transaction");
        return false;
    }
    if (n < 0 || (n > 0 && !tables)) {
        err_set(err, errlen, "bundle bootstrap: no registered tables given");
        return false;
    }

    struct bundle_catalog_table *t = xcalloc((size_t)n + 1, sizeof *t);
    if (!normalize_registry(tables, n, t, err, errlen) || !validate_tables(conn, t, n, err, errlen)) {
        free(t);
        return false;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_catalog);
    for (int i = 0; i < n; i++)
        t[i].table_id = i + 1;
    out->tables = t;
    out->n_tables = n;

    bool ok = ensure_layout(conn, out, err, errlen) && validate_fks(conn, out, err, errlen)
              && install_triggers(conn, out, err, errlen);
    if (!ok) {
        rollback_if_open(conn);
        bundle_catalog_free(out);
    }
    return ok;
}

void bundle_catalog_free(struct bundle_catalog *c)
{
    free(c->tables);
    memset(c, 0, sizeof *c);
}

const struct bundle_catalog_table *bundle_catalog_find(const struct bundle_catalog *c, const char *schema,
                                                       const char *table)
{
    if (!c->tables || !schema || !table)
        return NULL;
    struct bundle_catalog_table key;
    memset(&key, 0, sizeof key);
    if (strlen(schema) > BUNDLE_NAME_MAX || strlen(table) > BUNDLE_NAME_MAX)
        return NULL;
    strcpy(key.schema, schema);
    strcpy(key.table, table);
    /* ordered by (schema, table), which is the byte order of "schema.table" for these names */
    return bsearch(&key, c->tables, (size_t)c->n_tables, sizeof *c->tables, cmp_catalog);
}

const struct bundle_catalog_table *bundle_catalog_get(const struct bundle_catalog *c, int table_id)
{
    if (table_id < 1 || table_id > c->n_tables)
        return NULL;
    return &c->tables[table_id - 1];
}
