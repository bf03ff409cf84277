/* End-to-end test harness: oversyncd behind a real lighttpd, configured with the files shipped in
 * lighttpd-example/, driven over real HTTP with libcurl.
 *
 * A stack is one oversyncd (its own master on a unix socket, with its workers) plus one lighttpd
 * (-D) forwarding to it, each started from a private temporary directory:
 *
 *     struct e2e_stack *s = e2e_start(&(struct e2e_options){ .oversyncd_conf = "[sync]\nmax_body_bytes = 1kB\n" });
 *     char *tok = e2e_token(s, "alice", "phone", NULL);
 *     struct e2e_response r;
 *     e2e_request(s, "GET", "/sync/schema-version", tok, NULL, &r);
 *     e2e_assert_status(&r, 200);
 *     e2e_assert_body_has(&r, "{\"schema_version\":1}");
 *     e2e_response_free(&r);
 *     free(tok);
 *     e2e_stop(s);
 *
 * Environment. The tests run under tests/pg.sh (make check does that through tests/run-test.sh),
 * which provides DATABASE_URL and OVERSYNCD_TEST_PGDIR/OVERSYNCD_TEST_PGSH. top_builddir and
 * top_srcdir (absolute; "." when unset) locate the oversyncd binary and lighttpd-example/.
 * JWT_SECRET is used when set, otherwise E2E_DEFAULT_SECRET is exported before anything starts.
 * LIGHTTPD names the lighttpd binary (default: lighttpd from PATH, /usr/sbin, /usr/local/sbin).
 * E2E_KEEP=1 keeps the temporary directories (configs and logs) of stopped stacks;
 * E2E_VERBOSE=1 prints the logs of every stack when it is stopped.
 *
 * Configuration. The shipped files are copied with only paths and the port replaced:
 * /run/oversyncd -> DIR/run, /var/log/lighttpd -> DIR/log, /var/www/html -> DIR/www and
 * "server.port = 8080" -> a free loopback port. Everything else is used as shipped.
 *
 * Clean-up. Each server runs in a process group of its own. The first e2e_start() of a process
 * forks a small guardian (in a session of its own) that notices when the test process ends, for
 * whatever reason (an assertion failure in Check's fork mode ends it with _exit, a timeout with
 * SIGKILL), and then stops the stacks that were not stopped, removes their directories and
 * restarts PostgreSQL if e2e_pg_stop() left it stopped. So a failing test never leaks a process.
 * Call e2e_start() (and the other functions that start processes) from the main thread, before
 * starting threads of your own. e2e_request() and the e2e_response functions are thread-safe.
 *
 * Errors in the harness itself (a server that does not start, a binary that is missing) fail the
 * current test with ck_abort_msg() after printing the relevant logs to stderr. */
#ifndef OVERSYNCD_TESTS_E2E_H
#define OVERSYNCD_TESTS_E2E_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define E2E_DEFAULT_SECRET "e2e-test-secret-with-more-than-32-bytes-0123456789"

/* --------------------------------------------------------------------------------- stacks */

struct e2e_options {
    /* INI text merged into the shipped oversyncd.conf, e.g. "[sync]\nmax_body_bytes = 1kB\n"
     * (see e2e_conf_merge). NULL uses the file as shipped. */
    const char *oversyncd_conf;
    /* Lines appended to the shipped lighttpd.conf. lighttpd refuses a second "=" of the same
     * option: replace a shipped value with ":=". NULL appends nothing. */
    const char *lighttpd_conf;
    /* How long e2e_start() waits for GET /health to answer 200 through lighttpd; 0 = 10000. */
    int start_timeout_ms;
};

struct e2e_stack;

/* Starts oversyncd, waits until its socket accepts connections, starts lighttpd, and waits until
 * GET /health answers 200 {"status":"healthy","service":"oversyncd"} through lighttpd. opts may
 * be NULL. Never returns NULL: a failure aborts the test. */
