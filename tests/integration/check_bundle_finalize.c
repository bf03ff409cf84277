/* Bundle finalization and server-originated writes in SQL (sql/bundle/0003_finalize.sql) against
 * a real PostgreSQL (tests/pg.sh): oversyncd.finalize_bundle, activate_source, apply_retention,
 * sync.begin_server_bundle and sync.commit_server_bundle, as SPEC-v2 §4.2, §4.4, §4.7, §4.8,
 * §4.10, §4.11 and §4.12 describe them (the go-oversync library's behaviour;
 * tests/compat/check-server-writes.sh compares with the library itself).
 *
 * Every test works in a fresh database of its own with four registered tables, laid out by
 * bundle_bootstrap: business.files (bytea columns, one through a domain, one with a capital in its
 * name), business.notes (text key, values of every JSON kind), business.posts (a deferred
 * scope-inclusive foreign key, ON DELETE CASCADE, to users) and business.users (id, name, email:
 * the shape of the SPEC-v2 §4.7 vector). table_id: files 1, notes 2, posts 3, users 4. */
#include "testdb.h"
#include "../run_suites.h"

#include "bundle/schema.h"
#include "bundle_hash.h"
#include "strbuf.h"

#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define U1 "11111111-1111-4111-8111-111111111111"
#define U2 "22222222-2222-4222-8222-222222222222"
#define U3 "33333333-3333-4333-8333-333333333333"
#define P1 "44444444-4444-4444-8444-444444444444"
#define F1 "55555555-5555-4555-8555-555555555555"

#define NOTIFY_CHANNEL "oversync_bundle_change_v1"

static const char business_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE DOMAIN business.blob AS bytea;"
    "CREATE TABLE business.users (_sync_scope_id text NOT NULL, id uuid NOT NULL, name text, email text,"
    "  PRIMARY KEY (_sync_scope_id, id));"
    "CREATE TABLE business.posts (_sync_scope_id text NOT NULL, id uuid NOT NULL, title text, author_id uuid,"
    "  PRIMARY KEY (_sync_scope_id, id),"
    "  CONSTRAINT posts_author_fk FOREIGN KEY (_sync_scope_id, author_id)"
    "    REFERENCES business.users (_sync_scope_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED);"
    "CREATE TABLE business.files (_sync_scope_id text NOT NULL, id uuid NOT NULL, name text, data bytea,"
    "  thumb business.blob, \"Raw\" bytea, PRIMARY KEY (_sync_scope_id, id));"
    "CREATE TABLE business.notes (_sync_scope_id text NOT NULL, slug text NOT NULL, body text, n numeric,"
    "  f float8, big bigint, flag boolean, meta jsonb, at timestamptz, PRIMARY KEY (_sync_scope_id, slug));";

static const struct bundle_table registry[] = {
    { "business", "users", "id" }, { "business", "posts", "id" },
    { "business", "files", "id" }, { "business", "notes", "slug" },
};

enum { FILES = 1, NOTES = 2, POSTS = 3, USERS = 4 };

static void boot(void)
{
    struct bundle_catalog cat;
    char err[2048] = "";
    bool ok = bundle_bootstrap(T.conn, registry, (int)(sizeof registry / sizeof registry[0]), &cat, err, sizeof err);
    ck_assert_msg(ok, "bundle_bootstrap failed: %s", err);
    ck_assert_int_eq(cat.n_tables, 4);
    ck_assert_int_eq(bundle_catalog_find(&cat, "business", "users")->table_id, USERS);
    ck_assert_int_eq(bundle_catalog_find(&cat, "business", "notes")->table_id, NOTES);
    bundle_catalog_free(&cat);
}

static void setup(void)
{
    tdb_open_empty(&T);
    tdb_exec(&T, "%s", business_ddl);
    tdb_exec(&T, "SET TimeZone = 'UTC'");
    boot();
}

static void teardown(void)
{
    if (T.dbname[0])
        tdb_close(&T);
}

/* ------------------------------------------------------------------------------ helpers */

/* Opens a transaction with a server bundle for (user, writer) and runs sql in it. */
static void open_bundle(const char *user, const char *writer, const char *sql)
{
    tdb_exec(&T, "BEGIN; SELECT sync.begin_server_bundle(%s, %s); %s", tdb_lit(&T, user), tdb_lit(&T, writer), sql);
}

/* commit_server_bundle()'s row as "bundle_seq source_id source_bundle_id row_count byte_count hash",
 * then COMMIT. */
static const char *close_bundle(void)
{
    const char *r = tdb_query(&T, "SELECT format('%%s %%s %%s %%s %%s %%s', bundle_seq, source_id, source_bundle_id,"
                                  " row_count, byte_count, bundle_hash) FROM sync.commit_server_bundle()");
    tdb_exec(&T, "COMMIT");
    return r;
}

/* One whole server bundle (ExecWrite form): its commit_server_bundle row. */
static const char *server_write(const char *user, const char *writer, const char *sql)
{
    open_bundle(user, writer, sql);
    return close_bundle();
}

static long long user_pk(const char *user)
{
    return tdb_query_ll(&T, "SELECT user_pk FROM sync.user_state WHERE user_id = %s", tdb_lit(&T, user));
}

/* The rows of a committed bundle, one line each: "table_id op key payload_wire|NULL". */
static const char *rows_of(const char *user, long long seq)
{
    return tdb_query(&T,
        "SELECT coalesce(string_agg(format('%%s %%s %%s %%s', r.table_id, r.op_code,"
        "         CASE WHEN r.table_id = %d THEN convert_from(r.key_bytes, 'UTF8')"
        "              ELSE encode(r.key_bytes, 'hex')::uuid::text END,"
        "         coalesce(r.payload_wire::text, 'NULL')), E'\\n' ORDER BY r.row_ordinal), '')"
        "  FROM sync.bundle_rows r JOIN sync.user_state u ON u.user_pk = r.user_pk"
        " WHERE u.user_id = %s AND r.bundle_seq = %lld",
        NOTES, tdb_lit(&T, user), seq);
}

/* bundle_log of a user: "seq source sbid rows" per line. */
static const char *log_of(const char *user)
{
    return tdb_query(&T,
        "SELECT coalesce(string_agg(format('%%s %%s %%s %%s', l.bundle_seq, l.source_id, l.source_bundle_id,"
        "         l.row_count), E'\\n' ORDER BY l.bundle_seq), '')"
        "  FROM sync.bundle_log l JOIN sync.user_state u ON u.user_pk = l.user_pk WHERE u.user_id = %s",
        tdb_lit(&T, user));
}

/* row_state of a user: "table_id key bundle_seq deleted|live" per line. */
static const char *row_state_of(const char *user)
{
    return tdb_query(&T,
        "SELECT coalesce(string_agg(format('%%s %%s %%s %%s', s.table_id,"
        "         CASE WHEN s.table_id = %d THEN convert_from(s.key_bytes, 'UTF8')"
        "              ELSE encode(s.key_bytes, 'hex')::uuid::text END, s.bundle_seq,"
        "         CASE WHEN s.deleted THEN 'deleted' ELSE 'live' END),"
        "         E'\\n' ORDER BY s.table_id, s.key_bytes), '')"
        "  FROM sync.row_state s JOIN sync.user_state u ON u.user_pk = s.user_pk WHERE u.user_id = %s",
        NOTES, tdb_lit(&T, user));
}

