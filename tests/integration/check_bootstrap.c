/* The sidecar bootstrap against a real PostgreSQL (tests/pg.sh): fresh databases, re-runs,
 * concurrent starts, upgrades of sidecars the reference server created, broken states. Every
 * test works in databases of its own, so the tests neither see nor depend on each other. */
#include "testdb.h"

#include "db/bootstrap.h"
#include "log.h"
#include "strbuf.h"
#include "../run_suites.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Same key as src/db/bootstrap.c: the tests prove that it is the one taken. */
#define LOCK_KEY "8031718527699873379"

static const char *const sidecar_tables[] = {
    "sync_row_meta", "sync_state", "server_change_log", "materialize_failures", "schema_migrations",
};

static const char *const sidecar_indexes[] = {
    "scl_user_seq_idx", "scl_user_schema_seq_idx", "scl_user_pk_seq_idx", "scl_user_delete_seq_idx",
    "mf_user_table_idx",
};

/* indexes that repeat another one, dropped by 0007 whoever created them */
static const char *const dropped_indexes[] = { "scl_seq_idx", "scl_triplet_idx" };

/* ------------------------------------------------------------------ connections and queries */

static int notices_seen;

static void count_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
    notices_seen++;
}

/* A connection of a test (testdb.h) whose notices are counted. */
static PGconn *test_connect(const char *dbname)
{
    PGconn *c = tdb_connect(dbname);
    PQsetNoticeProcessor(c, count_notice, NULL);
    return c;
}

static long long query_ll(PGconn *c, const char *sql)
{
    char *v = tdb_conn_query(c, sql);
    char *end;
    long long n = strtoll(v, &end, 10);
    ck_assert_msg(*v && !*end, "expected an integer from %.300s, got '%s'", sql, v);
    free(v);
    return n;
}

static bool query_bool(PGconn *c, const char *sql)
{
    char *v = tdb_conn_query(c, sql);
    ck_assert_msg(strcmp(v, "t") == 0 || strcmp(v, "f") == 0,
                  "expected a boolean from %.300s, got '%s'", sql, v);
    bool b = v[0] == 't';
    free(v);
    return b;
}

/* Names the first differing line, which a comparison of two long dumps would otherwise bury. */
static void assert_same_text(const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) == 0)
        return;
    const char *a = want, *b = got;
    int line = 1;
    while (*a && *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || memcmp(a, b, la) != 0) {
            ck_abort_msg("%s differs at line %d:\n  expected: %.*s\n  got:      %.*s", what, line,
                         (int)la, a, (int)lb, b);
        }
        a += la + (a[la] ? 1 : 0);
        b += lb + (b[lb] ? 1 : 0);
        line++;
    }
    ck_abort_msg("%s differs after line %d:\n  expected more: %.300s\n  got more:      %.300s",
                 what, line, a, b);
}

/* ------------------------------------------------------------------ throwaway databases */

/* An empty database (no sidecar: bootstrapping it is the test) and a connection to it. */
struct bare_db {
    char name[64];
    PGconn *conn;
};

static void bare_create(struct bare_db *db)
{
    static unsigned serial;
    snprintf(db->name, sizeof db->name, "t_boot_%ld_%u", (long)getpid(), serial++);
    tdb_create_database(db->name);
    db->conn = test_connect(db->name);
}

static void bare_drop(struct bare_db *db)
{
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    tdb_drop_database(db->name);
}

static void bootstrap_ok(PGconn *c, int expect_applied, const char *when)
{
    char err[1024] = "";
    int applied = -1;
    bool ok = bootstrap_sidecar(c, &applied, err, sizeof err);
    ck_assert_msg(ok, "bootstrap %s failed: %s", when, err);
    ck_assert_msg(err[0] == '\0', "bootstrap %s succeeded but left an error text: %s", when, err);
    if (expect_applied >= 0)
        ck_assert_msg(applied == expect_applied, "bootstrap %s applied %d migrations, expected %d",
                      when, applied, expect_applied);
}

static void bootstrap_fails(PGconn *c, char *err, size_t errlen, const char *when)
{
    int applied = -1;
    err[0] = '\0';
    bool ok = bootstrap_sidecar(c, &applied, err, errlen);
    ck_assert_msg(!ok, "bootstrap %s should have failed", when);
    ck_assert_msg(applied == 0, "a failed bootstrap %s reported %d applied migrations", when, applied);
    ck_assert_msg(err[0] != '\0', "a failed bootstrap %s gave no reason", when);
    ck_assert_msg(strchr(err, '\n') == NULL, "the error must be one log line: %s", err);
    ck_assert_msg(PQtransactionStatus(c) == PQTRANS_IDLE,
                  "a failed bootstrap %s left the connection inside a transaction", when);
}

static int newest_version(void)
{
    return sidecar_migrations[n_sidecar_migrations - 1].version;
}

/* ------------------------------------------------------------------ dumps to compare */

/* Everything in schema sync that shapes behaviour: relations, columns with type, nullability and
 * default, index definitions, constraint definitions. Sorted lines, independent of creation
 * order and of object ids. */
static char *schema_dump(PGconn *c)
{
    return tdb_conn_query(c,
        "SELECT coalesce(string_agg(line, E'\\n' ORDER BY line), '') FROM ("
        "  SELECT format('rel %s %s', c.relname, c.relkind) AS line"
        "    FROM pg_class c WHERE c.relnamespace = to_regnamespace('sync')"
        "  UNION ALL"
        "  SELECT format('col %s.%s %s notnull=%s default=%s', c.relname, a.attname,"
        "                format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        "                pg_get_expr(d.adbin, d.adrelid))"
        "    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        "    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        "   WHERE c.relnamespace = to_regnamespace('sync') AND c.relkind IN ('r', 'p')"
        "     AND a.attnum > 0 AND NOT a.attisdropped"
        "  UNION ALL"
        "  SELECT format('idx %s valid=%s', pg_get_indexdef(i.indexrelid), i.indisvalid)"
        "    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        "   WHERE c.relnamespace = to_regnamespace('sync')"
        "  UNION ALL"
        "  SELECT format('con %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))"
        "    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        "   WHERE c.relnamespace = to_regnamespace('sync')"
        ") s");
}

