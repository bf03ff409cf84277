#include "bootstrap.h"
#include "../log.h"
#include "../strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key of the transaction-level advisory lock that serializes bootstraps of every worker on every
 * host sharing the database: the ASCII bytes of "oversync" read as a big-endian 64-bit number
 * (0x6f76657273796e63). Being transaction-level, it is released by COMMIT or ROLLBACK and can
 * never outlive a failed bootstrap. */
#define BOOTSTRAP_LOCK_KEY "8031718527699873379"

/* Everything before the first migration, sent as one round trip.
 * - READ COMMITTED whatever default_transaction_isolation says: a bootstrap that waited for the
 *   lock must see the migrations the lock holder committed meanwhile, and only a fresh snapshot
 *   per statement gives it that.
 * - Notices ("relation ... already exists, skipping") would reach stderr through libpq's default
 *   notice processor, that is the server log, on every start against an existing sidecar.
 * - statement_timeout is meant for requests; a migration rewriting a large change log must be
 *   allowed to finish. lock_timeout stays as configured, so a bootstrap stuck behind traffic or
 *   behind another bootstrap fails visibly and is retried by the reconnect back-off.
 * - CREATE SCHEMA IF NOT EXISTS demands CREATE on the database even when the schema exists, which
 *   a role that only owns the sidecar may lack; the catalog check avoids asking for it. */
static const char begin_sql[] =
    "BEGIN ISOLATION LEVEL READ COMMITTED;"
    "SET LOCAL client_min_messages = warning;"
    "SET LOCAL statement_timeout = 0;"
    "SELECT pg_advisory_xact_lock(" BOOTSTRAP_LOCK_KEY ");"
    "DO $$ BEGIN IF to_regnamespace('sync') IS NULL THEN CREATE SCHEMA sync; END IF; END $$;"
    "CREATE TABLE IF NOT EXISTS sync.schema_migrations ("
    "  version int PRIMARY KEY,"
    "  name text NOT NULL,"
    "  applied_at timestamptz NOT NULL DEFAULT now())";


/* PostgreSQL's error text spans several lines (ERROR, DETAIL, HINT, CONTEXT) and ends with a
 * newline; a log line must be one line, so the lines are joined with "; ". */
static void pg_message(strbuf_t *sb, PGconn *conn, const PGresult *r)
{
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!msg || !*msg)
        msg = PQerrorMessage(conn);
    if (!msg || !*msg)
        msg = "unknown error";

    sb_reset(sb);
    const char *p = msg;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    bool pending_sep = false;
    for (; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            pending_sep = true;
            continue;
        }
        if (pending_sep) {
            while (*p == ' ' || *p == '\t')
                p++;
            if (!*p)
                break;
            if (*p == '\n' || *p == '\r')
                continue;
            sb_puts(sb, "; ");
            pending_sep = false;
        }
        sb_putc(sb, *p);
    }
    while (sb->len && (sb->data[sb->len - 1] == ' ' || sb->data[sb->len - 1] == '\t'))
        sb->data[--sb->len] = '\0';
    if (sb->len == 0)
        sb_puts(sb, "unknown error");
}

void db_error_set(char *err, size_t errlen, PGconn *conn, const PGresult *r, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    strbuf_t sb = STRBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    sb_puts(&sb, ": ");
    strbuf_t msg = STRBUF_INIT;
    pg_message(&msg, conn, r);
    sb_puts(&sb, sb_cstr(&msg));
    err_set(err, errlen, "%s", sb_cstr(&sb));
    sb_free(&msg);
    sb_free(&sb);
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/* Runs sql; on failure describes it as "<what>: <PostgreSQL's message>". */
static bool exec_step(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = result_ok(r);
    if (!ok)
        db_error_set(err, errlen, conn, r, "%s", what);
    PQclear(r);
    return ok;
}

/* A single integer from a one-row, one-column query; -1 on error. */
static int query_int(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    int v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1
        && !PQgetisnull(r, 0, 0)) {
        v = atoi(PQgetvalue(r, 0, 0));
    } else {
        db_error_set(err, errlen, conn, r, "%s", what);
    }
    PQclear(r);
    return v;
}

/* Recorded version without taking any lock: two catalog-cheap queries, which is all a worker
 * pays on a (re)connect once the sidecar is current. The existence test comes first so that a
 * fresh database costs no error in the server log. */
static int recorded_version(PGconn *conn, char *err, size_t errlen)
{
    int exists = query_int(conn, "SELECT (to_regclass('sync.schema_migrations') IS NOT NULL)::int",
                           "sidecar bootstrap: looking for sync.schema_migrations", err, errlen);
    if (exists <= 0)
        return exists;
    return query_int(conn, "SELECT coalesce(max(version), 0) FROM sync.schema_migrations",
                     "sidecar bootstrap: reading sync.schema_migrations", err, errlen);
}

/* The build lists the files in Makefile.am; a misordered or duplicated entry would apply
 * migrations out of order or skip one forever, so it is refused rather than trusted. */
