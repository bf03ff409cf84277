/* The bundle protocol's read side against a real PostgreSQL: GET /sync/pull (SPEC-v2 §3.7, the
 * retention floor of §4.8) and the snapshot sessions (§3.9–3.11, source replacement §4.2,
 * materialization §4.9): every error with its status, code and message and nothing written;
 * paging with a target, complete bundles, other users invisible, frozen snapshots, text keys,
 * bytea and typed values; and a puller paging while other connections commit.
 *
 * Committed bundles come from pulltest.begin/pulltest.commit below: a test-only finalization in
 * SQL (bundle context for the triggers, the captured rows turned into bundle_log, bundle_rows
 * with canonical payloads and oversyncd.bundle_hash, row_state and source_state), enough for
 * rows written once per bundle. */
#include "bundletest.h"
#include "../run_suites.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char FIXTURE_SQL[] =
    "CREATE SCHEMA pulltest;"
    "CREATE FUNCTION pulltest.begin(u text) RETURNS bigint LANGUAGE plpgsql AS $$ "
    "DECLARE pk bigint; BEGIN "
    " PERFORM pg_advisory_xact_lock(hashtextextended(u, 0));"
    " INSERT INTO sync.user_state (user_id) VALUES (u) ON CONFLICT (user_id) DO NOTHING;"
    " SELECT user_pk INTO pk FROM sync.user_state WHERE user_id = u;"
    " INSERT INTO sync.scope_state (user_pk, state_code, initialized_at, initialized_by_source_id)"
    "  VALUES (pk, 2, now(), 'fixture') ON CONFLICT (user_pk) DO NOTHING;"
    " PERFORM set_config('oversync.bundle_user_id', u, true);"
    " PERFORM set_config('oversync.bundle_user_pk', pk::text, true);"
    " RETURN pk; END $$;"
    /* bytea columns (all named data here) as the wire carries them: base64 */
    "CREATE FUNCTION pulltest.wire(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ "
    " SELECT CASE WHEN jsonb_typeof(p->'data') = 'string' AND left(p->>'data', 2) = '\\x' "
    " THEN jsonb_set(p, '{data}', to_jsonb(translate(encode(decode(substr(p->>'data', 3), 'hex'), 'base64'), E'\\n', '')))"
    " ELSE p END $$;"
    "CREATE FUNCTION pulltest.commit(u text, src text) RETURNS bigint LANGUAGE plpgsql AS $$ "
    "DECLARE pk bigint; seq bigint; sbid bigint; h text; bc bigint; rs jsonb; BEGIN "
    " SELECT user_pk INTO pk FROM sync.user_state WHERE user_id = u;"
    " UPDATE sync.user_state SET next_bundle_seq = next_bundle_seq + 1 WHERE user_pk = pk"
    "  RETURNING next_bundle_seq - 1 INTO seq;"
    " SELECT coalesce(max(max_committed_source_bundle_id), 0) + 1 INTO sbid FROM sync.source_state"
    "  WHERE user_pk = pk AND source_id = src;"
    " CREATE TEMP TABLE pt_stage ON COMMIT DROP AS SELECT row_number() OVER (ORDER BY capture_ordinal) AS ord,"
    "  st.table_id, st.key_bytes, st.op_code, CASE WHEN st.op_code = 3 THEN NULL ELSE pulltest.wire(st.payload_db) END AS payload,"
    "  tc.schema_name, tc.table_name, tc.sync_key_column, tc.sync_key_kind"
    "  FROM sync.bundle_capture_stage st JOIN sync.table_catalog tc USING (table_id)"
    "  WHERE st.txid = txid_current() AND st.user_pk = pk;"
    " SELECT jsonb_agg(jsonb_build_object('schema', schema_name, 'table', table_name, 'key',"
    "  jsonb_build_object(sync_key_column, CASE WHEN sync_key_kind = 1 THEN encode(key_bytes, 'hex')::uuid::text"
    "  ELSE convert_from(key_bytes, 'UTF8') END), 'op', CASE op_code WHEN 1 THEN 'INSERT' WHEN 2 THEN 'UPDATE'"
    "  ELSE 'DELETE' END, 'row_version', seq, 'payload', payload) ORDER BY ord) INTO rs FROM pt_stage;"
    " IF rs IS NULL THEN RAISE EXCEPTION 'no captured rows'; END IF;"
    " SELECT b.bundle_hash, b.byte_count INTO h, bc FROM oversyncd.bundle_hash(rs) b;"
    " INSERT INTO sync.bundle_log (user_pk, bundle_seq, source_id, source_bundle_id, row_count, byte_count, bundle_hash)"
    "  VALUES (pk, seq, src, sbid, jsonb_array_length(rs), bc, decode(h, 'hex'));"
    " INSERT INTO sync.bundle_rows (user_pk, bundle_seq, row_ordinal, table_id, key_bytes, op_code, payload_wire)"
    "  SELECT pk, seq, ord, table_id, key_bytes, op_code, oversyncd.canonical_json(payload)::json FROM pt_stage;"
    " INSERT INTO sync.row_state (user_pk, table_id, key_bytes, bundle_seq, deleted)"
    "  SELECT pk, table_id, key_bytes, seq, op_code = 3 FROM pt_stage"
    "  ON CONFLICT (user_pk, table_id, key_bytes) DO UPDATE SET bundle_seq = EXCLUDED.bundle_seq, deleted = EXCLUDED.deleted;"
    " INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id)"
    "  VALUES (pk, src, 'active', sbid) ON CONFLICT (user_pk, source_id) DO UPDATE"
    "  SET max_committed_source_bundle_id = EXCLUDED.max_committed_source_bundle_id;"
    " DELETE FROM sync.bundle_capture_stage WHERE txid = txid_current() AND user_pk = pk;"
    " DROP TABLE pt_stage;"
    " RETURN seq; END $$;";

static void fixture_setup(void)
{
    tdb_conn_exec(T.conn, "SET TimeZone = 'UTC'");
    tdb_conn_exec(T.conn, FIXTURE_SQL);
}

static TCase *pull_tcase(const char *name)
{
    TCase *tc = bt_tcase(name);
    tcase_add_checked_fixture(tc, fixture_setup, NULL);
    tcase_set_timeout(tc, 120);
    return tc;
}

/* One committed bundle of user by source on conn: the writes (SQL) inside a bundle context. */
static void commit_on(PGconn *conn, const char *user, const char *source, const char *writes)
{
    char *sql;
    ck_assert(asprintf(&sql, "BEGIN; SELECT pulltest.begin('%s'); %s; SELECT pulltest.commit('%s', '%s'); COMMIT", user,
                       writes, user, source) > 0);
    PGresult *r = PQexec(conn, sql);
    free(sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK, "commit: %s",
                  PQresultErrorMessage(r));
    PQclear(r);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
}

/* The same on T; the user's head afterwards. */
static long long commit(const char *user, const char *source, const char *writes)
{
    commit_on(T.conn, user, source, writes);
    return bt_count("SELECT next_bundle_seq - 1 FROM sync.user_state WHERE user_id = '%s'", user);
}

/* A users row for user with a uuid made of n. */
static char *user_row(const char *user, int n)
{
    char *s;
    ck_assert(asprintf(&s,
                       "INSERT INTO business.users (_sync_scope_id, id, name, email) VALUES ('%s', "
                       "'00000000-0000-4000-8000-%012d', 'user %d', 'u%d@example.com')",
                       user, n, n, n) > 0);
    return s;
}

static long long commit_user_row_by(const char *user, const char *source, int n)
{
    char *w = user_row(user, n);
    long long seq = commit(user, source, w);
    free(w);
    return seq;
}

static long long commit_user_row(const char *user, int n)
{
    return commit_user_row_by(user, "writer", n);
}

static void init_scope(const char *user)
{
    struct bt_reply *r = bt_connect(user, "dev-a", "{\"has_local_pending_rows\":false}");
    bt_assert_ok(r, 200);
    bt_reply_free(r);
}

static json_object *member(json_object *o, const char *key)
{
    return tdb_get(o, key);
}

static json_object *at(json_object *arr, size_t i)
{
    ck_assert_msg(json_object_is_type(arr, json_type_array) && i < json_object_array_length(arr), "index %zu", i);
    return json_object_array_get_idx(arr, i);
}

static size_t len(json_object *arr)
{
    ck_assert(json_object_is_type(arr, json_type_array));
    return json_object_array_length(arr);
}

static json_object *bundles(const struct bt_reply *r)
{
    return member(r->json, "bundles");
}

