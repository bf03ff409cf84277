/* Unit tests for the HTTP request layer (src/http/request.c) over an in-memory transport. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <sys/socket.h>

#include "arena.h"
#include "http/http.h"
#include "http/fcgi.h"
#include "log.h"
#include "strbuf.h"
#include "../run_suites.h"

/* ------------------------------------------------------------------ fake transport */

#define FAKE_MAX_PARAMS 16

struct fake {
    const char *names[FAKE_MAX_PARAMS];
    const char *values[FAKE_MAX_PARAMS];
    int nparams;

    const char *body;      /* bytes the "web server" delivers */
    size_t body_len;
    size_t pos;            /* bytes delivered so far */
    size_t chunk;          /* at most this many bytes per read call; 0 = unlimited */
    int read_calls;
    bool read_error;       /* return -1 once the body is exhausted instead of 0 */

    strbuf_t out;          /* everything written */
    int write_calls;
    bool write_error;
};

static const char *fake_param(void *ud, const char *name)
{
    struct fake *f = ud;
    for (int i = 0; i < f->nparams; i++)
        if (strcmp(f->names[i], name) == 0)
            return f->values[i];
    return NULL;
}

static ssize_t fake_read(void *ud, char *buf, size_t n)
{
    struct fake *f = ud;
    f->read_calls++;
    size_t left = f->body_len - f->pos;
    if (left == 0)
        return f->read_error ? -1 : 0;
    if (n > left)
        n = left;
    if (f->chunk && n > f->chunk)
        n = f->chunk;
    memcpy(buf, f->body + f->pos, n);
    f->pos += n;
    return (ssize_t)n;
}

static int fake_write(void *ud, const char *buf, size_t n)
{
    struct fake *f = ud;
    f->write_calls++;
    if (f->write_error)
        return -1;
    sb_append(&f->out, buf, n);
    return 0;
}

static void fake_init(struct fake *f, struct http_io *io)
{
    memset(f, 0, sizeof *f);
    sb_init(&f->out);
    io->param = fake_param;
    io->read = fake_read;
    io->write = fake_write;
    io->handoff = NULL;
    io->ud = f;
}

static void fake_set(struct fake *f, const char *name, const char *value)
{
    ck_assert_int_lt(f->nparams, FAKE_MAX_PARAMS);
    f->names[f->nparams] = name;
    f->values[f->nparams] = value;
    f->nparams++;
}

static void fake_body(struct fake *f, const char *body, size_t len, size_t chunk)
{
    f->body = body;
    f->body_len = len;
    f->pos = 0;
    f->chunk = chunk;
}

static void fake_free(struct fake *f)
{
    sb_free(&f->out);
}

/* ------------------------------------------------------------------ routing */

/* The routing tests' own route table: the application's routes (app.c), without handlers. */
enum test_route {
    ROUTE_SYNC_UPLOAD,
    ROUTE_SYNC_DOWNLOAD,
    ROUTE_SYNC_SCHEMA_VERSION,
    ROUTE_ADMIN_FAILURES,
    ROUTE_ADMIN_FAILURES_RETRY,
    ROUTE_HEALTH,
    ROUTE_READY,
    ROUTE_METRICS,
    ROUTE_PUSH_CREATE,
    ROUTE_PUSH_CHUNKS,
    ROUTE_PUSH_DELETE,
    ROUTE_COMMITTED_ROWS,
    ROUTE_TEST_HOOK,
    N_TEST_ROUTES
};

static const struct route routes[N_TEST_ROUTES] = {
    [ROUTE_SYNC_UPLOAD] = { "POST", "/sync/upload", ROUTE_UPLOAD, true, true, NULL },
    [ROUTE_SYNC_DOWNLOAD] = { "GET", "/sync/download", ROUTE_UPLOAD, true, true, NULL },
    [ROUTE_SYNC_SCHEMA_VERSION] = { "GET", "/sync/schema-version", ROUTE_UPLOAD, true, true, NULL },
    [ROUTE_ADMIN_FAILURES] = { "GET", "/admin/materialize-failures", ROUTE_UPLOAD, true, true, NULL },
    [ROUTE_ADMIN_FAILURES_RETRY] = { "POST", "/admin/materialize-failures/retry", ROUTE_UPLOAD, true, true, NULL },
    [ROUTE_HEALTH] = { "GET", "/health", ROUTE_UPLOAD, false, false, NULL },
    [ROUTE_READY] = { "GET", "/ready", ROUTE_UPLOAD, false, true, NULL },
    [ROUTE_METRICS] = { "GET", "/metrics", ROUTE_UPLOAD, false, false, NULL },
    [ROUTE_PUSH_CREATE] = { "POST", "/sync/push-sessions", ROUTE_BUNDLE, true, true, NULL },
    [ROUTE_PUSH_CHUNKS] = { "POST", "/sync/push-sessions/{push_id}/chunks", ROUTE_BUNDLE, true, true, NULL },
    [ROUTE_PUSH_DELETE] = { "DELETE", "/sync/push-sessions/{push_id}", ROUTE_BUNDLE, true, true, NULL },
    [ROUTE_COMMITTED_ROWS] = { "GET", "/sync/committed-bundles/{seq}/rows", ROUTE_BUNDLE, true, true, NULL },
    [ROUTE_TEST_HOOK] = { "POST", "/test/e2e/setup", ROUTE_TEST, true, true, NULL },
};

/* The deployment the routing tests look at: both protocols and the test routes. */
static unsigned route_mask = ROUTE_UPLOAD | ROUTE_BUNDLE | ROUTE_TEST;
static const char *route_params[HTTP_MAX_PATH_PARAMS];

struct route_result {
    enum route_match m;
    const struct route *route;
    const char *allow;
    const char *path;
};

static struct route_result do_route(struct fake *f, const struct http_io *io, arena_t *a,
                                    const char *method)
{
    static const struct route sentinel = { "NONE", "sentinel", ROUTE_ANY, false, false, NULL };
    struct route_result r;
    (void)f;
    r.route = &sentinel; /* must be overwritten */
    r.allow = "garbage";
    r.path = NULL;
    r.m = http_route(routes, N_TEST_ROUTES, route_mask, io, a, method, &r.route, &r.allow, &r.path, route_params);
    ck_assert_ptr_nonnull(r.path);
    return r;
}

static void expect_match(const struct route_result *r, enum test_route id, const char *path)
{
    ck_assert_int_eq(r->m, ROUTE_MATCHED);
    ck_assert_ptr_nonnull(r->route);
    ck_assert_ptr_eq(r->route, &routes[id]);
    if (path)
        ck_assert_str_eq(r->path, path);
}

static void expect_not_found(const struct route_result *r)
{
    ck_assert_int_eq(r->m, ROUTE_NOT_FOUND);
    ck_assert_ptr_null(r->route);
    ck_assert_ptr_null(r->allow);
}

