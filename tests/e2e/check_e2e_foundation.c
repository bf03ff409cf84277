/* oversyncd behind the real lighttpd, configured with the files of lighttpd-example/ as shipped:
 * identity, the error shapes, health/readiness/metrics, and the process model (a killed worker,
 * a database outage, a reload under load, a graceful stop). */
#include "e2e.h"
#include "../run_suites.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHIPPED_WORKERS 4   /* [server] workers in lighttpd-example/oversyncd.conf */

static void assert_json(const struct e2e_response *r)
{
    e2e_assert_header(r, "Content-Type", "application/json");
}

/* An error answer of oversyncd: {"error":"<code>","message":"...."} and nothing else. */
static void assert_error_body(const struct e2e_response *r, const char *code)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "{\"error\":\"%s\",\"message\":\"", code);
    size_t n = strlen(prefix), len = strlen(r->body);
    ck_assert_msg(strncmp(r->body, prefix, n) == 0 && len > n + 2 && strcmp(r->body + len - 2, "\"}") == 0,
                  "expected an error %s, got HTTP %ld %s", code, r->status, r->body);
}

/* --------------------------------------------------------------------------- harness */

START_TEST(test_harness_hmac)
{
    /* RFC 4231, test case 2 */
    unsigned char mac[32];
    e2e_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    ck_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231, test case 6: a key longer than the block */
    unsigned char key[131];
    memset(key, 0xaa, sizeof key);
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    e2e_hmac_sha256(key, sizeof key, msg, strlen(msg), mac);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    ck_assert_str_eq(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    char *b = e2e_base64url("\xfb\xff", 2);
    ck_assert_str_eq(b, "-_8");
    free(b);
    /* jwt.io's example token */
    char *t = e2e_jwt_hs256("your-256-bit-secret", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                            "{\"sub\":\"1234567890\",\"name\":\"John Doe\",\"iat\":1516239022}");
    ck_assert_str_eq(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpva"
                        "G4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
    char *bad = e2e_tamper_signature(t);
    ck_assert_str_ne(bad, t);
    ck_assert_uint_eq(strlen(bad), strlen(t));
    free(bad);
    free(t);
}
END_TEST

START_TEST(test_harness_conf_merge)
{
    const char *base = "[server]\nlisten = unix:/x\n# workers = 9\nworkers = 4\n\n[sync]\nschema_version = 1\n";
    char *m = e2e_conf_merge(base, "[server]\nworkers = 2\n[sync]\nmax_body_bytes = 1kB\n"
                                   "[auth]\njwt_leeway = 0\n[table a.b]\n");
    ck_assert_str_eq(m, "[server]\nlisten = unix:/x\n# workers = 9\nworkers = 2\n\n"
                        "[sync]\nmax_body_bytes = 1kB\nschema_version = 1\n\n"
                        "[auth]\njwt_leeway = 0\n\n[table a.b]\n");
    free(m);
    m = e2e_conf_merge(base, NULL);
    ck_assert_str_eq(m, base);
    free(m);
}
END_TEST

/* ------------------------------------------------------------------------------- API */

START_TEST(test_schema_version)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "alice", "phone", NULL);
    struct e2e_response r;
    e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
    e2e_assert_status(&r, 200);
    assert_json(&r);
    ck_assert_str_eq(r.body, "{\"schema_version\":1}");
    e2e_response_free(&r);
    free(tok);
    e2e_stop(s);
}
END_TEST

/* One 401: JSON unauthorized with the expected message, the challenge header, no token echoed. */
static void check_401(const struct e2e_stack *s, const char *what, const char *authorization,
                      const char *message)
{
    const char *headers[] = { authorization, NULL };
    struct e2e_response r;
    e2e_request_ex(s, "GET", "/sync/schema-version", headers, NULL, 0, &r);
    ck_assert_msg(r.status == 401, "%s: expected 401, got %ld: %s", what, r.status, r.body);
    assert_json(&r);
    assert_error_body(&r, "unauthorized");
    if (message) {
        char *want = malloc(strlen(message) + 32);
        sprintf(want, "\"message\":\"%s\"", message);
        ck_assert_msg(e2e_body_has(&r, want), "%s: expected message \"%s\", body %s", what, message, r.body);
        free(want);
    }
    const char *challenge = e2e_header(&r, "WWW-Authenticate");
    ck_assert_msg(challenge && strncmp(challenge, "Bearer", 6) == 0, "%s: WWW-Authenticate is %s", what,
                  challenge ? challenge : "(absent)");
    if (authorization) {
        const char *cred = strchr(authorization, ' ');
        cred = cred ? strchr(cred + 1, ' ') : NULL;
        if (cred && strlen(cred + 1) > 8)
            ck_assert_msg(!e2e_body_has(&r, cred + 1), "%s: the answer echoes the credential", what);
    }
    e2e_response_free(&r);
}

static char *bearer(const char *token)
{
    char *h = malloc(strlen(token) + 32);
    sprintf(h, "Authorization: Bearer %s", token);
    return h;
}

