/* The bundle protocol end to end: oversyncd with [sync] protocol = bundle behind the lighttpd of
 * lighttpd-example/, on a database of its own (the example tables of
 * sql/examples/bundle-business.sql), over real HTTP: the routes of a bundle deployment (and the
 * absence of the upload protocol's), the Oversync-Source-ID header, authentication, the JSON
 * encoding of the reference, and the test-only routes of [bundle] test_routes shared across the
 * workers. The protocol's semantics are tested in tests/integration/check_bundle_*.c and by
 * go-oversync's own clients (tests/compat/run-1f1118f.sh). */
#include "bundle_stack.h"
#include "e2e.h"
#include "../run_suites.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct e2e_stack *start(const char *extra)
{
    return bundle_stack_start("e2e_bundle", "e2e-bundle", extra);
}

START_TEST(test_bundle_deployment_routes)
{
    struct e2e_stack *s = start(NULL);
    char *tok = e2e_token(s, "alice", "ignored", NULL);
    struct e2e_response r;

    bundle_stack_req(s, "GET", "/sync/capabilities", tok, "dev-a", NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_header(&r, "Content-Type", "application/json");
    e2e_assert_body_has(&r, "\"protocol_version\":\"v1\"");
    e2e_assert_body_has(&r, "\"app_name\":\"e2e-bundle\"");
    e2e_assert_body_has(&r, "\"registered_tables\":[\"business.file_reviews\",\"business.files\",\"business.posts\","
                            "\"business.users\"]");
    ck_assert_msg(r.body_len && r.body[r.body_len - 1] == '\n', "a trailing newline");
    e2e_response_free(&r);

    /* the source header is required (after the token) */
    bundle_stack_req(s, "GET", "/sync/capabilities", tok, NULL, NULL, &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "\"message\":\"Oversync-Source-ID header is required\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "   ", "{}", &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "\"error\":\"invalid_request\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/capabilities", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 401);
    e2e_response_free(&r);

    /* connect through the web server */
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-a", "{\"has_local_pending_rows\":false}", &r);
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "{\"resolution\":\"initialize_empty\"}\n");
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-b", "{\"has_local_pending_rows\":true}", &r);
    ck_assert_str_eq(r.body, "{\"resolution\":\"remote_authoritative\"}\n");
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-b", "not json", &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "Failed to parse connect request");
    e2e_response_free(&r);

    /* unauthenticated information */
    bundle_stack_req(s, "GET", "/syncx/health", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"status\":\"healthy\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/syncx/status", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"lifecycle\":\"running\"");
    e2e_response_free(&r);

    /* the upload protocol's routes do not exist here, nor the test routes (not enabled) */
    static const char *const absent[][2] = { { "POST", "/sync/upload" }, { "GET", "/sync/download" },
                                             { "GET", "/sync/schema-version" }, { "POST", "/test/e2e/setup" } };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        bundle_stack_req(s, absent[i][0], absent[i][1], tok, "dev-a", absent[i][0][0] == 'P' ? "{}" : NULL, &r);
        e2e_assert_status(&r, 404);
        e2e_response_free(&r);
    }
    bundle_stack_req(s, "GET", "/sync/connect", tok, "dev-a", NULL, &r);
    e2e_assert_status(&r, 405);
    e2e_response_free(&r);
    /* the shared routes do */
    bundle_stack_req(s, "GET", "/health", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);

    /* a source id past the identity check's 255 bytes: 400, nothing written */
    char longsrc[300];
    memset(longsrc, 's', sizeof longsrc - 1);
    longsrc[sizeof longsrc - 1] = '\0';
    bundle_stack_req(s, "POST", "/sync/connect", tok, longsrc, "{\"has_local_pending_rows\":true}", &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "{\"error\":\"invalid_request\",\"message\":\"Oversync-Source-ID is longer than 255 bytes\"}");
    e2e_response_free(&r);
    char *n = bundle_stack_sql("SELECT count(*) FROM sync.scope_state WHERE state_code = 1");
    ck_assert_str_eq(n, "0");
    free(n);

    /* a reload that switches protocols is refused (here by the check of the tables, which carry
     * sync keys that protocol = upload refuses); the deployment keeps serving the bundle protocol */
    e2e_rewrite_conf(s, "[sync]\nprotocol = upload\n");
    e2e_reload(s);
    const char *refusal = "reload refused, keeping the running configuration: ";
    long t0 = e2e_now_ms();
    while (!e2e_file_has(e2e_oversyncd_log_path(s), refusal) && e2e_now_ms() - t0 < 10000)
        e2e_sleep_ms(50);
    ck_assert_msg(e2e_file_has(e2e_oversyncd_log_path(s), refusal), "the refusal is logged");
    ck_assert(e2e_file_has(e2e_oversyncd_log_path(s), "sync_key applies only to protocol = bundle"));
    bundle_stack_req(s, "GET", "/sync/capabilities", tok, "dev-a", NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);
    free(tok);
    bundle_stack_stop(s);
}
END_TEST

