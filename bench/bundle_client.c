/* Load generator for bench/compare-bundle: HTTP clients of the bundle protocol (go-oversync
 * 1f1118f, docs/bundle-protocol.md), driving it as oversqlite does (libcurl, one keep-alive
 * connection per thread, every answer's status and contents checked).
 *
 *   bundle_client push URL TOKENFILE SOURCE-PREFIX THREADS WARMUP BUNDLES ROWS insert|update
 *                      STATEFILE READBACK SALT
 *       Each thread is one device: token line i of TOKENFILE (the user is the token's sub), source
 *       SOURCE-PREFIX-ii. It connects (GET /sync/capabilities, POST /sync/connect with
 *       has_local_pending_rows=false: initialize_empty for the first device of a user,
 *       remote_authoritative for the others; retry_later is waited out), then commits WARMUP
 *       unmeasured and BUNDLES measured bundles of ROWS rows of business.users each:
 *         POST /sync/push-sessions {source_bundle_id, planned_row_count}   -> "staging", push_id
 *         POST /sync/push-sessions/{push_id}/chunks  (chunks of <= 1000 rows, as oversqlite)
 *         POST /sync/push-sessions/{push_id}/commit  -> bundle_seq, row_count
 *         and with READBACK=1 (oversqlite always does): GET /sync/committed-bundles/{seq}/rows
 *         ?max_rows=1000 (then &after_row_ordinal=next) until has_more is false; the rows must
 *         number row_count and the answer carry the commit's bundle_hash.
 *       insert: new rows (base_row_version 0), source_bundle_id 1, 2, ...; each thread's
 *               next source_bundle_id and the bundle_seq of each bundle go to STATEFILE.
 *       update: the same rows (same SALT, THREADS, WARMUP, BUNDLES, ROWS) read back from
 *               STATEFILE, as UPDATEs with base_row_version = the bundle_seq their insert got.
 *   bundle_client pull URL TOKEN SOURCE-PREFIX THREADS PASSES MAX_BUNDLES EXPECTED_BUNDLES EXPECTED_ROWS
 *       THREADS pullers (sources of the one user of TOKEN) each pull the user's whole history
 *       PASSES times, as oversqlite pulls: after_bundle_seq=0 without target, then
 *       after_bundle_seq=<last applied>&target_bundle_seq=<first page's stable_bundle_seq> until
 *       the last applied reaches it. Every pass must see EXPECTED_BUNDLES bundles, in ascending
 *       seq, holding EXPECTED_ROWS rows.
 *
 * Any other status than the expected one, or an answer that does not say what it must, ends the
 * run at once with exit 1 and "bundle_client: FAILED: ..." on standard error. Results are
 * key=value lines on standard output. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define CHUNK_ROWS 1000      /* oversqlite's default UploadLimit */
#define READBACK_ROWS 1000   /* oversqlite's default DownloadLimit */

static long long json_ll(const char *s, const char *key)
{
    const char *p = s ? strstr(s, key) : NULL;
    return p ? atoll(p + strlen(key)) : -1;
}

/* the string value of "key":"...", without unescaping (ids and hashes need none) */
static int json_str(const char *s, const char *key, char *out, size_t cap)
{
    const char *p = s ? strstr(s, key) : NULL;
    if (!p)
        return -1;
    p += strlen(key);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= cap)
        return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ one connection */

struct conn {
    CURL *c;
    struct curl_slist *h;
    struct buf resp;
    const char *base;
    long requests;
    char what[160];         /* for messages: "thread 3" */
};

