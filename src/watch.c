/* The watch process (see watch.h): an epoll loop over
 *   - the handoff socket (connections handed over by workers, with a struct watch_msg),
 *   - the handed-over FastCGI connections (read only to notice the web server closing them or
 *     sending FCGI_ABORT_REQUEST; written with FCGI_STDOUT records and FCGI_END_REQUEST),
 *   - ONE libpq connection, non-blocking, that LISTENs on the channel of the deployment and
 *     reconnects with a back-off from 100 ms doubling to 2 s,
 *   - a signalfd (SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1: end every stream cleanly and exit).
 * Watchers are grouped per user (user_pk for streams, user id for long-polls) in a hash table, so
 * that a NOTIFY reaches exactly that user's watchers. Per watcher: the struct below (and, for a
 * long-poll, its struct watch_msg); output that the web server does not take at once is kept in
 * a buffer of its own until it does, and a stream's events coalesce meanwhile. */
#include "watch.h"
#include "app.h"
#include "watch_client.h"
#include "bundle/bundle.h"
#include "http/fcgi.h"
#include "json_scan.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"
#include "xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------ state */

#define FCGI_VERSION_1 1
#define FCGI_ABORT_REQUEST 2
#define FCGI_END_REQUEST 3
#define FCGI_STDOUT 6
#define OUT_LIMIT (1 << 20)   /* a web server that takes nothing more: the watcher is dropped */
#define RING 1024             /* recent notifications, for watchers handed over meanwhile */

struct user;

struct watcher {
    int fd;
    uint16_t fcgi_id;
    uint8_t kind;             /* WATCH_STREAM or WATCH_DOWNLOAD */
    bool pending;             /* an event waits to be written (stream) / a re-read is due (download) */
    bool closing;             /* END_REQUEST queued: close once the output is written */
    bool want_out;            /* EPOLLOUT is registered */
    uint8_t in_head_len;      /* bytes of the current input record header seen */
    uint8_t in_head[8];
    uint32_t in_skip;         /* content and padding of the current input record still to skip */
    struct user *user;
    struct watcher *prev, *next;           /* the user's watchers */
    struct watcher *all_prev, *all_next;   /* every watcher (timers) */
    int64_t last_seq;         /* stream: the newest bundle_seq queued */
    int64_t pend_seq, pend_sbid;
    char *pend_source;        /* NULL: none (a catch-up event) */
    int64_t due_ns;           /* stream: next heartbeat; download: the end of the wait */
    char *out;                /* output the web server has not taken yet */
    uint32_t out_len, out_off;
    struct watch_msg *dl;     /* download: what to read */
    uint64_t device_hash;     /* download: the caller's device */
};

struct user {
    struct user *next;        /* in its hash bucket */
    struct watcher *head;
    long count;
    uint64_t hash;
    int64_t user_pk;          /* streams */
    char key[];               /* "p:<user_pk>" or "u:<user id>" */
};

struct note {
    int64_t recv_ns;
    uint64_t user_hash;
    uint64_t source_hash;
    int64_t seq;
};

enum pg_state { PG_DOWN, PG_CONNECTING, PG_READY };
enum pg_query { Q_NONE, Q_LISTEN, Q_CATCHUP };

struct watchd {
    const struct config *cfg;
    bool bundle;              /* protocol = bundle: streams; else long-poll downloads */
    int ep, sock, sigfd;
    bool stopping;
    struct watcher *all;
    struct watcher *dead;     /* closed this loop turn, freed at its end */
    long streams, downloads;
    struct user **buckets;
    size_t nbuckets, nusers;
    int64_t next_scan_ns;
    struct note ring[RING];
    uint64_t ring_n;          /* notifications recorded so far */
    /* the LISTEN connection */
    PGconn *pg;
    enum pg_state pg_state;
    enum pg_query pg_query;
    int pg_fd;                /* registered in epoll, -1 none */
    uint32_t pg_events;
    int64_t pg_retry_ns;
    long pg_backoff_ms;
    int64_t listening_since_ns;   /* 0: not listening */
    bool ever_listened;
    bool catchup_wanted;
    char channel[80];
    /* protocol = upload: the connection downloads are read on */
    struct app app;
    bool app_ready;
};

static struct watchd W;

/* ------------------------------------------------------------------------------ users */

static struct user *user_find(const char *key, uint64_t h)
{
    if (!W.nbuckets)
        return NULL;
    for (struct user *u = W.buckets[h & (W.nbuckets - 1)]; u; u = u->next)
        if (u->hash == h && strcmp(u->key, key) == 0)
            return u;
    return NULL;
}

