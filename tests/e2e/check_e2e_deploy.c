/* Every supported way to run oversyncd (docs/deployment.md, issue #6), started from the example
 * files AS SHIPPED (only paths, ports and the database address replaced) behind the REAL web
 * server on a free loopback port, and driven through it with the same smoke scenario:
 *
 *   lighttpd bin-path    lighttpd starts 4 single oversyncd processes on its sockets
 *                                                                    examples/lighttpd-bin-path/
 *   nginx + spawn-fcgi   spawn-fcgi hands the socket to oversyncd's own master (workers = 4),
 *                        with the command line of the shipped systemd unit    examples/nginx/
 *   Apache proxy_fcgi    oversyncd's own master on its unix socket
 *                        (lighttpd-example/oversyncd.conf)                     examples/apache/
 *   Apache mod_fcgid     shared-hosting layout: a .htaccess, a .fcgi wrapper, a configuration
 *                        in a home directory; Apache starts and stops oversyncd
 *                                                                         examples/apache-fcgid/
 *
 * The smoke scenario: Authorization reaches oversyncd (no token: oversyncd's JSON 401, a token:
 * 200) -> upload a parent (business.users) and then a child (business.posts with author_id,
 * sent chunked, without Content-Length) ->
 * a second device downloads both -> a stale version is a conflict -> a 1.2 MB batch passes the
 * web server's body limit -> /ready and /metrics answer 200, and /metrics is refused to another
 * client address by the web server's own rule. Each mode then checks what is particular to it
 * (who started which process as which user, a killed process or worker started again, a large
 * chunked body streamed without CONTENT_LENGTH, idle processes stopped cleanly) and that
 * nothing is left running after the web server (and oversyncd) stopped.
 *
 * A mode whose web server (or module) is not installed prints "skipped: ... not installed" to
 * stderr and passes. Binaries: LIGHTTPD, NGINX, SPAWN_FCGI, APACHE2 name them explicitly;
 * APACHE_MODULES_DIR the directory of Apache's modules (default /usr/lib/apache2/modules).
 * When run as root the web servers (and oversyncd) run as www-data, as the examples say. */
#include "e2e.h"
#include "../run_suites.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 15000
#define STOP_GRACE_MS 10000
#define SHIPPED_WORKERS 4          /* [server] workers of the examples that use oversyncd's master */
#define BIN_PATH_PROCS 4           /* "max-procs" of examples/lighttpd-bin-path/lighttpd.conf */
#define BIG_CHANGES 4              /* the large batch: 4 rows of 300 kB, 1.2 MB in all */
#define BIG_NAME_BYTES (300 * 1000)

/* ------------------------------------------------------------------------------ one setup */

struct deploy {
    const char *mode;             /* for messages and user names */
    long started_ms;
    char *dir;                    /* the temporary directory */
    int port;                     /* the web server's */
    char *conf;                   /* the oversyncd.conf in use (for tokens) */
    bool chunked_big;             /* send the large batch chunked too (the child always is) */
    pid_t web;                    /* the web server, 0 once stopped */
    pid_t app;                    /* oversyncd when started apart from the web server, else 0 */
    int nlogs;
    char *log_title[8];
    char *log_path[8];
};

static void add_log(struct deploy *d, const char *title, const char *path)
{
    ck_assert(d->nlogs < 8);
    d->log_title[d->nlogs] = e2e_strf("%s", title);
    d->log_path[d->nlogs] = e2e_strf("%s", path);
    d->nlogs++;
}

static void dump_logs(const struct deploy *d)
{
    for (int i = 0; i < d->nlogs; i++)
        e2e_dump_file(d->log_title[i], d->log_path[i]);
}

/* Stops whatever still runs, removes the directory, frees d's strings. */
static void deploy_cleanup(struct deploy *d)
{
    fprintf(stderr, "%s: passed in %.1f s\n", d->mode, (double)(e2e_now_ms() - d->started_ms) / 1000);
    if (d->web > 0)
        e2e_stop_spawned(d->web, SIGTERM, STOP_GRACE_MS, NULL);
    if (d->app > 0)
        e2e_stop_spawned(d->app, SIGTERM, STOP_GRACE_MS, NULL);
    d->web = d->app = 0;
    if (getenv("E2E_VERBOSE") && strcmp(getenv("E2E_VERBOSE"), "0") != 0)
        dump_logs(d);
    e2e_remove_dir(d->dir);
    d->dir = NULL;
    free(d->conf);
    for (int i = 0; i < d->nlogs; i++) {
        free(d->log_title[i]);
        free(d->log_path[i]);
    }
    d->nlogs = 0;
}

/* An assertion that prints the logs of the setup first. */
#define d_assert(d, cond, ...)                                                                \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s: ", (d)->mode);                                               \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            dump_logs(d);                                                                     \
            ck_abort_msg(__VA_ARGS__);                                                        \
        }                                                                                     \
    } while (0)

#define d_status(d, r, want, what)                                                            \
    d_assert((d), (r)->status == (want), "%s: expected HTTP %d, got %ld (%s); body: %.400s",  \
             (what), (want), (r)->status, (r)->error, (r)->body)

#define d_body_has(d, r, fragment, what)                                                      \
    d_assert((d), e2e_body_has((r), (fragment)), "%s: body lacks %s; HTTP %ld, body: %.400s", \
             (what), (fragment), (r)->status, (r)->body)

/* ---------------------------------------------------------------------------------- files */

static bool running_as_root(void)
{
    return geteuid() == 0;
}

/* The account the web servers switch to when started as root; NULL when not root. */
static struct passwd *www_data(void)
{
    if (!running_as_root())
        return NULL;
    struct passwd *pw = getpwnam("www-data");
    ck_assert_msg(pw != NULL, "running as root, but there is no www-data account");
    return pw;
}

/* text with from replaced by to; the shipped file must contain from (else it changed and this
 * test would silently use the shipped value). Frees text. */
static char *subst(char *text, const char *file, const char *from, const char *to)
{
    ck_assert_msg(strstr(text, from) != NULL,
                  "%s no longer contains \"%s\", which the test replaces: update the test", file, from);
    char *out = e2e_replace(text, from, to);
    free(text);
    return out;
}

/* Replaces the whole line that starts with prefix ("url = ") by line. Frees text. */
static char *subst_line(char *text, const char *file, const char *prefix, const char *line)
{
    char *start = text;
    while (start && strncmp(start, prefix, strlen(prefix)) != 0) {
        start = strchr(start, '\n');
        if (start)
            start++;
    }
    ck_assert_msg(start != NULL, "%s has no line starting with \"%s\", which the test replaces", file, prefix);
    size_t len = strcspn(start, "\n");
    char *out = e2e_strf("%.*s%s%s", (int)(start - text), text, line, start + len);
    free(text);
    return out;
}

static void put_file(const char *path, const char *text, mode_t mode, const struct passwd *owner)
{
    ck_assert_msg(e2e_write_file(path, text), "cannot write %s: %s", path, strerror(errno));
    ck_assert_msg(chmod(path, mode) == 0, "chmod %s: %s", path, strerror(errno));
    if (owner)
        ck_assert_msg(chown(path, owner->pw_uid, owner->pw_gid) == 0, "chown %s: %s", path, strerror(errno));
}

static char *make_subdir(const char *dir, const char *name, mode_t mode, const struct passwd *owner)
{
    char *path = e2e_strf("%s/%s", dir, name);
    ck_assert_msg(mkdir(path, mode) == 0 || errno == EEXIST, "mkdir %s: %s", path, strerror(errno));
    chmod(path, mode);
    if (owner)
        ck_assert_msg(chown(path, owner->pw_uid, owner->pw_gid) == 0, "chown %s: %s", path, strerror(errno));
    return path;
}

/* The built binary, copied into the test's own directory: the web servers run it as www-data,
 * which may not be able to reach the build tree (a checkout under a 0700 directory). */
