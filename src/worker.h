/* A worker: serves FastCGI requests on the shared listen socket, one at a time, until told to
 * stop (SIGTERM, finishing the request in progress) or max_requests is reached. */
#ifndef OVERSYNCD_WORKER_H
#define OVERSYNCD_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"
#include "config.h"

/* Serves requests on listen_fd; returns the exit status for the process. */
int worker_run(int listen_fd, const struct config *cfg, const struct auth_ctx *auth);
/* Drops to cfg->user / cfg->group when running as root. */
bool drop_privileges(const struct config *cfg, char *err, size_t errlen);

#endif