/* The database's sync state as one text: anything a failed call could have written. */
static char *sync_fingerprint(void)
{
    return bt_query("SELECT md5(concat_ws('|', (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.user_state t),"
                    " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.scope_state t),"
                    " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.source_state t),"
                    " (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM sync.snapshot_sessions t),"
                    " (SELECT count(*) FROM sync.snapshot_session_rows),"
                    " (SELECT count(*) FROM sync.bundle_log), (SELECT count(*) FROM sync.row_state),"
                    " (SELECT last_value FROM sync.history_pruned_error_seq)))");
}

static void assert_unchanged(const char *before)
{
    char *now = sync_fingerprint();
    ck_assert_str_eq(now, before);
    free(now);
}

/* ------------------------------------------------------------------------------- pull: input */

START_TEST(test_pull_query_validation)
{
    init_scope("alice");
    char *before = sync_fingerprint();
    static const struct {
        const char *after, *max, *target, *message;
    } cases[] = {
        { "x", NULL, NULL, "after_bundle_seq must be an integer" },
        { "1.0", NULL, NULL, "after_bundle_seq must be an integer" },
        { " 1", NULL, NULL, "after_bundle_seq must be an integer" },
        { "99999999999999999999", NULL, NULL, "after_bundle_seq must be an integer" },
        { "-1", NULL, NULL, "after_bundle_seq must be >= 0" },
        { NULL, "ten", NULL, "max_bundles must be an integer" },
        { NULL, "0", NULL, "max_bundles must be between 1 and 5000" },
        { NULL, "-3", NULL, "max_bundles must be between 1 and 5000" },
        { NULL, "5001", NULL, "max_bundles must be between 1 and 5000" },
        { NULL, NULL, "1e3", "target_bundle_seq must be an integer" },
        { NULL, NULL, "-1", "target_bundle_seq must be >= 0" },
        /* the first bad value is the one reported, in the reference's order */
        { "-1", "0", "x", "after_bundle_seq must be >= 0" },
        { "0", "0", "x", "max_bundles must be between 1 and 5000" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bt_reply *r = bt_pull("alice", "dev-a", cases[i].after, cases[i].max, cases[i].target);
        bt_assert_error(r, 400, "invalid_request", cases[i].message);
        bt_reply_free(r);
    }
    /* the body as Go writes it: >= escaped */
    struct bt_reply *r = bt_pull("alice", "dev-a", "-1", NULL, NULL);
    ck_assert_str_eq(r->body, "{\"error\":\"invalid_request\",\"message\":\"after_bundle_seq must be \\u003e= 0\"}\n");
    bt_reply_free(r);
    /* validation comes before the scope: even an unknown user gets the 400 */
    r = bt_pull("nobody", "dev-a", NULL, "0", NULL);
    bt_assert_error(r, 400, "invalid_request", "max_bundles must be between 1 and 5000");
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_pull_empty_values_are_defaults_and_limits_follow_config)
{
    init_scope("alice");
    for (int i = 1; i <= 4; i++)
        commit_user_row("alice", i);
    struct bt_reply *r = bt_pull("alice", "dev-a", "", "", "");
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 4);
    ck_assert_int_eq(len(bundles(r)), 4);
    bt_reply_free(r);
    BT_CFG.default_bundles_per_pull = 3;
    BT_CFG.max_bundles_per_pull = 3;
    r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    ck_assert_int_eq(len(bundles(r)), 3);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", NULL, "4", NULL);
    bt_assert_error(r, 400, "invalid_request", "max_bundles must be between 1 and 3");
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", NULL, "3", NULL);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_pull_scope_must_be_initialized)
{
    char *before = sync_fingerprint();
    struct bt_reply *r = bt_pull("nobody", "dev-a", NULL, NULL, NULL);
    bt_assert_error(r, 409, "scope_uninitialized", "sync scope for user nobody is not initialized");
    bt_reply_free(r);
    assert_unchanged(before);   /* a never-seen user is not created by a pull */
    free(before);

    r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":true}");
    bt_assert_ok(r, 200);
    char *lease = strdup(tdb_str(r->json, "lease_expires_at"));
    bt_reply_free(r);
    before = sync_fingerprint();
    r = bt_pull("alice", "dev-b", NULL, NULL, NULL);
    char msg[256];
    snprintf(msg, sizeof msg, "sync scope for user alice is initializing until %s", lease);
    bt_assert_error(r, 409, "scope_initializing", msg);
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", NULL, NULL, NULL);   /* the lease holder too */
    bt_assert_error(r, 409, "scope_initializing", msg);
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    free(lease);

    /* a lease in the past counts as uninitialized (and a pull does not rewrite it) */
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = now() - interval '1 s'");
    before = sync_fingerprint();
    r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_error(r, 409, "scope_uninitialized", "sync scope for user alice is not initialized");
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_pull_empty_scope)
{
    init_scope("alice");
    struct bt_reply *r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_ok(r, 200);
    ck_assert_str_eq(r->body, "{\"stable_bundle_seq\":0,\"bundles\":[],\"has_more\":false}\n");
    bt_reply_free(r);
    /* a target above an empty head is echoed */
    r = bt_pull("alice", "dev-a", "0", NULL, "7");
    ck_assert_str_eq(r->body, "{\"stable_bundle_seq\":7,\"bundles\":[],\"has_more\":false}\n");
    bt_reply_free(r);
}
END_TEST

/* ------------------------------------------------------------------------------- pull: bundles */

START_TEST(test_pull_wire_rows)
{
    init_scope("alice");
    commit("alice", "writer",
           "INSERT INTO business.users (_sync_scope_id, id, name, email, created_at, updated_at) VALUES "
           "('alice', '550e8400-e29b-41d4-a716-446655440000', 'A <&> B', 'a@example.com', "
           "'2026-03-22T12:00:00.5Z', '2026-03-22T12:00:00Z'); "
           "INSERT INTO business.notes (_sync_scope_id, slug, body) VALUES ('alice', 'Ünïcode slug \u2028', 'x')");
    commit("alice", "writer",
           "UPDATE business.notes SET body = 'y'; DELETE FROM business.users");
    struct bt_reply *r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_ok(r, 200);
    char *hash1 = bt_query("SELECT encode(bundle_hash, 'hex') FROM sync.bundle_log WHERE bundle_seq = 1");
    char *hash2 = bt_query("SELECT encode(bundle_hash, 'hex') FROM sync.bundle_log WHERE bundle_seq = 2");
    char *expected;
    ck_assert(asprintf(&expected,
                       "{\"stable_bundle_seq\":2,\"bundles\":["
                       "{\"bundle_seq\":1,\"source_id\":\"writer\",\"source_bundle_id\":1,\"row_count\":2,"
                       "\"bundle_hash\":\"%s\",\"rows\":["
                       "{\"schema\":\"business\",\"table\":\"users\",\"key\":{\"id\":\"550e8400-e29b-41d4-a716-446655440000\"},"
                       "\"op\":\"INSERT\",\"row_version\":1,\"payload\":{\"created_at\":\"2026-03-22T12:00:00.5+00:00\","
                       "\"email\":\"a@example.com\",\"id\":\"550e8400-e29b-41d4-a716-446655440000\","
                       "\"name\":\"A \\u003c\\u0026\\u003e B\",\"updated_at\":\"2026-03-22T12:00:00+00:00\"}},"
                       "{\"schema\":\"business\",\"table\":\"notes\",\"key\":{\"slug\":\"Ünïcode slug \\u2028\"},"
                       "\"op\":\"INSERT\",\"row_version\":1,\"payload\":{\"body\":\"x\",\"slug\":\"Ünïcode slug \\u2028\"}}]},"
                       "{\"bundle_seq\":2,\"source_id\":\"writer\",\"source_bundle_id\":2,\"row_count\":2,"
                       "\"bundle_hash\":\"%s\",\"rows\":["
                       "{\"schema\":\"business\",\"table\":\"notes\",\"key\":{\"slug\":\"Ünïcode slug \\u2028\"},"
                       "\"op\":\"UPDATE\",\"row_version\":2,\"payload\":{\"body\":\"y\",\"slug\":\"Ünïcode slug \\u2028\"}},"
                       "{\"schema\":\"business\",\"table\":\"users\",\"key\":{\"id\":\"550e8400-e29b-41d4-a716-446655440000\"},"
                       "\"op\":\"DELETE\",\"row_version\":2}]}],\"has_more\":false}\n",
                       hash1, hash2) > 0);
    ck_assert_str_eq(r->body, expected);
    ck_assert_int_eq(strlen(hash1), 64);
    free(expected);
    free(hash1);
    free(hash2);
    bt_reply_free(r);
}
END_TEST