/* Every row of the four sidecar tables, payloads compared as jsonb so that a json column and
 * its jsonb conversion compare equal when they hold the same values. */
static char *data_dump(PGconn *c)
{
    return tdb_conn_query(c,
        "SELECT concat_ws(E'\\n',"
        " (SELECT string_agg(format('meta %L %L %L %L %L %L %L', user_id, schema_name, table_name,"
        "          pk_uuid, server_version, deleted, updated_at), E'\\n'"
        "          ORDER BY user_id, schema_name, table_name, pk_uuid) FROM sync.sync_row_meta),"
        " (SELECT string_agg(format('state %L %L %L %L %L', user_id, schema_name, table_name,"
        "          pk_uuid, payload::jsonb), E'\\n'"
        "          ORDER BY user_id, schema_name, table_name, pk_uuid) FROM sync.sync_state),"
        " (SELECT string_agg(format('log %L %L %L %L %L %L %L %L %L %L %L', server_id, user_id,"
        "          schema_name, table_name, op, pk_uuid, payload::jsonb, source_id, source_change_id,"
        "          server_version, ts), E'\\n' ORDER BY server_id) FROM sync.server_change_log),"
        " (SELECT string_agg(format('fail %L %L %L %L %L %L %L %L %L %L %L', id, user_id,"
        "          schema_name, table_name, pk_uuid, attempted_version, op, payload::jsonb, error,"
        "          first_seen, retry_count), E'\\n' ORDER BY id) FROM sync.materialize_failures))");
}

static char *migrations_dump(PGconn *c)
{
    return tdb_conn_query(c,
        "SELECT coalesce(string_agg(format('%s %s %s', version, name, applied_at), E'\\n'"
        "                ORDER BY version), '') FROM sync.schema_migrations");
}

/* The dump of a sidecar that oversyncd bootstrapped on an empty database: what every other
 * path (re-runs, races, upgrades) must end up identical to. */
static char *fresh_schema_dump(void)
{
    struct bare_db db;
    bare_create(&db);
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");
    char *dump = schema_dump(db.conn);
    bare_drop(&db);
    return dump;
}

/* ------------------------------------------------------------------ fresh database */

static void assert_full_layout(PGconn *c)
{
    char sql[512];
    for (size_t i = 0; i < sizeof sidecar_tables / sizeof *sidecar_tables; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT coalesce((SELECT relkind::text FROM pg_class"
                 " WHERE oid = to_regclass('sync.%s')), 'missing')", sidecar_tables[i]);
        char *kind = tdb_conn_query(c, sql);
        ck_assert_msg(strcmp(kind, "r") == 0, "sync.%s: expected a table, found relkind '%s'",
                      sidecar_tables[i], kind);
        free(kind);
    }
    for (size_t i = 0; i < sizeof sidecar_indexes / sizeof *sidecar_indexes; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('sync.%s')"
                 " AND i.indisvalid)", sidecar_indexes[i]);
        ck_assert_msg(query_bool(c, sql), "index sync.%s is missing or invalid", sidecar_indexes[i]);
    }
    for (size_t i = 0; i < sizeof dropped_indexes / sizeof *dropped_indexes; i++) {
        snprintf(sql, sizeof sql, "SELECT to_regclass('sync.%s') IS NULL", dropped_indexes[i]);
        ck_assert_msg(query_bool(c, sql), "index sync.%s should have been dropped", dropped_indexes[i]);
    }

    static const char *const keys[][3] = {
        { "sync_row_meta", "p", "PRIMARY KEY (user_id, schema_name, table_name, pk_uuid)" },
        { "sync_state", "p", "PRIMARY KEY (user_id, schema_name, table_name, pk_uuid)" },
        { "server_change_log", "p", "PRIMARY KEY (server_id)" },
        { "server_change_log", "u", "UNIQUE (user_id, source_id, source_change_id)" },
        { "materialize_failures", "p", "PRIMARY KEY (id)" },
        { "materialize_failures", "u",
          "UNIQUE (user_id, schema_name, table_name, pk_uuid, attempted_version)" },
        { "schema_migrations", "p", "PRIMARY KEY (version)" },
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM pg_constraint WHERE conrelid = 'sync.%s'::regclass"
                 " AND contype = '%s' AND pg_get_constraintdef(oid) = '%s'",
                 keys[i][0], keys[i][1], keys[i][2]);
        ck_assert_msg(query_ll(c, sql) == 1, "sync.%s lacks the key %s", keys[i][0], keys[i][2]);
    }

    char *chk = tdb_conn_query(c,
        "SELECT coalesce((SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'sync.server_change_log'::regclass AND contype = 'c'"
        " AND conname = 'server_change_payload_by_op_chk'), 'missing')");
    ck_assert_msg(strstr(chk, "'DELETE'") && strstr(chk, "payload IS NULL")
                      && strstr(chk, "payload IS NOT NULL"),
                  "server_change_payload_by_op_chk is wrong: %s", chk);
    free(chk);
    ck_assert_msg(query_ll(c,
                      "SELECT count(*) FROM pg_constraint"
                      " WHERE conrelid = 'sync.server_change_log'::regclass AND contype = 'c'"
                      " AND pg_get_constraintdef(oid) LIKE '%op = ANY%INSERT%UPDATE%DELETE%'") == 1,
                  "the check on server_change_log.op is missing");

    char *types = tdb_conn_query(c,
        "SELECT string_agg(format('%s=%s', attrelid::regclass, format_type(atttypid, atttypmod)),"
        " ' ' ORDER BY attrelid::regclass::text) FROM pg_attribute"
        " WHERE attname = 'payload' AND attrelid IN ('sync.sync_state'::regclass,"
        " 'sync.server_change_log'::regclass, 'sync.materialize_failures'::regclass)");
    ck_assert_str_eq(types, "sync.materialize_failures=jsonb sync.server_change_log=json "
                            "sync.sync_state=jsonb");
    free(types);
}