static void buckets_grow(void)
{
    size_t n = W.nbuckets ? W.nbuckets * 2 : 256;
    struct user **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < W.nbuckets; i++)
        for (struct user *u = W.buckets[i], *next; u; u = next) {
            next = u->next;
            u->next = b[u->hash & (n - 1)];
            b[u->hash & (n - 1)] = u;
        }
    free(W.buckets);
    W.buckets = b;
    W.nbuckets = n;
}

static struct user *user_get(const char *key, int64_t user_pk)
{
    uint64_t h = watch_hash(key);
    struct user *u = user_find(key, h);
    if (u)
        return u;
    if (W.nusers + 1 > W.nbuckets)
        buckets_grow();
    size_t n = strlen(key);
    u = xcalloc(1, sizeof *u + n + 1);
    memcpy(u->key, key, n + 1);
    u->hash = h;
    u->user_pk = user_pk;
    u->next = W.buckets[h & (W.nbuckets - 1)];
    W.buckets[h & (W.nbuckets - 1)] = u;
    W.nusers++;
    return u;
}

static void user_drop(struct user *u)
{
    struct user **p = &W.buckets[u->hash & (W.nbuckets - 1)];
    while (*p != u)
        p = &(*p)->next;
    *p = u->next;
    W.nusers--;
    free(u);
}

static void stream_key(char *buf, size_t n, int64_t user_pk)
{
    snprintf(buf, n, "p:%lld", (long long)user_pk);
}

/* ------------------------------------------------------------------------------ output */

static void publish_gauges(void)
{
    metrics_watch_open(W.streams, W.downloads);
}

static void ep_mod(struct watcher *w, bool out)
{
    if (w->want_out == out)
        return;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0), .data.ptr = w };
    epoll_ctl(W.ep, EPOLL_CTL_MOD, w->fd, &ev);
    w->want_out = out;
}

