#include "db.h"
#include "bootstrap.h"
#include "../log.h"
#include "../strbuf.h"
#include "../xalloc.h"

#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct db {
    const struct config *cfg;
    PGconn *conn;
    bool ready;
    bool ever_connected;
    unsigned long reconnects;
    long backoff_ms;
    struct timespec next_try;
    db_setup_fn setup_hook;
    void *setup_ud;
};

void db_set_setup_hook(struct db *db, db_setup_fn fn, void *ud)
{
    db->setup_hook = fn;
    db->setup_ud = ud;
}

static void one_line(char *s)
{
    str_trim_right(s);
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* The modules' lists of statements, prepared on every connection. */
#define MAX_STATEMENT_LISTS 16
static struct {
    const struct db_statement *list;
    size_t n;
} statement_lists[MAX_STATEMENT_LISTS];
static size_t n_statement_lists;

void db_register_statements(const struct db_statement *list, size_t n)
{
    for (size_t i = 0; i < n_statement_lists; i++)
        if (statement_lists[i].list == list)
            return;
    if (n_statement_lists == MAX_STATEMENT_LISTS) {
        log_error("db_register_statements: more than %d lists", MAX_STATEMENT_LISTS);
        abort();
    }
    statement_lists[n_statement_lists].list = list;
    statement_lists[n_statement_lists].n = n;
    n_statement_lists++;
}

bool db_prepare_statements(PGconn *conn, char *err, size_t errlen)
{
    for (size_t l = 0; l < n_statement_lists; l++)
        for (size_t i = 0; i < statement_lists[l].n; i++) {
            const struct db_statement *st = &statement_lists[l].list[i];
            PGresult *r = PQprepare(conn, st->name, st->sql, 0, NULL);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                snprintf(err, errlen, "preparing %s: %s", st->name, PQerrorMessage(conn));
                one_line(err);
                PQclear(r);
                return false;
            }
            PQclear(r);
        }
    return true;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct db *db_new(const struct config *cfg)
{
    struct db *db = xcalloc(1, sizeof *db);
    db->cfg = cfg;
    db->backoff_ms = BACKOFF_MIN_MS;
    return db;
}

static void drop(struct db *db)
{
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    db->ready = false;
}

void db_free(struct db *db)
{
    if (!db)
        return;
    drop(db);
    free(db);
}

static void clear_result(void *res)
{
    PQclear(res);
}

PGresult *db_result_in(arena_t *a, PGresult *res)
{
    if (res)
        arena_on_reset(a, clear_result, res);
    return res;
}

PGconn *db_connect_plain(const struct config *cfg, char *err, size_t errlen)
{
    /* Our defaults come first: values in the configured conninfo/URI (expanded from dbname)
     * override them. */
    const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *vals[] = { "5", cfg->app_name ? cfg->app_name : "oversyncd",
                           cfg->database_url ? cfg->database_url : "", NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", c ? PQerrorMessage(c) : "out of memory");
        one_line(err);
        if (c)
            PQfinish(c);
        return NULL;
    }
    /* force_custom_plan: statements are planned for their actual values. Generic plans of the
     * generic materializer's upserts were 1.7x slower, and the page query's generic plan can
     * walk other users' rows (docs/performance.md). An upload whose statements' plans do not
     * depend on the values sets plan_cache_mode = auto for its own transaction (sync/upload.c,
     * read_state). */
    char sql[320];
    /* protocol = bundle: the business rows' timestamps reach the wire as to_jsonb prints them,
     * in the session's TimeZone (SPEC-v2 §4.6, §8.10); the reference never sets it, we pin UTC */
    snprintf(sql, sizeof sql,
             "SET statement_timeout = %ld; SET idle_in_transaction_session_timeout = %ld; "
             "SET lock_timeout = %ld; SET plan_cache_mode = force_custom_plan%s",
             cfg->statement_timeout_ms, cfg->idle_in_transaction_session_timeout_ms,
             cfg->lock_timeout_ms, cfg->protocol == PROTOCOL_BUNDLE ? "; SET TimeZone = 'UTC'" : "");
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "applying session settings: %s", PQerrorMessage(c));
        one_line(err);
        PQclear(r);
        PQfinish(c);
        return NULL;
    }
    PQclear(r);
    return c;
}

static bool setup(struct db *db, char *err, size_t errlen)
{
    int applied = 0;
    /* protocol = bundle keeps another sidecar, which its setup hook brings up */
    if (db->cfg->protocol == PROTOCOL_UPLOAD && !bootstrap_sidecar(db->conn, &applied, err, errlen))
        return false;
    if (applied)
        log_info("sidecar schema: applied %d migration(s)", applied);
    if (db->setup_hook && !db->setup_hook(db->conn, db->setup_ud, err, errlen))
        return false;
    return db_prepare_statements(db->conn, err, errlen);
}

/* A server that went away (shut down, restarted, connection killed) leaves a readable socket
 * behind: notice that with a zero-timeout poll instead of a round trip per request. */
static bool still_alive(struct db *db)
{
    if (PQstatus(db->conn) != CONNECTION_OK)
        return false;
    int fd = PQsocket(db->conn);
    if (fd < 0)
        return false;
    /* The server's "terminating connection" notice and the end of the stream can arrive apart:
     * keep reading while the socket stays readable so the end is seen now, not one request later. */
    for (int i = 0; i < 16; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) <= 0)
            break;
        if (!PQconsumeInput(db->conn))
            return false;
        PGnotify *n;
        while ((n = PQnotifies(db->conn)))
            PQfreemem(n);
        if (PQstatus(db->conn) != CONNECTION_OK)
            return false;
    }
    return PQstatus(db->conn) == CONNECTION_OK;
}

bool db_ensure(struct db *db)
{
    if (db->ready) {
        if (still_alive(db))
            return true;
        log_warn("database connection lost; reconnecting");
        drop(db);
        db->backoff_ms = BACKOFF_MIN_MS;
        db->next_try.tv_sec = 0;   /* try again at once */
    }
    long now = now_ms();
    long next = db->next_try.tv_sec * 1000L + db->next_try.tv_nsec / 1000000L;
    if (next && now < next)
        return false;

    char err[512];
    db->conn = db_connect_plain(db->cfg, err, sizeof err);
    if (db->conn && setup(db, err, sizeof err)) {
        db->ready = true;
        db->backoff_ms = BACKOFF_MIN_MS;
        db->next_try.tv_sec = db->next_try.tv_nsec = 0;
        if (db->ever_connected) {
            db->reconnects++;
            log_info("database connection re-established");
        }
        db->ever_connected = true;
        return true;
    }
    drop(db);
    log_warn("database unavailable (next attempt in %ld ms): %s", db->backoff_ms, err);
    long at = now + db->backoff_ms;
    db->next_try.tv_sec = at / 1000;
    db->next_try.tv_nsec = (at % 1000) * 1000000L;
    db->backoff_ms *= 2;
    if (db->backoff_ms > BACKOFF_MAX_MS)
        db->backoff_ms = BACKOFF_MAX_MS;
    return false;
}

PGconn *db_conn(struct db *db)
{
    return db->conn;
}

bool db_check_lost(struct db *db)
{
    if (!db->conn)
        return true;
    if (PQstatus(db->conn) == CONNECTION_OK)
        return false;
    log_warn("database connection lost during a request");
    drop(db);
    db->next_try.tv_sec = db->next_try.tv_nsec = 0;
    return true;
}

unsigned long db_reconnect_count(const struct db *db)
{
    return db->reconnects;
}