static void assert_all_migrations_recorded(PGconn *c)
{
    strbuf_t want = STRBUF_INIT;
    for (int i = 0; i < n_sidecar_migrations; i++)
        sb_printf(&want, "%s%d:%s", i ? "," : "", sidecar_migrations[i].version,
                  sidecar_migrations[i].name);
    char *got = tdb_conn_query(c,
        "SELECT coalesce(string_agg(version || ':' || name, ',' ORDER BY version), '')"
        " FROM sync.schema_migrations");
    ck_assert_msg(strcmp(got, sb_cstr(&want)) == 0,
                  "sync.schema_migrations holds '%s', expected '%s'", got, sb_cstr(&want));
    free(got);
    sb_free(&want);
    ck_assert_int_eq(bootstrap_current_version(c), newest_version());
}

START_TEST(test_embedded_migrations)
{
    ck_assert_msg(n_sidecar_migrations >= 2, "expected at least 0001 and 0002, got %d",
                  n_sidecar_migrations);
    ck_assert_int_eq(sidecar_migrations[0].version, 1);
    ck_assert_str_eq(sidecar_migrations[0].name, "0001_sidecar.sql");
    ck_assert_int_eq(sidecar_migrations[1].version, 2);
    ck_assert_str_eq(sidecar_migrations[1].name, "0002_oversyncd.sql");
    for (int i = 0; i < n_sidecar_migrations; i++)
        ck_assert_msg(sidecar_migrations[i].sql && strlen(sidecar_migrations[i].sql) > 0,
                      "migration %s is empty", sidecar_migrations[i].name);
}
END_TEST

START_TEST(test_fresh_database)
{
    struct bare_db db;
    bare_create(&db);
    ck_assert_int_eq(bootstrap_current_version(db.conn), 0);

    notices_seen = 0;
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");
    ck_assert_msg(notices_seen == 0, "the bootstrap sent %d notices to the client", notices_seen);
    assert_full_layout(db.conn);
    assert_all_migrations_recorded(db.conn);

    /* The sidecar works as the reference server uses it. */
    tdb_conn_exec(db.conn,
            "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid,"
            " payload, source_id, source_change_id, server_version) VALUES"
            " ('u1', 'public', 'notes', 'INSERT', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
            "  '{\"t\":1}', 'dev1', 1, 1),"
            " ('u1', 'public', 'notes', 'DELETE', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
            "  NULL, 'dev1', 2, 2)");
    PGresult *r = PQexec(db.conn,
                         "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op,"
                         " pk_uuid, payload, source_id, source_change_id) VALUES ('u1', 'public',"
                         " 'notes', 'DELETE', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{}', 'dev1', 3)");
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR
                      && strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514") == 0,
                  "a DELETE with a payload must violate the check constraint: %s",
                  PQresultErrorMessage(r));
    PQclear(r);
    r = PQexec(db.conn,
               "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid,"
               " payload, source_id, source_change_id) VALUES ('u1', 'public', 'notes', 'INSERT',"
               " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{}', 'dev1', 1)");
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR
                      && strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23505") == 0,
                  "a repeated (user, source, scid) must violate the unique key: %s",
                  PQresultErrorMessage(r));
    PQclear(r);
    bare_drop(&db);
}
END_TEST