static void watcher_free(struct watcher *w)
{
    if (w->user) {
        if (w->prev)
            w->prev->next = w->next;
        else
            w->user->head = w->next;
        if (w->next)
            w->next->prev = w->prev;
        if (--w->user->count == 0)
            user_drop(w->user);
    }
    if (w->all_prev)
        w->all_prev->all_next = w->all_next;
    else
        W.all = w->all_next;
    if (w->all_next)
        w->all_next->all_prev = w->all_prev;
    if (w->kind == WATCH_STREAM)
        W.streams--;
    else {
        W.downloads--;
        if (w->dl)
            watch_waiting_add(w->dl->user, -1);
    }
    epoll_ctl(W.ep, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
    free(w->out);
    free(w->pend_source);
    free(w->dl);
    w->out = w->pend_source = NULL;
    w->dl = NULL;
    w->user = NULL;
    /* freed at the end of the loop turn: a later event of the same epoll_wait may name it */
    w->all_next = W.dead;
    W.dead = w;
    publish_gauges();
}

static void free_dead(void)
{
    while (W.dead) {
        struct watcher *w = W.dead;
        W.dead = w->all_next;
        free(w);
    }
}

/* Writes what is buffered; false when the connection is gone (the watcher is freed then). */
static bool flush_out(struct watcher *w)
{
    while (w->out_off < w->out_len) {
        ssize_t n = write(w->fd, w->out + w->out_off, w->out_len - w->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_mod(w, true);
            return true;
        }
        if (n <= 0) {
            watcher_free(w);
            return false;
        }
        w->out_off += (uint32_t)n;
    }
    free(w->out);
    w->out = NULL;
    w->out_len = w->out_off = 0;
    ep_mod(w, false);
    if (w->closing) {
        watcher_free(w);
        return false;
    }
    return true;
}

static void record_head(strbuf_t *sb, int type, int id, size_t len)
{
    unsigned char h[8] = { FCGI_VERSION_1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
                           (unsigned char)(len >> 8), (unsigned char)len, 0, 0 };
    sb_append(sb, (const char *)h, 8);
}

/* Queues data as FCGI_STDOUT records (and, with end, the end of the stream and FCGI_END_REQUEST)
 * and writes what the connection takes. false when the watcher is gone. */
static bool send_out(struct watcher *w, const char *data, size_t len, bool end)
{
    strbuf_t sb = STRBUF_INIT;
    if (w->out_len)
        sb_append(&sb, w->out + w->out_off, w->out_len - w->out_off);
    while (len) {
        size_t n = len > 65535 ? 65535 : len;
        record_head(&sb, FCGI_STDOUT, w->fcgi_id, n);
        sb_append(&sb, data, n);
        data += n;
        len -= n;
    }
    if (end) {
        record_head(&sb, FCGI_STDOUT, w->fcgi_id, 0);
        record_head(&sb, FCGI_END_REQUEST, w->fcgi_id, 8);
        static const char body[8] = { 0, 0, 0, 0, 0 /* FCGI_REQUEST_COMPLETE */, 0, 0, 0 };
        sb_append(&sb, body, 8);
        w->closing = true;
    }
    free(w->out);
    if (sb.len > OUT_LIMIT) {
        sb_free(&sb);
        w->out = NULL;
        w->out_len = w->out_off = 0;
        log_warn("watch: dropping a connection the web server does not read");
        watcher_free(w);
        return false;
    }
    w->out = sb.data;   /* ownership moves to the watcher */
    w->out_len = (uint32_t)sb.len;
    w->out_off = 0;
    return flush_out(w);
}

/* ------------------------------------------------------------------------------ streams */

static bool stream_write_pending(struct watcher *w)
{
    if (!w->pending || w->out_len || w->closing)
        return true;   /* a backlog: the event waits (and coalesces) until the web server reads */
    char frame[512];
    int n;
    if (w->pend_source)
        n = snprintf(frame, sizeof frame, "event: bundle\ndata: {\"bundle_seq\":%lld,\"source_id\":%s,\"source_bundle_id\":%lld}\n\n",
                     (long long)w->pend_seq, w->pend_source, (long long)w->pend_sbid);
    else
        n = snprintf(frame, sizeof frame, "event: bundle\ndata: {\"bundle_seq\":%lld}\n\n", (long long)w->pend_seq);
    w->pending = false;
    free(w->pend_source);
    w->pend_source = NULL;
    if (n < 0 || (size_t)n >= sizeof frame)
        n = snprintf(frame, sizeof frame, "event: bundle\ndata: {\"bundle_seq\":%lld}\n\n", (long long)w->pend_seq);
    metrics_watch(METRICS_WATCH_WAKEUP, 1);
    return send_out(w, frame, (size_t)n, false);
}

/* The reference's hub: per watcher a buffer of one, newest wins, never at or below the last
 * bundle_seq queued. source_json: the source_id as a JSON string, or NULL (catch-up). */
static void stream_publish(struct watcher *w, int64_t seq, const char *source_json, int64_t sbid)
{
    if (seq <= 0 || seq <= w->last_seq || w->closing)
        return;
    if (w->pending)
        metrics_watch(METRICS_WATCH_COALESCED, 1);
    free(w->pend_source);
    w->pend_source = source_json && sbid > 0 ? xstrdup(source_json) : NULL;
    w->pend_seq = seq;
    w->pend_sbid = sbid;
    w->pending = true;
    w->last_seq = seq;
    stream_write_pending(w);
}

static void user_publish(struct user *u, int64_t seq, const char *source_json, int64_t sbid)
{
    for (struct watcher *w = u->head, *next; w; w = next) {
        next = w->next;   /* w may be freed */
        stream_publish(w, seq, source_json, sbid);
    }
}

static void stream_end(struct watcher *w)
{
    send_out(w, NULL, 0, true);
}

/* ------------------------------------------------------------------------------ downloads */

/* Reads the download now and answers it when it has changes (or always, with final). */
static void download_try(struct watcher *w, bool final)
{
    w->pending = false;
    strbuf_t answer = STRBUF_INIT;
    unsigned long rows = 0;
    bool ok = app_watch_download_answer(&W.app, w->dl, &answer, &rows);
    if (ok && rows == 0 && !final) {
        sb_free(&answer);
        return;
    }
    metrics_watch(final && ok && rows == 0 ? METRICS_WATCH_LONGPOLL_TIMEOUT : METRICS_WATCH_LONGPOLL_CHANGE, 1);
    /* the answer is given: no longer waiting */
    watch_waiting_add(w->dl->user, -1);
    free(w->dl);
    w->dl = NULL;
    send_out(w, answer.data, answer.len, true);
    sb_free(&answer);
}

/* ------------------------------------------------------------------------------ notifications */

static void ring_add(uint64_t user_hash, uint64_t source_hash, int64_t seq)
{
    struct note *n = &W.ring[W.ring_n++ % RING];
    n->recv_ns = watch_now_ns();
    n->user_hash = user_hash;
    n->source_hash = source_hash;
    n->seq = seq;
}

/* Did a notification for user_hash arrive since t0 (one not from skip_source, when not 0)? The
 * newest seq of those into *seq. Unknown (the ring overflowed since t0) counts as yes. */
static bool ring_since(int64_t t0, uint64_t user_hash, uint64_t skip_source, int64_t *seq)
{
    bool found = false;
    *seq = 0;
    uint64_t n = W.ring_n < RING ? W.ring_n : RING;
    if (W.ring_n > RING && W.ring[W.ring_n % RING].recv_ns >= t0)
        return true;   /* the oldest kept is newer than t0: some may be lost */
    for (uint64_t i = 0; i < n; i++) {
        const struct note *e = &W.ring[i];
        if (e->recv_ns < t0 || e->user_hash != user_hash || (skip_source && e->source_hash == skip_source))
            continue;
        found = true;
        if (e->seq > *seq)
            *seq = e->seq;
    }
    return found;
}

static void on_notify(const char *payload)
{
    size_t len = strlen(payload);
    struct json_span root, k, v;
    char err[128];
    if (!json_validate(payload, len, &root, err, sizeof err) || root.type != JSON_OBJECT) {
        log_warn("watch: ignored a notification that is not a JSON object");
        return;
    }
    long long user_pk = 0, seq = 0, sbid = 0;
    const char *user_start = NULL, *source_start = NULL;
    size_t source_len = 0;
    struct json_span user_span, source_span;
    struct json_iter it;
    json_iter_init(&it, &root);
    while (json_iter_member(&it, &k, &v)) {
        if (json_string_eq(&k, "user_pk"))
            json_int64(&v, &user_pk);
        else if (json_string_eq(&k, "bundle_seq"))
            json_int64(&v, &seq);
        else if (json_string_eq(&k, "source_bundle_id"))
            json_int64(&v, &sbid);
        else if (json_string_eq(&k, "source_id") && v.type == JSON_STRING) {
            source_span = v;
            source_start = v.start;
            source_len = v.len;
        } else if (json_string_eq(&k, "user_id") && v.type == JSON_STRING) {
            user_span = v;
            user_start = v.start;
        }
    }
    if (W.bundle) {
        if (user_pk <= 0 || seq <= 0) {
            log_warn("watch: ignored a notification without a positive user_pk and bundle_seq");
            return;
        }
        char key[32];
        stream_key(key, sizeof key, user_pk);
        uint64_t h = watch_hash(key);
        ring_add(h, 0, seq);
        struct user *u = user_find(key, h);
        if (!u)
            return;
        /* the source_id as sent: a JSON string, re-used verbatim (it came from a JSON encoder) */
        char *src = NULL;
        if (source_start && source_len > 2)
            src = strndup(source_start, source_len);
        user_publish(u, seq, src, sbid);
        free(src);
        return;
    }
    if (!user_start)
        return;
    arena_t *a = arena_new(1024);
    char *user = json_string_dup(a, &user_span);
    char *source = source_start ? json_string_dup(a, &source_span) : NULL;
    char *key = arena_printf(a, "u:%s", user);
    uint64_t h = watch_hash(key), sh = source ? watch_hash(source) : 0;
    ring_add(h, sh, 1);
    struct user *u = user_find(key, h);
    for (struct watcher *w = u ? u->head : NULL; w; w = w->next)
        if (w->dl && (w->dl->dl_include_self || !source || w->device_hash != sh))
            w->pending = true;   /* read on this loop turn's end (several notifications, one read) */
    arena_free(a);
}

/* ------------------------------------------------------------------------------ the LISTEN connection */

static void pg_watch_fd(uint32_t events)
{
    int fd = W.pg ? PQsocket(W.pg) : -1;
    if (fd != W.pg_fd && W.pg_fd >= 0) {
        epoll_ctl(W.ep, EPOLL_CTL_DEL, W.pg_fd, NULL);
        W.pg_fd = -1;
    }
    if (fd < 0)
        return;
    struct epoll_event ev = { .events = events, .data.ptr = &W.pg };
    if (W.pg_fd < 0) {
        if (epoll_ctl(W.ep, EPOLL_CTL_ADD, fd, &ev) == 0) {
            W.pg_fd = fd;
            W.pg_events = events;
        }
    } else if (events != W.pg_events) {
        epoll_ctl(W.ep, EPOLL_CTL_MOD, fd, &ev);
        W.pg_events = events;
    }
}

static void pg_fail(const char *what)
{
    if (!W.stopping)
        log_warn("watch: LISTEN connection %s: %s; retrying in %ld ms", what,
                 W.pg ? PQerrorMessage(W.pg) : "out of memory", W.pg_backoff_ms);
    if (W.pg_fd >= 0)
        epoll_ctl(W.ep, EPOLL_CTL_DEL, W.pg_fd, NULL);
    W.pg_fd = -1;
    if (W.pg)
        PQfinish(W.pg);
    W.pg = NULL;
    W.pg_state = PG_DOWN;
    W.pg_query = Q_NONE;
    W.listening_since_ns = 0;
    W.pg_retry_ns = watch_now_ns() + (int64_t)W.pg_backoff_ms * 1000000;
    W.pg_backoff_ms = W.pg_backoff_ms * 2 > 2000 ? 2000 : W.pg_backoff_ms * 2;
}

static void pg_start(void)
{
    const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *vals[] = { "5", "oversyncd watch", W.cfg->database_url ? W.cfg->database_url : "", NULL };
    W.pg = PQconnectStartParams(keys, vals, 1);
    if (!W.pg || PQstatus(W.pg) == CONNECTION_BAD) {
        pg_fail("cannot be opened");
        return;
    }
    PQsetnonblocking(W.pg, 1);
    W.pg_state = PG_CONNECTING;
    pg_watch_fd(EPOLLOUT);
}

static void pg_after_send(void)
{
    int f = PQflush(W.pg);
    if (f < 0)
        pg_fail("lost");
    else
        pg_watch_fd(EPOLLIN | (f == 1 ? EPOLLOUT : 0));
}

/* The catch-up after every (re)LISTEN: bundle_seq next-1 to every user with streams (one query),
 * or a fresh read for every waiting download. */
static void pg_catchup(void)
{
    W.catchup_wanted = false;
    if (!W.bundle) {
        for (struct watcher *w = W.all; w; w = w->all_next)
            if (w->dl)
                w->pending = true;
        return;
    }
    if (!W.nusers)
        return;
    strbuf_t arr = STRBUF_INIT;
    sb_putc(&arr, '{');
    bool first = true;
    for (size_t i = 0; i < W.nbuckets; i++)
        for (struct user *u = W.buckets[i]; u; u = u->next) {
            sb_printf(&arr, "%s%lld", first ? "" : ",", (long long)u->user_pk);
            first = false;
        }
    sb_putc(&arr, '}');
    const char *vals[1] = { arr.data };
    if (!PQsendQueryParams(W.pg, "SELECT user_pk, next_bundle_seq - 1 FROM sync.user_state WHERE user_pk = ANY($1::bigint[])",
                           1, NULL, vals, NULL, NULL, 0)) {
        sb_free(&arr);
        pg_fail("lost");
        return;
    }
    sb_free(&arr);
    W.pg_query = Q_CATCHUP;
    pg_after_send();
}

static void pg_result(PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (W.pg_query == Q_LISTEN && st != PGRES_COMMAND_OK)
        log_warn("watch: LISTEN failed: %s", PQresultErrorMessage(r));
    if (W.pg_query == Q_CATCHUP) {
        if (st != PGRES_TUPLES_OK) {
            log_warn("watch: catch-up query failed: %s", PQresultErrorMessage(r));
            return;
        }
        for (int i = 0; i < PQntuples(r); i++) {
            char key[32];
            stream_key(key, sizeof key, atoll(PQgetvalue(r, i, 0)));
            struct user *u = user_find(key, watch_hash(key));
            if (u)
                user_publish(u, atoll(PQgetvalue(r, i, 1)), NULL, 0);
        }
    }
}

static void pg_query_done(void)
{
    enum pg_query q = W.pg_query;
    W.pg_query = Q_NONE;
    if (q == Q_LISTEN) {
        W.listening_since_ns = watch_now_ns();
        W.pg_backoff_ms = 100;
        if (W.ever_listened) {
            metrics_watch(METRICS_WATCH_RECONNECT, 1);
            log_info("watch: listening on \"%s\" again", W.channel);
        }
        W.ever_listened = true;
        W.catchup_wanted = true;
    }
    if (W.catchup_wanted && W.pg_state == PG_READY)
        pg_catchup();
}

static void pg_event(uint32_t events)
{
    if (W.pg_state == PG_CONNECTING) {
        switch (PQconnectPoll(W.pg)) {
        case PGRES_POLLING_READING:
            pg_watch_fd(EPOLLIN);
            return;
        case PGRES_POLLING_WRITING:
            pg_watch_fd(EPOLLOUT);
            return;
        case PGRES_POLLING_OK: {
            W.pg_state = PG_READY;
            char sql[128];
            snprintf(sql, sizeof sql, "LISTEN %s", W.channel);
            if (!PQsendQuery(W.pg, sql)) {
                pg_fail("lost");
                return;
            }
            W.pg_query = Q_LISTEN;
            pg_after_send();
            return;
        }
        default:
            pg_fail("failed");
            return;
        }
    }
    if (events & EPOLLOUT) {
        int f = PQflush(W.pg);
        if (f < 0) {
            pg_fail("lost");
            return;
        }
        pg_watch_fd(EPOLLIN | (f == 1 ? EPOLLOUT : 0));
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    if (!PQconsumeInput(W.pg)) {
        pg_fail("lost");
        return;
    }
    while (W.pg_query != Q_NONE && !PQisBusy(W.pg)) {
        PGresult *r = PQgetResult(W.pg);
        if (!r) {
            pg_query_done();
            if (!W.pg)
                return;
            continue;
        }
        pg_result(r);
        PQclear(r);
    }
    PGnotify *n;
    while (W.pg && (n = PQnotifies(W.pg)) != NULL) {
        on_notify(n->extra);
        PQfreemem(n);
    }
    if (W.pg && PQstatus(W.pg) == CONNECTION_BAD)
        pg_fail("lost");
}

/* ------------------------------------------------------------------------------ hand-over */

static const char stream_head_fmt[] = "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                                      "X-Accel-Buffering: no\r\nX-Request-Id: %s\r\n\r\n";

static void answer_count(int fd, const struct fcgi_handoff *h, const struct watch_msg *m)
{
    char key[32];
    stream_key(key, sizeof key, m->user_pk);
    struct user *u = user_find(key, watch_hash(key));
    arena_t *a = arena_new(4096);
    struct bundle_reply r;
    bundle_reply_init(&r, a);
    bundle_watch_subscribers(&r, m->user, u ? u->count : 0);
    strbuf_t all = STRBUF_INIT;
    sb_printf(&all, "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\nX-Request-Id: %s\r\n\r\n", r.body.len, m->request_id);
    sb_append(&all, r.body.data, r.body.len);
    arena_free(a);
    struct watcher *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->fcgi_id = (uint16_t)h->request_id;
    w->kind = WATCH_DOWNLOAD;   /* a short-lived one: ends with this answer */
    w->all_next = W.all;
    if (W.all)
        W.all->all_prev = w;
    W.all = w;
    W.downloads++;
    w->due_ns = INT64_MAX;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = w };
    epoll_ctl(W.ep, EPOLL_CTL_ADD, fd, &ev);
    send_out(w, all.data, all.len, true);
    sb_free(&all);
}

static void take_over(int fd, const struct fcgi_handoff *h, const struct watch_msg *m)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (m->kind == WATCH_COUNT) {
        answer_count(fd, h, m);
        return;
    }
    if (m->kind != WATCH_STREAM && m->kind != WATCH_DOWNLOAD) {
        close(fd);
        return;
    }
    struct watcher *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->fcgi_id = (uint16_t)h->request_id;
    w->kind = (uint8_t)m->kind;
    int64_t now = watch_now_ns();
    char key[IDENTITY_MAX + 8];
    if (m->kind == WATCH_STREAM) {
        stream_key(key, sizeof key, m->user_pk);
        w->last_seq = m->after;
        w->due_ns = now + (int64_t)W.cfg->watch_heartbeat_ms * 1000000;
        W.streams++;
    } else {
        snprintf(key, sizeof key, "u:%s", m->user);
        w->dl = xmalloc(sizeof *m);
        memcpy(w->dl, m, sizeof *m);
        w->device_hash = watch_hash(m->device);
        w->due_ns = m->deadline_ns;
        W.downloads++;
    }
    w->user = user_get(key, m->user_pk);
    w->next = w->user->head;
    if (w->next)
        w->next->prev = w;
    w->user->head = w;
    w->user->count++;
    w->all_next = W.all;
    if (W.all)
        W.all->all_prev = w;
    W.all = w;
    if (w->due_ns < W.next_scan_ns)
        W.next_scan_ns = w->due_ns;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = w };
    epoll_ctl(W.ep, EPOLL_CTL_ADD, fd, &ev);
    publish_gauges();

    /* Was something committed that the worker could not see? Notifications since t0 tell, as
     * long as this process listened all that time; otherwise ask the database. */
    bool listened = W.listening_since_ns && W.listening_since_ns <= m->t0_ns;
    int64_t seq;
    bool since = ring_since(m->t0_ns, w->user->hash, m->kind == WATCH_DOWNLOAD && !m->dl_include_self ? w->device_hash : 0,
                            &seq);
    if (m->kind == WATCH_STREAM) {
        char head[256];
        int n = snprintf(head, sizeof head, stream_head_fmt, m->request_id);
        if (!send_out(w, head, (size_t)n, false))
            return;
        stream_publish(w, m->latest, NULL, 0);   /* the catch-up event when latest > after */
        if (since && seq > 0)
            stream_publish(w, seq, NULL, 0);
        if (!listened)
            W.catchup_wanted = true;   /* runs once the connection is (again) listening */
        if (W.catchup_wanted && W.pg_state == PG_READY && W.pg_query == Q_NONE)
            pg_catchup();
    } else if (since || !listened) {
        w->pending = true;
    }
}

