/* What the workers need of the watch process (watch.h): the message that goes with a handed-over
 * connection, whether there is a watch process to hand to, and the shared table of users with a
 * waiting download (which an upload looks at before it announces its changes). */
#ifndef OVERSYNCD_WATCH_CLIENT_H
#define OVERSYNCD_WATCH_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "identity.h"

/* protocol = upload: the channel an upload that applied changes announces them on (after its
 * COMMIT, only while somebody waits for that user): {"user_id":"…","source_id":"…"}. */
#define WATCH_UPLOAD_CHANNEL "oversyncd_upload_change_v1"

enum watch_kind {
    WATCH_STREAM = 1,     /* GET /sync/watch: the SSE stream */
    WATCH_DOWNLOAD = 2,   /* GET /sync/download?wait=S with nothing to answer yet */
    WATCH_COUNT = 3,      /* GET /test/watch-subscribers: answered at once with the count */
};

/* What a worker sends with a connection. */
struct watch_msg {
    uint32_t kind;
    char request_id[17];
    int64_t t0_ns;            /* CLOCK_MONOTONIC before the worker read what it passes on */
    /* WATCH_STREAM (WATCH_COUNT: user_pk only, 0 = a user never seen) */
    int64_t user_pk;
    int64_t after;            /* after_bundle_seq */
    int64_t latest;           /* next_bundle_seq - 1 at t0 */
    /* WATCH_DOWNLOAD: the download's parameters and the caller */
    int64_t dl_after, dl_until;
    int32_t dl_limit;
    uint8_t dl_include_self;
    uint8_t dl_has_schema;
    int64_t deadline_ns;      /* CLOCK_MONOTONIC when the wait ends */
    char schema[64];
    char user[IDENTITY_MAX];  /* WATCH_COUNT: the user_id asked about */
    char device[IDENTITY_MAX];
};

/* Does this configuration need a watch process? protocol = bundle with [bundle] watch on, or
 * protocol = upload with [sync] download_max_wait > 0. */
bool watch_wanted(const struct config *cfg);

/* The shared table of users with a waiting download (master, before forking): an upload looks
 * there before it announces its changes, so that uploads nobody waits for cost nothing. */
bool watch_shared_init(void);
void watch_waiting_add(const char *user, int delta);
bool watch_waiting(const char *user);

/* A worker: the end of the socketpair connections are handed to (-1: none, this process cannot
 * hand over; /sync/watch then answers 503 and wait=S answers at once). */
void watch_client_init(int sock);
bool watch_available(void);

int64_t watch_now_ns(void);

void watch_waiting_reset(void);
/* FNV-1a of a string: the slot of a user in the shared table, and the watch process's hashes. */
uint64_t watch_hash(const char *s);

#endif