static void conn_init(struct conn *k, const char *base, const char *token, const char *source, const char *what)
{
    char line[2200];
    k->c = curl_easy_init();
    k->h = NULL;
    snprintf(line, sizeof line, "Authorization: Bearer %s", token);
    k->h = curl_slist_append(k->h, line);
    snprintf(line, sizeof line, "Oversync-Source-ID: %s", source);
    k->h = curl_slist_append(k->h, line);
    k->h = curl_slist_append(k->h, "Content-Type: application/json");
    k->h = curl_slist_append(k->h, "Expect:");
    k->base = base;
    memset(&k->resp, 0, sizeof k->resp);
    buf_reserve(&k->resp, 1);
    k->requests = 0;
    snprintf(k->what, sizeof k->what, "%s", what);
    curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, k->h);
    curl_easy_setopt(k->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(k->c, CURLOPT_WRITEDATA, &k->resp);
    curl_easy_setopt(k->c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(k->c, CURLOPT_NOSIGNAL, 1L);
}

static void conn_free(struct conn *k)
{
    curl_slist_free_all(k->h);
    curl_easy_cleanup(k->c);
    free(k->resp.p);
}

static void fail(struct conn *k, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(struct conn *k, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* fail loudly and at once; the other threads may be waiting at the start barrier */
    fprintf(stderr, "bundle_client: FAILED: %s: %s; answer: %.400s\n", k->what, msg, k->resp.p ? k->resp.p : "");
    exit(1);
}

/* one request; the answer must have status `want`; body NULL = GET */
static void call(struct conn *k, const char *path, const char *body, size_t len, long want)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", k->base, path);
    curl_easy_setopt(k->c, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(k->c, CURLOPT_POST, 1L);
        curl_easy_setopt(k->c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(k->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(k->c, CURLOPT_HTTPGET, 1L);
    }
    k->resp.len = 0;
    k->resp.p[0] = '\0';
    CURLcode rc = curl_easy_perform(k->c);
    long code = 0;
    curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &code);
    k->requests++;
    if (rc != CURLE_OK || code != want)
        fail(k, "%s %s: %s, HTTP %ld (expected %ld)", body ? "POST" : "GET", path, curl_easy_strerror(rc), code, want);
}

/* GET /sync/capabilities, then POST /sync/connect until it is not retry_later */
static void connect_source(struct conn *k)
{
    call(k, "/sync/capabilities", NULL, 0, 200);
    if (!strstr(k->resp.p, "\"business.users\""))
        fail(k, "capabilities do not list business.users");
    for (int attempt = 0;; attempt++) {
        call(k, "/sync/connect", "{\"has_local_pending_rows\":false}", 32, 200);
        if (strstr(k->resp.p, "\"resolution\":\"initialize_empty\"") ||
            strstr(k->resp.p, "\"resolution\":\"remote_authoritative\""))
            return;
        if (!strstr(k->resp.p, "\"resolution\":\"retry_later\"") || attempt > 100)
            fail(k, "connect: unexpected resolution");
        usleep(200000);
    }
}

/* ----------------------------------------------------------------------------------- push */

static const char *first_names[] = {
    "Alice", "Bob", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
    "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomoko", "Ugo", "Vera", "Wei", "Yusuf",
};
static const char *last_names[] = {
    "Andersen", "Baptiste", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Hoffmann", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Brien", "Petrov", "Rossi", "Schmidt",
    "Tanaka", "Urquhart", "Van Dijk", "Walker", "Yilmaz", "Zhang",
};
static const char *domains[] = { "example.com", "mail.example.org", "corp.example.net", "example.co.uk" };

struct push_thread {
    int idx;
    pthread_t tid;
    const char *base;
    char token[2048];
    char source[128];
    int warmup, bundles, rows, update, readback;
    unsigned salt;
    long long first_sbid;       /* source_bundle_id of this run's first bundle */
    long long *seq;             /* bundle_seq of each bundle (insert: written; update: the bases) */
    long long *new_seq;         /* update: bundle_seq each update bundle got */
    pthread_barrier_t *start;
    double *lat;                /* measured bundles' latencies, create to commit (and read-back) */
    double *commit_lat;         /* the commit request alone */
    double t_end;
    long rows_done, bundles_done, requests_measured, requests_before;
};

static void make_pk(char *out, unsigned salt, int thread, int bundle, int i)
{
    /* deterministic, distinct per (salt, thread, bundle, i): canonical lower-case dashed text */
    snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012x", 0xb0000000u | ((unsigned)thread & 0xffff), (unsigned)bundle & 0xffff,
             (unsigned)i & 0xfff, (unsigned)(i >> 12) & 0xfff, salt);
}

static void lower_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
        else if (*s == '\'' || *s == ' ')
            *s = '-';
}

