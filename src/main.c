#include "auth/auth.h"
#include "bundle/migrate.h"
#include "config.h"
#include "db/bootstrap.h"
#include "db/db.h"
#include "log.h"
#include "listener.h"
#include "master.h"
#include "watch_client.h"
#include "materialize/materialize.h"
#include "metrics.h"
#include "sync/sync.h"
#include "worker.h"
#include "xalloc.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: oversyncd [OPTIONS]\n"
            "       oversyncd token --user USER --device DEVICE [--ttl DURATION] [-c FILE]\n"
            "       oversyncd migrate-to-bundle -c NEW.conf [--dry-run]\n"
            "\n"
            "Serves the oversync protocol over FastCGI. With a listen address (option or\n"
            "[server] listen) it binds the socket and supervises its own workers; without one\n"
            "it serves on the listening socket it was given as standard input (spawn-fcgi,\n"
            "Apache mod_fcgid, lighttpd bin-path).\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE    configuration file (default: $OVERSYNCD_CONFIG, else\n"
            "                       " OVERSYNCD_SYSCONFDIR "/oversyncd.conf when it exists)\n"
            "  -l, --listen ADDR    unix:/path/to.sock or host:port (overrides the file)\n"
            "  -w, --workers N      number of worker processes (overrides the file)\n"
            "      --check-config   validate the configuration and the database objects it names\n"
            "      --print-example-config\n"
            "                       print the documented example configuration\n"
            "  -V, --version        print the version\n"
            "  -h, --help           this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop after in-flight requests; SIGHUP reloads the\n"
            "configuration and replaces the workers without dropping requests.\n");
}

static const char *default_config_path(void)
{
    const char *env = getenv("OVERSYNCD_CONFIG");
    if (env && *env)
        return env;
    const char *sys = OVERSYNCD_SYSCONFDIR "/oversyncd.conf";
    return access(sys, R_OK) == 0 ? sys : NULL;
}

/* systemd socket activation (sd_listen_fds(3)): LISTEN_PID names us and LISTEN_FDS counts the
 * sockets passed from fd 3 on; the first one is ours. */
static bool systemd_listen_fd(int *fd)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1)
        return false;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    *fd = 3;
    return true;
}