START_TEST(test_unauthorized)
{
    struct e2e_stack *s = e2e_start(&(struct e2e_options){ .oversyncd_conf = "[auth]\njwt_leeway = 0\n" });
    const char *secret = e2e_jwt_secret();

    /* The harness signs exactly like oversyncd: so the crafted tokens below fail for the reason
     * they were made for, not for a bad signature. */
    char *minted = e2e_token(s, "alice", "phone", NULL);
    const char *dot = strrchr(minted, '.');
    unsigned char mac[32];
    e2e_hmac_sha256(secret, strlen(secret), minted, (size_t)(dot - minted), mac);
    char *sig = e2e_base64url(mac, sizeof mac);
    ck_assert_str_eq(sig, dot + 1);
    free(sig);

    long now = (long)time(NULL);
    char payload[256];
    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"did\":\"phone\",\"iat\":%ld,\"exp\":%ld}", now, now + 600);
    char *good = e2e_jwt_hs256(secret, NULL, payload);
    char *h = bearer(good);
    const char *headers[] = { h, NULL };
    struct e2e_response r;
    e2e_request_ex(s, "GET", "/sync/schema-version", headers, NULL, 0, &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);
    free(h);

    check_401(s, "no Authorization header", NULL, "missing Authorization header");
    check_401(s, "Basic scheme", "Authorization: Basic YWxpY2U6c2VjcmV0", "Authorization scheme must be Bearer");
    check_401(s, "garbage token", "Authorization: Bearer this-is-not-a-jwt-at-all", "malformed token");
    check_401(s, "three garbage parts", "Authorization: Bearer aaaa.bbbb.cccc", NULL);

    char *tampered = e2e_tamper_signature(minted);
    h = bearer(tampered);
    check_401(s, "tampered signature", h, "invalid token signature");
    free(h);
    free(tampered);

    char *other = e2e_jwt_hs256("another-secret-of-more-than-32-bytes-abcdef", NULL, payload);
    h = bearer(other);
    check_401(s, "signed with another secret", h, "invalid token signature");
    free(h);
    free(other);

    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"did\":\"phone\",\"iat\":%ld,\"exp\":%ld}", now - 120, now - 5);
    char *expired = e2e_jwt_hs256(secret, NULL, payload);
    h = bearer(expired);
    check_401(s, "expired (crafted)", h, "token expired");
    free(h);
    free(expired);

    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"did\":\"phone\",\"exp\":%ld}", now + 600);
    char *none = e2e_jwt_hs256(secret, "{\"alg\":\"none\",\"typ\":\"JWT\"}", payload);
    h = bearer(none);
    check_401(s, "alg none", h, NULL);
    free(h);
    free(none);

    /* Time claims json-c reads as numbers but that are no time: without the range check such a
     * token would never expire. */
    static const char *const bad_exp[] = { "NaN", "Infinity", "1e400", "1e300", "99999999999999999999" };
    for (size_t i = 0; i < sizeof bad_exp / sizeof bad_exp[0]; i++) {
        snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"did\":\"phone\",\"exp\":%s}", bad_exp[i]);
        char *never = e2e_jwt_hs256(secret, NULL, payload);
        h = bearer(never);
        check_401(s, bad_exp[i], h, "claim exp must be a finite number within the 64-bit time range");
        free(h);
        free(never);
    }

    /* Identities that would authenticate and then fail every query (not UTF-8) or forge a log
     * line (a newline). */
    static const struct {
        const char *sub, *did, *message;
    } bad_ids[] = {
        { "al\xff" "ice", "phone", "claim sub is not valid UTF-8" },
        { "alice\\n2026-01-01T00:00:00.000Z info forged", "phone", "claim sub contains a control character" },
        { "alice", "\\u001b[2J", "claim did contains a control character" },
    };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"did\":\"%s\",\"exp\":%ld}", bad_ids[i].sub,
                 bad_ids[i].did, now + 600);
        char *bad_id = e2e_jwt_hs256(secret, NULL, payload);
        h = bearer(bad_id);
        check_401(s, bad_ids[i].message, h, bad_ids[i].message);
        free(h);
        free(bad_id);
    }
    /* Workers write request lines once idle (docs/operations.md): a marker request whose line is
     * in the log shows the lines of the requests before it are there too. */
    struct e2e_response marker;
    e2e_request(s, "GET", "/no-such-route-log-marker", NULL, NULL, &marker);
    ck_assert_int_eq(marker.status, 404);
    e2e_response_free(&marker);
    long log_deadline = e2e_now_ms() + 10000;
    while (!e2e_file_has(e2e_oversyncd_log_path(s), "/no-such-route-log-marker") && e2e_now_ms() < log_deadline)
        e2e_sleep_ms(20);
    ck_assert_msg(e2e_file_has(e2e_oversyncd_log_path(s), "/no-such-route-log-marker"), "the marker request is logged");
    e2e_sleep_ms(100);
    ck_assert(!e2e_file_has(e2e_oversyncd_log_path(s), "info forged"));
    ck_assert(e2e_file_has(e2e_oversyncd_log_path(s), "status=401") ||
              e2e_file_has(e2e_oversyncd_log_path(s), "\"status\":401"));

    /* The real thing: a token minted with a one-second lifetime, used once it has run out. */
    char *short_lived = e2e_token(s, "alice", "phone", "1s");
    e2e_sleep_ms(2100);
    h = bearer(short_lived);
    check_401(s, "expired (--ttl 1s)", h, "token expired");
    free(h);
    free(short_lived);

    free(good);
    free(minted);
    e2e_stop(s);
}
END_TEST

START_TEST(test_not_found_and_wrong_method)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "alice", "phone", NULL);
    struct e2e_response r;

    e2e_request(s, "GET", "/nope", NULL, NULL, &r);
    e2e_assert_status(&r, 404);
    assert_json(&r);
    assert_error_body(&r, "not_found");
    e2e_response_free(&r);

    e2e_request(s, "GET", "/sync/upload", tok, NULL, &r);
    e2e_assert_status(&r, 405);
    assert_json(&r);
    e2e_assert_header(&r, "Allow", "POST");
    assert_error_body(&r, "method_not_allowed");
    e2e_response_free(&r);

    e2e_request(s, "POST", "/sync/schema-version", tok, "{}", &r);
    e2e_assert_status(&r, 405);
    e2e_assert_header(&r, "Allow", "GET");
    e2e_assert_body_has(&r, "\"error\":\"method_not_allowed\"");
    e2e_response_free(&r);

    free(tok);
    e2e_stop(s);
}
END_TEST

/* The retry endpoint refuses a bad failure id with 400 and an exact message, and writes nothing:
 * the caller's failure list stays empty and no change reaches the log. */
START_TEST(test_retry_bad_ids)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "bad-ids", "phone", NULL);
    struct e2e_response r;
    static const struct {
        const char *path, *body, *message;
    } cases[] = {
        { "/admin/materialize-failures/retry?id=abc", "", "id must be a positive integer" },
        { "/admin/materialize-failures/retry?id=0", "", "id must be a positive integer" },
        { "/admin/materialize-failures/retry?id=-3", "", "id must be a positive integer" },
        { "/admin/materialize-failures/retry?id=", "", "id must be a positive integer" },
        { "/admin/materialize-failures/retry", "{\"id\":0}", "id must be a positive integer" },
        { "/admin/materialize-failures/retry", "{\"id\":\"7\"}", "id must be a positive integer" },
        { "/admin/materialize-failures/retry", "{\"id\":1.5}", "id must be a positive integer" },
        { "/admin/materialize-failures/retry", "{}", "id is required (?id=N or {\\\"id\\\": N})" },
        { "/admin/materialize-failures/retry", "[1]", "the body must be a JSON object like {\\\"id\\\": 42}" },
        { "/admin/materialize-failures/retry", "{\"id\":", "the body must be a JSON object like {\\\"id\\\": 42}" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        e2e_request(s, "POST", cases[i].path, tok, cases[i].body, &r);
        ck_assert_msg(r.status == 400, "%s %s: status %ld, body %s", cases[i].path, cases[i].body, r.status, r.body);
        assert_json(&r);
        assert_error_body(&r, "invalid_request");
        char *want = e2e_strf("\"message\":\"%s\"", cases[i].message);
        ck_assert_msg(e2e_body_has(&r, want), "%s %s: want %s in %s", cases[i].path, cases[i].body, want, r.body);
        free(want);
        e2e_response_free(&r);
    }
    e2e_request(s, "GET", "/admin/materialize-failures", tok, NULL, &r);
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "[]");
    e2e_response_free(&r);
    e2e_request(s, "GET", "/sync/download?include_self=true", tok, NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"changes\":[]");
    e2e_response_free(&r);
    free(tok);
    e2e_stop(s);
}
END_TEST