static void build_chunk(struct push_thread *t, int bundle, int start, int n, struct buf *b)
{
    b->len = 0;
    buf_printf(b, "{\"start_row_ordinal\":%d,\"rows\":[", start);
    for (int i = start; i < start + n; i++) {
        char pk[40], email_local[96];
        make_pk(pk, t->salt, t->idx, bundle, i);
        unsigned h = (unsigned)(t->idx * 7919 + bundle * 104729 + i * 31) ^ t->salt;
        const char *fn = first_names[h % 24], *ln = last_names[(h / 24) % 24];
        snprintf(email_local, sizeof email_local, "%s.%s.%u", fn, ln, (unsigned)(t->idx * 1000000 + bundle * 10000 + i));
        lower_ascii(email_local);
        if (i > start)
            buf_add(b, ",", 1);
        /* timestamps as the client's SQLite holds them, RFC 3339; updates touch name and updated_at */
        buf_printf(b,
                   "{\"schema\":\"business\",\"table\":\"users\",\"key\":{\"id\":\"%s\"},\"op\":\"%s\","
                   "\"base_row_version\":%lld,\"payload\":{\"id\":\"%s\",\"name\":\"%s %s%s\",\"email\":\"%s@%s\","
                   "\"created_at\":\"2026-06-%02dT%02d:%02d:%02dZ\",\"updated_at\":\"2026-%s-%02dT%02d:%02d:%02dZ\"}}",
                   pk, t->update ? "UPDATE" : "INSERT", t->update ? t->seq[bundle] : 0LL, pk, fn, ln,
                   t->update ? " (edited)" : "", email_local, domains[h % 4], 1 + (int)(h % 28), (int)(h % 24),
                   (int)(h % 60), (int)((h / 60) % 60), t->update ? "07" : "06", 1 + (int)(h % 28), (int)(h % 24),
                   (int)(h % 60), (int)((h / 7) % 60));
    }
    buf_add(b, "]}", 2);
}

static void push_bundle(struct push_thread *t, struct conn *k, int bundle, struct buf *req, double *commit_dt)
{
    char path[256], push_id[64], hash[80], hash2[80];
    long long sbid = t->first_sbid + bundle;
    int n = t->rows;

    req->len = 0;
    buf_printf(req, "{\"source_bundle_id\":%lld,\"planned_row_count\":%d}", sbid, n);
    call(k, "/sync/push-sessions", req->p, req->len, 200);
    if (!strstr(k->resp.p, "\"status\":\"staging\"") || json_str(k->resp.p, "\"push_id\":\"", push_id, sizeof push_id))
        fail(k, "bundle %d (source_bundle_id %lld): push session not staging", bundle, sbid);
    if (json_ll(k->resp.p, "\"planned_row_count\":") != n)
        fail(k, "bundle %d: planned_row_count not echoed", bundle);

    snprintf(path, sizeof path, "/sync/push-sessions/%s/chunks", push_id);
    for (int s = 0; s < n; s += CHUNK_ROWS) {
        int m = n - s < CHUNK_ROWS ? n - s : CHUNK_ROWS;
        build_chunk(t, bundle, s, m, req);
        call(k, path, req->p, req->len, 200);
        if (json_ll(k->resp.p, "\"next_expected_row_ordinal\":") != s + m)
            fail(k, "bundle %d chunk at %d: next_expected_row_ordinal is not %d", bundle, s, s + m);
    }

    snprintf(path, sizeof path, "/sync/push-sessions/%s/commit", push_id);
    double c0 = now_s();
    call(k, path, "", 0, 200);
    *commit_dt = now_s() - c0;
    long long seq = json_ll(k->resp.p, "\"bundle_seq\":");
    if (seq <= 0 || json_ll(k->resp.p, "\"row_count\":") != n || json_ll(k->resp.p, "\"source_bundle_id\":") != sbid ||
        json_str(k->resp.p, "\"bundle_hash\":\"", hash, sizeof hash))
        fail(k, "bundle %d: commit answer lacks bundle_seq, row_count %d, source_bundle_id %lld or bundle_hash", bundle, n,
             sbid);
    if (t->update)
        t->new_seq[bundle] = seq;
    else
        t->seq[bundle] = seq;

    if (t->readback) {
        long long after = -1, got = 0;
        for (;;) {
            if (after < 0)
                snprintf(path, sizeof path, "/sync/committed-bundles/%lld/rows?max_rows=%d", seq, READBACK_ROWS);
            else
                snprintf(path, sizeof path, "/sync/committed-bundles/%lld/rows?after_row_ordinal=%lld&max_rows=%d", seq,
                         after, READBACK_ROWS);
            call(k, path, NULL, 0, 200);
            if (json_str(k->resp.p, "\"bundle_hash\":\"", hash2, sizeof hash2) || strcmp(hash, hash2))
                fail(k, "bundle %d: read-back bundle_hash differs from the commit's %s", bundle, hash);
            long long rows = (long long)count_of(k->resp.p, "\"row_version\":");
            got += rows;
            if (!strstr(k->resp.p, "\"has_more\":true"))
                break;
            long long next = json_ll(k->resp.p, "\"next_row_ordinal\":");
            if (rows == 0 || next <= after)
                fail(k, "bundle %d: read-back has_more with no progress", bundle);
            after = next;
        }
        if (got != n)
            fail(k, "bundle %d: read back %lld rows of %d", bundle, got, n);
    }
}

