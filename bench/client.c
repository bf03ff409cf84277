/* Load generator for bench/run: HTTP clients of oversyncd through the web server (libcurl,
 * keep-alive, one easy handle per thread).
 *
 *   client upload   URL TOKENFILE THREADS WARMUP BATCHES BATCHSIZE OP SALT
 *       OP = insert: each thread (one user, one device) sends BATCHES batches of BATCHSIZE
 *            INSERTs (server_version 0) of new rows after WARMUP unmeasured ones.
 *       OP = update: the same rows (same SALT) again as UPDATEs with server_version 1.
 *       OP = users-posts: the example server's tables instead of bench.items (issue #11): each
 *            batch is groups of one INSERT into business.users (name, email; ~100 bytes)
 *            followed by four INSERTs into business.posts (title, ~1 KB of content, author_id),
 *            every post's author a user of the same batch or, for every other post, of the
 *            batch before (the same device's). Also prints users= and posts=, the rows sent over
 *            all batches (warm-up included), so that the caller can count the business rows.
 *       Every status must be "applied" with the expected new_server_version, else exit 1.
 *   client download URL TOKEN LIMIT EXPECTED_ROWS LATFILE
 *       after=0, then after=next_after with until fixed to the first page's window_until,
 *       until has_more is false; the total must equal EXPECTED_ROWS.
 *
 * Results are printed as key=value lines on standard output. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

/* ----------------------------------------------------------------------------- upload */

static const char *words[] = {
    "offline", "first", "replica", "device", "change", "server", "version", "payload", "conflict",
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua",
};

struct up_thread {
    int idx;
    pthread_t tid;
    const char *url;
    char token[2048];
    int warmup, batches, batch_size;
    int update;
    int users_posts;        /* OP users-posts */
    long users, posts;      /* rows sent, warm-up included */
    unsigned salt;
    const char *table;      /* bench.<table>: items unless given */
    const char *extra;      /* more payload members, e.g. "parent_id":"...", (with the comma) */
    pthread_barrier_t *start;
    double *lat;            /* measured batches' latencies */
    double t_end;
    long applied;
    int failed;
    char error[512];
};

static void make_pk_kind(char *out, unsigned kind, unsigned salt, int thread, int batch, int i)
{
    /* deterministic, distinct per (kind, salt, thread, batch, i), a valid version-4 layout */
    snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012x", 0xbe000000u | (kind & 0xff) << 16 | ((unsigned)thread & 0xffff),
             (unsigned)batch & 0xffff, (unsigned)i & 0xfff, (unsigned)(i >> 12) & 0xfff, salt);
}

static void make_pk(char *out, unsigned salt, int thread, int batch, int i)
{
    make_pk_kind(out, 0, salt, thread, batch, i);
}

static void add_words(struct buf *b, uint64_t *rng, size_t n)
{
    size_t start = b->len;
    while (b->len - start < n) {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        const char *w = words[*rng % (sizeof words / sizeof words[0])];
        buf_add(b, w, strlen(w));
        buf_add(b, " ", 1);
    }
}

/* OP users-posts: groups of one user and four posts; a post's author is the user of its own
 * group (same batch) or, for odd posts after the first batch, the user of the same group of the
 * batch before. Parents always come first, in the same batch or an earlier one. */
#define GROUP 5
#define CREATED_AT 1765000000