/* Everything a server write could have written, as one digest. */
static const char *everything(void)
{
    return tdb_query(&T,
        "SELECT md5(concat_ws('|',"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.user_state t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.scope_state t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.source_state t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.row_state t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.bundle_log t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.bundle_rows t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.bundle_capture_stage t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM oversyncd.server_bundle_open t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM business.users t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM business.posts t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM business.files t),"
        " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM business.notes t)))");
}

/* Runs sql on c (statements, the last one failing) and checks the SQLSTATE and the primary
 * message; rolls back. */
static void conn_fails(PGconn *c, const char *sql, const char *sqlstate, const char *message)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR, "should have failed with \"%s\": %.400s", message, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    ck_assert_str_eq(primary ? primary : "", message);
    ck_assert_str_eq(state ? state : "", sqlstate);
    PQclear(r);
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        tdb_conn_exec(c, "ROLLBACK");
}

/* The same, on T, checking that nothing was written. */
static void fails(const char *sql, const char *sqlstate, const char *message)
{
    const char *before = everything();
    conn_fails(T.conn, sql, sqlstate, message);
    ck_assert_str_eq(everything(), before);
}

/* The bundle's hash and byte count recomputed by the C implementation (src/bundle_hash.c) from
 * the stored wire rows, and by oversyncd.bundle_hash, must be bundle_log's. */
static void assert_hash_matches(const char *user, long long seq)
{
    char *sql = tdb_printf(&T,
        "SELECT c.schema_name, c.table_name,"
        "       json_build_object(c.sync_key_column, CASE c.sync_key_kind WHEN 1 THEN encode(r.key_bytes, 'hex')::uuid::text"
        "                         ELSE convert_from(r.key_bytes, 'UTF8') END)::text,"
        "       CASE r.op_code WHEN 1 THEN 'INSERT' WHEN 2 THEN 'UPDATE' ELSE 'DELETE' END,"
        "       r.bundle_seq, r.payload_wire::text"
        "  FROM sync.bundle_rows r JOIN sync.table_catalog c ON c.table_id = r.table_id"
        "  JOIN sync.user_state u ON u.user_pk = r.user_pk"
        " WHERE u.user_id = %s AND r.bundle_seq = %lld ORDER BY r.row_ordinal",
        tdb_lit(&T, user), seq);
    PGresult *r = PQexec(T.conn, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_gt(PQntuples(r), 0);
    struct bundle_hasher h;
    ck_assert(bundle_hasher_init(&h));
    for (int i = 0; i < PQntuples(r); i++) {
        char err[256] = "";
        const char *payload = PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5);
        bool ok = bundle_hasher_add_row(&h, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                                        strlen(PQgetvalue(r, i, 2)), PQgetvalue(r, i, 3),
                                        atoll(PQgetvalue(r, i, 4)), payload, payload ? strlen(payload) : 0, err,
                                        sizeof err);
        ck_assert_msg(ok, "bundle_hasher_add_row: %s", err);
    }
    char hex[BUNDLE_HASH_HEX_LEN + 1];
    uint64_t bytes = 0;
    ck_assert(bundle_hasher_finish(&h, hex, &bytes));
    bundle_hasher_free(&h);
    int nrows = PQntuples(r);
    PQclear(r);

    const char *logged = tdb_query(&T,
        "SELECT format('%%s %%s %%s', encode(l.bundle_hash, 'hex'), l.byte_count, l.row_count)"
        "  FROM sync.bundle_log l JOIN sync.user_state u ON u.user_pk = l.user_pk"
        " WHERE u.user_id = %s AND l.bundle_seq = %lld",
        tdb_lit(&T, user), seq);
    ck_assert_str_eq(logged, tdb_printf(&T, "%s %llu %d", hex, (unsigned long long)bytes, nrows));

    const char *by_sql = tdb_query(&T,
        "SELECT format('%%s %%s %%s', h.bundle_hash, h.byte_count, %d) FROM oversyncd.bundle_hash(("
        "  SELECT jsonb_agg(jsonb_build_object('schema', c.schema_name, 'table', c.table_name,"
        "         'key', jsonb_build_object(c.sync_key_column, CASE c.sync_key_kind"
        "                  WHEN 1 THEN encode(r.key_bytes, 'hex')::uuid::text ELSE convert_from(r.key_bytes, 'UTF8') END),"
        "         'op', CASE r.op_code WHEN 1 THEN 'INSERT' WHEN 2 THEN 'UPDATE' ELSE 'DELETE' END,"
        "         'row_version', r.bundle_seq, 'payload', r.payload_wire::jsonb) ORDER BY r.row_ordinal)"
        "    FROM sync.bundle_rows r JOIN sync.table_catalog c ON c.table_id = r.table_id"
        "    JOIN sync.user_state u ON u.user_pk = r.user_pk"
        "   WHERE u.user_id = %s AND r.bundle_seq = %lld)) h",
        nrows, tdb_lit(&T, user), seq);
    ck_assert_str_eq(by_sql, logged);
}

/* ------------------------------------------------------------------------ the fold rules */

START_TEST(test_insert_then_delete_vanishes)
{
    /* alone: nothing captured survives, so the write is refused and nothing stays */
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
          "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'gone');"
          "DELETE FROM business.users WHERE id = '" U1 "';"
          "SELECT * FROM sync.commit_server_bundle()",
          "OV009", "scope write for ann via backend produced no visible registered-table effects");

    /* beside another row: only that one */
    const char *c = server_write("ann", "backend",
                                 "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'gone'), ('" U2 "', 'stays');"
                                 "UPDATE business.users SET name = 'going' WHERE id = '" U1 "';"
                                 "DELETE FROM business.users WHERE id = '" U1 "';");
    ck_assert_str_eq(c, "1 backend 1 1 221 "
                        "eace56ad745239eb00d1b2455d4ee9c8876b050e72fdda5aa90f9ab48057df05");
    ck_assert_str_eq(rows_of("ann", 1),
                     "4 1 " U2 " {\"email\":null,\"id\":\"" U2 "\",\"name\":\"stays\"}");
    ck_assert_str_eq(row_state_of("ann"), "4 " U2 " 1 live");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage"), 0);
    assert_hash_matches("ann", 1);
}
END_TEST