static void *push_thread(void *arg)
{
    struct push_thread *t = arg;
    struct conn k;
    char what[160];
    snprintf(what, sizeof what, "thread %d (%s)", t->idx, t->source);
    conn_init(&k, t->base, t->token, t->source, what);
    struct buf req = { 0 };
    connect_source(&k);
    int total = t->warmup + t->bundles;
    for (int bundle = 0; bundle < total; bundle++) {
        if (bundle == t->warmup) {
            t->requests_before = k.requests;
            pthread_barrier_wait(t->start);
        }
        double t0 = now_s(), cdt;
        push_bundle(t, &k, bundle, &req, &cdt);
        double dt = now_s() - t0;
        if (bundle >= t->warmup) {
            t->lat[bundle - t->warmup] = dt;
            t->commit_lat[bundle - t->warmup] = cdt;
            t->rows_done += t->rows;
            t->bundles_done++;
        }
    }
    t->t_end = now_s();
    t->requests_measured = k.requests - t->requests_before;
    conn_free(&k);
    free(req.p);
    return NULL;
}

static int run_push(int argc, char **argv)
{
    if (argc != 13) {
        fprintf(stderr, "usage: bundle_client push URL TOKENFILE SOURCE-PREFIX THREADS WARMUP BUNDLES ROWS "
                        "insert|update STATEFILE READBACK SALT\n");
        return 2;
    }
    const char *base = argv[2], *prefix = argv[4], *state = argv[10];
    int threads = atoi(argv[5]), warmup = atoi(argv[6]), bundles = atoi(argv[7]), rows = atoi(argv[8]);
    int update = strcmp(argv[9], "update") == 0, readback = atoi(argv[11]);
    unsigned salt = (unsigned)strtoul(argv[12], NULL, 0);
    if (!update && strcmp(argv[9], "insert")) {
        fprintf(stderr, "bundle_client: insert or update, not %s\n", argv[9]);
        return 2;
    }
    if (threads < 1 || warmup < 0 || bundles < 1 || rows < 1 || rows > 4000) {
        fprintf(stderr, "bundle_client: bad THREADS, WARMUP, BUNDLES or ROWS (rows: 1..4000)\n");
        return 2;
    }
    int total = warmup + bundles;
    FILE *tf = fopen(argv[3], "r");
    if (!tf) {
        perror(argv[3]);
        return 2;
    }
    struct push_thread *t = calloc((size_t)threads, sizeof *t);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        if (!fgets(t[i].token, sizeof t[i].token, tf)) {
            fprintf(stderr, "bundle_client: %s has fewer than %d tokens\n", argv[3], threads);
            return 2;
        }
        t[i].token[strcspn(t[i].token, "\r\n")] = '\0';
        snprintf(t[i].source, sizeof t[i].source, "%s-%02d", prefix, i);
        t[i].idx = i;
        t[i].base = base;
        t[i].warmup = warmup;
        t[i].bundles = bundles;
        t[i].rows = rows;
        t[i].update = update;
        t[i].readback = readback;
        t[i].salt = salt;
        t[i].first_sbid = 1;
        t[i].seq = calloc((size_t)total, sizeof(long long));
        t[i].new_seq = calloc((size_t)total, sizeof(long long));
        t[i].start = &start;
        t[i].lat = calloc((size_t)bundles, sizeof(double));
        t[i].commit_lat = calloc((size_t)bundles, sizeof(double));
    }
    fclose(tf);
    if (update) {
        /* STATEFILE: "thread next_source_bundle_id seq..." per line, as the insert run wrote it */
        FILE *sf = fopen(state, "r");
        if (!sf) {
            perror(state);
            return 2;
        }
        for (int i = 0; i < threads; i++) {
            int idx;
            if (fscanf(sf, "%d %lld", &idx, &t[i].first_sbid) != 2 || idx != i) {
                fprintf(stderr, "bundle_client: %s: bad line for thread %d\n", state, i);
                return 2;
            }
            for (int b = 0; b < total; b++)
                if (fscanf(sf, "%lld", &t[i].seq[b]) != 1) {
                    fprintf(stderr, "bundle_client: %s: thread %d has fewer than %d bundles\n", state, i, total);
                    return 2;
                }
        }
        fclose(sf);
    }
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i].tid, NULL, push_thread, &t[i]);
    pthread_barrier_wait(&start);
    double t0 = now_s(), t_end = t0;
    long rows_done = 0, bundles_done = 0, requests = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].tid, NULL);
        if (t[i].t_end > t_end)
            t_end = t[i].t_end;
        rows_done += t[i].rows_done;
        bundles_done += t[i].bundles_done;
        requests += t[i].requests_measured;
    }
    if (!update) {
        FILE *sf = fopen(state, "w");
        if (!sf) {
            perror(state);
            return 2;
        }
        for (int i = 0; i < threads; i++) {
            fprintf(sf, "%d %lld", i, t[i].first_sbid + total);
            for (int b = 0; b < total; b++)
                fprintf(sf, " %lld", t[i].seq[b]);
            fputc('\n', sf);
        }
        fclose(sf);
    }
    size_t n = (size_t)threads * (size_t)bundles;
    double *all = malloc(n * sizeof *all), *com = malloc(n * sizeof *com);
    for (int i = 0; i < threads; i++) {
        memcpy(all + (size_t)i * bundles, t[i].lat, (size_t)bundles * sizeof(double));
        memcpy(com + (size_t)i * bundles, t[i].commit_lat, (size_t)bundles * sizeof(double));
    }
    qsort(all, n, sizeof *all, cmp_double);
    qsort(com, n, sizeof *com, cmp_double);
    double secs = t_end - t0;
    printf("threads=%d\nbundles_per_thread=%d\nrows_per_bundle=%d\nwarmup_bundles=%d\nop=%s\nreadback=%d\n", threads,
           bundles, rows, warmup, update ? "update" : "insert", readback);
    printf("rows=%ld\nbundles=%ld\nrequests=%ld\nseconds=%.3f\n", rows_done, bundles_done, requests, secs);
    printf("rows_per_s=%.0f\nbundles_per_s=%.1f\nrequests_per_s=%.0f\n", (double)rows_done / secs,
           (double)bundles_done / secs, (double)requests / secs);
    printf("bundle_ms_p50=%.1f\nbundle_ms_p90=%.1f\nbundle_ms_p99=%.1f\nbundle_ms_max=%.1f\n", pct(all, n, 0.5) * 1e3,
           pct(all, n, 0.9) * 1e3, pct(all, n, 0.99) * 1e3, all[n - 1] * 1e3);
    printf("commit_ms_p50=%.1f\ncommit_ms_p90=%.1f\ncommit_ms_max=%.1f\n", pct(com, n, 0.5) * 1e3,
           pct(com, n, 0.9) * 1e3, com[n - 1] * 1e3);
    return 0;
}