static void receive_handoffs(void)
{
    for (;;) {
        struct fcgi_handoff h;
        struct watch_msg m;
        size_t len;
        int fd;
        if (!fcgi_recv_handoff(W.sock, &h, &m, sizeof m, &len, &fd))
            return;
        if (fd < 0)
            continue;
        if (len != sizeof m || W.stopping) {
            close(fd);   /* the web server answers 502; the client retries */
            continue;
        }
        take_over(fd, &h, &m);
    }
}

/* Input from the web server: only FCGI_ABORT_REQUEST and the end of the connection matter. */
static void watcher_input(struct watcher *w)
{
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            watcher_free(w);   /* the web server closed the connection: the client went away */
            return;
        }
        for (ssize_t i = 0; i < n;) {
            if (w->in_skip) {
                size_t k = (size_t)(n - i) < w->in_skip ? (size_t)(n - i) : w->in_skip;
                w->in_skip -= (uint32_t)k;
                i += (ssize_t)k;
                continue;
            }
            w->in_head[w->in_head_len++] = buf[i++];
            if (w->in_head_len < 8)
                continue;
            w->in_head_len = 0;
            const unsigned char *hd = w->in_head;
            if (hd[0] != FCGI_VERSION_1) {
                w->in_skip = UINT32_MAX;   /* out of step: only the end of the connection counts now */
                continue;
            }
            w->in_skip = ((uint32_t)hd[4] << 8 | hd[5]) + hd[6];
            if (hd[1] == FCGI_ABORT_REQUEST && ((hd[2] << 8) | hd[3]) == w->fcgi_id) {
                if (w->kind == WATCH_STREAM)
                    stream_end(w);
                else
                    send_out(w, NULL, 0, true);
                return;
            }
        }
    }
}

