/* Counters kept in shared memory created before the fork, so /metrics shows totals over all
 * workers and survives worker restarts and reloads. Prometheus text format. */
#ifndef OVERSYNCD_METRICS_H
#define OVERSYNCD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"
#include "strbuf.h"

enum metric_invalid_reason {
    INVALID_FK_MISSING = 0,
    INVALID_BAD_PAYLOAD,
    INVALID_PRECHECK_ERROR,
    INVALID_UNREGISTERED_TABLE,
    INVALID_INTERNAL_ERROR,
    INVALID_PK_TAKEN,              /* the row belongs to another user (sync.row_owner) */
    INVALID__COUNT
};

/* Create the shared segment (master, before forking). Idempotent. */
bool metrics_init(void);
void metrics_request(enum route_id route, int status, double seconds);
void metrics_worker_restart(void);
void metrics_db_reconnect(void);
void metrics_upload(double seconds, unsigned long applied, unsigned long conflicts,
                    unsigned long materialize_errors, const unsigned long invalid[INVALID__COUNT]);
void metrics_download(double seconds, unsigned long rows);
void metrics_render(strbuf_t *out);

#endif
