/* GET /sync/watch (SPEC-v2 §3.8) and GET /sync/download?wait=S end to end, behind the lighttpd of
 * lighttpd-example/: the streams are held by the watch process (src/watch.c), never by a worker.
 * Events are produced the way committing bundles produce them: next_bundle_seq moves and a NOTIFY
 * on oversync_bundle_change_v1 carries {"user_pk","bundle_seq","source_id","source_bundle_id"}
 * (sent with psql, as a writer of the go-oversync library in another process would). */
#include "bundle_stack.h"
#include "e2e.h"
#include "../run_suites.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct e2e_stack *start(const char *extra)
{
    char *conf = e2e_strf("[bundle]\nwatch = on\ntest_routes = on\nwatch_heartbeat = 300ms\n%s", extra ? extra : "");
    struct e2e_stack *s = bundle_stack_start("e2e_watch", "e2e-watch", conf);
    free(conf);
    return s;
}

/* A commit of bundle seq for user (next_bundle_seq moves, then the NOTIFY of the finalization). */
static void commit_bundle(const char *user, long long seq, const char *source, long long source_bundle_id)
{
    char *q = e2e_strf("BEGIN; UPDATE sync.user_state SET next_bundle_seq = %lld + 1 WHERE user_id = '%s';"
                       " SELECT pg_notify('oversync_bundle_change_v1', json_build_object('user_pk', user_pk,"
                       " 'bundle_seq', %lld, 'source_id', '%s', 'source_bundle_id', %lld)::text)"
                       " FROM sync.user_state WHERE user_id = '%s'; COMMIT;",
                       seq, user, seq, source, source_bundle_id, user);
    free(bundle_stack_sql(q));
    free(q);
}

/* ------------------------------------------------------------------ a raw SSE client (HTTP/1.0) */

struct sse {
    int fd;
    int status;
    char head[4096];
    char buf[16384];
    size_t len;
};

static bool sse_open(const struct e2e_stack *s, struct sse *c, const char *token, const char *source,
                     const char *query)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)e2e_port(s)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    char *rq = e2e_strf("GET /sync/watch%s HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                        "Oversync-Source-ID: %s\r\nAccept: text/event-stream\r\n\r\n",
                        query ? query : "", token, source);
    ck_assert_int_eq(write(c->fd, rq, strlen(rq)), (ssize_t)strlen(rq));
    free(rq);
    long deadline = e2e_now_ms() + 5000;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - c->buf) + 4;
            snprintf(c->head, sizeof c->head, "%.*s", (int)hl, c->buf);
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= hl;
            c->status = atoi(c->head + 9);
            return true;
        }
        struct pollfd p = { c->fd, POLLIN, 0 };
        long left = deadline - e2e_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
        if (n <= 0)
            return false;
        c->len += (size_t)n;
    }
}

/* The next frame (up to and without its blank line) into out; 0 on time-out, -1 at the end of
 * the stream, 1 otherwise. */
static int sse_next(struct sse *c, int timeout_ms, char *out, size_t cap)
{
    long deadline = e2e_now_ms() + timeout_ms;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\n\n", 2);
        if (end) {
            size_t fl = (size_t)(end - c->buf);
            snprintf(out, cap, "%.*s", (int)fl, c->buf);
            memmove(c->buf, end + 2, c->len - fl - 2);
            c->len -= fl + 2;
            return 1;
        }
        struct pollfd p = { c->fd, POLLIN, 0 };
        long left = deadline - e2e_now_ms();
        if (left <= 0)
            return 0;
        int r = poll(&p, 1, (int)left);
        if (r == 0)
            return 0;
        ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
    }
}

/* The next frame that is not a heartbeat. */
static int sse_event(struct sse *c, int timeout_ms, char *out, size_t cap)
{
    long deadline = e2e_now_ms() + timeout_ms;
    for (;;) {
        long left = deadline - e2e_now_ms();
        int r = sse_next(c, left > 0 ? (int)left : 0, out, cap);
        if (r != 1 || strcmp(out, ": heartbeat") != 0)
            return r;
    }
}