/* The stored payload text goes out as Go writes a json.RawMessage: compacted, <>& escaped,
 * everything else (key order, number text) untouched. */
START_TEST(test_pull_payload_passthrough)
{
    init_scope("alice");
    commit_user_row("alice", 1);
    bt_exec("UPDATE sync.bundle_rows SET payload_wire = '{ \"z\" : [1, 2.50, 1e400],\n \"a\":\"<tag> & \\\\\" , \"q\\\"<\": {} }'");
    bt_exec("UPDATE sync.bundle_log SET row_count = 0, bundle_hash = ''::bytea");
    struct bt_reply *r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_ok(r, 200);
    json_object *b = at(bundles(r), 0);
    ck_assert(!tdb_has(b, "row_count"));    /* omitempty, as in Go */
    ck_assert(!tdb_has(b, "bundle_hash"));
    ck_assert_msg(strstr(r->body, "\"payload\":{\"z\":[1,2.50,1e400],\"a\":\"\\u003ctag\\u003e \\u0026 \\\\\","
                                  "\"q\\\"\\u003c\":{}}}") != NULL,
                  "%s", r->body);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_pull_typed_values_and_bytea)
{
    init_scope("alice");
    commit("alice", "writer",
           "INSERT INTO business.files (_sync_scope_id, id, name, data) VALUES "
           "('alice', '11111111-1111-4111-8111-111111111111', 'f', '\\x00016865 6c6c6fff'::bytea); "
           "INSERT INTO business.typed_rows (_sync_scope_id, id, name, note, count_value, enabled_flag, rating, data, "
           "created_at) VALUES ('alice', '22222222-2222-4222-8222-222222222222', 't', NULL, 9007199254740993, 1, 0.1, "
           "NULL, '2026-03-22T12:00:00.5Z')");
    struct bt_reply *r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_ok(r, 200);
    json_object *rows = member(at(bundles(r), 0), "rows");
    ck_assert_int_eq(len(rows), 2);
    ck_assert(tdb_json_eq(member(at(rows, 0), "payload"),
                          "{\"data\":\"AAFoZWxsb/8=\",\"id\":\"11111111-1111-4111-8111-111111111111\",\"name\":\"f\"}"));
    ck_assert_msg(strstr(r->body, "{\"count_value\":9007199254740992,\"created_at\":\"2026-03-22T12:00:00.5+00:00\","
                                  "\"data\":null,\"enabled_flag\":1,\"id\":\"22222222-2222-4222-8222-222222222222\","
                                  "\"name\":\"t\",\"note\":null,\"rating\":0.1}") != NULL,
                  "%s", r->body);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_pull_pages_with_target)
{
    init_scope("alice");
    for (int i = 1; i <= 7; i++)
        commit_user_row("alice", i);
    struct bt_reply *r = bt_pull("alice", "dev-a", "0", "3", NULL);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 7);
    ck_assert_int_eq(len(bundles(r)), 3);
    ck_assert_int_eq(tdb_int(at(bundles(r), 2), "bundle_seq"), 3);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    /* more commits meanwhile: the page keeps to its target */
    commit_user_row("alice", 8);
    commit_user_row("alice", 9);
    r = bt_pull("alice", "dev-a", "3", "3", "7");
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 7);
    ck_assert_int_eq(tdb_int(at(bundles(r), 0), "bundle_seq"), 4);
    ck_assert_int_eq(len(bundles(r)), 3);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", "6", "3", "7");
    ck_assert_int_eq(len(bundles(r)), 1);
    ck_assert_int_eq(tdb_int(at(bundles(r), 0), "bundle_seq"), 7);
    ck_assert(!tdb_bool(r->json, "has_more"));   /* exactly the last one: no more */
    bt_reply_free(r);
    /* the next cycle sees the new head */
    r = bt_pull("alice", "dev-a", "7", NULL, NULL);
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 9);
    ck_assert_int_eq(len(bundles(r)), 2);
    bt_reply_free(r);
    /* at or past the stable seq: an empty page with the stable seq */
    r = bt_pull("alice", "dev-a", "9", NULL, NULL);
    ck_assert_str_eq(r->body, "{\"stable_bundle_seq\":9,\"bundles\":[],\"has_more\":false}\n");
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", "12", NULL, NULL);
    ck_assert_str_eq(r->body, "{\"stable_bundle_seq\":9,\"bundles\":[],\"has_more\":false}\n");
    bt_reply_free(r);
    /* a target above the head is echoed, not clamped; the page stops at the head */
    r = bt_pull("alice", "dev-a", "5", NULL, "50");
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 50);
    ck_assert_int_eq(len(bundles(r)), 4);
    ck_assert(!tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    /* a target below after: empty */
    r = bt_pull("alice", "dev-a", "5", NULL, "3");
    ck_assert_str_eq(r->body, "{\"stable_bundle_seq\":3,\"bundles\":[],\"has_more\":false}\n");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_pull_bundles_never_split_and_other_users_invisible)
{
    init_scope("alice");
    init_scope("bob");
    strbuf_t w = STRBUF_INIT;
    for (int i = 1; i <= 6; i++) {
        char *row = user_row("alice", i);
        sb_printf(&w, "%s%s", i > 1 ? ";" : "", row);
        free(row);
    }
    commit("alice", "writer", sb_cstr(&w));   /* one bundle of six rows */
    sb_free(&w);
    commit_user_row("bob", 100);
    commit_user_row("bob", 101);
    commit_user_row("alice", 7);
    struct bt_reply *r = bt_pull("alice", "dev-a", NULL, "1", NULL);
    ck_assert_int_eq(len(bundles(r)), 1);
    ck_assert_int_eq(len(member(at(bundles(r), 0), "rows")), 6);
    ck_assert_int_eq(tdb_int(at(bundles(r), 0), "row_count"), 6);
    ck_assert(tdb_bool(r->json, "has_more"));
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 2);
    ck_assert_ptr_null(strstr(r->body, "user 100"));
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", "1", "1", "2");
    ck_assert_int_eq(len(bundles(r)), 1);
    ck_assert_int_eq(len(member(at(bundles(r), 0), "rows")), 1);
    ck_assert(!tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    r = bt_pull("bob", "dev-b", NULL, NULL, NULL);
    ck_assert_int_eq(tdb_int(r->json, "stable_bundle_seq"), 2);
    ck_assert_int_eq(len(bundles(r)), 2);
    ck_assert_ptr_null(strstr(r->body, "alice"));
    ck_assert_ptr_null(strstr(r->body, "user 1\""));
    bt_reply_free(r);
}
END_TEST

static long long pruned_count(void)
{
    return bt_count("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sync.history_pruned_error_seq");
}

