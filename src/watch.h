/* The watch process: one long-lived child of the master that holds every open GET /sync/watch
 * stream (protocol = bundle) and every waiting GET /sync/download?wait=S (protocol = upload), so
 * that no worker is ever held by a watcher. A worker checks such a request, then hands its
 * FastCGI connection over (SCM_RIGHTS on a SOCK_SEQPACKET socketpair the master created before
 * forking) with a struct watch_msg; the watch process answers it on the connection itself, from
 * an epoll loop with a few hundred bytes of state per watcher and ONE PostgreSQL connection that
 * LISTENs and fans each NOTIFY out. docs/architecture.md ("The watch process"). */
#ifndef OVERSYNCD_WATCH_H
#define OVERSYNCD_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* The watch process: serves what arrives on sock until SIGTERM/SIGHUP (then every stream ends
 * cleanly, with FCGI_END_REQUEST, so that clients reconnect). Returns the exit status. */
int watch_run(int sock, const struct config *cfg);

#endif