START_TEST(test_bundle_sidecar_refused)
{
    /* A database of the bundle protocol (sync.meta present): the upload protocol's bootstrap
     * refuses it and creates nothing beside it. */
    struct bare_db db;
    bare_create(&db);
    tdb_conn_exec(db.conn, "CREATE SCHEMA sync; CREATE TABLE sync.meta (singleton_key bool PRIMARY KEY)");
    char err[512] = "";
    int applied = -1;
    ck_assert(!bootstrap_sidecar(db.conn, &applied, err, sizeof err));
    ck_assert_int_eq(applied, 0);
    ck_assert_str_eq(err, "sidecar bootstrap: this database holds the bundle protocol's sidecar (sync.meta); "
                          "serve it with [sync] protocol = bundle");
    char *n = tdb_conn_query(db.conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'sync'");
    ck_assert_str_eq(n, "1");
    free(n);
    bare_drop(&db);
}
END_TEST

START_TEST(test_second_run_changes_nothing)
{
    struct bare_db db;
    bare_create(&db);
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");
    char *schema = schema_dump(db.conn);
    char *migrations = migrations_dump(db.conn);

    notices_seen = 0;
    bootstrap_ok(db.conn, 0, "on a current sidecar");
    bootstrap_ok(db.conn, 0, "on a current sidecar, third time");
    ck_assert_int_eq(notices_seen, 0);
    char *schema2 = schema_dump(db.conn);
    char *migrations2 = migrations_dump(db.conn);
    assert_same_text("schema after a second bootstrap", schema, schema2);
    assert_same_text("sync.schema_migrations after a second bootstrap", migrations, migrations2);

    /* Every migration must also be harmless on a sidecar it already shaped: forget the record
     * and let them all run again over the finished layout. */
    tdb_conn_exec(db.conn, "DELETE FROM sync.schema_migrations");
    ck_assert_int_eq(bootstrap_current_version(db.conn), 0);
    bootstrap_ok(db.conn, n_sidecar_migrations, "over a finished sidecar without records");
    char *schema3 = schema_dump(db.conn);
    assert_same_text("schema after re-running every migration", schema, schema3);
    assert_all_migrations_recorded(db.conn);

    free(schema);
    free(schema2);
    free(schema3);
    free(migrations);
    free(migrations2);
    bare_drop(&db);
}
END_TEST

/* A current sidecar must be recognised without the lock: workers reconnect while another host
 * may be holding it for minutes. */
START_TEST(test_current_sidecar_needs_no_lock)
{
    struct bare_db db;
    bare_create(&db);
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");

    PGconn *holder = test_connect(db.name);
    tdb_conn_exec(holder, "SELECT pg_advisory_lock(" LOCK_KEY ")");
    tdb_conn_exec(db.conn, "SET lock_timeout = '300ms'");
    bootstrap_ok(db.conn, 0, "on a current sidecar while the lock is held elsewhere");

    /* An outdated sidecar does wait for that very lock. */
    tdb_conn_exec(db.conn, "DELETE FROM sync.schema_migrations WHERE version >= 2");
    char err[1024];
    bootstrap_fails(db.conn, err, sizeof err, "while the lock is held elsewhere");
    ck_assert_msg(strstr(err, "lock timeout") != NULL,
                  "expected a lock timeout while another session holds the lock, got: %s", err);
    ck_assert_int_eq(bootstrap_current_version(db.conn), 1);

    tdb_conn_exec(holder, "SELECT pg_advisory_unlock(" LOCK_KEY ")");
    bootstrap_ok(db.conn, n_sidecar_migrations - 1, "once the lock is free");
    PQfinish(holder);
    bare_drop(&db);
}
END_TEST

START_TEST(test_newer_recorded_version)
{
    struct bare_db db;
    bare_create(&db);
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");
    tdb_conn_exec(db.conn, "INSERT INTO sync.schema_migrations (version, name) VALUES (999, '0999_future.sql')");
    bootstrap_ok(db.conn, 0, "on a sidecar newer than this build");
    ck_assert_int_eq(bootstrap_current_version(db.conn), 999);
    bare_drop(&db);
}
END_TEST

START_TEST(test_lost_connection)
{
    struct bare_db db;
    bare_create(&db);
    char *pid = tdb_conn_query(db.conn, "SELECT pg_backend_pid()");
    PGconn *admin = test_connect("postgres");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid);
    tdb_conn_exec(admin, sql);
    PQfinish(admin);
    free(pid);
    /* pg_terminate_backend only signals; give the backend a moment to go. */
    usleep(200 * 1000);

    ck_assert_int_eq(bootstrap_current_version(db.conn), -1);
    char err[1024] = "";
    int applied = -1;
    ck_assert(!bootstrap_sidecar(db.conn, &applied, err, sizeof err));
    ck_assert_msg(err[0] != '\0', "no reason given for a failure on a lost connection");
    ck_assert_int_eq(applied, 0);
    bare_drop(&db);
}
END_TEST

/* ------------------------------------------------------------------ concurrent starts */

struct child_result {
    int ok;
    int applied;
    char err[512];
};

/* Runs in a forked child: no Check calls, only a result on the pipe and an exit status.
 * With a stricter default isolation the waiting bootstrap would keep the snapshot it took before
 * the lock and miss what the winner committed, so some rounds run under it. */
static void child_bootstrap(const char *dbname, const char *isolation, int ready_fd, int go_fd,
                            int result_fd)
{
    struct child_result res = { 0, -1, "" };
    PGconn *c = tdb_connect_raw(dbname);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(res.err, sizeof res.err, "connect: %s", c ? PQerrorMessage(c) : "out of memory");
    } else {
        char sql[128];
        snprintf(sql, sizeof sql, "SET default_transaction_isolation = '%s'", isolation);
        PQclear(PQexec(c, sql));
        char byte = 'r';
        if (write(ready_fd, &byte, 1) != 1)
            _exit(3);
        /* Blocks until the parent closes the pipe, which releases both children at once. */
        while (read(go_fd, &byte, 1) > 0)
            ;
        res.ok = bootstrap_sidecar(c, &res.applied, res.err, sizeof res.err);
    }
    if (write(result_fd, &res, sizeof res) != (ssize_t)sizeof res)
        _exit(3);
    _exit(res.ok ? 0 : 1);
}

static void race_once(const char *fresh_dump, int round)
{
    struct bare_db db;
    bare_create(&db);
    PQfinish(db.conn);
    db.conn = NULL;

    int ready[2], go[2], result[2];
    ck_assert(pipe(ready) == 0 && pipe(go) == 0 && pipe(result) == 0);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        ck_assert_msg(pids[i] >= 0, "fork failed");
        if (pids[i] == 0) {
            close(ready[0]);
            close(go[1]);
            close(result[0]);
            child_bootstrap(db.name, round % 2 ? "repeatable read" : "read committed", ready[1],
                            go[0], result[1]);
        }
    }
    close(ready[1]);
    close(go[0]);
    close(result[1]);

    int readies = 0;
    char byte;
    while (readies < 2 && read(ready[0], &byte, 1) == 1)
        readies++;
    close(go[1]);

    struct child_result res[2];
    int total_applied = 0;
    for (int i = 0; i < 2; i++) {
        ssize_t n = read(result[0], &res[i], sizeof res[i]);
        ck_assert_msg(n == (ssize_t)sizeof res[i], "round %d: child %d sent no result", round, i);
    }
    for (int i = 0; i < 2; i++) {
        int status;
        ck_assert(waitpid(pids[i], &status, 0) == pids[i]);
        ck_assert_msg(WIFEXITED(status), "round %d: child %d died", round, i);
    }
    close(ready[0]);
    close(result[0]);
    ck_assert_msg(readies == 2, "round %d: only %d children got ready", round, readies);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(res[i].ok, "round %d: concurrent bootstrap %d failed: %s", round, i, res[i].err);
        total_applied += res[i].applied;
    }
    ck_assert_msg(total_applied == n_sidecar_migrations,
                  "round %d: the two bootstraps applied %d and %d migrations, expected %d in all",
                  round, res[0].applied, res[1].applied, n_sidecar_migrations);

    db.conn = test_connect(db.name);
    char *dump = schema_dump(db.conn);
    assert_same_text("schema after two concurrent bootstraps", fresh_dump, dump);
    free(dump);
    assert_all_migrations_recorded(db.conn);
    bare_drop(&db);
}