START_TEST(test_route_lighttpd_path_info)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "");
    fake_set(&f, "PATH_INFO", "/sync/upload");
    struct route_result r = do_route(&f, &io, a, "POST");
    expect_match(&r, ROUTE_SYNC_UPLOAD, "/sync/upload");
    ck_assert_str_eq(r.route->path, "/sync/upload");
    ck_assert_str_eq(r.route->method, "POST");
    ck_assert(r.route->needs_auth);
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_lighttpd_script_name)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "/sync/upload");
    struct route_result r = do_route(&f, &io, a, "POST");
    expect_match(&r, ROUTE_SYNC_UPLOAD, "/sync/upload");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_lighttpd_script_prefix_plus_path_info)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "/oversyncd.fcgi");
    fake_set(&f, "PATH_INFO", "/sync/download");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_SYNC_DOWNLOAD, NULL);
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_nginx_document_uri)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "DOCUMENT_URI", "/sync/download");
    fake_set(&f, "REQUEST_URI", "/sync/download?since=42&limit=10");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_SYNC_DOWNLOAD, "/sync/download");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_nginx_request_uri_only)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "REQUEST_URI", "/sync/download?since=42");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_SYNC_DOWNLOAD, "/sync/download");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_nginx_empty_path_info)
{
    /* nginx's default fastcgi_params: SCRIPT_NAME = $fastcgi_script_name, PATH_INFO empty */
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "/sync/schema-version");
    fake_set(&f, "PATH_INFO", "");
    fake_set(&f, "DOCUMENT_URI", "/sync/schema-version");
    fake_set(&f, "REQUEST_URI", "/sync/schema-version");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_SYNC_SCHEMA_VERSION, "/sync/schema-version");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_apache)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "/sync/upload");
    fake_set(&f, "REQUEST_URI", "/sync/upload");
    struct route_result r = do_route(&f, &io, a, "POST");
    expect_match(&r, ROUTE_SYNC_UPLOAD, "/sync/upload");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_mount_prefix)
{
    static const char *const params[] = { "PATH_INFO", "SCRIPT_NAME", "DOCUMENT_URI", "REQUEST_URI" };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        struct fake f;
        struct http_io io;
        arena_t *a = arena_new(0);
        fake_init(&f, &io);
        fake_set(&f, params[i], "/api/v1/sync/download");
        struct route_result r = do_route(&f, &io, a, "GET");
        ck_assert_msg(r.m == ROUTE_MATCHED, "mount prefix via %s", params[i]);
        expect_match(&r, ROUTE_SYNC_DOWNLOAD, "/api/v1/sync/download");
        fake_free(&f);
        arena_free(a);
    }
    /* prefix in SCRIPT_NAME, route in PATH_INFO */
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "/api/v1");
    fake_set(&f, "PATH_INFO", "/sync/download");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_SYNC_DOWNLOAD, "/api/v1/sync/download");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_trailing_slash)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "REQUEST_URI", "/health/");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_HEALTH, NULL);
    ck_assert(!r.route->needs_auth);
    fake_free(&f);

    fake_init(&f, &io);
    fake_set(&f, "PATH_INFO", "/api/v1/ready/");
    r = do_route(&f, &io, a, "GET");
    expect_match(&r, ROUTE_READY, NULL);
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_every_route)
{
    int n = 0;
    for (const struct route *rt = routes; rt < routes + N_TEST_ROUTES; rt++, n++) {
        struct fake f;
        struct http_io io;
        arena_t *a = arena_new(0);
        fake_init(&f, &io);
        fake_set(&f, "DOCUMENT_URI", rt->path);
        struct route_result r = do_route(&f, &io, a, rt->method);
        expect_match(&r, (enum test_route)(rt - routes), rt->path);
        fake_free(&f);
        arena_free(a);
    }
    ck_assert_int_ge(n, 6);
}
END_TEST

static void check_not_found(const char *param_name, const char *path, const char *method)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, param_name, path);
    struct route_result r = do_route(&f, &io, a, method);
    ck_assert_msg(r.m == ROUTE_NOT_FOUND, "%s=\"%s\" (%s) should be not found, got %d (route %s)",
                  param_name, path, method, r.m,
                  r.route && r.m == ROUTE_MATCHED ? r.route->path : "-");
    expect_not_found(&r);
    fake_free(&f);
    arena_free(a);
}

START_TEST(test_route_not_found)
{
    check_not_found("PATH_INFO", "/nope", "GET");
    check_not_found("REQUEST_URI", "/nope?x=1", "GET");
    check_not_found("PATH_INFO", "/syncupload", "POST");
    check_not_found("PATH_INFO", "/sync/upload/extra", "POST");
    check_not_found("PATH_INFO", "/sync/uploadx", "POST");
    check_not_found("PATH_INFO", "/", "GET");
    check_not_found("PATH_INFO", "", "GET");
    check_not_found("REQUEST_URI", "/?/sync/upload", "POST");
}
END_TEST

START_TEST(test_route_not_found_suffix_without_boundary)
{
    /* The route must end on a path-segment boundary: "/xsync/upload" is not "/sync/upload"
     * under a mount prefix "/x". */
    check_not_found("PATH_INFO", "/xsync/upload", "POST");
    check_not_found("SCRIPT_NAME", "/xsync/upload", "POST");
    check_not_found("DOCUMENT_URI", "/xsync/upload", "POST");
    check_not_found("REQUEST_URI", "/xsync/upload?a=b", "POST");
    check_not_found("PATH_INFO", "/api/xsync/upload", "POST");
    check_not_found("PATH_INFO", "/unhealth", "GET");
    check_not_found("PATH_INFO", "/unhealth/", "GET");
    check_not_found("PATH_INFO", "/already", "GET");
}
END_TEST

START_TEST(test_route_not_under_own_namespace)
{
    /* A prefix may not run through /sync or /admin: otherwise "/sync/metrics" would be served as
     * /metrics and walk around a web-server rule that guards /metrics. */
    check_not_found("PATH_INFO", "/sync/metrics", "GET");
    check_not_found("PATH_INFO", "/admin/health", "GET");
    check_not_found("REQUEST_URI", "/sync/ready?x=1", "GET");
    check_not_found("PATH_INFO", "/api/sync/metrics", "GET");
    check_not_found("PATH_INFO", "/sync/sync/upload", "POST");
    check_not_found("DOCUMENT_URI", "/admin/sync/download", "GET");
}
END_TEST

START_TEST(test_route_no_params)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_not_found(&r);
    ck_assert_str_eq(r.path, "/");
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_not_found_path_out)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "REQUEST_URI", "/nope?token=secret");
    struct route_result r = do_route(&f, &io, a, "GET");
    expect_not_found(&r);
    ck_assert_str_eq(r.path, "/nope"); /* no query string in logs */
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_route_wrong_method)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "SCRIPT_NAME", "");
    fake_set(&f, "PATH_INFO", "/sync/upload");
    struct route_result r = do_route(&f, &io, a, "GET");
    ck_assert_int_eq(r.m, ROUTE_WRONG_METHOD);
    ck_assert_ptr_null(r.route);
    ck_assert_ptr_nonnull(r.allow);
    ck_assert_str_eq(r.allow, "POST");
    ck_assert_str_eq(r.path, "/sync/upload");
    fake_free(&f);

    fake_init(&f, &io);
    fake_set(&f, "REQUEST_URI", "/api/health?x");
    r = do_route(&f, &io, a, "POST");
    ck_assert_int_eq(r.m, ROUTE_WRONG_METHOD);
    ck_assert_str_eq(r.allow, "GET");
    ck_assert_str_eq(r.path, "/api/health");
    fake_free(&f);

    fake_init(&f, &io);
    fake_set(&f, "DOCUMENT_URI", "/sync/download");
    r = do_route(&f, &io, a, "DELETE");
    ck_assert_int_eq(r.m, ROUTE_WRONG_METHOD);
    ck_assert_str_eq(r.allow, "GET");
    fake_free(&f);

    /* methods are case-sensitive (RFC 9110) */
    fake_init(&f, &io);
    fake_set(&f, "DOCUMENT_URI", "/sync/upload");
    r = do_route(&f, &io, a, "post");
    ck_assert_int_eq(r.m, ROUTE_WRONG_METHOD);
    ck_assert_str_eq(r.allow, "POST");
    fake_free(&f);
    arena_free(a);
}
END_TEST

static struct route_result route_path(struct fake *f, struct http_io *io, arena_t *a, const char *path,
                                      const char *method)
{
    fake_init(f, io);
    fake_set(f, "PATH_INFO", path);
    struct route_result r = do_route(f, io, a, method);
    fake_free(f);
    return r;
}

