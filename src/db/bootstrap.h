/* Sidecar schema bootstrap: numbered migrations under sql/migrations, embedded in the binary,
 * applied in one transaction under an advisory lock and recorded in sync.schema_migrations. */
#ifndef OVERSYNCD_BOOTSTRAP_H
#define OVERSYNCD_BOOTSTRAP_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

struct migration {
    int version;
    const char *name;     /* file name, e.g. "0001_sidecar.sql" */
    const char *sql;
};

/* Generated at build time from the files in sql/migrations (src/sql_embedded.c). */
extern const struct migration sidecar_migrations[];
extern const int n_sidecar_migrations;

/* Brings the sidecar up to the newest migration. Safe to call from many processes at once.
 * *applied (may be NULL) receives how many migrations this call applied. */
bool bootstrap_sidecar(PGconn *conn, int *applied, char *err, size_t errlen);
/* Newest version recorded in the database, 0 when none, -1 on error. */
int bootstrap_current_version(PGconn *conn);

/* The reason of a failed command as one log line: "<fmt ...>: <PostgreSQL's message>", the
 * message taken from r (or from conn when r says nothing), its ERROR/DETAIL/HINT/CONTEXT lines
 * joined with "; ". For the modules that bootstrap schemas of their own (bundle/). */
void db_error_set(char *err, size_t errlen, PGconn *conn, const PGresult *r, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
