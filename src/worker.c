#include "app.h"
#include "http/fcgi.h"
#include "log.h"
#include "worker.h"

#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    stop_requested = 1;
}

bool drop_privileges(const struct config *cfg, char *err, size_t errlen)
{
    if (geteuid() != 0 || !cfg->user)
        return true;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        snprintf(err, errlen, "[server] user: no such user \"%s\"", cfg->user);
        return false;
    }
    gid_t gid = pw->pw_gid;
    if (cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            snprintf(err, errlen, "[server] group: no such group \"%s\"", cfg->group);
            return false;
        }
        gid = gr->gr_gid;
    }
    if (initgroups(pw->pw_name, gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "dropping privileges to %s: %s", cfg->user, strerror(errno));
        return false;
    }
    return true;
}

/* The signals that stop a worker (SIGUSR1: Apache's graceful stop). */
static const int stop_signals[] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1 };
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

/* Is one of the stop signals pending (sent, still blocked)? Asked before every accept. */
static bool stop_pending(void)
{
    sigset_t pending;
    if (sigpending(&pending) != 0)
        return false;
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        if (sigismember(&pending, stop_signals[i]) == 1)
            return true;
    return false;
}

int worker_run(int listen_fd, const struct config *cfg, const struct auth_ctx *auth)
{
    /* The stop signals stay blocked except while waiting for a connection (ppoll), so a request
     * in progress is never interrupted and a stop that arrives between requests is never lost. */
    sigset_t stops, waitmask;
    sigemptyset(&stops);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaddset(&stops, stop_signals[i]);
    sigprocmask(SIG_BLOCK, &stops, &waitmask);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigdelset(&waitmask, stop_signals[i]);

    if (FCGX_Init() != 0) {
        log_error("FastCGI library initialisation failed");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    /* Several workers wait on one socket: a non-blocking accept lets the losers of the race go
     * back to waiting instead of blocking inside libfcgi where a stop signal cannot reach them. */
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl >= 0)
        fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);

    struct app app;
    app_init(&app, cfg, auth);
    db_ensure(app.db);   /* connect now so the first request does not pay for it */

    FCGX_Request req;
    if (FCGX_InitRequest(&req, listen_fd, 0) != 0) {
        log_error("FastCGI request initialisation failed");
        app_cleanup(&app);
        return 1;
    }
    struct http_io io;
    fcgi_io_init(&io, &req);

    long served = 0;
    int status = 0;
    log_buffer_requests(true);
    while (!stop_requested) {
        int rc;
        if (req.ipcFd < 0) {
            /* Accept first: under load a connection is usually waiting, and taking it at once
             * saves the poll. A stop that is pending (blocked) leaves the connection in the
             * backlog for a worker that is staying, so after a reload no request meets the old
             * configuration. */
            if (stop_pending())
                break;
            rc = FCGX_Accept_r(&req);
            if (rc == 0)
                goto serve;
            if (rc != -EAGAIN && rc != -EWOULDBLOCK && rc != -EINTR && rc != -ECONNABORTED)
                log_error("accepting a FastCGI connection: %s", rc > -1000 ? strerror(-rc) : "protocol error");
        }
        /* Idle: what the log holds goes out before the wait. */
        log_flush();
        struct pollfd p = { .fd = req.ipcFd >= 0 ? req.ipcFd : listen_fd, .events = POLLIN };
        int r = ppoll(&p, 1, NULL, &waitmask);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            log_error("waiting for connections: %s", strerror(errno));
            status = 1;
            break;
        }
        if (stop_requested)
            break;
        if (req.ipcFd < 0)
            continue;            /* a connection may be waiting: accept it at the loop's top */
        rc = FCGX_Accept_r(&req);
        if (rc < 0) {
            if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR || rc == -ECONNABORTED)
                continue;
            log_error("accepting a FastCGI connection: %s", rc > -1000 ? strerror(-rc) : "protocol error");
            continue;
        }
    serve:
        app_handle(&app, &io);
        if (req.detached) {
            /* handed over to the watch process: close our copy, write nothing (fcgi.c) */
            FCGX_Free(&req, 1);
            req.detached = 0;
        } else {
            FCGX_Finish_r(&req);
        }
        if (cfg->max_requests > 0 && ++served >= cfg->max_requests) {
            log_info("served %ld requests; recycling", served);
            break;
        }
    }
    FCGX_Free(&req, 1);
    app_cleanup(&app);
    log_buffer_requests(false);
    return status;
}