START_TEST(test_pull_history_pruned)
{
    init_scope("alice");
    for (int i = 1; i <= 6; i++)
        commit_user_row("alice", i);
    /* what retention does: floor 3, bundles up to 3 gone */
    bt_exec("UPDATE sync.user_state SET retained_bundle_floor = 3 WHERE user_id = 'alice'");
    bt_exec("DELETE FROM sync.bundle_log WHERE bundle_seq <= 3");
    char *before = sync_fingerprint();
    static const struct {
        const char *after, *target;
        long long seq;
    } cases[] = { { "2", NULL, 2 }, { "3", NULL, 3 }, { "1", "6", 1 }, { "4", "3", 3 }, { "0", "2", 2 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bt_reply *r = bt_pull("alice", "dev-a", cases[i].after, NULL, cases[i].target);
        char msg[160];
        snprintf(msg, sizeof msg, "requested checkpoint %lld is older than retained history floor 3 for user alice",
                 cases[i].seq);
        bt_assert_error(r, 409, "history_pruned", msg);
        bt_reply_free(r);
        ck_assert_int_eq(pruned_count(), (long long)i + 1);   /* counted, outside the rolled-back tx */
    }
    bt_exec("SELECT setval('sync.history_pruned_error_seq', 1, false)");
    assert_unchanged(before);
    free(before);
    /* after = 0 starts silently above the floor */
    struct bt_reply *r = bt_pull("alice", "dev-a", "0", NULL, NULL);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(len(bundles(r)), 3);
    ck_assert_int_eq(tdb_int(at(bundles(r), 0), "bundle_seq"), 4);
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", "4", NULL, "6");
    ck_assert_int_eq(len(bundles(r)), 2);
    bt_reply_free(r);
    /* rows at or below the floor are not served even when present */
    bt_exec("UPDATE sync.user_state SET retained_bundle_floor = 4 WHERE user_id = 'alice'");
    r = bt_pull("alice", "dev-a", "0", NULL, NULL);
    ck_assert_int_eq(len(bundles(r)), 2);
    ck_assert_int_eq(tdb_int(at(bundles(r), 0), "bundle_seq"), 5);
    bt_reply_free(r);
    /* everything pruned: the resolved stable seq itself is at the floor */
    bt_exec("UPDATE sync.user_state SET retained_bundle_floor = 6 WHERE user_id = 'alice'");
    r = bt_pull("alice", "dev-a", "0", NULL, NULL);
    bt_assert_error(r, 409, "history_pruned",
                    "requested checkpoint 6 is older than retained history floor 6 for user alice");
    bt_reply_free(r);
    ck_assert_int_eq(pruned_count(), 1);
    r = bt_status(false);
    ck_assert_int_eq(tdb_int(r->json, "history_pruned_error_count"), 1);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_pull_database_failure)
{
    init_scope("alice");
    commit_user_row("alice", 1);
    bt_exec("ALTER TABLE sync.bundle_rows RENAME TO bundle_rows_gone");
    struct bt_reply *r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_error(r, 500, "pull_failed", "Failed to process pull");
    bt_reply_free(r);
    bt_exec("ALTER TABLE sync.bundle_rows_gone RENAME TO bundle_rows");
    /* a row the wire cannot carry (a uuid key of 3 bytes) fails closed */
    bt_exec("ALTER TABLE sync.bundle_rows DISABLE TRIGGER ALL");
    bt_exec("UPDATE sync.bundle_rows SET key_bytes = '\\x010203'");
    r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_error(r, 500, "pull_failed", "Failed to process pull");
    bt_reply_free(r);
}
END_TEST

/* ------------------------------------------------------------------------------- pull: races */

#define WRITERS 3
#define BUNDLES_PER_WRITER 40

static int writer_child(int i)
{
    PGconn *c = tdb_connect_raw(T.dbname);
    if (PQstatus(c) != CONNECTION_OK)
        return 2;
    const char *user = i == WRITERS - 1 ? "bob" : "alice";
    for (int k = 0; k < BUNDLES_PER_WRITER; k++) {
        char sql[1024];
        snprintf(sql, sizeof sql,
                 "BEGIN; SELECT pulltest.begin('%s'); "
                 "INSERT INTO business.notes (_sync_scope_id, slug, body) VALUES ('%s', 'w%d-%d', 'x'); "
                 "INSERT INTO business.notes (_sync_scope_id, slug, body) VALUES ('%s', 'w%d-%d-b', 'y'); "
                 "SELECT pulltest.commit('%s', 'writer-%d'); COMMIT",
                 user, user, i, k, user, i, k, user, i);
        PGresult *r = PQexec(c, sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "writer %d: %s", i, PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            return 1;
        if (k % 7 == 0)
            usleep(1000);
    }
    PQfinish(c);
    return 0;
}

START_TEST(test_pull_while_others_commit)
{
    init_scope("alice");
    init_scope("bob");
    pid_t pids[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0)
            _exit(writer_child(i));
    }
    const long long total = (WRITERS - 1) * BUNDLES_PER_WRITER;
    long long after = 0, target = 0;
    int running = WRITERS, pages = 0, nonempty = 0;
    while (after < total) {
        char a[24], t[24];
        snprintf(a, sizeof a, "%lld", after);
        snprintf(t, sizeof t, "%lld", target);
        struct bt_reply *r = bt_pull("alice", "dev-a", a, "7", target ? t : NULL);
        bt_assert_ok(r, 200);
        long long stable = tdb_int(r->json, "stable_bundle_seq");
        ck_assert_int_ge(stable, after);
        if (target)
            ck_assert_int_eq(stable, target);
        json_object *bs = bundles(r);
        for (size_t i = 0; i < len(bs); i++) {
            json_object *b = at(bs, i);
            long long seq = tdb_int(b, "bundle_seq");
            ck_assert_msg(seq == after + 1, "dense: expected %lld, got %lld", after + 1, seq);
            ck_assert_int_le(seq, stable);
            json_object *rows = member(b, "rows");
            ck_assert_int_eq(len(rows), 2);
            ck_assert_int_eq(tdb_int(b, "row_count"), 2);
            for (size_t k = 0; k < 2; k++)
                ck_assert_int_eq(tdb_int(at(rows, k), "row_version"), seq);
            ck_assert_msg(strncmp(tdb_str(b, "source_id"), "writer-", 7) == 0 &&
                              strcmp(tdb_str(b, "source_id"), "writer-2") != 0,
                          "alice's writers only");
            after = seq;
        }
        bool more = tdb_bool(r->json, "has_more");
        ck_assert(!more || len(bs) > 0);
        target = more ? stable : 0;
        if (!more)
            ck_assert_int_eq(after, stable);   /* a cycle ends having everything up to its stable seq */
        if (len(bs))
            nonempty++;
        pages++;
        bt_reply_free(r);
        for (int i = 0; i < WRITERS; i++) {
            int st;
            if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
                ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d failed", i);
                pids[i] = 0;
                running--;
            }
        }
        ck_assert_msg(running > 0 || after <= total, "overrun");
        if (running == 0 && after < total && !more) {
            /* the writers are done: one more cycle must reach the end */
            ck_assert_int_eq(bt_count("SELECT next_bundle_seq - 1 FROM sync.user_state WHERE user_id = 'alice'"), total);
        }
    }
    for (int i = 0; i < WRITERS; i++) {
        int st;
        if (pids[i] > 0) {
            ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
            ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
    }
    ck_assert_int_eq(after, total);
    fprintf(stderr, "pull race: %d pages (%d with bundles) while %d writers committed %d bundles each\n", pages,
            nonempty, WRITERS, BUNDLES_PER_WRITER);
    struct bt_reply *r = bt_pull("bob", "dev-b", NULL, NULL, NULL);
    ck_assert_int_eq(len(bundles(r)), BUNDLES_PER_WRITER);
    bt_reply_free(r);
}
END_TEST

/* ------------------------------------------------------------------------------- pull: speed */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Not a pass/fail bound: prints what paging costs (docs/bundle-protocol.md quotes it). The
 * bundles are laid down directly (pull does not check hashes): 5000 bundles of 4 rows each. */
START_TEST(test_pull_page_speed)
{
    init_scope("alice");
    bt_exec("INSERT INTO sync.bundle_log (user_pk, bundle_seq, source_id, source_bundle_id, row_count, byte_count, "
            "bundle_hash) SELECT us.user_pk, g, 'writer', g, 4, 400, sha256(g::text::bytea) "
            "FROM sync.user_state us, generate_series(1, 5000) g WHERE us.user_id = 'alice'");
    bt_exec("INSERT INTO sync.bundle_rows (user_pk, bundle_seq, row_ordinal, table_id, key_bytes, op_code, payload_wire) "
            "SELECT us.user_pk, g, o, 9, uuid_send(md5(g || '-' || o)::uuid), 1, json_build_object('id', "
            "md5(g || '-' || o)::uuid, 'name', 'user ' || g, 'email', 'u' || g || '@example.com', 'created_at', "
            "'2026-03-22T12:00:00+00:00', 'updated_at', '2026-03-22T12:00:00+00:00') "
            "FROM sync.user_state us, generate_series(1, 5000) g, generate_series(1, 4) o WHERE us.user_id = 'alice'");
    bt_exec("UPDATE sync.user_state SET next_bundle_seq = 5001 WHERE user_id = 'alice'");
    bt_exec("ANALYZE sync.bundle_log");
    bt_exec("ANALYZE sync.bundle_rows");
    static const char *const sizes[] = { "1000", "100", "10" };
    for (int s = 0; s < 3; s++) {
        long long after = 0, n = 0, bytes = 0;
        int pages = 0;
        double t0 = now_s();
        while (after < 5000) {
            char a[24];
            snprintf(a, sizeof a, "%lld", after);
            struct bt_reply *r = bt_pull("alice", "dev-a", a, sizes[s], "5000");
            bt_assert_ok(r, 200);
            json_object *bs = bundles(r);
            after = tdb_int(at(bs, len(bs) - 1), "bundle_seq");
            n += (long long)len(bs);
            bytes += (long long)strlen(r->body);
            pages++;
            bt_reply_free(r);
        }
        double dt = now_s() - t0;
        ck_assert_int_eq(n, 5000);
        fprintf(stderr, "pull speed: max_bundles %s: %d pages, %.0f bundles/s, %.0f rows/s, %.1f MB/s of JSON "
                        "(parsing by the test included)\n",
                sizes[s], pages, (double)n / dt, 4.0 * (double)n / dt, (double)bytes / dt / 1e6);
    }
    /* the page query (pull.c's, copied) reads both tables by their primary keys */
    char *plan = bt_query(
        "EXPLAIN (COSTS OFF, FORMAT JSON) WITH b AS MATERIALIZED ("
        " SELECT l.bundle_seq, l.source_id, l.source_bundle_id, l.row_count, encode(l.bundle_hash, 'hex') AS hash,"
        " row_number() OVER (ORDER BY l.bundle_seq) AS n FROM ("
        "  SELECT bundle_seq, source_id, source_bundle_id, row_count, bundle_hash FROM sync.bundle_log"
        "  WHERE user_pk = 1 AND bundle_seq > 2000 AND bundle_seq > 0 AND bundle_seq <= 5000"
        "  ORDER BY bundle_seq LIMIT 1000::bigint + 1) l) "
        "SELECT b.n, b.bundle_seq, b.source_id, b.source_bundle_id, b.row_count, b.hash,"
        " r.table_id, encode(r.key_bytes, 'hex'), r.op_code, r.payload_wire "
        "FROM b LEFT JOIN LATERAL (SELECT row_ordinal, table_id, key_bytes, op_code, payload_wire"
        " FROM sync.bundle_rows WHERE user_pk = 1 AND bundle_seq = b.bundle_seq AND b.n <= 1000"
        " ORDER BY row_ordinal) r ON true "
        "ORDER BY b.bundle_seq, r.row_ordinal");
    ck_assert_msg(strstr(plan, "bundle_log_pkey") && strstr(plan, "bundle_rows_pkey") && !strstr(plan, "Seq Scan"),
                  "%s", plan);
    free(plan);
}
END_TEST

/* ------------------------------------------------------------------------------- snapshots */

static char *created_id(const struct bt_reply *r)
{
    return strdup(tdb_str(r->json, "snapshot_id"));
}

START_TEST(test_snapshot_create_body_decoding)
{
    init_scope("alice");
    char *before = sync_fingerprint();
    static const char *const bad[] = {
        "{\"x\":1}", "{} x", "{}}", "{} {", "[]", "\"s\"", "1", "{", "{\"source_replacement\":1}",
        "{\"source_replacement\":{\"previous_source_id\":\"dev-a\",\"extra\":1}}",
        "{\"source_replacement\":{\"previous_source_id\":2}}", "{\"source_replacement\":[]}", "nul",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bt_reply *r = bt_snapshot_create("alice", "dev-a", bad[i]);
        ck_assert_msg(r->status == 400, "%s: %d %s", bad[i], r->status, r->body);
        bt_assert_error(r, 400, "snapshot_session_invalid", "Failed to parse snapshot session request");
        bt_reply_free(r);
    }
    assert_unchanged(before);
    free(before);
    /* accepted: nothing, white space, {}, null, null members, case-insensitive keys, one more
     * complete JSON value after the first */
    static const char *const good[] = {
        NULL, "", " \n", "{}", "null", "{\"source_replacement\":null}", "{} {}", "{}\n[1, 2] trailing",
        "{\"Source_Replacement\":null}", "{} 7",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct bt_reply *r = bt_snapshot_create("alice", "dev-a", good[i]);
        ck_assert_msg(r->status == 200, "%s: %d %s", good[i] ? good[i] : "(none)", r->status, r->body);
        bt_reply_free(r);
    }
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions"), 10);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.source_state"), 0);
}
END_TEST

