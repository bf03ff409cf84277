/* Real parallel clients against the real server (issue #3): oversyncd behind the lighttpd of
 * lighttpd-example/, driven by threads over HTTP, checking the invariants of SPEC §8:
 *
 *   - N devices of one user writing the same row at once (§8.1, §8.4),
 *   - one scid raced by parallel requests (§8.2, §4.3 step 2),
 *   - a downloader paging while several devices write: no change skipped or repeated (§8.3, §8.6),
 *   - many users with the same primary keys in parallel (§8.5),
 *   - the /metrics counters against what the clients saw under a mixed load.
 *
 * Every test starts a stack of its own, so its metrics are its own. The PostgreSQL cluster is
 * shared by the whole run, so every test uses user names of its own (with a per-process tag).
 * Threads never call Check: they record the first problem, and the main thread asserts. */
#include "e2e.h"
#include "../run_suites.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOOP_DEADLINE_MS 60000   /* no loop of a test runs longer than this */

/* The invariants checked here are the sidecar's. lighttpd-example/oversyncd.conf materializes
 * business.users into one table shared by all users, and these tests reuse primary keys across
 * users and runs on purpose (isolation, §8.5), which a shared business table cannot hold: there
 * business.users stays in the sidecar. check_e2e_foundation covers the shipped materializer. */
static struct e2e_stack *start_stack(void)
{
    return e2e_start(&(struct e2e_options){ .oversyncd_conf = "[table business.users]\nmaterializer = none\n" });
}

/* ------------------------------------------------------------------------ tiny JSON reader */