START_TEST(test_concurrent_bootstraps)
{
    char *fresh = fresh_schema_dump();
    for (int round = 0; round < 5; round++)
        race_once(fresh, round);
    free(fresh);
}
END_TEST

/* ------------------------------------------------------------------ reference sidecars */

enum reference_variant {
    REF_JSONB,        /* the layout as given, payloads jsonb, every index */
    REF_JSON,         /* newest reference: payloads json, scl_seq_idx and scl_triplet_idx dropped */
    REF_OLD,          /* older reference: no scl_user_schema_seq_idx yet */
};

static void create_reference_layout(PGconn *c, enum reference_variant v)
{
    const char *payload = v == REF_JSON ? "JSON" : "JSONB";
    strbuf_t sql = STRBUF_INIT;
    sb_puts(&sql,
        "CREATE SCHEMA sync;"
        "CREATE TABLE sync.sync_row_meta (user_id TEXT NOT NULL, schema_name TEXT NOT NULL,"
        " table_name TEXT NOT NULL, pk_uuid UUID NOT NULL, server_version BIGINT NOT NULL DEFAULT 0,"
        " deleted BOOLEAN NOT NULL DEFAULT FALSE, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
        " PRIMARY KEY (user_id, schema_name, table_name, pk_uuid));");
    sb_printf(&sql,
        "CREATE TABLE sync.sync_state (user_id TEXT NOT NULL, schema_name TEXT NOT NULL,"
        " table_name TEXT NOT NULL, pk_uuid UUID NOT NULL, payload %s NOT NULL,"
        " PRIMARY KEY (user_id, schema_name, table_name, pk_uuid));", payload);
    sb_printf(&sql,
        "CREATE TABLE sync.server_change_log (server_id BIGSERIAL PRIMARY KEY,"
        " user_id TEXT NOT NULL, schema_name TEXT NOT NULL, table_name TEXT NOT NULL,"
        " op TEXT NOT NULL CHECK (op IN ('INSERT','UPDATE','DELETE')), pk_uuid UUID NOT NULL,"
        " payload %s, source_id TEXT NOT NULL, source_change_id BIGINT NOT NULL,"
        " server_version BIGINT NOT NULL DEFAULT 0, ts TIMESTAMPTZ NOT NULL DEFAULT now(),"
        " UNIQUE (user_id, source_id, source_change_id),"
        " CONSTRAINT server_change_payload_by_op_chk CHECK ((op = 'DELETE' AND payload IS NULL)"
        " OR (op IN ('INSERT','UPDATE') AND payload IS NOT NULL)));", payload);
    if (v != REF_JSON)
        sb_puts(&sql, "CREATE INDEX scl_seq_idx ON sync.server_change_log(server_id);");
    sb_puts(&sql, "CREATE INDEX scl_user_seq_idx ON sync.server_change_log(user_id, server_id);");
    if (v != REF_OLD)
        sb_puts(&sql, "CREATE INDEX scl_user_schema_seq_idx ON sync.server_change_log"
                      "(user_id, schema_name, server_id);");
    if (v != REF_JSON)
        sb_puts(&sql, "CREATE INDEX scl_triplet_idx ON sync.server_change_log"
                      "(user_id, schema_name, table_name, pk_uuid);");
    sb_puts(&sql,
        "CREATE INDEX scl_user_pk_seq_idx ON sync.server_change_log"
        "(user_id, schema_name, table_name, pk_uuid, server_id);"
        "CREATE INDEX scl_user_delete_seq_idx ON sync.server_change_log(user_id, server_id)"
        " WHERE op='DELETE';");
    sb_printf(&sql,
        "CREATE TABLE sync.materialize_failures (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL,"
        " schema_name TEXT NOT NULL, table_name TEXT NOT NULL, pk_uuid UUID NOT NULL,"
        " attempted_version BIGINT NOT NULL, op TEXT NOT NULL, payload %s, error TEXT NOT NULL,"
        " first_seen TIMESTAMPTZ NOT NULL DEFAULT now(), retry_count INT NOT NULL DEFAULT 0,"
        " UNIQUE (user_id, schema_name, table_name, pk_uuid, attempted_version));"
        "CREATE INDEX mf_user_table_idx ON sync.materialize_failures(user_id, schema_name, table_name);",
        payload);
    tdb_conn_exec(c, sb_cstr(&sql));
    sb_free(&sql);
}

/* Rows as the reference server writes them, plus ids inserted past the sequences (as a restore
 * without sequence values leaves them), which the upgrade must step over. The json payloads
 * carry whitespace and key order that jsonb normalises. */
