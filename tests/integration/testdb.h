/* Shared helpers of the sync-core integration tests (check_upload, check_download).
 *
 * Every test gets a database of its own on the throwaway cluster of tests/pg.sh: created fresh,
 * bootstrapped with bootstrap_sidecar and with every statement of the modules' statement lists (sync_register_statements) prepared,
 * exactly what a worker does after connecting; dropped at the end. The configuration and the
 * table registry are built by hand, so a test can register whatever tables it needs.
 *
 * Check forks every test: open a testdb inside the test (or in a checked fixture), never in main. */
#ifndef OVERSYNCD_TESTDB_H
#define OVERSYNCD_TESTDB_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>
#include <libpq-fe.h>

#include "arena.h"
#include "auth/auth.h"
#include "config.h"
#include "sync/sync.h"

#define TDB_MAX_TABLES 16

struct testdb {
    char dbname[64];
    PGconn *conn;                    /* connection to the test database, statements prepared */
    struct config cfg;               /* zeroed, then the few sync keys the core reads */
    struct table_conf tables[TDB_MAX_TABLES];
    struct sync_schema schema;
    arena_t *arena;                  /* strings made by tdb_printf, freed by tdb_close */
};

/* The result of one sync_upload or sync_download call. */
struct tdb_answer {
    enum sync_outcome outcome;
    char err[1024];                  /* the err text for anything but SYNC_OK */
    char *body;                      /* the raw 200 answer (SYNC_OK), else NULL; malloc'd */
    json_object *json;               /* body parsed with json_tokener_parse (SYNC_OK), else NULL */
    unsigned long rows;              /* download: rows reported by sync_download */
    struct upload_counts counts;     /* upload: counts reported by sync_upload */
};

/* Default registry: business.users, business.posts, public.notes (materializer none),
 * max_upload_changes 100, max_payload_bytes 1 MB, lock_timeout 5 s. */
void tdb_open(struct testdb *t);
/* Same, with the registered tables given as "schema.table" strings, NULL-terminated. */
void tdb_open_tables(struct testdb *t, const char *const *tables);
/* Replaces the registry (the configuration's tables and the sync_schema). */
void tdb_set_tables(struct testdb *t, const char *const *tables);
/* A fresh database with nothing in it: no sidecar bootstrapped, no statement prepared, no
 * registry (cfg zeroed). For suites that bootstrap a schema of their own (check_bundle_schema);
 * the SQL helpers below work on it, tdb_close drops it. */
void tdb_open_empty(struct testdb *t);
/* One more connection to the test database (client_min_messages = warning), nothing prepared;
 * the caller closes it with PQfinish. Also usable in a forked child. */
PGconn *tdb_connect(const struct testdb *t);
/* Closes the connection and drops the database. */
void tdb_close(struct testdb *t);
/* In a child forked inside a test: a connection of its own to the same database, statements
 * prepared. The child must leave with _exit() and never call tdb_close (that drops the database). */
void tdb_child_connect(struct testdb *t);

struct identity tdb_who(const char *user, const char *device);

/* sync_upload with a fresh arena. */
struct tdb_answer *tdb_upload(struct testdb *t, const char *user, const char *device, const char *body);
struct tdb_answer *tdb_upload_len(struct testdb *t, const char *user, const char *device, const char *body,
                                  size_t len);
/* Uploads and asserts SYNC_OK; the parsed answer. */
struct tdb_answer *tdb_upload_ok(struct testdb *t, const char *user, const char *device, const char *body);

/* Query-string style parameters ("after=3&limit=2&schema=business&include_self=true&until=9");
 * a parameter not named is NULL, "after=" is the empty string. No percent-decoding.
 * download_params_parse; false with the message in err. */
bool tdb_download_params(const char *query, struct download_params *p, char *err, size_t errlen);
/* download_params_parse + sync_download. A parse failure answers SYNC_BAD_REQUEST with err. */
struct tdb_answer *tdb_download(struct testdb *t, const char *user, const char *device, const char *query);
/* Same, asserting SYNC_OK. */
struct tdb_answer *tdb_download_ok(struct testdb *t, const char *user, const char *device, const char *query);

void tdb_answer_free(struct tdb_answer *a);

/* JSON access with assertions: a member that must exist (and not be absent). */
json_object *tdb_get(json_object *obj, const char *key);
bool tdb_has(json_object *obj, const char *key);
/* statuses[i] of an upload answer / changes[i] of a download answer. */
json_object *tdb_status(const struct tdb_answer *a, int i);
int tdb_nstatuses(const struct tdb_answer *a);
json_object *tdb_change(const struct tdb_answer *a, int i);
int tdb_nchanges(const struct tdb_answer *a);
long long tdb_int(json_object *obj, const char *key);          /* asserts a JSON integer */
const char *tdb_str(json_object *obj, const char *key);        /* asserts a JSON string */
bool tdb_bool(json_object *obj, const char *key);              /* asserts a JSON boolean */
bool tdb_is_null(json_object *obj, const char *key);           /* present and JSON null */
/* Compares a JSON value with JSON text (semantic equality: key order and spacing ignored). */
bool tdb_json_eq(json_object *obj, const char *json_text);

/* A string that lives until tdb_close. */
char *tdb_printf(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* {"last_server_seq_seen":0,"changes":[c1,c2,...]} from NULL-terminated change texts. */
char *tdb_batch(struct testdb *t, const char *first, ...);

/* SQL helpers on the test connection (assert success). */
void tdb_exec(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The single value of a one-row one-column query; "<null>" for NULL. Lives until tdb_close. */
char *tdb_query(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long long tdb_query_ll(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sidecar row counts of one user (NULL = every user). */
long long tdb_log_count(struct testdb *t, const char *user);
long long tdb_meta_count(struct testdb *t, const char *user);
long long tdb_state_count(struct testdb *t, const char *user);
/* Log rows of one row (user, pk), any table. */
long long tdb_log_count_pk(struct testdb *t, const char *user, const char *pk);
/* The user's highest server_id, 0 when none. */
long long tdb_highest(struct testdb *t, const char *user);
/* md5 of the ordered contents of server_change_log, sync_row_meta and sync_state (all users). */
char *tdb_snapshot(struct testdb *t);

#endif
