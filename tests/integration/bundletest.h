/* The shared harness of the bundle protocol's integration tests (check_bundle_*.c): a fresh
 * database per test holding the reference's example business tables (tests/compat/1f1118f/
 * business.sql, schema business) plus business.notes (a text key, slug), bootstrapped with
 * bundle_bootstrap as a bundle-protocol worker does; the configuration's defaults with protocol =
 * bundle; and calls of the endpoint functions of src/bundle/bundle.h as (user, source), with
 * their replies captured and parsed.
 *
 * The database is T (testdb.h): its SQL helpers (tdb_conn_exec, tdb_conn_query, T.conn) work
 * on it. Use bt_tcase() for a TCase whose tests get it. */
#ifndef OVERSYNCD_BUNDLETEST_H
#define OVERSYNCD_BUNDLETEST_H

#include <check.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "bundle/bundle.h"
#include "testdb.h"

/* table ids of the registry (byte order of schema.table) */
enum {
    BT_CATEGORIES = 1, BT_FILE_REVIEWS, BT_FILES, BT_NOTES, BT_POSTS, BT_TEAM_MEMBERS, BT_TEAMS,
    BT_TYPED_ROWS, BT_USERS
};

/* The configuration (defaults of config_keys, protocol = bundle, app_name "bundle-test") and
 * the catalog of the running test. Tests may change BT_CFG before calling. */
extern struct config BT_CFG;
extern struct bundle_catalog BT_CATALOG;

/* A TCase whose tests each get a fresh database (setup/teardown as a checked fixture). */
TCase *bt_tcase(const char *name);

/* A reply, malloc'd: status, error code (NULL on success), body as sent, and the body parsed
 * (NULL for an empty body). */
struct bt_reply {
    int status;
    char *error;
    char *body;
    json_object *json;
};
void bt_reply_free(struct bt_reply *r);

/* A context for (user, source) on T's connection, allocating from arena. */
struct bundle_ctx bt_ctx(const char *user, const char *source, arena_t *arena);
/* Captures r (of a call made with arena) into a bt_reply; asserts the JSON body parses and, for
 * a failure, has exactly error and message (plus the documented extras), and that the call left
 * the connection outside a transaction. */
struct bt_reply *bt_capture(const struct bundle_reply *r);

/* The endpoints, as (user, source). Bodies/parameters as the HTTP layer passes them (NULL =
 * absent). */
struct bt_reply *bt_connect(const char *user, const char *source, const char *body);
struct bt_reply *bt_capabilities(const char *user, const char *source);
struct bt_reply *bt_status(bool health);
struct bt_reply *bt_push_create(const char *user, const char *source, const char *body);
struct bt_reply *bt_push_chunk(const char *user, const char *source, const char *push_id, const char *body);
struct bt_reply *bt_push_commit(const char *user, const char *source, const char *push_id);
struct bt_reply *bt_push_delete(const char *user, const char *source, const char *push_id);
struct bt_reply *bt_committed_rows(const char *user, const char *source, const char *bundle_seq,
                                   const char *after_row_ordinal, const char *max_rows);
struct bt_reply *bt_pull(const char *user, const char *source, const char *after_bundle_seq, const char *max_bundles,
                         const char *target_bundle_seq);
struct bt_reply *bt_snapshot_create(const char *user, const char *source, const char *body);
struct bt_reply *bt_snapshot_chunk(const char *user, const char *source, const char *snapshot_id,
                                   const char *after_row_ordinal, const char *max_rows);
struct bt_reply *bt_snapshot_delete(const char *user, const char *source, const char *snapshot_id);

/* Asserts the reply is status with error code (and, when message is not NULL, exactly that
 * message). */
void bt_assert_error(const struct bt_reply *r, int status, const char *code, const char *message);
/* Asserts the reply is status (2xx) with no error. */
void bt_assert_ok(const struct bt_reply *r, int status);

/* The value of a one-row one-column query on T, as a long long / a malloc'd string. */
long long bt_count(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *bt_query(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs SQL on T asserting success. */
void bt_exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