struct e2e_stack *e2e_start(const struct e2e_options *opts);

/* Stops lighttpd and oversyncd (SIGTERM, then SIGKILL after a grace period), waits for them and
 * every worker, removes the temporary directory and frees s. NULL is ignored. */
void e2e_stop(struct e2e_stack *s);

/* Sends sig (normally SIGTERM or SIGINT) to the oversyncd master and waits up to timeout_ms for it
 * to exit. Returns its wait status (see waitpid), or -1 when it is still running (it is left
 * running; e2e_stop() will kill it). lighttpd keeps running. */
int e2e_stop_oversyncd(struct e2e_stack *s, int sig, int timeout_ms);

/* Starts oversyncd again after e2e_stop_oversyncd() (or after it died), with the configuration
 * file as it is now, and waits until its socket accepts connections. lighttpd may go on
 * answering 503 by itself for up to a second (see lighttpd-example/README.md): poll. */
void e2e_start_oversyncd(struct e2e_stack *s);

pid_t e2e_master_pid(const struct e2e_stack *s);     /* 0 once it has exited */
pid_t e2e_lighttpd_pid(const struct e2e_stack *s);
int e2e_port(const struct e2e_stack *s);              /* lighttpd's loopback port */
const char *e2e_dir(const struct e2e_stack *s);       /* the temporary directory */
const char *e2e_conf_path(const struct e2e_stack *s); /* the oversyncd.conf in use */
const char *e2e_lighttpd_conf_path(const struct e2e_stack *s);
const char *e2e_socket_path(const struct e2e_stack *s);
const char *e2e_pid_file_path(const struct e2e_stack *s);
const char *e2e_oversyncd_log_path(const struct e2e_stack *s); /* oversyncd's stderr */

/* The live (not zombie) workers of the master, ascending, at most max. Returns how many. The
 * watch process (oversyncd-watch, a child too) is not a worker: e2e_watch_pid() finds it. */
int e2e_worker_pids(const struct e2e_stack *s, pid_t *out, int max);
/* The same for any oversyncd master (one started with e2e_spawn, say). */
int e2e_workers_of(pid_t master, pid_t *out, int max);
/* The master's watch process; 0 when it has none (now). */
pid_t e2e_watch_pid(const struct e2e_stack *s);

/* Waits up to timeout_ms until the master has exactly n live workers; returns that count or the
 * last count seen. */
int e2e_wait_workers(const struct e2e_stack *s, int n, pid_t *out, int max, int timeout_ms);

/* Merges ini into the oversyncd.conf in use (atomically: a new file renamed over the old one).
 * Does not signal anything: follow with e2e_reload(). */
void e2e_rewrite_conf(struct e2e_stack *s, const char *ini);

/* kill -HUP of the master. */
void e2e_reload(struct e2e_stack *s);

/* Prints the logs of the stack (oversyncd, lighttpd) to stderr. */
void e2e_dump_logs(const struct e2e_stack *s);

/* Returns base with the INI text ini merged in (malloc'd). For every "key = value" line of ini
 * under [section]: the uncommented line of that key in the same section of base is replaced; or,
 * when the key is not set there, the line is inserted after the section header; or, when base
 * has no such section, the section is appended. A section header alone adds an empty section. */
char *e2e_conf_merge(const char *base, const char *ini);

/* ----------------------------------------------------------------------------- any server */

/* For tests that start other servers from other example files (nginx, Apache, spawn-fcgi,
 * lighttpd with bin-path): the same guarantees as for stacks. A process started with
 * e2e_spawn() runs in a process group of its own (with everything it starts, unless that leaves
 * the group) that the guardian stops if the test process ends without e2e_stop_spawned(); a
 * directory from e2e_make_dir() is removed by the guardian likewise. */

/* What e2e_start() checks first: DATABASE_URL is set, PostgreSQL runs (started again when a
 * test left it stopped) and has the business tables (e2e_business_tables), the guardian and
 * libcurl are ready. */