START_TEST(test_key_change_is_delete_plus_insert)
{
    server_write("ann", "backend", "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'Ada')");
    server_write("ann", "backend", "UPDATE business.users SET id = '" U2 "', name = 'Ada L' WHERE id = '" U1 "'");
    ck_assert_str_eq(rows_of("ann", 2),
                     "4 3 " U1 " NULL\n"
                     "4 1 " U2 " {\"email\":null,\"id\":\"" U2 "\",\"name\":\"Ada L\"}");
    ck_assert_str_eq(row_state_of("ann"), "4 " U1 " 2 deleted\n4 " U2 " 2 live");
    assert_hash_matches("ann", 2);

    /* a key changed twice in the bundle that created it: one INSERT of the last key */
    server_write("ann", "backend",
                 "INSERT INTO business.users (id, name) VALUES ('" U3 "', 'x');"
                 "UPDATE business.users SET id = '" P1 "' WHERE id = '" U3 "';"
                 "UPDATE business.users SET id = '" F1 "' WHERE id = '" P1 "';");
    ck_assert_str_eq(rows_of("ann", 3), "4 1 " F1 " {\"email\":null,\"id\":\"" F1 "\",\"name\":\"x\"}");
    assert_hash_matches("ann", 3);
}
END_TEST

START_TEST(test_insert_then_update_is_insert_with_last_payload)
{
    server_write("ann", "backend",
                 "INSERT INTO business.users (id, name, email) VALUES ('" U1 "', 'a', 'a@x');"
                 "UPDATE business.users SET name = 'b' WHERE id = '" U1 "';"
                 "UPDATE business.users SET email = 'c@x' WHERE id = '" U1 "';");
    ck_assert_str_eq(rows_of("ann", 1), "4 1 " U1 " {\"email\":\"c@x\",\"id\":\"" U1 "\",\"name\":\"b\"}");

    /* update then update: an UPDATE with the last payload; delete then insert again: an UPDATE */
    server_write("ann", "backend",
                 "UPDATE business.users SET name = 'c' WHERE id = '" U1 "';"
                 "UPDATE business.users SET name = 'd' WHERE id = '" U1 "';");
    ck_assert_str_eq(rows_of("ann", 2), "4 2 " U1 " {\"email\":\"c@x\",\"id\":\"" U1 "\",\"name\":\"d\"}");
    server_write("ann", "backend",
                 "DELETE FROM business.users WHERE id = '" U1 "';"
                 "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'e');");
    ck_assert_str_eq(rows_of("ann", 3), "4 2 " U1 " {\"email\":null,\"id\":\"" U1 "\",\"name\":\"e\"}");
    ck_assert_str_eq(row_state_of("ann"), "4 " U1 " 3 live");
    for (int seq = 1; seq <= 3; seq++)
        assert_hash_matches("ann", seq);
}
END_TEST

START_TEST(test_update_then_delete_is_delete)
{
    server_write("ann", "backend",
                 "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'a');"
                 "INSERT INTO business.posts (id, title, author_id) VALUES ('" P1 "', 't', '" U1 "');");
    server_write("ann", "backend",
                 "UPDATE business.users SET name = 'b' WHERE id = '" U1 "';"
                 "DELETE FROM business.users WHERE id = '" U1 "';");
    /* the cascade to posts is captured too, after the user's delete */
    ck_assert_str_eq(rows_of("ann", 2), "4 3 " U1 " NULL\n3 3 " P1 " NULL");
    ck_assert_str_eq(row_state_of("ann"), "3 " P1 " 2 deleted\n4 " U1 " 2 deleted");
    assert_hash_matches("ann", 2);

    /* and a row deleted, then inserted again: live again */
    server_write("ann", "backend", "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'again')");
    ck_assert_str_eq(row_state_of("ann"), "3 " P1 " 2 deleted\n4 " U1 " 3 live");
}
END_TEST

START_TEST(test_rows_in_order_of_first_capture)
{
    server_write("ann", "backend",
                 "INSERT INTO business.notes (slug, body) VALUES ('b', '1');"
                 "INSERT INTO business.users (id, name) VALUES ('" U1 "', 'u');"
                 "INSERT INTO business.notes (slug, body) VALUES ('a', '2');"
                 "UPDATE business.notes SET body = '3' WHERE slug = 'b';"
                 "INSERT INTO business.files (id, name) VALUES ('" F1 "', 'f');");
    ck_assert_str_eq(rows_of("ann", 1),
                     "2 1 b {\"at\":null,\"big\":null,\"body\":\"3\",\"f\":null,\"flag\":null,\"meta\":null,\"n\":null,"
                     "\"slug\":\"b\"}\n"
                     "4 1 " U1 " {\"email\":null,\"id\":\"" U1 "\",\"name\":\"u\"}\n"
                     "2 1 a {\"at\":null,\"big\":null,\"body\":\"2\",\"f\":null,\"flag\":null,\"meta\":null,\"n\":null,"
                     "\"slug\":\"a\"}\n"
                     "1 1 " F1 " {\"Raw\":null,\"data\":null,\"id\":\"" F1 "\",\"name\":\"f\",\"thumb\":null}");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_rows WHERE row_ordinal BETWEEN 1 AND 4"), 4);
    assert_hash_matches("ann", 1);
}
END_TEST

/* ------------------------------------------------------------------- sequences, hashes */

START_TEST(test_bundle_seq_dense_per_user)
{
    for (int i = 0; i < 3; i++) {
        server_write("ann", "backend", tdb_printf(&T, "INSERT INTO business.notes (slug) VALUES ('a%d')", i));
        if (i < 2)
            server_write("bob", "backend", tdb_printf(&T, "INSERT INTO business.notes (slug) VALUES ('b%d')", i));
    }
    /* a bundle rolled back uses no number */
    open_bundle("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('rolled back')");
    tdb_query(&T, "SELECT bundle_seq FROM sync.commit_server_bundle()");
    tdb_exec(&T, "ROLLBACK");
    server_write("ann", "other", "INSERT INTO business.notes (slug) VALUES ('a3')");
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1\n2 backend 2 1\n3 backend 3 1\n4 other 1 1");
    ck_assert_str_eq(log_of("bob"), "1 backend 1 1\n2 backend 2 1");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT next_bundle_seq FROM sync.user_state WHERE user_id = 'ann'"), 5);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(format('%%s %%s %%s', u.user_id, s.source_id,"
                                   "  s.max_committed_source_bundle_id), ',' ORDER BY u.user_id, s.source_id)"
                                   "  FROM sync.source_state s JOIN sync.user_state u USING (user_pk)"
                                   " WHERE s.state = 'active'"),
                     "ann backend 3,ann other 1,bob backend 2");
}
END_TEST

/* SPEC-v2 §4.7: one row business/users, INSERT, row_version 143. */
START_TEST(test_spec_vector)
{
    open_bundle("vector-user", "backend",
                "UPDATE sync.user_state SET next_bundle_seq = 143 WHERE user_id = 'vector-user';"
                "INSERT INTO business.users (id, name, email) VALUES"
                " ('550e8400-e29b-41d4-a716-446655440000', 'John Doe', 'john@example.com')");
    ck_assert_str_eq(close_bundle(),
                     "143 backend 1 1 240 0ab2b08d01bb7da478119a608463e98fe6ce37ee7cdf4b63d1dc4d5894c81f28");
    assert_hash_matches("vector-user", 143);
}
END_TEST