/* A malformed query parameter is refused with 400 naming it, on every route that reads one:
 * "schema=pub%00lic" was read as "pub" and a bad escape was taken raw. Nothing is written.
 * The shipped lighttpd.conf already refuses encoded control characters itself (an HTML 400) and
 * rewrites a bad escape to %25, but nginx and Apache pass both on as they come: this lighttpd
 * (no URL normalization, control characters allowed) does too, so oversyncd sees them. */
START_TEST(test_malformed_query)
{
    struct e2e_stack *s = e2e_start(&(struct e2e_options){
        .lighttpd_conf = "server.http-parseopts := ( \"header-strict\" => \"enable\", \"host-strict\" => \"enable\", "
                         "\"url-normalize\" => \"disable\", \"url-ctrls-reject\" => \"disable\" )\n" });
    char *tok = e2e_token(s, "bad-query", "phone", NULL);
    struct e2e_response r;
#define NUL_BYTE(p) "query parameter " p " is malformed: %00 (a NUL byte) is not allowed"
#define BAD_ESCAPE(p) "query parameter " p " is malformed: a bad percent escape (% must be followed by two hex digits)"
    static const struct {
        const char *method, *path, *message;
    } cases[] = {
        { "GET", "/sync/download?schema=pub%00lic", NUL_BYTE("schema") },
        { "GET", "/sync/download?after=0%00", NUL_BYTE("after") },
        { "GET", "/sync/download?limit=%zz", BAD_ESCAPE("limit") },
        { "GET", "/sync/download?include_self=true%", BAD_ESCAPE("include_self") },
        { "GET", "/sync/download?until=%4", BAD_ESCAPE("until") },
        { "GET", "/admin/materialize-failures?schema=pub%00lic", NUL_BYTE("schema") },
        { "GET", "/admin/materialize-failures?table=%zzusers", BAD_ESCAPE("table") },
        { "POST", "/admin/materialize-failures/retry?id=1%00", NUL_BYTE("id") },
        { "POST", "/admin/materialize-failures/retry?id=%", BAD_ESCAPE("id") },
    };
#undef NUL_BYTE
#undef BAD_ESCAPE
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        e2e_request(s, cases[i].method, cases[i].path, tok, strcmp(cases[i].method, "POST") == 0 ? "" : NULL, &r);
        ck_assert_msg(r.status == 400, "%s: status %ld, body %s", cases[i].path, r.status, r.body);
        const char *type = e2e_header(&r, "Content-Type");
        ck_assert_msg(type && strcmp(type, "application/json") == 0, "%s: Content-Type %s, body %s",
                      cases[i].path, type ? type : "(absent)", r.body);
        char *want = e2e_strf("{\"error\":\"invalid_request\",\"message\":\"%s\"}", cases[i].message);
        ck_assert_msg(strcmp(r.body, want) == 0, "%s: want %s, got %s", cases[i].path, want, r.body);
        free(want);
        e2e_response_free(&r);
    }
    /* the well-formed spelling of the same parameter is served */
    e2e_request(s, "GET", "/sync/download?schema=pub%6Cic&include_self=true", tok, NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"changes\":[]");
    e2e_response_free(&r);
    e2e_request(s, "GET", "/admin/materialize-failures", tok, NULL, &r);
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "[]");
    e2e_response_free(&r);
    free(tok);
    e2e_stop(s);
}
END_TEST

START_TEST(test_payload_too_large)
{
    struct e2e_stack *s = e2e_start(&(struct e2e_options){ .oversyncd_conf = "[sync]\nmax_body_bytes = 1kB\n" });
    char *tok = e2e_token(s, "alice", "phone", NULL);
    struct e2e_response r;

    /* Exactly the limit is accepted: an empty batch padded with blanks to 1024 bytes. */
    char body[4097];
    memset(body, ' ', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    memcpy(body, "{\"changes\":[]", 13);
    body[1023] = '}';
    e2e_request_ex(s, "POST", "/sync/upload", (const char *[]){ "Authorization: Bearer x", NULL },
                   body, 1024, &r);
    e2e_assert_status(&r, 401);   /* a small body gets as far as authentication */
    e2e_response_free(&r);
    char *auth = bearer(tok);
    const char *headers[] = { auth, NULL };
    e2e_request_ex(s, "POST", "/sync/upload", headers, body, 1024, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"accepted\":true");
    e2e_response_free(&r);

    /* 1025 bytes and 4 kB: refused by oversyncd itself (lighttpd's own limit is far higher). */
    body[1023] = ' ';
    body[1024] = '}';
    e2e_request_ex(s, "POST", "/sync/upload", headers, body, 1025, &r);
    e2e_assert_status(&r, 413);
    assert_json(&r);
    assert_error_body(&r, "payload_too_large");
    e2e_response_free(&r);

    body[1024] = ' ';
    body[4095] = '}';
    e2e_request_ex(s, "POST", "/sync/upload", headers, body, 4096, &r);
    e2e_assert_status(&r, 413);
    assert_json(&r);
    assert_error_body(&r, "payload_too_large");
    ck_assert_msg(e2e_header(&r, "X-Request-Id") != NULL, "the 413 does not come from oversyncd");
    e2e_response_free(&r);

    /* Refused before authentication: no token needed to learn the body is too large. */
    e2e_request_ex(s, "POST", "/sync/upload", NULL, body, 4096, &r);
    e2e_assert_status(&r, 413);
    e2e_assert_body_has(&r, "\"error\":\"payload_too_large\"");
    e2e_response_free(&r);

    /* The worker that refused is fine afterwards. */
    for (int i = 0; i < 8; i++) {
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        e2e_assert_status(&r, 200);
        e2e_response_free(&r);
    }
    free(auth);
    free(tok);
    e2e_stop(s);
}
END_TEST

/* The largest peak resident memory (VmHWM, kB) of the stack's workers. */
static long workers_vmhwm_kb(const struct e2e_stack *s)
{
    pid_t pids[64];
    int n = e2e_worker_pids(s, pids, 64);
    long max = 0;
    for (int i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pids[i]);
        char *text = e2e_read_file(path);
        const char *h = text ? strstr(text, "\nVmHWM:") : NULL;
        long kb = h ? strtol(h + 7, NULL, 10) : 0;
        if (kb > max)
            max = kb;
        free(text);
    }
    return max;
}

