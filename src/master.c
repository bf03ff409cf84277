#include "master.h"
#include "listener.h"
#include "worker.h"
#include "bundle/schema.h"
#include "db/bootstrap.h"
#include "db/db.h"
#include "log.h"
#include "materialize/materialize.h"
#include "metrics.h"
#include "sync/sync.h"
#include "watch.h"
#include "watch_client.h"
#include "xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 256
#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 5000
#define STOP_GRACE_S 30

bool load_configuration(const struct overrides *ov, struct config *cfg, char *err, size_t errlen)
{
    if (!config_load(cfg, ov->config_path, err, errlen))
        return false;
    if (ov->listen) {
        free(cfg->listen);
        cfg->listen = xstrdup(ov->listen);
    }
    if (ov->workers >= 0)
        cfg->workers = ov->workers;
    if (!config_validate(cfg, err, errlen)) {
        config_free(cfg);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------ master */

struct slot {
    pid_t pid;                /* 0 = empty */
    unsigned generation;
    long started_ms;
    int quick_crashes;        /* consecutive crashes within a second of starting */
    long respawn_at_ms;       /* 0 = not waiting */
};

static volatile sig_atomic_t got_chld, got_term, got_hup, got_alrm;

static void on_signal(int sig)
{
    switch (sig) {
    case SIGCHLD: got_chld = 1; break;
    case SIGHUP: got_hup = 1; break;
    case SIGALRM: got_alrm = 1; break;
    default: got_term = 1; break;
    }
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct master {
    int listen_fd;
    const struct overrides *ov;
    struct config *cfg;
    struct auth_ctx *auth;
    unsigned generation;
    int nworkers;
    struct slot slots[MAX_WORKERS];     /* current generation */
    pid_t old[MAX_WORKERS * 4];         /* previous generations still finishing */
    int nold;
    int watch_sock[2];                  /* workers hand connections to [0], the watch process reads [1] */
    bool watch_on;                      /* the configuration wants a watch process (watch_wanted) */
    struct slot watch;                  /* the watch process */
    sigset_t waitmask;
};

static int worker_count(const struct config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers > MAX_WORKERS ? MAX_WORKERS : cfg->workers;
    /* Workers spend most of a request waiting for PostgreSQL: four per CPU keep the database
     * busy (measured in docs/performance.md: one per CPU left uploads ~30% slower). */
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n = n > 0 ? 4 * n : 8;
    return (int)(n > MAX_WORKERS ? MAX_WORKERS : n);
}

static void spawn(struct master *m, struct slot *s)
{
    bool is_watch = s == &m->watch;
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s; retrying", strerror(errno));
        s->respawn_at_ms = now_ms() + RESPAWN_MIN_MS;
        return;
    }
    if (pid == 0) {
        if (is_watch)
            prctl(PR_SET_NAME, "oversyncd-watch");   /* 15 bytes: what ps and /proc/PID/comm show */
        pid_t master = getppid();
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGCHLD, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGALRM, &sa, NULL);
        log_set_role(is_watch ? "watch" : "worker");
        char err[256];
        if (!drop_privileges(m->cfg, err, sizeof err)) {
            log_error("%s", err);
            _exit(2);
        }
        /* after setuid, which clears it; and the master may have died in between */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            _exit(0);
        if (is_watch) {
            close(m->listen_fd);
            _exit(watch_run(m->watch_sock[1], m->cfg));
        }
        watch_client_init(m->watch_on ? m->watch_sock[0] : -1);
        _exit(worker_run(m->listen_fd, m->cfg, m->auth));
    }
    s->pid = pid;
    s->generation = m->generation;
    s->started_ms = now_ms();
    s->respawn_at_ms = 0;
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        bool found = false;
        for (int i = 0; i < m->nold; i++)
            if (m->old[i] == pid) {
                m->old[i] = m->old[--m->nold];
                found = true;
                break;
            }
        if (found)
            continue;
        for (int i = -1; i < m->nworkers; i++) {
            struct slot *s = i < 0 ? &m->watch : &m->slots[i];
            const char *what = i < 0 ? "watch process" : "worker";
            if (s->pid != pid)
                continue;
            s->pid = 0;
            bool planned = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (planned) {
                s->quick_crashes = 0;
                s->respawn_at_ms = now_ms();
                break;
            }
            metrics_worker_restart();
            long lived = now_ms() - s->started_ms;
            s->quick_crashes = lived < 1000 ? s->quick_crashes + 1 : 0;
            long delay = 0;
            if (s->quick_crashes) {
                delay = RESPAWN_MIN_MS << (s->quick_crashes > 6 ? 6 : s->quick_crashes - 1);
                if (delay > RESPAWN_MAX_MS)
                    delay = RESPAWN_MAX_MS;
            }
            if (WIFSIGNALED(status))
                log_warn("%s %d killed by signal %d; restarting in %ld ms", what, (int)pid,
                         WTERMSIG(status), delay);
            else
                log_warn("%s %d exited with status %d; restarting in %ld ms", what, (int)pid,
                         WEXITSTATUS(status), delay);
            s->respawn_at_ms = now_ms() + delay;
            break;
        }
    }
}