/* ------------------------------------------------------------------------------ timers */

static void scan_timers(int64_t now)
{
    if (now < W.next_scan_ns)
        return;
    int64_t next = INT64_MAX;
    for (struct watcher *w = W.all, *nw; w; w = nw) {
        nw = w->all_next;
        if (w->closing)
            continue;
        if (w->due_ns <= now) {
            if (w->kind == WATCH_STREAM) {
                w->due_ns += (int64_t)W.cfg->watch_heartbeat_ms * 1000000;
                if (w->due_ns <= now)
                    w->due_ns = now + (int64_t)W.cfg->watch_heartbeat_ms * 1000000;
                if (!w->out_len) {
                    static const char beat[] = ": heartbeat\n\n";
                    metrics_watch(METRICS_WATCH_HEARTBEAT, 1);
                    if (!send_out(w, beat, sizeof beat - 1, false))
                        continue;
                }
            } else if (w->dl) {
                download_try(w, true);
                continue;
            }
        }
        if (w->due_ns < next)
            next = w->due_ns;
    }
    W.next_scan_ns = next;
}

static void run_pending_downloads(void)
{
    for (struct watcher *w = W.all, *nw; w; w = nw) {
        nw = w->all_next;
        if (w->dl && w->pending && !w->closing)
            download_try(w, false);
    }
}