static void sse_close(struct sse *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static long subscribers(struct e2e_stack *s, const char *user)
{
    struct e2e_response r;
    char *path = e2e_strf("/test/watch-subscribers?user_id=%s", user);
    bundle_stack_req(s, "GET", path, NULL, NULL, NULL, &r);
    free(path);
    e2e_assert_status(&r, 200);
    const char *p = strstr(r.body, "\"subscriber_count\":");
    ck_assert_ptr_nonnull(p);
    long n = atol(p + 19);
    e2e_response_free(&r);
    return n;
}

static bool wait_subscribers(struct e2e_stack *s, const char *user, long want, int timeout_ms)
{
    long deadline = e2e_now_ms() + timeout_ms;
    while (subscribers(s, user) != want) {
        if (e2e_now_ms() > deadline)
            return false;
        e2e_sleep_ms(50);
    }
    return true;
}

static void initialize(struct e2e_stack *s, const char *tok, const char *source)
{
    struct e2e_response r;
    bundle_stack_req(s, "POST", "/sync/connect", tok, source, "{\"has_local_pending_rows\":false}", &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);
}

static pid_t watch_pid(struct e2e_stack *s)
{
    return e2e_watch_pid(s);
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_watch_stream)
{
    struct e2e_stack *s = start(NULL);
    char *tok = e2e_token(s, "wanda", "ignored", NULL);
    struct e2e_response r;
    char ev[1024];

    /* the feature flag follows [bundle] watch */
    bundle_stack_req(s, "GET", "/sync/capabilities", tok, "dev-a", NULL, &r);
    e2e_assert_body_has(&r, "\"bundle_change_watch\":true");
    e2e_response_free(&r);

    /* errors answered as JSON by the worker */
    bundle_stack_req(s, "GET", "/sync/watch", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 401);
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/watch", tok, NULL, NULL, &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "Oversync-Source-ID header is required");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/watch?after_bundle_seq=-1", tok, "dev-a", NULL, &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "after_bundle_seq must be \\u003e= 0");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/watch?after_bundle_seq=x", tok, "dev-a", NULL, &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "after_bundle_seq must be an integer");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/watch", tok, "dev-a", NULL, &r);
    e2e_assert_status(&r, 409);
    e2e_assert_body_has(&r, "\"error\":\"scope_uninitialized\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/test/watch-subscribers", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 400);
    e2e_assert_body_has(&r, "\"error\":\"invalid_request\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/test/watch-subscribers?user_id=nobody", NULL, NULL, NULL, &r);
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "{\"process_local_only\":true,\"subscriber_count\":0,\"user_id\":\"nobody\"}\n");
    e2e_response_free(&r);

    initialize(s, tok, "dev-a");

    /* a stream: headers at once, no catch-up (nothing committed), events as bundles commit */
    struct sse a;
    ck_assert(sse_open(s, &a, tok, "dev-b", NULL));
    ck_assert_int_eq(a.status, 200);
    ck_assert_msg(strstr(a.head, "Content-Type: text/event-stream\r\n"), "%s", a.head);
    ck_assert_msg(strstr(a.head, "Cache-Control: no-cache\r\n"), "%s", a.head);
    ck_assert_msg(strstr(a.head, "X-Accel-Buffering: no\r\n"), "%s", a.head);
    ck_assert(wait_subscribers(s, "wanda", 1, 5000));

    commit_bundle("wanda", 1, "dev-a", 7);
    ck_assert_int_eq(sse_event(&a, 3000, ev, sizeof ev), 1);
    ck_assert_str_eq(ev, "event: bundle\ndata: {\"bundle_seq\":1,\"source_id\":\"dev-a\",\"source_bundle_id\":7}");
    /* heartbeats (watch_heartbeat = 300ms) */
    ck_assert_int_eq(sse_next(&a, 2000, ev, sizeof ev), 1);
    ck_assert_str_eq(ev, ": heartbeat");
    /* a NOTIFY at or below the last sent seq is not sent again; a newer one is */
    free(bundle_stack_sql("SELECT pg_notify('oversync_bundle_change_v1', json_build_object('user_pk', user_pk, 'bundle_seq', 1)::text) FROM sync.user_state WHERE user_id = 'wanda'"));
    commit_bundle("wanda", 2, "dev-c", 1);
    ck_assert_int_eq(sse_event(&a, 3000, ev, sizeof ev), 1);
    ck_assert_str_eq(ev, "event: bundle\ndata: {\"bundle_seq\":2,\"source_id\":\"dev-c\",\"source_bundle_id\":1}");

    /* a second stream after_bundle_seq=0: the catch-up event, without source fields */
    struct sse b;
    ck_assert(sse_open(s, &b, tok, "dev-c", "?after_bundle_seq=0"));
    ck_assert_int_eq(b.status, 200);
    ck_assert_int_eq(sse_event(&b, 3000, ev, sizeof ev), 1);
    ck_assert_str_eq(ev, "event: bundle\ndata: {\"bundle_seq\":2}");
    ck_assert(wait_subscribers(s, "wanda", 2, 5000));
    /* up to date: no catch-up */
    struct sse c;
    ck_assert(sse_open(s, &c, tok, "dev-d", "?after_bundle_seq=2"));
    ck_assert_int_eq(sse_event(&c, 700, ev, sizeof ev), 0);

    /* the workers are free: other requests go on while three streams are open (2 workers) */
    for (int i = 0; i < 6; i++) {
        bundle_stack_req(s, "GET", "/sync/capabilities", tok, "dev-a", NULL, &r);
        e2e_assert_status(&r, 200);
        e2e_response_free(&r);
    }

    /* a client that goes away: the count drops within 5 s */
    ck_assert(wait_subscribers(s, "wanda", 3, 5000));
    sse_close(&b);
    sse_close(&c);
    ck_assert_msg(wait_subscribers(s, "wanda", 1, 5000), "subscriber count did not drop within 5 s");

    /* metrics */
    ck_assert(e2e_fetch_metric(s, "oversyncd_watch_streams") == 1);
    ck_assert(e2e_fetch_metric(s, "oversyncd_watch_wakeups_total") >= 3);
    ck_assert(e2e_fetch_metric(s, "oversyncd_watch_heartbeats_total") >= 1);

    /* [bundle] watch off by reload: open streams end, new ones are refused, the flag follows */
    e2e_rewrite_conf(s, "[bundle]\nwatch = off\n");
    e2e_reload(s);
    int rc;
    do
        rc = sse_next(&a, 5000, ev, sizeof ev);
    while (rc == 1);
    ck_assert_msg(rc == -1, "the stream ends on reload");
    sse_close(&a);
    ck_assert(e2e_wait_answer(s, "GET", "/health", NULL, 200, NULL, 5000, &r));
    e2e_response_free(&r);
    long deadline = e2e_now_ms() + 5000;
    do {
        e2e_response_free(&r);
        e2e_sleep_ms(50);
        bundle_stack_req(s, "GET", "/sync/watch", tok, "dev-a", NULL, &r);
    } while (r.status != 503 && e2e_now_ms() < deadline);
    e2e_assert_status(&r, 503);
    e2e_assert_body_has(&r, "\"error\":\"bundle_change_watch_disabled\"");
    e2e_response_free(&r);
    bundle_stack_req(s, "GET", "/sync/capabilities", tok, "dev-a", NULL, &r);
    e2e_assert_body_has(&r, "\"bundle_change_watch\":false");
    e2e_response_free(&r);
    free(tok);
    bundle_stack_stop(s);
}
END_TEST

