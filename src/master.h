/* Process model: the master binds the socket, forks and supervises workers (nginx style: signal
 * handlers only set flags, the loop acts on them); a worker serves FastCGI requests. */
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

/* Opens the listen socket described by spec ("unix:/path" or "host:port"); -1 with err. */
int listen_socket_open(const struct config *cfg, char *err, size_t errlen);
/* Is fd 0 a listening socket handed to us (spawn-fcgi, mod_fcgid, lighttpd bin-path)? */
bool stdin_is_listen_socket(void);

/* Serves requests on listen_fd until told to stop or max_requests is reached. Returns the exit
 * status for the process. */
int worker_run(int listen_fd, const struct config *cfg, const struct auth_ctx *auth);
/* Drops to cfg->user / cfg->group when running as root. */
bool drop_privileges(const struct config *cfg, char *err, size_t errlen);

/* Start-up work against the database: sidecar bootstrap, FK migration, materializer checks. A
 * database that is down is only a warning (workers keep trying); a materializer that cannot work
 * is an error (false). */
bool startup_checks(const struct config *cfg);

/* Supervises workers on listen_fd; returns the process exit status. Takes auth over and frees it
 * (a reload replaces it); cfg stays the caller's and is updated in place by a reload. */
int master_run(int listen_fd, const struct overrides *ov, struct config *cfg, struct auth_ctx *auth);

#endif