START_TEST(test_route_path_params)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    struct route_result r = route_path(&f, &io, a, "/sync/push-sessions/0b6c1d2e-aaaa/chunks", "POST");
    expect_match(&r, ROUTE_PUSH_CHUNKS, NULL);
    ck_assert_str_eq(route_params[0], "0b6c1d2e-aaaa");
    ck_assert_ptr_null(route_params[1]);
    /* percent-decoded, under a mount prefix */
    r = route_path(&f, &io, a, "/api/sync/push-sessions/a%2Db%20c/chunks", "POST");
    expect_match(&r, ROUTE_PUSH_CHUNKS, NULL);
    ck_assert_str_eq(route_params[0], "a-b c");
    r = route_path(&f, &io, a, "/sync/committed-bundles/42/rows", "GET");
    expect_match(&r, ROUTE_COMMITTED_ROWS, NULL);
    ck_assert_str_eq(route_params[0], "42");
    r = route_path(&f, &io, a, "/sync/push-sessions/xyz", "DELETE");
    expect_match(&r, ROUTE_PUSH_DELETE, NULL);
    ck_assert_str_eq(route_params[0], "xyz");
    r = route_path(&f, &io, a, "/sync/push-sessions", "POST");
    expect_match(&r, ROUTE_PUSH_CREATE, NULL);
    ck_assert_ptr_null(route_params[0]);
    /* the parameter's route answers its own methods */
    r = route_path(&f, &io, a, "/sync/push-sessions/xyz", "POST");
    ck_assert_int_eq(r.m, ROUTE_WRONG_METHOD);
    ck_assert_str_eq(r.allow, "DELETE");
    arena_free(a);
}
END_TEST

START_TEST(test_route_path_params_refused)
{
    /* a parameter is one non-empty segment that decodes */
    check_not_found("PATH_INFO", "/sync/push-sessions//chunks", "POST");
    check_not_found("PATH_INFO", "/sync/push-sessions/a/b/chunks", "POST");
    check_not_found("PATH_INFO", "/sync/push-sessions/%zz/chunks", "POST");
    check_not_found("PATH_INFO", "/sync/push-sessions/a%00b/chunks", "POST");
    check_not_found("PATH_INFO", "/sync/committed-bundles/rows", "GET");
    check_not_found("PATH_INFO", "/sync/push-sessions/x/chunks/more", "POST");
    /* nor may a prefix run through /test or /syncx */
    check_not_found("PATH_INFO", "/test/health", "GET");
    check_not_found("PATH_INFO", "/syncx/metrics", "GET");
}
END_TEST

START_TEST(test_route_by_deployment)
{
    /* An upload deployment has no bundle routes, a bundle deployment no upload routes, and the
     * test routes exist only where they are switched on. */
    route_mask = ROUTE_UPLOAD;
    check_not_found("PATH_INFO", "/sync/push-sessions", "POST");
    check_not_found("PATH_INFO", "/test/e2e/setup", "POST");
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    struct route_result r = route_path(&f, &io, a, "/sync/upload", "POST");
    expect_match(&r, ROUTE_SYNC_UPLOAD, NULL);
    route_mask = ROUTE_BUNDLE;
    check_not_found("PATH_INFO", "/sync/upload", "POST");
    check_not_found("PATH_INFO", "/test/e2e/setup", "POST");
    r = route_path(&f, &io, a, "/sync/push-sessions/p/chunks", "POST");
    expect_match(&r, ROUTE_PUSH_CHUNKS, NULL);
    route_mask = ROUTE_BUNDLE | ROUTE_TEST;
    r = route_path(&f, &io, a, "/test/e2e/setup", "POST");
    expect_match(&r, ROUTE_TEST_HOOK, NULL);
    route_mask = ROUTE_UPLOAD | ROUTE_BUNDLE | ROUTE_TEST;
    arena_free(a);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("match");
    tcase_add_test(tc, test_route_lighttpd_path_info);
    tcase_add_test(tc, test_route_lighttpd_script_name);
    tcase_add_test(tc, test_route_lighttpd_script_prefix_plus_path_info);
    tcase_add_test(tc, test_route_nginx_document_uri);
    tcase_add_test(tc, test_route_nginx_request_uri_only);
    tcase_add_test(tc, test_route_nginx_empty_path_info);
    tcase_add_test(tc, test_route_apache);
    tcase_add_test(tc, test_route_mount_prefix);
    tcase_add_test(tc, test_route_trailing_slash);
    tcase_add_test(tc, test_route_every_route);
    tcase_add_test(tc, test_route_path_params);
    tcase_add_test(tc, test_route_by_deployment);
    suite_add_tcase(s, tc);
    TCase *tn = tcase_create("no match");
    tcase_add_test(tn, test_route_not_found);
    tcase_add_test(tn, test_route_not_found_suffix_without_boundary);
    tcase_add_test(tn, test_route_path_params_refused);
    tcase_add_test(tn, test_route_not_under_own_namespace);
    tcase_add_test(tn, test_route_no_params);
    tcase_add_test(tn, test_route_not_found_path_out);
    tcase_add_test(tn, test_route_wrong_method);
    suite_add_tcase(s, tn);
    return s;
}

/* ------------------------------------------------------------------ request init */

static bool is_lower_hex16(const char *s)
{
    if (strlen(s) != 16)
        return false;
    for (int i = 0; i < 16; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

START_TEST(test_init_fields)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    fake_set(&f, "REQUEST_METHOD", "POST");
    fake_set(&f, "QUERY_STRING", "a=1&b=2");
    struct request req;
    memset(&req, 0xa5, sizeof req);
    http_request_init(&req, &io, a);
    ck_assert_ptr_eq(req.io, &io);
    ck_assert_ptr_eq(req.arena, a);
    ck_assert_str_eq(req.method, "POST");
    ck_assert_str_eq(req.query, "a=1&b=2");
    ck_assert_str_eq(req.path, "/");
    ck_assert_str_eq(req.route_path, "-");
    ck_assert_ptr_null(req.route);
    ck_assert_ptr_null(req.body);
    ck_assert_uint_eq(req.body_len, 0);
    ck_assert(!req.authenticated);
    ck_assert(!req.responded);
    ck_assert_int_eq(req.status, 0);
    ck_assert_ptr_null(req.error_code);
    ck_assert_msg(is_lower_hex16(req.request_id), "request id \"%s\"", req.request_id);
    ck_assert_int_eq(f.read_calls, 0);
    ck_assert_int_eq(f.write_calls, 0);
    fake_free(&f);
    arena_free(a);
}
END_TEST

START_TEST(test_init_defaults)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    struct request req;
    http_request_init(&req, &io, a);
    ck_assert_str_eq(req.method, "GET");
    ck_assert_ptr_nonnull(req.query);
    ck_assert_str_eq(req.query, "");
    fake_free(&f);

    fake_init(&f, &io);
    fake_set(&f, "REQUEST_METHOD", "");
    fake_set(&f, "QUERY_STRING", "");
    http_request_init(&req, &io, a);
    ck_assert_str_eq(req.method, "GET");
    ck_assert_str_eq(req.query, "");
    fake_free(&f);
    arena_free(a);
}
END_TEST

/* The FastCGI parameter lookup: a whole name only (not a prefix, not a longer name), values
 * that are empty or hold '=', and no parameters at all. */
START_TEST(test_fcgi_param_lookup)
{
    char *env[] = { "SCRIPT_NAME=/a", "SCRIPT=/b=c", "S=", "QUERY_STRING=x=1", NULL };
    FCGX_Request fr;
    memset(&fr, 0, sizeof fr);
    fr.envp = env;
    struct http_io io;
    fcgi_io_init(&io, &fr);
    ck_assert_str_eq(io.param(io.ud, "SCRIPT_NAME"), "/a");
    ck_assert_str_eq(io.param(io.ud, "SCRIPT"), "/b=c");
    ck_assert_str_eq(io.param(io.ud, "S"), "");
    ck_assert_str_eq(io.param(io.ud, "QUERY_STRING"), "x=1");
    ck_assert_ptr_null(io.param(io.ud, "QUERY"));
    ck_assert_ptr_null(io.param(io.ud, "SCRIPT_NAMES"));
    ck_assert_ptr_null(io.param(io.ud, "PATH_INFO"));
    ck_assert_ptr_null(io.param(io.ud, ""));
    fr.envp = NULL;
    ck_assert_ptr_null(io.param(io.ud, "S"));
}
END_TEST

/* ------------------------------------------------------------------ FastCGI records */

static void put_record(int fd, int type, const void *content, size_t len)
{
    unsigned char h[8] = { 1, (unsigned char)type, 0, 1, (unsigned char)(len >> 8), (unsigned char)len, 0, 0 };
    ck_assert(write(fd, h, 8) == 8);
    if (len)
        ck_assert(write(fd, content, len) == (ssize_t)len);
}

