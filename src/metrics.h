/* Counters kept in shared memory created before the fork, so /metrics shows totals over all
 * workers and survives worker restarts and reloads. Prometheus text format. */
#ifndef OVERSYNCD_METRICS_H
#define OVERSYNCD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"
#include "sync/sync.h"

/* Request counters are kept per route slot: 0 for requests no route took, 1.. for the
 * application's routes (app.c); labels come from the application when rendering. */
#define METRICS_MAX_ROUTES 32

/* Create the shared segment (master, before forking). Idempotent. */
bool metrics_init(void);
void metrics_request(int route_slot, int status, double seconds);
void metrics_worker_restart(void);
void metrics_db_reconnect(unsigned long n);
void metrics_upload(double seconds, unsigned long applied, unsigned long conflicts,
                    unsigned long materialize_errors, const unsigned long invalid[INVALID__COUNT]);
/* Uploads whose set-based materialization failed and was redone change by change. */
void metrics_materialize_fallbacks(unsigned long n);
/* an upload written in one round trip; one whose optimistic write missed and was rewritten */
void metrics_upload_trips(unsigned long one_trip, unsigned long rewrites);
void metrics_download(double seconds, unsigned long rows);
/* The watch process (src/watch.c): its events, and how many streams and long-polls it holds now. */
enum metrics_watch_event {
    METRICS_WATCH_WAKEUP,         /* an event: bundle frame written to a stream */
    METRICS_WATCH_COALESCED,      /* a pending event replaced by a newer one before it was written */
    METRICS_WATCH_HEARTBEAT,      /* a heartbeat comment written */
    METRICS_WATCH_RECONNECT,      /* the LISTEN connection (re)established after a loss */
    METRICS_WATCH_LONGPOLL_CHANGE,   /* a download?wait=S answered because a change arrived */
    METRICS_WATCH_LONGPOLL_TIMEOUT,  /* a download?wait=S answered when S passed */
    METRICS_WATCH__COUNT
};
void metrics_watch(enum metrics_watch_event e, unsigned long n);
void metrics_watch_open(long streams, long longpolls);
void metrics_render(strbuf_t *out, const char *(*route_label)(int route_slot));

#endif