START_TEST(test_snapshot_scope_must_be_initialized)
{
    char *before = sync_fingerprint();
    struct bt_reply *r = bt_snapshot_create("nobody", "dev-a", NULL);
    bt_assert_error(r, 409, "scope_uninitialized", "sync scope for user nobody is not initialized");
    bt_reply_free(r);
    /* the scope comes before the replacement's checks */
    r = bt_snapshot_create("nobody", "dev-a",
                           "{\"source_replacement\":{\"previous_source_id\":\"other\",\"new_source_id\":\"n\",\"reason\":\"x\"}}");
    bt_assert_error(r, 409, "scope_uninitialized", NULL);
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":true}");
    bt_reply_free(r);
    before = sync_fingerprint();
    r = bt_snapshot_create("alice", "dev-a", "{}");
    bt_assert_error(r, 409, "scope_initializing", NULL);
    ck_assert_msg(strstr(tdb_str(r->json, "message"), "sync scope for user alice is initializing until ") != NULL,
                  "%s", r->body);
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_snapshot_empty_scope)
{
    init_scope("alice");
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "snapshot_bundle_seq"), 0);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 0);
    ck_assert(!tdb_has(r->json, "byte_count"));   /* omitempty */
    const char *exp = tdb_str(r->json, "expires_at");
    ck_assert_msg(exp[strlen(exp) - 1] == 'Z', "%s", exp);
    char *id = created_id(r);
    ck_assert_int_eq(strlen(id), 36);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions WHERE snapshot_id = '%s' AND "
                              "expires_at BETWEEN now() + interval '899 s' AND now() + interval '901 s' "
                              "AND to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') = left('%s', 19)",
                              id, exp),
                     1);
    bt_reply_free(r);
    r = bt_snapshot_chunk("alice", "dev-a", id, NULL, NULL);
    bt_assert_ok(r, 200);
    char expected[256];
    snprintf(expected, sizeof expected,
             "{\"snapshot_id\":\"%s\",\"snapshot_bundle_seq\":0,\"rows\":[],\"next_row_ordinal\":0,\"has_more\":false}\n", id);
    ck_assert_str_eq(r->body, expected);
    bt_reply_free(r);
    r = bt_snapshot_chunk("alice", "dev-a", id, "5", NULL);
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 5);
    bt_reply_free(r);
    free(id);
}
END_TEST

