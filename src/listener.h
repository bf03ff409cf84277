/* The FastCGI listen socket: opened by the master, or inherited on fd 0 from spawn-fcgi, Apache
 * mod_fcgid or lighttpd bin-path (systemd hands it over on fd 3, see main.c). */
#ifndef OVERSYNCD_LISTENER_H
#define OVERSYNCD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Opens the listen socket described by cfg->listen ("unix:/path" or "host:port"): binds it (a
 * stale unix socket file that nobody answers on is removed), sets the unix socket's mode and
 * owner, listens. -1 with the reason in err. */
int listen_socket_open(const struct config *cfg, char *err, size_t errlen);
/* Is fd 0 a listening socket handed to us (spawn-fcgi, mod_fcgid, lighttpd bin-path)? */
bool stdin_is_listen_socket(void);

#endif
