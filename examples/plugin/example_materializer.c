/* example_materializer.c — a small oversyncd materializer plugin, as a starting point for your own.
 *
 * What it does
 * ------------
 * It keeps one business table per registered table, named exactly like the registered table
 * (<schema>.<table>), with this shape:
 *
 *     CREATE TABLE <schema>.<table> (id uuid PRIMARY KEY, doc jsonb NOT NULL);
 *
 *   INSERT / UPDATE   upsert: id = the change's primary key, doc = the whole payload
 *                     (INSERT ... ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc)
 *   DELETE            DELETE FROM <schema>.<table> WHERE id = <pk>
 *
 * It also has the optional batch entry point (ABI 2): apply_batch gets all upserts (or all
 * deletes) of the table in one upload and writes them with one statement,
 *
 *   upserts           INSERT ... SELECT DISTINCT ON (id) ... FROM jsonb_array_elements($1)
 *                     ORDER BY id, position DESC ON CONFLICT (id) DO UPDATE: the last payload of
 *                     each key wins, as if the changes were applied one by one
 *   deletes           DELETE FROM <schema>.<table> WHERE id = ANY ($1::uuid[])
 *
 * A payload with the top-level member "plugin_fail": true is refused with the message
 *
 *     example_materializer: refusing <schema>.<table> row <pk>: the payload has "plugin_fail": true
 *
 * which oversyncd answers as a materialize_error (and records in sync.materialize_failures). The
 * oversyncd test-suite uses this to provoke a failure; your plugin would refuse for real reasons.
 * apply_batch refuses a whole batch holding such a payload; oversyncd then applies the batch again
 * change by change with apply_upsert and apply_delete, and only that change fails.
 *
 * Configuration
 * -------------
 *     [table business.documents]
 *     materializer = plugin:/usr/local/lib/oversyncd/example_materializer.so
 *
 * One plugin file may serve several tables: each [table] section gets its own init() call and its
 * own state pointer.
 *
 * Building (see Makefile and README.md next to this file)
 * -------------------------------------------------------
 *     cc -shared -fPIC $(pkg-config --cflags oversyncd) -o example_materializer.so \
 *        example_materializer.c $(pkg-config --libs libpq)
 *
 * Rules every plugin must follow (from <oversyncd/materializer.h>)
 * ------------------------------------------------------------------
 * - Export  const struct oversyncd_materializer *oversyncd_materializer_v1(void)  returning a
 *   table whose abi_version is OVERSYNCD_MATERIALIZER_ABI and whose apply_upsert and apply_delete
 *   are set.
 * - Every callback runs inside the upload's transaction, on the worker's own connection, which is
 *   passed to each call. Never COMMIT, ROLLBACK or change the transaction state: oversyncd undoes
 *   a failed change by rolling back to its own savepoint.
 * - Return 0 on success. On failure return non-zero and write a NUL-terminated message into err
 *   (at most errlen bytes): it becomes the change's materialize_error message, verbatim.
 * - init() runs once per worker process, not once per connection: when the worker reconnects to
 *   PostgreSQL it does NOT call init() again. So do not PQprepare() statements in init() and rely
 *   on them later (they vanish with the old connection); use PQexecParams() as below, or prepare
 *   lazily per connection. (The start-up check also loads the plugin once in the supervising
 *   process, calls init() and cleanup(), and unloads it again.)
 * - Be idempotent: the same change may be applied again after an earlier attempt was undone
 *   (a client retry or POST /admin/materialize-failures/retry).
 */
#include <oversyncd/materializer.h>

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The two exported functions. Declared here because nothing else declares them (and so that the
 * compiler checks the definitions against the names oversyncd and the tests look up). */
const struct oversyncd_materializer *oversyncd_materializer_v1(void);
int example_materializer_init_count(void);
int example_materializer_batch_count(void);

/* Per-table state: what init() learnt, handed back to every other call. */
struct example_state {
    char *schema;
    char *table;
    char *upsert_sql;   /* INSERT INTO "schema"."table" ... */
    char *delete_sql;   /* DELETE FROM "schema"."table" ... */
    char *batch_upsert_sql;
    char *batch_delete_sql;
};

/* How many times init() ran in this process: a worker calls it once per [table] section that
 * names this plugin. Exposed through example_materializer_init_count() for the tests. */
static int init_calls;

int example_materializer_init_count(void)
{
    return init_calls;
}

/* How many batches apply_batch applied (refused ones not counted), for the tests. */
static int batch_calls;

int example_materializer_batch_count(void)
{
    return batch_calls;
}