void e2e_prepare(void);

const char *e2e_top_builddir(void);   /* $top_builddir, "." when unset */
const char *e2e_top_srcdir(void);     /* $top_srcdir, else top_builddir */

/* A file of the source tree, rel relative to top_srcdir (e.g. "lighttpd-example/lighttpd.conf"),
 * malloc'd; aborts the test when it cannot be read. */
char *e2e_read_shipped(const char *rel);

/* printf into a malloc'd string. */
__attribute__((format(printf, 1, 2))) char *e2e_strf(const char *fmt, ...);

/* text with every occurrence of from replaced by to (malloc'd). */
char *e2e_replace(const char *text, const char *from, const char *to);

/* Writes text to path (mode 0644) through a temporary file renamed over it. */
bool e2e_write_file(const char *path, const char *text);

bool e2e_file_has(const char *path, const char *needle);

/* Prints a file (its last 12000 bytes) to stderr under a title. */
void e2e_dump_file(const char *title, const char *path);

/* The path of a program: the value of the environment variable env_var when it is set (env_var
 * may be NULL), else the first executable name in PATH, /usr/sbin, /usr/local/sbin, /sbin,
 * /usr/bin, /bin. malloc'd; NULL when there is none. */
char *e2e_find_program(const char *env_var, const char *name);

/* A new temporary directory (mode 0755, short enough for unix sockets below it). malloc'd;
 * e2e_remove_dir() removes it (E2E_KEEP=1 keeps it) and frees the string. */
char *e2e_make_dir(void);
void e2e_remove_dir(char *dir);

/* A loopback TCP port that was free a moment ago (a server may still lose it in a race: retry
 * when its bind fails). */
int e2e_free_port(void);

/* Does a connect() to the unix socket at path succeed? */
bool e2e_unix_socket_answers(const char *path);

/* Starts argv[0] (a path; argv NULL-terminated) in a process group of its own, standard input
 * from /dev/null, standard output and error appended to log_path, and registers the group with
 * the guardian. env: NULL-terminated changes to our environment, "NAME=value" to set and
 * "NAME" to remove a variable (NULL: none). Returns its pid (= its process group); aborts the
 * test when it cannot be started. */
pid_t e2e_spawn(char *const argv[], const char *const env[], const char *log_path);

/* Waits up to timeout_ms for pid (a child of ours) to exit and reaps it; false when it is still
 * running. *status (may be NULL) gets the wait status, -1 when pid was not our child. */
bool e2e_reap(pid_t pid, int timeout_ms, int *status);

/* Is any process (not a zombie) left in the process group pgid? */
bool e2e_group_alive(pid_t pgid);

/* Stops what e2e_spawn() started: sig (SIGTERM, SIGQUIT...) to pid, waits up to grace_ms for it
 * and for every other process of its group to exit; SIGKILL for whatever is left then. Returns
 * true when everything had exited by itself in time. *status (may be NULL): pid's wait status,
 * -1 when unknown. */
bool e2e_stop_spawned(pid_t pid, int sig, int grace_ms, int *status);

/* The live (not zombie) children of parent, ascending, at most max. Returns how many. */
int e2e_children(pid_t parent, pid_t *out, int max);

/* ----------------------------------------------------------------------------- PostgreSQL */

/* Stops / starts the throwaway cluster of tests/pg.sh (sh $OVERSYNCD_TEST_PGSH stop|start DIR).
 * e2e_pg_start() returns once the cluster accepts connections. A cluster left stopped is started
 * again by the guardian when the test process ends, and by the next e2e_start(). */
void e2e_pg_stop(void);
void e2e_pg_start(void);

/* Runs sql with psql (-X -A -t -q, ON_ERROR_STOP) against the cluster of tests/pg.sh (PGHOST...
 * of the environment). Returns its standard output without the trailing newline (malloc'd), or
 * NULL when psql failed (its error went to stderr). */