START_TEST(test_snapshot_materializes_and_pages)
{
    init_scope("alice");
    init_scope("bob");
    commit("alice", "writer",
           "INSERT INTO business.users (_sync_scope_id, id, name, email, created_at, updated_at) VALUES "
           "('alice', 'ffffffff-0000-4000-8000-000000000001', 'Z <z>', 'z@example.com', '2026-03-22T12:00:00.5Z', "
           "'2026-03-22T12:00:00Z'), "
           "('alice', '00000000-0000-4000-8000-000000000002', 'A', 'a@example.com', '2026-03-22T12:00:00Z', "
           "'2026-03-22T12:00:00Z'); "
           "INSERT INTO business.notes (_sync_scope_id, slug, body) VALUES ('alice', 'b', 'bee'), ('alice', 'a', 'ay'), "
           "('alice', 'B', 'upper')");
    commit("alice", "writer",
           "INSERT INTO business.files (_sync_scope_id, id, name, data) VALUES "
           "('alice', '11111111-1111-4111-8111-111111111111', 'f', '\\x00016865 6c6c6fff'::bytea); "
           "INSERT INTO business.typed_rows (_sync_scope_id, id, name, note, count_value, enabled_flag, rating, data, "
           "created_at) VALUES ('alice', '22222222-2222-4222-8222-222222222222', 't', NULL, 9007199254740993, 1, 0.1, "
           "NULL, '2026-03-22T12:00:00.5Z'), ('alice', '33333333-3333-4333-8333-333333333333', 'u', 'n', "
           "9007199254740993, 0, 1e21, '\\x'::bytea, NULL); "
           "UPDATE business.users SET name = 'A2' WHERE id = '00000000-0000-4000-8000-000000000002'");
    commit("alice", "writer", "DELETE FROM business.notes WHERE slug = 'b'");
    commit_user_row("bob", 5);

    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", "{}");
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "snapshot_bundle_seq"), 3);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 7);
    char *id = created_id(r);
    long long bytes = tdb_int(r->json, "byte_count");
    ck_assert_int_eq(bytes, bt_count("SELECT sum(octet_length(payload_wire::text)) FROM sync.snapshot_session_rows"));
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions WHERE row_count = 7 AND byte_count = %lld "
                              "AND snapshot_bundle_seq = 3",
                              bytes),
                     1);

    /* page through: 1-based ordinals, (table_id, key bytes) order */
    strbuf_t all = STRBUF_INIT;
    long long after = 0;
    int pages = 0;
    for (;;) {
        char a[24];
        snprintf(a, sizeof a, "%lld", after);
        r = bt_snapshot_chunk("alice", "dev-a", id, pages ? a : NULL, "3");
        bt_assert_ok(r, 200);
        ck_assert_str_eq(tdb_str(r->json, "snapshot_id"), id);
        ck_assert_int_eq(tdb_int(r->json, "snapshot_bundle_seq"), 3);
        json_object *rows = member(r->json, "rows");
        ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), after + (long long)len(rows));
        after += (long long)len(rows);
        sb_puts(&all, r->body);
        bool more = tdb_bool(r->json, "has_more");
        ck_assert_int_eq(len(rows), more ? 3 : 1);
        pages++;
        bt_reply_free(r);
        if (!more)
            break;
    }
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(after, 7);
    const char *text = sb_cstr(&all);
    /* files (3): canonical, base64 */
    const char *files = strstr(text, "{\"schema\":\"business\",\"table\":\"files\",\"key\":{\"id\":\"11111111-1111-4111-"
                                     "8111-111111111111\"},\"row_version\":2,\"payload\":{\"data\":\"AAFoZWxsb/8=\","
                                     "\"id\":\"11111111-1111-4111-8111-111111111111\",\"name\":\"f\"}}");
    /* notes (4), text keys in byte order: B < a; b deleted */
    const char *notes_b = strstr(text, "\"table\":\"notes\",\"key\":{\"slug\":\"B\"},\"row_version\":1,"
                                       "\"payload\":{\"body\":\"upper\",\"slug\":\"B\"}}");
    const char *notes_a = strstr(text, "\"key\":{\"slug\":\"a\"}");
    ck_assert_ptr_null(strstr(text, "\"slug\":\"b\""));
    /* typed_rows (8): data NULL keeps to_jsonb's text (key order, exact bigint), compacted;
     * data set (even empty) is canonical (sorted keys, float64 numbers) */
    const char *typed_t = strstr(text, "\"row_version\":2,\"payload\":{\"id\":\"22222222-2222-4222-8222-222222222222\","
                                       "\"data\":null,\"name\":\"t\",\"note\":null,\"rating\":0.1,\"created_at\":"
                                       "\"2026-03-22T12:00:00.5+00:00\",\"count_value\":9007199254740993,"
                                       "\"enabled_flag\":1}}");
    const char *typed_u = strstr(text, "\"payload\":{\"count_value\":9007199254740992,\"created_at\":null,\"data\":\"\","
                                       "\"enabled_flag\":0,\"id\":\"33333333-3333-4333-8333-333333333333\",\"name\":\"u\","
                                       "\"note\":\"n\",\"rating\":1e+21}}");
    /* users (9): key bytes order, row_version from row_state, <> escaped on the wire */
    const char *users_2 = strstr(text, "\"key\":{\"id\":\"00000000-0000-4000-8000-000000000002\"},\"row_version\":2,"
                                       "\"payload\":{\"id\":\"00000000-0000-4000-8000-000000000002\",\"name\":\"A2\"");
    const char *users_f = strstr(text, "\"key\":{\"id\":\"ffffffff-0000-4000-8000-000000000001\"},\"row_version\":1,"
                                       "\"payload\":{\"id\":\"ffffffff-0000-4000-8000-000000000001\",\"name\":\"Z "
                                       "\\u003cz\\u003e\",\"email\":\"z@example.com\",\"created_at\":"
                                       "\"2026-03-22T12:00:00.5+00:00\",\"updated_at\":\"2026-03-22T12:00:00+00:00\"}}");
    ck_assert_msg(files && notes_b && notes_a && typed_t && typed_u && users_2 && users_f, "%s", text);
    ck_assert(files < notes_b && notes_b < notes_a && notes_a < typed_t && typed_t < typed_u && typed_u < users_2 &&
              users_2 < users_f);
    ck_assert_ptr_null(strstr(text, "_sync_scope_id"));
    ck_assert_ptr_null(strstr(text, "user 5"));   /* bob's row */
    /* stored: jsonb text with its spaces (byte_count counts them) */
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_session_rows WHERE row_ordinal = 7 AND payload_wire::text "
                              "LIKE '{\"id\": \"ffffffff-0000-4000-8000-000000000001\", \"name\": \"Z <z>\"%%'"),
                     1);
    ck_assert_int_eq(bt_count("SELECT (string_agg(row_ordinal::text, ',' ORDER BY row_ordinal) = '1,2,3,4,5,6,7')::int "
                              "FROM sync.snapshot_session_rows"),
                     1);

    /* frozen: later commits and pruning change nothing */
    commit_user_row("alice", 9);
    commit("alice", "writer", "DELETE FROM business.notes");
    bt_exec("UPDATE sync.user_state SET retained_bundle_floor = 4 WHERE user_id = 'alice'");
    bt_exec("DELETE FROM sync.bundle_log WHERE bundle_seq <= 4");
    strbuf_t again = STRBUF_INIT;
    for (long long a = 0; a < 7; a += 3) {
        char as[24];
        snprintf(as, sizeof as, "%lld", a);
        r = bt_snapshot_chunk("alice", "dev-a", id, a ? as : NULL, "3");
        sb_puts(&again, r->body);
        bt_reply_free(r);
    }
    ck_assert_str_eq(sb_cstr(&again), text);
    sb_free(&again);
    sb_free(&all);
    /* past the end: empty, next = after */
    r = bt_snapshot_chunk("alice", "dev-a", id, "7", NULL);
    ck_assert_int_eq(len(member(r->json, "rows")), 0);
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 7);
    ck_assert(!tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    r = bt_snapshot_chunk("alice", "dev-a", id, "100", NULL);
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 100);
    bt_reply_free(r);
    /* a new snapshot sees the new state */
    r = bt_snapshot_create("alice", "dev-a", NULL);
    ck_assert_int_eq(tdb_int(r->json, "snapshot_bundle_seq"), 5);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 6);
    bt_reply_free(r);
    free(id);
}
END_TEST

START_TEST(test_snapshot_fails_closed_on_mismatch)
{
    init_scope("alice");
    commit_user_row("alice", 1);
    commit_user_row("alice", 2);
    /* a live business row without live row_state */
    bt_exec("UPDATE sync.row_state SET deleted = true WHERE bundle_seq = 2");
    char *before = sync_fingerprint();
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_error(r, 500, "snapshot_session_create_failed", "Failed to create snapshot session");
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    /* live row_state without a business row */
    bt_exec("UPDATE sync.row_state SET deleted = false");
    bt_exec("INSERT INTO sync.row_state (user_pk, table_id, key_bytes, bundle_seq) SELECT user_pk, %d, 'ghost', 1 "
            "FROM sync.user_state WHERE user_id = 'alice'",
            BT_NOTES);
    before = sync_fingerprint();
    r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_error(r, 500, "snapshot_session_create_failed", "Failed to create snapshot session");
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    bt_exec("DELETE FROM sync.row_state WHERE key_bytes = 'ghost'");
    r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 2);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_snapshot_limits)
{
    init_scope("alice");
    commit_user_row("alice", 1);
    commit_user_row("alice", 2);
    char *before = sync_fingerprint();
    BT_CFG.max_rows_per_snapshot_session = 1;
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_error(r, 500, "snapshot_session_create_failed", "Failed to create snapshot session");
    bt_reply_free(r);
    BT_CFG.max_rows_per_snapshot_session = 2;
    long long one = bt_count("SELECT octet_length((to_jsonb(u) - '_sync_scope_id')::text) FROM business.users u "
                             "ORDER BY id LIMIT 1");
    long long both = bt_count("SELECT sum(octet_length((to_jsonb(u) - '_sync_scope_id')::text)) FROM business.users u");
    BT_CFG.max_bytes_per_snapshot_session = both - 1;
    r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_error(r, 500, "snapshot_session_create_failed", "Failed to create snapshot session");
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    ck_assert_int_gt(one, 0);
    BT_CFG.max_bytes_per_snapshot_session = both;   /* at the limit is fine */
    r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "byte_count"), both);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_snapshot_deletes_expired_sessions_of_every_user)
{
    init_scope("alice");
    init_scope("bob");
    commit_user_row("bob", 1);
    struct bt_reply *r = bt_snapshot_create("bob", "dev-b", NULL);
    char *bob_old = created_id(r);
    bt_reply_free(r);
    r = bt_snapshot_create("bob", "dev-b", NULL);
    char *bob_live = created_id(r);
    bt_reply_free(r);
    bt_exec("UPDATE sync.snapshot_sessions SET expires_at = now() - interval '1 s' WHERE snapshot_id = '%s'", bob_old);
    /* an expired session is 410 until a create removes it */
    r = bt_snapshot_chunk("bob", "dev-b", bob_old, NULL, NULL);
    char msg[200];
    snprintf(msg, sizeof msg, "snapshot session %s has expired; start a new snapshot session", bob_old);
    bt_assert_error(r, 410, "snapshot_session_expired", msg);
    bt_reply_free(r);
    /* a failed create (409) removes nothing: its transaction rolled back */
    r = bt_snapshot_create("carol", "dev-c", NULL);
    bt_assert_error(r, 409, "scope_uninitialized", NULL);
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions"), 2);
    r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions WHERE snapshot_id = '%s'", bob_old), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_session_rows WHERE snapshot_id = '%s'", bob_old), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions WHERE snapshot_id = '%s'", bob_live), 1);
    r = bt_snapshot_chunk("bob", "dev-b", bob_old, NULL, NULL);
    snprintf(msg, sizeof msg, "snapshot session %s was not found", bob_old);
    bt_assert_error(r, 404, "snapshot_session_not_found", msg);
    bt_reply_free(r);
    free(bob_old);
    free(bob_live);
}
END_TEST

