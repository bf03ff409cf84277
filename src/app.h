/* The application: per-worker state, the route table and the request dispatcher. The top layer:
 * it alone (with worker.c, master.c and main.c) sees every layer below, and metrics. */
#ifndef OVERSYNCD_APP_H
#define OVERSYNCD_APP_H

#include "arena.h"
#include "auth/auth.h"
#include "bundle/schema.h"
#include "config.h"
#include "db/db.h"
#include "http/http.h"
#include "metrics.h"
#include "sync/sync.h"

struct app {
    const struct config *cfg;
    const struct auth_ctx *auth;
    struct db *db;
    arena_t *arena;
    struct sync_schema schema;      /* protocol = upload: registered tables and their apply order */
    struct bundle_catalog catalog;  /* protocol = bundle: the registered tables' catalog */
    unsigned long reconnects_counted;   /* db reconnects already added to the metrics */
};

/* The routes the application serves (one row each: method, path, needs, handler). */
extern const struct route app_routes[];
extern const size_t n_app_routes;

/* The handlers of the bundle protocol's routes (app_bundle.c). */
void app_bundle_capabilities(struct app *app, struct request *req);
void app_bundle_health(struct app *app, struct request *req);
void app_bundle_status(struct app *app, struct request *req);
void app_bundle_connect(struct app *app, struct request *req);
void app_bundle_push_create(struct app *app, struct request *req);
void app_bundle_push_chunk(struct app *app, struct request *req);
void app_bundle_push_commit(struct app *app, struct request *req);
void app_bundle_push_delete(struct app *app, struct request *req);
void app_bundle_committed_rows(struct app *app, struct request *req);

void app_init(struct app *app, const struct config *cfg, const struct auth_ctx *auth);
void app_cleanup(struct app *app);
/* Serves one request end to end: route, limits, auth, database gate, handler, metrics, log. */
void app_handle(struct app *app, const struct http_io *io);

/* Answers 503 database_unavailable when the connection was lost during a failed query (true),
 * otherwise does nothing (false): the caller reports the failure as it sees fit. */
bool app_db_failed(struct app *app, struct request *req);

#endif