/* ----------------------------------------------------------------------------------- pull */

struct pull_thread {
    int idx;
    pthread_t tid;
    const char *base, *token;
    char source[128];
    int passes, max_bundles;
    long long expected_bundles, expected_rows;
    pthread_barrier_t *start;
    double t_end;
    long long bundles, rows, requests;
    unsigned long long bytes;
    double *lat;
    size_t nlat, caplat;
};

static void *pull_thread(void *arg)
{
    struct pull_thread *t = arg;
    struct conn k;
    char what[160], path[256];
    snprintf(what, sizeof what, "puller %d (%s)", t->idx, t->source);
    conn_init(&k, t->base, t->token, t->source, what);
    connect_source(&k);
    pthread_barrier_wait(t->start);
    for (int pass = 0; pass < t->passes; pass++) {
        long long after = 0, target = 0, bundles = 0, rows = 0;
        for (;;) {
            if (target)
                snprintf(path, sizeof path, "/sync/pull?after_bundle_seq=%lld&max_bundles=%d&target_bundle_seq=%lld", after,
                         t->max_bundles, target);
            else
                snprintf(path, sizeof path, "/sync/pull?after_bundle_seq=%lld&max_bundles=%d", after, t->max_bundles);
            double s = now_s();
            call(&k, path, NULL, 0, 200);
            if (t->nlat == t->caplat) {
                t->caplat = t->caplat ? 2 * t->caplat : 256;
                t->lat = realloc(t->lat, t->caplat * sizeof *t->lat);
            }
            t->lat[t->nlat++] = now_s() - s;
            t->bytes += k.resp.len;
            long long stable = json_ll(k.resp.p, "\"stable_bundle_seq\":");
            if (stable < 0)
                fail(&k, "pass %d: no stable_bundle_seq", pass);
            if (!target)
                target = stable;
            else if (stable != target)
                fail(&k, "pass %d: stable_bundle_seq changed from %lld to %lld", pass, target, stable);
            /* the bundles' seqs, in order: each "{"bundle_seq":N" opens a bundle */
            long long n = 0;
            for (const char *p = k.resp.p; (p = strstr(p, "{\"bundle_seq\":")); p += 14) {
                long long seq = atoll(p + 14);
                if (seq <= after || seq > stable)
                    fail(&k, "pass %d: bundle_seq %lld after %lld (stable %lld)", pass, seq, after, stable);
                after = seq;
                n++;
            }
            bundles += n;
            rows += (long long)count_of(k.resp.p, "\"row_version\":");
            if (after >= stable)
                break;
            if (n == 0 || !strstr(k.resp.p, "\"has_more\":true"))
                fail(&k, "pass %d: pull ended at %lld before the stable seq %lld", pass, after, stable);
        }
        if (bundles != t->expected_bundles || rows != t->expected_rows)
            fail(&k, "pass %d: pulled %lld bundles / %lld rows, expected %lld / %lld", pass, bundles, rows,
                 t->expected_bundles, t->expected_rows);
        t->bundles += bundles;
        t->rows += rows;
    }
    t->t_end = now_s();
    t->requests = k.requests;
    conn_free(&k);
    return NULL;
}