/* A body of max_body_bytes (16 MB as shipped) made of minimal changes, far over max_upload_changes
 * (issue #9): answered 200 with one invalid/bad_payload status per change, exactly as SPEC §4
 * says, with the right Content-Length although the answer (some 140 MB) is sent as it is written,
 * and no worker's peak resident memory reaches 64 MiB (before: several hundred MiB). */
START_TEST(test_oversized_batch_bounded_memory)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "e2e-oversized", "phone", NULL);
    char *auth = e2e_strf("Authorization: Bearer %s", tok);
    const char *headers[] = { auth, NULL };
    const size_t limit = 16 * 1024 * 1024;
    char *body = malloc(limit + 1);
    ck_assert_ptr_nonnull(body);
    size_t len = (size_t)snprintf(body, limit, "{\"changes\":[");
    long n = 0;
    for (;; n++) {
        char el[64];
        int k = snprintf(el, sizeof el, "%s{\"source_change_id\":%ld}", n ? "," : "", n * 3 - 1);
        if (len + (size_t)k + 2 > limit)
            break;
        memcpy(body + len, el, (size_t)k);
        len += (size_t)k;
    }
    memcpy(body + len, "]}", 3);
    len += 2;

    struct e2e_response r;
    e2e_request_ex(s, "POST", "/sync/upload", headers, body, len, &r);
    e2e_assert_status(&r, 200);
    assert_json(&r);
    char want_len[32];
    snprintf(want_len, sizeof want_len, "%zu", r.body_len);
    e2e_assert_header(&r, "Content-Length", want_len);
    const char *head = "{\"accepted\":true,\"highest_server_seq\":0,\"statuses\":[";
    ck_assert_msg(strncmp(r.body, head, strlen(head)) == 0, "answer starts %.200s", r.body);
    const char *p = r.body + strlen(head);
    char msg[96];
    snprintf(msg, sizeof msg, "batch too large: %ld changes; the limit is 1000", n);
    for (long i = 0; i < n; i++) {
        char want[512];
        int k = snprintf(want, sizeof want,
                         "%s{\"source_change_id\":%ld,\"status\":\"invalid\",\"message\":\"%s\",\"invalid\":"
                         "{\"reason\":\"bad_payload\",\"details\":{\"error\":\"%s\"}}}",
                         i ? "," : "", i * 3 - 1, msg, msg);
        ck_assert_msg((size_t)(r.body + r.body_len - p) >= (size_t)k && memcmp(p, want, (size_t)k) == 0,
                      "status %ld of %ld differs: %.300s", i, n, p);
        p += k;
    }
    ck_assert_str_eq(p, "]}");
    e2e_response_free(&r);
    long hwm = workers_vmhwm_kb(s);
    ck_assert_msg(hwm > 0 && hwm < 64 * 1024, "a worker's peak resident memory was %ld kB", hwm);

    /* the worker is fine afterwards, and nothing was written */
    e2e_request(s, "POST", "/sync/upload", tok, "{\"changes\":[]}", &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "{\"accepted\":true,\"highest_server_seq\":0,\"statuses\":[]}");
    e2e_response_free(&r);
    free(body);
    free(auth);
    free(tok);
    e2e_stop(s);
}
END_TEST

