/* The sync core: upload and download exactly as SPEC §4, §5 and §8. It sees a libpq connection,
 * the configuration and the caller's identity; never FastCGI. */
#ifndef OVERSYNCD_SYNC_H
#define OVERSYNCD_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "../arena.h"
#include "../identity.h"
#include "../config.h"
#include "../db/db.h"
#include "../strbuf.h"

/* Why an uploaded change is answered invalid (invalid.reason on the wire, in this order). */
enum invalid_reason {
    INVALID_FK_MISSING = 0,
    INVALID_BAD_PAYLOAD,
    INVALID_PRECHECK_ERROR,
    INVALID_UNREGISTERED_TABLE,
    INVALID_INTERNAL_ERROR,
    INVALID_PK_TAKEN,              /* the row belongs to another user (sync.row_owner) */
    INVALID__COUNT
};
/* The wire name of a reason ("fk_missing", ...). */
const char *sync_invalid_reason_name(enum invalid_reason r);

/* How a foreign-key value from a payload is checked against the parent column. */
enum fk_value_kind { FK_VALUE_UUID, FK_VALUE_INT2, FK_VALUE_INT4, FK_VALUE_INT8, FK_VALUE_TEXT, FK_VALUE_OTHER };

/* A foreign key whose child is a registered table. */
struct sync_fk {
    char *name;
    int child;                    /* index into sync_schema.tables */
    char *child_col;              /* NULL when composite (left to PostgreSQL at commit) */
    char *parent_schema;
    char *parent_table;
    int parent;                   /* index into sync_schema.tables, -1 when not registered */
    char *parent_col;
    char *parent_type;            /* format_type() of the parent column */
    enum fk_value_kind kind;
    bool parent_is_pk;            /* the parent column is the parent's single-column primary key */
    bool deferrable;
    bool deferred;
    char *exists_sql;             /* values ($1 text[]) that exist in the parent */
};

/* Registered tables with their apply rank (parents before children). */
struct sync_table {
    const char *schema;
    const char *name;
    const struct table_conf *conf;
    int rank;                     /* position in the deterministic apply order */
    int *fks;                     /* single-column FKs of this table (indexes into sync_schema.fks) */
    int n_fks;
    struct materializer *mat;     /* NULL for materializer none (or when not loaded) */
};

struct sync_schema {
    struct sync_table *tables;    /* sorted by schema, name */
    int n_tables;
    struct sync_fk *fks;
    int n_fks;
    bool discovered;              /* the catalog was read */
};

struct materializer;

/* Builds the registry from the configuration (name order until the FK topology is known). */
void sync_schema_init(struct sync_schema *s, const struct config *cfg);
void sync_schema_free(struct sync_schema *s);
void sync_schema_free_fks(struct sync_schema *s);
/* Reads the foreign keys of the registered tables from the catalog and ranks the tables in a
 * deterministic topological order (ties by schema.table; a cycle falls back to name order and
 * is logged). */
bool sync_schema_discover(struct sync_schema *s, PGconn *conn, char *err, size_t errlen);
/* Makes the non-deferrable FKs of registered tables DEFERRABLE INITIALLY DEFERRED (SPEC §6.2).
 * With dry_run only reports. Each constraint changes in a transaction of its own; a failure
 * leaves that constraint as it was and is reported. Returns false when any failed. */
bool sync_fk_migrate(const struct config *cfg, PGconn *conn, bool dry_run, strbuf_t *report);
/* {"a","b"} arrays of the registered tables' schemas and names (only the materialized ones when
 * materialized_only), for statements that take the registry as parameters. */
void sync_schema_arrays(const struct sync_schema *s, bool materialized_only, strbuf_t *schemas, strbuf_t *names);
/* Runs sql with those two arrays as $1 (schemas) and $2 (names); the result is the caller's. */
PGresult *sync_schema_query(const struct sync_schema *s, bool materialized_only, PGconn *conn, const char *sql);
/* Row ownership (sql/migrations/0004_row_owner.sql): records which tables are materialized and
 * adopts the existing rows of a table that just became materialized (the earliest writer of a
 * key owns it). Idempotent and safe from many workers at once; run after every connect. */