START_TEST(test_bytea_as_base64)
{
    server_write("ann", "backend",
                 "INSERT INTO business.files (id, name, data, thumb, \"Raw\") VALUES"
                 " ('" U1 "', 'hello', '\\x0001ff', '\\x00', '\\x68656c6c6f'),"
                 " ('" U2 "', 'long', decode(repeat('00ff', 60), 'hex'), NULL, ''),"
                 " ('" U3 "', 'none', NULL, NULL, NULL)");
    /* base64 of 120 bytes is 160 characters: PostgreSQL's encode() wraps at 76, the wire does not */
    ck_assert_str_eq(rows_of("ann", 1),
                     tdb_printf(&T,
                                "1 1 " U1 " {\"Raw\":\"aGVsbG8=\",\"data\":\"AAH/\",\"id\":\"" U1 "\",\"name\":\"hello\","
                                "\"thumb\":\"AA==\"}\n"
                                "1 1 " U2 " {\"Raw\":\"\",\"data\":\"%s\",\"id\":\"" U2 "\",\"name\":\"long\","
                                "\"thumb\":null}\n"
                                "1 1 " U3 " {\"Raw\":null,\"data\":null,\"id\":\"" U3 "\",\"name\":\"none\","
                                "\"thumb\":null}",
                                tdb_query(&T, "SELECT translate(encode(decode(repeat('00ff', 60), 'hex'), 'base64'),"
                                              " E'\\n', '')")));
    assert_hash_matches("ann", 1);
    /* a text column holding "\x..." stays text */
    server_write("ann", "backend", "UPDATE business.files SET name = '\\x0001' WHERE id = '" U3 "'");
    ck_assert_str_eq(rows_of("ann", 2), "1 2 " U3 " {\"Raw\":null,\"data\":null,\"id\":\"" U3 "\","
                                        "\"name\":\"\\\\x0001\",\"thumb\":null}");
}
END_TEST

/* The wire payloads are Go's canonical text: the same as oversyncd.canonical_json of the rows
 * (0002_canonical.sql, checked against Go's vectors) for every kind of value, and the hashes are
 * those of the C implementation. */
START_TEST(test_payloads_are_canonical)
{
    open_bundle("ann", "backend",
                "SELECT setseed(0.42);"
                "INSERT INTO business.notes (slug, body, n, f, big, flag, meta, at)"
                " SELECT 'r' || g,"
                "        CASE g % 4 WHEN 0 THEN 'plain' WHEN 1 THEN chr(1 + g % 126) || '<&>' || chr(8232) || chr(8233)"
                "             WHEN 2 THEN E'tab\\there \"quoted\" back\\\\slash é 中 😀' ELSE repeat(chr(32 + g % 90), g % 7) END,"
                "        CASE g % 5 WHEN 0 THEN round((random() * 10 ^ (g % 30 - 12))::numeric, g % 20)"
                "             WHEN 1 THEN (random() * 1e25)::numeric WHEN 2 THEN -(g::numeric / 7)"
                "             WHEN 3 THEN 1e21 ELSE 0.000001 * g END,"
                "        CASE g % 3 WHEN 0 THEN random() * 10 ^ (g % 40 - 20) WHEN 1 THEN g / 3.0 ELSE -0.1 * g END,"
                "        CASE g % 2 WHEN 0 THEN (random() * 9.2e18)::bigint ELSE g END,"
                "        g % 2 = 0,"
                "        jsonb_build_object('z', g, 'a', jsonb_build_array(1.50, 'x<', NULL, true, 1e-7 * g),"
                "                           'm', jsonb_build_object('b', 2, 'B', 3, '', 0.1)),"
                "        '2026-03-22T12:00:00.5Z'::timestamptz + g * interval '1.25 second'"
                "   FROM generate_series(1, 300) g");
    close_bundle();
    ck_assert_int_eq(tdb_query_ll(&T,
        "SELECT count(*) FROM sync.bundle_rows r JOIN business.notes x ON convert_to(x.slug, 'UTF8') = r.key_bytes"
        " WHERE r.payload_wire::text = oversyncd.canonical_json(to_jsonb(x) - '_sync_scope_id')"), 300);
    assert_hash_matches("ann", 1);
}
END_TEST

/* ---------------------------------------------------------------------------- NOTIFY */

static char *wait_notification(PGconn *l, int timeout_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ck_assert_int_eq(PQconsumeInput(l), 1);
        PGnotify *n = PQnotifies(l);
        if (n) {
            ck_assert_str_eq(n->relname, NOTIFY_CHANNEL);
            char *payload = tdb_printf(&T, "%s", n->extra);
            PQfreemem(n);
            return payload;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int left = timeout_ms - (int)((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            return NULL;
        struct pollfd p = { .fd = PQsocket(l), .events = POLLIN };
        poll(&p, 1, left);
    }
}

START_TEST(test_notify_on_commit_only)
{
    PGconn *l = tdb_connect(T.dbname);
    tdb_conn_exec(l, "LISTEN " NOTIFY_CHANNEL);

    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('x')");
    long long pk = user_pk("ann");
    char *got = wait_notification(l, 5000);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, tdb_printf(&T, "{\"user_pk\":%lld,\"bundle_seq\":1,\"source_id\":\"backend\","
                                         "\"source_bundle_id\":1}", pk));

    /* Go's json.Marshal of the source id: HTML characters escaped */
    tdb_exec(&T, "BEGIN; SELECT sync.begin_server_bundle('ann', 'dev<&>\"1\"', 1);"
                 "INSERT INTO business.notes (slug) VALUES ('y')");
    close_bundle();
    got = wait_notification(l, 5000);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, tdb_printf(&T, "{\"user_pk\":%lld,\"bundle_seq\":2,\"source_id\":\"dev\\u003c\\u0026\\u003e"
                                         "\\\"1\\\"\",\"source_bundle_id\":1}", pk));

    /* rolled back: nothing delivered */
    open_bundle("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('z')");
    tdb_query(&T, "SELECT bundle_seq FROM sync.commit_server_bundle()");
    tdb_exec(&T, "ROLLBACK");
    ck_assert_ptr_null(wait_notification(l, 300));

    /* finalize_bundle: no channel, no notification; empty source fields are left out */
    tdb_exec(&T, "BEGIN; SELECT set_config('oversync.bundle_user_id', 'ann', true),"
                 " set_config('oversync.bundle_user_pk', '%lld', true);"
                 "INSERT INTO business.notes (slug) VALUES ('n1');"
                 "SELECT * FROM oversyncd.finalize_bundle(%lld, 'push-src', 1, NULL);"
                 "INSERT INTO business.notes (slug) VALUES ('n2');"
                 "SELECT * FROM oversyncd.finalize_bundle(%lld, '', 0, '" NOTIFY_CHANNEL "');"
                 "COMMIT",
                 pk, pk, pk);
    got = wait_notification(l, 5000);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, tdb_printf(&T, "{\"user_pk\":%lld,\"bundle_seq\":4}", pk));
    ck_assert_ptr_null(wait_notification(l, 300));
    PQfinish(l);
}
END_TEST