static void fill_reference_rows(PGconn *c)
{
    tdb_conn_exec(c,
        "INSERT INTO sync.sync_row_meta VALUES"
        " ('alice', 'public', 'notes', '11111111-1111-4111-8111-111111111111', 3, false, '2024-01-02 03:04:05.123456+00'),"
        " ('alice', 'public', 'notes', '22222222-2222-4222-8222-222222222222', 2, true, '2024-01-03 00:00:00+00'),"
        " ('bob', 'public', 'notes', '11111111-1111-4111-8111-111111111111', 1, false, '2024-02-01 12:00:00+00'),"
        " ('bob', 'crm', 'contacts', '33333333-3333-4333-8333-333333333333', 7, false, '2024-02-02 12:00:00+00');"
        "INSERT INTO sync.sync_state VALUES"
        " ('alice', 'public', 'notes', '11111111-1111-4111-8111-111111111111',"
        "  '{ \"title\" : \"milk\",   \"done\": false, \"n\": 1.50, \"tags\": [\"a\", \"b\"] }'),"
        " ('bob', 'public', 'notes', '11111111-1111-4111-8111-111111111111',"
        "  '{\"z\": 1, \"a\": {\"deep\": [1, {\"x\": null}]}, \"u\": \"\\u00e9t\\u00e9 \\u2713\"}'),"
        " ('bob', 'crm', 'contacts', '33333333-3333-4333-8333-333333333333', '{}');"
        "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"
        " source_id, source_change_id, server_version, ts) VALUES"
        " ('alice', 'public', 'notes', 'INSERT', '11111111-1111-4111-8111-111111111111',"
        "  '{\"title\": \"milk\"}', 'phone', 1, 1, '2024-01-01 00:00:00+00'),"
        " ('alice', 'public', 'notes', 'UPDATE', '11111111-1111-4111-8111-111111111111',"
        "  '{ \"title\" : \"milk\",   \"done\": false, \"n\": 1.50, \"tags\": [\"a\", \"b\"] }',"
        "  'laptop', 1, 2, '2024-01-01 00:00:01+00'),"
        " ('alice', 'public', 'notes', 'INSERT', '22222222-2222-4222-8222-222222222222',"
        "  '{\"title\": \"eggs\"}', 'phone', 2, 1, '2024-01-01 00:00:02+00'),"
        " ('alice', 'public', 'notes', 'DELETE', '22222222-2222-4222-8222-222222222222',"
        "  NULL, 'phone', 3, 2, '2024-01-01 00:00:03+00'),"
        " ('bob', 'public', 'notes', 'INSERT', '11111111-1111-4111-8111-111111111111',"
        "  '{\"z\": 1, \"a\": {\"deep\": [1, {\"x\": null}]}, \"u\": \"\\u00e9t\\u00e9 \\u2713\"}',"
        "  'phone', 1, 1, '2024-01-01 00:00:04+00'),"
        " ('bob', 'crm', 'contacts', 'DELETE', '44444444-4444-4444-8444-444444444444',"
        "  NULL, 'tablet', 9, 5, '2024-01-01 00:00:05+00');"
        "INSERT INTO sync.server_change_log (server_id, user_id, schema_name, table_name, op, pk_uuid,"
        " payload, source_id, source_change_id, server_version) VALUES"
        " (1000, 'carol', 'public', 'notes', 'INSERT', '55555555-5555-4555-8555-555555555555',"
        "  '{\"restored\": true}', 'restore', 1, 1);"
        "INSERT INTO sync.materialize_failures (user_id, schema_name, table_name, pk_uuid,"
        " attempted_version, op, payload, error, retry_count) VALUES"
        " ('alice', 'public', 'notes', '11111111-1111-4111-8111-111111111111', 2, 'UPDATE',"
        "  '{ \"title\" : \"milk\" }', 'violates not-null constraint', 3),"
        " ('bob', 'crm', 'contacts', '33333333-3333-4333-8333-333333333333', 7, 'DELETE', NULL,"
        "  'foreign key', 0);"
        "INSERT INTO sync.materialize_failures (id, user_id, schema_name, table_name, pk_uuid,"
        " attempted_version, op, payload, error) VALUES"
        " (500, 'carol', 'public', 'notes', '55555555-5555-4555-8555-555555555555', 1, 'INSERT',"
        "  '{\"restored\": true}', 'restored');");
}

static void upgrade_reference(enum reference_variant v, const char *missing_index)
{
    char *fresh = fresh_schema_dump();
    struct bare_db db;
    bare_create(&db);
    create_reference_layout(db.conn, v);
    fill_reference_rows(db.conn);
    if (missing_index) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT to_regclass('sync.%s') IS NULL", missing_index);
        ck_assert_msg(query_bool(db.conn, sql), "the reference layout should lack %s", missing_index);
    }
    ck_assert_int_eq(bootstrap_current_version(db.conn), 0);
    char *before = data_dump(db.conn);
    long long max_server_id = query_ll(db.conn, "SELECT max(server_id) FROM sync.server_change_log");
    long long max_failure_id = query_ll(db.conn, "SELECT max(id) FROM sync.materialize_failures");

    notices_seen = 0;
    bootstrap_ok(db.conn, n_sidecar_migrations, "on a reference sidecar");
    ck_assert_msg(notices_seen == 0, "the bootstrap sent %d notices to the client", notices_seen);

    char *after = data_dump(db.conn);
    assert_same_text("sidecar rows after the upgrade", before, after);
    ck_assert_int_eq(query_ll(db.conn, "SELECT count(*) FROM sync.server_change_log"), 7);
    ck_assert_int_eq(query_ll(db.conn,
                              "SELECT count(*) FROM sync.server_change_log WHERE payload IS NULL"), 2);
    ck_assert_int_eq(query_ll(db.conn, "SELECT count(DISTINCT user_id) FROM sync.server_change_log"), 3);
    /* the change log's json payloads (0005) hold the text jsonb prints, whatever the reference
     * stored: downloads send it as they did from jsonb */
    ck_assert_int_eq(query_ll(db.conn, "SELECT count(*) FROM sync.server_change_log"
                                       " WHERE payload::text IS DISTINCT FROM payload::jsonb::text"), 0);
    assert_full_layout(db.conn);
    assert_all_migrations_recorded(db.conn);
    char *schema = schema_dump(db.conn);
    assert_same_text("upgraded schema against a fresh one", fresh, schema);

    long long next_server_id = query_ll(db.conn,
        "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"
        " source_id, source_change_id) VALUES ('alice', 'public', 'notes', 'UPDATE',"
        " '11111111-1111-4111-8111-111111111111', '{\"title\": \"oat milk\"}', 'phone', 4)"
        " RETURNING server_id");
    ck_assert_msg(next_server_id > max_server_id,
                  "the change log sequence handed out %lld, not past the existing maximum %lld",
                  next_server_id, max_server_id);
    long long next_failure_id = query_ll(db.conn,
        "INSERT INTO sync.materialize_failures (user_id, schema_name, table_name, pk_uuid,"
        " attempted_version, op, error) VALUES ('alice', 'public', 'notes',"
        " '22222222-2222-4222-8222-222222222222', 3, 'DELETE', 'x') RETURNING id");
    ck_assert_msg(next_failure_id > max_failure_id,
                  "the failure sequence handed out %lld, not past the existing maximum %lld",
                  next_failure_id, max_failure_id);

    bootstrap_ok(db.conn, 0, "again after the upgrade");
    free(fresh);
    free(before);
    free(after);
    free(schema);
    bare_drop(&db);
}