START_TEST(test_health_ready_metrics)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "alice", "phone", NULL);
    struct e2e_response r;

    e2e_request(s, "GET", "/health", NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    assert_json(&r);
    ck_assert_str_eq(r.body, "{\"status\":\"healthy\",\"service\":\"oversyncd\"}");
    e2e_response_free(&r);

    e2e_request(s, "GET", "/ready", NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    assert_json(&r);
    e2e_response_free(&r);

    for (int i = 0; i < 3; i++) {
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        e2e_assert_status(&r, 200);
        e2e_response_free(&r);
    }
    e2e_request(s, "GET", "/sync/schema-version", NULL, NULL, &r);
    e2e_assert_status(&r, 401);
    e2e_response_free(&r);
    e2e_request(s, "GET", "/nope", NULL, NULL, &r);
    e2e_assert_status(&r, 404);
    e2e_response_free(&r);

    ck_assert(e2e_wait_metric(s, "oversyncd_http_requests_total{route=\"/sync/schema-version\",status=\"200\"}", 3, 2000));
    ck_assert(e2e_wait_metric(s, "oversyncd_http_requests_total{route=\"/sync/schema-version\",status=\"401\"}", 1, 2000));
    ck_assert(e2e_wait_metric(s, "oversyncd_http_requests_total{route=\"/health\",status=\"200\"}", 2, 2000));
    ck_assert(e2e_wait_metric(s, "oversyncd_http_requests_total{route=\"/ready\",status=\"200\"}", 1, 2000));
    ck_assert(e2e_wait_metric(s, "oversyncd_http_requests_total{route=\"other\",status=\"404\"}", 1, 2000));

    e2e_request(s, "GET", "/metrics", NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    const char *type = e2e_header(&r, "Content-Type");
    ck_assert_msg(type && strncmp(type, "text/plain", 10) == 0, "Content-Type %s", type ? type : "(absent)");
    e2e_assert_body_has(&r, "# TYPE oversyncd_http_requests_total counter\n");
    ck_assert_msg(e2e_metric(r.body, "oversyncd_http_requests_total{route=\"/sync/schema-version\",status=\"200\"}") == 3,
                  "schema-version 200 count: %s", r.body);
    ck_assert_msg(e2e_metric(r.body, "oversyncd_worker_restarts_total") == 0, "restarts: %s", r.body);
    e2e_response_free(&r);

    /* lighttpd.conf keeps /metrics for 127.0.0.1, also under a prefix that oversyncd's router
     * would accept (/sync/metrics). 127.0.0.2 is another client on the loopback. */
    const char *hidden[] = { "/metrics", "/sync/metrics", "/metrics/", "/admin/metrics" };
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        e2e_request_from(s, "127.0.0.2", "GET", hidden[i], &r);
        ck_assert_msg(r.status == 403, "GET %s from 127.0.0.2: HTTP %ld (%s) %.200s", hidden[i], r.status,
                      r.error, r.body);
        ck_assert_msg(!e2e_body_has(&r, "oversyncd_"), "metrics leaked to 127.0.0.2");
        e2e_response_free(&r);
    }
    e2e_request_from(s, "127.0.0.2", "GET", "/health", &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);

    free(tok);
    e2e_stop(s);
}
END_TEST

/* The shipped oversyncd.conf materializes the example business tables (sql/examples/business.sql)
 * with the generic materializer: the reference client's payloads land in business.*. */
START_TEST(test_materializes_business_tables)
{
    struct e2e_stack *s = e2e_start(NULL);
    char user[64];
    snprintf(user, sizeof user, "mat-%x", (unsigned)getpid() ^ (unsigned)time(NULL));
    char *tok = e2e_token(s, user, "phone", NULL);
    unsigned tag = ((unsigned)getpid() * 2654435761u) ^ (unsigned)time(NULL);
    char pu[40], pp[40], pf[40], pr[40];
    snprintf(pu, sizeof pu, "%08x-0000-4000-8000-0000000000a1", tag);
    snprintf(pp, sizeof pp, "%08x-0000-4000-8000-0000000000a2", tag);
    snprintf(pf, sizeof pf, "%08x-0000-4000-8000-0000000000a3", tag);
    snprintf(pr, sizeof pr, "%08x-0000-4000-8000-0000000000a4", tag);
    char *q = e2e_strf("SELECT encode(decode(replace('%s', '-', ''), 'hex'), 'base64')", pf);
    char *file_b64 = e2e_psql(q);
    ck_assert(file_b64 != NULL);
    free(q);
    /* as the reference client sends them: a child before its parent, Unix seconds, base64 */
    char *body = e2e_strf(
        "{\"last_server_seq_seen\":0,\"changes\":["
        "{\"source_change_id\":1,\"schema\":\"business\",\"table\":\"posts\",\"op\":\"INSERT\",\"pk\":\"%s\","
        "\"server_version\":0,\"payload\":{\"id\":\"%s\",\"title\":\"Hello\",\"content\":\"first post\","
        "\"author_id\":\"%s\",\"created_at\":1754636460,\"updated_at\":1754636460}},"
        "{\"source_change_id\":2,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"%s\","
        "\"server_version\":0,\"payload\":{\"id\":\"%s\",\"name\":\"Ada\",\"email\":\"ada@example.com\","
        "\"created_at\":1754636460,\"updated_at\":1754636460}},"
        "{\"source_change_id\":3,\"schema\":\"business\",\"table\":\"files\",\"op\":\"INSERT\",\"pk\":\"%s\","
        "\"server_version\":0,\"payload\":{\"id\":\"%s\",\"name\":\"a.txt\",\"data\":\"aGVsbG8=\"}},"
        "{\"source_change_id\":4,\"schema\":\"business\",\"table\":\"file_reviews\",\"op\":\"INSERT\",\"pk\":\"%s\","
        "\"server_version\":0,\"payload\":{\"id\":\"%s\",\"review\":\"fine\",\"file_id\":\"%s\"}}]}",
        pp, pp, pu, pu, pu, pf, file_b64, pr, pr, file_b64);
    struct e2e_response r;
    e2e_request(s, "POST", "/sync/upload", tok, body, &r);
    e2e_assert_status(&r, 200);
    for (int scid = 1; scid <= 4; scid++) {
        char want[96];
        snprintf(want, sizeof want, "{\"source_change_id\":%d,\"status\":\"applied\",\"new_server_version\":1}", scid);
        e2e_assert_body_has(&r, want);
    }
    e2e_response_free(&r);
    q = e2e_strf("SELECT u.name || ' ' || u.email || ' ' || to_char(u.created_at AT TIME ZONE 'UTC', 'HH24:MI:SS')"
                 " || ' | ' || p.title || ' ' || p.author_id || ' | ' || encode(f.data, 'escape')"
                 " || ' | ' || r.review || ' ' || r.file_id"
                 " FROM business.users u, business.posts p, business.files f, business.file_reviews r"
                 " WHERE u.id = '%s' AND p.id = '%s' AND f.id = '%s' AND r.id = '%s'", pu, pp, pf, pr);
    char *rows = e2e_psql(q);
    char *want = e2e_strf("Ada ada@example.com 07:01:00 | Hello %s | hello | fine %s", pu, pf);
    ck_assert_msg(rows && strcmp(rows, want) == 0, "business tables: got \"%s\", want \"%s\"", rows ? rows : "(psql failed)",
                  want);
    free(q), free(rows), free(want);

    /* A delete reaches the business table too (children first). */
    free(body);
    body = e2e_strf("{\"changes\":["
                    "{\"source_change_id\":5,\"schema\":\"business\",\"table\":\"files\",\"op\":\"DELETE\",\"pk\":\"%s\","
                    "\"server_version\":1},"
                    "{\"source_change_id\":6,\"schema\":\"business\",\"table\":\"file_reviews\",\"op\":\"DELETE\","
                    "\"pk\":\"%s\",\"server_version\":1}]}", pf, pr);
    e2e_request(s, "POST", "/sync/upload", tok, body, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "{\"source_change_id\":5,\"status\":\"applied\",\"new_server_version\":2}");
    e2e_assert_body_has(&r, "{\"source_change_id\":6,\"status\":\"applied\",\"new_server_version\":2}");
    e2e_response_free(&r);
    q = e2e_strf("SELECT count(*) FROM business.files WHERE id = '%s'", pf);
    rows = e2e_psql(q);
    ck_assert_msg(rows && strcmp(rows, "0") == 0, "the deleted file is still in business.files (%s)", rows ? rows : "?");
    free(q), free(rows), free(body);

    /* A user without its NOT NULL email fails the set-based statement of business.users: the
     * upload is materialized again change by change, that change alone is answered
     * materialize_error, and the fallback is counted. */
    char pu2[40], pu3[40];
    snprintf(pu2, sizeof pu2, "%08x-0000-4000-8000-0000000000a5", tag);
    snprintf(pu3, sizeof pu3, "%08x-0000-4000-8000-0000000000a6", tag);
    body = e2e_strf("{\"changes\":["
                    "{\"source_change_id\":7,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"%s\","
                    "\"server_version\":0,\"payload\":{\"name\":\"no email\"}},"
                    "{\"source_change_id\":8,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"%s\","
                    "\"server_version\":0,\"payload\":{\"name\":\"Bo\",\"email\":\"bo@example.com\"}}]}",
                    pu2, pu3);
    e2e_request(s, "POST", "/sync/upload", tok, body, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "{\"source_change_id\":7,\"status\":\"materialize_error\",\"new_server_version\":1,"
                            "\"message\":\"null value in column \\\"email\\\"");
    e2e_assert_body_has(&r, "{\"source_change_id\":8,\"status\":\"applied\",\"new_server_version\":1}");
    e2e_response_free(&r);
    ck_assert(e2e_wait_metric(s, "oversyncd_sync_materialize_fallbacks_total", 1, 2000));
    ck_assert(e2e_wait_metric(s, "oversyncd_sync_materialize_errors_total", 1, 2000));
    ck_assert_msg(e2e_fetch_metric(s, "oversyncd_sync_materialize_fallbacks_total") == 1,
                  "oversyncd_sync_materialize_fallbacks_total is not 1");
    q = e2e_strf("SELECT count(*) FROM business.users WHERE id IN ('%s', '%s')", pu2, pu3);
    rows = e2e_psql(q);
    ck_assert_msg(rows && strcmp(rows, "1") == 0, "business.users holds %s of the two users, not 1", rows ? rows : "?");
    free(q), free(rows), free(body), free(file_b64), free(tok);
    e2e_stop(s);
}
END_TEST

/* --------------------------------------------------------------------------- processes */

START_TEST(test_worker_killed)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "alice", "phone", NULL);
    pid_t before[16], after[16];
    int n = e2e_wait_workers(s, SHIPPED_WORKERS, before, 16, 5000);
    ck_assert_int_eq(n, SHIPPED_WORKERS);

    pid_t victim = before[1];
    ck_assert_int_eq(kill(victim, SIGKILL), 0);
    long t0 = e2e_now_ms();
    struct e2e_response r;
    bool health = e2e_wait_answer(s, "GET", "/health", NULL, 200, "{\"status\":\"healthy\",\"service\":\"oversyncd\"}", 2000, &r);
    e2e_response_free(&r);
    bool sync = e2e_wait_answer(s, "GET", "/sync/schema-version", tok, 200, "{\"schema_version\":1}", 2000, &r);
    e2e_response_free(&r);
    long took = e2e_now_ms() - t0;
    ck_assert_msg(health && sync && took <= 2000, "the pool did not answer within 2 s (health %d, sync %d, %ld ms)",
                  health, sync, took);

    /* The master reaped the worker and replaced it. */
    ck_assert_msg(e2e_wait_pids_gone(&victim, 1, 2000), "the killed worker %d is still there", (int)victim);
    n = e2e_wait_workers(s, SHIPPED_WORKERS, after, 16, 2000);
    ck_assert_int_eq(n, SHIPPED_WORKERS);
    for (int i = 0; i < n; i++)
        ck_assert_int_ne(after[i], victim);
    for (int i = 0; i < 3 * SHIPPED_WORKERS; i++) {
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        e2e_assert_status(&r, 200);
        e2e_response_free(&r);
    }
    ck_assert(e2e_wait_metric(s, "oversyncd_worker_restarts_total", 1, 2000));
    ck_assert_msg(e2e_fetch_metric(s, "oversyncd_worker_restarts_total") == 1, "restarts_total is not 1");
    free(tok);
    e2e_stop(s);
}
END_TEST