static void schedule_respawns(struct master *m)
{
    long now = now_ms(), next = 0;
    for (int i = m->watch_on ? -1 : 0; i < m->nworkers; i++) {
        struct slot *s = i < 0 ? &m->watch : &m->slots[i];
        if (s->pid || !s->respawn_at_ms)
            continue;
        if (s->respawn_at_ms <= now)
            spawn(m, s);
        if (!s->pid && s->respawn_at_ms && (next == 0 || s->respawn_at_ms < next))
            next = s->respawn_at_ms;
    }
    if (next) {
        long wait = next - now;
        if (wait < 1)
            wait = 1;
        struct itimerval it = { { 0, 0 }, { wait / 1000, (wait % 1000) * 1000 } };
        setitimer(ITIMER_REAL, &it, NULL);
    }
}

/* protocol = bundle: the sidecar created or adopted and the registered tables validated before any
 * worker starts; a database that cannot serve the bundle protocol (the upload protocol's sidecar,
 * a table without _sync_scope_id, another registry) stops the start here with the reason. */
static bool bundle_startup_checks(const struct config *cfg, PGconn *c)
{
    char err[1024];
    struct bundle_table *tables = xcalloc((size_t)cfg->n_tables + 1, sizeof *tables);
    for (int i = 0; i < cfg->n_tables; i++)
        tables[i] = (struct bundle_table){ cfg->tables[i].schema, cfg->tables[i].name, cfg->tables[i].sync_key };
    struct bundle_catalog catalog;
    bool ok = bundle_bootstrap(c, tables, cfg->n_tables, &catalog, err, sizeof err);
    free(tables);
    if (!ok) {
        log_error("bundle protocol: %s", err);
        return false;
    }
    log_info("bundle protocol: sidecar %s, %d registered table(s)", catalog.created ? "created" : "adopted",
             catalog.n_tables);
    bundle_catalog_free(&catalog);
    return true;
}

bool startup_checks(const struct config *cfg)
{
    char err[512];
    PGconn *c = db_connect_plain(cfg, err, sizeof err);
    if (!c) {
        log_warn("database not reachable at start-up (workers keep trying): %s", err);
        if (!materializers_verify(cfg, NULL, err, sizeof err)) {
            log_error("%s", err);
            return false;
        }
        return true;
    }
    if (cfg->protocol == PROTOCOL_BUNDLE) {
        bool ok = bundle_startup_checks(cfg, c);
        PQfinish(c);
        return ok;
    }
    int applied = 0;
    if (!bootstrap_sidecar(c, &applied, err, sizeof err))
        log_error("sidecar bootstrap failed: %s", err);
    else if (applied)
        log_info("sidecar schema: applied %d migration(s)", applied);
    if (cfg->auto_migrate_fks && cfg->n_tables) {
        strbuf_t report = STRBUF_INIT;
        sync_fk_migrate(cfg, c, false, &report);
        sb_free(&report);
    }
    bool ok = materializers_verify(cfg, c, err, sizeof err);
    if (!ok)
        log_error("%s", err);
    PQfinish(c);
    return ok;
}

static void reload(struct master *m)
{
    struct config fresh;
    char err[512];
    log_info("SIGHUP: reloading %s", m->ov->config_path ? m->ov->config_path : "(defaults)");
    if (!load_configuration(m->ov, &fresh, err, sizeof err)) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    struct auth_ctx *auth = auth_new(&fresh, err, sizeof err);
    if (!auth) {
        log_error("reload refused, keeping the running configuration: %s", err);
        config_free(&fresh);
        return;
    }
    if (!startup_checks(&fresh)) {
        log_error("reload refused, keeping the running configuration");
        auth_free(auth);
        config_free(&fresh);
        return;
    }
    if (fresh.protocol != m->cfg->protocol) {
        log_error("reload refused, keeping the running configuration: [sync] protocol changed; switching "
                  "protocols needs a restart (and a database of that protocol)");
        auth_free(auth);
        config_free(&fresh);
        return;
    }
    const char *fixed[][3] = {
        { "listen", m->cfg->listen, fresh.listen },
        { "user", m->cfg->user, fresh.user },
        { "group", m->cfg->group, fresh.group },
        { "pid_file", m->cfg->pid_file, fresh.pid_file },
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        const char *a = fixed[i][1], *b = fixed[i][2];
        if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
            log_warn("[server] %s changed; it takes effect only after a restart", fixed[i][0]);
    }
    if (fresh.socket_mode != m->cfg->socket_mode)
        log_warn("[server] socket_mode changed; it takes effect only after a restart");
    free(fresh.listen);
    fresh.listen = m->cfg->listen ? xstrdup(m->cfg->listen) : NULL;

    /* New workers first, then the old ones are asked to finish what they are doing and leave:
     * the socket never stops being served. */
    struct slot previous[MAX_WORKERS];
    int nprevious = m->nworkers;
    memcpy(previous, m->slots, sizeof previous);
    config_free(m->cfg);
    *m->cfg = fresh;
    auth_free(m->auth);
    m->auth = auth;
    log_setup(m->cfg->log_level, m->cfg->log_format);
    m->generation++;
    m->nworkers = worker_count(m->cfg);
    memset(m->slots, 0, sizeof m->slots);
    /* The watch process is replaced like the workers: the new one reads the same socket, the old
     * one ends its streams (the clients reconnect, to the new one) and exits. */
    struct slot old_watch = m->watch;
    m->watch_on = watch_wanted(m->cfg);
    memset(&m->watch, 0, sizeof m->watch);
    if (m->watch_on)
        spawn(m, &m->watch);
    for (int i = 0; i < m->nworkers; i++)
        spawn(m, &m->slots[i]);
    if (old_watch.pid && m->nold < (int)(sizeof m->old / sizeof m->old[0])) {
        kill(old_watch.pid, SIGTERM);
        m->old[m->nold++] = old_watch.pid;
    }
    for (int i = 0; i < nprevious; i++)
        if (previous[i].pid && m->nold < (int)(sizeof m->old / sizeof m->old[0])) {
            kill(previous[i].pid, SIGTERM);
            m->old[m->nold++] = previous[i].pid;
        }
    log_info("reload complete: %d worker(s), generation %u", m->nworkers, m->generation);
}