char *e2e_psql(const char *sql);

/* The business tables that lighttpd-example/oversyncd.conf registers with the generic
 * materializer: sql/examples/business.sql, run with psql (idempotent). e2e_start() and
 * e2e_prepare() call it, since oversyncd refuses to start when a generic table is missing. */
void e2e_business_tables(void);

/* To catch a worker in the middle of a request: takes the upload lock of user (the advisory
 * lock every upload of that user takes first) in a psql process that holds it for seconds, and
 * returns once it is held. The psql process is started with e2e_spawn() (output to log_path):
 * stop it with e2e_stop_spawned() to release the lock early. */
pid_t e2e_hold_upload_lock(const char *user, int seconds, const char *log_path);

/* Waits up to timeout_ms until some upload waits for an upload lock; false when none does. */
bool e2e_wait_upload_waiting(int timeout_ms);

/* ------------------------------------------------------------------------------------ HTTP */

#define E2E_MAX_HEADERS 64

struct e2e_header_field {
    const char *name;
    const char *value;
};

struct e2e_response {
    long status;                /* HTTP status; -1 when no answer arrived (see error) */
    char *body;                 /* always NUL-terminated, never NULL after a request */
    size_t body_len;
    char *headers;              /* raw header block of the final answer */
    int n_headers;
    struct e2e_header_field header[E2E_MAX_HEADERS];
    char error[256];            /* libcurl's message when status is -1 */
    char *store_;               /* private */
};

/* method path (with query string) through lighttpd. token: NULL for no Authorization header,
 * otherwise sent as "Authorization: Bearer <token>". body: NULL for none, else sent with
 * Content-Type: application/json. Returns resp->status. resp must be freed with
 * e2e_response_free(), whatever the outcome. */
long e2e_request(const struct e2e_stack *s, const char *method, const char *path, const char *token,
                 const char *body, struct e2e_response *resp);

/* Same with full control: headers is a NULL-terminated list of "Name: value" lines (NULL for
 * none; "Name:" removes a header libcurl would add); body of body_len bytes (NULL for none) is
 * sent as is, with Content-Type: application/json unless headers set one. With a
 * "Transfer-Encoding: chunked" header the body is sent in chunks, without Content-Length. */
long e2e_request_ex(const struct e2e_stack *s, const char *method, const char *path,
                    const char *const *headers, const char *body, size_t body_len,
                    struct e2e_response *resp);

/* e2e_request_ex() to any HTTP server on 127.0.0.1:port (not a stack). */
long e2e_request_port(int port, const char *method, const char *path, const char *const *headers,
                      const char *body, size_t body_len, struct e2e_response *resp);

/* A GET/HEAD/DELETE... without body or headers from another local source address, e.g.
 * "127.0.0.2" (any 127.x.y.z reaches the loopback listener): to see what lighttpd does for a
 * client that is not 127.0.0.1. */
long e2e_request_from(const struct e2e_stack *s, const char *source_ip, const char *method,
                      const char *path, struct e2e_response *resp);

/* e2e_request_from() to any HTTP server on 127.0.0.1:port. */
long e2e_request_port_from(int port, const char *source_ip, const char *method, const char *path,
                           struct e2e_response *resp);

void e2e_response_free(struct e2e_response *resp);

/* The value of a response header (case-insensitive name; the last one when repeated), or NULL.
 * Valid until e2e_response_free(). */
const char *e2e_header(const struct e2e_response *resp, const char *name);

/* Does the body contain fragment? (oversyncd writes compact JSON, so exact fragments such as
 * "\"error\":\"not_found\"" are reliable.) */
bool e2e_body_has(const struct e2e_response *resp, const char *fragment);

/* Repeats the request (every 50 ms) until it answers want_status with a body containing
 * want_fragment (NULL: any body), or timeout_ms passes. The last answer is left in *last, which
 * the caller frees. Returns true when the wanted answer came. */
