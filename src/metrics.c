#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* Status codes the server answers with; anything else is counted as "other". */
static const int status_codes[] = { 200, 400, 401, 404, 405, 413, 500, 503 };
#define N_STATUS (sizeof status_codes / sizeof status_codes[0] + 1)

static const double duration_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,   0.25,   0.5,   1,    2.5,   5, 10 };
#define N_DURATION (sizeof duration_bounds / sizeof duration_bounds[0])

static const double rows_bounds[] = { 0, 1, 10, 50, 100, 250, 500, 1000 };
#define N_ROWS (sizeof rows_bounds / sizeof rows_bounds[0])


struct hist {
    _Atomic uint64_t bucket[16];   /* per bound, not cumulative; the last used slot is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_micro;    /* sum in millionths of the unit */
};

struct shared {
    _Atomic uint64_t requests[METRICS_MAX_ROUTES][N_STATUS];
    struct hist duration[METRICS_MAX_ROUTES];
    _Atomic uint64_t worker_restarts;
    _Atomic uint64_t db_reconnects;
    _Atomic uint64_t changes_applied;
    _Atomic uint64_t conflicts;
    _Atomic uint64_t materialize_errors;
    _Atomic uint64_t materialize_fallbacks;
    _Atomic uint64_t upload_one_trip;
    _Atomic uint64_t upload_rewrites;
    _Atomic uint64_t invalid[INVALID__COUNT];
    struct hist upload_duration;
    struct hist download_duration;
    struct hist download_rows;
    _Atomic uint64_t watch[METRICS_WATCH__COUNT];
    _Atomic int64_t watch_streams, watch_longpolls;
};

static struct shared *shm;

bool metrics_init(void)
{
    if (shm)
        return true;
    void *p = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    memset(p, 0, sizeof *shm);
    shm = p;
    return true;
}

static void hist_observe(struct hist *h, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(v * 1e6 + 0.5), memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

void metrics_request(int route, int status, double seconds)
{
    if (!shm || route < 0 || route >= METRICS_MAX_ROUTES)
        return;
    size_t s = N_STATUS - 1;
    for (size_t i = 0; i < N_STATUS - 1; i++)
        if (status_codes[i] == status)
            s = i;
    add(&shm->requests[route][s], 1);
    hist_observe(&shm->duration[route], duration_bounds, N_DURATION, seconds);
}

void metrics_worker_restart(void)
{
    if (shm)
        add(&shm->worker_restarts, 1);
}

void metrics_db_reconnect(unsigned long n)
{
    if (shm)
        add(&shm->db_reconnects, n);
}

void metrics_upload(double seconds, unsigned long applied, unsigned long conflicts,
                    unsigned long materialize_errors, const unsigned long invalid[INVALID__COUNT])
{
    if (!shm)
        return;
    hist_observe(&shm->upload_duration, duration_bounds, N_DURATION, seconds);
    add(&shm->changes_applied, applied);
    add(&shm->conflicts, conflicts);
    add(&shm->materialize_errors, materialize_errors);
    for (int i = 0; i < INVALID__COUNT; i++)
        add(&shm->invalid[i], invalid[i]);
}

void metrics_materialize_fallbacks(unsigned long n)
{
    if (shm && n)
        add(&shm->materialize_fallbacks, n);
}

void metrics_upload_trips(unsigned long one_trip, unsigned long rewrites)
{
    if (shm && one_trip)
        add(&shm->upload_one_trip, one_trip);
    if (shm && rewrites)
        add(&shm->upload_rewrites, rewrites);
}

void metrics_download(double seconds, unsigned long rows)
{
    if (!shm)
        return;
    hist_observe(&shm->download_duration, duration_bounds, N_DURATION, seconds);
    hist_observe(&shm->download_rows, rows_bounds, N_ROWS, (double)rows);
}

void metrics_watch(enum metrics_watch_event e, unsigned long n)
{
    if (shm && (int)e >= 0 && e < METRICS_WATCH__COUNT)
        add(&shm->watch[e], n);
}

void metrics_watch_open(long streams, long longpolls)
{
    if (!shm)
        return;
    atomic_store_explicit(&shm->watch_streams, streams, memory_order_relaxed);
    atomic_store_explicit(&shm->watch_longpolls, longpolls, memory_order_relaxed);
}

static void render_hist(strbuf_t *out, const char *name, const char *labels, struct hist *h,
                        const double *bounds, size_t n, bool integral)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i <= n; i++) {
        cum += get(&h->bucket[i]);
        if (i < n)
            sb_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                      (unsigned long long)cum);
        else
            sb_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                      (unsigned long long)cum);
    }
    double sum = (double)get(&h->sum_micro) / 1e6;
    if (labels[0]) {
        sb_printf(out, integral ? "%s_sum{%s} %.0f\n" : "%s_sum{%s} %.6f\n", name, labels, sum);
        sb_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)get(&h->count));
    } else {
        sb_printf(out, integral ? "%s_sum %.0f\n" : "%s_sum %.6f\n", name, sum);
        sb_printf(out, "%s_count %llu\n", name, (unsigned long long)get(&h->count));
    }
}

static void counter(strbuf_t *out, const char *name, const char *help, uint64_t v)
{
    sb_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
              (unsigned long long)v);
}

