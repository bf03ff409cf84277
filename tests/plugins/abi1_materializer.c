/* A plugin as built against version 1 of <oversyncd/materializer.h>: abi_version 1 and a table
 * that ends with cleanup (no apply_batch member at all: the struct is shorter than version 2's).
 * oversyncd must load it and call apply_upsert and apply_delete change by change, set-based
 * materialization on or off. It writes business.<table> (id uuid PRIMARY KEY, doc jsonb) and counts
 * its calls (abi1_materializer_calls) for tests/integration/check_materialize. */
#include <libpq-fe.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* the version 1 layout, spelled out here instead of taken from today's header */
struct v1_materializer {
    int abi_version;
    int (*init)(const char *schema, const char *table, PGconn *conn, void **state, char *err, size_t errlen);
    int (*apply_upsert)(void *state, PGconn *conn, const char *user_id, const char *pk, const char *payload_json,
                        char *err, size_t errlen);
    int (*apply_delete)(void *state, PGconn *conn, const char *user_id, const char *pk, char *err, size_t errlen);
    int (*convert_reference)(void *state, const char *column, const char *value, char *out, size_t outlen,
                             char *err, size_t errlen);
    void (*cleanup)(void *state);
};

const struct v1_materializer *oversyncd_materializer_v1(void);
int abi1_materializer_calls(void);

static int calls;

int abi1_materializer_calls(void)
{
    return calls;
}

static int run(PGconn *conn, const char *sql, int n, const char *const *params, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, errlen, "abi1_materializer: %s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    PQclear(r);
    calls++;
    return ok ? 0 : 1;
}

static int upsert(void *state, PGconn *conn, const char *user_id, const char *pk, const char *payload_json, char *err,
                  size_t errlen)
{
    (void)state; (void)user_id;
    const char *p[2] = { pk, payload_json };
    return run(conn, "INSERT INTO business.docs (id, doc) VALUES ($1::uuid, $2::jsonb)"
                     " ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc", 2, p, err, errlen);
}

static int delete_row(void *state, PGconn *conn, const char *user_id, const char *pk, char *err, size_t errlen)
{
    (void)state; (void)user_id;
    const char *p[1] = { pk };
    return run(conn, "DELETE FROM business.docs WHERE id = $1::uuid", 1, p, err, errlen);
}

static const struct v1_materializer v1 = {
    .abi_version = 1,
    .apply_upsert = upsert,
    .apply_delete = delete_row,
};

const struct v1_materializer *oversyncd_materializer_v1(void)
{
    return &v1;
}