START_TEST(test_test_routes)
{
    struct e2e_stack *s = start("[bundle]\ntest_routes = on\n");
    char *tok = e2e_token(s, "carol", "x", NULL);
    struct e2e_response r;

    /* bad setups answer 400 and change nothing */
    static const char *const bad[] = { "", "[]", "{}", "{\"business_schema\":\"\"}", "{\"business_schema\":\"a-b\"}",
                                       "{\"business_schema\":\"s\",\"initialization_lease_ttl_ms\":-1}",
                                       "{\"business_schema\":\"s\",\"empty_first_deferral_ms\":\"5\"}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bundle_stack_req(s, "POST", "/test/e2e/setup", NULL, NULL, bad[i], &r);
        e2e_assert_status(&r, 400);
        e2e_assert_body_has(&r, "\"error\":\"invalid_request\"");
        e2e_response_free(&r);
    }
    char *schemas = bundle_stack_sql("SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN "
                          "('business', 'sync', 's')");
    ck_assert_msg(strstr(schemas, "business,sync"), "nothing dropped: %s", schemas);
    free(schemas);

    bundle_stack_req(s, "POST", "/test/e2e/setup", NULL, NULL,
        "{\"business_schema\":\"E2E_Case_1\",\"app_name\":\"hooked\",\"initialization_lease_ttl_ms\":200}", &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"business_schema\":\"e2e_case_1\"");
    e2e_assert_body_has(&r, "\"e2e_case_1.users\"]");
    e2e_response_free(&r);
    schemas = bundle_stack_sql("SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN "
                    "('business', 'sync', 'e2e_case_1')");
    ck_assert_str_eq(schemas, "e2e_case_1,sync");
    free(schemas);
    /* every worker serves the new registry and settings */
    for (int i = 0; i < 6; i++) {
        bundle_stack_req(s, "GET", "/sync/capabilities", tok, "dev", NULL, &r);
        e2e_assert_status(&r, 200);
        e2e_assert_body_has(&r, "\"app_name\":\"hooked\"");
        e2e_assert_body_has(&r, "\"e2e_case_1.typed_rows\"");
        e2e_response_free(&r);
    }

    /* injected failures: counted across workers, then normal service */
    bundle_stack_req(s, "POST", "/test/e2e/failures", NULL, NULL, "{\"endpoint\":\"capabilities\",\"status_code\":503,\"count\":3}",
        &r);
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\",\"endpoint\":\"capabilities\",\"count\":3}\n");
    e2e_response_free(&r);
    for (int i = 0; i < 4; i++) {
        bundle_stack_req(s, "GET", "/sync/capabilities", NULL, NULL, NULL, &r);   /* before authentication */
        if (i < 3) {
            e2e_assert_status(&r, 503);
            e2e_assert_body_has(&r, "{\"error\":\"injected_failure\",\"message\":\"injected capabilities failure\"}");
        } else {
            e2e_assert_status(&r, 401);
        }
        e2e_response_free(&r);
    }
    bundle_stack_req(s, "POST", "/test/e2e/failures", NULL, NULL,
        "{\"endpoint\":\"connect\",\"status_code\":500,\"count\":1,\"body\":{\"error\":\"x\",\"message\":\"y\"}}", &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev", "{}", &r);
    e2e_assert_status(&r, 500);
    e2e_assert_body_has(&r, "{\"error\":\"x\",\"message\":\"y\"}");
    e2e_response_free(&r);
    static const char *const bad_failures[] = { "{\"endpoint\":\"nope\",\"status_code\":503,\"count\":1}",
                                                "{\"endpoint\":\"pull\",\"status_code\":99,\"count\":1}",
                                                "{\"endpoint\":\"pull\",\"status_code\":\"503\",\"count\":1}",
                                                "not json" };
    for (size_t i = 0; i < sizeof bad_failures / sizeof bad_failures[0]; i++) {
        bundle_stack_req(s, "POST", "/test/e2e/failures", NULL, NULL, bad_failures[i], &r);
        e2e_assert_status(&r, 400);
        e2e_response_free(&r);
    }
    char *n = bundle_stack_sql("SELECT count(*) FROM public.oversyncd_test_failures WHERE remaining > 0");
    ck_assert_str_eq(n, "0");
    free(n);

    /* the lease TTL of the setup: 200 ms */
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-a", "{\"has_local_pending_rows\":true}", &r);
    e2e_assert_body_has(&r, "\"resolution\":\"initialize_local\"");
    e2e_response_free(&r);
    e2e_sleep_ms(300);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-b", "{\"has_local_pending_rows\":true}", &r);
    e2e_assert_body_has(&r, "\"resolution\":\"initialize_local\"");
    e2e_response_free(&r);

    /* the empty-first deferral */
    bundle_stack_req(s, "POST", "/test/e2e/setup", NULL, NULL,
        "{\"business_schema\":\"e2e_case_2\",\"empty_first_deferral\":true,\"empty_first_deferral_ms\":400}", &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-a", "{\"has_local_pending_rows\":false}", &r);
    e2e_assert_body_has(&r, "\"resolution\":\"retry_later\"");
    e2e_assert_body_has(&r, "\"retry_after_seconds\":1");
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-b", "{\"has_local_pending_rows\":false}", &r);
    e2e_assert_body_has(&r, "\"resolution\":\"retry_later\"");
    e2e_response_free(&r);
    e2e_sleep_ms(450);
    bundle_stack_req(s, "POST", "/sync/connect", tok, "dev-a", "{\"has_local_pending_rows\":false}", &r);
    e2e_assert_body_has(&r, "\"resolution\":\"initialize_empty\"");
    e2e_response_free(&r);
    free(tok);
    bundle_stack_stop(s);
}
END_TEST

/* The value of a string member (compact JSON), or "" (malloc'd). */
static char *member(const char *body, const char *name)
{
    char *key = e2e_strf("\"%s\":\"", name);
    const char *p = strstr(body, key);
    char *out;
    if (!p) {
        out = strdup("");
    } else {
        p += strlen(key);
        out = strndup(p, strcspn(p, "\""));
    }
    free(key);
    return out;
}

START_TEST(test_push_pull_through_lighttpd)
{
    struct e2e_stack *s = start(NULL);
    char *tok = e2e_token(s, "dora", "x", NULL);
    struct e2e_response r;
    const char *uid = "0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

    bundle_stack_req(s, "POST", "/sync/connect", tok, "phone", "{\"has_local_pending_rows\":false}", &r);
    e2e_assert_body_has(&r, "initialize_empty");
    e2e_response_free(&r);
    bundle_stack_req(s, "POST", "/sync/push-sessions", tok, "phone", "{\"source_bundle_id\":1,\"planned_row_count\":1}", &r);
    e2e_assert_status(&r, 200);
    char *push_id = member(r.body, "push_id");
    e2e_response_free(&r);
    char *path = e2e_strf("/sync/push-sessions/%s/chunks", push_id);
    char *chunk = e2e_strf("{\"start_row_ordinal\":0,\"rows\":[{\"schema\":\"business\",\"table\":\"users\","
                           "\"key\":{\"id\":\"%s\"},\"op\":\"INSERT\",\"base_row_version\":0,"
                           "\"payload\":{\"id\":\"%s\",\"name\":\"D<&>\",\"email\":\"d@example.com\"}}]}",
                           uid, uid);
    bundle_stack_req(s, "POST", path, tok, "phone", chunk, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"next_expected_row_ordinal\":1");
    e2e_response_free(&r);
    free(path);
    /* the commit has no body: Content-Length 0 through lighttpd */
    path = e2e_strf("/sync/push-sessions/%s/commit", push_id);
    const char *h[] = { NULL, "Oversync-Source-ID: phone", NULL };
    char *auth = e2e_strf("Authorization: Bearer %s", tok);
    h[0] = auth;
    e2e_request_ex(s, "POST", path, h, "", 0, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"bundle_seq\":1,\"source_id\":\"phone\",\"source_bundle_id\":1,\"row_count\":1");
    e2e_response_free(&r);
    free(path);

    /* the committed rows and a pull from another device; HTML-safe escapes as the reference */
    bundle_stack_req(s, "GET", "/sync/committed-bundles/1/rows", tok, "phone", NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"name\":\"D\\u003c\\u0026\\u003e\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/pull?after_bundle_seq=0&max_bundles=10", tok, "laptop", NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"stable_bundle_seq\":1");
    e2e_assert_body_has(&r, uid);
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/pull?after_bundle_seq=x", tok, "laptop", NULL, &r);
    e2e_assert_status(&r, 400);
    e2e_response_free(&r);

    /* a snapshot, paged and deleted (204 through the web server) */
    bundle_stack_req(s, "POST", "/sync/snapshot-sessions", tok, "laptop", "{}", &r);
    e2e_assert_status(&r, 200);
    char *snap = member(r.body, "snapshot_id");
    e2e_response_free(&r);
    path = e2e_strf("/sync/snapshot-sessions/%s?after_row_ordinal=0&max_rows=5", snap);
    bundle_stack_req(s, "GET", path, tok, "laptop", NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, uid);
    e2e_response_free(&r);
    free(path);
    path = e2e_strf("/sync/snapshot-sessions/%s", snap);
    bundle_stack_req(s, "DELETE", path, tok, "laptop", NULL, &r);
    e2e_assert_status(&r, 204);
    ck_assert_int_eq(r.body_len, 0);
    e2e_response_free(&r);
    bundle_stack_req(s, "DELETE", path, tok, "laptop", NULL, &r);
    e2e_assert_status(&r, 404);
    e2e_response_free(&r);
    free(path);

    /* a replay of the committed push: already_committed */
    bundle_stack_req(s, "POST", "/sync/push-sessions", tok, "phone", "{\"source_bundle_id\":1,\"planned_row_count\":1}", &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"status\":\"already_committed\"");
    e2e_response_free(&r);
    free(snap);
    free(chunk);
    free(auth);
    free(push_id);
    free(tok);
    bundle_stack_stop(s);
}
END_TEST

static Suite *bundle_suite(void)
{
    Suite *s = suite_create("e2e_bundle");
    TCase *tc = tcase_create("lighttpd");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bundle_deployment_routes);
    tcase_add_test(tc, test_test_routes);
    tcase_add_test(tc, test_push_pull_through_lighttpd);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(bundle_suite(), NULL);
}