/* A client that goes away from an idle stream (no heartbeat due for a minute): the web server
 * closes the FastCGI connection and the count drops within 5 s, as mobile_flow expects. */
START_TEST(test_watch_idle_disconnect)
{
    struct e2e_stack *s = start("[bundle]\nwatch_heartbeat = 60s\n");
    char *tok = e2e_token(s, "ida", "ignored", NULL);
    initialize(s, tok, "dev-a");
    for (int round = 0; round < 2; round++) {
        struct sse a[3];
        for (int i = 0; i < 3; i++) {
            ck_assert(sse_open(s, &a[i], tok, "dev-b", NULL));
            ck_assert_int_eq(a[i].status, 200);
        }
        ck_assert(wait_subscribers(s, "ida", 3, 5000));
        e2e_sleep_ms(200);
        for (int i = 0; i < 3; i++)
            sse_close(&a[i]);
        long t0 = e2e_now_ms();
        ck_assert_msg(wait_subscribers(s, "ida", 0, 5000), "the count did not drop within 5 s");
        fprintf(stderr, "idle streams gone after %ld ms\n", e2e_now_ms() - t0);
    }
    free(tok);
    bundle_stack_stop(s);
}
END_TEST

/* Coalescing: a stream whose web server does not read keeps one pending event, the newest. */
START_TEST(test_watch_lifecycle)
{
    struct e2e_stack *s = start(NULL);
    char *tok = e2e_token(s, "lena", "ignored", NULL);
    char ev[1024];
    initialize(s, tok, "dev-a");

    /* a killed watch process is respawned; its streams end (clients reconnect) */
    struct sse a;
    ck_assert(sse_open(s, &a, tok, "dev-b", NULL));
    ck_assert_int_eq(a.status, 200);
    ck_assert(wait_subscribers(s, "lena", 1, 5000));
    pid_t w = watch_pid(s);
    ck_assert_int_gt(w, 0);
    kill(w, SIGKILL);
    int rc;
    do
        rc = sse_next(&a, 5000, ev, sizeof ev);
    while (rc == 1);
    ck_assert_int_eq(rc, -1);
    sse_close(&a);
    long deadline = e2e_now_ms() + 5000;
    pid_t w2 = 0;
    while ((w2 = watch_pid(s)) == 0 || w2 == w) {
        ck_assert_msg(e2e_now_ms() < deadline, "the watch process was not respawned");
        e2e_sleep_ms(50);
    }
    ck_assert(sse_open(s, &a, tok, "dev-b", NULL));
    ck_assert_int_eq(a.status, 200);
    ck_assert(wait_subscribers(s, "lena", 1, 5000));
    commit_bundle("lena", 1, "dev-a", 1);
    ck_assert_int_eq(sse_event(&a, 3000, ev, sizeof ev), 1);
    ck_assert_str_eq(ev, "event: bundle\ndata: {\"bundle_seq\":1,\"source_id\":\"dev-a\",\"source_bundle_id\":1}");

    /* PostgreSQL restarts under an open stream: it stays open, and after the LISTEN is back the
     * catch-up brings what was committed meanwhile */
    e2e_pg_stop();
    e2e_sleep_ms(300);
    e2e_pg_start();
    commit_bundle("lena", 2, "dev-a", 2);   /* may be before the LISTEN is back: the catch-up has it */
    deadline = e2e_now_ms() + 8000;
    bool got2 = false;
    while (!got2 && e2e_now_ms() < deadline) {
        rc = sse_event(&a, 500, ev, sizeof ev);
        ck_assert_int_ne(rc, -1);
        got2 = rc == 1 && strstr(ev, "\"bundle_seq\":2") != NULL;
    }
    ck_assert_msg(got2, "no event for the bundle committed around the restart");
    ck_assert(e2e_wait_metric(s, "oversyncd_watch_notify_reconnects_total", 1, 5000));

    /* SIGHUP: open streams end cleanly, the new watch process serves new ones */
    e2e_reload(s);
    do
        rc = sse_next(&a, 5000, ev, sizeof ev);
    while (rc == 1);
    ck_assert_int_eq(rc, -1);
    sse_close(&a);
    deadline = e2e_now_ms() + 5000;
    do {
        sse_close(&a);
        e2e_sleep_ms(50);
        ck_assert(sse_open(s, &a, tok, "dev-b", "?after_bundle_seq=2"));
    } while (a.status != 200 && e2e_now_ms() < deadline);
    ck_assert_int_eq(a.status, 200);
    ck_assert(wait_subscribers(s, "lena", 1, 5000));

    /* SIGTERM: the stream ends (END_REQUEST, not a reset), the master exits 0 */
    int st = e2e_stop_oversyncd(s, SIGTERM, 10000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status %d", st);
    do
        rc = sse_next(&a, 5000, ev, sizeof ev);
    while (rc == 1);
    ck_assert_int_eq(rc, -1);
    sse_close(&a);
    free(tok);
    bundle_stack_stop(s);
}
END_TEST

/* ------------------------------------------------------------------ protocol = upload: wait=S */

struct bg_download {
    struct e2e_stack *s;
    const char *path;
    const char *token;
    struct e2e_response r;
    long ms;
};

static void *bg_download_run(void *ud)
{
    struct bg_download *d = ud;
    long t0 = e2e_now_ms();
    e2e_request(d->s, "GET", d->path, d->token, NULL, &d->r);
    d->ms = e2e_now_ms() - t0;
    return NULL;
}

static void upload_one(struct e2e_stack *s, const char *tok, long long scid, const char *pk)
{
    char *body = e2e_strf("{\"last_server_seq_seen\":0,\"changes\":[{\"source_change_id\":%lld,\"schema\":\"business\","
                          "\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"%s\",\"server_version\":0,"
                          "\"payload\":{\"id\":\"%s\",\"name\":\"n\",\"email\":\"%s@example.com\"}}]}", scid, pk, pk, pk);
    struct e2e_response r;
    e2e_request(s, "POST", "/sync/upload", tok, body, &r);
    e2e_assert_status(&r, 200);
    e2e_assert_body_has(&r, "\"status\":\"applied\"");
    e2e_response_free(&r);
    free(body);
}

START_TEST(test_download_wait)
{
    struct e2e_stack *s = e2e_start(&(struct e2e_options){ .oversyncd_conf = "[sync]\ndownload_max_wait = 5s\n" });
    char *phone = e2e_token(s, "paula", "phone", NULL);
    char *laptop = e2e_token(s, "paula", "laptop", NULL);
    struct e2e_response r;

    /* a bad wait, or one above the maximum: 400 */
    static const char *const bad[] = { "/sync/download?wait=6", "/sync/download?wait=x", "/sync/download?wait=-1",
                                       "/sync/download?wait=1.5" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e2e_request(s, "GET", bad[i], phone, NULL, &r);
        e2e_assert_status(&r, 400);
        e2e_assert_body_has(&r, "\"error\":\"invalid_request\"");
        e2e_response_free(&r);
    }
    /* without wait (or wait=0): answered at once, as ever */
    long t0 = e2e_now_ms();
    e2e_request(s, "GET", "/sync/download", phone, NULL, &r);
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "{\"changes\":[],\"has_more\":false,\"next_after\":0,\"window_until\":0}");
    e2e_response_free(&r);
    e2e_request(s, "GET", "/sync/download?wait=0", phone, NULL, &r);
    e2e_assert_status(&r, 200);
    e2e_response_free(&r);
    ck_assert_int_lt(e2e_now_ms() - t0, 1000);

    /* nothing comes: the empty page after the wait */
    t0 = e2e_now_ms();
    e2e_request(s, "GET", "/sync/download?wait=1", phone, NULL, &r);
    long took = e2e_now_ms() - t0;
    e2e_assert_status(&r, 200);
    ck_assert_str_eq(r.body, "{\"changes\":[],\"has_more\":false,\"next_after\":0,\"window_until\":0}");
    e2e_assert_header(&r, "Content-Type", "application/json");
    ck_assert_msg(took >= 900 && took < 3000, "took %ld ms", took);
    e2e_response_free(&r);

    /* another device uploads while the phone waits: answered at once with the change */
    struct bg_download d = { s, "/sync/download?wait=5", phone, { 0 }, 0 };
    pthread_t th;
    pthread_create(&th, NULL, bg_download_run, &d);
    ck_assert(e2e_wait_metric(s, "oversyncd_watch_longpolls", 1, 3000));
    /* four more waiting downloads than there are workers: uploads still get through */
    struct bg_download more[4];
    pthread_t mth[4];
    for (int i = 0; i < 4; i++) {
        more[i] = (struct bg_download){ s, "/sync/download?wait=5", phone, { 0 }, 0 };
        pthread_create(&mth[i], NULL, bg_download_run, &more[i]);
    }
    ck_assert(e2e_wait_metric(s, "oversyncd_watch_longpolls", 5, 3000));
    upload_one(s, laptop, 1, "7d6f3f0a-0000-4000-8000-000000000001");
    pthread_join(th, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(mth[i], NULL);
    e2e_assert_status(&d.r, 200);
    ck_assert_msg(d.ms < 4000, "took %ld ms", d.ms);
    e2e_assert_body_has(&d.r, "\"pk\":\"7d6f3f0a-0000-4000-8000-000000000001\"");
    e2e_assert_body_has(&d.r, "\"source_id\":\"laptop\"");
    for (int i = 0; i < 4; i++) {
        e2e_assert_body_has(&more[i].r, "\"source_id\":\"laptop\"");
        e2e_response_free(&more[i].r);
    }
    e2e_response_free(&d.r);

    /* there are changes: answered at once */
    t0 = e2e_now_ms();
    e2e_request(s, "GET", "/sync/download?wait=5", phone, NULL, &r);
    e2e_assert_body_has(&r, "\"source_id\":\"laptop\"");
    ck_assert_int_lt(e2e_now_ms() - t0, 1000);
    e2e_response_free(&r);

    /* the phone's own upload does not wake its wait (include_self=false); with include_self it does */
    d = (struct bg_download){ s, "/sync/download?after=1&wait=2", phone, { 0 }, 0 };
    pthread_create(&th, NULL, bg_download_run, &d);
    ck_assert(e2e_wait_metric(s, "oversyncd_watch_longpolls", 1, 3000));
    upload_one(s, phone, 1, "7d6f3f0a-0000-4000-8000-000000000002");
    pthread_join(th, NULL);
    e2e_assert_status(&d.r, 200);
    ck_assert_msg(d.ms >= 1800, "woken after %ld ms by its own upload", d.ms);
    e2e_assert_body_has(&d.r, "\"changes\":[]");
    e2e_response_free(&d.r);
    d = (struct bg_download){ s, "/sync/download?after=1&include_self=true&wait=5", phone, { 0 }, 0 };
    pthread_create(&th, NULL, bg_download_run, &d);
    pthread_join(th, NULL);
    e2e_assert_body_has(&d.r, "\"source_id\":\"phone\"");   /* already there: at once */
    e2e_response_free(&d.r);

    ck_assert(e2e_fetch_metric(s, "oversyncd_watch_longpoll_changes_total") >= 5);
    ck_assert(e2e_fetch_metric(s, "oversyncd_watch_longpoll_timeouts_total") >= 2);
    free(phone);
    free(laptop);
    e2e_stop(s);
}
END_TEST

static Suite *watch_suite(void)
{
    Suite *s = suite_create("e2e_watch");
    TCase *tc = tcase_create("lighttpd");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_watch_stream);
    tcase_add_test(tc, test_watch_idle_disconnect);
    tcase_add_test(tc, test_watch_lifecycle);
    tcase_add_test(tc, test_download_wait);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(watch_suite(), NULL);
}