bool e2e_wait_answer(const struct e2e_stack *s, const char *method, const char *path,
                     const char *token, long want_status, const char *want_fragment,
                     int timeout_ms, struct e2e_response *last);

/* The value of a Prometheus sample in text: series is the metric name with its labels exactly
 * as oversyncd writes them, e.g. "oversyncd_worker_restarts_total" or
 * "oversyncd_http_requests_total{route=\"/health\",status=\"200\"}". -1 when absent. */
double e2e_metric(const char *text, const char *series);

/* GET /metrics and e2e_metric() on it; -1 when absent or /metrics did not answer 200. */
double e2e_fetch_metric(const struct e2e_stack *s, const char *series);

/* Polls e2e_fetch_metric() (every 20 ms) until the sample is at least want, or timeout_ms
 * passes: a worker counts a request just after answering it. Returns whether it got there. */
bool e2e_wait_metric(const struct e2e_stack *s, const char *series, double want, int timeout_ms);

/* -------------------------------------------------------------------------------- tokens */

/* The HMAC secret the stacks use (JWT_SECRET, exported with a default by the first call). */
const char *e2e_jwt_secret(void);

/* A token from "oversyncd token -c CONF --user U --device D [--ttl TTL]" (ttl NULL = the
 * command's default, 1h). malloc'd; aborts the test when the command fails. */
char *e2e_token(const struct e2e_stack *s, const char *user, const char *device, const char *ttl);

/* The same with any configuration file (oversyncd token -c conf_path ...). */
char *e2e_token_conf(const char *conf_path, const char *user, const char *device, const char *ttl);

/* An HS256 token over any header and payload JSON, signed with secret (computed here; no
 * OpenSSL needed): for hostile tokens (wrong types, missing claims, alg tricks, expired).
 * header_json NULL = {"alg":"HS256","typ":"JWT"}. malloc'd. */
char *e2e_jwt_hs256(const char *secret, const char *header_json, const char *payload_json);

/* Base64url without padding. malloc'd. */
char *e2e_base64url(const void *data, size_t len);

/* A copy of token with one character of the signature changed (so it no longer verifies). */
char *e2e_tamper_signature(const char *token);

/* HMAC-SHA-256 (RFC 2104 over FIPS 180-4), exposed for the harness's own test. */
void e2e_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                     unsigned char out[32]);

/* --------------------------------------------------------------------------------- misc */

long e2e_now_ms(void);                /* monotonic */
void e2e_sleep_ms(long ms);
bool e2e_pid_alive(pid_t pid);        /* exists and is not a zombie */
/* Waits up to timeout_ms until none of the n pids is alive. */
bool e2e_wait_pids_gone(const pid_t *pids, int n, int timeout_ms);
char *e2e_read_file(const char *path); /* malloc'd, NULL when unreadable */

/* Assertions with a useful message (status, body) on failure. */
#define e2e_assert_status(resp, want)                                                         \
    ck_assert_msg((resp)->status == (long)(want), "expected HTTP %ld, got %ld (%s); body: %.400s", \
                  (long)(want), (resp)->status, (resp)->error, (resp)->body ? (resp)->body : "")
#define e2e_assert_body_has(resp, fragment)                                                   \
    ck_assert_msg(e2e_body_has((resp), (fragment)), "body lacks %s; HTTP %ld, body: %.400s",   \
                  (fragment), (resp)->status, (resp)->body ? (resp)->body : "")
#define e2e_assert_header(resp, name, want)                                                   \
    do {                                                                                      \
        const char *e2e_h_ = e2e_header((resp), (name));                                      \
        ck_assert_msg(e2e_h_ && strcmp(e2e_h_, (want)) == 0, "header %s: expected \"%s\", got %s%s%s", \
                      (name), (want), e2e_h_ ? "\"" : "", e2e_h_ ? e2e_h_ : "(absent)",         \
                      e2e_h_ ? "\"" : "");                                                    \
    } while (0)

#endif
