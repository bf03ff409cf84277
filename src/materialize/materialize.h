/* Materializers project a registered table's synced rows into its business table, inside the
 * upload transaction (SPEC §7): none, generic, sql:<schema.function>, plugin:<path.so>. */
#ifndef OVERSYNCD_MATERIALIZE_H
#define OVERSYNCD_MATERIALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "../arena.h"
#include "../config.h"

struct materializer;

/* One applied change as a materializer sees it. */
struct mat_change {
    bool is_delete;
    const char *op;            /* "INSERT", "UPDATE" or "DELETE" */
    const char *schema;
    const char *table;
    const char *pk;            /* canonical UUID */
    const char *payload;       /* JSON object text; NULL for DELETE */
    size_t payload_len;
    const char *user;
};

/* Loads what the materializer needs that does not depend on a connection (a plugin's shared
 * object). NULL with the reason in err; a NONE table gets NULL and no error. */
struct materializer *materializer_new(const struct table_conf *t, char *err, size_t errlen);
void materializer_free(struct materializer *m);

/* After every (re)connect: read column metadata, check the function exists, init the plugin.
 * Statements it prepares are tied to this connection. */
bool materializer_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen);

/* How to apply one change: a statement to send in a pipeline, or a synchronous call. */
struct mat_plan {
    bool synchronous;          /* plugin: call materializer_apply */
    const char *stmt;          /* prepared statement name, or NULL to send sql */
    const char *sql;
    int nparams;
    const char *values[6];
};

enum mat_plan_result { MAT_PLANNED, MAT_UNCONVERTIBLE, MAT_DB_ERROR };

/* Plans change c: converts the payload by column type and makes sure the statement is prepared on
 * conn (outside any pipeline). MAT_UNCONVERTIBLE: the change cannot be applied (err names the
 * column); MAT_DB_ERROR: preparing failed (err says why). */
enum mat_plan_result materializer_plan(struct materializer *m, PGconn *conn, const struct mat_change *c,
                                       arena_t *a, struct mat_plan *plan, char *err, size_t errlen);
/* Applies c at once on conn (plugins). false with the error text. */
bool materializer_apply(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err,
                        size_t errlen);

/* Set-based materialization: the changes of one table and one kind (all upserts or all deletes),
 * in apply order, applied together. A kind without a batch entry point is planned change by change
 * (materializer_plan). */
struct mat_set_stmt {
    const char *stmt;          /* prepared statement name, or NULL to send sql */
    const char *sql;
    int nparams;
    const char *values[4];
};

struct mat_batch_plan {
    bool synchronous;          /* plugin: call materializer_apply_batch */
    int nstmts;                /* statements to run in this order (none when synchronous) */
    struct mat_set_stmt *stmts;
};

/* Whether m has a batch entry point (generic always; sql: when the batch function exists; plugin:
 * when it exports apply_batch). */
bool materializer_batches(const struct materializer *m);
/* Plans the n changes cs (same table, all deletes or all upserts) as one unit. MAT_UNCONVERTIBLE:
 * change *bad cannot be applied (err says why); MAT_DB_ERROR: preparing failed. */
enum mat_plan_result materializer_plan_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs,
                                             int n, arena_t *a, struct mat_batch_plan *plan, int *bad, char *err,
                                             size_t errlen);
/* Applies the n changes cs at once on conn (plugins). false with the error text. */
bool materializer_apply_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs, int n, char *err,
                              size_t errlen);

/* A plugin's optional reference-key conversion for the FK pre-check: 1 and the parent's text form
 * in out, 0 when the materializer has none, -1 with err when the value cannot be converted. */
int materializer_convert_reference(struct materializer *m, const char *column, const char *value, char *out,
                                   size_t outlen, char *err, size_t errlen);

/* Loads every registered table's materializer and, when conn is given, connects it (so missing
 * tables, functions and unloadable plugins are found before serving). false with a message that
 * names the table. */
bool materializers_verify(const struct config *cfg, PGconn *conn, char *err, size_t errlen);

/* Error text of a failed statement, for materialize_error answers and the failure log. */
void materializer_error_text(const PGresult *res, PGconn *conn, char *err, size_t errlen);

#endif
