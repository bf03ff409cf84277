/* The bundle protocol's lifecycle and information endpoints against a real PostgreSQL:
 * POST /sync/connect (SPEC-v2 §3.1, every row of its table, the lease, bad bodies writing
 * nothing), GET /sync/capabilities (§3.12) and GET /syncx/health|status (§3.13). */
#include "bundletest.h"
#include "../run_suites.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *str(const struct bt_reply *r, const char *key)
{
    return tdb_str(r->json, key);
}

static int scope_code(const char *user)
{
    return (int)bt_count("SELECT coalesce((SELECT ss.state_code FROM sync.scope_state ss JOIN sync.user_state us "
                         "USING (user_pk) WHERE us.user_id = '%s'), -1)",
                         user);
}

/* ------------------------------------------------------------------------------- connect */

START_TEST(test_connect_uninitialized_without_rows_initializes_empty)
{
    struct bt_reply *r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":false}");
    bt_assert_ok(r, 200);
    ck_assert_str_eq(r->body, "{\"resolution\":\"initialize_empty\"}\n");
    ck_assert_int_eq(scope_code("alice"), 2);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE initialized_by_source_id = 'dev-a' "
                              "AND initialized_at IS NOT NULL"),
                     1);
    bt_reply_free(r);
    /* then the scope is authoritative for everybody */
    r = bt_connect("alice", "dev-b", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(r->body, "{\"resolution\":\"remote_authoritative\"}\n");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_connect_lease_lifecycle)
{
    struct bt_reply *r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":true}");
    bt_assert_ok(r, 200);
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    char *id = strdup(str(r, "initialization_id"));
    ck_assert_int_eq(strlen(id), 36);
    const char *lease = str(r, "lease_expires_at");
    ck_assert_msg(lease[strlen(lease) - 1] == 'Z', "UTC: %s", lease);
    ck_assert_int_eq(scope_code("alice"), 1);
    bt_reply_free(r);

    /* another source waits, told how long */
    r = bt_connect("alice", "dev-b", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(str(r, "resolution"), "retry_later");
    long long retry = tdb_int(r->json, "retry_after_seconds");
    ck_assert_msg(retry >= 890 && retry <= 900, "retry_after_seconds %lld", retry);
    ck_assert(tdb_has(r->json, "lease_expires_at"));
    ck_assert(!tdb_has(r->json, "initialization_id"));
    bt_reply_free(r);
    r = bt_connect("alice", "dev-b", "{\"has_local_pending_rows\":false}");
    ck_assert_str_eq(str(r, "resolution"), "retry_later");
    bt_reply_free(r);
    ck_assert_int_eq(scope_code("alice"), 1);

    /* the holder reconnects: the same id, the lease extended */
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() + interval '10 s'");
    r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    ck_assert_str_eq(str(r, "initialization_id"), id);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE lease_expires_at > "
                              "clock_timestamp() + interval '800 s'"),
                     1);
    bt_reply_free(r);

    /* the holder has nothing after all: initialized by it */
    r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":false}");
    ck_assert_str_eq(r->body, "{\"resolution\":\"initialize_empty\"}\n");
    ck_assert_int_eq(scope_code("alice"), 2);
    bt_reply_free(r);
    free(id);
}
END_TEST

START_TEST(test_connect_expired_lease_is_uninitialized)
{
    struct bt_reply *r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":true}");
    char *id = strdup(str(r, "initialization_id"));
    bt_reply_free(r);
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() - interval '1 s'");
    /* another source takes over with a lease of its own */
    r = bt_connect("alice", "dev-b", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    ck_assert_str_ne(str(r, "initialization_id"), id);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE initializer_source_id = 'dev-b'"), 1);
    bt_reply_free(r);
    /* a short configured lease */
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() - interval '1 s'");
    BT_CFG.initialization_lease_ttl_ms = 200;
    r = bt_connect("alice", "dev-c", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    bt_reply_free(r);
    usleep(300 * 1000);
    r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":false}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_empty");
    bt_reply_free(r);
    free(id);
}
END_TEST