/* ------------------------------------------------------------------ finalize_bundle alone */

START_TEST(test_finalize_bundle_contract)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('seed')");
    long long pk = user_pk("ann");
    const char *ctx = tdb_printf(&T, "BEGIN; SELECT set_config('oversync.bundle_user_id', 'ann', true),"
                                     " set_config('oversync.bundle_user_pk', '%lld', true);", pk);

    /* nothing staged: no row, no bundle_seq used */
    tdb_exec(&T, "%s", ctx);
    ck_assert_str_eq(tdb_query(&T, "SELECT count(*) FROM oversyncd.finalize_bundle(%lld, 'push', 1, NULL)", pk), "0");
    /* all staged effects cancel out: no row either, and the stage is cleared */
    tdb_exec(&T, "INSERT INTO business.notes (slug) VALUES ('tmp'); DELETE FROM business.notes WHERE slug = 'tmp'");
    ck_assert_str_eq(tdb_query(&T, "SELECT count(*) FROM oversyncd.finalize_bundle(%lld, 'push', 1, NULL)", pk), "0");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage"), 0);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT next_bundle_seq FROM sync.user_state WHERE user_pk = %lld", pk), 2);

    /* a bundle: one row back; the source is not activated by finalize_bundle */
    tdb_exec(&T, "INSERT INTO business.notes (slug, body) VALUES ('p', 'q')");
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s %%s %%s', bundle_seq, row_count, byte_count,"
                                   " length(bundle_hash)) FROM oversyncd.finalize_bundle(%lld, 'push', 7, NULL)",
                               pk),
                     "2 1 201 64");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.source_state WHERE source_id = 'push'"), 0);
    tdb_exec(&T, "SELECT oversyncd.activate_source(%lld, 'push', 7); COMMIT", pk);
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1\n2 push 7 1");
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s', state, max_committed_source_bundle_id)"
                                   "  FROM sync.source_state WHERE source_id = 'push'"),
                     "active 7");
    assert_hash_matches("ann", 2);

    /* two users staged in one transaction: each finalization takes its user's rows only */
    server_write("bob", "backend", "INSERT INTO business.notes (slug) VALUES ('seed')");
    long long bob = user_pk("bob");
    tdb_exec(&T, "%s INSERT INTO business.notes (slug) VALUES ('ann-1');"
                 "SELECT set_config('oversync.bundle_user_id', 'bob', true),"
                 " set_config('oversync.bundle_user_pk', '%lld', true);"
                 "INSERT INTO business.notes (slug) VALUES ('bob-1'), ('bob-2')", ctx, bob);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s', bundle_seq, row_count)"
                                   "  FROM oversyncd.finalize_bundle(%lld, 'push', 8, NULL)", pk), "3 1");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage WHERE user_pk = %lld", bob), 2);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s', bundle_seq, row_count)"
                                   "  FROM oversyncd.finalize_bundle(%lld, 'push', 1, NULL)", bob), "2 2");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage"), 0);
    tdb_exec(&T, "COMMIT");
    ck_assert_str_eq(rows_of("ann", 3), "2 1 ann-1 {\"at\":null,\"big\":null,\"body\":null,\"f\":null,"
                                        "\"flag\":null,\"meta\":null,\"n\":null,\"slug\":\"ann-1\"}");
    ck_assert_str_eq(log_of("bob"), "1 backend 1 1\n2 push 1 2");
}
END_TEST

START_TEST(test_row_state_upsert)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a'), ('b')");
    server_write("ann", "backend", "UPDATE business.notes SET body = 'x' WHERE slug = 'a'");
    ck_assert_str_eq(row_state_of("ann"), "2 a 2 live\n2 b 1 live");
    server_write("ann", "backend", "DELETE FROM business.notes WHERE slug = 'b'");
    ck_assert_str_eq(row_state_of("ann"), "2 a 2 live\n2 b 3 deleted");
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('b')");
    ck_assert_str_eq(row_state_of("ann"), "2 a 2 live\n2 b 4 live");
    /* another user's rows of the same keys are theirs */
    server_write("bob", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    ck_assert_str_eq(row_state_of("bob"), "2 a 1 live");
    ck_assert_str_eq(row_state_of("ann"), "2 a 2 live\n2 b 4 live");
}
END_TEST

/* ---------------------------------------------------------------- source and retention */

START_TEST(test_activate_source)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    long long pk = user_pk("ann");
    tdb_exec(&T, "INSERT INTO sync.source_state (user_pk, source_id, state, replaced_by_source_id, retirement_reason)"
                 " VALUES (%lld, 'fresh', 'reserved', '', ''), (%lld, 'old', 'retired', 'fresh', 'history_pruned')",
             pk, pk);
    tdb_exec(&T, "SELECT oversyncd.activate_source(%lld, 'new', 4)", pk);
    tdb_exec(&T, "SELECT oversyncd.activate_source(%lld, 'fresh', 1)", pk);
    tdb_exec(&T, "SELECT oversyncd.activate_source(%lld, 'backend', 9)", pk);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(format('%%s %%s %%s %%s %%s', source_id, state,"
                                   "  max_committed_source_bundle_id, replaced_by_source_id = '', retirement_reason = ''),"
                                   "  ',' ORDER BY source_id) FROM sync.source_state"),
                     "backend active 9 t t,fresh active 1 t t,new active 4 t t,old retired 0 f f");
    fails(tdb_printf(&T, "SELECT oversyncd.activate_source(%lld, 'old', 1)", pk), "OV004",
          "source old for user ann was retired and replaced by fresh");
}
END_TEST

START_TEST(test_retention)
{
    for (int i = 1; i <= 12; i++)
        server_write("ann", "backend", tdb_printf(&T, "INSERT INTO business.notes (slug) VALUES ('n%d')", i));
    long long pk = user_pk("ann");
    const char *floor_and_log =
        "SELECT format('%%s %%s %%s', u.retained_bundle_floor, (SELECT min(bundle_seq) FROM sync.bundle_log l"
        "  WHERE l.user_pk = u.user_pk), (SELECT count(*) FROM sync.bundle_rows r WHERE r.user_pk = u.user_pk))"
        "  FROM sync.user_state u WHERE u.user_id = 'ann'";
    ck_assert_str_eq(tdb_query(&T, floor_and_log, 0), "0 1 12");
    /* keep 5: target 7, at most 3 a call */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT oversyncd.apply_retention(%lld, 5, 3)", pk), 3);
    ck_assert_str_eq(tdb_query(&T, floor_and_log, 0), "3 4 9");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT oversyncd.apply_retention(%lld, 5, 3)", pk), 6);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT oversyncd.apply_retention(%lld, 5, 3)", pk), 7);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT oversyncd.apply_retention(%lld, 5, 3)", pk), 7);
    ck_assert_str_eq(tdb_query(&T, floor_and_log, 0), "7 8 5");
    /* disabled, and no batch limit */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT oversyncd.apply_retention(%lld, 0, 3)", pk), 7);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT oversyncd.apply_retention(%lld, 1, 0)", pk), 11);
    ck_assert_str_eq(tdb_query(&T, floor_and_log, 0), "11 12 1");
    ck_assert_str_eq(tdb_query(&T, "SELECT oversyncd.apply_retention(-1, 1, 0)"), "<null>");

    /* commit_server_bundle keeps 10000 bundles and prunes at most 1000 at a time */
    tdb_exec(&T, "UPDATE sync.user_state SET next_bundle_seq = 10050 WHERE user_id = 'ann'");
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('m1')");
    ck_assert_str_eq(tdb_query(&T, floor_and_log, 0), "50 10050 1");
    tdb_exec(&T, "UPDATE sync.user_state SET next_bundle_seq = 20000 WHERE user_id = 'ann'");
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('m2')");
    ck_assert_str_eq(tdb_query(&T, floor_and_log, 0), "1050 10050 2");
}
END_TEST

