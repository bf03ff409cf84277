/* The shared helpers of the integration tests (tests/integration/check_*.c), which run against
 * the throwaway PostgreSQL cluster of tests/pg.sh: whatever more than one suite needs lives here,
 * each suite keeps only what is its own.
 *
 * - Plain connections: connect, run SQL and read one value, create and drop an empty database.
 *   check_bootstrap uses only these (its databases have no sidecar: bootstrapping one is the
 *   test).
 * - Test databases (struct testdb), for check_upload, check_download, check_fk and
 *   check_materialize: every test gets a database of its own, created fresh, bootstrapped with
 *   bootstrap_sidecar and with every statement of the modules' statement lists
 *   (sync_register_statements) prepared, exactly what a worker does after connecting; dropped
 *   at the end. The configuration and the table registry are built by hand, so a test can
 *   register whatever tables it needs. On it: sync_upload and sync_download with their answers
 *   parsed, JSON access, SQL helpers and sidecar counts.
 * - The suites' vocabulary, on T, the database of the running test: TCases with its fixture,
 *   change builders (chg, ins, upd, del, batch), assertions on upload statuses (status_at,
 *   assert_applied, assert_idempotent, assert_invalid, assert_conflict), sidecar look-ups
 *   (meta_version, assert_no_sidecar) and races of forked children (race, race_start).
 *
 * Check forks every test: open a testdb inside the test (or in a checked fixture), never in main.
 * The main() of every suite is run_suites() of tests/run_suites.h. */
#ifndef OVERSYNCD_TESTDB_H
#define OVERSYNCD_TESTDB_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <json-c/json.h>
#include <libpq-fe.h>

#include "arena.h"
#include "auth/auth.h"
#include "config.h"
#include "sync/sync.h"

/* ---------------------------------------------------------------------- plain connections */

/* A connection to database dbname of the server DATABASE_URL names (tests/pg.sh; without it the
 * PG* variables apply). tdb_connect_raw may fail and asserts nothing (for forked children);
 * tdb_connect asserts that the connection is up. */
PGconn *tdb_connect_raw(const char *dbname);
PGconn *tdb_connect(const char *dbname);
/* Runs sql on c, asserting success. */
void tdb_conn_exec(PGconn *c, const char *sql);
/* The single value of a one-row one-column query on c, "<null>" for NULL; malloc'd. */
char *tdb_conn_query(PGconn *c, const char *sql);
/* Creates the empty database name (dropping a leftover of that name first) / drops it, closing
 * whatever connections it still has. */
void tdb_create_database(const char *name);
void tdb_drop_database(const char *name);

/* ------------------------------------------------------------------------- test databases */

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
    size_t arena_bytes;              /* upload: what the request's arena held when sync_upload returned */
};

/* Default registry: business.users, business.posts, public.notes (materializer none),
 * max_upload_changes 100, max_payload_bytes 1 MB, max_body_bytes 8 MB, lock_timeout 5 s,
 * statement_timeout 30 s, schema_version 1. */
void tdb_open(struct testdb *t);
/* Same, with the registered tables given as "schema.table" strings, NULL-terminated. */
void tdb_open_tables(struct testdb *t, const char *const *tables);
/* Replaces the registry (the configuration's tables and the sync_schema). */
void tdb_set_tables(struct testdb *t, const char *const *tables);
/* A fresh database with nothing in it: no sidecar bootstrapped, no statement prepared, no
 * registry (cfg zeroed). For suites that bootstrap a schema of their own (check_bundle_schema);
 * the SQL helpers below work on it, tdb_close drops it. */
void tdb_open_empty(struct testdb *t);
/* Closes the connection and drops the database. */
void tdb_close(struct testdb *t);
/* In a child forked inside a test: a connection of its own to the same database, statements
 * prepared. The child must leave with _exit() and never call tdb_close (that drops the database). */
void tdb_child_connect(struct testdb *t);

struct identity tdb_who(const char *user, const char *device);
/* The request of a sync call on t's connection, configuration and registry, as who, allocating
 * from arena; no sink. */
struct sync_request tdb_request(struct testdb *t, const struct identity *who, arena_t *arena);

/* sync_upload with a fresh arena; asserts that it leaves the connection outside a transaction. */
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

/* A SQL string literal of s (quotes doubled), living until tdb_close. */
char *tdb_lit(struct testdb *t, const char *s);