static bool embedded_in_order(char *err, size_t errlen)
{
    for (int i = 0; i < n_sidecar_migrations; i++) {
        if (sidecar_migrations[i].version <= 0
            || (i > 0 && sidecar_migrations[i].version <= sidecar_migrations[i - 1].version)) {
            err_set(err, errlen,
                    "sidecar bootstrap: embedded migration %s is out of version order",
                    sidecar_migrations[i].name);
            return false;
        }
    }
    return true;
}

static int newest_embedded(void)
{
    return n_sidecar_migrations > 0 ? sidecar_migrations[n_sidecar_migrations - 1].version : 0;
}

int bootstrap_current_version(PGconn *conn)
{
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        return -1;
    return recorded_version(conn, NULL, 0);
}

static bool record_migration(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[2] = { version, m->name };
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO sync.schema_migrations (version, name)"
                               " VALUES ($1::int, $2)",
                               2, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        strbuf_t sb = STRBUF_INIT;
        pg_message(&sb, conn, r);
        err_set(err, errlen, "sidecar migration %s: recording it in sync.schema_migrations: %s",
                m->name, sb_cstr(&sb));
        sb_free(&sb);
    }
    PQclear(r);
    return ok;
}

/* The locked part: everything in one transaction, so a failure anywhere leaves the sidecar and
 * sync.schema_migrations exactly as they were. Returns how many migrations it applied, -1 on
 * failure (transaction still open; the caller rolls back). */
static int apply_locked(PGconn *conn, char *err, size_t errlen)
{
    if (!exec_step(conn, begin_sql, "sidecar bootstrap: taking the lock and preparing schema sync",
                   err, errlen))
        return -1;

    /* Re-read under the lock: another worker may have done the work while this one waited. */
    int have = query_int(conn, "SELECT coalesce(max(version), 0) FROM sync.schema_migrations",
                         "sidecar bootstrap: reading sync.schema_migrations", err, errlen);
    if (have < 0)
        return -1;

    int count = 0;
    for (int i = 0; i < n_sidecar_migrations; i++) {
        const struct migration *m = &sidecar_migrations[i];
        if (m->version <= have)
            continue;
        log_info("sidecar schema: applying migration %s", m->name);
        char what[256];
        snprintf(what, sizeof what, "sidecar migration %s failed", m->name);
        if (!exec_step(conn, m->sql, what, err, errlen))
            return -1;
        if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
            err_set(err, errlen,
                    "sidecar migration %s ended the bootstrap transaction "
                    "(a migration must not contain BEGIN, COMMIT or ROLLBACK)", m->name);
            return -1;
        }
        if (!record_migration(conn, m, err, errlen))
            return -1;
        count++;
    }

    PGresult *r = PQexec(conn, "COMMIT");
    /* COMMIT of a transaction that failed underneath reports success with the tag ROLLBACK. */
    bool committed = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!committed) {
        strbuf_t sb = STRBUF_INIT;
        pg_message(&sb, conn, r);
        err_set(err, errlen, "sidecar bootstrap: committing the migrations: %s", sb_cstr(&sb));
        sb_free(&sb);
    }
    PQclear(r);
    return committed ? count : -1;
}

bool bootstrap_sidecar(PGconn *conn, int *applied, char *err, size_t errlen)
{
    if (applied)
        *applied = 0;
    if (err && errlen)
        err[0] = '\0';

    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        err_set(err, errlen, "sidecar bootstrap: no connection to PostgreSQL");
        return false;
    }
    /* The migrations' own BEGIN would only warn inside a caller's transaction, and their COMMIT
     * would commit the caller's work with them. */
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        err_set(err, errlen, "sidecar bootstrap: the connection is inside a transaction");
        return false;
    }
    if (!embedded_in_order(err, errlen))
        return false;

    int newest = newest_embedded();
    int have = recorded_version(conn, err, errlen);
    if (have < 0)
        return false;
    if (have == 0) {
        /* The bundle protocol's sidecar lives in the same schema (a bundle deployment's database,
         * or one that oversyncd migrate-to-bundle converted): creating the upload protocol's
         * tables beside it would leave a database that neither protocol can serve. */
        PGresult *r = PQexec(conn, "SELECT to_regclass('sync.meta') IS NOT NULL");
        bool bundle = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (bundle) {
            err_set(err, errlen,
                    "sidecar bootstrap: this database holds the bundle protocol's sidecar (sync.meta); "
                    "serve it with [sync] protocol = bundle");
            return false;
        }
    }
    if (have >= newest) {
        if (have > newest)
            log_warn("sidecar schema is at version %d, newer than this oversyncd knows (%d)",
                     have, newest);
        return true;
    }

    int count = apply_locked(conn, err, errlen);
    if (count < 0) {
        if (PQtransactionStatus(conn) != PQTRANS_IDLE)
            PQclear(PQexec(conn, "ROLLBACK"));
        return false;
    }
    if (applied)
        *applied = count;
    return true;
}