static int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        { "user", required_argument, NULL, 'u' },   { "device", required_argument, NULL, 'd' },
        { "ttl", required_argument, NULL, 't' },    { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    const char *user = NULL, *device = NULL, *ttl = "1h", *path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "u:d:t:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'u': user = optarg; break;
        case 'd': device = optarg; break;
        case 't': ttl = optarg; break;
        case 'c': path = optarg; break;
        case 'h':
            printf("Usage: oversyncd token --user USER --device DEVICE [--ttl DURATION] [-c FILE]\n"
                   "Prints a token signed with the configured secret (JWT_SECRET or [auth] jwt_secret).\n");
            return 0;
        default: return 2;
        }
    }
    if (!user || !*user || !device || !*device) {
        fprintf(stderr, "oversyncd token: --user and --device are required\n");
        return 2;
    }
    long ttl_ms;
    /* a bare number is seconds here, as a token's lifetime is counted in seconds */
    char ttl_s[64];
    if (strspn(ttl, "0123456789") == strlen(ttl) && strlen(ttl) < 20) {
        snprintf(ttl_s, sizeof ttl_s, "%ss", ttl);
        ttl = ttl_s;
    }
    if (!config_parse_duration_ms(ttl, &ttl_ms) || ttl_ms < 1000) {
        fprintf(stderr, "oversyncd token: --ttl \"%s\" is not a duration of at least 1s\n", ttl);
        return 2;
    }
    struct config cfg;
    char err[512];
    if (!config_load(&cfg, path ? path : default_config_path(), err, sizeof err)) {
        fprintf(stderr, "oversyncd token: %s\n", err);
        return 1;
    }
    char *tok = auth_make_token(&cfg, user, device, ttl_ms / 1000, err, sizeof err);
    config_free(&cfg);
    if (!tok) {
        fprintf(stderr, "oversyncd token: %s\n", err);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

/* oversyncd migrate-to-bundle: an upload-protocol database becomes a bundle-protocol one
 * (bundle/migrate.h, docs/migrating.md). */
static int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "dry-run", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = NULL;
    struct migrate_options mo = { .dry_run = false, .stop_after = getenv(MIGRATE_STOP_ENV) };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:nh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'n': mo.dry_run = true; break;
        case 'h':
            printf("Usage: oversyncd migrate-to-bundle -c NEW.conf [--dry-run]\n"
                   "Turns the upload-protocol database NEW.conf's [database] names into a bundle-protocol one, in\n"
                   "place and resumably; NEW.conf is the bundle-protocol configuration the server runs with\n"
                   "afterwards. --dry-run checks everything and prints what would change, writing nothing.\n"
                   "See docs/migrating.md.\n");
            return 0;
        default: return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "oversyncd migrate-to-bundle: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!path) {
        fprintf(stderr, "oversyncd migrate-to-bundle: -c NEW.conf is required (the bundle-protocol configuration)\n");
        return 2;
    }
    struct config cfg;
    char err[512];
    if (!config_load(&cfg, path, err, sizeof err)) {
        fprintf(stderr, "oversyncd migrate-to-bundle: %s\n", err);
        return 1;
    }
    if (!config_validate(&cfg, err, sizeof err)) {
        fprintf(stderr, "oversyncd migrate-to-bundle: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    PGconn *conn = db_connect_plain(&cfg, err, sizeof err);
    if (!conn) {
        fprintf(stderr, "oversyncd migrate-to-bundle: database: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    int rc = (int)bundle_migrate(conn, &cfg, &mo, stdout, stderr);
    PQfinish(conn);
    config_free(&cfg);
    return rc;
}

/* Beyond syntax: the database is reachable and the registered tables and SQL functions exist. */
static int check_config(const struct config *cfg)
{
    char err[512];
    struct auth_ctx *auth = auth_new(cfg, err, sizeof err);
    if (!auth) {
        fprintf(stderr, "oversyncd: %s\n", err);
        return 1;
    }
    auth_free(auth);
    PGconn *c = db_connect_plain(cfg, err, sizeof err);
    if (!c) {
        fprintf(stderr, "oversyncd: database: %s\n", err);
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < cfg->n_tables; i++) {
        const struct table_conf *t = &cfg->tables[i];
        char name[300];
        snprintf(name, sizeof name, "%s.%s", t->schema, t->name);
        const char *params[1] = { name };
        PGresult *r = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
            fprintf(stderr, "%s:%d: [table %s]: no such table in the database\n",
                    cfg->path ? cfg->path : "-", t->line, name);
            bad++;
        }
        PQclear(r);
        if (t->materializer == MATERIALIZER_SQL) {
            params[0] = t->materializer_arg;
            r = PQexecParams(c,
                             "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                             "WHERE n.nspname || '.' || p.proname = $1",
                             1, NULL, params, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
                fprintf(stderr, "%s:%d: [table %s] materializer: no such function %s\n",
                        cfg->path ? cfg->path : "-", t->line, name, t->materializer_arg);
                bad++;
            }
            PQclear(r);
        }
    }
    if (cfg->protocol == PROTOCOL_BUNDLE) {
        /* The full check (columns, unique indexes, foreign keys, catalog) runs at start-up, which
         * may create the sidecar; here nothing is written, the layout is only looked at. */
        PGresult *r = PQexec(c, "SELECT to_regclass('sync.meta') IS NOT NULL, "
                                "to_regclass('sync.sync_row_meta') IS NOT NULL");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        bool layout = ok && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        bool old = ok && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        PQclear(r);
        PQfinish(c);
        if (old) {
            fprintf(stderr, "oversyncd: the database holds the upload protocol's sidecar (sync.sync_row_meta); "
                            "protocol = bundle cannot serve it: convert it with oversyncd migrate-to-bundle\n");
            bad++;
        }
        if (bad)
            return 1;
        printf("configuration OK (protocol bundle, %d registered table(s); bundle sidecar %s)\n", cfg->n_tables,
               layout ? "present" : "absent, created at start-up");
        return 0;
    }
    if (!materializers_verify(cfg, c, err, sizeof err)) {
        fprintf(stderr, "oversyncd: %s\n", err);
        bad++;
    }
    int version = bootstrap_current_version(c);
    strbuf_t report = STRBUF_INIT;
    if (cfg->n_tables && !sync_fk_migrate(cfg, c, true, &report)) {
        fprintf(stderr, "oversyncd: %s\n", sb_cstr(&report));
        bad++;
    } else if (report.len) {
        printf("foreign keys %s:\n%s", cfg->auto_migrate_fks ? "to migrate at start-up (auto_migrate_fks = true)"
                                                            : "that are not deferrable (auto_migrate_fks = false)",
               report.data);
    }
    sb_free(&report);
    PQfinish(c);
    if (bad)
        return 1;
    printf("configuration OK (%d registered table(s); sidecar schema version %d of %d)\n",
           cfg->n_tables, version < 0 ? 0 : version, n_sidecar_migrations);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "migrate-to-bundle") == 0)
        return cmd_migrate(argc - 1, argv + 1);

    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "workers", required_argument, NULL, 'w' },
        { "check-config", no_argument, NULL, 'C' },
        { "print-example-config", no_argument, NULL, 'E' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct overrides ov = { .config_path = NULL, .listen = NULL, .workers = -1 };
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:w:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': ov.config_path = optarg; break;
        case 'l': ov.listen = optarg; break;
        case 'w': {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || *end || n < 1 || n > 256) {
                fprintf(stderr, "oversyncd: --workers \"%s\" is not a number from 1 to 256\n", optarg);
                return 2;
            }
            ov.workers = (int)n;
            break;
        }
        case 'C': check = true; break;
        case 'E': config_write_example(stdout); return 0;
        case 'V': printf("oversyncd %s\n", PACKAGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "oversyncd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!ov.config_path)
        ov.config_path = default_config_path();

    struct config cfg;
    char err[512];
    if (!load_configuration(&ov, &cfg, err, sizeof err)) {
        fprintf(stderr, "oversyncd: %s\n", err);
        return 1;
    }
    log_setup(cfg.log_level, cfg.log_format);
    if (check) {
        int rc = check_config(&cfg);
        config_free(&cfg);
        return rc;
    }

    struct auth_ctx *auth = auth_new(&cfg, err, sizeof err);
    if (!auth) {
        fprintf(stderr, "oversyncd: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    if (!metrics_init())
        log_warn("shared memory for metrics unavailable; /metrics shows this worker only");
    if (!watch_shared_init())
        log_warn("shared memory for waiting downloads unavailable; a download with wait=S learns of changes only when its wait ends");

    if (geteuid() == 0 && !cfg.user) {
        fprintf(stderr, "oversyncd: refusing to run workers as root: set [server] user (and group) to an "
                        "unprivileged account; the master binds the socket and then workers switch to it\n");
        config_free(&cfg);
        return 1;
    }
    if (!startup_checks(&cfg)) {
        fprintf(stderr, "oversyncd: refusing to start; see the error above\n");
        return 1;
    }

    int listen_fd;
    bool activated = systemd_listen_fd(&listen_fd);
    ov.socket_activated = activated;
    if (activated) {
        log_info("using the socket passed by systemd (fd %d)%s", listen_fd,
                 cfg.listen ? "; [server] listen is ignored" : "");
    } else if (cfg.listen) {
        listen_fd = listen_socket_open(&cfg, err, sizeof err);
        if (listen_fd < 0) {
            fprintf(stderr, "oversyncd: %s\n", err);
            return 1;
        }
    } else if (stdin_is_listen_socket()) {
        listen_fd = 0;
    } else {
        fprintf(stderr, "oversyncd: no listen address: set [server] listen or --listen, or start "
                        "oversyncd with a listening socket as standard input (spawn-fcgi)\n");
        return 2;
    }

    int rc;
    if (listen_fd == 0 && cfg.workers <= 1 && !activated) {
        /* One process serving the inherited socket: the parent (mod_fcgid, lighttpd, spawn-fcgi)
         * manages our life. */
        log_set_role("worker");
        if (!drop_privileges(&cfg, err, sizeof err)) {
            fprintf(stderr, "oversyncd: %s\n", err);
            return 1;
        }
        rc = worker_run(listen_fd, &cfg, auth);
    } else {
        rc = master_run(listen_fd, &ov, &cfg, auth);   /* frees auth, which a reload replaces */
        auth = NULL;
    }
    auth_free(auth);
    config_free(&cfg);
    return rc;
}