START_TEST(test_upgrade_reference_jsonb)
{
    upgrade_reference(REF_JSONB, NULL);
}
END_TEST

START_TEST(test_upgrade_reference_json)
{
    upgrade_reference(REF_JSON, "scl_seq_idx");
}
END_TEST

START_TEST(test_upgrade_reference_old)
{
    upgrade_reference(REF_OLD, "scl_user_schema_seq_idx");
}
END_TEST

/* A sidecar someone made by hand: the right columns, but no keys, checks, defaults or
 * sequences. The bootstrap must add every one of them, named as the reference names them. */
START_TEST(test_upgrade_hand_made_without_keys)
{
    char *fresh = fresh_schema_dump();
    struct bare_db db;
    bare_create(&db);
    tdb_conn_exec(db.conn,
        "CREATE SCHEMA sync;"
        "CREATE TABLE sync.sync_row_meta (user_id text, schema_name text, table_name text,"
        " pk_uuid uuid, server_version bigint, deleted boolean, updated_at timestamptz);"
        "CREATE TABLE sync.sync_state (user_id text, schema_name text, table_name text,"
        " pk_uuid uuid, payload json NOT NULL);"
        "CREATE TABLE sync.server_change_log (server_id bigint NOT NULL, user_id text NOT NULL,"
        " schema_name text NOT NULL, table_name text NOT NULL, op text NOT NULL, pk_uuid uuid NOT NULL,"
        " payload json, source_id text NOT NULL, source_change_id bigint NOT NULL,"
        " server_version bigint NOT NULL, ts timestamptz NOT NULL);"
        "CREATE TABLE sync.materialize_failures (id bigint NOT NULL, user_id text NOT NULL,"
        " schema_name text NOT NULL, table_name text NOT NULL, pk_uuid uuid NOT NULL,"
        " attempted_version bigint NOT NULL, op text NOT NULL, payload jsonb, error text NOT NULL,"
        " first_seen timestamptz NOT NULL, retry_count int NOT NULL);"
        "INSERT INTO sync.sync_row_meta VALUES ('u', 's', 't', '11111111-1111-4111-8111-111111111111',"
        " 1, false, now());"
        "INSERT INTO sync.sync_state VALUES ('u', 's', 't', '11111111-1111-4111-8111-111111111111',"
        " '{\"a\": 1}');"
        "INSERT INTO sync.server_change_log VALUES (41, 'u', 's', 't', 'INSERT',"
        " '11111111-1111-4111-8111-111111111111', '{\"a\": 1}', 'd', 1, 1, now());"
        "INSERT INTO sync.materialize_failures VALUES (7, 'u', 's', 't',"
        " '11111111-1111-4111-8111-111111111111', 1, 'INSERT', '{}', 'e', now(), 0);");
    char *before = data_dump(db.conn);

    bootstrap_ok(db.conn, n_sidecar_migrations, "on a hand-made sidecar");
    char *after = data_dump(db.conn);
    assert_same_text("sidecar rows after the upgrade", before, after);
    assert_full_layout(db.conn);
    char *schema = schema_dump(db.conn);
    assert_same_text("upgraded hand-made schema against a fresh one", fresh, schema);

    ck_assert_int_eq(query_ll(db.conn,
        "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"
        " source_id, source_change_id) VALUES ('u', 's', 't', 'UPDATE',"
        " '11111111-1111-4111-8111-111111111111', '{\"a\": 2}', 'd', 2)"
        " ON CONFLICT (user_id, source_id, source_change_id) DO NOTHING RETURNING server_id"), 42);
    ck_assert_int_eq(query_ll(db.conn,
        "INSERT INTO sync.materialize_failures (user_id, schema_name, table_name, pk_uuid,"
        " attempted_version, op, error) VALUES ('u', 's', 't', '11111111-1111-4111-8111-111111111111',"
        " 2, 'DELETE', 'e') RETURNING id"), 8);
    free(fresh);
    free(before);
    free(after);
    free(schema);
    bare_drop(&db);
}
END_TEST

/* ------------------------------------------------------------------ broken states */

START_TEST(test_broken_change_log_table)
{
    struct bare_db db;
    bare_create(&db);
    tdb_conn_exec(db.conn,
            "CREATE SCHEMA sync;"
            "CREATE TABLE sync.server_change_log (server_id bigserial PRIMARY KEY, note text);"
            "INSERT INTO sync.server_change_log (note) VALUES ('kept');");

    char err[1024];
    bootstrap_fails(db.conn, err, sizeof err, "over a foreign server_change_log");
    ck_assert_msg(strstr(err, "0001_sidecar.sql") != NULL, "the error must name the migration: %s", err);
    ck_assert_msg(strstr(err, "column \"user_id\" does not exist") != NULL,
                  "the error must carry PostgreSQL's reason: %s", err);

    /* Nothing of the failed transaction survives: no record table, no other sidecar table. */
    ck_assert_int_eq(bootstrap_current_version(db.conn), 0);
    ck_assert_msg(query_bool(db.conn, "SELECT to_regclass('sync.schema_migrations') IS NULL"
                                      " AND to_regclass('sync.sync_row_meta') IS NULL"
                                      " AND to_regclass('sync.sync_state') IS NULL"),
                  "the failed bootstrap left tables behind");
    char *kept = tdb_conn_query(db.conn, "SELECT string_agg(note, ',') FROM sync.server_change_log");
    ck_assert_str_eq(kept, "kept");
    free(kept);
    bare_drop(&db);
}
END_TEST