static void build_users_posts(struct up_thread *t, int batch, struct buf *b, uint64_t *rng)
{
    b->len = 0;
    buf_add(b, "{\"last_server_seq_seen\":0,\"changes\":[", 37);
    for (int i = 0; i < t->batch_size; i++) {
        char pk[40], author[40];
        int group = i / GROUP;
        long long scid = (long long)batch * t->batch_size + i + 1;
        if (i)
            buf_add(b, ",", 1);
        if (i % GROUP == 0) {
            make_pk_kind(pk, 1, t->salt, t->idx, batch, group);
            buf_printf(b,
                       "{\"source_change_id\":%lld,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\","
                       "\"pk\":\"%s\",\"server_version\":0,\"payload\":{\"id\":\"%s\",\"name\":\"user %d-%d-%d\","
                       "\"email\":\"user-%d-%d-%d@example.com\",\"created_at\":%d,\"updated_at\":%d}}",
                       scid, pk, pk, t->idx, batch, group, t->idx, batch, group, CREATED_AT, CREATED_AT);
            t->users++;
            continue;
        }
        /* the group of the batch before has a user too: batches have the same size */
        int earlier = batch > 0 && i % 2 == 1;
        make_pk_kind(pk, 2, t->salt, t->idx, batch, i);
        make_pk_kind(author, 1, t->salt, t->idx, earlier ? batch - 1 : batch, group);
        buf_printf(b,
                   "{\"source_change_id\":%lld,\"schema\":\"business\",\"table\":\"posts\",\"op\":\"INSERT\","
                   "\"pk\":\"%s\",\"server_version\":0,\"payload\":{\"id\":\"%s\",\"title\":\"post %d-%d-%d\","
                   "\"content\":\"",
                   scid, pk, pk, t->idx, batch, i);
        add_words(b, rng, 1000);
        buf_printf(b, "\",\"author_id\":\"%s\",\"created_at\":%d,\"updated_at\":%d}}", author, CREATED_AT, CREATED_AT);
        t->posts++;
    }
    buf_add(b, "]}", 2);
}

static void build_batch(struct up_thread *t, int batch, struct buf *b, uint64_t *rng)
{
    b->len = 0;
    buf_add(b, "{\"last_server_seq_seen\":0,\"changes\":[", 37);
    for (int i = 0; i < t->batch_size; i++) {
        char pk[40];
        make_pk(pk, t->salt, t->idx, batch, i);
        long long scid = (t->update ? 100000000LL : 0) + (long long)batch * t->batch_size + i + 1;
        if (i)
            buf_add(b, ",", 1);
        buf_printf(b,
                   "{\"source_change_id\":%lld,\"schema\":\"bench\",\"table\":\"%s\",\"op\":\"%s\","
                   "\"pk\":\"%s\",\"server_version\":%d,\"payload\":{\"id\":\"%s\",\"name\":\"item %d-%d-%d\","
                   "\"body\":\"",
                   scid, t->table, t->update ? "UPDATE" : "INSERT", pk, t->update ? 1 : 0, pk, t->idx, batch, i);
        add_words(b, rng, 1000);
        buf_printf(b, "\",%s\"n\":%d}}", t->extra, t->update ? 2000 + i : 123);
    }
    buf_add(b, "]}", 2);
}

static void *upload_thread(void *arg)
{
    struct up_thread *t = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[2100];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", t->token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    struct buf req = { 0 }, resp = { 0 };
    curl_easy_setopt(c, CURLOPT_URL, t->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)t->idx << 32) ^ t->salt;
    char expect_version[64];
    snprintf(expect_version, sizeof expect_version, "\"new_server_version\":%d", t->update ? 2 : 1);

    int total = t->warmup + t->batches;
    for (int batch = 0; batch < total; batch++) {
        if (batch == t->warmup)
            pthread_barrier_wait(t->start);
        if (t->users_posts)
            build_users_posts(t, batch, &req, &rng);
        else
            build_batch(t, batch, &req, &rng);
        resp.len = 0;
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.p);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req.len);
        double t0 = now_s();
        CURLcode rc = curl_easy_perform(c);
        double dt = now_s() - t0;
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (rc != CURLE_OK || code != 200) {
            snprintf(t->error, sizeof t->error, "thread %d batch %d: %s, HTTP %ld: %.300s", t->idx, batch,
                     curl_easy_strerror(rc), code, resp.p ? resp.p : "");
            t->failed = 1;
            break;
        }
        size_t statuses = count_of(resp.p, "\"status\":\"");
        size_t applied = count_of(resp.p, "\"status\":\"applied\"");
        size_t versioned = count_of(resp.p, expect_version);
        if (statuses != (size_t)t->batch_size || applied != statuses || versioned != statuses ||
            !strstr(resp.p, "\"accepted\":true")) {
            const char *bad = strstr(resp.p, "\"status\":\"");
            while (bad && strncmp(bad, "\"status\":\"applied\"", 18) == 0)
                bad = strstr(bad + 10, "\"status\":\"");
            snprintf(t->error, sizeof t->error,
                     "thread %d batch %d: %zu statuses, %zu applied, %zu with %s; first other: %.300s", t->idx,
                     batch, statuses, applied, versioned, expect_version, bad ? bad : "(none)");
            t->failed = 1;
            break;
        }
        if (batch >= t->warmup) {
            t->lat[batch - t->warmup] = dt;
            t->applied += (long)applied;
        }
    }
    t->t_end = now_s();
    if (t->failed) {
        /* fail loudly and at once; the other threads may be waiting at the start barrier */
        fprintf(stderr, "client: FAILED: %s\n", t->error);
        exit(1);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(req.p);
    free(resp.p);
    return NULL;
}