/* ------------------------------------------------------------------------------ the process */

static void stop_everything(void)
{
    W.stopping = true;
    epoll_ctl(W.ep, EPOLL_CTL_DEL, W.sock, NULL);
    long n = 0;
    for (struct watcher *w = W.all, *nw; w; w = nw) {
        nw = w->all_next;
        if (w->closing)
            continue;
        n++;
        if (w->kind == WATCH_STREAM)
            stream_end(w);
        else if (w->dl)
            download_try(w, true);
    }
    if (n)
        log_info("watch: stopping; ended %ld open stream(s) and wait(s)", n);
    /* what the web servers have not read yet: a moment to take it */
    int64_t deadline = watch_now_ns() + 2000000000LL;
    while (W.all && watch_now_ns() < deadline) {
        struct epoll_event evs[64];
        int k = epoll_wait(W.ep, evs, 64, 100);
        for (int i = 0; i < k; i++) {
            if (evs[i].data.ptr == &W.pg || evs[i].data.ptr == &W.sigfd || evs[i].data.ptr == &W.sock)
                continue;
            struct watcher *w = evs[i].data.ptr;
            if (w->fd < 0)
                continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                watcher_free(w);
            else if (evs[i].events & EPOLLOUT)
                flush_out(w);
        }
        free_dead();
    }
    while (W.all)
        watcher_free(W.all);
}