/* Copies the primary error message of a failed statement into err, without the trailing newline. */
static void sql_error(const char *what, PGresult *res, PGconn *conn, char *err, size_t errlen)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        msg = PQerrorMessage(conn);
    snprintf(err, errlen, "example_materializer: %s: %s", what, msg && *msg ? msg : "unknown error");
    size_t n = strlen(err);
    while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
}

static void free_state(struct example_state *st)
{
    if (!st)
        return;
    free(st->schema);
    free(st->table);
    free(st->upsert_sql);
    free(st->delete_sql);
    free(st->batch_upsert_sql);
    free(st->batch_delete_sql);
    free(st);
}

/* a + b + c in a new string (NULL when out of memory). */
static char *join3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc + 1);
    }
    return s;
}

static int example_init(const char *schema, const char *table, PGconn *conn, void **state, char *err,
                        size_t errlen)
{
    init_calls++;

    /* The target table must exist and have the columns this plugin writes: checked now, so that a
     * mistake stops oversyncd at start-up (and --check-config) instead of failing every upload. */
    char *qschema = PQescapeIdentifier(conn, schema, strlen(schema));
    char *qtable = PQescapeIdentifier(conn, table, strlen(table));
    if (!qschema || !qtable) {
        sql_error("quoting the table name", NULL, conn, err, errlen);
        PQfreemem(qschema);
        PQfreemem(qtable);
        return 1;
    }
    char *qualified = join3(qschema, ".", qtable);
    PQfreemem(qschema);
    PQfreemem(qtable);
    if (!qualified) {
        snprintf(err, errlen, "example_materializer: out of memory");
        return 1;
    }

    const char *params[1] = { qualified };
    PGresult *r = PQexecParams(conn,
                               "SELECT count(*) FROM pg_attribute"
                               " WHERE attrelid = to_regclass($1) AND NOT attisdropped"
                               "   AND ((attname = 'id' AND atttypid = 'uuid'::regtype)"
                               "     OR (attname = 'doc' AND atttypid = 'jsonb'::regtype))",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sql_error("checking the target table", r, conn, err, errlen);
        PQclear(r);
        free(qualified);
        return 1;
    }
    int found = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (found != 2) {
        snprintf(err, errlen,
                 "example_materializer: %s.%s must be a table with columns id uuid (primary key) and doc jsonb",
                 schema, table);
        free(qualified);
        return 1;
    }

    struct example_state *st = calloc(1, sizeof *st);
    if (st) {
        st->schema = join3(schema, "", "");
        st->table = join3(table, "", "");
        st->upsert_sql = join3("INSERT INTO ", qualified,
                               " (id, doc) VALUES ($1::uuid, $2::jsonb)"
                               " ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc");
        st->delete_sql = join3("DELETE FROM ", qualified, " WHERE id = $1::uuid");
        /* $1: a JSON array of {"pk": ..., "doc": ...}; the last element of a key wins */
        st->batch_upsert_sql = join3("INSERT INTO ", qualified,
                                     " (id, doc) SELECT DISTINCT ON ((e ->> 'pk')::uuid) (e ->> 'pk')::uuid, e -> 'doc'"
                                     " FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)"
                                     " ORDER BY (e ->> 'pk')::uuid, i DESC"
                                     " ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc");
        st->batch_delete_sql = join3("DELETE FROM ", qualified, " WHERE id = ANY ($1::uuid[])");
    }
    free(qualified);
    if (!st || !st->schema || !st->table || !st->upsert_sql || !st->delete_sql || !st->batch_upsert_sql ||
        !st->batch_delete_sql) {
        free_state(st);
        snprintf(err, errlen, "example_materializer: out of memory");
        return 1;
    }
    *state = st;
    return 0;
}

static int example_upsert(void *state, PGconn *conn, const char *user_id, const char *pk,
                          const char *payload_json, char *err, size_t errlen)
{
    struct example_state *st = state;
    (void)user_id;   /* available if your business table keeps the owner */

    /* Let PostgreSQL read the JSON: is there a top-level "plugin_fail": true? */
    const char *check[1] = { payload_json };
    PGresult *r = PQexecParams(conn, "SELECT coalesce($1::jsonb -> 'plugin_fail' = 'true'::jsonb, false)", 1,
                               NULL, check, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sql_error("reading the payload", r, conn, err, errlen);
        PQclear(r);
        return 1;
    }
    int refuse = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (refuse) {
        snprintf(err, errlen, "example_materializer: refusing %s.%s row %s: the payload has \"plugin_fail\": true",
                 st->schema, st->table, pk);
        return 1;
    }

    const char *params[2] = { pk, payload_json };
    r = PQexecParams(conn, st->upsert_sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        sql_error("upsert", r, conn, err, errlen);
        PQclear(r);
        return 1;
    }
    PQclear(r);
    return 0;
}

