/* The bundle protocol of go-oversync 1f1118f (SPEC-v2 §3, docs/bundle-protocol.md): one function
 * per endpoint. Each takes the request's context and what the HTTP layer read (body, path and
 * query parameters, as strings) and fills a reply: the status and the complete JSON body, in the
 * reference's encoding (compact, HTML-safe escapes, a trailing newline). The HTTP side (app.c
 * and app_bundle.c) only moves bytes: every check, message and status lives here. */
#ifndef OVERSYNCD_BUNDLE_H
#define OVERSYNCD_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "../arena.h"
#include "../config.h"
#include "../strbuf.h"
#include "schema.h"

struct bundle_ctx {
    const struct config *cfg;
    const struct bundle_catalog *catalog;
    PGconn *conn;             /* outside any transaction on entry and on return */
    arena_t *arena;           /* the request's: everything allocated here dies with it */
    const char *user;         /* the scope: the token's sub (NULL for unauthenticated routes) */
    const char *source;       /* the Oversync-Source-ID header, trimmed, non-empty */
    const char *request_id;   /* for log lines */
    long inflight;            /* status: operations in flight in this process (itself included) */
};

struct bundle_reply {
    int status;               /* HTTP status; 0 until set */
    const char *error;        /* the error code of a failure, NULL on success (for logs, metrics) */
    strbuf_t body;            /* the JSON body with its trailing newline; empty for 204 */
    bool connection_lost;     /* the failure may be a lost database connection: let db/ check */
};

void bundle_reply_init(struct bundle_reply *r, arena_t *arena);

/* The registered tables: catalog entries in schema.table byte order (= table_id order). */

/* GET /sync/capabilities (§3.12). watch_allowed: /sync/watch is served for this caller. */
void bundle_capabilities(const struct bundle_ctx *c, bool watch_allowed, struct bundle_reply *r);
/* GET /syncx/health (health = true: 503 when unhealthy) and GET /syncx/status (§3.13).
 * shutting_down: this process is stopping. */
void bundle_status(const struct bundle_ctx *c, bool health, bool shutting_down, struct bundle_reply *r);

/* POST /sync/connect (§3.1). */
void bundle_connect(const struct bundle_ctx *c, const char *body, size_t len, struct bundle_reply *r);

/* Push sessions (§3.2–3.5). push_id is the path segment as sent. */
void bundle_push_create(const struct bundle_ctx *c, const char *body, size_t len, struct bundle_reply *r);
void bundle_push_chunk(const struct bundle_ctx *c, const char *push_id, const char *body, size_t len,
                       struct bundle_reply *r);
void bundle_push_commit(const struct bundle_ctx *c, const char *push_id, struct bundle_reply *r);
void bundle_push_delete(const struct bundle_ctx *c, const char *push_id, struct bundle_reply *r);

/* GET /sync/committed-bundles/{bundle_seq}/rows (§3.6); query values NULL when absent. */
void bundle_committed_rows(const struct bundle_ctx *c, const char *bundle_seq, const char *after_row_ordinal,
                           const char *max_rows, struct bundle_reply *r);

/* GET /sync/pull (§3.7); query values NULL when absent. */
void bundle_pull(const struct bundle_ctx *c, const char *after_bundle_seq, const char *max_bundles,
                 const char *target_bundle_seq, struct bundle_reply *r);

/* GET /sync/watch (§3.8): the checks before a stream starts, in the reference's order: the
 * after_bundle_seq query value (400), enabled (503 bundle_change_watch_disabled), the scope
 * (409 scope_uninitialized / scope_initializing), then the user's user_pk and latest bundle_seq
 * (next_bundle_seq - 1; 500 bundle_change_watch_failed). true with *out filled, or false with
 * the reply set. The stream itself is not served here (src/watch.c). */
struct bundle_watch_start {
    long long user_pk;
    long long after;          /* after_bundle_seq, 0 when absent */
    long long latest;         /* next_bundle_seq - 1 when read */
};
bool bundle_watch_prepare(const struct bundle_ctx *c, bool enabled, const char *after_bundle_seq,
                          struct bundle_watch_start *out, struct bundle_reply *r);
/* The user_pk of user_id, 0 when the user has no user_state row (GET /test/watch-subscribers). */
bool bundle_user_pk(const struct bundle_ctx *c, const char *user_id, long long *user_pk, struct bundle_reply *r);
/* The answer of GET /test/watch-subscribers: {"process_local_only":true,"subscriber_count":N,
 * "user_id":U} as the reference's example server writes it. */
void bundle_watch_subscribers(struct bundle_reply *r, const char *user_id, long count);

/* Snapshot sessions (§3.9–3.11). */
void bundle_snapshot_create(const struct bundle_ctx *c, const char *body, size_t len, struct bundle_reply *r);
void bundle_snapshot_chunk(const struct bundle_ctx *c, const char *snapshot_id, const char *after_row_ordinal,
                           const char *max_rows, struct bundle_reply *r);
void bundle_snapshot_delete(const struct bundle_ctx *c, const char *snapshot_id, struct bundle_reply *r);

/* Replies shared with the HTTP side: {"error":code,"message":text}. */
void bundle_fail(struct bundle_reply *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