/* A worker killed in the middle of a request: the request is lost, and lighttpd answers it with
 * its own HTML 500 ("unexpected end-of-file (perhaps the fastcgi process died)" in its error log).
 * The upload wrote nothing, so the client's retry of the same batch applies it
 * (lighttpd-example/README.md, docs/operations.md). */
struct upload_call {
    const struct e2e_stack *s;
    const char *tok, *body;
    struct e2e_response r;
};

static void *upload_thread(void *arg)
{
    struct upload_call *c = arg;
    e2e_request(c->s, "POST", "/sync/upload", c->tok, c->body, &c->r);
    return NULL;
}

START_TEST(test_worker_killed_mid_request)
{
    struct e2e_stack *s = e2e_start(NULL);
    char user[64];
    snprintf(user, sizeof user, "midreq-%x", (unsigned)getpid() ^ (unsigned)time(NULL));
    char *tok = e2e_token(s, user, "phone", NULL);
    unsigned tag = ((unsigned)getpid() * 2654435761u) ^ (unsigned)time(NULL);
    char pk[40];
    snprintf(pk, sizeof pk, "%08x-0000-4000-8000-0000000000b1", tag);
    char *body = e2e_strf("{\"changes\":[{\"source_change_id\":1,\"schema\":\"business\",\"table\":\"users\","
                          "\"op\":\"INSERT\",\"pk\":\"%s\",\"server_version\":0,"
                          "\"payload\":{\"id\":\"%s\",\"name\":\"Ada\",\"email\":\"ada@example.com\"}}]}", pk, pk);

    /* Hold the user's upload lock for a while, so that the upload waits inside a worker. */
    char *holder_log = e2e_strf("%s/psql-holder.log", e2e_dir(s));
    pid_t holder = e2e_hold_upload_lock(user, 3, holder_log);
    pthread_t th;
    struct upload_call call = { .s = s, .tok = tok, .body = body };
    ck_assert_int_eq(pthread_create(&th, NULL, upload_thread, &call), 0);
    ck_assert_msg(e2e_wait_upload_waiting(5000), "the upload does not wait for the lock");

    /* The upload is inside one of the workers: kill them all. */
    pid_t workers[16];
    int n = e2e_worker_pids(s, workers, 16);
    ck_assert_int_eq(n, SHIPPED_WORKERS);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(kill(workers[i], SIGKILL), 0);
    pthread_join(th, NULL);
    ck_assert_msg(call.r.status == 500, "a request whose worker was killed: HTTP %ld %s", call.r.status, call.r.body);
    const char *type = e2e_header(&call.r, "Content-Type");
    ck_assert_msg(type && strncmp(type, "text/html", 9) == 0, "lighttpd's 500 has Content-Type %s", type ? type : "-");
    ck_assert_msg(e2e_header(&call.r, "X-Request-Id") == NULL, "the 500 came from oversyncd");
    e2e_response_free(&call.r);

    /* The client retries the same batch: nothing of the first attempt was written, so the retry
     * is applied as new (version 1), once the lock is free and the workers are back. */
    bool applied = false;
    struct e2e_response r;
    long deadline = e2e_now_ms() + 15000;
    while (!applied && e2e_now_ms() < deadline) {
        e2e_request(s, "POST", "/sync/upload", tok, body, &r);
        applied = r.status == 200;
        if (applied)
            e2e_assert_body_has(&r, "{\"source_change_id\":1,\"status\":\"applied\",\"new_server_version\":1}");
        e2e_response_free(&r);
        if (!applied)
            e2e_sleep_ms(100);
    }
    ck_assert_msg(applied, "the retry was not answered 200 within 15 s");
    char *q = e2e_strf("SELECT count(*) FROM sync.server_change_log WHERE user_id = '%s'", user);
    char *count = e2e_psql(q);
    ck_assert_msg(count && strcmp(count, "1") == 0, "%s change-log rows after the retry", count ? count : "?");
    free(q), free(count);

    e2e_stop_spawned(holder, SIGTERM, 5000, NULL);
    free(holder_log), free(body), free(tok);
    e2e_stop(s);
}
END_TEST