static void stop_all(struct master *m)
{
    if (m->watch.pid)
        kill(m->watch.pid, SIGTERM);
    for (int i = 0; i < m->nworkers; i++)
        if (m->slots[i].pid)
            kill(m->slots[i].pid, SIGTERM);
    for (int i = 0; i < m->nold; i++)
        kill(m->old[i], SIGTERM);
    long deadline = now_ms() + STOP_GRACE_S * 1000L;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == ECHILD)
            break;
        if (pid > 0)
            continue;
        if (now_ms() > deadline) {
            log_warn("workers still busy after %d s; killing them", STOP_GRACE_S);
            if (m->watch.pid)
                kill(m->watch.pid, SIGKILL);
            for (int i = 0; i < m->nworkers; i++)
                if (m->slots[i].pid)
                    kill(m->slots[i].pid, SIGKILL);
            for (int i = 0; i < m->nold; i++)
                kill(m->old[i], SIGKILL);
            deadline = now_ms() + 5000;
        }
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

static void write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        log_warn("pid_file %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
}

int master_run(int listen_fd, const struct overrides *ov, struct config *cfg, struct auth_ctx *auth)
{
    struct master *m = xcalloc(1, sizeof *m);
    m->listen_fd = listen_fd;
    m->ov = ov;
    m->cfg = cfg;
    m->auth = auth;
    m->generation = 1;

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, &m->waitmask);
    for (int s = 1; s < _NSIG; s++)
        if (sigismember(&block, s) == 1)
            sigdelset(&m->waitmask, s);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < _NSIG; s++)
        if (sigismember(&block, s) == 1)
            sigaction(s, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    log_set_role("master");
    if (cfg->pid_file)
        write_pid_file(cfg->pid_file);

    /* SEQPACKET: each hand-over is one message with its descriptor; made before any fork, so
     * that a respawned watch process reads the same socket the workers write to. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, m->watch_sock) != 0) {
        log_error("socketpair for the watch process: %s", strerror(errno));
        m->watch_sock[0] = m->watch_sock[1] = -1;
    }
    m->watch_on = m->watch_sock[0] >= 0 && watch_wanted(cfg);
    if (m->watch_on)
        spawn(m, &m->watch);
    m->nworkers = worker_count(cfg);
    for (int i = 0; i < m->nworkers; i++)
        spawn(m, &m->slots[i]);
    const char *where = ov->socket_activated ? "the socket passed by systemd"
                        : cfg->listen        ? cfg->listen
                                             : "fd 0";
    log_info("oversyncd %s: serving %s with %d worker(s)", PACKAGE_VERSION, where, m->nworkers);

    while (!got_term) {
        sigsuspend(&m->waitmask);
        if (got_chld) {
            got_chld = 0;
            reap(m);
        }
        if (got_term)
            break;
        if (got_hup) {
            got_hup = 0;
            reload(m);
        }
        got_alrm = 0;
        schedule_respawns(m);
    }

    log_info("shutting down: waiting for in-flight requests");
    stop_all(m);
    if (m->cfg->pid_file)
        unlink(m->cfg->pid_file);
    /* a socket passed by systemd belongs to its .socket unit, whatever [server] listen says */
    if (m->cfg->listen && !m->ov->socket_activated && strncmp(m->cfg->listen, "unix:", 5) == 0)
        unlink(m->cfg->listen + 5);
    log_info("stopped");
    auth_free(m->auth);   /* the caller's, or the one a reload put in its place */
    free(m);
    return 0;
}