START_TEST(test_connect_retry_after_is_at_least_one)
{
    struct bt_reply *r = bt_connect("alice", "dev-a", "{\"has_local_pending_rows\":true}");
    bt_reply_free(r);
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() + interval '400 ms'");
    r = bt_connect("alice", "dev-b", "{}");
    ck_assert_str_eq(str(r, "resolution"), "retry_later");
    ck_assert_int_eq(tdb_int(r->json, "retry_after_seconds"), 1);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_connect_go_decoding)
{
    /* keys case-insensitive, unknown keys ignored, null is false, trailing bytes ignored */
    struct bt_reply *r = bt_connect("u1", "s", "{\"HAS_LOCAL_PENDING_ROWS\":true,\"x\":[1]}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    bt_reply_free(r);
    r = bt_connect("u2", "s", "{\"has_local_pending_rows\":null}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_empty");
    bt_reply_free(r);
    r = bt_connect("u3", "s", "  {\"has_local_pending_rows\":true} trailing");
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    bt_reply_free(r);
    r = bt_connect("u4", "s", "null");
    ck_assert_str_eq(str(r, "resolution"), "initialize_empty");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_connect_bad_bodies_write_nothing)
{
    static const char *const bad[] = {
        "", "   ", "{", "[]", "true", "\"x\"", "{\"has_local_pending_rows\":1}",
        "{\"has_local_pending_rows\":\"true\"}", "{\"has_local_pending_rows\":tru}", "{'a':1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bt_reply *r = bt_connect("alice", "dev-a", bad[i]);
        bt_assert_error(r, 400, "invalid_request", "Failed to parse connect request");
        ck_assert_str_eq(r->body, "{\"error\":\"invalid_request\",\"message\":\"Failed to parse connect request\"}\n");
        bt_reply_free(r);
    }
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.user_state"), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state"), 0);
}
END_TEST

START_TEST(test_connect_any_user_and_source_strings)
{
    const char *user = "user with spaces <&> \xc3\xa9";
    struct bt_reply *r = bt_connect(user, "src \"quoted\"", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(str(r, "resolution"), "initialize_local");
    bt_reply_free(r);
    r = bt_connect(user, "other", "{\"has_local_pending_rows\":true}");
    ck_assert_str_eq(str(r, "resolution"), "retry_later");
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE initializer_source_id = 'src \"quoted\"'"),
                     1);
}
END_TEST

/* -------------------------------------------------------------------------- capabilities */

START_TEST(test_capabilities)
{
    struct bt_reply *r = bt_capabilities("alice", "dev-a");
    bt_assert_ok(r, 200);
    ck_assert_str_eq(str(r, "protocol_version"), "v1");
    ck_assert_int_eq(tdb_int(r->json, "schema_version"), 1);
    ck_assert_str_eq(str(r, "app_name"), "bundle-test");
    json_object *tables = tdb_get(r->json, "registered_tables");
    ck_assert_int_eq(json_object_array_length(tables), 9);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(tables, 0)), "business.categories");
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(tables, 3)), "business.notes");
    json_object *spec = json_object_array_get_idx(tdb_get(r->json, "registered_table_specs"), 3);
    ck_assert(tdb_json_eq(spec, "{\"schema\":\"business\",\"table\":\"notes\",\"sync_key_columns\":[\"slug\"]}"));
    json_object *f = tdb_get(r->json, "features");
    ck_assert_int_eq(json_object_object_length(f), 20);
    json_object_object_foreach(f, k, v)
    {
        bool expect = strcmp(k, "server_checkpoint_tracking") != 0 && strcmp(k, "bundle_change_watch") != 0;
        ck_assert_msg(json_object_get_boolean(v) == expect, "feature %s", k);
    }
    ck_assert(tdb_json_eq(tdb_get(r->json, "bundle_limits"),
                          "{\"max_bundles_per_pull\":5000,\"default_rows_per_push_chunk\":1000,"
                          "\"max_rows_per_push_chunk\":5000,\"push_session_ttl_seconds\":900,"
                          "\"default_rows_per_committed_bundle_chunk\":1000,"
                          "\"max_rows_per_committed_bundle_chunk\":5000,\"default_rows_per_snapshot_chunk\":1000,"
                          "\"max_rows_per_snapshot_chunk\":5000,\"snapshot_session_ttl_seconds\":900,"
                          "\"initialization_lease_ttl_seconds\":900}"));
    bt_reply_free(r);

    /* watch on, snapshot limits set: advertised */
    BT_CFG.bundle_watch = true;
    BT_CFG.max_rows_per_snapshot_session = 7;
    BT_CFG.max_bytes_per_snapshot_session = 4096;
    r = bt_capabilities("alice", "dev-a");
    ck_assert(json_object_get_boolean(tdb_get(tdb_get(r->json, "features"), "bundle_change_watch")));
    ck_assert_int_eq(tdb_int(tdb_get(r->json, "bundle_limits"), "max_rows_per_snapshot_session"), 7);
    ck_assert_int_eq(tdb_int(tdb_get(r->json, "bundle_limits"), "max_bytes_per_snapshot_session"), 4096);
    bt_reply_free(r);
    /* an app name with <&> is escaped as the reference escapes it */
    free(BT_CFG.app_name);
    BT_CFG.app_name = strdup("a<b>&c");
    r = bt_capabilities("alice", "dev-a");
    ck_assert_ptr_nonnull(strstr(r->body, "\"app_name\":\"a\\u003cb\\u003e\\u0026c\""));
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.user_state"), 0);   /* reads nothing, writes nothing */
}
END_TEST