START_TEST(test_database_outage)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "alice", "phone", NULL);
    pid_t master = e2e_master_pid(s);
    pid_t before[16], after[16];
    int n = e2e_wait_workers(s, SHIPPED_WORKERS, before, 16, 5000);
    ck_assert_int_eq(n, SHIPPED_WORKERS);
    struct e2e_response r;
    for (int i = 0; i < 2 * SHIPPED_WORKERS; i++) {
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        e2e_assert_status(&r, 200);
        e2e_response_free(&r);
    }

    e2e_pg_stop();
    /* Every worker notices by itself: each answer is oversyncd's JSON 503 (lighttpd's own 503,
     * for a backend it gave up on, would be HTML without our X-Request-Id). */
    for (int i = 0; i < 2 * SHIPPED_WORKERS; i++) {
        e2e_request(s, "GET", "/ready", NULL, NULL, &r);
        e2e_assert_status(&r, 503);
        assert_json(&r);
        assert_error_body(&r, "database_unavailable");
        ck_assert(e2e_header(&r, "X-Request-Id") != NULL);
        e2e_response_free(&r);
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        e2e_assert_status(&r, 503);
        assert_json(&r);
        assert_error_body(&r, "database_unavailable");
        e2e_response_free(&r);
    }
    e2e_request(s, "GET", "/health", NULL, NULL, &r);   /* alive, even without a database */
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);

    e2e_pg_start();
    /* Workers retry with a back-off of up to 2 s: wait until a run of answers, enough to reach
     * every worker, all succeed. */
    long deadline = e2e_now_ms() + 15000;
    int streak = 0;
    long last_status = 0;
    while (streak < 4 * SHIPPED_WORKERS && e2e_now_ms() < deadline) {
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        last_status = r.status;
        if (r.status == 200) {
            streak++;
        } else {
            ck_assert_msg(r.status == 503 && e2e_body_has(&r, "\"error\":\"database_unavailable\""),
                          "while reconnecting: HTTP %ld %s", r.status, r.body);
            streak = 0;
            e2e_sleep_ms(50);
        }
        e2e_response_free(&r);
    }
    ck_assert_msg(streak >= 4 * SHIPPED_WORKERS, "no steady 200 after PostgreSQL came back (last HTTP %ld)", last_status);
    ck_assert(e2e_wait_answer(s, "GET", "/ready", NULL, 200, NULL, 5000, &r));
    e2e_response_free(&r);

    /* The same processes: nothing was restarted. */
    ck_assert_int_eq(e2e_master_pid(s), master);
    ck_assert(e2e_pid_alive(master));
    n = e2e_worker_pids(s, after, 16);
    ck_assert_int_eq(n, SHIPPED_WORKERS);
    for (int i = 0; i < n; i++)
        ck_assert_msg(after[i] == before[i], "worker %d was replaced by %d", (int)before[i], (int)after[i]);
    double reconnects = e2e_fetch_metric(s, "oversyncd_db_reconnects_total");
    ck_assert_msg(reconnects >= 1, "oversyncd_db_reconnects_total = %g", reconnects);
    ck_assert(e2e_fetch_metric(s, "oversyncd_worker_restarts_total") == 0);
    free(tok);
    e2e_stop(s);
}
END_TEST

struct hammer {
    const struct e2e_stack *stack;
    const char *token;
    atomic_bool stop;
    atomic_long total, failures, saw_v1, saw_v2;
    char first_failure[640];
    pthread_mutex_t lock;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        struct e2e_response r;
        e2e_request(h->stack, "GET", "/sync/schema-version", h->token, NULL, &r);
        atomic_fetch_add(&h->total, 1);
        if (r.status == 200 && strcmp(r.body, "{\"schema_version\":1}") == 0) {
            atomic_fetch_add(&h->saw_v1, 1);
        } else if (r.status == 200 && strcmp(r.body, "{\"schema_version\":2}") == 0) {
            atomic_fetch_add(&h->saw_v2, 1);
        } else {
            if (atomic_fetch_add(&h->failures, 1) == 0) {
                pthread_mutex_lock(&h->lock);
                snprintf(h->first_failure, sizeof h->first_failure, "HTTP %ld (%s) %.300s", r.status,
                         r.error, r.body);
                pthread_mutex_unlock(&h->lock);
            }
        }
        e2e_response_free(&r);
    }
    return NULL;
}

