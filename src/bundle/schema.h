/* The sidecar of the bundle protocol (go-oversync 1f1118f, SPEC-v2 §5): validation of the
 * registered business tables, creation or adoption of the layout "server_postgres_sync_v1" in
 * schema sync, and the two row triggers on every registered table. docs/bundle-protocol.md
 * describes what is created and checked. Implemented in bundle_schema.c: liboversyncd.a keeps
 * one member per file name, and sync/schema.c has taken "schema.o". */
#ifndef OVERSYNCD_BUNDLE_SCHEMA_H
#define OVERSYNCD_BUNDLE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "../db/bootstrap.h"

/* The marker row of sync.meta. */
#define BUNDLE_PROTOCOL_LABEL "v1"
#define BUNDLE_LAYOUT_NAME "server_postgres_sync_v1"

/* The hidden owner column every registered table has (text): the user whose row it is. */
#define BUNDLE_SCOPE_COLUMN "_sync_scope_id"

/* Bundle context: transaction-local settings (set_config(name, value, true)) a writer sets
 * before it writes registered tables. The triggers read the first two; the reference library
 * also sets and checks the others. */
#define BUNDLE_GUC_USER_ID "oversync.bundle_user_id"
#define BUNDLE_GUC_USER_PK "oversync.bundle_user_pk"
#define BUNDLE_GUC_SOURCE_ID "oversync.bundle_source_id"
#define BUNDLE_GUC_SOURCE_BUNDLE_ID "oversync.bundle_source_bundle_id"
#define BUNDLE_GUC_INITIALIZATION_ID "oversync.bundle_initialization_id"

/* The triggers installed on every registered table. */
#define BUNDLE_OWNER_GUARD_TRIGGER "oversync_bundle_owner_guard"
#define BUNDLE_CAPTURE_TRIGGER "oversync_bundle_capture_row"

/* Longest schema, table or column name (PostgreSQL's NAMEDATALEN - 1). */
#define BUNDLE_NAME_MAX 63

/* sync.table_catalog.sync_key_kind, and how key_bytes encode a key. */
enum bundle_key_kind {
    BUNDLE_KEY_UUID = 1,   /* uuid column; key_bytes = the 16 raw bytes */
    BUNDLE_KEY_TEXT = 2,   /* text column; key_bytes = the UTF-8 bytes */
};

/* One registered table as configured. Names are trimmed and lower-cased (an empty or NULL
 * schema is "public"), as the reference library does, and must then match ^[a-z0-9_]+$. */
struct bundle_table {
    const char *schema;
    const char *table;
    const char *key_column;   /* the one visible sync key column: uuid or text */
};

/* One row of sync.table_catalog. */
struct bundle_catalog_table {
    int table_id;                              /* 1-based rank of "schema.table" in byte order */
    char schema[BUNDLE_NAME_MAX + 1];
    char table[BUNDLE_NAME_MAX + 1];
    char key_column[BUNDLE_NAME_MAX + 1];
    enum bundle_key_kind key_kind;
};

struct bundle_catalog {
    struct bundle_catalog_table *tables;   /* in table_id order: tables[i].table_id == i + 1 */
    int n_tables;
    bool created;                          /* this call created the layout (else it adopted it) */
    int triggers_installed;                /* tables whose two triggers this call (re)created */
};

/* Brings the database to the bundle layout for the registered tables, as the reference's
 * Bootstrap does:
 *   1. validates the registered tables (SPEC-v2 §5.3: _sync_scope_id text, a uuid or text key
 *      column, unique indexes all non-partial, without expressions and leading with
 *      _sync_scope_id, one of them exactly (_sync_scope_id, key));
 *   2. in one transaction under pg_advisory_xact_lock(0x6f76657273796e63): adopts an existing
 *      layout after checking its marker row and that its catalog equals the expected one (and
 *      creates nothing), refuses a schema sync holding anything else (the old protocol's
 *      sidecar, for one), or creates every object of sql/bundle/ and the marker and catalog rows;
 *   3. validates the foreign keys of the registered tables (FK-closed; registered → registered
 *      exactly (_sync_scope_id, col) → (_sync_scope_id, parent key), MATCH SIMPLE, DEFERRABLE);
 *   4. installs the owner-guard and capture triggers on every registered table in a second
 *      locked transaction, leaving a table alone whose two triggers are already exactly right.
 * Safe to run from many processes at once. On success *out holds the catalog (free it with
 * bundle_catalog_free); on failure err holds one log line naming the table and the problem (the
 * reference's wording where it has one), *out is empty, and nothing of step 2 or 4 is left half
 * done. The connection must not be inside a transaction. n may be 0 (an empty catalog). */
bool bundle_bootstrap(PGconn *conn, const struct bundle_table *tables, int n, struct bundle_catalog *out,
                      char *err, size_t errlen);

void bundle_catalog_free(struct bundle_catalog *c);

/* ^[a-z0-9_]+$: a schema, table or column name the protocol can carry (SPEC-v2 §3.3). */
bool bundle_name_valid(const char *s);

/* The entry of schema.table (names as stored: lower case), NULL when not registered. */
const struct bundle_catalog_table *bundle_catalog_find(const struct bundle_catalog *c, const char *schema,
                                                       const char *table);
/* The entry of a table_id, NULL when out of range. */
const struct bundle_catalog_table *bundle_catalog_get(const struct bundle_catalog *c, int table_id);

/* The layout DDL, generated by scripts/embed-sql.sh from sql/bundle/NNNN_*.sql
 * (src/sql_embedded.c); run in this order on an empty schema sync. */
extern const struct migration bundle_layout_sql[];
extern const int n_bundle_layout_sql;

/* Functions in schema oversyncd (sql/bundle/0002_canonical.sql: canonical_json, bundle_hash_text,
 * bundle_hash; sql/bundle/0003_finalize.sql: finalize_bundle, activate_source, apply_retention)
 * and the server-write functions of schema sync (0003: begin_server_bundle,
 * commit_server_bundle), all CREATE OR REPLACE or IF NOT EXISTS, run at every bootstrap after the
 * layout was created or adopted, in the same transaction. */
extern const struct migration bundle_functions_sql[];
extern const int n_bundle_functions_sql;

#endif