/* ------------------------------------------------------------------------------- replacement */

static char *replacement(const char *prev, const char *next, const char *reason)
{
    char *s;
    ck_assert(asprintf(&s,
                       "{\"source_replacement\":{\"previous_source_id\":\"%s\",\"new_source_id\":\"%s\",\"reason\":\"%s\"}}",
                       prev, next, reason) > 0);
    return s;
}

static char *source_row(const char *source)
{
    return bt_query("SELECT coalesce((SELECT state || '/' || max_committed_source_bundle_id || '/' || "
                    "replaced_by_source_id || '/' || retirement_reason FROM sync.source_state WHERE source_id = '%s'), "
                    "'none')",
                    source);
}

static void assert_source(const char *source, const char *expected)
{
    char *v = source_row(source);
    ck_assert_str_eq(v, expected);
    free(v);
}

START_TEST(test_snapshot_replacement_validation)
{
    init_scope("alice");
    commit_user_row("alice", 1);
    char *before = sync_fingerprint();
    static const struct {
        const char *prev, *next, *reason, *message;
    } cases[] = {
        { "dev-b", "dev-n", "history_pruned", "previous_source_id must match authenticated source_id" },
        { "", "dev-n", "history_pruned", "previous_source_id must match authenticated source_id" },
        { "dev-a", "", "history_pruned", "new_source_id is required for source replacement" },
        { "dev-a", " \\t ", "history_pruned", "new_source_id is required for source replacement" },
        { "dev-a", "dev-a", "history_pruned", "new_source_id must differ from previous_source_id" },
        { "dev-a", " dev-a\\n", "history_pruned", "new_source_id must differ from previous_source_id" },
        { "dev-a", "dev-n", "because", "source replacement reason is unsupported" },
        { "dev-a", "dev-n", "", "source replacement reason is unsupported" },
        { "dev-a", "dev-n", "HISTORY_PRUNED", "source replacement reason is unsupported" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = replacement(cases[i].prev, cases[i].next, cases[i].reason);
        struct bt_reply *r = bt_snapshot_create("alice", "dev-a", body);
        bt_assert_error(r, 400, "snapshot_session_invalid", cases[i].message);
        bt_reply_free(r);
        free(body);
    }
    assert_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_snapshot_replacement_rotates_and_retries)
{
    init_scope("alice");
    commit_user_row("alice", 1);   /* source "writer" */
    commit_user_row_by("alice", "dev-a", 2);   /* dev-a active, max 1 */
    assert_source("dev-a", "active/1//");
    /* white space around the fields (Go's TrimSpace, Unicode included) is ignored */
    struct bt_reply *r = bt_snapshot_create(
        "alice", "dev-a",
        "{\"source_replacement\":{\"previous_source_id\":\" dev-a\\u00a0\",\"new_source_id\":\"\\u3000dev-n \","
        "\"reason\":\"history_pruned\\n\"}}");
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 2);
    bt_reply_free(r);
    assert_source("dev-a", "retired/1/dev-n/history_pruned");
    assert_source("dev-n", "reserved/0//");
    /* the same rotation again (a retry): fine, nothing changes */
    char *body = replacement("dev-a", "dev-n", "source_retired");
    r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    assert_source("dev-a", "retired/1/dev-n/history_pruned");
    assert_source("dev-n", "reserved/0//");
    /* still fine once the new source is active; and when its reserved row vanished it is reserved again */
    bt_exec("UPDATE sync.source_state SET state = 'active', max_committed_source_bundle_id = 3 WHERE source_id = 'dev-n'");
    r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    assert_source("dev-n", "active/3//");
    bt_exec("DELETE FROM sync.source_state WHERE source_id = 'dev-n'");
    r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    assert_source("dev-n", "reserved/0//");
    free(body);
    /* a retired source may still pull and take keep-source snapshots */
    r = bt_snapshot_create("alice", "dev-a", NULL);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    r = bt_pull("alice", "dev-a", NULL, NULL, NULL);
    bt_assert_ok(r, 200);
    bt_reply_free(r);

    char *before = sync_fingerprint();
    /* a rotation to another source than the one recorded: source_retired with the recorded one */
    body = replacement("dev-a", "dev-x", "history_pruned");
    r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_error(r, 409, "source_retired", "source dev-a for user alice was retired and replaced by dev-n");
    ck_assert_str_eq(r->body, "{\"error\":\"source_retired\",\"message\":\"source dev-a for user alice was retired and "
                              "replaced by dev-n\",\"source_id\":\"dev-a\",\"replaced_by_source_id\":\"dev-n\"}\n");
    bt_reply_free(r);
    free(body);
    /* the recorded replacement itself retired: not available */
    bt_exec("UPDATE sync.source_state SET state = 'retired', replaced_by_source_id = 'dev-z', retirement_reason = "
            "'history_pruned' WHERE source_id = 'dev-n'");
    free(before);
    before = sync_fingerprint();
    body = replacement("dev-a", "dev-n", "history_pruned");
    r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_error(r, 409, "source_replacement_invalid", "replacement source dev-n is not available for rotated rebuild");
    bt_reply_free(r);
    free(body);
    assert_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_snapshot_replacement_new_source_must_be_unknown)
{
    init_scope("alice");
    commit_user_row_by("alice", "dev-b", 1);   /* dev-b known (active) */
    bt_exec("INSERT INTO sync.source_state (user_pk, source_id, state) SELECT user_pk, 'dev-r', 'reserved' "
            "FROM sync.user_state WHERE user_id = 'alice'");
    char *before = sync_fingerprint();
    static const char *const known[] = { "dev-b", "dev-r" };
    for (int i = 0; i < 2; i++) {
        char *body = replacement("dev-a", known[i], "source_sequence_changed");
        struct bt_reply *r = bt_snapshot_create("alice", "dev-a", body);
        char msg[160];
        snprintf(msg, sizeof msg, "replacement source %s is already known for user alice", known[i]);
        bt_assert_error(r, 409, "source_replacement_invalid", msg);
        bt_reply_free(r);
        free(body);
    }
    assert_unchanged(before);
    free(before);
    /* an unknown previous source (never committed) is retired by an upsert keeping max 0 */
    char *body = replacement("dev-a", "dev-new", "source_sequence_out_of_order");
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    free(body);
    assert_source("dev-a", "retired/0/dev-new/source_sequence_out_of_order");
    assert_source("dev-new", "reserved/0//");
    /* a retired previous without a matching record: the message without "replaced by" is
     * unreachable through the CHECK; the replaced_by_source_id member is always present */
}
END_TEST

START_TEST(test_snapshot_replacement_rolled_back_with_the_snapshot)
{
    init_scope("alice");
    commit_user_row("alice", 1);
    BT_CFG.max_rows_per_snapshot_session = 0;
    bt_exec("UPDATE sync.row_state SET deleted = true");   /* materialization will fail */
    char *before = sync_fingerprint();
    char *body = replacement("dev-a", "dev-n", "history_pruned");
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", body);
    bt_assert_error(r, 500, "snapshot_session_create_failed", NULL);
    bt_reply_free(r);
    free(body);
    assert_unchanged(before);
    free(before);
    assert_source("dev-n", "none");
}
END_TEST

/* ------------------------------------------------------------------------------- chunks, delete */