START_TEST(test_reload_under_load)
{
    struct e2e_stack *s = e2e_start(NULL);
    char *tok = e2e_token(s, "alice", "phone", NULL);
    pid_t before[16], after[16];
    int n = e2e_wait_workers(s, SHIPPED_WORKERS, before, 16, 5000);
    ck_assert_int_eq(n, SHIPPED_WORKERS);

    static struct hammer h;
    memset(&h, 0, sizeof h);
    h.stack = s;
    h.token = tok;
    pthread_mutex_init(&h.lock, NULL);
    pthread_t threads[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, hammer_main, &h), 0);
    e2e_sleep_ms(300);

    e2e_rewrite_conf(s, "[sync]\nschema_version = 2\n");
    e2e_reload(s);
    struct e2e_response r;
    bool switched = e2e_wait_answer(s, "GET", "/sync/schema-version", tok, 200, "{\"schema_version\":2}", 10000, &r);
    e2e_response_free(&r);
    /* The old workers finish and leave; keep the load on a little longer. */
    bool old_gone = e2e_wait_pids_gone(before, n, 10000);
    e2e_sleep_ms(500);
    atomic_store(&h.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);

    ck_assert_msg(switched, "schema_version 2 was never served after SIGHUP");
    ck_assert_msg(old_gone, "the old workers are still running 10 s after SIGHUP");
    ck_assert_msg(atomic_load(&h.failures) == 0, "%ld of %ld requests failed during the reload; first: %s",
                  atomic_load(&h.failures), atomic_load(&h.total), h.first_failure);
    ck_assert_msg(atomic_load(&h.total) >= 50, "only %ld requests were made", atomic_load(&h.total));
    ck_assert_msg(atomic_load(&h.saw_v1) > 0 && atomic_load(&h.saw_v2) > 0,
                  "the load did not span the reload (v1 %ld, v2 %ld)", atomic_load(&h.saw_v1),
                  atomic_load(&h.saw_v2));

    n = e2e_wait_workers(s, SHIPPED_WORKERS, after, 16, 2000);
    ck_assert_int_eq(n, SHIPPED_WORKERS);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < SHIPPED_WORKERS; j++)
            ck_assert_int_ne(after[i], before[j]);
    for (int i = 0; i < 2 * SHIPPED_WORKERS; i++) {
        e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
        e2e_assert_status(&r, 200);
        ck_assert_str_eq(r.body, "{\"schema_version\":2}");
        e2e_response_free(&r);
    }
    ck_assert(e2e_fetch_metric(s, "oversyncd_worker_restarts_total") == 0);
    pthread_mutex_destroy(&h.lock);
    free(tok);
    e2e_stop(s);
}
END_TEST

START_TEST(test_sigterm)
{
    struct e2e_stack *s = e2e_start(NULL);
    pid_t workers[16];
    int n = e2e_wait_workers(s, SHIPPED_WORKERS, workers, 16, 5000);
    ck_assert_int_eq(n, SHIPPED_WORKERS);
    struct stat st;
    ck_assert_int_eq(stat(e2e_socket_path(s), &st), 0);
    ck_assert_int_eq(stat(e2e_pid_file_path(s), &st), 0);

    long t0 = e2e_now_ms();
    int status = e2e_stop_oversyncd(s, SIGTERM, 10000);
    long took = e2e_now_ms() - t0;
    ck_assert_msg(status != -1, "oversyncd still runs 10 s after SIGTERM");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "oversyncd ended with status 0x%x", status);
    ck_assert_msg(took <= 5000, "oversyncd took %ld ms to stop", took);
    ck_assert_msg(e2e_wait_pids_gone(workers, n, 2000), "workers outlived the master");
    errno = 0;
    ck_assert_msg(stat(e2e_socket_path(s), &st) != 0 && errno == ENOENT, "the socket file is still there");
    ck_assert_msg(stat(e2e_pid_file_path(s), &st) != 0 && errno == ENOENT, "the pid file is still there");

    /* lighttpd is still up, with nobody behind it: it answers 503 itself (not oversyncd's JSON)
     * and stops trying the backend for "disable-time" (1 s). */
    struct e2e_response r;
    e2e_request(s, "GET", "/health", NULL, NULL, &r);
    e2e_assert_status(&r, 503);
    ck_assert_msg(e2e_header(&r, "X-Request-Id") == NULL, "a 503 from oversyncd, which is stopped?");
    e2e_response_free(&r);

    /* Started again on the same socket, it is used again once lighttpd's disable-time has run
     * out: lighttpd counts it in whole seconds and re-checks once a second, so one to three
     * seconds after the failed connect (README.md). Until then every answer is lighttpd's 503. */
    e2e_start_oversyncd(s);
    t0 = e2e_now_ms();
    long deadline = t0 + 5000;
    for (;;) {
        e2e_request(s, "GET", "/health", NULL, NULL, &r);
        if (r.status == 200)
            break;
        ck_assert_msg(r.status == 503 && e2e_header(&r, "X-Request-Id") == NULL,
                      "while lighttpd waits to retry: HTTP %ld %s", r.status, r.body);
        ck_assert_msg(e2e_now_ms() < deadline, "lighttpd did not use the restarted oversyncd within 5 s");
        e2e_response_free(&r);
        e2e_sleep_ms(20);
    }
    e2e_assert_body_has(&r, "{\"status\":\"healthy\",\"service\":\"oversyncd\"}");
    e2e_response_free(&r);
    took = e2e_now_ms() - t0;
    ck_assert_msg(took < 5000, "lighttpd took %ld ms to use the restarted oversyncd", took);
    e2e_stop(s);
}
END_TEST

static Suite *foundation_suite(void)
{
    Suite *s = suite_create("e2e_foundation");

    TCase *tc = tcase_create("harness");
    tcase_add_test(tc, test_harness_hmac);
    tcase_add_test(tc, test_harness_conf_merge);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_schema_version);
    tcase_add_test(tc, test_unauthorized);
    tcase_add_test(tc, test_not_found_and_wrong_method);
    tcase_add_test(tc, test_payload_too_large);
    tcase_add_test(tc, test_oversized_batch_bounded_memory);
    tcase_add_test(tc, test_retry_bad_ids);
    tcase_add_test(tc, test_malformed_query);
    tcase_add_test(tc, test_health_ready_metrics);
    tcase_add_test(tc, test_materializes_business_tables);
    suite_add_tcase(s, tc);

    tc = tcase_create("processes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_worker_killed);
    tcase_add_test(tc, test_worker_killed_mid_request);
    tcase_add_test(tc, test_database_outage);
    tcase_add_test(tc, test_reload_under_load);
    tcase_add_test(tc, test_sigterm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(foundation_suite(), NULL);
}