static char *oversyncd_bin(const struct deploy *d)
{
    char *built = e2e_strf("%s/oversyncd", e2e_top_builddir());
    ck_assert_msg(access(built, X_OK) == 0, "%s is not built", built);
    char *dir = e2e_strf("%s/bin", d->dir), *bin = e2e_strf("%s/oversyncd", dir);
    if (access(bin, X_OK) == 0)
        return bin;
    ck_assert_msg(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    chmod(dir, 0755);
    int in = open(built, O_RDONLY), out = open(bin, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    ck_assert_msg(in >= 0 && out >= 0, "copying %s to %s: %s", built, bin, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        ck_assert_msg(write(out, buf, (size_t)n) == n, "copying %s: %s", built, strerror(errno));
    close(in);
    close(out);
    chmod(bin, 0755);
    return bin;
}

/* The secret file the examples name, with the secret the tokens are signed with. */
static void put_secret(const char *path, const struct passwd *owner, mode_t mode)
{
    char *text = e2e_strf("%s\n", e2e_jwt_secret());
    put_file(path, text, mode, owner);
    free(text);
}

/* The real user id of a process, -1 when unknown. */
static long proc_uid(pid_t pid)
{
    char *path = e2e_strf("/proc/%d/status", (int)pid);
    char *text = e2e_read_file(path);
    free(path);
    long uid = -1;
    const char *line = text ? strstr(text, "\nUid:") : NULL;
    if (line)
        uid = strtol(line + 5, NULL, 10);
    free(text);
    return uid;
}

static char *proc_cmdline(pid_t pid)
{
    char *path = e2e_strf("/proc/%d/cmdline", (int)pid);
    char *text = e2e_read_file(path);
    free(path);
    return text ? text : e2e_strf("%s", "");
}

static void skip(const char *mode, const char *what)
{
    fprintf(stderr, "%s: skipped: %s not installed\n", mode, what);
}

static const char *apache_modules_dir(void)
{
    const char *env = getenv("APACHE_MODULES_DIR");
    return env && *env ? env : "/usr/lib/apache2/modules";
}

static char *find_apache(void)
{
    char *bin = e2e_find_program("APACHE2", "apache2");
    return bin ? bin : e2e_find_program(NULL, "httpd");
}

/* Are these modules (NULL-terminated names) in apache_modules_dir()? The first missing one is
 * put in *missing. */
static bool have_apache_modules(const char *const *names, char **missing)
{
    for (const char *const *n = names; *n; n++) {
        char *path = e2e_strf("%s/mod_%s.so", apache_modules_dir(), *n);
        bool ok = access(path, R_OK) == 0;
        if (!ok) {
            *missing = path;
            return false;
        }
        free(path);
    }
    return true;
}

/* The LoadModule lines of an httpd.conf for these modules. */
static char *apache_load_modules(const char *const *names)
{
    char *out = e2e_strf("%s", "");
    for (const char *const *n = names; *n; n++) {
        char *next = e2e_strf("%sLoadModule %s_module %s/mod_%s.so\n", out, *n, apache_modules_dir(), *n);
        free(out);
        out = next;
    }
    return out;
}

/* The start of a generated httpd.conf: what Debian's apache2.conf would provide, in d->dir. */
static char *apache_base_conf(const struct deploy *d, const char *const *modules, const char *log_level)
{
    char *load = apache_load_modules(modules);
    char *conf = e2e_strf(
        "# Generated by tests/e2e/check_e2e_deploy.c\n"
        "ServerRoot %s\n"
        "Listen 127.0.0.1:%d\n"
        "ServerName localhost\n"
        "PidFile %s/run/httpd.pid\n"
        "DefaultRuntimeDir %s/run\n"
        "ErrorLog %s/log/error.log\n"
        "LogLevel %s\n"
        "%s"
        "LogFormat \"%%h %%l %%u %%t \\\"%%r\\\" %%>s %%O \\\"%%{Referer}i\\\" \\\"%%{User-Agent}i\\\"\" combined\n"
        "%s"
        "<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n",
        d->dir, d->port, d->dir, d->dir, d->dir, log_level, load,
        running_as_root() ? "User www-data\nGroup www-data\n" : "");
    free(load);
    return conf;
}

/* ----------------------------------------------------------------------------- starting */

/* Has the server said that its port was taken? */
static bool port_taken(const struct deploy *d)
{
    for (int i = 0; i < d->nlogs; i++)
        if (e2e_file_has(d->log_path[i], "Address already in use") ||
            e2e_file_has(d->log_path[i], "could not bind"))
            return true;
    return false;
}

/* Waits until GET /health answers oversyncd's 200 {"status":"healthy",...} through the web server.
 * Returns 1 then, 0 when the time ran out, -1 when the web server exited (reaped). */
static int wait_health(struct deploy *d, long deadline)
{
    for (;;) {
        struct e2e_response r;
        e2e_request_port(d->port, "GET", "/health", NULL, NULL, 0, &r);
        bool ok = r.status == 200 && e2e_body_has(&r, "{\"status\":\"healthy\",\"service\":\"oversyncd\"}") && e2e_header(&r, "X-Request-Id");
        e2e_response_free(&r);
        if (ok)
            return 1;
        int st;
        if (e2e_reap(d->web, 0, &st)) {
            e2e_stop_spawned(d->web, SIGTERM, 1000, NULL);   /* what it may have left */
            d->web = 0;
            return -1;
        }
        if (e2e_now_ms() >= deadline)
            return 0;
        e2e_sleep_ms(50);
    }
}

typedef void (*write_web_conf_fn)(struct deploy *d);

static void empty_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
}

/* Picks a free port, writes the web server's configuration for it, starts argv (with the
 * environment changes env, see e2e_spawn) and waits for /health through it; a port lost to
 * another process is retried with another one. */
static void start_web(struct deploy *d, const char *name, write_web_conf_fn write_conf, char *const argv[],
                      const char *const env[], const char *out_log)
{
    long deadline = e2e_now_ms() + START_TIMEOUT_MS;
    for (int attempt = 0;; attempt++) {
        d->port = e2e_free_port();
        d_assert(d, d->port > 0, "no free loopback port");
        write_conf(d);
        d->web = e2e_spawn(argv, env, out_log);
        int w = wait_health(d, deadline);
        if (w == 1)
            return;
        if (w < 0 && attempt < 5 && port_taken(d)) {
            fprintf(stderr, "%s: port %d was taken; trying another one\n", d->mode, d->port);
            for (int i = 0; i < d->nlogs; i++)
                empty_file(d->log_path[i]);
            continue;
        }
        d_assert(d, false, "%s %s", name,
                 w < 0 ? "exited during start-up" : "started, but GET /health did not answer 200 through it in time");
    }
}

/* ------------------------------------------------------------------------------ the smoke */

static long request(struct deploy *d, const char *method, const char *path, const char *token,
                    const char *body, bool chunked, struct e2e_response *r)
{
    char *auth = token ? e2e_strf("Authorization: Bearer %s", token) : NULL;
    const char *headers[3];
    int n = 0;
    if (auth)
        headers[n++] = auth;
    if (chunked && body)
        headers[n++] = "Transfer-Encoding: chunked";
    headers[n] = NULL;
    long st = e2e_request_port(d->port, method, path, headers, body, body ? strlen(body) : 0, r);
    free(auth);
    return st;
}

/* One change; payload is a JSON object or NULL. */
static char *change(int scid, const char *table, const char *op, const char *pk, int sv, const char *payload)
{
    return e2e_strf("{\"source_change_id\":%d,\"schema\":\"business\",\"table\":\"%s\",\"op\":\"%s\","
                    "\"pk\":\"%s\",\"server_version\":%d,\"payload\":%s}",
                    scid, table, op, pk, sv, payload ? payload : "null");
}

static char *batch1(char *change_json)
{
    char *b = e2e_strf("{\"last_server_seq_seen\":0,\"changes\":[%s]}", change_json);
    free(change_json);
    return b;
}

static const char *position(const char *body, const char *needle)
{
    const char *p = strstr(body, needle);
    return p ? p : body + strlen(body);
}

/* The scenario every mode must pass. */
static void smoke(struct deploy *d)
{
    unsigned tag = ((unsigned)getpid() * 2654435761u) ^ (unsigned)time(NULL);
    char user[96], pk_user[40], pk_post[40];
    snprintf(user, sizeof user, "deploy-%s-%08x", d->mode, tag);
    snprintf(pk_user, sizeof pk_user, "%08x-0000-4000-8000-000000000001", tag);
    snprintf(pk_post, sizeof pk_post, "%08x-0000-4000-8000-000000000002", tag);
    char *phone = e2e_token_conf(d->conf, user, "phone", NULL);
    char *laptop = e2e_token_conf(d->conf, user, "laptop", NULL);
    struct e2e_response r;

    /* Authorization reaches oversyncd: without a token its own JSON 401, with one 200. */
    request(d, "GET", "/sync/schema-version", NULL, NULL, false, &r);
    d_status(d, &r, 401, "GET /sync/schema-version without a token");
    d_body_has(d, &r, "{\"error\":\"unauthorized\",\"message\":\"missing Authorization header\"}",
               "GET /sync/schema-version without a token");
    const char *type = e2e_header(&r, "Content-Type");
    d_assert(d, type && strcmp(type, "application/json") == 0 && e2e_header(&r, "X-Request-Id"),
             "the 401 is not oversyncd's: Content-Type %s, X-Request-Id %s", type ? type : "(absent)",
             e2e_header(&r, "X-Request-Id") ? e2e_header(&r, "X-Request-Id") : "(absent)");
    e2e_response_free(&r);
    request(d, "GET", "/sync/schema-version", phone, NULL, false, &r);
    d_status(d, &r, 200, "GET /sync/schema-version with a token (is Authorization passed on?)");
    d_assert(d, strcmp(r.body, "{\"schema_version\":1}") == 0, "schema-version: %s", r.body);
    e2e_response_free(&r);

    /* A parent, then a child that names it. */
    char *payload = e2e_strf("{\"id\":\"%s\",\"name\":\"Ada\",\"email\":\"ada@example.com\"}", pk_user);
    char *body = batch1(change(1, "users", "INSERT", pk_user, 0, payload));
    free(payload);
    request(d, "POST", "/sync/upload", phone, body, false, &r);
    free(body);
    d_status(d, &r, 200, "upload of the parent");
    d_body_has(d, &r, "\"statuses\":[{\"source_change_id\":1,\"status\":\"applied\",\"new_server_version\":1}]",
               "upload of the parent");
    e2e_response_free(&r);

    payload = e2e_strf("{\"id\":\"%s\",\"title\":\"Hello\",\"content\":\"first post\",\"author_id\":\"%s\"}",
                       pk_post, pk_user);
    body = batch1(change(2, "posts", "INSERT", pk_post, 0, payload));
    free(payload);
    request(d, "POST", "/sync/upload", phone, body, true, &r);   /* chunked: no Content-Length */
    free(body);
    d_status(d, &r, 200, "upload of the child");
    d_body_has(d, &r, "\"statuses\":[{\"source_change_id\":2,\"status\":\"applied\",\"new_server_version\":1}]",
               "upload of the child");
    e2e_response_free(&r);

    /* The second device sees both, parent first. */
    request(d, "GET", "/sync/download?after=0&limit=100", laptop, NULL, false, &r);
    d_status(d, &r, 200, "download from the second device");
    char *want_user = e2e_strf("\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"%s\"", pk_user);
    char *want_post = e2e_strf("\"table\":\"posts\",\"op\":\"INSERT\",\"pk\":\"%s\"", pk_post);
    /* (payloads come back as PostgreSQL prints jsonb: "key": "value") */
    char *want_fk = e2e_strf("\"author_id\": \"%s\"", pk_user);
    d_body_has(d, &r, want_user, "download");
    d_body_has(d, &r, want_post, "download");
    d_assert(d, strstr(position(r.body, want_post), want_fk) != NULL, "download: the child lacks %s: %s", want_fk,
             r.body);
    d_body_has(d, &r, "\"source_id\":\"phone\"", "download");
    d_body_has(d, &r, "\"has_more\":false", "download");
    d_assert(d, position(r.body, want_user) < position(r.body, want_post), "download: the child comes first: %s",
             r.body);
    free(want_user);
    free(want_post);
    free(want_fk);
    e2e_response_free(&r);

    /* The second device writes the parent with the version it never had: a conflict. */
    payload = e2e_strf("{\"id\":\"%s\",\"name\":\"Ada L.\"}", pk_user);
    body = batch1(change(1, "users", "UPDATE", pk_user, 0, payload));
    free(payload);
    request(d, "POST", "/sync/upload", laptop, body, false, &r);
    free(body);
    d_status(d, &r, 200, "stale upload");
    d_body_has(d, &r, "\"status\":\"conflict\",\"server_row\":{\"schema_name\":\"business\",\"table_name\":\"users\"",
               "stale upload");
    d_body_has(d, &r, "\"server_version\":1,\"deleted\":false", "stale upload");
    e2e_response_free(&r);

    /* A batch larger than nginx's and mod_fcgid's defaults (1 MB, 128 kB): the shipped limits
     * let it through. */
    size_t cap = BIG_CHANGES * (BIG_NAME_BYTES + 400) + 100, len = 0;
    char *big = malloc(cap);
    ck_assert(big != NULL);
    len += (size_t)snprintf(big + len, cap - len, "{\"last_server_seq_seen\":0,\"changes\":[");
    for (int i = 0; i < BIG_CHANGES; i++) {
        char pk[40];
        snprintf(pk, sizeof pk, "%08x-0000-4000-8000-0000000001%02d", tag, i);
        len += (size_t)snprintf(big + len, cap - len,
                                "%s{\"source_change_id\":%d,\"schema\":\"business\",\"table\":\"users\","
                                "\"op\":\"INSERT\",\"pk\":\"%s\",\"server_version\":0,\"payload\":{\"id\":\"%s\","
                                "\"email\":\"big@example.com\",\"name\":\"",
                                i ? "," : "", 100 + i, pk, pk);
        memset(big + len, 'a' + i, BIG_NAME_BYTES);
        len += BIG_NAME_BYTES;
        len += (size_t)snprintf(big + len, cap - len, "\"}}");
    }
    snprintf(big + len, cap - len, "]}");
    request(d, "POST", "/sync/upload", phone, big, d->chunked_big, &r);
    free(big);
    d_status(d, &r, 200, "upload of a 1.2 MB batch");
    for (int i = 0; i < BIG_CHANGES; i++) {
        char want[96];
        snprintf(want, sizeof want, "{\"source_change_id\":%d,\"status\":\"applied\",\"new_server_version\":1}", 100 + i);
        d_body_has(d, &r, want, "upload of a 1.2 MB batch");
    }
    e2e_response_free(&r);
    /* ... and back: a 1.2 MB answer, which oversyncd writes in records of 64 kB straight to the
     * connection (src/http/fcgi.c), arrives whole through the web server */
    request(d, "GET", "/sync/download?after=0&limit=1000&include_self=true", phone, NULL, false, &r);
    d_status(d, &r, 200, "download of the 1.2 MB batch");
    d_assert(d, r.body_len > (size_t)BIG_CHANGES * BIG_NAME_BYTES, "download of the 1.2 MB batch: %zu bytes",
             r.body_len);
    {
        char *run = malloc(BIG_NAME_BYTES + 3);
        ck_assert(run != NULL);
        for (int i = 0; i < BIG_CHANGES; i++) {
            run[0] = '"';
            memset(run + 1, 'a' + i, BIG_NAME_BYTES);
            memcpy(run + 1 + BIG_NAME_BYTES, "\"", 2);
            d_body_has(d, &r, run, "download of the 1.2 MB batch");
        }
        free(run);
    }
    e2e_response_free(&r);

    /* Readiness and metrics, for the monitoring. */
    request(d, "GET", "/ready", NULL, NULL, false, &r);
    d_status(d, &r, 200, "GET /ready");
    d_assert(d, e2e_header(&r, "X-Request-Id") != NULL, "GET /ready: not oversyncd's answer");
    e2e_response_free(&r);
    request(d, "GET", "/metrics", NULL, NULL, false, &r);
    d_status(d, &r, 200, "GET /metrics");
    type = e2e_header(&r, "Content-Type");
    d_assert(d, type && strncmp(type, "text/plain", 10) == 0, "GET /metrics: Content-Type %s", type ? type : "(absent)");
    d_body_has(d, &r, "# TYPE oversyncd_http_requests_total counter\n", "GET /metrics");
    e2e_response_free(&r);
    /* ... which the web server keeps for 127.0.0.1 (127.0.0.2 is another client on the
     * loopback). */
    e2e_request_port_from(d->port, "127.0.0.2", "GET", "/metrics", &r);
    d_status(d, &r, 403, "GET /metrics from 127.0.0.2");
    d_assert(d, e2e_header(&r, "X-Request-Id") == NULL, "/metrics from 127.0.0.2 reached oversyncd");
    e2e_response_free(&r);

    free(phone);
    free(laptop);
}

/* A worker killed in the middle of a request (docs/operations.md, "When a worker dies"): the web
 * server answers that request itself, with its own HTML page and status (want), never with
 * oversyncd's JSON. find lists the oversyncd processes that may be serving it; all are killed.
 * The user's upload lock is held meanwhile, so that the upload is surely inside one of them. */
struct midreq_call {
    struct deploy *d;
    const char *tok, *body;
    struct e2e_response r;
};

static void *midreq_upload(void *arg)
{
    struct midreq_call *c = arg;
    request(c->d, "POST", "/sync/upload", c->tok, c->body, false, &c->r);
    return NULL;
}

typedef int (*find_procs_fn)(const struct deploy *d, pid_t *out, int max);

static int killed_mid_request(struct deploy *d, const char *server, long want, find_procs_fn find, pid_t *killed,
                              int max_killed)
{
    unsigned tag = ((unsigned)getpid() * 2654435761u) ^ (unsigned)time(NULL);
    char user[96], pk[40];
    snprintf(user, sizeof user, "deploy-%s-midreq-%08x", d->mode, tag);
    snprintf(pk, sizeof pk, "%08x-0000-4000-8000-0000000000c1", tag);
    char *tok = e2e_token_conf(d->conf, user, "phone", NULL);
    char *body = e2e_strf("{\"changes\":[{\"source_change_id\":1,\"schema\":\"business\",\"table\":\"users\","
                          "\"op\":\"INSERT\",\"pk\":\"%s\",\"server_version\":0,"
                          "\"payload\":{\"id\":\"%s\",\"name\":\"Ada\",\"email\":\"ada@example.com\"}}]}", pk, pk);
    char *log = e2e_strf("%s/psql-holder.log", d->dir);
    pid_t holder = e2e_hold_upload_lock(user, 5, log);
    pthread_t th;
    struct midreq_call call = { .d = d, .tok = tok, .body = body };
    d_assert(d, pthread_create(&th, NULL, midreq_upload, &call) == 0, "pthread_create");
    bool waiting = e2e_wait_upload_waiting(5000);
    pid_t procs[64];
    int n = find(d, procs, 64);
    for (int i = 0; i < n && i < 64; i++) {
        kill(procs[i], SIGKILL);
        if (killed && i < max_killed)
            killed[i] = procs[i];
    }
    pthread_join(th, NULL);
    e2e_stop_spawned(holder, SIGTERM, 5000, NULL);
    d_assert(d, waiting, "the upload never waited for the lock");
    d_assert(d, n > 0, "no oversyncd process to kill");
    const char *type = e2e_header(&call.r, "Content-Type");
    d_assert(d, call.r.status == want && type && strncmp(type, "text/html", 9) == 0 &&
                    !e2e_header(&call.r, "X-Request-Id"),
             "a request whose oversyncd process was killed: expected %s's own HTML %ld, got HTTP %ld (%s) %.300s",
             server, want, call.r.status, type ? type : "no Content-Type", call.r.body);
    e2e_response_free(&call.r);
    free(tok), free(body), free(log);
    return n;
}

static int children_of_app(const struct deploy *d, pid_t *out, int max)
{
    return e2e_workers_of(d->app, out, max);
}

static int children_of_web(const struct deploy *d, pid_t *out, int max)
{
    return e2e_children(d->web, out, max);
}

/* Stops the web server: everything it started must be gone within the grace period. */
static void stop_web(struct deploy *d, const char *name, int sig)
{
    int st;
    bool clean = e2e_stop_spawned(d->web, sig, STOP_GRACE_MS, &st);
    d->web = 0;
    d_assert(d, clean, "%s (or a process it started) did not stop by itself within %d ms", name, STOP_GRACE_MS);
}

/* Stops oversyncd started apart from the web server: SIGTERM, exit status 0, nothing left. */
static void stop_app(struct deploy *d, const char *log)
{
    int st;
    bool clean = e2e_stop_spawned(d->app, SIGTERM, STOP_GRACE_MS, &st);
    d->app = 0;
    d_assert(d, clean, "oversyncd (or one of its workers) did not stop by itself within %d ms", STOP_GRACE_MS);
    d_assert(d, st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "oversyncd's master ended with status 0x%x", st);
    d_assert(d, e2e_file_has(log, "shutting down: waiting for in-flight requests") && e2e_file_has(log, "] stopped"),
             "oversyncd did not log its graceful stop");
}

/* ---------------------------------------------------------------- 2. lighttpd bin-path */

static void lighttpd_bin_path_conf(struct deploy *d)
{
    const char *file = "examples/lighttpd-bin-path/lighttpd.conf";
    char *bin = oversyncd_bin(d);
    char *run = e2e_strf("%s/run", d->dir), *log = e2e_strf("%s/log", d->dir), *www = e2e_strf("%s/www", d->dir),
         *etc = e2e_strf("%s/etc", d->dir), *port = e2e_strf("server.port = %d", d->port);
    char *t = e2e_read_shipped(file);
    t = subst(t, file, "/usr/sbin/oversyncd", bin);
    t = subst(t, file, "/etc/oversyncd", etc);
    t = subst(t, file, "/run/lighttpd", run);
    t = subst(t, file, "/var/log/lighttpd", log);
    t = subst(t, file, "/var/www/html", www);
    t = subst(t, file, "server.port = 8080", port);
    char *path = e2e_strf("%s/lighttpd.conf", d->dir);
    put_file(path, t, 0644, NULL);
    free(path), free(t), free(bin), free(run), free(log), free(www), free(etc), free(port);
}

START_TEST(test_lighttpd_bin_path)
{
    char *lighttpd = e2e_find_program("LIGHTTPD", "lighttpd");
    if (!lighttpd) {
        skip("lighttpd bin-path", "lighttpd");
        return;
    }
    e2e_prepare();
    struct passwd *www = www_data();
    struct deploy d = { .started_ms = e2e_now_ms(), .mode = "lighttpd-bin-path" };
    d.dir = e2e_make_dir();
    /* /run/lighttpd and /var/log/lighttpd belong to www-data on Debian: lighttpd creates the
     * socket after switching to it. */
    char *run = make_subdir(d.dir, "run", 0750, www);
    free(make_subdir(d.dir, "log", 0750, www));
    free(make_subdir(d.dir, "www", 0755, NULL));
    char *etc = make_subdir(d.dir, "etc", 0755, NULL);

    /* oversyncd.conf and the secret, readable by www-data (root:www-data 0640 as README.md
     * says); only the database address and the paths are the test's. */
    const char *file = "examples/lighttpd-bin-path/oversyncd.conf";
    char *t = e2e_read_shipped(file);
    ck_assert_msg(!strstr(t, "\nlisten"), "%s must not set listen", file);
    t = subst(t, file, "/etc/oversyncd", etc);
    char *url = e2e_strf("url = %s", getenv("DATABASE_URL"));
    t = subst_line(t, file, "url = ", url);
    d.conf = e2e_strf("%s/oversyncd.conf", etc);
    put_file(d.conf, t, 0640, NULL);
    char *secret = e2e_strf("%s/jwt_secret", etc);
    put_secret(secret, NULL, 0640);
    if (www) {
        ck_assert(chown(d.conf, 0, www->pw_gid) == 0);
        ck_assert(chown(secret, 0, www->pw_gid) == 0);
    }
    free(t), free(url), free(secret);

    char *lconf = e2e_strf("%s/lighttpd.conf", d.dir), *out = e2e_strf("%s/lighttpd.out", d.dir),
         *err = e2e_strf("%s/log/oversyncd-error.log", d.dir);
    add_log(&d, "lighttpd and oversyncd output", out);
    add_log(&d, "lighttpd error log", err);
    /* Only what the files say: no secret or database address from our environment. */
    const char *env[] = { "JWT_SECRET", "DATABASE_URL", "OVERSYNCD_CONFIG", NULL };
    char *argv[] = { lighttpd, "-D", "-f", lconf, NULL };
    start_web(&d, "lighttpd", lighttpd_bin_path_conf, argv, env, out);

    smoke(&d);

    /* lighttpd started "max-procs" single oversyncd processes (as www-data when we are root),
     * each on a socket of its own. */
    pid_t procs[BIN_PATH_PROCS + 4], again[BIN_PATH_PROCS + 4], none[4];
    for (int i = 0; i < BIN_PATH_PROCS; i++) {
        char *sock = e2e_strf("%s/oversyncd.sock-%d", run, i);
        d_assert(&d, e2e_unix_socket_answers(sock), "no socket %s", sock);
        free(sock);
    }
    int n = e2e_children(d.web, procs, BIN_PATH_PROCS + 4);
    d_assert(&d, n == BIN_PATH_PROCS, "lighttpd has %d children, expected %d", n, BIN_PATH_PROCS);
    for (int i = 0; i < n; i++) {
        char *cmd = proc_cmdline(procs[i]);
        d_assert(&d, strstr(cmd, "oversyncd") != NULL, "a child of lighttpd is %s", cmd);
        free(cmd);
        d_assert(&d, e2e_children(procs[i], none, 4) == 0, "oversyncd %d has processes of its own (workers = 1)",
                 (int)procs[i]);
        if (www)
            d_assert(&d, proc_uid(procs[i]) == (long)www->pw_uid, "oversyncd runs as uid %ld", proc_uid(procs[i]));
    }

    /* lighttpd starts a process that died again, and serves on meanwhile. */
    pid_t victim = procs[0];
    kill(victim, SIGKILL);
    bool replaced = false;
    for (long until = e2e_now_ms() + 8000; !replaced && e2e_now_ms() < until;) {
        n = e2e_children(d.web, again, BIN_PATH_PROCS + 4);
        replaced = n == BIN_PATH_PROCS;
        for (int i = 0; replaced && i < n; i++)
            if (again[i] == victim)
                replaced = false;
        if (!replaced)
            e2e_sleep_ms(50);
    }
    d_assert(&d, replaced, "lighttpd did not start the killed oversyncd %d again (%d processes)", (int)victim, n);
    int ok = 0;
    for (long until = e2e_now_ms() + 5000; ok < 2 * BIN_PATH_PROCS && e2e_now_ms() < until;) {
        struct e2e_response r;
        e2e_request_port(d.port, "GET", "/health", NULL, NULL, 0, &r);
        ok = r.status == 200 ? ok + 1 : 0;
        e2e_response_free(&r);
        if (!ok)
            e2e_sleep_ms(50);
    }
    d_assert(&d, ok >= 2 * BIN_PATH_PROCS, "lighttpd does not answer through oversyncd after the kill");

    /* A request whose process is killed gets lighttpd's own HTML 500. */
    killed_mid_request(&d, "lighttpd", 500, children_of_web, NULL, 0);

    /* lighttpd stops its oversyncd processes with itself (SIGTERM); they exit by themselves. */
    stop_web(&d, "lighttpd", SIGTERM);

    free(run), free(etc), free(lconf), free(out), free(err), free(lighttpd);
    deploy_cleanup(&d);
}
END_TEST

/* --------------------------------------------------------------- 3. nginx + spawn-fcgi */

/* The ExecStart= command line of the shipped unit, with the test's paths, split at blanks. */
static char **spawn_fcgi_command(const struct deploy *d, const char *spawn_fcgi, const char *etc)
{
    const char *file = "examples/nginx/oversyncd-spawn-fcgi.service";
    char *t = e2e_read_shipped(file);
    char *line = strstr(t, "\nExecStart=");
    ck_assert_msg(line != NULL, "%s has no ExecStart= line", file);
    line += strlen("\nExecStart=");
    char *cmd = e2e_strf("%.*s", (int)strcspn(line, "\n"), line);
    free(t);
    char *bin = oversyncd_bin(d), *run = e2e_strf("%s/run", d->dir);
    cmd = subst(cmd, file, "/usr/bin/spawn-fcgi", spawn_fcgi);
    cmd = subst(cmd, file, "/run/oversyncd", run);
    cmd = subst(cmd, file, "/usr/sbin/oversyncd", bin);
    cmd = subst(cmd, file, "/etc/oversyncd", etc);
    free(bin), free(run);
    char **argv = calloc(64, sizeof *argv);
    ck_assert(argv != NULL);
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(cmd, " \t", &save); w && n < 62; w = strtok_r(NULL, " \t", &save)) {
        /* -u/-g (switch to www-data) are for root only. */
        if (!running_as_root() && (strcmp(w, "-u") == 0 || strcmp(w, "-g") == 0)) {
            strtok_r(NULL, " \t", &save);
            continue;
        }
        argv[n++] = e2e_strf("%s", w);
    }
    free(cmd);
    return argv;
}

static void nginx_conf(struct deploy *d)
{
    const char *file = "examples/nginx/oversyncd.conf";
    char *run = e2e_strf("%s/run", d->dir), *log = e2e_strf("%s/log", d->dir),
         *listen = e2e_strf("listen 127.0.0.1:%d;", d->port);
    char *t = e2e_read_shipped(file);
    t = subst(t, file, "/run/oversyncd", run);
    t = subst(t, file, "/var/log/nginx", log);
    t = subst(t, file, "listen 80;", listen);
    char *path = e2e_strf("%s/nginx/oversyncd.conf", d->dir);
    put_file(path, t, 0644, NULL);
    free(path), free(t), free(run), free(log), free(listen);

    /* nginx.conf: what Debian's would give, with every path in the temporary directory. */
    char *main_conf = e2e_strf(
        "# Generated by tests/e2e/check_e2e_deploy.c\n"
        "%s"
        "worker_processes 2;\n"
        "pid %s/run/nginx.pid;\n"
        "error_log %s/log/nginx-error.log notice;\n"
        "events {\n    worker_connections 256;\n}\n"
        "http {\n"
        "    default_type application/octet-stream;\n"
        "    access_log %s/log/nginx-access.log;\n"
        "    client_body_temp_path %s/nginx/body;\n"
        "    fastcgi_temp_path %s/nginx/fastcgi;\n"
        "    proxy_temp_path %s/nginx/proxy;\n"
        "    scgi_temp_path %s/nginx/scgi;\n"
        "    uwsgi_temp_path %s/nginx/uwsgi;\n"
        "    include %s/nginx/oversyncd.conf;\n"
        "}\n",
        running_as_root() ? "user www-data;\n" : "", d->dir, d->dir, d->dir, d->dir, d->dir, d->dir, d->dir,
        d->dir, d->dir);
    path = e2e_strf("%s/nginx/nginx.conf", d->dir);
    put_file(path, main_conf, 0644, NULL);
    free(path), free(main_conf);
}

START_TEST(test_nginx_spawn_fcgi)
{
    char *nginx = e2e_find_program("NGINX", "nginx"), *spawn_fcgi = e2e_find_program("SPAWN_FCGI", "spawn-fcgi");
    char *params = e2e_read_file("/etc/nginx/fastcgi_params");
    if (!nginx || !spawn_fcgi || !params) {
        skip("nginx + spawn-fcgi", !nginx ? "nginx" : !spawn_fcgi ? "spawn-fcgi" : "/etc/nginx/fastcgi_params");
        free(nginx), free(spawn_fcgi), free(params);
        return;
    }
    e2e_prepare();
    struct passwd *www = www_data();
    struct deploy d = { .started_ms = e2e_now_ms(), .mode = "nginx-spawn-fcgi" };
    d.dir = e2e_make_dir();
    char *run = make_subdir(d.dir, "run", 0755, NULL);   /* RuntimeDirectory=oversyncd, root 0755 */
    free(make_subdir(d.dir, "log", 0755, NULL));
    char *etc = make_subdir(d.dir, "etc", 0755, NULL);
    char *ndir = make_subdir(d.dir, "nginx", 0755, NULL);
    char *path = e2e_strf("%s/fastcgi_params", ndir);
    put_file(path, params, 0644, NULL);   /* "include fastcgi_params" is relative to nginx.conf */
    free(path), free(params);

    /* oversyncd.conf as shipped: the database and the secret come from the environment
     * (EnvironmentFile= of the unit). Readable by www-data, whom spawn-fcgi switches to. */
    const char *file = "examples/nginx/oversyncd-spawn-fcgi.conf";
    char *t = e2e_read_shipped(file);
    ck_assert_msg(!strstr(t, "\nlisten"), "%s must not set listen", file);
    d.conf = e2e_strf("%s/oversyncd.conf", etc);
    put_file(d.conf, t, 0640, NULL);
    if (www)
        ck_assert(chown(d.conf, 0, www->pw_gid) == 0);
    free(t);

    /* spawn-fcgi, with the command line of the shipped unit. */
    char *olog = e2e_strf("%s/oversyncd.log", d.dir);
    add_log(&d, "spawn-fcgi and oversyncd output", olog);
    char **cmd = spawn_fcgi_command(&d, spawn_fcgi, etc);
    d.app = e2e_spawn(cmd, NULL, olog);
    char *sock = e2e_strf("%s/oversyncd.sock", run);
    pid_t workers[SHIPPED_WORKERS + 4];
    long deadline = e2e_now_ms() + START_TIMEOUT_MS;
    while (!(e2e_unix_socket_answers(sock) && e2e_workers_of(d.app, workers, SHIPPED_WORKERS + 4) == SHIPPED_WORKERS)) {
        int st;
        d_assert(&d, !e2e_reap(d.app, 0, &st), "spawn-fcgi/oversyncd exited during start-up (status 0x%x)", st);
        d_assert(&d, e2e_now_ms() < deadline, "spawn-fcgi/oversyncd did not come up with %d workers on %s in time",
                 SHIPPED_WORKERS, sock);
        e2e_sleep_ms(20);
    }
    /* spawn-fcgi -n execs oversyncd: the process we started is oversyncd's master, switched to
     * www-data, on a socket that belongs to www-data with mode 0660. */
    char *cmdline = proc_cmdline(d.app);
    d_assert(&d, strstr(cmdline, "oversyncd") != NULL, "spawn-fcgi -n did not exec oversyncd: %s", cmdline);
    free(cmdline);
    struct stat st;
    d_assert(&d, stat(sock, &st) == 0 && (st.st_mode & 0777) == 0660, "socket mode %o", (unsigned)(st.st_mode & 0777));
    if (www) {
        d_assert(&d, st.st_uid == www->pw_uid, "the socket belongs to uid %ld", (long)st.st_uid);
        d_assert(&d, proc_uid(d.app) == (long)www->pw_uid, "oversyncd runs as uid %ld", proc_uid(d.app));
    }

    /* nginx */
    char *nconf = e2e_strf("%s/nginx.conf", ndir), *nout = e2e_strf("%s/nginx.out", d.dir),
         *nerr = e2e_strf("%s/log/nginx-error.log", d.dir), *serr = e2e_strf("%s/log/oversyncd-error.log", d.dir);
    add_log(&d, "nginx output", nout);
    add_log(&d, "nginx error log", nerr);
    add_log(&d, "nginx server error log", serr);
    char *prefix = e2e_strf("%s/", ndir);
    char *nargv[] = { nginx, "-p", prefix, "-c", nconf, "-g", "daemon off;", NULL };
    start_web(&d, "nginx", nginx_conf, nargv, NULL, nout);

    smoke(&d);

    /* The reason for workers = 4: a worker that dies is replaced by oversyncd's master (spawn-fcgi
     * alone would not), and the others go on serving meanwhile. */
    int n = e2e_workers_of(d.app, workers, SHIPPED_WORKERS + 4);
    d_assert(&d, n == SHIPPED_WORKERS, "%d workers before the kill", n);
    pid_t victim = workers[0];
    kill(victim, SIGKILL);
    pid_t now[SHIPPED_WORKERS + 4];
    long until = e2e_now_ms() + 5000;
    bool replaced = false;
    while (!replaced && e2e_now_ms() < until) {
        n = e2e_workers_of(d.app, now, SHIPPED_WORKERS + 4);
        replaced = n == SHIPPED_WORKERS;
        for (int i = 0; replaced && i < n; i++)
            if (now[i] == victim)
                replaced = false;
        if (!replaced)
            e2e_sleep_ms(20);
    }
    d_assert(&d, replaced, "the killed worker %d was not replaced (%d workers)", (int)victim, n);
    struct e2e_response r;
    bool counted = false;
    for (long t_end = e2e_now_ms() + 3000; !counted && e2e_now_ms() < t_end;) {
        e2e_request_port(d.port, "GET", "/metrics", NULL, NULL, 0, &r);
        counted = r.status == 200 && e2e_metric(r.body, "oversyncd_worker_restarts_total") == 1;
        e2e_response_free(&r);
        if (!counted)
            e2e_sleep_ms(50);
    }
    d_assert(&d, counted, "oversyncd_worker_restarts_total did not become 1 after the kill");
    e2e_request_port(d.port, "GET", "/health", NULL, NULL, 0, &r);
    d_status(&d, &r, 200, "GET /health after the kill");
    e2e_response_free(&r);

    /* A request whose worker is killed gets nginx's own HTML 502 ("upstream prematurely closed
     * connection while reading response header from upstream"). */
    killed_mid_request(&d, "nginx", 502, children_of_app, NULL, 0);

    stop_web(&d, "nginx", SIGQUIT);   /* nginx's graceful stop */
    stop_app(&d, olog);                /* what systemd does: SIGTERM to the main process */

    for (char **a = cmd; *a; a++)
        free(*a);
    free(cmd);
    free(sock), free(run), free(etc), free(ndir), free(olog), free(nconf), free(nout), free(nerr), free(serr),
        free(prefix), free(nginx), free(spawn_fcgi);
    deploy_cleanup(&d);
}
END_TEST

/* ------------------------------------------------------------- 4. Apache mod_proxy_fcgi */

static const char *const proxy_modules[] = { "mpm_event", "authz_core", "authz_host", "proxy", "proxy_fcgi", NULL };

static void apache_proxy_conf(struct deploy *d)
{
    const char *file = "examples/apache/oversyncd-proxy-fcgi.conf";
    char *run = e2e_strf("%s/run", d->dir), *log = e2e_strf("%s/log", d->dir),
         *vhost = e2e_strf("<VirtualHost *:%d>", d->port);
    char *t = e2e_read_shipped(file);
    t = subst(t, file, "/run/oversyncd", run);
    t = subst(t, file, "/var/log/apache2", log);
    t = subst(t, file, "<VirtualHost *:80>", vhost);
    char *site = e2e_strf("%s/oversyncd-proxy-fcgi.conf", d->dir);
    put_file(site, t, 0644, NULL);
    free(t), free(run), free(log), free(vhost);

    char *base = apache_base_conf(d, proxy_modules, "warn");
    char *conf = e2e_strf("%sInclude %s\n", base, site);
    char *path = e2e_strf("%s/httpd.conf", d->dir);
    put_file(path, conf, 0644, NULL);
    free(base), free(conf), free(path), free(site);
}

START_TEST(test_apache_proxy_fcgi)
{
    char *apache = find_apache(), *missing = NULL;
    if (!apache || !have_apache_modules(proxy_modules, &missing)) {
        skip("Apache mod_proxy_fcgi", apache ? missing : "apache2");
        free(apache), free(missing);
        return;
    }
    e2e_prepare();
    struct deploy d = { .started_ms = e2e_now_ms(), .mode = "apache-proxy-fcgi", .chunked_big = true };
    d.dir = e2e_make_dir();
    char *run = make_subdir(d.dir, "run", 0755, NULL);
    free(make_subdir(d.dir, "log", 0755, NULL));

    /* oversyncd with its own master, configured as for lighttpd (lighttpd-example/). */
    const char *file = "lighttpd-example/oversyncd.conf";
    char *t = e2e_read_shipped(file);
    t = subst(t, file, "/run/oversyncd", run);
    d.conf = e2e_strf("%s/oversyncd.conf", d.dir);
    put_file(d.conf, t, 0600, NULL);
    free(t);
    char *olog = e2e_strf("%s/oversyncd.log", d.dir);
    add_log(&d, "oversyncd", olog);
    char *bin = oversyncd_bin(&d);
    char *oargv[] = { bin, "-c", d.conf, NULL };
    d.app = e2e_spawn(oargv, NULL, olog);
    char *sock = e2e_strf("%s/oversyncd.sock", run);
    for (long deadline = e2e_now_ms() + START_TIMEOUT_MS; !e2e_unix_socket_answers(sock);) {
        int st;
        d_assert(&d, !e2e_reap(d.app, 0, &st), "oversyncd exited during start-up (status 0x%x)", st);
        d_assert(&d, e2e_now_ms() < deadline, "oversyncd's socket %s did not answer in time", sock);
        e2e_sleep_ms(20);
    }

    char *conf = e2e_strf("%s/httpd.conf", d.dir), *aout = e2e_strf("%s/apache.out", d.dir),
         *aerr = e2e_strf("%s/log/error.log", d.dir), *serr = e2e_strf("%s/log/oversyncd-error.log", d.dir);
    add_log(&d, "Apache output", aout);
    add_log(&d, "Apache error log", aerr);
    add_log(&d, "Apache virtual host error log", serr);
    char *aargv[] = { apache, "-f", conf, "-DFOREGROUND", NULL };
    start_web(&d, "Apache", apache_proxy_conf, aargv, NULL, aout);

    /* The 1.2 MB batch chunked too: mod_proxy_fcgi streams it without CONTENT_LENGTH. */
    smoke(&d);

    /* A chunked body over max_body_bytes (16MB) but under LimitRequestBody: mod_proxy_fcgi
     * streams it without CONTENT_LENGTH, and oversyncd refuses it with its own JSON 413. */
    char *tok = e2e_token_conf(d.conf, "deploy-apache-413", "phone", NULL);
    size_t huge_len = 16 * 1024 * 1024 + 300 * 1000;
    char *huge = malloc(huge_len + 1);
    ck_assert(huge != NULL);
    memset(huge, ' ', huge_len);
    memcpy(huge, "{\"changes\":[]", 13);
    huge[huge_len - 1] = '}';
    huge[huge_len] = '\0';
    struct e2e_response r;
    request(&d, "POST", "/sync/upload", tok, huge, true, &r);
    free(huge);
    d_status(&d, &r, 413, "a chunked 16.3 MB body");
    d_body_has(&d, &r, "{\"error\":\"payload_too_large\"", "a chunked 16.3 MB body");
    e2e_response_free(&r);
    free(tok);

    /* A request whose worker is killed gets Apache's own HTML 503 (AH01067 "Failed to read
     * FastCGI header"). */
    killed_mid_request(&d, "Apache mod_proxy_fcgi", 503, children_of_app, NULL, 0);

    stop_web(&d, "Apache", SIGTERM);
    stop_app(&d, olog);

    free(run), free(bin), free(sock), free(conf), free(aout), free(aerr), free(serr), free(olog), free(apache);
    deploy_cleanup(&d);
}
END_TEST

/* ---------------------------------------------------------------- 5. Apache mod_fcgid */

static const char *const fcgid_modules[] = { "mpm_event", "authz_core", "mime", "rewrite", "fcgid", NULL };

static void apache_fcgid_conf(struct deploy *d)
{
    const char *file = "examples/apache-fcgid/apache-server.conf";
    char *home = e2e_strf("%s/home/", d->dir);
    char *t = e2e_read_shipped(file);
    t = subst(t, file, "/home/", home);
    char *server = e2e_strf("%s/apache-server.conf", d->dir);
    put_file(server, t, 0644, NULL);
    free(t), free(home);

    char *base = apache_base_conf(d, fcgid_modules, "warn fcgid:info");
    char *conf = e2e_strf(
        "%s"
        "TypesConfig %s\n"
        "FcgidIPCDir %s/fcgid\n"
        "FcgidProcessTableFile %s/fcgid/shm\n"
        "DocumentRoot %s/home/alice/public_html\n"
        "Include %s\n"
        "# The test's own: idle processes are stopped after 2 s instead of 300 (and none is\n"
        "# kept), and their end is logged within a second or two, so that the test sees\n"
        "# mod_fcgid stop one.\n"
        "FcgidIdleTimeout 2\n"
        "FcgidIdleScanInterval 1\n"
        "FcgidErrorScanInterval 1\n"
        "FcgidZombieScanInterval 1\n"
        "FcgidMinProcessesPerClass 0\n",
        base, access("/etc/mime.types", R_OK) == 0 ? "/etc/mime.types" : "/dev/null", d->dir, d->dir, d->dir,
        server);
    char *path = e2e_strf("%s/httpd.conf", d->dir);
    put_file(path, conf, 0644, NULL);
    free(base), free(conf), free(path), free(server);
}

/* The oversyncd processes mod_fcgid runs (children of its process manager, which is a child of
 * Apache's parent), at most max. */
static int fcgid_processes(pid_t apache, pid_t *out, int max)
{
    pid_t kids[64], grand[64];
    int n = e2e_children(apache, kids, 64), found = 0;
    for (int i = 0; i < n && i < 64; i++) {
        int m = e2e_children(kids[i], grand, 64);
        for (int j = 0; j < m && j < 64; j++) {
            char *cmd = proc_cmdline(grand[j]);
            if (strstr(cmd, "oversyncd")) {
                if (found < max)
                    out[found] = grand[j];
                found++;
            }
            free(cmd);
        }
    }
    return found;
}

static int fcgid_of_web(const struct deploy *d, pid_t *out, int max)
{
    return fcgid_processes(d->web, out, max);
}

START_TEST(test_apache_fcgid)
{
    char *apache = find_apache(), *missing = NULL;
    if (!apache || !have_apache_modules(fcgid_modules, &missing)) {
        skip("Apache mod_fcgid", apache ? missing : "apache2");
        free(apache), free(missing);
        return;
    }
    e2e_prepare();
    struct passwd *www = www_data();
    struct deploy d = { .started_ms = e2e_now_ms(), .mode = "apache-fcgid" };
    d.dir = e2e_make_dir();
    free(make_subdir(d.dir, "run", 0755, NULL));
    free(make_subdir(d.dir, "log", 0755, NULL));
    free(make_subdir(d.dir, "fcgid", 0755, www));   /* mod_fcgid's sockets, made as www-data */

    /* The home directory of "alice": ~/public_html with .htaccess and oversyncd.fcgi,
     * ~/oversyncd = the --prefix of ./configure (the program itself is the one just built). Here
     * Apache runs oversyncd as www-data (no suEXEC), so www-data reads it all. */
    char *home = make_subdir(d.dir, "home", 0755, NULL);
    char *alice = make_subdir(home, "alice", 0755, NULL);
    char *pub = make_subdir(alice, "public_html", 0755, NULL);
    char *prefix = make_subdir(alice, "oversyncd", 0755, NULL);
    char *etc0 = make_subdir(prefix, "etc", 0755, NULL);
    char *etc = make_subdir(etc0, "oversyncd", 0755, NULL);
    char *home_slash = e2e_strf("%s/", home);
    char *bin = oversyncd_bin(&d);

    const char *file = "examples/apache-fcgid/oversyncd.fcgi";
    char *t = e2e_read_shipped(file);
    ck_assert_msg(strncmp(t, "#!/bin/sh\n", 10) == 0, "%s does not start with #!/bin/sh", file);
    t = subst(t, file, "/home/alice/oversyncd/sbin/oversyncd", bin);
    t = subst(t, file, "/home/", home_slash);
    char *wrapper = e2e_strf("%s/oversyncd.fcgi", pub);
    put_file(wrapper, t, 0755, NULL);
    free(t);

    file = "examples/apache-fcgid/.htaccess";
    t = e2e_read_shipped(file);
    char *htaccess = e2e_strf("%s/.htaccess", pub);
    put_file(htaccess, t, 0644, NULL);
    free(t);

    file = "examples/apache-fcgid/oversyncd.conf";
    t = e2e_read_shipped(file);
    ck_assert_msg(!strstr(t, "\nlisten"), "%s must not set listen", file);
    t = subst(t, file, "/home/", home_slash);
    char *url = e2e_strf("url = %s", getenv("DATABASE_URL"));
    t = subst_line(t, file, "url = ", url);
    d.conf = e2e_strf("%s/oversyncd.conf", etc);
    put_file(d.conf, t, 0644, NULL);
    free(t), free(url);
    char *secret = e2e_strf("%s/jwt_secret", etc);
    put_secret(secret, www, 0600);

    char *conf = e2e_strf("%s/httpd.conf", d.dir), *aout = e2e_strf("%s/apache.out", d.dir),
         *aerr = e2e_strf("%s/log/error.log", d.dir);
    add_log(&d, "Apache output", aout);
    add_log(&d, "Apache error log (with oversyncd's)", aerr);
    char *aargv[] = { apache, "-f", conf, "-DFOREGROUND", NULL };
    start_web(&d, "Apache", apache_fcgid_conf, aargv, NULL, aout);

    smoke(&d);

    /* Apache started oversyncd through the wrapper (as www-data when we are root): right after
     * a request its process is there (idle ones go after FcgidIdleTimeout, 2 s here). */
    struct e2e_response r;
    pid_t procs[16];
    request(&d, "GET", "/health", NULL, NULL, false, &r);
    d_status(&d, &r, 200, "GET /health");
    e2e_response_free(&r);
    int n = fcgid_processes(d.web, procs, 16);
    d_assert(&d, n >= 1, "no oversyncd process under mod_fcgid");
    if (www)
        d_assert(&d, proc_uid(procs[0]) == (long)www->pw_uid, "oversyncd runs as uid %ld", proc_uid(procs[0]));

    /* mod_fcgid stops the idle ones with SIGTERM, which they answer by exiting 0. */
    const char *idle_exit = "exit(idle timeout), terminated by calling exit(), return code: 0";
    long deadline = e2e_now_ms() + 15000;
    while (fcgid_processes(d.web, procs, 16) > 0 && e2e_now_ms() < deadline)
        e2e_sleep_ms(100);
    d_assert(&d, fcgid_processes(d.web, procs, 16) == 0, "mod_fcgid did not stop its idle processes");
    deadline = e2e_now_ms() + 8000;   /* logged when mod_fcgid reaps it */
    while (!e2e_file_has(aerr, idle_exit) && e2e_now_ms() < deadline)
        e2e_sleep_ms(50);
    d_assert(&d, e2e_file_has(aerr, idle_exit), "no clean exit of an idle process in Apache's log");

    /* The next request starts a new one. */
    char *tok = e2e_token_conf(d.conf, "deploy-fcgid-again", "phone", NULL);
    request(&d, "GET", "/sync/schema-version", tok, NULL, false, &r);
    d_status(&d, &r, 200, "GET /sync/schema-version after the idle stop");
    e2e_response_free(&r);
    free(tok);

    /* A request whose process is killed gets Apache's own HTML 500 ("End of script output before
     * headers"). mod_fcgid starts a new process for the next request. */
    pid_t killed[64];
    int nkilled = killed_mid_request(&d, "Apache mod_fcgid", 500, fcgid_of_web, killed, 64);
    tok = e2e_token_conf(d.conf, "deploy-fcgid-after-kill", "phone", NULL);
    request(&d, "GET", "/sync/schema-version", tok, NULL, false, &r);
    d_status(&d, &r, 200, "GET /sync/schema-version after the kill");
    e2e_response_free(&r);
    free(tok);

    /* Apache's stop takes the remaining oversyncd processes along. Every process mod_fcgid saw
     * end (idle or at the stop) exited by itself with status 0: never killed by a signal, except
     * those the test killed. */
    stop_web(&d, "Apache", SIGTERM);
    char *log = e2e_read_file(aerr);
    d_assert(&d, log != NULL, "cannot read %s", aerr);
    int ends = 0, clean = 0;
    for (const char *line = log; line && *line;) {
        size_t len = strcspn(line, "\n");
        char *one = e2e_strf("%.*s", (int)len, line);
        bool ours = false;   /* killed above */
        for (int k = 0; k < nkilled && k < 64; k++) {
            char mark[32];
            snprintf(mark, sizeof mark, "(%d) exit(", (int)killed[k]);
            ours |= strstr(one, mark) != NULL;
        }
        if (!ours && strstr(one, "mod_fcgid: process ") && strstr(one, " exit(")) {
            ends++;
            if (strstr(one, "terminated by calling exit(), return code: 0"))
                clean++;
            else
                fprintf(stderr, "apache-fcgid: %s\n", one);
        }
        free(one);
        line += len;
        if (*line)
            line++;
    }
    free(log);
    d_assert(&d, ends >= 2 && clean == ends,
             "%d of the %d ends of oversyncd processes logged by mod_fcgid were not a clean exit(0)", ends - clean,
             ends);

    free(home), free(alice), free(pub), free(prefix), free(etc0), free(etc), free(home_slash), free(bin),
        free(wrapper), free(htaccess), free(secret), free(conf), free(aout), free(aerr), free(apache);
    deploy_cleanup(&d);
}
END_TEST

/* -------------------------------------------------------------------------------- suite */

static Suite *deploy_suite(void)
{
    Suite *s = suite_create("e2e_deploy");
    TCase *tc = tcase_create("modes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lighttpd_bin_path);
    tcase_add_test(tc, test_nginx_spawn_fcgi);
    tcase_add_test(tc, test_apache_proxy_fcgi);
    tcase_add_test(tc, test_apache_fcgid);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(deploy_suite(), NULL);
}