static int example_delete(void *state, PGconn *conn, const char *user_id, const char *pk, char *err,
                          size_t errlen)
{
    struct example_state *st = state;
    (void)user_id;
    const char *params[1] = { pk };
    PGresult *r = PQexecParams(conn, st->delete_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        sql_error("delete", r, conn, err, errlen);
        PQclear(r);
        return 1;
    }
    PQclear(r);
    return 0;   /* deleting a row that is not there is fine: the change is still applied */
}

/* Appends text to the growing buffer *buf (length *len, capacity *cap); 0 when out of memory. */
static int append(char **buf, size_t *len, size_t *cap, const char *text)
{
    size_t n = strlen(text);
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap : 256);
        while (*len + n + 1 > c)
            c *= 2;
        char *more = realloc(*buf, c);
        if (!more)
            return 0;
        *buf = more;
        *cap = c;
    }
    memcpy(*buf + *len, text, n + 1);
    *len += n;
    return 1;
}

static int example_batch(void *state, PGconn *conn, const char *user_id, const struct oversyncd_change *changes,
                         size_t n, char *err, size_t errlen)
{
    struct example_state *st = state;
    (void)user_id;
    if (n == 0)
        return 0;
    /* oversyncd passes all upserts or all deletes; the first change says which */
    int deletes = changes[0].payload_json == NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = append(&buf, &len, &cap, deletes ? "{" : "[");
    for (size_t i = 0; ok && i < n; i++) {
        /* pk is a canonical UUID: no quoting needed, neither in JSON nor in an array literal */
        if (deletes) {
            ok = (i == 0 || append(&buf, &len, &cap, ",")) && append(&buf, &len, &cap, changes[i].pk);
        } else {
            ok = append(&buf, &len, &cap, i ? ",{\"pk\":\"" : "{\"pk\":\"") &&
                 append(&buf, &len, &cap, changes[i].pk) && append(&buf, &len, &cap, "\",\"doc\":") &&
                 append(&buf, &len, &cap, changes[i].payload_json) && append(&buf, &len, &cap, "}");
        }
    }
    ok = ok && append(&buf, &len, &cap, deletes ? "}" : "]");
    if (!ok) {
        free(buf);
        snprintf(err, errlen, "example_materializer: out of memory");
        return 1;
    }
    const char *params[1] = { buf };
    PGresult *r;
    if (!deletes) {
        /* the same refusal as example_upsert, for the whole batch: oversyncd then applies the
         * changes one by one, and only the refused one fails */
        r = PQexecParams(conn,
                         "SELECT coalesce(bool_or(e -> 'doc' -> 'plugin_fail' = 'true'::jsonb), false)"
                         " FROM jsonb_array_elements($1::jsonb) AS e",
                         1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            sql_error("reading the payloads", r, conn, err, errlen);
            PQclear(r);
            free(buf);
            return 1;
        }
        int refuse = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (refuse) {
            snprintf(err, errlen, "example_materializer: refusing a batch of %s.%s: a payload has \"plugin_fail\": true",
                     st->schema, st->table);
            free(buf);
            return 1;
        }
    }
    r = PQexecParams(conn, deletes ? st->batch_delete_sql : st->batch_upsert_sql, 1, NULL, params, NULL, NULL, 0);
    free(buf);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        sql_error(deletes ? "batch delete" : "batch upsert", r, conn, err, errlen);
        PQclear(r);
        return 1;
    }
    PQclear(r);
    batch_calls++;
    return 0;
}

static void example_cleanup(void *state)
{
    /* Called when the worker exits (and after the start-up check). No connection is passed: only
     * release memory and other process resources here. */
    free_state(state);
}

static const struct oversyncd_materializer example = {
    .abi_version = OVERSYNCD_MATERIALIZER_ABI,
    .init = example_init,
    .apply_upsert = example_upsert,
    .apply_delete = example_delete,
    /* Foreign keys of this table point at no other table, so no value needs converting for the
     * foreign-key pre-check. */
    .convert_reference = NULL,
    .cleanup = example_cleanup,
    .apply_batch = example_batch,
};

const struct oversyncd_materializer *oversyncd_materializer_v1(void)
{
    return &example;
}