START_TEST(test_wrong_column_types_are_named)
{
    struct bare_db db;
    bare_create(&db);
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");
    tdb_conn_exec(db.conn,
            "DELETE FROM sync.schema_migrations WHERE version >= 2;"
            "ALTER TABLE sync.server_change_log ALTER COLUMN source_change_id TYPE text;"
            "DROP TABLE sync.sync_state;"
            "CREATE VIEW sync.sync_state AS SELECT 1 AS x;");

    char err[1024];
    bootstrap_fails(db.conn, err, sizeof err, "over mistyped tables");
    ck_assert_msg(strstr(err, "0002_oversyncd.sql") != NULL, "the error must name the migration: %s", err);
    ck_assert_msg(strstr(err, "sync.server_change_log.source_change_id is text, oversyncd needs bigint"),
                  "the error must name the mistyped column: %s", err);
    ck_assert_msg(strstr(err, "sync.sync_state is not a table"),
                  "the error must name the view in the way: %s", err);
    ck_assert_int_eq(bootstrap_current_version(db.conn), 1);
    bare_drop(&db);
}
END_TEST

/* A failure late in a migration undoes its earlier steps too: the json payload conversion runs
 * before the unique key fails on duplicates, and must be rolled back with it. */
START_TEST(test_failed_migration_leaves_nothing_half_done)
{
    struct bare_db db;
    bare_create(&db);
    bootstrap_ok(db.conn, n_sidecar_migrations, "on an empty database");
    tdb_conn_exec(db.conn,
            "DELETE FROM sync.schema_migrations WHERE version >= 2;"
            "ALTER TABLE sync.sync_state ALTER COLUMN payload TYPE json;"
            "ALTER TABLE sync.server_change_log"
            " DROP CONSTRAINT server_change_log_user_id_source_id_source_change_id_key;"
            "INSERT INTO sync.sync_state VALUES ('u', 's', 't', '11111111-1111-4111-8111-111111111111',"
            " '{\"a\": 1}');"
            "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid,"
            " payload, source_id, source_change_id) VALUES"
            " ('u', 's', 't', 'INSERT', '11111111-1111-4111-8111-111111111111', '{}', 'dev', 5),"
            " ('u', 's', 't', 'UPDATE', '11111111-1111-4111-8111-111111111111', '{}', 'dev', 5);");
    char *migrations = migrations_dump(db.conn);
    char *data = data_dump(db.conn);

    char err[1024];
    bootstrap_fails(db.conn, err, sizeof err, "over duplicated idempotency keys");
    ck_assert_msg(strstr(err, "0002_oversyncd.sql") != NULL, "the error must name the migration: %s", err);
    ck_assert_msg(strstr(err, "could not create unique index") && strstr(err, "is duplicated"),
                  "the error must carry PostgreSQL's reason and detail: %s", err);

    char *migrations2 = migrations_dump(db.conn);
    assert_same_text("sync.schema_migrations after a failed bootstrap", migrations, migrations2);
    ck_assert_int_eq(bootstrap_current_version(db.conn), 1);
    char *type = tdb_conn_query(db.conn,
                            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                            " WHERE attrelid = 'sync.sync_state'::regclass AND attname = 'payload'");
    ck_assert_msg(strcmp(type, "json") == 0,
                  "the payload conversion of the failed migration was not rolled back (%s)", type);
    char *data2 = data_dump(db.conn);
    assert_same_text("sidecar rows after a failed bootstrap", data, data2);

    /* Once the operator resolves the duplicate, the same bootstrap goes through. */
    tdb_conn_exec(db.conn, "DELETE FROM sync.server_change_log WHERE op = 'UPDATE' AND source_change_id = 5");
    bootstrap_ok(db.conn, n_sidecar_migrations - 1, "after the duplicate is resolved");
    assert_full_layout(db.conn);
    free(migrations);
    free(migrations2);
    free(type);
    free(data);
    free(data2);
    bare_drop(&db);
}
END_TEST

/* ------------------------------------------------------------------ runner */

static Suite *bootstrap_suite(void)
{
    Suite *s = suite_create("bootstrap");

    TCase *tc = tcase_create("fresh");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_embedded_migrations);
    tcase_add_test(tc, test_fresh_database);
    tcase_add_test(tc, test_second_run_changes_nothing);
    tcase_add_test(tc, test_bundle_sidecar_refused);
    tcase_add_test(tc, test_current_sidecar_needs_no_lock);
    tcase_add_test(tc, test_newer_recorded_version);
    tcase_add_test(tc, test_lost_connection);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_concurrent_bootstraps);
    suite_add_tcase(s, tc);

    tc = tcase_create("upgrade");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_upgrade_reference_jsonb);
    tcase_add_test(tc, test_upgrade_reference_json);
    tcase_add_test(tc, test_upgrade_reference_old);
    tcase_add_test(tc, test_upgrade_hand_made_without_keys);
    suite_add_tcase(s, tc);

    tc = tcase_create("broken");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_broken_change_log_table);
    tcase_add_test(tc, test_wrong_column_types_are_named);
    tcase_add_test(tc, test_failed_migration_leaves_nothing_half_done);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* The bootstrap logs the migrations it applies and warns about a sidecar newer than the
     * build, both of which the tests provoke on purpose; Check reports what matters. */
    log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
    return run_suites(bootstrap_suite(), NULL);
}
