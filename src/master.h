/* The master forks and supervises workers on the listen socket (nginx style: signal handlers only
 * set flags, the loop acts on them). listener.h opens the socket, worker.h serves it. */
#ifndef OVERSYNCD_MASTER_H
#define OVERSYNCD_MASTER_H

#include <stdbool.h>

#include "auth/auth.h"
#include "config.h"

/* Command-line overrides that survive a reload. */
struct overrides {
    const char *config_path;
    const char *listen;      /* NULL = from the file */
    int workers;             /* -1 = from the file */
    bool socket_activated;   /* serving systemd's socket (fd 3): [server] listen is not ours */
};

/* Loads, overrides and validates; logs and returns false on error. */
bool load_configuration(const struct overrides *ov, struct config *cfg, char *err, size_t errlen);

/* Start-up work against the database: sidecar bootstrap, FK migration, materializer checks. A
 * database that is down is only a warning (workers keep trying); a materializer that cannot work
 * is an error (false). */
bool startup_checks(const struct config *cfg);

/* Supervises workers on listen_fd; returns the process exit status. Takes auth over and frees it
 * (a reload replaces it); cfg stays the caller's and is updated in place by a reload. */
int master_run(int listen_fd, const struct overrides *ov, struct config *cfg, struct auth_ctx *auth);

#endif