static bool read_full(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* What the application wrote through fcgi_io_init's write: small pieces through libfcgi's
 * stream, a large one in records of its own. A web server reading the connection gets the bytes
 * in order, in well-formed records (none over 65535 bytes, padding as declared), the end of the
 * stream (an empty STDOUT record) and then END_REQUEST. */
START_TEST(test_fcgi_large_write_records)
{
    char path[] = "/tmp/oversyncd-fcgi-test-XXXXXX";
    int tmp = mkstemp(path);
    ck_assert_int_ge(tmp, 0);
    close(tmp);
    unlink(path);
    ck_assert_int_eq(FCGX_Init(), 0);
    int lfd = FCGX_OpenSocket(path, 5);
    ck_assert_int_ge(lfd, 0);

    enum { BIG = 200003 };
    static char big[BIG];
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    const char *head = "Status: 200 OK\r\n\r\n", *tail = "tail";

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FCGX_Request fr;
        FCGX_InitRequest(&fr, lfd, 0);
        if (FCGX_Accept_r(&fr) < 0)
            _exit(1);
        struct http_io io;
        fcgi_io_init(&io, &fr);
        int rc = io.write(io.ud, head, strlen(head)) | io.write(io.ud, big, BIG) | io.write(io.ud, tail, 4) |
                 io.write(io.ud, big, 20000);
        FCGX_Finish_r(&fr);
        _exit(rc == 0 ? 0 : 2);
    }

    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    unsigned char begin[8] = { 0, 1 /* responder */, 0, 0, 0, 0, 0, 0 };
    put_record(c, 1 /* BEGIN_REQUEST */, begin, 8);
    unsigned char params[] = { 14, 3, 'R', 'E', 'Q', 'U', 'E', 'S', 'T', '_', 'M', 'E', 'T', 'H', 'O', 'D', 'G', 'E', 'T' };
    put_record(c, 4 /* PARAMS */, params, sizeof params);
    put_record(c, 4, NULL, 0);
    put_record(c, 5 /* STDIN */, NULL, 0);

    strbuf_t out = STRBUF_INIT;
    bool ended = false, stream_closed = false;
    size_t largest = 0;
    char *content = malloc(65536 + 256);
    while (!ended) {
        unsigned char h[8];
        ck_assert(read_full(c, h, 8));
        ck_assert_int_eq(h[0], 1);
        ck_assert_int_eq((h[2] << 8) | h[3], 1);
        size_t len = ((size_t)h[4] << 8) | h[5];
        ck_assert(read_full(c, content, len + h[6]));
        if (h[1] == 6) {   /* STDOUT */
            ck_assert_msg(!stream_closed, "output after the end of the stream");
            if (len == 0)
                stream_closed = true;
            sb_append(&out, content, len);
            if (len > largest)
                largest = len;
        } else {
            ck_assert_int_eq(h[1], 3);   /* END_REQUEST */
            ended = true;
        }
    }
    free(content);
    close(c);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert(stream_closed);
    ck_assert_uint_gt(largest, 60000);   /* the large writes went out in large records */
    size_t hl = strlen(head);
    ck_assert_uint_eq(out.len, hl + BIG + 4 + 20000);
    ck_assert(memcmp(out.data, head, hl) == 0);
    ck_assert(memcmp(out.data + hl, big, BIG) == 0);
    ck_assert(memcmp(out.data + hl + BIG, tail, 4) == 0);
    ck_assert(memcmp(out.data + hl + BIG + 4, big, 20000) == 0);
    sb_free(&out);
    close(lfd);
    unlink(path);
}
END_TEST

START_TEST(test_init_request_ids_differ)
{
    struct fake f;
    struct http_io io;
    arena_t *a = arena_new(0);
    fake_init(&f, &io);
    struct request r1, r2, r3;
    http_request_init(&r1, &io, a);
    http_request_init(&r2, &io, a);
    http_request_init(&r3, &io, a);
    ck_assert(is_lower_hex16(r1.request_id));
    ck_assert(is_lower_hex16(r2.request_id));
    ck_assert(is_lower_hex16(r3.request_id));
    ck_assert_str_ne(r1.request_id, r2.request_id);
    ck_assert_str_ne(r2.request_id, r3.request_id);
    ck_assert_str_ne(r1.request_id, r3.request_id);
    fake_free(&f);
    arena_free(a);
}
END_TEST

static Suite *init_suite(void)
{
    Suite *s = suite_create("request_init");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_fields);
    tcase_add_test(tc, test_init_defaults);
    tcase_add_test(tc, test_init_request_ids_differ);
    tcase_add_test(tc, test_fcgi_param_lookup);
    tcase_add_test(tc, test_fcgi_large_write_records);
    suite_add_tcase(s, tc);
    return s;
}

/* ------------------------------------------------------------------ body */

struct body_ctx {
    struct fake f;
    struct http_io io;
    arena_t *a;
    struct request req;
};

static void body_setup(struct body_ctx *c, const char *content_length, const char *body, size_t len,
                       size_t chunk)
{
    fake_init(&c->f, &c->io);
    fake_set(&c->f, "REQUEST_METHOD", "POST");
    if (content_length)
        fake_set(&c->f, "CONTENT_LENGTH", content_length);
    fake_body(&c->f, body, len, chunk);
    c->a = arena_new(0);
    http_request_init(&c->req, &c->io, c->a);
}

static void body_teardown(struct body_ctx *c)
{
    fake_free(&c->f);
    arena_free(c->a);
}

static char *make_bytes(size_t n)
{
    char *p = malloc(n + 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 26);
    p[n] = '\0';
    return p;
}

START_TEST(test_body_content_length_exact)
{
    struct body_ctx c;
    const char *json = "{\"changes\":[]}";
    body_setup(&c, "14", json, strlen(json), 3); /* delivered 3 bytes at a time */
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, 14);
    ck_assert_str_eq(c.req.body, json);
    ck_assert_int_ge(c.f.read_calls, 5);
    body_teardown(&c);
}
END_TEST

START_TEST(test_body_content_length_one_byte_chunks)
{
    struct body_ctx c;
    char *data = make_bytes(5000);
    body_setup(&c, "5000", data, 5000, 1);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 5000, &too_large)); /* exactly at the limit */
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, 5000);
    ck_assert_mem_eq(c.req.body, data, 5000);
    ck_assert_int_eq(c.req.body[5000], '\0');
    body_teardown(&c);
    free(data);
}
END_TEST

START_TEST(test_body_content_length_zero)
{
    struct body_ctx c;
    body_setup(&c, "0", "", 0, 0);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, 0);
    ck_assert_ptr_nonnull(c.req.body);
    ck_assert_str_eq(c.req.body, "");
    body_teardown(&c);
}
END_TEST

START_TEST(test_body_content_length_reads_only_declared)
{
    struct body_ctx c;
    body_setup(&c, "5", "helloEXTRA", 10, 0);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 1024, &too_large));
    ck_assert_uint_eq(c.req.body_len, 5);
    ck_assert_str_eq(c.req.body, "hello");
    body_teardown(&c);
}
END_TEST

START_TEST(test_body_content_length_too_large)
{
    struct body_ctx c;
    char *data = make_bytes(101);
    body_setup(&c, "101", data, 101, 0);
    bool too_large = false;
    ck_assert(!http_read_body(&c.req, 100, &too_large));
    ck_assert(too_large);
    ck_assert_int_eq(c.f.read_calls, 0); /* refused without reading */
    ck_assert_uint_eq(c.f.pos, 0);
    body_teardown(&c);
    free(data);

    /* a huge declared length, nothing sent */
    body_setup(&c, "1000000000000", "", 0, 0);
    too_large = false;
    ck_assert(!http_read_body(&c.req, 1024 * 1024, &too_large));
    ck_assert(too_large);
    ck_assert_int_eq(c.f.read_calls, 0);
    body_teardown(&c);
}
END_TEST

