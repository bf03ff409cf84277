/* One libpq connection per worker: connect after the fork, apply session settings, bootstrap the
 * sidecar, prepare statements once, reconnect by itself with back-off after a loss. */
#ifndef OVERSYNCD_DB_H
#define OVERSYNCD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "../arena.h"
#include "../config.h"

/* A statement prepared on every connection. Each module keeps its own list and registers it. */
struct db_statement {
    const char *name;
    const char *sql;
};

struct db;

/* Work done on every new connection after the sidecar bootstrap and before the statements are
 * prepared (the sync core reads the foreign keys there). false fails the connection attempt. */
typedef bool (*db_setup_fn)(PGconn *conn, void *ud, char *err, size_t errlen);
void db_set_setup_hook(struct db *db, db_setup_fn fn, void *ud);

/* Adds a module's statements to those every connection prepares (once, right after connecting).
 * Call before db_ensure; registering the same list again does nothing. */
void db_register_statements(const struct db_statement *list, size_t n);
/* Prepares every registered statement on conn (db_ensure does it on each new connection; tests
 * and benchmarks call it on connections of their own). false with the reason in err. */
bool db_prepare_statements(PGconn *conn, char *err, size_t errlen);

struct db *db_new(const struct config *cfg);
void db_free(struct db *db);
/* Connected and ready (settings applied, sidecar bootstrapped, statements prepared)? Tries to
 * (re)connect when the back-off allows; false while PostgreSQL is away. */
bool db_ensure(struct db *db);
PGconn *db_conn(struct db *db);
/* After a failed command: if the connection is gone, drop it so the next db_ensure reconnects.
 * Returns true when the failure was a lost connection. */
bool db_check_lost(struct db *db);
/* Connections (re)established after the first one. */
unsigned long db_reconnect_count(const struct db *db);
/* Hands res to arena a: PQclear runs when the arena is reset (the request is over), so no error
 * path has to remember it. Returns res. */
PGresult *db_result_in(arena_t *a, PGresult *res);
/* Opens a plain connection with the configured settings (used by the master, --check-config and
 * tests). NULL with the reason in err. */
PGconn *db_connect_plain(const struct config *cfg, char *err, size_t errlen);

#endif