/* -------------------------------------------------------------------------------- status */

START_TEST(test_status_empty_and_aggregates)
{
    struct bt_reply *r = bt_status(false);
    bt_assert_ok(r, 200);
    ck_assert_str_eq(str(r, "status"), "healthy");
    ck_assert_str_eq(str(r, "version"), "v1");
    ck_assert_str_eq(str(r, "lifecycle"), "running");
    ck_assert(tdb_bool(r->json, "accepting_operations"));
    ck_assert_int_eq(json_object_array_length(tdb_get(r->json, "registered_tables")), 9);
    ck_assert_int_eq(json_object_object_length(tdb_get(r->json, "features")), 20);
    ck_assert_int_eq(tdb_int(r->json, "latest_bundle_seq_max"), 0);
    ck_assert_int_eq(tdb_int(r->json, "committed_bundle_count"), 0);
    bt_reply_free(r);

    bt_exec("INSERT INTO sync.user_state (user_id, next_bundle_seq, retained_bundle_floor) VALUES "
            "('a', 11, 4), ('b', 3, 0)");
    bt_exec("INSERT INTO sync.bundle_log (user_pk, bundle_seq, source_id, source_bundle_id, row_count, byte_count, "
            "bundle_hash) SELECT user_pk, 5, 's', 1, 1, 100, decode(repeat('00', 32), 'hex') FROM sync.user_state "
            "WHERE user_id = 'a'");
    bt_exec("SELECT nextval('sync.rejected_registered_write_seq'), nextval('sync.rejected_registered_write_seq')");
    r = bt_status(true);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "latest_bundle_seq_max"), 10);
    ck_assert_int_eq(tdb_int(r->json, "retained_bundle_floor_min"), 0);
    ck_assert_int_eq(tdb_int(r->json, "retained_bundle_floor_max"), 4);
    ck_assert_int_eq(tdb_int(r->json, "retained_bundle_window_min"), 2);
    ck_assert_int_eq(tdb_int(r->json, "retained_bundle_window_max"), 6);
    ck_assert_int_eq(tdb_int(r->json, "committed_bundle_count"), 1);
    ck_assert_int_eq(tdb_int(r->json, "committed_bundle_bytes"), 100);
    ck_assert_int_eq(tdb_int(r->json, "rejected_registered_write_count"), 2);
    ck_assert_int_eq(tdb_int(r->json, "history_pruned_error_count"), 0);
    ck_assert_int_eq(tdb_int(r->json, "user_state_retention_floor_ahead_count"), 0);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_health_unhealthy_when_a_floor_is_ahead)
{
    /* the CHECK forbids it; an operator's hand (as the reference's tests do) gets past it */
    bt_exec("ALTER TABLE sync.user_state DROP CONSTRAINT user_state_retained_floor_chk");
    bt_exec("INSERT INTO sync.user_state (user_id, next_bundle_seq, retained_bundle_floor) VALUES ('a', 2, 5)");
    struct bt_reply *r = bt_status(true);
    ck_assert_int_eq(r->status, 503);
    ck_assert_ptr_null(r->error);
    ck_assert_str_eq(str(r, "status"), "unhealthy");
    ck_assert_int_eq(tdb_int(r->json, "user_state_retention_floor_ahead_count"), 1);
    bt_reply_free(r);
    r = bt_status(false);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(str(r, "status"), "unhealthy");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_status_database_failure)
{
    bt_exec("ALTER TABLE sync.bundle_log RENAME TO bundle_log_gone");
    struct bt_reply *r = bt_status(false);
    bt_assert_error(r, 500, "status_failed", "Failed to get service status");
    bt_reply_free(r);
    r = bt_status(true);
    bt_assert_error(r, 500, "health_failed", "Failed to get health status");
    bt_reply_free(r);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("bundle_api");
    TCase *tc = bt_tcase("connect");
    tcase_add_test(tc, test_connect_uninitialized_without_rows_initializes_empty);
    tcase_add_test(tc, test_connect_lease_lifecycle);
    tcase_add_test(tc, test_connect_expired_lease_is_uninitialized);
    tcase_add_test(tc, test_connect_retry_after_is_at_least_one);
    tcase_add_test(tc, test_connect_go_decoding);
    tcase_add_test(tc, test_connect_bad_bodies_write_nothing);
    tcase_add_test(tc, test_connect_any_user_and_source_strings);
    suite_add_tcase(s, tc);
    tc = bt_tcase("info");
    tcase_add_test(tc, test_capabilities);
    tcase_add_test(tc, test_status_empty_and_aggregates);
    tcase_add_test(tc, test_health_unhealthy_when_a_floor_is_ahead);
    tcase_add_test(tc, test_status_database_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(api_suite(), NULL);
}