START_TEST(test_body_content_length_at_limit)
{
    struct body_ctx c;
    char *data = make_bytes(100);
    body_setup(&c, "100", data, 100, 7);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 100, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, 100);
    ck_assert_str_eq(c.req.body, data);
    body_teardown(&c);
    free(data);
}
END_TEST

START_TEST(test_body_short)
{
    struct body_ctx c;
    body_setup(&c, "20", "only ten b", 10, 4);
    bool too_large = true;
    ck_assert(!http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    body_teardown(&c);

    /* a read error in the middle */
    body_setup(&c, "20", "only ten b", 10, 4);
    c.f.read_error = true;
    too_large = true;
    ck_assert(!http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    body_teardown(&c);
}
END_TEST

static void check_malformed_length(const char *cl)
{
    struct body_ctx c;
    body_setup(&c, cl, "123456789012", 12, 0);
    bool too_large = true;
    ck_assert_msg(!http_read_body(&c.req, 1024, &too_large), "CONTENT_LENGTH \"%s\" accepted", cl);
    ck_assert_msg(!too_large, "CONTENT_LENGTH \"%s\" reported as too large", cl);
    body_teardown(&c);
}

START_TEST(test_body_malformed_length)
{
    check_malformed_length("12abc");
    check_malformed_length("-5");
    check_malformed_length("abc");
    check_malformed_length("+12");
    check_malformed_length(" 12");
    check_malformed_length("12 ");
    check_malformed_length("1.5");
    check_malformed_length("0x10");
}
END_TEST

START_TEST(test_body_empty_content_length_reads_to_end)
{
    /* nginx passes CONTENT_LENGTH="" on a GET */
    struct body_ctx c;
    body_setup(&c, "", "", 0, 0);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, 0);
    ck_assert_ptr_nonnull(c.req.body);
    ck_assert_str_eq(c.req.body, "");
    body_teardown(&c);

    body_setup(&c, "", "abc", 3, 1);
    too_large = true;
    ck_assert(http_read_body(&c.req, 1024, &too_large));
    ck_assert_uint_eq(c.req.body_len, 3);
    ck_assert_str_eq(c.req.body, "abc");
    body_teardown(&c);
}
END_TEST

START_TEST(test_body_absent_content_length_reads_to_end)
{
    /* Apache mod_proxy_fcgi with a chunked body: no CONTENT_LENGTH at all */
    struct body_ctx c;
    const char *json = "{\"changes\":[{\"op\":\"DELETE\"}]}";
    body_setup(&c, NULL, json, strlen(json), 5);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, strlen(json));
    ck_assert_str_eq(c.req.body, json);
    body_teardown(&c);
}
END_TEST

START_TEST(test_body_streamed_large)
{
    /* bigger than the internal initial buffer, delivered in odd chunks */
    struct body_ctx c;
    size_t n = 100000;
    char *data = make_bytes(n);
    body_setup(&c, NULL, data, n, 4093);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, 1024 * 1024, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, n);
    ck_assert_mem_eq(c.req.body, data, n);
    ck_assert_int_eq(c.req.body[n], '\0');
    body_teardown(&c);
    free(data);
}
END_TEST

START_TEST(test_body_streamed_at_limit)
{
    struct body_ctx c;
    size_t limit = 40000; /* crosses the internal buffer growth */
    char *data = make_bytes(limit);
    body_setup(&c, NULL, data, limit, 1000);
    bool too_large = true;
    ck_assert(http_read_body(&c.req, (long)limit, &too_large));
    ck_assert(!too_large);
    ck_assert_uint_eq(c.req.body_len, limit);
    ck_assert_mem_eq(c.req.body, data, limit);
    body_teardown(&c);
    free(data);

    /* small limit, one-byte chunks */
    data = make_bytes(10);
    body_setup(&c, NULL, data, 10, 1);
    too_large = true;
    ck_assert(http_read_body(&c.req, 10, &too_large));
    ck_assert(!too_large);
    ck_assert_str_eq(c.req.body, data);
    body_teardown(&c);
    free(data);
}
END_TEST

START_TEST(test_body_streamed_over_limit)
{
    struct body_ctx c;
    size_t limit = 40000;
    char *data = make_bytes(limit + 1);
    body_setup(&c, NULL, data, limit + 1, 999);
    bool too_large = false;
    ck_assert(!http_read_body(&c.req, (long)limit, &too_large));
    ck_assert(too_large);
    body_teardown(&c);
    free(data);

    data = make_bytes(11);
    body_setup(&c, "", data, 11, 1);
    too_large = false;
    ck_assert(!http_read_body(&c.req, 10, &too_large));
    ck_assert(too_large);
    body_teardown(&c);
    free(data);

    /* a much bigger stream: stops one byte past the limit, never buffers the whole thing */
    size_t big = 1000000;
    data = make_bytes(big);
    body_setup(&c, NULL, data, big, 0);
    too_large = false;
    ck_assert(!http_read_body(&c.req, 1000, &too_large));
    ck_assert(too_large);
    ck_assert_uint_le(c.f.pos, 1001);
    body_teardown(&c);
    free(data);
}
END_TEST

START_TEST(test_body_streamed_read_error)
{
    struct body_ctx c;
    body_setup(&c, NULL, "partial", 7, 2);
    c.f.read_error = true;
    bool too_large = true;
    ck_assert(!http_read_body(&c.req, 1024, &too_large));
    ck_assert(!too_large);
    body_teardown(&c);
}
END_TEST

static Suite *body_suite(void)
{
    Suite *s = suite_create("body");
    TCase *tc = tcase_create("content_length");
    tcase_add_test(tc, test_body_content_length_exact);
    tcase_add_test(tc, test_body_content_length_one_byte_chunks);
    tcase_add_test(tc, test_body_content_length_zero);
    tcase_add_test(tc, test_body_content_length_reads_only_declared);
    tcase_add_test(tc, test_body_content_length_too_large);
    tcase_add_test(tc, test_body_content_length_at_limit);
    tcase_add_test(tc, test_body_short);
    tcase_add_test(tc, test_body_malformed_length);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("stream");
    tcase_add_test(ts, test_body_empty_content_length_reads_to_end);
    tcase_add_test(ts, test_body_absent_content_length_reads_to_end);
    tcase_add_test(ts, test_body_streamed_large);
    tcase_add_test(ts, test_body_streamed_at_limit);
    tcase_add_test(ts, test_body_streamed_over_limit);
    tcase_add_test(ts, test_body_streamed_read_error);
    suite_add_tcase(s, ts);
    return s;
}

/* ------------------------------------------------------------------ query string */

struct query_ctx {
    struct fake f;
    struct http_io io;
    arena_t *a;
    struct request req;
};

static void query_setup(struct query_ctx *c, const char *qs)
{
    fake_init(&c->f, &c->io);
    if (qs)
        fake_set(&c->f, "QUERY_STRING", qs);
    c->a = arena_new(0);
    http_request_init(&c->req, &c->io, c->a);
}

static void query_teardown(struct query_ctx *c)
{
    fake_free(&c->f);
    arena_free(c->a);
}

/* The value of one parameter, which must be well-formed (NULL when absent). */
static const char *query_value(struct query_ctx *c, const char *name)
{
    const char *v = "garbage";
    ck_assert_msg(http_query_params(&c->req, 1, &name, &v), "%s refused", name);
    ck_assert_msg(!c->req.responded, "%s: answered", name);
    return v;
}

START_TEST(test_query_basic)
{
    struct query_ctx c;
    query_setup(&c, "since=42&limit=100");
    ck_assert_str_eq(query_value(&c, "since"), "42");
    ck_assert_str_eq(query_value(&c, "limit"), "100");
    ck_assert_ptr_null(query_value(&c, "absent"));
    ck_assert_ptr_null(query_value(&c, "sinc"));
    ck_assert_ptr_null(query_value(&c, "since="));
    ck_assert_ptr_null(query_value(&c, "42"));
    query_teardown(&c);
}
END_TEST