static int run_upload(int argc, char **argv)
{
    if (argc < 10 || argc > 12) {
        fprintf(stderr, "usage: client upload URL TOKENFILE THREADS WARMUP BATCHES BATCHSIZE insert|update|users-posts "
                        "SALT [TABLE [EXTRA-PAYLOAD-MEMBERS]]\n");
        return 2;
    }
    if (strcmp(argv[8], "insert") != 0 && strcmp(argv[8], "update") != 0 && strcmp(argv[8], "users-posts") != 0) {
        fprintf(stderr, "client: OP must be insert, update or users-posts, not %s\n", argv[8]);
        return 2;
    }
    const char *table = argc > 10 ? argv[10] : "items", *extra = argc > 11 ? argv[11] : "";
    const char *url = argv[2];
    int threads = atoi(argv[4]), warmup = atoi(argv[5]), batches = atoi(argv[6]), size = atoi(argv[7]);
    int update = strcmp(argv[8], "update") == 0;
    int users_posts = strcmp(argv[8], "users-posts") == 0;
    if (users_posts && size < GROUP) {
        fprintf(stderr, "client: users-posts needs batches of at least %d changes\n", GROUP);
        return 2;
    }
    unsigned salt = (unsigned)strtoul(argv[9], NULL, 0);
    FILE *tf = fopen(argv[3], "r");
    if (!tf) {
        perror(argv[3]);
        return 2;
    }
    struct up_thread *t = calloc((size_t)threads, sizeof *t);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        if (!fgets(t[i].token, sizeof t[i].token, tf)) {
            fprintf(stderr, "client: %s has fewer than %d tokens\n", argv[3], threads);
            return 2;
        }
        t[i].token[strcspn(t[i].token, "\r\n")] = '\0';
        t[i].idx = i;
        t[i].url = url;
        t[i].warmup = warmup;
        t[i].batches = batches;
        t[i].batch_size = size;
        t[i].update = update;
        t[i].users_posts = users_posts;
        t[i].salt = salt;
        t[i].table = table;
        t[i].extra = extra;
        t[i].start = &start;
        t[i].lat = calloc((size_t)batches, sizeof(double));
    }
    fclose(tf);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i].tid, NULL, upload_thread, &t[i]);
    pthread_barrier_wait(&start);
    double t0 = now_s();
    double t_end = t0;
    long applied = 0, users = 0, posts = 0;
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].tid, NULL);
        if (t[i].failed) {
            fprintf(stderr, "client: FAILED: %s\n", t[i].error);
            failed = 1;
        }
        if (t[i].t_end > t_end)
            t_end = t[i].t_end;
        applied += t[i].applied;
        users += t[i].users;
        posts += t[i].posts;
    }
    if (failed)
        return 1;
    size_t n = (size_t)threads * (size_t)batches;
    double *all = malloc(n * sizeof *all);
    for (int i = 0; i < threads; i++)
        memcpy(all + (size_t)i * batches, t[i].lat, (size_t)batches * sizeof(double));
    qsort(all, n, sizeof *all, cmp_double);
    double secs = t_end - t0;
    printf("threads=%d\nbatches_per_thread=%d\nbatch_size=%d\nwarmup_batches=%d\n", threads, batches, size, warmup);
    printf("applied=%ld\nseconds=%.3f\nchanges_per_s=%.0f\n", applied, secs, (double)applied / secs);
    if (users_posts)
        printf("users=%ld\nposts=%ld\n", users, posts);
    printf("batch_ms_p50=%.1f\nbatch_ms_p90=%.1f\nbatch_ms_p99=%.1f\nbatch_ms_max=%.1f\n", pct(all, n, 0.5) * 1e3,
           pct(all, n, 0.9) * 1e3, pct(all, n, 0.99) * 1e3, all[n - 1] * 1e3);
    return 0;
}