/* ------------------------------------------------------------- begin_server_bundle paths */

START_TEST(test_exec_write_initializes_and_numbers)
{
    ck_assert_str_eq(tdb_query(&T, "SELECT count(*) FROM sync.user_state"), "0");
    open_bundle("  ann  ", " backend ", "INSERT INTO business.notes (slug) VALUES ('a')");
    /* ids trimmed; the scope initialized by the writer; the context set */
    ck_assert_str_eq(tdb_query(&T, "SELECT concat_ws(' ', current_setting('oversync.bundle_user_id'),"
                                   " current_setting('oversync.bundle_user_pk') = (SELECT user_pk::text FROM"
                                   "   sync.user_state WHERE user_id = 'ann'),"
                                   " current_setting('oversync.bundle_source_id'),"
                                   " current_setting('oversync.bundle_source_bundle_id'),"
                                   " '[' || current_setting('oversync.bundle_initialization_id') || ']')"),
                     "ann t backend 1 []");
    close_bundle();
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s %%s', state_code, initialized_by_source_id,"
                                   " initialized_at IS NOT NULL) FROM sync.scope_state"),
                     "2 backend t");
    /* outside a transaction block the bundle would end with the statement: refused */
    fails("SELECT sync.begin_server_bundle('ann', 'backend')", "OV011",
          "server bundle for user ann via backend was begun but not committed: call "
          "sync.commit_server_bundle() before COMMIT, or roll back");
    /* commit_server_bundle clears the context: a write after it needs a new bundle */
    tdb_exec(&T, "BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
                 "INSERT INTO business.notes (slug) VALUES ('late')");
    tdb_query(&T, "SELECT bundle_seq FROM sync.commit_server_bundle()");
    ck_assert_str_eq(tdb_query(&T, "SELECT concat_ws(',', current_setting('oversync.bundle_user_id'),"
                                   " current_setting('oversync.bundle_user_pk'), current_setting('oversync.bundle_source_id'),"
                                   " current_setting('oversync.bundle_source_bundle_id'),"
                                   " current_setting('oversync.bundle_initialization_id'))"),
                     ",,,,");
    conn_fails(T.conn, "INSERT INTO business.notes (slug) VALUES ('later')", "P0001",
               "write to registered table business.notes requires oversync sync bundle context");
    /* two bundles in one transaction */
    open_bundle("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('b')");
    tdb_query(&T, "SELECT bundle_seq FROM sync.commit_server_bundle()");
    tdb_exec(&T, "SELECT sync.begin_server_bundle('ann', 'backend'); INSERT INTO business.notes (slug) VALUES ('c')");
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s', bundle_seq, source_bundle_id)"
                                   "  FROM sync.commit_server_bundle()"), "3 3");
    tdb_exec(&T, "COMMIT");
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1\n2 backend 2 1\n3 backend 3 1");
    /* an expired initialization lease ends: the writer initializes the scope */
    tdb_exec(&T, "INSERT INTO sync.user_state (user_id) VALUES ('cy');"
                 "INSERT INTO sync.scope_state (user_pk, state_code, initializer_source_id, initialization_id,"
                 "  lease_expires_at) SELECT user_pk, 1, 'phone', gen_random_uuid(), now() - interval '1 second'"
                 "  FROM sync.user_state WHERE user_id = 'cy'");
    server_write("cy", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s %%s', s.state_code, s.initialized_by_source_id,"
                                   " s.initialization_id IS NULL) FROM sync.scope_state s JOIN sync.user_state u"
                                   " USING (user_pk) WHERE u.user_id = 'cy'"),
                     "2 backend t");
}
END_TEST

START_TEST(test_within_sync_bundle_tuple)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    tdb_exec(&T, "BEGIN; SELECT sync.begin_server_bundle('ann', 'device-1', 1);"
                 "INSERT INTO business.notes (slug) VALUES ('b')");
    ck_assert_str_eq(close_bundle(), tdb_printf(&T, "2 device-1 1 1 %s", tdb_query(&T,
        "SELECT format('%%s %%s', byte_count, encode(bundle_hash, 'hex')) FROM sync.bundle_log WHERE bundle_seq = 2")));
    tdb_exec(&T, "BEGIN; SELECT sync.begin_server_bundle('ann', 'device-1', 2);"
                 "UPDATE business.notes SET body = 'x' WHERE slug = 'b'");
    close_bundle();
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1\n2 device-1 1 1\n3 device-1 2 1");
    ck_assert_str_eq(rows_of("ann", 3), "2 2 b {\"at\":null,\"big\":null,\"body\":\"x\",\"f\":null,\"flag\":null,"
                                        "\"meta\":null,\"n\":null,\"slug\":\"b\"}");
}
END_TEST

