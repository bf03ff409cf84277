/* Per-worker application state and the request dispatcher. */
#ifndef OVERSYNCD_APP_H
#define OVERSYNCD_APP_H

#include "arena.h"
#include "auth/auth.h"
#include "config.h"
#include "db/db.h"
#include "http/http.h"
#include "sync/sync.h"

struct app {
    const struct config *cfg;
    const struct auth_ctx *auth;
    struct db *db;
    arena_t *arena;
    struct sync_schema schema;      /* registered tables and their apply order */
};

typedef void (*handler_fn)(struct app *app, struct request *req);

void app_init(struct app *app, const struct config *cfg, const struct auth_ctx *auth);
void app_cleanup(struct app *app);
/* Serves one request end to end: route, limits, auth, database gate, handler, metrics, log. */
void app_handle(struct app *app, const struct http_io *io);

/* Answers 503 database_unavailable when the connection was lost during a failed query (true),
 * otherwise does nothing (false): the caller reports the failure as it sees fit. */
bool app_db_failed(struct app *app, struct request *req);

#endif
