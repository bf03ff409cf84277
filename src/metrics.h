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
void metrics_download(double seconds, unsigned long rows);
void metrics_render(strbuf_t *out, const char *(*route_label)(int route_slot));

#endif