void metrics_render(strbuf_t *out, const char *(*route_label)(int route_slot))
{
    if (!shm) {
        sb_puts(out, "# metrics are not initialised\n");
        return;
    }
    sb_puts(out, "# HELP oversyncd_http_requests_total Requests answered, by route and status.\n"
                 "# TYPE oversyncd_http_requests_total counter\n");
    for (int r = 0; r < METRICS_MAX_ROUTES; r++)
        for (size_t s = 0; s < N_STATUS; s++) {
            uint64_t v = get(&shm->requests[r][s]);
            if (!v)
                continue;
            char code[8];
            if (s < N_STATUS - 1)
                snprintf(code, sizeof code, "%d", status_codes[s]);
            else
                strcpy(code, "other");
            sb_printf(out, "oversyncd_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                      route_label(r), code, (unsigned long long)v);
        }
    sb_puts(out, "# HELP oversyncd_http_request_duration_seconds Time from accept to answer, by route.\n"
                 "# TYPE oversyncd_http_request_duration_seconds histogram\n");
    for (int r = 0; r < METRICS_MAX_ROUTES; r++) {
        if (!get(&shm->duration[r].count))
            continue;
        char labels[96];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_label(r));
        render_hist(out, "oversyncd_http_request_duration_seconds", labels, &shm->duration[r],
                    duration_bounds, N_DURATION, false);
    }
    counter(out, "oversyncd_worker_restarts_total", "Workers restarted after an abnormal exit.",
            get(&shm->worker_restarts));
    counter(out, "oversyncd_db_reconnects_total",
            "Database connections re-established by workers after a loss.", get(&shm->db_reconnects));
    counter(out, "oversyncd_sync_changes_applied_total", "Uploaded changes applied.",
            get(&shm->changes_applied));
    counter(out, "oversyncd_sync_conflicts_total", "Uploaded changes answered conflict.",
            get(&shm->conflicts));
    counter(out, "oversyncd_sync_materialize_errors_total",
            "Uploaded changes answered materialize_error.", get(&shm->materialize_errors));
    counter(out, "oversyncd_sync_materialize_fallbacks_total",
            "Set-based materializations that failed and were redone change by change.",
            get(&shm->materialize_fallbacks));
    counter(out, "oversyncd_sync_upload_one_trip_total",
            "Uploads written in one round trip without reading the rows first ([sync] optimistic_upload).",
            get(&shm->upload_one_trip));
    counter(out, "oversyncd_sync_upload_rewrites_total",
            "Optimistic upload writes that found a row moved or a change uploaded before, were rolled "
            "back and written the careful way.",
            get(&shm->upload_rewrites));
    sb_puts(out, "# HELP oversyncd_sync_invalid_total Uploaded changes answered invalid, by reason.\n"
                 "# TYPE oversyncd_sync_invalid_total counter\n");
    for (int i = 0; i < INVALID__COUNT; i++)
        sb_printf(out, "oversyncd_sync_invalid_total{reason=\"%s\"} %llu\n", sync_invalid_reason_name((enum invalid_reason)i),
                  (unsigned long long)get(&shm->invalid[i]));
    sb_puts(out, "# HELP oversyncd_sync_upload_duration_seconds Time spent applying an upload.\n"
                 "# TYPE oversyncd_sync_upload_duration_seconds histogram\n");
    render_hist(out, "oversyncd_sync_upload_duration_seconds", "", &shm->upload_duration,
                duration_bounds, N_DURATION, false);
    sb_puts(out, "# HELP oversyncd_sync_download_duration_seconds Time spent building a download page.\n"
                 "# TYPE oversyncd_sync_download_duration_seconds histogram\n");
    render_hist(out, "oversyncd_sync_download_duration_seconds", "", &shm->download_duration,
                duration_bounds, N_DURATION, false);
    sb_puts(out, "# HELP oversyncd_sync_download_page_rows Changes returned per download page.\n"
                 "# TYPE oversyncd_sync_download_page_rows histogram\n");
    render_hist(out, "oversyncd_sync_download_page_rows", "", &shm->download_rows, rows_bounds,
                N_ROWS, true);
    sb_printf(out, "# HELP oversyncd_watch_streams Open GET /sync/watch streams (held by the watch process).\n"
                   "# TYPE oversyncd_watch_streams gauge\noversyncd_watch_streams %lld\n",
              (long long)atomic_load_explicit(&shm->watch_streams, memory_order_relaxed));
    sb_printf(out, "# HELP oversyncd_watch_longpolls Downloads with wait=S held by the watch process.\n"
                   "# TYPE oversyncd_watch_longpolls gauge\noversyncd_watch_longpolls %lld\n",
              (long long)atomic_load_explicit(&shm->watch_longpolls, memory_order_relaxed));
    counter(out, "oversyncd_watch_wakeups_total", "Bundle events written to watch streams.",
            get(&shm->watch[METRICS_WATCH_WAKEUP]));
    counter(out, "oversyncd_watch_coalesced_total",
            "Watch events replaced by a newer one before they were written.", get(&shm->watch[METRICS_WATCH_COALESCED]));
    counter(out, "oversyncd_watch_heartbeats_total", "Heartbeat comments written to watch streams.",
            get(&shm->watch[METRICS_WATCH_HEARTBEAT]));
    counter(out, "oversyncd_watch_notify_reconnects_total",
            "LISTEN connections of the watch process re-established after a loss.",
            get(&shm->watch[METRICS_WATCH_RECONNECT]));
    counter(out, "oversyncd_watch_longpoll_changes_total",
            "Downloads with wait answered early because a change arrived.",
            get(&shm->watch[METRICS_WATCH_LONGPOLL_CHANGE]));
    counter(out, "oversyncd_watch_longpoll_timeouts_total",
            "Downloads with wait answered when the wait passed.", get(&shm->watch[METRICS_WATCH_LONGPOLL_TIMEOUT]));
}