static void quote_channel(const char *name, char *out, size_t n)
{
    size_t o = 0;
    out[o++] = '"';
    for (const char *p = name; *p && o + 3 < n; p++) {
        if (*p == '"')
            out[o++] = '"';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = '\0';
}

int watch_run(int sock, const struct config *cfg)
{
    memset(&W, 0, sizeof W);
    W.cfg = cfg;
    W.bundle = cfg->protocol == PROTOCOL_BUNDLE;
    W.sock = sock;
    W.pg_fd = -1;
    W.pg_backoff_ms = 100;
    W.next_scan_ns = INT64_MAX;
    quote_channel(W.bundle ? cfg->notify_channel : WATCH_UPLOAD_CHANNEL, W.channel, sizeof W.channel);
    watch_waiting_reset();   /* a predecessor's waits ended with it */
    metrics_watch_open(0, 0);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    W.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    W.ep = epoll_create1(EPOLL_CLOEXEC);
    if (W.sigfd < 0 || W.ep < 0) {
        log_error("watch: %s", strerror(errno));
        return 1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &W.sigfd };
    epoll_ctl(W.ep, EPOLL_CTL_ADD, W.sigfd, &ev);
    ev.data.ptr = &W.sock;
    epoll_ctl(W.ep, EPOLL_CTL_ADD, W.sock, &ev);
    if (!W.bundle) {
        app_init(&W.app, cfg, NULL);
        W.app_ready = true;
    }
    log_info("watch process: %s, listening on %s", W.bundle ? "GET /sync/watch streams" : "GET /sync/download?wait=S",
             W.channel);
    pg_start();

    while (!W.stopping) {
        int64_t now = watch_now_ns();
        int64_t wake = W.next_scan_ns;
        if (W.pg_state == PG_DOWN && W.pg_retry_ns < wake)
            wake = W.pg_retry_ns;
        int timeout = 1000;
        if (wake != INT64_MAX) {
            int64_t ms = (wake - now + 999999) / 1000000;
            timeout = ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
        }
        struct epoll_event evs[256];
        int k = epoll_wait(W.ep, evs, 256, timeout);
        if (k < 0 && errno != EINTR) {
            log_error("watch: epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < k; i++) {
            void *p = evs[i].data.ptr;
            if (p == &W.sigfd) {
                struct signalfd_siginfo si;
                while (read(W.sigfd, &si, sizeof si) == sizeof si)
                    W.stopping = true;
            } else if (p == &W.sock) {
                receive_handoffs();
            } else if (p == &W.pg) {
                if (W.pg)
                    pg_event(evs[i].events);
            }
        }
        /* connections second: an event of an earlier entry may have closed a watcher that a
         * later entry names (closed ones have fd -1 and are freed at the end of the turn) */
        for (int i = 0; i < k; i++) {
            void *p = evs[i].data.ptr;
            if (p == &W.sigfd || p == &W.sock || p == &W.pg)
                continue;
            struct watcher *w = p;
            if (w->fd < 0)
                continue;
            if (evs[i].events & EPOLLOUT) {
                if (!flush_out(w))
                    continue;
                if (w->kind == WATCH_STREAM && !stream_write_pending(w))
                    continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                watcher_input(w);
        }
        now = watch_now_ns();
        if (W.pg_state == PG_DOWN && now >= W.pg_retry_ns && !W.stopping)
            pg_start();
        if (!W.bundle)
            run_pending_downloads();
        scan_timers(now);
        free_dead();
    }
    stop_everything();
    free_dead();
    if (W.pg)
        PQfinish(W.pg);
    if (W.app_ready)
        app_cleanup(&W.app);
    log_info("watch process: stopped");
    return 0;
}