START_TEST(test_begin_errors)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    long long pk = user_pk("ann");

    fails("BEGIN; SELECT sync.begin_server_bundle('', 'w')", "OV001", "scope_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle(' ', 'w')", "OV001", "scope_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle(NULL, 'w')", "OV001", "scope_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', ' ')", "OV001", "writer_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', NULL)", "OV001", "writer_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle('', 's', 1)", "OV001", "actor user_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', '  ', 1)", "OV001", "bundle source_id is required");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 's', 0)", "OV001", "bundle source_bundle_id must be > 0");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 's', NULL)", "OV001", "bundle source_bundle_id must be > 0");

    /* the tuple form does not initialize a scope */
    fails("BEGIN; SELECT sync.begin_server_bundle('newbie', 's', 1)", "OV002",
          "sync scope for user newbie is not initialized");
    /* an initializing scope refuses both forms */
    tdb_exec(&T, "INSERT INTO sync.user_state (user_id) VALUES ('init');"
                 "INSERT INTO sync.scope_state (user_pk, state_code, initializer_source_id, initialization_id,"
                 "  lease_expires_at) SELECT user_pk, 1, 'phone', gen_random_uuid(), '2099-01-02T03:04:05.5Z'"
                 "  FROM sync.user_state WHERE user_id = 'init'");
    fails("BEGIN; SELECT sync.begin_server_bundle('init', 'w')", "OV003",
          "sync scope for user init is initializing until 2099-01-02T03:04:05.5Z");
    fails("BEGIN; SELECT sync.begin_server_bundle('init', 's', 1)", "OV003",
          "sync scope for user init is initializing until 2099-01-02T03:04:05.5Z");
    /* a retired source */
    tdb_exec(&T, "INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id,"
                 " replaced_by_source_id, retirement_reason) VALUES (%lld, 'old', 'retired', 4, 'new', 'history_pruned')",
             pk);
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'old')", "OV004",
          "source old for user ann was retired and replaced by new");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'old', 5)", "OV004",
          "source old for user ann was retired and replaced by new");
    /* the tuple must be the source's next one */
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend', 1)", "OV005",
          "source tuple (backend, 1) for user ann is older than retained duplicate history; max committed "
          "source_bundle_id is 1");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend', 3)", "OV006",
          "source backend for user ann expected next source_bundle_id 2, got 3");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'unknown', 2)", "OV006",
          "source unknown for user ann expected next source_bundle_id 1, got 2");
    /* a bundle context set before, differently */
    fails("BEGIN; SELECT set_config('oversync.bundle_user_id', 'bob', true);"
          "SELECT sync.begin_server_bundle('ann', 'backend')",
          "OV007", "transaction already carries conflicting sync bundle context for oversync.bundle_user_id");
    fails("BEGIN; SELECT set_config('oversync.bundle_initialization_id', 'x', true);"
          "SELECT sync.begin_server_bundle('ann', 'backend')",
          "OV007", "transaction already carries conflicting sync bundle context for oversync.bundle_initialization_id");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend'); SELECT sync.begin_server_bundle('bob', 'backend')",
          "OV007", "transaction already carries conflicting sync bundle context for oversync.bundle_user_id");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend'); SELECT sync.begin_server_bundle('ann', 'other')",
          "OV007", "transaction already carries conflicting sync bundle context for oversync.bundle_source_id");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend'); SELECT sync.begin_server_bundle('ann', 'backend')",
          "OV007", "a server bundle for user ann is already open in this transaction "
                   "(sync.commit_server_bundle() ends it)");
    /* the same values set before are fine (the library's rule) */
    tdb_exec(&T, "BEGIN; SELECT set_config('oversync.bundle_user_id', 'ann', true);"
                 "SELECT sync.begin_server_bundle('ann', 'backend'); INSERT INTO business.notes (slug) VALUES ('b')");
    close_bundle();
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1\n2 backend 2 1");
}
END_TEST

START_TEST(test_commit_errors)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    fails("SELECT * FROM sync.commit_server_bundle()", "OV008",
          "no server bundle in progress in this transaction: call sync.begin_server_bundle() first");
    fails("BEGIN; SELECT * FROM sync.commit_server_bundle()", "OV008",
          "no server bundle in progress in this transaction: call sync.begin_server_bundle() first");
    /* the context set by hand is not a server bundle */
    fails(tdb_printf(&T, "BEGIN; SELECT set_config('oversync.bundle_user_id', 'ann', true),"
                         " set_config('oversync.bundle_user_pk', '%lld', true);"
                         "INSERT INTO business.notes (slug) VALUES ('b');"
                         "SELECT * FROM sync.commit_server_bundle()", user_pk("ann")),
          "OV008", "no server bundle in progress in this transaction: call sync.begin_server_bundle() first");
    /* a server bundle whose context was changed in between */
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
          "INSERT INTO business.notes (slug) VALUES ('b');"
          "SELECT set_config('oversync.bundle_source_bundle_id', '9', true);"
          "SELECT * FROM sync.commit_server_bundle()",
          "OV008", "the sync bundle context of this transaction was changed after sync.begin_server_bundle() for user ann");
    /* committed twice */
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
          "INSERT INTO business.notes (slug) VALUES ('b');"
          "SELECT * FROM sync.commit_server_bundle();"
          "SELECT * FROM sync.commit_server_bundle()",
          "OV008", "no server bundle in progress in this transaction: call sync.begin_server_bundle() first");
    /* nothing captured: nothing written, nothing initialized */
    fails("BEGIN; SELECT sync.begin_server_bundle('zed', 'backend');"
          "SELECT * FROM sync.commit_server_bundle()",
          "OV009", "scope write for zed via backend produced no visible registered-table effects");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
          "UPDATE business.notes SET body = 'x' WHERE slug = 'none';"
          "SELECT * FROM sync.commit_server_bundle()",
          "OV009", "scope write for ann via backend produced no visible registered-table effects");
    /* COMMIT without commit_server_bundle fails and rolls back */
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
          "INSERT INTO business.notes (slug) VALUES ('lost');"
          "COMMIT",
          "OV011", "server bundle for user ann via backend was begun but not committed: call "
                   "sync.commit_server_bundle() before COMMIT, or roll back");
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_IDLE);
    /* a write without a bundle is refused by the owner guard */
    fails("INSERT INTO business.notes (slug) VALUES ('c')", "P0001",
          "write to registered table business.notes requires oversync sync bundle context");
    /* another user's rows cannot be written in a server bundle */
    server_write("bob", "backend", "INSERT INTO business.notes (slug) VALUES ('bobs')");
    fails("BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
          "UPDATE business.notes SET body = 'x' WHERE slug = 'bobs' AND _sync_scope_id = 'bob'",
          "P0001", "scope mismatch on registered table business.notes: actor ann cannot update owner bob");
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1");
}
END_TEST

/* --------------------------------------------------------------------------- concurrency */

#define RACERS 4
#define ROUNDS 15

/* A child: ROUNDS server bundles for user "racer", each inserting one note; 0 on success. */
static int racer(int i)
{
    PGconn *c = tdb_connect_raw(T.dbname);
    if (PQstatus(c) != CONNECTION_OK)
        return 10;
    for (int k = 0; k < ROUNDS; k++) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "BEGIN; SELECT sync.begin_server_bundle('racer', 'writer-%d');"
                 "INSERT INTO business.notes (slug, body) VALUES ('r%d-%d', 'x');"
                 "UPDATE business.notes SET body = 'y' WHERE slug = 'shared' AND _sync_scope_id = 'racer';"
                 "SELECT * FROM sync.commit_server_bundle(); COMMIT",
                 i % 2, i, k);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "racer %d round %d: %s", i, k, PQresultErrorMessage(r));
            PQclear(r);
            PQfinish(c);
            return 11;
        }
        PQclear(r);
    }
    PQfinish(c);
    return 0;
}