bool sync_ownership_setup(const struct sync_schema *s, PGconn *conn, char *err, size_t errlen);
const struct sync_table *sync_schema_find(const struct sync_schema *s, const char *schema, const char *name);

/* Registers the sync core's prepared statements with the db layer (once per process, before the
 * first connection); db_prepare_statements prepares them on a connection of one's own. */
void sync_register_statements(void);

enum sync_outcome {
    SYNC_OK,                 /* *out holds the 200 answer (or it went to the request's sink) */
    SYNC_BAD_REQUEST,        /* 400 invalid_request; err says why; nothing written */
    SYNC_UNAVAILABLE,        /* 503: connection lost, lock or statement timeout; nothing written */
    SYNC_FAILED,             /* 500: unexpected database error; logged; nothing written */
    SYNC_NOT_FOUND,          /* 404 */
};

/* Where an answer too large to hold may go instead of out: begin once with its exact length,
 * then write with its bytes in order (out is left empty). */
struct sync_sink {
    void (*begin)(void *ud, size_t len);
    void (*write)(void *ud, const char *data, size_t len);
    void *ud;
};

struct sync_request {
    const struct config *cfg;
    const struct sync_schema *schema;
    PGconn *conn;
    const struct identity *who;
    arena_t *arena;
    const char *request_id;
    const struct sync_sink *sink;   /* NULL: every answer is built in out */
};

struct upload_counts {
    unsigned long applied;
    unsigned long conflicts;
    unsigned long materialize_errors;
    unsigned long materialize_fallbacks;   /* set-based materializations redone change by change */
    unsigned long one_trip;                /* 1 when written in one round trip ([sync] optimistic_upload) */
    unsigned long rewrites;                /* 1 when that write missed and was redone the careful way */
    unsigned long invalid[INVALID__COUNT];
};

enum sync_outcome sync_upload(const struct sync_request *rq, const char *body, size_t len,
                              strbuf_t *out, struct upload_counts *counts, char *err, size_t errlen);

struct download_params {
    long long after;
    int limit;
    const char *schema;        /* NULL = all */
    bool include_self;
    long long until;           /* 0 = now */
};

/* Validates the query parameters (SPEC §5); false with the message for a 400. */
bool download_params_parse(const char *after, const char *limit, const char *schema,
                           const char *include_self, const char *until, struct download_params *p,
                           char *err, size_t errlen);

enum sync_outcome sync_download(const struct sync_request *rq, const struct download_params *p,
                                strbuf_t *out, unsigned long *rows, char *err, size_t errlen);
/* A binary timestamptz (microseconds since 2000-01-01 UTC) as the download writes ts:
 * to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'); nothing for ±infinity. */
void sync_format_ts(strbuf_t *out, int64_t us);

/* GET /admin/materialize-failures (SPEC §7): the caller's failures, newest first. */
bool failures_params_parse(const char *schema, const char *table, const char *limit, const char **schema_out,
                           const char **table_out, int *limit_out, char *err, size_t errlen);
enum sync_outcome sync_list_failures(const struct sync_request *rq, const char *schema, const char *table,
                                     int limit, strbuf_t *out, char *err, size_t errlen);

/* POST /admin/materialize-failures/retry: re-applies failure id as the service (source id
 * admin-retry) against the row's current version. SYNC_NOT_FOUND for an unknown or foreign id. */
enum sync_outcome sync_retry_failure(const struct sync_request *rq, long long id, strbuf_t *out, char *err,
                                     size_t errlen);

/* Error classification shared by upload and download. */
enum sync_outcome sync_classify_pg_error(PGconn *conn, const PGresult *res);
/* "stage: SQLSTATE primary message" for logs and err: never PostgreSQL's DETAIL, which can quote
 * a row (and so a payload). */
void sync_pg_error_text(PGconn *conn, const PGresult *res, const char *stage, char *err, size_t errlen);

bool sync_name_ok(const char *s);   /* ^[a-z0-9_]+$ */

#endif