/* --------------------------------------------------------------------------- download */

static long long json_ll(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    return p ? atoll(p + strlen(key)) : -1;
}

static int run_download(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: client download URL TOKEN LIMIT EXPECTED_ROWS LATFILE\n");
        return 2;
    }
    const char *base = argv[2];
    int limit = atoi(argv[4]);
    long long expected = atoll(argv[5]);
    FILE *lf = fopen(argv[6], "w");
    if (!lf) {
        perror(argv[6]);
        return 2;
    }
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[2100];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[3]);
    h = curl_slist_append(h, auth);
    struct buf resp = { 0 };
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);

    size_t cap = 1024, pages = 0;
    double *lat = malloc(cap * sizeof *lat);
    long long after = 0, until = 0, total = 0, last_id = 0;
    unsigned long long bytes = 0;
    double t0 = now_s();
    for (;;) {
        char url[1024];
        if (until)
            snprintf(url, sizeof url, "%s?after=%lld&limit=%d&until=%lld", base, after, limit, until);
        else
            snprintf(url, sizeof url, "%s?after=%lld&limit=%d", base, after, limit);
        curl_easy_setopt(c, CURLOPT_URL, url);
        resp.len = 0;
        double s = now_s();
        CURLcode rc = curl_easy_perform(c);
        double dt = now_s() - s;
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (rc != CURLE_OK || code != 200) {
            fprintf(stderr, "client: FAILED: page %zu: %s, HTTP %ld: %.300s\n", pages, curl_easy_strerror(rc), code,
                    resp.p ? resp.p : "");
            return 1;
        }
        long long n = (long long)count_of(resp.p, "{\"server_id\":");
        long long first = json_ll(resp.p, "{\"server_id\":");
        long long next = json_ll(resp.p, "\"next_after\":");
        long long window = json_ll(resp.p, "\"window_until\":");
        int more = strstr(resp.p, "\"has_more\":true") != NULL;
        if (n > 0 && first <= last_id) {
            fprintf(stderr, "client: FAILED: page %zu starts at server_id %lld after %lld\n", pages, first, last_id);
            return 1;
        }
        if (pages == cap) {
            cap *= 2;
            lat = realloc(lat, cap * sizeof *lat);
        }
        lat[pages++] = dt;
        fprintf(lf, "%zu %lld %.6f %zu\n", pages, n, dt, resp.len);
        bytes += resp.len;
        total += n;
        if (!until)
            until = window;
        if (n > 0)
            last_id = next;
        if (!more)
            break;
        if (next <= after || n == 0) {
            fprintf(stderr, "client: FAILED: has_more with no progress at after=%lld\n", after);
            return 1;
        }
        after = next;
    }
    double secs = now_s() - t0;
    fclose(lf);
    if (total != expected) {
        fprintf(stderr, "client: FAILED: downloaded %lld changes, expected %lld\n", total, expected);
        return 1;
    }
    double first_ms = lat[0] * 1e3, last_ms = lat[pages - 1] * 1e3;
    double *sorted = malloc(pages * sizeof *sorted);
    memcpy(sorted, lat, pages * sizeof *sorted);
    qsort(sorted, pages, sizeof *sorted, cmp_double);
    printf("pages=%zu\nchanges=%lld\nbytes=%llu\nseconds=%.3f\nchanges_per_s=%.0f\nMB_per_s=%.1f\n", pages, total,
           bytes, secs, (double)total / secs, (double)bytes / secs / 1e6);
    printf("first_page_ms=%.1f\nlast_page_ms=%.1f\npage_ms_p50=%.1f\npage_ms_p90=%.1f\npage_ms_p99=%.1f\n"
           "page_ms_max=%.1f\nlast_over_first=%.2f\n",
           first_ms, last_ms, pct(sorted, pages, 0.5) * 1e3, pct(sorted, pages, 0.9) * 1e3,
           pct(sorted, pages, 0.99) * 1e3, sorted[pages - 1] * 1e3, last_ms / first_ms);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc > 1 && strcmp(argv[1], "upload") == 0)
        return run_upload(argc, argv);
    if (argc > 1 && strcmp(argv[1], "download") == 0)
        return run_download(argc, argv);
    fprintf(stderr, "usage: client upload ... | client download ...\n");
    return 2;
}