/* oversyncd answers compact JSON; this reads just enough of it: members of objects and elements
 * of arrays, with strings (and their escapes) skipped properly so that a payload can never be
 * mistaken for a member of the enclosing object. */

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* The end of the JSON value that starts at p, or NULL when it is malformed. */
static const char *skip_value(const char *p)
{
    p = ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1])
                p++;
        return *p ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p) {
            if (*p == '"') {
                p = skip_value(p);
                if (!p)
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    const char *start = p;
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
        p++;
    return p > start ? p : NULL;
}

/* The value of member key of the object at obj, or NULL. */
static const char *member(const char *obj, const char *key)
{
    if (!obj)
        return NULL;
    const char *p = ws(obj);
    if (*p != '{')
        return NULL;
    p = ws(p + 1);
    size_t kl = strlen(key);
    while (*p == '"') {
        const char *k = p + 1;
        const char *e = skip_value(p);
        if (!e)
            return NULL;
        bool match = (size_t)(e - 1 - k) == kl && strncmp(k, key, kl) == 0;
        p = ws(e);
        if (*p != ':')
            return NULL;
        p = ws(p + 1);
        if (match)
            return p;
        p = skip_value(p);
        if (!p)
            return NULL;
        p = ws(p);
        if (*p != ',')
            return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

static const char *array_first(const char *arr)
{
    if (!arr)
        return NULL;
    const char *p = ws(arr);
    if (*p != '[')
        return NULL;
    p = ws(p + 1);
    return *p == ']' ? NULL : p;
}

static const char *array_next(const char *elem)
{
    const char *p = skip_value(elem);
    if (!p)
        return NULL;
    p = ws(p);
    return *p == ',' ? ws(p + 1) : NULL;
}

/* An integer member (not a fraction, not a string). */
static bool get_ll(const char *obj, const char *key, long long *out)
{
    const char *v = member(obj, key);
    if (!v || !(*v == '-' || isdigit((unsigned char)*v)))
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || errno || *end == '.' || *end == 'e' || *end == 'E')
        return false;
    *out = x;
    return true;
}

/* A string member without escapes (all the strings these tests look at are plain). */
static bool get_str(const char *obj, const char *key, char *buf, size_t len)
{
    const char *v = member(obj, key);
    if (!v || *v != '"')
        return false;
    const char *e = skip_value(v);
    if (!e)
        return false;
    size_t n = (size_t)(e - v - 2);
    if (n >= len || memchr(v + 1, '\\', n))
        return false;
    memcpy(buf, v + 1, n);
    buf[n] = '\0';
    return true;
}

static bool get_bool(const char *obj, const char *key, bool *out)
{
    const char *v = member(obj, key);
    if (v && strncmp(v, "true", 4) == 0)
        *out = true;
    else if (v && strncmp(v, "false", 5) == 0)
        *out = false;
    else
        return false;
    return true;
}

/* ------------------------------------------------------------------------- upload answers */

struct status {
    char status[24];
    long long scid;
    bool has_nsv;                 /* new_server_version present */
    long long nsv;
    bool has_row;                 /* server_row present (an object) */
    long long row_sv;
    char row_name[64];            /* server_row.payload.name, "" when absent */
};

/* The statuses of an upload answer, at most max; -1 when the answer does not have the shape of
 * SPEC §4.6. */
static int parse_statuses(const char *body, struct status *st, int max)
{
    bool accepted;
    long long highest;
    if (!get_bool(body, "accepted", &accepted) || !get_ll(body, "highest_server_seq", &highest))
        return -1;
    const char *arr = member(body, "statuses");
    if (!arr || *arr != '[')
        return -1;
    int n = 0;
    for (const char *e = array_first(arr); e; e = array_next(e)) {
        if (n == max)
            return -1;
        struct status *s = &st[n++];
        memset(s, 0, sizeof *s);
        if (!get_str(e, "status", s->status, sizeof s->status) || !get_ll(e, "source_change_id", &s->scid))
            return -1;
        s->has_nsv = get_ll(e, "new_server_version", &s->nsv);
        const char *row = member(e, "server_row");
        if (row && *row == '{') {
            s->has_row = true;
            if (!get_ll(row, "server_version", &s->row_sv))
                return -1;
            const char *pl = member(row, "payload");
            if (pl && *pl == '{')
                get_str(pl, "name", s->row_name, sizeof s->row_name);
        }
    }
    return n;
}

/* ----------------------------------------------------------------------- download answers */

struct change_row {
    long long server_id, sv, scid;
    char op[8];
    char pk[40];
    char source[64];
    char name[64];                /* payload.name, "" when absent or null */
};

struct page {
    int n;
    bool has_more;
    long long next_after, window_until;
};

/* One download answer into rows (at most max). false when it does not have the shape of §5. */
static bool parse_page(const char *body, struct change_row *rows, int max, struct page *pg)
{
    memset(pg, 0, sizeof *pg);
    if (!get_bool(body, "has_more", &pg->has_more) || !get_ll(body, "next_after", &pg->next_after) ||
        !get_ll(body, "window_until", &pg->window_until))
        return false;
    const char *arr = member(body, "changes");
    if (!arr || *arr != '[')
        return false;
    for (const char *e = array_first(arr); e; e = array_next(e)) {
        if (pg->n == max)
            return false;
        struct change_row *c = &rows[pg->n++];
        memset(c, 0, sizeof *c);
        if (!get_ll(e, "server_id", &c->server_id) || !get_ll(e, "server_version", &c->sv) ||
            !get_ll(e, "source_change_id", &c->scid) || !get_str(e, "op", c->op, sizeof c->op) ||
            !get_str(e, "pk", c->pk, sizeof c->pk) || !get_str(e, "source_id", c->source, sizeof c->source))
            return false;
        const char *pl = member(e, "payload");
        if (pl && *pl == '{')
            get_str(pl, "name", c->name, sizeof c->name);
    }
    return true;
}

/* ---------------------------------------------------------------------------- utilities */

struct buf {
    char *p;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void bprintf(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
}

/* One change of business.users with payload {"id": pk, "name": name}. */
static void add_change(struct buf *b, long long scid, const char *op, const char *pk, long long sv,
                       const char *name)
{
    bprintf(b,
            "%s{\"source_change_id\":%lld,\"schema\":\"business\",\"table\":\"users\",\"op\":\"%s\","
            "\"pk\":\"%s\",\"server_version\":%lld,\"payload\":{\"id\":\"%s\",\"name\":\"%s\"}}",
            b->len && b->p[b->len - 1] == '}' ? "," : "", scid, op, pk, sv, pk, name);
}

static void begin_batch(struct buf *b)
{
    b->len = 0;
    bprintf(b, "{\"last_server_seq_seen\":0,\"changes\":[");
}

static void end_batch(struct buf *b)
{
    bprintf(b, "]}");
}

static void make_pk(char out[40], unsigned group, unsigned long long n)
{
    snprintf(out, 40, "%08x-0000-4000-8000-%012llx", group, n);
}

/* A tag that keeps the users of this process apart from those of any other run on the cluster. */
static void make_user(char *out, size_t len, const char *test, int i)
{
    snprintf(out, len, "%s-%x-%d", test, (unsigned)getpid() ^ (unsigned)time(NULL), i);
}

/* The first problem seen by any thread, and how many there were. */
struct errs {
    pthread_mutex_t lock;
    atomic_int n;
    char first[768];
};

static void errs_init(struct errs *e)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->lock, NULL);
}

__attribute__((format(printf, 2, 3))) static void note(struct errs *e, const char *fmt, ...)
{
    if (atomic_fetch_add(&e->n, 1) != 0)
        return;
    pthread_mutex_lock(&e->lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->first, sizeof e->first, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&e->lock);
}

#define assert_no_errs(e)                                                                     \
    ck_assert_msg(atomic_load(&(e)->n) == 0, "%d problem(s) in the client threads; first: %s", \
                  atomic_load(&(e)->n), (e)->first)

/* POST /sync/upload and parse the statuses. Returns the number of statuses, or -1 after noting
 * the problem (anything but a well-formed HTTP 200 is one). */
static int upload(const struct e2e_stack *s, const char *tok, const char *body, struct status *st,
                  int max, struct errs *e, const char *who)
{
    struct e2e_response r;
    e2e_request(s, "POST", "/sync/upload", tok, body, &r);
    int n = -1;
    if (r.status != 200)
        note(e, "%s: upload answered HTTP %ld (%s): %.400s", who, r.status, r.error, r.body);
    else if ((n = parse_statuses(r.body, st, max)) < 0)
        note(e, "%s: malformed upload answer: %.400s", who, r.body);
    e2e_response_free(&r);
    return n;
}

/* GET /sync/download; returns false after noting the problem. */
static bool download(const struct e2e_stack *s, const char *tok, long long after, int limit,
                     bool include_self, long long until, struct change_row *rows, struct page *pg,
                     struct errs *e, const char *who)
{
    char path[160];
    int len = snprintf(path, sizeof path, "/sync/download?after=%lld&limit=%d", after, limit);
    if (include_self)
        len += snprintf(path + len, sizeof path - (size_t)len, "&include_self=true");
    if (until > 0)
        snprintf(path + len, sizeof path - (size_t)len, "&until=%lld", until);
    struct e2e_response r;
    e2e_request(s, "GET", path, tok, NULL, &r);
    bool ok = false;
    if (r.status != 200)
        note(e, "%s: %s answered HTTP %ld (%s): %.400s", who, path, r.status, r.error, r.body);
    else if (!parse_page(r.body, rows, limit, pg))
        note(e, "%s: malformed download answer to %s: %.400s", who, path, r.body);
    else
        ok = true;
    e2e_response_free(&r);
    return ok;
}

/* The user's whole change log as the device sees it, in one frozen window (pages of 1000).
 * malloc'd; *n rows. Asserts (main thread only). */
static struct change_row *download_all(const struct e2e_stack *s, const char *tok, bool include_self, int *n)
{
    struct errs e;
    errs_init(&e);
    int cap = 1000, count = 0;
    struct change_row *all = malloc(sizeof *all * (size_t)cap);
    long long after = 0, until = 0;
    for (int guard = 0; guard < 1000; guard++) {
        if (count + 1000 > cap) {
            cap *= 2;
            all = realloc(all, sizeof *all * (size_t)cap);
        }
        struct page pg;
        bool ok = download(s, tok, after, 1000, include_self, until, all + count, &pg, &e, "download_all");
        assert_no_errs(&e);
        ck_assert(ok);
        count += pg.n;
        after = pg.next_after;
        until = pg.window_until;
        if (!pg.has_more)
            break;
    }
    *n = count;
    return all;
}

#define M_APPLIED "oversyncd_sync_changes_applied_total"
#define M_CONFLICTS "oversyncd_sync_conflicts_total"

static void assert_metrics(const struct e2e_stack *s, long applied, long conflicts)
{
    e2e_wait_metric(s, M_APPLIED, (double)applied, 3000);
    e2e_wait_metric(s, M_CONFLICTS, (double)conflicts, 3000);
    e2e_sleep_ms(100);   /* and nothing more arrives */
    double a = e2e_fetch_metric(s, M_APPLIED);
    double c = e2e_fetch_metric(s, M_CONFLICTS);
    ck_assert_msg(a == (double)applied, "%s = %g, the clients saw %ld applied", M_APPLIED, a, applied);
    ck_assert_msg(c == (double)conflicts, "%s = %g, the clients saw %ld conflicts", M_CONFLICTS, c, conflicts);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* ======================================================= 1. N devices write the same row at once */

#define T1_DEVICES 8
#define T1_ROUNDS 20   /* UPDATE rounds after the INSERT round */

struct t1 {
    const struct e2e_stack *stack;
    char *tok[T1_DEVICES];
    char pk[40];
    pthread_barrier_t barrier;
    long deadline;
    atomic_bool abort;
    struct errs errs;
    /* per round and device: the answer */
    char status[T1_ROUNDS + 1][T1_DEVICES][24];
    long long version[T1_ROUNDS + 1][T1_DEVICES];   /* new_server_version or server_row.server_version */
    bool has_nsv[T1_ROUNDS + 1][T1_DEVICES];
    char row_name[T1_ROUNDS + 1][T1_DEVICES][64];
};

struct t1_arg {
    struct t1 *t;
    int dev;
};

static void *t1_device(void *arg)
{
    struct t1 *t = ((struct t1_arg *)arg)->t;
    int dev = ((struct t1_arg *)arg)->dev;
    char who[32], name[32];
    struct buf b = { 0 };
    long long known = 0;
    for (int round = 0; round <= T1_ROUNDS; round++) {
        /* Every thread passes every barrier, whatever happened, so that none waits forever. */
        pthread_barrier_wait(&t->barrier);
        snprintf(t->status[round][dev], sizeof t->status[round][dev], "-");
        if (atomic_load(&t->abort))
            continue;
        if (e2e_now_ms() > t->deadline) {
            atomic_store(&t->abort, true);
            note(&t->errs, "device %d: deadline passed in round %d", dev, round);
            continue;
        }
        snprintf(who, sizeof who, "device d%d round %d", dev, round);
        snprintf(name, sizeof name, "d%d-r%d", dev, round);
        begin_batch(&b);
        add_change(&b, round + 1, round ? "UPDATE" : "INSERT", t->pk, known, name);
        end_batch(&b);
        struct status st[2];
        int n = upload(t->stack, t->tok[dev], b.p, st, 2, &t->errs, who);
        if (n < 0)
            continue;
        if (n != 1 || st[0].scid != round + 1) {
            note(&t->errs, "%s: %d statuses (first scid %lld)", who, n, n ? st[0].scid : -1);
            continue;
        }
        snprintf(t->status[round][dev], sizeof t->status[round][dev], "%s", st[0].status);
        t->has_nsv[round][dev] = st[0].has_nsv;
        if (strcmp(st[0].status, "applied") == 0 && st[0].has_nsv) {
            known = st[0].nsv;
        } else if (strcmp(st[0].status, "conflict") == 0 && st[0].has_row) {
            known = st[0].row_sv;
            snprintf(t->row_name[round][dev], sizeof t->row_name[round][dev], "%s", st[0].row_name);
        } else {
            note(&t->errs, "%s: unexpected answer %s (nsv %d, server_row %d)", who, st[0].status,
                 st[0].has_nsv, st[0].has_row);
            continue;
        }
        t->version[round][dev] = known;
    }
    free(b.p);
    return NULL;
}

START_TEST(test_devices_race_one_row)
{
    struct e2e_stack *s = start_stack();
    static struct t1 t;
    memset(&t, 0, sizeof t);
    errs_init(&t.errs);
    t.stack = s;
    char user[64];
    make_user(user, sizeof user, "t1", 0);
    for (int d = 0; d < T1_DEVICES; d++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%d", d);
        t.tok[d] = e2e_token(s, user, dev, NULL);
    }
    make_pk(t.pk, 0x1, 1);
    pthread_barrier_init(&t.barrier, NULL, T1_DEVICES);
    t.deadline = e2e_now_ms() + LOOP_DEADLINE_MS;

    pthread_t th[T1_DEVICES];
    struct t1_arg args[T1_DEVICES];
    for (int d = 0; d < T1_DEVICES; d++) {
        args[d] = (struct t1_arg){ &t, d };
        ck_assert_int_eq(pthread_create(&th[d], NULL, t1_device, &args[d]), 0);
    }
    for (int d = 0; d < T1_DEVICES; d++)
        pthread_join(th[d], NULL);
    pthread_barrier_destroy(&t.barrier);
    assert_no_errs(&t.errs);   /* includes: every answer was HTTP 200 with one status */

    /* Per round: exactly one applied, with the next version; every other device a conflict that
     * shows the winner's row (nothing lost, nothing applied twice). */
    int winner[T1_ROUNDS + 1];
    long long applied_versions[T1_ROUNDS + 1];
    int napplied = 0;
    long conflicts = 0;
    for (int round = 0; round <= T1_ROUNDS; round++) {
        winner[round] = -1;
        for (int d = 0; d < T1_DEVICES; d++) {
            if (strcmp(t.status[round][d], "applied") == 0) {
                ck_assert_msg(winner[round] < 0, "round %d: devices %d and %d were both applied", round,
                              winner[round], d);
                winner[round] = d;
                ck_assert_msg(napplied <= T1_ROUNDS, "too many applied");
                applied_versions[napplied++] = t.version[round][d];
            } else {
                ck_assert_msg(strcmp(t.status[round][d], "conflict") == 0, "round %d device %d: %s", round,
                              d, t.status[round][d]);
                ck_assert_msg(!t.has_nsv[round][d], "round %d device %d: a conflict with new_server_version",
                              round, d);
                conflicts++;
            }
        }
        ck_assert_msg(winner[round] >= 0, "round %d: no device was applied", round);
        ck_assert_msg(t.version[round][winner[round]] == round + 1,
                      "round %d: applied with new_server_version %lld, expected %d", round,
                      t.version[round][winner[round]], round + 1);
        char want[32];
        snprintf(want, sizeof want, "d%d-r%d", winner[round], round);
        for (int d = 0; d < T1_DEVICES; d++) {
            if (d == winner[round])
                continue;
            ck_assert_msg(t.version[round][d] == round + 1,
                          "round %d device %d: conflict with server_row.server_version %lld, expected %d",
                          round, d, t.version[round][d], round + 1);
            ck_assert_msg(strcmp(t.row_name[round][d], want) == 0,
                          "round %d device %d: conflict shows the row written by \"%s\", the winner was %s",
                          round, d, t.row_name[round][d], want);
        }
    }
    /* The applied versions over all devices: 1, 2, 3, ... without a gap or a duplicate. */
    qsort(applied_versions, (size_t)napplied, sizeof applied_versions[0], cmp_ll);
    ck_assert_int_eq(napplied, T1_ROUNDS + 1);
    for (int i = 0; i < napplied; i++)
        ck_assert_msg(applied_versions[i] == i + 1, "applied versions: #%d is %lld", i, applied_versions[i]);

    /* The row's version is the number of applied changes: a stale write says so. */
    struct buf b = { 0 };
    begin_batch(&b);
    add_change(&b, 1000, "UPDATE", t.pk, 0, "probe");
    end_batch(&b);
    struct status st[2];
    int n = upload(s, t.tok[0], b.p, st, 2, &t.errs, "probe");
    assert_no_errs(&t.errs);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(st[0].status, "conflict");
    ck_assert(st[0].has_row);
    ck_assert_int_eq(st[0].row_sv, napplied);
    conflicts++;
    free(b.p);

    /* The log: one row per applied change, versions 1..N in server_id order, each from the
     * round's winner with that round's scid. */
    int nrows;
    struct change_row *rows = download_all(s, t.tok[1], true, &nrows);
    ck_assert_int_eq(nrows, napplied);
    for (int i = 0; i < nrows; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%d", winner[i]);
        ck_assert_msg(rows[i].sv == i + 1, "log row %d has server_version %lld", i, rows[i].sv);
        ck_assert(i == 0 || rows[i].server_id > rows[i - 1].server_id);
        ck_assert_str_eq(rows[i].pk, t.pk);
        ck_assert_str_eq(rows[i].op, i ? "UPDATE" : "INSERT");
        ck_assert_str_eq(rows[i].source, dev);
        ck_assert_int_eq(rows[i].scid, i + 1);
    }
    free(rows);

    assert_metrics(s, napplied, conflicts);
    for (int d = 0; d < T1_DEVICES; d++)
        free(t.tok[d]);
    e2e_stop(s);
}
END_TEST

/* ============================================================= 2. one scid, parallel requests */

#define T2_THREADS 8
#define T2_ROUNDS 12   /* even rounds INSERT a new row, odd rounds UPDATE it */

struct t2 {
    const struct e2e_stack *stack;
    char *tok;
    pthread_barrier_t barrier;
    char body[T2_ROUNDS][512];
    long deadline;
    atomic_bool abort;
    struct errs errs;
    struct status answer[T2_ROUNDS][T2_THREADS];
    bool answered[T2_ROUNDS][T2_THREADS];
};

struct t2_arg {
    struct t2 *t;
    int i;
};

static void *t2_thread(void *arg)
{
    struct t2 *t = ((struct t2_arg *)arg)->t;
    int me = ((struct t2_arg *)arg)->i;
    for (int round = 0; round < T2_ROUNDS; round++) {
        pthread_barrier_wait(&t->barrier);
        if (atomic_load(&t->abort))
            continue;
        if (e2e_now_ms() > t->deadline) {
            atomic_store(&t->abort, true);
            note(&t->errs, "thread %d: deadline passed in round %d", me, round);
            continue;
        }
        char who[48];
        snprintf(who, sizeof who, "thread %d round %d", me, round);
        struct status st[2];
        int n = upload(t->stack, t->tok, t->body[round], st, 2, &t->errs, who);
        if (n < 0)
            continue;
        if (n != 1) {
            note(&t->errs, "%s: %d statuses", who, n);
            continue;
        }
        t->answer[round][me] = st[0];
        t->answered[round][me] = true;
    }
    return NULL;
}

START_TEST(test_same_scid_in_parallel)
{
    struct e2e_stack *s = start_stack();
    static struct t2 t;
    memset(&t, 0, sizeof t);
    errs_init(&t.errs);
    t.stack = s;
    char user[64];
    make_user(user, sizeof user, "t2", 0);
    t.tok = e2e_token(s, user, "phone", NULL);
    char pk[T2_ROUNDS / 2][40];
    struct buf b = { 0 };
    for (int round = 0; round < T2_ROUNDS; round++) {
        make_pk(pk[round / 2], 0x2, (unsigned long long)round / 2);
        char name[32];
        snprintf(name, sizeof name, "r%d", round);
        begin_batch(&b);
        add_change(&b, round + 1, round % 2 ? "UPDATE" : "INSERT", pk[round / 2], round % 2, name);
        end_batch(&b);
        ck_assert_uint_lt(b.len, sizeof t.body[round]);
        memcpy(t.body[round], b.p, b.len + 1);
    }
    free(b.p);
    pthread_barrier_init(&t.barrier, NULL, T2_THREADS);
    t.deadline = e2e_now_ms() + LOOP_DEADLINE_MS;

    pthread_t th[T2_THREADS];
    struct t2_arg args[T2_THREADS];
    for (int i = 0; i < T2_THREADS; i++) {
        args[i] = (struct t2_arg){ &t, i };
        ck_assert_int_eq(pthread_create(&th[i], NULL, t2_thread, &args[i]), 0);
    }
    for (int i = 0; i < T2_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&t.barrier);
    assert_no_errs(&t.errs);

    /* Per scid: one applied with the version, all the others applied without one. */
    for (int round = 0; round < T2_ROUNDS; round++) {
        int fresh = 0, idempotent = 0;
        for (int i = 0; i < T2_THREADS; i++) {
            const struct status *a = &t.answer[round][i];
            ck_assert(t.answered[round][i]);
            ck_assert_int_eq(a->scid, round + 1);
            ck_assert_msg(strcmp(a->status, "applied") == 0, "scid %d, request %d: %s (server_row %d, sv %lld)",
                          round + 1, i, a->status, a->has_row, a->row_sv);
            if (a->has_nsv) {
                fresh++;
                ck_assert_msg(a->nsv == round % 2 + 1, "scid %d: new_server_version %lld", round + 1, a->nsv);
            } else {
                idempotent++;
            }
        }
        ck_assert_msg(fresh == 1 && idempotent == T2_THREADS - 1,
                      "scid %d: %d answers with new_server_version, %d without", round + 1, fresh, idempotent);
    }

    /* The log: exactly one row per scid. */
    int nrows;
    struct change_row *rows = download_all(s, t.tok, true, &nrows);
    ck_assert_int_eq(nrows, T2_ROUNDS);
    int seen[T2_ROUNDS + 1] = { 0 };
    for (int i = 0; i < nrows; i++) {
        ck_assert_str_eq(rows[i].source, "phone");
        ck_assert(rows[i].scid >= 1 && rows[i].scid <= T2_ROUNDS);
        seen[rows[i].scid]++;
        ck_assert_int_eq(rows[i].sv, (rows[i].scid - 1) % 2 + 1);
        ck_assert_str_eq(rows[i].pk, pk[(rows[i].scid - 1) / 2]);
    }
    for (int k = 1; k <= T2_ROUNDS; k++)
        ck_assert_msg(seen[k] == 1, "scid %d is %d times in the log", k, seen[k]);
    free(rows);

    /* Only the first of each race counts as applied. */
    assert_metrics(s, T2_ROUNDS, 0);
    free(t.tok);
    e2e_stop(s);
}
END_TEST

/* ======================================== 3 and 5. a downloader pages while devices write */

#define T3_WRITERS 4
#define T3_BATCHES 30
#define T3_BATCH 10
#define T3_CONTENDERS 2
#define T3_PAGE 7
#define T3_PACE_MS 40   /* a writer waits 20..59 ms between batches */

struct t3 {
    const struct e2e_stack *stack;
    char *writer_tok[T3_WRITERS];
    char *contender_tok[T3_CONTENDERS];
    char *reader_tok;
    char contended_pk[40];
    long deadline;
    atomic_int writers_left;       /* writers still writing */
    atomic_int running;            /* writers and contenders still writing */
    atomic_long applied, conflicts;    /* as the clients saw them */
    struct errs errs;

    /* contenders: the versions they were applied with */
    pthread_mutex_t lock;
    long long contended_versions[4096];
    int ncontended;

    /* the downloader */
    long long *ids;
    int nids, cap;
    int pages, frozen_pages, windows;
    int caught_up;                 /* live pages that reached the end while writes went on */
};

struct t3_arg {
    struct t3 *t;
    int i;
};

static void *t3_writer(void *arg)
{
    struct t3 *t = ((struct t3_arg *)arg)->t;
    int w = ((struct t3_arg *)arg)->i;
    struct buf b = { 0 };
    struct status st[T3_BATCH + 1];
    unsigned seed = (unsigned)w * 7919u + 17u;
    for (int batch = 0; batch < T3_BATCHES; batch++) {
        /* Paced like real devices, so that the downloader catches up and pages at the live edge
         * while the writers still write. */
        if (batch)
            e2e_sleep_ms(T3_PACE_MS / 2 + rand_r(&seed) % T3_PACE_MS);
        if (e2e_now_ms() > t->deadline) {
            note(&t->errs, "writer %d: deadline passed at batch %d", w, batch);
            break;
        }
        begin_batch(&b);
        for (int i = 0; i < T3_BATCH; i++) {
            int k = batch * T3_BATCH + i;
            char pk[40], name[32];
            make_pk(pk, 0x30 + (unsigned)w, (unsigned long long)k);
            snprintf(name, sizeof name, "w%d-%d", w, k);
            add_change(&b, k + 1, "INSERT", pk, 0, name);
        }
        end_batch(&b);
        char who[48];
        snprintf(who, sizeof who, "writer %d batch %d", w, batch);
        int n = upload(t->stack, t->writer_tok[w], b.p, st, T3_BATCH + 1, &t->errs, who);
        if (n < 0)
            continue;
        if (n != T3_BATCH) {
            note(&t->errs, "%s: %d statuses", who, n);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (strcmp(st[i].status, "applied") == 0 && st[i].has_nsv && st[i].nsv == 1 &&
                st[i].scid == batch * T3_BATCH + i + 1)
                atomic_fetch_add(&t->applied, 1);
            else
                note(&t->errs, "%s change %d: %s (nsv %d %lld, scid %lld)", who, i, st[i].status, st[i].has_nsv,
                     st[i].nsv, st[i].scid);
        }
    }
    free(b.p);
    atomic_fetch_sub(&t->writers_left, 1);
    atomic_fetch_sub(&t->running, 1);
    return NULL;
}

/* Two devices that keep writing one row with the version they last learned, while the writers
 * write: some of their changes conflict. */
static void *t3_contender(void *arg)
{
    struct t3 *t = ((struct t3_arg *)arg)->t;
    int c = ((struct t3_arg *)arg)->i;
    struct buf b = { 0 };
    long long known = 0;
    for (long long scid = 1; scid <= 2000 && atomic_load(&t->writers_left) > 0; scid++) {
        if (e2e_now_ms() > t->deadline) {
            note(&t->errs, "contender %d: deadline passed", c);
            break;
        }
        char name[32], who[48];
        snprintf(name, sizeof name, "c%d-%lld", c, scid);
        snprintf(who, sizeof who, "contender %d scid %lld", c, scid);
        begin_batch(&b);
        add_change(&b, scid, known ? "UPDATE" : "INSERT", t->contended_pk, known, name);
        end_batch(&b);
        struct status st[2];
        int n = upload(t->stack, t->contender_tok[c], b.p, st, 2, &t->errs, who);
        if (n < 0)
            continue;
        if (n != 1) {
            note(&t->errs, "%s: %d statuses", who, n);
            continue;
        }
        if (strcmp(st[0].status, "applied") == 0 && st[0].has_nsv) {
            known = st[0].nsv;
            atomic_fetch_add(&t->applied, 1);
            pthread_mutex_lock(&t->lock);
            if (t->ncontended < (int)(sizeof t->contended_versions / sizeof t->contended_versions[0]))
                t->contended_versions[t->ncontended++] = st[0].nsv;
            pthread_mutex_unlock(&t->lock);
        } else if (strcmp(st[0].status, "conflict") == 0 && st[0].has_row) {
            known = st[0].row_sv;
            atomic_fetch_add(&t->conflicts, 1);
        } else {
            note(&t->errs, "%s: unexpected %s", who, st[0].status);
        }
    }
    free(b.p);
    atomic_fetch_sub(&t->running, 1);
    return NULL;
}

/* Pages with after (and, one window in three, with a frozen until) until the writers have
 * stopped and it has caught up. Every server_id must be new and above every earlier one. */
static void *t3_downloader(void *arg)
{
    struct t3 *t = arg;
    struct change_row rows[T3_PAGE];
    long long after = 0, frozen = 0, last = 0;
    for (;;) {
        if (e2e_now_ms() > t->deadline) {
            note(&t->errs, "downloader: deadline passed after %d pages, %d changes", t->pages, t->nids);
            break;
        }
        bool quiet = atomic_load(&t->running) == 0;   /* read before the request */
        struct page pg;
        if (!download(t->stack, t->reader_tok, after, T3_PAGE, true, frozen, rows, &pg, &t->errs, "downloader"))
            break;
        t->pages++;
        if (frozen)
            t->frozen_pages++;
        char where[96];
        snprintf(where, sizeof where, "page %d (after %lld, until %lld)", t->pages, after, frozen);
        if (frozen && pg.window_until != frozen) {
            note(&t->errs, "downloader %s: window_until %lld", where, pg.window_until);
            break;
        }
        if (!frozen && pg.window_until < last) {
            note(&t->errs, "downloader %s: window_until %lld below the %lld already seen", where,
                 pg.window_until, last);
            break;
        }
        if (pg.has_more && pg.n != T3_PAGE) {
            note(&t->errs, "downloader %s: has_more with %d changes", where, pg.n);
            break;
        }
        bool bad = false;
        for (int i = 0; i < pg.n && !bad; i++) {
            long long id = rows[i].server_id;
            if (id <= last || id <= after || id > pg.window_until) {
                note(&t->errs, "downloader %s: server_id %lld after %lld (window_until %lld): a change "
                               "appeared below one already seen",
                     where, id, last, pg.window_until);
                bad = true;
            }
            last = id;
            if (t->nids == t->cap) {
                t->cap = t->cap ? 2 * t->cap : 1024;
                t->ids = realloc(t->ids, sizeof *t->ids * (size_t)t->cap);
            }
            t->ids[t->nids++] = id;
        }
        if (bad)
            break;
        long long want_next = pg.n ? rows[pg.n - 1].server_id : after;
        if (pg.next_after != want_next) {
            note(&t->errs, "downloader %s: next_after %lld, expected %lld", where, pg.next_after, want_next);
            break;
        }
        after = pg.next_after;

        if (frozen) {
            if (!pg.has_more)
                frozen = 0;   /* this window is done: back to live pages */
        } else if (pg.has_more && t->pages % 3 == 0) {
            frozen = pg.window_until;   /* page through this window with until */
            t->windows++;
        } else if (!pg.has_more) {
            if (quiet)
                break;   /* everything written before this request has been seen */
            t->caught_up++;
            e2e_sleep_ms(2);
        }
    }
    return NULL;
}

static void run_parallel_writes(bool contenders_and_metrics)
{
    struct e2e_stack *s = start_stack();
    static struct t3 t;
    memset(&t, 0, sizeof t);
    errs_init(&t.errs);
    pthread_mutex_init(&t.lock, NULL);
    t.stack = s;
    char user[64];
    make_user(user, sizeof user, contenders_and_metrics ? "t5" : "t3", 0);
    for (int w = 0; w < T3_WRITERS; w++) {
        char dev[16];
        snprintf(dev, sizeof dev, "w%d", w);
        t.writer_tok[w] = e2e_token(s, user, dev, NULL);
    }
    for (int c = 0; c < T3_CONTENDERS; c++) {
        char dev[16];
        snprintf(dev, sizeof dev, "c%d", c);
        t.contender_tok[c] = contenders_and_metrics ? e2e_token(s, user, dev, NULL) : NULL;
    }
    t.reader_tok = e2e_token(s, user, "reader", NULL);
    make_pk(t.contended_pk, 0x3f, 1);
    int ncont = contenders_and_metrics ? T3_CONTENDERS : 0;
    atomic_store(&t.writers_left, T3_WRITERS);
    atomic_store(&t.running, T3_WRITERS + ncont);
    long t0 = e2e_now_ms();
    t.deadline = t0 + LOOP_DEADLINE_MS;

    pthread_t down, wr[T3_WRITERS], ct[T3_CONTENDERS];
    struct t3_arg wargs[T3_WRITERS], cargs[T3_CONTENDERS];
    ck_assert_int_eq(pthread_create(&down, NULL, t3_downloader, &t), 0);
    for (int w = 0; w < T3_WRITERS; w++) {
        wargs[w] = (struct t3_arg){ &t, w };
        ck_assert_int_eq(pthread_create(&wr[w], NULL, t3_writer, &wargs[w]), 0);
    }
    for (int c = 0; c < ncont; c++) {
        cargs[c] = (struct t3_arg){ &t, c };
        ck_assert_int_eq(pthread_create(&ct[c], NULL, t3_contender, &cargs[c]), 0);
    }

    /* Meanwhile: the counters only grow. */
    double samples[2][600];
    int nsamples = 0;
    if (contenders_and_metrics) {
        while (atomic_load(&t.running) > 0 && nsamples < 600 && e2e_now_ms() < t.deadline) {
            samples[0][nsamples] = e2e_fetch_metric(s, M_APPLIED);
            samples[1][nsamples] = e2e_fetch_metric(s, M_CONFLICTS);
            nsamples++;
            e2e_sleep_ms(100);
        }
    }

    for (int w = 0; w < T3_WRITERS; w++)
        pthread_join(wr[w], NULL);
    for (int c = 0; c < ncont; c++)
        pthread_join(ct[c], NULL);
    pthread_join(down, NULL);
    long took = e2e_now_ms() - t0;
    fprintf(stderr, "%s: %ld applied, %ld conflicts; the downloader saw %d changes in %d pages (%d with until, "
                    "%d windows, %d times caught up); %ld ms\n",
            contenders_and_metrics ? "mixed load" : "downloader", atomic_load(&t.applied), atomic_load(&t.conflicts),
            t.nids, t.pages, t.frozen_pages, t.windows, t.caught_up, took);
    assert_no_errs(&t.errs);

    long applied = atomic_load(&t.applied), conflicts = atomic_load(&t.conflicts);
    ck_assert_int_eq(applied, (long)T3_WRITERS * T3_BATCHES * T3_BATCH + t.ncontended);
    /* The downloader saw every change exactly once (its ids strictly increase: no duplicate),
     * and they are exactly the user's log as a fresh download after the fact shows it. */
    int nrows;
    struct change_row *rows = download_all(s, t.reader_tok, true, &nrows);
    if (t.nids != applied || nrows != t.nids) {
        /* Name the first change of the log that the downloader never saw. */
        int j = 0;
        for (int i = 0; i < nrows; i++) {
            if (j < t.nids && t.ids[j] == rows[i].server_id) {
                j++;
                continue;
            }
            ck_abort_msg("the downloader skipped server_id %lld (%s scid %lld, %s) although it paged past it: "
                         "it saw %d changes, %ld were applied, the log has %d (%d pages, %d frozen windows, %ld ms)",
                         rows[i].server_id, rows[i].source, rows[i].scid, rows[i].op, t.nids, applied, nrows,
                         t.pages, t.windows, took);
        }
        ck_abort_msg("the downloader saw %d changes, %ld were applied, the log has %d", t.nids, applied, nrows);
    }
    ck_assert_msg(t.windows > 0 && t.frozen_pages > 0, "no page with until was made (%d pages)", t.pages);
    ck_assert_msg(t.caught_up > 0, "the downloader never caught up with the writers (%d pages)", t.pages);

    /* The log has every writer's scids once each. */
    static unsigned char seen[T3_WRITERS][T3_BATCHES * T3_BATCH + 1];
    memset(seen, 0, sizeof seen);
    int contended_rows = 0;
    for (int i = 0; i < nrows; i++) {
        ck_assert_msg(rows[i].server_id == t.ids[i], "log row %d has server_id %lld, the downloader saw %lld",
                      i, rows[i].server_id, t.ids[i]);
        int w;
        if (sscanf(rows[i].source, "w%d", &w) == 1 && w >= 0 && w < T3_WRITERS) {
            ck_assert(rows[i].scid >= 1 && rows[i].scid <= T3_BATCHES * T3_BATCH);
            ck_assert_msg(seen[w][rows[i].scid]++ == 0, "w%d scid %lld twice in the log", w, rows[i].scid);
            ck_assert_int_eq(rows[i].sv, 1);
        } else {
            ck_assert_msg(contenders_and_metrics && rows[i].source[0] == 'c', "a row from %s", rows[i].source);
            ck_assert_str_eq(rows[i].pk, t.contended_pk);
            contended_rows++;
        }
    }
    ck_assert_int_eq(contended_rows, t.ncontended);
    free(rows);

    if (contenders_and_metrics) {
        /* The contended row went 1, 2, 3, ... (SPEC §8.1), and the contenders did collide. */
        qsort(t.contended_versions, (size_t)t.ncontended, sizeof t.contended_versions[0], cmp_ll);
        for (int i = 0; i < t.ncontended; i++)
            ck_assert_msg(t.contended_versions[i] == i + 1, "contended row: applied version #%d is %lld", i,
                          t.contended_versions[i]);
        ck_assert_msg(t.ncontended > 0, "the contenders never got a change applied");
        /* The counters add up with what the clients saw, and only ever grew. */
        assert_metrics(s, applied, conflicts);
        /* the writers' batches of new rows went in one round trip; a contender's update that
         * conflicted missed its optimistic write and was written again the careful way */
        ck_assert_msg(e2e_fetch_metric(s, "oversyncd_sync_upload_one_trip_total") >= 1,
                      "no upload was written in one round trip");
        ck_assert_msg(conflicts == 0 || e2e_fetch_metric(s, "oversyncd_sync_upload_rewrites_total") >= 1,
                      "%ld conflicts, yet no optimistic write was rewritten", conflicts);
        for (int i = 0; i < nsamples; i++) {
            ck_assert_msg(samples[0][i] >= 0 && samples[1][i] >= 0, "sample %d: /metrics lacks a counter", i);
            ck_assert_msg(samples[0][i] <= (double)applied && samples[1][i] <= (double)conflicts,
                          "sample %d above the final totals", i);
            ck_assert_msg(i == 0 || (samples[0][i] >= samples[0][i - 1] && samples[1][i] >= samples[1][i - 1]),
                          "sample %d: a counter went down", i);
        }
    } else {
        assert_metrics(s, applied, 0);
    }

    free(t.ids);
    for (int w = 0; w < T3_WRITERS; w++)
        free(t.writer_tok[w]);
    for (int c = 0; c < T3_CONTENDERS; c++)
        free(t.contender_tok[c]);
    free(t.reader_tok);
    pthread_mutex_destroy(&t.lock);
    e2e_stop(s);
}

START_TEST(test_downloader_never_skips)
{
    run_parallel_writes(false);
}
END_TEST

START_TEST(test_mixed_load_metrics)
{
    run_parallel_writes(true);
}
END_TEST

/* ===================================================== 4. many users, the same primary keys */

#define T4_USERS 8
#define T4_PKS 10        /* per device: device a writes pks 0..9, device b pks 10..19 */
#define T4_BATCH 5

struct t4 {
    const struct e2e_stack *stack;
    char user[T4_USERS][64];
    char *tok[T4_USERS][2];
    pthread_barrier_t barrier;
    long deadline;
    struct errs errs;
    atomic_long applied;
};

struct t4_arg {
    struct t4 *t;
    int u, d;
};

static void *t4_device(void *arg)
{
    struct t4 *t = ((struct t4_arg *)arg)->t;
    int u = ((struct t4_arg *)arg)->u, d = ((struct t4_arg *)arg)->d;
    struct buf b = { 0 };
    struct status st[T4_BATCH + 1];
    memset(st, 0, sizeof st);
    char who[96], pk[40], name[96];
    pthread_barrier_wait(&t->barrier);   /* all users start at once */
    for (int k0 = 0; k0 < T4_PKS; k0 += T4_BATCH) {
        if (e2e_now_ms() > t->deadline) {
            note(&t->errs, "%s/%c: deadline passed", t->user[u], 'a' + d);
            break;
        }
        begin_batch(&b);
        for (int k = k0; k < k0 + T4_BATCH; k++) {
            make_pk(pk, 0x4, (unsigned long long)(d * T4_PKS + k));
            snprintf(name, sizeof name, "%s:%d", t->user[u], d * T4_PKS + k);
            add_change(&b, k + 1, "INSERT", pk, 0, name);
        }
        end_batch(&b);
        snprintf(who, sizeof who, "%s/%c batch %d", t->user[u], 'a' + d, k0 / T4_BATCH);
        int n = upload(t->stack, t->tok[u][d], b.p, st, T4_BATCH + 1, &t->errs, who);
        if (n < 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (n == T4_BATCH && strcmp(st[i].status, "applied") == 0 && st[i].has_nsv && st[i].nsv == 1)
                atomic_fetch_add(&t->applied, 1);
            else
                note(&t->errs, "%s change %d of %d: %s (nsv %lld, server_row sv %lld \"%s\")", who, i, n,
                     st[i].status, st[i].nsv, st[i].row_sv, st[i].row_name);
        }
    }
    /* Then every user updates its first row of each device at once: version 1 -> 2 for each. */
    pthread_barrier_wait(&t->barrier);
    make_pk(pk, 0x4, (unsigned long long)(d * T4_PKS));
    snprintf(name, sizeof name, "%s:%d:v2", t->user[u], d * T4_PKS);
    begin_batch(&b);
    add_change(&b, 1000, "UPDATE", pk, 1, name);
    end_batch(&b);
    snprintf(who, sizeof who, "%s/%c update", t->user[u], 'a' + d);
    int n = upload(t->stack, t->tok[u][d], b.p, st, 2, &t->errs, who);
    if (n == 1 && strcmp(st[0].status, "applied") == 0 && st[0].has_nsv && st[0].nsv == 2)
        atomic_fetch_add(&t->applied, 1);
    else if (n >= 0)
        note(&t->errs, "%s: %d statuses, %s (nsv %lld, server_row sv %lld \"%s\")", who, n, n ? st[0].status : "",
             st[0].nsv, st[0].row_sv, st[0].row_name);
    free(b.p);
    return NULL;
}

START_TEST(test_users_isolated)
{
    struct e2e_stack *s = start_stack();
    static struct t4 t;
    memset(&t, 0, sizeof t);
    errs_init(&t.errs);
    t.stack = s;
    for (int u = 0; u < T4_USERS; u++) {
        make_user(t.user[u], sizeof t.user[u], "t4", u);
        for (int d = 0; d < 2; d++) {
            char dev[80];
            snprintf(dev, sizeof dev, "%s-%c", t.user[u], 'a' + d);
            t.tok[u][d] = e2e_token(s, t.user[u], dev, NULL);
        }
    }
    pthread_barrier_init(&t.barrier, NULL, T4_USERS * 2);
    t.deadline = e2e_now_ms() + LOOP_DEADLINE_MS;
    pthread_t th[T4_USERS * 2];
    struct t4_arg args[T4_USERS * 2];
    for (int i = 0; i < T4_USERS * 2; i++) {
        args[i] = (struct t4_arg){ &t, i / 2, i % 2 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, t4_device, &args[i]), 0);
    }
    for (int i = 0; i < T4_USERS * 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&t.barrier);
    assert_no_errs(&t.errs);   /* every change of every user applied, each row at version 1 then 2 */
    long per_user = 2 * T4_PKS + 2;
    ck_assert_int_eq(atomic_load(&t.applied), T4_USERS * per_user);

    for (int u = 0; u < T4_USERS; u++) {
        char dev_a[80], dev_b[80], prefix[80];
        snprintf(dev_a, sizeof dev_a, "%s-a", t.user[u]);
        snprintf(dev_b, sizeof dev_b, "%s-b", t.user[u]);
        snprintf(prefix, sizeof prefix, "%s:", t.user[u]);

        /* include_self: the user's own log, all of it and nothing else */
        int nrows;
        struct change_row *rows = download_all(s, t.tok[u][0], true, &nrows);
        ck_assert_msg(nrows == per_user, "%s sees %d changes, expected %ld", t.user[u], nrows, per_user);
        int per_pk[2 * T4_PKS] = { 0 };
        for (int i = 0; i < nrows; i++) {
            ck_assert_msg(strcmp(rows[i].source, dev_a) == 0 || strcmp(rows[i].source, dev_b) == 0,
                          "%s sees a change from device %s", t.user[u], rows[i].source);
            ck_assert_msg(strncmp(rows[i].name, prefix, strlen(prefix)) == 0, "%s sees the row \"%s\"",
                          t.user[u], rows[i].name);
            unsigned g;
            unsigned long long k;
            ck_assert(sscanf(rows[i].pk, "%8x-0000-4000-8000-%12llx", &g, &k) == 2 && g == 4 && k < 2 * T4_PKS);
            per_pk[k]++;
            ck_assert_int_eq(rows[i].sv, per_pk[k]);
            ck_assert_str_eq(rows[i].source, k < T4_PKS ? dev_a : dev_b);
        }
        for (int k = 0; k < 2 * T4_PKS; k++)
            ck_assert_int_eq(per_pk[k], k % T4_PKS == 0 ? 2 : 1);
        free(rows);

        /* without include_self, device b sees exactly device a's changes */
        rows = download_all(s, t.tok[u][1], false, &nrows);
        ck_assert_int_eq(nrows, T4_PKS + 1);
        for (int i = 0; i < nrows; i++)
            ck_assert_str_eq(rows[i].source, dev_a);
        free(rows);
    }
    /* A pk shared by all users: user 0's row is its own (version 2, its payload). */
    struct buf b = { 0 };
    char pk[40];
    make_pk(pk, 0x4, 0);
    begin_batch(&b);
    add_change(&b, 2000, "UPDATE", pk, 0, "probe");
    end_batch(&b);
    struct status st[2];
    int n = upload(s, t.tok[0][0], b.p, st, 2, &t.errs, "probe");
    assert_no_errs(&t.errs);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(st[0].status, "conflict");
    ck_assert_int_eq(st[0].row_sv, 2);
    char want[96];
    snprintf(want, sizeof want, "%s:0:v2", t.user[0]);
    ck_assert_str_eq(st[0].row_name, want);
    free(b.p);

    assert_metrics(s, T4_USERS * per_user, 1);
    for (int u = 0; u < T4_USERS; u++)
        for (int d = 0; d < 2; d++)
            free(t.tok[u][d]);
    e2e_stop(s);
}
END_TEST

/* ----------------------------------------------------------------------------------- main */

START_TEST(test_json_reader)
{
    const char *body = "{\"accepted\":true,\"highest_server_seq\":9,\"statuses\":["
                       "{\"source_change_id\":1,\"status\":\"applied\",\"new_server_version\":1},"
                       "{\"source_change_id\":2,\"status\":\"conflict\",\"server_row\":{\"schema_name\":\"business\","
                       "\"table_name\":\"users\",\"id\":\"x\",\"server_version\":7,\"deleted\":false,"
                       "\"payload\":{\"status\":\"applied\",\"q\":\"a\\\"}]\",\"name\":\"n\"}}},"
                       "{\"source_change_id\":3,\"status\":\"applied\"}]}";
    struct status st[4];
    ck_assert_int_eq(parse_statuses(body, st, 4), 3);
    ck_assert(st[0].has_nsv && st[0].nsv == 1 && !st[0].has_row);
    ck_assert_str_eq(st[1].status, "conflict");
    ck_assert(st[1].has_row && st[1].row_sv == 7 && !st[1].has_nsv);
    ck_assert_str_eq(st[1].row_name, "n");
    ck_assert(!st[2].has_nsv && st[2].scid == 3);
    ck_assert_int_eq(parse_statuses("{\"accepted\":true,\"highest_server_seq\":0,\"statuses\":[]}", st, 4), 0);
    ck_assert_int_eq(parse_statuses("{\"error\":\"internal_error\"}", st, 4), -1);

    struct change_row rows[2];
    struct page pg;
    ck_assert(parse_page("{\"changes\":[{\"server_id\":5,\"schema\":\"business\",\"table\":\"users\",\"op\":\"DELETE\","
                         "\"pk\":\"p\",\"payload\":null,\"server_version\":3,\"deleted\":true,\"source_id\":\"d\","
                         "\"source_change_id\":4,\"ts\":\"2025-01-01T00:00:00Z\"}],\"has_more\":true,"
                         "\"next_after\":5,\"window_until\":8}",
                         rows, 2, &pg));
    ck_assert(pg.n == 1 && pg.has_more && pg.next_after == 5 && pg.window_until == 8);
    ck_assert(rows[0].server_id == 5 && rows[0].sv == 3 && rows[0].scid == 4 && rows[0].name[0] == '\0');
    ck_assert_str_eq(rows[0].op, "DELETE");
    ck_assert_str_eq(rows[0].source, "d");
}
END_TEST

static Suite *sync_suite(void)
{
    Suite *s = suite_create("e2e_sync");

    TCase *tc = tcase_create("reader");
    tcase_add_test(tc, test_json_reader);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_devices_race_one_row);
    tcase_add_test(tc, test_same_scid_in_parallel);
    tcase_add_test(tc, test_downloader_never_skips);
    tcase_add_test(tc, test_users_isolated);
    tcase_add_test(tc, test_mixed_load_metrics);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(sync_suite(), NULL);
}