START_TEST(test_concurrent_server_bundles)
{
    server_write("racer", "writer-0", "INSERT INTO business.notes (slug) VALUES ('shared')");
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0)
            _exit(racer(i));
    }
    for (int i = 0; i < RACERS; i++) {
        int st = 0;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "racer %d failed (status %d)", i, st);
    }
    const int n = 1 + RACERS * ROUNDS;
    /* dense bundle_seq, every bundle there with its two rows, dense source_bundle_id per writer */
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s %%s', count(*), min(bundle_seq), max(bundle_seq))"
                                   "  FROM sync.bundle_log"),
                     tdb_printf(&T, "%d 1 %d", n, n));
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_log WHERE row_count = 2"), n - 1);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_rows"), 1 + 2 * (n - 1));
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(format('%%s %%s %%s %%s', source_id, n, lo, hi), ','"
                                   "  ORDER BY source_id) FROM (SELECT source_id, count(*) AS n, min(source_bundle_id) AS lo,"
                                   "  max(source_bundle_id) AS hi FROM sync.bundle_log GROUP BY source_id) l"),
                     tdb_printf(&T, "writer-0 %d 1 %d,writer-1 %d 1 %d", 1 + RACERS / 2 * ROUNDS,
                                1 + RACERS / 2 * ROUNDS, RACERS / 2 * ROUNDS, RACERS / 2 * ROUNDS));
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(format('%%s %%s', source_id, max_committed_source_bundle_id),"
                                   " ',' ORDER BY source_id) FROM sync.source_state"),
                     tdb_printf(&T, "writer-0 %d,writer-1 %d", 1 + RACERS / 2 * ROUNDS, RACERS / 2 * ROUNDS));
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_state"), n);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT bundle_seq FROM sync.row_state WHERE key_bytes = 'shared'::bytea"), n);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage"), 0);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM oversyncd.server_bundle_open"), 0);
    for (int seq = 1; seq <= n; seq += 13)
        assert_hash_matches("racer", seq);
}
END_TEST

/* The user lock is the library's: held by another session (pg_advisory_lock, as the library's
 * writers hold it) or by another server bundle, begin_server_bundle waits for it. */
START_TEST(test_user_lock)
{
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    PGconn *other = tdb_connect(T.dbname);
    tdb_conn_exec(other, "SELECT pg_advisory_lock(hashtextextended('ann', 0))");
    conn_fails(T.conn, "BEGIN; SET LOCAL lock_timeout = '200ms'; SELECT sync.begin_server_bundle('ann', 'backend')",
               "55P03", "canceling statement due to lock timeout");
    tdb_conn_exec(other, "SELECT pg_advisory_unlock(hashtextextended('ann', 0))");

    tdb_conn_exec(other, "BEGIN; SELECT sync.begin_server_bundle('ann', 'backend');"
                         "INSERT INTO business.notes (slug) VALUES ('b')");
    conn_fails(T.conn, "BEGIN; SET LOCAL lock_timeout = '200ms'; SELECT sync.begin_server_bundle('ann', 'other')",
               "55P03", "canceling statement due to lock timeout");
    /* another user is not held up */
    server_write("bob", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    tdb_conn_exec(other, "SELECT * FROM sync.commit_server_bundle(); COMMIT");
    server_write("ann", "other", "INSERT INTO business.notes (slug) VALUES ('c')");
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1\n2 backend 2 1\n3 other 1 1");
    PQfinish(other);
}
END_TEST

/* ------------------------------------------------------------------------------ bootstrap */

START_TEST(test_functions_installed_on_adoption)
{
    /* a layout without them (as the library creates it) gets them when oversyncd adopts it */
    tdb_exec(&T, "DROP FUNCTION sync.begin_server_bundle(text, text);"
                 "DROP FUNCTION sync.begin_server_bundle(text, text, bigint);"
                 "DROP FUNCTION sync.commit_server_bundle();"
                 "DROP SCHEMA oversyncd CASCADE");
    boot();
    boot();
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid),"
                                   " E'\\n' ORDER BY p.oid::regprocedure::text) FROM pg_proc p"
                                   " WHERE p.pronamespace = 'sync'::regnamespace AND p.proname LIKE '%%server_bundle'"),
                     "sync.begin_server_bundle(text,text) bigint\n"
                     "sync.begin_server_bundle(text,text,bigint) bigint\n"
                     "sync.commit_server_bundle() TABLE(bundle_seq bigint, source_id text, source_bundle_id bigint, "
                     "row_count bigint, byte_count bigint, bundle_hash text)");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid),"
                                   " E'\\n' ORDER BY p.oid::regprocedure::text) FROM pg_proc p"
                                   " WHERE p.pronamespace = 'oversyncd'::regnamespace"
                                   "   AND p.proname IN ('finalize_bundle', 'activate_source', 'apply_retention')"),
                     "oversyncd.activate_source(bigint,text,bigint) void\n"
                     "oversyncd.apply_retention(bigint,bigint,bigint) bigint\n"
                     "oversyncd.finalize_bundle(bigint,text,bigint,text) TABLE(bundle_seq bigint, row_count bigint, "
                     "byte_count bigint, bundle_hash text)");
    server_write("ann", "backend", "INSERT INTO business.notes (slug) VALUES ('a')");
    ck_assert_str_eq(log_of("ann"), "1 backend 1 1");
}
END_TEST

static Suite *finalize_suite(void)
{
    Suite *s = suite_create("bundle_finalize");
    TCase *fold = tcase("fold", TDB_NO_DB);
    tcase_add_checked_fixture(fold, setup, teardown);
    tcase_add_test(fold, test_insert_then_delete_vanishes);
    tcase_add_test(fold, test_key_change_is_delete_plus_insert);
    tcase_add_test(fold, test_insert_then_update_is_insert_with_last_payload);
    tcase_add_test(fold, test_update_then_delete_is_delete);
    tcase_add_test(fold, test_rows_in_order_of_first_capture);
    suite_add_tcase(s, fold);

    TCase *bundles = tcase("bundles", TDB_NO_DB);
    tcase_add_checked_fixture(bundles, setup, teardown);
    tcase_add_test(bundles, test_bundle_seq_dense_per_user);
    tcase_add_test(bundles, test_spec_vector);
    tcase_add_test(bundles, test_bytea_as_base64);
    tcase_add_test(bundles, test_payloads_are_canonical);
    tcase_add_test(bundles, test_notify_on_commit_only);
    tcase_add_test(bundles, test_finalize_bundle_contract);
    tcase_add_test(bundles, test_row_state_upsert);
    tcase_add_test(bundles, test_activate_source);
    tcase_add_test(bundles, test_retention);
    suite_add_tcase(s, bundles);

    TCase *writes = tcase("server_writes", TDB_NO_DB);
    tcase_add_checked_fixture(writes, setup, teardown);
    tcase_add_test(writes, test_exec_write_initializes_and_numbers);
    tcase_add_test(writes, test_within_sync_bundle_tuple);
    tcase_add_test(writes, test_begin_errors);
    tcase_add_test(writes, test_commit_errors);
    tcase_add_test(writes, test_concurrent_server_bundles);
    tcase_add_test(writes, test_user_lock);
    tcase_add_test(writes, test_functions_installed_on_adoption);
    suite_add_tcase(s, writes);
    return s;
}

int main(void)
{
    return run_suites(finalize_suite(), NULL);
}