START_TEST(test_snapshot_chunk_errors)
{
    init_scope("alice");
    init_scope("bob");
    commit_user_row("alice", 1);
    commit_user_row("alice", 2);
    commit_user_row("alice", 3);
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", NULL);
    char *id = created_id(r);
    bt_reply_free(r);
    char *before = sync_fingerprint();
    static const struct {
        const char *after, *max, *message;
    } cases[] = {
        { "x", NULL, "after_row_ordinal must be an integer" },
        { "1.5", "x", "after_row_ordinal must be an integer" },
        { NULL, "x", "max_rows must be an integer" },
        { NULL, "2.0", "max_rows must be an integer" },
        { "-1", NULL, "after_row_ordinal must be >= 0" },
        { "-1", "0", "after_row_ordinal must be >= 0" },
        { NULL, "0", "max_rows must be > 0" },
        { "0", "-5", "max_rows must be > 0" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = bt_snapshot_chunk("alice", "dev-a", id, cases[i].after, cases[i].max);
        bt_assert_error(r, 400, "snapshot_chunk_invalid", cases[i].message);
        bt_reply_free(r);
    }
    r = bt_snapshot_chunk("alice", "dev-a", id, NULL, "0");
    ck_assert_str_eq(r->body, "{\"error\":\"snapshot_chunk_invalid\",\"message\":\"max_rows must be \\u003e 0\"}\n");
    bt_reply_free(r);
    /* the query is read before the id: a bad query on a bad id is 400 */
    r = bt_snapshot_chunk("alice", "dev-a", "not-a-uuid", "x", NULL);
    bt_assert_error(r, 400, "snapshot_chunk_invalid", NULL);
    bt_reply_free(r);
    r = bt_snapshot_chunk("alice", "dev-a", "not-a-uuid", NULL, NULL);
    bt_assert_error(r, 500, "snapshot_chunk_failed", "Failed to get snapshot chunk");
    bt_reply_free(r);
    r = bt_snapshot_chunk("alice", "dev-a", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", NULL, NULL);
    bt_assert_error(r, 404, "snapshot_session_not_found",
                    "snapshot session 6ba7b810-9dad-11d1-80b4-00c04fd430c8 was not found");
    bt_reply_free(r);
    r = bt_snapshot_chunk("bob", "dev-b", id, NULL, NULL);
    char msg[200];
    snprintf(msg, sizeof msg, "snapshot session %s does not belong to the authenticated user", id);
    bt_assert_error(r, 403, "snapshot_session_forbidden", msg);
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    /* PostgreSQL's other spellings of a uuid find the session; the reply echoes the id as sent */
    char upper[64];
    for (size_t i = 0; i <= strlen(id); i++)
        upper[i] = (char)(id[i] >= 'a' && id[i] <= 'f' ? id[i] - 32 : id[i]);
    r = bt_snapshot_chunk("alice", "dev-a", upper, NULL, "1");
    bt_assert_ok(r, 200);
    ck_assert_str_eq(tdb_str(r->json, "snapshot_id"), upper);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    /* max_rows is capped at [bundle] max_rows_per_snapshot_chunk; the default is its default */
    BT_CFG.max_rows_per_snapshot_chunk = 2;
    r = bt_snapshot_chunk("alice", "dev-a", id, NULL, "1000");
    ck_assert_int_eq(len(member(r->json, "rows")), 2);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    BT_CFG.default_rows_per_snapshot_chunk = 1;
    r = bt_snapshot_chunk("alice", "dev-a", id, "", "");
    ck_assert_int_eq(len(member(r->json, "rows")), 1);
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 1);
    bt_reply_free(r);
    /* reads do not extend the expiry; past it: 410 */
    bt_exec("UPDATE sync.snapshot_sessions SET expires_at = now() + interval '1 ms'");
    char *exp = bt_query("SELECT expires_at FROM sync.snapshot_sessions");
    usleep(5000);
    r = bt_snapshot_chunk("alice", "dev-a", id, NULL, NULL);
    bt_assert_error(r, 410, "snapshot_session_expired", NULL);
    bt_reply_free(r);
    char *exp2 = bt_query("SELECT expires_at FROM sync.snapshot_sessions");
    ck_assert_str_eq(exp, exp2);
    free(exp);
    free(exp2);
    /* another user's expired session is 403 first */
    r = bt_snapshot_chunk("bob", "dev-b", id, NULL, NULL);
    bt_assert_error(r, 403, "snapshot_session_forbidden", NULL);
    bt_reply_free(r);
    free(id);
}
END_TEST

START_TEST(test_snapshot_delete)
{
    init_scope("alice");
    init_scope("bob");
    commit_user_row("alice", 1);
    struct bt_reply *r = bt_snapshot_create("alice", "dev-a", NULL);
    char *id = created_id(r);
    bt_reply_free(r);
    char *before = sync_fingerprint();
    r = bt_snapshot_delete("bob", "dev-b", id);
    char msg[200];
    snprintf(msg, sizeof msg, "snapshot session %s does not belong to the authenticated user", id);
    bt_assert_error(r, 403, "snapshot_session_forbidden", msg);
    bt_reply_free(r);
    r = bt_snapshot_delete("alice", "dev-a", "nope");
    bt_assert_error(r, 500, "snapshot_session_delete_failed", "Failed to delete snapshot session");
    bt_reply_free(r);
    r = bt_snapshot_delete("alice", "dev-a", "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
    bt_assert_error(r, 404, "snapshot_session_not_found",
                    "snapshot session 6ba7b810-9dad-11d1-80b4-00c04fd430c8 was not found");
    bt_reply_free(r);
    assert_unchanged(before);
    free(before);
    /* no expiry check: an expired session is deleted too */
    bt_exec("UPDATE sync.snapshot_sessions SET expires_at = now() - interval '1 h'");
    r = bt_snapshot_delete("alice", "dev-b", id);   /* any source of the user */
    bt_assert_ok(r, 204);
    ck_assert_str_eq(r->body, "");
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_sessions"), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.snapshot_session_rows"), 0);
    r = bt_snapshot_delete("alice", "dev-a", id);
    snprintf(msg, sizeof msg, "snapshot session %s was not found", id);
    bt_assert_error(r, 404, "snapshot_session_not_found", msg);
    bt_reply_free(r);
    r = bt_snapshot_chunk("alice", "dev-a", id, NULL, NULL);
    bt_assert_error(r, 404, "snapshot_session_not_found", msg);
    bt_reply_free(r);
    free(id);
}
END_TEST

static Suite *pull_suite(void)
{
    Suite *s = suite_create("bundle_pull");
    TCase *tc = pull_tcase("pull");
    tcase_add_test(tc, test_pull_query_validation);
    tcase_add_test(tc, test_pull_empty_values_are_defaults_and_limits_follow_config);
    tcase_add_test(tc, test_pull_scope_must_be_initialized);
    tcase_add_test(tc, test_pull_empty_scope);
    tcase_add_test(tc, test_pull_wire_rows);
    tcase_add_test(tc, test_pull_payload_passthrough);
    tcase_add_test(tc, test_pull_typed_values_and_bytea);
    tcase_add_test(tc, test_pull_pages_with_target);
    tcase_add_test(tc, test_pull_bundles_never_split_and_other_users_invisible);
    tcase_add_test(tc, test_pull_history_pruned);
    tcase_add_test(tc, test_pull_database_failure);
    tcase_add_test(tc, test_pull_while_others_commit);
    tcase_add_test(tc, test_pull_page_speed);
    suite_add_tcase(s, tc);
    tc = pull_tcase("snapshot");
    tcase_add_test(tc, test_snapshot_create_body_decoding);
    tcase_add_test(tc, test_snapshot_scope_must_be_initialized);
    tcase_add_test(tc, test_snapshot_empty_scope);
    tcase_add_test(tc, test_snapshot_materializes_and_pages);
    tcase_add_test(tc, test_snapshot_fails_closed_on_mismatch);
    tcase_add_test(tc, test_snapshot_limits);
    tcase_add_test(tc, test_snapshot_deletes_expired_sessions_of_every_user);
    tcase_add_test(tc, test_snapshot_replacement_validation);
    tcase_add_test(tc, test_snapshot_replacement_rotates_and_retries);
    tcase_add_test(tc, test_snapshot_replacement_new_source_must_be_unknown);
    tcase_add_test(tc, test_snapshot_replacement_rolled_back_with_the_snapshot);
    tcase_add_test(tc, test_snapshot_chunk_errors);
    tcase_add_test(tc, test_snapshot_delete);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(pull_suite(), NULL);
}