static int run_pull(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: bundle_client pull URL TOKEN SOURCE-PREFIX THREADS PASSES MAX_BUNDLES "
                        "EXPECTED_BUNDLES EXPECTED_ROWS\n");
        return 2;
    }
    int threads = atoi(argv[5]), passes = atoi(argv[6]), max_bundles = atoi(argv[7]);
    if (threads < 1 || passes < 1 || max_bundles < 1) {
        fprintf(stderr, "bundle_client: bad THREADS, PASSES or MAX_BUNDLES\n");
        return 2;
    }
    struct pull_thread *t = calloc((size_t)threads, sizeof *t);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        t[i].idx = i;
        t[i].base = argv[2];
        t[i].token = argv[3];
        snprintf(t[i].source, sizeof t[i].source, "%s-%02d", argv[4], i);
        t[i].passes = passes;
        t[i].max_bundles = max_bundles;
        t[i].expected_bundles = atoll(argv[8]);
        t[i].expected_rows = atoll(argv[9]);
        t[i].start = &start;
        pthread_create(&t[i].tid, NULL, pull_thread, &t[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = now_s(), t_end = t0;
    long long bundles = 0, rows = 0, requests = 0;
    unsigned long long bytes = 0;
    size_t n = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].tid, NULL);
        if (t[i].t_end > t_end)
            t_end = t[i].t_end;
        bundles += t[i].bundles;
        rows += t[i].rows;
        bytes += t[i].bytes;
        requests += t[i].requests;
        n += t[i].nlat;
    }
    double *all = malloc(n * sizeof *all);
    for (int i = 0, o = 0; i < threads; o += (int)t[i].nlat, i++)
        memcpy(all + o, t[i].lat, t[i].nlat * sizeof(double));
    qsort(all, n, sizeof *all, cmp_double);
    double secs = t_end - t0;
    printf("threads=%d\npasses=%d\nmax_bundles=%d\nbundles=%lld\nrows=%lld\npages=%zu\nbytes=%llu\nseconds=%.3f\n",
           threads, passes, max_bundles, bundles, rows, n, bytes, secs);
    printf("bundles_per_s=%.1f\nrows_per_s=%.0f\nMB_per_s=%.1f\n", (double)bundles / secs, (double)rows / secs,
           (double)bytes / secs / 1e6);
    printf("requests=%lld\n", requests);
    printf("page_ms_p50=%.1f\npage_ms_p90=%.1f\npage_ms_max=%.1f\n", pct(all, n, 0.5) * 1e3, pct(all, n, 0.9) * 1e3,
           all[n - 1] * 1e3);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc > 1 && strcmp(argv[1], "push") == 0)
        return run_push(argc, argv);
    if (argc > 1 && strcmp(argv[1], "pull") == 0)
        return run_pull(argc, argv);
    fprintf(stderr, "usage: bundle_client push ... | bundle_client pull ...\n");
    return 2;
}