START_TEST(test_query_first_wins)
{
    struct query_ctx c;
    query_setup(&c, "a=1&b=2&a=3");
    ck_assert_str_eq(query_value(&c, "a"), "1");
    ck_assert_str_eq(query_value(&c, "b"), "2");
    query_teardown(&c);

    /* a key that is a prefix of another is not confused with it */
    query_setup(&c, "ab=1&a=2");
    ck_assert_str_eq(query_value(&c, "a"), "2");
    ck_assert_str_eq(query_value(&c, "ab"), "1");
    query_teardown(&c);
}
END_TEST

START_TEST(test_query_decoding)
{
    struct query_ctx c;
    query_setup(&c, "name=John%20Doe&q=a+b&mixed=%41%62c+%2B&eq=x%3Dy&raw=b=c");
    ck_assert_str_eq(query_value(&c, "name"), "John Doe");
    ck_assert_str_eq(query_value(&c, "q"), "a b");
    ck_assert_str_eq(query_value(&c, "mixed"), "Abc +");
    ck_assert_str_eq(query_value(&c, "eq"), "x=y");
    ck_assert_str_eq(query_value(&c, "raw"), "b=c");
    query_teardown(&c);
}
END_TEST

START_TEST(test_query_key_without_value)
{
    struct query_ctx c;
    query_setup(&c, "flag&x=1&empty=");
    const char *v = query_value(&c, "flag");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "");
    ck_assert_str_eq(query_value(&c, "x"), "1");
    v = query_value(&c, "empty");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "");
    query_teardown(&c);

    query_setup(&c, "&&x=1&");
    ck_assert_str_eq(query_value(&c, "x"), "1");
    ck_assert_ptr_null(query_value(&c, "y"));
    query_teardown(&c);
}
END_TEST

START_TEST(test_query_empty_or_absent)
{
    struct query_ctx c;
    query_setup(&c, NULL);
    ck_assert_ptr_null(query_value(&c, "a"));
    query_teardown(&c);
    query_setup(&c, "");
    ck_assert_ptr_null(query_value(&c, "a"));
    query_teardown(&c);
}
END_TEST

#define BAD_ESCAPE(name) \
    "query parameter " name " is malformed: a bad percent escape (% must be followed by two hex digits)"
#define NUL_BYTE(name) "query parameter " name " is malformed: %00 (a NUL byte) is not allowed"

/* A malformed value is never read as something else (cut at the NUL, or taken raw): the request
 * is answered 400 invalid_request naming the parameter. */
static const struct {
    const char *qs;
    const char *names;      /* the parameters read, separated by commas */
    const char *message;
} malformed_queries[] = {
    { "schema=pub%00lic", "schema", NUL_BYTE("schema") },
    { "schema=%00", "schema", NUL_BYTE("schema") },
    { "after=0&limit=10&schema=public%00", "after,limit,schema", NUL_BYTE("schema") },
    { "a=%zz", "a", BAD_ESCAPE("a") },
    { "a=%4", "a", BAD_ESCAPE("a") },
    { "a=%", "a", BAD_ESCAPE("a") },
    { "a=%%", "a", BAD_ESCAPE("a") },
    { "a=%%41", "a", BAD_ESCAPE("a") },
    { "a=x%4&b=1", "b,a", BAD_ESCAPE("a") },
    { "a=%g1", "a", BAD_ESCAPE("a") },
    { "a=%1", "a", BAD_ESCAPE("a") },
    { "after=1&limit=%zz&schema=%00", "after,limit,schema", BAD_ESCAPE("limit") },
};