/* SQL helpers on the test connection (assert success). */
void tdb_exec(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The single value of a one-row one-column query; "<null>" for NULL. Lives until tdb_close. */
char *tdb_query(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long long tdb_query_ll(struct testdb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sidecar row counts of one user (NULL = every user). */
long long tdb_log_count(struct testdb *t, const char *user);
long long tdb_meta_count(struct testdb *t, const char *user);
long long tdb_state_count(struct testdb *t, const char *user);
/* Log rows, meta rows and after-images of one row (user, pk), any table. */
long long tdb_log_count_pk(struct testdb *t, const char *user, const char *pk);
long long tdb_meta_count_pk(struct testdb *t, const char *user, const char *pk);
long long tdb_state_count_pk(struct testdb *t, const char *user, const char *pk);
/* The user's highest server_id, 0 when none. */
long long tdb_highest(struct testdb *t, const char *user);
/* md5 of the ordered contents of server_change_log, sync_row_meta and sync_state (all users)
 * and of the number of materialize_failures rows. */
char *tdb_snapshot(struct testdb *t);

/* ------------------------------------------------------------------ the suites' vocabulary */

/* The database of the running test (Check forks each test, so each has its own). The helpers
 * below work on it. */
extern struct testdb T;

/* How the tests of a TCase get T. */
enum tdb_fixture {
    TDB_NO_DB,        /* not at all: the tests do not touch a database */
    TDB_DEFAULT_DB,   /* tdb_open(&T) before each test: the default registry */
    TDB_OWN_DB,       /* T zeroed before each test, which opens it itself (tdb_open_tables...) */
};
/* tcase_create with a 60 s timeout and, but for TDB_NO_DB, the checked fixture that gives each
 * test T as fixture says and closes it after the test (when it was opened). */
TCase *tcase(const char *name, enum tdb_fixture fixture);

/* One change as JSON text: schema, table and op are the contents of JSON strings; pk NULL = no
 * "pk" key; payload is raw JSON text, NULL = no "payload" key. */
char *chg(long long scid, const char *schema, const char *table, const char *op, const char *pk, long long sv,
          const char *payload);
/* Shorthands on business.<table>; an INSERT has server_version 0. */
char *ins(long long scid, const char *table, const char *pk, const char *payload);
char *upd(long long scid, const char *table, const char *pk, long long sv, const char *payload);
char *del(long long scid, const char *table, const char *pk, long long sv);
/* {"last_server_seq_seen":0,"changes":[c1,c2,...]} from NULL-terminated change texts. */
#define batch(...) tdb_batch(&T, __VA_ARGS__)

/* statuses[i] of an upload answer, asserting that it answers change scid. */
json_object *status_at(const struct tdb_answer *a, int i, long long scid);
/* statuses[i] is applied: with new_server_version = version when version > 0, without one
 * (idempotent: the change was applied before) when version is 0. */
void assert_applied(const struct tdb_answer *a, int i, long long scid, long long version);
void assert_idempotent(const struct tdb_answer *a, int i, long long scid);   /* version 0 */
/* statuses[i] is invalid with reason, without new_server_version; the status. */
json_object *assert_invalid(const struct tdb_answer *a, int i, long long scid, const char *reason);
/* statuses[i] is a conflict without new_server_version whose server_row has the version, the
 * deleted flag and a payload; schema, table and pk are checked when not NULL, and the payload
 * is compared with payload_json (as JSON) when that is not NULL. The server_row. */
json_object *assert_conflict(const struct tdb_answer *a, int i, long long scid, const char *schema,
                             const char *table, const char *pk, long long version, bool deleted,
                             const char *payload_json);

/* The server_version of the row's meta row, -1 when there is none. schema and table NULL: the
 * user's row pk in whatever table (a pk of two tables makes the query fail). */
long long meta_version(const char *user, const char *schema, const char *table, const char *pk);
/* Nothing of (user, pk) reached the sidecar: no log row, no meta row, no after-image. */
void assert_no_sidecar(const char *user, const char *pk);

/* Races: forks n children, each of which connects to T's database on its own
 * (tdb_child_connect), waits at a gate until every one is forked, then exits (_exit) with
 * body(i). race_start returns once they are released, their pids in pids[]; race also waits
 * for them: codes[i] is child i's exit status, 100 + the signal when one was killed. */
void race_start(int n, int (*body)(int), pid_t pids[]);
void race(int n, int (*body)(int), int codes[]);

#endif
