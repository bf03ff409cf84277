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

    /* [bundle] test_routes = on: what the last POST /test/e2e/setup decided (app_test.c) */
    long long test_generation;      /* of the setup this worker adopted, 0 = none */
    char *test_schema;              /* its business schema: the registry is that schema's example tables */
    char *test_app_name;
    struct config test_cfg;         /* shallow copy of *cfg with the setup's app name and lease */
    bool test_cfg_set;
    bool test_deferral;             /* the reference's empty-first deferral of connect */
    long test_deferral_ms;
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
void app_bundle_pull(struct app *app, struct request *req);
void app_bundle_snapshot_create(struct app *app, struct request *req);
void app_bundle_snapshot_chunk(struct app *app, struct request *req);
void app_bundle_snapshot_delete(struct app *app, struct request *req);
/* GET /sync/watch: checked here, then handed to the watch process (src/watch.h). */
void app_bundle_watch(struct app *app, struct request *req);
/* GET /test/watch-subscribers?user_id=U ([bundle] test_routes): the watch process's count. */
void app_test_watch_subscribers(struct app *app, struct request *req);

/* The long-poll of GET /sync/download?wait=S (app_watch.c). wait: the query value (NULL when
 * absent) into *wait_ms; false with err for a bad value or one above [sync] download_max_wait. */
bool app_watch_parse_wait(const struct config *cfg, const char *wait, long *wait_ms, char *err, size_t errlen);
/* Hands a download with nothing to answer yet to the watch process (true: answered there). t0:
 * watch_now_ns() taken before the download was read. */
struct download_params;
bool app_watch_download_wait(struct app *app, struct request *req, const struct download_params *p, long wait_ms,
                             int64_t t0);
/* The watch process: the download a long-poll waits for, as the complete CGI answer (headers and
 * body) into answer; *rows the changes in it. false: a database failure, answered 503. */
struct watch_msg;
bool app_watch_download_answer(struct app *app, const struct watch_msg *m, strbuf_t *answer, unsigned long *rows);
/* After an upload committed changes: announce them to downloads of that user that wait. */
void app_watch_upload_committed(struct app *app, const struct identity *who);

/* protocol = bundle: the sidecar created or adopted for the registry (the configuration's, or a
 * test setup's) and the catalog loaded, on conn (app.c). */
bool app_bundle_setup(struct app *app, PGconn *conn, char *err, size_t errlen);

/* The test-only routes and hooks of [bundle] test_routes (app_test.c). */
void app_test_setup(struct app *app, struct request *req);
void app_test_failures(struct app *app, struct request *req);
/* Creates the tables the test hooks keep their state in (schema public). */
bool app_test_tables(PGconn *conn, char *err, size_t errlen);
/* Before a routed request: adopts a newer setup, and answers an injected failure (true). */
bool app_test_before(struct app *app, struct request *req);
/* The empty-first deferral of POST /sync/connect: true when it answered retry_later. */
bool app_test_connect_deferred(struct app *app, struct request *req, const char *user, const char *source);
/* The registry of the current test setup into out (8 entries); its count. */
struct bundle_table;
int app_test_registry(const struct app *app, struct bundle_table *out);

/* The example business tables of the bundle protocol (sql/examples/bundle-business.sql, a psql
 * script), compiled in (src/sql_embedded.c). */
extern const char bundle_example_business_sql[];

void app_init(struct app *app, const struct config *cfg, const struct auth_ctx *auth);
void app_cleanup(struct app *app);
/* Serves one request end to end: route, limits, auth, database gate, handler, metrics, log. */
void app_handle(struct app *app, const struct http_io *io);

/* Answers 503 database_unavailable when the connection was lost during a failed query (true),
 * otherwise does nothing (false): the caller reports the failure as it sees fit. */
bool app_db_failed(struct app *app, struct request *req);

#endif