START_TEST(test_query_malformed)
{
    struct query_ctx c;
    query_setup(&c, malformed_queries[_i].qs);
    char names_buf[64];
    snprintf(names_buf, sizeof names_buf, "%s", malformed_queries[_i].names);
    const char *names[4], *values[4];
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(names_buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        names[n++] = t;
    ck_assert(!http_query_params(&c.req, n, names, values));
    ck_assert(c.req.responded);
    ck_assert_int_eq(c.req.status, 400);
    ck_assert_str_eq(c.req.error_code, "invalid_request");
    const char *out = sb_cstr(&c.f.out);
    ck_assert_msg(strncmp(out, "Status: 400 Bad Request\r\n", 25) == 0, "%s", out);
    const char *body = strstr(out, "\r\n\r\n");
    ck_assert_ptr_nonnull(body);
    char want[256];
    snprintf(want, sizeof want, "{\"error\":\"invalid_request\",\"message\":\"%s\"}",
             malformed_queries[_i].message);
    ck_assert_str_eq(body + 4, want);
    query_teardown(&c);
}
END_TEST

/* Only the parameters read are checked, and only their first occurrence. */
START_TEST(test_query_malformed_elsewhere)
{
    struct query_ctx c;
    query_setup(&c, "a=1&b=%zz&c=%00&a=%00");
    ck_assert_str_eq(query_value(&c, "a"), "1");
    ck_assert_ptr_null(query_value(&c, "d"));
    query_teardown(&c);

    /* an escaped '%' followed by "00" is text, not a NUL */
    query_setup(&c, "a=%2500&b=%2");
    ck_assert_str_eq(query_value(&c, "a"), "%00");
    query_teardown(&c);

    /* all values of a successful call are filled, absent ones with NULL */
    query_setup(&c, "after=5&schema=pub");
    const char *names[] = { "after", "limit", "schema" }, *values[3];
    ck_assert(http_query_params(&c.req, 3, names, values));
    ck_assert_str_eq(values[0], "5");
    ck_assert_ptr_null(values[1]);
    ck_assert_str_eq(values[2], "pub");
    ck_assert(!c.req.responded);
    query_teardown(&c);
}
END_TEST

START_TEST(test_url_decode)
{
    arena_t *a = arena_new(0);
    const char *s, *why = NULL;
    s = http_url_decode(a, "%41%42", 6, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "AB");
    s = http_url_decode(a, "a+b", 3, NULL);
    ck_assert_str_eq(s, "a b");
    s = http_url_decode(a, "%4a%4A%2f", 9, NULL);
    ck_assert_str_eq(s, "JJ/");
    s = http_url_decode(a, "plain", 5, NULL);
    ck_assert_str_eq(s, "plain");
    s = http_url_decode(a, "", 0, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    s = http_url_decode(a, "%C3%A9", 6, NULL);
    ck_assert_str_eq(s, "\xc3\xa9");
    s = http_url_decode(a, "%01%7f%ff", 9, NULL);
    ck_assert_str_eq(s, "\x01\x7f\xff");
    /* only len bytes are decoded */
    s = http_url_decode(a, "abcdef", 3, NULL);
    ck_assert_str_eq(s, "abc");

    static const char *const bad[] = { "%", "%4", "ab%4", "%zz", "%4g", "%g4" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        ck_assert_ptr_null(http_url_decode(a, bad[i], strlen(bad[i]), &why));
        ck_assert_str_eq(why, "a bad percent escape (% must be followed by two hex digits)");
        ck_assert_ptr_null(http_url_decode(a, bad[i], strlen(bad[i]), NULL));
    }
    /* an escape cut by len is bad even if the bytes after len would complete it */
    ck_assert_ptr_null(http_url_decode(a, "%41", 2, NULL));
    /* a NUL would cut the C string: "pub%00lic" must not become "pub" */
    why = NULL;
    ck_assert_ptr_null(http_url_decode(a, "pub%00lic", 9, &why));
    ck_assert_str_eq(why, "%00 (a NUL byte) is not allowed");
    ck_assert_ptr_null(http_url_decode(a, "%00", 3, NULL));
    arena_free(a);
}
END_TEST

static Suite *query_suite(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_query_basic);
    tcase_add_test(tc, test_query_first_wins);
    tcase_add_test(tc, test_query_decoding);
    tcase_add_test(tc, test_query_key_without_value);
    tcase_add_test(tc, test_query_empty_or_absent);
    tcase_add_loop_test(tc, test_query_malformed, 0,
                        (int)(sizeof malformed_queries / sizeof malformed_queries[0]));
    tcase_add_test(tc, test_query_malformed_elsewhere);
    tcase_add_test(tc, test_url_decode);
    suite_add_tcase(s, tc);
    return s;
}

/* ------------------------------------------------------------------ answers */

struct answer {
    char *headers;        /* up to and including the first "\r\n" of the blank line */
    char *body;
    size_t body_len;
};

/* Splits the captured output at the first blank line. */
static struct answer split_answer(const strbuf_t *out)
{
    struct answer ans = { NULL, NULL, 0 };
    const char *data = out->data;
    ck_assert_ptr_nonnull(data);
    const char *sep = strstr(data, "\r\n\r\n");
    ck_assert_msg(sep != NULL, "no blank line after the headers");
    size_t hl = (size_t)(sep - data) + 2;
    ans.headers = malloc(hl + 1);
    memcpy(ans.headers, data, hl);
    ans.headers[hl] = '\0';
    const char *b = sep + 4;
    ans.body_len = out->len - (size_t)(b - data);
    ans.body = malloc(ans.body_len + 1);
    memcpy(ans.body, b, ans.body_len);
    ans.body[ans.body_len] = '\0';
    return ans;
}

static void answer_free(struct answer *ans)
{
    free(ans->headers);
    free(ans->body);
}

/* Value of a header (the text between "Name: " and "\r\n"), malloc'd, or NULL. */
static char *header_value(const char *headers, const char *name)
{
    size_t nl = strlen(name);
    const char *p = headers;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        ck_assert_msg(eol != NULL, "header line without CRLF");
        if ((size_t)(eol - p) > nl + 1 && strncmp(p, name, nl) == 0 && p[nl] == ':' && p[nl + 1] == ' ') {
            size_t vl = (size_t)(eol - p) - nl - 2;
            char *v = malloc(vl + 1);
            memcpy(v, p + nl + 2, vl);
            v[vl] = '\0';
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

static void expect_header(const char *headers, const char *name, const char *value)
{
    char *v = header_value(headers, name);
    ck_assert_msg(v != NULL, "header %s missing in:\n%s", name, headers);
    ck_assert_str_eq(v, value);
    free(v);
}

struct answer_ctx {
    struct fake f;
    struct http_io io;
    arena_t *a;
    struct request req;
};

static void answer_setup(struct answer_ctx *c, const char *method)
{
    fake_init(&c->f, &c->io);
    if (method)
        fake_set(&c->f, "REQUEST_METHOD", method);
    c->a = arena_new(0);
    http_request_init(&c->req, &c->io, c->a);
}

static void answer_teardown(struct answer_ctx *c)
{
    fake_free(&c->f);
    arena_free(c->a);
}

START_TEST(test_error_output)
{
    struct answer_ctx c;
    answer_setup(&c, "GET");
    http_error(&c.req, 404, "not_found", "no route for \"%s\" (%d)", "/nope", 7);
    const char *out = sb_cstr(&c.f.out);
    ck_assert_int_eq(c.f.write_calls, 1);
    ck_assert_msg(strncmp(out, "Status: 404 Not Found\r\n", 23) == 0, "got:\n%s", out);
    ck_assert_ptr_nonnull(strstr(out, "\r\nContent-Type: application/json\r\n"));

    struct answer ans = split_answer(&c.f.out);
    const char *expect_body = "{\"error\":\"not_found\",\"message\":\"no route for \\\"/nope\\\" (7)\"}";
    ck_assert_str_eq(ans.body, expect_body);
    ck_assert_uint_eq(ans.body_len, strlen(expect_body));

    char cl[32];
    snprintf(cl, sizeof cl, "%zu", ans.body_len);
    expect_header(ans.headers, "Content-Length", cl);
    expect_header(ans.headers, "Content-Type", "application/json");
    expect_header(ans.headers, "X-Request-Id", c.req.request_id);
    ck_assert(is_lower_hex16(c.req.request_id));
    ck_assert_ptr_null(header_value(ans.headers, "Allow"));

    /* every header line is well-formed "Name: value\r\n" */
    const char *p = ans.headers;
    ck_assert(strncmp(p, "Status: ", 8) == 0);
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        ck_assert_ptr_nonnull(eol);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        ck_assert_msg(colon != NULL && colon > p && colon[1] == ' ', "bad header line");
        p = eol + 2;
    }

    ck_assert(c.req.responded);
    ck_assert_int_eq(c.req.status, 404);
    ck_assert_str_eq(c.req.error_code, "not_found");
    answer_free(&ans);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_error_output_exact)
{
    struct answer_ctx c;
    answer_setup(&c, "POST");
    http_error(&c.req, 400, "invalid_request", "bad \\ value\n");
    const char *body = "{\"error\":\"invalid_request\",\"message\":\"bad \\\\ value\\n\"}";
    strbuf_t expect = STRBUF_INIT;
    sb_printf(&expect,
              "Status: 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nX-Request-Id: %s\r\n\r\n%s",
              strlen(body), c.req.request_id, body);
    ck_assert_str_eq(sb_cstr(&c.f.out), sb_cstr(&expect));
    ck_assert_uint_eq(c.f.out.len, expect.len);
    sb_free(&expect);
    answer_teardown(&c);
}
END_TEST

/* The head of a success, built without printf: every header in order, a length of many digits,
 * extra headers before the blank line, and none for a missing content type. */
START_TEST(test_respond_output_exact)
{
    struct answer_ctx c;
    answer_setup(&c, "GET");
    char big[12345];
    memset(big, 'x', sizeof big);
    http_respond(&c.req, 200, "text/plain", "Allow: GET\r\nX-A: b\r\n", big, sizeof big);
    strbuf_t expect = STRBUF_INIT;
    sb_printf(&expect,
              "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12345\r\n"
              "Cache-Control: no-store\r\nX-Request-Id: %s\r\nAllow: GET\r\nX-A: b\r\n\r\n",
              c.req.request_id);
    sb_append(&expect, big, sizeof big);
    ck_assert_uint_eq(c.f.out.len, expect.len);
    ck_assert(memcmp(c.f.out.data, expect.data, expect.len) == 0);
    sb_free(&expect);
    answer_teardown(&c);

    answer_setup(&c, "GET");
    http_respond(&c.req, 503, NULL, NULL, "", 0);
    sb_init(&expect);
    sb_printf(&expect, "Status: 503 Service Unavailable\r\nContent-Length: 0\r\nCache-Control: no-store\r\n"
                       "X-Request-Id: %s\r\n\r\n", c.req.request_id);
    ck_assert_str_eq(sb_cstr(&c.f.out), sb_cstr(&expect));
    sb_free(&expect);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_error_headers_allow)
{
    struct answer_ctx c;
    answer_setup(&c, "POST");
    http_error_headers(&c.req, 405, "method_not_allowed", "Allow: GET\r\n", "use %s", "GET");
    const char *out = sb_cstr(&c.f.out);
    ck_assert(strncmp(out, "Status: 405 Method Not Allowed\r\n", 32) == 0);
    struct answer ans = split_answer(&c.f.out);
    ck_assert_ptr_nonnull(strstr(ans.headers, "\r\nAllow: GET\r\n"));
    expect_header(ans.headers, "Allow", "GET");
    ck_assert_str_eq(ans.body, "{\"error\":\"method_not_allowed\",\"message\":\"use GET\"}");
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", ans.body_len);
    expect_header(ans.headers, "Content-Length", cl);
    ck_assert_str_eq(c.req.error_code, "method_not_allowed");
    ck_assert_int_eq(c.req.status, 405);
    answer_free(&ans);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_respond_once)
{
    struct answer_ctx c;
    answer_setup(&c, "GET");
    http_error(&c.req, 503, "database_unavailable", "down");
    size_t len = c.f.out.len;
    char *first = strdup(sb_cstr(&c.f.out));
    int calls = c.f.write_calls;
    ck_assert_int_eq(calls, 1);

    http_json_text(&c.req, 200, "{\"status\":\"ok\"}");
    http_error(&c.req, 500, "internal_error", "again");
    ck_assert_int_eq(c.f.write_calls, calls);
    /* the dropped answer must not change what is logged and counted for the request:
     * status and error code stay those of the answer the client actually received */
    ck_assert_uint_eq(c.f.out.len, len);
    ck_assert_str_eq(sb_cstr(&c.f.out), first);
    ck_assert_int_eq(c.req.status, 503);
    ck_assert_str_eq(c.req.error_code, "database_unavailable");
    free(first);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_head_no_body)
{
    struct answer_ctx c;
    answer_setup(&c, "HEAD");
    const char *json = "{\"status\":\"ok\"}";
    http_json_text(&c.req, 200, json);
    const char *out = sb_cstr(&c.f.out);
    ck_assert(strncmp(out, "Status: 200 OK\r\n", 16) == 0);
    struct answer ans = split_answer(&c.f.out);
    ck_assert_uint_eq(ans.body_len, 0);
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", strlen(json));
    expect_header(ans.headers, "Content-Length", cl); /* the length of the GET answer */
    ck_assert_uint_eq(c.f.out.len, strlen(ans.headers) + 2);
    answer_free(&ans);
    answer_teardown(&c);

    answer_setup(&c, "HEAD");
    http_error(&c.req, 404, "not_found", "x");
    ans = split_answer(&c.f.out);
    ck_assert_uint_eq(ans.body_len, 0);
    answer_free(&ans);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_json_and_respond)
{
    struct answer_ctx c;
    answer_setup(&c, "GET");
    strbuf_t body = STRBUF_INIT;
    sb_puts(&body, "{\"schema_version\":1}");
    http_json(&c.req, 200, &body);
    struct answer ans = split_answer(&c.f.out);
    ck_assert_str_eq(ans.body, "{\"schema_version\":1}");
    expect_header(ans.headers, "Content-Length", "20");
    expect_header(ans.headers, "Content-Type", "application/json");
    ck_assert_ptr_null(c.req.error_code);
    ck_assert_int_eq(c.req.status, 200);
    answer_free(&ans);
    sb_free(&body);
    answer_teardown(&c);

    /* an empty strbuf */
    answer_setup(&c, "GET");
    strbuf_t empty = STRBUF_INIT;
    http_json(&c.req, 200, &empty);
    ans = split_answer(&c.f.out);
    ck_assert_uint_eq(ans.body_len, 0);
    expect_header(ans.headers, "Content-Length", "0");
    answer_free(&ans);
    answer_teardown(&c);

    /* http_respond with another content type, extra headers and a body with a NUL byte */
    answer_setup(&c, "GET");
    http_respond(&c.req, 200, "text/plain; version=0.0.4", "X-A: 1\r\nX-B: 2\r\n", "ab\0cd", 5);
    ans = split_answer(&c.f.out);
    expect_header(ans.headers, "Content-Type", "text/plain; version=0.0.4");
    expect_header(ans.headers, "X-A", "1");
    expect_header(ans.headers, "X-B", "2");
    expect_header(ans.headers, "Content-Length", "5");
    ck_assert_uint_eq(ans.body_len, 5);
    ck_assert_mem_eq(ans.body, "ab\0cd", 5);
    answer_free(&ans);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_respond_write_error)
{
    struct answer_ctx c;
    answer_setup(&c, "GET");
    c.f.write_error = true;
    http_error(&c.req, 500, "internal_error", "request %s", c.req.request_id);
    ck_assert_int_eq(c.f.write_calls, 1);
    ck_assert(c.req.responded);
    ck_assert_int_eq(c.req.status, 500);
    answer_teardown(&c);
}
END_TEST

/* An answer sent in pieces: the headers with the announced length, then the pieces in order; a
 * second answer is refused; HEAD gets the headers only; a failed write is reported. */
START_TEST(test_respond_in_pieces)
{
    struct answer_ctx c;
    answer_setup(&c, "POST");
    ck_assert(http_respond_begin(&c.req, 200, "application/json", 11));
    ck_assert(c.req.responded);
    ck_assert_int_eq(c.req.status, 200);
    ck_assert(http_respond_more(&c.req, "{\"a\":", 5));
    ck_assert(http_respond_more(&c.req, "[1,2]}", 6));
    ck_assert_int_eq(c.f.write_calls, 3);
    struct answer ans = split_answer(&c.f.out);
    ck_assert_str_eq(ans.body, "{\"a\":[1,2]}");
    expect_header(ans.headers, "Content-Length", "11");
    expect_header(ans.headers, "Content-Type", "application/json");
    expect_header(ans.headers, "X-Request-Id", c.req.request_id);
    /* a second answer is dropped */
    ck_assert(!http_respond_begin(&c.req, 500, "application/json", 2));
    http_json_text(&c.req, 500, "{}");
    ck_assert_int_eq(c.f.write_calls, 3);
    ck_assert_int_eq(c.req.status, 200);
    answer_teardown(&c);

    answer_setup(&c, "HEAD");
    ck_assert(http_respond_begin(&c.req, 200, "application/json", 11));
    ck_assert(http_respond_more(&c.req, "{\"a\":[1,2]}", 11));
    ck_assert_int_eq(c.f.write_calls, 1);
    ans = split_answer(&c.f.out);
    ck_assert_str_eq(ans.body, "");
    expect_header(ans.headers, "Content-Length", "11");
    answer_teardown(&c);

    answer_setup(&c, "POST");
    c.f.write_error = true;
    ck_assert(!http_respond_begin(&c.req, 200, "application/json", 11));
    ck_assert(!http_respond_more(&c.req, "{}", 2));
    ck_assert(c.req.responded);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_error_long_message)
{
    /* a message longer than any internal buffer must still give valid JSON */
    struct answer_ctx c;
    answer_setup(&c, "GET");
    char *longmsg = make_bytes(5000);
    http_error(&c.req, 400, "invalid_request", "%s", longmsg);
    struct answer ans = split_answer(&c.f.out);
    ck_assert(strncmp(ans.body, "{\"error\":\"invalid_request\",\"message\":\"", 38) == 0);
    ck_assert(ans.body_len >= 2 && strcmp(ans.body + ans.body_len - 2, "\"}") == 0);
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", ans.body_len);
    expect_header(ans.headers, "Content-Length", cl);
    answer_free(&ans);
    free(longmsg);
    answer_teardown(&c);
}
END_TEST

START_TEST(test_status_text)
{
    ck_assert_str_eq(http_status_text(200), "OK");
    ck_assert_str_eq(http_status_text(400), "Bad Request");
    ck_assert_str_eq(http_status_text(401), "Unauthorized");
    ck_assert_str_eq(http_status_text(404), "Not Found");
    ck_assert_str_eq(http_status_text(405), "Method Not Allowed");
    ck_assert_str_eq(http_status_text(413), "Payload Too Large");
    ck_assert_str_eq(http_status_text(500), "Internal Server Error");
    ck_assert_str_eq(http_status_text(503), "Service Unavailable");
    ck_assert_ptr_nonnull(http_status_text(418));
    ck_assert_ptr_nonnull(http_status_text(0));

    /* and the status line of an answer uses it */
    static const int codes[] = { 200, 400, 401, 404, 405, 413, 500, 503 };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        struct answer_ctx c;
        answer_setup(&c, "GET");
        http_json_text(&c.req, codes[i], "{}");
        char line[80];
        snprintf(line, sizeof line, "Status: %d %s\r\n", codes[i], http_status_text(codes[i]));
        ck_assert(strncmp(sb_cstr(&c.f.out), line, strlen(line)) == 0);
        answer_teardown(&c);
    }
}
END_TEST

static Suite *answer_suite(void)
{
    Suite *s = suite_create("answer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_error_output);
    tcase_add_test(tc, test_error_output_exact);
    tcase_add_test(tc, test_respond_output_exact);
    tcase_add_test(tc, test_error_headers_allow);
    tcase_add_test(tc, test_respond_once);
    tcase_add_test(tc, test_head_no_body);
    tcase_add_test(tc, test_json_and_respond);
    tcase_add_test(tc, test_respond_write_error);
    tcase_add_test(tc, test_respond_in_pieces);
    tcase_add_test(tc, test_error_long_message);
    tcase_add_test(tc, test_status_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* the "second answer" and "web server went away" paths log; keep the test output readable */
    log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
    return run_suites(route_suite(), init_suite(), body_suite(), query_suite(), answer_suite(), NULL);
}
